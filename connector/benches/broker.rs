//! Broker benchmark: 100 real Hanse connectors with 1 000 datasets each (HealthDCAT-AP properties, one offer each),
//! crawled by a broker running as its own `hanse run` process. Prints the crawl time (first crawl and a forced full
//! recrawl), search latency p50/p99 (public listener with a signed token, and management API), a SPARQL count over
//! the federation graph, and the broker's resident memory.
//!
//! `cargo bench -p hanse --bench broker` (release). `HANSE_BENCH_PEERS=N` and `HANSE_BENCH_DATASETS=M` change the
//! size. The 100 connectors share the machine's two cores with the broker, so crawl figures are conservative.
//!
//! `HANSE_BENCH_SYNTHETIC_PEERS=K` then grows the federation to K peers without K connectors: the crawled catalogues
//! are copied, under new DIDs and dataset ids, into the broker's kept catalogues, and the broker is restarted. It
//! reads every one back into its graph and index (what a crawl does after fetching), and the searches run again over
//! K × M datasets. `HANSE_BENCH_GRAPH=disk` (with `--features rocksdb`) keeps that broker's graph on disk
//! (`broker.graph_dir`), as a broker of that size needs.

use std::time::{Duration, Instant};

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

    let researcher = hanse::testing::TestParticipant::start().await;
    measure_queries(&broker, &researcher, peers * datasets).await;

    // The federation grown synthetically: copies of the crawled catalogues kept for further peers, read back by a
    // restarted broker as its own kept catalogues.
    let synthetic = env_or("HANSE_BENCH_SYNTHETIC_PEERS", 0);
    if synthetic > peers {
        let mut broker = broker;
        broker.stop();
        let seeding = Instant::now();
        grow(&broker.database_url, synthetic).await;
        println!(
            "\n{synthetic} peers × {datasets} datasets kept (the {peers} crawled catalogues copied under new DIDs and dataset ids) in {:.1} s",
            seeding.elapsed().as_secs_f64()
        );
        compare_with_scan(&broker.database_url).await;
        let graph_dir = root.path().join("broker-graph");
        let graph_dir = graph_dir.to_str().unwrap();
        let mut env = vec![("HANSE_PEERS_EXCHANGE_INTERVAL_SECONDS", "0")];
        if std::env::var("HANSE_BENCH_GRAPH").as_deref() == Ok("disk") {
            env.push(("HANSE_BROKER_GRAPH_DIR", graph_dir));
        }
        let read_back = restarted(&mut broker, &env, synthetic, datasets).await;
        println!(
            "restart with {} datasets kept ({}): every catalogue read back into graph and index in {:.1} s; broker RSS {:.0} MB",
            synthetic * datasets,
            if env.len() > 1 { "graph on disk" } else { "graph in memory" },
            read_back.as_secs_f64(),
            rss_of(broker.pid(), "VmRSS:")
        );
        measure_queries(&broker, &researcher, synthetic * datasets).await;

        // A graph on disk is kept across a restart: the next start makes only the index, from the graph's quads
        // (decision 0051). Against the start above, which read every kept catalogue into an empty graph.
        if env.len() > 1 {
            // The start records what its graph holds once it took every catalogue back and flushed the graph.
            let state_file = std::path::Path::new(graph_dir).join(hanse::broker::STATE_FILE);
            let waiting = Instant::now();
            while !state_file.exists() {
                assert!(waiting.elapsed().as_secs() < 600, "the broker did not record what its graph holds");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            println!("  the graph's state recorded {:.1} s after the searches", waiting.elapsed().as_secs_f64());
            let resumed = restarted(&mut broker, &env, synthetic, datasets).await;
            println!(
                "restart with the graph on disk kept: every index made again from the graph in {:.1} s ({:.2} × the read-back above); broker RSS {:.0} MB",
                resumed.as_secs_f64(),
                resumed.as_secs_f64() / read_back.as_secs_f64(),
                rss_of(broker.pid(), "VmRSS:")
            );
            measure_queries(&broker, &researcher, synthetic * datasets).await;
        }
    }

    for hospital in hospitals {
        hospital.shutdown().await;
    }
}

/// Restarts the broker with `env` and waits until every one of `peers` catalogues is back; answers how long it took.
async fn restarted(broker: &mut support::Process, env: &[(&str, &str)], peers: usize, datasets: usize) -> Duration {
    let started = Instant::now();
    broker.restart(env);
    broker.first_crawl(peers, datasets).await;
    started.elapsed()
}

/// Every catalogue the broker's store keeps.
async fn every_kept(store: &hanse::store::Store) -> Vec<hanse::store::CrawledCatalog> {
    let mut kept = Vec::new();
    for did in store.peers.kept_catalogs().await.unwrap() {
        kept.push(store.peers.kept_catalog(&did).await.unwrap().unwrap());
    }
    kept
}

/// Keeps copies of the broker's kept catalogues in its store (`database_url`, the broker stopped) until `peers`
/// peers have one: each copy under a DID of its own, with its dataset ids made its own.
async fn grow(database_url: &str, peers: usize) {
    use hanse::store::{PeerRow, Store, StoreOptions};
    let store = Store::open(database_url, &StoreOptions::default()).await.unwrap();
    let kept = every_kept(&store).await;
    let now = hanse::store::now_millis();
    for n in kept.len()..peers {
        let original = &kept[n % kept.len()];
        let did = format!("did:web:synthetic-{n:05}.hospital.example");
        let catalog: Value =
            serde_json::from_str(&original.catalog.replace("\"dataset-", &format!("\"dataset-s{n:05}-"))).unwrap();
        let mut peer = PeerRow::new(&did, "manual");
        peer.address = original.address.clone();
        store.peers.add_peer(&peer).await.unwrap();
        let copy = hanse::store::CrawledCatalog {
            did: did.clone(),
            address: original.address.clone(),
            country: original.country.clone(),
            digest: hanse::broker::digest(&original.address, original.country.as_deref(), &catalog),
            catalog: catalog.to_string(),
            crawled_at: now,
            changed_at: now,
        };
        assert!(store.peers.keep_catalog(&copy).await.unwrap(), "{did} kept");
    }
    store.close().await;
}

