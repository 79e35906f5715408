//! Forges: one client per forge behind one small interface the sync engine
//! uses. [`RepoForge`] is that interface, scoped to one repository: the
//! GitHub App client and the GitLab client implement its primitive calls,
//! and what graft builds from them is written once in the trait. [`Forges`]
//! makes the clients ([`RepoClient`]).
//!
//! Every call goes through one retry policy ([`retry`]) and maps failures
//! to graft's failure classes ([`ForgeError`]). Tokens stay in
//! `SecretString`s and are never logged or put into errors.

pub mod body;
pub mod browse;
pub mod commit_api;
pub mod error;
pub mod forges;
pub mod github;
pub mod gitlab;
pub mod http;
mod pages;
pub mod repo;
pub mod retry;
pub mod sticky;

use std::sync::Arc;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

use crate::ids::PrNumber;

pub use error::{ForgeError, ForgeKind};
pub use forges::{ForgeSettings, Forges, GithubAppSource, GitlabConfig};
pub use repo::{ReactionInfo, RepoForge};
pub use sticky::STATUS_MARKER;

pub type Result<T, E = ForgeError> = std::result::Result<T, E>;

/// A user's access to a repository in graft's own terms. Ordered, so
/// `permission >= Permission::Write` is the check for commands that change
/// anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    None,
    Read,
    Write,
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    pub default_branch: String,
    /// HTTPS URL for git (`clone_url` / `http_url_to_repo`).
    pub clone_url: String,
    pub web_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullRequestState {
    Open,
    Closed,
    Merged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// GitHub number / GitLab `iid`.
    pub number: PrNumber,
    pub url: String,
    pub title: String,
    pub head_branch: String,
    pub base_branch: String,
    pub head_sha: String,
    pub state: PullRequestState,
    /// The commit the merge made, once merged.
    pub merge_commit_sha: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPullRequest {
    pub head_branch: String,
    pub base_branch: String,
    pub title: String,
    pub body: String,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullRequestUpdate {
    pub title: Option<String>,
    pub body: Option<String>,
    pub base_branch: Option<String>,
}

impl PullRequestUpdate {
    /// The fields to change as a JSON body, under the forge's names for
    /// the title, the description and the base branch.
    pub(crate) fn body_as(&self, [title, text, base]: [&str; 3]) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        for (name, value) in [
            (title, &self.title),
            (text, &self.body),
            (base, &self.base_branch),
        ] {
            if let Some(value) = value {
                body.insert(name.to_string(), value.clone().into());
            }
        }
        serde_json::Value::Object(body)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoMerge {
    /// The forge will merge once checks pass.
    Enabled,
    /// Nothing was pending, so it merged right away.
    Merged,
    /// The PR's head is not the commit graft expected (someone pushed
    /// after graft): nothing was enabled or merged.
    HeadMoved { head: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckConclusion {
    Pending,
    Success,
    Failure,
    Neutral,
}

/// A check run (GitHub, name `graft`) / commit status (GitLab).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub sha: String,
    pub conclusion: CheckConclusion,
    pub title: String,
    pub summary: String,
    pub details_url: Option<String>,
}

pub const CHECK_NAME: &str = "graft";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    Eyes,
    ThumbsUp,
    ThumbsDown,
    Confused,
    Rocket,
    Heart,
    Hooray,
    Laugh,
}

/// A comment graft wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentRef {
    pub id: i64,
    pub url: Option<String>,
}

/// Credentials for git over HTTPS. The engine sends them as an
/// `http.extraHeader`, never in a URL.
#[derive(Clone)]
pub struct GitCredentials {
    pub username: String,
    pub token: SecretString,
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredentials")
            .field("username", &self.username)
            .field("token", &"[redacted]")
            .finish()
    }
}

impl GitCredentials {
    /// `Authorization: Basic base64(username:token)`, the header value git needs.
    pub fn authorization_header(&self) -> SecretString {
        let pair = format!("{}:{}", self.username, self.token.expose_secret());
        SecretString::from(format!(
            "Authorization: Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        ))
    }
}

/// The user whose permission is asked: the login, and the forge's numeric
/// id when the event carried it (GitLab looks members up by id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub login: String,
    pub id: Option<i64>,
}

/// A client for one repository on one forge, shared by the tasks working
/// on it.
pub type RepoClient = Arc<dyn RepoForge>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_are_ordered() {
        assert!(Permission::Admin > Permission::Write);
        assert!(Permission::Write > Permission::Read);
        assert!(Permission::Read > Permission::None);
    }

    #[test]
    fn an_update_sends_only_what_changes_under_the_forges_names() {
        let update = PullRequestUpdate {
            title: Some("t".into()),
            body: None,
            base_branch: Some("main".into()),
        };
        assert_eq!(
            update.body_as(["title", "description", "target_branch"]),
            serde_json::json!({"title": "t", "target_branch": "main"})
        );
        assert_eq!(
            PullRequestUpdate::default().body_as(["a", "b", "c"]),
            serde_json::json!({})
        );
    }

    #[test]
    fn git_credentials_make_a_basic_header_and_hide_the_token() {
        let credentials = GitCredentials {
            username: "x-access-token".into(),
            token: SecretString::from("ghs_secret".to_string()),
        };
        assert_eq!(
            credentials.authorization_header().expose_secret(),
            "Authorization: Basic eC1hY2Nlc3MtdG9rZW46Z2hzX3NlY3JldA=="
        );
        assert!(!format!("{credentials:?}").contains("ghs_secret"));
    }
}
