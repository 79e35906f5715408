//! `POST /repositories/start`: the browse page's form that starts a project
//! from the folder shown. It goes through the same checks, store call and
//! audit event as `POST /api/v1/projects` ([`create_from_body`]); a refusal
//! shows the form again with the message.

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::views::{self, Nav, Page};
use super::{Admin, message_page};
use crate::http::HttpState;
use crate::http::error::ApiError;
use crate::http::projects::{create_from_body, token_actor};
use crate::ids::Provider;

pub const ACTION: &str = "/repositories/start";

/// What the form sends (and shows again after a refusal). Absent fields are
/// empty, so the shared checks name what is missing.
#[derive(Debug, Default, Deserialize)]
pub struct StartForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub repo: String,
    #[serde(default)]
    pub branch: String,
    #[serde(default)]
    pub base_path: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub mode: String,
    /// A checkbox: present (whatever its value) means on.
    #[serde(default)]
    pub auto_sync: Option<String>,
    /// A checkbox, as `auto_sync`.
    #[serde(default)]
    pub auto_merge: Option<String>,
    /// Empty: graft's own branch name (`graft/<slug>`).
    #[serde(default)]
    pub sync_branch: String,
    /// `git` or `api`; empty is the API's default (`git`).
    #[serde(default)]
    pub commit_via: String,
    #[serde(default)]
    pub integration_id: String,
}

impl StartForm {
    /// The form for a browsed folder: the ref is the target branch when it
    /// can be one (not a commit sha); GitLab keeps the integration browsed.
    pub fn for_folder(
        provider: Provider,
        repo: &str,
        reference: &str,
        path: &str,
        integration: Option<i64>,
    ) -> Self {
        let is_sha = reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit());
        let is_branch = !is_sha && crate::validation::branch_name(reference).is_ok();
        StartForm {
            provider: provider.as_str().into(),
            repo: repo.into(),
            branch: if is_branch {
                reference.into()
            } else {
                String::new()
            },
            base_path: path.into(),
            kind: "iac".into(),
            mode: "pull_request".into(),
            auto_sync: None,
            auto_merge: None,
            sync_branch: String::new(),
            commit_via: "git".into(),
            integration_id: integration
                .filter(|_| provider == Provider::Gitlab)
                .map(|id| id.to_string())
                .unwrap_or_default(),
            csrf: String::new(),
        }
    }

    /// The API's JSON body for these values.
    fn to_body(&self) -> Result<Value, ApiError> {
        let mut body = Map::new();
        for (name, value) in [
            ("provider", &self.provider),
            ("repo", &self.repo),
            ("branch", &self.branch),
            ("base_path", &self.base_path),
            ("kind", &self.kind),
            ("mode", &self.mode),
        ] {
            body.insert(name.into(), Value::String(value.trim().to_string()));
        }
        body.insert("auto_sync".into(), Value::Bool(self.auto_sync.is_some()));
        body.insert("auto_merge".into(), Value::Bool(self.auto_merge.is_some()));
        // Left empty, the API's defaults apply.
        for (name, value) in [
            ("sync_branch", &self.sync_branch),
            ("commit_via", &self.commit_via),
        ] {
            let value = value.trim();
            if !value.is_empty() {
                body.insert(name.into(), Value::String(value.to_string()));
            }
        }
        let id = self.integration_id.trim();
        if !id.is_empty() {
            let id: i64 = id.parse().map_err(|_| {
                ApiError::invalid_field(format!(
                    "`integration_id` must be a whole number, not `{id}`"
                ))
            })?;
            body.insert("integration_id".into(), Value::from(id));
        }
        Ok(Value::Object(body))
    }
}

/// The form; `csrf` is empty for bearer callers, who cannot post it.
pub fn form(values: &StartForm, csrf: &str) -> Markup {
    let option = |name: &str, current: &str| {
        html! { option value=(name) selected[name == current] { (name) } }
    };
    html! {
        form.start-project method="post" action=(ACTION) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="provider" value=(values.provider);
            input type="hidden" name="repo" value=(values.repo);
            @if !values.integration_id.is_empty() {
                input type="hidden" name="integration_id" value=(values.integration_id);
            }
            label for="branch" { "Target branch" }
            input #branch type="text" name="branch" value=(values.branch) required;
            label for="base_path" { "Base path (empty: the whole repository)" }
            input #base_path type="text" name="base_path" value=(values.base_path);
            label for="kind" { "Kind" }
            select #kind name="kind" {
                (option("iac", &values.kind))
                (option("configuration", &values.kind))
            }
            label for="mode" { "Mode" }
            select #mode name="mode" {
                (option("pull_request", &values.mode))
                (option("direct", &values.mode))
            }
            label {
                input type="checkbox" name="auto_sync" value="true" checked[values.auto_sync.is_some()];
                " Sync automatically when files change"
            }
            label {
                input type="checkbox" name="auto_merge" value="true" checked[values.auto_merge.is_some()];
                " Merge the pull request automatically once its checks pass"
            }
            label for="sync_branch" { "graft's branch (empty: graft/<project>)" }
            input #sync_branch type="text" name="sync_branch" value=(values.sync_branch);
            label for="commit_via" { "Commits" }
            select #commit_via name="commit_via" {
                option value="git" selected[values.commit_via != "api"] { "git: pushed by graft" }
                option value="api" selected[values.commit_via == "api"] {
                    "api: created and signed by the forge (for branches that require signed commits)"
                }
            }
            p { button type="submit" { "Create the project" } }
        }
    }
}

pub async fn submit(
    State(state): State<HttpState>,
    admin: Admin,
    Form(values): Form<StartForm>,
) -> Response {
    if admin.session.is_none() {
        return message_page(
            StatusCode::FORBIDDEN,
            Page::error(
                "Sign in to use this form",
                "This form needs a dashboard session (sign in at /login); scripts create \
                 projects with POST /api/v1/projects.",
            ),
        );
    }
    if !admin.check_csrf(&state, &values.csrf) {
        return message_page(
            StatusCode::FORBIDDEN,
            Page::error(
                "Form expired",
                "The project form was not sent from this dashboard (or the session \
                 changed); reload the folder and try again.",
            ),
        );
    }
    let created = match values.to_body() {
        Ok(body) => create_from_body(&state, body, &token_actor(&admin.token)).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(project) => Redirect::to(&format!("/projects/{}", project.id)).into_response(),
        Err(e) if e.status.is_server_error() => message_page(
            e.status,
            Page::error("Cannot create the project", &e.message),
        ),
        Err(e) => {
            let nav = Nav::of(&admin, &state);
            let body = html! {
                h1 { "Start a project on " code { (values.repo) } }
                div.box.error { p { (e.message) } }
                (form(&values, &admin.csrf(&state)))
            };
            let page = views::layout("Start a project", false, Some(&nav), body);
            (e.status, Html(page.into_string())).into_response()
        }
    }
}
