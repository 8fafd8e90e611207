//! The peer network's table: every connector this one knows. Operator changes (add, remove) are audited like any
//! management change; what the exchange learns and forgets is network state, not a decision, and is not.

use sqlx::FromRow;

use super::audit::Append;
use super::{StoreError, now_millis, with_audit_writer, with_pool, with_writer};
use hanse_audit::Event;

/// One known peer.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerRow {
    pub did: String,
    /// The peer's versioned DSP base (`https://host/protocol/2025-1`), empty until verified.
    pub address: String,
    /// `seed`, `manual` or `learned`.
    pub source: String,
    /// `unverified`, `live`, `unreachable` or `incompatible`.
    pub status: String,
    /// The last error, or the versions an incompatible peer offers.
    pub detail: String,
    pub first_seen: i64,
    /// When it last answered (ms; 0 if never).
    pub last_seen: i64,
    pub last_attempt: i64,
    pub failures: i64,
}

impl PeerRow {
    /// A peer heard of now, not yet contacted.
    pub fn new(did: &str, source: &str) -> PeerRow {
        PeerRow {
            did: did.to_owned(),
            address: String::new(),
            source: source.to_owned(),
            status: "unverified".into(),
            detail: String::new(),
            first_seen: now_millis(),
            last_seen: 0,
            last_attempt: 0,
            failures: 0,
        }
    }
}

const SELECT: &str =
    "SELECT did, address, source, status, detail, first_seen, last_seen, last_attempt, failures FROM peers";

/// A broker's last catalogue of one peer, as crawled.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct CrawledCatalog {
    pub did: String,
    /// The peer's versioned DSP base it was read from.
    pub address: String,
    pub country: Option<String>,
    /// SHA-256 (hex) of address, country and catalogue.
    pub digest: String,
    /// The DSP `Catalog` JSON, every page merged.
    pub catalog: String,
    pub crawled_at: i64,
    pub changed_at: i64,
}

/// Inserts `$peer` with `$source` in transaction `$tx`; `$on_conflict` says what a known DID does (a macro: the
/// statement is compiled once per backend).
macro_rules! insert {
    ($tx:expr, $peer:expr, $source:literal, $on_conflict:literal) => {
        sqlx::query(concat!(
            "INSERT INTO peers (did, address, source, status, detail, first_seen, last_seen, last_attempt, failures) \
             VALUES ($1, $2, '",
            $source,
            "', $3, $4, $5, $6, $7, $8) ON CONFLICT (did) ",
            $on_conflict
        ))
        .bind(&$peer.did)
        .bind(&$peer.address)
        .bind(&$peer.status)
        .bind(&$peer.detail)
        .bind($peer.first_seen)
        .bind($peer.last_seen)
        .bind($peer.last_attempt)
        .bind($peer.failures)
        .execute(&mut *$tx)
        .await?
    };
}

fn change(did: &str, operation: &str) -> Event {
    Event::new(
        "management.change",
        serde_json::json!({"who": crate::Principal::current(), "resource": "peer", "id": did, "operation": operation}),
    )
    .participant(Some(did))
}

/// The peer network's list. A view of the store's one pool and writer.
#[derive(Debug, Clone)]
pub struct PeerStore {
    pub(crate) pool: crate::Pool,
}

impl PeerStore {
    /// Where the users of the peer list record what they measure.
    pub fn meter(&self) -> &hanse_core::meter::Meter {
        &self.pool.meter
    }

