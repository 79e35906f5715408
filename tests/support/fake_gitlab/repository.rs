//! Reading and writing repositories through GitLab's REST API: the
//! projects a token reaches, the repository tree, one file, and a commit
//! made of actions (`POST /projects/:id/repository/commits`), written for
//! real into the bare repository and signed by GitLab. Errors carry
//! GitLab's words (`lib/api/repositories.rb`, `lib/api/files.rb`,
//! `Commits::CreateService`, `Files::MultiService` and Gitaly's index
//! errors).
// Early-return responses as `Err` keep the handlers flat; size is no
// concern in a test fake.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::super::fake_common::{json_response, paginate};
use super::super::git_host::{Change, Identity, NewCommit, RefUpdate};
use super::{FakeGitlab, Project};

fn message(status: StatusCode, text: &str) -> Response {
    json_response(status, json!({"message": text}))
}

fn bad_request(text: &str) -> Response {
    message(StatusCode::BAD_REQUEST, text)
}

/// A Grape parameter error (`{"error": "…"}`).
fn param_error(text: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, json!({"error": text}))
}

fn flag(query: &BTreeMap<String, String>, name: &str) -> bool {
    query
        .get(name)
        .is_some_and(|v| matches!(v.as_str(), "true" | "1" | "yes"))
}

/// `GET /projects`: with `membership=true` the token user's projects, with
/// `min_access_level` those where the user has at least that level;
/// newest first, paginated (20 by default, 100 at most).
pub(super) fn list_projects(
    fake: &FakeGitlab,
    user: &str,
    query: &BTreeMap<String, String>,
) -> Response {
    let (projects, max) = {
        let state = fake.state.lock().unwrap();
        let user_id = state.users.get(user).copied().unwrap_or(-1);
        let min_level: Option<i64> = query.get("min_access_level").and_then(|l| l.parse().ok());
        let membership = flag(query, "membership") || min_level.is_some();
        let projects: Vec<Project> = state
            .projects
            .values()
            .rev()
            .filter(|p| {
                let level = state.members.get(&(p.id, user_id)).copied().unwrap_or(0);
                let reached = if membership {
                    level >= min_level.unwrap_or(10).max(10)
                } else {
                    level >= 10 || p.visibility != "private"
                };
                reached && query.get("visibility").is_none_or(|v| *v == p.visibility)
            })
            .cloned()
            .collect();
        (projects, state.max_per_page)
    };
    let items = projects.iter().map(|p| fake.project_json(p)).collect();
    let url = format!("{}/api/v4/projects", fake.url);
    paginate(items, query, &url, 20, max, true)
}

/// `GET /projects/:id/repository/tree?ref=&path=&recursive=`: entries
/// with full paths (folders first when not recursive), paginated.
pub(super) fn tree(
    fake: &FakeGitlab,
    project: &Project,
    query: &BTreeMap<String, String>,
) -> Response {
    if query.get("pagination").is_some_and(|p| p != "legacy") {
        return bad_request("fake GitLab: only legacy (page-numbered) tree pagination is served");
    }
    let reference = query.get("ref").unwrap_or(&project.default_branch);
    let Some(commit) = fake.git.resolve_commit(&project.path, reference) else {
        return message(StatusCode::NOT_FOUND, "404 Tree Not Found");
    };
    let path = query
        .get("path")
        .map(|p| p.trim_matches('/'))
        .unwrap_or_default();
    let recursive = flag(query, "recursive");
    let Some((_, mut entries)) =
        fake.git
            .ls_tree(&project.path, &format!("{commit}:{path}"), recursive)
    else {
        return message(
            StatusCode::NOT_FOUND,
            "404 invalid revision or path Not Found",
        );
    };
    if !recursive {
        let rank = |kind: &str| match kind {
            "tree" => 0,
            "blob" => 1,
            _ => 2,
        };
        entries.sort_by_key(|e| rank(&e.kind));
    }
    let items = entries
        .iter()
        .map(|e| {
            let full = if path.is_empty() {
                e.path.clone()
            } else {
                format!("{path}/{}", e.path)
            };
            let name = full.rsplit('/').next().unwrap_or(&full).to_string();
            json!({"id": e.sha, "name": name, "type": e.kind, "path": full, "mode": e.mode})
        })
        .collect();
    let max = fake.state.lock().unwrap().max_per_page;
    let url = format!(
        "{}/api/v4/projects/{}/repository/tree",
        fake.url, project.id
    );
    paginate(items, query, &url, 20, max, true)
}

