//! Apps' access tokens (`/management/v3/apps/tokens`): issued by an operator or a data steward for one app, bound to
//! datasets and actions, listed with their use, revoked at any time. The app API itself is `crate::apps`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use super::{ManagementError, Path, parse_body};
use crate::apps::{ACTIONS, DatasetGrant, Grant};
use crate::catalog::model::DataAddress;
use crate::state::Shared;
use crate::store::AppTokenRow;

/// Requests a minute when the issuer names no rate.
pub const DEFAULT_RATE: u32 = 600;

/// A token as the management API shows it (never the token itself).
pub fn token_json(row: &AppTokenRow) -> Json {
    let grant: Json = serde_json::from_str(&row.body).unwrap_or(Json::Null);
    let now = crate::store::now_millis();
    let state = if row.revoked_at > 0 {
        "REVOKED"
    } else if row.expires_at > 0 && row.expires_at <= now {
        "EXPIRED"
    } else {
        "VALID"
    };
    let datasets: Vec<Json> = grant["datasets"]
        .as_object()
        .map(|datasets| datasets.iter().map(|(id, d)| json!({"dataset": id, "offer": d.get("offer")})).collect())
        .unwrap_or_default();
    json!({
        "@id": row.id,
        "name": row.name,
        "state": state,
        "datasets": datasets,
        "actions": grant["actions"],
        "purpose": grant.get("purpose"),
        "ratePerMinute": grant["ratePerMinute"],
        "allowedOrigins": grant["allowedOrigins"],
        "expiresAt": (row.expires_at > 0).then_some(row.expires_at),
        "createdAt": row.created_at,
        "createdBy": serde_json::from_str::<Json>(&row.created_by).unwrap_or(Json::Null),
        "revokedAt": (row.revoked_at > 0).then_some(row.revoked_at),
        "usage": {
            "requests": row.requests,
            "rows": row.rows_read,
            "bytes": row.bytes_read,
            "lastUsedAt": (row.last_used_at > 0).then_some(row.last_used_at),
        },
    })
}

/// The grant a request body asks for, checked against the catalogue: every dataset offered (or a policy given),
/// every action known and fitting at least one dataset's kind.
fn read_grant(state: &Shared, body: &Json) -> Result<(String, Grant, i64), ManagementError> {
    let text = |name: &str| body.get(name).and_then(Json::as_str).map(str::trim).filter(|t| !t.is_empty());
    let name = text("name").ok_or_else(|| ManagementError::field("name", "the app's name"))?;
    if name.chars().count() > 200 {
        return Err(ManagementError::field("name", "at most 200 characters"));
    }
    let strings = |field: &str| -> Result<Vec<String>, ManagementError> {
        match body.get(field) {
            None | Some(Json::Null) => Ok(Vec::new()),
            Some(Json::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_owned).ok_or_else(|| ManagementError::field(field, "a list of strings"))
                })
                .collect(),
            Some(_) => Err(ManagementError::field(field, "a list of strings")),
        }
    };
    let datasets = strings("datasets")?;
    if datasets.is_empty() || datasets.len() > 100 {
        return Err(ManagementError::field("datasets", "from 1 to 100 dataset ids"));
    }
    let actions = strings("actions")?;
    if actions.is_empty() {
        return Err(ManagementError::field("actions", format!("one or more of {}", ACTIONS.join(", "))));
    }
    if let Some(unknown) = actions.iter().find(|a| !ACTIONS.contains(&a.as_str())) {
        return Err(ManagementError::field("actions", format!("`{unknown}` is not one of {}", ACTIONS.join(", "))));
    }
    let policy = match body.get("policy") {
        None | Some(Json::Null) => None,
        Some(policy) => {
            let parsed = hanse_policy::Policy::from_json(policy)
                .map_err(|e| ManagementError::field("policy", format!("not an ODRL policy: {e}")))?;
            Some(parsed.to_dsp_json())
        }
    };
    let offers = body.get("offers").and_then(Json::as_object);
    let mut granted = BTreeMap::new();
    for id in &datasets {
        let field = format!("datasets[{id}]");
        let asset = state
            .catalogue
            .asset(id)
            .ok_or_else(|| ManagementError::field(&field, format!("there is no dataset `{id}`")))?;
        let fits = |action: &str| {
            matches!(
                (&asset.value.data_address, action),
                (DataAddress::Table { .. }, "read" | "query" | "compute") | (DataAddress::File { .. }, "file")
            )
        };
        if !actions.iter().any(|a| fits(a)) {
            return Err(ManagementError::field(
                &field,
                format!(
                    "no granted action applies to a {} dataset (tables: read, query, compute; files: file)",
                    asset.value.data_address.kind()
                ),
            ));
        }
        let grant = match &policy {
            Some(policy) => DatasetGrant { offer: None, policy: policy.clone() },
            None => {
                let candidates = state.catalogue.offers_for(id);
                let named = offers.and_then(|o| o.get(id)).and_then(Json::as_str);
                let chosen = match named {
                    Some(named) => candidates.iter().find(|o| o.definition_id == named).ok_or_else(|| {
                        ManagementError::field(&format!("offers[{id}]"), format!("`{named}` does not offer `{id}`"))
                    })?,
                    None => match candidates.as_slice() {
                        [only] => only,
                        [] => {
                            return Err(ManagementError::field(
                                &field,
                                format!("`{id}` is not offered; give the token a `policy`"),
                            ));
                        }
                        _ => {
                            return Err(ManagementError::field(
                                &format!("offers[{id}]"),
                                format!("`{id}` has several offers; name the contract definition whose policy applies"),
                            ));
                        }
                    },
                };
                DatasetGrant { offer: Some(chosen.definition_id.clone()), policy: chosen.policy.to_dsp_json() }
            }
        };
        granted.insert(id.clone(), grant);
    }
    let rate = match body.get("ratePerMinute") {
        None | Some(Json::Null) => DEFAULT_RATE,
        Some(rate) => rate
            .as_u64()
            .filter(|r| (1..=1_000_000).contains(r))
            .ok_or_else(|| ManagementError::field("ratePerMinute", "a number from 1 to 1000000"))?
            as u32,
    };
    let origins = strings("allowedOrigins")?;
    for origin in &origins {
        let parsed = reqwest::Url::parse(origin).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
        if parsed.is_none_or(|u| u.origin().ascii_serialization() != *origin) {
            return Err(ManagementError::field(
                "allowedOrigins",
                format!("`{origin}` is not an origin (scheme://host[:port])"),
            ));
        }
    }
    let expires_at = match (body.get("expiresAt"), body.get("expiresInSeconds")) {
        (Some(at), _) if !at.is_null() => at
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
            .filter(|t| *t > crate::store::now_millis())
            .ok_or_else(|| ManagementError::field("expiresAt", "an RFC 3339 time in the future"))?,
        (_, Some(seconds)) if !seconds.is_null() => seconds
            .as_i64()
            .filter(|s| *s > 0)
            .map(|s| crate::store::now_millis().saturating_add(s.saturating_mul(1000)))
            .ok_or_else(|| ManagementError::field("expiresInSeconds", "a positive number of seconds"))?,
        _ => 0,
    };
    let purpose = text("purpose").map(str::to_owned);
    Ok((
        name.to_owned(),
        Grant { datasets: granted, actions, purpose, rate_per_minute: rate, allowed_origins: origins },
        expires_at,
    ))
}

