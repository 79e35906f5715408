//! API tokens. The token is shown once when created; only its SHA-256 is
//! stored (tokens are 256 random bits, so a fast hash is enough).

use base64::Engine;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Result, Store, StoreError, is_unique_violation};

const TOKEN_PREFIX: &str = "graft_";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token_text() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Conflict(format!("no randomness available: {e}")))?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

impl Store {
    /// Creates a token named `name` and returns it in clear, the only time it exists so.
    pub async fn create_token(&self, name: &str, now: i64) -> Result<(i64, String)> {
        let token = new_token_text()?;
        let row = sqlx::query(
            "INSERT INTO api_tokens (name, token_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(hash_token(&token))
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!(
                    "an active token named `{name}` exists already; revoke it first or pick another name"
                ))
            } else {
                e.into()
            }
        })?;
        Ok((row.get(0), token))
    }

    /// The active token matching `token`, if any; notes when it was last used.
    pub async fn authenticate_token(&self, token: &str, now: i64) -> Result<Option<ApiToken>> {
        let hash = hash_token(token);
        let row = sqlx::query(
            "SELECT id, name, created_at, last_used_at, revoked_at FROM api_tokens \
             WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(token) = row.map(|r| ApiToken {
            id: r.get(0),
            name: r.get(1),
            created_at: r.get(2),
            last_used_at: r.get(3),
            revoked_at: r.get(4),
        }) else {
            return Ok(None);
        };
        // Write at most once a minute per token, not on every request.
        if token.last_used_at.is_none_or(|t| now - t > 60_000) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(token.id)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(token))
    }

    /// Revokes the active token called `name`; `false` if there is none.
    pub async fn revoke_token(&self, name: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| ApiToken {
                id: r.get(0),
                name: r.get(1),
                created_at: r.get(2),
                last_used_at: r.get(3),
                revoked_at: r.get(4),
            })
            .collect())
    }
}
