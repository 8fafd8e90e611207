//! SQLite's hot write path: one thread runs the writes every DSP message causes — a process's state change with its
//! outgoing message and audit entries, a delivery's completion, a token id — as synchronous jobs, many to a
//! transaction (group commit).
//!
//! sqlx runs each SQLite statement on its connection's worker thread, so a transaction of eight statements is sixteen
//! hand-overs between threads, and the one writer connection stays taken while the task that holds it waits to be
//! scheduled between them. Here the thread takes the same writer connection from its pool (so the writes that stay
//! on sqlx queue behind it as before) for as long as jobs keep coming, up to [`HOLD`], locks its handle away from
//! sqlx's worker, and runs the jobs straight on the SQLite handle through rusqlite: one hand-over in and one out per
//! job, one commit per batch. Jobs run straight in the batch's transaction; when one fails, the transaction is rolled
//! back and the batch runs again with each job in its own savepoint, so a job that fails leaves the others of its
//! batch untouched. Every job is answered after its batch commits, never before. Decision 0016.
//!
//! Every commit writes the pages its jobs share (the audit head, the ends of the indexes) once, so bigger batches
//! write fewer pages per job: while the connector is busy (the last batch had [`BUSY_BATCH`] jobs or more), a batch
//! waits up to [`GATHER`] to fill. The audit head is read once per batch, moved in memory by each job's append
//! ([`BatchHead`]) and written back before the commit. Decision 0017.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sqlx::SqlitePool;
use tokio::sync::oneshot;

use super::StoreError;
use super::audit::BatchHead;

/// The most jobs one transaction takes.
const MAX_BATCH: usize = 512;
/// How long the thread keeps the writer connection while jobs keep coming (and no write on sqlx waits for it).
const HOLD: Duration = Duration::from_millis(100);
/// How long the thread waits for the next job before it gives the connection back.
const LINGER: Duration = Duration::from_millis(2);
/// A batch of this many jobs means the connector is busy: the next batch gathers ([`gather`]; PostgreSQL's writer
/// likewise).
pub(crate) const BUSY_BATCH: usize = 4;
/// How many jobs a gathering batch waits for, and for how long at most.
pub(crate) const GATHER_TO: usize = 16;
pub(crate) const GATHER: Duration = Duration::from_millis(1);

/// A write to run on the SQLite writer: the connection it gets is inside the batch's transaction, with the batch's
/// audit head. It may run more than once (a batch in which another job failed runs again), so it must do nothing but
/// its statements.
type Work<T> = Box<dyn FnMut(&rusqlite::Connection, &mut BatchHead) -> Result<T, StoreError> + Send>;

