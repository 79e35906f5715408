//! `GET /api/v1/projects/{id}/export`: the managed files as the database
//! holds them, as a tar.gz streamed while it is written. Files are read
//! one at a time and compressed on a blocking thread into a bounded
//! channel, so memory stays at a file and a few chunks whatever the
//! project's size. Paths are the files API's (relative to the base path);
//! files pending deletion are left out.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::IntoResponse;
use flate2::Compression;
use flate2::write::GzEncoder;
use tokio::sync::mpsc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiPath, ErrorBody};
use super::projects::load_project;
use crate::http::HttpState;
use crate::store::Store;
use crate::store::files::FileState;

/// Bytes per chunk of the response body.
const CHUNK: usize = 64 * 1024;
/// Chunks written ahead of a slow client.
const CHUNKS_AHEAD: usize = 8;

pub fn routes() -> OpenApiRouter<HttpState> {
    OpenApiRouter::new().routes(routes!(export_files))
}

/// A `Write` whose bytes go to the response body in chunks; fails once
/// the client is gone, which stops the export.
struct ChannelWriter {
    buffer: Vec<u8>,
    sender: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// One tar entry: a regular file, 0755 when executable, dated `mtime`.
fn header(size: usize, executable: bool, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size as u64);
    header.set_mode(if executable { 0o755 } else { 0o644 });
    header.set_mtime(mtime);
    header
}

/// Writes the archive of `paths` of `project` into `out`, reading each
/// file when its turn comes (a file deleted meanwhile is left out). Runs
/// on a blocking thread; `runtime` runs the store's queries.
fn write_archive(
    store: &Store,
    runtime: &tokio::runtime::Handle,
    project: i64,
    paths: &[String],
    out: ChannelWriter,
) -> std::io::Result<()> {
    let mtime = (crate::store::now_ms() / 1000).max(0) as u64;
    let mut archive = tar::Builder::new(GzEncoder::new(out, Compression::default()));
    for path in paths {
        let file = runtime
            .block_on(store.file(project, path))
            .map_err(std::io::Error::other)?;
        let Some(file) = file.filter(|f| f.state != FileState::DeletedPending) else {
            continue;
        };
        let mut header = header(file.content.len(), file.executable, mtime);
        archive.append_data(&mut header, path, file.content.as_slice())?;
    }
    archive.into_inner()?.finish()?.flush()
}

/// Export the managed files
///
/// A tar.gz of every managed file as graft holds it (not pending
/// deletion), with the paths the files API uses; mode 0755 for executable
/// files.
#[utoipa::path(
    get,
    path = "/projects/{id}/export",
    tag = "files",
    params(("id" = i64, Path, description = "The project's id")),
    responses(
        (status = 200, description = "The archive", content_type = "application/gzip", body = Vec<u8>),
        (status = 404, description = "`not_found`", body = ErrorBody),
    )
)]
async fn export_files(
    State(state): State<HttpState>,
    ApiPath(id): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let project = load_project(&state.ctx.store, &id).await?;
    let paths: Vec<String> = state
        .ctx
        .store
        .file_listing(project.id)
        .await?
        .into_iter()
        .filter(|f| f.state != FileState::DeletedPending)
        .map(|f| f.path)
        .collect();
    let (sender, mut receiver) = mpsc::channel(CHUNKS_AHEAD);
    let store = state.ctx.store.clone();
    let runtime = tokio::runtime::Handle::current();
    let failed = sender.clone();
    let project_id = project.id;
    tokio::task::spawn_blocking(move || {
        let out = ChannelWriter {
            buffer: Vec::with_capacity(CHUNK),
            sender,
        };
        if let Err(error) = write_archive(&store, &runtime, project_id, &paths, out) {
            tracing::warn!(project = project_id, %error, "export stopped");
            // The body ends in an error: the client sees a broken
            // download, never a short archive that looks whole.
            let _ = failed.blocking_send(Err(error));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    Ok((
        [
            (CONTENT_TYPE, "application/gzip".to_string()),
            (
                CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"graft-project-{}.tar.gz\"",
                    project.id
                ),
            ),
        ],
        Body::from_stream(stream),
    ))
}
