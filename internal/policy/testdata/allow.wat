;; Allows every request and adds x-policy: allow upstream.
(module
  (import "http_handler" "set_header_value" (func $set (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "x-policy")
  (data (i32.const 16) "allow")
  (func (export "handle_request") (result i64)
    (call $set (i32.const 0) (i32.const 0) (i32.const 8) (i32.const 16) (i32.const 5))
    (i64.const 1)))
