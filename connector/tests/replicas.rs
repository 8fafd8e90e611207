//! Replicas (decision 0040): three `hanse run` processes of one provider and two of one consumer, each side on one
//! PostgreSQL schema behind a round-robin balancer that its participant id and public URL name. Management calls are
//! spread over the replicas in turn. While 300 negotiations, 300 transfers (pull and push) and 20 compute jobs run,
//! one replica of each side is killed (SIGKILL) and started again, twice. At the end every process is final and the
//! same on both sides, every push was delivered whole under its one delivery id, every job ended once, and both audit
//! logs verify. Before that, a catalogue change made through one provider replica is found in another replica's DSP
//! catalogue and in a third one's SPARQL within a second.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::HeaderMap;
use futures_util::StreamExt;
use hanse::testing::{Backend, TestDatabase};
use reqwest::Method;
use serde_json::{Value, json};

mod support;
use support::Node;

const NEGOTIATIONS: usize = 300;
const PUSHES_EVERY: usize = 3;
const JOBS: usize = 20;
/// How long a live replica may take to answer any call before the test calls it stuck.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);
const DATA: &[u8] = b"cohort extract: 1 234 patients, 56 789 encounters\n";

/// One side's replicas as its operator's tools see them: management calls go to each live replica in turn.
struct Side {
    management: Vec<u16>,
    api_key: String,
    next: AtomicUsize,
    client: reqwest::Client,
}

impl Side {
    fn of(nodes: &[Node]) -> Side {
        // A fresh connection per call, as a client behind a balancer spreads them.
        let client = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(ANSWER_WITHIN).build().unwrap();
        Side {
            management: nodes.iter().map(|n| n.management).collect(),
            api_key: nodes[0].api_key.clone(),
            next: AtomicUsize::new(0),
            client,
        }
    }

