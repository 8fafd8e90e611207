//! The one place Hanse touches josekit: signing JWTs with the participant key and verifying them against a public
//! JWK. Everything else works on JSON maps, so the JOSE library can be swapped behind these few functions.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jwk::Jwk;
use josekit::jws::{ES256, EdDSA, JwsHeader, JwsSigner, JwsVerifier};
use serde_json::{Map, Value as Json};

/// A JSON object.
pub type Object = Map<String, Json>;

/// Why a JWT could not be read or checked.
#[derive(Debug, thiserror::Error)]
pub enum JoseError {
    #[error("not a compact JWS (header.payload.signature)")]
    NotCompact,
    #[error("the {0} is not base64url-encoded JSON")]
    Encoding(&'static str),
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    #[error("the signature does not verify")]
    Signature,
    #[error("{0}")]
    Key(String),
}

/// An EC P-256 signing key and its public JWK.
pub struct SigningKey {
    signer: Box<dyn JwsSigner>,
    public_jwk: Object,
    /// A secret derived from the private key, for [`SigningKey::derive`]; never shown.
    secret: [u8; 32],
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("public_jwk", &self.public_jwk).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a PKCS#8 (or SEC1) PEM EC P-256 private key.
    pub fn from_pem(pem: &[u8]) -> Result<SigningKey, JoseError> {
        let key_pair = ES256.key_pair_from_pem(pem).map_err(|e| JoseError::Key(e.to_string()))?;
        let public_jwk = josekit::jwk::KeyPair::to_jwk_public_key(&key_pair);
        let signer = ES256.signer_from_pem(pem).map_err(|e| JoseError::Key(e.to_string()))?;
        let public_jwk: Object = public_jwk.as_ref().clone();
        let private = openssl::pkey::PKey::private_key_from_pem(pem).map_err(|e| JoseError::Key(e.to_string()))?;
        let der = private.private_key_to_der().map_err(|e| JoseError::Key(e.to_string()))?;
        let secret = crate::agree::hmac(b"hanse derived secrets", &der);
        Ok(SigningKey { signer: Box::new(signer), public_jwk: public_only(&public_jwk), secret })
    }

    /// A secret for `context`, derived from the private key (HMAC-SHA-256): the same key and context give the same
    /// secret on every replica, and it tells nothing of the key.
    pub fn derive(&self, context: &[u8]) -> [u8; 32] {
        crate::agree::hmac(&self.secret, context)
    }

    /// The public key as a JWK (`kty`, `crv`, `x`, `y`).
    pub fn public_jwk(&self) -> &Object {
        &self.public_jwk
    }

    /// RFC 7638 thumbprint of the public key (base64url SHA-256).
    pub fn thumbprint(&self) -> String {
        thumbprint(&self.public_jwk)
    }

    /// Signs `payload` as a compact JWS with the given protected header members (`alg` is set here).
    pub fn sign(&self, header: &Object, payload: &Json) -> String {
        let mut jws_header = JwsHeader::new();
        for (name, value) in header {
            jws_header.set_claim(name, Some(value.clone())).expect("header members are JSON");
        }
        let bytes = serde_json::to_vec(payload).expect("JSON serialises");
        josekit::jws::serialize_compact(&bytes, &jws_header, self.signer.as_ref()).expect("ES256 signing succeeds")
    }
}

/// Only the public key members of a JWK (no private parts, `kid`, `alg` or `use`), in lexicographic order.
fn public_only(jwk: &Object) -> Object {
    let mut out = Object::new();
    for name in ["crv", "e", "kty", "n", "x", "y"] {
        if let Some(value) = jwk.get(name) {
            out.insert(name.into(), value.clone());
        }
    }
    out
}

/// RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order, base64url.
pub fn thumbprint(jwk: &Object) -> String {
    let required: &[&str] = match jwk.get("kty").and_then(Json::as_str) {
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("OKP") => &["crv", "kty", "x"],
        Some("RSA") => &["e", "kty", "n"],
        _ => &["kty"],
    };
    let mut canonical = Object::new();
    for name in required {
        canonical.insert((*name).into(), jwk.get(*name).cloned().unwrap_or(Json::Null));
    }
    let digest = openssl::sha::sha256(Json::Object(canonical).to_string().as_bytes());
    URL_SAFE_NO_PAD.encode(digest)
}

/// Header and payload of a compact JWS, read without checking the signature.
pub fn peek(token: &str) -> Result<(Object, Object), JoseError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JoseError::NotCompact);
    };
    let decode = |part: &str, what: &'static str| -> Result<Object, JoseError> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| JoseError::Encoding(what))?;
        match serde_json::from_slice(&bytes) {
            Ok(Json::Object(object)) => Ok(object),
            _ => Err(JoseError::Encoding(what)),
        }
    };
    Ok((decode(header, "header")?, decode(payload, "payload")?))
}

