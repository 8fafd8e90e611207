//! Validation: malformed and unsatisfiable policies are found before they are stored, each issue with its place and
//! a reason a person can act on.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::{AtomicConstraint, Constraint, LeftOperand, LogicalOperator, Operator, Policy, Rule};
use crate::profile;
use crate::term;
use crate::value::{Value, ValueKind, compare, equal};

/// How serious an issue is: errors make a policy unusable, warnings deserve a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    Error,
    Warning,
}

/// What kind of issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum IssueCode {
    NoRules,
    MissingAction,
    UnknownAction,
    UnknownLeftOperand,
    UnknownOperator,
    WrongValueType,
    OperatorNotApplicable,
    EmptyLogicalConstraint,
    Contradiction,
    Expired,
    UnknownPurpose,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueCode,
    /// Where, e.g. `permission[0].constraint[2]`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every issue of `policy` that does not depend on the time.
pub fn validate(policy: &Policy) -> Vec<Issue> {
    let mut issues = Vec::new();
    if policy.permissions.is_empty() && policy.prohibitions.is_empty() && policy.obligations.is_empty() {
        issues.push(error(IssueCode::NoRules, "policy", "the policy has no permission, prohibition or obligation"));
    }
    for (kind, rules) in [
        ("permission", &policy.permissions),
        ("prohibition", &policy.prohibitions),
        ("obligation", &policy.obligations),
    ] {
        for (i, rule) in rules.iter().enumerate() {
            check_rule(rule, &format!("{kind}[{i}]"), kind != "permission" && kind != "prohibition", &mut issues);
        }
    }
    issues
}

/// [`validate`] plus the issues that depend on `now` (a policy whose time window has closed).
pub fn validate_at(policy: &Policy, now: DateTime<Utc>) -> Vec<Issue> {
    let mut issues = validate(policy);
    let now = Value::DateTime(now.fixed_offset());
    for (kind, rules) in [("permission", &policy.permissions), ("obligation", &policy.obligations)] {
        for (i, rule) in rules.iter().enumerate() {
            for (path, c) in conjunction(rule.conditions(), &format!("{kind}[{i}]")) {
                if c.left != LeftOperand::DateTime {
                    continue;
                }
                let Ok(bound) = &c.right else { continue };
                let closed = match c.operator {
                    Operator::Lt => compare(&now, bound).is_some_and(|o| o != Ordering::Less),
                    Operator::Lteq | Operator::TermLteq | Operator::Eq => {
                        compare(&now, bound).is_some_and(|o| o == Ordering::Greater)
                    }
                    _ => false,
                };
                if closed {
                    issues.push(error(IssueCode::Expired, &path, format!("{c}: this time window has already closed")));
                }
            }
        }
    }
    issues
}

fn error(code: IssueCode, path: &str, message: impl Into<String>) -> Issue {
    Issue { severity: Severity::Error, code, path: path.to_owned(), message: message.into() }
}

fn warning(code: IssueCode, path: &str, message: impl Into<String>) -> Issue {
    Issue { severity: Severity::Warning, code, path: path.to_owned(), message: message.into() }
}

fn check_rule(rule: &Rule, path: &str, is_duty: bool, issues: &mut Vec<Issue>) {
    match rule.action.as_deref() {
        None => issues.push(error(IssueCode::MissingAction, path, "the rule names no action")),
        Some(action) if !profile::is_known_action(action) => issues.push(error(
            IssueCode::UnknownAction,
            path,
            format!(
                "unknown action <{action}>{}",
                if is_duty { ": a duty nobody can perform denies every request" } else { ": it can never apply" }
            ),
        )),
        Some(_) => {}
    }
    for (i, c) in rule.refinements.iter().enumerate() {
        check_constraint(c, &format!("{path}.action.refinement[{i}]"), issues);
    }
    for (i, c) in rule.constraints.iter().enumerate() {
        check_constraint(c, &format!("{path}.constraint[{i}]"), issues);
    }
    check_contradictions(conjunction(rule.conditions(), path), path, issues);
    let member = if path.starts_with("prohibition") { "remedy" } else { "duty" };
    for (i, duty) in rule.duties.iter().enumerate() {
        check_rule(duty, &format!("{path}.{member}[{i}]"), true, issues);
    }
}

