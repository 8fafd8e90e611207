//! The audit log's tables: entries, perfect-subtree hashes, the head row, signed tree heads, receipts and witnessed
//! heads. Appending happens inside the transaction of the change it records ([`Append`]); everything else here reads,
//! or writes what is not itself an audited change (signed heads, receipts, witness records).

use std::collections::{BTreeMap, HashMap};

use sqlx::{FromRow, PgConnection, Row, SqliteConnection};

use super::statement::{Param, Statement};
use super::{StoreError, now_millis, with_pool, with_writer};
use hanse_audit::Event;
use hanse_audit::merkle::{Frontier, Hash};

/// One stored entry.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    /// Canonical JSON: the leaf's exact bytes.
    pub entry: String,
    /// The root once this entry was appended.
    pub root: Hash,
}

#[derive(FromRow)]
struct EntryRow {
    seq: i64,
    at: i64,
    #[sqlx(rename = "type")]
    kind: String,
    entry: String,
    root: Vec<u8>,
}

impl EntryRow {
    fn into_entry(self) -> Result<AuditEntry, StoreError> {
        Ok(AuditEntry { root: hash_of(&self.root)?, seq: self.seq, at: self.at, kind: self.kind, entry: self.entry })
    }
}

/// A row of the entries table with every column, as the self-check reads it.
#[derive(FromRow)]
struct CheckRow {
    seq: i64,
    at: i64,
    #[sqlx(rename = "type")]
    kind: String,
    agreement_id: Option<String>,
    participant: Option<String>,
    dataset: Option<String>,
    entry: String,
    root: Vec<u8>,
}

impl CheckRow {
    fn stored(&self) -> hanse_audit::check::StoredEntry<'_> {
        hanse_audit::check::StoredEntry {
            seq: self.seq,
            at: self.at,
            kind: &self.kind,
            agreement: self.agreement_id.as_deref(),
            participant: self.participant.as_deref(),
            dataset: self.dataset.as_deref(),
            entry: &self.entry,
            root: &self.root,
        }
    }
}

/// What a self-check of the stored log found.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfCheck {
    /// The entries recomputed (0 when a fault stopped the check).
    pub size: u64,
    /// The first thing found wrong.
    pub fault: Option<hanse_audit::verify::Fault>,
}

/// What auditors filter entries by; every member narrows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub agreement: Option<String>,
    pub participant: Option<String>,
    pub dataset: Option<String>,
    pub kind: Option<String>,
    /// Milliseconds, inclusive.
    pub from_time: Option<i64>,
    /// Milliseconds, exclusive.
    pub to_time: Option<i64>,
    /// Entries with a greater sequence number only (paging).
    pub after_seq: Option<i64>,
    pub limit: i64,
}

/// A tree head as this connector signed it.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct SignedHead {
    pub size: i64,
    pub root: Vec<u8>,
    pub signed_at: i64,
    pub jws: String,
}

/// A peer's tree head as we witnessed it.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct Witnessed {
    pub peer: String,
    pub size: i64,
    pub root: Vec<u8>,
    pub tree_head: String,
    pub cosignature: Option<String>,
    pub problem: Option<String>,
    pub seen_at: i64,
}

/// Takes the audit head for `count` new entries: the size after them, and the frontier before them. Taking the head
/// row is the lock that orders every writer's entries.
fn take_head(count: usize) -> Statement {
    Statement::new(
        "UPDATE audit_head SET size = size + $1 WHERE id = 1 RETURNING size, frontier",
        vec![Param::from(count as i64)],
    )
}

/// Sets the head row to `size` entries with `frontier`.
fn put_head(size: i64, frontier: Vec<u8>) -> Statement {
    Statement::new(
        "UPDATE audit_head SET size = $1, frontier = $2 WHERE id = 1",
        vec![Param::from(size), Param::from(frontier)],
    )
}

