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
use axum::response::Response;

use super::process;
use crate::dsp::error::DspArea;
use crate::state::Shared;
use crate::transfer::machine::Message;

async fn handle(state: Shared, headers: HeaderMap, pid: Option<String>, expected: Message, body: Bytes) -> Response {
    let expected = [expected.type_name()];
    process::handle(&state, &headers, DspArea::Transfer, &expected, &body, async |requester, token_use, message| {
        // A transfer message may start data moving before its write: its token's id is recorded first.
        process::record_first(&state, token_use).await?;
        state.transfers.receive(requester, pid.as_deref(), message).await
    })
    .await
}

pub async fn get(State(state): State<Shared>, Path(pid): Path<String>, headers: HeaderMap) -> Response {
    process::get(&state, &headers, DspArea::Transfer, async |requester| {
        Ok(state.transfers.get_for_peer(requester, &pid).await?.dsp_json())
    })
    .await
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
