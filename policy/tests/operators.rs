//! Every operator against every kind of value it applies to, through the public `evaluate`.

mod support;

use hanse_policy::{JobContext, Outcome, evaluate};
use serde_json::json;
use support::*;

fn holds(left: &str, operator: &str, right: serde_json::Value, ctx: &hanse_policy::RequestContext) -> bool {
    let decision = evaluate(&permit_use_if(atomic(left, operator, right)), "use", ctx);
    decision.permitted
}

#[test]
fn date_times_order_by_instant() {
    let ctx = context(); // 2026-11-23T12:00Z
    assert!(holds("dateTime", "lt", json!("2027-12-31T23:59:59Z"), &ctx));
    assert!(!holds("dateTime", "gt", json!("2027-12-31T23:59:59Z"), &ctx));
    assert!(holds("dateTime", "gteq", json!("2026-11-23T12:00:00Z"), &ctx));
    assert!(holds("dateTime", "lteq", json!("2026-11-23T13:00:00+01:00"), &ctx), "same instant, other zone");
    assert!(!holds("dateTime", "lt", json!("2026-11-23T13:00:00+01:00"), &ctx));
    assert!(holds("dateTime", "eq", json!({"@value": "2026-11-23T12:00:00Z", "@type": "xsd:dateTime"}), &ctx));
    assert!(holds("dateTime", "neq", json!("2026-11-24T12:00:00Z"), &ctx));
    assert!(holds("dateTime", "lt", json!("2027-01-01"), &ctx), "an xsd:date bound");
    assert!(holds("dateTime", "term-lteq", json!("2027-01-01T00:00:00Z"), &ctx), "DSP's term-lteq orders like lteq");
}

#[test]
fn elapsed_time_counts_from_the_agreement() {
    let mut ctx = context();
    ctx.agreed_at = Some(now() - chrono::Duration::days(10));
    assert!(holds("elapsedTime", "lteq", json!("P30D"), &ctx));
    assert!(!holds("elapsedTime", "lt", json!("P10D"), &ctx));
    assert!(holds("elapsedTime", "gteq", json!("PT240H"), &ctx));
    ctx.agreed_at = None;
    assert!(holds("elapsedTime", "lt", json!("PT1S"), &ctx), "before an agreement no time has elapsed");
}

#[test]
fn integers_and_decimals_compare_as_numbers() {
    let mut ctx = context();
    ctx.usage_count = 3;
    assert!(holds("count", "lt", json!("5"), &ctx));
    assert!(holds("count", "lteq", json!(3), &ctx));
    assert!(!holds("count", "gt", json!({"@value": "3", "@type": "xsd:integer"}), &ctx));
    assert!(holds("count", "eq", json!(3), &ctx));
    assert!(holds("count", "neq", json!(4), &ctx));
    ctx.pay_amount = Some(99.5);
    assert!(holds("payAmount", "gteq", json!("99.50"), &ctx));
    assert!(!holds("payAmount", "gt", json!(100), &ctx));
}

#[test]
fn purposes_follow_the_duo_hierarchy() {
    let ctx = context().with_purpose("DUO:0000007"); // disease-specific research
    assert!(holds("purpose", "isA", json!("DUO:0000042"), &ctx), "DS isA general research use");
    assert!(holds("purpose", "isA", json!("http://purl.obolibrary.org/obo/DUO_0000006"), &ctx));
    assert!(!holds("purpose", "eq", json!("DUO:0000042"), &ctx), "eq is not isA");
    assert!(holds("purpose", "isAnyOf", json!(["DUO:0000042", "hanse:ehds-statistics"]), &ctx));
    assert!(!holds("purpose", "isNoneOf", json!(["DUO:0000006"]), &ctx));
    let general = context().with_purpose("DUO:0000042");
    assert!(!holds("purpose", "isA", json!("DUO:0000007"), &general), "the broader purpose is not the narrower");
}

#[test]
fn purposes_follow_the_dpv_and_ehds_hierarchies() {
    let ctx = context().with_purpose("dpv:AcademicResearch");
    assert!(holds("purpose", "isA", json!("dpv:ResearchAndDevelopment"), &ctx));
    let ai = context().with_purpose("hanse:ehds-ai-training");
    assert!(holds("purpose", "isA", json!("https://w3id.org/hanse/ns/ehds-scientific-research"), &ai));
    assert!(!holds("purpose", "isA", json!("hanse:ehds-statistics"), &ai));
}

#[test]
fn places_are_parts_of_regions() {
    let mut ctx = context();
    ctx.spatial = Some("DE".into());
    assert!(holds("spatial", "isPartOf", json!("EU"), &ctx));
    assert!(holds("spatial", "eq", json!("http://example.org/DE"), &ctx));
    assert!(holds("spatial", "isAnyOf", json!(["FR", "EEA"]), &ctx), "DE is part of the EEA");
    assert!(!holds("spatial", "isPartOf", json!("FR"), &ctx));
    ctx.spatial = Some("US".into());
    assert!(!holds("spatial", "isPartOf", json!("EU"), &ctx));
    assert!(holds("spatial", "isNoneOf", json!(["EU"]), &ctx));
}

#[test]
fn set_operators_on_credential_types() {
    let mut ctx = context();
    ctx.credential_types = vec!["MembershipCredential".into(), "ResearcherCredential".into()];
    assert!(holds("hanse:credentialType", "isAllOf", json!(["MembershipCredential", "ResearcherCredential"]), &ctx));
    assert!(!holds("hanse:credentialType", "isAllOf", json!(["MembershipCredential", "AuditorCredential"]), &ctx));
    assert!(holds("hanse:credentialType", "hasPart", json!("ResearcherCredential"), &ctx));
    assert!(holds("hanse:credentialType", "isAnyOf", json!(["AuditorCredential", "MembershipCredential"]), &ctx));
    assert!(holds("hanse:credentialType", "isNoneOf", json!(["AuditorCredential"]), &ctx));
    assert!(holds(
        "hanse:credentialType",
        "isPartOf",
        json!(["MembershipCredential", "ResearcherCredential", "X"]),
        &ctx
    ));
}

