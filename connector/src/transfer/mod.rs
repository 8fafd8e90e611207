//! DSP 2025-1 transfer processes, both roles, on durable state — the same discipline as negotiations: a transfer is a
//! row, every change is one statement holding the new state and the message it sends (outbox), incoming messages are
//! checked against the one table in [`machine`] and applied at most once.
//!
//! The provider grants a transfer only under an agreement it made with exactly this consumer, for a dataset it still
//! offers, whose policy permits `use` now ([`Transfers::check_use`]; the same check guards every data plane
//! request). It starts at once unless the contract definition requires a manual start. A pull start carries a data
//! address with a short-lived access token (the data plane); once a push start is delivered, the provider streams the
//! data to the consumer's endpoint and completes (never before: the consumer must be STARTED to accept the completion).

pub mod edr;
pub use hanse_core::transfer as machine;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use hanse_policy::{Policy, RequestContext};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};
use tokio::sync::mpsc;

pub mod access;

use crate::catalog::Catalogue;
use crate::dispatch::Dispatcher;
use crate::dsp::client::DspClient;
use crate::identity::Identity;
use crate::identity::Verified;
use crate::negotiation::Negotiations;
use crate::negotiation::PEER_PID;
use crate::process::{Answer, ProcessError, digest};
use crate::store::AuditStore;
use crate::store::{AgreementRow, OutboxMessage, Outgoing, ProcessKind, ProcessRow, Processes, StoreError};
use access::Access;
use machine::{Message, Role, State};

pub use hanse_core::formats::{COMPUTE, FORMATS, HTTP_ENDPOINT, PULL, PUSH};

/// What a transfer carries besides its state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Details {
    pub asset_id: Option<String>,
    /// `HttpData-PULL`, `HttpData-PUSH` or `Hanse-Compute`.
    pub format: Option<String>,
    /// Push: where the provider sends the data (a DSP `DataAddress`, from the consumer's request).
    pub destination: Option<Json>,
    /// Consumer, pull: the data address of the provider's last start message (or refresh).
    pub edr: Option<Json>,
    /// Consumer: the data address must be refreshed before use (the transfer was suspended since).
    pub edr_stale: bool,
    /// Provider: the transfer waits for the operator to start it.
    pub manual: bool,
    /// Consumer: it may complete or terminate by itself.
    pub auto_complete: bool,
    /// Provider: bumped each time the transfer enters STARTED; access tokens of other epochs are void.
    pub epoch: u64,
    /// Provider, push: the data was delivered.
    pub pushed: bool,
    /// Provider, push: bytes delivered.
    pub bytes: Option<u64>,
    /// Provider, push: deliveries begun, counted before each is sent (a count above one after a stop means an
    /// earlier delivery was interrupted; every delivery carries the same `Idempotency-Key`).
    #[serde(default)]
    pub push_attempts: u32,
    /// The purpose the agreement was negotiated for.
    pub purpose: Option<String>,
    /// Consumer, compute: the job whose session this is (ended with the job when its replica stopped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    pub error_code: Option<String>,
    pub error: Option<String>,
    /// The policy decision (with its trace) behind a refusal.
    pub decision: Option<Json>,
    pub history: Vec<Json>,
    /// The operator's calls (`call`, `reason`, `at`, whether the transfer was held for it), in order: the log keeps
    /// each as an `operator.decision` entry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub operator_calls: Vec<Json>,
}

/// A transfer process as the service works with it.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub row: ProcessRow,
    pub role: Role,
    pub state: State,
    pub details: Details,
}

impl Transfer {
    fn new(role: Role, peer_pid: Option<&str>, counter_party: &str, address: &str, agreement_id: &str) -> Transfer {
        let mut row = crate::process::new_row(role, State::Requested.name(), peer_pid, counter_party, address);
        row.agreement_id = Some(agreement_id.to_owned());
        Transfer { row, role, state: State::Requested, details: Details::default() }
    }

    pub fn from_row(row: ProcessRow) -> Result<Transfer, StoreError> {
        let (role, state, details) = crate::process::decode(ProcessKind::Transfer, &row, State::parse)?;
        Ok(Transfer { row, role, state, details })
    }

    /// (providerPid, consumerPid).
    pub fn pids(&self) -> (String, String) {
        crate::process::pids(&self.row, self.role, PEER_PID)
    }

    pub fn agreement_id(&self) -> &str {
        self.row.agreement_id.as_deref().unwrap_or_default()
    }

    /// Whether this side's next move waits for the operator.
    pub fn held(&self) -> bool {
        self.role == Role::Provider && self.state == State::Requested && self.details.manual
    }

    fn is_push(&self) -> bool {
        self.details.format.as_deref() == Some(PUSH)
    }

    /// Whether the transfer is a compute session.
    pub fn is_compute(&self) -> bool {
        self.details.format.as_deref() == Some(COMPUTE)
    }

