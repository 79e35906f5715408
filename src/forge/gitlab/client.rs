//! A thin async client for GitLab REST v4: authentication with the
//! integration's token (`PRIVATE-TOKEN`, opened from its sealed form only
//! for the call), retries, and GitLab's errors mapped to graft's classes.

use std::time::SystemTime;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::crypto::Keyring;
use crate::crypto::install_crypto_provider;
use crate::forge::Result;
use crate::forge::body::{ReadError, read_response, too_large};
use crate::forge::error::{ForgeError, ForgeKind, short};
use crate::forge::http::{
    RawResponse, foreign_next_page, next_link_within, retry_after, until_reset,
};
use crate::forge::pages::Pages;
use crate::forge::retry::Retrier;
use crate::forge::sticky::KeyedLocks;

const GITLAB: ForgeKind = ForgeKind::Gitlab;

/// Where the integration's token comes from.
#[derive(Clone)]
pub enum GitlabToken {
    /// Given in the environment (`GITLAB_TOKEN`).
    Plain(SecretString),
    /// Stored encrypted; opened for each call and dropped after it.
    Sealed {
        sealed: String,
        keyring: Box<Keyring>,
    },
}

impl GitlabToken {
    pub(crate) fn reveal(&self) -> Result<SecretString> {
        match self {
            GitlabToken::Plain(token) => Ok(token.clone()),
            GitlabToken::Sealed { sealed, keyring } => keyring.open(sealed).map_err(|e| {
                ForgeError::Config(format!(
                    "the GitLab integration's token cannot be decrypted ({e}); check \
                     ENCRYPTION_KEY (and ENCRYPTION_KEY_OLD during a rotation)"
                ))
            }),
        }
    }
}

/// Stands in for the text of an answer a client withholds.
const WITHHELD: &str = "its answer is not shown";

/// Most redirects followed in one call.
const MAX_REDIRECTS: usize = 10;

/// Whether a redirect from the last of `previous` to `next` is followed:
/// only within one origin (scheme, host and port). The token travels in
/// `PRIVATE-TOKEN`, which reqwest (stripping only `Authorization` and
/// cookies) would carry to whatever host a redirect names.
fn follows_redirect(previous: &[reqwest::Url], next: &reqwest::Url) -> bool {
    previous.len() <= MAX_REDIRECTS
        && previous
            .last()
            .is_some_and(|from| from.origin() == next.origin())
}

