//! `POST /api/v1/projects/{id}/adopt`: existing files under the project's
//! base path become managed (see `sync::adopt`). Admin-only: it decides
//! what graft owns in the repository, which a generator token may not.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use super::input::Fields;
use super::projects::{actor, load_project};
use crate::http::HttpState;
use crate::sync::adopt::{AdoptError, Adoption, MAX_ADOPT_FILES, adopt};
use crate::sync::errors::SyncError;
use crate::validation;

pub fn routes() -> OpenApiRouter<HttpState> {
    OpenApiRouter::new().routes(routes!(adopt_files))
}

/// The body of `POST /projects/{id}/adopt` (optional).
#[derive(ToSchema)]
pub struct AdoptBody {
    /// Paths relative to the base path; left out, every file under it.
    #[schema(example = json!(["main.tf", "modules/vpc/main.tf"]))]
    pub paths: Option<Vec<String>>,
}

#[derive(ToSchema)]
pub struct AdoptedFile {
    pub path: String,
    pub blob_sha: String,
}

#[derive(ToSchema)]
pub struct SkippedFile {
    pub path: String,
    /// Why: already managed, not in the repository, not a path graft
    /// manages, too large, or past the request's total.
    pub reason: String,
}

/// What an adopt took into management and what it left.
#[derive(ToSchema)]
pub struct AdoptResult {
    pub adopted: Vec<AdoptedFile>,
    pub skipped: Vec<SkippedFile>,
}

/// The requested paths (`None`: all), checked; an empty body asks for all.
pub fn parse_adopt(body: &[u8]) -> Result<Option<Vec<String>>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not JSON: {e}")))?;
    let mut f = Fields::new(value, "", &["paths"])?;
    let paths = match f.take("paths") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(paths)) => paths,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "`paths` must be an array of file paths relative to the base path",
            ));
        }
    };
    if paths.len() > MAX_ADOPT_FILES {
        return Err(ApiError::too_large(format!(
            "`paths` has {} entries; the limit is {MAX_ADOPT_FILES} per request",
            paths.len()
        )));
    }
    paths
        .into_iter()
        .enumerate()
        .map(|(index, path)| {
            let Value::String(path) = path else {
                return Err(ApiError::invalid_field(format!(
                    "paths[{index}] must be a string"
                )));
            };
            validation::file_path(&path).map_err(|e| {
                ApiError::invalid_field(format!(
                    "paths[{index}] `{path}`: {e} (paths are relative to the project's base path)"
                ))
            })?;
            Ok(path)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn adopt_error(error: AdoptError) -> ApiError {
    match error {
        AdoptError::TooMany { .. } => ApiError::too_large(error.to_string()),
        AdoptError::Moved { .. } => {
            ApiError::new(StatusCode::CONFLICT, "conflict", error.to_string())
        }
        AdoptError::Sync(SyncError::Store(e)) => e.into(),
        AdoptError::Sync(e @ SyncError::Config(_)) => ApiError::invalid_field(e.describe()),
        // The forge's own classes, as the repositories routes report them.
        AdoptError::Sync(SyncError::Forge(e)) => e.into(),
        AdoptError::Sync(e) => ApiError::new(StatusCode::BAD_GATEWAY, "forge_error", e.describe()),
    }
}

/// Adopt existing files
///
/// Takes the files under the project's base path on the target branch's
/// head into management as `synced`, labelled `discovery`, without a
/// commit. Paths graft already manages, paths the head does not have,
/// paths graft could not manage (not UTF-8, not a valid relative path),
/// files over 1 MiB and the files past 20 MiB in total are skipped with a
/// reason.
#[utoipa::path(
    post,
    path = "/projects/{id}/adopt",
    tag = "files",
    params(("id" = i64, Path, description = "The project's id")),
    request_body(content = Option<AdoptBody>, description = "Optional; without `paths`, every file under the base path"),
    responses(
        (status = 200, description = "Adopted", body = AdoptResult),
        (status = 404, description = "`not_found`: no such project, or the forge no longer has the repository", body = ErrorBody),
        (status = 409, description = "`conflict`: the target branch moved since graft last followed it; sync first", body = ErrorBody),
        (status = 413, description = "`too_large`: more than 10,000 files", body = ErrorBody),
        (status = 422, description = "`invalid_field`: a path is not a valid relative path", body = ErrorBody),
        (status = 403, description = "`forge_forbidden`: the forge denied graft access", body = ErrorBody),
        (status = 502, description = "`forge_error`: the repository could not be read", body = ErrorBody),
        (status = 503, description = "`forge_not_configured`: graft has no settings for the project's forge; `rate_limited`", body = ErrorBody),
    )
)]
async fn adopt_files(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    body: Bytes,
) -> Result<ApiJson<Adoption>, ApiError> {
    let project = load_project(&state.ctx.store, &id).await?;
    let paths = parse_adopt(&body)?;
    let adoption = adopt(&state.ctx, &project, paths.as_deref(), &actor(&caller))
        .await
        .map_err(adopt_error)?;
    Ok(ApiJson(adoption))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_optional_and_checked() {
        assert_eq!(parse_adopt(b"").unwrap(), None);
        assert_eq!(parse_adopt(b"{}").unwrap(), None);
        assert_eq!(
            parse_adopt(br#"{"paths": ["a.tf", "m/b.tf"]}"#).unwrap(),
            Some(vec!["a.tf".to_string(), "m/b.tf".to_string()])
        );
        for bad in [
            &br#"{"paths": ["../x.tf"]}"#[..],
            br#"{"paths": ["/etc/passwd"]}"#,
            br#"{"paths": [3]}"#,
            br#"{"paths": "a.tf"}"#,
            br#"{"path": ["a.tf"]}"#,
        ] {
            let err = parse_adopt(bad).unwrap_err();
            assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY, "{err:?}");
        }
        assert_eq!(
            parse_adopt(b"{").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
