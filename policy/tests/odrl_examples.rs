//! Examples of the ODRL 2.2 Information Model (W3C Recommendation, §2–3) that apply to a connector, read and decided.

mod support;

use hanse_policy::{PolicyKind, evaluate, permits};
use serde_json::json;
use support::*;

#[test]
fn example_set_policy_permits_use_of_its_target() {
    // A Set: the asset may be used. (IM Example 1.)
    let p = policy(json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
        "uid": "http://example.com/policy:1010",
        "permission": [{"target": "http://example.com/asset:9898.movie", "action": "use"}]}));
    assert_eq!(p.kind, PolicyKind::Set);
    assert_eq!(p.uid.as_deref(), Some("http://example.com/policy:1010"));
    assert_eq!(p.permissions[0].target.as_deref(), Some("http://example.com/asset:9898.movie"));
    assert!(permits(&p, "use", &context()));
    assert!(permits(&p, "display", &context()), "display is included in use");
}

#[test]
fn example_offer_with_a_date_constraint() {
    // An Offer to play until the end of 2017 (IM §2.5 constraint example, dateTime lt).
    let p = policy(json!({"@type": "Offer", "uid": "http://example.com/policy:6163",
        "profile": "http://example.com/odrl:profile:10",
        "permission": [{"target": "http://example.com/document:1234", "assigner": "http://example.com/org:616",
            "action": "distribute",
            "constraint": [{"leftOperand": "dateTime", "operator": "lt", "rightOperand":
                {"@value": "2018-01-01", "@type": "xsd:date"}}]}]}));
    assert_eq!(p.profile, vec!["http://example.com/odrl:profile:10".to_owned()]);
    let decision = evaluate(&p, "distribute", &context());
    assert!(!decision.permitted, "that window closed in 2017");
    assert!(decision.reason.contains("dateTime"));
}

#[test]
fn example_permission_with_a_compensation_duty() {
    // Play permitted with a duty to compensate 5.00 EUR (IM §2.6.3).
    let p = policy(json!({"@type": "Agreement", "uid": "http://example.com/policy:88",
        "permission": [{"target": "http://example.com/document:1234", "assigner": "http://example.com/org:sony-music",
            "assignee": "http://example.com/people/billie", "action": "play",
            "duty": [{"action": [{"rdf:value": {"@id": "odrl:compensate"}, "refinement": [
                {"leftOperand": "payAmount", "operator": "eq", "rightOperand": {"@value": "5.00", "@type": "xsd:decimal"},
                 "unit": "http://dbpedia.org/resource/Euro"}]}]}]}]}));
    let decision = evaluate(&p, "play", &context());
    assert!(decision.permitted);
    // The refinement says what is owed; it is not a condition a requester can avoid by declaring nothing.
    assert_eq!(decision.duties, vec!["http://www.w3.org/ns/odrl/2/compensate".to_owned()], "{decision:#?}");
    let duty = &decision.rules[0].duties[0];
    assert!(duty.reason.contains("payAmount eq 5"), "{}", duty.reason);
}

#[test]
fn example_prohibition_with_a_remedy() {
    // Use permitted, indexing prohibited with the remedy of anonymising (IM §2.6.5).
    let p = policy(json!({"@type": "Agreement", "uid": "http://example.com/policy:5555",
        "permission": [{"target": "http://example.com/photoAlbum:55", "action": "display"}],
        "prohibition": [{"target": "http://example.com/photoAlbum:55", "action": "index",
            "remedy": [{"action": "anonymize"}]}]}));
    assert!(permits(&p, "display", &context()));
    assert!(!permits(&p, "index", &context()), "no permission for index, and it is prohibited");
}

#[test]
fn example_conflict_perm() {
    // IM §2.8: with conflict "perm" the permission to use overrides the prohibition to use... for a sub-action.
    let p = policy(json!({"@type": "Set", "uid": "http://example.com/policy:0001", "conflict": "perm",
        "permission": [{"target": "http://example.com/asset:1212", "action": "use"}],
        "prohibition": [{"target": "http://example.com/asset:1212", "action": "print"}]}));
    assert!(permits(&p, "print", &context()));
}

#[test]
fn example_logical_xone() {
    // IM §2.5.2: a constraint that holds for exactly one of two media.
    let p = permit_use_if(json!({"xone": [
        {"leftOperand": "recipient", "operator": "eq", "rightOperand": {"@id": "did:web:research.example"}},
        {"leftOperand": "recipient", "operator": "eq", "rightOperand": {"@id": "did:web:other.example"}}]}));
    assert!(permits(&p, "use", &context()));
}
