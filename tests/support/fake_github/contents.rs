//! Reading repositories through GitHub's REST API: the installation's
//! repositories, git trees, contents, blobs and a commit (with its
//! signature verification), shaped as GitHub answers them.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::super::fake_common::{json_response, page_of};
use super::super::git_host::TreeEntry;
use super::api::{gh_error, not_found};
use super::{BOT_ID, BOT_LOGIN, FakeGithub, repo_json};

/// Files the contents API returns inline; bigger ones need the raw or
/// object media type (GitHub: 1 MB).
const INLINE_LIMIT: usize = 1 << 20;

/// Base64 as GitHub writes `content`: lines of 60 characters, each ended
/// by a newline.
pub(super) fn base64_lines(bytes: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 60 + 1);
    for chunk in encoded.as_bytes().chunks(60) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

fn wants(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains(media))
}

fn raw(bytes: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.github.raw"),
        )],
        bytes,
    )
        .into_response()
}

/// `GET /app/installations`: the App's installations, oldest first,
/// paginated (`per_page` 30 by default, 100 at most).
pub(super) fn installations(fake: &FakeGithub, query: &BTreeMap<String, String>) -> Response {
    let state = fake.state.lock().unwrap();
    let items: Vec<Value> = state
        .installations
        .values()
        .map(|i| {
            json!({"id": i.id, "app_id": super::APP_ID, "app_slug": super::APP_SLUG,
                   "account": {"login": i.account, "type": "Organization"},
                   "target_type": "Organization", "repository_selection": "selected",
                   "access_tokens_url": format!("{}/app/installations/{}/access_tokens", fake.api_url, i.id),
                   "suspended_at": null, "suspended_by": null})
        })
        .collect();
    let origin = state.link_origin.as_deref().unwrap_or(&fake.api_url);
    let url = format!("{origin}/app/installations");
    super::super::fake_common::paginate(items, query, &url, 30, state.max_per_page, false)
}

/// `GET /installation/repositories`: the token's installation's
/// repositories, paginated (`per_page` 30 by default, 100 at most).
pub(super) fn installation_repositories(
    fake: &FakeGithub,
    installation: i64,
    query: &BTreeMap<String, String>,
) -> Response {
    let state = fake.state.lock().unwrap();
    let repos: Vec<Value> = state
        .installations
        .get(&installation)
        .map(|i| {
            i.repos
                .iter()
                .filter(|r| state.repos.contains_key(*r))
                .map(|r| repo_json(&state, &fake.root, &fake.api_url, &fake.git, r))
                .collect()
        })
        .unwrap_or_default();
    let total = repos.len();
    let origin = state.link_origin.as_deref().unwrap_or(&fake.api_url);
    let url = format!("{origin}/installation/repositories");
    let (page, headers) = page_of(repos, query, &url, (30, state.max_per_page), false);
    let body = json!({"total_count": total, "repository_selection": "selected",
                      "repositories": page});
    (StatusCode::OK, headers, axum::Json(body)).into_response()
}

fn entry_url(fake: &FakeGithub, repo: &str, entry: &TreeEntry) -> Option<String> {
    let kind = match entry.kind.as_str() {
        "blob" => "blobs",
        "tree" => "trees",
        _ => return None,
    };
    Some(format!(
        "{}/repos/{repo}/git/{kind}/{}",
        fake.api_url, entry.sha
    ))
}

