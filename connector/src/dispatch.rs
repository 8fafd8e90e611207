//! Delivers the DSP messages of negotiations and transfer processes. A message written together with a state change is leased in that same statement and
//! handed over here at once; retries, and messages whose process died holding the lease, are claimed from the store
//! (with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so that several processes never send the same message at once).
//!
//! A delivered message is cleared; a crash before that means a redelivery, which the receiver's idempotence answers.
//! A peer that refuses a message (4xx) or stays unreachable after the last attempt ends the process on this side,
//! with a termination notice to the peer. Failures retry with exponential back-off. A notice of an end (a
//! termination, the FINALIZED event, a completion: [`crate::dsp::announces_end`]) is retried past the attempt budget,
//! at most every `retry.max_delay`, until the peer takes or refuses it or the convergence deadline passes: the
//! process it ends changes no more here, so giving up early would leave the peer behind for good.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value as Json;
use tokio::sync::{Notify, Semaphore, mpsc, watch};

use futures_util::future::BoxFuture;
use tracing::Instrument;

use crate::identity::Identity;
use crate::process::ProcessError;
use crate::store::{ClaimedMessage, OUTBOX_LEASE_MS, ProcessKind, Processes};

/// The placeholder for the peer's process id in a message queued before the peer told it (replaced when sent).
pub const PEER_PID: &str = "{peerPid}";

/// What the process services do once the dispatcher is done with a message. The dispatcher sits below the
/// negotiation and transfer services and hands outcomes up through this.
pub trait Outcomes: Send + Sync + 'static {
    /// The peer took `message` of process `id`.
    fn delivered<'a>(&'a self, kind: ProcessKind, id: &'a str, message: &'a Json) -> BoxFuture<'a, ()>;
    /// The peer refused a message of process `id` or never answered: the process ends on this side, with one last
    /// notice to the peer.
    fn failed<'a>(&'a self, kind: ProcessKind, id: &'a str, reason: &'a str)
    -> BoxFuture<'a, Result<(), ProcessError>>;
    /// The peer refused a notice of an end of process `id`: it may have reached a final state of its own that this
    /// side, which gave up on it, never heard of.
    fn notice_refused<'a>(&'a self, kind: ProcessKind, id: &'a str) -> BoxFuture<'a, ()>;
}

/// What deliveries need: the store's outbox, our tokens for peers, the client, the retry settings, and where outcomes
/// go.
#[derive(Clone)]
pub struct Delivery {
    pub store: Processes,
    pub identity: Arc<Identity>,
    /// The connector's one client for peers: its trust and client certificate; a shorter timeout per request.
    pub http: reqwest::Client,
    pub retry: Retry,
    pub outcomes: Arc<dyn Outcomes>,
}

/// How many messages are claimed from the store at a time.
const BATCH: i64 = 64;
/// How many messages are in flight at once.
const CONCURRENCY: usize = 256;

/// A queue whose receiving end is taken once, by the one task that serves it: the dispatcher's messages handed over
/// at commit, the pushes the transfer service says are due.
pub struct Handoff<T> {
    sender: mpsc::UnboundedSender<T>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<T>>>,
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Handoff { sender, receiver: Mutex::new(Some(receiver)) }
    }
}

impl<T> Handoff<T> {
    pub fn send(&self, item: T) {
        let _ = self.sender.send(item);
    }

