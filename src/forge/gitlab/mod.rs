//! The GitLab client for one project (REST v4): merge requests, notes,
//! award emoji, commit statuses, members. Auto-merge is
//! `merge_when_pipeline_succeeds` (GitLab merges when the pipeline passes,
//! at once when there is none).

pub mod client;
pub mod commit;
pub mod connect;
pub mod hooks;
mod json;
pub mod repos;

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use client::decode;
pub use client::{CurrentUser, GitlabClient, GitlabToken};
use json::{
    AwardJson, BranchJson, MemberJson, MergeRequestJson, NoteJson, ProjectJson, SingleNoteJson,
    UserJson, UserRefJson,
};
pub use json::{StoredNote, award_name, permission_from_access_level};

use crate::ids::PrNumber;

use super::commit_api::{ApiCommit, Committed};
use super::error::{ForgeError, ForgeKind, short};
use super::http::encode;
use super::pages::Pages;
use super::repo::{ReactionInfo, RepoForge, moved_or};
use super::sticky::{CommentInfo, KeyedLocks};
use super::{
    AutoMerge, CHECK_NAME, CheckConclusion, CheckReport, CommentRef, GitCredentials,
    NewPullRequest, Permission, PullRequest, PullRequestUpdate, Reaction, RepoInfo, Result,
    UserRef,
};

const GITLAB: ForgeKind = ForgeKind::Gitlab;

/// A GitLab project reached with an integration's token.
#[derive(Clone, Debug)]
pub struct GitlabRepo {
    client: Arc<GitlabClient>,
    path: String,
    project: Arc<tokio::sync::OnceCell<ProjectJson>>,
}

impl GitlabRepo {
    pub fn new(client: Arc<GitlabClient>, path: &str) -> Self {
        GitlabRepo {
            client,
            path: path.trim_matches('/').to_string(),
            project: Default::default(),
        }
    }

    async fn project(&self) -> Result<&ProjectJson> {
        self.project
            .get_or_try_init(|| async {
                let uri = format!("/projects/{}", encode(&self.path));
                self.client
                    .get::<ProjectJson>("reading the project", &uri)
                    .await
                    .map_err(|e| match e {
                        ForgeError::NotFound { .. } => ForgeError::NotInstalled {
                            forge: GITLAB,
                            repo: self.path.clone(),
                            hint: format!(
                                "the project does not exist or the token's user cannot see it; \
                                 give that user at least the Developer role on {}",
                                self.path
                            ),
                        },
                        other => other,
                    })
            })
            .await
    }

    async fn url(&self, rest: &str) -> Result<String> {
        Ok(format!("/projects/{}{rest}", self.project().await?.id))
    }

    async fn call(
        &self,
        what: &str,
        method: Method,
        rest: &str,
        body: Option<&Value>,
    ) -> Result<super::http::RawResponse> {
        let uri = self.url(rest).await?;
        self.client.call(what, method, &uri, body).await
    }

    /// The project's numeric id, as the integration's token resolves its path.
    pub async fn project_id(&self) -> Result<i64> {
        Ok(self.project().await?.id)
    }

