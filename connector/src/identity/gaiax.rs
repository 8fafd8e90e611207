//! Gaia-X self-descriptions (decision 0013): our credentials, signed with the participant key and served on the
//! public listener, and the verification of other participants' (signature through their DID, validity, shapes).
//!
//! What the credentials say comes from `[gaiax]` in the configuration and from the catalogue: every dataset anyone
//! may see is a `gx:VirtualResource` of the service offering. They are signed when asked for, so they always
//! describe the catalogue as it is, with a validity of `gaiax.validity_days`.

use std::path::Path;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use hanse_self_descriptions::dcat;
use hanse_self_descriptions::gaiax::{
    self, Address, Credential, DataExport, Offering, Participant, Registration, Resource, Terms,
};
use hanse_self_descriptions::shacl::Violation;
use hanse_vocab::ns::{CRED, XSD};
use serde_json::{Value as Json, json};

use super::credentials::{self, CredentialError, VC_CONTEXT, VC_CTY, VC_TYP, VP_TYP};
use super::did::Resolver;
use super::jose;
use super::keys::KeyRing;
use crate::catalog::Catalogue;
use crate::config::{AddressConfig, GaiaxConfig};

/// Where the public listener serves the presentation of all our Gaia-X credentials; each one is below it.
pub const CREDENTIALS_PATH: &str = "/.well-known/gaia-x/credentials";
/// Where the public listener serves the participant key's certificate chain (the credentials' `x5u`).
pub const CHAIN_PATH: &str = "/.well-known/x509CertificateChain.pem";
/// The DID document service type that points at the presentation (DIF Linked Verifiable Presentation).
pub const SERVICE: &str = "LinkedVerifiablePresentation";
/// Media types.
pub const VC_MEDIA: &str = "application/vc+ld+json+jwt";
pub const VP_MEDIA: &str = "application/vp+ld+json+jwt";

/// A notary's registration number credential, imported from a file.
#[derive(Debug, Clone)]
struct Imported {
    jwt: String,
    subject: String,
    name: String,
    payload: Json,
}

/// Our self-description: what `[gaiax]` says, ready to be signed.
#[derive(Debug)]
pub struct SelfDescription {
    participant: Participant,
    registrations: Vec<Registration>,
    imported: Vec<Imported>,
    offering: Offering,
    default_license: String,
    validity: Duration,
    chain: Option<Vec<u8>>,
    /// `{public_url}/.well-known/gaia-x/credentials`.
    base: String,
    public_url: String,
}

fn address(a: &AddressConfig) -> Address {
    Address {
        country_code: a.country_code.clone(),
        region: a.region.clone(),
        locality: a.locality.clone(),
        postal_code: a.postal_code.clone(),
        street_address: a.street_address.clone(),
    }
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))
}

