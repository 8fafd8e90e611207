//! What the tests that drive the `hanse` binary share: the binary, free ports, a clean command, and `hanse init`.
// Each test binary compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const HANSE: &str = env!("CARGO_BIN_EXE_hanse");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `hanse args` in `dir`, without the caller's `HANSE_*` and `RUST_LOG` settings.
pub fn hanse(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(HANSE);
    command.current_dir(dir).args(args).env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("HANSE_") {
            command.env_remove(key);
        }
    }
    command
}

/// What `hanse init` made.
pub struct Initialised {
    pub public: u16,
    pub management: u16,
    pub api_key: String,
    pub participant: String,
}

/// `hanse init` in `dir` with free ports.
pub fn init(dir: &Path) -> Initialised {
    let (public, management) = (free_port(), free_port());
    let (public_bind, management_bind) = (format!("127.0.0.1:{public}"), format!("127.0.0.1:{management}"));
    let output =
        hanse(dir, &["init", "--public-bind", &public_bind, "--management-bind", &management_bind]).output().unwrap();
    assert!(output.status.success(), "init failed: {}", String::from_utf8_lossy(&output.stderr));
    let config = std::fs::read_to_string(dir.join("hanse.toml")).unwrap();
    let value = |key: &str| {
        config
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .map(|v| v.trim_end_matches('"').to_owned())
            .unwrap_or_else(|| panic!("{key} in hanse.toml"))
    };
    Initialised { public, management, api_key: value("api_key"), participant: value("id") }
}

/// A `hanse run` process on its own folder and ports, with extra environment `env`.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub public: u16,
    pub management: u16,
    pub api_key: String,
    pub participant: String,
    pub env: Vec<(String, String)>,
    pub process: Option<Child>,
}

impl Node {
    /// `hanse init` with free ports; quick retries and error-level logs.
    pub fn init() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let Initialised { public, management, api_key, participant } = init(dir.path());
        let env = vec![
            ("HANSE_NEGOTIATION_RETRY_BASE_MS".to_owned(), "100".to_owned()),
            ("HANSE_NEGOTIATION_RETRY_ATTEMPTS".to_owned(), "12".to_owned()),
            ("RUST_LOG".to_owned(), "error".to_owned()),
        ];
        Node { dir, public, management, api_key, participant, env, process: None }
    }

    /// Keeps its store in `database` when that is PostgreSQL (SQLite stays in the node's own folder).
    pub fn use_database(&mut self, database: &hanse::testing::TestDatabase) {
        if database.backend == hanse::testing::Backend::Postgres {
            self.env.push(("HANSE_STORE_DATABASE_URL".into(), database.url.clone()));
            self.env.push(("HANSE_STORE_SCHEMA".into(), database.schema.clone().expect("a schema")));
        }
    }

    /// Starts the process and waits until it is ready.
    pub async fn start(&mut self) {
        let mut command = Command::new(HANSE);
        command
            .args(["run", "--config"])
            .arg(self.dir.path().join("hanse.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("HANSE_")) {
            command.env_remove(key);
        }
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.process = Some(command.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://127.0.0.1:{}/health/ready", self.public);
        while !reqwest::get(&url).await.is_ok_and(|r| r.status().as_u16() == 200) {
            assert!(Instant::now() < deadline, "{url} not ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no graceful shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().unwrap(); // SIGKILL: no graceful shutdown, no flush
            process.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for the graceful shutdown.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // SAFETY: kill only sends a signal to the child this node started and has not reaped yet.
            unsafe { libc::kill(process.id() as libc::pid_t, libc::SIGTERM) };
            process.wait().unwrap();
        }
    }

    pub fn management(&self) -> String {
        format!("http://127.0.0.1:{}/management", self.management)
    }

    pub fn protocol(&self) -> String {
        format!("http://127.0.0.1:{}/protocol/2025-1", self.public)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A management `POST` that must succeed; its JSON answer.
pub async fn post(client: &reqwest::Client, node: &Node, path: &str, body: Value) -> Value {
    let response = client
        .post(format!("{}{path}", node.management()))
        .header("X-Api-Key", &node.api_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {body:#}");
    body
}

/// The provider offers `cohort` (an HttpData asset) to everyone with no terms; the consumer finds the offer in its
/// catalogue. Answers the offer, ready for a contract request.
pub async fn open_offer(client: &reqwest::Client, provider: &Node, consumer: &Node) -> Value {
    let open = serde_json::json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [{"action": "use"}]});
    let asset = serde_json::json!({"@id": "cohort", "properties": {"title": "Cohort"},
        "dataAddress": {"type": "HttpData", "baseUrl": "https://ehr.example/cohort"}});
    post(client, provider, "/v3/assets", asset).await;
    post(client, provider, "/v3/policydefinitions", serde_json::json!({"@id": "open", "policy": open})).await;
    let definition =
        serde_json::json!({"@id": "cd", "accessPolicyId": "open", "contractPolicyId": "open", "assetsSelector": []});
    post(client, provider, "/v3/contractdefinitions", definition).await;
    let request =
        serde_json::json!({"counterPartyAddress": provider.protocol(), "protocol": "dataspace-protocol-http:2025-1"});
    let catalog = post(client, consumer, "/v3/catalog/request", request).await;
    let mut offer = catalog["dataset"][0]["hasPolicy"][0].clone();
    offer["target"] = serde_json::json!("cohort");
    offer["assigner"] = serde_json::json!(provider.participant);
    offer
}
