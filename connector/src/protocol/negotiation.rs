//! DSP 2025-1 contract negotiation endpoints. The same paths serve both roles: a negotiation id is ours alone, and the
//! stored role decides which messages it accepts.
//!
//! Provider: `GET /negotiations/{providerPid}`, `POST /negotiations/request`, `POST /negotiations/{providerPid}/request`,
//! `/events`, `/agreement/verification`, `/termination`. Consumer: `GET /negotiations/{consumerPid}`,
//! `POST /negotiations/offers`, `POST /negotiations/{consumerPid}/offers`, `/agreement`, `/events`, `/termination`.
//! An unauthorised caller, or one asking about someone else's negotiation, is told 404.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::process;
use crate::dsp::error::DspArea;
use crate::state::Shared;

async fn handle(state: Shared, headers: HeaderMap, pid: Option<String>, expected: &str, body: Bytes) -> Response {
    process::handle(
        &state,
        &headers,
        DspArea::Negotiation,
        &[expected],
        &body,
        async |requester, token_use, message| {
            state.negotiations.receive(requester, token_use, pid.as_deref(), message).await
        },
    )
    .await
}

pub async fn get(State(state): State<Shared>, Path(pid): Path<String>, headers: HeaderMap) -> Response {
    process::get(&state, &headers, DspArea::Negotiation, async |requester| {
        Ok(state.negotiations.get_for_peer(requester, &pid).await?.dsp_json())
    })
    .await
}

pub async fn initial_request(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    handle(state, headers, None, "ContractRequestMessage", body).await
}

pub async fn initial_offer(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    handle(state, headers, None, "ContractOfferMessage", body).await
}

pub async fn request(
    State(state): State<Shared>,
    Path(pid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, headers, Some(pid), "ContractRequestMessage", body).await
}

pub async fn offers(State(state): State<Shared>, Path(pid): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    handle(state, headers, Some(pid), "ContractOfferMessage", body).await
}

pub async fn events(State(state): State<Shared>, Path(pid): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    handle(state, headers, Some(pid), "ContractNegotiationEventMessage", body).await
}

pub async fn agreement(
    State(state): State<Shared>,
    Path(pid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, headers, Some(pid), "ContractAgreementMessage", body).await
}

pub async fn verification(
    State(state): State<Shared>,
    Path(pid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, headers, Some(pid), "ContractAgreementVerificationMessage", body).await
}

pub async fn termination(
    State(state): State<Shared>,
    Path(pid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, headers, Some(pid), "ContractNegotiationTerminationMessage", body).await
}
