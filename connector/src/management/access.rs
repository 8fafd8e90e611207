//! Who may call what on the management listener (decision 0035): the configured operator key, and named keys with a
//! role, made, listed, rotated and revoked through `/management/v3/api-keys` (or `hanse api-keys`). A named key is
//! shown once, when it is made or rotated; the store keeps its SHA-256 only. Every call runs as its key's
//! [`Principal`](crate::store::Principal), so that every audit entry it causes names the key.
//!
//! | role       | may                                                                              |
//! |------------|----------------------------------------------------------------------------------|
//! | `operator` | everything                                                                       |
//! | `steward`  | read; the catalogue (assets, policies, contract definitions, tables, app tokens) |
//! | `approver` | read; operator calls on negotiations and transfers; publication decisions          |
//! | `reader`   | read (GET, queries, SPARQL, policy checks)                                       |
//! | `auditor`  | the audit log only                                                               |
//! | `metrics`  | `/metrics` only                                                                  |

use axum::body::Bytes;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use super::{ManagementError, Path, parse_body};
use crate::state::Shared;
use crate::store::{ApiKeyRow, Principal};

/// The roles a named key can have.
pub const ROLES: [&str; 6] = ["operator", "steward", "approver", "reader", "auditor", "metrics"];

/// What a management call needs its key's role to allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Reading: GETs, queries, SPARQL, policy validation and explanation.
    Read,
    /// Changing the catalogue, its tables and apps' tokens.
    Catalogue,
    /// An operator's decision on a process.
    Decide,
    /// Everything else: starting processes and jobs, keys, credentials, the peer network.
    Operate,
}

impl Need {
    /// What a call needs, from its method and route template (`/management/v3/...` or `/management/v4/...`).
    pub fn of(method: &Method, route: &str) -> Need {
        let path = ["/management/v3", "/management/v4", "/management"]
            .iter()
            .find_map(|prefix| route.strip_prefix(prefix))
            .unwrap_or(route);
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        if first == "api-keys" || first == "keys" || first == "credentials" && *method != Method::GET {
            return Need::Operate;
        }
        let queries = path.ends_with("/request") && first != "catalog"
            || path.ends_with("/explain")
            || path.ends_with("/validate")
            || matches!(path, "/sparql" | "/broker/sparql" | "/search" | "/lineage/sparql");
        if *method == Method::GET || queries {
            return Need::Read;
        }
        match first {
            "assets" | "policydefinitions" | "contractdefinitions" | "tables" | "apps" => Need::Catalogue,
            "contractnegotiations" | "transferprocesses" if path.ends_with("/{call}") => Need::Decide,
            "approvals" => Need::Decide,
            _ => Need::Operate,
        }
    }
}

/// Whether `role` allows what a call needs.
pub fn allows(role: &str, need: Need) -> bool {
    match role {
        "operator" => true,
        "steward" => matches!(need, Need::Read | Need::Catalogue),
        "approver" => matches!(need, Need::Read | Need::Decide),
        "reader" => need == Need::Read,
        _ => false,
    }
}

/// The key a request carries in `X-Api-Key`: the configured operator key, or a valid named key, with its principal.
/// `None` for no key or an unknown one.
pub async fn principal(state: &Shared, headers: &axum::http::HeaderMap) -> Result<Option<Principal>, ManagementError> {
    match headers.get("x-api-key") {
        Some(given) => principal_of(state, given.as_bytes()).await,
        None => Ok(None),
    }
}

/// The principal of key `given` (from `X-Api-Key`, or a scraper's bearer token), if this listener knows it.
pub async fn principal_of(state: &Shared, given: &[u8]) -> Result<Option<Principal>, ManagementError> {
    let digest = hanse_core::encode::sha256_hex(given);
    if super::is_key(given, &state.config.management.api_key) {
        return Ok(Some(Principal::api_key("management", "operator", &digest)));
    }
    // Looked up by the key's SHA-256: the lookup's timing tells nothing of the key.
    let found = state.store.governance.api_key_by_hash(&digest).await?;
    Ok(found.map(|key| Principal::api_key(&key.id, &key.role, &digest)))
}

