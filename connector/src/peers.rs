//! The peer network (decision 0014): connectors learn of each other without a hub.
//!
//! Each connector keeps its peers in the store (`peers` table). It starts from its seeds, and every exchange interval
//! it asks each peer for its **signed peer list** (`GET /hanse/peers`, a JWT of type `hanse-peers+jwt` signed with the
//! peer's participant key, listed in its DID document as `HansePeerList`). An entry of such a list is taken in only
//! after it is verified here: its DID resolves, and the DSP endpoint its DID document names answers
//! `/.well-known/dspace-version` with a version Hanse speaks (a peer offering none is recorded as `incompatible`
//! with what it offers, not guessed at). A caller of our list is a candidate too, so knowing is mutual.
//!
//! The list is bounded (`peers.max`); learned peers silent for `peers.stale_after_seconds` are forgotten and are never
//! passed on once stale. Seeds and operator-added peers are pinned: kept when silent, shown as `unreachable`.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value as Json, json};
use tokio::sync::watch;

use crate::dsp::client::ClientError;
use crate::dsp::client::DspClient;
use crate::identity::Identity;
use crate::problem::PublicError;
use crate::store::{PeerRow, PeerStore, StoreError};

/// Where the signed peer list is served on the public listener.
pub const LIST_PATH: &str = "/hanse/peers";
/// The DID document service type naming it.
pub const SERVICE: &str = "HansePeerList";
/// The JWS `typ` of a signed peer list.
pub const LIST_TYP: &str = "hanse-peers+jwt";
/// How long a signed list is valid.
const LIST_LIFETIME_SECONDS: i64 = 300;
/// Peers contacted at the same time in an exchange round.
const CONCURRENCY: usize = 8;
/// Callers of our list verified at the same time (more are left for a later call).
const CALLERS_IN_FLIGHT: usize = 64;

/// Why a peer is not live: its status (`unreachable` or `incompatible`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotLive {
    pub status: &'static str,
    pub detail: String,
}

impl NotLive {
    fn unreachable(detail: impl Into<String>) -> NotLive {
        NotLive { status: "unreachable", detail: detail.into() }
    }
}

/// The peer network's service: our list of verified peers, its exchange with theirs, and the signed list we serve.
/// Cheap to clone.
#[derive(Clone)]
pub struct Peers {
    store: PeerStore,
    identity: Arc<Identity>,
    dsp: DspClient,
    settings: crate::config::PeersConfig,
    /// Our DSP endpoint, as our list names it.
    endpoint_url: String,
    /// Callers of our list being verified now.
    pending: Arc<Mutex<HashSet<String>>>,
}

impl Peers {
    pub fn new(
        store: PeerStore,
        identity: Arc<Identity>,
        dsp: DspClient,
        settings: crate::config::PeersConfig,
        endpoint_url: String,
    ) -> Peers {
        Peers { store, identity, dsp, settings, endpoint_url, pending: Arc::default() }
    }
}

/// The peer list's route on the public listener.
pub fn routes(peers: Peers) -> axum::Router {
    axum::Router::new().route(LIST_PATH, axum::routing::get(list_endpoint)).with_state(peers)
}

/// Verifies a peer: its DID resolves and the DSP endpoint of its DID document offers DSP 2025-1. Answers the
/// peer's versioned DSP base.
pub async fn check(state: &Peers, did: &str) -> Result<String, NotLive> {
    let document = state
        .identity
        .resolver()
        .resolve(did)
        .await
        .map_err(|e| NotLive::unreachable(format!("the DID does not resolve: {e}")))?;
    // DSP 2025-1 names the endpoint in a `DataService` entry: the version metadata, or the connector's root.
    let endpoint = match document.service("DataService") {
        Some(endpoint) => endpoint.to_owned(),
        None => crate::identity::did::document_url(did)
            .map_err(|e| NotLive::unreachable(e.to_string()))?
            .origin()
            .ascii_serialization(),
    };
    let root = match endpoint.strip_suffix("/.well-known/dspace-version") {
        Some(root) => root.to_owned(),
        None => reqwest::Url::parse(&endpoint)
            .map(|url| url.origin().ascii_serialization())
            .map_err(|e| NotLive::unreachable(format!("its DataService endpoint `{endpoint}` is not a URL: {e}")))?,
    };
    match state.dsp.resolve_base(&root).await {
        Ok(base) => Ok(base),
        Err(ClientError::Incompatible { offered, .. }) => Err(NotLive {
            status: "incompatible",
            detail: format!("offers DSP {}; Hanse speaks {}", offered.join(", "), crate::dsp::client::VERSION),
        }),
        Err(error) => Err(NotLive::unreachable(error.to_string())),
    }
}

