//! What DSP negotiations and transfer processes share: process ids, message digests for idempotence, the pid check
//! of an incoming message, the answer to a redelivery, and reading a peer's `code` / `reason[]`.

use axum::http::StatusCode;
use chrono::Utc;
use serde_json::{Value as Json, json};

use crate::negotiation::machine::Role;
use crate::store::ProcessRow;

/// The answer to an incoming message: status and body.
pub struct Answer {
    pub status: StatusCode,
    pub body: Option<Json>,
}

impl Answer {
    /// As stored with the process, to answer a redelivery the same way.
    pub fn to_json(&self) -> Json {
        json!({"status": self.status.as_u16(), "body": self.body})
    }
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A new process (or agreement, or offer) id.
pub fn new_pid() -> String {
    format!("urn:uuid:{}", uuid::Uuid::new_v4())
}

/// The SHA-256 of a message, hex: a redelivery has the same digest.
pub fn digest(message: &Json) -> String {
    hex(&openssl::sha::sha256(message.to_string().as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A required, non-blank string member; the message names the field.
pub fn required<'a>(message: &'a Json, field: &str) -> Result<&'a str, String> {
    message
        .get(field)
        .and_then(Json::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("{field} is required"))
}

/// Our pid and the peer's, as (providerPid, consumerPid); the peer's is `placeholder` while unknown.
pub fn pids(row: &ProcessRow, role: Role, placeholder: &str) -> (String, String) {
    let ours = row.id.clone();
    let theirs = row.peer_pid.clone().unwrap_or_else(|| placeholder.to_owned());
    match role {
        Role::Provider => (ours, theirs),
        Role::Consumer => (theirs, ours),
    }
}

/// Whether a message addressed to our process `row` comes from its counter-party and names the right pids (the
/// peer's only once known).
pub fn addressed_to(row: &ProcessRow, role: Role, requester: &str, message: &Json) -> bool {
    let named = |key: &str| message.get(key).and_then(Json::as_str);
    let (ours, theirs) = match role {
        Role::Provider => ("providerPid", "consumerPid"),
        Role::Consumer => ("consumerPid", "providerPid"),
    };
    row.counter_party_id == requester
        && named(ours) == Some(row.id.as_str())
        && (row.peer_pid.is_none() || named(theirs) == row.peer_pid.as_deref())
}

/// The answer given when the message with `digest` was applied, if it is the last one applied.
pub fn redelivered(row: &ProcessRow, digest: &str) -> Option<Answer> {
    if row.last_received.as_deref() != Some(digest) {
        return None;
    }
    let answer = row.last_answer.clone().unwrap_or(Json::Null);
    let status = answer
        .get("status")
        .and_then(Json::as_u64)
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::OK);
    Some(Answer { status, body: answer.get("body").cloned().filter(|b| !b.is_null()) })
}

/// A peer's `code` and `reason[]` (termination, suspension), as text.
pub fn code_and_reason(message: &Json) -> (Option<String>, Option<String>) {
    let code = message.get("code").and_then(Json::as_str).map(str::to_owned);
    let reason = message.get("reason").map(|r| match r {
        Json::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).unwrap_or_else(|| i.to_string()))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.as_str().map(str::to_owned).unwrap_or_else(|| other.to_string()),
    });
    (code, reason)
}
