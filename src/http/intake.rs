//! Reading request bodies before anything else sees the request: whole,
//! within a deadline, under a size limit and a memory budget. A client
//! that trickles its body therefore holds only the bytes it really sent,
//! never a concurrency permit, and is answered 408 when its time is up.
//!
//! The budget is split so that one kind of caller cannot use up another's:
//! webhooks, the (authenticated) API and the small forms anyone can post
//! each have their own pool. Within the webhook pool, large bodies (over
//! [`LARGE_BODY`]) may hold at most [`LARGE_SHARE`] of it together: real
//! deliveries are small, so a few stalled 25 MiB bodies leave them room.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CONNECTION, CONTENT_LENGTH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

const MIB: usize = 1024 * 1024;

/// A body declared (or grown) over this size is "large". GitHub and GitLab
/// deliveries are almost always well under it.
pub const LARGE_BODY: usize = MIB;
/// Webhook bodies held at once (being read, or waiting for or in their
/// handler).
pub const WEBHOOK_MEMORY: usize = 128 * MIB;
/// How much of [`WEBHOOK_MEMORY`] large bodies may hold together; the rest
/// is always left to small ones.
pub const LARGE_SHARE: usize = 96 * MIB;
/// API bodies (file uploads) held at once, apart from webhooks: a token
/// holder's slow uploads cannot take memory deliveries need.
pub const API_MEMORY: usize = 64 * MIB;
/// Form and other small bodies anyone can send, held at once.
pub const FORM_MEMORY: usize = 8 * MIB;

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

/// One pool of body memory. Large bodies also take from `large`, a gate
/// smaller than the pool, so they can never hold all of it.
#[derive(Debug, Clone)]
pub struct Pool {
    free: Arc<Semaphore>,
    large: Arc<Semaphore>,
    size: usize,
}

impl Pool {
    /// `size` bytes, of which large bodies may hold `large_share` together.
    pub fn new(size: usize, large_share: usize) -> Self {
        Pool {
            free: Arc::new(Semaphore::new(size)),
            large: Arc::new(Semaphore::new(large_share.min(size))),
            size,
        }
    }

    /// Bytes of bodies held right now.
    pub fn held(&self) -> usize {
        self.size.saturating_sub(self.free.available_permits())
    }
}

/// The memory budget for bodies: one pool per kind of caller.
#[derive(Debug, Clone)]
pub struct Budget {
    pub webhooks: Pool,
    pub api: Pool,
    pub forms: Pool,
}

impl Budget {
    /// Bytes of bodies held right now, in all pools.
    pub fn held(&self) -> usize {
        self.webhooks.held() + self.api.held() + self.forms.held()
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            webhooks: Pool::new(WEBHOOK_MEMORY, LARGE_SHARE),
            // Uploads are authenticated and may all be large.
            api: Pool::new(API_MEMORY, API_MEMORY),
            forms: Pool::new(FORM_MEMORY, FORM_MEMORY),
        }
    }
}

/// A body's share of its pool, taken as its bytes arrive and given back on
/// drop.
#[derive(Debug)]
struct Share {
    pool: Pool,
    free: Option<OwnedSemaphorePermit>,
    large: Option<OwnedSemaphorePermit>,
    bytes: usize,
    is_large: bool,
}

impl Share {
    fn new(pool: &Pool, declared: Option<u64>) -> Self {
        Share {
            pool: pool.clone(),
            free: None,
            large: None,
            bytes: 0,
            is_large: declared.is_some_and(|n| n > LARGE_BODY as u64),
        }
    }

    /// Takes `n` more bytes. A body that turns out large takes what it
    /// already holds from the large gate too; the gate comes first, so a
    /// large body waiting for room holds nothing small bodies need.
    async fn grow(&mut self, n: usize) -> Result<(), Refusal> {
        if n == 0 {
            return Ok(());
        }
        let after = self.bytes + n;
        if self.is_large || after > LARGE_BODY {
            let add = if self.is_large { n } else { after };
            self.is_large = true;
            let permit = take(&self.pool.large, add).await?;
            merge(&mut self.large, permit);
        }
        let permit = take(&self.pool.free, n).await?;
        merge(&mut self.free, permit);
        self.bytes = after;
        Ok(())
    }
}

async fn take(semaphore: &Arc<Semaphore>, n: usize) -> Result<OwnedSemaphorePermit, Refusal> {
    // Callers stay within the body limit, so within u32 for any sane limit.
    let n = u32::try_from(n).map_err(|_| Refusal::Broken)?;
    semaphore
        .clone()
        .acquire_many_owned(n)
        .await
        .map_err(|_| Refusal::Broken)
}

fn merge(held: &mut Option<OwnedSemaphorePermit>, permit: OwnedSemaphorePermit) {
    match held {
        Some(held) => held.merge(permit),
        None => *held = Some(permit),
    }
}

