//! DSP processes — contract negotiations and transfer processes — and their outgoing message. Both protocols are
//! turn-based, so a process has at most one outgoing message at a time; it lives in the process's own row, and a state
//! change with the message it sends is one statement (atomic on its own). The two kinds have the same columns, each in
//! its own table (`negotiations`, `transfers`). Concurrent writers are kept apart by the row's `version` (optimistic locking);
//! the dispatcher claims due messages with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL). Each new message is
//! numbered (`out_seq`, the row's version when it was written), so that completing or retrying an old message never
//! touches a newer one.

use serde_json::Value;
use sqlx::FromRow;

use super::statement::{Param, Statement};
use super::{StoreError, TokenUse, now_millis, parse_body, with_pool, with_writer};
use hanse_audit::Event;

/// Which kind of DSP process (and so which table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessKind {
    Negotiation,
    Transfer,
}

impl ProcessKind {
    pub fn table(self) -> &'static str {
        match self {
            ProcessKind::Negotiation => "negotiations",
            ProcessKind::Transfer => "transfers",
        }
    }

    /// A short name for messages and logs.
    pub fn name(self) -> &'static str {
        match self {
            ProcessKind::Negotiation => "negotiation",
            ProcessKind::Transfer => "transfer",
        }
    }

    /// What operators call it.
    pub fn label(self) -> &'static str {
        match self {
            ProcessKind::Negotiation => "contract negotiation",
            ProcessKind::Transfer => "transfer process",
        }
    }
}

/// Both kinds.
pub const PROCESS_KINDS: [ProcessKind; 2] = [ProcessKind::Negotiation, ProcessKind::Transfer];

/// A negotiation or transfer process as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessRow {
    pub id: String,
    pub role: String,
    pub state: String,
    pub peer_pid: Option<String>,
    pub counter_party_id: String,
    pub counter_party_address: String,
    pub body: Value,
    pub last_received: Option<String>,
    pub last_answer: Option<Value>,
    /// The agreement a negotiation made, or the one a transfer runs under.
    pub agreement_id: Option<String>,
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
    agreement_id: Option<String>,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl Row {
    /// A row of [`COLUMNS`] as SQLite's own API reads it.
    fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            id: row.get(0)?,
            role: row.get(1)?,
            state: row.get(2)?,
            peer_pid: row.get(3)?,
            counter_party_id: row.get(4)?,
            counter_party_address: row.get(5)?,
            body: row.get(6)?,
            last_received: row.get(7)?,
            last_answer: row.get(8)?,
            agreement_id: row.get(9)?,
            version: row.get(10)?,
            created_at: row.get(11)?,
            updated_at: row.get(12)?,
        })
    }

    fn into_process(self) -> Result<ProcessRow, StoreError> {
        Ok(ProcessRow {
            body: parse_body("process", &self.id, &self.body)?,
            last_answer: self.last_answer.as_deref().map(|a| parse_body("process", &self.id, a)).transpose()?,
            id: self.id,
            role: self.role,
            state: self.state,
            peer_pid: self.peer_pid,
            counter_party_id: self.counter_party_id,
            counter_party_address: self.counter_party_address,
            last_received: self.last_received,
            agreement_id: self.agreement_id,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A message to send once the write commits, serialised once: the text is what the row keeps, what is sent and what
/// the audit entry's digest covers.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub url: String,
    message: Value,
    text: String,
    /// A last termination notice: sent once, and its failure starts nothing further.
    pub final_notice: bool,
}

impl OutboxMessage {
    pub fn new(url: String, message: Value) -> OutboxMessage {
        let text = message.to_string();
        OutboxMessage { url, message, text, final_notice: false }
    }

    pub fn message(&self) -> &Value {
        &self.message
    }

    /// The message as JSON text.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// What happens to the process's pending message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing<'a> {
    /// Leave it as it is.
    Keep,
    /// It is delivered or obsolete (the peer answered it): clear it.
    Clear,
    /// Replace it with this message, leased to this process for immediate sending.
    Send(&'a OutboxMessage),
}

/// A claimed outgoing message.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedMessage {
    pub kind: ProcessKind,
    pub process_id: String,
    /// Which message of the process this is.
    pub seq: i64,
    /// The message, its address and its text as stored.
    pub sent: OutboxMessage,
    /// Attempts so far, this one included.
    pub attempts: i64,
    pub counter_party: Option<String>,
}

/// An agreement as stored (read from the negotiation that made it).
#[derive(Debug, Clone, PartialEq)]
pub struct AgreementRow {
    pub id: String,
    pub negotiation_id: String,
    pub asset_id: String,
    pub provider_id: String,
    pub consumer_id: String,
    /// The agreement, DSP compact JSON.
    pub policy: Value,
    pub signed_at: i64,
}

/// How long a claimed message stays reserved for the process that claimed it.
pub const OUTBOX_LEASE_MS: i64 = 15_000;

const COLUMNS: &str = "id, role, state, peer_pid, counter_party_id, counter_party_address, body, last_received, \
                       last_answer, agreement_id, version, created_at, updated_at";

/// A process column a page query may filter or sort on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowColumn {
    Id,
    State,
    Role,
    CounterPartyId,
    CounterPartyAddress,
    PeerPid,
    CreatedAt,
    UpdatedAt,
}

impl RowColumn {
    fn name(self) -> &'static str {
        match self {
            RowColumn::Id => "id",
            RowColumn::State => "state",
            RowColumn::Role => "role",
            RowColumn::CounterPartyId => "counter_party_id",
            RowColumn::CounterPartyAddress => "counter_party_address",
            RowColumn::PeerPid => "peer_pid",
            RowColumn::CreatedAt => "created_at",
            RowColumn::UpdatedAt => "updated_at",
        }
    }
}

