//! The sync job: fetch → bring upstream edits in (or stop on a conflict) →
//! overlay onto the right head → validate → commit → push → open/update
//! the PR/MR → report. One job per project at a time (the queue sees to
//! it); every outcome lands in the project's state and the audit log.

use std::collections::BTreeMap;

use gix::ObjectId;

use crate::context::Context;
use crate::git::GitError;
use crate::git::pipeline::{self, BuildSpec, Fetched};
use crate::git::push::{PushMode, PushRequest, advertise, push};
use crate::git::read::{self, TreeFile};
use crate::git::validate::passed;
use crate::ids::ProjectId;
use crate::store::audit::NewEvent;
use crate::store::commit_via::CommitVia;
use crate::store::now_ms;
use crate::store::projects::{Mode, Project, SyncStatus};

use super::errors::SyncError;
use super::outcome::{ask_to_merge, close_landed_pull_request, finish, show_syncing, skip_reason};
use super::ownership;
use super::plan;
use super::publish::{self, CommentContent};
use super::remote::{Remote, remote_for};
use super::schedule::SyncRequest;
use super::upstream::{apply_upstream, fetch_for, upstream_actions};
use super::write;

/// Fetch-overlay-push rounds when the remote moves under us.
const ATTEMPTS: usize = 3;
const PUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// The advertisement read ahead is a nicety: past this the push reads its own.
const ADVERTISE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The sync job's entry point. A failure is recorded on the project once,
/// by the worker when it gives up (at once for a fatal error, after the
/// retries for a transient one): see `GraftJobs::gave_up`.
pub async fn run(
    ctx: &Context,
    project_id: ProjectId,
    request: &SyncRequest,
) -> Result<(), SyncError> {
    let store = &ctx.store;
    let project = store.require_project(project_id).await?;
    if let Some(why) = skip_reason(&project, request) {
        store
            .record_event(
                &NewEvent {
                    project_id: Some(project_id),
                    actor: "graft",
                    kind: "sync.skipped",
                    message: &format!("automatic sync skipped: {why}"),
                    ..NewEvent::default()
                },
                now_ms(),
            )
            .await?;
        return Ok(());
    }
    store
        .set_sync_status(project_id, SyncStatus::Syncing, None, now_ms())
        .await?;
    sync(ctx, &project, request).await
}

async fn sync(ctx: &Context, project: &Project, request: &SyncRequest) -> Result<(), SyncError> {
    // "Syncing" goes on the PR while the repository is fetched, not before:
    // the comment is done before anything below publishes.
    // Boxed: both halves at once would make the job's future too big for
    // a worker thread's stack.
    let (_, first) = tokio::join!(
        Box::pin(show_syncing(ctx, project.id)),
        Box::pin(async {
            let remote = pipeline::phase("forge_setup", remote_for(ctx, project)).await?;
            // The push's ref advertisement is read beside the fetch, so the
            // push starts with its pack (API commits push nothing).
            let early_push = async {
                match project.commit_via {
                    CommitVia::Git => advertise(&remote.url, &remote.auth, ADVERTISE_TIMEOUT).await,
                    CommitVia::Api => None,
                }
            };
            let (fetched, advertised) = tokio::join!(fetch_for(ctx, project, &remote), early_push);
            Ok::<_, SyncError>((remote, fetched?.with_push_advertisement(advertised)))
        })
    );
    let (remote, fetched) = first?;
    let mut next = Some(fetched);
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let fetched = match next.take() {
            Some(fetched) => fetched,
            None => fetch_for(ctx, project, &remote).await?,
        };
        // Re-read: imports and concurrent puts may have changed things.
        let project = ctx.store.require_project(project.id).await?;
        match Box::pin(attempt(ctx, &project, request, &remote, &fetched)).await {
            Err(SyncError::Git(GitError::NonFastForward(message))) => {
                tracing::info!(
                    project = project.id.get(),
                    "remote moved during the sync; fetching again"
                );
                last_error = Some(GitError::NonFastForward(message));
            }
            other => return other,
        }
    }
    Err(SyncError::Git(last_error.unwrap_or_else(|| {
        GitError::Other("sync did not converge".into())
    })))
}

