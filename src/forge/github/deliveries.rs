//! The GitHub App's webhook deliveries, as GitHub recorded them: listed
//! newest first (`GET /app/hook/deliveries`, cursor pagination through the
//! `Link` header) and redelivered on request (`POST
//! /app/hook/deliveries/{id}/attempts`). Both need the app's JWT, no
//! installation token and no extra permission.

use http::Method;
use serde::Deserialize;

use super::GITHUB;
use super::app::{GithubApp, decode};
use crate::forge::Result;
use crate::forge::error::ForgeError;
use crate::forge::http::{foreign_next_page, next_link_within};

/// How far back GitHub lists deliveries.
pub const RETENTION_MS: i64 = 3 * 24 * 3600 * 1000;

/// At most this many pages of 100 are read in one listing.
const MAX_PAGES: usize = 100;

/// One delivery attempt (`hook-delivery-item`). A redelivery is a new
/// attempt with its own `id` and the same `guid` (`X-GitHub-Delivery`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HookDelivery {
    pub id: i64,
    pub guid: String,
    pub delivered_at: String,
    #[serde(default)]
    pub redelivery: bool,
    #[serde(default)]
    pub status: String,
    /// 0 when GitHub got no HTTP answer at all (refused, timed out).
    #[serde(default)]
    pub status_code: i64,
    #[serde(default)]
    pub event: String,
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub installation_id: Option<i64>,
    #[serde(default)]
    pub repository_id: Option<i64>,
}

impl HookDelivery {
    /// Unix milliseconds of `delivered_at`; `None` when it is not a time.
    pub fn delivered_ms(&self) -> Option<i64> {
        chrono::DateTime::parse_from_rfc3339(&self.delivered_at)
            .ok()
            .map(|t| t.timestamp_millis())
    }

    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}

impl GithubApp {
    /// The app's deliveries from newest back to `since` (Unix ms): paging
    /// stops at the first page that reaches past it. The last page may
    /// hold older ones too; callers filter.
    pub async fn hook_deliveries_since(&self, since: i64) -> Result<Vec<HookDelivery>> {
        let what = "listing the app's webhook deliveries";
        let mut items: Vec<HookDelivery> = Vec::new();
        let mut next = Some("/app/hook/deliveries?per_page=100".to_string());
        for _ in 0..MAX_PAGES {
            let Some(uri) = next.take() else {
                return Ok(items);
            };
            let response = self.app_call(what, Method::GET, &uri, None).await?;
            let page: Vec<HookDelivery> = decode(&response, what)?;
            let reached = page
                .iter()
                .any(|d| d.delivered_ms().is_some_and(|t| t < since));
            let empty = page.is_empty();
            items.extend(page);
            if reached || empty {
                return Ok(items);
            }
            next = next_link_within(&response.headers, self.api_url())
                .map_err(|origin| foreign_next_page(GITHUB, what, &origin))?;
        }
        // Bounded: older deliveries wait for the next pass (after this
        // one's high-water mark has moved on, they are not listed again).
        tracing::warn!(
            pages = MAX_PAGES,
            "more webhook deliveries than one recovery pass reads; the oldest are not checked"
        );
        Ok(items)
    }

    /// Asks GitHub to send delivery attempt `id` again (same guid and
    /// payload). GitHub answers 202 and delivers in the background.
    pub async fn redeliver(&self, id: i64) -> Result<()> {
        let what = "asking GitHub to redeliver a webhook";
        let uri = format!("/app/hook/deliveries/{id}/attempts");
        match self.app_call(what, Method::POST, &uri, None).await {
            Ok(_) => Ok(()),
            Err(ForgeError::NotFound { .. }) => Err(ForgeError::Unexpected {
                forge: GITHUB,
                message: format!("delivery {id} is no longer kept by GitHub"),
            }),
            Err(e) => Err(e),
        }
    }
}
