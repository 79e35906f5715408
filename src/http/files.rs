//! `/api/v1/projects/{id}/files`: the managed files of a project. A bulk
//! put is checked completely before anything is stored; the change itself,
//! and the sync it schedules, is `sync::intake`'s (one transaction).

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use super::input::{Fields, query_flag};
use super::projects::{actor, load_project};
use crate::file_set::{MAX_FILE_BYTES, MAX_FILES, MAX_REQUEST_BYTES, content_json};
use crate::http::HttpState;
use crate::store::files::{FileInput, FileMeta, FileSource};
use crate::store::projects::Project;
use crate::sync::intake::{ChangeError, FileOp, change_files};
use crate::validation;

/// Longest `source` (generator name).
const MAX_SOURCE_LEN: usize = 200;

/// `{*path}` is axum's catch-all (the path may hold slashes); the OpenAPI
/// description shows it as `{path}`.
pub fn routes() -> OpenApiRouter<HttpState> {
    OpenApiRouter::new()
        .routes(routes!(list_files, put_files))
        .routes(routes!(get_file, put_file, delete_file))
}

/// File content: UTF-8 text as a string, anything else as
/// `{"base64": "..."}` (standard alphabet; padding optional, whitespace
/// ignored in requests).
#[derive(serde::Serialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Base64(Base64Content),
}

#[derive(serde::Serialize, ToSchema)]
pub struct Base64Content {
    pub base64: String,
}

// Read field by field by [`parse_files_put`]; this describes what it accepts.
/// One file of a bulk put.
#[derive(ToSchema)]
pub struct FileUpload {
    /// Relative to the project's base path; no `..`, no `.git`.
    #[schema(example = "modules/vpc/main.tf")]
    pub path: String,
    /// At most 1 MiB decoded.
    pub content: Content,
    /// For `configuration` projects: a change to this file schedules a sync.
    pub sync_on_change: Option<bool>,
    /// Pushed with mode 100755.
    pub executable: Option<bool>,
    /// Where the file came from: `generator` (new files' default) or
    /// `discovery`; left out, a stored file keeps its label.
    pub source: Option<FileSourceName>,
}

/// The body of `PUT /projects/{id}/files`: checked completely, stored in
/// one transaction. At most 10,000 files and 20 MiB per request.
#[derive(ToSchema)]
pub struct FilesPutBody {
    pub files: Vec<FileUpload>,
    /// Also delete the managed files this request does not list.
    pub delete_missing: Option<bool>,
    /// The generator's name, for the audit log and the PR.
    #[schema(example = "terraform-generator")]
    pub source: Option<String>,
}

/// The body of `PUT /projects/{id}/files/{path}`.
#[derive(ToSchema)]
pub struct FilePutBody {
    pub content: Content,
    pub sync_on_change: Option<bool>,
    pub executable: Option<bool>,
    pub source: Option<FileSourceName>,
}

/// Where a managed file came from: `generator` (uploaded) or `discovery`
/// (adopted from the repository, or output of a discovery of existing
/// infrastructure).
#[derive(ToSchema)]
#[schema(as = FileSource)]
#[schema(rename_all = "snake_case")]
pub enum FileSourceName {
    Generator,
    Discovery,
}

#[derive(ToSchema)]
#[schema(as = FileState)]
#[schema(rename_all = "snake_case")]
pub enum FileStateName {
    Pending,
    Synced,
    DeletedPending,
}

/// A managed file; `content` only where asked for.
#[derive(ToSchema)]
#[schema(as = File)]
pub struct FileView {
    pub path: String,
    pub blob_sha: String,
    pub state: FileStateName,
    pub size: i64,
    pub sync_on_change: bool,
    pub executable: bool,
    pub source: FileSourceName,
    pub content: Option<Content>,
}

#[derive(ToSchema)]
pub struct FileList {
    pub files: Vec<FileView>,
}

#[derive(ToSchema)]
#[schema(as = Change)]
#[schema(rename_all = "lowercase")]
pub enum ChangeName {
    Added,
    Modified,
    Deleted,
}

#[derive(ToSchema)]
pub struct ChangedFile {
    pub path: String,
    pub change: ChangeName,
}

/// What a change of files did, and the sync it queued (if any).
#[derive(ToSchema)]
pub struct FilesChanged {
    pub changed: Vec<ChangedFile>,
    pub sync_job_id: Option<i64>,
}

