//! The sync's write step: the commit graft built reaches the branch by a
//! git push (commit mode `git`) or through the forge's API, which signs it
//! (mode `api`, and the fallback when a push is refused for missing
//! signatures). Where an API commit starts is decided by [`start_for`],
//! pure; the head it leaves is graft's recorded push either way.

use std::collections::{HashMap, HashSet};

use gix::ObjectId;

use crate::context::Context;
use crate::forge::commit_api::{self, ApiCommit, Committed, FileWrite, Start};
use crate::git::GitError;
use crate::git::overlay::ManagedFile;
use crate::git::pipeline::{Built, Fetched};
use crate::git::push::PushMode;
use crate::git::push_refusal::is_signature_refusal;
use crate::git::read::{ChangeKind, FileChange, list_subtree};
use crate::store::audit::NewEvent;
use crate::store::commit_via::CommitVia;
use crate::store::now_ms;
use crate::store::projects::Project;

use super::errors::SyncError;
use super::plan::FilePlan;
use super::remote::Remote;

/// What the write left: the branch's new head and, after a fallback, the
/// note for the PR.
#[derive(Debug)]
pub struct Written {
    pub head: ObjectId,
    pub note: Option<String>,
}

/// Where the API commit starts: on the branch's head when graft builds on
/// it, else from `parent` (the branch created there, or moved back to it
/// from the head graft fetched: the lease). An empty repository has no
/// commit to start from.
pub fn start_for(
    parent: Option<ObjectId>,
    branch_head: Option<ObjectId>,
) -> Result<Start, SyncError> {
    let Some(parent) = parent else {
        return Err(SyncError::Config(
            "commit mode `api` needs a target branch with at least one commit; push a first \
             commit, or use `commit_via` `git`"
                .into(),
        ));
    };
    Ok(if branch_head == Some(parent) {
        Start::OnHead {
            expected: parent.to_string(),
        }
    } else {
        Start::From {
            sha: parent.to_string(),
            current: branch_head.map(|h| h.to_string()),
        }
    })
}

/// The overlay's changes as whole files from the repository's root;
/// `executable_before` holds the paths (below the base path) executable
/// where the commit starts. A written path the plan has no content for is
/// an error, never a deletion.
pub fn file_writes(
    base_path: &str,
    changes: &[FileChange],
    files: &[ManagedFile],
    executable_before: &HashSet<String>,
) -> Result<Vec<FileWrite>, SyncError> {
    let full = |path: &str| {
        if base_path.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", base_path.trim_end_matches('/'))
        }
    };
    let planned: HashMap<&str, &ManagedFile> = files.iter().map(|f| (f.path.as_str(), f)).collect();
    changes
        .iter()
        .map(|change| {
            let written = match change.kind {
                ChangeKind::Deleted => None,
                _ => Some(planned.get(change.path.as_str()).ok_or_else(|| {
                    GitError::Other(format!(
                        "the overlay writes `{}` but the sync has no content for it",
                        change.path
                    ))
                })?),
            };
            Ok(FileWrite {
                path: full(&change.path),
                content: written.map(|f| f.content.clone()),
                existed: change.kind != ChangeKind::Added,
                executable: written.is_some_and(|f| f.executable),
                was_executable: executable_before.contains(&change.path),
            })
        })
        .collect()
}

/// Writes `built`'s commit to `branch`: pushed in mode `git` (with
/// `mode`), through the API in mode `api` or when the push was refused
/// for missing signatures (audited as `sync.commit_via_api_fallback` once
/// the API commit landed).
pub async fn write(
    ctx: &Context,
    project: &Project,
    remote: &Remote,
    fetched: &Fetched,
    built: &Built,
    files: &FilePlan,
    (branch, mode): (&str, PushMode),
) -> Result<Written, SyncError> {
    let commit = built
        .commit
        .ok_or_else(|| GitError::Other("nothing to write".into()))?;
    let branch_head = fetched.head(branch);
    let via_api = || {
        via_api(
            remote,
            fetched,
            project,
            (built, commit),
            files,
            branch,
            branch_head,
        )
    };
    if project.commit_via == CommitVia::Api {
        let head = via_api().await?;
        return Ok(Written { head, note: None });
    }
    match super::run::push_to(remote, fetched, commit, branch, mode).await {
        Ok(()) => Ok(Written {
            head: commit,
            note: None,
        }),
        Err(error) if is_signature_refusal(&error) => {
            let head = via_api().await?;
            let note = format!(
                "`{branch}` requires signed commits and refused graft's git push; graft \
                 committed through the {} API instead (signed by the forge) for this sync. \
                 Set the project's `commit_via` to `api` to always do so.",
                remote.client.forge().name()
            );
            ctx.store
                .record_event(
                    &NewEvent {
                        project_id: Some(project.id),
                        actor: "graft",
                        kind: "sync.commit_via_api_fallback",
                        message: &note,
                        ..NewEvent::default()
                    },
                    now_ms(),
                )
                .await?;
            Ok(Written {
                head,
                note: Some(note),
            })
        }
        Err(other) => Err(other.into()),
    }
}