/// `GET /projects/:id/repository/files/:file_path?ref=` (the path comes
/// URL-encoded, `/` as `%2F`).
pub(super) fn file(
    fake: &FakeGitlab,
    project: &Project,
    file_path: &str,
    query: &BTreeMap<String, String>,
) -> Response {
    let Some(reference) = query.get("ref").filter(|r| !r.is_empty()) else {
        return param_error("ref is missing");
    };
    let Some(commit) = fake.git.resolve_commit(&project.path, reference) else {
        return message(StatusCode::NOT_FOUND, "404 Commit Not Found");
    };
    let (parent, name) = file_path.rsplit_once('/').unwrap_or(("", file_path));
    let entry = fake
        .git
        .ls_tree(&project.path, &format!("{commit}:{parent}"), false)
        .and_then(|(_, entries)| {
            entries
                .into_iter()
                .find(|e| e.path == name && e.kind == "blob")
        });
    let Some(entry) = entry else {
        return message(StatusCode::NOT_FOUND, "404 File Not Found");
    };
    let bytes = fake.git.blob(&project.path, &entry.sha).unwrap_or_default();
    let last_commit = fake
        .git
        .last_commit_for(&project.path, &commit, file_path)
        .unwrap_or_default();
    let mut response = json_response(
        StatusCode::OK,
        json!({
            "file_name": name,
            "file_path": file_path,
            "size": bytes.len(),
            "encoding": "base64",
            "content_sha256": hex::encode(Sha256::digest(&bytes)),
            "ref": reference,
            "blob_id": entry.sha,
            "commit_id": commit,
            "last_commit_id": last_commit,
            "execute_filemode": entry.mode == "100755",
            "content": base64::engine::general_purpose::STANDARD.encode(&bytes),
        }),
    );
    // GitLab sends the metadata as headers too (all a HEAD gets).
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-gitlab-blob-id", entry.sha.clone()),
        ("x-gitlab-commit-id", commit.clone()),
        ("x-gitlab-encoding", "base64".to_string()),
        ("x-gitlab-file-name", name.to_string()),
        ("x-gitlab-file-path", file_path.to_string()),
        ("x-gitlab-ref", reference.clone()),
        ("x-gitlab-size", bytes.len().to_string()),
        (
            "x-gitlab-execute-filemode",
            (entry.mode == "100755").to_string(),
        ),
    ] {
        if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

/// `GET /projects/:id/repository/commits/:sha`: one commit, `sha` a
/// commit id, branch or tag.
pub(super) fn commit(fake: &FakeGitlab, project: &Project, reference: &str) -> Response {
    let Some(meta) = fake.git.commit_meta(&project.path, reference) else {
        return message(StatusCode::NOT_FOUND, "404 Commit Not Found");
    };
    let title = meta.message.lines().next().unwrap_or_default().to_string();
    json_response(
        StatusCode::OK,
        json!({
            "id": meta.sha,
            "short_id": meta.sha.get(..8).unwrap_or_default(),
            "created_at": meta.committed_at,
            "parent_ids": meta.parents,
            "title": title,
            "message": meta.message,
            "author_name": meta.author.name,
            "author_email": meta.author.email,
            "authored_date": meta.authored_at,
            "committer_name": meta.committer.name,
            "committer_email": meta.committer.email,
            "committed_date": meta.committed_at,
            "trailers": {},
            "web_url": format!("{}/{}/-/commit/{}", fake.url, project.path, meta.sha),
            "project_id": project.id,
        }),
    )
}

/// What `POST /projects/:id/repository/commits` was asked, checked.
struct Request<'a> {
    branch: &'a str,
    /// The commit the new one builds on (`None`: a first commit).
    base: Option<String>,
    /// Where the branch is now (`None`: it is created).
    old: Option<String>,
}

