//! The App webhook's delivery log, as GitHub keeps it: every attempt the
//! fake made (with graft's status code, or status code 0 when nothing
//! answered), listed newest first with cursor pagination
//! (`GET /app/hook/deliveries`), and redelivered on request
//! (`POST /app/hook/deliveries/{id}/attempts`: the same guid and payload).

use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::super::fake_common::{SentHook, iso, json_response};
use super::FakeGithub;
use super::api::gh_error;

/// Attempt ids start here, so they never look like other ids.
const FIRST_ID: i64 = 50_000;

fn attempt_id(index: usize) -> i64 {
    FIRST_ID + index as i64
}

/// GitHub's `status` text for an attempt.
fn status_text(status: Option<u16>) -> String {
    match status {
        Some(code) if (200..300).contains(&code) => "OK".to_string(),
        Some(code) => format!("Invalid HTTP Response: {code}"),
        None => "failed to connect to host".to_string(),
    }
}

/// Every attempt as a `hook-delivery-item`, newest first.
fn items(sent: &[SentHook]) -> Vec<(i64, Value)> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (index, hook) in sent.iter().enumerate() {
        let guid = hook.header("X-GitHub-Delivery").unwrap_or_default();
        let attempts = seen.entry(guid).or_default();
        *attempts += 1;
        let id = attempt_id(index);
        out.push((
            id,
            json!({
                "id": id,
                "guid": guid,
                "delivered_at": iso(hook.at),
                "redelivery": *attempts > 1,
                "duration": 0.01,
                "status": status_text(hook.status),
                "status_code": hook.status.unwrap_or(0),
                "event": hook.event,
                "action": hook.body.get("action").and_then(Value::as_str),
                "installation_id": hook.body.pointer("/installation/id").and_then(Value::as_i64),
                "repository_id": hook.body.pointer("/repository/id").and_then(Value::as_i64),
            }),
        ));
    }
    out.reverse();
    out
}

/// `GET /app/hook/deliveries[?per_page=&cursor=]`: newest first; the
/// `Link` header's `next` names the cursor of the next page.
pub(super) fn list(fake: &FakeGithub, query: &BTreeMap<String, String>) -> Response {
    let max = fake.state.lock().unwrap().max_per_page.min(100);
    let per_page = query
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, max);
    let cursor = match query.get("cursor") {
        None => i64::MAX,
        Some(c) => match c.strip_prefix("v1_").and_then(|n| n.parse::<i64>().ok()) {
            Some(n) => n,
            None => return gh_error(StatusCode::BAD_REQUEST, "Invalid cursor"),
        },
    };
    let all: Vec<(i64, Value)> = items(&fake.hooks.sent())
        .into_iter()
        .filter(|(id, _)| *id <= cursor)
        .collect();
    let page: Vec<Value> = all.iter().take(per_page).map(|(_, v)| v.clone()).collect();
    let mut response = (StatusCode::OK, axum::Json(Value::Array(page))).into_response();
    if let Some((next, _)) = all.get(per_page) {
        let root = fake.state.lock().unwrap().link_origin.clone();
        let base = match root {
            Some(origin) => format!("{origin}{}", fake.prefix),
            None => fake.api_url.clone(),
        };
        let link = format!(
            "<{base}/app/hook/deliveries?per_page={per_page}&cursor=v1_{next}>; rel=\"next\""
        );
        response
            .headers_mut()
            .insert("link", HeaderValue::from_str(&link).unwrap());
    }
    response
}

/// `POST /app/hook/deliveries/{id}/attempts`: sends attempt `id`'s event
/// again, same guid and payload; 202 at once, delivered in the background.
pub(super) fn redeliver(fake: &FakeGithub, id: &str) -> Response {
    let sent = fake.hooks.sent();
    let index = id
        .parse::<i64>()
        .ok()
        .and_then(|id| usize::try_from(id - FIRST_ID).ok())
        .filter(|i| *i < sent.len());
    let Some(index) = index else {
        return gh_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let hook = &sent[index];
    fake.state.lock().unwrap().redeliveries += 1;
    fake.hooks
        .send(&hook.event, hook.headers.clone(), hook.body.clone());
    json_response(StatusCode::ACCEPTED, json!({}))
}
