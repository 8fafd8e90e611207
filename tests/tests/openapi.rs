//! The management API against its own OpenAPI document, judged by other people's tools (PyPI, pinned in
//! `tests/interop/api-requirements.txt`): openapi-spec-validator checks the document is valid OpenAPI 3.1, and
//! schemathesis calls every operation of a live connector with examples, edge cases and random data, checking each
//! answer: no server error, only documented status codes and content types, every body as its schema says, and
//! requests that break the schema refused.
//!
//! The one check left out is `positive_data_acceptance` (a request the schema admits must succeed): the schemas
//! cannot say everything the connector checks — that an agreement exists, that `from ≤ to` — so a refusal of such a
//! request is right. A counter-party that cannot be reached is answered 502, as documented for the operations that
//! call one; the addresses schemathesis invents never answer, so for those operations a 502 is expected, and for no
//! other.

use std::ffi::OsStr;

use hanse_tests::*;
use serde_json::{Value, json};

/// Examples per operation and phase: about 12 000 requests in all.
const EXAMPLES: &str = "100";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_api_keeps_to_its_openapi_document() {
    let federation = Federation::with_hospitals(1).await;
    let api = federation.management(0);
    // Something to find: one offer, so that reads of existing resources are exercised too.
    offer_dataset(&federation, "cohort", research_terms(), false).await;

    // The document and its page are open; the page is served from the binary.
    let document = federation.client.get(format!("{}/management/openapi.json", api.base)).send().await.unwrap();
    assert_eq!(document.status(), 200);
    let document: Value = document.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let page = federation.client.get(format!("{}/management/docs/", api.base)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"), "the documentation page");

    // Every route is documented, EDC's v3 and v4 alike, with unique operation ids.
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/management/v3/assets",
        "/management/v4/contractnegotiations/{id}/{call}",
        "/management/v3/audit/head",
        "/management/v3/jobs",
        "/management/sparql",
        "/metrics",
        "/health/ready",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    let mut ids: Vec<&str> = paths
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|operation| operation["operationId"].as_str())
        .collect();
    let operations = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), operations, "operation ids are unique");
    assert!(operations >= 100, "{operations} operations");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, schemathesis_config(&document)).unwrap();

    let python = tokio::task::spawn_blocking(interop::api_python).await.expect("install the API tools");
    let bin = python.parent().unwrap().to_owned();
    let validator = bin.join("openapi-spec-validator");
    let (valid, printed) =
        tokio::task::spawn_blocking(move || interop::outcome(&validator, &[file.as_os_str()])).await.unwrap();
    assert!(valid, "openapi-spec-validator:\n{printed}");

    let url = format!("{}/management/openapi.json", api.base);
    let key = format!("X-Api-Key: {}", api.api_key);
    let metrics = format!("Authorization: Bearer {}", api.metrics_key.clone().unwrap());
    let st = bin.join("st");
    let (passed, printed) = tokio::task::spawn_blocking(move || {
        let args: Vec<&OsStr> = [
            "--config-file",
            config.to_str().unwrap(),
            "run",
            &url,
            "-H",
            &key,
            "-H",
            &metrics,
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            EXAMPLES,
            "--generation-database",
            "none",
            // One worker: CPython 3.11's parser is not safe in concurrent threads, and schemathesis parses sources.
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--seed",
            "20261206",
            "--no-color",
        ]
        .into_iter()
        .map(OsStr::new)
        .collect();
        interop::outcome(&st, &args)
    })
    .await
    .unwrap();
    let summary = printed.rsplit_once("SUMMARY").map_or(printed.as_str(), |(_, summary)| summary);
    eprintln!("schemathesis:{summary}");
    assert!(passed, "schemathesis found problems:\n{printed}");
    assert!(summary.contains("Tested: ") && !summary.contains("Tested: 0"), "{summary}");
    federation.shutdown().await;
}

/// The run's configuration: for each operation that documents a 502 (it calls a counter-party), a 502 is not a
/// server error of the connector.
fn schemathesis_config(document: &Value) -> String {
    let mut text = String::new();
    for item in document["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            if operation["responses"].get("502").is_some() {
                let id = operation["operationId"].as_str().unwrap();
                text.push_str(&format!(
                    "[[operations]]\ninclude-operation-id = {}\nchecks.not_a_server_error.expected-statuses = \
                     [\"2XX\", \"3XX\", \"4XX\", \"502\"]\n\n",
                    json!(id)
                ));
            }
        }
    }
    text
}
