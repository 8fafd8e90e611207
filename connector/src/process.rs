//! What DSP negotiations and transfer processes share: the error type, a new row and reading a stored one, process
//! ids, message digests for idempotence, the pid check of an incoming message, the answer to a redelivery, DSP message
//! and state JSON, the common management fields, history entries, and reading a peer's `code` / `reason[]`.

use axum::http::StatusCode;
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};

pub use hanse_core::encode::{digest, hex, rfc3339_millis, sha256_hex};

use crate::dsp::error::{DspArea, DspError};
use crate::store::{ProcessKind, ProcessRow, StoreError};
use hanse_core::negotiation::Role;

/// What went wrong in a call on a negotiation or transfer.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{0}")]
    Invalid(String),
    #[error("{} not found", .0.label())]
    NotFound(ProcessKind),
    /// The provider will not transfer (no such agreement for this consumer, policy, format).
    #[error("{reason}")]
    Refused { code: &'static str, reason: String },
    /// The call does not fit the state (management: 409).
    #[error("`{call}` is not possible in state {state}; allowed now: {allowed:?}")]
    WrongState { call: String, state: &'static str, allowed: Vec<&'static str> },
    /// A peer's message does not fit the state (DSP: 400 with the state unchanged).
    #[error("{0}")]
    Illegal(String),
    #[error("the {} kept changing under concurrent updates; try again", .0.label())]
    Busy(ProcessKind),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ProcessError {
    /// The DSP answer (`ContractNegotiationError` or `TransferError`).
    pub fn into_dsp(self, area: DspArea, pids: (Option<String>, Option<String>)) -> DspError {
        let (status, code) = match &self {
            ProcessError::Invalid(_) | ProcessError::Illegal(_) | ProcessError::WrongState { .. } => {
                (StatusCode::BAD_REQUEST, "BadRequest")
            }
            ProcessError::Refused { code, .. } => (StatusCode::BAD_REQUEST, *code),
            ProcessError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
            ProcessError::Busy(_) => (StatusCode::CONFLICT, "Busy"),
            ProcessError::Store(error) => {
                tracing::error!(%error, "store failure in a DSP process");
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
            }
        };
        let reason = match &self {
            ProcessError::Store(_) => "the connector could not process the message".to_owned(),
            other => other.to_string(),
        };
        DspError::new(area, status, code, reason).with_pids(pids.0, pids.1)
    }
}

/// A process not yet stored, with a fresh id of ours.
pub fn new_row(role: Role, state: &str, peer_pid: Option<&str>, counter_party: &str, address: &str) -> ProcessRow {
    ProcessRow {
        id: new_pid(),
        role: role.name().into(),
        state: state.into(),
        peer_pid: peer_pid.map(str::to_owned),
        counter_party_id: counter_party.to_owned(),
        counter_party_address: address.trim_end_matches('/').to_owned(),
        body: Json::Null,
        last_received: None,
        last_answer: None,
        agreement_id: None,
        version: 0,
        created_at: 0,
        updated_at: 0,
    }
}

/// A stored row's role, state (read with `parse`) and details.
pub fn decode<S, D: DeserializeOwned>(
    kind: ProcessKind,
    row: &ProcessRow,
    parse: fn(&str) -> Option<S>,
) -> Result<(Role, S, D), StoreError> {
    let role = if row.role == "provider" { Role::Provider } else { Role::Consumer };
    let corrupt = |what: String| StoreError::Corrupt(format!("{} {}: {what}", kind.name(), row.id));
    let state = parse(&row.state).ok_or_else(|| corrupt(format!("state {}", row.state)))?;
    let details = D::deserialize(&row.body).map_err(|e| corrupt(e.to_string()))?;
    Ok((role, state, details))
}

/// One entry of a process's history.
pub fn history_entry(event: &str, state: &str) -> Json {
    json!({"at": now_rfc3339(), "event": event, "state": state})
}

/// A DSP message of `type_name`; a pid of `-` is left out.
pub fn message(type_name: &str, provider_pid: &str, consumer_pid: &str, members: Json) -> Json {
    let mut out = json!({"@context": [hanse_vocab::contexts::DSPACE_2025_1], "@type": type_name});
    for (key, pid) in [("providerPid", provider_pid), ("consumerPid", consumer_pid)] {
        if pid != "-" {
            out[key] = json!(pid);
        }
    }
    if let (Json::Object(out), Json::Object(members)) = (&mut out, members) {
        out.extend(members);
    }
    out
}

/// The fields the management shapes of negotiations and transfers share.
pub struct ManagementView<'a> {
    pub type_name: &'a str,
    pub row: &'a ProcessRow,
    pub role: Role,
    pub state: &'a str,
    pub allowed_calls: Vec<&'static str>,
    pub held: bool,
    pub history: &'a [Json],
}

