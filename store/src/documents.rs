//! Documents: the management resources (assets, policy definitions, contract definitions, ...) as JSON bodies keyed by
//! kind and id, with a version that increases on every replace.

use serde_json::Value;
use sqlx::FromRow;

use super::audit::Append;
use super::statement::{Param, Statement};
use super::{Dialect, StoreError, now_millis, parse_body, with_audit_writer, with_pool, with_writer};
use hanse_audit::Event;

/// The current body of a document, locked until the transaction ends (SQLite has one writer: no lock needed).
fn lock_body(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "SELECT body FROM documents WHERE kind = $1 AND id = $2",
        Dialect::Postgres => "SELECT body FROM documents WHERE kind = $1 AND id = $2 FOR UPDATE",
    }
}

/// The kinds of documents the connector keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentKind {
    Asset,
    PolicyDefinition,
    ContractDefinition,
}

impl DocumentKind {
    /// The name stored in the `kind` column and used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Asset => "asset",
            DocumentKind::PolicyDefinition => "policy definition",
            DocumentKind::ContractDefinition => "contract definition",
        }
    }

    /// The kind stored as `name` (the inverse of [`DocumentKind::as_str`]).
    pub fn named(name: &str) -> Option<DocumentKind> {
        [DocumentKind::Asset, DocumentKind::PolicyDefinition, DocumentKind::ContractDefinition]
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// One stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: String,
    pub body: Value,
    /// 1 on creation, +1 on every replace.
    pub version: i64,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(FromRow)]
