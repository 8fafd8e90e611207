//! Idempotency keys: a management call that starts something runs at most once per `(call, Idempotency-Key)`.
//!
//! The management listener runs such a call inside [`Claim::run`]. The store method that creates the resource
//! (a process, a job, an issued credential) takes the claim ([`take`]) and inserts the key in the same transaction;
//! a key already there fails that transaction, so a retry — after a timeout, a lost answer or a crash — never
//! creates a second resource. Once the call answered, its answer is kept with the key ([`Idempotency::remember`])
//! and a retry gets it back.

use std::cell::RefCell;

use sqlx::FromRow;

use super::statement::{Param, Statement};
use super::{StoreError, now_millis, with_pool, with_writer};

/// A management call's claim on an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The call: method and route template.
    pub scope: String,
    pub key: String,
    /// SHA-256 (hex) of the request body.
    pub digest: String,
}

/// What became of a claim while its call ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Taken {
    /// No store method took it: the call created nothing.
    #[default]
    Untaken,
    /// A creation carried it: the resource it named, if the transaction committed.
    By(String),
    /// The key was there already (a concurrent retry won).
    Lost,
}

tokio::task_local! {
    static CLAIM: RefCell<(Claim, Taken)>;
}

impl Claim {
    /// Runs `call` with this claim for its creating write; answers the call's output and what became of the claim.
    pub async fn run<F: std::future::Future>(self, call: F) -> (F::Output, Taken) {
        CLAIM
            .scope(RefCell::new((self, Taken::Untaken)), async move {
                let output = call.await;
                let taken = CLAIM.with(|claim| claim.borrow().1.clone());
                (output, taken)
            })
            .await
    }
}

/// The insert of the running call's key for `resource`, if a claim is in scope and nothing took it yet.
pub(crate) fn take(resource: &str) -> Option<Statement> {
    CLAIM
        .try_with(|claim| {
            let mut claim = claim.borrow_mut();
            if claim.1 != Taken::Untaken {
                return None;
            }
            claim.1 = Taken::By(resource.to_owned());
            let c = &claim.0;
            Some(Statement::new(
                "INSERT INTO idempotency_keys (scope, key, digest, resource, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (scope, key) DO NOTHING",
                vec![
                    Param::from(&c.scope),
                    Param::from(&c.key),
                    Param::from(&c.digest),
                    Param::from(resource),
                    Param::from(now_millis()),
                ],
            ))
        })
        .ok()
        .flatten()
}

/// Records that the claim's key was there already: the write that carried it was not made.
pub(crate) fn lost() {
    let _ = CLAIM.try_with(|claim| claim.borrow_mut().1 = Taken::Lost);
}

/// Runs a taken claim's insert inside a transaction; `Err(Claimed)` when the key was there already.
macro_rules! claim_in {
    ($tx:expr, $claim:expr) => {
        if let Some(claim) = $claim {
            if claim.query().execute(&mut *$tx).await?.rows_affected() == 0 {
                $crate::idempotency::lost();
                return Err($crate::StoreError::Claimed);
            }
        }
    };
}
pub(crate) use claim_in;

/// A key as kept.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct Remembered {
    pub digest: String,
    pub resource: String,
    /// The first answer, once it was sent.
    pub status: Option<i64>,
    pub answer: Option<String>,
    pub created_at: i64,
}

/// The kept idempotency keys. A view of the store's one pool and writer.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub(crate) pool: crate::Pool,
}

impl Idempotency {
    /// The key of a call, if it was claimed.
    pub async fn recall(&self, scope: &str, key: &str) -> Result<Option<Remembered>, StoreError> {
        Ok(with_pool!(self.pool, pool => sqlx::query_as(
            "SELECT digest, resource, status, answer, created_at FROM idempotency_keys WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(pool)
        .await?))
    }

    /// Keeps the first answer of a claimed key (a later one never replaces it).
    pub async fn remember(&self, scope: &str, key: &str, status: u16, answer: &str) -> Result<(), StoreError> {
        with_writer!(self.pool, pool => sqlx::query(
            "UPDATE idempotency_keys SET status = $3, answer = $4 WHERE scope = $1 AND key = $2 AND answer IS NULL",
        )
        .bind(scope)
        .bind(key)
        .bind(i64::from(status))
        .bind(answer)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Forgets keys claimed before `before` (milliseconds); answers how many.
    pub async fn forget_before(&self, before: i64) -> Result<u64, StoreError> {
        Ok(with_writer!(self.pool, pool => sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected()))
    }
}
