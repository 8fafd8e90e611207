//! The public listener's one error type and its one conversion to an HTTP response.
//!
//! Its endpoints answer errors in the shapes their protocols or their clients expect, and each variant is one of them:
//! the DSP error messages (DSP 2025-1), DCP's `ErrorResponse` (DCP 1.0), `{"error": ...}` of Hanse's extension
//! endpoints and the data plane, `{"code", "reason"}` of the compute endpoint (which the consumer's orchestrator reads),
//! and the EDC error array of the broker's search and SPARQL (the same as the management API's, decision 0014). A
//! reason shown here is one the caller may see: a refused token's defect is logged where it is found, never put here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use crate::dsp::error::DspError;

/// What went wrong with a request on the public listener.
#[derive(Debug)]
pub enum PublicError {
    /// A DSP endpoint's error message (`CatalogError`, `ContractNegotiationError`, `TransferError`).
    Dsp(DspError),
    /// DCP's `ErrorResponse` (the presentation query).
    Dcp { status: StatusCode, reason: String },
    /// `{"error": reason}`: the audit log's and peer list's extension endpoints, the data plane.
    Hanse { status: StatusCode, reason: String },
    /// `{"code", "reason"}`: the compute endpoint.
    Compute { status: StatusCode, code: String, reason: String },
    /// An EDC error array (`[{"message", "type", ...}]`): the broker's search and SPARQL.
    Listed { status: StatusCode, items: Vec<Json> },
}

impl PublicError {
    pub fn hanse(status: StatusCode, reason: impl Into<String>) -> PublicError {
        PublicError::Hanse { status, reason: reason.into() }
    }

    pub fn dcp(status: StatusCode, reason: impl Into<String>) -> PublicError {
        PublicError::Dcp { status, reason: reason.into() }
    }

    pub fn compute(status: StatusCode, code: &str, reason: impl Into<String>) -> PublicError {
        PublicError::Compute { status, code: code.to_owned(), reason: reason.into() }
    }

    /// One EDC error item, its `type` the status's reason phrase.
    pub fn listed(status: StatusCode, message: impl Into<String>) -> PublicError {
        let kind = status.canonical_reason().unwrap_or("Error");
        PublicError::Listed { status, items: vec![json!({"message": message.into(), "type": kind})] }
    }

    /// The status the answer carries.
    pub fn status(&self) -> StatusCode {
        match self {
            PublicError::Dsp(error) => error.status,
            PublicError::Dcp { status, .. }
            | PublicError::Hanse { status, .. }
            | PublicError::Compute { status, .. }
            | PublicError::Listed { status, .. } => *status,
        }
    }
}

impl From<DspError> for PublicError {
    fn from(error: DspError) -> Self {
        PublicError::Dsp(error)
    }
}

impl IntoResponse for PublicError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match self {
            PublicError::Dsp(error) => error.body(),
            PublicError::Dcp { reason, .. } => {
                json!({"@context": [crate::identity::credentials::DCP_CONTEXT], "type": "ErrorResponse", "error": reason})
            }
            PublicError::Hanse { reason, .. } => json!({"error": reason}),
            PublicError::Compute { code, reason, .. } => json!({"code": code, "reason": reason}),
            PublicError::Listed { items, .. } => Json::Array(items),
        };
        (status, axum::Json(body)).into_response()
    }
}

/// DSP handlers answer their errors directly; they are written as every public error is.
impl IntoResponse for DspError {
    fn into_response(self) -> Response {
        PublicError::Dsp(self).into_response()
    }
}
