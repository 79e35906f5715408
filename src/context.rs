//! The domain context: what sync, commands, the worker and the periodic
//! tasks share (store, job queue, forges, git settings and mirrors,
//! command settings). A cheap clone over an `Arc`. It depends only on the
//! parts it holds; the HTTP surface wraps it in its own state
//! (`http::HttpState`) with what only requests need.

use std::path::PathBuf;
use std::sync::Arc;

use crate::crypto::Keyring;
use crate::forge::Forges;
use crate::git::Identity;
use crate::git::check::Check;
use crate::git::mirror::MirrorCache;
use crate::jobs::JobQueue;
use crate::metrics::Metrics;
use crate::slash::CommandSettings;
use crate::store::Store;

#[derive(Clone, Debug)]
pub struct Context(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub store: Store,
    pub keyring: Option<Keyring>,
    pub metrics: Arc<Metrics>,
    /// Queueing a job here wakes this process's workers.
    pub jobs: JobQueue,
    pub git: GitSettings,
    pub mirrors: MirrorCache,
    /// Clients for GitHub and GitLab.
    pub forges: Forges,
    /// How slash commands are read.
    pub commands: CommandSettings,
    pub operator: OperatorSettings,
}

impl std::ops::Deref for Context {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The context's settings, independent of how they were given.
#[derive(Debug, Clone, Default)]
pub struct ContextSettings {
    pub keyring: Option<Keyring>,
    pub git: GitSettings,
    pub commands: CommandSettings,
    pub operator: OperatorSettings,
}

impl Context {
    /// `forges` and `metrics` are made first: the forge clients count
    /// their calls in the same metrics.
    pub fn new(
        store: Store,
        settings: ContextSettings,
        forges: Forges,
        metrics: Arc<Metrics>,
    ) -> Self {
        Context(Arc::new(Inner {
            jobs: JobQueue::new(store.clone()),
            store,
            keyring: settings.keyring,
            metrics,
            mirrors: MirrorCache::new(&settings.git.work_dir),
            git: settings.git,
            forges,
            commands: settings.commands,
            operator: settings.operator,
        }))
    }
}

/// How graft writes to repositories.
#[derive(Debug, Clone)]
pub struct GitSettings {
    /// Mirrors and temporary worktrees live here.
    pub work_dir: PathBuf,
    pub identity: Identity,
    /// `GRAFT_CHECK_COMMAND`, how long it may run and how it is sandboxed.
    pub check: Option<Check>,
}

impl Default for GitSettings {
    fn default() -> Self {
        GitSettings {
            work_dir: PathBuf::from("graft-data/work"),
            identity: Identity::default(),
            check: None,
        }
    }
}

/// Where graft is reached and which GitHub it registers with: the
/// operator screens use both, recovery recognises graft's GitLab webhooks
/// by the public URL.
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