/// The statements that append `events` to a log of `size` entries whose frontier is `frontier`: the entries (each
/// with the root once it is appended), the receipts they owe and the new perfect-subtree hashes; and the frontier
/// after them, which the caller writes to the head row.
fn append_statements<'e>(
    events: impl IntoIterator<Item = &'e Event>,
    size: i64,
    frontier: &[u8],
) -> Result<(Vec<Statement>, Vec<u8>), StoreError> {
    let mut frontier = Frontier::from_bytes(size as u64, frontier)
        .ok_or_else(|| StoreError::Corrupt("the audit log's frontier does not fit its size".into()))?;
    let at = now_millis();
    let (mut nodes, mut entries, mut receipts) = (Vec::new(), Vec::new(), Vec::new());
    let mut owed = std::collections::HashSet::new();
    for event in events {
        let seq = frontier.size;
        let entry = event.entry(seq, at);
        nodes.extend(frontier.push(hanse_audit::merkle::leaf_hash(entry.as_bytes())));
        entries.push([
            Param::from(seq as i64),
            Param::from(at),
            Param::from(event.kind),
            Param::from(&event.agreement),
            Param::from(&event.participant),
            Param::from(&event.dataset),
            Param::from(entry),
            Param::from(frontier.root().to_vec()),
        ]);
        if let (Some(peer), Some(agreement)) = (&event.owes_receipt, &event.agreement)
            && owed.insert(agreement.as_str())
        {
            receipts.push([Param::from(agreement), Param::from(peer), Param::from(at)]);
        }
    }
    let nodes = nodes.into_iter().map(|(id, hash)| [Param::from(id as i64), Param::from(hash.to_vec())]).collect();
    let mut statements = Statement::inserts(
        "INSERT INTO audit_entries (seq, at, type, agreement_id, participant, dataset, entry, root) VALUES ",
        entries,
    );
    // The first receipt owed for an agreement is the one kept, as when the events are appended one by one.
    statements.extend(Statement::inserts_then(
        "INSERT INTO audit_receipts_out (agreement_id, peer, next_at) VALUES ",
        receipts,
        " ON CONFLICT (agreement_id) DO NOTHING",
    ));
    statements.extend(Statement::inserts("INSERT INTO audit_nodes (id, hash) VALUES ", nodes));
    Ok((statements, frontier.to_bytes()))
}

/// Set once the log failed its self-check: from then on nothing extends it (the connector refuses every change the
/// log would record) until an operator restores the database and restarts. While a check that must come first is
/// running ([`AuditStore::hold_appends`]), appends wait for its outcome. Shared by every view of one store.
#[derive(Debug, Clone)]
pub(crate) struct Seal(std::sync::Arc<SealState>);

#[derive(Debug)]
struct SealState {
    reason: std::sync::OnceLock<String>,
    /// `false` while appends wait for a self-check.
    open: tokio::sync::watch::Sender<bool>,
}

impl Default for Seal {
    fn default() -> Seal {
        Seal(std::sync::Arc::new(SealState {
            reason: std::sync::OnceLock::new(),
            open: tokio::sync::watch::Sender::new(true),
        }))
    }
}

impl Seal {
    /// Seals the log for `reason` (the first reason stays).
    pub(crate) fn seal(&self, reason: String) {
        let _ = self.0.reason.set(reason);
    }

    /// Waits while appends are held, then `Err(Sealed)` if the log is sealed.
    pub(crate) async fn admit(&self) -> Result<(), StoreError> {
        if self.held() {
            let mut open = self.0.open.subscribe();
            // The sender lives as long as this seal: waiting cannot fail.
            let _ = open.wait_for(|open| *open).await;
        }
        match self.0.reason.get() {
            Some(reason) => Err(StoreError::Sealed(reason.clone())),
            None => Ok(()),
        }
    }

    pub(crate) fn reason(&self) -> Option<&str> {
        self.0.reason.get().map(String::as_str)
    }

