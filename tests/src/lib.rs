//! End-to-end tests across several real Hanse connectors: each with its own identity, folder and database (SQLite
//! or PostgreSQL), talking real HTTP on loopback. The scenarios live in `tests/tests/`; this library holds the helpers
//! that build a federation and talk to it.

pub use hanse::testing::{Backend, Signer, TestConnector, TestParticipant, did_of_url};
use hanse_vocab::schema::DspSchemas;
use serde_json::{Value, json};

pub mod browser;
pub mod interop;

/// A set of running connectors.
pub struct Federation {
    pub connectors: Vec<TestConnector>,
    pub client: reqwest::Client,
}

impl Federation {
    /// Starts one connector per backend given, all at once.
    pub async fn start(backends: &[Backend]) -> Federation {
        let connectors = join_all(backends.iter().map(|b| TestConnector::start(*b))).await;
        Federation { connectors, client: reqwest::Client::new() }
    }

    /// `n` hospitals, alternating SQLite and PostgreSQL (SQLite only when PostgreSQL is skipped).
    pub async fn with_hospitals(n: usize) -> Federation {
        let available = hanse::testing::backends();
        let backends: Vec<Backend> = (0..n).map(|i| available[i % available.len()]).collect();
        Federation::start(&backends).await
    }

    /// The management API of connector `i`.
    pub fn management(&self, i: usize) -> Management {
        Management::of(&self.connectors[i], &self.client)
    }

    /// Stops every connector gracefully.
    pub async fn shutdown(self) {
        for connector in self.connectors {
            connector.running.shutdown().await;
        }
    }
}

async fn join_all<F: std::future::Future<Output = T> + Send + 'static, T: Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<T> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("connector start task"));
    }
    out
}

/// A connector's management API, as an operator's script uses it.
#[derive(Clone)]
pub struct Management {
    pub client: reqwest::Client,
    pub base: String,
    pub api_key: String,
    /// The key of `/metrics`.
    pub metrics_key: Option<String>,
}

impl Management {
    /// The management API of `connector`, called with `client`.
    pub fn of(connector: &TestConnector, client: &reqwest::Client) -> Management {
        Management {
            client: client.clone(),
            base: connector.management_url(),
            api_key: connector.api_key.clone(),
            metrics_key: connector.config.management.metrics_api_key.clone(),
        }
    }

    /// `GET /metrics` with the metrics key, as Prometheus sends it: the exposition text (asserted 200).
    pub async fn metrics(&self) -> String {
        let key = self.metrics_key.as_deref().expect("the connector has a metrics key");
        let response = self.client.get(format!("{}/metrics", self.base)).bearer_auth(key).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }
}

/// An HTTP answer: status and JSON body (`Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), headers }
}

impl Management {
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Answer {
        let mut request =
            self.client.request(method, format!("{}{path}", self.base)).header("X-Api-Key", &self.api_key);
        if let Some(body) = body {
            request = request.json(body);
        }
        answer(request.send().await.expect("management request")).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// A `POST` with an `Idempotency-Key`.
    pub async fn post_keyed(&self, path: &str, key: &str, body: &Value) -> Answer {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("X-Api-Key", &self.api_key)
            .header("Idempotency-Key", key)
            .json(body);
        answer(request.send().await.expect("management request")).await
    }

    /// The whole audit log as JSON Lines (`GET /management/v3/audit/export`), asserted 200.
    pub async fn audit_export(&self) -> String {
        let response = self
            .client
            .get(format!("{}/management/v3/audit/export", self.base))
            .header("X-Api-Key", &self.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/x-ndjson");
        response.text().await.unwrap()
    }

    pub async fn put(&self, path: &str, body: &Value) -> Answer {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// Creates a resource and asserts it was created.
    pub async fn create(&self, path: &str, body: Value) -> Value {
        let answer = self.post(path, &body).await;
        assert_eq!(answer.status, 200, "creating at {path}: {:#}", answer.body);
        answer.body
    }
}

/// A `POST` of `body` to `url` with the `Authorization` header as given (tokens that must be refused included).
pub async fn post_authorized(url: &str, authorization: &str, body: &Value) -> Answer {
    let request = reqwest::Client::new().post(url).header("Authorization", authorization).json(body);
    answer(request.send().await.expect("a request")).await
}

/// An EDC asset body with HealthDCAT-AP properties.
pub fn health_asset(id: &str, title: &str, keywords: &[&str], records: u64) -> Value {
    json!({
        "@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"},
        "@id": id,
        "properties": {
            "name": id, "title": title, "description": format!("{title}: synthetic EHR extract"),
            "keyword": keywords, "numberOfRecords": records, "minTypicalAge": 18, "maxTypicalAge": 90,
            "theme": "http://publications.europa.eu/resource/authority/data-theme/HEAL"
        },
        "privateProperties": {"sourceTable": format!("ehr.{id}")},
        "dataAddress": {"type": "HttpData", "baseUrl": format!("https://ehr.hospital.example/{id}")}
    })
}

/// A policy definition body in the EDC shape.
pub fn policy_definition(id: &str, policy: Value) -> Value {
    json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@id": id, "policy": policy})
}

/// A policy that permits use without constraints.
pub fn open_policy() -> Value {
    json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [{"action": "use"}]})
}

