//! What a sync leaves behind: the project's state, the synced files, the
//! audit log and what the PR says, for every outcome (success, failure,
//! skipped, nothing to do).

use std::collections::BTreeMap;

use gix::ObjectId;

use crate::context::Context;
use crate::forge::{AutoMerge, ForgeError, PullRequest, RepoClient};
use crate::git::pipeline::Built;
use crate::git::read;
use crate::git::validate::passed;
use crate::ids::{PrNumber, ProjectId};
use crate::store::audit::NewEvent;
use crate::store::now_ms;
use crate::store::project_state::SyncSuccess;
use crate::store::projects::{Project, SyncStatus};

use super::errors::SyncError;
use super::plan;
use super::publish::{self, CommentContent};
use super::schedule::SyncRequest;

/// The open PR's status comment says a sync is under way (every state
/// change shows there). Best effort: the sync's outcome rewrites it.
pub(super) async fn show_syncing(ctx: &Context, project_id: ProjectId) {
    let Ok(project) = ctx.store.require_project(project_id).await else {
        return;
    };
    if project.pull_request_number.is_none() {
        return;
    }
    let shown = async {
        let client = publish::client_for(ctx, &project).await?;
        publish::update_comment(
            ctx,
            &client,
            &project,
            SyncStatus::Syncing,
            &CommentContent {
                error: None,
                ..CommentContent::from_project(&project)
            },
        )
        .await
    }
    .await;
    if let Err(e) = shown {
        tracing::debug!(project = project_id.get(), error = %e, "could not show the sync on the pull request");
    }
}

/// Why a sync graft queued on its own must not run now (it may have been
/// queued before a reviewer paused the project or its PR was closed).
pub fn skip_reason(project: &Project, request: &SyncRequest) -> Option<&'static str> {
    if !request.automatic {
        None
    } else if project.paused {
        Some("the project is paused; `/graft resume` restarts automatic syncs")
    } else if project.auto_sync_held {
        Some(
            "graft's pull request was closed unmerged; automatic syncs wait for new content or an explicit sync",
        )
    } else {
        None
    }
}

/// Marks the project failed, writes the audit event and tells the PR.
pub async fn record_failure(
    ctx: &Context,
    project_id: ProjectId,
    message: &str,
    job_id: Option<i64>,
) {
    let message = &crate::slash::help::with_prefix(message, &ctx.commands.prefix);
    let now = now_ms();
    if let Err(e) = ctx
        .store
        .record_sync_error(project_id, message, job_id, now)
        .await
    {
        tracing::error!(project = project_id.get(), error = %e, "could not record the sync failure");
    }
    let _ = ctx
        .store
        .record_event(
            &NewEvent {
                project_id: Some(project_id),
                actor: "graft",
                kind: "sync.failed",
                message,
                ..NewEvent::default()
            },
            now,
        )
        .await;
    publish::comment_failure(ctx, project_id, message).await;
}

/// What the PR says about auto-merge. A forge that refuses it (not enabled
/// for the repository, the PR not mergeable) is a note, not a failed sync;
/// credentials and transient errors still fail it.
pub(super) fn auto_merge_note(result: Result<AutoMerge, ForgeError>) -> Result<String, SyncError> {
    match result {
        Ok(AutoMerge::Enabled) => {
            Ok("Auto-merge is on: the forge merges once the checks pass.".into())
        }
        Ok(AutoMerge::Merged) => Ok("Auto-merge: merged right away (nothing was pending).".into()),
        Ok(AutoMerge::HeadMoved { head }) => Ok(format!(
            "Auto-merge was not turned on: the branch head is `{}`, not the commit graft \
             pushed; someone pushed after graft. graft only merges what it built: review \
             the new commits and merge by hand.",
            head.chars().take(12).collect::<String>()
        )),
        Err(ForgeError::Validation { message, .. }) => Ok(format!(
            "Auto-merge could not be turned on: {}. Merge by hand, or allow auto-merge \
             for the repository and comment `/graft sync`.",
            message.trim_start_matches("auto-merge refused: ")
        )),
        Err(other) => Err(other.into()),
    }
}