    /// The receiving end, for the one task that serves the queue (`None` once taken).
    pub fn take(&self) -> Option<mpsc::UnboundedReceiver<T>> {
        self.receiver.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The handle the negotiation and transfer services use to pass work to the dispatcher.
#[derive(Default)]
pub struct Dispatcher {
    wake: Notify,
    /// Each message with the span of the request that committed it: its delivery continues that trace.
    direct: Handoff<(ClaimedMessage, tracing::Span)>,
}

impl Dispatcher {
    /// After a write: send the message leased to us now.
    pub fn hand(&self, message: Option<ClaimedMessage>) {
        if let Some(message) = message {
            self.direct.send((message, tracing::Span::current()));
        }
    }

    /// Wakes the claim loop (e.g. at shutdown).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Retry settings of the dispatcher.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: i64,
    pub base: Duration,
    /// The longest delay between attempts.
    pub max_delay: Duration,
    /// How long a notice of an end is delivered, from the change that queued it.
    pub deadline: Duration,
}

impl Retry {
    /// The delay before attempt `attempts + 1`: doubling from `base`, at most `max_delay`.
    fn delay_ms(&self, attempts: i64) -> i64 {
        let delay = self.base.as_millis() as i64 * (1i64 << (attempts - 1).clamp(0, 20));
        delay.min(self.max_delay.as_millis() as i64)
    }
}

/// How long one delivery attempt may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs until `shutdown` turns true.
pub fn spawn(
    dispatcher: Arc<Dispatcher>,
    state: Delivery,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let http = state.http.clone();
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let mut receiver = dispatcher.direct.take().expect("one dispatcher per connector");
    tokio::spawn(async move {
        let spawn_delivery = |message: ClaimedMessage, parent: tracing::Span| {
            let (state, http, limit) = (state.clone(), http.clone(), limit.clone());
            let span = tracing::info_span!(parent: &parent, "delivery", kind = message.kind.name(), attempt = message.attempts);
            tokio::spawn(
                async move {
                    let _permit = limit.acquire_owned().await;
                    deliver(&state, &http, message).await;
                }
                .instrument(span),
            );
        };
        // Messages handed over at commit are sent at once; the store is only asked for due retries and expired
        // leases, on a timer (and when woken), so that the common path costs no extra write.
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some((message, parent)) = receiver.recv() => spawn_delivery(message, parent),
                _ = tick.tick() => claim_due(&state, &spawn_delivery).await,
                _ = dispatcher.wake.notified() => claim_due(&state, &spawn_delivery).await,
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
        }
        // Let in-flight deliveries finish.
        let _ = limit.acquire_many(CONCURRENCY as u32).await;
    })
}

/// Claims and sends every due message (in batches).
async fn claim_due(state: &Delivery, spawn_delivery: &impl Fn(ClaimedMessage, tracing::Span)) {
    loop {
        match state.store.claim_outbox(BATCH, OUTBOX_LEASE_MS).await {
            Ok(claimed) if !claimed.is_empty() => {
                let full = claimed.len() as i64 == BATCH;
                // A retry or a message taken over after a crash starts a trace of its own.
                claimed.into_iter().for_each(|message| spawn_delivery(message, tracing::Span::none()));
                if !full {
                    return;
                }
            }
            Ok(_) => return,
            Err(error) => {
                tracing::error!(%error, "cannot read the outbox");
                return;
            }
        }
    }
}

/// What the peer said.
enum Outcome {
    Delivered(Json),
    Refused(String),
    Failed(String),
    /// The peer's pid is not known yet: try again shortly (it counts as an attempt).
    NotYet,
}

async fn send(state: &Delivery, http: &reqwest::Client, message: &ClaimedMessage) -> Outcome {
    let (mut url, mut body) = (message.sent.url.clone(), message.sent.text().to_owned());
    let mut counter_party = message.counter_party.clone();
    // The placeholder stands in the URL and in top-level pid members only.
    let needs_peer = url.contains(PEER_PID)
        || message
            .sent
            .message()
            .as_object()
            .is_some_and(|members| members.values().any(|v| v.as_str() == Some(PEER_PID)));
    if needs_peer || counter_party.is_none() {
        let row = state.store.process(message.kind, &message.process_id).await.ok().flatten();
        counter_party = row.as_ref().map(|r| r.counter_party_id.clone());
        if needs_peer {
            let Some(peer) = row.and_then(|r| r.peer_pid) else { return Outcome::NotYet };
            url = url.replace(PEER_PID, &peer);
            let mut addressed = message.sent.message().clone();
            if let Json::Object(map) = &mut addressed {
                for value in map.values_mut() {
                    if value.as_str() == Some(PEER_PID) {
                        *value = Json::String(peer.clone());
                    }
                }
            }
            body = addressed.to_string();
        }
    }
    let Some(counter_party) = counter_party else {
        return Outcome::Failed(format!("{} {} has no counter-party", message.kind.name(), message.process_id));
    };
    let request = crate::telemetry::traced(http.post(&url))
        .timeout(DELIVERY_TIMEOUT)
        .header("Authorization", state.identity.authorization(&counter_party))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let text =
                crate::identity::limited::text(response, crate::identity::limited::MESSAGE).await.unwrap_or_default();
            if status.is_success() {
                Outcome::Delivered(serde_json::from_str(&text).unwrap_or(Json::Null))
            } else if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
                Outcome::Refused(format!(
                    "{url} answered HTTP {}: {}",
                    status.as_u16(),
                    text.chars().take(500).collect::<String>()
                ))
            } else {
                Outcome::Failed(format!("{url} answered HTTP {}", status.as_u16()))
            }
        }
        Err(error) => Outcome::Failed(format!("{url}: {}", hanse_core::error_chain(&error))),
    }
}

