//! When a change of files schedules a sync (`iac` projects with auto-sync:
//! the whole project; `configuration` projects: files flagged
//! `sync_on_change`), as a pure decision, and the reconcile job. A sync is
//! queued through `JobQueue::enqueue_sync`, which coalesces rapid changes
//! into one job.

use crate::ids::ProjectId;
use crate::store::files::ChangedPath;

use crate::jobs::{Job, JobQueue};
use crate::store::Result;
use crate::store::jobs::NewJob;
use crate::store::projects::{Kind, Project};

pub use crate::jobs::job::{RECONCILE_JOB, SYNC_JOB, Scope, SyncRequest, merge_requests};
pub use crate::jobs::queue::enqueue_sync_in;

/// Whether these changes schedule a sync on their own, and of what.
pub fn on_files_changed(project: &Project, changes: &[ChangedPath]) -> Option<Scope> {
    if changes.is_empty() || project.paused {
        return None;
    }
    match project.kind {
        Kind::Iac if project.auto_sync => Some(Scope::All),
        Kind::Iac => None,
        Kind::Configuration if changes.iter().any(|c| c.sync_on_change) => Some(Scope::Flagged),
        Kind::Configuration => None,
    }
}

/// A reconcile of one project (coalesced like syncs).
pub fn reconcile_job(project: ProjectId, reason: &str, now: i64) -> NewJob {
    reconcile(reason).row(Some(project), now)
}

fn reconcile(reason: &str) -> Job {
    Job::Reconcile {
        reason: reason.to_string(),
    }
}

/// Queues a reconcile of one project (coalesced like syncs).
pub async fn enqueue_reconcile(
    jobs: &JobQueue,
    project: ProjectId,
    reason: &str,
    now: i64,
) -> Result<Option<i64>> {
    jobs.enqueue(&reconcile(reason), project, now).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::files::Change;

    fn project(kind: Kind, auto_sync: bool) -> Project {
        Project {
            id: ProjectId(1),
            provider: crate::ids::Provider::Github,
            integration_id: None,
            repo: "o/r".into(),
            branch: "main".into(),
            base_path: "infra".into(),
            kind,
            mode: crate::store::projects::Mode::PullRequest,
            auto_sync,
            auto_merge: false,
            paused: false,
            slug: "infra".into(),
            sync_branch: "graft/infra".into(),
            sync_status: crate::store::projects::SyncStatus::Idle,
            sync_error: None,
            last_synced_commit_sha: None,
            last_pulled_at: None,
            pull_request_number: None,
            pull_request_url: None,
            auto_sync_held: false,
            sync_branch_shared: false,
            sync_branch_sha: None,
            status_comment_id: None,
            conflicts: None,
            last_failed_job_id: None,
            source: None,
            last_findings: None,
            last_changes: Vec::new(),
            status_before_pause: None,
            error_before_pause: None,
            commit_via: Default::default(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn change(flagged: bool) -> ChangedPath {
        ChangedPath {
            path: "a".into(),
            change: Change::Modified,
            sync_on_change: flagged,
        }
    }

    #[test]
    fn iac_syncs_everything_when_auto_sync_is_on() {
        assert_eq!(
            on_files_changed(&project(Kind::Iac, true), &[change(false)]),
            Some(Scope::All)
        );
        assert_eq!(
            on_files_changed(&project(Kind::Iac, false), &[change(true)]),
            None
        );
        assert_eq!(on_files_changed(&project(Kind::Iac, true), &[]), None);
    }

    #[test]
    fn configuration_syncs_only_flagged_changes() {
        let p = project(Kind::Configuration, true);
        assert_eq!(on_files_changed(&p, &[change(false)]), None);
        assert_eq!(
            on_files_changed(&p, &[change(false), change(true)]),
            Some(Scope::Flagged)
        );
    }

    #[test]
    fn paused_projects_schedule_nothing() {
        let mut p = project(Kind::Iac, true);
        p.paused = true;
        assert_eq!(on_files_changed(&p, &[change(true)]), None);
    }

    #[test]
    fn merged_requests_take_the_broader_scope() {
        let flagged = SyncRequest::automatic(Scope::Flagged, "a");
        let all = SyncRequest {
            force: true,
            ..SyncRequest::explicit("")
        };
        let merged = merge_requests(&flagged, &all);
        assert_eq!(merged.scope, Scope::All);
        assert!(merged.force);
        assert_eq!(merged.actor, "a");
        assert!(!merged.automatic, "someone asked for it");
        let both = merge_requests(&flagged, &SyncRequest::automatic(Scope::Flagged, "b"));
        assert!(both.automatic && both.scope == Scope::Flagged);
    }
}