trait Job: Send {
    /// Runs the job in the batch's transaction; answers whether it succeeded.
    fn run(&mut self, db: &rusqlite::Connection, head: &mut BatchHead) -> bool;
    /// Runs the job in its own savepoint, so that its failure undoes only its own statements (and leaves `head` as
    /// it was).
    fn run_alone(&mut self, transaction: &mut rusqlite::Transaction<'_>, head: &mut BatchHead);
    /// Answers the caller once the batch committed, or failed to.
    fn answer(self: Box<Self>, commit: &Result<(), String>);
}

struct Task<T> {
    work: Work<T>,
    outcome: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T: Send> Job for Task<T> {
    fn run(&mut self, db: &rusqlite::Connection, head: &mut BatchHead) -> bool {
        let outcome = (self.work)(db, head);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn run_alone(&mut self, transaction: &mut rusqlite::Transaction<'_>, head: &mut BatchHead) {
        let before = head.clone();
        let outcome = match transaction.savepoint() {
            Ok(savepoint) => match (self.work)(&savepoint, head) {
                // A savepoint dropped without commit rolls back to where the job began.
                Ok(value) => savepoint.commit().map(|()| value).map_err(StoreError::from),
                Err(error) => Err(error),
            },
            Err(error) => Err(error.into()),
        };
        if outcome.is_err() {
            *head = before;
        }
        self.outcome = Some(outcome);
    }

    fn answer(self: Box<Self>, commit: &Result<(), String>) {
        let _ = self.reply.send(answer(commit, self.outcome));
    }
}

/// What a job of a batch is answered, given how the batch's commit went and how the job itself went.
pub(super) fn answer<T>(commit: &Result<(), String>, outcome: Option<Result<T, StoreError>>) -> Result<T, StoreError> {
    match (commit, outcome) {
        (Ok(()), Some(outcome)) => outcome,
        (Err(reason), Some(Ok(_)) | None) => Err(StoreError::Writer(reason.clone())),
        // The job's own failure says more than the batch's.
        (Err(_), Some(Err(error))) => Err(error),
        (Ok(()), None) => Err(StoreError::Writer("the job did not run".into())),
    }
}

/// The handle to the writer thread. The thread ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
    /// How many writes on sqlx want the writer connection now: the thread gives it back after its current batch.
    waiting: Arc<AtomicUsize>,
}

/// A write on sqlx wanting the writer connection, from [`Writer::wanted`] until dropped.
pub(crate) struct Wanted(Arc<AtomicUsize>);

impl Drop for Wanted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Writer {
    /// Starts the writer thread on `pool`, the store's one-connection writer pool. Called from within the runtime
    /// that serves the store: the thread takes the connection through it, so that the pool's own tasks (returning the
    /// connection) run there.
    pub(crate) fn start(pool: SqlitePool, batches: super::BatchMeter) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        let waiting = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Handle::current();
        let wanted = waiting.clone();
        std::thread::Builder::new().name("hanse-sqlite-writer".into()).spawn(move || {
            let mut last_batch = 0;
            while let Ok(first) = queue.recv() {
                let mut batch = vec![first];
                if let Err(reason) =
                    runtime.block_on(hold(&pool, &queue, &wanted, &batches, &mut batch, &mut last_batch))
                {
                    for job in batch.drain(..) {
                        job.answer(&Err(reason.clone()));
                    }
                }
            }
        })?;
        Ok(Writer { jobs, waiting })
    }

    /// Marks a write on sqlx as wanting the writer connection (while the answer lives), so that the thread gives the
    /// connection back after its current batch instead of at the end of [`HOLD`].
    pub(crate) fn wanted(&self) -> Wanted {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        Wanted(self.waiting.clone())
    }

