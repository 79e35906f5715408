//! Browsing on GitHub (see `forge::browse`): the repositories of every
//! installation of the App (`GET /app/installations` with the App's JWT,
//! then `GET /installation/repositories` with each installation's token;
//! one that refuses graft (403/404) is left out with a warning),
//! and trees and blobs through the Git data API. A ref is resolved once
//! (`GET /commits/{ref}`), then the path is walked one tree per folder, so
//! every answer belongs to one commit and a file is measured (its tree
//! entry's size) before its blob is read.

use async_trait::async_trait;
use http::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::app::{Api, GithubApp, decode};
use super::{GITHUB, GithubRepo, segment};
use crate::forge::Result;
use crate::forge::browse::{
    EntryKind, FileRead, MAX_REPOSITORIES, RepoBrowse, RepositoryList, RepositorySummary, Tree,
    TreeEntry, join,
};
use crate::forge::error::{ForgeError, ForgeKind};
use crate::forge::http::{RawResponse, foreign_next_page, next_link_within};
use crate::forge::pages::{MAX_PAGES, Pages};
use crate::forge::repo::RepoForge;

/// GitHub's largest page.
const PER_PAGE: usize = 100;

#[derive(Deserialize)]
struct InstallationJson {
    id: i64,
    /// A suspended installation mints no tokens.
    #[serde(default)]
    suspended_at: Option<String>,
}

#[derive(Deserialize)]
struct ListedRepoJson {
    full_name: String,
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    private: bool,
}

#[derive(Deserialize)]
struct InstallationReposJson<T> {
    repositories: Vec<T>,
}

#[derive(Deserialize)]
struct ShaJson {
    sha: String,
}

#[derive(Deserialize)]
struct CommitInnerJson {
    tree: ShaJson,
}

#[derive(Deserialize)]
struct CommitJson {
    sha: String,
    commit: CommitInnerJson,
}

#[derive(Deserialize)]
struct TreeItemJson {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    sha: String,
    #[serde(default)]
    size: Option<u64>,
}

#[derive(Deserialize)]
struct TreeJson {
    tree: Vec<TreeItemJson>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Deserialize)]
struct BlobJson {
    content: String,
    #[serde(default)]
    encoding: String,
}

/// The App's own lists, authenticated with its JWT.
struct AppPages<'a>(&'a GithubApp);

impl Pages for AppPages<'_> {
    const FORGE: ForgeKind = GITHUB;

    async fn fetch(&self, what: &str, uri: &str) -> Result<RawResponse> {
        self.0.app_call(what, Method::GET, uri, None).await
    }

    fn next_page(&self, _uri: &str, response: &RawResponse, what: &str) -> Result<Option<String>> {
        next_link_within(&response.headers, self.0.api_url())
            .map_err(|origin| foreign_next_page(GITHUB, what, &origin))
    }
}

/// `GET /installation/repositories` of one installation, with its token.
struct InstallationPages<'a> {
    app: &'a GithubApp,
    installation: i64,
}

impl Pages for InstallationPages<'_> {
    const FORGE: ForgeKind = GITHUB;

    async fn fetch(&self, what: &str, uri: &str) -> Result<RawResponse> {
        self.app
            .installation_call(Api::Rest, self.installation, what, Method::GET, uri, None)
            .await
    }

    fn items<T: DeserializeOwned>(&self, response: &RawResponse, what: &str) -> Result<Vec<T>> {
        decode::<InstallationReposJson<T>>(response, what).map(|page| page.repositories)
    }

    fn next_page(&self, _uri: &str, response: &RawResponse, what: &str) -> Result<Option<String>> {
        next_link_within(&response.headers, self.app.api_url())
            .map_err(|origin| foreign_next_page(GITHUB, what, &origin))
    }
}

impl GithubApp {
    /// Every repository the App's installations reach.
    pub async fn repositories(&self) -> Result<RepositoryList> {
        let installations: Vec<InstallationJson> = AppPages(self)
            .get_all(
                "listing the GitHub App's installations",
                &format!("/app/installations?per_page={PER_PAGE}"),
            )
            .await?;
        let mut found = Vec::new();
        let mut forge_cut = false;
        for installation in installations.iter().filter(|i| i.suspended_at.is_none()) {
            let pages = InstallationPages {
                app: self,
                installation: installation.id,
            };
            let walked = pages
                .each_page(
                    "listing an installation's repositories",
                    &format!("/installation/repositories?per_page={PER_PAGE}"),
                    MAX_PAGES,
                    |page: Vec<ListedRepoJson>| {
                        found.extend(page.into_iter().map(|r| RepositorySummary {
                            provider: "github",
                            repo: r.full_name,
                            default_branch: r.default_branch,
                            private: r.private,
                        }));
                        found.len() <= MAX_REPOSITORIES
                    },
                )
                .await;
            match walked {
                Ok(complete) => forge_cut |= !complete,
                // Removed between the two lists.
                Err(ForgeError::NotInstalled { .. }) => {}
                // This installation's answer is final (suspended, or its
                // permissions taken away): what graft cannot reach is not
                // listed, the others are. A failure that may pass (5xx,
                // network, rate limit) fails the listing instead, so no
                // list is silently short.
                Err(e @ (ForgeError::NoPermission { .. } | ForgeError::NotFound { .. })) => {
                    tracing::warn!(
                        installation = installation.id,
                        "the repositories of a GitHub App installation are not listed: {e}"
                    );
                }
                Err(e) => return Err(e),
            }
            if found.len() > MAX_REPOSITORIES {
                break;
            }
        }
        Ok(RepositoryList::from_found(found, forge_cut))
    }
}

