//! Who is asking. The participant identity of a DSP request is established here and nowhere else.
//!
//! Today a peer names itself in the `Authorization` header (`Bearer <did>` or `<did>`), and outgoing requests name
//! us the same way. This is the seam the signed self-issued ID tokens of the identity work replace: callers use
//! [`requester`] and [`outgoing_authorization`] only.

use axum::http::HeaderMap;

/// Why a request has no usable identity (logged, never returned to the caller).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no Authorization header")]
    Missing,
    #[error("the Authorization header does not name a participant")]
    Malformed,
}

/// The requesting participant's identifier.
pub fn requester(headers: &HeaderMap) -> Result<String, IdentityError> {
    let value = headers.get(axum::http::header::AUTHORIZATION).ok_or(IdentityError::Missing)?;
    let value = value.to_str().map_err(|_| IdentityError::Malformed)?.trim();
    let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
    if token.starts_with("did:") && !token.contains(char::is_whitespace) && token.len() < 2048 {
        Ok(token.to_owned())
    } else {
        Err(IdentityError::Malformed)
    }
}

/// The `Authorization` header value of a request we send to `_audience`.
pub fn outgoing_authorization(participant_id: &str, _audience: Option<&str>) -> String {
    format!("Bearer {participant_id}")
}
