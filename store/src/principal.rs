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
    /// A management API key: its id (`management` for the configured operator key), its role, and the first 16 hex
    /// digits of its SHA-256 (which key value it was, across key changes, without revealing it).
    ApiKey { id: String, role: String, fingerprint: String },
    /// A `hanse` command run on the connector's host (the subcommand).
    CommandLine(String),
}

impl Principal {
    /// The principal of the API key known as `id` with `role`, whose SHA-256 (hex) is `digest`.
    pub fn api_key(id: &str, role: &str, digest: &str) -> Principal {
        Principal::ApiKey {
            id: id.to_owned(),
            role: role.to_owned(),
            fingerprint: digest[..16.min(digest.len())].to_owned(),
        }
    }

    /// Runs `future` with this principal behind every change it makes.
    pub async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        PRINCIPAL.scope(self, future).await
    }

    /// The principal as audit entries name it.
    pub fn to_json(&self) -> Value {
        match self {
            Principal::ApiKey { id, role, fingerprint } => {
                json!({"kind": "api-key", "id": id, "role": role, "fingerprint": fingerprint})
            }
            Principal::CommandLine(command) => json!({"kind": "command-line", "command": command}),
        }
    }

    /// The principal of the running task, as audit entries name it; outside any scope the change is the connector's
    /// own (start-up seeding from its configuration).
    pub fn current() -> Value {
        PRINCIPAL.try_with(Principal::to_json).unwrap_or_else(|_| json!({"kind": "connector"}))
    }
}

/// `events` with the running task's principal as `who` in each that does not name one: every audit entry a
/// management call or a command causes names its key or command. Outside any scope (a peer's message, the
/// connector's own work) the events are as given; their `participant` names the peer.
pub(crate) fn stamped(events: &[hanse_audit::Event]) -> std::borrow::Cow<'_, [hanse_audit::Event]> {
    use std::borrow::Cow;
    let unnamed = events.iter().any(|event| !event.details.contains_key("who"));
    if !unnamed || PRINCIPAL.try_with(|_| ()).is_err() {
        return Cow::Borrowed(events);
    }
    let mut events = events.to_vec();
    stamp(&mut events);
    Cow::Owned(events)
}

/// [`stamped`] in place, for events the caller owns.
pub(crate) fn stamp(events: &mut [hanse_audit::Event]) {
    let Ok(who) = PRINCIPAL.try_with(Principal::to_json) else { return };
    for event in events {
        event.details.entry("who").or_insert_with(|| who.clone());
    }
}
