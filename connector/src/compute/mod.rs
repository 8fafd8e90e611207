//! Compute-to-data: jobs that run where the data lives and release only disclosure-controlled results.
//!
//! The contract part is standard DSP: the consumer requests a transfer with format `Hanse-Compute` under its
//! agreement; the provider grants it only if the agreement permits `compute` (decision 0012). The start message's
//! data address points at this module's endpoint with a data plane access token. There the consumer submits **signed
//! jobs** (`hanse-compute-job+jwt`): a template, typed parameters and, for models, each round's coefficients. For each
//! job the provider
//! 1. checks the token, the consumer's signature and the job's parameters against the table's schema (on no rows);
//! 2. decides the agreement's policy for this job (`jobTemplate`, `minCellCount`, `maxJobs`, `purpose`, time limits)
//!    and its own job budget, and admits the job in the transaction that counts it and appends its audit entry;
//! 3. runs the template on a bounded blocking pool with a time limit ([`Compute::run`]);
//! 4. applies disclosure control in this host code ([`disclosure`]), whatever the template computed;
//! 5. signs the released result (`hanse-compute-result+jwt`) and logs its digest.
//!
//! The consumer's side ([`orchestrate`]) runs a job across many sites and combines the results.

pub mod algorithms;
pub mod commands;
pub mod orchestrate;
pub mod secure;

pub use hanse_compute::secure as masking;
pub use hanse_compute::{analysis, disclosure, sandbox, synth, table};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json, json};
use tokio::sync::Semaphore;

use crate::audit::Event;
use crate::catalog::model::DataAddress;
use crate::config::ComputeConfig;
use crate::store::JobRow;
use analysis::{Deadline, Design, JobError, TEMPLATES};
use disclosure::Limits;
use table::Table;

/// The `typ` of a job a consumer signs.
pub const JOB_TYP: &str = "hanse-compute-job+jwt";
/// The `typ` of a result a provider signs.
pub const RESULT_TYP: &str = "hanse-compute-result+jwt";

pub use hanse_compute::table::is_table_file;

/// The compute service of a connector: the tables in memory and the workers.
pub struct Compute {
    /// Scratch space on this node: uploads on their way to a table.
    folder: PathBuf,
    /// Where tables are kept: this node's folder or the storage every replica shares.
    files: Arc<crate::files::Files>,
    tables: Mutex<HashMap<String, Arc<Table>>>,
    workers: Arc<Semaphore>,
    settings: ComputeConfig,
    /// Our participant id.
    participant: String,
    jobs: crate::store::Jobs,
    processes: crate::store::Processes,
    audit: crate::store::AuditStore,
    identity: Arc<crate::identity::Identity>,
    catalogue: Arc<crate::catalog::Catalogue>,
    /// The client for other connectors' compute endpoints (the consumer's side).
    http: reqwest::Client,
    /// Compute sessions are transfers: their tokens, agreements and ends.
    plane: Arc<crate::dataplane::DataPlane>,
    /// One request at a time per secure aggregation job.
    serial: secure::Serial,
    /// The providers' algorithms this connector admits, by digest.
    pub algorithms: Arc<algorithms::Algorithms>,
}

