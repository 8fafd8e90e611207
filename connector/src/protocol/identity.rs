//! Identity on the public listener: the DID document (`/.well-known/did.json`, or the path form of a DID with path
//! segments), the issuer's revocation status list, and the holder's DCP credential service
//! (`POST /dcp/v1/presentations/query`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value as Json;

use crate::state::Shared;

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
    crate::problem::PublicError::dcp(status, reason).into_response()
}

/// `POST /dcp/v1/presentations/query`: a verifier, authenticated by its self-issued token and carrying the access
/// token we granted it, asks for credentials.
pub async fn presentation_query(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let verifier = match state.identity.verify_request(&headers).await {
        Ok(verified) => verified,
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
        Err(refused) => refuse(&verifier.participant, refused),
    }
}

/// `POST /dcp/v1/credentials`: the Storage API, where an issuer we trust delivers credentials it issued to us.
pub async fn store_credentials(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let issuer = match state.identity.verify_request(&headers).await {
        Ok(verified) => verified,
        Err(reason) => {
            tracing::info!(%reason, "credential delivery refused");
            return dcp_error(StatusCode::UNAUTHORIZED, "unauthorized");
        }
    };
    let message: Json = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(error) => return dcp_error(StatusCode::BAD_REQUEST, &format!("the body is not JSON: {error}")),
    };
    match state.identity.store_delivered(&issuer, &message).await {
        Ok(stored) => {
            tracing::info!(issuer = %issuer.participant, stored, "credentials delivered");
            StatusCode::OK.into_response()
        }
        Err(refused) => refuse(&issuer.participant, refused),
    }
}

/// A refused DCP request, logged with why; the sender gets the status and reason.
fn refuse(participant: &str, refused: crate::identity::QueryRefusal) -> Response {
    tracing::info!(%participant, status = refused.status, reason = %refused.reason, "DCP request refused");
    let status = StatusCode::from_u16(refused.status).unwrap_or(StatusCode::BAD_REQUEST);
    dcp_error(status, &refused.reason)
}

/// The 404 of a connector without a self-description, saying why.
fn not_described() -> Response {
    (StatusCode::NOT_FOUND, "this connector publishes no Gaia-X self-description ([gaiax] is not configured)")
        .into_response()
}

/// `GET /.well-known/gaia-x/credentials`: all our Gaia-X credentials in one verifiable presentation (JWT).
pub async fn gaiax_presentation(State(state): State<Shared>) -> Response {
    let Some(described) = state.self_description.as_ref() else { return not_described() };
    let jwt = described.presentation(&state.identity.keys(), &state.catalogue, chrono::Utc::now());
    ([(header::CONTENT_TYPE, crate::identity::gaiax::VP_MEDIA), (header::CACHE_CONTROL, "no-cache")], jwt)
        .into_response()
}

/// `GET /.well-known/gaia-x/credentials/{name}`: one credential (VC JWT), as its `id` names it.
pub async fn gaiax_credential(State(state): State<Shared>, Path(name): Path<String>) -> Response {
    let Some(described) = state.self_description.as_ref() else { return not_described() };
    match described.signed_one(&name, &state.identity.keys(), &state.catalogue, chrono::Utc::now()) {
        Some(jwt) => {
            ([(header::CONTENT_TYPE, crate::identity::gaiax::VC_MEDIA), (header::CACHE_CONTROL, "no-cache")], jwt)
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, format!("no Gaia-X credential named `{name}`")).into_response(),
    }
}

/// `GET /.well-known/x509CertificateChain.pem`: the participant key's certificate chain (the credentials' `x5u`).
pub async fn certificate_chain(State(state): State<Shared>) -> Response {
    match state.self_description.as_ref().and_then(|d| d.chain()) {
        Some(chain) => ([(header::CONTENT_TYPE, "application/x-pem-file")], chain.to_vec()).into_response(),
        None => (StatusCode::NOT_FOUND, "no certificate chain is configured (gaiax.certificate_chain)").into_response(),
    }
}