/// `GET /repos/{o}/{r}/git/trees/{tree_sha}`: `tree_sha` is a tree or
/// commit id or a branch name (it may contain `/`); any `recursive` value
/// lists the whole tree.
pub(super) fn tree(
    fake: &FakeGithub,
    repo: &str,
    tree_ish: &str,
    query: &BTreeMap<String, String>,
) -> Response {
    let recursive = query.contains_key("recursive");
    let Some((sha, entries)) = fake.git.ls_tree(repo, tree_ish, recursive) else {
        return not_found();
    };
    let max = fake.state.lock().unwrap().max_tree_entries;
    let truncated = entries.len() > max;
    let tree: Vec<Value> = entries
        .iter()
        .take(max)
        .map(|e| {
            let mut item = json!({"path": e.path, "mode": e.mode, "type": e.kind, "sha": e.sha});
            if let Some(size) = e.size {
                item["size"] = json!(size);
            }
            if let Some(url) = entry_url(fake, repo, e) {
                item["url"] = json!(url);
            }
            item
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({"sha": sha, "url": format!("{}/repos/{repo}/git/trees/{sha}", fake.api_url),
               "tree": tree, "truncated": truncated}),
    )
}

/// The fields every contents item has.
fn content_item(
    fake: &FakeGithub,
    repo: &str,
    reference: &str,
    path: &str,
    kind: &str,
    sha: &str,
    size: u64,
) -> Value {
    let name = path.rsplit('/').next().unwrap_or(path);
    let url = format!(
        "{}/repos/{repo}/contents/{path}?ref={}",
        fake.api_url,
        graft::forge::http::encode(reference)
    );
    let git_url = match kind {
        "dir" => Some(format!("{}/repos/{repo}/git/trees/{sha}", fake.api_url)),
        "file" | "symlink" => Some(format!("{}/repos/{repo}/git/blobs/{sha}", fake.api_url)),
        _ => None,
    };
    let view = if kind == "dir" { "tree" } else { "blob" };
    let html_url = format!("{}/{repo}/{view}/{reference}/{path}", fake.root);
    let download_url =
        (kind == "file").then(|| format!("{}/{repo}/raw/{reference}/{path}", fake.root));
    json!({"type": kind, "size": size, "name": name, "path": path, "sha": sha, "url": url,
           "git_url": git_url, "html_url": html_url, "download_url": download_url,
           "_links": {"self": url, "git": git_url, "html": html_url}})
}

fn kind_of(entry: &TreeEntry) -> &'static str {
    match (entry.kind.as_str(), entry.mode.as_str()) {
        ("tree", _) => "dir",
        ("commit", _) => "submodule",
        (_, "120000") => "symlink",
        _ => "file",
    }
}

