//! Compute-to-data benchmark: three provider connectors, each with a synthetic cohort ingested through its management
//! API, and one consumer with an agreement per site — all real listeners on loopback in this process. Measures the
//! ingestion, then a federated logistic GLM with ten covariates end to end (`POST /management/v3/jobs` until the
//! combined result is stored): wall time, Newton rounds and bytes exchanged with the sites; then an aggregate and a
//! fedavg run for comparison; and the process's resident memory.
//!
//! `cargo bench -p hanse --bench compute`; `HANSE_BENCH_ROWS` (rows per site, default 100000), `HANSE_BENCH_RUNS`
//! (GLM runs, default 3).

use std::time::{Duration, Instant};

use hanse::client::ManagementClient;
use hanse::server::RunningConnector;
use reqwest::Method;
use serde_json::{Value, json};

mod support;
use support::rss_mb;

const COVARIATES: [&str; 10] =
    ["age", "sex", "bmi", "hba1c", "systolic_bp", "ldl", "egfr", "smoker", "hypertension", "ckd"];

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn connector(dir: &std::path::Path) -> RunningConnector {
    let (_, config, public, management) = hanse::testing::initialised(dir).await;
    hanse::server::start_on(config, public, management).await.unwrap()
}

/// Runs a job on the consumer's management API; answers the finished job and the wall time. It polls every 2 ms
/// (`hanse job run` polls every 100 ms, too coarse for a timing).
async fn job(api: &ManagementClient, body: &Value) -> (Value, Duration) {
    let start = Instant::now();
    let created = api.expect(api.request(Method::POST, "/management/v3/jobs").json(body)).await.unwrap();
    let path = format!("/management/v3/jobs/{}", created["@id"].as_str().unwrap_or_else(|| panic!("{created:#}")));
    loop {
        let job = api.expect(api.request(Method::GET, &path)).await.unwrap();
        if job["state"] != "RUNNING" {
            assert_eq!(job["state"], "COMPLETED", "{job:#}");
            return (job, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::main]
async fn main() {
    let rows = env("HANSE_BENCH_ROWS", 100_000);
    let runs = env("HANSE_BENCH_RUNS", 3);
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut connectors = Vec::new();
    for dir in &dirs {
        connectors.push(connector(dir.path()).await);
    }
    let consumer = connectors.pop().unwrap();
    let c = consumer.state.clone();
    let api = ManagementClient::new(&consumer.management_url(), &c.config.management.api_key);

    // Each site ingests its cohort over HTTP and offers it; the consumer negotiates.
    let mut ingest_times = Vec::new();
    let mut sites = Vec::new();
    for (i, provider) in connectors.iter().enumerate() {
        let p = provider.state.clone();
        let csv = dirs[i].path().join("cohort.csv");
        let schema = hanse::compute::commands::synth(rows, i as u32, 42, &csv).unwrap();
        let started = Instant::now();
        let key = &p.config.management.api_key;
        hanse::compute::commands::ingest(
            &provider.management_url(),
            key,
            "register",
            &csv,
            &schema,
            json!({"title": "Register"}),
        )
        .await
        .unwrap();
        ingest_times.push(started.elapsed());
        let offer = support::offer_dataset(&p, &c.config.participant.id, "register", false).await;
        let agreement = support::agree(&c, &provider.public_url(), &p.config.participant.id, offer).await;
        sites.push(json!({"agreementId": agreement.id}));
    }
    let csv_mib = std::fs::metadata(dirs[0].path().join("cohort.csv")).unwrap().len() as f64 / (1 << 20) as f64;

    let glm = json!({"template": "glm", "sites": sites,
                     "parameters": {"family": "logistic", "outcome": "readmitted", "covariates": COVARIATES}});
    let rss_before = rss_mb("VmRSS:");
    let mut times = Vec::new();
    let mut last = Value::Null;
    for _ in 0..runs {
        let (finished, took) = job(&api, &glm).await;
        times.push(took);
        last = finished;
    }
    let aggregate = json!({"template": "aggregate", "sites": sites, "parameters": {"groupBy": ["diagnosis", "sex"],
                           "metrics": [{"column": "hba1c", "statistics": ["count", "mean", "sd"]}]}});
    let (_, aggregate_time) = job(&api, &aggregate).await;
    let mut fedavg = glm.clone();
    fedavg["template"] = json!("fedavg");
    fedavg["rounds"] = json!(20);
    let (fedavg_job, fedavg_time) = job(&api, &fedavg).await;
    let pooled = |job: &Value| -> Vec<f64> {
        job["result"]["coefficients"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
    };
    let gap = pooled(&fedavg_job).iter().zip(pooled(&last)).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);

    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    println!("sites: 3 × {rows} rows ({csv_mib:.1} MiB of CSV each), SQLite, loopback HTTP, all in one process");
    println!(
        "ingest over the management API: {} ms per site ({:.0} rows/s)",
        ingest_times.iter().map(ms).map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(" / "),
        rows as f64 / ingest_times[0].as_secs_f64()
    );
    println!(
        "logistic GLM, {} covariates ({} terms): {} ms end to end per run (first run reads the tables), {} Newton rounds, \
         {} bytes exchanged with the sites, n = {}",
        COVARIATES.len(),
        last["result"]["terms"].as_array().unwrap().len(),
        times.iter().map(ms).map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(" / "),
        last["result"]["rounds"],
        last["bytes"],
        last["result"]["n"],
    );
    println!("aggregate (diagnosis × sex, hba1c count/mean/sd): {:.0} ms", ms(&aggregate_time));
    println!(
        "fedavg, 20 rounds: {:.0} ms, {} bytes; max |coefficient − GLM| = {gap:.4}",
        ms(&fedavg_time),
        fedavg_job["bytes"]
    );
    println!(
        "resident memory of the process (4 connectors, 3 tables in memory): {rss_before:.0} MB before the jobs, {:.0} MB after",
        rss_mb("VmRSS:")
    );
    for connector in connectors {
        connector.shutdown().await;
    }
    consumer.shutdown().await;
}