    /// Runs `work` in the next batch; answers once that batch committed.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnMut(&rusqlite::Connection, &mut BatchHead) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let task: Box<dyn Job> = Box::new(Task { work: Box::new(work), outcome: None, reply });
        self.jobs.send(task).map_err(|_| StoreError::Writer("the SQLite writer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Writer("the SQLite writer stopped before answering".into()))?
    }
}

/// While busy, lets the batch fill up to [`GATHER_TO`] jobs for at most [`GATHER`]: the pages every commit writes
/// (the audit head, the ends of the indexes) are shared by more jobs.
fn gather(queue: &mpsc::Receiver<Box<dyn Job>>, batch: &mut Vec<Box<dyn Job>>) {
    let deadline = Instant::now() + GATHER;
    while batch.len() < GATHER_TO {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else { return };
        match queue.recv_timeout(left) {
            Ok(job) => batch.push(job),
            Err(_) => return,
        }
    }
}

/// Takes the writer connection and runs batches on it — `batch`, then whatever keeps arriving — for up to [`HOLD`],
/// or until a write on sqlx wants the connection (`wanted` is not zero); then gives it back. Fails only if the
/// connection cannot be had, leaving `batch` to be answered with the reason.
async fn hold(
    pool: &SqlitePool,
    queue: &mpsc::Receiver<Box<dyn Job>>,
    wanted: &AtomicUsize,
    batches: &super::BatchMeter,
    batch: &mut Vec<Box<dyn Job>>,
    last_batch: &mut usize,
) -> Result<(), String> {
    let mut connection = pool.acquire().await.map_err(|e| e.to_string())?;
    let mut locked = connection.lock_handle().await.map_err(|e| e.to_string())?;
    // SAFETY: while `locked` lives, sqlx's worker makes no call on this handle or its statements, so this is its only
    // user. rusqlite does not close a handle it did not open; `db` (with its cached statements, which it finalizes) is
    // dropped before `locked`, and every transaction below ends (committed or rolled back) before `db` is dropped, so
    // sqlx gets the handle back as it lent it.
    let mut db =
        unsafe { rusqlite::Connection::from_handle(locked.as_raw_handle().as_ptr()) }.map_err(|e| e.to_string())?;
    db.set_prepared_statement_cache_capacity(super::STATEMENTS_KEPT);
    let until = Instant::now() + HOLD;
    loop {
        if *last_batch >= BUSY_BATCH {
            gather(queue, batch);
        }
        batch.extend(queue.try_iter().take(MAX_BATCH.saturating_sub(batch.len())));
        *last_batch = batch.len();
        let started = Instant::now();
        let commit = run_batch(&mut db, batch).map_err(|e| format!("the write batch did not commit: {e}"));
        batches.batch(batch.len(), started);
        for job in batch.drain(..) {
            job.answer(&commit);
        }
        let now = Instant::now();
        if now >= until || wanted.load(Ordering::Acquire) > 0 {
            return Ok(());
        }
        // Taking the connection again costs a round trip through the runtime; a short lull keeps it.
        match queue.recv_timeout(LINGER.min(until - now)) {
            Ok(job) => batch.push(job),
            Err(_) => return Ok(()),
        }
    }
}

/// One transaction for every job of the batch. Jobs rarely fail, so they first run straight in it; if one does, the
/// transaction is rolled back and the batch runs again with each job in its own savepoint (a savepoint copies every
/// page its job changes, which is wasted work when nothing fails). The audit head the jobs moved is written back
/// once, before the commit.
fn run_batch(db: &mut rusqlite::Connection, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    let transaction = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut head = BatchHead::default();
    if batch.iter_mut().all(|job| job.run(&transaction, &mut head)) {
        head.write_back(&transaction)?;
        return Ok(transaction.commit()?);
    }
    transaction.rollback()?;
    let mut transaction = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut head = BatchHead::default();
    for job in batch.iter_mut() {
        job.run_alone(&mut transaction, &mut head);
    }
    head.write_back(&transaction)?;
    Ok(transaction.commit()?)
}

#[cfg(test)]
mod tests {
    use super::super::statement::{Param, Statement};
    use super::super::{Store, TokenUse};
    use std::str::FromStr;

    use crate::testing::{Backend, TestDatabase, backends};

    fn use_of(key: &str) -> TokenUse {
        TokenUse { key: key.to_owned(), expires_at: i64::MAX }
    }

    fn token(key: &str) -> Statement {
        Statement::new(
            "INSERT INTO token_ids (token_key, expires_at) VALUES ($1, $2)",
            vec![Param::from(key), Param::from(i64::MAX)],
        )
    }

    /// Forty writes sent together, each a token id with the audit entries `events` gives it; the 17th repeats a
    /// token id already taken. Answers the store (on `database`) and each write's outcome.
    async fn forty_writes(
        database: &TestDatabase,
        events: impl Fn(usize) -> Vec<hanse_audit::Event>,
    ) -> (Store, Vec<Result<u64, crate::StoreError>>) {
        let writes = (0..40)
            .map(|i| {
                let key = if i == 17 { "taken".to_owned() } else { format!("fresh-{i}") };
                Together { statement: Some(token(&key)), events: events(i), token: None, claim: None }
            })
            .collect();
        together(database, writes).await
    }

    /// One write of [`together`]: a statement, audit entries, a token id to record.
    struct Together {
        statement: Option<Statement>,
        events: Vec<hanse_audit::Event>,
        token: Option<TokenUse>,
        claim: Option<Statement>,
    }

    /// An idempotency key's claim, as a management call makes it.
    fn claim(key: &str) -> Statement {
        Statement::new(
            "INSERT INTO idempotency_keys (scope, key, digest, resource, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (scope, key) DO NOTHING",
            vec![Param::from("test"), Param::from(key), Param::from("digest"), Param::from("resource"), Param::from(0)],
        )
    }