/// The note when others committed to graft's branch: their commits were
/// not built by graft, so graft asks nobody to merge them.
pub(super) fn shared_branch_auto_merge_note(branch: &str) -> String {
    format!(
        "Auto-merge is off for this pull request: others committed to `{branch}`, and graft \
         only merges what it built. Review their commits and merge by hand."
    )
}

/// The note when graft's branch moved to `head`, a commit graft did not
/// push, with no commit of anyone else's on it (reset to an older one).
pub(super) fn moved_head_auto_merge_note(branch: &str, head: ObjectId) -> String {
    format!(
        "Auto-merge is off for this pull request: the head of `{branch}` is `{}`, not the \
         commit graft pushed, and graft only merges what it built. Merge by hand, or \
         comment `/graft sync`.",
        short(&head)
    )
}

/// Auto-merge for graft's PR `pr` whose head graft just pushed:
/// asked only for graft's own commit on a branch nobody else committed to
/// (then one enabled earlier is turned off: GitHub keeps it through a
/// writer's push). Returns the note for the PR; a refusal is audited.
pub(super) async fn ask_to_merge(
    ctx: &Context,
    project: &Project,
    client: &RepoClient,
    pr: &PullRequest,
    head: ObjectId,
    shared: bool,
) -> Result<String, SyncError> {
    let withheld = Withheld {
        number: pr.number,
        url: Some(&pr.url),
        head,
        others_committed: true,
    };
    if shared {
        return withhold_auto_merge(ctx, project, client, &withheld).await;
    }
    let result = client.enable_auto_merge(pr.number, &head.to_string()).await;
    let moved = matches!(result, Ok(AutoMerge::HeadMoved { .. }));
    let note = auto_merge_note(result)?;
    if moved {
        audit_withheld(ctx, project, &withheld, &note).await?;
    }
    Ok(note)
}

/// Graft's PR whose head is not graft's push: what auto-merge is withheld
/// from, and why.
pub(super) struct Withheld<'a> {
    pub number: PrNumber,
    pub url: Option<&'a str>,
    pub head: ObjectId,
    /// Someone else's commits are on the branch (otherwise its head is
    /// only not graft's latest push).
    pub others_committed: bool,
}

/// Turns auto-merge off on a PR whose head graft did not build (the forge
/// would merge it once its checks pass: GitHub keeps auto-merge through a
/// writer's push), audits `auto_merge.withheld` and returns the PR's note.
/// A refusal (it was not on) leaves the note standing; a transient error
/// fails the job, which is retried.
pub(super) async fn withhold_auto_merge(
    ctx: &Context,
    project: &Project,
    client: &RepoClient,
    withheld: &Withheld<'_>,
) -> Result<String, SyncError> {
    if let Err(e) = client.disable_auto_merge(withheld.number).await
        && e.is_retryable()
    {
        return Err(e.into());
    }
    let note = if withheld.others_committed {
        shared_branch_auto_merge_note(&project.sync_branch)
    } else {
        moved_head_auto_merge_note(&project.sync_branch, withheld.head)
    };
    audit_withheld(ctx, project, withheld, &note).await?;
    Ok(note)
}

async fn audit_withheld(
    ctx: &Context,
    project: &Project,
    withheld: &Withheld<'_>,
    note: &str,
) -> Result<(), SyncError> {
    ctx.store
        .record_event(
            &NewEvent {
                project_id: Some(project.id),
                actor: "graft",
                kind: "auto_merge.withheld",
                message: note,
                commit_sha: Some(&withheld.head.to_string()),
                pull_request_url: withheld.url,
                ..NewEvent::default()
            },
            now_ms(),
        )
        .await?;
    Ok(())
}

/// graft's open PR when everything it proposed is on the target branch
/// (someone landed the same content another way): closed, with a comment,
/// and forgotten.
pub(super) async fn close_landed_pull_request(
    ctx: &Context,
    project: &Project,
    client: &RepoClient,
) -> Result<(), SyncError> {
    let Some(number) = project.pull_request_number else {
        return Ok(());
    };
    client
        .reply(
            number,
            &format!(
                "Everything this pull request proposed is on `{}` already; graft closes it.",
                project.branch
            ),
        )
        .await?;
    client.close_pull_request(number).await?;
    let now = now_ms();
    ctx.store.forget_pull_request(project.id, now).await?;
    ctx.store
        .record_event(
            &NewEvent {
                project_id: Some(project.id),
                actor: "graft",
                kind: "pull_request.closed",
                message: "graft closed its pull request: everything in it is on the target branch",
                pull_request_url: project.pull_request_url.as_deref(),
                ..NewEvent::default()
            },
            now,
        )
        .await?;
    Ok(())
}

