//! Secure aggregation of `fedavg` (decision 0044): the orchestrator learns only the sum of the sites' updates.
//!
//! A job opts in with the parameter `secureAggregation: true`; every site then enforces it for the job's life. The
//! rounds of such a job at a site (`glm`'s Newton rounds are masked the same way, as `[n, deviance, score…,
//! information…]`, from round 1 on):
//! - **round 0** admits the job and releases only the design's terms and the site's X25519 public key for the job,
//!   derived from the participant key (every replica derives the same one; nothing secret is stored);
//! - **round 1** (the term moments) and **rounds 2, 3, …** (one of training each) name their `peers`: the round-0
//!   results the other sites signed for this job, which the site checks against each signer's DID. The site agrees a
//!   pairwise seed with each peer, and releases its update (`n` and `n·w`, or `n`, sums and squares) in fixed point,
//!   masked with the pairwise masks and its own mask ([`hanse_compute::secure`]);
//! - once every peer answered, the orchestrator asks each site to **unmask** with the list of peers that answered.
//!   A site reveals its own mask only if that list is the one its round named, and only once per round.
//!
//! A site that drops out before answering is left out: the others run the same round again with the smaller set of
//! peers, with fresh masks. A site that has revealed its own mask never runs that round again, and a site that ran a
//! round again never reveals for the earlier set, so no two sums of one round can be unmasked; the orchestrator
//! cannot subtract one from the other to isolate a site.

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Map, Value as Json, json};

use super::analysis::JobError;
use super::masking::{self as secure, Masks};
use super::{Compute, RESULT_TYP, Refused, refused};
use crate::store::JobRow;

/// The requests of one secure job are answered one at a time: on this replica under a lock of the job's, across
/// replicas under the job's lease (`secure-job:<id>`), which a request waits for while another replica answers.
#[derive(Default)]
pub struct Serial(std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>>);

/// How long a request of a secure job waits for another one of the same job.
const WAIT_FOR_ANOTHER: std::time::Duration = std::time::Duration::from_secs(120);

