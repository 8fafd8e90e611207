//! Evaluations per second of a realistic 10-constraint policy, on one core. Prints its figures.
//!
//! `cargo bench -p hanse-policy` (release build). Target: ≥ 1 000 000 decisions/s for the hot path (`permits`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use hanse_policy::{JobContext, Policy, RequestContext, evaluate, permits};
use serde_json::json;

fn policy() -> Policy {
    Policy::from_json(&json!({
        "@id": "urn:policy:bench", "@type": "Offer",
        "permission": [{
            "action": "hanse:compute",
            "constraint": [{"and": [
                {"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"},
                {"leftOperand": "membership", "operator": "eq", "rightOperand": "active"},
                {"leftOperand": "country", "operator": "isAnyOf", "rightOperand": ["DE", "NL", "FR", "BE"]},
                {"leftOperand": "role", "operator": "isAnyOf", "rightOperand": ["researcher", "statistician"]},
                {"leftOperand": "spatial", "operator": "isPartOf", "rightOperand": "EU"},
                {"leftOperand": "dateTime", "operator": "lteq", "rightOperand": "2027-12-31T23:59:59Z"},
                {"leftOperand": "dateTime", "operator": "gteq", "rightOperand": "2026-01-01T00:00:00Z"},
                {"leftOperand": "hanse:minCellCount", "operator": "gteq", "rightOperand": "10"},
                {"leftOperand": "hanse:jobTemplate", "operator": "isAnyOf", "rightOperand": ["aggregate", "crosstab", "glm"]},
                {"leftOperand": "hanse:maxJobs", "operator": "lteq", "rightOperand": "100"}
            ]}]
        }],
        "prohibition": [{"action": "distribute"}]
    }))
    .expect("bench policy parses")
}

fn context() -> RequestContext {
    let mut ctx =
        RequestContext::new("did:web:research.example", Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap())
            .with_purpose("DUO:0000007")
            .with_claim("membership", json!("active"))
            .with_claim("country", json!("NL"))
            .with_claim("role", json!("researcher"))
            .with_job(JobContext { template: "glm".into(), min_cell_count: 10, jobs_run: 3, ..JobContext::default() });
    ctx.spatial = Some("NL".into());
    ctx
}

fn measure(name: &str, mut f: impl FnMut() -> bool) {
    // `HANSE_BENCH_ITERATIONS=N` runs exactly N decisions (for instruction counting under callgrind).
    if let Some(n) = std::env::var("HANSE_BENCH_ITERATIONS").ok().and_then(|v| v.parse::<u64>().ok()) {
        for _ in 0..n {
            assert!(black_box(f()));
        }
        println!("{name:<34} {n} decisions");
        return;
    }
    // Warm up, then run for about two seconds.
    for _ in 0..10_000 {
        black_box(f());
    }
    let mut iterations = 0u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        for _ in 0..10_000 {
            assert!(black_box(f()), "the bench context must be permitted");
        }
        iterations += 10_000;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{name:<34} {:>12.0} decisions/s  {:>8.0} ns/decision  ({iterations} in {elapsed:.2} s)",
        iterations as f64 / elapsed,
        elapsed * 1e9 / iterations as f64
    );
}

fn main() {
    let policy = policy();
    let ctx = context();
    println!("policy: 1 permission with 10 constraints (and), 1 prohibition; action hanse:compute; one thread");
    measure("permits (hot path, no trace)", || permits(black_box(&policy), "compute", black_box(&ctx)));
    measure("evaluate (full trace)", || evaluate(black_box(&policy), "compute", black_box(&ctx)).permitted);
}
