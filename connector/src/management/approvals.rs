//! Approvals (`/management/v3/approvals`): what waits for an operator's decision — negotiations and transfers held
//! for manual approval, datasets waiting for a second key before publication — and every decision taken, from the
//! audit log (`operator.decision`, `publication.decision`), with who took it, when, why and the policy trace shown.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{ManagementError, Path, Query, optional_body};
use crate::state::Shared;
use crate::store::{AuditFilter, ProcessKind, ProcessRow, PublicationError, PublicationRow};

/// What to list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    /// `pending` (the default) or `decided`.
    pub status: Option<String>,
    /// `negotiation`, `transfer` or `publication`.
    pub kind: Option<String>,
    /// Decisions about this dataset only.
    pub dataset: Option<String>,
    /// Decisions concerning this participant only (a DID).
    pub participant: Option<String>,
    /// Decisions after this audit sequence number (paging).
    pub after: Option<i64>,
    /// At most this many decisions (default 100, at most 1000).
    pub limit: Option<i64>,
}

fn principal(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or(Json::Null)
}

fn publication_json(row: &PublicationRow) -> Json {
    json!({
        "kind": "publication",
        "id": row.asset_id,
        "dataset": row.asset_id,
        "state": row.state,
        "requestedAt": row.requested_at,
        "requestedBy": principal(&row.requested_by),
        "decidedAt": (row.decided_at > 0).then_some(row.decided_at),
        "decidedBy": (!row.decided_by.is_empty()).then(|| principal(&row.decided_by)),
        "reason": (!row.reason.is_empty()).then_some(&row.reason),
        "allowedCalls": if row.state == "pending" { json!(["approve", "reject"]) } else { json!([]) },
    })
}

/// A held process as the approvals screen shows it: requester, dataset, purpose, the policy trace.
fn held_json(kind: ProcessKind, row: &ProcessRow, allowed: Vec<&'static str>) -> Json {
    json!({
        "kind": kind.name(),
        "id": row.id,
        "state": row.state,
        "requester": row.counter_party_id,
        "dataset": row.body.get("assetId"),
        "purpose": row.body.get("purpose"),
        "agreementId": row.body.get("agreementId"),
        "decision": row.body.get("decision"),
        "waitingSince": row.updated_at,
        "allowedCalls": allowed,
    })
}

async fn pending(state: &Shared, kind: Option<&str>) -> Result<Vec<Json>, ManagementError> {
    let mut items = Vec::new();
    if kind.is_none_or(|k| k == "negotiation") {
        for machine_state in ["REQUESTED", "ACCEPTED", "VERIFIED"] {
            for row in state.store.processes.processes_in(ProcessKind::Negotiation, "provider", machine_state).await? {
                let Ok(negotiation) = crate::negotiation::Negotiation::from_row(row.clone()) else { continue };
                if negotiation.held() {
                    let allowed = hanse_core::negotiation::allowed_calls(negotiation.role, negotiation.state);
                    items.push(held_json(ProcessKind::Negotiation, &row, allowed));
                }
            }
        }
    }
    if kind.is_none_or(|k| k == "transfer") {
        for row in state.store.processes.processes_in(ProcessKind::Transfer, "provider", "REQUESTED").await? {
            let Ok(transfer) = crate::transfer::Transfer::from_row(row.clone()) else { continue };
            if transfer.held() {
                let allowed = hanse_core::transfer::allowed_calls(transfer.role, transfer.state);
                items.push(held_json(ProcessKind::Transfer, &row, allowed));
            }
        }
    }
    if kind.is_none_or(|k| k == "publication") {
        for row in state.store.governance.pending_publications().await? {
            if state.catalogue.asset(&row.asset_id).is_some() {
                items.push(publication_json(&row));
            }
        }
    }
    items.sort_by_key(|item| item.get("waitingSince").or(item.get("requestedAt")).and_then(Json::as_i64));
    Ok(items)
}

