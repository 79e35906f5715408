//! Makes repository clients: the GitHub App (one per process) and GitLab
//! clients (the default integration from the environment, and stored ones
//! from the database, each opened with the keyring when used).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use secrecy::SecretString;

use super::error::{ForgeError, short};
use super::github::{GithubApp, GithubAppConfig, GithubRepo};
use super::gitlab::{GitlabClient, GitlabRepo, GitlabToken};
use super::retry::{Retrier, RetryPolicy, Sleeper, TokioSleeper};
use super::sticky::KeyedLocks;
use super::{RepoClient, Result};
use crate::crypto::Keyring;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::operator::StoredGithubApp;

#[derive(Debug, Clone)]
pub struct GitlabConfig {
    pub base_url: String,
    pub token: SecretString,
}

/// Where the GitHub App's settings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GithubAppSource {
    /// GITHUB_APP_ID / GITHUB_APP_PRIVATE_KEY (these override a stored app).
    #[default]
    Environment,
    /// Registered through the manifest flow and stored sealed.
    Stored,
}

/// Forge settings, validated.
#[derive(Debug, Clone)]
pub struct ForgeSettings {
    pub github: Option<GithubAppConfig>,
    pub github_source: GithubAppSource,
    pub gitlab: Option<GitlabConfig>,
    pub retry: RetryPolicy,
    pub sleeper: Arc<dyn Sleeper>,
}

impl Default for ForgeSettings {
    fn default() -> Self {
        ForgeSettings {
            github: None,
            github_source: GithubAppSource::default(),
            gitlab: None,
            retry: RetryPolicy::default(),
            sleeper: Arc::new(TokioSleeper),
        }
    }
}

/// The GitHub App stored by the manifest flow, opened with the keyring.
pub fn stored_github_config(
    stored: &StoredGithubApp,
    keyring: Option<&Keyring>,
) -> Result<GithubAppConfig> {
    let keyring = keyring.ok_or_else(|| {
        ForgeError::Config(
            "a GitHub App is stored, but ENCRYPTION_KEY is not set, so its private key cannot \
             be opened; set the ENCRYPTION_KEY it was stored with"
                .into(),
        )
    })?;
    let pem = keyring.open(&stored.private_key_sealed).map_err(|e| {
        ForgeError::Config(format!(
            "the stored GitHub App's private key cannot be decrypted ({e}); check \
             ENCRYPTION_KEY (and ENCRYPTION_KEY_OLD during a rotation)"
        ))
    })?;
    GithubAppConfig::new(&stored.app_id, &pem, &stored.api_url)
}

/// The GitHub App in use and where its settings came from.
type ActiveGithubApp = (Arc<GithubApp>, GithubAppSource);

/// A stored integration's client and the sealed token it was made with.
type StoredGitlab = (String, Arc<GitlabClient>);

/// The factory of [`RepoClient`]s, shared by the workers.
#[derive(Debug, Clone)]
pub struct Forges {
    /// Replaced when an app is registered through the manifest flow while
    /// graft runs (unless the environment configured one).
    github: Arc<RwLock<Option<ActiveGithubApp>>>,
    /// The sealed key of the stored GitHub App in use, to notice a new
    /// registration made on another replica.
    github_stored_key: Arc<Mutex<Option<String>>>,
    gitlab_default: Option<Arc<GitlabClient>>,
    /// Clients of stored GitLab integrations, with the sealed token they
    /// were made for: a reconnect (new token) makes a new client.
    gitlab_stored: Arc<Mutex<HashMap<i64, StoredGitlab>>>,
    store: Store,
    keyring: Option<Keyring>,
    retrier: Retrier,
    locks: KeyedLocks,
}

impl Forges {
    pub fn new(
        settings: ForgeSettings,
        store: Store,
        keyring: Option<Keyring>,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let retrier = Retrier::new(settings.retry, settings.sleeper, metrics);
        let locks = KeyedLocks::default();
        let source = settings.github_source;
        let github = settings
            .github
            .map(|config| {
                GithubApp::new(config, retrier.clone(), Some(store.clone()), locks.clone())
            })
            .transpose()?
            .map(|app| (Arc::new(app), source));
        let gitlab_default = settings
            .gitlab
            .map(|c| {
                GitlabClient::new(
                    &c.base_url,
                    GitlabToken::Plain(c.token),
                    retrier.clone(),
                    locks.clone(),
                )
            })
            .transpose()?
            .map(Arc::new);
        Ok(Forges {
            github: Arc::new(RwLock::new(github)),
            github_stored_key: Default::default(),
            gitlab_default,
            gitlab_stored: Default::default(),
            store,
            keyring,
            retrier,
            locks,
        })
    }

    /// No forge configured (GitLab integrations stored later still work).
    pub fn unconfigured(store: Store, keyring: Option<Keyring>, metrics: Arc<Metrics>) -> Self {
        Forges {
            github: Default::default(),
            github_stored_key: Default::default(),
            gitlab_default: None,
            gitlab_stored: Default::default(),
            store,
            keyring,
            retrier: Retrier::new(RetryPolicy::default(), Arc::new(TokioSleeper), metrics),
            locks: KeyedLocks::default(),
        }
    }

    pub fn github_app(&self) -> Option<Arc<GithubApp>> {
        self.github_app_with_source().map(|(app, _)| app)
    }

