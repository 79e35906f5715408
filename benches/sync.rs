//! graft's real sync against the scripts a competent user would write, in
//! one run, on the same smart-HTTP git server (`git http-backend` behind the
//! fake GitHub of the test suite), on a generated monorepo with history.
//!
//! graft is timed through its real sync job: graft's router, workers and
//! store on SQLite, the fake GitHub for the forge calls. The clock starts
//! at the files' `PUT` (the API's own intake) and stops when the PR exists
//! and its head holds the new files. The scripts are timed from their first
//! command to their push. Every run is checked on the server: the pushed
//! branch holds all managed files with the round's content.
//!
//! Scenarios, in a random order each round:
//! - cold: graft (no mirror, new project); `git clone --single-branch`;
//!   `clone --filter=blob:none --sparse` + sparse checkout; the same with
//!   `--depth 1`. Each then copies, commits and pushes a new branch.
//! - incremental (one unrelated upstream commit before each round, 5 of
//!   the 200 files changed): graft; the kept clones of the cold scripts
//!   doing fetch + reset + copy + commit + push.
//!
//! graft's clock stops by reading the branch's ref file on the server, not
//! by starting git at every poll (that took a core from the sync timed).
//!
//! Where the time goes: graft's sync phases come from its `tracing` events
//! in the timed rounds (`incr_phases_ms`). Then, untimed, a few more
//! incremental rounds of graft and the best script run with git's trace2
//! on (`traced_incr_ms`): each git command of the script, and on the
//! server the push's `receive-pack`, its connectivity check and the
//! fetches' `upload-pack`. The summary line carries the push's share:
//! `push_ms` (graft's push phase), `push_pack_ms` (graft building the
//! pack), `push_server_ms` (`receive-pack`), `push_check_ms` (its
//! connectivity check), `push_client_ms` (the rest: graft, HTTP and the
//! fake forge's handling around `receive-pack`), the script's
//! `script_push_ms` and `script_push_server_ms`, and
//! `incr_ceiling_vs_best_script`: the best script's time over graft's
//! `receive-pack` alone, the most any client could reach against this
//! server.
//!
//! Peak RSS is graft's git engine doing a cold sync (fetch, overlay,
//! validation, commit, push) in a child process of its own: no fake forge,
//! no git server, no generator in the figure (the push is graft's own; the
//! git CLI it falls back to would be a process of its own).
//!
//! Run: `cargo bench --bench sync`. Sizes: `SYNC_BENCH_FILES` (100000),
//! `SYNC_BENCH_COMMITS` (3000), `SYNC_BENCH_ROUNDS` (5 incremental rounds),
//! `SYNC_BENCH_COLD_ROUNDS` (3), `SYNC_BENCH_TRACED_ROUNDS` (3),
//! `SYNC_BENCH_SEED`. The generated
//! repository is cached under `SYNC_BENCH_CACHE` (`/dev/shm/graft-bench-cache`)
//! and scratch goes to `TMPDIR` (`/dev/shm` when unset): many small files
//! on a slow disk would measure the disk. `RUST_LOG=graft=debug` logs each
//! sync phase with its duration.

#[path = "../tests/support/mod.rs"]
#[allow(dead_code, unused_imports, clippy::all)]
mod support;
#[path = "sync/trace.rs"]
mod trace;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use graft::git::mirror::{MirrorCache, Want};
use graft::git::overlay::ManagedFile;
use graft::git::pipeline::{self, BuildSpec};
use graft::git::push::{PushMode, PushRequest, push};
use graft::git::{GitAuth, Identity};
use graft::store::files::FileInput;
use graft::store::projects::{Mode, SyncStatus};
use support::harness::Harness;

const USER_TOKEN: &str = "bench-user-token";
const INSTALLATION: i64 = 7;
const MANAGED: usize = 200;
const CHANGED: usize = 5;
const MODULES: usize = 20;
const BASE: &str = "infra/generated";

