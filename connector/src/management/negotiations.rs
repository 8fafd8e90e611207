//! `/management/v3/contractnegotiations` and `/management/v3/contractagreements` (EDC v3 shapes), plus the operator's
//! calls on a negotiation: `approve`, `offer`, `finalize` (provider), `accept`, `offer`, `verify` (consumer), `terminate`.

use super::Path;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hanse_policy::Policy;
use hanse_vocab::ns::EDC;
use serde_json::{Value as Json, json};

use super::resources::id_response;
use super::{ManagementError, call_answer, optional_body, parse_body, query_spec};
use crate::catalog::model::{expand_body, refuse_non_text, text};
use crate::negotiation::{self, Start};
use crate::state::Shared;
use crate::store::AgreementRow;

/// `POST /management/v3/contractnegotiations` (EDC `ContractRequest`): `counterPartyAddress`, `protocol`, `policy` (the
/// offer as the catalogue listed it, with `@id`, `assigner` and `target`); Hanse extensions `autoAccept` (default
/// true) and `purpose`.
#[utoipa::path(post, path = "/contractnegotiations", tag = "Contract negotiations", operation_id = "start a negotiation", request_body(content = crate::management::openapi::ContractRequest, content_type = "application/json"), responses((status = 200, description = "Started: the consumer's negotiation id", body = crate::management::openapi::IdResponse), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors, crate::management::openapi::PeerErrors))]
pub async fn start(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let negotiation = request(&state, &parse_body(&body)?, false).await?;
    Ok(axum::Json(id_response(&negotiation.row.id, negotiation.row.created_at)).into_response())
}

/// Starts the negotiation a `ContractRequest` body asks for; with `pull_on_agreement`, a pull transfer follows the
/// agreement by itself (`POST /edrs`).
pub(super) async fn request(
    state: &Shared,
    body: &Json,
    pull_on_agreement: bool,
) -> Result<negotiation::Negotiation, ManagementError> {
    let node = expand_body(body).map_err(ManagementError::Invalid)?;
    let mut errors = Vec::new();
    refuse_non_text(body, &["purpose", "counterPartyAddress", "counterPartyId", "protocol"], &mut errors);
    let purpose = text(&node, "purpose");
    let address = text(&node, "counterPartyAddress");
    if address.is_none() {
        errors.push(super::FieldError::new("counterPartyAddress", "is required: the provider's DSP address"));
    }
    if let Some(protocol) = text(&node, "protocol")
        && !protocol.ends_with("2025-1")
    {
        errors.push(super::FieldError::new(
            "protocol",
            format!("Hanse speaks dataspace-protocol-http:2025-1, not {protocol}"),
        ));
    }
    // The offer is read as written (DSP compact, `odrl:` prefixed or expanded ODRL): under a bare EDC `@vocab` its
    // ODRL terms would otherwise expand into the EDC namespace. The expanded node is the fallback.
    let written =
        ["policy", "edc:policy", "https://w3id.org/edc/v0.0.1/ns/policy"].iter().find_map(|k| body.get(*k)).cloned();
    let expanded = node.get(&format!("{EDC}policy")).and_then(Json::as_array).and_then(|v| v.first()).cloned();
    let policy = match written.as_ref().map(Policy::from_json) {
        Some(Ok(_)) => written,
        _ => expanded.or(written),
    };
    let offer = match policy.as_ref().map(Policy::from_json) {
        None => {
            errors.push(super::FieldError::new(
                "policy",
                "is required: the offer to negotiate, as the catalogue lists it",
            ));
            None
        }
        Some(Err(error)) => {
            errors.push(super::FieldError::new(format!("policy.{}", error.path), error.message));
            None
        }
        Some(Ok(parsed)) => {
            let offer_id = policy.as_ref().and_then(|p| p.get("@id")).and_then(Json::as_str).map(str::to_owned);
            if offer_id.is_none() {
                errors.push(super::FieldError::new("policy.@id", "is required: the offer's id from the catalogue"));
            }
            if parsed.target.is_none() {
                errors.push(super::FieldError::new("policy.target", "is required: the dataset the offer is for"));
            }
            let mut offer = parsed.to_dsp_json();
            if let Json::Object(map) = &mut offer {
                map.insert("@type".into(), json!("Offer"));
                map.insert("@id".into(), json!(offer_id.unwrap_or_default()));
            }
            Some((parsed, offer))
        }
    };
    let provider_id = text(&node, "counterPartyId").or_else(|| offer.as_ref().and_then(|(p, _)| p.assigner.clone()));
    if provider_id.is_none() {
        errors.push(super::FieldError::new(
            "counterPartyId",
            "is required (or policy.assigner): the provider's participant id",
        ));
    }
    let (Some(address), Some((_, offer)), Some(provider_id), true) = (address, offer, provider_id, errors.is_empty())
    else {
        return Err(ManagementError::Invalid(errors));
    };
    let provider_address =
        state.dsp.resolve_base(&address).await.map_err(|e| ManagementError::Upstream(e.to_string()))?;
    let mut offer = match offer_without_rules(&offer) {
        Some((offer_id, target)) => catalogue_offer(state, &address, &provider_id, &offer_id, &target).await?,
        None => offer,
    };
    // DSP 2025-1: an offer carries at least one permission or prohibition (an obligation alone is no offer).
    let has = |name: &str| offer.get(name).and_then(Json::as_array).is_some_and(|rules| !rules.is_empty());
    if !has("permission") && !has("prohibition") {
        return Err(ManagementError::field(
            "policy",
            "the offer must carry at least one permission or prohibition (DSP 2025-1 `Offer`); send the offer as the \
             catalogue lists it, or only its `@id` and `target` to have it filled in from the provider's catalogue",
        ));
    }
    if offer.get("assigner").is_none() {
        offer["assigner"] = json!(provider_id);
    }
    state
        .negotiations
        .start(Start {
            provider_address,
            provider_id,
            offer,
            auto_accept: super::flag(&node, "autoAccept").unwrap_or(true),
            purpose: purpose.map(|p| hanse_policy::profile::canonical_purpose(&p)),
            pull_on_agreement,
        })
        .await
        .map_err(Into::into)
}

