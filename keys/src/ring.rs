//! The participant's keys: the current signing key (`participant.key_file`) and the keys it replaced.
//!
//! `hanse keys rotate` moves the current key to `<key folder>/retired/<unix seconds>.pem` and writes a new one. A
//! retired key stays in the DID document until every token it can have signed has expired (token lifetime plus clock
//! skew after its retirement), so peers keep accepting requests that were in flight during the rotation.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::jose::{Object, SigningKey};
use crate::{CLOCK_SKEW_SECONDS, TOKEN_LIFETIME_SECONDS};

/// Why the keys could not be loaded or rotated.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the participant key {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("key generation failed: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// A key that signed for us before the current one.
#[derive(Debug, Clone)]
struct RetiredKey {
    kid: String,
    jwk: Object,
    retired_at: DateTime<Utc>,
}

/// The current key and the retired keys still listed.
#[derive(Debug)]
pub struct KeyRing {
    did: String,
    current: SigningKey,
    current_kid: String,
    retired: Vec<RetiredKey>,
}

/// The DID URL of a key: the DID and the key's RFC 7638 thumbprint as fragment.
pub fn key_id(did: &str, key: &SigningKey) -> String {
    format!("{did}#{}", key.thumbprint())
}

fn read_key(path: &Path) -> Result<SigningKey, KeyError> {
    let error = |reason: String| KeyError::Read { path: path.to_owned(), reason };
    let pem = fs::read(path).map_err(|e| error(e.to_string()))?;
    SigningKey::from_pem(&pem).map_err(|e| error(e.to_string()))
}

fn retired_folder(key_file: &Path) -> PathBuf {
    key_file.parent().map(Path::to_path_buf).unwrap_or_default().join("retired")
}

impl KeyRing {
    /// Loads the current key and every retired key (`retired/<unix seconds>.pem` beside the key file).
    pub fn load(did: &str, key_file: &Path) -> Result<KeyRing, KeyError> {
        let current = read_key(key_file)?;
        let current_kid = key_id(did, &current);
        let mut retired = Vec::new();
        if let Ok(entries) = fs::read_dir(retired_folder(key_file)) {
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(seconds) = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .filter(|_| path.extension().is_some_and(|e| e == "pem"))
                    .and_then(|s| s.parse::<i64>().ok())
                else {
                    continue;
                };
                let Some(retired_at) = DateTime::from_timestamp(seconds, 0) else { continue };
                let key = read_key(&path)?;
                retired.push(RetiredKey { kid: key_id(did, &key), jwk: key.public_jwk().clone(), retired_at });
            }
        }
        retired.sort_by_key(|k| std::cmp::Reverse(k.retired_at));
        Ok(KeyRing { did: did.to_owned(), current, current_kid, retired })
    }

    /// The DID these keys belong to.
    pub fn did(&self) -> &str {
        &self.did
    }

    /// The DID URL of the current key.
    pub fn current_kid(&self) -> &str {
        &self.current_kid
    }

    /// The keys that may sign tokens at `now` (the DID document's `authentication` and `capabilityInvocation`): the
    /// current one, then retired ones whose tokens may still be valid.
    pub fn listed(&self, now: DateTime<Utc>) -> Vec<(String, Object)> {
        let window = chrono::Duration::seconds(TOKEN_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS);
        let mut keys = vec![(self.current_kid.clone(), self.current.public_jwk().clone())];
        for key in &self.retired {
            if key.retired_at + window > now && key.kid != self.current_kid {
                keys.push((key.kid.clone(), key.jwk.clone()));
            }
        }
        keys
    }

    /// Every key, the current one first, then the retired ones, newest first: what the DID document lists as
    /// verification methods, so that whatever a retired key signed — credentials, tree heads, receipts — still
    /// verifies. Only [`KeyRing::listed`] keys may sign tokens.
    pub fn every(&self) -> Vec<(String, Object)> {
        let mut keys = vec![(self.current_kid.clone(), self.current.public_jwk().clone())];
        keys.extend(self.retired.iter().filter(|k| k.kid != self.current_kid).map(|k| (k.kid.clone(), k.jwk.clone())));
        keys
    }

    /// Every key that ever signed for us, listed or not, by key id: what checks a signature made long ago (a tree
    /// head, a receipt) needs.
    pub fn all(&self) -> std::collections::BTreeMap<String, Object> {
        let mut keys: std::collections::BTreeMap<String, Object> =
            self.retired.iter().map(|key| (key.kid.clone(), key.jwk.clone())).collect();
        keys.insert(self.current_kid.clone(), self.current.public_jwk().clone());
        keys
    }

    /// A secret for `context`, derived from the current key ([`SigningKey::derive`]).
    pub fn derive(&self, context: &[u8]) -> [u8; 32] {
        self.current.derive(context)
    }

    /// Signs `payload` with the current key; the header gets `kid`, `typ` and the given extra members.
    pub fn sign(&self, typ: &str, extra_header: &[(&str, Json)], payload: &Json) -> String {
        let mut header = Object::new();
        header.insert("typ".into(), Json::String(typ.into()));
        header.insert("kid".into(), Json::String(self.current_kid.clone()));
        for (name, value) in extra_header {
            header.insert((*name).into(), value.clone());
        }
        self.current.sign(&header, payload)
    }
}

/// Retires the current key (to `retired/<unix seconds>.pem`) and writes a fresh EC P-256 key in its place. Answers
/// the retired key's new path. The connector lists both keys after its next start.
pub fn rotate(key_file: &Path) -> Result<PathBuf, KeyError> {
    read_key(key_file)?;
    let folder = retired_folder(key_file);
    fs::create_dir_all(&folder).map_err(|source| KeyError::Write { path: folder.clone(), source })?;
    let retired = folder.join(format!("{}.pem", Utc::now().timestamp()));
    if retired.exists() {
        return Err(KeyError::Write {
            path: retired,
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "rotated less than a second ago"),
        });
    }
    let fresh = crate::generate_p256()?.private_key_to_pem_pkcs8()?;
    let staged = key_file.with_extension("pem.new");
    write_secret(&staged, &fresh)?;
    fs::rename(key_file, &retired).map_err(|source| KeyError::Write { path: retired.clone(), source })?;
    fs::rename(&staged, key_file).map_err(|source| KeyError::Write { path: key_file.to_owned(), source })?;
    Ok(retired)
}

fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::io::Write;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|source| KeyError::Write { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_key_stays_listed_for_one_token_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("keys/participant.pem");
        fs::create_dir_all(key_file.parent().unwrap()).unwrap();
        fs::write(&key_file, crate::generate_p256().unwrap().private_key_to_pem_pkcs8().unwrap()).unwrap();
        let before = KeyRing::load("did:web:a", &key_file).unwrap();
        rotate(&key_file).unwrap();
        let after = KeyRing::load("did:web:a", &key_file).unwrap();
        assert_ne!(before.current_kid(), after.current_kid());
        let now = Utc::now();
        let listed: Vec<String> = after.listed(now).into_iter().map(|(kid, _)| kid).collect();
        assert_eq!(listed, vec![after.current_kid().to_owned(), before.current_kid().to_owned()]);
        let later = now + chrono::Duration::seconds(TOKEN_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS + 1);
        assert_eq!(after.listed(later).len(), 1);
    }
}
