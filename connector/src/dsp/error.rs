//! The DSP error messages (`CatalogError`, `ContractNegotiationError`, `TransferError`) with a `code` and `reason[]`;
//! answered through the public listener's error type, `PublicError`.

use axum::http::StatusCode;
use serde_json::json;

/// Which DSP error message to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DspArea {
    Catalog,
    Negotiation,
    Transfer,
}

impl From<crate::store::ProcessKind> for DspArea {
    fn from(kind: crate::store::ProcessKind) -> DspArea {
        match kind {
            crate::store::ProcessKind::Negotiation => DspArea::Negotiation,
            crate::store::ProcessKind::Transfer => DspArea::Transfer,
        }
    }
}

impl DspArea {
    fn message_type(self) -> &'static str {
        match self {
            DspArea::Catalog => "CatalogError",
            DspArea::Negotiation => "ContractNegotiationError",
            DspArea::Transfer => "TransferError",
        }
    }
}

/// A DSP error answer.
#[derive(Debug, Clone)]
pub struct DspError {
    pub area: DspArea,
    pub status: StatusCode,
    pub code: &'static str,
    pub reasons: Vec<String>,
    /// `providerPid` and `consumerPid` of negotiation and transfer errors, when known.
    pub pids: (Option<String>, Option<String>),
}

impl DspError {
    pub fn new(area: DspArea, status: StatusCode, code: &'static str, reason: impl Into<String>) -> DspError {
        DspError { area, status, code, reasons: vec![reason.into()], pids: (None, None) }
    }

    /// With the process ids the error concerns.
    pub fn with_pids(mut self, provider: Option<String>, consumer: Option<String>) -> DspError {
        self.pids = (provider, consumer);
        self
    }

    /// 400 with the reasons a peer can act on.
    pub fn bad_request(area: DspArea, reasons: Vec<String>) -> DspError {
        DspError { area, status: StatusCode::BAD_REQUEST, code: "BadRequest", reasons, pids: (None, None) }
    }

    /// 401 without saying why (the reason is logged where it is found).
    pub fn unauthorized(area: DspArea) -> DspError {
        DspError::new(area, StatusCode::UNAUTHORIZED, "Unauthorized", "the request is not authorized")
    }

    pub fn not_found(area: DspArea, what: impl Into<String>) -> DspError {
        DspError::new(area, StatusCode::NOT_FOUND, "NotFound", what)
    }
}

impl DspError {
    /// The DSP error message.
    pub(crate) fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "@context": [hanse_vocab::contexts::DSPACE_2025_1],
            "@type": self.area.message_type(),
            "code": self.code,
            "reason": self.reasons,
        });
        if self.area != DspArea::Catalog {
            // The negotiation and transfer error schemas require both process ids.
            body["providerPid"] = json!(self.pids.0.clone().unwrap_or_default());
            body["consumerPid"] = json!(self.pids.1.clone().unwrap_or_default());
        }
        body
    }
}
