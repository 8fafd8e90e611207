//! Decisions as a hospital's policies produce them: rules, logic, conflicts, duties, the health profile, and the
//! never-silent rule.

mod support;

use hanse_policy::{JobContext, Outcome, evaluate, evaluate_transfer, permits};
use serde_json::json;
use support::*;

/// "Research only, by members of the federation, aggregates with at least 10 patients per cell, until the end of 2027."
fn research_aggregates() -> hanse_policy::Policy {
    policy(json!({
        "@id": "urn:policy:research-aggregates", "@type": "Offer",
        "permission": [{
            "action": "hanse:compute",
            "constraint": [{"and": [
                {"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"},
                {"leftOperand": "membership", "operator": "eq", "rightOperand": "active"},
                {"leftOperand": "hanse:minCellCount", "operator": "gteq", "rightOperand": "10"},
                {"leftOperand": "dateTime", "operator": "lteq", "rightOperand": "2027-12-31T23:59:59Z"}
            ]}]
        }],
        "prohibition": [{"action": "distribute"}]
    }))
}

fn member() -> hanse_policy::RequestContext {
    context().with_purpose("DUO:0000007").with_claim("membership", json!("active"))
}

#[test]
fn a_member_computing_for_research_is_permitted() {
    let job = JobContext { template: "glm".into(), min_cell_count: 10, ..JobContext::default() };
    let decision = evaluate(&research_aggregates(), "compute", &member().with_job(job));
    assert!(decision.permitted, "{}", decision.reason);
    assert!(decision.reason.contains("permission[0]"));
}

#[test]
fn the_same_policy_never_permits_a_raw_transfer() {
    let decision = evaluate_transfer(&research_aggregates(), &member());
    assert!(!decision.permitted);
    assert_eq!(decision.rules[0].outcome, Outcome::NotApplicable, "compute does not cover read");
    assert!(!permits(&research_aggregates(), "use", &member()));
}

#[test]
fn too_small_cells_deny_naming_the_constraint() {
    let job = JobContext { template: "aggregate".into(), min_cell_count: 5, ..JobContext::default() };
    let decision = evaluate(&research_aggregates(), "compute", &member().with_job(job));
    assert!(!decision.permitted);
    assert!(decision.reason.contains("minCellCount"), "{}", decision.reason);
    assert!(decision.reason.contains("permission[0].constraint[0].and[2]"), "{}", decision.reason);
}

#[test]
fn a_non_member_is_denied_with_the_reason() {
    let ctx = context().with_purpose("DUO:0000007");
    let decision = evaluate(&research_aggregates(), "compute", &ctx);
    assert!(!decision.permitted);
    assert!(decision.reason.contains("membership"), "{}", decision.reason);
    assert!(decision.reason.contains("no verified claim"), "{}", decision.reason);
}

#[test]
fn a_commercial_purpose_outside_the_hierarchy_is_denied() {
    let ctx = context().with_purpose("dpv:CommercialResearch").with_claim("membership", json!("active"));
    let decision = evaluate(&research_aggregates(), "compute", &ctx);
    assert!(!decision.permitted);
    assert!(decision.reason.contains("purpose"), "{}", decision.reason);
}

#[test]
fn an_expired_policy_denies() {
    let mut ctx = member();
    ctx.now = Some(chrono::DateTime::parse_from_rfc3339("2028-01-01T00:00:00Z").unwrap().into());
    let decision = evaluate(&research_aggregates(), "compute", &ctx);
    assert!(!decision.permitted);
    assert!(decision.reason.contains("dateTime"), "{}", decision.reason);
}

#[test]
fn an_unknown_left_operand_denies_and_is_named() {
    let p = policy(json!({"permission": [{"action": "use", "constraint": [
        {"leftOperand": "https://example.org/vendor#trustLevel", "operator": "gteq", "rightOperand": "3"}]}]}));
    let decision = evaluate(&p, "use", &context());
    assert!(!decision.permitted, "an unknown constraint must never be dropped");
    assert_eq!(decision.rules[0].constraints[0].outcome, Outcome::Invalid);
    assert!(
        decision.reason.contains("unknown left operand <https://example.org/vendor#trustLevel>"),
        "{}",
        decision.reason
    );
    assert!(!permits(&p, "use", &context()));
}

#[test]
fn an_unknown_operator_denies_and_is_named() {
    let p = permit_use_if(atomic("count", "approximately", json!(3)));
    let decision = evaluate(&p, "use", &context());
    assert!(!decision.permitted);
    assert!(decision.reason.contains("unknown operator"), "{}", decision.reason);
}

#[test]
fn an_unknown_constraint_inside_an_or_still_denies() {
    let p = permit_use_if(json!({"or": [
        atomic("count", "lt", json!(10)),
        atomic("vendor:mystery", "eq", json!("x"))
    ]}));
    assert!(!permits(&p, "use", &context()), "never silent: even a satisfied sibling does not excuse it");
}