impl Compute {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        algorithms: algorithms::Algorithms,
        data_dir: &std::path::Path,
        files: Arc<crate::files::Files>,
        settings: &ComputeConfig,
        participant: String,
        http: reqwest::Client,
        jobs: crate::store::Jobs,
        plane: Arc<crate::dataplane::DataPlane>,
    ) -> Compute {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let workers = if settings.workers == 0 { cores } else { settings.workers };
        Compute {
            folder: data_dir.join("tables"),
            files,
            tables: Mutex::new(HashMap::new()),
            workers: Arc::new(Semaphore::new(workers)),
            settings: settings.clone(),
            participant,
            http,
            jobs,
            processes: plane.transfers.store.clone(),
            audit: plane.transfers.audit.clone(),
            identity: plane.transfers.identity.clone(),
            catalogue: plane.catalogue.clone(),
            plane,
            serial: secure::Serial::default(),
            algorithms: Arc::new(algorithms),
        }
    }

    /// Stores `table`, named by the SHA-256 of its content; answers the name. Written to a temporary file in the
    /// scratch folder (hashed in the same pass, never copied whole into memory), synced, then put into storage, where
    /// nothing is visible under the name until the whole table is.
    pub async fn write_table(&self, table: Table) -> std::io::Result<String> {
        let folder = self.folder.clone();
        let (temp, name) = tokio::task::spawn_blocking(move || {
            use sha2::Digest;
            use std::io::Write;
            std::fs::create_dir_all(&folder)?;
            let file = tempfile::NamedTempFile::new_in(&folder)?;
            let digest = {
                let mut out = Hashing { inner: std::io::BufWriter::new(file.as_file()), digest: sha2::Sha256::new() };
                table.write_to(&mut out)?;
                out.flush()?;
                out.digest
            };
            file.as_file().sync_all()?;
            Ok::<_, std::io::Error>((file, format!("{}.table", hanse_core::encode::hex(&digest.finalize()))))
        })
        .await
        .map_err(std::io::Error::other)??;
        self.files.put_table(&name, temp.path()).await?;
        Ok(name)
    }

    /// Removes a table no dataset names any more.
    pub async fn remove_table(&self, file: &str) -> std::io::Result<()> {
        self.tables.lock().expect("tables lock").remove(file);
        self.files.delete_table(file).await
    }

    /// The scratch folder uploads stream to.
    pub fn folder(&self) -> &std::path::Path {
        &self.folder
    }

    /// A table by file name, read once and then kept (tables never change: their name is their digest).
    pub async fn table(&self, file: &str) -> Result<Arc<Table>, String> {
        if let Some(table) = self.tables.lock().expect("tables lock").get(file) {
            return Ok(table.clone());
        }
        let bytes = self.files.read_table(file).await.map_err(|e| format!("table {file}: {e}"))?;
        let table = tokio::task::spawn_blocking(move || Table::from_reader(std::io::Cursor::new(bytes)))
            .await
            .map_err(|e| e.to_string())??;
        let table = Arc::new(table);
        self.tables.lock().expect("tables lock").insert(file.to_owned(), table.clone());
        Ok(table)
    }

    /// Runs `work` on the blocking pool once a worker is free, within the configured time and memory limits: the
    /// work checks its deadline as it goes, and the caller stops waiting a second after it. The memory the work's
    /// thread holds is metered by the binary's allocator (`crate::memory`); past `compute.memory_limit_mb` the work
    /// stops at its next check, and a result reached past it is not answered. The worker slot stays taken until the
    /// work's thread is done, even after the caller stopped waiting.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Deadline) -> Result<T, JobError> + Send + 'static,
    ) -> Result<T, JobError> {
        let seconds = self.settings.time_limit_seconds;
        let megabytes = self.settings.memory_limit_mb;
        let permit = self.workers.clone().acquire_owned().await.map_err(|_| JobError::TimeLimit(seconds))?;
        let deadline = Deadline::metered(Instant::now(), seconds, megabytes);
        let exceeded = deadline.memory.as_ref().map(|(flag, _)| flag.clone()).expect("a metered deadline");
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let limit = usize::try_from(megabytes.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
            let result = crate::memory::metered(limit, &exceeded, || work(&deadline));
            match exceeded.load(std::sync::atomic::Ordering::Relaxed) {
                true => Err(JobError::MemoryLimit(megabytes)),
                false => result,
            }
        });
        match tokio::time::timeout(Duration::from_secs(seconds + 1), task).await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => Err(JobError::Invalid(format!("the job failed: {panic}"))),
            Err(_) => Err(JobError::TimeLimit(seconds)),
        }
    }

    /// Refuses a job whose working set would exceed the memory limit: the table, a row index and the cells.
    fn check_memory(&self, table: &Table) -> Result<(), Refused> {
        let limit = self.settings.memory_limit_mb.saturating_mul(1 << 20);
        let needed = (table.rows * (table.values.len() * 8 + 8) + self.settings.max_cells * 64) as u64;
        if needed > limit {
            return Err(refused(
                StatusCode::INSUFFICIENT_STORAGE,
                "JobMemoryLimit",
                format!("the job needs about {} MiB; the limit is {} MiB", needed >> 20, limit >> 20),
            ));
        }
        Ok(())
    }

    /// The disclosure limits of a job that asks for a smallest cell count of `asked`.
    pub fn limits(&self, asked: Option<u64>) -> Limits {
        Limits {
            k: asked.unwrap_or(0).max(self.settings.min_cell_count),
            dominance: self.settings.dominance,
            max_cells: self.settings.max_cells,
        }
    }
}

