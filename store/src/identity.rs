//! Identity state: the replay cache of self-issued tokens, the credentials this participant holds (as a holder) and
//! the ones it issued (as an issuer, with their place in the revocation status list).

use super::audit::Append;
use sqlx::FromRow;

use super::statement::{Param, Statement};
use super::{StoreError, now_millis, with_audit_writer, with_pool, with_writer};

/// A verifiable credential this participant holds.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct HeldCredential {
    pub id: String,
    /// The credential's types, space-separated (`VerifiableCredential MembershipCredential`).
    pub types: String,
    pub issuer: String,
    /// The credential as issued: a VC secured as JWT.
    pub jwt: String,
    /// Milliseconds since the Unix epoch; `None` when the credential does not expire.
    pub valid_until: Option<i64>,
    pub imported_at: i64,
}

/// A credential this participant issued.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct IssuedCredential {
    pub id: String,
    pub subject: String,
    pub types: String,
    /// The credential's bit in the revocation status list.
    pub status_index: i64,
    pub revoked: bool,
    pub issued_at: i64,
    pub revoked_at: Option<i64>,
}

/// A verified token's id (issuer and `jti`) for the replay cache, kept until `expires_at` (milliseconds). A DSP message
/// that changes a process records it in the transaction of that change ([`Store::write_process`]); any other use
/// records it on its own ([`Store::remember_token`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenUse {
    pub key: String,
    pub expires_at: i64,
}

impl TokenUse {
    /// Inserts the ids of `uses` (no id twice), each at most once; answers the ids it inserted: one recorded before
    /// is a replay. PostgreSQL's writer records a batch's token ids so.
    pub(crate) fn inserts<'u>(uses: impl IntoIterator<Item = &'u TokenUse>) -> Vec<Statement> {
        let rows = uses.into_iter().map(|u| [Param::from(&u.key), Param::from(u.expires_at)]).collect();
        Statement::inserts_then(
            "INSERT INTO token_ids (token_key, expires_at) VALUES ",
            rows,
            " ON CONFLICT (token_key) DO NOTHING RETURNING token_key",
        )
    }

    /// Inserts the id; changes no row when it was recorded before (a replay).
    pub(crate) fn statement(&self) -> Statement {
        Statement::new(
            "INSERT INTO token_ids (token_key, expires_at) VALUES ($1, $2) ON CONFLICT (token_key) DO NOTHING",
            vec![Param::from(&self.key), Param::from(self.expires_at)],
        )
    }
}

/// Token ids seen (the replay cache), and credentials held and issued. A view of the store's one pool and writer.
#[derive(Debug, Clone)]
pub struct IdentityStore {
    pub(crate) pool: crate::Pool,
}

/// The audit entry of a credential this participant issued or revoked: who, which credential, its types and status
/// bit; the subject is the entry's participant.
fn credential_event(operation: &str, id: &str, subject: &str, types: &str, index: i64) -> hanse_audit::Event {
    let details = serde_json::json!({
        "who": crate::Principal::current(),
        "credential": id,
        "types": types,
        "statusIndex": index,
    });
    let kind = if operation == "issue" { "credential.issue" } else { "credential.revoke" };
    hanse_audit::Event::new(kind, details).participant(Some(subject))
}

impl IdentityStore {
    /// Records a token id; `false` when it was seen before (a replay).
    pub async fn remember_token(&self, token: &TokenUse) -> Result<bool, StoreError> {
        let inserted = self.pool.write(Some(token.statement()), Vec::new(), None, None).await?;
        Ok(inserted == 1)
    }

