//! The sync's write step: the commit graft built reaches the branch by a
//! git push (commit mode `git`) or through the forge's API, which signs it
//! (mode `api`, and the fallback when a push is refused for missing
//! signatures). Where an API commit starts is decided by [`start_for`],
//! pure; the head it leaves is graft's recorded push either way.

use gix::ObjectId;

use crate::context::Context;
use crate::forge::commit_api::{self, ApiCommit, Committed, FileWrite, Start};
use crate::git::GitError;
use crate::git::pipeline::{Built, Fetched};
use crate::git::push::PushMode;
use crate::git::push_refusal::is_signature_refusal;
use crate::git::read::ChangeKind;
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

/// The overlay's changes as whole files from the repository's root.
pub fn file_writes(project: &Project, built: &Built, files: &FilePlan) -> Vec<FileWrite> {
    let full = |path: &str| {
        if project.base_path.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", project.base_path.trim_end_matches('/'))
        }
    };
    built
        .overlay
        .changes
        .iter()
        .map(|change| FileWrite {
            path: full(&change.path),
            content: match change.kind {
                ChangeKind::Deleted => None,
                _ => files
                    .write
                    .iter()
                    .find(|f| f.path == change.path)
                    .map(|f| f.content.clone()),
            },
            existed: change.kind != ChangeKind::Added,
        })
        .collect()
}

/// Writes `built`'s commit to `branch`: pushed in mode `git` (with
/// `mode`), through the API in mode `api` or when the push was refused
/// for missing signatures (audited as `sync.commit_via_api_fallback`).
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
    if project.commit_via == CommitVia::Api {
        let head = via_api(remote, fetched, project, built, files, branch, branch_head).await?;
        return Ok(Written { head, note: None });
    }
    match super::run::push_to(remote, fetched, commit, branch, mode).await {
        Ok(()) => Ok(Written {
            head: commit,
            note: None,
        }),
        Err(error) if is_signature_refusal(&error) => {
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
            let head = via_api(remote, fetched, project, built, files, branch, branch_head).await?;
            Ok(Written {
                head,
                note: Some(note),
            })
        }
        Err(other) => Err(other.into()),
    }
}

async fn via_api(
    remote: &Remote,
    fetched: &Fetched,
    project: &Project,
    built: &Built,
    files: &FilePlan,
    branch: &str,
    branch_head: Option<ObjectId>,
) -> Result<ObjectId, SyncError> {
    let mut start = start_for(built.parent, branch_head)?;
    let message = match built.commit {
        Some(local) => {
            fetched
                .with_repo(move |repo| {
                    let commit = repo.find_commit(local).map_err(crate::git::missing)?;
                    Ok(commit.message_raw_sloppy().to_string())
                })
                .await?
        }
        None => "graft: sync".to_string(),
    };
    let batches = commit_api::batches(
        file_writes(project, built, files),
        commit_api::MAX_FILE_BYTES,
        commit_api::MAX_COMMIT_BYTES,
    )
    .map_err(|e| SyncError::Config(e.to_string()))?;
    let count = batches.len();
    let mut head = None;
    for (index, batch) in batches.into_iter().enumerate() {
        let message = if count > 1 {
            part_message(&message, index + 1, count)
        } else {
            message.clone()
        };
        let committed = remote
            .client
            .commit_files(&ApiCommit {
                branch: branch.to_string(),
                start: start.clone(),
                message,
                files: batch,
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
        };
        start = Start::OnHead {
            expected: sha.clone(),
        };
        head = Some(sha);
    }
    let head = head.unwrap_or_default();
    ObjectId::from_hex(head.as_bytes()).map_err(|e| {
        SyncError::Git(GitError::Other(format!(
            "the forge answered a commit id graft cannot read: {e}"
        )))
    })
}

/// The message of part `n` of `of` commits of a split change.
fn part_message(message: &str, n: usize, of: usize) -> String {
    match message.split_once('\n') {
        Some((headline, body)) => format!("{headline} ({n}/{of})\n{body}"),
        None => format!("{message} ({n}/{of})"),
    }
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

    #[test]
    fn split_commits_say_which_part_they_are() {
        assert_eq!(
            part_message("graft: sync\n\nbody", 1, 2),
            "graft: sync (1/2)\n\nbody"
        );
        assert_eq!(part_message("graft: sync", 2, 2), "graft: sync (2/2)");
    }
}
