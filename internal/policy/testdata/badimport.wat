;; Imports a host function the gateway does not offer.
(module
  (import "http_handler" "set_uri" (func $uri (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "handle_request") (result i64) (i64.const 1)))
