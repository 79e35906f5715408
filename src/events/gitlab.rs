//! GitLab webhook payloads → [`ForgeEvent`]. GitLab names the event in the
//! `X-Gitlab-Event` header and again in `object_kind`; the body decides.

use serde::Deserialize;

use crate::ids::PrNumber;

use super::{
    Actor, CommentAction, CommentEvent, ForgeEvent, ParseError, Parsed, PullRequestAction,
    PullRequestEvent, PushEvent, RepoRef, from_json, parse_json,
};

#[derive(Deserialize)]
struct Project {
    id: Option<i64>,
    path_with_namespace: String,
}

impl From<Project> for RepoRef {
    fn from(project: Project) -> Self {
        RepoRef {
            path: project.path_with_namespace,
            id: project.id,
        }
    }
}

#[derive(Deserialize)]
struct User {
    id: Option<i64>,
    username: String,
}

/// GitLab's own bot users, by the usernames GitLab gives them: project and
/// group access tokens (`project_42_bot`, `group_7_bot_3f2a…`) and service
/// accounts (`service_account_…`). Hook payloads carry no bot flag.
pub fn is_bot_username(username: &str) -> bool {
    if username.starts_with("service_account_") {
        return true;
    }
    let mut parts = username.split('_');
    matches!(parts.next(), Some("project" | "group"))
        && parts
            .next()
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        && parts.next() == Some("bot")
}