/// One step of a job: the whole of `aggregate` and `crosstab`, round `round` of `glm` and `fedavg` (`state` holds the
/// round's coefficients or weights); the whole of a `module` job, by the admitted algorithm it names. Disclosure control
/// is applied here, outside the templates and the modules.
#[allow(clippy::too_many_arguments)]
pub fn step(
    table: &Table,
    template: &str,
    parameters: &Json,
    state: &Json,
    limits: &Limits,
    round: u64,
    deadline: &Deadline,
    algorithms: &algorithms::Algorithms,
) -> Result<Json, JobError> {
    match template {
        "module" => {
            let parameters = sandbox::Parameters::from_json(parameters)?;
            let admitted = algorithms.admitted(&parameters)?;
            let declared = admitted.declared();
            if parameters.rounds == 0 || (parameters.rounds > 1 && !declared.trains) {
                return Err(JobError::Invalid("rounds: one, or more for a training algorithm".into()));
            }
            if round >= u64::from(parameters.rounds) {
                return Err(JobError::Invalid(format!("round {round}: the job has {} rounds", parameters.rounds)));
            }
            // A training round runs with the values the orchestrator stepped to; the first with the job's own.
            let values = match round {
                0 => parameters.values.clone(),
                _ => state["values"]
                    .as_array()
                    .and_then(|values| values.iter().map(Json::as_f64).collect::<Option<Vec<f64>>>())
                    .filter(|values| values.len() == parameters.values.len())
                    .ok_or_else(|| {
                        JobError::Invalid("state.values: the round's values, as many as the job's".into())
                    })?,
            };
            let bounds = &algorithms.bounds;
            sandbox::site_round(&admitted.algorithm, table, &parameters, &values, &declared, limits, bounds)
        }
        "aggregate" => {
            let parameters = analysis::read_parameters(parameters)?;
            let grouped = analysis::aggregate(table, &parameters, limits.max_cells, deadline)?;
            Ok(disclosure::release_grouped(&grouped, limits, false))
        }
        "crosstab" => {
            let parameters = analysis::read_parameters(parameters)?;
            let grouped = analysis::crosstab(table, &parameters, limits.max_cells, deadline)?;
            Ok(disclosure::release_grouped(&grouped, limits, true))
        }
        "glm" | "fedavg" => {
            let parameters: analysis::ModelParameters = analysis::read_parameters(parameters)?;
            if template == "glm" && parameters.differential_privacy.is_some() {
                return Err(JobError::Invalid(
                    "differentialPrivacy: a fedavg parameter; glm's rounds are exact".into(),
                ));
            }
            let private = parameters.differential_privacy;
            if let Some(privacy) = &private {
                privacy.check().map_err(JobError::Invalid)?;
            }
            let design = Design::new(table, &parameters, deadline)?;
            let checks = if table.rows == 0 {
                Json::Null
            } else {
                disclosure::check_model(&design, limits).map_err(JobError::Disclosure)?
            };
            let numbers = |name: &str| -> Result<Option<Vec<f64>>, JobError> {
                match state.get(name) {
                    None | Some(Json::Null) => Ok(None),
                    Some(value) => serde_json::from_value(value.clone())
                        .map(Some)
                        .map_err(|_| JobError::Invalid(format!("{name}: a list of numbers"))),
                }
            };
            let p = design.terms.len();
            let mut out = match &private {
                // Under differential privacy no row count leaves the site.
                Some(_) => json!({"terms": design.terms, "k": limits.k}),
                None => json!({"terms": design.terms, "n": design.rows.len(), "checks": checks, "k": limits.k}),
            };
            if template == "glm" {
                let beta = numbers("coefficients")?.unwrap_or_else(|| vec![0.0; p]);
                let round = analysis::glm_round(table, &design, &beta, deadline)?;
                out["score"] = json!(round.score);
                out["information"] = analysis::matrix_json(&round.information, p);
                out["deviance"] = json!(round.deviance);
            } else if let Some(weights) = numbers("weights")? {
                let center = numbers("center")?.unwrap_or_else(|| vec![0.0; p]);
                let scale = numbers("scale")?.unwrap_or_else(|| vec![1.0; p]);
                if scale.iter().any(|s| *s <= 0.0 || !s.is_finite()) {
                    return Err(JobError::Invalid("scale: positive numbers".into()));
                }
                // The step size decays with the rounds, so that the averaged model settles.
                let rate = parameters.learning_rate.unwrap_or(0.05) / (round.max(1) as f64).sqrt();
                let epochs = parameters.local_epochs.unwrap_or(1).clamp(1, 20);
                let seed = parameters.seed.unwrap_or(0) ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mu = parameters.proximal()?;
                if let Some(rounds) = private.map(|p| p.rounds).filter(|rounds| round > u64::from(*rounds)) {
                    return Err(JobError::Invalid(format!(
                        "round {round}: the job's privacy budget covers {rounds} training rounds"
                    )));
                }
                let w = analysis::sgd(table, &design, &weights, &center, &scale, rate, epochs, seed, mu, deadline)?;
                match private {
                    None => out["weights"] = json!(w),
                    Some(privacy) => {
                        let change: Vec<f64> = w.iter().zip(&weights).map(|(a, b)| a - b).collect();
                        // Fresh noise from the operating system's generator, never from the job: whoever could
                        // reproduce the noise could take it away.
                        out["update"] = json!(privacy.privatise(&change, rand::random()));
                    }
                }
            } else if private.is_some() {
                // The moments are not released: the consumer standardises with `standardise`.
            } else {
                let (sums, squares) = analysis::term_moments(table, &design, deadline)?;
                out["sums"] = json!(sums);
                out["squares"] = json!(squares);
            }
            Ok(out)
        }
        other => Err(JobError::Invalid(format!("template: `{other}` is not one of {}", TEMPLATES.join(", ")))),
    }
}

