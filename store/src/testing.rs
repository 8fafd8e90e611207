//! Test support: isolated databases. Each [`TestDatabase`] gets its own SQLite folder or its own PostgreSQL schema, so
//! test runs never collide. PostgreSQL comes from `HANSE_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); it must answer — the suite fails rather than skips, unless
//! `HANSE_TEST_SKIP_POSTGRES=1` says to leave PostgreSQL out.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Store, StoreOptions};

/// The default PostgreSQL server of the test suite.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backends this run covers: SQLite always, PostgreSQL unless explicitly skipped.
pub fn backends() -> Vec<Backend> {
    if std::env::var("HANSE_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
        vec![Backend::Sqlite]
    } else {
        vec![Backend::Sqlite, Backend::Postgres]
    }
}

/// The PostgreSQL URL of the test suite.
pub fn postgres_url() -> String {
    std::env::var("HANSE_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// A fresh schema name, unique to this process and call.
pub fn unique_schema() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // Process ids repeat across machines' runs sharing one server: the clock's nanoseconds tell them apart.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("hanse_test_{}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos)
}

/// An isolated database: a temporary SQLite folder or a fresh PostgreSQL schema.
pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    pub schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A new, empty database for `backend`.
    pub fn new(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary folder");
                let url = format!("sqlite://{}", dir.path().join("hanse.db").display());
                TestDatabase { backend, url, schema: None, _dir: Some(dir) }
            }
            Backend::Postgres => {
                TestDatabase { backend, url: postgres_url(), schema: Some(unique_schema()), _dir: None }
            }
        }
    }

    /// Opens the store (running migrations); panics with a clear message when the database does not answer.
    pub async fn open(&self) -> Store {
        Store::open(
            &self.url,
            &StoreOptions { schema: self.schema.clone(), max_connections: Some(8), ..Default::default() },
        )
        .await
        .unwrap_or_else(|e| panic!("{:?} test database: {e} (set HANSE_TEST_DATABASE_URL?)", self.backend))
    }
}

/// What a dishonest operator with database access could do to the audit log (tests prove it is caught).
impl TestDatabase {
    /// Drops the entries from `keep` on, their subtree hashes and the heads signed over them, and resets the head
    /// row, so that the connector appends anew from there (a rolled-back, rewritten history).
    pub async fn roll_back_audit_log(&self, keep: u64) {
        let store = self.open().await;
        let ids: Vec<i64> = crate::with_pool!(store.pool, pool => sqlx::query_scalar("SELECT id FROM audit_nodes")
            .fetch_all(pool)
            .await
            .expect("node ids"));
        let beyond: Vec<String> = ids
            .into_iter()
            .filter(|&id| {
                let (start, level) = hanse_audit::merkle::span(id as u64);
                start + (1 << level) > keep
            })
            .map(|id| id.to_string())
            .collect();
        let frontier = store.audit.audit_frontier_at(keep).await.expect("the kept frontier");
        crate::with_writer!(store.pool, pool => {
            let mut tx = pool.begin().await.expect("transaction");
            sqlx::query("DELETE FROM audit_entries WHERE seq >= $1").bind(keep as i64).execute(&mut *tx).await.expect("entries");
            if !beyond.is_empty() {
                let sql = format!("DELETE FROM audit_nodes WHERE id IN ({})", beyond.join(", "));
                sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await.expect("nodes");
            }
            sqlx::query("DELETE FROM audit_tree_heads WHERE size > $1").bind(keep as i64).execute(&mut *tx).await.expect("heads");
            sqlx::query("UPDATE audit_head SET size = $1, frontier = $2 WHERE id = 1")
                .bind(keep as i64)
                .bind(frontier.to_bytes())
                .execute(&mut *tx)
                .await
                .expect("head row");
            tx.commit().await.expect("commit");
        });
        store.close().await;
    }

    /// Runs `sql` as it is, outside the store's methods: what someone with access to the database can do.
    pub async fn execute(&self, sql: &str) {
        let store = self.open().await;
        crate::with_writer!(store.pool, pool => sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected());
        store.close().await;
    }

    /// A binary literal in this database's SQL.
    pub fn bytes_literal(&self, bytes: &[u8]) -> String {
        let hex = hanse_core::encode::hex(bytes);
        match self.backend {
            Backend::Sqlite => format!("X'{hex}'"),
            Backend::Postgres => format!("'\\x{hex}'::bytea"),
        }
    }

    /// Overwrites byte `offset` of stored entry `seq` with `byte`.
    pub async fn alter_audit_entry(&self, seq: u64, offset: usize, byte: u8) {
        let store = self.open().await;
        let entry = store.audit.audit_range(seq, seq + 1).await.expect("entry").pop().expect("the entry exists");
        let mut bytes = entry.entry.into_bytes();
        bytes[offset] = byte;
        let altered = String::from_utf8(bytes).expect("ASCII");
        crate::with_writer!(store.pool, pool => sqlx::query("UPDATE audit_entries SET entry = $1 WHERE seq = $2")
            .bind(&altered)
            .bind(seq as i64)
            .execute(pool)
            .await
            .expect("update")
            .rows_affected());
        store.close().await;
    }
}

impl Drop for TestDatabase {
    /// Drops the PostgreSQL schema (the SQLite folder goes with its `TempDir`). Runs on a thread of its own, so it
    /// works inside and outside a runtime.
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else {
            return;
        };
        let url = self.url.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await.ok()?;
                let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await.ok()?;
                pool.close().await;
                Some(())
            })
        })
        .join();
    }
}
