//! What a sync fetches into its mirror: the wanted branches only (their
//! heads into a new mirror, the commits since into a kept one), earlier
//! commits by id when missing, a branch deepened down to the target when
//! someone else committed to it, a wanted branch gone upstream removed,
//! and a push from the shallow mirror that the server takes as complete.

mod support;

use std::time::Duration;

use gix::ObjectId;
use graft::git::mirror::{FetchOutcome, MirrorCache, Want, deepen_branch, fetch_wanted};
use graft::git::push::{PushMode, PushRequest, push};
use graft::git::read::commits_between;
use graft::git::{GitAuth, GitError};
use support::git_host::{GitHost, git};

const TOKEN: &str = "ghs_fetch_token_123456";
const REPO: &str = "acme/mono";

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

    fn auth() -> GitAuth {
        GitAuth::new("x-access-token", TOKEN.to_string().into())
    }

    fn path(&self) -> std::path::PathBuf {
        self.cache.path_for("test/acme/mono")
    }

    async fn fetch(&self, want: Want) -> FetchOutcome {
        let _mirror = self.cache.lock("test/acme/mono").await;
        let (path, url) = (self.path(), self.host.clone_url(REPO));
        tokio::task::spawn_blocking(move || fetch_wanted(&path, &url, &World::auth(), &want))
            .await
            .unwrap()
            .expect("fetch")
    }

    async fn deepen(&self, branch: &str, base: &str) -> Result<u64, GitError> {
        let _mirror = self.cache.lock("test/acme/mono").await;
        let (path, url) = (self.path(), self.host.clone_url(REPO));
        let (branch, base) = (branch.to_string(), base.to_string());
        tokio::task::spawn_blocking(move || {
            deepen_branch(&path, &url, &World::auth(), &branch, &base)
        })
        .await
        .unwrap()
    }

    /// Whether the mirror holds the commit `sha`.
    fn has(&self, sha: &str) -> bool {
        let repo = gix::open(self.path()).unwrap();
        repo.find_commit(id(sha)).is_ok()
    }

    fn local_branches(&self) -> Vec<String> {
        let repo = gix::open(self.path()).unwrap();
        let platform = repo.references().unwrap();
        platform
            .local_branches()
            .unwrap()
            .map(|r| r.unwrap().name().shorten().to_string())
            .collect()
    }

    /// `n` commits on `branch` touching one file each; their ids.
    fn commits(&self, branch: &str, n: usize, tag: &str) -> Vec<String> {
        (0..n)
            .map(|i| {
                let path = format!("src/{tag}{i}.txt");
                let content = format!("{tag} {i}\n");
                self.host.commit(
                    REPO,
                    branch,
                    &[(path.as_str(), Some(content.as_bytes()))],
                    &format!("{tag} {i}"),
                )
            })
            .collect()
    }
}

fn id(sha: &str) -> ObjectId {
    ObjectId::from_hex(sha.as_bytes()).unwrap()
}

