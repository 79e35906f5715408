//! `/api/v1`: the JSON API for generators and admins (behind a bearer token).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::events::Provider;
use crate::forge::gitlab::connect::{self, ConnectError};
use crate::http::HttpState;
use crate::store::audit::NewEvent;
use crate::store::integrations::NewIntegration;
use crate::store::now_ms;
use crate::validation;
use secrecy::SecretString;

/// The routes under `/api/v1` (auth is the caller's layer).
pub fn routes() -> Router<HttpState> {
    let (router, _) = described_routes().split_for_parts();
    router.method_not_allowed_fallback(method_not_allowed)
}

/// Every `/api/v1` route together with its OpenAPI description: a route is
/// registered only through `routes!`, from its handler's
/// `#[utoipa::path]`, so the router and `/api/v1/openapi.json` cannot
/// disagree.
pub fn described_routes() -> OpenApiRouter<HttpState> {
    OpenApiRouter::new()
        .routes(routes!(create_gitlab_integration, list_integrations))
        .merge(super::projects::routes())
        .merge(super::files::routes())
        .merge(super::adopt::routes())
        .merge(super::export::routes())
        .merge(super::repositories::routes())
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see the README for graft's HTTP API",
    )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGitlabIntegration {
    /// `https://` (plain http only with `GRAFT_ALLOW_HTTP_GITLAB=true`).
    #[schema(example = "https://gitlab.example.com")]
    base_url: String,
    /// An access token with the `api` scope; stored sealed, never returned.
    token: String,
    /// The secret GitLab sends in `X-Gitlab-Token`; unique per integration.
    webhook_secret: String,
    /// Defaults to `BASE_URL as @user`.
    name: Option<String>,
    /// GitLab projects (`group/name`) whose webhook graft should create or
    /// update (the token's user needs the Maintainer role there).
    #[serde(default)]
    hooks: Vec<String>,
}

// Kept in step by hand with the `json!` answer of the handler below.
/// The answer to connecting a GitLab account.
#[derive(ToSchema)]
pub struct GitlabIntegrationConnected {
    pub id: i64,
    /// `false`: the same account was connected again and updated.
    pub created: bool,
    #[schema(example = "gitlab")]
    pub provider: String,
    pub name: String,
    pub base_url: String,
    /// The GitLab user the token acts as.
    pub user: String,
    /// The token's scopes, when GitLab says (15.5 and later).
    pub scopes: Option<Vec<String>>,
    pub expires_at: Option<String>,
    /// Where GitLab should send webhooks.
    pub webhook_url: String,
    pub hooks: Vec<HookOutcome>,
}

/// What became of one project's webhook.
#[derive(ToSchema)]
pub struct HookOutcome {
    #[schema(example = "group/project")]
    pub project: String,
    /// `created`, `updated` or `failed`.
    pub status: String,
    pub hook_id: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// An integration as listed: never its token or secret.
#[derive(ToSchema)]
#[schema(as = Integration)]
pub struct IntegrationView {
    pub id: i64,
    pub provider: String,
    pub name: String,
    pub base_url: String,
    pub has_token: bool,
    pub has_webhook_secret: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

#[derive(ToSchema)]
pub struct IntegrationList {
    pub integrations: Vec<IntegrationView>,
}

fn validate_base_url(url: &str, allow_http: bool) -> Result<String, ApiError> {
    let trimmed = url.trim().trim_end_matches('/');
    if crate::forge::gitlab::client::plain_http_refused(trimmed, allow_http) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "base_url must be an https:// URL: graft sends the GitLab token with every call, and \
             over http anyone on the path could read it. For a GitLab on a trusted private \
             network the operator can start graft with GRAFT_ALLOW_HTTP_GITLAB=true",
        ));
    }
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(host)
            if !host.is_empty() && !host.contains(char::is_whitespace) && !host.contains('@') =>
        {
            Ok(trimmed.to_string())
        }
        _ => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "base_url must be an http(s) URL without credentials, e.g. https://gitlab.example.com",
        )),
    }
}

fn require_nonempty(value: &str, field: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{field} must not be empty"),
        ));
    }
    Ok(())
}

/// Where GitLab should send webhooks, and whether that comes from
/// GRAFT_PUBLIC_URL (else it is the address this request came to).
fn webhook_url(state: &HttpState, headers: &HeaderMap) -> (String, bool) {
    let (root, configured) = super::public_url(state, headers);
    (format!("{root}/webhooks/gitlab"), configured)
}

fn connect_error(error: ConnectError) -> ApiError {
    let (status, code) = match &error {
        ConnectError::BadToken { .. } | ConnectError::Inactive => {
            (StatusCode::UNPROCESSABLE_ENTITY, "gitlab_token_rejected")
        }
        ConnectError::InsufficientScope { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "gitlab_token_scope")
        }
        ConnectError::Unreachable { .. } => (StatusCode::BAD_GATEWAY, "gitlab_unreachable"),
        ConnectError::Other(_) => (StatusCode::BAD_GATEWAY, "gitlab_error"),
    };
    ApiError::new(status, code, error.to_string())
}

