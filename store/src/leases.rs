//! Leases: who does a piece of work that only one replica of a connector may do at a time — a cluster-wide loop, a
//! compute job, a push. A lease has a holder and an expiry; its holder renews it while the work runs, and anyone may
//! take it once it has expired (the holder died). Expiry is read on the database's clock, so replicas' clocks need not
//! agree.

use super::{Dialect, StoreError, with_pool, with_writer};

/// Milliseconds since the epoch on the database's clock.
fn database_now(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

/// The leases table. A view of the store's one pool and writer.
#[derive(Debug, Clone)]
pub struct Leases {
    pub(crate) pool: crate::Pool,
}

impl Leases {
    /// Takes lease `name` for `holder` for `ttl_ms`, or renews it when `holder` has it: answers whether `holder` has it
    /// now. A lease another holder has and has not let expire is left alone.
    pub async fn acquire(&self, name: &str, holder: &str, ttl_ms: i64) -> Result<bool, StoreError> {
        let now = database_now(self.pool.dialect());
        let sql = format!(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, {now} + $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < {now}"
        );
        let changed = with_writer!(self.pool, pool => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(holder)
            .bind(ttl_ms)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(changed > 0)
    }

    /// Gives lease `name` up, if `holder` has it.
    pub async fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        with_writer!(self.pool, pool => sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(pool)
            .await
            .map(|_| ())?);
        Ok(())
    }

    /// Gives up every lease `holder` has.
    pub async fn release_all(&self, holder: &str) -> Result<(), StoreError> {
        with_writer!(self.pool, pool => sqlx::query("DELETE FROM leases WHERE holder = $1")
            .bind(holder)
            .execute(pool)
            .await
            .map(|_| ())?);
        Ok(())
    }

    /// Drops every lease, whoever holds it (for a store only one process uses).
    pub async fn release_all_holders(&self) -> Result<(), StoreError> {
        with_writer!(self.pool, pool => sqlx::query("DELETE FROM leases").execute(pool).await.map(|_| ())?);
        Ok(())
    }

    /// Whether lease `name` is held now by anyone: answers the holder.
    pub async fn holder(&self, name: &str) -> Result<Option<String>, StoreError> {
        let now = database_now(self.pool.dialect());
        let sql = format!("SELECT holder FROM leases WHERE name = $1 AND expires_at >= {now}");
        let holder: Option<String> = with_pool!(self.pool, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(pool)
            .await?);
        Ok(holder)
    }

    /// Removes the leases that expired more than `ms` ago (their holders are gone).
    pub async fn sweep(&self, ms: i64) -> Result<u64, StoreError> {
        let now = database_now(self.pool.dialect());
        let sql = format!("DELETE FROM leases WHERE expires_at < {now} - $1");
        let removed = with_writer!(self.pool, pool => sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ms)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(removed)
    }
}
