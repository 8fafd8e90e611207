//! Every message in every state, at the provider. The test plays the consumer itself over raw DSP (as the DSP TCK
//! does), with a callback listener that records what the provider sends: each message the table forbids in a state is
//! refused with a valid `ContractNegotiationError` and leaves the state unchanged, and every message the provider put
//! on the wire validates against the official schema.

use std::sync::{Arc, Mutex};

use hanse::negotiation::machine::{self, Message, Role, State};
use hanse_tests::*;
use serde_json::{Value, json};

const CONSUMER: &str = "did:web:tck-consumer.example";

/// A DSP peer's callback listener that accepts everything and keeps what it got.
async fn callback_listener() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().fallback(move |body: String| {
        let sink = sink.clone();
        async move {
            if let Ok(message) = serde_json::from_str::<Value>(&body) {
                sink.lock().unwrap().push(message);
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/protocol/2025-1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn dsp(kind: Message, provider_pid: &str, consumer_pid: &str, offer: &Value) -> (String, Value) {
    let mut message = json!({"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": kind.type_name(),
                             "providerPid": provider_pid, "consumerPid": consumer_pid});
    let endpoint = match kind {
        Message::ContractRequest => {
            message["offer"] = offer.clone();
            "request"
        }
        Message::ContractOffer => {
            message["offer"] = offer.clone();
            "offers"
        }
        Message::AcceptedEvent => {
            message["eventType"] = json!("ACCEPTED");
            "events"
        }
        Message::FinalizedEvent => {
            message["eventType"] = json!("FINALIZED");
            "events"
        }
        Message::ContractAgreement => {
            let mut agreement = offer.clone();
            agreement["@type"] = json!("Agreement");
            agreement["assigner"] = json!("did:web:x");
            agreement["assignee"] = json!(CONSUMER);
            agreement["timestamp"] = json!("2026-11-23T12:00:00Z");
            message["agreement"] = agreement;
            "agreement"
        }
        Message::ContractAgreementVerification => "agreement/verification",
        Message::ContractNegotiationTermination => {
            message["code"] = json!("1");
            "termination"
        }
    };
    (format!("/negotiations/{provider_pid}/{endpoint}"), message)
}

const KINDS: [Message; 7] = [
    Message::ContractRequest,
    Message::ContractOffer,
    Message::AcceptedEvent,
    Message::ContractAgreement,
    Message::ContractAgreementVerification,
    Message::FinalizedEvent,
    Message::ContractNegotiationTermination,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_accepts_only_what_the_table_allows_in_every_state() {
    let federation = Federation::with_hospitals(1).await;
    offer_dataset(&federation, "t2d", research_terms(), true).await;
    let provider = federation.management(0);
    let base = format!("{}/protocol/2025-1", federation.connectors[0].public_url());
    let (callback, received) = callback_listener().await;
    let catalog =
        dsp_post(&federation.client, &format!("{base}/catalog/request"), Some(CONSUMER), &catalog_request(json!([])))
            .await;
    let mut offer = catalog.body["dataset"][0]["hasPolicy"][0].clone();
    offer["target"] = json!("t2d");
    let mut checked = 0;

    for (n, target) in [
        State::Requested,
        State::Offered,
        State::Accepted,
        State::Agreed,
        State::Verified,
        State::Finalized,
        State::Terminated,
    ]
    .into_iter()
    .enumerate()
    {
        // A fresh negotiation, driven to `target` by raw consumer messages and the provider's operator.
        let consumer_pid = format!("urn:uuid:tck-{n}");
        let start = json!({"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": "ContractRequestMessage",
            "consumerPid": consumer_pid, "offer": offer, "callbackAddress": callback, "https://w3id.org/hanse/ns/purpose": "DUO:0000007"});
        let created =
            dsp_post(&federation.client, &format!("{base}/negotiations/request"), Some(CONSUMER), &start).await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        let pid = created.body["providerPid"].as_str().unwrap().to_owned();
        let call = |call: &'static str| {
            let provider = provider.clone();
            let pid = pid.clone();
            async move {
                let answer = provider
                    .post(
                        &format!("/management/v3/contractnegotiations/{pid}/{call}"),
                        &json!({"offer": {"@type": "Offer", "permission": [{"action": "use"}]}}),
                    )
                    .await;
                assert_eq!(answer.status, 200, "{call}: {:#}", answer.body);
            }
        };
        let send = |kind: Message| {
            let (path, message) = dsp(kind, &pid, &consumer_pid, &offer);
            let (client, url) = (federation.client.clone(), format!("{base}{path}"));
            async move {
                let answer = dsp_post(&client, &url, Some(CONSUMER), &message).await;
                assert_eq!(answer.status, 200, "{kind:?}: {:#}", answer.body);
            }
        };
        match target {
            State::Requested => {}
            State::Offered => call("offer").await,
            State::Accepted => {
                call("offer").await;
                send(Message::AcceptedEvent).await;
            }
            State::Agreed => call("approve").await,
            State::Verified => {
                call("approve").await;
                send(Message::ContractAgreementVerification).await;
            }
            State::Finalized => {
                call("approve").await;
                send(Message::ContractAgreementVerification).await;
                call("finalize").await;
            }
            State::Terminated => send(Message::ContractNegotiationTermination).await,
        }
        let state = || {
            let provider = provider.clone();
            let pid = pid.clone();
            async move {
                provider.get(&format!("/management/v3/contractnegotiations/{pid}/state")).await.body["state"].clone()
            }
        };
        assert_eq!(state().await, target.name());

        for kind in KINDS {
            if machine::may_receive(Role::Provider, Some(target), kind) {
                continue; // legal here: the flow tests take these paths
            }
            let (path, mut message) = dsp(kind, &pid, &consumer_pid, &offer);
            // A new message, not a redelivery of the one that led here (which would be answered as before).
            message["https://w3id.org/hanse/ns/probe"] = json!(checked);
            let answer = dsp_post(&federation.client, &format!("{base}{path}"), Some(CONSUMER), &message).await;
            assert_eq!(answer.status, 400, "{kind:?} in {target:?}: {:#}", answer.body);
            assert_eq!(answer.body["@type"], "ContractNegotiationError");
            assert_valid_dsp(&answer.body);
            assert_eq!(state().await, target.name(), "{kind:?} in {target:?} changed the state");
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked} refusals checked");

    // Everything the provider sent to the consumer's callback address is valid DSP.
    let received = received.lock().unwrap().clone();
    let types: std::collections::BTreeSet<String> =
        received.iter().map(|m| m["@type"].as_str().unwrap_or("?").to_owned()).collect();
    for expected in ["ContractOfferMessage", "ContractAgreementMessage", "ContractNegotiationEventMessage"] {
        assert!(types.contains(expected), "the provider sent no {expected}: {types:?}");
    }
    for message in &received {
        assert_valid_dsp(message);
    }
    federation.shutdown().await;
}
