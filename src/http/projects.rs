//! `/api/v1/projects`: create, read and list projects with their sync
//! state (status, error, last synced commit, the PR), schedule a sync,
//! read the audit log.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use super::input::{Fields, project_id};
use super::project_settings::{CommitViaName, take_commit_via};
use crate::events::Provider;
use crate::http::HttpState;
use crate::ids::{PrNumber, ProjectId};
use crate::store::audit::NewEvent;
use crate::store::projects::{Kind, Mode, NewProject, Project};
use crate::store::tokens::ApiToken;
use crate::store::{Store, StoreError, now_ms};
use crate::sync::schedule::SyncRequest;
use crate::validation;

pub fn routes() -> OpenApiRouter<HttpState> {
    OpenApiRouter::new()
        .routes(routes!(create_project, list_projects))
        .routes(routes!(
            get_project,
            super::project_settings::update_project
        ))
        .routes(routes!(sync_now))
        .routes(routes!(list_events))
}

// The handler reads the body field by field ([`parse_new_project`],
// against `PROJECT_FIELDS`) so that each error names its field; this
// describes what that reading accepts.
/// A new project. Fields not listed here are refused.
#[derive(ToSchema)]
pub struct NewProjectBody {
    #[schema(example = "github")]
    pub provider: ProviderName,
    /// `owner/name` (GitHub) or `group/…/name` (GitLab).
    #[schema(example = "acme/infra")]
    pub repo: String,
    /// The target branch.
    #[schema(example = "main")]
    pub branch: String,
    /// The folder of the repository that graft manages; `""` (the default)
    /// is the whole repository.
    #[schema(example = "generated")]
    pub base_path: Option<String>,
    pub kind: KindName,
    pub mode: ModeName,
    /// Default `false`.
    pub auto_sync: Option<bool>,
    /// Default `false`.
    pub auto_merge: Option<bool>,
    /// GitLab projects only: the integration whose token to use.
    pub integration_id: Option<i64>,
    /// Defaults to `graft/<slug>`; must differ from `branch`.
    pub sync_branch: Option<String>,
    /// Default `git`.
    pub commit_via: Option<CommitViaName>,
}

#[derive(ToSchema)]
#[schema(as = Provider)]
#[schema(rename_all = "lowercase")]
pub enum ProviderName {
    Github,
    Gitlab,
}

/// `iac`: every change is synced (with `auto_sync`); `configuration`: only
/// changes to files with `sync_on_change`.
#[derive(ToSchema)]
#[schema(as = Kind)]
#[schema(rename_all = "lowercase")]
pub enum KindName {
    Iac,
    Configuration,
}

#[derive(ToSchema)]
#[schema(as = Mode)]
#[schema(rename_all = "snake_case")]
pub enum ModeName {
    PullRequest,
    Direct,
}

#[derive(ToSchema)]
#[schema(as = SyncStatus)]
#[schema(rename_all = "lowercase")]
pub enum SyncStatusName {
    Idle,
    Syncing,
    Success,
    Error,
    Paused,
}

/// A project as the API shows it: its settings, its sync state and the
/// number of files waiting for a sync. Times are milliseconds since the
/// Unix epoch.
#[derive(ToSchema)]
#[schema(as = Project)]
pub struct ProjectView {
    // Shown as plain integers, as before the id types: the document
    // stays the same.
    #[schema(value_type = i64)]
    pub id: ProjectId,
    pub provider: ProviderName,
    pub integration_id: Option<i64>,
    pub repo: String,
    pub branch: String,
    pub base_path: String,
    pub kind: KindName,
    pub mode: ModeName,
    pub auto_sync: bool,
    pub auto_merge: bool,
    pub commit_via: CommitViaName,
    pub paused: bool,
    pub slug: String,
    pub sync_branch: String,
    pub sync_status: SyncStatusName,
    pub sync_error: Option<String>,
    pub last_synced_commit_sha: Option<String>,
    pub last_pulled_at: Option<i64>,
    #[schema(value_type = Option<i64>)]
    pub pull_request_number: Option<PrNumber>,
    pub pull_request_url: Option<String>,
    /// Auto-sync waits for a human (after a push to the sync branch).
    pub auto_sync_held: bool,
    pub sync_branch_shared: bool,
    /// Paths in conflict with the target branch, if any.
    pub conflicts: Option<Vec<String>>,
    /// The generator that last uploaded files.
    pub source: Option<String>,
    /// The last check's findings.
    #[schema(value_type = Option<Object>)]
    pub last_findings: Option<Value>,
    pub created_at: i64,
    pub updated_at: i64,
    pub pending_files: i64,
}

