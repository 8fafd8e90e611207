//! DCP access tokens (DCP 1.0 §4.3 and the presentation protocol's "Credential Service Security"): what a holder
//! grants one verifier. Hanse mints one whenever it sends a participant a request, puts it in the `token` claim of its
//! self-issued token, and its credential service answers a presentation query only with such a token — minted by this
//! holder, for the verifier asking, unexpired — and only with the credentials its scopes grant. The format is Hanse's
//! own (the specification leaves it open): a JWT signed with the participant key.

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use crate::jose;
use crate::keys::KeyRing;
use crate::token::{CLOCK_SKEW_SECONDS, TOKEN_LIFETIME_SECONDS};

/// The JWS `typ` of an access token.
pub const TYP: &str = "hanse-dcp-access+jwt";

/// Why a presentation query's access token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("the verifier's token carries no access token (token claim)")]
    Missing,
    #[error("the access token was not minted by this holder: {0}")]
    Forged(String),
    #[error("the access token was granted to {0}, not to the verifier asking")]
    Foreign(String),
    #[error("the access token expired")]
    Expired,
}

/// An access token from us (the holder) granting `verifier` the `scopes` of our credential service for one token
/// lifetime from `now`.
pub fn mint(keys: &KeyRing, verifier: &str, scopes: &[String], now: DateTime<Utc>) -> String {
    let iat = now.timestamp();
    let payload = json!({
        "iss": keys.did(),
        "sub": keys.did(),
        "aud": verifier,
        "scope": scopes.join(" "),
        "iat": iat,
        "exp": iat + TOKEN_LIFETIME_SECONDS,
        "jti": uuid::Uuid::now_v7().to_string(),
    });
    keys.sign(TYP, &[], &payload)
}

/// Checks an access token a verifier forwarded: minted by us (signed with a key we list), for `verifier`, unexpired.
/// Answers the scopes it grants.
pub fn check(keys: &KeyRing, token: &str, verifier: &str, now: DateTime<Utc>) -> Result<Vec<String>, AccessError> {
    let forged = |reason: &str| AccessError::Forged(reason.to_owned());
    let (header, _) = jose::peek(token).map_err(|e| AccessError::Forged(e.to_string()))?;
    if header.get("typ").and_then(Json::as_str) != Some(TYP) {
        return Err(forged("not an access token"));
    }
    let kid = header.get("kid").and_then(Json::as_str).ok_or_else(|| forged("no kid"))?;
    let listed = keys.listed(now);
    let (_, jwk) =
        listed.iter().find(|(id, _)| id == kid).ok_or_else(|| forged("signed with a key that is not ours"))?;
    let claims = jose::verify(token, jwk).map_err(|_| forged("the signature does not verify"))?;
    let text = |name: &str| claims.get(name).and_then(Json::as_str);
    if text("iss") != Some(keys.did()) {
        return Err(forged("issued by someone else"));
    }
    let audience = text("aud").unwrap_or_default();
    if audience != verifier {
        return Err(AccessError::Foreign(audience.to_owned()));
    }
    let exp = claims.get("exp").and_then(Json::as_i64).ok_or_else(|| forged("no exp"))?;
    if now.timestamp() > exp + CLOCK_SKEW_SECONDS {
        return Err(AccessError::Expired);
    }
    Ok(text("scope").unwrap_or_default().split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect())
}
