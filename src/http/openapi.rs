//! `GET /api/v1/openapi.json`: the OpenAPI description of `/api/v1`,
//! built from the handlers' `#[utoipa::path]` annotations (the same ones
//! that register the routes, see [`super::api::described_routes`]) and
//! from the token scopes of [`super::auth::GENERATOR_ROUTES`]. It describes
//! no secrets, so it is served without a token.

use std::sync::LazyLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

use super::api;
use super::auth::GENERATOR_ROUTES;
use super::error::{ApiError, ErrorBody};

/// Where the API lives and where this description is served.
pub const PREFIX: &str = "/api/v1";
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";
/// The name of the bearer-token security scheme.
const SCHEME: &str = "token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "graft API",
        description = "The JSON API of graft for generators and admins. Every route but this \
                       description needs `Authorization: Bearer <token>`; errors are \
                       `{\"error\": {\"code\", \"message\"}}`. See docs/api.md in graft's \
                       repository for a guide."
    ),
    paths(serve),
    components(schemas(ErrorBody)),
    tags(
        (name = "integrations", description = "GitLab accounts graft acts as (admin tokens)"),
        (name = "projects", description = "Projects, their sync state, syncs and audit log"),
        (name = "files", description = "The managed files of a project"),
        (name = "repositories", description = "What graft can reach on the forges, for setting up projects (admin tokens)"),
        (name = "meta", description = "This description"),
    )
)]
struct ApiDoc;

/// The OpenAPI description
///
/// This document; no token needed.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "OpenAPI 3.1 JSON", content_type = "application/json", body = Object))
)]
pub async fn serve() -> Response {
    static JSON: LazyLock<Option<String>> = LazyLock::new(|| {
        document()
            .to_json()
            .inspect_err(|e| tracing::error!(error = %e, "serializing the OpenAPI description"))
            .ok()
    });
    match JSON.as_deref() {
        Some(json) => ([(CONTENT_TYPE, "application/json")], json).into_response(),
        None => ApiError::internal().into_response(),
    }
}

/// The whole description: the meta route, then every `/api/v1` route
/// under its full path, with its security and common errors.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi().nest(PREFIX, api::described_routes().into_openapi());
    doc.paths.paths = std::mem::take(&mut doc.paths.paths)
        .into_iter()
        .map(|(path, item)| (openapi_path(&path), item))
        .collect();
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(SCHEME, security_scheme());
    for (path, item) in doc.paths.paths.iter_mut() {
        if path == DOCUMENT_PATH {
            continue;
        }
        let operations = [
            ("GET", &mut item.get),
            ("PUT", &mut item.put),
            ("POST", &mut item.post),
            ("DELETE", &mut item.delete),
            ("PATCH", &mut item.patch),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                secure(operation, generator_may_call(path, method));
            }
        }
    }
    doc
}

/// axum's catch-all `{*name}` is `{name}` in an OpenAPI path template.
pub fn openapi_path(route: &str) -> String {
    route.replace("{*", "{")
}

/// Whether a generator token may call `method` on the described `path`
/// (the authorization table is written in axum's route syntax).
fn generator_may_call(path: &str, method: &str) -> bool {
    let route = path.strip_prefix(PREFIX).unwrap_or(path);
    GENERATOR_ROUTES.iter().any(|(pattern, methods)| {
        openapi_path(pattern) == route && methods.iter().any(|m| m.as_str() == method)
    })
}

fn secure(operation: &mut Operation, generator: bool) {
    let scopes: &[&str] = if generator {
        &["admin", "generator"]
    } else {
        &["admin"]
    };
    operation.security = Some(vec![SecurityRequirement::new(
        SCHEME,
        scopes.iter().copied(),
    )]);
    let responses = &mut operation.responses.responses;
    responses
        .entry("401".to_string())
        .or_insert_with(|| error_response("`unauthorized`: no token, or not a valid one").into());
    if !generator {
        responses.entry("403".to_string()).or_insert_with(|| {
            error_response("`forbidden`: a generator token; this route needs an admin token").into()
        });
    }
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build()
}

fn security_scheme() -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "An API token from `graft token create --name NAME [--scope admin|generator]`. \
                 The scopes listed on an operation are the token scopes that may call it: an \
                 admin token calls every route; a generator token only those listing \
                 `generator`, and only for the projects it was created for (another project \
                 answers 404 as if it did not exist).",
            ))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_alls_become_plain_parameters() {
        assert_eq!(
            openapi_path("/projects/{id}/files/{*path}"),
            "/projects/{id}/files/{path}"
        );
        assert_eq!(openapi_path("/projects"), "/projects");
    }

    #[test]
    fn generator_scope_follows_the_authorization_table() {
        assert!(generator_may_call(
            "/api/v1/projects/{id}/files/{path}",
            "DELETE"
        ));
        assert!(generator_may_call("/api/v1/projects", "GET"));
        assert!(!generator_may_call("/api/v1/projects", "POST"));
        assert!(!generator_may_call("/api/v1/integrations/gitlab", "GET"));
    }
}
