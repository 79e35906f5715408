//! Slash commands in the store: the last text seen of each comment that
//! addressed graft, and one row per accepted command line with its
//! outcome. Accepting a comment's commands and queueing the job that runs
//! them happen in one transaction, so a command is never acknowledged
//! and then lost, and a redelivered comment finds its keys taken.

use super::jobs::{NewJob, enqueue_in};
use super::{Backend, Result, Store};
use crate::ids::PrNumber;
use crate::ids::ProjectId;

/// Which comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentKey<'a> {
    pub provider: &'a str,
    pub repo: &'a str,
    pub number: PrNumber,
    pub comment_id: i64,
    pub author: &'a str,
}

/// A command line to accept unless its key was taken before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCommandRun {
    pub dedupe_key: String,
    /// The line as written.
    pub command: String,
}

/// How many command runs one person may start on one PR within a window.
/// Over it a comment runs nothing (graft logs it and answers nothing, so
/// the limit cannot itself be used to make graft write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max_runs: i64,
    pub window_ms: i64,
}

impl RateLimit {
    /// Whether `new` more runs fit after `recent` ones in the window.
    pub fn admits(&self, recent: i64, new: usize) -> bool {
        let new = i64::try_from(new).unwrap_or(i64::MAX);
        recent.saturating_add(new) <= self.max_runs
    }
}

/// What [`Store::accept_commands`] did with a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// New command lines were recorded and this job queued.
    Queued(i64),
    /// Nothing in the comment was new.
    NothingNew,
    /// The author is over the rate limit on this PR: nothing was recorded,
    /// not even the comment's text, so a later edit still sees it as new.
    RateLimited { recent: i64 },
}

/// What [`Store::accept_verified`] did with a verified GitLab note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// New command lines were recorded for the job: their positions in
    /// what `plan` returned, and their row ids.
    Runs(Vec<(usize, i64)>),
    /// The job recorded these before (it is being retried).
    Resumed(Vec<CommandRun>),
    /// The note's verified text is remembered; nothing in it is new.
    NothingNew,
    /// The (verified) author is over the rate limit: nothing recorded.
    RateLimited { recent: i64 },
}

enum Recorded {
    Runs(Vec<(usize, i64)>),
    RateLimited { recent: i64 },
}

/// How long one `command.rejected` audit entry gathers the rejections
/// of a project that follow it.
pub const REJECTIONS_WINDOW_MS: i64 = 60_000;

/// Reads the comment's last seen text, remembers `body` instead, lets
/// `plan` pick the command lines to run given the previous text and
/// stores those whose key is new (for job `job_id`, when known). Nothing
/// is stored past the author's rate limit (the caller rolls back).
#[allow(clippy::too_many_arguments)]
async fn record_runs_in<P>(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    comment: &CommentKey<'_>,
    body: &str,
    plan: P,
    job_id: Option<i64>,
    limit: RateLimit,
    now: i64,
) -> Result<Recorded>
where
    P: FnOnce(Option<String>) -> Vec<NewCommandRun>,
{
    // Postgres: lock the row so two edits of one comment take turns;
    // SQLite's BEGIN IMMEDIATE already serialises writers.
    let select = match backend {
        Backend::Postgres => {
            "SELECT body FROM comment_texts WHERE provider = $1 AND repo = $2 \
                 AND comment_id = $3 FOR UPDATE"
        }
        Backend::Sqlite => {
            "SELECT body FROM comment_texts WHERE provider = $1 AND repo = $2 \
                 AND comment_id = $3"
        }
    };
    let previous: Option<String> = sqlx::query_scalar(select)
        .bind(comment.provider)
        .bind(comment.repo)
        .bind(comment.comment_id)
        .fetch_optional(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO comment_texts (provider, repo, comment_id, body, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (provider, repo, comment_id) \
             DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
    )
    .bind(comment.provider)
    .bind(comment.repo)
    .bind(comment.comment_id)
    .bind(body)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let runs = plan(previous);
    if !runs.is_empty() {
        let recent: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM command_runs WHERE provider = $1 AND repo = $2 \
                 AND number = $3 AND author = $4 AND created_at > $5",
        )
        .bind(comment.provider)
        .bind(comment.repo)
        .bind(comment.number)
        .bind(comment.author)
        .bind(now.saturating_sub(limit.window_ms))
        .fetch_one(&mut **tx)
        .await?;
        if !limit.admits(recent, runs.len()) {
            return Ok(Recorded::RateLimited { recent });
        }
    }
    let mut accepted = Vec::new();
    for (index, run) in runs.into_iter().enumerate() {
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO command_runs (dedupe_key, provider, repo, number, comment_id, \
                 author, command, created_at, job_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        )
        .bind(&run.dedupe_key)
        .bind(comment.provider)
        .bind(comment.repo)
        .bind(comment.number)
        .bind(comment.comment_id)
        .bind(comment.author)
        .bind(&run.command)
        .bind(now)
        .bind(job_id)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(id) = id {
            accepted.push((index, id));
        }
    }
    Ok(Recorded::Runs(accepted))
}