/// A contract definition body selecting assets by id (all assets when `assets` is empty).
pub fn contract_definition(id: &str, access: &str, contract: &str, assets: &[&str]) -> Value {
    let selector: Vec<Value> = if assets.is_empty() {
        Vec::new()
    } else {
        vec![json!({"operandLeft": "https://w3id.org/edc/v0.0.1/ns/id", "operator": "in", "operandRight": assets})]
    };
    json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@id": id, "accessPolicyId": access,
           "contractPolicyId": contract, "assetsSelector": selector})
}

/// Asserts a DSP message validates against the official 2025-1 schema for its `@type`.
pub fn assert_valid_dsp(message: &Value) {
    if let Err(errors) = DspSchemas::get().validate_message(message) {
        panic!("DSP message does not validate: {errors:#?}\n{message:#}");
    }
}

/// A DSP request signed by `participant` (a fresh self-issued token for the peer at `url`), or unsigned.
pub async fn dsp_post(client: &reqwest::Client, url: &str, participant: Option<&dyn Signer>, body: &Value) -> Answer {
    let mut request = client.post(url).json(body);
    if let Some(participant) = participant {
        request = request.header("Authorization", participant.authorization(&did_of_url(url)));
    }
    answer(request.send().await.expect("DSP request")).await
}

/// A DSP `GET` signed by `participant`, or unsigned.
pub async fn dsp_get(client: &reqwest::Client, url: &str, participant: Option<&dyn Signer>) -> Answer {
    let mut request = client.get(url);
    if let Some(participant) = participant {
        request = request.header("Authorization", participant.authorization(&did_of_url(url)));
    }
    answer(request.send().await.expect("DSP request")).await
}

/// An empty `CatalogRequestMessage`.
pub fn catalog_request(filter: Value) -> Value {
    json!({"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": "CatalogRequestMessage", "filter": filter})
}

/// Polls a process (`contractnegotiations` or `transferprocesses`) on a connector's management API until it reaches
/// `state` (or fails after 30 s).
pub async fn wait_for_state(api: &Management, resource: &str, id: &str, state: &str) -> Value {
    let mut last = Value::Null;
    until(&format!("{resource} {id} to reach {state}"), async || {
        last = api.get(&format!("/management/v3/{resource}/{id}")).await.body;
        last["state"] == state
    })
    .await;
    last
}

/// Polls a negotiation until it reaches `state`.
pub async fn wait_for_negotiation(api: &Management, id: &str, state: &str) -> Value {
    wait_for_state(api, "contractnegotiations", id, state).await
}

/// Polls a transfer process until it reaches `state`.
pub async fn wait_for_transfer(api: &Management, id: &str, state: &str) -> Value {
    wait_for_state(api, "transferprocesses", id, state).await
}

/// Polls `check` every 20 ms until it holds; fails after 30 s naming `what`.
pub async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A raw DSP 2025-1 message of `type_name` with `members`.
pub fn dsp_message(type_name: &str, members: Value) -> Value {
    let mut message = json!({"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": type_name});
    if let (Value::Object(message), Value::Object(members)) = (&mut message, members) {
        message.extend(members);
    }
    message
}

/// What a raw provider received.
pub type Received = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

