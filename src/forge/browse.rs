//! Browsing what graft can reach, for setting up a project on a repository
//! that already has files: the repositories (GitHub: the App's
//! installations'; GitLab: the integration's projects with at least the
//! Developer role), a tree at a ref and path, one file. Everything goes
//! through the forge's API (no clone for a look), bounded: listings stop at
//! a cap and say they were cut, a file is measured before it is read.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Forges, Result};
use crate::ids::Provider;

/// Most repositories one listing returns; the rest are cut (`truncated`).
pub const MAX_REPOSITORIES: usize = 5_000;
/// Most entries one tree returns; the rest are cut (`truncated`).
pub const MAX_TREE_ENTRIES: usize = 10_000;

/// A repository graft can reach.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RepositorySummary {
    pub provider: &'static str,
    /// `owner/name` (GitHub), `group/sub/name` (GitLab).
    pub repo: String,
    /// `None` for an empty GitLab project.
    pub default_branch: Option<String>,
    /// GitLab: anything but `public` visibility.
    pub private: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryList {
    pub repositories: Vec<RepositorySummary>,
    /// More than [`MAX_REPOSITORIES`]: the list was cut.
    pub truncated: bool,
}

impl RepositoryList {
    /// Sorted by name, without duplicates (a repository reached through two
    /// installations), cut at [`MAX_REPOSITORIES`].
    pub fn from_found(mut found: Vec<RepositorySummary>, forge_cut: bool) -> Self {
        found.sort_by(|a, b| a.repo.cmp(&b.repo));
        found.dedup_by(|a, b| a.repo == b.repo);
        let truncated = forge_cut || found.len() > MAX_REPOSITORIES;
        found.truncate(MAX_REPOSITORIES);
        RepositoryList {
            repositories: found,
            truncated,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Blob,
    Tree,
}

impl EntryKind {
    /// A forge's tree entry `type` (both say `blob`/`tree`); `None` for a
    /// submodule (`commit`), which is left out.
    pub(crate) fn parse(kind: &str) -> Option<Self> {
        match kind {
            "blob" => Some(EntryKind::Blob),
            "tree" => Some(EntryKind::Tree),
            _ => None,
        }
    }
}

/// One entry of a tree; submodules are left out (nothing to browse).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TreeEntry {
    /// From the repository's root.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Blobs on GitHub; GitLab's tree does not say (`None`), nor for trees.
    pub size: Option<u64>,
    /// The git blob id; `None` for trees.
    pub blob_sha: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// The commit `ref` named when it was read.
    pub commit_sha: String,
    pub entries: Vec<TreeEntry>,
    /// The forge cut the listing, or it had more than [`MAX_TREE_ENTRIES`].
    pub truncated: bool,
}

impl Tree {
    /// The entries read at `commit_sha`, cut at [`MAX_TREE_ENTRIES`].
    pub fn from_found(commit_sha: String, mut entries: Vec<TreeEntry>, forge_cut: bool) -> Self {
        let truncated = forge_cut || entries.len() > MAX_TREE_ENTRIES;
        entries.truncate(MAX_TREE_ENTRIES);
        Tree {
            commit_sha,
            entries,
            truncated,
        }
    }
}

/// What reading one file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRead {
    File {
        path: String,
        content: Vec<u8>,
        blob_sha: String,
    },
    /// Larger than the caller's limit: not read.
    TooLarge { size: u64 },
    /// A folder or a submodule.
    NotAFile,
}

/// Reading one repository's trees and files at any ref (branch, tag or
/// commit). An unknown ref or path is `ForgeError::NotFound`.
#[async_trait]
pub trait RepoBrowse: Send + Sync {
    /// The tree at `path` (`""`: the root); every level below it when
    /// `recursive`.
    async fn tree(&self, reference: &str, path: &str, recursive: bool) -> Result<Tree>;

    /// The file at `path`, read only when at most `max_bytes` long.
    async fn file(&self, reference: &str, path: &str, max_bytes: u64) -> Result<FileRead>;

    /// The repository's default branch, where browsing starts when no ref
    /// is given; an empty repository has none (`ForgeError::NotFound`).
    async fn default_branch(&self) -> Result<String>;
}

impl Forges {
    /// The repositories graft reaches on `provider`; `integration` names a
    /// stored GitLab integration (else the default one).
    pub async fn repositories(
        &self,
        provider: Provider,
        integration: Option<i64>,
    ) -> Result<RepositoryList> {
        match provider {
            Provider::Github => self.current_github_app().await?.repositories().await,
            Provider::Gitlab => self.gitlab_client(integration).await?.repositories().await,
        }
    }

    /// A browser of repository `repo` on `provider`.
    pub async fn browser(
        &self,
        provider: Provider,
        integration: Option<i64>,
        repo: &str,
    ) -> Result<Arc<dyn RepoBrowse>> {
        Ok(match provider {
            Provider::Github => Arc::new(self.github_repo(repo).await?),
            Provider::Gitlab => Arc::new(self.gitlab_repo(integration, repo).await?),
        })
    }
}

/// `prefix/name`, or `name` at the root.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

impl FileRead {
    /// A file as a forge's API returned it: `content` as text when
    /// `is_text`, else base64; `TooLarge` past `max_bytes` (a forge may
    /// send more than its listing said).
    pub(crate) fn decoded(
        forge: super::ForgeKind,
        path: &str,
        content: String,
        is_text: bool,
        blob_sha: String,
        max_bytes: u64,
    ) -> Result<FileRead> {
        let content = if is_text {
            content.into_bytes()
        } else {
            decode_base64(&content).ok_or_else(|| super::ForgeError::Unexpected {
                forge,
                message: format!("the content of `{path}` is not valid base64"),
            })?
        };
        let size = content.len() as u64;
        if size > max_bytes {
            return Ok(FileRead::TooLarge { size });
        }
        Ok(FileRead::File {
            path: path.to_string(),
            content,
            blob_sha,
        })
    }
}

/// Standard base64 as forges send it (GitHub wraps lines).
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(repo: &str) -> RepositorySummary {
        RepositorySummary {
            provider: "github",
            repo: repo.into(),
            default_branch: Some("main".into()),
            private: true,
        }
    }

    #[test]
    fn lists_are_sorted_deduplicated_and_cut() {
        let list =
            RepositoryList::from_found(vec![summary("b/x"), summary("a/y"), summary("b/x")], false);
        let names: Vec<_> = list.repositories.iter().map(|r| r.repo.as_str()).collect();
        assert_eq!(names, ["a/y", "b/x"]);
        assert!(!list.truncated);
        let many = (0..=MAX_REPOSITORIES)
            .map(|i| summary(&format!("o/r{i:05}")))
            .collect();
        let list = RepositoryList::from_found(many, false);
        assert_eq!(list.repositories.len(), MAX_REPOSITORIES);
        assert!(list.truncated);
    }

    #[test]
    fn base64_as_forges_wrap_it() {
        assert_eq!(decode_base64("aGVs\nbG8=\n").unwrap(), b"hello");
        assert!(decode_base64("not base64!").is_none());
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("x/y", "a"), "x/y/a");
    }
}
