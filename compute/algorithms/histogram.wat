;; A histogram of one numeric column, released k-anonymously: the host suppresses every bin with fewer than k rows
;; (and any bin a released total would reveal), so no bin narrows a patient down to fewer than k.
;;
;; Job parameters: columns [x], values [lowest, width], cells B. Row r goes into bin floor((x - lowest) / width),
;; the rows below the first bin into bin 0 and those above the last into bin B - 1; rows missing x are left out.
;; No `finish`: the result is the pooled bins.
(module
  (import "hanse" "rows" (func $rows (result i32)))
  (import "hanse" "value" (func $value (param i32 i32) (result f64)))
  (import "hanse" "parameter" (func $parameter (param i32) (result f64)))
  (import "hanse" "cells" (func $cells (result i32)))
  (import "hanse" "assign" (func $assign (param i32 i32)))

  (func (export "site")
    (local $r i32) (local $n i32) (local $last f64) (local $x f64) (local $bin f64)
    (local.set $n (call $rows))
    (local.set $last (f64.convert_i32_s (i32.sub (call $cells) (i32.const 1))))
    (block $done
      (loop $each
        (br_if $done (i32.ge_s (local.get $r) (local.get $n)))
        (local.set $x (call $value (i32.const 0) (local.get $r)))
        (if (f64.eq (local.get $x) (local.get $x))
          (then
            (local.set $bin
              (f64.floor (f64.div (f64.sub (local.get $x) (call $parameter (i32.const 0))) (call $parameter (i32.const 1)))))
            (local.set $bin (f64.min (f64.max (local.get $bin) (f64.const 0)) (local.get $last)))
            (call $assign (local.get $r) (i32.trunc_f64_s (local.get $bin)))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $each)))))
