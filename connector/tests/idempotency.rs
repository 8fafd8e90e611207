//! Retries after a crash: clients start negotiations with an `Idempotency-Key` and retry each call (same key, same
//! body) until it answers, while the consumer is killed (SIGKILL) and started again. Every key ends with exactly one
//! negotiation, whatever the moment of the kill. Runs with the consumer on SQLite and on PostgreSQL.

use std::time::{Duration, Instant};

use hanse::testing::{Backend, TestDatabase, backends};
use serde_json::{Value, json};

mod support;
use support::{Node, post};

const CALLS: usize = 120;

/// Posts until an answer with an `@id` comes (connection errors, 409 and 5xx are retried); answers it and how many
/// attempts it took.
async fn until_answered(
    client: reqwest::Client,
    url: String,
    api_key: String,
    key: String,
    body: Value,
) -> (String, u32) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let sent = client
            .post(&url)
            .header("X-Api-Key", &api_key)
            .header("Idempotency-Key", &key)
            .timeout(Duration::from_secs(5))
            .json(&body)
            .send()
            .await;
        if let Ok(response) = sent {
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            if let Some(id) = answer["@id"].as_str().filter(|_| status == 200) {
                return (id.to_owned(), attempts);
            }
            assert!(matches!(status, 409 | 500..), "{key}: {status} {answer}");
        }
        assert!(Instant::now() < deadline, "{key}: no answer within 90 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn retried_through_a_crash(backend: Backend) {
    let database = TestDatabase::new(backend);
    let provider = {
        let mut provider = Node::init();
        provider.start().await;
        provider
    };
    let mut consumer = Node::init();
    consumer.use_database(&database);
    consumer.start().await;
    let client = reqwest::Client::new();
    let offer = support::open_offer(&client, &provider, &consumer).await;
    let body = json!({"counterPartyAddress": provider.protocol(), "counterPartyId": provider.participant,
                      "protocol": "dataspace-protocol-http:2025-1", "policy": offer});
    let url = format!("{}/v3/contractnegotiations", consumer.management());
    let calls: Vec<_> = (0..CALLS)
        .map(|i| {
            let (client, url, api_key, body) = (client.clone(), url.clone(), consumer.api_key.clone(), body.clone());
            tokio::spawn(until_answered(client, url, api_key, format!("start-{i}"), body))
        })
        .collect();
    // Kill the consumer while the calls are under way, then start it again on the same store.
    let until = Instant::now() + Duration::from_secs(10);
    while post(&client, &consumer, "/v3/contractnegotiations/request", json!({"limit": 10000}))
        .await
        .as_array()
        .unwrap()
        .len()
        < CALLS / 3
    {
        assert!(Instant::now() < until, "the calls did not get under way");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    consumer.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    consumer.start().await;
    let mut ids = Vec::new();
    let mut retried = 0;
    for call in calls {
        let (id, attempts) = call.await.unwrap();
        retried += usize::from(attempts > 1);
        ids.push(id);
    }
    let held = post(&client, &consumer, "/v3/contractnegotiations/request", json!({"limit": 10000})).await;
    let mut held: Vec<String> =
        held.as_array().unwrap().iter().map(|n| n["@id"].as_str().unwrap().to_owned()).collect();
    held.sort();
    ids.sort();
    eprintln!("{backend:?}: {CALLS} calls, {retried} retried through the crash, {} negotiations", held.len());
    assert!(retried > 0, "{backend:?}: the crash interrupted no call");
    ids.dedup();
    assert_eq!(ids.len(), CALLS, "{backend:?}: two keys were answered with one negotiation");
    assert_eq!(held, ids, "{backend:?}: the consumer holds a negotiation no key was answered with, or lacks one");
    drop(database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_starts_exactly_one_negotiation_across_a_crash() {
    for backend in backends() {
        retried_through_a_crash(backend).await;
    }
}
