//! `/management/v3/transferprocesses` (EDC v3 shapes) with the calls `start`, `suspend`, `resume`, `complete`,
//! `terminate`, and `/management/v3/edrs`: the data addresses a consumer received for its pull transfers.

use super::{Path, Query};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hanse_vocab::ns::EDC;
use serde_json::{Map, Value as Json, json};

use super::resources::id_response;
use super::{FieldError, ManagementError, call_answer, optional_body, parse_body, query_spec};
use crate::catalog::model::{expand_body, nested, text};
use crate::state::Shared;
use crate::transfer::machine::Role;
use crate::transfer::{self, HTTP_ENDPOINT, PULL, PUSH, ProviderAddressError, Start, Transfer};

/// A push destination (EDC `dataDestination`: `type` HttpData, `baseUrl`, optional `authKey` / `authCode`) as a DSP
/// `DataAddress`.
fn destination(node: &Map<String, Json>, errors: &mut Vec<FieldError>) -> Option<Json> {
    let Some(destination) = nested(node, "dataDestination") else {
        errors.push(FieldError::new(
            "dataDestination",
            "is required for HttpData-PUSH: where the provider sends the data",
        ));
        return None;
    };
    if text(destination, "type").is_some_and(|t| t != "HttpData") {
        errors.push(FieldError::new("dataDestination.type", "Hanse pushes to HttpData destinations"));
    }
    let base_url = text(destination, "baseUrl")
        .filter(|url| reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")));
    let Some(base_url) = base_url else {
        errors.push(FieldError::new("dataDestination.baseUrl", "is required: an http(s) URL the provider posts to"));
        return None;
    };
    let property = |name: &str, value: String| json!({"@type": "EndpointProperty", "name": name, "value": value});
    let mut properties = Vec::new();
    if let Some(code) = text(destination, "authCode") {
        properties.push(property("authorization", code));
        if let Some(key) = text(destination, "authKey") {
            properties.push(property("authKey", key));
        }
        if let Some(kind) = text(destination, "authType") {
            properties.push(property("authType", kind));
        }
    }
    let mut address = json!({"@type": "DataAddress", "endpointType": HTTP_ENDPOINT, "endpoint": base_url});
    if !properties.is_empty() {
        address["endpointProperties"] = Json::Array(properties);
    }
    Some(address)
}

/// `POST /management/v3/transferprocesses` (EDC `TransferRequest`): `contractId`, `transferType` (`HttpData-PULL`,
/// the default, `HttpData-PUSH` with `dataDestination`, or `Hanse-Compute`), optional `counterPartyAddress` (default: where the
/// agreement was negotiated), `assetId` (checked against the agreement); Hanse extension `autoComplete` (default true).
#[utoipa::path(post, path = "/transferprocesses", tag = "Transfer processes", operation_id = "start a transfer", request_body(content = crate::management::openapi::TransferRequest, content_type = "application/json"), responses((status = 200, description = "Started: the consumer's transfer id", body = crate::management::openapi::IdResponse), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors, crate::management::openapi::PeerErrors))]
pub async fn start(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let body = parse_body(&body)?;
    let node = expand_body(&body).map_err(ManagementError::Invalid)?;
    let mut errors = Vec::new();
    let format = text(&node, "transferType").unwrap_or_else(|| PULL.to_owned());
    if !transfer::FORMATS.contains(&format.as_str()) {
        errors.push(FieldError::new(
            "transferType",
            format!("must be one of {}, not {format}", transfer::FORMATS.join(", ")),
        ));
    }
    let destination = if format == PUSH { destination(&node, &mut errors) } else { None };
    let agreement = match text(&node, "contractId") {
        None => {
            errors.push(FieldError::new("contractId", "is required: the agreement the transfer runs under"));
            None
        }
        Some(id) => match state.store.processes.agreement(&id).await? {
            Some(agreement) if agreement.consumer_id == state.config.participant.id => Some(agreement),
            _ => {
                errors.push(FieldError::new(
                    "contractId",
                    format!("there is no agreement `{id}` in which this connector is the consumer"),
                ));
                None
            }
        },
    };
    if let (Some(asset), Some(agreement)) = (text(&node, "assetId"), &agreement)
        && asset != agreement.asset_id
    {
        errors
            .push(FieldError::new("assetId", format!("the agreement covers `{}`, not `{asset}`", agreement.asset_id)));
    }
    let (Some(agreement), true) = (agreement, errors.is_empty()) else {
        return Err(ManagementError::Invalid(errors));
    };
    let given = text(&node, "counterPartyAddress");
    let provider_address = match state.transfers.provider_address(&agreement, given.as_deref()).await {
        Ok(address) => address,
        Err(ProviderAddressError::Unreachable(reason)) => return Err(ManagementError::Upstream(reason)),
        Err(ProviderAddressError::Unknown) => {
            return Err(ManagementError::field("counterPartyAddress", "is required: the provider's DSP address"));
        }
        Err(ProviderAddressError::Store(error)) => return Err(error.into()),
    };
    let auto_complete = super::flag(&node, "autoComplete").unwrap_or(true);
    let transfer = state
        .transfers
        .start(Start { provider_address, agreement, format, destination, auto_complete, job: None })
        .await?;
    Ok(axum::Json(id_response(&transfer.row.id, transfer.row.created_at)).into_response())
}

/// What a transfer query may filter and sort on besides the fields every process has (EDC's names, with
/// `contractAgreementId` and `agreementId` beside `contractId`).
const TRANSFER_FIELDS: &[&str] = &["contractId", "contractAgreementId", "agreementId", "assetId", "transferType"];

fn query_field(transfer: &Transfer, field: &str) -> Vec<Json> {
    let field = field.trim_start_matches(EDC);
    let (row, role, state) = (&transfer.row, transfer.role, transfer.state.name());
    crate::process::row_field(row, role, state, transfer.held(), field).unwrap_or_else(|| match field {
        "contractId" | "contractAgreementId" | "agreementId" => vec![json!(transfer.agreement_id())],
        "assetId" => transfer.details.asset_id.iter().map(|a| json!(a)).collect(),
        "transferType" => transfer.details.format.iter().map(|a| json!(a)).collect(),
        _ => Vec::new(),
    })
}

#[utoipa::path(post, path = "/transferprocesses/request", tag = "Transfer processes", operation_id = "query transfers", request_body(content = Option<crate::management::openapi::QuerySpec>, content_type = "application/json"), responses((status = 200, description = "The selected transfers", body = [crate::management::openapi::Object]), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn query(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let spec = query_spec(&body, "a transfer process", Some(&[crate::process::ROW_FIELDS, TRANSFER_FIELDS]))?;
    let selected = match crate::process::row_query(&spec) {
        Some(query) => state.transfers.page(&query).await?,
        None => spec.apply(state.transfers.all().await?, query_field),
    };
    Ok(axum::Json(Json::Array(selected.iter().map(Transfer::management_json).collect())).into_response())
}

