//! The tamper-evident audit log between real connectors (SQLite and PostgreSQL) over HTTP: what is logged, receipts
//! held by both parties, witnessing, offline verification of exports, and the auditor's access.

use hanse::audit::verify::{self, Evidence, Receipt};
use hanse_tests::*;
use serde_json::{Value, json};

/// The provider (connector 0) offers a dataset; the consumer (connector 1) negotiates it to FINALIZED. Answers the
/// agreement id.
async fn agreement(federation: &Federation) -> String {
    offer_dataset(federation, "cohort", research_terms(), false).await;
    let consumer = federation.management(1);
    let offer = catalogue_offer(&consumer, &federation.connectors[0], "cohort").await;
    let id = negotiate(&consumer, &federation.connectors[0], offer, json!({"purpose": RESEARCH})).await;
    let finalized = wait_for_negotiation(&consumer, &id, "FINALIZED").await;
    finalized["contractAgreementId"].as_str().unwrap().to_owned()
}

async fn export(api: &Management) -> String {
    api.audit_export().await
}

/// The receipt `holder` keeps from `issuer` for an agreement, once it arrived.
async fn receipt(holder: &Management, issuer: &str, agreement: &str) -> Receipt {
    let mut found = None;
    until("the receipt arrives", async || {
        let kept = holder.get(&format!("/management/v3/audit/receipts?agreement={agreement}")).await;
        found = kept.body.as_array().and_then(|l| l.iter().find(|r| r["issuer"] == issuer)).cloned();
        found.is_some()
    })
    .await;
    serde_json::from_value(found.unwrap()["receipt"].clone()).unwrap()
}

