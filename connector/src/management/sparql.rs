//! `GET|POST /management/sparql`: read-only SPARQL 1.1 over the local catalogue graph. The query comes as
//! `application/sparql-query`, a form or query parameter `query`, or JSON `{"query": ...}`; `Accept` chooses
//! SPARQL JSON / XML / CSV / TSV for solutions and Turtle / N-Triples / RDF/XML for graphs. Updates are refused.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use crate::sparql::{QueryParameter, answer, missing_query, posted_query};
use crate::state::Shared;

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
