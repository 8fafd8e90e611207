//! `hanse demo` as a test: the whole federation journey runs, and what its summary claims is checked against what
//! can be known independently — the search finds the three registers, the agreements are the ones the story needs,
//! the refusal names the purpose, the download is the published file, the federated fit is the pooled fit of the
//! same synthetic cohorts, the cross-tab releases true counts and hides every small one, every log verifies. A
//! second run with the same seed gives the same numbers.

use std::collections::BTreeSet;

use hanse::compute::synth;
use hanse::demo::{self, COVARIATES, CROSSTAB, HOSPITALS, MIN_CELL_COUNT, Options, REGISTER, SUMMARY};
use hanse_tests::pooled_logistic_fit;
use serde_json::Value;

fn numbers(value: &Value) -> Vec<f64> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

/// A group's level as the cohort's schema names it (booleans as `true` / `false`).
fn level(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), str::to_owned)
}

/// The true counts of the cross-tab of hospital `site`'s cohort, by the levels of each cell.
fn true_counts(site: usize, seed: u64) -> std::collections::BTreeMap<Vec<String>, u64> {
    let table = synth::cohort(HOSPITALS[site].rows, site as u32, seed);
    let columns: Vec<usize> =
        CROSSTAB.iter().map(|name| table.schema.columns.iter().position(|c| c.name == *name).unwrap()).collect();
    let mut counts = std::collections::BTreeMap::new();
    for row in 0..table.rows {
        let key: Vec<String> = columns
            .iter()
            .map(|&c| {
                let column = &table.schema.columns[c];
                let value = table.values[c][row];
                if column.levels.is_empty() {
                    (value != 0.0).to_string()
                } else {
                    column.levels[value as usize].clone()
                }
            })
            .collect();
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_the_whole_journey_and_its_summary_holds() {
    let options = Options { seed: 11, keep_running: false, progress: false };
    let summary = demo::run(&options).await.expect("the demo succeeds");

    // 1. Three registers, one at each hospital.
    assert_eq!(summary.found.len(), 3, "{:?}", summary.found);
    assert!(summary.found.iter().all(|(dataset, _)| dataset == REGISTER), "{:?}", summary.found);
    assert_eq!(summary.found.iter().map(|(_, p)| p).collect::<BTreeSet<_>>().len(), 3);

    // 2. Four agreements, reached the three ways the story tells, and the refusal with its reason.
    let hows: Vec<&str> = summary.agreements.iter().map(|a| a.how.as_str()).collect();
    assert_eq!(hows, ["automatic", "approved by the operator", "after a refused purpose", "automatic"]);
    assert_eq!(summary.agreements[3].dataset, SUMMARY);
    let ids: BTreeSet<&str> = summary.agreements.iter().map(|a| a.agreement_id.as_str()).collect();
    assert_eq!(ids.len(), 4);
    assert_eq!(summary.refusal.hospital, HOSPITALS[2].name);
    assert!(summary.refusal.reason.contains("purpose") && summary.refusal.reason.contains("DUO:0000007"));
    assert_eq!(summary.refusal.decision["permitted"], false);
    assert!(summary.refusal.decision.to_string().contains("dpv:CommercialResearch"), "the trace shows the purpose");

    // 3. The download is the published summary.
    let published = demo::summary_csv(HOSPITALS[0].rows, options.seed);
    assert_eq!(summary.transfer.bytes, published.len() as u64);
    let digest: String = openssl::sha::sha256(published.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(summary.transfer.sha256, digest);

    // 4. The federated fit equals the pooled fit; each site's n is its cohort.
    let cohorts: Vec<(usize, u32)> = HOSPITALS.iter().enumerate().map(|(i, h)| (h.rows, i as u32)).collect();
    let (terms, beta, errors) = pooled_logistic_fit(&cohorts, options.seed, &COVARIATES);
    assert_eq!(summary.glm["terms"], serde_json::json!(terms));
    let (fitted, fitted_errors) = (numbers(&summary.glm["coefficients"]), numbers(&summary.glm["standardErrors"]));
    for i in 0..terms.len() {
        assert!((fitted[i] - beta[i]).abs() < 1e-6, "{}: {} vs pooled {}", terms[i], fitted[i], beta[i]);
        assert!((fitted_errors[i] - errors[i]).abs() < 1e-6, "{}: se {} vs {}", terms[i], fitted_errors[i], errors[i]);
    }
    let per_site: Vec<u64> =
        summary.glm["sites"].as_array().unwrap().iter().map(|s| s["n"].as_u64().unwrap()).collect();
    assert_eq!(per_site, HOSPITALS.map(|h| h.rows as u64));

    // The cross-tab: released counts are true, every small one is hidden, and something was hidden.
    let mut suppressed = 0;
    for (site, released) in summary.crosstab["sites"].as_array().unwrap().iter().enumerate() {
        let truth = true_counts(site, options.seed);
        for cell in released["cells"].as_array().unwrap() {
            let key: Vec<String> = CROSSTAB.iter().map(|c| level(&cell["group"][c])).collect();
            let count = truth.get(&key).copied().unwrap_or(0);
            match cell["n"].as_u64() {
                Some(n) => {
                    assert_eq!(n, count, "site {site} {key:?}");
                    assert!(n == 0 || n >= MIN_CELL_COUNT, "site {site} {key:?} released {n}");
                }
                None => suppressed += 1,
            }
        }
    }
    assert!(suppressed > 0, "the companion cross-tab shows suppression");

    // 5. Every hospital's log verifies with the receipts both sides hold.
    assert_eq!(summary.audits.len(), 3);
    for audit in &summary.audits {
        assert!(audit.entries > 0 && audit.root.len() == 64, "{audit:?}");
        assert!(audit.receipts_from_hospital >= 1 && audit.receipts_from_researcher >= 1, "{audit:?}");
    }

    // 6. Each hospital's lineage names the agreement its register was used under, the two jobs (the model and the
    // cross-tab) and every result released; the graphs validate against Hanse's PROV-O shape.
    let shapes =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../self-descriptions/shapes/hanse-lineage.shapes.ttl");
    let rounds = summary.glm["rounds"].as_u64().expect("the model's rounds");
    assert_eq!(summary.lineage.len(), 3);
    for (traced, agreement) in summary.lineage.iter().zip(&summary.agreements) {
        assert_eq!(traced.agreements, std::slice::from_ref(&agreement.agreement_id), "{}", traced.hospital);
        assert_eq!(traced.jobs, 2, "{}", traced.hospital);
        assert_eq!(traced.results, rounds + 1, "{}: every model round and the cross-tab", traced.hospital);
        let report = hanse_tests::pyshacl(&traced.graph, &[&shapes], None);
        assert!(report.conforms, "{}: {:#?}", traced.hospital, report.results);
    }

    // The researcher's lineage: the model and the cross-tab, each derived from the three hospitals' registers.
    assert_eq!(summary.derived, [3, 3]);

    // The same seed gives the same data and the same numbers.
    let again = demo::run(&options).await.expect("the demo succeeds again");
    assert_eq!(again.glm["coefficients"], summary.glm["coefficients"]);
    assert_eq!(again.glm["standardErrors"], summary.glm["standardErrors"]);
    assert_eq!(again.crosstab["cells"], summary.crosstab["cells"]);
    assert_eq!(again.transfer.sha256, summary.transfer.sha256);
}