/// Standard base64; padding optional, whitespace (line wrapping) ignored.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// File content in a request: a JSON string (UTF-8 text) or
/// `{"base64": "..."}`. `context` names the file in errors.
pub fn parse_content(value: Option<Value>, context: &str) -> Result<Vec<u8>, ApiError> {
    let content = match value {
        None => Err(ApiError::invalid_field(format!(
            "{context}`content` is required"
        ))),
        Some(Value::String(text)) => Ok(text.into_bytes()),
        Some(object @ Value::Object(_)) => {
            let inner = format!("{context}`content`: ");
            let mut f = Fields::new(object, &inner, &["base64"])?;
            let encoded = f.opt_str("base64")?.ok_or_else(|| f.missing("base64"))?;
            let compact: String = encoded
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            BASE64.decode(compact.as_bytes()).map_err(|e| {
                ApiError::invalid_field(format!(
                    "{context}`content.base64` is not valid base64: {e}"
                ))
            })
        }
        Some(_) => Err(ApiError::invalid_field(format!(
            "{context}`content` must be a string (UTF-8 text) or {{\"base64\": \"...\"}}"
        ))),
    }?;
    if content.len() > MAX_FILE_BYTES {
        return Err(ApiError::too_large(format!(
            "{context}content is {} bytes; the limit is {MAX_FILE_BYTES} bytes per file",
            content.len()
        )));
    }
    Ok(content)
}

/// A file's optional `source` label.
fn file_source(f: &mut Fields, context: &str) -> Result<Option<FileSource>, ApiError> {
    match f.opt_str("source")? {
        None => Ok(None),
        Some(name) => FileSource::from_name(&name).map(Some).ok_or_else(|| {
            ApiError::invalid_field(format!(
                "{context}`source` must be one of {}, not `{name}`",
                FileSource::NAMES.join(", ")
            ))
        }),
    }
}

/// `discovery` is the label adopt gives files taken from the repository:
/// only an admin may set it, so a generator cannot pass its files off as
/// the repository's.
fn check_sources(caller: &Caller, files: &[FileInput]) -> Result<(), ApiError> {
    if caller.access().is_admin() {
        return Ok(());
    }
    match files
        .iter()
        .find(|f| f.source == Some(FileSource::Discovery))
    {
        Some(file) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "`{}`: `source` `discovery` marks files graft adopted from the repository and \
                 needs an admin token; a generator token sends `generator` or leaves `source` \
                 out",
                file.path
            ),
        )),
        None => Ok(()),
    }
}

fn checked_path(path: String, context: &str) -> Result<String, ApiError> {
    validation::file_path(&path)
        .map_err(|e| ApiError::invalid_field(format!("{context}`path`: {e}")))?;
    Ok(path)
}

/// A bulk put, fully checked.
#[derive(Debug)]
pub struct FilesPut {
    pub files: Vec<FileInput>,
    pub delete_missing: bool,
    pub source: Option<String>,
}

pub fn parse_files_put(body: Value) -> Result<FilesPut, ApiError> {
    let mut f = Fields::new(body, "", &["files", "delete_missing", "source"])?;
    let entries = match f.take("files") {
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(ApiError::invalid_field("`files` must be an array")),
        None => return Err(f.missing("files")),
    };
    let delete_missing = f.opt_bool("delete_missing")?.unwrap_or(false);
    let source = f.opt_str("source")?;
    if let Some(source) = &source
        && (source.trim().is_empty()
            || source.len() > MAX_SOURCE_LEN
            || source.chars().any(char::is_control))
    {
        return Err(ApiError::invalid_field(format!(
            "`source` must be a generator name of 1 to {MAX_SOURCE_LEN} printable characters"
        )));
    }
    if entries.len() > MAX_FILES {
        return Err(ApiError::too_large(format!(
            "`files` has {} entries; the limit is {MAX_FILES} per request",
            entries.len()
        )));
    }
    let mut files = Vec::with_capacity(entries.len());
    let mut seen = HashSet::new();
    let mut total = 0usize;
    for (index, entry) in entries.into_iter().enumerate() {
        let at = format!("files[{index}]: ");
        let mut f = Fields::new(
            entry,
            &at,
            &["path", "content", "sync_on_change", "executable", "source"],
        )?;
        let path = checked_path(f.str("path")?, &at)?;
        if !seen.insert(path.clone()) {
            return Err(ApiError::invalid_field(format!(
                "files[{index}]: `path` `{path}` appears more than once in this request"
            )));
        }
        let named = format!("files[{index}] `{path}`: ");
        f.set_context(&named);
        let content = parse_content(f.take("content"), &named)?;
        total += content.len();
        if total > MAX_REQUEST_BYTES {
            return Err(ApiError::too_large(format!(
                "the files add up to more than {MAX_REQUEST_BYTES} bytes by files[{index}] \
                 `{path}`; split the upload into several requests without `delete_missing`"
            )));
        }
        files.push(FileInput {
            path,
            content,
            sync_on_change: f.opt_bool("sync_on_change")?,
            executable: f.opt_bool("executable")?,
            source: file_source(&mut f, &named)?,
        });
    }
    Ok(FilesPut {
        files,
        delete_missing,
        source,
    })
}

