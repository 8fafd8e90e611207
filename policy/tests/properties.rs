//! Algebraic laws of evaluation and normalisation, and the parser's robustness, over random inputs.

mod support;

use hanse_policy::{Policy, evaluate, normalise, permits, same_offer, validate};
use proptest::prelude::*;
use serde_json::{Value, json};
use support::*;

/// Atomic constraints over `count` with an operator that has an exact complement.
fn count_constraint() -> impl Strategy<Value = (Value, Value)> {
    (0i64..20, prop::sample::select(vec!["lt", "lteq", "gt", "gteq", "eq", "neq"])).prop_map(|(n, op)| {
        let complement = match op {
            "lt" => "gteq",
            "lteq" => "gt",
            "gt" => "lteq",
            "gteq" => "lt",
            "eq" => "neq",
            _ => "eq",
        };
        (atomic("count", op, json!(n.to_string())), atomic("count", complement, json!(n.to_string())))
    })
}

fn ctx(usage: u64) -> hanse_policy::RequestContext {
    let mut ctx = context();
    ctx.usage_count = usage;
    ctx
}

proptest! {
    #[test]
    fn and_of_a_constraint_with_itself_is_the_constraint((c, _) in count_constraint(), usage in 0u64..25) {
        let single = permits(&permit_use_if(c.clone()), "use", &ctx(usage));
        let doubled = permits(&permit_use_if(json!({"and": [c.clone(), c.clone()]})), "use", &ctx(usage));
        let ored = permits(&permit_use_if(json!({"or": [c.clone(), c]})), "use", &ctx(usage));
        prop_assert_eq!(single, doubled);
        prop_assert_eq!(single, ored);
    }

    #[test]
    fn a_constraint_and_its_complement_never_both_hold((c, not_c) in count_constraint(), usage in 0u64..25) {
        let a = permits(&permit_use_if(c.clone()), "use", &ctx(usage));
        let b = permits(&permit_use_if(not_c.clone()), "use", &ctx(usage));
        prop_assert!(a != b, "exactly one of c and its complement holds");
        let both = permits(&permit_use_if(json!({"and": [c.clone(), not_c.clone()]})), "use", &ctx(usage));
        let either = permits(&permit_use_if(json!({"or": [c.clone(), not_c.clone()]})), "use", &ctx(usage));
        let exactly_one = permits(&permit_use_if(json!({"xone": [c, not_c]})), "use", &ctx(usage));
        prop_assert!(!both);
        prop_assert!(either);
        prop_assert!(exactly_one);
    }

    #[test]
    fn de_morgan_not_and_is_or_of_nots((a, not_a) in count_constraint(), (b, not_b) in count_constraint(), usage in 0u64..25) {
        let and = permits(&permit_use_if(json!({"and": [a.clone(), b.clone()]})), "use", &ctx(usage));
        let or_of_nots = permits(&permit_use_if(json!({"or": [not_a.clone(), not_b.clone()]})), "use", &ctx(usage));
        prop_assert_eq!(and, !or_of_nots);
        let or = permits(&permit_use_if(json!({"or": [a, b]})), "use", &ctx(usage));
        let and_of_nots = permits(&permit_use_if(json!({"and": [not_a, not_b]})), "use", &ctx(usage));
        prop_assert_eq!(or, !and_of_nots);
    }

    #[test]
    fn traced_and_fast_evaluation_agree((a, _) in count_constraint(), (b, _) in count_constraint(), usage in 0u64..25,
                                        op in prop::sample::select(vec!["and", "or", "xone", "andSequence"])) {
        let p = permit_use_if(json!({op: [a, b]}));
        prop_assert_eq!(permits(&p, "use", &ctx(usage)), evaluate(&p, "use", &ctx(usage)).permitted);
    }

    #[test]
    fn normalisation_is_idempotent_and_order_blind(
        constraints in prop::collection::vec(count_constraint(), 1..5),
        shuffle in any::<u64>(),
    ) {
        let list: Vec<Value> = constraints.iter().map(|(c, _)| c.clone()).collect();
        let mut shuffled = list.clone();
        let len = shuffled.len();
        shuffled.rotate_left((shuffle as usize) % len);
        let original = policy(json!({"@type": "Offer", "permission": [{"action": "use", "constraint": list}]}));
        let reordered = policy(json!({"@type": "odrl:Offer", "odrl:permission": [{"odrl:action": {"@id": "odrl:use"}, "odrl:constraint": shuffled}]}));
        let once = normalise(&original);
        prop_assert_eq!(normalise(&once), once.clone());
        let reparsed = Policy::from_json(&original.to_dsp_json()).unwrap();
        let reordered_matches = same_offer(&reordered, &original);
        let reparsed_matches = same_offer(&original, &reparsed);
        prop_assert!(reordered_matches);
        prop_assert!(reparsed_matches);
    }

    #[test]
    fn random_json_never_panics_the_parser_or_the_engine(value in arbitrary_json(4)) {
        // Wrap the noise where a policy, a rule and a constraint are expected.
        for candidate in [
            value.clone(),
            json!({"permission": value.clone()}),
            json!({"permission": [{"action": "use", "constraint": value.clone()}]}),
            json!({"permission": [{"action": value.clone(), "duty": value.clone()}], "prohibition": value.clone()}),
        ] {
            if let Ok(p) = Policy::from_json(&candidate) {
                let _ = validate(&p);
                let _ = evaluate(&p, "use", &context());
                let _ = permits(&p, "compute", &context());
                let _ = normalise(&p);
                let _ = p.to_dsp_json();
            }
        }
    }
}

