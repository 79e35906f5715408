//! `/graft sync [--force]`: queue a sync of the whole project now.

use crate::sync::errors::SyncError;
use crate::sync::schedule::SyncRequest;

use super::super::reply::Outcome;
use super::{Call, paths};

pub async fn run(call: &Call<'_>, force: bool) -> Result<Outcome, SyncError> {
    let request = SyncRequest {
        force,
        ..SyncRequest::explicit(call.actor)
    };
    call.ctx
        .jobs
        .enqueue_sync(call.project_id(), &request, call.now)
        .await?;
    let conflicts = call.project.conflicts.as_deref().unwrap_or_default();
    Ok(call.done(reply(
        force,
        conflicts,
        &call.project.branch,
        call.prefix,
        call.forge.pr(),
    )))
}

/// What the queued sync will do with the files that conflict now.
pub fn reply(force: bool, conflicts: &[String], branch: &str, prefix: &str, pr: &str) -> String {
    match (force, conflicts.is_empty()) {
        (false, true) => format!(
            "Sync queued: graft overlays its files onto the head of `{branch}` and updates \
             this {pr}. The status comment shows the result."
        ),
        (false, false) => format!(
            "Sync queued, but {} changed on both sides, so it will stop at the conflict \
             again. `{prefix} sync --force` keeps graft's version; `{prefix} import` \
             takes the repository's.",
            paths(conflicts)
        ),
        (true, false) => format!(
            "Sync queued with `--force`: graft keeps its version of {} and overwrites \
             the repository's edits there. The status comment shows the result.",
            paths(conflicts)
        ),
        (true, true) => "Sync queued with `--force` (nothing conflicts right now, so \
             it is a plain sync). The status comment shows the result."
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_sync_names_the_branch_and_the_pr() {
        let text = reply(false, &[], "main", "/graft", "merge request");
        assert!(text.contains("head of `main`"), "{text}");
        assert!(text.contains("this merge request"), "{text}");
    }

    #[test]
    fn conflicts_say_how_to_resolve_them_with_the_prefix() {
        let conflicts = vec!["a.tf".to_string()];
        let text = reply(false, &conflicts, "main", "!g", "pull request");
        assert!(text.contains("`a.tf` changed on both sides"), "{text}");
        assert!(text.contains("`!g sync --force`") && text.contains("`!g import`"));
        let forced = reply(true, &conflicts, "main", "!g", "pull request");
        assert!(forced.contains("keeps its version of `a.tf`"), "{forced}");
    }

    #[test]
    fn force_without_conflicts_is_a_plain_sync() {
        let text = reply(true, &[], "main", "/graft", "pull request");
        assert!(text.contains("it is a plain sync"), "{text}");
    }
}
