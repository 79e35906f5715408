//! GitHub's answers and names, read into graft's types: graft's own small
//! structs rather than octocrab's models, which reject some real responses
//! and would tie graft to every field GitHub adds.

use serde::Deserialize;
use serde_json::Value;

use crate::forge::{Permission, PullRequest, PullRequestState, Reaction};
use crate::ids::PrNumber;

/// GitHub's collaborator role → graft's level. `maintain` may run
/// commands but is not an admin, so it maps to Write; `triage`
/// cannot push, so it is Read. Custom roles fall back to the base
/// `permission` field.
pub fn permission_from_github(role_name: Option<&str>, permission: &str) -> Permission {
    let level = |name: &str| match name {
        "admin" => Some(Permission::Admin),
        "maintain" | "write" => Some(Permission::Write),
        "triage" | "read" => Some(Permission::Read),
        "none" => Some(Permission::None),
        _ => None,
    };
    role_name
        .and_then(level)
        .or_else(|| level(permission))
        .unwrap_or(Permission::None)
}

#[derive(Deserialize)]
pub(super) struct RepoJson {
    pub(super) default_branch: String,
    pub(super) clone_url: String,
    pub(super) html_url: String,
}

#[derive(Deserialize)]
pub(super) struct BranchJson {
    pub(super) commit: CommitJson,
}

#[derive(Deserialize)]
pub(super) struct CommitJson {
    pub(super) sha: String,
}

#[derive(Deserialize)]
pub(super) struct RefJson {
    #[serde(rename = "ref")]
    pub(super) name: String,
    #[serde(default)]
    pub(super) sha: String,
}

#[derive(Deserialize)]
pub(super) struct PullJson {
    pub(super) number: PrNumber,
    pub(super) html_url: String,
    #[serde(default)]
    pub(super) title: String,
    pub(super) state: String,
    #[serde(default)]
    pub(super) merged: Option<bool>,
    #[serde(default)]
    pub(super) merged_at: Option<String>,
    pub(super) head: RefJson,
    pub(super) base: RefJson,
    #[serde(default)]
    pub(super) node_id: Option<String>,
    #[serde(default)]
    pub(super) merge_commit_sha: Option<String>,
}

impl From<PullJson> for PullRequest {
    fn from(pr: PullJson) -> Self {
        let merged = pr.merged.unwrap_or(false) || pr.merged_at.is_some();
        PullRequest {
            number: pr.number,
            url: pr.html_url,
            title: pr.title,
            head_branch: pr.head.name,
            base_branch: pr.base.name,
            head_sha: pr.head.sha,
            state: match (pr.state.as_str(), merged) {
                (_, true) => PullRequestState::Merged,
                ("open", _) => PullRequestState::Open,
                _ => PullRequestState::Closed,
            },
            // GitHub fills it for open PRs too (a test merge): only a merge's counts.
            merge_commit_sha: pr.merge_commit_sha.filter(|_| merged),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct UserJson {
    pub(super) login: String,
}

#[derive(Deserialize)]
pub(super) struct CommentJson {
    pub(super) id: i64,
    #[serde(default)]
    pub(super) body: String,
    pub(super) user: Option<UserJson>,
    #[serde(default)]
    pub(super) html_url: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct PermissionJson {
    pub(super) permission: String,
    #[serde(default)]
    pub(super) role_name: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct GraphqlResponse {
    #[serde(default)]
    pub(super) data: Option<Value>,
    #[serde(default)]
    pub(super) errors: Vec<GraphqlError>,
}

#[derive(Deserialize)]
pub(super) struct GraphqlError {
    pub(super) message: String,
    /// GitHub's error class, e.g. `STALE_DATA`.
    #[serde(default, rename = "type")]
    pub(super) kind: Option<String>,
}

impl GraphqlResponse {
    /// Every error message, joined.
    pub(super) fn messages(&self) -> String {
        self.errors
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// GitHub's name for a reaction (`content`).
pub fn reaction_content(reaction: Reaction) -> &'static str {
    match reaction {
        Reaction::Eyes => "eyes",
        Reaction::ThumbsUp => "+1",
        Reaction::ThumbsDown => "-1",
        Reaction::Confused => "confused",
        Reaction::Rocket => "rocket",
        Reaction::Heart => "heart",
        Reaction::Hooray => "hooray",
        Reaction::Laugh => "laugh",
    }
}

#[derive(Deserialize)]
pub(super) struct ReactionJson {
    pub(super) id: i64,
    pub(super) user: Option<UserJson>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_github_role_maps() {
        let cases = [
            (Some("admin"), "admin", Permission::Admin),
            (Some("maintain"), "write", Permission::Write),
            (Some("write"), "write", Permission::Write),
            (Some("triage"), "read", Permission::Read),
            (Some("read"), "read", Permission::Read),
            (Some("none"), "none", Permission::None),
            (Some("security-reviewer"), "read", Permission::Read),
            (Some("custom-deployer"), "write", Permission::Write),
            (None, "admin", Permission::Admin),
            (None, "garbage", Permission::None),
        ];
        for (role, base, expected) in cases {
            assert_eq!(
                permission_from_github(role, base),
                expected,
                "{role:?}/{base}"
            );
        }
    }
}
