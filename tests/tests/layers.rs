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

/// The connector crate's modules, layer by layer from the bottom (ARCHITECTURE.md, decision 0022). A module may use
/// modules of its own layer and of the layers below it, never of a layer above; and no modules use each other in a
/// loop, within a layer either.
const CONNECTOR_LAYERS: &[(&str, &[&str])] = &[
    ("foundations", &["config", "init", "client", "memory", "telemetry", "measure", "transport", "files"]),
    ("catalogue and identity", &["catalog", "identity"]),
    ("wire and log", &["dsp", "problem", "audit", "dispatch", "process", "cluster"]),
    (
        "services",
        &["negotiation", "transfer", "converge", "dataplane", "compute", "apps", "lineage", "peers", "broker", "fetch"],
    ),
    ("surfaces", &["error", "sparql", "state", "health"]),
    ("routers", &["protocol", "management", "console"]),
    ("assembly", &["server", "demo", "testing"]),
    ("command line", &["cli"]),
];

/// Every `crate::<module>` a source file names outside its test module, doc links included: a link to a module is a
/// dependency a reader follows.
fn modules_named(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    let mut named = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c}`: the first segment of each item.
            let group = &group[..group.find('}').unwrap_or(group.len())];
            named.extend(group.split(',').filter_map(|item| first_segment(item.trim())));
        } else if let Some(name) = first_segment(rest) {
            named.insert(name);
        }
    }
    named
}

fn first_segment(path: &str) -> Option<String> {
    let name: String = path.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    (!name.is_empty() && name != "self").then_some(name)
}

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Which of a crate's top-level modules each source file's module names (the crate root left out), with the file.
fn module_uses(src: &std::path::Path) -> Vec<(String, String, BTreeSet<String>)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(src).expect("below src").to_string_lossy().split(['/', '\\', '.']).next().unwrap().to_owned()
        })
        .collect();
    files
        .iter()
        .filter_map(|file| {
            let relative = file.strip_prefix(src).expect("below src").to_string_lossy().replace('\\', "/");
            let module = relative.split(['/', '.']).next().expect("a module").to_owned();
            if module == "lib" || module == "main" {
                return None;
            }
            let text = std::fs::read_to_string(file).expect("a source file");
            let named = modules_named(&text).into_iter().filter(|n| *n != module && modules.contains(n)).collect();
            Some((relative, module, named))
        })
        .collect()
}

/// Fails naming the loop when modules use each other in one.
fn assert_no_loop(krate: &str, uses: &HashMap<String, BTreeSet<String>>) {
    fn visit<'a>(
        krate: &str,
        module: &'a str,
        uses: &'a HashMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if let Some(at) = path.iter().position(|m| *m == module) {
            panic!("{krate}: modules use each other in a loop: {} -> {module}", path[at..].join(" -> "));
        }
        if !done.insert(module) {
            return;
        }
        path.push(module);
        for next in uses.get(module).into_iter().flatten() {
            visit(krate, next, uses, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for module in uses.keys() {
        visit(krate, module, uses, &mut Vec::new(), &mut done);
    }
}

fn collect(uses: &[(String, String, BTreeSet<String>)]) -> HashMap<String, BTreeSet<String>> {
    let mut all: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (_, module, named) in uses {
        all.entry(module.clone()).or_default().extend(named.iter().cloned());
    }
    all
}

#[test]
fn the_connector_modules_form_layers_without_a_loop() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../connector/src");
    let layer_of: HashMap<&str, usize> = CONNECTOR_LAYERS
        .iter()
        .enumerate()
        .flat_map(|(rank, (_, modules))| modules.iter().map(move |m| (*m, rank)))
        .collect();
    let uses = module_uses(&src);
    let mut upward = Vec::new();
    for (relative, module, named) in &uses {
        let rank = *layer_of.get(module.as_str()).unwrap_or_else(|| {
            panic!("connector/src/{relative}: module `{module}` is in no layer; add it to CONNECTOR_LAYERS")
        });
        for name in named {
            let named_rank = layer_of[name.as_str()];
            if named_rank > rank {
                upward.push(format!(
                    "connector/src/{relative} ({}) names crate::{name} ({})",
                    CONNECTOR_LAYERS[rank].0, CONNECTOR_LAYERS[named_rank].0
                ));
            }
        }
    }
    assert!(upward.is_empty(), "modules use a higher layer:\n{}", upward.join("\n"));
    let uses = collect(&uses);
    assert_no_loop("connector", &uses);
    assert!(uses.len() > 20, "the connector's modules were not found under {}", src.display());
}

#[test]
fn no_crate_has_modules_in_a_loop() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in ["policy", "vocab", "self-descriptions", "core", "compute", "keys", "audit", "store", "identity"] {
        let uses = collect(&module_uses(&root.join(krate).join("src")));
        assert!(!uses.is_empty(), "{krate}: no modules found");
        assert_no_loop(krate, &uses);
    }
}
