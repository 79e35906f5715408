//! `POST /webhooks/github` and `POST /webhooks/gitlab`: authenticate on the
//! raw bytes, parse into graft's events, store the delivery and its
//! processing job in one transaction, answer 202. Nothing is stored for a
//! request that fails authentication or parsing.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{Instrument, info, info_span, warn};

use super::error::ApiError;
use crate::app::AppState;
use crate::events::{self, ParseError, Parsed, Provider};
use crate::signature::{self, SignatureError};
use crate::store::deliveries::{IncomingDelivery, Intake};
use crate::store::now_ms;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn body_or_413(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("webhook body rejected: {}", rejection.body_text()),
        )
    })
}

fn signature_error(error: SignatureError) -> ApiError {
    match error {
        SignatureError::NotConfigured(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "webhook_not_configured",
            error.to_string(),
        ),
        _ => ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", error.to_string()),
    }
}

fn parse_error(error: ParseError) -> ApiError {
    let code = match error {
        ParseError::NotJson(_) => "invalid_json",
        ParseError::WrongShape { .. } => "invalid_payload",
    };
    ApiError::bad_request(code, error.to_string())
}

fn required_header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, ApiError> {
    header(headers, name)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("missing_header", format!("missing {name} header")))
}

/// A verified, parsed delivery on its way into the store.
struct Verified<'a> {
    provider: Provider,
    delivery_id: String,
    event: &'a str,
    body: &'a [u8],
    parsed: Parsed,
}

pub async fn github(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let event = header(&headers, "X-GitHub-Event")
        .unwrap_or("unknown")
        .to_string();
    let delivery_id = header(&headers, "X-GitHub-Delivery")
        .unwrap_or("-")
        .to_string();
    let span = info_span!("delivery", provider = "github", %delivery_id, %event);
    let result = async {
        let body = body_or_413(body)?;
        let candidates = github_secrets(&state).await?;
        signature::verify_github(
            header(&headers, signature::GITHUB_SIGNATURE_HEADER),
            &body,
            &candidates,
        )
        .map_err(signature_error)?;
        let event = required_header(&headers, "X-GitHub-Event")?;
        let delivery_id = required_header(&headers, "X-GitHub-Delivery")?.to_string();
        let parsed = events::github::parse(event, &body).map_err(parse_error)?;
        accept(
            &state,
            Verified {
                provider: Provider::Github,
                delivery_id,
                event,
                body: &body,
                parsed,
            },
        )
        .await
    }
    .instrument(span)
    .await;
    respond(&state, "github", &event, result)
}

pub async fn gitlab(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let event = header(&headers, "X-Gitlab-Event")
        .unwrap_or("unknown")
        .to_string();
    let delivery_header = header(&headers, "X-Gitlab-Event-UUID")
        .or_else(|| header(&headers, "Idempotency-Key"))
        .filter(|v| !v.trim().is_empty())
        .map(str::to_string);
    let span = info_span!("delivery", provider = "gitlab", delivery_id = delivery_header.as_deref().unwrap_or("-"), %event);
    let result = async {
        let body = body_or_413(body)?;
        let candidates = gitlab_secrets(&state).await?;
        signature::verify_gitlab_token(
            header(&headers, signature::GITLAB_TOKEN_HEADER),
            &candidates,
        )
        .map_err(signature_error)?;
        let event = required_header(&headers, "X-Gitlab-Event")?;
        // Old GitLab versions send no delivery id: a digest of the body still
        // dedupes exact redeliveries.
        let delivery_id = delivery_header
            .clone()
            .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(&body))));
        let parsed = events::gitlab::parse(event, &body).map_err(parse_error)?;
        accept(
            &state,
            Verified {
                provider: Provider::Gitlab,
                delivery_id,
                event,
                body: &body,
                parsed,
            },
        )
        .await
    }
    .instrument(span)
    .await;
    respond(&state, "gitlab", &event, result)
}

/// GITHUB_WEBHOOK_SECRET when set (the environment overrides), else the
/// secret of the GitHub App registered through /setup/github.
async fn github_secrets(state: &AppState) -> Result<Vec<SecretString>, ApiError> {
    if !state.github_webhook_secrets.is_empty() {
        return Ok(state.github_webhook_secrets.clone());
    }
    let (Some(keyring), Some(app)) = (&state.keyring, state.store.github_app().await?) else {
        return Ok(Vec::new());
    };
    let Some(sealed) = app.webhook_secret_sealed else {
        return Ok(Vec::new());
    };
    match keyring.open(&sealed) {
        Ok(secret) => Ok(vec![secret]),
        Err(e) => {
            warn!(error = %e, "cannot open the stored GitHub App's webhook secret");
            Ok(Vec::new())
        }
    }
}

/// The configured secrets plus those of stored GitLab integrations.
async fn gitlab_secrets(state: &AppState) -> Result<Vec<SecretString>, ApiError> {
    let mut secrets = state.gitlab_webhook_secrets.clone();
    let Some(keyring) = &state.keyring else {
        return Ok(secrets);
    };
    let fields = state.store.sealed_fields(Some("gitlab")).await?;
    for field in fields {
        if field.column != crate::store::integrations::SealedColumn::WebhookSecret {
            continue;
        }
        match keyring.open(&field.sealed) {
            Ok(secret) => secrets.push(secret),
            Err(e) => {
                warn!(integration = field.integration_id, error = %e, "cannot open a stored webhook secret")
            }
        }
    }
    Ok(secrets)
}

async fn accept(state: &AppState, delivery: Verified<'_>) -> Result<Response, ApiError> {
    let (action, ignored) = match &delivery.parsed {
        Parsed::Event(event) => (event.action(), None),
        Parsed::Ignored { reason } => (None, Some(reason.as_str())),
    };
    let intake = state
        .store
        .record_delivery(
            &IncomingDelivery {
                provider: delivery.provider.as_str(),
                delivery_id: &delivery.delivery_id,
                event: delivery.event,
                action,
                payload: delivery.body,
                ignored,
            },
            now_ms(),
        )
        .await?;
    let (status, id) = match intake {
        Intake::Accepted { id, job_id } | Intake::Requeued { id, job_id } => {
            if job_id.is_some() {
                state.job_wake.notify_waiters();
            }
            let status = match (ignored, matches!(intake, Intake::Requeued { .. })) {
                (Some(_), _) => "ignored",
                (None, true) => "requeued",
                (None, false) => "queued",
            };
            (status, id)
        }
        Intake::Duplicate { id, .. } => ("duplicate", id),
    };
    info!(
        outcome = status,
        ignored_reason = ignored,
        "delivery accepted"
    );
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "status": status, "delivery": delivery.delivery_id, "id": id })),
    )
        .into_response())
}

fn respond(
    state: &AppState,
    provider: &str,
    event: &str,
    result: Result<Response, ApiError>,
) -> Response {
    let outcome = match &result {
        Ok(_) => "accepted",
        Err(e) if e.status == StatusCode::UNAUTHORIZED => "unauthorized",
        Err(e) if e.status.is_client_error() => "rejected",
        Err(_) => "error",
    };
    // Unauthenticated requests could name any event: do not let them grow
    // the label set.
    let event_label = if outcome == "unauthorized" {
        "-"
    } else {
        event
    };
    state.metrics.delivery(provider, event_label, outcome);
    match result {
        Ok(response) => response,
        Err(e) => {
            warn!(provider, status = e.status.as_u16(), error = %e.message, "webhook rejected");
            e.into_response()
        }
    }
}