fn start<'a>(
    fake: &FakeGitlab,
    project: &Project,
    body: &'a Value,
) -> Result<Request<'a>, Response> {
    let repo = &project.path;
    let text = |name: &str| body.get(name).and_then(Value::as_str);
    let Some(branch) = text("branch").filter(|b| !b.is_empty()) else {
        return Err(param_error("branch is missing"));
    };
    if text("commit_message").is_none_or(str::is_empty) {
        return Err(param_error("commit_message is missing"));
    }
    if !body["actions"].is_array() {
        return Err(param_error("actions is missing"));
    }
    if fake.git.is_protected(repo, branch) {
        return Err(message(
            StatusCode::FORBIDDEN,
            "403 Forbidden - You are not allowed to push into this branch",
        ));
    }
    let old = fake.git.head(repo, branch);
    let empty = fake
        .git
        .resolve_commit(repo, &project.default_branch)
        .is_none()
        && old.is_none();
    let start_sha = text("start_sha");
    if start_sha.is_some() && text("start_branch").is_some() {
        return Err(bad_request(
            "You can't pass both start_branch and start_sha",
        ));
    }
    // The API takes the branch itself as the start unless told otherwise.
    let start_branch = text("start_branch").or(start_sha.is_none().then_some(branch));
    let base = if let Some(sha) = start_sha {
        if sha.len() != 40 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad_request(&format!("Invalid start_sha '{sha}'")));
        }
        let Some(commit) = fake.git.resolve_commit(repo, sha) else {
            return Err(bad_request(&format!("Cannot find start_sha '{sha}'")));
        };
        Some(commit)
    } else {
        let start = start_branch.unwrap_or(branch);
        match fake.git.head(repo, start) {
            Some(head) => Some(head),
            None if empty => None,
            None => {
                return Err(bad_request(
                    "You can only create or edit files when you are on a branch",
                ));
            }
        }
    };
    let different = start_sha.is_some() || start_branch.is_some_and(|s| s != branch);
    let force = body["force"].as_bool().unwrap_or(false);
    if different && old.is_some() && !force {
        return Err(bad_request(&format!(
            "A branch called '{branch}' already exists. Switch to that branch in order to make changes"
        )));
    }
    Ok(Request { branch, base, old })
}

/// The actions as changes on `base`, or GitLab's refusal.
fn changes(
    fake: &FakeGitlab,
    project: &Project,
    base: Option<&str>,
    body: &Value,
) -> Result<Vec<Change>, Response> {
    let repo = &project.path;
    let exists = |path: &str| {
        base.and_then(|b| fake.git.object(repo, &format!("{b}:{path}")))
            .is_some_and(|(_, kind)| kind == "blob")
    };
    let actions = body["actions"].as_array().cloned().unwrap_or_default();
    let mut changes = Vec::new();
    for (index, action) in actions.iter().enumerate() {
        let field = |name: &str| action.get(name).and_then(Value::as_str);
        let Some(kind) = field("action") else {
            return Err(param_error(&format!("actions[{index}][action] is missing")));
        };
        if !["create", "update", "move", "delete", "chmod"].contains(&kind) {
            return Err(param_error(&format!(
                "actions[{index}][action] does not have a valid value"
            )));
        }
        let Some(path) = field("file_path").filter(|p| !p.is_empty()) else {
            return Err(param_error(&format!(
                "actions[{index}][file_path] is missing"
            )));
        };
        let path = path.trim_start_matches('/').to_string();
        let previous = field("previous_path").map(|p| p.trim_start_matches('/').to_string());
        // `last_commit_id`: the caller's idea of the file's last commit.
        if let (Some(expected), Some(base)) = (field("last_commit_id"), base)
            && ["update", "move", "delete"].contains(&kind)
        {
            let checked = previous.clone().unwrap_or_else(|| path.clone());
            let last = fake.git.last_commit_for(repo, base, &checked);
            if last.as_deref() != Some(expected) {
                return Err(bad_request(&format!(
                    "The file has changed since you started editing it: {checked}"
                )));
            }
        }
        let content = || -> Result<Vec<u8>, Response> {
            let text = field("content").unwrap_or_default();
            if field("encoding") == Some("base64") {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| bad_request("Content is not valid base64"))
            } else {
                Ok(text.as_bytes().to_vec())
            }
        };
        match kind {
            "create" if exists(&path) => {
                return Err(bad_request("A file with this name already exists"));
            }
            "update" | "delete" | "chmod" if !exists(&path) => {
                return Err(bad_request("A file with this name doesn't exist"));
            }
            "create" => {
                changes.push(Change::Put {
                    path: path.clone(),
                    content: content()?,
                });
                if let Some(executable) = action.get("execute_filemode").and_then(Value::as_bool) {
                    changes.push(Change::Chmod { path, executable });
                }
            }
            // As Gitaly does: an update keeps the file's mode whatever
            // `execute_filemode` says; only `create` and `chmod` read it.
            "update" => changes.push(Change::Put {
                path,
                content: content()?,
            }),
            "delete" => changes.push(Change::Delete { path }),
            "move" => {
                let Some(from) = previous else {
                    return Err(bad_request(&format!(
                        "You must supply the original file path when moving file `{path}`."
                    )));
                };
                if !exists(&from) {
                    return Err(bad_request("A file with this name doesn't exist"));
                }
                if exists(&path) {
                    return Err(bad_request("A file with this name already exists"));
                }
                let bytes = match field("content") {
                    Some(_) => content()?,
                    None => base
                        .and_then(|b| fake.git.object(repo, &format!("{b}:{from}")))
                        .and_then(|(sha, _)| fake.git.blob(repo, &sha))
                        .unwrap_or_default(),
                };
                changes.push(Change::Delete { path: from });
                changes.push(Change::Put {
                    path,
                    content: bytes,
                });
            }
            _ => {
                // `chmod`: the mode only, from `execute_filemode`.
                let executable = action
                    .get("execute_filemode")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                changes.push(Change::Chmod { path, executable });
            }
        }
    }
    Ok(changes)
}

