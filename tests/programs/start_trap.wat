;; The start section traps: the module fails while it is being instantiated.
(module
    (memory (export "memory") 1)
    (func $init unreachable)
    (start $init)
    (func (export "_start"))
)