struct DocumentRow {
    id: String,
    body: String,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl DocumentRow {
    fn into_document(self, kind: DocumentKind) -> Result<Document, StoreError> {
        Ok(Document {
            body: parse_body(kind.as_str(), &self.id, &self.body)?,
            id: self.id,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const SELECT: &str = "SELECT id, body, version, created_at, updated_at FROM documents";

/// The audit entry of a change to a document: who, what, and the digests of the body before and after.
fn change_event(kind: DocumentKind, id: &str, operation: &str, before: Option<&str>, after: Option<&str>) -> Event {
    let digest = |text: Option<&str>| text.map(|t| hanse_core::encode::sha256_hex(t.as_bytes()));
    let details = serde_json::json!({
        "who": crate::Principal::current(),
        "resource": kind.as_str(),
        "id": id,
        "operation": operation,
        "before": digest(before),
        "after": digest(after),
    });
    Event::new("management.change", details).dataset((kind == DocumentKind::Asset).then_some(id))
}

/// Inserts the references of document `$id` of `$kind` to `$refers` in transaction `$tx` (a macro: the statement is
/// compiled once per backend); a reference to a document that does not exist is `NotFound` naming it.
macro_rules! refer {
    ($tx:expr, $kind:expr, $id:expr, $refers:expr) => {
        for (to_kind, to_id) in $refers {
            sqlx::query(
                "INSERT INTO document_references (from_kind, from_id, to_kind, to_id) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind($kind.as_str())
            .bind($id)
            .bind(to_kind.as_str())
            .bind(*to_id)
            .execute(&mut *$tx)
            .await
            .map_err(|e| {
                let error = StoreError::from(e);
                if error.is_foreign_key_violation() {
                    StoreError::NotFound { kind: to_kind.as_str(), id: (*to_id).to_owned() }
                } else {
                    error
                }
            })?;
        }
    };
}

/// A delete the foreign key refused, as `InUse`.
fn in_use(error: StoreError, kind: DocumentKind, id: &str) -> StoreError {
    if error.is_foreign_key_violation() {
        StoreError::InUse { kind: kind.as_str(), id: id.to_owned(), by: "another document".into() }
    } else {
        error
    }
}

const INSERT: &str = "INSERT INTO documents (kind, id, body, version, created_at, updated_at) VALUES ($1, $2, $3, 1, $4, $4) \
                      ON CONFLICT (kind, id) DO NOTHING";

/// The catalogue's documents: assets, policy definitions and contract definitions. A view of the store's one pool and writer.
#[derive(Debug, Clone)]
pub struct Documents {
    pub(crate) pool: crate::Pool,
}

impl Documents {
    /// Creates a document; `Conflict` if one of that kind and id exists.
    pub async fn insert_document(&self, kind: DocumentKind, id: &str, body: &Value) -> Result<Document, StoreError> {
        self.insert_referring(kind, id, body, &[]).await
    }

    /// Creates a document that names the documents `refers` (which may not be deleted while it does); `Conflict` if
    /// one of that kind and id exists, `NotFound` naming a document referred to that does not exist.
    pub async fn insert_referring(
        &self,
        kind: DocumentKind,
        id: &str,
        body: &Value,
        refers: &[(DocumentKind, &str)],
    ) -> Result<Document, StoreError> {
        let now = now_millis();
        self.insert_at(kind, &[(id.to_owned(), body.clone())], refers, now).await?;
        Ok(Document { id: id.to_owned(), body: body.clone(), version: 1, created_at: now, updated_at: now })
    }

    /// Creates many documents in one transaction: all of them or, on any conflict, none.
    pub async fn insert_documents(&self, kind: DocumentKind, documents: &[(String, Value)]) -> Result<(), StoreError> {
        self.insert_at(kind, documents, &[], now_millis()).await
    }

    /// Records that document `id` of `kind` names `refers`, where it does not yet (documents stored before references
    /// were kept); a document referred to that does not exist is `NotFound`.
    pub async fn ensure_references(
        &self,
        kind: DocumentKind,
        id: &str,
        refers: &[(DocumentKind, &str)],
    ) -> Result<(), StoreError> {
        with_writer!(self.pool, pool => {
            let mut tx = pool.begin().await?;
            refer!(tx, kind, id, refers);
            tx.commit().await?;
        });
        Ok(())
    }

    /// The ids of the documents of `kind` that name others.
    pub async fn referring(&self, kind: DocumentKind) -> Result<std::collections::HashSet<String>, StoreError> {
        let ids: Vec<String> = with_pool!(self.pool, pool => sqlx::query_scalar(
            "SELECT DISTINCT from_id FROM document_references WHERE from_kind = $1",
        )
        .bind(kind.as_str())
        .fetch_all(pool)
        .await?);
        Ok(ids.into_iter().collect())
    }

    async fn insert_at(
        &self,
        kind: DocumentKind,
        documents: &[(String, Value)],
        refers: &[(DocumentKind, &str)],
        now: i64,
    ) -> Result<(), StoreError> {
        with_audit_writer!(self.pool, pool => {
            let mut tx = pool.begin().await?;
            let mut events = Vec::with_capacity(documents.len());
            for (id, body) in documents {
                let text = body.to_string();
                let inserted = sqlx::query(INSERT)
                    .bind(kind.as_str())
                    .bind(id)
                    .bind(&text)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if inserted == 0 {
                    tx.rollback().await?;
                    return Err(StoreError::Conflict { kind: kind.as_str(), id: id.clone() });
                }
                events.push(change_event(kind, id, "create", None, Some(&text)));
                refer!(tx, kind, id, refers);
            }
            (*tx).append(&self.pool.seal, &events).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Replaces a document's body; `NotFound` if there is none.
    pub async fn replace_document(&self, kind: DocumentKind, id: &str, body: &Value) -> Result<Document, StoreError> {
        self.replace_referring(kind, id, body, None).await
    }

    /// Replaces a document's body and, when `refers` is given, what it names (see [`Documents::insert_referring`]).
    pub async fn replace_referring(
        &self,
        kind: DocumentKind,
        id: &str,
        body: &Value,
        refers: Option<&[(DocumentKind, &str)]>,
    ) -> Result<Document, StoreError> {
        let now = now_millis();
        let text = body.to_string();
        let (version, created_at) = with_audit_writer!(self.pool, pool => {
            let mut tx = pool.begin().await?;
            let before: Option<String> = sqlx::query_scalar(lock_body(self.pool.dialect()))
                .bind(kind.as_str())
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(before) = before else {
                return Err(StoreError::NotFound { kind: kind.as_str(), id: id.to_owned() });
            };
            let row: (i64, i64) = sqlx::query_as(
                "UPDATE documents SET body = $3, version = version + 1, updated_at = $4 WHERE kind = $1 AND id = $2 \
                 RETURNING version, created_at",
            )
            .bind(kind.as_str())
            .bind(id)
            .bind(&text)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            if let Some(refers) = refers {
                sqlx::query("DELETE FROM document_references WHERE from_kind = $1 AND from_id = $2")
                    .bind(kind.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                refer!(tx, kind, id, refers);
            }
            (*tx).append(&self.pool.seal, &[change_event(kind, id, "replace", Some(&before), Some(&text))]).await?;
            tx.commit().await?;
            row
        });
        Ok(Document { id: id.to_owned(), body: body.clone(), version, created_at, updated_at: now })
    }

    /// The document of that kind and id, if any.
    pub async fn get_document(&self, kind: DocumentKind, id: &str) -> Result<Option<Document>, StoreError> {
        let row: Option<DocumentRow> = with_pool!(self.pool, pool => sqlx::query_as(
            sqlx::AssertSqlSafe(format!("{SELECT} WHERE kind = $1 AND id = $2"))
        )
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(pool)
        .await?);
        row.map(|r| r.into_document(kind)).transpose()
    }

    /// Deletes a document; `NotFound` if there is none, `InUse` naming the documents that still name it.
    pub async fn delete_document(&self, kind: DocumentKind, id: &str) -> Result<(), StoreError> {
        with_audit_writer!(self.pool, pool => {
            let mut tx = pool.begin().await?;
            let users: Vec<(String, String)> = sqlx::query_as(
                "SELECT from_kind, from_id FROM document_references WHERE to_kind = $1 AND to_id = $2 ORDER BY 1, 2",
            )
            .bind(kind.as_str())
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            if !users.is_empty() {
                let by: Vec<String> = users.iter().map(|(k, i)| format!("{k} `{i}`")).collect();
                return Err(StoreError::InUse { kind: kind.as_str(), id: id.to_owned(), by: by.join(", ") });
            }
            // The foreign key stands behind the check: a reference made meanwhile refuses the delete.
            let before: Option<String> =
                sqlx::query_scalar("DELETE FROM documents WHERE kind = $1 AND id = $2 RETURNING body")
                    .bind(kind.as_str())
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| in_use(e.into(), kind, id))?;
            let Some(before) = before else {
                return Err(StoreError::NotFound { kind: kind.as_str(), id: id.to_owned() });
            };
            (*tx).append(&self.pool.seal, &[change_event(kind, id, "delete", Some(&before), None)]).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Every document of a kind, ordered by id.
    pub async fn list_documents(&self, kind: DocumentKind) -> Result<Vec<Document>, StoreError> {
        let rows: Vec<DocumentRow> = with_pool!(self.pool, pool => sqlx::query_as(
            sqlx::AssertSqlSafe(format!("{SELECT} WHERE kind = $1 ORDER BY id"))
        )
        .bind(kind.as_str())
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(|r| r.into_document(kind)).collect()
    }

    /// Up to `limit` documents of a kind with ids after `after`, ordered by id (for reading large sets page by page).
    pub async fn list_documents_after(
        &self,
        kind: DocumentKind,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Document>, StoreError> {
        let rows: Vec<DocumentRow> = with_pool!(self.pool, pool => sqlx::query_as(
            sqlx::AssertSqlSafe(format!("{SELECT} WHERE kind = $1 AND id > $2 ORDER BY id LIMIT $3"))
        )
        .bind(kind.as_str())
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(|r| r.into_document(kind)).collect()
    }

    /// The versions of the documents of a kind among `ids` that exist, in chunks of a few hundred ids per query.
    pub async fn versions(
        &self,
        kind: DocumentKind,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let mut versions = std::collections::HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut statement = Statement::new(
                "SELECT id, version FROM documents WHERE kind = $1 AND id IN (",
                vec![kind.as_str().into()],
            );
            statement.list(chunk.iter().map(Param::from)).sql.push(')');
            let rows: Vec<(String, i64)> = with_pool!(self.pool, pool => statement.query_as().fetch_all(pool).await?);
            versions.extend(rows);
        }
        Ok(versions)
    }

    /// How many documents of a kind there are.
    pub async fn count_documents(&self, kind: DocumentKind) -> Result<i64, StoreError> {
        let (count,): (i64,) = with_pool!(self.pool, pool => sqlx::query_as("SELECT COUNT(*) FROM documents WHERE kind = $1")
            .bind(kind.as_str())
            .fetch_one(pool)
            .await?);
        Ok(count)
    }
}
