//! Bringing changes made in the repository into the database: what each
//! changed managed file means (import, conflict, already there) and
//! applying it.

use gix::ObjectId;

use crate::context::Context;
use std::collections::BTreeMap;

use crate::git::mirror::Want;
use crate::git::pipeline::{self, Fetched};
use crate::git::read::{self, TreeFile};
use crate::store::audit::NewEvent;
use crate::store::files::FileState;
use crate::store::now_ms;
use crate::store::projects::Project;

use super::errors::SyncError;
use super::plan::{self, UpstreamAction};

/// What the repository did to each managed file between `old` (the tree
/// graft last saw) and `new` (see [`plan::upstream_actions`]).
pub async fn upstream_actions(
    ctx: &Context,
    project: &Project,
    fetched: &Fetched,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
) -> Result<Vec<UpstreamAction>, SyncError> {
    let rows = ctx.store.files(project.id).await?;
    let base_path = project.base_path.clone();
    let (old_listing, new_listing) = fetched
        .with_repo(move |repo| {
            let new_listing = read::list_subtree(repo, read::commit_tree(repo, new)?, &base_path)?;
            // Without the old commit (history rewritten, or none yet) there
            // is no base to compare with.
            let old_listing = match old {
                Some(id) if repo.find_commit(id).is_ok() => Some(read::list_subtree(
                    repo,
                    read::commit_tree(repo, Some(id))?,
                    &base_path,
                )?),
                _ => None,
            };
            Ok((old_listing, new_listing))
        })
        .await?;
    Ok(plan::upstream_actions(
        &rows,
        old_listing.as_ref(),
        &new_listing,
    ))
}

/// Applies imports; returns the conflicting paths.
pub async fn apply_upstream(
    ctx: &Context,
    project: &Project,
    fetched: &Fetched,
    actions: &[UpstreamAction],
    origin: &str,
) -> Result<Vec<String>, SyncError> {
    let now = now_ms();
    let mut conflicts = Vec::new();
    let mut imported = Vec::new();
    for action in actions {
        match action {
            UpstreamAction::Import { path, blob } => {
                let content = match blob {
                    Some(TreeFile { blob, .. }) => {
                        let blob = *blob;
                        Some(
                            fetched
                                .with_repo(move |repo| read::read_blob(repo, blob))
                                .await?,
                        )
                    }
                    None => None,
                };
                let executable = blob.is_some_and(|b| b.executable);
                ctx.store
                    .import_file(project.id, path, content.as_deref(), executable, now)
                    .await?;
                imported.push(path.clone());
            }
            UpstreamAction::AlreadyThere { path } => {
                let row = ctx.store.file(project.id, path).await?;
                if let Some(row) = row {
                    let blob =
                        (row.state != FileState::DeletedPending).then(|| row.blob_sha.clone());
                    ctx.store
                        .mark_synced(project.id, &[(path.clone(), blob)], now)
                        .await?;
                }
            }
            UpstreamAction::Conflict { path } => conflicts.push(path.clone()),
        }
    }
    if !imported.is_empty() {
        ctx.store
            .record_event(
                &NewEvent {
                    project_id: Some(project.id),
                    actor: origin,
                    kind: "files.imported",
                    message: &format!(
                        "imported {} edited file(s) from the {origin}: {}",
                        imported.len(),
                        imported.join(", ")
                    ),
                    details: Some(serde_json::json!({ "paths": imported })),
                    ..NewEvent::default()
                },
                now,
            )
            .await?;
    }
    Ok(conflicts)
}

/// Fetches the project's repository and lists the managed subtree at the
/// target branch head.
pub async fn fetch_target_listing(
    ctx: &Context,
    project: &Project,
) -> Result<(Fetched, Option<ObjectId>, BTreeMap<String, TreeFile>), SyncError> {
    let remote = super::remote::remote_for(ctx, project).await?;
    let fetched = fetch_for(ctx, project, &remote).await?;
    let target = fetched.head(&project.branch);
    let base_path = project.base_path.clone();
    let listing = fetched
        .with_repo(move |repo| {
            read::list_subtree(repo, read::commit_tree(repo, target)?, &base_path)
        })
        .await?;
    Ok((fetched, target, listing))
}

/// What a job on `project` needs from the repository: the target branch
/// and graft's branch at their heads, and the commits graft saw last (the
/// bases of the three-way comparisons), not the rest of the history.
pub fn want_for(project: &Project) -> Want {
    let mut branches = vec![project.branch.clone()];
    if project.sync_branch != project.branch {
        branches.push(project.sync_branch.clone());
    }
    let commits = [
        project.last_synced_commit_sha.as_deref(),
        project.sync_branch_sha.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|s| ObjectId::from_hex(s.as_bytes()).ok())
    .collect();
    Want { branches, commits }
}

/// Fetches what a job on `project` needs ([`want_for`]) into its mirror.
pub async fn fetch_for(
    ctx: &Context,
    project: &Project,
    remote: &super::remote::Remote,
) -> Result<Fetched, SyncError> {
    Ok(pipeline::fetch_wanted(
        &ctx.mirrors,
        &remote.key,
        &remote.url,
        &remote.auth,
        want_for(project),
    )
    .await?)
}