fn check_constraint(constraint: &Constraint, path: &str, issues: &mut Vec<Issue>) {
    match constraint {
        Constraint::Logical { operator, constraints } => {
            if constraints.is_empty() {
                issues.push(error(
                    IssueCode::EmptyLogicalConstraint,
                    path,
                    format!("an empty `{}` constrains nothing", operator.term()),
                ));
            }
            for (i, c) in constraints.iter().enumerate() {
                check_constraint(c, &format!("{path}.{}[{i}]", operator.term()), issues);
            }
            if matches!(operator, LogicalOperator::And | LogicalOperator::AndSequence) {
                check_contradictions(conjunction(constraints.iter(), path), path, issues);
            }
        }
        Constraint::Atomic(c) => check_atomic(c, path, issues),
    }
}

fn check_atomic(c: &AtomicConstraint, path: &str, issues: &mut Vec<Issue>) {
    if let LeftOperand::Unknown(iri) = &c.left {
        issues.push(error(
            IssueCode::UnknownLeftOperand,
            path,
            format!(
                "unknown left operand <{iri}>; Hanse resolves dateTime, elapsedTime, count, purpose, spatial, recipient, \
                 event, payAmount, hanse:claims/<path>, hanse:credentialType and the health profile's compute operands"
            ),
        ));
    }
    if let Operator::Unknown(iri) = &c.operator {
        issues.push(error(IssueCode::UnknownOperator, path, format!("unknown operator <{iri}>")));
    }
    if let Err(reason) = &c.right {
        issues.push(error(IssueCode::WrongValueType, path, reason.clone()));
    }
    let kind = c.left.kind();
    if c.operator.is_ordering() && matches!(kind, ValueKind::Iri | ValueKind::String | ValueKind::Boolean) {
        issues.push(error(
            IssueCode::OperatorNotApplicable,
            path,
            format!("{} takes {kind}, which has no order: {} cannot be used", c.left, c.operator),
        ));
    }
    if matches!(c.operator, Operator::IsA | Operator::HasPart | Operator::IsPartOf)
        && matches!(kind, ValueKind::Integer | ValueKind::Decimal | ValueKind::DateTime | ValueKind::Duration)
    {
        issues.push(error(
            IssueCode::OperatorNotApplicable,
            path,
            format!("{} takes {kind}: {} applies to classes, places and sets", c.left, c.operator),
        ));
    }
    if let Ok(value) = &c.right {
        if matches!(c.left, LeftOperand::Purpose | LeftOperand::PermitPurpose) {
            let known = profile::known_purposes();
            for item in value.items() {
                if let Value::Iri(iri) = item
                    && !known.contains(&iri.as_str())
                {
                    issues.push(warning(
                        IssueCode::UnknownPurpose,
                        path,
                        format!("purpose {} is not in the health profile; it only matches itself", term::short(iri)),
                    ));
                }
            }
        }
        if c.left == LeftOperand::DisclosureMethod {
            for item in value.items() {
                if let Value::Iri(iri) = item
                    && !profile::DISCLOSURE_METHODS.contains(&iri.as_str())
                {
                    issues.push(error(
                        IssueCode::WrongValueType,
                        path,
                        format!("{} is not a disclosure method (suppress, round, noise)", term::short(iri)),
                    ));
                }
            }
        }
    }
}

/// The atomic constraints that must all hold together (through nested `and` / `andSequence`), with their paths.
fn conjunction<'a>(
    constraints: impl Iterator<Item = &'a Constraint>,
    path: &str,
) -> Vec<(String, &'a AtomicConstraint)> {
    let mut out = Vec::new();
    for (i, c) in constraints.enumerate() {
        match c {
            Constraint::Atomic(a) => out.push((format!("{path}.constraint[{i}]"), a.as_ref())),
            Constraint::Logical { operator: LogicalOperator::And | LogicalOperator::AndSequence, constraints } => {
                out.extend(conjunction(constraints.iter(), &format!("{path}.constraint[{i}]")));
            }
            Constraint::Logical { .. } => {}
        }
    }
    out
}