impl SelfDescription {
    /// Reads `[gaiax]` and the files it names. A problem is named with its key.
    pub fn load(config: &GaiaxConfig, public_url: &str) -> Result<SelfDescription, String> {
        let headquarters = address(&config.headquarters);
        let participant = Participant {
            legal_name: config.legal_name.clone(),
            description: config.description.clone(),
            legal_address: config.legal_address.as_ref().map(address).unwrap_or_else(|| headquarters.clone()),
            headquarters,
            gaia_x_terms: config.terms_and_conditions.to_lowercase(),
        };
        let r = &config.registration;
        let country = Some(config.headquarters.country_code.clone());
        let mut registrations = Vec::new();
        if let Some(value) = &r.vat_id {
            registrations.push(Registration::VatId { value: value.clone(), country_code: country.clone() });
        }
        if let Some(value) = &r.lei_code {
            registrations.push(Registration::Lei {
                value: value.clone(),
                country_code: country.clone(),
                subdivision: r.lei_subdivision.clone(),
            });
        }
        if let Some(value) = &r.eori {
            registrations.push(Registration::Eori { value: value.clone(), country: None });
        }
        if let Some(value) = &r.euid {
            registrations.push(Registration::Euid(value.clone()));
        }
        if let Some(value) = &r.tax_id {
            registrations.push(Registration::TaxId(value.clone()));
        }
        if let Some(value) = &r.local {
            registrations.push(Registration::Local(value.clone()));
        }
        let mut imported = Vec::new();
        for (index, path) in config.registration_credentials.iter().enumerate() {
            let key = "gaiax.registration_credentials";
            let text =
                String::from_utf8(read(path, key)?).map_err(|_| format!("{key}: {} is not text", path.display()))?;
            let jwt = text.trim().to_owned();
            let summary = credentials::summarise(&jwt).map_err(|e| format!("{key}: {}: {e}", path.display()))?;
            if summary.subject.is_empty() {
                return Err(format!("{key}: {}: the credential subject has no id", path.display()));
            }
            let payload = jose::peek(&jwt).map(|(_, p)| Json::Object(p)).map_err(|e| format!("{key}: {e}"))?;
            imported.push(Imported {
                jwt,
                subject: summary.subject,
                name: format!("registration-number-notary-{}", index + 1),
                payload,
            });
        }
        let chain = config.certificate_chain.as_deref().map(|p| read(p, "gaiax.certificate_chain")).transpose()?;
        if let Some(chain) = &chain
            && openssl::x509::X509::stack_from_pem(chain).map(|c| c.is_empty()).unwrap_or(true)
        {
            return Err("gaiax.certificate_chain: no PEM certificate in the file".into());
        }
        let s = &config.service;
        let offering = Offering {
            name: s.name.clone(),
            description: s.description.clone(),
            endpoint_url: format!("{public_url}{}", hanse_core::paths::DSP_BASE),
            terms: vec![Terms { url: s.terms_url.clone(), hash: s.terms_hash.to_lowercase() }],
            data_export: DataExport {
                request_type: s.export_request_type.clone(),
                access_type: s.export_access_type.clone(),
                format_type: s.export_format_type.clone(),
            },
            policy: None,
            keywords: s.keywords.clone(),
        };
        Ok(SelfDescription {
            participant,
            registrations,
            imported,
            offering,
            default_license: config.default_license.clone(),
            validity: Duration::days(i64::from(config.validity_days)),
            chain,
            base: format!("{public_url}{CREDENTIALS_PATH}"),
            public_url: public_url.to_owned(),
        })
    }

    /// The certificate chain served for `x5u`, if configured.
    pub fn chain(&self) -> Option<&[u8]> {
        self.chain.as_deref()
    }