fn want(branches: &[&str], commits: &[&str]) -> Want {
    Want {
        branches: branches.iter().map(|b| b.to_string()).collect(),
        commits: commits.iter().map(|c| id(c)).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_mirror_gets_the_heads_only_and_a_kept_one_the_commits_since() {
    let world = World::new().await;
    let old = world.commits("main", 3, "old");
    world.host.create_branch(REPO, "tool/other", "main");
    world.commits("tool/other", 1, "tool");

    let first = world.fetch(want(&["main", "graft/p"], &[])).await;
    assert!(first.created);
    assert_eq!(first.heads.keys().collect::<Vec<_>>(), ["main"]);
    assert!(world.has(&old[2]), "the head");
    assert!(!world.has(&old[1]), "history stays on the server");
    assert_eq!(world.local_branches(), ["main"], "other tools' branches");

    let new = world.commits("main", 2, "new");
    let second = world.fetch(want(&["main", "graft/p"], &[])).await;
    assert!(!second.created);
    assert_eq!(second.heads["main"].to_string(), new[1]);
    assert!(
        world.has(&new[0]),
        "a kept mirror gets the commits since, not a new boundary"
    );
    assert!(!world.has(&old[1]), "still no older history");
    assert!(
        second.objects_received <= 10,
        "two small commits: {}",
        second.objects_received
    );

    let third = world.fetch(want(&["main", "graft/p"], &[])).await;
    assert_eq!(third.objects_received, 0, "nothing moved, no pack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn earlier_commits_are_fetched_by_id_only_when_missing() {
    let world = World::new().await;
    let old = world.commits("main", 4, "c");
    let gone = "0123456789abcdef0123456789abcdef01234567";

    // A new mirror without the commit graft saw last: fetched by id. One
    // the server does not have (history rewritten) is simply absent.
    let fetched = world.fetch(want(&["main"], &[&old[1], gone])).await;
    assert_eq!(fetched.heads["main"].to_string(), old[3]);
    assert!(world.has(&old[1]), "the earlier commit, by id");
    assert!(!world.has(gone));
    assert!(!world.has(&old[2]), "nothing between them");

    // Held already: asked for again, nothing crosses the wire.
    let again = world.fetch(want(&["main"], &[&old[1]])).await;
    assert_eq!(again.objects_received, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wanted_branch_missing_upstream_is_not_there_or_removed() {
    let world = World::new().await;
    world.commits("main", 1, "m");

    // Never existed: no error, not in the heads.
    let none = world.fetch(want(&["main", "graft/p"], &[])).await;
    assert!(!none.heads.contains_key("graft/p"));

    world.host.create_branch(REPO, "graft/p", "main");
    world.host.create_branch(REPO, "tool/keep", "main");
    let branch = world.commits("graft/p", 1, "p");
    let there = world.fetch(want(&["main", "graft/p"], &[])).await;
    assert_eq!(there.heads["graft/p"].to_string(), branch[0]);

    // Merged and deleted upstream: gone from the mirror too, so it cannot
    // look alive; branches the sync does not want are not touched.
    git(
        &world.host.repo_dir(REPO),
        &["branch", "-D", "graft/p", "tool/keep"],
    );
    let gone = world.fetch(want(&["main", "graft/p"], &[])).await;
    assert!(!gone.heads.contains_key("graft/p"), "{:?}", gone.heads);
    assert_eq!(world.local_branches(), ["main"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deepening_brings_every_commit_on_the_branch_not_on_the_target() {
    let world = World::new().await;
    let base = world.commits("main", 3, "base");
    world.host.create_branch(REPO, "graft/p", "main");
    let others = world.commits("graft/p", 3, "other");
    let later = world.commits("main", 1, "later");

    let fetched = world.fetch(want(&["main", "graft/p"], &[])).await;
    assert_eq!(fetched.heads["graft/p"].to_string(), others[2]);
    assert!(!world.has(&others[0]), "a new mirror has the heads only");

    let received = world.deepen("graft/p", "main").await.expect("deepen");
    assert!(received > 0);
    for commit in &others {
        assert!(world.has(commit), "{commit} is on the branch only");
    }
    assert!(!world.has(&base[1]), "nothing below where it left main");
    let repo = gix::open(world.path()).unwrap();
    let between = commits_between(&repo, id(&later[0]), id(&others[2])).unwrap();
    let shas: Vec<String> = between.iter().map(|(c, _, _)| c.to_string()).collect();
    assert_eq!(shas, others, "who committed there is read from all of it");
}

/// A commit on `parent` in the mirror that writes `content` to one file.
fn generated_commit(world: &World, parent: &str, content: &[u8]) -> ObjectId {
    let repo = gix::open(world.path()).unwrap();
    let head = repo.find_commit(id(parent)).unwrap();
    let mut editor = repo.edit_tree(head.tree_id().unwrap()).unwrap();
    let blob = repo.write_blob(content).unwrap().detach();
    editor
        .upsert(
            "infra/gen/main.tf",
            gix::object::tree::EntryKind::Blob,
            blob,
        )
        .unwrap();
    let tree = editor.write().unwrap().detach();
    // Dated now, as graft's commits are: after the commits below it.
    let time = gix::date::Time::now_utc();
    let mut buf = gix::date::parse::TimeBuf::default();
    let signature = gix::actor::SignatureRef {
        name: "graft".into(),
        email: "graft@example.com".into(),
        time: time.to_str(&mut buf),
    };
    repo.new_commit_as(signature, signature, "generated", tree, Some(head.id))
        .unwrap()
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shallow_mirror_pushes_commits_the_server_takes_whole() {
    let world = World::new().await;
    world.commits("main", 5, "h");
    world.fetch(want(&["main", "graft/p"], &[])).await;
    let mut expected = None;
    for round in 0..3 {
        let upstream = world.commits("main", 1, &format!("up{round}"));
        let fetched = world.fetch(want(&["main", "graft/p"], &[])).await;
        assert_eq!(fetched.heads["main"].to_string(), upstream[0]);
        assert_eq!(fetched.heads.get("graft/p").copied(), expected);
        let commit = generated_commit(&world, &upstream[0], format!("v{round}\n").as_bytes());
        let _mirror = world.cache.lock("test/acme/mono").await;
        push(PushRequest {
            mirror: &world.path(),
            url: &world.host.clone_url(REPO),
            auth: &World::auth(),
            commit,
            branch: "graft/p",
            mode: PushMode::ForceWithLease { expected },
            timeout: Duration::from_secs(30),
            advertised: None,
        })
        .await
        .unwrap_or_else(|e| panic!("push {round}: {e}"));
        assert_eq!(
            world.host.head(REPO, "graft/p").as_deref(),
            Some(commit.to_string().as_str())
        );
        expected = Some(commit);
    }
    let server = world.host.repo_dir(REPO);
    assert!(
        !server.join("shallow").exists(),
        "the server was not made shallow"
    );
    git(&server, &["fsck", "--connectivity-only", "--no-dangling"]);
}