/// `GET /repos/{o}/{r}/contents/{path}?ref=`: a file (base64 `content`,
/// inline up to 1 MB), or a folder's entries (at most 1,000, as GitHub).
pub(super) fn contents(
    fake: &FakeGithub,
    repo: &str,
    path: &str,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Response {
    let path = path.trim_matches('/');
    let reference = match query.get("ref") {
        Some(r) => r.clone(),
        None => fake.state.lock().unwrap().repos[repo]
            .default_branch
            .clone(),
    };
    let Some(commit) = fake.git.resolve_commit(repo, &reference) else {
        return gh_error(
            StatusCode::NOT_FOUND,
            &format!("No commit found for the ref {reference}"),
        );
    };
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let listed = fake
        .git
        .ls_tree(repo, &format!("{commit}:{parent}"), false)
        .and_then(|(_, entries)| entries.into_iter().find(|e| e.path == name));
    let entry = match listed {
        Some(entry) => entry,
        None if path.is_empty() => TreeEntry {
            path: String::new(),
            mode: "040000".into(),
            kind: "tree".into(),
            sha: String::new(),
            size: None,
        },
        None => return not_found(),
    };
    if entry.kind == "tree" {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let items: Vec<Value> = fake
            .git
            .ls_tree(repo, &format!("{commit}:{path}"), false)
            .map(|(_, entries)| entries)
            .unwrap_or_default()
            .iter()
            .take(1000)
            .map(|e| {
                let full = format!("{prefix}{}", e.path);
                content_item(
                    fake,
                    repo,
                    &reference,
                    &full,
                    kind_of(e),
                    &e.sha,
                    e.size.unwrap_or(0),
                )
            })
            .collect();
        return json_response(StatusCode::OK, Value::Array(items));
    }
    let kind = kind_of(&entry);
    let size = entry.size.unwrap_or(0);
    let mut item = content_item(fake, repo, &reference, path, kind, &entry.sha, size);
    let bytes = fake.git.blob(repo, &entry.sha).unwrap_or_default();
    match kind {
        "symlink" => item["target"] = json!(String::from_utf8_lossy(&bytes)),
        "file" if wants(headers, "vnd.github.raw") => return raw(bytes),
        "file" if bytes.len() > INLINE_LIMIT && wants(headers, "vnd.github.object") => {
            item["encoding"] = json!("none");
            item["content"] = json!("");
        }
        "file" if bytes.len() > INLINE_LIMIT => return too_large(),
        "file" => {
            item["encoding"] = json!("base64");
            item["content"] = json!(base64_lines(&bytes));
        }
        _ => {}
    }
    json_response(StatusCode::OK, item)
}

fn too_large() -> Response {
    json_response(
        StatusCode::FORBIDDEN,
        json!({"message": "This API returns blobs up to 1 MB in size. The requested blob is too \
                           large to fetch via the API, but you can use the Git Data API to \
                           request blobs up to 100 MB in size.",
               "errors": [{"resource": "Blob", "field": "data", "code": "too_large"}],
               "documentation_url": "https://docs.github.com/rest/repos/contents#get-repository-content"}),
    )
}

/// `GET /repos/{o}/{r}/git/blobs/{file_sha}`.
pub(super) fn blob(fake: &FakeGithub, repo: &str, sha: &str, headers: &HeaderMap) -> Response {
    let Some(bytes) = fake.git.blob(repo, sha) else {
        return not_found();
    };
    if wants(headers, "vnd.github.raw") {
        return raw(bytes);
    }
    json_response(
        StatusCode::OK,
        json!({"sha": sha, "node_id": format!("B_{sha}"), "size": bytes.len(),
               "url": format!("{}/repos/{repo}/git/blobs/{sha}", fake.api_url),
               "content": base64_lines(&bytes), "encoding": "base64"}),
    )
}

/// The GitHub account an address belongs to, as a commit's `author` or
/// `committer` shows it (`None`: no account).
fn account(fake: &FakeGithub, email: &str) -> Value {
    if email == bot_email() {
        return fake.state.lock().unwrap().user_json(BOT_LOGIN);
    }
    if email == WEB_FLOW.1 {
        return json!({"login": "web-flow", "id": 19864447, "type": "User"});
    }
    Value::Null
}

/// GitHub's committer of the commits it makes and signs.
pub(super) const WEB_FLOW: (&str, &str) = ("GitHub", "noreply@github.com");

/// The app bot's commit address.
pub(super) fn bot_email() -> String {
    format!("{BOT_ID}+{BOT_LOGIN}@users.noreply.github.com")
}

/// `GET /repos/{o}/{r}/commits/{ref}`: the commit, its files, and the
/// signature verification GitHub shows (`verified` for the commits it made
/// through its API, `unsigned` otherwise).
pub(super) fn commit(fake: &FakeGithub, repo: &str, reference: &str) -> Response {
    let Some(meta) = fake.git.commit_meta(repo, reference) else {
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("No commit found for SHA: {reference}"),
        );
    };
    let (api, root, sha) = (&fake.api_url, &fake.root, &meta.sha);
    let verified = fake.git.is_verified(repo, sha);
    let verification = if verified {
        json!({"verified": true, "reason": "valid",
               "signature": "-----BEGIN PGP SIGNATURE-----\n\nfake\n-----END PGP SIGNATURE-----\n",
               "payload": format!("tree {}\n", meta.tree), "verified_at": meta.committed_at})
    } else {
        json!({"verified": false, "reason": "unsigned", "signature": null, "payload": null,
               "verified_at": null})
    };
    let parents: Vec<Value> = meta
        .parents
        .iter()
        .map(|p| {
            json!({"sha": p, "url": format!("{api}/repos/{repo}/commits/{p}"),
                        "html_url": format!("{root}/{repo}/commit/{p}")})
        })
        .collect();
    let files = fake.git.changed_files(repo, sha);
    let (additions, deletions) = files
        .iter()
        .fold((0, 0), |(a, d), f| (a + f.additions, d + f.deletions));
    let files: Vec<Value> = files
        .iter()
        .map(|f| {
            json!({"sha": f.blob, "filename": f.path, "status": f.status,
                        "additions": f.additions, "deletions": f.deletions,
                        "changes": f.additions + f.deletions})
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({
            "sha": sha,
            "node_id": format!("C_{sha}"),
            "url": format!("{api}/repos/{repo}/commits/{sha}"),
            "html_url": format!("{root}/{repo}/commit/{sha}"),
            "comments_url": format!("{api}/repos/{repo}/commits/{sha}/comments"),
            "commit": {
                "author": {"name": meta.author.name, "email": meta.author.email,
                           "date": meta.authored_at},
                "committer": {"name": meta.committer.name, "email": meta.committer.email,
                              "date": meta.committed_at},
                "message": meta.message.trim_end(),
                "tree": {"sha": meta.tree, "url": format!("{api}/repos/{repo}/git/trees/{}", meta.tree)},
                "url": format!("{api}/repos/{repo}/git/commits/{sha}"),
                "comment_count": 0,
                "verification": verification,
            },
            "author": account(fake, &meta.author.email),
            "committer": account(fake, &meta.committer.email),
            "parents": parents,
            "stats": {"total": additions + deletions, "additions": additions,
                      "deletions": deletions},
            "files": files,
        }),
    )
}
