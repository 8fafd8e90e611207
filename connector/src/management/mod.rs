//! The management API (management listener): what operators, consumers' tools and auditors call.
//! Wire-compatible with the EDC Management API v3 where EDC has the call.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::server::{Shared, health_routes};

mod error;

pub use error::ManagementError;

/// The management router: health probes open, everything else behind `X-Api-Key`.
pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/management/connector", get(about))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_api_key));
    Router::new().merge(health_routes()).merge(api).fallback(not_found).with_state(state)
}

/// Rejects a request without the configured `X-Api-Key` (compared in constant time).
async fn require_api_key(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let expected = state.config.management.api_key.as_bytes();
    let given = request.headers().get("x-api-key").map(|v| v.as_bytes()).unwrap_or_default();
    if given.len() == expected.len() && openssl::memcmp::eq(given, expected) {
        next.run(request).await
    } else {
        tracing::debug!("management request without a valid X-Api-Key");
        ManagementError::Unauthorized.into_response()
    }
}

/// `GET /management/connector`: who this connector is and where it listens.
async fn about(State(state): State<Shared>) -> impl IntoResponse {
    axum::Json(json!({
        "participantId": state.config.participant.id,
        "version": env!("CARGO_PKG_VERSION"),
        "protocolUrl": format!("{}/protocol", state.public_url),
        "store": state.store.dialect().to_string(),
        "uptimeSeconds": state.uptime_seconds(),
    }))
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, axum::Json(json!([{"message": "no such management resource", "type": "ObjectNotFound"}])))
        .into_response()
}
