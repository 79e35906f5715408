//! One persistent bare mirror per repository under the work directory,
//! fetched incrementally with gix so only new objects cross the wire.
//!
//! Safety: inside a process, one async lock per mirror; across processes
//! sharing the disk, an exclusive file lock next to the mirror. A fetch
//! marks the mirror while it runs and unmarks it whatever the outcome, so a
//! mark found later means a process died mid-fetch: that mirror, like one
//! with a ref lock left behind (held by nobody while we hold the file
//! lock), one that does not open, or one whose branches do not resolve to a
//! commit and tree, is re-created rather than trusted.
//!
//! A stalled server cannot hold the mirror for ever: the transport gives up
//! after 20 s without a connection and 30 s without a byte.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use gix::ObjectId;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::{GitAuth, GitError, local, local as local_error, scrub::scrub};

const IN_PROGRESS: &str = "graft-fetch-in-progress";

/// Where mirrors live, and the in-process locks that keep one writer each.
#[derive(Debug, Clone)]
pub struct MirrorCache {
    root: PathBuf,
    locks: Arc<std::sync::Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>>,
}

/// A locked mirror: while it is held no other job of this process touches
/// the same repository on disk.
#[derive(Debug)]
pub struct Mirror {
    pub path: PathBuf,
    _guard: OwnedMutexGuard<()>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOutcome {
    /// Branch name → head commit, as the remote has them now.
    pub heads: BTreeMap<String, ObjectId>,
    /// Objects received in this fetch (0 when nothing was new).
    pub objects_received: u64,
    /// The mirror was (re-)created by this fetch.
    pub created: bool,
}

/// A readable folder name for a repository, unique by a short hash.
fn mirror_dir_name(key: &str) -> String {
    let readable: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let digest = hex::encode(&Sha256::digest(key.as_bytes())[..6]);
    format!("{readable}-{digest}.git")
}

impl MirrorCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        MirrorCache {
            root: root.into(),
            locks: Arc::default(),
        }
    }

    pub fn path_for(&self, key: &str) -> PathBuf {
        self.root.join("mirrors").join(mirror_dir_name(key))
    }

    /// Waits for exclusive use of the mirror of `key` (e.g. `github/o/r`).
    pub async fn lock(&self, key: &str) -> Mirror {
        let path = self.path_for(key);
        let lock = self.in_process_lock(&path);
        Mirror {
            path,
            _guard: lock.lock_owned().await,
        }
    }

    /// This process's lock of the mirror at `path`.
    fn in_process_lock(&self, path: &Path) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(path.to_path_buf()).or_default().clone()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes the mirrors no fetch has used since `before` (a repository
    /// whose projects are gone or idle), so the volume does not fill with
    /// clones nobody needs; the next sync of such a repository clones it
    /// afresh. A mirror in use, here or in another process, is skipped.
    /// The lock file stays: deleting it could let two processes each lock
    /// a different file for the same mirror. Blocking.
    pub fn prune_unused(&self, before: std::time::SystemTime) -> std::io::Result<usize> {
        let folder = self.root.join("mirrors");
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            // One mirror that cannot be looked at (another process pruning
            // it right now, say) must not stop the sweep.
            match self.prune_entry(&folder, &entry, before) {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(entry = %entry.path().display(), error = %e, "retention: could not prune")
                }
            }
        }
        Ok(removed)
    }

    /// Removes one mirror (given by its lock file) if unused since
    /// `before`, or a leftover of a removal that failed; whether a mirror
    /// went.
    fn prune_entry(
        &self,
        folder: &Path,
        entry: &std::fs::DirEntry,
        before: std::time::SystemTime,
    ) -> std::io::Result<bool> {
        let lock_path = entry.path();
        if entry.file_name().to_string_lossy().starts_with(TRASH) {
            std::fs::remove_dir_all(&lock_path)?;
            return Ok(false);
        }
        let mirror = lock_path.with_extension("git");
        if lock_path.extension().is_none_or(|e| e != "lock") || !mirror.is_dir() {
            return Ok(false);
        }
        if last_used(&mirror)? >= before {
            return Ok(false);
        }
        let here = self.in_process_lock(&mirror);
        let Ok(_here) = here.try_lock() else {
            return Ok(false); // a job of this process holds it
        };
        let file = std::fs::OpenOptions::new().write(true).open(&lock_path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        // A fetch may have finished between the first look and the lock.
        if last_used(&mirror)? >= before {
            return Ok(false);
        }
        // Out of the way first, in one step: a removal that fails half-way
        // must not leave half a mirror under its name.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let trash = folder.join(format!(
            "{TRASH}{nanos}-{}",
            entry.file_name().to_string_lossy()
        ));
        std::fs::rename(&mirror, &trash)?;
        std::fs::remove_dir_all(&trash)?;
        Ok(true)
    }
}