/// Connect a GitLab account
///
/// Checks the token with GitLab, stores it and the webhook secret sealed,
/// and optionally creates or updates the webhooks of `hooks`. Connecting
/// the same account again (same base URL and `name`) replaces its token
/// and secret.
#[utoipa::path(
    post,
    path = "/integrations/gitlab",
    tag = "integrations",
    request_body = NewGitlabIntegration,
    responses(
        (status = 201, description = "Connected", body = GitlabIntegrationConnected),
        (status = 200, description = "The same account, updated", body = GitlabIntegrationConnected),
        (status = 409, description = "`webhook_secret_in_use`: another integration has this secret", body = ErrorBody),
        (status = 422, description = "`invalid_field`, `gitlab_token_rejected`, `gitlab_token_scope`, `public_url_required`", body = ErrorBody),
        (status = 502, description = "`gitlab_unreachable`, `gitlab_error`", body = ErrorBody),
    )
)]
async fn create_gitlab_integration(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NewGitlabIntegration>,
) -> Result<impl IntoResponse, ApiError> {
    let base_url = validate_base_url(&body.base_url, state.allow_http_gitlab)?;
    require_nonempty(&body.token, "token")?;
    require_nonempty(&body.webhook_secret, "webhook_secret")?;
    let (hook_url, url_configured) = webhook_url(&state, &headers);
    if !body.hooks.is_empty() && !url_configured {
        // The request may come from `graft gitlab connect` on localhost:
        // a hook pointing there would never reach graft.
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "public_url_required",
            "`hooks` needs GRAFT_PUBLIC_URL (the address GitLab can reach graft at); set it and \
             restart graft, or leave `hooks` out and configure the webhook by hand",
        ));
    }
    for project in &body.hooks {
        validation::repo_path(Provider::Gitlab, project).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!("hooks: {e}"),
            )
        })?;
    }
    let keyring = state.keyring_for_storing()?;
    let client = connect::probe_client(
        &base_url,
        SecretString::from(body.token.trim().to_string()),
        state.ctx.metrics.clone(),
    )
    .map_err(connect_error)?;
    let check = connect::verify_token(&client)
        .await
        .map_err(connect_error)?;
    let seal = |value: &str| {
        keyring.seal(value).map_err(|e| {
            tracing::error!(error = %e, "sealing failed");
            ApiError::internal()
        })
    };
    let token_sealed = seal(body.token.trim())?;
    let secret_sealed = seal(body.webhook_secret.trim())?;
    // One integration per GitLab account: connecting the same account again
    // (a new token) updates it; another account on the same instance (a
    // per-group token, say) is another integration.
    let name = body
        .name
        .unwrap_or_else(|| format!("{base_url} as @{}", check.username));
    let updating = state
        .ctx
        .store
        .integration_named("gitlab", &base_url, &name)
        .await?;
    refuse_shared_secret(&state, body.webhook_secret.trim(), updating).await?;
    let now = now_ms();
    let (id, created) = state
        .ctx
        .store
        .save_integration(
            &NewIntegration {
                provider: "gitlab",
                name: &name,
                base_url: &base_url,
                token_sealed: Some(&token_sealed),
                webhook_secret_sealed: Some(&secret_sealed),
            },
            now,
        )
        .await?;
    let (kind, verb) = if created {
        ("integration.created", "added")
    } else {
        (
            "integration.updated",
            "updated with a new token and webhook secret",
        )
    };
    state
        .ctx
        .store
        .record_event(
            &NewEvent {
                actor: &format!("token:{}", caller.0.name),
                kind,
                message: &format!(
                    "GitLab integration {id} {verb} for {base_url} (acting as @{})",
                    check.username
                ),
                ..NewEvent::default()
            },
            now,
        )
        .await?;
    let mut hooks = Vec::new();
    for project in &body.hooks {
        hooks.push(
            connect::ensure_hook(&client, project, &hook_url, body.webhook_secret.trim()).await,
        );
    }
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        axum::Json(json!({
            "id": id,
            "created": created,
            "provider": "gitlab",
            "name": name,
            "base_url": base_url,
            "user": check.username,
            "scopes": check.scopes,
            "expires_at": check.expires_at,
            "webhook_url": hook_url,
            "hooks": hooks,
        })),
    ))
}

/// GitLab sends only the secret, and graft tells integrations apart by it:
/// a secret another integration (or `GITLAB_WEBHOOK_SECRET`) already has
/// would hand that one this integration's deliveries.
async fn refuse_shared_secret(
    state: &HttpState,
    secret: &str,
    updating: Option<i64>,
) -> Result<(), ApiError> {
    let (owners, secrets): (Vec<Option<i64>>, Vec<SecretString>) =
        super::webhooks::gitlab_secrets(state)
            .await?
            .into_iter()
            .filter(|(owner, _)| owner.is_none() || *owner != updating)
            .unzip();
    // The comparison webhook intake makes: a match there is a clash here.
    if let Ok(index) = crate::signature::verify_gitlab_token(Some(secret), &secrets) {
        let holder = match owners.get(index).copied().flatten() {
            Some(id) => format!("GitLab integration {id}"),
            None => "GITLAB_WEBHOOK_SECRET".to_string(),
        };
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "webhook_secret_in_use",
            format!(
                "webhook_secret is already the webhook secret of {holder}; graft tells GitLab \
                 integrations apart by their secret, so give this one its own (e.g. \
                 `openssl rand -hex 32`)"
            ),
        ));
    }
    Ok(())
}

/// List integrations
#[utoipa::path(
    get,
    path = "/integrations/gitlab",
    tag = "integrations",
    responses((status = 200, description = "Every integration, without its secrets", body = IntegrationList))
)]
async fn list_integrations(State(state): State<HttpState>) -> Result<impl IntoResponse, ApiError> {
    let integrations = state.ctx.store.list_integrations().await?;
    Ok(axum::Json(json!({ "integrations": integrations })))
}