fn types(entries: &Value) -> Vec<String> {
    entries.as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_step_of_a_contract_is_logged_and_both_parties_hold_receipts() {
    let federation = Federation::with_hospitals(2).await;
    let (provider, consumer) = (federation.management(0), federation.management(1));
    let agreement = agreement(&federation).await;
    let (provider_id, consumer_id) =
        (federation.connectors[0].participant_id().to_owned(), federation.connectors[1].participant_id().to_owned());

    // The provider's log: the management changes that made the offer, then every transition and the agreement.
    let changes = provider.get("/management/v3/audit/entries?type=management.change").await;
    assert_eq!(changes.body.as_array().unwrap().len(), 4, "{:#}", changes.body);
    assert!(changes.body[0]["entry"]["after"].as_str().is_some_and(|d| d.len() == 64));
    let who = &changes.body[0]["entry"]["who"];
    assert_eq!((&who["kind"], &who["id"]), (&json!("api-key"), &json!("management")), "{who}");
    let fingerprint = hanse_core::encode::sha256_hex(federation.connectors[0].api_key.as_bytes());
    assert_eq!(who["fingerprint"], fingerprint[..16], "{who}");
    let life = provider.get(&format!("/management/v3/audit/entries?agreement={agreement}")).await;
    let kinds = types(&life.body);
    assert!(kinds.contains(&"contract.agreement".to_owned()), "{kinds:?}");
    let transitions: Vec<&Value> =
        life.body.as_array().unwrap().iter().filter(|e| e["type"] == "negotiation.transition").collect();
    let states: Vec<&str> = transitions.iter().map(|e| e["entry"]["to"].as_str().unwrap()).collect();
    assert_eq!(states.last(), Some(&"FINALIZED"), "{states:?}");
    assert!(transitions.iter().all(|e| e["entry"]["participant"] == consumer_id));
    assert!(transitions.iter().any(|e| e["entry"]["received"].as_str().is_some_and(|d| d.len() == 64)));
    let recorded = life.body.as_array().unwrap().iter().find(|e| e["type"] == "contract.agreement").unwrap();
    assert_eq!(recorded["entry"]["agreement"], agreement.as_str());
    assert_eq!(recorded["entry"]["agreementPolicy"]["@id"], agreement.as_str());

    // Each side holds the other's receipt, and it proves the other's entry of this agreement.
    let from_provider = receipt(&consumer, &provider_id, &agreement).await;
    let from_consumer = receipt(&provider, &consumer_id, &agreement).await;
    assert_eq!(from_provider.agreement_id, agreement);
    let entry: Value = serde_json::from_str(&from_consumer.entry).unwrap();
    assert_eq!(
        (entry["type"].as_str(), entry["participant"].as_str()),
        (Some("contract.agreement"), Some(provider_id.as_str()))
    );

    // An entry with its inclusion proof, checked against the signed head it comes with.
    let proven = provider.get(&format!("/management/v3/audit/entries/{}", from_provider.index)).await;
    assert_eq!(proven.body["canonical"].as_str(), Some(from_provider.entry.as_str()));
    assert!(proven.body["inclusionProof"].as_array().is_some());

    // The exports of both verify offline, with the receipts the other side holds.
    let provider_log = export(&provider).await;
    let verdict = verify::verify(&provider_log, &[], std::slice::from_ref(&from_provider)).unwrap();
    assert_eq!(verdict.log, provider_id);
    assert!(verdict.to > from_provider.index);
    verify::verify(&export(&consumer).await, &[], std::slice::from_ref(&from_consumer)).unwrap();
    // A receipt does not fit another participant's log.
    assert!(verify::verify(&export(&consumer).await, &[], std::slice::from_ref(&from_provider)).is_err());

    // A consistency proof between two heads.
    let head = provider.get("/management/v3/audit/head").await;
    let size = head.body["size"].as_u64().unwrap();
    let proof = provider.get(&format!("/management/v3/audit/consistency?from=1&to={size}")).await;
    assert_eq!(proof.status, 200);
    assert!(!proof.body["proof"].as_array().unwrap().is_empty());
    let wrong = provider.get(&format!("/management/v3/audit/consistency?from={}&to=1", size + 5)).await;
    assert_eq!(wrong.status, 400);
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_that_rewrites_its_log_is_caught_by_the_receipt_and_by_a_witness() {
    let federation = Federation::with_hospitals(2).await;
    let (provider, consumer) = (federation.management(0), federation.management(1));
    let agreement = agreement(&federation).await;
    let provider_id = federation.connectors[0].participant_id().to_owned();
    let held = receipt(&consumer, &provider_id, &agreement).await;

    // The consumer witnesses the provider's log: consistent, countersigned.
    let round = consumer.post("/management/v3/audit/witness", &json!({})).await;
    let seen = round.body.as_array().unwrap().iter().find(|w| w["peer"] == provider_id.as_str()).unwrap().clone();
    assert!(seen["problem"].is_null(), "{seen:#}");
    let witnessed = consumer.get("/management/v3/audit/witnessed").await;
    assert!(witnessed.body["witnessed"][0]["cosignature"].as_str().is_some());
    let before = export(&provider).await;
    verify::verify(&before, &[], std::slice::from_ref(&held)).unwrap();

    // The provider's operator rolls its log back to before the agreement and carries on: new entries, new heads.
    federation.connectors[0].database.roll_back_audit_log(held.index).await;
    provider.create("/management/v3/assets", health_asset("other", "Another cohort", &["asthma"], 10)).await;
    let after = export(&provider).await;
    // On its own the rewritten log is consistent and freshly signed...
    verify::verify(&after, &[], &[]).unwrap();
    // ... but the consumer's receipt names the rewritten entry, and so does the auditor's earlier export.
    let by_receipt = verify::verify(&after, &[], std::slice::from_ref(&held)).unwrap_err();
    assert_eq!(by_receipt.position, Some(held.index), "{by_receipt}");
    let earlier = verify::read_evidence(&before).unwrap();
    assert!(matches!(earlier, Evidence::Export(_)));
    let by_export = verify::verify(&after, &[earlier], &[]).unwrap_err();
    assert_eq!(by_export.position, Some(held.index), "{by_export}");

    // The witness sees a history that does not extend the one it countersigned: an alert in its log and metrics.
    let round = consumer.post("/management/v3/audit/witness", &json!({})).await;
    let seen = round.body.as_array().unwrap().iter().find(|w| w["peer"] == provider_id.as_str()).unwrap().clone();
    assert!(seen["problem"].as_str().is_some_and(|p| p.contains("rewritten") || p.contains("rolled back")), "{seen:#}");
    let alerts = consumer.get("/management/v3/audit/entries?type=audit.inconsistency").await;
    assert_eq!(alerts.body.as_array().unwrap().len(), 1, "{:#}", alerts.body);
    assert_eq!(alerts.body[0]["entry"]["participant"], provider_id.as_str());
    let metrics = consumer.metrics().await;
    assert!(metrics.contains("hanse_audit_inconsistencies_total 1"), "{metrics}");
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_altered_stored_entry_is_named_by_the_verifier() {
    for backend in hanse::testing::backends() {
        let connector = TestConnector::start(backend).await;
        let api = Management::of(&connector, &reqwest::Client::new());
        for i in 0..5 {
            api.create("/management/v3/assets", health_asset(&format!("set-{i}"), "Cohort", &["x"], 10)).await;
        }
        verify::verify(&export(&api).await, &[], &[]).unwrap();
        // One byte of entry 3 as stored: a digit of its `after` digest.
        let stored = api.get("/management/v3/audit/entries/3").await.body["canonical"].as_str().unwrap().to_owned();
        let offset = stored.find("\"after\":\"").unwrap() + 9;
        let byte = if stored.as_bytes()[offset] == b'0' { b'1' } else { b'0' };
        connector.database.alter_audit_entry(3, offset, byte).await;
        let fault = verify::verify(&export(&api).await, &[], &[]).unwrap_err();
        assert_eq!(fault.position, Some(3), "{backend:?}: {fault}");
        connector.running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auditors_read_the_log_and_nothing_else() {
    let auditor = TestParticipant::start().await;
    let auditor_did = auditor.did.clone();
    let connector = TestConnector::start_with(Backend::Sqlite, |config| {
        config.audit.auditor_api_key = Some("auditor-secret-key".into());
        config.audit.auditors = vec![auditor_did];
    })
    .await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", connector.management_url());
    let status = |request: reqwest::RequestBuilder| async move { request.send().await.unwrap().status().as_u16() };
    let by_key = |path: &str| client.get(url(path)).header("X-Api-Key", "auditor-secret-key");
    assert_eq!(status(by_key("/management/v3/audit/head")).await, 200);
    assert_eq!(status(by_key("/management/v3/audit/entries")).await, 200);
    assert_eq!(status(by_key("/management/v3/audit/export")).await, 200);
    // The auditor key opens nothing but the log.
    assert_eq!(status(by_key("/management/v3/assets/request")).await, 401);
    assert_eq!(
        status(client.post(url("/management/v3/audit/witness")).header("X-Api-Key", "auditor-secret-key")).await,
        401
    );
    assert_eq!(status(client.get(url("/management/v3/audit/head"))).await, 401);
    assert_eq!(status(client.get(url("/management/v3/audit/head")).header("X-Api-Key", "wrong")).await, 401);
    // A listed auditor DID with its self-issued token; another participant's token is refused.
    let token = auditor.authorization(connector.participant_id());
    assert_eq!(status(client.get(url("/management/v3/audit/head")).header("Authorization", &token)).await, 200);
    let stranger = TestParticipant::start().await;
    let token = stranger.authorization(connector.participant_id());
    assert_eq!(status(client.get(url("/management/v3/audit/head")).header("Authorization", &token)).await, 401);
    // The operator reads it too.
    let api = Management::of(&connector, &client);
    assert_eq!(api.get("/management/v3/audit/head").await.status, 200);
    connector.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_s_head_and_proofs_are_shown_only_to_a_verified_participant() {
    let federation = Federation::with_hospitals(2).await;
    let (owner, witness) = (&federation.connectors[0], &federation.connectors[1]);
    for path in ["/hanse/audit/head", "/hanse/audit/consistency?from=0&to=0"] {
        let url = format!("{}{path}", owner.public_url());
        let anonymous = dsp_get(&federation.client, &url, None).await;
        assert_eq!(anonymous.status, 401, "{path}: {:#}", anonymous.body);
        let signed = dsp_get(&federation.client, &url, Some(witness as &dyn Signer)).await;
        assert_ne!(signed.status, 401, "{path}: {:#}", signed.body);
    }
    federation.shutdown().await;
}

/// While the start-up self-check holds appends, the connector serves: reads answer, `/health/ready` is up and says why
/// changes wait, and a change made meanwhile waits, then lands. One made while a check finds the log altered is
/// refused with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_wait_for_a_running_self_check_while_reads_are_served() {
    for backend in hanse::testing::backends() {
        let connector = TestConnector::start(backend).await;
        let client = reqwest::Client::new();
        let api = Management::of(&connector, &client);
        let audit = connector.running.state.store.audit.clone();
        until("the start-up self-check to end", async || !audit.appends_held()).await;
        let create = |id: &str| {
            let (api, asset) = (api.clone(), health_asset(id, "Cohort", &["x"], 10));
            tokio::spawn(async move { api.post("/management/v3/assets", &asset).await })
        };

        let hold = audit.hold_appends();
        let waiting = create("made-while-checked");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "{backend:?}: the change waits for the check");
        let ready = client.get(format!("{}/health/ready", connector.public_url())).send().await.unwrap();
        assert_eq!(ready.status(), 200, "{backend:?}");
        let ready: Value = ready.json().await.unwrap();
        assert_eq!(ready["components"]["audit"]["status"], "up", "{ready:#}");
        assert!(
            ready["components"]["audit"]["detail"].as_str().unwrap().contains("self-check is running"),
            "{ready:#}"
        );
        assert_eq!(api.get("/management/v3/assets/made-while-checked").await.status, 404, "{backend:?}: not yet");
        drop(hold);
        assert_eq!(waiting.await.unwrap().status, 200, "{backend:?}");
        assert_eq!(api.get("/management/v3/assets/made-while-checked").await.status, 200, "{backend:?}");

        let hold = audit.hold_appends();
        let refused = create("made-while-found-altered");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        audit.seal("entry 1: altered".into());
        drop(hold);
        let refused = refused.await.unwrap();
        assert_eq!(refused.status, 503, "{backend:?}: {:#}", refused.body);
        assert_eq!(api.get("/management/v3/assets/made-while-found-altered").await.status, 404, "{backend:?}");
        connector.running.shutdown().await;
    }
}