/// A stored command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRun {
    pub id: i64,
    pub command: String,
    /// JSON, once the command ran.
    pub outcome: Option<String>,
    pub replied: bool,
}

/// A `command_runs` row as stored (`replied` as an integer).
#[derive(sqlx::FromRow)]
struct RunRow {
    id: i64,
    command: String,
    outcome: Option<String>,
    replied: i64,
}

impl From<RunRow> for CommandRun {
    fn from(r: RunRow) -> Self {
        CommandRun {
            id: r.id,
            command: r.command,
            outcome: r.outcome,
            replied: r.replied != 0,
        }
    }
}

impl Store {
    /// In one transaction: reads the comment's last seen text, remembers
    /// `body` instead, lets `plan` pick the command lines to run given the
    /// previous text, stores those whose key is new and queues the job
    /// `job` makes from their row ids (with their positions in what `plan`
    /// returned). Refuses (and records nothing) when the lines would take
    /// the comment's author over `limit` on this PR.
    pub async fn accept_commands<P, J>(
        &self,
        comment: &CommentKey<'_>,
        body: &str,
        plan: P,
        job: J,
        limit: RateLimit,
        now: i64,
    ) -> Result<Accepted>
    where
        P: FnOnce(Option<String>) -> Vec<NewCommandRun>,
        J: FnOnce(&[(usize, i64)]) -> NewJob,
    {
        let mut tx = self.begin_write().await?;
        let accepted =
            match record_runs_in(&mut tx, self.backend, comment, body, plan, None, limit, now)
                .await?
            {
                Recorded::Runs(accepted) => accepted,
                Recorded::RateLimited { recent } => {
                    tx.rollback().await?;
                    return Ok(Accepted::RateLimited { recent });
                }
            };
        if accepted.is_empty() {
            tx.commit().await?;
            return Ok(Accepted::NothingNew);
        }
        let job_id = enqueue_in(&mut tx, &job(&accepted), now).await?;
        if let Some(job_id) = job_id {
            for (_, id) in &accepted {
                sqlx::query("UPDATE command_runs SET job_id = $1 WHERE id = $2")
                    .bind(job_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(job_id.map_or(Accepted::NothingNew, Accepted::Queued))
    }

    /// The last text graft remembers of a comment (read only).
    pub async fn comment_text(
        &self,
        provider: &str,
        repo: &str,
        comment_id: i64,
    ) -> Result<Option<String>> {
        let body = sqlx::query_scalar(
            "SELECT body FROM comment_texts WHERE provider = $1 AND repo = $2 \
             AND comment_id = $3",
        )
        .bind(provider)
        .bind(repo)
        .bind(comment_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(body)
    }

    /// Queues `job` (a `job.kind` job of `project_id`) unless that project
    /// already had `limit.max_runs` jobs of that kind within the window;
    /// [`Accepted::NothingNew`] when an identical job is still queued.
    pub async fn queue_limited(
        &self,
        job: &NewJob,
        project_id: ProjectId,
        limit: RateLimit,
        now: i64,
    ) -> Result<Accepted> {
        let mut tx = self.begin_write().await?;
        let recent: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE kind = $1 AND project_id = $2 AND created_at > $3",
        )
        .bind(&job.kind)
        .bind(project_id)
        .bind(now.saturating_sub(limit.window_ms))
        .fetch_one(&mut *tx)
        .await?;
        if !limit.admits(recent, 1) {
            tx.rollback().await?;
            return Ok(Accepted::RateLimited { recent });
        }
        let queued = enqueue_in(&mut tx, job, now).await?;
        tx.commit().await?;
        Ok(queued.map_or(Accepted::NothingNew, Accepted::Queued))
    }

    /// For job `job_id`, which verified `body` with the forge: the runs it
    /// recorded before, if it is being retried; else, in one transaction,
    /// remembers `body` as the comment's text and records the command
    /// lines `plan` picks given the text remembered before, under keys
    /// that were never taken (see [`Store::accept_commands`]).
    pub async fn accept_verified<P>(
        &self,
        comment: &CommentKey<'_>,
        body: &str,
        plan: P,
        job_id: i64,
        limit: RateLimit,
        now: i64,
    ) -> Result<Claimed>
    where
        P: FnOnce(Option<String>) -> Vec<NewCommandRun>,
    {
        let mut tx = self.begin_write().await?;
        let before: Vec<RunRow> = sqlx::query_as(
            "SELECT id, command, outcome, replied FROM command_runs WHERE job_id = $1 ORDER BY id",
        )
        .bind(job_id)
        .fetch_all(&mut *tx)
        .await?;
        if !before.is_empty() {
            tx.commit().await?;
            return Ok(Claimed::Resumed(
                before.into_iter().map(CommandRun::from).collect(),
            ));
        }
        let recorded = record_runs_in(
            &mut tx,
            self.backend,
            comment,
            body,
            plan,
            Some(job_id),
            limit,
            now,
        )
        .await?;
        match recorded {
            Recorded::RateLimited { recent } => {
                tx.rollback().await?;
                Ok(Claimed::RateLimited { recent })
            }
            Recorded::Runs(runs) => {
                tx.commit().await?;
                Ok(if runs.is_empty() {
                    Claimed::NothingNew
                } else {
                    Claimed::Runs(runs)
                })
            }
        }
    }

    /// The ids of the command rows job `job_id` recorded.
    pub async fn command_run_ids_of_job(&self, job_id: i64) -> Result<Vec<i64>> {
        let ids = sqlx::query_scalar("SELECT id FROM command_runs WHERE job_id = $1 ORDER BY id")
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(ids)
    }

    /// Records a `command.rejected` audit event, unless one of `project_id`
    /// was written within [`REJECTIONS_WINDOW_MS`]: then that one counts
    /// this rejection too, so a flood of forged hooks writes one entry a
    /// minute, not one each. `message` says why.
    pub async fn record_rejection(
        &self,
        project_id: ProjectId,
        pull_request_url: Option<&str>,
        message: &str,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let recent: Option<(i64, Option<String>)> = sqlx::query_as(
            "SELECT id, details FROM events WHERE project_id = $1 AND kind = 'command.rejected' \
             AND created_at > $2 ORDER BY id DESC LIMIT 1",
        )
        .bind(project_id)
        .bind(now.saturating_sub(REJECTIONS_WINDOW_MS))
        .fetch_optional(&mut *tx)
        .await?;
        match recent {
            Some((id, details)) => {
                let details = details
                    .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
                    .unwrap_or_default();
                let count = details["rejected"].as_i64().unwrap_or(1).saturating_add(1);
                let first = details["first"].as_str().unwrap_or_default().to_string();
                let summary = format!(
                    "{first} (and {} more notes rejected within a minute; graft's log gives \
                     each reason)",
                    count - 1
                );
                let details = serde_json::json!({ "rejected": count, "first": first });
                sqlx::query("UPDATE events SET message = $1, details = $2 WHERE id = $3")
                    .bind(summary)
                    .bind(details.to_string())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                let details = serde_json::json!({ "rejected": 1, "first": message });
                super::audit::record_event_in(
                    &mut tx,
                    &super::audit::NewEvent {
                        project_id: Some(project_id),
                        actor: "graft",
                        kind: "command.rejected",
                        message,
                        pull_request_url,
                        details: Some(details),
                        ..Default::default()
                    },
                    now,
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets what graft remembers of the `provider`'s comments it last
    /// saw before `before`.
    pub async fn prune_comment_texts(&self, provider: &str, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM comment_texts WHERE provider = $1 AND updated_at < $2")
            .bind(provider)
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Remembers the new text of a comment graft has seen before (an edit
    /// that left no commands), so a command written back in later counts
    /// as new, not as the first text over again.
    pub async fn update_seen_comment_text(
        &self,
        provider: &str,
        repo: &str,
        comment_id: i64,
        body: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE comment_texts SET body = $1, updated_at = $2 \
             WHERE provider = $3 AND repo = $4 AND comment_id = $5",
        )
        .bind(body)
        .bind(now)
        .bind(provider)
        .bind(repo)
        .bind(comment_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The command rows with these ids, in id order.
    pub async fn command_runs(&self, ids: &[i64]) -> Result<Vec<CommandRun>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row: Option<RunRow> = sqlx::query_as(
                "SELECT id, command, outcome, replied FROM command_runs WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(r) = row {
                out.push(CommandRun::from(r));
            }
        }
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// Records what a command did.
    pub async fn finish_command_run(&self, id: i64, outcome: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE command_runs SET outcome = $1, finished_at = $2 WHERE id = $3")
            .bind(outcome)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records that the answer to these commands was posted.
    pub async fn mark_command_runs_replied(&self, ids: &[i64]) -> Result<()> {
        for id in ids {
            sqlx::query("UPDATE command_runs SET replied = 1 WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Forgets command runs created before `before` whose job is over (or
    /// gone). What each comment last said stays in `comment_texts`, so an
    /// old comment redelivered still runs nothing twice.
    pub async fn prune_command_runs(&self, before: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM command_runs WHERE created_at < $1 AND (replied = 1 \
             OR job_id IS NULL OR NOT EXISTS (SELECT 1 FROM jobs \
             WHERE jobs.id = command_runs.job_id AND jobs.state IN ('queued', 'running')))",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Kind and payload of a job, for `/graft retry`.
    pub async fn job_kind_and_payload(&self, id: i64) -> Result<Option<(String, String)>> {
        let row = sqlx::query_as("SELECT kind, payload FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimit;

    #[test]
    fn the_limit_counts_what_ran_and_what_would_run() {
        let limit = RateLimit {
            max_runs: 10,
            window_ms: 60_000,
        };
        assert!(limit.admits(0, 10));
        assert!(limit.admits(9, 1));
        assert!(!limit.admits(9, 2));
        assert!(!limit.admits(10, 1));
        assert!(limit.admits(10, 0), "nothing new is never over");
        assert!(!limit.admits(i64::MAX, usize::MAX));
    }
}
