//! DSP 2025-1 contract negotiation, both roles, on durable state.
//!
//! A negotiation is a row; every change is one transaction holding the new state, the message(s) it sends (outbox)
//! and the agreement it makes. [`crate::dispatch`] delivers the outbox with retries. Incoming messages are checked against
//! the one transition table in [`machine`], applied at most once (the digest of the last applied message answers a
//! redelivery with the same answer), and may trigger this side's automatic next step — unless the operator holds
//! that turn (manual approval on the provider, `autoAccept: false` on the consumer).

pub mod commands;
pub use hanse_core::negotiation as machine;

use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use hanse_policy::{Policy, RequestContext};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use crate::catalog::Catalogue;
use crate::dispatch::Dispatcher;
use crate::identity::Identity;
use crate::identity::{Claims, Verified};
use crate::process::{Answer, ProcessError, digest, new_pid, now_rfc3339};
use crate::store::{AgreementRow, OutboxMessage, Outgoing, ProcessKind, ProcessRow, Processes, StoreError, TokenUse};
use machine::{Message, Role, State};

/// The Hanse extension member a consumer declares its purpose in (a `ContractRequestMessage` member).
pub const PURPOSE: &str = "https://w3id.org/hanse/ns/purpose";
pub use crate::dispatch::PEER_PID;

/// What a negotiation carries besides its state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Details {
    /// The terms last put on the table (offer or request), DSP compact form.
    pub offer: Option<Json>,
    /// Consumer: the terms it asked for.
    pub requested: Option<Json>,
    /// Provider: the agreement prepared while the operator decides.
    pub pending_agreement: Option<Json>,
    pub agreement: Option<Json>,
    pub agreement_id: Option<String>,
    pub asset_id: Option<String>,
    pub definition_id: Option<String>,
    /// Provider: every provider turn waits for the operator.
    pub manual: bool,
    /// Consumer: it accepts and verifies by itself.
    pub auto_accept: bool,
    pub purpose: Option<String>,
    /// Consumer: once agreed, a pull transfer starts by itself (EDC's `POST /edrs`, the transfer service's `edr` task).
    pub pull_on_agreement: bool,
    /// Why it terminated.
    pub error_code: Option<String>,
    pub error: Option<String>,
    /// The policy decision (with its trace) behind the last provider decision.
    pub decision: Option<Json>,
    /// What happened, in order.
    pub history: Vec<Json>,
    /// The operator's calls (`call`, `reason`, `at`, whether the negotiation was held for it), in order: the log keeps
    /// each as an `operator.decision` entry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub operator_calls: Vec<Json>,
    /// Provider: the requester's EHDS data permit the agreement was made under (id, issuing body, purpose, validity),
    /// when its terms read one (`hanse:permit*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_permit: Option<Json>,
}

/// A negotiation as the service works with it.
#[derive(Debug, Clone)]
pub struct Negotiation {
    pub row: ProcessRow,
    pub role: Role,
    pub state: State,
    pub details: Details,
}

impl Negotiation {
    /// A negotiation not yet stored, with a fresh id of ours.
    fn new(
        role: Role,
        state: State,
        peer_pid: Option<&str>,
        counter_party_id: &str,
        address: &str,
        details: Details,
    ) -> Negotiation {
        let row = crate::process::new_row(role, state.name(), peer_pid, counter_party_id, address);
        Negotiation { row, role, state, details }
    }

    pub(crate) fn from_row(row: ProcessRow) -> Result<Negotiation, StoreError> {
        let (role, state, details) = crate::process::decode(ProcessKind::Negotiation, &row, State::parse)?;
        Ok(Negotiation { row, role, state, details })
    }

    /// Our pid and the peer's, as (providerPid, consumerPid).
    pub fn pids(&self) -> (String, String) {
        crate::process::pids(&self.row, self.role, PEER_PID)
    }

    /// Whether this side's next move waits for the operator.
    pub fn held(&self) -> bool {
        match (self.role, self.state) {
            (Role::Provider, State::Requested | State::Accepted | State::Verified) => {
                self.details.manual || self.details.pending_agreement.is_some()
            }
            (Role::Consumer, State::Offered | State::Agreed) => true,
            _ => false,
        }
    }

    /// The DSP `ContractNegotiation` message.
    pub fn dsp_json(&self) -> Json {
        crate::process::dsp_state("ContractNegotiation", &self.row, self.role, PEER_PID, self.state.name())
    }

    /// The EDC management shape, with the calls allowed now and the decision trace.
    pub fn management_json(&self) -> Json {
        let view = crate::process::ManagementView {
            type_name: "ContractNegotiation",
            row: &self.row,
            role: self.role,
            state: self.state.name(),
            allowed_calls: machine::allowed_calls(self.role, self.state),
            held: self.held(),
            history: &self.details.history,
        };
        view.to_json(vec![
            ("callbackAddresses", Some(json!([]))),
            ("updatedAt", Some(json!(self.row.updated_at))),
            ("contractAgreementId", self.details.agreement_id.as_ref().map(|v| json!(v))),
            ("assetId", self.details.asset_id.as_ref().map(|v| json!(v))),
            ("errorDetail", self.details.error.as_ref().map(|v| json!(v))),
            ("errorCode", self.details.error_code.as_ref().map(|v| json!(v))),
            ("offer", self.details.offer.clone().map(hanse_self_descriptions::dcat::with_policy_context)),
            ("decision", self.details.decision.clone()),
        ])
    }
}