    /// Holds appends until the answer is dropped.
    fn hold(&self) -> AppendHold {
        self.0.open.send_replace(false);
        AppendHold(self.clone())
    }

    /// Whether appends are held now.
    fn held(&self) -> bool {
        !*self.0.open.borrow()
    }
}

/// Appends wait while this lives ([`AuditStore::hold_appends`]); dropping it lets them go on, or fail if the log was
/// sealed meanwhile.
#[must_use = "appends wait until the hold is dropped"]
pub struct AppendHold(Seal);

impl Drop for AppendHold {
    fn drop(&mut self) {
        self.0.0.open.send_replace(true);
    }
}

/// Appends events to the audit log inside an open transaction: the connection types of both backends.
pub(crate) trait Append {
    /// Appends `events` in order, unless the log is sealed.
    async fn append(&mut self, seal: &Seal, events: &[Event]) -> Result<(), StoreError>;
}

macro_rules! append_on {
    ($connection:ty) => {
        impl Append for $connection {
            async fn append(&mut self, seal: &Seal, events: &[Event]) -> Result<(), StoreError> {
                if events.is_empty() {
                    return Ok(());
                }
                seal.admit().await?;
                let events = &crate::principal::stamped(events);
                let head = take_head(events.len()).query().fetch_one(&mut *self).await?;
                let (size, frontier): (i64, Vec<u8>) = (head.try_get(0)?, head.try_get(1)?);
                let (statements, frontier) = append_statements(events.iter(), size - events.len() as i64, &frontier)?;
                for statement in statements.iter().chain([&put_head(size, frontier)]) {
                    statement.query().execute(&mut *self).await?;
                }
                Ok(())
            }
        }
    };
}
append_on!(SqliteConnection);
append_on!(PgConnection);

/// Reads and locks the audit head row until the transaction ends: a PostgreSQL batch that appends runs it before
/// anything else, so that every writer of every replica locks the head before the rows it changes, and two batches
/// never wait for each other's rows in opposite orders.
pub(crate) const HEAD_FOR_UPDATE: &str = "SELECT size, frontier FROM audit_head WHERE id = 1 FOR UPDATE";

/// The audit head as a writer's current batch leaves it: read from the head row at the batch's first append,
/// advanced in memory by every append after it, and written back once, before the batch commits. On SQLite the writer
/// holds the one write lock for the whole batch; on PostgreSQL a batch that appends reads and locks the head row first
/// ([`HEAD_FOR_UPDATE`]) and holds it until the batch ends. Either way nobody else appends meanwhile.
#[derive(Debug, Clone, Default)]
pub(crate) struct BatchHead(Option<(i64, Vec<u8>)>);

impl BatchHead {
    /// Writes the head back to its row, if an append moved it.
    pub(crate) fn write_back(&mut self, db: &rusqlite::Connection) -> Result<(), StoreError> {
        if let Some((size, frontier)) = self.0.take() {
            put_head(size, frontier).execute_on(db)?;
        }
        Ok(())
    }

    /// The head as a PostgreSQL writer read it from the head row (see [`HEAD_FOR_UPDATE`]).
    pub(crate) fn at(size: i64, frontier: Vec<u8>) -> BatchHead {
        BatchHead(Some((size, frontier)))
    }

    /// Where the batch's appends have brought the head, if it is known.
    pub(crate) fn position(&self) -> Option<&(i64, Vec<u8>)> {
        self.0.as_ref()
    }

    /// The statement that writes the head back to its row, if an append moved it; the head stays known.
    pub(crate) fn write_back_statement(&self, read: &BatchHead) -> Option<Statement> {
        match (&self.0, &read.0) {
            (Some(now), Some(before)) if now == before => None,
            (Some((size, frontier)), _) => Some(put_head(*size, frontier.clone())),
            (None, _) => None,
        }
    }

