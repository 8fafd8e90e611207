//! Test support: real connectors on real databases. Each [`TestBackend`] gets its own SQLite folder or its own
//! PostgreSQL schema, so test runs never collide. PostgreSQL comes from `HANSE_TEST_DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`); it must answer — the suite fails rather than skips, unless
//! `HANSE_TEST_SKIP_POSTGRES=1` says to leave PostgreSQL out.

use std::path::{Path, PathBuf};

use tokio::net::TcpListener;

use crate::config::Config;
use crate::init::{InitOptions, Initialized, did_web_for, init};
use crate::server::{RunningConnector, start_on};

pub use hanse_store::testing::{Backend, DEFAULT_POSTGRES_URL, TestDatabase, backends, postgres_url, unique_schema};

/// `hanse init` in `dir` for listeners on free loopback ports (development mode): what was written, the loaded
/// configuration, and the two bound listeners for [`start_on`].
pub async fn initialised(dir: &Path) -> (Initialized, Config, TcpListener, TcpListener) {
    let public = TcpListener::bind("127.0.0.1:0").await.expect("bind public");
    let management = TcpListener::bind("127.0.0.1:0").await.expect("bind management");
    let public_addr = public.local_addr().expect("an address");
    let done = init(&InitOptions {
        dir: dir.to_owned(),
        participant_id: Some(did_web_for(&public_addr)),
        public_bind: public_addr,
        management_bind: management.local_addr().expect("an address"),
        development: true,
    })
    .expect("hanse init");
    let mut config = Config::load(&done.config_file).expect("generated config loads");
    // Every connector and client of a test or benchmark shares 127.0.0.1: the per-address quota is raised so far
    // that only the tests of the limit itself (which set their own) meet it.
    config.http.public_requests_per_second = 1_000_000;
    config.http.public_burst = 1_000_000;
    (done, config, public, management)
}

/// A connector started for a test, with its own folder, identity and database.
pub struct TestConnector {
    pub running: RunningConnector,
    pub api_key: String,
    pub dir: PathBuf,
    pub database: TestDatabase,
    pub config: Config,
    _dir: tempfile::TempDir,
}

impl TestConnector {
    /// Starts a connector on loopback ports with a generated identity on `backend`.
    pub async fn start(backend: Backend) -> TestConnector {
        TestConnector::start_with(backend, |_| {}).await
    }

    /// Like [`TestConnector::start`], with the configuration adjusted by `configure` before start-up.
    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestConnector {
        if let Ok(filter) = std::env::var("HANSE_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        let dir = tempfile::tempdir().expect("temporary folder");
        let (done, mut config, public, management) = initialised(dir.path()).await;
        let database = TestDatabase::new(backend);
        config.store.database_url = Some(database.url.clone());
        config.store.schema = database.schema.clone();
        // Tests cannot wait minutes for a peer that is gone: a few quick retries.
        config.negotiation.retry_attempts = 3;
        config.negotiation.retry_base_ms = 50;
        configure(&mut config);
        let running = start_on(config.clone(), public, management).await.expect("connector starts");
        TestConnector { running, api_key: done.api_key, dir: dir.path().to_owned(), database, config, _dir: dir }
    }

    /// Stops the connector gracefully and starts it again on the same addresses, folder and database.
    pub async fn restart(self) -> TestConnector {
        let (public_addr, management_addr) = (self.running.public_addr, self.running.management_addr);
        self.running.shutdown().await;
        let public = TcpListener::bind(public_addr).await.expect("rebind public");
        let management = TcpListener::bind(management_addr).await.expect("rebind management");
        let running = start_on(self.config.clone(), public, management).await.expect("connector restarts");
        TestConnector { running, ..self }
    }

    /// The participant's DID.
    pub fn participant_id(&self) -> &str {
        &self.config.participant.id
    }

    /// The management listener's base URL.
    pub fn management_url(&self) -> String {
        self.running.management_url()
    }

    /// The public listener's base URL.
    pub fn public_url(&self) -> String {
        self.running.public_url()
    }

    /// The folder the connector's files live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Anything that can sign a DSP request as a participant: a running connector, or a [`TestParticipant`].
pub trait Signer: Sync {
    /// The participant's DID.
    fn did(&self) -> &str;
    /// An `Authorization` header value with a fresh self-issued token for `audience`.
    fn authorization(&self, audience: &str) -> String;
}

impl Signer for TestConnector {
    fn did(&self) -> &str {
        self.participant_id()
    }

    fn authorization(&self, audience: &str) -> String {
        self.running.state.identity.authorization(audience)
    }
}

/// The `did:web` of the participant whose public listener serves `url` (test connectors and participants are named
/// after their loopback address).
pub fn did_of_url(url: &str) -> String {
    let parsed = reqwest::Url::parse(url).expect("a URL");
    let port = parsed.port_or_known_default().expect("a port");
    let host = parsed.host_str().expect("a host").trim_matches(['[', ']']);
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => did_web_for(&std::net::SocketAddr::new(ip, port)),
        Err(_) => format!("did:web:{host}%3A{port}"),
    }
}

/// A participant without a connector: a real did:web identity (own key, DID document served over HTTP on loopback)
/// that signs requests, as a DSP test kit or a foreign connector would. Whatever is posted to it (for example DSP
/// callbacks to `<url>/protocol/2025-1/...`) is recorded.
pub struct TestParticipant {
    pub did: String,
    /// The base URL of its listener.
    pub url: String,
    keys: std::sync::Arc<crate::identity::keys::KeyRing>,
    received: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    _dir: tempfile::TempDir,
}

impl TestParticipant {
    /// Generates a key and starts serving the DID document; everything else posted to it is recorded.
    pub async fn start() -> TestParticipant {
        let received: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
        let sink = received.clone();
        let app = axum::Router::new().fallback(move |body: String| {
            let sink = sink.clone();
            async move {
                if let Ok(message) = serde_json::from_str::<serde_json::Value>(&body) {
                    sink.lock().expect("lock").push(message);
                }
                "ok"
            }
        });
        TestParticipant { received, ..TestParticipant::serving(app).await }
    }

