//! The GitHub App client for one repository.
//!
//! Calls go through octocrab's transport with graft's own small response
//! structs: octocrab's full models reject some real responses (and would
//! tie graft to every field GitHub adds), and the raw route keeps status
//! and headers for error classification.
//!
//! Auto-merge: REST has no endpoint for it, so graft uses GraphQL
//! `enablePullRequestAutoMerge` (the forge merges when required checks
//! pass). GitHub refuses it for a PR that is already mergeable ("clean
//! status"); then graft merges at once with REST `PUT .../merge`. Both
//! carry graft's commit (`expectedHeadOid`, `sha`): GitHub merges nothing
//! else.

pub mod app;
pub mod commit;
pub mod deliveries;
mod errors;
mod json;
pub mod manifest;
pub mod repos;

use std::sync::Arc;

use async_trait::async_trait;
use http::Method;
use serde_json::{Value, json};

use app::{Api, decode, split_repo};
pub use app::{GithubApp, GithubAppConfig};
use json::{
    BranchJson, CommentJson, GraphqlResponse, PermissionJson, PullJson, ReactionJson, RepoJson,
};
pub use json::{permission_from_github, reaction_content};

use crate::ids::PrNumber;

use super::commit_api::{ApiCommit, Committed};
use super::error::{ForgeError, ForgeKind, short};
use super::http::{RawResponse, foreign_next_page, next_link_within};
use super::pages::Pages;
use super::repo::{ReactionInfo, RepoForge, moved_or};
use super::sticky::{CommentInfo, KeyedLocks};
use super::{
    AutoMerge, CHECK_NAME, CheckConclusion, CheckReport, CommentRef, GitCredentials,
    NewPullRequest, Permission, PullRequest, PullRequestUpdate, Reaction, RepoInfo, Result,
    UserRef,
};

const GITHUB: ForgeKind = ForgeKind::Github;

/// One path segment, encoded (a branch `graft/x` becomes `graft%2Fx`).
pub(crate) fn segment(text: &str) -> String {
    super::http::encode(text)
}

/// The GraphQL mutations (REST has no auto-merge); public so the tests can
/// check them against GitHub's schema.
pub const DISABLE_AUTO_MERGE: &str = "mutation($id: ID!) { disablePullRequestAutoMerge(input: {pullRequestId: $id}) { pullRequest { number } } }";
/// `expectedHeadOid`: GitHub refuses when the PR's head moved since graft
/// pushed, so a commit landing between the check and the call is not merged.
pub const ENABLE_AUTO_MERGE: &str = "mutation($id: ID!, $head: GitObjectID!) { enablePullRequestAutoMerge(input: {pullRequestId: $id, mergeMethod: MERGE, expectedHeadOid: $head}) { pullRequest { number } } }";

/// A GitHub repository reached through the app's installation on it.
#[derive(Clone, Debug)]
pub struct GithubRepo {
    app: Arc<GithubApp>,
    installation: i64,
    repo: String,
    owner: String,
    name: String,
}

impl GithubRepo {
    pub fn new(app: Arc<GithubApp>, installation: i64, repo: &str) -> Result<Self> {
        let (owner, name) = split_repo(repo)?;
        Ok(GithubRepo {
            installation,
            repo: repo.to_string(),
            owner: owner.to_string(),
            name: name.to_string(),
            app,
        })
    }

    pub fn installation(&self) -> i64 {
        self.installation
    }

    fn path(&self, rest: &str) -> String {
        format!(
            "/repos/{}/{}{rest}",
            segment(&self.owner),
            segment(&self.name)
        )
    }

    async fn call(
        &self,
        what: &str,
        method: Method,
        uri: &str,
        body: Option<&Value>,
    ) -> Result<RawResponse> {
        self.app
            .installation_call(Api::Rest, self.installation, what, method, uri, body)
            .await
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, what: &str, uri: &str) -> Result<T> {
        let response = self.call(what, Method::GET, uri, None).await?;
        decode(&response, what)
    }

    async fn pull_json(&self, number: PrNumber) -> Result<PullJson> {
        self.get(
            "reading a pull request",
            &self.path(&format!("/pulls/{number}")),
        )
        .await
    }