    /// The statements that append `events` at the head, which the PostgreSQL writer has read and locked
    /// ([`HEAD_FOR_UPDATE`]); the head moves past them. Events of several writes appended together make the same rows
    /// as appended one write after another, in fewer statements.
    pub(crate) fn append_statements<'e>(
        &mut self,
        events: impl ExactSizeIterator<Item = &'e Event>,
    ) -> Result<Vec<Statement>, StoreError> {
        if events.len() == 0 {
            return Ok(Vec::new());
        }
        let head =
            self.0.clone().ok_or_else(|| StoreError::Writer("the audit head was not read before an append".into()))?;
        self.advance(events, head)
    }

    /// Appends `events` on the SQLite writer, inside its batch's transaction. The head row is read, not taken: the
    /// writer holds SQLite's write lock.
    pub(crate) fn append(&mut self, db: &rusqlite::Connection, events: &[Event]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let head = match &self.0 {
            Some(head) => head.clone(),
            None => Statement::new("SELECT size, frontier FROM audit_head WHERE id = 1", Vec::new())
                .first_row_on(db, |row| Ok((row.get(0)?, row.get(1)?)))?
                .ok_or_else(|| StoreError::Corrupt("the audit log has no head row".into()))?,
        };
        for statement in &self.advance(events.iter(), head)? {
            statement.execute_on(db)?;
        }
        Ok(())
    }

    /// The statements that append `events` to the log at `(size, frontier)`; the batch's head moves past them. A
    /// write that then fails restores the head it had before (the writers' savepoint runs do).
    fn advance<'e>(
        &mut self,
        events: impl ExactSizeIterator<Item = &'e Event>,
        (size, frontier): (i64, Vec<u8>),
    ) -> Result<Vec<Statement>, StoreError> {
        let count = events.len() as i64;
        let (statements, frontier) = append_statements(events, size, &frontier)?;
        self.0 = Some((size + count, frontier));
        Ok(statements)
    }
}

fn hash_of(bytes: &[u8]) -> Result<Hash, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt("a stored audit hash is not 32 bytes".into()))
}

const ENTRY_COLUMNS: &str = "seq, at, type, entry, root";

/// The audit log: entries, tree blocks, signed heads, receipts and witnessed heads. A view of the store's one pool and writer.
#[derive(Debug, Clone)]
pub struct AuditStore {
    pub(crate) pool: crate::Pool,
}

impl AuditStore {
    /// Where the log's users record what they measure of it.
    pub fn meter(&self) -> &hanse_core::meter::Meter {
        &self.pool.meter
    }

    /// Appends events on their own (a change the log records that writes nothing else, such as a refused request).
    pub async fn append_audit(&self, events: Vec<Event>) -> Result<(), StoreError> {
        self.pool.write(None, events, None, None).await.map(|_| ())
    }