/// The DID behind a seed or an operator's `add`: a DID as it is, a URL through its `/.well-known/did.json`.
pub async fn did_of(state: &Peers, did_or_url: &str) -> Result<String, String> {
    if did_or_url.starts_with("did:") {
        return Ok(did_or_url.to_owned());
    }
    state
        .identity
        .discover(did_or_url)
        .await
        .ok_or_else(|| format!("{did_or_url} names no participant in a /.well-known/did.json that its DID resolves to"))
}

/// The operator adds (or pins) a peer. A DID that cannot be found is refused; one that resolves is kept, with its
/// status (a peer down now is kept as `unreachable`).
pub async fn add(state: &Peers, did_or_url: &str) -> Result<PeerRow, String> {
    let did = did_of(state, did_or_url).await?;
    if did == state.identity.did() {
        return Err(format!("{did} is this connector"));
    }
    state.identity.resolver().resolve(&did).await.map_err(|e| format!("{did} does not resolve: {e}"))?;
    let mut peer =
        state.store.peer(&did).await.map_err(|e| e.to_string())?.unwrap_or_else(|| PeerRow::new(&did, "manual"));
    peer.source = "manual".into();
    peer.last_attempt = crate::store::now_millis();
    match check(state, &did).await {
        Ok(address) => {
            peer.address = address;
            peer.status = "live".into();
            peer.detail.clear();
            peer.last_seen = peer.last_attempt;
            peer.failures = 0;
        }
        Err(not_live) => {
            peer.status = not_live.status.into();
            peer.detail = not_live.detail;
            peer.failures += 1;
        }
    }
    state.store.add_peer(&peer).await.map_err(|e| e.to_string())?;
    Ok(peer)
}

/// What one exchange round did.
#[derive(Debug, Default, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Round {
    /// Peers whose list was read.
    pub contacted: Vec<String>,
    /// Peers that did not answer (DID and reason).
    pub failed: Vec<(String, String)>,
    /// Peers learned this round.
    pub learned: Vec<String>,
    /// Learned peers forgotten this round.
    pub aged_out: Vec<String>,
}

/// Whether a peer is due for contact: at once after a success, then waits doubling from the interval (at most a
/// stale period) after each failure.
fn due(peer: &PeerRow, now: i64, interval_ms: i64, stale_ms: i64) -> bool {
    if peer.failures == 0 || peer.last_attempt == 0 {
        return true;
    }
    let wait = interval_ms.saturating_mul(1i64 << peer.failures.clamp(0, 20)).min(stale_ms);
    now >= peer.last_attempt + wait
}

/// One exchange round: seeds resolved, each due peer's signed list read, new entries verified and learned, silent
/// learned peers forgotten.
pub async fn exchange_round(state: &Peers) -> Result<Round, StoreError> {
    let config = &state.settings;
    let interval_ms = (config.exchange_interval_seconds.max(1) * 1000) as i64;
    let stale_ms = (config.stale_after_seconds * 1000) as i64;
    for seed in &config.seeds {
        match did_of(state, seed).await {
            Ok(did) if did != state.identity.did() => state.store.seed_peer(&did).await?,
            Ok(_) => {}
            Err(reason) => tracing::info!(seed, reason, "seed peer not found yet"),
        }
    }
    let now = crate::store::now_millis();
    let peers = state.store.peers().await?;
    let mut known: HashSet<String> = peers.iter().map(|p| p.did.clone()).collect();
    known.insert(state.identity.did().to_owned());
    let due_peers: Vec<PeerRow> = peers.into_iter().filter(|p| due(p, now, interval_ms, stale_ms)).collect();
    let outcomes: Vec<(PeerRow, ListRead)> = futures_util::stream::iter(due_peers.into_iter().map(|peer| async move {
        let outcome = read_list(state, &peer).await;
        (peer, outcome)
    }))
    .buffer_unordered(CONCURRENCY)
    .collect()
    .await;
    let mut round = Round::default();
    let mut candidates = BTreeSet::new();
    for (peer, outcome) in outcomes {
        match outcome {
            Ok((address, entries)) => {
                state.store.record_peer_contact(&peer.did, Some(&address), "live", "").await?;
                round.contacted.push(peer.did.clone());
                for entry in entries {
                    if !known.contains(&entry.did) && entry.last_seen >= now - stale_ms {
                        candidates.insert(entry.did);
                    }
                }
            }
            Err(not_live) => {
                state.store.record_peer_contact(&peer.did, None, not_live.status, &not_live.detail).await?;
                round.failed.push((peer.did.clone(), not_live.detail));
            }
        }
    }
    // Candidates are verified concurrently, like the contacts above, and recorded one by one (the bound is counted
    // in each recording's transaction).
    let verified: Vec<Option<PeerRow>> = futures_util::stream::iter(
        candidates.into_iter().map(|did| async move { verify_candidate(state, &did).await }),
    )
    .buffer_unordered(CONCURRENCY)
    .collect()
    .await;
    for peer in verified.into_iter().flatten() {
        if record_learned(state, &peer).await? {
            round.learned.push(peer.did);
        }
    }
    round.aged_out = state.store.age_out_peers(now - stale_ms).await?;
    for did in &round.aged_out {
        tracing::info!(peer = %did, "peer forgotten: silent for longer than peers.stale_after_seconds");
    }
    Ok(round)
}

