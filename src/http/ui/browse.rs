//! `/repositories`: browsing what graft reaches, one page with links (no
//! scripts): the providers, a provider's repositories, a folder of one
//! repository at a ref, a file. The same checks and forge calls as
//! `/api/v1/repositories` (read only, so no CSRF token is needed); a folder
//! shows a form that starts a project from it ([`start`]).

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};

use super::start::{self, StartForm};
use super::views::{self, Nav, Page};
use super::{Admin, message_page};
use crate::file_set::MAX_FILE_BYTES;
use crate::forge::browse::{EntryKind, FileRead};
use crate::http::HttpState;
use crate::http::error::ApiError;
use crate::http::repositories::{Opened, Params};

const PARAMS: &[&str] = &["provider", "repo", "ref", "path", "file", "integration_id"];

/// A link to this page with `pairs` as its query.
fn link(pairs: &[(&str, &str)]) -> String {
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::forge::http::encode(v)))
        .collect();
    format!("/repositories?{}", query.join("&"))
}

pub async fn page(
    State(state): State<HttpState>,
    admin: Admin,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let nav = Nav::of(&admin, &state);
    match body(&state, query, &admin.csrf(&state)).await {
        Ok((title, body)) => {
            Html(views::layout(&title, false, Some(&nav), body).into_string()).into_response()
        }
        Err(e) => message_page(e.status, Page::error("Cannot browse", &e.message)),
    }
}

async fn body(
    state: &HttpState,
    query: Vec<(String, String)>,
    csrf: &str,
) -> Result<(String, Markup), ApiError> {
    let params = Params::new(query, PARAMS)?;
    let file = params.get("file").map(str::to_string);
    if !params.has("provider") {
        let body = html! {
            h1 { "Repositories" }
            p { "Browse what graft can reach, then start a project from a folder." }
            ul {
                li { a href=(link(&[("provider", "github")])) { "GitHub (the App's installations)" } }
                li { a href=(link(&[("provider", "gitlab")])) { "GitLab (projects where graft is a Developer)" } }
            }
        };
        return Ok(("Repositories".into(), body));
    }
    let provider = params.provider()?;
    let integration = params.integration(state, provider).await?;
    if !params.has("repo") {
        let list = state
            .ctx
            .forges
            .repositories(provider, integration)
            .await
            .map_err(ApiError::from)?;
        let body = html! {
            h1 { "Repositories on " (provider) }
            @if list.truncated { div.box.error { p { "Only the first 5,000 are shown." } } }
            table {
                tr { th { "repository" } th { "default branch" } th { "visibility" } }
                @for repo in &list.repositories {
                    tr {
                        td {
                            @match &repo.default_branch {
                                Some(branch) => a href=(link(&[("provider", provider.as_str()), ("repo", &repo.repo), ("ref", branch)])) { (repo.repo) },
                                None => span { (repo.repo) " " span.muted { "(empty)" } },
                            }
                        }
                        td { code { (repo.default_branch.as_deref().unwrap_or("")) } }
                        td { @if repo.private { "private" } @else { "public" } }
                    }
                }
            }
        };
        return Ok((format!("Repositories on {provider}"), body));
    }
    let Opened {
        repo,
        reference,
        browser,
    } = params.open(state, provider, integration).await?;
    let here = |extra: &[(&str, &str)]| {
        let mut pairs = vec![
            ("provider", provider.as_str()),
            ("repo", &repo),
            ("ref", &reference),
        ];
        pairs.extend_from_slice(extra);
        link(&pairs)
    };
    if let Some(file) = file {
        let path = Params::new(vec![("path".to_string(), file)], &["path"])?.path(true)?;
        let read = browser
            .file(&reference, &path, MAX_FILE_BYTES as u64)
            .await
            .map_err(ApiError::from)?;
        let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
        let body = html! {
            h1 { code { (repo) } " · " code { (path) } }
            p { a href=(here(&[("path", parent)])) { "Back to the folder" } " at " code { (reference) } }
            @match read {
                FileRead::File { content, blob_sha, .. } => {
                    p.muted { "blob " span.sha { (blob_sha) } ", " (content.len()) " bytes" }
                    @match std::str::from_utf8(&content) {
                        Ok(text) => pre.box { (text) },
                        Err(_) => p { "Binary content; not shown." },
                    }
                },
                FileRead::TooLarge { size } => div.box.error { p { "The file is " (size) " bytes; graft reads files of at most " (MAX_FILE_BYTES) " bytes." } },
                FileRead::NotAFile => div.box.error { p { "This is a folder or a submodule." } },
            }
        };
        return Ok((format!("{repo}: {path}"), body));
    }
    let path = params.path(false)?;
    let tree = browser
        .tree(&reference, &path, false)
        .await
        .map_err(ApiError::from)?;
    let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    let start = StartForm::for_folder(provider, &repo, &reference, &path, integration);
    let body = html! {
        h1 { code { (repo) } " · " code { @if path.is_empty() { "/" } @else { (path) } } }
        p.muted { "at " code { (reference) } " (commit " span.sha { (tree.commit_sha) } ")" }
        @if !path.is_empty() { p { a href=(here(&[("path", parent)])) { "Up" } } }
        @if tree.truncated { div.box.error { p { "The folder has more entries than graft shows." } } }
        table {
            tr { th { "path" } th { "size" } }
            @for entry in &tree.entries {
                tr {
                    td {
                        @match entry.kind {
                            EntryKind::Tree => a href=(here(&[("path", &entry.path)])) { (entry.path) "/" },
                            EntryKind::Blob => a href=(here(&[("file", &entry.path)])) { (entry.path) },
                        }
                    }
                    td { (entry.size.map(|s| s.to_string()).unwrap_or_default()) }
                }
            }
        }
        h2 { "Start a project from this folder" }
        p.muted {
            "graft will manage " code { @if path.is_empty() { "the whole repository" } @else { (path) } }
            " on the target branch. Files already there stay unmanaged until you adopt them "
            "(" code { "POST /api/v1/projects/{id}/adopt" } ") from the new project's page."
        }
        (start::form(&start, csrf))
    };
    Ok((format!("{repo}: {path}"), body))
}
