//! Traces across connectors: two `hanse run` processes export their spans over OTLP/HTTP (JSON) to a collector, a
//! negotiation runs between them, and the spans of both carry one trace id — the W3C `traceparent` travelled with
//! every DSP message, from the consumer's management request to the provider and back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use serde_json::{Value, json};

mod support;
use support::{Node, post};

/// An OTLP/HTTP collector for the test: keeps every span it is sent as `(service, trace id, span id, parent, name)`.
async fn collector() -> (String, Arc<Mutex<Vec<[String; 5]>>>) {
    let spans: Arc<Mutex<Vec<[String; 5]>>> = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                let export: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                    let service = resource["resource"]["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|a| a["key"] == "service.name")
                        .and_then(|a| a["value"]["stringValue"].as_str())
                        .unwrap_or_default()
                        .to_owned();
                    for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                        for span in scope["spans"].as_array().into_iter().flatten() {
                            let text = |key: &str| span[key].as_str().unwrap_or_default().to_owned();
                            kept.lock().unwrap().push([
                                service.clone(),
                                text("traceId"),
                                text("spanId"),
                                text("parentSpanId"),
                                text("name"),
                            ]);
                        }
                    }
                }
                axum::Json(json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_negotiation_is_one_trace_on_both_connectors() {
    let (endpoint, spans) = collector().await;
    let mut provider = Node::init();
    let mut consumer = Node::init();
    for (node, name) in [(&mut provider, "provider"), (&mut consumer, "consumer")] {
        node.env.push(("HANSE_TRACES_OTLP_ENDPOINT".into(), endpoint.clone()));
        node.env.push(("HANSE_TRACES_PROTOCOL".into(), "http/json".into()));
        node.env.push(("HANSE_TRACES_SERVICE_NAME".into(), name.into()));
        node.env.push(("RUST_LOG".into(), "info".into()));
        node.start().await;
    }
    let client = reqwest::Client::new();
    let offer = support::open_offer(&client, &provider, &consumer).await;
    let started = post(
        &client,
        &consumer,
        "/v3/contractnegotiations",
        json!({"counterPartyAddress": provider.protocol(), "counterPartyId": provider.participant,
               "protocol": "dataspace-protocol-http:2025-1", "policy": offer}),
    )
    .await;
    let id = started["@id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let state = client
            .get(format!("{}/v3/contractnegotiations/{id}/state", consumer.management()))
            .header("X-Api-Key", &consumer.api_key)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        if state["state"] == "FINALIZED" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not finalized: {state}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A graceful stop exports what is left.
    provider.stop();
    consumer.stop();

    let spans = spans.lock().unwrap().clone();
    let traces_of = |service: &str| -> BTreeSet<String> {
        spans.iter().filter(|s| s[0] == service).map(|s| s[1].clone()).collect()
    };
    let shared: BTreeSet<String> = traces_of("consumer").intersection(&traces_of("provider")).cloned().collect();
    assert!(!shared.is_empty(), "no trace on both connectors among {} spans", spans.len());
    // The trace holds the provider's answer to the request and the consumer's to the agreement: the provider's
    // request span is a child of a consumer span, and the other way round.
    let in_trace: Vec<&[String; 5]> = spans.iter().filter(|s| shared.contains(&s[1])).collect();
    let owner: BTreeMap<&str, &str> = in_trace.iter().map(|s| (s[2].as_str(), s[0].as_str())).collect();
    let crossings: BTreeSet<(&str, &str)> = in_trace
        .iter()
        .filter_map(|s| {
            owner.get(s[3].as_str()).filter(|parent| **parent != s[0]).map(|parent| (*parent, s[0].as_str()))
        })
        .collect();
    assert!(crossings.contains(&("consumer", "provider")), "{crossings:?}");
    assert!(crossings.contains(&("provider", "consumer")), "{crossings:?}");
}