/// The role of a principal (`operator` for the configured key).
pub fn role_of(principal: &Principal) -> &str {
    match principal {
        Principal::ApiKey { role, .. } => role,
        Principal::CommandLine(_) => "operator",
    }
}

/// The guard of the management API: a known key whose role allows the call, which then runs as that key's
/// principal. 401 without a known key, 403 naming the role for a call it may not make.
pub async fn require_api_key(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let principal = match principal(&state, request.headers()).await {
        Ok(Some(principal)) => principal,
        Ok(None) => {
            tracing::debug!("management request without a valid X-Api-Key");
            return ManagementError::Unauthorized.into_response();
        }
        Err(error) => return error.into_response(),
    };
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let need = Need::of(request.method(), &route);
    let role = role_of(&principal);
    if !allows(role, need) {
        tracing::info!(role, route, "management call outside the key's role");
        return ManagementError::Forbidden(format!(
            "a key with role `{role}` may not call {} {route} (it needs {})",
            request.method(),
            match need {
                Need::Read => "a role that reads",
                Need::Catalogue => "role steward or operator",
                Need::Decide => "role approver or operator",
                Need::Operate => "role operator",
            }
        ))
        .into_response();
    }
    principal.scope(next.run(request)).await
}

/// A new key: 32 random bytes in hex (as `hanse init` makes the operator key), behind a prefix that secret scanners
/// can match.
pub fn new_secret(prefix: &str) -> String {
    format!("{prefix}{}", crate::init::random_hex(32).expect("the system's random source works"))
}

fn key_json(row: &ApiKeyRow) -> Json {
    json!({
        "@id": row.id,
        "name": row.name,
        "role": row.role,
        "createdAt": row.created_at,
        "createdBy": serde_json::from_str::<Json>(&row.created_by).unwrap_or(Json::Null),
        "rotatedAt": row.rotated_at,
        "revokedAt": (row.revoked_at > 0).then_some(row.revoked_at),
        "state": if row.revoked_at > 0 { "REVOKED" } else { "VALID" },
    })
}

