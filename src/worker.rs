//! What graft's workers do with each kind of job.

use tracing::{Instrument, info, warn};

use crate::commands;
use crate::context::Context;
use crate::events::{
    self, ForgeEvent, InstallationAction, InstallationEvent, Parsed, Provider, PullRequestAction,
    PullRequestEvent, PushEvent,
};
use crate::jobs::job::{PR_CLOSED_JOB, RECONCILE_JOB};
use crate::jobs::{Job, JobError, JobHandler};
use crate::store::deliveries::DeliveryStatus;
use crate::store::jobs::JobRow;
use crate::store::projects::RepoKey;
use crate::store::{StoreError, now_ms};
use crate::sync::follow::{self, Follow};
use crate::sync::schedule::{self, SYNC_JOB, SyncRequest};
use crate::sync::{outcome, reconcile, run};

/// The kinds whose failure is the project's sync failure.
const PROJECT_JOBS: [&str; 3] = [SYNC_JOB, RECONCILE_JOB, PR_CLOSED_JOB];

pub struct GraftJobs {
    ctx: Context,
}

impl GraftJobs {
    pub fn new(ctx: Context) -> Self {
        GraftJobs { ctx }
    }
}

fn store_error(error: StoreError) -> JobError {
    JobError::retry(format!("database: {error}"))
}

/// The job a row holds; one that does not decode cannot run at all.
fn decode(row: &JobRow) -> Result<Job, JobError> {
    Job::decode(&row.kind, &row.payload)
        .map_err(|e| JobError::Fatal(format!("job {}: {e}", row.id)))
}

impl JobHandler for GraftJobs {
    async fn run(&self, row: &JobRow) -> Result<(), JobError> {
        let project = || {
            row.project_id
                .ok_or_else(|| JobError::Fatal(format!("job {} has no project", row.id)))
        };
        match decode(row)? {
            Job::Webhook { delivery } => self.process_delivery(delivery).await,
            Job::Sync(request) => run::run(&self.ctx, project()?, &request)
                .await
                .map_err(|e| e.into_job_error()),
            Job::Reconcile { .. } => reconcile::reconcile(&self.ctx, project()?)
                .await
                .map_err(|e| e.into_job_error()),
            Job::PullRequestClosed {
                number,
                merged,
                merge_commit_sha,
            } => reconcile::pull_request_closed(
                &self.ctx,
                project()?,
                number,
                merged,
                merge_commit_sha.as_deref(),
            )
            .await
            .map_err(|e| e.into_job_error()),
            Job::Command(command_job) => commands::execute::run(&self.ctx, row, command_job).await,
        }
    }

    fn merge_payloads(&self, kind: &str, queued: &str, superseded: &str) -> Option<String> {
        (kind == SYNC_JOB)
            .then(|| merge_sync_payloads(queued, superseded))
            .flatten()
    }

    async fn gave_up(&self, row: &JobRow, error: &str) {
        let job = match decode(row) {
            Ok(job) => job,
            // The payload is unreadable but the row still says whose work
            // failed: a project's job is recorded on the project so its
            // failure is not silent.
            Err(_) => {
                if PROJECT_JOBS.contains(&row.kind.as_str())
                    && let Some(project) = row.project_id
                {
                    outcome::record_failure(&self.ctx, project, error, Some(row.id)).await;
                } else {
                    warn!(job = row.id, kind = %row.kind, error, "a job that does not decode failed");
                }
                return;
            }
        };
        match job {
            Job::Command(command_job) => {
                commands::execute::gave_up(&self.ctx, row, command_job, error).await;
            }
            Job::Sync(_) | Job::Reconcile { .. } | Job::PullRequestClosed { .. } => {
                if let Some(project) = row.project_id {
                    outcome::record_failure(&self.ctx, project, error, Some(row.id)).await;
                }
            }
            Job::Webhook { delivery } => {
                if let Err(e) = self
                    .ctx
                    .store
                    .finish_delivery(delivery, DeliveryStatus::Failed, Some(error), now_ms())
                    .await
                {
                    warn!(delivery, error = %e, "could not mark the delivery failed");
                }
            }
        }
    }
}

impl GraftJobs {
    async fn process_delivery(&self, id: i64) -> Result<(), JobError> {
        let store = &self.ctx.store;
        let delivery = store
            .delivery(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| JobError::Fatal(format!("delivery {id} does not exist")))?;
        // The logs of this job carry the forge's delivery id, like the
        // intake's did.
        let span = tracing::info_span!(
            "delivery",
            provider = %delivery.provider,
            delivery_id = %delivery.delivery_id,
            event = %delivery.event,
        );
        async {
            let payload = delivery.payload.as_deref().unwrap_or_default();
            let provider = Provider::parse(&delivery.provider).ok_or_else(|| {
                JobError::Fatal(format!("unknown provider {}", delivery.provider))
            })?;
            let parsed = match provider {
                Provider::Github => events::github::parse(&delivery.event, payload),
                Provider::Gitlab => events::gitlab::parse(&delivery.event, payload),
            }
            .map_err(|e| JobError::Fatal(e.to_string()))?;
            if let Parsed::Event(event) = parsed {
                self.handle_event(provider, delivery.integration_id, &event)
                    .await?;
            }
            store
                .finish_delivery(id, DeliveryStatus::Processed, None, now_ms())
                .await
                .map_err(store_error)
        }
        .instrument(span)
        .await
    }

