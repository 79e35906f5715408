//! `/api/v1/repositories`: what graft can reach on the forges, for setting
//! up projects on repositories that already have files (see
//! `forge::browse`). Admin-only: a generator token reaches its projects'
//! files, not the forges' repositories. Every answer is bounded: listings
//! are cut (and say `truncated`), a file over the files API's 1 MiB limit
//! is refused without being read.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use super::files::Content;
use super::projects::{IntegrationError, ProviderName, check_integration};
use crate::file_set::{MAX_FILE_BYTES, content_json};
use crate::forge::browse::{FileRead, RepoBrowse};
use crate::git::paths;
use crate::http::HttpState;
use crate::ids::Provider;
use crate::validation;

pub fn routes() -> OpenApiRouter<HttpState> {
    OpenApiRouter::new()
        .routes(routes!(list_repositories))
        .routes(routes!(repository_tree))
        .routes(routes!(repository_file))
}

/// A repository graft can reach.
#[derive(ToSchema)]
pub struct Repository {
    pub provider: ProviderName,
    #[schema(example = "acme/infra")]
    pub repo: String,
    /// `null` for an empty GitLab project.
    pub default_branch: Option<String>,
    /// GitLab: any visibility but `public`.
    pub private: bool,
}

#[derive(ToSchema)]
pub struct RepositoryList {
    pub repositories: Vec<Repository>,
    /// More than 5,000 repositories: the list was cut.
    pub truncated: bool,
}

#[derive(ToSchema)]
#[schema(as = EntryType)]
#[schema(rename_all = "lowercase")]
pub enum EntryTypeName {
    Blob,
    Tree,
}

/// One entry of a tree (submodules are left out).
#[derive(ToSchema)]
#[schema(as = TreeEntry)]
pub struct TreeEntryView {
    /// From the repository's root.
    #[schema(example = "infra/main.tf")]
    pub path: String,
    #[schema(rename = "type")]
    pub kind: EntryTypeName,
    /// Bytes; GitHub blobs only (GitLab's tree does not say), `null` for
    /// trees.
    pub size: Option<u64>,
    /// The git blob id; `null` for trees.
    pub blob_sha: Option<String>,
}

#[derive(ToSchema)]
pub struct RepositoryTree {
    /// The commit `ref` named when the tree was read.
    pub commit_sha: String,
    pub entries: Vec<TreeEntryView>,
    /// The forge cut the listing, or it had more than 10,000 entries.
    pub truncated: bool,
}

#[derive(ToSchema)]
pub struct RepositoryFile {
    pub path: String,
    /// As in the files API: UTF-8 text as a string, else `{"base64": …}`.
    pub content: Content,
    pub blob_sha: String,
}

/// The query parameters by name. A name the route does not take, or one
/// given twice, is refused with the parameter named: a misspelt
/// parameter is not silently ignored, and a repeated one does not
/// silently keep one of its values.
pub(crate) struct Params(BTreeMap<String, String>);