#[derive(ToSchema)]
pub struct ProjectList {
    pub projects: Vec<ProjectView>,
}

#[derive(ToSchema)]
pub struct SyncQueued {
    pub job_id: i64,
}

/// One entry of the audit log.
#[derive(ToSchema)]
#[schema(as = Event)]
pub struct EventView {
    pub id: i64,
    #[schema(value_type = Option<i64>)]
    pub project_id: Option<ProjectId>,
    /// `token:NAME`, `github:LOGIN`, `graft`, …
    pub actor: String,
    #[schema(example = "sync.requested")]
    pub kind: String,
    pub message: String,
    pub commit_sha: Option<String>,
    pub pull_request_url: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
    pub created_at: i64,
}

#[derive(ToSchema)]
pub struct EventList {
    pub events: Vec<EventView>,
}

/// Audit events per request by default, and at most.
pub const DEFAULT_EVENT_LIMIT: i64 = 100;
pub const MAX_EVENT_LIMIT: i64 = 1000;

const PROJECT_FIELDS: &[&str] = &[
    "provider",
    "repo",
    "branch",
    "base_path",
    "kind",
    "mode",
    "auto_sync",
    "auto_merge",
    "integration_id",
    "sync_branch",
    "commit_via",
];

/// The actor the audit log records for a request.
pub fn actor(caller: &Caller) -> String {
    token_actor(&caller.0)
}

/// The audit actor of a token (an API caller or a dashboard session).
pub fn token_actor(token: &ApiToken) -> String {
    format!("token:{}", token.name)
}

/// The project named by the URL, or a 404 that says which.
pub async fn load_project(store: &Store, raw_id: &str) -> Result<Project, ApiError> {
    let id = project_id(raw_id)?;
    Ok(store.require_project(id).await?)
}

/// A project as the API shows it: every state field plus `pending_files`.
pub async fn project_json(store: &Store, project: &Project) -> Result<Value, ApiError> {
    with_pending(project, store.pending_count(project.id).await?)
}

fn with_pending(project: &Project, pending: i64) -> Result<Value, ApiError> {
    let mut value = serde_json::to_value(project).map_err(|e| {
        tracing::error!(error = %e, "serializing a project");
        ApiError::internal()
    })?;
    value["pending_files"] = json!(pending);
    Ok(value)
}

/// Reads and checks a new project; everything but the integration's
/// existence (which needs the database).
pub fn parse_new_project(body: Value) -> Result<NewProject, ApiError> {
    let mut f = Fields::new(body, "", PROJECT_FIELDS)?;
    let provider_text = f.str("provider")?;
    let provider = Provider::parse(&provider_text).ok_or_else(|| {
        ApiError::invalid_field(format!(
            "`provider` must be `github` or `gitlab`, not `{provider_text}`"
        ))
    })?;
    let repo = f.str("repo")?;
    validation::repo_path(provider, &repo).map_err(ApiError::invalid_field)?;
    let branch = f.str("branch")?;
    validation::branch_name(&branch).map_err(ApiError::invalid_field)?;
    let base_path = f.opt_str("base_path")?.unwrap_or_default();
    validation::base_path(&base_path).map_err(ApiError::invalid_field)?;
    let kind_text = f.str("kind")?;
    let kind = Kind::parse(&kind_text).ok_or_else(|| {
        ApiError::invalid_field(format!(
            "`kind` must be `iac` or `configuration`, not `{kind_text}`"
        ))
    })?;
    let mode_text = f.str("mode")?;
    let mode = Mode::parse(&mode_text).ok_or_else(|| {
        ApiError::invalid_field(format!(
            "`mode` must be `pull_request` or `direct`, not `{mode_text}`"
        ))
    })?;
    let auto_sync = f.opt_bool("auto_sync")?.unwrap_or(false);
    let auto_merge = f.opt_bool("auto_merge")?.unwrap_or(false);
    let integration_id = f.opt_i64("integration_id")?;
    if integration_id.is_some() && provider != Provider::Gitlab {
        return Err(ApiError::invalid_field(
            "`integration_id` applies to gitlab projects only; GitHub projects use the \
             GitHub App installation of the repository",
        ));
    }
    let sync_branch = f.opt_str("sync_branch")?;
    if let Some(sync_branch) = &sync_branch {
        validation::branch_name(sync_branch)
            .map_err(|e| ApiError::invalid_field(format!("`sync_branch`: {e}")))?;
        if *sync_branch == branch {
            return Err(ApiError::invalid_field(format!(
                "`sync_branch` must differ from the target `branch` `{branch}`: graft pushes \
                 its own branch and opens a pull request from it"
            )));
        }
    }
    Ok(NewProject {
        provider,
        integration_id,
        repo,
        branch,
        base_path,
        kind,
        mode,
        auto_sync,
        auto_merge,
        sync_branch,
        commit_via: Default::default(),
    })
}

