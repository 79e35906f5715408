//! How a project's sync state (the fields users see) changes: status and
//! error, what a successful sync recorded, the PR it has, the pause and
//! the hold on auto-sync. Every change is one statement.

use sqlx::AnyConnection;

use crate::ids::{PrNumber, ProjectId};

use super::projects::SyncStatus;
use super::{Result, Store, flag};

/// What a sync changed, for [`Store::record_sync_success`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncSuccess {
    pub commit_sha: Option<String>,
    pub target_head: Option<String>,
    pub pull_request_number: Option<PrNumber>,
    pub pull_request_url: Option<String>,
    pub sync_branch_sha: Option<String>,
    pub findings: Option<serde_json::Value>,
}

/// The columns that describe graft's open PR, all forgotten when it ends.
macro_rules! forget_pull_request_columns {
    () => {
        "pull_request_number = NULL, pull_request_url = NULL, status_comment_id = NULL, \
         sync_branch_shared = 0, sync_branch_sha = NULL, last_changes = NULL"
    };
}

impl Store {
    pub async fn set_sync_status(
        &self,
        id: ProjectId,
        status: SyncStatus,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        // A paused project shows `paused` until it is resumed; only a
        // running sync or an error shows through.
        sqlx::query(
            "UPDATE projects SET \
             status_before_pause = CASE WHEN paused = 1 AND $1 IN ('idle', 'success') \
               THEN $1 ELSE status_before_pause END, \
             error_before_pause = CASE WHEN paused = 1 AND $1 IN ('idle', 'success') \
               THEN NULL ELSE error_before_pause END, \
             sync_status = CASE WHEN paused = 1 AND $1 IN ('idle', 'success') \
               THEN 'paused' ELSE $1 END, sync_error = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a failed sync: `error` with the message, and the job to retry.
    pub async fn record_sync_error(
        &self,
        id: ProjectId,
        message: &str,
        job_id: Option<i64>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE projects SET sync_status = 'error', sync_error = $1, \
             last_failed_job_id = COALESCE($2, last_failed_job_id), updated_at = $3 WHERE id = $4",
        )
        .bind(message)
        .bind(job_id)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_conflicts(
        &self,
        id: ProjectId,
        conflicts: Option<&[String]>,
        now: i64,
    ) -> Result<()> {
        let json = conflicts.map(|c| serde_json::to_string(c).unwrap_or_default());
        sqlx::query("UPDATE projects SET conflicts = $1, updated_at = $2 WHERE id = $3")
            .bind(json)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn record_sync_success(
        &self,
        id: ProjectId,
        done: &SyncSuccess,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE projects SET sync_status = CASE WHEN paused = 1 THEN 'paused' ELSE 'success' END, \
             status_before_pause = CASE WHEN paused = 1 THEN 'success' ELSE NULL END, \
             error_before_pause = NULL, sync_error = NULL, conflicts = NULL, \
             last_synced_commit_sha = COALESCE($1, last_synced_commit_sha), \
             pull_request_number = $2, pull_request_url = $3, \
             sync_branch_sha = $4, last_findings = $5, auto_sync_held = 0, updated_at = $6 \
             WHERE id = $7",
        )
        .bind(done.target_head.as_deref())
        .bind(done.pull_request_number)
        .bind(done.pull_request_url.as_deref())
        .bind(done.sync_branch_sha.as_deref())
        .bind(done.findings.as_ref().map(|f| f.to_string()))
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Validation findings of the last overlay (shown on the PR and dashboard).
    pub async fn set_findings(&self, id: ProjectId, findings: &serde_json::Value) -> Result<()> {
        sqlx::query("UPDATE projects SET last_findings = $1 WHERE id = $2")
            .bind(findings.to_string())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// After a reconcile: the head graft has now seen, and when.
    pub async fn record_pull(&self, id: ProjectId, head: Option<&str>, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE projects SET last_synced_commit_sha = COALESCE($1, last_synced_commit_sha), \
             last_pulled_at = $2, updated_at = $2 WHERE id = $3",
        )
        .bind(head)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A push that provably left the project's files alone moved its
    /// target branch from `before` to `after`: record `after` as seen, in
    /// one compare-and-set. Nothing changes (`false`) when graft's head is
    /// no longer `before` (it never skips a change it has not read), or
    /// while a job of the project runs: that job may have read the branch
    /// before this push and would record its older head over this one.
    pub async fn advance_head(
        &self,
        id: ProjectId,
        before: &str,
        after: &str,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE projects SET last_synced_commit_sha = $1, last_pulled_at = $2, \
             updated_at = $2 WHERE id = $3 AND last_synced_commit_sha = $4 \
             AND NOT EXISTS (SELECT 1 FROM jobs \
               WHERE jobs.project_id = projects.id AND jobs.state = 'running')",
        )
        .bind(after)
        .bind(now)
        .bind(id)
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn set_pull_request(
        &self,
        id: ProjectId,
        number: Option<PrNumber>,
        url: Option<&str>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE projects SET pull_request_number = $1, pull_request_url = $2, \
             status_comment_id = CASE WHEN $1 IS NULL THEN NULL ELSE status_comment_id END, \
             sync_branch_shared = CASE WHEN $1 IS NULL THEN 0 ELSE sync_branch_shared END, \
             last_changes = CASE WHEN $1 IS NULL THEN NULL ELSE last_changes END, \
             updated_at = $3 WHERE id = $4",
        )
        .bind(number)
        .bind(url)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_status_comment(&self, id: ProjectId, comment_id: Option<i64>) -> Result<()> {
        sqlx::query("UPDATE projects SET status_comment_id = $1 WHERE id = $2")
            .bind(comment_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_sync_branch_state(
        &self,
        id: ProjectId,
        sha: Option<&str>,
        shared: bool,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE projects SET sync_branch_sha = $1, sync_branch_shared = $2 WHERE id = $3",
        )
        .bind(sha)
        .bind(flag(shared))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The PR graft just opened or updated, what it changes and the sync
    /// branch head it shows, in one statement (recorded at once: a failure
    /// after it must not leave the PR unknown).
    #[allow(clippy::too_many_arguments)]
    pub async fn record_pull_request_open(
        &self,
        id: ProjectId,
        number: PrNumber,
        url: &str,
        changes: &[crate::git::read::FileChange],
        branch_sha: &str,
        shared: bool,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE projects SET pull_request_number = $1, pull_request_url = $2, \
             last_changes = $3, sync_branch_sha = $4, sync_branch_shared = $5, updated_at = $6 \
             WHERE id = $7",
        )
        .bind(number)
        .bind(url)
        .bind(serde_json::json!(changes).to_string())
        .bind(branch_sha)
        .bind(flag(shared))
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// graft closed its own PR: every PR field goes, the status stays.
    pub async fn forget_pull_request(&self, id: ProjectId, now: i64) -> Result<()> {
        sqlx::query(concat!(
            "UPDATE projects SET ",
            forget_pull_request_columns!(),
            ", updated_at = $1 WHERE id = $2"
        ))
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Pausing shows `paused` and remembers the status and error it
    /// replaces; resuming puts them back (unless a sync ran meanwhile and
    /// showed through). Both are no-ops when already in that state.
    pub async fn set_paused(&self, id: ProjectId, paused: bool, now: i64) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        set_paused_in(&mut conn, id, paused, now).await?;
        Ok(())
    }

    pub async fn set_auto_merge(&self, id: ProjectId, on: bool, now: i64) -> Result<()> {
        sqlx::query("UPDATE projects SET auto_merge = $1, updated_at = $2 WHERE id = $3")
            .bind(flag(on))
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_auto_sync_held(&self, id: ProjectId, held: bool, now: i64) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        set_auto_sync_held_in(&mut conn, id, held, now).await
    }
}

/// Pauses or resumes project `id`; `false` when it already was in that
/// state (nothing changed). A pause keeps the status and error to give
/// back on resume.
pub async fn set_paused_in(
    conn: &mut AnyConnection,
    id: ProjectId,
    paused: bool,
    now: i64,
) -> Result<bool> {
    let sql = if paused {
        "UPDATE projects SET paused = 1, status_before_pause = \
               CASE WHEN sync_status = 'syncing' THEN 'idle' ELSE sync_status END, \
             error_before_pause = sync_error, sync_status = 'paused', sync_error = NULL, \
             updated_at = $1 WHERE id = $2 AND paused = 0"
    } else {
        "UPDATE projects SET paused = 0, \
             sync_status = CASE WHEN sync_status = 'paused' \
               THEN COALESCE(status_before_pause, 'idle') ELSE sync_status END, \
             sync_error = CASE WHEN sync_status = 'paused' THEN error_before_pause ELSE sync_error END, \
             status_before_pause = NULL, error_before_pause = NULL, \
             updated_at = $1 WHERE id = $2 AND paused = 1"
    };
    let done = sqlx::query(sql)
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn set_auto_sync_held_in(
    conn: &mut AnyConnection,
    id: ProjectId,
    held: bool,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE projects SET auto_sync_held = $1, updated_at = $2 WHERE id = $3")
        .bind(flag(held))
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Remembers the generator that last sent files (for commit messages);
/// `None` keeps the one before.
pub async fn set_source_in(
    conn: &mut AnyConnection,
    id: ProjectId,
    source: Option<&str>,
) -> Result<()> {
    sqlx::query("UPDATE projects SET source = COALESCE($1, source) WHERE id = $2")
        .bind(source)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// How graft's PR ended.
pub enum PullRequestEnd<'a> {
    /// Merged: what landed is settled by a reconcile queued with it.
    Merged {
        reconcile: &'a crate::store::jobs::NewJob,
    },
    /// Closed unmerged: what the repository has, per managed path.
    Closed {
        in_repository: &'a [(String, Option<String>)],
    },
}

impl Store {
    /// Records the end of graft's PR in one transaction: the PR fields and
    /// the branch state cleared, the status (`success` after a merge,
    /// `idle` and auto-sync held after a close), the files, the audit
    /// event and, after a merge, the reconcile. A crash leaves all or none.
    pub async fn record_pull_request_end(
        &self,
        id: ProjectId,
        end: PullRequestEnd<'_>,
        event: &crate::store::audit::NewEvent<'_>,
        now: i64,
    ) -> Result<()> {
        let (status, held) = match &end {
            PullRequestEnd::Merged { .. } => ("success", 0),
            PullRequestEnd::Closed { .. } => ("idle", 1),
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(concat!(
            "UPDATE projects SET ",
            forget_pull_request_columns!(),
            ", sync_error = NULL, \
             status_before_pause = CASE WHEN paused = 1 THEN $1 ELSE status_before_pause END, \
             error_before_pause = CASE WHEN paused = 1 THEN NULL ELSE error_before_pause END, \
             sync_status = CASE WHEN paused = 1 THEN 'paused' ELSE $1 END, \
             auto_sync_held = CASE WHEN $2 = 1 THEN 1 ELSE auto_sync_held END, \
             updated_at = $3 WHERE id = $4"
        ))
        .bind(status)
        .bind(held)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        match end {
            PullRequestEnd::Merged { reconcile } => {
                crate::store::jobs::enqueue_in(&mut tx, reconcile, now).await?;
            }
            PullRequestEnd::Closed { in_repository } => {
                crate::store::files::record_unlanded_in(&mut tx, id, in_repository, now).await?;
            }
        }
        crate::store::audit::record_event_in(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(())
    }
}
