//! GitLab's answers and names, read into graft's types.

use serde::Deserialize;

use crate::forge::{Permission, PullRequest, PullRequestState, Reaction};
use crate::ids::PrNumber;

/// GitLab access level → graft's level: Guest(10), Planner(15) and
/// Reporter(20) can read; Developer(30) and Maintainer(40) can write (so
/// Developer and up may run commands); Owner(50) is admin. No access (0) and
/// Minimal access (5) are none.
pub fn permission_from_access_level(level: i64) -> Permission {
    match level {
        i64::MIN..=9 => Permission::None,
        10..=29 => Permission::Read,
        30..=49 => Permission::Write,
        _ => Permission::Admin,
    }
}

pub fn award_name(reaction: Reaction) -> &'static str {
    match reaction {
        Reaction::Eyes => "eyes",
        Reaction::ThumbsUp => "thumbsup",
        Reaction::ThumbsDown => "thumbsdown",
        Reaction::Confused => "confused",
        Reaction::Rocket => "rocket",
        Reaction::Heart => "heart",
        Reaction::Hooray => "tada",
        Reaction::Laugh => "laughing",
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct ProjectJson {
    pub(super) id: i64,
    #[serde(default)]
    pub(super) default_branch: Option<String>,
    pub(super) http_url_to_repo: String,
    pub(super) web_url: String,
}

#[derive(Deserialize)]
pub(super) struct BranchJson {
    pub(super) commit: CommitJson,
}

#[derive(Deserialize)]
pub(super) struct CommitJson {
    pub(super) id: String,
    /// Read from the commits API's answer (the lease check).
    #[serde(default)]
    pub(super) parent_ids: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct MergeRequestJson {
    pub(super) iid: PrNumber,
    pub(super) web_url: String,
    #[serde(default)]
    pub(super) title: String,
    pub(super) state: String,
    pub(super) source_branch: String,
    pub(super) target_branch: String,
    #[serde(default)]
    pub(super) sha: Option<String>,
    #[serde(default)]
    pub(super) merge_commit_sha: Option<String>,
}

impl From<MergeRequestJson> for PullRequest {
    fn from(mr: MergeRequestJson) -> Self {
        PullRequest {
            number: mr.iid,
            url: mr.web_url,
            title: mr.title,
            head_branch: mr.source_branch,
            base_branch: mr.target_branch,
            head_sha: mr.sha.unwrap_or_default(),
            state: match mr.state.as_str() {
                "opened" | "locked" => PullRequestState::Open,
                "merged" => PullRequestState::Merged,
                _ => PullRequestState::Closed,
            },
            merge_commit_sha: mr.merge_commit_sha.filter(|_| mr.state == "merged"),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct NoteJson {
    pub(super) id: i64,
    #[serde(default)]
    pub(super) body: String,
    pub(super) author: Option<AuthorJson>,
}

#[derive(Deserialize)]
pub(super) struct AuthorJson {
    pub(super) username: String,
}

/// One note as `GET …/merge_requests/:iid/notes/:id` returns it.
#[derive(Deserialize)]
pub(super) struct SingleNoteJson {
    pub(super) id: i64,
    #[serde(default)]
    pub(super) body: String,
    pub(super) author: UserRefJson,
    #[serde(default)]
    pub(super) system: bool,
    #[serde(default)]
    pub(super) project_id: Option<i64>,
    #[serde(default)]
    pub(super) noteable_type: Option<String>,
    #[serde(default)]
    pub(super) noteable_iid: Option<PrNumber>,
    #[serde(default)]
    pub(super) created_at: Option<String>,
    #[serde(default)]
    pub(super) updated_at: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct UserRefJson {
    pub(super) id: i64,
    pub(super) username: String,
}

/// A merge request note as GitLab stores it: what graft believes about a
/// comment, whatever a webhook said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNote {
    pub id: i64,
    pub body: String,
    pub author_id: i64,
    pub author: String,
    pub system: bool,
    pub project_id: Option<i64>,
    pub noteable_type: Option<String>,
    pub noteable_iid: Option<PrNumber>,
    /// When the note was written and last edited, as GitLab says.
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl From<SingleNoteJson> for StoredNote {
    fn from(note: SingleNoteJson) -> Self {
        StoredNote {
            id: note.id,
            body: note.body,
            author_id: note.author.id,
            author: note.author.username,
            system: note.system,
            project_id: note.project_id,
            noteable_type: note.noteable_type,
            noteable_iid: note.noteable_iid,
            created_at: note.created_at,
            updated_at: note.updated_at,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct AwardJson {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) user: Option<AuthorJson>,
}

#[derive(Deserialize)]
pub(super) struct MemberJson {
    pub(super) access_level: i64,
}

#[derive(Deserialize)]
pub(super) struct UserJson {
    pub(super) id: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_access_level_maps() {
        let cases = [
            (0, Permission::None),
            (5, Permission::None),
            (10, Permission::Read),
            (15, Permission::Read),
            (20, Permission::Read),
            (30, Permission::Write),
            (40, Permission::Write),
            (50, Permission::Admin),
            (60, Permission::Admin),
            (-1, Permission::None),
        ];
        for (level, expected) in cases {
            assert_eq!(permission_from_access_level(level), expected, "{level}");
        }
    }
}