/// A provider's DSP endpoint played by the test: it answers first negotiation and transfer requests with a pid of its
/// own (`urn:uuid:provider-of-<consumerPid>`), accepts every later message, and records everything it receives.
pub async fn provider_listener() -> (TestParticipant, Received) {
    let received: Received = Default::default();
    let sink = received.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, body: String| {
        let sink = sink.clone();
        async move {
            let message: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            sink.lock().unwrap().push(message.clone());
            let created = |type_name: &str| {
                let pid = format!("urn:uuid:provider-of-{}", message["consumerPid"].as_str().unwrap_or("?"));
                dsp_message(
                    type_name,
                    json!({"providerPid": pid, "consumerPid": message["consumerPid"], "state": "REQUESTED"}),
                )
            };
            if uri.path().ends_with("/negotiations/request") {
                (axum::http::StatusCode::CREATED, axum::Json(created("ContractNegotiation")))
            } else if uri.path().ends_with("/transfers/request") {
                (axum::http::StatusCode::CREATED, axum::Json(created("TransferProcess")))
            } else {
                (axum::http::StatusCode::OK, axum::Json(Value::Null))
            }
        }
    });
    (TestParticipant::serving(app).await, received)
}

/// Polls until a connector has a negotiation of `role` (PROVIDER/CONSUMER) in `state`; returns it.
pub async fn wait_for_role(api: &Management, role: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let all = api.post("/management/v3/contractnegotiations/request", &json!({})).await;
        if let Some(found) =
            all.body.as_array().and_then(|a| a.iter().find(|n| n["type"] == role && n["state"] == state))
        {
            return found.clone();
        }
        if std::time::Instant::now() > deadline {
            panic!("no {role} negotiation reached {state}: {:#}", all.body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// The offer of `dataset` in the provider's catalogue as a consumer sees it, ready for a `ContractRequest`.
pub async fn catalogue_offer(consumer: &Management, provider: &TestConnector, dataset: &str) -> Value {
    let catalog = consumer
        .post(
            "/management/v3/catalog/request",
            &json!({"counterPartyAddress": format!("{}/protocol/2025-1", provider.public_url()),
                                                          "protocol": "dataspace-protocol-http:2025-1"}),
        )
        .await;
    let dataset = catalog.body["dataset"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["@id"] == dataset))
        .unwrap_or_else(|| panic!("{dataset} not in {:#}", catalog.body))
        .clone();
    let mut offer = dataset["hasPolicy"][0].clone();
    offer["target"] = dataset["@id"].clone();
    offer["assigner"] = json!(provider.participant_id());
    offer
}

/// Starts a negotiation from `consumer` for `offer` at `provider`; returns the consumer's negotiation id.
pub async fn negotiate(consumer: &Management, provider: &TestConnector, offer: Value, extra: Value) -> String {
    let mut body = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@type": "ContractRequest",
        "counterPartyAddress": format!("{}/protocol/2025-1", provider.public_url()), "counterPartyId": provider.participant_id(),
        "protocol": "dataspace-protocol-http:2025-1", "policy": offer});
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    let created = consumer.post("/management/v3/contractnegotiations", &body).await;
    assert_eq!(created.status, 200, "{:#}", created.body);
    created.body["@id"].as_str().unwrap().to_owned()
}

/// A hospital (connector 0) offering `dataset` under `terms`, to everyone, optionally with manual approval.
pub async fn offer_dataset(federation: &Federation, dataset: &str, terms: Value, manual: bool) {
    let asset = health_asset(dataset, "Type 2 diabetes adults cohort", &["diabetes", "adults"], 1200);
    offer_asset(federation, asset, terms, json!({"manualApproval": manual})).await;
}

/// Connector 0 stores `asset` and offers it to everyone (an open access policy) under `terms`, its contract
/// definition carrying `definition`'s members besides.
pub async fn offer_asset(federation: &Federation, asset: Value, terms: Value, definition: Value) {
    let api = federation.management(0);
    let dataset = asset["@id"].as_str().expect("the asset names its id").to_owned();
    api.create("/management/v3/assets", asset).await;
    offer_stored(&api, &dataset, terms, definition).await;
}

/// `api`'s connector offers its stored `dataset` to everyone (an open access policy `<dataset>-access`) under `terms`
/// (`<dataset>-terms`), its contract definition `<dataset>-offer` carrying `definition`'s members besides.
pub async fn offer_stored(api: &Management, dataset: &str, terms: Value, definition: Value) {
    api.create("/management/v3/policydefinitions", policy_definition(&format!("{dataset}-access"), open_policy()))
        .await;
    api.create("/management/v3/policydefinitions", policy_definition(&format!("{dataset}-terms"), terms)).await;
    let mut contract = contract_definition(
        &format!("{dataset}-offer"),
        &format!("{dataset}-access"),
        &format!("{dataset}-terms"),
        &[dataset],
    );
    if let (Value::Object(contract), Value::Object(members)) = (&mut contract, definition) {
        contract.extend(members);
    }
    api.create("/management/v3/contractdefinitions", contract).await;
}

