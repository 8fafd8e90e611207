//! The consumer's side of compute-to-data: one job across many sites.
//!
//! For each (agreement, provider) pair the orchestrator opens a `Hanse-Compute` transfer, submits the signed job to
//! the provider's compute endpoint, checks the provider's signature on every result, and combines: cell by cell for
//! `aggregate` and `crosstab` (a cell any site suppressed stays suppressed), Newton rounds for `glm` (the summed score
//! and information of all sites give exactly the pooled maximum-likelihood fit), averaged local training for
//! `fedavg`. Each transfer then completes (or terminates with the reason when its site refused or failed). The job,
//! its progress and its result are kept in the store; the dispatch and the combined result are audited.

use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json, json};

use super::analysis::{self, TEMPLATES};
use super::{JOB_TYP, RESULT_TYP};
use std::sync::Arc;

use super::Compute;
use super::{masking, secure};
use crate::audit::Event;
use crate::store::{JobRow, ProcessKind};
use crate::transfer::machine::{Role, State};
use crate::transfer::{self, COMPUTE};

/// Newton stops when no coefficient moves by more than this.
const NEWTON_TOLERANCE: f64 = 1e-10;
/// How long a site has to start its compute transfer.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One site of a job: the agreement, and where its provider's DSP endpoint is (default: where it was negotiated).
#[derive(Debug, Clone)]
pub struct SiteRequest {
    pub agreement_id: String,
    pub address: Option<String>,
}

/// What a consumer asks for (`POST /management/v3/jobs`).
#[derive(Debug, Clone)]
pub struct JobRequest {
    pub template: String,
    pub parameters: Json,
    pub min_cell_count: Option<u64>,
    pub sites: Vec<SiteRequest>,
    /// `fedavg`: training rounds; `glm`: the most Newton rounds.
    pub rounds: Option<u32>,
}

/// Why a job cannot be created: the field and the reason.
#[derive(Debug, Clone)]
pub struct Rejected(pub String, pub String);

