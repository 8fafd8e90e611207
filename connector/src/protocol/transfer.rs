//! DSP 2025-1 transfer process endpoints. As for negotiations, the same paths serve both roles and the stored role
//! decides which messages a transfer accepts.
//!
//! Provider: `GET /transfers/{providerPid}`, `POST /transfers/request`, `POST /transfers/{providerPid}/start`,
//! `/completion`, `/suspension`, `/termination`. Consumer: `POST /transfers/{consumerPid}/start`, `/completion`,
//! `/suspension`, `/termination` (and `GET`). An unauthorised caller, or one asking about someone else's transfer, is
//! told 404.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value as Json;

use super::error::{DspArea, DspError};
use crate::identity::Verified;
use crate::server::Shared;
use crate::transfer::machine::Message;
use crate::transfer::{self, TransferError};

fn pids_of(message: &Json) -> (Option<String>, Option<String>) {
    let text = |key: &str| message.get(key).and_then(Json::as_str).map(str::to_owned);
    (text("providerPid"), text("consumerPid"))
}

async fn verified(state: &Shared, headers: &HeaderMap) -> Result<Verified, Response> {
    state.identity.verify_request(headers).await.map_err(|reason| {
        tracing::info!(%reason, "transfer request refused");
        DspError::not_found(DspArea::Transfer, "no such transfer process").into_response()
    })
}

async fn handle(state: Shared, headers: HeaderMap, pid: Option<String>, expected: Message, body: Bytes) -> Response {
    let requester = match verified(&state, &headers).await {
        Ok(requester) => requester,
        Err(refused) => return refused,
    };
    let message: Json = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(error) => {
            return DspError::bad_request(DspArea::Transfer, vec![format!("the body is not JSON: {error}")])
                .into_response();
        }
    };
    let pids = pids_of(&message);
    let message_type = message.get("@type").and_then(Json::as_str).unwrap_or_default();
    if message_type != expected.type_name() {
        return TransferError::Invalid(format!("this endpoint takes {}, not {message_type:?}", expected.type_name()))
            .into_dsp(pids)
            .into_response();
    }
    match transfer::receive(&state, &requester, pid.as_deref(), message).await {
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
    match transfer::get_for_peer(&state, &requester.participant, &pid).await {
        Ok(found) => axum::Json(found.dsp_json()).into_response(),
        Err(error) => error.into_dsp((None, None)).into_response(),
    }
}

pub async fn request(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    handle(state, headers, None, Message::TransferRequest, body).await
}

pub async fn start(State(state): State<Shared>, Path(pid): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    handle(state, headers, Some(pid), Message::TransferStart, body).await
}

pub async fn completion(
    State(state): State<Shared>,
    Path(pid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, headers, Some(pid), Message::TransferCompletion, body).await
}

pub async fn suspension(
    State(state): State<Shared>,
    Path(pid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, headers, Some(pid), Message::TransferSuspension, body).await
}

pub async fn termination(
    State(state): State<Shared>,
    Path(pid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(state, headers, Some(pid), Message::TransferTermination, body).await
}
