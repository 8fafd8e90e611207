//! The audit log for auditors (`/management/v3/audit/...`): read-only, open to the operator's API key, to the auditor
//! API key (which opens nothing else), and to auditors' DIDs presenting a self-issued token.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ManagementError, Path, Query};
use crate::audit::ProofError;
use crate::audit::peer::Sizes;
use crate::state::Shared;
use crate::store::AuditFilter;

pub fn routes(state: Shared) -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(entries))
        .routes(routes!(entry))
        .routes(routes!(head))
        .routes(routes!(verify))
        .routes(routes!(consistency))
        .routes(routes!(export))
        .routes(routes!(receipts))
        .routes(routes!(witnessed))
        .route_layer(middleware::from_fn_with_state(state, require_auditor))
}

/// Lets through the operator's key, the auditor key, a named key with role operator or auditor, or a listed auditor DID (with the required credential, if one
/// is configured).
async fn require_auditor(State(state): State<Shared>, request: Request, next: Next) -> Response {
    let audit = &state.config.audit;
    let headers = request.headers();
    if audit.auditor_api_key.as_deref().is_some_and(|key| super::has_key(headers, key)) {
        return next.run(request).await;
    }
    if let Ok(Some(principal)) = super::access::principal(&state, headers).await
        && matches!(super::access::role_of(&principal), "operator" | "auditor")
    {
        return principal.scope(next.run(request)).await;
    }
    if !headers.contains_key("x-api-key") && !audit.auditors.is_empty() {
        match state.identity.verify_request(request.headers()).await {
            Ok(verified) if audit.auditors.contains(&verified.participant) => {
                let holds = match &audit.auditor_credential {
                    None => true,
                    Some(kind) => state.identity.holds(&verified, kind).await,
                };
                if holds {
                    return next.run(request).await;
                }
                tracing::info!(auditor = verified.participant, "auditor without the required credential");
            }
            Ok(verified) => tracing::info!(participant = verified.participant, "not an auditor"),
            Err(error) => tracing::debug!(%error, "audit request without a valid token"),
        }
    }
    ManagementError::Unauthorized.into_response()
}

impl From<ProofError> for ManagementError {
    fn from(error: ProofError) -> Self {
        match error {
            ProofError::Range(message) => ManagementError::field("", message),
            ProofError::Store(error) => error.into(),
        }
    }
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
struct EntryQuery {
    agreement: Option<String>,
    participant: Option<String>,
    dataset: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    /// RFC 3339, inclusive.
    from: Option<String>,
    /// RFC 3339, exclusive.
    to: Option<String>,
    /// Entries after this sequence number (paging).
    after: Option<i64>,
    limit: Option<i64>,
}

fn millis(name: &str, value: Option<&str>) -> Result<Option<i64>, ManagementError> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.timestamp_millis())
                .map_err(|e| ManagementError::field(name, format!("not an RFC 3339 time: {e}")))
        })
        .transpose()
}

fn entry_json(entry: &crate::store::AuditEntry) -> Json {
    json!({
        "seq": entry.seq,
        "type": entry.kind,
        "at": crate::process::rfc3339_millis(entry.at),
        "entry": serde_json::from_str::<Json>(&entry.entry).unwrap_or(Json::Null),
        "rootHash": crate::process::hex(&entry.root),
    })
}

/// `GET /entries`: entries by agreement, participant, dataset, type and time, in order, paged with `after`.
#[utoipa::path(get, path = "/management/v3/audit/entries", tag = "Audit", security(("api_key" = []), ("auditor_token" = [])), operation_id = "list audit entries", params(EntryQuery), responses((status = 200, description = "Entries in order", body = [crate::management::openapi::Object]), crate::management::openapi::ReadErrors))]
async fn entries(State(state): State<Shared>, Query(query): Query<EntryQuery>) -> Result<Response, ManagementError> {
    let filter = AuditFilter {
        from_time: millis("from", query.from.as_deref())?,
        to_time: millis("to", query.to.as_deref())?,
        agreement: query.agreement,
        participant: query.participant,
        dataset: query.dataset,
        kind: query.kind,
        after_seq: query.after,
        limit: query.limit.unwrap_or(100),
    };
    let found = state.store.audit.audit_entries(&filter).await?;
    Ok(axum::Json(found.iter().map(entry_json).collect::<Vec<_>>()).into_response())
}

/// `GET /entries/{seq}`: the entry with its inclusion proof in the current signed head.
#[utoipa::path(get, path = "/management/v3/audit/entries/{seq}", tag = "Audit", security(("api_key" = []), ("auditor_token" = [])), operation_id = "read an audit entry", params(("seq" = u64, Path, description = "The entry's sequence number")), responses((status = 200, description = "The entry with its inclusion proof", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors))]
async fn entry(State(state): State<Shared>, Path(seq): Path<u64>) -> Result<Response, ManagementError> {
    match state.audit.proven_entry(seq).await? {
        Some(proven) => Ok(axum::Json(proven).into_response()),
        None => Err(ManagementError::NotFound(format!("there is no audit entry {seq}"))),
    }
}

#[utoipa::path(get, path = "/management/v3/audit/head", tag = "Audit", security(("api_key" = []), ("auditor_token" = [])), operation_id = "read the signed head", responses((status = 200, description = "The signed tree head", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors))]
async fn head(State(state): State<Shared>) -> Result<Response, ManagementError> {
    Ok(axum::Json(state.audit.current_head().await?.to_json()).into_response())
}

