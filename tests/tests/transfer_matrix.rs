//! Every transfer message in every state, at the provider. The test plays the consumer over raw DSP (as the DSP TCK
//! does): it negotiates an agreement, then drives one transfer into each state and sends every message the table
//! forbids there. Each is refused with a valid `TransferError` and leaves the state unchanged; every message the
//! provider put on the wire validates against the official schema.

use hanse::transfer::machine::{self, Message, Role, State};
use hanse_tests::*;
use serde_json::{Value, json};

const CONTEXT: &str = "https://w3id.org/dspace/2025/1/context.jsonld";

fn dsp(kind: Message, provider_pid: &str, consumer_pid: &str, members: Value) -> Value {
    let mut message = json!({"@context": [CONTEXT], "@type": kind.type_name(), "providerPid": provider_pid, "consumerPid": consumer_pid});
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
    assert!(checked >= 15, "{checked} refusals checked");

    // Everything the provider sent to the consumer's callback address is valid DSP, start messages included.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let count_starts = || consumer.received().iter().filter(|m| m["@type"] == "TransferStartMessage").count();
    while count_starts() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
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
