//! The HTTP/1 accept loop. `axum::serve` sets no timer, so hyper cannot
//! enforce a deadline on request headers and a client sending them a byte
//! at a time keeps its connection forever; this loop gives hyper a timer
//! and the header deadline, caps the connections open at once, drops a
//! client that stops reading its response, and stops gracefully within a
//! time limit.
//!
//! HTTP/2 is not served: hyper has no header deadline for it (nor for the
//! protocol sniffing that h2c needs), and the proxies graft runs behind
//! speak HTTP/1.1 to it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tracing::{debug, warn};

/// Connections open at once; past it, new ones wait in the kernel's
/// backlog until one closes, instead of using up file descriptors.
pub const MAX_CONNECTIONS: usize = 10_000;
/// A client whose response makes no progress for this long (it does not
/// read it) is dropped.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long open requests may take to finish once graft is told to stop;
/// then their connections are dropped so running jobs can be drained.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// What the server allows its clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For the request line and headers of each request.
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub write_timeout: Duration,
    pub shutdown_limit: Duration,
}

impl Limits {
    /// graft's limits, with this header deadline.
    pub fn new(header_timeout: Duration) -> Self {
        Limits {
            header_timeout,
            max_connections: MAX_CONNECTIONS,
            write_timeout: WRITE_TIMEOUT,
            shutdown_limit: SHUTDOWN_LIMIT,
        }
    }
}

/// Serves `router` on `listener` with graft's limits until `stop`
/// completes. A connection whose request line and headers are not complete
/// within `header_timeout` is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    stop: impl Future<Output = ()>,
) {
    serve_with(listener, router, Limits::new(header_timeout), stop).await;
}

/// Serves `router` on `listener` under `limits` until `stop` completes,
/// then lets open requests finish for up to `limits.shutdown_limit` and
/// drops the connections still open.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        // At the cap, stop accepting until a connection closes.
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => permit,
            () = &mut stop => break,
        };
        let Ok(permit) = permit else { break };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little
                    // rather than spin.
                    warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let io = TokioIo::new(WriteDeadline::new(stream, limits.write_timeout));
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(io, service);
        let watched = graceful.watch(connection);
        connections.spawn(async move {
            let _permit = permit;
            if let Err(e) = watched.await {
                debug!(error = %e, "connection ended with an error");
            }
        });
        // Forget the connections that have ended.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_limit, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            connections = connections.len(),
            "requests still open at the shutdown limit; dropping their connections"
        );
    }
    connections.shutdown().await;
}

/// A stream whose writes fail once they have made no progress for `limit`:
/// a client that does not read its response cannot hold its connection
/// (and graft's shutdown) forever.
struct WriteDeadline<T> {
    inner: T,
    limit: Duration,
    /// Started when a write could not proceed; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(inner: T, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            stalled: None,
        }
    }

    /// What to answer for a write that returned `poll`.
    fn watch<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not read its response in time",
        )))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_that_makes_no_progress_fails_at_the_limit() {
        // A pipe nobody reads: writes stall once its buffer is full.
        let (writer, _reader) = tokio::io::duplex(1024);
        let mut writer = WriteDeadline::new(writer, Duration::from_millis(200));
        let started = tokio::time::Instant::now();
        let result =
            tokio::time::timeout(Duration::from_secs(5), writer.write_all(&[0u8; 64 * 1024]))
                .await
                .expect("the write gave up");
        let error = result.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn writes_that_progress_are_not_cut_off() {
        let (writer, mut reader) = tokio::io::duplex(1024);
        let mut writer = WriteDeadline::new(writer, Duration::from_millis(200));
        let drain = tokio::spawn(async move {
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut sink)
                .await
                .map(|_| sink.len())
        });
        writer.write_all(&[0u8; 64 * 1024]).await.unwrap();
        writer.shutdown().await.unwrap();
        drop(writer);
        assert_eq!(drain.await.unwrap().unwrap(), 64 * 1024);
    }
}
