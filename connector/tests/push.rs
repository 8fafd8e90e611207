//! A push cut off by a crash: the provider (SIGKILL) stops in the middle of pushing a dataset whose backend does not
//! say its length. After the restart the push is delivered again, whole, under the same delivery id; the cut-off
//! delivery declared a length it never reached, so the destination can tell it apart, and the transfer says that an
//! earlier delivery was interrupted. Runs with the provider on SQLite and on PostgreSQL.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::HeaderMap;
use futures_util::StreamExt;
use hanse::testing::{Backend, TestDatabase, backends};
use serde_json::{Value, json};

mod support;
use support::{Node, post};

const SIZE: usize = 6 << 20;

/// One delivery the destination received: its delivery id and attempt, the length it declared, what arrived, and
/// whether the body ended normally.
#[derive(Debug, Clone)]
struct Delivery {
    key: String,
    attempt: String,
    declared: usize,
    received: usize,
    whole: bool,
}

type Deliveries = Arc<Mutex<Vec<Delivery>>>;

fn data() -> Vec<u8> {
    (0..SIZE).map(|i| (i * 31 % 251) as u8).collect()
}

/// A backend that streams the dataset without a length, and a destination that reads slowly.
async fn servers(deliveries: Deliveries, reading: Arc<Mutex<usize>>) -> (String, String) {
    let source = axum::Router::new().route(
        "/data",
        axum::routing::get(|| async {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                data().chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
            Body::from_stream(futures_util::stream::iter(chunks))
        }),
    );
    let sink = axum::Router::new().route(
        "/incoming",
        axum::routing::post(move |headers: HeaderMap, body: Body| {
            let (deliveries, reading) = (deliveries.clone(), reading.clone());
            async move {
                let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let delivery = Delivery {
                    key: text("idempotency-key"),
                    attempt: text("hanse-delivery-attempt"),
                    declared: text("content-length").parse().unwrap_or(0),
                    received: 0,
                    whole: false,
                };
                // Recorded as it arrives: a connection cut off drops this handler before its end.
                let index = {
                    let mut all = deliveries.lock().unwrap();
                    all.push(delivery);
                    all.len() - 1
                };
                let mut stream = body.into_data_stream();
                let mut received = 0;
                while let Some(chunk) = stream.next().await {
                    let Ok(chunk) = chunk else { return axum::http::StatusCode::BAD_REQUEST };
                    received += chunk.len();
                    deliveries.lock().unwrap()[index].received = received;
                    *reading.lock().unwrap() = received;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let mut all = deliveries.lock().unwrap();
                all[index].whole = all[index].received == all[index].declared;
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let serve = |app: axum::Router| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        address
    };
    (format!("http://{}/data", serve(source).await), format!("http://{}/incoming", serve(sink).await))
}

async fn cut_off_push(backend: Backend) {
    let database = TestDatabase::new(backend);
    let mut provider = Node::init();
    provider.use_database(&database);
    let mut consumer = Node::init();
    provider.start().await;
    consumer.start().await;
    let deliveries: Deliveries = Arc::default();
    let reading = Arc::new(Mutex::new(0));
    let (source, sink) = servers(deliveries.clone(), reading.clone()).await;
    let client = reqwest::Client::new();

    let open =
        json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [{"action": "use"}]});
    post(
        &client,
        &provider,
        "/v3/assets",
        json!({"@id": "stream", "properties": {"title": "Stream"},
        "dataAddress": {"type": "HttpData", "baseUrl": source}}),
    )
    .await;
    post(&client, &provider, "/v3/policydefinitions", json!({"@id": "open", "policy": open})).await;
    post(
        &client,
        &provider,
        "/v3/contractdefinitions",
        json!({"@id": "cd", "accessPolicyId": "open", "contractPolicyId": "open", "assetsSelector": []}),
    )
    .await;
    let catalog = post(
        &client,
        &consumer,
        "/v3/catalog/request",
        json!({"counterPartyAddress": provider.protocol(), "protocol": "dataspace-protocol-http:2025-1"}),
    )
    .await;
    let mut offer = catalog["dataset"][0]["hasPolicy"][0].clone();
    offer["target"] = json!("stream");
    offer["assigner"] = json!(provider.participant);
    let started = post(
        &client,
        &consumer,
        "/v3/contractnegotiations",
        json!({"counterPartyAddress": provider.protocol(),
        "counterPartyId": provider.participant, "protocol": "dataspace-protocol-http:2025-1", "policy": offer}),
    )
    .await;
    let negotiation = started["@id"].as_str().unwrap().to_owned();
    let state = |resource: &'static str, id: String| {
        let (client, consumer) = (client.clone(), &consumer);
        async move {
            let all = post(&client, consumer, &format!("/v3/{resource}/request"), json!({"limit": 1000})).await;
            all.as_array().unwrap().iter().find(|p| p["@id"] == id.as_str()).cloned().unwrap_or(Value::Null)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let agreement = loop {
        let negotiated = state("contractnegotiations", negotiation.clone()).await;
        if negotiated["state"] == "FINALIZED" {
            break negotiated["contractAgreementId"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "not agreed: {negotiated}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let transfer = post(
        &client,
        &consumer,
        "/v3/transferprocesses",
        json!({"contractId": agreement,
        "transferType": "HttpData-PUSH", "protocol": "dataspace-protocol-http:2025-1",
        "dataDestination": {"type": "HttpData", "baseUrl": sink}}),
    )
    .await;
    let id = transfer["@id"].as_str().unwrap().to_owned();
    // The provider dies with a third of the data delivered.
    let deadline = Instant::now() + Duration::from_secs(30);
    while *reading.lock().unwrap() < SIZE / 3 {
        assert!(Instant::now() < deadline, "the push did not begin");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    provider.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    provider.start().await;

    let deadline = Instant::now() + Duration::from_secs(60);
    while state("transferprocesses", id.clone()).await["state"] != "COMPLETED" {
        assert!(Instant::now() < deadline, "{backend:?}: the push was not completed after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deliveries = deliveries.lock().unwrap().clone();
    eprintln!("{backend:?}: {deliveries:?}");
    let provider_side = post(&client, &provider, "/v3/transferprocesses/request", json!({"limit": 10})).await;
    let ours = provider_side.as_array().unwrap().iter().find(|t| t["correlationId"] == id.as_str()).unwrap().clone();
    let key = ours["@id"].as_str().unwrap();
    assert!(deliveries.iter().all(|d| d.key == key && d.declared == SIZE), "{backend:?}: {deliveries:?}");
    assert_eq!(
        deliveries.iter().filter(|d| d.whole).count(),
        1,
        "{backend:?}: exactly one whole delivery: {deliveries:?}"
    );
    assert!(
        deliveries.iter().any(|d| !d.whole && d.received < d.declared),
        "{backend:?}: the cut-off one is incomplete"
    );
    let whole = deliveries.iter().find(|d| d.whole).unwrap();
    assert_eq!(whole.attempt, "2", "{backend:?}");
    assert_eq!(ours["pushAttempts"], 2, "{ours:#}");
    assert!(ours["pushNote"].as_str().is_some_and(|n| n.contains("interrupted") && n.contains(key)), "{ours:#}");
    drop(database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_cut_off_by_a_crash_is_delivered_again_whole_and_the_transfer_says_so() {
    for backend in backends() {
        cut_off_push(backend).await;
    }
}