/// Recomputes the stored log now and holds every stored part to it, as the scheduled self-check does: answers
/// `{"intact": true, "entries": n}`, or `intact: false` with the first fault found (the log is then sealed).
#[utoipa::path(post, path = "/management/v3/audit/verify", tag = "Audit", security(("api_key" = []), ("auditor_token" = [])), operation_id = "verify the log now", responses((status = 200, description = "Whether the stored log is intact, with the entries checked or the first fault", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors))]
async fn verify(State(state): State<Shared>) -> Result<Response, ManagementError> {
    let checked = state.audit.self_check().await?;
    let head = state.audit.current_head().await?;
    Ok(axum::Json(json!({
        "intact": checked.fault.is_none(),
        "entries": checked.size,
        "fault": checked.fault.map(|fault| fault.to_string()),
        "checkedAt": chrono::Utc::now().to_rfc3339(),
        "head": head.to_json(),
    }))
    .into_response())
}

#[utoipa::path(get, path = "/management/v3/audit/consistency", tag = "Audit", security(("api_key" = []), ("auditor_token" = [])), operation_id = "prove consistency", params(Sizes), responses((status = 200, description = "A consistency proof between two sizes", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors))]
async fn consistency(State(state): State<Shared>, Query(sizes): Query<Sizes>) -> Result<Response, ManagementError> {
    Ok(axum::Json(crate::audit::peer::consistency_json(&state.audit, &sizes).await?).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Range {
    from: Option<u64>,
    to: Option<u64>,
}

/// `GET /export?from=&to=`: JSON Lines for `hanse audit verify` (the whole log by default).
#[utoipa::path(get, path = "/management/v3/audit/export", tag = "Audit", security(("api_key" = []), ("auditor_token" = [])), operation_id = "export the log", params(Range), responses((status = 200, description = "JSON Lines for `hanse audit verify`", content_type = "application/x-ndjson", body = String), crate::management::openapi::ReadErrors))]
async fn export(State(state): State<Shared>, Query(range): Query<Range>) -> Result<Response, ManagementError> {
    let size = state.store.audit.audit_frontier().await?.size;
    let stream = state.audit.export(range.from.unwrap_or(0), range.to.unwrap_or(size)).await?;
    let stream = futures_util::StreamExt::map(stream, |chunk| chunk.map_err(std::io::Error::other));
    let mut response = axum::body::Body::from_stream(stream).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(response)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ReceiptQuery {
    agreement: Option<String>,
    /// Only the newest this many receipts, newest first (at most 10 000); without it, every receipt in the order
    /// received.
    limit: Option<i64>,
}

/// `GET /receipts`: the receipts peers gave us for their entries of our agreements.
#[utoipa::path(get, path = "/management/v3/audit/receipts", tag = "Audit", security(("api_key" = []), ("auditor_token" = [])), operation_id = "list receipts", params(ReceiptQuery), responses((status = 200, description = "Receipts peers gave for our agreements", body = [crate::management::openapi::Object]), crate::management::openapi::ReadErrors))]
async fn receipts(State(state): State<Shared>, Query(query): Query<ReceiptQuery>) -> Result<Response, ManagementError> {
    if query.limit.is_some_and(|n| !(1..=10_000).contains(&n)) {
        return Err(ManagementError::field("limit", "must lie in 1..=10000"));
    }
    let kept = state.store.audit.receipts(query.agreement.as_deref(), query.limit).await?;
    let list: Vec<Json> = kept
        .into_iter()
        .map(|(agreement, issuer, receipt)| {
            json!({"agreementId": agreement, "issuer": issuer, "receipt": serde_json::from_str::<Json>(&receipt).unwrap_or(Json::Null)})
        })
        .collect();
    Ok(axum::Json(list).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PeerQuery {
    peer: Option<String>,
}

/// `GET /witnessed`: peers' heads we saw, countersigned, or the inconsistencies found.
#[utoipa::path(get, path = "/management/v3/audit/witnessed", tag = "Audit", security(("api_key" = []), ("auditor_token" = [])), operation_id = "list witnessed heads", params(PeerQuery), responses((status = 200, description = "Peers' heads seen and the inconsistencies found since start", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors))]
async fn witnessed(State(state): State<Shared>, Query(query): Query<PeerQuery>) -> Result<Response, ManagementError> {
    let seen = state.store.audit.witnessed(query.peer.as_deref(), 1_000).await?;
    let list: Vec<Json> = seen
        .iter()
        .map(|w| {
            json!({
                "peer": w.peer,
                "size": w.size,
                "rootHash": crate::process::hex(&w.root),
                "treeHead": w.tree_head,
                "cosignature": w.cosignature,
                "problem": w.problem,
                "seenAt": crate::process::rfc3339_millis(w.seen_at),
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "inconsistenciesSinceStart": state.audit.inconsistencies(),
        "witnessed": list,
    }))
    .into_response())
}

/// `POST /management/v3/audit/witness` (operator): witness every peer now.
#[utoipa::path(post, path = "/management/v3/audit/witness", tag = "Audit", operation_id = "witness peers now", responses((status = 200, description = "What each peer showed", body = [crate::management::openapi::Object]), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn witness_now(State(state): State<Shared>) -> Result<Response, ManagementError> {
    let seen = crate::audit::peer::witness_round(&state.audit).await;
    let list: Vec<Json> = seen.iter().map(|w| json!({"peer": w.peer, "size": w.size, "problem": w.problem})).collect();
    Ok(axum::Json(list).into_response())
}