    /// Forgets the token ids that expired before now; answers how many.
    pub async fn forget_expired_tokens(&self) -> Result<u64, StoreError> {
        let now = now_millis();
        let deleted = with_writer!(self.pool, pool => sqlx::query("DELETE FROM token_ids WHERE expires_at < $1")
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(deleted)
    }

    /// Stores a held credential, replacing one with the same id.
    pub async fn put_held_credential(&self, credential: &HeldCredential) -> Result<(), StoreError> {
        with_writer!(self.pool, pool => sqlx::query(
            "INSERT INTO held_credentials (id, types, issuer, jwt, valid_until, imported_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET types = excluded.types, \
             issuer = excluded.issuer, jwt = excluded.jwt, valid_until = excluded.valid_until, \
             imported_at = excluded.imported_at",
        )
        .bind(&credential.id)
        .bind(&credential.types)
        .bind(&credential.issuer)
        .bind(&credential.jwt)
        .bind(credential.valid_until)
        .bind(credential.imported_at)
        .execute(pool)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    /// Every held credential, oldest import first.
    pub async fn held_credentials(&self) -> Result<Vec<HeldCredential>, StoreError> {
        let rows = with_pool!(self.pool, pool => sqlx::query_as::<_, HeldCredential>(
            "SELECT id, types, issuer, jwt, valid_until, imported_at FROM held_credentials ORDER BY imported_at, id",
        )
        .fetch_all(pool)
        .await?);
        Ok(rows)
    }

    /// Removes a held credential; `NotFound` if there is none with that id.
    pub async fn delete_held_credential(&self, id: &str) -> Result<(), StoreError> {
        let deleted = with_writer!(self.pool, pool => sqlx::query("DELETE FROM held_credentials WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await?
            .rows_affected());
        if deleted == 0 {
            return Err(StoreError::NotFound { kind: "credential", id: id.to_owned() });
        }
        Ok(())
    }

    /// Records a credential about to be issued and assigns it the next free bit of the status list.
    pub async fn record_issued_credential(&self, id: &str, subject: &str, types: &str) -> Result<i64, StoreError> {
        let now = now_millis();
        let claim = crate::idempotency::take(id);
        // Two issuers racing for the same index: the loser's insert conflicts on the unique index and tries again.
        for _ in 0..5 {
            let index: Result<i64, StoreError> = with_audit_writer!(self.pool, pool => async {
                let mut tx = pool.begin().await?;
                let index: i64 = sqlx::query_scalar(
                    "INSERT INTO issued_credentials (id, subject, types, status_index, revoked, issued_at) \
                     SELECT $1, $2, $3, COALESCE(MAX(status_index) + 1, 0), $4, $5 FROM issued_credentials \
                     RETURNING status_index",
                )
                .bind(id)
                .bind(subject)
                .bind(types)
                .bind(false)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                crate::idempotency::claim_in!(tx, claim.clone());
                (*tx).append(&self.pool.seal, &[credential_event("issue", id, subject, types, index)]).await?;
                tx.commit().await?;
                Ok(index)
            }.await);
            match index {
                Ok(index) => return Ok(index),
                Err(e) if e.is_unique_violation() => {
                    if self.issued_credential(id).await?.is_some() {
                        return Err(StoreError::Conflict { kind: "credential", id: id.to_owned() });
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict { kind: "status list index", id: id.to_owned() })
    }

    /// One issued credential.
    pub async fn issued_credential(&self, id: &str) -> Result<Option<IssuedCredential>, StoreError> {
        let row = with_pool!(self.pool, pool => sqlx::query_as::<_, IssuedCredential>(
            "SELECT id, subject, types, status_index, revoked, issued_at, revoked_at FROM issued_credentials \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await?);
        Ok(row)
    }

    /// Every issued credential, in the order of issue.
    pub async fn issued_credentials(&self) -> Result<Vec<IssuedCredential>, StoreError> {
        let rows = with_pool!(self.pool, pool => sqlx::query_as::<_, IssuedCredential>(
            "SELECT id, subject, types, status_index, revoked, issued_at, revoked_at FROM issued_credentials \
             ORDER BY status_index",
        )
        .fetch_all(pool)
        .await?);
        Ok(rows)
    }

    /// Marks an issued credential revoked (idempotent); `NotFound` if this participant never issued it.
    pub async fn revoke_issued_credential(&self, id: &str) -> Result<IssuedCredential, StoreError> {
        with_audit_writer!(self.pool, pool => {
            let mut tx = pool.begin().await?;
            let revoked: Option<(String, String, i64)> = sqlx::query_as(
                "UPDATE issued_credentials SET revoked = $2, revoked_at = $3 WHERE id = $1 AND revoked = $4 \
                 RETURNING subject, types, status_index",
            )
            .bind(id)
            .bind(true)
            .bind(now_millis())
            .bind(false)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((subject, types, index)) = revoked {
                (*tx).append(&self.pool.seal, &[credential_event("revoke", id, &subject, &types, index)]).await?;
            }
            tx.commit().await?;
        });
        self.issued_credential(id).await?.ok_or_else(|| StoreError::NotFound { kind: "credential", id: id.to_owned() })
    }

    /// The status-list bits of the revoked credentials.
    pub async fn revoked_status_indices(&self) -> Result<Vec<i64>, StoreError> {
        let rows = with_pool!(self.pool, pool => sqlx::query_scalar::<_, i64>(
            "SELECT status_index FROM issued_credentials WHERE revoked = $1 ORDER BY status_index",
        )
        .bind(true)
        .fetch_all(pool)
        .await?);
        Ok(rows)
    }
}
