//! The management API (management listener): what operators, consumers' tools and auditors call.
//! Wire-compatible with the EDC Management API v3 where EDC has the call.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::catalog::query::QuerySpec;
use crate::process::ProcessError;
use crate::state::Shared;

pub mod access;
mod approvals;
mod apps;
mod audit;
mod broker;
mod catalog;
mod compute;
mod credentials;
mod edrs;
pub mod idempotency;
mod lineage;
mod metrics;
mod negotiations;
pub mod openapi;
mod policies;
pub mod resources;
pub mod sparql;
mod transfers;
mod v4;

pub use crate::error::{FieldError, ManagementError};
pub use compute::part_to_file;
pub use v4::CONTEXT as V4_CONTEXT;

/// The EDC Management API's calls, relative to their version prefix: served as `/management/v3` and, with EDC's v4
/// context on every answer, as `/management/v4` (decision 0020).
fn edc_routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .merge(resources::assets::routes())
        .merge(resources::policy_definitions::routes())
        .merge(resources::contract_definitions::routes())
        .routes(routes!(policies::validate))
        .routes(routes!(policies::explain))
        .routes(routes!(catalog::request))
        .routes(routes!(catalog::dataset))
        .routes(routes!(negotiations::start))
        .routes(routes!(negotiations::query))
        .routes(routes!(negotiations::read))
        .routes(routes!(negotiations::read_state))
        .routes(routes!(negotiations::read_agreement))
        .routes(routes!(negotiations::operator_call))
        .routes(routes!(negotiations::agreements_query))
        .routes(routes!(negotiations::agreement))
        .routes(routes!(negotiations::agreement_negotiation))
        .routes(routes!(transfers::start))
        .routes(routes!(transfers::query))
        .routes(routes!(transfers::read))
        .routes(routes!(transfers::read_state))
        .routes(routes!(transfers::operator_call))
        .routes(routes!(edrs::start))
        .routes(routes!(transfers::edrs_query))
        .routes(routes!(transfers::edr_data_address))
        .routes(routes!(transfers::edr_delete))
}

/// The management router: health probes, the API's description and its documentation page open; `/metrics` behind
/// the metrics key; the audit log behind the operator's or an auditor's credential; everything else behind
/// `X-Api-Key`. Answers the router and the OpenAPI document generated from it.
pub fn router(state: Shared) -> (Router, utoipa::openapi::OpenApi) {
    // A table streams to temporary files before it is read: no body limit.
    let unlimited = |(schemas, paths, router): (_, _, axum::routing::MethodRouter<Shared>)| {
        (schemas, paths, router.layer(axum::extract::DefaultBodyLimit::disable()))
    };
    let ingest = unlimited(routes!(compute::ingest));
    let ingest_fhir = unlimited(routes!(compute::ingest_fhir));
    let api = OpenApiRouter::new()
        .routes(routes!(about))
        .nest("/management/v3", edc_routes())
        .nest("/management/v4", edc_routes().layer(middleware::from_fn(v4::answers)))
        .routes(routes!(sparql::query_get, sparql::query_post))
        .routes(routes!(credentials::list, credentials::import))
        .routes(routes!(credentials::issue))
        .routes(routes!(credentials::issued))
        .routes(routes!(credentials::revoke))
        .routes(routes!(credentials::delete))
        .routes(routes!(credentials::rotate_key))
        .routes(routes!(access::create, access::list))
        .routes(routes!(access::rotate))
        .routes(routes!(access::revoke))
        .routes(routes!(apps::issue, apps::list))
        .routes(routes!(apps::read))
        .routes(routes!(apps::revoke))
        .routes(routes!(lineage::export))
        .routes(routes!(approvals::list))
        .routes(routes!(approvals::decide_publication))
        .routes(routes!(lineage::query_get, lineage::query_post))
        .routes(routes!(audit::witness_now))
        .routes(ingest)
        .routes(ingest_fhir)
        .routes(routes!(compute::start))
        .routes(routes!(compute::query))
        .routes(routes!(compute::read))
        .routes(routes!(compute::algorithms))
        .merge(broker::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), idempotency::idempotent))
        .route_layer(middleware::from_fn_with_state(state.clone(), access::require_api_key));
    let (router, document) = OpenApiRouter::with_openapi(openapi::ManagementDoc::openapi())
        .merge(crate::health::routes())
        .merge(audit::routes(state.clone()))
        .merge(metrics::routes())
        .merge(api)
        .split_for_parts();
    let document = openapi::finish(document);
    let router = router
        .merge(openapi::routes(&document))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), hide_methods))
        .with_state(state);
    (router, document)
}