    /// The GitHub App and where its settings came from.
    pub fn github_app_with_source(&self) -> Option<ActiveGithubApp> {
        self.github
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts using an app registered through the manifest flow. An app
    /// from the environment stays (environment variables override); returns
    /// whether the new app is now in use.
    pub fn use_stored_github_app(&self, config: GithubAppConfig) -> Result<bool> {
        let mut slot = self.github.write().unwrap_or_else(|p| p.into_inner());
        if matches!(&*slot, Some((_, GithubAppSource::Environment))) {
            return Ok(false);
        }
        let app = GithubApp::new(
            config,
            self.retrier.clone(),
            Some(self.store.clone()),
            self.locks.clone(),
        )?;
        *slot = Some((Arc::new(app), GithubAppSource::Stored));
        Ok(true)
    }

    /// The app registered through /setup/github, read from the store: also
    /// one registered after this process started, or registered again (on
    /// another replica, say), which replaces the one in use.
    async fn current_stored_github_app(&self) -> Result<Option<Arc<GithubApp>>> {
        let stored = self.store.github_app().await.map_err(|e| {
            ForgeError::Config(format!(
                "the stored GitHub App cannot be read: {}",
                short(&e.to_string())
            ))
        })?;
        let Some(stored) = stored else {
            return Ok(self.github_app());
        };
        let loaded = self
            .github_stored_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(app) = self.github_app()
            && loaded.as_deref() == Some(stored.private_key_sealed.as_str())
        {
            return Ok(Some(app));
        }
        let config = stored_github_config(&stored, self.keyring.as_ref())?;
        self.use_stored_github_app(config)?;
        *self
            .github_stored_key
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(stored.private_key_sealed);
        Ok(self.github_app())
    }

    /// Base URL of the default GitLab integration (GITLAB_URL), if any.
    pub fn gitlab_default_url(&self) -> Option<&str> {
        self.gitlab_default.as_ref().map(|c| c.base_url.as_str())
    }

    /// A client for GitHub repository `repo` (`owner/name`) through the
    /// app's installation on it.
    pub async fn github(&self, repo: &str) -> Result<RepoClient> {
        Ok(Arc::new(self.github_repo(repo).await?))
    }

    /// [`Forges::github`] as the GitHub client itself.
    pub async fn github_repo(&self, repo: &str) -> Result<GithubRepo> {
        let app = self.current_github_app().await?;
        let installation = app.installation_for(repo).await?;
        GithubRepo::new(app, installation, repo)
    }

    /// The GitHub App in use: also one registered (again) since start-up.
    pub async fn current_github_app(&self) -> Result<Arc<GithubApp>> {
        let app = match self.github_app_with_source() {
            Some((app, GithubAppSource::Environment)) => Some(app),
            _ => self.current_stored_github_app().await?,
        };
        let app = app.ok_or_else(|| {
            ForgeError::Config(
                "the GitHub App is not configured; register one at /setup/github or set \
                 GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY"
                    .into(),
            )
        })?;
        Ok(app)
    }

    /// A client for GitLab project `path`, through stored integration
    /// `integration`, or the default one from GITLAB_URL / GITLAB_TOKEN.
    pub async fn gitlab(&self, integration: Option<i64>, path: &str) -> Result<RepoClient> {
        Ok(Arc::new(self.gitlab_repo(integration, path).await?))
    }

    /// [`Forges::gitlab`] as the GitLab client itself, for what only GitLab
    /// has (webhook health).
    pub async fn gitlab_repo(&self, integration: Option<i64>, path: &str) -> Result<GitlabRepo> {
        Ok(GitlabRepo::new(
            self.gitlab_client(integration).await?,
            path,
        ))
    }

    /// The client of stored integration `integration`, or of the default
    /// one from GITLAB_URL / GITLAB_TOKEN.
    pub async fn gitlab_client(&self, integration: Option<i64>) -> Result<Arc<GitlabClient>> {
        match integration {
            None => self.gitlab_default.clone().ok_or_else(|| {
                ForgeError::Config(
                    "no GitLab integration: set GITLAB_URL and GITLAB_TOKEN, or add one with \
                     POST /api/v1/integrations/gitlab"
                        .into(),
                )
            }),
            Some(id) => self.stored_gitlab(id).await,
        }
    }

    async fn stored_gitlab(&self, id: i64) -> Result<Arc<GitlabClient>> {
        let credentials = self.store.integration_credentials(id).await.map_err(|e| {
            ForgeError::Config(format!(
                "GitLab integration {id} cannot be read: {}",
                short(&e.to_string())
            ))
        })?;
        if credentials.provider != crate::ids::Provider::Gitlab {
            return Err(ForgeError::Config(format!(
                "integration {id} is not a GitLab integration"
            )));
        }
        let sealed = credentials.token_sealed.ok_or_else(|| {
            ForgeError::Config(format!(
                "GitLab integration {id} has no token; add one through the API"
            ))
        })?;
        if let Some((made_for, client)) = self
            .gitlab_stored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            && *made_for == sealed
            && client.base_url == credentials.base_url.trim_end_matches('/')
        {
            return Ok(client.clone());
        }
        let keyring = self.keyring.clone().ok_or_else(|| {
            ForgeError::Config(
                "ENCRYPTION_KEY is not set, so stored GitLab tokens cannot be opened".into(),
            )
        })?;
        let client = Arc::new(GitlabClient::new(
            &credentials.base_url,
            GitlabToken::Sealed {
                sealed: sealed.clone(),
                keyring: Box::new(keyring),
            },
            self.retrier.clone(),
            self.locks.clone(),
        )?);
        self.gitlab_stored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, (sealed, client.clone()));
        Ok(client)
    }
}
