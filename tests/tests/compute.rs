//! Compute-to-data across three hospitals and one research institute (SQLite and PostgreSQL mixed), over real HTTP:
//! tables ingested through the management API, agreements negotiated for `compute`, jobs signed and run where the
//! data lives, disclosure control, refusals with reasons, and a federated GLM equal to the pooled fit.

use hanse::compute::commands;
use hanse_tests::*;
use serde_json::{Value, json};

/// Rows per hospital: different sizes, like real sites.
const ROWS: [usize; 3] = [4000, 3000, 2500];
const SEED: u64 = 2026;
const COVARIATES: [&str; 5] = ["age", "sex", "hba1c", "smoker", "ckd"];

/// Compute terms: research purpose, k ≥ 5, the given templates, and more constraints.
fn compute_terms(templates: &[&str], more: Value) -> Value {
    let mut constraints = vec![
        json!({"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"}),
        json!({"leftOperand": "hanse:minCellCount", "operator": "gteq", "rightOperand": 5}),
        json!({"leftOperand": "hanse:jobTemplate", "operator": "isAnyOf", "rightOperand": templates}),
    ];
    constraints.extend(more.as_array().cloned().unwrap_or_default());
    json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
           "permission": [{"action": "hanse:compute", "constraint": {"and": constraints}}]})
}

/// Hospital `site` ingests a synthetic cohort as `dataset` and offers it under `terms`.
async fn publish(federation: &Federation, site: usize, dataset: &str, rows: usize, cohort: u32, terms: Value) {
    let connector = &federation.connectors[site];
    let csv = connector.dir().join(format!("{dataset}.csv"));
    let schema = commands::synth(rows, cohort, SEED, &csv).unwrap();
    let properties = json!({"title": format!("Diabetes register {dataset}"), "keyword": ["diabetes", "adults"]});
    let key = &connector.config.management.api_key;
    let stored = commands::ingest(&connector.management_url(), key, dataset, &csv, &schema, properties).await.unwrap();
    assert_eq!(stored["numberOfRecords"], rows);
    offer_stored(&federation.management(site), dataset, terms, json!({})).await;
}

/// The research institute (the last connector) negotiates `dataset` with hospital `site`; answers the agreement.
async fn agree(federation: &Federation, site: usize, dataset: &str) -> String {
    let consumer = federation.management(federation.connectors.len() - 1);
    let offer = catalogue_offer(&consumer, &federation.connectors[site], dataset).await;
    let id = negotiate(&consumer, &federation.connectors[site], offer, json!({"purpose": RESEARCH})).await;
    wait_for_negotiation(&consumer, &id, "FINALIZED").await["contractAgreementId"].as_str().unwrap().to_owned()
}

/// Runs a job on the research institute's connector and waits for its end; answers the job.
async fn run(federation: &Federation, template: &str, parameters: Value, agreements: &[&str], extra: Value) -> Value {
    let consumer = federation.management(federation.connectors.len() - 1);
    let sites: Vec<Value> = agreements.iter().map(|a| json!({"agreementId": a})).collect();
    let mut body = json!({"template": template, "parameters": parameters, "sites": sites});
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    let jobs = async || consumer.post("/management/v3/jobs/request", &json!({})).await.body.as_array().unwrap().len();
    let before = jobs().await;
    let key = format!("job-{}", uuid::Uuid::new_v4());
    let created = consumer.post_keyed("/management/v3/jobs", &key, &body).await;
    assert_eq!(created.status, 200, "{:#}", created.body);
    let id = created.body["@id"].as_str().unwrap().to_owned();
    // A retry with the same Idempotency-Key answers the same job and starts none.
    let again = consumer.post_keyed("/management/v3/jobs", &key, &body).await;
    assert_eq!((again.status, &again.body["@id"]), (200, &created.body["@id"]), "{:#}", again.body);
    assert_eq!(jobs().await, before + 1);
    let mut job = Value::Null;
    until(&format!("job {id} to end"), async || {
        job = consumer.get(&format!("/management/v3/jobs/{id}")).await.body;
        job["state"] != "RUNNING"
    })
    .await;
    job
}

fn everything() -> hanse::store::AuditFilter {
    hanse::store::AuditFilter { limit: i64::MAX, ..Default::default() }
}