/// A criterion of a page query on a text column.
#[derive(Debug, Clone, PartialEq)]
pub enum RowCriterion {
    /// The column holds one of these values.
    In(RowColumn, Vec<String>),
    /// The column is empty or holds another value.
    Not(RowColumn, String),
}

/// A page query over process rows: criteria (all must hold), the order (by a column, then by creation and id; or
/// by creation and id), and the page.
#[derive(Debug, Clone, PartialEq)]
pub struct RowQuery {
    pub filter: Vec<RowCriterion>,
    pub sort: Option<RowColumn>,
    pub descending: bool,
    pub offset: u64,
    pub limit: u64,
}

/// Negotiations and transfers, their outgoing messages, agreements and usage. A view of the store's one pool and writer.
#[derive(Debug, Clone)]
pub struct Processes {
    pub(crate) pool: crate::Pool,
}

/// How many processes of a kind are in each role and state, and how their outgoing messages stand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Census {
    /// `(role, state, count)`.
    pub states: Vec<(String, String, i64)>,
    /// Messages waiting to be delivered (first attempt or retry).
    pub outbox: i64,
    /// When the longest-waiting message was queued (epoch milliseconds), if any waits.
    pub oldest_queued_at: Option<i64>,
}

impl Processes {
    /// Where the users of processes record what they measure.
    pub fn meter(&self) -> &hanse_core::meter::Meter {
        &self.pool.meter
    }