    /// Runs a GraphQL mutation on the PR's node (`$id`) with `variables`
    /// besides it.
    async fn mutate_pull(
        &self,
        what: &'static str,
        mutation: &str,
        pr: &PullJson,
        mut variables: Value,
    ) -> Result<GraphqlResponse> {
        let node_id = pr.node_id.clone().ok_or_else(|| ForgeError::Unexpected {
            forge: GITHUB,
            message: "the pull request has no node_id".into(),
        })?;
        variables["id"] = json!(node_id);
        self.graphql(what, mutation, variables).await
    }

    /// Sends one GraphQL document with its variables; the answer's `errors`
    /// are the caller's to read.
    async fn graphql(&self, what: &str, query: &str, variables: Value) -> Result<GraphqlResponse> {
        let body = json!({"query": query, "variables": variables});
        let response = self
            .app
            .installation_call(
                Api::Graphql,
                self.installation,
                what,
                Method::POST,
                "/graphql",
                Some(&body),
            )
            .await?;
        decode(&response, what)
    }

    /// Sends `body` as a comment's text (`POST` a new one, `PATCH` one).
    async fn write_comment(
        &self,
        what: &str,
        method: Method,
        uri: &str,
        body: &str,
    ) -> Result<CommentRef> {
        let response = self
            .call(what, method, uri, Some(&json!({"body": body})))
            .await?;
        let comment: CommentJson = decode(&response, what)?;
        Ok(CommentRef {
            id: comment.id,
            url: comment.html_url,
        })
    }
}

#[async_trait]
impl RepoForge for GithubRepo {
    fn forge(&self) -> ForgeKind {
        GITHUB
    }

    async fn repo_info(&self) -> Result<RepoInfo> {
        let what = "reading the repository";
        let repo: RepoJson = self.get(what, &self.path("")).await.map_err(|e| match e {
            ForgeError::NotFound { .. } => ForgeError::NotInstalled {
                forge: GITHUB,
                repo: self.repo.clone(),
                hint: format!("the repository does not exist or the GitHub App cannot see it; add {} to the app's installation", self.repo),
            },
            other => other,
        })?;
        Ok(RepoInfo {
            default_branch: repo.default_branch,
            clone_url: repo.clone_url,
            web_url: repo.html_url,
        })
    }

