//! `POST /management/v3/edrs` (and v4): EDC's one call for "negotiate this offer, then pull": the body is a
//! `ContractRequest`; once the negotiation is FINALIZED, a pull transfer starts by itself
//! ([`crate::transfer::edr`]) and its data address appears under `/edrs/{transferProcessId}/dataaddress`.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::resources::id_response;
use super::{ManagementError, negotiations, parse_body};
use crate::state::Shared;

/// Answers the negotiation's `IdResponse`, as EDC does.
#[utoipa::path(post, path = "/edrs", tag = "Transfer processes", operation_id = "negotiate and start a pull", request_body(content = crate::management::openapi::ContractRequest, content_type = "application/json"), responses((status = 200, description = "Started: the negotiation id", body = crate::management::openapi::IdResponse), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors, crate::management::openapi::PeerErrors))]
pub async fn start(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let negotiation = negotiations::request(&state, &parse_body(&body)?, true).await?;
    Ok(axum::Json(id_response(&negotiation.row.id, negotiation.row.created_at)).into_response())
}
