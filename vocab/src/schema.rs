//! The official DSP 2025-1 JSON schemas, compiled in, and a validator for the messages Hanse sends and receives.
//!
//! Enabled with the `schema` feature (off by default: it pulls in a JSON-Schema engine). The schema files are in
//! `vocab/dsp-spec/2025-1` (see `vocab/dsp-spec/SOURCE.md`). One defect of the official files is mended at load time:
//! three transfer schemas write `#definitions/...` where JSON pointers need `#/definitions/...`.

use std::sync::OnceLock;

use serde_json::Value;

/// Every DSP 2025-1 schema: path relative to `https://w3id.org/dspace/2025/1/`, and text.
pub const SCHEMAS: &[(&str, &str)] = &[
    ("catalog/catalog-error-schema.json", include_str!("../dsp-spec/2025-1/catalog/catalog-error-schema.json")),
    (
        "catalog/catalog-request-message-schema.json",
        include_str!("../dsp-spec/2025-1/catalog/catalog-request-message-schema.json"),
    ),
    ("catalog/catalog-schema.json", include_str!("../dsp-spec/2025-1/catalog/catalog-schema.json")),
    (
        "catalog/dataset-request-message-schema.json",
        include_str!("../dsp-spec/2025-1/catalog/dataset-request-message-schema.json"),
    ),
    ("catalog/dataset-schema.json", include_str!("../dsp-spec/2025-1/catalog/dataset-schema.json")),
    ("common/context-schema.json", include_str!("../dsp-spec/2025-1/common/context-schema.json")),
    ("common/did-service-schema.json", include_str!("../dsp-spec/2025-1/common/did-service-schema.json")),
    ("common/protocol-version-schema.json", include_str!("../dsp-spec/2025-1/common/protocol-version-schema.json")),
    (
        "negotiation/contract-agreement-message-schema.json",
        include_str!("../dsp-spec/2025-1/negotiation/contract-agreement-message-schema.json"),
    ),
    (
        "negotiation/contract-agreement-verification-message-schema.json",
        include_str!("../dsp-spec/2025-1/negotiation/contract-agreement-verification-message-schema.json"),
    ),
    (
        "negotiation/contract-negotiation-error-schema.json",
        include_str!("../dsp-spec/2025-1/negotiation/contract-negotiation-error-schema.json"),
    ),
    (
        "negotiation/contract-negotiation-event-message-schema.json",
        include_str!("../dsp-spec/2025-1/negotiation/contract-negotiation-event-message-schema.json"),
    ),
    (
        "negotiation/contract-negotiation-schema.json",
        include_str!("../dsp-spec/2025-1/negotiation/contract-negotiation-schema.json"),
    ),
    (
        "negotiation/contract-negotiation-termination-message-schema.json",
        include_str!("../dsp-spec/2025-1/negotiation/contract-negotiation-termination-message-schema.json"),
    ),
    (
        "negotiation/contract-offer-message-schema.json",
        include_str!("../dsp-spec/2025-1/negotiation/contract-offer-message-schema.json"),
    ),
    (
        "negotiation/contract-request-message-schema.json",
        include_str!("../dsp-spec/2025-1/negotiation/contract-request-message-schema.json"),
    ),
    ("negotiation/contract-schema.json", include_str!("../dsp-spec/2025-1/negotiation/contract-schema.json")),
    ("transfer/data-address-schema.json", include_str!("../dsp-spec/2025-1/transfer/data-address-schema.json")),
    (
        "transfer/transfer-completion-message-schema.json",
        include_str!("../dsp-spec/2025-1/transfer/transfer-completion-message-schema.json"),
    ),
    ("transfer/transfer-error-schema.json", include_str!("../dsp-spec/2025-1/transfer/transfer-error-schema.json")),
    ("transfer/transfer-process-schema.json", include_str!("../dsp-spec/2025-1/transfer/transfer-process-schema.json")),
    (
        "transfer/transfer-request-message-schema.json",
        include_str!("../dsp-spec/2025-1/transfer/transfer-request-message-schema.json"),
    ),
    ("transfer/transfer-schema.json", include_str!("../dsp-spec/2025-1/transfer/transfer-schema.json")),
    (
        "transfer/transfer-start-message-schema.json",
        include_str!("../dsp-spec/2025-1/transfer/transfer-start-message-schema.json"),
    ),
    (
        "transfer/transfer-suspension-message-schema.json",
        include_str!("../dsp-spec/2025-1/transfer/transfer-suspension-message-schema.json"),
    ),
    (
        "transfer/transfer-termination-message-schema.json",
        include_str!("../dsp-spec/2025-1/transfer/transfer-termination-message-schema.json"),
    ),
];

/// The base IRI of the DSP 2025-1 schemas.
pub const BASE: &str = "https://w3id.org/dspace/2025/1/";

