//! Catalogue benchmark: a connector with 100 000 datasets (HealthDCAT-AP properties, one offer each), measured over
//! real HTTP on loopback. Prints start-up time, DSP catalogue page latency (p50/p99) and throughput, SPARQL keyword
//! query latency, and resident memory.
//!
//! `cargo bench -p hanse --bench catalogue` (release). `HANSE_BENCH_DATASETS=N` changes the size. The load generator
//! runs in the same process as the connector and shares its two cores, so throughput figures are conservative.
//!
//! `HANSE_BENCH_GRAPH=disk` (with `--features rocksdb`) keeps the catalogue graph on disk (`catalog.graph_dir`): a
//! first start in a child process builds it, and the measured start resumes it, as a restarted provider does.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;
use support::{KEYWORDS, percentile, rss_mb};

/// Where the child process that builds the graph on disk finds the connector's configuration.
const BUILD_GRAPH: &str = "HANSE_BENCH_BUILD_GRAPH";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Ok(config_file) = std::env::var(BUILD_GRAPH) {
        return build_graph(std::path::Path::new(&config_file)).await;
    }
    let datasets: usize = std::env::var("HANSE_BENCH_DATASETS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let (done, config, public, management) = hanse::testing::initialised(dir.path()).await;
    let provider = config.participant.id.clone();
    // The researcher: a real did:web participant whose every request carries a fresh signed token (the provider
    // resolves its DID document once, then verifies a signature and records the token id per request).
    let researcher = std::sync::Arc::new(hanse::testing::TestParticipant::start().await);
    use hanse::testing::Signer;

    let seeding = Instant::now();
    let members = json!([{"action": "use", "constraint": [{"leftOperand": "recipient", "operator": "isAnyOf", "rightOperand": [researcher.did, "did:web:other.example"]}]}]);
    support::seed_catalogue(&config, datasets, members).await;
    println!("seeded {datasets} datasets into SQLite in {:.1} s", seeding.elapsed().as_secs_f64());

    let (config, public, management) = if std::env::var("HANSE_BENCH_GRAPH").as_deref() == Ok("disk") {
        graph_on_disk(dir.path(), &done.config_file, config, public, management).await
    } else {
        println!("catalogue graph: in memory (HANSE_BENCH_GRAPH=disk and --features rocksdb keep it on disk)");
        (config, public, management)
    };

    let rss_before = rss_mb("VmRSS:");
    let starting = Instant::now();
    let running = hanse::server::start_on(config, public, management).await.unwrap();
    let startup = starting.elapsed();
    println!(
        "start-up to serving (store open + catalogue views loaded): {:.2} s; RSS {:.0} MB (+{:.0} MB)",
        startup.as_secs_f64(),
        rss_mb("VmRSS:"),
        rss_mb("VmRSS:") - rss_before
    );
    // The audit log's start-up self-check runs while the connector serves; changes wait for it.
    while running.state.store.audit.appends_held() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "audit self-check done {:.2} s after the start (changes waited for it; reads were served meanwhile)",
        starting.elapsed().as_secs_f64()
    );
    assert!(running.state.catalogue.graph_built(Duration::from_secs(600)), "the graph is built");
    println!(
        "RDF graph ready ({:?}) {:.2} s after the start: {} triples; RSS {:.0} MB (+{:.0} MB)",
        running.state.catalogue.graph_start().expect("the graph is ready"),
        starting.elapsed().as_secs_f64(),
        running.state.catalogue.triples(),
        rss_mb("VmRSS:"),
        rss_mb("VmRSS:") - rss_before
    );

    let client = reqwest::Client::builder().no_gzip().pool_max_idle_per_host(64).build().unwrap();
    let url = format!("{}/protocol/2025-1/catalog/request", running.public_url());
    let body = json!({"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": "CatalogRequestMessage", "filter": []}).to_string();
    let request = |cursor: usize| {
        let target =
            if cursor == 0 { format!("{url}?limit=50") } else { format!("{url}?limit=50&after=dataset-{cursor:06}") };
        client
            .post(target)
            .header("Authorization", researcher.authorization(&provider))
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
        let (researcher, provider) = (researcher.clone(), provider.clone());
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
    let sparql = format!("{}/management/sparql", running.management_url());
    let mut latencies = Vec::new();
    for n in 0..200usize {
        let keyword = KEYWORDS[n % KEYWORDS.len()];
        let query = format!("SELECT ?ds ?title WHERE {{ ?ds dcat:keyword \"{keyword}\" ; dct:title ?title }} LIMIT 50");
        let started = Instant::now();
        let response = client
            .post(&sparql)
            .header("X-Api-Key", &done.api_key)
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
    println!("resident memory: {:.0} MB now, {:.0} MB peak", rss_mb("VmRSS:"), rss_mb("VmHWM:"));
    running.shutdown().await;
}

/// Sets the provider's graph on disk, and builds it there in a child process on the same addresses (its memory is
/// not this process's): the start measured next resumes it.
async fn graph_on_disk(
    dir: &std::path::Path,
    config_file: &std::path::Path,
    mut config: hanse::config::Config,
    public: tokio::net::TcpListener,
    management: tokio::net::TcpListener,
) -> (hanse::config::Config, tokio::net::TcpListener, tokio::net::TcpListener) {
    let graph_dir = dir.join("catalogue-graph");
    config.catalog.graph_dir = Some(graph_dir.clone());
    let (public_addr, management_addr) = (public.local_addr().unwrap(), management.local_addr().unwrap());
    drop((public, management));
    let building = Instant::now();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .env(BUILD_GRAPH, config_file)
        .env("HANSE_BENCH_GRAPH_DIR", &graph_dir)
        .env("HANSE_BENCH_PUBLIC", public_addr.to_string())
        .env("HANSE_BENCH_MANAGEMENT", management_addr.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "the graph is built on disk");
    let size: u64 = bytes_under(&graph_dir);
    println!(
        "catalogue graph: on disk; built by a first start (another process) in {:.2} s, {:.0} MB of files",
        building.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );
    let public = tokio::net::TcpListener::bind(public_addr).await.unwrap();
    let management = tokio::net::TcpListener::bind(management_addr).await.unwrap();
    (config, public, management)
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

/// The child process: starts the provider on the given addresses with its graph on disk, waits until the graph is
/// built, and stops.
async fn build_graph(config_file: &std::path::Path) {
    let mut config = hanse::config::Config::load(config_file).unwrap();
    config.catalog.graph_dir = Some(std::env::var("HANSE_BENCH_GRAPH_DIR").unwrap().into());
    let address = |name: &str| std::env::var(name).unwrap();
    let public = tokio::net::TcpListener::bind(address("HANSE_BENCH_PUBLIC")).await.unwrap();
    let management = tokio::net::TcpListener::bind(address("HANSE_BENCH_MANAGEMENT")).await.unwrap();
    let running = hanse::server::start_on(config, public, management).await.unwrap();
    assert!(running.state.catalogue.graph_built(Duration::from_secs(1800)), "the graph is built");
    running.shutdown().await;
}