async fn deliver(state: &Delivery, http: &reqwest::Client, message: ClaimedMessage) {
    let retry = state.retry;
    let outcome = match send(state, http, &message).await {
        // A last notice, or a message whose attempts are spent, that still cannot be addressed never will be: the peer
        // never answered the message that would have told us its process id.
        Outcome::NotYet if message.attempts >= retry.attempts => {
            Outcome::Failed("the counter-party's process id is unknown, so the message cannot be addressed".into())
        }
        other => other,
    };
    let announcement = message.sent.final_notice || crate::dsp::announces_end(message.sent.message());
    let type_name = message.sent.message().get("@type").and_then(Json::as_str).unwrap_or("unknown");
    let type_label = crate::dsp::message_type_label(type_name);
    let result = match &outcome {
        Outcome::Delivered(_) => "delivered",
        Outcome::Refused(_) => "refused",
        Outcome::Failed(_) => "failed",
        Outcome::NotYet => "not_addressable_yet",
    };
    let meter = state.store.meter();
    meter.count("hanse_dsp_messages_sent_total", &[("type", type_label), ("outcome", result)]);
    match outcome {
        Outcome::Delivered(answer) => {
            // The answer to a first message carries the peer's pid.
            let peer = ["providerPid", "consumerPid"]
                .iter()
                .find_map(|field| answer.get(*field).and_then(Json::as_str).filter(|p| *p != message.process_id));
            if let Err(error) = state.store.complete_outgoing(&message, peer).await {
                tracing::error!(%error, "cannot record a delivery (the message will be sent again)");
            }
            tracing::debug!(process = %message.process_id, url = %message.sent.url, "delivered");
            state.outcomes.delivered(message.kind, &message.process_id, message.sent.message()).await;
        }
        Outcome::NotYet => {
            let _ = state.store.retry_outgoing(&message, chrono::Utc::now().timestamp_millis() + 200).await;
        }
        Outcome::Refused(reason) => {
            let _ = state.store.complete_outgoing(&message, None).await;
            tracing::warn!(process = %message.process_id, %reason, "the peer refused a message");
            if announcement {
                state.outcomes.notice_refused(message.kind, &message.process_id).await;
            }
            if !message.sent.final_notice
                && !announcement
                && let Err(error) = terminate_after_failure(
                    state,
                    &message,
                    &format!("the counter-party refused our message: {reason}"),
                )
                .await
            {
                tracing::error!(%error, "cannot terminate after a refusal");
            }
        }
        Outcome::Failed(reason) if announcement => {
            // Delivered until the deadline, counted from the change that queued it (a process that ended changes no
            // more, so its last change is that one).
            let queued =
                state.store.process(message.kind, &message.process_id).await.ok().flatten().map(|r| r.updated_at);
            let now = chrono::Utc::now().timestamp_millis();
            if queued.is_none_or(|at| now - at > retry.deadline.as_millis() as i64) {
                let _ = state.store.complete_outgoing(&message, None).await;
                tracing::warn!(process = %message.process_id, attempts = message.attempts, %reason, "giving up a notice: the convergence deadline passed");
            } else {
                meter.count("hanse_outbox_retries_total", &[("kind", message.kind.name())]);
                let _ = state.store.retry_outgoing(&message, now + retry.delay_ms(message.attempts)).await;
            }
        }
        Outcome::Failed(reason) => {
            if message.attempts >= retry.attempts {
                let _ = state.store.complete_outgoing(&message, None).await;
                tracing::warn!(process = %message.process_id, attempts = message.attempts, %reason, "giving up delivering a message");
                if !message.sent.final_notice
                    && let Err(error) = terminate_after_failure(
                        state,
                        &message,
                        &format!("the counter-party did not answer after {} attempts: {reason}", message.attempts),
                    )
                    .await
                {
                    tracing::error!(%error, "cannot terminate after a delivery failure");
                }
            } else {
                let delay = retry.delay_ms(message.attempts);
                tracing::debug!(process = %message.process_id, attempts = message.attempts, delay_ms = delay, %reason, "will retry");
                meter.count("hanse_outbox_retries_total", &[("kind", message.kind.name())]);
                let _ = state.store.retry_outgoing(&message, chrono::Utc::now().timestamp_millis() + delay).await;
            }
        }
    }
}

/// Ends the message's process on this side after a delivery failure, with one last notice to the peer.
async fn terminate_after_failure(state: &Delivery, message: &ClaimedMessage, reason: &str) -> Result<(), ProcessError> {
    state.outcomes.failed(message.kind, &message.process_id, reason).await
}