#[utoipa::path(get, path = "/transferprocesses/{id}", tag = "Transfer processes", operation_id = "read a transfer", params(("id" = String, Path, description = "The process id")), responses((status = 200, description = "The transfer", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors))]
pub async fn read(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    Ok(axum::Json(state.transfers.get(&id).await?.management_json()).into_response())
}

#[utoipa::path(get, path = "/transferprocesses/{id}/state", tag = "Transfer processes", operation_id = "read a transfer's state", params(("id" = String, Path, description = "The process id")), responses((status = 200, description = "Its state", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors))]
pub async fn read_state(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    let transfer = state.transfers.get(&id).await?;
    Ok(axum::Json(json!({"@context": hanse_self_descriptions::dcat::management_context(),
                         "@type": "TransferState", "state": transfer.state.name()}))
    .into_response())
}

/// `POST /management/v3/transferprocesses/{id}/{call}`.
#[utoipa::path(post, path = "/transferprocesses/{id}/{call}", tag = "Transfer processes", operation_id = "call on a transfer", params(("id" = String, Path, description = "The process id"), ("call" = String, Path, description = "`start`, `resume`, `suspend`, `complete`, `terminate`. A call the state does not allow is a 409 naming the calls allowed now.")), request_body(content = Option<crate::management::openapi::Object>, content_type = "application/json"), responses((status = 200, description = "The transfer after the call", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn operator_call(
    State(state): State<Shared>,
    Path((id, call)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ManagementError> {
    call_answer(state.transfers.call(&id, &call, &optional_body(&body)?).await.map(|t| t.management_json()))
}

/// A consumer's pull transfer with a data address, and the negotiation that made its agreement (when known here).
struct Edr {
    transfer: Transfer,
    negotiation_id: Option<String>,
}

impl Edr {
    /// The EDC `EndpointDataReferenceEntry`.
    fn entry(&self) -> Json {
        let transfer = &self.transfer;
        json!({
            "@context": hanse_self_descriptions::dcat::management_context(),
            "@type": "EndpointDataReferenceEntry",
            "@id": transfer.row.id,
            "transferProcessId": transfer.row.id,
            "agreementId": transfer.agreement_id(),
            "contractNegotiationId": self.negotiation_id,
            "assetId": transfer.details.asset_id,
            "providerId": transfer.row.counter_party_id,
            "createdAt": transfer.row.created_at,
        })
    }

    fn field(&self, field: &str) -> Vec<Json> {
        let transfer = &self.transfer;
        match field.trim_start_matches(EDC) {
            "id" | "@id" | "transferProcessId" => vec![json!(transfer.row.id)],
            "agreementId" | "contractAgreementId" => vec![json!(transfer.agreement_id())],
            "contractNegotiationId" => self.negotiation_id.iter().map(|n| json!(n)).collect(),
            "assetId" => transfer.details.asset_id.iter().map(|a| json!(a)).collect(),
            "providerId" => vec![json!(transfer.row.counter_party_id)],
            "createdAt" => vec![json!(transfer.row.created_at)],
            _ => Vec::new(),
        }
    }
}

/// What an EDR query may filter and sort on: the members of an `EndpointDataReferenceEntry`.
const EDR_FIELDS: &[&str] = &[
    "id",
    "@id",
    "transferProcessId",
    "agreementId",
    "contractAgreementId",
    "contractNegotiationId",
    "assetId",
    "providerId",
    "createdAt",
];

/// `POST /management/v3/edrs/request`: the data addresses this consumer holds.
#[utoipa::path(post, path = "/edrs/request", tag = "Transfer processes", operation_id = "query EDRs", request_body(content = Option<crate::management::openapi::QuerySpec>, content_type = "application/json"), responses((status = 200, description = "The endpoint data references this consumer holds", body = [crate::management::openapi::Object]), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn edrs_query(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let spec = query_spec(&body, "an endpoint data reference", Some(&[EDR_FIELDS]))?;
    let negotiations: std::collections::HashMap<String, String> =
        state.negotiations.all().await?.into_iter().filter_map(|n| Some((n.details.agreement_id?, n.row.id))).collect();
    let held: Vec<Edr> = state
        .transfers
        .all()
        .await?
        .into_iter()
        .filter(|t| t.role == Role::Consumer && t.details.edr.is_some())
        .map(|transfer| Edr { negotiation_id: negotiations.get(transfer.agreement_id()).cloned(), transfer })
        .collect();
    let selected = spec.apply(held, Edr::field);
    Ok(axum::Json(Json::Array(selected.iter().map(Edr::entry).collect())).into_response())
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RefreshQuery {
    /// EDC: refresh when the address is about to expire (default true).
    #[serde(default, deserialize_with = "super::edc_bool")]
    auto_refresh: Option<bool>,
    /// Hanse: refresh now (e.g. after the provider refused the token).
    #[serde(default, deserialize_with = "super::edc_bool")]
    refresh: Option<bool>,
}

/// Seconds before expiry at which a data address is refreshed on read.
const REFRESH_MARGIN_SECONDS: i64 = 60;

/// `GET /management/v3/edrs/{transferProcessId}/dataaddress`: the data address, refreshed from the provider when it
/// is stale or about to expire (unless `auto_refresh=false`), or always with `refresh=true`.
#[utoipa::path(get, path = "/edrs/{id}/dataaddress", tag = "Transfer processes", operation_id = "read an EDR's data address", params(("id" = String, Path, description = "The transfer process id"), RefreshQuery), responses((status = 200, description = "The data address: endpoint and token", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors, crate::management::openapi::PeerErrors))]
pub async fn edr_data_address(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<RefreshQuery>,
) -> Result<Response, ManagementError> {
    let mut transfer = state.transfers.get(&id).await?;
    let address = transfer
        .details
        .edr
        .clone()
        .filter(|_| transfer.role == Role::Consumer)
        .ok_or_else(|| ManagementError::NotFound(format!("transfer process `{id}` holds no data address")))?;
    let expires = transfer::endpoint_property(&address, "expiresAt")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp());
    let expiring = expires.is_none_or(|t| t - chrono::Utc::now().timestamp() < REFRESH_MARGIN_SECONDS);
    let due = query.auto_refresh.unwrap_or(true) && (transfer.details.edr_stale || expiring);
    if query.refresh.unwrap_or(false) || due {
        transfer = refresh_edr(&state, &transfer, &address).await?;
    }
    let address = transfer.details.edr.clone().unwrap_or(address);
    Ok(axum::Json(crate::dataplane::edr_json(&id, &address)).into_response())
}

