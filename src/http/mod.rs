//! The HTTP surface (the README's "HTTP surface" table): webhooks, the
//! JSON API, health and metrics, the dashboard and the GitHub App set-up
//! pages. Handlers share [`HttpState`]: the domain context plus what only
//! requests need.

pub mod adopt;
pub mod api;
pub mod auth;
pub mod error;
pub mod export;
pub mod files;
pub mod health;
pub mod input;
pub mod intake;
pub mod openapi;
pub mod project_settings;
pub mod projects;
pub mod repositories;
pub mod serve;
pub mod setup;
pub mod state;
pub mod ui;
pub mod webhooks;

use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{BoxError, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use error::ApiError;
pub use state::{HttpConfig, HttpSettings, HttpState};

/// Webhook payloads and file uploads may be large, but not unbounded.
pub const BODY_LIMIT: usize = 25 * 1024 * 1024;
/// The dashboard's forms and the other routes anyone can reach take a few
/// fields at most.
pub const SMALL_BODY_LIMIT: usize = 16 * 1024;

/// Most requests answer in milliseconds; 30 s means something is stuck.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The API takes uploads of up to 20 MiB and may call the forge (GitLab
/// connect with webhook creation, the manifest conversion) several times.
const API_TIMEOUT: Duration = Duration::from_secs(300);
/// Webhook deliveries are checked and stored this many at a time; the rest
/// wait their turn. Bodies are read whole before a delivery waits here, so
/// a slow sender never holds one of these. Deliveries being stored share
/// transactions (the store's group commit), so more of them at once make
/// bigger batches rather than more database work; too few would cap each
/// batch, and so intake, below what the connections bring.
const WEBHOOKS_IN_FLIGHT: usize = 128;
/// Past this many requests in flight, new ones wait instead of exhausting
/// database connections and memory. Webhooks never take one of these:
/// they have their own permits above, so no API or page traffic can hold
/// what deliveries need.
const REQUESTS_IN_FLIGHT: usize = 512;
/// API bodies (uploads of up to 20 MiB, from CI runners far away) get this
/// many times the webhook body deadline: 60 s by default.
const API_BODY_DEADLINE_FACTOR: u32 = 6;

/// A request that ran out of time gets graft's JSON error, not an empty
/// body.
fn with_timeout(router: Router<HttpState>, after: Duration) -> Router<HttpState> {
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |_: BoxError| async move {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    format!(
                        "graft did not finish this request within {}s; try again, and check \
                         its logs if it keeps happening",
                        after.as_secs()
                    ),
                )
            }))
            .timeout(after),
    )
}

pub fn router(state: HttpState) -> Router {
    // One count of requests in flight for the API and the pages; a body is
    // read whole (under the rules below) before the request takes it, so
    // slow clients cannot use it up.
    let in_flight = GlobalConcurrencyLimitLayer::new(REQUESTS_IN_FLIGHT);
    let body_timeout = state.timeouts.body_timeout;
    let rules = |limit, deadline, pool: &intake::Pool| intake::BodyRules {
        limit,
        deadline,
        pool: pool.clone(),
    };
    let budget = &state.body_budget;
    // Innermost first: the token is checked, then the body read under its
    // deadline and the API's memory pool, and only then is a permit taken.
    let api = with_timeout(api::routes(), API_TIMEOUT)
        .layer(in_flight.clone())
        .layer(axum::middleware::from_fn_with_state(
            rules(
                BODY_LIMIT,
                body_timeout * API_BODY_DEADLINE_FACTOR,
                &budget.api,
            ),
            intake::read_whole,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let pages = ui::routes()
        .merge(setup::routes())
        .layer(axum::middleware::from_fn(ui::page_headers));
    let health = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route(openapi::DOCUMENT_PATH, get(openapi::serve));
    let open = with_timeout(pages.merge(health), PAGE_TIMEOUT)
        .layer(in_flight)
        .layer(axum::middleware::from_fn_with_state(
            rules(SMALL_BODY_LIMIT, body_timeout, &budget.forms),
            intake::read_whole,
        ));
    let webhooks = Router::new()
        .route("/webhooks/github", post(webhooks::github))
        .route("/webhooks/gitlab", post(webhooks::gitlab))
        .layer(GlobalConcurrencyLimitLayer::new(WEBHOOKS_IN_FLIGHT));
    let webhooks =
        with_timeout(webhooks, PAGE_TIMEOUT).layer(axum::middleware::from_fn_with_state(
            (
                state.clone(),
                rules(BODY_LIMIT, body_timeout, &budget.webhooks),
            ),
            webhooks::read_first,
        ));
    Router::new()
        .merge(open)
        .merge(webhooks)
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

/// GRAFT_PUBLIC_URL, or the address this request came to (scheme from
/// `X-Forwarded-Proto`, as a proxy such as Fly's sets it); the flag says
/// whether it was configured.
pub(crate) fn public_url(state: &HttpState, headers: &HeaderMap) -> (String, bool) {
    if let Some(url) = &state.ctx.operator.public_url {
        return (url.clone(), true);
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', '@', ' ']))
        .unwrap_or("localhost:8080");
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    (
        format!("{}://{host}", if https { "https" } else { "http" }),
        false,
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see the README for graft's HTTP API")
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("request handler panicked");
    ApiError::internal().into_response()
}
