//! Every message in every state, at the provider. The test plays the consumer itself over raw DSP (as the DSP TCK
//! does), with a callback listener that records what the provider sends: each message the table forbids in a state is
//! refused with a valid `ContractNegotiationError` and leaves the state unchanged, and every message the provider put
//! on the wire validates against the official schema.

use hanse::negotiation::machine::{self, Message, Role, State};
use hanse_tests::*;
use serde_json::{Value, json};

fn dsp(kind: Message, consumer: &str, provider_pid: &str, consumer_pid: &str, offer: &Value) -> (String, Value) {
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
            agreement["assignee"] = json!(consumer);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_accepts_only_what_the_table_allows_in_every_state() {
    let federation = Federation::with_hospitals(1).await;
    offer_dataset(&federation, "t2d", research_terms(), true).await;
    let provider = federation.management(0);
    let base = format!("{}/protocol/2025-1", federation.connectors[0].public_url());
    let consumer = &TestParticipant::start().await;
    let callback = format!("{}/protocol/2025-1", consumer.url);
    let catalog =
        dsp_post(&federation.client, &format!("{base}/catalog/request"), Some(consumer), &catalog_request(json!([])))
            .await;
    let mut offer = catalog.body["dataset"][0]["hasPolicy"][0].clone();
    offer["target"] = json!("t2d");
    let mut checked = 0;

    for (n, target) in machine::ALL_STATES.into_iter().enumerate() {
        // A fresh negotiation, driven to `target` by raw consumer messages and the provider's operator.
        let consumer_pid = format!("urn:uuid:tck-{n}");
        let start = json!({"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": "ContractRequestMessage",
            "consumerPid": consumer_pid, "offer": offer, "callbackAddress": callback, "https://w3id.org/hanse/ns/purpose": "DUO:0000007"});
        let created =
            dsp_post(&federation.client, &format!("{base}/negotiations/request"), Some(consumer), &start).await;
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
            let (path, message) = dsp(kind, &consumer.did, &pid, &consumer_pid, &offer);
            let (client, url) = (federation.client.clone(), format!("{base}{path}"));
            async move {
                let answer = dsp_post(&client, &url, Some(consumer), &message).await;
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

        for kind in machine::ALL_MESSAGES {
            if machine::may_receive(Role::Provider, Some(target), kind) {
                continue; // legal here: the flow tests take these paths
            }
            let (path, mut message) = dsp(kind, &consumer.did, &pid, &consumer_pid, &offer);
            // A new message, not a redelivery of the one that led here (which would be answered as before).
            message["https://w3id.org/hanse/ns/probe"] = json!(checked);
            let answer = dsp_post(&federation.client, &format!("{base}{path}"), Some(consumer), &message).await;
            assert_eq!(answer.status, 400, "{kind:?} in {target:?}: {:#}", answer.body);
            assert_eq!(answer.body["@type"], "ContractNegotiationError");
            assert_valid_dsp(&answer.body);
            assert_eq!(state().await, target.name(), "{kind:?} in {target:?} changed the state");
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked} refusals checked");

    // Everything the provider sent to the consumer's callback address is valid DSP. Its messages are delivered in the
    // background: the last one (the FINALIZED event) may still be on its way.
    let expected = ["ContractOfferMessage", "ContractAgreementMessage", "ContractNegotiationEventMessage"];
    until("the provider's offer, agreement and event at the consumer", async || {
        let received = consumer.received();
        expected.iter().all(|e| received.iter().any(|m| m["@type"] == *e))
    })
    .await;
    for message in &consumer.received() {
        assert_valid_dsp(message);
    }
    federation.shutdown().await;
}

/// The consumer-side endpoint of a message kind.
fn consumer_path(kind: Message, consumer_pid: &str) -> String {
    let endpoint = match kind {
        Message::ContractRequest => "request",
        Message::ContractOffer => "offers",
        Message::AcceptedEvent | Message::FinalizedEvent => "events",
        Message::ContractAgreement => "agreement",
        Message::ContractAgreementVerification => "agreement/verification",
        Message::ContractNegotiationTermination => "termination",
    };
    format!("/negotiations/{consumer_pid}/{endpoint}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_accepts_only_what_the_table_allows_in_every_state() {
    let federation = Federation::with_hospitals(1).await;
    let consumer = federation.management(0);
    let me = federation.connectors[0].participant_id().to_owned();
    let base = format!("{}/protocol/2025-1", federation.connectors[0].public_url());
    let (provider, received) = provider_listener().await;
    let provider = &provider;
    let provider_url = format!("{}/protocol/2025-1", provider.url);
    let terms = json!({"@type": "Offer", "@id": "urn:tck:offer", "target": "t2d", "assigner": provider.did, "permission": [{"action": "use"}]});
    let mut checked = 0;

    for (n, target) in machine::ALL_STATES.into_iter().enumerate() {
        let id = consumer
            .post(
                "/management/v3/contractnegotiations",
                &json!({"counterPartyAddress": provider_url, "counterPartyId": provider.did,
                "protocol": "dataspace-protocol-http:2025-1", "policy": terms, "autoAccept": false}),
            )
            .await
            .body["@id"]
            .as_str()
            .unwrap()
            .to_owned();
        let provider_pid = format!("urn:uuid:provider-of-{id}");
        // Wait until the first request reached the provider and its pid came back.
        until("the providerPid", async || {
            consumer.get(&format!("/management/v3/contractnegotiations/{id}")).await.body["correlationId"]
                == provider_pid.as_str()
        })
        .await;
        let message = |kind: Message, probe: Option<usize>| {
            let mut m = json!({"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": kind.type_name(),
                               "providerPid": provider_pid, "consumerPid": id});
            match kind {
                Message::ContractRequest | Message::ContractOffer => {
                    let mut offer = terms.clone();
                    offer["@id"] = json!(format!("urn:tck:offer:{n}"));
                    offer["permission"] = json!([{"action": "read"}]);
                    m["offer"] = offer;
                }
                Message::AcceptedEvent => m["eventType"] = json!("ACCEPTED"),
                Message::FinalizedEvent => m["eventType"] = json!("FINALIZED"),
                Message::ContractAgreement => {
                    m["agreement"] = json!({"@type": "Agreement", "@id": format!("urn:tck:agreement:{n}"), "target": "t2d",
                        "assigner": provider.did, "assignee": me, "timestamp": "2026-11-23T12:00:00Z", "permission": [{"action": "use"}]});
                }
                Message::ContractNegotiationTermination => m["code"] = json!("1"),
                Message::ContractAgreementVerification => {}
            }
            if let Some(probe) = probe {
                m["https://w3id.org/hanse/ns/probe"] = json!(probe);
            }
            m
        };
        let deliver = |kind: Message| {
            let (client, url, m) =
                (federation.client.clone(), format!("{base}{}", consumer_path(kind, &id)), message(kind, None));
            async move {
                let answer = dsp_post(&client, &url, Some(provider), &m).await;
                assert_eq!(answer.status, 200, "{kind:?}: {:#}", answer.body);
            }
        };
        let call = |call: &'static str| {
            let (consumer, id) = (consumer.clone(), id.clone());
            async move {
                let answer =
                    consumer.post(&format!("/management/v3/contractnegotiations/{id}/{call}"), &json!({})).await;
                assert_eq!(answer.status, 200, "{call}: {:#}", answer.body);
            }
        };
        match target {
            State::Requested => {}
            State::Offered => deliver(Message::ContractOffer).await,
            State::Accepted => {
                deliver(Message::ContractOffer).await;
                call("accept").await;
            }
            State::Agreed => deliver(Message::ContractAgreement).await,
            State::Verified => {
                deliver(Message::ContractAgreement).await;
                call("verify").await;
            }
            State::Finalized => {
                deliver(Message::ContractAgreement).await;
                call("verify").await;
                deliver(Message::FinalizedEvent).await;
            }
            State::Terminated => deliver(Message::ContractNegotiationTermination).await,
        }
        let state = || {
            let (consumer, id) = (consumer.clone(), id.clone());
            async move {
                consumer.get(&format!("/management/v3/contractnegotiations/{id}/state")).await.body["state"].clone()
            }
        };
        assert_eq!(
            state().await,
            target.name(),
            "{:#}",
            consumer.get(&format!("/management/v3/contractnegotiations/{id}")).await.body
        );

        for kind in machine::ALL_MESSAGES {
            if machine::may_receive(Role::Consumer, Some(target), kind) {
                continue;
            }
            let answer = dsp_post(
                &federation.client,
                &format!("{base}{}", consumer_path(kind, &id)),
                Some(provider),
                &message(kind, Some(checked)),
            )
            .await;
            assert_eq!(answer.status, 400, "{kind:?} in {target:?}: {:#}", answer.body);
            assert_valid_dsp(&answer.body);
            assert_eq!(state().await, target.name(), "{kind:?} in {target:?} changed the state");
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked} refusals checked");
    // The consumer's messages are delivered in the background: the last ones may still be on their way.
    let expected =
        ["ContractRequestMessage", "ContractNegotiationEventMessage", "ContractAgreementVerificationMessage"];
    until("the consumer's request, event and verification at the provider", async || {
        let sent = received.lock().unwrap().clone();
        expected.iter().all(|e| sent.iter().any(|m| m["@type"] == *e))
    })
    .await;
    for message in received.lock().unwrap().iter() {
        assert_valid_dsp(message);
    }
    federation.shutdown().await;
}
