//! Providers' algorithms in the sandbox: the example algorithms across sites against the same computation on the
//! pooled rows, disclosure control of what a module releases, and the limits that stop a module.

use hanse_compute::analysis::JobError;
use hanse_compute::disclosure::Limits;
use hanse_compute::sandbox::{self, Algorithm, Bounds, Declared, Parameters, examples};
use hanse_compute::synth;
use hanse_compute::table::Table;
use serde_json::{Value, json};

const LIMITS: Limits = Limits { k: 5, dominance: 0.9, max_cells: 1000 };
const BOUNDS: Bounds = Bounds { fuel: 2_000_000_000, memory_bytes: 16 << 20 };

fn parameters(value: Value) -> Parameters {
    Parameters::from_json(&value).unwrap()
}

fn column(table: &Table, name: &str) -> usize {
    table.schema.column(name).unwrap().0
}

/// The validation model: readmission from age, HbA1c and BMI.
const TERMS: [&str; 4] = ["readmitted", "age", "hba1c", "bmi"];
const MODEL: [f64; 4] = [-6.0, 0.04, 0.3, 0.05];
const BINS: usize = 8;

#[test]
fn the_validation_algorithm_across_three_sites_gives_the_pooled_auc() {
    let algorithm = Algorithm::compile(examples::VALIDATION.as_bytes()).unwrap();
    assert!(algorithm.finishes());
    let declared = examples::validation();
    let job = parameters(json!({"columns": TERMS, "values": MODEL, "cells": BINS}));
    let tables: Vec<Table> = (0..3).map(|site| synth::cohort(4000, site, 11)).collect();
    let released: Vec<Value> = tables
        .iter()
        .map(|table| sandbox::site_step(&algorithm, table, &job, &declared, &LIMITS, &BOUNDS).unwrap())
        .collect();
    for site in &released {
        assert_eq!(site["suppressed"], json!([]), "every cell is released: {site:#}");
        // A site's cell carries its count and the sums of its metrics, nothing per row.
        assert!(site["cells"][0]["metrics"]["outcome"]["sum"].is_number(), "{site:#}");
    }
    let pooled = sandbox::pool(&released, BINS, &declared).unwrap();
    let results =
        sandbox::named(&declared, &sandbox::finish(&algorithm, pooled, &job.values, &declared, &BOUNDS).unwrap());
    let examples::Validation { auc, observed, expected } = examples::pooled_validation(&tables, &TERMS, &MODEL, BINS);
    let got = |name: &str| results[name].as_f64().unwrap_or_else(|| panic!("{name}: {results:?}"));
    assert!((got("auc") - auc).abs() < 1e-9, "AUC {} across sites, {auc} pooled", got("auc"));
    assert!(auc > 0.6 && auc < 1.0, "the model discriminates: {auc}");
    assert_eq!(got("observed"), observed);
    assert!((got("expected") - expected).abs() < 1e-6 * expected);
    assert!((got("observedToExpected") - observed / expected).abs() < 1e-9);
    assert_eq!(got("rows"), 12000.0);
}

#[test]
fn the_logistic_algorithm_trains_across_three_sites_as_on_the_pooled_rows() {
    let algorithm = Algorithm::compile(examples::LOGISTIC.as_bytes()).unwrap();
    let declared = examples::logistic();
    let terms = ["readmitted", "hba1c", "smoker"];
    let tables: Vec<Table> = (0..3).map(|site| synth::cohort(3000, site, 5)).collect();
    let mut values = vec![0.5, 0.0, 0.0, 0.0];
    let mut pooled_values = values.clone();
    let job = parameters(json!({"columns": terms, "values": values, "cells": 1, "rounds": 6}));
    for _ in 0..6 {
        let released: Vec<Value> = tables
            .iter()
            .map(|t| sandbox::site_round(&algorithm, t, &job, &values, &declared, &LIMITS, &BOUNDS).unwrap())
            .collect();
        for site in &released {
            assert_eq!(site["suppressed"], json!([]), "{site:#}");
        }
        let pooled = sandbox::pool(&released, 1, &declared).unwrap();
        let next = sandbox::finish(&algorithm, pooled, &values, &declared, &BOUNDS).unwrap();
        values = next.into_iter().map(Option::unwrap).collect();

        // The same step on the pooled rows.
        let (mut gradient, mut n) = (vec![0.0; 3], 0.0);
        for table in &tables {
            let at: Vec<usize> = terms.iter().map(|t| column(table, t)).collect();
            for r in 0..table.rows {
                let eta = pooled_values[1]
                    + pooled_values[2] * table.values[at[1]][r]
                    + pooled_values[3] * table.values[at[2]][r];
                let residual = table.values[at[0]][r] - 1.0 / (1.0 + (-eta).exp());
                gradient[0] += residual;
                gradient[1] += residual * table.values[at[1]][r];
                gradient[2] += residual * table.values[at[2]][r];
                n += 1.0;
            }
        }
        for j in 0..3 {
            pooled_values[j + 1] += pooled_values[0] * gradient[j] / n;
        }
        for (a, b) in values.iter().zip(&pooled_values) {
            assert!((a - b).abs() < 1e-9, "across sites {values:?}, pooled {pooled_values:?}");
        }
    }
    assert!(values[2] > 0.0, "HbA1c raises the risk of readmission: {values:?}");
}

