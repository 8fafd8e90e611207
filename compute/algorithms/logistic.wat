;; Logistic regression trained across sites by gradient steps: a round's sites release the gradient of the
;; log-likelihood (one sum per coefficient, over all their rows, in one cell), and the orchestrator steps the
;; coefficients by it. The sites' gradients pass the host's disclosure control like any cell: no fewer than k rows,
;; no row dominating a sum.
;;
;; Job parameters: columns [outcome, x1 .. xm] (the outcome 0/1, m at most 15), values [rate, b0, b1 .. bm], cells 1,
;; rounds R. Round t's values are round t-1's `finish`: [rate, b + rate · gradient / rows].
(module
  (import "hanse" "rows" (func $rows (result i32)))
  (import "hanse" "columns" (func $columns (result i32)))
  (import "hanse" "value" (func $value (param i32 i32) (result f64)))
  (import "hanse" "parameters" (func $parameters (result i32)))
  (import "hanse" "parameter" (func $parameter (param i32) (result f64)))
  (import "hanse" "assign" (func $assign (param i32 i32)))
  (import "hanse" "measure" (func $measure (param i32 i32 f64)))
  (import "hanse" "count" (func $count (param i32) (result f64)))
  (import "hanse" "sum" (func $sum (param i32 i32) (result f64)))
  (import "hanse" "result" (func $result (param i32 f64)))
  (import "hanse" "exp" (func $exp (param f64) (result f64)))

  ;; b0 + b1·x1 + ... + bm·xm of row $r (coefficient j is parameter j + 1); NaN when a term is missing.
  (func $linear (param $r i32) (result f64)
    (local $eta f64) (local $j i32) (local $m i32)
    (local.set $m (call $columns))
    (local.set $eta (call $parameter (i32.const 1)))
    (local.set $j (i32.const 1))
    (block $done
      (loop $terms
        (br_if $done (i32.ge_s (local.get $j) (local.get $m)))
        (local.set $eta
          (f64.add (local.get $eta)
            (f64.mul (call $parameter (i32.add (local.get $j) (i32.const 1))) (call $value (local.get $j) (local.get $r)))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $terms)))
    (local.get $eta))

  (func (export "site")
    (local $r i32) (local $n i32) (local $m i32) (local $j i32) (local $y f64) (local $eta f64) (local $residual f64)
    (local.set $n (call $rows))
    (local.set $m (call $columns))
    (block $done
      (loop $each
        (br_if $done (i32.ge_s (local.get $r) (local.get $n)))
        (local.set $y (call $value (i32.const 0) (local.get $r)))
        (local.set $eta (call $linear (local.get $r)))
        (if (i32.and (f64.eq (local.get $y) (local.get $y)) (f64.eq (local.get $eta) (local.get $eta)))
          (then
            ;; y - p: the row's share of the intercept's gradient; times x_j, of coefficient j's.
            (local.set $residual
              (f64.sub (local.get $y)
                (f64.div (f64.const 1) (f64.add (f64.const 1) (call $exp (f64.neg (local.get $eta)))))))
            (call $assign (local.get $r) (i32.const 0))
            (call $measure (local.get $r) (i32.const 0) (local.get $residual))
            (local.set $j (i32.const 1))
            (block $measured
              (loop $terms
                (br_if $measured (i32.ge_s (local.get $j) (local.get $m)))
                (call $measure (local.get $r) (local.get $j)
                  (f64.mul (local.get $residual) (call $value (local.get $j) (local.get $r))))
                (local.set $j (i32.add (local.get $j) (i32.const 1)))
                (br $terms)))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $each))))

  (func (export "finish")
    (local $j i32) (local $coefficients i32) (local $rate f64) (local $n f64)
    (local.set $rate (call $parameter (i32.const 0)))
    (local.set $coefficients (i32.sub (call $parameters) (i32.const 1)))
    (local.set $n (call $count (i32.const 0)))
    (call $result (i32.const 0) (local.get $rate))
    (block $done
      (loop $each
        (br_if $done (i32.ge_s (local.get $j) (local.get $coefficients)))
        (call $result (i32.add (local.get $j) (i32.const 1))
          (f64.add (call $parameter (i32.add (local.get $j) (i32.const 1)))
            (f64.div (f64.mul (local.get $rate) (call $sum (i32.const 0) (local.get $j))) (local.get $n))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $each)))))
