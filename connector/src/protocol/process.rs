//! What the negotiation and transfer endpoints share: the caller's verification (an unverifiable caller is told 404,
//! as for someone else's process), reading and routing a message, and the DSP view of a process.

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value as Json;

use super::error::{DspArea, DspError};
use crate::identity::Verified;
use crate::process::{Answer, ProcessError};
use crate::server::Shared;

fn pids_of(message: &Json) -> (Option<String>, Option<String>) {
    let text = |key: &str| message.get(key).and_then(Json::as_str).map(str::to_owned);
    (text("providerPid"), text("consumerPid"))
}

/// The verified requester; an unverifiable one is told 404 (the reason is logged).
async fn verified(state: &Shared, headers: &HeaderMap, area: DspArea) -> Result<Verified, Response> {
    state.identity.verify_request(headers).await.map_err(|reason| {
        tracing::info!(%reason, ?area, "DSP process request refused");
        DspError::not_found(area, "no such process").into_response()
    })
}

/// A message posted to an endpoint that takes `expected`, applied by `receive`.
pub async fn handle(
    state: &Shared,
    headers: &HeaderMap,
    area: DspArea,
    expected: &[&str],
    body: &Bytes,
    receive: impl AsyncFnOnce(&Verified, Json) -> Result<Answer, ProcessError>,
) -> Response {
    let requester = match verified(state, headers, area).await {
        Ok(requester) => requester,
        Err(refused) => return refused,
    };
    let message: Json = match serde_json::from_slice(body) {
        Ok(message) => message,
        Err(error) => {
            return DspError::bad_request(area, vec![format!("the body is not JSON: {error}")]).into_response();
        }
    };
    let pids = pids_of(&message);
    let message_type = message.get("@type").and_then(Json::as_str).unwrap_or_default();
    if !expected.contains(&message_type) {
        let reason = format!("this endpoint takes {}, not {message_type:?}", expected.join(" or "));
        return ProcessError::Invalid(reason).into_dsp(area, pids).into_response();
    }
    match receive(&requester, message).await {
        Ok(Answer { status, body: Some(body) }) => (status, axum::Json(body)).into_response(),
        Ok(Answer { status, body: None }) => status.into_response(),
        Err(error) => error.into_dsp(area, pids).into_response(),
    }
}

/// `GET` of a process by its counter-party: `read` answers its DSP JSON for the verified requester.
pub async fn get(
    state: &Shared,
    headers: &HeaderMap,
    area: DspArea,
    read: impl AsyncFnOnce(&str) -> Result<Json, ProcessError>,
) -> Response {
    let requester = match verified(state, headers, area).await {
        Ok(requester) => requester,
        Err(refused) => return refused,
    };
    match read(&requester.participant).await {
        Ok(found) => axum::Json(found).into_response(),
        Err(error) => error.into_dsp(area, (None, None)).into_response(),
    }
}
