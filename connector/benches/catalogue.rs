//! Catalogue benchmark: a provider with 100 000 datasets (HealthDCAT-AP properties, one offer each), running as its
//! own `hanse run` process and measured over real HTTP on loopback. Prints the provider's start-up time (spawn to
//! ready, and to its RDF graph built), DSP catalogue page latency (p50/p99) and throughput, SPARQL keyword query
//! latency, and the provider process's resident memory (now and peak).
//!
//! `cargo bench -p hanse --bench catalogue` (release). `HANSE_BENCH_DATASETS=N` changes the size. The load generator
//! (this process) shares the machine's two cores with the provider, so throughput figures are conservative.
//!
//! `HANSE_BENCH_GRAPH=disk` (with `--features rocksdb`) keeps the catalogue graph on disk (`catalog.graph_dir`): a
//! first start builds it and is stopped with SIGTERM, and the measured start resumes it and reads back the datasets
//! kept beside it, as a restarted provider does.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;
use support::{KEYWORDS, percentile, rss_of};

/// The key the benchmark reads the provider's `/metrics` with.
const METRICS_KEY: &str = "catalogue-benchmark-metrics-key";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let datasets: usize = std::env::var("HANSE_BENCH_DATASETS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    // The researcher: a real did:web participant whose every request carries a fresh signed token (the provider
    // resolves its DID document once, then verifies a signature and records the token id per request).
    let researcher = std::sync::Arc::new(hanse::testing::TestParticipant::start().await);
    use hanse::testing::Signer;

    let on_disk = std::env::var("HANSE_BENCH_GRAPH").as_deref() == Ok("disk");
    let graph_dir = dir.path().join("catalogue-graph");
    let mut env = vec![("HANSE_MANAGEMENT_METRICS_API_KEY", METRICS_KEY)];
    if on_disk {
        env.push(("HANSE_CATALOG_GRAPH_DIR", graph_dir.to_str().unwrap()));
    }
    let members = json!([{"action": "use", "constraint": [{"leftOperand": "recipient", "operator": "isAnyOf", "rightOperand": [researcher.did, "did:web:other.example"]}]}]);
    let mut provider = support::Process::start_with(&dir.path().join("provider"), "", &env, |config| async move {
        let seeding = Instant::now();
        support::seed_catalogue(&config, datasets, members).await;
        println!("seeded {datasets} datasets into SQLite in {:.1} s", seeding.elapsed().as_secs_f64());
    })
    .await;
    let mut read_whole = None;
    if on_disk {
        // The first start builds the graph on disk; the start measured next resumes it.
        provider.until_ready().await;
        let built = graph_ready(&provider, datasets).await;
        provider.terminate().await;
        let kept_file = graph_dir.join(hanse::catalog::kept::FILE);
        let kept = std::fs::metadata(&kept_file).map_or(0, |m| m.len());
        println!(
            "catalogue graph: on disk; built by a first start in {:.2} s, {:.0} MB of files (of which {:.0} MB the \
             datasets kept for the next start)",
            built.as_secs_f64(),
            bytes_under(&graph_dir) as f64 / 1e6,
            kept as f64 / 1e6
        );
        // The baseline, in this run: a start that reads the store whole, without the datasets kept.
        std::fs::remove_file(&kept_file).unwrap();
        provider.restart(&[]);
        let whole = provider.until_ready().await;
        let whole_rss = rss_of(provider.pid(), "VmRSS:");
        graph_ready(&provider, datasets).await;
        provider.terminate().await;
        println!(
            "baseline start reading the store whole (no datasets kept), spawn to ready: {:.2} s; provider RSS {:.0} MB",
            whole.as_secs_f64(),
            whole_rss
        );
        read_whole = Some(whole);
        provider.restart(&[]);
    } else {
        println!("catalogue graph: in memory (HANSE_BENCH_GRAPH=disk and --features rocksdb keep it on disk)");
    }

    let pid = provider.pid();
    let startup = provider.until_ready().await;
    println!(
        "provider start-up, spawn to ready (store open, catalogue views loaded, serving): {:.2} s; provider RSS {:.0} MB",
        startup.as_secs_f64(),
        rss_of(pid, "VmRSS:")
    );
    if let Some(whole) = read_whole {
        println!(
            "  reading the datasets kept beside the graph back: {:.2}x the baseline's time",
            startup.as_secs_f64() / whole.as_secs_f64()
        );
    }
    let graph = graph_ready(&provider, datasets).await;
    println!(
        "RDF graph ready {:.2} s after the spawn ({}); provider RSS {:.0} MB",
        graph.as_secs_f64(),
        if on_disk { "resumed from disk" } else { "built in memory" },
        rss_of(pid, "VmRSS:")
    );
    let checked = audit_checked(&provider).await;
    println!(
        "audit self-check done {:.2} s after the spawn (changes waited for it; reads were served meanwhile)",
        checked.as_secs_f64()
    );
    let provider_id = provider.participant.clone();
    let provider = &provider;
    let public_url = provider.public_url.clone();

    let client = reqwest::Client::builder().no_gzip().pool_max_idle_per_host(64).build().unwrap();
    let url = format!("{public_url}/protocol/2025-1/catalog/request");
    let body = json!({"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": "CatalogRequestMessage", "filter": []}).to_string();
    let request = |cursor: usize| {
        let target =
            if cursor == 0 { format!("{url}?limit=50") } else { format!("{url}?limit=50&after=dataset-{cursor:06}") };
        client
            .post(target)
            .header("Authorization", researcher.authorization(&provider_id))
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
    };

    // Latency: sequential requests for pages at spread-out cursors.
    let mut latencies = Vec::new();
    for n in 0..2000usize {
        let cursor = (n * 7919) % datasets.saturating_sub(60).max(1);
        let started = Instant::now();
        let response = request(cursor).await.unwrap();
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        latencies.push(started.elapsed());
        assert_eq!(page["dataset"].as_array().map(Vec::len), Some(50));
    }
    latencies.sort();
    println!(
        "catalogue page of 50 (HTTP round trip, sequential, {} requests): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );

    // Throughput: 16 concurrent clients for 5 seconds.
    let deadline = Instant::now() + Duration::from_secs(5);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..16usize {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        let (researcher, provider) = (researcher.clone(), provider_id.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            let mut cursor = worker * 1000;
            while Instant::now() < deadline {
                cursor = (cursor + 4099) % datasets.saturating_sub(60).max(1);
                let response = client
                    .post(format!("{url}?limit=50&after=dataset-{cursor:06}"))
                    .header("Authorization", researcher.authorization(&provider))
                    .header("Content-Type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                let _ = response.bytes().await.unwrap();
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    println!(
        "catalogue throughput (16 concurrent clients, pages of 50): {:.0} requests/s",
        total as f64 / started.elapsed().as_secs_f64()
    );

    // SPARQL keyword search over the management API.
    let sparql = format!("{}/management/sparql", provider.management_url);
    let mut latencies = Vec::new();
    for n in 0..200usize {
        let keyword = KEYWORDS[n % KEYWORDS.len()];
        let query = format!("SELECT ?ds ?title WHERE {{ ?ds dcat:keyword \"{keyword}\" ; dct:title ?title }} LIMIT 50");
        let started = Instant::now();
        let response = client
            .post(&sparql)
            .header("X-Api-Key", &provider.api_key)
            .header("Content-Type", "application/sparql-query")
            .body(query)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let results: Value = response.json().await.unwrap();
        latencies.push(started.elapsed());
        assert_eq!(results["results"]["bindings"].as_array().unwrap().len(), 50);
    }
    latencies.sort();
    println!(
        "SPARQL keyword query (LIMIT 50, {} queries): p50 {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99)
    );
    println!(
        "provider resident memory: {:.0} MB now, {:.0} MB peak",
        rss_of(provider.pid(), "VmRSS:"),
        rss_of(provider.pid(), "VmHWM:")
    );
}

/// Waits until the provider's graph holds every dataset (`hanse_catalog_graph_ready`, asked every 20 ms); answers
/// how long after its spawn that was. Its views hold `datasets`.
async fn graph_ready(provider: &support::Process, datasets: usize) -> Duration {
    let url = format!("{}/metrics", provider.management_url);
    loop {
        let metrics = provider.client.get(&url).bearer_auth(METRICS_KEY).send().await.unwrap().text().await.unwrap();
        let value = |name: &str| {
            metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or_else(|| {
                panic!("no {name} in the provider's metrics:\n{metrics}");
            })
        };
        assert_eq!(value("hanse_catalog_resources{kind=\"dataset\"}"), datasets as f64);
        if value("hanse_catalog_graph_ready") == 1.0 {
            return provider.spawned.elapsed();
        }
        assert!(provider.spawned.elapsed() < Duration::from_secs(1800), "the graph was not built");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the audit log's start-up self-check is done (`/health/ready` no longer says it runs; changes wait for
/// it, reads do not); answers how long after the provider's spawn that was.
async fn audit_checked(provider: &support::Process) -> Duration {
    let url = format!("{}/health/ready", provider.management_url);
    loop {
        let ready: Value = provider.client.get(&url).send().await.unwrap().json().await.unwrap();
        if !ready["components"]["audit"]["detail"].is_string() {
            return provider.spawned.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The bytes of the files under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => bytes_under(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}
