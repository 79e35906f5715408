//! Commit mode `api` on GitLab: `POST /projects/:id/repository/commits`
//! with actions (`execute_filemode` carries the executable bit). GitLab
//! has no lease on a branch's head, so graft reads the head first and
//! checks the created commit's parent after: a commit that landed on
//! someone else's push is reported as the branch having moved (the next
//! attempt sees their commit and builds on top). Rewriting the branch is
//! `start_sha` with `force`; a push in the instant between the read and
//! the commit is the one thing this cannot see.

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use super::GitlabRepo;
use super::client::decode;
use super::json::CommitJson;
use crate::forge::Result;
use crate::forge::commit_api::{ApiCommit, Committed, Start};
use crate::forge::error::ForgeError;
use crate::forge::repo::RepoForge;

/// The request body for `commit`: on the branch's head, or from `sha`
/// (`force` when the branch exists and is rewritten).
pub fn commit_body(commit: &ApiCommit) -> Value {
    let engine = base64::engine::general_purpose::STANDARD;
    let actions: Vec<Value> = commit
        .files
        .iter()
        .map(|file| match &file.content {
            Some(content) => json!({
                "action": if file.existed { "update" } else { "create" },
                "file_path": file.path,
                "content": engine.encode(content),
                "encoding": "base64",
                "execute_filemode": file.executable,
            }),
            None => json!({"action": "delete", "file_path": file.path}),
        })
        .collect();
    let mut body = json!({
        "branch": commit.branch,
        "commit_message": commit.message,
        "actions": actions,
    });
    if let Start::From { sha, current } = &commit.start {
        body["start_sha"] = json!(sha);
        if current.is_some() {
            body["force"] = json!(true);
        }
    }
    body
}

impl GitlabRepo {
    pub(super) async fn commit_via_api(&self, commit: &ApiCommit) -> Result<Committed> {
        let expected = match &commit.start {
            Start::OnHead { expected } => Some(expected.as_str()),
            Start::From { current, .. } => current.as_deref(),
        };
        if self.branch_head(&commit.branch).await?.as_deref() != expected {
            return Ok(Committed::Moved);
        }
        let what = "creating a commit through the API";
        let response = match self
            .call(
                what,
                Method::POST,
                "/repository/commits",
                Some(&commit_body(commit)),
            )
            .await
        {
            Ok(response) => response,
            Err(
                ForgeError::NoPermission { message, .. } | ForgeError::Validation { message, .. },
            ) if message.contains("not allowed to push into this branch") => {
                return Ok(Committed::Protected(message));
            }
            Err(e) => return Err(e),
        };
        let created: CommitJson = decode(&response, what)?;
        let parent = match &commit.start {
            Start::OnHead { expected } => expected,
            Start::From { sha, .. } => sha,
        };
        if created.parent_ids.first() != Some(parent) {
            return Ok(Committed::Moved);
        }
        Ok(Committed::Head(created.id))
    }
}
