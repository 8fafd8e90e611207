//! The algorithms this connector admits (decision 0048): each from its manifest (name, version, the module's
//! SHA-256 digest, author and reviewer DIDs, the metrics and results it declares), with the module file beside it.
//! A module whose bytes do not match its manifest's digest stops start-up; a job names its algorithm by digest and
//! runs only if that digest was admitted here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::analysis::JobError;
use super::sandbox::{Algorithm, Bounds, Declared, Parameters};
use serde::{Deserialize, Serialize};

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

/// The admitted algorithms by digest.
#[derive(Debug, Clone)]
pub struct Algorithms {
    by_digest: HashMap<String, Arc<Admitted>>,
    /// The fuel and memory every run of them may use.
    pub bounds: Bounds,
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
        let mut by_digest = HashMap::new();
        for path in manifests {
            let admitted =
                Self::admit(path).map_err(|reason| format!("compute.algorithms: {}: {reason}", path.display()))?;
            by_digest.insert(normalise(&admitted.manifest.digest), Arc::new(admitted));
        }
        Ok(Algorithms { by_digest, bounds })
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

    /// The algorithm a module job names, or why it may not run here (naming the digest).
    pub fn admitted(&self, parameters: &Parameters) -> Result<Arc<Admitted>, JobError> {
        let digest = parameters.algorithm.as_deref().ok_or_else(|| {
            JobError::Invalid("algorithm: a module job names its algorithm by digest (`sha-256:<hex>`)".into())
        })?;
        self.get(digest)
            .ok_or_else(|| JobError::Invalid(format!("algorithm: {} is not admitted at this site", normalise(digest))))
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
