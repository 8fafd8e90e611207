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
use serde_json::{Map, Value as Json, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::Shared;

/// How long a component may take to answer before it counts as down.
const COMPONENT_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health/live` and `GET /health/ready`, on both listeners, with their descriptions.
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new().routes(routes!(live)).routes(routes!(ready))
}

/// `GET /health/live` and `GET /health/ready` as a plain router.
pub fn health_routes() -> Router<Shared> {
    routes().split_for_parts().0
}

/// Whether the process is up.
#[utoipa::path(get, path = "/health/live", tag = "Connector", operation_id = "liveness", security(()),
    responses((status = 200, description = "`{\"status\": \"live\"}`", body = serde_json::Value)))]
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

/// Whether the connector can serve: each component up or down.
#[utoipa::path(get, path = "/health/ready", tag = "Connector", operation_id = "readiness", security(()),
    responses((status = 200, description = "Ready: every component up", body = serde_json::Value),
        (status = 503, description = "Starting, or a component down (named with why)", body = serde_json::Value)))]
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
    let sealed = state.store.audit.sealed().map(|fault| {
        format!("the stored audit log was altered ({fault}); changes it would record are refused until it is restored")
    });
    components.insert(
        "audit".into(),
        component(match (audit, &sealed) {
            (_, Some(sealed)) => Err(sealed.as_str()),
            (Ok(Ok(_)), None) => Ok(()),
            (Ok(Err(_)), None) => Err("the audit log's head cannot be read"),
            (Err(_), None) => Err("the audit log's head was not read within 2 s"),
        }),
    );
    if state.store.audit.appends_held() {
        // Up: reads are served, and changes wait (a second or two) for the start-up self-check's outcome.
        components["audit"]["detail"] = json!("the start-up self-check is running; changes wait for its outcome");
    }
    let all_up = components.values().all(|c| c["status"] == "up");
    let (status, word) =
        if all_up { (StatusCode::OK, "ready") } else { (StatusCode::SERVICE_UNAVAILABLE, "unavailable") };
    (status, axum::Json(json!({"status": word, "components": components})))
}
