//! Audit log benchmark (prints figures; not a timed test): append throughput — one entry per transaction, as a
//! state change appends it, and in batches — the self-check of the whole log, and proof generation at 1 million
//! entries, on SQLite (the embedded
//! default) and, unless `HANSE_TEST_SKIP_POSTGRES=1`, PostgreSQL.
//!
//! `cargo bench -p hanse --bench audit` (`HANSE_AUDIT_BENCH_ENTRIES` changes the size, default 1 000 000).

mod support;

use std::time::{Duration, Instant};

use hanse::audit::Event;
use hanse::testing::{TestDatabase, backends};
use serde_json::json;

fn event(i: u64) -> Event {
    // About the size of a negotiation transition: ids and digests.
    Event::new(
        "negotiation.transition",
        json!({"process": format!("urn:uuid:00000000-0000-4000-8000-{i:012}"), "role": "provider",
               "from": "REQUESTED", "to": "AGREED", "received": format!("{:064x}", i)}),
    )
    .participant(Some("did:web:hospital-b.example"))
    .agreement(Some(&format!("urn:uuid:{i:036}")))
}

fn main() {
    let entries: u64 =
        std::env::var("HANSE_AUDIT_BENCH_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    for backend in backends() {
        runtime.block_on(async {
            let database = TestDatabase::new(backend);
            let store = database.open().await;
            // One entry per transaction.
            let single = 5_000u64;
            let started = Instant::now();
            for i in 0..single {
                store.audit.append_audit(vec![event(i)]).await.unwrap();
            }
            let single_rate = single as f64 / started.elapsed().as_secs_f64();
            // The rest in batches of 1 000 (a bulk import's transactions).
            let started = Instant::now();
            let mut next = single;
            while next < entries {
                let batch: Vec<Event> = (next..(next + 1_000).min(entries)).map(event).collect();
                next += batch.len() as u64;
                store.audit.append_audit(batch).await.unwrap();
            }
            let batch_rate = (entries - single) as f64 / started.elapsed().as_secs_f64();
            let size = store.audit.audit_frontier().await.unwrap().size;
            assert_eq!(size, entries);
            // Proofs at full size, from stored subtree hashes.
            let mut inclusion = Vec::new();
            let mut consistency = Vec::new();
            let mut state = 0x9E37_79B9_7F4A_7C15u64;
            for _ in 0..500 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let seq = state % size;
                let started = Instant::now();
                let proof = hanse::audit::inclusion_proof(&store.audit, seq, size).await.unwrap();
                inclusion.push(started.elapsed());
                assert!(!proof.is_empty());
                let started = Instant::now();
                hanse::audit::consistency_proof(&store.audit, 1 + seq, size).await.unwrap();
                consistency.push(started.elapsed());
            }
            // The self-check recomputes the whole log from the stored entries (the start-up and hourly check).
            let started = Instant::now();
            let checked = store.audit.self_check("did:web:hospital-b.example", &Default::default()).await.unwrap();
            let check_seconds = started.elapsed().as_secs_f64();
            assert_eq!((checked.size, checked.fault), (size, None));
            println!(
                "{backend:?}: self-check of {size} entries in {check_seconds:.2} s ({:.0} entries/s, {:.2}x the batched append rate)",
                size as f64 / check_seconds,
                size as f64 / check_seconds / batch_rate
            );
            inclusion.sort();
            consistency.sort();
            let mean = |d: &[Duration]| d.iter().sum::<Duration>().as_secs_f64() * 1000.0 / d.len() as f64;
            println!(
                "{backend:?}: {size} entries; append {single_rate:.0} entries/s one per transaction, {batch_rate:.0} entries/s in batches of 1000; \
                 inclusion proof mean {:.2} ms p99 {:.2} ms; consistency proof mean {:.2} ms p99 {:.2} ms; peak RSS {:.0} MB",
                mean(&inclusion),
                support::percentile(&inclusion, 0.99),
                mean(&consistency),
                support::percentile(&consistency, 0.99),
                support::rss_mb("VmHWM:")
            );
            store.close().await;
        });
    }
}
