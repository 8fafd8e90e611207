//! Credentials on the management API.
//!
//! As **holder**: `POST /management/v3/credentials` imports a credential (`{"credential": "<VC JWT>"}`),
//! `GET /management/v3/credentials` lists the held ones, `DELETE /management/v3/credentials/{id}` drops one.
//! As **issuer**: `POST /management/v3/credentials/issue` signs one (`{"type", "subject", "claims", "validUntil"}`),
//! `GET /management/v3/credentials/issued` lists them, `POST /management/v3/credentials/issued/{id}/revoke` revokes
//! one (its bit in the status list the public listener serves).

use super::Path;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use serde_json::{Value as Json, json};

use super::ManagementError;
use crate::identity::credentials::IssueRequest;
use crate::identity::{self, CredentialOpError};
use crate::state::Shared;
use crate::store::{HeldCredential, IssuedCredential};

impl From<CredentialOpError> for ManagementError {
    fn from(error: CredentialOpError) -> Self {
        match error {
            CredentialOpError::Invalid(message) => ManagementError::field("credential", message),
            CredentialOpError::Credential(error) => ManagementError::field("credential", error.to_string()),
            CredentialOpError::Store(error) => error.into(),
        }
    }
}

fn body_object(body: &Bytes) -> Result<serde_json::Map<String, Json>, ManagementError> {
    match serde_json::from_slice(body) {
        Ok(Json::Object(object)) => Ok(object),
        Ok(_) => Err(ManagementError::field("", "the body must be a JSON object")),
        Err(error) => Err(ManagementError::field("", format!("the body is not JSON: {error}"))),
    }
}

fn millis(at: Option<i64>) -> Json {
    at.and_then(DateTime::from_timestamp_millis).map(|t| json!(t.to_rfc3339())).unwrap_or(Json::Null)
}

fn held_json(credential: &HeldCredential) -> Json {
    json!({"@id": credential.id, "type": credential.types.split(' ').collect::<Vec<_>>(),
           "issuer": credential.issuer, "validUntil": millis(credential.valid_until),
           "importedAt": millis(Some(credential.imported_at)), "credential": credential.jwt})
}

fn issued_json(credential: &IssuedCredential) -> Json {
    json!({"@id": credential.id, "type": credential.types.split(' ').collect::<Vec<_>>(),
           "subject": credential.subject, "statusListIndex": credential.status_index,
           "revoked": credential.revoked, "issuedAt": millis(Some(credential.issued_at)),
           "revokedAt": millis(credential.revoked_at)})
}

/// `POST /management/v3/credentials`: import a credential this participant holds.
#[utoipa::path(post, path = "/management/v3/credentials", tag = "Credentials", operation_id = "import a credential", request_body(content = crate::management::openapi::CredentialImport, content_type = "application/json"), responses((status = 200, description = "The credential held", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn import(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let object = body_object(&body)?;
    let jwt = object
        .get("credential")
        .and_then(Json::as_str)
        .ok_or_else(|| ManagementError::field("credential", "is required: the credential as a JWT"))?;
    let summary = identity::import_credential(&state.store.identity, state.identity.did(), jwt).await?;
    state.identity.refresh_held().await?;
    tracing::info!(id = %summary.id, issuer = %summary.issuer, types = ?summary.types, "credential imported");
    Ok(axum::Json(json!({"@id": summary.id, "type": summary.types, "issuer": summary.issuer})).into_response())
}

/// `GET /management/v3/credentials`.
#[utoipa::path(get, path = "/management/v3/credentials", tag = "Credentials", operation_id = "list held credentials", responses((status = 200, description = "Held credentials", body = [crate::management::openapi::Object]), crate::management::openapi::ReadErrors))]
pub async fn list(State(state): State<Shared>) -> Result<Response, ManagementError> {
    let held = state.store.identity.held_credentials().await?;
    Ok(axum::Json(held.iter().map(held_json).collect::<Vec<_>>()).into_response())
}

/// `DELETE /management/v3/credentials/{id}`.
#[utoipa::path(delete, path = "/management/v3/credentials/{id}", tag = "Credentials", operation_id = "delete a held credential", params(("id" = String, Path, description = "The credential id")), responses((status = 204, description = "Deleted"), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn delete(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    state.store.identity.delete_held_credential(&id).await?;
    state.identity.refresh_held().await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// `POST /management/v3/credentials/issue`.
