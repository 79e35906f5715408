//! `/graft import`: take the repository's version of every managed file
//! that changed upstream (also those in conflict).

use crate::sync::errors::SyncError;
use crate::sync::ops;

use super::super::reply::Outcome;
use super::{Call, paths};

pub async fn run(call: &Call<'_>) -> Result<Outcome, SyncError> {
    let project = &call.project;
    let imported = ops::import_upstream(call.ctx, project.id, call.actor).await?;
    if project.paused {
        // Importing sets the status to idle; a paused project stays paused.
        call.ctx
            .store
            .set_paused(project.id, true, crate::store::now_ms())
            .await?;
    }
    Ok(call.done(reply(&imported, &project.branch, call.forge.pr())))
}

/// What was imported, or that nothing was.
pub fn reply(imported: &[String], branch: &str, pr: &str) -> String {
    if imported.is_empty() {
        format!("Nothing to import: graft's files match `{branch}` and nothing conflicts.")
    } else {
        format!(
            "Took the repository's version of {} file(s): {}. graft now updates this \
             {pr} to match.",
            imported.len(),
            paths(imported)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_counts_and_names_the_imported_files() {
        let text = reply(&["a.tf".into(), "b.tf".into()], "main", "pull request");
        assert!(text.starts_with("Took the repository's version of 2 file(s): `a.tf`, `b.tf`."));
        assert!(text.contains("updates this pull request"), "{text}");
        let nothing = reply(&[], "main", "pull request");
        assert!(nothing.contains("graft's files match `main`"), "{nothing}");
    }
}
