//! What the operator screens need: the GitHub App registered through the
//! manifest flow (secrets arrive sealed), the one-time `state` of that
//! flow and the recent activity across projects.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::audit::AuditEvent;
use super::{Result, Store};

/// A manifest flow `state` stays valid this long (GitHub's codes last one
/// hour; the operator should not need longer).
pub const SETUP_STATE_TTL_MS: i64 = 60 * 60 * 1000;

fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// A GitHub App as stored: its private key and webhook secret still sealed.
#[derive(Clone, PartialEq, Eq)]
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
        let row = sqlx::query(
            "DELETE FROM setup_states WHERE state_hash = $1 AND provider = $2 \
             RETURNING created_at",
        )
        .bind(state_hash(state))
        .bind(provider)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some_and(|r| r.get::<i64, _>(0) >= now - SETUP_STATE_TTL_MS))
    }

    /// Stores the GitHub App (there is at most one): a new registration
    /// replaces the previous one's id, key and secret.
    pub async fn save_github_app(&self, app: &NewGithubApp<'_>, now: i64) -> Result<i64> {
        let row = sqlx::query(
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
        Ok(row.get(0))
    }

    pub async fn github_app(&self) -> Result<Option<StoredGithubApp>> {
        let row = sqlx::query(
            "SELECT id, app_id, name, base_url, token_sealed, webhook_secret_sealed \
             FROM integrations WHERE provider = 'github' AND app_id IS NOT NULL \
             AND token_sealed IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| StoredGithubApp {
            integration_id: r.get(0),
            app_id: r.get(1),
            slug: r.get(2),
            api_url: r.get(3),
            private_key_sealed: r.get(4),
            webhook_secret_sealed: r.get(5),
        }))
    }

    /// The newest events of every project and of none, newest first.
    pub async fn recent_events(&self, limit: i64) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT id, project_id, actor, kind, message, commit_sha, pull_request_url, details, \
             created_at FROM events ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| AuditEvent {
                id: r.get(0),
                project_id: r.get(1),
                actor: r.get(2),
                kind: r.get(3),
                message: r.get(4),
                commit_sha: r.get(5),
                pull_request_url: r.get(6),
                details: r
                    .get::<Option<String>, _>(7)
                    .and_then(|d| serde_json::from_str(&d).ok()),
                created_at: r.get(8),
            })
            .collect())
    }
}
