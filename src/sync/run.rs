//! The sync job: fetch → bring upstream edits in (or stop on a conflict) →
//! overlay onto the right head → validate → commit → push → open/update
//! the PR/MR → report. One job per project at a time (the queue sees to
//! it); every outcome lands in the project's state and the audit log.

use std::collections::BTreeMap;

use gix::ObjectId;

use crate::app::AppState;
use crate::forge::{AutoMerge, ForgeError, RepoClient};
use crate::git::pipeline::{self, BuildSpec, Built, Fetched};
use crate::git::push::{PushMode, PushRequest, push};
use crate::git::read;
use crate::git::validate::passed;
use crate::git::{GitAuth, GitError};
use crate::store::audit::NewEvent;
use crate::store::now_ms;
use crate::store::projects::{Mode, Project, SyncStatus, SyncSuccess};

use super::errors::SyncError;
use super::plan;
use super::publish::{self, CommentContent};
use super::schedule::SyncRequest;
use super::upstream::{apply_upstream, upstream_actions};

/// Fetch-overlay-push rounds when the remote moves under us.
const ATTEMPTS: usize = 3;
const PUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Everything a sync needs from the forge for git.
pub struct Remote {
    pub client: RepoClient,
    pub url: String,
    pub auth: GitAuth,
    pub key: String,
}

pub async fn remote_for(state: &AppState, project: &Project) -> Result<Remote, SyncError> {
    let client = publish::client_for(state, project).await?;
    let info = client.repo_info().await?;
    let credentials = client.git_credentials().await?;
    Ok(Remote {
        key: mirror_key(&project.provider, &info.clone_url, &project.repo),
        url: info.clone_url,
        auth: GitAuth::new(&credentials.username, credentials.token.clone()),
        client,
    })
}