/// Why an `integration_id` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IntegrationError {
    #[error(
        "integration {0} does not exist; list integrations with GET /api/v1/integrations/gitlab"
    )]
    Missing(i64),
    #[error("integration {id} is a {found} integration, not a {wanted} one")]
    OtherProvider {
        id: i64,
        found: Provider,
        wanted: Provider,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The one check of an `integration_id`: it exists and is `provider`'s.
/// Where the id came from decides the status: in a project's body it is
/// a field of a well-formed request, `422 invalid_field` either way; in
/// the repositories' query a missing one is `404 not_found` (like a
/// repository or ref the query names that does not exist) and one of
/// another provider a wrong parameter, `400 invalid_query`.
pub async fn check_integration(
    store: &Store,
    id: i64,
    provider: Provider,
) -> Result<(), IntegrationError> {
    match store.integration_credentials(id).await {
        Ok(found) if found.provider == provider => Ok(()),
        Ok(found) => Err(IntegrationError::OtherProvider {
            id,
            found: found.provider,
            wanted: provider,
        }),
        Err(StoreError::NotFound(_)) => Err(IntegrationError::Missing(id)),
        Err(e) => Err(e.into()),
    }
}

/// Create a project
#[utoipa::path(
    post,
    path = "/projects",
    tag = "projects",
    request_body = NewProjectBody,
    responses(
        (status = 201, description = "Created", body = ProjectView),
        (status = 409, description = "`conflict`: the project exists, or its branches clash with another project's", body = ErrorBody),
        (status = 422, description = "`invalid_field`: the message names the field", body = ErrorBody),
    )
)]
async fn create_project(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let project = create_from_body(&state, body, &actor(&caller)).await?;
    Ok((
        StatusCode::CREATED,
        Json(project_json(&state.ctx.store, &project).await?),
    ))
}

/// Checks a new project's body, stores the project and records
/// `project.created` as `actor`: the API and the dashboard's form both
/// create projects here, so they refuse the same input with the same words.
pub async fn create_from_body(
    state: &HttpState,
    mut body: Value,
    actor: &str,
) -> Result<Project, ApiError> {
    let commit_via = take_commit_via(&mut body)?;
    let mut new = parse_new_project(body)?;
    new.commit_via = commit_via.unwrap_or_default();
    if let Some(id) = new.integration_id {
        check_integration(&state.ctx.store, id, new.provider)
            .await
            .map_err(|e| match e {
                IntegrationError::Store(e) => e.into(),
                refused => ApiError::invalid_field(format!("`integration_id`: {refused}")),
            })?;
    }
    let now = now_ms();
    // One INSERT, `commit_via` included: no project exists half-made.
    let project = state.ctx.store.create_project(&new, now).await?;
    state
        .ctx
        .store
        .record_event(
            &NewEvent {
                project_id: Some(project.id),
                actor,
                kind: "project.created",
                message: &format!(
                    "project {} created for {} {} branch `{}` base path `{}`",
                    project.id, project.provider, project.repo, project.branch, project.base_path
                ),
                ..NewEvent::default()
            },
            now,
        )
        .await?;
    Ok(project)
}

/// List projects
///
/// A generator token sees only its own projects.
#[utoipa::path(
    get,
    path = "/projects",
    tag = "projects",
    responses((status = 200, description = "The projects", body = ProjectList))
)]
async fn list_projects(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
) -> Result<impl IntoResponse, ApiError> {
    // One count query for the whole list, not one per project.
    let pending = state.ctx.store.pending_counts().await?;
    let projects = state
        .ctx
        .store
        .list_projects()
        .await?
        .iter()
        // A generator token sees only its own projects.
        .filter(|p| caller.access().reaches(p.id))
        .map(|p| with_pending(p, pending.get(&p.id).copied().unwrap_or(0)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "projects": projects })))
}

