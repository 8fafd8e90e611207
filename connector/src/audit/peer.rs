//! What peers see of the audit log and do with it, over the Hanse extension endpoints of the public listener
//! (`/hanse/audit/...`, listed in the DID document as the `HanseAuditLog` service):
//!
//! - `GET head` and `GET consistency?from=&to=`: the signed tree head and consistency proofs, open to anyone (hashes
//!   only);
//! - `POST receipts`: a counter-party's receipt for its log entry of an agreement we share. The sender proves who it
//!   is with its self-issued token; the receipt is checked (signature, inclusion, the agreement is ours with it and
//!   the same in both logs) before it is kept.
//!
//! Two background loops: [`send_receipts`] delivers the receipts this side owes (queued in the transaction that
//! finalized the agreement, retried with back-off), and [`witness`] fetches peers' heads, checks each is consistent
//! with the last one seen and countersigns it; an inconsistency is appended to our own log and counted.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio::sync::watch;

use super::head::{self, TreeHead};
use super::merkle::{self, from_hex, to_hex};
use super::verify::Receipt;
use super::{AuditLog, Event, ProofError};
use crate::problem::PublicError;
use crate::store::{AuditFilter, Witnessed, now_millis};

/// The DID document service type of the extension endpoints.
pub const SERVICE: &str = "HanseAuditLog";

/// Where our extension endpoints live.
pub fn service_url(public_url: &str) -> String {
    format!("{}/hanse/audit", public_url.trim_end_matches('/'))
}

/// The extension endpoints, serving `log`.
pub fn routes(log: AuditLog) -> Router {
    Router::new()
        .route("/hanse/audit/head", get(head_endpoint))
        .route("/hanse/audit/consistency", get(consistency_endpoint))
        .route("/hanse/audit/receipts", post(receive_receipt))
        .with_state(log)
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    PublicError::hanse(status, message).into_response()
}

impl From<ProofError> for PublicError {
    fn from(error: ProofError) -> Self {
        match error {
            ProofError::Range(message) => PublicError::hanse(StatusCode::BAD_REQUEST, message),
            ProofError::Store(error) => {
                tracing::error!(%error, "audit log read failed");
                PublicError::hanse(StatusCode::SERVICE_UNAVAILABLE, "the audit log cannot be read now")
            }
        }
    }
}

/// The caller of a log endpoint, verified by its self-issued token (any participant: witnesses need no membership),
/// or the 401 to answer.
async fn caller(state: &AuditLog, headers: &HeaderMap) -> Result<String, Response> {
    state.identity.verify_request(headers).await.map(|verified| verified.participant).map_err(|error| {
        tracing::info!(%error, "audit log request without a valid token");
        problem(StatusCode::UNAUTHORIZED, "a valid self-issued token is required")
    })
}

async fn head_endpoint(State(state): State<AuditLog>, headers: HeaderMap) -> Response {
    if let Err(refusal) = caller(&state, &headers).await {
        return refusal;
    }
    match state.current_head().await {
        Ok(head) => axum::Json(head.to_json()).into_response(),
        Err(error) => PublicError::from(ProofError::Store(error)).into_response(),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Sizes {
    pub from: u64,
    pub to: u64,
}

/// A consistency proof as the APIs show it.
pub async fn consistency_json(state: &AuditLog, sizes: &Sizes) -> Result<Json, ProofError> {
    let proof = super::consistency_proof(&state.store, sizes.from, sizes.to).await?;
    Ok(json!({"from": sizes.from, "to": sizes.to, "proof": proof.iter().map(to_hex).collect::<Vec<_>>()}))
}

async fn consistency_endpoint(
    State(state): State<AuditLog>,
    headers: HeaderMap,
    Query(sizes): Query<Sizes>,
) -> Response {
    if let Err(refusal) = caller(&state, &headers).await {
        return refusal;
    }
    match consistency_json(&state, &sizes).await {
        Ok(proof) => axum::Json(proof).into_response(),
        Err(error) => PublicError::from(error).into_response(),
    }
}

async fn receive_receipt(State(state): State<AuditLog>, headers: HeaderMap, body: Bytes) -> Response {
    let sender = match caller(&state, &headers).await {
        Ok(sender) => sender,
        Err(refusal) => return refusal,
    };
    let receipt: Receipt = match serde_json::from_slice(&body) {
        Ok(receipt) => receipt,
        Err(error) => return problem(StatusCode::BAD_REQUEST, format!("not a receipt: {error}")),
    };
    match check_receipt(&state, &sender, &receipt).await {
        Ok(()) => {}
        Err((status, message)) => {
            tracing::warn!(sender, agreement = receipt.agreement_id, %message, "receipt refused");
            return problem(status, message);
        }
    }
    let text = serde_json::to_string(&receipt).expect("a receipt serialises");
    match state.store.keep_receipt(&receipt.agreement_id, &sender, &text).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot keep a receipt");
            problem(StatusCode::SERVICE_UNAVAILABLE, "the receipt cannot be kept now")
        }
    }
}

