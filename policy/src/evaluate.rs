//! Evaluation: `(policy, action, context) → Decision`, with a trace of every rule and constraint visited.
//!
//! One implementation serves both entry points: [`evaluate`] builds the full trace; [`permits`] answers the same
//! question without building any text (`TRACE = false` compiles the tracing away).
//!
//! Semantics (ODRL 2.2 with Hanse's "never silent" rule):
//! - A permission applies when its action covers the requested one (equal, or the request is `includedIn` it) and all
//!   its refinements and constraints hold. Its duties become the requester's obligations.
//! - A prohibition applies when its action covers the requested one and its constraints hold.
//! - Unknown left operands, unknown operators and unreadable values make their rule fail — a permission does not
//!   grant, a prohibition is taken to apply — and the decision names the constraint.
//! - Constraints that can only be decided while a compute job runs are *deferred* outside one: they do not deny now,
//!   and the decision lists them.
//! - Permission and prohibition both applying is a conflict, resolved by the policy's strategy (`invalid` when none
//!   is given: the policy is void and the request denied).

use std::borrow::Cow;
use std::cmp::Ordering;

use serde::Serialize;

use crate::context::RequestContext;
use crate::model::{
    AtomicConstraint, ConflictStrategy, Constraint, LeftOperand, LogicalOperator, Operator, Policy, Rule,
};
use crate::profile::{self, canonical_action};
use crate::term;
use crate::value::{Value, ValueKind, compare, equal, parse_as};

/// How a constraint or rule came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    Satisfied,
    Violated,
    /// Cannot be decided yet (a compute-job constraint outside a job); does not deny now.
    Deferred,
    /// Cannot be evaluated (unknown operand or operator, unreadable value); denies.
    Invalid,
    /// The rule's action does not cover the requested action.
    NotApplicable,
}

/// One constraint's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConstraintTrace {
    /// Where it sits, e.g. `permission[0].constraint[1].or[0]`.
    pub path: String,
    /// The constraint as written, e.g. `purpose isA DUO:0000042`.
    pub constraint: String,
    /// What the left operand resolved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
    pub outcome: Outcome,
    pub reason: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ConstraintTrace>,
}

/// One rule's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleTrace {
    /// `permission[0]`, `prohibition[1]`, `obligation[0]`, `permission[0].duty[0]`.
    pub path: String,
    pub action: String,
    pub outcome: Outcome,
    pub reason: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<ConstraintTrace>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub duties: Vec<RuleTrace>,
}

/// The answer, with the reasons.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub permitted: bool,
    /// The requested action (canonical IRI).
    pub action: String,
    /// One line a person can read: what permitted, or the first thing that denied.
    pub reason: String,
    /// Every rule visited, with its constraints.
    pub rules: Vec<RuleTrace>,
    /// Duties the requester takes on by this use (`odrl:inform`, ...).
    pub duties: Vec<String>,
    /// Constraints to be checked when a compute job runs.
    pub deferred: Vec<String>,
}

/// Evaluates `policy` for `action` in `context`, with a full trace.
pub fn evaluate(policy: &Policy, action: &str, context: &RequestContext) -> Decision {
    decide::<true>(policy, &canonical_action(action), context, false)
}

/// The canonical action without allocating for the spellings the connector itself uses.
fn requested_action(action: &str) -> Cow<'static, str> {
    match action {
        "use" | profile::USE => Cow::Borrowed(profile::USE),
        "read" | profile::READ => Cow::Borrowed(profile::READ),
        "compute" | "hanse:compute" | profile::COMPUTE => Cow::Borrowed(profile::COMPUTE),
        other => Cow::Owned(canonical_action(other)),
    }
}

/// The same decision as [`evaluate`] without building the trace or any text: the hot path.
pub fn permits(policy: &Policy, action: &str, context: &RequestContext) -> bool {
    decide::<false>(policy, &requested_action(action), context, false).permitted
}

