//! The safety net for missed webhooks (GitHub does not redeliver): once per
//! interval across all replicas (see [`crate::periodic`]), each project
//! gets a reconcile job. Reconcile first asks the forge for the branch head
//! and stops there when nothing moved, so a quiet poll costs one API call.

use std::time::Duration;

use tokio::sync::watch;

use crate::context::Context;
use crate::jobs::JobQueue;
use crate::periodic::{self, Periodic};
use crate::store::{Result, now_ms};

use super::schedule;

/// The poll's name in `periodic_tasks`.
pub const TASK: &str = "poll";

/// Queues a reconcile for every project (coalesced with queued ones).
pub async fn enqueue_all(jobs: &JobQueue) -> Result<usize> {
    let now = now_ms();
    let mut queued = 0;
    for project in jobs.store().list_projects().await? {
        if schedule::enqueue_reconcile(jobs, project.id, "poll", now)
            .await?
            .is_some()
        {
            queued += 1;
        }
    }
    Ok(queued)
}

/// Queues the reconciles whenever this replica (`replica` names it) wins
/// an interval's run, until `shutdown` turns true.
pub async fn run_poller(
    ctx: Context,
    interval: Duration,
    replica: String,
    shutdown: watch::Receiver<bool>,
) {
    let task = Periodic {
        name: TASK,
        interval,
        holder: replica,
    };
    periodic::run(ctx.store.clone(), task, shutdown, || async {
        match enqueue_all(&ctx.jobs).await {
            Ok(n) if n > 0 => tracing::debug!(queued = n, "poll: reconciles queued"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "poll: could not queue reconciles"),
        }
    })
    .await;
}