/// A receipt is kept only if it is the sender's signed record of an agreement we share with it, identical to ours.
async fn check_receipt(state: &AuditLog, sender: &str, receipt: &Receipt) -> Result<(), (StatusCode, String)> {
    let bad = |message: String| (StatusCode::BAD_REQUEST, message);
    let agreement = state.processes.agreement(&receipt.agreement_id).await.ok().flatten();
    let Some(agreement) = agreement.filter(|a| a.provider_id == sender || a.consumer_id == sender) else {
        return Err((StatusCode::NOT_FOUND, format!("there is no agreement `{}` with you", receipt.agreement_id)));
    };
    let head = head::read(&receipt.tree_head).map_err(bad)?;
    if head.log != sender {
        return Err(bad(format!("the tree head is {}'s, not the sender's", head.log)));
    }
    let key = state.identity.resolver().key(sender, &head.kid).await.map_err(|e| bad(e.to_string()))?;
    receipt.check(&key.jwk).map_err(bad)?;
    let entry: Json = serde_json::from_str(&receipt.entry).map_err(|_| bad("the entry is not JSON".into()))?;
    if entry.get("agreementDigest").and_then(Json::as_str) != Some(&super::canonical_digest(&agreement.policy)) {
        return Err(bad("the entry records an agreement that differs from ours".into()));
    }
    Ok(())
}

/// The receipt this side gives for its entry of an agreement: the current signed head and the inclusion proof.
pub async fn receipt_for(state: &AuditLog, agreement_id: &str) -> Result<Option<Receipt>, ProofError> {
    let filter = AuditFilter {
        agreement: Some(agreement_id.to_owned()),
        kind: Some("contract.agreement".into()),
        limit: 1,
        ..AuditFilter::default()
    };
    let Some(entry) = state.store.audit_entries(&filter).await?.pop() else { return Ok(None) };
    let head = state.current_head().await?;
    let proof = super::inclusion_proof(&state.store, entry.seq as u64, head.size).await?;
    Ok(Some(Receipt {
        agreement_id: agreement_id.to_owned(),
        index: entry.seq as u64,
        entry: entry.entry,
        tree_head: head.jws,
        inclusion_proof: proof.iter().map(to_hex).collect(),
    }))
}

/// A peer's extension endpoint, from its DID document.
async fn peer_service(state: &AuditLog, peer: &str) -> Result<String, String> {
    let document = state.identity.resolver().resolve(peer).await.map_err(|e| e.to_string())?;
    document.service(SERVICE).map(str::to_owned).ok_or_else(|| format!("{peer} lists no {SERVICE} service"))
}

/// Delivers one owed receipt.
async fn deliver(state: &AuditLog, agreement_id: &str, peer: &str) -> Result<(), String> {
    let receipt = receipt_for(state, agreement_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the log has no entry of agreement {agreement_id}"))?;
    let url = format!("{}/receipts", peer_service(state, peer).await?);
    let response = state
        .http
        .post(&url)
        .header("Authorization", state.identity.authorization(peer))
        .json(&receipt)
        .send()
        .await
        .map_err(|e| format!("{url}: {}", hanse_core::error_chain(&e)))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {}: {}", response.status(), crate::identity::limited::error_text(response).await))
    }
}

/// Sends the receipts this side owes, until shutdown.
pub fn send_receipts(state: AuditLog, mut signal: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            match state.store.receipts_due(16).await {
                Ok(due) => {
                    for (agreement, peer, attempts) in due {
                        let outcome = deliver(&state, &agreement, &peer).await;
                        let delay = Duration::from_secs(2u64.saturating_pow(attempts.clamp(0, 12) as u32).min(3_600));
                        if let Err(reason) = &outcome {
                            tracing::info!(
                                agreement,
                                peer,
                                reason,
                                attempts = attempts + 1,
                                "receipt not delivered yet"
                            );
                        }
                        let next_at = now_millis() + delay.as_millis() as i64;
                        if let Err(error) = state.store.receipt_sent(&agreement, outcome.is_ok(), next_at).await {
                            tracing::error!(%error, "cannot record a receipt's delivery");
                        }
                    }
                }
                Err(error) => tracing::error!(%error, "cannot read the receipts due"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = signal.changed() => return,
            }
        }
    });
}

/// Witnesses every peer's log, every `interval`, until shutdown (never, when `interval` is zero).
pub fn witness(state: AuditLog, interval: Duration, mut signal: watch::Receiver<bool>) {
    if interval.is_zero() {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = signal.changed() => return,
            }
            witness_round(&state).await;
        }
    });
}