const NOT_FOUND: ProcessError = ProcessError::NotFound(ProcessKind::Negotiation);
const BUSY: ProcessError = ProcessError::Busy(ProcessKind::Negotiation);

fn history(details: &mut Details, event: &str, state: State) {
    details.history.push(crate::process::history_entry(event, state.name()));
}

/// A DSP negotiation message; a pid of `-` is left out.
/// The negotiation service: both roles' state machines over the store, the catalogue's offers and policies, and the
/// dispatcher that delivers what each step sends. Cheap to clone.
#[derive(Clone)]
pub struct Negotiations {
    store: Processes,
    /// Our participant id.
    participant: String,
    catalogue: Arc<Catalogue>,
    identity: Arc<Identity>,
    dispatcher: Arc<Dispatcher>,
    /// Every committed negotiation state: `(negotiation id, state)`, for progress reports, EDRs and benchmarks.
    events: tokio::sync::broadcast::Sender<(String, State)>,
}

impl Negotiations {
    pub fn new(
        store: Processes,
        participant: String,
        catalogue: Arc<Catalogue>,
        identity: Arc<Identity>,
        dispatcher: Arc<Dispatcher>,
    ) -> Negotiations {
        Negotiations {
            store,
            participant,
            catalogue,
            identity,
            dispatcher,
            events: tokio::sync::broadcast::channel(4096).0,
        }
    }

    /// Every committed negotiation state from now on.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<(String, State)> {
        self.events.subscribe()
    }
}

pub fn message(kind: Message, provider_pid: &str, consumer_pid: &str, members: Json) -> Json {
    let mut out = crate::process::message(kind.type_name(), provider_pid, consumer_pid, members);
    match kind {
        Message::AcceptedEvent => out["eventType"] = json!("ACCEPTED"),
        Message::FinalizedEvent => out["eventType"] = json!("FINALIZED"),
        _ => {}
    }
    out
}

/// Where a message to the peer goes.
fn peer_url(negotiation: &Negotiation, kind: Message) -> String {
    let base = negotiation.row.counter_party_address.trim_end_matches('/');
    let peer = negotiation.row.peer_pid.as_deref().unwrap_or(PEER_PID);
    match (negotiation.role, kind) {
        (Role::Consumer, Message::ContractRequest)
            if negotiation.row.peer_pid.is_none() && negotiation.details.offer.is_none() =>
        {
            format!("{base}/negotiations/request")
        }
        (Role::Consumer, Message::ContractRequest) => format!("{base}/negotiations/{peer}/request"),
        (Role::Consumer, Message::AcceptedEvent) => format!("{base}/negotiations/{peer}/events"),
        (Role::Consumer, Message::ContractAgreementVerification) => {
            format!("{base}/negotiations/{peer}/agreement/verification")
        }
        (Role::Provider, Message::ContractOffer) if negotiation.row.peer_pid.is_none() => {
            format!("{base}/negotiations/offers")
        }
        (Role::Provider, Message::ContractOffer) => format!("{base}/negotiations/{peer}/offers"),
        (Role::Provider, Message::ContractAgreement) => format!("{base}/negotiations/{peer}/agreement"),
        (Role::Provider, Message::FinalizedEvent) => format!("{base}/negotiations/{peer}/events"),
        (_, _) => format!("{base}/negotiations/{peer}/termination"),
    }
}

/// The message this side sends for `kind` (terms taken from the negotiation), with the state it leads to.
fn outgoing(negotiation: &Negotiation, kind: Message, members: Json) -> OutboxMessage {
    let (provider, consumer) = negotiation.pids();
    let provider =
        if negotiation.role == Role::Consumer && negotiation.row.peer_pid.is_none() && kind == Message::ContractRequest
        {
            "-".to_owned()
        } else {
            provider
        };
    OutboxMessage::new(peer_url(negotiation, kind), message(kind, &provider, &consumer, members))
}

/// This side sends `kind`: the state moves, and the message is queued.
fn send(mut negotiation: Negotiation, kind: Message, members: Json, step: &mut Vec<OutboxMessage>) -> Negotiation {
    let next = machine::next(Some(negotiation.state), kind).expect("callers check the table");
    step.push(outgoing(&negotiation, kind, members));
    negotiation.state = next;
    history(&mut negotiation.details, &format!("sent {}", kind.label()), next);
    negotiation
}

fn terminate(negotiation: Negotiation, code: &str, reason: &str, outbox: &mut Vec<OutboxMessage>) -> Negotiation {
    let mut negotiation =
        send(negotiation, Message::ContractNegotiationTermination, json!({"code": code, "reason": [reason]}), outbox);
    negotiation.details.error_code = Some(code.to_owned());
    negotiation.details.error = Some(reason.to_owned());
    negotiation
}

