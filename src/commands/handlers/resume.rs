//! `/graft resume`: automatic syncs again, and a sync of what changed
//! while paused if the project would have synced it.

use crate::context::Context;
use crate::ids::ProjectId;
use crate::jobs::queue::enqueue_sync_in;
use crate::store::files::{self, Change, ChangedPath, FileMeta, FileState};
use crate::store::{StoreError, project_state, projects};
use crate::sync::errors::SyncError;
use crate::sync::schedule::{self, SyncRequest};

use super::super::reply::Outcome;
use super::{Call, refresh_sticky};

pub async fn run(call: &Call<'_>) -> Result<Outcome, SyncError> {
    if !call.project.paused {
        return Ok(call.done(ALREADY_ON.to_string()));
    }
    match resume(call.ctx, call.project_id(), call.actor, call.now).await? {
        Resumed::NotPaused => Ok(call.done(ALREADY_ON.to_string())),
        Resumed::Resumed { queued } => {
            refresh_sticky(call.ctx, call.project_id()).await;
            Ok(call.done(reply(queued)))
        }
    }
}

const ALREADY_ON: &str = "Automatic syncs are already on.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// The project was not paused (any more): nothing changed.
    NotPaused,
    /// The pause is lifted; `queued` as in [`reply`].
    Resumed { queued: Option<usize> },
}

/// Lifts the pause of project `id` and queues the sync of what waited
/// (when the project's rules sync it) in one transaction: if queueing
/// fails, the project stays paused, so the retried command resumes it
/// and queues the sync then. Wakes the workers after the commit.
pub async fn resume(
    ctx: &Context,
    id: ProjectId,
    actor: &str,
    now: i64,
) -> Result<Resumed, StoreError> {
    let mut tx = ctx.store.begin_write().await?;
    if !project_state::set_paused_in(&mut tx, id, false, now).await? {
        return Ok(Resumed::NotPaused);
    }
    let resumed = projects::project_in(&mut tx, id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("project {id}")))?;
    let waiting = waiting(files::file_listing_in(&mut tx, id).await?);
    let queued = match schedule::on_files_changed(&resumed, &waiting) {
        Some(scope) => {
            let request = SyncRequest::automatic(scope, actor);
            enqueue_sync_in(&mut tx, id, &request, now).await?;
            Some(waiting.len())
        }
        None => None,
    };
    tx.commit().await?;
    if queued.is_some() {
        ctx.jobs.wake();
    }
    Ok(Resumed::Resumed { queued })
}

/// The files that changed while paused, as a change of files (which the
/// project's rules turn into a sync or not).
pub fn waiting(files: Vec<FileMeta>) -> Vec<ChangedPath> {
    files
        .into_iter()
        .filter(|f| f.state != FileState::Synced)
        .map(|f| ChangedPath {
            change: if f.state == FileState::DeletedPending {
                Change::Deleted
            } else {
                Change::Modified
            },
            path: f.path,
            sync_on_change: f.sync_on_change,
        })
        .collect()
}

/// `queued`: how many waiting files the queued sync carries, if one was.
fn reply(queued: Option<usize>) -> String {
    match queued {
        Some(count) => format!(
            "Resumed: automatic syncs are on again. {count} file(s) changed while \
             paused, so a sync is queued."
        ),
        None => "Resumed: automatic syncs are on again.".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::files::FileSource;

    fn file(path: &str, state: FileState, sync_on_change: bool) -> FileMeta {
        FileMeta {
            path: path.into(),
            blob_sha: String::new(),
            state,
            size: 0,
            sync_on_change,
            executable: false,
            source: FileSource::Generator,
        }
    }

    #[test]
    fn only_unsynced_files_wait_and_deletions_stay_deletions() {
        let changed = waiting(vec![
            file("a.tf", FileState::Synced, false),
            file("b.tf", FileState::Pending, true),
            file("c.tf", FileState::DeletedPending, false),
        ]);
        assert_eq!(
            changed,
            vec![
                ChangedPath {
                    path: "b.tf".into(),
                    change: Change::Modified,
                    sync_on_change: true,
                },
                ChangedPath {
                    path: "c.tf".into(),
                    change: Change::Deleted,
                    sync_on_change: false,
                },
            ]
        );
    }

    #[test]
    fn the_reply_says_whether_a_sync_was_queued() {
        assert!(reply(Some(2)).contains("2 file(s) changed while paused"));
        assert_eq!(reply(None), "Resumed: automatic syncs are on again.");
    }
}