#[test]
fn a_second_permission_can_grant_when_the_first_fails() {
    let p = policy(json!({"permission": [
        {"action": "use", "constraint": [atomic("membership", "eq", json!("active"))]},
        {"action": "read", "constraint": [atomic("recipient", "eq", json!("did:web:research.example"))]}
    ]}));
    let decision = evaluate(&p, "read", &context());
    assert!(decision.permitted, "{}", decision.reason);
    assert!(decision.reason.contains("permission[1]"));
    assert!(!permits(&p, "use", &context()), "read does not cover use");
}

#[test]
fn logical_operators_combine_as_odrl_says() {
    let ctx = context(); // usage 0
    let yes = atomic("count", "lt", json!(5));
    let no = atomic("count", "gt", json!(5));
    let cases = [
        (json!({"and": [yes, yes]}), true),
        (json!({"and": [yes, no]}), false),
        (json!({"or": [no, yes]}), true),
        (json!({"or": [no, no]}), false),
        (json!({"xone": [yes, no]}), true),
        (json!({"xone": [yes, yes]}), false),
        (json!({"xone": [no, no]}), false),
        (json!({"andSequence": [yes, yes]}), true),
        (json!({"andSequence": [no, yes]}), false),
        (json!({"and": [yes, {"or": [no, {"xone": [yes, no]}]}]}), true),
    ];
    for (constraint, expected) in cases {
        assert_eq!(permits(&permit_use_if(constraint.clone()), "use", &ctx), expected, "{constraint}");
    }
}

#[test]
fn an_empty_logical_constraint_is_malformed_and_denies() {
    let decision = evaluate(&permit_use_if(json!({"or": []})), "use", &context());
    assert!(!decision.permitted);
    assert!(decision.reason.contains("empty"), "{}", decision.reason);
}

#[test]
fn and_sequence_stops_at_the_first_failure() {
    let decision = evaluate(
        &permit_use_if(json!({"andSequence": [atomic("count", "gt", json!(5)), atomic("count", "lt", json!(5))]})),
        "use",
        &context(),
    );
    assert!(!decision.permitted);
    assert_eq!(decision.rules[0].constraints[0].children.len(), 1, "the second member is never visited");
}

fn conflicting(strategy: Option<&str>) -> hanse_policy::Policy {
    let mut p = json!({"permission": [{"action": "use"}], "prohibition": [{"action": "read"}]});
    if let Some(strategy) = strategy {
        p["conflict"] = json!(strategy);
    }
    policy(p)
}

#[test]
fn conflict_strategy_perm_lets_the_permission_win() {
    let decision = evaluate(&conflicting(Some("perm")), "read", &context());
    assert!(decision.permitted, "{}", decision.reason);
    assert!(decision.reason.contains("overrides"));
}

#[test]
fn conflict_strategy_prohibit_lets_the_prohibition_win() {
    let decision = evaluate(&conflicting(Some("odrl:prohibit")), "read", &context());
    assert!(!decision.permitted);
    assert!(decision.reason.contains("prohibition[0]"), "{}", decision.reason);
}

#[test]
fn without_a_strategy_a_conflict_voids_the_policy() {
    let decision = evaluate(&conflicting(None), "read", &context());
    assert!(!decision.permitted);
    assert!(decision.reason.contains("conflict strategy (invalid)"), "{}", decision.reason);
    // No conflict where the prohibition does not cover the request.
    assert!(permits(&conflicting(None), "display", &context()));
}

#[test]
fn a_prohibition_under_a_constraint_applies_only_when_it_holds() {
    let p = policy(json!({"conflict": "prohibit", "permission": [{"action": "use"}],
        "prohibition": [{"action": "use", "constraint": [atomic("spatial", "isNoneOf", json!(["EU"]))]}]}));
    let mut inside = context();
    inside.spatial = Some("FR".into());
    assert!(permits(&p, "use", &inside));
    let mut outside = context();
    outside.spatial = Some("US".into());
    assert!(!permits(&p, "use", &outside));
}

#[test]
fn an_unevaluable_prohibition_is_taken_to_apply() {
    let p = policy(json!({"conflict": "prohibit", "permission": [{"action": "use"}],
        "prohibition": [{"action": "use", "constraint": [atomic("vendor:thing", "eq", json!(1))]}]}));
    let decision = evaluate(&p, "use", &context());
    assert!(!decision.permitted, "{}", decision.reason);
    assert!(decision.reason.contains("unknown left operand"), "{}", decision.reason);
}

#[test]
fn duties_become_the_requesters_obligations() {
    let p = policy(json!({"permission": [{"action": "use", "duty": [
        {"action": "inform"},
        {"action": "delete", "constraint": [atomic("count", "gt", json!(100))]}
    ]}]}));
    let decision = evaluate(&p, "use", &context());
    assert!(decision.permitted);
    assert_eq!(
        decision.duties,
        vec!["http://www.w3.org/ns/odrl/2/inform".to_owned()],
        "the delete duty is not triggered"
    );
}

