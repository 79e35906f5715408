//! Commit mode `api` on GitLab: `POST /projects/:id/repository/commits`
//! with actions (`execute_filemode` on `create`, a `chmod` after an
//! `update` that changes the executable bit). GitLab
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
use crate::forge::commit_api::{ApiCommit, Committed, FileWrite, Start};
use crate::forge::error::ForgeError;
use crate::forge::repo::RepoForge;

/// The actions for one file: `create` takes the mode with it; `update`
/// keeps the file's mode (GitLab reads `execute_filemode` on `create` and
/// `chmod` only), so a changed mode is a `chmod` after it.
fn actions(file: &FileWrite) -> Vec<Value> {
    let engine = base64::engine::general_purpose::STANDARD;
    let Some(content) = &file.content else {
        return vec![json!({"action": "delete", "file_path": file.path})];
    };
    let content = engine.encode(content);
    if !file.existed {
        return vec![json!({
            "action": "create",
            "file_path": file.path,
            "content": content,
            "encoding": "base64",
            "execute_filemode": file.executable,
        })];
    }
    let mut actions = vec![json!({
        "action": "update",
        "file_path": file.path,
        "content": content,
        "encoding": "base64",
    })];
    if file.executable != file.was_executable {
        actions.push(json!({
            "action": "chmod",
            "file_path": file.path,
            "execute_filemode": file.executable,
        }));
    }
    actions
}

/// The request body for `commit`: on the branch's head, or from `sha`
/// (`force` when the branch exists and is rewritten).
pub fn commit_body(commit: &ApiCommit) -> Value {
    let actions: Vec<Value> = commit.files.iter().flat_map(actions).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(existed: bool, executable: bool, was_executable: bool) -> FileWrite {
        FileWrite {
            path: "run.sh".into(),
            content: Some(b"x".to_vec()),
            existed,
            executable,
            was_executable,
        }
    }

    fn kinds(file: &FileWrite) -> Vec<(String, Option<bool>)> {
        actions(file)
            .iter()
            .map(|a| {
                (
                    a["action"].as_str().unwrap().to_string(),
                    a["execute_filemode"].as_bool(),
                )
            })
            .collect()
    }

    #[test]
    fn a_changed_mode_is_a_chmod_after_the_update() {
        let create = kinds(&write(false, true, false));
        assert_eq!(create, [("create".to_string(), Some(true))]);
        let kept = kinds(&write(true, true, true));
        assert_eq!(kept, [("update".to_string(), None)]);
        let set = kinds(&write(true, true, false));
        assert_eq!(
            set,
            [
                ("update".to_string(), None),
                ("chmod".to_string(), Some(true))
            ]
        );
        let cleared = kinds(&write(true, false, true));
        assert_eq!(
            cleared,
            [
                ("update".to_string(), None),
                ("chmod".to_string(), Some(false))
            ]
        );
        let deleted = FileWrite {
            content: None,
            ..write(true, false, true)
        };
        assert_eq!(kinds(&deleted), [("delete".to_string(), None)]);
    }
}
