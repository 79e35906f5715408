//! graft's clone-and-overlay against what a user would script, in one run,
//! over real smart HTTP on loopback:
//!
//! 1. graft cold sync: no mirror yet; fetch + overlay + validate + commit + push
//! 2. graft incremental sync: mirror exists, upstream moved by one small
//!    commit, 5 managed files changed
//! 3. baseline: `git clone` + copy + `git add -A` + `git commit` + `git push`,
//!    and the same with `git clone --depth 1`
//!
//! Run: `cargo bench --bench overlay`. `OVERLAY_BENCH_FILES` sets the size of
//! the synthetic repository (default 100000). The last line is the summary.
//!
//! The cold sync runs in a child process of its own (this binary again),
//! so its peak RSS is graft's alone: not the in-process git server's, not
//! what generating 100k files left allocated. The `git push` graft starts
//! is a process of its own and is not in that figure.

#[path = "../tests/support/git_host.rs"]
#[allow(dead_code)]
mod git_host;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use git_host::GitHost;
use graft::git::mirror::MirrorCache;
use graft::git::overlay::ManagedFile;
use graft::git::pipeline::{Request, prepare};
use graft::git::push::{PushMode, PushRequest, push};
use graft::git::{GitAuth, Identity};

const TOKEN: &str = "bench-token";
const REPO: &str = "bench/monorepo";
const MANAGED: usize = 200;
const MODULES: usize = 20;

/// Writes a commit with `files` onto `refs/heads/main` through fast-import
/// (orders of magnitude faster than a work tree for 100k files).
fn fast_import(repo: &Path, files: &[(String, Vec<u8>)], parent: bool, message: &str) {
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(repo)
        .stdin(Stdio::piped())
        .spawn()
        .expect("git fast-import");
    let mut stream = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
    for (mark, (_, content)) in files.iter().enumerate() {
        write!(stream, "blob\nmark :{}\ndata {}\n", mark + 1, content.len()).expect("write");
        stream.write_all(content).expect("write");
        stream.write_all(b"\n").expect("write");
    }
    write!(
        stream,
        "commit refs/heads/main\ncommitter Human <human@example.com> 1700000000 +0000\ndata {}\n{}\n",
        message.len(),
        message
    )
    .expect("write");
    if parent {
        stream
            .write_all(b"from refs/heads/main^0\n")
            .expect("write");
    }
    for (mark, (path, _)) in files.iter().enumerate() {
        writeln!(stream, "M 100644 :{} {path}", mark + 1).expect("write");
    }
    stream.write_all(b"done\n").ok();
    drop(stream);
    assert!(child.wait().expect("fast-import").success());
}

fn synthetic_files(count: usize) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = (0..count)
        .map(|i| {
            (
                format!("src/d{:03}/e{}/f{i}.txt", i / 1000, (i / 100) % 10),
                format!("file {i}\n").into_bytes(),
            )
        })
        .collect();
    for m in 0..MODULES {
        files.push((
            format!("modules/m{m}/main.tf"),
            format!("variable \"name\" {{ default = \"m{m}\" }}\n").into_bytes(),
        ));
    }
    files
}

fn managed_files(version: usize, changed: usize) -> Vec<ManagedFile> {
    (0..MANAGED)
        .map(|i| {
            let rev = if i < changed { version } else { 0 };
            ManagedFile {
                path: format!("svc{:02}/f{i}.tf", i / 10),
                content: format!(
                    "module \"m{i}\" {{\n  source = \"../../../modules/m{}\"\n  name   = \"svc-{i}-v{rev}\"\n}}\n",
                    i % MODULES
                )
                .into_bytes(),
                executable: false,
            }
        })
        .collect()
}

fn auth() -> GitAuth {
    GitAuth::new("x-access-token", TOKEN.to_string().into())
}

