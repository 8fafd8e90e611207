//! Pairwise secrets between sites (secure aggregation, decision 0044): X25519 key agreement, and secrets derived
//! from a key with HMAC-SHA-256. Every site's X25519 key is derived from its participant key and the job, so every
//! replica of a connector holds the same one and nothing secret is stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::derive::Deriver;
use openssl::pkey::{Id, PKey};

/// A 32-byte secret or public key.
pub type Bytes32 = [u8; 32];

/// Why two sites could not agree on a secret.
#[derive(Debug, thiserror::Error)]
pub enum AgreeError {
    #[error("not an X25519 public key (32 bytes, base64url)")]
    NotAKey,
    #[error("the key agreement failed: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// HMAC-SHA-256 of `data` under `key`.
pub fn hmac(key: &[u8], data: &[u8]) -> Bytes32 {
    let key = PKey::hmac(key).expect("an HMAC key of any length");
    let mut signer =
        openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).expect("HMAC-SHA-256 is available");
    signer.update(data).expect("HMAC takes any data");
    let mut out = [0u8; 32];
    signer.sign(&mut out).expect("HMAC-SHA-256 gives 32 bytes");
    out
}

/// The X25519 public key of the private key `private`, as base64url.
pub fn public_key(private: &Bytes32) -> Result<String, AgreeError> {
    let key = PKey::private_key_from_raw_bytes(private, Id::X25519)?;
    Ok(URL_SAFE_NO_PAD.encode(key.raw_public_key()?))
}

/// The secret `private` shares with the holder of the X25519 public key `peer` (base64url). A peer key of low order
/// (a shared secret of zeros) is refused by OpenSSL.
pub fn shared_secret(private: &Bytes32, peer: &str) -> Result<Bytes32, AgreeError> {
    let peer = URL_SAFE_NO_PAD.decode(peer).ok().filter(|b| b.len() == 32).ok_or(AgreeError::NotAKey)?;
    let peer = PKey::public_key_from_raw_bytes(&peer, Id::X25519).map_err(|_| AgreeError::NotAKey)?;
    let own = PKey::private_key_from_raw_bytes(private, Id::X25519)?;
    let mut deriver = Deriver::new(&own)?;
    deriver.set_peer(&peer)?;
    let mut out = [0u8; 32];
    let written = deriver.derive(&mut out)?;
    if written != 32 {
        return Err(AgreeError::NotAKey);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_keys_agree_on_one_secret_and_a_third_gets_another() {
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let (pa, pb, pc) = (public_key(&a).unwrap(), public_key(&b).unwrap(), public_key(&c).unwrap());
        assert_eq!(shared_secret(&a, &pb).unwrap(), shared_secret(&b, &pa).unwrap());
        assert_ne!(shared_secret(&a, &pb).unwrap(), shared_secret(&a, &pc).unwrap());
        assert!(matches!(shared_secret(&a, "short"), Err(AgreeError::NotAKey)));
        // A low-order point (here the all-zero key) gives no secret.
        assert!(shared_secret(&a, &URL_SAFE_NO_PAD.encode([0u8; 32])).is_err());
        assert_ne!(hmac(b"one", b"data"), hmac(b"two", b"data"));
    }
}
