//! The EDC ecosystem's own Management API clients run their standard journey against two real Hanse connectors,
//! unchanged: the PyPI `edc-client` (v3 through its hand-written `Connector`, v4 through its generated v4 classes)
//! and the npm `@think-it-labs/edc-connector-client` (v3). The provider's asset proxies an HTTP backend; each journey
//! must pull exactly the backend's bytes.

use std::sync::{Arc, Mutex};

use hanse_tests::{Federation, TestConnector, interop};

/// An HTTP backend behind an `HttpData` asset: answers `payload` at every path and records the paths and queries it
/// was asked for.
struct Backend {
    url: String,
    payload: Vec<u8>,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn backend() -> Backend {
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (body, log) = (payload.clone(), seen.clone());
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let (body, log) = (body.clone(), log.clone());
        async move {
            log.lock().expect("lock").push(uri.to_string());
            body
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the backend");
    let url = format!("http://{}/records", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Backend { url, payload, seen }
}

/// The environment every journey reads: both connectors' management and protocol addresses, ids and keys.
fn journey_env(
    provider: &TestConnector,
    consumer: &TestConnector,
    backend: &Backend,
    out: &std::path::Path,
) -> Vec<(String, String)> {
    let mut env = vec![("BACKEND_URL".to_owned(), backend.url.clone()), ("OUT".to_owned(), out.display().to_string())];
    for (role, connector) in [("PROVIDER", provider), ("CONSUMER", consumer)] {
        env.push((format!("{role}_MANAGEMENT"), format!("{}/management", connector.management_url())));
        env.push((format!("{role}_ID"), connector.participant_id().to_owned()));
        env.push((format!("{role}_PROTOCOL"), format!("{}/protocol/2025-1", connector.public_url())));
        env.push((format!("{role}_API_KEY"), connector.api_key.clone()));
    }
    env
}

async fn run_journey(
    program: std::path::PathBuf,
    script: &'static str,
    args: Vec<&'static str>,
    env: Vec<(String, String)>,
) -> String {
    tokio::task::spawn_blocking(move || interop::script(&program, script, &args, &env)).await.expect("journey task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pypi_edc_client_runs_its_journey_on_v3_and_v4() {
    let python = tokio::task::spawn_blocking(interop::python).await.expect("install the Python clients");
    let federation = Federation::with_hospitals(2).await;
    let backend = backend().await;
    let folder = tempfile::tempdir().expect("temporary folder");
    for version in ["v3", "v4"] {
        let out = folder.path().join(format!("{version}.bin"));
        let env = journey_env(&federation.connectors[0], &federation.connectors[1], &backend, &out);
        let printed = run_journey(python.clone(), "edc_client_journey.py", vec![version], env).await;
        let pulled = std::fs::read(&out).expect("the pulled bytes");
        assert!(
            pulled == backend.payload,
            "{version}: {} bytes pulled, not the backend's {} ({printed})",
            pulled.len(),
            backend.payload.len()
        );
    }
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_npm_edc_connector_client_runs_its_journey() {
    tokio::task::spawn_blocking(interop::node_modules).await.expect("install the npm client");
    let federation = Federation::with_hospitals(2).await;
    let backend = backend().await;
    let folder = tempfile::tempdir().expect("temporary folder");
    let out = folder.path().join("npm.bin");
    let env = journey_env(&federation.connectors[0], &federation.connectors[1], &backend, &out);
    let printed = run_journey("node".into(), "edc_connector_client_journey.js", vec![], env).await;
    let pulled = std::fs::read(&out).expect("the pulled bytes");
    assert!(
        pulled == backend.payload,
        "{} bytes pulled, not the backend's {} ({printed})",
        pulled.len(),
        backend.payload.len()
    );
    // The consumer's sub-path and query reached the backend under the asset's base URL, as the asset allows.
    let seen = backend.seen.lock().expect("lock").clone();
    assert_eq!(seen, ["/records/part?x=1"]);
    federation.shutdown().await;
}
