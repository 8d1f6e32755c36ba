;; Grows memory by 64 MiB and traps when the host refuses, as language runtimes do.
(module
  (memory (export "memory") 1)
  (func (export "handle_request") (result i64)
    (if (i32.eq (memory.grow (i32.const 1024)) (i32.const -1)) (then unreachable))
    (i64.const 1)))
