;; poll_oneoff on one relative clock subscription of one hour: blocks inside
;; the host call, where epoch interruption cannot reach.
(module
    (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (func (export "_start")
        ;; subscription at 0: userdata 0, tag 0 (clock), clock id 1 (monotonic) at 16,
        ;; timeout 3600 s in ns at 24, precision 0, flags 0 (relative)
        (i32.store (i32.const 16) (i32.const 1))
        (i64.store (i32.const 24) (i64.const 3600000000000))
        (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
    )
)
