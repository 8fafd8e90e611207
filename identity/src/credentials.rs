//! Verifiable credentials (W3C VC Data Model 2.0 secured as JWT) in the three roles of the Decentralized Claims
//! Protocol: the **issuer** signs credentials and serves a Bitstring Status List for revocation; the **holder** keeps
//! credentials and presents them to verifiers; the **verifier** (every connector) checks presentations and credentials
//! and turns them into claims for the policy engine.

use std::io::{Read, Write};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value as Json, json};

use crate::jose::{self, Object};
use crate::keys::KeyRing;
use crate::token::{CLOCK_SKEW_SECONDS, TOKEN_LIFETIME_SECONDS};
use hanse_store::HeldCredential;

/// The VC 2.0 context.
pub const VC_CONTEXT: &str = "https://www.w3.org/ns/credentials/v2";
/// The DCP 1.0 context of presentation messages.
pub const DCP_CONTEXT: &str = "https://w3id.org/dspace-dcp/v1.0/dcp.jsonld";
/// JOSE `typ` and `cty` of a credential and `typ` of a presentation.
pub const VC_TYP: &str = "vc+ld+json+jwt";
pub const VC_CTY: &str = "vc+ld+json";
pub const VP_TYP: &str = "vp+ld+json+jwt";
/// The DCP scope prefix naming a credential type.
pub const SCOPE_PREFIX: &str = "org.eclipse.dspace.dcp.vc.type:";
/// Where an issuer serves its revocation list on the public listener.
pub const STATUS_LIST_PATH: &str = "/credentials/status/revocation";
/// Bits in a status list: the specification's minimum, which hides how many credentials an issuer has issued.
pub const STATUS_LIST_BITS: usize = 131_072;
/// The largest status list accepted from an issuer (decompressed bytes).
const STATUS_LIST_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Why a credential or presentation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("not a credential: {0}")]
    Malformed(String),
    #[error("issuer {issuer} is not trusted for {types}")]
    Untrusted { issuer: String, types: String },
    #[error("the issuer's DID does not resolve: {0}")]
    Unresolvable(String),
    #[error("the issuer's DID document does not list the key {0}")]
    UnknownKey(String),
    #[error("the signature does not verify")]
    Signature,
    #[error("the credential is not valid yet")]
    NotYetValid,
    #[error("the credential expired")]
    Expired,
    #[error("the credential is about {found}, not {expected}")]
    WrongSubject { expected: String, found: String },
    #[error("the credential was revoked")]
    Revoked,
    #[error("the revocation status cannot be checked: {0}")]
    Status(String),
    #[error("the presentation is not valid: {0}")]
    Presentation(String),
}

impl CredentialError {
    /// A short name of the failure, for the measurements (bounded: one per variant).
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialError::Malformed(_) => "malformed",
            CredentialError::Untrusted { .. } => "untrusted",
            CredentialError::Unresolvable(_) => "unresolvable",
            CredentialError::UnknownKey(_) => "unknown_key",
            CredentialError::Signature => "signature",
            CredentialError::NotYetValid => "not_yet_valid",
            CredentialError::Expired => "expired",
            CredentialError::WrongSubject { .. } => "wrong_subject",
            CredentialError::Revoked => "revoked",
            CredentialError::Status(_) => "status",
            CredentialError::Presentation(_) => "presentation",
        }
    }
}

/// What an issuer is asked to sign.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub credential_type: String,
    pub subject: String,
    /// Claims about the subject (`membership`, `role`, `country`, `organisationType`, ...).
    pub claims: Object,
    pub valid_until: Option<DateTime<Utc>>,
}

