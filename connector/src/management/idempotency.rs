//! `Idempotency-Key` on the management calls that start something: negotiations, transfers, EDRs, compute jobs and
//! credential issuance (draft-ietf-httpapi-idempotency-key-header). A call with a key creates its resource at most
//! once: the key is claimed in the transaction that creates it (`hanse_store::idempotency`), and a retry gets the
//! first answer back, marked `Idempotent-Replayed: true`. Keys are kept for [`KEPT_HOURS`].

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::Shared;
use crate::store::idempotency::{Claim, Remembered, Taken};

use super::ManagementError;

/// How long a key is kept.
pub const KEPT_HOURS: i64 = 24;

/// The longest key accepted.
const LONGEST_KEY: usize = 255;

/// The largest answer kept for a replay (the calls that claim keys answer an `IdResponse`).
const LARGEST_ANSWER: usize = 1 << 20;

/// A first answer still being made: a retry this soon is told to wait rather than given a reconstructed answer.
const IN_FLIGHT_MS: i64 = 30_000;

/// The management listener's request bodies are limited before this layer; this bounds the copy kept for a claim.
const LARGEST_BODY: usize = 64 << 20;

/// Runs a `POST` with an `Idempotency-Key` at most once per key and call; passes everything else through.
pub async fn idempotent(State(state): State<Shared>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST || !request.headers().contains_key("idempotency-key") {
        return next.run(request).await;
    }
    let key = match request.headers().get("idempotency-key").map(HeaderValue::to_str) {
        Some(Ok(key)) if !key.is_empty() && key.len() <= LONGEST_KEY && key.bytes().all(|b| b.is_ascii_graphic()) => {
            key.to_owned()
        }
        _ => {
            return ManagementError::field(
                "Idempotency-Key",
                format!("an Idempotency-Key is 1 to {LONGEST_KEY} visible ASCII characters"),
            )
            .into_response();
        }
    };
    let route = request.extensions().get::<MatchedPath>().map_or(request.uri().path(), MatchedPath::as_str);
    let scope = format!("POST {route}");
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, LARGEST_BODY).await else {
        return ManagementError::field("", "the request body could not be read").into_response();
    };
    let digest = hanse_core::encode::sha256_hex(&bytes);
    // Keys claimed before this process started cannot be in flight here (another replica's may be).
    let booted = crate::store::now_millis() - state.started.elapsed().as_millis() as i64;
    match state.store.idempotency.recall(&scope, &key).await {
        Ok(Some(kept)) => return replay(&kept, &digest, booted),
        Ok(None) => {}
        Err(error) => return ManagementError::from(error).into_response(),
    }
    let claim = Claim { scope: scope.clone(), key: key.clone(), digest: digest.clone() };
    let (response, taken) = claim.run(next.run(Request::from_parts(parts, Body::from(bytes)))).await;
    match taken {
        Taken::By(_) if response.status().is_success() => {
            let (parts, body) = response.into_parts();
            let Ok(answer) = axum::body::to_bytes(body, LARGEST_ANSWER).await else {
                return ManagementError::Internal("the answer could not be kept".into()).into_response();
            };
            let text = String::from_utf8_lossy(&answer);
            if let Err(error) = state.store.idempotency.remember(&scope, &key, parts.status.as_u16(), &text).await {
                // The resource exists and its key is claimed: a retry gets an answer rebuilt from it.
                tracing::warn!(%error, %scope, "the first answer of an idempotent call was not kept");
            }
            Response::from_parts(parts, Body::from(answer))
        }
        Taken::Lost => match state.store.idempotency.recall(&scope, &key).await {
            Ok(Some(kept)) => replay(&kept, &digest, booted),
            Ok(None) => response,
            Err(error) => ManagementError::from(error).into_response(),
        },
        _ => response,
    }
}

/// The answer to a retry of a claimed key.
fn replay(kept: &Remembered, digest: &str, booted: i64) -> Response {
    if kept.digest != digest {
        let body = json!([{"message": "this Idempotency-Key was used for another request body; use a new key for a new request",
                           "type": "InvalidRequest", "path": "Idempotency-Key"}]);
        return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response();
    }
    let mut response = match (kept.status, &kept.answer) {
        (Some(status), Some(answer)) => {
            let status =
                u16::try_from(status).ok().and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK);
            let mut response = (status, Bytes::from(answer.clone().into_bytes())).into_response();
            response
                .headers_mut()
                .insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        _ if kept.created_at >= booted && crate::store::now_millis() - kept.created_at < IN_FLIGHT_MS => {
            let body = json!([{"message": "a request with this Idempotency-Key is still being answered; retry shortly",
                               "type": "ObjectConflict"}]);
            let mut response = (StatusCode::CONFLICT, axum::Json(body)).into_response();
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        // The resource was made but its first answer never left (the connector stopped in between): rebuilt.
        _ => axum::Json(json!({
            "@type": "IdResponse",
            "@id": kept.resource,
            "createdAt": kept.created_at,
        }))
        .into_response(),
    };
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// Forgets keys older than [`KEPT_HOURS`], hourly, until shutdown.
pub fn spawn_sweeper(state: Shared, mut stop: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    let before = crate::store::now_millis() - KEPT_HOURS * 3_600_000;
                    if let Err(error) = state.store.idempotency.forget_before(before).await {
                        tracing::warn!(%error, "cannot forget old idempotency keys");
                    }
                }
                _ = stop.changed() => return,
            }
        }
    });
}