    /// A management call on the next replica that answers. A `POST` carries an `Idempotency-Key`, the same on every
    /// attempt: a call that a dying replica may have made already is made once.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let key = uuid::Uuid::new_v4().to_string();
        for _ in 0..200 {
            let port = self.management[self.next.fetch_add(1, Ordering::Relaxed) % self.management.len()];
            let mut request = self
                .client
                .request(method.clone(), format!("http://127.0.0.1:{port}/management{path}"))
                .header("X-Api-Key", &self.api_key);
            if method == Method::POST {
                request = request.header("Idempotency-Key", &key);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let sent = request.send().await;
            // A live replica that holds a call this long is stuck: fail here, naming it, rather than wait forever.
            if let Err(error) = &sent
                && error.is_timeout()
            {
                panic!("replica {port} did not answer {method} {path} within {ANSWER_WITHIN:?}");
            }
            if let Ok(response) = sent {
                let status = response.status().as_u16();
                // A replica going down answers 503 while it drains; another one answers.
                if let Ok(bytes) = response.bytes().await
                    && status != 503
                {
                    return (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null));
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no replica answered {method} {path}");
    }

    async fn ok(&self, method: Method, path: &str, body: Option<&Value>) -> Value {
        let (status, answer) = self.call(method.clone(), path, body).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {answer:#}");
        answer
    }

    async fn all(&self, kind: &str) -> Vec<Value> {
        let listed = self.ok(Method::POST, &format!("/v3/{kind}/request"), Some(&json!({"limit": 10000}))).await;
        listed.as_array().unwrap().clone()
    }
}

/// One delivery the push destination received.
#[derive(Debug, Clone)]
struct Delivery {
    key: String,
    whole: bool,
}

/// The dataset's backend and the push destination, on one server.
async fn servers(deliveries: Arc<Mutex<Vec<Delivery>>>) -> String {
    let app = axum::Router::new().route("/cohort", axum::routing::get(|| async { DATA })).route(
        "/incoming",
        axum::routing::post(move |headers: HeaderMap, body: Body| {
            let deliveries = deliveries.clone();
            async move {
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let mut stream = body.into_data_stream();
                let mut received = Vec::new();
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(bytes) => received.extend_from_slice(&bytes),
                        Err(_) => return axum::http::StatusCode::BAD_REQUEST,
                    }
                }
                deliveries.lock().unwrap().push(Delivery { key, whole: received == DATA });
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

fn terminal(process: &Value) -> bool {
    ["FINALIZED", "TERMINATED", "COMPLETED"].contains(&process["state"].as_str().unwrap_or_default())
}

/// Replica `i` of each side dies (SIGKILL) after batch `down` and is started again after batch `up`.
async fn outage(batch: usize, (down, up): (usize, usize), i: usize, sides: [&mut [Node]; 2]) {
    for nodes in sides {
        if batch == down {
            nodes[i].kill();
        }
        if batch == up {
            nodes[i].start().await;
        }
    }
}

/// Kills replica `i` of `nodes` and starts it again after `down`.
async fn bounce(nodes: &mut [Node], i: usize, down: Duration) {
    nodes[i].kill();
    tokio::time::sleep(down).await;
    nodes[i].start().await;
}

/// Waits until every process of `kind` on both sides is final; answers (consumer's, provider's).
async fn settled(consumer: &Side, provider: &Side, kind: &str, count: usize) -> (Vec<Value>, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (ours, theirs) = (consumer.all(kind).await, provider.all(kind).await);
        if ours.len() >= count && ours.iter().all(terminal) && theirs.iter().all(terminal) {
            return (ours, theirs);
        }
        let open = |list: &[Value]| {
            let mut states: BTreeMap<String, usize> = BTreeMap::new();
            list.iter().filter(|p| !terminal(p)).for_each(|p| *states.entry(p["state"].to_string()).or_default() += 1);
            states
        };
        assert!(
            Instant::now() < deadline,
            "{kind} not settled: consumer {} of {count}, open {:?}; provider open {:?}",
            ours.len(),
            open(&ours),
            open(&theirs)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Each consumer process has one provider process in the same final state (none lost, none twice).
fn same_on_both_sides(kind: &str, ours: &[Value], theirs: &[Value]) -> usize {
    let by_consumer_pid: HashMap<&str, &Value> =
        theirs.iter().map(|p| (p["correlationId"].as_str().unwrap_or_default(), p)).collect();
    assert_eq!(by_consumer_pid.len(), theirs.len(), "{kind}: a consumer process appears twice on the provider");
    let mut agreed = 0;
    for process in ours {
        let id = process["@id"].as_str().unwrap();
        match by_consumer_pid.get(id) {
            Some(provider) => {
                assert_eq!(provider["state"], process["state"], "{kind} {id} differs between the sides");
                agreed += 1;
            }
            None => assert_eq!(process["state"], "TERMINATED", "{kind} {id} ended well without the provider"),
        }
    }
    agreed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_on_one_database_survive_killed_replicas_and_do_nothing_twice() {
    let (provider_db, consumer_db) = (TestDatabase::new(Backend::Postgres), TestDatabase::new(Backend::Postgres));
    let (mut providers, provider_lb) = Node::replicas(3, &provider_db).await;
    let (mut consumers, _consumer_lb) = Node::replicas(2, &consumer_db).await;
    for node in providers.iter_mut().chain(consumers.iter_mut()) {
        node.start().await;
    }
    let (provider, consumer) = (Side::of(&providers), Side::of(&consumers));
    let deliveries = Arc::new(Mutex::new(Vec::new()));
    let server = servers(deliveries.clone()).await;

    // The provider's offers, made through whichever replica answers: a dataset to pull or push, a table to compute on.
    let odrl = "http://www.w3.org/ns/odrl.jsonld";
    let asset = json!({"@id": "cohort", "properties": {"title": "Cohort"},
                       "dataAddress": {"type": "HttpData", "baseUrl": format!("{server}/cohort")}});
    provider.ok(Method::POST, "/v3/assets", Some(&asset)).await;
    let open = json!({"@context": odrl, "@type": "Set", "permission": [{"action": "use"}]});
    let compute = json!({"@context": odrl, "@type": "Set", "permission": [{"action": "hanse:compute"}]});
    provider.ok(Method::POST, "/v3/policydefinitions", Some(&json!({"@id": "open", "policy": open}))).await;
    provider.ok(Method::POST, "/v3/policydefinitions", Some(&json!({"@id": "compute", "policy": compute}))).await;
    let csv = providers[0].dir.path().join("register.csv");
    let schema = hanse::compute::commands::synth(500, 0, 7, &csv).unwrap();
    let url = format!("http://127.0.0.1:{}", providers[1].management);
    hanse::compute::commands::ingest(&url, &provider.api_key, "register", &csv, &schema, json!({"title": "Register"}))
        .await
        .unwrap();
    for (id, policy, asset) in [("cd-cohort", "open", "cohort"), ("cd-register", "compute", "register")] {
        let selector =
            json!([{"operandLeft": "https://w3id.org/edc/v0.0.1/ns/id", "operator": "=", "operandRight": asset}]);
        let definition =
            json!({"@id": id, "accessPolicyId": "open", "contractPolicyId": policy, "assetsSelector": selector});
        provider.ok(Method::POST, "/v3/contractdefinitions", Some(&definition)).await;
    }

    // A change through replica 0 reaches replica 1's DSP catalogue and replica 2's SPARQL within a second.
    let fresh = json!({"@id": "fresh", "properties": {"title": "Fresh"},
                       "dataAddress": {"type": "HttpData", "baseUrl": format!("{server}/cohort")}});
    let direct = Side { management: vec![providers[0].management], ..Side::of(&providers) };
    direct.ok(Method::POST, "/v3/assets", Some(&fresh)).await;
    let selector =
        json!([{"operandLeft": "https://w3id.org/edc/v0.0.1/ns/id", "operator": "=", "operandRight": "fresh"}]);
    let definition =
        json!({"@id": "cd-fresh", "accessPolicyId": "open", "contractPolicyId": "open", "assetsSelector": selector});
    direct.ok(Method::POST, "/v3/contractdefinitions", Some(&definition)).await;
    let made = Instant::now();
    let catalog_of =
        |node: &Node| json!({"counterPartyAddress": node.protocol(), "protocol": "dataspace-protocol-http:2025-1"});
    let query =
        "SELECT ?d WHERE { ?d a <http://www.w3.org/ns/dcat#Dataset> ; <http://purl.org/dc/terms/title> \"Fresh\" }";
    let (mut in_catalogue, mut in_sparql) = (None, None);
    while in_catalogue.is_none() || in_sparql.is_none() {
        assert!(
            made.elapsed() < Duration::from_secs(10),
            "the change never reached the other replicas: catalogue {in_catalogue:?}, SPARQL {in_sparql:?}"
        );
        if in_catalogue.is_none() {
            let catalog = consumer.ok(Method::POST, "/v3/catalog/request", Some(&catalog_of(&providers[1]))).await;
            if catalog["dataset"].as_array().is_some_and(|d| d.iter().any(|d| d["@id"] == "fresh")) {
                in_catalogue = Some(made.elapsed());
            }
        }
        if in_sparql.is_none() {
            let answer = reqwest::Client::new()
                .post(format!("http://127.0.0.1:{}/management/sparql", providers[2].management))
                .header("X-Api-Key", &provider.api_key)
                .header("Content-Type", "application/sparql-query")
                .header("Accept", "application/sparql-results+json")
                .body(query)
                .timeout(ANSWER_WITHIN)
                .send()
                .await
                .unwrap();
            let results: Value = answer.json().await.unwrap();
            if results["results"]["bindings"].as_array().is_some_and(|b| !b.is_empty()) {
                in_sparql = Some(made.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (in_catalogue, in_sparql) = (in_catalogue.unwrap(), in_sparql.unwrap());
    eprintln!(
        "a change through replica 0: in replica 1's DSP catalogue after {in_catalogue:?}, in replica 2's SPARQL after {in_sparql:?}"
    );
    assert!(in_catalogue < Duration::from_secs(1) && in_sparql < Duration::from_secs(1));

    // Offers as the consumer finds them through the provider's balancer.
    let participant = providers[0].participant.clone();
    let catalog = json!({"counterPartyAddress": provider_lb.protocol(), "protocol": "dataspace-protocol-http:2025-1"});
    let catalog = consumer.ok(Method::POST, "/v3/catalog/request", Some(&catalog)).await;
    let offer_of = |dataset: &str| {
        let found = catalog["dataset"].as_array().unwrap().iter().find(|d| d["@id"] == dataset).unwrap();
        let mut offer = found["hasPolicy"][0].clone();
        offer["target"] = json!(dataset);
        offer["assigner"] = json!(participant);
        offer
    };
    let (cohort_offer, register_offer) = (offer_of("cohort"), offer_of("register"));

    // 300 negotiations, 25 at a time; a replica of each side dies and comes back in the middle.
    let negotiate = async |offer: &Value| {
        let body = json!({"counterPartyAddress": provider_lb.protocol(), "counterPartyId": participant,
                          "protocol": "dataspace-protocol-http:2025-1", "policy": offer});
        consumer.ok(Method::POST, "/v3/contractnegotiations", Some(&body)).await["@id"].as_str().unwrap().to_owned()
    };
    let mut negotiation_ids = Vec::new();
    for batch in 0..NEGOTIATIONS / 25 {
        let started = futures_util::future::join_all((0..25).map(|i| {
            let offer = if batch == 0 && i < 2 { &register_offer } else { &cohort_offer };
            negotiate(offer)
        }));
        negotiation_ids.extend(started.await);
        outage(batch, (4, 7), 0, [&mut providers, &mut consumers]).await;
    }
    let (ours, theirs) = settled(&consumer, &provider, "contractnegotiations", NEGOTIATIONS).await;
    let mut listed: Vec<&str> = ours.iter().map(|n| n["@id"].as_str().unwrap()).collect();
    listed.sort();
    negotiation_ids.sort();
    assert_eq!(listed, negotiation_ids, "a negotiation was lost or made twice on the consumer");
    same_on_both_sides("negotiation", &ours, &theirs);
    let agreements: Vec<String> = ours
        .iter()
        .filter(|n| n["state"] == "FINALIZED")
        .map(|n| n["contractAgreementId"].as_str().unwrap().to_owned())
        .collect();
    eprintln!("negotiations: {} finalized of {NEGOTIATIONS}", agreements.len());
    assert!(agreements.len() > NEGOTIATIONS * 9 / 10, "only {} negotiations finalized", agreements.len());

    // 20 compute jobs and a transfer under every cohort agreement (every third a push), while replicas die again.
    let agreement_list: Vec<Value> = consumer.all("contractagreements").await;
    let target_of: HashMap<String, String> = agreement_list
        .iter()
        .map(|a| (a["@id"].as_str().unwrap().to_owned(), a["assetId"].as_str().unwrap_or_default().to_owned()))
        .collect();
    let (register, cohort): (Vec<&String>, Vec<&String>) =
        agreements.iter().partition(|a| target_of.get(*a).is_some_and(|t| t == "register"));
    assert!(!register.is_empty(), "no agreement for the register: {target_of:?}");
    let job = |agreement: &str| {
        json!({"template": "aggregate", "sites": [{"agreementId": agreement}],
               "parameters": {"groupBy": ["sex"], "metrics": [{"column": "hba1c", "statistics": ["count", "mean"]}]}})
    };
    let mut jobs = Vec::new();
    let transfer = |(i, agreement): (usize, &&String)| {
        let body = if i % PUSHES_EVERY == 0 {
            json!({"contractId": agreement, "transferType": "HttpData-PUSH", "protocol": "dataspace-protocol-http:2025-1",
                   "counterPartyAddress": provider_lb.protocol(),
                   "dataDestination": {"type": "HttpData", "baseUrl": format!("{server}/incoming")}})
        } else {
            json!({"contractId": agreement, "transferType": "HttpData-PULL", "protocol": "dataspace-protocol-http:2025-1",
                   "counterPartyAddress": provider_lb.protocol()})
        };
        let consumer = &consumer;
        async move {
            let created = consumer.ok(Method::POST, "/v3/transferprocesses", Some(&body)).await;
            (created["@id"].as_str().unwrap().to_owned(), i % PUSHES_EVERY == 0)
        }
    };
    let mut transfers = Vec::new();
    for (batch, chunk) in cohort.iter().enumerate().collect::<Vec<_>>().chunks(25).enumerate() {
        transfers.extend(futures_util::future::join_all(chunk.iter().copied().map(transfer)).await);
        // Two jobs with every batch, so that jobs run while replicas die.
        while jobs.len() < JOBS.min(2 * (batch + 1)) {
            let body = job(register[jobs.len() % register.len()]);
            jobs.push(consumer.ok(Method::POST, "/v3/jobs", Some(&body)).await["@id"].as_str().unwrap().to_owned());
        }
        outage(batch, (3, 6), 1, [&mut providers, &mut consumers]).await;
    }
    bounce(&mut providers, 2, Duration::from_millis(200)).await;

    // Pull transfers: the data through the provider's balancer with each transfer's data address, then complete.
    let pulls: Vec<&String> = transfers.iter().filter(|(_, push)| !push).map(|(id, _)| id).collect();
    let data_client = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(ANSWER_WITHIN).build().unwrap();
    for id in &pulls {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let state = consumer.ok(Method::GET, &format!("/v3/transferprocesses/{id}/state"), None).await;
            if state["state"] == "STARTED" {
                break;
            }
            assert!(!terminal(&state) && Instant::now() < deadline, "pull {id} did not start: {state:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let address = consumer.ok(Method::GET, &format!("/v3/edrs/{id}/dataaddress"), None).await;
        let pulled = data_client
            .get(address["endpoint"].as_str().unwrap())
            .header("Authorization", format!("Bearer {}", address["authorization"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(pulled.status(), 200, "pull {id}");
        assert_eq!(pulled.bytes().await.unwrap().as_ref(), DATA, "pull {id}");
        consumer.ok(Method::POST, &format!("/v3/transferprocesses/{id}/complete"), Some(&json!({}))).await;
    }
    let (ours, theirs) = settled(&consumer, &provider, "transferprocesses", transfers.len()).await;
    let ours: Vec<Value> =
        ours.into_iter().filter(|t| transfers.iter().any(|(id, _)| t["@id"] == id.as_str())).collect();
    same_on_both_sides("transfer", &ours, &theirs);
    let completed = ours.iter().filter(|t| t["state"] == "COMPLETED").count();
    eprintln!("transfers: {completed} completed of {} ({} pushes)", transfers.len(), transfers.len() - pulls.len());
    assert_eq!(
        completed,
        ours.len(),
        "every transfer completes: {:#?}",
        ours.iter().filter(|t| t["state"] != "COMPLETED").collect::<Vec<_>>()
    );

    // Every push was delivered whole; a delivery repeated after a kill carries the same delivery id.
    let deliveries = deliveries.lock().unwrap().clone();
    let provider_pids: HashMap<&str, &str> = theirs
        .iter()
        .map(|t| (t["correlationId"].as_str().unwrap_or_default(), t["@id"].as_str().unwrap_or_default()))
        .collect();
    let mut whole: HashMap<&str, usize> = HashMap::new();
    for delivery in deliveries.iter().filter(|d| d.whole) {
        *whole.entry(delivery.key.as_str()).or_default() += 1;
    }
    for (id, _) in transfers.iter().filter(|(_, push)| *push) {
        let key = provider_pids[id.as_str()];
        assert!(whole.contains_key(key), "push {id} (provider {key}) was never delivered whole");
    }
    let repeated: usize = whole.values().map(|n| n - 1).sum();
    assert!(whole.len() == transfers.len() - pulls.len(), "deliveries under unknown ids: {whole:?}");
    eprintln!("pushes: {} delivered, {repeated} delivered again under the same delivery id", whole.len());

    // Every job ended, once: completed, or failed with the reason.
    for id in &jobs {
        let deadline = Instant::now() + Duration::from_secs(120);
        let job = loop {
            let job = consumer.ok(Method::GET, &format!("/v3/jobs/{id}"), None).await;
            if job["state"] == "COMPLETED" || job["state"] == "FAILED" {
                break job;
            }
            assert!(Instant::now() < deadline, "job {id} never ended: {job:#}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if job["state"] == "FAILED" {
            eprintln!("job {id} failed: {}", job["error"]);
        }
    }
    let ended = consumer.ok(Method::POST, "/v3/jobs/request", Some(&json!({}))).await;
    assert_eq!(ended.as_array().unwrap().len(), JOBS, "a job was made twice");
    let completed_jobs = ended.as_array().unwrap().iter().filter(|j| j["state"] == "COMPLETED").count();
    eprintln!("jobs: {completed_jobs} of {JOBS} completed");
    assert!(completed_jobs > 0);

    // Both logs verify, through any replica.
    for (name, side) in [("provider", &provider), ("consumer", &consumer)] {
        let verified = side.ok(Method::POST, "/v3/audit/verify", Some(&json!({}))).await;
        assert_eq!(verified["intact"], true, "{name}'s audit log: {verified:#}");
    }
    // The replicas stop before their databases are dropped.
    drop((providers, consumers));
    drop((provider_db, consumer_db));
}