/// The word index against a scan of every dataset's text (the broker's search before the index), in this process
/// over the catalogues the broker's store (`database_url`) keeps: the same answers, and the time to find the matching
/// datasets of every catalogue for each query's words.
async fn compare_with_scan(database_url: &str) {
    use hanse::store::{Store, StoreOptions};
    let store = Store::open(database_url, &StoreOptions::default()).await.unwrap();
    let mut catalogs = Vec::new();
    for kept in every_kept(&store).await {
        let json: Value = serde_json::from_str(&kept.catalog).unwrap();
        let (catalog, _) = hanse::broker::ingest(&kept.did, &kept.address, kept.country, &json, kept.digest).unwrap();
        catalogs.push(catalog);
    }
    store.close().await;
    let datasets: usize = catalogs.iter().map(|c| c.entries.len()).sum();
    let words: Vec<Vec<String>> = (0..200)
        .map(|n| match n % 4 {
            0 => vec![KEYWORDS[n % KEYWORDS.len()].to_owned()],
            1 => vec![KEYWORDS[n % KEYWORDS.len()].to_owned(), "registry".to_owned()],
            2 => vec!["cohort".to_owned(), (n % 1000).to_string()],
            _ => vec![format!("{}", 100 + n)],
        })
        .collect();
    let (mut indexed, mut scanned) = (Vec::new(), Vec::new());
    for words in &words {
        let started = Instant::now();
        let asked = hanse::broker::index::Words::new(words);
        let found: Vec<Vec<u32>> = catalogs.iter().map(|c| c.matching(&asked)).collect();
        indexed.push(started.elapsed());
        let started = Instant::now();
        let scan: Vec<Vec<u32>> = catalogs
            .iter()
            .map(|c| {
                let holds = |e: &hanse::broker::Entry| words.iter().all(|w| e.haystack.contains(w.as_str()));
                (0..c.entries.len() as u32).filter(|&i| holds(&c.entries[i as usize])).collect()
            })
            .collect();
        scanned.push(started.elapsed());
        assert_eq!(found, scan, "{words:?}: the index answers as the scan");
    }
    // The whole search (words, filters, facets and a page of hits) in this process, without HTTP.
    let catalogs: std::collections::BTreeMap<String, std::sync::Arc<hanse::broker::PeerCatalog>> =
        catalogs.into_iter().map(|c| (c.did.clone(), std::sync::Arc::new(c))).collect();
    let mut searched = Vec::new();
    for n in 0..200 {
        let keyword = KEYWORDS[n % KEYWORDS.len()];
        let request = hanse::broker::search::SearchRequest {
            q: Some(match n % 4 {
                2 => format!("cohort {}", n % 1000),
                1 => format!("{keyword} registry"),
                _ => keyword.to_owned(),
            }),
            min_records: (n % 4 == 1).then_some(3000),
            min_age: (n % 4 == 2).then_some(65),
            health_category: if n % 4 == 3 { vec!["http://healthdataportal.eu/ns/health#EHR".into()] } else { vec![] },
            ..Default::default()
        };
        let started = Instant::now();
        std::hint::black_box(hanse::broker::search::search(&catalogs, &request));
        searched.push(started.elapsed());
    }
    searched.sort();
    println!(
        "whole search over {datasets} (this process, {} queries as the HTTP ones): p50 {:.2} ms, p99 {:.2} ms",
        searched.len(),
        percentile(&searched, 0.50),
        percentile(&searched, 0.99)
    );
    indexed.sort();
    scanned.sort();
    println!(
        "matching datasets over {datasets} (this process, {} queries, the same answers): word index p50 {:.2} / p99 {:.2} ms, scan of the texts p50 {:.2} / p99 {:.2} ms (p99 {:.3}× the scan's)",
        words.len(),
        percentile(&indexed, 0.50),
        percentile(&indexed, 0.99),
        percentile(&scanned, 0.50),
        percentile(&scanned, 0.99),
        percentile(&indexed, 0.99) / percentile(&scanned, 0.99)
    );
}

/// Search latency, sequential: keyword + facet filters over the whole federation (`datasets` in all), through the
/// public listener and the management API; then a SPARQL count over every graph and the broker's memory.
async fn measure_queries(broker: &support::Process, researcher: &hanse::testing::TestParticipant, datasets: usize) {
    let (public_url, management_url, api_key, client) =
        (&broker.public_url, &broker.management_url, &broker.api_key, &broker.client);
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
                client.get(format!("{management_url}/management/v3/search?{query}")).header("X-Api-Key", api_key)
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
            "search over {datasets} datasets ({label}, {} queries, {:.0} hits on average): p50 {:.2} ms, p99 {:.2} ms",
            latencies.len(),
            hits as f64 / latencies.len() as f64,
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99)
        );
    }

    let started = Instant::now();
    let response = client
        .post(format!("{management_url}/management/broker/sparql"))
        .header("X-Api-Key", api_key)
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
    let pid = broker.pid();
    println!("broker resident memory: {:.0} MB now, {:.0} MB peak", rss_of(pid, "VmRSS:"), rss_of(pid, "VmHWM:"));
}
