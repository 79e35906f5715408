//! GitHub App authentication: the app JWT (RS256, `iat` backdated 60 s,
//! `exp` 9 minutes ahead so clock drift stays under GitHub's 10-minute cap),
//! installation access tokens cached per installation and refreshed a few
//! minutes before `expires_at` by one caller at a time, and the raw calls
//! made through octocrab's transport.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{ACCEPT, AUTHORIZATION};
use http::{HeaderValue, Method};
use octocrab::Octocrab;
use octocrab::jsonwebtoken::{self, Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use tracing::{debug, warn};

use super::errors::classify;
use crate::crypto::install_crypto_provider;
use crate::forge::Result;
use crate::forge::body::{MAX_RESPONSE_BYTES, ReadError, read_capped, too_large};
use crate::forge::error::{ForgeError, ForgeKind, short};
use crate::forge::http::RawResponse;
use crate::forge::retry::Retrier;
use crate::forge::sticky::KeyedLocks;
use crate::store::{Store, now_ms};

const GITHUB: ForgeKind = ForgeKind::Github;

/// Validated GitHub App settings.
#[derive(Clone)]
pub struct GithubAppConfig {
    pub app_id: u64,
    key: EncodingKey,
    /// REST base URL without a trailing slash (`https://HOST/api/v3` on GHES).
    pub api_url: String,
    /// Refresh an installation token when it has less than this left.
    pub token_refresh_margin: Duration,
}

impl std::fmt::Debug for GithubAppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubAppConfig")
            .field("app_id", &self.app_id)
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

fn config_error(message: String) -> ForgeError {
    ForgeError::Config(message)
}

/// Reads `GITHUB_APP_PRIVATE_KEY`: PEM text as it is, anything else as a path.
/// PEM pasted into a one-line variable with `\n` escapes (as many secret
/// stores and `.env` files hold it) is unescaped.
fn private_key_pem(value: &SecretString) -> Result<String> {
    let text = value.expose_secret().trim();
    if text.starts_with("-----BEGIN") {
        if !text.contains('\n') && text.contains("\\n") {
            return Ok(text.replace("\\n", "\n"));
        }
        return Ok(text.to_string());
    }
    // Only a plausible path is echoed back; anything else might be a key.
    let shown = if !text.is_empty() && text.len() < 256 && !text.contains('\n') {
        format!("`{text}`")
    } else {
        "(value hidden)".to_string()
    };
    std::fs::read_to_string(text).map_err(|e| {
        config_error(format!(
            "GITHUB_APP_PRIVATE_KEY is neither PEM text nor a readable file: {shown}: {e}; \
             paste the .pem contents or give its path"
        ))
    })
}

impl GithubAppConfig {
    /// Validates the settings as given in the environment; errors name the
    /// setting and how to fix it.
    pub fn new(app_id: &str, private_key: &SecretString, api_url: &str) -> Result<Self> {
        let app_id = app_id.trim().parse::<u64>().map_err(|_| {
            config_error(format!(
                "GITHUB_APP_ID must be the numeric App ID from the GitHub App's settings page \
                 (got `{}`)",
                short(app_id)
            ))
        })?;
        let api_url = api_url.trim().trim_end_matches('/').to_string();
        let valid_url = api_url
            .parse::<http::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        if valid_url.is_none() {
            return Err(config_error(format!(
                "GITHUB_API_URL `{}` is not an http(s) URL; use https://api.github.com, or \
                 https://HOST/api/v3 for GitHub Enterprise Server",
                short(&api_url)
            )));
        }
        let pem = private_key_pem(private_key)?;
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
            config_error(format!(
                "GITHUB_APP_PRIVATE_KEY is not a PEM RSA key ({e}); paste the .pem contents \
                 or give its path"
            ))
        })?;
        let config = GithubAppConfig {
            app_id,
            key,
            api_url,
            token_refresh_margin: Duration::from_secs(5 * 60),
        };
        // A key that decodes but cannot sign fails here, not on the first sync.
        config.jwt().map_err(|e| {
            config_error(format!(
                "GITHUB_APP_PRIVATE_KEY cannot sign a JWT ({e}); give the private key \
                 downloaded from the GitHub App's settings page"
            ))
        })?;
        Ok(config)
    }

    fn jwt(&self) -> std::result::Result<SecretString, jsonwebtoken::errors::Error> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = JwtClaims::at(self.app_id, now);
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map(SecretString::from)
    }
}