/// Checks the request, records the job and starts running it; answers the job.
pub async fn create(state: &Arc<Compute>, request: JobRequest) -> Result<JobRow, Rejected> {
    if !TEMPLATES.contains(&request.template.as_str()) {
        return Err(Rejected("template".into(), format!("must be one of {}", TEMPLATES.join(", "))));
    }
    if request.template == "module" {
        let parameters = super::sandbox::Parameters::from_json(&request.parameters)
            .map_err(|e| Rejected("parameters".into(), e.to_string()))?;
        if parameters.algorithm.is_none() {
            return Err(Rejected("parameters.algorithm".into(), "the algorithm's digest (`sha-256:<hex>`)".into()));
        }
        if request.rounds.is_some() {
            return Err(Rejected("rounds".into(), "a module job's rounds are parameters.rounds".into()));
        }
        // Between rounds this connector runs the algorithm's finish: it must admit a training algorithm too.
        if parameters.rounds > 1
            && let Err(refusal) = state.algorithms.admitted(&parameters)
        {
            return Err(Rejected("parameters.algorithm".into(), format!("a training job's {refusal}")));
        }
    }
    if matches!(request.template.as_str(), "glm" | "fedavg") {
        // The sites read the same parameters; a model they would all refuse is refused here, before any transfer.
        let model: analysis::ModelParameters =
            analysis::read_parameters(&request.parameters).map_err(|e| Rejected("parameters".into(), e.to_string()))?;
        model.proximal().map_err(|e| Rejected("parameters.proximalMu".into(), e.to_string()))?;
        if request.template == "glm" && model.proximal_mu.is_some() {
            return Err(Rejected(
                "parameters.proximalMu".into(),
                "a fedavg parameter (FedProx); glm fits exactly".into(),
            ));
        }
        if let Some(private) = model.differential_privacy {
            let field = || "parameters.differentialPrivacy".to_owned();
            if request.template == "glm" {
                return Err(Rejected(field(), "a fedavg parameter; glm fits exactly".into()));
            }
            private.check().map_err(|e| Rejected(field(), e))?;
            if request.rounds.is_some_and(|rounds| rounds != private.rounds) {
                return Err(Rejected("rounds".into(), "under differential privacy, differentialPrivacy.rounds".into()));
            }
        }
        for (term, [_, scale]) in model.standardise.iter().flatten() {
            if !(scale.is_finite() && *scale > 0.0) {
                return Err(Rejected(
                    format!("parameters.standardise.{term}"),
                    "[centre, scale] with a positive scale".into(),
                ));
            }
        }
        if secure::requested(&request.parameters) && request.sites.len() < secure::FEWEST_SITES {
            return Err(Rejected(
                "sites".into(),
                format!("secure aggregation needs at least {} sites; a sum of one is its update", secure::FEWEST_SITES),
            ));
        }
    }
    if request.sites.is_empty() {
        return Err(Rejected(
            "sites".into(),
            "name at least one (agreementId and optional counterPartyAddress)".into(),
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let (mut sites, mut starts) = (Vec::new(), Vec::new());
    for (i, site) in request.sites.iter().enumerate() {
        let field = format!("sites[{i}].agreementId");
        let agreement =
            state.processes.agreement(&site.agreement_id).await.map_err(|e| Rejected(field.clone(), e.to_string()))?;
        let Some(agreement) = agreement.filter(|a| a.consumer_id == state.participant) else {
            return Err(Rejected(
                field,
                format!("there is no agreement `{}` in which this connector is the consumer", site.agreement_id),
            ));
        };
        let address = state
            .plane
            .transfers
            .provider_address(&agreement, site.address.as_deref())
            .await
            .map_err(|e| Rejected(format!("sites[{i}].counterPartyAddress"), e.to_string()))?;
        sites.push(json!({"agreementId": agreement.id, "provider": agreement.provider_id,
                          "dataset": agreement.asset_id, "address": address, "status": "pending"}));
        let format = COMPUTE.to_owned();
        starts.push(transfer::Start {
            provider_address: address,
            agreement,
            format,
            destination: None,
            auto_complete: false,
            job: Some(id.clone()),
        });
    }
    // A differentially private job runs the rounds its privacy was counted for.
    let private = request.parameters.get("differentialPrivacy").and_then(|d| d["rounds"].as_u64());
    let rounds = request.rounds.map(u64::from).or(private);
    let job = JobRow {
        id,
        role: "consumer".into(),
        peer_job_id: None,
        counter_party_id: None,
        agreement_id: None,
        transfer_id: None,
        template: request.template.clone(),
        status: "running".into(),
        rounds: 0,
        body: json!({"parameters": request.parameters, "minCellCount": request.min_cell_count,
                     "maxRounds": rounds, "sites": sites}),
        created_at: chrono::Utc::now().timestamp_millis(),
        updated_at: chrono::Utc::now().timestamp_millis(),
    };
    let agreements: Vec<&str> = request.sites.iter().map(|s| s.agreement_id.as_str()).collect();
    let event = Event::new(
        "compute.dispatch",
        json!({"job": job.id, "template": job.template, "agreements": agreements,
               "parametersDigest": crate::audit::canonical_digest(&request.parameters)}),
    );
    // The job runs on this replica, under its lease, from before it is recorded: no other replica takes a job that
    // is being started for interrupted.
    let lease = state.plane.cluster.hold(&job_lease(&job.id)).await;
    let mut lease = lease.ok_or_else(|| Rejected("job".into(), "the store cannot record jobs now".into()))?;
    state.jobs.insert_job(&job, &[event]).await.map_err(|e| Rejected("job".into(), e.to_string()))?;
    let (state, running) = (state.clone(), job.clone());
    tokio::spawn(async move {
        let id = running.id.clone();
        tokio::select! {
            _ = run(state, running, starts) => {}
            _ = lease.lost() => tracing::warn!(job = id, "job stopped: its lease was lost; it is failed as interrupted"),
        }
    });
    Ok(job)
}

/// The lease of a consumer job while it runs.
fn job_lease(id: &str) -> String {
    format!("job:{id}")
}

/// Jobs whose replica stopped are marked failed: their sites' sessions were gone with that process's memory. A job
/// counts as stopped once its lease expired (at start-up, and now and again on one replica); the jobs other live
/// replicas run are left alone.
pub async fn fail_interrupted(state: &Arc<Compute>) {
    let Ok(running) = state.jobs.jobs_in("consumer", "running").await else { return };
    let mut interrupted = Vec::new();
    for mut job in running {
        match state.plane.cluster.holder(&job_lease(&job.id)).await {
            Ok(None) => {}
            Ok(Some(_)) => continue,
            Err(error) => return tracing::warn!(%error, "cannot look for interrupted jobs"),
        }
        job.status = "failed".into();
        job.body["error"] = json!("interrupted: the connector replica running it stopped; run the job again");
        let event = Event::new("compute.combined", json!({"job": job.id, "error": job.body["error"]}));
        if let Err(error) = state.jobs.update_job(&job, &[event]).await {
            tracing::error!(%error, "cannot mark an interrupted job");
        }
        interrupted.push(job.id);
    }
    if !interrupted.is_empty() {
        end_sessions(state, &interrupted).await;
    }
}

/// Ends the compute transfers the stopped jobs `jobs` left open (their sessions were in the stopped replica's memory).
async fn end_sessions(state: &Arc<Compute>, jobs: &[String]) {
    let reason = json!({"reason": "the job was interrupted: the connector replica running it stopped"});
    for open in [State::Requested, State::Started] {
        let rows = match state.processes.processes_in(ProcessKind::Transfer, Role::Consumer.name(), open.name()).await {
            Ok(rows) => rows,
            Err(error) => return tracing::warn!(%error, "cannot look for interrupted jobs' sessions"),
        };
        for session in rows.into_iter().filter_map(|row| transfer::Transfer::from_row(row).ok()) {
            if session.details.job.as_ref().is_some_and(|job| jobs.contains(job))
                && let Err(error) = state.plane.transfers.call(&session.row.id, "terminate", &reason).await
            {
                tracing::warn!(%error, transfer = session.row.id, "cannot end an interrupted job's session");
            }
        }
    }
}

/// A site's open compute session.
struct Session {
    /// Index in the job's `sites`.
    index: usize,
    provider: String,
    agreement_id: String,
    /// Our transfer.
    transfer_id: String,
    /// The provider's transfer (named in every signed job).
    provider_transfer: String,
    endpoint: String,
    token: String,
    /// Why the site was left out of a secure job (it dropped out of a round).
    dropped: Option<String>,
}

/// `starts`: the compute transfer to open with each site, in the order of the job's sites.
async fn run(state: Arc<Compute>, mut job: JobRow, starts: Vec<transfer::Start>) {
    let started = Instant::now();
    let mut sessions = Vec::new();
    let outcome = orchestrate(&state, &mut job, starts, &mut sessions).await;
    let (status, details) = match &outcome {
        Ok(result) => {
            job.body["result"] = result.clone();
            ("completed", json!({"job": job.id, "resultDigest": crate::audit::canonical_digest(result)}))
        }
        Err(reason) => {
            job.body["error"] = json!(reason);
            ("failed", json!({"job": job.id, "error": reason}))
        }
    };
    for session in &sessions {
        let (call, body) = match (&outcome, &session.dropped) {
            (_, Some(reason)) | (Err(reason), _) => ("terminate", json!({"reason": reason})),
            (Ok(_), None) => ("complete", json!({})),
        };
        if let Err(error) = state.plane.transfers.call(&session.transfer_id, call, &body).await {
            tracing::warn!(%error, transfer = session.transfer_id, "cannot close a compute transfer");
        }
    }
    job.status = status.into();
    job.body["seconds"] = json!(started.elapsed().as_secs_f64());
    super::count_job(&state.jobs, "orchestrator", &job.template, outcome.is_ok(), started);
    if let Err(error) = state.jobs.update_job(&job, &[Event::new("compute.combined", details)]).await {
        tracing::error!(%error, "cannot record a job's result");
    }
}

/// Opens every site's session, runs the template's rounds, and combines.
async fn orchestrate(
    state: &Arc<Compute>,
    job: &mut JobRow,
    starts: Vec<transfer::Start>,
    sessions: &mut Vec<Session>,
) -> Result<Json, String> {
    let opened =
        futures_util::future::join_all(starts.into_iter().enumerate().map(|(i, start)| open(state, i, start))).await;
    let mut failure = None;
    for (i, session) in opened.into_iter().enumerate() {
        match session {
            Ok(session) => {
                job.body["sites"][i]["transferId"] = json!(session.transfer_id);
                job.body["sites"][i]["status"] = json!("started");
                sessions.push(session);
            }
            Err(reason) => {
                job.body["sites"][i]["status"] = json!("failed");
                job.body["sites"][i]["error"] = json!(reason);
                let provider = job.body["sites"][i]["provider"].as_str().unwrap_or_default().to_owned();
                failure.get_or_insert(format!("site {} ({provider}): {reason}", i + 1));
            }
        }
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    let parameters = job.body["parameters"].clone();
    let first = json!({"template": job.template, "parameters": parameters, "minCellCount": job.body["minCellCount"]});
    if secure::requested(&parameters) {
        let keys = signed_round(state, job, sessions, 0, &first).await?;
        return match job.template.as_str() {
            "glm" => secure_newton(state, job, sessions, keys).await,
            _ => secure_averaging(state, job, sessions, keys).await,
        };
    }
    let released = round(state, job, sessions, 0, &first).await?;
    match job.template.as_str() {
        "aggregate" | "crosstab" => Ok(combine_cells(job, &released)),
        "module" => conclude_module(state, job, sessions, released).await,
        "glm" => newton(state, job, Rounds::Plain(sessions), released).await,
        _ => federated_averaging(state, job, sessions, released).await,
    }
}

/// Starts a compute transfer with a site and waits for its data address.
async fn open(state: &Arc<Compute>, index: usize, start: transfer::Start) -> Result<Session, String> {
    let agreement_id = start.agreement.id.clone();
    let id = state.plane.transfers.start(start).await.map_err(|e| e.to_string())?.row.id;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let current = state.plane.transfers.get(&id).await.map_err(|e| e.to_string())?;
        match current.state {
            State::Started if current.details.edr.is_some() => {
                let edr = current.details.edr.clone().unwrap_or_default();
                let endpoint = edr.get("endpoint").and_then(Json::as_str).ok_or("the data address has no endpoint")?;
                let token =
                    transfer::endpoint_property(&edr, "authorization").ok_or("the data address has no token")?;
                return Ok(Session {
                    index,
                    provider: current.row.counter_party_id.clone(),
                    agreement_id,
                    provider_transfer: current.row.peer_pid.clone().unwrap_or_default(),
                    endpoint: endpoint.to_owned(),
                    token: token.to_owned(),
                    transfer_id: id,
                    dropped: None,
                });
            }
            State::Terminated | State::Completed => {
                let reason = current.details.error.clone().unwrap_or_else(|| "the provider ended the transfer".into());
                return Err(format!("the compute transfer was refused: {reason}"));
            }
            _ if Instant::now() > deadline => {
                return Err("the provider did not start the compute transfer in time".into());
            }
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Sends one round to every site (`claims`: the round's claims besides those every job carries) and answers their
/// released results, each checked against its provider's signature.
async fn round(
    state: &Arc<Compute>,
    job: &mut JobRow,
    sessions: &[Session],
    number: u64,
    claims: &Json,
) -> Result<Vec<Json>, String> {
    let signed = signed_round(state, job, sessions, number, claims).await?;
    Ok(signed.into_iter().map(|s| s.result).collect())
}

/// [`round`], answering the signed results as they came.
async fn signed_round(
    state: &Arc<Compute>,
    job: &mut JobRow,
    sessions: &[Session],
    number: u64,
    claims: &Json,
) -> Result<Vec<Signed>, String> {
    let answers = attempt(state, job, sessions.iter(), number, claims).await;
    let mut released = Vec::with_capacity(answers.len());
    for (session, answer) in sessions.iter().zip(answers) {
        match answer {
            Ok(signed) => released.push(signed),
            Err(reason) => {
                job.body["sites"][session.index]["status"] = json!("failed");
                job.body["sites"][session.index]["error"] = json!(reason);
                return Err(format!("site {} ({}): {reason}", session.index + 1, session.provider));
            }
        }
    }
    progress(state, job, number).await;
    Ok(released)
}

/// Records that round `number` of `job` is done.
async fn progress(state: &Arc<Compute>, job: &mut JobRow, number: u64) {
    job.rounds = number as i64 + 1;
    job.body["progress"] = json!({"round": number + 1});
    if number > 0
        && let Err(error) = state.jobs.update_job(job, &[]).await
    {
        tracing::warn!(%error, "cannot record a job's progress");
    }
}

/// A site's answer: its released result and the JWT it came in.
struct Signed {
    result: Json,
    jwt: String,
}

/// Sends round `number` to `sessions` at once; answers each one's signed result or why it failed, in their order,
/// and counts the bytes on the job.
async fn attempt<'a>(
    state: &Arc<Compute>,
    job: &mut JobRow,
    sessions: impl Iterator<Item = &'a Session>,
    number: u64,
    claims: &Json,
) -> Vec<Result<Signed, String>> {
    let job_id = job.id.clone();
    let calls = sessions.map(|session| call(state, &job_id, session, number, claims));
    let answers = futures_util::future::join_all(calls).await;
    let bytes: u64 = answers.iter().flatten().map(|(_, bytes)| bytes).sum();
    job.body["bytes"] = json!(job.body["bytes"].as_u64().unwrap_or(0) + bytes);
    answers.into_iter().map(|answer| answer.map(|(signed, _)| signed)).collect()
}

/// One signed call to a site's compute endpoint: the signed result and the bytes of the request and answer bodies.
async fn call(
    state: &Arc<Compute>,
    job_id: &str,
    session: &Session,
    number: u64,
    extra: &Json,
) -> Result<(Signed, u64), String> {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": state.identity.did(),
        "aud": session.provider,
        "iat": now,
        "exp": now + 300,
        "job": job_id,
        "round": number,
        "transfer": session.provider_transfer,
        "agreement": session.agreement_id,
    });
    if let (Some(out), Json::Object(extra)) = (claims.as_object_mut(), extra) {
        out.extend(extra.clone());
    }
    let jwt = state.identity.keys().sign(JOB_TYP, &[], &claims);
    let sent = jwt.len() as u64;
    let url = if number == 0 {
        format!("{}/jobs", session.endpoint)
    } else {
        format!("{}/jobs/{job_id}/rounds", session.endpoint)
    };
    let response = state
        .http
        .post(&url)
        .bearer_auth(&session.token)
        .header("content-type", "application/jwt")
        .body(jwt)
        .send()
        .await
        .map_err(|e| format!("the compute endpoint cannot be reached: {}", hanse_core::error_chain(&e)))?;
    let status = response.status();
    let text = crate::identity::limited::text(response, crate::identity::limited::MESSAGE).await?;
    if !status.is_success() {
        let body: Json = serde_json::from_str(&text).unwrap_or_else(|_| json!({"reason": text}));
        let code = body["code"].as_str().unwrap_or("Refused");
        return Err(format!("{code}: {}", body["reason"].as_str().or(body["error"].as_str()).unwrap_or_default()));
    }
    let signed = state.identity.verify_signed(&text, RESULT_TYP, &session.provider).await?;
    if signed.get("job").and_then(Json::as_str) != Some(job_id)
        || signed.get("round").and_then(Json::as_u64) != Some(number)
    {
        return Err("the signed result is for another job or round".into());
    }
    let result = signed.get("result").cloned().unwrap_or(Json::Null);
    let bytes = sent + text.len() as u64;
    Ok((Signed { result, jwt: text }, bytes))
}

/// `aggregate` / `crosstab`: each site's released cells, and their sum where every site released the cell.
fn combine_cells(job: &mut JobRow, released: &[Json]) -> Json {
    let mut order: Vec<Json> = Vec::new();
    let mut combined: Vec<(Option<u64>, Vec<String>)> = Vec::new();
    for (site, result) in released.iter().enumerate() {
        for cell in result["cells"].as_array().into_iter().flatten() {
            let at = match order.iter().position(|g| *g == cell["group"]) {
                Some(at) => at,
                None => {
                    order.push(cell["group"].clone());
                    combined.push((Some(0), Vec::new()));
                    order.len() - 1
                }
            };
            match cell["n"].as_u64() {
                Some(n) => combined[at].0 = combined[at].0.map(|sum| sum + n),
                None => {
                    combined[at].0 = None;
                    combined[at].1.push(format!("site {}", site + 1));
                }
            }
        }
    }
    let cells: Vec<Json> = order
        .into_iter()
        .zip(combined)
        .map(|(group, (n, at))| {
            let mut cell = json!({"group": group, "n": n});
            if !at.is_empty() {
                cell["suppressedAt"] = json!(at);
            }
            cell
        })
        .collect();
    let total: Option<u64> = released.iter().map(|r| r["total"]["n"].as_u64()).sum();
    let sites = per_site(
        job,
        released,
        |r| json!({"n": r["total"]["n"], "suppressed": r["suppressed"], "cells": r["cells"], "margins": r.get("margins")}),
    );
    json!({"template": job.template, "cells": cells, "total": {"n": total}, "sites": sites})
}

/// A module job's rounds after the first and its result: the sites' cells combined as `aggregate`'s and, where this
/// connector admits the algorithm too, its metrics pooled (`pooled`) and its `finish` run over them: a training
/// algorithm's steps the values for the next round (`values`, and `trace` of every round's), another's sets `results`.
async fn conclude_module(
    state: &Arc<Compute>,
    job: &mut JobRow,
    sessions: &[Session],
    mut released: Vec<Json>,
) -> Result<Json, String> {
    use super::sandbox;
    let parameters = sandbox::Parameters::from_json(&job.body["parameters"]).map_err(|e| e.to_string())?;
    let digest = json!(parameters.algorithm.as_deref().map(super::algorithms::normalise));
    let Ok(admitted) = state.algorithms.admitted(&parameters) else {
        // Not admitted here (one round only, checked when the job was made): the sites' cells are the result.
        let mut result = combine_cells(job, &released);
        result["algorithm"] = digest;
        return Ok(result);
    };
    let declared = admitted.declared();
    let (mut values, mut trace) = (parameters.values.clone(), Vec::new());
    let mut pooled = Vec::new();
    let mut results = Json::Null;
    for number in 0..u64::from(parameters.rounds) {
        if number > 0 {
            released = round(state, job, sessions, number, &json!({"state": {"values": values}})).await?;
        }
        pooled = sandbox::pool(&released, parameters.cells, &declared).map_err(|e| e.to_string())?;
        if !admitted.algorithm.finishes() {
            break;
        }
        let (algorithm, bounds) = (admitted.clone(), state.algorithms.bounds);
        let (cells, declared_now, values_now) = (pooled.clone(), declared.clone(), values.clone());
        let finished = tokio::task::spawn_blocking(move || {
            sandbox::finish(&algorithm.algorithm, cells, &values_now, &declared_now, &bounds)
        })
        .await
        .map_err(|e| format!("the algorithm's finish did not end: {e}"))?
        .map_err(|e| format!("the algorithm's finish: {e}"))?;
        if declared.trains {
            values = finished
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.ok_or(format!("round {number}: the algorithm set no value {i} (or a site withheld a cell)"))
                })
                .collect::<Result<_, _>>()?;
            trace.push(json!({"round": number, "values": values}));
        } else {
            results = Json::Object(sandbox::named(&declared, &finished));
        }
    }
    let mut result = combine_cells(job, &released);
    result["algorithm"] = digest;
    result["pooled"] = sandbox::pooled_json(&pooled, &declared);
    match declared.trains {
        true => {
            result["values"] = json!(values);
            result["trace"] = json!(trace);
        }
        false => result["results"] = results,
    }
    Ok(result)
}

/// Each site's part of the result, named by its provider.
fn per_site(job: &JobRow, released: &[Json], part: impl Fn(&Json) -> Json) -> Vec<Json> {
    released
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut entry = part(r);
            entry["provider"] = job.body["sites"][i]["provider"].clone();
            entry["agreementId"] = job.body["sites"][i]["agreementId"].clone();
            entry
        })
        .collect()
}

