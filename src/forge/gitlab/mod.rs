//! The GitLab client for one project (REST v4): merge requests, notes,
//! award emoji, commit statuses, members. Auto-merge is
//! `merge_when_pipeline_succeeds` (GitLab merges when the pipeline passes,
//! at once when there is none).

pub mod client;
pub mod connect;
pub mod hooks;

use std::sync::Arc;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use client::decode;
pub use client::{CurrentUser, GitlabClient, GitlabToken};

use super::error::{ForgeError, ForgeKind};
use super::http::encode;
use super::pages::Pages;
use super::sticky::{self, CommentInfo};
use super::{
    AutoMerge, CHECK_NAME, CheckConclusion, CheckReport, CommentRef, GitCredentials,
    NewPullRequest, Permission, PullRequest, PullRequestState, PullRequestUpdate, Reaction,
    RepoInfo, Result, UserRef,
};

const GITLAB: ForgeKind = ForgeKind::Gitlab;

/// GitLab access level → graft's level: Guest(10), Planner(15) and
/// Reporter(20) can read; Developer(30) and Maintainer(40) can write (SPEC
/// §5: ≥ Developer may run commands); Owner(50) is admin. No access (0) and
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
struct ProjectJson {
    id: i64,
    #[serde(default)]
    default_branch: Option<String>,
    http_url_to_repo: String,
    web_url: String,
}

#[derive(Deserialize)]
struct BranchJson {
    commit: CommitJson,
}

#[derive(Deserialize)]
struct CommitJson {
    id: String,
}

#[derive(Deserialize)]
struct MergeRequestJson {
    iid: i64,
    web_url: String,
    #[serde(default)]
    title: String,
    state: String,
    source_branch: String,
    target_branch: String,
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
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
struct NoteJson {
    id: i64,
    #[serde(default)]
    body: String,
    author: Option<AuthorJson>,
}

#[derive(Deserialize)]
struct AuthorJson {
    username: String,
}

/// One note as `GET …/merge_requests/:iid/notes/:id` returns it.
#[derive(Deserialize)]
struct SingleNoteJson {
    id: i64,
    #[serde(default)]
    body: String,
    author: UserRefJson,
    #[serde(default)]
    system: bool,
    #[serde(default)]
    project_id: Option<i64>,
    #[serde(default)]
    noteable_type: Option<String>,
    #[serde(default)]
    noteable_iid: Option<i64>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
}

#[derive(Deserialize)]
struct UserRefJson {
    id: i64,
    username: String,
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
    pub noteable_iid: Option<i64>,
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
struct AwardJson {
    id: i64,
    name: String,
    user: Option<AuthorJson>,
}

#[derive(Deserialize)]
struct MemberJson {
    access_level: i64,
}

#[derive(Deserialize)]
struct UserJson {
    id: i64,
}

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