/// A provider's decision on requested terms.
enum Verdict {
    Agree { agreement: Json, asset_id: String, definition_id: String, manual: bool, decision: Json },
    Refuse { code: &'static str, reason: String, decision: Option<Json> },
}

/// An agreement to `terms` (DSP compact policy JSON) between `assigner` and `assignee`, made now, with a new id.
fn agreement_from(terms: &Json, assigner: &str, assignee: &str, target: Option<&str>) -> Json {
    let mut agreement = terms.clone();
    if let Json::Object(map) = &mut agreement {
        map.insert("@id".into(), json!(new_pid()));
        map.insert("@type".into(), json!("Agreement"));
        if let Some(target) = target {
            map.insert("target".into(), json!(target));
        }
        map.insert("assigner".into(), json!(assigner));
        map.insert("assignee".into(), json!(assignee));
        map.insert("timestamp".into(), json!(now_rfc3339()));
    }
    agreement
}

fn agreement_row(negotiation: &Negotiation, agreement: &Json) -> AgreementRow {
    let text = |key: &str| agreement.get(key).and_then(Json::as_str).unwrap_or_default().to_owned();
    AgreementRow {
        id: text("@id"),
        negotiation_id: negotiation.row.id.clone(),
        asset_id: text("target"),
        provider_id: text("assigner"),
        consumer_id: text("assignee"),
        policy: agreement.clone(),
        signed_at: Utc::now().timestamp_millis(),
    }
}

fn agree(
    mut negotiation: Negotiation,
    agreement: Json,
    outbox: &mut Vec<OutboxMessage>,
) -> (Negotiation, Option<AgreementRow>) {
    negotiation.details.agreement_id = agreement.get("@id").and_then(Json::as_str).map(str::to_owned);
    negotiation.details.agreement = Some(agreement.clone());
    negotiation.details.pending_agreement = None;
    let row = agreement_row(&negotiation, &agreement);
    let negotiation = send(negotiation, Message::ContractAgreement, json!({"agreement": agreement}), outbox);
    (negotiation, Some(row))
}

/// Reads the kind of an incoming message from its `@type` (and `eventType`).
pub fn kind_of(message: &Json) -> Result<Message, ProcessError> {
    let invalid = |m: String| ProcessError::Invalid(m);
    Ok(match message.get("@type").and_then(Json::as_str) {
        Some("ContractRequestMessage") => Message::ContractRequest,
        Some("ContractOfferMessage") => Message::ContractOffer,
        Some("ContractAgreementMessage") => Message::ContractAgreement,
        Some("ContractAgreementVerificationMessage") => Message::ContractAgreementVerification,
        Some("ContractNegotiationTerminationMessage") => Message::ContractNegotiationTermination,
        Some("ContractNegotiationEventMessage") => match message.get("eventType").and_then(Json::as_str) {
            Some("ACCEPTED") => Message::AcceptedEvent,
            Some("FINALIZED") => Message::FinalizedEvent,
            other => return Err(invalid(format!("eventType must be ACCEPTED or FINALIZED, not {other:?}"))),
        },
        other => return Err(invalid(format!("@type {other:?} is not a contract negotiation message"))),
    })
}

fn required<'a>(message: &'a Json, field: &str) -> Result<&'a str, ProcessError> {
    crate::process::required(message, field).map_err(ProcessError::Invalid)
}

/// Checks the members a message kind needs (the official schema's required fields and their shapes).
fn check_fields(kind: Message, message: &Json, initial: bool) -> Result<(), ProcessError> {
    match (kind, initial) {
        (Message::ContractRequest, true) => {
            required(message, "consumerPid")?;
            required(message, "callbackAddress")?;
        }
        (Message::ContractOffer, true) => {
            required(message, "providerPid")?;
            required(message, "callbackAddress")?;
        }
        _ => {
            required(message, "providerPid")?;
            required(message, "consumerPid")?;
        }
    }
    match kind {
        Message::ContractRequest | Message::ContractOffer => {
            let offer = message
                .get("offer")
                .filter(|o| o.is_object())
                .ok_or_else(|| ProcessError::Invalid("offer is required".into()))?;
            required(offer, "@id").map_err(|_| ProcessError::Invalid("offer.@id is required".into()))?;
            if kind == Message::ContractRequest {
                required(offer, "target").map_err(|_| ProcessError::Invalid("offer.target is required".into()))?;
            }
        }
        Message::ContractAgreement => {
            let agreement = message
                .get("agreement")
                .filter(|o| o.is_object())
                .ok_or_else(|| ProcessError::Invalid("agreement is required".into()))?;
            for field in ["@id", "target", "assigner", "assignee", "timestamp"] {
                required(agreement, field)
                    .map_err(|_| ProcessError::Invalid(format!("agreement.{field} is required")))?;
            }
        }
        _ => {}
    }
    Ok(())
}

