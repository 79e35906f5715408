//! The assembled application: the domain context, the HTTP state, the
//! router and the worker pool, built from plain settings so tests can
//! start as many as they like. Only the edges (`server`, tests) use it.

use std::sync::Arc;

use secrecy::SecretString;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::context::{Context, ContextSettings};
use crate::crypto::Keyring;
use crate::forge::{ForgeError, ForgeSettings, Forges};
use crate::http::{HttpConfig, HttpState};
use crate::jobs::{self, PoolConfig};
use crate::metrics::Metrics;
use crate::slash::CommandSettings;
use crate::store::Store;
use crate::worker::GraftJobs;

pub use crate::context::{GitSettings, OperatorSettings};
pub use crate::http::HttpSettings;

/// The domain context and the HTTP state around it.
#[derive(Clone, Debug)]
pub struct AppState {
    pub context: Context,
    pub http: HttpState,
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
        let context = Context::new(
            store,
            ContextSettings {
                keyring: settings.keyring,
                git: settings.git,
                commands: settings.commands,
                operator: settings.operator,
            },
            forges,
            metrics,
        );
        let http = HttpState::new(
            context.clone(),
            HttpConfig {
                github_webhook_secrets: settings.github_webhook_secrets,
                gitlab_webhook_secrets: settings.gitlab_webhook_secrets,
                allow_http_gitlab: settings.allow_http_gitlab,
                timeouts: settings.http,
            },
        );
        AppState { context, http }
    }

    pub fn router(&self) -> axum::Router {
        crate::http::router(self.http.clone())
    }

    /// Starts the background workers; they stop when `shutdown` turns true.
    pub fn spawn_workers(
        &self,
        config: PoolConfig,
        shutdown: watch::Receiver<bool>,
    ) -> JoinSet<()> {
        let ctx = &self.context;
        jobs::spawn_pool(
            ctx.store.clone(),
            Arc::new(GraftJobs::new(ctx.clone())),
            ctx.metrics.clone(),
            ctx.jobs.waker(),
            config,
            shutdown,
        )
    }
}