/// `POST /projects/:id/repository/commits`.
pub(super) fn create_commit(
    fake: &FakeGitlab,
    project: &Project,
    body: &Value,
    user: &str,
) -> Response {
    let repo = &project.path;
    let request = match start(fake, project, body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let changes = match changes(fake, project, request.base.as_deref(), body) {
        Ok(changes) => changes,
        Err(response) => return response,
    };
    let text = |name: &str| body.get(name).and_then(Value::as_str);
    let message = text("commit_message").unwrap_or_default();
    let host = fake.url.trim_start_matches("http://");
    let author = Identity {
        name: text("author_name").unwrap_or(user).to_string(),
        email: text("author_email")
            .map(str::to_string)
            .unwrap_or_else(|| format!("{user}@noreply.{host}")),
    };
    let written = fake.git.write_commit(
        repo,
        &NewCommit {
            parent: request.base.as_deref(),
            changes: &changes,
            message,
            author,
            committer: Identity {
                name: "GitLab".into(),
                email: "noreply@gitlab.com".into(),
            },
        },
    );
    let new = match written {
        Ok(new) => new,
        Err(e) => return bad_request(&e),
    };
    fake.git.mark_verified(repo, &new);
    if !fake
        .git
        .move_branch(repo, request.branch, Some(&new), request.old.as_deref())
    {
        return bad_request(&format!(
            "Could not update refs/heads/{}. Please refresh and try again.",
            request.branch
        ));
    }
    fake.after_push(
        repo,
        &[RefUpdate {
            name: format!("refs/heads/{}", request.branch),
            old: request.old.clone(),
            new: Some(new.clone()),
        }],
        user,
    );
    let mut json = commit_json(fake, project, &new);
    if body["stats"].as_bool() == Some(false)
        && let Some(map) = json.as_object_mut()
    {
        map.remove("stats");
    }
    json_response(StatusCode::CREATED, json)
}

/// A commit as GitLab's commits API shows it (`Entities::CommitDetail`).
fn commit_json(fake: &FakeGitlab, project: &Project, sha: &str) -> Value {
    let Some(meta) = fake.git.commit_meta(&project.path, sha) else {
        return Value::Null;
    };
    let files = fake.git.changed_files(&project.path, sha);
    let (additions, deletions) = files
        .iter()
        .fold((0, 0), |(a, d), f| (a + f.additions, d + f.deletions));
    let message = meta.message.trim_end().to_string();
    let title = message.lines().next().unwrap_or_default().to_string();
    json!({
        "id": meta.sha,
        "short_id": &meta.sha[..8],
        "created_at": meta.committed_at,
        "parent_ids": meta.parents,
        "title": title,
        "message": message,
        "author_name": meta.author.name,
        "author_email": meta.author.email,
        "authored_date": meta.authored_at,
        "committer_name": meta.committer.name,
        "committer_email": meta.committer.email,
        "committed_date": meta.committed_at,
        "trailers": {},
        "extended_trailers": {},
        "web_url": format!("{}/{}/-/commit/{}", fake.url, project.path, meta.sha),
        "stats": {"additions": additions, "deletions": deletions, "total": additions + deletions},
        "status": null,
        "project_id": project.id,
        "last_pipeline": null,
    })
}