/// Prefix of a mirror being removed.
const TRASH: &str = ".trash-";

/// When a fetch last used the mirror: every fetch (of any build) writes
/// and removes its marker in the mirror's folder, which moves the folder's
/// time.
fn last_used(mirror: &Path) -> std::io::Result<std::time::SystemTime> {
    std::fs::metadata(mirror)?.modified()
}

impl Mirror {
    /// Opens the mirror for reading and writing objects (thread-local).
    pub fn open(&self) -> Result<gix::Repository, GitError> {
        open(&self.path)
    }
}

pub(crate) fn open(path: &Path) -> Result<gix::Repository, GitError> {
    gix::open_opts(path, gix::open::Options::isolated()).map_err(local)
}

/// Brings the mirror at `path` up to date with `url` (all branches, whole
/// history; branches gone upstream are removed), for a caller that holds
/// its [`Mirror`] lock. Takes the cross-process file lock itself. Blocking:
/// call it from `spawn_blocking`. A sync fetches less: see [`fetch_wanted`].
pub fn fetch_path(path: &Path, url: &str, auth: &GitAuth) -> Result<FetchOutcome, GitError> {
    locked(path, |path, created| {
        let objects_received = fetch_all_heads(path, url, auth)?;
        Ok(FetchOutcome {
            heads: heads(path)?,
            objects_received,
            created,
        })
    })
}

/// What a sync needs in the mirror, and nothing more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Want {
    /// Branches to bring up to date: the target first. A new mirror gets
    /// their head commits only (the cost follows the head tree, not the
    /// history), a kept one the commits since (see [`fetch_wanted`]).
    /// Other branches in the mirror are neither fetched nor trusted.
    pub branches: Vec<String>,
    /// Commits the caller will read (the heads graft saw last time), from
    /// the remote by id when the mirror lacks them; one that the remote
    /// no longer has is left out, as if the mirror never had it.
    pub commits: Vec<ObjectId>,
}

/// Brings the `want`ed branches of the mirror at `path` up to date with
/// `url`, plus the wanted commits it lacks; a wanted branch gone upstream
/// is removed. The outcome's heads are the wanted branches only. Same
/// locking as [`fetch_path`]. Blocking.
///
/// A mirror without the first wanted branch (the target) gets each branch
/// at depth 1: the cost follows the head tree, not the history. One that
/// has it negotiates from what it holds and receives the commits made
/// since, without deepening: asking the server to cut the history at the
/// new head again makes it walk the whole head tree (~200 ms measured on a
/// 100k-file tree, against ~1 ms), where the commits since the last sync
/// are a few objects. A target whose history was rewritten then costs its
/// history once.
pub fn fetch_wanted(
    path: &Path,
    url: &str,
    auth: &GitAuth,
    want: &Want,
) -> Result<FetchOutcome, GitError> {
    locked(path, |path, created| {
        let refspecs: Vec<String> = want
            .branches
            .iter()
            .map(|b| format!("+refs/heads/{b}:refs/heads/{b}"))
            .collect();
        let shallow = match want.branches.first() {
            Some(target) if !created && heads(path)?.contains_key(target) => {
                gix::remote::fetch::Shallow::NoChange
            }
            _ => depth_one(),
        };
        let (mut objects_received, remote_refs) =
            fetch_refspecs(path, url, auth, &refspecs, shallow)?;
        let wanted: std::collections::HashSet<String> = want
            .branches
            .iter()
            .map(|b| format!("refs/heads/{b}"))
            .collect();
        prune_branches(path, |name| {
            wanted.contains(name) && !remote_refs.contains(name)
        })?;
        let missing: Vec<String> = {
            let repo = open(path)?;
            want.commits
                .iter()
                .filter(|id| repo.find_commit(**id).is_err())
                .map(|id| id.to_string())
                .collect()
        };
        // One at a time: a server refuses the whole request for one id it
        // no longer has (history rewritten), and that one is not an error:
        // the reader sees it missing, as before.
        for commit in missing {
            match fetch_refspecs(path, url, auth, &[commit], depth_one()) {
                Ok((received, _)) => objects_received += received,
                Err(e) => tracing::debug!(error = %e, "an earlier commit not fetched by id"),
            }
        }
        let heads = heads(path)?
            .into_iter()
            .filter(|(name, _)| want.branches.contains(name))
            .collect();
        Ok(FetchOutcome {
            heads,
            objects_received,
            created,
        })
    })
}

