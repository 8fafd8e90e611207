//! The system of record: SQLite (embedded, the default) or PostgreSQL, behind one `Store`.
//!
//! Every method is one transaction. SQL uses `$N` placeholders, which both drivers accept, so each query is written
//! once; where the dialects differ, the two texts stand side by side. Migrations are embedded per dialect
//! (`store/migrations/{sqlite,postgres}`) and run at start-up.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgConnection, PgPool, SqlitePool};
use tokio_postgres::error::SqlState;

mod audit;
mod documents;
mod governance;
pub mod idempotency;
mod identity;
mod jobs;
mod leases;
mod peers;
mod pg_writer;
mod principal;
mod processes;
mod readers;
mod statement;
mod writer;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use audit::AuditStore;
pub use audit::{AppendHold, AuditEntry, AuditFilter, SelfCheck, SignedHead, Witnessed};
pub use documents::Documents;
pub use documents::{Document, DocumentKind};
pub use governance::{ApiKeyRow, AppTokenRow, AppUse, Governance, PublicationError, PublicationRow};
pub use idempotency::Idempotency;
pub use identity::IdentityStore;
pub use identity::{HeldCredential, IssuedCredential, TokenUse};
pub use jobs::JobRow;
pub use jobs::Jobs;
pub use leases::Leases;
pub use peers::PeerStore;
pub use peers::{CrawledCatalog, PeerRow};
pub use principal::Principal;
pub use processes::Processes;
pub use processes::{
    AgreementRow, Census, ClaimedMessage, OUTBOX_LEASE_MS, OutboxMessage, Outgoing, PROCESS_KINDS, ProcessKind,
    ProcessRow, RowColumn, RowCriterion, RowQuery, Usage,
};

/// Runs `$body` with `$pool` bound to whichever pool the store has; the body is compiled once per backend.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite($pool) => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Like [`with_pool!`] for statements that write: on SQLite they go through the one writer connection, so that
/// writers queue without blocking instead of colliding on SQLite's single write lock and backing off. While they wait
/// for it, the writer thread hands the connection over after its current batch.
macro_rules! with_writer {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite(_) => {
                let $pool = $store.writer.as_ref().expect("a SQLite store has a writer");
                let _wanted = $store.sqlx_write_waiting();
                $body
            }
            $crate::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_writer;

/// [`with_writer!`] for a write that appends to the audit log in its transaction: it first waits while appends are
/// held for a self-check ([`AuditStore::hold_appends`]), so that it holds no writer connection while it waits.
macro_rules! with_audit_writer {
    ($store:expr, $pool:ident => $body:expr) => {{
        $store.seal.admit().await?;
        $crate::with_writer!($store, $pool => $body)
    }};
}
pub(crate) use with_audit_writer;

/// A storage failure, as callers need to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} `{id}` already exists")]
    Conflict { kind: &'static str, id: String },
    #[error("{kind} `{id}` not found")]
    NotFound { kind: &'static str, id: String },
    #[error("cannot connect to the database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// From the PostgreSQL writer's own connection ([`pg_writer`]).
    #[error("database error: {}", postgres_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The audit log failed its self-check: a change it would record is refused.
    #[error(
        "the audit log failed its self-check ({0}); changes it would record are refused until an operator restores the database"
    )]
    Sealed(String),
    /// The SQLite writer thread could not run or commit a write.
    #[error("database write failed: {0}")]
    Writer(String),
    /// Another document still names this one: it was not deleted.
    #[error("{kind} `{id}` is still used by {by}")]
    InUse { kind: &'static str, id: String, by: String },
    /// The call's idempotency key was claimed before: the write was not made.
    #[error("the Idempotency-Key was used before")]
    Claimed,
    /// The token that came with a write was used before: the write was not made.
    #[error("the token id was used before (replay)")]
    Replayed,
}

impl StoreError {
    /// Whether PostgreSQL ended the statement to break a deadlock (SQLSTATE 40P01).
    pub fn is_deadlock(&self) -> bool {
        match self {
            StoreError::Database(error) => {
                error.as_database_error().and_then(|e| e.code()).is_some_and(|c| c == "40P01")
            }
            StoreError::Postgres(error) => pg_writer::is_deadlock(error),
            _ => false,
        }
    }

    /// Whether a foreign key refused the write.
    pub fn is_foreign_key_violation(&self) -> bool {
        match self {
            StoreError::Database(error) => error.as_database_error().is_some_and(|e| e.is_foreign_key_violation()),
            StoreError::Postgres(error) => error.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION),
            _ => false,
        }
    }

    /// Whether a primary key or unique constraint refused the write.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(error) => error.as_database_error().is_some_and(|e| e.is_unique_violation()),
            StoreError::Postgres(error) => error.code() == Some(&SqlState::UNIQUE_VIOLATION),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(error, _)) => matches!(
                error.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            ),
            _ => false,
        }
    }
}

