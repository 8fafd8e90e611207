//! Who asked for a change the audit log records: an API key (by id and fingerprint, never the key), the command line,
//! or the connector itself. The management listener's guard runs each request inside [`Principal::scope`], and the
//! entries of management changes, credential issuance and revocation name the principal they were made under.

use serde_json::{Value, json};

tokio::task_local! {
    static PRINCIPAL: Principal;
}

/// Who a change is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A management API key: its configured id, and the first 16 hex digits of its SHA-256 (which key value it was,
    /// across key changes, without revealing it).
    ApiKey { id: String, fingerprint: String },
    /// A `hanse` command run on the connector's host (the subcommand).
    CommandLine(String),
}

impl Principal {
    /// The principal of the API key `key` known as `id`.
    pub fn api_key(id: &str, key: &str) -> Principal {
        let digest = hanse_core::encode::sha256_hex(key.as_bytes());
        Principal::ApiKey { id: id.to_owned(), fingerprint: digest[..16].to_owned() }
    }

    /// Runs `future` with this principal behind every change it makes.
    pub async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        PRINCIPAL.scope(self, future).await
    }

    /// The principal as audit entries name it.
    pub fn to_json(&self) -> Value {
        match self {
            Principal::ApiKey { id, fingerprint } => json!({"kind": "api-key", "id": id, "fingerprint": fingerprint}),
            Principal::CommandLine(command) => json!({"kind": "command-line", "command": command}),
        }
    }

    /// The principal of the running task, as audit entries name it; outside any scope the change is the connector's
    /// own (start-up seeding from its configuration).
    pub fn current() -> Value {
        PRINCIPAL.try_with(Principal::to_json).unwrap_or_else(|_| json!({"kind": "connector"}))
    }
}
