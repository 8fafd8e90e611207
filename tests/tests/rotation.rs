//! Key rotation in the middle of a federation's life: the issuer, the holder and the provider (whose log signs the
//! receipts) each rotate — two through the management API, one with the key files alone, as `hanse keys rotate` does —
//! while running; then, with the retired keys made an hour old, every credential, receipt, tree head and the
//! provider's stored log still verify, new tokens and credentials are signed with the new keys, and a retired key
//! signs no token.

use hanse::audit::verify::{self, Receipt};
use hanse::testing::backends;
use hanse_tests::*;
use serde_json::{Value, json};

/// The receipt the consumer holds for the provider's entry of `agreement`.
async fn receipt(consumer: &Management, agreement: &str) -> Receipt {
    let mut held = Value::Null;
    until("the provider's receipt", async || {
        held = consumer.get(&format!("/management/v3/audit/receipts?agreement={agreement}")).await.body;
        held.as_array().is_some_and(|r| !r.is_empty())
    })
    .await;
    serde_json::from_value(held[0]["receipt"].clone()).unwrap()
}

/// Ages every retired key of a connector by an hour (the file name is the retirement time), as if an hour had passed.
fn age_retired_keys(connector: &TestConnector) {
    let folder = connector.config.participant.key_file.parent().unwrap().join("retired");
    for entry in std::fs::read_dir(&folder).unwrap().flatten() {
        let seconds: i64 = entry.path().file_stem().unwrap().to_str().unwrap().parse().unwrap();
        std::fs::rename(entry.path(), folder.join(format!("{}.pem", seconds - 3600))).unwrap();
    }
}

async fn document(connector: &TestConnector) -> Value {
    reqwest::get(format!("{}/.well-known/did.json", connector.public_url())).await.unwrap().json().await.unwrap()
}

async fn finalized(member: &TestConnector, provider: &TestConnector) -> String {
    let api = management_of(member);
    let offer = catalogue_offer(&api, provider, MEMBERS_DATASET).await;
    let id = negotiate(&api, provider, offer, json!({})).await;
    wait_for_negotiation(&api, &id, "FINALIZED").await["contractAgreementId"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_receipts_and_heads_survive_the_rotation_of_every_key() {
    let backend = *backends().last().unwrap();
    let issuer = TestConnector::start(backend).await;
    let provider = provider_trusting(backend, issuer.participant_id()).await;
    let member = TestConnector::start(backend).await;
    let (_, jwt) = issue_membership(&issuer, member.participant_id(), json!({"membership": "active"})).await;
    import(&member, &jwt).await;
    let before = finalized(&member, &provider).await;
    let old_receipt = receipt(&management_of(&member), &before).await;
    let old_keys = [&issuer, &provider, &member].map(|c| c.running.state.identity.keys().current_kid().to_owned());

    // The issuer and the provider rotate through the API; the member's key files are rotated beside it, and the
    // running connector picks the new key up.
    for connector in [&issuer, &provider] {
        let rotated = management_of(connector).post("/management/v3/keys/rotate", &json!({})).await;
        assert_eq!(rotated.status, 200, "{:#}", rotated.body);
        assert_ne!(rotated.body["keyId"], rotated.body["retiredKeyId"]);
    }
    hanse::identity::keys::rotate(&member.config.participant.key_file).unwrap();
    until("the member to sign with its new key", async || {
        member.running.state.identity.keys().current_kid() != old_keys[2]
    })
    .await;
    for connector in [&issuer, &provider, &member] {
        age_retired_keys(connector);
    }
    until("the aged keys to be read", async || {
        let listed = member.running.state.identity.keys().listed(chrono::Utc::now());
        listed.len() == 1
    })
    .await;
    issuer.running.state.identity.reload_keys().unwrap();
    provider.running.state.identity.reload_keys().unwrap();

    // Each DID document keeps the retired key for verification, not for tokens.
    for (connector, old) in [&issuer, &provider, &member].into_iter().zip(&old_keys) {
        let document = document(connector).await;
        let listed = |relation: &str| document[relation].as_array().unwrap().iter().any(|k| k == old.as_str());
        assert!(listed("verificationMethod") || document["verificationMethod"].to_string().contains(old.as_str()));
        assert!(listed("assertionMethod"), "{document:#}");
        assert!(!listed("capabilityInvocation") && !listed("authentication"), "{document:#}");
    }

    // The membership signed with the issuer's retired key still opens the members' dataset, with the member's new
    // token; a second agreement comes with a receipt signed with the provider's new key.
    assert_eq!(visible(&member, &provider).await, [OPEN_DATASET, MEMBERS_DATASET]);
    let after = finalized(&member, &provider).await;
    let new_receipt = receipt(&management_of(&member), &after).await;
    let new_head = hanse::audit::head::read(&new_receipt.tree_head).unwrap();
    assert_ne!(hanse::audit::head::read(&old_receipt.tree_head).unwrap().kid, new_head.kid, "the new key signs");

    // The provider's log: an export with both receipts verifies, and its stored log checks itself intact.
    let export = management_of(&provider).audit_export().await;
    verify::verify(&export, &[], &[old_receipt, new_receipt]).unwrap();
    let checked = provider.running.state.audit.self_check().await.unwrap();
    assert!(checked.fault.is_none(), "{checked:?}");

    // A new credential is signed with the issuer's new key; the old one keeps verifying at the provider.
    let (_, fresh) = issue_membership(&issuer, member.participant_id(), json!({"membership": "active"})).await;
    let kid = hanse::identity::jose::peek(&fresh).unwrap().0["kid"].as_str().unwrap().to_owned();
    assert_ne!(kid, old_keys[0]);
    for connector in [issuer, provider, member] {
        connector.running.shutdown().await;
    }
}
