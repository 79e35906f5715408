//! Forge integrations. Secrets arrive here already sealed (see `crypto`);
//! the store never sees plaintext.

use crate::ids::Provider;

use super::{Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIntegration<'a> {
    pub provider: &'a str,
    pub name: &'a str,
    pub base_url: &'a str,
    pub token_sealed: Option<&'a str>,
    pub webhook_secret_sealed: Option<&'a str>,
}

/// An integration as shown to users: no secret material.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Integration {
    pub id: i64,
    pub provider: Provider,
    pub name: String,
    pub base_url: String,
    pub has_token: bool,
    pub has_webhook_secret: bool,
    pub created_at: i64,
}

/// An [`Integration`] as the listing query reads it (flags as integers).
#[derive(sqlx::FromRow)]
struct IntegrationRow {
    id: i64,
    provider: Provider,
    name: String,
    base_url: String,
    has_token: i64,
    has_webhook_secret: i64,
    created_at: i64,
}

/// One sealed value and where it lives, for key rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedField {
    pub integration_id: i64,
    pub column: SealedColumn,
    pub sealed: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedColumn {
    Token,
    WebhookSecret,
}

impl SealedColumn {
    fn name(self) -> &'static str {
        match self {
            SealedColumn::Token => "token_sealed",
            SealedColumn::WebhookSecret => "webhook_secret_sealed",
        }
    }
}

async fn insert_in(
    conn: &mut sqlx::AnyConnection,
    new: &NewIntegration<'_>,
    now: i64,
) -> Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO integrations (provider, name, base_url, token_sealed, \
         webhook_secret_sealed, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
    )
    .bind(new.provider)
    .bind(new.name)
    .bind(new.base_url)
    .bind(new.token_sealed)
    .bind(new.webhook_secret_sealed)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}

/// The integration [`Store::save_integration`] would update for this
/// provider, base URL and name.
async fn integration_named_in(
    conn: &mut sqlx::AnyConnection,
    provider: &str,
    base_url: &str,
    name: &str,
) -> Result<Option<i64>> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT id FROM integrations WHERE provider = $1 AND base_url = $2 AND name = $3 \
         ORDER BY id LIMIT 1",
    )
    .bind(provider)
    .bind(base_url)
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(id,)| id))
}

impl Store {
    /// The integration a save of this provider, base URL and name updates.
    pub async fn integration_named(
        &self,
        provider: &str,
        base_url: &str,
        name: &str,
    ) -> Result<Option<i64>> {
        let mut conn = self.pool.acquire().await?;
        integration_named_in(&mut conn, provider, base_url, name).await
    }

    /// Stores an integration, or, when one of the same provider, base URL
    /// and name exists, replaces its credentials (reconnecting after a
    /// token rotation must not leave the old token and secret valid in a
    /// second row). Returns its id and whether it was created.
    pub async fn save_integration(
        &self,
        new: &NewIntegration<'_>,
        now: i64,
    ) -> Result<(i64, bool)> {
        let mut tx = self.begin_write().await?;
        let existing = integration_named_in(&mut tx, new.provider, new.base_url, new.name).await?;
        let saved = match existing {
            Some(id) => {
                sqlx::query(
                    "UPDATE integrations SET token_sealed = $1, \
                     webhook_secret_sealed = $2, updated_at = $3 WHERE id = $4",
                )
                .bind(new.token_sealed)
                .bind(new.webhook_secret_sealed)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                (id, false)
            }
            None => (insert_in(&mut tx, new, now).await?, true),
        };
        tx.commit().await?;
        Ok(saved)
    }

    /// Always a new row (see [`Store::save_integration`] for reconnects).
    pub async fn create_integration(&self, new: &NewIntegration<'_>, now: i64) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        insert_in(&mut conn, new, now).await
    }

    pub async fn list_integrations(&self) -> Result<Vec<Integration>> {
        let rows: Vec<IntegrationRow> = sqlx::query_as(
            "SELECT id, provider, name, base_url, \
             CASE WHEN token_sealed IS NULL THEN 0 ELSE 1 END AS has_token, \
             CASE WHEN webhook_secret_sealed IS NULL THEN 0 ELSE 1 END AS has_webhook_secret, \
             created_at FROM integrations ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Integration {
                id: r.id,
                provider: r.provider,
                name: r.name,
                base_url: r.base_url,
                has_token: r.has_token != 0,
                has_webhook_secret: r.has_webhook_secret != 0,
                created_at: r.created_at,
            })
            .collect())
    }

    /// Every stored sealed value, for webhook verification and rotation.
    pub async fn sealed_fields(&self, provider: Option<&str>) -> Result<Vec<SealedField>> {
        let rows: Vec<SealedRow> = sqlx::query_as(
            "SELECT id, token_sealed, webhook_secret_sealed FROM integrations \
             WHERE $1 IS NULL OR provider = $1 ORDER BY id",
        )
        .bind(provider)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().flat_map(SealedRow::fields).collect())
    }

    /// Replaces every sealed value through `reseal` in one transaction: if
    /// any value fails, nothing is written. Returns how many were resealed.
    pub async fn reseal_all<E>(
        &self,
        mut reseal: impl FnMut(&SealedField) -> std::result::Result<String, E>,
        now: i64,
    ) -> Result<std::result::Result<usize, E>> {
        let mut tx = self.begin_write().await?;
        let rows: Vec<SealedRow> = sqlx::query_as(
            "SELECT id, token_sealed, webhook_secret_sealed FROM integrations ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut count = 0;
        for field in rows.into_iter().flat_map(SealedRow::fields) {
            let id = field.integration_id;
            let column = field.column;
            let resealed = match reseal(&field) {
                Ok(value) => value,
                Err(e) => return Ok(Err(e)), // tx dropped: rolled back
            };
            let sql = format!(
                "UPDATE integrations SET {} = $1, updated_at = $2 WHERE id = $3",
                column.name()
            );
            // The column name comes from an enum, never from input.
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(resealed)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            count += 1;
        }
        tx.commit().await?;
        Ok(Ok(count))
    }

    pub async fn integration_exists(&self, id: i64) -> Result<()> {
        let row = sqlx::query("SELECT 1 FROM integrations WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|_| ())
            .ok_or_else(|| StoreError::NotFound(format!("integration {id}")))
    }
}

/// An integration's sealed columns as stored.
#[derive(sqlx::FromRow)]
struct SealedRow {
    id: i64,
    token_sealed: Option<String>,
    webhook_secret_sealed: Option<String>,
}

impl SealedRow {
    fn fields(self) -> impl Iterator<Item = SealedField> {
        let id = self.id;
        [
            (SealedColumn::Token, self.token_sealed),
            (SealedColumn::WebhookSecret, self.webhook_secret_sealed),
        ]
        .into_iter()
        .filter_map(move |(column, sealed)| {
            Some(SealedField {
                integration_id: id,
                column,
                sealed: sealed?,
            })
        })
    }
}

/// What a forge client needs to call an integration: still sealed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IntegrationCredentials {
    pub provider: Provider,
    pub base_url: String,
    pub token_sealed: Option<String>,
}

impl Store {
    pub async fn integration_credentials(&self, id: i64) -> Result<IntegrationCredentials> {
        sqlx::query_as("SELECT provider, base_url, token_sealed FROM integrations WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("integration {id}")))
    }
}
