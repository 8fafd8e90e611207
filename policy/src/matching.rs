//! Offer matching by meaning: a consumer that re-serialises an offer (other prefixes, expanded JSON-LD, reordered
//! rules and constraints, numbers as strings) still matches it.

use serde_json::Value as Json;

use crate::model::{Constraint, LogicalOperator, Policy, Rule};
use crate::value::Value;

/// The canonical form of a policy: refinements folded into constraints, rules and constraints in a fixed order
/// (but `andSequence`, whose order is its meaning), set-valued right operands sorted and deduplicated, spellings
/// dropped where the typed value carries the meaning. `normalise(normalise(p)) == normalise(p)`.
pub fn normalise(policy: &Policy) -> Policy {
    let mut out = policy.clone();
    for rules in [&mut out.permissions, &mut out.prohibitions, &mut out.obligations] {
        for rule in rules.iter_mut() {
            normalise_rule(rule);
        }
        rules.sort_by_cached_key(|r| r.to_dsp_json("duty").to_string());
        rules.dedup();
    }
    out.profile.sort();
    out.profile.dedup();
    out
}

fn normalise_rule(rule: &mut Rule) {
    let mut constraints: Vec<Constraint> = rule.refinements.drain(..).chain(rule.constraints.drain(..)).collect();
    for c in constraints.iter_mut() {
        normalise_constraint(c);
    }
    sort_constraints(&mut constraints);
    rule.constraints = constraints;
    for duty in rule.duties.iter_mut() {
        normalise_rule(duty);
    }
    rule.duties.sort_by_cached_key(|r| r.to_dsp_json("consequence").to_string());
    rule.duties.dedup();
}

fn sort_constraints(constraints: &mut Vec<Constraint>) {
    constraints.sort_by_cached_key(|c| c.to_dsp_json().to_string());
    constraints.dedup();
}

fn normalise_constraint(constraint: &mut Constraint) {
    match constraint {
        Constraint::Logical { operator, constraints } => {
            for c in constraints.iter_mut() {
                normalise_constraint(c);
            }
            if *operator != LogicalOperator::AndSequence {
                sort_constraints(constraints);
            }
        }
        Constraint::Atomic(atomic) => {
            if let Ok(value) = &mut atomic.right {
                if let Value::List(items) = value {
                    items.sort_by_cached_key(|v| v.lexical());
                    items.dedup_by(|a, b| crate::value::equal(a, b));
                }
                // The typed value carries the meaning; how it was spelt does not matter.
                atomic.right_raw = Json::Null;
                atomic.data_type = None;
            }
        }
    }
}

/// Whether `requested` (from a consumer) means the same offer as `offered` (ours). Rules and the conflict strategy
/// must match; `target` and `assigner` must match where both sides name them (a catalogue offer has no target).
pub fn same_offer(requested: &Policy, offered: &Policy) -> bool {
    offer_difference(requested, offered).is_none()
}

/// How `requested` differs from `offered`, for a person: the first part that differs (rules of a kind, by count or
/// content; the conflict strategy; the target or the assigner), or `None` when they mean the same offer.
pub fn offer_difference(requested: &Policy, offered: &Policy) -> Option<String> {
    let (a, b) = (normalise(requested), normalise(offered));
    for (kind, ours, theirs) in [
        ("permission", &a.permissions, &b.permissions),
        ("prohibition", &a.prohibitions, &b.prohibitions),
        ("obligation", &a.obligations, &b.obligations),
    ] {
        if ours.len() != theirs.len() {
            return Some(format!("the request has {} {kind}(s) where the offer has {}", ours.len(), theirs.len()));
        }
        if let Some(i) = ours.iter().zip(theirs).position(|(x, y)| x != y) {
            return Some(format!(
                "{kind} {} differs: the request has {}, the offer {}",
                i + 1,
                ours[i].to_dsp_json("duty"),
                theirs[i].to_dsp_json("duty")
            ));
        }
    }
    if a.conflict != b.conflict {
        return Some(format!("the conflict strategy differs ({:?} requested, {:?} offered)", a.conflict, b.conflict));
    }
    let disagree = |x: &Option<String>, y: &Option<String>| match (x, y) {
        (Some(x), Some(y)) => crate::term::canonical(x) != crate::term::canonical(y),
        _ => false,
    };
    if disagree(&a.target, &b.target) {
        return Some(format!("the target differs ({:?} requested, {:?} offered)", a.target, b.target));
    }
    if disagree(&a.assigner, &b.assigner) {
        return Some(format!("the assigner differs ({:?} requested, {:?} offered)", a.assigner, b.assigner));
    }
    None
}