/// Verifies a candidate: live, or incompatible (so that it is reported). A candidate that cannot be reached is
/// `None`: not recorded.
async fn verify_candidate(state: &Peers, did: &str) -> Option<PeerRow> {
    let mut peer = PeerRow::new(did, "learned");
    peer.last_attempt = crate::store::now_millis();
    match check(state, did).await {
        Ok(address) => {
            peer.address = address;
            peer.status = "live".into();
            peer.last_seen = peer.last_attempt;
        }
        Err(not_live) if not_live.status == "incompatible" => {
            peer.status = not_live.status.into();
            peer.detail = not_live.detail;
        }
        Err(not_live) => {
            tracing::debug!(peer = did, reason = %not_live.detail, "candidate peer not verified");
            return None;
        }
    }
    Some(peer)
}

/// Records a verified candidate as learned, within `peers.max`; `true` if it was taken in.
async fn record_learned(state: &Peers, peer: &PeerRow) -> Result<bool, StoreError> {
    let taken = state.store.learn_peer(peer, state.settings.max).await?;
    if taken {
        tracing::info!(peer = %peer.did, status = %peer.status, "peer learned");
    } else {
        tracing::warn!(peer = %peer.did, max = state.settings.max, "peer list full: a new peer was not taken in");
    }
    Ok(taken)
}

/// Verifies a candidate and records it as learned. `true` if it was taken in.
async fn learn(state: &Peers, did: &str) -> Result<bool, StoreError> {
    match verify_candidate(state, did).await {
        Some(peer) => record_learned(state, &peer).await,
        None => Ok(false),
    }
}

/// A peer's DSP base and list entries, or why it is not live.
type ListRead = Result<(String, Vec<Entry>), NotLive>;

/// One entry of a peer list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub did: String,
    /// Milliseconds.
    pub last_seen: i64,
}

/// Reads a peer's signed list: verified against the peer's DID, within its validity. Checks the peer first if it is
/// not live yet. Answers the peer's DSP base and the entries.
async fn read_list(state: &Peers, peer: &PeerRow) -> ListRead {
    let address = if peer.status == "live" && !peer.address.is_empty() {
        peer.address.clone()
    } else {
        check(state, &peer.did).await?
    };
    let document = state
        .identity
        .resolver()
        .resolve(&peer.did)
        .await
        .map_err(|e| NotLive::unreachable(format!("the DID does not resolve: {e}")))?;
    let url = match document.service(SERVICE) {
        Some(url) => url.to_owned(),
        None => {
            // Not a Hanse connector, or one without the exchange: it is live, with nothing to tell.
            return Ok((address, Vec::new()));
        }
    };
    let response = state
        .dsp
        .http()
        .get(&url)
        .header(header::AUTHORIZATION, state.identity.authorization(&peer.did))
        .send()
        .await
        .map_err(|e| NotLive::unreachable(format!("{url}: {}", hanse_core::error_chain(&e))))?;
    if !response.status().is_success() {
        return Err(NotLive::unreachable(format!("{url} answered HTTP {}", response.status().as_u16())));
    }
    let jwt = crate::identity::limited::text(response, crate::identity::limited::DOCUMENT)
        .await
        .map_err(|e| NotLive::unreachable(format!("{url}: {e}")))?;
    let claims = crate::identity::verify_signed_with(state.identity.resolver(), jwt.trim(), LIST_TYP, &peer.did)
        .await
        .map_err(|e| NotLive::unreachable(format!("its peer list does not verify: {e}")))?;
    let now = chrono::Utc::now().timestamp();
    if claims.get("iss").and_then(Json::as_str) != Some(peer.did.as_str())
        || claims.get("exp").and_then(Json::as_i64).is_none_or(|exp| exp < now)
    {
        return Err(NotLive::unreachable("its peer list is expired or issued by someone else"));
    }
    let entries = claims
        .get("peers")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let did = entry.get("did")?.as_str()?.to_owned();
            let last_seen = entry
                .get("lastSeen")
                .and_then(Json::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())?
                .timestamp_millis();
            did.starts_with("did:").then_some(Entry { did, last_seen })
        })
        .collect();
    Ok((address, entries))
}

