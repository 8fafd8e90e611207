//! Self-issued ID tokens: every DSP (and DCP) request carries one, and every incoming one is checked here.
//!
//! A token is a JWT with `iss` = `sub` = the sender's DID, `aud` = the receiver's DID, `iat`, `exp` (at most five
//! minutes later) and a fresh `jti`, signed with the sender's key (`kid` = the key's DID URL).

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use crate::did::{self, KeyLookupError, Resolver};
use crate::jose;
use crate::keys::KeyRing;
use hanse_store::{IdentityStore, TokenUse};

pub use hanse_keys::{CLOCK_SKEW_SECONDS, TOKEN_LIFETIME_SECONDS};
/// The JWS algorithms a token may use.
const ALGORITHMS: [&str; 2] = ["ES256", "EdDSA"];

/// Why a token was refused. Logged; the caller learns nothing beyond 401 or 404.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("iss and sub differ or are not a DID")]
    NotSelfIssued,
    #[error("the key {0} does not belong to the issuer")]
    ForeignKey(String),
    #[error("the token is for {0}, not for us")]
    WrongAudience(String),
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token lives longer than {TOKEN_LIFETIME_SECONDS} seconds")]
    TooLong,
    #[error("the issuer's DID does not resolve: {0}")]
    Unresolvable(String),
    #[error("the issuer's DID document does not list the key {0}")]
    UnknownKey(String),
    #[error("{0}")]
    NotForInvocation(String),
    #[error("the signature does not verify: {0}")]
    Signature(String),
    #[error("the token id was used before (replay)")]
    Replayed,
    #[error("the replay cache is unavailable: {0}")]
    Store(String),
}

impl TokenError {
    /// A short name of the failure, for the measurements (bounded: one per variant).
    pub fn kind(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed(_) => "malformed",
            TokenError::NotSelfIssued => "not_self_issued",
            TokenError::ForeignKey(_) => "foreign_key",
            TokenError::WrongAudience(_) => "wrong_audience",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::TooLong => "too_long",
            TokenError::Unresolvable(_) => "unresolvable",
            TokenError::UnknownKey(_) => "unknown_key",
            TokenError::NotForInvocation(_) => "not_for_invocation",
            TokenError::Signature(_) => "signature",
            TokenError::Replayed => "replayed",
            TokenError::Store(_) => "store",
        }
    }
}

/// A request's verified sender.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The sender's DID: the only identity the rest of the connector uses.
    pub participant: String,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
    /// The DCP access token the sender granted us (its token's `token` claim): what lets us query its credential
    /// service.
    pub access_token: Option<String>,
}

/// A fresh self-issued token from us to `audience`.
pub fn issue(keys: &KeyRing, audience: &str, now: DateTime<Utc>) -> String {
    issue_with(keys, audience, now, None)
}

/// A fresh self-issued token from us to `audience` carrying the DCP access token `access` in its `token` claim.
pub fn issue_with(keys: &KeyRing, audience: &str, now: DateTime<Utc>, access: Option<&str>) -> String {
    let iat = now.timestamp();
    let mut payload = json!({
        "iss": keys.did(),
        "sub": keys.did(),
        "aud": audience,
        "iat": iat,
        "nbf": iat,
        "exp": iat + TOKEN_LIFETIME_SECONDS,
        // Time-ordered, so that the receiver's replay cache grows at its end.
        "jti": uuid::Uuid::now_v7().to_string(),
    });
    if let Some(access) = access {
        payload["token"] = json!(access);
    }
    keys.sign("JWT", &[], &payload)
}

/// An `Authorization` header value with a fresh token from us to `audience`.
pub fn authorization(keys: &KeyRing, audience: &str) -> String {
    format!("Bearer {}", issue(keys, audience, Utc::now()))
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, TokenError> {
    let value = header.ok_or(TokenError::Missing)?.trim();
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| TokenError::Malformed("not a bearer token".into()))?
        .trim();
    if token.is_empty() || token.len() > 16 * 1024 {
        return Err(TokenError::Malformed("empty or oversized token".into()));
    }
    Ok(token)
}

/// The access token of an `Authorization` header on the data plane: `Bearer <token>`, or the token alone as EDC's
/// endpoint data references hand it out (a compact JWS: three base64url parts). Any other scheme is refused.
pub fn data_plane_token(header: Option<&str>) -> Result<&str, TokenError> {
    let value = header.ok_or(TokenError::Missing)?.trim();
    if value.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer ")) {
        let token = value[7..].trim();
        if token.is_empty() || token.len() > 16 * 1024 {
            return Err(TokenError::Malformed("empty or oversized token".into()));
        }
        return Ok(token);
    }
    let compact = value.split('.').count() == 3
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !compact {
        return Err(TokenError::Malformed("neither a bearer token nor a bare access token".into()));
    }
    if value.len() > 16 * 1024 {
        return Err(TokenError::Malformed("empty or oversized token".into()));
    }
    Ok(value)
}