#[test]
fn a_histogram_bin_of_fewer_than_k_rows_is_suppressed() {
    let algorithm = Algorithm::compile(examples::HISTOGRAM.as_bytes()).unwrap();
    assert!(!algorithm.finishes());
    let table = synth::cohort(60, 0, 3);
    // Ages in bins of 5 years from 20: the outer bins hold few patients.
    let job = parameters(json!({"columns": ["age"], "values": [20.0, 5.0], "cells": 16}));
    let released = sandbox::site_step(&algorithm, &table, &job, &Declared::default(), &LIMITS, &BOUNDS).unwrap();
    let ages = &table.values[column(&table, "age")];
    let cells = released["cells"].as_array().unwrap();
    let mut small = 0;
    for (bin, cell) in cells.iter().enumerate() {
        let rows = ages.iter().filter(|&&a| ((((a - 20.0) / 5.0).floor()).clamp(0.0, 15.0)) as usize == bin).count();
        match cell["n"].as_u64() {
            Some(n) => {
                assert_eq!(n as usize, rows, "bin {bin}");
                assert!(n == 0 || n >= LIMITS.k, "bin {bin} released {n} rows");
            }
            None => small += usize::from(rows > 0 && (rows as u64) < LIMITS.k),
        }
    }
    assert!(small > 0, "the test's table has a small bin: {released:#}");
    let reasons = released["suppressed"].as_array().unwrap();
    assert!(reasons.iter().any(|r| r["reason"] == "0 < n < 5"), "{released:#}");
    assert_eq!(released["total"]["n"], json!(60));
}

fn refusal(code: &str, job: Value) -> JobError {
    let table = synth::cohort(50, 0, 1);
    let parameters = parameters(job);
    match Algorithm::compile(code.as_bytes()) {
        Err(error) => error,
        Ok(algorithm) => {
            sandbox::site_step(&algorithm, &table, &parameters, &examples::validation(), &LIMITS, &BOUNDS).unwrap_err()
        }
    }
}

#[test]
fn a_module_that_loops_or_allocates_past_its_limits_is_stopped() {
    let job = json!({"cells": 2});
    let looping = r#"(module (func (export "site") (loop $forever (br $forever))))"#;
    let error = refusal(looping, job.clone());
    assert!(matches!(&error, JobError::Sandbox(m) if m.contains("fuel")), "{error:?}");

    let growing = r#"(module (memory 1) (func (export "site") (drop (memory.grow (i32.const 1000)))))"#;
    let error = refusal(growing, job.clone());
    assert!(matches!(&error, JobError::Sandbox(m) if m.contains("memory limit of 16 MiB")), "{error:?}");

    let large = r#"(module (memory 1000) (func (export "site")))"#;
    let error = refusal(large, job.clone());
    assert!(matches!(&error, JobError::Sandbox(m) if m.contains("memory limit of 16 MiB")), "{error:?}");

    let deep = r#"(module (func $down (export "site") (call $down)))"#;
    let error = refusal(deep, job);
    assert!(matches!(&error, JobError::Sandbox(_)), "{error:?}");
}

#[test]
fn a_module_has_only_the_hosts_interface_and_cannot_release_rows_itself() {
    let job = json!({"columns": ["age"], "cells": 2});
    let clock = r#"(module (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))
                   (func (export "site")))"#;
    let error = refusal(clock, job.clone());
    assert!(matches!(&error, JobError::Invalid(m) if m.contains("wasi_snapshot_preview1.clock_time_get")), "{error:?}");
    assert!(matches!(refusal("(module)", job.clone()), JobError::Invalid(m) if m.contains("`site`")));

    // A result is the orchestrator's, from pooled cells: at a site it stops the module.
    let result = r#"(module (import "hanse" "result" (func $result (param i32 f64)))
                    (func (export "site") (call $result (i32.const 0) (f64.const 61))))"#;
    let error = refusal(result, job.clone());
    assert!(matches!(&error, JobError::Sandbox(m) if m.contains("not at a site")), "{error:?}");

    // A row counts once: assigning it to a second cell, or measuring it twice, stops the module.
    let twice = r#"(module (import "hanse" "assign" (func $assign (param i32 i32)))
                   (func (export "site") (call $assign (i32.const 0) (i32.const 0)) (call $assign (i32.const 0) (i32.const 1))))"#;
    let error = refusal(twice, job.clone());
    assert!(matches!(&error, JobError::Sandbox(m) if m.contains("assigned twice")), "{error:?}");

    // An error names no value the module chose (here the cell it asked for).
    let far = r#"(module (import "hanse" "assign" (func $assign (param i32 i32)))
                 (func (export "site") (call $assign (i32.const 0) (i32.const 4242))))"#;
    let error = refusal(far, job.clone());
    assert!(matches!(&error, JobError::Sandbox(m) if m.contains("no such cell") && !m.contains("4242")), "{error:?}");

    // A module that puts one row per cell gets every cell suppressed: there is no way around the host's counting.
    let singles = r#"(module (import "hanse" "assign" (func $assign (param i32 i32)))
                     (func (export "site") (call $assign (i32.const 0) (i32.const 0)) (call $assign (i32.const 1) (i32.const 1))))"#;
    let algorithm = Algorithm::compile(singles.as_bytes()).unwrap();
    let table = synth::cohort(50, 0, 1);
    let released =
        sandbox::site_step(&algorithm, &table, &parameters(job), &Declared::default(), &LIMITS, &BOUNDS).unwrap();
    assert_eq!(released["cells"][0]["n"], Value::Null);
    assert_eq!(released["cells"][1]["n"], Value::Null);
    assert_eq!(released["total"]["n"], Value::Null);
}
