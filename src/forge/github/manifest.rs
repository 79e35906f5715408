//! The GitHub App manifest flow: the manifest (`app-manifest/github-app.json`
//! with `${GRAFT_PUBLIC_URL}` filled in), where to POST it (github.com or a
//! GitHub Enterprise Server; a personal account or an organization), and
//! the exchange of the temporary code for the app's id, private key and
//! webhook secret (`POST /app-manifests/{code}/conversions`).

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use crate::crypto::install_crypto_provider;
use crate::forge::body::{MAX_RESPONSE_BYTES, ReadError, read_response};
use crate::forge::error::short;

/// The manifest as shipped, with placeholders.
pub const TEMPLATE: &str = include_str!("../../../app-manifest/github-app.json");
pub const PLACEHOLDER: &str = "${GRAFT_PUBLIC_URL}";
/// GitHub limits app names to 34 characters.
pub const MAX_NAME_LEN: usize = 34;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "GRAFT_PUBLIC_URL `{0}` is not usable: give the http(s) base URL GitHub can reach, \
         e.g. https://graft.example.com (no path after the host except a prefix, no query)"
    )]
    PublicUrl(String),
    #[error("`{0}` is not a GitHub organization name (letters, digits and single dashes)")]
    Organization(String),
    #[error("the app name must be 1 to {MAX_NAME_LEN} characters")]
    Name,
    #[error("the code GitHub sent back is malformed; start again at /setup/github")]
    Code,
    #[error(
        "GitHub does not accept this code: it expired (codes last one hour) or was used \
         already. Start again at /setup/github"
    )]
    CodeRejected,
    #[error("GitHub refused to create the app (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("cannot reach GitHub at {url}: {message}; check GITHUB_API_URL and the network")]
    Network { url: String, message: String },
    #[error("GitHub's answer cannot be read: {0}")]
    Unreadable(String),
}

/// `url` without a trailing slash, if it is an http(s) URL with a host and
/// no query, fragment or credentials.
pub fn normalize_public_url(url: &str) -> Result<String, ManifestError> {
    let trimmed = url.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed).map_err(|_| ManifestError::PublicUrl(short(url)))?;
    let ok = matches!(parsed.scheme(), "http" | "https")
        && parsed.host_str().is_some_and(|h| !h.is_empty())
        && parsed.query().is_none()
        && parsed.fragment().is_none()
        && parsed.username().is_empty()
        && parsed.password().is_none();
    if !ok {
        return Err(ManifestError::PublicUrl(short(url)));
    }
    Ok(trimmed.to_string())
}

fn fill(value: &mut Value, public_url: &str) {
    match value {
        Value::String(text) => *text = text.replace(PLACEHOLDER, public_url),
        Value::Array(items) => items.iter_mut().for_each(|v| fill(v, public_url)),
        Value::Object(map) => map.values_mut().for_each(|v| fill(v, public_url)),
        _ => {}
    }
}

/// The manifest for a graft at `public_url`, optionally under another app
/// name (names are unique across GitHub).
pub fn manifest(public_url: &str, name: Option<&str>) -> Result<Value, ManifestError> {
    let public_url = normalize_public_url(public_url)?;
    let mut value: Value = serde_json::from_str(TEMPLATE)
        .map_err(|e| ManifestError::Unreadable(format!("app-manifest/github-app.json: {e}")))?;
    fill(&mut value, &public_url);
    if let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) {
        if name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
            return Err(ManifestError::Name);
        }
        value["name"] = Value::String(name.to_string());
    }
    Ok(value)
}

/// The web root of the GitHub whose REST API is `api_url`: github.com for
/// api.github.com, `https://HOST` for GitHub Enterprise Server's
/// `https://HOST/api/v3`, else the URL itself.
pub fn web_url(api_url: &str) -> String {
    let api = api_url.trim().trim_end_matches('/');
    if api == "https://api.github.com" {
        return "https://github.com".into();
    }
    if let Some(root) = api.strip_suffix("/api/v3") {
        return root.to_string();
    }
    api.to_string()
}

