//! The server-rendered dashboard (`/`, `/projects/{id}`) behind an admin
//! login: an API token exchanged for a signed session cookie (see
//! [`session`]), or `Authorization: Bearer` for scripts. No JavaScript;
//! the pages refresh themselves.

mod browse;
pub mod session;
mod start;
pub(crate) mod views;

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use crate::forge::GithubAppSource;
use crate::forge::github::manifest;
use crate::http::HttpState;
use crate::ids::Provider;
use crate::store::now_ms;
use crate::store::projects::Project;
use crate::store::tokens::ApiToken;
use session::{LOGIN_COOKIE, SESSION_COOKIE, SESSION_TTL_MS, Session};
pub(crate) use views::{Page, message_page};

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/", get(dashboard))
        .route("/projects/{id}", get(project_page))
        .route("/repositories", get(browse::page))
        .route(start::ACTION, post(start::submit))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
}

/// Headers every HTML page gets: no caching of admin pages, no framing, no
/// scripts. A handler may set its own Content-Security-Policy (the set-up
/// page posts a form to GitHub).
pub async fn page_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let is_html = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !is_html {
        return response;
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(axum::http::header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(DEFAULT_CSP));
    response
}

pub const DEFAULT_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A signed-in admin: by session cookie (then forms need `csrf`) or by
/// bearer token (scripts; no forms).
#[derive(Debug, Clone)]
pub struct Admin {
    pub token: ApiToken,
    pub session: Option<Session>,
}

impl Admin {
    /// The CSRF token for this admin's forms (empty for bearer callers).
    pub fn csrf(&self, state: &HttpState) -> String {
        self.session
            .as_ref()
            .map(|s| state.sessions.csrf_token(s))
            .unwrap_or_default()
    }

    pub fn check_csrf(&self, state: &HttpState, given: &str) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| state.sessions.check_csrf(s, given))
    }
}

fn login_redirect(parts: &Parts) -> Response {
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let next: String =
        percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC).to_string();
    Redirect::to(&format!("/login?next={next}")).into_response()
}

impl FromRequestParts<HttpState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, Response> {
        let now = now_ms();
        let internal = |e| {
            tracing::error!(error = %e, "store error while checking a dashboard login");
            message_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                Page::error("graft hit an internal error", "The details are in its log."),
            )
        };
        if let Some(header) = parts.headers.get(AUTHORIZATION) {
            let token = header
                .to_str()
                .ok()
                .and_then(super::auth::bearer_token)
                .unwrap_or("");
            return match state.ctx.store.authenticate_token(token, now).await {
                Ok(Some(token)) if !token.access.is_admin() => Err(not_an_admin(&token)),
                Ok(Some(token)) => Ok(Admin {
                    token,
                    session: None,
                }),
                Ok(None) => Err(message_page(
                    StatusCode::UNAUTHORIZED,
                    Page::error(
                        "Not signed in",
                        "The bearer token is not valid (unknown or revoked).",
                    ),
                )),
                Err(e) => Err(internal(e)),
            };
        }
        let cookies = super::auth::cookie_header(&parts.headers);
        let Some(session) = session::cookie(&cookies, SESSION_COOKIE)
            .and_then(|value| state.sessions.verify(value, now))
        else {
            return Err(login_redirect(parts));
        };
        match state.ctx.store.active_token(session.token_id).await {
            Ok(Some(token)) if !token.access.is_admin() => Err(not_an_admin(&token)),
            Ok(Some(token)) => Ok(Admin {
                token,
                session: Some(session),
            }),
            Ok(None) => Err(login_redirect(parts)),
            Err(e) => Err(internal(e)),
        }
    }
}

/// The dashboard and set-up are for admin tokens; a generator token
/// only writes its projects' files through the API.
fn scope_refusal(token: &ApiToken) -> String {
    format!(
        "This token's scope ({}) does not allow signing in to the dashboard; it may only \
         write its projects' files through the API. Sign in with an admin token.",
        token.access.scope()
    )
}

fn not_an_admin(token: &ApiToken) -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        Page::error("Admin token required", &scope_refusal(token)),
    )
}

fn secure_cookies(state: &HttpState) -> bool {
    state
        .ctx
        .operator
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"))
}

/// Where to go after login: a path on this site, else `/` (no open
/// redirect).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(path) if is_local_path(path) => path,
        _ => "/",
    }
}

