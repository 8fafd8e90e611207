//! The tamper-evident audit log: what auditors read to trust that nobody, the connector's operator included, rewrote
//! the history of contracts and data use.
//!
//! Every state change the log records is appended **in the transaction of the change** (the store does it: no event
//! without entry, no entry without event). Entries are canonical JSON (RFC 8785) with a sequence number and a time,
//! and carry digests and ids only, never personal data. They are the leaves of an RFC 9162 Merkle tree
//! ([`merkle`]); signed tree heads ([`head`]), inclusion and consistency proofs let anyone check the log offline
//! ([`verify`]). Both parties of an agreement hold a receipt for the other's entry of it ([`peer::send_receipts`]), and
//! connectors witness each other's tree heads ([`peer::witness`]).

pub mod peer;

pub use hanse_audit::{Event, canonical_digest, denial_trace, head, merkle, verify};

use serde_json::{Value as Json, json};

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use self::head::TreeHead;
use self::merkle::Hash;
use crate::identity::Identity;
use crate::store::{AuditStore, Processes, StoreError};

/// The audit log's service: signed heads, proofs, exports, receipts to and from counter-parties, and the witnessing
/// of peers' logs. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    store: AuditStore,
    /// The agreements a receipt must match.
    processes: Processes,
    identity: Arc<Identity>,
    /// The client for peers' extension endpoints.
    http: reqwest::Client,
    /// Logs witnessed besides our counter-parties' (`audit.witness`).
    witness: Vec<String>,
    /// Inconsistent tree heads witnessed since start (split views, rewritten or rolled-back peer logs).
    inconsistencies: Arc<AtomicU64>,
}

/// Why a proof cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("{0}")]
    Range(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuditLog {
    pub fn new(
        store: AuditStore,
        processes: Processes,
        identity: Arc<Identity>,
        http: reqwest::Client,
        witness: Vec<String>,
    ) -> AuditLog {
        AuditLog { store, processes, identity, http, witness, inconsistencies: Arc::default() }
    }

    /// Inconsistent tree heads witnessed since start.
    pub fn inconsistencies(&self) -> u64 {
        self.inconsistencies.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The signed head of the log as it is now (signed once per size and kept).
    pub async fn current_head(&self) -> Result<TreeHead, StoreError> {
        let frontier = self.store.audit_frontier().await?;
        self.head_of(frontier.size, &frontier.root()).await
    }

    /// The signed head of size `size` with root `root`: the one kept, or a new one.
    async fn head_of(&self, size: u64, root: &Hash) -> Result<TreeHead, StoreError> {
        if let Some(kept) = self.store.signed_head(size).await?
            && let Ok(head) = head::read(&kept.jws)
        {
            return Ok(head);
        }
        let head = head::sign(&self.identity.keys(), size, root, crate::store::now_millis());
        self.store
            .keep_signed_head(&crate::store::SignedHead {
                size: size as i64,
                root: root.to_vec(),
                signed_at: head.timestamp,
                jws: head.jws.clone(),
            })
            .await?;
        // Another writer may have signed the same size first: the kept one is the one handed out.
        Ok(match self.store.signed_head(size).await? {
            Some(kept) => head::read(&kept.jws).unwrap_or(head),
            None => head,
        })
    }
}

impl AuditLog {
    /// Recomputes the stored log and holds every stored part to it (`hanse_audit::check`). A fault seals the log —
    /// the store refuses every change it would record — and is logged, counted (`hanse_audit_intact` 0) and shown by
    /// `/health/ready`. Answers what the check found; `Err` only when the store could not be read.
    pub async fn self_check(&self) -> Result<crate::store::SelfCheck, StoreError> {
        let meter = self.store.meter();
        let started = std::time::Instant::now();
        let checked = self.store.self_check(self.identity.did(), &self.identity.keys().all()).await;
        meter.observe("hanse_audit_self_check_duration_seconds", &[], started.elapsed().as_secs_f64());
        let outcome = match &checked {
            Ok(crate::store::SelfCheck { fault: None, size }) => {
                tracing::info!(
                    entries = size,
                    seconds = started.elapsed().as_secs_f64(),
                    "audit log self-check: intact"
                );
                meter.set("hanse_audit_intact", &[], 1.0);
                "intact"
            }
            Ok(crate::store::SelfCheck { fault: Some(fault), .. }) => {
                tracing::error!(%fault, "audit log self-check: the stored log was altered; it is sealed and changes it would record are refused");
                self.store.seal(fault.to_string());
                meter.set("hanse_audit_intact", &[], 0.0);
                "fault"
            }
            Err(error) => {
                tracing::error!(%error, "audit log self-check: the store could not be read");
                "error"
            }
        };
        meter.count("hanse_audit_self_checks_total", &[("outcome", outcome)]);
        checked
    }
}

/// Runs the self-check every `period` until shutdown (the start-up check ran before the connector served).
pub fn spawn_self_check(log: AuditLog, period: std::time::Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    if period.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    // A sealed log stays sealed: checking it again finds the same fault.
                    if log.store.sealed().is_none() {
                        let _ = log.self_check().await;
                    }
                }
                _ = stop.changed() => return,
            }
        }
    });
}

/// Reads perfect blocks and hashes ranges into a proof.
async fn prove(store: &AuditStore, ranges: &[(u64, u64)]) -> Result<Vec<Hash>, ProofError> {
    let blocks = store.audit_blocks(&merkle::blocks_for(ranges)).await?;
    merkle::proof(ranges, &|id| blocks.get(&id).copied())
        .ok_or_else(|| ProofError::Store(StoreError::Corrupt("a block of the audit tree is missing".into())))
}