fn numbers(value: &Value) -> Vec<f64> {
    value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

/// Asserts that a `glm` result (of the logistic model of `covariates`) is the pooled fit of the synthetic `cohorts`,
/// coefficient by coefficient and error by error, and answers the pooled terms and coefficients.
fn assert_pooled_fit(result: &Value, cohorts: &[(usize, u32)], covariates: &[&str]) -> (Vec<String>, Vec<f64>) {
    let (terms, beta, errors) = pooled_logistic_fit(cohorts, SEED, covariates);
    assert_eq!(result["terms"].as_array().map(Vec::len), Some(terms.len()), "{result:#}");
    let (fitted, fitted_errors) = (numbers(&result["coefficients"]), numbers(&result["standardErrors"]));
    for i in 0..terms.len() {
        assert!((fitted[i] - beta[i]).abs() < 1e-6, "{}: {} vs pooled {}", terms[i], fitted[i], beta[i]);
        assert!((fitted_errors[i] - errors[i]).abs() < 1e-6, "{}: se {} vs {}", terms[i], fitted_errors[i], errors[i]);
    }
    assert_eq!(result["n"], cohorts.iter().map(|(n, _)| n).sum::<usize>());
    (terms, beta)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_analyses_release_only_protected_results_and_the_glm_equals_the_pooled_fit() {
    let federation = Federation::with_hospitals(4).await;
    let all = ["aggregate", "crosstab", "glm", "fedavg"];
    for (site, rows) in ROWS.into_iter().enumerate() {
        publish(&federation, site, &format!("register-{site}"), rows, site as u32, compute_terms(&all, json!([])))
            .await;
    }
    // A small extra register at the first hospital: cells there are small.
    publish(&federation, 0, "register-small", 150, 3, compute_terms(&all, json!([]))).await;
    let mut agreements = Vec::new();
    for site in 0..3 {
        agreements.push(agree(&federation, site, &format!("register-{site}")).await);
    }
    let small = agree(&federation, 0, "register-small").await;
    let sites: Vec<&str> = agreements.iter().map(String::as_str).collect();

    // The derived description: rows and an age range in five-year bands, in the DSP catalogue.
    let consumer = federation.management(3);
    let offer_dataset = consumer
        .post(
            "/management/v3/catalog/request",
            &json!({"counterPartyAddress": format!("{}/protocol/2025-1", federation.connectors[1].public_url()),
                    "protocol": "dataspace-protocol-http:2025-1"}),
        )
        .await
        .body["dataset"]
        .clone();
    let text = offer_dataset.to_string();
    assert!(text.contains("Hanse-Compute") && !text.contains("HttpData-PULL"), "{text}");
    assert!(text.contains("\"numberOfRecords\":3000") || text.contains("3000"), "{text}");

    // GLM: the federated fit is the pooled fit, coefficient by coefficient and error by error.
    let parameters = json!({"family": "logistic", "outcome": "readmitted", "covariates": COVARIATES});
    let glm = run(&federation, "glm", parameters.clone(), &sites, json!({})).await;
    assert_eq!(glm["state"], "COMPLETED", "{glm:#}");
    let result = &glm["result"];
    let cohorts: Vec<(usize, u32)> = ROWS.iter().enumerate().map(|(site, &n)| (n, site as u32)).collect();
    let (terms, beta) = assert_pooled_fit(result, &cohorts, &COVARIATES);
    assert_eq!(result["terms"], json!(terms));
    assert!(result["converged"].as_bool().unwrap() && result["rounds"].as_u64().unwrap() < 12, "{result:#}");
    let per_site: Vec<u64> = result["sites"].as_array().unwrap().iter().map(|s| s["n"].as_u64().unwrap()).collect();
    assert_eq!(per_site, ROWS.map(|r| r as u64));

    // fedavg converges towards the GLM fit.
    let mut training = parameters.clone();
    training["localEpochs"] = json!(2);
    let fedavg = run(&federation, "fedavg", training.clone(), &sites, json!({"rounds": 30})).await;
    assert_eq!(fedavg["state"], "COMPLETED", "{fedavg:#}");
    let trace = fedavg["result"]["trace"].as_array().unwrap();
    let distance =
        |coefficients: &Value| numbers(coefficients).iter().zip(&beta).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let (first, last) = (distance(&trace[0]), distance(trace.last().unwrap()));
    println!("fedavg: max |coefficient - pooled| {first:.4} after 1 round, {last:.4} after {} rounds", trace.len());
    assert!(last < first && last < 0.15, "fedavg does not approach the pooled fit: {first} → {last}");

    // FedProx (fedavg with a proximal term, computed by each site) approaches the same fit, along another path.
    training["proximalMu"] = json!(0.5);
    let fedprox = run(&federation, "fedavg", training.clone(), &sites, json!({"rounds": 30})).await;
    assert_eq!(fedprox["state"], "COMPLETED", "{fedprox:#}");
    assert_eq!(fedprox["result"]["proximalMu"], 0.5);
    let path = fedprox["result"]["trace"].as_array().unwrap();
    let (first, last) = (distance(&path[0]), distance(path.last().unwrap()));
    println!("fedprox: max |coefficient - pooled| {first:.4} after 1 round, {last:.4} after {} rounds", path.len());
    assert!(last < first && last < 0.15, "fedprox does not approach the pooled fit: {first} → {last}");
    assert_ne!(path[0], trace[0], "the sites did not apply the proximal term");
    // A negative μ, or μ on an exact fit, is refused before any transfer starts.
    let consumer = federation.management(federation.connectors.len() - 1);
    let site = json!([{"agreementId": sites[0]}]);
    for (template, mu) in [("fedavg", -1.0), ("glm", 0.5)] {
        let mut parameters = parameters.clone();
        parameters["proximalMu"] = json!(mu);
        let body = json!({"template": template, "parameters": parameters, "sites": site});
        let refused = consumer.post("/management/v3/jobs", &body).await;
        assert_eq!(refused.status, 400, "{template}, μ = {mu}: {:#}", refused.body);
        assert!(refused.body.to_string().contains("proximalMu"), "{:#}", refused.body);
    }

    // An aggregate on the small register: small cells are suppressed with their reason, complements too, and the
    // consumer's combination keeps them suppressed.
    let aggregate = json!({"groupBy": ["diagnosis", "sex"], "metrics": [{"column": "hba1c", "statistics": ["count", "mean", "sd"]}]});
    let job = run(&federation, "aggregate", aggregate, &[&small, sites[1]], json!({})).await;
    assert_eq!(job["state"], "COMPLETED", "{job:#}");
    let released = &job["result"]["sites"][0];
    let cells = released["cells"].as_array().unwrap();
    assert!(cells.iter().all(|c| c["n"].as_u64().is_none_or(|n| n == 0 || n >= 5)), "{cells:#?}");
    let suppressed = released["suppressed"].as_array().unwrap();
    assert!(suppressed.iter().any(|s| s["reason"].as_str().unwrap().starts_with("0 < n < 5")), "{suppressed:#?}");
    let combined = job["result"]["cells"].as_array().unwrap();
    let hidden = combined.iter().filter(|c| c["n"].is_null()).count();
    assert!(hidden > 0 && combined.iter().filter(|c| c["n"].is_null()).all(|c| c["suppressedAt"] == json!(["site 1"])));
    for cell in cells.iter().filter(|c| c["n"].is_null()) {
        assert!(cell["metrics"]["hba1c"].is_null(), "a suppressed cell shows no metric: {cell}");
    }

    // A crosstab with margins: no line of the table (cells and its margin) has exactly one unknown.
    let job = run(&federation, "crosstab", json!({"columns": ["diagnosis", "smoker"]}), &[&small], json!({})).await;
    assert_eq!(job["state"], "COMPLETED", "{job:#}");
    let table = &job["result"]["sites"][0];
    let margins = &table["margins"];
    for (dimension, other) in [("diagnosis", "smoker"), ("smoker", "diagnosis")] {
        for margin in margins[dimension].as_array().unwrap() {
            let line: Vec<&Value> = table["cells"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["group"][dimension] == margin["level"])
                .collect();
            let unknown = line.iter().filter(|c| c["n"].is_null()).count() + usize::from(margin["n"].is_null());
            assert_ne!(unknown, 1, "{dimension} = {} has one unknown ({other} cells): {table:#}", margin["level"]);
        }
    }

    // Every job landed in both logs: admitted and released at the provider, dispatched and combined here.
    let provider_log = federation.connectors[1].running.state.store.audit.audit_entries(&everything()).await.unwrap();
    let kinds: Vec<&str> = provider_log.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"compute.job") && kinds.contains(&"compute.result"), "{kinds:?}");
    let consumer_log = federation.connectors[3].running.state.store.audit.audit_entries(&everything()).await.unwrap();
    let kinds: Vec<&str> = consumer_log.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"compute.dispatch") && kinds.contains(&"compute.combined"), "{kinds:?}");

    // The compute transfers ended COMPLETED on both sides.
    let transfers = consumer.post("/management/v3/transferprocesses/request", &json!({})).await.body;
    let transfers = transfers.as_array().unwrap();
    assert!(!transfers.is_empty() && transfers.iter().all(|t| t["state"] == "COMPLETED"), "{transfers:#?}");
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_the_agreement_does_not_permit_are_refused_with_the_reason() {
    let federation = Federation::with_hospitals(2).await;
    let read_only = json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
                           "permission": [{"action": "read"}]});
    publish(&federation, 0, "read-only", 200, 0, read_only).await;
    publish(&federation, 0, "aggregates", 200, 0, compute_terms(&["aggregate"], json!([]))).await;
    let budget = json!([{"leftOperand": "hanse:maxJobs", "operator": "lteq", "rightOperand": 2}]);
    publish(&federation, 0, "budgeted", 200, 0, compute_terms(&["aggregate"], budget)).await;
    let expiring = json!([{"leftOperand": "elapsedTime", "operator": "lteq", "rightOperand": "PT3S"}]);
    publish(&federation, 0, "expiring", 200, 0, compute_terms(&["aggregate"], expiring)).await;
    let expiring_agreement = agree(&federation, 0, "expiring").await;
    let agreed_at = std::time::Instant::now();
    let (read_only, aggregates, budgeted) = (
        agree(&federation, 0, "read-only").await,
        agree(&federation, 0, "aggregates").await,
        agree(&federation, 0, "budgeted").await,
    );
    let count = json!({"metrics": [{"column": "age", "statistics": ["count"]}]});
    let refused = |job: &Value, needle: &str| {
        assert_eq!(job["state"], "FAILED", "{job:#}");
        let error = job["error"].as_str().unwrap();
        assert!(error.contains(needle), "`{needle}` not in: {error}");
    };

    // No compute permission: the compute transfer itself is refused.
    refused(&run(&federation, "aggregate", count.clone(), &[&read_only], json!({})).await, "does not permit");
    // A template the agreement does not allow.
    let crosstab = run(&federation, "crosstab", json!({"columns": ["sex", "smoker"]}), &[&aggregates], json!({})).await;
    refused(&crosstab, "jobTemplate");
    // A k below the agreement's minimum.
    let small_k = run(&federation, "aggregate", count.clone(), &[&aggregates], json!({"minCellCount": 3})).await;
    assert_eq!(small_k["state"], "COMPLETED", "the provider's floor (5) applies, which satisfies k ≥ 5: {small_k:#}");
    assert_eq!(small_k["result"]["sites"][0]["n"], 200);
    // A statistic that would release one row, refused before any row is read.
    let max = run(
        &federation,
        "aggregate",
        json!({"metrics": [{"column": "age", "statistics": ["max"]}]}),
        &[&aggregates],
        json!({}),
    )
    .await;
    refused(&max, "single row");
    // The budget: two jobs, then no more.
    for _ in 0..2 {
        let job = run(&federation, "aggregate", count.clone(), &[&budgeted], json!({})).await;
        assert_eq!(job["state"], "COMPLETED", "{job:#}");
    }
    refused(&run(&federation, "aggregate", count.clone(), &[&budgeted], json!({})).await, "maxJobs");
    // After its time is up.
    tokio::time::sleep(
        std::time::Duration::from_secs(3).saturating_sub(agreed_at.elapsed()) + std::time::Duration::from_millis(300),
    )
    .await;
    refused(&run(&federation, "aggregate", count, &[&expiring_agreement], json!({})).await, "elapsedTime");

    // Refusals are audited with their policy trace; the refused transfers ended TERMINATED.
    let log = federation.connectors[0].running.state.store.audit.audit_entries(&everything()).await.unwrap();
    let denials = log.iter().filter(|e| e.kind == "policy.denial").count();
    assert!(denials >= 4, "{denials} denials logged");
    let consumer = federation.management(1);
    let transfers = consumer.post("/management/v3/transferprocesses/request", &json!({})).await.body;
    assert!(transfers.as_array().unwrap().iter().any(|t| t["state"] == "TERMINATED"), "{transfers:#}");
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_job_stops_taking_rounds_once_its_agreement_expires() {
    let federation = Federation::with_hospitals(2).await;
    let expiring = json!([{"leftOperand": "elapsedTime", "operator": "lteq", "rightOperand": "PT3S"}]);
    publish(&federation, 0, "model", 300, 0, compute_terms(&["glm"], expiring)).await;
    let agreement = agree(&federation, 0, "model").await;
    let agreed_at = std::time::Instant::now();
    let consumer = federation.management(1);
    let body = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@type": "TransferRequest",
                      "contractId": agreement, "transferType": "Hanse-Compute"});
    let created = consumer.post("/management/v3/transferprocesses", &body).await;
    assert_eq!(created.status, 200, "{:#}", created.body);
    let id = created.body["@id"].as_str().unwrap().to_owned();
    wait_for_transfer(&consumer, &id, "STARTED").await;
    let address = consumer.get(&format!("/management/v3/edrs/{id}/dataaddress")).await.body;
    let endpoint = address["endpoint"].as_str().unwrap().to_owned();
    let token = address["authorization"].as_str().unwrap().to_owned();
    let provider_transfer = endpoint.rsplit('/').next().unwrap().to_owned();

    // The consumer's connector signs each round, as its orchestrator does.
    let keys = federation.connectors[1].running.state.identity.keys();
    let signed = |round: u64, state: Value| {
        let now = chrono::Utc::now().timestamp();
        let claims = json!({"iss": federation.connectors[1].participant_id(), "aud": federation.connectors[0].participant_id(),
            "iat": now, "exp": now + 300, "job": "expiring-glm", "round": round, "transfer": provider_transfer,
            "agreement": agreement, "template": "glm", "state": state,
            "parameters": {"family": "logistic", "outcome": "readmitted", "covariates": ["age", "smoker"]}});
        keys.sign(hanse::compute::JOB_TYP, &[], &claims)
    };
    let post = |url: String, jwt: String| federation.client.post(url).bearer_auth(&token).body(jwt).send();
    let first = post(format!("{endpoint}/jobs"), signed(0, Value::Null)).await.unwrap();
    assert_eq!(first.status(), 200, "{}", first.text().await.unwrap());

    tokio::time::sleep(
        std::time::Duration::from_secs(3).saturating_sub(agreed_at.elapsed()) + std::time::Duration::from_millis(300),
    )
    .await;
    let late =
        post(format!("{endpoint}/jobs/expiring-glm/rounds"), signed(1, json!({"coefficients": [0.0, 0.0, 0.0]})))
            .await
            .unwrap();
    assert_eq!(late.status(), 403);
    assert!(late.text().await.unwrap().contains("elapsedTime"));
    wait_for_transfer(&consumer, &id, "TERMINATED").await;
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_negotiation_a_transfer_and_a_job_show_every_family_with_its_values() {
    let federation = Federation::with_hospitals(2).await;
    // A job: one negotiation for compute, a compute session, one aggregate.
    publish(&federation, 0, "metered", 300, 0, compute_terms(&["aggregate"], json!([]))).await;
    let compute_agreement = agree(&federation, 0, "metered").await;
    let count = json!({"metrics": [{"column": "age", "statistics": ["count"]}]});
    let job = run(&federation, "aggregate", count, &[&compute_agreement], json!({})).await;
    assert_eq!(job["state"], "COMPLETED", "{job:#}");
    // A pull: a second negotiation and a transfer whose 100 000 bytes the provider's data plane serves.
    let data = vec![7u8; 100_000];
    let source = file_source(&federation.connectors[0], "metered.bin", &data);
    let agreement = agreed(&federation, "metered-file", source, research_terms(), false).await;
    let consumer = federation.management(1);
    let transfer = start_transfer(&consumer, &agreement, json!({})).await;
    wait_for_transfer(&consumer, &transfer, "STARTED").await;
    let body = pull(&federation.client, &edr(&consumer, &transfer).await).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(body.len(), data.len());

    let provider = federation.management(0);
    // The scrape key opens /metrics and nothing else; the operator's key does not open /metrics.
    let with_operator_key =
        provider.client.get(format!("{}/metrics", provider.base)).header("X-Api-Key", &provider.api_key);
    assert_eq!(with_operator_key.send().await.unwrap().status(), 401);
    let scraper = provider.client.get(format!("{}/management/v3/assets/metered", provider.base));
    let with_metrics_key = scraper.header("X-Api-Key", provider.metrics_key.as_deref().unwrap());
    assert_eq!(with_metrics_key.send().await.unwrap().status(), 401);

    // The usage is recorded when the body ends: wait for the pull's bytes to show.
    let mut hospital = String::new();
    until("the pull's bytes in the provider's metrics", async || {
        hospital = provider.metrics().await;
        sample(&hospital, "hanse_dataplane_bytes_total", &[("direction", "served")]) == Some(100_000.0)
    })
    .await;
    let researcher = consumer.metrics().await;
    let value = |text: &str, name: &str, labels: &[(&str, &str)]| {
        sample(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    for (name, _, _) in hanse::measure::FAMILIES.iter().filter(|(name, _, _)| !name.starts_with("hanse_broker_")) {
        let family = |text: &str| text.lines().any(|l| l.starts_with(&format!("# TYPE {name} ")));
        assert!(family(&hospital) || family(&researcher), "the family {name} is missing from both connectors");
    }
    // Both negotiations and both transfers, on each side, by state.
    assert_eq!(value(&hospital, "hanse_negotiations", &[("role", "provider"), ("state", "FINALIZED")]), 2.0);
    assert_eq!(value(&researcher, "hanse_negotiations", &[("role", "consumer"), ("state", "FINALIZED")]), 2.0);
    assert_eq!(value(&researcher, "hanse_negotiations", &[("role", "provider")]), 0.0, "a consumer only");
    assert_eq!(value(&hospital, "hanse_transfers", &[("role", "provider"), ("state", "STARTED")]), 1.0);
    assert_eq!(
        value(&hospital, "hanse_transfers", &[("role", "provider"), ("state", "COMPLETED")]),
        1.0,
        "the compute session"
    );
    let finalized = [("role", "provider"), ("to", "FINALIZED")];
    assert_eq!(value(&hospital, "hanse_negotiation_transitions_total", &finalized), 2.0);
    assert!(value(&hospital, "hanse_transfer_transitions_total", &[("to", "STARTED")]) >= 2.0);
    // DSP messages each way, by type and outcome; the routes they came by.
    let requests = [("type", "ContractRequestMessage"), ("outcome", "accepted")];
    assert_eq!(value(&hospital, "hanse_dsp_messages_received_total", &requests), 2.0);
    let agreements = [("type", "ContractAgreementMessage"), ("outcome", "delivered")];
    assert_eq!(value(&hospital, "hanse_dsp_messages_sent_total", &agreements), 2.0);
    let sent_requests = [("type", "ContractRequestMessage"), ("outcome", "delivered")];
    assert_eq!(value(&researcher, "hanse_dsp_messages_sent_total", &sent_requests), 2.0);
    let route = [("listener", "public"), ("route", "/protocol/2025-1/negotiations/request"), ("status", "201")];
    assert_eq!(value(&hospital, "hanse_http_requests_total", &route), 2.0);
    let timed = [("listener", "public"), ("route", "/protocol/2025-1/negotiations/request")];
    assert_eq!(value(&hospital, "hanse_http_request_duration_seconds_count", &timed), 2.0);
    assert!(value(&hospital, "hanse_http_request_duration_seconds_sum", &timed) > 0.0);
    // Nothing waits, nothing was retried, nothing read failed.
    assert_eq!(value(&hospital, "hanse_outbox_messages", &[]), 0.0);
    assert_eq!(value(&hospital, "hanse_outbox_oldest_age_seconds", &[]), 0.0);
    assert_eq!(value(&hospital, "hanse_outbox_retries_total", &[]), 0.0);
    assert_eq!(value(&hospital, "hanse_metrics_read_failures_total", &[]), 0.0);
    // Policy decisions where they were made; tokens and DID documents.
    for point in ["negotiation_access", "negotiation_contract"] {
        assert_eq!(
            value(&hospital, "hanse_policy_decisions_total", &[("point", point), ("outcome", "permitted")]),
            2.0
        );
    }
    assert!(
        value(&hospital, "hanse_policy_decisions_total", &[("point", "transfer"), ("outcome", "permitted")]) >= 2.0
    );
    assert_eq!(
        value(&hospital, "hanse_policy_decisions_total", &[("point", "compute"), ("outcome", "permitted")]),
        1.0
    );
    assert_eq!(sample(&hospital, "hanse_policy_decisions_total", &[("outcome", "denied")]), None, "nothing denied");
    let verified = value(&hospital, "hanse_token_verifications_total", &[("outcome", "verified")]);
    assert!(verified >= 6.0, "{verified} tokens verified");
    let fetched = [("source", "network"), ("outcome", "resolved")];
    assert!(value(&hospital, "hanse_did_resolutions_total", &fetched) >= 1.0);
    assert!(value(&hospital, "hanse_did_resolutions_total", &[("source", "cache")]) >= 1.0);
    assert!(value(&hospital, "hanse_did_resolution_duration_seconds_count", &[("outcome", "resolved")]) >= 1.0);
    // The data plane and the job, on each side.
    assert_eq!(value(&hospital, "hanse_dataplane_active_transfers", &[]), 0.0);
    let completed = [("template", "aggregate"), ("outcome", "completed")];
    assert_eq!(value(&hospital, "hanse_compute_jobs_total", &[("role", "provider"), completed[0], completed[1]]), 1.0);
    assert_eq!(
        value(&researcher, "hanse_compute_jobs_total", &[("role", "orchestrator"), completed[0], completed[1]]),
        1.0
    );
    assert_eq!(value(&researcher, "hanse_compute_job_duration_seconds_count", &[("role", "orchestrator")]), 1.0);
    // The catalogue: the hospital's two datasets, none at the researcher's; both graphs built.
    assert_eq!(value(&hospital, "hanse_catalog_resources", &[("kind", "dataset")]), 2.0);
    assert_eq!(value(&researcher, "hanse_catalog_resources", &[("kind", "dataset")]), 0.0);
    assert!(value(&hospital, "hanse_catalog_resources", &[("kind", "contract_definition")]) >= 2.0);
    assert_eq!(value(&hospital, "hanse_catalog_graph_ready", &[]), 1.0);
    assert_eq!(value(&researcher, "hanse_catalog_graph_ready", &[]), 1.0);
    // The audit log, the store, the process.
    let entries = value(&hospital, "hanse_audit_log_entries", &[]);
    let logged = provider.get("/management/v3/audit/head").await.body["size"].as_f64().unwrap();
    assert!(entries >= 10.0 && entries <= logged, "{entries} entries, head {logged}");
    assert_eq!(value(&hospital, "hanse_audit_inconsistencies_total", &[]), 0.0);
    assert!(value(&hospital, "hanse_store_connections", &[]) >= 1.0);
    let batches = value(&hospital, "hanse_store_write_batch_size_count", &[]);
    assert!(batches >= 1.0 && value(&hospital, "hanse_store_write_batch_size_sum", &[]) >= batches);
    assert_eq!(value(&hospital, "hanse_store_commit_duration_seconds_count", &[]), batches);
    assert!(value(&hospital, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(value(&hospital, "process_open_fds", &[]) >= 3.0);
    // No label carries an id: every value of every label comes from a bounded set.
    for text in [&hospital, &researcher] {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(!line.contains("did:web") && !line.contains("urn:uuid") && !line.contains("metered"), "{line}");
        }
    }
    federation.shutdown().await;
}

/// The meter the `hanse` binary runs its jobs under, here too, so that `compute.memory_limit_mb` holds in this process.
#[global_allocator]
static ALLOCATOR: hanse::memory::Metered<std::alloc::System> = hanse::memory::Metered(std::alloc::System);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_outgrows_the_memory_limit_is_stopped_and_the_site_keeps_serving() {
    // A hospital whose jobs may hold 4 MiB, and a table the pre-check finds small (2 000 rows, two columns) but whose
    // model has 500 terms: its information matrix is 2 MB, which is admitted, and that matrix as JSON holds four times
    // as much, which only the meter sees.
    let hospital = TestConnector::start_with(Backend::Sqlite, |config| config.compute.memory_limit_mb = 4).await;
    let researcher = TestConnector::start(Backend::Sqlite).await;
    let federation = Federation { connectors: vec![hospital, researcher], client: reqwest::Client::new() };
    let levels: Vec<String> = (0..500).map(|i| format!("ward-{i:03}")).collect();
    let schema = json!({"columns": [
        {"name": "readmitted", "type": "boolean"},
        {"name": "ward", "type": "categorical", "levels": levels},
    ]});
    let dir = federation.connectors[0].dir();
    let (csv, schema_file) = (dir.join("wards.csv"), dir.join("wards.schema.json"));
    let rows: String = (0..2000).map(|i| format!("{},{}\n", i % 3 == 0, levels[i % 500])).collect();
    std::fs::write(&csv, format!("readmitted,ward\n{rows}")).unwrap();
    std::fs::write(&schema_file, schema.to_string()).unwrap();
    let connector = &federation.connectors[0];
    let key = &connector.config.management.api_key;
    commands::ingest(&connector.management_url(), key, "wards", &csv, &schema_file, json!({"title": "Wards"}))
        .await
        .unwrap();
    offer_stored(&federation.management(0), "wards", compute_terms(&["glm", "aggregate"], json!([])), json!({})).await;
    let agreement = agree(&federation, 0, "wards").await;

    let model = json!({"family": "logistic", "outcome": "readmitted", "covariates": ["ward"]});
    let glm = run(&federation, "glm", model, &[&agreement], json!({})).await;
    assert_eq!(glm["state"], "FAILED", "{glm:#}");
    let error = glm["error"].as_str().unwrap();
    assert!(error.contains("memory limit of 4 MiB"), "{error}");

    // The site keeps serving: a job within the limit runs on the same agreement, on a free worker.
    let count = json!({"metrics": [{"column": "readmitted", "statistics": ["count"]}]});
    let aggregate = run(&federation, "aggregate", count, &[&agreement], json!({})).await;
    assert_eq!(aggregate["state"], "COMPLETED", "{aggregate:#}");
    assert_eq!(aggregate["result"]["sites"][0]["n"], 2000);
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_aggregation_trains_fedavg_s_model_from_masked_updates_and_goes_on_without_a_site_that_drops_out() {
    // Three hospitals, the third of which lets a job take at most 6 rounds, and a research institute.
    let backends = hanse::testing::backends();
    let mut connectors = Vec::new();
    for i in 0..4 {
        let rounds = if i == 2 { 6 } else { 100 };
        let backend = backends[i % backends.len()];
        connectors.push(TestConnector::start_with(backend, |config| config.compute.max_rounds = rounds).await);
    }
    let federation = Federation { connectors, client: reqwest::Client::new() };
    for (site, rows) in ROWS.into_iter().enumerate() {
        let terms = compute_terms(&["fedavg", "glm"], json!([]));
        publish(&federation, site, &format!("register-{site}"), rows, site as u32, terms).await;
    }
    let mut agreements = Vec::new();
    for site in 0..3 {
        agreements.push(agree(&federation, site, &format!("register-{site}")).await);
    }
    let sites: Vec<&str> = agreements.iter().map(String::as_str).collect();
    let mut training =
        json!({"family": "logistic", "outcome": "readmitted", "covariates": COVARIATES, "localEpochs": 2});

    // The same model as plain FedAvg, round by round, to within the fixed-point rounding.
    let plain = run(&federation, "fedavg", training.clone(), &sites, json!({"rounds": 3})).await;
    assert_eq!(plain["state"], "COMPLETED", "{plain:#}");
    training["secureAggregation"] = json!(true);
    let secure = run(&federation, "fedavg", training.clone(), &sites, json!({"rounds": 3})).await;
    assert_eq!(secure["state"], "COMPLETED", "{secure:#}");
    let result = &secure["result"];
    assert_eq!((result["secureAggregation"].as_bool(), result["n"].as_f64()), (Some(true), Some(9500.0)), "{result:#}");
    let (plain_trace, secure_trace) =
        (plain["result"]["trace"].as_array().unwrap(), result["trace"].as_array().unwrap());
    assert_eq!(secure_trace.len(), 3);
    for (round, (a, b)) in plain_trace.iter().zip(secure_trace).enumerate() {
        for (x, y) in numbers(a).iter().zip(numbers(b)) {
            assert!((x - y).abs() < 1e-9, "round {}: plain {x} vs secure {y}", round + 1);
        }
    }
    // No site's own figures in the result, and what this connector received of each site tells nothing of it: the
    // row count in its masked update is not the site's, nor is the sum of the masked updates the federation's.
    let p = result["terms"].as_array().unwrap().len();
    let mut sum = vec![0u128; 1 + p];
    for (i, site) in result["sites"].as_array().unwrap().iter().enumerate() {
        assert!(site.get("n").is_none(), "{site}");
        let received = hanse::compute::masking::from_json(&secure["sites"][i]["received"], 1 + p).unwrap();
        let seen = hanse::compute::masking::decode(&received)[0];
        assert!((seen - ROWS[i] as f64).abs() > 1e6, "site {i}'s masked row count is {seen}");
        hanse::compute::masking::add(&mut sum, &received);
    }
    let summed = hanse::compute::masking::decode(&sum)[0];
    assert!((summed - 9500.0).abs() > 1e6, "the masked updates sum to {summed} without the sites' own masks");

    // The third hospital takes no round past its sixth: it drops out, the round runs again among the other two, and
    // the job ends with the model they trained.
    let dropped = run(&federation, "fedavg", training.clone(), &sites, json!({"rounds": 8})).await;
    assert_eq!(dropped["state"], "COMPLETED", "{dropped:#}");
    assert_eq!(dropped["result"]["trace"].as_array().unwrap().len(), 8);
    let left = dropped["result"]["dropped"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0]["agreementId"], agreements[2]);
    assert!(left[0]["reason"].as_str().unwrap().contains("RoundLimit"), "{left:#?}");
    assert_eq!(dropped["sites"][2]["status"], "dropped");
    // Until the drop-out the three trained together, as in the job before.
    for round in 0..3 {
        let (before, now) = (numbers(&secure_trace[round]), numbers(&dropped["result"]["trace"][round]));
        assert!(before.iter().zip(&now).all(|(a, b)| (a - b).abs() < 1e-9), "round {}: {before:?} {now:?}", round + 1);
    }
    let consumer = federation.management(3);
    let transfer = dropped["sites"][2]["transferId"].as_str().unwrap();
    let transfer = consumer.get(&format!("/management/v3/transferprocesses/{transfer}")).await.body;
    assert_eq!(transfer["state"], "TERMINATED", "{transfer:#}");

    // Secure aggregation of one site is refused before any transfer starts.
    for template in ["fedavg", "glm"] {
        let body = json!({"template": template, "parameters": training, "sites": [{"agreementId": sites[0]}]});
        let refused = consumer.post("/management/v3/jobs", &body).await;
        assert_eq!(refused.status, 400, "{template}: {:#}", refused.body);
        assert!(refused.body.to_string().contains("sites"), "{:#}", refused.body);
    }

    // The GLM's Newton rounds masked the same way: the pooled fit, from sums alone.
    let mut model = json!({"family": "logistic", "outcome": "readmitted", "covariates": COVARIATES});
    model["secureAggregation"] = json!(true);
    let glm = run(&federation, "glm", model, &sites[..2], json!({})).await;
    assert_eq!(glm["state"], "COMPLETED", "{glm:#}");
    assert_eq!(glm["result"]["secureAggregation"], true);
    assert_pooled_fit(&glm["result"], &[(ROWS[0], 0), (ROWS[1], 1)], &COVARIATES);
    assert!(
        glm["result"]["sites"].as_array().unwrap().iter().all(|s| s.get("n").is_none() && s.get("checks").is_none())
    );
    let newton_rounds = glm["result"]["rounds"].as_u64().unwrap() as usize;
    // A hospital that demands secure aggregation in its terms refuses plain training and takes part in secure.
    let demanded = json!([{"leftOperand": "hanse:secureAggregation", "operator": "eq", "rightOperand": true}]);
    publish(&federation, 0, "register-guarded", 600, 4, compute_terms(&["fedavg"], demanded)).await;
    let guarded = agree(&federation, 0, "register-guarded").await;
    let mut plain_training = training.clone();
    plain_training["secureAggregation"] = json!(false);
    let refused = run(&federation, "fedavg", plain_training, &[&guarded, sites[1]], json!({"rounds": 1})).await;
    assert_eq!(refused["state"], "FAILED", "{refused:#}");
    assert!(refused["error"].as_str().unwrap().contains("secureAggregation"), "{refused:#}");
    let taken = run(&federation, "fedavg", training.clone(), &[&guarded, sites[1]], json!({"rounds": 1})).await;
    assert_eq!(taken["state"], "COMPLETED", "{taken:#}");

    // Each hospital logged the rounds whose own mask it revealed.
    let log = federation.connectors[0].running.state.store.audit.audit_entries(&everything()).await.unwrap();
    let revealed = log.iter().filter(|e| e.entry.contains("\"ownMaskRevealed\":true")).count();
    assert_eq!(revealed, 4 + 9 + newton_rounds + 2, "one per masked round of the four secure jobs");
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_reveals_its_own_mask_once_for_its_rounds_sites_and_takes_no_peer_it_cannot_verify() {
    // Two hospitals; the research institute plays the orchestrator by hand, as a hostile one would.
    let federation = Federation::with_hospitals(3).await;
    let (consumer_id, consumer) = (federation.connectors[2].participant_id(), federation.management(2));
    let keys = federation.connectors[2].running.state.identity.keys();
    let mut sessions = Vec::new();
    for site in 0..2 {
        publish(&federation, site, "register", 400, site as u32, compute_terms(&["fedavg"], json!([]))).await;
        let agreement = agree(&federation, site, "register").await;
        let body = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@type": "TransferRequest",
                          "contractId": agreement, "transferType": "Hanse-Compute"});
        let created = consumer.post("/management/v3/transferprocesses", &body).await;
        let id = created.body["@id"].as_str().unwrap().to_owned();
        wait_for_transfer(&consumer, &id, "STARTED").await;
        let address = consumer.get(&format!("/management/v3/edrs/{id}/dataaddress")).await.body;
        let endpoint = address["endpoint"].as_str().unwrap().to_owned();
        let token = address["authorization"].as_str().unwrap().to_owned();
        sessions.push((federation.connectors[site].participant_id(), agreement, endpoint, token));
    }
    let parameters = json!({"family": "logistic", "outcome": "readmitted", "covariates": ["age", "smoker"],
                            "secureAggregation": true});
    let call = async |site: usize, round: u64, extra: Value| {
        let (provider, agreement, endpoint, token) = &sessions[site];
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({"iss": consumer_id, "aud": provider, "iat": now, "exp": now + 300, "job": "hostile",
            "round": round, "transfer": endpoint.rsplit('/').next().unwrap(), "agreement": agreement,
            "template": "fedavg", "parameters": parameters});
        claims.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let url = match round {
            0 => format!("{endpoint}/jobs"),
            _ => format!("{endpoint}/jobs/hostile/rounds"),
        };
        let jwt = keys.sign(hanse::compute::JOB_TYP, &[], &claims);
        let response = federation.client.post(url).bearer_auth(token).body(jwt).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    let result = |jwt: &str| -> Value {
        let payload = jwt.split('.').nth(1).unwrap();
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()["result"].clone()
    };
    // Round 0: each site releases its terms and public key, nothing of its rows.
    let (status, key_a) = call(0, 0, json!({})).await;
    assert_eq!(status, 200, "{key_a}");
    let (_, key_b) = call(1, 0, json!({})).await;
    let released = result(&key_a);
    assert!(released["publicKey"].is_string() && released.get("n").is_none() && released.get("sums").is_none());

    // Rounds that would let the orchestrator read a site's update are refused, each with its reason.
    let state = json!({"state": {}});
    let (status, body) = call(0, 1, state.clone()).await;
    assert_eq!(status, 400, "no peers: {body}");
    assert!(body.contains("peers"), "{body}");
    let (status, body) = call(0, 1, json!({"state": {}, "peers": [key_a]})).await;
    assert_eq!(status, 403, "alone: {body}");
    assert!(body.contains("TooFewSites"), "{body}");
    // A "site" whose key the orchestrator made itself: a round-0 result it signed with its own key.
    let now = chrono::Utc::now().timestamp();
    let own_key = hanse::identity::agree::public_key(&[9; 32]).unwrap();
    let fake = keys.sign(
        hanse::compute::RESULT_TYP,
        &[],
        &json!({"iss": consumer_id, "aud": consumer_id, "iat": now,
        "job": "hostile", "round": 0, "template": "fedavg", "result": {"publicKey": own_key}}),
    );
    let (status, body) = call(0, 1, json!({"state": {}, "peers": [key_a, fake]})).await;
    assert_eq!(status, 400, "the consumer as a site: {body}");
    assert!(body.contains("the consumer cannot be a site"), "{body}");
    // A key that is not signed by the site it names: the signature fails.
    let mut forged: Vec<&str> = key_b.split('.').collect();
    let tampered = key_a.split('.').nth(1).unwrap().to_owned();
    forged[1] = &tampered;
    let (status, body) = call(0, 1, json!({"state": {}, "peers": [key_a, forged.join(".")]})).await;
    assert_eq!(status, 400, "a forged peer: {body}");

    // Round 1 among both: a masked update only.
    let (status, masked) = call(0, 1, json!({"state": {}, "peers": [key_a, key_b]})).await;
    assert_eq!(status, 200, "{masked}");
    let masked = result(&masked);
    assert!(masked["masked"].is_array() && masked.get("n").is_none() && masked.get("sums").is_none(), "{masked}");
    // Its own mask only for the set it ran with, and only once; then round 1 runs no more.
    let mut both = vec![result(&key_a)["publicKey"].clone(), result(&key_b)["publicKey"].clone()];
    both.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    let (status, body) = call(0, 1, json!({"unmask": [released["publicKey"]]})).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("SitesDiffer"), "{body}");
    let (status, body) = call(0, 2, json!({"state": {}, "peers": [key_a, key_b]})).await;
    assert_eq!(status, 409, "round 2 before round 1 is unmasked: {body}");
    // Two unmask requests at once: one is answered first, the other finds the mask revealed.
    let (first, second) = tokio::join!(call(0, 1, json!({"unmask": both})), call(0, 1, json!({"unmask": both})));
    let (revealed, refused) = if first.0 == 200 { (first, second) } else { (second, first) };
    assert_eq!(revealed.0, 200, "{}", revealed.1);
    let own = result(&revealed.1)["ownMask"].as_array().unwrap().len();
    assert_eq!(own, masked["masked"].as_array().unwrap().len());
    assert_eq!(refused.0, 409, "{}", refused.1);
    assert!(refused.1.contains("AlreadyUnmasked"), "{}", refused.1);
    let (status, body) = call(0, 1, json!({"state": {}, "peers": [key_a, key_b]})).await;
    assert_eq!(status, 409, "round 1 again after its reveal: {body}");
    assert!(body.contains("runs no more"), "{body}");
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differentially_private_training_spends_the_agreements_budget_and_is_refused_past_it() {
    let federation = Federation::with_hospitals(4).await;
    // The first two hospitals (one on each backend) grant a privacy budget of ε = 10 per agreement; the third plain
    // compute.
    let budget = json!([{"leftOperand": "hanse:privacyEpsilon", "operator": "lteq", "rightOperand": 10}]);
    for (site, rows) in ROWS.into_iter().enumerate() {
        let more = if site < 2 { budget.clone() } else { json!([]) };
        publish(&federation, site, "register", rows, site as u32, compute_terms(&["fedavg"], more)).await;
    }
    let mut agreements = Vec::new();
    for site in 0..3 {
        agreements.push(agree(&federation, site, "register").await);
    }
    let sites: Vec<&str> = agreements.iter().map(String::as_str).collect();
    // Each job: 5 rounds at z = 4, so ρ = 5 · 2/16 = 0.625 per site, ε ≈ 6.50 at δ = 1e-6; two jobs ε ≈ 9.56, three
    // ≈ 12.05.
    let training = json!({"family": "logistic", "outcome": "readmitted", "covariates": ["age", "hba1c", "smoker"],
        "standardise": {"age": [60, 13], "hba1c": [7, 1.5]},
        "differentialPrivacy": {"clip": 0.5, "noiseMultiplier": 4.0, "rounds": 5}});
    let first = run(&federation, "fedavg", training.clone(), &sites, json!({})).await;
    assert_eq!(first["state"], "COMPLETED", "{first:#}");
    let result = &first["result"];
    assert_eq!(result["trace"].as_array().unwrap().len(), 5);
    let epsilon = result["privacy"]["epsilonPerSite"].as_f64().unwrap();
    assert!((epsilon - 6.5020).abs() < 1e-3, "{:#}", result["privacy"]);
    // No site's row count or unnoised weights left a site: each released a noisy change only.
    assert!(result["n"].is_null() && result["sites"].as_array().unwrap().iter().all(|s| s["n"].is_null()));

    // The same job under secure aggregation as well: masked sums of noisy changes, fresh noise, another model.
    let mut secure = training.clone();
    secure["secureAggregation"] = json!(true);
    let second = run(&federation, "fedavg", secure, &sites, json!({})).await;
    assert_eq!(second["state"], "COMPLETED", "{second:#}");
    assert_eq!(second["result"]["secureAggregation"], true);
    let (a, b) = (numbers(&result["coefficients"]), numbers(&second["result"]["coefficients"]));
    assert!(a.iter().chain(&b).all(|c| c.is_finite()) && a != b, "{a:?} {b:?}");

    // The hospitals with a budget counted both and say what the agreement spent.
    for hospital in 0..2 {
        let (management, provider_jobs) = (federation.management(hospital), json!({"role": "provider"}));
        let jobs = management.post("/management/v3/jobs/request", &provider_jobs).await.body;
        let mut spent: Vec<f64> =
            jobs.as_array().unwrap().iter().filter_map(|j| j["privacy"]["agreementEpsilon"].as_f64()).collect();
        spent.sort_by(f64::total_cmp);
        assert_eq!(spent.len(), 2, "{jobs:#}");
        assert!((spent[1] - 9.5613).abs() < 1e-3, "hospital {hospital}: {spent:?}");
    }

    // A third job would spend ε ≈ 12.05: refused there, naming the budget; and a job without differential privacy
    // has no ε, so it is refused too.
    let third = run(&federation, "fedavg", training.clone(), &sites, json!({})).await;
    assert_eq!(third["state"], "FAILED", "{third:#}");
    assert!(third["error"].as_str().unwrap().contains("privacyEpsilon"), "{third:#}");
    let mut plain = training.clone();
    plain.as_object_mut().unwrap().remove("differentialPrivacy");
    let refused = run(&federation, "fedavg", plain, &sites, json!({"rounds": 2})).await;
    assert_eq!(refused["state"], "FAILED", "{refused:#}");
    assert!(refused["error"].as_str().unwrap().contains("not differentially private"), "{refused:#}");
    // Bad privacy parameters are refused before any transfer.
    let consumer = federation.management(3);
    let mut bad = training.clone();
    bad["differentialPrivacy"]["noiseMultiplier"] = json!(0);
    let body = json!({"template": "fedavg", "parameters": bad, "sites": [{"agreementId": sites[1]}]});
    let response = consumer.post("/management/v3/jobs", &body).await;
    assert_eq!(response.status, 400, "{:#}", response.body);
    assert!(response.body.to_string().contains("noiseMultiplier"), "{:#}", response.body);
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fhir_bulk_export_of_ten_thousand_patients_ingests_and_its_glm_equals_the_pooled_fit() {
    let federation = Federation::with_hospitals(2).await;
    let hospital = &federation.connectors[0];
    let (url, key) = (hospital.management_url(), hospital.config.management.api_key.clone());
    let export = hospital.dir().join("export");
    let written = commands::synth_fhir(10_000, 0, SEED, &export).unwrap();
    let (mapping, files): (Vec<_>, Vec<_>) = written.into_iter().partition(|p| p.ends_with("mapping.json"));

    // A bad record anywhere: nothing is imported, and the record is named by its file and line.
    let broken = export.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    let mut broken_files = Vec::new();
    for file in &files {
        let mut text = std::fs::read_to_string(file).unwrap();
        if file.ends_with("Observation.ndjson") {
            // The first Observation (an HbA1c) loses its value.
            let (first, rest) = text.split_once('\n').unwrap();
            let mut observation: Value = serde_json::from_str(first).unwrap();
            observation["valueQuantity"].as_object_mut().unwrap().remove("value");
            text = format!("{observation}\n{rest}");
        }
        let copy = broken.join(file.file_name().unwrap());
        std::fs::write(&copy, text).unwrap();
        broken_files.push(copy);
    }
    let refused = commands::ingest_fhir(&url, &key, "fhir-register", &broken_files, &mapping[0], json!({})).await;
    let refused = format!("{:#}", refused.unwrap_err());
    assert!(
        refused.contains("Observation.ndjson, line 1, column `hba1c`: the Observation has no numeric valueQuantity"),
        "{refused}"
    );
    let management = federation.management(0);
    assert_eq!(management.get("/management/v3/assets/fhir-register").await.status, 404);

    let properties = json!({"title": "Diabetes register (FHIR)", "keyword": ["diabetes"]});
    let stored = commands::ingest_fhir(&url, &key, "fhir-register", &files, &mapping[0], properties).await.unwrap();
    assert_eq!(stored["numberOfRecords"], 10_000);
    offer_stored(&management, "fhir-register", compute_terms(&["glm"], json!([])), json!({})).await;

    // The DSP catalogue lists the FHIR profiles the export holds and its code systems.
    let consumer = federation.management(1);
    let catalogue = consumer
        .post(
            "/management/v3/catalog/request",
            &json!({"counterPartyAddress": format!("{}/protocol/2025-1", hospital.public_url()),
                    "protocol": "dataspace-protocol-http:2025-1"}),
        )
        .await
        .body
        .to_string();
    for listed in [
        "http://hl7.org/fhir/StructureDefinition/Encounter",
        "http://hl7.org/fhir/StructureDefinition/Patient",
        "http://loinc.org",
        "http://snomed.info/sct",
        "http://hl7.org/fhir/sid/icd-10",
    ] {
        assert!(catalogue.contains(listed), "{listed} is not in {catalogue}");
    }

    // A GLM over the ingested patients is the pooled fit of the same cohort.
    let agreement = agree(&federation, 0, "fhir-register").await;
    let covariates = ["age", "sex", "hba1c", "smoker", "ckd"];
    let parameters = json!({"family": "logistic", "outcome": "readmitted", "covariates": covariates});
    let glm = run(&federation, "glm", parameters, &[&agreement], json!({})).await;
    assert_eq!(glm["state"], "COMPLETED", "{glm:#}");
    assert_pooled_fit(&glm["result"], &[(10_000, 0)], &covariates);
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parquet_table_ingests_as_a_csv_one_does_and_a_bad_value_is_named_by_row_and_column() {
    let federation = Federation::with_hospitals(2).await;
    let hospital = &federation.connectors[0];
    let (url, key) = (hospital.management_url(), hospital.config.management.api_key.clone());
    let parquet = hospital.dir().join("register.parquet");
    let schema = commands::synth(3000, 1, SEED, &parquet).unwrap();

    // The same file under a schema that allows no missing LDL: refused, naming the first row without one.
    let strict = hospital.dir().join("strict.schema.json");
    let mut columns: Value = serde_json::from_str(&std::fs::read_to_string(&schema).unwrap()).unwrap();
    for column in columns["columns"].as_array_mut().unwrap() {
        column["nullable"] = json!(false);
    }
    std::fs::write(&strict, columns.to_string()).unwrap();
    let refused = commands::ingest(&url, &key, "parquet-register", &parquet, &strict, json!({})).await.unwrap_err();
    let refused = format!("{refused:#}");
    let cohort = hanse::compute::synth::cohort(3000, 1, SEED);
    let ldl = &cohort.values[cohort.schema.column("ldl").unwrap().0];
    let first_missing = ldl.iter().position(|v| v.is_nan()).unwrap() + 1;
    assert!(refused.contains(&format!("row {first_missing}, column `ldl`: is null")), "{refused}");

    let stored = commands::ingest(&url, &key, "parquet-register", &parquet, &schema, json!({})).await.unwrap();
    assert_eq!(stored["numberOfRecords"], 3000);
    offer_stored(&federation.management(0), "parquet-register", compute_terms(&["glm"], json!([])), json!({})).await;
    let agreement = agree(&federation, 0, "parquet-register").await;
    let parameters = json!({"family": "logistic", "outcome": "readmitted", "covariates": COVARIATES});
    let glm = run(&federation, "glm", parameters, &[&agreement], json!({})).await;
    assert_eq!(glm["state"], "COMPLETED", "{glm:#}");
    assert_pooled_fit(&glm["result"], &[(3000, 1)], &COVARIATES);
    federation.shutdown().await;
}

/// The algorithms that come with Hanse: their manifests and modules.
fn shipped_algorithms() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../compute/algorithms")
}

/// The digest a shipped manifest names.
fn digest_of_manifest(name: &str) -> String {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(shipped_algorithms().join(format!("{name}.json"))).unwrap()).unwrap();
    manifest["digest"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_algorithms_validate_and_train_across_three_hospitals_as_on_the_pooled_rows_and_others_are_refused() {
    // Three hospitals and the research institute admit the shipped algorithms; the hospitals' terms permit module
    // jobs of the validation and the logistic algorithms only.
    let folder = shipped_algorithms();
    let admit = move |config: &mut hanse::config::Config| {
        config.compute.algorithms =
            ["validation", "histogram", "logistic"].map(|name| folder.join(format!("{name}.json"))).to_vec();
    };
    let backends = hanse::testing::backends();
    let connectors = futures_util::future::join_all(
        (0..4).map(|i| TestConnector::start_with(backends[i % backends.len()], admit.clone())),
    )
    .await;
    let federation = Federation { connectors, client: reqwest::Client::new() };
    let (validation, logistic) = (digest_of_manifest("validation"), digest_of_manifest("logistic"));
    let only_validation = json!([{"leftOperand": "hanse:algorithmDigest", "operator": "isAnyOf",
                                  "rightOperand": [validation, logistic]}]);
    for (site, rows) in ROWS.into_iter().enumerate() {
        publish(
            &federation,
            site,
            &format!("register-{site}"),
            rows,
            site as u32,
            compute_terms(&["module"], only_validation.clone()),
        )
        .await;
    }
    // A hospital's DSP catalogue lists the algorithms it runs, each a data service named by its digest with its
    // manifest, and stays a valid DSP message.
    let url = format!("{}/protocol/2025-1/catalog/request", federation.connectors[0].public_url());
    let catalog =
        dsp_post(&federation.client, &url, Some(&federation.connectors[3]), &catalog_request(json!([]))).await;
    assert_eq!(catalog.status, 200, "{:#}", catalog.body);
    assert_valid_dsp(&catalog.body);
    let services = catalog.body["service"].as_array().unwrap();
    let listed = services
        .iter()
        .find(|s| s["http://purl.org/dc/terms/identifier"] == json!(validation))
        .unwrap_or_else(|| panic!("the validation algorithm is not in the catalogue: {services:#?}"));
    assert_eq!(listed["@type"], "DataService");
    assert_eq!(listed["https://w3id.org/hanse/ns/manifest"]["@value"]["name"], "validation");
    assert_eq!(services.len(), 4, "the connector's own service and three algorithms: {services:#?}");

    let mut agreements = Vec::new();
    for site in 0..3 {
        agreements.push(agree(&federation, site, &format!("register-{site}")).await);
    }
    let sites: Vec<&str> = agreements.iter().map(String::as_str).collect();

    // The model's AUC and calibration across the hospitals.
    let terms = ["readmitted", "age", "hba1c", "bmi"];
    let model = [-6.0, 0.04, 0.3, 0.05];
    let cells = 4;
    let parameters = json!({"algorithm": validation, "columns": terms, "values": model, "cells": cells});
    let job = run(&federation, "module", parameters, &sites, json!({})).await;
    assert_eq!(job["state"], "COMPLETED", "{job:#}");
    let result = &job["result"];

    // The same on the pooled rows.
    let tables: Vec<_> = ROWS
        .into_iter()
        .enumerate()
        .map(|(site, rows)| hanse::compute::synth::cohort(rows, site as u32, SEED))
        .collect();
    let hanse::compute::sandbox::examples::Validation { auc, observed, expected } =
        hanse::compute::sandbox::examples::pooled_validation(&tables, &terms, &model, cells);
    let got = |name: &str| result["results"][name].as_f64().unwrap_or_else(|| panic!("{name}: {result:#}"));
    assert!((got("auc") - auc).abs() < 1e-9, "AUC {} across the hospitals, {auc} pooled", got("auc"));
    assert_eq!(got("observed"), observed);
    assert!((got("expected") - expected).abs() < 1e-6 * expected);
    assert_eq!(got("rows"), ROWS.iter().sum::<usize>() as f64);
    assert_eq!(result["algorithm"], json!(validation));
    // What the research institute received of each hospital: cells with counts and sums, nothing per row.
    for site in result["sites"].as_array().unwrap() {
        assert_eq!(site["cells"].as_array().unwrap().len(), cells, "{site:#}");
        assert!(site["cells"][0]["metrics"]["outcome"]["sum"].is_number(), "{site:#}");
    }

    // The logistic algorithm trains over four rounds, each site releasing only its gradient cell, and ends where the
    // same steps on the pooled rows end.
    let (rounds, rate) = (4, 0.5);
    let parameters = json!({"algorithm": logistic, "columns": ["readmitted", "hba1c", "smoker"],
                            "values": [rate, 0.0, 0.0, 0.0], "cells": 1, "rounds": rounds});
    let trained = run(&federation, "module", parameters, &sites, json!({})).await;
    assert_eq!(trained["state"], "COMPLETED", "{trained:#}");
    let tables: Vec<_> = ROWS
        .into_iter()
        .enumerate()
        .map(|(site, rows)| hanse::compute::synth::cohort(rows, site as u32, SEED))
        .collect();
    let mut pooled = [0.0; 3];
    for _ in 0..rounds {
        let (mut gradient, mut n) = ([0.0; 3], 0.0);
        for table in &tables {
            let at = ["readmitted", "hba1c", "smoker"].map(|t| table.schema.column(t).unwrap().0);
            for r in 0..table.rows {
                let x = [1.0, table.values[at[1]][r], table.values[at[2]][r]];
                let eta = pooled[0] + pooled[1] * x[1] + pooled[2] * x[2];
                let residual = table.values[at[0]][r] - 1.0 / (1.0 + (-eta).exp());
                (0..3).for_each(|j| gradient[j] += residual * x[j]);
                n += 1.0;
            }
        }
        (0..3).for_each(|j| pooled[j] += rate * gradient[j] / n);
    }
    let values = numbers(&trained["result"]["values"]);
    assert_eq!(trained["result"]["trace"].as_array().unwrap().len(), rounds);
    for (j, b) in pooled.iter().enumerate() {
        assert!(
            (values[j + 1] - b).abs() < 1e-9,
            "coefficient {j}: {} across the hospitals, {b} pooled",
            values[j + 1]
        );
    }

    // The histogram is admitted at the hospitals but not permitted by the agreements' terms.
    let histogram =
        json!({"algorithm": digest_of_manifest("histogram"), "columns": ["age"], "values": [20, 5], "cells": 16});
    let refused = run(&federation, "module", histogram, &sites[..1], json!({})).await;
    assert_eq!(refused["state"], "FAILED", "{refused:#}");
    assert!(refused["error"].as_str().unwrap().contains("algorithmDigest"), "{refused:#}");
    // An algorithm no hospital admitted is refused naming its digest, even under terms that would permit it.
    let unknown = format!("sha-256:{}", "ab".repeat(32));
    let elsewhere = json!({"algorithm": unknown, "columns": ["age"], "values": [], "cells": 2});
    let refused = run(&federation, "module", elsewhere, &sites[..1], json!({})).await;
    assert_eq!(refused["state"], "FAILED", "{refused:#}");
    assert!(
        refused["error"].as_str().unwrap().contains(&format!("{unknown} is not admitted at this site")),
        "{refused:#}"
    );
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_algorithm_is_admitted_only_with_its_authors_and_reviewers_signatures_over_what_it_declares() {
    // A research group writes the validation algorithm; a hospital's reviewer signs it too.
    let author = TestConnector::start(Backend::Sqlite).await;
    let reviewer = TestConnector::start(Backend::Sqlite).await;
    let (author_did, reviewer_did) =
        (author.running.state.identity.did().to_owned(), reviewer.running.state.identity.did().to_owned());
    let (author_did, reviewer_did) = (author_did.as_str(), reviewer_did.as_str());
    let folder = tempfile::tempdir().unwrap();
    std::fs::copy(shipped_algorithms().join("validation.wat"), folder.path().join("validation.wat")).unwrap();
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(shipped_algorithms().join("validation.json")).unwrap()).unwrap();
    manifest["author"] = json!(author_did);
    manifest["reviewers"] = json!([reviewer_did]);
    let write = |name: &str, manifest: &Value| {
        let path = folder.path().join(name);
        std::fs::write(&path, manifest.to_string()).unwrap();
        path
    };
    use hanse::compute::algorithms::{Role, sign_file};
    let (author_keys, reviewer_keys) = (author.running.state.identity.keys(), reviewer.running.state.identity.keys());
    // Signed by both.
    let reviewed = write("reviewed.json", &manifest);
    sign_file(&reviewed, &author_keys, author_did, Role::Author).unwrap();
    sign_file(&reviewed, &reviewer_keys, reviewer_did, Role::Reviewer).unwrap();
    // Only the author signed.
    let unreviewed = write("unreviewed.json", &manifest);
    sign_file(&unreviewed, &author_keys, author_did, Role::Author).unwrap();
    // Changed after both signed: another result name.
    let mut changed: Value = serde_json::from_slice(&std::fs::read(&reviewed).unwrap()).unwrap();
    changed["version"] = json!("1.0.1");
    let changed = write("changed.json", &changed);
    // Nobody else may sign for the author.
    let error = sign_file(&unreviewed, &reviewer_keys, reviewer_did, Role::Author).unwrap_err();
    assert!(error.contains("is not the manifest's author"), "{error}");

    let manifests = vec![reviewed, unreviewed, changed];
    let hospital = TestConnector::start_with(Backend::Sqlite, |config| {
        config.compute.algorithms = manifests;
        config.participant.development = true;
    })
    .await;
    let federation = Federation { connectors: vec![hospital, author, reviewer], client: reqwest::Client::new() };
    let algorithms = &federation.connectors[0].running.state.compute.algorithms;
    let digest = manifest["digest"].as_str().unwrap();
    let admitted = algorithms.get(digest).expect("the reviewed manifest is admitted");
    assert_eq!(admitted.manifest.reviewers, [reviewer_did]);
    let refused: Vec<(String, String)> =
        algorithms.refused.iter().map(|(m, reason)| (m.version.clone(), reason.clone())).collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused.iter().any(|(_, r)| r.contains(&format!("the reviewer {reviewer_did} has not signed it"))),
        "{refused:?}"
    );
    assert!(refused.iter().any(|(v, r)| v == "1.0.1" && r.contains("changed after it was signed")), "{refused:?}");
    // The operator sees both: what is admitted, signed, and what is not, with the reason.
    let listed = federation.management(0).get("/management/v3/algorithms").await;
    assert_eq!(listed.status, 200, "{:#}", listed.body);
    assert_eq!(listed.body["admitted"].as_array().unwrap().len(), 1, "{:#}", listed.body);
    assert_eq!(listed.body["admitted"][0]["signatures"].as_array().unwrap().len(), 2, "{:#}", listed.body);
    assert_eq!(listed.body["refused"].as_array().unwrap().len(), 2, "{:#}", listed.body);
    assert!(listed.body["refused"][0]["reason"].is_string(), "{:#}", listed.body);
    federation.shutdown().await;
}
