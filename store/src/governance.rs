//! Who may act on a connector besides its configured keys: named management keys with roles, and apps' access tokens
//! (local agreements between this provider and one app). Neither secret is stored, only its SHA-256. Every change is
//! audited as a management change under the principal that made it; every use of an app token is counted and
//! audited in one write.

use serde_json::{Value as Json, json};
use sqlx::FromRow;

use super::statement::{Param, Statement};
use super::{StoreError, now_millis, with_pool};
use hanse_audit::Event;

/// A named management key, without its hash.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at: i64,
    /// The principal that made it (JSON).
    pub created_by: String,
    pub rotated_at: i64,
    /// 0 while valid.
    pub revoked_at: i64,
}

/// An app's access token, without its hash.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct AppTokenRow {
    pub id: String,
    pub name: String,
    /// JSON: what the token grants (datasets with their policies, actions, purpose, rate, origins).
    pub body: String,
    /// ms; 0: no expiry.
    pub expires_at: i64,
    pub created_at: i64,
    pub created_by: String,
    /// 0 while valid.
    pub revoked_at: i64,
    pub requests: i64,
    pub rows_read: i64,
    pub bytes_read: i64,
    pub last_used_at: i64,
}

/// A dataset's publication: waiting for a second key, approved or rejected.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct PublicationRow {
    pub asset_id: String,
    /// `pending`, `approved` or `rejected`.
    pub state: String,
    pub requested_at: i64,
    /// The principal that asked (JSON).
    pub requested_by: String,
    pub decided_at: i64,
    /// The principal that decided (JSON; empty while pending).
    pub decided_by: String,
    pub reason: String,
}

/// Why a publication decision was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PublicationError {
    #[error("dataset `{0}` is not waiting for approval")]
    NotPending(String),
    #[error("the key that asked to publish `{0}` cannot approve it: a second key must (four eyes)")]
    SameKey(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for PublicationError {
    fn from(error: sqlx::Error) -> Self {
        PublicationError::Store(error.into())
    }
}

/// One use of an app token, as counted and audited.
#[derive(Debug, Clone, PartialEq)]
pub struct AppUse<'a> {
    pub token: &'a str,
    pub dataset: &'a str,
    /// `read`, `query`, `compute` or `file`.
    pub action: &'a str,
    pub rows: u64,
    pub bytes: u64,
    /// What else the audit entry keeps (digests and ids only).
    pub details: Json,
}

const PUBLICATION_COLUMNS: &str = "asset_id, state, requested_at, requested_by, decided_at, decided_by, reason";
const KEY_COLUMNS: &str = "id, name, role, created_at, created_by, rotated_at, revoked_at";
const TOKEN_COLUMNS: &str = "id, name, body, expires_at, created_at, created_by, revoked_at, requests, rows_read, \
                             bytes_read, last_used_at";

fn change_event(resource: &str, id: &str, operation: &str, more: Json) -> Event {
    let mut details =
        json!({"who": crate::Principal::current(), "resource": resource, "id": id, "operation": operation});
    if let (Some(details), Json::Object(more)) = (details.as_object_mut(), more) {
        details.extend(more);
    }
    Event::new("management.change", details)
}

/// A row type both backends read.
trait Row:
    for<'r> FromRow<'r, sqlx::sqlite::SqliteRow> + for<'r> FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin
{
}
impl<T> Row for T where
    T: for<'r> FromRow<'r, sqlx::sqlite::SqliteRow> + for<'r> FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin
{
}

/// Named keys, app tokens and publications. A view of the store's one pool and writer.
#[derive(Debug, Clone)]
pub struct Governance {
    pub(crate) pool: crate::Pool,
}

impl Governance {
    /// Where the users of keys and tokens record what they measure.
    pub fn meter(&self) -> &hanse_core::meter::Meter {
        &self.pool.meter
    }

    /// Runs `sql` with `params` and, if it changed a row, appends `event`, in one write (the store's writer);
    /// answers the rows changed.
    async fn change(&self, sql: &str, params: Vec<Param>, event: Event) -> Result<u64, StoreError> {
        self.pool.write(Some(Statement::new(sql, params)), vec![event], None, None).await
    }