    /// `integration` is the GitLab integration the delivery authenticated
    /// as: its events only reach that integration's projects.
    async fn handle_event(
        &self,
        provider: Provider,
        integration: Option<i64>,
        event: &ForgeEvent,
    ) -> Result<(), JobError> {
        match event {
            ForgeEvent::Installation(installation) => self.track_installation(installation).await,
            ForgeEvent::Push(push) => self.on_push(provider, integration, push).await,
            ForgeEvent::PullRequest(pr) => self.on_pull_request(provider, integration, pr).await,
            ForgeEvent::Comment(comment) => {
                commands::intake::on_comment(&self.ctx, provider, integration, comment).await
            }
            other => {
                info!(event = other.kind(), "event recorded");
                Ok(())
            }
        }
    }

    /// A push to a project's target branch moves the head graft has seen:
    /// at once when it provably left the project's files alone, else
    /// through a reconcile (see `sync::follow`). A push to graft's own
    /// branch by someone else queues a reconcile too.
    async fn on_push(
        &self,
        provider: Provider,
        integration: Option<i64>,
        push: &PushEvent,
    ) -> Result<(), JobError> {
        let Some(branch) = &push.branch else {
            return Ok(());
        };
        let store = &self.ctx.store;
        let now = now_ms();
        let jobs = &self.ctx.jobs;
        let repo = RepoKey {
            provider: provider.as_str(),
            integration_id: integration,
            repo: &push.repo.path,
        };
        let on_target = store
            .projects_on_branch(&repo, branch)
            .await
            .map_err(store_error)?;
        for project in on_target {
            let reconcile = match follow::follow(push, &follow::ProjectHead::of(&project)) {
                Follow::Ignore => false,
                Follow::Reconcile => true,
                // Lost the compare-and-set: the reconcile settles it.
                Follow::Advance => !store
                    .advance_head(project.id, &push.before, &push.after, now)
                    .await
                    .map_err(store_error)?,
            };
            if reconcile {
                schedule::enqueue_reconcile(jobs, project.id, "push", now)
                    .await
                    .map_err(store_error)?;
            }
        }
        if let Some(project) = store
            .project_by_sync_branch(&repo, branch)
            .await
            .map_err(store_error)?
            && project.sync_branch_sha.as_deref() != Some(push.after.as_str())
            && !push.deleted
        {
            schedule::enqueue_reconcile(jobs, project.id, "push to sync branch", now)
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    async fn on_pull_request(
        &self,
        provider: Provider,
        integration: Option<i64>,
        pr: &PullRequestEvent,
    ) -> Result<(), JobError> {
        if !matches!(
            pr.action,
            PullRequestAction::Closed | PullRequestAction::Merged
        ) {
            return Ok(());
        }
        let store = &self.ctx.store;
        let Some(project) = store
            .project_by_sync_branch(
                &RepoKey {
                    provider: provider.as_str(),
                    integration_id: integration,
                    repo: &pr.repo.path,
                },
                &pr.head_branch,
            )
            .await
            .map_err(store_error)?
        else {
            return Ok(());
        };
        if project.pull_request_number != Some(pr.number) {
            // An older PR of graft's, one already settled, or someone
            // else's PR from a branch of the same name (a fork).
            return Ok(());
        }
        let job = Job::PullRequestClosed {
            number: pr.number,
            merged: pr.action == PullRequestAction::Merged,
            merge_commit_sha: pr.merge_commit_sha.clone(),
        };
        self.ctx
            .jobs
            .enqueue(&job, project.id, now_ms())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn track_installation(&self, event: &InstallationEvent) -> Result<(), JobError> {
        let store = &self.ctx.store;
        let now = now_ms();
        let id = event.installation_id;
        let tracked = async {
            match event.action {
                InstallationAction::Deleted => store.delete_installation(id).await,
                InstallationAction::Suspended | InstallationAction::Unsuspended => {
                    store.upsert_installation(id, &event.account, now).await?;
                    store
                        .set_installation_suspended(
                            id,
                            event.action == InstallationAction::Suspended,
                            now,
                        )
                        .await
                }
                InstallationAction::Created
                | InstallationAction::RepositoriesAdded
                | InstallationAction::RepositoriesRemoved => {
                    store.upsert_installation(id, &event.account, now).await?;
                    store
                        .add_installation_repositories(id, &event.repositories_added)
                        .await?;
                    store
                        .remove_installation_repositories(id, &event.repositories_removed)
                        .await
                }
            }
        };
        tracked.await.map_err(store_error)?;
        info!(installation = id, action = ?event.action, "installation tracked");
        Ok(())
    }
}

/// A retried sync meeting a queued one: the queued one carries both (its
/// actor, the wider scope, `--force` and `rebase` if either asked).
fn merge_sync_payloads(queued: &str, superseded: &str) -> Option<String> {
    let queued: SyncRequest = serde_json::from_str(queued).ok()?;
    let superseded: SyncRequest = serde_json::from_str(superseded).ok()?;
    serde_json::to_string(&schedule::merge_requests(&superseded, &queued)).ok()
}

#[cfg(test)]
mod tests {
    use super::merge_sync_payloads;

    #[test]
    fn a_superseded_sync_keeps_its_force() {
        let retried = r#"{"scope":"flagged","force":true,"rebase":false,"actor":"comment:a"}"#;
        let queued = r#"{"scope":"all","force":false,"rebase":false,"actor":"token:gen"}"#;
        let merged: serde_json::Value =
            serde_json::from_str(&merge_sync_payloads(queued, retried).unwrap()).unwrap();
        assert_eq!(
            merged,
            serde_json::json!({"scope":"all","force":true,"rebase":false,"actor":"token:gen","automatic":false})
        );
        assert_eq!(merge_sync_payloads("not json", retried), None);
    }
}