fn git_env() -> Vec<(String, String)> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}"));
    vec![
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

fn run_git(dir: &Path, args: &[&str]) {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .envs(git_env())
        .output()
        .expect("git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The phases of a baseline run.
struct Baseline {
    clone: Duration,
    edit: Duration,
    push: Duration,
}

impl Baseline {
    fn total(&self) -> Duration {
        self.clone + self.edit + self.push
    }
}

/// What a user would script without graft.
fn baseline(url: &str, depth: Option<u32>, branch: &str, files: &[ManagedFile]) -> Baseline {
    let work = tempfile::tempdir().expect("tmp");
    let started = Instant::now();
    let mut args = vec!["clone", "--quiet", "--branch", "main"];
    let depth_arg;
    if let Some(d) = depth {
        depth_arg = format!("--depth={d}");
        args.push(&depth_arg);
    }
    args.extend([url, "c"]);
    run_git(work.path(), &args);
    let clone = started.elapsed();
    let started = Instant::now();
    let checkout = work.path().join("c");
    for file in files {
        let target = checkout.join("infra/generated").join(&file.path);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::write(target, &file.content).expect("write");
    }
    run_git(&checkout, &["add", "-A"]);
    run_git(&checkout, &["commit", "--quiet", "-m", "generated"]);
    let edit = started.elapsed();
    let started = Instant::now();
    run_git(
        &checkout,
        &[
            "push",
            "--quiet",
            "origin",
            &format!("HEAD:refs/heads/{branch}"),
        ],
    );
    Baseline {
        clone,
        edit,
        push: started.elapsed(),
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn request(files: Vec<ManagedFile>, url: &str) -> Request {
    Request {
        key: "bench/monorepo".into(),
        url: url.to_string(),
        auth: auth(),
        build_on: "main".into(),
        base_path: "infra/generated".into(),
        files,
        deletions: Vec::new(),
        previously_managed: HashSet::new(),
        identity: Identity::default(),
        project: "bench".into(),
        source: Some("overlay-bench".into()),
        check: None,
    }
}

async fn graft_sync(
    cache: &MirrorCache,
    url: &str,
    files: Vec<ManagedFile>,
    expected: Option<gix::ObjectId>,
) -> (Duration, gix::ObjectId) {
    let started = Instant::now();
    let prepared = prepare(cache, request(files, url)).await.expect("prepare");
    assert!(prepared.findings.is_empty(), "{:?}", prepared.findings);
    let commit = prepared.commit.expect("changes");
    push(PushRequest {
        mirror: &prepared.mirror.path,
        url,
        auth: &auth(),
        commit,
        branch: "graft/bench",
        mode: PushMode::ForceWithLease { expected },
        timeout: Duration::from_secs(600),
    })
    .await
    .expect("push");
    (started.elapsed(), commit)
}

/// The child's part: one cold sync into an empty work directory, reported
/// on stdout as `cold_ms=… commit=… peak_rss_kib=…`.
async fn cold_sync_child(url: &str, work: &str) {
    let cache = MirrorCache::new(work);
    let (cold, commit) = graft_sync(&cache, url, managed_files(0, 0), None).await;
    println!(
        "cold_ms={} commit={commit} peak_rss_kib={}",
        cold.as_millis(),
        peak_rss_kib().unwrap_or(0)
    );
}

/// Runs the cold sync in a child process; returns its duration, commit
/// and peak RSS (KiB).
fn cold_sync_in_child(url: &str, work: &Path) -> (Duration, gix::ObjectId, u64) {
    let exe = std::env::current_exe().expect("this benchmark's path");
    let output = Command::new(exe)
        .env("OVERLAY_BENCH_ROLE", "cold-sync")
        .env("OVERLAY_BENCH_URL", url)
        .env("OVERLAY_BENCH_WORK", work)
        .output()
        .expect("the cold-sync child");
    assert!(
        output.status.success(),
        "cold-sync child: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in `{text}`"))
            .to_string()
    };
    (
        Duration::from_millis(field("cold_ms").parse().expect("cold_ms")),
        gix::ObjectId::from_hex(field("commit").as_bytes()).expect("commit"),
        field("peak_rss_kib").parse().expect("peak_rss_kib"),
    )
}

#[tokio::main]
async fn main() {
    if std::env::var("OVERLAY_BENCH_ROLE").as_deref() == Ok("cold-sync") {
        let url = std::env::var("OVERLAY_BENCH_URL").expect("OVERLAY_BENCH_URL");
        let work = std::env::var("OVERLAY_BENCH_WORK").expect("OVERLAY_BENCH_WORK");
        cold_sync_child(&url, &work).await;
        return;
    }
    let count: usize = std::env::var("OVERLAY_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let host = GitHost::start().await;
    host.allow_token(TOKEN, "bench");
    let repo_dir = host.create_repo(REPO);
    let setup = Instant::now();
    fast_import(
        &repo_dir,
        &synthetic_files(count),
        false,
        "synthetic monorepo",
    );
    run_git(&repo_dir, &["repack", "-adq"]);
    eprintln!(
        "setup: {count} files + {MODULES} modules in {:.1}s",
        setup.elapsed().as_secs_f64()
    );
    let url = host.clone_url(REPO);
    let work = tempfile::tempdir().expect("work");
    let cache = MirrorCache::new(work.path());

    let (cold, first, peak_kib) = cold_sync_in_child(&url, work.path());

    fast_import(
        &repo_dir,
        &[(
            "src/d000/e0/f0.txt".to_string(),
            b"upstream edit\n".to_vec(),
        )],
        true,
        "small upstream change",
    );
    let (incremental, _) = graft_sync(&cache, &url, managed_files(1, 5), Some(first)).await;

    let files = managed_files(0, 0);
    let url_full = url.clone();
    let files_full = files.clone();
    let full = tokio::task::spawn_blocking(move || {
        baseline(&url_full, None, "baseline/full", &files_full)
    })
    .await
    .expect("baseline");
    let shallow =
        tokio::task::spawn_blocking(move || baseline(&url, Some(1), "baseline/shallow", &files))
            .await
            .expect("baseline");

    let ms = |d: Duration| d.as_millis();
    println!(
        "overlay-bench: cold_sync_peak_rss_mib={:.1} (graft's process; its git push child not included)",
        peak_kib as f64 / 1024.0
    );
    for (name, run) in [("full", &full), ("shallow", &shallow)] {
        println!(
            "overlay-bench: baseline_{name} clone_ms={} edit_commit_ms={} push_ms={}",
            ms(run.clone),
            ms(run.edit),
            ms(run.push)
        );
    }
    let (full, shallow) = (full.total(), shallow.total());
    println!(
        "overlay-bench: files={count} cold_ms={} incremental_ms={} baseline_full_ms={} baseline_shallow_ms={} speedup_incremental={:.1}x",
        ms(cold),
        ms(incremental),
        ms(full),
        ms(shallow),
        full.as_secs_f64() / incremental.as_secs_f64().max(1e-9),
    );
}
