//! Crash safety: kill the provider process (SIGKILL, no graceful stop) while 200 negotiations are in flight, start it
//! again on the same store, and every negotiation still ends FINALIZED or TERMINATED — the same on both sides, none
//! lost, none duplicated. Runs with the provider on SQLite and on PostgreSQL.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hanse::testing::{Backend, TestDatabase, backends};
use serde_json::{Value, json};

mod support;
use support::{Node, post};

const NEGOTIATIONS: usize = 200;

async fn negotiations(client: &reqwest::Client, node: &Node) -> Vec<Value> {
    post(client, node, "/v3/contractnegotiations/request", json!({"limit": 10000})).await.as_array().unwrap().clone()
}

fn terminal(n: &Value) -> bool {
    n["state"] == "FINALIZED" || n["state"] == "TERMINATED"
}

async fn crash_scenario(provider_backend: Backend) {
    let database = TestDatabase::new(provider_backend);
    let mut provider = Node::init();
    provider.use_database(&database);
    let mut consumer = Node::init();
    provider.start().await;
    consumer.start().await;
    let client = reqwest::Client::new();
    let offer = support::open_offer(&client, &provider, &consumer).await;

    // 200 negotiations, started in parallel batches; the provider dies while they are in flight.
    let mut ids = Vec::new();
    for batch in 0..(NEGOTIATIONS / 25) {
        let mut started = Vec::new();
        for _ in 0..25 {
            let body = json!({"counterPartyAddress": provider.protocol(), "counterPartyId": provider.participant,
                              "protocol": "dataspace-protocol-http:2025-1", "policy": offer});
            let (client, consumer_url, key) = (client.clone(), consumer.management(), consumer.api_key.clone());
            started.push(tokio::spawn(async move {
                let answer: Value = client
                    .post(format!("{consumer_url}/v3/contractnegotiations"))
                    .header("X-Api-Key", key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                answer["@id"].as_str().unwrap().to_owned()
            }));
        }
        for id in started {
            ids.push(id.await.unwrap());
        }
        if batch == NEGOTIATIONS / 25 / 2 {
            let in_flight = negotiations(&client, &consumer).await.iter().filter(|n| !terminal(n)).count();
            provider.kill();
            assert!(in_flight > 0, "the provider must die with negotiations in flight");
            eprintln!("{provider_backend:?}: provider killed with {in_flight} negotiations in flight");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    provider.start().await;

    // Everything settles.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (on_consumer, on_provider) = loop {
        let on_consumer = negotiations(&client, &consumer).await;
        let on_provider = negotiations(&client, &provider).await;
        if on_consumer.len() == NEGOTIATIONS && on_consumer.iter().all(terminal) && on_provider.iter().all(terminal) {
            break (on_consumer, on_provider);
        }
        assert!(
            Instant::now() < deadline,
            "{:?}: not settled after 90 s: consumer {:?}, provider {:?}",
            provider_backend,
            on_consumer.iter().filter(|n| !terminal(n)).map(|n| n["state"].clone()).collect::<Vec<_>>(),
            on_provider.iter().filter(|n| !terminal(n)).map(|n| n["state"].clone()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut consumer_ids: Vec<&str> = on_consumer.iter().map(|n| n["@id"].as_str().unwrap()).collect();
    consumer_ids.sort();
    ids.sort();
    assert_eq!(consumer_ids, ids.iter().map(String::as_str).collect::<Vec<_>>(), "none lost on the consumer");
    // None duplicated on the provider: one negotiation per consumer negotiation, in the same final state.
    let by_consumer_pid: HashMap<&str, &Value> =
        on_provider.iter().map(|n| (n["correlationId"].as_str().unwrap(), n)).collect();
    assert_eq!(
        by_consumer_pid.len(),
        on_provider.len(),
        "{provider_backend:?}: a consumer negotiation appears twice on the provider"
    );
    let mut finalized = 0;
    for negotiation in &on_consumer {
        let id = negotiation["@id"].as_str().unwrap();
        match by_consumer_pid.get(id) {
            Some(theirs) => {
                assert_eq!(
                    theirs["state"], negotiation["state"],
                    "{provider_backend:?}: {id} differs between the sides"
                );
                if negotiation["state"] == "FINALIZED" {
                    assert_eq!(theirs["contractAgreementId"], negotiation["contractAgreementId"]);
                    finalized += 1;
                }
            }
            // The provider never received it: the consumer gave up, and says so.
            None => assert_eq!(
                negotiation["state"], "TERMINATED",
                "{provider_backend:?}: {id} finalized without a provider negotiation"
            ),
        }
    }
    assert!(finalized > NEGOTIATIONS / 2, "{provider_backend:?}: only {finalized} of {NEGOTIATIONS} finalized");
    eprintln!(
        "{provider_backend:?}: {finalized} finalized, {} terminated, {} known to the provider",
        NEGOTIATIONS - finalized,
        on_provider.len()
    );
    drop(database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_provider_mid_flight_loses_and_duplicates_nothing() {
    for backend in backends() {
        crash_scenario(backend).await;
    }
}