    /// Our unsigned credentials, by name, for the catalogue as it stands.
    fn unsigned(&self, catalogue: &Catalogue) -> Vec<(String, Credential)> {
        let numbers: Vec<(String, Credential)> = self
            .registrations
            .iter()
            .map(|r| (format!("registration-number-{}", r.slug()), gaiax::registration_number(&self.base, r)))
            .collect();
        let registration_ids: Vec<String> = numbers
            .iter()
            .map(|(_, c)| c.subject_id().to_owned())
            .chain(self.imported.iter().map(|i| i.subject.clone()))
            .collect();
        let person = gaiax::legal_person(&self.base, &self.participant, &registration_ids);
        let anyone = hanse_policy::RequestContext { now: Some(Utc::now()), ..Default::default() };
        let resources: Vec<(String, Credential)> = catalogue
            .visible(&anyone)
            .into_iter()
            .map(|(asset, dataset)| {
                let name = format!("resource-{}", hanse_core::encode::percent(&asset.id));
                let text = |iri: &str| dcat::texts(&asset.properties, iri).next().map(str::to_owned);
                let policy = serde_json::from_str::<Json>(&dataset.text())
                    .ok()
                    .and_then(|d| d.get("hasPolicy").cloned())
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "offered under the ODRL policies of its DSP catalogue entry".into());
                let license = asset
                    .properties
                    .get("http://purl.org/dc/terms/license")
                    .into_iter()
                    .flatten()
                    .find_map(|term| match term {
                        dcat::Term::Iri(iri) => Some(iri.clone()),
                        dcat::Term::Literal { value, .. } => Some(value.clone()),
                        dcat::Term::Node(_) => None,
                    })
                    .unwrap_or_else(|| self.default_license.clone());
                let resource = Resource {
                    id: crate::catalog::rdf::dataset_iri(&asset.id),
                    name: text("http://purl.org/dc/terms/title").unwrap_or_else(|| asset.id.clone()),
                    description: text("http://purl.org/dc/terms/description"),
                    license,
                    policy,
                };
                let credential = gaiax::resource(&self.base, &name, &resource, person.subject_id());
                (name, credential)
            })
            .collect();
        let resource_ids: Vec<String> = resources.iter().map(|(_, c)| c.subject_id().to_owned()).collect();
        let offering = gaiax::service_offering(&self.base, &self.offering, person.subject_id(), &resource_ids);
        let mut all = numbers;
        all.push(("legal-person".into(), person));
        all.push(("issuer".into(), gaiax::issuer(&self.base, &self.participant)));
        all.push(("service-offering".into(), offering));
        all.extend(resources);
        all
    }

    /// Where the certificate chain is served (the credentials' `x5u`), if one is configured.
    pub fn chain_url(&self) -> Option<String> {
        self.chain.as_ref().map(|_| format!("{}{CHAIN_PATH}", self.public_url))
    }

    /// Signs one of our credentials, valid from `now` for the configured validity.
    fn sign(&self, keys: &KeyRing, credential: &Credential, now: DateTime<Utc>) -> String {
        let from = now.to_rfc3339_opts(SecondsFormat::Secs, true);
        let until = (now + self.validity).to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut header = vec![("cty", json!(VC_CTY))];
        if let Some(url) = self.chain_url() {
            header.push(("x5u", json!(url)));
        }
        keys.sign(VC_TYP, &header, &credential.payload(keys.did(), &from, &until))
    }

    /// Every credential, signed now (ours) or as imported (a notary's), by name.
    pub fn signed(&self, keys: &KeyRing, catalogue: &Catalogue, now: DateTime<Utc>) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> =
            self.unsigned(catalogue).into_iter().map(|(name, c)| (name, self.sign(keys, &c, now))).collect();
        out.extend(self.imported.iter().map(|i| (i.name.clone(), i.jwt.clone())));
        out
    }

    /// The credential called `name`, signed now (ours) or as imported, if there is one.
    pub fn signed_one(&self, name: &str, keys: &KeyRing, catalogue: &Catalogue, now: DateTime<Utc>) -> Option<String> {
        if let Some(imported) = self.imported.iter().find(|i| i.name == name) {
            return Some(imported.jwt.clone());
        }
        let (_, credential) = self.unsigned(catalogue).into_iter().find(|(n, _)| n == name)?;
        Some(self.sign(keys, &credential, now))
    }

    /// All credentials in one verifiable presentation signed by us, valid as long as they are.
    pub fn presentation(&self, keys: &KeyRing, catalogue: &Catalogue, now: DateTime<Utc>) -> String {
        let enveloped: Vec<Json> =
            self.signed(keys, catalogue, now).iter().map(|(_, jwt)| credentials::enveloped(jwt)).collect();
        // VC 2.0 defines `validFrom` and `validUntil` on credentials only: the presentation's context gives them the
        // same IRIs, so that a JSON-LD processor keeps the presentation's validity window.
        let window = |term: &str| json!({"@id": format!("{CRED}{term}"), "@type": format!("{XSD}dateTime")});
        let payload = json!({
            "@context": [VC_CONTEXT, {"validFrom": window("validFrom"), "validUntil": window("validUntil")}],
            "type": ["VerifiablePresentation"],
            "holder": keys.did(),
            "verifiableCredential": enveloped,
            "validFrom": now.to_rfc3339_opts(SecondsFormat::Secs, true),
            "validUntil": (now + self.validity).to_rfc3339_opts(SecondsFormat::Secs, true),
        });
        keys.sign(VP_TYP, &[("cty", json!("vp+ld+json"))], &payload)
    }

    /// Our own credentials checked against the shapes, as a peer would check them (at start-up).
    pub fn violations(&self, catalogue: &Catalogue) -> Result<Vec<Violation>, String> {
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut payloads: Vec<Json> =
            self.unsigned(catalogue).iter().map(|(_, c)| c.payload("did:web:self.invalid", &now, &now)).collect();
        payloads.extend(self.imported.iter().map(|i| i.payload.clone()));
        gaiax::check(&payloads).map_err(|e| e.to_string())
    }
}

/// What was found about one credential.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckedCredential {
    pub id: String,
    pub types: Vec<String>,
    pub issuer: String,
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
    /// Empty when the signature, the key and the validity window hold.
    pub problems: Vec<String>,
    /// The decoded payload.
    #[serde(skip)]
    pub payload: Json,
}

/// The verdict on a presentation or a set of credentials.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The presentation's holder and what is wrong with the presentation itself (if one was given).
    pub holder: Option<String>,
    pub presentation_problems: Vec<String>,
    pub credentials: Vec<CheckedCredential>,
    /// Shape violations of all credential subjects taken together.
    pub violations: Vec<String>,
}

impl Report {
    /// Whether everything holds.
    pub fn holds(&self) -> bool {
        self.presentation_problems.is_empty()
            && self.violations.is_empty()
            && !self.credentials.is_empty()
            && self.credentials.iter().all(|c| c.problems.is_empty())
    }
}

