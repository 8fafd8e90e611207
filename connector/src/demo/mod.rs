//! `hanse demo`: a whole health-data federation from one command. Three hospitals, a federation issuer, a research
//! institute and a broker start on loopback in this process; then the journey runs over real HTTP, through the same
//! management calls and command functions an operator or researcher uses, and is narrated step by step:
//!
//! 0. the issuer gives every participant a membership credential; each hospital ingests its synthetic cohort and
//!    offers it (HealthDCAT-AP description, Gaia-X self-description);
//! 1. the broker crawls the federation, the researcher searches and finds the three registers;
//! 2. the researcher negotiates: one hospital agrees at once, one after its operator approves, one refuses a purpose
//!    its policy does not permit (the reason comes from the policy trace) and agrees to a permitted one;
//! 3. an open summary dataset is transferred, with a progress bar and a digest check;
//! 4. a federated logistic regression and a disclosure-controlled cross-tab run across the three hospitals;
//! 5. an auditor verifies each hospital's log offline, with the receipts both sides hold.
//!
//! Any failed step ends the demo with an error naming the step. The same seed gives the same data and numbers.

pub mod federation;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::broker::commands as broker;
use crate::catalog::commands::render_decision;
use crate::client::text;
use crate::compute::{commands as compute, synth};
use crate::negotiation::commands::{self as negotiation, NegotiateRequest};
pub use federation::{Federation, HOSPITALS, Node};

/// The seed of the synthetic cohorts unless `--seed` says otherwise.
pub const DEFAULT_SEED: u64 = 42;
/// The registers' id at every hospital.
pub const REGISTER: &str = "diabetes-register";
/// The first hospital's open summary.
pub const SUMMARY: &str = "diabetes-summary";
/// The purpose the researcher declares: disease-specific research (type 2 diabetes).
pub const RESEARCH: &str = "DUO:0000007";
/// The purpose the third hospital refuses.
pub const COMMERCIAL: &str = "dpv:CommercialResearch";
/// The model fitted across the hospitals.
pub const COVARIATES: [&str; 5] = ["age", "sex", "hba1c", "smoker", "ckd"];
/// The companion cross-tab.
pub const CROSSTAB: [&str; 3] = ["diagnosis", "smoker", "ckd"];
/// The smallest count released.
pub const MIN_CELL_COUNT: u64 = 5;

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    /// Leave the federation up until Ctrl-C.
    pub keep_running: bool,
    /// Draw progress bars (a terminal is watching).
    pub progress: bool,
}

/// What the demo showed, for its last screen and for tests.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub seed: u64,
    /// `(dataset, participant)` of each search hit.
    pub found: Vec<(String, String)>,
    pub agreements: Vec<Agreement>,
    pub refusal: Refusal,
    pub transfer: Transfer,
    pub glm: Json,
    pub crosstab: Json,
    pub audits: Vec<Audit>,
    pub lineage: Vec<Lineage>,
    /// The researcher's lineage: for each combined result, how many hospitals' registers it was derived from.
    pub derived: Vec<u64>,
    pub seconds: f64,
}

/// What a hospital's lineage says of its register, asked by SPARQL.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lineage {
    pub hospital: String,
    /// The agreements under which jobs used the register.
    pub agreements: Vec<String>,
    /// Compute jobs that used the register.
    pub jobs: u64,
    /// Results released from those jobs.
    pub results: u64,
    /// The hospital's whole lineage graph (N-Triples), for an auditor's own checks.
    pub graph: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Agreement {
    pub hospital: String,
    pub dataset: String,
    pub agreement_id: String,
    /// `automatic`, `approved by the operator` or `after a refused purpose`.
    pub how: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    pub hospital: String,
    pub purpose: String,
    /// What the researcher's connector was told.
    pub reason: String,
    /// The hospital's policy decision, as its trace says it.
    pub decision: Json,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    pub bytes: u64,
    /// Checked against the provider's announced digest and the file it published.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Audit {
    pub hospital: String,
    pub entries: u64,
    pub root: String,
    /// Receipts the researcher holds from the hospital, checked against the hospital's log.
    pub receipts_from_hospital: usize,
    /// Receipts the hospital holds from the researcher, checked against the researcher's log.
    pub receipts_from_researcher: usize,
}

