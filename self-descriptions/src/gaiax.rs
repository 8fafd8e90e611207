//! Gaia-X 25.11 (Loire) self-descriptions: the credential subjects a participant publishes about itself and its
//! connector, and their conformance to the Trust Framework 2511 shapes.
//!
//! A participant publishes a `gx:LegalPerson` (its legal name and addresses, pointing at its registration numbers),
//! one `gx:RegistrationNumber` per number (a VAT id, LEI code, EORI, EUID, tax id or local number; self-issued for
//! development, or a notary's credential imported as is), a `gx:Issuer` accepting the Gaia-X terms and conditions,
//! a `gx:ServiceOffering` for its connector (DSP endpoint, terms, data export, usage policy) and one
//! `gx:VirtualResource` per published dataset (25.11 has no data-resource shape of its own; a virtual resource
//! is what it offers for data). This module builds the credentials unsigned; the connector signs and serves them.
//!
//! Credentials use the versioned `https://w3id.org/gaia-x/2511#` namespace with an inline context, so that any
//! verifier reads them without fetching a context. Credentials written against the development namespace
//! (`https://w3id.org/gaia-x/development#`, the same 25.11 vocabulary) are read as 2511 for validation.

use std::sync::OnceLock;

use hanse_vocab::contexts::CREDENTIALS_V2;
use hanse_vocab::ns::{GX, GX_2511, SCHEMA, VCARD, XSD};
use oxrdf::{BlankNode, Term};
use serde_json::{Map, Value as Json, json};

use crate::shacl::{Graph, ShaclError, Shapes, Violation};

/// The Trust Framework 2511 shapes (Eclipse XFSC's copy of the Gaia-X registry's, see `shapes/SOURCE.md`).
const SHAPES: &str = include_str!("../shapes/gaia-x-2511.shapes.ttl");
/// The 2511 class hierarchy, for `sh:class` checks on sub-classes (`gx:VatID` is a `gx:RegistrationNumber`).
const HIERARCHY: &str = include_str!("../shapes/gaia-x-2511.hierarchy.ttl");

/// The compiled 2511 shapes (compiled once, on first use: about 160,000 triples).
pub fn shapes() -> &'static Shapes {
    static SHAPES_CELL: OnceLock<Shapes> = OnceLock::new();
    SHAPES_CELL.get_or_init(|| Shapes::parse(SHAPES, Some(HIERARCHY)).expect("the bundled Gaia-X shapes compile"))
}

/// The text of the bundled shapes and class hierarchy (for external validators in tests and diagnostics).
pub fn shapes_text() -> (&'static str, &'static str) {
    (SHAPES, HIERARCHY)
}

/// The `@context` of every Hanse Gaia-X credential: VC 2.0, then the prefixes the subjects use.
pub fn context() -> Json {
    json!([CREDENTIALS_V2, {"gx": GX_2511, "schema": SCHEMA, "vcard": VCARD, "xsd": XSD, "dct": "http://purl.org/dc/terms/"}])
}

/// The SHA-256 hashes of the Gaia-X terms and conditions the 2511 shapes accept for `gx:Issuer`.
pub fn accepted_terms_hashes() -> Vec<String> {
    shapes().allowed_values(&format!("{GX_2511}Issuer"), &format!("{GX_2511}gaiaxTermsAndConditions"))
}

/// A postal address (`gx:Address`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// ISO 3166-1 alpha-2 (or alpha-3, or numeric) country code.
    pub country_code: String,
    /// The NUTS-2 region code the shapes list for `vcard:region` (e.g. `DE30` for Berlin).
    pub region: Option<String>,
    pub locality: Option<String>,
    pub postal_code: Option<String>,
    pub street_address: Option<String>,
}

/// A registration number of a legal person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// A VAT identification number, with the issuing country.
    VatId { value: String, country_code: Option<String> },
    /// A Legal Entity Identifier, with the country and ISO 3166-2 subdivision of the legal address.
    Lei { value: String, country_code: Option<String>, subdivision: Option<String> },
    /// An Economic Operators Registration and Identification number, with its country's name.
    Eori { value: String, country: Option<String> },
    /// A European Unique Identifier.
    Euid(String),
    /// A tax identification number.
    TaxId(String),
    /// A number of a local (national) register.
    Local(String),
}