/// A body read whole, and its share of the budget (given back on drop).
#[derive(Debug)]
pub struct Buffered {
    pub bytes: Bytes,
    _held: Share,
}

/// How one group of routes reads bodies.
#[derive(Debug, Clone)]
pub struct BodyRules {
    pub limit: usize,
    pub deadline: Duration,
    pub pool: Pool,
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
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Refusal::TooLarge { limit });
    }
    let collect = async {
        let mut share = Share::new(&rules.pool, declared);
        let mut buffer = Vec::new();
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| Refusal::Broken)?;
            if buffer.len() + chunk.len() > limit {
                return Err(Refusal::TooLarge { limit });
            }
            share.grow(chunk.len()).await?;
            buffer.extend_from_slice(&chunk);
        }
        Ok(Buffered {
            bytes: Bytes::from(buffer),
            _held: share,
        })
    };
    tokio::time::timeout(rules.deadline, collect)
        .await
        .unwrap_or(Err(Refusal::TooSlow {
            deadline: rules.deadline,
        }))
}

/// Middleware that reads the body under `rules` before the layers inside
/// it and the handler run: for forms, before the concurrency permit; for
/// the API, after the token is checked and before the permit.
pub async fn read_whole(
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
            pool: Pool::new(budget, budget),
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
        assert_eq!(rules.pool.held(), 5);
        drop(read);
        assert_eq!(rules.pool.held(), 0);
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
        assert_eq!(rules.pool.held(), 0);
    }

    #[tokio::test]
    async fn a_body_that_never_ends_times_out_and_gives_its_budget_back() {
        let rules = rules(100, 100);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        tx.send(Ok(Bytes::from_static(b"ab"))).await.unwrap();
        let body = Body::from_stream(tokio_stream_of(rx));
        let refusal = read(&with_length(50), body, &rules).await.unwrap_err();
        assert!(matches!(refusal, Refusal::TooSlow { .. }), "{refusal:?}");
        assert_eq!(rules.pool.held(), 0);
        let error = refusal.to_error("webhook body");
        assert_eq!(error.status, StatusCode::REQUEST_TIMEOUT);
        drop(tx);
    }

    /// A body that sends `first` bytes and then stalls until `tx` drops.
    fn stalled(
        first: usize,
    ) -> (
        Body,
        tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        tx.try_send(Ok(Bytes::from(vec![b' '; first]))).unwrap();
        (Body::from_stream(tokio_stream_of(rx)), tx)
    }

    #[tokio::test]
    async fn stalled_large_bodies_leave_room_for_small_ones() {
        let rules = BodyRules {
            limit: 4 * MIB,
            deadline: Duration::from_secs(5),
            pool: Pool::new(4 * MIB, 3 * MIB),
        };
        let mut senders = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..3 {
            let (body, tx) = stalled(3 * MIB / 2);
            senders.push(tx);
            let rules = rules.clone();
            readers.push(tokio::spawn(async move {
                read(&with_length(2 * MIB), body, &rules).await
            }));
        }
        // Two hold the whole large share; the third waits for it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while rules.pool.held() < 3 * MIB {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}",
                rules.pool.held()
            );
            tokio::task::yield_now().await;
        }
        let small = tokio::time::timeout(
            Duration::from_secs(1),
            read(
                &with_length(MIB / 2),
                Body::from(vec![b'x'; MIB / 2]),
                &rules,
            ),
        )
        .await
        .expect("the small body found room")
        .unwrap();
        assert_eq!(small.bytes.len(), MIB / 2);
        assert_eq!(rules.pool.held(), 3 * MIB + MIB / 2);
        drop(small);
        for reader in readers {
            reader.abort();
            assert!(reader.await.unwrap_err().is_cancelled());
        }
        drop(senders);
        assert_eq!(rules.pool.held(), 0);
    }

    #[tokio::test]
    async fn a_body_of_unknown_length_that_grows_large_counts_as_large() {
        let rules = BodyRules {
            limit: 4 * MIB,
            deadline: Duration::from_secs(5),
            pool: Pool::new(4 * MIB, 2 * MIB),
        };
        let small = read(&HeaderMap::new(), Body::from(vec![b'x'; MIB]), &rules)
            .await
            .unwrap();
        assert_eq!(rules.pool.large.available_permits(), 2 * MIB);
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from(vec![b'x'; MIB])),
            Ok(Bytes::from(vec![b'x'; MIB / 2])),
        ];
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let large = read(&HeaderMap::new(), body, &rules).await.unwrap();
        assert_eq!(large.bytes.len(), 3 * MIB / 2);
        assert_eq!(rules.pool.large.available_permits(), MIB / 2);
        assert_eq!(rules.pool.held(), 5 * MIB / 2);
        drop((small, large));
        assert_eq!(rules.pool.held(), 0);
        assert_eq!(rules.pool.large.available_permits(), 2 * MIB);
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