/// A single `/` then a path, as given and once more percent-decoded.
/// Browsers drop tabs and newlines from URLs and read `\` as `/`, so
/// `/\t/evil.example` or `/\evil.example` would leave the site: no control
/// characters, whitespace or backslashes anywhere.
fn is_local_path(path: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    [path, decoded.as_ref()].into_iter().all(|p| {
        let mut chars = p.chars();
        chars.next() == Some('/')
            && !matches!(chars.next(), Some('/' | '\\'))
            && !p
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
            && !p.starts_with("/login")
    })
}

#[derive(Deserialize, Default)]
struct LoginQuery {
    next: Option<String>,
}

async fn login_form(State(state): State<HttpState>, Query(query): Query<LoginQuery>) -> Response {
    login_page(&state, query.next.as_deref(), None, StatusCode::OK)
}

fn login_page(
    state: &HttpState,
    next: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (cookie, csrf) = state.sessions.login_challenge();
    let set = session::set_cookie(LOGIN_COOKIE, &cookie, 3600, secure_cookies(state));
    (
        status,
        AppendHeaders([(SET_COOKIE, set)]),
        Html(views::login(&csrf, safe_next(next), error).into_string()),
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

async fn login(
    State(state): State<HttpState>,
    headers: axum::http::HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let cookies = super::auth::cookie_header(&headers);
    let challenge = session::cookie(&cookies, LOGIN_COOKIE).unwrap_or("");
    let next = form.next.as_deref();
    if !state.sessions.check_login(challenge, &form.csrf) {
        return login_page(
            &state,
            next,
            Some("The login form expired or was not sent from this page; please try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let token = form.token.trim();
    let found = match state.ctx.store.authenticate_token(token, now_ms()).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "store error during login");
            return message_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                Page::error("graft hit an internal error", "The details are in its log."),
            );
        }
    };
    let Some(token) = found.filter(|_| !token.is_empty()) else {
        return login_page(
            &state,
            next,
            Some(
                "That token is not valid (unknown or revoked). Create one with \
                 `graft token create --name NAME`.",
            ),
            StatusCode::UNAUTHORIZED,
        );
    };
    if !token.access.is_admin() {
        tracing::info!(token = %token.name, "dashboard login refused: not an admin token");
        return login_page(
            &state,
            next,
            Some(&scope_refusal(&token)),
            StatusCode::FORBIDDEN,
        );
    }
    tracing::info!(token = %token.name, "dashboard login");
    let secure = secure_cookies(&state);
    let value = state.sessions.issue(token.id, now_ms());
    (
        AppendHeaders([
            (
                SET_COOKIE,
                session::set_cookie(SESSION_COOKIE, &value, SESSION_TTL_MS / 1000, secure),
            ),
            (SET_COOKIE, session::set_cookie(LOGIN_COOKIE, "", 0, secure)),
        ]),
        Redirect::to(safe_next(next)),
    )
        .into_response()
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<HttpState>,
    admin: Admin,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !admin.check_csrf(&state, &form.csrf) {
        return message_page(
            StatusCode::FORBIDDEN,
            Page::error(
                "Form expired",
                "The sign-out form was not sent from this dashboard; reload and try again.",
            ),
        );
    }
    let secure = secure_cookies(&state);
    (
        AppendHeaders([(
            SET_COOKIE,
            session::set_cookie(SESSION_COOKIE, "", 0, secure),
        )]),
        Redirect::to("/login"),
    )
        .into_response()
}

/// Web links of a project's repository, when graft knows the forge's host.
fn repo_web_url(
    state: &HttpState,
    project: &Project,
    gitlab_hosts: &HashMap<i64, String>,
) -> Option<String> {
    let root = match project.provider {
        Provider::Github => manifest::web_url(&state.ctx.operator.github_api_url),
        Provider::Gitlab => project
            .integration_id
            .and_then(|id| gitlab_hosts.get(&id).cloned())
            .or_else(|| state.ctx.forges.gitlab_default_url().map(str::to_string))?,
    };
    Some(format!("{}/{}", root.trim_end_matches('/'), project.repo))
}

fn commit_url(project: &Project, repo_url: Option<&str>, sha: &str) -> Option<String> {
    let repo_url = repo_url?;
    Some(match project.provider {
        Provider::Gitlab => format!("{repo_url}/-/commit/{sha}"),
        Provider::Github => format!("{repo_url}/commit/{sha}"),
    })
}

fn internal_page(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "dashboard store error");
    message_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        Page::error("graft hit an internal error", "The details are in its log."),
    )
}

fn gitlab_hosts(integrations: &[crate::store::integrations::Integration]) -> HashMap<i64, String> {
    integrations
        .iter()
        .filter(|i| i.provider == Provider::Gitlab)
        .map(|i| (i.id, i.base_url.clone()))
        .collect()
}

