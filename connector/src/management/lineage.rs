//! Lineage (`/management/v3/lineage`): where data went, as W3C PROV-O folded from the audit log (`crate::lineage`).
//! An export around one dataset or agreement as Turtle or JSON-LD, and read-only SPARQL over the whole lineage graph.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ManagementError, Query};
use crate::lineage::{LineageError, Start};
use crate::sparql::{QueryParameter, answer, missing_query, posted_query};
use crate::state::Shared;

impl From<LineageError> for ManagementError {
    fn from(error: LineageError) -> Self {
        match error {
            LineageError::Store(store) => store.into(),
            LineageError::Graph(_) => ManagementError::Internal(error.to_string()),
            LineageError::Unknown => ManagementError::NotFound(error.to_string()),
        }
    }
}

/// Which lineage to export.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Around {
    /// A dataset (asset id; on a consumer, the provider's dataset id).
    pub dataset: Option<String>,
    /// An agreement id.
    pub agreement: Option<String>,
}

/// `GET /management/v3/lineage?dataset=...|agreement=...`: the lineage around one dataset or agreement.
#[utoipa::path(get, path = "/management/v3/lineage", tag = "Lineage", operation_id = "export lineage", params(Around),
    responses((status = 200, description = "PROV-O: Turtle, or JSON-LD when `Accept` asks for application/ld+json", content((String = "text/turtle"), (String = "application/ld+json"))),
        crate::management::openapi::ReadErrors))]
pub async fn export(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(around): Query<Around>,
) -> Result<Response, ManagementError> {
    let (start, kind) = match (around.dataset, around.agreement) {
        (Some(dataset), None) => (dataset, Start::Dataset),
        (None, Some(agreement)) => (agreement, Start::Agreement),
        _ => return Err(ManagementError::field("dataset", "give either dataset or agreement")),
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let json_ld = accept.contains("application/ld+json") || accept.contains("application/json");
    let body = state.lineage.export(&start, kind, json_ld).await?;
    let content_type = if json_ld { "application/ld+json" } else { "text/turtle" };
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

#[utoipa::path(get, path = "/management/v3/lineage/sparql", tag = "Lineage", operation_id = "SPARQL over the lineage", params(QueryParameter), responses((status = 200, description = "Results in the format `Accept` asks for", content((String = "application/sparql-results+json"), (String = "application/sparql-results+xml"), (String = "text/csv"), (String = "text/tab-separated-values"), (String = "text/turtle"), (String = "application/n-triples"), (String = "application/rdf+xml"))), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn query_get(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(parameter): Query<QueryParameter>,
) -> Response {
    match parameter.query {
        Some(query) => run(state, headers, query).await,
        None => missing_query().into_response(),
    }
}

#[utoipa::path(post, path = "/management/v3/lineage/sparql", tag = "Lineage", operation_id = "SPARQL over the lineage (body)", request_body(content((String = "application/sparql-query"), (crate::management::openapi::SparqlQuery = "application/x-www-form-urlencoded"), (crate::management::openapi::SparqlQuery = "application/json"))), responses((status = 200, description = "Results in the format `Accept` asks for", content((String = "application/sparql-results+json"), (String = "application/sparql-results+xml"), (String = "text/csv"), (String = "text/tab-separated-values"), (String = "text/turtle"), (String = "application/n-triples"), (String = "application/rdf+xml"))), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn query_post(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    match posted_query(&headers, &body) {
        Some(query) => run(state, headers, query).await,
        None => missing_query().into_response(),
    }
}

async fn run(state: Shared, headers: HeaderMap, query: String) -> Response {
    if let Err(error) = state.lineage.catch_up().await {
        return ManagementError::from(error).into_response();
    }
    let limits = crate::catalog::rdf::SparqlLimits::of(&state.config.sparql);
    answer(&headers, move |accept| state.lineage.sparql(&query, accept, &limits))
        .await
        .unwrap_or_else(IntoResponse::into_response)
}