impl IssueRequest {
    /// Reads `{"type", "subject", "claims", "validUntil"}` (the management API's body; the command line builds the
    /// same). A refusal names the member.
    pub fn from_json(object: &Object) -> Result<IssueRequest, (&'static str, String)> {
        let text = |name: &str| object.get(name).and_then(Json::as_str).map(str::to_owned);
        let credential_type = text("type").ok_or(("type", "is required, e.g. MembershipCredential".to_owned()))?;
        let subject = text("subject").ok_or(("subject", "is required: the holder's DID".to_owned()))?;
        let claims = match object.get("claims") {
            None | Some(Json::Null) => Object::new(),
            Some(Json::Object(claims)) => claims.clone(),
            Some(_) => return Err(("claims", "must be a JSON object".to_owned())),
        };
        let valid_until = match (text("validUntil"), object.get("validUntil")) {
            (None, None | Some(Json::Null)) => None,
            (None, Some(_)) => return Err(("validUntil", "must be an RFC 3339 date-time string".to_owned())),
            (Some(text), _) => Some(
                DateTime::parse_from_rfc3339(&text)
                    .map_err(|_| ("validUntil", format!("`{text}` is not an RFC 3339 date-time")))?
                    .with_timezone(&Utc),
            ),
        };
        Ok(IssueRequest { credential_type, subject, claims, valid_until })
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The status list URL of an issuer whose public listener is at `public_url`.
pub fn status_list_url(public_url: &str) -> String {
    format!("{public_url}{STATUS_LIST_PATH}")
}

/// Signs a credential: `id` is its identifier and `status_index` its bit in our status list.
pub fn sign_credential(
    keys: &KeyRing,
    public_url: &str,
    id: &str,
    status_index: i64,
    request: &IssueRequest,
    now: DateTime<Utc>,
) -> String {
    let status_url = status_list_url(public_url);
    let mut subject = request.claims.clone();
    subject.insert("id".into(), Json::String(request.subject.clone()));
    let mut credential = json!({
        "@context": [VC_CONTEXT],
        "id": id,
        "type": ["VerifiableCredential", request.credential_type],
        "issuer": keys.did(),
        "validFrom": timestamp(now),
        "credentialSubject": subject,
        "credentialStatus": {
            "id": format!("{status_url}#{status_index}"),
            "type": "BitstringStatusListEntry",
            "statusPurpose": "revocation",
            "statusListIndex": status_index.to_string(),
            "statusListCredential": status_url,
        },
        "iss": keys.did(),
        "sub": request.subject,
        "jti": id,
        "iat": now.timestamp(),
        "nbf": now.timestamp(),
    });
    if let Some(until) = request.valid_until {
        credential["validUntil"] = json!(timestamp(until));
        credential["exp"] = json!(until.timestamp());
    }
    keys.sign(VC_TYP, &[("cty", json!(VC_CTY))], &credential)
}

/// The issuer's status list credential, with the bits of `revoked` set.
pub fn status_list_credential(keys: &KeyRing, public_url: &str, revoked: &[i64], now: DateTime<Utc>) -> String {
    let url = status_list_url(public_url);
    let credential = json!({
        "@context": [VC_CONTEXT],
        "id": url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": keys.did(),
        "validFrom": timestamp(now),
        "credentialSubject": {
            "id": format!("{url}#list"),
            "type": "BitstringStatusList",
            "statusPurpose": "revocation",
            "encodedList": encode_bits(revoked),
        },
        "iss": keys.did(),
        "iat": now.timestamp(),
    });
    keys.sign(VC_TYP, &[("cty", json!(VC_CTY))], &credential)
}

/// A bitstring with the given bits set (bit 0 is the first byte's most significant bit), GZIP-compressed and
/// multibase base64url-encoded (`u` prefix), as the Bitstring Status List specification writes it.
pub fn encode_bits(set: &[i64]) -> String {
    let mut bits = vec![0u8; STATUS_LIST_BITS / 8];
    for &index in set {
        if let Ok(index) = usize::try_from(index)
            && index < STATUS_LIST_BITS
        {
            bits[index / 8] |= 0x80 >> (index % 8);
        }
    }
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&bits).expect("writing to memory");
    format!("u{}", URL_SAFE_NO_PAD.encode(gzip.finish().expect("writing to memory")))
}

/// Whether bit `index` is set in an encoded list.
pub fn bit_is_set(encoded: &str, index: usize) -> Result<bool, CredentialError> {
    let bad = |reason: &str| CredentialError::Status(format!("encodedList: {reason}"));
    let data = encoded.strip_prefix('u').unwrap_or(encoded);
    let compressed = URL_SAFE_NO_PAD.decode(data.trim_end_matches('=')).map_err(|_| bad("not base64url"))?;
    let mut bits = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .take(STATUS_LIST_MAX_BYTES)
        .read_to_end(&mut bits)
        .map_err(|_| bad("not GZIP"))?;
    let byte = bits.get(index / 8).ok_or_else(|| bad("shorter than the credential's index"))?;
    Ok(byte & (0x80 >> (index % 8)) != 0)
}

/// The parts of a credential a holder and a verifier look at, read without checking anything.
#[derive(Debug, Clone)]
pub struct CredentialSummary {
    pub id: String,
    pub types: Vec<String>,
    pub issuer: String,
    pub subject: String,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    /// `credentialSubject` without `id` and `type`.
    pub claims: Object,
    /// `(status list URL, index)` of a revocation entry.
    pub revocation: Option<(String, usize)>,
    pub kid: String,
}

fn parse_time(value: Option<&Json>) -> Result<Option<DateTime<Utc>>, CredentialError> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(text)) => DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| CredentialError::Malformed(format!("`{text}` is not an RFC 3339 date-time"))),
        Some(other) => Err(CredentialError::Malformed(format!("{other} is not a date-time"))),
    }
}