/// Read a project
#[utoipa::path(
    get,
    path = "/projects/{id}",
    tag = "projects",
    params(("id" = i64, Path, description = "The project's id")),
    responses(
        (status = 200, description = "The project", body = ProjectView),
        (status = 404, description = "`not_found` (also for another generator's project)", body = ErrorBody),
    )
)]
async fn get_project(
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let project = load_project(&state.ctx.store, &id).await?;
    Ok(Json(project_json(&state.ctx.store, &project).await?))
}

/// Queue a sync
///
/// Queues a sync of every pending file of the project.
#[utoipa::path(
    post,
    path = "/projects/{id}/sync",
    tag = "projects",
    params(("id" = i64, Path, description = "The project's id")),
    responses(
        (status = 202, description = "Queued", body = SyncQueued),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
async fn sync_now(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let project = load_project(&state.ctx.store, &id).await?;
    let now = now_ms();
    let actor = actor(&caller);
    let request = SyncRequest::explicit(&actor);
    let job_id = state
        .ctx
        .jobs
        .enqueue_sync(project.id, &request, now)
        .await?;
    state
        .ctx
        .store
        .record_event(
            &NewEvent {
                project_id: Some(project.id),
                actor: &actor,
                kind: "sync.requested",
                message: &format!("sync requested through the API (job {job_id})"),
                details: Some(json!({ "job_id": job_id })),
                ..NewEvent::default()
            },
            now,
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job_id": job_id }))))
}

fn event_limit(query: &HashMap<String, String>) -> Result<i64, ApiError> {
    let Some(raw) = query.get("limit") else {
        return Ok(DEFAULT_EVENT_LIMIT);
    };
    raw.parse::<i64>()
        .ok()
        .filter(|n| (1..=MAX_EVENT_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::invalid_field(format!(
                "query parameter `limit` must be an integer from 1 to {MAX_EVENT_LIMIT}, not `{raw}`"
            ))
        })
}

/// Read the audit log
///
/// The project's events, newest first.
#[utoipa::path(
    get,
    path = "/projects/{id}/events",
    tag = "projects",
    params(
        ("id" = i64, Path, description = "The project's id"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "How many events (default 100)"),
    ),
    responses(
        (status = 200, description = "The events", body = EventList),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 422, description = "`invalid_field`: `limit` out of range", body = ErrorBody),
    )
)]
async fn list_events(
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = event_limit(&query)?;
    let project = load_project(&state.ctx.store, &id).await?;
    let events = state.ctx.store.list_events(Some(project.id), limit).await?;
    Ok(Json(json!({ "events": events })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Value {
        json!({
            "provider": "github", "repo": "acme/infra", "branch": "main",
            "base_path": "gen", "kind": "iac", "mode": "pull_request",
            "auto_sync": true, "auto_merge": false
        })
    }

    #[test]
    fn a_complete_body_parses() {
        let new = parse_new_project(body()).unwrap();
        assert_eq!(new.kind, Kind::Iac);
        assert!(new.auto_sync && !new.auto_merge);
        assert_eq!(new.sync_branch, None);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("provider", json!("bitbucket"), "provider"),
            ("repo", json!("acme"), "repo"),
            ("branch", json!("a..b"), "branch"),
            ("base_path", json!("../x"), "base_path"),
            ("kind", json!("helm"), "kind"),
            ("mode", json!("yolo"), "mode"),
            ("auto_sync", json!("yes"), "auto_sync"),
            ("auto_merge", json!(1), "auto_merge"),
            ("sync_branch", json!("x y"), "sync_branch"),
            ("sync_branch", json!("main"), "sync_branch"),
            ("integration_id", json!(3), "integration_id"),
            ("colour", json!("red"), "colour"),
        ];
        for (field, value, named) in cases {
            let mut b = body();
            b[field] = value;
            let err = parse_new_project(b).unwrap_err();
            assert_eq!(err.code, "invalid_field", "{field}");
            assert!(err.message.contains(named), "{field}: {}", err.message);
        }
    }

    #[test]
    fn event_limits() {
        let q = |v: &str| HashMap::from([("limit".to_string(), v.to_string())]);
        assert_eq!(event_limit(&HashMap::new()).unwrap(), 100);
        assert_eq!(event_limit(&q("1000")).unwrap(), 1000);
        for bad in ["0", "1001", "x", "-3"] {
            assert!(event_limit(&q(bad)).is_err(), "{bad}");
        }
    }
}