fn valid_login(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 39
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Where the browser POSTs the manifest: the personal account's or the
/// organization's "new GitHub App" page, with `state` for the callback.
pub fn creation_url(
    web_url: &str,
    organization: Option<&str>,
    state: &str,
) -> Result<String, ManifestError> {
    let web = web_url.trim_end_matches('/');
    let state = percent_encoding::utf8_percent_encode(state, percent_encoding::NON_ALPHANUMERIC);
    match organization.map(str::trim).filter(|o| !o.is_empty()) {
        None => Ok(format!("{web}/settings/apps/new?state={state}")),
        Some(org) if valid_login(org) => Ok(format!(
            "{web}/organizations/{org}/settings/apps/new?state={state}"
        )),
        Some(org) => Err(ManifestError::Organization(short(org))),
    }
}

/// The app GitHub created, as the conversion returned it.
pub struct Conversion {
    pub id: u64,
    pub slug: String,
    pub name: String,
    pub html_url: String,
    pub owner: Option<String>,
    pub pem: SecretString,
    pub webhook_secret: Option<SecretString>,
}

impl std::fmt::Debug for Conversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversion")
            .field("id", &self.id)
            .field("slug", &self.slug)
            .field("html_url", &self.html_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ConversionJson {
    id: u64,
    #[serde(default)]
    slug: Option<String>,
    name: String,
    html_url: String,
    #[serde(default)]
    owner: Option<OwnerJson>,
    pem: String,
    #[serde(default)]
    webhook_secret: Option<String>,
}

#[derive(Deserialize)]
struct OwnerJson {
    login: String,
}

#[derive(Deserialize, Default)]
struct ErrorJson {
    #[serde(default)]
    message: Option<String>,
}

fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 200
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Exchanges the temporary `code` for the app's credentials. The call
/// needs no authentication; the code is the credential, valid once.
pub async fn convert(api_url: &str, code: &str) -> Result<Conversion, ManifestError> {
    if !valid_code(code) {
        return Err(ManifestError::Code);
    }
    install_crypto_provider();
    let api = api_url.trim().trim_end_matches('/');
    let url = format!("{api}/app-manifests/{code}/conversions");
    let network = |e: reqwest::Error| ManifestError::Network {
        url: api.to_string(),
        message: short(&e.without_url().to_string()),
    };
    let client = reqwest::Client::builder()
        .user_agent(concat!("graft/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(network)?;
    let response = client
        .post(&url)
        .header(reqwest::header::ACCEPT, "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .send()
        .await
        .map_err(network)?;
    let (status, _, body) = read_response(response).await.map_err(|e| match e {
        ReadError::Body(e) => network(e),
        ReadError::TooLarge => ManifestError::Unreadable(format!(
            "the answer is larger than {} MiB; graft stopped reading it",
            MAX_RESPONSE_BYTES >> 20
        )),
    })?;
    match status {
        200 | 201 => {
            let json: ConversionJson = serde_json::from_str(&body)
                .map_err(|e| ManifestError::Unreadable(short(&e.to_string())))?;
            Ok(Conversion {
                id: json.id,
                slug: json.slug.unwrap_or_else(|| json.name.clone()),
                name: json.name,
                html_url: json.html_url,
                owner: json.owner.map(|o| o.login),
                pem: SecretString::from(json.pem),
                webhook_secret: json
                    .webhook_secret
                    .filter(|s| !s.is_empty())
                    .map(SecretString::from),
            })
        }
        404 => Err(ManifestError::CodeRejected),
        status => {
            let message = serde_json::from_str::<ErrorJson>(&body)
                .ok()
                .and_then(|e| e.message)
                .map(|m| short(&m))
                .unwrap_or_else(|| "no reason given".into());
            Err(ManifestError::Refused { status, message })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_is_filled_and_complete() {
        let m = manifest("https://graft.example.com/", None).unwrap();
        let text = m.to_string();
        assert!(!text.contains(PLACEHOLDER), "{text}");
        assert_eq!(m["url"], "https://graft.example.com");
        assert_eq!(
            m["hook_attributes"]["url"],
            "https://graft.example.com/webhooks/github"
        );
        assert_eq!(
            m["redirect_url"],
            "https://graft.example.com/setup/github/callback"
        );
        assert_eq!(m["setup_url"], "https://graft.example.com/setup/github");
        assert_eq!(m["public"], false);
        let renamed = manifest("http://localhost:8080", Some("graft-acme")).unwrap();
        assert_eq!(renamed["name"], "graft-acme");
        assert!(manifest("http://x", Some(&"n".repeat(35))).is_err());
    }

    #[test]
    fn public_urls_are_checked() {
        for bad in [
            "",
            "graft.example.com",
            "ftp://x",
            "https://u:p@x",
            "https://x/?a=b",
        ] {
            assert!(normalize_public_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            normalize_public_url("https://x.example/graft/").unwrap(),
            "https://x.example/graft"
        );
    }

    #[test]
    fn web_and_creation_urls() {
        assert_eq!(web_url("https://api.github.com"), "https://github.com");
        assert_eq!(web_url("https://ghe.corp/api/v3/"), "https://ghe.corp");
        assert_eq!(web_url("http://127.0.0.1:9"), "http://127.0.0.1:9");
        assert_eq!(
            creation_url("https://github.com", None, "abc").unwrap(),
            "https://github.com/settings/apps/new?state=abc"
        );
        assert_eq!(
            creation_url("https://ghe.corp", Some("acme-infra"), "s").unwrap(),
            "https://ghe.corp/organizations/acme-infra/settings/apps/new?state=s"
        );
        assert!(creation_url("https://github.com", Some("a/b"), "s").is_err());
        assert!(creation_url("https://github.com", Some("-a"), "s").is_err());
    }

    #[test]
    fn codes_are_checked_before_use() {
        assert!(valid_code("a1b2c3"));
        assert!(!valid_code("../x"));
        assert!(!valid_code(""));
    }
}
