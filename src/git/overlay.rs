//! Clone-and-overlay on objects: start from the target branch's tree, put
//! the managed files on top under the base path, remove the ones graft no
//! longer manages, and write the result, all in the object database. No
//! checkout, so the cost follows the managed files, not the repository.

use std::collections::{BTreeMap, HashSet};

use gix::ObjectId;
use gix::object::tree::EntryKind;

use super::paths::{repo_path, validate_base_path, validate_file_path, validate_in_base};
use super::read::{ChangeKind, FileChange, TreeFile, list_subtree};
use super::{GitError, Identity, local, missing};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedFile {
    /// Relative to the base path.
    pub path: String,
    pub content: Vec<u8>,
    pub executable: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct OverlayInput<'a> {
    /// The tree to build on (the target branch head's tree, or the empty tree).
    pub base_tree: ObjectId,
    pub base_path: &'a str,
    /// Files to write.
    pub files: &'a [ManagedFile],
    /// Paths graft managed and no longer does: removed if present.
    pub deletions: &'a [String],
    /// Every path graft has managed in this project; only these may turn
    /// from a file into a folder or back.
    pub previously_managed: &'a HashSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    pub base_tree: ObjectId,
    pub tree: ObjectId,
    /// Managed paths that differ from the base tree.
    pub changes: Vec<FileChange>,
}

impl Overlay {
    pub fn is_empty(&self) -> bool {
        self.tree == self.base_tree
    }

    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.kind == kind).count()
    }
}

/// Writes the blobs and the overlaid tree into `repo`.
pub fn build(repo: &gix::Repository, input: OverlayInput<'_>) -> Result<Overlay, GitError> {
    validate_base_path(input.base_path)?;
    for file in input.files {
        validate_in_base(input.base_path, &file.path)?;
    }
    for path in input.deletions {
        validate_file_path(path)?;
    }
    let root = repo.find_tree(input.base_tree).map_err(missing)?;
    let existing = list_subtree(repo, input.base_tree, input.base_path)?;
    let mut editor = repo.edit_tree(input.base_tree).map_err(missing)?;
    let mut changes = Vec::new();
    for file in input.files {
        let full = repo_path(input.base_path, &file.path);
        for removal in check_placement(&root, input, &file.path, &existing)? {
            editor.remove(removal.as_str()).map_err(local)?;
        }
        let blob = repo.write_blob(&file.content).map_err(local)?.detach();
        let kind = if file.executable {
            EntryKind::BlobExecutable
        } else {
            EntryKind::Blob
        };
        editor.upsert(full.as_str(), kind, blob).map_err(local)?;
        let new = TreeFile {
            blob,
            executable: file.executable,
        };
        match existing.get(&file.path) {
            None => changes.push(FileChange {
                path: file.path.clone(),
                kind: ChangeKind::Added,
                replaces_unmanaged: false,
                discovery: false,
            }),
            Some(old) if *old != new => changes.push(FileChange {
                path: file.path.clone(),
                kind: ChangeKind::Modified,
                replaces_unmanaged: false,
                discovery: false,
            }),
            Some(_) => {}
        }
    }
    let written: HashSet<&str> = input.files.iter().map(|f| f.path.as_str()).collect();
    for path in input.deletions {
        // Only regular files graft wrote are removed; a folder, link or
        // submodule at that path is someone else's.
        if existing.contains_key(path) && !written.contains(path.as_str()) {
            editor
                .remove(repo_path(input.base_path, path).as_str())
                .map_err(local)?;
            changes.push(FileChange {
                path: path.clone(),
                kind: ChangeKind::Deleted,
                replaces_unmanaged: false,
                discovery: false,
            });
        }
    }
    let tree = editor.write().map_err(local)?.detach();
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Overlay {
        base_tree: input.base_tree,
        tree,
        changes,
    })
}

/// Why a managed path cannot go where it would go in the base tree. Each
/// names the managed path and the entry of the repository in the way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "`{path}`: `{at}` is a symbolic link in the repository; graft does not write through or over links"
    )]
    ThroughSymlink { path: String, at: String },
    #[error(
        "`{path}`: `{at}` is a submodule in the repository; graft does not write into or over submodules"
    )]
    ThroughSubmodule { path: String, at: String },
    #[error(
        "`{path}` would replace the file `{at}` with a folder, and graft does not manage `{at}`"
    )]
    FileBecomesFolder { path: String, at: String },
    #[error(
        "`{path}` would replace the folder `{at}` with a file, and graft does not manage all of it"
    )]
    FolderBecomesFile { path: String, at: String },
}