    /// Sends `writes` together to a store on `database` whose token id `taken` is recorded and whose idempotency key
    /// `claimed` is claimed already; answers the store
    /// and each write's outcome.
    async fn together(database: &TestDatabase, writes: Vec<Together>) -> (Store, Vec<Result<u64, crate::StoreError>>) {
        use sqlx::Connection;
        let store = database.open().await;
        store.pool.write(Some(token("taken")), Vec::new(), None, Some(claim("claimed"))).await.unwrap();
        // Another connection holds the token table while the writes queue, so that they meet in a batch behind the
        // first one instead of trickling through one by one.
        let blocker: Box<dyn std::any::Any + Send> = match database.backend {
            Backend::Sqlite => {
                let mut other = sqlx::SqliteConnection::connect(&database.url).await.unwrap();
                sqlx::query("BEGIN IMMEDIATE").execute(&mut other).await.unwrap();
                Box::new(other)
            }
            Backend::Postgres => {
                let options = sqlx::postgres::PgConnectOptions::from_str(&database.url).unwrap();
                let schema = database.schema.as_deref().unwrap();
                let mut other =
                    sqlx::PgConnection::connect_with(&options.options([("search_path", schema)])).await.unwrap();
                sqlx::query("BEGIN").execute(&mut other).await.unwrap();
                sqlx::query("LOCK TABLE token_ids IN EXCLUSIVE MODE").execute(&mut other).await.unwrap();
                Box::new(other)
            }
        };
        // Queued one after another, in order (a write joins the queue when its task first runs).
        let mut queued = Vec::new();
        for write in writes {
            let store = store.clone();
            queued.push(tokio::spawn(async move {
                store.pool.write(write.statement, write.events, write.token.as_ref(), write.claim).await
            }));
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        drop(blocker);
        let mut outcomes = Vec::new();
        for write in queued {
            outcomes.push(write.await.unwrap());
        }
        (store, outcomes)
    }

    /// The log's entries, checked to be gapless and to carry the roots of their own chain.
    async fn chained_entries(store: &Store) -> Vec<crate::AuditEntry> {
        use hanse_audit::merkle::{Frontier, leaf_hash};
        let filter = crate::AuditFilter { limit: 1000, ..Default::default() };
        let entries = store.audit.audit_entries(&filter).await.unwrap();
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), (0..entries.len() as i64).collect::<Vec<_>>());
        let mut frontier = Frontier::default();
        for entry in &entries {
            frontier.push(leaf_hash(entry.entry.as_bytes()));
            assert_eq!(frontier.root(), entry.root, "entry {}", entry.seq);
        }
        assert_eq!(store.audit.audit_frontier().await.unwrap(), frontier);
        entries
    }

    /// Writes sent together share batches; the one that fails is answered with its own error and the others commit.
    /// On both backends: the PostgreSQL writer batches as the SQLite one does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_leaves_the_rest_of_its_batch_committed() {
        for backend in backends() {
            a_failing_write_leaves_the_rest_on(backend).await;
        }
    }