impl Registration {
    /// The short name used in credential ids: `vat-id`, `lei-code`, `eori`, `euid`, `tax-id`, `local`.
    pub fn slug(&self) -> &'static str {
        match self {
            Registration::VatId { .. } => "vat-id",
            Registration::Lei { .. } => "lei-code",
            Registration::Eori { .. } => "eori",
            Registration::Euid(_) => "euid",
            Registration::TaxId(_) => "tax-id",
            Registration::Local(_) => "local",
        }
    }

    /// The credential subject describing this number.
    pub fn subject(&self, id: &str) -> Json {
        let mut s = Map::new();
        s.insert("id".into(), json!(id));
        let mut put = |key: &str, value: &Option<String>| {
            if let Some(value) = value {
                s.insert(key.into(), json!(value));
            }
        };
        let kind = match self {
            Registration::VatId { value, country_code } => {
                put("gx:vatID", &Some(value.clone()));
                put("gx:countryCode", country_code);
                "gx:VatID"
            }
            Registration::Lei { value, country_code, subdivision } => {
                put("schema:leiCode", &Some(value.clone()));
                put("gx:countryCode", country_code);
                put("gx:subdivisionCountryCode", subdivision);
                "gx:LeiCode"
            }
            Registration::Eori { value, country } => {
                put("gx:eori", &Some(value.clone()));
                put("gx:country", country);
                "gx:EORI"
            }
            Registration::Euid(value) => {
                put("gx:euid", &Some(value.clone()));
                "gx:EUID"
            }
            Registration::TaxId(value) => {
                put("schema:taxID", &Some(value.clone()));
                "gx:TaxID"
            }
            Registration::Local(value) => {
                put("gx:local", &Some(value.clone()));
                "gx:LocalRegistrationNumber"
            }
        };
        s.insert("type".into(), json!(kind));
        Json::Object(s)
    }
}

/// Who the participant is.
#[derive(Debug, Clone)]
pub struct Participant {
    pub legal_name: String,
    pub description: Option<String>,
    pub headquarters: Address,
    pub legal_address: Address,
    /// The SHA-256 of the Gaia-X terms and conditions the participant accepts as an issuer.
    pub gaia_x_terms: String,
}

/// Terms and conditions: where they are published and the SHA-256 of their text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    pub url: String,
    pub hash: String,
}

/// How a customer gets its data out of the service (`gx:DataAccountExport`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataExport {
    /// `API`, `email`, `webform`, `unregisteredLetter`, `registeredLetter` or `supportCenter`.
    pub request_type: String,
    /// `digital` or `physical`.
    pub access_type: String,
    /// A media type (`application/json`).
    pub format_type: String,
}

/// The connector as a service offering.
#[derive(Debug, Clone)]
pub struct Offering {
    pub name: String,
    pub description: Option<String>,
    /// The DSP endpoint.
    pub endpoint_url: String,
    pub terms: Vec<Terms>,
    pub data_export: DataExport,
    /// The ODRL policy (JSON text) under which the offering is used, if one applies to all of it.
    pub policy: Option<String>,
    pub keywords: Vec<String>,
}

/// A published dataset as a `gx:VirtualResource`.
#[derive(Debug, Clone)]
pub struct Resource {
    /// The subject IRI.
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// An SPDX licence id or a licence URL.
    pub license: String,
    /// The access and usage policy in words or as ODRL (JSON text).
    pub policy: String,
}

/// An unsigned credential: its id, its Gaia-X type and its subject.
#[derive(Debug, Clone)]
pub struct Credential {
    pub id: String,
    /// `gx:LegalPerson`, `gx:VatID`, ...
    pub kind: String,
    pub subject: Json,
}

impl Credential {
    /// The subject's id (what other credentials refer to).
    pub fn subject_id(&self) -> &str {
        self.subject.get("id").and_then(Json::as_str).unwrap_or_default()
    }

    /// The VC 2.0 payload, issued by `issuer`, valid in `[valid_from, valid_until]` (RFC 3339 texts).
    pub fn payload(&self, issuer: &str, valid_from: &str, valid_until: &str) -> Json {
        json!({
            "@context": context(),
            "id": self.id,
            "type": ["VerifiableCredential", self.kind],
            "issuer": issuer,
            "validFrom": valid_from,
            "validUntil": valid_until,
            "credentialSubject": self.subject,
        })
    }
}

fn uri(value: &str) -> Json {
    json!({"@value": value, "@type": "xsd:anyURI"})
}