/// Records a successful sync: state fields, synced files, audit event.
/// In PR mode deletions stay pending until the PR merges.
pub(super) async fn finish(
    ctx: &Context,
    project: &Project,
    built: &Built,
    files: &plan::FilePlan,
    landed_head: Option<ObjectId>,
    pull_request: Option<(PrNumber, String, ObjectId)>,
    landed: bool,
) -> Result<(), SyncError> {
    let now = now_ms();
    let store = &ctx.store;
    let blobs: BTreeMap<&str, String> = files
        .write
        .iter()
        .map(|f| (f.path.as_str(), read::blob_id(&f.content).to_string()))
        .collect();
    let mut synced: Vec<(String, Option<String>)> = blobs
        .iter()
        .map(|(p, b)| (p.to_string(), Some(b.clone())))
        .collect();
    if landed {
        synced.extend(files.delete.iter().map(|p| (p.clone(), None)));
    }
    store.mark_synced(project.id, &synced, now).await?;
    let (number, url, branch_sha) = match &pull_request {
        Some((n, u, h)) => (Some(*n), Some(u.clone()), Some(h.to_string())),
        None => (
            project.pull_request_number,
            project.pull_request_url.clone(),
            project.sync_branch_sha.clone(),
        ),
    };
    store
        .record_sync_success(
            project.id,
            &SyncSuccess {
                commit_sha: built.commit.map(|c| c.to_string()),
                target_head: landed_head.map(|h| h.to_string()),
                pull_request_number: number,
                pull_request_url: url.clone(),
                sync_branch_sha: branch_sha,
                findings: Some(serde_json::to_value(&built.findings).unwrap_or_default()),
            },
            now,
        )
        .await?;
    if !passed(&built.findings) {
        let error = super::errors::validation_failed(
            &built.findings,
            "the pull request shows the findings",
        );
        store
            .record_sync_error(project.id, &error, None, now)
            .await?;
        // A failure is never silent: the audit log says so too,
        // not only "pushed".
        store
            .record_event(
                &NewEvent {
                    project_id: Some(project.id),
                    actor: "graft",
                    kind: "sync.failed",
                    message: &error,
                    commit_sha: built.commit.map(|c| c.to_string()).as_deref(),
                    pull_request_url: pull_request.as_ref().map(|(_, u, _)| u.as_str()),
                    ..NewEvent::default()
                },
                now,
            )
            .await?;
    }
    let mut message = match (&built.commit, &pull_request) {
        (None, _) => "sync: nothing to change".to_string(),
        (Some(c), Some((n, u, _))) => format!(
            "sync: pushed {} to {} for PR #{n} ({u})",
            short(c),
            project.sync_branch
        ),
        (Some(c), None) => format!("sync: pushed {} to {}", short(c), project.branch),
    };
    // Never silent: files graft did not manage that this sync replaced.
    let replaced = plan::replaced(&built.overlay.changes);
    if built.commit.is_some() && !replaced.is_empty() {
        message.push_str(&format!(
            "; replaces {} unmanaged file(s): {}",
            replaced.len(),
            replaced.join(", ")
        ));
    }
    store
        .record_event(
            &NewEvent {
                project_id: Some(project.id),
                actor: "graft",
                kind: if built.commit.is_some() {
                    "sync.pushed"
                } else {
                    "sync.unchanged"
                },
                message: &message,
                commit_sha: built.commit.map(|c| c.to_string()).as_deref(),
                pull_request_url: url.as_deref(),
                details: Some(serde_json::json!({
                    "changes": built.overlay.changes,
                    "replaced_unmanaged": replaced,
                })),
            },
            now,
        )
        .await?;
    Ok(())
}

pub(super) fn short(id: &ObjectId) -> String {
    id.to_string().chars().take(12).collect()
}
