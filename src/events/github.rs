//! GitHub webhook payloads → [`ForgeEvent`]. Only the fields graft uses are
//! declared; serde ignores the rest, and a missing required field is a
//! shape error naming it.

use serde::Deserialize;

use crate::ids::PrNumber;

use super::{
    Actor, CommentAction, CommentEvent, ForgeEvent, InstallationAction, InstallationEvent,
    ParseError, Parsed, PullRequestAction, PullRequestEvent, PushEvent, RepoRef, from_json,
    parse_json,
};

#[derive(Deserialize)]
struct Repository {
    id: Option<i64>,
    full_name: String,
}

impl From<Repository> for RepoRef {
    fn from(repo: Repository) -> Self {
        RepoRef {
            path: repo.full_name,
            id: repo.id,
        }
    }
}

#[derive(Deserialize)]
struct User {
    login: String,
    id: Option<i64>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

impl From<User> for Actor {
    fn from(user: User) -> Self {
        let is_bot = user.kind.as_deref() == Some("Bot") || user.login.ends_with("[bot]");
        Actor {
            login: user.login,
            id: user.id,
            is_bot,
        }
    }
}

#[derive(Deserialize)]
struct Commit {
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
}

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    repository: Repository,
    #[serde(default)]
    commits: Vec<Commit>,
    #[serde(default)]
    deleted: bool,
    forced: Option<bool>,
    sender: Option<User>,
}

/// GitHub lists at most this many commits in a push webhook...
const MAX_LISTED_COMMITS: usize = 2048;
/// ...and at most this many changed files per commit.
const MAX_LISTED_FILES: usize = 3000;

impl Commit {
    fn path_count(&self) -> usize {
        self.added.len() + self.modified.len() + self.removed.len()
    }
}

#[derive(Deserialize)]
struct BranchRef {
    #[serde(rename = "ref")]
    name: String,
    sha: Option<String>,
}

#[derive(Deserialize)]
struct PullRequest {
    number: PrNumber,
    head: BranchRef,
    base: BranchRef,
    #[serde(default)]
    merged: bool,
    merge_commit_sha: Option<String>,
}

#[derive(Deserialize)]
struct PullRequestPayload {
    action: String,
    pull_request: PullRequest,
    repository: Repository,
}