    pub async fn repo_info(&self) -> Result<RepoInfo> {
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

    /// The project's numeric id, as the integration's token resolves its path.
    pub async fn project_id(&self) -> Result<i64> {
        Ok(self.project().await?.id)
    }

    /// Note `id` of MR `number`, or `None` when this project has no such
    /// note on that MR.
    pub async fn note(&self, number: i64, id: i64) -> Result<Option<StoredNote>> {
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

    pub async fn branch_head(&self, branch: &str) -> Result<Option<String>> {
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

    pub async fn find_open_pull_request(&self, head_branch: &str) -> Result<Option<PullRequest>> {
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

    pub async fn pull_request(&self, number: i64) -> Result<PullRequest> {
        let uri = self.url(&format!("/merge_requests/{number}")).await?;
        self.client
            .get::<MergeRequestJson>("reading a merge request", &uri)
            .await
            .map(PullRequest::from)
    }

    pub async fn open_pull_request(&self, new: &NewPullRequest) -> Result<PullRequest> {
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

    pub async fn update_pull_request(
        &self,
        number: i64,
        update: &PullRequestUpdate,
    ) -> Result<PullRequest> {
        let what = "updating a merge request";
        let mut body = serde_json::Map::new();
        if let Some(title) = &update.title {
            body.insert("title".into(), json!(title));
        }
        if let Some(text) = &update.body {
            body.insert("description".into(), json!(text));
        }
        if let Some(base) = &update.base_branch {
            body.insert("target_branch".into(), json!(base));
        }
        let response = self
            .call(
                what,
                Method::PUT,
                &format!("/merge_requests/{number}"),
                Some(&Value::Object(body)),
            )
            .await?;
        decode::<MergeRequestJson>(&response, what).map(PullRequest::from)
    }

    pub async fn close_pull_request(&self, number: i64) -> Result<()> {
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
    pub async fn enable_auto_merge(&self, number: i64, expected: &str) -> Result<AutoMerge> {
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
            Err(e @ ForgeError::Validation { .. }) => {
                // "SHA does not match HEAD of source branch", or another
                // refusal: which one, the head tells.
                let now = self.pull_request(number).await?;
                if now.head_sha != expected {
                    return Ok(AutoMerge::HeadMoved { head: now.head_sha });
                }
                return Err(e);
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
    pub async fn disable_auto_merge(&self, number: i64) -> Result<()> {
        self.call(
            "cancelling merge when the pipeline succeeds",
            Method::POST,
            &format!("/merge_requests/{number}/cancel_merge_when_pipeline_succeeds"),
            None,
        )
        .await
        .map(|_| ())
    }

    async fn status_note_ids(&self, number: i64, bot: &str) -> Result<Vec<i64>> {
        let uri = self
            .url(&format!(
                "/merge_requests/{number}/notes?sort=asc&order_by=created_at&per_page=100"
            ))
            .await?;
        let notes: Vec<NoteJson> = self.client.get_all("listing notes", &uri).await?;
        let notes: Vec<CommentInfo> = notes
            .into_iter()
            .map(|n| CommentInfo {
                id: n.id,
                author: n.author.map(|a| a.username).unwrap_or_default(),
                body: n.body,
            })
            .collect();
        Ok(sticky::status_comments(&notes, bot))
    }

    async fn create_note(&self, number: i64, body: &str) -> Result<CommentRef> {
        let what = "posting a note";
        let response = self
            .call(
                what,
                Method::POST,
                &format!("/merge_requests/{number}/notes"),
                Some(&json!({"body": body})),
            )
            .await?;
        let note: NoteJson = decode(&response, what)?;
        Ok(CommentRef {
            id: note.id,
            url: None,
        })
    }

    async fn edit_note(&self, number: i64, id: i64, body: &str) -> Result<CommentRef> {
        let what = "editing a note";
        let response = self
            .call(
                what,
                Method::PUT,
                &format!("/merge_requests/{number}/notes/{id}"),
                Some(&json!({"body": body})),
            )
            .await?;
        let note: NoteJson = decode(&response, what)?;
        Ok(CommentRef {
            id: note.id,
            url: None,
        })
    }

    async fn delete_note(&self, number: i64, id: i64) -> Result<()> {
        match self
            .call(
                "deleting a note",
                Method::DELETE,
                &format!("/merge_requests/{number}/notes/{id}"),
                None,
            )
            .await
        {
            Ok(_) | Err(ForgeError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn upsert_status_comment(&self, number: i64, body: &str) -> Result<CommentRef> {
        let body = sticky::with_marker(body);
        let _serialised = self
            .client
            .locks
            .lock(&format!(
                "gitlab:{}:{}#{number}",
                self.client.base_url, self.path
            ))
            .await;
        let bot = self.client.current_user().await?.username;
        if let Some((keep, extra)) = sticky::resolve(&self.status_note_ids(number, &bot).await?) {
            for id in extra {
                self.delete_note(number, id).await?;
            }
            return self.edit_note(number, keep, &body).await;
        }
        let created = self.create_note(number, &body).await?;
        match sticky::resolve(&self.status_note_ids(number, &bot).await?) {
            Some((keep, extra)) if keep != created.id || !extra.is_empty() => {
                for id in extra {
                    self.delete_note(number, id).await?;
                }
                self.edit_note(number, keep, &body).await
            }
            _ => Ok(created),
        }
    }

    pub async fn reply(&self, number: i64, body: &str) -> Result<CommentRef> {
        self.create_note(number, body).await
    }

    pub async fn react(&self, number: i64, comment_id: i64, reaction: Reaction) -> Result<()> {
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

    /// Takes back graft's own award `reaction` on the note; others' stay,
    /// and none there is nothing to do.
    pub async fn unreact(&self, number: i64, comment_id: i64, reaction: Reaction) -> Result<()> {
        let bot = self.client.current_user().await?.username;
        let rest = format!("/merge_requests/{number}/notes/{comment_id}/award_emoji");
        let uri = self.url(&format!("{rest}?per_page=100")).await?;
        let awards: Vec<AwardJson> = self.client.get_all("listing award emoji", &uri).await?;
        let name = award_name(reaction);
        let own = awards
            .iter()
            .filter(|a| a.name == name && a.user.as_ref().is_some_and(|u| u.username == bot));
        for award in own {
            match self
                .call(
                    "removing an award emoji",
                    Method::DELETE,
                    &format!("{rest}/{}", award.id),
                    None,
                )
                .await
            {
                Ok(_) | Err(ForgeError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub async fn report_check(&self, report: &CheckReport) -> Result<()> {
        let state = match report.conclusion {
            CheckConclusion::Pending => "running",
            CheckConclusion::Success | CheckConclusion::Neutral => "success",
            CheckConclusion::Failure => "failed",
        };
        let mut body = json!({
            "state": state,
            "name": CHECK_NAME,
            "description": super::error::short(&format!("{}: {}", report.title, report.summary)),
        });
        if let Some(url) = &report.details_url {
            body["target_url"] = json!(url);
        }
        let rest = format!("/statuses/{}", encode(&report.sha));
        self.call("setting a commit status", Method::POST, &rest, Some(&body))
            .await
            .map(|_| ())
    }

    pub async fn permission(&self, user: &UserRef) -> Result<Permission> {
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

    pub async fn git_credentials(&self) -> Result<GitCredentials> {
        Ok(GitCredentials {
            username: "oauth2".into(),
            token: self.client.token()?,
        })
    }
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