fn numbers(value: &Json) -> Vec<f64> {
    value.as_array().map(|a| a.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect()).unwrap_or_default()
}

fn matrix(value: &Json) -> Vec<f64> {
    value.as_array().map(|rows| rows.iter().flat_map(numbers).collect()).unwrap_or_default()
}

/// Where a model's later rounds go: to every site in clear, or masked so that only their sum is seen.
enum Rounds<'a> {
    Plain(&'a [Session]),
    Secure(Sites<'a>),
}

impl Rounds<'_> {
    /// Newton round `number` at `beta`: each site's released result, or under secure aggregation their sum alone.
    async fn newton(
        &mut self,
        state: &Arc<Compute>,
        job: &mut JobRow,
        number: u64,
        beta: &[f64],
    ) -> Result<Vec<Json>, String> {
        let round_state = json!({"coefficients": beta});
        match self {
            Rounds::Plain(sessions) => {
                let claims = json!({"state": round_state});
                round(state, job, sessions, number, &claims).await
            }
            // A secure job's round 0 was its keys: Newton round k is its round k + 1.
            Rounds::Secure(sites) => {
                let p = beta.len();
                let sums = sites.masked_round(state, job, number + 1, 2 + p + p * p, &round_state).await?;
                Ok(vec![glm_sums(&sites.keys[0].result["terms"], &sums)])
            }
        }
    }
}

