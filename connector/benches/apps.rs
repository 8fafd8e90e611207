//! App API benchmark: pages of 100 rows of a 100 000-row table through `/apps/v1` — token lookup, rate limit, the
//! dataset's policy decided, the page rendered, the use counted and audited in one write before the answer — against
//! the same pages rendered from the same table by a plain axum route on loopback in the same run (no token, no
//! policy, no write). Prints p50 / p99 latency of sequential calls and the throughput of 16 concurrent clients for
//! both, and their ratios.
//!
//! `cargo bench -p hanse --bench apps`; `HANSE_BENCH_ROWS` (default 100000), `HANSE_BENCH_CALLS` (default 2000);
//! `HANSE_BENCH_BACKEND=postgres` runs the connector on PostgreSQL (`HANSE_TEST_DATABASE_URL`, a fresh schema).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::TcpListener;

mod support;
use support::percentile;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Sequential calls of `url(i)`: the sorted latencies.
async fn sequential(
    client: &reqwest::Client,
    calls: usize,
    token: Option<&str>,
    url: impl Fn(usize) -> String,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(calls);
    for i in 0..calls {
        let start = Instant::now();
        let mut request = client.get(url(i));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let _ = response.bytes().await.unwrap();
        latencies.push(start.elapsed());
    }
    latencies.sort();
    latencies
}

/// Calls per second of 16 concurrent clients making `calls` calls in all.
async fn concurrent(
    client: &reqwest::Client,
    calls: usize,
    token: Option<String>,
    url: Arc<dyn Fn(usize) -> String + Send + Sync>,
) -> f64 {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let (client, token, url) = (client.clone(), token.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for i in (worker..calls).step_by(16) {
                let mut request = client.get(url(i));
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await.unwrap();
                assert!(response.status().is_success());
                let _ = response.bytes().await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    calls as f64 / start.elapsed().as_secs_f64()
}

/// The plain server's page: the same rows, the same JSON.
fn plain_page(table: &hanse::compute::table::Table, offset: usize) -> Value {
    let end = (offset + 100).min(table.rows);
    let rows: Vec<Value> = (offset..end)
        .map(|row| {
            Value::Array(
                table.schema.columns.iter().enumerate().map(|(c, col)| col.render(table.values[c][row])).collect(),
            )
        })
        .collect();
    json!({"dataset": "cohort", "columns": table.schema.columns.iter().map(|c| &c.name).collect::<Vec<_>>(),
           "rows": rows, "offset": offset, "limit": 100, "total": table.rows, "nextOffset": (end < table.rows).then_some(end)})
}

#[tokio::main]
async fn main() {
    let rows = env("HANSE_BENCH_ROWS", 100_000);
    let calls = env("HANSE_BENCH_CALLS", 2000);
    let dir = tempfile::tempdir().unwrap();
    let backend = match std::env::var("HANSE_BENCH_BACKEND").as_deref() {
        Ok("postgres") => hanse::testing::Backend::Postgres,
        Ok("sqlite") | Err(_) => hanse::testing::Backend::Sqlite,
        Ok(other) => panic!("HANSE_BENCH_BACKEND is sqlite or postgres, not {other}"),
    };
    let database = hanse::testing::TestDatabase::new(backend);
    let (_, mut config, public, management) = hanse::testing::initialised(dir.path()).await;
    config.store.database_url = Some(database.url.clone());
    config.store.schema = database.schema.clone();
    let store = format!("{backend:?}");
    let running = hanse::server::start_on(config, public, management).await.unwrap();
    let state = running.state.clone();
    let key = state.config.management.api_key.clone();
    let base = running.management_url();

    // A 100 000-row table, offered for research use; a token with a rate no benchmark reaches.
    let csv = dir.path().join("cohort.csv");
    let schema = hanse::compute::commands::synth(rows, 0, 7, &csv).unwrap();
    hanse::compute::commands::ingest(&base, &key, "cohort", &csv, &schema, json!({"title": "Cohort"})).await.unwrap();
    let client = reqwest::Client::new();
    let post = async |path: &str, body: Value| {
        let response = client.post(format!("{base}{path}")).header("X-Api-Key", &key).json(&body).send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{path}: {body:#}");
        body
    };
    let policy = |id: &str, permission: Value| {
        json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@id": id,
        "policy": {"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [permission]}})
    };
    post("/management/v3/policydefinitions", policy("open", json!({"action": "use"}))).await;
    post(
        "/management/v3/policydefinitions",
        policy(
            "research",
            json!({"action": "use", "constraint": [
        {"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"}]}),
        ),
    )
    .await;
    post(
        "/management/v3/contractdefinitions",
        json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@id": "offer",
        "accessPolicyId": "open", "contractPolicyId": "research", "assetsSelector": []}),
    )
    .await;
    let issued = post(
        "/management/v3/apps/tokens",
        json!({"name": "Benchmark app", "datasets": ["cohort"],
        "actions": ["read"], "purpose": "DUO:0000007", "ratePerMinute": 1_000_000}),
    )
    .await;
    let token = issued["token"].as_str().unwrap().to_owned();
    let public_url = running.public_url();

    // The plain server holds the same table.
    let table = {
        let file = state.catalogue.asset("cohort").map(|a| match &a.value.data_address {
            hanse::catalog::model::DataAddress::Table { file, .. } => file.clone(),
            _ => unreachable!("an ingested table"),
        });
        state.compute.table(&file.unwrap()).await.unwrap()
    };
    let served = table.clone();
    let plain = axum::Router::new().route(
        "/rows/{offset}",
        axum::routing::get(move |axum::extract::Path(offset): axum::extract::Path<usize>| {
            let table = served.clone();
            async move { axum::Json(plain_page(&table, offset)) }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, plain).await });

    let offset = move |i: usize| (i * 7919) % (rows - 100);
    let hanse_url = {
        let public_url = public_url.clone();
        move |i: usize| format!("{public_url}/apps/v1/datasets/cohort/rows?offset={}&limit=100", offset(i))
    };
    let plain_url = {
        let plain_base = plain_base.clone();
        move |i: usize| format!("{plain_base}/rows/{}", offset(i))
    };
    // Warm both.
    sequential(&client, 50, Some(&token), &hanse_url).await;
    sequential(&client, 50, None, &plain_url).await;

    let hanse = sequential(&client, calls, Some(&token), &hanse_url).await;
    let baseline = sequential(&client, calls, None, &plain_url).await;
    let hanse_rate = concurrent(&client, calls, Some(token.clone()), Arc::new(hanse_url)).await;
    let plain_rate = concurrent(&client, calls, None, Arc::new(plain_url)).await;

    let used = state.store.governance.app_tokens().await.unwrap();
    println!("app API, pages of 100 rows of a {rows}-row table, {calls} calls each, store {store}");
    println!(
        "  sequential   Hanse p50 {:.2} ms  p99 {:.2} ms   plain p50 {:.2} ms  p99 {:.2} ms   ratio p99 {:.2}×",
        percentile(&hanse, 0.5),
        percentile(&hanse, 0.99),
        percentile(&baseline, 0.5),
        percentile(&baseline, 0.99),
        percentile(&hanse, 0.99) / percentile(&baseline, 0.99)
    );
    println!("  16 clients   Hanse {hanse_rate:.0}/s   plain {plain_rate:.0}/s   ratio {:.2}", hanse_rate / plain_rate);
    println!("  uses counted on the token: {} (every call, each with its audit entry)", used[0].requests);
    running.shutdown().await;
}