    /// Recomputes the log from its stored entries and holds every stored part to it ([`hanse_audit::check`]): entries,
    /// index columns, roots, tree nodes, the head row and the signed heads (checked with `keys`, every key the log
    /// `log` ever signed with). Runs in one read-only snapshot, so concurrent appends neither disturb nor wait for it.
    /// Answers the size checked and the first fault, if any; a fault does not seal the log by itself ([`Self::seal`]).
    pub async fn self_check(
        &self,
        log: &str,
        keys: &BTreeMap<String, hanse_keys::jose::Object>,
    ) -> Result<SelfCheck, StoreError> {
        use hanse_audit::check::{self, Recompute};
        const PAGE: i64 = 5_000;
        let postgres = self.pool.dialect() == crate::Dialect::Postgres;
        with_pool!(self.pool, pool => {
            let mut tx = pool.begin().await?;
            if postgres {
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
            }
            let verdict = |fault| Ok(SelfCheck { size: 0, fault: Some(fault) });
            // The sizes of signed heads, to keep the recomputed root at each.
            let signed: Vec<i64> = sqlx::query_scalar("SELECT size FROM audit_tree_heads").fetch_all(&mut *tx).await?;
            let mut wanted: HashMap<i64, Option<Hash>> = signed.into_iter().map(|size| (size, None)).collect();
            if let Some(root) = wanted.get_mut(&0) {
                *root = Some(hanse_audit::merkle::empty_root());
            }
            let mut recompute = Recompute::new();
            loop {
                let rows: Vec<CheckRow> = sqlx::query_as(
                    "SELECT seq, at, type, agreement_id, participant, dataset, entry, root FROM audit_entries \
                     WHERE seq >= $1 ORDER BY seq LIMIT $2",
                )
                .bind(recompute.size() as i64)
                .bind(PAGE)
                .fetch_all(&mut *tx)
                .await?;
                let mut completed = Vec::new();
                for row in &rows {
                    let position = recompute.size();
                    match recompute.next(&row.stored()) {
                        Ok(nodes) => completed.push((position, nodes)),
                        Err(fault) => return verdict(fault),
                    }
                    if let Some(root) = wanted.get_mut(&(position as i64 + 1)) {
                        *root = Some(recompute.frontier().root());
                    }
                }
                let ids: Vec<String> = completed.iter().flat_map(|(_, n)| n.iter().map(|(id, _)| id.to_string())).collect();
                let mut found = HashMap::with_capacity(ids.len());
                for chunk in ids.chunks(500) {
                    let sql = format!("SELECT id, hash FROM audit_nodes WHERE id IN ({})", chunk.join(", "));
                    let nodes: Vec<(i64, Vec<u8>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *tx).await?;
                    found.extend(nodes.into_iter().map(|(id, hash)| (id as u64, hash)));
                }
                for (position, nodes) in &completed {
                    let stored = |id| found.get(&id).map(|hash| hash.as_slice().try_into().unwrap_or([0; 32]));
                    if let Err(fault) = check::check_nodes(*position, nodes, stored) {
                        return verdict(fault);
                    }
                }
                if (rows.len() as i64) < PAGE {
                    break;
                }
            }
            let nodes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_nodes").fetch_one(&mut *tx).await?;
            if nodes as u64 != check::node_count(recompute.size()) {
                let expected = check::node_count(recompute.size());
                return verdict(hanse_audit::verify::Fault {
                    position: None,
                    message: format!("the tree has {nodes} stored nodes where its entries make {expected}: nodes were added or removed"),
                });
            }
            let (size, frontier): (i64, Vec<u8>) =
                sqlx::query_as("SELECT size, frontier FROM audit_head WHERE id = 1").fetch_one(&mut *tx).await?;
            if let Err(fault) = check::check_head_row(recompute.frontier(), size, &frontier) {
                return verdict(fault);
            }
            let mut after = -1i64;
            loop {
                let heads: Vec<(i64, Vec<u8>, String)> = sqlx::query_as(
                    "SELECT size, root, jws FROM audit_tree_heads WHERE size > $1 ORDER BY size LIMIT $2",
                )
                .bind(after)
                .bind(PAGE)
                .fetch_all(&mut *tx)
                .await?;
                for (size, root, jws) in &heads {
                    let recomputed = wanted.get(size).copied().flatten();
                    if let Err(fault) = check::check_signed_head(log, keys, *size, root, jws, recomputed) {
                        return verdict(fault);
                    }
                }
                match heads.last() {
                    Some((size, _, _)) if heads.len() as i64 == PAGE => after = *size,
                    _ => break,
                }
            }
            tx.rollback().await?;
            Ok(SelfCheck { size: recompute.size(), fault: None })
        })
    }

    /// Holds every append until the answer is dropped: a connector holds them while its start-up self-check runs,
    /// so that nothing extends a log before it is known intact, while reads are served meanwhile.
    /// One hold at a time: the first dropped lets appends go on.
    pub fn hold_appends(&self) -> AppendHold {
        self.pool.seal.hold()
    }

