//! `POST /webhooks/github` and `POST /webhooks/gitlab`: authenticate on the
//! raw bytes, parse into graft's events, store the delivery and its
//! processing job in one transaction, answer 202. Nothing is stored for a
//! request that fails authentication or parsing.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::{Instrument, info, info_span, warn};

use super::error::ApiError;
use super::intake::{self, BodyRules};
use crate::events::{self, ParseError, Parsed, Provider};
use crate::http::HttpState;
use crate::signature::{self, SignatureError};
use crate::store::deliveries::{IncomingDelivery, Intake};
use crate::store::now_ms;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The body, or 413 when it is over the limit (400 when it could not be
/// read at all, e.g. the client went away).
fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    use axum::extract::rejection::FailedToBufferBody;
    body.map_err(|rejection| match &rejection {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "webhook body is over the {} MiB limit",
                    super::BODY_LIMIT / (1024 * 1024)
                ),
            )
        }
        _ => ApiError::bad_request(
            "unreadable_body",
            format!("webhook body could not be read: {}", rejection.body_text()),
        ),
    })
}

/// Reads the whole body before the request may take one of the webhook
/// permits (see `http::router`): a slow sender waits outside them and is
/// answered 408 when its time is up, counted like any refused delivery.
/// What can be checked from the headers is checked first, so a request
/// that cannot be a delivery is refused before a byte of its body is held.
pub async fn read_first(
    State((state, rules)): State<(HttpState, BodyRules)>,
    request: Request,
    next: Next,
) -> Response {
    let provider = if request.uri().path().ends_with("/gitlab") {
        "gitlab"
    } else {
        "github"
    };
    let (parts, body) = request.into_parts();
    let read = match check_headers(&state, provider, &parts.headers).await {
        Ok(()) => intake::read(&parts.headers, body, &rules)
            .await
            .map_err(|refusal| refusal.to_error("webhook body")),
        Err(error) => Err(error),
    };
    match read {
        Ok(buffered) => {
            let request = Request::from_parts(parts, Body::from(buffered.bytes.clone()));
            let response = next.run(request).await;
            // The budget is held until the handler is done with the bytes.
            drop(buffered);
            response
        }
        Err(error) => {
            let mut response = respond(&state, provider, "-", Err(error));
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
    }
}

/// The checks that need no body. GitLab's token is a plain secret, checked
/// here in full (the handler checks it again); GitHub's signature covers
/// the body, so only its presence and shape can be checked, with the event
/// headers every delivery carries.
async fn check_headers(
    state: &HttpState,
    provider: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if provider == "gitlab" {
        let secrets: Vec<SecretString> = gitlab_secrets(state)
            .await?
            .into_iter()
            .map(|(_, secret)| secret)
            .collect();
        signature::verify_gitlab_token(header(headers, signature::GITLAB_TOKEN_HEADER), &secrets)
            .map_err(signature_error)?;
        well_formed_header(headers, "X-Gitlab-Event")?;
        return Ok(());
    }
    if github_secrets(state).await?.is_empty() {
        return Err(signature_error(SignatureError::NotConfigured(
            "set GITHUB_WEBHOOK_SECRET",
        )));
    }
    github_signature_shape(header(headers, signature::GITHUB_SIGNATURE_HEADER))
        .map_err(signature_error)?;
    well_formed_header(headers, "X-GitHub-Event")?;
    well_formed_header(headers, "X-GitHub-Delivery")?;
    Ok(())
}

/// `sha256=` and 64 hex characters, as GitHub sends it.
fn github_signature_shape(value: Option<&str>) -> Result<(), SignatureError> {
    let name = signature::GITHUB_SIGNATURE_HEADER;
    let value = value.ok_or(SignatureError::Missing(name))?;
    let hex_part = value
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed(name))?;
    if hex_part.len() == 64 && hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(SignatureError::Malformed(name))
    }
}

/// Event names ("Push Hook") and delivery ids are short printable text.
fn well_formed_header(headers: &HeaderMap, name: &'static str) -> Result<(), ApiError> {
    let value = required_header(headers, name)?;
    if value.len() <= 128 && value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "malformed_header",
            format!("{name} header must be at most 128 printable ASCII characters"),
        ))
    }
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
    /// The GitLab integration whose secret it carried (`None`: GitHub, or
    /// the default integration from the environment).
    integration_id: Option<i64>,
}

