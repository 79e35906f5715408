//! The audit log: who did what, when, with commit SHAs and PR links.

use crate::ids::ProjectId;

use super::{Result, Store};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewEvent<'a> {
    pub project_id: Option<ProjectId>,
    pub actor: &'a str,
    pub kind: &'a str,
    pub message: &'a str,
    pub commit_sha: Option<&'a str>,
    pub pull_request_url: Option<&'a str>,
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEvent {
    pub id: i64,
    pub project_id: Option<ProjectId>,
    pub actor: String,
    pub kind: String,
    pub message: String,
    pub commit_sha: Option<String>,
    pub pull_request_url: Option<String>,
    pub details: Option<serde_json::Value>,
    pub created_at: i64,
}

/// An `events` row as stored: `details` is JSON text.
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    id: i64,
    project_id: Option<ProjectId>,
    actor: String,
    kind: String,
    message: String,
    commit_sha: Option<String>,
    pull_request_url: Option<String>,
    details: Option<String>,
    created_at: i64,
}

impl From<EventRow> for AuditEvent {
    fn from(r: EventRow) -> Self {
        AuditEvent {
            id: r.id,
            project_id: r.project_id,
            actor: r.actor,
            kind: r.kind,
            message: r.message,
            commit_sha: r.commit_sha,
            pull_request_url: r.pull_request_url,
            details: r.details.and_then(|d| serde_json::from_str(&d).ok()),
            created_at: r.created_at,
        }
    }
}

/// Appends to the audit log inside the caller's transaction.
pub async fn record_event_in(
    conn: &mut sqlx::AnyConnection,
    event: &NewEvent<'_>,
    now: i64,
) -> Result<i64> {
    let value: i64 = sqlx::query_scalar(
        "INSERT INTO events (project_id, actor, kind, message, commit_sha, pull_request_url, \
         details, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(event.project_id)
    .bind(event.actor)
    .bind(event.kind)
    .bind(event.message)
    .bind(event.commit_sha)
    .bind(event.pull_request_url)
    .bind(event.details.as_ref().map(|d| d.to_string()))
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(value)
}

impl Store {
    pub async fn record_event(&self, event: &NewEvent<'_>, now: i64) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        record_event_in(&mut conn, event, now).await
    }

    /// Newest first; `project_id = None` lists events not tied to a project.
    pub async fn list_events(
        &self,
        project_id: Option<ProjectId>,
        limit: i64,
    ) -> Result<Vec<AuditEvent>> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT id, project_id, actor, kind, message, commit_sha, pull_request_url, details, \
             created_at FROM events \
             WHERE ($1 IS NULL AND project_id IS NULL) OR project_id = $1 \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(project_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(AuditEvent::from).collect())
    }
}
