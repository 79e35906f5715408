//! [`RepoForge`]: what graft asks of a repository on a forge. Each forge
//! implements the primitive calls once (`GithubRepo`, `GitlabRepo`); what
//! graft builds from them, such as the sticky status comment or taking back
//! its own reactions, is written here once for both.

use async_trait::async_trait;

use crate::ids::PrNumber;

use super::commit_api::{ApiCommit, Committed};
use super::error::{ForgeError, ForgeKind};
use super::gitlab::GitlabRepo;
use super::sticky::{self, CommentInfo, KeyedLocks};
use super::{
    AutoMerge, CheckReport, CommentRef, GitCredentials, NewPullRequest, Permission, PullRequest,
    PullRequestUpdate, Reaction, RepoInfo, Result, UserRef,
};

/// A reaction (GitHub) or award emoji (GitLab) on a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionInfo {
    pub id: i64,
    /// The login of who reacted, empty when the forge did not say.
    pub author: String,
}

/// One repository on one forge. PR `number` is GitHub's number or
/// GitLab's merge request `iid`; a comment is an issue comment or a note.
#[async_trait]
pub trait RepoForge: Send + Sync + std::fmt::Debug {
    fn forge(&self) -> ForgeKind;

    /// The GitLab project behind this client, for what only GitLab has
    /// (re-reading a note, webhook health); `None` on other forges.
    fn as_gitlab(&self) -> Option<&GitlabRepo> {
        None
    }

    async fn repo_info(&self) -> Result<RepoInfo>;

    /// The head SHA of `branch`, or `None` when the branch does not exist.
    async fn branch_head(&self, branch: &str) -> Result<Option<String>>;

    /// The open PR/MR whose head is `head_branch` in this repository.
    async fn find_open_pull_request(&self, head_branch: &str) -> Result<Option<PullRequest>>;

    async fn pull_request(&self, number: PrNumber) -> Result<PullRequest>;

    async fn open_pull_request(&self, new: &NewPullRequest) -> Result<PullRequest>;

    async fn update_pull_request(
        &self,
        number: PrNumber,
        update: &PullRequestUpdate,
    ) -> Result<PullRequest>;

    async fn close_pull_request(&self, number: PrNumber) -> Result<()>;

    /// Asks the forge to merge PR `number` once its checks pass, only as
    /// long as its head is `expected_head` (graft's own commit): the forge
    /// is told the SHA too, so a push landing in between merges nothing.
    async fn enable_auto_merge(&self, number: PrNumber, expected_head: &str) -> Result<AutoMerge>;

    async fn disable_auto_merge(&self, number: PrNumber) -> Result<()>;

    /// The login graft's own comments and reactions appear under.
    async fn bot_login(&self) -> Result<String>;

    /// Every comment on PR `number`.
    async fn comments(&self, number: PrNumber) -> Result<Vec<CommentInfo>>;

    async fn create_comment(&self, number: PrNumber, body: &str) -> Result<CommentRef>;

    async fn edit_comment(&self, number: PrNumber, id: i64, body: &str) -> Result<CommentRef>;

    /// Deletes comment `id`; `NotFound` when it is gone already.
    async fn delete_comment(&self, number: PrNumber, id: i64) -> Result<()>;

    /// The locks that serialise status-comment upserts in this process,
    /// and the key of PR `number` among every forge's PRs.
    fn comment_lock(&self, number: PrNumber) -> (&KeyedLocks, String);

    /// Reacts to comment `comment_id` on PR/MR `number`; a reaction that
    /// is there already is fine.
    async fn react(&self, number: PrNumber, comment_id: i64, reaction: Reaction) -> Result<()>;

    /// The reactions of kind `reaction` on comment `comment_id`, anyone's.
    async fn reactions(
        &self,
        number: PrNumber,
        comment_id: i64,
        reaction: Reaction,
    ) -> Result<Vec<ReactionInfo>>;

    /// Deletes reaction `id`; `NotFound` when it is gone already.
    async fn delete_reaction(&self, number: PrNumber, comment_id: i64, id: i64) -> Result<()>;

    async fn report_check(&self, report: &CheckReport) -> Result<()>;

    async fn permission(&self, user: &UserRef) -> Result<Permission>;

    async fn git_credentials(&self) -> Result<GitCredentials>;

    /// Writes `commit` through the forge's API (which signs it) as one
    /// commit: on the branch's head, or rewriting the branch from
    /// `commit.start`. [`Committed::Moved`] when the branch was not where
    /// graft expected, [`Committed::Protected`] when protection refused it.
    async fn commit_files(&self, commit: &ApiCommit) -> Result<Committed>;

    /// Edits graft's status comment (found by [`sticky::STATUS_MARKER`]) in
    /// place, or creates it. The marker is added to `body` if missing.
    async fn upsert_status_comment(&self, number: PrNumber, body: &str) -> Result<CommentRef> {
        let body = sticky::with_marker(body);
        let (locks, key) = self.comment_lock(number);
        let _serialised = locks.lock(&key).await;
        let bot = self.bot_login().await?;
        if let Some((keep, extra)) = sticky::resolve(&status_comment_ids(self, number, &bot).await?)
        {
            delete_comments(self, number, &extra).await?;
            return self.edit_comment(number, keep, &body).await;
        }
        let created = self.create_comment(number, &body).await?;
        // Another process may have created one at the same moment: keep the
        // oldest, with our text, and delete the rest.
        match sticky::resolve(&status_comment_ids(self, number, &bot).await?) {
            Some((keep, extra)) if keep != created.id || !extra.is_empty() => {
                delete_comments(self, number, &extra).await?;
                self.edit_comment(number, keep, &body).await
            }
            _ => Ok(created),
        }
    }

    /// A plain comment on PR `number`.
    async fn reply(&self, number: PrNumber, body: &str) -> Result<CommentRef> {
        self.create_comment(number, body).await
    }

    /// Takes back graft's own `reaction` on comment `comment_id`; others'
    /// reactions stay, and none there is nothing to do.
    async fn unreact(&self, number: PrNumber, comment_id: i64, reaction: Reaction) -> Result<()> {
        let bot = self.bot_login().await?;
        let own = self
            .reactions(number, comment_id, reaction)
            .await?
            .into_iter()
            .filter(|r| r.author == bot);
        for reaction in own {
            gone_is_fine(self.delete_reaction(number, comment_id, reaction.id).await)?;
        }
        Ok(())
    }
}

async fn status_comment_ids<F: RepoForge + ?Sized>(
    forge: &F,
    number: PrNumber,
    bot: &str,
) -> Result<Vec<i64>> {
    Ok(sticky::status_comments(&forge.comments(number).await?, bot))
}

async fn delete_comments<F: RepoForge + ?Sized>(
    forge: &F,
    number: PrNumber,
    ids: &[i64],
) -> Result<()> {
    for id in ids {
        gone_is_fine(forge.delete_comment(number, *id).await)?;
    }
    Ok(())
}

/// A delete whose target is gone already did what it was for.
fn gone_is_fine(result: Result<()>) -> Result<()> {
    match result {
        Err(ForgeError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

/// After the forge refused to merge: `HeadMoved` when PR `number`'s head
/// is no longer `expected` (the forges' wording for that is no contract),
/// else `error`.
pub(crate) async fn moved_or<F: RepoForge + ?Sized>(
    forge: &F,
    number: PrNumber,
    expected: &str,
    error: ForgeError,
) -> Result<AutoMerge> {
    let now = forge.pull_request(number).await?;
    if now.head_sha != expected {
        return Ok(AutoMerge::HeadMoved { head: now.head_sha });
    }
    Err(error)
}
