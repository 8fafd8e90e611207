//! Measurement helpers shared by the benchmarks.
// Each benchmark compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::time::Duration;

/// The allocator the `hanse` binary runs with, so that the figures are the binary's.
#[global_allocator]
static ALLOCATOR: hanse::memory::Metered<mimalloc::MiMalloc> = hanse::memory::Metered(mimalloc::MiMalloc);

/// A memory figure of this process from `/proc/self/status` (`VmRSS:` now, `VmHWM:` peak), in MB.
pub fn rss_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// CPU time this process has used so far (user and system, all threads), in seconds, from `/proc/self/stat`.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    cpu_of(&stat, false)
}

/// The CPU time a process used (its `/proc/<pid>/stat` text), in seconds; with `children`, also that of its children
/// that ended.
fn cpu_of(stat: &str, children: bool) -> f64 {
    // The fields after the command name (which is in parentheses and may hold spaces): utime and stime are the 12th
    // and 13th of them, cutime and cstime the 14th and 15th, in clock ticks of 1/100 s.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let own = ticks(11) + ticks(12);
    (if children { own + ticks(13) + ticks(14) } else { own }) / 100.0
}

/// The CPU time every PostgreSQL server process on this machine has used, its ended connections' included, in
/// seconds; `None` when no server runs here.
pub fn postgres_cpu_seconds() -> Option<f64> {
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if stat.split_once(" (").and_then(|(_, rest)| rest.split_once(')')).is_some_and(|(name, _)| name == "postgres")
        {
            *total.get_or_insert(0.0) += cpu_of(&stat, true);
        }
    }
    total
}

/// The `p` percentile of sorted durations, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// The keywords synthetic datasets rotate through.
pub const KEYWORDS: &[&str] =
    &["diabetes", "oncology", "cardiology", "asthma", "stroke", "obesity", "covid", "dementia"];

/// Synthetic dataset `i`: HealthDCAT-AP properties, one offer.
pub fn asset_body(i: usize) -> serde_json::Value {
    serde_json::json!({
        "@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"},
        "@id": format!("dataset-{i:06}"),
        "properties": {
            "title": format!("Cohort {i}: {} registry extract", KEYWORDS[i % KEYWORDS.len()]),
            "description": "Synthetic hospital registry extract with demographics, diagnoses and lab values.",
            "keyword": [KEYWORDS[i % KEYWORDS.len()], KEYWORDS[(i / 8) % KEYWORDS.len()], "adults"],
            "numberOfRecords": 1000 + (i % 5000),
            "minTypicalAge": 18, "maxTypicalAge": 90,
            "theme": "http://publications.europa.eu/resource/authority/data-theme/HEAL",
            "healthCategory": "http://healthdataportal.eu/ns/health#EHR"
        },
        "dataAddress": {"type": "HttpData", "baseUrl": format!("https://ehr.hospital.example/export/{i}")}
    })
}

