//! Broker benchmark: 100 real Hanse connectors with 1 000 datasets each (HealthDCAT-AP properties, one offer each),
//! crawled by a broker running as its own `hanse run` process. Prints the crawl time (first crawl and a forced full
//! recrawl), search latency p50/p99 (public listener with a signed token, and management API), a SPARQL count over
//! the federation graph, and the broker's resident memory.
//!
//! `cargo bench -p hanse --bench broker` (release). `HANSE_BENCH_PEERS=N` and `HANSE_BENCH_DATASETS=M` change the
//! size. The 100 connectors share the machine's two cores with the broker, so crawl figures are conservative.

use std::time::{Duration, Instant};

use hanse::testing::Signer;
use serde_json::{Value, json};

mod support;
use support::{KEYWORDS, percentile, rss_mb};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A memory figure of process `pid` (`VmRSS:` or `VmHWM:`), in MB.
fn rss_of(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let peers = env_or("HANSE_BENCH_PEERS", 100);
    let datasets = env_or("HANSE_BENCH_DATASETS", 1000);
    let root = tempfile::tempdir().unwrap();

    // The hospitals: real connectors in this process, each with its own identity, SQLite store and listeners.
    let seeding = Instant::now();
    let mut hospitals = Vec::with_capacity(peers);
    for i in 0..peers {
        let dir = root.path().join(format!("hospital-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (_, mut config, public, management) = hanse::testing::initialised(&dir).await;
        config.peers.exchange_interval_seconds = 0;
        config.audit.witness_interval_seconds = 0;
        config.store.max_connections = 2;
        config.log.level = "warn".into();
        support::seed_catalogue(&config, datasets, json!([{"action": "use"}])).await;
        hospitals.push(hanse::server::start_on(config, public, management).await.unwrap());
    }
    println!(
        "{peers} connectors × {datasets} datasets seeded and started in {:.1} s (this process: RSS {:.0} MB)",
        seeding.elapsed().as_secs_f64(),
        rss_mb("VmRSS:")
    );

    // The broker: its own process, seeded with every hospital.
    let dir = root.path().join("broker");
    std::fs::create_dir_all(&dir).unwrap();
    let (done, config, public, management) = hanse::testing::initialised(&dir).await;
    let (public_url, management_url) =
        (format!("http://{}", public.local_addr().unwrap()), format!("http://{}", management.local_addr().unwrap()));
    drop((public, management));
    let seeds: Vec<String> = hospitals.iter().map(|h| format!("\"{}\"", h.state.config.participant.id)).collect();
    let mut text = std::fs::read_to_string(&done.config_file).unwrap();
    text.push_str(&format!(
        "\n[peers]\nseeds = [{}]\nexchange_interval_seconds = 2\n\n[broker]\nenabled = true\ncrawl_interval_seconds = 3600\n",
        seeds.join(", ")
    ));
    std::fs::write(&done.config_file, text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hanse"))
        .args(["run", "--config"])
        .arg(&done.config_file)
        .env("HANSE_LOG_LEVEL", "warn")
        .spawn()
        .expect("the hanse binary starts");
    let pid = child.id();
    let client = reqwest::Client::builder().pool_max_idle_per_host(16).build().unwrap();
    let api_key = done.api_key.clone();
    let get = |path: String| client.get(format!("{management_url}{path}")).header("X-Api-Key", &api_key).send();

    // First crawl: from the status the broker keeps (first attempt to last success).
    let waiting = Instant::now();
    let status = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(response) = get("/management/v3/broker/crawls".into()).await else { continue };
        let status: Vec<Value> = response.json().await.unwrap_or_default();
        let complete = status.iter().filter(|s| s["datasets"].as_u64() == Some(datasets as u64)).count();
        if complete == peers {
            break status;
        }
        assert!(waiting.elapsed() < Duration::from_secs(600), "the first crawl did not finish: {complete} of {peers}");
    };
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

    // A forced full recrawl: every graph replaced.
    let started = Instant::now();
    let response = client
        .post(format!("{management_url}/management/v3/broker/crawl"))
        .header("X-Api-Key", &api_key)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    let status: Vec<Value> = response.json().await.unwrap();
    assert!(status.iter().all(|s| s["error"].is_null() && s["datasets"] == datasets), "every peer recrawled");
    println!(
        "full recrawl (graphs replaced): {:.1} s; broker RSS {:.0} MB now, {:.0} MB peak",
        started.elapsed().as_secs_f64(),
        rss_of(pid, "VmRSS:"),
        rss_of(pid, "VmHWM:")
    );

    // Search latency, sequential: keyword + facet filters over the whole federation.
    let researcher = hanse::testing::TestParticipant::start().await;
    let broker_did = config.participant.id.clone();
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
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
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

    let _ = child.kill();
    let _ = child.wait();
    for hospital in hospitals {
        hospital.shutdown().await;
    }
}