/// The summed `[n, deviance, score…, information…]` of a secure `glm` round as one site's result would read.
fn glm_sums(terms: &Json, sums: &[f64]) -> Json {
    let p = terms.as_array().map_or(0, Vec::len);
    let information: Vec<&[f64]> = sums[2 + p..].chunks(p.max(1)).collect();
    json!({"terms": terms, "n": sums[0].round() as u64, "deviance": sums[1], "score": &sums[2..2 + p],
           "information": information})
}

/// `glm` under secure aggregation: the same Newton rounds from the sites' summed score and information.
async fn secure_newton(
    state: &Arc<Compute>,
    job: &mut JobRow,
    sessions: &mut [Session],
    keys: Vec<Signed>,
) -> Result<Json, String> {
    let sites = Sites::checked(keys, sessions)?;
    let terms = sites.keys[0].result["terms"].clone();
    let mut rounds = Rounds::Secure(sites);
    let p = terms.as_array().map_or(0, Vec::len);
    let first = rounds.newton(state, job, 0, &vec![0.0; p]).await?;
    newton(state, job, rounds, first).await
}

/// `glm`: Newton rounds on the summed score and information until the coefficients stop moving.
async fn newton(
    state: &Arc<Compute>,
    job: &mut JobRow,
    mut source: Rounds<'_>,
    mut released: Vec<Json>,
) -> Result<Json, String> {
    let terms = released[0]["terms"].clone();
    let p = terms.as_array().map_or(0, Vec::len);
    if released.iter().any(|r| r["terms"] != terms) {
        return Err("the sites' designs differ (a categorical column has other levels at some site)".into());
    }
    let limit = job.body["maxRounds"].as_u64().unwrap_or(25).clamp(2, 100);
    let family = job.body["parameters"]["family"].as_str().unwrap_or_default().to_owned();
    let mut beta = vec![0.0; p];
    let mut rounds = 1u64;
    loop {
        let mut score = vec![0.0; p];
        let mut information = vec![0.0; p * p];
        let (mut n, mut deviance) = (0u64, 0.0);
        for result in &released {
            score.iter_mut().zip(numbers(&result["score"])).for_each(|(a, b)| *a += b);
            information.iter_mut().zip(matrix(&result["information"])).for_each(|(a, b)| *a += b);
            n += result["n"].as_u64().unwrap_or(0);
            deviance += result["deviance"].as_f64().unwrap_or(f64::NAN);
        }
        let step = analysis::solve_spd(&information, &score)
            .ok_or("the pooled information matrix is singular (collinear terms or an empty level)")?;
        let converged = step.iter().all(|s| s.abs() < NEWTON_TOLERANCE);
        if converged || rounds >= limit {
            let inverse = analysis::inverse_spd(&information, p).ok_or("the information matrix cannot be inverted")?;
            let dispersion = if family == "linear" { deviance / (n as f64 - p as f64) } else { 1.0 };
            beta.iter_mut().zip(&step).for_each(|(b, s)| *b += s);
            let errors: Vec<f64> = (0..p).map(|i| (inverse[i * p + i] * dispersion).sqrt()).collect();
            let mut result = json!({
                "template": "glm", "family": family, "terms": terms, "coefficients": beta, "standardErrors": errors,
                "n": n, "deviance": deviance, "rounds": rounds, "converged": converged,
            });
            match &source {
                Rounds::Plain(_) => {
                    result["sites"] = json!(per_site(job, &released, |r| json!({"n": r["n"], "checks": r["checks"]})));
                }
                Rounds::Secure(sites) => sites.describe(&mut result),
            }
            return Ok(result);
        }
        beta.iter_mut().zip(&step).for_each(|(b, s)| *b += s);
        released = source.newton(state, job, rounds, &beta).await?;
        rounds += 1;
    }
}

