//! `POST /management/v3/catalog/request` and `.../catalog/dataset/request` (consumer side): fetch a peer's
//! catalogue, or one dataset of it, over DSP.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hanse_vocab::ns::EDC;
use serde_json::Value as Json;

use super::{ManagementError, parse_body};
use crate::catalog::query::{QuerySpec, get};
use crate::dsp::client::ClientError;
use crate::state::Shared;

/// Body: `{counterPartyAddress, counterPartyId?, protocol: "dataspace-protocol-http:2025-1", querySpec?}`.
/// `querySpec.filterExpression` criteria on `keyword` or properties become DSP filters; `offset`/`limit` page the
/// datasets of the answer.
#[utoipa::path(post, path = "/catalog/request", tag = "Catalogue", operation_id = "request a catalogue", request_body(content = crate::management::openapi::CatalogRequest, content_type = "application/json"), responses((status = 200, description = "The counter-party's DCAT catalogue", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors, crate::management::openapi::PeerErrors))]
pub async fn request(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let body = parse_body(&body)?;
    let (object, address) = peer_request(&body)?;
    let spec = QuerySpec::from_body(get(object, "querySpec")).map_err(|errors| {
        ManagementError::Invalid(
            errors.into_iter().map(|e| super::FieldError { path: format!("querySpec.{}", e.path), ..e }).collect(),
        )
    })?;
    let (keywords, properties): (Vec<_>, Vec<_>) =
        spec.filter.iter().partition(|c| c.operand_left.trim_start_matches(EDC) == "keyword");
    let keywords: Vec<Json> = keywords.into_iter().map(|c| c.operand_right.clone()).collect();
    let properties: Vec<(String, Json)> = properties
        .into_iter()
        .map(|c| (c.operand_left.trim_start_matches(EDC).to_owned(), c.operand_right.clone()))
        .collect();
    let filter = crate::dsp::catalog::filter_for(&keywords, &properties);
    let counter_party = get(object, "counterPartyId").and_then(Json::as_str);
    let mut catalog = state.dsp.catalog(address, counter_party, filter).await.map_err(refused)?;
    if let Some(datasets) = catalog.get_mut("dataset").and_then(Json::as_array_mut) {
        let page: Vec<Json> = datasets.drain(..).skip(spec.offset).take(spec.limit).collect();
        *datasets = page;
    }
    Ok(axum::Json(catalog).into_response())
}

/// Body (EDC `DatasetRequest`): `{@id, counterPartyAddress, counterPartyId?, protocol}`: the dataset as the peer shows
/// it to us, with its offers.
#[utoipa::path(post, path = "/catalog/dataset/request", tag = "Catalogue", operation_id = "request a dataset", request_body(content = crate::management::openapi::DatasetRequest, content_type = "application/json"), responses((status = 200, description = "The counter-party's dataset", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors, crate::management::openapi::PeerErrors))]
pub async fn dataset(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let body = parse_body(&body)?;
    let (object, address) = peer_request(&body)?;
    let Some(id) = object.get("@id").and_then(Json::as_str).filter(|id| !id.trim().is_empty()) else {
        return Err(ManagementError::field("@id", "is required: the dataset to read"));
    };
    let counter_party = get(object, "counterPartyId").and_then(Json::as_str);
    let dataset = state.dsp.dataset(address, counter_party, id).await.map_err(|e| match e {
        ClientError::Refused { status: 404, .. } => {
            ManagementError::NotFound(format!("the peer's catalogue shows us no dataset `{id}`"))
        }
        other => refused(other),
    })?;
    Ok(axum::Json(dataset).into_response())
}

/// The object of a request to a peer and the peer's DSP address, checked: an address, and DSP 2025-1 if a protocol
/// is named.
fn peer_request(body: &Json) -> Result<(&serde_json::Map<String, Json>, &str), ManagementError> {
    let Some(object) = body.as_object() else {
        return Err(ManagementError::field("", "the body must be a JSON object"));
    };
    let address = get(object, "counterPartyAddress").and_then(Json::as_str).filter(|a| !a.trim().is_empty());
    let Some(address) = address else {
        return Err(ManagementError::field("counterPartyAddress", "is required: the peer's DSP address"));
    };
    if let Some(protocol) = get(object, "protocol").and_then(Json::as_str)
        && !protocol.ends_with("2025-1")
    {
        return Err(ManagementError::field(
            "protocol",
            format!("Hanse speaks dataspace-protocol-http:2025-1, not {protocol}"),
        ));
    }
    Ok((object, address))
}

/// A peer that could not be asked, or refused, as the management API tells it.
fn refused(error: ClientError) -> ManagementError {
    match error {
        ClientError::Refused { status, body, url } => {
            ManagementError::Upstream(format!("the peer refused the request ({url} answered HTTP {status}): {body}"))
        }
        other => ManagementError::Upstream(other.to_string()),
    }
}