    /// The ODRL action the transfer exercises: `compute` for a compute session, `use` otherwise.
    pub fn action(&self) -> &'static str {
        if self.is_compute() { "compute" } else { "use" }
    }

    /// The DSP `TransferProcess` message.
    pub fn dsp_json(&self) -> Json {
        crate::process::dsp_state("TransferProcess", &self.row, self.role, PEER_PID, self.state.name())
    }

    /// The EDC management shape, with the calls allowed now; secrets of the push destination are masked.
    pub fn management_json(&self) -> Json {
        let view = crate::process::ManagementView {
            type_name: "TransferProcess",
            row: &self.row,
            role: self.role,
            state: self.state.name(),
            allowed_calls: machine::allowed_calls(self.role, self.state),
            held: self.held(),
            history: &self.details.history,
        };
        view.to_json(vec![
            ("contractId", Some(json!(self.agreement_id()))),
            ("transferType", Some(json!(self.details.format))),
            ("autoComplete", Some(json!(self.details.auto_complete))),
            ("assetId", self.details.asset_id.as_ref().map(|v| json!(v))),
            ("errorDetail", self.details.error.as_ref().map(|v| json!(v))),
            ("errorCode", self.details.error_code.as_ref().map(|v| json!(v))),
            ("decision", self.details.decision.clone()),
            ("bytesPushed", self.details.bytes.map(|v| json!(v))),
            ("pushAttempts", (self.details.push_attempts > 0).then(|| json!(self.details.push_attempts))),
            (
                "pushNote",
                (self.details.push_attempts > 1).then(|| {
                    json!(format!(
                        "{} deliveries were begun: the earlier ones were interrupted (the destination may hold a partial \
                         copy, which its Content-Length shows incomplete); each carried the Idempotency-Key {}",
                        self.details.push_attempts, self.row.id
                    ))
                }),
            ),
            ("dataDestination", self.details.destination.as_ref().map(masked)),
        ])
    }

    /// Writes the state and details into the row.
    fn stamp(&mut self) {
        self.row.state = self.state.name().into();
        self.row.body = serde_json::to_value(&self.details).unwrap_or(Json::Null);
    }
}

/// A data address with its endpoint property values (tokens, auth codes) masked.
fn masked(address: &Json) -> Json {
    let mut address = address.clone();
    if let Some(properties) = address.get_mut("endpointProperties").and_then(Json::as_array_mut) {
        for property in properties {
            if property.get("name").and_then(Json::as_str).is_some_and(|n| n == "authorization" || n == "authCode") {
                property["value"] = json!("***");
            }
        }
    }
    address
}

/// A data address's endpoint property.
pub fn endpoint_property<'a>(address: &'a Json, name: &str) -> Option<&'a str> {
    address
        .get("endpointProperties")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(Json::as_str) == Some(name))?
        .get("value")?
        .as_str()
}

const NOT_FOUND: ProcessError = ProcessError::NotFound(ProcessKind::Transfer);
const BUSY: ProcessError = ProcessError::Busy(ProcessKind::Transfer);

fn history(details: &mut Details, event: &str, state: State) {
    details.history.push(crate::process::history_entry(event, state.name()));
}

/// This side sends `kind`: the state moves, and the message is queued.
fn send(mut transfer: Transfer, kind: Message, members: Json, outbox: &mut Vec<OutboxMessage>) -> Transfer {
    let next = machine::next(Some(transfer.state), kind).expect("callers check the table");
    let base = transfer.row.counter_party_address.trim_end_matches('/');
    let peer = transfer.row.peer_pid.as_deref().unwrap_or(PEER_PID);
    let (provider, consumer) = transfer.pids();
    outbox.push(OutboxMessage::new(
        format!("{base}/transfers/{peer}/{}", kind.path()),
        crate::process::message(kind.type_name(), &provider, &consumer, members),
    ));
    transfer.state = next;
    history(&mut transfer.details, &format!("sent {}", kind.label()), next);
    transfer
}

fn terminate(transfer: Transfer, code: &str, reason: &str, outbox: &mut Vec<OutboxMessage>) -> Transfer {
    let mut transfer = send(transfer, Message::TransferTermination, json!({"code": code, "reason": [reason]}), outbox);
    transfer.details.error_code = Some(code.to_owned());
    transfer.details.error = Some(reason.to_owned());
    transfer
}

/// What the provider found when it checked an agreement for use.
pub struct Grant {
    pub agreement: AgreementRow,
    pub purpose: Option<String>,
    /// The contract definition the agreement was made under, if still known.
    pub definition_id: Option<String>,
    /// A job's policy decision, with its trace (kept with the job).
    pub decision: Option<Json>,
}

/// Why the provider will not let the data be used.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: &'static str,
    pub reason: String,
    pub decision: Option<Json>,
}

impl Refusal {
    pub fn new(code: &'static str, reason: impl Into<String>) -> Refusal {
        Refusal { code, reason: reason.into(), decision: None }
    }

    /// Appends the refusal to the audit log (with the policy trace, when a policy decided it). A refusal that
    /// changes no process is an audited change of its own.
    pub async fn record(&self, audit: &AuditStore, requester: &str, agreement_id: &str, during: &str) {
        let mut details = match &self.decision {
            Some(decision) => crate::audit::denial_trace(decision),
            None => json!({"action": "use"}),
        };
        details["code"] = json!(self.code);
        details["during"] = json!(during);
        let event = crate::audit::Event::new("policy.denial", details)
            .agreement(Some(agreement_id))
            .participant(Some(requester));
        if let Err(error) = audit.append_audit(vec![event]).await {
            tracing::error!(%error, "cannot append a refusal to the audit log");
        }
    }
}

/// The transfer service: both roles' transfer processes over the store, the access tokens of the data plane, and the
/// pushes the data plane runs for it. Cheap to clone.
#[derive(Clone)]
pub struct Transfers {
    pub(crate) store: Processes,
    /// Where refusals are logged.
    pub(crate) audit: AuditStore,
    /// Our participant id.
    participant: String,
    catalogue: Arc<Catalogue>,
    pub(crate) identity: Arc<Identity>,
    dispatcher: Arc<Dispatcher>,
    dsp: DspClient,
    pub(crate) negotiations: Negotiations,
    /// The public listener's base URL (data and compute endpoints hang below it).
    public_url: String,
    /// `dataplane.token_lifetime_seconds`.
    token_lifetime_seconds: u64,
    pub pushes: Arc<Pushes>,
}