/// Seeds the store of `config` directly with `datasets` synthetic datasets, offered to everyone the access policy
/// `access` (its permissions) lets see them under a research-purpose contract policy. (The management API would take
/// minutes of JSON-LD processing for 100 000 bodies.)
pub async fn seed_catalogue(config: &hanse::config::Config, datasets: usize, access: serde_json::Value) {
    use hanse::catalog::model::{Asset, ContractDefinition, PolicyDefinition};
    use hanse::store::{DocumentKind, Store, StoreOptions};
    use serde_json::{Value, json};
    let store = Store::open(&config.database_url(), &StoreOptions::default()).await.unwrap();
    let template = Asset::from_body(&asset_body(0), &config.file_root()).unwrap();
    let mut batch = Vec::with_capacity(5000);
    for i in 0..datasets {
        let mut expanded = template.expanded.clone();
        let body = asset_body(i);
        expanded["@id"] = body["@id"].clone();
        let properties = &mut expanded["https://w3id.org/edc/v0.0.1/ns/properties"][0];
        properties["https://w3id.org/edc/v0.0.1/ns/title"] = json!([{"@value": body["properties"]["title"]}]);
        properties["https://w3id.org/edc/v0.0.1/ns/keyword"] = Value::Array(
            body["properties"]["keyword"].as_array().unwrap().iter().map(|k| json!({"@value": k})).collect(),
        );
        properties["https://w3id.org/edc/v0.0.1/ns/numberOfRecords"] =
            json!([{"@value": body["properties"]["numberOfRecords"]}]);
        batch.push((body["@id"].as_str().unwrap().to_owned(), expanded));
        if batch.len() == 5000 {
            store.documents.insert_documents(DocumentKind::Asset, &batch).await.unwrap();
            batch.clear();
        }
    }
    store.documents.insert_documents(DocumentKind::Asset, &batch).await.unwrap();
    let policy = PolicyDefinition::from_body(
        &json!({"@id": "open", "policy": {"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
            "permission": [{"action": "use", "constraint": [{"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"}]}]}}),
        chrono::Utc::now(),
    )
    .unwrap();
    let access = PolicyDefinition::from_body(
        &json!({"@id": "members", "policy": {"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": access}}),
        chrono::Utc::now(),
    )
    .unwrap();
    store.documents.insert_document(DocumentKind::PolicyDefinition, "open", &policy.expanded).await.unwrap();
    store.documents.insert_document(DocumentKind::PolicyDefinition, "members", &access.expanded).await.unwrap();
    let definition = ContractDefinition::from_body(
        &json!({"@id": "all", "accessPolicyId": "members", "contractPolicyId": "open", "assetsSelector": []}),
    )
    .unwrap();
    store.documents.insert_document(DocumentKind::ContractDefinition, "all", &definition.expanded).await.unwrap();
    store.close().await;
}

/// The provider offers `asset` (an EDC asset body) to everyone under an open policy (`manual_start` as given); answers
/// the offer as `consumer` sees it in the catalogue, ready for a contract request.
pub async fn offer(
    p: &hanse::server::Shared,
    consumer: &str,
    asset: serde_json::Value,
    manual_start: bool,
) -> serde_json::Value {
    let asset = hanse::catalog::model::Asset::from_body(&asset, &p.catalogue.service.file_root).unwrap();
    let id = asset.id.clone();
    p.catalogue.create_asset(asset).await.unwrap();
    offer_dataset(p, consumer, &id, manual_start).await
}

