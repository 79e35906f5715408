//! `/graft rebase`: recreate graft's branch from the target head plus
//! graft's files, once nothing conflicts.

use crate::store::projects::Project;
use crate::sync::errors::SyncError;
use crate::sync::reconcile;
use crate::sync::schedule::SyncRequest;

use super::super::reply::Outcome;
use super::{Call, paths};

pub async fn run(call: &Call<'_>) -> Result<Outcome, SyncError> {
    let id = call.project_id();
    // Bring in anything someone pushed to the branch first, so their edits
    // of managed files survive the rewrite.
    reconcile::reconcile(call.ctx, id).await?;
    let project = call.ctx.store.require_project(id).await?;
    let message = match decide(&project, call.prefix) {
        Err(refusal) => return Ok(call.failed(refusal)),
        Ok(message) => message,
    };
    let request = SyncRequest {
        rebase: true,
        ..SyncRequest::explicit(call.actor)
    };
    call.ctx.jobs.enqueue_sync(id, &request, call.now).await?;
    Ok(call.done(message))
}

/// Whether the reconciled `project` may be rebased: the reply for a queued
/// rebase, or why not (files changed on both sides must be settled first).
pub fn decide(project: &Project, prefix: &str) -> Result<String, String> {
    let conflicts = project.conflicts.as_deref().unwrap_or_default();
    if !conflicts.is_empty() {
        return Err(format!(
            "Not rebased: {} changed on both sides. Resolve that first with \
             `{prefix} sync --force` (keep graft's version) or `{prefix} import` \
             (take the repository's), then rebase.",
            paths(conflicts)
        ));
    }
    let mut message = format!(
        "Rebase queued: graft recreates `{}` from the head of `{}` plus its files.",
        project.sync_branch, project.branch
    );
    if project.sync_branch_shared {
        message.push_str(
            " Commits by others on the branch are dropped; their edits of managed \
             files were imported into graft first, so the content stays.",
        );
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::project;
    use super::*;

    #[test]
    fn a_clean_project_is_rebased_and_others_commits_are_mentioned() {
        let mut p = project();
        let own = decide(&p, "/graft").unwrap();
        assert!(own.contains("recreates `graft/generated` from the head of `main`"));
        assert!(!own.contains("Commits by others"), "{own}");
        p.sync_branch_shared = true;
        assert!(decide(&p, "/graft").unwrap().contains("Commits by others"));
    }

    #[test]
    fn conflicts_refuse_the_rebase_and_say_how_to_resolve_them() {
        let mut p = project();
        p.conflicts = Some(vec!["x.tf".into()]);
        let refusal = decide(&p, "!g").unwrap_err();
        assert!(refusal.starts_with("Not rebased: `x.tf` changed on both sides."));
        assert!(refusal.contains("`!g sync --force`") && refusal.contains("`!g import`"));
        // An empty list is no conflict.
        p.conflicts = Some(Vec::new());
        assert!(decide(&p, "!g").is_ok());
    }
}