/// `fedavg`: the first round's term moments standardise the terms federation-wide; then each round every site trains
/// locally from the averaged weights, and the new weights are averaged by rows. Answers the model on the original
/// scale.
async fn federated_averaging(
    state: &Arc<Compute>,
    job: &mut JobRow,
    sessions: &[Session],
    moments: Vec<Json>,
) -> Result<Json, String> {
    let terms = moments[0]["terms"].clone();
    let p = terms.as_array().map_or(0, Vec::len);
    let private = private(job);
    let n: f64 = moments.iter().map(|m| m["n"].as_f64().unwrap_or(0.0)).sum();
    let (center, scale) = match private {
        Some(_) => standardisation(job, &terms),
        None => {
            let summed = |name: &str| -> Vec<f64> {
                (0..p).map(|j| moments.iter().map(|m| numbers(&m[name])[j]).sum()).collect()
            };
            standardisation_from_moments(n, &summed("sums"), &summed("squares"))
        }
    };
    let rounds = job.body["maxRounds"].as_u64().unwrap_or(20).clamp(1, 99);
    let mut weights = vec![0.0; p];
    let mut trace = Vec::new();
    for number in 1..=rounds {
        let claims = json!({"state": {"weights": weights, "center": center, "scale": scale}});
        let released = round(state, job, sessions, number, &claims).await?;
        let mut next = vec![0.0; p];
        for result in &released {
            match private {
                // Each site's noisy change, averaged with equal weights (no site's row count is released).
                Some(_) => {
                    let share = 1.0 / released.len() as f64;
                    next.iter_mut().zip(numbers(&result["update"])).for_each(|(a, b)| *a += share * b);
                }
                None => {
                    let share = result["n"].as_f64().unwrap_or(0.0) / n;
                    next.iter_mut().zip(numbers(&result["weights"])).for_each(|(a, b)| *a += share * b);
                }
            }
        }
        if private.is_some() {
            next.iter_mut().zip(&weights).for_each(|(a, w)| *a += w);
        }
        weights = next;
        trace.push(original_scale(&weights, &center, &scale));
    }
    let sites = per_site(job, &moments, |m| json!({"n": m["n"]}));
    let proximal_mu = job.body["parameters"]["proximalMu"].as_f64().unwrap_or(0.0);
    let mut result = json!({
        "template": "fedavg", "terms": terms, "coefficients": original_scale(&weights, &center, &scale),
        "rounds": rounds, "n": n, "trace": trace, "sites": sites, "proximalMu": proximal_mu,
    });
    if let Some(private) = private {
        result["n"] = Json::Null;
        result["privacy"] = privacy_json(&private);
    }
    Ok(result)
}

