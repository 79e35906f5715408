//! GitHub App one-click set-up (the manifest flow):
//!
//! 1. `GET /setup/github` (admin only) renders a form that POSTs the
//!    manifest to GitHub's "new app" page with a one-time `state`.
//! 2. GitHub creates the app and redirects the browser to
//!    `GET /setup/github/callback?code=…&state=…`. The session cookie is
//!    `SameSite=Strict`, so it does not come along on this cross-site
//!    redirect: the single-use `state`, issued to a signed-in admin, is what
//!    authorizes the callback.
//! 3. The callback exchanges the code for the app's id, private key and
//!    webhook secret, stores the key and secret sealed under ENCRYPTION_KEY
//!    and starts using the app (GITHUB_APP_ID/GITHUB_APP_PRIVATE_KEY in the
//!    environment still override it).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_SECURITY_POLICY;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use maud::html;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::ui::views::layout;
use super::ui::{Admin, Page, message_page};
use crate::forge::GithubAppSource;
use crate::forge::github::GithubAppConfig;
use crate::forge::github::manifest::{self, ManifestError};
use crate::http::HttpState;
use crate::store::audit::NewEvent;
use crate::store::now_ms;
use crate::store::operator::NewGithubApp;

pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/setup/github", get(setup_page))
        .route("/setup/github/callback", get(callback))
}

#[derive(Deserialize, Default)]
struct SetupQuery {
    /// Organization that will own the app (empty: the personal account).
    org: Option<String>,
    /// App name (unique across GitHub).
    name: Option<String>,
    /// GitHub sends these after someone installs the app (`setup_url`).
    installation_id: Option<String>,
    setup_action: Option<String>,
}

fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => parsed.origin().ascii_serialization(),
        Err(_) => String::new(),
    }
}