/// A refusal at the compute endpoint (answered as `{"code", "reason"}`).
type Refused = crate::problem::PublicError;

fn refused(status: StatusCode, code: &str, reason: impl Into<String>) -> Refused {
    Refused::compute(status, code, reason)
}

fn fail(status: StatusCode, code: &str, reason: impl Into<String>) -> Response {
    refused(status, code, reason).into_response()
}

fn job_failure(error: &JobError) -> Response {
    match error {
        JobError::Invalid(reason) => fail(StatusCode::BAD_REQUEST, "InvalidJob", reason.clone()),
        JobError::Disclosure(reason) => fail(StatusCode::FORBIDDEN, "DisclosureControl", reason.clone()),
        JobError::TimeLimit(_) => fail(StatusCode::SERVICE_UNAVAILABLE, "JobTimeLimit", error.to_string()),
        JobError::MemoryLimit(_) => fail(StatusCode::INSUFFICIENT_STORAGE, "JobMemoryLimit", error.to_string()),
        JobError::Sandbox(reason) => fail(StatusCode::UNPROCESSABLE_ENTITY, "AlgorithmStopped", reason.clone()),
    }
}

/// A job's claims, checked: signed by the transfer's consumer, for us, for this transfer and agreement.
struct Submitted {
    job: String,
    round: u64,
    claims: Map<String, Json>,
}

async fn read_job(
    state: &Arc<Compute>,
    transfer: &crate::transfer::Transfer,
    consumer: &str,
    body: &[u8],
) -> Result<Submitted, Refused> {
    let jwt =
        std::str::from_utf8(body).map_err(|_| refused(StatusCode::BAD_REQUEST, "InvalidJob", "not a JWT"))?.trim();
    let claims = state
        .identity
        .verify_signed(jwt, JOB_TYP, consumer)
        .await
        .map_err(|e| refused(StatusCode::UNAUTHORIZED, "BadSignature", format!("the job's signature: {e}")))?;
    let text = |name: &str| claims.get(name).and_then(Json::as_str);
    if text("iss") != Some(consumer) || text("aud") != Some(state.identity.did()) {
        return Err(refused(StatusCode::BAD_REQUEST, "InvalidJob", "iss must be the consumer and aud this connector"));
    }
    if text("transfer") != Some(transfer.row.id.as_str()) || text("agreement") != Some(transfer.agreement_id()) {
        return Err(refused(StatusCode::BAD_REQUEST, "InvalidJob", "the job names another transfer or agreement"));
    }
    let job = text("job").filter(|j| !j.is_empty() && j.len() <= 128);
    let job =
        job.ok_or_else(|| refused(StatusCode::BAD_REQUEST, "InvalidJob", "job: the consumer's job id"))?.to_owned();
    let round = claims.get("round").and_then(Json::as_u64).unwrap_or(0);
    Ok(Submitted { job, round, claims })
}

/// Signs a released result for the consumer.
fn signed(state: &Arc<Compute>, job: &JobRow, round: u64, result: &Json) -> Response {
    let payload = json!({
        "iss": state.identity.did(),
        "aud": job.counter_party_id,
        "iat": chrono::Utc::now().timestamp(),
        "job": job.peer_job_id,
        "round": round,
        "transfer": job.transfer_id,
        "agreement": job.agreement_id,
        "template": job.template,
        "result": result,
    });
    let jwt = state.identity.keys().sign(RESULT_TYP, &[], &payload);
    ([(header::CONTENT_TYPE, "application/jwt")], jwt).into_response()
}

/// Counts a finished job step (`provider`: one round run here) or job (`orchestrator`: all sites combined), by template
/// and outcome, with the time it took.
pub(crate) fn count_job(
    jobs: &crate::store::Jobs,
    role: &'static str,
    template: &str,
    ok: bool,
    started: std::time::Instant,
) {
    let template = TEMPLATES.iter().find(|known| **known == template).copied().unwrap_or("other");
    let outcome = if ok { "completed" } else { "failed" };
    let meter = jobs.meter();
    meter.count("hanse_compute_jobs_total", &[("role", role), ("template", template), ("outcome", outcome)]);
    meter.observe(
        "hanse_compute_job_duration_seconds",
        &[("role", role), ("template", template)],
        started.elapsed().as_secs_f64(),
    );
}

