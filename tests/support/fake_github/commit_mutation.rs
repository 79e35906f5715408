//! GraphQL `createCommitOnBranch`: a commit made by GitHub from file
//! additions (base64) and deletions on top of `expectedHeadOid`, written
//! for real into the bare repository, authored by the app's bot,
//! committed and signed by GitHub (so Verified, and let through a
//! signed-commits rule), then the branch moved and `push` sent.
//! Refusals come back as GitHub sends them: HTTP 200, `data` null for the
//! field, and `errors` with a `type` (`STALE_DATA` for a head that moved).

use std::collections::HashSet;

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};

use super::super::fake_common::json_response;
use super::super::git_host::{Change, Identity, NewCommit, RefUpdate};
use super::contents::{WEB_FLOW, bot_email};
use super::graphql_conformance::{RootField, project};
use super::{BOT_LOGIN, FakeGithub};

const FIELD: &str = "createCommitOnBranch";

struct Refused {
    kind: &'static str,
    message: String,
}

fn refused(kind: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        kind,
        message: message.into(),
    }
}

pub(super) fn handle(fake: &FakeGithub, installation: i64, field: RootField) -> Response {
    let input = field.arguments.get("input").cloned().unwrap_or(Value::Null);
    match commit(fake, installation, &input) {
        Ok(payload) => json_response(
            StatusCode::OK,
            json!({"data": {FIELD: project(&payload, &field.selection)}}),
        ),
        Err(e) => json_response(
            StatusCode::OK,
            json!({"data": {FIELD: null},
                   "errors": [{"type": e.kind, "path": [FIELD], "message": e.message}]}),
        ),
    }
}

/// The changes `fileChanges` asks for; a path may appear once.
fn changes(input: &Value, max_file_bytes: usize) -> Result<Vec<Change>, Refused> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut changes = Vec::new();
    let list = |name: &str| -> Vec<Value> {
        input["fileChanges"][name]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    for deletion in list("deletions") {
        let path = deletion["path"].as_str().unwrap_or_default().to_string();
        changes.push(Change::Delete { path });
    }
    for addition in list("additions") {
        let path = addition["path"].as_str().unwrap_or_default().to_string();
        let encoded = addition["contents"].as_str().unwrap_or_default();
        let Ok(content) = engine.decode(encoded) else {
            return Err(refused(
                "UNPROCESSABLE",
                format!("Invalid base64 encoding for the contents of `{path}`"),
            ));
        };
        if content.len() > max_file_bytes {
            return Err(refused(
                "UNPROCESSABLE",
                format!(
                    "File {path} is {:.2} MB; this exceeds GitHub's file size limit of {:.2} MB",
                    content.len() as f64 / 1_048_576.0,
                    max_file_bytes as f64 / 1_048_576.0
                ),
            ));
        }
        changes.push(Change::Put { path, content });
    }
    let mut seen = HashSet::new();
    for change in &changes {
        let path = change.path();
        let clean = !path.is_empty()
            && !path.starts_with('/')
            && path
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != ".." && part != ".git");
        if !clean {
            return Err(refused("UNPROCESSABLE", format!("Invalid path: `{path}`")));
        }
        if !seen.insert(path.to_string()) {
            return Err(refused(
                "UNPROCESSABLE",
                format!("The path `{path}` appears more than once in the file changes"),
            ));
        }
    }
    Ok(changes)
}

fn commit(fake: &FakeGithub, installation: i64, input: &Value) -> Result<Value, Refused> {
    let branch_input = &input["branch"];
    let (Some(repo), Some(branch)) = (
        branch_input["repositoryNameWithOwner"].as_str(),
        branch_input["branchName"].as_str(),
    ) else {
        return Err(refused(
            "UNPROCESSABLE",
            "fake GitHub: give the branch as repositoryNameWithOwner and branchName",
        ));
    };
    let branch = branch.strip_prefix("refs/heads/").unwrap_or(branch);
    let max_file_bytes = {
        let state = fake.state.lock().unwrap();
        let reaches = state
            .installations
            .get(&installation)
            .is_some_and(|i| i.repos.contains(repo))
            && state.repos.contains_key(repo);
        if !reaches {
            return Err(refused(
                "NOT_FOUND",
                format!("Could not resolve to a Repository with the name '{repo}'."),
            ));
        }
        state.max_file_bytes
    };
    let Some(head) = fake.git.head(repo, branch) else {
        return Err(refused(
            "NOT_FOUND",
            format!("Could not resolve to a Ref with the name 'refs/heads/{branch}'."),
        ));
    };
    let expected = input["expectedHeadOid"].as_str().unwrap_or_default();
    if expected != head {
        return Err(stale(expected));
    }
    let changes = changes(input, max_file_bytes)?;
    for change in &changes {
        if let Change::Delete { path } = change
            && fake.git.object(repo, &format!("{head}:{path}")).is_none()
        {
            return Err(refused(
                "UNPROCESSABLE",
                format!(
                    "A path was requested for deletion which does not exist as of commit oid `{head}`."
                ),
            ));
        }
    }
    if fake.git.is_protected(repo, branch) {
        return Err(refused(
            "UNPROCESSABLE",
            format!("Protected branch update failed for refs/heads/{branch}."),
        ));
    }
    let headline = input["message"]["headline"].as_str().unwrap_or_default();
    let message = match input["message"]["body"].as_str().filter(|b| !b.is_empty()) {
        Some(body) => format!("{headline}\n\n{body}"),
        None => headline.to_string(),
    };
    let new = fake
        .git
        .write_commit(
            repo,
            &NewCommit {
                parent: Some(&head),
                changes: &changes,
                message: &message,
                author: Identity {
                    name: BOT_LOGIN.to_string(),
                    email: bot_email(),
                },
                committer: Identity {
                    name: WEB_FLOW.0.to_string(),
                    email: WEB_FLOW.1.to_string(),
                },
            },
        )
        .map_err(|e| refused("UNPROCESSABLE", e))?;
    fake.git.mark_verified(repo, &new);
    // Someone may have pushed since the head was read: the branch moves
    // only from the head the caller expected.
    if !fake.git.move_branch(repo, branch, Some(&new), Some(&head)) {
        return Err(stale(expected));
    }
    fake.after_push(
        repo,
        &[RefUpdate {
            name: format!("refs/heads/{branch}"),
            old: Some(head),
            new: Some(new.clone()),
        }],
        BOT_LOGIN,
    );
    Ok(json!({
        "commit": {"oid": new, "url": format!("{}/{repo}/commit/{new}", fake.root)},
        "ref": {"name": branch},
    }))
}

fn stale(expected: &str) -> Refused {
    refused(
        "STALE_DATA",
        format!("Expected branch to point to \"{expected}\" but it did not.  Pull and try again."),
    )
}