async fn setup_page(
    State(state): State<HttpState>,
    admin: Result<Admin, Response>,
    headers: HeaderMap,
    Query(query): Query<SetupQuery>,
) -> Response {
    // GitHub sends the installer here (`setup_url`) from github.com, and a
    // `SameSite=Strict` session cookie does not come along on that
    // cross-site navigation: the page that only says "installed" (nothing
    // secret) is shown without a sign-in; everything else needs one.
    if let Some(installation) = query.installation_id.as_deref() {
        let nav = admin
            .as_ref()
            .ok()
            .map(|admin| super::ui::views::Nav::of(admin, &state));
        let installation: String = installation
            .chars()
            .filter(char::is_ascii_digit)
            .take(20)
            .collect();
        let action = query.setup_action.as_deref().unwrap_or("install");
        let body = html! {
            h1 { "GitHub App installed" }
            div.box.ok { p { "GitHub reports " code { (action) } " of installation " code { (installation) } ". "
                "graft learns which repositories it may reach from the installation webhook; "
                "create a project for one of them next." } }
            p { a href="/" { "Go to the dashboard" } }
        };
        return Html(layout("GitHub App installed", false, nav.as_ref(), body).into_string())
            .into_response();
    }
    let admin = match admin {
        Ok(admin) => admin,
        Err(sign_in) => return sign_in,
    };
    let nav = super::ui::views::Nav::of(&admin, &state);
    let (public, configured) = super::public_url(&state, &headers);
    let web = manifest::web_url(&state.ctx.operator.github_api_url);
    let current = state.ctx.forges.github_app_with_source();
    let manifest_json = manifest::manifest(&public, query.name.as_deref());
    let issued = match &manifest_json {
        Ok(_) if state.ctx.keyring.is_some() => {
            let setup_state = hex::encode(rand::random::<[u8; 24]>());
            match state
                .ctx
                .store
                .create_setup_state("github", &setup_state, now_ms())
                .await
            {
                Ok(()) => Some(manifest::creation_url(
                    &web,
                    query.org.as_deref(),
                    &setup_state,
                )),
                Err(e) => {
                    tracing::error!(error = %e, "cannot store the set-up state");
                    return message_page(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Page::error("graft hit an internal error", "The details are in its log."),
                    );
                }
            }
        }
        _ => None,
    };
    let body = html! {
        h1 { "Register the GitHub App" }
        @match &current {
            Some((app, GithubAppSource::Environment)) => div.box {
                "graft uses GitHub App " (app.app_id()) " from GITHUB_APP_ID / GITHUB_APP_PRIVATE_KEY. "
                "An app registered here is stored, but the environment keeps overriding it until you unset those." },
            Some((app, GithubAppSource::Stored)) => div.box.ok {
                "graft uses GitHub App " (app.app_id()) ", registered here. Registering again replaces it." },
            None => div.box { "No GitHub App yet. This page creates one with the least permissions graft needs "
                "(see app-manifest/README.md) and stores its private key encrypted: nothing to copy by hand." },
        }
        @if !configured {
            div.box.error { "GRAFT_PUBLIC_URL is not set, so the app's webhook and callback use "
                code { (public) } ", the address this page was opened at. GitHub must be able to reach it; "
                "set GRAFT_PUBLIC_URL to the public address and restart otherwise." }
        }
        @if state.ctx.keyring.is_none() {
            div.box.error { "ENCRYPTION_KEY is not set, so graft cannot store the app's private key. "
                "Generate one with " code { "graft keys generate" } ", set ENCRYPTION_KEY and restart graft." }
        }
        form method="get" action="/setup/github" {
            label for="name" { "App name (unique across GitHub)" }
            input #name type="text" name="name" maxlength=(manifest::MAX_NAME_LEN)
                value=(query.name.clone().unwrap_or_default()) placeholder="graft";
            label for="org" { "Organization (empty: your personal account)" }
            input #org type="text" name="org" value=(query.org.clone().unwrap_or_default()) placeholder="acme";
            p { button type="submit" { "Update" } }
        }
        @match (&manifest_json, &issued) {
            (Err(e), _) => div.box.error { (e.to_string()) },
            (Ok(_), Some(Err(e))) => div.box.error { (e.to_string()) },
            (Ok(json), Some(Ok(action))) => {
                form method="post" action=(action) {
                    input type="hidden" name="manifest" value=(json.to_string());
                    p { button type="submit" { "Create the GitHub App on " (web) } }
                }
                details { summary { "The manifest" } pre { code { (serde_json::to_string_pretty(json).unwrap_or_default()) } } }
            }
            _ => {}
        }
        p.muted { "GitHub Enterprise Server: set GITHUB_API_URL to https://HOST/api/v3 and the form goes to that host." }
    };
    let mut response =
        Html(layout("GitHub App set-up", false, Some(&nav), body).into_string()).into_response();
    let csp = format!(
        "{}; form-action 'self' {}",
        super::ui::DEFAULT_CSP.replace("; form-action 'self'", ""),
        origin(&web)
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(CONTENT_SECURITY_POLICY, value);
    }
    response
}

#[derive(Deserialize, Default)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
}

fn refused(status: StatusCode, title: &str, message: &str) -> Response {
    message_page(status, Page::error(title, message))
}