fn overview(
    state: &HttpState,
    integrations: &[crate::store::integrations::Integration],
) -> views::Overview {
    views::Overview {
        github_app: match state.ctx.forges.github_app_with_source() {
            Some((app, GithubAppSource::Environment)) => {
                Some(format!("app {} (from GITHUB_APP_ID)", app.app_id()))
            }
            Some((app, GithubAppSource::Stored)) => Some(format!(
                "app {} (registered through /setup/github)",
                app.app_id()
            )),
            None => None,
        },
        gitlab_integrations: integrations
            .iter()
            .filter(|i| i.provider == Provider::Gitlab)
            .count()
            + usize::from(state.ctx.forges.gitlab_default_url().is_some()),
        encryption_key: state.ctx.keyring.is_some(),
        durable_sessions: state.sessions.durable,
        public_url: state.ctx.operator.public_url.clone(),
    }
}

async fn dashboard(State(state): State<HttpState>, admin: Admin) -> Response {
    let result = async {
        let integrations = state.ctx.store.list_integrations().await?;
        let hosts = gitlab_hosts(&integrations);
        let pending = state.ctx.store.pending_counts().await?;
        let mut rows = Vec::new();
        for project in state.ctx.store.list_projects().await? {
            let pending = pending.get(&project.id).copied().unwrap_or(0);
            let repo_url = repo_web_url(&state, &project, &hosts);
            let commit = project
                .last_synced_commit_sha
                .as_deref()
                .and_then(|sha| commit_url(&project, repo_url.as_deref(), sha));
            rows.push(views::ProjectRow {
                project,
                pending,
                commit_url: commit,
            });
        }
        let events = state.ctx.store.recent_events(20).await?;
        let overview = overview(&state, &integrations);
        Ok::<_, crate::store::StoreError>((rows, events, overview))
    }
    .await;
    match result {
        Ok((rows, events, overview)) => Html(
            views::dashboard(
                &views::Nav::of(&admin, &state),
                &overview,
                &rows,
                &events,
                now_ms(),
            )
            .into_string(),
        )
        .into_response(),
        Err(e) => internal_page(e),
    }
}

async fn project_page(
    State(state): State<HttpState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<i64>().map(crate::ids::ProjectId) else {
        return message_page(
            StatusCode::NOT_FOUND,
            Page::error(
                "No such project",
                "Project ids are numbers; see the dashboard.",
            ),
        );
    };
    let result = async {
        let Some(project) = state.ctx.store.project(id).await? else {
            return Ok(None);
        };
        let hosts = gitlab_hosts(&state.ctx.store.list_integrations().await?);
        let files = state.ctx.store.file_listing(id).await?;
        let events = state.ctx.store.list_events(Some(id), 100).await?;
        let repo_url = repo_web_url(&state, &project, &hosts);
        let webhook = state
            .ctx
            .store
            .webhook_health(id)
            .await?
            .map(|h| crate::recovery::describe_health(&h));
        Ok::<_, crate::store::StoreError>(Some((project, files, events, repo_url, webhook)))
    }
    .await;
    match result {
        Ok(Some((project, files, events, repo_url, webhook))) => {
            let commit = project
                .last_synced_commit_sha
                .as_deref()
                .and_then(|sha| commit_url(&project, repo_url.as_deref(), sha));
            Html(
                views::project(
                    &views::Nav::of(&admin, &state),
                    &views::ProjectView {
                        project: &project,
                        repo_url: repo_url.as_deref(),
                        commit_url: commit.as_deref(),
                        files: &files,
                        events: &events,
                        webhook: webhook.as_deref(),
                    },
                    now_ms(),
                )
                .into_string(),
            )
            .into_response()
        }
        Ok(None) => message_page(
            StatusCode::NOT_FOUND,
            Page::error("No such project", &format!("There is no project {id}.")),
        ),
        Err(e) => internal_page(e),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_is_a_local_path() {
        for good in ["/", "/projects/3", "/projects/3?tab=files", "/%70rojects"] {
            assert_eq!(safe_next(Some(good)), good);
        }
        for bad in [
            "//evil.example",
            "///evil.example",
            "https://evil.example",
            "http:/evil.example",
            "evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "\t//evil.example",
            " //evil.example",
            "/ /evil.example",
            "/%09/evil.example",
            "/%2F/evil.example",
            "/%5Cevil.example",
            "/%0d%0aSet-Cookie:x",
            "/\u{7f}/evil.example",
            "/\u{a0}/evil.example",
            "/login?x",
            "/%6Cogin",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
