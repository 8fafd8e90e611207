//! DSP 2025-1 contract negotiation between real connectors (SQLite and PostgreSQL), over HTTP.

use hanse_tests::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_runs_to_finalized_on_both_sides_without_anyone_clicking() {
    let federation = Federation::with_hospitals(2).await;
    offer_dataset(&federation, "t2d", research_terms(), false).await;
    let (provider, consumer) = (federation.management(0), federation.management(1));
    let offer = catalogue_offer(&consumer, &federation.connectors[0], "t2d").await;
    let id = negotiate(&consumer, &federation.connectors[0], offer, json!({"purpose": RESEARCH})).await;

    let on_consumer = wait_for_negotiation(&consumer, &id, "FINALIZED").await;
    let on_provider = wait_for_role(&provider, "PROVIDER", "FINALIZED").await;
    assert_eq!(on_consumer["correlationId"], on_provider["@id"], "each side knows the other's pid");
    let agreement_id = on_consumer["contractAgreementId"].as_str().unwrap();
    assert_eq!(on_provider["contractAgreementId"], agreement_id);
    for api in [&provider, &consumer] {
        let agreement = api.get(&format!("/management/v3/contractagreements/{agreement_id}")).await;
        assert_eq!(agreement.status, 200, "{:#}", agreement.body);
        assert_eq!(agreement.body["assetId"], "t2d");
        assert_eq!(agreement.body["providerId"], federation.connectors[0].participant_id());
        assert_eq!(agreement.body["consumerId"], federation.connectors[1].participant_id());
        assert_eq!(agreement.body["policy"]["prohibition"][0]["action"], "distribute");
        assert_valid_dsp(
            &json!({"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": "ContractAgreementMessage",
            "providerPid": "p", "consumerPid": "c", "agreement": agreement.body["policy"]}),
        );
    }
    let agreement = consumer.get(&format!("/management/v3/contractnegotiations/{id}/agreement")).await;
    assert_eq!(agreement.body["@id"], agreement_id);
    assert_eq!(
        consumer.get(&format!("/management/v3/contractnegotiations/{id}/state")).await.body["state"],
        "FINALIZED"
    );
    assert_eq!(on_consumer["allowedCalls"], json!([]));

    // The DSP view of the provider's negotiation, for the consumer only.
    let provider_pid = on_provider["@id"].as_str().unwrap();
    let url = format!("{}/protocol/2025-1/negotiations/{provider_pid}", federation.connectors[0].public_url());
    let seen = dsp_get(&federation.client, &url, Some(&federation.connectors[1])).await;
    assert_eq!((seen.status, &seen.body["state"]), (200, &json!("FINALIZED")));
    assert_valid_dsp(&seen.body);
    let stranger = dsp_get(&federation.client, &url, Some(&TestParticipant::start().await)).await;
    assert_eq!(stranger.status, 404);
    assert_valid_dsp(&stranger.body);
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purpose_the_policy_does_not_permit_is_refused_with_the_reason_and_a_permitted_one_agreed() {
    let federation = Federation::with_hospitals(2).await;
    offer_dataset(&federation, "t2d", research_terms(), false).await;
    let (provider, consumer) = (federation.management(0), federation.management(1));
    let offer = catalogue_offer(&consumer, &federation.connectors[0], "t2d").await;

    let refused =
        negotiate(&consumer, &federation.connectors[0], offer.clone(), json!({"purpose": "dpv:CommercialResearch"}))
            .await;
    let on_consumer = wait_for_negotiation(&consumer, &refused, "TERMINATED").await;
    let reason = on_consumer["errorDetail"].as_str().unwrap();
    assert!(reason.contains("purpose") && reason.contains("DUO:0000042"), "{reason}");
    assert_eq!(on_consumer["errorCode"], "PolicyDenied");
    let on_provider = wait_for_role(&provider, "PROVIDER", "TERMINATED").await;
    assert_eq!(on_provider["decision"]["permitted"], false, "the decision trace is kept: {:#}", on_provider);
    assert!(on_provider["decision"]["rules"][0]["constraints"][0]["resolved"].is_string());

    let agreed = negotiate(&consumer, &federation.connectors[0], offer, json!({"purpose": RESEARCH})).await;
    wait_for_negotiation(&consumer, &agreed, "FINALIZED").await;
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_terms_that_differ_from_the_offer_are_refused() {
    let federation = Federation::with_hospitals(2).await;
    offer_dataset(&federation, "t2d", research_terms(), false).await;
    let consumer = federation.management(1);
    let mut offer = catalogue_offer(&consumer, &federation.connectors[0], "t2d").await;
    offer.as_object_mut().unwrap().remove("prohibition");
    let id = negotiate(&consumer, &federation.connectors[0], offer, json!({"purpose": RESEARCH})).await;
    let terminated = wait_for_negotiation(&consumer, &id, "TERMINATED").await;
    assert_eq!(terminated["errorCode"], "TermsDiffer");
    let detail = terminated["errorDetail"].as_str().unwrap_or_default();
    assert!(detail.contains("the request has 0 prohibition(s) where the offer has 1"), "{terminated:#}");
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_approval_holds_every_provider_turn() {
    let federation = Federation::with_hospitals(2).await;
    offer_dataset(&federation, "sensitive", research_terms(), true).await;
    let (provider, consumer) = (federation.management(0), federation.management(1));
    let offer = catalogue_offer(&consumer, &federation.connectors[0], "sensitive").await;
    let id = negotiate(&consumer, &federation.connectors[0], offer, json!({"purpose": RESEARCH})).await;

    let held = wait_for_role(&provider, "PROVIDER", "REQUESTED").await;
    let provider_id = held["@id"].as_str().unwrap().to_owned();
    assert_eq!(held["waitingForOperator"], true);
    assert_eq!(held["allowedCalls"], json!(["approve", "offer", "terminate"]));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        consumer.get(&format!("/management/v3/contractnegotiations/{id}")).await.body["state"],
        "REQUESTED",
        "nothing moves by itself"
    );

    let wrong = provider.post(&format!("/management/v3/contractnegotiations/{provider_id}/finalize"), &json!({})).await;
    assert_eq!(wrong.status, 409);
    assert_eq!(wrong.body[0]["allowedCalls"], json!(["approve", "offer", "terminate"]));

    let approved =
        provider.post(&format!("/management/v3/contractnegotiations/{provider_id}/approve"), &json!({})).await;
    assert_eq!((approved.status, &approved.body["state"]), (200, &json!("AGREED")), "{:#}", approved.body);
    // The consumer verifies by itself; the provider's next turn waits again.
    let verified = wait_for_negotiation(&provider, &provider_id, "VERIFIED").await;
    assert_eq!(verified["allowedCalls"], json!(["finalize", "terminate"]));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        provider.get(&format!("/management/v3/contractnegotiations/{provider_id}")).await.body["state"],
        "VERIFIED"
    );
    let finalized =
        provider.post(&format!("/management/v3/contractnegotiations/{provider_id}/finalize"), &json!({})).await;
    assert_eq!(finalized.body["state"], "FINALIZED");
    wait_for_negotiation(&consumer, &id, "FINALIZED").await;
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_without_auto_accept_verifies_by_hand() {
    let federation = Federation::with_hospitals(2).await;
    offer_dataset(&federation, "t2d", research_terms(), false).await;
    let consumer = federation.management(1);
    let offer = catalogue_offer(&consumer, &federation.connectors[0], "t2d").await;
    let id =
        negotiate(&consumer, &federation.connectors[0], offer, json!({"purpose": RESEARCH, "autoAccept": false})).await;
    let agreed = wait_for_negotiation(&consumer, &id, "AGREED").await;
    assert_eq!(agreed["allowedCalls"], json!(["verify", "terminate"]));
    assert_eq!(agreed["waitingForOperator"], true);
    let verified = consumer.post(&format!("/management/v3/contractnegotiations/{id}/verify"), &json!({})).await;
    assert_eq!(verified.body["state"], "VERIFIED", "{:#}", verified.body);
    wait_for_negotiation(&consumer, &id, "FINALIZED").await;
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_offers_go_both_ways() {
    let federation = Federation::with_hospitals(2).await;
    offer_dataset(&federation, "t2d", research_terms(), true).await;
    let (provider, consumer) = (federation.management(0), federation.management(1));
    let offer = catalogue_offer(&consumer, &federation.connectors[0], "t2d").await;
    let id = negotiate(&consumer, &federation.connectors[0], offer, json!({"purpose": RESEARCH})).await;
    let provider_id = wait_for_role(&provider, "PROVIDER", "REQUESTED").await["@id"].as_str().unwrap().to_owned();

    // The hospital counters with stricter terms; the researcher's connector does not accept different terms alone.
    let stricter = json!({"@type": "Offer", "permission": [{"action": "use", "constraint": [
        {"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000007"}]}], "prohibition": [{"action": "distribute"}]});
    let countered = provider
        .post(&format!("/management/v3/contractnegotiations/{provider_id}/offer"), &json!({"offer": stricter}))
        .await;
    assert_eq!(countered.body["state"], "OFFERED", "{:#}", countered.body);
    let offered = wait_for_negotiation(&consumer, &id, "OFFERED").await;
    assert_eq!(offered["allowedCalls"], json!(["accept", "offer", "terminate"]));

    // The researcher counters back; the hospital then takes the researcher's terms.
    let counter_request = json!({"@type": "Offer", "permission": [{"action": "use", "constraint": [
        {"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000006"}]}], "prohibition": [{"action": "distribute"}]});
    let back = consumer
        .post(&format!("/management/v3/contractnegotiations/{id}/offer"), &json!({"offer": counter_request}))
        .await;
    assert_eq!(back.body["state"], "REQUESTED", "{:#}", back.body);
    let requested = wait_for_negotiation(&provider, &provider_id, "REQUESTED").await;
    assert_eq!(requested["waitingForOperator"], true, "{requested:#}");
    provider
        .post(&format!("/management/v3/contractnegotiations/{provider_id}/offer"), &json!({"offer": counter_request}))
        .await;
    // Offered exactly what it asked for, the researcher's connector accepts by itself.
    wait_for_negotiation(&consumer, &id, "ACCEPTED").await;
    let accepted = wait_for_negotiation(&provider, &provider_id, "ACCEPTED").await;
    assert_eq!(accepted["allowedCalls"], json!(["approve", "terminate"]));
    provider.post(&format!("/management/v3/contractnegotiations/{provider_id}/approve"), &json!({})).await;
    wait_for_negotiation(&provider, &provider_id, "VERIFIED").await;
    provider.post(&format!("/management/v3/contractnegotiations/{provider_id}/finalize"), &json!({})).await;
    let done = wait_for_negotiation(&consumer, &id, "FINALIZED").await;
    let agreement = consumer
        .get(&format!("/management/v3/contractagreements/{}", done["contractAgreementId"].as_str().unwrap()))
        .await;
    assert_eq!(
        agreement.body["policy"]["permission"][0]["constraint"][0]["rightOperand"],
        "http://purl.obolibrary.org/obo/DUO_0000006"
    );
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn either_side_can_terminate_and_the_other_learns_why() {
    let federation = Federation::with_hospitals(2).await;
    offer_dataset(&federation, "t2d", research_terms(), true).await;
    let (provider, consumer) = (federation.management(0), federation.management(1));
    let offer = catalogue_offer(&consumer, &federation.connectors[0], "t2d").await;

    let first = negotiate(&consumer, &federation.connectors[0], offer.clone(), json!({"purpose": RESEARCH})).await;
    let provider_first = wait_for_role(&provider, "PROVIDER", "REQUESTED").await["@id"].as_str().unwrap().to_owned();
    let ended = consumer
        .post(&format!("/management/v3/contractnegotiations/{first}/terminate"), &json!({"reason": "study cancelled"}))
        .await;
    assert_eq!(ended.body["state"], "TERMINATED");
    let seen = wait_for_negotiation(&provider, &provider_first, "TERMINATED").await;
    assert_eq!(seen["errorDetail"], "study cancelled");
    assert_eq!(
        consumer.post(&format!("/management/v3/contractnegotiations/{first}/terminate"), &json!({})).await.status,
        409,
        "already terminal"
    );

    let second = negotiate(&consumer, &federation.connectors[0], offer, json!({"purpose": RESEARCH})).await;
    let provider_second = loop {
        let all = provider
            .post(
                "/management/v3/contractnegotiations/request",
                &json!({"filterExpression": [{"operandLeft": "state", "operator": "=", "operandRight": "REQUESTED"}]}),
            )
            .await;
        if let Some(n) = all.body.as_array().and_then(|a| a.first()) {
            break n["@id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    provider
        .post(
            &format!("/management/v3/contractnegotiations/{provider_second}/terminate"),
            &json!({"reason": "ethics board declined"}),
        )
        .await;
    let seen = wait_for_negotiation(&consumer, &second, "TERMINATED").await;
    assert_eq!(seen["errorDetail"], "ethics board declined");
    federation.shutdown().await;
}

/// Sends a raw DSP message as `participant`.
async fn raw(federation: &Federation, path: &str, participant: &dyn Signer, body: Value) -> Answer {
    let url = format!("{}/protocol/2025-1{path}", federation.connectors[0].public_url());
    dsp_post(&federation.client, &url, Some(participant), &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn illegal_messages_are_refused_and_change_nothing() {
    let federation = Federation::with_hospitals(1).await;
    offer_dataset(&federation, "t2d", research_terms(), true).await;
    let provider = federation.management(0);
    let me = &TestParticipant::start().await;
    let offer =
        json!({"@type": "Offer", "@id": "urn:hanse:offer:nope:0", "target": "t2d", "permission": [{"action": "use"}]});
    let consumer_pid = "urn:uuid:consumer-1";

    // Schema-level problems name the field.
    let missing = raw(
        &federation,
        "/negotiations/request",
        me,
        dsp_message("ContractRequestMessage", json!({"offer": offer, "callbackAddress": "http://127.0.0.1:9/cb"})),
    )
    .await;
    assert_eq!(missing.status, 400);
    assert!(missing.body["reason"][0].as_str().unwrap().contains("consumerPid"));
    assert_valid_dsp(&missing.body);
    let wrong_endpoint = raw(
        &federation,
        "/negotiations/request",
        me,
        dsp_message("ContractOfferMessage", json!({"providerPid": "x", "offer": offer, "callbackAddress": "http://x"})),
    )
    .await;
    assert_eq!(wrong_endpoint.status, 400);

    // A real catalogue offer, held for approval (manual) so that the state stays put.
    let catalog = dsp_post(
        &federation.client,
        &format!("{}/protocol/2025-1/catalog/request", federation.connectors[0].public_url()),
        Some(me),
        &catalog_request(json!([])),
    )
    .await;
    let mut offer = catalog.body["dataset"][0]["hasPolicy"][0].clone();
    offer["target"] = json!("t2d");
    let request = dsp_message(
        "ContractRequestMessage",
        json!({"consumerPid": consumer_pid, "offer": offer, "callbackAddress": "http://127.0.0.1:9/callback/", "https://w3id.org/hanse/ns/purpose": RESEARCH}),
    );
    assert_valid_dsp(&request);
    let created = raw(&federation, "/negotiations/request", me, request.clone()).await;
    assert_eq!(created.status, 201, "{:#}", created.body);
    assert_valid_dsp(&created.body);
    assert_eq!(created.body["state"], "REQUESTED");
    let provider_pid = created.body["providerPid"].as_str().unwrap().to_owned();

    // The same message again: the same answer, and still one negotiation.
    let again = raw(&federation, "/negotiations/request", me, request).await;
    assert_eq!((again.status, &again.body), (201, &created.body));
    assert_eq!(
        provider.post("/management/v3/contractnegotiations/request", &json!({})).await.body.as_array().unwrap().len(),
        1
    );

    let pids = json!({"providerPid": provider_pid, "consumerPid": consumer_pid});
    for (path, message) in [
        (
            "events",
            dsp_message(
                "ContractNegotiationEventMessage",
                json!({"providerPid": provider_pid, "consumerPid": consumer_pid, "eventType": "ACCEPTED"}),
            ),
        ),
        ("agreement/verification", dsp_message("ContractAgreementVerificationMessage", pids.clone())),
        (
            "events",
            dsp_message(
                "ContractNegotiationEventMessage",
                json!({"providerPid": provider_pid, "consumerPid": consumer_pid, "eventType": "FINALIZED"}),
            ),
        ),
        (
            "request",
            dsp_message(
                "ContractRequestMessage",
                json!({"providerPid": provider_pid, "consumerPid": consumer_pid, "offer": offer}),
            ),
        ),
    ] {
        let refused = raw(&federation, &format!("/negotiations/{provider_pid}/{path}"), me, message).await;
        assert_eq!(refused.status, 400, "{path}: {:#}", refused.body);
        assert_eq!(refused.body["@type"], "ContractNegotiationError");
        assert_valid_dsp(&refused.body);
        let state =
            provider.get(&format!("/management/v3/contractnegotiations/{provider_pid}")).await.body["state"].clone();
        assert_eq!(state, "REQUESTED", "{path} changed nothing");
    }

    // Unknown negotiations, and other participants' negotiations, are unknown.
    let unknown = raw(
        &federation,
        "/negotiations/urn:uuid:nope/termination",
        me,
        dsp_message(
            "ContractNegotiationTerminationMessage",
            json!({"providerPid": "urn:uuid:nope", "consumerPid": consumer_pid}),
        ),
    )
    .await;
    assert_eq!(unknown.status, 404);
    let someone_else = raw(
        &federation,
        &format!("/negotiations/{provider_pid}/termination"),
        &TestParticipant::start().await,
        dsp_message("ContractNegotiationTerminationMessage", pids.clone()),
    )
    .await;
    assert_eq!(someone_else.status, 404);
    let no_identity = dsp_post(
        &federation.client,
        &format!("{}/protocol/2025-1/negotiations/{provider_pid}", federation.connectors[0].public_url()),
        None,
        &json!({}),
    )
    .await;
    assert_eq!(no_identity.status, 405, "GET only; POST is not a route here");

    // Termination is legal; afterwards nothing is.
    let terminated = raw(&federation, &format!("/negotiations/{provider_pid}/termination"), me, dsp_message("ContractNegotiationTerminationMessage", json!({"providerPid": provider_pid, "consumerPid": consumer_pid, "code": "1", "reason": ["changed our mind"]}))).await;
    assert_eq!(terminated.status, 200, "{:#}", terminated.body);
    let after = raw(
        &federation,
        &format!("/negotiations/{provider_pid}/termination"),
        me,
        dsp_message(
            "ContractNegotiationTerminationMessage",
            json!({"providerPid": provider_pid, "consumerPid": consumer_pid, "code": "2"}),
        ),
    )
    .await;
    assert_eq!(after.status, 400);
    assert_eq!(
        provider.get(&format!("/management/v3/contractnegotiations/{provider_pid}")).await.body["errorDetail"],
        "changed our mind"
    );
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_gives_up_on_an_unreachable_consumer_and_terminates() {
    let federation = Federation::with_hospitals(1).await;
    offer_dataset(&federation, "t2d", research_terms(), false).await;
    let me = &TestParticipant::start().await;
    let catalog = dsp_post(
        &federation.client,
        &format!("{}/protocol/2025-1/catalog/request", federation.connectors[0].public_url()),
        Some(me),
        &catalog_request(json!([])),
    )
    .await;
    let mut offer = catalog.body["dataset"][0]["hasPolicy"][0].clone();
    offer["target"] = json!("t2d");
    // Nothing listens on port 9 of loopback.
    let created = raw(&federation, "/negotiations/request", me, dsp_message("ContractRequestMessage", json!({"consumerPid": "urn:uuid:c", "offer": offer, "callbackAddress": "http://127.0.0.1:9/protocol/2025-1", "https://w3id.org/hanse/ns/purpose": RESEARCH}))).await;
    assert_eq!(created.status, 201);
    let provider_pid = created.body["providerPid"].as_str().unwrap();
    // The test connectors retry quickly (see `TestConnector`): a few attempts, then termination.
    let ended = wait_for_negotiation(&federation.management(0), provider_pid, "TERMINATED").await;
    assert!(ended["errorDetail"].as_str().unwrap().contains("did not answer"), "{ended:#}");
    assert_eq!(ended["errorCode"], "DeliveryFailed");
    federation.shutdown().await;
}