/// Runs the demo; any failed step is an error naming the step.
pub async fn run(options: &Options) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("hanse-demo-").tempdir().context("creating a temporary folder")?;
    println!("Hanse demo: a health-data federation on this machine (seed {})", options.seed);
    println!("  folder {}", dir.path().display());
    let federation = step("set-up", "start the federation", Federation::start(dir.path())).await?;
    for node in federation.nodes() {
        println!("    {:<34} {:<10} {}", node.name, node.role, node.did);
    }
    let outcome = journey(&federation, dir.path(), options).await.map(|mut summary| {
        summary.seconds = started.elapsed().as_secs_f64();
        print_summary(&summary);
        summary
    });
    if options.keep_running && outcome.is_ok() {
        listeners(&federation);
        println!("\nRunning; press Ctrl-C to stop.");
        let _ = tokio::signal::ctrl_c().await;
    }
    federation.shutdown().await;
    outcome
}

/// Runs one numbered step with its timing; its error names the step.
async fn step<T>(label: &str, title: &str, work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    println!("\n[{label}] {title}");
    let started = Instant::now();
    let out = work.await.with_context(|| format!("step {label} ({title}) failed"))?;
    println!("    done in {} ms", started.elapsed().as_millis());
    Ok(out)
}

async fn journey(federation: &Federation, dir: &Path, options: &Options) -> anyhow::Result<Summary> {
    step("set-up", "membership credentials and the hospitals' datasets", set_up(federation, dir, options.seed)).await?;
    let found = step("1", "the broker crawls; the researcher searches \"diabetes adults\"", search(federation)).await?;
    let (agreements, refusal) =
        step("2", "the researcher negotiates with each hospital", negotiate(federation)).await?;
    let (summary_agreement, transfer) =
        step("3", "transfer of the open summary dataset", transfer(federation, dir, options)).await?;
    let sites: Vec<&str> = agreements.iter().map(|a| a.agreement_id.as_str()).collect();
    let (glm, crosstab) =
        step("4", "federated analysis across the three hospitals", analyse(federation, &sites, options)).await?;
    let audits = step("5", "the auditor verifies every hospital's log offline", audit(federation, &agreements)).await?;
    let (lineage, derived) =
        step("6", "each hospital traces who used its register (PROV-O lineage)", lineage(federation)).await?;
    let mut all = agreements;
    all.push(summary_agreement);
    Ok(Summary {
        seed: options.seed,
        found,
        agreements: all,
        refusal,
        transfer,
        glm,
        crosstab,
        audits,
        lineage,
        derived,
        seconds: 0.0,
    })
}

// ---- step 0: credentials and datasets ----