/// The provider (connector 0) offers `dataset` (a file of `bytes` under its file root, or the given data address)
/// under `terms`; the consumer (connector 1) negotiates it. Answers the agreement id.
pub async fn agreed(federation: &Federation, dataset: &str, source: Value, terms: Value, manual_start: bool) -> String {
    let mut asset = health_asset(dataset, "Diabetes cohort summary", &["diabetes"], 1200);
    asset["dataAddress"] = source;
    offer_asset(federation, asset, terms, json!({"manualStart": manual_start})).await;
    let consumer = federation.management(1);
    let offer = catalogue_offer(&consumer, &federation.connectors[0], dataset).await;
    let id = negotiate(&consumer, &federation.connectors[0], offer, json!({"purpose": RESEARCH})).await;
    let finalized = wait_for_negotiation(&consumer, &id, "FINALIZED").await;
    finalized["contractAgreementId"].as_str().unwrap().to_owned()
}

/// Writes `bytes` as `name` under the provider's file root; answers the `File` data address.
pub fn file_source(connector: &TestConnector, name: &str, bytes: &[u8]) -> Value {
    let root = connector.config.file_root();
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join(name), bytes).unwrap();
    json!({"type": "File", "path": name})
}

/// Starts an `HttpData-PULL` transfer under `agreement` from `consumer`; answers its id.
pub async fn start_transfer(consumer: &Management, agreement: &str, extra: Value) -> String {
    let mut body = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@type": "TransferRequest",
                          "contractId": agreement, "transferType": "HttpData-PULL", "protocol": "dataspace-protocol-http:2025-1"});
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    let created = consumer.post("/management/v3/transferprocesses", &body).await;
    assert_eq!(created.status, 200, "{:#}", created.body);
    created.body["@id"].as_str().unwrap().to_owned()
}

/// The EDR (endpoint and token) of the consumer's transfer `id`.
pub async fn edr(consumer: &Management, id: &str) -> Value {
    let answer = consumer.get(&format!("/management/v3/edrs/{id}/dataaddress")).await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    answer.body
}

/// A GET of the data behind `edr`.
pub fn pull(client: &reqwest::Client, edr: &Value) -> reqwest::RequestBuilder {
    client
        .get(edr["endpoint"].as_str().unwrap())
        .header("Authorization", format!("Bearer {}", edr["authorization"].as_str().unwrap()))
}

/// The purpose consumers give: general research use (DUO).
pub const RESEARCH: &str = "DUO:0000007";

/// Research-only terms: purpose isA general research use, no redistribution.
pub fn research_terms() -> Value {
    json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
           "permission": [{"action": "use", "constraint": [{"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"}]}],
           "prohibition": [{"action": "distribute"}]})
}

/// The pySHACL release the tests validate with.
const PYSHACL: &str = "pyshacl==0.40.1";

/// pySHACL's report on a data graph.
#[derive(Debug, Clone)]
pub struct ShaclReport {
    pub conforms: bool,
    /// `{"focus", "path", "severity", "message"}` per result.
    pub results: Vec<Value>,
}

impl ShaclReport {
    /// The result paths of violations, as full IRIs.
    pub fn violated_paths(&self) -> Vec<String> {
        self.results
            .iter()
            .filter(|r| r["severity"] == "Violation")
            .filter_map(|r| r["path"].as_str().map(str::to_owned))
            .collect()
    }
}

/// A Python with pySHACL: the machine's `python3` if it has it (`.ci/run` installs it), else a virtual environment
/// in the temporary folder, made once.
fn python_with_pyshacl() -> std::path::PathBuf {
    static PYTHON: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let has = |python: &std::path::Path| {
                std::process::Command::new(python).args(["-c", "import pyshacl"]).status().is_ok_and(|s| s.success())
            };
            let system = std::path::PathBuf::from("python3");
            if has(&system) {
                return system;
            }
            let venv = std::env::temp_dir().join(format!("hanse-{}", PYSHACL.replace("==", "-")));
            let python = venv.join("bin/python");
            if !has(&python) {
                let made = std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv).status();
                assert!(
                    made.is_ok_and(|s| s.success()),
                    "python3 -m venv {} failed: the SHACL tests need Python 3",
                    venv.display()
                );
                let installed =
                    std::process::Command::new(&python).args(["-m", "pip", "install", "-q", PYSHACL]).status();
                assert!(installed.is_ok_and(|s| s.success()), "pip install {PYSHACL} failed");
            }
            python
        })
        .clone()
}

