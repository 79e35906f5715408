//! The assembled application: shared state, the router and the worker pool,
//! built from plain settings so tests can start as many as they like.

use std::sync::Arc;

use axum::http::StatusCode;
use secrecy::SecretString;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use crate::crypto::Keyring;
use crate::forge::{ForgeError, ForgeSettings, Forges};
use crate::git::Identity;
use crate::git::mirror::MirrorCache;
use crate::http::error::ApiError;
use crate::http::ui::session::SessionKey;
use crate::jobs::{self, PoolConfig};
use crate::metrics::Metrics;
use crate::slash::CommandSettings;
use crate::store::Store;
use crate::worker::GraftJobs;

/// Everything the HTTP handlers and workers share.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub store: Store,
    pub keyring: Option<Keyring>,
    pub github_webhook_secrets: Vec<SecretString>,
    pub gitlab_webhook_secrets: Vec<SecretString>,
    pub metrics: Arc<Metrics>,
    /// Wakes idle workers when this process enqueues a job.
    pub job_wake: Arc<Notify>,
    pub git: GitSettings,
    pub mirrors: MirrorCache,
    /// Clients for GitHub and GitLab.
    pub forges: Forges,
    /// How slash commands are read.
    pub commands: CommandSettings,
    pub operator: OperatorSettings,
    /// Signs dashboard session cookies and CSRF tokens.
    pub sessions: SessionKey,
    /// GRAFT_ALLOW_HTTP_GITLAB: GitLab integrations may use http:// URLs.
    pub allow_http_gitlab: bool,
    pub http: HttpSettings,
    /// Memory shared by all request bodies being read or handled.
    pub body_budget: crate::http::intake::Budget,
}

/// How long a client may take to send its request.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    /// The request line and headers.
    pub header_timeout: std::time::Duration,
    /// The whole body, from the end of the headers.
    pub body_timeout: std::time::Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// What the operator screens (dashboard, set-up) need to know.
#[derive(Debug, Clone)]
pub struct OperatorSettings {
    /// GRAFT_PUBLIC_URL without a trailing slash: webhook URLs, the GitHub
    /// App manifest, `Secure` cookies when it is https.
    pub public_url: Option<String>,
    /// GITHUB_API_URL: where manifest codes are converted; its web root
    /// makes commit links.
    pub github_api_url: String,
}

impl Default for OperatorSettings {
    fn default() -> Self {
        OperatorSettings {
            public_url: None,
            github_api_url: "https://api.github.com".into(),
        }
    }
}

/// How graft writes to repositories.
#[derive(Debug, Clone)]
pub struct GitSettings {
    /// Mirrors and temporary worktrees live here.
    pub work_dir: std::path::PathBuf,
    pub identity: Identity,
    /// `GRAFT_CHECK_COMMAND`, how long it may run and how it is sandboxed.
    pub check: Option<crate::git::check::Check>,
}

impl Default for GitSettings {
    fn default() -> Self {
        GitSettings {
            work_dir: std::path::PathBuf::from("graft-data/work"),
            identity: Identity::default(),
            check: None,
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Settings the app needs, independent of how they were given.
#[derive(Debug, Clone, Default)]
pub struct AppSettings {
    pub keyring: Option<Keyring>,
    pub github_webhook_secrets: Vec<SecretString>,
    pub gitlab_webhook_secrets: Vec<SecretString>,
    pub git: GitSettings,
    pub commands: CommandSettings,
    pub operator: OperatorSettings,
    pub http: HttpSettings,
    /// GRAFT_ALLOW_HTTP_GITLAB: GitLab integrations may use http:// URLs
    /// (the token then crosses the network in clear).
    pub allow_http_gitlab: bool,
}

impl AppState {
    /// An app with no forge configured.
    pub fn new(store: Store, settings: AppSettings) -> Self {
        let metrics = Arc::new(Metrics::new());
        let forges = Forges::unconfigured(store.clone(), settings.keyring.clone(), metrics.clone());
        Self::assemble(store, settings, metrics, forges)
    }

    /// An app talking to the forges in `forge`; fails when a forge client
    /// cannot be set up (the error names the setting).
    pub fn with_forges(
        store: Store,
        settings: AppSettings,
        forge: ForgeSettings,
    ) -> Result<Self, ForgeError> {
        let metrics = Arc::new(Metrics::new());
        let forges = Forges::new(
            forge,
            store.clone(),
            settings.keyring.clone(),
            metrics.clone(),
        )?;
        Ok(Self::assemble(store, settings, metrics, forges))
    }

    fn assemble(
        store: Store,
        settings: AppSettings,
        metrics: Arc<Metrics>,
        forges: Forges,
    ) -> Self {
        AppState(Arc::new(Inner {
            store,
            sessions: SessionKey::new(settings.keyring.as_ref()),
            keyring: settings.keyring,
            github_webhook_secrets: settings.github_webhook_secrets,
            gitlab_webhook_secrets: settings.gitlab_webhook_secrets,
            metrics,
            job_wake: Arc::new(Notify::new()),
            mirrors: MirrorCache::new(&settings.git.work_dir),
            git: settings.git,
            forges,
            commands: settings.commands,
            operator: settings.operator,
            allow_http_gitlab: settings.allow_http_gitlab,
            http: settings.http,
            body_budget: crate::http::intake::Budget::default(),
        }))
    }

    pub fn router(&self) -> axum::Router {
        crate::http::router(self.clone())
    }

    /// Starts the background workers; they stop when `shutdown` turns true.
    pub fn spawn_workers(
        &self,
        config: PoolConfig,
        shutdown: watch::Receiver<bool>,
    ) -> JoinSet<()> {
        jobs::spawn_pool(
            self.store.clone(),
            Arc::new(GraftJobs::new(self.clone())),
            self.metrics.clone(),
            self.job_wake.clone(),
            config,
            shutdown,
        )
    }

    /// The keyring, or the API error that explains how to configure one.
    pub fn keyring_for_storing(&self) -> Result<&Keyring, ApiError> {
        self.keyring.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "encryption_key_missing",
                "graft refuses to store secrets because ENCRYPTION_KEY is not set: generate one \
                 with `graft keys generate`, set ENCRYPTION_KEY and restart graft",
            )
        })
    }
}