/// Deepens `branch` in the mirror at `path` down to where it leaves
/// `base` (every commit on `branch` not on `base`), so that who committed
/// to it can be read. Best effort: on failure the history stays as it was.
/// Blocking.
pub fn deepen_branch(
    path: &Path,
    url: &str,
    auth: &GitAuth,
    branch: &str,
    base: &str,
) -> Result<u64, GitError> {
    locked(path, |path, _| {
        let base = gix::refs::PartialName::try_from(format!("refs/heads/{base}")).map_err(local)?;
        let shallow = gix::remote::fetch::Shallow::Exclude {
            remote_refs: vec![base],
            since_cutoff: None,
        };
        let refspec = format!("+refs/heads/{branch}:refs/heads/{branch}");
        Ok(fetch_refspecs(path, url, auth, &[refspec], shallow)?.0)
    })
}

fn depth_one() -> gix::remote::fetch::Shallow {
    gix::remote::fetch::Shallow::DepthAtRemote(std::num::NonZeroU32::MIN)
}

/// Runs `work` on the mirror at `path` with the cross-process lock held,
/// the mirror sound (re-created if need be: `work` is told) and marked as
/// being fetched while `work` runs.
fn locked<T>(
    path: &Path,
    work: impl FnOnce(&Path, bool) -> Result<T, GitError>,
) -> Result<T, GitError> {
    let parent = path
        .parent()
        .ok_or_else(|| local("mirror path has no parent"))?;
    std::fs::create_dir_all(parent).map_err(local)?;
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("lock"))
        .map_err(local)?;
    lock_file.lock().map_err(local)?;
    let created = ensure_sound(path)?;
    let marker = path.join(IN_PROGRESS);
    std::fs::write(&marker, b"").map_err(local)?;
    // A failed fetch leaves the mirror as it was (gix writes the pack
    // and then the refs); only a killed process leaves the mark.
    let result = work(path, created);
    std::fs::remove_file(&marker).map_err(local)?;
    result
}

fn heads(path: &Path) -> Result<BTreeMap<String, ObjectId>, GitError> {
    {
        let repo = open(path)?;
        let mut heads = BTreeMap::new();
        let platform = repo.references().map_err(local)?;
        for reference in platform.local_branches().map_err(local)? {
            let mut reference = reference.map_err(|e| local(e.to_string()))?;
            let name = reference.name().shorten().to_string();
            let id = reference.peel_to_id().map_err(local)?.detach();
            heads.insert(name, id);
        }
        Ok(heads)
    }
}

/// Marks the mirror at `path` as not to be trusted (the same mark a fetch
/// killed half-way leaves), so the next fetch re-creates it. Best effort.
pub fn mark_untrusted(path: &Path) {
    if path.is_dir() {
        let _ = std::fs::write(path.join(IN_PROGRESS), b"");
    }
}

/// Makes sure a usable bare repository is at `path`; re-creates it when it
/// is missing, unreadable, or was left mid-fetch with objects missing.
/// Returns whether it was (re-)created.
fn ensure_sound(path: &Path) -> Result<bool, GitError> {
    let sound = path.exists()
        && !path.join(IN_PROGRESS).exists()
        && !has_stale_ref_locks(path)
        && match open(path) {
            // Cheap enough to do every time: a handful of branches.
            Ok(repo) => refs_resolve(&repo),
            Err(_) => false,
        };
    if sound {
        return Ok(false);
    }
    if path.exists() {
        tracing::warn!(mirror = %path.display(), "mirror unusable (interrupted fetch or corruption); re-creating it");
        std::fs::remove_dir_all(path).map_err(local)?;
    }
    gix::init_bare(path).map_err(local)?;
    Ok(true)
}

/// A `*.lock` of git's ref transactions: with the mirror's file lock held,
/// whoever took it is gone, and every later ref update would fail on it.
fn has_stale_ref_locks(path: &Path) -> bool {
    if path.join("packed-refs.lock").exists() || path.join("HEAD.lock").exists() {
        return true;
    }
    let mut folders = vec![path.join("refs")];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let entry_path = entry.path();
            if entry_path.is_dir() {
                folders.push(entry_path);
            } else if entry_path.extension().is_some_and(|e| e == "lock") {
                return true;
            }
        }
    }
    false
}

