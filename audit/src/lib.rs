//! The tamper-evident audit log as values (decision 0021): what is logged ([`Event`], canonical JSON), the RFC 9162
//! Merkle arithmetic ([`merkle`]), signed tree heads and cosignatures ([`head`]), and the offline verifier of an
//! export with its receipts ([`verify`]) — what an auditor's tool needs, without a server or a database. The connector
//! appends entries in the transaction of each change and serves heads and proofs.

pub mod check;
pub mod head;
pub mod merkle;
pub mod verify;

use hanse_core::encode::{digest, rfc3339_millis, sha256_hex};
use serde_json::{Map, Value as Json, json};

/// Something that happened, to be appended to the log. The store adds `seq` and `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `negotiation.transition`, `contract.agreement`, `transfer.transition`, `data.pull`, `policy.denial`,
    /// `management.change`, `audit.inconsistency`, ...
    pub kind: &'static str,
    /// The agreement it concerns, if any (indexed for auditors' filters).
    pub agreement: Option<String>,
    /// The other participant (a DID), if any.
    pub participant: Option<String>,
    /// The dataset (asset id), if any.
    pub dataset: Option<String>,
    /// Everything else; digests and ids only.
    pub details: Map<String, Json>,
    /// A finalized agreement: the receipt this side owes `peer` for its entry of it (queued in the same transaction).
    pub owes_receipt: Option<String>,
}

impl Event {
    pub fn new(kind: &'static str, details: Json) -> Event {
        let details = match details {
            Json::Object(map) => map,
            _ => Map::new(),
        };
        Event { kind, agreement: None, participant: None, dataset: None, details, owes_receipt: None }
    }

    pub fn agreement(mut self, agreement: Option<&str>) -> Event {
        self.agreement = agreement.map(str::to_owned);
        self
    }

    pub fn participant(mut self, participant: Option<&str>) -> Event {
        self.participant = participant.map(str::to_owned);
        self
    }

    pub fn dataset(mut self, dataset: Option<&str>) -> Event {
        self.dataset = dataset.map(str::to_owned);
        self
    }

    /// The entry as appended at position `seq` at `at` (milliseconds): canonical JSON, the leaf's exact bytes.
    pub fn entry(&self, seq: u64, at: i64) -> String {
        let mut entry = self.details.clone();
        entry.insert("seq".into(), json!(seq));
        entry.insert("at".into(), json!(rfc3339_millis(at)));
        entry.insert("type".into(), json!(self.kind));
        for (name, value) in
            [("agreement", &self.agreement), ("participant", &self.participant), ("dataset", &self.dataset)]
        {
            if let Some(value) = value {
                entry.insert(name.into(), json!(value));
            }
        }
        serde_json_canonicalizer::to_string(&Json::Object(entry)).expect("JSON values serialise")
    }
}

/// SHA-256 (hex) of a value's canonical JSON (RFC 8785): the same for both parties whatever their member order.
pub fn canonical_digest(value: &Json) -> String {
    let text = serde_json_canonicalizer::to_string(value).expect("JSON values serialise");
    sha256_hex(text.as_bytes())
}

/// A policy decision as the log keeps it: which rules and constraints were visited and their outcomes, without the
/// values operands resolved to or reasons that quote them (they can be personal), plus the full decision's digest so
/// that the trace kept with the process can be proven against the log.
pub fn denial_trace(decision: &Json) -> Json {
    fn strip(value: &Json) -> Json {
        match value {
            Json::Object(map) => Json::Object(
                map.iter()
                    .filter(|(name, _)| !matches!(name.as_str(), "resolved" | "reason"))
                    .map(|(name, value)| (name.clone(), strip(value)))
                    .collect(),
            ),
            Json::Array(items) => Json::Array(items.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    json!({
        "action": decision.get("action"),
        "rules": strip(decision.get("rules").unwrap_or(&Json::Null)),
        "decisionDigest": digest(decision),
    })
}