    async fn a_failing_write_leaves_the_rest_on(backend: Backend) {
        let database = TestDatabase::new(backend);
        let (store, outcomes) = forty_writes(&database, |_| Vec::new()).await;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(changed) => assert_eq!((i, changed), (i, 1)),
                Err(error) => assert!(i == 17 && error.is_unique_violation(), "write {i}: {error}"),
            }
        }
        for i in (0..40).filter(|i| *i != 17) {
            assert!(
                !store.identity.remember_token(&use_of(&format!("fresh-{i}"))).await.unwrap(),
                "fresh-{i} was lost"
            );
        }
        assert!(store.identity.remember_token(&use_of("fresh-17")).await.unwrap());
    }

    /// The audit entries of a batch's writes chain on one head kept in memory; a write that fails takes its entry
    /// with it and leaves no gap, and the log's roots are those of its entries.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn audited_writes_of_a_batch_chain_on_one_head_and_a_failed_one_leaves_no_gap() {
        for backend in backends() {
            audited_writes_chain_on(backend).await;
        }
    }

    async fn audited_writes_chain_on(backend: Backend) {
        use hanse_audit::Event;
        let database = TestDatabase::new(backend);
        let (store, outcomes) =
            forty_writes(&database, |i| vec![Event::new("test.write", serde_json::json!({"write": i}))]).await;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            assert_eq!(outcome.is_ok(), i != 17, "write {i}: {outcome:?}");
        }
        let entries = chained_entries(&store).await;
        assert_eq!(entries.len(), 39);
        assert!(!entries.iter().any(|e| e.entry.contains(r#""write":17"#)), "the failed write left its entry");
    }

    /// In one batch, a write whose statement changes no row records neither its token id nor its entries; a write
    /// whose token id was seen before (in an earlier batch, or earlier in the same one) is answered `Replayed`, one
    /// whose idempotency key was claimed before (likewise) `Claimed`, and a write that is both is a replay; each leaves
    /// nothing; the others commit with their entries chained in order. The answers are those of writes made one at a
    /// time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_a_batch_writes_that_change_nothing_replay_a_token_or_reuse_a_key_leave_nothing() {
        for backend in backends() {
            let database = TestDatabase::new(backend);
            let nothing = || Statement::new("UPDATE token_ids SET expires_at = 0 WHERE token_key = 'absent'", vec![]);
            let writes = (0..30)
                .map(|i| {
                    let events = vec![hanse_audit::Event::new("test.write", serde_json::json!({"write": i}))];
                    let (statement, token, key) = match i {
                        _ if i % 3 == 1 => (nothing(), Some(use_of(&format!("lost-{i}"))), None),
                        5 | 8 => (token(&format!("fresh-{i}")), None, Some(claim("once"))),
                        11 => (token("fresh-11"), None, Some(claim("claimed"))),
                        17 => (token("fresh-17"), Some(use_of("taken")), Some(claim("claimed"))),
                        20 => (token("fresh-20"), Some(use_of("taken")), None),
                        23 | 26 => (token(&format!("fresh-{i}")), Some(use_of("twice")), None),
                        _ => (token(&format!("fresh-{i}")), None, None),
                    };
                    Together { statement: Some(statement), events, token, claim: key }
                })
                .collect();
            let (store, outcomes) = together(&database, writes).await;
            let mut committed = Vec::new();
            for (i, outcome) in outcomes.into_iter().enumerate() {
                match (i, outcome) {
                    (_, Ok(0)) if i % 3 == 1 => {}
                    (17 | 20 | 26, Err(crate::StoreError::Replayed)) => {}
                    (8 | 11, Err(crate::StoreError::Claimed)) => {}
                    (_, Ok(1)) if i % 3 != 1 && ![8, 11, 17, 20, 26].contains(&i) => committed.push(i),
                    (i, outcome) => panic!("{backend:?}: write {i} answered {outcome:?}"),
                }
            }
            for i in 0..30 {
                let recorded = !store.identity.remember_token(&use_of(&format!("fresh-{i}"))).await.unwrap();
                assert_eq!(recorded, committed.contains(&i), "{backend:?}: fresh-{i}");
                assert!(store.identity.remember_token(&use_of(&format!("lost-{i}"))).await.unwrap(), "lost-{i}");
            }
            let written: Vec<usize> = chained_entries(&store)
                .await
                .iter()
                .map(|e| serde_json::from_str::<serde_json::Value>(&e.entry).unwrap()["write"].as_u64())
                .map(|write| write.expect("an entry of a write") as usize)
                .collect();
            assert_eq!(written, committed, "{backend:?}");
        }
    }

    /// A batch with more failing writes than PostgreSQL's writer sends it pipelined (each attempt learns one) ends one
    /// write at a time in savepoints; the answers are the same as ever and the chain stays whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_with_many_failing_writes_ends_one_write_at_a_time_with_the_same_answers() {
        for backend in backends() {
            let database = TestDatabase::new(backend);
            let failing = |i: usize| i.is_multiple_of(3) && i > 0;
            let writes = (0..20)
                .map(|i| {
                    let key = if failing(i) { "taken".to_owned() } else { format!("fresh-{i}") };
                    let events = vec![hanse_audit::Event::new("test.write", serde_json::json!({"write": i}))];
                    Together { statement: Some(token(&key)), events, token: None, claim: None }
                })
                .collect();
            let (store, outcomes) = together(&database, writes).await;
            for (i, outcome) in outcomes.into_iter().enumerate() {
                match outcome {
                    Ok(changed) => assert!(!failing(i) && changed == 1, "{backend:?}: write {i}"),
                    Err(error) => assert!(failing(i) && error.is_unique_violation(), "{backend:?}: write {i}: {error}"),
                }
            }
            let written: Vec<usize> = chained_entries(&store)
                .await
                .iter()
                .map(|e| {
                    serde_json::from_str::<serde_json::Value>(&e.entry).unwrap()["write"].as_u64().unwrap() as usize
                })
                .collect();
            assert_eq!(written, (0..20).filter(|i| !failing(*i)).collect::<Vec<_>>(), "{backend:?}");
        }
    }

    /// Writes that append to the log through other transactions (an operator's change) between the writer's batches
    /// move the head the writer last saw; its next batch notices and the chain stays whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_from_other_transactions_between_batches_keep_the_chain_whole() {
        for backend in backends() {
            let database = TestDatabase::new(backend);
            let store = database.open().await;
            for i in 0..6 {
                let event = hanse_audit::Event::new("test.write", serde_json::json!({"write": i}));
                store.pool.write(Some(token(&format!("fresh-{i}"))), vec![event], None, None).await.unwrap();
                let id = format!("asset-{i}");
                store
                    .documents
                    .insert_document(crate::DocumentKind::Asset, &id, &serde_json::json!({"@id": id}))
                    .await
                    .unwrap();
            }
            assert_eq!(chained_entries(&store).await.len(), 12, "{backend:?}");
        }
    }

    /// While a start-up self-check holds appends, writes that append wait (both the writer's batches and appends
    /// inside a transaction of their own) and nothing reaches the log; let go, they land. A log sealed while they wait
    /// refuses them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_wait_while_held_and_are_refused_when_the_log_was_sealed_meanwhile() {
        for backend in backends() {
            let database = TestDatabase::new(backend);
            let store = database.open().await;
            let appends = |n: usize| {
                let (audit, peers) = (store.audit.clone(), store.peers.clone());
                let batched = tokio::spawn(async move {
                    audit.append_audit(vec![hanse_audit::Event::new("test.write", serde_json::json!({"n": n}))]).await
                });
                let in_transaction = tokio::spawn(async move {
                    peers.add_peer(&crate::PeerRow::new(&format!("did:web:peer-{n}.example"), "manual")).await
                });
                (batched, in_transaction)
            };

            let hold = store.audit.hold_appends();
            assert!(store.audit.appends_held());
            let (batched, in_transaction) = appends(1);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert!(!batched.is_finished() && !in_transaction.is_finished(), "{backend:?}: appends wait");
            assert_eq!(store.audit.audit_size().await.unwrap(), 0, "{backend:?}");
            drop(hold);
            batched.await.unwrap().unwrap();
            in_transaction.await.unwrap().unwrap();
            assert_eq!(store.audit.audit_size().await.unwrap(), 2, "{backend:?}");
            assert!(!store.audit.appends_held());

            let hold = store.audit.hold_appends();
            let (batched, in_transaction) = appends(2);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            store.audit.seal("entry 0 was altered".into());
            drop(hold);
            for outcome in [batched.await.unwrap(), in_transaction.await.unwrap()] {
                assert!(matches!(outcome, Err(crate::StoreError::Sealed(_))), "{backend:?}: {outcome:?}");
            }
            assert_eq!(store.audit.audit_size().await.unwrap(), 2, "{backend:?}");
            store.close().await;
        }
    }
}
