//! The algorithms this connector admits (decision 0048): each from its manifest (name, version, the module's
//! SHA-256 digest, author and reviewer DIDs, the metrics and results it declares), with the module file beside it.
//! A module whose bytes do not match its manifest's digest stops start-up. The manifest carries its signatures (JWTs
//! of type [`SIGNATURE_TYP`] over its content's digest): the author's and every listed reviewer's, checked through
//! their DIDs once the connector's identity is up ([`Algorithms::verify`]); an algorithm whose signatures do not hold
//! is not admitted, and says why. A job names its algorithm by digest and runs only if that digest was admitted here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::analysis::JobError;
use super::sandbox::{Algorithm, Bounds, Declared, Parameters};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

/// An algorithm's manifest, as its author publishes it and a provider's reviewers admit it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub description: String,
    /// The module file, relative to the manifest.
    pub module: PathBuf,
    /// `sha-256:<hex>` of the module file's bytes.
    pub digest: String,
    pub author: String,
    #[serde(default)]
    pub reviewers: Vec<String>,
    #[serde(default)]
    pub metrics: Vec<String>,
    #[serde(default)]
    pub results: Vec<String>,
    /// A training algorithm: its `finish` sets the next round's values.
    #[serde(default)]
    pub trains: bool,
    /// The author's and the reviewers' signatures of everything above (see [`Manifest::sign`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<String>,
}

/// The JWT type of a signature on an algorithm's manifest.
pub const SIGNATURE_TYP: &str = "hanse-algorithm+jwt";

/// Who signs a manifest: its author, or a reviewer who read the module and admits it for use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Author,
    Reviewer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Author => "author",
            Role::Reviewer => "reviewer",
        }
    }
}

impl Manifest {
    /// The canonical digest of the manifest without its signatures: what every signature signs.
    pub fn content_digest(&self) -> String {
        let mut content = serde_json::to_value(self).expect("a manifest is JSON");
        content.as_object_mut().expect("an object").remove("signatures");
        crate::audit::canonical_digest(&content)
    }

    /// A signature of this manifest's content by `keys` as `role`.
    pub fn sign(&self, keys: &crate::identity::keys::KeyRing, role: Role) -> String {
        let claims = json!({"manifest": self.content_digest(), "role": role.name(), "name": self.name,
                            "version": self.version, "digest": self.digest});
        keys.sign(SIGNATURE_TYP, &[], &claims)
    }

    /// Checks every signature through its signer's DID: the author's must be there, and every listed reviewer's;
    /// no one else's may be. Answers why not.
    pub async fn check_signatures(&self, identity: &crate::identity::Identity) -> Result<(), String> {
        let content = self.content_digest();
        let mut signed = Vec::new();
        for jwt in &self.signatures {
            let (header, _) = crate::identity::jose::peek(jwt).map_err(|e| format!("a signature is not a JWT: {e}"))?;
            let kid = header.get("kid").and_then(Json::as_str).unwrap_or_default();
            let signer = crate::identity::did::controller_of(kid).ok_or("a signature names no signer's key")?;
            let claims = identity
                .verify_signed(jwt, SIGNATURE_TYP, signer)
                .await
                .map_err(|e| format!("{signer}'s signature does not hold: {e}"))?;
            if claims.get("manifest").and_then(Json::as_str) != Some(content.as_str()) {
                return Err(format!("{signer} signed another manifest: this one was changed after it was signed"));
            }
            let role = claims.get("role").and_then(Json::as_str).unwrap_or_default();
            let listed = match role {
                "author" => self.author == signer,
                "reviewer" => self.reviewers.iter().any(|r| r == signer),
                _ => false,
            };
            if !listed {
                return Err(format!("{signer} signed as {role:?}, which the manifest does not name them"));
            }
            signed.push((role.to_owned(), signer.to_owned()));
        }
        let has = |role: Role, who: &str| signed.iter().any(|(r, s)| r == role.name() && s == who);
        if !has(Role::Author, &self.author) {
            return Err(format!("the author {} has not signed it", self.author));
        }
        if let Some(missing) = self.reviewers.iter().find(|r| !has(Role::Reviewer, r)) {
            return Err(format!("the reviewer {missing} has not signed it"));
        }
        Ok(())
    }
}

/// An admitted algorithm: its manifest and its compiled module.
#[derive(Debug)]
pub struct Admitted {
    pub manifest: Manifest,
    pub algorithm: Algorithm,
}

impl Admitted {
    pub fn declared(&self) -> Declared {
        Declared {
            metrics: self.manifest.metrics.clone(),
            results: self.manifest.results.clone(),
            trains: self.manifest.trains,
        }
    }
}