    /// Records a new management key (its hash), with its audit entry.
    pub async fn create_api_key(&self, id: &str, name: &str, role: &str, hash: &str) -> Result<ApiKeyRow, StoreError> {
        let now = now_millis();
        let row = ApiKeyRow {
            id: id.to_owned(),
            name: name.to_owned(),
            role: role.to_owned(),
            created_at: now,
            created_by: crate::Principal::current().to_string(),
            rotated_at: now,
            revoked_at: 0,
        };
        let event = change_event("api-key", id, "create", json!({"role": role, "name": name}));
        let inserted = self
            .change(
                "INSERT INTO api_keys (id, name, role, hash, created_at, created_by, rotated_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $5, 0) ON CONFLICT (id) DO NOTHING",
                vec![
                    Param::from(&row.id),
                    Param::from(&row.name),
                    Param::from(&row.role),
                    Param::from(hash),
                    Param::from(now),
                    Param::from(&row.created_by),
                ],
                event,
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict { kind: "api key", id: id.to_owned() });
        }
        Ok(row)
    }

    /// The rows `sql` selects.
    async fn all<T: Row>(&self, sql: String) -> Result<Vec<T>, StoreError> {
        Ok(with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?))
    }

    /// The row `sql` selects with `$1` bound to `key`, if any.
    async fn one<T: Row>(&self, sql: String, key: &str) -> Result<Option<T>, StoreError> {
        Ok(
            with_pool!(self.pool, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(key).fetch_optional(pool).await?),
        )
    }

    /// Every management key, revoked ones included, by id.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRow>, StoreError> {
        self.all(format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id")).await
    }

    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        self.one(format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"), id).await
    }

    /// The valid key whose SHA-256 is `hash`.
    pub async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        self.one(format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = $1 AND revoked_at = 0"), hash).await
    }

    /// Gives a valid key a new value (its hash); the old value stops working at once. `None` if there is no valid
    /// key `id`.
    pub async fn rotate_api_key(&self, id: &str, hash: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        let changed = self
            .change(
                "UPDATE api_keys SET hash = $2, rotated_at = $3 WHERE id = $1 AND revoked_at = 0",
                vec![Param::from(id), Param::from(hash), Param::from(now_millis())],
                change_event("api-key", id, "rotate", Json::Null),
            )
            .await?;
        if changed == 0 { Ok(None) } else { self.api_key(id).await }
    }

    /// Revokes a valid key, with its audit entry; `false` if there is no valid key `id`.
    pub async fn revoke_api_key(&self, id: &str) -> Result<bool, StoreError> {
        self.revoke("api_keys", "api-key", id).await
    }

    /// Records a new app token (its hash), with its audit entry.
    pub async fn create_app_token(&self, row: &AppTokenRow, hash: &str) -> Result<(), StoreError> {
        let body: Json = serde_json::from_str(&row.body).unwrap_or(Json::Null);
        let event = change_event(
            "app-token",
            &row.id,
            "issue",
            json!({"name": row.name, "datasets": body.get("datasets").map(|d| json!(d.as_object().map(|m| m.keys().collect::<Vec<_>>()))), "actions": body.get("actions"), "bodyDigest": hanse_audit::canonical_digest(&body)}),
        );
        let inserted = self
            .change(
                "INSERT INTO app_tokens (id, name, hash, body, expires_at, created_at, created_by, revoked_at, requests, \
                 rows_read, bytes_read, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, 0, 0, 0) \
                 ON CONFLICT (id) DO NOTHING",
                vec![
                    Param::from(&row.id),
                    Param::from(&row.name),
                    Param::from(hash),
                    Param::from(&row.body),
                    Param::from(row.expires_at),
                    Param::from(row.created_at),
                    Param::from(&row.created_by),
                ],
                event,
            )
            .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict { kind: "app token", id: row.id.clone() });
        }
        Ok(())
    }

    /// Every app token, revoked ones included, newest first.
    pub async fn app_tokens(&self) -> Result<Vec<AppTokenRow>, StoreError> {
        self.all(format!("SELECT {TOKEN_COLUMNS} FROM app_tokens ORDER BY created_at DESC, id")).await
    }

    pub async fn app_token(&self, id: &str) -> Result<Option<AppTokenRow>, StoreError> {
        self.one(format!("SELECT {TOKEN_COLUMNS} FROM app_tokens WHERE id = $1"), id).await
    }

    /// The token whose SHA-256 is `hash`, revoked or not (the caller tells the app which).
    pub async fn app_token_by_hash(&self, hash: &str) -> Result<Option<AppTokenRow>, StoreError> {
        self.one(format!("SELECT {TOKEN_COLUMNS} FROM app_tokens WHERE hash = $1"), hash).await
    }

    /// Revokes a valid app token, with its audit entry; `false` if there is no valid token `id`.
    pub async fn revoke_app_token(&self, id: &str) -> Result<bool, StoreError> {
        self.revoke("app_tokens", "app-token", id).await
    }

    async fn revoke(&self, table: &'static str, resource: &str, id: &str) -> Result<bool, StoreError> {
        let sql = format!("UPDATE {table} SET revoked_at = $2 WHERE id = $1 AND revoked_at = 0");
        let event = change_event(resource, id, "revoke", Json::Null);
        Ok(self.change(&sql, vec![Param::from(id), Param::from(now_millis())], event).await? > 0)
    }

    /// Counts one use of a valid token and appends its `app.use` entry, in one write; `false` (nothing recorded) if
    /// the token was revoked meanwhile.
    pub async fn record_app_use(&self, used: &AppUse<'_>) -> Result<bool, StoreError> {
        let mut details = json!({"token": used.token, "action": used.action, "rows": used.rows, "bytes": used.bytes});
        if let (Some(details), Json::Object(more)) = (details.as_object_mut(), used.details.clone()) {
            details.extend(more);
        }
        let event = Event::new("app.use", details)
            .participant(Some(&format!("urn:hanse:app:{}", used.token)))
            .dataset(Some(used.dataset));
        let changed = self
            .change(
                "UPDATE app_tokens SET requests = requests + 1, rows_read = rows_read + $2, \
                 bytes_read = bytes_read + $3, last_used_at = $4 WHERE id = $1 AND revoked_at = 0",
                vec![
                    Param::from(used.token),
                    Param::from(used.rows as i64),
                    Param::from(used.bytes as i64),
                    Param::from(now_millis()),
                ],
                event,
            )
            .await?;
        Ok(changed > 0)
    }

    /// Holds dataset `asset_id` back from the catalogue until a second key approves it, with its audit entry: a new
    /// dataset always (`new`), a changed one only when it had been rejected (it is asked again). Answers whether the
    /// dataset is now held; a published dataset that changes stays published.
    pub async fn request_publication(&self, asset_id: &str, new: bool) -> Result<bool, StoreError> {
        let who = crate::Principal::current();
        let event = Event::new("publication.request", json!({"asset": asset_id})).dataset(Some(asset_id));
        let sql = if new {
            "INSERT INTO publications (asset_id, state, requested_at, requested_by, decided_at, decided_by, reason) \
             VALUES ($1, 'pending', $2, $3, 0, '', '') ON CONFLICT (asset_id) DO UPDATE SET state = 'pending', \
             requested_at = $2, requested_by = $3, decided_at = 0, decided_by = '', reason = ''"
        } else {
            "UPDATE publications SET state = 'pending', requested_at = $2, requested_by = $3, decided_at = 0, \
             decided_by = '', reason = '' WHERE asset_id = $1 AND state = 'rejected'"
        };
        let params = vec![Param::from(asset_id), Param::from(now_millis()), Param::from(who.to_string())];
        let changed = self.change(sql, params, event).await?;
        Ok(changed > 0)
    }

    /// Approves or rejects a pending publication, by a principal other than the one that asked, with its audit entry
    /// (`publication.decision`: the decision, the digest of the reason, who asked).
    pub async fn decide_publication(
        &self,
        asset_id: &str,
        approve: bool,
        reason: &str,
    ) -> Result<PublicationRow, PublicationError> {
        let pending = self.publication(asset_id).await?.filter(|p| p.state == "pending");
        let pending = pending.ok_or_else(|| PublicationError::NotPending(asset_id.to_owned()))?;
        let who = crate::Principal::current();
        let asked: Json = serde_json::from_str(&pending.requested_by).unwrap_or(Json::Null);
        let same = |a: &Json, b: &Json| a.get("kind") == b.get("kind") && a.get("id") == b.get("id");
        if same(&asked, &who) {
            return Err(PublicationError::SameKey(asset_id.to_owned()));
        }
        let state = if approve { "approved" } else { "rejected" };
        let event = Event::new(
            "publication.decision",
            json!({"asset": asset_id, "decision": state, "requestedBy": asked,
                   "reasonDigest": hanse_core::encode::sha256_hex(reason.as_bytes())}),
        )
        .dataset(Some(asset_id));
        let changed = self
            .change(
                "UPDATE publications SET state = $2, decided_at = $3, decided_by = $4, reason = $5 \
                 WHERE asset_id = $1 AND state = 'pending' AND requested_at = $6",
                vec![
                    Param::from(asset_id),
                    Param::from(state),
                    Param::from(now_millis()),
                    Param::from(who.to_string()),
                    Param::from(reason),
                    Param::from(pending.requested_at),
                ],
                event,
            )
            .await?;
        if changed == 0 {
            return Err(PublicationError::NotPending(asset_id.to_owned()));
        }
        Ok(self.publication(asset_id).await?.expect("just decided"))
    }

    pub async fn publication(&self, asset_id: &str) -> Result<Option<PublicationRow>, StoreError> {
        self.one(format!("SELECT {PUBLICATION_COLUMNS} FROM publications WHERE asset_id = $1"), asset_id).await
    }

    /// The publications waiting for a decision, oldest request first.
    pub async fn pending_publications(&self) -> Result<Vec<PublicationRow>, StoreError> {
        self.all(format!(
            "SELECT {PUBLICATION_COLUMNS} FROM publications WHERE state = 'pending' ORDER BY requested_at, asset_id"
        ))
        .await
    }

    /// The datasets held back from the catalogue (pending or rejected).
    pub async fn unpublished(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<PublicationRow> =
            self.all(format!("SELECT {PUBLICATION_COLUMNS} FROM publications WHERE state <> 'approved'")).await?;
        Ok(rows.into_iter().map(|row| row.asset_id).collect())
    }
}