/// Our signed peer list: ourselves and every live peer seen within the stale period.
pub async fn signed_list(state: &Peers) -> Result<String, StoreError> {
    let now = chrono::Utc::now();
    let cutoff = now.timestamp_millis() - (state.settings.stale_after_seconds * 1000) as i64;
    let mut entries = vec![json!({
        "did": state.identity.did(),
        "endpoint": state.endpoint_url,
        "lastSeen": crate::process::rfc3339_millis(now.timestamp_millis()),
    })];
    for peer in state.store.peers().await? {
        if peer.status == "live" && peer.last_seen >= cutoff {
            entries.push(json!({
                "did": peer.did,
                "endpoint": peer.address,
                "lastSeen": crate::process::rfc3339_millis(peer.last_seen),
            }));
        }
    }
    let payload = json!({
        "iss": state.identity.did(),
        "iat": now.timestamp(),
        "exp": now.timestamp() + LIST_LIFETIME_SECONDS,
        "peers": entries,
    });
    Ok(state.identity.keys().sign(LIST_TYP, &[], &payload))
}

/// `GET /hanse/peers`: our signed list, for a verified caller; the caller becomes a candidate peer.
pub async fn list_endpoint(State(state): State<Peers>, headers: HeaderMap) -> Response {
    let caller = match state.identity.verify_request(&headers).await {
        Ok(caller) => caller.participant,
        Err(reason) => {
            tracing::info!(%reason, "peer list request refused");
            return PublicError::hanse(StatusCode::UNAUTHORIZED, "a self-issued token is required").into_response();
        }
    };
    learn_caller(&state, caller).await;
    match signed_list(&state).await {
        Ok(jwt) => {
            ([(header::CONTENT_TYPE, "application/jwt"), (header::CACHE_CONTROL, "no-store")], jwt).into_response()
        }
        Err(error) => {
            tracing::error!(%error, "cannot read the peer list");
            PublicError::hanse(StatusCode::INTERNAL_SERVER_ERROR, "the peer list cannot be read now").into_response()
        }
    }
}

/// A caller we do not know yet is verified and learned in the background.
async fn learn_caller(state: &Peers, caller: String) {
    if caller == state.identity.did() || !matches!(state.store.peer(&caller).await, Ok(None)) {
        return;
    }
    {
        let mut pending = state.pending.lock().expect("the pending set is never poisoned");
        if pending.len() >= CALLERS_IN_FLIGHT || !pending.insert(caller.clone()) {
            return;
        }
    }
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(error) = learn(&state, &caller).await {
            tracing::warn!(%error, peer = caller, "cannot record a calling peer");
        }
        state.pending.lock().expect("the pending set is never poisoned").remove(&caller);
    });
}

/// Exchanges peer lists every `peers.exchange_interval_seconds` until shutdown (a first round at once).
pub fn spawn(state: Peers, mut signal: watch::Receiver<bool>) {
    let seconds = state.settings.exchange_interval_seconds;
    if seconds == 0 {
        return;
    }
    tokio::spawn(async move {
        loop {
            if let Err(error) = exchange_round(&state).await {
                tracing::error!(%error, "peer exchange round failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(seconds)) => {}
                _ = signal.changed() => return,
            }
        }
    });
}
