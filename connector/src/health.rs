//! `GET /health/live` (the process is up) and `GET /health/ready` (the connector can serve: its components answer),
//! on both listeners, without credentials.
//!
//! Readiness names its components — `store` (a round trip to the database), `catalogue` (the index is loaded) and
//! `audit` (the log's head can be read) — each `up` or `down`, with a reason when down; any component down makes the
//! answer 503, so that a load balancer stops sending requests. Nothing else is told: the probes are open to anyone.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Map, Value as Json, json};

use crate::state::Shared;

/// How long a component may take to answer before it counts as down.
const COMPONENT_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health/live` and `GET /health/ready`, on both listeners.
pub fn health_routes() -> Router<Shared> {
    Router::new().route("/health/live", get(live)).route("/health/ready", get(ready))
}

async fn live() -> impl IntoResponse {
    axum::Json(json!({"status": "live"}))
}

/// A component's status: `up`, or `down` with why.
fn component(result: Result<(), &str>) -> Json {
    match result {
        Ok(()) => json!({"status": "up"}),
        Err(reason) => json!({"status": "down", "reason": reason}),
    }
}

async fn ready(State(state): State<Shared>) -> impl IntoResponse {
    if !state.is_ready() {
        let components = json!({"catalogue": component(Err("the catalogue index is loading"))});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "starting", "components": components})));
    }
    let (store, audit) = tokio::join!(
        tokio::time::timeout(COMPONENT_TIMEOUT, state.store.ping()),
        tokio::time::timeout(COMPONENT_TIMEOUT, state.store.audit.audit_frontier()),
    );
    let mut components = Map::new();
    components.insert(
        "store".into(),
        component(match store {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("the database does not answer"),
            Err(_) => Err("the database did not answer within 2 s"),
        }),
    );
    components.insert("catalogue".into(), component(Ok(())));
    components.insert(
        "audit".into(),
        component(match audit {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err("the audit log's head cannot be read"),
            Err(_) => Err("the audit log's head was not read within 2 s"),
        }),
    );
    let all_up = components.values().all(|c| c["status"] == "up");
    let (status, word) =
        if all_up { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "unavailable") };
    (status, axum::Json(json!({"status": word, "components": components})))
}
