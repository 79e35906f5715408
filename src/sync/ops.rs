//! Operations reviewers trigger from the PR conversation that are not a
//! plain sync: take the repository's side of a conflict, refresh the
//! status comment.

use crate::app::AppState;
use crate::git::read;
use crate::store::audit::NewEvent;
use crate::store::files::FileState;
use crate::store::now_ms;
use crate::store::projects::SyncStatus;

use super::errors::SyncError;
use super::publish::{self, CommentContent};
use super::schedule::{self, Scope, SyncRequest};
use super::upstream::fetch_target_listing;

/// `/graft import`: the repository's version wins for every conflicting
/// file and every pending file that differs from the target branch.
/// Returns the imported paths.
pub async fn import_upstream(
    state: &AppState,
    project_id: i64,
    actor: &str,
) -> Result<Vec<String>, SyncError> {
    let store = &state.store;
    let project = store.require_project(project_id).await?;
    let (fetched, target, listing) = fetch_target_listing(state, &project).await?;
    let conflicts = project.conflicts.clone().unwrap_or_default();
    let rows = store.files(project_id).await?;
    let now = now_ms();
    let mut imported = Vec::new();
    for row in &rows {
        let upstream = listing.get(&row.path);
        let differs = upstream.map(|f| f.blob.to_string()).as_deref()
            != Some(row.blob_sha.as_str())
            || row.state == FileState::DeletedPending;
        let wanted = conflicts.contains(&row.path) || (row.state != FileState::Synced && differs);
        if !wanted {
            continue;
        }
        let content = match upstream {
            Some(file) => {
                let blob = file.blob;
                Some(
                    fetched
                        .with_repo(move |repo| read::read_blob(repo, blob))
                        .await?,
                )
            }
            None => None,
        };
        store
            .import_file(
                project_id,
                &row.path,
                content.as_deref(),
                upstream.is_some_and(|f| f.executable),
                now,
            )
            .await?;
        imported.push(row.path.clone());
    }
    drop(fetched);
    store.set_conflicts(project_id, None, now).await?;
    store
        .record_pull(project_id, target.map(|t| t.to_string()).as_deref(), now)
        .await?;
    store
        .set_sync_status(project_id, SyncStatus::Idle, None, now)
        .await?;
    store
        .record_event(
            &NewEvent {
                project_id: Some(project_id),
                actor,
                kind: "files.imported",
                message: &format!(
                    "took the repository's version of {} file(s): {}",
                    imported.len(),
                    imported.join(", ")
                ),
                details: Some(serde_json::json!({ "paths": imported })),
                ..NewEvent::default()
            },
            now,
        )
        .await?;
    if project.pull_request_number.is_some() {
        // The PR branch should now match the database again.
        schedule::enqueue_sync(
            store,
            project_id,
            &SyncRequest {
                scope: Scope::All,
                force: false,
                rebase: false,
                actor: actor.to_string(),
            },
            now,
        )
        .await?;
        state.job_wake.notify_waiters();
    }
    Ok(imported)
}

/// `/graft status`: rewrite the sticky comment from the current state.
pub async fn refresh_status(state: &AppState, project_id: i64) -> Result<(), SyncError> {
    let project = state.store.require_project(project_id).await?;
    let client = publish::client_for(state, &project).await?;
    let findings = project
        .last_findings
        .clone()
        .and_then(|f| serde_json::from_value(f).ok());
    publish::update_comment(
        state,
        &client,
        &project,
        project.sync_status,
        &CommentContent {
            commit: project.sync_branch_sha.clone(),
            findings,
            error: project.sync_error.clone(),
            ..CommentContent::default()
        },
    )
    .await
}