/// Signs the manifest at `path` with `keys` of participant `signer` as `role` and writes it back with the signature
/// added; the signer must be the manifest's author or one of its reviewers, and the module beside it must match.
pub fn sign_file(
    path: &Path,
    keys: &crate::identity::keys::KeyRing,
    signer: &str,
    role: Role,
) -> Result<Manifest, String> {
    let admitted = Algorithms::admit(path).map_err(|reason| format!("{}: {reason}", path.display()))?;
    let mut manifest = admitted.manifest;
    let named = match role {
        Role::Author => manifest.author == signer,
        Role::Reviewer => manifest.reviewers.iter().any(|r| r == signer),
    };
    if !named {
        return Err(format!("{signer} is not the manifest's {}", role.name()));
    }
    manifest.signatures.push(manifest.sign(keys, role));
    let text = serde_json::to_string_pretty(&manifest).expect("a manifest is JSON") + "\n";
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(manifest)
}

/// The admitted algorithms by digest.
#[derive(Debug, Clone)]
pub struct Algorithms {
    /// Every manifest read, in the configuration's order (several may name one module).
    read: Vec<Arc<Admitted>>,
    /// Per digest, the first manifest read (after [`Algorithms::verify`]: the first whose signatures hold).
    by_digest: HashMap<String, Arc<Admitted>>,
    /// Algorithms whose manifest's signatures did not hold: name, version, digest and why.
    pub refused: Vec<(Manifest, String)>,
    /// The fuel and memory every run of them may use.
    pub bounds: Bounds,
    /// The admitted algorithms as the DSP catalogue's data services, made once (see [`Algorithms::catalogue_services`]).
    catalogue: std::sync::OnceLock<Vec<Json>>,
}

/// `sha-256:<lowercase hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha-256:{}", hanse_core::encode::sha256_hex(bytes))
}

/// A digest as jobs and policies may write it (`sha-256:<hex>`, `SHA-256:<HEX>` or bare hex), in one form.
pub fn normalise(digest: &str) -> String {
    let hex = digest.trim();
    let hex = hex.get(..8).filter(|p| p.eq_ignore_ascii_case("sha-256:")).map_or(hex, |_| &hex[8..]);
    format!("sha-256:{}", hex.to_ascii_lowercase())
}

impl Algorithms {
    /// Reads and compiles every manifest's module; an unreadable manifest, a module that does not match its digest
    /// or does not compile is an error naming the file.
    pub fn load(manifests: &[PathBuf], bounds: Bounds) -> Result<Algorithms, String> {
        let mut read = Vec::new();
        for path in manifests {
            let admitted =
                Self::admit(path).map_err(|reason| format!("compute.algorithms: {}: {reason}", path.display()))?;
            read.push(Arc::new(admitted));
        }
        let mut by_digest = HashMap::new();
        for admitted in read.iter().rev() {
            by_digest.insert(normalise(&admitted.manifest.digest), admitted.clone());
        }
        Ok(Algorithms { read, by_digest, refused: Vec::new(), bounds, catalogue: Default::default() })
    }

