//! Connecting a GitLab integration: check that the token works and has the
//! `api` scope before storing it, and optionally create (or update) the
//! project webhooks that point at graft.

use std::sync::Arc;

use reqwest::Method;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::{GitlabClient, GitlabToken};
use crate::forge::error::{ForgeError, short};
use crate::forge::http::encode;
use crate::forge::pages::Pages;
use crate::forge::retry::{Retrier, RetryPolicy, TokioSleeper};
use crate::forge::sticky::KeyedLocks;
use crate::metrics::Metrics;

/// The scope graft's GitLab token needs: merge requests, notes, award
/// emoji, commit statuses, members, and git over HTTP.
pub const REQUIRED_SCOPE: &str = "api";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenCheck {
    /// The user the token acts as (graft's identity on GitLab).
    pub username: String,
    /// The token's scopes, when GitLab says (GitLab 15.5 and later).
    pub scopes: Option<Vec<String>>,
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "GitLab at {url} rejected the token (401 Unauthorized): it is wrong, revoked or \
         expired. Create an access token with the `api` scope and try again"
    )]
    BadToken { url: String },
    #[error(
        "the token's scopes are {scopes}, but graft needs `api` (it opens merge requests, \
         writes notes and statuses and pushes branches). Create a token with the `api` scope"
    )]
    InsufficientScope { scopes: String },
    #[error("the token is not active (revoked or expired); create a new one with the `api` scope")]
    Inactive,
    #[error("cannot reach GitLab at {url}: {message}. Check the URL and that graft can reach it")]
    Unreachable { url: String, message: String },
    #[error("{0}")]
    Other(String),
}

#[derive(Deserialize)]
struct TokenJson {
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    revoked: bool,
    #[serde(default)]
    expires_at: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct UserJson {
    username: String,
}

/// A client for checking `token` at `base_url`: one attempt per call, so a
/// wrong URL fails fast instead of being retried.
pub fn probe_client(
    base_url: &str,
    token: SecretString,
    metrics: Arc<Metrics>,
) -> Result<GitlabClient, ConnectError> {
    let retrier = Retrier::new(
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        Arc::new(TokioSleeper),
        metrics,
    );
    GitlabClient::new(
        base_url,
        GitlabToken::Plain(token),
        retrier,
        KeyedLocks::default(),
    )
    // The URL was just typed in: whatever answers there is not relayed.
    .map(GitlabClient::withholding_answers)
    .map_err(|e| ConnectError::Other(e.to_string()))
}

fn classify(error: ForgeError, url: &str) -> ConnectError {
    match error {
        ForgeError::AuthLost { .. } => ConnectError::BadToken { url: url.into() },
        ForgeError::NoPermission { .. } => ConnectError::InsufficientScope {
            scopes: "too narrow for this call".into(),
        },
        ForgeError::Network { message, .. } => ConnectError::Unreachable {
            url: url.into(),
            message,
        },
        ForgeError::Server {
            status, message, ..
        } => ConnectError::Unreachable {
            url: url.into(),
            message: format!("HTTP {status}: {message}"),
        },
        other => ConnectError::Other(short(&other.to_string())),
    }
}

/// Checks that the token authenticates and carries the `api` scope.
pub async fn verify_token(client: &GitlabClient) -> Result<TokenCheck, ConnectError> {
    let url = client.base_url.clone();
    let token: Option<TokenJson> = match client
        .get("reading the token's scopes", "/personal_access_tokens/self")
        .await
    {
        Ok(token) => Some(token),
        // GitLab before 15.5 has no such route; /user still proves the token.
        Err(ForgeError::NotFound { .. }) => None,
        Err(e) => return Err(classify(e, &url)),
    };
    if let Some(token) = &token {
        if !token.active || token.revoked {
            return Err(ConnectError::Inactive);
        }
        if !token.scopes.iter().any(|s| s == REQUIRED_SCOPE) {
            let scopes = if token.scopes.is_empty() {
                "(none)".to_string()
            } else {
                token.scopes.join(", ")
            };
            return Err(ConnectError::InsufficientScope { scopes });
        }
    }
    let user: UserJson = client
        .get("reading the token's user", "/user")
        .await
        .map_err(|e| classify(e, &url))?;
    Ok(TokenCheck {
        username: user.username,
        scopes: token.as_ref().map(|t| t.scopes.clone()),
        expires_at: token.and_then(|t| t.expires_at),
    })
}

/// What happened to one project's webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookResult {
    pub project: String,
    /// `created`, `updated` or `failed`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct HookJson {
    id: i64,
    url: String,
}

fn hook_error(error: ForgeError, project: &str) -> String {
    match error {
        ForgeError::NoPermission { .. } => format!(
            "the token's user may not manage webhooks of {project}: it needs the Maintainer role there"
        ),
        ForgeError::NotFound { .. } => {
            format!("project {project} does not exist or the token cannot see it")
        }
        other => short(&other.to_string()),
    }
}

/// Creates the webhook of `project` (a `group/name` path) pointing at
/// `hook_url` with `secret`, or updates graft's existing one (same URL).
pub async fn ensure_hook(
    client: &GitlabClient,
    project: &str,
    hook_url: &str,
    secret: &str,
) -> HookResult {
    let base = format!("/projects/{}/hooks", encode(project));
    let body = json!({
        "url": hook_url,
        "token": secret,
        "push_events": true,
        "merge_requests_events": true,
        "note_events": true,
        "enable_ssl_verification": hook_url.starts_with("https://"),
    });
    let result = async {
        let hooks: Vec<HookJson> = client
            .get_all("listing project webhooks", &format!("{base}?per_page=100"))
            .await?;
        let (status, method, path) = match hooks.iter().find(|h| h.url == hook_url) {
            Some(hook) => ("updated", Method::PUT, format!("{base}/{}", hook.id)),
            None => ("created", Method::POST, base.clone()),
        };
        let response = client
            .call("writing a project webhook", method, &path, Some(&body))
            .await?;
        let hook: HookJson = client.decode(&response, "writing a project webhook")?;
        Ok::<_, ForgeError>((status, hook.id))
    }
    .await;
    match result {
        Ok((status, id)) => HookResult {
            project: project.to_string(),
            status,
            hook_id: Some(id),
            error: None,
        },
        Err(e) => HookResult {
            project: project.to_string(),
            status: "failed",
            hook_id: None,
            error: Some(hook_error(e, project)),
        },
    }
}
