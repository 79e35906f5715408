//! Reading back what is in the repository: the managed subtree at a commit
//! and how it changed between two commits, for reconciliation.

use std::collections::BTreeMap;

use gix::ObjectId;

use super::{GitError, missing};

/// One file under the base path: its blob and whether it is executable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeFile {
    pub blob: ObjectId,
    pub executable: bool,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileChange {
    /// Path relative to the base path.
    pub path: String,
    pub kind: ChangeKind,
    /// The file was on the target branch with other content, and not as
    /// graft's: the change replaces a file graft did not manage.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replaces_unmanaged: bool,
    /// The file's source label is `discovery` (adopted from the
    /// repository or produced by a discovery), not a generator's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub discovery: bool,
}

/// The tree of `commit`, or the empty tree for `None` (an empty repository).
pub fn commit_tree(repo: &gix::Repository, commit: Option<ObjectId>) -> Result<ObjectId, GitError> {
    match commit {
        None => Ok(ObjectId::empty_tree(repo.object_hash())),
        Some(id) => {
            let commit = repo.find_commit(id).map_err(missing)?;
            Ok(commit.tree_id().map_err(missing)?.detach())
        }
    }
}

/// The id of the tree at `base_path` in `commit` (`None`: no such folder,
/// no commit, or a commit the mirror does not have, e.g. after a force
/// push). Equal ids mean nothing below `base_path` changed.
pub fn subtree_id(
    repo: &gix::Repository,
    commit: Option<ObjectId>,
    base_path: &str,
) -> Result<Option<ObjectId>, GitError> {
    if commit.is_none_or(|id| repo.find_commit(id).is_err()) {
        return Ok(None);
    }
    let root = commit_tree(repo, commit)?;
    if base_path.is_empty() {
        return Ok(Some(root));
    }
    let tree = repo.find_tree(root).map_err(missing)?;
    Ok(
        match tree.lookup_entry_by_path(base_path).map_err(missing)? {
            Some(entry) if entry.mode().is_tree() => Some(entry.object_id()),
            _ => None,
        },
    )
}

/// Every regular file (blob) below `base_path` in `tree`, keyed by its path
/// relative to `base_path`. Symlinks and submodules are not graft's and are
/// left out. A name that is not UTF-8 is listed lossily (see
/// [`list_subtree_utf8`] where that matters).
pub fn list_subtree(
    repo: &gix::Repository,
    tree: ObjectId,
    base_path: &str,
) -> Result<BTreeMap<String, TreeFile>, GitError> {
    Ok(files_below(repo, tree, base_path)?
        .into_iter()
        .map(|(path, file)| (path.to_string(), file))
        .collect())
}

/// [`list_subtree`] without the files whose path is not UTF-8: those are
/// returned apart (shown lossily), since a lossy name would stand for a
/// path that is not the file's.
#[allow(clippy::type_complexity)]
pub fn list_subtree_utf8(
    repo: &gix::Repository,
    tree: ObjectId,
    base_path: &str,
) -> Result<(BTreeMap<String, TreeFile>, Vec<String>), GitError> {
    let mut files = BTreeMap::new();
    let mut not_utf8 = Vec::new();
    for (path, file) in files_below(repo, tree, base_path)? {
        match std::str::from_utf8(path.as_ref()) {
            Ok(path) => {
                files.insert(path.to_string(), file);
            }
            Err(_) => not_utf8.push(path.to_string()),
        }
    }
    Ok((files, not_utf8))
}

/// The regular files below `base_path` in `tree`, with their raw paths.
fn files_below(
    repo: &gix::Repository,
    tree: ObjectId,
    base_path: &str,
) -> Result<Vec<(gix::bstr::BString, TreeFile)>, GitError> {
    let root = repo.find_tree(tree).map_err(missing)?;
    let subtree = if base_path.is_empty() {
        root
    } else {
        match root.lookup_entry_by_path(base_path).map_err(missing)? {
            Some(entry) if entry.mode().is_tree() => {
                repo.find_tree(entry.object_id()).map_err(missing)?
            }
            _ => return Ok(Vec::new()),
        }
    };
    let mut recorder = gix::traverse::tree::Recorder::default();
    subtree
        .traverse()
        .breadthfirst(&mut recorder)
        .map_err(missing)?;
    Ok(recorder
        .records
        .into_iter()
        .filter(|e| !e.mode.is_tree() && !e.mode.is_link() && !e.mode.is_commit())
        .map(|e| {
            let file = TreeFile {
                blob: e.oid,
                executable: e.mode.is_executable(),
            };
            (e.filepath, file)
        })
        .collect())
}

