//! Every input in the fuzz corpus, replayed through its target in the ordinary test run: what the fuzzer once found
//! interesting (and every crash it found, once fixed) stays a regression test.

use std::path::PathBuf;

#[test]
fn every_corpus_input_runs_through_its_target_without_a_panic() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, target) in hanse_fuzz::TARGETS {
        let folder = root.join(name);
        let mut inputs: Vec<PathBuf> = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| path.is_file())
            .collect();
        inputs.sort();
        assert!(inputs.len() >= 3, "{name}: the corpus holds seeds ({} inputs)", inputs.len());
        for input in &inputs {
            // A running fuzzer replaces inputs with smaller ones: one gone since the listing is skipped.
            match std::fs::read(input) {
                Ok(data) => target(&data),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => panic!("{}: {error}", input.display()),
            }
        }
    }
}
