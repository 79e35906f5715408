//! The git engine against real repositories served over smart HTTP: mirror
//! fetches, the object-level overlay, validation, the check command, and
//! push with its failure classes.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use gix::ObjectId;
use graft::git::mirror::{FetchOutcome, Mirror, MirrorCache};
use graft::git::overlay::{self, ManagedFile, OverlayInput};
use graft::git::push::{PushMode, PushRequest, push};
use graft::git::read::{ChangeKind, commit_tree, diff_commits, list_subtree};
use graft::git::validate::{self, Severity};
use graft::git::{GitAuth, GitError, Identity, check};
use support::git_host::{GitHost, Special};

const TOKEN: &str = "ghs_test_token_123456";
const REPO: &str = "acme/infra";

struct World {
    host: GitHost,
    cache: MirrorCache,
    _work: tempfile::TempDir,
}

impl World {
    async fn new() -> World {
        let host = GitHost::start().await;
        host.allow_token(TOKEN, "graft[bot]");
        host.create_repo(REPO);
        let work = tempfile::tempdir().unwrap();
        World {
            cache: MirrorCache::new(work.path()),
            host,
            _work: work,
        }
    }

    fn url(&self) -> String {
        self.host.clone_url(REPO)
    }

    async fn fetch_with(&self, token: &str) -> (Mirror, Result<FetchOutcome, GitError>) {
        let mirror = self.cache.lock("test/acme/infra").await;
        let url = self.url();
        let auth = GitAuth::new("x-access-token", token.to_string().into());
        let path = mirror.path.clone();
        let result = tokio::task::spawn_blocking(move || fetch_at(&path, &url, &auth))
            .await
            .unwrap();
        (mirror, result)
    }

    async fn fetch(&self) -> (Mirror, FetchOutcome) {
        let (mirror, result) = self.fetch_with(TOKEN).await;
        (mirror, result.expect("fetch"))
    }
}

/// `Mirror::fetch` needs a locked `Mirror`; in a blocking thread we go by
/// path through a fresh cache (the lock is held by the caller).
fn fetch_at(path: &std::path::Path, url: &str, auth: &GitAuth) -> Result<FetchOutcome, GitError> {
    graft::git::mirror::fetch_path(path, url, auth)
}

fn file(path: &str, content: &str) -> ManagedFile {
    ManagedFile {
        path: path.to_string(),
        content: content.as_bytes().to_vec(),
        executable: false,
    }
}

struct Synced {
    commit: Option<ObjectId>,
    changes: Vec<(String, ChangeKind)>,
}

/// Fetch → overlay onto `main` → commit → push to `branch`: the whole
/// clone-and-overlay path.
async fn sync(
    world: &World,
    base_path: &str,
    files: &[ManagedFile],
    deletions: &[String],
    branch: &str,
) -> Synced {
    let (mirror, fetched) = world.fetch().await;
    let head = fetched.heads.get("main").copied();
    let repo = mirror.open().unwrap();
    let base_tree = commit_tree(&repo, head).unwrap();
    let managed: HashSet<String> = HashSet::new();
    let built = overlay::build(
        &repo,
        OverlayInput {
            base_tree,
            base_path,
            files,
            deletions,
            previously_managed: &managed,
        },
    )
    .unwrap();
    let changes = built
        .changes
        .iter()
        .map(|c| (c.path.clone(), c.kind))
        .collect();
    if built.is_empty() {
        return Synced {
            commit: None,
            changes,
        };
    }
    let message = overlay::commit_message(
        &built,
        &overlay::CommitInfo {
            project: "acme",
            source: Some("test-gen"),
            extra: None,
        },
    );
    let commit = overlay::commit(&repo, &built, head, &Identity::default(), &message).unwrap();
    let auth = GitAuth::new("x-access-token", TOKEN.to_string().into());
    push(PushRequest {
        mirror: &mirror.path,
        url: &world.url(),
        auth: &auth,
        commit,
        branch,
        mode: PushMode::FastForward,
        timeout: Duration::from_secs(30),
        advertised: None,
    })
    .await
    .expect("push");
    Synced {
        commit: Some(commit),
        changes,
    }
}