/// The inclusion proof of entry `seq` in the log's first `size` entries.
pub async fn inclusion_proof(store: &AuditStore, seq: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
    if seq >= size {
        return Err(ProofError::Range(format!("entry {seq} is not among the first {size}")));
    }
    prove(store, &merkle::inclusion_ranges(size, seq)).await
}

/// The consistency proof between the log's first `from` and first `to` entries (`0 < from ≤ to ≤ size`).
pub async fn consistency_proof(store: &AuditStore, from: u64, to: u64) -> Result<Vec<Hash>, ProofError> {
    let size = store.audit_frontier().await?.size;
    if from == 0 || from > to || to > size {
        return Err(ProofError::Range(format!("a consistency proof needs 0 < from ≤ to ≤ {size}")));
    }
    if from == to {
        return Ok(Vec::new());
    }
    prove(store, &merkle::consistency_ranges(from, to)).await
}

/// Where an export stream is.
enum Stage {
    Header(String),
    Entries(u64),
    Done,
}

impl AuditLog {
    /// An entry with its inclusion proof in the current signed head.
    pub async fn proven_entry(&self, seq: u64) -> Result<Option<Json>, ProofError> {
        let head = self.current_head().await?;
        let Some(entry) = self.store.audit_range(seq, seq + 1).await?.pop() else { return Ok(None) };
        let proof = inclusion_proof(&self.store, seq, head.size).await?;
        Ok(Some(json!({
            "seq": seq,
            "entry": serde_json::from_str::<Json>(&entry.entry).unwrap_or(Json::Null),
            "canonical": entry.entry,
            "treeHead": head.to_json(),
            "inclusionProof": proof.iter().map(merkle::to_hex).collect::<Vec<_>>(),
        })))
    }

    /// The export of entries `[from, to)` as JSON Lines, streamed in pages (each item ends with a newline): the header,
    /// the entries, and the signed heads of the range (the head of size `to` is signed first if it was not yet).
    pub async fn export(
        &self,
        from: u64,
        to: u64,
    ) -> Result<impl futures_util::Stream<Item = Result<String, StoreError>> + Send + use<>, ProofError> {
        let size = self.store.audit_frontier().await?.size;
        if from > to || to > size {
            return Err(ProofError::Range(format!("an export needs from ≤ to ≤ {size}")));
        }
        let root = self
            .store
            .audit_root_at(to)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a stored root is missing".into()))?;
        self.head_of(to, &root).await?;
        // Every key the log ever signed with: heads signed before a rotation verify with the retired key.
        let keys = self.identity.keys().every();
        let frontier = self.store.audit_frontier_at(from).await?;
        let header = verify::header_line(self.identity.did(), from, &keys, &frontier);
        let log = self.clone();
        Ok(futures_util::stream::unfold(Stage::Header(header), move |stage| {
            let log = log.clone();
            async move {
                let (chunk, next) = match stage {
                    Stage::Header(line) => (Ok(line + "\n"), Stage::Entries(from)),
                    Stage::Entries(next) if next < to => {
                        match log.store.audit_range(next, (next + 5_000).min(to)).await {
                            Ok(page) if !page.is_empty() => {
                                let after = page.last().map_or(to, |e| e.seq as u64 + 1);
                                let mut text = String::new();
                                for entry in &page {
                                    let root: Hash = entry.root.as_slice().try_into().unwrap_or_default();
                                    text.push_str(&verify::entry_line(entry.seq as u64, &root, &entry.entry));
                                    text.push('\n');
                                }
                                (Ok(text), Stage::Entries(after))
                            }
                            Ok(_) => (Err(StoreError::Corrupt(format!("audit entry {next} is missing"))), Stage::Done),
                            Err(error) => (Err(error), Stage::Done),
                        }
                    }
                    Stage::Entries(_) => match log.store.signed_heads(from, to).await {
                        Ok(heads) => {
                            (Ok(heads.iter().map(|h| verify::head_line(&h.jws) + "\n").collect()), Stage::Done)
                        }
                        Err(error) => (Err(error), Stage::Done),
                    },
                    Stage::Done => return None,
                };
                Some((chunk, next))
            }
        }))
    }
}

/// One line a person reads for an entry as the management API lists it (`hanse audit show`).
pub fn summary(item: &Json) -> String {
    let entry = &item["entry"];
    let text = |name: &str| entry.get(name).and_then(Json::as_str).unwrap_or("-");
    let what = match text("type") {
        "negotiation.transition" | "transfer.transition" => {
            let sent =
                entry.pointer("/sent/type").and_then(Json::as_str).map(|t| format!(", sent {t}")).unwrap_or_default();
            let from = entry.get("from").and_then(Json::as_str).unwrap_or("(new)");
            format!("{} {} {from} -> {}{sent}", text("role"), text("process"), text("to"))
        }
        "contract.agreement" => format!("agreement {} (sha-256 {})", text("agreement"), text("agreementDigest")),
        "data.pull" | "data.push" => format!("{} under transfer {}", text("type"), text("transfer")),
        "data.bytes" => format!(
            "{} bytes sent under transfer {}{}",
            entry.get("bytes").and_then(Json::as_u64).unwrap_or(0),
            text("transfer"),
            entry.get("digest").and_then(Json::as_str).map(|d| format!(" (sha-256 {d})")).unwrap_or_default()
        ),
        "policy.denial" => format!("denied ({}) during {}", text("code"), text("during")),
        other => other.to_owned(),
    };
    format!("{:>8}  {}  {:<24} {what}", item["seq"], text("at"), text("type"))
}
