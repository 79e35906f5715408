//! `/graft resume`: automatic syncs again, and a sync of what changed
//! while paused if the project would have synced it.

use crate::store::files::{Change, ChangedPath, FileState, ManagedFileRow};
use crate::sync::errors::SyncError;
use crate::sync::schedule::{self, SyncRequest};

use super::super::reply::Outcome;
use super::{Call, refresh_sticky};

pub async fn run(call: &Call<'_>) -> Result<Outcome, SyncError> {
    if !call.project.paused {
        return Ok(call.done("Automatic syncs are already on.".to_string()));
    }
    let (ctx, id) = (call.ctx, call.project_id());
    ctx.store.set_paused(id, false, call.now).await?;
    let resumed = ctx.store.require_project(id).await?;
    let waiting = waiting(ctx.store.files(id).await?);
    let queued = match schedule::on_files_changed(&resumed, &waiting) {
        Some(scope) => {
            let request = SyncRequest::automatic(scope, call.actor);
            ctx.jobs.enqueue_sync(id, &request, call.now).await?;
            Some(waiting.len())
        }
        None => None,
    };
    refresh_sticky(ctx, id).await;
    Ok(call.done(reply(queued)))
}

/// The files that changed while paused, as a change of files (which the
/// project's rules turn into a sync or not).
pub fn waiting(files: Vec<ManagedFileRow>) -> Vec<ChangedPath> {
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

    fn file(path: &str, state: FileState, sync_on_change: bool) -> ManagedFileRow {
        ManagedFileRow {
            path: path.into(),
            content: Vec::new(),
            blob_sha: String::new(),
            state,
            size: 0,
            sync_on_change,
            executable: false,
            synced_blob_sha: None,
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
