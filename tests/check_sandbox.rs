//! The check command runs over files a repository writer controls, so it is
//! treated as hostile: these tests are the attacks the sandbox must stop
//! (reading graft's environment, database and other mirrors through links
//! or directly, writing outside its folder, a planted `.gitconfig`), the
//! redaction of the command line's secrets, reaching the host's UNIX
//! sockets (a database's) and its network, and the operator's opt-outs.

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use graft::git::check::{self, Check};
use graft::git::overlay::ManagedFile;
use graft::git::pipeline::{Request, prepare};
use graft::git::sandbox::{NetworkMode, SandboxMode};
use graft::git::validate::Finding;
use graft::git::{GitAuth, Identity, mirror::MirrorCache};
use support::git_host::{GitHost, Special};

const TOKEN: &str = "ghs_test_token_123456";
const REPO: &str = "acme/infra";
const OTHER: &str = "acme/other";
/// Stands for graft's secrets: the database, another repository's files.
const SECRET: &str = "graft-secret-4f1c2e9b";

/// A git host with a hostile repository, and graft's data folder as graft
/// lays it out: the database next to `work/`, which holds every mirror.
struct World {
    host: GitHost,
    cache: MirrorCache,
    data: tempfile::TempDir,
    /// A folder outside everything the command may write.
    outside: tempfile::TempDir,
}

impl World {
    async fn new() -> World {
        let host = GitHost::start().await;
        host.allow_token(TOKEN, "graft[bot]");
        host.create_repo(REPO);
        host.create_repo(OTHER);
        host.commit(
            REPO,
            "main",
            &[
                ("modules/vpc/main.tf", Some(b"# vpc\n".as_slice())),
                (
                    ".gitconfig",
                    Some(b"[core]\n\tfsmonitor = \"touch fsmonitor-ran; false\"\n".as_slice()),
                ),
            ],
            "hostile",
        );
        host.commit_special(
            REPO,
            "main",
            "x.tf",
            Special::Symlink("/proc/1/environ"),
            "m",
        );
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("graft.db"), SECRET).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), SECRET).unwrap();
        host.commit_special(
            REPO,
            "main",
            "modules/outside.tf",
            Special::Symlink(&format!("{}/keep", outside.path().display())),
            "m",
        );
        host.commit_special(
            REPO,
            "main",
            "modules/escape.tf",
            Special::Symlink("../../../../../../../../etc/passwd"),
            "m",
        );
        host.commit_special(
            REPO,
            "main",
            "modules/inside.tf",
            Special::Symlink("vpc/main.tf"),
            "m",
        );
        let world = World {
            cache: MirrorCache::new(data.path().join("work")),
            host,
            data,
            outside,
        };
        // Another repository's mirror, with a plain-text secret in it.
        world.host.commit(OTHER, "main", &[("a", Some(b"a"))], "a");
        let other = world.prepare(OTHER, None).await;
        std::fs::write(other.mirror.path.join("secret"), SECRET).unwrap();
        world
    }

    fn database(&self) -> PathBuf {
        self.data.path().join("graft.db")
    }

    fn other_mirror(&self) -> PathBuf {
        self.cache.path_for(&key(OTHER))
    }

    async fn prepare(&self, repo: &str, check: Option<Check>) -> graft::git::pipeline::Prepared {
        prepare(
            &self.cache,
            Request {
                key: key(repo),
                url: self.host.clone_url(repo),
                auth: GitAuth::new("x-access-token", TOKEN.to_string().into()),
                build_on: "main".into(),
                base_path: "infra".into(),
                files: vec![ManagedFile {
                    path: "main.tf".into(),
                    content: b"# generated\n".to_vec(),
                    executable: false,
                }],
                deletions: Vec::new(),
                previously_managed: HashSet::new(),
                identity: Identity::default(),
                project: format!("{repo}:infra"),
                source: None,
                check,
            },
        )
        .await
        .unwrap()
    }

    /// Runs `command` as graft's check of the hostile repository; it ends
    /// with `exit 1` so the finding (what the PR shows) carries the output.
    async fn check(&self, command: &str, sandbox: SandboxMode) -> Finding {
        let network = match sandbox {
            SandboxMode::Required => NetworkMode::default(),
            SandboxMode::Off => NetworkMode::Open,
        };
        self.check_with(command, sandbox, network).await
    }

    async fn check_with(
        &self,
        command: &str,
        sandbox: SandboxMode,
        network: NetworkMode,
    ) -> Finding {
        let check = Check {
            command: format!("{command}\nexit 1"),
            timeout: Duration::from_secs(30),
            sandbox,
            network,
        };
        let prepared = self.prepare(REPO, Some(check)).await;
        let findings: Vec<Finding> = prepared
            .findings
            .into_iter()
            .filter(|f| f.message.starts_with("check command"))
            .collect();
        assert_eq!(findings.len(), 1, "{findings:?}");
        findings.into_iter().next().unwrap()
    }
}