#[utoipa::path(post, path = "/management/v3/credentials/issue", tag = "Credentials", operation_id = "issue a credential", request_body(content = crate::management::openapi::CredentialIssue, content_type = "application/json"), responses((status = 200, description = "The credential issued", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn issue(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let object = body_object(&body)?;
    let deliver = match object.get("deliver") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(deliver)) => *deliver,
        Some(_) => return Err(ManagementError::field("deliver", "must be true or false")),
    };
    let request =
        IssueRequest::from_json(&object).map_err(|(field, message)| ManagementError::field(field, message))?;
    let (id, jwt) = state.identity.issue_credential(&request).await?;
    tracing::info!(%id, subject = %request.subject, kind = %request.credential_type, "credential issued");
    let mut answer = json!({"@id": id, "credential": jwt});
    if deliver {
        let delivered = state.identity.deliver(&request.subject, &id, &request.credential_type, &jwt).await;
        if let Err(reason) = &delivered {
            tracing::warn!(%id, %reason, "credential not delivered");
            answer["deliveryError"] = json!(reason);
        }
        answer["delivered"] = json!(delivered.is_ok());
    }
    Ok(axum::Json(answer).into_response())
}

/// `GET /management/v3/credentials/issued`.
#[utoipa::path(get, path = "/management/v3/credentials/issued", tag = "Credentials", operation_id = "list issued credentials", responses((status = 200, description = "Issued credentials", body = [crate::management::openapi::Object]), crate::management::openapi::ReadErrors))]
pub async fn issued(State(state): State<Shared>) -> Result<Response, ManagementError> {
    let issued = state.store.identity.issued_credentials().await?;
    Ok(axum::Json(issued.iter().map(issued_json).collect::<Vec<_>>()).into_response())
}

/// `POST /management/v3/credentials/issued/{id}/revoke`.
#[utoipa::path(post, path = "/management/v3/credentials/issued/{id}/revoke", tag = "Credentials", operation_id = "revoke a credential", params(("id" = String, Path, description = "The issued credential id")), responses((status = 200, description = "The credential, revoked", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn revoke(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    let revoked = state.store.identity.revoke_issued_credential(&id).await?;
    tracing::info!(%id, "credential revoked");
    Ok(axum::Json(issued_json(&revoked)).into_response())
}

/// `POST /management/v3/keys/rotate`: retires the participant key and signs with a fresh one from now on (as
/// `hanse keys rotate` does, without a restart). The retired key stays in the DID document as a verification method,
/// so that what it signed still verifies; it signs tokens no more after one token lifetime.
#[utoipa::path(post, path = "/management/v3/keys/rotate", tag = "Credentials", operation_id = "rotate the participant key", responses((status = 200, description = "The new key and the retired one", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn rotate_key(State(state): State<Shared>) -> Result<Response, ManagementError> {
    let retired = state.identity.keys().current_kid().to_owned();
    let file = state.config.participant.key_file.clone();
    let rotated = tokio::task::spawn_blocking(move || identity::keys::rotate(&file))
        .await
        .map_err(|e| ManagementError::Internal(e.to_string()))?;
    rotated.map_err(|e| match e {
        identity::keys::KeyError::Write { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists => {
            ManagementError::Conflict("the key was rotated less than a second ago; try again".into())
        }
        other => ManagementError::Internal(format!("the key was not rotated: {other}")),
    })?;
    state.identity.reload_keys().map_err(|e| ManagementError::Internal(format!("the new key cannot be read: {e}")))?;
    let current = state.identity.keys().current_kid().to_owned();
    let event = crate::audit::Event::new(
        "management.change",
        json!({"who": crate::store::Principal::current(), "resource": "key", "operation": "rotate", "id": current, "retired": retired}),
    );
    state.store.audit.append_audit(vec![event]).await?;
    tracing::info!(key = %current, %retired, "participant key rotated");
    Ok(axum::Json(json!({"keyId": current, "retiredKeyId": retired})).into_response())
}
