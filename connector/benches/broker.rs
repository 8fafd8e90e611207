//! Broker benchmark: 100 real Hanse connectors with 1 000 datasets each (HealthDCAT-AP properties, one offer each),
//! crawled by a broker running as its own `hanse run` process. Prints the crawl time (first crawl and a forced full
//! recrawl), search latency p50/p99 (public listener with a signed token, and management API), a SPARQL count over
//! the federation graph, and the broker's resident memory.
//!
//! `cargo bench -p hanse --bench broker` (release). `HANSE_BENCH_PEERS=N` and `HANSE_BENCH_DATASETS=M` change the
//! size. The 100 connectors share the machine's two cores with the broker, so crawl figures are conservative.

use std::time::Instant;

use hanse::testing::Signer;
use serde_json::Value;

mod support;
use support::{KEYWORDS, percentile, rss_mb, rss_of};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let peers = env_or("HANSE_BENCH_PEERS", 100);
    let datasets = env_or("HANSE_BENCH_DATASETS", 1000);
    let root = tempfile::tempdir().unwrap();

    // The hospitals: real connectors in this process, each with its own identity, SQLite store and listeners.
    let seeding = Instant::now();
    let hospitals = support::hospitals(root.path(), peers, datasets).await;
    println!(
        "{peers} connectors × {datasets} datasets seeded and started in {:.1} s (this process: RSS {:.0} MB)",
        seeding.elapsed().as_secs_f64(),
        rss_mb("VmRSS:")
    );

    // The broker: its own process, seeded with every hospital.
    let seeds: Vec<String> = hospitals.iter().map(|h| h.state.config.participant.id.clone()).collect();
    let broker =
        support::Process::start(&root.path().join("broker"), &support::broker_config(&seeds), |_| async {}).await;
    let pid = broker.pid();
    let (public_url, management_url, api_key, client) =
        (broker.public_url.clone(), broker.management_url.clone(), broker.api_key.clone(), broker.client.clone());

    // First crawl: from the status the broker keeps (first attempt to last success).
    let status = broker.first_crawl(peers, datasets).await;
    let first = status.iter().filter_map(|s| s["lastAttempt"].as_i64()).min().unwrap();
    let last = status.iter().filter_map(|s| s["lastSuccess"].as_i64()).max().unwrap();
    let triples: u64 = status.iter().filter_map(|s| s["triples"].as_u64()).sum();
    println!(
        "first crawl of {peers} peers × {datasets} datasets: {:.1} s (first request to last graph swap; {triples} triples); broker RSS {:.0} MB",
        (last - first) as f64 / 1000.0,
        rss_of(pid, "VmRSS:")
    );

    let sum = |name: &str| status.iter().filter_map(|s| s[name].as_u64()).sum::<u64>() as f64 / 1000.0;
    println!(
        "  per-peer times summed over {peers} peers ({} at a time): fetching {:.1} s, reading into graph and index {:.1} s",
        hanse::config::BrokerConfig::default().concurrency,
        sum("fetchMs"),
        sum("indexMs")
    );

    // A forced recrawl of unchanged catalogues (each found the same and left as it is), then one after every hospital
    // changed a dataset (every graph replaced).
    for (label, round) in
        [("unchanged catalogues, nothing replaced", None), ("one dataset changed per peer, graphs replaced", Some(1))]
    {
        if let Some(round) = round {
            for hospital in &hospitals {
                support::change_dataset(&hospital.state, 0, round).await;
            }
        }
        let started = Instant::now();
        let status = broker.crawl().await;
        assert!(status.iter().all(|s| s["datasets"] == datasets), "every peer recrawled");
        println!(
            "forced recrawl ({label}): {:.1} s; broker RSS {:.0} MB now, {:.0} MB peak",
            started.elapsed().as_secs_f64(),
            rss_of(pid, "VmRSS:"),
            rss_of(pid, "VmHWM:")
        );
    }

    // Search latency, sequential: keyword + facet filters over the whole federation.
    let researcher = hanse::testing::TestParticipant::start().await;
    let broker_did = broker.participant.clone();
    let queries: Vec<String> = (0..400)
        .map(|n| {
            let keyword = KEYWORDS[n % KEYWORDS.len()];
            match n % 4 {
                0 => format!("q={keyword}"),
                1 => format!("q={keyword}+registry&minRecords=3000"),
                2 => format!("q=cohort+{}&minAge=65", n % 1000),
                _ => {
                    format!("q={keyword}&healthCategory=http%3A%2F%2Fhealthdataportal.eu%2Fns%2Fhealth%23EHR&limit=50")
                }
            }
        })
        .collect();
    for (label, signed) in [("public listener, signed token", true), ("management API", false)] {
        let mut latencies = Vec::new();
        let mut hits = 0u64;
        for query in &queries {
            let started = Instant::now();
            let request = if signed {
                client
                    .get(format!("{public_url}/broker/search?{query}"))
                    .header("Authorization", researcher.authorization(&broker_did))
            } else {
                client.get(format!("{management_url}/management/v3/search?{query}")).header("X-Api-Key", &api_key)
            };
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap_or_default();
            assert_eq!(status, 200, "{query} ({label}): {body}");
            latencies.push(started.elapsed());
            hits += body["total"].as_u64().unwrap();
        }
        latencies.sort();
        println!(
            "search over {} datasets ({label}, {} queries, {:.0} hits on average): p50 {:.2} ms, p99 {:.2} ms",
            peers * datasets,
            latencies.len(),
            hits as f64 / latencies.len() as f64,
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99)
        );
    }

    let started = Instant::now();
    let response = client
        .post(format!("{management_url}/management/broker/sparql"))
        .header("X-Api-Key", &api_key)
        .header("Content-Type", "application/sparql-query")
        .body("SELECT (COUNT(?d) AS ?n) WHERE { ?d a dcat:Dataset ; dcat:keyword \"diabetes\" }")
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    println!(
        "SPARQL count of diabetes datasets over every graph: {} in {:.0} ms",
        body["results"]["bindings"][0]["n"]["value"].as_str().unwrap_or("?"),
        started.elapsed().as_secs_f64() * 1000.0
    );
    println!("broker resident memory: {:.0} MB now, {:.0} MB peak", rss_of(pid, "VmRSS:"), rss_of(pid, "VmHWM:"));

    drop(broker);
    for hospital in hospitals {
        hospital.shutdown().await;
    }
}