#[test]
fn a_duty_nobody_can_perform_denies() {
    let p = policy(json!({"permission": [{"action": "use", "duty": [{"action": "vendor:sacrificeAGoat"}]}]}));
    let decision = evaluate(&p, "use", &context());
    assert!(!decision.permitted);
    assert!(decision.reason.contains("cannot be committed to"), "{}", decision.reason);
}

#[test]
fn policy_level_obligations_are_listed_or_deny_when_unknown() {
    let p = policy(json!({"permission": [{"action": "use"}], "obligation": [{"action": "attribute"}]}));
    let decision = evaluate(&p, "use", &context());
    assert!(decision.permitted);
    assert_eq!(decision.duties, vec!["http://www.w3.org/ns/odrl/2/attribute".to_owned()]);
    let p = policy(json!({"permission": [{"action": "use"}], "obligation": [{"action": "vendor:pay"}]}));
    assert!(!permits(&p, "use", &context()));
}

#[test]
fn remedies_are_read_and_kept() {
    let p = policy(json!({"permission": [{"action": "use"}],
        "prohibition": [{"action": "distribute", "remedy": [{"action": "delete"}]}]}));
    assert_eq!(p.prohibitions[0].duties.len(), 1);
    assert!(permits(&p, "use", &context()));
}

#[test]
fn export_prohibitions_block_a_raw_transfer_but_not_compute() {
    for action in ["distribute", "reproduce", "extract", "transfer"] {
        let p = policy(json!({"permission": [{"action": "use"}], "prohibition": [{"action": action}]}));
        let decision = evaluate_transfer(&p, &context());
        assert!(!decision.permitted, "{action}: {}", decision.reason);
        assert!(permits(&p, "compute", &context()), "{action} does not stop compute-to-data");
    }
    let open = policy(json!({"permission": [{"action": "read"}]}));
    assert!(evaluate_transfer(&open, &context()).permitted);
}

#[test]
fn the_ids_provider_aggregation_is_the_compute_action() {
    let p = policy(json!({"permission": [{"action": "https://w3id.org/idsa/code/AGGREGATE_BY_PROVIDER"}]}));
    assert!(permits(&p, "compute", &context()));
    assert!(!evaluate_transfer(&p, &context()).permitted);
}

#[test]
fn refinements_of_the_compute_action_constrain_it() {
    let p = policy(json!({"permission": [{"action": {"action": "hanse:compute", "refinement": [
        atomic("hanse:jobTemplate", "isAnyOf", json!(["aggregate", "crosstab"]))]}}]}));
    let glm = context().with_job(JobContext { template: "glm".into(), min_cell_count: 5, ..JobContext::default() });
    let decision = evaluate(&p, "compute", &glm);
    assert!(!decision.permitted);
    assert!(decision.reason.contains("jobTemplate"), "{}", decision.reason);
    let aggregate = context().with_job(JobContext { template: "aggregate".into(), ..JobContext::default() });
    assert!(permits(&p, "compute", &aggregate));
}

#[test]
fn the_trace_visits_every_rule_and_shows_resolved_values() {
    let decision = evaluate(&research_aggregates(), "compute", &member());
    assert_eq!(decision.rules.len(), 2, "one permission and one prohibition");
    let and = &decision.rules[0].constraints[0];
    assert_eq!(and.children.len(), 4);
    assert_eq!(and.children[0].resolved.as_deref(), Some("DUO:0000007"));
    assert_eq!(and.children[2].outcome, Outcome::Deferred, "no job yet");
    let json = serde_json::to_value(&decision).unwrap();
    assert_eq!(json["permitted"], true);
    assert!(json["rules"][0]["constraints"][0]["children"][1]["reason"].is_string());
}

#[test]
fn fast_and_traced_paths_agree() {
    let contexts = [member(), context(), context().with_purpose("DUO:0000007")];
    for ctx in &contexts {
        for action in ["use", "compute", "read", "distribute"] {
            assert_eq!(
                permits(&research_aggregates(), action, ctx),
                evaluate(&research_aggregates(), action, ctx).permitted,
                "{action}"
            );
        }
    }
}

#[test]
fn a_logical_constraint_explains_how_each_of_its_members_came_out() {
    let yes = atomic("count", "lt", json!(5));
    let no = atomic("count", "gt", json!(5));
    let reason = |constraint: serde_json::Value| {
        let decision = evaluate(&permit_use_if(constraint), "use", &context());
        decision.rules[0].constraints[0].reason.clone()
    };
    assert_eq!(reason(json!({"xone": [yes, yes, no]})), "3 members: 2 satisfied, 1 violated (xone)");
    assert_eq!(reason(json!({"or": [no, no]})), "2 members: 2 violated (or)");
    // A sequence stops at its first failure: the members after it are named as not evaluated.
    assert_eq!(
        reason(json!({"andSequence": [yes, no, yes]})),
        "3 members: 1 satisfied, 1 violated, 1 not evaluated (andSequence)"
    );
}