fn job_event(kind: &'static str, job: &JobRow, details: Json) -> Event {
    Event::new(kind, details)
        .agreement(job.agreement_id.as_deref())
        .participant(job.counter_party_id.as_deref())
        .dataset(job.body.get("dataset").and_then(Json::as_str))
}

/// Records what a step released (or why it failed) on the job, with the audit entry of the release.
async fn conclude(
    state: &Arc<Compute>,
    job: &mut JobRow,
    round: u64,
    outcome: &Result<Json, JobError>,
) -> Result<(), Refused> {
    let details = match outcome {
        Ok(released) => {
            job.status = if takes_rounds(job, round) { "open" } else { "completed" }.into();
            job.body["released"] = released.clone();
            let suppressed = released.get("suppressed").and_then(Json::as_array).map_or(0, Vec::len);
            json!({"job": job.id, "round": round, "resultDigest": crate::audit::canonical_digest(released), "suppressed": suppressed})
        }
        Err(error) => {
            job.status = "failed".into();
            job.body["error"] = json!(error.to_string());
            json!({"job": job.id, "round": round, "error": error.to_string()})
        }
    };
    job.rounds = round as i64 + 1;
    state.jobs.update_job(job, &[job_event("compute.result", job, details)]).await.map_err(|error| {
        tracing::error!(%error, "cannot record a job's result");
        refused(StatusCode::SERVICE_UNAVAILABLE, "InternalError", "the result cannot be recorded now")
    })
}

/// Whether a job takes more rounds after `round`: a model template's, and a training module's until its last.
fn takes_rounds(job: &JobRow, round: u64) -> bool {
    match job.template.as_str() {
        "glm" | "fedavg" => true,
        "module" => round + 1 < job.body["parameters"]["rounds"].as_u64().unwrap_or(1),
        _ => false,
    }
}

/// The table behind a compute transfer.
async fn table_of(state: &Arc<Compute>, transfer: &crate::transfer::Transfer) -> Result<Arc<Table>, Refused> {
    let asset_id = transfer.details.asset_id.as_deref().unwrap_or_default();
    let gone =
        || refused(StatusCode::GONE, "DatasetGone", format!("dataset `{asset_id}` is no longer offered as a table"));
    let asset = state.catalogue.asset(asset_id).ok_or_else(gone)?;
    let DataAddress::Table { file, .. } = &asset.value.data_address else {
        return Err(gone());
    };
    state.table(file).await.map_err(|error| {
        tracing::error!(%error, "cannot read a table");
        refused(StatusCode::SERVICE_UNAVAILABLE, "InternalError", "the table cannot be read now")
    })
}

/// `POST /compute/{transferId}/jobs`: a signed job under a started compute transfer.
pub async fn submit(
    State(state): State<Arc<Compute>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match receive(&state, &id, &headers, &body).await {
        Ok((consumer, transfer, submitted)) => state.start_job(id, consumer, transfer, submitted).await,
        Err(refusal) => refusal,
    }
}

