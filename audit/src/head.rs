//! Signed tree heads: a log's size, root and time, signed (JWS, ES256 or EdDSA) with the participant key.

use serde_json::{Value as Json, json};

use super::merkle::{Hash, from_hex, to_hex};
use hanse_keys::jose::{self, Object};
use hanse_keys::ring::KeyRing;

/// The JWS `typ` of a signed tree head.
pub const TYP: &str = "hanse-tree-head+jwt";
/// The JWS `typ` of a witness's cosignature.
pub const COSIGNATURE_TYP: &str = "hanse-cosignature+jwt";

/// A tree head as signed.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeHead {
    /// The DID of the participant whose log it is.
    pub log: String,
    pub size: u64,
    pub root: Hash,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// The key that signed it.
    pub kid: String,
    pub jws: String,
}

impl TreeHead {
    /// The head as the APIs show it.
    pub fn to_json(&self) -> Json {
        json!({
            "log": self.log,
            "size": self.size,
            "rootHash": to_hex(&self.root),
            "timestamp": hanse_core::encode::rfc3339_millis(self.timestamp),
            "signature": self.jws,
        })
    }
}

/// Signs the head of a `size`-entry log with root `root`.
pub fn sign(keys: &KeyRing, size: u64, root: &Hash, timestamp: i64) -> TreeHead {
    let payload = json!({"iss": keys.did(), "size": size, "rootHash": to_hex(root), "timestamp": timestamp});
    let jws = keys.sign(TYP, &[], &payload);
    TreeHead { log: keys.did().to_owned(), size, root: *root, timestamp, kid: keys.current_kid().to_owned(), jws }
}

/// A head's claims, read without checking the signature (to find the key).
pub fn read(jws: &str) -> Result<TreeHead, String> {
    let (header, payload) = jose::peek(jws).map_err(|e| format!("not a signed tree head: {e}"))?;
    from_parts(jws, &header, &payload, TYP)
}

/// A head, its signature checked with `jwk`.
pub fn verify(jws: &str, jwk: &Object) -> Result<TreeHead, String> {
    let head = read(jws)?;
    jose::verify(jws, jwk).map_err(|e| format!("the signature of the tree head of size {} fails: {e}", head.size))?;
    Ok(head)
}

fn from_parts(jws: &str, header: &Object, payload: &Object, typ: &str) -> Result<TreeHead, String> {
    if header.get("typ").and_then(Json::as_str) != Some(typ) {
        return Err(format!("not a {typ}"));
    }
    let text = |name: &str| payload.get(name).and_then(Json::as_str);
    let (Some(log), Some(size), Some(root), Some(timestamp)) = (
        text("iss"),
        payload.get("size").and_then(Json::as_u64),
        text("rootHash").and_then(from_hex),
        payload.get("timestamp").and_then(Json::as_i64),
    ) else {
        return Err("a signed tree head needs iss, size, rootHash and timestamp".into());
    };
    Ok(TreeHead {
        log: log.to_owned(),
        size,
        root,
        timestamp,
        kid: header.get("kid").and_then(Json::as_str).unwrap_or_default().to_owned(),
        jws: jws.to_owned(),
    })
}

/// A witness's cosignature over a peer's head: the witness's DID and the head it saw, signed by the witness.
pub fn cosign(keys: &KeyRing, head: &TreeHead, timestamp: i64) -> String {
    let payload = json!({
        "iss": keys.did(),
        "sub": head.log,
        "size": head.size,
        "rootHash": to_hex(&head.root),
        "treeHead": hanse_core::encode::digest(&json!(head.jws)),
        "timestamp": timestamp,
    });
    keys.sign(COSIGNATURE_TYP, &[], &payload)
}
