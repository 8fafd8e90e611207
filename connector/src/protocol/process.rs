//! What the negotiation and transfer endpoints share: the caller's verification (an unverifiable caller is told 404,
//! as for someone else's process), reading and routing a message, and the DSP view of a process.

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value as Json;

use crate::dsp::error::{DspArea, DspError};
use crate::identity::Verified;
use crate::identity::token::TokenError;
use crate::process::{Answer, ProcessError};
use crate::state::Shared;
use crate::store::{StoreError, TokenUse};

fn pids_of(message: &Json) -> (Option<String>, Option<String>) {
    let text = |key: &str| message.get(key).and_then(Json::as_str).map(str::to_owned);
    (text("providerPid"), text("consumerPid"))
}

/// The answer to an unverifiable requester: 404, as for someone else's process (the reason is logged).
fn refused(area: DspArea, reason: TokenError) -> Response {
    tracing::info!(%reason, ?area, "DSP process request refused");
    DspError::not_found(area, "no such process").into_response()
}

/// The verified requester, its token's id recorded.
async fn verified(state: &Shared, headers: &HeaderMap, area: DspArea) -> Result<Verified, Response> {
    state.identity.verify_request(headers).await.map_err(|reason| refused(area, reason))
}

/// A message posted to an endpoint that takes `expected`, applied by `receive`. The token's id goes to `receive`,
/// which records it in the transaction of the change the message makes (taking it out of the option) or, if it makes
/// none, leaves it: it is then recorded here, and a replay is told 404 whatever `receive` answered. A `receive` that
/// acts before it writes records the id first.
pub async fn handle(
    state: &Shared,
    headers: &HeaderMap,
    area: DspArea,
    expected: &[&str],
    body: &Bytes,
    receive: impl AsyncFnOnce(&Verified, &mut Option<TokenUse>, Json) -> Result<Answer, ProcessError>,
) -> Response {
    let (requester, token_use) = match state.identity.check_request(headers).await {
        Ok(checked) => checked,
        Err(reason) => return refused(area, reason),
    };
    let mut token_use = Some(token_use);
    let answer = match serde_json::from_slice::<Json>(body) {
        Err(error) => Err(DspError::bad_request(area, vec![format!("the body is not JSON: {error}")])),
        Ok(message) => {
            let pids = pids_of(&message);
            let message_type = message.get("@type").and_then(Json::as_str).unwrap_or_default();
            let answer = if expected.contains(&message_type) {
                receive(&requester, &mut token_use, message).await
            } else {
                let reason = format!("this endpoint takes {}, not {message_type:?}", expected.join(" or "));
                Err(ProcessError::Invalid(reason))
            };
            match answer {
                Err(ProcessError::Store(StoreError::Replayed)) => return refused(area, TokenError::Replayed),
                answer => answer.map_err(|error| error.into_dsp(area, pids)),
            }
        }
    };
    if let Some(token_use) = token_use
        && let Err(reason) = crate::identity::token::record(&state.store.identity, &token_use).await
    {
        return refused(area, reason);
    }
    match answer {
        Ok(Answer { status, body: Some(body) }) => (status, axum::Json(body)).into_response(),
        Ok(Answer { status, body: None }) => status.into_response(),
        Err(error) => error.into_response(),
    }
}

/// For a `receive` that acts before it writes: records the token's id now.
pub async fn record_first(state: &Shared, token_use: &mut Option<TokenUse>) -> Result<(), ProcessError> {
    match token_use.take() {
        Some(token_use) if !state.store.identity.remember_token(&token_use).await? => Err(StoreError::Replayed.into()),
        _ => Ok(()),
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