fn invalid_query(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

impl Params {
    pub(crate) fn new(query: Vec<(String, String)>, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut params = BTreeMap::new();
        for (name, value) in query {
            if !allowed.contains(&name.as_str()) {
                return Err(invalid_query(format!(
                    "unknown query parameter `{name}`; this route takes {}",
                    allowed
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            if params.contains_key(&name) {
                return Err(invalid_query(format!(
                    "query parameter `{name}` is given more than once; give it once"
                )));
            }
            params.insert(name, value);
        }
        Ok(Params(params))
    }

    /// Whether the query names `name` at all.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(crate) fn required(&self, name: &str, what: &str) -> Result<&str, ApiError> {
        match self.0.get(name).map(|v| v.trim()) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(ApiError::bad_request(
                "invalid_query",
                format!("query parameter `{name}` is required: {what}"),
            )),
        }
    }

    pub(crate) fn provider(&self) -> Result<Provider, ApiError> {
        let text = self.required("provider", "`github` or `gitlab`")?;
        Provider::parse(text).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("query parameter `provider` must be `github` or `gitlab`, not `{text}`"),
            )
        })
    }

    pub(crate) fn repo(&self, provider: Provider) -> Result<String, ApiError> {
        let repo = self.required(
            "repo",
            "the repository as `owner/name` (GitHub) or `group/sub/name` (GitLab)",
        )?;
        validation::repo_path(provider, repo)
            .map_err(|e| ApiError::bad_request("invalid_query", format!("`repo`: {e}")))?;
        Ok(repo.to_string())
    }

    /// `ref`: a branch, tag or commit, checked before the forge is asked;
    /// `None` when left out (see [`Params::open`]).
    pub(crate) fn reference(&self) -> Result<Option<String>, ApiError> {
        let Some(given) = self.0.get("ref") else {
            return Ok(None);
        };
        let reference = given.trim();
        if reference.is_empty() {
            return Err(ApiError::bad_request(
                "invalid_query",
                "query parameter `ref` is empty: give a branch, tag or commit, or leave it out \
                 for the repository's default branch",
            ));
        }
        validation::branch_name(reference)
            .map_err(|e| ApiError::bad_request("invalid_query", format!("`ref`: {e}")))?;
        Ok(Some(reference.to_string()))
    }

    /// A folder (`""`: the root) or, `required`, a file path; relative to
    /// the repository's root, no `..`.
    pub(crate) fn path(&self, required: bool) -> Result<String, ApiError> {
        let path = match self.0.get("path") {
            Some(path) => path.trim().trim_end_matches('/').to_string(),
            None if !required => String::new(),
            None => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "query parameter `path` is required: the file's path from the repository's \
                     root",
                ));
            }
        };
        let checked = if required {
            paths::validate_file_path(&path)
        } else {
            paths::validate_base_path(&path)
        };
        checked.map_err(|e| ApiError::bad_request("invalid_query", format!("`path`: {e}")))?;
        Ok(path)
    }

    /// `true` or `false`; left out, `false`. Nothing else (not even an
    /// empty value) is read as either.
    pub(crate) fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(invalid_query(format!(
                "query parameter `{name}` must be `true` or `false`, not `{other}`"
            ))),
        }
    }

    /// `integration_id`: a stored GitLab integration (else the default one).
    pub(crate) async fn integration(
        &self,
        state: &HttpState,
        provider: Provider,
    ) -> Result<Option<i64>, ApiError> {
        let Some(raw) = self.0.get("integration_id") else {
            return Ok(None);
        };
        let id = raw.trim().parse::<i64>().ok().filter(|id| *id > 0);
        let id = id.ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("query parameter `integration_id` must be a positive integer, not `{raw}`"),
            )
        })?;
        if provider != Provider::Gitlab {
            return Err(ApiError::bad_request(
                "invalid_query",
                "`integration_id` applies to provider=gitlab only; GitHub is reached through \
                 the GitHub App",
            ));
        }
        check_integration(&state.ctx.store, id, provider)
            .await
            .map_err(|e| match e {
                IntegrationError::Missing(_) => ApiError::not_found(e.to_string()),
                IntegrationError::OtherProvider { .. } => {
                    invalid_query(format!("`integration_id`: {e}"))
                }
                IntegrationError::Store(e) => e.into(),
            })?;
        Ok(Some(id))
    }
}

/// A repository opened for browsing: its path, the ref asked (else its
/// default branch) and the forge's reader.
pub(crate) struct Opened {
    pub repo: String,
    pub reference: String,
    pub browser: Arc<dyn RepoBrowse>,
}

impl Params {
    /// `repo`, `ref` and the forge's reader for it, as the tree, the file
    /// and the dashboard's browse page ask for them. Without `ref`, the
    /// repository's default branch (asked of the forge: an empty
    /// repository has none, which is `not_found`).
    pub(crate) async fn open(
        &self,
        state: &HttpState,
        provider: Provider,
        integration: Option<i64>,
    ) -> Result<Opened, ApiError> {
        let repo = self.repo(provider)?;
        let reference = self.reference()?;
        let browser = state
            .ctx
            .forges
            .browser(provider, integration, &repo)
            .await
            .map_err(ApiError::from)?;
        let reference = match reference {
            Some(reference) => reference,
            None => browser.default_branch().await.map_err(ApiError::from)?,
        };
        Ok(Opened {
            repo,
            reference,
            browser,
        })
    }
}

/// List repositories
///
/// The repositories graft can reach: on GitHub those of every
/// installation of the App, on GitLab the projects where the integration's
/// user has at least the Developer role. Sorted by name.
#[utoipa::path(
    get,
    path = "/repositories",
    tag = "repositories",
    params(
        ("provider" = ProviderName, Query, description = "`github` or `gitlab`"),
        ("integration_id" = Option<i64>, Query, description = "GitLab: a stored integration; left out, the default one (GITLAB_URL)"),
    ),
    responses(
        (status = 200, description = "The repositories", body = RepositoryList),
        (status = 400, description = "`invalid_query`: a parameter is missing or wrong", body = ErrorBody),
        (status = 404, description = "`not_found`: no such integration", body = ErrorBody),
        (status = 502, description = "`forge_error`: the forge failed or refused graft's credentials", body = ErrorBody),
        (status = 503, description = "`forge_not_configured`, `rate_limited`", body = ErrorBody),
    )
)]
async fn list_repositories(
    State(state): State<HttpState>,
    ApiQuery(query): ApiQuery<Vec<(String, String)>>,
) -> Result<ApiJson<Value>, ApiError> {
    let params = Params::new(query, &["provider", "integration_id"])?;
    let provider = params.provider()?;
    let integration = params.integration(&state, provider).await?;
    let list = state
        .ctx
        .forges
        .repositories(provider, integration)
        .await
        .map_err(ApiError::from)?;
    Ok(ApiJson(json!({
        "repositories": list.repositories,
        "truncated": list.truncated,
    })))
}

