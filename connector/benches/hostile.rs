//! Hostile-load benchmark: a connector with 1 000 datasets, default limits, attacked from other addresses on loopback
//! by 500 slow connections (half a request head each, never finished) and 1 000 malformed or oversized requests
//! (garbage, oversized heads, oversized bodies, bodies that are not JSON, requests without a token), while a
//! researcher at 127.0.0.1 pages the DSP catalogue. Prints the researcher's latency (p50/p99) before and during
//! the attack and their ratio, the attack's answers by status (5xx must be 0), and peak resident memory; then the
//! memory a 50 MB table upload takes on the management listener.
//!
//! `cargo bench -p hanse --bench hostile` (release). The attackers, the researcher and the connector share this
//! process and its two cores, so the figures are conservative; the peak memory includes the attackers' own.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

mod support;
use support::{percentile, rss_mb};

/// A connection from `from` to `to` (loopback addresses other than 127.0.0.1 stand for other hosts).
async fn connect(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    socket.connect(to).await
}

/// The status of the answer to `request`, or 0 when the connection ended without one.
async fn send_raw(from: Ipv4Addr, to: SocketAddr, request: &[u8]) -> u16 {
    let Ok(mut stream) = connect(from, to).await else { return 0 };
    // The server may answer and close before all is written (an oversized body): the answer still counts.
    let _ = stream.write_all(request).await;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut head[read..])).await {
            Ok(Ok(n)) if n > 0 => read += n,
            _ => break,
        }
    }
    std::str::from_utf8(&head[..read]).ok().and_then(|h| h.get(9..12)).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Attack request `i`: one of five kinds of malformed or oversized request.
