;; Tries to forge the gateway's signed internal header.
(module
  (import "http_handler" "set_header_value" (func $set (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "x-yatagarasu-subject")
  (func (export "handle_request") (result i64)
    (call $set (i32.const 0) (i32.const 0) (i32.const 20) (i32.const 0) (i32.const 4))
    (i64.const 1)))
