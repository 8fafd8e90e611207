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
    let (a, b) = (normalise(requested), normalise(offered));
    let agree = |x: &Option<String>, y: &Option<String>| match (x, y) {
        (Some(x), Some(y)) => crate::term::canonical(x) == crate::term::canonical(y),
        _ => true,
    };
    a.permissions == b.permissions
        && a.prohibitions == b.prohibitions
        && a.obligations == b.obligations
        && a.conflict == b.conflict
        && agree(&a.target, &b.target)
        && agree(&a.assigner, &b.assigner)
}