impl Negotiations {
    /// Decides a consumer's request: the offer must be one of ours for that dataset, mean the same terms, be visible to
    /// the requester (access policy) and permitted for it (contract policy).
    fn decide(&self, requester: &str, claims: &Claims, offer: &Json, purpose: Option<&str>) -> Verdict {
        let refuse = |code, reason: String| Verdict::Refuse { code, reason, decision: None };
        let requested = match Policy::from_json(offer) {
            Ok(policy) => policy,
            Err(error) => return refuse("InvalidOffer", format!("the offer is not a readable ODRL policy: {error}")),
        };
        let offer_id = offer.get("@id").and_then(Json::as_str).unwrap_or_default();
        let Some(target) = requested.target.clone() else {
            return refuse("InvalidOffer", "the requested offer names no target dataset".into());
        };
        let Some((offered, definition)) = self.catalogue.offer(offer_id) else {
            return refuse("OfferNotFound", format!("there is no offer `{offer_id}` in this catalogue"));
        };
        let Some(asset) = self.catalogue.asset(&target) else {
            return refuse("OfferNotFound", format!("there is no dataset `{target}` in this catalogue"));
        };
        if !definition.value.selects(&*asset.value) {
            return refuse("OfferNotFound", format!("offer `{offer_id}` does not cover dataset `{target}`"));
        }
        if let Some(difference) = hanse_policy::offer_difference(&requested, &offered.policy) {
            return refuse(
                "TermsDiffer",
                format!(
                    "the requested terms differ from offer `{offer_id}`: {difference}; request the offer as the catalogue \
                 lists it"
                ),
            );
        }
        let mut context = RequestContext::new(requester, Utc::now());
        context.purpose = purpose.map(str::to_owned);
        context.claims = claims.claims.clone();
        context.credential_types = claims.credential_types.clone();
        let Some(access) = self.catalogue.policy(&definition.value.access_policy_id) else {
            return refuse("OfferNotFound", format!("there is no offer `{offer_id}` in this catalogue"));
        };
        let permitted = hanse_policy::permits(&access.value.policy, "use", &context);
        crate::process::count_decision(&self.store, "negotiation_access", permitted);
        if !permitted {
            let decision = hanse_policy::evaluate(&access.value.policy, "use", &context);
            tracing::debug!(requester, offer = offer_id, reason = %decision.reason, "access policy denies the negotiation");
            return refuse("OfferNotFound", format!("there is no offer `{offer_id}` in this catalogue"));
        }
        // The contract terms must be able to grant something to this requester: one of its permissions' actions. The
        // fast path decides; only a denial is evaluated again with its full trace, which is kept with the negotiation.
        let actions: Vec<String> = offered.policy.permissions.iter().filter_map(|p| p.action.clone()).collect();
        let granted = actions.iter().find(|action| hanse_policy::permits(&offered.policy, action, &context));
        crate::process::count_decision(&self.store, "negotiation_contract", granted.is_some());
        let Some(granted) = granted else {
            let decision = actions.first().map(|action| hanse_policy::evaluate(&offered.policy, action, &context));
            let reason =
                decision.as_ref().map(|d| d.reason.clone()).unwrap_or_else(|| "the offer grants no permission".into());
            return Verdict::Refuse {
                code: "PolicyDenied",
                reason: format!("the usage policy does not permit this request: {reason}"),
                decision: Some(serde_json::to_value(decision).unwrap_or(Json::Null)),
            };
        };
        let decision_json = json!({"permitted": true, "action": granted,
                               "reason": format!("the contract policy permits {}", hanse_policy::term::short(granted))});
        let agreement = agreement_from(&offered.policy.to_dsp_json(), &self.participant, requester, Some(&target));
        Verdict::Agree {
            agreement,
            asset_id: target,
            definition_id: definition.value.id.clone(),
            manual: definition.value.manual_approval,
            decision: decision_json,
        }
    }

    /// The verified claims of the consumer `participant`, gathered only when a policy of this catalogue needs them.
    async fn provider_claims(&self, participant: &str, token_expiry: DateTime<Utc>) -> Arc<Claims> {
        if self.catalogue.policies_use_claims(false) {
            self.identity.claims_of(participant, token_expiry).await
        } else {
            Arc::new(Claims::default())
        }
    }

    /// Provider: agree (or hold the agreement for the operator, or refuse) after a request or an accepted offer.
    fn provider_turn(
        &self,
        claims: &Claims,
        mut negotiation: Negotiation,
        outbox: &mut Vec<OutboxMessage>,
    ) -> (Negotiation, Option<AgreementRow>) {
        let offer = negotiation.details.offer.clone().unwrap_or(Json::Null);
        let verdict = match negotiation.state {
            // An accepted offer of our own operator: agree to exactly those terms.
            State::Accepted
                if negotiation.details.asset_id.is_some() && negotiation.details.definition_id.is_none() =>
            {
                let agreement = agreement_from(&offer, &self.participant, &negotiation.row.counter_party_id, None);
                Verdict::Agree {
                    agreement,
                    asset_id: negotiation.details.asset_id.clone().unwrap_or_default(),
                    definition_id: String::new(),
                    manual: negotiation.details.manual,
                    decision: Json::Null,
                }
            }
            _ => self.decide(&negotiation.row.counter_party_id, claims, &offer, negotiation.details.purpose.as_deref()),
        };
        match verdict {
            // Under manual approval, terms that are not a catalogue offer as listed (a counter-request) wait for the
            // operator, prepared as an agreement to exactly those terms; a refusal by the usage policy does not.
            Verdict::Refuse { code: "OfferNotFound" | "TermsDiffer", .. }
                if negotiation.details.manual
                    && negotiation.details.history.len() > 1
                    && offer.get("target").is_some() =>
            {
                let agreement = agreement_from(&offer, &self.participant, &negotiation.row.counter_party_id, None);
                negotiation.details.pending_agreement = Some(agreement);
                history(
                    &mut negotiation.details,
                    "counter-request waiting for the operator's decision",
                    negotiation.state,
                );
                (negotiation, None)
            }
            Verdict::Refuse { code, reason, decision } => {
                negotiation.details.decision = decision;
                tracing::info!(negotiation = %negotiation.row.id, code, %reason, "refusing the request");
                (terminate(negotiation, code, &reason, outbox), None)
            }
            Verdict::Agree { agreement, asset_id, definition_id, manual, decision } => {
                // Only a requester holding a permit pays for reading the terms again.
                if let Some(permit) = claims.claims.get("dataPermit")
                    && Policy::from_json(&agreement).is_ok_and(|p| p.uses_permit())
                {
                    let field = |name: &str| permit.get(name).cloned().unwrap_or(Json::Null);
                    negotiation.details.data_permit = Some(json!({
                        "id": field("id"), "issuingBody": field("issuingBody"), "purpose": field("purpose"),
                        "validUntil": field("validUntil"),
                    }));
                }
                negotiation.details.asset_id = Some(asset_id);
                if !definition_id.is_empty() {
                    negotiation.details.definition_id = Some(definition_id);
                }
                negotiation.details.manual |= manual;
                if !decision.is_null() {
                    negotiation.details.decision = Some(decision);
                }
                if negotiation.details.manual {
                    negotiation.details.pending_agreement = Some(agreement);
                    history(&mut negotiation.details, "waiting for the operator's approval", negotiation.state);
                    (negotiation, None)
                } else {
                    agree(negotiation, agreement, outbox)
                }
            }
        }
    }