impl Compute {
    /// Admits and runs the first round of a job the consumer submitted (the same job again gets the same answer).
    async fn start_job(
        self: &Arc<Self>,
        id: String,
        consumer: String,
        transfer: crate::transfer::Transfer,
        submitted: Submitted,
    ) -> Response {
        // The same job again (a retry): the same answer.
        match self.jobs.job_of_peer(&consumer, &submitted.job).await {
            Ok(Some(existing)) => {
                return match existing.body.get("released") {
                    Some(released) if existing.transfer_id.as_deref() == Some(id.as_str()) => {
                        signed(self, &existing, 0, released)
                    }
                    _ => fail(
                        StatusCode::CONFLICT,
                        "JobExists",
                        format!("job `{}` exists ({})", submitted.job, existing.status),
                    ),
                };
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, "cannot read jobs");
                return fail(StatusCode::SERVICE_UNAVAILABLE, "InternalError", "jobs cannot be read now");
            }
        }
        let claims = &submitted.claims;
        let template = claims.get("template").and_then(Json::as_str).unwrap_or_default().to_owned();
        let parameters = claims.get("parameters").cloned().unwrap_or_else(|| json!({}));
        let round_state = claims.get("state").cloned().unwrap_or(Json::Null);
        let limits = self.limits(claims.get("minCellCount").and_then(Json::as_u64));
        let table = match table_of(self, &transfer).await {
            Ok(table) => table,
            Err(refusal) => return refusal.into_response(),
        };
        // Parameters are checked against the schema on no rows: a job that cannot run is not admitted (nor counted).
        let empty = Table { schema: table.schema.clone(), rows: 0, values: vec![Vec::new(); table.values.len()] };
        // Under the memory limit too: a model too large for it is refused before its matrices are allocated.
        let forever = Deadline::metered(Instant::now(), 60, self.settings.memory_limit_mb);
        if let Err(error) = step(&empty, &template, &parameters, &round_state, &limits, 0, &forever, &self.algorithms) {
            return job_failure(&error);
        }
        if let Err(refusal) = self.check_memory(&table) {
            return refusal.into_response();
        }
        let mut job = JobRow {
            id: uuid::Uuid::new_v4().to_string(),
            role: "provider".into(),
            peer_job_id: Some(submitted.job),
            counter_party_id: Some(consumer),
            agreement_id: Some(transfer.agreement_id().to_owned()),
            transfer_id: Some(id),
            template,
            status: "running".into(),
            rounds: 0,
            body: json!({"dataset": transfer.details.asset_id, "parameters": parameters, "k": limits.k}),
            created_at: 0,
            updated_at: 0,
        };
        // Under secure aggregation the first round releases the site's key for the job, and every later round only
        // masked updates.
        let release = match template_is_secure(&job) {
            true => match secure::public_key(self, &job) {
                Ok(key) => {
                    job.body["secure"] = json!({"publicKey": key});
                    secure::Release::Key(key)
                }
                Err(refusal) => return refusal.into_response(),
            },
            false => secure::Release::Plain,
        };
        let mut job = match admit(self, job).await {
            Ok(job) => job,
            Err(refusal) => return refusal,
        };
        execute(self, &mut job, 0, table, round_state, limits, release).await
    }
}

/// Decides the agreement's policy and the provider's budget for `job` and admits it: the job's row, its count against
/// the agreement and its audit entry in one transaction, decided again if another job was admitted meanwhile.
async fn admit(state: &Arc<Compute>, mut job: JobRow) -> Result<JobRow, Response> {
    let (consumer, agreement) =
        (job.counter_party_id.clone().unwrap_or_default(), job.agreement_id.clone().unwrap_or_default());
    let budget = state.settings.max_jobs_per_agreement;
    // A differentially private job spends its whole ρ (zCDP) at admission, for every round it may take.
    let rho = private_rho(&job);
    loop {
        let usage = state.processes.usage(&agreement).await.map_err(|error| {
            tracing::error!(%error, "cannot read an agreement's usage");
            fail(StatusCode::SERVICE_UNAVAILABLE, "InternalError", "the job cannot be admitted now")
        })?;
        // What the agreement's jobs spent so far (read with the job count the admission below is conditional on).
        let privacy_epsilon = match rho {
            None => None,
            Some(rho) => {
                let spent = privacy_spent(state, &agreement).await?;
                let epsilon = hanse_compute::privacy::epsilon(spent + rho, hanse_compute::privacy::DELTA);
                job.body["privacy"] = json!({"rho": rho, "delta": hanse_compute::privacy::DELTA,
                    "epsilon": hanse_compute::privacy::epsilon(rho, hanse_compute::privacy::DELTA),
                    "agreementRho": spent + rho, "agreementEpsilon": epsilon});
                Some(epsilon)
            }
        };
        let jobs_run = usage.jobs.max(0) as u64;
        let granted = if jobs_run >= budget {
            Err(crate::transfer::Refusal::new(
                "JobBudgetExhausted",
                format!("the agreement's job budget of {budget} jobs is used up"),
            ))
        } else {
            let context = hanse_policy::JobContext {
                template: job.template.clone(),
                // A module job's algorithm, for `hanse:algorithmDigest` constraints (admitted here, or refused before).
                algorithm_digest: (job.template == "module")
                    .then(|| job.body["parameters"]["algorithm"].as_str().map(algorithms::normalise))
                    .flatten(),
                min_cell_count: job.body["k"].as_u64().unwrap_or_default(),
                disclosure_method: Some("suppress".into()),
                jobs_run,
                secure_aggregation: template_is_secure(&job),
                privacy_epsilon,
            };
            state.plane.transfers.check_job(&consumer, &agreement, context).await
        };
        let grant = match granted {
            Ok(grant) => grant,
            Err(refusal) => {
                tracing::info!(consumer, code = refusal.code, reason = %refusal.reason, "job refused");
                refusal.record(&state.audit, &consumer, &agreement, "compute job").await;
                return Err(fail(StatusCode::FORBIDDEN, refusal.code, refusal.reason));
            }
        };
        let mut details = json!({
            "job": job.id,
            "template": job.template,
            "parametersDigest": crate::audit::canonical_digest(&job.body["parameters"]),
            "k": job.body["k"],
            "decisionDigest": grant.decision.as_ref().map(crate::audit::canonical_digest),
        });
        if let Some(privacy) = job.body.get("privacy") {
            // The privacy spent is the auditors' to see: ρ and ε of the job, and of the agreement so far.
            details["privacy"] = privacy.clone();
        }
        job.body["decision"] = grant.decision.unwrap_or(Json::Null);
        match state.jobs.admit_job(&job, usage.jobs, &[job_event("compute.job", &job, details)]).await {
            Ok(true) => return Ok(job),
            Ok(false) => continue,
            Err(error) => {
                tracing::error!(%error, "cannot admit a job");
                return Err(fail(StatusCode::SERVICE_UNAVAILABLE, "InternalError", "the job cannot be admitted now"));
            }
        }
    }
}