    /// Every known peer, by DID.
    pub async fn peers(&self) -> Result<Vec<PeerRow>, StoreError> {
        Ok(with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY did")))
            .fetch_all(pool)
            .await?))
    }

    pub async fn peer(&self, did: &str) -> Result<Option<PeerRow>, StoreError> {
        Ok(with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE did = $1")))
            .bind(did)
            .fetch_optional(pool)
            .await?))
    }

    /// A seed from the configuration: recorded once, pinned; an already learned peer becomes a seed.
    pub async fn seed_peer(&self, did: &str) -> Result<(), StoreError> {
        let row = PeerRow::new(did, "seed");
        with_writer!(self.pool, pool => {
            sqlx::query(
                "INSERT INTO peers (did, address, source, status, detail, first_seen, last_seen, last_attempt, failures) \
                 VALUES ($1, '', $2, 'unverified', '', $3, 0, 0, 0) \
                 ON CONFLICT (did) DO UPDATE SET source = $2 WHERE peers.source = 'learned'",
            )
            .bind(&row.did)
            .bind(&row.source)
            .bind(row.first_seen)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The operator adds (or pins) a verified peer, with its audit entry.
    pub async fn add_peer(&self, peer: &PeerRow) -> Result<(), StoreError> {
        let event = change(&peer.did, "add");
        with_audit_writer!(self.pool, pool => {
            let mut tx = pool.begin().await?;
            insert!(
                tx,
                peer,
                "manual",
                "DO UPDATE SET address = $2, source = 'manual', status = $3, detail = $4, last_seen = $6, \
                 last_attempt = $7, failures = $8"
            );
            (*tx).append(&self.pool.seal, &[event]).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The operator removes a peer, with its audit entry; `false` if it was not known.
    pub async fn remove_peer(&self, did: &str) -> Result<bool, StoreError> {
        let event = change(did, "remove");
        with_audit_writer!(self.pool, pool => {
            let mut tx = pool.begin().await?;
            let removed = sqlx::query("DELETE FROM peers WHERE did = $1").bind(did).execute(&mut *tx).await?.rows_affected();
            if removed == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            (*tx).append(&self.pool.seal, &[event]).await?;
            tx.commit().await?;
        });
        Ok(true)
    }

    /// Records a peer learned from another's list, if there is room: at `max` peers, one learned peer that is not
    /// live gives way (the longest silent); if none can, the new one is refused (`false`).
    pub async fn learn_peer(&self, peer: &PeerRow, max: u32) -> Result<bool, StoreError> {
        with_writer!(self.pool, pool => {
            let mut tx = pool.begin().await?;
            let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM peers").fetch_one(&mut *tx).await?;
            if count >= i64::from(max) {
                let evicted = sqlx::query(
                    "DELETE FROM peers WHERE did = (SELECT did FROM peers WHERE source = 'learned' AND status <> 'live' \
                     ORDER BY last_seen, did LIMIT 1)",
                )
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if evicted == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
            }
            let inserted = insert!(tx, peer, "learned", "DO NOTHING").rows_affected();
            tx.commit().await?;
            Ok(inserted == 1)
        })
    }

    /// The outcome of contacting a peer: its address, status and detail; a success also sets `last_seen` and clears
    /// the failures, a failure counts one more.
    pub async fn record_peer_contact(
        &self,
        did: &str,
        address: Option<&str>,
        status: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        let live = status == "live";
        with_writer!(self.pool, pool => {
            sqlx::query(
                "UPDATE peers SET address = COALESCE($2, address), status = $3, detail = $4, last_attempt = $5, \
                 last_seen = CASE WHEN $6 THEN $5 ELSE last_seen END, \
                 failures = CASE WHEN $6 THEN 0 ELSE failures + 1 END WHERE did = $1",
            )
            .bind(did)
            .bind(address)
            .bind(status)
            .bind(detail)
            .bind(now)
            .bind(live)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Keeps a catalogue a crawl found different from the last one (it goes with its peer). `false`: the peer is no
    /// longer known, and nothing was kept.
    pub async fn keep_catalog(&self, crawled: &CrawledCatalog) -> Result<bool, StoreError> {
        let kept = with_writer!(self.pool, pool => sqlx::query(
            "INSERT INTO broker_catalogs (did, address, country, digest, catalog, crawled_at, changed_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM peers WHERE did = $1) \
             ON CONFLICT (did) DO UPDATE SET address = $2, country = $3, digest = $4, catalog = $5, crawled_at = $6, \
             changed_at = $7",
        )
        .bind(&crawled.did)
        .bind(&crawled.address)
        .bind(&crawled.country)
        .bind(&crawled.digest)
        .bind(&crawled.catalog)
        .bind(crawled.crawled_at)
        .bind(crawled.changed_at)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(kept == 1)
    }

    /// Records that a crawl found a peer's catalogue unchanged at `at` (ms).
    pub async fn catalog_unchanged(&self, did: &str, at: i64) -> Result<(), StoreError> {
        with_writer!(self.pool, pool => {
            sqlx::query("UPDATE broker_catalogs SET crawled_at = $2 WHERE did = $1")
                .bind(did)
                .bind(at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Forgets a peer's crawled catalogue.
    pub async fn forget_catalog(&self, did: &str) -> Result<(), StoreError> {
        with_writer!(self.pool, pool => {
            sqlx::query("DELETE FROM broker_catalogs WHERE did = $1").bind(did).execute(pool).await?;
        });
        Ok(())
    }

    /// The DIDs whose catalogues are kept, and then each one (read one at a time: together they can be large).
    pub async fn kept_catalogs(&self) -> Result<Vec<String>, StoreError> {
        let dids: Vec<(String,)> = with_pool!(self.pool, pool =>
            sqlx::query_as("SELECT did FROM broker_catalogs ORDER BY did").fetch_all(pool).await?);
        Ok(dids.into_iter().map(|(did,)| did).collect())
    }

    pub async fn kept_catalog(&self, did: &str) -> Result<Option<CrawledCatalog>, StoreError> {
        Ok(with_pool!(self.pool, pool => sqlx::query_as(
            "SELECT did, address, country, digest, catalog, crawled_at, changed_at FROM broker_catalogs WHERE did = $1",
        )
        .bind(did)
        .fetch_optional(pool)
        .await?))
    }

    /// Forgets learned peers silent since `cutoff` (ms): not seen since then, and heard of before it. Returns their
    /// DIDs.
    pub async fn age_out_peers(&self, cutoff: i64) -> Result<Vec<String>, StoreError> {
        let gone: Vec<(String,)> = with_writer!(self.pool, pool => sqlx::query_as(
            "DELETE FROM peers WHERE source = 'learned' AND last_seen < $1 AND first_seen < $1 RETURNING did",
        )
        .bind(cutoff)
        .fetch_all(pool)
        .await?);
        Ok(gone.into_iter().map(|(did,)| did).collect())
    }
}