impl From<User> for Actor {
    fn from(user: User) -> Self {
        Actor {
            is_bot: is_bot_username(&user.username),
            login: user.username,
            id: user.id,
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
    project: Project,
    #[serde(default)]
    commits: Vec<Commit>,
    user_id: Option<i64>,
    user_username: Option<String>,
    /// How many commits the push has; `commits` lists at most 20.
    total_commits_count: Option<usize>,
    /// Not in GitLab's documented payload; honoured if it is sent.
    forced: Option<bool>,
}

/// Per commit, GitLab's diffs stop at this many files by default: a list
/// this long may have been cut (conservative: it only costs a reconcile).
const MAX_LISTED_FILES: usize = 1000;

impl Commit {
    fn path_count(&self) -> usize {
        self.added.len() + self.modified.len() + self.removed.len()
    }
}

#[derive(Deserialize)]
struct LastCommit {
    id: String,
}

#[derive(Deserialize)]
struct MergeRequestAttributes {
    iid: PrNumber,
    source_branch: String,
    target_branch: String,
    action: Option<String>,
    last_commit: Option<LastCommit>,
    merge_commit_sha: Option<String>,
    /// Set only when the update pushed new commits.
    oldrev: Option<String>,
}

#[derive(Deserialize)]
struct MergeRequestPayload {
    project: Project,
    object_attributes: MergeRequestAttributes,
}

#[derive(Deserialize)]
struct NoteAttributes {
    id: i64,
    #[serde(default)]
    note: String,
    noteable_type: String,
    action: Option<String>,
    #[serde(default)]
    system: bool,
    updated_at: Option<String>,
    /// Who last edited the note. The hook's `user` is the note's author
    /// even for an edit, so this is the only word on the editor.
    updated_by_id: Option<i64>,
}

#[derive(Deserialize)]
struct NoteTarget {
    iid: PrNumber,
}

#[derive(Deserialize)]
struct NotePayload {
    user: User,
    project: Project,
    object_attributes: NoteAttributes,
    merge_request: Option<NoteTarget>,
    issue: Option<NoteTarget>,
}

#[derive(Deserialize)]
struct KindOnly {
    object_kind: String,
}

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

fn ignored(reason: impl Into<String>) -> Parsed {
    Parsed::Ignored {
        reason: reason.into(),
    }
}

/// Parses a delivery given its `X-Gitlab-Event` header and raw body.
pub fn parse(event_header: &str, body: &[u8]) -> Result<Parsed, ParseError> {
    let value = parse_json(body)?;
    let kind: KindOnly = from_json(event_header, value.clone())?;
    let parsed = match kind.object_kind.as_str() {
        "push" => {
            let push: Push = from_json(event_header, value)?;
            let commit_count = push.commits.len();
            let paths_complete = push.total_commits_count == Some(commit_count)
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
                repo: push.project.into(),
                branch: push.git_ref.strip_prefix("refs/heads/").map(str::to_string),
                deleted: push.after == ZERO_SHA,
                before: push.before,
                after: push.after,
                changed_paths,
                pusher: push.user_username.map(|login| Actor {
                    is_bot: is_bot_username(&login),
                    login,
                    id: push.user_id,
                }),
                forced: push.forced,
                commit_count,
                paths_complete,
            })
        }
        "merge_request" => {
            let payload: MergeRequestPayload = from_json(event_header, value)?;
            let attrs = payload.object_attributes;
            let action = match attrs.action.as_deref() {
                Some("open") => PullRequestAction::Opened,
                Some("reopen") => PullRequestAction::Reopened,
                Some("update") if attrs.oldrev.is_some() => PullRequestAction::Synchronize,
                Some("close") => PullRequestAction::Closed,
                Some("merge") => PullRequestAction::Merged,
                other => {
                    return Ok(ignored(format!(
                        "merge_request action `{}`",
                        other.unwrap_or("(none)")
                    )));
                }
            };
            ForgeEvent::PullRequest(PullRequestEvent {
                repo: payload.project.into(),
                action,
                number: attrs.iid,
                head_branch: attrs.source_branch,
                head_sha: attrs.last_commit.map(|c| c.id),
                base_branch: attrs.target_branch,
                merge_commit_sha: attrs
                    .merge_commit_sha
                    .filter(|_| action == PullRequestAction::Merged),
            })
        }
        "note" => {
            let payload: NotePayload = from_json(event_header, value)?;
            let attrs = payload.object_attributes;
            if attrs.system {
                return Ok(ignored("system note"));
            }
            let action = match attrs.action.as_deref() {
                None | Some("create") => CommentAction::Created,
                Some("update") => CommentAction::Edited,
                Some(other) => return Ok(ignored(format!("note action `{other}`"))),
            };
            let (number, on_pull_request) = match attrs.noteable_type.as_str() {
                "MergeRequest" => match payload.merge_request {
                    Some(mr) => (mr.iid, true),
                    None => {
                        return Err(ParseError::WrongShape {
                            event: event_header.to_string(),
                            message: "note on a MergeRequest without `merge_request`".into(),
                        });
                    }
                },
                "Issue" => match payload.issue {
                    Some(issue) => (issue.iid, false),
                    None => return Ok(ignored("note on an issue without `issue`")),
                },
                other => return Ok(ignored(format!("note on a {other}"))),
            };
            // Named by id only; the command job looks the username up.
            let editor = attrs
                .updated_by_id
                .filter(|id| Some(*id) != payload.user.id)
                .map(|id| Actor {
                    login: String::new(),
                    id: Some(id),
                    is_bot: false,
                });
            ForgeEvent::Comment(CommentEvent {
                repo: payload.project.into(),
                action,
                number,
                on_pull_request,
                comment_id: attrs.id,
                body: attrs.note,
                previous_body: None,
                updated_at: attrs.updated_at,
                author: payload.user.into(),
                editor,
            })
        }
        other => {
            return Ok(ignored(format!(
                "object_kind `{other}` is not used by graft"
            )));
        }
    };
    Ok(Parsed::Event(Box::new(parsed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note_hook(updated_by_id: serde_json::Value) -> Vec<u8> {
        serde_json::json!({
            "object_kind": "note",
            "user": {"id": 7, "username": "dev"},
            "project": {"id": 11, "path_with_namespace": "group/app"},
            "object_attributes": {"id": 90, "note": "/graft pause", "noteable_type": "MergeRequest",
                                  "action": "update", "author_id": 7,
                                  "updated_by_id": updated_by_id},
            "merge_request": {"iid": 4},
        })
        .to_string()
        .into_bytes()
    }

    fn comment(body: &[u8]) -> CommentEvent {
        match parse("Note Hook", body) {
            Ok(Parsed::Event(event)) => match *event {
                ForgeEvent::Comment(comment) => comment,
                other => panic!("not a comment: {other:?}"),
            },
            other => panic!("not parsed: {other:?}"),
        }
    }

    #[test]
    fn an_edit_by_someone_else_names_the_editor_by_id() {
        // The hook's `user` is the note's author even for an edit.
        let edited = comment(&note_hook(8.into()));
        assert_eq!(edited.author.login, "dev");
        let editor = edited.editor.clone().expect("an editor");
        assert_eq!((editor.login.as_str(), editor.id), ("", Some(8)));
        assert_eq!(edited.actor().id, Some(8));
        // The author's own edit, and a note never edited, have none.
        for own in [7.into(), serde_json::Value::Null] {
            let c = comment(&note_hook(own));
            assert_eq!(c.editor, None);
            assert_eq!(c.actor().login, "dev");
        }
    }
}
