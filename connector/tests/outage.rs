//! Outages longer than the retry budget: while negotiations and transfers are under way, the provider is down for
//! three times the retry budget, then the consumer is. Afterwards every process has converged: none is left waiting
//! for its peer, and both sides hold every shared process in the same state. Runs with both connectors on SQLite and
//! on PostgreSQL.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hanse::testing::{Backend, TestDatabase, backends};
use serde_json::{Value, json};

mod support;
use support::{Node, post};

/// Negotiations and transfers started in each of the two outages.
const EACH: usize = 150;
/// Retries: 100 ms doubling, 5 attempts — a budget of 3.1 s.
const BUDGET: Duration = Duration::from_millis(100 + 200 + 400 + 800 + 1600);

fn node(database: &TestDatabase) -> Node {
    let mut node = Node::init();
    for (key, value) in [
        ("HANSE_NEGOTIATION_RETRY_BASE_MS", "100"),
        ("HANSE_NEGOTIATION_RETRY_ATTEMPTS", "5"),
        ("HANSE_NEGOTIATION_RETRY_MAX_DELAY_MS", "1000"),
        ("HANSE_NEGOTIATION_PEER_SILENCE_SECONDS", "2"),
    ] {
        node.env.push((key.into(), value.into()));
    }
    node.use_database(database);
    node
}

async fn list(client: &reqwest::Client, node: &Node, resource: &str) -> Vec<Value> {
    post(client, node, &format!("/v3/{resource}/request"), json!({"limit": 10000})).await.as_array().unwrap().clone()
}

/// Starts `n` negotiations and `n` transfers on the consumer at once; answers when `started` of the calls returned
/// (the rest go on in the background; calls the outage cuts off fail and are forgotten).
async fn start_many(client: &reqwest::Client, consumer: &Node, negotiation: &Value, transfer: &Value, n: usize) {
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..2 * n {
        let (client, key) = (client.clone(), consumer.api_key.clone());
        let (url, body) = if i % 2 == 0 {
            (format!("{}/v3/contractnegotiations", consumer.management()), negotiation.clone())
        } else {
            (format!("{}/v3/transferprocesses", consumer.management()), transfer.clone())
        };
        calls.spawn(async move { client.post(url).header("X-Api-Key", key).json(&body).send().await.is_ok() });
    }
    // Half under way: the outage begins while the rest are in flight.
    let mut returned = 0;
    while returned < n {
        let Some(_) = calls.join_next().await else { break };
        returned += 1;
    }
    calls.detach_all();
}

/// Every process both sides know, paired by the consumer's id; the consumer's processes the provider never saw.
fn pairs<'a>(consumer: &'a [Value], provider: &'a [Value]) -> (Vec<(&'a Value, &'a Value)>, Vec<&'a Value>) {
    let theirs: HashMap<&str, &Value> =
        provider.iter().filter_map(|p| Some((p["correlationId"].as_str()?, p))).collect();
    let mut paired = Vec::new();
    let mut alone = Vec::new();
    for ours in consumer {
        match theirs.get(ours["@id"].as_str().unwrap()) {
            Some(theirs) => paired.push((ours, *theirs)),
            None => alone.push(ours),
        }
    }
    (paired, alone)
}

/// What is still wrong: processes waiting for a peer, pairs in different states, consumer processes that went on
/// without a provider process.
fn wrong(resource: &str, consumer: &[Value], provider: &[Value]) -> Vec<String> {
    let waiting: &[&str] = if resource == "contractnegotiations" {
        &["REQUESTED", "OFFERED", "ACCEPTED", "AGREED", "VERIFIED"]
    } else {
        &["REQUESTED"]
    };
    let mut wrong = Vec::new();
    for (side, processes) in [("consumer", consumer), ("provider", provider)] {
        for process in processes.iter().filter(|p| waiting.contains(&p["state"].as_str().unwrap())) {
            wrong.push(format!("{resource}: {side} {} stuck in {}", process["@id"], process["state"]));
        }
    }
    let (paired, alone) = pairs(consumer, provider);
    for (ours, theirs) in paired {
        if ours["state"] != theirs["state"] {
            wrong.push(format!("{resource}: {} is {} here and {} there", ours["@id"], ours["state"], theirs["state"]));
        }
    }
    for ours in alone.into_iter().filter(|p| p["state"] != "TERMINATED") {
        wrong.push(format!("{resource}: {} is {} but the provider has no such process", ours["@id"], ours["state"]));
    }
    wrong
}

async fn outage(backend: Backend) {
    let (consumer_db, provider_db) = (TestDatabase::new(backend), TestDatabase::new(backend));
    let mut provider = node(&provider_db);
    let mut consumer = node(&consumer_db);
    provider.start().await;
    consumer.start().await;
    let client = reqwest::Client::new();
    let offer = support::open_offer(&client, &provider, &consumer).await;
    let negotiation = json!({"counterPartyAddress": provider.protocol(), "counterPartyId": provider.participant,
                             "protocol": "dataspace-protocol-http:2025-1", "policy": offer});
    let first = post(&client, &consumer, "/v3/contractnegotiations", negotiation.clone()).await;
    let id = first["@id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let agreement = loop {
        let state = post(&client, &consumer, "/v3/contractnegotiations/request", json!({"limit": 10})).await;
        let ours = state.as_array().unwrap().iter().find(|n| n["@id"] == id.as_str()).cloned().unwrap();
        if ours["state"] == "FINALIZED" {
            break ours["contractAgreementId"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the first negotiation did not finalize");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let transfer = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@type": "TransferRequest",
        "contractId": agreement, "transferType": "HttpData-PULL", "protocol": "dataspace-protocol-http:2025-1"});

    // The provider goes down with work in flight, for three retry budgets.
    start_many(&client, &consumer, &negotiation, &transfer, EACH).await;
    provider.kill();
    tokio::time::sleep(3 * BUDGET).await;
    provider.start().await;
    // Then the consumer.
    start_many(&client, &consumer, &negotiation, &transfer, EACH).await;
    consumer.kill();
    tokio::time::sleep(3 * BUDGET).await;
    consumer.start().await;

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut problems = Vec::new();
        let mut counts = Vec::new();
        for resource in ["contractnegotiations", "transferprocesses"] {
            let (ours, theirs) = (list(&client, &consumer, resource).await, list(&client, &provider, resource).await);
            problems.extend(wrong(resource, &ours, &theirs));
            let final_states: HashMap<String, usize> = ours.iter().fold(HashMap::new(), |mut counts, p| {
                *counts.entry(p["state"].as_str().unwrap().to_owned()).or_default() += 1;
                counts
            });
            counts.push(format!("{resource}: consumer {final_states:?}, provider {}", theirs.len()));
        }
        if problems.is_empty() {
            eprintln!("{backend:?}: converged: {}", counts.join("; "));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{backend:?}: not converged 120 s after the outages ({} problems): {:#?}",
            problems.len(),
            problems.iter().take(20).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_outages_longer_than_the_retry_budget_both_sides_converge() {
    for backend in backends() {
        outage(backend).await;
    }
}
