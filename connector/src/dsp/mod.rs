//! The Dataspace Protocol's wire, below the services that speak it: the client for peers ([`client`]), the DSP
//! error messages ([`error`]) and the catalogue request ([`catalog`]). The public router serves
//! it; the services send it.

pub mod catalog;
pub mod client;
pub mod error;

/// The DSP 2025-1 message types, as measurements label them.
pub const MESSAGE_TYPES: &[&str] = &[
    "CatalogRequestMessage",
    "DatasetRequestMessage",
    "ContractRequestMessage",
    "ContractOfferMessage",
    "ContractAgreementMessage",
    "ContractAgreementVerificationMessage",
    "ContractNegotiationEventMessage",
    "ContractNegotiationTerminationMessage",
    "ContractNegotiationRequest",
    "TransferRequestMessage",
    "TransferStartMessage",
    "TransferCompletionMessage",
    "TransferSuspensionMessage",
    "TransferTerminationMessage",
    "TransferProcessRequest",
];

/// A message's `@type` as a measurement label: one of [`MESSAGE_TYPES`] (with or without a `dspace:` prefix), or
/// `other`, so that a peer cannot grow the label set.
pub fn message_type_label(type_name: &str) -> &'static str {
    let name = type_name.rsplit([':', '/', '#']).next().unwrap_or_default();
    MESSAGE_TYPES.iter().find(|known| **known == name).copied().unwrap_or("other")
}

/// Whether a DSP message announces the end of its process to the peer: a termination, the FINALIZED event, a
/// completion. Such a notice is delivered with back-off until the peer takes it (or refuses it, or the convergence
/// deadline passes), since the process it ends can change no more on this side.
pub fn announces_end(message: &serde_json::Value) -> bool {
    let kind = message.get("@type").and_then(serde_json::Value::as_str).unwrap_or_default();
    match kind.rsplit([':', '/', '#']).next().unwrap_or_default() {
        "ContractNegotiationTerminationMessage" | "TransferTerminationMessage" | "TransferCompletionMessage" => true,
        "ContractNegotiationEventMessage" => message
            .get("eventType")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|event| event.rsplit([':', '/', '#']).next() == Some("FINALIZED")),
        _ => false,
    }
}

/// The DSP message a public route template (`{BASE}/negotiations/{pid}/request`, as axum matched it) receives, for
/// the measurements; `None` for routes that are not DSP.
pub fn message_of_route(method: &axum::http::Method, route: &str) -> Option<&'static str> {
    let rest = route.strip_prefix(hanse_core::paths::DSP_BASE)?;
    let get = method == axum::http::Method::GET;
    Some(match rest {
        "/catalog/request" => "CatalogRequestMessage",
        "/catalog/datasets/{id}" => "DatasetRequestMessage",
        "/negotiations/request" | "/negotiations/{pid}/request" => "ContractRequestMessage",
        "/negotiations/offers" | "/negotiations/{pid}/offers" => "ContractOfferMessage",
        "/negotiations/{pid}" if get => "ContractNegotiationRequest",
        "/negotiations/{pid}/events" => "ContractNegotiationEventMessage",
        "/negotiations/{pid}/agreement" => "ContractAgreementMessage",
        "/negotiations/{pid}/agreement/verification" => "ContractAgreementVerificationMessage",
        "/negotiations/{pid}/termination" => "ContractNegotiationTerminationMessage",
        "/transfers/request" => "TransferRequestMessage",
        "/transfers/{pid}" if get => "TransferProcessRequest",
        "/transfers/{pid}/start" => "TransferStartMessage",
        "/transfers/{pid}/completion" => "TransferCompletionMessage",
        "/transfers/{pid}/suspension" => "TransferSuspensionMessage",
        "/transfers/{pid}/termination" => "TransferTerminationMessage",
        _ => return None,
    })
}
