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
use crate::health::health_routes;
use crate::process::ProcessError;
use crate::state::Shared;

mod audit;
mod broker;
mod catalog;
mod compute;
mod credentials;
mod edrs;
mod metrics;
mod negotiations;
mod policies;
pub mod resources;
pub mod sparql;
mod transfers;
mod v4;

pub use crate::error::{FieldError, ManagementError};
pub use v4::CONTEXT as V4_CONTEXT;

/// The EDC Management API's calls, relative to their version prefix: served as `/management/v3` and, with EDC's v4
/// context on every answer, as `/management/v4` (decision 0020).
fn edc_routes() -> Router<Shared> {
    Router::new()
        .merge(resources::routes::<Asset>("/assets"))
        .merge(resources::routes::<PolicyDefinition>("/policydefinitions"))
        .merge(resources::routes::<ContractDefinition>("/contractdefinitions"))
        .route("/policydefinitions/{id}/validate", post(policies::validate))
        .route("/policydefinitions/{id}/explain", post(policies::explain))
        .route("/catalog/request", post(catalog::request))
        .route("/catalog/dataset/request", post(catalog::dataset))
        .route("/contractnegotiations", post(negotiations::start))
        .route("/contractnegotiations/request", post(negotiations::query))
        .route("/contractnegotiations/{id}", get(negotiations::read))
        .route("/contractnegotiations/{id}/state", get(negotiations::read_state))
        .route("/contractnegotiations/{id}/agreement", get(negotiations::read_agreement))
        .route("/contractnegotiations/{id}/{call}", post(negotiations::operator_call))
        .route("/contractagreements/request", post(negotiations::agreements_query))
        .route("/contractagreements/{id}", get(negotiations::agreement))
        .route("/contractagreements/{id}/negotiation", get(negotiations::agreement_negotiation))
        .route("/transferprocesses", post(transfers::start))
        .route("/transferprocesses/request", post(transfers::query))
        .route("/transferprocesses/{id}", get(transfers::read))
        .route("/transferprocesses/{id}/state", get(transfers::read_state))
        .route("/transferprocesses/{id}/{call}", post(transfers::operator_call))
        .route("/edrs", post(edrs::start))
        .route("/edrs/request", post(transfers::edrs_query))
        .route("/edrs/{id}/dataaddress", get(transfers::edr_data_address))
        .route("/edrs/{id}", axum::routing::delete(transfers::edr_delete))
}

/// The management router: health probes open, everything else behind `X-Api-Key`.
pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/management/connector", get(about))
        .nest("/management/v3", edc_routes())
        .nest("/management/v4", edc_routes().layer(middleware::from_fn(v4::answers)))
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
        .merge(broker::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_api_key));
    let auditors = audit::routes(state.clone());
    Router::new()
        .merge(health_routes())
        .merge(auditors)
        .merge(metrics::routes())
        .merge(api)
        .fallback(not_found)
        .with_state(state)
}

/// A request body as JSON, or a 400 saying why not.
pub fn parse_body(body: &Bytes) -> Result<Json, ManagementError> {
    serde_json::from_slice(body).map_err(|e| ManagementError::field("", format!("the body is not JSON: {e}")))
}

/// A boolean EDC-vocabulary member of an expanded body.
pub fn flag(node: &serde_json::Map<String, Json>, name: &str) -> Option<bool> {
    crate::catalog::model::member(node, name).first().and_then(|v| v.get("@value")).and_then(Json::as_bool)
}

/// A boolean query parameter as EDC's Java stack reads one: `true` or `false` in any letter case; anything else is a
/// 400 naming the value.
pub fn edc_bool<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    let text: Option<String> = serde::Deserialize::deserialize(deserializer)?;
    match text {
        None => Ok(None),
        Some(t) if t.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(t) if t.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(t) => Err(serde::de::Error::custom(format!("`{t}` is not a boolean (true or false)"))),
    }
}

/// A body that may be left empty: `{}` then.
pub fn optional_body(body: &Bytes) -> Result<Json, ManagementError> {
    if body.iter().all(u8::is_ascii_whitespace) { Ok(json!({})) } else { parse_body(body) }
}

/// The QuerySpec of a `.../request` body on resources of `kind` (an empty body selects everything). It may filter and
/// sort on the fields in `known` only (`None`: free-form, as assets' properties are).
pub fn query_spec(body: &Bytes, kind: &str, known: Option<&[&[&str]]>) -> Result<QuerySpec, ManagementError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { None } else { Some(parse_body(body)?) };
    let spec = QuerySpec::from_body(body.as_ref()).map_err(ManagementError::Invalid)?;
    if let Some(known) = known {
        spec.check_fields(kind, known).map_err(ManagementError::Invalid)?;
    }
    Ok(spec)
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

/// Whether `headers` carry `key` in `X-Api-Key` (compared in constant time).
pub fn has_key(headers: &axum::http::HeaderMap, key: &str) -> bool {
    let given = headers.get("x-api-key").map(|v| v.as_bytes()).unwrap_or_default();
    given.len() == key.len() && openssl::memcmp::eq(given, key.as_bytes())
}

/// Rejects a request without the configured `X-Api-Key`.
async fn require_api_key(State(state): State<Shared>, request: Request, next: Next) -> Response {
    if has_key(request.headers(), &state.config.management.api_key) {
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

/// An unknown path: 404 to a caller with the operator's or the auditor's key, 401 to anyone else (nothing about the
/// listener is told without a key).
async fn not_found(State(state): State<Shared>, headers: axum::http::HeaderMap) -> Response {
    let keys = std::iter::once(&state.config.management.api_key).chain(&state.config.audit.auditor_api_key);
    if !keys.into_iter().any(|key| has_key(&headers, key)) {
        return ManagementError::Unauthorized.into_response();
    }
    (StatusCode::NOT_FOUND, axum::Json(json!([{"message": "no such management resource", "type": "ObjectNotFound"}])))
        .into_response()
}