/// Whether a raw data transfer is permitted: a permission covering `read` (so `use` or `read`, never `hanse:compute`),
/// and no applicable prohibition of `use`, `read`, or of the export actions `distribute`, `reproduce`, `extract`,
/// `transfer`.
pub fn evaluate_transfer(policy: &Policy, context: &RequestContext) -> Decision {
    decide::<true>(policy, profile::READ, context, true)
}

struct Judged {
    outcome: Outcome,
    trace: Option<ConstraintTrace>,
}

struct RuleJudged {
    outcome: Outcome,
    trace: Option<RuleTrace>,
}

fn decide<const TRACE: bool>(policy: &Policy, requested: &str, context: &RequestContext, export: bool) -> Decision {
    let mut rules = Vec::new();
    let mut duties = Vec::new();
    let mut deferred = Vec::new();
    let mut first_denial: Option<String> = None;
    let mut granted_by: Option<String> = None;

    for (i, permission) in policy.permissions.iter().enumerate() {
        let judged = judge_rule::<TRACE>(permission, requested, context, "permission", i, false);
        if TRACE && let Some(trace) = &judged.trace {
            collect(trace, &mut duties, &mut deferred, judged.outcome);
            if matches!(judged.outcome, Outcome::Violated | Outcome::Invalid) && first_denial.is_none() {
                first_denial = Some(format!("{}: {}", trace.path, trace.reason));
            }
        }
        if matches!(judged.outcome, Outcome::Satisfied | Outcome::Deferred) && granted_by.is_none() {
            granted_by = Some(if TRACE { format!("permission[{i}]") } else { String::new() });
        }
        if TRACE {
            rules.extend(judged.trace);
        } else if granted_by.is_some() {
            break;
        }
    }

    let mut prohibited_by: Option<String> = None;
    for (i, prohibition) in policy.prohibitions.iter().enumerate() {
        let judged = judge_rule::<TRACE>(prohibition, requested, context, "prohibition", i, export);
        // A prohibition that cannot be evaluated is taken to apply: never permit silently.
        if matches!(judged.outcome, Outcome::Satisfied | Outcome::Invalid) && prohibited_by.is_none() {
            prohibited_by = Some(match &judged.trace {
                Some(trace) => format!("{}: {}", trace.path, trace.reason),
                None => String::new(),
            });
        }
        if TRACE {
            if let Some(trace) = &judged.trace
                && judged.outcome == Outcome::Deferred
            {
                collect(trace, &mut duties, &mut deferred, judged.outcome);
            }
            rules.extend(judged.trace);
        } else if prohibited_by.is_some() {
            break;
        }
    }

    let mut obligation_failure: Option<String> = None;
    for (i, obligation) in policy.obligations.iter().enumerate() {
        let judged = judge_duty::<TRACE>(obligation, context, &format!("obligation[{i}]"));
        if judged.outcome == Outcome::Invalid && obligation_failure.is_none() {
            obligation_failure =
                Some(judged.trace.as_ref().map(|t| format!("{}: {}", t.path, t.reason)).unwrap_or_default());
        }
        if TRACE && let Some(trace) = judged.trace {
            if judged.outcome == Outcome::Satisfied {
                duties.push(trace.action.clone());
            }
            rules.push(trace);
        }
    }

    let action_name = if TRACE { term::short(requested) } else { String::new() };
    let (permitted, reason) = match (granted_by, prohibited_by, obligation_failure) {
        (_, _, Some(failure)) => (false, failure),
        (None, _, None) => {
            let reason = if !TRACE {
                String::new()
            } else if let Some(denial) = first_denial {
                format!("no permission for {action_name} holds; {denial}")
            } else {
                format!("the policy grants no permission for {action_name}")
            };
            (false, reason)
        }
        (Some(grant), None, None) => (true, format!("{grant} permits {action_name}")),
        (Some(grant), Some(prohibition), None) => match policy.conflict {
            ConflictStrategy::Perm => {
                (true, format!("{grant} permits {action_name}; it overrides {prohibition} (conflict strategy perm)"))
            }
            ConflictStrategy::Prohibit => (false, format!("{prohibition} (conflict strategy prohibit)")),
            ConflictStrategy::Invalid => (
                false,
                format!("{grant} and {prohibition} conflict, and the policy's conflict strategy (invalid) voids it"),
            ),
        },
    };
    Decision {
        permitted,
        action: if TRACE { requested.to_owned() } else { String::new() },
        reason: if TRACE { reason } else { String::new() },
        rules,
        duties,
        deferred,
    }
}