/// Validates DSP 2025-1 messages against the official schemas.
pub struct DspSchemas {
    validators: Vec<(&'static str, jsonschema::Validator)>,
}

fn mended(text: &str) -> Value {
    serde_json::from_str(&text.replace("#definitions/", "#/definitions/")).expect("bundled DSP schemas are JSON")
}

impl DspSchemas {
    /// The process-wide instance (building the validators takes a few milliseconds).
    pub fn get() -> &'static DspSchemas {
        static SCHEMAS_ONCE: OnceLock<DspSchemas> = OnceLock::new();
        SCHEMAS_ONCE.get_or_init(DspSchemas::build)
    }

    fn build() -> DspSchemas {
        let resources: Vec<(String, jsonschema::Resource)> = SCHEMAS
            .iter()
            .map(|(path, text)| {
                let resource = jsonschema::Resource::from_contents(mended(text)).expect("schema resource");
                (format!("{BASE}{path}"), resource)
            })
            .collect();
        let validators = SCHEMAS
            .iter()
            .map(|(path, text)| {
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft201909)
                    .with_resources(resources.clone().into_iter())
                    .build(&mended(text))
                    .unwrap_or_else(|e| panic!("DSP schema {path} does not compile: {e}"));
                (*path, validator)
            })
            .collect();
        DspSchemas { validators }
    }

    /// Validates `message` against the schema at `path` (e.g. `catalog/catalog-schema.json`); the error lists every
    /// violation with its JSON pointer.
    pub fn validate(&self, path: &str, message: &Value) -> Result<(), Vec<String>> {
        let (_, validator) =
            self.validators.iter().find(|(p, _)| *p == path).unwrap_or_else(|| panic!("no DSP schema at {path}"));
        let errors: Vec<String> =
            validator.iter_errors(message).map(|e| format!("{}: {}", e.instance_path, e)).collect();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// The schema path for a message by its `@type` (e.g. `Catalog` → `catalog/catalog-schema.json`).
    pub fn path_for_type(message_type: &str) -> Option<&'static str> {
        Some(match message_type {
            "Catalog" => "catalog/catalog-schema.json",
            "Dataset" => "catalog/dataset-schema.json",
            "CatalogError" => "catalog/catalog-error-schema.json",
            "CatalogRequestMessage" => "catalog/catalog-request-message-schema.json",
            "DatasetRequestMessage" => "catalog/dataset-request-message-schema.json",
            "ContractRequestMessage" => "negotiation/contract-request-message-schema.json",
            "ContractOfferMessage" => "negotiation/contract-offer-message-schema.json",
            "ContractAgreementMessage" => "negotiation/contract-agreement-message-schema.json",
            "ContractAgreementVerificationMessage" => "negotiation/contract-agreement-verification-message-schema.json",
            "ContractNegotiationEventMessage" => "negotiation/contract-negotiation-event-message-schema.json",
            "ContractNegotiationTerminationMessage" => {
                "negotiation/contract-negotiation-termination-message-schema.json"
            }
            "ContractNegotiation" => "negotiation/contract-negotiation-schema.json",
            "ContractNegotiationError" => "negotiation/contract-negotiation-error-schema.json",
            "TransferRequestMessage" => "transfer/transfer-request-message-schema.json",
            "TransferStartMessage" => "transfer/transfer-start-message-schema.json",
            "TransferCompletionMessage" => "transfer/transfer-completion-message-schema.json",
            "TransferSuspensionMessage" => "transfer/transfer-suspension-message-schema.json",
            "TransferTerminationMessage" => "transfer/transfer-termination-message-schema.json",
            "TransferProcess" => "transfer/transfer-process-schema.json",
            "TransferError" => "transfer/transfer-error-schema.json",
            "VersionResponse" | "protocolVersions" => "common/protocol-version-schema.json",
            _ => return None,
        })
    }

    /// Validates a message against the schema its `@type` names.
    pub fn validate_message(&self, message: &Value) -> Result<(), Vec<String>> {
        let message_type = message.get("@type").and_then(Value::as_str).unwrap_or_default();
        match Self::path_for_type(message_type) {
            Some(path) => self.validate(path, message),
            None => Err(vec![format!("no DSP 2025-1 schema for @type {message_type:?}")]),
        }
    }
}

