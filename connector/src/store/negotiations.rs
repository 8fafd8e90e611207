//! Negotiations, their outbox and agreements. A state change, the messages it sends and the agreement it makes are
//! written in one transaction; concurrent writers are kept apart by the row's `version` (optimistic locking), and the
//! dispatcher claims outgoing messages with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL).

use serde_json::Value;
use sqlx::FromRow;

use super::{Store, StoreError, now_millis, parse_body, with_pool};

/// A negotiation as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NegotiationRow {
    pub id: String,
    pub role: String,
    pub state: String,
    pub peer_pid: Option<String>,
    pub counter_party_id: String,
    pub counter_party_address: String,
    pub body: Value,
    pub last_received: Option<String>,
    pub last_answer: Option<Value>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(FromRow)]
struct Row {
    id: String,
    role: String,
    state: String,
    peer_pid: Option<String>,
    counter_party_id: String,
    counter_party_address: String,
    body: String,
    last_received: Option<String>,
    last_answer: Option<String>,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl Row {
    fn into_negotiation(self) -> Result<NegotiationRow, StoreError> {
        Ok(NegotiationRow {
            body: parse_body("negotiation", &self.id, &self.body)?,
            last_answer: self.last_answer.as_deref().map(|a| parse_body("negotiation", &self.id, a)).transpose()?,
            id: self.id,
            role: self.role,
            state: self.state,
            peer_pid: self.peer_pid,
            counter_party_id: self.counter_party_id,
            counter_party_address: self.counter_party_address,
            last_received: self.last_received,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A message to send after the transaction commits.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub url: String,
    pub message: Value,
    /// A last termination notice: sent once, and its failure starts nothing further.
    pub final_notice: bool,
}

/// A claimed outgoing message.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedMessage {
    pub id: i64,
    pub negotiation_id: String,
    pub url: String,
    pub message: Value,
    pub final_notice: bool,
    /// Attempts so far, this one included.
    pub attempts: i64,
    /// The counter-party, when the claimer knows it already.
    pub counter_party: Option<String>,
}

/// How long a claimed message stays reserved for the process that claimed it.
pub const OUTBOX_LEASE_MS: i64 = 15_000;

/// An agreement as stored.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct AgreementRow {
    pub id: String,
    pub negotiation_id: String,
    pub asset_id: String,
    pub provider_id: String,
    pub consumer_id: String,
    pub policy: String,
    pub signed_at: i64,
}

const SELECT: &str = "SELECT id, role, state, peer_pid, counter_party_id, counter_party_address, body, last_received, \
                      last_answer, version, created_at, updated_at FROM negotiations";

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| e.is_unique_violation())
}

