//! Delivers the outbox: claims due messages (the oldest of each negotiation, under a lease so that several processes
//! on one PostgreSQL never send the same message twice at once), sends them, and on failure retries with exponential
//! back-off. A peer that refuses a message (4xx) or stays unreachable after the last attempt ends the negotiation on
//! this side, with one last termination notice to the peer. Pending messages survive a restart.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::PEER_PID;
use crate::identity;
use crate::server::Shared;
use crate::store::ClaimedMessage;

/// How long a claimed message stays reserved for the process that claimed it.
const LEASE_MS: i64 = 15_000;
/// How many messages are sent at once.
const BATCH: i64 = 64;

/// Runs until `shutdown` turns true.
pub fn spawn(state: Shared, notify: Arc<Notify>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("the HTTP client builds");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let claimed = match state.store.claim_outbox(BATCH, LEASE_MS).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::error!(%error, "cannot read the outbox");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let mut sending = JoinSet::new();
            for message in claimed {
                let (state, http) = (state.clone(), http.clone());
                sending.spawn(async move { deliver(&state, &http, message).await });
            }
            while sending.join_next().await.is_some() {}
        }
    })
}

/// What the peer said.
enum Outcome {
    Delivered(Json),
    Refused(String),
    Failed(String),
    /// The peer's pid is not known yet: try again shortly, without counting it.
    NotYet,
}

async fn send(state: &Shared, http: &reqwest::Client, message: &ClaimedMessage) -> Outcome {
    let (mut url, mut body) = (message.url.clone(), message.message.clone());
    if url.contains(PEER_PID) || body.to_string().contains(PEER_PID) {
        let peer = match state.store.negotiation(&message.negotiation_id).await {
            Ok(Some(row)) => row.peer_pid,
            _ => None,
        };
        let Some(peer) = peer else { return Outcome::NotYet };
        url = url.replace(PEER_PID, &peer);
        if let Json::Object(map) = &mut body {
            for value in map.values_mut() {
                if value.as_str() == Some(PEER_PID) {
                    *value = Json::String(peer.clone());
                }
            }
        }
    }
    let counter_party =
        state.store.negotiation(&message.negotiation_id).await.ok().flatten().map(|n| n.counter_party_id);
    let request = http
        .post(&url)
        .header(
            "Authorization",
            identity::outgoing_authorization(&state.config.participant.id, counter_party.as_deref()),
        )
        .json(&body);
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
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
        Err(error) => Outcome::Failed(format!("{url}: {error}")),
    }
}

async fn deliver(state: &Shared, http: &reqwest::Client, message: ClaimedMessage) {
    let retry = state.retry;
    match send(state, http, &message).await {
        Outcome::Delivered(answer) => {
            let _ = state.store.remove_outbox(message.id).await;
            // The answer to a first message carries the peer's pid.
            let peer_field =
                if answer.get("providerPid").and_then(Json::as_str).is_some_and(|p| p != message.negotiation_id) {
                    "providerPid"
                } else {
                    "consumerPid"
                };
            if let Some(peer) = answer.get(peer_field).and_then(Json::as_str).filter(|p| *p != message.negotiation_id) {
                let _ = state.store.set_peer_pid(&message.negotiation_id, peer).await;
            }
            tracing::debug!(negotiation = %message.negotiation_id, url = %message.url, "delivered");
        }
        Outcome::NotYet => {
            let _ = state.store.retry_outbox(message.id, chrono::Utc::now().timestamp_millis() + 200).await;
        }
        Outcome::Refused(reason) => {
            let _ = state.store.remove_outbox(message.id).await;
            tracing::warn!(negotiation = %message.negotiation_id, %reason, "the peer refused a message");
            if !message.final_notice
                && let Err(error) = super::terminate_after_failure(
                    state,
                    &message.negotiation_id,
                    &format!("the counter-party refused our message: {reason}"),
                    true,
                )
                .await
            {
                tracing::error!(%error, "cannot terminate after a refusal");
            }
        }
        Outcome::Failed(reason) => {
            if message.attempts >= retry.attempts || message.final_notice {
                let _ = state.store.remove_outbox(message.id).await;
                tracing::warn!(negotiation = %message.negotiation_id, attempts = message.attempts, %reason, "giving up delivering a message");
                if !message.final_notice
                    && let Err(error) = super::terminate_after_failure(
                        state,
                        &message.negotiation_id,
                        &format!("the counter-party did not answer after {} attempts: {reason}", message.attempts),
                        true,
                    )
                    .await
                {
                    tracing::error!(%error, "cannot terminate after a delivery failure");
                }
            } else {
                let delay = retry.base.as_millis() as i64 * (1i64 << (message.attempts - 1).clamp(0, 16));
                let delay = delay.min(300_000);
                tracing::debug!(negotiation = %message.negotiation_id, attempts = message.attempts, delay_ms = delay, %reason, "will retry");
                let _ = state.store.retry_outbox(message.id, chrono::Utc::now().timestamp_millis() + delay).await;
            }
        }
    }
}
