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
    init_at(dir, free_port(), free_port())
}

/// `hanse init` in `dir` for the given ports (the participant id names the public one).
pub fn init_at(dir: &Path, public: u16, management: u16) -> Initialised {
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
    /// A folder the node shares with other replicas (their data folder), removed when the last of them is dropped.
    pub shared: Option<std::sync::Arc<tempfile::TempDir>>,
}

impl Node {
    /// `hanse init` with free ports; quick retries and error-level logs.
    pub fn init() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let Initialised { public, management, api_key, participant } = init(dir.path());
        Node::new(dir, public, management, api_key, participant)
    }

    /// A node of an initialised folder: quick retries, error-level logs, and leases a killed node's successor takes
    /// over after 3 s rather than 15.
    fn new(dir: tempfile::TempDir, public: u16, management: u16, api_key: String, participant: String) -> Node {
        let env = [
            ("HANSE_NEGOTIATION_RETRY_BASE_MS", "100"),
            ("HANSE_NEGOTIATION_RETRY_ATTEMPTS", "12"),
            // Warnings too when the logs are kept (`HANSE_TEST_NODE_LOGS`).
            ("RUST_LOG", if std::env::var_os("HANSE_TEST_NODE_LOGS").is_some() { "warn" } else { "error" }),
            ("HANSE_CLUSTER_LEASE_SECONDS", "3"),
        ];
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Node { dir, public, management, api_key, participant, env, process: None, shared: None }
    }

    /// `replicas` replicas of one connector on `database` (PostgreSQL) behind a [`Balancer`], which the participant
    /// id and public URL name: the same configuration, keys and data folder (a shared volume), each on its own ports.
    pub async fn replicas(count: usize, database: &hanse::testing::TestDatabase) -> (Vec<Node>, Balancer) {
        let balancer_port = free_port();
        let first = tempfile::tempdir().unwrap();
        let Initialised { api_key, participant, .. } = init_at(first.path(), balancer_port, free_port());
        let shared_data = first.path().join("data");
        let first = std::sync::Arc::new(first);
        let mut nodes = Vec::new();
        for _ in 0..count {
            let dir = tempfile::tempdir().unwrap();
            std::fs::copy(first.path().join("hanse.toml"), dir.path().join("hanse.toml")).unwrap();
            std::fs::create_dir_all(dir.path().join("keys")).unwrap();
            for key in ["participant.pem", "participant.pub.pem"] {
                std::fs::copy(first.path().join("keys").join(key), dir.path().join("keys").join(key)).unwrap();
            }
            let (public, management) = (free_port(), free_port());
            let mut node = Node::new(dir, public, management, api_key.clone(), participant.clone());
            node.shared = Some(first.clone());
            node.use_database(database);
            node.env.extend([
                ("HANSE_PUBLIC_BIND".to_owned(), format!("127.0.0.1:{public}")),
                ("HANSE_PUBLIC_URL".to_owned(), format!("http://127.0.0.1:{balancer_port}")),
                ("HANSE_MANAGEMENT_BIND".to_owned(), format!("127.0.0.1:{management}")),
                ("HANSE_STORE_DATA_DIR".to_owned(), shared_data.display().to_string()),
            ]);
            nodes.push(node);
        }
        let balancer = Balancer::start(balancer_port, nodes.iter().map(|n| n.public).collect()).await;
        (nodes, balancer)
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
        command.args(["run", "--config"]).arg(self.dir.path().join("hanse.toml")).stdout(Stdio::null()).stderr(
            match std::env::var_os("HANSE_TEST_NODE_LOGS") {
                // Each node's log, appended across restarts, where a failing run can be read.
                Some(folder) => {
                    let name = format!("node-{}.log", self.management);
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(std::path::Path::new(&folder).join(name));
                    file.map(Stdio::from).unwrap_or_else(|_| Stdio::null())
                }
                None => Stdio::null(),
            },
        );
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("HANSE_")) {
            command.env_remove(key);
        }
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.process = Some(command.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://127.0.0.1:{}/health/ready", self.public);
        // Each probe is bounded too: a port that accepts and never answers fails at the deadline, not never.
        let probe = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        while !probe.get(&url).send().await.is_ok_and(|r| r.status().as_u16() == 200) {
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

/// A round-robin TCP load balancer, as a Kubernetes Service spreads connections over pods: each new connection goes to
/// the next backend that accepts it; a backend that refuses (a killed replica) is skipped.
pub struct Balancer {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    pub async fn start(port: u16, backends: Vec<u16>) -> Balancer {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let task = tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                let start = next;
                next = next.wrapping_add(1);
                let backends = backends.clone();
                tokio::spawn(async move {
                    for i in 0..backends.len() {
                        let port = backends[(start + i) % backends.len()];
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer { port, task }
    }

    pub fn protocol(&self) -> String {
        format!("http://127.0.0.1:{}/protocol/2025-1", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