/// Gathers the obligations and deferred constraints of an applicable rule.
fn collect(trace: &RuleTrace, duties: &mut Vec<String>, deferred: &mut Vec<String>, outcome: Outcome) {
    if !matches!(outcome, Outcome::Satisfied | Outcome::Deferred) {
        return;
    }
    fn walk(trace: &ConstraintTrace, deferred: &mut Vec<String>) {
        if trace.outcome == Outcome::Deferred && trace.children.is_empty() {
            deferred.push(format!("{}: {}", trace.path, trace.constraint));
        }
        for child in &trace.children {
            walk(child, deferred);
        }
    }
    for constraint in &trace.constraints {
        walk(constraint, deferred);
    }
    for duty in &trace.duties {
        if duty.outcome == Outcome::Satisfied {
            duties.push(duty.action.clone());
        }
    }
}

fn judge_rule<const TRACE: bool>(
    rule: &Rule,
    requested: &str,
    context: &RequestContext,
    kind: &str,
    index: usize,
    export: bool,
) -> RuleJudged {
    let path = if TRACE { format!("{kind}[{index}]") } else { String::new() };
    let Some(action) = rule.action.as_deref() else {
        return rule_result::<TRACE>(path, "", Outcome::Invalid, || "names no action".into(), vec![], vec![]);
    };
    let export_prohibition = export && kind == "prohibition" && profile::EXPORT_ACTIONS.contains(&action);
    if !profile::action_covers(action, requested) && !export_prohibition {
        return rule_result::<TRACE>(
            path,
            action,
            Outcome::NotApplicable,
            || format!("{} does not cover {}", term::short(action), term::short(requested)),
            vec![],
            vec![],
        );
    }
    let (mut outcome, constraints) =
        judge_all::<TRACE>(rule.conditions(), context, &path, "constraint", LogicalOperator::And);
    let mut duty_traces = Vec::new();
    if kind == "permission" && outcome != Outcome::Violated {
        for (i, duty) in rule.duties.iter().enumerate() {
            let judged =
                judge_duty::<TRACE>(duty, context, &if TRACE { format!("{path}.duty[{i}]") } else { String::new() });
            if judged.outcome == Outcome::Invalid {
                outcome = Outcome::Invalid;
            }
            duty_traces.extend(judged.trace);
        }
    }
    let reason = if !TRACE {
        String::new()
    } else {
        match outcome {
            Outcome::Satisfied => format!("{} holds", term::short(action)),
            Outcome::Deferred => format!("{} holds; some constraints are checked when a job runs", term::short(action)),
            _ => first_failure(&constraints)
                .or_else(|| {
                    duty_traces
                        .iter()
                        .find(|d| d.outcome == Outcome::Invalid)
                        .map(|d| format!("{}: {}", d.path, d.reason))
                })
                .unwrap_or_else(|| "does not hold".into()),
        }
    };
    rule_result::<TRACE>(path, action, outcome, || reason, constraints, duty_traces)
}

