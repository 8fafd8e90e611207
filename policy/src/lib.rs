//! The Hanse ODRL 2.2 policy engine.
//!
//! - [`Policy::from_json`] reads a policy in any JSON-LD form peers send; [`Policy::to_dsp_json`] writes the DSP
//!   2025-1 compact form.
//! - [`evaluate`] decides `(policy, action, context)` with a full trace; [`permits`] is the same decision without the
//!   trace; [`evaluate_transfer`] decides a raw data transfer.
//! - [`validate`] finds malformed and unsatisfiable policies before they are stored.
//! - [`same_offer`] compares two offers by meaning.
//! - [`profile`] documents the Hanse health profile (purposes, compute constraints, claims).
//!
//! Pure: no I/O, no clock (the time is part of the [`RequestContext`]), no logging.

mod context;
mod evaluate;
mod matching;
mod model;
pub mod profile;
pub mod term;
mod validate;
pub mod value;

pub use context::{JobContext, RequestContext};
pub use evaluate::{ConstraintTrace, Decision, Outcome, RuleTrace, evaluate, evaluate_transfer, permits};
pub use matching::{normalise, offer_difference, same_offer};
pub use model::{
    AtomicConstraint, ConflictStrategy, Constraint, LeftOperand, LogicalOperator, Operator, ParseError, Policy,
    PolicyKind, Rule, action_term,
};
pub use validate::{Issue, IssueCode, Severity, validate, validate_at};
pub use value::{Value, ValueKind};