/// Put files
///
/// Adds or replaces files (and with `delete_missing` deletes the others);
/// may queue a sync.
#[utoipa::path(
    put,
    path = "/projects/{id}/files",
    tag = "files",
    params(("id" = i64, Path, description = "The project's id")),
    request_body = FilesPutBody,
    responses(
        (status = 200, description = "Applied", body = FilesChanged),
        (status = 403, description = "`forbidden`: a generator token labelled a file `source` `discovery`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 413, description = "`too_large`: over 1 MiB per file, 20 MiB or 10,000 files per request", body = ErrorBody),
        (status = 422, description = "`invalid_field`: the message names the file and field", body = ErrorBody),
    )
)]
async fn put_files(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let project = load_project(&state.ctx.store, &id).await?;
    let put = parse_files_put(body)?;
    let op = FileOp::Put {
        files: &put.files,
        delete_missing: put.delete_missing,
        source: put.source.as_deref(),
    };
    change(&state, &project, &caller, op).await
}

/// Applies a change of files (see [`change_files`]) and answers with what
/// changed and the sync it queued.
async fn change(
    state: &HttpState,
    project: &Project,
    caller: &Caller,
    op: FileOp<'_>,
) -> Result<Json<Value>, ApiError> {
    if let FileOp::Put { files, .. } = &op {
        check_sources(caller, files)?;
    }
    let ctx = &state.ctx;
    let applied = ctx
        .jobs
        .submit(
            change_files(&ctx.store, project, &actor(caller), op),
            |applied| applied.sync_job.is_some(),
        )
        .await
        .map_err(|e| match e {
            ChangeError::Layout(message) => ApiError::invalid_field(message),
            ChangeError::Store(e) => e.into(),
        })?;
    Ok(Json(
        json!({ "changed": applied.changes, "sync_job_id": applied.sync_job }),
    ))
}

fn file_json(file: &FileMeta, content: Option<&[u8]>) -> Value {
    let mut value = json!({
        "path": file.path,
        "blob_sha": file.blob_sha,
        "state": file.state,
        "size": file.size,
        "sync_on_change": file.sync_on_change,
        "executable": file.executable,
        "source": file.source,
    });
    if let Some(content) = content {
        value["content"] = content_json(content);
    }
    value
}