/// One round: every counter-party we have negotiated with, and the configured peers.
pub async fn witness_round(state: &AuditLog) -> Vec<Witnessed> {
    let mut peers = state.store.counter_parties().await.unwrap_or_default();
    peers.extend(state.witness.iter().cloned());
    peers.sort();
    peers.dedup();
    peers.retain(|p| p != state.identity.did());
    let mut seen = Vec::new();
    for peer in peers {
        match witness_peer(state, &peer).await {
            Ok(witnessed) => seen.push(witnessed),
            Err(reason) => tracing::info!(peer, reason, "cannot witness a peer's log now"),
        }
    }
    seen
}

/// Fetches a peer's head, checks it against the last one seen, and countersigns it or records the inconsistency.
async fn witness_peer(state: &AuditLog, peer: &str) -> Result<Witnessed, String> {
    let service = peer_service(state, peer).await?;
    let head = get_json(state, peer, &format!("{service}/head")).await?;
    let jws = head.get("signature").and_then(Json::as_str).ok_or("the head carries no signature")?;
    let read = head::read(jws)?;
    if read.log != peer {
        return Err(format!("the head is signed for {}, not {peer}", read.log));
    }
    let key = state.identity.resolver().key(peer, &read.kid).await.map_err(|e| e.to_string())?;
    let head = head::verify(jws, &key.jwk)?;
    let previous = state.store.last_witnessed(peer).await.map_err(|e| e.to_string())?;
    let problem = match &previous {
        None => None,
        Some(last) => check_against(state, peer, &service, last, &head).await?,
    };
    let now = now_millis();
    let witnessed = Witnessed {
        peer: peer.to_owned(),
        size: head.size as i64,
        root: head.root.to_vec(),
        tree_head: head.jws.clone(),
        cosignature: problem.is_none().then(|| head::cosign(&state.identity.keys(), &head, now)),
        problem: problem.clone(),
        seen_at: now,
    };
    if let Some(problem) = &problem {
        state.inconsistencies.fetch_add(1, Ordering::Relaxed);
        tracing::error!(peer, problem, "a peer's audit log is inconsistent with what it showed before");
        let last = previous.as_ref().expect("a problem needs an earlier head");
        let details = json!({
            "peer": peer,
            "problem": problem,
            "seen": {"size": last.size, "rootHash": hanse_core::encode::hex(&last.root), "treeHead": hanse_core::encode::digest(&json!(last.tree_head))},
            "now": {"size": head.size, "rootHash": to_hex(&head.root), "treeHead": hanse_core::encode::digest(&json!(head.jws))},
        });
        let event = Event::new("audit.inconsistency", details).participant(Some(peer));
        state.store.append_audit(vec![event]).await.map_err(|e| e.to_string())?;
    }
    state.store.keep_witnessed(&witnessed).await.map_err(|e| e.to_string())?;
    Ok(witnessed)
}

/// A peer's JSON answer to a `GET` signed with our self-issued token for it, or why there is none.
async fn get_json(state: &AuditLog, peer: &str, url: &str) -> Result<Json, String> {
    let response = state
        .http
        .get(url)
        .header("Authorization", state.identity.authorization(peer))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("{url}: {}", hanse_core::error_chain(&e)))?;
    crate::identity::limited::json(response, crate::identity::limited::MESSAGE).await.map_err(|e| format!("{url}: {e}"))
}

/// What is wrong with `head` given the last consistent head `last` of the same log, if anything. A proof that cannot
/// be fetched is no verdict: the peer is witnessed again next round.
async fn check_against(
    state: &AuditLog,
    peer: &str,
    service: &str,
    last: &Witnessed,
    head: &TreeHead,
) -> Result<Option<String>, String> {
    let (old, new) = (last.size as u64, head.size);
    let old_root: merkle::Hash = last.root.as_slice().try_into().map_err(|_| "a witnessed root is not 32 bytes")?;
    if new < old {
        return Ok(Some(format!("the log shrank from {old} to {new} entries: it was rolled back")));
    }
    if new == old {
        return Ok((old_root != head.root).then(|| format!("two different roots for {old} entries: a split view")));
    }
    if old == 0 {
        return Ok(None);
    }
    let url = format!("{service}/consistency?from={old}&to={new}");
    let answer = get_json(state, peer, &url).await?;
    let proof: Option<Vec<merkle::Hash>> = answer
        .get("proof")
        .and_then(Json::as_array)
        .and_then(|hashes| hashes.iter().map(|h| h.as_str().and_then(from_hex)).collect());
    Ok(match proof {
        Some(proof) if merkle::verify_consistency(old, &old_root, new, &head.root, &proof) => None,
        _ => Some(format!(
            "the log of {new} entries does not extend the one of {old} seen before: history was rewritten"
        )),
    })
}