/// `POST /management/v3/api-keys`: a named key with a role; the answer shows the key, once.
#[utoipa::path(post, path = "/management/v3/api-keys", tag = "Access", operation_id = "create an API key",
    request_body(content = crate::management::openapi::Object, description = "`{\"@id\"?, \"name\", \"role\"}`; role is one of operator, steward, approver, reader, auditor, metrics",
        example = json!({"name": "Data steward of cardiology", "role": "steward"})),
    responses((status = 201, description = "The key, shown this once, with its id and role", body = crate::management::openapi::Object),
        crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn create(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let body = parse_body(&body)?;
    let text = |name: &str| body.get(name).and_then(Json::as_str).map(str::trim).filter(|t| !t.is_empty());
    let name = text("name").ok_or_else(|| ManagementError::field("name", "what the key is for"))?;
    if name.chars().count() > 200 {
        return Err(ManagementError::field("name", "at most 200 characters"));
    }
    let role = text("role").ok_or_else(|| ManagementError::field("role", format!("one of {}", ROLES.join(", "))))?;
    if !ROLES.contains(&role) {
        return Err(ManagementError::field("role", format!("`{role}` is not one of {}", ROLES.join(", "))));
    }
    let id = match text("@id") {
        Some(id) => {
            hanse_core::ids::check_id(id).map_err(|e| ManagementError::field("@id", e))?;
            if id == "management" {
                return Err(ManagementError::field("@id", "`management` is the configured operator key"));
            }
            id.to_owned()
        }
        None => format!("key-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
    };
    let secret = new_secret("hmk_");
    let row = state
        .store
        .governance
        .create_api_key(&id, name, role, &hanse_core::encode::sha256_hex(secret.as_bytes()))
        .await?;
    tracing::info!(%id, role, "API key created");
    let mut answer = key_json(&row);
    answer["key"] = json!(secret);
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// `GET /management/v3/api-keys`: every named key (never the key itself), revoked ones included.
#[utoipa::path(get, path = "/management/v3/api-keys", tag = "Access", operation_id = "list API keys",
    responses((status = 200, description = "The named keys with their roles and states", body = [crate::management::openapi::Object]),
        crate::management::openapi::ReadErrors))]
pub async fn list(State(state): State<Shared>) -> Result<Response, ManagementError> {
    let keys = state.store.governance.api_keys().await?;
    Ok(axum::Json(keys.iter().map(key_json).collect::<Vec<_>>()).into_response())
}

/// `POST /management/v3/api-keys/{id}/rotate`: a new value for a valid key; the old one stops working at once.
#[utoipa::path(post, path = "/management/v3/api-keys/{id}/rotate", tag = "Access", operation_id = "rotate an API key",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 200, description = "The key's new value, shown this once", body = crate::management::openapi::Object),
        crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn rotate(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    let secret = new_secret("hmk_");
    let rotated =
        state.store.governance.rotate_api_key(&id, &hanse_core::encode::sha256_hex(secret.as_bytes())).await?;
    let row = rotated.ok_or_else(|| ManagementError::NotFound(format!("there is no valid API key `{id}`")))?;
    tracing::info!(%id, "API key rotated");
    let mut answer = key_json(&row);
    answer["key"] = json!(secret);
    Ok(axum::Json(answer).into_response())
}

/// `DELETE /management/v3/api-keys/{id}`: revokes a key; its next call is a 401. The record stays, so that audit
/// entries keep naming a known key.
#[utoipa::path(delete, path = "/management/v3/api-keys/{id}", tag = "Access", operation_id = "revoke an API key",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 204, description = "Revoked"), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn revoke(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    if !state.store.governance.revoke_api_key(&id).await? {
        return Err(ManagementError::NotFound(format!("there is no valid API key `{id}`")));
    }
    tracing::info!(%id, "API key revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_need_what_their_route_and_method_say() {
        let cases = [
            (Method::GET, "/management/v3/assets", Need::Read),
            (Method::POST, "/management/v3/assets/request", Need::Read),
            (Method::POST, "/management/v4/policydefinitions/{id}/explain", Need::Read),
            (Method::POST, "/management/sparql", Need::Read),
            (Method::POST, "/management/v3/assets", Need::Catalogue),
            (Method::DELETE, "/management/v3/contractdefinitions/{id}", Need::Catalogue),
            (Method::POST, "/management/v3/tables", Need::Catalogue),
            (Method::POST, "/management/v3/tables/fhir", Need::Catalogue),
            (Method::POST, "/management/v3/apps/tokens", Need::Catalogue),
            (Method::POST, "/management/v3/contractnegotiations/{id}/{call}", Need::Decide),
            (Method::POST, "/management/v3/transferprocesses/{id}/{call}", Need::Decide),
            (Method::POST, "/management/v3/approvals/publications/{dataset}/{decision}", Need::Decide),
            (Method::GET, "/management/v3/approvals", Need::Read),
            (Method::POST, "/management/v3/contractnegotiations", Need::Operate),
            (Method::POST, "/management/v3/catalog/request", Need::Operate),
            (Method::POST, "/management/v3/api-keys", Need::Operate),
            (Method::GET, "/management/v3/api-keys", Need::Operate),
            (Method::POST, "/management/v3/keys/rotate", Need::Operate),
            (Method::POST, "/management/v3/credentials/issue", Need::Operate),
            (Method::GET, "/management/v3/credentials", Need::Read),
            (Method::POST, "/management/v3/peers", Need::Operate),
        ];
        for (method, route, need) in cases {
            assert_eq!(Need::of(&method, route), need, "{method} {route}");
        }
    }

    #[test]
    fn roles_allow_what_the_table_says() {
        let needs = [Need::Read, Need::Catalogue, Need::Decide, Need::Operate];
        let allowed = |role| needs.iter().filter(|n| allows(role, **n)).copied().collect::<Vec<_>>();
        assert_eq!(allowed("operator"), needs);
        assert_eq!(allowed("steward"), [Need::Read, Need::Catalogue]);
        assert_eq!(allowed("approver"), [Need::Read, Need::Decide]);
        assert_eq!(allowed("reader"), [Need::Read]);
        assert!(allowed("auditor").is_empty() && allowed("metrics").is_empty() && allowed("nobody").is_empty());
    }
}