/// Presentations and credentials as given, read without checking anything.
#[derive(Debug, Default)]
pub struct Presented {
    /// Each presentation: its JWT, its holder and its payload.
    pub presentations: Vec<(String, String, jose::Object)>,
    /// Every credential JWT, from the presentations or given on its own.
    pub credentials: Vec<String>,
    /// What could not be read as a JWT.
    pub unreadable: Vec<String>,
}

/// Reads `text`: presentation JWTs or credential JWTs, separated by white space.
pub fn presented(text: &str) -> Presented {
    let mut presented = Presented::default();
    for token in text.split_whitespace() {
        match jose::peek(token) {
            Ok((header, payload)) if header.get("typ").and_then(Json::as_str) == Some(VP_TYP) => {
                let holder = payload.get("holder").and_then(Json::as_str).unwrap_or_default().to_owned();
                presented.credentials.extend(credentials::presented_credentials(&payload));
                presented.presentations.push((token.to_owned(), holder, payload));
            }
            Ok(_) => presented.credentials.push(token.to_owned()),
            Err(e) => presented
                .unreadable
                .push(format!("`{}…` is not a JWT: {e}", token.chars().take(16).collect::<String>())),
        }
    }
    presented
}

/// Verifies Gaia-X credentials from another participant: `text` is a presentation JWT, or credential JWTs
/// separated by white space. Signatures are checked with keys from the signers' DID documents.
pub async fn verify(resolver: &Resolver, text: &str, now: DateTime<Utc>) -> Report {
    let presented = presented(text);
    let mut report = Report {
        holder: None,
        presentation_problems: presented.unreadable,
        credentials: Vec::new(),
        violations: Vec::new(),
    };
    for (token, holder, payload) in presented.presentations {
        if let Err(problem) = super::verify_signed_with(resolver, &token, VP_TYP, &holder).await {
            report.presentation_problems.push(format!("the presentation's signature: {problem}"));
        }
        let at = |key: &str| {
            let text = payload.get(key).and_then(Json::as_str)?;
            DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
        };
        match credentials::check_window(at("validFrom"), at("validUntil"), now) {
            Err(CredentialError::NotYetValid) => {
                report.presentation_problems.push("the presentation is not valid yet".into())
            }
            Err(_) => report.presentation_problems.push("the presentation is expired".into()),
            Ok(()) => {}
        }
        report.holder = Some(holder);
    }
    for jwt in &presented.credentials {
        report.credentials.push(check_credential(resolver, jwt, now).await);
    }
    let payloads: Vec<Json> = report.credentials.iter().map(|c| c.payload.clone()).filter(|p| !p.is_null()).collect();
    if payloads.is_empty() {
        report.presentation_problems.push("no credential to check".into());
        return report;
    }
    let checked = tokio::task::spawn_blocking(move || gaiax::check(&payloads)).await;
    match checked {
        Ok(Ok(violations)) => report.violations = violations.iter().map(ToString::to_string).collect(),
        Ok(Err(e)) => report.violations.push(e.to_string()),
        Err(e) => report.violations.push(format!("the shape check failed: {e}")),
    }
    report
}

async fn check_credential(resolver: &Resolver, jwt: &str, now: DateTime<Utc>) -> CheckedCredential {
    let payload = jose::peek(jwt).map(|(_, p)| Json::Object(p)).unwrap_or(Json::Null);
    let summary = match credentials::summarise(jwt) {
        Ok(summary) => summary,
        Err(e) => {
            return CheckedCredential {
                id: payload.get("id").and_then(Json::as_str).unwrap_or("(unreadable)").to_owned(),
                types: Vec::new(),
                issuer: String::new(),
                valid_from: None,
                valid_until: None,
                problems: vec![e.to_string()],
                payload,
            };
        }
    };
    let mut problems = Vec::new();
    if let Err(problem) = super::verify_signed_with(resolver, jwt, VC_TYP, &summary.issuer).await {
        problems.push(format!("signature: {problem}"));
    }
    if let Err(e) = summary.check_window(now) {
        problems.push(e.to_string());
    }
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
    CheckedCredential {
        id: summary.id.clone(),
        types: summary.types.clone(),
        issuer: summary.issuer.clone(),
        valid_from: time(summary.valid_from),
        valid_until: time(summary.valid_until),
        problems,
        payload,
    }
}