/// The differential privacy a `fedavg` job asked for, if any.
fn private(job: &JobRow) -> Option<hanse_compute::privacy::Privacy> {
    serde_json::from_value(job.body["parameters"].get("differentialPrivacy")?.clone()).ok()
}

/// What one site spends on a differentially private job.
fn privacy_json(private: &hanse_compute::privacy::Privacy) -> Json {
    use hanse_compute::privacy::{DELTA, epsilon};
    json!({"clip": private.clip, "noiseMultiplier": private.noise_multiplier, "rounds": private.rounds,
           "rhoPerSite": private.rho(), "epsilonPerSite": epsilon(private.rho(), DELTA), "delta": DELTA})
}

/// The centre and scale of each term but the intercept from the federation's `n` rows and the terms' summed values
/// and squares.
fn standardisation_from_moments(n: f64, sums: &[f64], squares: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let p = sums.len();
    let (mut center, mut scale) = (vec![0.0; p], vec![1.0; p]);
    for j in 1..p {
        let mean = sums[j] / n;
        center[j] = mean;
        scale[j] = (squares[j] / n - mean * mean).max(1e-12).sqrt();
    }
    (center, scale)
}

/// The centre and scale of each term from the job's `standardise` (where the sites' moments are not released):
/// named numeric terms as given, every other term as it is.
fn standardisation(job: &JobRow, terms: &Json) -> (Vec<f64>, Vec<f64>) {
    let given = &job.body["parameters"]["standardise"];
    let names = terms.as_array().cloned().unwrap_or_default();
    let pair =
        |name: &Json, i: usize, default: f64| given[name.as_str().unwrap_or_default()][i].as_f64().unwrap_or(default);
    let center = names.iter().map(|name| pair(name, 0, 0.0)).collect();
    let scale = names.iter().map(|name| pair(name, 1, 1.0)).collect();
    (center, scale)
}

