//! The HTTP surface (SPEC §3): webhooks, the JSON API, health and metrics,
//! the dashboard and the GitHub App set-up pages.

pub mod api;
pub mod auth;
pub mod error;
pub mod files;
pub mod health;
pub mod input;
pub mod projects;
pub mod setup;
pub mod ui;
pub mod webhooks;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use error::ApiError;

/// Webhook payloads and file uploads may be large, but not unbounded.
pub const BODY_LIMIT: usize = 25 * 1024 * 1024;

pub fn router(state: AppState) -> Router {
    let api = api::routes().layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    let pages = ui::routes()
        .merge(setup::routes())
        .layer(axum::middleware::from_fn(ui::page_headers));
    Router::new()
        .merge(pages)
        .route("/webhooks/github", post(webhooks::github))
        .route("/webhooks/gitlab", post(webhooks::gitlab))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        // Past this many requests in flight, new ones wait instead of
        // exhausting database connections and memory.
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(512))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see the README for graft's HTTP API")
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    ApiError::internal().into_response()
}