/// Validates `data` (N-Triples) with pySHACL against `shapes` (Turtle files),
/// with `ontology` (Turtle) for class hierarchies.
pub fn pyshacl(data: &str, shapes: &[&std::path::Path], ontology: Option<&std::path::Path>) -> ShaclReport {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let file = folder.path().join("data.nt");
    std::fs::write(&file, data).expect("write the data graph");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shacl/validate.py");
    let mut command = std::process::Command::new(python_with_pyshacl());
    command.arg(script).arg("--data").arg(&file);
    for shape in shapes {
        command.arg("--shapes").arg(shape);
    }
    if let Some(ontology) = ontology {
        command.arg("--ontology").arg(ontology);
    }
    let output = command.output().expect("run pySHACL");
    assert!(output.status.success(), "pySHACL failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("pySHACL's JSON report");
    ShaclReport {
        conforms: report["conforms"].as_bool().expect("conforms"),
        results: report["results"].as_array().cloned().unwrap_or_default(),
    }
}

/// The SHA-256 of the Gaia-X terms and conditions.
pub use hanse::demo::federation::GAIA_X_TERMS;

/// A hospital's Gaia-X settings: the demo's first hospital (headquarters in Hamburg) with an LEI beside its VAT
/// number, its certificate chain next to its key in `key_file`'s connector folder.
pub fn gaiax_config(key_file: &std::path::Path) -> hanse::config::GaiaxConfig {
    let mut config = hanse::demo::federation::gaiax(&hanse::demo::HOSPITALS[0], key_file);
    config.registration.lei_code = Some("529900W18LQJJN6SJ336".into());
    config.registration.lei_subdivision = Some("DE-HH".into());
    config
}

/// The pooled logistic regression of 30-day readmission on `covariates` over the union of the synthetic cohorts
/// `(rows, site)` of `seed`, fitted here by plain Newton–Raphson with
/// Gaussian elimination (independent of the connector's code): coefficients and standard errors.
pub fn pooled_logistic_fit(
    cohorts: &[(usize, u32)],
    seed: u64,
    covariates: &[&str],
) -> (Vec<String>, Vec<f64>, Vec<f64>) {
    use hanse::compute::synth;
    let schema = synth::schema();
    let column = |name: &str| schema.columns.iter().position(|c| c.name == name).unwrap();
    let mut rows: Vec<(Vec<f64>, f64)> = Vec::new();
    for &(n, site) in cohorts {
        let table = synth::cohort(n, site, seed);
        for r in 0..table.rows {
            let mut x = vec![1.0];
            x.extend(covariates.iter().map(|c| table.values[column(c)][r]));
            rows.push((x, table.values[column("readmitted")][r]));
        }
    }
    let p = covariates.len() + 1;
    let mut beta = vec![0.0; p];
    let mut covariance = vec![vec![0.0; p]; p];
    for _ in 0..50 {
        let mut information = vec![vec![0.0; p]; p];
        let mut score = vec![0.0; p];
        for (x, y) in &rows {
            let eta: f64 = x.iter().zip(&beta).map(|(a, b)| a * b).sum();
            let mu = 1.0 / (1.0 + (-eta).exp());
            for a in 0..p {
                score[a] += x[a] * (y - mu);
                for b in 0..p {
                    information[a][b] += mu * (1.0 - mu) * x[a] * x[b];
                }
            }
        }
        // Invert the information matrix by Gauss–Jordan elimination.
        let mut augmented: Vec<Vec<f64>> = (0..p)
            .map(|i| information[i].iter().copied().chain((0..p).map(|j| f64::from(u8::from(i == j)))).collect())
            .collect();
        for col in 0..p {
            let pivot = (col..p).max_by(|&a, &b| augmented[a][col].abs().total_cmp(&augmented[b][col].abs())).unwrap();
            augmented.swap(col, pivot);
            let lead = augmented[col][col];
            augmented[col].iter_mut().for_each(|v| *v /= lead);
            for row in 0..p {
                if row != col {
                    let factor = augmented[row][col];
                    let pivot_row = augmented[col].clone();
                    augmented[row].iter_mut().zip(pivot_row).for_each(|(v, q)| *v -= factor * q);
                }
            }
        }
        covariance = augmented.iter().map(|row| row[p..].to_vec()).collect();
        let step: Vec<f64> = (0..p).map(|a| (0..p).map(|b| covariance[a][b] * score[b]).sum()).collect();
        beta.iter_mut().zip(&step).for_each(|(b, s)| *b += s);
        if step.iter().all(|s| s.abs() < 1e-12) {
            break;
        }
    }
    let errors = (0..p).map(|i| covariance[i][i].sqrt()).collect();
    let mut terms = vec!["(intercept)".to_owned()];
    terms.extend(covariates.iter().map(|c| if *c == "sex" { "sex=M".to_owned() } else { (*c).to_owned() }));
    (terms, beta, errors)
}

/// The sum of the samples of the Prometheus family member `name` (a counter, gauge, or a histogram's `_count`,
/// `_sum` or `_bucket`) whose labels include `labels`; `None` when no sample matches.
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name || !labels.iter().all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\""))) {
            continue;
        }
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        found = Some(found.unwrap_or(0.0) + value);
    }
    found
}

