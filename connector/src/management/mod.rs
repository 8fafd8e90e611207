//! The management API (management listener): what operators, consumers' tools and auditors call.
//! Wire-compatible with the EDC Management API v3 where EDC has the call.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value as Json, json};

use crate::catalog::model::{Asset, ContractDefinition, PolicyDefinition};
use crate::catalog::query::QuerySpec;
use crate::process::ProcessError;
use crate::server::{Shared, health_routes};

mod audit;
mod catalog;
pub mod client;
mod compute;
mod credentials;
mod error;
mod negotiations;
mod policies;
pub mod resources;
pub mod sparql;
mod transfers;

pub use error::{FieldError, ManagementError};

/// The management router: health probes open, everything else behind `X-Api-Key`.
pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/management/connector", get(about))
        .merge(resources::routes::<Asset>("/management/v3/assets"))
        .merge(resources::routes::<PolicyDefinition>("/management/v3/policydefinitions"))
        .merge(resources::routes::<ContractDefinition>("/management/v3/contractdefinitions"))
        .route("/management/v3/policydefinitions/{id}/validate", post(policies::validate))
        .route("/management/v3/policydefinitions/{id}/explain", post(policies::explain))
        .route("/management/v3/catalog/request", post(catalog::request))
        .route("/management/v3/contractnegotiations", post(negotiations::start))
        .route("/management/v3/contractnegotiations/request", post(negotiations::query))
        .route("/management/v3/contractnegotiations/{id}", get(negotiations::read))
        .route("/management/v3/contractnegotiations/{id}/state", get(negotiations::read_state))
        .route("/management/v3/contractnegotiations/{id}/agreement", get(negotiations::read_agreement))
        .route("/management/v3/contractnegotiations/{id}/{call}", post(negotiations::operator_call))
        .route("/management/v3/contractagreements/request", post(negotiations::agreements_query))
        .route("/management/v3/contractagreements/{id}", get(negotiations::agreement))
        .route("/management/v3/contractagreements/{id}/negotiation", get(negotiations::agreement_negotiation))
        .route("/management/v3/transferprocesses", post(transfers::start))
        .route("/management/v3/transferprocesses/request", post(transfers::query))
        .route("/management/v3/transferprocesses/{id}", get(transfers::read))
        .route("/management/v3/transferprocesses/{id}/state", get(transfers::read_state))
        .route("/management/v3/transferprocesses/{id}/{call}", post(transfers::operator_call))
        .route("/management/v3/edrs/request", post(transfers::edrs_query))
        .route("/management/v3/edrs/{id}/dataaddress", get(transfers::edr_data_address))
        .route("/management/v3/edrs/{id}", axum::routing::delete(transfers::edr_delete))
        .route("/management/sparql", get(sparql::query_get).post(sparql::query_post))
        .route("/management/v3/credentials", get(credentials::list).post(credentials::import))
        .route("/management/v3/credentials/issue", post(credentials::issue))
        .route("/management/v3/credentials/issued", get(credentials::issued))
        .route("/management/v3/credentials/issued/{id}/revoke", post(credentials::revoke))
        .route("/management/v3/credentials/{id}", axum::routing::delete(credentials::delete))
        .route("/management/v3/audit/witness", post(audit::witness_now))
        .route(
            "/management/v3/tables",
            // A table streams to a temporary file before it is read: no body limit.
            post(compute::ingest).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/management/v3/jobs", post(compute::start))
        .route("/management/v3/jobs/request", post(compute::query))
        .route("/management/v3/jobs/{id}", get(compute::read))
        .route("/metrics", get(metrics))
        .merge(crate::broker::http::management_routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_api_key));
    let auditors = audit::routes(state.clone());
    Router::new().merge(health_routes()).merge(auditors).merge(api).fallback(not_found).with_state(state)
}

/// A request body as JSON, or a 400 saying why not.
pub fn parse_body(body: &Bytes) -> Result<Json, ManagementError> {
    serde_json::from_slice(body).map_err(|e| ManagementError::field("", format!("the body is not JSON: {e}")))
}

/// A boolean EDC-vocabulary member of an expanded body.
pub fn flag(node: &serde_json::Map<String, Json>, name: &str) -> Option<bool> {
    crate::catalog::model::member(node, name).first().and_then(|v| v.get("@value")).and_then(Json::as_bool)
}

/// A body that may be left empty: `{}` then.
pub fn optional_body(body: &Bytes) -> Result<Json, ManagementError> {
    if body.iter().all(u8::is_ascii_whitespace) { Ok(json!({})) } else { parse_body(body) }
}

/// The QuerySpec of a `.../request` body (an empty body selects everything).
pub fn query_spec(body: &Bytes) -> Result<QuerySpec, ManagementError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { None } else { Some(parse_body(body)?) };
    QuerySpec::from_body(body.as_ref()).map_err(ManagementError::Invalid)
}

/// The answer to an operator's call on a negotiation or transfer: its management JSON, or for a call that does not
/// fit the state a 409 naming the state and the calls allowed now.
pub fn call_answer(result: Result<Json, ProcessError>) -> Result<Response, ManagementError> {
    let error = match result {
        Ok(process) => return Ok(axum::Json(process).into_response()),
        Err(error) => error,
    };
    match &error {
        ProcessError::WrongState { state, allowed, .. } => {
            let body = json!([{"message": error.to_string(), "type": "ObjectConflict", "state": state, "allowedCalls": allowed}]);
            Ok((StatusCode::CONFLICT, axum::Json(body)).into_response())
        }
        _ => Err(error.into()),
    }
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
        "protocolUrl": state.catalogue.service.endpoint_url,
        "store": state.store.dialect().to_string(),
        "uptimeSeconds": state.uptime_seconds(),
    }))
}

/// `GET /metrics`: Prometheus text exposition of what operators alert on.
async fn metrics(State(state): State<Shared>) -> impl IntoResponse {
    let inconsistencies = state.audit_inconsistencies.load(std::sync::atomic::Ordering::Relaxed);
    let size = state.store.audit_frontier().await.map(|f| f.size).unwrap_or_default();
    let text = format!(
        "# HELP hanse_audit_inconsistencies_total Peers' tree heads found inconsistent with what they showed before.\n\
         # TYPE hanse_audit_inconsistencies_total counter\n\
         hanse_audit_inconsistencies_total {inconsistencies}\n\
         # HELP hanse_audit_log_entries Entries in this connector's audit log.\n\
         # TYPE hanse_audit_log_entries gauge\n\
         hanse_audit_log_entries {size}\n"
    );
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, axum::Json(json!([{"message": "no such management resource", "type": "ObjectNotFound"}])))
        .into_response()
}
