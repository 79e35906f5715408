//! CLI commands that talk to a running graft over its API (`GRAFT_URL`,
//! `GRAFT_TOKEN`), and `graft github manifest`. This is the program's edge:
//! errors are `anyhow` with messages that say what to do.

use anyhow::{Context, Result, anyhow, bail};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::cli::config::{GitlabConnectArgs, ManifestArgs, RemoteArgs};
use crate::forge::github::manifest;

/// A client of graft's `/api/v1`.
pub struct Remote {
    base: String,
    token: SecretString,
    pub(crate) http: reqwest::Client,
}

impl Remote {
    pub fn new(args: &RemoteArgs) -> Result<Self> {
        let token = args
            .graft_token
            .clone()
            .filter(|t| !t.expose_secret().trim().is_empty());
        let token = token.ok_or_else(|| {
            anyhow!(
                "GRAFT_TOKEN is not set: create an API token on the server with \
                 `graft token create --name NAME` and export GRAFT_TOKEN"
            )
        })?;
        let base = args.graft_url.trim().trim_end_matches('/').to_string();
        let valid = reqwest::Url::parse(&base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"));
        if valid.is_none() {
            bail!("GRAFT_URL `{base}` is not an http(s) URL, e.g. https://graft.example.com");
        }
        crate::crypto::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("graft-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(300))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Remote { base, token, http })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(self.token.expose_secret())
    }

    /// Sends `request` and returns the JSON answer, or an error carrying
    /// graft's error message.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        let response = request.send().await.map_err(|e| {
            anyhow!(
                "cannot reach graft at {}: {} (set GRAFT_URL)",
                self.base,
                e.without_url()
            )
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("graft's answer ({status}) could not be read"))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let code = body["error"]["code"].as_str().unwrap_or("error");
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        let hint = match status.as_u16() {
            401 => " (check GRAFT_TOKEN)",
            404 if code == "not_found" && message.contains("no such route") => {
                " (is GRAFT_URL a graft that has this API?)"
            }
            _ => "",
        };
        Err(anyhow!(
            "graft refused the request: {message}{hint} [HTTP {}, {code}]",
            status.as_u16()
        ))
    }
}

/// `graft github manifest`.
pub fn github_manifest(args: &ManifestArgs) -> Result<()> {
    let public = args
        .public_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| {
            anyhow!(
                "GRAFT_PUBLIC_URL is not set: set it (or --public-url) to the address GitHub \
                 reaches graft at, e.g. https://graft.example.com"
            )
        })?;
    let value = manifest::manifest(public, args.name.as_deref())?;
    let public = manifest::normalize_public_url(public)?;
    let web = manifest::web_url(&args.github_api_url);
    let by_hand = manifest::creation_url(&web, args.org.as_deref(), "STATE")?;
    let by_hand = by_hand.trim_end_matches("?state=STATE");
    println!("{}", serde_json::to_string_pretty(&value)?);
    println!();
    println!("Register graft as a GitHub App:");
    println!("  one click: open {public}/setup/github in a browser (sign in with an API token);");
    println!(
        "             graft posts this manifest to GitHub and stores the app's key encrypted."
    );
    println!("  by hand:   POST the manifest above as the form field `manifest` to");
    println!("             {by_hand}");
    println!(
        "             then set GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY and GITHUB_WEBHOOK_SECRET."
    );
    Ok(())
}

fn read_secret_file(path: &std::path::Path, what: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} from {}", path.display()))?;
    let text = text.trim().to_string();
    if text.is_empty() {
        bail!("{} is empty; it should hold the {what}", path.display());
    }
    Ok(text)
}

/// `graft gitlab connect`.
pub async fn gitlab_connect(args: &GitlabConnectArgs) -> Result<()> {
    let remote = Remote::new(&args.remote)?;
    let token = read_secret_file(&args.token_file, "GitLab access token")?;
    let secret = match &args.webhook_secret_file {
        Some(path) => read_secret_file(path, "webhook secret")?,
        None => hex::encode(rand::random::<[u8; 32]>()),
    };
    let mut body = json!({
        "base_url": args.url,
        "token": token,
        "webhook_secret": secret,
        "hooks": args.create_hooks,
    });
    if let Some(name) = &args.name {
        body["name"] = json!(name);
    }
    let answer = remote
        .send(
            remote
                .request(Method::POST, "/integrations/gitlab")
                .json(&body),
        )
        .await
        .context("the GitLab integration was not stored")?;
    let webhook_url = answer["webhook_url"]
        .as_str()
        .unwrap_or("(graft did not say)");
    println!(
        "GitLab integration {} {} to {} as @{}.",
        answer["id"],
        if answer["created"] == json!(false) {
            "reconnected (new token and webhook secret)"
        } else {
            "connected"
        },
        answer["base_url"].as_str().unwrap_or(&args.url),
        answer["user"].as_str().unwrap_or("?")
    );
    let mut failed = 0;
    for hook in answer["hooks"].as_array().into_iter().flatten() {
        let project = hook["project"].as_str().unwrap_or("?");
        match hook["status"].as_str() {
            Some("failed") => {
                failed += 1;
                eprintln!(
                    "webhook of {project}: not created: {}",
                    hook["error"].as_str().unwrap_or("no reason given")
                );
            }
            Some(status) => println!("webhook of {project}: {status}"),
            None => {}
        }
    }
    println!();
    println!("Configure this webhook in each GitLab project graft manages");
    println!("(Settings → Webhooks; --create-hook PROJECT does it for you):");
    println!("  URL:          {webhook_url}");
    println!("  Secret token: {secret}");
    println!("  Triggers:     Push events, Merge request events, Comments");
    if failed > 0 {
        bail!("{failed} webhook(s) could not be created; see above");
    }
    Ok(())
}