/// The provider offers its dataset `id` to everyone under an open policy; answers the offer as `consumer` sees it.
pub async fn offer_dataset(
    p: &hanse::server::Shared,
    consumer: &str,
    id: &str,
    manual_start: bool,
) -> serde_json::Value {
    use hanse::catalog::model::{ContractDefinition, PolicyDefinition};
    use serde_json::json;
    let policy = PolicyDefinition::from_body(&json!({"@id": "open", "policy": {"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [{"action": "use"}]}}), chrono::Utc::now()).unwrap();
    p.catalogue.create_policy(policy).await.unwrap();
    let definition = ContractDefinition::from_body(
        &json!({"@id": "cd", "accessPolicyId": "open", "contractPolicyId": "open", "manualStart": manual_start}),
    )
    .unwrap();
    p.catalogue.create_definition(definition).await.unwrap();
    let page = p.catalogue.page(
        &hanse_policy::RequestContext::new(consumer.to_owned(), chrono::Utc::now()),
        None,
        None,
        1,
        &Default::default(),
    );
    let dataset: serde_json::Value = serde_json::from_str(&page.datasets[0].text()).unwrap();
    let mut offer = dataset["hasPolicy"][0].clone();
    offer["target"] = json!(id);
    offer["assigner"] = json!(p.config.participant.id);
    offer
}

/// The consumer negotiates `offer` with the provider at `provider_url` until FINALIZED; answers the agreement.
pub async fn agree(
    c: &hanse::server::Shared,
    provider_url: &str,
    provider_id: &str,
    offer: serde_json::Value,
) -> hanse::store::AgreementRow {
    use hanse::negotiation::machine::State;
    let mut events = c.negotiations.events();
    let start = hanse::negotiation::Start {
        provider_address: format!("{provider_url}/protocol/2025-1"),
        provider_id: provider_id.to_owned(),
        offer,
        auto_accept: true,
        purpose: None,
        pull_on_agreement: false,
    };
    let id = c.negotiations.start(start).await.unwrap().row.id;
    loop {
        match events.recv().await {
            Ok((finished, State::Finalized)) if finished == id => break,
            Ok(_) => {}
            Err(error) => panic!("negotiation events: {error}"),
        }
    }
    c.store.processes.agreements().await.unwrap().into_iter().find(|a| a.negotiation_id == id).expect("the agreement")
}

/// A memory figure of process `pid` (`VmRSS:` now or `VmHWM:` peak), in MB.
pub fn rss_of(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Real hospital connectors in this process, each with its own identity, SQLite store, listeners and `datasets`
/// synthetic datasets offered to everyone.
pub async fn hospitals(root: &std::path::Path, peers: usize, datasets: usize) -> Vec<hanse::server::RunningConnector> {
    let mut hospitals = Vec::with_capacity(peers);
    for i in 0..peers {
        let dir = root.join(format!("hospital-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (_, mut config, public, management) = hanse::testing::initialised(&dir).await;
        config.peers.exchange_interval_seconds = 0;
        config.audit.witness_interval_seconds = 0;
        config.store.max_connections = 2;
        config.log.level = "warn".into();
        seed_catalogue(&config, datasets, serde_json::json!([{"action": "use"}])).await;
        hospitals.push(hanse::server::start_on(config, public, management).await.unwrap());
    }
    hospitals
}

/// A `hanse run` process of its own, initialised in `dir` with `extra` appended to its configuration.
pub struct Process {
    pub child: std::process::Child,
    pub config_file: std::path::PathBuf,
    /// The store the process keeps its state in.
    pub database_url: String,
    pub participant: String,
    pub public_url: String,
    pub management_url: String,
    pub api_key: String,
    pub client: reqwest::Client,
    /// When the running process was spawned.
    pub spawned: std::time::Instant,
    /// The `HANSE_<SECTION>_<KEY>` settings it runs with.
    env: Vec<(String, String)>,
}

impl Process {
    /// Initialises a connector in `dir`, lets `prepare` seed its configuration's store, and starts it.
    pub async fn start<F: std::future::Future<Output = ()>>(
        dir: &std::path::Path,
        extra: &str,
        prepare: impl FnOnce(hanse::config::Config) -> F,
    ) -> Process {
        Process::start_with(dir, extra, &[], prepare).await
    }

    /// [`Process::start`] with `env` (`HANSE_<SECTION>_<KEY>` settings), kept for every restart.
    pub async fn start_with<F: std::future::Future<Output = ()>>(
        dir: &std::path::Path,
        extra: &str,
        env: &[(&str, &str)],
        prepare: impl FnOnce(hanse::config::Config) -> F,
    ) -> Process {
        std::fs::create_dir_all(dir).unwrap();
        let (done, config, public, management) = hanse::testing::initialised(dir).await;
        let (public_url, management_url) = (
            format!("http://{}", public.local_addr().unwrap()),
            format!("http://{}", management.local_addr().unwrap()),
        );
        drop((public, management));
        let (participant, database_url) = (config.participant.id.clone(), config.database_url());
        prepare(config).await;
        let mut text = std::fs::read_to_string(&done.config_file).unwrap();
        text.push_str(extra);
        std::fs::write(&done.config_file, text).unwrap();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let spawned = std::time::Instant::now();
        let child = run(&done.config_file, &env);
        let client = reqwest::Client::builder().pool_max_idle_per_host(16).build().unwrap();
        let config_file = done.config_file.clone();
        Process {
            child,
            config_file,
            database_url,
            participant,
            public_url,
            management_url,
            api_key: done.api_key.clone(),
            client,
            spawned,
            env,
        }
    }

    /// Stops the process (SIGKILL) and waits until it is gone.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process as an orchestrator does (SIGTERM: it shuts down gracefully), and waits until it is gone.
    pub async fn terminate(&mut self) {
        let pid = self.pid().to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().is_ok_and(|s| s.success());
        assert!(sent, "SIGTERM sent to {pid}");
        let started = std::time::Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(started.elapsed() < Duration::from_secs(120), "the connector did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the stopped process again with the same configuration and settings, and `env` besides.
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        self.stop();
        let mut all = self.env.clone();
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.spawned = std::time::Instant::now();
        self.child = run(&self.config_file, &all);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A management API request with the API key.
    pub fn management(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.management_url)).header("X-Api-Key", &self.api_key)
    }

    /// Waits until the management API answers `path` with a 2xx.
    pub async fn ready(&self, path: &str) {
        let started = std::time::Instant::now();
        while !self.management(reqwest::Method::GET, path).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(started.elapsed() < Duration::from_secs(120), "the connector did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the connector reports ready (`/health/ready` answers 200, asked every 10 ms); answers how long
    /// after its spawn that was.
    pub async fn until_ready(&self) -> Duration {
        let url = format!("{}/health/ready", self.management_url);
        while !self.client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(self.spawned.elapsed() < Duration::from_secs(600), "the connector did not get ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.spawned.elapsed()
    }

    /// The broker's crawl status once every peer's catalogue was crawled with `datasets` datasets.
    pub async fn first_crawl(&self, peers: usize, datasets: usize) -> Vec<serde_json::Value> {
        let waiting = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let Ok(response) = self.management(reqwest::Method::GET, "/management/v3/broker/crawls").send().await
            else {
                continue;
            };
            let status: Vec<serde_json::Value> = response.json().await.unwrap_or_default();
            let complete = status.iter().filter(|s| s["datasets"].as_u64() == Some(datasets as u64)).count();
            if complete == peers {
                return status;
            }
            // A million datasets read back into an empty graph on disk take minutes on two cores.
            assert!(
                waiting.elapsed() < Duration::from_secs(1800),
                "the first crawl did not finish: {complete} of {peers}"
            );
        }
    }

    /// A forced crawl of every peer; answers the status after it, each peer crawled without error.
    pub async fn crawl(&self) -> Vec<serde_json::Value> {
        let response = self
            .management(reqwest::Method::POST, "/management/v3/broker/crawl")
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .unwrap();
        let status: Vec<serde_json::Value> = response.json().await.unwrap();
        assert!(status.iter().all(|s| s["error"].is_null()), "every peer crawled: {status:?}");
        status
    }
}

/// `hanse run` with `config_file`, logging warnings (or at the level `HANSE_LOG_LEVEL` sets for the benchmark), and
/// `env`.
fn run(config_file: &std::path::Path, env: &[(String, String)]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_hanse"))
        .args(["run", "--config"])
        .arg(config_file)
        .env("HANSE_LOG_LEVEL", std::env::var("HANSE_LOG_LEVEL").unwrap_or_else(|_| "warn".into()))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .spawn()
        .expect("the hanse binary starts")
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The broker's configuration: `seeds` (DIDs) to crawl, peers exchanged every 2 s, crawls only when forced, and no
/// per-caller query quota (the benchmark's one researcher asks hundreds of queries a minute).
pub fn broker_config(seeds: &[String]) -> String {
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "\n[peers]\nseeds = [{}]\nexchange_interval_seconds = 2\n\n[broker]\nenabled = true\ncrawl_interval_seconds = 3600\nqueries_per_minute = 0\n",
        seeds.join(", ")
    )
}

/// Changes synthetic dataset `i` of a connector seeded by [`seed_catalogue`] (its title names `round`).
pub async fn change_dataset(connector: &hanse::server::Shared, i: usize, round: usize) {
    let mut body = asset_body(i);
    body["properties"]["title"] = serde_json::json!(format!("Cohort {i}, revision {round}"));
    let asset = hanse::catalog::model::Asset::from_body(&body, &connector.catalogue.service.file_root).unwrap();
    connector.catalogue.replace_asset(asset).await.unwrap();
}
