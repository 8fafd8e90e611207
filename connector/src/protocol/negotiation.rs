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
use axum::response::{IntoResponse, Response};
use serde_json::Value as Json;

use super::error::{DspArea, DspError};
use crate::identity::Verified;
use crate::negotiation::{self, NegotiationError};
use crate::server::Shared;

fn pids_of(message: &Json) -> (Option<String>, Option<String>) {
    let text = |key: &str| message.get(key).and_then(Json::as_str).map(str::to_owned);
    (text("providerPid"), text("consumerPid"))
}

/// The verified requester; an unverifiable one is told 404, as for someone else's negotiation (the reason is logged).
async fn verified(state: &Shared, headers: &HeaderMap) -> Result<Verified, Response> {
    state.identity.verify_request(headers).await.map_err(|reason| {
        tracing::info!(%reason, "negotiation request refused");
        DspError::not_found(DspArea::Negotiation, "no such negotiation").into_response()
    })
}

async fn handle(state: Shared, headers: HeaderMap, pid: Option<String>, expected: &[&str], body: Bytes) -> Response {
    let requester = match verified(&state, &headers).await {
        Ok(requester) => requester,
        Err(refused) => return refused,
    };
    let message: Json = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(error) => {
            return DspError::bad_request(DspArea::Negotiation, vec![format!("the body is not JSON: {error}")])
                .into_response();
        }
    };
    let pids = pids_of(&message);
    let message_type = message.get("@type").and_then(Json::as_str).unwrap_or_default();
    if !expected.contains(&message_type) {
        return NegotiationError::Invalid(format!(
            "this endpoint takes {}, not {message_type:?}",
            expected.join(" or ")
        ))
        .into_dsp(pids)
        .into_response();
    }
    match negotiation::receive(&state, &requester, pid.as_deref(), message).await {
        Ok(answer) => match answer.body {
            Some(body) => (answer.status, axum::Json(body)).into_response(),
            None => answer.status.into_response(),
        },
        Err(error) => error.into_dsp(pids).into_response(),
    }
}

pub async fn get(State(state): State<Shared>, Path(pid): Path<String>, headers: HeaderMap) -> Response {
    let requester = match verified(&state, &headers).await {
        Ok(requester) => requester,
        Err(refused) => return refused,
    };
    match negotiation::get_for_peer(&state, &requester.participant, &pid).await {
        Ok(found) => axum::Json(found.dsp_json()).into_response(),
        Err(error) => error.into_dsp((None, None)).into_response(),
    }
}

pub async fn initial_request(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    handle(state, headers, None, &["ContractRequestMessage"], body).await
}

pub async fn initial_offer(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    handle(state, headers, None, &["ContractOfferMessage"], body).await
}

pub async fn request(
    State(state): State<Shared>,
    Path(pid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, headers, Some(pid), &["ContractRequestMessage"], body).await
}

pub async fn offers(State(state): State<Shared>, Path(pid): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    handle(state, headers, Some(pid), &["ContractOfferMessage"], body).await
}

pub async fn events(State(state): State<Shared>, Path(pid): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    handle(state, headers, Some(pid), &["ContractNegotiationEventMessage"], body).await
}

pub async fn agreement(
    State(state): State<Shared>,
    Path(pid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, headers, Some(pid), &["ContractAgreementMessage"], body).await
}

pub async fn verification(
    State(state): State<Shared>,
    Path(pid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, headers, Some(pid), &["ContractAgreementVerificationMessage"], body).await
}

pub async fn termination(
    State(state): State<Shared>,
    Path(pid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, headers, Some(pid), &["ContractNegotiationTerminationMessage"], body).await
}
