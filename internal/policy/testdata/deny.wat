;; Denies with 418, a response header and a body.
(module
  (import "http_handler" "set_status_code" (func $status (param i32)))
  (import "http_handler" "set_header_value" (func $set (param i32 i32 i32 i32 i32)))
  (import "http_handler" "write_body" (func $body (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "content-type")
  (data (i32.const 16) "text/plain")
  (data (i32.const 32) "no tea here")
  (func (export "handle_request") (result i64)
    (call $status (i32.const 418))
    (call $set (i32.const 1) (i32.const 0) (i32.const 12) (i32.const 16) (i32.const 10))
    (call $body (i32.const 1) (i32.const 32) (i32.const 11))
    (i64.const 0)))
