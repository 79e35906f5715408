//! Runs a periodic task once per interval across every replica: each
//! replica wakes when the task falls due (plus a small random spread, so
//! replicas do not all ask at the same instant), claims the run in the
//! store (`store::periodic`), and runs the task only when its claim won.
//! The others learn when the winner ran and sleep until the next turn.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::{Store, now_ms};

/// A task shared by the replicas.
#[derive(Debug, Clone)]
pub struct Periodic {
    /// The row in `periodic_tasks`.
    pub name: &'static str,
    pub interval: Duration,
    /// This replica, as the table records who ran the task.
    pub holder: String,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// How long to sleep before asking again, from a random `unit` in [0, 1):
/// until the task is due after `last_run_at` (`None`: unknown, a database
/// error: at most a minute), plus up to a tenth of the interval; at least
/// a twentieth of it, so a skewed clock cannot make a replica spin.
pub fn next_wait(last_run_at: Option<i64>, now: i64, interval: Duration, unit: f64) -> Duration {
    let spread = interval.mul_f64(0.1 * unit.clamp(0.0, 1.0));
    let Some(last) = last_run_at else {
        // Try again in a while rather than hammer a failing database.
        return interval.min(Duration::from_secs(60)) + spread;
    };
    let until_due = last.saturating_add(millis(interval)).saturating_sub(now);
    let until_due = Duration::from_millis(u64::try_from(until_due).unwrap_or(0));
    until_due.max(interval / 20) + spread
}

/// Runs `work` whenever this replica claims a due run of `task`, until
/// `shutdown` turns true. A task that never ran is due at once.
pub async fn run<F, Fut>(
    store: Store,
    task: Periodic,
    mut shutdown: watch::Receiver<bool>,
    mut work: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let interval_ms = millis(task.interval);
    while !*shutdown.borrow() {
        let now = now_ms();
        let last_run_at = match store
            .claim_periodic(task.name, &task.holder, now, interval_ms)
            .await
        {
            Ok(true) => {
                work().await;
                Some(now)
            }
            Ok(false) => match store.periodic_run(task.name).await {
                Ok(run) => run.map(|r| r.last_run_at),
                Err(e) => {
                    tracing::warn!(task = task.name, error = %e, "periodic task: cannot read its last run");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(task = task.name, error = %e, "periodic task: cannot claim its run");
                None
            }
        };
        let wait = next_wait(last_run_at, now_ms(), task.interval, rand::random::<f64>());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_sleep_until_the_task_is_due_then_a_little_more() {
        let minute = Duration::from_secs(60);
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let cases: &[(Option<i64>, i64, f64, Duration, &str)] = &[
            (Some(0), 0, 0.0, s(60), "just ran: a whole interval"),
            (Some(0), 0, 1.0, s(66), "plus at most a tenth"),
            (Some(0), 45_000, 0.0, s(15), "the rest of the interval"),
            (Some(0), 59_990, 0.0, s(3), "no less than a twentieth"),
            (
                Some(0),
                600_000,
                0.5,
                s(6),
                "overdue (skew): a twentieth, spread",
            ),
            (None, 0, 0.0, s(60), "database trouble: retry later"),
            (
                Some(i64::MAX),
                0,
                0.0,
                Duration::from_millis(i64::MAX as u64),
                "no overflow",
            ),
        ];
        for &(last, now, unit, expected, why) in cases {
            assert_eq!(next_wait(last, now, minute, unit), expected, "{why}");
        }
        let hour = Duration::from_secs(3600);
        assert_eq!(
            next_wait(None, 0, hour, 0.0),
            s(60),
            "retries are capped at a minute"
        );
        assert_eq!(next_wait(Some(0), 0, ms(200), 0.0), ms(200));
    }
}
