//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use crate::http::HttpState;
use crate::metrics;

pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    match state.ctx.store.ready().await {
        Ok(true) => (StatusCode::OK, axum::Json(json!({ "status": "ready" }))),
        Ok(false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                json!({ "status": "not ready", "reason": "migrations are not applied; run `graft migrate`" }),
            ),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "status": "not ready", "reason": "database unreachable" })),
            )
        }
    }
}

/// Prometheus text format 0.0.4 by default; OpenMetrics to a scraper that
/// asks for it in `Accept` (as Prometheus does).
pub async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> impl IntoResponse {
    match state.ctx.store.job_counts().await {
        Ok(counts) => state.ctx.metrics.set_queue_depth(&counts),
        Err(e) => tracing::warn!(error = %e, "could not count jobs for /metrics"),
    }
    let rendered = state.ctx.metrics.render();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if metrics::wants_openmetrics(accept) {
        (
            [(header::CONTENT_TYPE, metrics::OPENMETRICS_CONTENT_TYPE)],
            rendered,
        )
    } else {
        (
            [(header::CONTENT_TYPE, metrics::PROMETHEUS_CONTENT_TYPE)],
            metrics::to_prometheus_text(&rendered),
        )
    }
}
