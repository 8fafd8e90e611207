//! Small builders for policy tests.
#![allow(dead_code)]

use chrono::{DateTime, TimeZone, Utc};
use hanse_policy::{Policy, RequestContext};
use serde_json::{Value, json};

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
}

pub fn context() -> RequestContext {
    RequestContext::new("did:web:research.example", now())
}

pub fn policy(json: Value) -> Policy {
    Policy::from_json(&json).unwrap_or_else(|e| panic!("{e}"))
}

/// A `use` permission under one constraint.
pub fn permit_use_if(constraint: Value) -> Policy {
    policy(json!({"@type": "Set", "permission": [{"action": "use", "constraint": [constraint]}]}))
}

pub fn atomic(left: &str, operator: &str, right: Value) -> Value {
    json!({"leftOperand": left, "operator": operator, "rightOperand": right})
}
