//! Hanse's core, pure (decision 0021): what every layer may know and nothing that does I/O, runs async or reads the
//! clock.
//!
//! - [`negotiation`] and [`transfer`]: the DSP 2025-1 state machines, one table each for both roles;
//! - [`query`]: the EDC `QuerySpec` (paging, sorting, filter criteria) and the criterion matching that management
//!   queries and asset selectors share;
//! - [`paths`]: the well-known paths every part of a connector refers to;
//! - [`encode`]: hex, SHA-256 digests, RFC 3339 times, written the same way everywhere;
//! - [`FieldError`]: one offending field of a request body, the unit every surface reports bad input in.

pub mod encode;
pub mod negotiation;
pub mod paths;
pub mod query;
pub mod transfer;

use serde_json::Value as Json;

/// One offending field of a request body.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Where, e.g. `dataAddress.baseUrl` or `policy.permission[0].constraint[1]`.
    pub path: String,
    pub message: String,
    pub invalid_value: Option<Json>,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { path: path.into(), message: message.into(), invalid_value: None }
    }

    /// The same error, showing the value that was refused.
    pub fn with_value(mut self, value: Option<&Json>) -> FieldError {
        self.invalid_value = value.cloned();
        self
    }
}

/// A body that could not be read: every problem found.
pub type Invalid = Vec<FieldError>;