/// The app JWT's claims: issued 60 s in the past (GitHub's advice against
/// clock drift), expiring 9 minutes from now (GitHub's limit is 10).
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
struct JwtClaims {
    iat: u64,
    exp: u64,
    iss: String,
}

impl JwtClaims {
    fn at(app_id: u64, now: u64) -> Self {
        JwtClaims {
            iat: now.saturating_sub(60),
            exp: now + 9 * 60,
            iss: app_id.to_string(),
        }
    }
}

#[derive(Clone)]
struct CachedToken {
    token: SecretString,
    expires_at: SystemTime,
}

type TokenSlot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

/// A GitHub App: signs JWTs, mints and caches installation tokens, and
/// sends requests. Shared by every repository client.
pub struct GithubApp {
    config: GithubAppConfig,
    http: Octocrab,
    /// GraphQL lives outside the REST base path on GHES (`/api/graphql`
    /// next to `/api/v3`), and octocrab's base URI applies to every request.
    graphql: Octocrab,
    pub(crate) retrier: Retrier,
    store: Option<Store>,
    tokens: Mutex<HashMap<i64, TokenSlot>>,
    bot_login: tokio::sync::OnceCell<String>,
    pub(crate) locks: KeyedLocks,
}

impl std::fmt::Debug for GithubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubApp")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct InstallationResponse {
    id: i64,
    account: Option<Account>,
}

#[derive(Deserialize)]
struct Account {
    login: String,
}

#[derive(Deserialize)]
struct AppResponse {
    slug: String,
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    response: &RawResponse,
    what: &str,
) -> Result<T> {
    response.json(GITHUB, what)
}

impl GithubApp {
    pub fn new(
        config: GithubAppConfig,
        retrier: Retrier,
        store: Option<Store>,
        locks: KeyedLocks,
    ) -> Result<Self> {
        install_crypto_provider();
        let build = |base: &str| {
            Octocrab::builder()
                .base_uri(base)
                .and_then(|b| b.build())
                .map_err(|e| {
                    config_error(format!(
                        "cannot set up the GitHub client for GITHUB_API_URL: {e}"
                    ))
                })
        };
        let http = build(&config.api_url)?;
        let graphql = build(graphql_root(&config.api_url))?;
        Ok(GithubApp {
            config,
            http,
            graphql,
            retrier,
            store,
            tokens: Mutex::new(HashMap::new()),
            bot_login: tokio::sync::OnceCell::new(),
            locks,
        })
    }

    pub fn app_id(&self) -> u64 {
        self.config.app_id
    }