/// `fedavg` under secure aggregation (`keys`: the sites' signed round-0 results with their public keys): the same
/// rounds as [`federated_averaging`], from sums this connector only ever sees whole. Sites that drop out of a round
/// are left out, and the round runs again among the others.
async fn secure_averaging(
    state: &Arc<Compute>,
    job: &mut JobRow,
    sessions: &mut [Session],
    keys: Vec<Signed>,
) -> Result<Json, String> {
    let mut sites = Sites::checked(keys, sessions)?;
    let terms = sites.keys[0].result["terms"].clone();
    let p = terms.as_array().map_or(0, Vec::len);
    let private = private(job);
    // Under differential privacy there is no moments round: the training rounds are 1, 2, …, not 2, 3, ….
    let (center, scale, n, first) = match private {
        Some(_) => {
            let (center, scale) = standardisation(job, &terms);
            (center, scale, None, 1)
        }
        None => {
            let moments = sites.masked_round(state, job, 1, 1 + 2 * p, &json!({})).await?;
            let n = moments[0];
            let (center, scale) = standardisation_from_moments(n, &moments[1..1 + p], &moments[1 + p..]);
            (center, scale, Some(n), 2)
        }
    };
    let rounds = job.body["maxRounds"].as_u64().unwrap_or(20).clamp(1, 99);
    let mut weights = vec![0.0; p];
    let mut trace = Vec::new();
    for number in 1..=rounds {
        let round_state = json!({"weights": weights, "center": center, "scale": scale});
        let sums = sites.masked_round(state, job, number + first - 1, 1 + p, &round_state).await?;
        weights = match private {
            // The sum of the sites' noisy changes over the number of sites that sent one.
            Some(_) => weights.iter().zip(&sums[1..]).map(|(w, sum)| w + sum / sums[0]).collect(),
            None => sums[1..].iter().map(|sum| sum / sums[0]).collect(),
        };
        trace.push(original_scale(&weights, &center, &scale));
    }
    let mut result = json!({
        "template": "fedavg", "terms": terms, "coefficients": original_scale(&weights, &center, &scale),
        "rounds": rounds, "n": n, "trace": trace,
        "proximalMu": job.body["parameters"]["proximalMu"].as_f64().unwrap_or(0.0),
    });
    sites.describe(&mut result);
    if let Some(private) = private {
        result["privacy"] = privacy_json(&private);
    }
    Ok(result)
}

/// The sites of a secure job: their sessions and signed round-0 results, in the job's order.
struct Sites<'a> {
    keys: Vec<Signed>,
    sessions: &'a mut [Session],
}