fn address(a: &Address) -> Json {
    let mut s = Map::new();
    s.insert("type".into(), json!("gx:Address"));
    s.insert("gx:countryCode".into(), json!(a.country_code));
    for (key, value) in [
        ("vcard:region", &a.region),
        ("vcard:locality", &a.locality),
        ("vcard:postal-code", &a.postal_code),
        ("vcard:street-address", &a.street_address),
    ] {
        if let Some(value) = value {
            s.insert(key.into(), json!(value));
        }
    }
    Json::Object(s)
}

/// The id of credential `name` published under `base` (the public listener's credential folder URL).
pub fn credential_id(base: &str, name: &str) -> String {
    format!("{}/{name}", base.trim_end_matches('/'))
}

fn subject_of(id: &str) -> String {
    format!("{id}#cs")
}

/// The legal person; `registrations` are the subject ids of its registration number credentials.
pub fn legal_person(base: &str, participant: &Participant, registrations: &[String]) -> Credential {
    let id = credential_id(base, "legal-person");
    let mut s = Map::new();
    s.insert("id".into(), json!(subject_of(&id)));
    s.insert("type".into(), json!("gx:LegalPerson"));
    s.insert("schema:name".into(), json!(participant.legal_name));
    if let Some(description) = &participant.description {
        s.insert("schema:description".into(), json!(description));
    }
    s.insert("gx:headquartersAddress".into(), address(&participant.headquarters));
    s.insert("gx:legalAddress".into(), address(&participant.legal_address));
    s.insert("gx:registrationNumber".into(), registrations.iter().map(|r| json!({"id": r})).collect::<Json>());
    Credential { id, kind: "gx:LegalPerson".into(), subject: Json::Object(s) }
}

/// A self-issued registration number credential.
pub fn registration_number(base: &str, registration: &Registration) -> Credential {
    let id = credential_id(base, &format!("registration-number-{}", registration.slug()));
    let subject = registration.subject(&subject_of(&id));
    let kind = subject["type"].as_str().unwrap_or_default().to_owned();
    Credential { id, kind, subject }
}

/// The issuer credential: the participant accepts the Gaia-X terms and conditions whose hash it gives.
pub fn issuer(base: &str, participant: &Participant) -> Credential {
    let id = credential_id(base, "issuer");
    let subject =
        json!({"id": subject_of(&id), "type": "gx:Issuer", "gx:gaiaxTermsAndConditions": participant.gaia_x_terms});
    Credential { id, kind: "gx:Issuer".into(), subject }
}

/// The connector's service offering, provided by `provider` (the legal person's subject id), aggregating
/// `resources` (subject ids of the virtual resources).
pub fn service_offering(base: &str, offering: &Offering, provider: &str, resources: &[String]) -> Credential {
    let id = credential_id(base, "service-offering");
    let mut s = Map::new();
    s.insert("id".into(), json!(subject_of(&id)));
    s.insert("type".into(), json!("gx:ServiceOffering"));
    s.insert("schema:name".into(), json!(offering.name));
    if let Some(description) = &offering.description {
        s.insert("schema:description".into(), json!(description));
    }
    s.insert("gx:providedBy".into(), json!({"id": provider}));
    s.insert(
        "gx:serviceOfferingTermsAndConditions".into(),
        offering
            .terms
            .iter()
            .map(|t| json!({"type": "gx:TermsAndConditions", "gx:url": uri(&t.url), "gx:hash": t.hash}))
            .collect::<Json>(),
    );
    s.insert(
        "gx:dataAccountExport".into(),
        json!({
            "type": "gx:DataAccountExport",
            "gx:requestType": offering.data_export.request_type,
            "gx:accessType": offering.data_export.access_type,
            "gx:formatType": offering.data_export.format_type,
        }),
    );
    s.insert(
        "gx:endpoint".into(),
        json!({
            "type": "gx:Endpoint",
            "gx:endpointURL": uri(&offering.endpoint_url),
            "gx:standardConformity": {
                "type": "gx:StandardConformity",
                "dct:title": "Dataspace Protocol 2025-1",
                "gx:standardReference": uri("https://eclipse-dataspace-protocol-base.github.io/DataspaceProtocol/2025-1/"),
                "gx:publisher": "Eclipse Dataspace Working Group",
            },
        }),
    );
    if let Some(policy) = &offering.policy {
        s.insert(
            "gx:servicePolicy".into(),
            json!({"type": "gx:AccessUsagePolicy", "gx:policyLanguage": "ODRL", "gx:policyDocument": policy}),
        );
    }
    if !offering.keywords.is_empty() {
        s.insert("gx:keyword".into(), json!(offering.keywords));
    }
    if !resources.is_empty() {
        s.insert("gx:aggregationOfResources".into(), resources.iter().map(|r| json!({"id": r})).collect::<Json>());
    }
    Credential { id, kind: "gx:ServiceOffering".into(), subject: Json::Object(s) }
}