async fn callback(State(state): State<HttpState>, Query(query): Query<CallbackQuery>) -> Response {
    let Some(setup_state) = query.state.as_deref().filter(|s| !s.is_empty()) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "Set-up refused",
            "The callback has no `state`, so graft cannot tell it comes from a registration an \
             admin started. Start again at /setup/github.",
        );
    };
    match state
        .ctx
        .store
        .take_setup_state("github", setup_state, now_ms())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "Set-up refused",
                "The `state` does not match a registration started on this graft (or it was used \
                 already, or is older than an hour). Start again at /setup/github.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot check the set-up state");
            return refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "graft hit an internal error",
                "The details are in its log.",
            );
        }
    }
    let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "Set-up refused",
            "GitHub sent no `code`. Start again at /setup/github.",
        );
    };
    let Some(keyring) = state.ctx.keyring.clone() else {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "ENCRYPTION_KEY is not set",
            "graft refuses to store the app's private key unencrypted. Set ENCRYPTION_KEY \
             (`graft keys generate`), restart graft and start again at /setup/github.",
        );
    };
    let api_url = state.ctx.operator.github_api_url.clone();
    let conversion = match manifest::convert(&api_url, code).await {
        Ok(conversion) => conversion,
        Err(e) => {
            tracing::warn!(error = %e, "GitHub App manifest conversion failed");
            let status = match e {
                ManifestError::Code | ManifestError::CodeRejected => StatusCode::BAD_REQUEST,
                _ => StatusCode::BAD_GATEWAY,
            };
            return refused(status, "GitHub did not create the app", &e.to_string());
        }
    };
    let app_id = conversion.id.to_string();
    let config = match GithubAppConfig::new(&app_id, &conversion.pem, &api_url) {
        Ok(config) => config,
        Err(e) => {
            tracing::warn!(error = %e, "the converted app's key is not usable");
            return refused(
                StatusCode::BAD_GATEWAY,
                "GitHub's answer is not usable",
                "The private key GitHub returned cannot sign a JWT. Start again at /setup/github.",
            );
        }
    };
    let sealed = keyring
        .seal(conversion.pem.expose_secret())
        .and_then(|pem| {
            let secret = conversion
                .webhook_secret
                .as_ref()
                .map(|s| keyring.seal(s.expose_secret()))
                .transpose()?;
            Ok((pem, secret))
        });
    let Ok((pem_sealed, secret_sealed)) = sealed else {
        tracing::error!("sealing the GitHub App's credentials failed");
        return refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "graft hit an internal error",
            "The details are in its log.",
        );
    };
    let now = now_ms();
    let saved = state
        .ctx
        .store
        .save_github_app(
            &NewGithubApp {
                app_id: &app_id,
                slug: &conversion.slug,
                api_url: &api_url,
                private_key_sealed: &pem_sealed,
                webhook_secret_sealed: secret_sealed.as_deref(),
            },
            now,
        )
        .await;
    if let Err(e) = saved {
        tracing::error!(error = %e, "cannot store the GitHub App");
        return refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "graft hit an internal error",
            "The details are in its log.",
        );
    }
    let message = format!(
        "GitHub App {} ({}) registered through the manifest flow",
        conversion.slug, app_id
    );
    if let Err(e) = state
        .ctx
        .store
        .record_event(
            &NewEvent {
                actor: "setup:github",
                kind: "github_app.registered",
                message: &message,
                ..NewEvent::default()
            },
            now,
        )
        .await
    {
        tracing::warn!(error = %e, "cannot record the registration event");
    }
    let active = match state.ctx.forges.use_stored_github_app(config) {
        Ok(active) => active,
        Err(e) => {
            tracing::warn!(error = %e, "the stored GitHub App cannot be used yet");
            false
        }
    };
    tracing::info!(app_id = %app_id, slug = %conversion.slug, active, "GitHub App registered");
    let install_url = format!(
        "{}/installations/new",
        conversion.html_url.trim_end_matches('/')
    );
    let body = html! {
        h1 { "GitHub App registered" }
        div.box.ok {
            p { "GitHub created " strong { (conversion.name) } " (id " (app_id) ")"
                @if let Some(owner) = &conversion.owner { " owned by " code { (owner) } } ". "
                "Its private key and webhook secret are stored encrypted; nothing to copy." }
            @if active { p { "graft uses it from now on." } }
            @else { p { "GITHUB_APP_ID / GITHUB_APP_PRIVATE_KEY are set and keep overriding it; unset them and restart to use this app." } }
        }
        p { a href=(install_url) { "Install the app on your repositories" } " — then create a project." }
        p { a href="/" { "Go to the dashboard" } }
    };
    Html(layout("GitHub App registered", false, None, body).into_string()).into_response()
}
