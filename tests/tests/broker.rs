//! A broker over real hospital connectors: it crawls with its own identity, so it sees and serves only what each
//! hospital's access policies let it see; search, facets, SPARQL and the nested DSP federation catalogue answer
//! from what it crawled; a recrawl replaces a hospital's catalogue whole; a hospital that goes away keeps its last
//! catalogue while the broker backs off.

use std::collections::{BTreeMap, BTreeSet};

use hanse::testing::backends;
use hanse_tests::*;
use serde_json::{Value, json};

const HEAL: &str = "http://publications.europa.eu/resource/authority/data-theme/HEAL";
const DIABETES: &str = "http://purl.bioontology.org/ontology/ICD10/E11";
const CARDIO: &str = "http://purl.bioontology.org/ontology/ICD10/I50";

/// A HealthDCAT-AP dataset with its typical age range, size and health category.
fn dataset(id: &str, title: &str, keywords: &[&str], ages: (u32, u32), records: u64, category: &str) -> Value {
    json!({
        "@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"},
        "@id": id,
        "properties": {
            "name": id, "title": title, "description": format!("{title}: synthetic EHR extract"),
            "keyword": keywords, "numberOfRecords": records, "minTypicalAge": ages.0, "maxTypicalAge": ages.1,
            "theme": HEAL, "healthCategory": category
        },
        "dataAddress": {"type": "HttpData", "baseUrl": format!("https://ehr.hospital.example/{id}")}
    })
}

/// Offers each dataset under an access policy: open, or only to `members`.
async fn publish(api: &Management, datasets: &[(Value, Option<&[String]>)]) {
    api.create("/management/v3/policydefinitions", policy_definition("open", open_policy())).await;
    for (i, (asset, members)) in datasets.iter().enumerate() {
        let id = asset["@id"].as_str().unwrap();
        api.create("/management/v3/assets", asset.clone()).await;
        let access = match members {
            None => "open".to_owned(),
            Some(members) => {
                let policy = format!("members-{i}");
                api.create("/management/v3/policydefinitions", policy_definition(&policy, json!({
                    "@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
                    "permission": [{"action": "use", "constraint": [{"leftOperand": "recipient", "operator": "isAnyOf", "rightOperand": members}]}]}))).await;
                policy
            }
        };
        api.create(
            "/management/v3/contractdefinitions",
            contract_definition(&format!("offer-{id}"), &access, "open", &[id]),
        )
        .await;
    }
}

/// A GET with a self-issued token of `caller` for the broker.
async fn broker_get(client: &reqwest::Client, broker: &TestConnector, caller: &dyn Signer, path: &str) -> Answer {
    dsp_get(client, &format!("{}{path}", broker.public_url()), Some(caller)).await
}

fn hit_ids(answer: &Answer) -> BTreeSet<String> {
    answer.body["results"].as_array().unwrap().iter().map(|h| h["datasetId"].as_str().unwrap().to_owned()).collect()
}