    /// Generates a key and serves `app` with the DID document added at `/.well-known/did.json`.
    pub async fn serving(app: axum::Router) -> TestParticipant {
        TestParticipant::serving_document(app, |_| {}).await
    }

    /// [`TestParticipant::serving`] with the DID document changed by `edit` (for documents that must be refused).
    pub async fn serving_document(app: axum::Router, edit: fn(&mut serde_json::Value)) -> TestParticipant {
        let dir = tempfile::tempdir().expect("temporary folder");
        let key_file = dir.path().join("participant.pem");
        let pem = crate::init::generate_p256().and_then(|k| k.private_key_to_pem_pkcs8()).expect("a key");
        std::fs::write(&key_file, pem).expect("write the key");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        let did = did_web_for(&addr);
        let url = format!("http://{addr}");
        let keys = std::sync::Arc::new(crate::identity::keys::KeyRing::load(&did, &key_file).expect("keys load"));
        let document = {
            let (keys, did, url) = (keys.clone(), did.clone(), url.clone());
            move || async move {
                let signing: Vec<String> = keys.listed(chrono::Utc::now()).into_iter().map(|(kid, _)| kid).collect();
                let mut document = crate::identity::did::our_document(&did, &keys.every(), &signing, &url, &[]);
                edit(&mut document);
                axum::Json(document)
            }
        };
        let app = app.route("/.well-known/did.json", axum::routing::get(document));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestParticipant { did, url, keys, received: Default::default(), _dir: dir }
    }

    /// What was posted to it so far.
    pub fn received(&self) -> Vec<serde_json::Value> {
        self.received.lock().expect("lock").clone()
    }

    /// Signs any JWT payload with this participant's key (`typ` as given): for tokens that must fail verification.
    pub fn sign(&self, typ: &str, payload: &serde_json::Value) -> String {
        self.keys.sign(typ, &[], payload)
    }

    /// The DID URL of its signing key.
    pub fn kid(&self) -> &str {
        self.keys.current_kid()
    }

    /// A self-issued token for `audience` with some claims and header members replaced (`null` removes one): for
    /// tokens that must be refused.
    pub fn token_with(&self, audience: &str, claims: serde_json::Value, header: serde_json::Value) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut payload = serde_json::json!({"iss": self.did, "sub": self.did, "aud": audience, "iat": now, "nbf": now,
            "exp": now + 300, "jti": uuid::Uuid::new_v4().to_string()});
        let apply = |target: &mut serde_json::Map<String, serde_json::Value>, changes: serde_json::Value| {
            for (name, value) in changes.as_object().cloned().unwrap_or_default() {
                if value.is_null() {
                    target.remove(&name);
                } else {
                    target.insert(name, value);
                }
            }
        };
        apply(payload.as_object_mut().expect("an object"), claims);
        let mut extra = serde_json::Map::new();
        apply(&mut extra, header);
        let extra: Vec<(&str, serde_json::Value)> = extra.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        self.keys.sign("JWT", &extra, &payload)
    }
}

impl Signer for TestParticipant {
    fn did(&self) -> &str {
        &self.did
    }

    fn authorization(&self, audience: &str) -> String {
        crate::identity::token::authorization(&self.keys, audience)
    }
}

/// A development certificate authority for TLS tests: one CA, and host certificates for `localhost` signed by it.
pub struct TestCa {
    /// The CA certificate (PEM), for `trust.ca_file` and `public.client_ca`.
    pub ca_file: PathBuf,
    ca: openssl::x509::X509,
    key: openssl::pkey::PKey<openssl::pkey::Private>,
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().expect("temporary folder");
        let (ca, key) = crate::init::development_ca().expect("a CA");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.to_pem().expect("PEM")).expect("write the CA");
        TestCa { ca_file, ca, key, dir }
    }

    /// A certificate chain and key for `localhost` signed by this CA, written as `<name>.pem` and `<name>.key.pem`.
    pub fn host(&self, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = crate::init::host_certificate(&self.ca, &self.key).expect("a host certificate");
        let (cert_file, key_file) =
            (self.dir.path().join(format!("{name}.pem")), self.dir.path().join(format!("{name}.key.pem")));
        let mut chain = cert.to_pem().expect("PEM");
        chain.extend(self.ca.to_pem().expect("PEM"));
        std::fs::write(&cert_file, chain).expect("write the certificate");
        std::fs::write(&key_file, key.private_key_to_pem_pkcs8().expect("PEM")).expect("write the key");
        (cert_file, key_file)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// A SPARQL query over the management API's `url` (the catalogue's `/management/sparql`), answered as SPARQL JSON
/// results; anything but 200 fails the test, naming the query.
pub async fn sparql(client: &reqwest::Client, url: &str, api_key: &str, query: &str) -> serde_json::Value {
    let response = client
        .post(url)
        .header("X-Api-Key", api_key)
        .header("Content-Type", "application/sparql-query")
        .header("Accept", "application/sparql-results+json")
        .body(query.to_owned())
        .send()
        .await
        .expect("the SPARQL endpoint answers");
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.expect("SPARQL JSON results")
}
