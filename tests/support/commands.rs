//! Helpers for slash-command tests on either forge: graft's replies, the
//! deliveries of a comment, job and row counts, the project as stored.
//! What differs per forge (GitHub comments and reactions, GitLab notes and
//! award emoji) has a helper of each name here or stays in the test file.

use graft::commands::REPLY_MARKER;
use graft::store::deliveries::DeliveryStatus;
use graft::store::projects::Project;
use sqlx::Row;

use super::fake_github::{self, Comment};
use super::fake_gitlab::{self, Note};
use super::harness::Harness;

/// Which forge a comment lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    Github,
    Gitlab,
}

impl Forge {
    fn provider(self) -> &'static str {
        match self {
            Forge::Github => "github",
            Forge::Gitlab => "gitlab",
        }
    }

    /// Where the comment id sits in the forge's comment webhook payload.
    fn comment_id_pointer(self) -> &'static str {
        match self {
            Forge::Github => "/comment/id",
            Forge::Gitlab => "/object_attributes/id",
        }
    }
}

/// Every command that changes something (and so needs write access),
/// without the prefix, and whether it needs a paused project with
/// auto-merge on to have anything to change (`resume`, `automerge off`).
pub const STATE_CHANGING: [(&str, bool); 9] = [
    ("sync", false),
    ("sync --force", false),
    ("import", false),
    ("rebase", false),
    ("retry", false),
    ("pause", false),
    ("automerge on", false),
    ("resume", true),
    ("automerge off", true),
];

/// graft's replies (not the status comment) on GitHub PR `number`.
pub fn github_replies(h: &Harness, repo: &str, number: i64) -> Vec<Comment> {
    h.github
        .comments(repo, number)
        .into_iter()
        .filter(|c| c.user == fake_github::BOT_LOGIN && c.body.starts_with(REPLY_MARKER))
        .collect()
}

/// graft's replies (not the status note) on GitLab MR `iid`.
pub fn gitlab_replies(h: &Harness, project: i64, iid: i64) -> Vec<Note> {
    h.gitlab
        .notes(project, iid)
        .into_iter()
        .filter(|n| n.author == fake_gitlab::BOT_USERNAME && n.body.starts_with(REPLY_MARKER))
        .collect()
}

/// Waits until `replies` lists at least `count` bodies; returns the
/// `count`th (1-based).
pub async fn nth_reply<F>(h: &Harness, what: &str, count: usize, replies: F) -> String
where
    F: Fn() -> Vec<String>,
{
    h.wait_for(&format!("reply #{count} on {what}"), || {
        let all = replies();
        async move { (all.len() >= count).then(|| all[count - 1].clone()) }
    })
    .await
}

/// Waits for graft's `count`th reply on GitHub PR `number`.
pub async fn github_reply(h: &Harness, repo: &str, number: i64, count: usize) -> String {
    nth_reply(h, &format!("PR {repo}#{number}"), count, || {
        github_replies(h, repo, number)
            .into_iter()
            .map(|c| c.body)
            .collect()
    })
    .await
}

/// Waits for graft's `count`th reply on GitLab MR `iid`.
pub async fn gitlab_reply(h: &Harness, project: i64, iid: i64, count: usize) -> String {
    nth_reply(h, &format!("MR {project}!{iid}"), count, || {
        gitlab_replies(h, project, iid)
            .into_iter()
            .map(|n| n.body)
            .collect()
    })
    .await
}

/// Waits until graft processed `deliveries` webhooks of comment (GitHub)
/// or note (GitLab) `comment`, and the jobs they queued ran (a GitLab
/// note's command job runs after its delivery is processed).
pub async fn processed(h: &Harness, forge: Forge, comment: i64, deliveries: usize) {
    h.wait_for(
        &format!("{deliveries} deliveries of {forge:?} comment {comment}"),
        || async {
            let done = h
                .deliveries()
                .await
                .into_iter()
                .filter(|d| {
                    d.provider == forge.provider()
                        && d.status == DeliveryStatus::Processed
                        && d.payload
                            .as_deref()
                            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                            .is_some_and(|v| {
                                v.pointer(forge.comment_id_pointer())
                                    .and_then(serde_json::Value::as_i64)
                                    == Some(comment)
                            })
                })
                .count();
            (done >= deliveries).then_some(())
        },
    )
    .await;
    h.settle().await;
}

/// The first column of the first row of `sql`, as a number.
pub async fn count(h: &Harness, sql: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(h.app.store.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
}

/// How many jobs of `kind` exist, in any state.
pub async fn jobs_of_kind(h: &Harness, kind: &str) -> i64 {
    count(
        h,
        &format!("SELECT COUNT(*) FROM jobs WHERE kind = '{kind}'"),
    )
    .await
}

pub async fn command_jobs(h: &Harness) -> i64 {
    jobs_of_kind(h, "command").await
}

/// Sync and reconcile jobs, in any state: what a state-changing command
/// would have queued.
pub async fn sync_and_reconcile_jobs(h: &Harness) -> i64 {
    count(
        h,
        "SELECT COUNT(*) FROM jobs WHERE kind IN ('sync', 'reconcile')",
    )
    .await
}

pub async fn project(h: &Harness, id: graft::ids::ProjectId) -> Project {
    h.app.store.require_project(id).await.unwrap()
}
