//! Branches through GitHub's Git Data API (`POST /git/refs`, `PATCH` and
//! `DELETE /git/refs/heads/{branch}`): what a client making commits
//! through the API uses to create a branch or point it back at its base.
//! Protected branches and the signed-commits rule apply as to a push; a
//! move sends the `push` webhook like any other.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::super::git_host::RefUpdate;
use super::api::gh_error;
use super::{BOT_LOGIN, FakeGithub};

fn unprocessable(message: &str) -> Response {
    gh_error(StatusCode::UNPROCESSABLE_ENTITY, message)
}

fn ref_json(fake: &FakeGithub, repo: &str, name: &str, sha: &str) -> Value {
    json!({"ref": name, "node_id": format!("REF_{sha}"),
           "url": format!("{}/repos/{repo}/git/{name}", fake.api_url),
           "object": {"type": "commit", "sha": sha,
                      "url": format!("{}/repos/{repo}/git/commits/{sha}", fake.api_url)}})
}

/// Why moving `branch` to `new` breaks a rule, in GitHub's words.
fn refusal(fake: &FakeGithub, repo: &str, branch: &str, new: Option<&str>) -> Option<String> {
    if fake.git.is_protected(repo, branch) {
        return Some(format!(
            "Protected branch update failed for refs/heads/{branch}."
        ));
    }
    let unsigned =
        new.is_some_and(|new| !fake.git.unsigned_new_commits(repo, branch, new).is_empty());
    unsigned.then(|| {
        "Repository rule violations found\n\nCommits must have verified signatures.\n\n".into()
    })
}

fn moved(fake: &FakeGithub, repo: &str, branch: &str, old: Option<String>, new: Option<String>) {
    fake.after_push(
        repo,
        &[RefUpdate {
            name: format!("refs/heads/{branch}"),
            old,
            new,
        }],
        BOT_LOGIN,
    );
}

/// `POST /repos/{o}/{r}/git/refs` `{ref, sha}`.
pub(super) fn create(fake: &FakeGithub, repo: &str, body: &Value) -> Response {
    let (Some(name), Some(sha)) = (body["ref"].as_str(), body["sha"].as_str()) else {
        return unprocessable("Invalid request.\n\n\"ref\", \"sha\" weren't supplied.");
    };
    if !name.starts_with("refs/") || name.matches('/').count() < 2 {
        return unprocessable(
            "Reference name must start with 'refs/' and have at least two slashes.",
        );
    }
    let Some(branch) = name.strip_prefix("refs/heads/") else {
        return unprocessable("fake GitHub: only branches (refs/heads/...) can be created");
    };
    let Some(commit) = fake.git.resolve_commit(repo, sha).filter(|c| c == sha) else {
        return unprocessable("Object does not exist");
    };
    if fake.git.head(repo, branch).is_some() {
        return unprocessable("Reference already exists");
    }
    if let Some(message) = refusal(fake, repo, branch, Some(&commit)) {
        return unprocessable(&message);
    }
    if !fake.git.move_branch(repo, branch, Some(&commit), None) {
        return unprocessable("Reference already exists");
    }
    moved(fake, repo, branch, None, Some(commit.clone()));
    (
        StatusCode::CREATED,
        axum::Json(ref_json(fake, repo, name, &commit)),
    )
        .into_response()
}

/// `PATCH /repos/{o}/{r}/git/refs/heads/{branch}` `{sha, force}`: only a
/// fast-forward unless `force`.
pub(super) fn update(fake: &FakeGithub, repo: &str, reference: &str, body: &Value) -> Response {
    let Some(branch) = reference.strip_prefix("heads/") else {
        return unprocessable("Reference does not exist");
    };
    let Some(old) = fake.git.head(repo, branch) else {
        return unprocessable("Reference does not exist");
    };
    let Some(sha) = body["sha"].as_str() else {
        return unprocessable("Invalid request.\n\n\"sha\" wasn't supplied.");
    };
    let Some(new) = fake.git.resolve_commit(repo, sha).filter(|c| c == sha) else {
        return unprocessable("Object does not exist");
    };
    let force = body["force"].as_bool().unwrap_or(false);
    if !force && !fake.git.is_ancestor(repo, &old, &new) {
        return unprocessable("Update is not a fast forward");
    }
    if let Some(message) = refusal(fake, repo, branch, Some(&new)) {
        return unprocessable(&message);
    }
    if !fake.git.move_branch(repo, branch, Some(&new), Some(&old)) {
        return unprocessable("Reference cannot be updated");
    }
    if old != new {
        moved(fake, repo, branch, Some(old), Some(new.clone()));
    }
    let name = format!("refs/{reference}");
    (
        StatusCode::OK,
        axum::Json(ref_json(fake, repo, &name, &new)),
    )
        .into_response()
}

/// `DELETE /repos/{o}/{r}/git/refs/heads/{branch}`.
pub(super) fn delete(fake: &FakeGithub, repo: &str, reference: &str) -> Response {
    let Some(branch) = reference.strip_prefix("heads/") else {
        return unprocessable("Reference does not exist");
    };
    let Some(old) = fake.git.head(repo, branch) else {
        return unprocessable("Reference does not exist");
    };
    if let Some(message) = refusal(fake, repo, branch, None) {
        return unprocessable(&message);
    }
    if !fake.git.move_branch(repo, branch, None, Some(&old)) {
        return unprocessable("Reference cannot be updated");
    }
    moved(fake, repo, branch, Some(old), None);
    StatusCode::NO_CONTENT.into_response()
}