impl ManagementView<'_> {
    /// The EDC management JSON, with `extra` members where they have a value.
    pub fn to_json(&self, extra: Vec<(&str, Option<Json>)>) -> Json {
        let mut out = json!({
            "@context": hanse_self_descriptions::dcat::management_context(),
            "@type": self.type_name,
            "@id": self.row.id,
            "type": if self.role == Role::Provider { "PROVIDER" } else { "CONSUMER" },
            "protocol": "dataspace-protocol-http:2025-1",
            "profile": "dataspace-protocol-http:2025-1",
            "state": self.state,
            "stateTimestamp": self.row.updated_at,
            "counterPartyId": self.row.counter_party_id,
            "counterPartyAddress": self.row.counter_party_address,
            "correlationId": self.row.peer_pid,
            "createdAt": self.row.created_at,
            "allowedCalls": self.allowed_calls,
            "waitingForOperator": self.held,
            "history": self.history,
        });
        for (key, value) in extra {
            if let Some(value) = value {
                out[key] = value;
            }
        }
        out
    }
}

/// The QuerySpec fields every process has ([`row_field`] answers each).
pub const ROW_FIELDS: &[&str] = &[
    "id",
    "@id",
    "state",
    "type",
    "counterPartyId",
    "counterPartyAddress",
    "correlationId",
    "protocol",
    "createdAt",
    "stateTimestamp",
    "waitingForOperator",
];

/// The SQL page query that selects what `spec` selects, when every criterion and the order are on row columns
/// (`=`, `in` and `!=` on text fields; order by `createdAt` or `stateTimestamp`); `None` for a spec the rows'
/// bodies must answer, which the caller applies in memory over every process instead.
pub fn row_query(spec: &crate::catalog::query::QuerySpec) -> Option<crate::store::RowQuery> {
    use crate::store::{RowColumn, RowCriterion};
    let text_column = |field: &str| match field.trim_start_matches(hanse_vocab::ns::EDC) {
        "id" | "@id" => Some(RowColumn::Id),
        "state" => Some(RowColumn::State),
        "type" => Some(RowColumn::Role),
        "counterPartyId" => Some(RowColumn::CounterPartyId),
        "counterPartyAddress" => Some(RowColumn::CounterPartyAddress),
        "correlationId" => Some(RowColumn::PeerPid),
        _ => None,
    };
    // `type` is PROVIDER / CONSUMER on the API and provider / consumer in the row.
    // A value that reads as a number compares as a number in memory ("1" = "1.0"): left to the memory path.
    let stored = |column: RowColumn, value: &Json| -> Option<String> {
        let value = value.as_str().filter(|v| v.parse::<f64>().is_err())?;
        Some(match (column, value) {
            (RowColumn::Role, "PROVIDER") => "provider".to_owned(),
            (RowColumn::Role, "CONSUMER") => "consumer".to_owned(),
            (RowColumn::Role, _) => format!("-{value}"),
            _ => value.to_owned(),
        })
    };
    let mut filter = Vec::new();
    for criterion in &spec.filter {
        let column = text_column(&criterion.operand_left)?;
        filter.push(match criterion.operator.as_str() {
            "=" => RowCriterion::In(column, vec![stored(column, &criterion.operand_right)?]),
            "!=" => RowCriterion::Not(column, stored(column, &criterion.operand_right)?),
            "in" => RowCriterion::In(
                column,
                criterion.operand_right.as_array()?.iter().map(|v| stored(column, v)).collect::<Option<_>>()?,
            ),
            _ => return None,
        });
    }
    let sort = match spec.sort_field.as_deref().map(|f| f.trim_start_matches(hanse_vocab::ns::EDC)) {
        None => None,
        Some("createdAt") => Some(RowColumn::CreatedAt),
        Some("stateTimestamp") => Some(RowColumn::UpdatedAt),
        Some(_) => return None,
    };
    Some(crate::store::RowQuery {
        filter,
        sort,
        descending: spec.descending,
        offset: spec.offset as u64,
        limit: spec.limit as u64,
    })
}