    /// Consumer: whether an agreement is what was asked for; the reason when not.
    fn check_agreement(&self, negotiation: &Negotiation, agreement: &Json) -> Result<(), String> {
        let policy =
            Policy::from_json(agreement).map_err(|e| format!("the agreement is not a readable ODRL policy: {e}"))?;
        if policy.assignee.as_deref() != Some(self.participant.as_str()) {
            return Err(format!("the agreement's assignee is {:?}, not this participant", policy.assignee));
        }
        if policy.assigner.as_deref() != Some(negotiation.row.counter_party_id.as_str()) {
            return Err(format!("the agreement's assigner is {:?}, not the counter-party", policy.assigner));
        }
        let asked = negotiation.details.offer.as_ref().or(negotiation.details.requested.as_ref());
        if let Some(asked) = asked.and_then(|a| Policy::from_json(a).ok())
            && !hanse_policy::same_offer(&policy, &asked)
        {
            return Err("the agreement's terms differ from the terms on the table".into());
        }
        Ok(())
    }

    /// Consumer: verify a received agreement, or refuse it, or wait for the operator.
    fn consumer_turn(
        &self,
        mut negotiation: Negotiation,
        outbox: &mut Vec<OutboxMessage>,
    ) -> (Negotiation, Option<AgreementRow>) {
        match negotiation.state {
            State::Agreed => {
                let agreement = negotiation.details.agreement.clone().unwrap_or(Json::Null);
                if let Err(reason) = self.check_agreement(&negotiation, &agreement) {
                    return (terminate(negotiation, "AgreementRejected", &reason, outbox), None);
                }
                let row = agreement_row(&negotiation, &agreement);
                if negotiation.details.auto_accept {
                    (send(negotiation, Message::ContractAgreementVerification, json!({}), outbox), Some(row))
                } else {
                    history(&mut negotiation.details, "waiting for the operator to verify", negotiation.state);
                    (negotiation, Some(row))
                }
            }
            State::Offered => {
                let same = match (&negotiation.details.offer, &negotiation.details.requested) {
                    (Some(offer), Some(requested)) => match (Policy::from_json(offer), Policy::from_json(requested)) {
                        (Ok(offer), Ok(requested)) => hanse_policy::same_offer(&offer, &requested),
                        _ => false,
                    },
                    _ => false,
                };
                if negotiation.details.auto_accept && same {
                    (send(negotiation, Message::AcceptedEvent, json!({}), outbox), None)
                } else {
                    history(
                        &mut negotiation.details,
                        "waiting for the operator to accept, counter or terminate",
                        negotiation.state,
                    );
                    (negotiation, None)
                }
            }
            _ => (negotiation, None),
        }
    }

