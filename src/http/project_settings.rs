//! A project's settings that may change after creation:
//! `PATCH /api/v1/projects/{id}` with `commit_via` (how a sync writes its
//! commit), also read from the creation request.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use super::input::Fields;
use super::projects::{ProjectView, actor, load_project, project_json};
use crate::http::HttpState;
use crate::store::audit::NewEvent;
use crate::store::commit_via::CommitVia;
use crate::store::now_ms;

/// `git` (default): a git push. `api`: the forge's API writes (and signs)
/// the commit, for branches that require signed commits.
#[derive(ToSchema)]
#[schema(as = CommitVia)]
#[schema(rename_all = "lowercase")]
pub enum CommitViaName {
    Git,
    Api,
}

/// The settings to change; fields not listed here are refused.
#[derive(ToSchema)]
pub struct ProjectUpdateBody {
    pub commit_via: Option<CommitViaName>,
}

const UPDATE_FIELDS: &[&str] = &["commit_via"];

/// Reads `commit_via` from `f`, if given.
pub fn commit_via_field(f: &mut Fields) -> Result<Option<CommitVia>, ApiError> {
    let Some(text) = f.opt_str("commit_via")? else {
        return Ok(None);
    };
    CommitVia::parse(&text).map(Some).ok_or_else(|| {
        ApiError::invalid_field(format!("`commit_via` must be `git` or `api`, not `{text}`"))
    })
}

/// Takes `commit_via` out of a creation request's body (the rest is read
/// by the project parser).
pub fn take_commit_via(body: &mut Value) -> Result<Option<CommitVia>, ApiError> {
    let Some(map) = body.as_object_mut() else {
        return Ok(None);
    };
    let Some(value) = map.remove("commit_via") else {
        return Ok(None);
    };
    let mut f = Fields::new(
        serde_json::json!({ "commit_via": value }),
        "",
        UPDATE_FIELDS,
    )?;
    commit_via_field(&mut f)
}

/// Change a project's settings
///
/// Admin. Today: `commit_via`.
#[utoipa::path(
    patch,
    path = "/projects/{id}",
    tag = "projects",
    params(("id" = i64, Path, description = "The project's id")),
    request_body = ProjectUpdateBody,
    responses(
        (status = 200, description = "The project", body = ProjectView),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 422, description = "`invalid_field`: the message names the field", body = ErrorBody),
    )
)]
pub async fn update_project(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let project = load_project(&state.ctx.store, &id).await?;
    let mut f = Fields::new(body, "", UPDATE_FIELDS)?;
    let store = &state.ctx.store;
    if let Some(via) = commit_via_field(&mut f)?
        && via != project.commit_via
    {
        let now = now_ms();
        store.set_commit_via(project.id, via, now).await?;
        store
            .record_event(
                &NewEvent {
                    project_id: Some(project.id),
                    actor: &actor(&caller),
                    kind: "project.updated",
                    message: &format!(
                        "commit mode changed from `{}` to `{}`",
                        project.commit_via.as_str(),
                        via.as_str()
                    ),
                    ..NewEvent::default()
                },
                now,
            )
            .await?;
    }
    let project = store.require_project(project.id).await?;
    Ok(Json(project_json(store, &project).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commit_via_is_taken_from_a_creation_body() {
        let mut body = json!({"repo": "a/b", "commit_via": "api"});
        assert_eq!(take_commit_via(&mut body).unwrap(), Some(CommitVia::Api));
        assert_eq!(body, json!({"repo": "a/b"}));
        let mut body = json!({"repo": "a/b"});
        assert_eq!(take_commit_via(&mut body).unwrap(), None);
        let mut body = json!({"commit_via": null});
        assert_eq!(take_commit_via(&mut body).unwrap(), None);
    }

    #[test]
    fn a_wrong_commit_via_names_the_field_and_the_choices() {
        for bad in [json!({"commit_via": "push"}), json!({"commit_via": 1})] {
            let mut body = bad;
            let error = take_commit_via(&mut body).unwrap_err();
            assert!(error.message.contains("commit_via"), "{error:?}");
        }
    }
}