async fn attempt(
    ctx: &Context,
    project: &Project,
    request: &SyncRequest,
    remote: &Remote,
    fetched: &Fetched,
) -> Result<(), SyncError> {
    let target = fetched.head(&project.branch);
    catch_up_with_target(ctx, project, request, fetched, target).await?;
    match project.mode {
        Mode::Direct => direct(ctx, project, request, remote, fetched, target).await,
        Mode::PullRequest => {
            via_pull_request(ctx, project, request, remote, fetched, target, Vec::new()).await
        }
    }
}

/// The target branch moved since graft last looked: take upstream edits of
/// files graft has nothing pending for; stop on files changed on both
/// sides unless the reviewer forced graft's version.
async fn catch_up_with_target(
    ctx: &Context,
    project: &Project,
    request: &SyncRequest,
    fetched: &Fetched,
    target: Option<ObjectId>,
) -> Result<(), SyncError> {
    let since = project
        .last_synced_commit_sha
        .as_deref()
        .and_then(|s| ObjectId::from_hex(s.as_bytes()).ok());
    let mut conflicts = project.conflicts.clone().unwrap_or_default();
    if since.is_some() && since != target {
        let actions = upstream_actions(ctx, project, fetched, since, target).await?;
        conflicts.extend(apply_upstream(ctx, project, fetched, &actions, "upstream").await?);
    }
    conflicts.sort();
    conflicts.dedup();
    if !conflicts.is_empty() && !request.force {
        ctx.store
            .set_conflicts(project.id, Some(&conflicts), now_ms())
            .await?;
        return Err(SyncError::Conflict(conflicts));
    }
    Ok(())
}

fn spec(
    ctx: &Context,
    project: &Project,
    parent: Option<ObjectId>,
    files: plan::FilePlan,
    note: Option<String>,
) -> BuildSpec {
    BuildSpec {
        parent,
        base_path: project.base_path.clone(),
        files: files.write,
        deletions: files.delete,
        previously_managed: files.managed,
        identity: ctx.git.identity.clone(),
        project: format!(
            "{}:{}",
            project.repo,
            if project.base_path.is_empty() {
                "/"
            } else {
                &project.base_path
            }
        ),
        source: project.source.clone(),
        note,
        check: ctx.git.check.clone(),
    }
}

async fn planned_files(
    ctx: &Context,
    project: &Project,
    request: &SyncRequest,
) -> Result<plan::FilePlan, SyncError> {
    let rows = ctx.store.files(project.id).await?;
    Ok(plan::files_for(&rows, request.scope))
}

/// The target's files under the base path: what a sync may replace.
async fn target_listing(
    fetched: &Fetched,
    project: &Project,
    target: Option<ObjectId>,
) -> Result<BTreeMap<String, TreeFile>, SyncError> {
    let base_path = project.base_path.clone();
    Ok(fetched
        .with_repo(move |repo| {
            read::list_subtree(repo, read::commit_tree(repo, target)?, &base_path)
        })
        .await?)
}

pub(super) async fn push_to(
    remote: &Remote,
    fetched: &Fetched,
    commit: ObjectId,
    branch: &str,
    mode: PushMode,
) -> Result<(), GitError> {
    pipeline::phase(
        "push",
        push(PushRequest {
            mirror: &fetched.mirror.path,
            url: &remote.url,
            auth: &remote.auth,
            commit,
            branch,
            mode,
            timeout: PUSH_TIMEOUT,
            advertised: fetched.take_push_advertisement(),
        }),
    )
    .await
}

