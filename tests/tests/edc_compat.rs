//! What EDC's clients rely on, point by point, over real HTTP between two connectors, on the Management API v3 and v4:
//! the data plane's token forms and HttpData proxy switches, EDC's allow-all policy, offers named by id alone, loud
//! QuerySpec errors, EDC's boolean query parameters, unknown contexts, and v4's context.

use std::sync::{Arc, Mutex};

use hanse_tests::{
    Federation, Management, TestConnector, contract_definition, health_asset, policy_definition, wait_for_negotiation,
    wait_for_transfer,
};
use serde_json::{Value, json};

const V2: &str = "https://w3id.org/edc/connector/management/v2";

/// A backend that answers every request with its method, path, query and body, as JSON.
async fn echo_backend() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |method: axum::http::Method, uri: axum::http::Uri, body: String| {
        let log = log.clone();
        async move {
            log.lock().expect("lock").push(format!("{method} {uri}"));
            axum::Json(json!({"method": method.as_str(), "uri": uri.to_string(), "body": body}))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/records", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

/// An HttpData asset on `base_url` with EDC's proxy switches as given, offered to everyone under EDC's allow-all.
async fn offer_http(api: &Management, id: &str, base_url: &str, switches: Value) {
    let mut asset = health_asset(id, "Proxied registry", &["registry"], 10);
    asset["dataAddress"] = json!({"type": "HttpData", "baseUrl": base_url});
    for (name, value) in switches.as_object().expect("switches") {
        asset["dataAddress"][name] = value.clone();
    }
    api.create("/management/v3/assets", asset).await;
    let allow_all = json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [],
                           "prohibition": [], "obligation": []});
    api.create("/management/v3/policydefinitions", policy_definition(&format!("{id}-open"), allow_all)).await;
    api.create(
        "/management/v3/contractdefinitions",
        contract_definition(&format!("{id}-cd"), &format!("{id}-open"), &format!("{id}-open"), &[id]),
    )
    .await;
}