/// A redirect elsewhere is not followed: the 3xx answer comes back and is
/// reported as such.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if follows_redirect(attempt.previous(), attempt.url()) {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// Whether `base_url` is plain http and the operator has not allowed it
/// (GRAFT_ALLOW_HTTP_GITLAB): every call carries the token, so over http
/// anyone on the path could read it.
pub fn plain_http_refused(base_url: &str, allow_http: bool) -> bool {
    !allow_http
        && base_url
            .trim()
            .get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

#[derive(Clone)]
pub struct GitlabClient {
    /// e.g. `https://gitlab.com`, no trailing slash.
    pub base_url: String,
    token: GitlabToken,
    http: reqwest::Client,
    pub(crate) retrier: Retrier,
    pub(crate) locks: KeyedLocks,
    user: std::sync::Arc<tokio::sync::OnceCell<CurrentUser>>,
    /// Whether the text of GitLab's error answers may appear in graft's
    /// errors (see [`GitlabClient::withholding_answers`]).
    quote_answers: bool,
}

impl std::fmt::Debug for GitlabClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitlabClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CurrentUser {
    pub id: i64,
    pub username: String,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        // Validation errors come as {"field": ["is invalid"]}.
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k} {}", text_of(v)))
            .collect::<Vec<_>>()
            .join("; "),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

pub(crate) fn classify(response: &RawResponse, what: &str) -> ForgeError {
    classify_at(response, what, SystemTime::now())
}

pub(crate) fn classify_at(response: &RawResponse, what: &str, now: SystemTime) -> ForgeError {
    let body: ErrorBody = serde_json::from_str(&response.body).unwrap_or_default();
    let message = body
        .message
        .as_ref()
        .or(body.error.as_ref())
        .map(text_of)
        .map(|m| short(&m))
        .unwrap_or_else(|| format!("HTTP {}", response.status));
    match response.status {
        429 => ForgeError::RateLimited {
            forge: GITLAB,
            primary: response.header("ratelimit-remaining") == Some("0"),
            retry_after: retry_after(&response.headers)
                .or_else(|| until_reset(&response.headers, "ratelimit-reset", now)),
        },
        401 => ForgeError::AuthLost {
            forge: GITLAB,
            message,
            hint: "the GitLab token was revoked or has expired; create a new one with the `api` \
                   scope and update the integration (GITLAB_TOKEN or POST /api/v1/integrations/gitlab)"
                .into(),
        },
        403 => ForgeError::NoPermission {
            forge: GITLAB,
            message,
            permission: Some("api".into()),
            hint: format!(
                "the token's user may not do this ({what}); it needs the `api` scope and at \
                 least the Developer role on the project"
            ),
        },
        status @ 300..=399 => ForgeError::Unexpected {
            forge: GITLAB,
            message: format!(
                "HTTP {status} while {what}: a redirect to another address, which graft does \
                 not follow with its token; check the GitLab URL (GITLAB_URL or the \
                 integration's base_url)"
            ),
        },
        // GitLab answers some conflicts with 404, e.g. "404 Award Emoji
        // Name has already been taken".
        404 if message.contains("already been taken") => ForgeError::Validation {
            forge: GITLAB,
            message,
        },
        404 => ForgeError::NotFound {
            forge: GITLAB,
            what: what.to_string(),
        },
        // 405/406: the merge request cannot be merged (conflicts, not
        // mergeable yet).
        400 | 405 | 406 | 409 | 422 => ForgeError::Validation {
            forge: GITLAB,
            message,
        },
        status @ 500..=599 => ForgeError::Server {
            forge: GITLAB,
            status,
            message,
        },
        status => ForgeError::Unexpected {
            forge: GITLAB,
            message: format!("HTTP {status} while {what}: {message}"),
        },
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    response: &RawResponse,
    what: &str,
) -> Result<T> {
    response.json(GITLAB, what)
}

impl GitlabClient {
    pub fn new(
        base_url: &str,
        token: GitlabToken,
        retrier: Retrier,
        locks: KeyedLocks,
    ) -> Result<Self> {
        install_crypto_provider();
        let base_url = base_url.trim().trim_end_matches('/').to_string();
        let valid = reqwest::Url::parse(&base_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if valid.is_none() {
            return Err(ForgeError::Config(format!(
                "GitLab URL `{}` is not an http(s) URL; use e.g. https://gitlab.com (set GITLAB_URL \
                 or the integration's base_url)",
                short(&base_url)
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("graft/", env!("CARGO_PKG_VERSION")))
            .redirect(same_origin_redirects())
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| {
                ForgeError::Config(format!("cannot set up the GitLab HTTP client: {e}"))
            })?;
        Ok(GitlabClient {
            base_url,
            token,
            http,
            retrier,
            locks,
            user: Default::default(),
            quote_answers: true,
        })
    }

    /// This client's errors carry the status and graft's reading of it,
    /// never the text of the answer: for probing a URL someone just typed
    /// (connecting an integration), whose answers may come from any server
    /// and must not be relayed through graft's API.
    pub fn withholding_answers(mut self) -> Self {
        self.quote_answers = false;
        self
    }

    /// A non-2xx answer as a [`ForgeError`].
    fn failure(&self, response: &RawResponse, what: &str) -> ForgeError {
        if self.quote_answers {
            return classify(response, what);
        }
        classify(
            &RawResponse {
                status: response.status,
                headers: response.headers.clone(),
                body: json!({ "message": WITHHELD }).to_string(),
            },
            what,
        )
    }

    /// A 2xx answer's JSON; what does not parse is reported without the
    /// parser's quote of it when this client withholds answers.
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(
        &self,
        response: &RawResponse,
        what: &str,
    ) -> Result<T> {
        decode(response, what).map_err(|e| {
            if self.quote_answers {
                e
            } else {
                ForgeError::Unexpected {
                    forge: GITLAB,
                    message: format!(
                        "the answer to {what} is not GitLab's JSON (is the URL a GitLab instance?)"
                    ),
                }
            }
        })
    }

    /// `path` is relative to `/api/v4` (`/projects/...`), or a full URL
    /// from a `Link` header.
    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}/api/v4{path}", self.base_url)
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<RawResponse> {
        let token = self.token.reveal()?;
        let mut auth =
            reqwest::header::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                ForgeError::Config(
                    "the GitLab token contains characters not allowed in a header".into(),
                )
            })?;
        auth.set_sensitive(true);
        let mut request = self
            .http
            .request(method, self.url(path))
            .header("PRIVATE-TOKEN", auth);
        if let Some(body) = body {
            request = request.json(body);
        }
        let network = |e: reqwest::Error| ForgeError::Network {
            forge: GITLAB,
            // Without the URL: it is ours, and only noise here.
            message: short(&e.without_url().to_string()),
        };
        let response = request.send().await.map_err(network)?;
        let (status, headers, body) = read_response(response).await.map_err(|e| match e {
            ReadError::Body(e) => network(e),
            ReadError::TooLarge => too_large(GITLAB),
        })?;
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// One call with retries; a non-2xx answer becomes a [`ForgeError`].
    pub(crate) async fn call(
        &self,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<RawResponse> {
        self.retrier
            .run(GITLAB, what, || async {
                let response = self.send(method.clone(), path, body).await?;
                if response.is_success() {
                    Ok(response)
                } else {
                    Err(self.failure(&response, what))
                }
            })
            .await
    }

    pub(crate) async fn get<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
    ) -> Result<T> {
        let response = self.call(what, Method::GET, path, None).await?;
        self.decode(&response, what)
    }

    /// The user the token belongs to (graft's own identity on GitLab).
    pub async fn current_user(&self) -> Result<CurrentUser> {
        self.user
            .get_or_try_init(|| self.get("reading the token's user", "/user"))
            .await
            .cloned()
    }

    pub(crate) fn token(&self) -> Result<SecretString> {
        self.token.reveal()
    }
}

/// GitLab lists: `Link: rel="next"`, or `x-next-page` when a proxy dropped
/// the `Link` header (or pointed it at another host).
impl Pages for GitlabClient {
    const FORGE: ForgeKind = GITLAB;

    async fn fetch(&self, what: &str, uri: &str) -> Result<RawResponse> {
        self.call(what, Method::GET, uri, None).await
    }

    fn items<T: serde::de::DeserializeOwned>(
        &self,
        response: &RawResponse,
        what: &str,
    ) -> Result<Vec<T>> {
        self.decode(response, what)
    }

    fn next_page(&self, uri: &str, response: &RawResponse, what: &str) -> Result<Option<String>> {
        // `x-next-page` stays on this host.
        let header_page = response
            .header("x-next-page")
            .filter(|p| !p.is_empty())
            .map(|page| with_page(uri, page));
        match next_link_within(&response.headers, &self.base_url) {
            Ok(link) => Ok(link.or(header_page)),
            Err(origin) => header_page
                .map(Some)
                .ok_or_else(|| foreign_next_page(GITLAB, what, &origin)),
        }
    }
}

/// `path` with its `page` query parameter set to `page`.
fn with_page(path: &str, page: &str) -> String {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("page="))
        .map(str::to_string)
        .collect();
    params.push(format!("page={page}"));
    format!("{base}?{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::forge::http::test_response as response;

    #[test]
    fn classifies_gitlab_errors() {
        let now = UNIX_EPOCH + Duration::from_secs(100);
        let limited = response(
            429,
            &[("ratelimit-remaining", "0"), ("ratelimit-reset", "130")],
            r#"{"message":"Retry later"}"#,
        );
        assert_eq!(
            classify_at(&limited, "x", now),
            ForgeError::RateLimited {
                forge: GITLAB,
                primary: true,
                retry_after: Some(Duration::from_secs(30))
            }
        );
        let retry = response(429, &[("retry-after", "5")], "{}");
        assert_eq!(
            classify(&retry, "x").retry_after(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            classify(
                &response(401, &[], r#"{"message":"401 Unauthorized"}"#),
                "x"
            )
            .class(),
            "auth_lost"
        );
        assert_eq!(
            classify(&response(403, &[], r#"{"message":"403 Forbidden"}"#), "x").class(),
            "no_permission"
        );
        assert_eq!(
            classify(
                &response(404, &[], r#"{"message":"404 Project Not Found"}"#),
                "x"
            )
            .class(),
            "not_found"
        );
        assert_eq!(classify(&response(503, &[], ""), "x").class(), "server");
        let invalid = response(400, &[], r#"{"message":{"title":["can't be blank"]}}"#);
        assert_eq!(
            classify(&invalid, "x").to_string(),
            "GitLab refused the request: title can't be blank"
        );
        let conflict = response(
            409,
            &[],
            r#"{"message":["Another open merge request already exists for this source branch: !1"]}"#,
        );
        assert!(
            classify(&conflict, "x")
                .to_string()
                .contains("Another open merge request")
        );
        let oauth = response(
            401,
            &[],
            r#"{"error":"invalid_token","error_description":"Token was revoked."}"#,
        );
        assert!(classify(&oauth, "x").to_string().contains("invalid_token"));
        // GitLab's answer to an award that is there already.
        let taken = response(
            404,
            &[],
            r#"{"message":"404 Award Emoji Name has already been taken Not Found"}"#,
        );
        assert_eq!(classify(&taken, "x").class(), "validation");
        let conflicts = response(406, &[], r#"{"message":"Branch cannot be merged"}"#);
        assert_eq!(classify(&conflicts, "x").class(), "validation");
    }

    #[test]
    fn redirects_stay_on_one_origin() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let from = [url("https://gitlab.example.com/api/v4/user")];
        assert!(follows_redirect(
            &from,
            &url("https://gitlab.example.com/api/v4/x")
        ));
        for elsewhere in [
            "https://evil.example/api/v4/user",
            "http://gitlab.example.com/api/v4/user",
            "https://gitlab.example.com:8443/api/v4/user",
            "https://gitlab.example.com.evil.example/",
        ] {
            assert!(!follows_redirect(&from, &url(elsewhere)), "{elsewhere}");
        }
        let long: Vec<_> = (0..=MAX_REDIRECTS)
            .map(|i| url(&format!("https://gitlab.example.com/{i}")))
            .collect();
        assert!(!follows_redirect(
            &long,
            &url("https://gitlab.example.com/x")
        ));
        let redirected = classify(&response(302, &[], ""), "reading the token's user");
        assert!(
            redirected
                .to_string()
                .contains("redirect to another address"),
            "{redirected}"
        );
    }

    #[test]
    fn plain_http_needs_the_operators_leave() {
        assert!(plain_http_refused("http://gitlab.internal", false));
        assert!(plain_http_refused(" HTTP://gitlab.internal", false));
        assert!(!plain_http_refused("http://gitlab.internal", true));
        assert!(!plain_http_refused("https://gitlab.com", false));
        assert!(!plain_http_refused("htt", false));
    }

    #[test]
    fn next_page_from_header() {
        assert_eq!(
            with_page("/projects/1/notes?per_page=2&page=1", "2"),
            "/projects/1/notes?per_page=2&page=2"
        );
        assert_eq!(
            with_page("/projects/1/notes", "3"),
            "/projects/1/notes?page=3"
        );
    }
}