/// What a transfer service is built from.
pub struct TransferSettings {
    pub participant: String,
    pub public_url: String,
    pub token_lifetime_seconds: u64,
}

impl Transfers {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Processes,
        audit: AuditStore,
        catalogue: Arc<Catalogue>,
        identity: Arc<Identity>,
        dispatcher: Arc<Dispatcher>,
        dsp: DspClient,
        negotiations: Negotiations,
        settings: TransferSettings,
    ) -> Transfers {
        Transfers {
            store,
            audit,
            participant: settings.participant,
            catalogue,
            identity,
            dispatcher,
            dsp,
            negotiations,
            public_url: settings.public_url,
            token_lifetime_seconds: settings.token_lifetime_seconds,
            pushes: Arc::default(),
        }
    }
}

/// The pushes of provider transfers. The transfer service says when one is due (the consumer has the start message,
/// or a stop interrupted it) and stops it when the transfer leaves STARTED; the data plane takes the due ones from
/// [`Pushes::take_due`] and runs them, registering each with [`Pushes::running`].
#[derive(Default)]
pub struct Pushes {
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    due: crate::dispatch::Handoff<String>,
}

impl Pushes {
    /// The push of transfer `id` should run.
    pub fn due(&self, id: &str) {
        self.due.send(id.to_owned());
    }

    /// The pushes that should run, for the one data plane that runs them.
    pub fn take_due(&self) -> Option<mpsc::UnboundedReceiver<String>> {
        self.due.take()
    }

    /// Starts `run` as the push of transfer `id` unless one is running already.
    pub fn running(&self, id: String, run: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.get(&id).is_some_and(|handle| !handle.is_finished()) {
            return;
        }
        running.insert(id, tokio::spawn(run).abort_handle());
    }

    /// The push of transfer `id` has ended.
    pub fn ended(&self, id: &str) {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Stops the push of transfer `id`, if one runs.
    pub fn stop(&self, id: &str) {
        if let Some(handle) = self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(id) {
            handle.abort();
        }
    }
}

impl Transfers {
    /// Provider: whether `requester` may use the data of agreement `agreement_id` now — the agreement is ours, with this
    /// consumer, its dataset is still offered, and its policy permits `action` (`use`, or `compute` for a compute session)
    /// at this moment with the usage so far (plus one when `new_use`: a `count` constraint counts the use being decided).
    /// Constraints only a running job can decide (`minCellCount`, `maxJobs`, ...) are checked per job
    /// (compute-to-data).
    pub async fn check_use(
        &self,
        requester: &str,
        agreement_id: &str,
        action: &str,
        new_use: bool,
    ) -> Result<Grant, Refusal> {
        self.check(requester, agreement_id, action, new_use, None).await
    }

    /// Provider: whether the agreement permits `compute` for this job now, with every job constraint decided
    /// (`jobTemplate`, `minCellCount`, `maxJobs`, ...). The grant carries the decision for the job's record.
    pub async fn check_job(
        &self,
        requester: &str,
        agreement_id: &str,
        job: hanse_policy::JobContext,
    ) -> Result<Grant, Refusal> {
        self.check(requester, agreement_id, "compute", false, Some(job)).await
    }

    async fn check(
        &self,
        requester: &str,
        agreement_id: &str,
        action: &str,
        new_use: bool,
        job: Option<hanse_policy::JobContext>,
    ) -> Result<Grant, Refusal> {
        let unknown = || Refusal::new("AgreementNotFound", format!("there is no agreement `{agreement_id}` with you"));
        let negotiation = match self.store.agreement_negotiation(agreement_id).await {
            Ok(Some(row)) => row,
            Ok(None) => return Err(unknown()),
            Err(error) => {
                tracing::error!(%error, "cannot read an agreement");
                return Err(Refusal::new("InternalError", "the agreement cannot be read now"));
            }
        };
        let purpose = negotiation.body.get("purpose").and_then(Json::as_str).map(str::to_owned);
        let definition_id = negotiation.body.get("definitionId").and_then(Json::as_str).map(str::to_owned);
        let agreement = crate::store::Processes::agreement_of(negotiation).ok_or_else(unknown)?;
        if agreement.provider_id != self.participant || agreement.consumer_id != requester {
            return Err(unknown());
        }
        if self.catalogue.asset(&agreement.asset_id).is_none() {
            return Err(Refusal::new("DatasetGone", format!("dataset `{}` is no longer offered", agreement.asset_id)));
        }
        let policy = Policy::from_json(&agreement.policy)
            .map_err(|e| Refusal::new("AgreementUnreadable", format!("the agreement's policy cannot be read: {e}")))?;
        let usage = self.store.usage(agreement_id).await.unwrap_or_default();
        let mut context = RequestContext::new(requester, Utc::now());
        context.purpose = purpose.clone();
        context.agreed_at = DateTime::from_timestamp_millis(agreement.signed_at);
        context.usage_count = usage.pulls.max(0) as u64 + u64::from(new_use);
        context.job = job;
        if policy.uses_claims() {
            let expiry = Utc::now() + chrono::Duration::seconds(crate::identity::token::TOKEN_LIFETIME_SECONDS);
            let claims = self.identity.claims_of(requester, expiry).await;
            context.claims = claims.claims.clone();
            context.credential_types = claims.credential_types.clone();
        }
        let permitted = hanse_policy::permits(&policy, action, &context);
        let point = if context.job.is_some() { "compute" } else { "transfer" };
        crate::process::count_decision(&self.store, point, permitted);
        if !permitted {
            let decision = hanse_policy::evaluate(&policy, action, &context);
            return Err(Refusal {
                code: "PolicyDenied",
                reason: format!("the agreement does not permit using the data now: {}", decision.reason),
                decision: Some(serde_json::to_value(&decision).unwrap_or(Json::Null)),
            });
        }
        let decision = context
            .job
            .is_some()
            .then(|| serde_json::to_value(hanse_policy::evaluate(&policy, action, &context)).unwrap_or(Json::Null));
        Ok(Grant { agreement, purpose, definition_id, decision })
    }

