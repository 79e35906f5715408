//! Reading request bodies before anything else sees the request: whole,
//! within a deadline, under a size limit and a memory budget shared by
//! every body being held. A client that trickles its body therefore holds
//! only the bytes it really sent, never a concurrency permit, and is
//! answered 408 when its time is up.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// Bytes of request bodies held at once, across all requests (being read,
/// or read and waiting for or in their handler).
pub const MEMORY_BUDGET: usize = 128 * 1024 * 1024;

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Declared or sent more than the limit.
    TooLarge { limit: usize },
    /// Not all there when the deadline passed.
    TooSlow { deadline: Duration },
    /// The client went away or sent a broken body.
    Broken,
}

impl Refusal {
    /// graft's JSON error for it; `what` names the body ("webhook body").
    /// A refused client is not worth keeping: the connection is closed.
    pub fn to_error(self, what: &str) -> ApiError {
        match self {
            Refusal::TooLarge { limit } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("{what} is over the {} limit", human_size(limit)),
            ),
            Refusal::TooSlow { deadline } => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "{what} did not arrive within {}s; send the whole request at once",
                    deadline.as_secs_f64()
                ),
            ),
            Refusal::Broken => ApiError::bad_request(
                "unreadable_body",
                format!("{what} could not be read (the connection broke off)"),
            ),
        }
    }
}

/// A response that also closes the connection.
pub fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

fn human_size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 && bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes / (1024 * 1024))
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

/// The shared memory budget for bodies.
#[derive(Debug, Clone)]
pub struct Budget {
    free: Arc<Semaphore>,
    size: usize,
}

impl Budget {
    pub fn new(bytes: usize) -> Self {
        Budget {
            free: Arc::new(Semaphore::new(bytes)),
            size: bytes,
        }
    }

    /// Bytes of bodies held right now.
    pub fn held(&self) -> usize {
        self.size.saturating_sub(self.free.available_permits())
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(MEMORY_BUDGET)
    }
}

/// A body read whole, and its share of the budget (given back on drop).
#[derive(Debug)]
pub struct Buffered {
    pub bytes: Bytes,
    _held: Option<OwnedSemaphorePermit>,
}

/// How one group of routes reads bodies.
#[derive(Debug, Clone)]
pub struct BodyRules {
    pub limit: usize,
    pub deadline: Duration,
    pub budget: Budget,
}

/// The Content-Length the client declared, if any and readable.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads `body` whole under `rules`. A declared length over the limit is
/// refused before a byte is read; the budget is taken as bytes arrive, so
/// a trickling client holds only what it sent.
pub async fn read(headers: &HeaderMap, body: Body, rules: &BodyRules) -> Result<Buffered, Refusal> {
    let limit = rules.limit;
    if declared_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(Refusal::TooLarge { limit });
    }
    let collect = async {
        let mut held: Option<OwnedSemaphorePermit> = None;
        let mut buffer = Vec::new();
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| Refusal::Broken)?;
            if buffer.len() + chunk.len() > limit {
                return Err(Refusal::TooLarge { limit });
            }
            if !chunk.is_empty() {
                // Within the limit, so within u32 for any sane limit.
                let n = u32::try_from(chunk.len()).map_err(|_| Refusal::TooLarge { limit })?;
                let permit = rules
                    .budget
                    .free
                    .clone()
                    .acquire_many_owned(n)
                    .await
                    .map_err(|_| Refusal::Broken)?;
                match &mut held {
                    Some(held) => held.merge(permit),
                    None => held = Some(permit),
                }
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(Buffered {
            bytes: Bytes::from(buffer),
            _held: held,
        })
    };
    tokio::time::timeout(rules.deadline, collect)
        .await
        .unwrap_or(Err(Refusal::TooSlow {
            deadline: rules.deadline,
        }))
}

/// Middleware for routes whose handlers take small bodies (forms): the
/// body is read under `rules` before the handler runs.
pub async fn small_bodies(
    axum::extract::State(rules): axum::extract::State<BodyRules>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    match read(&parts.headers, body, &rules).await {
        Ok(buffered) => {
            let request =
                axum::extract::Request::from_parts(parts, Body::from(buffered.bytes.clone()));
            let response = next.run(request).await;
            drop(buffered);
            response
        }
        Err(refusal) => closing(refusal.to_error("request body")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(limit: usize, budget: usize) -> BodyRules {
        BodyRules {
            limit,
            deadline: Duration::from_millis(200),
            budget: Budget::new(budget),
        }
    }

    fn with_length(n: usize) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        headers
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_and_holds_its_budget() {
        let rules = rules(10, 10);
        let read = read(&with_length(5), Body::from("hello"), &rules)
            .await
            .unwrap();
        assert_eq!(read.bytes, "hello");
        assert_eq!(rules.budget.held(), 5);
        drop(read);
        assert_eq!(rules.budget.held(), 0);
    }

    #[tokio::test]
    async fn a_declared_or_sent_length_over_the_limit_is_refused() {
        let rules = rules(4, 100);
        assert_eq!(
            read(&with_length(5), Body::empty(), &rules)
                .await
                .unwrap_err(),
            Refusal::TooLarge { limit: 4 }
        );
        assert_eq!(
            read(&HeaderMap::new(), Body::from("hello"), &rules)
                .await
                .unwrap_err(),
            Refusal::TooLarge { limit: 4 }
        );
        assert_eq!(rules.budget.held(), 0);
    }

    #[tokio::test]
    async fn a_body_that_never_ends_times_out_and_gives_its_budget_back() {
        let rules = rules(100, 100);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        tx.send(Ok(Bytes::from_static(b"ab"))).await.unwrap();
        let body = Body::from_stream(tokio_stream_of(rx));
        let refusal = read(&with_length(50), body, &rules).await.unwrap_err();
        assert!(matches!(refusal, Refusal::TooSlow { .. }), "{refusal:?}");
        assert_eq!(rules.budget.held(), 0);
        let error = refusal.to_error("webhook body");
        assert_eq!(error.status, StatusCode::REQUEST_TIMEOUT);
        drop(tx);
    }

    fn tokio_stream_of<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> + Send {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    #[test]
    fn limits_are_named_in_readable_units() {
        assert_eq!(human_size(25 * 1024 * 1024), "25 MiB");
        assert_eq!(human_size(16 * 1024), "16 KiB");
        assert_eq!(human_size(100), "100 bytes");
    }
}
