//! The management API as an operator's EDC scripts use it: assets, policy definitions, contract definitions.
//! Every scenario runs on each hospital of a two-hospital federation (one SQLite, one PostgreSQL).

use hanse_tests::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_created_read_listed_replaced_and_deleted() {
    let federation = Federation::with_hospitals(2).await;
    for i in 0..2 {
        let api = federation.management(i);
        let created = api
            .create("/management/v3/assets", health_asset("t2d-cohort", "Type 2 diabetes", &["diabetes"], 1200))
            .await;
        assert_eq!(created["@type"], "IdResponse");
        assert_eq!(created["@id"], "t2d-cohort");
        assert!(created["createdAt"].as_i64().unwrap() > 0);

        let read = api.get("/management/v3/assets/t2d-cohort").await;
        assert_eq!(read.status, 200);
        assert_eq!(read.body["properties"]["dct:title"], "Type 2 diabetes");
        assert_eq!(read.body["properties"]["healthdcatap:numberOfRecords"], 1200);
        assert_eq!(read.body["privateProperties"]["sourceTable"], "ehr.t2d-cohort");
        assert_eq!(read.body["dataAddress"]["type"], "HttpData");

        let mut replacement = health_asset("t2d-cohort", "Type 2 diabetes (2025 extract)", &["diabetes"], 1300);
        replacement["properties"]["numberOfRecords"] = json!(1300);
        assert_eq!(api.put("/management/v3/assets", &replacement).await.status, 204);
        let read = api.get("/management/v3/assets/t2d-cohort").await;
        assert_eq!(read.body["properties"]["dct:title"], "Type 2 diabetes (2025 extract)");
        assert_eq!(read.body["createdAt"], created["createdAt"], "replacing keeps the creation time");

        let listed = api.post("/management/v3/assets/request", &json!({"@type": "QuerySpec"})).await;
        assert_eq!(listed.status, 200);
        assert_eq!(listed.body.as_array().unwrap().len(), 1);

        assert_eq!(api.delete("/management/v3/assets/t2d-cohort").await.status, 204);
        assert_eq!(api.get("/management/v3/assets/t2d-cohort").await.status, 404);
    }
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_conflict_and_unknown_ids_are_not_found() {
    let federation = Federation::with_hospitals(2).await;
    for i in 0..2 {
        let api = federation.management(i);
        api.create("/management/v3/assets", health_asset("a", "A", &[], 1)).await;
        let again = api.post("/management/v3/assets", &health_asset("a", "A again", &[], 2)).await;
        assert_eq!(again.status, 409, "{:#}", again.body);
        assert_eq!(again.body[0]["type"], "ObjectConflict");
        assert_eq!(
            api.get("/management/v3/assets/a").await.body["properties"]["dct:title"],
            "A",
            "the first one is kept"
        );
        for path in [
            "/management/v3/assets/nope",
            "/management/v3/policydefinitions/nope",
            "/management/v3/contractdefinitions/nope",
        ] {
            let missing = api.get(path).await;
            assert_eq!(missing.status, 404, "{path}");
            assert_eq!(missing.body[0]["type"], "ObjectNotFound");
            assert_eq!(api.delete(path).await.status, 404, "{path}");
        }
        assert_eq!(api.put("/management/v3/assets", &health_asset("never-created", "X", &[], 1)).await.status, 404);
    }
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bodies_name_each_offending_field() {
    let federation = Federation::with_hospitals(1).await;
    let api = federation.management(0);
    let answer = api
        .post(
            "/management/v3/assets",
            &json!({"@id": "bad", "properties": {"numberOfRecords": "plenty"},
                                                 "dataAddress": {"type": "File", "path": "../../etc/passwd"}}),
        )
        .await;
    assert_eq!(answer.status, 400);
    let paths: Vec<&str> = answer.body.as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["properties", "dataAddress.path"], "{:#}", answer.body);
    assert!(answer.body[0]["message"].as_str().unwrap().contains("plenty"));

    let answer = api.post("/management/v3/assets", &json!({"@id": "no-address", "properties": {}})).await;
    assert_eq!((answer.status, answer.body[0]["path"].as_str()), (400, Some("dataAddress")));

    let answer = api.post("/management/v3/assets", &json!({"@id": "x", "dataAddress": {"type": "AmazonS3"}})).await;
    assert_eq!((answer.status, answer.body[0]["path"].as_str()), (400, Some("dataAddress.type")));

    let not_json = api
        .client
        .post(format!("{}/management/v3/assets", api.base))
        .header("X-Api-Key", &api.api_key)
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);

    let answer = api.post("/management/v3/contractdefinitions", &json!({"@id": "cd"})).await;
    let paths: Vec<&str> = answer.body.as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["accessPolicyId", "contractPolicyId"]);

    let answer =
        api.post("/management/v3/contractdefinitions", &contract_definition("cd", "missing-a", "missing-c", &[])).await;
    assert_eq!(answer.status, 400, "a definition must name existing policies");
    assert_eq!(answer.body.as_array().unwrap().len(), 2);
    // Nothing half-stored.
    assert_eq!(api.post("/management/v3/assets/request", &json!({})).await.body, json!([]));
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_odrl_is_rejected_with_the_reason_per_constraint() {
    let federation = Federation::with_hospitals(1).await;
    let api = federation.management(0);
    let answer = api
        .post(
            "/management/v3/policydefinitions",
            &policy_definition(
                "bad",
                json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [{
                "action": "use",
                "constraint": [
                    {"leftOperand": "https://vendor.example/trust", "operator": "eq", "rightOperand": "high"},
                    {"leftOperand": "dateTime", "operator": "lt", "rightOperand": "some day"},
                    {"and": [{"leftOperand": "count", "operator": "gt", "rightOperand": "10"},
                             {"leftOperand": "count", "operator": "lt", "rightOperand": "5"}]}
                ]}]}),
            ),
        )
        .await;
    assert_eq!(answer.status, 400);
    let errors = answer.body.as_array().unwrap();
    let messages: Vec<&str> = errors.iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert!(messages.iter().any(|m| m.contains("https://vendor.example/trust")), "{messages:#?}");
    assert!(messages.iter().any(|m| m.contains("date-time")), "{messages:#?}");
    assert!(messages.iter().any(|m| m.contains("can never hold")), "{messages:#?}");
    assert!(errors.iter().all(|e| e["path"].as_str().unwrap().starts_with("policy.permission[0]")));
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referenced_policies_and_assets_cannot_be_deleted() {
    let federation = Federation::with_hospitals(2).await;
    for i in 0..2 {
        let api = federation.management(i);
        api.create("/management/v3/assets", health_asset("cohort", "Cohort", &[], 10)).await;
        api.create("/management/v3/policydefinitions", policy_definition("open", open_policy())).await;
        api.create("/management/v3/contractdefinitions", contract_definition("cd", "open", "open", &["cohort"])).await;
        let policy = api.delete("/management/v3/policydefinitions/open").await;
        assert_eq!(policy.status, 409, "{:#}", policy.body);
        assert!(policy.body[0]["message"].as_str().unwrap().contains("cd"));
        assert_eq!(api.delete("/management/v3/assets/cohort").await.status, 409);
        assert_eq!(api.delete("/management/v3/contractdefinitions/cd").await.status, 204);
        assert_eq!(api.delete("/management/v3/assets/cohort").await.status, 204);
        assert_eq!(api.delete("/management/v3/policydefinitions/open").await.status, 204);
    }
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_specs_filter_sort_and_page() {
    let federation = Federation::with_hospitals(1).await;
    let api = federation.management(0);
    for (id, records) in [("c", 30), ("a", 10), ("e", 50), ("b", 20), ("d", 40)] {
        api.create("/management/v3/assets", health_asset(id, &format!("Cohort {id}"), &["cohort"], records)).await;
    }
    let ids = |answer: &Answer| -> Vec<String> {
        answer.body.as_array().unwrap().iter().map(|a| a["@id"].as_str().unwrap().to_owned()).collect()
    };
    let page = api
        .post(
            "/management/v3/assets/request",
            &json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@type": "QuerySpec",
            "sortField": "numberOfRecords", "sortOrder": "DESC", "offset": 1, "limit": 2}),
        )
        .await;
    assert_eq!(ids(&page), ["d", "c"]);
    let filtered = api
        .post("/management/v3/assets/request", &json!({"filterExpression": [
            {"operandLeft": "https://w3id.org/edc/v0.0.1/ns/id", "operator": "in", "operandRight": ["a", "e", "zzz"]}]}))
        .await;
    assert_eq!(ids(&filtered), ["a", "e"]);
    let like = api.post("/management/v3/assets/request", &json!({"filterExpression": [{"operandLeft": "dct:title", "operator": "like", "operandRight": "Cohort %"}, {"operandLeft": "id", "operator": "!=", "operandRight": "b"}]})).await;
    assert_eq!(ids(&like), ["a", "c", "d", "e"]);
    let bad = api
        .post(
            "/management/v3/assets/request",
            &json!({"limit": 0, "filterExpression": [{"operandLeft": "id", "operator": "~=", "operandRight": "x"}]}),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body.as_array().unwrap().len(), 2);
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_context_of_edc_is_understood() {
    let federation = Federation::with_hospitals(1).await;
    let api = federation.management(0);
    let created = api
        .post(
            "/management/v3/policydefinitions",
            &json!({
            "@context": ["https://w3id.org/edc/connector/management/v0.0.1"],
            "@type": "PolicyDefinition", "@id": "members-only",
            "policy": {"@type": "Set", "permission": [{"action": "use", "constraint": [
                {"leftOperand": "recipient", "operator": "isAnyOf", "rightOperand": ["did:web:a", "did:web:b"]}]}]}}),
        )
        .await;
    assert_eq!(created.status, 200, "{:#}", created.body);
    let read = api.get("/management/v3/policydefinitions/members-only").await;
    assert_eq!(read.body["policy"]["permission"][0]["constraint"][0]["leftOperand"], "recipient");
    assert_eq!(
        read.body["policy"]["permission"][0]["constraint"][0]["rightOperand"],
        json!(["did:web:a", "did:web:b"])
    );
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_validate_and_explain_their_decisions() {
    let federation = Federation::with_hospitals(1).await;
    let api = federation.management(0);
    api.create("/management/v3/policydefinitions", policy_definition("research", json!({
        "@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
        "permission": [{"action": "use", "constraint": [{"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"}]}]}))).await;
    let valid = api.post("/management/v3/policydefinitions/research/validate", &json!({})).await;
    assert_eq!((valid.status, &valid.body["isValid"]), (200, &json!(true)), "{:#}", valid.body);
    let explained = api
        .post(
            "/management/v3/policydefinitions/research/explain",
            &json!({"action": "use", "context": {"participant": "did:web:x", "purpose": "dpv:CommercialResearch"}}),
        )
        .await;
    assert_eq!(explained.status, 200);
    assert_eq!(explained.body["decision"]["permitted"], false);
    assert!(explained.body["decision"]["reason"].as_str().unwrap().contains("purpose"));
    let permitted = api
        .post("/management/v3/policydefinitions/research/explain", &json!({"context": {"purpose": "DUO:0000007"}}))
        .await;
    assert_eq!(permitted.body["decision"]["permitted"], true, "{:#}", permitted.body);
    assert_eq!(api.post("/management/v3/policydefinitions/none/validate", &json!({})).await.status, 404);
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_survives_a_restart() {
    let mut federation = Federation::with_hospitals(2).await;
    for i in 0..2 {
        let api = federation.management(i);
        api.create("/management/v3/assets", health_asset("kept", "Kept", &["kept"], 5)).await;
        api.create("/management/v3/policydefinitions", policy_definition("open", open_policy())).await;
        api.create("/management/v3/contractdefinitions", contract_definition("cd", "open", "open", &[])).await;
    }
    let connectors = std::mem::take(&mut federation.connectors);
    for connector in connectors {
        federation.connectors.push(connector.restart().await);
    }
    for i in 0..2 {
        let api = federation.management(i);
        assert_eq!(api.get("/management/v3/assets/kept").await.body["properties"]["dct:title"], "Kept");
        assert_eq!(api.get("/management/v3/contractdefinitions/cd").await.status, 200);
        let catalog = dsp_post(
            &federation.client,
            &format!("{}/protocol/2025-1/catalog/request", federation.connectors[i].public_url()),
            Some(&federation.connectors[1 - i]),
            &catalog_request(json!([])),
        )
        .await;
        assert_eq!(catalog.body["dataset"][0]["@id"], "kept", "{:#}", catalog.body);
    }
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_path_or_method_tells_nothing_without_the_key() {
    let federation = Federation::with_hospitals(1).await;
    let api = federation.management(0);
    let anonymous = federation.client.get(format!("{}/management/v9/nothing", api.base)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(api.get("/management/v9/nothing").await.status, 404);
    assert_eq!(api.get("/no/such/path").await.status, 404);
    // A method a path does not take says no more: 401 without a key, 405 with its `Allow` with one.
    let anonymous = federation.client.get(format!("{}/management/v3/assets", api.base)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let keyed = api.get("/management/v3/assets").await;
    assert_eq!(keyed.status, 405);
    assert!(keyed.headers.contains_key("allow"), "{:?}", keyed.headers);
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_leave_out_what_they_cannot_read_and_count_it() {
    let federation = Federation::with_hospitals(1).await;
    let api = federation.management(0);
    let metrics = |api: Management| async move { api.metrics().await };
    let healthy = metrics(api.clone()).await;
    assert!(healthy.lines().any(|l| l.starts_with("hanse_audit_log_entries ")), "{healthy}");
    assert!(healthy.contains("hanse_metrics_read_failures_total 0"), "{healthy}");
    federation.connectors[0].running.state.store.close().await;
    let failing = metrics(api.clone()).await;
    for family in ["hanse_audit_log_entries", "hanse_negotiations", "hanse_transfers", "hanse_outbox_messages"] {
        assert_eq!(sample(&failing, family, &[]), None, "no plausible zero: {failing}");
    }
    // Both process counts and the log's size could not be read.
    assert_eq!(sample(&failing, "hanse_metrics_read_failures_total", &[]), Some(3.0), "{failing}");
    assert!(sample(&failing, "process_resident_memory_bytes", &[]).is_some(), "what can be read is shown");
    // Readiness names what is down: a load balancer stops sending requests.
    let ready = api.client.get(format!("{}/health/ready", api.base)).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "unavailable");
    assert_eq!(ready["components"]["store"]["status"], "down", "{ready}");
    assert_eq!(ready["components"]["catalogue"]["status"], "up", "{ready}");
    federation.shutdown().await;
}

/// Process queries whose criteria and order the rows answer are paged in SQL; the answer is the one the in-memory
/// path gives (which a criterion only bodies answer, here the protocol, always true, forces).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_queries_paged_in_sql_answer_as_in_memory() {
    let backends = hanse::testing::backends();
    let federation = Federation::start(&[backends[0], *backends.last().unwrap()]).await;
    let (provider, consumer) = (&federation.connectors[0], federation.management(1));
    offer_dataset(&federation, "t2d-cohort", research_terms(), false).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let offer = catalogue_offer(&consumer, provider, "t2d-cohort").await;
        // Every third asks for a purpose the terms refuse: those end TERMINATED.
        let purpose = if i % 3 == 2 { "dpv:CommercialResearch" } else { RESEARCH };
        ids.push(negotiate(&consumer, provider, offer, json!({"purpose": purpose})).await);
    }
    for id in &ids {
        until("every negotiation ends", async || {
            let state = consumer.get(&format!("/management/v3/contractnegotiations/{id}")).await.body["state"].clone();
            state == "FINALIZED" || state == "TERMINATED"
        })
        .await;
    }
    let provider_api = federation.management(0);
    let always = json!({"operandLeft": "protocol", "operator": "=", "operandRight": "dataspace-protocol-http:2025-1"});
    let specs = [
        json!({}),
        json!({"sortField": "createdAt", "sortOrder": "DESC", "offset": 2, "limit": 3}),
        json!({"sortOrder": "DESC", "limit": 4}),
        json!({"filterExpression": [{"operandLeft": "state", "operator": "=", "operandRight": "FINALIZED"}]}),
        json!({"filterExpression": [{"operandLeft": "state", "operator": "in", "operandRight": ["TERMINATED", "REQUESTED"]}],
               "sortField": "stateTimestamp"}),
        json!({"filterExpression": [{"operandLeft": "counterPartyId", "operator": "=", "operandRight": provider.participant_id()},
                                    {"operandLeft": "type", "operator": "=", "operandRight": "CONSUMER"}]}),
        json!({"filterExpression": [{"operandLeft": "id", "operator": "!=", "operandRight": ids[0]}], "offset": 1}),
        json!({"filterExpression": [{"operandLeft": "type", "operator": "=", "operandRight": "PROVIDER"}]}),
    ];
    for api in [&consumer, &provider_api] {
        for path in ["/management/v3/contractnegotiations/request", "/management/v3/transferprocesses/request"] {
            for spec in &specs {
                let paged = api.post(path, spec).await;
                assert_eq!(paged.status, 200, "{spec}: {:#}", paged.body);
                let mut in_memory = spec.clone();
                let mut filter = spec["filterExpression"].as_array().cloned().unwrap_or_default();
                filter.push(always.clone());
                in_memory["filterExpression"] = Value::Array(filter);
                let expected = api.post(path, &in_memory).await;
                let ids = |answer: &Answer| -> Vec<Value> {
                    answer.body.as_array().unwrap().iter().map(|p| p["@id"].clone()).collect()
                };
                assert_eq!(ids(&paged), ids(&expected), "{path} {spec}");
                assert_eq!(paged.body, expected.body, "{path} {spec}");
            }
        }
    }
    let finalized = consumer.post("/management/v3/contractnegotiations/request", &specs[3]).await;
    assert!(!finalized.body.as_array().unwrap().is_empty(), "some negotiations were agreed");
    federation.shutdown().await;
}
