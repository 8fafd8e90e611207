//! Compute jobs of both roles. A provider admits a job by a compare-and-set on its agreement's job counter, in the
//! transaction that records the job and its audit entry, so the job budget and `maxJobs` hold under concurrent
//! submissions on any number of processes.

use serde_json::Value;
use sqlx::FromRow;

use super::audit::Append;
use super::{StoreError, now_millis, parse_body, with_audit_writer, with_pool};
use hanse_audit::Event;

/// One job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: String,
    /// `provider` or `consumer`.
    pub role: String,
    pub peer_job_id: Option<String>,
    pub counter_party_id: Option<String>,
    pub agreement_id: Option<String>,
    pub transfer_id: Option<String>,
    pub template: String,
    /// `running`, `open` (a model job between rounds), `completed` or `failed`.
    pub status: String,
    pub rounds: i64,
    pub body: Value,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(FromRow)]
struct Row {
    id: String,
    role: String,
    peer_job_id: Option<String>,
    counter_party_id: Option<String>,
    agreement_id: Option<String>,
    transfer_id: Option<String>,
    template: String,
    status: String,
    rounds: i64,
    body: String,
    created_at: i64,
    updated_at: i64,
}

impl Row {
    fn into_job(self) -> Result<JobRow, StoreError> {
        Ok(JobRow {
            body: parse_body("job", &self.id, &self.body)?,
            id: self.id,
            role: self.role,
            peer_job_id: self.peer_job_id,
            counter_party_id: self.counter_party_id,
            agreement_id: self.agreement_id,
            transfer_id: self.transfer_id,
            template: self.template,
            status: self.status,
            rounds: self.rounds,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const SELECT: &str = "SELECT id, role, peer_job_id, counter_party_id, agreement_id, transfer_id, template, status, rounds, \
                      body, created_at, updated_at FROM compute_jobs";
const INSERT: &str = "INSERT INTO compute_jobs (id, role, peer_job_id, counter_party_id, agreement_id, transfer_id, \
                      template, status, rounds, body, created_at, updated_at) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)";

/// Inserts `$job` in transaction `$tx` (a macro: the statement is compiled once per backend).
macro_rules! insert {
    ($tx:expr, $job:expr, $now:expr) => {
        sqlx::query(INSERT)
            .bind(&$job.id)
            .bind(&$job.role)
            .bind(&$job.peer_job_id)
            .bind(&$job.counter_party_id)
            .bind(&$job.agreement_id)
            .bind(&$job.transfer_id)
            .bind(&$job.template)
            .bind(&$job.status)
            .bind($job.rounds)
            .bind($job.body.to_string())
            .bind($now)
            .execute(&mut *$tx)
            .await?
    };
}

/// Compute jobs, both sides. A view of the store's one pool and writer.
#[derive(Debug, Clone)]
pub struct Jobs {
    pub(crate) pool: crate::Pool,
}

impl Jobs {
    /// Where the users of jobs record what they measure.
    pub fn meter(&self) -> &hanse_core::meter::Meter {
        &self.pool.meter
    }

    /// Provider: records an admitted job if the agreement has admitted exactly `jobs_before` jobs so far (the count
    /// the policy decided with); `Ok(false)` when another job was admitted meanwhile (decide again).
    pub async fn admit_job(&self, job: &JobRow, jobs_before: i64, audit: &[Event]) -> Result<bool, StoreError> {
        let agreement = job.agreement_id.as_deref().unwrap_or_default();
        let now = now_millis();
        with_audit_writer!(self.pool, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO agreement_usage (agreement_id, pulls, bytes, jobs, updated_at) VALUES ($1, 0, 0, 0, $2) \
                 ON CONFLICT (agreement_id) DO NOTHING",
            )
            .bind(agreement)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let counted = sqlx::query(
                "UPDATE agreement_usage SET jobs = jobs + 1, updated_at = $3 WHERE agreement_id = $1 AND jobs = $2",
            )
            .bind(agreement)
            .bind(jobs_before)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if counted == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            insert!(tx, job, now);
            crate::idempotency::claim_in!(tx, crate::idempotency::take(&job.id));
            (*tx).append(&self.pool.seal, audit).await?;
            tx.commit().await?;
        });
        Ok(true)
    }

    /// Consumer: records a new job with its audit entry.
    pub async fn insert_job(&self, job: &JobRow, audit: &[Event]) -> Result<(), StoreError> {
        with_audit_writer!(self.pool, pool => {
            let mut tx = pool.begin().await?;
            insert!(tx, job, now_millis());
            crate::idempotency::claim_in!(tx, crate::idempotency::take(&job.id));
            (*tx).append(&self.pool.seal, audit).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Writes a job's status, rounds and body, with the audit entries of what it released or concluded.
    pub async fn update_job(&self, job: &JobRow, audit: &[Event]) -> Result<(), StoreError> {
        let body = job.body.to_string();
        with_audit_writer!(self.pool, pool => {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query("UPDATE compute_jobs SET status = $2, rounds = $3, body = $4, updated_at = $5 WHERE id = $1")
                .bind(&job.id)
                .bind(&job.status)
                .bind(job.rounds)
                .bind(&body)
                .bind(now_millis())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated == 0 {
                tx.rollback().await?;
                return Err(StoreError::NotFound { kind: "job", id: job.id.clone() });
            }
            (*tx).append(&self.pool.seal, audit).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        let row: Option<Row> = with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
            .bind(id)
            .fetch_optional(pool)
            .await?);
        row.map(Row::into_job).transpose()
    }

    /// Provider: the job a consumer submitted under its own job id.
    pub async fn job_of_peer(&self, counter_party: &str, peer_job_id: &str) -> Result<Option<JobRow>, StoreError> {
        let row: Option<Row> = with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE counter_party_id = $1 AND peer_job_id = $2")))
            .bind(counter_party)
            .bind(peer_job_id)
            .fetch_optional(pool)
            .await?);
        row.map(Row::into_job).transpose()
    }

    /// The jobs of a role in one status (`running`, ...), oldest first.
    pub async fn jobs_in(&self, role: &str, status: &str) -> Result<Vec<JobRow>, StoreError> {
        let rows: Vec<Row> = with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE role = $1 AND status = $2 ORDER BY created_at, id")))
            .bind(role)
            .bind(status)
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(Row::into_job).collect()
    }

    /// The jobs of a role under one agreement, oldest first.
    pub async fn jobs_of_agreement(&self, role: &str, agreement_id: &str) -> Result<Vec<JobRow>, StoreError> {
        let rows: Vec<Row> = with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE role = $1 AND agreement_id = $2 ORDER BY created_at, id")))
            .bind(role)
            .bind(agreement_id)
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(Row::into_job).collect()
    }

    /// Every job of a role, newest first.
    pub async fn jobs(&self, role: &str) -> Result<Vec<JobRow>, StoreError> {
        let rows: Vec<Row> = with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE role = $1 ORDER BY created_at DESC, id")))
            .bind(role)
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(Row::into_job).collect()
    }
}
