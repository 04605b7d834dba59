;; _start calls $boom, which executes `unreachable`: the trap's backtrace
;; must name `boom` (built with wat2wasm --debug-names).
(module
    (memory 1)
    (export "memory" (memory 0))
    (func $boom
        unreachable
    )
    (func $main (export "_start")
        (call $boom)
    )
)
