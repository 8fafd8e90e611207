//! SQLite's hot write path: one thread runs the writes every DSP message causes — a process's state change with its
//! outgoing message and audit entries, a delivery's completion, a token id — as synchronous jobs, many to a
//! transaction (group commit).
//!
//! sqlx runs each SQLite statement on its connection's worker thread, so a transaction of eight statements is sixteen
//! hand-overs between threads, and the one writer connection stays taken while the task that holds it waits to be
//! scheduled between them. Here the thread takes the same writer connection from its pool (so the writes that stay
//! on sqlx queue behind it as before) for as long as jobs keep coming, up to [`HOLD`], locks its handle away from
//! sqlx's worker, and runs the jobs straight on the SQLite handle through rusqlite: one hand-over in and one out per
//! job, one commit per batch. Each job runs in its own savepoint, so a job that fails leaves the others of its batch
//! untouched; every job is answered after its batch commits, never before. Decision 0016.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use sqlx::SqlitePool;
use tokio::sync::oneshot;

use super::StoreError;
use super::statement::Statement;

/// The most jobs one transaction takes.
const MAX_BATCH: usize = 512;
/// How long the thread keeps the writer connection while jobs keep coming.
const HOLD: Duration = Duration::from_millis(20);

/// A write to run on the SQLite writer: the connection it gets is inside the batch's transaction.
type Work<T> = Box<dyn FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send>;

trait Job: Send {
    /// Runs the job in its own savepoint of the batch's transaction.
    fn run(&mut self, transaction: &mut rusqlite::Transaction<'_>);
    /// Answers the caller once the batch committed, or failed to.
    fn answer(self: Box<Self>, commit: &Result<(), String>);
}

struct Task<T> {
    work: Option<Work<T>>,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send> Job for Task<T> {
    fn run(&mut self, transaction: &mut rusqlite::Transaction<'_>) {
        let Some(work) = self.work.take() else { return };
        let outcome = match transaction.savepoint() {
            Ok(savepoint) => match work(&savepoint) {
                // A savepoint dropped without commit rolls back to where the job began.
                Ok(value) => savepoint.commit().map(|()| value).map_err(StoreError::from),
                Err(error) => Err(error),
            },
            Err(error) => Err(error.into()),
        };
        self.outcome = Some(outcome);
    }

    fn answer(self: Box<Self>, commit: &Result<(), String>) {
        let outcome = match (commit, self.outcome) {
            (Ok(()), Some(outcome)) => outcome,
            (Err(reason), Some(Ok(_)) | None) => Err(StoreError::Writer(reason.clone())),
            // The job's own failure says more than the batch's.
            (Err(_), Some(Err(error))) => Err(error),
            (Ok(()), None) => Err(StoreError::Writer("the job did not run".into())),
        };
        let _ = self.reply.send(outcome);
    }
}

/// The handle to the writer thread. The thread ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer thread on `pool`, the store's one-connection writer pool. Called from within the runtime
    /// that serves the store: the thread takes the connection through it, so that the pool's own tasks (returning the
    /// connection) run there.
    pub(crate) fn start(pool: SqlitePool) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new().name("hanse-sqlite-writer".into()).spawn(move || {
            while let Ok(first) = queue.recv() {
                let mut batch = vec![first];
                if let Err(reason) = runtime.block_on(hold(&pool, &queue, &mut batch)) {
                    for job in batch.drain(..) {
                        job.answer(&Err(reason.clone()));
                    }
                }
            }
        })?;
        Ok(Writer { jobs })
    }

    /// Runs `work` in the next batch; answers once that batch committed.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let task: Box<dyn Job> = Box::new(Task { work: Some(Box::new(work)), outcome: None, reply });
        self.jobs.send(task).map_err(|_| StoreError::Writer("the SQLite writer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Writer("the SQLite writer stopped before answering".into()))?
    }
}

/// Takes the writer connection and runs batches on it — `batch`, then whatever keeps arriving — for up to [`HOLD`];
/// then gives it back, so that the writes that stay on sqlx get their turn. Fails only if the connection cannot be
/// had, leaving `batch` to be answered with the reason.
async fn hold(
    pool: &SqlitePool,
    queue: &mpsc::Receiver<Box<dyn Job>>,
    batch: &mut Vec<Box<dyn Job>>,
) -> Result<(), String> {
    let mut connection = pool.acquire().await.map_err(|e| e.to_string())?;
    let mut locked = connection.lock_handle().await.map_err(|e| e.to_string())?;
    // SAFETY: while `locked` lives, sqlx's worker makes no call on this handle or its statements, so this is its only
    // user. rusqlite does not close a handle it did not open; `db` (with its cached statements, which it finalizes) is
    // dropped before `locked`, and every transaction below ends (committed or rolled back) before `db` is dropped, so
    // sqlx gets the handle back as it lent it.
    let mut db =
        unsafe { rusqlite::Connection::from_handle(locked.as_raw_handle().as_ptr()) }.map_err(|e| e.to_string())?;
    let until = Instant::now() + HOLD;
    loop {
        batch.extend(queue.try_iter().take(MAX_BATCH.saturating_sub(batch.len())));
        let commit = run_batch(&mut db, batch).map_err(|e| format!("the write batch did not commit: {e}"));
        for job in batch.drain(..) {
            job.answer(&commit);
        }
        if Instant::now() >= until {
            return Ok(());
        }
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => return Ok(()),
        }
    }
}

/// One transaction: every job of the batch, each in its own savepoint.
fn run_batch(db: &mut rusqlite::Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    let mut transaction = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for job in batch.iter_mut() {
        job.run(&mut transaction);
    }
    transaction.commit()
}

/// Runs a statement; answers the rows it changed.
pub(crate) fn execute(db: &rusqlite::Connection, statement: &Statement) -> Result<u64, StoreError> {
    let mut prepared = prepare(db, statement)?;
    Ok(prepared.raw_execute()? as u64)
}

/// Runs a statement that answers one row (`RETURNING`), read with `read`.
pub(crate) fn query_row<T>(
    db: &rusqlite::Connection,
    statement: &Statement,
    read: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<T, StoreError> {
    let mut prepared = prepare(db, statement)?;
    let mut rows = prepared.raw_query();
    let row = rows.next()?.ok_or_else(|| StoreError::Writer(format!("no row from `{}`", statement.sql)))?;
    Ok(read(row)?)
}

/// The statement prepared (from the cache) with its values bound. SQLite numbers `$N` parameters in order of first
/// appearance, not by `N`, so each value is bound by its parameter's name.
pub(crate) fn prepare<'db>(
    db: &'db rusqlite::Connection,
    statement: &Statement,
) -> Result<rusqlite::CachedStatement<'db>, StoreError> {
    let mut prepared = db.prepare_cached(&statement.sql)?;
    for (i, value) in statement.params.iter().enumerate() {
        if let Some(index) = prepared.parameter_index(&format!("${}", i + 1))? {
            prepared.raw_bind_parameter(index, value)?;
        }
    }
    Ok(prepared)
}
