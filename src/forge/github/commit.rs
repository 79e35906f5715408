//! Commit mode `api` on GitHub: the branch created (`POST git/refs`) or
//! moved back (`PATCH git/refs`, `force`, after reading its head), then
//! GraphQL `createCommitOnBranch` with `expectedHeadOid` as the lease.
//! GitHub signs the commit, so it shows as Verified.

use base64::Engine;
use http::Method;
use serde_json::{Value, json};

use super::{GITHUB, GithubRepo};
use crate::forge::Result;
use crate::forge::commit_api::{ApiCommit, Committed, Start};
use crate::forge::error::{ForgeError, short};
use crate::forge::repo::RepoForge;

/// The mutation graft sends; public so the tests can check it against
/// GitHub's schema.
pub const CREATE_COMMIT_ON_BRANCH: &str = "mutation($input: CreateCommitOnBranchInput!) { \
     createCommitOnBranch(input: $input) { commit { oid } } }";

/// The variables of [`CREATE_COMMIT_ON_BRANCH`] for `commit` on `expected`.
pub fn commit_input(repo: &str, commit: &ApiCommit, expected: &str) -> Value {
    let engine = base64::engine::general_purpose::STANDARD;
    let (mut additions, mut deletions) = (Vec::new(), Vec::new());
    for file in &commit.files {
        match &file.content {
            Some(content) => {
                additions.push(json!({"path": file.path, "contents": engine.encode(content)}))
            }
            None => deletions.push(json!({"path": file.path})),
        }
    }
    let (headline, body) = match commit.message.split_once('\n') {
        Some((headline, body)) => (headline, body.trim()),
        None => (commit.message.as_str(), ""),
    };
    json!({"input": {
        "branch": {"repositoryNameWithOwner": repo, "branchName": commit.branch},
        "message": {"headline": headline, "body": body},
        "expectedHeadOid": expected,
        "fileChanges": {"additions": additions, "deletions": deletions},
    }})
}

impl GithubRepo {
    fn ref_path(&self, branch: &str) -> String {
        let encoded: Vec<String> = branch.split('/').map(super::segment).collect();
        self.path(&format!("/git/refs/heads/{}", encoded.join("/")))
    }

    /// Puts the branch at `sha`, only from `current`; `false` when it was
    /// elsewhere.
    async fn place_branch(&self, branch: &str, sha: &str, current: Option<&str>) -> Result<bool> {
        if self.branch_head(branch).await?.as_deref() != current {
            return Ok(false);
        }
        let placed = match current {
            None => {
                let body = json!({"ref": format!("refs/heads/{branch}"), "sha": sha});
                self.call(
                    "creating a branch",
                    Method::POST,
                    &self.path("/git/refs"),
                    Some(&body),
                )
                .await
            }
            _ if current == Some(sha) => return Ok(true),
            _ => {
                let body = json!({"sha": sha, "force": true});
                self.call(
                    "moving a branch",
                    Method::PATCH,
                    &self.ref_path(branch),
                    Some(&body),
                )
                .await
            }
        };
        match placed {
            Ok(_) => Ok(true),
            // Created or deleted by someone in between.
            Err(ForgeError::Validation { message, .. })
                if message.contains("Reference already exists")
                    || message.contains("Reference does not exist") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    pub(super) async fn commit_via_api(&self, commit: &ApiCommit) -> Result<Committed> {
        let expected = match &commit.start {
            Start::OnHead { expected } => expected.clone(),
            Start::From { sha, current } => {
                if !self
                    .place_branch(&commit.branch, sha, current.as_deref())
                    .await?
                {
                    return Ok(Committed::Moved);
                }
                sha.clone()
            }
        };
        let answer = self
            .graphql(
                "creating a commit through the API",
                CREATE_COMMIT_ON_BRANCH,
                commit_input(&self.repo, commit, &expected),
            )
            .await?;
        let oid = answer
            .data
            .as_ref()
            .and_then(|d| d["createCommitOnBranch"]["commit"]["oid"].as_str());
        if let Some(oid) = oid {
            return Ok(Committed::Head(oid.to_string()));
        }
        if answer
            .errors
            .iter()
            .any(|e| e.kind.as_deref() == Some("STALE_DATA"))
        {
            return Ok(Committed::Moved);
        }
        Err(ForgeError::Validation {
            forge: GITHUB,
            message: format!(
                "createCommitOnBranch refused: {}",
                short(&answer.messages())
            ),
        })
    }
}
