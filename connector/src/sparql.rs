//! The SPARQL 1.1 protocol as every endpoint of Hanse speaks it (the local catalogue on the management listener, the
//! broker's federation graph on both): where the query comes from (`application/sparql-query`, a form or query
//! parameter `query`, JSON `{"query": ...}`), and the answer in the representation `Accept` asks for, or the error in
//! the management API's shape.

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::catalog::rdf::SparqlError;
use crate::error::ManagementError;

/// `?query=` of a `GET`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueryParameter {
    pub query: Option<String>,
}

/// The error of a request without a query.
pub fn missing_query() -> ManagementError {
    ManagementError::field("query", "is required")
}

/// The query of a POSTed SPARQL request: the body as `application/sparql-query`, a form's or JSON's `query`.
pub fn posted_query(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let text = String::from_utf8_lossy(body).into_owned();
    let query = if content_type.starts_with("application/x-www-form-urlencoded") {
        serde_urlencoded_query(&text)
    } else if content_type.starts_with("application/json") {
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("query").and_then(|q| q.as_str()).map(str::to_owned))
    } else {
        Some(text)
    };
    query.filter(|q| !q.trim().is_empty())
}

fn serde_urlencoded_query(form: &str) -> Option<String> {
    reqwest::Url::parse(&format!("http://form/?{form}"))
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == "query")
        .map(|(_, v)| v.into_owned())
}

/// Evaluates a query off the async threads with the request's `Accept`, and answers its result or its error.
pub async fn answer(
    headers: &HeaderMap,
    evaluate: impl FnOnce(&str) -> Result<(&'static str, Vec<u8>), SparqlError> + Send + 'static,
) -> Result<Response, ManagementError> {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let answer = tokio::task::spawn_blocking(move || evaluate(&accept)).await;
    match answer {
        Ok(Ok((content_type, body))) => Ok(([(header::CONTENT_TYPE, content_type)], body).into_response()),
        Ok(Err(SparqlError::NotAcceptable(message))) => Err(ManagementError::NotAcceptable(message)),
        Ok(Err(error @ SparqlError::Building(_))) => Err(ManagementError::Unavailable(error.to_string())),
        Ok(Err(error)) if error.is_request_error() => Err(ManagementError::field("query", error.to_string())),
        Ok(Err(error)) => Err(ManagementError::Internal(error.to_string())),
        Err(error) => Err(ManagementError::Internal(format!("the query task failed: {error}"))),
    }
}