/// A dataset as a virtual resource whose copyright `owner` (a legal person's subject id) holds.
pub fn resource(base: &str, name: &str, resource: &Resource, owner: &str) -> Credential {
    let id = credential_id(base, name);
    let mut s = Map::new();
    s.insert("id".into(), json!(resource.id));
    s.insert("type".into(), json!("gx:VirtualResource"));
    s.insert("schema:name".into(), json!(resource.name));
    if let Some(description) = &resource.description {
        s.insert("schema:description".into(), json!(description));
    }
    s.insert("gx:copyrightOwnedBy".into(), json!({"id": owner}));
    let license = if resource.license.contains(':') { uri(&resource.license) } else { json!(resource.license) };
    s.insert("gx:license".into(), license);
    s.insert("gx:resourcePolicy".into(), json!(resource.policy));
    Credential { id, kind: "gx:VirtualResource".into(), subject: Json::Object(s) }
}

/// Why a set of credentials could not be checked against the shapes.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    #[error("credential {id}: {reason}")]
    Unreadable { id: String, reason: String },
    #[error(transparent)]
    Shacl(#[from] ShaclError),
}

/// The RDF (N-Quads) of the credential subjects of `payloads` (VC payloads), as one graph: what the shapes apply
/// to. Credentials in the development namespace are read as 2511.
pub fn subjects_nquads(payloads: &[Json]) -> Result<String, ConformanceError> {
    let mut out = String::new();
    for (index, payload) in payloads.iter().enumerate() {
        let id = payload.get("id").and_then(Json::as_str).unwrap_or("(no id)").to_owned();
        let subjects = match payload.get("credentialSubject") {
            Some(Json::Array(items)) => items.clone(),
            Some(one @ Json::Object(_)) => vec![one.clone()],
            _ => return Err(ConformanceError::Unreadable { id, reason: "it has no credentialSubject".into() }),
        };
        let context = payload.get("@context").cloned().unwrap_or_else(|| json!([CREDENTIALS_V2]));
        let document = json!({"@context": context, "@graph": subjects});
        let nquads = hanse_vocab::jsonld::to_nquads(&document)
            .map_err(|e| ConformanceError::Unreadable { id: id.clone(), reason: e.to_string() })?;
        // Each conversion numbers its blank nodes from zero: give them this credential's own labels.
        for quad in oxttl::NQuadsParser::new().for_slice(nquads.replace(GX, GX_2511).as_bytes()) {
            let quad = quad.map_err(|e| ConformanceError::Unreadable { id: id.clone(), reason: e.to_string() })?;
            let relabel = |term: Term| match term {
                Term::BlankNode(b) => Term::BlankNode(BlankNode::new_unchecked(format!("c{index}n{}", b.as_str()))),
                other => other,
            };
            let subject = relabel(quad.subject.into());
            let object = relabel(quad.object);
            out.push_str(&format!("{subject} {} {object} .\n", quad.predicate));
        }
    }
    Ok(out)
}

