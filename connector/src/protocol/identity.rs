//! Identity on the public listener: the DID document (`/.well-known/did.json`, or the path form of a DID with path
//! segments), the issuer's revocation status list, and the holder's DCP credential service
//! (`POST /dcp/v1/presentations/query`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use crate::identity::credentials::DCP_CONTEXT;
use crate::server::Shared;

/// `GET /.well-known/did.json`: our DID document.
pub async fn did_document(State(state): State<Shared>) -> Response {
    ([(header::CONTENT_TYPE, "application/did+json")], axum::Json(state.identity.did_document())).into_response()
}

/// `GET /credentials/status/revocation`: our Bitstring Status List credential (a VC secured as JWT).
pub async fn status_list(State(state): State<Shared>) -> Response {
    match state.identity.status_list_credential().await {
        Ok(jwt) => ([(header::CONTENT_TYPE, "application/vc+ld+json+jwt"), (header::CACHE_CONTROL, "no-cache")], jwt)
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot build the status list");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

fn dcp_error(status: StatusCode, reason: &str) -> Response {
    let body = json!({"@context": [DCP_CONTEXT], "type": "ErrorResponse", "error": reason});
    (status, axum::Json(body)).into_response()
}

/// `POST /dcp/v1/presentations/query`: a verifier, authenticated by its self-issued token, asks for credentials.
pub async fn presentation_query(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let verifier = match state.identity.verify_request(&headers).await {
        Ok(verified) => verified.participant,
        Err(reason) => {
            tracing::info!(%reason, "presentation query refused");
            return dcp_error(StatusCode::UNAUTHORIZED, "unauthorized");
        }
    };
    let query: Json = match serde_json::from_slice(&body) {
        Ok(query) => query,
        Err(error) => return dcp_error(StatusCode::BAD_REQUEST, &format!("the body is not JSON: {error}")),
    };
    match state.identity.answer_presentation_query(&verifier, &query).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(reason) => dcp_error(StatusCode::BAD_REQUEST, &reason),
    }
}