#[derive(Deserialize)]
struct Issue {
    number: PrNumber,
    pull_request: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Comment {
    id: i64,
    #[serde(default)]
    body: String,
    user: User,
    updated_at: Option<String>,
}

#[derive(Deserialize)]
struct BodyChange {
    from: String,
}

#[derive(Deserialize)]
struct Changes {
    body: Option<BodyChange>,
}

#[derive(Deserialize)]
struct IssueCommentPayload {
    issue: Issue,
    comment: Comment,
    repository: Repository,
    changes: Option<Changes>,
    /// Who acted: for `edited`, the editor, who may not be the author.
    sender: Option<User>,
}

#[derive(Deserialize)]
struct Account {
    login: String,
}

#[derive(Deserialize)]
struct Installation {
    id: i64,
    account: Account,
}

#[derive(Deserialize)]
struct RepoName {
    full_name: String,
}

#[derive(Deserialize)]
struct InstallationPayload {
    action: String,
    installation: Installation,
    #[serde(default)]
    repositories: Option<Vec<RepoName>>,
    #[serde(default)]
    repositories_added: Vec<RepoName>,
    #[serde(default)]
    repositories_removed: Vec<RepoName>,
}

/// The action field alone, to tell ignored actions apart before the full parse.
#[derive(Deserialize)]
struct ActionOnly {
    action: String,
}

fn ignored(reason: impl Into<String>) -> Parsed {
    Parsed::Ignored {
        reason: reason.into(),
    }
}

fn names(repos: Vec<RepoName>) -> Vec<String> {
    repos.into_iter().map(|r| r.full_name).collect()
}

/// Parses a delivery given its `X-GitHub-Event` header and raw body.
pub fn parse(event: &str, body: &[u8]) -> Result<Parsed, ParseError> {
    let value = parse_json(body)?;
    let parsed = match event {
        "ping" => ForgeEvent::Ping,
        "push" => {
            let push: Push = from_json(event, value)?;
            // A list at a limit may have been cut there.
            let commit_count = push.commits.len();
            let paths_complete = commit_count < MAX_LISTED_COMMITS
                && push
                    .commits
                    .iter()
                    .all(|c| c.path_count() < MAX_LISTED_FILES);
            let mut changed_paths: Vec<String> = push
                .commits
                .into_iter()
                .flat_map(|c| c.added.into_iter().chain(c.modified).chain(c.removed))
                .collect();
            changed_paths.sort();
            changed_paths.dedup();
            ForgeEvent::Push(PushEvent {
                repo: push.repository.into(),
                branch: push.git_ref.strip_prefix("refs/heads/").map(str::to_string),
                before: push.before,
                after: push.after,
                changed_paths,
                deleted: push.deleted,
                pusher: push.sender.map(Actor::from),
                // GitHub always says; a payload that does not is not
                // taken for a fast-forward.
                forced: Some(push.forced.unwrap_or(true)),
                commit_count,
                paths_complete,
            })
        }
        "pull_request" => {
            let action: ActionOnly = from_json(event, value.clone())?;
            if !matches!(
                action.action.as_str(),
                "opened" | "reopened" | "synchronize" | "closed"
            ) {
                return Ok(ignored(format!("pull_request action `{}`", action.action)));
            }
            let payload: PullRequestPayload = from_json(event, value)?;
            let pr = payload.pull_request;
            let action = match payload.action.as_str() {
                "opened" => PullRequestAction::Opened,
                "reopened" => PullRequestAction::Reopened,
                "synchronize" => PullRequestAction::Synchronize,
                _ if pr.merged => PullRequestAction::Merged,
                _ => PullRequestAction::Closed,
            };
            ForgeEvent::PullRequest(PullRequestEvent {
                repo: payload.repository.into(),
                action,
                number: pr.number,
                head_branch: pr.head.name,
                head_sha: pr.head.sha,
                base_branch: pr.base.name,
                merge_commit_sha: pr.merge_commit_sha.filter(|_| pr.merged),
            })
        }
        "issue_comment" => {
            let action: ActionOnly = from_json(event, value.clone())?;
            let action = match action.action.as_str() {
                "created" => CommentAction::Created,
                "edited" => CommentAction::Edited,
                other => return Ok(ignored(format!("issue_comment action `{other}`"))),
            };
            let payload: IssueCommentPayload = from_json(event, value)?;
            let editor = payload
                .sender
                .filter(|s| {
                    action == CommentAction::Edited && s.login != payload.comment.user.login
                })
                .map(Actor::from);
            ForgeEvent::Comment(CommentEvent {
                repo: payload.repository.into(),
                action,
                number: payload.issue.number,
                on_pull_request: payload.issue.pull_request.is_some(),
                comment_id: payload.comment.id,
                body: payload.comment.body,
                previous_body: payload.changes.and_then(|c| c.body).map(|b| b.from),
                updated_at: payload.comment.updated_at,
                author: payload.comment.user.into(),
                editor,
            })
        }
        "installation" | "installation_repositories" => {
            let payload: InstallationPayload = from_json(event, value)?;
            let action = match (event, payload.action.as_str()) {
                ("installation", "created") => InstallationAction::Created,
                ("installation", "deleted") => InstallationAction::Deleted,
                ("installation", "suspend") => InstallationAction::Suspended,
                ("installation", "unsuspend") => InstallationAction::Unsuspended,
                ("installation_repositories", "added") => InstallationAction::RepositoriesAdded,
                ("installation_repositories", "removed") => InstallationAction::RepositoriesRemoved,
                (_, other) => return Ok(ignored(format!("{event} action `{other}`"))),
            };
            let mut added = names(payload.repositories_added);
            if action == InstallationAction::Created {
                added.extend(names(payload.repositories.unwrap_or_default()));
            }
            ForgeEvent::Installation(InstallationEvent {
                action,
                installation_id: payload.installation.id,
                account: payload.installation.account.login,
                repositories_added: added,
                repositories_removed: names(payload.repositories_removed),
            })
        }
        other => return Ok(ignored(format!("event `{other}` is not used by graft"))),
    };
    Ok(Parsed::Event(Box::new(parsed)))
}
