//! Pure decisions of the sync engine: which files a sync writes, whether
//! graft still owns its branch, and what an upstream change means for each
//! managed file. Table-tested; no I/O.

use std::collections::{BTreeMap, HashSet};

use crate::git::overlay::ManagedFile;
use crate::git::read::{ChangeKind, FileChange, TreeFile};
use crate::store::files::{FileState, ManagedFileRow};

use super::schedule::Scope;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePlan {
    pub write: Vec<ManagedFile>,
    pub delete: Vec<String>,
    /// Every path graft manages or managed in this project.
    pub managed: HashSet<String>,
}

/// What a sync of `scope` writes: everything graft manages, except pending
/// changes outside the scope (unflagged files of a configuration project
/// wait for an explicit sync), and the deletions in scope.
pub fn files_for(rows: &[ManagedFileRow], scope: Scope) -> FilePlan {
    let in_scope = |row: &ManagedFileRow| scope == Scope::All || row.sync_on_change;
    let mut plan = FilePlan {
        write: Vec::new(),
        delete: Vec::new(),
        managed: rows.iter().map(|r| r.path.clone()).collect(),
    };
    for row in rows {
        match row.state {
            FileState::Synced => plan.write.push(to_file(row)),
            FileState::Pending if in_scope(row) => plan.write.push(to_file(row)),
            FileState::Pending => {}
            FileState::DeletedPending if in_scope(row) => plan.delete.push(row.path.clone()),
            FileState::DeletedPending => {}
        }
    }
    plan
}

fn to_file(row: &ManagedFileRow) -> ManagedFile {
    ManagedFile {
        path: row.path.clone(),
        content: row.content.clone(),
        executable: row.executable,
    }
}

/// Graft owns its branch while every commit on it past the target branch
/// was authored and committed by graft (Renovate's rule).
pub fn branch_is_shared(commits: &[(String, String)], graft_email: &str) -> bool {
    commits
        .iter()
        .any(|(author, committer)| author != graft_email || committer != graft_email)
}

/// What to do about one managed path that changed upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAction {
    /// Take the repository's version into the database.
    Import {
        path: String,
        blob: Option<TreeFile>,
    },
    /// Both sides changed it differently: stop and ask a reviewer.
    Conflict { path: String },
    /// Upstream now has exactly graft's pending content: it is synced.
    AlreadyThere { path: String },
}

/// Sorts the managed-subtree changes between the last seen head and the new
/// one. Paths graft does not manage are not graft's business.
pub fn upstream_actions(
    changes: &[FileChange],
    rows: &[ManagedFileRow],
    new_listing: &BTreeMap<String, TreeFile>,
) -> Vec<UpstreamAction> {
    let by_path: BTreeMap<&str, &ManagedFileRow> =
        rows.iter().map(|r| (r.path.as_str(), r)).collect();
    let mut actions = Vec::new();
    for change in changes {
        let Some(row) = by_path.get(change.path.as_str()) else {
            continue;
        };
        let upstream = new_listing.get(&change.path).copied();
        let upstream_blob = upstream.map(|f| f.blob.to_string());
        match row.state {
            FileState::Synced => actions.push(UpstreamAction::Import {
                path: change.path.clone(),
                blob: upstream,
            }),
            FileState::Pending if upstream_blob.as_deref() == Some(row.blob_sha.as_str()) => {
                actions.push(UpstreamAction::AlreadyThere {
                    path: change.path.clone(),
                })
            }
            FileState::DeletedPending if change.kind == ChangeKind::Deleted => {
                actions.push(UpstreamAction::AlreadyThere {
                    path: change.path.clone(),
                })
            }
            FileState::Pending | FileState::DeletedPending => {
                actions.push(UpstreamAction::Conflict {
                    path: change.path.clone(),
                })
            }
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use gix::ObjectId;

    fn row(path: &str, state: FileState, flagged: bool, blob: &str) -> ManagedFileRow {
        ManagedFileRow {
            path: path.into(),
            content: path.as_bytes().to_vec(),
            blob_sha: blob.repeat(40),
            state,
            size: 1,
            sync_on_change: flagged,
            executable: false,
            synced_blob_sha: None,
        }
    }

    fn paths(files: &[ManagedFile]) -> Vec<&str> {
        files.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn scopes_select_files() {
        let rows = vec![
            row("synced", FileState::Synced, false, "1"),
            row("pending", FileState::Pending, false, "2"),
            row("flagged", FileState::Pending, true, "3"),
            row("gone", FileState::DeletedPending, false, "4"),
            row("gone-flagged", FileState::DeletedPending, true, "5"),
        ];
        let all = files_for(&rows, Scope::All);
        assert_eq!(paths(&all.write), vec!["synced", "pending", "flagged"]);
        assert_eq!(all.delete, vec!["gone", "gone-flagged"]);
        let flagged = files_for(&rows, Scope::Flagged);
        assert_eq!(paths(&flagged.write), vec!["synced", "flagged"]);
        assert_eq!(flagged.delete, vec!["gone-flagged"]);
        assert_eq!(flagged.managed.len(), 5);
    }

    #[test]
    fn a_branch_is_shared_once_anyone_else_committed() {
        let graft = "graft@x";
        assert!(!branch_is_shared(&[], graft));
        assert!(!branch_is_shared(&[(graft.into(), graft.into())], graft));
        assert!(branch_is_shared(
            &[(graft.into(), graft.into()), ("h@x".into(), graft.into())],
            graft
        ));
        assert!(branch_is_shared(
            &[(graft.into(), "web-flow@github".into())],
            graft
        ));
    }

    #[test]
    fn upstream_changes_import_conflict_or_settle() {
        let blob = |c: &str| TreeFile {
            blob: ObjectId::from_hex(c.repeat(40).as_bytes()).unwrap(),
            executable: false,
        };
        let rows = vec![
            row("synced.tf", FileState::Synced, false, "1"),
            row("pending.tf", FileState::Pending, false, "2"),
            row("same.tf", FileState::Pending, false, "3"),
            row("deleted.tf", FileState::DeletedPending, false, "4"),
        ];
        let listing = BTreeMap::from([
            ("synced.tf".to_string(), blob("a")),
            ("pending.tf".to_string(), blob("b")),
            ("same.tf".to_string(), blob("3")),
            ("human.tf".to_string(), blob("c")),
        ]);
        let change = |path: &str, kind| FileChange {
            path: path.into(),
            kind,
        };
        let changes = vec![
            change("deleted.tf", ChangeKind::Deleted),
            change("human.tf", ChangeKind::Added),
            change("pending.tf", ChangeKind::Modified),
            change("same.tf", ChangeKind::Modified),
            change("synced.tf", ChangeKind::Modified),
        ];
        let actions = upstream_actions(&changes, &rows, &listing);
        assert_eq!(
            actions,
            vec![
                UpstreamAction::AlreadyThere {
                    path: "deleted.tf".into()
                },
                UpstreamAction::Conflict {
                    path: "pending.tf".into()
                },
                UpstreamAction::AlreadyThere {
                    path: "same.tf".into()
                },
                UpstreamAction::Import {
                    path: "synced.tf".into(),
                    blob: Some(blob("a"))
                },
            ]
        );
    }
}
