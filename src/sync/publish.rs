//! Talking to the forge about a project: the client for its repository,
//! opening or updating its one PR/MR, the check run, the sticky comment.

use crate::context::Context;
use crate::forge::{
    CheckConclusion, CheckReport, ForgeError, NewPullRequest, PullRequest, PullRequestUpdate,
    RepoClient,
};
use crate::git::read::FileChange;
use crate::git::validate::{Finding, passed};
use crate::ids::ProjectId;
use crate::ids::Provider;
use crate::slash::help::with_prefix;
use crate::store::projects::{Project, SyncStatus};

use super::errors::SyncError;
use super::report::{self, StatusView};

pub async fn client_for(ctx: &Context, project: &Project) -> Result<RepoClient, SyncError> {
    let client = match project.provider {
        Provider::Github => ctx.forges.github(&project.repo).await,
        Provider::Gitlab => {
            ctx.forges
                .gitlab(project.integration_id, &project.repo)
                .await
        }
    };
    Ok(client?)
}

/// Finds graft's open PR for the project's branch, or opens one. Never two:
/// the forge is asked by head branch first.
pub async fn open_or_update(
    client: &RepoClient,
    project: &Project,
    changes: &[FileChange],
    prefix: &str,
) -> Result<PullRequest, ForgeError> {
    let title = report::pull_request_title(project);
    let body = with_prefix(&report::pull_request_body(project, changes), prefix);
    match client.find_open_pull_request(&project.sync_branch).await? {
        Some(existing) => {
            client
                .update_pull_request(
                    existing.number,
                    &PullRequestUpdate {
                        title: Some(title),
                        body: Some(body),
                        base_branch: None,
                    },
                )
                .await
        }
        None => {
            client
                .open_pull_request(&NewPullRequest {
                    head_branch: project.sync_branch.clone(),
                    base_branch: project.branch.clone(),
                    title,
                    body,
                })
                .await
        }
    }
}

pub async fn report_check(
    client: &RepoClient,
    sha: &str,
    findings: &[Finding],
) -> Result<(), ForgeError> {
    let (title, summary) = report::check_summary(findings);
    client
        .report_check(&CheckReport {
            sha: sha.to_string(),
            conclusion: if passed(findings) {
                CheckConclusion::Success
            } else {
                CheckConclusion::Failure
            },
            title,
            summary,
            details_url: None,
        })
        .await
}

/// What the next status comment says.
#[derive(Debug, Clone, Default)]
pub struct CommentContent {
    pub commit: Option<String>,
    pub changes: Vec<FileChange>,
    pub findings: Option<Vec<Finding>>,
    pub error: Option<String>,
    pub notes: Vec<String>,
}

impl CommentContent {
    /// What graft last reported, from the project's stored state: the PR
    /// head, its file table, the findings, the error. Partial updates (a
    /// failure, a reconcile, `/graft status`) start from here.
    pub fn from_project(project: &Project) -> Self {
        CommentContent {
            commit: project.sync_branch_sha.clone(),
            changes: project.last_changes.clone(),
            findings: project
                .last_findings
                .clone()
                .and_then(|f| serde_json::from_value(f).ok()),
            error: project.sync_error.clone(),
            notes: Vec::new(),
        }
    }
}

/// Creates or edits the sticky comment on the project's PR, if it has one.
pub async fn update_comment(
    ctx: &Context,
    client: &RepoClient,
    project: &Project,
    status: SyncStatus,
    content: &CommentContent,
) -> Result<(), SyncError> {
    let Some(number) = project.pull_request_number else {
        return Ok(());
    };
    let body = report::status_comment(&StatusView {
        project,
        status,
        commit: content.commit.as_deref(),
        changes: &content.changes,
        findings: content.findings.as_deref(),
        error: content.error.as_deref(),
        shared_branch: project.sync_branch_shared,
        notes: &content.notes,
    });
    let body = with_prefix(&body, &ctx.commands.prefix);
    let comment = client.upsert_status_comment(number, &body).await?;
    ctx.store
        .set_status_comment(project.id, Some(comment.id))
        .await?;
    Ok(())
}

/// Best effort after a failure: the PR says what went wrong. A failure to
/// say it is logged, not raised over the original error.
pub async fn comment_failure(ctx: &Context, project_id: ProjectId, message: &str) {
    let Ok(Some(project)) = ctx.store.project(project_id).await else {
        return;
    };
    if project.pull_request_number.is_none() {
        return;
    }
    let result = async {
        let client = client_for(ctx, &project).await?;
        update_comment(
            ctx,
            &client,
            &project,
            SyncStatus::Error,
            &CommentContent {
                error: Some(message.to_string()),
                ..CommentContent::from_project(&project)
            },
        )
        .await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(project = project_id.get(), error = %e, "could not report the failure on the pull request");
    }
}