async fn set_up(federation: &Federation, dir: &Path, seed: u64) -> anyhow::Result<()> {
    let issuer = &federation.issuer;
    for node in federation.nodes().into_iter().skip(1) {
        let issued = issuer
            .api
            .expect(issuer.api.request(Method::POST, "/management/v3/credentials/issue").json(&json!({
                "type": "MembershipCredential", "subject": node.did,
                "claims": {"membership": "active", "federation": "Hanse health data federation"}})))
            .await?;
        let jwt = issued["credential"].as_str().context("the issuer answered no credential")?;
        node.api
            .expect(node.api.request(Method::POST, "/management/v3/credentials").json(&json!({"credential": jwt})))
            .await?;
    }
    println!("    the issuer signed a MembershipCredential for each of {} participants", federation.nodes().len() - 1);
    for (index, (hospital, node)) in HOSPITALS.iter().zip(&federation.hospitals).enumerate() {
        let csv = dir.join(format!("{}-cohort.csv", hospital.slug));
        let schema = compute::synth(hospital.rows, index as u32, seed, &csv)?;
        let properties = json!({
            "title": format!("Type 2 diabetes register, {}", hospital.locality),
            "description": format!("Adults treated for diabetes at {}: demographics, HbA1c, comorbidities and \
                                    30-day readmission (synthetic)", hospital.name),
            "keyword": ["diabetes", "adults", "readmission"],
            "theme": "http://publications.europa.eu/resource/authority/data-theme/HEAL",
            "healthCategory": "http://purl.bioontology.org/ontology/ICD10/E11",
        });
        let url = node.management_url();
        let stored = compute::ingest(&url, &node.api_key, REGISTER, &csv, &schema, properties).await?;
        create_policy(node, "members", members_policy()).await?;
        create_policy(node, "register-terms", register_terms(hospital.permitted_purpose)).await?;
        create_offer(node, "register-offer", "register-terms", REGISTER, hospital.manual_approval).await?;
        let approval = if hospital.manual_approval { ", every turn approved by its operator" } else { "" };
        println!(
            "    {}: {} patients as `{REGISTER}` for compute-to-data, research purposes ({}){approval}",
            hospital.name, stored["numberOfRecords"], hospital.permitted_purpose
        );
    }
    // The first hospital also publishes open, non-personal summary statistics as a file.
    let node = &federation.hospitals[0];
    let root = node.config.file_root();
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let summary = summary_csv(HOSPITALS[0].rows, seed);
    std::fs::write(root.join("diabetes-summary.csv"), &summary)?;
    let asset = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@id": SUMMARY,
        "properties": {"title": "Diabetes register summary statistics, Hamburg",
                       "description": "Patients, mean age, mean HbA1c and readmission rate per principal diagnosis; \
                                       groups under five patients are left out",
                       "keyword": ["diabetes", "statistics", "open data"], "contenttype": "text/csv",
                       "theme": "http://publications.europa.eu/resource/authority/data-theme/HEAL"},
        "dataAddress": {"type": "File", "path": "diabetes-summary.csv"}});
    node.api.expect(node.api.request(Method::POST, "/management/v3/assets").json(&asset)).await?;
    create_policy(
        node,
        "open-use",
        json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
                                           "permission": [{"action": "use"}]}),
    )
    .await?;
    create_offer(node, "summary-offer", "open-use", SUMMARY, false).await?;
    println!("    {}: open summary `{SUMMARY}` ({} bytes of CSV)", node.name, summary.len());
    Ok(())
}

/// Visible to members of the federation (a valid membership credential from the trusted issuer).
fn members_policy() -> Json {
    json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [{"action": "use",
           "constraint": [{"leftOperand": "membership", "operator": "eq", "rightOperand": "active"}]}]})
}

/// Compute-to-data only, for `purpose` (or narrower), releasing no cell under five, with these templates.
fn register_terms(purpose: &str) -> Json {
    json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
           "permission": [{"action": "hanse:compute", "constraint": {"and": [
               {"leftOperand": "purpose", "operator": "isA", "rightOperand": purpose},
               {"leftOperand": "hanse:minCellCount", "operator": "gteq", "rightOperand": MIN_CELL_COUNT},
               {"leftOperand": "hanse:jobTemplate", "operator": "isAnyOf", "rightOperand": ["glm", "crosstab", "aggregate"]}]}}],
           "prohibition": [{"action": "distribute"}]})
}

async fn create_policy(node: &Node, id: &str, policy: Json) -> anyhow::Result<()> {
    let (report, shown) = crate::catalog::commands::policy_create(&node.api, id, policy).await?;
    if report["isValid"] != true {
        bail!("{}: policy {id}: {shown}", node.name);
    }
    Ok(())
}

async fn create_offer(node: &Node, id: &str, terms: &str, dataset: &str, manual: bool) -> anyhow::Result<()> {
    let offer = crate::catalog::commands::OfferSpec {
        id: id.into(),
        access_policy: "members".into(),
        contract_policy: terms.into(),
        datasets: vec![dataset.into()],
        manual_approval: manual,
        manual_start: false,
    };
    crate::catalog::commands::offer_create(&node.api, &offer).await.map(|_| ())
}