fn key(repo: &str) -> String {
    format!("test/{repo}")
}

fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// Files graft holds (its database, another repository's mirror, graft's
/// own environment) cannot be read, through the repository's links or
/// directly, and nothing outside the command's folder can be written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_cannot_read_graft_data_nor_write_outside_its_folder() {
    let world = World::new().await;
    assert!(
        std::env::var_os("CARGO_MANIFEST_DIR").is_some(),
        "graft's (this test's) environment has something to steal"
    );
    let graft = std::process::id();
    let database = world.database();
    let mirror = world.other_mirror();
    let outside = world.outside.path();
    let command = format!(
        r#"echo "links: $(ls modules)"
cat x.tf modules/outside.tf modules/escape.tf
echo "inside: $(cat modules/inside.tf)"
cat /proc/1/environ; echo "proc1:$?"
cat /proc/{graft}/environ; echo "procgraft:$?"
cat /proc/self/environ; echo "procself:$?"
ln -s /proc/{graft}/environ mine && cat mine; echo "ownlink:$?"
kill -0 {graft}; echo "signal:$?"
cat {db}; echo "db:$?"
cat {mirror}/secret; echo "mirror:$?"
ls {work}; echo "work:$?"
cat {outside}/keep; echo "keep:$?"
echo pwned > {outside}/new; echo "write:$?"
true > {outside}/keep; echo "truncate:$?"
true > {db}; echo "truncate-db:$?"
mkdir {outside}/dir; echo "mkdir:$?"
touch /tmp/graft-check-pwned; echo "tmp:$?"
touch in-tree "$TMPDIR/in-tmp" "$HOME/in-home" && echo "own-folders:ok"
echo "pid:$$""#,
        db = database.display(),
        mirror = mirror.display(),
        work = world.data.path().join("work").display(),
        outside = outside.display(),
    );
    let finding = world.check(&command, SandboxMode::Required).await;
    let output = finding.message;
    for leak in [SECRET, "CARGO_MANIFEST_DIR", "root:x:0:0"] {
        assert!(!output.contains(leak), "{leak} leaked:\n{output}");
    }
    // The links pointing out of the worktree were never written; the one
    // inside was.
    assert!(
        output.contains("left out symbolic links pointing outside the worktree: modules/escape.tf, modules/outside.tf, x.tf"),
        "{output}"
    );
    assert!(output.contains("links: inside.tf\nvpc"), "{output}");
    assert!(output.contains("inside: # vpc"), "{output}");
    for denied in [
        "proc1:1",
        "procgraft:1",
        "procself:1",
        "ownlink:1",
        "db:1",
        "mirror:1",
        "work:2",
        "keep:1",
        "write:2",
        "truncate:2",
        "truncate-db:2",
        "mkdir:1",
        "tmp:1",
    ] {
        assert!(output.contains(denied), "{denied} not denied:\n{output}");
    }
    assert!(output.contains("Permission denied"), "{output}");
    // graft is not even visible: the command is the first process of its
    // own PID namespace.
    assert!(!output.contains("signal:0"), "{output}");
    assert!(
        output.contains("pid:1\n") || output.ends_with("pid:1"),
        "{output}"
    );
    assert!(output.contains("own-folders:ok"), "{output}");
    // Nothing outside changed.
    assert_eq!(std::fs::read_to_string(&database).unwrap(), SECRET);
    assert_eq!(
        std::fs::read_to_string(outside.join("keep")).unwrap(),
        SECRET
    );
    assert!(!exists(&outside.join("new")) && !exists(&outside.join("dir")));
    assert!(!exists(Path::new("/tmp/graft-check-pwned")));
}

/// HOME is empty and outside the worktree, and git reads no configuration
/// the repository planted (`.gitconfig` with a `core.fsmonitor` command).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_is_empty_and_a_planted_gitconfig_does_not_run() {
    let world = World::new().await;
    let command = r#"echo "home-files:$(ls -A "$HOME" | wc -l)"
