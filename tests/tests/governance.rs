//! Provider governance over real HTTP, on SQLite and on PostgreSQL: named management keys whose roles decide what
//! they may call and which every audit entry names; app tokens bound to datasets and actions, used for rows, a
//! filtered query and an aggregate, limited, revoked, and seen in the audit log, the lineage graph and the metrics;
//! and the lineage of a negotiation and a transfer, which validates against Hanse's PROV-O shape with pySHACL.

use hanse::compute::commands;
use hanse_tests::*;
use serde_json::{Value, json};

const ROWS: usize = 1500;

/// Both terms apps meet: `use` for research, `compute` of aggregates with k ≥ 5.
fn app_terms() -> Value {
    json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
           "permission": [
               {"action": "use", "constraint": [{"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"}]},
               {"action": "hanse:compute", "constraint": {"and": [
                   {"leftOperand": "hanse:minCellCount", "operator": "gteq", "rightOperand": 5},
                   {"leftOperand": "hanse:jobTemplate", "operator": "isAnyOf", "rightOperand": ["aggregate"]}]}}]})
}

/// Ingests a synthetic cohort as `dataset` and offers it; answers the CSV's rows (header first), read independently.
async fn publish(connector: &TestConnector, api: &Management, dataset: &str, cohort: u32) -> Vec<Vec<String>> {
    let csv = connector.dir().join(format!("{dataset}.csv"));
    let schema = commands::synth(ROWS, cohort, 7, &csv).unwrap();
    let properties = json!({"title": format!("Register {dataset}")});
    let key = &connector.config.management.api_key;
    commands::ingest(&connector.management_url(), key, dataset, &csv, &schema, properties).await.unwrap();
    offer_stored(api, dataset, app_terms(), json!({})).await;
    std::fs::read_to_string(&csv).unwrap().lines().map(|l| l.split(',').map(str::to_owned).collect()).collect()
}

/// A call of the app API with `token`.
async fn app(
    client: &reqwest::Client,
    connector: &TestConnector,
    token: &str,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    let url = format!("{}/apps/v1/{path}", connector.public_url());
    let request = match body {
        Some(body) => client.post(url).json(body),
        None => client.get(url),
    };
    let response = request.bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { status, body, headers }
}

/// The entries of an audit export (JSON Lines: a header, `{"seq", "root", "entry"}` per entry, the signed heads).
fn entries(export: &str) -> Vec<Value> {
    export.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()?.get("entry").cloned()).collect()
}