/// A duty (or obligation): its action must be one Hanse knows; its constraints say whether it is triggered.
fn judge_duty<const TRACE: bool>(duty: &Rule, context: &RequestContext, path: &str) -> RuleJudged {
    let Some(action) = duty.action.as_deref() else {
        return rule_result::<TRACE>(
            path.to_owned(),
            "",
            Outcome::Invalid,
            || "names no action".into(),
            vec![],
            vec![],
        );
    };
    if !profile::is_known_action(action) {
        return rule_result::<TRACE>(
            path.to_owned(),
            action,
            Outcome::Invalid,
            || format!("a duty to {} cannot be committed to: the action is unknown", term::short(action)),
            vec![],
            vec![],
        );
    }
    // A duty's constraints say when it applies; its action's refinements say what exactly is owed (e.g. the amount
    // of a compensation) and are part of the obligation, not a condition for it.
    let (outcome, constraints) =
        judge_all::<TRACE>(duty.constraints.iter(), context, path, "constraint", LogicalOperator::And);
    let outcome = match outcome {
        Outcome::Deferred => Outcome::Satisfied,
        other => other,
    };
    let reason = if !TRACE {
        String::new()
    } else {
        match outcome {
            Outcome::Satisfied if duty.refinements.is_empty() => format!("the requester must {}", term::short(action)),
            Outcome::Satisfied => format!(
                "the requester must {} ({})",
                term::short(action),
                duty.refinements
                    .iter()
                    .map(|r| match r {
                        Constraint::Atomic(a) => a.to_string(),
                        Constraint::Logical { operator, .. } => operator.term().to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Outcome::Violated => "not triggered".into(),
            _ => first_failure(&constraints).unwrap_or_else(|| "cannot be evaluated".into()),
        }
    };
    rule_result::<TRACE>(path.to_owned(), action, outcome, || reason, constraints, vec![])
}

fn rule_result<const TRACE: bool>(
    path: String,
    action: &str,
    outcome: Outcome,
    reason: impl FnOnce() -> String,
    constraints: Vec<ConstraintTrace>,
    duties: Vec<RuleTrace>,
) -> RuleJudged {
    let reason = if TRACE { reason() } else { String::new() };
    RuleJudged {
        outcome,
        trace: TRACE.then(|| RuleTrace { path, action: action.to_owned(), outcome, reason, constraints, duties }),
    }
}

fn first_failure(traces: &[ConstraintTrace]) -> Option<String> {
    traces.iter().find(|t| matches!(t.outcome, Outcome::Violated | Outcome::Invalid)).map(|t| {
        match first_failure(&t.children) {
            Some(inner) if t.children.len() == 1 || t.constraint.starts_with("and") => inner,
            _ => format!("{} ({}): {}", t.constraint, t.path, t.reason),
        }
    })
}

/// Evaluates constraints combined by `operator`.
fn judge_all<'a, const TRACE: bool>(
    constraints: impl Iterator<Item = &'a Constraint>,
    context: &RequestContext,
    path: &str,
    member: &str,
    operator: LogicalOperator,
) -> (Outcome, Vec<ConstraintTrace>) {
    let mut traces = Vec::new();
    let (mut satisfied, mut violated, mut deferred, mut invalid, mut count) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for (i, constraint) in constraints.enumerate() {
        count += 1;
        let child_path = if TRACE { format!("{path}.{member}[{i}]") } else { String::new() };
        let judged = judge::<TRACE>(constraint, context, child_path);
        match judged.outcome {
            Outcome::Satisfied => satisfied += 1,
            Outcome::Violated => violated += 1,
            Outcome::Deferred => deferred += 1,
            Outcome::Invalid | Outcome::NotApplicable => invalid += 1,
        }
        traces.extend(judged.trace);
        let stop = match operator {
            // Conjunctions stop at the first failure when no trace is wanted; sequences always do.
            LogicalOperator::And => !TRACE && (violated > 0 || invalid > 0),
            LogicalOperator::AndSequence => violated > 0 || invalid > 0,
            LogicalOperator::Or | LogicalOperator::Xone => !TRACE && invalid > 0,
        };
        if stop {
            break;
        }
    }
    let outcome = if invalid > 0 {
        Outcome::Invalid
    } else {
        match operator {
            LogicalOperator::And | LogicalOperator::AndSequence => {
                if violated > 0 {
                    Outcome::Violated
                } else if deferred > 0 {
                    Outcome::Deferred
                } else {
                    Outcome::Satisfied
                }
            }
            LogicalOperator::Or => {
                if satisfied > 0 {
                    Outcome::Satisfied
                } else if deferred > 0 {
                    Outcome::Deferred
                } else {
                    Outcome::Violated
                }
            }
            LogicalOperator::Xone => {
                if satisfied > 1 {
                    Outcome::Violated
                } else if satisfied == 1 && deferred == 0 {
                    Outcome::Satisfied
                } else if satisfied + deferred >= 1 {
                    Outcome::Deferred
                } else {
                    Outcome::Violated
                }
            }
        }
    };
    // A logical constraint with no members says nothing and is treated as malformed; an empty rule
    // (no constraints at all) simply holds.
    let outcome = if count == 0 && member != "constraint" { Outcome::Invalid } else { outcome };
    (outcome, traces)
}

/// How a logical constraint's members came out, e.g. `1 satisfied, 2 violated`; members a sequence did not reach after
/// a failure are counted as not evaluated.
fn tally(children: &[ConstraintTrace], members: usize) -> String {
    let mut parts = Vec::new();
    for (outcome, word) in [
        (Outcome::Satisfied, "satisfied"),
        (Outcome::Violated, "violated"),
        (Outcome::Deferred, "undecided"),
        (Outcome::Invalid, "malformed"),
        (Outcome::NotApplicable, "not applicable"),
    ] {
        let n = children.iter().filter(|c| c.outcome == outcome).count();
        if n > 0 {
            parts.push(format!("{n} {word}"));
        }
    }
    let skipped = members.saturating_sub(children.len());
    if skipped > 0 {
        parts.push(format!("{skipped} not evaluated"));
    }
    parts.join(", ")
}

fn judge<const TRACE: bool>(constraint: &Constraint, context: &RequestContext, path: String) -> Judged {
    match constraint {
        Constraint::Logical { operator, constraints } => {
            let (outcome, children) =
                judge_all::<TRACE>(constraints.iter(), context, &path, operator.term(), *operator);
            Judged {
                outcome,
                trace: TRACE.then(|| {
                    let reason = if constraints.is_empty() {
                        format!("an empty `{}` constrains nothing and is malformed", operator.term())
                    } else {
                        format!(
                            "{} members: {} ({})",
                            constraints.len(),
                            tally(&children, constraints.len()),
                            operator.term()
                        )
                    };
                    ConstraintTrace {
                        path,
                        constraint: format!("{} of {} constraints", operator.term(), constraints.len()),
                        resolved: None,
                        outcome,
                        reason,
                        children,
                    }
                }),
            }
        }
        Constraint::Atomic(atomic) => {
            let (outcome, resolved, reason) = judge_atomic::<TRACE>(atomic, context);
            Judged {
                outcome,
                trace: TRACE.then(|| ConstraintTrace {
                    path,
                    constraint: atomic.to_string(),
                    resolved,
                    outcome,
                    reason,
                    children: Vec::new(),
                }),
            }
        }
    }
}

/// What a left operand resolves to in a context.
enum Resolved {
    Value(Value),
    Deferred,
    /// The context lacks the fact; the message says which.
    Missing(&'static str),
}

fn resolve(left: &LeftOperand, context: &RequestContext) -> Resolved {
    use LeftOperand::*;
    let iri = |v: &Option<String>, missing| match v {
        Some(v) => Resolved::Value(Value::Iri(term::canonical(v))),
        None => Resolved::Missing(missing),
    };
    match left {
        DateTime => match context.now {
            Some(now) => Resolved::Value(Value::DateTime(now.fixed_offset())),
            None => Resolved::Missing("the request carries no time"),
        },
        ElapsedTime => match (context.now, context.agreed_at) {
            (Some(now), Some(agreed)) => {
                Resolved::Value(Value::Duration((now - agreed).num_milliseconds() as f64 / 1000.0))
            }
            (Some(_), None) => Resolved::Value(Value::Duration(0.0)),
            (None, _) => Resolved::Missing("the request carries no time"),
        },
        Count => Resolved::Value(Value::Integer(context.usage_count as i64)),
        Purpose => match &context.purpose {
            Some(p) => Resolved::Value(Value::Iri(profile::canonical_purpose(p))),
            None => Resolved::Missing("no purpose was declared"),
        },
        Spatial => match &context.spatial {
            Some(s) => Resolved::Value(Value::Iri(profile::canonical_region(s))),
            None => Resolved::Missing("the place of use is not known"),
        },
        Recipient => iri(&context.participant, "the requester is not identified"),
        Event => iri(&context.event, "no event has occurred"),
        PayAmount => match context.pay_amount {
            Some(amount) => Resolved::Value(Value::Decimal(amount)),
            None => Resolved::Missing("no payment was declared"),
        },
        Claim(path) => match context.claim(path).and_then(Value::from_json) {
            Some(value) => Resolved::Value(value),
            None => Resolved::Missing("the requester holds no verified claim of that name"),
        },
        CredentialType => Resolved::Value(Value::List(
            context.credential_types.iter().map(|t| Value::Iri(term::canonical(t))).collect(),
        )),
        MinCellCount | JobTemplate | AlgorithmDigest | MaxJobs | DisclosureMethod | SecureAggregation
        | PrivacyEpsilon => match &context.job {
            None => Resolved::Deferred,
            Some(job) => Resolved::Value(match left {
                MinCellCount => Value::Integer(job.min_cell_count as i64),
                JobTemplate => Value::String(job.template.clone()),
                MaxJobs => Value::Integer(job.jobs_run as i64 + 1),
                SecureAggregation => Value::Boolean(job.secure_aggregation),
                PrivacyEpsilon => match job.privacy_epsilon {
                    Some(epsilon) => Value::Decimal(epsilon),
                    None => return Resolved::Missing("the job is not differentially private"),
                },
                AlgorithmDigest => match &job.algorithm_digest {
                    Some(d) => Value::String(crate::model::canonical_digest(d)),
                    None => return Resolved::Missing("the job names no algorithm digest"),
                },
                _ => match &job.disclosure_method {
                    Some(m) => Value::Iri(profile::canonical_disclosure_method(m)),
                    None => return Resolved::Missing("the job names no disclosure method"),
                },
            }),
        },
        PermitPurpose | PermitIssuer | PermitId | PermitHolder => match context.data_permit() {
            Err(why) => Resolved::Missing(why),
            Ok(permit) => {
                let text = |name: &str| permit.get(name).and_then(serde_json::Value::as_str);
                match left {
                    PermitPurpose => match text("purpose") {
                        Some(p) => Resolved::Value(Value::Iri(profile::canonical_purpose(p))),
                        None => Resolved::Missing("the data permit names no purpose"),
                    },
                    PermitIssuer => match text("issuingBody") {
                        Some(body) => Resolved::Value(Value::Iri(term::canonical(body))),
                        None => Resolved::Missing("the data permit names no issuing body"),
                    },
                    PermitId => match text("id") {
                        Some(id) => Resolved::Value(Value::String(id.to_owned())),
                        None => Resolved::Missing("the data permit has no identifier"),
                    },
                    _ => {
                        let users = permit.get("users").and_then(serde_json::Value::as_array);
                        let named = users.into_iter().flatten().filter_map(serde_json::Value::as_str);
                        let holder = context.participant.as_deref();
                        Resolved::Value(Value::Boolean(holder.is_some_and(|me| named.clone().any(|u| u == me))))
                    }
                }
            }
        },
        Unknown(_) => Resolved::Missing("unknown"),
    }
}

fn judge_atomic<const TRACE: bool>(
    c: &AtomicConstraint,
    context: &RequestContext,
) -> (Outcome, Option<String>, String) {
    if let LeftOperand::Unknown(iri) = &c.left {
        return (Outcome::Invalid, None, if TRACE { format!("unknown left operand <{iri}>") } else { String::new() });
    }
    if let Operator::Unknown(iri) = &c.operator {
        return (Outcome::Invalid, None, if TRACE { format!("unknown operator <{iri}>") } else { String::new() });
    }
    let right = match &c.right {
        Ok(right) => right,
        Err(reason) => {
            return (Outcome::Invalid, None, if TRACE { reason.clone() } else { String::new() });
        }
    };
    let left = match resolve(&c.left, context) {
        Resolved::Value(value) => value,
        Resolved::Deferred => {
            return (
                Outcome::Deferred,
                None,
                if TRACE { "checked when a compute job runs".into() } else { String::new() },
            );
        }
        Resolved::Missing(why) => {
            return (Outcome::Violated, None, if TRACE { why.into() } else { String::new() });
        }
    };
    let resolved = TRACE.then(|| left.to_string());
    match apply(&c.left, &c.operator, &left, right) {
        Ok(true) => (Outcome::Satisfied, resolved, if TRACE { "satisfied".into() } else { String::new() }),
        Ok(false) => (
            Outcome::Violated,
            resolved,
            if TRACE {
                format!("{} is {left}, which does not satisfy {} {right}", c.left, c.operator)
            } else {
                String::new()
            },
        ),
        Err(reason) => (Outcome::Invalid, resolved, reason),
    }
}

/// Whether `item` matches `wanted` for this operand: taxonomy-aware for purposes and places, equality otherwise.
fn is_a(left: &LeftOperand, item: &Value, wanted: &Value) -> bool {
    match (left, item, wanted) {
        // Both sides were canonicalised when they were built (parsing, resolving).
        (LeftOperand::Purpose | LeftOperand::PermitPurpose, Value::Iri(a), Value::Iri(b)) => {
            profile::canonical_purpose_is_a(a, b)
        }
        (LeftOperand::Spatial, Value::Iri(a), Value::Iri(b)) => profile::canonical_region_is_part_of(a, b),
        _ => equal(item, wanted),
    }
}

/// Claims carry their own types: a right operand written as text is read as the claim's kind of value.
fn align(left: &Value, right: &Value) -> Value {
    match (left, right) {
        (Value::Integer(_) | Value::Decimal(_), Value::String(s)) => {
            parse_as(s, ValueKind::Decimal).unwrap_or_else(|_| right.clone())
        }
        (Value::Boolean(_), Value::String(s)) => parse_as(s, ValueKind::Boolean).unwrap_or_else(|_| right.clone()),
        (_, Value::List(items)) => Value::List(items.iter().map(|i| align(left, i)).collect()),
        _ => right.clone(),
    }
}

fn apply(operand: &LeftOperand, operator: &Operator, left: &Value, right: &Value) -> Result<bool, String> {
    let aligned;
    let right = if matches!(operand, LeftOperand::Claim(_)) {
        aligned = align(left, right);
        &aligned
    } else {
        right
    };
    let order = || {
        compare(left, right).ok_or_else(|| format!("{operand} is {left}; {} cannot order it against {right}", operator))
    };
    Ok(match operator {
        Operator::Eq => {
            left.items().iter().any(|l| right.items().iter().any(|r| equal(l, r))) && !right.items().is_empty()
        }
        Operator::Neq => !left.items().iter().any(|l| right.items().iter().any(|r| equal(l, r))),
        Operator::Lt => order()? == Ordering::Less,
        Operator::Lteq | Operator::TermLteq => order()? != Ordering::Greater,
        Operator::Gt => order()? == Ordering::Greater,
        Operator::Gteq => order()? != Ordering::Less,
        Operator::IsA => left.items().iter().any(|l| right.items().iter().any(|r| is_a(operand, l, r))),
        Operator::IsPartOf => left.items().iter().all(|l| right.items().iter().any(|r| is_a(operand, l, r))),
        Operator::HasPart => right.items().iter().all(|r| left.items().iter().any(|l| is_a(operand, r, l))),
        Operator::IsAnyOf => left.items().iter().any(|l| right.items().iter().any(|r| is_a(operand, l, r))),
        Operator::IsNoneOf => !left.items().iter().any(|l| right.items().iter().any(|r| is_a(operand, l, r))),
        Operator::IsAllOf => right.items().iter().all(|r| left.items().iter().any(|l| is_a(operand, l, r))),
        Operator::Unknown(iri) => return Err(format!("unknown operator <{iri}>")),
    })
}