impl GithubRepo {
    fn not_found(&self, what: String) -> ForgeError {
        ForgeError::NotFound {
            forge: GITHUB,
            what: format!("{what} in {}", self.repo),
        }
    }

    /// The commit `reference` names and its root tree.
    async fn resolve(&self, reference: &str) -> Result<(String, String)> {
        // `per_page=1`: the commit's file list (with patches) is not needed.
        let uri = self.path(&format!("/commits/{}?per_page=1", segment(reference)));
        match self.get::<CommitJson>("reading a commit", &uri).await {
            Ok(commit) => Ok((commit.sha, commit.commit.tree.sha)),
            // GitHub answers 422 "No commit found for SHA" for an unknown ref.
            Err(ForgeError::NotFound { .. } | ForgeError::Validation { .. }) => {
                Err(self.not_found(format!("ref `{reference}`")))
            }
            Err(e) => Err(e),
        }
    }

    async fn tree_json(&self, sha: &str, recursive: bool) -> Result<TreeJson> {
        let query = if recursive { "?recursive=1" } else { "" };
        self.get(
            "reading a tree",
            &self.path(&format!("/git/trees/{sha}{query}")),
        )
        .await
    }

    /// The entry at `path` (not empty) below tree `root`, one tree read per
    /// folder on the way; `None` when there is none.
    async fn entry_at(&self, root: &str, path: &str) -> Result<Option<TreeItemJson>> {
        let mut tree = root.to_string();
        let mut parts = path.split('/').peekable();
        while let Some(name) = parts.next() {
            let listing = self.tree_json(&tree, false).await?;
            let Some(entry) = listing.tree.into_iter().find(|e| e.path == name) else {
                return Ok(None);
            };
            if parts.peek().is_none() {
                return Ok(Some(entry));
            }
            if entry.kind != "tree" {
                return Ok(None);
            }
            tree = entry.sha;
        }
        Ok(None)
    }
}

#[async_trait]
impl RepoBrowse for GithubRepo {
    async fn tree(&self, reference: &str, path: &str, recursive: bool) -> Result<Tree> {
        let (commit_sha, root) = self.resolve(reference).await?;
        let sha = if path.is_empty() {
            root
        } else {
            match self.entry_at(&root, path).await? {
                Some(entry) if entry.kind == "tree" => entry.sha,
                _ => return Err(self.not_found(format!("folder `{path}` at `{reference}`"))),
            }
        };
        let listing = self.tree_json(&sha, recursive).await?;
        let entries: Vec<TreeEntry> = listing
            .tree
            .into_iter()
            .filter_map(|e| {
                let kind = EntryKind::parse(&e.kind)?;
                let blob = kind == EntryKind::Blob;
                Some(TreeEntry {
                    path: join(path, &e.path),
                    kind,
                    size: e.size.filter(|_| blob),
                    blob_sha: blob.then_some(e.sha),
                })
            })
            .collect();
        Ok(Tree::from_found(commit_sha, entries, listing.truncated))
    }

    async fn file(&self, reference: &str, path: &str, max_bytes: u64) -> Result<FileRead> {
        let (_, root) = self.resolve(reference).await?;
        let Some(entry) = self.entry_at(&root, path).await? else {
            return Err(self.not_found(format!("file `{path}` at `{reference}`")));
        };
        if entry.kind != "blob" {
            return Ok(FileRead::NotAFile);
        }
        if let Some(size) = entry.size.filter(|size| *size > max_bytes) {
            return Ok(FileRead::TooLarge { size });
        }
        let what = "reading a blob";
        let response = self
            .call(
                what,
                Method::GET,
                &self.path(&format!("/git/blobs/{}", entry.sha)),
                None,
            )
            .await?;
        let blob: BlobJson = decode(&response, what)?;
        let is_text = blob.encoding == "utf-8";
        FileRead::decoded(GITHUB, path, blob.content, is_text, entry.sha, max_bytes)
    }

    async fn default_branch(&self) -> Result<String> {
        // GitHub names one even for an empty repository, whose tree is
        // then not found at it.
        Ok(self.repo_info().await?.default_branch)
    }
}