/// Direct mode: fast-forward the target branch, unless validation fails;
/// a protected branch falls back to a PR for this sync.
async fn direct(
    ctx: &Context,
    project: &Project,
    request: &SyncRequest,
    remote: &Remote,
    fetched: &Fetched,
    target: Option<ObjectId>,
) -> Result<(), SyncError> {
    let files = planned_files(ctx, project, request).await?;
    let mut built = pipeline::phase(
        "build",
        pipeline::build(fetched, spec(ctx, project, target, files.clone(), None)),
    )
    .await?;
    let listing = target_listing(fetched, project, target).await?;
    plan::mark_replaced(&mut built.overlay.changes, &listing, &files);
    if !passed(&built.findings) {
        let findings = serde_json::to_value(&built.findings).unwrap_or_default();
        ctx.store.set_findings(project.id, &findings).await?;
        return Err(SyncError::Validation(built.findings));
    }
    if built.commit.is_none() {
        return finish(ctx, project, &built, &files, target, None, true).await;
    }
    let branch = &project.branch;
    match write::write(
        ctx,
        project,
        remote,
        fetched,
        &built,
        &files,
        (branch, PushMode::FastForward),
    )
    .await
    {
        Ok(written) => {
            // The audit log and the state name the commit on the forge.
            built.commit = Some(written.head);
            finish(ctx, project, &built, &files, Some(written.head), None, true).await?;
            if let Some(note) = written.note {
                tracing::info!(project = project.id.get(), "{note}");
            }
            Ok(())
        }
        Err(SyncError::Git(GitError::ProtectedBranch(message))) => {
            let note = format!(
                "Direct push to `{}` was refused by branch protection ({}); graft opened a pull request for this sync instead.",
                project.branch,
                message.lines().next().unwrap_or_default()
            );
            ctx.store
                .record_event(
                    &NewEvent {
                        project_id: Some(project.id),
                        actor: "graft",
                        kind: "sync.fallback_to_pull_request",
                        message: &note,
                        ..NewEvent::default()
                    },
                    now_ms(),
                )
                .await?;
            via_pull_request(ctx, project, request, remote, fetched, target, vec![note]).await
        }
        Err(other) => Err(other),
    }
}