pub async fn github(
    State(state): State<HttpState>,
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
        let body = read_body(body)?;
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
                integration_id: None,
            },
        )
        .await
    }
    .instrument(span)
    .await;
    respond(&state, "github", &event, result)
}

pub async fn gitlab(
    State(state): State<HttpState>,
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
        let body = read_body(body)?;
        let candidates = gitlab_secrets(&state).await?;
        let secrets: Vec<SecretString> = candidates.iter().map(|(_, s)| s.clone()).collect();
        let matched = signature::verify_gitlab_token(
            header(&headers, signature::GITLAB_TOKEN_HEADER),
            &secrets,
        )
        .map_err(signature_error)?;
        let integration_id = candidates.get(matched).and_then(|(id, _)| *id);
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
                integration_id,
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
async fn github_secrets(state: &HttpState) -> Result<Vec<SecretString>, ApiError> {
    if !state.github_webhook_secrets.is_empty() {
        return Ok(state.github_webhook_secrets.clone());
    }
    let (Some(keyring), Some(app)) = (&state.ctx.keyring, state.ctx.store.github_app().await?)
    else {
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

/// The configured secrets (the default integration: `None`) plus those of
/// stored GitLab integrations, each with the integration it belongs to.
pub(crate) async fn gitlab_secrets(
    state: &HttpState,
) -> Result<Vec<(Option<i64>, SecretString)>, ApiError> {
    let mut secrets: Vec<(Option<i64>, SecretString)> = state
        .gitlab_webhook_secrets
        .iter()
        .map(|s| (None, s.clone()))
        .collect();
    let Some(keyring) = &state.ctx.keyring else {
        return Ok(secrets);
    };
    let fields = state.ctx.store.sealed_fields(Some("gitlab")).await?;
    for field in fields {
        if field.column != crate::store::integrations::SealedColumn::WebhookSecret {
            continue;
        }
        match keyring.open(&field.sealed) {
            Ok(secret) => secrets.push((Some(field.integration_id), secret)),
            Err(e) => {
                warn!(integration = field.integration_id, error = %e, "cannot open a stored webhook secret")
            }
        }
    }
    Ok(secrets)
}

/// What became of an accepted delivery, as answered and counted.
type Accepted = (Response, &'static str);

async fn accept(state: &HttpState, delivery: Verified<'_>) -> Result<Accepted, ApiError> {
    let (action, ignored) = match &delivery.parsed {
        Parsed::Event(event) => (event.action(), None),
        Parsed::Ignored { reason } => (None, Some(reason.as_str())),
    };
    let incoming = IncomingDelivery {
        provider: delivery.provider.as_str(),
        delivery_id: &delivery.delivery_id,
        event: delivery.event,
        action,
        payload: delivery.body,
        ignored,
        integration_id: delivery.integration_id,
    };
    let record = state.ctx.store.record_delivery(&incoming, now_ms());
    let intake = state
        .ctx
        .jobs
        .submit(record, |intake| intake.queued_job().is_some())
        .await?;
    let (status, id) = match intake {
        Intake::Accepted { id, .. } | Intake::Requeued { id, .. } => {
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
    let response = (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "status": status, "delivery": delivery.delivery_id, "id": id })),
    )
        .into_response();
    Ok((response, status))
}

/// Refusals that come before the signature is checked.
const UNAUTHENTICATED: [&str; 5] = [
    "bad_signature",
    "webhook_not_configured",
    "body_too_large",
    "body_timeout",
    "unreadable_body",
];

fn respond(
    state: &HttpState,
    provider: &str,
    event: &str,
    result: Result<Accepted, ApiError>,
) -> Response {
    // Accepted deliveries count by what became of them (queued,
    // duplicate, ignored, requeued).
    let outcome = match &result {
        Ok((_, status)) => *status,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => "unauthorized",
        Err(e) if e.status == StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        Err(e) if e.status == StatusCode::REQUEST_TIMEOUT => "too_slow",
        Err(e) if e.status.is_client_error() => "rejected",
        Err(_) => "error",
    };
    // Unauthenticated requests could name any event: do not let them grow
    // the label set.
    let event_label = match &result {
        Err(e) if UNAUTHENTICATED.contains(&e.code) => "-",
        _ => event,
    };
    state.ctx.metrics.delivery(provider, event_label, outcome);
    match result {
        Ok((response, _)) => response,
        Err(e) => {
            warn!(provider, status = e.status.as_u16(), error = %e.message, "webhook rejected");
            e.into_response()
        }
    }
}