    async fn branch_head(&self, branch: &str) -> Result<Option<String>> {
        let uri = self.path(&format!("/branches/{}", segment(branch)));
        match self.get::<BranchJson>("reading a branch", &uri).await {
            Ok(found) => Ok(Some(found.commit.sha)),
            Err(ForgeError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn find_open_pull_request(&self, head_branch: &str) -> Result<Option<PullRequest>> {
        let head = segment(&format!("{}:{head_branch}", self.owner));
        let uri = self.path(&format!("/pulls?state=open&head={head}&per_page=100"));
        let pulls: Vec<PullJson> = self.get_all("listing pull requests", &uri).await?;
        Ok(pulls
            .into_iter()
            .map(PullRequest::from)
            .find(|pr| pr.head_branch == head_branch))
    }

    async fn pull_request(&self, number: PrNumber) -> Result<PullRequest> {
        self.pull_json(number).await.map(PullRequest::from)
    }

    async fn open_pull_request(&self, new: &NewPullRequest) -> Result<PullRequest> {
        let what = "opening a pull request";
        let body = json!({
            "title": new.title,
            "head": new.head_branch,
            "base": new.base_branch,
            "body": new.body,
            "maintainer_can_modify": false,
        });
        let response = self
            .call(what, Method::POST, &self.path("/pulls"), Some(&body))
            .await?;
        decode::<PullJson>(&response, what).map(PullRequest::from)
    }

    async fn update_pull_request(
        &self,
        number: PrNumber,
        update: &PullRequestUpdate,
    ) -> Result<PullRequest> {
        let what = "updating a pull request";
        let body = update.body_as(["title", "body", "base"]);
        let uri = self.path(&format!("/pulls/{number}"));
        let response = self.call(what, Method::PATCH, &uri, Some(&body)).await?;
        decode::<PullJson>(&response, what).map(PullRequest::from)
    }

    async fn close_pull_request(&self, number: PrNumber) -> Result<()> {
        let uri = self.path(&format!("/pulls/{number}"));
        let body = json!({"state": "closed"});
        self.call("closing a pull request", Method::PATCH, &uri, Some(&body))
            .await
            .map(|_| ())
    }

    /// Auto-merge for PR `number`, only while its head is `expected`
    /// (graft's commit): checked first, then sent as `expectedHeadOid` /
    /// the merge's `sha` so GitHub itself refuses a head that moved.
    async fn enable_auto_merge(&self, number: PrNumber, expected: &str) -> Result<AutoMerge> {
        let pr = self.pull_json(number).await?;
        if pr.head.sha != expected {
            return Ok(AutoMerge::HeadMoved { head: pr.head.sha });
        }
        let variables = json!({"head": expected});
        let answer = self
            .mutate_pull("enabling auto-merge", ENABLE_AUTO_MERGE, &pr, variables)
            .await?;
        let enabled = answer
            .data
            .as_ref()
            .and_then(|d| d.get("enablePullRequestAutoMerge"))
            .is_some_and(|v| !v.is_null());
        if enabled && answer.errors.is_empty() {
            return Ok(AutoMerge::Enabled);
        }
        let message = answer.messages();
        if message.to_lowercase().contains("clean status") {
            // Nothing to wait for: merge now, still only graft's commit.
            let uri = self.path(&format!("/pulls/{number}/merge"));
            let body = json!({"merge_method": "merge", "sha": expected});
            return match self
                .call("merging a pull request", Method::PUT, &uri, Some(&body))
                .await
            {
                Ok(_) => Ok(AutoMerge::Merged),
                Err(e @ ForgeError::Validation { .. }) => moved_or(self, number, expected, e).await,
                Err(e) => Err(e),
            };
        }
        let hint = if message.to_lowercase().contains("not allowed") {
            " (turn on \"Allow auto-merge\" in the repository settings)"
        } else {
            ""
        };
        let refused = ForgeError::Validation {
            forge: GITHUB,
            message: format!("auto-merge refused: {}{hint}", short(&message)),
        };
        moved_or(self, number, expected, refused).await
    }

    /// Turns off auto-merge on an open pull request (a no-op if it was off).
    async fn disable_auto_merge(&self, number: PrNumber) -> Result<()> {
        let pr = self.pull_json(number).await?;
        let answer = self
            .mutate_pull("disabling auto-merge", DISABLE_AUTO_MERGE, &pr, json!({}))
            .await?;
        if answer.errors.is_empty() {
            return Ok(());
        }
        Err(ForgeError::Validation {
            forge: GITHUB,
            message: format!(
                "disabling auto-merge refused: {}",
                short(&answer.messages())
            ),
        })
    }

    async fn bot_login(&self) -> Result<String> {
        self.app.bot_login().await
    }

    async fn comments(&self, number: PrNumber) -> Result<Vec<CommentInfo>> {
        let uri = self.path(&format!("/issues/{number}/comments?per_page=100"));
        let comments: Vec<CommentJson> = self.get_all("listing comments", &uri).await?;
        Ok(comments
            .into_iter()
            .map(|c| CommentInfo {
                id: c.id,
                author: c.user.map(|u| u.login).unwrap_or_default(),
                body: c.body,
            })
            .collect())
    }

    async fn create_comment(&self, number: PrNumber, body: &str) -> Result<CommentRef> {
        let uri = self.path(&format!("/issues/{number}/comments"));
        self.write_comment("posting a comment", Method::POST, &uri, body)
            .await
    }

    async fn edit_comment(&self, _number: PrNumber, id: i64, body: &str) -> Result<CommentRef> {
        let uri = self.path(&format!("/issues/comments/{id}"));
        self.write_comment("editing a comment", Method::PATCH, &uri, body)
            .await
    }

    async fn delete_comment(&self, _number: PrNumber, id: i64) -> Result<()> {
        let uri = self.path(&format!("/issues/comments/{id}"));
        self.call("deleting a comment", Method::DELETE, &uri, None)
            .await
            .map(|_| ())
    }

    fn comment_lock(&self, number: PrNumber) -> (&KeyedLocks, String) {
        (&self.app.locks, format!("github:{}#{number}", self.repo))
    }

    /// Adds `reaction` (GitHub answers 200 when it is there already).
    async fn react(&self, _number: PrNumber, comment_id: i64, reaction: Reaction) -> Result<()> {
        let uri = self.path(&format!("/issues/comments/{comment_id}/reactions"));
        let body = json!({"content": reaction_content(reaction)});
        self.call("adding a reaction", Method::POST, &uri, Some(&body))
            .await
            .map(|_| ())
    }

    async fn reactions(
        &self,
        _number: PrNumber,
        comment_id: i64,
        reaction: Reaction,
    ) -> Result<Vec<ReactionInfo>> {
        let uri = self.path(&format!(
            "/issues/comments/{comment_id}/reactions?content={}&per_page=100",
            segment(reaction_content(reaction))
        ));
        let reactions: Vec<ReactionJson> = self.get_all("listing reactions", &uri).await?;
        Ok(reactions
            .into_iter()
            .map(|r| ReactionInfo {
                id: r.id,
                author: r.user.map(|u| u.login).unwrap_or_default(),
            })
            .collect())
    }

    async fn delete_reaction(&self, _number: PrNumber, comment_id: i64, id: i64) -> Result<()> {
        let uri = self.path(&format!("/issues/comments/{comment_id}/reactions/{id}"));
        self.call("removing a reaction", Method::DELETE, &uri, None)
            .await
            .map(|_| ())
    }

    async fn report_check(&self, report: &CheckReport) -> Result<()> {
        let mut body = json!({
            "name": CHECK_NAME,
            "head_sha": report.sha,
            "output": {"title": report.title, "summary": report.summary},
        });
        let conclusion = match report.conclusion {
            CheckConclusion::Pending => None,
            CheckConclusion::Success => Some("success"),
            CheckConclusion::Failure => Some("failure"),
            CheckConclusion::Neutral => Some("neutral"),
        };
        body["status"] = json!(if conclusion.is_some() {
            "completed"
        } else {
            "in_progress"
        });
        if let Some(conclusion) = conclusion {
            body["conclusion"] = json!(conclusion);
        }
        if let Some(url) = &report.details_url {
            body["details_url"] = json!(url);
        }
        self.call(
            "reporting a check run",
            Method::POST,
            &self.path("/check-runs"),
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    async fn permission(&self, user: &UserRef) -> Result<Permission> {
        let uri = self.path(&format!(
            "/collaborators/{}/permission",
            segment(&user.login)
        ));
        match self
            .get::<PermissionJson>("reading a user's permission", &uri)
            .await
        {
            Ok(found) => Ok(permission_from_github(
                found.role_name.as_deref(),
                &found.permission,
            )),
            Err(ForgeError::NotFound { .. }) => Ok(Permission::None),
            Err(e) => Err(e),
        }
    }

    async fn commit_files(&self, commit: &ApiCommit) -> Result<Committed> {
        self.commit_via_api(commit).await
    }

    async fn git_credentials(&self) -> Result<GitCredentials> {
        // Minting is one attempt of its own; here no call wraps it in the
        // retry policy, so this does.
        let token = self
            .app
            .retrier
            .run(GITHUB, "creating an installation access token", || {
                self.app.installation_token(self.installation)
            })
            .await?;
        Ok(GitCredentials {
            username: "x-access-token".into(),
            token,
        })
    }
}

/// GitHub lists: pages linked by `Link: rel="next"`, followed only on the
/// API's own host.
impl Pages for GithubRepo {
    const FORGE: ForgeKind = GITHUB;

    async fn fetch(&self, what: &str, uri: &str) -> Result<RawResponse> {
        self.call(what, Method::GET, uri, None).await
    }

    fn next_page(&self, _uri: &str, response: &RawResponse, what: &str) -> Result<Option<String>> {
        next_link_within(&response.headers, self.app.api_url())
            .map_err(|origin| foreign_next_page(GITHUB, what, &origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_sits_beside_the_rest_base() {
        assert_eq!(
            app::graphql_root("https://api.github.com"),
            "https://api.github.com"
        );
        assert_eq!(
            app::graphql_root("https://ghe.example.com/api/v3"),
            "https://ghe.example.com/api"
        );
    }
}