/// Bounds on one ordered operand: the tightest lower and upper bound seen, and whether each is inclusive.
#[derive(Default)]
struct Bounds<'a> {
    lower: Option<(&'a Value, bool, String)>,
    upper: Option<(&'a Value, bool, String)>,
}

fn check_contradictions(constraints: Vec<(String, &AtomicConstraint)>, scope: &str, issues: &mut Vec<Issue>) {
    for (i, (path_a, a)) in constraints.iter().enumerate() {
        let Ok(va) = &a.right else { continue };
        for (path_b, b) in constraints.iter().skip(i + 1) {
            let Ok(vb) = &b.right else { continue };
            if a.left != b.left {
                continue;
            }
            let clash = match (&a.operator, &b.operator) {
                (Operator::Eq, Operator::Eq) => !equal(va, vb),
                (Operator::Eq, Operator::Neq) | (Operator::Neq, Operator::Eq) => equal(va, vb),
                (Operator::Eq, Operator::IsNoneOf) => vb.items().iter().any(|x| equal(va, x)),
                (Operator::IsNoneOf, Operator::Eq) => va.items().iter().any(|x| equal(vb, x)),
                (Operator::Eq, Operator::IsAnyOf) if !taxonomic(&a.left) => !vb.items().iter().any(|x| equal(va, x)),
                (Operator::IsAnyOf, Operator::Eq) if !taxonomic(&a.left) => !va.items().iter().any(|x| equal(vb, x)),
                (Operator::IsAnyOf, Operator::IsAnyOf) if !taxonomic(&a.left) => {
                    !va.items().iter().any(|x| vb.items().iter().any(|y| equal(x, y)))
                }
                _ => false,
            };
            if clash {
                issues.push(error(
                    IssueCode::Contradiction,
                    path_b,
                    format!("`{b}` contradicts `{a}` ({path_a}): the rule can never hold"),
                ));
            }
        }
    }
    // Ordered operands: the interval left by all bounds must not be empty.
    let mut by_operand: Vec<(&LeftOperand, Bounds)> = Vec::new();
    for (path, c) in &constraints {
        let Ok(value) = &c.right else { continue };
        if !matches!(
            value,
            Value::Integer(_) | Value::Decimal(_) | Value::DateTime(_) | Value::Date(_) | Value::Duration(_)
        ) {
            continue;
        }
        let index = match by_operand.iter().position(|(l, _)| *l == &c.left) {
            Some(i) => i,
            None => {
                by_operand.push((&c.left, Bounds::default()));
                by_operand.len() - 1
            }
        };
        let bounds = &mut by_operand[index].1;
        let described = format!("`{c}` ({path})");
        let (lower, upper) = match c.operator {
            Operator::Gt => (Some(false), None),
            Operator::Gteq => (Some(true), None),
            Operator::Lt => (None, Some(false)),
            Operator::Lteq | Operator::TermLteq => (None, Some(true)),
            Operator::Eq => (Some(true), Some(true)),
            _ => (None, None),
        };
        if let Some(inclusive) = lower {
            tighten(&mut bounds.lower, value, inclusive, &described, Ordering::Greater);
        }
        if let Some(inclusive) = upper {
            tighten(&mut bounds.upper, value, inclusive, &described, Ordering::Less);
        }
    }
    for (operand, bounds) in by_operand {
        if let (Some((low, low_inc, low_desc)), Some((high, high_inc, high_desc))) = (&bounds.lower, &bounds.upper) {
            let empty = match compare(low, high) {
                Some(Ordering::Greater) => true,
                Some(Ordering::Equal) => !(*low_inc && *high_inc),
                _ => false,
            };
            if empty {
                issues.push(error(
                    IssueCode::Contradiction,
                    scope,
                    format!("{operand}: {low_desc} and {high_desc} leave no value: the rule can never hold"),
                ));
            }
        }
    }
}

/// Replaces `bound` with `value` when that is tighter: further in the `inward` direction, or as far but exclusive.
fn tighten<'a>(
    bound: &mut Option<(&'a Value, bool, String)>,
    value: &'a Value,
    inclusive: bool,
    described: &str,
    inward: Ordering,
) {
    let tighter = match bound {
        None => true,
        Some((current, current_inclusive, _)) => match compare(value, current) {
            Some(Ordering::Equal) => *current_inclusive && !inclusive,
            Some(order) => order == inward,
            None => false,
        },
    };
    if tighter {
        *bound = Some((value, inclusive, described.to_owned()));
    }
}

fn taxonomic(operand: &LeftOperand) -> bool {
    matches!(operand, LeftOperand::Purpose | LeftOperand::Spatial | LeftOperand::PermitPurpose)
}