impl<'a> Sites<'a> {
    /// The sites of a secure job from their round-0 results: each must hold a public key, and all the same design.
    fn checked(keys: Vec<Signed>, sessions: &'a mut [Session]) -> Result<Sites<'a>, String> {
        let terms = &keys[0].result["terms"];
        if keys.iter().any(|k| k.result["terms"] != *terms) {
            return Err("the sites' designs differ (a categorical column has other levels at some site)".into());
        }
        if let Some(i) = keys.iter().position(|k| k.result["publicKey"].as_str().is_none()) {
            let (index, provider) = (sessions[i].index + 1, &sessions[i].provider);
            return Err(format!("site {index} ({provider}) did not take the job under secure aggregation"));
        }
        Ok(Sites { keys, sessions })
    }

    /// Adds to a secure job's result its sites (no figures of their own) and those that dropped out.
    fn describe(&self, result: &mut Json) {
        let dropped: Vec<Json> = self
            .sessions
            .iter()
            .filter(|s| s.dropped.is_some())
            .map(|s| json!({"provider": s.provider, "agreementId": s.agreement_id, "reason": s.dropped}))
            .collect();
        let sites: Vec<Json> =
            self.sessions.iter().map(|s| json!({"provider": s.provider, "agreementId": s.agreement_id})).collect();
        result["sites"] = json!(sites);
        result["secureAggregation"] = json!(true);
        result["dropped"] = json!(dropped);
    }

    /// The sites still in the job.
    fn live(&self) -> Vec<usize> {
        (0..self.sessions.len()).filter(|i| self.sessions[*i].dropped.is_none()).collect()
    }

    /// Runs masked round `number` (sums of `length` values) among the sites still in, and unmasks the sum once they
    /// all answered. A site that does not answer is left out and the round runs again among the others; a site
    /// that does not reveal its own mask fails the job, since the sum stays masked.
    async fn masked_round(
        &mut self,
        state: &Arc<Compute>,
        job: &mut JobRow,
        number: u64,
        length: usize,
        round_state: &Json,
    ) -> Result<Vec<f64>, String> {
        loop {
            let live = self.live();
            if live.len() < secure::FEWEST_SITES {
                return Err(format!(
                    "secure aggregation needs at least {} sites; {} remain",
                    secure::FEWEST_SITES,
                    live.len()
                ));
            }
            let peers: Vec<&str> = live.iter().map(|i| self.keys[*i].jwt.as_str()).collect();
            let claims = json!({"state": round_state, "peers": peers});
            let answers = attempt(state, job, live.iter().map(|i| &self.sessions[*i]), number, &claims).await;
            let mut sum = vec![0u128; length];
            let mut dropped = false;
            for (&i, answer) in live.iter().zip(answers) {
                let masked = answer.and_then(|signed| {
                    masking::from_json(&signed.result["masked"], length)
                        .ok_or_else(|| format!("the masked update is not {length} values"))
                });
                match masked {
                    Ok(masked) => {
                        masking::add(&mut sum, &masked);
                        // What this connector saw of the site: a masked vector only (kept for auditors).
                        job.body["sites"][self.sessions[i].index]["received"] = masking::to_json(&masked);
                    }
                    Err(reason) => {
                        let session = &mut self.sessions[i];
                        tracing::warn!(job = job.id, site = session.provider, %reason, "a site dropped out of a secure round");
                        job.body["sites"][session.index]["status"] = json!("dropped");
                        job.body["sites"][session.index]["error"] = json!(format!("round {number}: {reason}"));
                        session.dropped = Some(format!("dropped out of round {number}: {reason}"));
                        dropped = true;
                    }
                }
            }
            if dropped {
                continue;
            }
            let mut responded: Vec<&str> =
                live.iter().map(|i| self.keys[*i].result["publicKey"].as_str().unwrap_or_default()).collect();
            responded.sort_unstable();
            let unmask = json!({"unmask": responded});
            let sessions = live.iter().map(|i| &self.sessions[*i]);
            let reveals = attempt(state, job, sessions, number, &unmask).await;
            for (&i, reveal) in live.iter().zip(reveals) {
                let own = reveal.and_then(|signed| {
                    masking::from_json(&signed.result["ownMask"], length)
                        .ok_or_else(|| "no mask of the round's length".into())
                });
                let session = &self.sessions[i];
                let own = own.map_err(|reason| {
                    format!(
                        "site {} ({}) did not unmask round {number}, whose sum stays masked: {reason}",
                        session.index + 1,
                        session.provider
                    )
                })?;
                masking::subtract(&mut sum, &own);
            }
            progress(state, job, number).await;
            return Ok(masking::decode(&sum));
        }
    }
}

/// Weights on standardised terms as coefficients on the original terms.
fn original_scale(weights: &[f64], center: &[f64], scale: &[f64]) -> Vec<f64> {
    let mut beta: Vec<f64> = weights.iter().zip(scale).map(|(w, s)| w / s).collect();
    beta[0] = weights[0] - (1..weights.len()).map(|j| weights[j] * center[j] / scale[j]).sum::<f64>();
    beta
}

/// The management view of a job.
pub fn management_json(job: &JobRow) -> Json {
    let mut out = Map::new();
    out.insert("@id".into(), json!(job.id));
    out.insert("@type".into(), json!("ComputeJob"));
    out.insert("template".into(), json!(job.template));
    out.insert("state".into(), json!(job.status.to_uppercase()));
    out.insert("rounds".into(), json!(job.rounds));
    out.insert("createdAt".into(), json!(job.created_at));
    out.insert("updatedAt".into(), json!(job.updated_at));
    if let Json::Object(body) = &job.body {
        for (key, value) in body {
            out.insert(key.clone(), value.clone());
        }
    }
    Json::Object(out)
}