/// The offer's id and target when a request names an offer without its rules (EDC clients often send only the
/// offer's `@id`): the rules then come from the provider's catalogue.
fn offer_without_rules(offer: &Json) -> Option<(String, String)> {
    let rules = ["permission", "prohibition", "obligation"]
        .iter()
        .any(|name| offer.get(*name).is_some_and(|v| v.as_array().is_none_or(|rules| !rules.is_empty())));
    if rules {
        return None;
    }
    Some((offer.get("@id")?.as_str()?.to_owned(), offer.get("target")?.as_str()?.to_owned()))
}

/// The offer `offer_id` of dataset `target` as the provider's catalogue lists it for us; a 400 when the provider
/// does not list it (any more), so that no `ContractRequestMessage` with an offer without rules is ever sent.
async fn catalogue_offer(
    state: &Shared,
    address: &str,
    provider_id: &str,
    offer_id: &str,
    target: &str,
) -> Result<Json, ManagementError> {
    let dataset = state.dsp.dataset(address, Some(provider_id), target).await.map_err(|e| match e {
        crate::dsp::client::ClientError::Refused { status: 404, .. } => {
            ManagementError::field("policy.target", format!("the provider's catalogue shows us no dataset `{target}`"))
        }
        other => ManagementError::Upstream(format!("cannot read the offer from the provider's catalogue: {other}")),
    })?;
    let offers = match dataset.get("hasPolicy") {
        Some(Json::Array(offers)) => offers.clone(),
        Some(offer) => vec![offer.clone()],
        None => Vec::new(),
    };
    let mut offer =
        offers.into_iter().find(|o| o.get("@id").and_then(Json::as_str) == Some(offer_id)).ok_or_else(|| {
            ManagementError::field(
                "policy.@id",
                format!(
                    "the provider's catalogue lists no offer `{offer_id}` for dataset `{target}`; it may have changed"
                ),
            )
        })?;
    offer["target"] = json!(target);
    if offer.get("assigner").is_none() {
        offer["assigner"] = json!(provider_id);
    }
    Ok(offer)
}

/// What a negotiation query may filter and sort on besides the fields every process has (EDC's names).
const NEGOTIATION_FIELDS: &[&str] = &["contractAgreementId", "assetId"];

#[utoipa::path(post, path = "/contractnegotiations/request", tag = "Contract negotiations", operation_id = "query negotiations", request_body(content = Option<crate::management::openapi::QuerySpec>, content_type = "application/json"), responses((status = 200, description = "The selected negotiations", body = [crate::management::openapi::Object]), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn query(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let spec = query_spec(&body, "a contract negotiation", Some(&[crate::process::ROW_FIELDS, NEGOTIATION_FIELDS]))?;
    if let Some(query) = crate::process::row_query(&spec) {
        let page = state.negotiations.page(&query).await?;
        return Ok(axum::Json(Json::Array(page.iter().map(|n| n.management_json()).collect())).into_response());
    }
    let all = state.negotiations.all().await?;
    let selected = spec.apply(all, |n, field| {
        let field = field.trim_start_matches(EDC);
        crate::process::row_field(&n.row, n.role, n.state.name(), n.held(), field).unwrap_or_else(|| match field {
            "contractAgreementId" => n.details.agreement_id.iter().map(|a| json!(a)).collect(),
            "assetId" => n.details.asset_id.iter().map(|a| json!(a)).collect(),
            _ => Vec::new(),
        })
    });
    Ok(axum::Json(Json::Array(selected.iter().map(|n| n.management_json()).collect())).into_response())
}

#[utoipa::path(get, path = "/contractnegotiations/{id}", tag = "Contract negotiations", operation_id = "read a negotiation", params(("id" = String, Path, description = "The process id")), responses((status = 200, description = "The negotiation", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors))]
pub async fn read(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    Ok(axum::Json(state.negotiations.get(&id).await?.management_json()).into_response())
}