/// A tokio-postgres error with the server's message, which its own text leaves out.
fn postgres_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(server) => server.to_string(),
        None => error.to_string(),
    }
}

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Connection settings beyond the URL.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// PostgreSQL schema (created if missing); ignored for SQLite.
    pub schema: Option<String>,
    /// Pool size.
    pub max_connections: Option<u32>,
    /// Where the writer's batches and commits are measured.
    pub meter: hanse_core::meter::Meter,
    /// Open an existing database to read it only (an offline check): nothing is created or migrated, and the
    /// database refuses writes.
    pub read_only: bool,
}

/// The measurements of a writer's batches: how many writes each commit carried and how long the batch took, from its
/// first statement to the end of its commit.
#[derive(Clone)]
pub(crate) struct BatchMeter {
    size: metrics::Histogram,
    seconds: metrics::Histogram,
    /// PostgreSQL: the writer's round trips to the server (a pipeline sent and answered, or a statement alone).
    pub(crate) round_trips: metrics::Counter,
}

impl BatchMeter {
    fn new(meter: &hanse_core::meter::Meter, dialect: Dialect) -> BatchMeter {
        let dialect = &dialect.to_string();
        BatchMeter {
            size: meter.histogram("hanse_store_write_batch_size", &[("store", dialect)]),
            seconds: meter.histogram("hanse_store_commit_duration_seconds", &[("store", dialect)]),
            round_trips: meter.counter("hanse_store_writer_round_trips_total", &[("store", dialect)]),
        }
    }

    /// Records one batch of `size` writes that began at `started`.
    pub(crate) fn batch(&self, size: usize, started: std::time::Instant) {
        self.size.record(size as f64);
        self.seconds.record(started.elapsed().as_secs_f64());
    }
}

/// The store: one pool and writer, seen through one view per concern. Each service takes the views it needs. Cheap to
/// clone (pools are shared).
#[derive(Debug, Clone)]
pub struct Store {
    pub processes: Processes,
    pub documents: Documents,
    pub audit: AuditStore,
    pub identity: IdentityStore,
    pub jobs: Jobs,
    pub peers: PeerStore,
    pub idempotency: Idempotency,
    pub governance: Governance,
    pub leases: Leases,
    pool: Pool,
}

/// The pool (or pools) and the writer every view shares.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    pub(crate) backend: Backend,
    /// SQLite: the single connection every write goes through.
    pub(crate) writer: Option<SqlitePool>,
    /// What runs the hot writes, many to a transaction.
    hot: HotWriter,
    /// SQLite: connections for point reads on the calling thread.
    readers: Option<std::sync::Arc<readers::Readers>>,
    /// Where the store's users record what they measure of it.
    pub(crate) meter: hanse_core::meter::Meter,
    /// Set when the audit log failed its self-check.
    pub(crate) seal: audit::Seal,
}

/// The writer of [`Pool::write`]: on SQLite a thread on the one writer connection, on PostgreSQL a task.
#[derive(Debug, Clone)]
enum HotWriter {
    Sqlite(writer::Writer),
    Postgres(pg_writer::PgWriter),
}

/// `[a-z_][a-z0-9_]*`, at most 63 characters: safe to splice into SQL as an identifier.
pub fn is_safe_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 63
}

/// The URL without its password, for messages and logs: `scheme://user:***@host/...`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl Store {
    /// Connects (creating the SQLite file and folder, or the PostgreSQL schema, if missing) and runs migrations.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        let pool = Pool::open(url, options).await?;
        Ok(Store {
            processes: Processes { pool: pool.clone() },
            documents: Documents { pool: pool.clone() },
            audit: AuditStore { pool: pool.clone() },
            identity: IdentityStore { pool: pool.clone() },
            jobs: Jobs { pool: pool.clone() },
            peers: PeerStore { pool: pool.clone() },
            idempotency: Idempotency { pool: pool.clone() },
            governance: Governance { pool: pool.clone() },
            leases: Leases { pool: pool.clone() },
            pool,
        })
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.pool.dialect()
    }

    /// One round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.pool.ping().await
    }

    /// Waits for queued writes, then closes every connection.
    pub async fn close(&self) {
        self.pool.close().await
    }

    /// The pool's connections now: `(open, idle)` (on SQLite the read pool and the writer's one connection).
    pub fn connections(&self) -> (u32, u32) {
        let mut open = with_pool!(self.pool, pool => pool.size());
        let mut idle = with_pool!(self.pool, pool => pool.num_idle() as u32);
        if let Some(writer) = &self.pool.writer {
            open += writer.size();
            idle += writer.num_idle() as u32;
        }
        (open, idle)
    }
}

