//! Convergence: after any outage, both sides of a negotiation or transfer end in the same state.
//!
//! The dispatcher delivers every notice of an end (termination, FINALIZED, completion) until the peer takes it. This
//! task covers the rest: a process waiting for its peer, silent for `negotiation.peer_silence_seconds`, is
//! reconciled — a consumer asks the provider, which owns the process's DSP `GET`, and adopts the final state it
//! missed (TERMINATED; FINALIZED for a VERIFIED negotiation; COMPLETED for a STARTED transfer), or ends the process
//! when the provider has no such process. Past `negotiation.convergence_deadline_seconds` since its last change, a
//! process still waiting ends on this side with the reason, and the peer is told. A process held for the operator
//! (manual approval) waits for the operator, not the peer; a STARTED or SUSPENDED transfer is a steady state, asked
//! about but never ended for silence. ARCHITECTURE.md has the rules as a table.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::dsp::client::DspClient;
use crate::negotiation::Negotiations;
use crate::process::{PeerSays, ask_provider};
use crate::store::{ProcessKind, ProcessRow};
use crate::transfer::Transfers;

/// The states in which a process waits for its peer, per kind: reconciled when silent, ended at the deadline.
const WAITING: [(ProcessKind, &[&str]); 2] = [
    (ProcessKind::Negotiation, &["REQUESTED", "OFFERED", "ACCEPTED", "AGREED", "VERIFIED"]),
    (ProcessKind::Transfer, &["REQUESTED"]),
];
/// Steady states a consumer still asks the provider about (a completion or termination it may have missed).
const STEADY: [(ProcessKind, &[&str]); 2] =
    [(ProcessKind::Negotiation, &[]), (ProcessKind::Transfer, &["STARTED", "SUSPENDED"])];

/// How many processes one round looks at per kind.
const ROUND: i64 = 500;

/// The reconciliation settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub peer_silence: Duration,
    pub deadline: Duration,
}

/// What the reconciliation works with.
#[derive(Clone)]
pub struct Converge {
    pub negotiations: Negotiations,
    pub transfers: Transfers,
    pub dsp: DspClient,
    pub settings: Settings,
}

/// Whether this side's next move waits for the operator (its own, not the peer's).
fn held(kind: ProcessKind, row: &ProcessRow) -> bool {
    match kind {
        ProcessKind::Negotiation => crate::negotiation::Negotiation::from_row(row.clone()).is_ok_and(|n| n.held()),
        ProcessKind::Transfer => crate::transfer::Transfer::from_row(row.clone()).is_ok_and(|t| t.held()),
    }
}

/// Runs a round every quarter of the silence period (at most every minute) until shutdown.
pub fn spawn(converge: Converge, mut stop: watch::Receiver<bool>) {
    let period = (converge.settings.peer_silence / 4).clamp(Duration::from_millis(500), Duration::from_secs(60));
    tokio::spawn(async move {
        // When each process was last asked about: asked again only after another silence period.
        let mut asked: HashMap<String, Instant> = HashMap::new();
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => converge.round(&mut asked).await,
                _ = stop.changed() => return,
            }
        }
    });
}

impl Converge {
    async fn round(&self, asked: &mut HashMap<String, Instant>) {
        let now = chrono::Utc::now().timestamp_millis();
        let silent_since = now - self.settings.peer_silence.as_millis() as i64;
        asked.retain(|_, at| at.elapsed() < self.settings.peer_silence);
        for ((kind, waiting), (_, steady)) in WAITING.into_iter().zip(STEADY) {
            let states: Vec<&str> = waiting.iter().chain(steady).copied().collect();
            let rows = match self.transfers.store.silent(kind, &states, silent_since, ROUND).await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::error!(%error, "convergence: cannot read the processes waiting for their peers");
                    continue;
                }
            };
            for row in rows {
                if held(kind, &row) || asked.contains_key(&row.id) {
                    continue;
                }
                let overdue = now - row.updated_at > self.settings.deadline.as_millis() as i64;
                if overdue && waiting.contains(&row.state.as_str()) {
                    let reason = format!(
                        "the counter-party was silent for {} s after the last change (negotiation.convergence_deadline_seconds)",
                        (now - row.updated_at) / 1000
                    );
                    self.end(kind, &row.id, "PeerSilent", &reason, true).await;
                    self.count(kind, "deadline");
                } else if row.role == "consumer" {
                    asked.insert(row.id.clone(), Instant::now());
                    self.ask(kind, &row).await;
                }
            }
        }
    }

    /// Asks the provider for the state of a consumer process and adopts a final state this side missed.
    async fn ask(&self, kind: ProcessKind, row: &ProcessRow) {
        let says = ask_provider(&self.dsp, kind, row).await;
        let ours = row.state.as_str();
        let outcome = match (kind, says) {
            (_, PeerSays::State(theirs)) if theirs == "TERMINATED" => {
                let reason = "the provider reports the process TERMINATED; its notice never arrived";
                self.end(kind, &row.id, "TerminatedByPeer", reason, false).await;
                "terminated_by_peer"
            }
            (ProcessKind::Negotiation, PeerSays::State(theirs)) if theirs == "FINALIZED" && ours == "VERIFIED" => {
                if let Err(error) = self.negotiations.adopt_finalized(&row.id).await {
                    tracing::error!(%error, negotiation = row.id, "convergence: cannot finalize");
                }
                "finalized"
            }
            (ProcessKind::Transfer, PeerSays::State(theirs)) if theirs == "COMPLETED" && ours == "STARTED" => {
                if let Err(error) = self.transfers.adopt_completed(&row.id).await {
                    tracing::error!(%error, transfer = row.id, "convergence: cannot complete");
                }
                "completed"
            }
            (_, PeerSays::NoSuchProcess) => {
                let reason = "the provider has no such process";
                self.end(kind, &row.id, "UnknownToPeer", reason, false).await;
                "unknown_to_peer"
            }
            _ => return,
        };
        self.count(kind, outcome);
    }

    /// Counts a process convergence settled.
    fn count(&self, kind: ProcessKind, outcome: &str) {
        self.transfers
            .store
            .meter()
            .count("hanse_reconciliations_total", &[("kind", kind.name()), ("outcome", outcome)]);
    }

    /// Ends a process on this side; `notify_peer` queues a termination notice.
    async fn end(&self, kind: ProcessKind, id: &str, code: &str, reason: &str, notify_peer: bool) {
        let ended = match kind {
            ProcessKind::Negotiation => self.negotiations.terminate_locally(id, code, reason, notify_peer).await,
            ProcessKind::Transfer => self.transfers.end(id, code, reason, notify_peer).await,
        };
        if let Err(error) = ended {
            tracing::error!(%error, process = id, "convergence: cannot end the process");
        }
    }
}
