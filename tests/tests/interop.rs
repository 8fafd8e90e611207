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

/// The payload of a compact JWS, as JSON.
fn jwt_payload(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).expect("a compact JWS");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64url payload");
    serde_json::from_slice(&bytes).expect("a JSON payload")
}

/// Every kind of JSON-LD document Hanse serves — the DID document, the Gaia-X presentation and its credentials, the
/// DSP catalogue and dataset, and the management answers along a journey — expands under pyld with Hanse's bundled
/// contexts only, and the expansion drops no term.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_document_hanse_serves_expands_under_pyld_with_bundled_contexts_only() {
    use hanse_tests::{
        Management, Signer, catalog_request, contract_definition, dsp_post, gaiax_config, health_asset,
        policy_definition, wait_for_negotiation, wait_for_transfer,
    };
    use serde_json::{Value, json};

    let python = tokio::task::spawn_blocking(interop::python).await.expect("install pyld");
    let backends = hanse::testing::backends();
    let provider = TestConnector::start_with(backends[0], |config| {
        config.gaiax = Some(gaiax_config(&config.participant.key_file));
    })
    .await;
    let consumer = TestConnector::start(*backends.last().expect("a backend")).await;
    let client = reqwest::Client::new();
    let (api, ours) = (Management::of(&provider, &client), Management::of(&consumer, &client));
    let backend = backend().await;
    let mut documents: Vec<(String, Value)> = Vec::new();
    let mut keep = |name: &str, document: Value| documents.push((name.to_owned(), document));

    let mut asset = health_asset("registry", "Diabetes registry", &["diabetes"], 1200);
    asset["dataAddress"] = json!({"type": "HttpData", "baseUrl": backend.url});
    keep("management IdResponse", api.create("/management/v3/assets", asset).await);
    let allow_all = json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [],
                           "prohibition": [], "obligation": []});
    api.create("/management/v3/policydefinitions", policy_definition("open", allow_all)).await;
    api.create("/management/v3/contractdefinitions", contract_definition("all", "open", "open", &[])).await;
    keep("management Asset", api.get("/management/v3/assets/registry").await.body);
    keep("management PolicyDefinition", api.get("/management/v3/policydefinitions/open").await.body);
    keep("management ContractDefinition", api.get("/management/v3/contractdefinitions/all").await.body);
    keep(
        "management PolicyValidationResult",
        api.post("/management/v3/policydefinitions/open/validate", &json!({})).await.body,
    );

    let did: Value = client
        .get(format!("{}/.well-known/did.json", provider.public_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    keep("DID document", did);
    let presentation = client
        .get(format!("{}{}", provider.public_url(), hanse::identity::gaiax::CREDENTIALS_PATH))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let presentation = jwt_payload(presentation.trim());
    for (i, credential) in presentation["verifiableCredential"].as_array().expect("credentials").iter().enumerate() {
        let jwt =
            credential["id"].as_str().and_then(|id| id.strip_prefix("data:application/vc+jwt,")).expect("enveloped");
        keep(&format!("Gaia-X credential {i}"), jwt_payload(jwt));
    }
    keep("Gaia-X presentation", presentation);

    let protocol = format!("{}/protocol/2025-1", provider.public_url());
    let catalog = dsp_post(
        &client,
        &format!("{protocol}/catalog/request"),
        Some(&consumer as &dyn Signer),
        &catalog_request(json!([])),
    )
    .await;
    assert_eq!(catalog.status, 200, "{:#}", catalog.body);
    keep("DSP Catalog", catalog.body);

    let request = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "counterPartyAddress": protocol,
                         "counterPartyId": provider.participant_id(), "protocol": "dataspace-protocol-http:2025-1"});
    let listed = ours.post("/management/v3/catalog/request", &request).await;
    assert_eq!(listed.status, 200, "{:#}", listed.body);
    let offer_id = listed.body["dataset"][0]["hasPolicy"][0]["@id"].as_str().expect("an offer").to_owned();
    keep("management Catalog", listed.body);
    let started = ours
        .post(
            "/management/v3/edrs",
            &json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"},
            "counterPartyAddress": protocol, "protocol": "dataspace-protocol-http:2025-1",
            "policy": {"@id": offer_id, "assigner": provider.participant_id(), "target": "registry"}}),
        )
        .await;
    assert_eq!(started.status, 200, "{:#}", started.body);
    let negotiation_id = started.body["@id"].as_str().expect("a negotiation id").to_owned();
    let negotiation = wait_for_negotiation(&ours, &negotiation_id, "FINALIZED").await;
    keep("management ContractNegotiation", negotiation.clone());
    keep(
        "management NegotiationState",
        ours.get(&format!("/management/v3/contractnegotiations/{negotiation_id}/state")).await.body,
    );
    let agreement_id = negotiation["contractAgreementId"].as_str().expect("an agreement").to_owned();
    keep(
        "management ContractAgreement",
        ours.get(&format!("/management/v3/contractagreements/{agreement_id}")).await.body,
    );
    let mut entries = Value::Null;
    hanse_tests::until("the EDR's pull transfer", async || {
        entries = ours.post("/management/v3/edrs/request", &json!({})).await.body;
        entries.as_array().is_some_and(|e| !e.is_empty())
    })
    .await;
    let transfer_id = entries[0]["transferProcessId"].as_str().expect("a transfer").to_owned();
    keep("management EndpointDataReferenceEntry", entries[0].clone());
    keep("management TransferProcess", wait_for_transfer(&ours, &transfer_id, "STARTED").await);
    keep(
        "management TransferState",
        ours.get(&format!("/management/v3/transferprocesses/{transfer_id}/state")).await.body,
    );
    keep("management DataAddress", ours.get(&format!("/management/v3/edrs/{transfer_id}/dataaddress")).await.body);

    let folder = tempfile::tempdir().expect("temporary folder");
    let mut contexts = serde_json::Map::new();
    for (i, context) in hanse_vocab::contexts::BUNDLED.iter().enumerate() {
        let file = folder.path().join(format!("context-{i}.jsonld"));
        std::fs::write(&file, context.text).expect("write a context");
        for iri in context.iris {
            contexts.insert((*iri).to_owned(), json!(file.display().to_string()));
        }
    }
    let input = json!({"contexts": contexts, "documents": serde_json::Map::from_iter(documents.clone())});
    let report: Value = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(python)
            .arg(interop::folder().join("expand_check.py"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run pyld");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), input.to_string().as_bytes()).expect("send");
        let output = child.wait_with_output().expect("pyld's report");
        assert!(output.status.success(), "expand_check.py failed");
        serde_json::from_slice(&output.stdout).expect("a JSON report")
    })
    .await
    .expect("pyld task");
    assert_eq!(report.as_object().map(|r| r.len()), Some(documents.len()));
    let faults: Vec<String> = report
        .as_object()
        .expect("a report")
        .iter()
        .filter(|(_, r)| !r["error"].is_null() || r["dropped"].as_array().is_some_and(|d| !d.is_empty()))
        .map(|(name, r)| {
            let document = documents.iter().find(|(n, _)| n == name).map(|(_, d)| d.to_string()).unwrap_or_default();
            format!("{name}: {r}\n  {document}")
        })
        .collect();
    assert!(faults.is_empty(), "pyld dropped terms or failed:\n{}", faults.join("\n"));
    provider.running.shutdown().await;
    consumer.running.shutdown().await;
}
