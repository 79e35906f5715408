//! Whose commits are on graft's branch: the ones graft did not push decide
//! whether it still owns the branch (see [`plan::branch_is_shared`]).

use std::collections::HashSet;

use gix::ObjectId;

use crate::context::Context;
use crate::git::pipeline::Fetched;
use crate::git::read;
use crate::store::projects::Project;

use super::errors::SyncError;
use super::plan;

/// Whether someone else committed to graft's branch at `head`: a commit on
/// it is graft's only when it is graft's recorded push (`sync_branch_sha`)
/// or below it, or on the target branch at `target`. Emails count only
/// when graft has no push recorded.
pub(super) async fn others_committed(
    ctx: &Context,
    project: &Project,
    fetched: &Fetched,
    target: ObjectId,
    head: ObjectId,
) -> Result<bool, SyncError> {
    let pushed = project
        .sync_branch_sha
        .as_deref()
        .and_then(|s| ObjectId::from_hex(s.as_bytes()).ok());
    let beyond = fetched
        .with_repo(move |repo| {
            let mut beyond = read::commits_between(repo, target, head)?;
            // A push graft recorded but no longer has (a mirror created
            // again after someone rewrote the branch) hides nothing: every
            // commit past the target then counts as someone else's.
            if let Some(pushed) = pushed.filter(|p| repo.find_commit(*p).is_ok()) {
                let past_push: HashSet<ObjectId> = read::commits_between(repo, pushed, head)?
                    .into_iter()
                    .map(|(id, _, _)| id)
                    .collect();
                beyond.retain(|(id, _, _)| past_push.contains(id));
            }
            Ok(beyond)
        })
        .await?;
    Ok(plan::branch_is_shared(
        &beyond,
        pushed.is_some(),
        &ctx.git.identity.email,
    ))
}
