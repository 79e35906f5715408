//! `Authorization: Bearer <token>` for `/api/v1/*`, and what the token's
//! scope lets it call. Every API request passes [`authorize`] here, before
//! any handler runs: an admin token may call everything; a generator token
//! only the routes of [`GENERATOR_ROUTES`], and only for its own projects.
//! A route added later is admin-only until it is listed there.

use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use super::input::project_id;
use crate::http::HttpState;
use crate::store::tokens::{ApiToken, TokenAccess};
use crate::store::{StoreError, now_ms};

/// Who made the request (for the audit log) and what its token may reach.
#[derive(Debug, Clone)]
pub struct Caller(pub ApiToken);

impl Caller {
    pub fn access(&self) -> &TokenAccess {
        &self.0.access
    }
}

/// The routes (under `/api/v1`) a generator token may call: its projects'
/// managed files, the projects themselves (their sync state, and the list
/// of them), their syncs and their audit log.
pub const GENERATOR_ROUTES: &[(&str, &[Method])] = &[
    ("/projects", &[Method::GET]),
    ("/projects/{id}", &[Method::GET]),
    ("/projects/{id}/sync", &[Method::POST]),
    ("/projects/{id}/events", &[Method::GET]),
    ("/projects/{id}/files", &[Method::GET, Method::PUT]),
    (
        "/projects/{id}/files/{*path}",
        &[Method::GET, Method::PUT, Method::DELETE],
    ),
    ("/projects/{id}/export", &[Method::GET]),
];

const API_PREFIX: &str = "/api/v1";

pub async fn require_token(
    State(state): State<HttpState>,
    route: Option<MatchedPath>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing `Authorization: Bearer <token>` header; create a token with \
                 `graft token create --name NAME`",
            )
        })?;
    let token = bearer_token(header)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
    let found = state.ctx.store.authenticate_token(token, now_ms()).await?;
    let caller = found
        .ok_or_else(|| ApiError::unauthorized("the API token is not valid (unknown or revoked)"))?;
    let project = params.ok().and_then(|params| {
        params
            .iter()
            .find(|(name, _)| *name == "id")
            .map(|(_, value)| value.to_string())
    });
    authorize(
        &caller.access,
        request.method(),
        route.as_ref().map(MatchedPath::as_str),
        project.as_deref(),
    )?;
    request.extensions_mut().insert(Caller(caller));
    Ok(next.run(request).await)
}

/// Whether a token with `access` may call `method` on `route` (the matched
/// route pattern; `None` when no route matched) for the project whose id
/// is `project` in the path. A generator asking for a project it does not
/// hold gets the very answer of a project that does not exist, so it
/// learns nothing about other projects.
pub fn authorize(
    access: &TokenAccess,
    method: &Method,
    route: Option<&str>,
    project: Option<&str>,
) -> Result<(), ApiError> {
    if access.is_admin() {
        return Ok(());
    }
    let route = route.map(|r| r.strip_prefix(API_PREFIX).unwrap_or(r));
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let allowed = route.is_some_and(|route| {
        GENERATOR_ROUTES
            .iter()
            .any(|(pattern, methods)| *pattern == route && methods.contains(method))
    });
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this token's scope ({}) allows only reading its projects, reading and writing \
                 their files and queuing their syncs; {method} {API_PREFIX}{} needs an admin \
                 token (`graft token create --name NAME --scope admin`)",
                access.scope(),
                route.unwrap_or(""),
            ),
        ));
    }
    if let Some(raw) = project {
        let id = project_id(raw)?;
        if !access.reaches(id) {
            return Err(StoreError::NotFound(format!("project {id}")).into());
        }
    }
    Ok(())
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: &str) -> Option<&str> {
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
}

/// Every `Cookie` header joined (HTTP/2 clients may send one per cookie).
pub fn cookie_header(headers: &axum::http::HeaderMap) -> String {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tokens::TokenScope;

    fn generator() -> TokenAccess {
        TokenAccess::new(TokenScope::Generator, &[crate::ids::ProjectId(3)]).unwrap()
    }

    fn check(access: &TokenAccess, method: Method, route: &str, id: Option<&str>) -> Option<u16> {
        authorize(access, &method, Some(route), id)
            .err()
            .map(|e| e.status.as_u16())
    }

    #[test]
    fn admins_call_everything() {
        let admin = TokenAccess::admin();
        assert_eq!(
            check(&admin, Method::POST, "/api/v1/integrations/gitlab", None),
            None
        );
        assert_eq!(
            check(&admin, Method::GET, "/api/v1/projects/{id}", Some("9")),
            None
        );
        assert_eq!(authorize(&admin, &Method::GET, None, None), Ok(()));
    }

    #[test]
    fn generators_call_their_projects_files_only() {
        let g = generator();
        for (method, route) in [
            (Method::GET, "/api/v1/projects"),
            (Method::GET, "/api/v1/projects/{id}"),
            (Method::HEAD, "/api/v1/projects/{id}"),
            (Method::POST, "/api/v1/projects/{id}/sync"),
            (Method::GET, "/api/v1/projects/{id}/events"),
            (Method::GET, "/api/v1/projects/{id}/files"),
            (Method::PUT, "/api/v1/projects/{id}/files"),
            (Method::GET, "/api/v1/projects/{id}/files/{*path}"),
            (Method::PUT, "/api/v1/projects/{id}/files/{*path}"),
            (Method::GET, "/api/v1/projects/{id}/export"),
            (Method::DELETE, "/api/v1/projects/{id}/files/{*path}"),
        ] {
            let id = route.contains("{id}").then_some("3");
            assert_eq!(
                check(&g, method.clone(), route, id),
                None,
                "{method} {route}"
            );
            if id.is_some() {
                assert_eq!(check(&g, method.clone(), route, Some("4")), Some(404));
            }
        }
        for (method, route) in [
            (Method::POST, "/api/v1/projects"),
            (Method::GET, "/api/v1/integrations/gitlab"),
            (Method::POST, "/api/v1/integrations/gitlab"),
            (Method::POST, "/api/v1/projects/{id}"),
            (Method::DELETE, "/api/v1/projects/{id}/files"),
            (Method::POST, "/api/v1/projects/{id}/adopt"),
            (Method::GET, "/api/v1/repositories"),
            (Method::GET, "/api/v1/repositories/tree"),
            (Method::GET, "/api/v1/repositories/file"),
        ] {
            let err = authorize(&g, &method, Some(route), Some("3")).unwrap_err();
            assert_eq!(
                (err.status.as_u16(), err.code),
                (403, "forbidden"),
                "{route}"
            );
            assert!(
                err.message.contains("scope (generator)") && err.message.contains(route),
                "{}",
                err.message
            );
        }
        // No matched route: refused, not let through.
        assert_eq!(
            authorize(&g, &Method::GET, None, None).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn another_project_looks_like_a_missing_one() {
        let g = generator();
        let hidden =
            authorize(&g, &Method::GET, Some("/api/v1/projects/{id}"), Some("4")).unwrap_err();
        let missing: ApiError = StoreError::NotFound("project 4".into()).into();
        assert_eq!(hidden, missing);
        let bad =
            authorize(&g, &Method::GET, Some("/api/v1/projects/{id}"), Some("x")).unwrap_err();
        assert_eq!(bad, project_id("x").unwrap_err());
    }
}
