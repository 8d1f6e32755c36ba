;; Allows and sets the upstream request header "range: bytes=0-3", an effect a client can see
;; (206 with four bytes), proving that policy header additions reach the origin.
(module
  (import "http_handler" "set_header_value" (func $set (param i32 i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "range")
  (data (i32.const 16) "bytes=0-3")
  (func (export "handle_request") (result i64)
    (call $set (i32.const 0) (i32.const 0) (i32.const 5) (i32.const 16) (i32.const 9))
    (i64.const 1)))
