//! The layering Cargo cannot see: the pure crates depend, even transitively, on nothing that does network or database
//! I/O, runs an async runtime or serves HTTP (decision 0021).

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

/// The crates that must stay pure.
const PURE: &[&str] = &["hanse-core", "hanse-policy", "hanse-vocab", "hanse-self-descriptions", "hanse-compute"];

/// What a pure crate may not reach.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "async-std",
    "hyper",
    "axum",
    "reqwest",
    "sqlx",
    "rusqlite",
    "libsqlite3-sys",
    "openssl",
    "native-tls",
    "josekit",
    "tracing",
    "hanse",
];

#[test]
fn the_pure_crates_reach_no_io_runtime_or_server() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let rustc = std::process::Command::new("rustc").arg("-vV").output().expect("rustc -vV");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: ").map(str::to_owned))
        .expect("rustc names its host");
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline", "--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().expect("id"), p["name"].as_str().expect("name")))
        .collect();
    // Normal (not dev or build) dependencies of each package, as resolved.
    let edges: HashMap<&str, Vec<&str>> = metadata["resolve"]["nodes"]
        .as_array()
        .expect("the resolve graph")
        .iter()
        .map(|node| {
            let normal = node["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .filter(|dep| dep["dep_kinds"].as_array().expect("kinds").iter().any(|k| k["kind"].is_null()))
                .map(|dep| dep["pkg"].as_str().expect("pkg"))
                .collect();
            (node["id"].as_str().expect("id"), normal)
        })
        .collect();
    let mut faults = Vec::new();
    for pure in PURE {
        let (&root, _) = names.iter().find(|(_, name)| *name == pure).unwrap_or_else(|| panic!("no package {pure}"));
        let (mut seen, mut todo) = (BTreeSet::new(), vec![root]);
        while let Some(id) = todo.pop() {
            for &next in edges.get(id).into_iter().flatten() {
                if seen.insert(next) {
                    todo.push(next);
                }
            }
        }
        let reached: BTreeSet<&str> = seen.iter().map(|id| names[id]).filter(|n| FORBIDDEN.contains(n)).collect();
        if !reached.is_empty() {
            faults.push(format!("{pure} reaches {reached:?}"));
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}
