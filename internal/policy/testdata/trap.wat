;; Traps like a Go panic does.
(module
  (memory (export "memory") 1)
  (func (export "handle_request") (result i64)
    unreachable))
