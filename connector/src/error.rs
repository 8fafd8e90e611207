//! The management API's one error type and its one conversion to an HTTP response, in the EDC shape: a JSON array of
//! `{"message", "type", "path", "invalidValue"}` objects. It sits below the routers: the broker's public search and
//! SPARQL, and the SPARQL protocol every endpoint speaks, answer in the same shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::catalog::CatalogueError;
pub use crate::catalog::model::FieldError;
use crate::store::StoreError;

/// What went wrong with a management request.
#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    #[error("missing or invalid X-Api-Key")]
    Unauthorized,
    /// A valid key whose role does not allow the call; the message names the role and what it may do.
    #[error("{0}")]
    Forbidden(String),
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// A peer could not be asked or refused.
    #[error("{0}")]
    Upstream(String),
    /// No representation the request's `Accept` takes.
    #[error("{0}")]
    NotAcceptable(String),
    /// A body over a configured size; the message names the setting.
    #[error("{0}")]
    TooLarge(String),
    /// The connector cannot make the change now (the audit log is sealed).
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for ManagementError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { .. } | StoreError::InUse { .. } => ManagementError::Conflict(error.to_string()),
            StoreError::NotFound { .. } => ManagementError::NotFound(error.to_string()),
            StoreError::Sealed(_) => ManagementError::Unavailable(error.to_string()),
            StoreError::Claimed => ManagementError::Conflict(error.to_string()),
            other => {
                tracing::error!(error = %other, "store failure in a management request");
                ManagementError::Internal("the store failed; see the connector's log".into())
            }
        }
    }
}

impl From<CatalogueError> for ManagementError {
    fn from(error: CatalogueError) -> Self {
        match error {
            CatalogueError::Invalid(fields) => ManagementError::Invalid(fields),
            CatalogueError::NotFound(message) => ManagementError::NotFound(message),
            CatalogueError::Conflict(message) => ManagementError::Conflict(message),
            CatalogueError::Store(store) => store.into(),
        }
    }
}

impl From<crate::process::ProcessError> for ManagementError {
    fn from(error: crate::process::ProcessError) -> Self {
        use crate::process::ProcessError;
        match error {
            ProcessError::NotFound(_) => ManagementError::NotFound(error.to_string()),
            ProcessError::Invalid(message) => ManagementError::field("", message),
            ProcessError::Refused { .. }
            | ProcessError::WrongState { .. }
            | ProcessError::Busy(_)
            | ProcessError::Illegal(_) => ManagementError::Conflict(error.to_string()),
            ProcessError::Store(store) => store.into(),
        }
    }
}

/// The management listener's refusal of a body over its size (see `transport::listen::bodies`).
pub fn too_large(_: StatusCode, message: String) -> Response {
    ManagementError::TooLarge(message).into_response()
}

impl ManagementError {
    /// A 400 naming one field.
    pub fn field(path: &str, message: impl Into<String>) -> ManagementError {
        ManagementError::Invalid(vec![FieldError::new(path, message)])
    }
}

impl ManagementError {
    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The status and the EDC error array.
    fn parts(&self) -> (StatusCode, Vec<Value>) {
        let (status, kind) = match self {
            ManagementError::Unauthorized => (StatusCode::UNAUTHORIZED, "AuthenticationFailed"),
            ManagementError::Forbidden(_) => (StatusCode::FORBIDDEN, "NotAuthorized"),
            ManagementError::Invalid(_) => (StatusCode::BAD_REQUEST, "InvalidRequest"),
            ManagementError::NotFound(_) => (StatusCode::NOT_FOUND, "ObjectNotFound"),
            ManagementError::Conflict(_) => (StatusCode::CONFLICT, "ObjectConflict"),
            ManagementError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            ManagementError::Upstream(_) => (StatusCode::BAD_GATEWAY, "CounterPartyError"),
            ManagementError::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "NotAcceptable"),
            ManagementError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"),
            ManagementError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        };
        let body = match self {
            ManagementError::Invalid(fields) => fields
                .iter()
                .map(|f| json!({"message": f.message, "type": kind, "path": f.path, "invalidValue": f.invalid_value}))
                .collect(),
            other => vec![json!({"message": other.to_string(), "type": kind})],
        };
        (status, body)
    }
}

impl IntoResponse for ManagementError {
    fn into_response(self) -> Response {
        let (status, body) = self.parts();
        let mut response = (status, axum::Json(Value::Array(body))).into_response();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is not read: the connection cannot carry another request.
            response
                .headers_mut()
                .insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        }
        response
    }
}

/// The broker's public search and SPARQL answer in the management API's shape, through the public listener's type.
impl From<ManagementError> for crate::problem::PublicError {
    fn from(error: ManagementError) -> Self {
        let (status, items) = error.parts();
        crate::problem::PublicError::Listed { status, items }
    }
}
