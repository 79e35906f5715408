//! Commit mode `api` on GitHub: GraphQL `createCommitOnBranch` with
//! `expectedHeadOid` as the lease; GitHub signs the commit, so it shows as
//! Verified. Rewriting graft's branch (a force push in git mode) builds
//! the commit on a temporary branch `graft-tmp/<branch>` at the base, then
//! moves graft's branch there once, after re-reading its head (the lease;
//! the REST API has no compare-and-swap, so a push in the instant between
//! the read and the move is the one thing it cannot see), and deletes the
//! temporary branch. graft's branch never points at the base in between
//! (a PR whose head equals its base is closed by GitHub), and a refused
//! commit leaves it where it was. `createCommitOnBranch` cannot set file
//! modes, so a file executable before or after the change is refused by
//! name ([`mode_refusal`]).

use base64::Engine;
use http::Method;
use serde_json::{Value, json};

use super::{GITHUB, GithubRepo};
use crate::forge::Result;
use crate::forge::commit_api::{ApiCommit, Committed, FileWrite, Start};
use crate::forge::error::{ForgeError, short};
use crate::forge::repo::RepoForge;

/// The mutation graft sends; public so the tests can check it against
/// GitHub's schema.
pub const CREATE_COMMIT_ON_BRANCH: &str = "mutation($input: CreateCommitOnBranchInput!) { \
     createCommitOnBranch(input: $input) { commit { oid } } }";

/// The variables of [`CREATE_COMMIT_ON_BRANCH`] for `commit`'s files on
/// `branch` at `expected`.
pub fn commit_input(repo: &str, branch: &str, commit: &ApiCommit, expected: &str) -> Value {
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
        "branch": {"repositoryNameWithOwner": repo, "branchName": branch},
        "message": {"headline": headline, "body": body},
        "expectedHeadOid": expected,
        "fileChanges": {"additions": additions, "deletions": deletions},
    }})
}

/// Why `file` cannot be written with `createCommitOnBranch`, which takes
/// no file modes: a new file is created 100644 and a changed one keeps its
/// mode, so an executable file could neither get nor lose its bit. Any
/// written file executable before or after is refused by name (a deletion
/// needs no mode).
pub fn mode_refusal(file: &FileWrite) -> Option<String> {
    let advice = "use `commit_via` `git` for this project";
    // A deletion needs no mode.
    file.content.as_ref()?;
    if file.executable {
        return Some(format!(
            "`{}` is executable, and GitHub's createCommitOnBranch (commit mode `api`) cannot \
             set file modes, so the file would lose its executable bit: {advice}, or do not \
             mark the file executable",
            file.path
        ));
    }
    file.was_executable.then(|| {
        format!(
            "`{}` is executable in the repository and graft's file is not, and GitHub's \
             createCommitOnBranch (commit mode `api`) cannot change file modes, so the file \
             would stay executable: {advice}, or mark the file executable",
            file.path
        )
    })
}

/// Where graft builds a commit that rewrites `branch`.
pub fn temp_branch(branch: &str) -> String {
    format!("graft-tmp/{branch}")
}

/// A refusal that is branch protection or a ruleset (what a refused push
/// reports as a protected branch).
fn is_protection(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("protected branch") || lower.contains("repository rule violations")
}

impl GithubRepo {
    fn ref_path(&self, branch: &str) -> String {
        let encoded: Vec<String> = branch.split('/').map(super::segment).collect();
        self.path(&format!("/git/refs/heads/{}", encoded.join("/")))
    }

    async fn create_ref(&self, branch: &str, sha: &str) -> Result<()> {
        let body = json!({"ref": format!("refs/heads/{branch}"), "sha": sha});
        self.call(
            "creating a branch",
            Method::POST,
            &self.path("/git/refs"),
            Some(&body),
        )
        .await
        .map(drop)
    }

    async fn force_ref(&self, branch: &str, sha: &str) -> Result<()> {
        let body = json!({"sha": sha, "force": true});
        self.call(
            "moving a branch",
            Method::PATCH,
            &self.ref_path(branch),
            Some(&body),
        )
        .await
        .map(drop)
    }

    async fn delete_ref(&self, branch: &str) {
        let deleted = self
            .call(
                "deleting a temporary branch",
                Method::DELETE,
                &self.ref_path(branch),
                None,
            )
            .await;
        if let Err(error) = deleted {
            tracing::warn!(repo = %self.repo, branch, "temporary branch left behind: {error}");
        }
    }

