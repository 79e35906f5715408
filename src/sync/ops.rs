//! Operations reviewers trigger from the PR conversation that are not a
//! plain sync: take the repository's side of a conflict, refresh the
//! status comment.

use crate::context::Context;
use crate::git::read;
use crate::ids::ProjectId;
use crate::store::audit::NewEvent;
use crate::store::now_ms;
use crate::store::projects::SyncStatus;

use super::errors::SyncError;
use super::plan;
use super::publish::{self, CommentContent};
use super::schedule::SyncRequest;
use super::upstream::{apply_upstream, fetch_target_listing, upstream_actions};

/// `/graft import`: the repository wins where it changed a managed file.
/// First the ordinary catch-up with the target branch (upstream edits of
/// files graft has no change for), then, for every conflicting file, the
/// repository's version (from graft's branch when a human edited it there,
/// else from the target). Pending files the repository did not touch keep
/// graft's content. Returns the imported paths.
pub async fn import_upstream(
    ctx: &Context,
    project_id: ProjectId,
    actor: &str,
) -> Result<Vec<String>, SyncError> {
    let store = &ctx.store;
    let project = store.require_project(project_id).await?;
    let (fetched, target, listing) = fetch_target_listing(ctx, &project).await?;
    let last_seen = project
        .last_synced_commit_sha
        .as_deref()
        .and_then(|s| gix::ObjectId::from_hex(s.as_bytes()).ok());
    let actions = upstream_actions(ctx, &project, &fetched, last_seen, target).await?;
    let mut conflicts = project.conflicts.clone().unwrap_or_default();
    conflicts.extend(apply_upstream(ctx, &project, &fetched, &actions, actor).await?);
    let branch_listing = match fetched.head(&project.sync_branch) {
        Some(head) if project.sync_branch_shared => {
            let base_path = project.base_path.clone();
            Some(
                fetched
                    .with_repo(move |repo| {
                        read::list_subtree(repo, read::commit_tree(repo, Some(head))?, &base_path)
                    })
                    .await?,
            )
        }
        _ => None,
    };
    let rows = store.files(project_id).await?;
    let now = now_ms();
    let mut imported = Vec::new();
    for row in rows.iter().filter(|r| conflicts.contains(&r.path)) {
        let upstream = plan::import_source(row, &listing, branch_listing.as_ref());
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
        ctx.jobs
            .enqueue_sync(project_id, &SyncRequest::explicit(actor), now)
            .await?;
    }
    Ok(imported)
}

/// `/graft status`: rewrite the sticky comment from the current state.
pub async fn refresh_status(ctx: &Context, project_id: ProjectId) -> Result<(), SyncError> {
    let project = ctx.store.require_project(project_id).await?;
    let client = publish::client_for(ctx, &project).await?;
    publish::update_comment(
        ctx,
        &client,
        &project,
        project.sync_status,
        &CommentContent::from_project(&project),
    )
    .await
}
