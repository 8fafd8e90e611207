//! The DSP 2025-1 catalogue between real connectors: who sees what, the official message schemas, paging, filters,
//! and the RDF catalogue.

use hanse_tests::*;
use serde_json::{Value, json};

/// A hospital with an open dataset and a members-only dataset (the access policy names the members).
async fn hospital_with_two_offers(federation: &Federation, members: &[&str]) {
    let api = federation.management(0);
    api.create(
        "/management/v3/assets",
        health_asset("open-summary", "Diabetes summary statistics", &["diabetes", "summary"], 40),
    )
    .await;
    api.create(
        "/management/v3/assets",
        health_asset("t2d-cohort", "Type 2 diabetes adults cohort", &["diabetes", "adults"], 1200),
    )
    .await;
    api.create("/management/v3/policydefinitions", policy_definition("open", open_policy())).await;
    api.create("/management/v3/policydefinitions", policy_definition("members", json!({
        "@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
        "permission": [{"action": "use", "constraint": [{"leftOperand": "recipient", "operator": "isAnyOf", "rightOperand": members}]}]}))).await;
    api.create("/management/v3/policydefinitions", policy_definition("research-terms", json!({
        "@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
        "permission": [{"action": "use", "constraint": [{"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"}]}],
        "prohibition": [{"action": "distribute"}]}))).await;
    api.create("/management/v3/contractdefinitions", contract_definition("public", "open", "open", &["open-summary"]))
        .await;
    api.create(
        "/management/v3/contractdefinitions",
        contract_definition("members-only", "members", "research-terms", &["t2d-cohort"]),
    )
    .await;
}

