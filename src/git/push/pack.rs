//! The pack a push sends: the commit and the trees and blobs its tree adds
//! to the trees of commits the server has (its parent, and the branch's
//! old head), found by comparing the trees only where they differ (a few
//! folders for a sync, whatever the repository's size), and written whole
//! (no deltas: the objects are new, and few).

use std::collections::{HashMap, HashSet};

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use gix::zlib::stream::deflate::{Compress, FlushCompress};

use crate::git::{GitError, local, missing};

/// `commit` and every object of its tree that none of `bases` has in its
/// tree at the same path. Every base must be in the repository. Blocking.
pub fn added_objects(
    repo: &gix::Repository,
    commit: ObjectId,
    bases: &[ObjectId],
) -> Result<Vec<ObjectId>, GitError> {
    let tree = commit_tree(repo, commit)?;
    let base_trees = bases
        .iter()
        .map(|base| commit_tree(repo, *base))
        .collect::<Result<Vec<_>, _>>()?;
    let mut added = Added {
        ids: vec![commit],
        seen: HashSet::from([commit]),
    };
    added.tree(repo, tree, &base_trees)?;
    Ok(added.ids)
}

fn commit_tree(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId, GitError> {
    let commit = repo.find_commit(commit).map_err(missing)?;
    Ok(commit.tree_id().map_err(missing)?.detach())
}

struct Added {
    ids: Vec<ObjectId>,
    seen: HashSet<ObjectId>,
}

type Entries = HashMap<Vec<u8>, (EntryKind, ObjectId)>;

impl Added {
    fn add(&mut self, id: ObjectId) -> bool {
        let new = self.seen.insert(id);
        if new {
            self.ids.push(id);
        }
        new
    }

    /// `tree` and what it holds that `olds` (the trees at the same path in
    /// the bases) do not.
    fn tree(
        &mut self,
        repo: &gix::Repository,
        tree: ObjectId,
        olds: &[ObjectId],
    ) -> Result<(), GitError> {
        if olds.contains(&tree) || !self.add(tree) {
            return Ok(());
        }
        let olds: Vec<Entries> = olds
            .iter()
            .map(|old| {
                let entries = entries(repo, *old)?;
                Ok(entries.into_iter().map(|(n, k, id)| (n, (k, id))).collect())
            })
            .collect::<Result<_, GitError>>()?;
        let before = |name: &[u8], kind: fn(EntryKind) -> bool| -> Vec<ObjectId> {
            olds.iter()
                .filter_map(|entries| entries.get(name))
                .filter(|(k, _)| kind(*k))
                .map(|(_, id)| *id)
                .collect()
        };
        for (name, kind, id) in entries(repo, tree)? {
            match kind {
                EntryKind::Tree => {
                    let subtrees = before(&name, |k| k == EntryKind::Tree);
                    self.tree(repo, id, &subtrees)?;
                }
                // A submodule's commit lives in another repository.
                EntryKind::Commit => {}
                EntryKind::Blob | EntryKind::BlobExecutable | EntryKind::Link => {
                    if !before(&name, |k| k != EntryKind::Tree).contains(&id) {
                        self.add(id);
                    }
                }
            }
        }
        Ok(())
    }
}

fn entries(
    repo: &gix::Repository,
    tree: ObjectId,
) -> Result<Vec<(Vec<u8>, EntryKind, ObjectId)>, GitError> {
    let tree = repo.find_tree(tree).map_err(missing)?;
    let decoded = tree.decode().map_err(missing)?;
    Ok(decoded
        .entries
        .iter()
        .map(|e| (e.filename.to_vec(), e.mode.kind(), e.oid.to_owned()))
        .collect())
}

/// A pack (version 2) of `ids`, each object whole, with its checksum.
/// Blocking.
pub fn write(repo: &gix::Repository, ids: &[ObjectId]) -> Result<Vec<u8>, GitError> {
    let count = u32::try_from(ids.len()).map_err(local)?;
    let mut pack = b"PACK".to_vec();
    pack.extend_from_slice(&2u32.to_be_bytes());
    pack.extend_from_slice(&count.to_be_bytes());
    // One compressor for all: setting one up costs more than a small object.
    let mut compress = Compress::new(gix::zlib::Compression::DEFAULT);
    for id in ids {
        let object = repo.find_object(*id).map_err(missing)?;
        let kind = match object.kind {
            gix::object::Kind::Commit => 1,
            gix::object::Kind::Tree => 2,
            gix::object::Kind::Blob => 3,
            gix::object::Kind::Tag => 4,
        };
        pack.extend(entry_header(kind, object.data.len() as u64));
        deflate(&mut compress, &object.data, &mut pack)?;
    }
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    hasher.update(&pack);
    let checksum = hasher.try_finalize().map_err(local)?;
    pack.extend_from_slice(checksum.as_slice());
    Ok(pack)
}

/// Appends `data` to `out` as one zlib stream.
fn deflate(compress: &mut Compress, data: &[u8], out: &mut Vec<u8>) -> Result<(), GitError> {
    compress.reset();
    let (start_in, mut buffer) = (compress.total_in(), [0u8; 16 * 1024]);
    loop {
        let (before_in, before_out) = (compress.total_in(), compress.total_out());
        let rest = &data[(before_in - start_in) as usize..];
        let status = compress
            .compress(rest, &mut buffer, FlushCompress::Finish)
            .map_err(local)?;
        let written = (compress.total_out() - before_out) as usize;
        out.extend_from_slice(&buffer[..written]);
        match status {
            gix::zlib::Status::StreamEnd => return Ok(()),
            _ if written == 0 && compress.total_in() == before_in => {
                return Err(local("zlib made no progress"));
            }
            _ => {}
        }
    }
}

/// An entry's type and inflated size: 3 bits of type and 4 of size in the
/// first byte, 7 more bits of size per following byte.
fn entry_header(kind: u8, mut size: u64) -> Vec<u8> {
    let mut byte = (kind << 4) | (size & 0x0f) as u8;
    size >>= 4;
    let mut out = Vec::new();
    while size > 0 {
        out.push(byte | 0x80);
        byte = (size & 0x7f) as u8;
        size >>= 7;
    }
    out.push(byte);
    out
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn entry_headers_carry_type_and_size() {
        assert_eq!(entry_header(3, 5), vec![0x35]);
        assert_eq!(entry_header(1, 15), vec![0x1f]);
        // 300 = 0b1_0010_1100: low four bits 1100, then 0b10010.
        assert_eq!(entry_header(2, 300), vec![0xac, 0x12]);
    }

    fn git(dir: &std::path::Path, args: &[&str], input: Option<&[u8]>) -> String {
        let mut child = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.unwrap_or_default()).unwrap();
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "git {args:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    /// A commit on `parent` whose tree is `parent`'s with `files` upserted.
    pub(in crate::git::push) fn commit(
        repo: &gix::Repository,
        parent: Option<ObjectId>,
        files: &[(&str, &str)],
    ) -> ObjectId {
        let base = match parent {
            Some(parent) => commit_tree(repo, parent).unwrap(),
            None => ObjectId::empty_tree(repo.object_hash()),
        };
        let mut editor = repo.edit_tree(base).unwrap();
        for (path, content) in files {
            let blob = repo.write_blob(content.as_bytes()).unwrap().detach();
            editor.upsert(*path, EntryKind::Blob, blob).unwrap();
        }
        let tree = editor.write().unwrap().detach();
        let signature = gix::actor::SignatureRef {
            name: "t".into(),
            email: "t@example.com".into(),
            time: "1700000000 +0000",
        };
        repo.new_commit_as(signature, signature, "m", tree, parent)
            .unwrap()
            .id
    }

    #[test]
    fn the_pack_holds_what_the_commit_adds_and_git_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo = gix::init_bare(dir.path().join("r.git")).unwrap();
        let big: Vec<(String, String)> = (0..50)
            .map(|i| (format!("src/d{}/f{i}", i % 5), "x".repeat(i * 7)))
            .collect();
        let big: Vec<(&str, &str)> = big.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
        let base = commit(&repo, None, &big);
        let head = commit(
            &repo,
            Some(base),
            &[
                ("infra/gen/a.tf", "a"),
                ("infra/gen/b.tf", "b"),
                ("src/d1/f1", "changed"),
            ],
        );
        let ids = added_objects(&repo, head, &[base]).unwrap();
        // The commit; root, infra, infra/gen, src, src/d1; a, b, f1's blob.
        assert_eq!(ids.len(), 9, "{ids:?}");
        assert!(ids.iter().all(|id| repo.has_object(id)));

        // Git takes the pack into a repository holding the base, and then
        // has everything the commit reaches.
        let other = dir.path().join("o.git");
        gix::init_bare(&other).unwrap();
        let base_pack = write(&repo, &everything(&repo, base)).unwrap();
        git(&other, &["index-pack", "--stdin"], Some(&base_pack));
        let pack = write(&repo, &ids).unwrap();
        git(&other, &["index-pack", "--stdin", "--strict"], Some(&pack));
        git(
            &other,
            &["update-ref", "refs/heads/main", &head.to_string()],
            None,
        );
        git(
            &other,
            &["fsck", "--connectivity-only", "--no-dangling"],
            None,
        );
        let listed = git(&other, &["ls-tree", "-r", "--name-only", "main"], None);
        assert_eq!(listed.lines().count(), 52);
    }

    #[test]
    fn what_the_branch_had_already_is_not_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let repo = gix::init_bare(dir.path().join("r.git")).unwrap();
        let base = commit(&repo, None, &[("src/x", "x")]);
        let old = commit(
            &repo,
            Some(base),
            &[("infra/gen/a.tf", "a"), ("infra/gen/b.tf", "b")],
        );
        // Upstream moved on; the overlay again on its head, one file changed.
        let main = commit(&repo, Some(base), &[("src/y", "y")]);
        let head = commit(
            &repo,
            Some(main),
            &[("infra/gen/a.tf", "a"), ("infra/gen/b.tf", "b2")],
        );
        let a = repo.write_blob(b"a").unwrap().detach();
        let ids = added_objects(&repo, head, &[main, old]).unwrap();
        // The commit, root, infra, infra/gen and b2's blob: not a's.
        assert_eq!(ids.len(), 5, "{ids:?}");
        assert!(!ids.contains(&a));
        assert!(added_objects(&repo, head, &[main]).unwrap().contains(&a));
    }

    /// Every object `commit` reaches (it has no parent).
    fn everything(repo: &gix::Repository, commit: ObjectId) -> Vec<ObjectId> {
        let empty = ObjectId::empty_tree(repo.object_hash());
        let mut added = Added {
            ids: vec![commit],
            seen: HashSet::from([commit]),
        };
        added
            .tree(repo, commit_tree(repo, commit).unwrap(), &[])
            .unwrap();
        assert!(!added.ids.contains(&empty));
        added.ids
    }
}