/// Browse a tree
///
/// The entries of folder `path` at `ref` (every level below it with
/// `recursive=true`), paths from the repository's root. Without `ref`, at
/// the repository's default branch.
#[utoipa::path(
    get,
    path = "/repositories/tree",
    tag = "repositories",
    params(
        ("provider" = ProviderName, Query, description = "`github` or `gitlab`"),
        ("repo" = String, Query, description = "`owner/name` or `group/sub/name`"),
        ("ref" = Option<String>, Query, description = "A branch, tag or commit; left out, the repository's default branch"),
        ("path" = Option<String>, Query, description = "A folder; left out, the root"),
        ("recursive" = Option<bool>, Query, description = "Every level below `path`"),
        ("integration_id" = Option<i64>, Query, description = "GitLab: a stored integration"),
    ),
    responses(
        (status = 200, description = "The tree", body = RepositoryTree),
        (status = 400, description = "`invalid_query`: a parameter is missing or wrong (`..` in `path`, say)", body = ErrorBody),
        (status = 403, description = "`forge_forbidden`: the forge denied graft access", body = ErrorBody),
        (status = 404, description = "`not_found`: no such repository, ref or folder (or graft cannot see it)", body = ErrorBody),
        (status = 502, description = "`forge_error`", body = ErrorBody),
        (status = 503, description = "`forge_not_configured`, `rate_limited`", body = ErrorBody),
    )
)]
async fn repository_tree(
    State(state): State<HttpState>,
    ApiQuery(query): ApiQuery<Vec<(String, String)>>,
) -> Result<ApiJson<Value>, ApiError> {
    let params = Params::new(
        query,
        &[
            "provider",
            "repo",
            "ref",
            "path",
            "recursive",
            "integration_id",
        ],
    )?;
    let provider = params.provider()?;
    let path = params.path(false)?;
    let recursive = params.flag("recursive")?;
    let integration = params.integration(&state, provider).await?;
    let Opened {
        reference, browser, ..
    } = params.open(&state, provider, integration).await?;
    let tree = browser
        .tree(&reference, &path, recursive)
        .await
        .map_err(ApiError::from)?;
    // `TreeEntry` serialises as the documented entry: {path, type, size, blob_sha}.
    Ok(ApiJson(json!({
        "commit_sha": tree.commit_sha,
        "entries": tree.entries,
        "truncated": tree.truncated,
    })))
}

/// Read a file
///
/// One file at `ref` (without it, the repository's default branch), its
/// content as in the files API. Files over 1 MiB (the files API's limit)
/// are refused without being read.
#[utoipa::path(
    get,
    path = "/repositories/file",
    tag = "repositories",
    params(
        ("provider" = ProviderName, Query, description = "`github` or `gitlab`"),
        ("repo" = String, Query, description = "`owner/name` or `group/sub/name`"),
        ("ref" = Option<String>, Query, description = "A branch, tag or commit; left out, the repository's default branch"),
        ("path" = String, Query, description = "The file, from the repository's root"),
        ("integration_id" = Option<i64>, Query, description = "GitLab: a stored integration"),
    ),
    responses(
        (status = 200, description = "The file", body = RepositoryFile),
        (status = 400, description = "`invalid_query`: a parameter is missing or wrong", body = ErrorBody),
        (status = 403, description = "`forge_forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such repository, ref or file", body = ErrorBody),
        (status = 413, description = "`too_large`: the file is over 1 MiB", body = ErrorBody),
        (status = 422, description = "`not_a_file`: the path is a folder or a submodule", body = ErrorBody),
        (status = 502, description = "`forge_error`", body = ErrorBody),
        (status = 503, description = "`forge_not_configured`, `rate_limited`", body = ErrorBody),
    )
)]
async fn repository_file(
    State(state): State<HttpState>,
    ApiQuery(query): ApiQuery<Vec<(String, String)>>,
) -> Result<ApiJson<Value>, ApiError> {
    let params = Params::new(
        query,
        &["provider", "repo", "ref", "path", "integration_id"],
    )?;
    let provider = params.provider()?;
    let path = params.path(true)?;
    let integration = params.integration(&state, provider).await?;
    let Opened {
        reference, browser, ..
    } = params.open(&state, provider, integration).await?;
    match browser
        .file(&reference, &path, MAX_FILE_BYTES as u64)
        .await
        .map_err(ApiError::from)?
    {
        FileRead::File {
            path,
            content,
            blob_sha,
        } => Ok(ApiJson(json!({
            "path": path,
            "content": content_json(&content),
            "blob_sha": blob_sha,
        }))),
        FileRead::TooLarge { size } => Err(ApiError::too_large(format!(
            "`{path}` is {size} bytes; graft reads files of at most {MAX_FILE_BYTES} bytes \
             (the files API's limit)"
        ))),
        FileRead::NotAFile => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_a_file",
            format!(
                "`{path}` is a folder or a submodule, not a file; list it with GET \
                 /api/v1/repositories/tree"
            ),
        )),
    }
}
