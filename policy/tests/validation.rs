//! `validate` finds what would make a policy useless before it is stored, with the place and the reason.

mod support;

use chrono::{TimeZone, Utc};
use hanse_policy::{IssueCode, Severity, validate, validate_at};
use serde_json::json;
use support::*;

fn codes(p: serde_json::Value) -> Vec<IssueCode> {
    validate(&policy(p)).into_iter().filter(|i| i.severity == Severity::Error).map(|i| i.code).collect()
}

#[test]
fn a_sound_policy_has_no_issues() {
    let issues = validate(&policy(json!({"permission": [{"action": "use", "constraint": [
        {"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"},
        {"leftOperand": "dateTime", "operator": "lt", "rightOperand": "2027-12-31T23:59:59Z"}],
        "duty": [{"action": "inform"}]}], "prohibition": [{"action": "distribute"}]})));
    assert!(issues.is_empty(), "{issues:#?}");
}

#[test]
fn missing_and_unknown_actions() {
    assert_eq!(codes(json!({"permission": [{"constraint": []}]})), [IssueCode::MissingAction]);
    assert_eq!(codes(json!({"permission": [{"action": "vendor:teleport"}]})), [IssueCode::UnknownAction]);
    assert_eq!(
        codes(json!({"permission": [{"action": "use", "duty": [{"action": "vendor:x"}]}]})),
        [IssueCode::UnknownAction]
    );
    assert_eq!(codes(json!({"@type": "Set"})), [IssueCode::NoRules]);
}

#[test]
fn unknown_operands_and_operators_are_named() {
    let issues = validate(&permit_use_if(atomic("https://vendor.example/trust", "approximately", json!("3"))));
    let codes: Vec<_> = issues.iter().map(|i| i.code).collect();
    assert_eq!(codes, [IssueCode::UnknownLeftOperand, IssueCode::UnknownOperator]);
    assert_eq!(issues[0].path, "permission[0].constraint[0]");
    assert!(issues[0].message.contains("https://vendor.example/trust"));
}

#[test]
fn wrong_value_types_are_reported_with_what_was_expected() {
    for (left, right) in [
        ("dateTime", json!("next year")),
        ("elapsedTime", json!("30 days")),
        ("count", json!("many")),
        ("count", json!({"@value": "2027-01-01", "@type": "xsd:date"})),
        ("hanse:disclosureMethod", json!("shred")),
    ] {
        let issues = validate(&permit_use_if(atomic(left, "eq", right.clone())));
        assert!(issues.iter().any(|i| i.code == IssueCode::WrongValueType), "{left} {right}: {issues:#?}");
    }
}

#[test]
fn operators_that_do_not_fit_the_value() {
    assert_eq!(
        codes(permit_use_json(atomic("purpose", "lt", json!("DUO:0000042")))),
        [IssueCode::OperatorNotApplicable]
    );
    assert_eq!(codes(permit_use_json(atomic("count", "isA", json!(3)))), [IssueCode::OperatorNotApplicable]);
}

fn permit_use_json(constraint: serde_json::Value) -> serde_json::Value {
    json!({"permission": [{"action": "use", "constraint": [constraint]}]})
}

#[test]
fn contradictions_that_can_never_hold() {
    for constraints in [
        json!([atomic("count", "gt", json!(10)), atomic("count", "lt", json!(5))]),
        json!([atomic("count", "gteq", json!(5)), atomic("count", "lt", json!(5))]),
        json!([
            atomic("dateTime", "gt", json!("2027-01-01T00:00:00Z")),
            atomic("dateTime", "lt", json!("2026-01-01T00:00:00Z"))
        ]),
        json!([atomic("recipient", "eq", json!("did:web:a")), atomic("recipient", "eq", json!("did:web:b"))]),
        json!([
            atomic("hanse:jobTemplate", "eq", json!("glm")),
            atomic("hanse:jobTemplate", "isNoneOf", json!(["glm"]))
        ]),
        json!([{"and": [atomic("count", "eq", json!(1)), atomic("count", "neq", json!(1))]}]),
    ] {
        let found = codes(json!({"permission": [{"action": "use", "constraint": constraints}]}));
        assert!(found.contains(&IssueCode::Contradiction), "{constraints}: {found:?}");
    }
    // Alternatives are not contradictions.
    let found = codes(json!({"permission": [{"action": "use", "constraint": [{"or": [
        atomic("count", "gt", json!(10)), atomic("count", "lt", json!(5))]}]}]}));
    assert!(found.is_empty(), "{found:?}");
    // A closed interval with one point is satisfiable.
    let found = codes(json!({"permission": [{"action": "use", "constraint": [
        atomic("count", "gteq", json!(5)), atomic("count", "lteq", json!(5))]}]}));
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn empty_logical_constraints_are_malformed() {
    assert_eq!(codes(permit_use_json(json!({"xone": []}))), [IssueCode::EmptyLogicalConstraint]);
}

#[test]
fn purposes_outside_the_profile_are_a_warning() {
    let issues = validate(&permit_use_if(atomic("purpose", "eq", json!("https://example.org/marketing"))));
    assert_eq!(issues.len(), 1);
    assert_eq!((issues[0].severity, issues[0].code), (Severity::Warning, IssueCode::UnknownPurpose));
}

#[test]
fn a_closed_time_window_is_an_error_at_a_given_time() {
    let p = permit_use_if(atomic("dateTime", "lt", json!("2026-01-01T00:00:00Z")));
    assert!(validate(&p).is_empty(), "without a clock nothing has expired");
    let issues = validate_at(&p, Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap());
    assert_eq!(issues.iter().map(|i| i.code).collect::<Vec<_>>(), [IssueCode::Expired]);
}
