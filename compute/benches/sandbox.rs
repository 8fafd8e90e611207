//! Sandbox benchmark: the validation algorithm (`algorithms/validation.wat`) run in the WebAssembly interpreter
//! against the same site step written in Rust, on the same table in the same run. Prints the module's start (compile,
//! instantiate, a run over one row), the cost per row of each and their ratio, and the fuel a row takes.
//!
//! `cargo bench -p hanse-compute --bench sandbox`; `HANSE_BENCH_ROWS` (default 200000), `HANSE_BENCH_RUNS` (runs of
//! each, default 5; the best is reported).

use std::time::{Duration, Instant};

use hanse_compute::analysis::{Cell, Grouped, Metric};
use hanse_compute::disclosure::{self, Limits};
use hanse_compute::sandbox::{self, Algorithm, Bounds, Parameters, examples};
use hanse_compute::synth;
use hanse_compute::table::Table;
use serde_json::{Value, json};

const TERMS: [&str; 4] = ["readmitted", "age", "hba1c", "bmi"];
const MODEL: [f64; 4] = [-6.0, 0.04, 0.3, 0.05];
const BINS: usize = 10;
const LIMITS: Limits = Limits { k: 5, dominance: 0.9, max_cells: 1000 };

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The validation algorithm's site step, natively: the same cells, sums and release.
fn native(table: &Table) -> Value {
    let at: Vec<usize> = TERMS.iter().map(|t| table.schema.column(t).unwrap().0).collect();
    let empty = Cell {
        levels: vec![0],
        n: 0,
        sums: vec![0.0; 2],
        squares: vec![0.0; 2],
        absolutes: vec![0.0; 2],
        largest: vec![0.0; 2],
    };
    let mut cells: Vec<Cell> = (0..BINS).map(|c| Cell { levels: vec![c], ..empty.clone() }).collect();
    for r in 0..table.rows {
        let y = table.values[at[0]][r];
        let mut eta = MODEL[0];
        for j in 1..TERMS.len() {
            eta += MODEL[j] * table.values[at[j]][r];
        }
        let p = 1.0 / (1.0 + (-eta).exp());
        if y.is_nan() || p.is_nan() {
            continue;
        }
        let cell = &mut cells[((p * BINS as f64).floor() as usize).min(BINS - 1)];
        cell.n += 1;
        for (m, v) in [y, p].into_iter().enumerate() {
            cell.sums[m] += v;
            cell.squares[m] += v * v;
            cell.absolutes[m] += v.abs();
            cell.largest[m] = cell.largest[m].max(v.abs());
        }
    }
    let mut total = empty;
    for cell in &cells {
        total.n += cell.n;
        for m in 0..2 {
            total.sums[m] += cell.sums[m];
            total.squares[m] += cell.squares[m];
            total.absolutes[m] += cell.absolutes[m];
            total.largest[m] = total.largest[m].max(cell.largest[m]);
        }
    }
    let statistics = vec!["count".into(), "sum".into(), "mean".into()];
    let grouped = Grouped {
        dimensions: vec![("cell".into(), (0..BINS).map(|c| c.to_string()).collect())],
        metrics: ["outcome", "probability"]
            .map(|m| Metric { column: m.into(), statistics: statistics.clone() })
            .to_vec(),
        cells,
        total,
    };
    disclosure::release_grouped(&grouped, &LIMITS, false)
}

fn best(runs: usize, mut run: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .min()
        .unwrap()
}

fn main() {
    let (rows, runs) = (env("HANSE_BENCH_ROWS", 200_000), env("HANSE_BENCH_RUNS", 5));
    let table = synth::cohort(rows, 0, 7);
    let one = synth::cohort(1, 0, 7);
    let parameters = Parameters::from_json(&json!({"columns": TERMS, "values": MODEL, "cells": BINS})).unwrap();
    let declared = examples::validation();
    let bounds = Bounds { fuel: u64::MAX / 2, memory_bytes: 16 << 20 };

    let compile = best(runs * 4, || drop(Algorithm::compile(examples::VALIDATION.as_bytes()).unwrap()));
    let algorithm = Algorithm::compile(examples::VALIDATION.as_bytes()).unwrap();
    let start = best(runs * 4, || {
        sandbox::site_step(&algorithm, &one, &parameters, &declared, &LIMITS, &bounds).unwrap();
    });
    let (mut in_module, mut natively) = (Value::Null, Value::Null);
    let module = best(runs, || {
        in_module = sandbox::site_step(&algorithm, &table, &parameters, &declared, &LIMITS, &bounds).unwrap();
    });
    let rust = best(runs, || natively = native(&table));
    assert_eq!(in_module["cells"], natively["cells"], "the module and the native step release the same cells");

    // The fuel a row takes: a run with a known budget, read back from the error of a run one row short of it.
    let fuel = {
        let metered = Bounds { fuel: 1 << 40, ..bounds };
        let used = |rows: usize| {
            let table = synth::cohort(rows, 0, 7);
            let mut low = 0u64;
            let mut high = metered.fuel;
            while low + 1 < high {
                let mid = low + (high - low) / 2;
                let ok = sandbox::site_step(
                    &algorithm,
                    &table,
                    &parameters,
                    &declared,
                    &LIMITS,
                    &Bounds { fuel: mid, ..bounds },
                )
                .is_ok();
                if ok { high = mid } else { low = mid }
            }
            high
        };
        (used(2000) - used(1000)) as f64 / 1000.0
    };
    let per_row = |d: Duration| d.as_secs_f64() * 1e9 / rows as f64;
    println!("sandbox: the validation algorithm on {rows} rows, best of {runs}");
    println!("| | time | per row | ratio |");
    println!("|---|---|---|---|");
    println!("| native (Rust) | {:.1} ms | {:.1} ns | 1.00× |", rust.as_secs_f64() * 1e3, per_row(rust));
    println!(
        "| module (wasmi) | {:.1} ms | {:.1} ns | {:.1}× |",
        module.as_secs_f64() * 1e3,
        per_row(module),
        module.as_secs_f64() / rust.as_secs_f64()
    );
    println!(
        "module start: compile {:.0} µs, compile + instantiate + one row {:.0} µs",
        compile.as_secs_f64() * 1e6,
        (compile + start).as_secs_f64() * 1e6
    );
    println!("fuel per row: {fuel:.0} (the default fuel limit covers {:.0} rows)", 10_000_000_000f64 / fuel);
}
