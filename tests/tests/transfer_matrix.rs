//! Every transfer message in every state, at the provider. The test plays the consumer over raw DSP (as the DSP TCK
//! does): it negotiates an agreement, then drives one transfer into each state and sends every message the table
//! forbids there. Each is refused with a valid `TransferError` and leaves the state unchanged; every message the
//! provider put on the wire validates against the official schema.

use hanse::transfer::machine::{self, Message, Role, State};
use hanse_tests::*;
use serde_json::{Value, json};

const CONTEXT: &str = "https://w3id.org/dspace/2025/1/context.jsonld";

fn dsp(kind: Message, provider_pid: &str, consumer_pid: &str, members: Value) -> Value {
    let mut message = dsp_message(kind.type_name(), json!({"providerPid": provider_pid, "consumerPid": consumer_pid}));
    if let (Value::Object(message), Value::Object(members)) = (&mut message, members) {
        message.extend(members);
    }
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_accepts_only_what_the_transfer_table_allows_in_every_state() {
    let federation = Federation::with_hospitals(1).await;
    let provider = federation.management(0);
    let root = federation.connectors[0].config.file_root();
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("tck.csv"), "a,b\n1,2\n").unwrap();
    let mut asset = health_asset("tck", "TCK dataset", &["tck"], 1);
    asset["dataAddress"] = json!({"type": "File", "path": "tck.csv"});
    provider.create("/management/v3/assets", asset).await;
    provider.create("/management/v3/policydefinitions", policy_definition("open", open_policy())).await;
    let mut definition = contract_definition("tck-offer", "open", "open", &["tck"]);
    definition["manualStart"] = json!(true);
    provider.create("/management/v3/contractdefinitions", definition).await;

    // The consumer negotiates over raw DSP.
    let base = format!("{}/protocol/2025-1", federation.connectors[0].public_url());
    let consumer = &TestParticipant::start().await;
    let callback = format!("{}/protocol/2025-1", consumer.url);
    let catalog =
        dsp_post(&federation.client, &format!("{base}/catalog/request"), Some(consumer), &catalog_request(json!([])))
            .await;
    let mut offer = catalog.body["dataset"][0]["hasPolicy"][0].clone();
    offer["target"] = json!("tck");
    let request = json!({"@context": [CONTEXT], "@type": "ContractRequestMessage", "consumerPid": "urn:uuid:tck-negotiation",
                         "offer": offer, "callbackAddress": callback});
    let created = dsp_post(&federation.client, &format!("{base}/negotiations/request"), Some(consumer), &request).await;
    assert_eq!(created.status, 201, "{:#}", created.body);
    let negotiation = created.body["providerPid"].as_str().unwrap().to_owned();
    wait_for_negotiation(&provider, &negotiation, "AGREED").await;
    let verification = json!({"@context": [CONTEXT], "@type": "ContractAgreementVerificationMessage",
                              "providerPid": negotiation, "consumerPid": "urn:uuid:tck-negotiation"});
    let url = format!("{base}/negotiations/{negotiation}/agreement/verification");
    assert_eq!(dsp_post(&federation.client, &url, Some(consumer), &verification).await.status, 200);
    let finalized = wait_for_negotiation(&provider, &negotiation, "FINALIZED").await;
    let agreement = finalized["contractAgreementId"].as_str().unwrap().to_owned();

    let mut checked = 0;
    for (n, target) in machine::ALL_STATES.into_iter().enumerate() {
        let consumer_pid = format!("urn:uuid:tck-transfer-{n}");
        let request = json!({"@context": [CONTEXT], "@type": "TransferRequestMessage", "consumerPid": consumer_pid,
                             "agreementId": agreement, "format": "HttpData-PULL", "callbackAddress": callback});
        assert_valid_dsp(&request);
        let created =
            dsp_post(&federation.client, &format!("{base}/transfers/request"), Some(consumer), &request).await;
        assert_eq!(created.status, 201, "{:#}", created.body);
        assert_valid_dsp(&created.body);
        let pid = created.body["providerPid"].as_str().unwrap().to_owned();
        let send = |kind: Message| {
            let message = dsp(kind, &pid, &consumer_pid, json!({}));
            let (client, url) = (federation.client.clone(), format!("{base}/transfers/{pid}/{}", kind.path()));
            async move {
                let answer = dsp_post(&client, &url, Some(consumer), &message).await;
                assert_eq!(answer.status, 200, "{kind:?}: {:#}", answer.body);
            }
        };
        let start = || {
            let (provider, pid) = (provider.clone(), pid.clone());
            async move {
                let answer = provider.post(&format!("/management/v3/transferprocesses/{pid}/start"), &json!({})).await;
                assert_eq!(answer.status, 200, "{:#}", answer.body);
            }
        };
        match target {
            State::Requested => {}
            State::Started => start().await,
            State::Suspended => {
                start().await;
                send(Message::TransferSuspension).await;
            }
            State::Completed => {
                start().await;
                send(Message::TransferCompletion).await;
            }
            State::Terminated => send(Message::TransferTermination).await,
        }
        let state = || {
            let (provider, pid) = (provider.clone(), pid.clone());
            async move { provider.get(&format!("/management/v3/transferprocesses/{pid}/state")).await.body["state"].clone() }
        };
        assert_eq!(state().await, target.name());

        for kind in machine::ALL_MESSAGES {
            if machine::may_receive(Role::Provider, Some(target), kind) {
                continue; // legal here: the flow tests take these paths
            }
            // A new message, not a redelivery of the one that led here (which would be answered as before).
            let mut message = dsp(kind, &pid, &consumer_pid, json!({"https://w3id.org/hanse/ns/probe": checked}));
            let url = if kind == Message::TransferRequest {
                message = request.clone();
                message["https://w3id.org/hanse/ns/probe"] = json!(checked);
                format!("{base}/transfers/request")
            } else {
                format!("{base}/transfers/{pid}/{}", kind.path())
            };
            let answer = dsp_post(&federation.client, &url, Some(consumer), &message).await;
            assert_eq!(answer.status, 400, "{kind:?} in {target:?}: {:#}", answer.body);
            assert_eq!(answer.body["@type"], "TransferError");
            assert_valid_dsp(&answer.body);
            assert_eq!(state().await, target.name(), "{kind:?} in {target:?} changed the state");
            checked += 1;
        }
    }
    assert_eq!(checked, 19, "every message the table forbids the provider, in every state");

    // Everything the provider sent to the consumer's callback address is valid DSP, start messages included.
    until("three start messages", async || {
        consumer.received().iter().filter(|m| m["@type"] == "TransferStartMessage").count() >= 3
    })
    .await;
    let received = consumer.received();
    let starts: Vec<&Value> = received.iter().filter(|m| m["@type"] == "TransferStartMessage").collect();
    assert_eq!(starts.len(), 3, "one start per transfer the operator started");
    for start in &starts {
        assert_eq!(start["dataAddress"]["endpointType"], "https://w3id.org/idsa/v4.1/HTTP");
    }
    for message in &received {
        assert_valid_dsp(message);
    }
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_accepts_only_what_the_transfer_table_allows_in_every_state() {
    let federation = Federation::with_hospitals(1).await;
    let consumer = federation.management(0);
    let me = federation.connectors[0].participant_id().to_owned();
    let base = format!("{}/protocol/2025-1", federation.connectors[0].public_url());
    let (provider, received) = provider_listener().await;
    let provider = &provider;
    let provider_url = format!("{}/protocol/2025-1", provider.url);

    // An agreement: the consumer requests, the (raw) provider agrees and finalizes.
    let terms = json!({"@type": "Offer", "@id": "urn:tck:offer", "target": "tck", "assigner": provider.did,
                       "permission": [{"action": "use"}]});
    let negotiation = consumer
        .post(
            "/management/v3/contractnegotiations",
            &json!({"counterPartyAddress": provider_url, "counterPartyId": provider.did,
                    "protocol": "dataspace-protocol-http:2025-1", "policy": terms}),
        )
        .await
        .body["@id"]
        .as_str()
        .unwrap()
        .to_owned();
    let provider_negotiation = format!("urn:uuid:provider-of-{negotiation}");
    until("the provider's negotiation pid", async || {
        consumer.get(&format!("/management/v3/contractnegotiations/{negotiation}")).await.body["correlationId"]
            == provider_negotiation.as_str()
    })
    .await;
    let pids = json!({"providerPid": provider_negotiation, "consumerPid": negotiation});
    let mut agreement = json!({"@context": [CONTEXT], "@type": "ContractAgreementMessage",
        "agreement": {"@type": "Agreement", "@id": "urn:tck:agreement", "target": "tck", "assigner": provider.did,
                      "assignee": me, "timestamp": "2026-11-23T12:00:00Z", "permission": [{"action": "use"}]}});
    agreement.as_object_mut().unwrap().extend(pids.as_object().unwrap().clone());
    let url = format!("{base}/negotiations/{negotiation}/agreement");
    assert_eq!(dsp_post(&federation.client, &url, Some(provider), &agreement).await.status, 200);
    let mut finalized =
        json!({"@context": [CONTEXT], "@type": "ContractNegotiationEventMessage", "eventType": "FINALIZED"});
    finalized.as_object_mut().unwrap().extend(pids.as_object().unwrap().clone());
    until("the consumer's verification", async || {
        consumer.get(&format!("/management/v3/contractnegotiations/{negotiation}")).await.body["state"] == "VERIFIED"
    })
    .await;
    let url = format!("{base}/negotiations/{negotiation}/events");
    assert_eq!(dsp_post(&federation.client, &url, Some(provider), &finalized).await.status, 200);

    let mut checked = 0;
    for target in machine::ALL_STATES {
        let id = consumer
            .post(
                "/management/v3/transferprocesses",
                &json!({"contractId": "urn:tck:agreement", "transferType": "HttpData-PULL", "autoComplete": false}),
            )
            .await
            .body["@id"]
            .as_str()
            .unwrap()
            .to_owned();
        let provider_pid = format!("urn:uuid:provider-of-{id}");
        until("the provider's transfer pid", async || {
            consumer.get(&format!("/management/v3/transferprocesses/{id}")).await.body["correlationId"]
                == provider_pid.as_str()
        })
        .await;
        let message = |kind: Message, probe: Option<usize>| {
            let mut members = json!({});
            if kind == Message::TransferStart {
                members["dataAddress"] = json!({"@type": "DataAddress", "endpointType": "https://w3id.org/idsa/v4.1/HTTP",
                    "endpoint": format!("{}/data/{provider_pid}", provider.url),
                    "endpointProperties": [{"@type": "EndpointProperty", "name": "authorization", "value": "t"}]});
            }
            if let Some(probe) = probe {
                members["https://w3id.org/hanse/ns/probe"] = json!(probe);
            }
            dsp(kind, &provider_pid, &id, members)
        };
        let deliver = |kind: Message| {
            let url = format!("{base}/transfers/{id}/{}", kind.path());
            let (client, m) = (federation.client.clone(), message(kind, None));
            async move {
                let answer = dsp_post(&client, &url, Some(provider), &m).await;
                assert_eq!(answer.status, 200, "{kind:?}: {:#}", answer.body);
            }
        };
        match target {
            State::Requested => {}
            State::Started => deliver(Message::TransferStart).await,
            State::Suspended => {
                deliver(Message::TransferStart).await;
                deliver(Message::TransferSuspension).await;
            }
            State::Completed => {
                deliver(Message::TransferStart).await;
                deliver(Message::TransferCompletion).await;
            }
            State::Terminated => deliver(Message::TransferTermination).await,
        }
        let state = || {
            let (consumer, id) = (consumer.clone(), id.clone());
            async move { consumer.get(&format!("/management/v3/transferprocesses/{id}/state")).await.body["state"].clone() }
        };
        assert_eq!(state().await, target.name());
        for kind in machine::ALL_MESSAGES {
            if machine::may_receive(Role::Consumer, Some(target), kind) {
                continue;
            }
            let url = if kind == Message::TransferRequest {
                format!("{base}/transfers/request")
            } else {
                format!("{base}/transfers/{id}/{}", kind.path())
            };
            let mut m = message(kind, Some(checked));
            if kind == Message::TransferRequest {
                m = json!({"@context": [CONTEXT], "@type": "TransferRequestMessage", "consumerPid": id,
                           "agreementId": "urn:tck:agreement", "format": "HttpData-PULL", "callbackAddress": provider_url,
                           "https://w3id.org/hanse/ns/probe": checked});
            }
            let answer = dsp_post(&federation.client, &url, Some(provider), &m).await;
            assert!(matches!(answer.status, 400 | 404), "{kind:?} in {target:?}: {} {:#}", answer.status, answer.body);
            assert_eq!(answer.body["@type"], "TransferError");
            assert_valid_dsp(&answer.body);
            assert_eq!(state().await, target.name(), "{kind:?} in {target:?} changed the state");
            checked += 1;
        }
    }
    assert_eq!(checked, 18, "every message the table forbids the consumer, in every state");
    // What the consumer sent: transfer requests (and negotiation messages), all valid DSP.
    let sent = received.lock().unwrap().clone();
    assert!(sent.iter().any(|m| m["@type"] == "TransferRequestMessage"));
    for message in &sent {
        assert_valid_dsp(message);
    }
    federation.shutdown().await;
}
