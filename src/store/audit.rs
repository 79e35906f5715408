//! The audit log: who did what, when, with commit SHAs and PR links.

use sqlx::Row;

use super::{Result, Store};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewEvent<'a> {
    pub project_id: Option<i64>,
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
    pub project_id: Option<i64>,
    pub actor: String,
    pub kind: String,
    pub message: String,
    pub commit_sha: Option<String>,
    pub pull_request_url: Option<String>,
    pub details: Option<serde_json::Value>,
    pub created_at: i64,
}

/// Appends to the audit log inside the caller's transaction.
pub async fn record_event_in(
    conn: &mut sqlx::AnyConnection,
    event: &NewEvent<'_>,
    now: i64,
) -> Result<i64> {
    let row = sqlx::query(
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
    Ok(row.get(0))
}

impl Store {
    pub async fn record_event(&self, event: &NewEvent<'_>, now: i64) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        record_event_in(&mut conn, event, now).await
    }

    /// Newest first; `project_id = None` lists events not tied to a project.
    pub async fn list_events(
        &self,
        project_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT id, project_id, actor, kind, message, commit_sha, pull_request_url, details, \
             created_at FROM events \
             WHERE ($1 IS NULL AND project_id IS NULL) OR project_id = $1 \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(project_id)
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
