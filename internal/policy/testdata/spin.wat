;; A guest stuck in a loop.
(module
  (memory (export "memory") 1)
  (func (export "handle_request") (result i64)
    (loop $forever (br $forever))
    (i64.const 1)))