#[test]
fn claims_compare_with_their_own_type() {
    let ctx = context()
        .with_claim("membership", json!("active"))
        .with_claim("country", json!("DE"))
        .with_claim("level", json!(3))
        .with_claim("verified", json!(true))
        .with_claim("address", json!({"country": "NL"}));
    assert!(holds("membership", "eq", json!("active"), &ctx));
    assert!(holds("country", "isAnyOf", json!(["DE", "NL"]), &ctx));
    assert!(holds("hanse:claims/level", "gteq", json!("2"), &ctx), "text read as the claim's number");
    assert!(holds("hanse:claims/verified", "eq", json!("true"), &ctx));
    assert!(holds("https://w3id.org/hanse/ns/claims/address.country", "eq", json!("NL"), &ctx));
    assert!(!holds("role", "eq", json!("researcher"), &ctx), "a missing claim does not hold");
}

#[test]
fn recipient_is_the_verified_participant() {
    let ctx = context();
    assert!(holds("recipient", "eq", json!("did:web:research.example"), &ctx));
    assert!(holds("recipient", "isAnyOf", json!(["did:web:a.example", "did:web:research.example"]), &ctx));
    assert!(!holds("recipient", "eq", json!("did:web:other.example"), &ctx));
}

#[test]
fn compute_constraints_decide_inside_a_job_and_defer_outside() {
    let job = JobContext { template: "glm".into(), min_cell_count: 10, jobs_run: 4, ..JobContext::default() };
    let in_job = context().with_job(job);
    assert!(holds("hanse:minCellCount", "gteq", json!(10), &in_job));
    assert!(!holds("hanse:minCellCount", "gteq", json!(11), &in_job));
    assert!(holds("hanse:jobTemplate", "isAnyOf", json!(["aggregate", "glm"]), &in_job));
    assert!(!holds("hanse:jobTemplate", "eq", json!("fedavg"), &in_job));
    assert!(holds("hanse:maxJobs", "lteq", json!(5), &in_job), "this is the fifth job");
    assert!(!holds("hanse:maxJobs", "lteq", json!(4), &in_job));

    let outside = context();
    let decision = evaluate(&permit_use_if(atomic("hanse:minCellCount", "gteq", json!(10))), "use", &outside);
    assert!(decision.permitted);
    assert_eq!(decision.deferred.len(), 1, "{decision:#?}");
    assert_eq!(decision.rules[0].constraints[0].outcome, Outcome::Deferred);
}

#[test]
fn algorithm_digests_and_disclosure_methods_normalise() {
    let job = JobContext {
        template: "aggregate".into(),
        algorithm_digest: Some("SHA-256:ABCDEF".to_lowercase()),
        disclosure_method: Some("suppress".into()),
        min_cell_count: 5,
        jobs_run: 0,
        secure_aggregation: false,
        privacy_epsilon: None,
    };
    let ctx = context().with_job(job);
    assert!(holds("hanse:algorithmDigest", "isAnyOf", json!(["abcdef", "123456"]), &ctx));
    assert!(holds("hanse:disclosureMethod", "isAnyOf", json!(["hanse:suppress", "hanse:round"]), &ctx));
    assert!(!holds("hanse:disclosureMethod", "eq", json!("noise"), &ctx));
}

#[test]
fn secure_aggregation_is_demanded_of_a_job_and_deferred_outside_one() {
    let job = |secure| JobContext { template: "fedavg".into(), secure_aggregation: secure, ..JobContext::default() };
    let demanded = atomic("hanse:secureAggregation", "eq", json!(true));
    assert!(holds("hanse:secureAggregation", "eq", json!(true), &context().with_job(job(true))));
    let decision = evaluate(&permit_use_if(demanded.clone()), "use", &context().with_job(job(false)));
    assert!(!decision.permitted, "{decision:#?}");
    assert!(decision.reason.contains("secureAggregation"), "{}", decision.reason);
    // At negotiation there is no job yet: the constraint is deferred to each job, not dropped.
    let decision = evaluate(&permit_use_if(demanded), "use", &context());
    assert!(decision.permitted && decision.deferred.len() == 1, "{decision:#?}");
}

#[test]
fn a_privacy_budget_admits_jobs_while_their_epsilon_fits_and_no_job_without_one() {
    let job = |epsilon| JobContext { template: "fedavg".into(), privacy_epsilon: epsilon, ..JobContext::default() };
    assert!(holds("hanse:privacyEpsilon", "lteq", json!(3), &context().with_job(job(Some(2.5)))));
    assert!(!holds("hanse:privacyEpsilon", "lteq", json!(3), &context().with_job(job(Some(3.01)))));
    let budget = atomic("hanse:privacyEpsilon", "lteq", json!(3));
    let decision = evaluate(&permit_use_if(budget), "use", &context().with_job(job(None)));
    assert!(!decision.permitted, "{decision:#?}");
    assert!(decision.reason.contains("not differentially private"), "{}", decision.reason);
}

#[test]
fn ordering_an_unordered_value_is_invalid_and_says_so() {
    let ctx = context().with_purpose("DUO:0000042");
    let decision = evaluate(&permit_use_if(atomic("purpose", "lt", json!("DUO:0000007"))), "use", &ctx);
    assert!(!decision.permitted);
    assert_eq!(decision.rules[0].constraints[0].outcome, Outcome::Invalid);
    assert!(decision.reason.contains("cannot order"), "{}", decision.reason);
}
