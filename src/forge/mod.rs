//! Forges: one client per forge behind one small interface the sync engine
//! uses. [`RepoClient`] is scoped to one repository and dispatches to the
//! GitHub App client or the GitLab client; [`Forges`] makes them.
//!
//! Every call goes through one retry policy ([`retry`]) and maps failures
//! to graft's failure classes ([`ForgeError`]). Tokens stay in
//! `SecretString`s and are never logged or put into errors.

pub mod error;
pub mod forges;
pub mod github;
pub mod gitlab;
pub mod http;
mod pages;
pub mod retry;
pub mod sticky;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

pub use error::{ForgeError, ForgeKind};
pub use forges::{ForgeSettings, Forges, GithubAppSource, GitlabConfig};
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
    pub number: i64,
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

/// A client for one repository on one forge.
#[derive(Debug, Clone)]
pub enum RepoClient {
    Github(github::GithubRepo),
    Gitlab(gitlab::GitlabRepo),
}

macro_rules! dispatch {
    ($self:ident, $client:ident => $call:expr) => {
        match $self {
            RepoClient::Github($client) => $call,
            RepoClient::Gitlab($client) => $call,
        }
    };
}

impl RepoClient {
    pub fn forge(&self) -> ForgeKind {
        match self {
            RepoClient::Github(_) => ForgeKind::Github,
            RepoClient::Gitlab(_) => ForgeKind::Gitlab,
        }
    }

    pub async fn repo_info(&self) -> Result<RepoInfo> {
        dispatch!(self, c => c.repo_info().await)
    }

    /// The head SHA of `branch`, or `None` when the branch does not exist.
    pub async fn branch_head(&self, branch: &str) -> Result<Option<String>> {
        dispatch!(self, c => c.branch_head(branch).await)
    }

    /// The open PR/MR whose head is `head_branch` in this repository.
    pub async fn find_open_pull_request(&self, head_branch: &str) -> Result<Option<PullRequest>> {
        dispatch!(self, c => c.find_open_pull_request(head_branch).await)
    }

    pub async fn pull_request(&self, number: i64) -> Result<PullRequest> {
        dispatch!(self, c => c.pull_request(number).await)
    }

    pub async fn open_pull_request(&self, new: &NewPullRequest) -> Result<PullRequest> {
        dispatch!(self, c => c.open_pull_request(new).await)
    }

    pub async fn update_pull_request(
        &self,
        number: i64,
        update: &PullRequestUpdate,
    ) -> Result<PullRequest> {
        dispatch!(self, c => c.update_pull_request(number, update).await)
    }

    pub async fn close_pull_request(&self, number: i64) -> Result<()> {
        dispatch!(self, c => c.close_pull_request(number).await)
    }

    /// Asks the forge to merge PR `number` once its checks pass, only as
    /// long as its head is `expected_head` (graft's own commit): the forge
    /// is told the SHA too, so a push landing in between merges nothing.
    pub async fn enable_auto_merge(&self, number: i64, expected_head: &str) -> Result<AutoMerge> {
        dispatch!(self, c => c.enable_auto_merge(number, expected_head).await)
    }

    pub async fn disable_auto_merge(&self, number: i64) -> Result<()> {
        dispatch!(self, c => c.disable_auto_merge(number).await)
    }

    /// Edits graft's status comment (found by [`STATUS_MARKER`]) in place,
    /// or creates it. The marker is added to `body` if missing.
    pub async fn upsert_status_comment(&self, number: i64, body: &str) -> Result<CommentRef> {
        dispatch!(self, c => c.upsert_status_comment(number, body).await)
    }

    pub async fn reply(&self, number: i64, body: &str) -> Result<CommentRef> {
        dispatch!(self, c => c.reply(number, body).await)
    }

    /// Reacts to comment `comment_id` on PR/MR `number`.
    pub async fn react(&self, number: i64, comment_id: i64, reaction: Reaction) -> Result<()> {
        dispatch!(self, c => c.react(number, comment_id, reaction).await)
    }

    /// Takes back graft's own `reaction` on comment `comment_id`.
    pub async fn unreact(&self, number: i64, comment_id: i64, reaction: Reaction) -> Result<()> {
        dispatch!(self, c => c.unreact(number, comment_id, reaction).await)
    }

    pub async fn report_check(&self, report: &CheckReport) -> Result<()> {
        dispatch!(self, c => c.report_check(report).await)
    }

    pub async fn permission(&self, user: &UserRef) -> Result<Permission> {
        dispatch!(self, c => c.permission(user).await)
    }

    pub async fn git_credentials(&self) -> Result<GitCredentials> {
        dispatch!(self, c => c.git_credentials().await)
    }
}

/// Installs the process-wide rustls crypto provider (aws-lc-rs) once.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another part of the process installed one first: fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

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