struct Params {
    files: usize,
    commits: usize,
    rounds: usize,
    cold_rounds: usize,
    traced_rounds: usize,
    seed: u64,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Params {
    fn from_env() -> Params {
        Params {
            files: env_num("SYNC_BENCH_FILES", 100_000) as usize,
            commits: env_num("SYNC_BENCH_COMMITS", 3_000).max(1) as usize,
            rounds: env_num("SYNC_BENCH_ROUNDS", 5).max(1) as usize,
            cold_rounds: env_num("SYNC_BENCH_COLD_ROUNDS", 3).max(1) as usize,
            traced_rounds: env_num("SYNC_BENCH_TRACED_ROUNDS", 3).max(1) as usize,
            seed: env_num("SYNC_BENCH_SEED", 0x5eed),
        }
    }
}

/// A small deterministic generator (xorshift): same repository for the
/// same parameters, shuffled orders reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

fn source_path(i: usize) -> String {
    format!("src/d{:03}/e{}/f{i}.txt", i / 1000, (i / 100) % 10)
}

/// About 120 bytes that do not compress to nothing.
fn source_content(i: usize, revision: usize) -> Vec<u8> {
    let mut rng = Rng(((i as u64) << 20) ^ revision as u64 ^ 0x9e37_79b9_7f4a_7c15);
    let words: Vec<String> = (0..6).map(|_| format!("{:016x}", rng.next())).collect();
    format!("file {i} revision {revision}\n{}\n", words.join(" ")).into_bytes()
}

fn data(stream: &mut impl Write, content: &[u8]) {
    writeln!(stream, "data {}", content.len()).expect("write");
    stream.write_all(content).expect("write");
    stream.write_all(b"\n").expect("write");
}

/// Runs `git fast-import` in `repo` with what `write` streams.
fn fast_import(repo: &Path, write: impl FnOnce(&mut dyn Write)) {
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet", "--done"])
        .current_dir(repo)
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    {
        let mut stream = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
        write(&mut stream);
        stream.write_all(b"done\n").expect("write");
    }
    assert!(child.wait().expect("fast-import").success());
}

fn commit_header(stream: &mut dyn Write, time: u64, message: &str, parent: bool) {
    write!(
        stream,
        "commit refs/heads/main\ncommitter Human <human@example.com> {time} +0000\n"
    )
    .expect("write");
    let mut out = Vec::new();
    data(&mut out, message.as_bytes());
    stream.write_all(&out).expect("write");
    if parent {
        stream
            .write_all(b"from refs/heads/main^0\n")
            .expect("write");
    }
}

/// The generated repository, built once per parameter set and cached:
/// `files` source files plus the modules the managed files refer to,
/// then `commits - 1` more commits of 10 edits each.
fn cached_repository(params: &Params) -> PathBuf {
    let root = std::env::var("SYNC_BENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/dev/shm/graft-bench-cache"));
    let dir = root.join(format!("f{}-c{}-v1.git", params.files, params.commits));
    if dir.join("graft-bench-complete").exists() {
        return dir;
    }
    let started = Instant::now();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("cache dir");
    run(
        &dir,
        &["init", "--bare", "--quiet", "--initial-branch=main"],
    );
    let (files, commits) = (params.files, params.commits);
    fast_import(&dir, |stream| {
        commit_header(stream, 1_600_000_000, "synthetic monorepo", false);
        let mut out = Vec::new();
        for i in 0..files {
            writeln!(out, "M 100644 inline {}", source_path(i)).expect("write");
            data(&mut out, &source_content(i, 0));
        }
        for m in 0..MODULES {
            writeln!(out, "M 100644 inline modules/m{m}/main.tf").expect("write");
            data(
                &mut out,
                format!("variable \"name\" {{ default = \"m{m}\" }}\n").as_bytes(),
            );
        }
        stream.write_all(&out).expect("write");
        let mut rng = Rng(0xc0ffee);
        for c in 1..commits {
            commit_header(
                stream,
                1_600_000_000 + c as u64 * 60,
                &format!("change {c}"),
                false,
            );
            let mut out = Vec::new();
            for _ in 0..10 {
                let i = rng.below(files.max(1));
                writeln!(out, "M 100644 inline {}", source_path(i)).expect("write");
                data(&mut out, &source_content(i, c));
            }
            stream.write_all(&out).expect("write");
        }
    });
    run(&dir, &["repack", "-adq"]);
    std::fs::write(dir.join("graft-bench-complete"), b"").expect("marker");
    eprintln!(
        "sync-bench: generated {} files, {} commits in {:.1}s (cached at {})",
        files,
        commits,
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    dir
}

fn run(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .envs(git_env())
        .output()
        .expect("git");
    assert!(
        output.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn git_env() -> Vec<(String, String)> {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{USER_TOKEN}"));
    vec![
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ("GIT_CONFIG_GLOBAL".into(), "/dev/null".into()),
        ("GIT_CONFIG_COUNT".into(), "1".into()),
        ("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()),
        (
            "GIT_CONFIG_VALUE_0".into(),
            format!("Authorization: Basic {basic}"),
        ),
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        ("GIT_AUTHOR_NAME".into(), "user".into()),
        ("GIT_AUTHOR_EMAIL".into(), "user@example.com".into()),
        ("GIT_COMMITTER_NAME".into(), "user".into()),
        ("GIT_COMMITTER_EMAIL".into(), "user@example.com".into()),
    ]
}

/// The managed files of `version`: file `i` carries `version` if it is one
/// of the files changed so far, else its first content.
fn managed(version: usize) -> Vec<(String, Vec<u8>)> {
    (0..MANAGED)
        .map(|i| {
            let rev = if version > 0 && i % (MANAGED / CHANGED) == version % (MANAGED / CHANGED)
            {
                version
            } else {
                0
            };
            (
                format!("svc{:02}/f{i}.tf", i / 10),
                format!(
                    "module \"m{i}\" {{\n  source = \"../../../modules/m{}\"\n  name   = \"svc-{i}-v{rev}\"\n}}\n",
                    i % MODULES
                )
                .into_bytes(),
            )
        })
        .collect()
}

/// Puts a copy of the cached repository on the fake GitHub as `name`
/// (hard links: the packs are never written to).
fn publish_copy(h: &Harness, cache: &Path, name: &str) {
    h.github_repo(name, INSTALLATION);
    let dir = h.github.git.repo_dir(name);
    let packs = cache.join("objects/pack");
    for entry in std::fs::read_dir(&packs).expect("cached packs").flatten() {
        let target = dir.join("objects/pack").join(entry.file_name());
        if std::fs::hard_link(entry.path(), &target).is_err() {
            std::fs::copy(entry.path(), &target).expect("copy pack");
        }
    }
    let head = run(cache, &["rev-parse", "refs/heads/main"]);
    run(&dir, &["update-ref", "refs/heads/main", &head]);
}

/// One unrelated upstream commit on `main`, straight into the server.
fn upstream_commit(server: &Path, round: usize) {
    fast_import(server, |stream| {
        commit_header(
            stream,
            1_700_000_000 + round as u64,
            "unrelated change",
            true,
        );
        let mut out = Vec::new();
        writeln!(out, "M 100644 inline {}", source_path(round)).expect("write");
        data(&mut out, &source_content(round, 1_000_000 + round));
        stream.write_all(&out).expect("write");
    });
}

/// The branch `branch` on the server holds exactly the managed files of
/// `version` under the base path, on top of the current `main`.
fn verify(server: &Path, branch: &str, version: usize, what: &str) {
    let listing = run(
        server,
        &["ls-tree", "-r", &format!("refs/heads/{branch}"), BASE],
    );
    let found: BTreeMap<String, String> = listing
        .lines()
        .filter_map(|l| {
            let (meta, path) = l.split_once('\t')?;
            Some((path.to_string(), meta.split(' ').nth(2)?.to_string()))
        })
        .collect();
    assert_eq!(found.len(), MANAGED, "{what}: {BASE} on {branch}");
    for (path, content) in managed(version) {
        let expected = graft::git::read::blob_id(&content).to_string();
        assert_eq!(
            found.get(&format!("{BASE}/{path}")),
            Some(&expected),
            "{what}: {path} on {branch}"
        );
    }
    let parent = run(server, &["rev-parse", &format!("refs/heads/{branch}^")]);
    let main = run(server, &["rev-parse", "refs/heads/main"]);
    assert_eq!(parent, main, "{what}: {branch} is not on top of main");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Script {
    Full,
    BloblessSparse,
    ShallowBloblessSparse,
}

impl Script {
    const ALL: [Script; 3] = [
        Script::Full,
        Script::BloblessSparse,
        Script::ShallowBloblessSparse,
    ];

    fn name(self) -> &'static str {
        match self {
            Script::Full => "full_clone",
            Script::BloblessSparse => "blobless_sparse",
            Script::ShallowBloblessSparse => "shallow_blobless_sparse",
        }
    }

    fn branch(self) -> String {
        format!("script/{}", self.name())
    }

    /// Clone, copy, commit, push: a user's cold run into `checkout`.
    fn cold(self, url: &str, checkout: &Path, version: usize) {
        let parent = checkout.parent().expect("parent");
        let target = checkout.to_str().expect("utf-8 path");
        let mut args = vec!["clone", "--quiet", "--single-branch", "--branch", "main"];
        match self {
            Script::Full => {}
            Script::BloblessSparse => args.extend(["--filter=blob:none", "--sparse"]),
            Script::ShallowBloblessSparse => {
                args.extend(["--depth=1", "--filter=blob:none", "--sparse"])
            }
        }
        args.extend([url, target]);
        run(parent, &args);
        if self != Script::Full {
            run(checkout, &["sparse-checkout", "set", BASE]);
        }
        self.commit_and_push(checkout, version);
    }

    /// Fetch, reset, copy, commit, push in the kept clone.
    fn incremental(self, checkout: &Path, version: usize) {
        match self {
            Script::ShallowBloblessSparse => run(
                checkout,
                &["fetch", "--quiet", "--depth=1", "origin", "main"],
            ),
            _ => run(checkout, &["fetch", "--quiet", "origin", "main"]),
        };
        run(checkout, &["reset", "--quiet", "--hard", "origin/main"]);
        self.commit_and_push(checkout, version);
    }

    fn commit_and_push(self, checkout: &Path, version: usize) {
        for (path, content) in managed(version) {
            let target = checkout.join(BASE).join(path);
            std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            std::fs::write(target, content).expect("write");
        }
        run(checkout, &["add", BASE]);
        run(checkout, &["commit", "--quiet", "-m", "generated"]);
        run(
            checkout,
            &[
                "push",
                "--quiet",
                "--force",
                "origin",
                &format!("HEAD:refs/heads/{}", self.branch()),
            ],
        );
    }
}

fn inputs(version: usize) -> Vec<FileInput> {
    managed(version)
        .into_iter()
        .map(|(path, content)| FileInput {
            path,
            content,
            sync_on_change: None,
            executable: None,
            source: None,
        })
        .collect()
}

/// One graft sync through the real job: from the `PUT` until the PR is
/// open and its head holds `version`. Waits (untimed) for the job to end.
async fn graft_sync(
    h: &Harness,
    repo: &str,
    project: graft::ids::ProjectId,
    version: usize,
) -> Duration {
    let server = h.github.git.repo_dir(repo);
    let branch = h
        .app
        .store
        .require_project(project)
        .await
        .expect("project")
        .sync_branch;
    let before = h.github.git.head(repo, &branch);
    let expected = {
        let (path, content) = &managed(version)[version % (MANAGED / CHANGED)];
        (
            format!("refs/heads/{branch}:{BASE}/{path}"),
            graft::git::read::blob_id(content).to_string(),
        )
    };
    let started = Instant::now();
    support::sync::put(h, project, &inputs(version)).await;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        // The cheap checks first: a git process every poll would take a
        // core from the sync being timed.
        let pr_open = h
            .github
            .pulls(repo)
            .iter()
            .any(|p| p.head == branch && p.state == "open");
        let head = pr_open.then(|| server_head(h, repo, &branch)).flatten();
        if head.is_some()
            && head != before
            && run(&server, &["rev-parse", &expected.0]) == expected.1
        {
            break;
        }
        assert!(Instant::now() < deadline, "graft did not sync {repo}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    support::sync::settled(h, project, SyncStatus::Success).await;
    verify(&server, &branch, version, "graft");
    elapsed
}

/// The branch's head on the server: its loose ref file (what a push
/// writes), read without starting git.
fn server_head(h: &Harness, repo: &str, branch: &str) -> Option<String> {
    let loose = h.github.git.repo_dir(repo).join("refs/heads").join(branch);
    match std::fs::read_to_string(loose) {
        Ok(id) => Some(id.trim().to_string()),
        Err(_) => h.github.git.head(repo, branch),
    }
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// The child's part: graft's git engine does one cold sync (fetch, overlay,
/// validation, commit, push to a new branch); prints its peak RSS.
async fn rss_child(url: &str, work: &str) {
    let cache = MirrorCache::new(work);
    let auth = GitAuth::new("x-access-token", USER_TOKEN.to_string().into());
    let want = Want {
        branches: vec!["main".into(), "graft/rss".into()],
        commits: Vec::new(),
    };
    let fetched = pipeline::fetch_wanted(&cache, "bench/rss", url, &auth, want)
        .await
        .expect("fetch");
    let files: Vec<ManagedFile> = managed(0)
        .into_iter()
        .map(|(path, content)| ManagedFile {
            path,
            content,
            executable: false,
        })
        .collect();
    let built = pipeline::build(
        &fetched,
        BuildSpec {
            parent: fetched.head("main"),
            base_path: BASE.into(),
            files,
            deletions: Vec::new(),
            previously_managed: HashSet::new(),
            identity: Identity::default(),
            project: "bench".into(),
            source: None,
            note: None,
            check: None,
        },
    )
    .await
    .expect("build");
    push(PushRequest {
        mirror: &fetched.mirror.path,
        url,
        auth: &auth,
        commit: built.commit.expect("a commit"),
        branch: "graft/rss",
        mode: PushMode::ForceWithLease { expected: None },
        timeout: Duration::from_secs(600),
        advertised: None,
    })
    .await
    .expect("push");
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    println!("peak_rss_kib={kib}");
}

fn peak_rss_mb(url: &str, work: &Path) -> f64 {
    let output = Command::new(std::env::current_exe().expect("this benchmark"))
        .env("SYNC_BENCH_ROLE", "rss")
        .env("SYNC_BENCH_URL", url)
        .env("SYNC_BENCH_WORK", work)
        .output()
        .expect("the rss child");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "rss child: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let kib: f64 = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("peak_rss_kib="))
        .and_then(|v| v.parse().ok())
        .expect("peak_rss_kib");
    kib / 1024.0
}

fn medians(runs: &mut BTreeMap<&'static str, Vec<Duration>>) -> BTreeMap<&'static str, Duration> {
    runs.iter_mut().map(|(k, v)| (*k, median(v))).collect()
}

/// The fastest script: its name and median.
fn best_script(figures: &BTreeMap<&'static str, Duration>) -> (&'static str, Duration) {
    figures
        .iter()
        .filter(|(k, _)| **k != "graft")
        .min_by_key(|(_, v)| **v)
        .map(|(k, v)| (*k, *v))
        .expect("scripts ran")
}

/// One traced run in figures: graft's sync phases (`fetch`, `push`,
/// `push_pack`...), the git commands a script ran (`fetch`, `commit`,
/// `push`...), and on the server the push's `receive-pack` (`push_server`:
/// the ref advertisement and the push), its connectivity check
/// (`push_check`: `rev-list --objects --stdin --not --all`) and its
/// unpacking (`push_unpack`), and the fetches' `upload-pack`
/// (`fetch_server`). The fake forge's own git commands, and the
/// benchmark's checks, are left out.
fn breakdown(
    git: &BTreeMap<String, f64>,
    phases: &[(String, u64)],
    script: bool,
) -> BTreeMap<String, f64> {
    const SCRIPT: [&str; 5] = ["fetch", "reset", "add", "commit", "push"];
    let mut figures = BTreeMap::new();
    for (place, ms) in git {
        let key = if place.ends_with("receive-pack") {
            "push_server"
        } else if place.ends_with("receive-pack/rev-list") {
            "push_check"
        } else if place.ends_with("receive-pack/unpack-objects")
            || place.ends_with("receive-pack/index-pack")
        {
            "push_unpack"
        } else if place.ends_with("upload-pack") {
            "fetch_server"
        } else if let Some(command) = SCRIPT.iter().find(|c| script && *c == place) {
            command
        } else {
            continue;
        };
        *figures.entry(key.to_string()).or_insert(0.0) += ms;
    }
    for (phase, ms) in phases {
        *figures.entry(phase.clone()).or_insert(0.0) += *ms as f64;
    }
    figures
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Graft,
    Script(Script),
}

fn label(who: Who) -> &'static str {
    match who {
        Who::Graft => "graft",
        Who::Script(s) => s.name(),
    }
}

async fn bench(params: Params, switch: &trace::GitSwitch) {
    let cache = cached_repository(&params);
    let db = support::TestDb::new(support::Backend::Sqlite)
        .await
        .expect("sqlite");
    let h = Harness::start(&db).await;
    h.github.git.allow_token(USER_TOKEN, "bench-user");
    let mut rng = Rng(params.seed.max(1));
    let scratch = tempfile::tempdir().expect("scratch");
    let mut all = vec![Who::Graft];
    all.extend(Script::ALL.map(Who::Script));

    let mut cold: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
    let mut kept: BTreeMap<Script, PathBuf> = BTreeMap::new();
    let mut project = graft::ids::ProjectId(0);
    let mut repo = String::new();
    for round in 0..params.cold_rounds {
        repo = format!("bench/mono{round}");
        publish_copy(&h, &cache, &repo);
        let url = h.github.git.clone_url(&repo);
        let server = h.github.git.repo_dir(&repo);
        project = support::sync::github_project(&h, &repo, Mode::PullRequest, BASE)
            .await
            .id;
        let mut order = all.clone();
        rng.shuffle(&mut order);
        for who in order {
            let elapsed = match who {
                Who::Graft => graft_sync(&h, &repo, project, 0).await,
                Who::Script(script) => {
                    let checkout = scratch.path().join(format!("{}-{round}", script.name()));
                    let (url, dir) = (url.clone(), checkout.clone());
                    let started = Instant::now();
                    tokio::task::spawn_blocking(move || script.cold(&url, &dir, 0))
                        .await
                        .expect("script");
                    let elapsed = started.elapsed();
                    verify(&server, &script.branch(), 0, script.name());
                    if let Some(old) = kept.insert(script, checkout) {
                        let _ = std::fs::remove_dir_all(old);
                    }
                    elapsed
                }
            };
            cold.entry(label(who)).or_default().push(elapsed);
        }
    }

    let server = h.github.git.repo_dir(&repo);
    let mut incremental: BTreeMap<&'static str, Vec<Duration>> = BTreeMap::new();
    let mut graft_phases = Vec::new();
    for round in 1..=params.rounds {
        upstream_commit(&server, round);
        let mut order = all.clone();
        rng.shuffle(&mut order);
        for who in order {
            let elapsed = match who {
                Who::Graft => {
                    trace::take_phases();
                    let elapsed = graft_sync(&h, &repo, project, round).await;
                    graft_phases.push(breakdown(&BTreeMap::new(), &trace::take_phases(), false));
                    elapsed
                }
                Who::Script(script) => {
                    let dir = kept[&script].clone();
                    let started = Instant::now();
                    tokio::task::spawn_blocking(move || script.incremental(&dir, round))
                        .await
                        .expect("script");
                    let elapsed = started.elapsed();
                    verify(&server, &script.branch(), round, script.name());
                    elapsed
                }
            };
            incremental.entry(label(who)).or_default().push(elapsed);
        }
    }

    let (incr_name, _) = best_script(&medians(&mut incremental.clone()));
    let script = *Script::ALL
        .iter()
        .find(|s| s.name() == incr_name)
        .expect("a script");
    let (mut graft_runs, mut script_runs) = (Vec::new(), Vec::new());
    for round in params.rounds + 1..=params.rounds + params.traced_rounds {
        upstream_commit(&server, round);
        let mut order = vec![Who::Graft, Who::Script(script)];
        rng.shuffle(&mut order);
        for who in order {
            let folder = scratch.path().join(format!("trace-{round}-{}", label(who)));
            switch.trace_into(&folder);
            trace::take_phases();
            match who {
                Who::Graft => {
                    graft_sync(&h, &repo, project, round).await;
                }
                Who::Script(script) => {
                    let dir = kept[&script].clone();
                    tokio::task::spawn_blocking(move || script.incremental(&dir, round))
                        .await
                        .expect("script");
                    verify(&server, &script.branch(), round, script.name());
                }
            }
            switch.off();
            let run = breakdown(
                &trace::git_times(&folder),
                &trace::take_phases(),
                who != Who::Graft,
            );
            match who {
                Who::Graft => graft_runs.push(run),
                Who::Script(_) => script_runs.push(run),
            }
        }
    }
    let (graft_traced, script_traced) = (trace::medians(&graft_runs), trace::medians(&script_runs));

    let rss_repo = "bench/rss";
    publish_copy(&h, &cache, rss_repo);
    let rss_work = tempfile::tempdir().expect("rss work");
    let peak = peak_rss_mb(&h.github.git.clone_url(rss_repo), rss_work.path());
    verify(
        &h.github.git.repo_dir(rss_repo),
        "graft/rss",
        0,
        "rss child",
    );

    let cold = medians(&mut cold);
    let incremental = medians(&mut incremental);
    for (phase, figures) in [("cold", &cold), ("incr", &incremental)] {
        let text: Vec<String> = figures
            .iter()
            .map(|(k, v)| format!("{k}={}", ms(*v)))
            .collect();
        println!("sync-bench: {phase}_median_ms {}", text.join(" "));
    }
    let graft_phases = trace::medians(&graft_phases);
    let text: Vec<String> = graft_phases
        .iter()
        .map(|(k, v)| format!("{k}={v:.0}"))
        .collect();
    println!("sync-bench: incr_phases_ms graft {}", text.join(" "));
    for (who, figures) in [("graft", &graft_traced), (script.name(), &script_traced)] {
        let text: Vec<String> = figures.iter().map(|(k, v)| format!("{k}={v:.0}")).collect();
        println!("sync-bench: traced_incr_ms {who} {}", text.join(" "));
    }
    let (cold_name, best_cold) = best_script(&cold);
    let (incr_name, best_incr) = best_script(&incremental);
    let (graft_cold, graft_incr) = (cold["graft"], incremental["graft"]);
    let ratio =
        |script: Duration, graft: Duration| script.as_secs_f64() / graft.as_secs_f64().max(1e-9);
    let traced =
        |figures: &BTreeMap<String, f64>, key: &str| figures.get(key).copied().unwrap_or(0.0);
    let push_server = traced(&graft_traced, "push_server");
    println!(
        "sync-bench: files={} commits={} rounds={} cold_rounds={} cold_ms={} incr_ms={} best_script_cold_ms={} ({cold_name}) best_script_incr_ms={} ({incr_name}) incr_vs_best_script={:.2}x cold_vs_best_script={:.2}x peak_rss_mb={:.1} push_ms={:.0} push_pack_ms={:.0} push_client_ms={:.0} push_server_ms={push_server:.0} push_check_ms={:.0} script_push_ms={:.0} script_push_server_ms={:.0} incr_ceiling_vs_best_script={:.2}x",
        params.files,
        params.commits,
        params.rounds,
        params.cold_rounds,
        ms(graft_cold),
        ms(graft_incr),
        ms(best_cold),
        ms(best_incr),
        ratio(best_incr, graft_incr),
        ratio(best_cold, graft_cold),
        peak,
        traced(&graft_phases, "push"),
        traced(&graft_phases, "push_pack"),
        // From the traced rounds, as the server's time is: the timed
        // rounds' push less another round's server time can go negative.
        traced(&graft_traced, "push") - push_server,
        traced(&graft_traced, "push_check"),
        traced(&script_traced, "push"),
        traced(&script_traced, "push_server"),
        best_incr.as_secs_f64() * 1000.0 / push_server.max(1e-9),
    );
}

fn main() {
    if std::env::var_os("TMPDIR").is_none() && Path::new("/dev/shm").is_dir() {
        // SAFETY: no other thread exists yet (the runtime starts below).
        unsafe { std::env::set_var("TMPDIR", "/dev/shm") };
    }
    {
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let phases =
            tracing_subscriber::filter::Targets::new().with_target("graft", tracing::Level::DEBUG);
        // `RUST_LOG=graft=debug` shows each sync phase and its duration.
        let log = std::env::var_os("RUST_LOG").is_some().then(|| {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::EnvFilter::from_default_env())
        });
        let _ = tracing_subscriber::registry()
            .with(trace::PhaseLayer.with_filter(phases))
            .with(log)
            .try_init();
    }
    let rss_child_role = std::env::var("SYNC_BENCH_ROLE").as_deref() == Ok("rss");
    // Before any other thread: it sets PATH. The rss child inherits it.
    let git_folder = tempfile::tempdir().expect("git folder");
    let switch = (!rss_child_role).then(|| trace::GitSwitch::install(git_folder.path()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if rss_child_role {
        let url = std::env::var("SYNC_BENCH_URL").expect("SYNC_BENCH_URL");
        let work = std::env::var("SYNC_BENCH_WORK").expect("SYNC_BENCH_WORK");
        runtime.block_on(rss_child(&url, &work));
        return;
    }
    let switch = switch.expect("the benchmark's git");
    runtime.block_on(bench(Params::from_env(), &switch));
}
