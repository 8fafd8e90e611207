//! Crash safety: kill the provider process (SIGKILL, no graceful stop) while 200 negotiations are in flight, start it
//! again on the same store, and every negotiation still ends FINALIZED or TERMINATED — the same on both sides, none
//! lost, none duplicated. Runs with the provider on SQLite and on PostgreSQL.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hanse::testing::{Backend, TestDatabase, backends};
use serde_json::{Value, json};

mod support;
use support::{Node, post};

const NEGOTIATIONS: usize = 200;

async fn negotiations(client: &reqwest::Client, node: &Node) -> Vec<Value> {
    post(client, node, "/v3/contractnegotiations/request", json!({"limit": 10000})).await.as_array().unwrap().clone()
}

fn terminal(n: &Value) -> bool {
    n["state"] == "FINALIZED" || n["state"] == "TERMINATED"
}

async fn crash_scenario(provider_backend: Backend) {
    let database = TestDatabase::new(provider_backend);
    let mut provider = Node::init();
    provider.use_database(&database);
    let mut consumer = Node::init();
    provider.start().await;
    consumer.start().await;
    let client = reqwest::Client::new();
    let offer = support::open_offer(&client, &provider, &consumer).await;

    // 200 negotiations, started in parallel batches; the provider dies while they are in flight.
    let mut ids = Vec::new();
    for batch in 0..(NEGOTIATIONS / 25) {
        let mut started = Vec::new();
        for _ in 0..25 {
            let body = json!({"counterPartyAddress": provider.protocol(), "counterPartyId": provider.participant,
                              "protocol": "dataspace-protocol-http:2025-1", "policy": offer});
            let (client, consumer_url, key) = (client.clone(), consumer.management(), consumer.api_key.clone());
            started.push(tokio::spawn(async move {
                let answer: Value = client
                    .post(format!("{consumer_url}/v3/contractnegotiations"))
                    .header("X-Api-Key", key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                answer["@id"].as_str().unwrap().to_owned()
            }));
        }
        for id in started {
            ids.push(id.await.unwrap());
        }
        if batch == NEGOTIATIONS / 25 / 2 {
            let in_flight = negotiations(&client, &consumer).await.iter().filter(|n| !terminal(n)).count();
            provider.kill();
            assert!(in_flight > 0, "the provider must die with negotiations in flight");
            eprintln!("{provider_backend:?}: provider killed with {in_flight} negotiations in flight");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    provider.start().await;

    // Everything settles.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (on_consumer, on_provider) = loop {
        let on_consumer = negotiations(&client, &consumer).await;
        let on_provider = negotiations(&client, &provider).await;
        if on_consumer.len() == NEGOTIATIONS && on_consumer.iter().all(terminal) && on_provider.iter().all(terminal) {
            break (on_consumer, on_provider);
        }
        assert!(
            Instant::now() < deadline,
            "{:?}: not settled after 90 s: consumer {:?}, provider {:?}",
            provider_backend,
            on_consumer.iter().filter(|n| !terminal(n)).map(|n| n["state"].clone()).collect::<Vec<_>>(),
            on_provider.iter().filter(|n| !terminal(n)).map(|n| n["state"].clone()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut consumer_ids: Vec<&str> = on_consumer.iter().map(|n| n["@id"].as_str().unwrap()).collect();
    consumer_ids.sort();
    ids.sort();
    assert_eq!(consumer_ids, ids.iter().map(String::as_str).collect::<Vec<_>>(), "none lost on the consumer");
    // None duplicated on the provider: one negotiation per consumer negotiation, in the same final state.
    let by_consumer_pid: HashMap<&str, &Value> =
        on_provider.iter().map(|n| (n["correlationId"].as_str().unwrap(), n)).collect();
    assert_eq!(
        by_consumer_pid.len(),
        on_provider.len(),
        "{provider_backend:?}: a consumer negotiation appears twice on the provider"
    );
    let mut finalized = 0;
    for negotiation in &on_consumer {
        let id = negotiation["@id"].as_str().unwrap();
        match by_consumer_pid.get(id) {
            Some(theirs) => {
                assert_eq!(
                    theirs["state"], negotiation["state"],
                    "{provider_backend:?}: {id} differs between the sides"
                );
                if negotiation["state"] == "FINALIZED" {
                    assert_eq!(theirs["contractAgreementId"], negotiation["contractAgreementId"]);
                    finalized += 1;
                }
            }
            // The provider never received it: the consumer gave up, and says so.
            None => assert_eq!(
                negotiation["state"], "TERMINATED",
                "{provider_backend:?}: {id} finalized without a provider negotiation"
            ),
        }
    }
    assert!(finalized > NEGOTIATIONS / 2, "{provider_backend:?}: only {finalized} of {NEGOTIATIONS} finalized");
    eprintln!(
        "{provider_backend:?}: {finalized} finalized, {} terminated, {} known to the provider",
        NEGOTIATIONS - finalized,
        on_provider.len()
    );
    drop(database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_provider_mid_flight_loses_and_duplicates_nothing() {
    for backend in backends() {
        crash_scenario(backend).await;
    }
}

/// What a node's catalogue graph answers over SPARQL: every named graph with its size, and every dataset with its
/// title and period.
#[cfg(feature = "rocksdb")]
async fn graph_answers(client: &reqwest::Client, node: &Node) -> Vec<Value> {
    let mut answers = Vec::new();
    for query in [
        "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g ORDER BY ?g",
        "SELECT ?id ?title ?start WHERE { ?d dct:identifier ?id ; dct:title ?title . \
         OPTIONAL { ?d dct:temporal [ dcat:startDate ?start ] } } ORDER BY ?id ?title ?start",
    ] {
        let url = format!("{}/sparql", node.management());
        let results = hanse::testing::sparql(client, &url, &node.api_key, query).await;
        answers.push(results["results"]["bindings"].clone());
    }
    answers
}

#[cfg(feature = "rocksdb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connector_resumes_its_catalogue_graph_on_disk_with_every_change_it_wrote() {
    for backend in backends() {
        let database = TestDatabase::new(backend);
        let mut node = Node::init();
        node.use_database(&database);
        let graph_dir = node.dir.path().join("catalogue-graph");
        node.env.push(("HANSE_CATALOG_GRAPH_DIR".into(), graph_dir.display().to_string()));
        node.start().await;
        let client = reqwest::Client::new();
        let open =
            json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [{"action": "use"}]});
        post(&client, &node, "/v3/policydefinitions", json!({"@id": "open", "policy": open})).await;
        let definition =
            json!({"@id": "cd", "accessPolicyId": "open", "contractPolicyId": "open", "assetsSelector": []});
        post(&client, &node, "/v3/contractdefinitions", definition).await;
        let asset = |i: usize, title: &str| {
            json!({"@id": format!("cohort-{i:02}"), "properties": {"title": title,
                "dct:temporal": {"@type": "dct:PeriodOfTime", "dcat:startDate": format!("20{i:02}-01-01")}},
                "dataAddress": {"type": "HttpData", "baseUrl": format!("https://ehr.example/{i}")}})
        };
        // Past the interval at which the graph records how far it follows: the next write records the definition as
        // in the graph, and what follows is written after that record.
        tokio::time::sleep(Duration::from_millis(5_500)).await;
        for i in 0..20 {
            post(&client, &node, "/v3/assets", asset(i, &format!("Cohort {i}"))).await;
        }
        let renamed = client
            .put(format!("{}/v3/assets", node.management()))
            .header("X-Api-Key", &node.api_key)
            .json(&asset(3, "Renamed cohort"))
            .send()
            .await
            .unwrap();
        assert_eq!(renamed.status(), 204);
        let deleted = client
            .delete(format!("{}/v3/assets/cohort-07", node.management()))
            .header("X-Api-Key", &node.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 204);
        // SIGKILL right after the writes: no flush, no record of them.
        node.kill();
        node.start().await;
        let resumed = graph_answers(&client, &node).await;
        assert_eq!(resumed[1].as_array().map(Vec::len), Some(19), "{backend:?}: {:#}", resumed[1]);
        assert!(resumed[1].to_string().contains("Renamed cohort"), "{backend:?}");
        // What the same store gives a graph built in memory from nothing.
        node.stop();
        node.env.retain(|(key, _)| key != "HANSE_CATALOG_GRAPH_DIR");
        node.start().await;
        assert_eq!(graph_answers(&client, &node).await, resumed, "{backend:?}");
        node.stop();
        drop(database);
    }
}