/// Verifies a compact JWS with a public JWK (EC P-256 with ES256, or Ed25519 with EdDSA) and answers its payload.
pub fn verify(token: &str, jwk: &Object) -> Result<Object, JoseError> {
    let verifier = verifier(jwk)?;
    let (payload, _) = josekit::jws::deserialize_compact(token, verifier.as_ref()).map_err(|_| JoseError::Signature)?;
    match serde_json::from_slice(&payload) {
        Ok(Json::Object(object)) => Ok(object),
        _ => Err(JoseError::Encoding("payload")),
    }
}

/// How many public keys' verifiers are kept ready; the cache starts afresh when it is full.
const VERIFIERS_KEPT: usize = 1024;

/// The verifier of a public JWK. Turning a JWK into an OpenSSL key costs several times the signature check itself, and
/// every request from a peer is signed with the same few keys, so verifiers are kept by the key's public members.
fn verifier(jwk: &Object) -> Result<Arc<dyn JwsVerifier>, JoseError> {
    static VERIFIERS: LazyLock<Mutex<HashMap<String, Arc<dyn JwsVerifier>>>> = LazyLock::new(Default::default);
    let public = public_only(jwk);
    let id = Json::Object(public.clone()).to_string();
    if let Some(verifier) = VERIFIERS.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
        return Ok(verifier.clone());
    }
    let key = Jwk::from_map(public).map_err(|e| JoseError::UnsupportedKey(e.to_string()))?;
    let verifier: Arc<dyn JwsVerifier> = match (key.key_type(), key.curve()) {
        ("EC", Some("P-256")) => {
            Arc::new(ES256.verifier_from_jwk(&key).map_err(|e| JoseError::UnsupportedKey(e.to_string()))?)
        }
        ("OKP", Some("Ed25519")) => {
            Arc::new(EdDSA.verifier_from_jwk(&key).map_err(|e| JoseError::UnsupportedKey(e.to_string()))?)
        }
        (kty, crv) => return Err(JoseError::UnsupportedKey(format!("{kty} {}", crv.unwrap_or("(no curve)")))),
    };
    let mut verifiers = VERIFIERS.lock().unwrap_or_else(|p| p.into_inner());
    if verifiers.len() >= VERIFIERS_KEPT {
        verifiers.clear();
    }
    verifiers.insert(id, verifier.clone());
    Ok(verifier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> SigningKey {
        let pkey = crate::generate_p256().unwrap();
        SigningKey::from_pem(&pkey.private_key_to_pem_pkcs8().unwrap()).unwrap()
    }

    #[test]
    fn a_signed_token_verifies_with_its_public_key_only() {
        let (key, other) = (key(), key());
        let header = json!({"typ": "JWT", "kid": "did:web:a#k"}).as_object().unwrap().clone();
        let token = key.sign(&header, &json!({"iss": "did:web:a"}));
        let (read_header, payload) = peek(&token).unwrap();
        assert_eq!(read_header["alg"], "ES256");
        assert_eq!(read_header["kid"], "did:web:a#k");
        assert_eq!(payload["iss"], "did:web:a");
        assert_eq!(verify(&token, key.public_jwk()).unwrap()["iss"], "did:web:a");
        assert!(matches!(verify(&token, other.public_jwk()), Err(JoseError::Signature)));
    }

    #[test]
    fn a_tampered_payload_fails() {
        let key = key();
        let token = key.sign(&Object::new(), &json!({"sub": "a"}));
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(br#"{"sub":"b"}"#);
        assert!(matches!(verify(&parts.join("."), key.public_jwk()), Err(JoseError::Signature)));
        assert!(matches!(peek("abc"), Err(JoseError::NotCompact)));
    }

    #[test]
    fn the_thumbprint_follows_rfc_7638() {
        // RFC 7638 section 3.1 uses an RSA key; this EC example is from RFC 7638's errata-free test vectors in
        // RFC 8037 style: the value must not depend on member order or extra members.
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "kid": "ignored"});
        let reordered = json!({"y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "kty": "EC"});
        let a = thumbprint(jwk.as_object().unwrap());
        assert_eq!(a, thumbprint(reordered.as_object().unwrap()));
        assert_eq!(a.len(), 43);
    }
}
