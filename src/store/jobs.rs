//! The durable job queue. A job is claimed with a lease (`locked_by`,
//! `locked_until`); a worker that dies simply stops renewing it and the job
//! becomes claimable again. A partial unique index allows one running job
//! per project across every process; another keeps identical queued work
//! (same `dedupe_key`) to one row. Every function takes `now` so the rules
//! are testable without waiting for clocks.

use sqlx::AnyConnection;

use crate::ids::ProjectId;

use super::{Backend, Result, Store, is_unique_violation};

/// The `kind` column of each kind of job. `crate::jobs::Job` is the typed
/// form of a job; the strings live here, below it, because the store
/// queues webhook jobs itself (`deliveries`) and may not import `jobs`
/// (which imports the store).
pub mod kind {
    pub const WEBHOOK: &str = "webhook";
    pub const SYNC: &str = "sync";
    pub const RECONCILE: &str = "reconcile";
    pub const PR_CLOSED: &str = "pull_request_closed";
    pub const COMMAND: &str = "command";
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub kind: String,
    pub project_id: Option<ProjectId>,
    pub payload: serde_json::Value,
    /// Jobs with the same key coalesce while one of them is still queued.
    pub dedupe_key: Option<String>,
    pub run_at: i64,
    pub max_attempts: i64,
}