/// Reads a VC secured as JWT.
pub fn summarise(jwt: &str) -> Result<CredentialSummary, CredentialError> {
    let malformed = |reason: String| CredentialError::Malformed(reason);
    let (header, vc) = jose::peek(jwt).map_err(|e| malformed(e.to_string()))?;
    let typ = header.get("typ").and_then(Json::as_str).unwrap_or_default();
    if !matches!(typ, VC_TYP | "vc+jwt" | "JWT") {
        return Err(malformed(format!("typ `{typ}` is not {VC_TYP}")));
    }
    let kid = header.get("kid").and_then(Json::as_str).ok_or_else(|| malformed("no kid".into()))?.to_owned();
    // VC-JOSE-COSE puts the credential itself in the payload; older issuers wrap it in a `vc` claim.
    let vc = match vc.get("vc") {
        Some(Json::Object(inner)) => inner.clone(),
        _ => vc,
    };
    let types: Vec<String> = match vc.get("type") {
        Some(Json::Array(types)) => types.iter().filter_map(Json::as_str).map(str::to_owned).collect(),
        Some(Json::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    if !types.iter().any(|t| t == "VerifiableCredential") {
        return Err(malformed("its type does not include VerifiableCredential".into()));
    }
    let issuer = match vc.get("issuer") {
        Some(Json::String(issuer)) => issuer.clone(),
        Some(Json::Object(issuer)) => issuer.get("id").and_then(Json::as_str).unwrap_or_default().to_owned(),
        _ => String::new(),
    };
    if !issuer.starts_with("did:") {
        return Err(malformed("the issuer is not a DID".into()));
    }
    let subject =
        vc.get("credentialSubject").and_then(Json::as_object).ok_or_else(|| malformed("no subject".into()))?;
    let subject_id = subject.get("id").and_then(Json::as_str).unwrap_or_default().to_owned();
    let mut claims = subject.clone();
    claims.remove("id");
    claims.remove("type");
    let revocation = match vc.get("credentialStatus") {
        Some(Json::Object(status)) if status.get("statusPurpose").and_then(Json::as_str) == Some("revocation") => {
            let url = status.get("statusListCredential").and_then(Json::as_str);
            let index = match status.get("statusListIndex") {
                Some(Json::String(text)) => text.parse::<usize>().ok(),
                Some(Json::Number(n)) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
                _ => None,
            };
            match (url, index) {
                (Some(url), Some(index)) => Some((url.to_owned(), index)),
                _ => return Err(malformed("credentialStatus lacks statusListCredential or statusListIndex".into())),
            }
        }
        _ => None,
    };
    Ok(CredentialSummary {
        id: vc.get("id").and_then(Json::as_str).unwrap_or_default().to_owned(),
        types,
        issuer,
        subject: subject_id,
        valid_from: parse_time(vc.get("validFrom"))?,
        valid_until: parse_time(vc.get("validUntil"))?,
        claims,
        revocation,
        kid,
    })
}

impl CredentialSummary {
    /// The types besides `VerifiableCredential`.
    pub fn specific_types(&self) -> impl Iterator<Item = &str> {
        self.types.iter().map(String::as_str).filter(|t| *t != "VerifiableCredential")
    }

    /// Checks the validity window at `now`, with the usual clock skew.
    pub fn check_window(&self, now: DateTime<Utc>) -> Result<(), CredentialError> {
        check_window(self.valid_from, self.valid_until, now)
    }
}

/// Checks a validity window (`validFrom`, `validUntil`, either open) at `now`, with the usual clock skew.
pub fn check_window(
    valid_from: Option<DateTime<Utc>>,
    valid_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), CredentialError> {
    let skew = chrono::Duration::seconds(CLOCK_SKEW_SECONDS);
    if valid_from.is_some_and(|from| from > now + skew) {
        return Err(CredentialError::NotYetValid);
    }
    if valid_until.is_some_and(|until| until + skew < now) {
        return Err(CredentialError::Expired);
    }
    Ok(())
}

/// The DCP scope alias by credential id (DCP 1.0 §5.4.1.2).
pub const ID_SCOPE_PREFIX: &str = "org.eclipse.dspace.dcp.vc.id:";

/// A presentation query's scope entry, or an access token's grant: credentials by type or by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Type(String),
    Id(String),
}

impl Scope {
    /// Reads `org.eclipse.dspace.dcp.vc.type:<type>` or `org.eclipse.dspace.dcp.vc.id:<id>`, each with an optional
    /// `:read`; `None` for another alias (nothing a holder grants) or an empty discriminator.
    pub fn parse(entry: &str) -> Option<Scope> {
        if let Some(rest) = entry.strip_prefix(SCOPE_PREFIX) {
            let name = rest.strip_suffix(":read").unwrap_or(rest);
            return (!name.is_empty() && !name.contains(':')).then(|| Scope::Type(name.to_owned()));
        }
        let rest = entry.strip_prefix(ID_SCOPE_PREFIX)?;
        let id = rest.strip_suffix(":read").unwrap_or(rest);
        (!id.is_empty()).then(|| Scope::Id(id.to_owned()))
    }

    /// Whether the scope covers a held credential.
    pub fn covers(&self, credential: &HeldCredential) -> bool {
        match self {
            Scope::Type(kind) => credential.types.split(' ').any(|t| t == kind),
            Scope::Id(id) => credential.id == *id || credential.id.strip_prefix("urn:uuid:") == Some(id.as_str()),
        }
    }
}

/// The DCP scope entry for a credential type.
pub fn scope_for(credential_type: &str) -> String {
    format!("{SCOPE_PREFIX}{credential_type}:read")
}

/// A credential JWT as a presentation carries it (VC-JOSE-COSE `EnvelopedVerifiableCredential`).
pub fn enveloped(jwt: &str) -> Json {
    json!({"@context": [VC_CONTEXT], "type": "EnvelopedVerifiableCredential", "id": format!("data:application/vc+jwt,{jwt}")})
}

/// A verifiable presentation (JWT) of `credentials` from us to `audience`.
pub fn presentation(keys: &KeyRing, audience: &str, credentials: &[&HeldCredential], now: DateTime<Utc>) -> String {
    let enveloped: Vec<Json> = credentials.iter().map(|c| enveloped(&c.jwt)).collect();
    let payload = json!({
        "@context": [VC_CONTEXT],
        "type": ["VerifiablePresentation"],
        "holder": keys.did(),
        "verifiableCredential": enveloped,
        "iss": keys.did(),
        "sub": keys.did(),
        "aud": audience,
        "iat": now.timestamp(),
        "nbf": now.timestamp(),
        "exp": now.timestamp() + TOKEN_LIFETIME_SECONDS,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    keys.sign(VP_TYP, &[("cty", json!("vp+ld+json"))], &payload)
}

/// The credential JWTs inside a presentation's payload (enveloped `data:` URLs or plain JWT strings).
pub fn presented_credentials(vp: &Object) -> Vec<String> {
    let items =
        match vp.get("vp").and_then(|v| v.get("verifiableCredential")).or_else(|| vp.get("verifiableCredential")) {
            Some(Json::Array(items)) => items.clone(),
            Some(one) => vec![one.clone()],
            None => Vec::new(),
        };
    items
        .iter()
        .filter_map(|item| match item {
            Json::String(jwt) => Some(jwt.clone()),
            Json::Object(object) => object
                .get("id")
                .and_then(Json::as_str)
                .and_then(|id| {
                    id.strip_prefix("data:application/vc+jwt,").or(id.strip_prefix("data:application/vc+ld+json+jwt,"))
                })
                .map(str::to_owned),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bits_round_trip_in_specification_order() {
        let encoded = encode_bits(&[0, 7, 8, 131_071]);
        assert!(encoded.starts_with('u'));
        for (index, set) in [(0, true), (1, false), (7, true), (8, true), (9, false), (131_071, true), (131_070, false)]
        {
            assert_eq!(bit_is_set(&encoded, index).unwrap(), set, "bit {index}");
        }
        assert!(bit_is_set(&encoded, 131_072).is_err());
        assert!(bit_is_set("u!!", 0).is_err());
        // An empty list of 131,072 bits compresses to a few hundred bytes.
        assert!(encode_bits(&[]).len() < 400);
    }

    #[test]
    fn scopes_name_credential_types_or_ids() {
        assert_eq!(Scope::parse(&scope_for("MembershipCredential")), Some(Scope::Type("MembershipCredential".into())));
        assert_eq!(Scope::parse(&format!("{SCOPE_PREFIX}RoleCredential")), Some(Scope::Type("RoleCredential".into())));
        let by_id = Scope::parse(&format!("{ID_SCOPE_PREFIX}urn:uuid:8247b87d")).unwrap();
        assert_eq!(by_id, Scope::Id("urn:uuid:8247b87d".into()));
        assert_eq!(Scope::parse(&format!("{ID_SCOPE_PREFIX}8247b87d:read")), Some(Scope::Id("8247b87d".into())));
        for unknown in ["openid", &format!("{SCOPE_PREFIX}:read"), &format!("{SCOPE_PREFIX}a:b:c"), ID_SCOPE_PREFIX] {
            assert_eq!(Scope::parse(unknown), None, "{unknown}");
        }
        let held = HeldCredential {
            id: "urn:uuid:8247b87d".into(),
            types: "VerifiableCredential MembershipCredential".into(),
            issuer: "did:web:issuer.example".into(),
            jwt: String::new(),
            valid_until: None,
            imported_at: 0,
        };
        assert!(Scope::Type("MembershipCredential".into()).covers(&held));
        assert!(!Scope::Type("RoleCredential".into()).covers(&held));
        assert!(Scope::Id("8247b87d".into()).covers(&held) && by_id.covers(&held));
    }
}
