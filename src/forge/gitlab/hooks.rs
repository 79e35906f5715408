//! What graft reads to recover from webhooks GitLab did not deliver: the
//! project hooks' health (`alert_status`, `disabled_until`), the test
//! request that re-enables a hook GitLab disabled after failures (GitLab's
//! documented way), and the MR notes written since a point in time.

use reqwest::Method;
use serde::Deserialize;

use super::GitlabRepo;
use crate::forge::Result;
use crate::forge::pages::Pages;
use crate::ids::PrNumber;

/// A project hook's health as GitLab reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookHealth {
    Ok,
    /// GitLab sends nothing until `until` (Unix ms, when it says).
    TemporarilyDisabled {
        until: Option<i64>,
    },
    Disabled,
}

impl HookHealth {
    /// From `alert_status` and `disabled_until`; a GitLab too old to say
    /// (before 15.1) counts as ok, and so does a backoff already over.
    pub fn from_api(alert_status: Option<&str>, disabled_until: Option<&str>, now: i64) -> Self {
        let until = disabled_until.and_then(parse_ms);
        match alert_status {
            Some("disabled") => HookHealth::Disabled,
            Some("temporarily_disabled") if until.is_none_or(|u| u > now) => {
                HookHealth::TemporarilyDisabled { until }
            }
            _ => HookHealth::Ok,
        }
    }

    pub fn is_ok(self) -> bool {
        self == HookHealth::Ok
    }

    /// How the store and the dashboard name it.
    pub fn as_str(self) -> &'static str {
        match self {
            HookHealth::Ok => "ok",
            HookHealth::TemporarilyDisabled { .. } => "temporarily_disabled",
            HookHealth::Disabled => "disabled",
        }
    }
}

/// One project hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectHook {
    pub id: i64,
    pub url: String,
    pub health: HookHealth,
}

#[derive(Deserialize)]
struct HookJson {
    id: i64,
    url: String,
    #[serde(default)]
    alert_status: Option<String>,
    #[serde(default)]
    disabled_until: Option<String>,
}

/// One MR note as the notes list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedNote {
    pub id: i64,
    pub body: String,
    pub author_id: i64,
    pub author_username: String,
    /// Unix ms; the list is read newest first by this.
    pub updated_at: i64,
    pub updated_at_text: String,
}

#[derive(Deserialize)]
struct NoteJson {
    id: i64,
    #[serde(default)]
    body: String,
    author: AuthorJson,
    #[serde(default)]
    system: bool,
    updated_at: String,
}

#[derive(Deserialize)]
struct AuthorJson {
    id: i64,
    username: String,
}

fn parse_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// At most this many pages of notes are read per MR in one pass.
const MAX_NOTE_PAGES: usize = 20;

impl GitlabRepo {
    /// The project's path (`group/name`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The project's webhooks with their health.
    pub async fn hooks(&self, now: i64) -> Result<Vec<ProjectHook>> {
        let uri = self.url("/hooks?per_page=100").await?;
        let hooks: Vec<HookJson> = self
            .client
            .get_all("listing project webhooks", &uri)
            .await?;
        Ok(hooks
            .into_iter()
            .map(|h| ProjectHook {
                health: HookHealth::from_api(
                    h.alert_status.as_deref(),
                    h.disabled_until.as_deref(),
                    now,
                ),
                id: h.id,
                url: h.url,
            })
            .collect())
    }

    /// Sends hook `id` a test push event; when graft answers it, GitLab
    /// re-enables the hook.
    pub async fn test_hook(&self, id: i64) -> Result<()> {
        self.call(
            "sending a test request to a project webhook",
            Method::POST,
            &format!("/hooks/{id}/test/push_events"),
            None,
        )
        .await
        .map(|_| ())
    }

    /// The non-system notes of MR `number` updated at or after `since`
    /// (Unix ms), newest first.
    pub async fn notes_since(&self, number: PrNumber, since: i64) -> Result<Vec<ListedNote>> {
        let first = self
            .url(&format!(
                "/merge_requests/{number}/notes?sort=desc&order_by=updated_at&per_page=100"
            ))
            .await?;
        let mut notes = Vec::new();
        self.client
            .each_page(
                "listing recent notes",
                &first,
                MAX_NOTE_PAGES,
                |page: Vec<NoteJson>| {
                    // Newest first: a note older than `since` ends the walk.
                    let mut reached = page.is_empty();
                    for note in page {
                        let Some(updated_at) = parse_ms(&note.updated_at) else {
                            continue;
                        };
                        if updated_at < since {
                            reached = true;
                            continue;
                        }
                        if note.system {
                            continue;
                        }
                        notes.push(ListedNote {
                            id: note.id,
                            body: note.body,
                            author_id: note.author.id,
                            author_username: note.author.username,
                            updated_at,
                            updated_at_text: note.updated_at,
                        });
                    }
                    !reached
                },
            )
            .await?;
        Ok(notes)
    }
}

#[cfg(test)]
mod tests {
    use super::HookHealth;

    #[test]
    fn hook_health_from_gitlab_fields() {
        // An hour before the backoff below ends.
        let now = 1_800_000_000_000 - 3_600_000;
        assert_eq!(
            HookHealth::from_api(Some("executable"), None, now),
            HookHealth::Ok
        );
        assert_eq!(HookHealth::from_api(None, None, now), HookHealth::Ok);
        assert_eq!(
            HookHealth::from_api(Some("disabled"), None, now),
            HookHealth::Disabled
        );
        let later = "2027-01-15T08:00:00Z";
        let until = chrono::DateTime::parse_from_rfc3339(later)
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            HookHealth::from_api(Some("temporarily_disabled"), Some(later), now),
            HookHealth::TemporarilyDisabled { until: Some(until) }
        );
        // A backoff already over is executable again.
        assert_eq!(
            HookHealth::from_api(Some("temporarily_disabled"), Some(later), until + 1),
            HookHealth::Ok
        );
    }
}
