//! A change of a project's managed set and what follows from it, as one
//! transaction: the files, the source, the lifted hold on auto-sync, the
//! sync it schedules (per project kind: `iac` with auto-sync, or flagged
//! `configuration` files; coalesced with one already queued) and the
//! audit event. A failure anywhere leaves nothing behind, so a
//! retried request is never mistaken for "no change". The API and
//! `graft push` come through here.

use std::collections::BTreeSet;

use serde_json::json;
use sqlx::AnyConnection;

use crate::git::paths;
use crate::store::audit::{NewEvent, record_event_in};
use crate::store::files::{self, Change, ChangedPath, FileInput};
use crate::store::project_state;
use crate::store::projects::Project;
use crate::store::{Store, StoreError, now_ms};

use super::schedule::{SyncRequest, enqueue_sync_in, on_files_changed};

/// Changed paths kept in one audit event's details.
const EVENT_PATHS: usize = 1000;

/// One change of the managed set.
pub enum FileOp<'a> {
    Put {
        files: &'a [FileInput],
        /// Files not named are removed.
        delete_missing: bool,
        /// The generator that sent them, for commit messages.
        source: Option<&'a str>,
    },
    Delete {
        path: &'a str,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The new set would make one path both a file and a folder, or a path
    /// too long under the project's base path.
    #[error("{0}")]
    Layout(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ChangeError {
    fn from(error: sqlx::Error) -> Self {
        ChangeError::Store(error.into())
    }
}

/// What a change did: the changed paths and the sync job it queued.
#[derive(Debug)]
pub struct Applied {
    pub changes: Vec<ChangedPath>,
    pub sync_job: Option<i64>,
}

/// Applies `op` for `actor` (see the module docs). The caller wakes the
/// workers when `sync_job` is set.
pub async fn change_files(
    store: &Store,
    project: &Project,
    actor: &str,
    op: FileOp<'_>,
) -> Result<Applied, ChangeError> {
    let now = now_ms();
    let mut tx = store.begin_write().await?;
    let (changes, source) = match op {
        FileOp::Put {
            files,
            delete_missing,
            source,
        } => {
            // With `delete_missing`, only the files named stay.
            let kept = if delete_missing {
                Vec::new()
            } else {
                files::live_paths_in(&mut tx, project.id).await?
            };
            for file in files {
                paths::validate_in_base(&project.base_path, &file.path)
                    .map_err(|e| ChangeError::Layout(format!("file `{}`: {e}", file.path)))?;
            }
            check_layout(kept.iter().map(String::as_str), files).map_err(ChangeError::Layout)?;
            let changes =
                files::put_files_in(&mut tx, project.id, files, delete_missing, now).await?;
            if source.is_some() {
                project_state::set_source_in(&mut tx, project.id, source).await?;
            }
            (changes, source)
        }
        FileOp::Delete { path } => {
            let change = files::delete_file_in(&mut tx, project.id, path, now).await?;
            (change.into_iter().collect(), None)
        }
    };
    let sync_job = after_change(&mut tx, project, actor, &changes, source, now).await?;
    tx.commit().await?;
    Ok(Applied { changes, sync_job })
}

/// Refuses a managed set in which one path would be both a file and a
/// folder (`a` and `a/b`): git cannot hold it, and the sync would fail.
pub fn check_layout<'a>(
    kept: impl IntoIterator<Item = &'a str>,
    new: &'a [FileInput],
) -> Result<(), String> {
    let all: BTreeSet<&str> = kept
        .into_iter()
        .chain(new.iter().map(|f| f.path.as_str()))
        .collect();
    for file in new {
        let path = file.path.as_str();
        let mut prefix = path;
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if all.contains(parent) {
                return Err(format!(
                    "file `{path}` needs a folder `{parent}`, but `{parent}` is a managed file"
                ));
            }
            prefix = parent;
        }
        let folder = format!("{path}/");
        if let Some(inside) = all.range(folder.as_str()..).next()
            && inside.starts_with(&folder)
        {
            return Err(format!(
                "file `{path}` would replace a folder that holds the managed file `{inside}`"
            ));
        }
    }
    Ok(())
}

/// The hold on auto-sync lifts, a sync may be queued, the audit log
/// records the change.
async fn after_change(
    conn: &mut AnyConnection,
    project: &Project,
    actor: &str,
    changes: &[ChangedPath],
    source: Option<&str>,
    now: i64,
) -> Result<Option<i64>, StoreError> {
    if changes.is_empty() {
        return Ok(None);
    }
    if project.auto_sync_held {
        project_state::set_auto_sync_held_in(conn, project.id, false, now).await?;
    }
    let job = match on_files_changed(project, changes) {
        Some(scope) => {
            let request = SyncRequest::automatic(scope, actor);
            Some(enqueue_sync_in(conn, project.id, &request, now).await?)
        }
        None => None,
    };
    let count = |kind: Change| changes.iter().filter(|c| c.change == kind).count();
    let mut message = format!(
        "{} managed file(s) changed: {} added, {} modified, {} deleted",
        changes.len(),
        count(Change::Added),
        count(Change::Modified),
        count(Change::Deleted)
    );
    if let Some(job) = job {
        message.push_str(&format!("; sync job {job} queued"));
    }
    let details = json!({
        "changed": &changes[..changes.len().min(EVENT_PATHS)],
        "changed_total": changes.len(),
        "source": source,
        "sync_job_id": job,
    });
    record_event_in(
        conn,
        &NewEvent {
            project_id: Some(project.id),
            actor,
            kind: "files.updated",
            message: &message,
            details: Some(details),
            ..NewEvent::default()
        },
        now,
    )
    .await?;
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(path: &str) -> FileInput {
        FileInput {
            path: path.into(),
            content: Vec::new(),
            sync_on_change: None,
            executable: None,
            source: None,
        }
    }

    #[test]
    fn files_cannot_also_be_folders() {
        assert!(check_layout(["a/b.tf"], &[input("a/c.tf")]).is_ok());
        assert!(check_layout(["ab"], &[input("a/b")]).is_ok());
        assert!(check_layout(["a"], &[input("a/b/c")]).is_err());
        assert!(check_layout(["a/b/c"], &[input("a/b")]).is_err());
        assert!(check_layout([], &[input("x"), input("x/y")]).is_err());
        // `a.tf` sorts between `a` and `a/`; the range check still finds `a/b`.
        assert!(check_layout(["a.tf", "a/b"], &[input("a")]).is_err());
    }
}
