//! Browsing on GitLab (see `forge::browse`): the projects where the
//! integration's user has at least the Developer role
//! (`GET /projects?min_access_level=30`), the repository tree and files. A
//! ref is resolved once (`GET /repository/commits/:ref`) and the tree and
//! file are read at that commit; a file's size is asked with `HEAD` (the
//! `X-Gitlab-Size` header) before its content is read.

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;

use super::{GITLAB, GitlabClient, GitlabRepo};
use crate::forge::Result;
use crate::forge::browse::{
    EntryKind, FileRead, MAX_REPOSITORIES, MAX_TREE_ENTRIES, RepoBrowse, RepositoryList,
    RepositorySummary, Tree, TreeEntry,
};
use crate::forge::error::ForgeError;
use crate::forge::http::encode;
use crate::forge::pages::{MAX_PAGES, Pages};

/// GitLab's largest page.
const PER_PAGE: usize = 100;
/// The Developer role: enough to push a branch and open a merge request.
const DEVELOPER: u32 = 30;

#[derive(Deserialize)]
struct ListedProjectJson {
    path_with_namespace: String,
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    visibility: Option<String>,
}

#[derive(Deserialize)]
struct CommitJson {
    id: String,
}

#[derive(Deserialize)]
struct TreeItemJson {
    id: String,
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct FileJson {
    content: String,
    #[serde(default)]
    encoding: String,
    blob_id: String,
}

impl GitlabClient {
    /// Every project where the token's user is at least a Developer.
    pub async fn repositories(&self) -> Result<RepositoryList> {
        let mut found = Vec::new();
        let complete = self
            .each_page(
                "listing the projects the token reaches",
                &format!(
                    "/projects?min_access_level={DEVELOPER}&archived=false&per_page={PER_PAGE}"
                ),
                MAX_PAGES,
                |page: Vec<ListedProjectJson>| {
                    found.extend(page.into_iter().map(|p| RepositorySummary {
                        provider: "gitlab",
                        repo: p.path_with_namespace,
                        default_branch: p.default_branch,
                        private: p.visibility.as_deref() != Some("public"),
                    }));
                    found.len() <= MAX_REPOSITORIES
                },
            )
            .await?;
        Ok(RepositoryList::from_found(found, !complete))
    }
}

impl GitlabRepo {
    fn not_found(&self, what: String) -> ForgeError {
        ForgeError::NotFound {
            forge: GITLAB,
            what: format!("{what} in {}", self.path),
        }
    }

    /// Whether `path` is a folder at `commit` (GitLab's files API answers 404
    /// for one, as for a missing file).
    async fn is_folder(&self, commit: &str, path: &str) -> Result<bool> {
        let uri = self
            .url(&format!(
                "/repository/tree?ref={}&path={}&per_page=1",
                encode(commit),
                encode(path)
            ))
            .await?;
        match self
            .client
            .get::<Vec<TreeItemJson>>("reading the repository tree", &uri)
            .await
        {
            Ok(entries) => Ok(!entries.is_empty()),
            Err(ForgeError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The commit `reference` (branch, tag or commit) names.
    async fn resolve(&self, reference: &str) -> Result<String> {
        let uri = self
            .url(&format!("/repository/commits/{}", encode(reference)))
            .await?;
        match self
            .client
            .get::<CommitJson>("reading a commit", &uri)
            .await
        {
            Ok(commit) => Ok(commit.id),
            Err(ForgeError::NotFound { .. }) => Err(self.not_found(format!("ref `{reference}`"))),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl RepoBrowse for GitlabRepo {
    async fn tree(&self, reference: &str, path: &str, recursive: bool) -> Result<Tree> {
        let commit_sha = self.resolve(reference).await?;
        let mut uri = format!(
            "/repository/tree?ref={}&per_page={PER_PAGE}",
            encode(&commit_sha)
        );
        if !path.is_empty() {
            uri.push_str(&format!("&path={}", encode(path)));
        }
        if recursive {
            uri.push_str("&recursive=true");
        }
        let uri = self.url(&uri).await?;
        let mut entries = Vec::new();
        let walked = self
            .client
            .each_page(
                "reading the repository tree",
                &uri,
                MAX_PAGES,
                |page: Vec<TreeItemJson>| {
                    entries.extend(page.into_iter().filter_map(|e| {
                        let kind = EntryKind::parse(&e.kind)?;
                        Some(TreeEntry {
                            path: e.path,
                            kind,
                            size: None,
                            blob_sha: (kind == EntryKind::Blob).then_some(e.id),
                        })
                    }));
                    entries.len() <= MAX_TREE_ENTRIES
                },
            )
            .await;
        let complete = match walked {
            Ok(complete) => complete,
            Err(ForgeError::NotFound { .. }) => {
                return Err(self.not_found(format!("folder `{path}` at `{reference}`")));
            }
            Err(e) => return Err(e),
        };
        Ok(Tree::from_found(commit_sha, entries, !complete))
    }

    async fn file(&self, reference: &str, path: &str, max_bytes: u64) -> Result<FileRead> {
        let commit = self.resolve(reference).await?;
        let uri = self
            .url(&format!(
                "/repository/files/{}?ref={}",
                encode(path),
                encode(&commit)
            ))
            .await?;
        let missing = |e: ForgeError| match e {
            ForgeError::NotFound { .. } => {
                self.not_found(format!("file `{path}` at `{reference}`"))
            }
            other => other,
        };
        let head = match self
            .client
            .call("reading a file's size", Method::HEAD, &uri, None)
            .await
        {
            Ok(head) => head,
            Err(ForgeError::NotFound { .. }) if self.is_folder(&commit, path).await? => {
                return Ok(FileRead::NotAFile);
            }
            Err(e) => return Err(missing(e)),
        };
        let size = head
            .header("x-gitlab-size")
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(size) = size.filter(|size| *size > max_bytes) {
            return Ok(FileRead::TooLarge { size });
        }
        let file: FileJson = self
            .client
            .get("reading a file", &uri)
            .await
            .map_err(missing)?;
        let is_text = file.encoding == "text";
        FileRead::decoded(GITLAB, path, file.content, is_text, file.blob_id, max_bytes)
    }

    async fn default_branch(&self) -> Result<String> {
        match &self.project().await?.default_branch {
            Some(branch) => Ok(branch.clone()),
            None => Err(self
                .not_found("a default branch (the project is empty; push a first commit)".into())),
        }
    }
}