case "$HOME" in "$PWD"|"$PWD"/*) echo home:inside;; *) echo home:outside;; esac
git init -q . && git status --short > /dev/null; echo "git:$?"
test -e fsmonitor-ran && echo fsmonitor:ran || echo fsmonitor:no"#;
    for sandbox in [SandboxMode::Required, SandboxMode::Off] {
        let output = world.check(command, sandbox).await.message;
        for expected in ["home-files:0", "home:outside", "git:0", "fsmonitor:no"] {
            assert!(output.contains(expected), "{sandbox}: {expected}\n{output}");
        }
    }
}

/// A token the operator wrote into the command line is not shown on the PR,
/// neither in the command nor in what the command printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_the_command_line_are_redacted_from_the_finding() {
    let world = World::new().await;
    let token = "tf-secret-0123456789";
    let finding = world
        .check(
            &format!(
                "TF_TOKEN_app_terraform_io={token} sh -c 'echo \"token is $TF_TOKEN_app_terraform_io\"'"
            ),
            SandboxMode::Required,
        )
        .await;
    assert!(!finding.message.contains(token), "{}", finding.message);
    assert!(
        finding.message.contains("TF_TOKEN_app_terraform_io=***")
            && finding.message.contains("token is ***"),
        "{}",
        finding.message
    );
}

/// `GRAFT_CHECK_SANDBOX=off` really turns the kernel sandbox off (the
/// command reads what it could not before); links are still left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opt_out_runs_the_command_unconfined() {
    let world = World::new().await;
    let command = format!(
        "cat {db}; echo\ncat x.tf; echo \"link:$?\"",
        db = world.database().display()
    );
    let output = world.check(&command, SandboxMode::Off).await.message;
    assert!(output.contains(SECRET), "{output}");
    assert!(output.contains("link:1"), "{output}");
    assert!(output.contains("left out symbolic links"), "{output}");
}

/// Where the sandbox would let the command read graft's data (its work
/// folder under a system folder), the command does not run, and the check
/// fails saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_that_would_expose_graft_data_fails_closed() {
    let workspace = check::Workspace::new().unwrap();
    let marker = workspace.root().join("ran");
    let check = Check::new(
        format!("touch {}", marker.display()),
        Duration::from_secs(10),
    );
    let outcome = check::run(&check, &workspace, "infra", &[PathBuf::from("/usr/lib")])
        .await
        .unwrap();
    assert!(!outcome.passed());
    assert!(!marker.exists(), "the command ran");
    let message = outcome.finding(&check.command).unwrap().message;
    assert!(
        message.contains("did not run") && message.contains("/usr"),
        "{message}"
    );
}

/// A Python script run by the command (`python3` from `/usr`), fed on its
/// standard input.
fn python(script: &str, args: &[String]) -> String {
    format!("python3 - {} <<'EOF'\n{script}\nEOF", args.join(" "))
}

/// Nobody connected to `listener` (it is non-blocking).
fn never_accepted(listener: &std::os::unix::net::UnixListener) -> bool {
    matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// The command cannot connect to a UNIX socket outside its scratch folder
/// (PostgreSQL's, with peer authentication, is graft's database; Docker's
/// is root on the host), in every network mode, nor to an abstract one; it
/// can still use a socket of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_cannot_connect_to_unix_sockets_outside_its_folder() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};
    let world = World::new().await;
    let in_tmp = tempfile::tempdir().unwrap();
    let in_run = tempfile::Builder::new()
        .prefix("graft-test-")
        .tempdir_in("/run")
        .unwrap();
    let mut paths = Vec::new();
    let mut listeners = Vec::new();
    for dir in [in_tmp.path(), in_run.path()] {
        let path = dir.join("service.sock");
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        listeners.push(listener);
        paths.push(path.display().to_string());
    }
    let abstract_name = format!("graft-test-{}", std::process::id());
    let listener =
        UnixListener::bind_addr(&SocketAddr::from_abstract_name(&abstract_name).unwrap()).unwrap();
    listener.set_nonblocking(true).unwrap();
    listeners.push(listener);
    paths.push(format!("@{abstract_name}"));
    // The real database socket, where this host has one: reachable from
    // here, so its refusal below is the sandbox's doing.
    let postgres = Path::new("/var/run/postgresql/.s.PGSQL.5432");
    if std::os::unix::net::UnixStream::connect(postgres).is_ok() {
        paths.push(postgres.display().to_string());
    }
    let script = r#"import os, socket, sys
def attempt(label, path):
    if path.startswith("@"):
        path = "\0" + path[1:]
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        print(f"{label}:reached")
    except OSError as e:
        print(f"{label}:denied:{type(e).__name__}")
own = os.path.join(os.environ["TMPDIR"], "own.sock")
server = socket.socket(socket.AF_UNIX)
server.bind(own)
server.listen(1)
attempt("own", own)
for i, path in enumerate(sys.argv[1:]):
    attempt(f"outside{i}", path)"#;
    let command = python(script, &paths);
    for network in [NetworkMode::Https, NetworkMode::None, NetworkMode::Open] {
        let output = world
            .check_with(&command, SandboxMode::Required, network)
            .await
            .message;
        assert!(output.contains("own:reached"), "{network}:\n{output}");
        for (i, path) in paths.iter().enumerate() {
            // The abstract socket is reachable under `open` on kernels
            // without Landlock's scope (before 6.12); this one has it.
            assert!(
                output.contains(&format!("outside{i}:denied")),
                "{network}: {path} reached:\n{output}"
            );
        }
    }
    for listener in &listeners {
        assert!(never_accepted(listener), "a connection got through");
    }
}

/// `GRAFT_CHECK_NETWORK`: under `https` the command reaches TCP ports 443
/// and 80 only and cannot listen; under `none` it has no network; under
/// `open` it reaches a local service (graft's port, the database) as
/// before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_reaches_only_what_the_network_setting_allows() {
    let world = World::new().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = r#"import socket, sys
def attempt(label, port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        print(f"{label}:reached")
    except OSError as e:
        print(f"{label}:denied:{type(e).__name__}")
attempt("local", int(sys.argv[1]))
attempt("postgres", 5432)
attempt("https", 443)
try:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    print("bind:ok")
except OSError as e:
    print(f"bind:denied:{type(e).__name__}")"#;
    let command = python(script, &[port.to_string()]);
    let accepted = |listener: &std::net::TcpListener| {
        let mut count = 0;
        while listener.accept().is_ok() {
            count += 1;
        }
        count
    };
    let run = |network| world.check_with(&command, SandboxMode::Required, network);

    let output = run(NetworkMode::Https).await.message;
    for expected in [
        "local:denied:PermissionError",
        "postgres:denied:PermissionError",
        "bind:denied:PermissionError",
    ] {
        assert!(output.contains(expected), "https: {expected}\n{output}");
    }
    // Port 443 is allowed: nothing listens there, and the kernel says so.
    assert!(
        output.contains("https:reached") || output.contains("https:denied:ConnectionRefusedError"),
        "{output}"
    );
    assert_eq!(accepted(&listener), 0);

    let output = run(NetworkMode::None).await.message;
    for expected in ["local:denied", "postgres:denied", "https:denied"] {
        assert!(output.contains(expected), "none: {expected}\n{output}");
    }
    for reached in ["local:reached", "postgres:reached", "https:reached"] {
        assert!(!output.contains(reached), "none: {reached}\n{output}");
    }
    assert_eq!(accepted(&listener), 0);

    let output = run(NetworkMode::Open).await.message;
    assert!(
        output.contains("local:reached") && output.contains("bind:ok"),
        "open:\n{output}"
    );
    assert_eq!(accepted(&listener), 1);
}

/// Turning the sandbox off cannot silently drop the network limit: the
/// command does not run until the network is explicitly `open` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_opt_out_does_not_silently_open_the_network() {
    let workspace = check::Workspace::new().unwrap();
    let marker = workspace.root().join("ran");
    for network in [NetworkMode::Https, NetworkMode::None] {
        let check = Check {
            command: format!("touch {}", marker.display()),
            timeout: Duration::from_secs(10),
            sandbox: SandboxMode::Off,
            network,
        };
        let outcome = check::run(&check, &workspace, "infra", &[]).await.unwrap();
        assert!(!marker.exists(), "the command ran");
        let reason = outcome.not_run.unwrap();
        assert!(
            reason.contains(&format!("GRAFT_CHECK_NETWORK={network}"))
                && reason.contains("GRAFT_CHECK_NETWORK=open"),
            "{reason}"
        );
    }
}
