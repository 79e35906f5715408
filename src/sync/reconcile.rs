//! Following the repository (reconcile): when the target branch
//! moved, import upstream edits of managed files or flag conflicts; when
//! someone else pushed to graft's branch, import their edits and stop
//! rewriting it; when graft's PR closed, record what landed.

use gix::ObjectId;

use crate::context::Context;
use crate::forge::{ForgeError, PullRequestState};
use crate::git::read;
use crate::ids::{PrNumber, ProjectId};
use crate::store::audit::NewEvent;
use crate::store::files::FileState;
use crate::store::now_ms;
use crate::store::project_state::PullRequestEnd;

use super::errors::SyncError;
use super::publish::{self, CommentContent};
use super::schedule::{self, Scope, SyncRequest};
use super::upstream::{apply_upstream, upstream_actions};
use super::upstream::{fetch_for, fetch_target_listing};
use super::{outcome, ownership, remote};

fn parse(sha: Option<&str>) -> Option<ObjectId> {
    sha.and_then(|s| ObjectId::from_hex(s.as_bytes()).ok())
}

pub async fn reconcile(ctx: &Context, project_id: ProjectId) -> Result<(), SyncError> {
    let store = &ctx.store;
    let project = store.require_project(project_id).await?;
    let remote = remote::remote_for(ctx, &project).await?;
    let now = now_ms();
    // The PR graft recorded may have merged or closed without graft
    // hearing of it (a missed webhook, or that webhook still queued behind
    // this job): settle that first, rather than refreshing a dead PR.
    if let Some(number) = project.pull_request_number {
        // A PR/MR that is gone (GitLab lets maintainers delete one) is
        // closed unmerged as far as graft is concerned.
        let state_of = match remote.client.pull_request(number).await {
            Ok(pr) => pr.state,
            Err(ForgeError::NotFound { .. }) => PullRequestState::Closed,
            Err(other) => return Err(other.into()),
        };
        if state_of != PullRequestState::Open {
            let merged = state_of == PullRequestState::Merged;
            return settle_pull_request(ctx, project_id, number, merged, None).await;
        }
    }
    // Cheap look first: most polls find nothing new.
    let head = remote.client.branch_head(&project.branch).await?;
    let pr_open = project.pull_request_number.is_some();
    let branch_head = if pr_open {
        remote.client.branch_head(&project.sync_branch).await?
    } else {
        None
    };
    let target_moved = head.is_some() && head != project.last_synced_commit_sha;
    let branch_moved = pr_open && branch_head.is_some() && branch_head != project.sync_branch_sha;
    if !target_moved && !branch_moved {
        store.record_pull(project_id, None, now).await?;
        return Ok(());
    }
    let fetched = fetch_for(ctx, &project, &remote).await?;
    let target = fetched.head(&project.branch);
    let mut conflicts = project.conflicts.clone().unwrap_or_default();
    let last_seen = parse(project.last_synced_commit_sha.as_deref());
    // In a monorepo most pushes are elsewhere: the open PR is rebuilt only
    // when something below the base path changed.
    let subtree_moved = target_moved && {
        let base_path = project.base_path.clone();
        fetched
            .with_repo(move |repo| {
                Ok(read::subtree_id(repo, last_seen, &base_path)?
                    != read::subtree_id(repo, target, &base_path)?)
            })
            .await?
    };
    if target_moved {
        let actions = upstream_actions(ctx, &project, &fetched, last_seen, target).await?;
        conflicts.extend(apply_upstream(ctx, &project, &fetched, &actions, "target branch").await?);
    }
    store
        .record_pull(project_id, target.map(|t| t.to_string()).as_deref(), now)
        .await?;
    let mut shared = project.sync_branch_shared;
    let mut notes = Vec::new();
    if branch_moved && let (Some(head), Some(base)) = (fetched.head(&project.sync_branch), target) {
        fetched.deepen(&project.sync_branch, &project.branch).await;
        let others = ownership::others_committed(ctx, &project, &fetched, base, head).await?;
        if others {
            let since = parse(project.sync_branch_sha.as_deref()).or(target);
            let actions = upstream_actions(ctx, &project, &fetched, since, Some(head)).await?;
            conflicts.extend(
                apply_upstream(ctx, &project, &fetched, &actions, "pull request branch").await?,
            );
            store
                .set_sync_branch_state(project_id, Some(&head.to_string()), true)
                .await?;
            if !project.sync_branch_shared {
                store
                    .record_event(
                        &NewEvent {
                            project_id: Some(project_id),
                            actor: "graft",
                            kind: "sync_branch.shared",
                            message: &format!(
                                "someone else committed to {}; graft adds on top from now on",
                                project.sync_branch
                            ),
                            commit_sha: Some(&head.to_string()),
                            ..NewEvent::default()
                        },
                        now,
                    )
                    .await?;
            }
            shared = true;
        } else {
            // Moved back onto the target's history: nobody else's commit,
            // but not graft's push either. Seen, so that the next poll
            // does not withhold auto-merge again.
            store
                .set_sync_branch_state(project_id, Some(&head.to_string()), shared)
                .await?;
        }
        // The head is not graft's push, whatever its commits claim to be
        // by: an auto-merge graft turned on would merge it (GitHub keeps
        // auto-merge through a writer's push).
        if project.auto_merge
            && let Some(number) = project.pull_request_number
        {
            let withheld = outcome::Withheld {
                number,
                url: project.pull_request_url.as_deref(),
                head,
                others_committed: others,
            };
            notes.push(
                outcome::withhold_auto_merge(ctx, &project, &remote.client, &withheld).await?,
            );
        }
    }
    drop(fetched);
    conflicts.sort();
    conflicts.dedup();
    let project = store.require_project(project_id).await?;
    if !conflicts.is_empty() {
        store
            .set_conflicts(project_id, Some(&conflicts), now)
            .await?;
        let message = SyncError::Conflict(conflicts).describe();
        outcome::record_failure(ctx, project_id, &message, None).await;
        return Ok(());
    }
    if pr_open && (target_moved || branch_moved) {
        let held = project.paused || project.auto_sync_held;
        if target_moved && subtree_moved && !shared && !held {
            // Rebuild the PR on the new target head.
            ctx.jobs
                .enqueue_sync(
                    project_id,
                    &SyncRequest::automatic(Scope::All, "reconcile"),
                    now,
                )
                .await?;
        } else if branch_moved {
            // Someone else's commits on graft's branch: the comment says
            // the branch is shared now.
            publish::update_comment(
                ctx,
                &remote.client,
                &project,
                project.sync_status,
                &CommentContent {
                    notes,
                    ..CommentContent::from_project(&project)
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// A webhook says graft's PR `number` was merged (`merged`) or closed.
/// A webhook may be forged (a GitLab hook is as secret as its token, which
/// a Maintainer of any project carrying it can read), so the forge is
/// asked first: nothing changes unless it says the PR is no longer open and
/// comes from graft's branch, and what it says is recorded, not the hook.
pub async fn pull_request_closed(
    ctx: &Context,
    project_id: ProjectId,
    number: PrNumber,
    merged: bool,
    merge_commit: Option<&str>,
) -> Result<(), SyncError> {
    let project = ctx.store.require_project(project_id).await?;
    if project.pull_request_number != Some(number) {
        return Ok(());
    }
    let client = publish::client_for(ctx, &project).await?;
    let pr = match client.pull_request(number).await {
        Ok(pr) => Some(pr),
        // Deleted (GitLab lets maintainers): closed unmerged, as reconcile has it.
        Err(ForgeError::NotFound { .. }) => None,
        Err(other) => return Err(other.into()),
    };
    let (state_of, merge_commit_sha) = match &pr {
        Some(pr) if pr.head_branch != project.sync_branch => {
            tracing::warn!(
                project = project_id.get(),
                number = number.get(),
                "a webhook says graft's pull request ended, but the forge's is from another branch: nothing changed"
            );
            return Ok(());
        }
        Some(pr) => (pr.state, pr.merge_commit_sha.clone()),
        None => (PullRequestState::Closed, None),
    };
    if state_of == PullRequestState::Open {
        tracing::warn!(
            project = project_id.get(),
            number = number.get(),
            merged,
            "a webhook says graft's pull request ended, but the forge says it is open: nothing changed"
        );
        return Ok(());
    }
    let really_merged = state_of == PullRequestState::Merged;
    if really_merged != merged || (merged && merge_commit != merge_commit_sha.as_deref()) {
        tracing::warn!(
            project = project_id.get(),
            number = number.get(),
            merged = really_merged,
            "the webhook about graft's pull request differs from the forge: the forge's word is recorded"
        );
    }
    settle_pull_request(
        ctx,
        project_id,
        number,
        really_merged,
        merge_commit_sha.as_deref(),
    )
    .await
}

/// Graft's PR `number` was merged or closed, as the forge says. Anything
/// else (an older PR of graft's, one already settled) changes nothing.
async fn settle_pull_request(
    ctx: &Context,
    project_id: ProjectId,
    number: PrNumber,
    merged: bool,
    merge_commit: Option<&str>,
) -> Result<(), SyncError> {
    let store = &ctx.store;
    let project = store.require_project(project_id).await?;
    if project.pull_request_number != Some(number) {
        return Ok(());
    }
    let now = now_ms();
    let url = project.pull_request_url.clone();
    if merged {
        // What landed (deletions included) is settled by the reconcile
        // queued below, against the merge commit: a deletion made after
        // graft's last push did not land and stays pending.
        // The merge moved the target: a reconcile brings the recorded head
        // up to date.
        let reconcile = schedule::reconcile_job(project_id, "pull request merged", now);
        let event = NewEvent {
            project_id: Some(project_id),
            actor: "forge",
            kind: "pull_request.merged",
            message: "graft's pull request was merged",
            commit_sha: merge_commit,
            pull_request_url: url.as_deref(),
            ..NewEvent::default()
        };
        let end = PullRequestEnd::Merged {
            reconcile: &reconcile,
        };
        let recorded = store.record_pull_request_end(project_id, end, &event, now);
        ctx.jobs.submit(recorded, |_| true).await?;
        return Ok(());
    }
    // Closed unmerged: what graft pushed did not land. Files that differ
    // from the target branch are pending again.
    let (fetched, _target, listing) = fetch_target_listing(ctx, &project).await?;
    drop(fetched);
    let rows = store.files(project_id).await?;
    let in_repository: Vec<(String, Option<String>)> = rows
        .iter()
        .map(|r| {
            (
                r.path.clone(),
                listing.get(&r.path).map(|f| f.blob.to_string()),
            )
        })
        .collect();
    let unlanded = rows
        .iter()
        .zip(&in_repository)
        .filter(|(r, (_, blob))| {
            r.state == FileState::Synced && blob.as_deref() != Some(r.blob_sha.as_str())
        })
        .count();
    store
        .record_pull_request_end(
            project_id,
            PullRequestEnd::Closed {
                in_repository: &in_repository,
            },
            &NewEvent {
                project_id: Some(project_id),
                actor: "forge",
                kind: "pull_request.closed",
                message: &format!(
                    "graft's pull request was closed without merging; {unlanded} file(s) stay pending and automatic syncs wait for new content or an explicit sync"
                ),
                pull_request_url: url.as_deref(),
                ..NewEvent::default()
            },
            now,
        )
        .await?;
    Ok(())
}
