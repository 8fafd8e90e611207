//! PostgreSQL's hot write path: the writes every DSP message causes (a process's state change with its outgoing
//! message, audit entries and token id, a delivery's completion, data plane usage) are queued to one task per
//! connector, which runs whatever has queued in one transaction (group commit), as the SQLite writer thread does
//! (decision 0019).
//!
//! One at a time, each such write was a transaction of its own: about eight round trips to the server and a WAL
//! flush, with the audited ones queued on the audit head row until their commit. In a batch, the head row is locked
//! once (`FOR UPDATE`) and written back once, and one commit flushes every write of the batch. Jobs run straight in
//! the transaction; when one fails, the transaction is rolled back and the batch runs again with each job in its own
//! savepoint, so a job that fails leaves the others of its batch untouched. Every job is answered after its batch
//! commits, never before. Other processes on the same database append through the same head row lock, so entries stay
//! gapless and ordered across processes.

use sqlx::{Acquire, PgPool};
use tokio::sync::{mpsc, oneshot};

use super::audit::BatchHead;
use super::{StoreError, Write};

/// The most jobs one transaction takes.
const MAX_BATCH: usize = 256;

struct Job {
    write: Write,
    outcome: Option<Result<u64, StoreError>>,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

impl Job {
    fn answer(self, commit: &Result<(), String>) {
        let _ = self.reply.send(super::writer::answer(commit, self.outcome));
    }
}

/// The handle to the writer task. The task ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct PgWriter {
    jobs: mpsc::UnboundedSender<Job>,
}

impl PgWriter {
    /// Starts the writer task on the current runtime; its batches take connections from `pool`.
    pub(crate) fn start(pool: PgPool, batches: super::BatchMeter) -> PgWriter {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let started = std::time::Instant::now();
                let commit =
                    run_batch(&pool, &mut batch).await.map_err(|e| format!("the write batch did not commit: {e}"));
                batches.batch(batch.len(), started);
                for job in batch {
                    job.answer(&commit);
                }
            }
        });
        PgWriter { jobs }
    }

    /// Runs `write` in the next batch; answers once that batch committed.
    pub(crate) async fn run(&self, write: Write) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { write, outcome: None, reply })
            .map_err(|_| StoreError::Writer("the PostgreSQL writer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Writer("the PostgreSQL writer stopped before answering".into()))?
    }
}

/// How often a batch that PostgreSQL chose as a deadlock's victim runs again before its jobs run one by one.
const DEADLOCK_RETRIES: usize = 3;

/// One transaction for every job of the batch: straight, and if a job fails, again with a savepoint per job. A batch
/// that will append to the audit log takes the log's head row first (see [`BatchHead::lock_pg`]); a batch that lost a
/// deadlock anyway (with a writer that appends nothing, of another replica) runs again whole.
async fn run_batch(pool: &PgPool, batch: &mut [Job]) -> Result<(), StoreError> {
    let appends = batch.iter().any(|job| job.write.appends());
    for attempt in 0..=DEADLOCK_RETRIES {
        let (mut transaction, mut head) = begin(pool, appends).await?;
        let mut failed = None;
        for job in batch.iter_mut() {
            let outcome = job.write.apply_pg(&mut transaction, &mut head).await;
            if let Err(error) = &outcome {
                failed = Some(error.is_deadlock());
            }
            job.outcome = Some(outcome);
            if failed.is_some() {
                break;
            }
        }
        match failed {
            None => {
                head.write_back_pg(&mut transaction).await?;
                return Ok(transaction.commit().await?);
            }
            Some(true) if attempt < DEADLOCK_RETRIES => transaction.rollback().await?,
            Some(_) => {
                transaction.rollback().await?;
                break;
            }
        }
    }
    let (mut transaction, mut head) = begin(pool, appends).await?;
    for job in batch.iter_mut() {
        let before = head.clone();
        let mut savepoint = transaction.begin().await?;
        let outcome = job.write.apply_pg(&mut savepoint, &mut head).await;
        if outcome.is_ok() {
            savepoint.commit().await?;
        } else {
            // The head row stays locked (it was taken before the first savepoint); its in-memory state goes back.
            savepoint.rollback().await?;
            head = before;
        }
        job.outcome = Some(outcome);
    }
    head.write_back_pg(&mut transaction).await?;
    Ok(transaction.commit().await?)
}

/// A batch's transaction and head, the head row already locked when the batch `appends`.
async fn begin(
    pool: &PgPool,
    appends: bool,
) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, BatchHead), StoreError> {
    let mut transaction = pool.begin().await?;
    let mut head = BatchHead::default();
    if appends {
        head.lock_pg(&mut transaction).await?;
    }
    Ok((transaction, head))
}
