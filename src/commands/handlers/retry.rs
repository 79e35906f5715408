//! `/graft retry`: run the project's last failed job again.

use crate::jobs::Job;
use crate::store::projects::{Project, SyncStatus};
use crate::sync::errors::SyncError;

use super::super::reply::Outcome;
use super::Call;

/// What `retry` does for a project in a given state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Queue the job with this id again.
    Rerun(i64),
    /// The project failed, but not in a job (following the repository).
    NoFailedJob,
    /// The last job did not fail.
    NothingToRetry,
}

/// A pause does not hide a failure: the status from before it counts.
pub fn plan(project: &Project) -> Plan {
    match (project.unpaused_status(), project.last_failed_job_id) {
        (SyncStatus::Error, Some(failed)) => Plan::Rerun(failed),
        (SyncStatus::Error, None) => Plan::NoFailedJob,
        _ => Plan::NothingToRetry,
    }
}

/// The failed job as it runs again: a sync for whoever retries it (with
/// the flags it had), a reconcile queued for the retry, any other job as
/// it was.
pub fn again(job: Job, actor: &str) -> Job {
    match job {
        Job::Sync(mut request) => {
            request.actor = actor.to_string();
            Job::Sync(request)
        }
        Job::Reconcile { .. } => Job::Reconcile {
            reason: "retry".to_string(),
        },
        other => other,
    }
}

pub async fn run(call: &Call<'_>) -> Result<Outcome, SyncError> {
    let prefix = call.prefix;
    let failed = match plan(&call.project) {
        Plan::Rerun(failed) => failed,
        Plan::NoFailedJob => {
            return Ok(call.done(format!(
                "There is no failed job to re-run (the error came from following the \
                 repository). `{prefix} sync` starts a new sync."
            )));
        }
        Plan::NothingToRetry => {
            return Ok(call
                .done("Nothing to retry: the last job of this project did not fail.".to_string()));
        }
    };
    let ctx = call.ctx;
    let id = call.project_id();
    let Some((kind, payload)) = ctx.store.job_kind_and_payload(failed).await? else {
        return Ok(call.failed(format!(
            "The failed job is no longer recorded; `{prefix} sync` starts a new sync."
        )));
    };
    let Ok(job) = Job::decode(&kind, &payload) else {
        return Ok(call.failed(format!(
            "The failed job can no longer be read; `{prefix} sync` starts a new sync."
        )));
    };
    // The queue folds a sync into one already queued (keeping either's
    // flags) and a reconcile into a queued reconcile.
    ctx.jobs
        .enqueue(&again(job, call.actor), id, call.now)
        .await?;
    Ok(call.done(format!(
        "Re-queued the last failed job ({}). The status comment shows the result.",
        kind.replace('_', " ")
    )))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::project;
    use super::*;
    use crate::sync::schedule::SyncRequest;

    #[test]
    fn only_a_failed_job_is_rerun_even_while_paused() {
        let mut p = project();
        p.last_failed_job_id = Some(9);
        assert_eq!(plan(&p), Plan::NothingToRetry, "the last job succeeded");
        p.sync_status = SyncStatus::Error;
        assert_eq!(plan(&p), Plan::Rerun(9));
        p.sync_status = SyncStatus::Paused;
        p.status_before_pause = Some(SyncStatus::Error);
        assert_eq!(
            plan(&p),
            Plan::Rerun(9),
            "a pause does not hide the failure"
        );
        p.last_failed_job_id = None;
        assert_eq!(plan(&p), Plan::NoFailedJob);
    }

    #[test]
    fn a_sync_is_retried_for_whoever_asks_a_reconcile_for_the_retry_and_others_as_they_were() {
        let mut request = SyncRequest::explicit("token:gen");
        request.force = true;
        let expected = SyncRequest {
            actor: "comment:ann".into(),
            ..request.clone()
        };
        assert_eq!(
            again(Job::Sync(request), "comment:ann"),
            Job::Sync(expected),
            "the flags of the failed sync stay"
        );
        assert_eq!(
            again(
                Job::Reconcile {
                    reason: "push".into()
                },
                "ann"
            ),
            Job::Reconcile {
                reason: "retry".into()
            }
        );
        let closed = Job::PullRequestClosed {
            number: crate::ids::PrNumber(3),
            merged: true,
            merge_commit_sha: None,
        };
        assert_eq!(again(closed.clone(), "ann"), closed);
    }
}