/// Asks the provider for a fresh data address, signed with our DSP identity, and stores it.
async fn refresh_edr(state: &Shared, transfer: &Transfer, address: &Json) -> Result<Transfer, ManagementError> {
    let endpoint = transfer::endpoint_property(address, "refreshEndpoint")
        .ok_or_else(|| ManagementError::Conflict("the data address names no refresh endpoint".into()))?;
    let response = state
        .dsp
        .http()
        .post(endpoint)
        .header("Authorization", state.identity.authorization(&transfer.row.counter_party_id))
        .send()
        .await
        .map_err(|e| {
            ManagementError::Upstream(format!("the provider cannot be reached: {}", hanse_core::error_chain(&e)))
        })?;
    let status = response.status();
    let body = crate::identity::limited::json(response, crate::identity::limited::MESSAGE).await.unwrap_or(Json::Null);
    if status != StatusCode::OK {
        let reason = body.get("error").and_then(Json::as_str).unwrap_or("no reason given");
        return Err(ManagementError::Upstream(format!(
            "the provider refused a fresh data address ({status}): {reason}"
        )));
    }
    Ok(state.transfers.store_edr(&transfer.row.id, body).await?)
}

/// `DELETE /management/v3/edrs/{transferProcessId}`.
#[utoipa::path(delete, path = "/edrs/{id}", tag = "Transfer processes", operation_id = "delete an EDR", params(("id" = String, Path, description = "The transfer process id")), responses((status = 204, description = "Deleted"), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn edr_delete(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    match state.transfers.forget_edr(&id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(crate::process::ProcessError::NotFound(_)) => {
            Err(ManagementError::NotFound(format!("no data address for `{id}`")))
        }
        Err(error) => Err(error.into()),
    }
}