/// `POST /management/v3/apps/tokens`: a token for one app; the answer shows the token, once.
#[utoipa::path(post, path = "/management/v3/apps/tokens", tag = "Access", operation_id = "issue an app token",
    request_body(content = crate::management::openapi::Object, description = "The app's name, its datasets and actions (read, query, compute, file); optionally purpose, policy (else each dataset's offer, or `offers` naming the contract definition per dataset), expiresAt or expiresInSeconds, ratePerMinute (600), allowedOrigins",
        example = json!({"name": "Diabetes companion app", "datasets": ["t2d-cohort"], "actions": ["read", "query", "compute"], "ratePerMinute": 120, "expiresInSeconds": 2592000})),
    responses((status = 201, description = "The token, shown this once, and what it grants", body = crate::management::openapi::Object),
        crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn issue(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let body = parse_body(&body)?;
    let (name, grant, expires_at) = read_grant(&state, &body)?;
    let secret = super::access::new_secret(crate::apps::TOKEN_PREFIX);
    let row = AppTokenRow {
        id: format!("app-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        name,
        body: serde_json::to_string(&grant).map_err(|e| ManagementError::Internal(e.to_string()))?,
        expires_at,
        created_at: crate::store::now_millis(),
        created_by: crate::store::Principal::current().to_string(),
        revoked_at: 0,
        requests: 0,
        rows_read: 0,
        bytes_read: 0,
        last_used_at: 0,
    };
    state.store.governance.create_app_token(&row, &hanse_core::encode::sha256_hex(secret.as_bytes())).await?;
    tracing::info!(token = row.id, app = row.name, "app token issued");
    let mut answer = token_json(&row);
    answer["token"] = json!(secret);
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// `GET /management/v3/apps/tokens`: every token with its use, newest first.
#[utoipa::path(get, path = "/management/v3/apps/tokens", tag = "Access", operation_id = "list app tokens",
    responses((status = 200, description = "The tokens, what they grant and their use", body = [crate::management::openapi::Object]),
        crate::management::openapi::ReadErrors))]
pub async fn list(State(state): State<Shared>) -> Result<Response, ManagementError> {
    let tokens = state.store.governance.app_tokens().await?;
    Ok(axum::Json(tokens.iter().map(token_json).collect::<Vec<_>>()).into_response())
}

/// `GET /management/v3/apps/tokens/{id}`.
#[utoipa::path(get, path = "/management/v3/apps/tokens/{id}", tag = "Access", operation_id = "read an app token",
    params(("id" = String, Path, description = "The token's id")),
    responses((status = 200, description = "The token, what it grants and its use", body = crate::management::openapi::Object),
        crate::management::openapi::ReadErrors))]
pub async fn read(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    let token = state.store.governance.app_token(&id).await?;
    let token = token.ok_or_else(|| ManagementError::NotFound(format!("there is no app token `{id}`")))?;
    Ok(axum::Json(token_json(&token)).into_response())
}

/// `POST /management/v3/apps/tokens/{id}/revoke`: the app's next call is a 401.
#[utoipa::path(post, path = "/management/v3/apps/tokens/{id}/revoke", tag = "Access", operation_id = "revoke an app token",
    params(("id" = String, Path, description = "The token's id")),
    responses((status = 200, description = "The revoked token", body = crate::management::openapi::Object),
        crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn revoke(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    if !state.store.governance.revoke_app_token(&id).await? {
        return Err(ManagementError::NotFound(format!("there is no valid app token `{id}`")));
    }
    tracing::info!(token = %id, "app token revoked");
    read(State(state), Path(id)).await
}