/// List files
#[utoipa::path(
    get,
    path = "/projects/{id}/files",
    tag = "files",
    params(
        ("id" = i64, Path, description = "The project's id"),
        ("content" = Option<bool>, Query, description = "Include each file's content"),
    ),
    responses(
        (status = 200, description = "The managed files", body = FileList),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
async fn list_files(
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let with_content = query_flag(query.get("content"), "content")?;
    let project = load_project(&state.ctx.store, &id).await?;
    // Contents are read from the database only when asked for.
    let files: Vec<Value> = if with_content {
        let files = state.ctx.store.files(project.id).await?;
        files
            .iter()
            .map(|f| file_json(&f.meta(), Some(&f.content)))
            .collect()
    } else {
        let files = state.ctx.store.file_listing(project.id).await?;
        files.iter().map(|f| file_json(f, None)).collect()
    };
    Ok(Json(json!({ "files": files })))
}

/// The project and the checked file path of a single-file route.
async fn one_file(
    state: &HttpState,
    id: &str,
    path: String,
) -> Result<(Project, String), ApiError> {
    let project = load_project(&state.ctx.store, id).await?;
    let path = checked_path(path, "")?;
    Ok((project, path))
}

fn not_managed(project: &Project, path: &str) -> ApiError {
    ApiError::not_found(format!(
        "file `{path}` is not managed by project {}",
        project.id
    ))
}

/// Read a file
#[utoipa::path(
    get,
    path = "/projects/{id}/files/{*path}",
    tag = "files",
    params(
        ("id" = i64, Path, description = "The project's id"),
        ("path" = String, Path, description = "The file's path; may hold slashes"),
    ),
    responses(
        (status = 200, description = "The file with its content", body = FileView),
        (status = 404, description = "`not_found`: no such project, or the file is not managed", body = ErrorBody),
    )
)]
async fn get_file(
    State(state): State<HttpState>,
    ApiPath((id, path)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (project, path) = one_file(&state, &id, path).await?;
    let file = state
        .ctx
        .store
        .file(project.id, &path)
        .await?
        .ok_or_else(|| not_managed(&project, &path))?;
    Ok(Json(file_json(&file.meta(), Some(&file.content))))
}

/// Put a file
#[utoipa::path(
    put,
    path = "/projects/{id}/files/{*path}",
    tag = "files",
    params(
        ("id" = i64, Path, description = "The project's id"),
        ("path" = String, Path, description = "The file's path; may hold slashes"),
    ),
    request_body = FilePutBody,
    responses(
        (status = 200, description = "Applied", body = FilesChanged),
        (status = 403, description = "`forbidden`: a generator token labelled the file `source` `discovery`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 413, description = "`too_large`: over 1 MiB", body = ErrorBody),
        (status = 422, description = "`invalid_field`", body = ErrorBody),
    )
)]
async fn put_file(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath((id, path)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let (project, path) = one_file(&state, &id, path).await?;
    let mut f = Fields::new(
        body,
        "",
        &["content", "sync_on_change", "executable", "source"],
    )?;
    let content = parse_content(f.take("content"), "")?;
    let file = FileInput {
        path,
        content,
        sync_on_change: f.opt_bool("sync_on_change")?,
        executable: f.opt_bool("executable")?,
        source: file_source(&mut f, "")?,
    };
    let op = FileOp::Put {
        files: std::slice::from_ref(&file),
        delete_missing: false,
        source: None,
    };
    change(&state, &project, &caller, op).await
}

/// Delete a file
///
/// A file that never reached the repository is forgotten; a synced one
/// stays `deleted_pending` until a sync removes it.
#[utoipa::path(
    delete,
    path = "/projects/{id}/files/{*path}",
    tag = "files",
    params(
        ("id" = i64, Path, description = "The project's id"),
        ("path" = String, Path, description = "The file's path; may hold slashes"),
    ),
    responses(
        (status = 200, description = "Applied", body = FilesChanged),
        (status = 404, description = "`not_found`: no such project, or the file is not managed", body = ErrorBody),
    )
)]
async fn delete_file(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    ApiPath((id, path)): ApiPath<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let (project, path) = one_file(&state, &id, path).await?;
    if state.ctx.store.file(project.id, &path).await?.is_none() {
        return Err(not_managed(&project, &path));
    }
    // Already `deleted_pending`: nothing changes, and the answer says so.
    change(&state, &project, &caller, FileOp::Delete { path: &path }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_text_or_base64() {
        assert_eq!(
            parse_content(Some(json!("hé")), "").unwrap(),
            "hé".as_bytes()
        );
        let bytes = parse_content(Some(json!({"base64": "AP8K\nAA=="})), "").unwrap();
        assert_eq!(bytes, vec![0, 255, 10, 0]);
        assert_eq!(
            parse_content(Some(json!({"base64": "AP8KAA"})), "").unwrap(),
            bytes
        );
        assert_eq!(content_json(&bytes), json!({"base64": "AP8KAA=="}));
        assert_eq!(content_json(b"text"), json!("text"));
        let err = parse_content(Some(json!({"base64": "!!"})), "files[0] `a`: ").unwrap_err();
        assert!(
            err.message.contains("files[0] `a`: `content.base64`"),
            "{}",
            err.message
        );
        assert!(parse_content(Some(json!(5)), "").is_err());
        assert!(parse_content(Some(json!({"b64": "AA=="})), "").is_err());
        assert!(parse_content(None, "").is_err());
    }
}
