//! A bare repository as a forge's API sees it, read and written with git
//! plumbing (no worktree): trees and blobs at a revision, commit details,
//! and commits built from file changes the way an API commit is made —
//! a new tree from the parent's, a commit object, then a ref moved only
//! if it still points where the caller expected.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::GitHost;

/// One entry of `git ls-tree -l`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Relative to the tree listed.
    pub path: String,
    pub mode: String,
    /// `blob`, `tree` or `commit` (a submodule).
    pub kind: String,
    pub sha: String,
    /// Blobs only.
    pub size: Option<u64>,
}

/// One change of an API commit.
#[derive(Debug, Clone)]
pub enum Change {
    /// Creates or replaces the file (an existing file keeps its mode).
    Put {
        path: String,
        content: Vec<u8>,
    },
    Delete {
        path: String,
    },
    /// Sets or clears the executable bit of a file (after its `Put`).
    Chmod {
        path: String,
        executable: bool,
    },
}

impl Change {
    pub fn path(&self) -> &str {
        match self {
            Change::Put { path, .. } | Change::Delete { path } | Change::Chmod { path, .. } => path,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

/// A commit an API makes: `changes` on top of `parent` (`None`: a first
/// commit on an empty tree).
#[derive(Debug, Clone)]
pub struct NewCommit<'a> {
    pub parent: Option<&'a str>,
    pub changes: &'a [Change],
    pub message: &'a str,
    pub author: Identity,
    pub committer: Identity,
}

/// A commit's details, as the forges' commit endpoints show them.
#[derive(Debug, Clone)]
pub struct CommitMeta {
    pub sha: String,
    pub tree: String,
    pub parents: Vec<String>,
    pub author: Identity,
    /// Strict ISO 8601.
    pub authored_at: String,
    pub committer: Identity,
    pub committed_at: String,
    pub message: String,
}

/// A file a commit changed (against its first parent).
#[derive(Debug, Clone)]
pub struct ChangedFile {
    pub path: String,
    /// `added`, `removed`, `modified` or `changed` (its type), as GitHub
    /// words it.
    pub status: String,
    /// The blob after the commit (before it, for a removal).
    pub blob: String,
    pub additions: u64,
    pub deletions: u64,
}

/// `git args` in `dir` with `env` and `stdin`; stdout, or stderr on failure.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Result<String, String> {
    let mut child = Command::new("git")
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin)
            .map_err(|e| format!("git stdin: {e}"))?;
    }
    let output = child.wait_with_output().map_err(|e| format!("git: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

fn quiet(dir: &Path, args: &[&str]) -> Option<String> {
    run(dir, args, &[], b"").ok()
}

impl GitHost {
    /// The commit `rev` (branch, tag or object id) names.
    pub fn resolve_commit(&self, repo: &str, rev: &str) -> Option<String> {
        quiet(
            &self.repo_dir(repo),
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{rev}^{{commit}}"),
            ],
        )
    }

    /// The object `spec` (`rev`, `rev:path`, an id) names and its type.
    pub fn object(&self, repo: &str, spec: &str) -> Option<(String, String)> {
        let dir = self.repo_dir(repo);
        let sha = quiet(&dir, &["rev-parse", "--verify", "--quiet", spec])?;
        let kind = quiet(&dir, &["cat-file", "-t", &sha])?;
        Some((sha, kind))
    }

    /// The tree `tree_ish` names (`rev`, `rev:dir`, a tree id) and its
    /// entries, paths relative to it; trees included when recursive.
    /// `None` when it names no tree.
    pub fn ls_tree(
        &self,
        repo: &str,
        tree_ish: &str,
        recursive: bool,
    ) -> Option<(String, Vec<TreeEntry>)> {
        let dir = self.repo_dir(repo);
        let tree = match self.object(repo, tree_ish)? {
            (sha, kind) if kind == "tree" => sha,
            (sha, kind) if kind == "commit" => {
                quiet(&dir, &["rev-parse", &format!("{sha}^{{tree}}")])?
            }
            _ => return None,
        };
        let mut args = vec!["ls-tree", "-l", "-z"];
        if recursive {
            args.extend(["-r", "-t"]);
        }
        args.push(&tree);
        let listing = quiet(&dir, &args)?;
        let entries = listing
            .split('\0')
            .filter(|l| !l.is_empty())
            .filter_map(|line| {
                let (meta, path) = line.split_once('\t')?;
                let parts: Vec<&str> = meta.split_whitespace().collect();
                let [mode, kind, sha, size] = parts.as_slice() else {
                    return None;
                };
                Some(TreeEntry {
                    path: path.to_string(),
                    mode: mode.to_string(),
                    kind: kind.to_string(),
                    sha: sha.to_string(),
                    size: size.parse().ok(),
                })
            })
            .collect();
        Some((tree, entries))
    }

    /// The bytes of blob `sha`; `None` when it is no blob.
    pub fn blob(&self, repo: &str, sha: &str) -> Option<Vec<u8>> {
        let (sha, kind) = self.object(repo, sha)?;
        if kind != "blob" {
            return None;
        }
        let output = Command::new("git")
            .current_dir(self.repo_dir(repo))
            .args(["cat-file", "blob", &sha])
            .output()
            .ok()?;
        output.status.success().then_some(output.stdout)
    }

    pub fn commit_meta(&self, repo: &str, rev: &str) -> Option<CommitMeta> {
        let sha = self.resolve_commit(repo, rev)?;
        let raw = quiet(
            &self.repo_dir(repo),
            &[
                "log",
                "-1",
                "--format=%T%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B",
                &sha,
            ],
        )?;
        let mut parts = raw.splitn(9, '\0').map(str::to_string);
        let mut next = || parts.next().unwrap_or_default();
        let tree = next();
        let parents = next().split_whitespace().map(str::to_string).collect();
        let author = Identity {
            name: next(),
            email: next(),
        };
        let authored_at = next();
        let committer = Identity {
            name: next(),
            email: next(),
        };
        let committed_at = next();
        let message = next();
        Some(CommitMeta {
            sha,
            tree,
            parents,
            author,
            authored_at,
            committer,
            committed_at,
            message,
        })
    }

    pub fn changed_files(&self, repo: &str, sha: &str) -> Vec<ChangedFile> {
        let dir = self.repo_dir(repo);
        let diff = |format: &str| {
            quiet(
                &dir,
                &[
                    "diff-tree",
                    "-r",
                    "--root",
                    "--no-commit-id",
                    "-z",
                    format,
                    sha,
                ],
            )
            .unwrap_or_default()
        };
        let counts: std::collections::HashMap<String, (u64, u64)> = diff("--numstat")
            .split('\0')
            .filter_map(|line| {
                let mut fields = line.splitn(3, '\t');
                let (added, deleted) = (fields.next()?, fields.next()?);
                let counts = (added.parse().unwrap_or(0), deleted.parse().unwrap_or(0));
                Some((fields.next()?.to_string(), counts))
            })
            .collect();
        let raw = diff("--raw");
        let mut fields = raw.split('\0').filter(|f| !f.is_empty());
        let mut files = Vec::new();
        while let (Some(meta), Some(path)) = (fields.next(), fields.next()) {
            let parts: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
            let [_, _, old, new, status] = parts.as_slice() else {
                continue;
            };
            let (status, blob) = match *status {
                "A" => ("added", new),
                "D" => ("removed", old),
                "T" => ("changed", new),
                _ => ("modified", new),
            };
            let (additions, deletions) = counts.get(path).copied().unwrap_or((0, 0));
            files.push(ChangedFile {
                path: path.to_string(),
                status: status.to_string(),
                blob: blob.to_string(),
                additions,
                deletions,
            });
        }
        files
    }

    /// The newest commit reachable from `rev` that changed `path`.
    pub fn last_commit_for(&self, repo: &str, rev: &str, path: &str) -> Option<String> {
        quiet(
            &self.repo_dir(repo),
            &["log", "-1", "--format=%H", rev, "--", path],
        )
        .filter(|s| !s.is_empty())
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    pub fn is_ancestor(&self, repo: &str, ancestor: &str, descendant: &str) -> bool {
        quiet(
            &self.repo_dir(repo),
            &["merge-base", "--is-ancestor", ancestor, descendant],
        )
        .is_some()
    }

    /// Writes the commit (objects only; no ref moves) and returns its id,
    /// or git's complaint (a path that is both a file and a folder, …).
    pub fn write_commit(&self, repo: &str, commit: &NewCommit) -> Result<String, String> {
        let bare = self.repo_dir(repo);
        let bare = bare.to_str().ok_or("repository path is not UTF-8")?;
        // The index lives in a scratch folder that stands for the work
        // tree, as plumbing on a temporary index wants one.
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = scratch.path();
        let index = dir.join("index");
        let index = index.to_str().ok_or("temporary path is not UTF-8")?;
        let work = dir.to_str().ok_or("temporary path is not UTF-8")?;
        let env = [
            ("GIT_DIR", bare),
            ("GIT_WORK_TREE", work),
            ("GIT_INDEX_FILE", index),
        ];
        let git = |args: &[&str], stdin: &[u8]| run(dir, args, &env, stdin);
        match commit.parent {
            Some(parent) => git(&["read-tree", parent], b"")?,
            None => git(&["read-tree", "--empty"], b"")?,
        };
        for change in commit.changes {
            match change {
                Change::Put { path, content } => {
                    let blob = git(&["hash-object", "-w", "--stdin"], content)?;
                    // An existing file keeps its mode (executable, symlink).
                    let mode = commit
                        .parent
                        .and_then(|p| git(&["ls-tree", p, "--", path], b"").ok())
                        .and_then(|line| {
                            let mut fields = line.split_whitespace();
                            let mode = fields.next()?.to_string();
                            (fields.next()? == "blob").then_some(mode)
                        })
                        .unwrap_or_else(|| "100644".to_string());
                    let info = format!("{mode},{blob},{path}");
                    git(&["update-index", "--add", "--cacheinfo", &info], b"")?;
                }
                Change::Delete { path } => {
                    git(&["update-index", "--force-remove", "--", path], b"")?;
                }
                Change::Chmod { path, executable } => {
                    // On the index entry: there is no work tree to read.
                    let entry = git(&["ls-files", "-s", "--", path], b"")?;
                    let Some(blob) = entry.split_whitespace().nth(1) else {
                        return Err(format!("no file `{path}` to change the mode of"));
                    };
                    let mode = if *executable { "100755" } else { "100644" };
                    let info = format!("{mode},{blob},{path}");
                    git(&["update-index", "--cacheinfo", &info], b"")?;
                }
            }
        }
        let tree = git(&["write-tree"], b"")?;
        let mut args = vec!["commit-tree", tree.as_str()];
        if let Some(parent) = commit.parent {
            args.extend(["-p", parent]);
        }
        args.extend(["-F", "-"]);
        let identity = [
            ("GIT_DIR", bare),
            ("GIT_AUTHOR_NAME", commit.author.name.as_str()),
            ("GIT_AUTHOR_EMAIL", commit.author.email.as_str()),
            ("GIT_COMMITTER_NAME", commit.committer.name.as_str()),
            ("GIT_COMMITTER_EMAIL", commit.committer.email.as_str()),
        ];
        run(dir, &args, &identity, commit.message.as_bytes())
    }

    /// Moves (or with `new: None` deletes) `branch` only if it is still at
    /// `expected` (`None`: it must not exist yet). `false` when it moved
    /// meanwhile.
    pub fn move_branch(
        &self,
        repo: &str,
        branch: &str,
        new: Option<&str>,
        expected: Option<&str>,
    ) -> bool {
        let name = format!("refs/heads/{branch}");
        let zero = "0".repeat(40);
        let expected = expected.unwrap_or(&zero);
        let args = match new {
            Some(new) => vec!["update-ref", name.as_str(), new, expected],
            None => vec!["update-ref", "-d", name.as_str(), expected],
        };
        quiet(&self.repo_dir(repo), &args).is_some()
    }
}
