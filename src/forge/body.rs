//! Reading a forge's answer with a cap: chunk by chunk, stopping once it
//! passes [`MAX_RESPONSE_BYTES`], so a broken or hostile server (or a
//! mistyped URL pointing at a file server) costs that much memory, never
//! all of it. Both clients read every answer through [`read_capped`].

use http::HeaderMap;
use http_body_util::BodyExt;

use super::error::{ForgeError, ForgeKind};
use super::http::header;

/// The most graft reads of one forge answer. Far above any answer graft
/// asks for: a page is at most 100 items, a recursive tree GitHub cuts at
/// 100,000 entries (~15 MiB of JSON), a file read is refused over 1 MiB
/// before its content is asked for.
pub const MAX_RESPONSE_BYTES: usize = 32 << 20;

/// Why an answer was not read whole.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError<E> {
    /// The connection failed while reading.
    Body(E),
    /// More than the limit: graft stopped reading.
    TooLarge,
}

/// The whole of `body` as text (invalid UTF-8 replaced, as an HTTP client's
/// `text()` does), or [`ReadError::TooLarge`] once it passes `limit` bytes;
/// a `Content-Length` over `limit` stops before reading anything.
pub async fn read_capped<B>(
    headers: &HeaderMap,
    mut body: B,
    limit: usize,
) -> Result<String, ReadError<B::Error>>
where
    B: hyper::body::Body + Unpin,
    B::Data: AsRef<[u8]>,
{
    let declared = header(headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(ReadError::Body)?;
        // Trailers carry no content.
        if let Ok(data) = frame.into_data() {
            let chunk = data.as_ref();
            if chunk.len() > limit - bytes.len() {
                return Err(ReadError::TooLarge);
            }
            bytes.extend_from_slice(chunk);
        }
    }
    Ok(match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// A reqwest answer read with [`read_capped`] at [`MAX_RESPONSE_BYTES`]:
/// its status, headers and text.
pub async fn read_response(
    response: reqwest::Response,
) -> Result<(u16, HeaderMap, String), ReadError<reqwest::Error>> {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = http::Response::from(response).into_body();
    let text = read_capped(&headers, body, MAX_RESPONSE_BYTES).await?;
    Ok((status, headers, text))
}

/// The error for an answer over [`MAX_RESPONSE_BYTES`]: not retried (the
/// same request would get the same answer), and it says what to check.
pub fn too_large(forge: ForgeKind) -> ForgeError {
    ForgeError::Unexpected {
        forge,
        message: format!(
            "the answer is larger than {} MiB, far more than {forge}'s API sends graft; graft \
             stopped reading it (check that the API URL setting names {forge}'s API)",
            MAX_RESPONSE_BYTES >> 20
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures_util::stream;
    use http_body_util::{Full, StreamBody};
    use hyper::body::Frame;

    use super::*;

    type Chunk = Result<Frame<&'static [u8]>, Infallible>;

    fn chunks(parts: &[&'static [u8]]) -> StreamBody<stream::Iter<std::vec::IntoIter<Chunk>>> {
        let frames: Vec<Chunk> = parts.iter().map(|p| Ok(Frame::data(*p))).collect();
        StreamBody::new(stream::iter(frames))
    }

    fn length(n: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("content-length", n.parse().unwrap());
        headers
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let body = chunks(&[b"{\"a\":", b" 1}"]);
        let text = read_capped(&HeaderMap::new(), body, 10).await.unwrap();
        assert_eq!(text, "{\"a\": 1}");
        let exact = chunks(&[b"12345", b"67890"]);
        assert_eq!(
            read_capped(&HeaderMap::new(), exact, 10).await.unwrap(),
            "1234567890"
        );
        let lossy = Full::new(&b"a\xffb"[..]);
        assert_eq!(
            read_capped(&HeaderMap::new(), lossy, 10).await.unwrap(),
            "a\u{fffd}b"
        );
    }

    #[tokio::test]
    async fn reading_stops_past_the_limit() {
        let body = chunks(&[b"12345", b"67890", b"1"]);
        assert_eq!(
            read_capped(&HeaderMap::new(), body, 10).await,
            Err(ReadError::TooLarge)
        );
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_not_read() {
        // The body would fit: the header alone decides.
        let body = chunks(&[b"1"]);
        assert_eq!(
            read_capped(&length("11"), body, 10).await,
            Err(ReadError::TooLarge)
        );
        let body = chunks(&[b"1"]);
        assert_eq!(read_capped(&length("10"), body, 10).await.unwrap(), "1");
    }

    #[test]
    fn the_error_names_the_limit_and_is_not_retried() {
        let error = too_large(ForgeKind::Gitlab);
        assert!(!error.is_retryable());
        let text = error.to_string();
        assert!(text.contains("larger than 32 MiB"), "{text}");
        assert!(text.contains("GitLab"), "{text}");
    }
}