/// Checks a token addressed to `us`: claims and time window first (no I/O), then the sender's DID document and the
/// signature, and last the replay cache (so only genuine tokens are remembered).
pub async fn verify(
    token: &str,
    us: &str,
    resolver: &Resolver,
    store: &IdentityStore,
    now: DateTime<Utc>,
) -> Result<Verified, TokenError> {
    let (verified, token_use) = check(token, us, resolver, now).await?;
    record(store, &token_use).await?;
    Ok(verified)
}

/// Records a checked token's id in the replay cache: `Replayed` when it was used before.
pub async fn record(store: &IdentityStore, token_use: &TokenUse) -> Result<(), TokenError> {
    match store.remember_token(token_use).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(TokenError::Replayed),
        Err(error) => Err(TokenError::Store(error.to_string())),
    }
}

/// [`verify`] but for the replay cache: answers the token's id, which the caller records before it acts on the
/// request — in the transaction of the change the request makes, or with [`record`].
pub async fn check(
    token: &str,
    us: &str,
    resolver: &Resolver,
    now: DateTime<Utc>,
) -> Result<(Verified, TokenUse), TokenError> {
    let (header, claims) = jose::peek(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
    let alg = header.get("alg").and_then(Json::as_str).unwrap_or_default();
    if !ALGORITHMS.contains(&alg) {
        return Err(TokenError::Malformed(format!("algorithm `{alg}` is not accepted")));
    }
    let text = |name: &str| claims.get(name).and_then(Json::as_str);
    let iss = text("iss").filter(|iss| iss.starts_with("did:")).ok_or(TokenError::NotSelfIssued)?;
    if text("sub") != Some(iss) {
        return Err(TokenError::NotSelfIssued);
    }
    let kid = header.get("kid").and_then(Json::as_str);
    if let Some(kid) = kid
        && did::controller_of(kid) != Some(iss)
    {
        return Err(TokenError::ForeignKey(kid.into()));
    }
    let access_token = match claims.get("token") {
        None | Some(Json::Null) => None,
        Some(Json::String(token)) if !token.is_empty() && token.len() <= 8 * 1024 => Some(token.clone()),
        Some(_) => return Err(TokenError::Malformed("the token claim is not an access token".into())),
    };
    let audience_ok = match claims.get("aud") {
        Some(Json::String(aud)) => aud == us,
        Some(Json::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(us)),
        _ => false,
    };
    if !audience_ok {
        return Err(TokenError::WrongAudience(claims.get("aud").map(Json::to_string).unwrap_or_default()));
    }
    let number = |name: &str| claims.get(name).and_then(Json::as_i64);
    let (Some(iat), Some(exp)) = (number("iat"), number("exp")) else {
        return Err(TokenError::Malformed("iat and exp are required".into()));
    };
    let jti = text("jti").filter(|j| !j.is_empty() && j.len() <= 256);
    let jti = jti.ok_or_else(|| TokenError::Malformed("jti is required".into()))?;
    let now_s = now.timestamp();
    if exp - iat > TOKEN_LIFETIME_SECONDS {
        return Err(TokenError::TooLong);
    }
    if now_s > exp + CLOCK_SKEW_SECONDS {
        return Err(TokenError::Expired);
    }
    if iat > now_s + CLOCK_SKEW_SECONDS || number("nbf").is_some_and(|nbf| nbf > now_s + CLOCK_SKEW_SECONDS) {
        return Err(TokenError::NotYetValid);
    }
    let method = resolver.invocation_key(iss, kid).await.map_err(|e| match e {
        KeyLookupError::Unresolvable(e) => TokenError::Unresolvable(e.to_string()),
        KeyLookupError::NotListed(kid) => TokenError::UnknownKey(kid),
        other => TokenError::NotForInvocation(other.to_string()),
    })?;
    jose::verify(token, &method.jwk).map_err(|e| TokenError::Signature(e.to_string()))?;
    let token_use = TokenUse { key: format!("{iss} {jti}"), expires_at: (exp + CLOCK_SKEW_SECONDS) * 1000 };
    let expires_at = DateTime::from_timestamp(exp, 0).unwrap_or(now);
    Ok((Verified { participant: iss.to_owned(), expires_at, access_token }, token_use))
}

#[cfg(test)]
mod tests {
    use super::data_plane_token;

    #[test]
    fn the_data_plane_takes_a_bearer_token_or_the_bare_token_and_nothing_else() {
        let jws = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
        assert_eq!(data_plane_token(Some(&format!("Bearer {jws}"))).unwrap(), jws);
        assert_eq!(data_plane_token(Some(&format!("bearer  {jws}"))).unwrap(), jws);
        assert_eq!(data_plane_token(Some(jws)).unwrap(), jws);
        for refused in [
            format!("Basic {jws}"),
            format!("Token {jws}"),
            "Bearer ".to_owned(),
            "not-a-token".to_owned(),
            "a.b".to_owned(),
            format!("{jws} {jws}"),
            String::new(),
        ] {
            assert!(data_plane_token(Some(&refused)).is_err(), "{refused:?} was taken");
        }
        assert!(data_plane_token(None).is_err());
    }
}
