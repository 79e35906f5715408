//! One module per slash command: its effect, its reply text and its
//! tests. [`super::execute`] authorizes a command and dispatches it here
//! with a [`Call`]; where what a command does depends only on the state it
//! finds, that decision is a pure function beside its handler.

use tracing::warn;

use crate::context::Context;
use crate::forge::RepoClient;
use crate::ids::ProjectId;
use crate::store::projects::Project;
use crate::sync::ops;

use super::reply::{Forge, Outcome};

pub mod automerge;
pub mod help;
pub mod import;
pub mod pause;
pub mod rebase;
pub mod resume;
pub mod retry;
pub mod status;
pub mod sync;

/// What every handler gets: a valid command someone allowed to run it
/// wrote on the PR/MR of `project`.
pub struct Call<'a> {
    pub ctx: &'a Context,
    pub client: &'a RepoClient,
    /// The project as read when the command started.
    pub project: Project,
    /// Who the command runs for (audit log, sync requests).
    pub actor: &'a str,
    pub prefix: &'a str,
    /// The command in its canonical form, for the reply.
    pub usage: String,
    pub forge: Forge,
    pub now: i64,
}

impl Call<'_> {
    pub fn done(&self, message: String) -> Outcome {
        Outcome::done(&self.usage, message)
    }

    pub fn failed(&self, message: String) -> Outcome {
        Outcome::failed(&self.usage, message)
    }

    pub fn project_id(&self) -> ProjectId {
        self.project.id
    }
}

/// Up to ten paths in backticks, then how many more.
pub fn paths(list: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut out = list
        .iter()
        .take(SHOWN)
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > SHOWN {
        out.push_str(&format!(" and {} more", list.len() - SHOWN));
    }
    out
}

/// Shows a pause or resume in the status comment right away, after the
/// change itself is done. Best effort: failing here must not retry the
/// command (a retried `resume` would find the project resumed and queue
/// nothing), and the next sync rewrites the comment anyway.
pub async fn refresh_sticky(ctx: &Context, project_id: ProjectId) {
    if let Err(e) = ops::refresh_status(ctx, project_id).await {
        warn!(project = project_id.get(), error = %e, "could not refresh the status comment");
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::events::Provider;
    use crate::store::commit_via::CommitVia;
    use crate::store::projects::{Kind, Mode, Project, SyncStatus};

    /// A GitHub project with an open PR that synced cleanly.
    pub fn project() -> Project {
        Project {
            id: crate::ids::ProjectId(7),
            provider: Provider::Github,
            integration_id: None,
            repo: "acme/infra".into(),
            branch: "main".into(),
            base_path: "generated".into(),
            kind: Kind::Iac,
            mode: Mode::PullRequest,
            auto_sync: true,
            auto_merge: false,
            commit_via: CommitVia::default(),
            paused: false,
            slug: "generated".into(),
            sync_branch: "graft/generated".into(),
            sync_status: SyncStatus::Success,
            sync_error: None,
            last_synced_commit_sha: Some("a".repeat(40)),
            last_pulled_at: None,
            pull_request_number: Some(crate::ids::PrNumber(3)),
            pull_request_url: Some("https://github.com/acme/infra/pull/3".into()),
            auto_sync_held: false,
            sync_branch_shared: false,
            sync_branch_sha: Some("b".repeat(40)),
            status_comment_id: None,
            conflicts: None,
            last_failed_job_id: None,
            source: None,
            last_findings: Some(serde_json::json!([])),
            last_changes: Vec::new(),
            status_before_pause: None,
            error_before_pause: None,
            created_at: 0,
            updated_at: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_show_ten_and_count_the_rest() {
        let list: Vec<String> = (0..12).map(|i| format!("f{i}.tf")).collect();
        assert_eq!(paths(&list[..2]), "`f0.tf`, `f1.tf`");
        let shown = paths(&list);
        assert!(shown.ends_with("`f9.tf` and 2 more"), "{shown}");
        assert!(!shown.contains("f10.tf"), "{shown}");
    }
}