    /// Applies a message from `requester`. `local_pid` is the negotiation the URL names (`None` for the two messages that
    /// start one: `POST /negotiations/request` on a provider, `POST /negotiations/offers` on a consumer). The id of the
    /// token that carried the message is recorded with the change it makes (and taken out of `token_use`); a message
    /// that changes nothing leaves it to the caller.
    pub async fn receive(
        &self,
        verified: &Verified,
        token_use: &mut Option<TokenUse>,
        local_pid: Option<&str>,
        message: Json,
    ) -> Result<Answer, ProcessError> {
        let (requester, requester_expiry) = (verified.participant.as_str(), verified.expires_at);
        let kind = kind_of(&message)?;
        check_fields(kind, &message, local_pid.is_none())?;
        let message_digest = digest(&message);
        for _ in 0..8 {
            // Find (or begin) the negotiation.
            let (existing, role) = match local_pid {
                Some(pid) => {
                    let row = self.store.negotiation(pid).await?.ok_or(NOT_FOUND)?;
                    let negotiation = Negotiation::from_row(row)?;
                    // Someone else's negotiation, or a message naming pids that are not this one's: unknown.
                    if !crate::process::addressed_to(&negotiation.row, negotiation.role, requester, &message) {
                        return Err(NOT_FOUND);
                    }
                    let role = negotiation.role;
                    (Some(negotiation), role)
                }
                None => {
                    let role = if kind == Message::ContractRequest { Role::Provider } else { Role::Consumer };
                    let peer_pid =
                        required(&message, if role == Role::Provider { "consumerPid" } else { "providerPid" })?;
                    match self.store.process_by_peer(ProcessKind::Negotiation, role.name(), requester, peer_pid).await?
                    {
                        Some(row) => (Some(Negotiation::from_row(row)?), role),
                        None => (None, role),
                    }
                }
            };
            // A redelivery of the message last applied gets the same answer, and nothing changes.
            if let Some(answer) = existing.as_ref().and_then(|n| crate::process::redelivered(&n.row, &message_digest)) {
                return Ok(answer);
            }
            if existing.is_some() && local_pid.is_none() {
                return Err(ProcessError::Illegal(format!(
                    "a negotiation with this {} already exists; continue it at its own address",
                    if role == Role::Provider { "consumerPid" } else { "providerPid" }
                )));
            }
            // A consumer that gave up on a provider which had taken its verification after all takes the provider's
            // FINALIZED event, as it takes FINALIZED when it asks (ARCHITECTURE.md, "Convergence rules").
            if let Some(negotiation) = existing
                .as_ref()
                .filter(|n| kind == Message::FinalizedEvent && n.role == Role::Consumer && n.state == State::Terminated)
                && self.adopt_finalized(&negotiation.row.id).await?
            {
                return Ok(Answer { status: StatusCode::OK, body: None });
            }
            let state = existing.as_ref().map(|n| n.state);
            if !machine::may_receive(role, state, kind) {
                return Err(ProcessError::Illegal(match state {
                    Some(state) => {
                        format!("a {} is not accepted in state {} by the {}", kind.label(), state.name(), role.name())
                    }
                    None => format!("a {} cannot start a negotiation with the {}", kind.label(), role.name()),
                }));
            }
            let next_state = machine::next(state, kind).expect("checked by may_receive");
            let initial = existing.is_none();
            let before = existing.as_ref().map(|n| n.row.clone());
            let mut negotiation = match existing {
                Some(negotiation) => negotiation,
                None => {
                    let (peer_pid, address) = match role {
                        Role::Provider => (required(&message, "consumerPid")?, required(&message, "callbackAddress")?),
                        Role::Consumer => (required(&message, "providerPid")?, required(&message, "callbackAddress")?),
                    };
                    Negotiation::new(role, next_state, Some(peer_pid), requester, address, Details::default())
                }
            };
            // Learn the peer's pid if it was not known yet.
            if negotiation.row.peer_pid.is_none() {
                let field = if role == Role::Provider { "consumerPid" } else { "providerPid" };
                negotiation.row.peer_pid = message.get(field).and_then(Json::as_str).map(str::to_owned);
            }
            negotiation.state = next_state;
            history(&mut negotiation.details, &format!("received {}", kind.label()), next_state);
            match kind {
                Message::ContractRequest | Message::ContractOffer => {
                    negotiation.details.offer = message.get("offer").cloned();
                    if let Some(purpose) = message.get(PURPOSE).and_then(Json::as_str) {
                        negotiation.details.purpose = Some(purpose.to_owned());
                    }
                    if kind == Message::ContractOffer
                        && let Some(target) = message["offer"].get("target").and_then(Json::as_str)
                    {
                        negotiation.details.asset_id = Some(target.to_owned());
                    }
                }
                Message::ContractAgreement => {
                    negotiation.details.agreement = message.get("agreement").cloned();
                    negotiation.details.agreement_id =
                        message["agreement"].get("@id").and_then(Json::as_str).map(str::to_owned);
                }
                Message::ContractNegotiationTermination => {
                    (negotiation.details.error_code, negotiation.details.error) =
                        crate::process::code_and_reason(&message);
                }
                _ => {}
            }
            // This side's automatic next step.
            let mut outbox = Vec::new();
            let mut agreement = None;
            match (role, negotiation.state) {
                (Role::Provider, State::Requested | State::Accepted) => {
                    let claims = self.provider_claims(requester, requester_expiry).await;
                    (negotiation, agreement) = self.provider_turn(&claims, negotiation, &mut outbox);
                }
                (Role::Provider, State::Verified) if !negotiation.details.manual => {
                    negotiation = send(negotiation, Message::FinalizedEvent, json!({}), &mut outbox);
                }
                (Role::Consumer, State::Agreed | State::Offered) => {
                    (negotiation, agreement) = self.consumer_turn(negotiation, &mut outbox);
                }
                _ => {}
            }
            // The answer reports the state as of this message's receipt.
            let answer = if initial {
                let mut received = negotiation.clone();
                received.state = next_state;
                Answer { status: StatusCode::CREATED, body: Some(received.dsp_json()) }
            } else {
                Answer { status: StatusCode::OK, body: None }
            };
            negotiation.row.last_received = Some(message_digest.clone());
            negotiation.row.last_answer = Some(answer.to_json());
            negotiation.row.state = negotiation.state.name().into();
            negotiation.row.body = serde_json::to_value(&negotiation.details).unwrap_or(Json::Null);
            if agreement.is_some() {
                negotiation.row.agreement_id = negotiation.details.agreement_id.clone();
            }
            // A legal message from the peer proves it received what this side sent before: that message is done.
            let outgoing = outbox.last().map_or(Outgoing::Clear, Outgoing::Send);
            match crate::process::write(
                &self.store,
                ProcessKind::Negotiation,
                before.as_ref(),
                &negotiation.row,
                Some(&message_digest),
                outgoing,
                token_use.as_ref(),
            )
            .await
            {
                Ok(Some(handed)) => {
                    *token_use = None;
                    self.dispatcher.hand(handed);
                    let _ = self.events.send((negotiation.row.id.clone(), negotiation.state));
                    tracing::info!(negotiation = %negotiation.row.id, role = role.name(), message = kind.label(), state = negotiation.state.name(), "negotiation message applied");
                    return Ok(answer);
                }
                Ok(None) => continue,
                // Two first messages raced; the loser finds the winner's row and is answered from it.
                Err(StoreError::Conflict { .. }) if initial => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(BUSY)
    }

    /// The negotiation `pid`, if `requester` is its counter-party (DSP `GET /negotiations/{pid}`).
    pub async fn get_for_peer(&self, requester: &str, pid: &str) -> Result<Negotiation, ProcessError> {
        let row = self.store.negotiation(pid).await?.ok_or(NOT_FOUND)?;
        if row.counter_party_id != requester {
            return Err(NOT_FOUND);
        }
        Ok(Negotiation::from_row(row)?)
    }

    /// A negotiation by id (management).
    pub async fn get(&self, id: &str) -> Result<Negotiation, ProcessError> {
        let row = self.store.negotiation(id).await?.ok_or(NOT_FOUND)?;
        Ok(Negotiation::from_row(row)?)
    }

    /// Every negotiation (management).
    /// One page of negotiations selected and ordered in SQL.
    pub async fn page(&self, query: &crate::store::RowQuery) -> Result<Vec<Negotiation>, ProcessError> {
        let rows = self.store.page(ProcessKind::Negotiation, query).await?;
        rows.into_iter().map(|row| Negotiation::from_row(row).map_err(Into::into)).collect()
    }

    pub async fn all(&self) -> Result<Vec<Negotiation>, ProcessError> {
        self.store
            .processes(ProcessKind::Negotiation)
            .await?
            .into_iter()
            .map(|row| Negotiation::from_row(row).map_err(Into::into))
            .collect()
    }

    /// Starts a negotiation as consumer: the row and the first request, in one transaction.
    pub async fn start(&self, start: Start) -> Result<Negotiation, ProcessError> {
        let details = Details {
            requested: Some(start.offer.clone()),
            asset_id: start.offer.get("target").and_then(Json::as_str).map(str::to_owned),
            auto_accept: start.auto_accept,
            purpose: start.purpose.clone(),
            pull_on_agreement: start.pull_on_agreement,
            ..Details::default()
        };
        let mut negotiation = Negotiation::new(
            Role::Consumer,
            State::Requested,
            None,
            &start.provider_id,
            &start.provider_address,
            details,
        );
        let mut members = Map::new();
        members.insert("offer".into(), start.offer.clone());
        members.insert("callbackAddress".into(), json!(self.catalogue.service.endpoint_url));
        if let Some(purpose) = &start.purpose {
            members.insert(PURPOSE.into(), json!(purpose));
        }
        // The first request carries the callback address and no providerPid (`outgoing` knows the peer's pid is unknown).
        let request = outgoing(&negotiation, Message::ContractRequest, Json::Object(members));
        negotiation.details.offer = Some(start.offer);
        history(&mut negotiation.details, "sent contract request", State::Requested);
        negotiation.row.state = State::Requested.name().into();
        negotiation.row.body = serde_json::to_value(&negotiation.details).unwrap_or(Json::Null);
        let handed = crate::process::write(
            &self.store,
            ProcessKind::Negotiation,
            None,
            &negotiation.row,
            None,
            Outgoing::Send(&request),
            None,
        )
        .await?
        .flatten();
        self.dispatcher.hand(handed);
        let _ = self.events.send((negotiation.row.id.clone(), negotiation.state));
        self.get(&negotiation.row.id).await
    }

    /// An operator's call on a negotiation (`approve`, `offer`, `finalize`, `accept`, `verify`, `terminate`).
    pub async fn call(&self, id: &str, call: &str, body: &Json) -> Result<Negotiation, ProcessError> {
        for _ in 0..8 {
            let negotiation = self.get(id).await?;
            let before = negotiation.row.clone();
            let held = negotiation.held();
            let wrong = || ProcessError::WrongState {
                call: call.to_owned(),
                state: negotiation.state.name(),
                allowed: machine::allowed_calls(negotiation.role, negotiation.state),
            };
            let kind = machine::call_message(negotiation.role, call).ok_or_else(wrong)?;
            if !machine::may_send(negotiation.role, Some(negotiation.state), kind) {
                return Err(wrong());
            }
            let mut outbox = Vec::new();
            let mut agreement = None;
            let next = match kind {
                Message::ContractNegotiationTermination => {
                    let reason = body.get("reason").and_then(Json::as_str).unwrap_or("terminated by the operator");
                    terminate(negotiation, "Terminated", reason, &mut outbox)
                }
                Message::ContractAgreement => match negotiation.details.pending_agreement.clone() {
                    Some(pending) => {
                        let (next, row) = agree(negotiation, pending, &mut outbox);
                        agreement = row;
                        next
                    }
                    None => {
                        // Nothing prepared (no manual hold): decide now, as the automatic path would.
                        let expiry =
                            Utc::now() + chrono::Duration::seconds(crate::identity::token::TOKEN_LIFETIME_SECONDS);
                        let claims = self.provider_claims(&negotiation.row.counter_party_id, expiry).await;
                        let manual = negotiation.details.manual;
                        let mut automatic = negotiation;
                        automatic.details.manual = false;
                        let (mut decided, row) = self.provider_turn(&claims, automatic, &mut outbox);
                        decided.details.manual = manual;
                        agreement = row;
                        decided
                    }
                },
                Message::ContractOffer | Message::ContractRequest => {
                    let terms = body.get("offer").or_else(|| body.get("policy")).cloned().ok_or_else(|| {
                        ProcessError::Invalid("offer (the counter terms, an ODRL policy) is required".into())
                    })?;
                    let mut terms = Policy::from_json(&terms)
                        .map_err(|e| ProcessError::Invalid(format!("offer.{e}")))?
                        .to_dsp_json();
                    if let Json::Object(map) = &mut terms {
                        map.insert("@id".into(), json!(new_pid()));
                        map.insert("@type".into(), json!("Offer"));
                        let target = negotiation.details.asset_id.clone().unwrap_or_default();
                        map.insert("target".into(), json!(target));
                    }
                    let mut next = negotiation;
                    next.details.offer = Some(terms.clone());
                    if kind == Message::ContractOffer {
                        next.details.definition_id = None;
                        next.details.pending_agreement = None;
                    } else {
                        next.details.requested = Some(terms.clone());
                    }
                    send(next, kind, json!({"offer": terms}), &mut outbox)
                }
                other => send(negotiation, other, json!({}), &mut outbox),
            };
            let mut next = next;
            next.details.operator_calls.push(crate::process::operator_call(call, body, held));
            next.row.state = next.state.name().into();
            next.row.body = serde_json::to_value(&next.details).unwrap_or(Json::Null);
            if agreement.is_some() {
                next.row.agreement_id = next.details.agreement_id.clone();
            }
            let outgoing = outbox.last().map_or(Outgoing::Keep, Outgoing::Send);
            if self.write_own(&before, &next, outgoing).await? {
                tracing::info!(negotiation = id, call, state = next.state.name(), "operator call applied");
                return self.get(id).await;
            }
        }
        Err(BUSY)
    }

    /// Writes a change this side makes on its own (no message received) from `before` to `next`; once written, hands its
    /// message to the dispatcher and announces the state. `false`: the negotiation changed meanwhile (the caller retries).
    async fn write_own(
        &self,
        before: &ProcessRow,
        next: &Negotiation,
        outgoing: Outgoing<'_>,
    ) -> Result<bool, ProcessError> {
        let kind = ProcessKind::Negotiation;
        let Some(handed) =
            crate::process::write(&self.store, kind, Some(before), &next.row, None, outgoing, None).await?
        else {
            return Ok(false);
        };
        self.dispatcher.hand(handed);
        let _ = self.events.send((next.row.id.clone(), next.state));
        Ok(true)
    }

    /// Terminates a negotiation on this side after a delivery failure, and tells the peer (until it takes the notice,
    /// within the convergence deadline) if it can.
    pub async fn terminate_after_failure(&self, id: &str, reason: &str, notify_peer: bool) -> Result<(), ProcessError> {
        self.terminate_locally(id, "DeliveryFailed", reason, notify_peer).await
    }

    /// Consumer: the provider reports FINALIZED for a negotiation this side holds VERIFIED — its FINALIZED event never
    /// arrived — or ended itself after the provider stopped answering, when the provider had in fact taken its
    /// verification (convergence: the agreement both hold stands). Answers whether it changed.
    pub async fn adopt_finalized(&self, id: &str) -> Result<bool, ProcessError> {
        for _ in 0..8 {
            let negotiation = self.get(id).await?;
            let gave_up = crate::process::gave_up(negotiation.details.error_code.as_deref());
            let adoptable = negotiation.state == State::Verified
                || (negotiation.state == State::Terminated && gave_up && negotiation.row.agreement_id.is_some());
            if negotiation.role != Role::Consumer || !adoptable {
                return Ok(false);
            }
            let before = negotiation.row.clone();
            let mut next = negotiation;
            next.state = State::Finalized;
            next.details.error_code = None;
            next.details.error = None;
            next.row.state = State::Finalized.name().into();
            next.row.body = serde_json::to_value(&next.details).unwrap_or(Json::Null);
            if self.write_own(&before, &next, Outgoing::Clear).await? {
                tracing::warn!(negotiation = id, "finalized: the provider reports FINALIZED, its event never arrived");
                return Ok(true);
            }
        }
        Err(BUSY)
    }

    /// Ends a negotiation on this side with `code` and `reason`; with `notify_peer`, the peer gets a termination notice
    /// (delivered until it takes it, within the convergence deadline).
    pub async fn terminate_locally(
        &self,
        id: &str,
        code: &str,
        reason: &str,
        notify_peer: bool,
    ) -> Result<(), ProcessError> {
        for _ in 0..8 {
            let negotiation = self.get(id).await?;
            if negotiation.state.is_terminal() {
                return Ok(());
            }
            let before = negotiation.row.clone();
            let mut outbox = Vec::new();
            let mut next = terminate(negotiation, code, reason, &mut outbox);
            for message in &mut outbox {
                message.final_notice = true;
            }
            if !notify_peer {
                outbox.clear();
            }
            next.row.state = next.state.name().into();
            next.row.body = serde_json::to_value(&next.details).unwrap_or(Json::Null);
            let outgoing = outbox.last().map_or(Outgoing::Clear, Outgoing::Send);
            if self.write_own(&before, &next, outgoing).await? {
                tracing::warn!(negotiation = id, code, reason, "negotiation terminated on this side");
                return Ok(());
            }
        }
        Err(BUSY)
    }
}

/// What a consumer asks for to start a negotiation.
#[derive(Debug, Clone)]
pub struct Start {
    /// The provider's DSP base (already resolved to the 2025-1 endpoint).
    pub provider_address: String,
    pub provider_id: String,
    /// The offer as the catalogue listed it, with `target` (and `assigner`).
    pub offer: Json,
    pub auto_accept: bool,
    pub purpose: Option<String>,
    /// Start a pull transfer once agreed.
    pub pull_on_agreement: bool,
}