/// PR mode (and the direct-mode fallback): push the sync branch, open or
/// update the PR, report the check and the status comment.
async fn via_pull_request(
    ctx: &Context,
    project: &Project,
    request: &SyncRequest,
    remote: &Remote,
    fetched: &Fetched,
    target: Option<ObjectId>,
    mut notes: Vec<String>,
) -> Result<(), SyncError> {
    let branch_head = fetched.head(&project.sync_branch);
    let ours = branch_head.map(|h| h.to_string()) == project.sync_branch_sha;
    let others_committed = match (branch_head, target) {
        (Some(head), Some(target)) if !ours => {
            // The mirror has the branch's head only: who committed below it
            // is read from its whole part that is not on the target.
            fetched.deepen(&project.sync_branch, &project.branch).await;
            // Not graft's push: anyone's commit past it makes the branch
            // shared, whatever author and committer it names.
            ownership::others_committed(ctx, project, fetched, target, head).await?
        }
        _ => project.sync_branch_shared && branch_head.is_some(),
    };
    // Even a rebase imports what others committed first (also commits that
    // arrived after the `/graft rebase` was read): it drops commits, never
    // their content.
    if others_committed {
        // Take the human's edits of managed files before adding on top.
        let since = project
            .sync_branch_sha
            .as_deref()
            .and_then(|s| ObjectId::from_hex(s.as_bytes()).ok())
            .or(target);
        let actions = upstream_actions(ctx, project, fetched, since, branch_head).await?;
        let conflicts =
            apply_upstream(ctx, project, fetched, &actions, "pull request branch").await?;
        if !conflicts.is_empty() && !request.force {
            ctx.store
                .set_conflicts(project.id, Some(&conflicts), now_ms())
                .await?;
            return Err(SyncError::Conflict(conflicts));
        }
    }
    let shared = others_committed && !request.rebase;
    if request.rebase && others_committed {
        notes.push(format!(
            "`/graft rebase`: the branch was recreated from `{}`; commits by others were dropped after their edits of managed files were imported.",
            project.branch
        ));
    }
    let files = planned_files(ctx, project, request).await?;
    let (parent, mode) = if shared {
        (branch_head, PushMode::FastForward)
    } else {
        (
            target,
            PushMode::ForceWithLease {
                expected: branch_head,
            },
        )
    };
    let mut built = pipeline::phase(
        "build",
        pipeline::build(fetched, spec(ctx, project, parent, files.clone(), None)),
    )
    .await?;
    let listing = target_listing(fetched, project, target).await?;
    plan::mark_replaced(&mut built.overlay.changes, &listing, &files);
    // The commit graft built locally: the diff below reads its tree (an
    // API commit has the same tree, but the mirror does not hold it).
    let built_locally = built.commit;
    let head = match built.commit {
        Some(_) => {
            let branch = &project.sync_branch;
            let written = write::write(
                ctx,
                project,
                remote,
                fetched,
                &built,
                &files,
                (branch, mode),
            )
            .await?;
            let commit = written.head;
            // Recorded at once: what graft pushed is how it tells its own
            // commits from others' (a failure below must not make its own
            // push look like someone else's to the next job).
            ctx.store
                .set_sync_branch_state(project.id, Some(&commit.to_string()), shared)
                .await?;
            notes.extend(written.note);
            built.commit = Some(commit);
            Some(commit)
        }
        None if parent == target && !shared => {
            // Everything is on the target branch already: no PR needed,
            // and an open one of graft's only proposes what is there.
            close_landed_pull_request(ctx, project, &remote.client).await?;
            let project = ctx.store.require_project(project.id).await?;
            // What the database holds is the target: deletions included.
            return finish(ctx, &project, &built, &files, target, None, true).await;
        }
        None => branch_head,
    };
    let Some(head) = head else {
        return finish(ctx, project, &built, &files, target, None, false).await;
    };
    let client = &remote.client;
    let mut changes = {
        let base = target;
        let base_path = project.base_path.clone();
        let tree_of = built_locally.unwrap_or(head);
        fetched
            .with_repo(move |repo| read::diff_commits(repo, base, Some(tree_of), &base_path))
            .await?
    };
    plan::mark_replaced(&mut changes, &listing, &files);
    let pr = pipeline::phase(
        "publish",
        publish::open_or_update(client, project, &changes, &ctx.commands.prefix),
    )
    .await?;
    // Recorded at once: a failure below must not leave the PR unknown
    // (the failure comment goes on it, the next sync updates it).
    ctx.store
        .record_pull_request_open(
            project.id,
            pr.number,
            &pr.url,
            &changes,
            &head.to_string(),
            shared,
            now_ms(),
        )
        .await?;
    // On a shared branch an auto-merge left on would merge others' commits
    // as soon as this check passes: it goes off first.
    if project.auto_merge && shared {
        notes.push(ask_to_merge(ctx, project, client, &pr, head, shared).await?);
    }
    publish::report_check(client, &head.to_string(), &built.findings).await?;
    if project.auto_merge && !shared && passed(&built.findings) {
        notes.push(ask_to_merge(ctx, project, client, &pr, head, shared).await?);
    }
    finish(
        ctx,
        project,
        &built,
        &files,
        target,
        Some((pr.number, pr.url.clone(), head)),
        false,
    )
    .await?;
    let project = ctx.store.require_project(project.id).await?;
    let status = if passed(&built.findings) {
        SyncStatus::Success
    } else {
        SyncStatus::Error
    };
    publish::update_comment(
        ctx,
        client,
        &project,
        status,
        &CommentContent {
            commit: Some(head.to_string()),
            changes,
            findings: Some(built.findings.clone()),
            error: project.sync_error.clone(),
            notes,
        },
    )
    .await?;
    Ok(())
}