/// Negotiates `dataset` by its offer id alone (as EDC clients do) and starts a pull: the endpoint and token.
async fn pull_address(consumer: &Management, provider: &TestConnector, dataset: &str) -> (String, String, String) {
    let protocol = format!("{}/protocol/2025-1", provider.public_url());
    let catalog = consumer
        .post(
            "/management/v3/catalog/request",
            &json!({"counterPartyAddress": protocol, "protocol": "dataspace-protocol-http:2025-1"}),
        )
        .await;
    let listed = catalog.body["dataset"].as_array().and_then(|d| d.iter().find(|d| d["@id"] == dataset)).cloned();
    let listed = listed.unwrap_or_else(|| panic!("{dataset} not in {:#}", catalog.body));
    assert_eq!(
        listed["hasPolicy"][0]["permission"],
        json!([{"action": "use"}]),
        "allow-all is listed as a use permission"
    );
    let offer_id = listed["hasPolicy"][0]["@id"].clone();
    let started = consumer
        .post(
            "/management/v3/edrs",
            &json!({"counterPartyAddress": protocol, "protocol": "dataspace-protocol-http:2025-1",
              "policy": {"@id": offer_id, "assigner": provider.participant_id(), "target": dataset}}),
        )
        .await;
    assert_eq!(started.status, 200, "{:#}", started.body);
    let negotiation_id = started.body["@id"].as_str().expect("id").to_owned();
    let negotiation = wait_for_negotiation(consumer, &negotiation_id, "FINALIZED").await;
    // The Tractus-X SDK finds the EDR of its negotiation by `contractNegotiationId`.
    let filter = json!({"filterExpression": [{"operandLeft": "contractNegotiationId", "operator": "=",
                                              "operandRight": negotiation_id}]});
    let mut entries = Value::Null;
    hanse_tests::until("the EDR", async || {
        entries = consumer.post("/management/v3/edrs/request", &filter).await.body;
        entries.as_array().is_some_and(|e| e.len() == 1)
    })
    .await;
    assert_eq!(entries[0]["agreementId"], negotiation["contractAgreementId"], "{entries:#}");
    let transfer = entries[0]["transferProcessId"].as_str().expect("a transfer").to_owned();
    wait_for_transfer(consumer, &transfer, "STARTED").await;
    let address = consumer.get(&format!("/management/v3/edrs/{transfer}/dataaddress?auto_refresh=True")).await;
    assert_eq!(address.status, 200, "{:#}", address.body);
    let text =
        |name: &str| address.body[name].as_str().unwrap_or_else(|| panic!("{name} in {:#}", address.body)).to_owned();
    (text("endpoint"), text("authorization"), transfer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_data_plane_takes_edc_tokens_and_lets_through_only_what_the_data_address_allows() {
    let federation = Federation::with_hospitals(2).await;
    let (provider, consumer) = (federation.management(0), federation.management(1));
    let (backend, seen) = echo_backend().await;
    offer_http(&provider, "closed", &backend, json!({})).await;
    offer_http(
        &provider,
        "open",
        &backend,
        json!({"proxyPath": "true", "proxyQueryParams": true,
        "proxyMethod": "TRUE", "proxyBody": "true"}),
    )
    .await;
    let invalid = provider
        .post(
            "/management/v3/assets",
            &json!({"@id": "bad", "properties": {}, "dataAddress": {"type": "HttpData",
              "baseUrl": backend, "proxyPath": "yes"}}),
        )
        .await;
    assert_eq!(invalid.status, 400);
    assert_eq!(invalid.body[0]["path"], "dataAddress.proxyPath", "{:#}", invalid.body);

    let client = reqwest::Client::new();
    let (endpoint, token, _) = pull_address(&consumer, &federation.connectors[0], "closed").await;
    let get = |url: String, authorization: String| {
        let client = client.clone();
        async move { client.get(url).header("Authorization", authorization).send().await.expect("data plane") }
    };
    // EDC's form, the token alone, and the bearer form both open the data; any other scheme does not.
    for authorization in [token.clone(), format!("Bearer {token}")] {
        let response = get(endpoint.clone(), authorization).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("the backend's JSON");
        assert_eq!(body["uri"], "/records");
    }
    assert_eq!(get(endpoint.clone(), format!("Basic {token}")).await.status(), 401);
    // With every switch off, the consumer's path, query and method are refused, not dropped.
    let refused = get(format!("{endpoint}/sub"), token.clone()).await;
    assert_eq!(refused.status(), 404);
    assert!(refused.text().await.unwrap().contains("proxyPath"));
    let refused = get(format!("{endpoint}?x=1"), token.clone()).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("proxyQueryParams"));
    let posted = client.post(&endpoint).header("Authorization", &token).body("x").send().await.unwrap();
    assert_eq!(posted.status(), 405);

    let (endpoint, token, _) = pull_address(&consumer, &federation.connectors[0], "open").await;
    let response = get(format!("{endpoint}/a/b?x=1&y=two"), token.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["uri"], "/records/a/b?x=1&y=two");
    let response = get(format!("{endpoint}/"), token.clone()).await;
    assert_eq!(response.json::<Value>().await.unwrap()["uri"], "/records");
    let posted =
        client.post(format!("{endpoint}/rows")).header("Authorization", &token).body("{\"n\":1}").send().await.unwrap();
    assert_eq!(posted.status(), 200);
    let echoed: Value = posted.json().await.unwrap();
    assert_eq!((echoed["method"].as_str(), echoed["body"].as_str()), (Some("POST"), Some("{\"n\":1}")));
    let requests = seen.lock().unwrap().clone();
    assert!(requests.iter().all(|r| r.split(' ').nth(1).is_some_and(|p| p.starts_with("/records"))), "{requests:?}");
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edc_allow_all_reads_as_use_without_constraints_on_v3_and_v4() {
    let federation = Federation::with_hospitals(1).await;
    let api = federation.management(0);
    let v4 = json!({"@context": [V2], "@type": "PolicyDefinition", "@id": "open-v4",
                    "policy": {"@type": "Set", "permission": [], "prohibition": [], "obligation": []}});
    let created = api.post("/management/v4/policydefinitions", &v4).await;
    assert_eq!(created.status, 200, "{:#}", created.body);
    assert_eq!(created.body["@context"], json!([V2]), "v4 answers carry EDC's v4 context");
    let v3 = policy_definition(
        "open-v3",
        json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
                                                 "permission": [], "prohibition": [], "obligation": []}),
    );
    assert_eq!(api.post("/management/v3/policydefinitions", &v3).await.status, 200);
    for (version, id) in [("v3", "open-v3"), ("v4", "open-v4")] {
        let validated = api.post(&format!("/management/{version}/policydefinitions/{id}/validate"), &json!({})).await;
        assert_eq!(validated.body["isValid"], true, "{:#}", validated.body);
        assert!(validated.body["notes"][0].as_str().unwrap().contains("EDC's allow-all"), "{:#}", validated.body);
        let explained = api
            .post(
                &format!("/management/{version}/policydefinitions/{id}/explain"),
                &json!({"context": {"participant": "did:web:anyone.example"}}),
            )
            .await;
        assert_eq!(explained.body["decision"]["permitted"], true, "{:#}", explained.body);
        assert!(explained.body["notes"][0].as_str().unwrap().contains("without constraints"));
        let read = api.get(&format!("/management/{version}/policydefinitions/{id}")).await;
        assert_eq!(read.body["policy"]["permission"], json!([{"action": "use"}]), "{:#}", read.body);
    }
    // A policy of obligations only is no allow-all: it is still refused.
    let duties = policy_definition(
        "duties",
        json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
        "permission": [], "obligation": [{"action": "delete"}]}),
    );
    let stored = api.post("/management/v3/policydefinitions", &duties).await;
    assert_eq!(stored.status, 200, "an obligation-only policy is a policy: {:#}", stored.body);
    let validated = api.post("/management/v3/policydefinitions/duties/validate", &json!({})).await;
    assert_eq!(validated.body["notes"], json!([]), "{:#}", validated.body);
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offers_named_by_id_are_filled_in_and_nothing_invalid_is_sent() {
    let federation = Federation::with_hospitals(2).await;
    let (provider, consumer) = (federation.management(0), federation.management(1));
    let (backend, _) = echo_backend().await;
    offer_http(&provider, "registry", &backend, json!({})).await;
    let protocol = format!("{}/protocol/2025-1", federation.connectors[0].public_url());
    let by_id = |offer: Value| {
        json!({"@context": [V2], "@type": "ContractRequest", "counterPartyAddress": protocol,
        "protocol": "dataspace-protocol-http:2025-1", "policy": offer})
    };
    let provider_id = federation.connectors[0].participant_id().to_owned();
    let unknown = consumer
        .post(
            "/management/v4/contractnegotiations",
            &by_id(json!({"@type": "Offer", "@id": "urn:no-such-offer",
              "assigner": provider_id, "target": "registry"})),
        )
        .await;
    assert_eq!(unknown.status, 400, "{:#}", unknown.body);
    assert!(unknown.body.to_string().contains("lists no offer `urn:no-such-offer`"), "{:#}", unknown.body);
    let duties_only = consumer
        .post(
            "/management/v3/contractnegotiations",
            &by_id(json!({"@type": "Offer", "@id": "urn:x",
              "assigner": provider_id, "target": "registry", "obligation": [{"action": "delete"}]})),
        )
        .await;
    assert_eq!(duties_only.status, 400, "{:#}", duties_only.body);
    assert!(duties_only.body.to_string().contains("at least one permission or prohibition"), "{:#}", duties_only.body);
    let none = consumer.post("/management/v3/contractnegotiations/request", &json!({})).await;
    assert_eq!(none.body, json!([]), "nothing was started or sent");
    // EDC's dataset request reads one dataset of the peer's catalogue, with its offers.
    for version in ["v3", "v4"] {
        let request = |id: &str| {
            json!({"@context": [V2], "@type": "DatasetRequest", "@id": id,
            "counterPartyAddress": protocol, "protocol": "dataspace-protocol-http:2025-1"})
        };
        let found =
            consumer.post(&format!("/management/{version}/catalog/dataset/request"), &request("registry")).await;
        assert_eq!((found.status, &found.body["@id"]), (200, &json!("registry")), "{:#}", found.body);
        assert!(found.body["hasPolicy"][0]["@id"].is_string(), "{:#}", found.body);
        let missing =
            consumer.post(&format!("/management/{version}/catalog/dataset/request"), &request("nothing")).await;
        assert_eq!(missing.status, 404, "{:#}", missing.body);
    }
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_on_unknown_fields_and_unknown_contexts_are_loud() {
    let federation = Federation::with_hospitals(1).await;
    let api = federation.management(0);
    api.create("/management/v3/assets", health_asset("registry", "Registry", &["registry"], 10)).await;
    for version in ["v3", "v4"] {
        for (resource, field) in [
            ("contractnegotiations", "counterPartyID"),
            ("transferprocesses", "contract_id"),
            ("contractagreements", "signingDate"),
            ("contractdefinitions", "accessPolicy"),
            ("edrs", "transferId"),
        ] {
            let query = json!({"filterExpression": [{"operandLeft": field, "operator": "=", "operandRight": "x"}]});
            let answer = api.post(&format!("/management/{version}/{resource}/request"), &query).await;
            assert_eq!(answer.status, 400, "{version} {resource}: {:#}", answer.body);
            assert_eq!(answer.body[0]["path"], "filterExpression[0].operandLeft");
            assert!(answer.body[0]["message"].as_str().unwrap().contains(&format!("`{field}` is not a field")));
            let sorted =
                api.post(&format!("/management/{version}/{resource}/request"), &json!({"sortField": field})).await;
            assert_eq!(sorted.status, 400, "{version} {resource} sorted: {:#}", sorted.body);
        }
        // EDC's names for a transfer's agreement are all accepted.
        for field in ["contractId", "contractAgreementId", "https://w3id.org/edc/v0.0.1/ns/contractId"] {
            let query = json!({"filterExpression": [{"operandLeft": field, "operator": "=", "operandRight": "x"}]});
            let answer = api.post(&format!("/management/{version}/transferprocesses/request"), &query).await;
            assert_eq!((answer.status, &answer.body), (200, &json!([])), "{field}");
        }
        // Assets' properties are their own: any name may be asked for.
        let query = json!({"filterExpression": [{"operandLeft": "anyProperty", "operator": "=", "operandRight": "x"}]});
        assert_eq!(api.post(&format!("/management/{version}/assets/request"), &query).await.status, 200);

        let foreign = json!({"@context": ["https://example.org/unknown-context.jsonld"], "@id": "x", "properties": {},
                             "dataAddress": {"type": "HttpData", "baseUrl": "https://example.org"}});
        let refused = api.post(&format!("/management/{version}/assets"), &foreign).await;
        assert_eq!(refused.status, 400, "{:#}", refused.body);
        assert!(refused.body.to_string().contains("https://example.org/unknown-context.jsonld"), "{:#}", refused.body);

        let flag = api.get(&format!("/management/{version}/edrs/nothing/dataaddress?auto_refresh=TRUE")).await;
        assert_eq!(flag.status, 404, "TRUE is a boolean: the answer is about the transfer, {:#}", flag.body);
        let flag = api.get(&format!("/management/{version}/edrs/nothing/dataaddress?auto_refresh=maybe")).await;
        assert_eq!(flag.status, 400);
        assert!(flag.body[0]["message"].as_str().is_some_and(|m| m.contains("maybe")), "{:#}", flag.body);
    }
    // v3 answers carry an inline context; v4 answers EDC's v4 context, on single answers and in lists.
    let v3 = api.post("/management/v3/assets/request", &json!({})).await;
    let v4 = api.post("/management/v4/assets/request", &json!({})).await;
    assert_eq!(v3.body[0]["@id"], "registry");
    assert!(v3.body[0]["@context"].is_object(), "{:#}", v3.body);
    assert_eq!((&v4.body[0]["@id"], &v4.body[0]["@context"]), (&json!("registry"), &json!([V2])), "{:#}", v4.body);
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_space_context_the_operator_adds_is_read_offline() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let iri = "https://federation.example/2026/1/policy/context.jsonld";
    let file = folder.path().join("federation-policy.jsonld");
    std::fs::write(&file, r#"{"@context": {"fed": "https://federation.example/ns#", "cohortCode": "fed:cohortCode"}}"#)
        .expect("write the context");
    let backend = hanse::testing::backends()[0];
    let connector = TestConnector::start_with(backend, |config| {
        config.trust.contexts.insert(iri.to_owned(), file.clone());
    })
    .await;
    let client = reqwest::Client::new();
    let api = Management::of(&connector, &client);
    let asset = json!({"@context": [iri, {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}], "@id": "coded",
        "properties": {"cohortCode": "T2D-2026"}, "dataAddress": {"type": "HttpData", "baseUrl": "https://ehr.example/x"}});
    let created = api.post("/management/v3/assets", &asset).await;
    assert_eq!(created.status, 200, "{:#}", created.body);
    let read = api.get("/management/v3/assets/coded").await;
    assert_eq!(read.body["properties"]["https://federation.example/ns#cohortCode"], "T2D-2026", "{:#}", read.body);
    let other = json!({"@context": ["https://federation.example/2026/2/policy/context.jsonld"], "@id": "other",
        "properties": {}, "dataAddress": {"type": "HttpData", "baseUrl": "https://ehr.example/x"}});
    let refused = api.post("/management/v3/assets", &other).await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.to_string().contains("trust.contexts"), "{:#}", refused.body);
    connector.running.shutdown().await;
}