impl NewJob {
    pub fn new(kind: &str, payload: serde_json::Value, now: i64) -> Self {
        NewJob {
            kind: kind.to_string(),
            project_id: None,
            payload,
            dedupe_key: None,
            run_at: now,
            max_attempts: 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub project_id: Option<ProjectId>,
    pub payload: String,
    /// Attempts including this one.
    pub attempts: i64,
    pub max_attempts: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JobRecord {
    pub id: i64,
    pub kind: String,
    pub state: String,
    pub attempts: i64,
    pub run_at: i64,
    pub last_error: Option<String>,
}

/// Inserts a job unless an identical one (same dedupe key) is queued;
/// returns the new id, or `None` when it coalesced into the queued one.
pub async fn enqueue_in(conn: &mut AnyConnection, job: &NewJob, now: i64) -> Result<Option<i64>> {
    let id = sqlx::query_scalar(
        "INSERT INTO jobs (kind, project_id, payload, dedupe_key, state, run_at, attempts, \
         max_attempts, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'queued', $5, 0, $6, $7, $7) \
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(&job.kind)
    .bind(job.project_id)
    .bind(job.payload.to_string())
    .bind(job.dedupe_key.as_deref())
    .bind(job.run_at)
    .bind(job.max_attempts)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(id)
}

/// Folds new work into the queued job with `dedupe_key`: its payload
/// becomes `merge(its payload)`. The job's id when one was queued and took
/// it; `None` when none is queued (or it started meanwhile).
pub async fn merge_into_queued_in(
    conn: &mut AnyConnection,
    dedupe_key: &str,
    now: i64,
    merge: impl FnOnce(&str) -> String,
) -> Result<Option<i64>> {
    let queued: Option<(i64, String)> =
        sqlx::query_as("SELECT id, payload FROM jobs WHERE dedupe_key = $1 AND state = 'queued'")
            .bind(dedupe_key)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((id, payload)) = queued else {
        return Ok(None);
    };
    let updated = sqlx::query(
        "UPDATE jobs SET payload = $1, updated_at = $2 WHERE id = $3 AND state = 'queued'",
    )
    .bind(merge(&payload))
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok((updated.rows_affected() == 1).then_some(id))
}

/// A job whose holder's lease ran out (its holder died), oldest first.
const EXPIRED: &str = "SELECT j.id FROM jobs j WHERE j.state = 'running' AND j.locked_until < $3 \
     ORDER BY j.run_at, j.id LIMIT 1";

/// The next due queued job whose project has nothing running.
const DUE: &str = "SELECT j.id FROM jobs j WHERE j.state = 'queued' AND j.run_at <= $3 \
     AND (j.project_id IS NULL OR NOT EXISTS \
       (SELECT 1 FROM jobs r WHERE r.project_id = j.project_id AND r.state = 'running')) \
     ORDER BY j.run_at, j.id LIMIT 1";

fn claim_sql(backend: Backend) -> String {
    // Postgres: SKIP LOCKED lets concurrent claimers pass each other; the
    // unique index settles the rare race on one project. SQLite has a
    // single writer, so the plain statement is already atomic.
    let lock = match backend {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    // Two searches rather than one with OR: each walks the (state, run_at)
    // index in order and stops at its first row, where an OR made both
    // databases collect and sort the whole backlog on every claim (and
    // SQLite held the write lock meanwhile, stalling intake).
    format!(
        "UPDATE jobs SET state = 'running', locked_by = $1, locked_until = $2, \
         attempts = attempts + 1, updated_at = $3 \
         WHERE id = COALESCE(({EXPIRED} {lock}), ({DUE} {lock})) \
         RETURNING id, kind, project_id, payload, attempts, max_attempts, last_error"
    )
}

impl Store {
    pub async fn enqueue(&self, job: &NewJob, now: i64) -> Result<Option<i64>> {
        let mut conn = self.writer.acquire().await?;
        enqueue_in(&mut conn, job, now).await
    }

    /// Claims the next runnable job for `worker` until `now + lease_ms`.
    /// `None` when nothing is runnable (or another process won the race).
    pub async fn claim_job(&self, worker: &str, now: i64, lease_ms: i64) -> Result<Option<JobRow>> {
        // Built from constants only.
        let result = sqlx::query_as(sqlx::AssertSqlSafe(claim_sql(self.backend)))
            .bind(worker)
            .bind(now + lease_ms)
            .bind(now)
            .fetch_optional(&self.writer)
            .await;
        match result {
            Ok(row) => Ok(row),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Extends the lease; `false` means this worker no longer holds the job.
    pub async fn renew_lease(&self, id: i64, worker: &str, until: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET locked_until = $1 WHERE id = $2 AND locked_by = $3 AND state = 'running'",
        )
        .bind(until)
        .bind(id)
        .bind(worker)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks the job done; `false` if the lease was lost meanwhile (another
    /// worker owns the job now and will record its own outcome).
    pub async fn complete_job(&self, id: i64, worker: &str, now: i64) -> Result<bool> {
        self.finish(id, worker, now, "done", None).await
    }

    /// Gives up on the job for good.
    pub async fn fail_job(&self, id: i64, worker: &str, now: i64, error: &str) -> Result<bool> {
        self.finish(id, worker, now, "failed", Some(error)).await
    }

    async fn finish(
        &self,
        id: i64,
        worker: &str,
        now: i64,
        state: &str,
        error: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET state = $1, last_error = COALESCE($2, last_error), finished_at = $3, \
             updated_at = $3, locked_by = NULL, locked_until = NULL \
             WHERE id = $4 AND locked_by = $5 AND state = 'running'",
        )
        .bind(state)
        .bind(error)
        .bind(now)
        .bind(id)
        .bind(worker)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts the job back in the queue to run at `run_at`. With `count_attempt
    /// = false` (shutdown) the attempt it was in is not counted. If an
    /// identical job (same dedupe key) was queued meanwhile, that one covers
    /// this work: `merge(queued, this)` may fold this job's payload into it
    /// (a `--force` must not be lost), and this one closes as superseded.
    #[allow(clippy::too_many_arguments)]
    pub async fn requeue_job(
        &self,
        id: i64,
        worker: &str,
        now: i64,
        run_at: i64,
        error: Option<&str>,
        count_attempt: bool,
        merge: impl Fn(&str, &str) -> Option<String>,
    ) -> Result<bool> {
        // A twin found queued may start before it is merged into (another
        // process claimed it): then the plain requeue is possible again.
        // Bounded, as each round needs another process's claim to lose.
        for _ in 0..3 {
            let result = sqlx::query(
                "UPDATE jobs SET state = 'queued', run_at = $1, last_error = COALESCE($2, last_error), \
                 attempts = attempts - $3, updated_at = $4, locked_by = NULL, locked_until = NULL \
                 WHERE id = $5 AND locked_by = $6 AND state = 'running'",
            )
            .bind(run_at)
            .bind(error)
            .bind(if count_attempt { 0_i64 } else { 1_i64 })
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(&self.writer)
            .await;
            match result {
                Ok(done) => return Ok(done.rows_affected() == 1),
                Err(e) if is_unique_violation(&e) => {
                    if let Some(closed) = self.supersede(id, worker, now, &merge).await? {
                        return Ok(closed);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }

    /// Closes this job as covered by its queued twin, merging its payload
    /// in; `Some(closed)`, or `None` when no twin is queued any more.
    async fn supersede(
        &self,
        id: i64,
        worker: &str,
        now: i64,
        merge: &impl Fn(&str, &str) -> Option<String>,
    ) -> Result<Option<bool>> {
        let mut tx = self.begin_write().await?;
        let this: Option<(String, String)> = sqlx::query_as(
            "SELECT dedupe_key, payload FROM jobs \
             WHERE id = $1 AND locked_by = $2 AND state = 'running' AND dedupe_key IS NOT NULL",
        )
        .bind(id)
        .bind(worker)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((key, this)) = this else {
            return Ok(None);
        };
        let merged = merge_into_queued_in(&mut tx, &key, now, |queued| {
            merge(queued, &this).unwrap_or_else(|| queued.to_string())
        })
        .await?;
        // None: no twin is queued any more (it started meanwhile), so it
        // does not cover this job.
        let Some(queued_id) = merged else {
            return Ok(None);
        };
        let done = sqlx::query(
            "UPDATE jobs SET state = 'done', last_error = $1, finished_at = $2, updated_at = $2, \
             locked_by = NULL, locked_until = NULL WHERE id = $3 AND locked_by = $4 AND state = 'running'",
        )
        .bind(format!("superseded by the identical queued job {queued_id}"))
        .bind(now)
        .bind(id)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(done.rows_affected() == 1))
    }

    /// Forgets jobs that finished (done or failed) before `before`.
    /// Returns how many.
    pub async fn prune_jobs(&self, before: i64) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM jobs WHERE state IN ('done', 'failed') AND updated_at < $1")
                .bind(before)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected())
    }

    /// Job counts by state, for `/metrics`.
    pub async fn job_counts(&self) -> Result<Vec<(String, i64)>> {
        let counts = sqlx::query_as("SELECT state, COUNT(*) AS count FROM jobs GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        Ok(counts)
    }

    pub async fn job(&self, id: i64) -> Result<Option<JobRecord>> {
        let job = sqlx::query_as(
            "SELECT id, kind, state, attempts, run_at, last_error FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(job)
    }
}
