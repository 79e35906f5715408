//! graft's own view of what happened on a forge, independent of either
//! forge's payload types. Webhook intake parses payloads into these; the
//! rest of graft never sees forge JSON.

pub mod github;
pub mod gitlab;

use serde::{Deserialize, Serialize};

use crate::ids::PrNumber;
pub use crate::ids::Provider;

/// Which repository an event is about: GitHub `owner/name`, GitLab
/// `group/sub/name`, plus the forge's numeric id where it sends one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRef {
    pub path: String,
    pub id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub login: String,
    pub id: Option<i64>,
    pub is_bot: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushEvent {
    pub repo: RepoRef,
    /// Branch name without `refs/heads/`; `None` for tags.
    pub branch: Option<String>,
    pub before: String,
    pub after: String,
    /// Paths the forge says changed (a hint only: forges truncate the list,
    /// reconciliation diffs the commits itself).
    pub changed_paths: Vec<String>,
    pub deleted: bool,
    pub pusher: Option<Actor>,
    /// Whether the push rewrote the branch (`before` is not an ancestor of
    /// `after`), as the forge says; `None` when the forge does not say
    /// (GitLab's push hook has no such field).
    #[serde(default)]
    pub forced: Option<bool>,
    /// How many commits the forge listed for the push.
    #[serde(default)]
    pub commit_count: usize,
    /// Whether `changed_paths` holds every path of every commit of the
    /// push: the forge listed all the commits and all the files of each.
    #[serde(default)]
    pub paths_complete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullRequestAction {
    Opened,
    Reopened,
    Synchronize,
    Closed,
    Merged,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestEvent {
    pub repo: RepoRef,
    pub action: PullRequestAction,
    pub number: PrNumber,
    pub head_branch: String,
    pub head_sha: Option<String>,
    pub base_branch: String,
    pub merge_commit_sha: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommentAction {
    Created,
    Edited,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentEvent {
    pub repo: RepoRef,
    pub action: CommentAction,
    /// PR / MR number (GitLab `iid`), or the issue number on GitHub.
    pub number: PrNumber,
    /// Whether the comment is on a pull/merge request (not a plain issue).
    pub on_pull_request: bool,
    pub comment_id: i64,
    pub body: String,
    /// The text before an edit, when the forge sends it.
    pub previous_body: Option<String>,
    /// When this version of the comment was written (the forge's
    /// `updated_at`): tells a later edit from a redelivery of an earlier one.
    #[serde(default)]
    pub updated_at: Option<String>,
    pub author: Actor,
    /// Who made this edit, when someone other than the author did (GitHub:
    /// the `sender`; GitLab: `updated_by_id`, which names the user by id
    /// only, so `login` is empty until the command job looks it up).
    #[serde(default)]
    pub editor: Option<Actor>,
}

impl CommentEvent {
    /// The person who caused this event: the editor of an edit, else the
    /// author. Permission checks and the audit log name this person.
    pub fn actor(&self) -> &Actor {
        self.editor.as_ref().unwrap_or(&self.author)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallationAction {
    Created,
    Deleted,
    Suspended,
    Unsuspended,
    RepositoriesAdded,
    RepositoriesRemoved,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationEvent {
    pub action: InstallationAction,
    pub installation_id: i64,
    pub account: String,
    pub repositories_added: Vec<String>,
    pub repositories_removed: Vec<String>,
}

/// Everything graft reacts to. Anything else is acknowledged and ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ForgeEvent {
    Ping,
    Push(PushEvent),
    PullRequest(PullRequestEvent),
    Comment(CommentEvent),
    Installation(InstallationEvent),
}

impl ForgeEvent {
    pub fn kind(&self) -> &'static str {
        match self {
            ForgeEvent::Ping => "ping",
            ForgeEvent::Push(_) => "push",
            ForgeEvent::PullRequest(_) => "pull_request",
            ForgeEvent::Comment(_) => "comment",
            ForgeEvent::Installation(_) => "installation",
        }
    }

    /// The action as stored with the delivery, for the record.
    pub fn action(&self) -> Option<&'static str> {
        match self {
            ForgeEvent::Ping | ForgeEvent::Push(_) => None,
            ForgeEvent::PullRequest(pr) => Some(match pr.action {
                PullRequestAction::Opened => "opened",
                PullRequestAction::Reopened => "reopened",
                PullRequestAction::Synchronize => "synchronize",
                PullRequestAction::Closed => "closed",
                PullRequestAction::Merged => "merged",
            }),
            ForgeEvent::Comment(c) => Some(match c.action {
                CommentAction::Created => "created",
                CommentAction::Edited => "edited",
            }),
            ForgeEvent::Installation(i) => Some(match i.action {
                InstallationAction::Created => "created",
                InstallationAction::Deleted => "deleted",
                InstallationAction::Suspended => "suspend",
                InstallationAction::Unsuspended => "unsuspend",
                InstallationAction::RepositoriesAdded => "added",
                InstallationAction::RepositoriesRemoved => "removed",
            }),
        }
    }
}

/// The outcome of parsing one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Event(Box<ForgeEvent>),
    /// A well-formed delivery of an event or action graft does not act on.
    Ignored {
        reason: String,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("payload does not have the shape of a `{event}` event: {message}")]
    WrongShape { event: String, message: String },
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    event: &str,
    value: serde_json::Value,
) -> Result<T, ParseError> {
    serde_json::from_value(value).map_err(|e| ParseError::WrongShape {
        event: event.to_string(),
        message: e.to_string(),
    })
}

pub(crate) fn parse_json(body: &[u8]) -> Result<serde_json::Value, ParseError> {
    serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))
}
