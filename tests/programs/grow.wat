;; memory.grow by 65535 pages (4 GiB) must fail under a memory cap; growing by
;; 16 pages (1 MiB) must succeed. Exits 0 when both hold, else 1 or 2.
(module
    (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
    (memory (export "memory") 1)
    (func (export "_start")
        (if (i32.ne (memory.grow (i32.const 65535)) (i32.const -1))
            (then (call $proc_exit (i32.const 1))))
        (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1))
            (then (call $proc_exit (i32.const 2))))
        (call $proc_exit (i32.const 0))
    )
)