fn dataset_ids(catalog: &Value) -> Vec<String> {
    catalog["dataset"]
        .as_array()
        .map(|d| d.iter().map(|d| d["@id"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sees_the_members_dataset_and_a_stranger_does_not() {
    let federation = Federation::with_hospitals(3).await;
    let member = federation.connectors[1].participant_id().to_owned();
    hospital_with_two_offers(&federation, &[&member]).await;
    let provider = format!("{}/protocol/2025-1", federation.connectors[0].public_url());

    // Through each consumer's own management API, as a researcher would.
    let as_member = federation
        .management(1)
        .post(
            "/management/v3/catalog/request",
            &json!({
        "@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "counterPartyAddress": provider,
        "protocol": "dataspace-protocol-http:2025-1"}),
        )
        .await;
    assert_eq!(as_member.status, 200, "{:#}", as_member.body);
    assert_eq!(dataset_ids(&as_member.body), ["open-summary", "t2d-cohort"]);
    let as_stranger = federation
        .management(2)
        .post(
            "/management/v3/catalog/request",
            &json!({
        "counterPartyAddress": federation.connectors[0].public_url(), "protocol": "dataspace-protocol-http:2025-1"}),
        )
        .await;
    assert_eq!(as_stranger.status, 200, "{:#}", as_stranger.body);
    assert_eq!(dataset_ids(&as_stranger.body), ["open-summary"], "found through version discovery, without the cohort");

    // The dataset itself: visible to the member, unknown to the stranger.
    let url = format!("{provider}/catalog/datasets/t2d-cohort");
    let seen = dsp_get(&federation.client, &url, Some(&federation.connectors[1])).await;
    assert_eq!(seen.status, 200);
    assert_valid_dsp(&seen.body);
    let offer = &seen.body["hasPolicy"][0];
    assert_eq!(offer["@type"], "Offer");
    assert!(offer.get("target").is_none(), "offers in a catalogue carry no target");
    assert_eq!(offer["prohibition"][0]["action"], "distribute");
    let hidden = dsp_get(&federation.client, &url, Some(&federation.connectors[2])).await;
    assert_eq!(hidden.status, 404);
    assert_valid_dsp(&hidden.body);
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_catalogue_message_validates_against_the_official_schemas() {
    let federation = Federation::with_hospitals(1).await;
    let (member, stranger) = (TestParticipant::start().await, TestParticipant::start().await);
    hospital_with_two_offers(&federation, &[&member.did]).await;
    let base = format!("{}/protocol/2025-1", federation.connectors[0].public_url());
    let client = &federation.client;

    let catalog =
        dsp_post(client, &format!("{base}/catalog/request"), Some(&member), &catalog_request(json!([]))).await;
    assert_eq!(catalog.status, 200);
    assert_valid_dsp(&catalog.body);
    assert_eq!(catalog.body["participantId"], federation.connectors[0].participant_id());
    assert_eq!(catalog.body["service"][0]["endpointURL"], base);
    assert_eq!(catalog.body["dataset"][0]["distribution"][0]["format"], "HttpData-PULL");
    assert_eq!(catalog.body["dataset"][1]["http://healthdataportal.eu/ns/health#numberOfRecords"], 1200);
    assert!(!catalog.body["dataset"][1].to_string().contains("ehr.t2d-cohort"), "private properties never leave");

    // A requester who sees nothing gets a valid, empty catalogue.
    let nothing_visible = federation.management(0);
    nothing_visible.delete("/management/v3/contractdefinitions/public").await;
    let empty =
        dsp_post(client, &format!("{base}/catalog/request"), Some(&stranger), &catalog_request(json!([]))).await;
    assert_eq!(empty.status, 200);
    assert_valid_dsp(&empty.body);
    assert!(empty.body.get("dataset").is_none());

    for (answer, status) in [
        (dsp_post(client, &format!("{base}/catalog/request"), None, &catalog_request(json!([]))).await, 401),
        (
            dsp_post(client, &format!("{base}/catalog/request"), Some(&stranger), &json!({"@type": "Nonsense"})).await,
            400,
        ),
        (
            dsp_post(
                client,
                &format!("{base}/catalog/request"),
                Some(&stranger),
                &catalog_request(json!([{"sql": "DROP TABLE"}])),
            )
            .await,
            400,
        ),
        (dsp_get(client, &format!("{base}/catalog/datasets/nope"), Some(&stranger)).await, 404),
        (dsp_get(client, &format!("{base}/catalog/datasets/t2d-cohort"), None).await, 401),
    ] {
        assert_eq!(answer.status, status, "{:#}", answer.body);
        assert_eq!(answer.body["@type"], "CatalogError");
        assert_valid_dsp(&answer.body);
    }

    for path in ["/.well-known/dspace-version", "/protocol/.well-known/dspace-version"] {
        let version =
            federation.client.get(format!("{}{path}", federation.connectors[0].public_url())).send().await.unwrap();
        let body: Value = version.json().await.unwrap();
        hanse_vocab::schema::DspSchemas::get().validate("common/protocol-version-schema.json", &body).unwrap();
        assert_eq!(body["protocolVersions"][0]["path"], "/protocol/2025-1");
    }
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_filter_is_refused_and_keywords_filter() {
    let federation = Federation::with_hospitals(1).await;
    let member = TestParticipant::start().await;
    hospital_with_two_offers(&federation, &[&member.did]).await;
    let url = format!("{}/protocol/2025-1/catalog/request", federation.connectors[0].public_url());
    let refused = dsp_post(&federation.client, &url, Some(&member), &catalog_request(json!([{"title": "x"}]))).await;
    assert_eq!(refused.status, 400);
    assert!(refused.body["reason"][0].as_str().unwrap().contains("unsupported filter"));
    let adults =
        dsp_post(&federation.client, &url, Some(&member), &catalog_request(json!([{"keyword": "ADULTS"}]))).await;
    assert_eq!(dataset_ids(&adults.body), ["t2d-cohort"]);
    let by_property = dsp_post(
        &federation.client,
        &url,
        Some(&member),
        &catalog_request(json!([{"property": "healthdcatap:numberOfRecords", "value": 40}])),
    )
    .await;
    assert_eq!(dataset_ids(&by_property.body), ["open-summary"]);
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_pages_with_link_headers_and_compresses_on_request() {
    let federation = Federation::with_hospitals(1).await;
    let api = federation.management(0);
    for i in 0..7 {
        api.create("/management/v3/assets", health_asset(&format!("ds-{i}"), &format!("Dataset {i}"), &[], i)).await;
    }
    api.create("/management/v3/policydefinitions", policy_definition("open", open_policy())).await;
    api.create("/management/v3/contractdefinitions", contract_definition("all", "open", "open", &[])).await;
    let reader = TestParticipant::start().await;
    let first = format!("{}/protocol/2025-1/catalog/request?limit=3", federation.connectors[0].public_url());
    let mut url = first.clone();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = dsp_post(&federation.client, &url, Some(&reader), &catalog_request(json!([]))).await;
        assert_valid_dsp(&page.body);
        seen.extend(dataset_ids(&page.body));
        pages += 1;
        let link = page.headers.get("link").map(|l| l.to_str().unwrap().to_owned());
        if pages > 1 {
            assert!(link.as_deref().unwrap_or_default().contains("rel=\"previous\""), "{link:?}");
        }
        match link.as_deref().and_then(hanse::dsp::client::next_link) {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("ds-{i}")).collect::<Vec<_>>());

    // Back from the last page.
    let last = dsp_post(&federation.client, &url, Some(&reader), &catalog_request(json!([]))).await;
    let link = last.headers["link"].to_str().unwrap();
    let previous = link
        .split(',')
        .find(|l| l.contains("previous"))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .trim()
        .trim_matches(['<', '>']);
    let back = dsp_post(&federation.client, previous, Some(&reader), &catalog_request(json!([]))).await;
    assert_eq!(dataset_ids(&back.body), ["ds-3", "ds-4", "ds-5"]);

    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let compressed = raw
        .post(&first)
        .header("Authorization", reader.authorization(&did_of_url(&first)))
        .header("Accept-Encoding", "gzip")
        .json(&catalog_request(json!([])))
        .send()
        .await
        .unwrap();
    assert_eq!(compressed.headers()["content-encoding"], "gzip");
    // A small answer is not worth a compressor on either end.
    let version = format!("{}/.well-known/dspace-version", federation.connectors[0].public_url());
    let small = raw.get(&version).header("Accept-Encoding", "gzip").send().await.unwrap();
    assert_eq!(small.status(), 200);
    assert!(small.headers().get("content-encoding").is_none(), "{:?}", small.headers());
    assert!(small.text().await.unwrap().contains("2025-1"));
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparql_answers_over_the_catalogue_graph_and_refuses_updates() {
    let federation = Federation::with_hospitals(1).await;
    hospital_with_two_offers(&federation, &["did:web:member.example"]).await;
    let api = federation.management(0);
    let sparql = |query: &str, accept: &str| {
        api.client
            .post(format!("{}/management/sparql", api.base))
            .header("X-Api-Key", &api.api_key)
            .header("Content-Type", "application/sparql-query")
            .header("Accept", accept.to_owned())
            .body(query.to_owned())
            .send()
    };
    let select = sparql("SELECT ?id ?records WHERE { ?ds a dcat:Dataset ; dct:identifier ?id ; dcat:keyword \"adults\" ; healthdcatap:numberOfRecords ?records }", "application/sparql-results+json").await.unwrap();
    assert_eq!(select.headers()["content-type"], "application/sparql-results+json");
    let results: Value = select.json().await.unwrap();
    let bindings = results["results"]["bindings"].as_array().unwrap();
    assert_eq!(bindings.len(), 1, "{results:#}");
    assert_eq!(bindings[0]["id"]["value"], "t2d-cohort");
    assert_eq!(bindings[0]["records"]["value"], "1200");

    let ask = sparql("ASK { ?offer a odrl:Offer ; odrl:prohibition ?p }", "").await.unwrap();
    assert_eq!(ask.json::<Value>().await.unwrap()["boolean"], true, "offers are in the graph");

    let construct = sparql("CONSTRUCT { ?ds dct:title ?t } WHERE { ?ds dct:title ?t }", "text/turtle").await.unwrap();
    assert_eq!(construct.headers()["content-type"], "text/turtle");
    assert!(construct.text().await.unwrap().contains("Type 2 diabetes adults cohort"));

    let update = sparql("DELETE WHERE { ?s ?p ?o }", "").await.unwrap();
    assert_eq!(update.status(), 400);
    assert!(update.text().await.unwrap().contains("read-only"));
    let broken = sparql("SELECT WHERE {", "").await.unwrap();
    assert_eq!(broken.status(), 400);
    let unacceptable = sparql("SELECT * WHERE { ?s ?p ?o } LIMIT 1", "text/turtle").await.unwrap();
    assert_eq!(unacceptable.status(), 406);

    // Updating an asset updates the graph in the same code path.
    let mut renamed = health_asset("t2d-cohort", "Renamed cohort", &["adults"], 1200);
    renamed["properties"]["keyword"] = json!(["renamed"]);
    assert_eq!(api.put("/management/v3/assets", &renamed).await.status, 204);
    let after = sparql("SELECT ?t WHERE { ?ds dct:identifier \"t2d-cohort\" ; dct:title ?t }", "").await.unwrap();
    let after: Value = after.json().await.unwrap();
    assert_eq!(after["results"]["bindings"].as_array().unwrap().len(), 1);
    assert_eq!(after["results"]["bindings"][0]["t"]["value"], "Renamed cohort");
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_start_sparql_waits_for_the_whole_graph_and_a_write_lands_in_it_once() {
    const DATASETS: usize = 3000;
    for backend in hanse::testing::backends() {
        let connector = TestConnector::start(backend).await;
        // Stored directly, as a large catalogue a connector starts on.
        let template = hanse::catalog::model::Asset::from_body(
            &health_asset("dataset-0000", "Cohort", &["diabetes"], 100),
            &connector.running.state.catalogue.service.file_root,
        )
        .unwrap();
        let documents: Vec<(String, Value)> = (0..DATASETS)
            .map(|i| {
                let mut expanded = template.expanded.clone();
                expanded["@id"] = json!(format!("dataset-{i:04}"));
                (format!("dataset-{i:04}"), expanded)
            })
            .collect();
        let store = &connector.running.state.store;
        store.documents.insert_documents(hanse::store::DocumentKind::Asset, &documents).await.unwrap();
        let connector = connector.restart().await;
        let client = reqwest::Client::new();
        let api = Management::of(&connector, &client);
        let sparql = async |query: &str| -> Value {
            let response = client
                .post(format!("{}/management/sparql", api.base))
                .header("X-Api-Key", &api.api_key)
                .header("Content-Type", "application/sparql-query")
                .body(query.to_owned())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json().await.unwrap()
        };

        // A query at once waits for the whole graph.
        let count = sparql("SELECT (COUNT(?d) AS ?n) WHERE { ?d a dcat:Dataset }").await;
        assert_eq!(count["results"]["bindings"][0]["n"]["value"], DATASETS.to_string(), "{backend:?}: {count:#}");
        // A write at once: it waits for the build, then replaces the dataset's description, which is there once
        // (its period is a blank node: a description written twice would hold two).
        let mut renamed = health_asset("dataset-0001", "Renamed cohort", &["renamed"], 100);
        renamed["properties"]["dct:temporal"] = json!({"@type": "dct:PeriodOfTime", "dcat:startDate": "2020-01-01"});
        assert_eq!(api.put("/management/v3/assets", &renamed).await.status, 204, "{backend:?}");
        let one = sparql(
            "SELECT ?title ?start WHERE { ?d dct:identifier \"dataset-0001\" ; dct:title ?title ; \
             dct:temporal [ dcat:startDate ?start ] }",
        )
        .await;
        let bindings = one["results"]["bindings"].as_array().unwrap();
        assert_eq!(bindings.len(), 1, "{backend:?}: {one:#}");
        assert_eq!(bindings[0]["title"]["value"], "Renamed cohort");
        connector.running.shutdown().await;
    }
}

/// What a catalogue graph answers, as text to compare: every named graph with its size, the datasets with their
/// titles, periods and offers, and the offers' rules.
async fn graph_answers(api: &Management) -> Vec<String> {
    let queries = [
        "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g ORDER BY ?g",
        "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }",
        "SELECT ?id ?title ?start ?offer WHERE { ?d a dcat:Dataset ; dct:identifier ?id ; dct:title ?title . \
         OPTIONAL { ?d dct:temporal [ dcat:startDate ?start ] } OPTIONAL { ?d odrl:hasPolicy ?offer } } \
         ORDER BY ?id ?title ?start ?offer",
        "SELECT ?offer ?operand ?value WHERE { ?offer a odrl:Offer ; odrl:permission [ odrl:constraint \
         [ odrl:leftOperand ?operand ; odrl:rightOperand ?value ] ] } ORDER BY ?offer ?operand ?value",
        "SELECT ?catalog ?name WHERE { ?catalog a dcat:Catalog ; dct:publisher [ foaf:name ?name ] }",
    ];
    let mut answers = Vec::new();
    for query in queries {
        let url = format!("{}/management/sparql", api.base);
        let results = hanse::testing::sparql(&api.client, &url, &api.api_key, query).await;
        answers.push(format!("{query}\n{:#}", results["results"]["bindings"]));
    }
    answers
}

/// Holds two sets of graph answers equal, showing the first query whose answers differ.
fn same_answers(left: &[String], right: &[String], context: &str) {
    assert_eq!(left.len(), right.len());
    for (l, r) in left.iter().zip(right) {
        if l != r {
            let (l, r): (Vec<&str>, Vec<&str>) = (l.lines().collect(), r.lines().collect());
            let first = l.iter().zip(&r).position(|(a, b)| a != b).unwrap_or(l.len().min(r.len()));
            let from = first.saturating_sub(12);
            panic!(
                "{context}: answers differ for {}\n--- kept:\n{}\n--- anew:\n{}",
                l[0],
                l[from..(first + 12).min(l.len())].join("\n"),
                r[from..(first + 12).min(r.len())].join("\n")
            );
        }
    }
}

/// Restarts `connector` with its catalogue graph in `graph_dir` (on disk) or in memory, and waits for the graph.
async fn restart_with_graph(
    mut connector: hanse::testing::TestConnector,
    graph_dir: Option<&std::path::Path>,
) -> hanse::testing::TestConnector {
    connector.config.catalog.graph_dir = graph_dir.map(std::path::Path::to_path_buf);
    let connector = connector.restart().await;
    assert!(connector.running.state.catalogue.graph_built(std::time::Duration::from_secs(60)), "the graph is ready");
    connector
}

/// A connector on `backend` with an open policy, a contract definition `all` offering every dataset with it, and 30
/// health datasets (`dataset-00` to `dataset-29`); and the folder its catalogue graph is to be kept in.
async fn thirty_datasets(
    backend: hanse::testing::Backend,
    client: &reqwest::Client,
) -> (hanse::testing::TestConnector, std::path::PathBuf) {
    let connector = hanse::testing::TestConnector::start(backend).await;
    let graph_dir = connector.dir().join("catalogue-graph");
    let api = Management::of(&connector, client);
    api.create("/management/v3/policydefinitions", policy_definition("open", open_policy())).await;
    api.create("/management/v3/contractdefinitions", contract_definition("all", "open", "open", &[])).await;
    for i in 0..30 {
        let id = format!("dataset-{i:02}");
        api.create("/management/v3/assets", health_asset(&id, &format!("Cohort {i}"), &["diabetes"], 100 + i)).await;
    }
    (connector, graph_dir)
}

/// What the catalogue's views answer, to compare: every asset through the management API (with when it was created
/// and its private properties), and every page of the DSP catalogue as `reader` sees it.
async fn dataset_answers(
    connector: &hanse::testing::TestConnector,
    client: &reqwest::Client,
    reader: &TestParticipant,
) -> Vec<Value> {
    let api = Management::of(connector, client);
    let query = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "limit": 1000});
    let assets = api.post("/management/v3/assets/request", &query).await;
    assert_eq!(assets.status, 200, "{}", assets.body);
    let mut answers = vec![assets.body];
    let mut url = format!("{}/protocol/2025-1/catalog/request?limit=7", connector.public_url());
    loop {
        let page = dsp_post(client, &url, Some(reader), &catalog_request(json!([]))).await;
        assert_eq!(page.status, 200, "{}", page.body);
        answers.push(page.body);
        match page.headers.get("link").and_then(|l| hanse::dsp::client::next_link(l.to_str().unwrap())) {
            Some(next) => url = next,
            None => break,
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasets_kept_beside_a_graph_on_disk_are_read_back_with_what_changed_meanwhile_and_answer_as_read_anew() {
    use hanse::catalog::DatasetsStart;
    let reader = TestParticipant::start().await;
    for backend in hanse::testing::backends() {
        let client = reqwest::Client::new();
        let (connector, graph_dir) = thirty_datasets(backend, &client).await;
        let first_ten: Vec<String> = (0..10).map(|i| format!("dataset-{i:02}")).collect();
        let first_ten: Vec<&str> = first_ten.iter().map(String::as_str).collect();
        Management::of(&connector, &client)
            .create("/management/v3/contractdefinitions", contract_definition("first-ten", "open", "open", &first_ten))
            .await;
        let start = |connector: &hanse::testing::TestConnector| connector.running.state.catalogue.datasets_start();
        // The first start with a graph on disk reads the store and keeps the datasets; the next reads them back.
        let connector = restart_with_graph(connector, Some(&graph_dir)).await;
        assert_eq!(start(&connector), DatasetsStart::Read, "{backend:?}");
        let read = dataset_answers(&connector, &client, &reader).await;
        assert_eq!(read[0].as_array().map(Vec::len), Some(30), "{backend:?}: {}", read[0]);
        assert_eq!(read.len(), 1 + 5, "{backend:?}: 30 datasets in pages of 7");
        let connector = restart_with_graph(connector, Some(&graph_dir)).await;
        assert_eq!(start(&connector), DatasetsStart::Kept { reread: 0 }, "{backend:?}");
        assert_eq!(dataset_answers(&connector, &client, &reader).await, read, "{backend:?}");

        // Datasets, a definition and a policy change while the file is not followed (the graph is in memory).
        let connector = restart_with_graph(connector, None).await;
        {
            let api = Management::of(&connector, &client);
            let mut renamed = health_asset("dataset-01", "Renamed cohort", &["renamed"], 100);
            renamed["privateProperties"] = json!({"steward": "registry office"});
            assert_eq!(api.put("/management/v3/assets", &renamed).await.status, 204, "{backend:?}");
            assert_eq!(api.delete("/management/v3/assets/dataset-12").await.status, 204, "{backend:?}");
            api.create("/management/v3/assets", health_asset("dataset-99", "New cohort", &["new"], 7)).await;
            let research = json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
                "permission": [{"action": "use", "constraint": [{"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"}]}]});
            api.create("/management/v3/policydefinitions", policy_definition("research", research)).await;
            let changed = contract_definition("first-ten", "open", "research", &["dataset-01", "dataset-99"]);
            assert_eq!(api.put("/management/v3/contractdefinitions", &changed).await.status, 204, "{backend:?}");
        }
        let anew = dataset_answers(&connector, &client, &reader).await;
        assert_ne!(anew, read, "{backend:?}: the changes show");
        let connector = restart_with_graph(connector, Some(&graph_dir)).await;
        assert_eq!(start(&connector), DatasetsStart::Kept { reread: 3 }, "{backend:?}");
        assert_eq!(dataset_answers(&connector, &client, &reader).await, anew, "{backend:?}");

        // A damaged file is not read: the store is, and answers the same.
        let connector = restart_with_graph(connector, None).await;
        let file = graph_dir.join(hanse::catalog::kept::FILE);
        let mut bytes = std::fs::read(&file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
        std::fs::write(&file, &bytes).unwrap();
        let connector = restart_with_graph(connector, Some(&graph_dir)).await;
        assert_eq!(start(&connector), DatasetsStart::Read, "{backend:?}");
        assert_eq!(dataset_answers(&connector, &client, &reader).await, anew, "{backend:?}");
        connector.running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalogue_graph_kept_on_disk_is_resumed_with_what_changed_meanwhile_and_answers_as_one_built_anew() {
    use hanse::catalog::GraphStart;
    for backend in hanse::testing::backends() {
        let client = reqwest::Client::new();
        let (connector, graph_dir) = thirty_datasets(backend, &client).await;
        // The first start with a graph on disk builds it; the next resumes it and has nothing to write again.
        let connector = restart_with_graph(connector, Some(&graph_dir)).await;
        assert_eq!(connector.running.state.catalogue.graph_start(), Some(GraphStart::Built), "{backend:?}");
        let built = graph_answers(&Management::of(&connector, &client)).await;
        assert!(built[2].contains("Cohort 29"), "{backend:?}: {}", built[2]);
        let connector = restart_with_graph(connector, Some(&graph_dir)).await;
        let catalogue = &connector.running.state.catalogue;
        assert_eq!(catalogue.graph_start(), Some(GraphStart::Resumed { rewritten: 0 }), "{backend:?}");
        same_answers(&graph_answers(&Management::of(&connector, &client)).await, &built, &format!("{backend:?}"));

        // Datasets change while the graph on disk is not followed (the connector runs with its graph in memory).
        let connector = restart_with_graph(connector, None).await;
        {
            let api = Management::of(&connector, &client);
            let mut renamed = health_asset("dataset-01", "Renamed cohort", &["renamed"], 100);
            renamed["properties"]["dct:temporal"] =
                json!({"@type": "dct:PeriodOfTime", "dcat:startDate": "2020-01-01"});
            assert_eq!(api.put("/management/v3/assets", &renamed).await.status, 204, "{backend:?}");
            assert_eq!(api.delete("/management/v3/assets/dataset-02").await.status, 204, "{backend:?}");
            api.create("/management/v3/assets", health_asset("dataset-99", "New cohort", &["new"], 7)).await;
        }
        // What a graph built anew answers is what the resumed one must.
        let anew = graph_answers(&Management::of(&connector, &client)).await;
        assert_ne!(anew, built, "{backend:?}: the changes show");
        let connector = restart_with_graph(connector, Some(&graph_dir)).await;
        let catalogue = &connector.running.state.catalogue;
        assert_eq!(catalogue.graph_start(), Some(GraphStart::Resumed { rewritten: 3 }), "{backend:?}");
        same_answers(&graph_answers(&Management::of(&connector, &client)).await, &anew, &format!("{backend:?}"));
        // A write now lands in the graph on disk once (the period's blank node is not doubled).
        {
            let api = Management::of(&connector, &client);
            let mut again = health_asset("dataset-01", "Renamed again", &["renamed"], 100);
            again["properties"]["dct:temporal"] = json!({"@type": "dct:PeriodOfTime", "dcat:startDate": "2021-01-01"});
            assert_eq!(api.put("/management/v3/assets", &again).await.status, 204, "{backend:?}");
        }
        let written = graph_answers(&Management::of(&connector, &client)).await;
        assert!(
            written[2].contains("Renamed again") && written[2].contains("2021-01-01"),
            "{backend:?}: {}",
            written[2]
        );
        assert!(!written[2].contains("2020-01-01"), "{backend:?}: {}", written[2]);

        // A contract policy changes while away: every offer id may differ, so the graph is built whole.
        let connector = restart_with_graph(connector, None).await;
        {
            let api = Management::of(&connector, &client);
            let research = json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
                "permission": [{"action": "use", "constraint": [{"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"}]}]});
            api.create("/management/v3/policydefinitions", policy_definition("research", research)).await;
            let changed = contract_definition("all", "open", "research", &[]);
            assert_eq!(api.put("/management/v3/contractdefinitions", &changed).await.status, 204, "{backend:?}");
        }
        let anew = graph_answers(&Management::of(&connector, &client)).await;
        assert!(anew[3].contains("DUO_0000042"), "{backend:?}: {}", anew[3]);
        let connector = restart_with_graph(connector, Some(&graph_dir)).await;
        assert_eq!(connector.running.state.catalogue.graph_start(), Some(GraphStart::Built), "{backend:?}");
        same_answers(&graph_answers(&Management::of(&connector, &client)).await, &anew, &format!("{backend:?}"));

        connector.running.shutdown().await;
    }
}