/// Refuses a managed path that runs through a symlink or submodule of the
/// base tree, or that would swap a file for a folder (or back) that graft
/// did not manage. Returns paths to clear first for allowed swaps.
fn check_placement(
    root: &gix::Tree<'_>,
    input: OverlayInput<'_>,
    path: &str,
    existing: &BTreeMap<String, TreeFile>,
) -> Result<Vec<String>, GitError> {
    let full = repo_path(input.base_path, path);
    let components: Vec<&str> = full.split('/').collect();
    let base_depth = if input.base_path.is_empty() {
        0
    } else {
        input.base_path.split('/').count()
    };
    let mut clear = Vec::new();
    for depth in 1..=components.len() {
        let prefix = components[..depth].join("/");
        let Some(entry) = root.lookup_entry_by_path(&prefix).map_err(missing)? else {
            break;
        };
        let mode = entry.mode();
        let is_leaf = depth == components.len();
        let managed_prefix = (depth > base_depth).then(|| components[base_depth..depth].join("/"));
        if mode.is_link() {
            return Err(PlacementError::ThroughSymlink {
                path: path.to_string(),
                at: prefix,
            }
            .into());
        }
        if mode.is_commit() {
            return Err(PlacementError::ThroughSubmodule {
                path: path.to_string(),
                at: prefix,
            }
            .into());
        }
        if !is_leaf && !mode.is_tree() {
            // A file where the path needs a folder.
            let ours = managed_prefix
                .as_ref()
                .is_some_and(|p| input.previously_managed.contains(p));
            if !ours {
                return Err(PlacementError::FileBecomesFolder {
                    path: path.to_string(),
                    at: prefix,
                }
                .into());
            }
            clear.push(prefix);
            break;
        }
        if is_leaf && mode.is_tree() {
            // A folder where the file goes: only if all of it is graft's.
            let inside = format!("{path}/");
            let all_ours = existing
                .keys()
                .filter(|p| p.starts_with(&inside))
                .all(|p| input.previously_managed.contains(p));
            let has_foreign_entries =
                folder_has_unlisted_entries(root, &prefix, existing, &inside)?;
            if !all_ours || has_foreign_entries {
                return Err(PlacementError::FolderBecomesFile {
                    path: path.to_string(),
                    at: prefix,
                }
                .into());
            }
            clear.push(prefix);
        }
    }
    Ok(clear)
}

/// Links or submodules inside a folder do not show in the file listing;
/// they make the folder someone else's too.
fn folder_has_unlisted_entries(
    root: &gix::Tree<'_>,
    folder: &str,
    existing: &BTreeMap<String, TreeFile>,
    inside: &str,
) -> Result<bool, GitError> {
    let Some(entry) = root.lookup_entry_by_path(folder).map_err(missing)? else {
        return Ok(false);
    };
    let tree = root.repo.find_tree(entry.object_id()).map_err(missing)?;
    let mut recorder = gix::traverse::tree::Recorder::default();
    tree.traverse()
        .breadthfirst(&mut recorder)
        .map_err(missing)?;
    let listed = existing.keys().filter(|p| p.starts_with(inside)).count();
    let files = recorder
        .records
        .iter()
        .filter(|e| !e.mode.is_tree())
        .count();
    Ok(files != listed)
}

/// What the commit message says: what changed, for which project, from
/// which generator.
#[derive(Debug, Clone, Default)]
pub struct CommitInfo<'a> {
    pub project: &'a str,
    pub source: Option<&'a str>,
    pub extra: Option<&'a str>,
}

pub fn commit_message(overlay: &Overlay, info: &CommitInfo<'_>) -> String {
    let (added, modified, deleted) = (
        overlay.count(ChangeKind::Added),
        overlay.count(ChangeKind::Modified),
        overlay.count(ChangeKind::Deleted),
    );
    let mut message = format!(
        "graft: sync {} ({added} added, {modified} modified, {deleted} deleted)\n\n",
        info.project
    );
    if let Some(source) = info.source {
        message.push_str(&format!("Generated by: {source}\n"));
    }
    for change in overlay.changes.iter().take(50) {
        let sign = match change.kind {
            ChangeKind::Added => 'A',
            ChangeKind::Modified => 'M',
            ChangeKind::Deleted => 'D',
        };
        message.push_str(&format!("{sign} {}\n", change.path));
    }
    if overlay.changes.len() > 50 {
        message.push_str(&format!("… and {} more\n", overlay.changes.len() - 50));
    }
    if let Some(extra) = info.extra {
        message.push('\n');
        message.push_str(extra);
        message.push('\n');
    }
    message
}

/// Writes a commit of `overlay.tree` on `parent` as `identity`.
pub fn commit(
    repo: &gix::Repository,
    overlay: &Overlay,
    parent: Option<ObjectId>,
    identity: &Identity,
    message: &str,
) -> Result<ObjectId, GitError> {
    let time = gix::date::Time::now_local_or_utc();
    let mut time_buf = gix::date::parse::TimeBuf::default();
    let signature = gix::actor::SignatureRef {
        name: identity.name.as_str().into(),
        email: identity.email.as_str().into(),
        time: time.to_str(&mut time_buf),
    };
    let commit = repo
        .new_commit_as(signature, signature, message, overlay.tree, parent)
        .map_err(local)?;
    Ok(commit.id)
}
