//! JSON-LD contexts bundled with Hanse. The connector never fetches a context from the network:
//! a document that names any other remote context is rejected by the JSON-LD processing that reads these.
//!
//! Provenance of each file is in `vocab/contexts/SOURCE.md`.

/// The DSP 2025-1 context IRI, the only context DSP messages carry on the wire.
pub const DSPACE_2025_1: &str = "https://w3id.org/dspace/2025/1/context.jsonld";
/// The DSP 2025-1 ODRL profile context, `@import`ed by the DSP context.
pub const DSPACE_2025_1_ODRL_PROFILE: &str = "https://w3id.org/dspace/2025/1/odrl-profile.jsonld";
/// W3C Verifiable Credentials Data Model 2.0.
pub const CREDENTIALS_V2: &str = "https://www.w3.org/ns/credentials/v2";
/// W3C Decentralized Identifiers 1.0.
pub const DID_V1: &str = "https://www.w3.org/ns/did/v1";
/// ODRL 2.2.
pub const ODRL: &str = "http://www.w3.org/ns/odrl.jsonld";
/// Gaia-X 25.11 (Loire) development context.
pub const GAIA_X: &str = "https://w3id.org/gaia-x/development#";
/// EDC Management API context (v3 management API).
pub const EDC_MANAGEMENT: &str = "https://w3id.org/edc/connector/management/v0.0.1";
/// EDC's Management API v4 context. Not bundled (no published text); Hanse reads it by meaning (decision 0020).
pub const EDC_MANAGEMENT_V2: &str = "https://w3id.org/edc/connector/management/v2";

/// One bundled context document.
#[derive(Debug, Clone, Copy)]
pub struct BundledContext {
    /// The IRIs under which the document is published (aliases resolve to the same text).
    pub iris: &'static [&'static str],
    /// The document, byte for byte as published.
    pub text: &'static str,
}

/// Every bundled context.
pub const BUNDLED: &[BundledContext] = &[
    BundledContext { iris: &[DSPACE_2025_1], text: include_str!("../contexts/dspace-2025-1.jsonld") },
    BundledContext {
        iris: &[DSPACE_2025_1_ODRL_PROFILE],
        text: include_str!("../contexts/dspace-2025-1-odrl-profile.jsonld"),
    },
    BundledContext { iris: &[CREDENTIALS_V2], text: include_str!("../contexts/credentials-v2.jsonld") },
    BundledContext { iris: &[DID_V1, "https://w3id.org/did/v1"], text: include_str!("../contexts/did-v1.jsonld") },
    BundledContext {
        iris: &[ODRL, "https://www.w3.org/ns/odrl.jsonld"],
        text: include_str!("../contexts/odrl.jsonld"),
    },
    BundledContext {
        iris: &[GAIA_X, "https://w3id.org/gaia-x/development"],
        text: include_str!("../contexts/gaia-x-development.jsonld"),
    },
    BundledContext { iris: &[EDC_MANAGEMENT], text: include_str!("../contexts/edc-management-v1.jsonld") },
];

/// The `@context` value of the bundled context published at `iri`, to embed in a document that must be readable
/// without fetching anything (a management answer).
pub fn inline(iri: &str) -> Option<&'static serde_json::Value> {
    static PARSED: std::sync::OnceLock<Vec<serde_json::Value>> = std::sync::OnceLock::new();
    let parsed = PARSED.get_or_init(|| {
        BUNDLED
            .iter()
            .map(|c| {
                serde_json::from_str::<serde_json::Value>(c.text).map(|mut v| v["@context"].take()).unwrap_or_default()
            })
            .collect()
    });
    BUNDLED.iter().position(|c| c.iris.contains(&iri)).map(|i| &parsed[i])
}

/// Contexts an operator added (a data space's own, e.g. its policy context): IRI → document text, offline.
static ADDED: std::sync::RwLock<std::collections::BTreeMap<String, &'static str>> =
    std::sync::RwLock::new(std::collections::BTreeMap::new());

/// Why an operator's context was not added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("<{0}> is bundled with Hanse already")]
    Bundled(String),
    #[error("<{0}> was added already with another text")]
    Conflict(String),
    #[error("not a JSON-LD context document (a JSON object with `@context`): {0}")]
    NotAContext(String),
}

/// Adds the context document published at `iri`, as the operator was given it (never fetched). The same text may be
/// added again (several connectors in one process); another text for the same IRI, or a bundled IRI, is refused.
pub fn add(iri: &str, text: &str) -> Result<(), AddError> {
    if bundled(iri).is_some() {
        return Err(AddError::Bundled(iri.to_owned()));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) if value.get("@context").is_some_and(|c| c.is_object() || c.is_array()) => {}
        Ok(_) => return Err(AddError::NotAContext("it has no `@context` object".into())),
        Err(error) => return Err(AddError::NotAContext(error.to_string())),
    }
    let mut added = ADDED.write().unwrap_or_else(|p| p.into_inner());
    match added.get(iri) {
        Some(known) if *known == text => Ok(()),
        Some(_) => Err(AddError::Conflict(iri.to_owned())),
        None => {
            added.insert(iri.to_owned(), Box::leak(text.to_owned().into_boxed_str()));
            Ok(())
        }
    }
}

/// The text of the context at `iri`: bundled with Hanse, or added by the operator.
pub fn known(iri: &str) -> Option<&'static str> {
    bundled(iri).or_else(|| ADDED.read().unwrap_or_else(|p| p.into_inner()).get(iri).copied())
}

/// The text of the bundled context published at `iri`, if Hanse bundles it.
pub fn bundled(iri: &str) -> Option<&'static str> {
    BUNDLED.iter().find(|c| c.iris.contains(&iri)).map(|c| c.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_context_is_json_with_a_context_member() {
        for context in BUNDLED {
            let value: serde_json::Value =
                serde_json::from_str(context.text).unwrap_or_else(|e| panic!("{:?}: {e}", context.iris));
            assert!(value.get("@context").is_some(), "{:?}", context.iris);
        }
    }

    #[test]
    fn aliases_resolve_to_the_same_document() {
        assert_eq!(bundled(DID_V1), bundled("https://w3id.org/did/v1"));
        assert!(bundled("https://example.org/unknown.jsonld").is_none());
    }
}