fn ids(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_serves_only_what_it_may_see_through_search_sparql_and_a_nested_dsp_catalogue() {
    let available = backends();
    let client = reqwest::Client::new();
    // The first hospital describes itself to Gaia-X (headquarters in Germany): its publisher country is known.
    let north = TestConnector::start_with(available[0], |config| {
        config.gaiax = Some(gaiax_config(&config.participant.key_file));
    })
    .await;
    let south = TestConnector::start(available[1 % available.len()]).await;
    let east = TestConnector::start(available[0]).await;
    let broker = TestConnector::start_with(available[1 % available.len()], |config| {
        config.broker.enabled = true;
        // Crawls are started by hand here.
        config.broker.crawl_interval_seconds = 3600;
        config.peers.exchange_interval_seconds = 0;
    })
    .await;
    let researcher = TestParticipant::start().await;
    let (broker_did, south_did) = (broker.participant_id().to_owned(), south.participant_id().to_owned());

    publish(
        &Management::of(&north, &client),
        &[
            (
                dataset(
                    "t2d-adults",
                    "Type 2 diabetes adults cohort",
                    &["diabetes", "adults"],
                    (18, 90),
                    1200,
                    DIABETES,
                ),
                None,
            ),
            // For the south hospital only: the broker must never see it.
            (
                dataset("t2d-genomics", "Diabetes genomics", &["diabetes", "genomics"], (18, 80), 300, DIABETES),
                Some(std::slice::from_ref(&south_did)),
            ),
        ],
    )
    .await;
    publish(
        &Management::of(&south, &client),
        &[(
            dataset(
                "paediatric-diabetes",
                "Paediatric diabetes registry",
                &["diabetes", "children"],
                (0, 17),
                300,
                DIABETES,
            ),
            None,
        )],
    )
    .await;
    publish(
        &Management::of(&east, &client),
        &[
            (dataset("heart-failure", "Heart failure registry", &["cardiology"], (40, 99), 50_000, CARDIO), None),
            // Members only, and the broker is a member: it may see and show it.
            (
                dataset(
                    "diabetes-elderly",
                    "Diabetes in the elderly",
                    &["diabetes", "elderly"],
                    (65, 99),
                    80,
                    DIABETES,
                ),
                Some(std::slice::from_ref(&broker_did)),
            ),
        ],
    )
    .await;

    let api = Management::of(&broker, &client);
    for hospital in [&north, &south] {
        let added = api.post("/management/v3/peers", &json!({"did": hospital.participant_id()})).await;
        assert_eq!(added.status, 201, "{:#}", added.body);
    }
    let added = api.post("/management/v3/peers", &json!({"url": east.public_url()})).await;
    assert_eq!(added.status, 201, "{:#}", added.body);

    let crawled = api.post("/management/v3/broker/crawl", &json!({})).await;
    assert_eq!(crawled.status, 200, "{:#}", crawled.body);
    let status: Vec<(String, u64, Value)> = crawled
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["did"].as_str().unwrap().to_owned(), s["datasets"].as_u64().unwrap(), s["error"].clone()))
        .collect();
    let mut expected = vec![
        (north.participant_id().to_owned(), 1, Value::Null),
        (south_did.clone(), 1, Value::Null),
        (east.participant_id().to_owned(), 2, Value::Null),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(status, expected, "one dataset of the north (the other is not for the broker), one, two");

    // Search: only with a token; words must all occur; facets count what matched.
    assert_eq!(
        client.get(format!("{}/broker/search?q=diabetes", broker.public_url())).send().await.unwrap().status(),
        401
    );
    let diabetes = broker_get(&client, &broker, &researcher, "/broker/search?q=diabetes").await;
    assert_eq!(diabetes.status, 200, "{:#}", diabetes.body);
    assert_eq!(hit_ids(&diabetes), ids(&["t2d-adults", "paediatric-diabetes", "diabetes-elderly"]));
    assert_eq!(diabetes.body["total"], 3);
    let facets = &diabetes.body["facets"];
    assert_eq!(facets["theme"], json!({HEAL: 3}));
    assert_eq!(facets["healthCategory"], json!({DIABETES: 3}));
    assert_eq!(facets["publisherCountry"], json!({"DE": 1}));
    assert_eq!(facets["ageRange"], json!({"0-17": 1, "18-64": 1, "65+": 2}));
    assert_eq!(facets["numberOfRecords"], json!({"<100": 1, "100-999": 1, "1000-9999": 1}));
    let north_hit =
        diabetes.body["results"].as_array().unwrap().iter().find(|h| h["datasetId"] == "t2d-adults").unwrap();
    assert_eq!(north_hit["participantId"], north.participant_id(), "the broker points at the dataset's own connector");
    assert_eq!(north_hit["endpoint"], format!("{}/protocol/2025-1", north.public_url()));
    assert!(
        north_hit["dataset"]["hasPolicy"][0]["@id"].as_str().is_some(),
        "the offer to negotiate for: {north_hit:#}"
    );

    for (query, expected) in [
        ("q=diabetes,+adults", vec!["t2d-adults"]),
        ("q=diabetes&minAge=18&maxAge=64", vec!["t2d-adults"]),
        ("q=diabetes&minAge=70", vec!["t2d-adults", "diabetes-elderly"]),
        ("minRecords=1000", vec!["t2d-adults", "heart-failure"]),
        ("country=DE", vec!["t2d-adults"]),
        (&format!("healthCategory={}", urlencode(CARDIO)), vec!["heart-failure"]),
        (&format!("theme={}&q=registry", urlencode(HEAL)), vec!["paediatric-diabetes", "heart-failure"]),
        ("q=genomics", vec![]),
    ] {
        let answer = broker_get(&client, &broker, &researcher, &format!("/broker/search?{query}")).await;
        assert_eq!(answer.status, 200, "{query}: {:#}", answer.body);
        assert_eq!(hit_ids(&answer), ids(&expected), "{query}");
    }
    for bad in ["minAge=-1", "limit=0", "minRecords=10&maxRecords=5", "colour=blue"] {
        let answer = broker_get(&client, &broker, &researcher, &format!("/broker/search?{bad}")).await;
        assert_eq!(answer.status, 400, "{bad}: {:#}", answer.body);
    }
    // A consumer asks the broker through its own management API, with its own identity.
    let through_south = Management::of(&south, &client)
        .get(&format!("/management/v3/search?broker={}&q=diabetes&maxAge=17", urlencode(&broker.public_url())))
        .await;
    assert_eq!(through_south.status, 200, "{:#}", through_south.body);
    assert_eq!(hit_ids(&through_south), ids(&["paediatric-diabetes"]));
    // A connector that is not a broker says so.
    assert_eq!(Management::of(&south, &client).get("/management/v3/search?q=x").await.status, 404);

    // SPARQL over every hospital's graph: one named graph each; updates are refused.
    let sparql = |query: &str| format!("/broker/sparql?query={}", urlencode(query));
    let datasets = broker_get(&client, &broker, &researcher, &sparql("SELECT ?d WHERE { ?d a dcat:Dataset }")).await;
    assert_eq!(datasets.status, 200, "{:#}", datasets.body);
    let iris: BTreeSet<String> = datasets.body["results"]["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["d"]["value"].as_str().unwrap().to_owned())
        .collect();
    let iri =
        |hospital: &TestConnector, id: &str| format!("{}/protocol/2025-1/catalog/datasets/{id}", hospital.public_url());
    assert_eq!(
        iris,
        BTreeSet::from([
            iri(&north, "t2d-adults"),
            iri(&south, "paediatric-diabetes"),
            iri(&east, "heart-failure"),
            iri(&east, "diabetes-elderly")
        ])
    );
    let graphs = broker_get(
        &client,
        &broker,
        &researcher,
        &sparql("SELECT (COUNT(DISTINCT ?g) AS ?n) WHERE { GRAPH ?g { ?d a dcat:Dataset } }"),
    )
    .await;
    assert_eq!(graphs.body["results"]["bindings"][0]["n"]["value"], "3");
    let large = broker_get(
        &client,
        &broker,
        &researcher,
        &sparql("SELECT ?d WHERE { ?d healthdcatap:numberOfRecords ?n FILTER(?n >= 1000) }"),
    )
    .await;
    assert_eq!(large.body["results"]["bindings"].as_array().unwrap().len(), 2, "{:#}", large.body);
    let update = broker_get(&client, &broker, &researcher, &sparql("DELETE WHERE { ?s ?p ?o }")).await;
    assert_eq!(update.status, 400, "{:#}", update.body);

    // The federation catalogue: a DSP Catalog with one nested catalogue per hospital, valid by the official schema,
    // paged with Link headers; every dataset on exactly one page.
    let catalog_url = format!("{}/broker/catalog/request", broker.public_url());
    let request = catalog_request(json!([]));
    let whole = dsp_post(&client, &catalog_url, Some(&researcher), &request).await;
    assert_eq!(whole.status, 200, "{:#}", whole.body);
    assert_valid_dsp(&whole.body);
    // Its @id is an IRI that answers the same catalogue.
    let id = whole.body["@id"].as_str().unwrap().to_owned();
    assert_eq!(id, format!("{}/broker/catalog", broker.public_url()));
    let dereferenced = dsp_get(&client, &id, Some(&researcher)).await;
    assert_eq!((dereferenced.status, &dereferenced.body), (200, &whole.body));
    let nested = whole.body["catalog"].as_array().unwrap();
    let participants: BTreeSet<&str> = nested.iter().map(|c| c["participantId"].as_str().unwrap()).collect();
    assert_eq!(participants, BTreeSet::from([north.participant_id(), south_did.as_str(), east.participant_id()]));
    let mut paged = Vec::new();
    let mut url = format!("{catalog_url}?limit=1");
    loop {
        let page = dsp_post(&client, &url, Some(&researcher), &request).await;
        assert_eq!(page.status, 200, "{:#}", page.body);
        assert_valid_dsp(&page.body);
        for catalog in page.body["catalog"].as_array().unwrap() {
            for dataset in catalog["dataset"].as_array().unwrap() {
                paged.push(dataset["@id"].as_str().unwrap().to_owned());
            }
        }
        match page.headers.get("link").and_then(|l| hanse::dsp::client::next_link(l.to_str().unwrap())) {
            Some(next) => {
                assert!(!next.contains("after=&") && !next.ends_with("after="), "an empty parameter in {next}");
                url = next
            }
            None => break,
        }
    }
    paged.sort();
    assert_eq!(paged, vec!["diabetes-elderly", "heart-failure", "paediatric-diabetes", "t2d-adults"]);
    let filtered =
        dsp_post(&client, &catalog_url, Some(&researcher), &catalog_request(json!([{"keyword": "registry"}]))).await;
    assert_valid_dsp(&filtered.body);
    assert_eq!(filtered.body["catalog"].as_array().unwrap().len(), 2);
    // A DSP keyword is sought whole, spaces and all, like the catalogue's own keyword filter; a part of a word matches.
    let nested_ids = |answer: &Answer| -> Vec<String> {
        // No nested catalogue when nothing matches.
        let catalogs = answer.body["catalog"].as_array().map(Vec::as_slice).unwrap_or_default();
        let datasets = catalogs.iter().flat_map(|c| c["dataset"].as_array().expect("datasets"));
        datasets.map(|d| d["@id"].as_str().unwrap().to_owned()).collect()
    };
    for (keyword, found) in
        [("heart failure", vec!["heart-failure"]), ("registry failure", vec![]), ("ailur", vec!["heart-failure"])]
    {
        let answer =
            dsp_post(&client, &catalog_url, Some(&researcher), &catalog_request(json!([{"keyword": keyword}]))).await;
        assert_eq!(answer.status, 200, "{keyword}: {:#}", answer.body);
        assert_eq!(nested_ids(&answer), found, "{keyword}: {:#}", answer.body);
    }
    let by_property = dsp_post(
        &client,
        &catalog_url,
        Some(&researcher),
        &catalog_request(json!([{"property": "dct:spatial", "value": "x"}])),
    )
    .await;
    assert_eq!(by_property.status, 400);
    assert_eq!(by_property.body["@type"], "CatalogError");
    assert_eq!(dsp_post(&client, &catalog_url, None, &request).await.status, 401);

    // A recrawl replaces a catalogue whole: the east hospital withdraws its registry. A catalogue that is the same as
    // last time is left as it is: its last change stays that of the first crawl.
    let changes = |body: &Value| -> BTreeMap<String, i64> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|s| (s["did"].as_str().unwrap().to_owned(), s["lastChange"].as_i64().unwrap()))
            .collect()
    };
    let before = changes(&api.get("/management/v3/broker/crawls").await.body);
    let east_api = Management::of(&east, &client);
    assert_eq!(east_api.delete("/management/v3/contractdefinitions/offer-heart-failure").await.status, 204);
    let recrawled = api.post("/management/v3/broker/crawl", &json!({})).await;
    let after = changes(&recrawled.body);
    assert!(before.values().all(|&at| at > 0), "{before:?}");
    assert_eq!(after[north.participant_id()], before[north.participant_id()], "{:#}", recrawled.body);
    assert!(after[east.participant_id()] > before[east.participant_id()], "{:#}", recrawled.body);
    let cardiology = broker_get(&client, &broker, &researcher, "/broker/search?q=registry").await;
    assert_eq!(hit_ids(&cardiology), ids(&["paediatric-diabetes"]));
    let left = broker_get(&client, &broker, &researcher, &sparql("SELECT ?d WHERE { ?d a dcat:Dataset }")).await;
    assert_eq!(
        left.body["results"]["bindings"].as_array().unwrap().len(),
        3,
        "the withdrawn dataset's triples are gone"
    );

    // A restarted broker answers at once from the catalogues it kept, crawling none of them before they are due.
    let kept = api.get("/management/v3/broker/crawls").await.body;
    let broker = broker.restart().await;
    let api = Management::of(&broker, &client);
    let mut restored = Value::Null;
    until("the kept catalogues to be restored", async || {
        restored = api.get("/management/v3/broker/crawls").await.body;
        restored.as_array().is_some_and(|s| s.len() == 3)
    })
    .await;
    let summary = |body: &Value| -> BTreeMap<String, (Value, Value, Value)> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let did = s["did"].as_str().unwrap().to_owned();
                (did, (s["datasets"].clone(), s["lastSuccess"].clone(), s["lastChange"].clone()))
            })
            .collect()
    };
    assert_eq!(summary(&restored), summary(&kept), "{restored:#}");
    let cardiology = broker_get(&client, &broker, &researcher, "/broker/search?q=registry").await;
    assert_eq!(hit_ids(&cardiology), ids(&["paediatric-diabetes"]));
    let left = broker_get(&client, &broker, &researcher, &sparql("SELECT ?d WHERE { ?d a dcat:Dataset }")).await;
    assert_eq!(left.body["results"]["bindings"].as_array().unwrap().len(), 3);

    // A hospital that goes away: the crawl fails and says why, the broker keeps its last catalogue and backs off.
    let south_public = south.public_url();
    south.running.shutdown().await;
    let crawled = api.post("/management/v3/broker/crawl", &json!({})).await;
    let south_status =
        crawled.body.as_array().unwrap().iter().find(|s| s["did"] == south_did.as_str()).unwrap().clone();
    assert_eq!(south_status["failures"], 1, "{south_status:#}");
    assert!(south_status["error"].as_str().unwrap().contains(&south_public), "{south_status:#}");
    assert!(south_status["nextDue"].as_i64().unwrap() > south_status["lastAttempt"].as_i64().unwrap());
    let still = broker_get(&client, &broker, &researcher, "/broker/search?q=paediatric").await;
    assert_eq!(hit_ids(&still), ids(&["paediatric-diabetes"]));
    // The peer exchange then finds it unreachable: the next crawl skips it and its status says so, since when and why,
    // instead of its last good crawl.
    api.post("/management/v3/peers/exchange", &json!({})).await;
    let peers = api.get("/management/v3/peers").await;
    let south_peer = peers.body.as_array().unwrap().iter().find(|p| p["did"] == south_did.as_str()).cloned();
    assert_eq!(south_peer.as_ref().map(|p| p["status"].clone()), Some(json!("unreachable")), "{:#}", peers.body);
    let crawled = api.post("/management/v3/broker/crawl", &json!({})).await;
    let south_status =
        crawled.body.as_array().unwrap().iter().find(|s| s["did"] == south_did.as_str()).unwrap().clone();
    assert_eq!(south_status["skipped"], "unreachable", "{south_status:#}");
    assert!(south_status["skippedSince"].as_i64().unwrap() > 0, "{south_status:#}");
    assert!(south_status["error"].as_str().is_some_and(|e| !e.is_empty()), "{south_status:#}");

    for connector in [north, east, broker] {
        connector.running.shutdown().await;
    }
}