/// Per principal diagnosis: patients, mean age, mean HbA1c and the readmission rate; groups under five left out.
pub fn summary_csv(rows: usize, seed: u64) -> String {
    let table = synth::cohort(rows, 0, seed);
    let column = |name: &str| table.schema.columns.iter().position(|c| c.name == name).expect("a cohort column");
    let (diagnosis, age, hba1c, readmitted) =
        (column("diagnosis"), column("age"), column("hba1c"), column("readmitted"));
    let mut out = String::from("diagnosis,patients,mean_age,mean_hba1c,readmission_rate\n");
    for (level, code) in synth::DIAGNOSES.iter().enumerate() {
        let members: Vec<usize> = (0..table.rows).filter(|&r| table.values[diagnosis][r] as usize == level).collect();
        if members.len() < MIN_CELL_COUNT as usize {
            continue;
        }
        let mean = |c: usize| members.iter().map(|&r| table.values[c][r]).sum::<f64>() / members.len() as f64;
        out.push_str(&format!(
            "{code},{},{:.1},{:.2},{:.3}\n",
            members.len(),
            mean(age),
            mean(hba1c),
            mean(readmitted)
        ));
    }
    out
}

// ---- step 1: discovery ----

async fn search(federation: &Federation) -> anyhow::Result<Vec<(String, String)>> {
    let broker_node = &federation.broker;
    for hospital in &federation.hospitals {
        let (peer, _) = broker::peers_add(&broker_node.api, &hospital.did).await?;
        if peer["status"] != "live" {
            bail!("the broker cannot reach {}: {}", hospital.name, text(&peer["detail"]));
        }
    }
    let (_, crawl) = broker::broker_crawl(&broker_node.api).await?;
    indent(&crawl);
    let request = json!({"q": "diabetes adults", "limit": 20});
    let (answer, shown) = broker::search(&federation.researcher.api, Some(&broker_node.public_url()), &request).await?;
    indent(&shown);
    let found: Vec<(String, String)> = answer["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|hit| (text(&hit["datasetId"]), text(&hit["participantId"])))
        .collect();
    let hospitals: std::collections::BTreeSet<&str> = found.iter().map(|(_, p)| p.as_str()).collect();
    if hospitals.len() != federation.hospitals.len() {
        bail!("the search found datasets of {} hospitals, not {}", hospitals.len(), federation.hospitals.len());
    }
    Ok(found)
}

// ---- step 2: negotiation ----

async fn negotiate(federation: &Federation) -> anyhow::Result<(Vec<Agreement>, Refusal)> {
    let researcher = &federation.researcher;
    let ask = |hospital: &Node, purpose: &str, wait: u64| NegotiateRequest {
        peer: hospital.public_url(),
        offer: REGISTER.into(),
        purpose: Some(purpose.into()),
        wait: Duration::from_secs(wait),
    };
    let mut agreements = Vec::new();

    // Hospital 1 agrees at once.
    let first = &federation.hospitals[0];
    let agreed = negotiation::negotiate(&researcher.api, &ask(first, RESEARCH, 30)).await?;
    agreements.push(agreement(first, &agreed, "automatic")?);

    // Hospital 2: its operator approves each of its turns.
    let second = &federation.hospitals[1];
    let waiting = negotiation::negotiate(&researcher.api, &ask(second, RESEARCH, 0)).await?;
    let id = text(&waiting["@id"]);
    println!("    {} holds the request for its operator", second.name);
    let agreed = approve_until_finalized(second, researcher, &id).await?;
    agreements.push(agreement(second, &agreed, "approved by the operator")?);

    // Hospital 3 permits disease-specific research only.
    let third = &federation.hospitals[2];
    println!("    asking {} for {COMMERCIAL} ...", third.name);
    let refused = negotiation::negotiate(&researcher.api, &ask(third, COMMERCIAL, 30)).await?;
    if refused["state"] != "TERMINATED" {
        bail!("{} did not refuse {COMMERCIAL}: the negotiation is {}", third.name, text(&refused["state"]));
    }
    println!("    refused; the researcher's connector was told: {}", text(&refused["errorDetail"]));
    let decision = provider_decision(third, &refused).await?;
    println!("    {}'s policy trace:", third.name);
    indent(&render_decision(&decision));
    let refusal = Refusal {
        hospital: third.name.clone(),
        purpose: COMMERCIAL.into(),
        reason: text(&refused["errorDetail"]),
        decision,
    };
    println!("    retrying with {RESEARCH} (disease-specific research) ...");
    let agreed = negotiation::negotiate(&researcher.api, &ask(third, RESEARCH, 30)).await?;
    agreements.push(agreement(third, &agreed, "after a refused purpose")?);
    Ok((agreements, refusal))
}

/// The agreement of a finalized negotiation, narrated; an error when it did not finalize.
fn agreement(hospital: &Node, negotiation: &Json, how: &str) -> anyhow::Result<Agreement> {
    if negotiation["state"] != "FINALIZED" {
        bail!(
            "the negotiation with {} ended {}: {}",
            hospital.name,
            text(&negotiation["state"]),
            negotiation::describe(negotiation)
        );
    }
    println!("    {} ({how}): {}", hospital.name, negotiation::describe(negotiation).replace('\n', "\n    "));
    Ok(Agreement {
        hospital: hospital.name.clone(),
        dataset: text(&negotiation["assetId"]),
        agreement_id: text(&negotiation["contractAgreementId"]),
        how: how.into(),
    })
}

/// As `hospital`'s operator: approves whatever of `researcher`'s waits, until the researcher's negotiation `id` ends.
async fn approve_until_finalized(hospital: &Node, researcher: &Node, id: &str) -> anyhow::Result<Json> {
    until(&format!("negotiation {id} to finalize"), async || {
        let state = negotiation::follow(&researcher.api, id, Duration::ZERO).await?;
        match state["state"].as_str() {
            Some("FINALIZED") => return Ok(Some(state)),
            Some("TERMINATED") => {
                bail!("{} terminated the negotiation: {}", hospital.name, text(&state["errorDetail"]))
            }
            _ => {}
        }
        let (waiting, _) = negotiation::approvals_list(&hospital.api).await?;
        for item in waiting.as_array().into_iter().flatten() {
            if item["counterPartyId"] == researcher.did.as_str() {
                let (_, done) = negotiation::approve(&hospital.api, &text(&item["@id"])).await?;
                println!("    operator of {}: hanse approvals approve → {done}", hospital.name);
            }
        }
        Ok(None)
    })
    .await
}

/// The decision trace `hospital` kept with its side (`correlationId`) of the researcher's refused negotiation.
async fn provider_decision(hospital: &Node, refused: &Json) -> anyhow::Result<Json> {
    let path = format!(
        "/management/v3/contractnegotiations/{}",
        hanse_core::encode::percent(&text(&refused["correlationId"]))
    );
    let negotiation = hospital.api.expect(hospital.api.request(Method::GET, &path)).await?;
    negotiation.get("decision").cloned().with_context(|| format!("{} kept no decision for its refusal", hospital.name))
}

/// Asks `probe` every 50 ms until it answers something, for at most 30 s.
async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> anyhow::Result<Option<T>>) -> anyhow::Result<T> {
    const PATIENCE: Duration = Duration::from_secs(30);
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe().await? {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!("waited {} s for {what}", PATIENCE.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- step 3: transfer ----

async fn transfer(federation: &Federation, dir: &Path, options: &Options) -> anyhow::Result<(Agreement, Transfer)> {
    let (researcher, hospital) = (&federation.researcher, &federation.hospitals[0]);
    let request = NegotiateRequest {
        peer: hospital.public_url(),
        offer: SUMMARY.into(),
        purpose: None,
        wait: Duration::from_secs(30),
    };
    let agreed = negotiation::negotiate(&researcher.api, &request).await?;
    let agreement = agreement(hospital, &agreed, "automatic")?;
    let out = dir.join("downloads").join("diabetes-summary.csv");
    std::fs::create_dir_all(out.parent().expect("a folder"))?;
    let report = crate::fetch::fetch(&crate::fetch::FetchOptions {
        management_url: researcher.management_url(),
        api_key: researcher.api_key.clone(),
        agreement: agreement.agreement_id.clone(),
        out: out.clone(),
        start_timeout: Duration::from_secs(30),
        progress: options.progress,
    })
    .await?;
    let source = std::fs::read(hospital.config.file_root().join("diabetes-summary.csv"))?;
    if crate::process::hex(&openssl::sha::sha256(&source)) != report.sha256 {
        bail!("the download's SHA-256 {} differs from the published file's", report.sha256);
    }
    println!(
        "    {} bytes fetched, SHA-256 {} checked against the hospital's digest and its file",
        report.bytes, report.sha256
    );
    for line in std::fs::read_to_string(&out)?.lines() {
        println!("      {line}");
    }
    Ok((agreement, Transfer { bytes: report.bytes, sha256: report.sha256 }))
}

// ---- step 4: federated analysis ----

async fn analyse(federation: &Federation, agreements: &[&str], options: &Options) -> anyhow::Result<(Json, Json)> {
    let researcher = &federation.researcher;
    let sites: Vec<Json> = agreements.iter().map(|a| json!({"agreementId": a})).collect();
    let request = json!({"template": "glm", "sites": sites,
        "parameters": {"family": "logistic", "outcome": "readmitted", "covariates": COVARIATES}});
    let glm = compute::run_job(&researcher.management_url(), &researcher.api_key, &request, options.progress).await?;
    println!("    logistic regression of 30-day readmission, fitted where the data lives:");
    indent(&named_sites(federation, &compute::render(&glm["result"])));
    let request = json!({"template": "crosstab", "sites": sites, "minCellCount": MIN_CELL_COUNT,
                         "parameters": {"columns": CROSSTAB}});
    let crosstab =
        compute::run_job(&researcher.management_url(), &researcher.api_key, &request, options.progress).await?;
    println!("    companion cross-tab {} (k = {MIN_CELL_COUNT}), suppressed cells per hospital:", CROSSTAB.join(" × "));
    for (site, hospital) in crosstab["result"]["sites"].as_array().into_iter().flatten().zip(&federation.hospitals) {
        let suppressed: Vec<String> = site["cells"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|cell| cell["n"].is_null())
            .map(|cell| {
                cell["group"].as_object().map_or_else(String::new, |g| {
                    g.iter().map(|(k, v)| format!("{k}={}", text(v))).collect::<Vec<_>>().join(" ")
                })
            })
            .collect();
        let listed = if suppressed.is_empty() { "none".to_owned() } else { suppressed.join("; ") };
        println!("      {:<32} n = {:<6} suppressed: {listed}", hospital.name, text(&site["n"]));
    }
    Ok((glm["result"].clone(), crosstab["result"].clone()))
}

/// A rendered result with each site's DID replaced by its hospital's name.
fn named_sites(federation: &Federation, rendered: &str) -> String {
    federation.hospitals.iter().fold(rendered.to_owned(), |out, node| out.replace(&node.did, &node.name))
}

// ---- step 5: audit ----

async fn audit(federation: &Federation, agreements: &[Agreement]) -> anyhow::Result<Vec<Audit>> {
    let researcher = &federation.researcher;
    let researcher_log = export(researcher).await?;
    let mut audits = Vec::new();
    for (hospital, agreement) in federation.hospitals.iter().zip(agreements) {
        let from_hospital = receipts(researcher, &hospital.did, &agreement.agreement_id).await?;
        let from_researcher = receipts(hospital, &researcher.did, &agreement.agreement_id).await?;
        let log = export(hospital).await?;
        let verdict = crate::audit::verify::verify(&log, &[], &from_hospital)
            .map_err(|fault| anyhow::anyhow!("{}'s log does not verify: {fault}", hospital.name))?;
        crate::audit::verify::verify(&researcher_log, &[], &from_researcher)
            .map_err(|fault| anyhow::anyhow!("the researcher's log does not verify: {fault}"))?;
        let root = crate::audit::merkle::to_hex(&verdict.root);
        println!(
            "    {}: {} entries, every signature and the root {}… hold; the researcher's {} receipt(s) from it and \
             its {} receipt(s) from the researcher are in the logs",
            hospital.name,
            verdict.to - verdict.from,
            &root[..16],
            from_hospital.len(),
            from_researcher.len()
        );
        audits.push(Audit {
            hospital: hospital.name.clone(),
            entries: verdict.to - verdict.from,
            root,
            receipts_from_hospital: from_hospital.len(),
            receipts_from_researcher: from_researcher.len(),
        });
    }
    Ok(audits)
}

// ---- step 6: lineage ----

/// Jobs that used the register, under which agreement, and the results released from them.
const REGISTER_USES: &str = "SELECT ?id (COUNT(DISTINCT ?job) AS ?jobs) (COUNT(DISTINCT ?result) AS ?results) WHERE { \
    ?job a hanse:ComputeJob ; prov:used/prov:specializationOf ?register ; \
         prov:qualifiedAssociation/prov:hadPlan ?agreement . ?agreement dct:identifier ?id . \
    OPTIONAL { ?result a hanse:ReleasedResult ; prov:wasGeneratedBy ?job } \
    FILTER(?register = <REGISTER>) } GROUP BY ?id ORDER BY ?id";

/// The researcher's combined results and the datasets each was derived from.
const DERIVED: &str = "SELECT ?result (COUNT(DISTINCT ?source) AS ?sources) WHERE { \
    ?result a hanse:CombinedResult ; prov:wasDerivedFrom ?source } GROUP BY ?result ORDER BY ?result";

async fn lineage(federation: &Federation) -> anyhow::Result<(Vec<Lineage>, Vec<u64>)> {
    let mut traced = Vec::new();
    for hospital in &federation.hospitals {
        let query = REGISTER_USES.replace("REGISTER", &crate::catalog::rdf::dataset_iri(REGISTER));
        let request =
            hospital.api.request(Method::POST, "/management/v3/lineage/sparql").json(&json!({"query": query}));
        let answer = hospital.api.expect(request).await?;
        let rows = answer["results"]["bindings"].as_array().cloned().unwrap_or_default();
        let number =
            |row: &Json, name: &str| row[name]["value"].as_str().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let agreements: Vec<String> =
            rows.iter().filter_map(|row| row["id"]["value"].as_str()).map(str::to_owned).collect();
        let jobs = rows.iter().map(|row| number(row, "jobs")).sum();
        let results = rows.iter().map(|row| number(row, "results")).sum();
        let request = hospital
            .api
            .request(Method::POST, "/management/v3/lineage/sparql")
            .header("Accept", "application/n-triples")
            .header("Content-Type", "application/sparql-query")
            .body("CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o }");
        let response = request.send().await?;
        if !response.status().is_success() {
            bail!("{} did not answer its lineage: HTTP {}", hospital.name, response.status());
        }
        let graph = response.text().await?;
        println!(
            "    {}: the register was used by {jobs} job(s) under agreement(s) {}; {results} result(s) released \
             ({} triples of lineage)",
            hospital.name,
            agreements.join(", "),
            graph.lines().count()
        );
        traced.push(Lineage { hospital: hospital.name.clone(), agreements, jobs, results, graph });
    }
    let researcher = &federation.researcher;
    let request =
        researcher.api.request(Method::POST, "/management/v3/lineage/sparql").json(&json!({"query": DERIVED}));
    let answer = researcher.api.expect(request).await?;
    let derived: Vec<u64> = answer["results"]["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row["sources"]["value"].as_str()?.parse().ok())
        .collect();
    println!(
        "    the researcher: {} combined result(s), derived from {} register(s)",
        derived.len(),
        derived.iter().map(u64::to_string).collect::<Vec<_>>().join(" and ")
    );
    Ok((traced, derived))
}

/// `node`'s log as an auditor downloads it.
async fn export(node: &Node) -> anyhow::Result<String> {
    let response = node.api.request(Method::GET, "/management/v3/audit/export").send().await?;
    if !response.status().is_success() {
        bail!("{} did not export its log: HTTP {}", node.name, response.status());
    }
    Ok(response.text().await?)
}

/// The receipts `holder` keeps from `issuer` for `agreement`, once they arrived.
async fn receipts(holder: &Node, issuer: &str, agreement: &str) -> anyhow::Result<Vec<crate::audit::verify::Receipt>> {
    let path = format!("/management/v3/audit/receipts?agreement={}", hanse_core::encode::percent(agreement));
    until(&format!("{}'s receipt from {issuer} for agreement {agreement}", holder.name), async || {
        let kept = holder.api.expect(holder.api.request(Method::GET, &path)).await?;
        let found: Vec<crate::audit::verify::Receipt> = kept
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["issuer"] == issuer)
            .map(|r| serde_json::from_value(r["receipt"].clone()))
            .collect::<Result<_, _>>()?;
        Ok((!found.is_empty()).then_some(found))
    })
    .await
}

// ---- output ----

fn indent(text: &str) {
    for line in text.lines() {
        println!("    {line}");
    }
}

fn listeners(federation: &Federation) {
    println!("\nThe federation stays up. Explore it in each connector's console, with curl or the CLI, e.g.");
    println!("  hanse approvals list --management-url URL --api-key KEY");
    for node in federation.nodes() {
        println!("\n  {} ({})", node.name, node.role);
        println!("    DID         {}", node.did);
        println!("    public      {}  (DSP: {}/protocol/2025-1)", node.public_url(), node.public_url());
        println!("    management  {}  (X-Api-Key: {})", node.management_url(), node.api_key);
        println!("    console     {}/console  (sign in with the X-Api-Key)", node.management_url());
    }
}

fn print_summary(summary: &Summary) {
    println!("\n──────────────────────────────── Summary ────────────────────────────────");
    println!("seed {}; {:.1} s in all", summary.seed, summary.seconds);
    println!("found       {} datasets for \"diabetes adults\" through the broker", summary.found.len());
    for agreement in &summary.agreements {
        println!("agreed      {} / {} ({})", agreement.hospital, agreement.dataset, agreement.how);
    }
    println!("refused     {} for {}: {}", summary.refusal.hospital, summary.refusal.purpose, summary.refusal.reason);
    println!("transferred {} bytes, SHA-256 {}…, checked", summary.transfer.bytes, &summary.transfer.sha256[..16]);
    let glm = &summary.glm;
    let terms: Vec<String> = glm["terms"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, term)| {
            format!(
                "{} {:+.3} ({:.3})",
                text(term),
                glm["coefficients"][i].as_f64().unwrap_or(f64::NAN),
                glm["standardErrors"][i].as_f64().unwrap_or(f64::NAN)
            )
        })
        .collect();
    println!("glm         n = {}, {} rounds: {}", glm["n"], glm["rounds"], terms.join(", "));
    let suppressed: usize = summary.crosstab["sites"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|site| site["cells"].as_array().map_or(0, |cells| cells.iter().filter(|c| c["n"].is_null()).count()))
        .sum();
    println!("crosstab    {suppressed} cells suppressed below k = {MIN_CELL_COUNT}");
    for audit in &summary.audits {
        println!(
            "audited     {}: {} entries verified, {} + {} receipts",
            audit.hospital, audit.entries, audit.receipts_from_hospital, audit.receipts_from_researcher
        );
    }
    for traced in &summary.lineage {
        println!(
            "lineage     {}: the register used by {} job(s) under {} agreement(s), {} result(s) released",
            traced.hospital,
            traced.jobs,
            traced.agreements.len(),
            traced.results
        );
    }
}
