//! Commit mode `api` on GitLab: `POST /projects/:id/repository/commits`
//! with actions. GitLab has no lease on a branch's head, so graft reads
//! the head first; rewriting the branch is `start_sha` with `force`.

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use super::GitlabRepo;
use super::client::decode;
use crate::forge::Result;
use crate::forge::commit_api::{ApiCommit, Committed, Start};
use crate::forge::repo::RepoForge;

#[derive(serde::Deserialize)]
struct CommitJson {
    id: String,
}

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
        let response = self
            .call(
                what,
                Method::POST,
                "/repository/commits",
                Some(&commit_body(commit)),
            )
            .await?;
        let created: CommitJson = decode(&response, what)?;
        Ok(Committed::Head(created.id))
    }
}
