;; wasijail-build: wasmtime
;; Four linear memories, each grown to 48 MiB and written (the memory-limit
;; test: a 64 MiB limit is the total across memories, not 64 MiB each).
;; Exits normally only if every memory grew.
(module
    (memory $a (export "memory") 1)
    (memory $b 1)
    (memory $c 1)
    (memory $d 1)
    (func (export "_start")
        (if (i32.lt_s (memory.grow $a (i32.const 767)) (i32.const 0)) (then unreachable))
        (if (i32.lt_s (memory.grow $b (i32.const 767)) (i32.const 0)) (then unreachable))
        (if (i32.lt_s (memory.grow $c (i32.const 767)) (i32.const 0)) (then unreachable))
        (if (i32.lt_s (memory.grow $d (i32.const 767)) (i32.const 0)) (then unreachable))
        (memory.fill $a (i32.const 0) (i32.const 1) (i32.const 50331648))
        (memory.fill $b (i32.const 0) (i32.const 1) (i32.const 50331648))
        (memory.fill $c (i32.const 0) (i32.const 1) (i32.const 50331648))
        (memory.fill $d (i32.const 0) (i32.const 1) (i32.const 50331648))
    )
)