    /// The processes of `kind` counted by role and state, and their outbox.
    pub async fn census(&self, kind: ProcessKind) -> Result<Census, StoreError> {
        let table = kind.table();
        let states: Vec<(String, String, i64)> = with_pool!(self.pool, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT role, state, COUNT(*) FROM {table} GROUP BY role, state ORDER BY role, state"
            )))
            .fetch_all(pool)
            .await?
        });
        let (outbox, oldest_queued_at): (i64, Option<i64>) = with_pool!(self.pool, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*), MIN(updated_at) FROM {table} WHERE out_message IS NOT NULL"
            )))
            .fetch_one(pool)
            .await?
        });
        Ok(Census { states, outbox, oldest_queued_at })
    }

    pub async fn process(&self, kind: ProcessKind, id: &str) -> Result<Option<ProcessRow>, StoreError> {
        let table = kind.table();
        let statement = Statement::new(format!("SELECT {COLUMNS} FROM {table} WHERE id = $1"), vec![Param::from(id)]);
        self.process_where(statement).await
    }

    /// The one process `statement` selects ([`COLUMNS`]), read at once on SQLite.
    async fn process_where(&self, statement: Statement) -> Result<Option<ProcessRow>, StoreError> {
        let row = match self.pool.read_now(&statement, Row::from_sqlite) {
            Some(row) => row?,
            None => with_pool!(self.pool, pool => statement.query_as().fetch_optional(pool).await?),
        };
        row.map(Row::into_process).transpose()
    }

    /// The processes of `kind` among `ids` whose outgoing message still waits to be delivered.
    pub async fn with_outgoing(&self, kind: ProcessKind, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let mut waiting = Vec::new();
        for chunk in ids.chunks(500) {
            let sql = format!("SELECT id FROM {} WHERE out_message IS NOT NULL AND id IN (", kind.table());
            let mut statement = Statement::new(sql, Vec::new());
            statement.list(chunk.iter().map(Param::from)).sql.push(')');
            let rows: Vec<(String,)> = with_pool!(self.pool, pool => statement.query_as().fetch_all(pool).await?);
            waiting.extend(rows.into_iter().map(|(id,)| id));
        }
        Ok(waiting)
    }

    pub async fn negotiation(&self, id: &str) -> Result<Option<ProcessRow>, StoreError> {
        self.process(ProcessKind::Negotiation, id).await
    }

    pub async fn transfer(&self, id: &str) -> Result<Option<ProcessRow>, StoreError> {
        self.process(ProcessKind::Transfer, id).await
    }

    /// The process of `role` with `counter_party_id` that the peer knows as `peer_pid`.
    pub async fn process_by_peer(
        &self,
        kind: ProcessKind,
        role: &str,
        counter_party_id: &str,
        peer_pid: &str,
    ) -> Result<Option<ProcessRow>, StoreError> {
        let table = kind.table();
        self.process_where(Statement::new(
            format!("SELECT {COLUMNS} FROM {table} WHERE role = $1 AND counter_party_id = $2 AND peer_pid = $3"),
            vec![Param::from(role), Param::from(counter_party_id), Param::from(peer_pid)],
        ))
        .await
    }

    pub async fn processes(&self, kind: ProcessKind) -> Result<Vec<ProcessRow>, StoreError> {
        let table = kind.table();
        let rows: Vec<Row> = with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM {table} ORDER BY created_at, id")))
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(Row::into_process).collect()
    }

    /// One page of processes selected and ordered in SQL (the management queries whose criteria and order the
    /// columns answer): the rows `processes` would give, filtered, ordered and paged as `query` says.
    pub async fn page(&self, kind: ProcessKind, query: &RowQuery) -> Result<Vec<ProcessRow>, StoreError> {
        let table = kind.table();
        let mut values: Vec<&str> = Vec::new();
        let mut clauses = Vec::new();
        for criterion in &query.filter {
            match criterion {
                RowCriterion::In(column, wanted) => {
                    let mut marks = Vec::new();
                    for value in wanted {
                        values.push(value);
                        marks.push(format!("${}", values.len()));
                    }
                    clauses.push(if marks.is_empty() {
                        "1 = 0".to_owned()
                    } else {
                        format!("{} IN ({})", column.name(), marks.join(", "))
                    });
                }
                RowCriterion::Not(column, value) => {
                    values.push(value);
                    clauses.push(format!("({0} IS NULL OR {0} <> ${1})", column.name(), values.len()));
                }
            }
        }
        let filter = if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
        let order = match (query.sort, query.descending) {
            (Some(column), true) => format!("{} DESC, created_at, id", column.name()),
            (Some(column), false) => format!("{}, created_at, id", column.name()),
            (None, true) => "created_at DESC, id DESC".to_owned(),
            (None, false) => "created_at, id".to_owned(),
        };
        // The page's ids are chosen over the narrow columns alone (an index, or a sort of small rows), then its rows
        // read: a sort never carries the bodies of every process.
        let sql = format!(
            "SELECT {COLUMNS} FROM {table} WHERE id IN \
             (SELECT id FROM {table} {filter} ORDER BY {order} LIMIT {} OFFSET {}) ORDER BY {order}",
            query.limit, query.offset
        );
        let rows: Vec<Row> = with_pool!(self.pool, pool => {
            let mut statement = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for value in &values {
                statement = statement.bind(*value);
            }
            statement.fetch_all(pool).await?
        });
        rows.into_iter().map(Row::into_process).collect()
    }

    /// The processes made under (a transfer) or making (a negotiation) agreement `agreement_id`.
    pub async fn processes_of_agreement(
        &self,
        kind: ProcessKind,
        agreement_id: &str,
    ) -> Result<Vec<ProcessRow>, StoreError> {
        let table = kind.table();
        let rows: Vec<Row> = with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {table} WHERE agreement_id = $1 ORDER BY created_at, id"
        )))
        .bind(agreement_id)
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(Row::into_process).collect()
    }

    /// Up to `limit` processes in one of `states` that have not changed since `before` (milliseconds) and have no
    /// message waiting to be sent: processes waiting for their peer (convergence), oldest first.
    pub async fn silent(
        &self,
        kind: ProcessKind,
        states: &[&str],
        before: i64,
        limit: i64,
    ) -> Result<Vec<ProcessRow>, StoreError> {
        let table = kind.table();
        let list: Vec<String> = states.iter().map(|s| format!("'{}'", s.replace('\'', ""))).collect();
        let rows: Vec<Row> = with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {table} WHERE state IN ({}) AND updated_at < $1 AND out_message IS NULL \
             ORDER BY updated_at LIMIT $2",
            list.join(", ")
        )))
        .bind(before)
        .bind(limit)
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(Row::into_process).collect()
    }

    /// The processes of `role` in `state` (indexed by state).
    pub async fn processes_in(
        &self,
        kind: ProcessKind,
        role: &str,
        state: &str,
    ) -> Result<Vec<ProcessRow>, StoreError> {
        let table = kind.table();
        let rows: Vec<Row> = with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM {table} WHERE state = $1 AND role = $2 ORDER BY created_at, id"
        )))
        .bind(state)
        .bind(role)
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(Row::into_process).collect()
    }

    /// Writes a process — new (`expected_version` `None`) or replacing `expected_version` — what becomes of its
    /// outgoing message, the audit entries of the change, and the id of the token that carried the message causing
    /// it (if any), in one transaction. `Ok(None)`: someone else changed it first (the caller retries; nothing was
    /// recorded); `Conflict`: a new process clashes with an existing one; `Replayed`: the token was used before.
    /// `Ok(Some(message))`: committed; a sent message comes back leased to this process, to be delivered at once.
    pub async fn write_process(
        &self,
        kind: ProcessKind,
        row: &ProcessRow,
        expected_version: Option<i64>,
        outgoing: Outgoing<'_>,
        audit: Vec<Event>,
        token: Option<&TokenUse>,
    ) -> Result<Option<Option<ClaimedMessage>>, StoreError> {
        let now = now_millis();
        let body = row.body.to_string();
        let answer = row.last_answer.as_ref().map(Value::to_string);
        let (send, clear) = match outgoing {
            Outgoing::Send(message) => (Some(message), false),
            Outgoing::Clear => (None, true),
            Outgoing::Keep => (None, false),
        };
        let message_text = send.map(|m| m.text.clone());
        let table = kind.table();
        // $1–$12 are the same in both statements: what the row becomes, and the message it sends (if any).
        let mut params = vec![
            Param::from(&row.id),
            Param::from(&row.state),
            Param::from(&row.peer_pid),
            Param::from(&row.counter_party_address),
            Param::from(body),
            Param::from(&row.last_received),
            Param::from(answer),
            Param::from(&row.agreement_id),
            Param::from(now),
            Param::from(send.map(|m| m.url.as_str())),
            Param::from(message_text),
            Param::from(i64::from(send.is_some_and(|m| m.final_notice))),
        ];
        let sql = match expected_version {
            None => {
                params.extend([
                    Param::from(&row.role),
                    Param::from(&row.counter_party_id),
                    Param::from(i64::from(send.is_some())),
                    Param::from(send.map(|_| now + OUTBOX_LEASE_MS)),
                ]);
                format!(
                    "INSERT INTO {table} (id, role, state, peer_pid, counter_party_id, counter_party_address, body, \
                     last_received, last_answer, agreement_id, version, created_at, updated_at, \
                     out_url, out_message, out_final, out_attempts, out_next_at, out_lease, out_seq) \
                     VALUES ($1, $13, $2, $3, $14, $4, $5, $6, $7, $8, 1, $9, $9, $10, $11, $12, $15, $9, $16, $15)"
                )
            }
            Some(version) => {
                params.extend([
                    Param::from(version),
                    Param::from(now + OUTBOX_LEASE_MS),
                    Param::from(i64::from(clear)),
                ]);
                format!(
                    "UPDATE {table} SET state = $2, peer_pid = COALESCE(peer_pid, $3), counter_party_address = $4, \
                     body = $5, last_received = $6, last_answer = $7, agreement_id = $8, version = version + 1, updated_at = $9, \
                     out_url = CASE WHEN $10 IS NOT NULL THEN $10 WHEN $15 = 1 THEN NULL ELSE out_url END, \
                     out_message = CASE WHEN $10 IS NOT NULL THEN $11 WHEN $15 = 1 THEN NULL ELSE out_message END, \
                     out_final = CASE WHEN $10 IS NOT NULL THEN $12 ELSE out_final END, \
                     out_attempts = CASE WHEN $10 IS NOT NULL THEN 1 ELSE out_attempts END, \
                     out_next_at = CASE WHEN $10 IS NOT NULL THEN $9 ELSE out_next_at END, \
                     out_lease = CASE WHEN $10 IS NOT NULL THEN $14 WHEN $15 = 1 THEN NULL ELSE out_lease END, \
                     out_seq = CASE WHEN $10 IS NOT NULL THEN $13 + 1 ELSE out_seq END \
                     WHERE id = $1 AND version = $13"
                )
            }
        };
        let statement = Statement::new(sql, params);
        // A new process is what a management call with an Idempotency-Key creates: the key is claimed with it.
        let claim = if expected_version.is_none() { crate::idempotency::take(&row.id) } else { None };
        let affected = match self.pool.write(Some(statement), audit, token, claim).await {
            Ok(affected) => affected,
            Err(StoreError::Claimed) => {
                crate::idempotency::lost();
                return Err(StoreError::Claimed);
            }
            Err(error) if expected_version.is_none() && error.is_unique_violation() => {
                return Err(StoreError::Conflict {
                    kind: kind.name(),
                    id: row.peer_pid.clone().unwrap_or_else(|| row.id.clone()),
                });
            }
            Err(error) => return Err(error),
        };
        if affected == 0 {
            return Ok(None);
        }
        let Some(message) = send else { return Ok(Some(None)) };
        // A sent message is numbered with the row's new version: unique and increasing, known without a read.
        let seq = expected_version.map_or(1, |v| v + 1);
        Ok(Some(Some(ClaimedMessage {
            kind,
            process_id: row.id.clone(),
            seq,
            sent: message.clone(),
            attempts: 1,
            counter_party: Some(row.counter_party_id.clone()),
        })))
    }

    /// Claims up to `limit` due messages of each kind, leasing them for `lease_ms`.
    pub async fn claim_outbox(&self, limit: i64, lease_ms: i64) -> Result<Vec<ClaimedMessage>, StoreError> {
        let now = now_millis();
        let mut claimed = Vec::new();
        for kind in PROCESS_KINDS {
            let table = kind.table();
            let due = format!(
                "SELECT id FROM {table} WHERE out_message IS NOT NULL AND out_next_at <= $2 \
                 AND (out_lease IS NULL OR out_lease < $2) ORDER BY out_next_at LIMIT $3"
            );
            let rows: Vec<(String, i64, String, String, i64, i64, String)> = with_writer!(self.pool, pool => {
                let due = match self.pool.dialect() {
                    super::Dialect::Postgres => format!("{due} FOR UPDATE SKIP LOCKED"),
                    super::Dialect::Sqlite => due,
                };
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET out_lease = $1, out_attempts = out_attempts + 1 WHERE id IN ({due}) \
                     RETURNING id, out_seq, out_url, out_message, out_final, out_attempts, counter_party_id"
                )))
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
            });
            for (process_id, seq, url, text, final_notice, attempts, counter_party) in rows {
                let message = parse_body("outgoing message", &process_id, &text)?;
                claimed.push(ClaimedMessage {
                    sent: OutboxMessage { url, message, text, final_notice: final_notice != 0 },
                    kind,
                    process_id,
                    seq,
                    attempts,
                    counter_party: Some(counter_party),
                });
            }
        }
        Ok(claimed)
    }

    /// A message was delivered (or given up): it is cleared, unless a newer one replaced it. The peer's pid, when the
    /// answer carried one and none was known, is recorded at the same time, without a new version: a change written
    /// meanwhile from a row read before still applies (it cannot clear the pid, which `write_process` only ever
    /// fills), rather than losing its compare-and-set and reading the row again.
    pub async fn complete_outgoing(&self, message: &ClaimedMessage, peer_pid: Option<&str>) -> Result<(), StoreError> {
        let table = message.kind.table();
        let statement = Statement::new(
            format!(
                "UPDATE {table} SET \
                 peer_pid = COALESCE(peer_pid, $3), \
                 out_url = CASE WHEN out_seq = $2 THEN NULL ELSE out_url END, \
                 out_message = CASE WHEN out_seq = $2 THEN NULL ELSE out_message END, \
                 out_lease = CASE WHEN out_seq = $2 THEN NULL ELSE out_lease END \
                 WHERE id = $1"
            ),
            vec![Param::from(&message.process_id), Param::from(message.seq), Param::from(peer_pid)],
        );
        self.pool.write(Some(statement), Vec::new(), None, None).await?;
        Ok(())
    }

    /// Schedules another attempt of `message`.
    pub async fn retry_outgoing(&self, message: &ClaimedMessage, next_attempt_at: i64) -> Result<(), StoreError> {
        let table = message.kind.table();
        let statement = Statement::new(
            format!("UPDATE {table} SET out_next_at = $3, out_lease = NULL WHERE id = $1 AND out_seq = $2"),
            vec![Param::from(&message.process_id), Param::from(message.seq), Param::from(next_attempt_at)],
        );
        self.pool.write(Some(statement), Vec::new(), None, None).await?;
        Ok(())
    }

    /// The agreement a negotiation made, if any.
    pub fn agreement_of(row: ProcessRow) -> Option<AgreementRow> {
        let policy = row.body.get("agreement").cloned().filter(|a| a.is_object())?;
        let text = |key: &str| policy.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        let signed_at = chrono::DateTime::parse_from_rfc3339(&text("timestamp"))
            .map(|t| t.timestamp_millis())
            .unwrap_or(row.updated_at);
        Some(AgreementRow {
            id: row.agreement_id.clone()?,
            negotiation_id: row.id,
            asset_id: text("target"),
            provider_id: text("assigner"),
            consumer_id: text("assignee"),
            policy,
            signed_at,
        })
    }

    pub async fn agreement(&self, id: &str) -> Result<Option<AgreementRow>, StoreError> {
        Ok(self.agreement_negotiation(id).await?.and_then(Processes::agreement_of))
    }

    /// The negotiation that made agreement `id`.
    pub async fn agreement_negotiation(&self, id: &str) -> Result<Option<ProcessRow>, StoreError> {
        let row: Option<Row> = with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM negotiations WHERE agreement_id = $1")))
            .bind(id)
            .fetch_optional(pool)
            .await?);
        row.map(Row::into_process).transpose()
    }

    pub async fn agreements(&self) -> Result<Vec<AgreementRow>, StoreError> {
        let rows: Vec<Row> = with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM negotiations WHERE agreement_id IS NOT NULL ORDER BY updated_at, id"
        )))
        .fetch_all(pool)
        .await?);
        let mut agreements = Vec::new();
        for row in rows {
            agreements.extend(Processes::agreement_of(row.into_process()?));
        }
        Ok(agreements)
    }
}