fn outside(
    tree: &BTreeMap<String, (String, String)>,
    prefix: &str,
) -> BTreeMap<String, (String, String)> {
    tree.iter()
        .filter(|(p, _)| !p.starts_with(prefix))
        .map(|(p, v)| (p.clone(), v.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_into_an_empty_repository() {
    let world = World::new().await;
    let synced = sync(
        &world,
        "infra/gen",
        &[file("main.tf", "# hi\n")],
        &[],
        "main",
    )
    .await;
    let head = world.host.head(REPO, "main").unwrap();
    assert_eq!(Some(head.clone()), synced.commit.map(|c| c.to_string()));
    let tree = world.host.tree(REPO, &head);
    assert_eq!(tree.keys().collect::<Vec<_>>(), vec!["infra/gen/main.tf"]);
    let log = world.host.log(REPO, "main");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].1, "graft[bot]@users.noreply.github.com");
    assert!(
        log[0].2.contains("1 added, 0 modified, 0 deleted"),
        "{:?}",
        log[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_leaves_unmanaged_files_byte_for_byte_and_deletes_only_its_own() {
    let world = World::new().await;
    let human = world.host.commit(
        REPO,
        "main",
        &[
            ("README.md", Some(b"# repo\n")),
            ("modules/vpc/main.tf", Some(b"variable \"cidr\" {}\n")),
            (
                "infra/gen/hand-written.tf",
                Some(b"# a human's file next to graft's\n"),
            ),
            ("infra/gen/old.tf", Some(b"# graft used to manage this\n")),
            ("infra/other/x.yaml", Some(b"a: 1\n")),
        ],
        "human setup",
    );
    let before = world.host.tree(REPO, &human);
    let files = [
        file(
            "main.tf",
            "module \"vpc\" {\n  source = \"../../modules/vpc\"\n}\n",
        ),
        file("env/prod.tfvars", "cidr = \"10.0.0.0/16\"\n"),
    ];
    let synced = sync(
        &world,
        "infra/gen",
        &files,
        &["old.tf".to_string(), "never-existed.tf".to_string()],
        "graft/acme",
    )
    .await;
    let mut changes = synced.changes.clone();
    changes.sort();
    assert_eq!(
        changes,
        vec![
            ("env/prod.tfvars".into(), ChangeKind::Added),
            ("main.tf".into(), ChangeKind::Added),
            ("old.tf".into(), ChangeKind::Deleted)
        ]
    );
    let head = world.host.head(REPO, "graft/acme").unwrap();
    let after = world.host.tree(REPO, &head);
    let managed = [
        "infra/gen/main.tf",
        "infra/gen/env/prod.tfvars",
        "infra/gen/old.tf",
    ];
    let unmanaged = |t: &BTreeMap<String, (String, String)>| {
        t.iter()
            .filter(|(p, _)| !managed.contains(&p.as_str()))
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        unmanaged(&before),
        unmanaged(&after),
        "unmanaged files are untouched"
    );
    assert!(!after.contains_key("infra/gen/old.tf"));
    assert_eq!(
        world.host.file(REPO, &head, "infra/gen/main.tf").unwrap(),
        files[0].content
    );
    assert_eq!(
        world.host.head(REPO, "main").as_deref(),
        Some(human.as_str()),
        "main untouched"
    );
    assert_eq!(
        outside(&before, "infra/gen/"),
        outside(&after, "infra/gen/")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_without_changes_creates_no_commit() {
    let world = World::new().await;
    world.host.commit(
        REPO,
        "main",
        &[("infra/main.tf", Some(b"# same\n"))],
        "seed",
    );
    let synced = sync(&world, "infra", &[file("main.tf", "# same\n")], &[], "main").await;
    assert_eq!(synced.commit, None);
    assert!(synced.changes.is_empty());
    assert_eq!(world.host.log(REPO, "main").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executable_bit_is_kept() {
    let world = World::new().await;
    let script = ManagedFile {
        path: "run.sh".into(),
        content: b"#!/bin/sh\necho\n".to_vec(),
        executable: true,
    };
    sync(&world, "", &[script, file("plain.txt", "x")], &[], "main").await;
    let tree = world.host.tree(REPO, "main");
    assert_eq!(tree["run.sh"].0, "100755");
    assert_eq!(tree["plain.txt"].0, "100644");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_are_incremental() {
    let world = World::new().await;
    let many: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| (format!("src/f{i}.txt"), format!("{i}\n").into_bytes()))
        .collect();
    let refs: Vec<(&str, Option<&[u8]>)> = many
        .iter()
        .map(|(p, c)| (p.as_str(), Some(c.as_slice())))
        .collect();
    world.host.commit(REPO, "main", &refs, "big");
    let (_m, first) = world.fetch().await;
    assert!(first.created);
    assert!(first.objects_received > 200, "{}", first.objects_received);
    drop(_m);
    let moved = world
        .host
        .commit(REPO, "main", &[("src/f1.txt", Some(b"changed\n"))], "small");
    let (_m, second) = world.fetch().await;
    assert!(!second.created);
    assert!(
        second.objects_received <= 5,
        "only new objects cross the wire: {}",
        second.objects_received
    );
    assert_eq!(second.heads["main"].to_string(), moved);
    drop(_m);
    let (_m, third) = world.fetch().await;
    assert_eq!(third.objects_received, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_keeps_its_mirror_from_retention_and_a_pruned_one_is_cloned_again() {
    let world = World::new().await;
    let head = world
        .host
        .commit(REPO, "main", &[("a.txt", Some(b"a\n"))], "first");
    let (mirror, _) = world.fetch().await;
    let path = mirror.path.clone();
    drop(mirror);
    let day = std::time::Duration::from_secs(86_400);
    // A fetch moves the mirror folder's time; that is its last use.
    let age = |ago: std::time::Duration| {
        std::fs::File::open(&path)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - ago)
            .unwrap();
    };
    let cutoff = std::time::SystemTime::now() - 30 * day;

    // Last used 40 days ago, then fetched: in use again, so kept.
    age(40 * day);
    let (mirror, again) = world.fetch().await;
    assert!(!again.created);
    drop(mirror);
    assert_eq!(world.cache.prune_unused(cutoff).unwrap(), 0);
    assert!(path.is_dir());

    // Left alone for 40 days: removed; the next fetch clones afresh. (A
    // process another test is spawning can hold a copy of the fetch's
    // lock for a moment, and a held lock is skipped: hence the polling.)
    age(40 * day);
    support::eventually(
        "the idle mirror removed",
        Duration::from_secs(10),
        || async { (world.cache.prune_unused(cutoff).unwrap() == 1).then_some(()) },
    )
    .await;
    assert!(!path.exists());
    let (_mirror, fresh) = world.fetch().await;
    assert!(fresh.created);
    assert_eq!(fresh.heads["main"].to_string(), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_remote_branches_disappear_from_the_mirror() {
    let world = World::new().await;
    world.host.commit(REPO, "main", &[("a", Some(b"a"))], "a");
    world
        .host
        .commit(REPO, "graft/x", &[("b", Some(b"b"))], "b");
    let (_m, fetched) = world.fetch().await;
    assert!(fetched.heads.contains_key("graft/x"));
    drop(_m);
    support::git_host::git(&world.host.repo_dir(REPO), &["branch", "-D", "graft/x"]);
    let (_m, fetched) = world.fetch().await;
    assert!(
        !fetched.heads.contains_key("graft/x"),
        "{:?}",
        fetched.heads
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_fetch_leaves_a_mirror_that_is_repaired() {
    let world = World::new().await;
    let head = world
        .host
        .commit(REPO, "main", &[("a.txt", Some(b"a\n"))], "a");
    let (mirror, _) = world.fetch().await;
    // Simulate a process killed mid-fetch: the marker stays and the pack is gone.
    std::fs::write(mirror.path.join("graft-fetch-in-progress"), b"").unwrap();
    for entry in std::fs::read_dir(mirror.path.join("objects/pack")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    drop(mirror);
    let (mirror, fetched) = world.fetch().await;
    assert!(fetched.created, "the broken mirror was re-created");
    assert_eq!(fetched.heads["main"].to_string(), head);
    let repo = mirror.open().unwrap();
    assert!(
        list_subtree(
            &repo,
            commit_tree(&repo, Some(fetched.heads["main"])).unwrap(),
            ""
        )
        .unwrap()
        .contains_key("a.txt")
    );
    assert!(!mirror.path.join("graft-fetch-in-progress").exists());
    drop(mirror);
    // A branch pointing at an object that is not there: re-created too.
    let path = world.cache.path_for("test/acme/infra");
    std::fs::write(
        path.join("refs/heads/main"),
        format!("{}\n", "1".repeat(40)),
    )
    .unwrap();
    let (mirror, fetched) = world.fetch().await;
    assert!(fetched.created);
    // The mark alone (killed before anything was written): not trusted.
    std::fs::write(mirror.path.join("graft-fetch-in-progress"), b"").unwrap();
    drop(mirror);
    let (mirror, fetched) = world.fetch().await;
    assert!(fetched.created, "a marked mirror is re-created");
    // A ref lock left by a process killed inside a ref update would make
    // every later fetch fail: the mirror is re-created instead.
    std::fs::write(mirror.path.join("refs/heads/main.lock"), b"").unwrap();
    drop(mirror);
    world
        .host
        .commit(REPO, "main", &[("b.txt", Some(b"b\n"))], "b");
    let (mirror, fetched) = world.fetch().await;
    assert!(fetched.created, "a stale ref lock means re-create");
    assert_eq!(
        Some(fetched.heads["main"].to_string()),
        world.host.head(REPO, "main")
    );
    assert!(!mirror.path.join("refs/heads/main.lock").exists());
    drop(mirror);
    // A fetch that fails (here: refused credentials) leaves a sound
    // mirror: no mark, no re-creation afterwards.
    let (mirror, failed) = world.fetch_with("ghs_wrong").await;
    assert!(failed.is_err());
    assert!(!mirror.path.join("graft-fetch-in-progress").exists());
    drop(mirror);
    let (_m, fetched) = world.fetch().await;
    assert!(!fetched.created, "a failed fetch does not cost a re-clone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_missing_a_deep_object_is_re_created_after_the_failure() {
    use graft::git::pipeline::{Request, prepare};
    let world = World::new().await;
    world.host.commit(
        REPO,
        "main",
        &[("infra/gen/deep/old.tf", Some(b"# old\n"))],
        "seed",
    );
    let (mirror, fetched) = world.fetch().await;
    // Lose one tree deep inside the mirror (its branches still resolve, so
    // the cheap check at fetch time cannot see it).
    let git_in = |args: &[&str]| support::git_host::git(&mirror.path, args);
    let pack_dir = mirror.path.join("objects/pack");
    let packs: Vec<std::path::PathBuf> = std::fs::read_dir(&pack_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let kept = tempfile::tempdir().unwrap();
    for pack in &packs {
        std::fs::rename(pack, kept.path().join(pack.file_name().unwrap())).unwrap();
    }
    for pack in std::fs::read_dir(kept.path()).unwrap() {
        let pack = pack.unwrap().path();
        if pack.extension().is_some_and(|e| e == "pack") {
            let bytes = std::fs::read(&pack).unwrap();
            let mut child = std::process::Command::new("git")
                .args(["unpack-objects", "-q"])
                .current_dir(&mirror.path)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(&bytes).unwrap();
            assert!(child.wait().unwrap().success());
        }
    }
    let head = fetched.heads["main"].to_string();
    let tree = git_in(&["rev-parse", &format!("{head}:infra/gen/deep")]);
    let tree = tree.trim();
    std::fs::remove_file(
        mirror
            .path
            .join("objects")
            .join(&tree[..2])
            .join(&tree[2..]),
    )
    .unwrap();
    drop(mirror);
    let request = || Request {
        key: "test/acme/infra".into(),
        url: world.url(),
        auth: GitAuth::new("x-access-token", TOKEN.to_string().into()),
        build_on: "main".into(),
        base_path: "infra/gen".into(),
        files: vec![file("deep/new.tf", "# new\n")],
        deletions: Vec::new(),
        previously_managed: HashSet::new(),
        identity: Identity::default(),
        project: "acme/infra:infra/gen".into(),
        source: None,
        check: None,
    };
    let error = prepare(&world.cache, request()).await.unwrap_err();
    assert!(matches!(error, GitError::MissingObject(_)), "{error:?}");
    // The failure marked the mirror: the next attempt re-creates it and works.
    let prepared = prepare(&world.cache, request()).await.unwrap();
    assert!(prepared.commit.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_missing_object_makes_the_mirror_untrusted() {
    let world = World::new().await;
    world
        .host
        .commit(REPO, "main", &[("a.txt", Some(b"a\n"))], "first");
    let auth = GitAuth::new("x-access-token", TOKEN.to_string().into());
    let fetched = graft::git::pipeline::fetch(&world.cache, "test/acme/infra", &world.url(), &auth)
        .await
        .unwrap();
    let marker = world
        .cache
        .path_for("test/acme/infra")
        .join("graft-fetch-in-progress");
    // A full disk is not the mirror's fault: it stays trusted.
    let full = fetched
        .with_repo(|_| Err::<(), _>(GitError::Local("No space left on device".into())))
        .await;
    assert!(matches!(full, Err(GitError::Local(_))));
    assert!(!marker.exists());
    let gone = fetched
        .with_repo(|_| Err::<(), _>(GitError::MissingObject("object 1234 not found".into())))
        .await;
    assert!(matches!(gone, Err(GitError::MissingObject(_))));
    assert!(marker.exists(), "re-created on the next fetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_an_auth_error_without_the_token() {
    let world = World::new().await;
    world.host.commit(REPO, "main", &[("a", Some(b"a"))], "a");
    // Neither the token nor the Basic credential git sends for it.
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        "x-access-token:ghs_wrong_secret_value",
    );
    let leaks = |text: &str| text.contains("ghs_wrong_secret_value") || text.contains(&basic);
    let (_m, result) = world.fetch_with("ghs_wrong_secret_value").await;
    let error = result.unwrap_err();
    assert!(matches!(error, GitError::Auth(_)), "{error:?}");
    assert!(!leaks(&format!("{error} {error:?}")), "{error:?}");
    drop(_m);

    let (mirror, fetched) = world.fetch().await;
    let auth = GitAuth::new(
        "x-access-token",
        "ghs_wrong_secret_value".to_string().into(),
    );
    let error = push(PushRequest {
        mirror: &mirror.path,
        url: &world.url(),
        auth: &auth,
        commit: fetched.heads["main"],
        branch: "copy",
        mode: PushMode::FastForward,
        timeout: Duration::from_secs(30),
        advertised: None,
    })
    .await
    .unwrap_err();
    assert!(matches!(error, GitError::Auth(_)), "{error:?}");
    let text = format!("{error} {error:?}");
    assert!(!leaks(&text), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_branches_and_stale_leases_are_told_apart() {
    let world = World::new().await;
    world.host.commit(REPO, "main", &[("a", Some(b"a"))], "a");
    let (mirror, fetched) = world.fetch().await;
    let repo = mirror.open().unwrap();
    let main = fetched.heads["main"];
    let tree = commit_tree(&repo, Some(main)).unwrap();
    let built = overlay::build(
        &repo,
        OverlayInput {
            base_tree: tree,
            base_path: "x",
            files: &[file("f", "1")],
            deletions: &[],
            previously_managed: &HashSet::new(),
        },
    )
    .unwrap();
    let commit = overlay::commit(&repo, &built, Some(main), &Identity::default(), "m").unwrap();
    let auth = GitAuth::new("x-access-token", TOKEN.to_string().into());
    let url = world.url();
    let request = |branch, mode| PushRequest {
        mirror: &mirror.path,
        url: &url,
        auth: &auth,
        commit,
        branch,
        mode,
        timeout: Duration::from_secs(30),
        advertised: None,
    };

    world.host.protect_branch(REPO, "main");
    let error = push(request("main", PushMode::FastForward))
        .await
        .unwrap_err();
    assert!(matches!(error, GitError::ProtectedBranch(_)), "{error:?}");
    assert!(error.to_string().contains("GH006"), "{error}");
    assert_eq!(world.host.head(REPO, "main"), Some(main.to_string()));

    // The bot branch: created with a lease that says "must not exist".
    push(request(
        "graft/acme",
        PushMode::ForceWithLease { expected: None },
    ))
    .await
    .unwrap();
    // Someone pushes to it meanwhile; the lease on our old view is stale.
    world
        .host
        .commit(REPO, "graft/acme", &[("human.txt", Some(b"h"))], "human");
    let error = push(request(
        "graft/acme",
        PushMode::ForceWithLease {
            expected: Some(commit),
        },
    ))
    .await
    .unwrap_err();
    assert!(matches!(error, GitError::NonFastForward(_)), "{error:?}");
    let error = push(request(
        "graft/acme",
        PushMode::ForceWithLease { expected: None },
    ))
    .await
    .unwrap_err();
    assert!(matches!(error, GitError::NonFastForward(_)), "{error:?}");
    // And a plain push of a commit that is not a descendant is refused too.
    world.host.unprotect_branch(REPO, "main");
    world
        .host
        .commit(REPO, "main", &[("b", Some(b"b"))], "upstream moved");
    let error = push(request("main", PushMode::FastForward))
        .await
        .unwrap_err();
    assert!(matches!(error, GitError::NonFastForward(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_refuses_symlinks_submodules_and_foreign_swaps() {
    let world = World::new().await;
    world.host.commit(
        REPO,
        "main",
        &[
            ("infra/gen/dir/a.tf", Some(b"#\n")),
            ("infra/gen/file.tf", Some(b"#\n")),
            ("infra/gen/ours/x.tf", Some(b"#\n")),
        ],
        "seed",
    );
    world.host.commit_special(
        REPO,
        "main",
        "infra/gen/link",
        Special::Symlink("../../etc"),
        "link",
    );
    let sub = world.host.head(REPO, "main").unwrap();
    world.host.commit_special(
        REPO,
        "main",
        "infra/gen/vendor",
        Special::Submodule(&sub),
        "submodule",
    );
    let (mirror, fetched) = world.fetch().await;
    let repo = mirror.open().unwrap();
    let tree = commit_tree(&repo, Some(fetched.heads["main"])).unwrap();
    let ours: HashSet<String> = ["ours/x.tf".to_string(), "file.tf".to_string()].into();
    let attempt = |path: &str| {
        overlay::build(
            &repo,
            OverlayInput {
                base_tree: tree,
                base_path: "infra/gen",
                files: &[file(path, "x")],
                deletions: &[],
                previously_managed: &ours,
            },
        )
    };
    use overlay::PlacementError as P;
    let at = |s: &str| format!("infra/gen/{s}");
    for (path, expected) in [
        (
            "link/x.tf",
            P::ThroughSymlink {
                path: "link/x.tf".into(),
                at: at("link"),
            },
        ),
        (
            "link",
            P::ThroughSymlink {
                path: "link".into(),
                at: at("link"),
            },
        ),
        (
            "vendor/x.tf",
            P::ThroughSubmodule {
                path: "vendor/x.tf".into(),
                at: at("vendor"),
            },
        ),
        (
            "vendor",
            P::ThroughSubmodule {
                path: "vendor".into(),
                at: at("vendor"),
            },
        ),
        (
            "dir",
            P::FolderBecomesFile {
                path: "dir".into(),
                at: at("dir"),
            },
        ),
        (
            "dir/a.tf/x",
            P::FileBecomesFolder {
                path: "dir/a.tf/x".into(),
                at: at("dir/a.tf"),
            },
        ),
    ] {
        let error = attempt(path).unwrap_err();
        assert_eq!(error, GitError::Unsafe(expected), "{path}");
        assert!(error.to_string().contains(path), "{path}: {error}");
    }
    for (path, expected) in [
        ("../x", "`..`"),
        (".git/config", ".git"),
        ("a\\b", "backslash"),
        ("/abs", "absolute"),
    ] {
        let error = attempt(path).unwrap_err();
        assert!(matches!(error, GitError::Path(_)), "{path}: {error:?}");
        assert!(error.to_string().contains(expected), "{path}: {error}");
    }
    // Graft's own paths may turn from file into folder and back.
    let swapped = attempt("file.tf/inner.tf").unwrap();
    assert_eq!(swapped.changes.len(), 1);
    let swapped = attempt("ours").unwrap();
    let listing = list_subtree(&repo, swapped.tree, "infra/gen").unwrap();
    assert!(listing.contains_key("ours") && !listing.contains_key("ours/x.tf"));
    // A base path that runs through a link is refused too.
    let error = overlay::build(
        &repo,
        OverlayInput {
            base_tree: tree,
            base_path: "infra/gen/link",
            files: &[file("a.tf", "x")],
            deletions: &[],
            previously_managed: &ours,
        },
    )
    .unwrap_err();
    assert!(matches!(error, GitError::Unsafe(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_resolves_modules_against_the_whole_repository() {
    let world = World::new().await;
    world.host.commit(
        REPO,
        "main",
        &[("modules/vpc/main.tf", Some(b"variable \"cidr\" {}\n"))],
        "modules",
    );
    let (mirror, fetched) = world.fetch().await;
    let repo = mirror.open().unwrap();
    let tree = commit_tree(&repo, Some(fetched.heads["main"])).unwrap();
    let files = vec![
        file(
            "main.tf",
            "module \"vpc\" {\n  source = \"../../modules/vpc\"\n  cidr = \"10.0.0.0/16\"\n}\n",
        ),
        file("sub/child.tf", "output \"x\" { value = 1 }\n"),
        file(
            "uses-sibling.tf",
            "module \"child\" {\n  source = \"./sub\"\n}\n",
        ),
        file(
            "broken-module.tf",
            "module \"db\" {\n  source = \"../../modules/db\"\n}\n",
        ),
        file("broken.tf", "resource \"a\" \"b\" {\n  x = \n"),
        file(
            "k8s/deploy.yaml",
            "apiVersion: v1\nkind: ConfigMap\n---\nkind: [unclosed\n",
        ),
        file("k8s/ok.yml", "a: 1\n---\nb: 2\n"),
        file("settings.json", "{\"a\": 1,}"),
    ];
    let built = overlay::build(
        &repo,
        OverlayInput {
            base_tree: tree,
            base_path: "infra/gen",
            files: &files,
            deletions: &[],
            previously_managed: &HashSet::new(),
        },
    )
    .unwrap();
    let findings = validate::validate(&repo, built.tree, "infra/gen", &files).unwrap();
    let by_file: BTreeMap<&str, &str> = findings
        .iter()
        .map(|f| (f.file.as_str(), f.message.as_str()))
        .collect();
    assert_eq!(
        by_file.keys().copied().collect::<Vec<_>>(),
        vec![
            "infra/gen/broken-module.tf",
            "infra/gen/broken.tf",
            "infra/gen/k8s/deploy.yaml",
            "infra/gen/settings.json"
        ],
        "{findings:#?}"
    );
    assert!(by_file["infra/gen/broken-module.tf"].contains("modules/db"));
    assert!(
        findings
            .iter()
            .all(|f| f.severity == Severity::Error && f.line.is_some()),
        "{findings:#?}"
    );
    assert!(!validate::passed(&findings));
    // The same module source fails when the repository lacks the module:
    // the overlay must include the whole repository.
    let empty = ObjectId::empty_tree(gix::hash::Kind::Sha1);
    let alone = overlay::build(
        &repo,
        OverlayInput {
            base_tree: empty,
            base_path: "infra/gen",
            files: &files[..1],
            deletions: &[],
            previously_managed: &HashSet::new(),
        },
    )
    .unwrap();
    let findings = validate::validate(&repo, alone.tree, "infra/gen", &files[..1]).unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(findings[0].message.contains("modules/vpc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_command_sees_the_overlaid_tree_with_a_clean_environment() {
    let world = World::new().await;
    world.host.commit(
        REPO,
        "main",
        &[
            ("modules/vpc/main.tf", Some(b"# m\n")),
            // Names graft would refuse for a managed file, but the
            // repository's own files are none of its business.
            ("docs/~$draft.docx", Some(b"x")),
            ("docs/odd\\name.txt", Some(b"y")),
        ],
        "m",
    );
    let (mirror, fetched) = world.fetch().await;
    let repo = mirror.open().unwrap();
    let tree = commit_tree(&repo, Some(fetched.heads["main"])).unwrap();
    let built = overlay::build(
        &repo,
        OverlayInput {
            base_tree: tree,
            base_path: "infra",
            files: &[file("main.tf", "# gen\n")],
            deletions: &[],
            previously_managed: &HashSet::new(),
        },
    )
    .unwrap();
    let mut workspace = check::Workspace::new().unwrap();
    workspace.materialize(&repo, built.tree).unwrap();
    let tree = workspace.tree();
    assert_eq!(std::fs::read(tree.join("docs/~$draft.docx")).unwrap(), b"x");
    assert_eq!(
        std::fs::read(tree.join("docs/odd\\name.txt")).unwrap(),
        b"y"
    );
    let run = |command: &str, timeout: Duration| {
        let check = check::Check::new(command, timeout);
        let workspace = &workspace;
        async move { check::run(&check, workspace, "infra", &[]).await }
    };
    // The command sees the whole overlaid tree, and an environment of its
    // own: nothing of graft's (ENCRYPTION_KEY, tokens, this test's
    // variables) gets through.
    let ok = run(
        "test -f modules/vpc/main.tf && test -f \"$GRAFT_BASE_PATH/main.tf\" && env",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert!(ok.passed(), "{ok:?}");
    assert_eq!(ok.finding("x"), None);
    let mut names: Vec<&str> = ok
        .output
        .lines()
        .filter_map(|l| l.split_once('=').map(|(name, _)| name))
        .filter(|name| !["PWD", "SHLVL", "_", "OLDPWD"].contains(name))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "GIT_CEILING_DIRECTORIES",
            "GIT_CONFIG_GLOBAL",
            "GIT_CONFIG_NOSYSTEM",
            "GRAFT_BASE_PATH",
            "HOME",
            "LANG",
            "PATH",
            "TMPDIR"
        ],
        "{}",
        ok.output
    );
    assert!(
        std::env::var_os("CARGO").is_some(),
        "the test's own environment is not empty"
    );

    let failed = run(
        "echo 'plan failed: bad thing' >&2; exit 3",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_eq!(failed.exit_code, Some(3));
    let finding = failed.finding("tofu validate").unwrap();
    assert!(
        finding.message.contains("exited with status 3") && finding.message.contains("bad thing"),
        "{}",
        finding.message
    );

    let slow = run("echo planning...; sleep 30", Duration::from_millis(500))
        .await
        .unwrap();
    assert!(slow.timed_out && !slow.passed());
    assert!(slow.duration < Duration::from_secs(10));
    let finding = slow.finding("sleep").unwrap().message;
    assert!(finding.contains("timed out"), "{finding}");
    assert!(
        finding.contains("planning..."),
        "what it printed before the timeout is kept: {finding}"
    );

    // A command that leaves something running in the background (holding
    // its output open) is done when it exits, not timed out.
    let background = run("sleep 30 & echo started", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(background.passed(), "{background:?}");
    assert!(background.duration < Duration::from_secs(9));
    assert!(background.output.contains("started"));

    let chatty = run("yes graft | head -c 200000", Duration::from_secs(20))
        .await
        .unwrap();
    assert!(chatty.output.len() < check::OUTPUT_LIMIT + 100);
    assert!(chatty.output.contains("more bytes of output dropped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_to_a_missing_repository_or_a_silent_server_are_told_apart() {
    let world = World::new().await;
    world.host.commit(REPO, "main", &[("a", Some(b"a"))], "a");
    let (mirror, fetched) = world.fetch().await;
    let auth = GitAuth::new("x-access-token", TOKEN.to_string().into());
    let push_to = |url: String, timeout: Duration| {
        let (mirror, auth) = (&mirror.path, &auth);
        let commit = fetched.heads["main"];
        async move {
            push(PushRequest {
                mirror,
                url: &url,
                auth,
                commit,
                branch: "copy",
                mode: PushMode::FastForward,
                timeout,
                advertised: None,
            })
            .await
        }
    };
    let missing = push_to(world.host.clone_url("acme/gone"), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(missing, GitError::NotFound(_)), "{missing:?}");
    // A server that accepts the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/acme/infra.git", silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    let stalled = push_to(url, Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(stalled, GitError::Network(_)), "{stalled:?}");
    assert!(stalled.to_string().contains("timed out"), "{stalled}");
    assert!(started.elapsed() < Duration::from_secs(15));
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diffs_between_commits_are_limited_to_the_base_path() {
    let world = World::new().await;
    let a = world.host.commit(
        REPO,
        "main",
        &[
            ("infra/a.tf", Some(b"1")),
            ("infra/b.tf", Some(b"1")),
            ("other/c", Some(b"1")),
        ],
        "a",
    );
    let b = world.host.commit(
        REPO,
        "main",
        &[
            ("infra/a.tf", Some(b"2")),
            ("infra/b.tf", None),
            ("infra/n/new.tf", Some(b"n")),
            ("other/c", Some(b"2")),
        ],
        "b",
    );
    let (mirror, _) = world.fetch().await;
    let repo = mirror.open().unwrap();
    let id = |s: &str| ObjectId::from_hex(s.as_bytes()).unwrap();
    let changes: Vec<(String, ChangeKind)> =
        diff_commits(&repo, Some(id(&a)), Some(id(&b)), "infra")
            .unwrap()
            .into_iter()
            .map(|c| (c.path, c.kind))
            .collect();
    assert_eq!(
        changes,
        vec![
            ("a.tf".into(), ChangeKind::Modified),
            ("b.tf".into(), ChangeKind::Deleted),
            ("n/new.tf".into(), ChangeKind::Added)
        ]
    );
    let listing = list_subtree(&repo, commit_tree(&repo, Some(id(&b))).unwrap(), "infra").unwrap();
    assert_eq!(
        graft::git::read::read_blob(&repo, listing["a.tf"].blob).unwrap(),
        b"2"
    );
    let commits = graft::git::read::commits_between(&repo, id(&a), id(&b)).unwrap();
    assert_eq!(commits.len(), 1);
    assert_eq!(commits[0].1, "human@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_prepares_a_validated_commit_for_the_engine_to_push() {
    use graft::git::pipeline::{Request, prepare};
    let world = World::new().await;
    let main = world.host.commit(
        REPO,
        "main",
        &[("modules/vpc/main.tf", Some(b"# m\n"))],
        "m",
    );
    let request = |files: Vec<ManagedFile>, check: Option<check::Check>| Request {
        key: "test/acme/infra".into(),
        url: world.url(),
        auth: GitAuth::new("x-access-token", TOKEN.to_string().into()),
        build_on: "main".into(),
        base_path: "infra/gen".into(),
        files,
        deletions: Vec::new(),
        previously_managed: HashSet::new(),
        identity: Identity::default(),
        project: "acme/infra:infra/gen".into(),
        source: Some("generator-x".into()),
        check,
    };
    let files = vec![file(
        "main.tf",
        "module \"vpc\" {\n  source = \"../../modules/vpc\"\n}\n",
    )];
    let prepared = prepare(
        &world.cache,
        request(
            files.clone(),
            Some(check::Check::new(
                "test -f infra/gen/main.tf",
                Duration::from_secs(20),
            )),
        ),
    )
    .await
    .unwrap();
    assert_eq!(prepared.parent.map(|p| p.to_string()), Some(main.clone()));
    assert!(prepared.findings.is_empty(), "{:?}", prepared.findings);
    let commit = prepared.commit.expect("a commit");
    let auth = GitAuth::new("x-access-token", TOKEN.to_string().into());
    push(PushRequest {
        mirror: &prepared.mirror.path,
        url: &world.url(),
        auth: &auth,
        commit,
        branch: "graft/acme",
        mode: PushMode::ForceWithLease { expected: None },
        timeout: Duration::from_secs(30),
        advertised: None,
    })
    .await
    .unwrap();
    drop(prepared);
    let log = world.host.log(REPO, "graft/acme");
    assert!(
        log[0]
            .2
            .starts_with("graft: sync acme/infra:infra/gen (1 added"),
        "{log:?}"
    );

    let failing = prepare(
        &world.cache,
        request(
            files,
            Some(check::Check::new(
                "echo nope; exit 1",
                Duration::from_secs(20),
            )),
        ),
    )
    .await
    .unwrap();
    assert_eq!(failing.findings.len(), 1);
    assert!(failing.findings[0].message.contains("nope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_on_one_repository_take_turns_on_the_mirror() {
    let world = World::new().await;
    world.host.commit(REPO, "main", &[("a", Some(b"a"))], "a");
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let cache = world.cache.clone();
        let url = world.url();
        tasks.push(tokio::spawn(async move {
            let mirror = cache.lock("test/acme/infra").await;
            let path = mirror.path.clone();
            let auth = GitAuth::new("x-access-token", TOKEN.to_string().into());
            let fetched = tokio::task::spawn_blocking(move || fetch_at(&path, &url, &auth))
                .await
                .unwrap();
            drop(mirror);
            fetched
        }));
    }
    let mut created = 0;
    for task in tasks {
        let fetched = task.await.unwrap().expect("every fetch succeeds");
        created += usize::from(fetched.created);
        assert!(fetched.heads.contains_key("main"));
    }
    assert_eq!(created, 1, "the mirror is created once, then reused");
}
