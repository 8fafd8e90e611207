;; Validation of a logistic model at each site: discrimination (AUC) and calibration (observed against expected).
;;
;; Job parameters: columns [outcome, x1 .. xm] (the outcome 0/1), values [b0, b1 .. bm] (the model's intercept and
;; coefficients), cells B. At a site each complete row goes into the cell of its predicted probability
;; (floor(p · B), the top cell taking p = 1), with metric 0 its outcome and metric 1 its probability. At the
;; orchestrator `finish` reads the pooled cells in order of probability and sets
;; result 0: the AUC of the model's probability at the resolution of B cells (ties within a cell count one half),
;; result 1: the events observed, result 2: the events expected (the sum of probabilities), result 3: observed /
;; expected, result 4: the rows. A cell some site withheld makes every result unknown.
(module
  (import "hanse" "rows" (func $rows (result i32)))
  (import "hanse" "columns" (func $columns (result i32)))
  (import "hanse" "value" (func $value (param i32 i32) (result f64)))
  (import "hanse" "parameter" (func $parameter (param i32) (result f64)))
  (import "hanse" "cells" (func $cells (result i32)))
  (import "hanse" "assign" (func $assign (param i32 i32)))
  (import "hanse" "measure" (func $measure (param i32 i32 f64)))
  (import "hanse" "count" (func $count (param i32) (result f64)))
  (import "hanse" "sum" (func $sum (param i32 i32) (result f64)))
  (import "hanse" "result" (func $result (param i32 f64)))
  (import "hanse" "exp" (func $exp (param f64) (result f64)))

  ;; The model's probability for row $r: 1 / (1 + exp(-(b0 + b1·x1 + ... + bm·xm))); NaN when a term is missing.
  (func $probability (param $r i32) (result f64)
    (local $eta f64) (local $j i32) (local $m i32)
    (local.set $m (call $columns))
    (local.set $eta (call $parameter (i32.const 0)))
    (local.set $j (i32.const 1))
    (block $done
      (loop $terms
        (br_if $done (i32.ge_s (local.get $j) (local.get $m)))
        (local.set $eta
          (f64.add (local.get $eta) (f64.mul (call $parameter (local.get $j)) (call $value (local.get $j) (local.get $r)))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $terms)))
    (f64.div (f64.const 1) (f64.add (f64.const 1) (call $exp (f64.neg (local.get $eta))))))

  (func (export "site")
    (local $r i32) (local $n i32) (local $cells i32) (local $cell i32) (local $y f64) (local $p f64)
    (local.set $n (call $rows))
    (local.set $cells (call $cells))
    (block $done
      (loop $each
        (br_if $done (i32.ge_s (local.get $r) (local.get $n)))
        (local.set $y (call $value (i32.const 0) (local.get $r)))
        (local.set $p (call $probability (local.get $r)))
        ;; NaN is not equal to itself: a row missing its outcome or a term is left out.
        (if (i32.and (f64.eq (local.get $y) (local.get $y)) (f64.eq (local.get $p) (local.get $p)))
          (then
            (local.set $cell
              (i32.trunc_f64_s (f64.floor (f64.mul (local.get $p) (f64.convert_i32_s (local.get $cells))))))
            (if (i32.ge_s (local.get $cell) (local.get $cells))
              (then (local.set $cell (i32.sub (local.get $cells) (i32.const 1)))))
            (call $assign (local.get $r) (local.get $cell))
            (call $measure (local.get $r) (i32.const 0) (local.get $y))
            (call $measure (local.get $r) (i32.const 1) (local.get $p))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $each))))

  (func (export "finish")
    (local $c i32) (local $cells i32) (local $n f64) (local $events f64) (local $others f64)
    (local $below f64) (local $pairs f64) (local $observed f64) (local $expected f64)
    (local.set $cells (call $cells))
    (block $done
      (loop $each
        (br_if $done (i32.ge_s (local.get $c) (local.get $cells)))
        (local.set $n (call $count (local.get $c)))
        (local.set $events (call $sum (local.get $c) (i32.const 0)))
        (local.set $others (f64.sub (local.get $n) (local.get $events)))
        ;; Each event outranks the non-events of lower cells and ties half of its own cell's.
        (local.set $pairs
          (f64.add (local.get $pairs)
            (f64.mul (local.get $events)
              (f64.add (local.get $below) (f64.mul (f64.const 0.5) (local.get $others))))))
        (local.set $below (f64.add (local.get $below) (local.get $others)))
        (local.set $observed (f64.add (local.get $observed) (local.get $events)))
        (local.set $expected (f64.add (local.get $expected) (call $sum (local.get $c) (i32.const 1))))
        (local.set $c (i32.add (local.get $c) (i32.const 1)))
        (br $each)))
    (call $result (i32.const 0) (f64.div (local.get $pairs) (f64.mul (local.get $observed) (local.get $below))))
    (call $result (i32.const 1) (local.get $observed))
    (call $result (i32.const 2) (local.get $expected))
    (call $result (i32.const 3) (f64.div (local.get $observed) (local.get $expected)))
    (call $result (i32.const 4) (f64.add (local.get $observed) (local.get $below)))))