    /// One request, no retry; any status comes back as a response.
    async fn send(
        &self,
        api: Api,
        authorization: &SecretString,
        method: Method,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<RawResponse> {
        let mut auth = HeaderValue::from_str(authorization.expose_secret()).map_err(|_| {
            config_error("a GitHub credential contains characters not allowed in a header".into())
        })?;
        auth.set_sensitive(true);
        let builder = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, auth)
            .header(ACCEPT, "application/vnd.github+json");
        let client = match api {
            Api::Rest => &self.http,
            Api::Graphql => &self.graphql,
        };
        let request = client
            .build_request(builder, body)
            .map_err(|e| ForgeError::Unexpected {
                forge: GITHUB,
                message: format!("cannot build the request: {e}"),
            })?;
        let network = |e: octocrab::Error| ForgeError::Network {
            forge: GITHUB,
            message: short(&e.to_string()),
        };
        let response = client.execute(request).await.map_err(network)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = read_capped(&headers, response.into_body(), MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| match e {
                ReadError::Body(e) => network(e),
                ReadError::TooLarge => too_large(GITHUB),
            })?;
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    fn bearer(token: &SecretString) -> SecretString {
        SecretString::from(format!("Bearer {}", token.expose_secret()))
    }

    /// A call authenticated as the app itself (JWT), with retries.
    pub(crate) async fn app_call(
        &self,
        what: &str,
        method: Method,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<RawResponse> {
        self.retrier
            .run(GITHUB, what, || {
                self.app_call_once(what, method.clone(), uri, body)
            })
            .await
    }

    /// One attempt of [`Self::app_call`], for callers inside a retry loop
    /// of their own (minting a token inside an installation call: nesting
    /// two loops multiplied the attempts and the waits).
    async fn app_call_once(
        &self,
        what: &str,
        method: Method,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<RawResponse> {
        let jwt = self
            .config
            .jwt()
            .map_err(|e| config_error(format!("cannot sign the GitHub App JWT: {e}")))?;
        let response = self
            .send(Api::Rest, &Self::bearer(&jwt), method, uri, body)
            .await?;
        if response.is_success() {
            Ok(response)
        } else {
            Err(app_auth_error(classify(&response, what)))
        }
    }

    /// A call authenticated as installation `installation`, with retries.
    /// A 401 means the cached token was revoked: it is dropped and the call
    /// made once more with a fresh one.
    pub(crate) async fn installation_call(
        &self,
        api: Api,
        installation: i64,
        what: &str,
        method: Method,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<RawResponse> {
        self.retrier
            .run(GITHUB, what, || async {
                let token = self.installation_token(installation).await?;
                let mut response = self
                    .send(api, &Self::bearer(&token), method.clone(), uri, body)
                    .await?;
                if response.status == 401 {
                    debug!(
                        installation,
                        "installation token refused; minting a new one"
                    );
                    self.forget_token(installation, &token).await;
                    let token = self.installation_token(installation).await?;
                    response = self
                        .send(api, &Self::bearer(&token), method.clone(), uri, body)
                        .await?;
                }
                if response.is_success() {
                    Ok(response)
                } else {
                    Err(classify(&response, what))
                }
            })
            .await
    }

    /// The REST base URL (`GITHUB_API_URL`).
    pub(crate) fn api_url(&self) -> &str {
        &self.config.api_url
    }

    fn slot(&self, installation: i64) -> TokenSlot {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.entry(installation).or_default().clone()
    }

    /// Drops the cached token if it is still the one that was refused (a
    /// concurrent caller may have minted a fresh one already).
    async fn forget_token(&self, installation: i64, refused: &SecretString) {
        let slot = self.slot(installation);
        let mut cached = slot.lock().await;
        if cached
            .as_ref()
            .is_some_and(|c| c.token.expose_secret() == refused.expose_secret())
        {
            *cached = None;
        }
    }

    /// The installation's access token, minted when missing or about to
    /// expire. Concurrent callers wait for one refresh and share its result.
    pub async fn installation_token(&self, installation: i64) -> Result<SecretString> {
        let slot = self.slot(installation);
        let mut cached = slot.lock().await;
        let now = SystemTime::now();
        if let Some(token) = cached.as_ref()
            && token.expires_at > now + self.config.token_refresh_margin
        {
            return Ok(token.token.clone());
        }
        let minted = self.mint(installation).await?;
        let token = minted.token.clone();
        *cached = Some(minted);
        Ok(token)
    }

    async fn mint(&self, installation: i64) -> Result<CachedToken> {
        let what = "creating an installation access token";
        let uri = format!("/app/installations/{installation}/access_tokens");
        let response = match self.app_call_once(what, Method::POST, &uri, None).await {
            Ok(response) => response,
            Err(ForgeError::NotFound { .. }) => {
                // Gone (or re-installed under a new id while a webhook was
                // missed): forget it, so the next lookup asks GitHub.
                if let Some(store) = &self.store
                    && let Err(e) = store.delete_installation(installation).await
                {
                    warn!(installation, error = %e, "could not forget the removed installation");
                }
                return Err(ForgeError::NotInstalled {
                    forge: GITHUB,
                    repo: format!("installation {installation}"),
                    hint: "the GitHub App installation was removed; re-install the app on the \
                           account that owns the repository"
                        .into(),
                });
            }
            Err(other) => return Err(other),
        };
        let token: TokenResponse = decode(&response, what)?;
        let expires_at = chrono::DateTime::parse_from_rfc3339(&token.expires_at)
            .ok()
            .and_then(|t| u64::try_from(t.timestamp()).ok())
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
            .ok_or_else(|| ForgeError::Unexpected {
                forge: GITHUB,
                message: format!(
                    "installation token expiry `{}` is not a time",
                    short(&token.expires_at)
                ),
            })?;
        debug!(installation, "minted an installation access token");
        Ok(CachedToken {
            token: SecretString::from(token.token),
            expires_at,
        })
    }

    /// The installation that can reach `repo` (`owner/name`): the store's
    /// record from webhooks first, then GitHub (and the answer is recorded).
    pub async fn installation_for(&self, repo: &str) -> Result<i64> {
        if let Some(store) = &self.store {
            match store.installation_for_repo(repo).await {
                Ok(Some(id)) => return Ok(id),
                Ok(None) => {}
                Err(e) => {
                    warn!(error = %e, "installation lookup in the store failed; asking GitHub")
                }
            }
        }
        let (owner, name) = split_repo(repo)?;
        let what = "finding the app installation for the repository";
        let uri = format!(
            "/repos/{}/{}/installation",
            super::segment(owner),
            super::segment(name)
        );
        let response = self
            .app_call(what, Method::GET, &uri, None)
            .await
            .map_err(|e| match e {
                ForgeError::NotFound { .. } => ForgeError::NotInstalled {
                    forge: GITHUB,
                    repo: repo.to_string(),
                    hint: format!(
                        "install the GitHub App on {repo} (or add the repository to its installation)"
                    ),
                },
                other => other,
            })?;
        let found: InstallationResponse = decode(&response, what)?;
        if let Some(store) = &self.store {
            let account = found
                .account
                .map(|a| a.login)
                .unwrap_or_else(|| owner.to_string());
            let recorded = async {
                store
                    .upsert_installation(found.id, &account, now_ms())
                    .await?;
                store
                    .add_installation_repositories(found.id, &[repo.to_string()])
                    .await
            };
            if let Err(e) = recorded.await {
                warn!(error = %e, "could not record the installation in the store");
            }
        }
        Ok(found.id)
    }

    /// The login graft's comments appear under: `<app-slug>[bot]`.
    pub async fn bot_login(&self) -> Result<String> {
        self.bot_login
            .get_or_try_init(|| async {
                let response = self
                    .app_call("reading the GitHub App", Method::GET, "/app", None)
                    .await?;
                let app: AppResponse = decode(&response, "reading the GitHub App")?;
                Ok(format!("{}[bot]", app.slug))
            })
            .await
            .cloned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Rest,
    Graphql,
}

/// Where `/graphql` hangs: `https://api.github.com/graphql`, or on GHES
/// `https://HOST/api/graphql` for a REST base of `https://HOST/api/v3`.
pub(crate) fn graphql_root(api_url: &str) -> &str {
    api_url.strip_suffix("/v3").unwrap_or(api_url)
}

/// A 401 on a JWT call means the app id or key is wrong, not a lost token.
fn app_auth_error(error: ForgeError) -> ForgeError {
    match error {
        ForgeError::AuthLost { message, .. } => ForgeError::AuthLost {
            forge: GITHUB,
            message,
            hint: "GitHub refused the app's JWT: check that GITHUB_APP_ID is the app's id and \
                   GITHUB_APP_PRIVATE_KEY one of its current private keys"
                .into(),
        },
        other => other,
    }
}

pub(crate) fn split_repo(repo: &str) -> Result<(&str, &str)> {
    repo.split_once('/')
        .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| {
            config_error(format!(
                "GitHub repository `{}` must be written owner/name",
                short(repo)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::JwtClaims;

    #[test]
    fn the_jwt_is_backdated_and_short_lived() {
        let claims = JwtClaims::at(42, 1_700_000_000);
        assert_eq!(claims.iat, 1_700_000_000 - 60);
        assert!(claims.exp > 1_700_000_000 && claims.exp - 1_700_000_000 <= 600);
        assert!(claims.exp - claims.iat <= 660);
        assert_eq!(claims.iss, "42");
    }
}