/// Whether `X-Api-Key` holds a key this listener knows: the operator's, the auditor's, or a named key.
async fn knows_key(state: &Shared, given: Option<&axum::http::HeaderValue>) -> bool {
    let Some(given) = given.map(axum::http::HeaderValue::as_bytes) else { return false };
    state.config.audit.auditor_api_key.as_deref().is_some_and(|key| is_key(given, key))
        || matches!(access::principal_of(state, given).await, Ok(Some(_)))
}

/// A method a path does not take is a 405 (with `Allow`) to a caller with a key, and a 401 to anyone else: which
/// paths exist is not told without a key, whatever the method.
async fn hide_methods(
    State(state): State<Shared>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let key = request.headers().get("x-api-key").cloned();
    let response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED || knows_key(&state, key.as_ref()).await {
        return response;
    }
    ManagementError::Unauthorized.into_response()
}

/// `axum::extract::Path`, refused in the management error shape (400 naming the parameter) rather than as plain text.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ManagementError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query`, refused in the management error shape (400 naming the problem) rather than as plain text.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ManagementError))]
pub struct Query<T>(pub T);

impl From<axum::extract::rejection::PathRejection> for ManagementError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        ManagementError::field("path", rejection.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ManagementError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        ManagementError::field("query", rejection.body_text())
    }
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
    if body.is_empty() { Ok(json!({})) } else { parse_body(body) }
}

/// The QuerySpec of a `.../request` body on resources of `kind` (an empty body selects everything). It may filter and
/// sort on the fields in `known` only (`None`: free-form, as assets' properties are).
pub fn query_spec(body: &Bytes, kind: &str, known: Option<&[&[&str]]>) -> Result<QuerySpec, ManagementError> {
    let body = if body.is_empty() { None } else { Some(parse_body(body)?) };
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
    is_key(headers.get("x-api-key").map(|v| v.as_bytes()).unwrap_or_default(), key)
}

/// Whether `given` is `key`, compared in constant time.
pub fn is_key(given: &[u8], key: &str) -> bool {
    given.len() == key.len() && openssl::memcmp::eq(given, key.as_bytes())
}

/// Who this connector is, where it listens, and since when.
#[utoipa::path(get, path = "/management/connector", tag = "Connector", operation_id = "about the connector",
    responses((status = 200, description = "Participant, version, protocol URL, store, uptime", body = openapi::Object),
        openapi::ReadErrors))]
async fn about(State(state): State<Shared>) -> impl IntoResponse {
    axum::Json(json!({
        "participantId": state.config.participant.id,
        "version": env!("CARGO_PKG_VERSION"),
        "protocolUrl": state.catalogue.service.endpoint_url,
        "store": state.store.dialect().to_string(),
        "uptimeSeconds": state.uptime_seconds(),
    }))
}

/// An unknown path: 404 to a caller with the operator's or the auditor's key or a named key, 401 to anyone else
/// (nothing about the listener is told without a key).
async fn not_found(State(state): State<Shared>, headers: axum::http::HeaderMap) -> Response {
    if !knows_key(&state, headers.get("x-api-key")).await {
        return ManagementError::Unauthorized.into_response();
    }
    (StatusCode::NOT_FOUND, axum::Json(json!([{"message": "no such management resource", "type": "ObjectNotFound"}])))
        .into_response()
}
