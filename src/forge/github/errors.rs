//! GitHub error responses → [`ForgeError`]. GitHub's body is
//! `{"message", "documentation_url", "errors"?}`; rate limits are told by
//! headers (primary: `x-ratelimit-remaining: 0` + `x-ratelimit-reset`;
//! secondary: 403/429 with `retry-after` or a "secondary rate limit"
//! message); a 403 from a missing app permission names it in
//! `x-accepted-github-permissions`.

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::forge::error::{ForgeError, ForgeKind, short};
use crate::forge::http::{RawResponse, retry_after, until_reset};

const GITHUB: ForgeKind = ForgeKind::Github;

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

fn detail(error: &serde_json::Value) -> Option<String> {
    if let Some(text) = error.as_str() {
        return Some(text.to_string());
    }
    if let Some(message) = error.get("message").and_then(|m| m.as_str()) {
        return Some(message.to_string());
    }
    let field = error.get("field").and_then(|f| f.as_str())?;
    let code = error
        .get("code")
        .and_then(|c| c.as_str())
        .unwrap_or("invalid");
    Some(format!("{field} {code}"))
}

/// GitHub's advice for a secondary rate limit that names no wait.
const SECONDARY_DEFAULT_WAIT: Duration = Duration::from_secs(60);

pub(crate) fn classify(response: &RawResponse, what: &str) -> ForgeError {
    classify_at(response, what, SystemTime::now())
}

pub(crate) fn classify_at(response: &RawResponse, what: &str, now: SystemTime) -> ForgeError {
    let body: ErrorBody = serde_json::from_str(&response.body).unwrap_or_default();
    let message = if body.message.is_empty() {
        format!("HTTP {}", response.status)
    } else {
        short(&body.message)
    };
    let status = response.status;
    if status == 403 || status == 429 {
        if response.header("x-ratelimit-remaining") == Some("0") {
            let wait = retry_after(&response.headers)
                .or_else(|| until_reset(&response.headers, "x-ratelimit-reset", now));
            return ForgeError::RateLimited {
                forge: GITHUB,
                primary: true,
                retry_after: wait,
            };
        }
        let wait = retry_after(&response.headers);
        if status == 429
            || wait.is_some()
            || message.to_lowercase().contains("secondary rate limit")
        {
            // GitHub: without `retry-after`, wait at least a minute.
            return ForgeError::RateLimited {
                forge: GITHUB,
                primary: false,
                retry_after: wait.or(Some(SECONDARY_DEFAULT_WAIT)),
            };
        }
    }
    match status {
        401 => ForgeError::AuthLost {
            forge: GITHUB,
            message,
            hint: "the installation token was refused even after minting a new one; \
                   re-install the GitHub App on the repository"
                .into(),
        },
        403 => {
            let permission = response
                .header("x-accepted-github-permissions")
                .filter(|p| !p.is_empty())
                .map(str::to_string);
            let hint = match &permission {
                Some(p) => format!(
                    "grant the GitHub App the `{p}` permission in its settings, then accept the \
                     new permissions on the installation"
                ),
                None => format!("the GitHub App may not do this ({what}); check its permissions"),
            };
            ForgeError::NoPermission {
                forge: GITHUB,
                message,
                permission,
                hint,
            }
        }
        404 => ForgeError::NotFound {
            forge: GITHUB,
            what: what.to_string(),
        },
        // 405: e.g. "Pull Request is not mergeable"; 406: not acceptable.
        400 | 405 | 406 | 409 | 422 => {
            let details: Vec<String> = body.errors.iter().filter_map(detail).collect();
            let message = if details.is_empty() {
                message
            } else {
                format!("{message}: {}", short(&details.join("; ")))
            };
            ForgeError::Validation {
                forge: GITHUB,
                message,
            }
        }
        500..=599 => ForgeError::Server {
            forge: GITHUB,
            status,
            message,
        },
        _ => ForgeError::Unexpected {
            forge: GITHUB,
            message: format!("HTTP {status} while {what}: {message}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::forge::http::test_response as response;

    #[test]
    fn primary_rate_limit_waits_until_reset() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let r = response(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1042"),
            ],
            r#"{"message":"API rate limit exceeded for installation ID 1."}"#,
        );
        assert_eq!(
            classify_at(&r, "x", now),
            ForgeError::RateLimited {
                forge: GITHUB,
                primary: true,
                retry_after: Some(Duration::from_secs(42))
            }
        );
    }

    #[test]
    fn secondary_rate_limits_by_header_status_or_message() {
        let cases = [
            response(403, &[("retry-after", "7")], r#"{"message":"slow down"}"#),
            response(429, &[], "{}"),
            response(
                403,
                &[],
                r#"{"message":"You have exceeded a secondary rate limit."}"#,
            ),
        ];
        let minute = Some(SECONDARY_DEFAULT_WAIT);
        let waits = [Some(Duration::from_secs(7)), minute, minute];
        for (r, wait) in cases.iter().zip(waits) {
            assert_eq!(
                classify(r, "x"),
                ForgeError::RateLimited {
                    forge: GITHUB,
                    primary: false,
                    retry_after: wait
                }
            );
        }
    }

    #[test]
    fn forbidden_names_the_missing_permission() {
        let r = response(
            403,
            &[("x-accepted-github-permissions", "pull_requests=write")],
            r#"{"message":"Resource not accessible by integration"}"#,
        );
        let error = classify(&r, "opening a pull request");
        let ForgeError::NoPermission { permission, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(permission.as_deref(), Some("pull_requests=write"));
        assert!(
            error
                .to_string()
                .contains("grant the GitHub App the `pull_requests=write` permission")
        );
    }

    #[test]
    fn validation_lists_githubs_errors() {
        let r = response(
            422,
            &[],
            r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"A pull request already exists for o:b."},{"resource":"PullRequest","field":"head","code":"invalid"}]}"#,
        );
        assert_eq!(
            classify(&r, "x").to_string(),
            "GitHub refused the request: Validation Failed: A pull request already exists for o:b.; head invalid"
        );
    }

    #[test]
    fn other_statuses() {
        assert_eq!(
            classify(&response(401, &[], r#"{"message":"Bad credentials"}"#), "x").class(),
            "auth_lost"
        );
        assert_eq!(
            classify(&response(404, &[], "{}"), "x").class(),
            "not_found"
        );
        assert_eq!(
            classify(&response(502, &[], "<html>"), "x").class(),
            "server"
        );
        assert_eq!(
            classify(&response(418, &[], "{}"), "x").class(),
            "unexpected"
        );
        let not_mergeable = classify(
            &response(405, &[], r#"{"message":"Pull Request is not mergeable"}"#),
            "merging",
        );
        assert_eq!(not_mergeable.class(), "validation");
        assert!(not_mergeable.to_string().contains("not mergeable"));
    }
}