impl Pool {
    /// Connects (creating the SQLite file and folder, or the PostgreSQL schema, if missing) and runs migrations.
    async fn open(url: &str, options: &StoreOptions) -> Result<Pool, StoreError> {
        let connect_error = |source| StoreError::Connect { url: redact_url(url), source };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut connect = PgConnectOptions::from_str(url).map_err(connect_error)?;
            // One direct connection first: it reports the real reason (refused, authentication, unknown database)
            // where a pool would only time out. It also creates the schema, to which every pooled connection is pinned.
            let mut first = tokio::time::timeout(Duration::from_secs(10), PgConnection::connect_with(&connect))
                .await
                .map_err(|_| connect_error(sqlx::Error::PoolTimedOut))?
                .map_err(connect_error)?;
            if let Some(schema) = &options.schema {
                if !is_safe_identifier(schema) {
                    return Err(StoreError::Corrupt(format!("invalid schema name `{schema}`")));
                }
                if !options.read_only {
                    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {schema}")))
                        .execute(&mut first)
                        .await?;
                }
                connect = connect.options([("search_path", schema.as_str())]);
            }
            if options.read_only {
                connect = connect.options([("default_transaction_read_only", "on")]);
            }
            first.close().await?;
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections.unwrap_or(8))
                .acquire_timeout(Duration::from_secs(5))
                // A connection idle for a while is pinged before use, so one the server dropped is replaced rather
                // than failing a request; one in steady use is not, which saves a round trip on every read and write
                // batch under load.
                .test_before_acquire(false)
                .before_acquire(|connection, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= PING_AFTER_IDLE {
                            sqlx::Connection::ping(connection).await?;
                        }
                        Ok(true)
                    })
                })
                .connect_with(connect.clone())
                .await
                .map_err(connect_error)?;
            if !options.read_only {
                sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            }
            let batches = BatchMeter::new(&options.meter, Dialect::Postgres);
            let hot = pg_writer::PgWriter::start(pg_writer::Connect::new(url, &connect)?, batches)
                .map_err(|e| connect_error(sqlx::Error::Io(e)))?;
            let hot = HotWriter::Postgres(hot);
            Ok(Pool {
                backend: Backend::Postgres(pool),
                writer: None,
                hot,
                readers: None,
                meter: options.meter.clone(),
                seal: audit::Seal::default(),
            })
        } else {
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(connect_error)?
                .create_if_missing(!options.read_only)
                .read_only(options.read_only)
                .journal_mode(SqliteJournalMode::Wal)
                // Savepoints journal the pages they change; in memory rather than in a temporary file.
                .pragma("temp_store", "memory")
                .synchronous(SqliteSynchronous::Normal)
                // The WAL is copied back into the database every WAL_AUTOCHECKPOINT pages rather than SQLite's 1 000:
                // a page changed by many commits is copied (and synced) once per checkpoint.
                .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT.to_string())
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            if let Some(parent) = Path::new(connect.get_filename()).parent()
                && !parent.as_os_str().is_empty()
                && !options.read_only
            {
                std::fs::create_dir_all(parent).map_err(|e| connect_error(sqlx::Error::Io(e)))?;
            }
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(connect.clone())
                .await
                .map_err(connect_error)?;
            if !options.read_only {
                sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
            }
            let readers = readers::Readers::new(connect.get_filename()).map(std::sync::Arc::new);
            let pool = SqlitePoolOptions::new()
                .max_connections(options.max_connections.unwrap_or(8))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(connect)
                .await
                .map_err(connect_error)?;
            let batches = BatchMeter::new(&options.meter, Dialect::Sqlite);
            let hot = writer::Writer::start(writer.clone(), batches).map_err(|e| connect_error(sqlx::Error::Io(e)))?;
            Ok(Pool {
                backend: Backend::Sqlite(pool),
                writer: Some(writer),
                hot: HotWriter::Sqlite(hot),
                readers,
                meter: options.meter.clone(),
                seal: audit::Seal::default(),
            })
        }
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// A round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Runs `statement` (if any) and, when there is no statement or it changed a row, records `token` and the
    /// idempotency key `claim` and appends `audit`, in one transaction; answers the rows the statement changed. A
    /// token seen before fails the whole write with [`StoreError::Replayed`], a key claimed before with
    /// [`StoreError::Claimed`]. It joins the next batch of the writer thread (SQLite) or task (PostgreSQL).
    pub(crate) async fn write(
        &self,
        statement: Option<statement::Statement>,
        audit: Vec<hanse_audit::Event>,
        token: Option<&TokenUse>,
        claim: Option<statement::Statement>,
    ) -> Result<u64, StoreError> {
        if !audit.is_empty() {
            self.seal.admit().await?;
        }
        let mut audit = audit;
        principal::stamp(&mut audit);
        let write = Write { statement, audit, token: token.cloned(), claim };
        match &self.hot {
            HotWriter::Sqlite(hot) => hot.run(move |db, head| write.apply_on(db, head)).await,
            HotWriter::Postgres(pg) => pg.run(write).await,
        }
    }

    /// SQLite: marks a [`with_writer!`] write as waiting for the writer connection while the answer lives, so that
    /// the writer thread hands it over after its current batch.
    pub(crate) fn sqlx_write_waiting(&self) -> Option<writer::Wanted> {
        match &self.hot {
            HotWriter::Sqlite(hot) => Some(hot.wanted()),
            HotWriter::Postgres(_) => None,
        }
    }

    /// The one row `statement` answers, on SQLite read at once on this thread ([`readers`]); `None` on PostgreSQL (and
    /// for an in-memory SQLite database), where the caller reads through sqlx.
    pub(crate) fn read_now<T>(
        &self,
        statement: &statement::Statement,
        read: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Option<Result<Option<T>, StoreError>> {
        self.readers.as_ref().map(|readers| readers.one(statement, read))
    }

    /// Waits for in-flight queries, checkpoints SQLite's WAL, and closes the pool.
    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(writer).await;
            writer.close().await;
        }
        with_pool!(self, pool => pool.close().await);
    }
}

