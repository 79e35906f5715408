//! Periodic tasks that run once per interval across every replica sharing
//! the database (the safety-net poll, retention), not once per replica. A
//! replica runs a task only after it claimed the run: one conditional
//! upsert moves `last_run_at` to its `now` when the previous run is at least
//! an interval old, so of replicas asking together exactly one wins. Times
//! are the callers' clocks, like job leases (replicas keep them in sync).

use super::{Result, Store};

/// What the table says about a task.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PeriodicRun {
    /// Who claimed the last run (a replica's worker prefix).
    pub holder: String,
    pub last_run_at: i64,
    /// Runs claimed since the task first ran, across replicas.
    pub runs: i64,
}

/// Whether a task last run at `last_run_at` (`None`: never) is due at `now`.
/// The claim statement applies the same rule (`last_run_at <= now - interval`).
pub fn is_due(last_run_at: Option<i64>, now: i64, interval_ms: i64) -> bool {
    last_run_at.is_none_or(|last| last <= latest_due_run(now, interval_ms))
}

/// The latest previous run that makes a task due at `now`.
fn latest_due_run(now: i64, interval_ms: i64) -> i64 {
    now.saturating_sub(interval_ms.max(0))
}

impl Store {
    /// Claims the run of `name` due at `now` for `holder`; `true` means the
    /// caller runs the task now, `false` that it ran within `interval_ms`
    /// (here or on another replica).
    pub async fn claim_periodic(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        interval_ms: i64,
    ) -> Result<bool> {
        // On PostgreSQL the conflicting row is locked and the WHERE is
        // evaluated on its newest version, so a concurrent claimer sees the
        // winner's `last_run_at`; SQLite has a single writer.
        let claimed = sqlx::query(
            "INSERT INTO periodic_tasks (name, holder, last_run_at, runs) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             last_run_at = excluded.last_run_at, runs = periodic_tasks.runs + 1 \
             WHERE periodic_tasks.last_run_at <= $4 \
             RETURNING runs",
        )
        .bind(name)
        .bind(holder)
        .bind(now)
        .bind(latest_due_run(now, interval_ms))
        .fetch_optional(&self.pool)
        .await?;
        Ok(claimed.is_some())
    }

    /// The task's last run, `None` before its first.
    pub async fn periodic_run(&self, name: &str) -> Result<Option<PeriodicRun>> {
        let run =
            sqlx::query_as("SELECT holder, last_run_at, runs FROM periodic_tasks WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::is_due;

    #[test]
    fn a_task_is_due_once_an_interval_has_passed_since_its_last_run() {
        const MIN: i64 = 60_000;
        let cases: &[(Option<i64>, i64, i64, bool, &str)] = &[
            (None, 0, MIN, true, "never ran"),
            (None, i64::MIN, MIN, true, "never ran, whatever the clock"),
            (Some(1_000), 1_000, MIN, false, "just ran"),
            (
                Some(1_000),
                1_000 + MIN - 1,
                MIN,
                false,
                "a millisecond early",
            ),
            (
                Some(1_000),
                1_000 + MIN,
                MIN,
                true,
                "exactly an interval later",
            ),
            (Some(1_000), 1_000 + 10 * MIN, MIN, true, "long overdue"),
            (
                Some(5 * MIN),
                MIN,
                MIN,
                false,
                "last run ahead of this clock",
            ),
            (Some(1_000), 1_000, 0, true, "zero interval: always due"),
            (
                Some(1_000),
                1_000,
                -5,
                true,
                "negative interval counts as zero",
            ),
            (
                Some(i64::MIN),
                i64::MIN,
                MIN,
                true,
                "no overflow at the bottom",
            ),
            (
                Some(i64::MAX),
                i64::MAX,
                MIN,
                false,
                "no overflow at the top",
            ),
        ];
        for &(last, now, interval, due, why) in cases {
            assert_eq!(is_due(last, now, interval), due, "{why}");
        }
    }
}
