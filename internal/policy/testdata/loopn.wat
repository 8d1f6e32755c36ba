;; Counts to 1000 in a loop and allows: a known fuel cost (1 entry + 1001 loop heads).
(module
  (memory (export "memory") 1)
  (func (export "handle_request") (result i64)
    (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.le_u (local.get $i) (i32.const 1000))))
    (i64.const 1)))