    fn admit(path: &Path) -> Result<Admitted, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the manifest: {e}"))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| format!("not a manifest: {e}"))?;
        let module = path.parent().unwrap_or(Path::new(".")).join(&manifest.module);
        let bytes = std::fs::read(&module).map_err(|e| format!("cannot read {}: {e}", module.display()))?;
        let digest = digest_of(&bytes);
        if digest != normalise(&manifest.digest) {
            return Err(format!("{} has digest {digest}, not the manifest's {}", module.display(), manifest.digest));
        }
        let algorithm = Algorithm::compile(&bytes).map_err(|e| e.to_string())?;
        Ok(Admitted { manifest, algorithm })
    }

    /// The admitted algorithm of `digest`, if any.
    pub fn get(&self, digest: &str) -> Option<Arc<Admitted>> {
        self.by_digest.get(&normalise(digest)).cloned()
    }

    /// Keeps only the algorithms whose manifests' signatures hold ([`Manifest::check_signatures`]); the others are
    /// refused with the reason. An unsigned manifest is admitted in development mode only.
    pub async fn verify(&mut self, identity: &crate::identity::Identity, development: bool) {
        let mut checked = HashMap::new();
        for admitted in &self.read {
            let manifest = &admitted.manifest;
            let verdict = match manifest.signatures.is_empty() {
                true if development => {
                    tracing::warn!(algorithm = %manifest.name, "an unsigned algorithm is admitted (development mode)");
                    Ok(())
                }
                true => Err("its manifest is not signed (`hanse algorithm sign`)".to_owned()),
                false => manifest.check_signatures(identity).await,
            };
            match verdict {
                Ok(()) => {
                    checked.entry(normalise(&manifest.digest)).or_insert_with(|| admitted.clone());
                }
                Err(reason) => {
                    tracing::error!(algorithm = %manifest.name, %reason, "an algorithm is not admitted");
                    self.refused.push((manifest.clone(), reason));
                }
            }
        }
        self.by_digest = checked;
        self.catalogue = Default::default();
    }

    /// The algorithm a module job names, or why it may not run here (naming the digest).
    pub fn admitted(&self, parameters: &Parameters) -> Result<Arc<Admitted>, JobError> {
        let digest = parameters.algorithm.as_deref().ok_or_else(|| {
            JobError::Invalid("algorithm: a module job names its algorithm by digest (`sha-256:<hex>`)".into())
        })?;
        let digest = normalise(digest);
        self.get(&digest).ok_or_else(|| {
            let why = self.refused.iter().find(|(manifest, _)| normalise(&manifest.digest) == digest);
            JobError::Invalid(match why {
                Some((_, reason)) => format!("algorithm: {digest} is not admitted at this site: {reason}"),
                None => format!("algorithm: {digest} is not admitted at this site"),
            })
        })
    }

    /// The admitted algorithms as data services of this connector's DSP catalogue, beside its own service: each runs
    /// at `endpoint_url`, is named by its digest and carries its signed manifest, so that a consumer finds which
    /// reviewed algorithms a provider runs before it negotiates.
    /// Made on the first catalogue request and kept: the admitted set does not change while the connector runs.
    pub fn catalogue_services(&self, endpoint_url: &str) -> &[Json] {
        self.catalogue.get_or_init(|| self.describe_services(endpoint_url))
    }

    fn describe_services(&self, endpoint_url: &str) -> Vec<Json> {
        use hanse_vocab::ns::{DCT, HANSE};
        self.manifests()
            .into_iter()
            .map(|manifest| {
                let digest = normalise(&manifest.digest);
                let reviewers: Vec<Json> = manifest.reviewers.iter().map(|r| json!({"@id": r})).collect();
                let mut service = json!({
                    "@id": format!("urn:hanse:algorithm:{digest}"),
                    "@type": "DataService",
                    "endpointURL": endpoint_url,
                });
                let described = [
                    (format!("{DCT}title"), json!(manifest.name)),
                    (format!("{DCT}description"), json!(manifest.description)),
                    (format!("{DCT}identifier"), json!(digest)),
                    (format!("{DCT}creator"), json!({"@id": manifest.author})),
                    (format!("{HANSE}reviewer"), json!(reviewers)),
                    (format!("{HANSE}manifest"), json!({"@type": "@json", "@value": manifest})),
                ];
                service.as_object_mut().expect("an object").extend(described);
                service
            })
            .collect()
    }

    /// The admitted manifests, by name.
    pub fn manifests(&self) -> Vec<Manifest> {
        let mut listed: Vec<Manifest> = self.by_digest.values().map(|a| a.manifest.clone()).collect();
        listed.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        listed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds { fuel: 1_000_000, memory_bytes: 1 << 20 };

    /// The manifests that come with Hanse name their modules' digests as they are.
    #[test]
    fn the_shipped_manifests_match_their_modules() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../compute/algorithms");
        let manifests = ["validation.json", "histogram.json", "logistic.json"].map(|m| folder.join(m));
        let algorithms = Algorithms::load(&manifests, BOUNDS).unwrap();
        let names: Vec<String> = algorithms.manifests().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["histogram", "logistic", "validation"]);
        let validation = std::fs::read(folder.join("validation.wat")).unwrap();
        let admitted = algorithms.get(&digest_of(&validation).to_uppercase().replace("SHA-256:", "")).unwrap();
        assert!(admitted.algorithm.finishes());
        assert_eq!(admitted.declared(), super::super::sandbox::examples::validation());
        let logistic = algorithms.get(&digest_of(&std::fs::read(folder.join("logistic.wat")).unwrap())).unwrap();
        assert_eq!(logistic.declared(), super::super::sandbox::examples::logistic());
    }

    #[test]
    fn a_module_that_does_not_match_its_manifest_is_refused_naming_both_digests() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.wat"), r#"(module (func (export "site")))"#).unwrap();
        let manifest = serde_json::json!({"name": "m", "version": "1", "module": "m.wat", "digest": "sha-256:00",
                                          "author": "did:web:example.org"});
        std::fs::write(dir.path().join("m.json"), manifest.to_string()).unwrap();
        let error = Algorithms::load(&[dir.path().join("m.json")], BOUNDS).unwrap_err();
        assert!(error.contains("not the manifest's sha-256:00") && error.contains("has digest sha-256:"), "{error}");
    }
}