    /// Provider: the DSP data address of a pull transfer for its current epoch, with a fresh access token.
    pub fn data_address(&self, transfer: &Transfer) -> Json {
        let lifetime = chrono::Duration::seconds(self.token_lifetime_seconds as i64);
        let now = Utc::now();
        let access = Access {
            transfer_id: transfer.row.id.clone(),
            agreement_id: transfer.agreement_id().to_owned(),
            consumer: transfer.row.counter_party_id.clone(),
            epoch: transfer.details.epoch,
            expires_at: now + lifetime,
        };
        let token = access::issue(&self.identity.keys(), &access, now);
        let endpoint = if transfer.is_compute() {
            hanse_core::paths::compute_endpoint(&self.public_url, &transfer.row.id)
        } else {
            hanse_core::paths::data_endpoint(&self.public_url, &transfer.row.id)
        };
        let property = |name: &str, value: String| json!({"@type": "EndpointProperty", "name": name, "value": value});
        json!({
            "@type": "DataAddress",
            "endpointType": HTTP_ENDPOINT,
            "endpoint": endpoint,
            "endpointProperties": [
                property("authorization", token),
                property("authType", "bearer".into()),
                property("expiresAt", access.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                property("refreshEndpoint", format!("{endpoint}/token")),
            ],
        })
    }

    /// Provider: start (or restart) the transfer — a new epoch, and for pull a data address.
    fn provider_start(&self, mut transfer: Transfer, outbox: &mut Vec<OutboxMessage>) -> Transfer {
        transfer.details.epoch += 1;
        let members = if transfer.is_push() { json!({}) } else { json!({"dataAddress": self.data_address(&transfer)}) };
        send(transfer, Message::TransferStart, members, outbox)
    }

    /// Writes a transfer (new when `expected_version` is `None`) with what becomes of its pending message, hands a sent
    /// message to the dispatcher, and starts a push the write begins. `Ok(false)`: someone changed it first.
    async fn write(
        &self,
        transfer: &mut Transfer,
        before: Option<&ProcessRow>,
        received: Option<&str>,
        outbox: &[OutboxMessage],
        otherwise: Outgoing<'_>,
    ) -> Result<bool, ProcessError> {
        transfer.stamp();
        let outgoing = outbox.last().map_or(otherwise, Outgoing::Send);
        match crate::process::write(&self.store, ProcessKind::Transfer, before, &transfer.row, received, outgoing, None)
            .await?
        {
            Some(handed) => {
                self.dispatcher.hand(handed);
                // A push starts once the consumer has the start message (see [`start_delivered`]); it stops at once when
                // the transfer leaves STARTED.
                if transfer.role == Role::Provider && transfer.is_push() && transfer.state != State::Started {
                    self.pushes.stop(&transfer.row.id);
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Applies a message from `requester`. `local_pid` is the transfer the URL names (`None` for
    /// `POST /transfers/request`, which starts one on the provider).
    pub async fn receive(
        &self,
        verified: &Verified,
        local_pid: Option<&str>,
        message: Json,
    ) -> Result<Answer, ProcessError> {
        let requester = verified.participant.as_str();
        let type_name = message.get("@type").and_then(Json::as_str).unwrap_or_default();
        let kind = Message::from_type(type_name)
            .ok_or_else(|| ProcessError::Invalid(format!("@type {type_name:?} is not a transfer message")))?;
        check_fields(kind, &message)?;
        let message_digest = digest(&message);
        for _ in 0..8 {
            let existing = match local_pid {
                Some(pid) => {
                    let transfer = Transfer::from_row(self.store.transfer(pid).await?.ok_or(NOT_FOUND)?)?;
                    if !crate::process::addressed_to(&transfer.row, transfer.role, requester, &message) {
                        return Err(NOT_FOUND);
                    }
                    Some(transfer)
                }
                None => {
                    let consumer_pid =
                        crate::process::required(&message, "consumerPid").map_err(ProcessError::Invalid)?;
                    match self.store.process_by_peer(ProcessKind::Transfer, "provider", requester, consumer_pid).await?
                    {
                        Some(row) => Some(Transfer::from_row(row)?),
                        None => None,
                    }
                }
            };
            if let Some(answer) = existing.as_ref().and_then(|t| crate::process::redelivered(&t.row, &message_digest)) {
                return Ok(answer);
            }
            if existing.is_some() && local_pid.is_none() {
                return Err(ProcessError::Illegal(
                    "a transfer with this consumerPid already exists; continue it at its own address".into(),
                ));
            }
            let role = existing.as_ref().map_or(Role::Provider, |t| t.role);
            let state = existing.as_ref().map(|t| t.state);
            if !machine::may_receive(role, state, kind) {
                return Err(ProcessError::Illegal(match state {
                    Some(state) => {
                        format!("a {} is not accepted in state {} by the {}", kind.label(), state.name(), role.name())
                    }
                    None => format!("a {} cannot start a transfer with the {}", kind.label(), role.name()),
                }));
            }
            let next_state = machine::next(state, kind).expect("checked by may_receive");
            let initial = existing.is_none();
            let before = existing.as_ref().map(|t| t.row.clone());
            let mut transfer = match existing {
                Some(transfer) => transfer,
                None => self.requested(requester, &message).await?,
            };
            if transfer.row.peer_pid.is_none() {
                transfer.row.peer_pid = message.get("providerPid").and_then(Json::as_str).map(str::to_owned);
            }
            transfer.state = next_state;
            history(&mut transfer.details, &format!("received {}", kind.label()), next_state);
            let mut outbox = Vec::new();
            match (role, kind) {
                (Role::Consumer, Message::TransferStart) => {
                    transfer.details.edr_stale = false;
                    match message.get("dataAddress") {
                        Some(address) => transfer.details.edr = Some(address.clone()),
                        None if transfer.details.format.as_deref() == Some(PULL) && transfer.details.auto_complete => {
                            transfer = terminate(
                                transfer,
                                "NoDataAddress",
                                "the start message of a pull transfer carries no data address",
                                &mut outbox,
                            );
                        }
                        None => {}
                    }
                }
                (Role::Consumer, Message::TransferSuspension) => transfer.details.edr_stale = true,
                (Role::Provider, Message::TransferStart) => transfer.details.epoch += 1,
                (_, Message::TransferTermination | Message::TransferSuspension) => {
                    (transfer.details.error_code, transfer.details.error) = crate::process::code_and_reason(&message);
                }
                _ => {}
            }
            // The provider starts a new transfer at once, unless its operator releases it by hand.
            if initial && !transfer.details.manual {
                transfer = self.provider_start(transfer, &mut outbox);
            } else if initial {
                history(&mut transfer.details, "waiting for the operator to start", transfer.state);
            }
            let answer = if initial {
                let mut received = transfer.clone();
                received.state = next_state;
                Answer { status: StatusCode::CREATED, body: Some(received.dsp_json()) }
            } else {
                Answer { status: StatusCode::OK, body: None }
            };
            transfer.row.last_received = Some(message_digest.clone());
            transfer.row.last_answer = Some(answer.to_json());
            // A legal message from the peer proves it received what this side sent before: that message is done.
            match self.write(&mut transfer, before.as_ref(), Some(&message_digest), &outbox, Outgoing::Clear).await {
                Ok(true) => {
                    tracing::info!(transfer = %transfer.row.id, role = role.name(), message = kind.label(), state = transfer.state.name(), "transfer message applied");
                    return Ok(answer);
                }
                Ok(false) => continue,
                Err(ProcessError::Store(StoreError::Conflict { .. })) if initial => continue,
                Err(error) => return Err(error),
            }
        }
        Err(BUSY)
    }

    /// Provider: a new transfer for a consumer's request, after every check; refused requests leave nothing behind.
    async fn requested(&self, requester: &str, message: &Json) -> Result<Transfer, ProcessError> {
        let text = |field| crate::process::required(message, field).map_err(ProcessError::Invalid);
        let (consumer_pid, agreement_id, format, callback) =
            (text("consumerPid")?, text("agreementId")?, text("format")?, text("callbackAddress")?);
        if !FORMATS.contains(&format) {
            return Err(ProcessError::Refused {
                code: "UnsupportedFormat",
                reason: format!("format `{format}` is not offered; Hanse offers {}", FORMATS.join(", ")),
            });
        }
        let destination = message.get("dataAddress").cloned();
        if format == PUSH && destination.as_ref().and_then(|d| d.get("endpoint")).and_then(Json::as_str).is_none() {
            return Err(ProcessError::Invalid("an HttpData-PUSH request needs dataAddress.endpoint".into()));
        }
        let action = if format == COMPUTE { "compute" } else { "use" };
        let grant = match self.check_use(requester, agreement_id, action, format != COMPUTE).await {
            Ok(grant) => grant,
            Err(refusal) => {
                tracing::info!(requester, agreement = agreement_id, code = refusal.code, reason = %refusal.reason, "transfer refused");
                refusal.record(&self.audit, requester, agreement_id, "transfer request").await;
                return Err(ProcessError::Refused { code: refusal.code, reason: refusal.reason });
            }
        };
        let offered = self.catalogue.asset(&grant.agreement.asset_id).map(|a| a.value.data_address.formats());
        if let Some(offered) = offered
            && !offered.contains(&format)
        {
            return Err(ProcessError::Refused {
                code: "UnsupportedFormat",
                reason: format!(
                    "dataset `{}` is offered as {}, not {format}",
                    grant.agreement.asset_id,
                    offered.join(", ")
                ),
            });
        }
        let mut transfer = Transfer::new(Role::Provider, Some(consumer_pid), requester, callback, agreement_id);
        transfer.details = Details {
            asset_id: Some(grant.agreement.asset_id.clone()),
            format: Some(format.to_owned()),
            destination: if format == PUSH { destination } else { None },
            manual: grant
                .definition_id
                .and_then(|id| self.catalogue.definition(&id))
                .is_some_and(|d| d.value.manual_start),
            purpose: grant.purpose,
            ..Details::default()
        };
        Ok(transfer)
    }

    /// The transfer `pid`, if `requester` is its counter-party (DSP `GET /transfers/{pid}`).
    pub async fn get_for_peer(&self, requester: &str, pid: &str) -> Result<Transfer, ProcessError> {
        let transfer = self.get(pid).await?;
        if transfer.row.counter_party_id != requester {
            return Err(NOT_FOUND);
        }
        Ok(transfer)
    }

    /// A transfer by id (management).
    pub async fn get(&self, id: &str) -> Result<Transfer, ProcessError> {
        Ok(Transfer::from_row(self.store.transfer(id).await?.ok_or(NOT_FOUND)?)?)
    }

    /// Every transfer (management).
    /// One page of transfers selected and ordered in SQL.
    pub async fn page(&self, query: &crate::store::RowQuery) -> Result<Vec<Transfer>, ProcessError> {
        let rows = self.store.page(ProcessKind::Transfer, query).await?;
        rows.into_iter().map(|row| Transfer::from_row(row).map_err(Into::into)).collect()
    }

    pub async fn all(&self) -> Result<Vec<Transfer>, ProcessError> {
        self.store
            .processes(ProcessKind::Transfer)
            .await?
            .into_iter()
            .map(|row| Transfer::from_row(row).map_err(Into::into))
            .collect()
    }

    /// Consumer: the provider's DSP base for a transfer under `agreement` — the address `given` (resolved to its 2025-1
    /// endpoint), else where the agreement was negotiated.
    pub async fn provider_address(
        &self,
        agreement: &AgreementRow,
        given: Option<&str>,
    ) -> Result<String, ProviderAddressError> {
        match given {
            Some(address) => {
                self.dsp.resolve_base(address).await.map_err(|e| ProviderAddressError::Unreachable(e.to_string()))
            }
            None => self
                .store
                .negotiation(&agreement.negotiation_id)
                .await?
                .map(|n| n.counter_party_address)
                .ok_or(ProviderAddressError::Unknown),
        }
    }

    /// Starts a transfer as consumer: the row and the request, in one statement.
    pub async fn start(&self, start: Start) -> Result<Transfer, ProcessError> {
        let mut transfer = Transfer::new(
            Role::Consumer,
            None,
            &start.agreement.provider_id,
            &start.provider_address,
            &start.agreement.id,
        );
        transfer.details = Details {
            asset_id: Some(start.agreement.asset_id.clone()),
            format: Some(start.format.clone()),
            destination: start.destination.clone(),
            auto_complete: start.auto_complete,
            job: start.job.clone(),
            ..Details::default()
        };
        let mut members = Map::new();
        members.insert("agreementId".into(), json!(start.agreement.id));
        members.insert("format".into(), json!(start.format));
        members.insert("callbackAddress".into(), json!(self.catalogue.service.endpoint_url));
        if let Some(destination) = &start.destination {
            members.insert("dataAddress".into(), destination.clone());
        }
        let request = OutboxMessage::new(
            format!("{}/transfers/request", transfer.row.counter_party_address),
            crate::process::message(Message::TransferRequest.type_name(), "-", &transfer.row.id, Json::Object(members)),
        );
        history(&mut transfer.details, "sent transfer request", State::Requested);
        self.write(&mut transfer, None, None, &[request], Outgoing::Keep).await?;
        self.get(&transfer.row.id).await
    }

    /// An operator's call on a transfer (`start`, `suspend`, `resume`, `complete`, `terminate`).
    pub async fn call(&self, id: &str, call: &str, body: &Json) -> Result<Transfer, ProcessError> {
        for _ in 0..8 {
            let transfer = self.get(id).await?;
            let kind =
                machine::call_message(transfer.role, transfer.state, call).ok_or_else(|| ProcessError::WrongState {
                    call: call.to_owned(),
                    state: transfer.state.name(),
                    allowed: machine::allowed_calls(transfer.role, transfer.state),
                })?;
            let before = transfer.row.clone();
            let held = transfer.held();
            let reason = body.get("reason").and_then(Json::as_str);
            let mut outbox = Vec::new();
            let mut next = match (transfer.role, kind) {
                (Role::Provider, Message::TransferStart) => {
                    // Releasing a held transfer: the agreement must still permit it.
                    let refusal = match transfer.state {
                        State::Requested => {
                            let (requester, action) = (&transfer.row.counter_party_id, transfer.action());
                            self.check_use(requester, transfer.agreement_id(), action, !transfer.is_compute())
                                .await
                                .err()
                        }
                        _ => None,
                    };
                    match refusal {
                        Some(refusal) => {
                            let mut refused = terminate(transfer, refusal.code, &refusal.reason, &mut outbox);
                            refused.details.decision = refusal.decision;
                            refused
                        }
                        None => self.provider_start(transfer, &mut outbox),
                    }
                }
                (_, Message::TransferTermination) => {
                    terminate(transfer, "Terminated", reason.unwrap_or("terminated by the operator"), &mut outbox)
                }
                (_, Message::TransferSuspension) => {
                    let reason = reason.unwrap_or("suspended by the operator");
                    let mut next = send(transfer, kind, json!({"code": "Suspended", "reason": [reason]}), &mut outbox);
                    next.details.edr_stale = true;
                    next
                }
                (Role::Consumer, Message::TransferStart) => {
                    let mut next = send(transfer, kind, json!({}), &mut outbox);
                    next.details.edr_stale = true;
                    next
                }
                (_, kind) => send(transfer, kind, json!({}), &mut outbox),
            };
            next.details.operator_calls.push(crate::process::operator_call(call, body, held));
            if self.write(&mut next, Some(&before), None, &outbox, Outgoing::Keep).await? {
                tracing::info!(transfer = id, call, state = next.state.name(), "operator call applied");
                return self.get(id).await;
            }
        }
        Err(BUSY)
    }

    /// Ends a transfer on this side (a delivery failure, a failed push, an agreement that no longer permits use), and
    /// tells the peer once.
    pub async fn terminate_after_failure(&self, id: &str, reason: &str) -> Result<(), ProcessError> {
        self.end(id, "DeliveryFailed", reason, true).await
    }

    /// One step on transfer `id`, computed from its current row: `step` answers the changed transfer (with what it queues
    /// in `outbox`), or `None` when there is nothing to do. Retried when another writer came first.
    async fn update(
        &self,
        id: &str,
        otherwise: Outgoing<'_>,
        mut step: impl FnMut(Transfer, &mut Vec<OutboxMessage>) -> Result<Option<Transfer>, ProcessError>,
    ) -> Result<Option<Transfer>, ProcessError> {
        for _ in 0..8 {
            let transfer = self.get(id).await?;
            let before = transfer.row.clone();
            let mut outbox = Vec::new();
            let Some(mut next) = step(transfer, &mut outbox)? else { return Ok(None) };
            if self.write(&mut next, Some(&before), None, &outbox, otherwise.clone()).await? {
                return Ok(Some(next));
            }
        }
        Err(BUSY)
    }

    /// Consumer: the provider reports COMPLETED for a transfer this side holds STARTED — its completion never arrived —
    /// or ended itself after the provider stopped answering (convergence). Answers whether it changed.
    pub async fn adopt_completed(&self, id: &str) -> Result<bool, ProcessError> {
        let changed = self
            .update(id, Outgoing::Clear, |mut transfer, _| {
                let gave_up = crate::process::gave_up(transfer.details.error_code.as_deref());
                let adoptable = transfer.state == State::Started || (transfer.state == State::Terminated && gave_up);
                if transfer.role != Role::Consumer || !adoptable {
                    return Ok(None);
                }
                transfer.details.error_code = None;
                transfer.details.error = None;
                transfer.state = State::Completed;
                transfer.row.state = State::Completed.name().into();
                Ok(Some(transfer))
            })
            .await?;
        if changed.is_some() {
            tracing::warn!(transfer = id, "completed: the provider reports COMPLETED, its completion never arrived");
        }
        Ok(changed.is_some())
    }

    /// Provider: a push is about to be delivered; answers its attempt number (recorded before the first byte).
    pub async fn push_begun(&self, id: &str) -> Result<u32, ProcessError> {
        let begun = self
            .update(id, Outgoing::Keep, |mut transfer, _| {
                if transfer.state != State::Started {
                    return Ok(None);
                }
                transfer.details.push_attempts += 1;
                transfer.stamp();
                Ok(Some(transfer))
            })
            .await?;
        begun.map(|t| t.details.push_attempts).ok_or(ProcessError::Illegal("the transfer is not started".into()))
    }

    /// Provider: a push finished. Delivered data completes the transfer; a failure terminates it.
    pub async fn push_finished(&self, id: &str, outcome: Result<u64, String>) -> Result<(), ProcessError> {
        self.update(id, Outgoing::Keep, |mut transfer, outbox| {
            if transfer.state != State::Started {
                return Ok(None);
            }
            Ok(Some(match &outcome {
                Ok(bytes) => {
                    transfer.details.pushed = true;
                    transfer.details.bytes = Some(*bytes);
                    send(transfer, Message::TransferCompletion, json!({}), outbox)
                }
                Err(reason) => terminate(transfer, "PushFailed", reason, outbox),
            }))
        })
        .await
        .map(|_| ())
    }

    /// Ends the transfer with `code` and `reason`; `final_notice` marks the message as a last notice never followed up.
    pub async fn end(&self, id: &str, code: &str, reason: &str, final_notice: bool) -> Result<(), ProcessError> {
        let ended = self
            .update(id, Outgoing::Clear, |transfer, outbox| {
                if transfer.state.is_terminal() {
                    return Ok(None);
                }
                let next = terminate(transfer, code, reason, outbox);
                outbox.iter_mut().for_each(|message| message.final_notice = final_notice);
                Ok(Some(next))
            })
            .await?;
        if ended.is_some() {
            tracing::warn!(transfer = id, code, reason, "transfer terminated");
        }
        Ok(())
    }

    /// Consumer: record a refreshed data address.
    pub async fn store_edr(&self, id: &str, address: Json) -> Result<Transfer, ProcessError> {
        let stored = self
            .update(id, Outgoing::Keep, |mut transfer, _| {
                transfer.details.edr = Some(address.clone());
                transfer.details.edr_stale = false;
                Ok(Some(transfer))
            })
            .await?;
        stored.ok_or(NOT_FOUND)
    }

    /// Consumer: forget the data address (EDC `DELETE /edrs/{id}`).
    pub async fn forget_edr(&self, id: &str) -> Result<(), ProcessError> {
        self.update(id, Outgoing::Keep, |mut transfer, _| {
            transfer.details.edr.take().ok_or(NOT_FOUND)?;
            Ok(Some(transfer))
        })
        .await
        .map(|_| ())
    }

    /// A message of transfer `id` reached the peer. When it was the provider's start message, a push transfer now sends
    /// its data (never before: the consumer accepts the completion only once STARTED).
    pub async fn delivered(&self, id: &str, message: &Json) {
        if message.get("@type").and_then(Json::as_str) != Some(Message::TransferStart.type_name()) {
            return;
        }
        match self.get(id).await {
            Ok(transfer)
                if transfer.role == Role::Provider
                    && transfer.state == State::Started
                    && transfer.is_push()
                    && !transfer.details.pushed =>
            {
                self.pushes.due(&transfer.row.id);
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(%error, transfer = id, "cannot read a transfer after its start was delivered")
            }
        }
    }

    /// Provider, at start-up and then now and again on one replica: pushes that a stop interrupted run again — those
    /// whose start message was delivered and whose data was not, that no replica runs now (the data plane takes each
    /// push's lease before it runs it).
    pub async fn resume_pushes(&self) {
        let started =
            self.store.processes_in(ProcessKind::Transfer, Role::Provider.name(), State::Started.name()).await;
        let undelivered: Vec<String> = match started {
            Ok(rows) => rows
                .into_iter()
                .filter_map(|row| Transfer::from_row(row).ok())
                .filter(|transfer| transfer.is_push() && !transfer.details.pushed)
                .map(|transfer| transfer.row.id)
                .collect(),
            Err(error) => return tracing::error!(%error, "cannot look for interrupted pushes"),
        };
        // A start still waiting for delivery is not interrupted: its push follows the delivery.
        let waiting = match self.store.with_outgoing(ProcessKind::Transfer, &undelivered).await {
            Ok(waiting) => waiting,
            Err(error) => return tracing::error!(%error, "cannot look for interrupted pushes"),
        };
        // A push running here or on another replica is left to it: the data plane takes each push's lease first.
        for id in undelivered.iter().filter(|id| !waiting.contains(id)) {
            tracing::debug!(transfer = %id, "a push not delivered yet is due");
            self.pushes.due(id);
        }
    }
}

/// Checks the members a message needs (the official schemas' required fields).
fn check_fields(kind: Message, message: &Json) -> Result<(), ProcessError> {
    let required = |field| crate::process::required(message, field).map(|_| ()).map_err(ProcessError::Invalid);
    required("consumerPid")?;
    match kind {
        Message::TransferRequest => {
            required("agreementId")?;
            required("format")?;
            required("callbackAddress")?;
        }
        _ => required("providerPid")?,
    }
    if let Some(address) = message.get("dataAddress")
        && (!address.is_object() || address.get("endpointType").and_then(Json::as_str).is_none())
    {
        return Err(ProcessError::Invalid("dataAddress must be a DataAddress with an endpointType".into()));
    }
    Ok(())
}

/// What a consumer asks for to start a transfer.
#[derive(Debug, Clone)]
pub struct Start {
    /// The provider's DSP base (the 2025-1 endpoint).
    pub provider_address: String,
    pub agreement: AgreementRow,
    pub format: String,
    /// Push: where the provider sends the data (a DSP `DataAddress`).
    pub destination: Option<Json>,
    pub auto_complete: bool,
    /// Compute: the job the session is for.
    pub job: Option<String>,
}

/// Why the consumer cannot tell where a transfer's provider is.
#[derive(Debug, thiserror::Error)]
pub enum ProviderAddressError {
    /// The address given does not answer as a DSP endpoint.
    #[error("{0}")]
    Unreachable(String),
    /// None was given and the agreement's negotiation is not known here.
    #[error("the provider's DSP address is not known")]
    Unknown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The dispatcher's outcomes for both kinds of process: a delivered start may begin a push; a refused or undeliverable
/// message ends its process.
impl crate::dispatch::Outcomes for Transfers {
    fn delivered<'a>(
        &'a self,
        kind: ProcessKind,
        id: &'a str,
        message: &'a Json,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            if kind == ProcessKind::Transfer {
                Transfers::delivered(self, id, message).await;
            }
        })
    }

    fn failed<'a>(
        &'a self,
        kind: ProcessKind,
        id: &'a str,
        reason: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<(), ProcessError>> {
        Box::pin(async move {
            match kind {
                ProcessKind::Negotiation => self.negotiations.terminate_after_failure(id, reason, true).await,
                ProcessKind::Transfer => self.terminate_after_failure(id, reason).await,
            }
        })
    }

    fn notice_refused<'a>(&'a self, kind: ProcessKind, id: &'a str) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(error) = self.after_refused_notice(kind, id).await {
                tracing::warn!(%error, process = id, "cannot reconcile after a refused notice");
            }
        })
    }
}

impl Transfers {
    /// A consumer that ended a process because the provider did not answer, and whose termination the provider
    /// refused, asks the provider for the process: a provider that reached FINALIZED (negotiation) or COMPLETED
    /// (transfer) had taken the message the consumer gave up on, and the consumer adopts its state (convergence).
    async fn after_refused_notice(&self, kind: ProcessKind, id: &str) -> Result<(), ProcessError> {
        let Some(row) = self.store.process(kind, id).await? else { return Ok(()) };
        let gave_up = row.body.get("errorCode").and_then(Json::as_str);
        if row.role != Role::Consumer.name() || row.state != "TERMINATED" || !crate::process::gave_up(gave_up) {
            return Ok(());
        }
        let crate::process::PeerSays::State(theirs) = crate::process::ask_provider(&self.dsp, kind, &row).await else {
            return Ok(());
        };
        let theirs = Some(theirs.as_str());
        match (kind, theirs) {
            (ProcessKind::Negotiation, Some("FINALIZED")) => {
                self.negotiations.adopt_finalized(id).await?;
            }
            (ProcessKind::Transfer, Some("COMPLETED")) => {
                self.adopt_completed(id).await?;
            }
            _ => {}
        }
        Ok(())
    }
}