/// How much an agreement has been used through the data plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub pulls: i64,
    pub bytes: i64,
    /// Compute jobs admitted.
    pub jobs: i64,
}

impl Processes {
    /// Adds `pulls` and `bytes` to an agreement's usage, with the audit entries of that use.
    pub async fn add_usage(
        &self,
        agreement_id: &str,
        pulls: i64,
        bytes: i64,
        audit: Vec<Event>,
    ) -> Result<(), StoreError> {
        let statement = Statement::new(
            "INSERT INTO agreement_usage (agreement_id, pulls, bytes, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (agreement_id) DO UPDATE SET pulls = agreement_usage.pulls + excluded.pulls, \
             bytes = agreement_usage.bytes + excluded.bytes, updated_at = excluded.updated_at",
            vec![Param::from(agreement_id), Param::from(pulls), Param::from(bytes), Param::from(now_millis())],
        );
        self.pool.write(Some(statement), audit, None, None).await?;
        Ok(())
    }

    pub async fn usage(&self, agreement_id: &str) -> Result<Usage, StoreError> {
        let row: Option<(i64, i64, i64)> = with_pool!(self.pool, pool => sqlx::query_as("SELECT pulls, bytes, jobs FROM agreement_usage WHERE agreement_id = $1")
            .bind(agreement_id)
            .fetch_optional(pool)
            .await?);
        Ok(row.map(|(pulls, bytes, jobs)| Usage { pulls, bytes, jobs }).unwrap_or_default())
    }
}
