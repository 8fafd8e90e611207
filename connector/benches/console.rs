//! Console benchmark: the server time of each console page of a provider holding 10 000 datasets and 10 000
//! negotiations (finalized with a real consumer over DSP), signed in as the operator, against the management API
//! call behind the list pages in the same run. Prints p50 / p99 per page and the ratio of the datasets and
//! negotiations pages to their API calls.
//!
//! `cargo bench -p hanse --bench console`; `HANSE_BENCH_DATASETS` (default 10000), `HANSE_BENCH_NEGOTIATIONS`
//! (default 10000), `HANSE_BENCH_CALLS` (calls per page, default 200).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hanse::negotiation::Start;
use hanse::negotiation::machine::State as NegotiationState;
use serde_json::json;
use tokio::sync::Semaphore;

mod support;
use support::percentile;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn timed(calls: usize, mut call: impl AsyncFnMut() -> reqwest::Response) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        let response = call().await;
        assert!(response.status().is_success(), "{}", response.status());
        let body = response.bytes().await.unwrap();
        assert!(!body.is_empty());
        latencies.push(start.elapsed());
    }
    latencies.sort();
    latencies
}

#[tokio::main]
async fn main() {
    let datasets = env("HANSE_BENCH_DATASETS", 10_000);
    let negotiations = env("HANSE_BENCH_NEGOTIATIONS", 10_000);
    let calls = env("HANSE_BENCH_CALLS", 200);
    let (provider_dir, consumer_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_, config, public, management) = hanse::testing::initialised(provider_dir.path()).await;
    support::seed_catalogue(&config, datasets, json!([{"action": "use"}])).await;
    let provider = hanse::server::start_on(config, public, management).await.unwrap();
    let (_, config, public, management) = hanse::testing::initialised(consumer_dir.path()).await;
    let consumer = hanse::server::start_on(config, public, management).await.unwrap();
    let (p, c) = (provider.state.clone(), consumer.state.clone());

    // The consumer negotiates `negotiations` times for the first dataset, 64 in flight.
    let page = p.catalogue.page(
        &hanse_policy::RequestContext::new(c.config.participant.id.clone(), chrono::Utc::now()),
        None,
        None,
        1,
        &Default::default(),
    );
    let dataset: serde_json::Value = serde_json::from_str(&page.datasets[0].text()).unwrap();
    let mut offer = dataset["hasPolicy"][0].clone();
    offer["target"] = dataset["@id"].clone();
    offer["assigner"] = json!(p.config.participant.id);
    let seeding = Instant::now();
    let mut events = c.negotiations.events();
    let permits = Arc::new(Semaphore::new(64));
    let starter = {
        let (c, permits) = (c.clone(), permits.clone());
        let provider_address = format!("{}/protocol/2025-1", provider.public_url());
        let provider_id = p.config.participant.id.clone();
        tokio::spawn(async move {
            let mut starts = tokio::task::JoinSet::new();
            for _ in 0..negotiations {
                permits.acquire().await.unwrap().forget();
                while starts.try_join_next().is_some() {}
                let (c, offer, provider_address, provider_id) =
                    (c.clone(), offer.clone(), provider_address.clone(), provider_id.clone());
                starts.spawn(async move {
                    c.negotiations
                        .start(Start {
                            provider_address,
                            provider_id,
                            offer,
                            auto_accept: true,
                            purpose: Some("DUO:0000007".into()),
                            pull_on_agreement: false,
                        })
                        .await
                        .unwrap();
                });
            }
            while starts.join_next().await.is_some() {}
        })
    };
    let mut ended = HashSet::new();
    while ended.len() < negotiations {
        if let Ok((id, NegotiationState::Finalized | NegotiationState::Terminated)) = events.recv().await
            && ended.insert(id)
        {
            permits.add_permits(1);
        }
    }
    starter.await.unwrap();
    println!("seeded {datasets} datasets and {negotiations} negotiations in {:.1} s", seeding.elapsed().as_secs_f64());

    // Sign in as the operator.
    let base = provider.management_url();
    let key = p.config.management.api_key.clone();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let signed = client
        .post(format!("{base}/console/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("key", key.as_str())]).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    let cookie = signed.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let last = p.store.processes.processes(hanse::store::ProcessKind::Negotiation).await.unwrap();
    let negotiation = last.last().map(|n| n.id.clone()).unwrap();

    let pages = [
        ("overview", "/console".to_owned()),
        ("datasets", "/console/datasets".to_owned()),
        ("datasets, page 200", "/console/datasets?page=200".to_owned()),
        ("datasets, filtered", "/console/datasets?q=004".to_owned()),
        ("dataset", "/console/datasets/dataset-005000".to_owned()),
        ("policies", "/console/policies".to_owned()),
        ("policy", "/console/policies/open".to_owned()),
        ("offers", "/console/offers".to_owned()),
        ("approvals", "/console/approvals".to_owned()),
        ("negotiations", "/console/negotiations".to_owned()),
        ("negotiations, FINALIZED, page 100", "/console/negotiations?state=FINALIZED&page=100".to_owned()),
        ("negotiation", format!("/console/negotiations/{}", hanse_core::encode::percent(&negotiation))),
        ("transfers", "/console/transfers".to_owned()),
        ("jobs", "/console/jobs".to_owned()),
        ("audit", "/console/audit".to_owned()),
        ("federation", "/console/federation".to_owned()),
        ("credentials", "/console/credentials".to_owned()),
    ];
    println!("console pages, {calls} sequential calls each, {datasets} datasets, {negotiations} negotiations, SQLite");
    let mut figures = std::collections::HashMap::new();
    for (name, path) in &pages {
        let url = format!("{base}{path}");
        timed(5, async || client.get(&url).header("cookie", &cookie).send().await.unwrap()).await;
        let latencies = timed(calls, async || client.get(&url).header("cookie", &cookie).send().await.unwrap()).await;
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        println!("  {name:<36} p50 {p50:>6.2} ms   p99 {p99:>6.2} ms");
        figures.insert(*name, p99);
    }
    // The management API calls behind the two big lists, with the operator key: what the console adds to them.
    let query = json!({"offset": 0, "limit": 26, "filterExpression": []});
    for (name, path, body) in [
        ("datasets", "/management/v3/assets/request", query.clone()),
        (
            "negotiations",
            "/management/v3/contractnegotiations/request",
            json!({"offset": 0, "limit": 26, "sortField": "createdAt", "sortOrder": "DESC"}),
        ),
    ] {
        let url = format!("{base}{path}");
        let latencies =
            timed(calls, async || client.post(&url).header("x-api-key", &key).json(&body).send().await.unwrap()).await;
        let p99 = percentile(&latencies, 0.99);
        println!(
            "  API behind {name:<25} p50 {:>6.2} ms   p99 {p99:>6.2} ms   console page / API call (p99) {:.2}×",
            percentile(&latencies, 0.5),
            figures[name] / p99
        );
    }
    provider.shutdown().await;
    consumer.shutdown().await;
}