fn malformed(i: usize) -> Vec<u8> {
    let catalog = "POST /protocol/2025-1/catalog/request HTTP/1.1\r\nHost: hanse\r\nContent-Type: application/json\r\n";
    match i % 5 {
        0 => b"\x16\x03\x01GARBAGE \xff\xfe NOT HTTP\r\n\r\n".to_vec(),
        1 => {
            format!("GET /.well-known/dspace-version HTTP/1.1\r\nHost: hanse\r\nX-Pad: {}\r\n\r\n", "a".repeat(200_000))
                .into_bytes()
        }
        2 => {
            let body = "x".repeat(3 * 1024 * 1024);
            format!("{catalog}Authorization: Bearer x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
        }
        3 => {
            let body = "{\"@type\": \"CatalogRequestMessage\", \"filter\": [[[[[[[[[[[[[[[[";
            format!("{catalog}Authorization: Bearer a.b.c\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
        }
        _ => {
            let body =
                json!({"@type": "ContractRequestMessage", "consumerPid": "x", "offer": {"@id": "o"}}).to_string();
            format!(
                "POST /protocol/2025-1/negotiations/request HTTP/1.1\r\nHost: hanse\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut config, public, management) = hanse::testing::initialised(dir.path()).await;
    // The limits a connector has out of the box, the quota included.
    config.http = hanse::config::HttpConfig::default();
    let provider = config.participant.id.clone();
    let researcher = Arc::new(hanse::testing::TestParticipant::start().await);
    use hanse::testing::Signer;
    let members = json!([{"action": "use"}]);
    support::seed_catalogue(&config, 1000, members).await;
    let running = hanse::server::start_on(config, public, management).await.unwrap();
    let target: SocketAddr = running.public_addr;
    let limits = &running.state.config.http;
    println!(
        "limits: {} public connections, header timeout {} s, bodies up to {} KiB, {} requests/s per address (burst {})",
        limits.public_max_connections,
        limits.header_timeout_seconds,
        limits.public_max_body_kb,
        limits.public_requests_per_second,
        limits.public_burst
    );

    // The researcher: 127.0.0.1, a fresh signed token per request, pages of 20 at rotating cursors.
    let client = reqwest::Client::builder().no_gzip().local_address(IpAddr::V4(Ipv4Addr::LOCALHOST)).build().unwrap();
    let url = format!("{}/protocol/2025-1/catalog/request", running.public_url());
    let body = json!({"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": "CatalogRequestMessage", "filter": []}).to_string();
    let page = {
        let (client, url, body, researcher, provider) =
            (client.clone(), url.clone(), body.clone(), researcher.clone(), provider.clone());
        move |n: usize| {
            let request = client
                .post(format!("{url}?limit=20&after=dataset-{:06}", (n * 37) % 900))
                .header("Authorization", researcher.authorization(&provider))
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send();
            async move {
                let started = Instant::now();
                let response = request.await.expect("the researcher is answered");
                assert_eq!(response.status(), 200, "the researcher's page");
                let page: Value = response.json().await.unwrap();
                assert_eq!(page["dataset"].as_array().map(Vec::len), Some(20));
                started.elapsed()
            }
        }
    };
    for n in 0..50 {
        page(n).await;
    }
    let measure = |seconds: u64| {
        let page = page.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut latencies = Vec::new();
            // At most 40 pages a second: within the researcher's own quota of 100.
            while Instant::now() < deadline {
                latencies.push(page(latencies.len()).await);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            latencies.sort();
            latencies
        }
    };
    let baseline = measure(5).await;
    let rss_before = rss_mb("VmRSS:");

    // The attack, from 127.0.0.2 (slow connections) and 127.0.0.3 (malformed requests, 50 at a time).
    let slow_from = Ipv4Addr::new(127, 0, 0, 2);
    let mut slow = Vec::new();
    for _ in 0..500 {
        if let Ok(mut stream) = connect(slow_from, target).await {
            let _ = stream.write_all(b"POST /protocol/2025-1/catalog/request HTTP/1.1\r\nHost: hanse\r\n").await;
            slow.push(stream);
        }
    }
    // The five requests are made once and shared: the attackers' own memory stays small.
    let requests: Arc<Vec<Vec<u8>>> = Arc::new((0..5).map(malformed).collect());
    let attack = tokio::spawn(async move {
        let gate = Arc::new(tokio::sync::Semaphore::new(50));
        let mut tasks = Vec::new();
        for i in 0..1000 {
            let permit = gate.clone().acquire_owned().await.unwrap();
            let requests = requests.clone();
            tasks.push(tokio::spawn(async move {
                let status = send_raw(Ipv4Addr::new(127, 0, 0, 3), target, &requests[i % 5]).await;
                drop(permit);
                (i % 5, status)
            }));
        }
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        answers
    });
    let during = measure(8).await;
    let answers = attack.await.unwrap();
    let slow_opened = slow.len();
    drop(slow);

    let mut by_status = std::collections::BTreeMap::new();
    for (_, status) in &answers {
        *by_status.entry(*status).or_insert(0usize) += 1;
    }
    let server_errors: usize = by_status.iter().filter(|(s, _)| (500..600).contains(*s)).map(|(_, n)| n).sum();
    let (p50_before, p99_before) = (percentile(&baseline, 0.5), percentile(&baseline, 0.99));
    let (p50_during, p99_during) = (percentile(&during, 0.5), percentile(&during, 0.99));
    println!("slow connections opened: {slow_opened}; malformed requests sent: {}", answers.len());
    println!("attack answers by status (0: closed without an answer): {by_status:?}; 5xx: {server_errors}");
    let mut by_kind = std::collections::BTreeMap::new();
    for (kind, status) in &answers {
        by_kind
            .entry(["garbage", "oversized head", "oversized body", "not JSON", "no token"][*kind])
            .or_insert_with(std::collections::BTreeSet::new)
            .insert(*status);
    }
    println!("statuses by kind of request: {by_kind:?}");
    println!(
        "researcher's catalogue page: before p50 {p50_before:.2} ms, p99 {p99_before:.2} ms ({} requests); during \
         p50 {p50_during:.2} ms, p99 {p99_during:.2} ms ({} requests); p99 ratio during/before {:.2}",
        baseline.len(),
        during.len(),
        p99_during / p99_before
    );
    println!(
        "resident memory: {rss_before:.0} MB before the attack, peak {:.0} MB (process: connector, attackers and \
         researcher)",
        rss_mb("VmHWM:")
    );
    let ready = reqwest::get(format!("{}/health/ready", running.management_url())).await.unwrap();
    println!("management /health/ready after the attack: {}", ready.status());

    // A 50 MB table upload (streamed from a file, as `hanse dataset ingest` sends it): the connector's memory while
    // it arrives, is read and is written, sampled every 10 ms.
    let csv = dir.path().join("rows.csv");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
        writeln!(out, "age,weight,smoker,visit,sex").unwrap();
        let mut n = 0u64;
        while out.get_ref().metadata().unwrap().len() < 50 * 1024 * 1024 {
            for _ in 0..10_000 {
                n += 1;
                let sex = if n.is_multiple_of(2) { "female" } else { "male" };
                writeln!(out, "{},{}.5,{},2026-0{}-1{},{sex}", 18 + n % 70, 50 + n % 60, n % 2, 1 + n % 9, n % 10)
                    .unwrap();
            }
            out.flush().unwrap();
        }
    }
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        json!({"columns": [
        {"name": "age", "type": "integer"}, {"name": "weight", "type": "float"}, {"name": "smoker", "type": "boolean"},
        {"name": "visit", "type": "date"}, {"name": "sex", "type": "categorical", "levels": ["female", "male"]}]})
        .to_string(),
    )
    .unwrap();
    let idle = rss_mb("VmRSS:");
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::task::spawn_blocking(move || {
            let mut peak = 0f64;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_mb("VmRSS:"));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    let started = Instant::now();
    let key = &running.state.config.management.api_key;
    let stored = hanse::compute::commands::ingest(&running.management_url(), key, "big", &csv, &schema, json!({}))
        .await
        .unwrap();
    let took = started.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await.unwrap();
    println!(
        "table upload of {:.0} MB ({} rows): {:.1} s; resident memory {idle:.0} MB before, peak {peak:.0} MB (+{:.0} MB), \
         {:.0} MB after",
        std::fs::metadata(&csv).unwrap().len() as f64 / 1048576.0,
        stored["numberOfRecords"],
        took.as_secs_f64(),
        peak - idle,
        rss_mb("VmRSS:")
    );
    running.shutdown().await;
}