/// `POST /compute/{transferId}/jobs/{jobId}/rounds`: the next round of an open model job (`jobId` is the consumer's).
pub async fn round(
    State(state): State<Arc<Compute>>,
    UrlPath((id, job_id)): UrlPath<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match receive(&state, &id, &headers, &body).await {
        Ok((consumer, transfer, submitted)) => state.next_round(id, job_id, consumer, transfer, submitted).await,
        Err(refusal) => refusal,
    }
}

impl Compute {
    /// Runs the next round of an open model job.
    async fn next_round(
        self: &Arc<Self>,
        id: String,
        job_id: String,
        consumer: String,
        transfer: crate::transfer::Transfer,
        submitted: Submitted,
    ) -> Response {
        if submitted.job != job_id {
            return fail(StatusCode::BAD_REQUEST, "InvalidJob", "the signed job id differs from the URL's");
        }
        let mut job = match self.jobs.job_of_peer(&consumer, &job_id).await {
            Ok(Some(job)) if job.transfer_id.as_deref() == Some(id.as_str()) => job,
            Ok(_) => {
                return fail(
                    StatusCode::NOT_FOUND,
                    "UnknownJob",
                    format!("there is no job `{job_id}` on this transfer"),
                );
            }
            Err(error) => {
                tracing::error!(%error, "cannot read a job");
                return fail(StatusCode::SERVICE_UNAVAILABLE, "InternalError", "the job cannot be read now");
            }
        };
        if job.status != "open" {
            return fail(
                StatusCode::CONFLICT,
                "JobNotOpen",
                format!("job `{job_id}` is {}; it takes no rounds", job.status),
            );
        }
        let is_secure = job.body.get("secure").is_some();
        let claims = &submitted.claims;
        if !is_secure && (claims.contains_key("peers") || claims.contains_key("unmask")) {
            return fail(StatusCode::BAD_REQUEST, "InvalidJob", "the job was not admitted for secure aggregation");
        }
        // A secure job's requests are answered one at a time, here and across replicas: revealing a mask and
        // running a round again may not interleave.
        let _serial = match is_secure {
            true => match self.serial.enter(self, &job.id).await {
                Some(guards) => Some(guards),
                None => return fail(StatusCode::CONFLICT, "Busy", "another request of this job is being answered"),
            },
            false => None,
        };
        if is_secure {
            // Read again under the lease: another replica may have answered meanwhile.
            job = match self.jobs.job(&job.id).await {
                Ok(Some(job)) => job,
                _ => return fail(StatusCode::SERVICE_UNAVAILABLE, "InternalError", "the job cannot be read now"),
            };
            if let Some(responded) = claims.get("unmask") {
                return self.unmask(&mut job, submitted.round, responded).await;
            }
            if let Err(refusal) = secure::may_run(&job, submitted.round) {
                return refusal.into_response();
            }
        } else if submitted.round != job.rounds as u64 {
            return fail(
                StatusCode::CONFLICT,
                "WrongRound",
                format!("the next round of job `{job_id}` is {}", job.rounds),
            );
        }
        let round = submitted.round;
        if round >= u64::from(self.settings.max_rounds) {
            return fail(
                StatusCode::FORBIDDEN,
                "RoundLimit",
                format!("a job may take {} rounds", self.settings.max_rounds),
            );
        }
        // Every round is a use of the data: the agreement must still permit `compute` (dates, elapsed time, ...).
        if let Err(refusal) = self.plane.transfers.check_use(&consumer, transfer.agreement_id(), "compute", false).await
        {
            return self.plane.refuse_use(&id, &consumer, transfer.agreement_id(), refusal, "compute round").await;
        }
        let table = match table_of(self, &transfer).await {
            Ok(table) => table,
            Err(refusal) => return refusal.into_response(),
        };
        let release = match is_secure {
            true => match secure::masks(self, &job, round, claims).await {
                Ok(release) => release,
                Err(refusal) => return refusal.into_response(),
            },
            false => secure::Release::Plain,
        };
        let round_state = claims.get("state").cloned().unwrap_or(Json::Null);
        let limits = self.limits(job.body["k"].as_u64());
        execute(self, &mut job, round, table, round_state, limits, release).await
    }

