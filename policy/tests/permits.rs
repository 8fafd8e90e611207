//! EHDS data permits: the `hanse:permit*` operands read the requester's verified `DataPermitCredential`, within its
//! validity; the permit's purpose follows the purpose hierarchy; a missing or expired permit denies with its reason.

mod support;

use hanse_policy::{Policy, evaluate};
use serde_json::json;
use support::*;

const HDAB: &str = "did:web:hdab.health.example";

fn permit_terms() -> Policy {
    Policy::from_json(&json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [{
        "action": "use", "constraint": {"and": [
            {"leftOperand": "hanse:permitPurpose", "operator": "isA", "rightOperand": "hanse:ehds-scientific-research"},
            {"leftOperand": "hanse:permitIssuer", "operator": "eq", "rightOperand": HDAB},
            {"leftOperand": "hanse:permitHolder", "operator": "eq", "rightOperand": true}]}}]}))
    .unwrap()
}

fn with_permit(purpose: &str, users: &[&str], valid_until: &str) -> hanse_policy::RequestContext {
    let mut ctx = context();
    ctx.credential_types = vec!["DataPermitCredential".into()];
    ctx.claims.insert(
        "dataPermit".into(),
        json!({"id": "HDAB-DE-2026-0042", "issuingBody": HDAB, "purpose": purpose, "users": users, "validUntil": valid_until}),
    );
    ctx
}

#[test]
fn a_valid_permit_for_a_narrower_purpose_naming_the_requester_permits() {
    let me = context().participant.unwrap();
    let ctx = with_permit("hanse:ehds-ai-training", &[&me], "2027-06-30T00:00:00Z");
    let decision = evaluate(&permit_terms(), "use", &ctx);
    assert!(decision.permitted, "{}", decision.reason);
    assert!(permit_terms().uses_claims(), "permits are read from verified credentials");
}

#[test]
fn a_permit_is_refused_for_another_purpose_another_user_or_after_it_expired() {
    let me = context().participant.unwrap();
    let refused = |ctx: &hanse_policy::RequestContext| {
        let decision = evaluate(&permit_terms(), "use", ctx);
        assert!(!decision.permitted);
        decision.reason
    };
    assert!(refused(&with_permit("hanse:ehds-education", &[&me], "2027-06-30T00:00:00Z")).contains("permitPurpose"));
    assert!(
        refused(&with_permit("hanse:ehds-ai-training", &["did:web:someone-else.example"], "2027-06-30T00:00:00Z"))
            .contains("permitHolder")
    );
    assert!(refused(&with_permit("hanse:ehds-ai-training", &[&me], "2026-01-01T00:00:00Z")).contains("expired"));
    let mut forged = with_permit("hanse:ehds-ai-training", &[&me], "2027-06-30T00:00:00Z");
    forged.credential_types = vec!["MembershipCredential".into()];
    assert!(
        refused(&forged).contains("no verified data permit"),
        "a dataPermit claim of another credential does not count"
    );
    assert!(refused(&context()).contains("no verified data permit"));
}
