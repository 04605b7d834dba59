;; unstable_layouts: the layouts that wasi_unstable (preview0) does not share
;; with preview1, read back byte by byte from guest memory.
;;
;; Run with /sandbox preopened at fd 3, holding data.txt = "0123456789" whose
;; atime and mtime the harness set to 1600000000123456789 ns. Prints, one per
;; line, "name=value" pairs the test compares exactly:
;;   * filestat is 56 bytes: filetype u8 @16, nlink u32 @20, size u64 @24,
;;     atim @32, mtim @40, ctim @48, and byte 56 is left alone (0xAA = 170);
;;   * fd_seek's whence numbers: CUR = 0, END = 1, SET = 2;
;;   * subscription is 56 bytes: the clock variant has a u64 identifier @16
;;     before clock_id @24, timeout @32, precision @40, flags @48; fd_read's
;;     descriptor sits @16.
(module
  (import "wasi_unstable" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_unstable" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_unstable" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_unstable" "fd_filestat_get" (func $fd_filestat_get (param i32 i32) (result i32)))
  (import "wasi_unstable" "path_filestat_get"
    (func $path_filestat_get (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_unstable" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_unstable" "fd_tell" (func $fd_tell (param i32 i32) (result i32)))
  (import "wasi_unstable" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_unstable" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_unstable" "proc_exit" (func $proc_exit (param i32)))

  (memory (export "memory") 1)

  ;; strings
  (data (i32.const 0x100) "data.txt")           ;; 8 bytes
  (data (i32.const 0x110) "\n")
  (data (i32.const 0x120) "open=")               ;; 5
  (data (i32.const 0x130) " filetype=")          ;; 10
  (data (i32.const 0x140) " nlink=")             ;; 7
  (data (i32.const 0x150) " size=")              ;; 6
  (data (i32.const 0x160) " atim=")              ;; 6
  (data (i32.const 0x170) " mtim=")              ;; 6
  (data (i32.const 0x180) " byte56=")            ;; 8
  (data (i32.const 0x190) "fd_filestat_get=")    ;; 16
  (data (i32.const 0x1b0) "path_filestat_get=")  ;; 18
  (data (i32.const 0x1d0) "seek SET 3=")         ;; 11
  (data (i32.const 0x1e0) "seek CUR 1=")         ;; 11
  (data (i32.const 0x1f0) "seek END -2=")        ;; 12
  (data (i32.const 0x200) "tell=")               ;; 5
  (data (i32.const 0x210) "read=")               ;; 5
  (data (i32.const 0x220) "poll clock+fd=")      ;; 14
  (data (i32.const 0x240) "poll clock=")         ;; 11
  (data (i32.const 0x250) " nevents=")           ;; 9
  (data (i32.const 0x260) " userdata=")          ;; 10
  (data (i32.const 0x270) " type=")              ;; 6
  (data (i32.const 0x280) " error=")             ;; 7
  (data (i32.const 0x290) " pos=")               ;; 5

  ;; scratch: iovec @0x800, nwritten @0x808, digits @0x900..0x920,
  ;; fd @0xa00, pos @0xa08, nevents @0xa10, nread @0xa18, read buffer @0xa20,
  ;; filestat @0x1000 (72 bytes), subscriptions @0x2000, events @0x3000

  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0x800) (local.get $ptr))
    (i32.store (i32.const 0x804) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0x800) (i32.const 1) (i32.const 0x808))))

  (func $newline (call $print (i32.const 0x110) (i32.const 1)))

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

  ;; "<label><errno> filetype=.. nlink=.. size=.. atim=.. mtim=.. byte56=..\n"
  (func $show_filestat (param $label i32) (param $label_len i32) (param $errno i32)
    (call $print (local.get $label) (local.get $label_len))
    (call $print_i32 (local.get $errno))
    (call $print (i32.const 0x130) (i32.const 10))
    (call $print_i32 (i32.load8_u (i32.const 0x1010)))
    (call $print (i32.const 0x140) (i32.const 7))
    (call $print_i32 (i32.load (i32.const 0x1014)))
    (call $print (i32.const 0x150) (i32.const 6))
    (call $print_u64 (i64.load (i32.const 0x1018)))
    (call $print (i32.const 0x160) (i32.const 6))
    (call $print_u64 (i64.load (i32.const 0x1020)))
    (call $print (i32.const 0x170) (i32.const 6))
    (call $print_u64 (i64.load (i32.const 0x1028)))
    (call $print (i32.const 0x180) (i32.const 8))
    (call $print_i32 (i32.load8_u (i32.const 0x1038)))
    (call $newline))

  (func $show_seek (param $label i32) (param $label_len i32) (param $errno i32)
    (call $print (local.get $label) (local.get $label_len))
    (call $print_i32 (local.get $errno))
    (call $print (i32.const 0x290) (i32.const 5))
    (call $print_u64 (i64.load (i32.const 0xa08)))
    (call $newline))

  (func $show_poll (param $label i32) (param $label_len i32) (param $errno i32)
    (call $print (local.get $label) (local.get $label_len))
    (call $print_i32 (local.get $errno))
    (call $print (i32.const 0x250) (i32.const 9))
    (call $print_i32 (i32.load (i32.const 0xa10)))
    (call $print (i32.const 0x260) (i32.const 10))
    (call $print_u64 (i64.load (i32.const 0x3000)))
    (call $print (i32.const 0x280) (i32.const 7))
    (call $print_i32 (i32.load16_u (i32.const 0x3008)))
    (call $print (i32.const 0x270) (i32.const 6))
    (call $print_i32 (i32.load8_u (i32.const 0x300a)))
    (call $newline))

  (func $clock_subscription (param $at i32) (param $userdata i64)
    (memory.fill (local.get $at) (i32.const 0) (i32.const 56))
    (i64.store (local.get $at) (local.get $userdata))
    (i32.store8 offset=8 (local.get $at) (i32.const 0))                  ;; CLOCK
    (i64.store offset=16 (local.get $at) (i64.const 0x5151515151515151)) ;; identifier: ignored
    (i32.store offset=24 (local.get $at) (i32.const 1))                  ;; MONOTONIC
    (i64.store offset=32 (local.get $at) (i64.const 1000000))            ;; 1 ms
    (i64.store offset=40 (local.get $at) (i64.const 0))
    (i32.store16 offset=48 (local.get $at) (i32.const 0)))

  (func (export "_start")
    (local $e i32)
    (local $fd i32)
    ;; path_open(3, follow, "data.txt", no oflags, FD_READ|FD_SEEK|FD_TELL|FD_FILESTAT_GET|POLL)
    (local.set $e (call $path_open (i32.const 3) (i32.const 1) (i32.const 0x100) (i32.const 8)
      (i32.const 0) (i64.const 0x8200026) (i64.const 0) (i32.const 0) (i32.const 0xa00)))
    (call $print (i32.const 0x120) (i32.const 5))
    (call $print_i32 (local.get $e))
    (call $newline)
    (if (local.get $e) (then (call $proc_exit (i32.const 1))))
    (local.set $fd (i32.load (i32.const 0xa00)))

    (memory.fill (i32.const 0x1000) (i32.const 0xaa) (i32.const 72))
    (local.set $e (call $fd_filestat_get (local.get $fd) (i32.const 0x1000)))
    (call $show_filestat (i32.const 0x190) (i32.const 16) (local.get $e))

    (memory.fill (i32.const 0x1000) (i32.const 0xaa) (i32.const 72))
    (local.set $e (call $path_filestat_get (i32.const 3) (i32.const 1) (i32.const 0x100) (i32.const 8)
      (i32.const 0x1000)))
    (call $show_filestat (i32.const 0x1b0) (i32.const 18) (local.get $e))

    ;; whence: SET = 2, CUR = 0, END = 1
    (local.set $e (call $fd_seek (local.get $fd) (i64.const 3) (i32.const 2) (i32.const 0xa08)))
    (call $show_seek (i32.const 0x1d0) (i32.const 11) (local.get $e))
    (local.set $e (call $fd_seek (local.get $fd) (i64.const 1) (i32.const 0) (i32.const 0xa08)))
    (call $show_seek (i32.const 0x1e0) (i32.const 11) (local.get $e))
    (local.set $e (call $fd_seek (local.get $fd) (i64.const -2) (i32.const 1) (i32.const 0xa08)))
    (call $show_seek (i32.const 0x1f0) (i32.const 12) (local.get $e))
    (local.set $e (call $fd_tell (local.get $fd) (i32.const 0xa08)))
    (call $show_seek (i32.const 0x200) (i32.const 5) (local.get $e))
    ;; read what is left: "89"
    (i32.store (i32.const 0x800) (i32.const 0xa20))
    (i32.store (i32.const 0x804) (i32.const 16))
    (drop (call $fd_read (local.get $fd) (i32.const 0x800) (i32.const 1) (i32.const 0xa18)))
    (call $print (i32.const 0x210) (i32.const 5))
    (call $print (i32.const 0xa20) (i32.load (i32.const 0xa18)))
    (call $newline)
    ;; back to the start, so the file has bytes to read for the poll below
    (drop (call $fd_seek (local.get $fd) (i64.const 0) (i32.const 2) (i32.const 0xa08)))

    ;; A 1 ms clock and, 56 bytes on, a read on the file: the file is ready
    ;; at once, so exactly one event comes back, for userdata 8.
    (call $clock_subscription (i32.const 0x2000) (i64.const 7))
    (memory.fill (i32.const 0x2038) (i32.const 0) (i32.const 56))
    (i64.store (i32.const 0x2038) (i64.const 8))
    (i32.store8 (i32.const 0x2040) (i32.const 1))           ;; FD_READ
    (i32.store (i32.const 0x2048) (local.get $fd))          ;; its descriptor @16
    (local.set $e (call $poll_oneoff (i32.const 0x2000) (i32.const 0x3000) (i32.const 2) (i32.const 0xa10)))
    (call $show_poll (i32.const 0x220) (i32.const 14) (local.get $e))

    ;; The clock alone: it fires after 1 ms.
    (local.set $e (call $poll_oneoff (i32.const 0x2000) (i32.const 0x3000) (i32.const 1) (i32.const 0xa10)))
    (call $show_poll (i32.const 0x240) (i32.const 11) (local.get $e))

    (drop (call $fd_close (local.get $fd)))))
