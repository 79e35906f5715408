//! `GET /api/v1/projects/{id}/export`: the managed files as the database
//! holds them, as a tar.gz streamed while it is written. Files are read
//! one at a time and compressed on a blocking thread into a bounded
//! channel, so memory stays at a file and a few chunks whatever the
//! project's size. A client that stops reading stops the export after a
//! deadline, and only a few exports run at once, so slow clients cannot
//! hold the blocking threads. Paths are the files API's (relative to the
//! base path); files pending deletion are left out.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::IntoResponse;
use flate2::Compression;
use flate2::write::GzEncoder;
use futures_util::Stream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiPath, ErrorBody};
use super::projects::load_project;
use crate::http::HttpState;
use crate::ids::ProjectId;
use crate::store::Store;
use crate::store::files::FileState;

/// Bytes per chunk of the response body.
const CHUNK: usize = 64 * 1024;
/// Chunks written ahead of a slow client.
const CHUNKS_AHEAD: usize = 8;
/// Exports running at once (each holds a blocking thread).
const MAX_EXPORTS: usize = 4;
/// How long a client may leave a chunk unread before its export stops.
const SEND_DEADLINE: Duration = Duration::from_secs(30);

/// The bounds on exports: how many run at once, and how long each waits
/// for its client to take a chunk.
#[derive(Debug, Clone)]
pub struct Exports {
    slots: Arc<Semaphore>,
    limit: usize,
    send_deadline: Duration,
}

impl Exports {
    pub fn new(limit: usize, send_deadline: Duration) -> Self {
        Exports {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            send_deadline,
        }
    }

    /// Exports running now.
    pub fn running(&self) -> usize {
        self.limit - self.slots.available_permits()
    }
}

impl Default for Exports {
    fn default() -> Self {
        Exports::new(MAX_EXPORTS, SEND_DEADLINE)
    }
}

/// Every export slot is taken.
#[derive(Debug, thiserror::Error)]
#[error("{0} exports are running, the most graft runs at once; try again shortly")]
pub struct Busy(usize);

pub fn routes() -> OpenApiRouter<HttpState> {
    OpenApiRouter::new().routes(routes!(export_files))
}

/// A `Write` whose bytes go to the response body in chunks; fails once
/// the client is gone or leaves a chunk unread past the deadline, which
/// stops the export.
struct ChannelWriter {
    buffer: Vec<u8>,
    sender: mpsc::Sender<Bytes>,
    runtime: tokio::runtime::Handle,
    deadline: Duration,
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
        let sent = self
            .runtime
            .block_on(tokio::time::timeout(self.deadline, self.sender.send(chunk)));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "client gone",
            )),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing for {} ms",
                    self.deadline.as_millis()
                ),
            )),
        }
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
    project: ProjectId,
    paths: &[String],
    out: ChannelWriter,
) -> std::io::Result<()> {
    let mtime = (crate::store::now_ms() / 1000).max(0) as u64;
    let runtime = out.runtime.clone();
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

/// Starts writing the archive of `paths` of `project` on a blocking thread
/// (one of `exports`' slots until it ends) and returns the body: its
/// chunks, ending in an error unless the archive was written whole, and
/// the thread. Must run inside the runtime.
pub fn start(
    exports: &Exports,
    store: Store,
    project: ProjectId,
    paths: Vec<String>,
) -> Result<
    (
        impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
        JoinHandle<()>,
    ),
    Busy,
> {
    let slot = exports
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| Busy(exports.limit))?;
    let (sender, mut receiver) = mpsc::channel(CHUNKS_AHEAD);
    // Kept open until the outcome is recorded: the body must not end
    // before it can tell a whole archive from a broken one.
    let open = sender.clone();
    let whole = Arc::new(AtomicBool::new(false));
    let written = whole.clone();
    let out = ChannelWriter {
        buffer: Vec::with_capacity(CHUNK),
        sender,
        runtime: tokio::runtime::Handle::current(),
        deadline: exports.send_deadline,
    };
    let producer = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        match write_archive(&store, project, &paths, out) {
            Ok(()) => written.store(true, Ordering::Release),
            Err(error) => tracing::warn!(project = project.get(), %error, "export stopped"),
        }
        drop(open);
    });
    // The body ends in an error unless the archive is whole: the client
    // sees a broken download, never a short archive that looks whole.
    let mut ended = false;
    let stream = futures_util::stream::poll_fn(move |cx| {
        if ended {
            return Poll::Ready(None);
        }
        match receiver.poll_recv(cx) {
            Poll::Ready(Some(chunk)) => Poll::Ready(Some(Ok(chunk))),
            Poll::Ready(None) => {
                ended = true;
                if whole.load(Ordering::Acquire) {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(std::io::Error::other("the export stopped"))))
                }
            }
            Poll::Pending => Poll::Pending,
        }
    });
    Ok((stream, producer))
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
        (status = 503, description = "`busy`: the most exports graft runs at once are running", body = ErrorBody),
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
    let (stream, _) = start(&state.exports, state.ctx.store.clone(), project.id, paths)
        .map_err(|busy| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", busy.to_string()))?;
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