impl Store {
    pub async fn negotiation(&self, id: &str) -> Result<Option<NegotiationRow>, StoreError> {
        let row: Option<Row> = with_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
            .bind(id)
            .fetch_optional(pool)
            .await?);
        row.map(Row::into_negotiation).transpose()
    }

    /// The negotiation of `role` with `counter_party_id` that the peer knows as `peer_pid`.
    pub async fn negotiation_by_peer(
        &self,
        role: &str,
        counter_party_id: &str,
        peer_pid: &str,
    ) -> Result<Option<NegotiationRow>, StoreError> {
        let row: Option<Row> = with_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE role = $1 AND counter_party_id = $2 AND peer_pid = $3"
        )))
        .bind(role)
        .bind(counter_party_id)
        .bind(peer_pid)
        .fetch_optional(pool)
        .await?);
        row.map(Row::into_negotiation).transpose()
    }

    pub async fn negotiations(&self) -> Result<Vec<NegotiationRow>, StoreError> {
        let rows: Vec<Row> = with_pool!(self, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY created_at, id")))
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(Row::into_negotiation).collect()
    }

    /// Writes a negotiation — new (`expected_version` `None`) or replacing `expected_version` — with its outgoing
    /// messages and agreement, in one transaction. `Ok(None)`: someone else changed it first (the caller retries);
    /// `Conflict`: a new negotiation clashes with an existing one. `Ok(Some(messages))`: committed; `messages` are the
    /// outgoing messages already leased to this process (the negotiation had nothing else pending), to be sent at
    /// once — the others wait for the dispatcher's claim, so that a negotiation's messages leave in order.
    ///
    /// `superseding`: the write answers a legal message from the peer, which proves the peer received everything this
    /// side sent before; those older messages leave the outbox in the same transaction.
    pub async fn write_negotiation(
        &self,
        row: &NegotiationRow,
        expected_version: Option<i64>,
        outbox: &[OutboxMessage],
        agreement: Option<&AgreementRow>,
        superseding: bool,
    ) -> Result<Option<Vec<ClaimedMessage>>, StoreError> {
        let now = now_millis();
        let body = row.body.to_string();
        let answer = row.last_answer.as_ref().map(Value::to_string);
        let written = with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let affected = match expected_version {
                None => {
                    let insert = sqlx::query(
                        "INSERT INTO negotiations (id, role, state, peer_pid, counter_party_id, counter_party_address, body, \
                         last_received, last_answer, version, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10)",
                    )
                    .bind(&row.id)
                    .bind(&row.role)
                    .bind(&row.state)
                    .bind(&row.peer_pid)
                    .bind(&row.counter_party_id)
                    .bind(&row.counter_party_address)
                    .bind(&body)
                    .bind(&row.last_received)
                    .bind(&answer)
                    .bind(now)
                    .execute(&mut *tx)
                    .await;
                    match insert {
                        Ok(result) => result.rows_affected(),
                        Err(error) if is_unique_violation(&error) => {
                            return Err(StoreError::Conflict { kind: "negotiation", id: row.peer_pid.clone().unwrap_or_else(|| row.id.clone()) });
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
                Some(version) => sqlx::query(
                    "UPDATE negotiations SET state = $2, peer_pid = $3, counter_party_address = $4, body = $5, \
                     last_received = $6, last_answer = $7, version = version + 1, updated_at = $8 \
                     WHERE id = $1 AND version = $9",
                )
                .bind(&row.id)
                .bind(&row.state)
                .bind(&row.peer_pid)
                .bind(&row.counter_party_address)
                .bind(&body)
                .bind(&row.last_received)
                .bind(&answer)
                .bind(now)
                .bind(version)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            };
            if affected == 0 {
                tx.rollback().await?;
                None
            } else {
                if superseding {
                    sqlx::query("DELETE FROM outbox WHERE negotiation_id = $1 AND final_notice = 0").bind(&row.id).execute(&mut *tx).await?;
                }
                // After a supersede nothing older is pending; otherwise count.
                let (pending,): (i64,) = if outbox.is_empty() {
                    (1,)
                } else if superseding {
                    (0,)
                } else {
                    sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE negotiation_id = $1").bind(&row.id).fetch_one(&mut *tx).await?
                };
                let mut handed = Vec::new();
                for (i, message) in outbox.iter().enumerate() {
                    // Only the first message of a negotiation with nothing else pending is leased right away.
                    let lease = (pending == 0 && i == 0).then_some(now + OUTBOX_LEASE_MS);
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO outbox (negotiation_id, url, message, final_notice, attempts, next_attempt_at, lease_until, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $6) RETURNING id",
                    )
                    .bind(&row.id)
                    .bind(&message.url)
                    .bind(message.message.to_string())
                    .bind(i64::from(message.final_notice))
                    .bind(i64::from(lease.is_some()))
                    .bind(now)
                    .bind(lease)
                    .fetch_one(&mut *tx)
                    .await?;
                    if lease.is_some() {
                        handed.push(ClaimedMessage {
                            id,
                            negotiation_id: row.id.clone(),
                            url: message.url.clone(),
                            message: message.message.clone(),
                            final_notice: message.final_notice,
                            attempts: 1,
                            counter_party: Some(row.counter_party_id.clone()),
                        });
                    }
                }
                if let Some(agreement) = agreement {
                    sqlx::query(
                        "INSERT INTO agreements (id, negotiation_id, asset_id, provider_id, consumer_id, policy, signed_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&agreement.id)
                    .bind(&agreement.negotiation_id)
                    .bind(&agreement.asset_id)
                    .bind(&agreement.provider_id)
                    .bind(&agreement.consumer_id)
                    .bind(&agreement.policy)
                    .bind(agreement.signed_at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Some(handed)
            }
        });
        Ok(written)
    }

    /// Records the peer's process id once it is known (never overwrites one).
    pub async fn set_peer_pid(&self, id: &str, peer_pid: &str) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::query("UPDATE negotiations SET peer_pid = $2, version = version + 1 WHERE id = $1 AND peer_pid IS NULL")
            .bind(id)
            .bind(peer_pid)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Claims up to `limit` due messages — only the oldest pending one of each negotiation, so that a peer receives a
    /// negotiation's messages in order — leasing them for `lease_ms`.
    pub async fn claim_outbox(&self, limit: i64, lease_ms: i64) -> Result<Vec<ClaimedMessage>, StoreError> {
        let now = now_millis();
        const DUE: &str = "SELECT id FROM outbox o WHERE next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until < $2) \
                           AND id = (SELECT MIN(id) FROM outbox p WHERE p.negotiation_id = o.negotiation_id) ORDER BY id LIMIT $3";
        let rows: Vec<(i64, String, String, String, i64, i64)> = with_pool!(self, pool => {
            let sql = match self.dialect() {
                super::Dialect::Postgres => format!("{DUE} FOR UPDATE SKIP LOCKED"),
                super::Dialect::Sqlite => DUE.to_owned(),
            };
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE outbox SET lease_until = $1, attempts = attempts + 1 WHERE id IN ({sql}) \
                 RETURNING id, negotiation_id, url, message, final_notice, attempts"
            )))
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        let mut claimed = rows
            .into_iter()
            .map(|(id, negotiation_id, url, message, final_notice, attempts)| {
                Ok(ClaimedMessage {
                    message: parse_body("outbox message", &id.to_string(), &message)?,
                    id,
                    negotiation_id,
                    url,
                    final_notice: final_notice != 0,
                    attempts,
                    counter_party: None,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    /// A message was delivered (or given up): it leaves the outbox.
    pub async fn remove_outbox(&self, id: i64) -> Result<(), StoreError> {
        self.remove_outbox_many(&[id]).await
    }

    /// Several messages leave the outbox in one statement.
    pub async fn remove_outbox_many(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        let sql = format!("DELETE FROM outbox WHERE id IN ({})", list.join(","));
        with_pool!(self, pool => sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// Every pending message of a negotiation leaves the outbox (it terminated).
    pub async fn clear_outbox(&self, negotiation_id: &str) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::query("DELETE FROM outbox WHERE negotiation_id = $1 AND final_notice = 0")
            .bind(negotiation_id)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Schedules another attempt.
    pub async fn retry_outbox(&self, id: i64, next_attempt_at: i64) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::query("UPDATE outbox SET next_attempt_at = $2, lease_until = NULL WHERE id = $1")
            .bind(id)
            .bind(next_attempt_at)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// How many messages wait to be sent.
    pub async fn outbox_len(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) =
            with_pool!(self, pool => sqlx::query_as("SELECT COUNT(*) FROM outbox").fetch_one(pool).await?);
        Ok(n)
    }

    pub async fn agreement(&self, id: &str) -> Result<Option<AgreementRow>, StoreError> {
        Ok(with_pool!(self, pool => sqlx::query_as(
            "SELECT id, negotiation_id, asset_id, provider_id, consumer_id, policy, signed_at FROM agreements WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await?))
    }

    pub async fn agreements(&self) -> Result<Vec<AgreementRow>, StoreError> {
        Ok(with_pool!(self, pool => sqlx::query_as(
            "SELECT id, negotiation_id, asset_id, provider_id, consumer_id, policy, signed_at FROM agreements ORDER BY signed_at, id"
        )
        .fetch_all(pool)
        .await?))
    }
}