/// How the files below `base_path` differ from `old` to `new`.
pub fn diff_listings(
    old: &BTreeMap<String, TreeFile>,
    new: &BTreeMap<String, TreeFile>,
) -> Vec<FileChange> {
    let mut changes = Vec::new();
    for (path, file) in new {
        match old.get(path) {
            None => changes.push(FileChange {
                path: path.clone(),
                kind: ChangeKind::Added,
                replaces_unmanaged: false,
                discovery: false,
            }),
            Some(before) if before != file => changes.push(FileChange {
                path: path.clone(),
                kind: ChangeKind::Modified,
                replaces_unmanaged: false,
                discovery: false,
            }),
            Some(_) => {}
        }
    }
    for path in old.keys().filter(|p| !new.contains_key(*p)) {
        changes.push(FileChange {
            path: path.clone(),
            kind: ChangeKind::Deleted,
            replaces_unmanaged: false,
            discovery: false,
        });
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    changes
}

/// The managed-subtree diff between two commits (`None` = empty repository).
pub fn diff_commits(
    repo: &gix::Repository,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
    base_path: &str,
) -> Result<Vec<FileChange>, GitError> {
    let before = list_subtree(repo, commit_tree(repo, old)?, base_path)?;
    let after = list_subtree(repo, commit_tree(repo, new)?, base_path)?;
    Ok(diff_listings(&before, &after))
}

pub fn read_blob(repo: &gix::Repository, blob: ObjectId) -> Result<Vec<u8>, GitError> {
    Ok(repo.find_blob(blob).map_err(missing)?.data.clone())
}

/// Commits reachable from `head` but not from `base`, oldest first, with
/// their author and committer emails (for branch ownership).
pub fn commits_between(
    repo: &gix::Repository,
    base: ObjectId,
    head: ObjectId,
) -> Result<Vec<(ObjectId, String, String)>, GitError> {
    let walk = repo
        .rev_walk([head])
        .with_hidden([base])
        .all()
        .map_err(missing)?;
    let mut commits = Vec::new();
    for info in walk {
        let info = info.map_err(missing)?;
        let commit = info.object().map_err(missing)?;
        let author = commit.author().map_err(missing)?.email.to_string();
        let committer = commit.committer().map_err(missing)?.email.to_string();
        commits.push((info.id, author, committer));
    }
    commits.reverse();
    Ok(commits)
}

/// The git blob id of `content` (what `git hash-object` prints).
pub fn blob_id(content: &[u8]) -> ObjectId {
    gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, content)
        .unwrap_or_else(|_| ObjectId::null(gix::hash::Kind::Sha1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_match_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            blob_id(b"hello\n").to_string(),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(
            blob_id(b"").to_string(),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
    }

    #[test]
    fn listings_diff_into_added_modified_deleted() {
        let file = |hex: &str, executable| TreeFile {
            blob: ObjectId::from_hex(hex.repeat(40).as_bytes()).unwrap(),
            executable,
        };
        let old = BTreeMap::from([
            ("a".to_string(), file("1", false)),
            ("b".to_string(), file("2", false)),
            ("c".to_string(), file("3", false)),
        ]);
        let new = BTreeMap::from([
            ("a".to_string(), file("1", false)),
            ("b".to_string(), file("2", true)),
            ("d".to_string(), file("4", false)),
        ]);
        let kinds: Vec<(String, ChangeKind)> = diff_listings(&old, &new)
            .into_iter()
            .map(|c| (c.path, c.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("b".into(), ChangeKind::Modified),
                ("c".into(), ChangeKind::Deleted),
                ("d".into(), ChangeKind::Added)
            ]
        );
    }
}