/// One mirror per repository *of a host*: `group/app` on two GitLab
/// instances are two repositories and must not share refs.
fn mirror_key(provider: &str, clone_url: &str, repo: &str) -> String {
    let host = reqwest::Url::parse(clone_url)
        .ok()
        .and_then(|url| {
            let host = url.host_str()?.to_ascii_lowercase();
            Some(match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        })
        .unwrap_or_default();
    format!("{provider}/{host}/{}", repo.to_ascii_lowercase())
}

/// The sync job's entry point. A failure is recorded on the project once,
/// by the worker when it gives up (at once for a fatal error, after the
/// retries for a transient one): see `GraftJobs::gave_up`.
pub async fn run(
    state: &AppState,
    project_id: i64,
    request: &SyncRequest,
) -> Result<(), SyncError> {
    let store = &state.store;
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
    show_syncing(state, project_id).await;
    sync(state, &project, request).await
}

/// The open PR's status comment says a sync is under way (every state
/// change shows there). Best effort: the sync's outcome rewrites it.
async fn show_syncing(state: &AppState, project_id: i64) {
    let Ok(project) = state.store.require_project(project_id).await else {
        return;
    };
    if project.pull_request_number.is_none() {
        return;
    }
    let shown = async {
        let client = publish::client_for(state, &project).await?;
        publish::update_comment(
            state,
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
        tracing::debug!(project = project_id, error = %e, "could not show the sync on the pull request");
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
pub async fn record_failure(state: &AppState, project_id: i64, message: &str, job_id: Option<i64>) {
    let message = &crate::commands::help::with_prefix(message, &state.commands.prefix);
    let now = now_ms();
    if let Err(e) = state
        .store
        .record_sync_error(project_id, message, job_id, now)
        .await
    {
        tracing::error!(project = project_id, error = %e, "could not record the sync failure");
    }
    let _ = state
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
    publish::comment_failure(state, project_id, message).await;
}

async fn sync(state: &AppState, project: &Project, request: &SyncRequest) -> Result<(), SyncError> {
    let remote = remote_for(state, project).await?;
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let fetched =
            pipeline::fetch(&state.mirrors, &remote.key, &remote.url, &remote.auth).await?;
        // Re-read: imports and concurrent puts may have changed things.
        let project = state.store.require_project(project.id).await?;
        match attempt(state, &project, request, &remote, &fetched).await {
            Err(SyncError::Git(GitError::NonFastForward(message))) => {
                tracing::info!(
                    project = project.id,
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
    state: &AppState,
    project: &Project,
    request: &SyncRequest,
    remote: &Remote,
    fetched: &Fetched,
) -> Result<(), SyncError> {
    let target = fetched.head(&project.branch);
    catch_up_with_target(state, project, request, fetched, target).await?;
    match project.mode {
        Mode::Direct => direct(state, project, request, remote, fetched, target).await,
        Mode::PullRequest => {
            via_pull_request(state, project, request, remote, fetched, target, Vec::new()).await
        }
    }
}

/// The target branch moved since graft last looked: take upstream edits of
/// files graft has nothing pending for; stop on files changed on both
/// sides unless the reviewer forced graft's version.
async fn catch_up_with_target(
    state: &AppState,
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
        let actions = upstream_actions(state, project, fetched, since, target).await?;
        conflicts.extend(apply_upstream(state, project, fetched, &actions, "upstream").await?);
    }
    conflicts.sort();
    conflicts.dedup();
    if !conflicts.is_empty() && !request.force {
        state
            .store
            .set_conflicts(project.id, Some(&conflicts), now_ms())
            .await?;
        return Err(SyncError::Conflict(conflicts));
    }
    Ok(())
}

fn spec(
    state: &AppState,
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
        identity: state.git.identity.clone(),
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
        check: state.git.check.clone(),
    }
}

async fn planned_files(
    state: &AppState,
    project: &Project,
    request: &SyncRequest,
) -> Result<plan::FilePlan, SyncError> {
    let rows = state.store.files(project.id).await?;
    Ok(plan::files_for(&rows, request.scope))
}

async fn push_to(
    remote: &Remote,
    fetched: &Fetched,
    commit: ObjectId,
    branch: &str,
    mode: PushMode,
) -> Result<(), GitError> {
    push(PushRequest {
        mirror: &fetched.mirror.path,
        url: &remote.url,
        auth: &remote.auth,
        commit,
        branch,
        mode,
        timeout: PUSH_TIMEOUT,
    })
    .await
}

/// Direct mode: fast-forward the target branch, unless validation fails;
/// a protected branch falls back to a PR for this sync.
async fn direct(
    state: &AppState,
    project: &Project,
    request: &SyncRequest,
    remote: &Remote,
    fetched: &Fetched,
    target: Option<ObjectId>,
) -> Result<(), SyncError> {
    let files = planned_files(state, project, request).await?;
    let built = pipeline::build(fetched, spec(state, project, target, files.clone(), None)).await?;
    if !passed(&built.findings) {
        let findings = serde_json::to_value(&built.findings).unwrap_or_default();
        state.store.set_findings(project.id, &findings).await?;
        return Err(SyncError::Validation(built.findings));
    }
    let Some(commit) = built.commit else {
        return finish(state, project, &built, &files, target, None, true).await;
    };
    match push_to(
        remote,
        fetched,
        commit,
        &project.branch,
        PushMode::FastForward,
    )
    .await
    {
        Ok(()) => finish(state, project, &built, &files, Some(commit), None, true).await,
        Err(GitError::ProtectedBranch(message)) => {
            let note = format!(
                "Direct push to `{}` was refused by branch protection ({}); graft opened a pull request for this sync instead.",
                project.branch,
                message.lines().next().unwrap_or_default()
            );
            state
                .store
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
            via_pull_request(state, project, request, remote, fetched, target, vec![note]).await
        }
        Err(other) => Err(other.into()),
    }
}

/// PR mode (and the direct-mode fallback): push the sync branch, open or
/// update the PR, report the check and the status comment.
async fn via_pull_request(
    state: &AppState,
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
            let commits = fetched
                .with_repo(move |repo| read::commits_between(repo, target, head))
                .await?;
            let emails: Vec<(String, String)> =
                commits.into_iter().map(|(_, a, c)| (a, c)).collect();
            plan::branch_is_shared(&emails, &state.git.identity.email)
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
        let actions = upstream_actions(state, project, fetched, since, branch_head).await?;
        let conflicts =
            apply_upstream(state, project, fetched, &actions, "pull request branch").await?;
        if !conflicts.is_empty() && !request.force {
            state
                .store
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
    let files = planned_files(state, project, request).await?;
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
    let built = pipeline::build(fetched, spec(state, project, parent, files.clone(), None)).await?;
    let head = match built.commit {
        Some(commit) => {
            push_to(remote, fetched, commit, &project.sync_branch, mode).await?;
            Some(commit)
        }
        None if parent == target && !shared => {
            // Everything is on the target branch already: no PR needed,
            // and an open one of graft's only proposes what is there.
            close_landed_pull_request(state, project, &remote.client).await?;
            let project = state.store.require_project(project.id).await?;
            return finish(state, &project, &built, &files, target, None, false).await;
        }
        None => branch_head,
    };
    let Some(head) = head else {
        return finish(state, project, &built, &files, target, None, false).await;
    };
    let client = &remote.client;
    let changes = {
        let base = target;
        let base_path = project.base_path.clone();
        fetched
            .with_repo(move |repo| read::diff_commits(repo, base, Some(head), &base_path))
            .await?
    };
    let pr = publish::open_or_update(client, project, &changes, &state.commands.prefix).await?;
    state.store.set_last_changes(project.id, &changes).await?;
    // Recorded at once: a failure below must not leave the PR unknown
    // (the failure comment goes on it, the next sync updates it).
    state
        .store
        .set_pull_request(project.id, Some(pr.number), Some(&pr.url), now_ms())
        .await?;
    state
        .store
        .set_sync_branch_state(project.id, Some(&head.to_string()), shared)
        .await?;
    publish::report_check(client, &head.to_string(), &built.findings).await?;
    if project.auto_merge && passed(&built.findings) {
        notes.push(auto_merge_note(client.enable_auto_merge(pr.number).await)?);
    }
    finish(
        state,
        project,
        &built,
        &files,
        target,
        Some((pr.number, pr.url.clone(), head)),
        false,
    )
    .await?;
    let project = state.store.require_project(project.id).await?;
    let status = if passed(&built.findings) {
        SyncStatus::Success
    } else {
        SyncStatus::Error
    };
    publish::update_comment(
        state,
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

/// What the PR says about auto-merge. A forge that refuses it (not enabled
/// for the repository, the PR not mergeable) is a note, not a failed sync;
/// credentials and transient errors still fail it.
fn auto_merge_note(result: Result<AutoMerge, ForgeError>) -> Result<String, SyncError> {
    match result {
        Ok(AutoMerge::Enabled) => {
            Ok("Auto-merge is on: the forge merges once the checks pass.".into())
        }
        Ok(AutoMerge::Merged) => Ok("Auto-merge: merged right away (nothing was pending).".into()),
        Err(ForgeError::Validation { message, .. }) => Ok(format!(
            "Auto-merge could not be turned on: {message}. Merge by hand, or allow auto-merge \
             for the repository and comment `/graft sync`."
        )),
        Err(other) => Err(other.into()),
    }
}

/// graft's open PR when everything it proposed is on the target branch
/// (someone landed the same content another way): closed, with a comment,
/// and forgotten.
async fn close_landed_pull_request(
    state: &AppState,
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
    state
        .store
        .set_pull_request(project.id, None, None, now)
        .await?;
    state
        .store
        .set_sync_branch_state(project.id, None, false)
        .await?;
    state
        .store
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
async fn finish(
    state: &AppState,
    project: &Project,
    built: &Built,
    files: &plan::FilePlan,
    landed_head: Option<ObjectId>,
    pull_request: Option<(i64, String, ObjectId)>,
    landed: bool,
) -> Result<(), SyncError> {
    let now = now_ms();
    let store = &state.store;
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
        let error = super::errors::SyncError::Validation(built.findings.clone())
            .describe()
            .replace(
                "direct mode does not push until the generated files validate.",
                "the pull request shows the findings.",
            );
        store
            .record_sync_error(project.id, &error, None, now)
            .await?;
        // A failure is never silent (SPEC §2): the audit log says so too,
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
    let message = match (&built.commit, &pull_request) {
        (None, _) => "sync: nothing to change".to_string(),
        (Some(c), Some((n, u, _))) => format!(
            "sync: pushed {} to {} for PR #{n} ({u})",
            short(c),
            project.sync_branch
        ),
        (Some(c), None) => format!("sync: pushed {} to {}", short(c), project.branch),
    };
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
                details: Some(serde_json::json!({ "changes": built.overlay.changes })),
            },
            now,
        )
        .await?;
    Ok(())
}

fn short(id: &ObjectId) -> String {
    id.to_string().chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::mirror_key;

    #[test]
    fn mirrors_are_per_host_and_repository() {
        let a = mirror_key(
            "gitlab",
            "https://gitlab.example.com/group/app.git",
            "group/app",
        );
        let b = mirror_key(
            "gitlab",
            "https://git.other.org:8443/group/app.git",
            "Group/App",
        );
        assert_eq!(a, "gitlab/gitlab.example.com/group/app");
        assert_eq!(b, "gitlab/git.other.org:8443/group/app");
        // Credentials in a URL never reach the key (or the folder name).
        let c = mirror_key("github", "https://x:secret@github.com/o/r.git", "o/r");
        assert_eq!(c, "github/github.com/o/r");
    }
}