/// The management API of `connector` under another key.
fn with_key(api: &Management, key: &str) -> Management {
    Management { api_key: key.to_owned(), ..api.clone() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_keys_act_within_their_roles_and_the_log_names_them() {
    let federation = Federation::start(&hanse::testing::backends()).await;
    for (i, connector) in federation.connectors.iter().enumerate() {
        let api = federation.management(i);
        let make = async |name: &str, role: &str| {
            let made = api.post("/management/v3/api-keys", &json!({"name": name, "role": role})).await;
            assert_eq!(made.status, 201, "{:#}", made.body);
            (made.body["@id"].as_str().unwrap().to_owned(), made.body["key"].as_str().unwrap().to_owned())
        };
        let (steward_id, steward) = make("Cardiology data steward", "steward").await;
        let (_, reader) = make("Dashboard", "reader").await;
        let (_, approver) = make("Ethics board", "approver").await;
        let (_, auditor) = make("Data-protection officer", "auditor").await;
        let (_, scraper) = make("Prometheus", "metrics").await;
        let refused = api.post("/management/v3/api-keys", &json!({"name": "x", "role": "superuser"})).await;
        assert_eq!((refused.status, &refused.body[0]["path"]), (400, &json!("role")), "{:#}", refused.body);

        // The steward publishes; it may not touch keys, credentials or start negotiations.
        let steward_api = with_key(&api, &steward);
        let asset = health_asset("steward-dataset", "Echo findings", &["cardiology"], 40);
        assert_eq!(steward_api.post("/management/v3/assets", &asset).await.status, 200);
        for (path, body) in [
            ("/management/v3/keys/rotate", json!({})),
            ("/management/v3/api-keys", json!({"name": "mine", "role": "operator"})),
            ("/management/v3/contractnegotiations", json!({})),
        ] {
            let answer = steward_api.post(path, &body).await;
            assert_eq!(answer.status, 403, "{path}: {:#}", answer.body);
            assert!(answer.body[0]["message"].as_str().unwrap().contains("steward"), "{:#}", answer.body);
        }
        // Readers read; approvers read and decide but do not publish; auditors and scrapers see nothing else.
        assert_eq!(with_key(&api, &reader).get("/management/v3/assets/steward-dataset").await.status, 200);
        assert_eq!(with_key(&api, &reader).post("/management/v3/assets/request", &json!({})).await.status, 200);
        assert_eq!(with_key(&api, &reader).delete("/management/v3/assets/steward-dataset").await.status, 403);
        assert_eq!(with_key(&api, &approver).post("/management/v3/assets", &asset).await.status, 403);
        let decide = with_key(&api, &approver)
            .post("/management/v3/contractnegotiations/nothing-here/approve", &json!({}))
            .await;
        assert_eq!(decide.status, 404, "an approver reaches operator calls: {:#}", decide.body);
        assert_eq!(with_key(&api, &auditor).get("/management/v3/audit/head").await.status, 200);
        assert_eq!(with_key(&api, &auditor).get("/management/v3/assets/steward-dataset").await.status, 403);
        assert_eq!(with_key(&api, &scraper).get("/management/v3/assets/steward-dataset").await.status, 403);
        let metrics = api.client.get(format!("{}/metrics", api.base)).bearer_auth(&scraper).send().await.unwrap();
        assert_eq!(metrics.status(), 200);

        // The log names the steward's key (id, role, fingerprint), never the key.
        let export = api.audit_export().await;
        let created = entries(&export)
            .into_iter()
            .find(|entry| entry["resource"] == "asset" && entry["id"] == "steward-dataset")
            .expect("the asset's creation is logged");
        assert_eq!(
            (&created["who"]["id"], &created["who"]["role"]),
            (&json!(steward_id), &json!("steward")),
            "{created}"
        );
        let fingerprint = hanse_core::encode::sha256_hex(steward.as_bytes());
        assert_eq!(created["who"]["fingerprint"], fingerprint[..16]);
        assert!(!export.contains(&steward), "the log holds no key");

        // Rotation retires the old value at once; revocation ends the key.
        let rotated = api.post(&format!("/management/v3/api-keys/{steward_id}/rotate"), &json!({})).await;
        assert_eq!(rotated.status, 200, "{:#}", rotated.body);
        let renewed = rotated.body["key"].as_str().unwrap();
        assert_eq!(steward_api.get("/management/v3/assets/steward-dataset").await.status, 401);
        assert_eq!(with_key(&api, renewed).get("/management/v3/assets/steward-dataset").await.status, 200);
        assert_eq!(api.delete(&format!("/management/v3/api-keys/{steward_id}")).await.status, 204);
        assert_eq!(with_key(&api, renewed).get("/management/v3/assets/steward-dataset").await.status, 401);
        let listed = api.get("/management/v3/api-keys").await.body;
        let listed = listed.as_array().unwrap();
        assert_eq!(listed.len(), 5);
        assert!(listed.iter().all(|k| k.get("key").is_none()), "keys are never listed");
        assert_eq!(listed.iter().find(|k| k["@id"] == steward_id.as_str()).unwrap()["state"], "REVOKED");
        eprintln!("connector {i} ({:?}): roles hold", connector.database.backend);
    }
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_tokens_read_query_compute_within_their_grant_until_revoked() {
    let federation = Federation::start(&hanse::testing::backends()).await;
    let client = reqwest::Client::new();
    for (i, connector) in federation.connectors.iter().enumerate() {
        let api = federation.management(i);
        let first = publish(connector, &api, "register-a", 0).await;
        publish(connector, &api, "register-b", 1).await;
        publish(connector, &api, "register-c", 2).await;
        let column = |name: &str| first[0].iter().position(|c| c == name).unwrap();

        let issued = api
            .post(
                "/management/v3/apps/tokens",
                &json!({"name": "Diabetes companion", "datasets": ["register-a", "register-b"],
                        "actions": ["read", "query", "compute"], "purpose": RESEARCH, "ratePerMinute": 20}),
            )
            .await;
        assert_eq!(issued.status, 201, "{:#}", issued.body);
        let token = issued.body["token"].as_str().unwrap().to_owned();
        let id = issued.body["@id"].as_str().unwrap().to_owned();
        let mut served = 0;

        // Rows: the first page is the file's first rows.
        let page = app(&client, connector, &token, "datasets/register-a/rows?limit=100", None).await;
        assert_eq!(page.status, 200, "{:#}", page.body);
        served += 1;
        assert_eq!((page.body["total"].as_u64(), page.body["nextOffset"].as_u64()), (Some(ROWS as u64), Some(100)));
        let rows = page.body["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 100);
        let age = page.body["columns"].as_array().unwrap().iter().position(|c| c == "age").unwrap();
        for (row, line) in rows.iter().zip(&first[1..]) {
            assert_eq!(row[age].to_string(), line[column("age")]);
        }
        // A filtered query: exactly the rows the file has with age ≥ 70 and sex F, in two columns.
        let expected: Vec<&Vec<String>> = first[1..]
            .iter()
            .filter(|l| l[column("age")].parse::<i64>().unwrap() >= 70 && l[column("sex")] == "F")
            .collect();
        let query = app(
            &client,
            connector,
            &token,
            "datasets/register-a/query?where=age:gte:70&where=sex:eq:F&columns=age,sex&limit=1000",
            None,
        )
        .await;
        assert_eq!(query.status, 200, "{:#}", query.body);
        served += 1;
        assert_eq!(query.body["total"].as_u64(), Some(expected.len() as u64));
        assert_eq!(query.body["columns"], json!(["age", "sex"]));
        assert!(query.body["rows"].as_array().unwrap().iter().all(|r| r[0].as_i64().unwrap() >= 70 && r[1] == "F"));
        // An aggregate: the counts by sex of the second register... compared with the first register's file.
        let aggregate = app(
            &client,
            connector,
            &token,
            "datasets/register-a/compute",
            Some(&json!({"template": "aggregate", "parameters": {"groupBy": ["sex"]}, "k": 5})),
        )
        .await;
        assert_eq!(aggregate.status, 200, "{:#}", aggregate.body);
        served += 1;
        let women = first[1..].iter().filter(|l| l[column("sex")] == "F").count() as u64;
        let cells = aggregate.body["result"]["cells"].as_array().expect("cells");
        let released = cells.iter().find(|c| c["group"]["sex"] == "F" || c["sex"] == "F").expect("a cell for F");
        assert_eq!(released["n"].as_u64(), Some(women), "{released}");
        let other = app(&client, connector, &token, "datasets/register-b/rows?limit=5", None).await;
        assert_eq!((other.status, other.body["rows"].as_array().map(Vec::len)), (200, Some(5)));
        served += 1;

        // Outside the grant: another dataset, another action, filters on `rows`, no or a wrong token.
        let outside = app(&client, connector, &token, "datasets/register-c/rows", None).await;
        assert_eq!((outside.status, &outside.body["code"]), (403, &json!("DatasetNotGranted")));
        let file = app(&client, connector, &token, "datasets/register-a/file", None).await;
        assert_eq!((file.status, &file.body["code"]), (403, &json!("ActionNotGranted")));
        assert_eq!(app(&client, connector, &token, "datasets/register-a/rows?where=age:gte:1", None).await.status, 400);
        let stranger = app(&client, connector, "hat_not-a-token", "datasets/register-a/rows", None).await;
        assert_eq!(stranger.status, 401);
        assert_eq!(stranger.headers["www-authenticate"], "Bearer");
        // A token without the purpose the policy asks for is refused with the policy's reason.
        let purposeless = api
            .post(
                "/management/v3/apps/tokens",
                &json!({"name": "No purpose", "datasets": ["register-a"], "actions": ["read"]}),
            )
            .await;
        let purposeless = purposeless.body["token"].as_str().unwrap().to_owned();
        let denied = app(&client, connector, &purposeless, "datasets/register-a/rows", None).await;
        assert_eq!((denied.status, &denied.body["code"]), (403, &json!("PolicyDenied")), "{:#}", denied.body);
        assert!(denied.body["reason"].as_str().unwrap().contains("purpose"), "{:#}", denied.body);

        // The rate limit (20 a minute): refused with Retry-After before the 21st call in a minute is served.
        let mut limited = None;
        for _ in 0..25 {
            let answer = app(&client, connector, &token, "datasets/register-b/rows?limit=1", None).await;
            match answer.status {
                200 => served += 1,
                429 => {
                    limited = Some(answer);
                    break;
                }
                other => panic!("unexpected {other}: {:#}", answer.body),
            }
        }
        let limited = limited.expect("the limit is reached");
        assert!(limited.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
        assert!(served <= 20, "{served} calls served within a minute");

        // What was used: on the token, in the log, in the lineage, in the metrics.
        let shown = api.get(&format!("/management/v3/apps/tokens/{id}")).await.body;
        assert_eq!(shown["usage"]["requests"], served, "{shown:#}");
        assert_eq!(shown["state"], "VALID");
        let uses = entries(&api.audit_export().await)
            .into_iter()
            .filter(|entry| entry["type"] == "app.use" && entry["token"] == id.as_str())
            .count();
        assert_eq!(uses, served);
        let lineage = api
            .post(
                "/management/v3/lineage/sparql",
                &json!({"query": format!("SELECT (COUNT(DISTINCT ?use) AS ?n) WHERE {{ ?use a hanse:AppUse ; \
                         prov:qualifiedAssociation/prov:hadPlan <urn:hanse:app-token:{id}> }}")}),
            )
            .await;
        assert_eq!(lineage.status, 200, "{:#}", lineage.body);
        assert_eq!(lineage.body["results"]["bindings"][0]["n"]["value"], served.to_string());
        let metrics = api.metrics().await;
        let counted = sample(&metrics, "hanse_app_requests_total", &[("outcome", "served")]).unwrap();
        assert_eq!(counted as usize, served);
        assert!(sample(&metrics, "hanse_app_requests_total", &[("outcome", "limited")]).unwrap() >= 1.0);
        assert!(sample(&metrics, "hanse_app_rows_total", &[("action", "read")]).unwrap() >= 105.0);

        // Revoked: the next call is a 401.
        assert_eq!(api.post(&format!("/management/v3/apps/tokens/{id}/revoke"), &json!({})).await.status, 200);
        let after = app(&client, connector, &token, "datasets/register-a/rows?limit=1", None).await;
        assert_eq!((after.status, &after.body["reason"]), (401, &json!("the app token was revoked")));
        eprintln!(
            "connector {i} ({:?}): {served} app calls served, then limited and revoked",
            connector.database.backend
        );
    }
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lineage_of_a_transfer_names_its_agreement_and_validates_as_prov() {
    let federation = Federation::with_hospitals(2).await;
    let dataset = "lineage-file";
    let source = file_source(&federation.connectors[0], "lineage.csv", b"a,b\n1,2\n");
    let agreement = agreed(&federation, dataset, source, open_policy(), false).await;
    let consumer = federation.management(1);
    let transfer = start_transfer(&consumer, &agreement, json!({})).await;
    wait_for_transfer(&consumer, &transfer, "STARTED").await;
    let address = edr(&consumer, &transfer).await;
    let pulled = pull(&federation.client, &address).send().await.unwrap();
    assert_eq!(pulled.status(), 200);

    let provider = federation.management(0);
    let who_used = provider
        .post(
            "/management/v3/lineage/sparql",
            &json!({"query": format!("SELECT DISTINCT ?agreement ?consumer WHERE {{ ?activity prov:used/prov:specializationOf <urn:hanse:dataset:{dataset}> ; \
                     prov:qualifiedAssociation [ prov:agent ?consumer ; prov:hadPlan ?agreement ] . \
                     FILTER(?consumer != <{}>) }}", federation.connectors[0].participant_id())}),
        )
        .await;
    assert_eq!(who_used.status, 200, "{:#}", who_used.body);
    let bindings = who_used.body["results"]["bindings"].as_array().unwrap();
    assert!(!bindings.is_empty(), "{:#}", who_used.body);
    assert!(bindings.iter().all(|b| b["consumer"]["value"] == federation.connectors[1].participant_id()));
    assert!(
        bindings
            .iter()
            .all(|b| b["agreement"]["value"].as_str().unwrap().ends_with(&hanse_core::encode::percent(&agreement)))
    );

    // The export around the agreement, as Turtle and JSON-LD; the whole graph against the PROV-O shape.
    let export = provider
        .client
        .get(format!("{}/management/v3/lineage?agreement={}", provider.base, hanse_core::encode::percent(&agreement)))
        .header("X-Api-Key", &provider.api_key)
        .header("Accept", "application/ld+json")
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    let document: Value = export.json().await.unwrap();
    assert!(document.to_string().contains("http://www.w3.org/ns/prov#Plan"), "{document:#}");
    for (side, api) in [("provider", &provider), ("consumer", &consumer)] {
        let graph = api
            .client
            .post(format!("{}/management/v3/lineage/sparql", api.base))
            .header("X-Api-Key", &api.api_key)
            .header("Accept", "application/n-triples")
            .header("Content-Type", "application/sparql-query")
            .body("CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o }")
            .send()
            .await
            .unwrap();
        assert_eq!(graph.status(), 200);
        let triples = graph.text().await.unwrap();
        assert!(triples.lines().count() > 10, "{side}: {triples}");
        let shapes = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../self-descriptions/shapes/hanse-lineage.shapes.ttl");
        let report = pyshacl(&triples, &[&shapes], None);
        assert!(report.conforms, "{side}: {:#?}", report.results);
    }
    // The consumer's side: what it received, from whom.
    let received = consumer
        .post(
            "/management/v3/lineage/sparql",
            &json!({"query": "SELECT ?from WHERE { ?data a hanse:ReceivedData ; prov:wasAttributedTo ?from }"}),
        )
        .await;
    assert_eq!(received.body["results"]["bindings"][0]["from"]["value"], federation.connectors[0].participant_id());
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_is_published_only_after_a_second_key_approves_and_every_decision_is_kept() {
    let backends = hanse::testing::backends();
    let provider = TestConnector::start_with(backends[0], |c| c.catalog.publication_approval = true).await;
    let consumer = TestConnector::start(*backends.last().unwrap()).await;
    let federation = Federation { connectors: vec![provider, consumer], client: reqwest::Client::new() };
    let api = federation.management(0);
    let key = async |name: &str, role: &str| {
        let made = api.post("/management/v3/api-keys", &json!({"name": name, "role": role})).await;
        (made.body["@id"].as_str().unwrap().to_owned(), with_key(&api, made.body["key"].as_str().unwrap()))
    };
    let (steward_id, steward) = key("Data steward", "steward").await;
    let (approver_id, approver) = key("Head of research data", "approver").await;

    // The steward publishes two datasets with their offers; neither appears yet.
    for dataset in ["cardio-echo", "cardio-ecg"] {
        let asset = health_asset(dataset, "Cardiology findings", &["cardiology"], 300);
        assert_eq!(steward.post("/management/v3/assets", &asset).await.status, 200);
        offer_stored(&steward, dataset, research_terms(), json!({})).await;
    }
    let (provider, consumer) = (&federation.connectors[0], &federation.connectors[1]);
    assert!(visible(consumer, provider).await.is_empty());
    let pending = api.get("/management/v3/approvals?kind=publication").await.body;
    let pending: Vec<&Value> = pending.as_array().unwrap().iter().collect();
    assert_eq!(pending.len(), 2, "{pending:#?}");
    assert!(pending.iter().all(|p| p["requestedBy"]["id"] == steward_id.as_str()));

    // Four eyes: the steward cannot approve its own dataset; the approver can, and rejects the other.
    let own = steward.post("/management/v3/approvals/publications/cardio-echo/approve", &json!({})).await;
    assert_eq!(own.status, 403, "{:#}", own.body);
    let approved = approver
        .post("/management/v3/approvals/publications/cardio-echo/approve", &json!({"reason": "ethics vote 2026-114"}))
        .await;
    assert_eq!((approved.status, &approved.body["state"]), (200, &json!("approved")), "{:#}", approved.body);
    let rejected = approver
        .post("/management/v3/approvals/publications/cardio-ecg/reject", &json!({"reason": "consent forms missing"}))
        .await;
    assert_eq!(rejected.body["state"], "rejected");
    let again = approver.post("/management/v3/approvals/publications/cardio-ecg/approve", &json!({})).await;
    assert_eq!(again.status, 409, "a decided publication is not decided again");
    assert_eq!(visible(consumer, provider).await, ["cardio-echo"]);

    // The history: who decided, when, why.
    let decided = api.get("/management/v3/approvals?status=decided&kind=publication").await.body;
    let decided = decided.as_array().unwrap();
    assert_eq!(decided.len(), 2, "{decided:#?}");
    let echo = decided.iter().find(|d| d["id"] == "cardio-echo").unwrap();
    assert_eq!((&echo["decision"], &echo["who"]["id"]), (&json!("approved"), &json!(approver_id)));
    assert_eq!(echo["reason"], "ethics vote 2026-114");
    let ecg = decided.iter().find(|d| d["id"] == "cardio-ecg").unwrap();
    assert_eq!((&ecg["decision"], &ecg["reason"]), (&json!("rejected"), &json!("consent forms missing")));

    // A negotiation held for manual approval waits in the same list, with its policy trace; the approver's call is
    // kept with its reason.
    offer_dataset_held(&federation, &steward, &approver).await;
    let held = api.get("/management/v3/approvals?kind=negotiation").await.body;
    let held = held.as_array().unwrap();
    assert_eq!(held.len(), 1, "{held:#?}");
    assert_eq!(held[0]["requester"], consumer.participant_id());
    assert_eq!(held[0]["decision"]["permitted"], true, "{:#}", held[0]);
    let id = held[0]["id"].as_str().unwrap();
    let call = approver
        .post(
            &format!("/management/v3/contractnegotiations/{id}/approve"),
            &json!({"reason": "within the ethics vote"}),
        )
        .await;
    assert_eq!(call.status, 200, "{:#}", call.body);
    let decided = api.get("/management/v3/approvals?status=decided&kind=negotiation").await.body;
    let decision = &decided.as_array().unwrap()[0];
    assert_eq!(
        (&decision["call"], &decision["held"], &decision["who"]["id"]),
        (&json!("approve"), &json!(true), &json!(approver_id))
    );
    assert_eq!(decision["reason"], "within the ethics vote");
    assert_eq!(decision["decisionTrace"]["permitted"], true);
    // The request is decided: it no longer waits as a request. Held for manual approval, the provider also finalizes
    // by hand, so once the consumer has verified the agreement the same negotiation waits again, for `finalize`.
    let mut waiting = Vec::new();
    until("the held negotiation to wait for its finalization", async || {
        waiting = api.get("/management/v3/approvals?kind=negotiation").await.body.as_array().unwrap().clone();
        assert!(waiting.iter().all(|w| w["state"] != "REQUESTED"), "the decided request still waits: {waiting:#?}");
        !waiting.is_empty()
    })
    .await;
    assert_eq!((waiting.len(), &waiting[0]["id"], &waiting[0]["state"]), (1, &json!(id), &json!("VERIFIED")));
    assert!(waiting[0]["allowedCalls"].as_array().unwrap().contains(&json!("finalize")), "{:#}", waiting[0]);
    federation.shutdown().await;
}

/// The provider offers an approved dataset with manual approval, and the consumer asks for it.
async fn offer_dataset_held(federation: &Federation, steward: &Management, approver: &Management) {
    let dataset = "held-dataset";
    let asset = health_asset(dataset, "Rare disease register", &["rare"], 90);
    steward.create("/management/v3/assets", asset).await;
    offer_stored(steward, dataset, research_terms(), json!({"manualApproval": true})).await;
    let approved = approver.post(&format!("/management/v3/approvals/publications/{dataset}/approve"), &json!({})).await;
    assert_eq!(approved.status, 200, "{:#}", approved.body);
    let consumer = federation.management(1);
    let offer = catalogue_offer(&consumer, &federation.connectors[0], dataset).await;
    let id = negotiate(&consumer, &federation.connectors[0], offer, json!({"purpose": RESEARCH})).await;
    wait_for_negotiation(&consumer, &id, "REQUESTED").await;
    let provider = federation.management(0);
    until("the provider holds the request", async || {
        !provider.get("/management/v3/approvals?kind=negotiation").await.body.as_array().unwrap().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ehds_data_permit_from_the_access_body_opens_a_restricted_dataset_and_the_agreement_names_it() {
    let backends = hanse::testing::backends();
    let hdab = TestConnector::start(backends[0]).await;
    let trusted = hdab.participant_id().to_owned();
    let provider = TestConnector::start_with(*backends.last().unwrap(), move |config| {
        config.trust.issuers.insert("DataPermitCredential".into(), vec![trusted]);
        config.trust.claims_cache_seconds = 0;
    })
    .await;
    let researcher = TestConnector::start(backends[0]).await;
    let stranger = TestConnector::start(*backends.last().unwrap()).await;
    let api = management_of(&provider);

    // A restricted dataset, reached through the access body, for research under a permit naming the requester.
    let mut asset = health_asset("ehds-oncology", "Oncology registry", &["cancer"], 2300);
    asset["properties"]["accessRights"] = json!("RESTRICTED");
    asset["properties"]["hdab"] = json!(hdab.participant_id());
    api.create("/management/v3/assets", asset).await;
    let terms = json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [{
        "action": "use", "constraint": {"and": [
            {"leftOperand": "hanse:permitPurpose", "operator": "isA", "rightOperand": "hanse:ehds-scientific-research"},
            {"leftOperand": "hanse:permitIssuer", "operator": "eq", "rightOperand": hdab.participant_id()},
            {"leftOperand": "hanse:permitHolder", "operator": "eq", "rightOperand": true}]}}]});
    offer_stored(&api, "ehds-oncology", terms, json!({})).await;

    // The access body issues the researcher's permit (Art. 68): id, purpose (Art. 53(1)(e)), named users, validity.
    let valid_until = (chrono::Utc::now() + chrono::Duration::days(365)).to_rfc3339();
    let permit = json!({"dataPermit": {"id": "HDAB-DE-2026-0042", "issuingBody": hdab.participant_id(),
        "purpose": "hanse:ehds-ai-training", "users": [researcher.participant_id()], "validUntil": valid_until}});
    let issued = management_of(&hdab)
        .post(
            "/management/v3/credentials/issue",
            &json!({"type": "DataPermitCredential", "subject": researcher.participant_id(), "claims": permit}),
        )
        .await;
    assert_eq!(issued.status, 200, "{:#}", issued.body);
    import(&researcher, issued.body["credential"].as_str().unwrap()).await;

    for (consumer, outcome) in [(&researcher, "FINALIZED"), (&stranger, "TERMINATED")] {
        let management = management_of(consumer);
        let offer = catalogue_offer(&management, &provider, "ehds-oncology").await;
        let id = negotiate(&management, &provider, offer, json!({"purpose": "hanse:ehds-ai-training"})).await;
        let ended = wait_for_state(&management, "contractnegotiations", &id, outcome).await;
        if outcome == "TERMINATED" {
            assert!(ended["errorDetail"].to_string().contains("data permit"), "{ended:#}");
        }
    }
    // The provider's agreement names the permit, in its record and in the log.
    let export = api.audit_export().await;
    let agreed =
        entries(&export).into_iter().find(|e| e["type"] == "contract.agreement").expect("an agreement is logged");
    assert_eq!(agreed["dataPermit"], "HDAB-DE-2026-0042", "{agreed:#}");
    for connector in [hdab, provider, researcher, stranger] {
        connector.running.shutdown().await;
    }
}
