//! Memory under repetition: what a broker and a provider hold after the same work is done again and again. A
//! connector that runs for months must not grow with the number of crawls or catalogue writes.
//!
//! 1. A broker (its own `hanse run` process) crawls real hospital connectors, then is forced to recrawl them
//!    `HANSE_BENCH_ROUNDS` times while nothing changes, then as many times with one dataset changed per hospital
//!    before each crawl (every peer's graph replaced). Its RSS is printed after every tenth crawl, with the ratio to
//!    its RSS after the first crawl.
//! 2. A provider (its own process) with `HANSE_BENCH_PROVIDER_DATASETS` datasets has its contract definition written
//!    again `HANSE_BENCH_ROUNDS` times (which rewrites every dataset's description in its RDF graph) and 100 datasets
//!    changed each round; its RSS likewise. `HANSE_BENCH_GRAPH=disk` (with `--features rocksdb`) keeps its graph on
//!    disk (`catalog.graph_dir`), as a large catalogue would.
//!
//! `cargo bench -p hanse --bench repetition` (release). `HANSE_BENCH_PEERS` (3) and `HANSE_BENCH_DATASETS` (1 000)
//! size the federation; `HANSE_BENCH_ROUNDS` (100); `HANSE_BENCH_PROVIDER_DATASETS` (10 000).

use std::time::Instant;

use reqwest::Method;
use serde_json::json;

mod support;
use support::rss_of;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Prints a process's RSS after `round` and its ratio to `base` (MB).
fn report(what: &str, round: usize, pid: u32, base: f64, started: Instant) {
    let now = rss_of(pid, "VmRSS:");
    println!(
        "  {what} {round:>3}: RSS {now:.0} MB ({:.2}× the first), peak {:.0} MB, {:.1} s so far",
        now / base,
        rss_of(pid, "VmHWM:"),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let peers = env_or("HANSE_BENCH_PEERS", 3);
    let datasets = env_or("HANSE_BENCH_DATASETS", 1000);
    let rounds = env_or("HANSE_BENCH_ROUNDS", 100);
    let provider_datasets = env_or("HANSE_BENCH_PROVIDER_DATASETS", 10_000);
    let root = tempfile::tempdir().unwrap();

    // 1. The broker.
    let hospitals = support::hospitals(root.path(), peers, datasets).await;
    let seeds: Vec<String> = hospitals.iter().map(|h| h.state.config.participant.id.clone()).collect();
    let broker =
        support::Process::start(&root.path().join("broker"), &support::broker_config(&seeds), |_| async {}).await;
    let pid = broker.pid();
    let status = broker.first_crawl(peers, datasets).await;
    let triples: u64 = status.iter().filter_map(|s| s["triples"].as_u64()).sum();
    // Let the first crawl's transient memory go before taking the base figure.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let base = rss_of(pid, "VmRSS:");
    println!("broker: first crawl of {peers} peers × {datasets} datasets ({triples} triples): RSS {base:.0} MB");
    for (label, changing) in
        [("unchanged peers, forced recrawl", false), ("one dataset changed per peer, recrawl", true)]
    {
        println!("{label}, {rounds} times:");
        let started = Instant::now();
        for round in 1..=rounds {
            if changing {
                for hospital in &hospitals {
                    support::change_dataset(&hospital.state, round % datasets, round).await;
                }
            }
            let status = broker.crawl().await;
            assert!(status.iter().all(|s| s["datasets"] == datasets), "every peer recrawled whole");
            if round % 10 == 0 {
                report("crawl", round, pid, base, started);
            }
        }
    }
    drop(broker);
    for hospital in hospitals {
        hospital.shutdown().await;
    }

    // 2. The provider.
    let seeding = Instant::now();
    let graph_dir = root.path().join("provider-graph");
    let on_disk = std::env::var("HANSE_BENCH_GRAPH").as_deref() == Ok("disk");
    let env: Vec<(&str, &str)> =
        if on_disk { vec![("HANSE_CATALOG_GRAPH_DIR", graph_dir.to_str().unwrap())] } else { Vec::new() };
    let provider = support::Process::start_with(&root.path().join("provider"), "", &env, |config| async move {
        support::seed_catalogue(&config, provider_datasets, json!([{"action": "use"}])).await;
    })
    .await;
    provider.ready("/management/v3/contractdefinitions/all").await;
    let pid = provider.pid();
    let definition = json!({
        "@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"},
        "@id": "all", "accessPolicyId": "members", "contractPolicyId": "open", "assetsSelector": []
    });
    let write_definition = || async {
        let response = provider
            .management(Method::PUT, "/management/v3/contractdefinitions")
            .json(&definition)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.text().await.unwrap_or_default());
    };
    if on_disk {
        // A first start builds the graph on disk while it serves; a write waits for that build.
        write_definition().await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let base = rss_of(pid, "VmRSS:");
    println!(
        "provider: {provider_datasets} datasets seeded and loaded in {:.1} s, graph {}: RSS {base:.0} MB",
        seeding.elapsed().as_secs_f64(),
        if on_disk { "on disk" } else { "in memory" }
    );
    println!("contract definition written again and 100 datasets changed, {rounds} times:");
    let started = Instant::now();
    for round in 1..=rounds {
        write_definition().await;
        for i in 0..100 {
            let mut body = support::asset_body((round * 100 + i) % provider_datasets);
            body["properties"]["title"] = json!(format!("Revision {round}"));
            let response = provider.management(Method::PUT, "/management/v3/assets").json(&body).send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.text().await.unwrap_or_default());
        }
        if round % 10 == 0 {
            report("round", round, pid, base, started);
        }
    }
}