    /// Reveals a secure job's own mask of `round` (once, and only for the round's set of sites), logged.
    async fn unmask(self: &Arc<Self>, job: &mut JobRow, round: u64, responded: &Json) -> Response {
        let revealed = match secure::reveal(self, job, round, responded) {
            Ok(revealed) => revealed,
            Err(refusal) => return refusal.into_response(),
        };
        let details = json!({"job": job.id, "round": round, "ownMaskRevealed": true});
        if let Err(error) = self.jobs.update_job(job, &[job_event("compute.result", job, details)]).await {
            tracing::error!(%error, "cannot record a revealed mask");
            return fail(StatusCode::SERVICE_UNAVAILABLE, "InternalError", "the mask cannot be revealed now");
        }
        signed(self, job, round, &revealed)
    }
}

/// The zCDP ρ a differentially private job (being admitted) spends; `None` for any other job.
fn private_rho(job: &JobRow) -> Option<f64> {
    let parameters = job.body["parameters"].get("differentialPrivacy")?;
    let privacy: hanse_compute::privacy::Privacy = serde_json::from_value(parameters.clone()).ok()?;
    (job.template == "fedavg").then(|| privacy.rho())
}

/// The ρ the differentially private jobs admitted under `agreement` spent.
async fn privacy_spent(state: &Arc<Compute>, agreement: &str) -> Result<f64, Response> {
    let jobs = state.jobs.jobs_of_agreement("provider", agreement).await.map_err(|error| {
        tracing::error!(%error, "cannot read an agreement's jobs");
        fail(StatusCode::SERVICE_UNAVAILABLE, "InternalError", "the job cannot be admitted now")
    })?;
    Ok(jobs.iter().filter_map(|job| job.body["privacy"]["rho"].as_f64()).sum())
}

/// Whether `job` (being admitted) asked for secure aggregation (of `fedavg` or `glm`).
fn template_is_secure(job: &JobRow) -> bool {
    matches!(job.template.as_str(), "fedavg" | "glm") && secure::requested(&job.body["parameters"])
}

/// The request of a compute endpoint: the consumer the access token names, its started compute transfer, and the
/// job it signed.
async fn receive(
    state: &Arc<Compute>,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, crate::transfer::Transfer, Submitted), Response> {
    let (access, transfer) = state.plane.authorise(id, headers).await?;
    if !transfer.is_compute() {
        return Err(fail(StatusCode::CONFLICT, "NotCompute", "the transfer is not a compute transfer"));
    }
    let submitted = read_job(state, &transfer, &access.consumer, body).await.map_err(IntoResponse::into_response)?;
    Ok((access.consumer, transfer, submitted))
}

/// Runs round `round` of an admitted job on the pool, records what it released, and answers the signed result.
async fn execute(
    state: &Arc<Compute>,
    job: &mut JobRow,
    round: u64,
    table: Arc<Table>,
    round_state: Json,
    limits: Limits,
    release: secure::Release,
) -> Response {
    let (template, parameters) = (job.template.clone(), job.body["parameters"].clone());
    let started = std::time::Instant::now();
    let step_round = release.step_round(round);
    let algorithms = state.algorithms.clone();
    let outcome = state
        .run(move |deadline| {
            step(&table, &template, &parameters, &round_state, &limits, step_round, deadline, &algorithms)
        })
        .await
        .and_then(|out| release.apply(out).map(|released| (released, release)));
    let outcome = outcome.map(|(released, release)| {
        secure::answered(job, round, &release, &released);
        released
    });
    count_job(&state.jobs, "provider", &job.template, outcome.is_ok(), started);
    if let Err(refusal) = conclude(state, job, round, &outcome).await {
        return refusal.into_response();
    }
    match outcome {
        Ok(released) => signed(state, job, round, &released),
        Err(error) => job_failure(&error),
    }
}

/// The compute routes of the public listener.
pub fn routes(compute: Arc<Compute>) -> axum::Router {
    use axum::routing::post;
    axum::Router::new()
        .route("/compute/{transfer}/jobs", post(submit))
        .route("/compute/{transfer}/jobs/{job}/rounds", post(round))
        .with_state(compute)
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    digest: sha2::Sha256,
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        sha2::Digest::update(&mut self.digest, &bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
