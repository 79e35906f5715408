//! Small pieces both forge clients share: a read response, `Link` header
//! pagination, wait headers, URL encoding of path segments.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use super::error::{ForgeError, ForgeKind};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// A response read to the end: what error classification and decoding need.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl RawResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as JSON of type `T`; what does not parse is `forge`
    /// answering unexpectedly while `what`.
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        forge: ForgeKind,
        what: &str,
    ) -> Result<T, ForgeError> {
        serde_json::from_str(&self.body).map_err(|e| ForgeError::Unexpected {
            forge,
            message: format!("cannot read the answer to {what}: {e}"),
        })
    }
}

/// A response as a test writes it.
#[cfg(test)]
pub(crate) fn test_response(
    status: u16,
    headers: &[(&'static str, &str)],
    body: &str,
) -> RawResponse {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, value.parse().expect("a test header value"));
    }
    RawResponse {
        status,
        headers: map,
        body: body.to_string(),
    }
}

pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Characters kept as they are in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Encodes one path segment or query value: `group/sub` → `group%2Fsub`.
pub fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

/// The URL of the `rel="next"` page in a `Link` header, if any.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    let value = header(headers, "link")?;
    value.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| url.to_string())
    })
}

/// The next page's URL when it is on the forge itself (same scheme, host
/// and port as `base`, or a path). A `Link` pointing elsewhere is not
/// followed, since the request would carry graft's token there: it is
/// `Err` with that origin, so the caller fails instead of returning a list
/// cut short (a missed status comment would be posted twice).
pub fn next_link_within(headers: &HeaderMap, base: &str) -> Result<Option<String>, String> {
    let Some(link) = next_link(headers) else {
        return Ok(None);
    };
    if link.starts_with('/') {
        return Ok(Some(link));
    }
    let next = reqwest::Url::parse(&link).map_err(|_| "an unparsable URL".to_string())?;
    let same = reqwest::Url::parse(base).is_ok_and(|base_url| {
        next.scheme() == base_url.scheme()
            && next.host_str() == base_url.host_str()
            && next.port_or_known_default() == base_url.port_or_known_default()
    });
    if same {
        Ok(Some(link))
    } else {
        Err(next.origin().ascii_serialization())
    }
}

/// The error for a next page on another host than the forge's API.
pub fn foreign_next_page(forge: ForgeKind, what: &str, origin: &str) -> ForgeError {
    ForgeError::Unexpected {
        forge,
        message: format!(
            "the next page while {what} is on another host ({origin}); graft does not send its \
             token there, check that the API URL setting names the host the forge answers as"
        ),
    }
}

/// `Retry-After` in seconds (the forms GitHub and GitLab send).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header(headers, "retry-after")?
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Time until a reset given as Unix seconds (`X-RateLimit-Reset`,
/// `RateLimit-Reset`); zero when it is already past.
pub fn until_reset(headers: &HeaderMap, name: &str, now: SystemTime) -> Option<Duration> {
    let reset = header(headers, name)?.parse::<u64>().ok()?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    Some(Duration::from_secs(reset).saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn finds_the_next_page_among_links() {
        let h = headers(&[(
            "link",
            "<https://api.github.com/repositories/1/issues/2/comments?per_page=2&page=3>; rel=\"next\", \
             <https://api.github.com/repositories/1/issues/2/comments?per_page=2&page=9>; rel=\"last\"",
        )]);
        assert_eq!(
            next_link(&h).unwrap(),
            "https://api.github.com/repositories/1/issues/2/comments?per_page=2&page=3"
        );
        let last_page = headers(&[(
            "link",
            "<https://x/a?page=1>; rel=\"first\", <https://x/a?page=1>; rel=\"prev\"",
        )]);
        assert_eq!(next_link(&last_page), None);
        assert_eq!(next_link(&HeaderMap::new()), None);
        assert_eq!(next_link(&headers(&[("link", "garbage")])), None);
    }

    #[test]
    fn reads_wait_headers() {
        let h = headers(&[("retry-after", "17"), ("x-ratelimit-reset", "1000")]);
        assert_eq!(retry_after(&h), Some(Duration::from_secs(17)));
        let now = UNIX_EPOCH + Duration::from_secs(970);
        assert_eq!(
            until_reset(&h, "x-ratelimit-reset", now),
            Some(Duration::from_secs(30))
        );
        let later = UNIX_EPOCH + Duration::from_secs(2000);
        assert_eq!(
            until_reset(&h, "x-ratelimit-reset", later),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode("group/sub/project"), "group%2Fsub%2Fproject");
        assert_eq!(encode("graft/infra-x_1.2"), "graft%2Finfra-x_1.2");
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }

    #[test]
    fn pagination_stays_on_the_forge() {
        let link = |url: &str| headers(&[("link", &format!("<{url}>; rel=\"next\""))]);
        let base = "https://ghe.example.com/api/v3";
        let within = |url: &str| next_link_within(&link(url), base);
        assert_eq!(
            within("https://ghe.example.com/api/v3/x?page=2"),
            Ok(Some("https://ghe.example.com/api/v3/x?page=2".into()))
        );
        assert_eq!(
            within("https://ghe.example.com:443/x?page=2"),
            Ok(Some("https://ghe.example.com:443/x?page=2".into()))
        );
        assert_eq!(
            within("https://evil.example/x?page=2"),
            Err("https://evil.example".into())
        );
        assert_eq!(
            within("http://ghe.example.com/x"),
            Err("http://ghe.example.com".into())
        );
        assert_eq!(within("/x?page=2"), Ok(Some("/x?page=2".into())));
        assert_eq!(next_link_within(&HeaderMap::new(), base), Ok(None));
    }
}