/// One API commit of the whole change (never split: a split change could
/// stop part-way with commits on the branch graft never recorded), with
/// the message of `commit`, the one graft built.
async fn via_api(
    remote: &Remote,
    fetched: &Fetched,
    project: &Project,
    (built, commit): (&Built, ObjectId),
    files: &FilePlan,
    branch: &str,
    branch_head: Option<ObjectId>,
) -> Result<ObjectId, SyncError> {
    let start = start_for(built.parent, branch_head)?;
    let message = fetched
        .with_repo(move |repo| {
            let commit = repo.find_commit(commit).map_err(crate::git::missing)?;
            Ok(commit.message_raw_sloppy().to_string())
        })
        .await?;
    let executable_before = executable_at(fetched, built, &project.base_path).await?;
    let files = commit_api::one_commit(
        file_writes(
            &project.base_path,
            &built.overlay.changes,
            &files.write,
            &executable_before,
        )?,
        commit_api::MAX_FILE_BYTES,
        commit_api::MAX_COMMIT_BYTES,
    )
    .map_err(|e| SyncError::Config(e.to_string()))?;
    let committed = remote
        .client
        .commit_files(&ApiCommit {
            branch: branch.to_string(),
            start,
            message,
            files,
        })
        .await?;
    let sha = match committed {
        Committed::Head(sha) => sha,
        Committed::Moved => {
            return Err(GitError::NonFastForward(format!(
                "`{branch}` moved while graft committed through the API"
            ))
            .into());
        }
        // What a git push refused by protection reports: direct mode
        // falls back to a PR on it.
        Committed::Protected(message) => return Err(GitError::ProtectedBranch(message).into()),
    };
    ObjectId::from_hex(sha.as_bytes()).map_err(|e| {
        SyncError::Git(GitError::Other(format!(
            "the forge answered a commit id graft cannot read: {e}"
        )))
    })
}

/// The executable files below `base_path` in the tree the overlay built
/// on: where the API commit starts (see [`start_for`]).
async fn executable_at(
    fetched: &Fetched,
    built: &Built,
    base_path: &str,
) -> Result<HashSet<String>, GitError> {
    let (tree, base_path) = (built.overlay.base_tree, base_path.to_string());
    fetched
        .with_repo(move |repo| {
            Ok(list_subtree(repo, tree, &base_path)?
                .into_iter()
                .filter(|(_, file)| file.executable)
                .map(|(path, _)| path)
                .collect())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_hex(format!("{n:02x}").repeat(20).as_bytes()).unwrap()
    }

    #[test]
    fn the_start_follows_the_head_graft_builds_on() {
        assert_eq!(
            start_for(Some(id(1)), Some(id(1))).unwrap(),
            Start::OnHead {
                expected: id(1).to_string()
            },
            "adding on top of the branch"
        );
        assert_eq!(
            start_for(Some(id(1)), None).unwrap(),
            Start::From {
                sha: id(1).to_string(),
                current: None
            },
            "creating the branch at the base"
        );
        assert_eq!(
            start_for(Some(id(1)), Some(id(2))).unwrap(),
            Start::From {
                sha: id(1).to_string(),
                current: Some(id(2).to_string())
            },
            "rewriting the branch from the head graft fetched"
        );
        assert!(matches!(start_for(None, None), Err(SyncError::Config(_))));
    }

    fn change(path: &str, kind: ChangeKind) -> FileChange {
        FileChange {
            path: path.into(),
            kind,
            replaces_unmanaged: false,
            discovery: false,
        }
    }

    fn managed(path: &str, executable: bool) -> ManagedFile {
        ManagedFile {
            path: path.into(),
            content: path.as_bytes().to_vec(),
            executable,
        }
    }

    #[test]
    fn file_writes_are_whole_files_from_the_root_with_their_mode() {
        let changes = [
            change("a.tf", ChangeKind::Added),
            change("run.sh", ChangeKind::Modified),
            change("old.tf", ChangeKind::Deleted),
        ];
        let files = [managed("run.sh", true), managed("a.tf", false)];
        let before = HashSet::from(["old.tf".to_string()]);
        let writes = file_writes("infra/gen/", &changes, &files, &before).unwrap();
        assert_eq!(
            writes,
            vec![
                FileWrite {
                    path: "infra/gen/a.tf".into(),
                    content: Some(b"a.tf".to_vec()),
                    existed: false,
                    executable: false,
                    was_executable: false,
                },
                FileWrite {
                    path: "infra/gen/run.sh".into(),
                    content: Some(b"run.sh".to_vec()),
                    existed: true,
                    executable: true,
                    was_executable: false,
                },
                FileWrite {
                    path: "infra/gen/old.tf".into(),
                    content: None,
                    existed: true,
                    executable: false,
                    was_executable: true,
                },
            ]
        );
    }

    #[test]
    fn a_written_path_without_content_is_an_error_not_a_deletion() {
        let changes = [change("lost.tf", ChangeKind::Modified)];
        let none = HashSet::new();
        let error = file_writes("", &changes, &[managed("other.tf", false)], &none).unwrap_err();
        assert!(error.to_string().contains("`lost.tf`"), "{error}");
    }
}
