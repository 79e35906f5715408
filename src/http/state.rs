//! What the HTTP handlers share: the domain [`Context`] plus what only
//! requests need (webhook secrets, dashboard sessions, timeouts, the
//! memory budget for bodies).

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use secrecy::SecretString;

use super::error::ApiError;
use super::intake::Budget;
use super::ui::session::SessionKey;
use crate::context::Context;
use crate::crypto::Keyring;

#[derive(Clone, Debug)]
pub struct HttpState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub ctx: Context,
    pub github_webhook_secrets: Vec<SecretString>,
    pub gitlab_webhook_secrets: Vec<SecretString>,
    /// Signs dashboard session cookies and CSRF tokens.
    pub sessions: SessionKey,
    /// GRAFT_ALLOW_HTTP_GITLAB: GitLab integrations may use http:// URLs.
    pub allow_http_gitlab: bool,
    pub timeouts: HttpSettings,
    /// Memory shared by all request bodies being read or handled.
    pub body_budget: Budget,
    /// How many exports run at once and how long one waits for its client.
    pub exports: super::export::Exports,
}

impl std::ops::Deref for HttpState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// How long a client may take to send its request.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    /// The request line and headers.
    pub header_timeout: Duration,
    /// The whole body, from the end of the headers.
    pub body_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// The HTTP surface's own settings.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    pub github_webhook_secrets: Vec<SecretString>,
    pub gitlab_webhook_secrets: Vec<SecretString>,
    /// GRAFT_ALLOW_HTTP_GITLAB: GitLab integrations may use http:// URLs
    /// (the token then crosses the network in clear).
    pub allow_http_gitlab: bool,
    pub timeouts: HttpSettings,
}

impl HttpState {
    pub fn new(ctx: Context, config: HttpConfig) -> Self {
        HttpState(Arc::new(Inner {
            sessions: SessionKey::new(ctx.keyring.as_ref()),
            ctx,
            github_webhook_secrets: config.github_webhook_secrets,
            gitlab_webhook_secrets: config.gitlab_webhook_secrets,
            allow_http_gitlab: config.allow_http_gitlab,
            timeouts: config.timeouts,
            body_budget: Budget::default(),
            exports: super::export::Exports::default(),
        }))
    }

    /// The keyring, or the API error that explains how to configure one.
    pub fn keyring_for_storing(&self) -> Result<&Keyring, ApiError> {
        self.ctx.keyring.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "encryption_key_missing",
                "graft refuses to store secrets because ENCRYPTION_KEY is not set: generate one \
                 with `graft keys generate`, set ENCRYPTION_KEY and restart graft",
            )
        })
    }
}