/// The QuerySpec fields every process has, read from its row, role and state (names without the EDC namespace);
/// `None` for a field of its own kind.
pub fn row_field(row: &ProcessRow, role: Role, state: &str, held: bool, field: &str) -> Option<Vec<Json>> {
    Some(match field {
        "id" | "@id" => vec![json!(row.id)],
        "state" => vec![json!(state)],
        "type" => vec![json!(if role == Role::Provider { "PROVIDER" } else { "CONSUMER" })],
        "counterPartyId" => vec![json!(row.counter_party_id)],
        "counterPartyAddress" => vec![json!(row.counter_party_address)],
        "correlationId" => row.peer_pid.iter().map(|p| json!(p)).collect(),
        "protocol" => vec![json!("dataspace-protocol-http:2025-1")],
        "createdAt" => vec![json!(row.created_at)],
        "stateTimestamp" => vec![json!(row.updated_at)],
        "waitingForOperator" => vec![json!(held)],
        _ => return None,
    })
}

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

/// A new process (or agreement, or offer) id: a time-ordered UUID (version 7), so that new ids land at the end of the
/// store's indexes instead of on a random page of each.
pub fn new_pid() -> String {
    format!("urn:uuid:{}", uuid::Uuid::now_v7())
}

/// A required, non-blank string member; the message names the field.
pub fn required<'a>(message: &'a Json, field: &str) -> Result<&'a str, String> {
    message
        .get(field)
        .and_then(Json::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("{field} is required"))
}