/// Checks the credential subjects of `payloads` against the 2511 shapes, as one graph (a legal person's
/// registration numbers are in other credentials). An empty answer means they conform.
pub fn check(payloads: &[Json]) -> Result<Vec<Violation>, ConformanceError> {
    let graph = Graph::from_nquads(&subjects_nquads(payloads)?)?;
    Ok(shapes().validate(&graph))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERMS: &str = "4bd7554097444c960292b4726c2efa1373485e8a5565d94d41195214c5e0ceb3";
    const BASE: &str = "https://charite.example/gaia-x/credentials";

    fn participant() -> Participant {
        let berlin = Address {
            country_code: "DE".into(),
            region: Some("DE30".into()),
            locality: Some("Berlin".into()),
            postal_code: Some("10117".into()),
            street_address: Some("Charitéplatz 1".into()),
        };
        Participant {
            legal_name: "Charité – Universitätsmedizin Berlin".into(),
            description: None,
            headquarters: berlin.clone(),
            legal_address: berlin,
            gaia_x_terms: TERMS.into(),
        }
    }

    fn payloads(registrations: &[Registration], participant: &Participant) -> Vec<Json> {
        let numbers: Vec<Credential> = registrations.iter().map(|r| registration_number(BASE, r)).collect();
        let ids: Vec<String> = numbers.iter().map(|n| n.subject_id().to_owned()).collect();
        let person = legal_person(BASE, participant, &ids);
        let data = Resource {
            id: "urn:hanse:dataset:diabetes".into(),
            name: "Diabetes cohort".into(),
            description: Some("Adults with type 2 diabetes".into()),
            license: "CC-BY-4.0".into(),
            policy: "{\"@type\":\"Offer\"}".into(),
        };
        let resource = resource(BASE, "resource-diabetes", &data, person.subject_id());
        let offering = Offering {
            name: "Hanse connector".into(),
            description: None,
            endpoint_url: "https://charite.example/dsp".into(),
            terms: vec![Terms { url: "https://charite.example/terms".into(), hash: "ab".repeat(32) }],
            data_export: DataExport {
                request_type: "API".into(),
                access_type: "digital".into(),
                format_type: "application/json".into(),
            },
            policy: Some("{}".into()),
            keywords: vec!["health".into()],
        };
        let offering = service_offering(BASE, &offering, person.subject_id(), &[resource.subject_id().to_owned()]);
        let mut all = numbers;
        all.extend([person, issuer(BASE, participant), offering, resource]);
        all.iter()
            .map(|c| c.payload("did:web:charite.example", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"))
            .collect()
    }

    fn vat() -> Registration {
        Registration::VatId { value: "DE811220542".into(), country_code: Some("DE".into()) }
    }

    #[test]
    fn the_generated_credentials_conform_to_the_2511_shapes() {
        let every = [
            vat(),
            Registration::Lei {
                value: "529900T8BM49AURSDO55".into(),
                country_code: Some("DE".into()),
                subdivision: Some("DE-BE".into()),
            },
            Registration::Eori { value: "DE123456789012345".into(), country: Some("Germany".into()) },
            Registration::Euid("DEB1234.HRB12345".into()),
            Registration::TaxId("27/123/45678".into()),
            Registration::Local("HRB 12345".into()),
        ];
        let violations = check(&payloads(&every, &participant())).unwrap();
        assert_eq!(violations, vec![], "{violations:#?}");
        assert_eq!(accepted_terms_hashes().len(), 2);
        assert!(accepted_terms_hashes().contains(&TERMS.to_owned()));
    }

    #[test]
    fn a_legal_person_without_a_registration_number_is_named() {
        let violations = check(&payloads(&[], &participant())).unwrap();
        assert!(
            violations
                .iter()
                .any(|v| v.path.as_deref() == Some("gx:registrationNumber") && v.message.contains("at least 1")),
            "{violations:#?}"
        );
    }

    #[test]
    fn a_wrong_country_code_and_unaccepted_terms_are_named() {
        let mut wrong = participant();
        wrong.legal_address.country_code = "XX".into();
        wrong.gaia_x_terms = "00".repeat(32);
        let violations = check(&payloads(&[vat()], &wrong)).unwrap();
        assert!(
            violations.iter().any(|v| v.path.as_deref() == Some("gx:countryCode") && v.message.contains("\"XX\"")),
            "{violations:#?}"
        );
        assert!(violations.iter().any(|v| v.path.as_deref() == Some("gx:gaiaxTermsAndConditions")), "{violations:#?}");
    }

    #[test]
    fn development_namespace_credentials_are_read_as_2511() {
        let mut payload = payloads(&[vat()], &participant()).remove(0);
        payload["@context"] = json!([CREDENTIALS_V2, "https://w3id.org/gaia-x/development#"]);
        payload["credentialSubject"] = json!({"id": "https://x.example/vat#cs", "type": "VatID", "vatID": "DE1"});
        let nquads = subjects_nquads(&[payload]).unwrap();
        assert!(nquads.contains("<https://w3id.org/gaia-x/2511#VatID>"), "{nquads}");
    }
}
