//! A caller naming a did:web host that never answers: its request is refused once the fetch's time limit passes, and
//! the failure is remembered, so that more requests naming the host neither wait again nor reach it again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hanse_tests::*;
use serde_json::json;

/// A host on loopback that takes connections and never says a word, counting them; its did:web, an attacker's keys
/// for it (in the folder returned), and the count.
async fn silent_host() -> (String, hanse::identity::keys::KeyRing, Arc<AtomicUsize>, tempfile::TempDir) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let did = hanse::init::did_web_for(&silent.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("attacker.pem");
    std::fs::write(&key_file, hanse::init::generate_p256().unwrap().private_key_to_pem_pkcs8().unwrap()).unwrap();
    let keys = hanse::identity::keys::KeyRing::load(&did, &key_file).unwrap();
    (did, keys, connections, dir)
}

/// The status of a catalogue request to `connector` signed with `keys` (the caller's did:web names the silent host).
async fn catalogue_request(
    client: &reqwest::Client,
    connector: &TestConnector,
    keys: &hanse::identity::keys::KeyRing,
) -> u16 {
    client
        .post(format!("{}/protocol/2025-1/catalog/request", connector.public_url()))
        .header("Authorization", hanse::identity::token::authorization(keys, connector.participant_id()))
        .json(&catalog_request(json!([])))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_did_host_that_never_answers_is_asked_once_and_its_callers_refused() {
    let (_, keys, connections, _dir) = silent_host().await;

    let connector = TestConnector::start(Backend::Sqlite).await;
    let client = reqwest::Client::new();
    for attempt in 0..3 {
        assert_eq!(catalogue_request(&client, &connector, &keys).await, 401, "attempt {attempt}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1, "the failure of the first fetch is remembered");
    let ready = client.get(format!("{}/health/ready", connector.management_url())).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    connector.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_development_mode_a_did_on_a_loopback_host_is_refused_without_a_connection() {
    let (did, keys, connections, _dir) = silent_host().await;

    let connector = TestConnector::start_with(Backend::Sqlite, |config| config.participant.development = false).await;
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    assert_eq!(catalogue_request(&client, &connector, &keys).await, 401);
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "refused before the fetch time limit");
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the loopback host was never connected to");
    // The resolver says why.
    let refused = connector.running.state.identity.resolver().resolve(&did).await.unwrap_err().to_string();
    assert!(refused.contains("a loopback address") && refused.contains("trust.allow_addresses"), "{refused}");
    connector.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_did_document_larger_than_a_megabyte_is_not_read() {
    // A host that answers its DID document with 8 MiB of JSON.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let did = hanse::init::did_web_for(&listener.local_addr().unwrap());
    let huge = format!("{{\"id\": \"{did}\", \"padding\": \"{}\"}}", "x".repeat(8 * 1024 * 1024));
    let app = axum::Router::new().route("/.well-known/did.json", axum::routing::get(move || async move { huge }));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let connector = TestConnector::start(Backend::Sqlite).await;
    let refused = connector.running.state.identity.resolver().resolve(&did).await.unwrap_err().to_string();
    assert!(refused.contains("larger than 1024 KiB"), "{refused}");
    connector.running.shutdown().await;
}
