//! The Kubernetes manifests of `deploy/kubernetes` validate against the Kubernetes 1.31 schemas (kubernetes-validate
//! from PyPI, strict: unknown fields are errors), and they run what decision 0040 says replicas need.

use hanse_tests::interop;

fn manifests() -> Vec<std::path::PathBuf> {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_kubernetes_manifests_validate_against_the_kubernetes_schemas() {
    let files = manifests();
    assert!(files.len() >= 2, "{files:?}");
    let python = interop::deploy_python();
    let validator = python.with_file_name("kubernetes-validate");
    let mut args: Vec<&std::ffi::OsStr> = vec!["--strict".as_ref(), "--kubernetes-version".as_ref(), "1.31.0".as_ref()];
    args.extend(files.iter().map(|f| f.as_os_str()));
    let (ok, printed) = interop::outcome(&validator, &args);
    assert!(ok, "{printed}");
    for kind in ["deployment", "poddisruptionbudget", "horizontalpodautoscaler", "service", "secret"] {
        assert!(printed.contains(&format!("passed for resource {kind}/")), "no {kind} validated:\n{printed}");
    }

    // And the validator is not a rubber stamp: a replica count that is not a number fails.
    let broken = std::fs::read_to_string(files.iter().find(|f| f.ends_with("hanse.yaml")).unwrap()).unwrap().replacen(
        "replicas: 3",
        "replicas: three",
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, broken).unwrap();
    let (ok, printed) = interop::outcome(&validator, &["--strict".as_ref(), path.as_os_str()]);
    assert!(!ok && printed.contains("spec.replicas"), "{printed}");
}

#[test]
fn replicas_share_the_participant_key_and_a_bucket_and_have_probes_and_a_budget() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/hanse.yaml"),
    )
    .unwrap();
    for needed in [
        "replicas: 3",
        "kind: PodDisruptionBudget",
        "kind: HorizontalPodAutoscaler",
        "readinessProbe:",
        "livenessProbe:",
        "path: /health/ready",
        "path: /health/live",
        "HANSE_STORAGE_URL",
        "key: storage-secret-access-key",
        "HANSE_CLUSTER_REPLICA",
        "secretName: hanse-config",
        "key: participant.pem",
        "key: api-key",
        "key: database-url",
    ] {
        assert!(text.contains(needed), "deploy/kubernetes/hanse.yaml lacks `{needed}`");
    }
}
