;; WASI calls given guest-sized lengths (the host-amplification test):
;; `--invoke random N` fills N bytes with random_get, `--invoke longpath N`
;; opens a path of N bytes under fd 3. Each grows memory to fit N and
;; returns the call's errno.
(module
    (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "path_open"
        (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func $room (param $n i32)
        (if (i32.lt_s (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 1)))
                      (i32.const 0))
            (then unreachable)))
    (func (export "random") (param $n i32) (result i32)
        (call $room (local.get $n))
        (call $random_get (i32.const 65536) (local.get $n)))
    (func (export "longpath") (param $n i32) (result i32)
        (call $room (local.get $n))
        (memory.fill (i32.const 65536) (i32.const 97) (local.get $n))
        (call $path_open (i32.const 3) (i32.const 0) (i32.const 65536) (local.get $n)
                         (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0)))
)