/// Every local branch points at a commit whose tree is present.
fn refs_resolve(repo: &gix::Repository) -> bool {
    let check = || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let platform = repo.references()?;
        for reference in platform.local_branches()? {
            let mut reference = reference?;
            let id = reference.peel_to_id()?;
            let commit = repo.find_commit(id)?;
            repo.find_tree(commit.tree_id()?)?;
        }
        Ok(())
    };
    check().is_ok()
}

fn fetch_all_heads(path: &Path, url: &str, auth: &GitAuth) -> Result<u64, GitError> {
    let (received, remote_refs) = fetch_refspecs(
        path,
        url,
        auth,
        &["+refs/heads/*:refs/heads/*".to_string()],
        gix::remote::fetch::Shallow::NoChange,
    )?;
    // A merged and deleted sync branch must not look alive.
    prune_branches(path, |name| !remote_refs.contains(name))?;
    Ok(received)
}

/// One fetch of `refspecs` with `shallow`; the objects received and the
/// names of the refs the remote listed for them.
fn fetch_refspecs(
    path: &Path,
    url: &str,
    auth: &GitAuth,
    refspecs: &[String],
    shallow: gix::remote::fetch::Shallow,
) -> Result<(u64, std::collections::HashSet<String>), GitError> {
    let secrets = auth.secrets();
    let fail = |e: &dyn std::fmt::Display| classify_fetch_error(&scrub(&e.to_string(), &secrets));
    let header = format!("http.extraHeader={}", auth.header());
    let repo = gix::open_opts(
        path,
        // A redirect could point at another host, which would then receive
        // the token header: graft follows none (the forge gave the clone URL).
        gix::open::Options::isolated()
            .config_overrides([header, "http.followRedirects=false".to_string()]),
    )
    .map_err(local)?;
    let remote = repo
        .remote_at(url)
        .map_err(|e| fail(&e))?
        .with_refspecs(
            refspecs.iter().map(String::as_str),
            gix::remote::Direction::Fetch,
        )
        .map_err(|e| fail(&e))?;
    let connection = remote
        .connect(gix::remote::Direction::Fetch)
        .map_err(|e| fail(&e))?;
    let prepared = connection
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(|e| fail(&e))?;
    let remote_refs: std::collections::HashSet<String> = prepared
        .ref_map()
        .remote_refs
        .iter()
        .map(|r| r.unpack().0.to_string())
        .collect();
    // None of the named branches exists (yet): nothing to receive, and gix
    // would call that an error.
    if prepared.ref_map().mappings.is_empty() {
        return Ok((0, remote_refs));
    }
    // Every branch at a commit the mirror holds (nothing moved, the
    // usual case for a reconcile): no pack to ask for, just the refs.
    let deepening = matches!(shallow, gix::remote::fetch::Shallow::Exclude { .. });
    let mappings = &prepared.ref_map().mappings;
    if !deepening
        && mappings
            .iter()
            .all(|m| m.remote.as_id().is_some_and(|id| repo.has_object(id)))
    {
        for mapping in mappings {
            if let (Some(id), Some(local)) = (mapping.remote.as_id(), mapping.local.as_ref()) {
                let name = gix::refs::FullName::try_from(local.clone()).map_err(local_error)?;
                repo.reference(
                    name,
                    id.to_owned(),
                    gix::refs::transaction::PreviousValue::Any,
                    "fetch: already present",
                )
                .map_err(local_error)?;
            }
        }
        return Ok((0, remote_refs));
    }
    let outcome = prepared
        .with_shallow(shallow)
        .receive(gix::progress::Discard, &AtomicBool::new(false))
        .map_err(|e| fail(&e))?;
    let received = match &outcome.status {
        gix::remote::fetch::Status::Change {
            write_pack_bundle, ..
        } => {
            if let Some(keep) = &write_pack_bundle.keep_path {
                let _ = std::fs::remove_file(keep);
            }
            u64::from(write_pack_bundle.index.num_objects)
        }
        _ => 0,
    };
    Ok((received, remote_refs))
}

/// Deletes the local branches (full names) that `stale` picks.
fn prune_branches(path: &Path, stale: impl Fn(&str) -> bool) -> Result<(), GitError> {
    let repo = open(path)?;
    let platform = repo.references().map_err(local)?;
    let mut doomed = Vec::new();
    for reference in platform.local_branches().map_err(local)? {
        let reference = reference.map_err(|e| local(e.to_string()))?;
        if stale(&reference.name().as_bstr().to_string()) {
            doomed.push(reference.name().to_owned());
        }
    }
    for name in doomed {
        repo.edit_reference(gix::refs::transaction::RefEdit {
            change: gix::refs::transaction::Change::Delete {
                expected: gix::refs::transaction::PreviousValue::Any,
                log: gix::refs::transaction::RefLog::AndReference,
            },
            name,
            deref: false,
        })
        .map_err(local)?;
    }
    Ok(())
}

