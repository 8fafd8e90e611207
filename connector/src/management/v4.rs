//! The EDC Management API v4 beside v3 (decision 0020): the same calls and bodies, with v4's JSON-LD context.
//!
//! EDC 0.17's v4 bodies name `https://w3id.org/edc/connector/management/v2`; requests are read with Hanse's reading of
//! it ([`crate::catalog::model::expand_body`]), and every JSON-LD answer carries exactly that context as EDC's v4
//! schemas require (`"@context": [".../management/v2"]`), where v3 answers carry an inline context.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

/// The context EDC's Management API v4 speaks.
pub const CONTEXT: &str = hanse_vocab::contexts::EDC_MANAGEMENT_V2;

/// The largest answer rewritten; anything larger passes unchanged (management answers are far smaller).
const LIMIT: usize = 64 << 20;

/// Middleware on `/management/v4`: replaces the context of every JSON-LD answer by the v4 one.
pub async fn answers(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, LIMIT).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, "cannot read a v4 answer");
            return super::ManagementError::Internal("the answer cannot be read".into()).into_response();
        }
    };
    let Ok(mut value) = serde_json::from_slice::<Json>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    match &mut value {
        Json::Array(items) => items.iter_mut().for_each(v4_context),
        other => v4_context(other),
    }
    let text = serde_json::to_vec(&value).unwrap_or_else(|_| bytes.to_vec());
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(text))
}

fn v4_context(value: &mut Json) {
    if let Some(object) = value.as_object_mut()
        && object.contains_key("@context")
    {
        object.insert("@context".into(), json!([CONTEXT]));
    }
}
