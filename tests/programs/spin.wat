;; An infinite loop: only a timeout, fuel or a CPU limit ends it.
(module
    (memory (export "memory") 1)
    (func (export "_start")
        (loop $forever (br $forever))
    )
)