    /// Whether appends wait for a self-check now.
    pub fn appends_held(&self) -> bool {
        self.pool.seal.held()
    }

    /// Seals the log: nothing extends it until the connector restarts on a restored database.
    pub fn seal(&self, reason: String) {
        self.pool.seal.seal(reason)
    }

    /// Why the log is sealed, if it is.
    pub fn sealed(&self) -> Option<&str> {
        self.pool.seal.reason()
    }

    /// The log's size and the perfect blocks of its tree.
    pub async fn audit_frontier(&self) -> Result<Frontier, StoreError> {
        let (size, bytes): (i64, Vec<u8>) = with_pool!(self.pool, pool => sqlx::query_as("SELECT size, frontier FROM audit_head WHERE id = 1")
            .fetch_one(pool)
            .await?);
        Frontier::from_bytes(size as u64, &bytes)
            .ok_or_else(|| StoreError::Corrupt("the audit log's frontier does not fit its size".into()))
    }

    /// The log's size now: every entry below it is committed (the head row changes in the transaction that appends).
    pub async fn audit_size(&self) -> Result<u64, StoreError> {
        let size: i64 = with_pool!(self.pool, pool => sqlx::query_scalar("SELECT size FROM audit_head WHERE id = 1")
            .fetch_one(pool)
            .await?);
        Ok(size as u64)
    }

    /// The entries of the given `kinds` in `from..to`, by sequence number, at most `limit`: how a replica learns what
    /// other replicas of the same connector changed. Entries are numbered in the order their transactions commit
    /// (appending locks the head row), so reading up to a size read before leaves no gap behind.
    pub async fn audit_entries_of(
        &self,
        kinds: &[&str],
        from: u64,
        to: u64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut statement = Statement::new(
            "SELECT seq, at, type, entry, root FROM audit_entries WHERE seq >= $1 AND seq < $2 AND type IN (",
            vec![Param::from(from as i64), Param::from(to as i64)],
        );
        statement.list(kinds.iter().map(|kind| Param::from(*kind))).sql.push_str(") ORDER BY seq LIMIT ");
        statement.list([Param::from(limit)]);
        let rows: Vec<EntryRow> = with_pool!(self.pool, pool => statement.query_as().fetch_all(pool).await?);
        rows.into_iter().map(EntryRow::into_entry).collect()
    }

    /// The root of the log's first `size` entries (the empty tree's for 0).
    pub async fn audit_root_at(&self, size: u64) -> Result<Option<Hash>, StoreError> {
        if size == 0 {
            return Ok(Some(hanse_audit::merkle::empty_root()));
        }
        let root: Option<Vec<u8>> = with_pool!(self.pool, pool => sqlx::query_scalar("SELECT root FROM audit_entries WHERE seq = $1")
            .bind(size as i64 - 1)
            .fetch_optional(pool)
            .await?);
        root.map(|r| hash_of(&r)).transpose()
    }