    /// Note `id` of MR `number`, or `None` when this project has no such
    /// note on that MR.
    pub async fn note(&self, number: PrNumber, id: i64) -> Result<Option<StoredNote>> {
        let uri = self
            .url(&format!("/merge_requests/{number}/notes/{id}"))
            .await?;
        match self
            .client
            .get::<SingleNoteJson>("reading a note", &uri)
            .await
        {
            Ok(note) => Ok(Some(note.into())),
            Err(ForgeError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The username of user `id`, or `None` when there is no such user.
    pub async fn username(&self, id: i64) -> Result<Option<String>> {
        match self
            .client
            .get::<UserRefJson>("reading a user", &format!("/users/{id}"))
            .await
        {
            Ok(user) => Ok(Some(user.username)),
            Err(ForgeError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends `body` as a note's text (`POST` a new one, `PUT` one).
    async fn write_note(
        &self,
        what: &str,
        method: Method,
        rest: &str,
        body: &str,
    ) -> Result<CommentRef> {
        let response = self
            .call(what, method, rest, Some(&json!({"body": body})))
            .await?;
        let note: NoteJson = decode(&response, what)?;
        Ok(CommentRef {
            id: note.id,
            url: None,
        })
    }
}

#[async_trait]
impl RepoForge for GitlabRepo {
    fn forge(&self) -> ForgeKind {
        GITLAB
    }

    fn as_gitlab(&self) -> Option<&GitlabRepo> {
        Some(self)
    }

    async fn repo_info(&self) -> Result<RepoInfo> {
        let project = self.project().await?;
        Ok(RepoInfo {
            default_branch: project
                .default_branch
                .clone()
                .unwrap_or_else(|| "main".into()),
            clone_url: project.http_url_to_repo.clone(),
            web_url: project.web_url.clone(),
        })
    }

    async fn branch_head(&self, branch: &str) -> Result<Option<String>> {
        let uri = self
            .url(&format!("/repository/branches/{}", encode(branch)))
            .await?;
        match self
            .client
            .get::<BranchJson>("reading a branch", &uri)
            .await
        {
            Ok(found) => Ok(Some(found.commit.id)),
            Err(ForgeError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn find_open_pull_request(&self, head_branch: &str) -> Result<Option<PullRequest>> {
        let uri = self
            .url(&format!(
                "/merge_requests?state=opened&source_branch={}&per_page=100",
                encode(head_branch)
            ))
            .await?;
        let found: Vec<MergeRequestJson> =
            self.client.get_all("listing merge requests", &uri).await?;
        Ok(found
            .into_iter()
            .map(PullRequest::from)
            .find(|mr| mr.head_branch == head_branch))
    }

    async fn pull_request(&self, number: PrNumber) -> Result<PullRequest> {
        let uri = self.url(&format!("/merge_requests/{number}")).await?;
        self.client
            .get::<MergeRequestJson>("reading a merge request", &uri)
            .await
            .map(PullRequest::from)
    }

    async fn open_pull_request(&self, new: &NewPullRequest) -> Result<PullRequest> {
        let what = "opening a merge request";
        let body = json!({
            "source_branch": new.head_branch,
            "target_branch": new.base_branch,
            "title": new.title,
            "description": new.body,
            "remove_source_branch": true,
        });
        let response = self
            .call(what, Method::POST, "/merge_requests", Some(&body))
            .await?;
        decode::<MergeRequestJson>(&response, what).map(PullRequest::from)
    }

    async fn update_pull_request(
        &self,
        number: PrNumber,
        update: &PullRequestUpdate,
    ) -> Result<PullRequest> {
        let what = "updating a merge request";
        let body = update.body_as(["title", "description", "target_branch"]);
        let response = self
            .call(
                what,
                Method::PUT,
                &format!("/merge_requests/{number}"),
                Some(&body),
            )
            .await?;
        decode::<MergeRequestJson>(&response, what).map(PullRequest::from)
    }

    async fn close_pull_request(&self, number: PrNumber) -> Result<()> {
        let body = json!({"state_event": "close"});
        self.call(
            "closing a merge request",
            Method::PUT,
            &format!("/merge_requests/{number}"),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    /// Merge when the pipeline succeeds, only while the MR's head is
    /// `expected` (graft's commit): checked first, then sent as `sha` so
    /// GitLab itself refuses a head that moved (409).
    async fn enable_auto_merge(&self, number: PrNumber, expected: &str) -> Result<AutoMerge> {
        let what = "enabling merge when the pipeline succeeds";
        let current = self.pull_request(number).await?;
        if current.head_sha != expected {
            return Ok(AutoMerge::HeadMoved {
                head: current.head_sha,
            });
        }
        let body = json!({
            "merge_when_pipeline_succeeds": true,
            "sha": expected,
        });
        let response = match self
            .call(
                what,
                Method::PUT,
                &format!("/merge_requests/{number}/merge"),
                Some(&body),
            )
            .await
        {
            Ok(response) => response,
            // "SHA does not match HEAD of source branch", or another
            // refusal: which one, the head tells.
            Err(e @ ForgeError::Validation { .. }) => {
                return moved_or(self, number, expected, e).await;
            }
            Err(e) => return Err(e),
        };
        let mr: MergeRequestJson = decode(&response, what)?;
        Ok(if mr.state == "merged" {
            AutoMerge::Merged
        } else {
            AutoMerge::Enabled
        })
    }

    /// Cancels "merge when the pipeline succeeds" on an open MR.
    async fn disable_auto_merge(&self, number: PrNumber) -> Result<()> {
        self.call(
            "cancelling merge when the pipeline succeeds",
            Method::POST,
            &format!("/merge_requests/{number}/cancel_merge_when_pipeline_succeeds"),
            None,
        )
        .await
        .map(|_| ())
    }

    async fn bot_login(&self) -> Result<String> {
        Ok(self.client.current_user().await?.username)
    }

    async fn comments(&self, number: PrNumber) -> Result<Vec<CommentInfo>> {
        let uri = self
            .url(&format!(
                "/merge_requests/{number}/notes?sort=asc&order_by=created_at&per_page=100"
            ))
            .await?;
        let notes: Vec<NoteJson> = self.client.get_all("listing notes", &uri).await?;
        Ok(notes
            .into_iter()
            .map(|n| CommentInfo {
                id: n.id,
                author: n.author.map(|a| a.username).unwrap_or_default(),
                body: n.body,
            })
            .collect())
    }

    async fn create_comment(&self, number: PrNumber, body: &str) -> Result<CommentRef> {
        let rest = format!("/merge_requests/{number}/notes");
        self.write_note("posting a note", Method::POST, &rest, body)
            .await
    }

    async fn edit_comment(&self, number: PrNumber, id: i64, body: &str) -> Result<CommentRef> {
        let rest = format!("/merge_requests/{number}/notes/{id}");
        self.write_note("editing a note", Method::PUT, &rest, body)
            .await
    }

    async fn delete_comment(&self, number: PrNumber, id: i64) -> Result<()> {
        let rest = format!("/merge_requests/{number}/notes/{id}");
        self.call("deleting a note", Method::DELETE, &rest, None)
            .await
            .map(|_| ())
    }

    fn comment_lock(&self, number: PrNumber) -> (&KeyedLocks, String) {
        let key = format!("gitlab:{}:{}#{number}", self.client.base_url, self.path);
        (&self.client.locks, key)
    }

    async fn react(&self, number: PrNumber, comment_id: i64, reaction: Reaction) -> Result<()> {
        let body = json!({"name": award_name(reaction)});
        let rest = format!("/merge_requests/{number}/notes/{comment_id}/award_emoji");
        match self
            .call("adding an award emoji", Method::POST, &rest, Some(&body))
            .await
        {
            Ok(_) => Ok(()),
            // "404 Award Emoji Name has already been taken" (classified as
            // validation): the award is there already, which is fine.
            Err(ForgeError::Validation { message, .. }) if message.contains("already") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn reactions(
        &self,
        number: PrNumber,
        comment_id: i64,
        reaction: Reaction,
    ) -> Result<Vec<ReactionInfo>> {
        let uri = self
            .url(&format!(
                "/merge_requests/{number}/notes/{comment_id}/award_emoji?per_page=100"
            ))
            .await?;
        let awards: Vec<AwardJson> = self.client.get_all("listing award emoji", &uri).await?;
        let name = award_name(reaction);
        Ok(awards
            .into_iter()
            .filter(|a| a.name == name)
            .map(|a| ReactionInfo {
                id: a.id,
                author: a.user.map(|u| u.username).unwrap_or_default(),
            })
            .collect())
    }

    async fn delete_reaction(&self, number: PrNumber, comment_id: i64, id: i64) -> Result<()> {
        let rest = format!("/merge_requests/{number}/notes/{comment_id}/award_emoji/{id}");
        self.call("removing an award emoji", Method::DELETE, &rest, None)
            .await
            .map(|_| ())
    }

    async fn report_check(&self, report: &CheckReport) -> Result<()> {
        let state = match report.conclusion {
            CheckConclusion::Pending => "running",
            CheckConclusion::Success | CheckConclusion::Neutral => "success",
            CheckConclusion::Failure => "failed",
        };
        let mut body = json!({
            "state": state,
            "name": CHECK_NAME,
            "description": short(&format!("{}: {}", report.title, report.summary)),
        });
        if let Some(url) = &report.details_url {
            body["target_url"] = json!(url);
        }
        let rest = format!("/statuses/{}", encode(&report.sha));
        self.call("setting a commit status", Method::POST, &rest, Some(&body))
            .await
            .map(|_| ())
    }

    async fn permission(&self, user: &UserRef) -> Result<Permission> {
        let id = match user.id {
            Some(id) => id,
            None => {
                let users: Vec<UserJson> = self
                    .client
                    .get(
                        "finding a user",
                        &format!("/users?username={}", encode(&user.login)),
                    )
                    .await?;
                match users.first() {
                    Some(found) => found.id,
                    None => return Ok(Permission::None),
                }
            }
        };
        let uri = self.url(&format!("/members/all/{id}")).await?;
        match self
            .client
            .get::<MemberJson>("reading a member's access level", &uri)
            .await
        {
            Ok(member) => Ok(permission_from_access_level(member.access_level)),
            Err(ForgeError::NotFound { .. }) => Ok(Permission::None),
            Err(e) => Err(e),
        }
    }

    async fn commit_files(&self, commit: &ApiCommit) -> Result<Committed> {
        self.commit_via_api(commit).await
    }

    async fn git_credentials(&self) -> Result<GitCredentials> {
        Ok(GitCredentials {
            username: "oauth2".into(),
            token: self.client.token()?,
        })
    }
}
