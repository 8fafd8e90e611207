//! The peer network between real connectors: five connectors that each know one neighbour come to know all the
//! others through signed peer lists; a connector that leaves ages out; lists are verified before anything is
//! taken in.

use std::collections::BTreeSet;

use hanse::testing::backends;
use hanse_tests::*;
use serde_json::{Value, json};

/// Fast rounds for a test: exchange every second, forget after four silent seconds.
fn quick(config: &mut hanse::config::Config) {
    config.peers.exchange_interval_seconds = 1;
    config.peers.stale_after_seconds = 4;
}

/// The peers a connector lists as live.
async fn live_peers(api: &Management) -> BTreeSet<String> {
    let answer = api.get("/management/v3/peers").await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    answer
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "live")
        .map(|p| p["did"].as_str().unwrap().to_owned())
        .collect()
}

async fn listed(api: &Management) -> Vec<Value> {
    api.get("/management/v3/peers").await.body.as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_connectors_knowing_one_neighbour_come_to_know_each_other_and_a_departed_one_ages_out() {
    let available = backends();
    let client = reqwest::Client::new();
    // Started last to first, so that each of the first four names the next one as its seed in its configuration.
    let mut connectors: Vec<TestConnector> = Vec::new();
    for i in (0..5).rev() {
        let backend = available[i % available.len()];
        let seed = connectors.first().map(|next: &TestConnector| next.participant_id().to_owned());
        let connector = TestConnector::start_with(backend, |config| {
            quick(config);
            config.peers.seeds.extend(seed);
        })
        .await;
        connectors.insert(0, connector);
    }
    // The fifth knows the first, added by its operator (by URL, the way one learns of a connector).
    let apis: Vec<Management> = connectors.iter().map(|c| Management::of(c, &client)).collect();
    let added = apis[4].post("/management/v3/peers", &json!({"url": connectors[0].public_url()})).await;
    assert_eq!(added.status, 201, "{:#}", added.body);
    assert_eq!(added.body["did"], connectors[0].participant_id());
    assert_eq!(added.body["source"], "manual");
    assert_eq!(added.body["status"], "live");
    assert_eq!(added.body["address"], format!("{}/protocol/2025-1", connectors[0].public_url()));

    let everyone: BTreeSet<String> = connectors.iter().map(|c| c.participant_id().to_owned()).collect();
    for (i, api) in apis.iter().enumerate() {
        let others: BTreeSet<String> =
            everyone.iter().filter(|d| *d != connectors[i].participant_id()).cloned().collect();
        until(&format!("connector {i} knows the four others"), async || live_peers(api).await == others).await;
    }
    // How each one learned: its seed is pinned, the others were learned (or pinned by hand).
    let first = listed(&apis[0]).await;
    let seed = first.iter().find(|p| p["did"] == connectors[1].participant_id()).unwrap();
    assert_eq!(seed["source"], "seed");
    assert!(first.iter().filter(|p| p["did"] != connectors[1].participant_id()).all(|p| p["source"] == "learned"));

    // The signed list verifies against the DID document; without a token there is none.
    let peers_url = format!("{}/hanse/peers", connectors[2].public_url());
    let anonymous = client.get(&peers_url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let jwt = client
        .get(&peers_url)
        .header("Authorization", connectors[0].authorization(connectors[2].participant_id()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let claims = hanse::identity::verify_signed_with(
        connectors[0].running.state.identity.resolver(),
        &jwt,
        "hanse-peers+jwt",
        connectors[2].participant_id(),
    )
    .await
    .expect("the peer list verifies");
    let entries: BTreeSet<String> =
        claims["peers"].as_array().unwrap().iter().map(|e| e["did"].as_str().unwrap().to_owned()).collect();
    assert_eq!(entries, everyone, "a list names its signer and every live peer");

    // The third leaves: the connectors that learned of it forget it; the one that has it as its seed keeps it
    // pinned, as unreachable, and passes it on to no one.
    let departed = connectors.remove(2);
    let departed_did = departed.participant_id().to_owned();
    departed.running.shutdown().await;
    let apis: Vec<Management> = connectors.iter().map(|c| Management::of(c, &client)).collect();
    for (i, api) in apis.iter().enumerate() {
        if i == 1 {
            until("the seed holder marks the departed unreachable", async || {
                listed(api).await.iter().any(|p| p["did"] == departed_did.as_str() && p["status"] == "unreachable")
            })
            .await;
        } else {
            until(&format!("connector {i} forgets the departed"), async || {
                !listed(api).await.iter().any(|p| p["did"] == departed_did.as_str())
            })
            .await;
        }
    }
    let remaining: BTreeSet<String> = connectors.iter().map(|c| c.participant_id().to_owned()).collect();
    for (i, api) in apis.iter().enumerate() {
        let others: BTreeSet<String> =
            remaining.iter().filter(|d| *d != connectors[i].participant_id()).cloned().collect();
        assert_eq!(live_peers(api).await, others, "connector {i} still knows the other three");
    }
    // The operator can remove a peer; removing an unknown one is a 404.
    let seed = urlencode(&departed_did);
    assert_eq!(apis[1].delete(&format!("/management/v3/peers/{seed}")).await.status, 204);
    assert_eq!(apis[1].delete(&format!("/management/v3/peers/{seed}")).await.status, 404);
    for connector in connectors {
        connector.running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_cannot_be_verified_is_refused_and_bad_seeds_are_named() {
    let backend = backends()[0];
    let connector = TestConnector::start_with(backend, |c| c.peers.exchange_interval_seconds = 0).await;
    let client = reqwest::Client::new();
    let api = Management::of(&connector, &client);
    // A DID whose document cannot be fetched.
    let missing = api.post("/management/v3/peers", &json!({"did": "did:web:127.0.0.1%3A9"})).await;
    assert_eq!(missing.status, 400, "{:#}", missing.body);
    assert!(missing.body.to_string().contains("does not resolve"), "{:#}", missing.body);
    // Not a DID, both, neither, ourselves.
    for body in [
        json!({"did": "hospital-a"}),
        json!({"did": "did:web:a", "url": "https://a"}),
        json!({}),
        json!({"did": connector.participant_id()}),
    ] {
        let answer = api.post("/management/v3/peers", &body).await;
        assert_eq!(answer.status, 400, "{body}: {:#}", answer.body);
    }
    assert!(listed(&api).await.is_empty(), "nothing was recorded");

    // A participant with a DID document but no DSP endpoint answering: kept as the operator asked, unreachable.
    let participant = TestParticipant::start().await;
    let kept = api.post("/management/v3/peers", &json!({"did": participant.did()})).await;
    assert_eq!(kept.status, 201, "{:#}", kept.body);
    assert_eq!(kept.body["status"], "unreachable");
    assert!(kept.body["detail"].as_str().unwrap().contains("dspace-version"), "{:#}", kept.body);

    // One that speaks only an older DSP: reported with what it offers, not guessed at.
    let older = TestParticipant::serving(axum::Router::new().route(
        "/.well-known/dspace-version",
        axum::routing::get(|| async {
            axum::Json(json!({"protocolVersions": [{"version": "2024-1", "path": "/dsp", "binding": "HTTPS"}]}))
        }),
    ))
    .await;
    let incompatible = api.post("/management/v3/peers", &json!({"did": older.did()})).await;
    assert_eq!(incompatible.status, 201, "{:#}", incompatible.body);
    assert_eq!(incompatible.body["status"], "incompatible");
    assert!(incompatible.body["detail"].as_str().unwrap().contains("offers DSP 2024-1"), "{:#}", incompatible.body);
    connector.running.shutdown().await;

    // Seeds are checked with the configuration.
    let dir = tempfile::tempdir().unwrap();
    let (_, mut config, _, _) = hanse::testing::initialised(dir.path()).await;
    config.peers.seeds = vec!["hospital-b".into()];
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("peers.seeds[0]"), "{error}");
}

fn urlencode(value: &str) -> String {
    hanse::catalog::rdf::encode(value)
}
