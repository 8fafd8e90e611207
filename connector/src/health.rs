//! `GET /health/live` (the process is up) and `GET /health/ready` (the store is open and the catalogue index loaded),
//! on both listeners, without credentials.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::Shared;

/// `GET /health/live` and `GET /health/ready`, on both listeners.
pub fn health_routes() -> Router<Shared> {
    Router::new().route("/health/live", get(live)).route("/health/ready", get(ready))
}

async fn live() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "live"}))
}

async fn ready(State(state): State<Shared>) -> impl IntoResponse {
    if state.is_ready() {
        (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready"})))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "starting"})))
    }
}
