//! Pure decisions of the sync engine: which files a sync writes, whether
//! graft still owns its branch, and what an upstream change means for each
//! managed file. Table-tested; no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};

use gix::ObjectId;

use crate::git::overlay::ManagedFile;
use crate::git::read::{self, FileChange, TreeFile};
use crate::store::files::{FileSource, FileState, ManagedFileRow};

use super::schedule::Scope;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePlan {
    pub write: Vec<ManagedFile>,
    pub delete: Vec<String>,
    /// Every path graft manages or managed in this project.
    pub managed: HashSet<String>,
    /// What the repository had of each path at graft's last sync or
    /// import: content graft knows as its own.
    pub synced: HashMap<String, ObjectId>,
    /// Paths whose source label is `discovery`.
    pub discovery: HashSet<String>,
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
        synced: rows
            .iter()
            .filter_map(|r| Some((r.path.clone(), parse_blob(r.synced_blob_sha.as_deref()?)?)))
            .collect(),
        discovery: rows
            .iter()
            .filter(|r| r.source == FileSource::Discovery)
            .map(|r| r.path.clone())
            .collect(),
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

/// Marks the changes that replace a file graft does not manage: graft
/// writes the path, the target branch has it with other content, and that
/// content is not what graft synced or imported there. Such a file is
/// someone else's, so the PR and the audit log must say it is replaced.
/// Also marks the changes of files labelled `discovery`, which the PR's
/// table shows apart from generated ones.
pub fn mark_replaced(
    changes: &mut [FileChange],
    target: &BTreeMap<String, TreeFile>,
    plan: &FilePlan,
) {
    let written: HashMap<&str, ObjectId> = plan
        .write
        .iter()
        .map(|f| (f.path.as_str(), read::blob_id(&f.content)))
        .collect();
    for change in changes {
        change.discovery = plan.discovery.contains(&change.path);
        let (Some(ours), Some(theirs)) =
            (written.get(change.path.as_str()), target.get(&change.path))
        else {
            continue;
        };
        change.replaces_unmanaged =
            theirs.blob != *ours && plan.synced.get(&change.path) != Some(&theirs.blob);
    }
}

/// The paths among `changes` that replace an unmanaged file.
pub fn replaced(changes: &[FileChange]) -> Vec<&str> {
    changes
        .iter()
        .filter(|c| c.replaces_unmanaged)
        .map(|c| c.path.as_str())
        .collect()
}

/// Whether someone else committed to graft's branch: then graft stops
/// rewriting it and merges nothing on it. `beyond` holds the branch's
/// commits that are on neither the target branch nor below graft's
/// recorded push (`push_recorded`), with author and committer emails.
///
/// graft knows what it pushed: with a recorded push, any such commit is
/// someone else's, whatever its emails say (anyone can copy graft's from
/// its commits). Without one (no PR open: a branch left from an earlier
/// PR, which nothing can merge) only Renovate's rule is left: every commit
/// authored and committed by graft's email is graft's.
pub fn branch_is_shared(
    beyond: &[(ObjectId, String, String)],
    push_recorded: bool,
    graft_email: &str,
) -> bool {
    if push_recorded {
        return !beyond.is_empty();
    }
    beyond
        .iter()
        .any(|(_, author, committer)| author != graft_email || committer != graft_email)
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

/// Sorts what the repository did to each managed file as a three-way
/// merge: `old` is the tree graft last saw (the base), `new` the tree now
/// (theirs), the database row is ours.
///
/// - ours = theirs: nothing to decide; a pending row is simply there.
/// - theirs = base: upstream did not touch it; a pending change waits.
/// - theirs = what graft itself pushed earlier (its PR merged while a newer
///   change was pending): not an upstream edit; ours waits.
/// - ours = base: graft had no change of its own; take theirs.
/// - otherwise both sides changed it: a conflict.
///
/// With `old = None` (no base: history rewritten, or never synced) only the
/// first rule applies. Paths graft does not manage are not its business.
pub fn upstream_actions(
    rows: &[ManagedFileRow],
    old: Option<&BTreeMap<String, TreeFile>>,
    new: &BTreeMap<String, TreeFile>,
) -> Vec<UpstreamAction> {
    let blob_of =
        |listing: &BTreeMap<String, TreeFile>, path: &str| listing.get(path).map(|f| f.blob);
    let mut actions = Vec::new();
    for row in rows {
        let path = row.path.clone();
        let ours = match row.state {
            FileState::DeletedPending => None,
            FileState::Pending | FileState::Synced => parse_blob(&row.blob_sha),
        };
        let theirs = blob_of(new, &row.path);
        if ours == theirs {
            if row.state != FileState::Synced {
                actions.push(UpstreamAction::AlreadyThere { path });
            }
            continue;
        }
        let Some(old) = old else { continue };
        let base = blob_of(old, &row.path);
        if theirs == base {
            continue;
        }
        if theirs.is_some() && theirs == row.synced_blob_sha.as_deref().and_then(parse_blob) {
            // graft's own earlier push landing; the newer change waits.
        } else if ours == base {
            actions.push(UpstreamAction::Import {
                blob: new.get(&row.path).copied(),
                path,
            });
        } else {
            actions.push(UpstreamAction::Conflict { path });
        }
    }
    actions
}

fn parse_blob(hex: &str) -> Option<ObjectId> {
    ObjectId::from_hex(hex.as_bytes()).ok()
}

/// Where `/graft import` takes a conflicting file from: graft's shared
/// branch when a human changed it there (it differs from what graft
/// pushed), otherwise the target branch. `None`: the file is gone there.
pub fn import_source(
    row: &ManagedFileRow,
    target: &BTreeMap<String, TreeFile>,
    shared_branch: Option<&BTreeMap<String, TreeFile>>,
) -> Option<TreeFile> {
    if let Some(branch) = shared_branch {
        let on_branch = branch.get(&row.path).copied();
        let pushed = row.synced_blob_sha.as_deref().and_then(parse_blob);
        if on_branch.map(|f| f.blob) != pushed {
            return on_branch;
        }
    }
    target.get(&row.path).copied()
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
            source: FileSource::Generator,
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

    fn commit(n: &str, author: &str, committer: &str) -> (ObjectId, String, String) {
        let id = ObjectId::from_hex(n.repeat(40).as_bytes()).unwrap();
        (id, author.into(), committer.into())
    }

    #[test]
    fn a_branch_is_shared_once_a_commit_graft_did_not_push_is_on_it() {
        let graft = "graft@x";
        // With graft's push recorded: nothing beyond it is graft's branch,
        // and any commit beyond it is someone else's, even one claiming
        // graft's author and committer.
        assert!(!branch_is_shared(&[], true, graft));
        assert!(branch_is_shared(&[commit("1", graft, graft)], true, graft));
        assert!(branch_is_shared(&[commit("1", "h@x", graft)], true, graft));
    }

    #[test]
    fn without_a_recorded_push_only_the_emails_tell() {
        let graft = "graft@x";
        assert!(!branch_is_shared(&[], false, graft));
        assert!(!branch_is_shared(
            &[commit("1", graft, graft)],
            false,
            graft
        ));
        assert!(branch_is_shared(
            &[commit("1", graft, graft), commit("2", "h@x", graft)],
            false,
            graft
        ));
        assert!(branch_is_shared(
            &[commit("1", graft, "web-flow@github")],
            false,
            graft
        ));
    }

    fn tree(entries: &[(&str, &str)]) -> BTreeMap<String, TreeFile> {
        entries
            .iter()
            .map(|(path, blob)| {
                let file = TreeFile {
                    blob: ObjectId::from_hex(blob.repeat(40).as_bytes()).unwrap(),
                    executable: false,
                };
                (path.to_string(), file)
            })
            .collect()
    }

    fn pushed(mut row: ManagedFileRow, blob: &str) -> ManagedFileRow {
        row.synced_blob_sha = Some(blob.repeat(40));
        row
    }

    fn upstream_rows() -> Vec<ManagedFileRow> {
        vec![
            pushed(row("synced.tf", FileState::Synced, false, "1"), "1"),
            pushed(row("pending.tf", FileState::Pending, false, "2"), "1"),
            row("same.tf", FileState::Pending, false, "3"),
            pushed(
                row("deleted.tf", FileState::DeletedPending, false, "4"),
                "4",
            ),
            pushed(row("untouched.tf", FileState::Pending, false, "5"), "6"),
            pushed(row("landed.tf", FileState::Pending, false, "7"), "8"),
            pushed(row("pr.tf", FileState::Synced, false, "c"), "c"),
            pushed(row("merged.tf", FileState::Synced, false, "e"), "e"),
            pushed(
                row("unlanded.tf", FileState::DeletedPending, false, "0"),
                "0",
            ),
        ]
    }

    #[test]
    fn upstream_changes_are_a_three_way_merge() {
        let old = tree(&[
            ("synced.tf", "1"),
            ("pending.tf", "1"),
            ("deleted.tf", "4"),
            ("untouched.tf", "6"),
            ("landed.tf", "9"),
            ("pr.tf", "1"),
            ("merged.tf", "1"),
        ]);
        let new = tree(&[
            ("synced.tf", "a"),
            ("pending.tf", "b"),
            ("same.tf", "3"),
            ("untouched.tf", "6"),
            ("landed.tf", "8"),
            ("pr.tf", "d"),
            ("merged.tf", "e"),
            ("human.tf", "f"),
            ("unlanded.tf", "0"),
        ]);
        let actions = upstream_actions(&upstream_rows(), Some(&old), &new);
        assert_eq!(
            actions,
            vec![
                // No change of graft's own: upstream's edit is imported.
                UpstreamAction::Import {
                    path: "synced.tf".into(),
                    blob: new.get("synced.tf").copied(),
                },
                // Both sides changed it.
                UpstreamAction::Conflict {
                    path: "pending.tf".into()
                },
                // Upstream already has graft's pending content.
                UpstreamAction::AlreadyThere {
                    path: "same.tf".into()
                },
                // The deletion graft wanted happened upstream.
                UpstreamAction::AlreadyThere {
                    path: "deleted.tf".into()
                },
                // graft's open PR changes it and a human edited the target:
                // importing would silently drop graft's change.
                UpstreamAction::Conflict {
                    path: "pr.tf".into()
                },
            ],
            "untouched.tf (upstream unchanged), landed.tf (graft's own earlier \
             push merged), merged.tf (graft's PR merged), unlanded.tf (removed \
             after graft's PR was pushed, then the PR merged) and human.tf (not \
             managed) need nothing"
        );
    }

    #[test]
    fn without_a_base_only_settled_files_are_decided() {
        let new = tree(&[("synced.tf", "a"), ("pending.tf", "b"), ("same.tf", "3")]);
        assert_eq!(
            upstream_actions(&upstream_rows(), None, &new),
            vec![
                UpstreamAction::AlreadyThere {
                    path: "same.tf".into()
                },
                UpstreamAction::AlreadyThere {
                    path: "deleted.tf".into()
                },
                UpstreamAction::AlreadyThere {
                    path: "unlanded.tf".into()
                },
            ]
        );
    }

    #[test]
    fn import_takes_a_human_edit_on_the_shared_branch_first() {
        let file = pushed(row("x.tf", FileState::Pending, false, "2"), "1");
        let target = tree(&[("x.tf", "a")]);
        let edited = tree(&[("x.tf", "b")]);
        let untouched = tree(&[("x.tf", "1")]);
        let blob = |t: &BTreeMap<String, TreeFile>| t.get("x.tf").copied();
        assert_eq!(import_source(&file, &target, Some(&edited)), blob(&edited));
        assert_eq!(
            import_source(&file, &target, Some(&untouched)),
            blob(&target)
        );
        assert_eq!(import_source(&file, &target, None), blob(&target));
        assert_eq!(import_source(&file, &tree(&[]), None), None);
    }

    #[test]
    fn replaced_files_are_those_on_the_target_graft_never_had_there() {
        let rows = vec![
            row("new.tf", FileState::Pending, false, "2"),
            pushed(row("landed.tf", FileState::Pending, false, "2"), "1"),
            pushed(row("pr-open.tf", FileState::Synced, false, "2"), "2"),
            row("absent.tf", FileState::Pending, false, "2"),
            row("same.tf", FileState::Pending, false, "2"),
        ];
        let plan = files_for(&rows, Scope::All);
        let mut target = tree(&[("new.tf", "a"), ("landed.tf", "1"), ("pr-open.tf", "b")]);
        target.insert(
            "same.tf".into(),
            TreeFile {
                blob: read::blob_id(b"same.tf"),
                executable: false,
            },
        );
        let mut changes: Vec<FileChange> = rows
            .iter()
            .map(|r| FileChange {
                path: r.path.clone(),
                kind: crate::git::read::ChangeKind::Modified,
                replaces_unmanaged: false,
                discovery: false,
            })
            .collect();
        mark_replaced(&mut changes, &target, &plan);
        // `pr-open.tf`: graft's open PR still replaces what the target has.
        assert_eq!(replaced(&changes), vec!["new.tf", "pr-open.tf"]);
    }

    #[test]
    fn changes_of_discovery_files_are_marked() {
        let mut found = row("found.tf", FileState::Pending, false, "2");
        found.source = FileSource::Discovery;
        let rows = vec![found, row("made.tf", FileState::Pending, false, "3")];
        let plan = files_for(&rows, Scope::All);
        let mut changes: Vec<FileChange> = rows
            .iter()
            .map(|r| FileChange {
                path: r.path.clone(),
                kind: crate::git::read::ChangeKind::Added,
                replaces_unmanaged: false,
                discovery: false,
            })
            .collect();
        mark_replaced(&mut changes, &tree(&[]), &plan);
        let marked: Vec<&str> = changes
            .iter()
            .filter(|c| c.discovery)
            .map(|c| c.path.as_str())
            .collect();
        assert_eq!(marked, vec!["found.tf"]);
    }
}