// ---- Credentials: an issuer, a provider that trusts it, members ----

pub const MEMBERS_DATASET: &str = "t2d-cohort";
pub const OPEN_DATASET: &str = "open-summary";

/// A provider whose `t2d-cohort` is for holders of a membership credential from `issuer` with
/// `membership = active`; `open-summary` is for everyone.
pub async fn provider_trusting(backend: Backend, issuer: &str) -> TestConnector {
    let issuer = issuer.to_owned();
    let provider = TestConnector::start_with(backend, move |config: &mut hanse::config::Config| {
        config.trust.issuers.insert("MembershipCredential".into(), vec![issuer]);
        // Check credentials on every request, so that a revocation shows at once.
        config.trust.claims_cache_seconds = 0;
    })
    .await;
    let api = management_of(&provider);
    api.create("/management/v3/assets", health_asset(OPEN_DATASET, "Diabetes summary", &["diabetes"], 40)).await;
    api.create("/management/v3/assets", health_asset(MEMBERS_DATASET, "Type 2 diabetes cohort", &["diabetes"], 1200))
        .await;
    api.create("/management/v3/policydefinitions", policy_definition("open", open_policy())).await;
    api.create(
        "/management/v3/policydefinitions",
        policy_definition(
            "members",
            json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [{"action": "use",
                "constraint": [{"leftOperand": "membership", "operator": "eq", "rightOperand": "active"}]}]}),
        ),
    )
    .await;
    api.create("/management/v3/contractdefinitions", contract_definition("public", "open", "open", &[OPEN_DATASET]))
        .await;
    api.create(
        "/management/v3/contractdefinitions",
        contract_definition("members-only", "members", "open", &[MEMBERS_DATASET]),
    )
    .await;
    provider
}

pub fn management_of(connector: &TestConnector) -> Management {
    Management::of(connector, &reqwest::Client::new())
}

/// Issues a membership credential from `issuer` to `subject` and answers the JWT.
pub async fn issue_membership(issuer: &TestConnector, subject: &str, claims: Value) -> (String, String) {
    let issued = management_of(issuer)
        .post(
            "/management/v3/credentials/issue",
            &json!({"type": "MembershipCredential", "subject": subject, "claims": claims}),
        )
        .await;
    assert_eq!(issued.status, 200, "{:#}", issued.body);
    (issued.body["@id"].as_str().unwrap().to_owned(), issued.body["credential"].as_str().unwrap().to_owned())
}

pub async fn import(holder: &TestConnector, jwt: &str) {
    let imported = management_of(holder).post("/management/v3/credentials", &json!({"credential": jwt})).await;
    assert_eq!(imported.status, 200, "{:#}", imported.body);
}

/// The dataset ids of `provider`'s catalogue as `consumer` sees it, asked through the consumer's management API.
pub async fn visible(consumer: &TestConnector, provider: &TestConnector) -> Vec<String> {
    let catalog = management_of(consumer)
        .post(
            "/management/v3/catalog/request",
            &json!({"counterPartyAddress": format!("{}/protocol/2025-1", provider.public_url()),
                    "counterPartyId": provider.participant_id(), "protocol": "dataspace-protocol-http:2025-1"}),
        )
        .await;
    assert_eq!(catalog.status, 200, "{:#}", catalog.body);
    let mut ids: Vec<String> = catalog.body["dataset"]
        .as_array()
        .map(|d| d.iter().map(|d| d["@id"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}
