//! Hanse's core, pure (decision 0021): what every layer may know and nothing that does I/O, runs async or reads the
//! clock.
//!
//! - [`negotiation`] and [`transfer`]: the DSP 2025-1 state machines, one table each for both roles;
//! - [`query`]: the EDC `QuerySpec` (paging, sorting, filter criteria) and the criterion matching that management
//!   queries and asset selectors share;
//! - [`formats`]: the transfer types and the endpoint type of HTTP data addresses;
//! - [`paths`]: the well-known paths every part of a connector refers to;
//! - [`encode`]: hex, SHA-256 digests, RFC 3339 times, written the same way everywhere;
//! - [`meter`]: where every layer records its measurements (one registry per connector);
//! - [`FieldError`]: one offending field of a request body, the unit every surface reports bad input in.

pub mod addresses;
pub mod encode;
pub mod formats;
pub mod ids;
pub mod meter;
pub mod negotiation;
pub mod paths;
pub mod query;
pub mod sparql;
pub mod transfer;

use serde_json::Value as Json;

/// An error with every cause below it, for a person: `error sending request for url (…): client error (Connect): tcp
/// connect error: Connection refused (os error 111)` rather than only the first line, which hides why. A cause whose
/// text the line already holds is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

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

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
        }
    }

    #[test]
    fn an_error_reads_with_every_cause_once() {
        let refused = Layer("Connection refused (os error 111)", None);
        let connect = Layer("tcp connect error: Connection refused (os error 111)", Some(Box::new(refused)));
        let top = Layer("error sending request for url (http://127.0.0.1:9/)", Some(Box::new(connect)));
        assert_eq!(
            error_chain(&top),
            "error sending request for url (http://127.0.0.1:9/): tcp connect error: Connection refused (os error 111)"
        );
    }
}