    /// Entries matching a filter, by sequence number.
    pub async fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        // Each condition binds one parameter, in the order they are listed.
        enum Param<'a> {
            Text(&'a str),
            Number(i64),
        }
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        for (column, value) in [
            ("agreement_id = ", &filter.agreement),
            ("participant = ", &filter.participant),
            ("dataset = ", &filter.dataset),
            ("type = ", &filter.kind),
        ] {
            if let Some(value) = value {
                params.push(Param::Text(value));
                conditions.push(format!("{column}${}", params.len()));
            }
        }
        for (condition, value) in
            [("at >= ", filter.from_time), ("at < ", filter.to_time), ("seq > ", filter.after_seq)]
        {
            if let Some(value) = value {
                params.push(Param::Number(value));
                conditions.push(format!("{condition}${}", params.len()));
            }
        }
        let mut sql = format!("SELECT {ENTRY_COLUMNS} FROM audit_entries");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT {}", filter.limit.clamp(1, 10_000)));
        let rows: Vec<EntryRow> = with_pool!(self.pool, pool => {
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for param in &params {
                query = match param {
                    Param::Text(text) => query.bind(*text),
                    Param::Number(number) => query.bind(*number),
                };
            }
            query.fetch_all(pool).await?
        });
        rows.into_iter().map(EntryRow::into_entry).collect()
    }

    /// Entries `[from, to)`.
    pub async fn audit_range(&self, from: u64, to: u64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<EntryRow> = with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_entries WHERE seq >= $1 AND seq < $2 ORDER BY seq"
        )))
        .bind(from as i64)
        .bind(to as i64)
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(EntryRow::into_entry).collect()
    }

    /// The frontier of the log's first `size` entries (where an export of a later range starts).
    pub async fn audit_frontier_at(&self, size: u64) -> Result<Frontier, StoreError> {
        let blocks = self.audit_blocks(&hanse_audit::merkle::frontier_ids(size)).await?;
        Frontier::at(size, &|id| blocks.get(&id).copied())
            .ok_or_else(|| StoreError::Corrupt("a block of the audit tree is missing".into()))
    }

    /// The hashes of perfect subtrees by id (those that exist).
    pub async fn audit_blocks(&self, ids: &[u64]) -> Result<HashMap<u64, Hash>, StoreError> {
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let list: Vec<String> = chunk.iter().map(u64::to_string).collect();
            let sql = format!("SELECT id, hash FROM audit_nodes WHERE id IN ({})", list.join(", "));
            let rows: Vec<(i64, Vec<u8>)> =
                with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?);
            for (id, hash) in rows {
                found.insert(id as u64, hash_of(&hash)?);
            }
        }
        Ok(found)
    }

    /// Keeps a tree head we signed (the first signature of a size stays).
    pub async fn keep_signed_head(&self, head: &SignedHead) -> Result<(), StoreError> {
        with_writer!(self.pool, pool => sqlx::query(
            "INSERT INTO audit_tree_heads (size, root, signed_at, jws) VALUES ($1, $2, $3, $4) ON CONFLICT (size) DO NOTHING",
        )
        .bind(head.size)
        .bind(&head.root)
        .bind(head.signed_at)
        .bind(&head.jws)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    /// The signed head of a size, if we signed one.
    pub async fn signed_head(&self, size: u64) -> Result<Option<SignedHead>, StoreError> {
        Ok(
            with_pool!(self.pool, pool => sqlx::query_as("SELECT size, root, signed_at, jws FROM audit_tree_heads WHERE size = $1")
            .bind(size as i64)
            .fetch_optional(pool)
            .await?),
        )
    }

    /// The heads we signed for sizes in `[from, to]`.
    pub async fn signed_heads(&self, from: u64, to: u64) -> Result<Vec<SignedHead>, StoreError> {
        Ok(with_pool!(self.pool, pool => sqlx::query_as(
            "SELECT size, root, signed_at, jws FROM audit_tree_heads WHERE size >= $1 AND size <= $2 ORDER BY size",
        )
        .bind(from as i64)
        .bind(to as i64)
        .fetch_all(pool)
        .await?))
    }

    /// Keeps a receipt a peer sent for an agreement (a later one from the same peer replaces it).
    pub async fn keep_receipt(&self, agreement_id: &str, issuer: &str, receipt: &str) -> Result<(), StoreError> {
        with_writer!(self.pool, pool => sqlx::query(
            "INSERT INTO audit_receipts (agreement_id, issuer, receipt, received_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (agreement_id, issuer) DO UPDATE SET receipt = excluded.receipt, received_at = excluded.received_at",
        )
        .bind(agreement_id)
        .bind(issuer)
        .bind(receipt)
        .bind(now_millis())
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    /// The receipts peers sent for an agreement (all agreements when `None`), as `(agreement, issuer, receipt)`, in
    /// the order received; with `newest`, only the newest that many, newest first.
    pub async fn receipts(
        &self,
        agreement_id: Option<&str>,
        newest: Option<i64>,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let sql = match newest {
            None => "SELECT agreement_id, issuer, receipt FROM audit_receipts WHERE $1 IS NULL OR agreement_id = $1 \
                     ORDER BY received_at"
                .to_owned(),
            Some(n) => format!(
                "SELECT agreement_id, issuer, receipt FROM audit_receipts WHERE $1 IS NULL OR agreement_id = $1 \
                 ORDER BY received_at DESC LIMIT {}",
                n.max(0)
            ),
        };
        Ok(with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(agreement_id)
        .fetch_all(pool)
        .await?))
    }

    /// Receipts due to be sent, as `(agreement, peer, attempts)`.
    pub async fn receipts_due(&self, limit: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(with_pool!(self.pool, pool => sqlx::query_as(
            "SELECT agreement_id, peer, attempts FROM audit_receipts_out WHERE delivered_at IS NULL AND next_at <= $1 \
             ORDER BY next_at LIMIT $2",
        )
        .bind(now_millis())
        .bind(limit)
        .fetch_all(pool)
        .await?))
    }

    /// Records a receipt's delivery, or schedules the next attempt.
    pub async fn receipt_sent(&self, agreement_id: &str, delivered: bool, next_at: i64) -> Result<(), StoreError> {
        with_writer!(self.pool, pool => sqlx::query(
            "UPDATE audit_receipts_out SET attempts = attempts + 1, next_at = $2, \
             delivered_at = CASE WHEN $3 = 1 THEN $4 ELSE NULL END WHERE agreement_id = $1",
        )
        .bind(agreement_id)
        .bind(next_at)
        .bind(i64::from(delivered))
        .bind(now_millis())
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Every participant we have negotiated with.
    pub async fn counter_parties(&self) -> Result<Vec<String>, StoreError> {
        Ok(with_pool!(self.pool, pool => sqlx::query_scalar("SELECT DISTINCT counter_party_id FROM negotiations")
            .fetch_all(pool)
            .await?))
    }

    /// Keeps a witnessed head.
    pub async fn keep_witnessed(&self, witnessed: &Witnessed) -> Result<(), StoreError> {
        with_writer!(self.pool, pool => sqlx::query(
            "INSERT INTO audit_witnessed (peer, size, root, tree_head, cosignature, problem, seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&witnessed.peer)
        .bind(witnessed.size)
        .bind(&witnessed.root)
        .bind(&witnessed.tree_head)
        .bind(&witnessed.cosignature)
        .bind(&witnessed.problem)
        .bind(witnessed.seen_at)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    /// The last consistent head we witnessed of a peer.
    pub async fn last_witnessed(&self, peer: &str) -> Result<Option<Witnessed>, StoreError> {
        Ok(with_pool!(self.pool, pool => sqlx::query_as(
            "SELECT peer, size, root, tree_head, cosignature, problem, seen_at FROM audit_witnessed \
             WHERE peer = $1 AND problem IS NULL ORDER BY size DESC, seen_at DESC LIMIT 1",
        )
        .bind(peer)
        .fetch_optional(pool)
        .await?))
    }

    /// Everything we witnessed, of one peer or all, newest first.
    pub async fn witnessed(&self, peer: Option<&str>, limit: i64) -> Result<Vec<Witnessed>, StoreError> {
        Ok(with_pool!(self.pool, pool => sqlx::query_as(
            "SELECT peer, size, root, tree_head, cosignature, problem, seen_at FROM audit_witnessed \
             WHERE $1 IS NULL OR peer = $1 ORDER BY seen_at DESC LIMIT $2",
        )
        .bind(peer)
        .bind(limit)
        .fetch_all(pool)
        .await?))
    }
}