/// The DSP process message (`ContractNegotiation`, `TransferProcess`) of `row` in `state`.
pub fn dsp_state(type_name: &str, row: &ProcessRow, role: Role, placeholder: &str, state: &str) -> Json {
    let (provider, consumer) = pids(row, role, placeholder);
    json!({"@context": [hanse_vocab::contexts::DSPACE_2025_1], "@type": type_name,
           "providerPid": provider, "consumerPid": consumer, "state": state})
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

/// Writes a process from `before` (none for a new process) to `after`, with what becomes of its outgoing message
/// and the audit entries of the change ([`audit_events`]), in one transaction; `received` is the digest of the
/// message that caused it, if any, and `token_use` the id of the token that carried it. Answers as
/// [`Processes::write_process`](crate::store::Processes::write_process).
pub async fn write(
    store: &crate::store::Processes,
    kind: ProcessKind,
    before: Option<&ProcessRow>,
    after: &ProcessRow,
    received: Option<&str>,
    outgoing: crate::store::Outgoing<'_>,
    token_use: Option<&crate::store::TokenUse>,
) -> Result<Option<Option<crate::store::ClaimedMessage>>, StoreError> {
    let audit = audit_events(kind, before, after, received, &outgoing);
    let written = store.write_process(kind, after, before.map(|row| row.version), outgoing, audit, token_use).await;
    if matches!(written, Ok(Some(_))) && before.map(|row| row.state.as_str()) != Some(after.state.as_str()) {
        let name = match kind {
            ProcessKind::Negotiation => "hanse_negotiation_transitions_total",
            ProcessKind::Transfer => "hanse_transfer_transitions_total",
        };
        let from = before.map_or("NEW", |row| row.state.as_str());
        store.meter().count(name, &[("role", &after.role), ("from", from), ("to", &after.state)]);
    }
    written
}

/// Counts a policy decision made at `point` (where in the connector: `negotiation_access`, `transfer`, ...).
/// The codes with which this side ended a process on its own, because the peer did not answer: a peer that had in
/// fact moved on may correct them (convergence).
pub fn gave_up(code: Option<&str>) -> bool {
    matches!(code, Some("DeliveryFailed" | "PeerSilent"))
}

/// What the provider says of a process (convergence).
pub enum PeerSays {
    /// Its state, without a prefix (`FINALIZED`).
    State(String),
    NoSuchProcess,
    Unknown,
}

/// Asks the provider for the state of a consumer process with the DSP `GET` of the process.
pub async fn ask_provider(dsp: &crate::dsp::client::DspClient, kind: ProcessKind, row: &ProcessRow) -> PeerSays {
    let Some(peer_pid) = row.peer_pid.as_deref() else { return PeerSays::Unknown };
    let resource = if kind == ProcessKind::Negotiation { "negotiations" } else { "transfers" };
    let url = format!(
        "{}/{resource}/{}",
        row.counter_party_address.trim_end_matches('/'),
        hanse_core::encode::percent(peer_pid)
    );
    match dsp.get(&url, &row.counter_party_id).await {
        Ok((_, _, body)) => match body.get("state").and_then(Json::as_str) {
            Some(state) => PeerSays::State(state.rsplit(':').next().unwrap_or(state).to_owned()),
            None => PeerSays::Unknown,
        },
        Err(crate::dsp::client::ClientError::Refused { status: 404, .. }) => PeerSays::NoSuchProcess,
        Err(error) => {
            tracing::debug!(%error, process = row.id, "the provider did not say the process's state");
            PeerSays::Unknown
        }
    }
}

pub fn count_decision(store: &crate::store::Processes, point: &'static str, permitted: bool) {
    let outcome = if permitted { "permitted" } else { "denied" };
    store.meter().count("hanse_policy_decisions_total", &[("point", point), ("outcome", outcome)]);
}

/// What a process keeps of an operator's call: the call, its reason (the operator's own words, kept with the process;
/// the log keeps their digest), when, and whether the process was waiting for the operator.
pub fn operator_call(call: &str, body: &Json, held: bool) -> Json {
    json!({
        "call": call,
        "reason": body.get("reason").and_then(Json::as_str),
        "at": hanse_core::encode::rfc3339_millis(chrono::Utc::now().timestamp_millis()),
        "held": held,
    })
}

/// The audit entries of a process write from `before` (none for a new process) to `after`: the transition (the state
/// left and reached, the digest of the message received and the type and digest of the message sent), the agreement
/// in full when one appears, and a denial with its policy trace when one is decided. A finalized negotiation owes the
/// peer a receipt. A write that changes no state and moves no message records nothing.
pub fn audit_events(
    kind: ProcessKind,
    before: Option<&ProcessRow>,
    after: &ProcessRow,
    received: Option<&str>,
    outgoing: &crate::store::Outgoing<'_>,
) -> Vec<hanse_audit::Event> {
    use hanse_audit::Event;
    let from = before.map(|row| row.state.as_str());
    let sent = match outgoing {
        crate::store::Outgoing::Send(message) => Some(json!({
            "type": message.message().get("@type"),
            "digest": sha256_hex(message.text().as_bytes()),
        })),
        _ => None,
    };
    if from == Some(after.state.as_str()) && received.is_none() && sent.is_none() {
        return Vec::new();
    }
    let dataset = after.body.get("assetId").and_then(Json::as_str);
    let event = |kind, details| {
        Event::new(kind, details)
            .agreement(after.agreement_id.as_deref().or_else(|| after.body.get("agreementId").and_then(Json::as_str)))
            .participant(Some(&after.counter_party_id))
            .dataset(dataset)
    };
    let mut transition = json!({"process": after.id, "role": after.role, "from": from, "to": after.state});
    if let Some(received) = received {
        transition["received"] = json!(received);
    }
    if let Some(sent) = sent {
        transition["sent"] = sent;
    }
    if let Some(code) = after.body.get("errorCode").filter(|c| !c.is_null()) {
        transition["errorCode"] = code.clone();
    }
    if let Some(bytes) = after.body.get("bytes").filter(|b| !b.is_null())
        && before.and_then(|row| row.body.get("bytes")) != Some(bytes)
    {
        transition["bytes"] = bytes.clone();
    }
    let name = match kind {
        ProcessKind::Negotiation => "negotiation.transition",
        ProcessKind::Transfer => "transfer.transition",
    };
    let mut events = vec![event(name, transition)];
    if kind == ProcessKind::Negotiation && after.state == "FINALIZED" && from != Some("FINALIZED") {
        events[0].owes_receipt = Some(after.counter_party_id.clone());
    }
    let appeared = |member: &str| {
        let now = after.body.get(member).filter(|v| !v.is_null());
        let was = before.and_then(|row| row.body.get(member)).filter(|v| !v.is_null());
        now.filter(|now| was != Some(*now))
    };
    if kind == ProcessKind::Negotiation
        && let Some(agreement) = appeared("agreement")
    {
        let mut details = json!({"process": after.id, "agreementPolicy": agreement, "agreementDigest": hanse_audit::canonical_digest(agreement)});
        if let Some(permit) = after.body.get("dataPermit").and_then(|p| p.get("id")).filter(|id| !id.is_null()) {
            details["dataPermit"] = permit.clone();
        }
        let mut entry = event("contract.agreement", details);
        entry.agreement = agreement.get("@id").and_then(Json::as_str).map(str::to_owned);
        events.push(entry);
    }
    if let Some(call) = appeared("operatorCalls").and_then(|calls| calls.as_array()?.last()) {
        let mut details = json!({
            "process": after.id,
            "processKind": kind.name(),
            "role": after.role,
            "call": call.get("call"),
            "held": call.get("held"),
            "from": from,
            "to": after.state,
        });
        if let Some(reason) = call.get("reason").filter(|r| !r.is_null()) {
            details["reasonDigest"] = json!(sha256_hex(reason.to_string().as_bytes()));
        }
        if let Some(decision) = after.body.get("decision").filter(|d| !d.is_null()) {
            details["decisionDigest"] = json!(hanse_audit::canonical_digest(decision));
        }
        events.push(event("operator.decision", details));
    }
    if let Some(decision) = appeared("decision")
        && decision.get("permitted") == Some(&json!(false))
    {
        let mut details = hanse_audit::denial_trace(decision);
        details["process"] = json!(after.id);
        events.push(event("policy.denial", details));
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_listed_for_all_processes_is_read_from_the_row() {
        let row = ProcessRow {
            id: "urn:uuid:1".into(),
            role: "CONSUMER".into(),
            state: "REQUESTED".into(),
            peer_pid: Some("urn:uuid:2".into()),
            counter_party_id: "did:web:peer.example".into(),
            counter_party_address: "https://peer.example/protocol/2025-1".into(),
            body: Json::Null,
            last_received: None,
            last_answer: None,
            agreement_id: None,
            version: 1,
            created_at: 1,
            updated_at: 2,
        };
        for field in ROW_FIELDS {
            let values = row_field(&row, Role::Consumer, "REQUESTED", false, field);
            assert!(values.is_some_and(|v| !v.is_empty()), "{field}");
        }
        assert_eq!(row_field(&row, Role::Consumer, "REQUESTED", false, "assetId"), None);
    }
}