/// One hot write: a statement (if any) and, when there is none or it changed a row, a token id to record and audit
/// entries to append. Either writer runs it inside its batch's transaction, with the batch's audit head; it answers the
/// rows the statement changed, or [`StoreError::Replayed`] when the token id was recorded before.
pub(crate) struct Write {
    statement: Option<statement::Statement>,
    audit: Vec<hanse_audit::Event>,
    token: Option<TokenUse>,
    claim: Option<statement::Statement>,
}

impl Write {
    /// Whether the write has audit entries to append.
    pub(crate) fn appends(&self) -> bool {
        !self.audit.is_empty()
    }

    /// On the SQLite writer thread (rusqlite).
    fn apply_on(&self, db: &rusqlite::Connection, head: &mut audit::BatchHead) -> Result<u64, StoreError> {
        let changed = self.statement.as_ref().map(|s| s.execute_on(db)).transpose()?;
        if changed != Some(0) {
            if self.token.as_ref().map(|t| t.statement().execute_on(db)).transpose()? == Some(0) {
                return Err(StoreError::Replayed);
            }
            if self.claim.as_ref().map(|c| c.execute_on(db)).transpose()? == Some(0) {
                return Err(StoreError::Claimed);
            }
            head.append(db, &self.audit)?;
        }
        Ok(changed.unwrap_or(0))
    }
}

/// How many prepared statements a rusqlite connection (the writer thread's, a point reader's) keeps. The writer runs
/// some twenty statement texts in a busy batch (process changes and deliveries of both kinds, token ids, the audit
/// appends by their row counts); rusqlite's default of 16 would prepare some of them again for every job.
const STATEMENTS_KEPT: usize = 64;

/// A pooled PostgreSQL connection idle at least this long is pinged before it is used again.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// SQLite's WAL checkpoints after this many pages (4 KiB each): at most about 40 MB of WAL.
const WAL_AUTOCHECKPOINT: u32 = 10_000;

pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn parse_body(kind: &str, id: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{kind} `{id}`: {e}")))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    use super::{AuditFilter, Store, StoreOptions, TokenUse, redact_url};
    use hanse_audit::Event;
    use hanse_audit::merkle::{Frontier, leaf_hash};

    /// A SQLite database written before migration 9 (which gives the audit log, token ids and owed receipts one B-tree
    /// per key) keeps its rows through it, and its audit log goes on growing as one chain.

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(redact_url("postgres://hanse:s3cret@db:5432/hanse"), "postgres://hanse:***@db:5432/hanse");
        assert_eq!(redact_url("postgres://a:b:c@db/x?sslmode=require"), "postgres://a:***@db/x?sslmode=require");
        assert_eq!(redact_url("postgres://hanse@db/hanse"), "postgres://hanse@db/hanse");
        assert_eq!(redact_url("sqlite:///var/lib/hanse/hanse.db"), "sqlite:///var/lib/hanse/hanse.db");
        assert_eq!(redact_url("postgres://db/x@y"), "postgres://db/x@y");
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_written_before_the_key_migration_survive_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("hanse.db").display());
        let options = SqliteConnectOptions::from_str(&url).unwrap().create_if_missing(true);
        let old = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
        let mut migrator = sqlx::migrate!("./migrations/sqlite");
        migrator.migrations = migrator.migrations.iter().filter(|m| m.version < 9).cloned().collect::<Vec<_>>().into();
        migrator.run(&old).await.unwrap();
        // Four entries as the store of that version wrote them: entry, root, new nodes, head.
        let mut frontier = Frontier::default();
        let mut entries = Vec::new();
        for seq in 0..4 {
            let entry = format!(r#"{{"seq":{seq},"type":"test.old"}}"#);
            for (id, hash) in frontier.push(leaf_hash(entry.as_bytes())) {
                sqlx::query("INSERT INTO audit_nodes (id, hash) VALUES ($1, $2)")
                    .bind(id as i64)
                    .bind(hash.to_vec())
                    .execute(&old)
                    .await
                    .unwrap();
            }
            sqlx::query("INSERT INTO audit_entries (seq, at, type, agreement_id, entry, root) VALUES ($1, 0, 'test.old', 'a1', $2, $3)")
                .bind(seq)
                .bind(&entry)
                .bind(frontier.root().to_vec())
                .execute(&old)
                .await
                .unwrap();
            entries.push(entry);
        }
        sqlx::query("UPDATE audit_head SET size = $1, frontier = $2 WHERE id = 1")
            .bind(frontier.size as i64)
            .bind(frontier.to_bytes())
            .execute(&old)
            .await
            .unwrap();
        sqlx::query("INSERT INTO token_ids (token_key, expires_at) VALUES ('did:web:peer 1', $1)")
            .bind(i64::MAX)
            .execute(&old)
            .await
            .unwrap();
        sqlx::query("INSERT INTO audit_receipts_out (agreement_id, peer, next_at) VALUES ('a1', 'did:web:peer', 0)")
            .execute(&old)
            .await
            .unwrap();
        old.close().await;

        let store = Store::open(&url, &StoreOptions::default()).await.unwrap();
        let keys: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM sqlite_schema WHERE name LIKE 'sqlite_autoindex_%' ORDER BY name")
                .fetch_all(store.pool.writer.as_ref().unwrap())
                .await
                .unwrap();
        for table in ["audit_entries", "audit_nodes", "token_ids", "audit_receipts_out"] {
            assert!(!keys.iter().any(|(name,)| name.contains(table)), "{table} still has a separate key index");
        }
        let token = |key: &str| TokenUse { key: key.to_owned(), expires_at: i64::MAX };
        assert!(!store.identity.remember_token(&token("did:web:peer 1")).await.unwrap(), "the old token id was lost");
        assert!(store.identity.remember_token(&token("did:web:peer 2")).await.unwrap());
        assert_eq!(store.audit.receipts_due(10).await.unwrap().len(), 1, "the owed receipt was lost");
        store
            .audit
            .append_audit(vec![Event::new("test.new", serde_json::json!({"after": "migration"}))])
            .await
            .unwrap();
        let filter = AuditFilter { limit: 100, ..Default::default() };
        let stored = store.audit.audit_entries(&filter).await.unwrap();
        assert_eq!(stored.iter().map(|e| e.seq).collect::<Vec<_>>(), (0..5).collect::<Vec<_>>());
        assert_eq!(stored.iter().take(4).map(|e| e.entry.clone()).collect::<Vec<_>>(), entries);
        frontier.push(leaf_hash(stored[4].entry.as_bytes()));
        assert_eq!(stored[4].root, frontier.root(), "the new entry does not extend the old chain");
        assert_eq!(store.audit.audit_frontier().await.unwrap(), frontier);
        assert_eq!(
            store.audit.audit_entries(&AuditFilter { agreement: Some("a1".into()), ..filter }).await.unwrap().len(),
            4
        );
    }
}
