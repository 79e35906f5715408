//! Retention: finished jobs and handled webhook deliveries are forgotten
//! after `GRAFT_RETENTION_DAYS`, so the queue tables (and the delivery
//! payloads of up to 25 MiB each) do not grow for ever; so are repository
//! mirrors no sync has fetched for as long, and so are slash-command runs
//! whose job is over, and so is the text of GitLab notes graft last
//! verified long ago. The audit log is kept, and so is the last text of
//! each GitHub comment that addressed graft (a redelivered old comment must
//! still run nothing).

use std::time::Duration;

use tokio::sync::watch;

use crate::commands::intake::NOTE_MAX_AGE_DAYS;
use crate::git::mirror::MirrorCache;
use crate::periodic::{self, Periodic};
use crate::store::{Store, now_ms};

/// How often `graft serve` prunes.
pub const EVERY: Duration = Duration::from_secs(3600);

/// The moment before which rows may go, `None` when `days` is 0 (keep).
pub fn cutoff(now_ms: i64, days: u64) -> Option<i64> {
    let days = i64::try_from(days).ok().filter(|d| *d > 0)?;
    Some(now_ms.saturating_sub(days.saturating_mul(24 * 3600 * 1000)))
}

/// Prunes once; returns (jobs, deliveries) removed.
pub async fn prune(store: &Store, days: u64) -> crate::store::Result<(u64, u64)> {
    let Some(before) = cutoff(now_ms(), days) else {
        return Ok((0, 0));
    };
    Ok((
        store.prune_jobs(before).await?,
        store.prune_deliveries(before).await?,
    ))
}

/// Forgets finished slash-command runs older than `days`; returns how
/// many went.
pub async fn prune_commands(store: &Store, days: u64) -> crate::store::Result<u64> {
    match cutoff(now_ms(), days) {
        Some(before) => store.prune_command_runs(before).await,
        None => Ok(0),
    }
}

/// Forgets the text graft verified of GitLab notes it last saw more than
/// `days` ago (and at least [`NOTE_MAX_AGE_DAYS`]): such a note, not
/// remembered, runs no commands again (see `claim_note`). GitHub comments'
/// texts stay: they keep an old comment redelivered from running twice.
pub async fn prune_note_texts(store: &Store, days: u64) -> crate::store::Result<u64> {
    if days == 0 {
        return Ok(0);
    }
    match cutoff(now_ms(), days.max(NOTE_MAX_AGE_DAYS)) {
        Some(before) => store.prune_comment_texts("gitlab", before).await,
        None => Ok(0),
    }
}

/// Removes the mirrors unused for `days`; returns how many went.
pub async fn prune_mirrors(mirrors: &MirrorCache, days: u64) -> std::io::Result<usize> {
    let Some(before) = cutoff(now_ms(), days) else {
        return Ok(0);
    };
    let before =
        std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(before).unwrap_or_default());
    let mirrors = mirrors.clone();
    tokio::task::spawn_blocking(move || mirrors.prune_unused(before))
        .await
        .map_err(std::io::Error::other)?
}

/// The database pruning's name in `periodic_tasks`.
pub const TASK: &str = "retention";

/// Prunes the tables once per `every` across all replicas (each replica's
/// database rows are everybody's), and this replica's own mirrors at start
/// and then every `every` (they live on its disk), until `shutdown` turns
/// true; `replica` names this process. `graft serve` prunes hourly.
pub async fn run(
    store: Store,
    mirrors: MirrorCache,
    days: u64,
    every: Duration,
    replica: String,
    shutdown: watch::Receiver<bool>,
) {
    if days == 0 {
        return;
    }
    let task = Periodic {
        name: TASK,
        interval: every,
        holder: replica,
    };
    let tables = periodic::run(store.clone(), task, shutdown.clone(), || {
        prune_tables(&store, days)
    });
    tokio::join!(tables, prune_mirrors_until(mirrors, days, every, shutdown));
}

async fn prune_tables(store: &Store, days: u64) {
    match prune(store, days).await {
        Ok((0, 0)) => {}
        Ok((jobs, deliveries)) => {
            tracing::info!(
                jobs,
                deliveries,
                days,
                "retention: forgot old jobs and deliveries"
            )
        }
        Err(e) => tracing::warn!(error = %e, "retention: could not prune"),
    }
    match prune_commands(store, days).await {
        Ok(0) => {}
        Ok(runs) => tracing::info!(runs, days, "retention: forgot old command runs"),
        Err(e) => tracing::warn!(error = %e, "retention: could not prune command runs"),
    }
    match prune_note_texts(store, days).await {
        Ok(0) => {}
        Ok(notes) => tracing::info!(notes, "retention: forgot the texts of old GitLab notes"),
        Err(e) => tracing::warn!(error = %e, "retention: could not prune note texts"),
    }
}

async fn prune_mirrors_until(
    mirrors: MirrorCache,
    days: u64,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        match prune_mirrors(&mirrors, days).await {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(removed, days, "retention: removed mirrors no sync has used")
            }
            Err(e) => tracing::warn!(error = %e, "retention: could not prune mirrors"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cutoff;

    #[test]
    fn zero_days_keeps_everything() {
        assert_eq!(cutoff(1_000_000_000_000, 0), None);
        assert_eq!(
            cutoff(1_000_000_000_000, 30),
            Some(1_000_000_000_000 - 30 * 86_400_000)
        );
        // Absurdly long is as good as for ever, not an overflow.
        assert_eq!(cutoff(0, u64::MAX), None);
        assert!(cutoff(0, 1 << 40).is_some_and(|c| c < 0));
    }
}