async fn decided(state: &Shared, listing: &Listing) -> Result<Vec<Json>, ManagementError> {
    let limit = listing.limit.unwrap_or(100).clamp(1, 1000);
    let kinds: &[&str] = match listing.kind.as_deref() {
        Some("publication") => &["publication.decision"],
        Some(_) => &["operator.decision"],
        None => &["operator.decision", "publication.decision"],
    };
    let mut items = Vec::new();
    for kind in kinds {
        let filter = AuditFilter {
            kind: Some((*kind).to_owned()),
            dataset: listing.dataset.clone(),
            participant: listing.participant.clone(),
            after_seq: listing.after,
            limit,
            ..AuditFilter::default()
        };
        for entry in state.store.audit.audit_entries(&filter).await? {
            let logged: Json = serde_json::from_str(&entry.entry).unwrap_or(Json::Null);
            let process_kind = logged.get("processKind").and_then(Json::as_str);
            if listing.kind.as_deref().is_some_and(|k| *kind == "operator.decision" && Some(k) != process_kind) {
                continue;
            }
            let mut item = json!({
                "seq": entry.seq,
                "at": logged.get("at"),
                "who": logged.get("who"),
                "dataset": logged.get("dataset"),
                "participant": logged.get("participant"),
            });
            if *kind == "publication.decision" {
                let asset = logged.get("asset").and_then(Json::as_str).unwrap_or_default();
                item["kind"] = json!("publication");
                item["id"] = json!(asset);
                item["decision"] = logged["decision"].clone();
                if let Some(row) = state.store.governance.publication(asset).await? {
                    item["reason"] = json!(row.reason);
                    item["requestedBy"] = principal(&row.requested_by);
                }
            } else {
                let process = logged.get("process").and_then(Json::as_str).unwrap_or_default();
                let kind =
                    if process_kind == Some("transfer") { ProcessKind::Transfer } else { ProcessKind::Negotiation };
                item["kind"] = json!(kind.name());
                item["id"] = json!(process);
                item["call"] = logged["call"].clone();
                item["held"] = logged["held"].clone();
                item["from"] = logged["from"].clone();
                item["to"] = logged["to"].clone();
                if let Some(row) = state.store.processes.process(kind, process).await? {
                    // The call's reason and the trace the operator saw, kept with the process; the entry holds their
                    // digests.
                    let calls = row.body.get("operatorCalls").and_then(Json::as_array).cloned().unwrap_or_default();
                    let call = calls.iter().rev().find(|c| c.get("call") == logged.get("call")).or(calls.last());
                    item["reason"] = call.and_then(|c| c.get("reason")).cloned().unwrap_or(Json::Null);
                    item["decisionTrace"] = row.body.get("decision").cloned().unwrap_or(Json::Null);
                    item["requester"] = json!(row.counter_party_id);
                }
            }
            items.push(item);
        }
    }
    items.sort_by_key(|item| item["seq"].as_i64());
    items.truncate(limit as usize);
    Ok(items)
}

/// `GET /management/v3/approvals`: what waits for a decision (`status=pending`), or the decisions taken
/// (`status=decided`, paged by audit sequence number), filtered by kind, dataset and participant.
#[utoipa::path(get, path = "/management/v3/approvals", tag = "Access", operation_id = "list approvals", params(Listing),
    responses((status = 200, description = "Pending requests, or decisions with who, when, why and the trace shown", body = [crate::management::openapi::Object]),
        crate::management::openapi::ReadErrors))]
pub async fn list(State(state): State<Shared>, Query(listing): Query<Listing>) -> Result<Response, ManagementError> {
    if let Some(kind) = listing.kind.as_deref()
        && !matches!(kind, "negotiation" | "transfer" | "publication")
    {
        return Err(ManagementError::field("kind", "negotiation, transfer or publication"));
    }
    let items = match listing.status.as_deref().unwrap_or("pending") {
        "pending" => pending(&state, listing.kind.as_deref()).await?,
        "decided" => decided(&state, &listing).await?,
        other => return Err(ManagementError::field("status", format!("`{other}` is not pending or decided"))),
    };
    Ok(axum::Json(items).into_response())
}

/// `POST /management/v3/approvals/publications/{dataset}/{decision}`: approve or reject a dataset's publication,
/// with a reason (`{"reason": "..."}`), by a key other than the one that asked.
#[utoipa::path(post, path = "/management/v3/approvals/publications/{dataset}/{decision}", tag = "Access",
    operation_id = "decide a publication",
    params(("dataset" = String, Path, description = "The dataset (asset id)"), ("decision" = String, Path, description = "approve or reject")),
    request_body(content = crate::management::openapi::Object, description = "`{\"reason\"?}`"),
    responses((status = 200, description = "The publication as decided", body = crate::management::openapi::Object),
        crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn decide_publication(
    State(state): State<Shared>,
    Path((dataset, decision)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ManagementError> {
    let approve = match decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => return Err(ManagementError::field("decision", format!("`{other}` is not approve or reject"))),
    };
    let body = optional_body(&body)?;
    let reason = body.get("reason").and_then(Json::as_str).unwrap_or_default();
    if reason.chars().count() > 2000 {
        return Err(ManagementError::field("reason", "at most 2000 characters"));
    }
    let decided = state.store.governance.decide_publication(&dataset, approve, reason).await.map_err(|e| match e {
        PublicationError::NotPending(_) => ManagementError::Conflict(e.to_string()),
        PublicationError::SameKey(_) => ManagementError::Forbidden(e.to_string()),
        PublicationError::Store(store) => store.into(),
    })?;
    if approve {
        state.catalogue.publish(&dataset).await;
    }
    tracing::info!(%dataset, decision, "publication decided");
    Ok(axum::Json(publication_json(&decided)).into_response())
}