impl Serial {
    /// Waits until no other request of `job` is being answered, here or on another replica; answers the guards, or
    /// `None` when the other one did not end in time (or the store cannot hold leases now).
    pub async fn enter(
        &self,
        state: &Compute,
        job: &str,
    ) -> Option<(tokio::sync::OwnedMutexGuard<()>, crate::cluster::Held)> {
        let local = {
            let mut locks = self.0.lock().expect("secure job locks");
            locks.retain(|_, lock| lock.strong_count() > 0);
            match locks.get(job).and_then(std::sync::Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(job.to_owned(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        let deadline = tokio::time::Instant::now() + WAIT_FOR_ANOTHER;
        let local = tokio::time::timeout_at(deadline, local.lock_owned()).await.ok()?;
        let name = format!("secure-job:{job}");
        loop {
            if let Some(held) = state.plane.cluster.hold(&name).await {
                return Some((local, held));
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// The fewest sites a secure round may have: with one, its sum is its update. A site may ask for more
/// (`compute.secure_aggregation_min_sites`).
pub const FEWEST_SITES: usize = 2;
/// The most sites a round may name (a bound on the signatures, and the DID documents, a site checks per round).
const MOST_SITES: usize = 64;

/// The parameter that opts a job in.
pub fn requested(parameters: &Json) -> bool {
    parameters.get("secureAggregation").and_then(Json::as_bool) == Some(true)
}

/// How a step's result leaves the site.
pub enum Release {
    /// As computed (after disclosure control).
    Plain,
    /// Round 0 of a secure job: the terms and the site's public key.
    Key(String),
    /// A masked update for the sorted public keys of the round's sites; `moments`: the job's round 1 is the term
    /// moments (not under differential privacy, whose jobs release none).
    Masked { masks: Masks, peers: Vec<String>, moments: bool },
}

impl Release {
    /// The template's round for site round `round` (a secure job's round 1 is the moments, its round 2 the first of
    /// training, as a plain job's rounds 0 and 1; without moments the rounds are a plain job's).
    pub fn step_round(&self, round: u64) -> u64 {
        match self {
            Release::Masked { moments: true, .. } => round - 1,
            _ => round,
        }
    }

    /// What leaves the site of a step's output `out`.
    pub fn apply(&self, out: Json) -> Result<Json, JobError> {
        match self {
            Release::Plain => Ok(out),
            Release::Key(key) => {
                Ok(json!({"terms": out["terms"], "k": out["k"], "publicKey": key, "secureAggregation": true}))
            }
            Release::Masked { masks, peers, .. } => {
                let update = update_of(&out)?;
                let masked = secure::masked(&secure::encode(&update)?, masks);
                Ok(json!({"terms": out["terms"], "masked": secure::to_json(&masked), "sites": peers.len()}))
            }
        }
    }
}

/// A step's output as the vector the sites' sum is taken of: `[n, n·w…]` of a training round, `[n, sums…, squares…]`
/// of the moments, `[1, Δ…]` of a differentially private round (its noisy change, counted once per site).
fn update_of(out: &Json) -> Result<Vec<f64>, JobError> {
    let numbers = |name: &str| -> Vec<f64> {
        out[name].as_array().map(|a| a.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect()).unwrap_or_default()
    };
    if out.get("update").is_some() {
        return Ok([1.0].into_iter().chain(numbers("update")).collect());
    }
    if out.get("score").is_some() {
        // A `glm` round: `[n, deviance, score…, information…]` (the matrix row by row).
        let n = out["n"].as_f64().ok_or_else(|| JobError::Invalid("the step counted no rows".into()))?;
        let mut update = vec![n, out["deviance"].as_f64().unwrap_or(f64::NAN)];
        update.extend(numbers("score"));
        for row in out["information"].as_array().into_iter().flatten() {
            update.extend(row.as_array().into_iter().flatten().map(|v| v.as_f64().unwrap_or(f64::NAN)));
        }
        return Ok(update);
    }
    let n = out["n"].as_f64().ok_or_else(|| JobError::Invalid("the step counted no rows".into()))?;
    let mut update = vec![n];
    match out.get("weights") {
        Some(_) => update.extend(numbers("weights").iter().map(|w| n * w)),
        None => {
            update.extend(numbers("sums"));
            update.extend(numbers("squares"));
        }
    }
    Ok(update)
}

/// The site's X25519 private key for `job` (derived from the participant key, the consumer's job and our transfer).
fn private_key(state: &Compute, job: &JobRow) -> [u8; 32] {
    let context = format!(
        "hanse secure aggregation key\0{}\0{}",
        job.peer_job_id.as_deref().unwrap_or_default(),
        job.transfer_id.as_deref().unwrap_or_default()
    );
    state.identity.keys().derive(context.as_bytes())
}

/// The site's public key for `job`.
pub fn public_key(state: &Compute, job: &JobRow) -> Result<String, Refused> {
    hanse_keys::agree::public_key(&private_key(state, job)).map_err(|error| {
        tracing::error!(%error, "cannot derive a secure aggregation key");
        refused(StatusCode::SERVICE_UNAVAILABLE, "InternalError", "the job's key cannot be made now")
    })
}

fn invalid(reason: impl Into<String>) -> Refused {
    refused(StatusCode::BAD_REQUEST, "InvalidJob", reason)
}

/// The context that binds a seed to the job, the round and the set of sites.
fn context(label: &str, job: &JobRow, round: u64, peers: &[String]) -> Vec<u8> {
    let job_id = job.peer_job_id.as_deref().unwrap_or_default();
    format!("hanse secure aggregation {label}\0{job_id}\0{round}\0{}", peers.join(",")).into_bytes()
}

/// The site's own mask seed for `round` among `peers` (the same on every replica).
fn own_seed(state: &Compute, job: &JobRow, round: u64, peers: &[String]) -> [u8; 32] {
    let mut context = context("own", job, round, peers);
    context.extend(job.transfer_id.as_deref().unwrap_or_default().as_bytes());
    state.identity.keys().derive(&context)
}

/// The masks of round `round`, from the `peers` the orchestrator named: each a round-0 result another site (or this
/// one) signed for this job, checked against its signer's DID. Answers the masks and the round's sorted public keys.
pub async fn masks(
    state: &Arc<Compute>,
    job: &JobRow,
    round: u64,
    claims: &Map<String, Json>,
) -> Result<Release, Refused> {
    let named = claims.get("peers").and_then(Json::as_array).ok_or_else(|| {
        invalid("peers: a secure aggregation round names the round-0 results of its sites (signed JWTs)")
    })?;
    if named.len() > MOST_SITES {
        return Err(invalid(format!("peers: at most {MOST_SITES} sites")));
    }
    let own = public_key(state, job)?;
    let mut peers = Vec::with_capacity(named.len());
    for (i, jwt) in named.iter().enumerate() {
        let key = peer_key(state, job, jwt.as_str().unwrap_or_default())
            .await
            .map_err(|reason| invalid(format!("peers[{i}]: {reason}")))?;
        peers.push(key);
    }
    peers.sort();
    if peers.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(invalid("peers: a site is named twice"));
    }
    if !peers.contains(&own) {
        return Err(invalid("peers: this site's own key is not among them"));
    }
    let fewest = state.settings.secure_aggregation_min_sites.max(FEWEST_SITES);
    if peers.len() < fewest {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "TooFewSites",
            format!("this site takes part in secure aggregation among at least {fewest} sites, not {}", peers.len()),
        ));
    }
    let private = private_key(state, job);
    let mut pairs = Vec::with_capacity(peers.len() - 1);
    for peer in peers.iter().filter(|peer| **peer != own) {
        let shared = hanse_keys::agree::shared_secret(&private, peer).map_err(|e| invalid(format!("peers: {e}")))?;
        pairs.push((hanse_keys::agree::hmac(&shared, &context("pair", job, round, &peers)), own < *peer));
    }
    let masks = Masks { pairs, own: own_seed(state, job, round, &peers) };
    let moments = job.template == "fedavg" && job.body["parameters"].get("differentialPrivacy").is_none();
    Ok(Release::Masked { masks, peers, moments })
}

/// The public key in a peer's signed round-0 result for this job (to the same consumer), its signature checked.
async fn peer_key(state: &Arc<Compute>, job: &JobRow, jwt: &str) -> Result<String, String> {
    let (_, unverified) = hanse_keys::jose::peek(jwt).map_err(|e| e.to_string())?;
    let issuer = unverified.get("iss").and_then(Json::as_str).ok_or("the result names no issuer")?;
    // The consumer, who sees the masked updates, would know the seed it shares with every site.
    if Some(issuer) == job.counter_party_id.as_deref() {
        return Err("the consumer cannot be a site of its own job".into());
    }
    let signed = state.identity.verify_signed(jwt, RESULT_TYP, issuer).await?;
    let text = |name: &str| signed.get(name).and_then(Json::as_str);
    if text("job") != job.peer_job_id.as_deref()
        || text("aud") != job.counter_party_id.as_deref()
        || signed.get("round").and_then(Json::as_u64) != Some(0)
    {
        return Err("not a round-0 result of this job for this consumer".into());
    }
    let key = signed.get("result").and_then(|r| r.get("publicKey")).and_then(Json::as_str);
    Ok(key.ok_or("the result holds no public key")?.to_owned())
}

/// The round a secure job's site is in: `pending` is the last masked round it answered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    pub round: u64,
    pub peers: Vec<String>,
    pub length: usize,
    pub revealed: bool,
}

fn pending(job: &JobRow) -> Option<Pending> {
    serde_json::from_value(job.body["secure"]["pending"].clone()).ok()
}

/// Whether round `round` may run now: the next round once the last one was unmasked, or the last one again (with
/// another set of sites) while its own mask is not revealed.
pub fn may_run(job: &JobRow, round: u64) -> Result<(), Refused> {
    let next = job.rounds as u64;
    let wrong = |reason: String| Err(refused(StatusCode::CONFLICT, "WrongRound", reason));
    match pending(job) {
        Some(p) if p.round + 1 == next && !p.revealed && round == p.round => Ok(()),
        Some(p) if p.round + 1 == next && !p.revealed => {
            wrong(format!("round {} is not unmasked yet; it may only run again", p.round))
        }
        Some(p) if p.revealed && round == p.round => wrong(format!("round {round} was unmasked; it runs no more")),
        _ if round == next => Ok(()),
        _ => wrong(format!("the next round of this job is {next}")),
    }
}

/// Records on `job` the masked round just released.
pub fn answered(job: &mut JobRow, round: u64, release: &Release, released: &Json) {
    if let Release::Masked { peers, .. } = release {
        let length = released["masked"].as_array().map_or(0, Vec::len);
        job.body["secure"]["pending"] = json!(Pending { round, peers: peers.clone(), length, revealed: false });
    }
}

/// The site's own mask of round `round`, revealed once: `responded` (the sorted public keys of the sites that
/// answered) must be the round's set.
pub fn reveal(state: &Compute, job: &mut JobRow, round: u64, responded: &Json) -> Result<Json, Refused> {
    let Some(mut pending) = pending(job).filter(|p| p.round == round) else {
        return Err(refused(StatusCode::CONFLICT, "WrongRound", format!("round {round} has no masked answer here")));
    };
    if pending.revealed {
        return Err(refused(StatusCode::CONFLICT, "AlreadyUnmasked", format!("round {round} was unmasked before")));
    }
    let responded: Vec<String> = serde_json::from_value(responded.clone())
        .map_err(|_| invalid("unmask: the sorted public keys of the sites that answered"))?;
    if responded != pending.peers {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "SitesDiffer",
            format!(
                "round {round} ran among {} other sites; its mask is revealed only when all of them answered",
                pending.peers.len() - 1
            ),
        ));
    }
    let own = secure::mask(&own_seed(state, job, round, &pending.peers), pending.length);
    pending.revealed = true;
    job.body["secure"]["pending"] = json!(pending);
    Ok(json!({"ownMask": secure::to_json(&own)}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(rounds: i64, pending: Option<Pending>) -> JobRow {
        let mut body = json!({"secure": {"publicKey": "k"}});
        if let Some(pending) = pending {
            body["secure"]["pending"] = json!(pending);
        }
        JobRow {
            id: "j".into(),
            role: "provider".into(),
            peer_job_id: Some("c".into()),
            counter_party_id: None,
            agreement_id: None,
            transfer_id: None,
            template: "fedavg".into(),
            status: "open".into(),
            rounds,
            body,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn pending(round: u64, revealed: bool) -> Option<Pending> {
        Some(Pending { round, peers: vec!["a".into(), "b".into()], length: 3, revealed })
    }

    fn code(outcome: Result<(), Refused>) -> Option<String> {
        outcome.err().map(|refusal| format!("{refusal:?}"))
    }

    /// A round runs again only while its own mask is hidden; once revealed it runs no more, and the next round waits
    /// for the reveal.
    #[test]
    fn a_round_runs_again_only_until_its_own_mask_is_revealed() {
        // After round 0 (the key): round 1 is next, nothing else.
        assert!(may_run(&job(1, None), 1).is_ok());
        assert!(code(may_run(&job(1, None), 2)).unwrap().contains("WrongRound"));
        // Round 3 answered, not unmasked: it may run again (with another set), round 4 may not start.
        assert!(may_run(&job(4, pending(3, false)), 3).is_ok());
        assert!(code(may_run(&job(4, pending(3, false)), 4)).unwrap().contains("not unmasked yet"));
        // Round 3 unmasked: it runs no more; round 4 is next.
        assert!(code(may_run(&job(4, pending(3, true)), 3)).unwrap().contains("runs no more"));
        assert!(may_run(&job(4, pending(3, true)), 4).is_ok());
        assert!(code(may_run(&job(4, pending(3, true)), 2)).unwrap().contains("the next round of this job is 4"));
    }

    #[test]
    fn a_sites_update_is_its_row_count_and_weighted_weights_or_its_moments() {
        let training = json!({"n": 10, "weights": [0.5, -2.0]});
        assert_eq!(update_of(&training).unwrap(), vec![10.0, 5.0, -20.0]);
        let moments = json!({"n": 4, "sums": [4.0, 6.0], "squares": [4.0, 10.0]});
        assert_eq!(update_of(&moments).unwrap(), vec![4.0, 4.0, 6.0, 4.0, 10.0]);
        let masks = Masks { pairs: vec![], own: [7; 32] };
        let released =
            Release::Masked { masks, peers: vec!["a".into(), "b".into()], moments: true }.apply(training).unwrap();
        assert_eq!(released["masked"].as_array().unwrap().len(), 3);
        assert!(released.get("weights").is_none() && released.get("n").is_none(), "{released}");
        assert_eq!(update_of(&json!({"update": [0.25, -1.0]})).unwrap(), vec![1.0, 0.25, -1.0]);
    }
}
