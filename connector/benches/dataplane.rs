//! Data plane benchmark: one pull of a large file (default 1 GiB) through Hanse — access token, stored-transfer and
//! agreement checks, streaming with ranges and digest headers — against the same file served by a plain
//! `tower_http::services::ServeFile` on loopback in the same run. Prints both throughputs, their ratio, the one-off
//! cost of the file's SHA-256, and the process's resident memory during the pulls.
//!
//! `cargo bench -p hanse --bench dataplane`; `HANSE_BENCH_MIB` (default 1024), `HANSE_BENCH_ROUNDS` (default 3).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hanse::server::RunningConnector;
use hanse::transfer::machine::State as TransferState;
use serde_json::json;
use tokio::net::TcpListener;

mod support;
use support::rss_mb;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn connector(dir: &std::path::Path) -> RunningConnector {
    let (_, config, public, management) = hanse::testing::initialised(dir).await;
    hanse::server::start_on(config, public, management).await.unwrap()
}

/// Writes `mib` MiB of pseudo-random bytes.
fn write_file(path: &std::path::Path, mib: usize) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
}

/// Downloads `url` and throws the bytes away; answers the byte count and the time taken.
async fn pull(client: &reqwest::Client, url: &str, token: Option<&str>) -> (u64, Duration) {
    let start = Instant::now();
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut response = request.send().await.unwrap();
    assert!(response.status().is_success(), "{url}: {}", response.status());
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        bytes += chunk.len() as u64;
    }
    (bytes, start.elapsed())
}

#[tokio::main]
async fn main() {
    let mib = env("HANSE_BENCH_MIB", 1024);
    let rounds = env("HANSE_BENCH_ROUNDS", 3);
    let (provider_dir, consumer_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let provider = connector(provider_dir.path()).await;
    let consumer = connector(consumer_dir.path()).await;
    let (p, c) = (provider.state.clone(), consumer.state.clone());
    let root = p.config.file_root();
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("cohort.bin");
    write_file(&file, mib);

    // An agreement and a started pull transfer, as a consumer gets them.
    let asset = json!({"@id": "cohort", "properties": {"title": "Cohort"}, "dataAddress": {"type": "File", "path": "cohort.bin"}});
    let offer = support::offer(&p, &c.config.participant.id, asset, false).await;
    let provider_address = format!("{}/protocol/2025-1", provider.public_url());
    let agreement = support::agree(&c, &provider.public_url(), &p.config.participant.id, offer).await;
    let transfer = c
        .transfers
        .start(hanse::transfer::Start {
            provider_address,
            agreement,
            format: hanse::transfer::PULL.into(),
            destination: None,
            auto_complete: true,
            job: None,
        })
        .await
        .unwrap();
    let address = loop {
        let current = c.transfers.get(&transfer.row.id).await.unwrap();
        if current.state == TransferState::Started
            && let Some(edr) = current.details.edr
        {
            break edr;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let endpoint = address["endpoint"].as_str().unwrap().to_owned();
    let token = hanse::transfer::endpoint_property(&address, "authorization").unwrap().to_owned();

    // The plain file server.
    let plain = axum::Router::new().route_service("/cohort.bin", tower_http::services::ServeFile::new(&file));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_url = format!("http://{}/cohort.bin", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, plain).await });

    let client = reqwest::Client::new();
    // The file's digest is computed once per file version; the first request waits for it.
    let digest_start = Instant::now();
    let head = client.head(&endpoint).bearer_auth(&token).send().await.unwrap();
    assert!(head.status().is_success());
    let digest_time = digest_start.elapsed();
    let _ = pull(&client, &plain_url, None).await; // page cache warm for both

    let rss_before = rss_mb("VmRSS:");
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0f64;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(rss_mb("VmRSS:"));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let (mut best_plain, mut best_hanse) = (Duration::MAX, Duration::MAX);
    for _ in 0..rounds {
        let (bytes, took) = pull(&client, &plain_url, None).await;
        assert_eq!(bytes, (mib << 20) as u64);
        best_plain = best_plain.min(took);
        let (bytes, took) = pull(&client, &endpoint, Some(&token)).await;
        assert_eq!(bytes, (mib << 20) as u64);
        best_hanse = best_hanse.min(took);
    }
    sampling.store(false, Ordering::Relaxed);
    let rss_peak = sampler.await.unwrap();
    let rate = |took: Duration| mib as f64 / took.as_secs_f64();
    println!("file: {mib} MiB, best of {rounds} rounds each, loopback HTTP/1.1");
    println!("plain ServeFile:  {:>7.0} MiB/s ({:.2} s)", rate(best_plain), best_plain.as_secs_f64());
    println!("hanse data plane: {:>7.0} MiB/s ({:.2} s)", rate(best_hanse), best_hanse.as_secs_f64());
    println!("ratio hanse / plain: {:.2}", best_plain.as_secs_f64() / best_hanse.as_secs_f64());
    println!("SHA-256 of the file (once per file version): {:.2} s", digest_time.as_secs_f64());
    println!(
        "resident memory of the process (provider, consumer and client): {rss_before:.0} MB before the pulls, \
         {rss_peak:.0} MB at most during them"
    );
    provider.shutdown().await;
    consumer.shutdown().await;
}