#[test]
fn different_offers_do_not_match() {
    let a = policy(json!({"permission": [{"action": "use", "constraint": [atomic("count", "lt", json!(5))]}]}));
    let b = policy(json!({"permission": [{"action": "use", "constraint": [atomic("count", "lt", json!(6))]}]}));
    let c = policy(json!({"permission": [{"action": "read", "constraint": [atomic("count", "lt", json!(5))]}]}));
    let d = policy(json!({"permission": [{"action": "use", "constraint": [atomic("count", "lt", json!(5))]}],
        "prohibition": [{"action": "distribute"}]}));
    assert!(same_offer(&a, &a));
    for other in [&b, &c, &d] {
        assert!(!same_offer(&a, other));
    }
    let targeted = policy(
        json!({"target": "urn:dataset:1", "permission": [{"action": "use", "constraint": [atomic("count", "lt", json!(5))]}]}),
    );
    assert!(same_offer(&targeted, &a), "a catalogue offer names no target");
    let elsewhere = policy(
        json!({"target": "urn:dataset:2", "permission": [{"action": "use", "constraint": [atomic("count", "lt", json!(5))]}]}),
    );
    assert!(!same_offer(&targeted, &elsewhere));
}

#[test]
fn and_sequence_order_is_meaning() {
    let ab = policy(json!({"permission": [{"action": "use", "constraint": [{"andSequence": [
        atomic("count", "lt", json!(5)), atomic("count", "gt", json!(1))]}]}]}));
    let ba = policy(json!({"permission": [{"action": "use", "constraint": [{"andSequence": [
        atomic("count", "gt", json!(1)), atomic("count", "lt", json!(5))]}]}]}));
    assert!(!same_offer(&ab, &ba));
}

fn arbitrary_json(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop::sample::select(vec![
            "use",
            "eq",
            "count",
            "dateTime",
            "purpose",
            "and",
            "or",
            "@id",
            "@value",
            "leftOperand",
            "operator",
            "rightOperand",
            "P1D",
            "2027-01-01",
            "DUO:0000007",
            "",
            "odrl:use",
            "hanse:compute",
            "@list",
        ])
        .prop_map(|s| json!(s)),
        ".*".prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "action",
                        "constraint",
                        "leftOperand",
                        "operator",
                        "rightOperand",
                        "and",
                        "or",
                        "xone",
                        "andSequence",
                        "permission",
                        "prohibition",
                        "duty",
                        "@id",
                        "@type",
                        "@value",
                        "refinement",
                        "conflict",
                        "@list",
                        "uid",
                        "target",
                    ]),
                    inner
                ),
                0..5
            )
            .prop_map(|entries| Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}