/// The official DCP 1.0.1 JSON schemas (`vocab/dcp-spec/1.0.1`, see `vocab/dcp-spec/SOURCE.md`), registered where the
/// message schemas look for them (the files' own `$id`s are partly wrong or missing: SOURCE.md lists the defects).
const DCP_SCHEMAS: &[(&str, &str)] = &[
    (
        "https://w3id.org/dspace-dcp/v1.0/presentation/presentation-query-message-schema.json",
        include_str!("../dcp-spec/1.0.1/presentation/presentation-query-message-schema.json"),
    ),
    (
        "https://w3id.org/dspace-dcp/v1.0/presentation/presentation-response-message-schema.json",
        include_str!("../dcp-spec/1.0.1/presentation/presentation-response-message-schema.json"),
    ),
    (
        "https://w3id.org/dspace-dcp/v1.0/presentation/credential-message-schema.json",
        include_str!("../dcp-spec/1.0.1/issuance/credential-message-schema.json"),
    ),
    (
        "https://w3id.org/dspace-dcp/v1.0/common/context-schema.json",
        include_str!("../dcp-spec/1.0.1/common/context-schema.json"),
    ),
    (
        "https://w3id.org/dspace-dcp/v08/common/context-schema.json",
        include_str!("../dcp-spec/1.0.1/common/context-schema.json"),
    ),
    (
        "https://identity.foundation/presentation-exchange/schemas/presentation-definition.json",
        include_str!("../dcp-spec/1.0.1/presentation-exchange/presentation-definition.json"),
    ),
    (
        "https://identity.foundation/presentation-exchange/schemas/presentation-submission.json",
        include_str!("../dcp-spec/1.0.1/presentation-exchange/presentation-submission.json"),
    ),
    (
        "https://identity.foundation/claim-format-registry/schemas/presentation-definition-claim-format-designations.json",
        include_str!("../dcp-spec/1.0.1/presentation-exchange/presentation-definition-claim-format-designations.json"),
    ),
    (
        "https://identity.foundation/claim-format-registry/schemas/presentation-submission-claim-format-designations.json",
        include_str!("../dcp-spec/1.0.1/presentation-exchange/presentation-submission-claim-format-designations.json"),
    ),
];

/// Validators of the DCP messages Hanse's credential service and verifier exchange.
pub struct DcpSchemas {
    validators: Vec<(&'static str, jsonschema::Validator)>,
}

impl DcpSchemas {
    /// The process-wide instance.
    pub fn get() -> &'static DcpSchemas {
        static ONCE: OnceLock<DcpSchemas> = OnceLock::new();
        ONCE.get_or_init(|| {
            let resources: Vec<(String, jsonschema::Resource)> = DCP_SCHEMAS
                .iter()
                .map(|(uri, text)| {
                    let value: Value = serde_json::from_str(text).expect("bundled DCP schemas are JSON");
                    ((*uri).to_owned(), jsonschema::Resource::from_contents(value).expect("schema resource"))
                })
                .chain(std::iter::once((
                    // A presentation definition's `filter` is a JSON Schema, checked against the draft-07
                    // meta-schema, which is not bundled: anything passes there (Hanse answers presentation
                    // definitions with 501).
                    "http://json-schema.org/draft-07/schema".to_owned(),
                    jsonschema::Resource::from_contents(serde_json::json!({})).expect("an empty schema"),
                )))
                .collect();
            let validators = ["PresentationQueryMessage", "PresentationResponseMessage", "CredentialMessage"]
                .into_iter()
                .zip(&DCP_SCHEMAS[..3])
                .map(|(name, (uri, text))| {
                    let mut schema: Value = serde_json::from_str(text).expect("bundled DCP schemas are JSON");
                    schema["$id"] = Value::String((*uri).to_owned());
                    let validator = jsonschema::options()
                        .with_resources(resources.clone().into_iter())
                        .build(&schema)
                        .unwrap_or_else(|e| panic!("DCP schema {uri} does not compile: {e}"));
                    (name, validator)
                })
                .collect();
            DcpSchemas { validators }
        })
    }

    /// Validates a DCP message by its `type` (`PresentationQueryMessage`, `PresentationResponseMessage`,
    /// `CredentialMessage`); the error lists every violation with its JSON pointer.
    pub fn validate(&self, message: &Value) -> Result<(), Vec<String>> {
        let kind = message.get("type").and_then(Value::as_str).unwrap_or_default();
        let Some((_, validator)) = self.validators.iter().find(|(name, _)| *name == kind) else {
            return Err(vec![format!("`{kind}` is not a DCP message type")]);
        };
        let errors: Vec<String> =
            validator.iter_errors(message).map(|e| format!("{}: {}", e.instance_path, e)).collect();
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

#[cfg(test)]
mod dcp_tests {
    use super::DcpSchemas;

    /// The specification's own examples validate, and a message lacking what the schema requires does not.
    #[test]
    fn the_official_examples_validate() {
        let schemas = DcpSchemas::get();
        for example in [
            include_str!("../dcp-spec/1.0.1/examples/presentation-query-message.json"),
            include_str!("../dcp-spec/1.0.1/examples/presentation-response-message.json"),
            include_str!("../dcp-spec/1.0.1/examples/credential-message.json"),
        ] {
            let message: serde_json::Value = serde_json::from_str(example).unwrap();
            schemas.validate(&message).unwrap_or_else(|e| panic!("{e:?}: {message}"));
        }
        let bare = serde_json::json!({"type": "PresentationResponseMessage"});
        assert!(schemas.validate(&bare).is_err());
    }
}