    pub(super) async fn commit_via_api(&self, commit: &ApiCommit) -> Result<Committed> {
        if let Some(refusal) = commit.files.iter().find_map(mode_refusal) {
            return Err(ForgeError::Validation {
                forge: GITHUB,
                message: refusal,
            });
        }
        match &commit.start {
            Start::OnHead { expected } => {
                self.create_commit(&commit.branch, commit, expected).await
            }
            // Already at the base: commit on it, leased by `expectedHeadOid`.
            Start::From { sha, current } if current.as_deref() == Some(sha) => {
                self.create_commit(&commit.branch, commit, sha).await
            }
            Start::From { sha, current } => {
                let temp = temp_branch(&commit.branch);
                let moved = self
                    .commit_then_move(&temp, commit, sha, current.as_deref())
                    .await;
                self.delete_ref(&temp).await;
                moved
            }
        }
    }

    /// Builds the commit on `temp` at `sha`, then moves `commit.branch`
    /// there if it is still at `current`.
    async fn commit_then_move(
        &self,
        temp: &str,
        commit: &ApiCommit,
        sha: &str,
        current: Option<&str>,
    ) -> Result<Committed> {
        match self.create_ref(temp, sha).await {
            Ok(()) => {}
            // Left by a sync that stopped half-way: one job per project
            // runs at a time, so it is graft's to reuse.
            Err(ForgeError::Validation { message, .. })
                if message.contains("Reference already exists") =>
            {
                self.force_ref(temp, sha).await?
            }
            Err(e) => return Err(e),
        }
        let new = match self.create_commit(temp, commit, sha).await? {
            Committed::Head(new) => new,
            // Nobody else writes graft's temporary branch; a refusal there
            // is graft's branch's to report.
            other => return Ok(other),
        };
        if self.branch_head(&commit.branch).await?.as_deref() != current {
            return Ok(Committed::Moved);
        }
        let placed = match current {
            None => self.create_ref(&commit.branch, &new).await,
            Some(_) => self.force_ref(&commit.branch, &new).await,
        };
        match placed {
            Ok(()) => Ok(Committed::Head(new)),
            // Created or deleted by someone in between.
            Err(ForgeError::Validation { message, .. })
                if message.contains("Reference already exists")
                    || message.contains("Reference does not exist") =>
            {
                Ok(Committed::Moved)
            }
            Err(ForgeError::Validation { message, .. }) if is_protection(&message) => {
                Ok(Committed::Protected(message))
            }
            Err(e) => Err(e),
        }
    }

    /// `createCommitOnBranch` on `branch` at `expected`.
    async fn create_commit(
        &self,
        branch: &str,
        commit: &ApiCommit,
        expected: &str,
    ) -> Result<Committed> {
        let answer = self
            .graphql(
                "creating a commit through the API",
                CREATE_COMMIT_ON_BRANCH,
                commit_input(&self.repo, branch, commit, expected),
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
        let messages = answer.messages();
        if is_protection(&messages) {
            return Ok(Committed::Protected(short(&messages)));
        }
        Err(ForgeError::Validation {
            forge: GITHUB,
            message: format!("createCommitOnBranch refused: {}", short(&messages)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(content: bool, executable: bool, was_executable: bool) -> FileWrite {
        FileWrite {
            path: "infra/run.sh".into(),
            content: content.then(|| b"#!/bin/sh\n".to_vec()),
            existed: true,
            executable,
            was_executable,
        }
    }

    #[test]
    fn only_plain_files_that_stay_plain_are_written_through_the_api() {
        assert_eq!(mode_refusal(&write(true, false, false)), None);
        // A deletion needs no mode.
        assert_eq!(mode_refusal(&write(false, false, true)), None);
        for (executable, was) in [(true, false), (true, true)] {
            let refusal = mode_refusal(&write(true, executable, was)).unwrap();
            assert!(
                refusal.contains("`infra/run.sh` is executable"),
                "{refusal}"
            );
            assert!(refusal.contains("lose its executable bit"), "{refusal}");
        }
        let cleared = mode_refusal(&write(true, false, true)).unwrap();
        assert!(
            cleared.contains("`infra/run.sh` is executable in the repository")
                && cleared.contains("would stay executable")
                && cleared.contains("`commit_via` `git`"),
            "{cleared}"
        );
    }
}
