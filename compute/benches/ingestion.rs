//! Ingestion benchmark: the same synthetic cohort read as CSV, as Parquet and as a FHIR bulk export (NDJSON), from
//! files on disk, as the management API reads an upload. Prints rows per second and the peak resident memory each
//! read added, and both as ratios against CSV measured in the same run (the machines are shared and noisy).
//!
//! `cargo bench -p hanse-compute --bench ingestion`; `HANSE_BENCH_ROWS` (patients, default 100000), `HANSE_BENCH_RUNS`
//! (reads per format, default 3; the best is reported).

use std::io::BufReader;
use std::time::Instant;

use hanse_compute::{columnar, fhir, synth, table};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A memory figure of this process from `/proc/self/status` (`VmRSS:` now, `VmHWM:` peak), in MB.
fn memory_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_default();
    line.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
}

/// Reads one format's files in this process (a child of the benchmark, so that its peak memory is its own): prints
/// the rows, the seconds and the peak resident memory the read added over the process's start.
fn child(format: &str, dir: &std::path::Path) {
    let start_mb = memory_mb("VmHWM:");
    let schema = synth::schema();
    let start = Instant::now();
    let rows = match format {
        "csv" => {
            table::read_csv(BufReader::new(std::fs::File::open(dir.join("cohort.csv")).unwrap()), &schema).unwrap().rows
        }
        "parquet" => {
            columnar::read_parquet(std::fs::File::open(dir.join("cohort.parquet")).unwrap(), &schema, u64::MAX)
                .unwrap()
                .rows
        }
        _ => {
            let mapping = fhir::Mapping::from_json(&synth::fhir_mapping()).unwrap();
            let mut files = Vec::new();
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".ndjson") {
                    files.push((name, BufReader::new(std::fs::File::open(entry.path()).unwrap())));
                }
            }
            fhir::read_export(files, &mapping).unwrap().table.rows
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    println!("{rows} {seconds} {}", memory_mb("VmHWM:") - start_mb);
}

/// Runs `format`'s read `runs` times, each in a child process: the rows, the best time and the largest peak added.
fn measure(runs: usize, format: &str, dir: &std::path::Path) -> (usize, f64, f64) {
    let (mut rows, mut best, mut added) = (0, f64::INFINITY, 0.0f64);
    for _ in 0..runs {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--read", format])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let figures: Vec<&str> = text.split_whitespace().collect();
        rows = figures[0].parse().unwrap();
        best = best.min(figures[1].parse().unwrap());
        added = added.max(figures[2].parse().unwrap());
    }
    (rows, best, added)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--read") {
        return child(&args[at + 1], std::path::Path::new(&args[at + 2]));
    }
    let patients = env("HANSE_BENCH_ROWS", 100_000);
    let runs = env("HANSE_BENCH_RUNS", 3);
    let dir = tempfile::tempdir().unwrap();
    let cohort = synth::cohort(patients, 0, 42);
    synth::write_csv(&cohort, std::fs::File::create(dir.path().join("cohort.csv")).unwrap()).unwrap();
    columnar::write_parquet(&cohort, std::fs::File::create(dir.path().join("cohort.parquet")).unwrap()).unwrap();
    let mut resources = 0;
    let mut fhir_mb = 0.0;
    for (name, text) in synth::fhir_export(patients, 0, 42) {
        resources += text.lines().count();
        fhir_mb += text.len() as f64 / 1e6;
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let size = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap().len() as f64 / 1e6;
    let (csv_rows, csv_s, csv_mb) = measure(runs, "csv", dir.path());
    let (parquet_rows, parquet_s, parquet_mb) = measure(runs, "parquet", dir.path());
    let (fhir_rows, fhir_s, fhir_added) = measure(runs, "fhir", dir.path());
    assert_eq!((csv_rows, parquet_rows, fhir_rows), (patients, patients, patients));
    println!(
        "ingestion of {patients} synthetic patients, best of {runs} reads per format, each in a process of its own"
    );
    println!("format    file MB   rows/s      vs CSV   peak MB added  vs CSV");
    let line = |name: &str, mb: f64, seconds: f64, added: f64| {
        println!(
            "{name:<9} {mb:>7.1} {:>10.0} {:>8.2}x {added:>13.1} {:>6.2}x",
            patients as f64 / seconds,
            csv_s / seconds,
            added / csv_mb.max(0.1)
        );
    };
    line("CSV", size("cohort.csv"), csv_s, csv_mb);
    line("Parquet", size("cohort.parquet"), parquet_s, parquet_mb);
    line("FHIR", fhir_mb, fhir_s, fhir_added);
    println!("FHIR: {resources} resources, {:.0} resources/s", resources as f64 / fhir_s);
}
