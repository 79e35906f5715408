//! What the operator screens need: the GitHub App registered through the
//! manifest flow (secrets arrive sealed), the one-time `state` of that
//! flow and the recent activity across projects.

use sha2::{Digest, Sha256};

use super::audit::{AuditEvent, EventRow};
use super::{Result, Store};

/// A manifest flow `state` stays valid this long (GitHub's codes last one
/// hour; the operator should not need longer).
pub const SETUP_STATE_TTL_MS: i64 = 60 * 60 * 1000;

fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// A GitHub App as stored: its private key and webhook secret still sealed.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredGithubApp {
    pub integration_id: i64,
    pub app_id: String,
    pub slug: String,
    /// The REST API the app was created on (`https://api.github.com`, or
    /// `https://HOST/api/v3`).
    pub api_url: String,
    pub private_key_sealed: String,
    pub webhook_secret_sealed: Option<String>,
}

impl std::fmt::Debug for StoredGithubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredGithubApp")
            .field("integration_id", &self.integration_id)
            .field("app_id", &self.app_id)
            .field("slug", &self.slug)
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

/// A GitHub App to store, secrets already sealed.
#[derive(Debug, Clone, Copy)]
pub struct NewGithubApp<'a> {
    pub app_id: &'a str,
    pub slug: &'a str,
    pub api_url: &'a str,
    pub private_key_sealed: &'a str,
    pub webhook_secret_sealed: Option<&'a str>,
}

impl Store {
    /// Records a fresh manifest-flow `state` (only its hash is kept) and
    /// forgets the expired ones.
    pub async fn create_setup_state(&self, provider: &str, state: &str, now: i64) -> Result<()> {
        sqlx::query("DELETE FROM setup_states WHERE created_at < $1")
            .bind(now - SETUP_STATE_TTL_MS)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO setup_states (state_hash, provider, created_at) VALUES ($1, $2, $3)",
        )
        .bind(state_hash(state))
        .bind(provider)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Consumes `state`: true once for a state this graft issued for
    /// `provider` within the last hour, false for anything else.
    pub async fn take_setup_state(&self, provider: &str, state: &str, now: i64) -> Result<bool> {
        let created_at: Option<i64> = sqlx::query_scalar(
            "DELETE FROM setup_states WHERE state_hash = $1 AND provider = $2 \
             RETURNING created_at",
        )
        .bind(state_hash(state))
        .bind(provider)
        .fetch_optional(&self.pool)
        .await?;
        Ok(created_at.is_some_and(|t| t >= now - SETUP_STATE_TTL_MS))
    }

    /// Stores the GitHub App (there is at most one): a new registration
    /// replaces the previous one's id, key and secret.
    pub async fn save_github_app(&self, app: &NewGithubApp<'_>, now: i64) -> Result<i64> {
        let value: i64 = sqlx::query_scalar(
            "INSERT INTO integrations (provider, name, base_url, app_id, token_sealed, \
             webhook_secret_sealed, created_at, updated_at) \
             VALUES ('github', $1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (provider) WHERE provider = 'github' DO UPDATE SET \
             name = excluded.name, base_url = excluded.base_url, app_id = excluded.app_id, \
             token_sealed = excluded.token_sealed, \
             webhook_secret_sealed = excluded.webhook_secret_sealed, \
             updated_at = excluded.updated_at \
             RETURNING id",
        )
        .bind(app.slug)
        .bind(app.api_url)
        .bind(app.app_id)
        .bind(app.private_key_sealed)
        .bind(app.webhook_secret_sealed)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(value)
    }

    pub async fn github_app(&self) -> Result<Option<StoredGithubApp>> {
        let app = sqlx::query_as(
            "SELECT id AS integration_id, app_id, name AS slug, base_url AS api_url, \
             token_sealed AS private_key_sealed, webhook_secret_sealed \
             FROM integrations WHERE provider = 'github' AND app_id IS NOT NULL \
             AND token_sealed IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(app)
    }

    /// The newest events of every project and of none, newest first.
    pub async fn recent_events(&self, limit: i64) -> Result<Vec<AuditEvent>> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT id, project_id, actor, kind, message, commit_sha, pull_request_url, details, \
             created_at FROM events ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(AuditEvent::from).collect())
    }
}
