//! `GET|POST /management/sparql`: read-only SPARQL 1.1 over the local catalogue graph. The query comes as
//! `application/sparql-query`, a form or query parameter `query`, or JSON `{"query": ...}`; `Accept` chooses
//! SPARQL JSON / XML / CSV / TSV for solutions and Turtle / N-Triples / RDF/XML for graphs. Updates are refused.

use super::Query;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::sparql::{QueryParameter, answer, missing_query, posted_query};
use crate::state::Shared;

#[utoipa::path(get, path = "/management/sparql", tag = "SPARQL", operation_id = "SPARQL over the catalogue", params(QueryParameter), responses((status = 200, description = "Results in the format `Accept` asks for", content((String = "application/sparql-results+json"), (String = "application/sparql-results+xml"), (String = "text/csv"), (String = "text/tab-separated-values"), (String = "text/turtle"), (String = "application/n-triples"), (String = "application/rdf+xml"))), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
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

#[utoipa::path(post, path = "/management/sparql", tag = "SPARQL", operation_id = "SPARQL over the catalogue (body)", request_body(content((String = "application/sparql-query"), (crate::management::openapi::SparqlQuery = "application/x-www-form-urlencoded"), (crate::management::openapi::SparqlQuery = "application/json"))), responses((status = 200, description = "Results in the format `Accept` asks for", content((String = "application/sparql-results+json"), (String = "application/sparql-results+xml"), (String = "text/csv"), (String = "text/tab-separated-values"), (String = "text/turtle"), (String = "application/n-triples"), (String = "application/rdf+xml"))), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn query_post(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    match posted_query(&headers, &body) {
        Some(query) => run(state, headers, query).await,
        None => missing_query().into_response(),
    }
}

async fn run(state: Shared, headers: HeaderMap, query: String) -> Response {
    let limits = crate::catalog::rdf::SparqlLimits::of(&state.config.sparql);
    answer(&headers, move |accept| state.catalogue.sparql(&query, accept, &limits))
        .await
        .unwrap_or_else(IntoResponse::into_response)
}
