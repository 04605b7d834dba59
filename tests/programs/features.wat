;; wasijail-build: wasmtime (wabt 1.0.32 cannot parse try_table; scripts/build-test-programs)
;;
;; features: one check for each proposal that real toolchains emit and that
;; wasijail's engine enables: SIMD, tail calls, exception handling (try_table,
;; throw), multi-value, reference types and bulk memory. Prints exactly:
;;   simd: 11 22 33 44 lane=3
;;   tail call: 500000500000
;;   exceptions: 42 7
;;   multi-value: 7 3 3
;;   reference types: 42 2 5 1 1
;;   bulk memory: bulk!bulk!...
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 0x100) "simd: ")               ;; 6
  (data (i32.const 0x110) "tail call: ")          ;; 11
  (data (i32.const 0x120) "exceptions: ")         ;; 12
  (data (i32.const 0x130) "multi-value: ")        ;; 13
  (data (i32.const 0x140) "reference types: ")    ;; 17
  (data (i32.const 0x160) "bulk memory: ")        ;; 13
  (data (i32.const 0x170) " lane=")               ;; 6
  (data (i32.const 0x180) " ")
  (data (i32.const 0x181) "\n")
  (data $greeting "bulk!")                        ;; passive: only memory.init places it

  (type $unary (func (param i32) (result i32)))
  (table $funcs 2 funcref)
  (table $externs 1 externref)
  (elem declare func $double)
  (tag $oops (param i32))

  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0x800) (local.get $ptr))
    (i32.store (i32.const 0x804) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0x800) (i32.const 1) (i32.const 0x808))))

  (func $space (call $print (i32.const 0x180) (i32.const 1)))
  (func $newline (call $print (i32.const 0x181) (i32.const 1)))

  (func $print_u64 (param $v i64)
    (local $p i32)
    (local.set $p (i32.const 0x920))
    (loop $digits
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digits (i64.ne (local.get $v) (i64.const 0))))
    (call $print (local.get $p) (i32.sub (i32.const 0x920) (local.get $p))))

  (func $print_i32 (param $v i32) (call $print_u64 (i64.extend_i32_u (local.get $v))))

  ;; -- SIMD ------------------------------------------------------------------
  (func $simd
    (v128.store (i32.const 0x600)
      (i32x4.add (v128.const i32x4 1 2 3 4) (v128.const i32x4 10 20 30 40)))
    (call $print (i32.const 0x100) (i32.const 6))
    (call $print_i32 (i32.load (i32.const 0x600))) (call $space)
    (call $print_i32 (i32.load (i32.const 0x604))) (call $space)
    (call $print_i32 (i32.load (i32.const 0x608))) (call $space)
    (call $print_i32 (i32.load (i32.const 0x60c)))
    (call $print (i32.const 0x170) (i32.const 6))
    ;; reverse the lanes with a shuffle, then take lane 1 of [4 3 2 1]
    (call $print_i32 (i32x4.extract_lane 1
      (i8x16.shuffle 12 13 14 15 8 9 10 11 4 5 6 7 0 1 2 3
        (v128.const i32x4 1 2 3 4) (v128.const i32x4 0 0 0 0))))
    (call $newline))

  ;; -- tail calls: a million frames deep would overflow the stack without them --
  (func $sum (param $n i64) (param $acc i64) (result i64)
    (if (result i64) (i64.eqz (local.get $n))
      (then (local.get $acc))
      (else (return_call $sum (i64.sub (local.get $n) (i64.const 1))
                              (i64.add (local.get $acc) (local.get $n))))))

  ;; -- exceptions --------------------------------------------------------------
  (func $throw (param $v i32) (throw $oops (local.get $v)))
  (func $deep (param $n i32)
    (if (local.get $n)
      (then (call $deep (i32.sub (local.get $n) (i32.const 1))))
      (else (call $throw (i32.const 7)))))
  (func $catch_direct (result i32)
    (block $caught (result i32)
      (try_table (catch $oops $caught)
        (call $throw (i32.const 42)))
      (i32.const -1)))
  (func $catch_across_frames (result i32)
    (block $caught (result i32)
      (try_table (catch $oops $caught)
        (call $deep (i32.const 50)))
      (i32.const -1)))

  ;; -- multi-value -----------------------------------------------------------
  (func $divmod (param i32 i32) (result i32 i32)
    (i32.div_u (local.get 0) (local.get 1))
    (i32.rem_u (local.get 0) (local.get 1)))

  ;; -- reference types -----------------------------------------------------------
  (func $double (type $unary) (i32.mul (local.get 0) (i32.const 2)))

  (func (export "_start")
    (local $quot i32)
    (local $rem i32)
    (call $simd)

    (call $print (i32.const 0x110) (i32.const 11))
    (call $print_u64 (call $sum (i64.const 1000000) (i64.const 0)))
    (call $newline)

    (call $print (i32.const 0x120) (i32.const 12))
    (call $print_i32 (call $catch_direct)) (call $space)
    (call $print_i32 (call $catch_across_frames))
    (call $newline)

    (call $print (i32.const 0x130) (i32.const 13))
    (call $divmod (i32.const 38) (i32.const 5))
    (local.set $rem)                           ;; two results: the remainder is on top
    (local.set $quot)
    (call $print_i32 (local.get $quot)) (call $space)
    (call $print_i32 (local.get $rem))
    ;; a block that takes its two operands from the stack
    (i32.const 1) (i32.const 2)
    (block (param i32 i32) (result i32) (i32.add))
    (call $space)
    (call $print_i32)
    (call $newline)

    (call $print (i32.const 0x140) (i32.const 17))
    (table.set $funcs (i32.const 1) (ref.func $double))
    (call $print_i32 (call_indirect $funcs (type $unary) (i32.const 21) (i32.const 1))) (call $space)
    (call $print_i32 (table.grow $funcs (ref.null func) (i32.const 3))) (call $space)
    (call $print_i32 (table.size $funcs)) (call $space)
    (call $print_i32 (ref.is_null (table.get $funcs (i32.const 0)))) (call $space)
    (call $print_i32 (ref.is_null (table.get $externs (i32.const 0))))
    (call $newline)

    (call $print (i32.const 0x160) (i32.const 13))
    (memory.init $greeting (i32.const 0x500) (i32.const 0) (i32.const 5))
    (data.drop $greeting)
    (memory.copy (i32.const 0x505) (i32.const 0x500) (i32.const 5))
    (memory.fill (i32.const 0x50a) (i32.const 46) (i32.const 3))
    (call $print (i32.const 0x500) (i32.const 13))
    (call $newline)))