fn urlencode(value: &str) -> String {
    hanse::catalog::rdf::encode(value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_on_disk_without_rocksdb_refuses_to_start_and_says_why() {
    if hanse::broker::GRAPH_ON_DISK {
        // Built with RocksDB: the graph folder is a valid choice (the other tests cover the broker).
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, mut config, public, management) = hanse::testing::initialised(dir.path()).await;
    config.broker.enabled = true;
    config.broker.graph_dir = Some(dir.path().join("graph"));
    let error = hanse::server::start_on(config, public, management).await.err().expect("the start is refused");
    let message = error.to_string();
    assert!(message.contains("broker.graph_dir") && message.contains("--features rocksdb"), "{message}");
}

/// What a broker answers of its federation: search hits, datasets with their titles, and the triples counted.
async fn federation_answers(client: &reqwest::Client, broker: &TestConnector, caller: &dyn Signer) -> [String; 3] {
    let sparql = |query: &str| format!("/broker/sparql?query={}", urlencode(query));
    let hits = broker_get(client, broker, caller, "/broker/search?q=cohort").await;
    assert_eq!(hits.status, 200, "{:#}", hits.body);
    let titles = broker_get(
        client,
        broker,
        caller,
        &sparql("SELECT ?d ?t WHERE { ?d a dcat:Dataset ; dct:title ?t } ORDER BY ?d"),
    )
    .await;
    let count = broker_get(client, broker, caller, &sparql("SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }")).await;
    [
        format!("{:?}", hit_ids(&hits)),
        titles.body["results"]["bindings"].to_string(),
        count.body["results"]["bindings"][0]["n"]["value"].to_string(),
    ]
}

/// Restarts the broker with its graph in `graph_dir`, and waits until it took back what its store kept.
async fn restart_broker(mut broker: TestConnector, graph_dir: &std::path::Path) -> (TestConnector, Restored) {
    broker.config.broker.graph_dir = Some(graph_dir.to_owned());
    let broker = broker.restart().await;
    let mut restored = None;
    until("the kept catalogues to be taken back", async || {
        restored = broker.running.state.broker.as_ref().unwrap().restored();
        restored.is_some()
    })
    .await;
    (broker, restored.unwrap())
}

use hanse::broker::Restored;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_graph_kept_on_disk_is_taken_back_as_it_was_and_only_what_changed_is_read_again() {
    if !hanse::broker::GRAPH_ON_DISK {
        return;
    }
    for backend in backends() {
        let client = reqwest::Client::new();
        let (north, east) = (TestConnector::start(backend).await, TestConnector::start(backend).await);
        for (hospital, prefix) in [(&north, "north"), (&east, "east")] {
            let datasets: Vec<(Value, Option<&[String]>)> = (0..3)
                .map(|i| {
                    let id = format!("{prefix}-{i}");
                    (dataset(&id, &format!("Cohort {prefix} {i}"), &["diabetes"], (18, 90), 100, DIABETES), None)
                })
                .collect();
            publish(&Management::of(hospital, &client), &datasets).await;
        }
        let broker = TestConnector::start_with(backend, |config| {
            config.broker.enabled = true;
            config.broker.crawl_interval_seconds = 3600;
            config.peers.exchange_interval_seconds = 0;
        })
        .await;
        let researcher = TestParticipant::start().await;
        let api = Management::of(&broker, &client);
        for hospital in [&north, &east] {
            let added = api.post("/management/v3/peers", &json!({"did": hospital.participant_id()})).await;
            assert_eq!(added.status, 201, "{:#}", added.body);
        }
        let crawled = api.post("/management/v3/broker/crawl", &json!({})).await;
        assert!(crawled.body.as_array().is_some_and(|s| s.iter().all(|s| s["datasets"] == 3)), "{:#}", crawled.body);
        let graph_dir = broker.dir().join("broker-graph");
        let label = format!("{backend:?}");

        // The first start with a graph on disk reads every kept catalogue into it; the next keeps it and only makes
        // the index, from the graph's quads, with the same answers.
        let (broker, restored) = restart_broker(broker, &graph_dir).await;
        assert_eq!(restored, Restored { resumed: 0, read: 2, dropped: 0 }, "{label}");
        let read = federation_answers(&client, &broker, &researcher).await;
        assert!(read[0].contains("north-2") && read[0].contains("east-0"), "{label}: {}", read[0]);
        let (broker, restored) = restart_broker(broker, &graph_dir).await;
        assert_eq!(restored, Restored { resumed: 2, read: 0, dropped: 0 }, "{label}");
        assert_eq!(federation_answers(&client, &broker, &researcher).await, read, "{label}");

        // A crawl that finds a catalogue changed rewrites its graph and records that: it is kept at the next start.
        let east_api = Management::of(&east, &client);
        east_api
            .create("/management/v3/assets", dataset("east-9", "Cohort east 9", &["diabetes"], (18, 90), 7, DIABETES))
            .await;
        east_api
            .create(
                "/management/v3/contractdefinitions",
                contract_definition("offer-east-9", "open", "open", &["east-9"]),
            )
            .await;
        Management::of(&broker, &client).post("/management/v3/broker/crawl", &json!({})).await;
        let crawled = federation_answers(&client, &broker, &researcher).await;
        assert!(crawled[0].contains("east-9"), "{label}: {}", crawled[0]);
        let (broker, restored) = restart_broker(broker, &graph_dir).await;
        assert_eq!(restored, Restored { resumed: 2, read: 0, dropped: 0 }, "{label}");
        assert_eq!(federation_answers(&client, &broker, &researcher).await, crawled, "{label}");

        // The store keeps a crawl the graph does not hold (as when a broker stops between the two): that catalogue
        // is read again, and the graph answers as the store's catalogue says.
        let peers = &broker.running.state.store.peers;
        let mut kept = peers.kept_catalog(north.participant_id()).await.unwrap().unwrap();
        let mut catalog: Value = serde_json::from_str(&kept.catalog).unwrap();
        catalog["dataset"].as_array_mut().unwrap().retain(|d| d["@id"] != "north-1");
        kept.digest = hanse::broker::digest(&kept.address, kept.country.as_deref(), &catalog);
        kept.catalog = catalog.to_string();
        assert!(peers.keep_catalog(&kept).await.unwrap());
        let (broker, restored) = restart_broker(broker, &graph_dir).await;
        assert_eq!(restored, Restored { resumed: 1, read: 1, dropped: 0 }, "{label}");
        let narrowed = federation_answers(&client, &broker, &researcher).await;
        assert!(!narrowed[0].contains("north-1") && !narrowed[1].contains("north-1"), "{label}: {narrowed:?}");
        assert!(narrowed[0].contains("north-2") && narrowed[1].contains("north-2"), "{label}: {narrowed:?}");
        assert_ne!(narrowed[2], crawled[2], "{label}: the withdrawn dataset's triples are gone");

        // A peer the store no longer keeps (nor knows) has its graph dropped; without the state file, every kept
        // catalogue is read again into a cleared graph.
        let peers = &broker.running.state.store.peers;
        peers.forget_catalog(north.participant_id()).await.unwrap();
        peers.remove_peer(north.participant_id()).await.unwrap();
        let (broker, restored) = restart_broker(broker, &graph_dir).await;
        assert_eq!(restored, Restored { resumed: 1, read: 0, dropped: 1 }, "{label}");
        let east_only = federation_answers(&client, &broker, &researcher).await;
        assert!(!east_only[1].contains("north-") && east_only[1].contains("east-9"), "{label}: {east_only:?}");
        std::fs::remove_file(graph_dir.join(hanse::broker::STATE_FILE)).unwrap();
        let (broker, restored) = restart_broker(broker, &graph_dir).await;
        assert_eq!(restored, Restored { resumed: 0, read: 1, dropped: 0 }, "{label}");
        assert_eq!(federation_answers(&client, &broker, &researcher).await, east_only, "{label}");

        for connector in [north, east, broker] {
            connector.running.shutdown().await;
        }
    }
}
