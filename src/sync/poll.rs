//! The safety net for missed webhooks (GitHub does not redeliver): every
//! interval, with jitter so replicas and projects spread out, each project
//! gets a reconcile job. Reconcile first asks the forge for the branch head
//! and stops there when nothing moved, so a quiet poll costs one API call.

use std::time::Duration;

use tokio::sync::watch;

use crate::app::AppState;
use crate::store::{Result, Store, now_ms};

use super::schedule;

/// Queues a reconcile for every project (coalesced with queued ones).
pub async fn enqueue_all(store: &Store) -> Result<usize> {
    let now = now_ms();
    let mut queued = 0;
    for project in store.list_projects().await? {
        if schedule::enqueue_reconcile(store, project.id, "poll", now)
            .await?
            .is_some()
        {
            queued += 1;
        }
    }
    Ok(queued)
}

/// `interval` ± 20%, from a random `unit` in [0, 1).
pub fn jittered(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0))
}

/// Runs until `shutdown` turns true.
pub async fn run_poller(state: AppState, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        let wait = jittered(interval, rand::random::<f64>());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        match enqueue_all(&state.store).await {
            Ok(n) if n > 0 => {
                tracing::debug!(queued = n, "poll: reconciles queued");
                state.job_wake.notify_waiters();
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "poll: could not queue reconciles"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let base = Duration::from_secs(100);
        assert_eq!(jittered(base, 0.0), Duration::from_secs(80));
        assert_eq!(jittered(base, 1.0), Duration::from_secs(120));
        assert_eq!(jittered(base, 7.0), Duration::from_secs(120));
    }
}