#[utoipa::path(get, path = "/contractnegotiations/{id}/state", tag = "Contract negotiations", operation_id = "read a negotiation's state", params(("id" = String, Path, description = "The process id")), responses((status = 200, description = "Its state", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors))]
pub async fn read_state(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    let negotiation = state.negotiations.get(&id).await?;
    Ok(axum::Json(json!({"@context": hanse_self_descriptions::dcat::management_context(), "@type": "NegotiationState", "state": negotiation.state.name()})).into_response())
}

fn agreement_json(row: &AgreementRow) -> Json {
    let policy = hanse_self_descriptions::dcat::with_policy_context(row.policy.clone());
    json!({
        "@context": hanse_self_descriptions::dcat::management_context(),
        "@type": "ContractAgreement",
        "@id": row.id,
        "assetId": row.asset_id,
        "providerId": row.provider_id,
        "consumerId": row.consumer_id,
        "contractSigningDate": row.signed_at / 1000,
        "policy": policy,
    })
}

#[utoipa::path(get, path = "/contractnegotiations/{id}/agreement", tag = "Contract negotiations", operation_id = "read a negotiation's agreement", params(("id" = String, Path, description = "The process id")), responses((status = 200, description = "The agreement", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors))]
pub async fn read_agreement(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    let negotiation = state.negotiations.get(&id).await?;
    let agreement_id = negotiation.details.agreement_id.ok_or_else(|| {
        ManagementError::NotFound(format!("negotiation `{id}` has no agreement (state {})", negotiation.state.name()))
    })?;
    let row = state
        .store
        .processes
        .agreement(&agreement_id)
        .await?
        .ok_or_else(|| ManagementError::NotFound(format!("agreement `{agreement_id}` is not stored yet")))?;
    Ok(axum::Json(agreement_json(&row)).into_response())
}

/// `POST /management/v3/contractnegotiations/{id}/{call}`.
#[utoipa::path(post, path = "/contractnegotiations/{id}/{call}", tag = "Contract negotiations", operation_id = "call on a negotiation", params(("id" = String, Path, description = "The process id"), ("call" = String, Path, description = "`approve`, `offer`, `finalize` (provider); `accept`, `offer`, `verify` (consumer); `terminate` (both). A call the state does not allow is a 409 naming the calls allowed now.")), request_body(content = Option<crate::management::openapi::Object>, content_type = "application/json"), responses((status = 200, description = "The negotiation after the call", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn operator_call(
    State(state): State<Shared>,
    Path((id, call)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ManagementError> {
    call_answer(state.negotiations.call(&id, &call, &optional_body(&body)?).await.map(|n| n.management_json()))
}

/// What an agreement query may filter and sort on.
const AGREEMENT_FIELDS: &[&str] = &["id", "@id", "assetId", "providerId", "consumerId", "contractSigningDate"];

#[utoipa::path(post, path = "/contractagreements/request", tag = "Contract negotiations", operation_id = "query agreements", request_body(content = Option<crate::management::openapi::QuerySpec>, content_type = "application/json"), responses((status = 200, description = "The selected agreements", body = [crate::management::openapi::Object]), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn agreements_query(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let spec = query_spec(&body, "a contract agreement", Some(&[AGREEMENT_FIELDS]))?;
    let rows = state.store.processes.agreements().await?;
    let selected = spec.apply(rows, |row, field| match field.trim_start_matches(EDC) {
        "id" | "@id" => vec![json!(row.id)],
        "assetId" => vec![json!(row.asset_id)],
        "providerId" => vec![json!(row.provider_id)],
        "consumerId" => vec![json!(row.consumer_id)],
        "contractSigningDate" => vec![json!(row.signed_at / 1000)],
        _ => Vec::new(),
    });
    Ok(axum::Json(Json::Array(selected.iter().map(agreement_json).collect())).into_response())
}

#[utoipa::path(get, path = "/contractagreements/{id}", tag = "Contract negotiations", operation_id = "read an agreement", params(("id" = String, Path, description = "The agreement id")), responses((status = 200, description = "The agreement", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors))]
pub async fn agreement(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    let row = state
        .store
        .processes
        .agreement(&id)
        .await?
        .ok_or_else(|| ManagementError::NotFound(format!("contract agreement `{id}` not found")))?;
    Ok(axum::Json(agreement_json(&row)).into_response())
}

#[utoipa::path(get, path = "/contractagreements/{id}/negotiation", tag = "Contract negotiations", operation_id = "read an agreement's negotiation", params(("id" = String, Path, description = "The agreement id")), responses((status = 200, description = "The negotiation that made it", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors))]
pub async fn agreement_negotiation(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ManagementError> {
    let row = state
        .store
        .processes
        .agreement(&id)
        .await?
        .ok_or_else(|| ManagementError::NotFound(format!("contract agreement `{id}` not found")))?;
    Ok(axum::Json(state.negotiations.get(&row.negotiation_id).await?.management_json()).into_response())
}
