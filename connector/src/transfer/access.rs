//! Data plane access tokens: JWTs (`typ` `at+jwt`) the provider signs with its participant key and verifies itself.
//!
//! A token names the transfer, the agreement, the consumer and the transfer's *epoch* (bumped each time the transfer
//! enters STARTED), and lives for `dataplane.token_lifetime_seconds`. It is checked against the stored transfer on
//! every request, so that suspension, completion, termination or a new start void it at once.

use chrono::{DateTime, Utc};
use serde_json::{Value as Json, json};

use crate::identity::jose;
use crate::identity::keys::KeyRing;
use crate::identity::token::CLOCK_SKEW_SECONDS;

pub const TYP: &str = "at+jwt";

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    pub transfer_id: String,
    pub agreement_id: String,
    pub consumer: String,
    pub epoch: u64,
    pub expires_at: DateTime<Utc>,
}

/// A token for `access`, valid until `access.expires_at`.
pub fn issue(keys: &KeyRing, access: &Access, now: DateTime<Utc>) -> String {
    let payload = json!({
        "iss": keys.did(),
        "aud": keys.did(),
        "sub": access.consumer,
        "transfer": access.transfer_id,
        "agreement": access.agreement_id,
        "epoch": access.epoch,
        "iat": now.timestamp(),
        "exp": access.expires_at.timestamp(),
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    keys.sign(TYP, &[], &payload)
}

/// Why a token is refused (logged; the caller is told only 401).
#[derive(Debug, thiserror::Error)]
pub enum TokenRefused {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("not signed by this connector's keys")]
    ForeignKey,
    #[error("bad signature")]
    Signature,
    #[error("expired")]
    Expired,
    #[error("issued for another transfer")]
    OtherTransfer,
}

/// Checks a token's signature (one of our listed keys), issuer, lifetime and transfer.
pub fn verify(keys: &KeyRing, token: &str, transfer_id: &str, now: DateTime<Utc>) -> Result<Access, TokenRefused> {
    let (header, _) = jose::peek(token).map_err(|e| TokenRefused::Malformed(e.to_string()))?;
    if header.get("typ").and_then(Json::as_str) != Some(TYP) {
        return Err(TokenRefused::Malformed("not an access token".into()));
    }
    let kid = header.get("kid").and_then(Json::as_str).unwrap_or_default();
    let (_, jwk) = keys.listed(now).into_iter().find(|(k, _)| k == kid).ok_or(TokenRefused::ForeignKey)?;
    let claims = jose::verify(token, &jwk).map_err(|_| TokenRefused::Signature)?;
    let text = |name: &str| claims.get(name).and_then(Json::as_str).map(str::to_owned);
    if text("iss").as_deref() != Some(keys.did()) || text("aud").as_deref() != Some(keys.did()) {
        return Err(TokenRefused::ForeignKey);
    }
    let exp = claims.get("exp").and_then(Json::as_i64).ok_or_else(|| TokenRefused::Malformed("no exp".into()))?;
    if now.timestamp() > exp + CLOCK_SKEW_SECONDS {
        return Err(TokenRefused::Expired);
    }
    if text("transfer").as_deref() != Some(transfer_id) {
        return Err(TokenRefused::OtherTransfer);
    }
    Ok(Access {
        transfer_id: transfer_id.to_owned(),
        agreement_id: text("agreement").unwrap_or_default(),
        consumer: text("sub").unwrap_or_default(),
        epoch: claims.get("epoch").and_then(Json::as_u64).unwrap_or_default(),
        expires_at: DateTime::from_timestamp(exp, 0).unwrap_or(now),
    })
}