/// Sorts a (scrubbed) fetch failure into graft's classes by what the
/// transport said.
pub fn classify_fetch_error(message: &str) -> GitError {
    let lower = message.to_ascii_lowercase();
    let has = |needle: &str| lower.contains(needle);
    if has("401")
        || has("403")
        || has("authentication")
        || has("unauthorized")
        || has("forbidden")
        || has("credentials")
    {
        GitError::Auth(message.to_string())
    } else if has("404") || has("not found") {
        GitError::NotFound(message.to_string())
    } else if has("timed out")
        || has("timeout")
        || has("connection refused")
        || has("connect")
        || has("dns")
        || has("resolve")
        || has("502")
        || has("503")
        || has("504")
        || has("500")
        || has("io error")
    {
        GitError::Network(message.to_string())
    } else {
        GitError::Other(message.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_names_are_readable_and_distinct() {
        let a = mirror_dir_name("github/acme/infra");
        let b = mirror_dir_name("github/acme_infra");
        assert!(a.starts_with("github_acme_infra-") && a.ends_with(".git"));
        assert_ne!(a, b);
        assert!(!mirror_dir_name("../../etc").contains('/'));
    }

    #[test]
    fn fetch_errors_are_classified() {
        assert!(matches!(
            classify_fetch_error("HTTP status 401"),
            GitError::Auth(_)
        ));
        assert!(matches!(
            classify_fetch_error("received 404 Not Found"),
            GitError::NotFound(_)
        ));
        assert!(matches!(
            classify_fetch_error("Connection refused"),
            GitError::Network(_)
        ));
        assert!(matches!(classify_fetch_error("weird"), GitError::Other(_)));
    }

    /// A mirror as a fetch leaves it: the bare repository and its lock
    /// file, last used (its folder's time) `age` ago.
    fn mirror_used_ago(cache: &MirrorCache, key: &str, age: std::time::Duration) -> PathBuf {
        let path = cache.path_for(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        gix::init_bare(&path).unwrap();
        std::fs::File::create(path.with_extension("lock")).unwrap();
        std::fs::File::open(&path)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - age)
            .unwrap();
        path
    }

    #[tokio::test]
    async fn mirrors_unused_for_long_are_removed_unless_in_use() {
        let root = tempfile::tempdir().unwrap();
        let cache = MirrorCache::new(root.path());
        let day = std::time::Duration::from_secs(86_400);
        let idle = mirror_used_ago(&cache, "github/acme/idle", 40 * day);
        let recent = mirror_used_ago(&cache, "github/acme/recent", day);
        let fetching_elsewhere = mirror_used_ago(&cache, "github/acme/other", 40 * day);
        let in_use_here = mirror_used_ago(&cache, "github/acme/here", 40 * day);
        // A removal that failed half-way.
        let trash = root
            .path()
            .join("mirrors/.trash-1-github_acme_gone-abc.lock");
        std::fs::create_dir_all(trash.join("objects")).unwrap();
        // Another process fetching holds the file lock...
        let other = std::fs::OpenOptions::new()
            .write(true)
            .open(fetching_elsewhere.with_extension("lock"))
            .unwrap();
        other.lock().unwrap();
        // ...and a job of this process holds the mirror.
        let held = cache.lock("github/acme/here").await;

        let cutoff = std::time::SystemTime::now() - 30 * day;
        assert_eq!(cache.prune_unused(cutoff).unwrap(), 1);
        assert!(!idle.exists(), "an idle mirror goes");
        assert!(idle.with_extension("lock").exists(), "its lock file stays");
        assert!(recent.is_dir() && fetching_elsewhere.is_dir() && in_use_here.is_dir());
        assert!(!trash.exists(), "leftovers of a failed removal go");

        drop(held);
        other.unlock().unwrap();
        assert_eq!(cache.prune_unused(cutoff).unwrap(), 2);
        assert!(recent.is_dir());
        // Nothing left to do, and no mirrors folder at all is fine too.
        assert_eq!(cache.prune_unused(cutoff).unwrap(), 0);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            MirrorCache::new(empty.path()).prune_unused(cutoff).unwrap(),
            0
        );
    }
}
