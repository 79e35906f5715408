//! `Authorization: Bearer <token>` for `/api/v1/*`.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use crate::app::AppState;
use crate::store::now_ms;
use crate::store::tokens::ApiToken;

/// Who made the request, for the audit log.
#[derive(Debug, Clone)]
pub struct Caller(pub ApiToken);

pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "missing `Authorization: Bearer <token>` header; create a token with \
                 `graft token create --name NAME`",
            )
        })?;
    let token = bearer_token(header)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
    let found = state.store.authenticate_token(token, now_ms()).await?;
    let caller = found
        .ok_or_else(|| ApiError::unauthorized("the API token is not valid (unknown or revoked)"))?;
    request.extensions_mut().insert(Caller(caller));
    Ok(next.run(request).await)
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: &str) -> Option<&str> {
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
}

/// Every `Cookie` header joined (HTTP/2 clients may send one per cookie).
pub fn cookie_header(headers: &axum::http::HeaderMap) -> String {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ")
}
