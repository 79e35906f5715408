//! The `graft` binary as an operator meets it: zero-config start, clear
//! start-up errors, keys and tokens.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

const GRAFT: &str = env!("CARGO_BIN_EXE_graft");

/// `graft` with none of the operator's settings leaking in from the test
/// environment, run in `dir`.
fn graft(dir: &std::path::Path) -> Command {
    let mut command = Command::new(GRAFT);
    command.current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("GRAFT_")
            || name.starts_with("GITHUB_")
            || name.starts_with("GITLAB_")
            || name.starts_with("ENCRYPTION_KEY")
            || name == "DATABASE_URL"
            || name == "PORT"
        {
            command.env_remove(name);
        }
    }
    command
}

/// The lines of `output`, read on a thread of their own so that a waiting
/// test can give up at a deadline (a blocking `read_line` never returns to
/// check one while the program prints nothing).
fn lines_of(output: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Collects lines into `printed` until one starts with `prefix` (its rest
/// is returned), the output ends, or `deadline` passes.
fn line_starting(
    lines: &Receiver<String>,
    prefix: &str,
    deadline: Instant,
    printed: &mut String,
) -> Option<String> {
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let line = lines.recv_timeout(left).ok()?;
        printed.push_str(&line);
        printed.push('\n');
        if let Some(rest) = line.strip_prefix(prefix) {
            return Some(rest.trim().to_string());
        }
    }
}

/// Collects the rest of the output into `printed`; `false` when it did not
/// end by `deadline`.
fn rest_of(lines: &Receiver<String>, deadline: Instant, printed: &mut String) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                printed.push_str(&line);
                printed.push('\n');
            }
            Err(RecvTimeoutError::Disconnected) => return true,
            Err(RecvTimeoutError::Timeout) => return false,
        }
    }
}

fn run(command: &mut Command) -> (Output, String, String) {
    let output = command.output().expect("run graft");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    (output, stdout, stderr)
}

#[test]
fn serve_with_no_configuration_starts_on_sqlite_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = graft(dir.path())
        .args(["serve"])
        .env("PORT", "0")
        .env("GRAFT_BIND", "127.0.0.1")
        .env("GRAFT_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let mut printed = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let address = line_starting(&stdout, "graft listening on ", deadline, &mut printed);
    let Some(address) = address else {
        let _ = child.kill();
        panic!("no listening line within 30 s in: {printed}");
    };
    let health = reqwest::blocking::get(format!("{address}/healthz")).unwrap();
    assert_eq!(health.status(), 200);
    let ready = reqwest::blocking::get(format!("{address}/readyz")).unwrap();
    assert_eq!(ready.status(), 200);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let ended = rest_of(
        &stdout,
        Instant::now() + Duration::from_secs(30),
        &mut printed,
    );
    if !ended {
        let _ = child.kill();
    }
    assert!(
        ended,
        "graft did not stop within 30 s of SIGTERM: {printed}"
    );
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graft exited with {exit}");
    for expected in [
        "ENCRYPTION_KEY",
        "GITHUB_APP_ID",
        "GITHUB_WEBHOOK_SECRET",
        "GITLAB_URL",
    ] {
        assert!(
            printed.contains(expected),
            "startup output does not mention {expected}: {printed}"
        );
    }
    assert!(
        dir.path().join("graft-data/graft.db").is_file(),
        "default SQLite file"
    );
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut logs).unwrap();
    let first = logs.lines().next().expect("some log lines");
    let parsed: serde_json::Value =
        serde_json::from_str(first).expect("GRAFT_LOG_FORMAT=json logs JSON");
    assert!(parsed.get("level").is_some(), "{first}");
}

#[test]
fn an_unreachable_database_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (output, _, stderr) = run(graft(dir.path())
        .args(["migrate"])
        .env("DATABASE_URL", "postgres://graft:pw@127.0.0.1:1/graft"));
    assert!(!output.status.success());
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(stderr.contains("cannot open the database"), "{stderr}");
    assert!(!stderr.contains("pw@"), "password leaked: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));

    let (output, _, stderr) = run(graft(dir.path())
        .args(["serve"])
        .env("DATABASE_URL", "mysql://x/y"));
    assert!(!output.status.success());
    assert!(
        stderr.contains("sqlite://") && stderr.contains("postgres://"),
        "{stderr}"
    );

    let (output, _, stderr) = run(graft(dir.path()).args(["migrate"]).env(
        "DATABASE_URL",
        "sqlite:///proc/graft-cannot-be-here/graft.db",
    ));
    assert!(!output.status.success());
    assert!(stderr.contains("data directory"), "{stderr}");
}

#[test]
fn a_bad_encryption_key_stops_serve_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["short", "c2hvcnQ=", "zz"] {
        let (output, _, stderr) = run(graft(dir.path())
            .args(["serve"])
            .env("ENCRYPTION_KEY", bad)
            .env("PORT", "0"));
        assert!(!output.status.success(), "{bad}");
        assert!(
            stderr.contains("ENCRYPTION_KEY") && stderr.contains("graft keys generate"),
            "{stderr}"
        );
        assert!(
            !stderr.contains(bad) || bad.len() < 3,
            "the key was echoed: {stderr}"
        );
    }
    assert!(
        !dir.path().join("graft-data").exists(),
        "nothing created before the key was checked"
    );
}

#[test]
fn keys_generate_prints_a_usable_key() {
    let dir = tempfile::tempdir().unwrap();
    let (output, stdout, _) = run(graft(dir.path()).args(["keys", "generate"]));
    assert!(output.status.success());
    let key = stdout.trim();
    assert_eq!(key.len(), 44);
    graft::crypto::Key::parse(&key.to_string().into()).expect("generated key parses");
    let (_, again, _) = run(graft(dir.path()).args(["keys", "generate"]));
    assert_ne!(again.trim(), key);
}

#[test]
fn keys_rotate_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (output, _, stderr) = run(graft(dir.path()).args(["keys", "rotate"]));
    assert!(!output.status.success());
    assert!(stderr.contains("ENCRYPTION_KEY"), "{stderr}");
    let key = graft::crypto::generate_key_text().unwrap();
    let (output, _, stderr) = run(graft(dir.path())
        .args(["keys", "rotate"])
        .env("ENCRYPTION_KEY", &key));
    assert!(!output.status.success());
    assert!(stderr.contains("ENCRYPTION_KEY_OLD"), "{stderr}");
}

#[test]
fn token_create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let (output, token, stderr) =
        run(graft(dir.path()).args(["token", "create", "--name", "generator"]));
    assert!(output.status.success(), "{stderr}");
    let token = token.trim().to_string();
    assert!(token.starts_with("graft_"), "{token}");
    assert!(stderr.contains("only this once"), "{stderr}");
    let (_, listed, _) = run(graft(dir.path()).args(["token", "list"]));
    assert!(
        listed.contains("generator\tactive") && !listed.contains(&token),
        "{listed}"
    );
    let (output, _, _) = run(graft(dir.path()).args(["token", "revoke", "--name", "generator"]));
    assert!(output.status.success());
    let (output, _, stderr) =
        run(graft(dir.path()).args(["token", "revoke", "--name", "generator"]));
    assert!(!output.status.success());
    assert!(stderr.contains("no active token"), "{stderr}");
    let db = std::fs::read(dir.path().join("graft-data/graft.db")).unwrap();
    assert!(
        !String::from_utf8_lossy(&db).contains(&token),
        "token stored in clear"
    );
}

#[test]
fn help_teaches_the_first_steps() {
    let dir = tempfile::tempdir().unwrap();
    let (output, stdout, _) = run(graft(dir.path()).args(["--help"]));
    assert!(output.status.success());
    for expected in [
        "graft serve",
        "graft keys generate",
        "graft token create",
        "DATABASE_URL",
    ] {
        assert!(stdout.contains(expected), "--help lacks {expected}");
    }
    let (_, serve_help, _) = run(graft(dir.path()).args(["serve", "--help"]));
    for expected in [
        "GITHUB_WEBHOOK_SECRET",
        "GRAFT_CHECK_COMMAND",
        "PORT",
        "comma-separated",
    ] {
        assert!(
            serve_help.contains(expected),
            "serve --help lacks {expected}"
        );
    }
}

/// Secrets set in the environment are not echoed by `--help` (clap shows
/// `[env: NAME=value]` unless told not to).
#[test]
fn help_does_not_print_secret_settings() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = [
        (
            "DATABASE_URL",
            "postgres://graft:db-s3cret@db.example/graft",
        ),
        ("ENCRYPTION_KEY", "key-s3cret"),
        ("ENCRYPTION_KEY_OLD", "old-key-s3cret"),
        ("GITHUB_APP_PRIVATE_KEY", "pem-s3cret"),
        ("GITHUB_WEBHOOK_SECRET", "gh-hook-s3cret"),
        ("GITLAB_TOKEN", "glpat-s3cret"),
        ("GITLAB_WEBHOOK_SECRET", "gl-hook-s3cret"),
        ("GRAFT_TOKEN", "graft-token-s3cret"),
        (
            "GRAFT_CHECK_COMMAND",
            "TF_TOKEN_app=check-s3cret tofu validate",
        ),
    ];
    let helps: [&[&str]; 7] = [
        &["--help"],
        &["serve", "--help"],
        &["migrate", "--help"],
        &["push", "--help"],
        &["gitlab", "connect", "--help"],
        &["token", "create", "--help"],
        &["keys", "rotate", "--help"],
    ];
    for args in helps {
        let mut command = graft(dir.path());
        command.args(args);
        for (name, value) in secrets {
            command.env(name, value);
        }
        let (output, stdout, stderr) = run(&mut command);
        assert!(output.status.success(), "{args:?}: {stderr}");
        assert!(stdout.contains("DATABASE_URL"), "{args:?}: {stdout}");
        assert!(
            !stdout.contains("s3cret"),
            "{args:?} printed a secret: {stdout}"
        );
    }
    let (_, serve_help, _) = run(graft(dir.path()).args(["serve", "--help"]).env(
        "GRAFT_CHECK_COMMAND",
        "TF_TOKEN_app=check-s3cret tofu validate",
    ));
    assert!(serve_help.contains("GRAFT_CHECK_COMMAND"), "{serve_help}");
    assert!(!serve_help.contains("s3cret"), "{serve_help}");
}

/// The start-up log names the database without its password, whether it
/// is in the user info or a `password=` parameter. Needs PostgreSQL
/// (`TEST_DATABASE_URL`, whose server must not check passwords, as in CI).
#[tokio::test]
async fn startup_log_names_the_database_without_its_password() {
    use sqlx::Executor;
    let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must set TEST_DATABASE_URL"
        );
        eprintln!("TEST_DATABASE_URL is not set: skipped");
        return;
    };
    // A password in the user info, when the URL has a user and none yet.
    let url = match (base.find("://"), base.find('@')) {
        (Some(scheme), Some(at)) if !base[scheme + 3..at].contains(':') => {
            format!("{}:hunter2-userinfo{}", &base[..at], &base[at..])
        }
        _ => base.clone(),
    };
    let schema = format!("cli_{:016x}", rand::random::<u64>());
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base).await.unwrap();
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .await
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}password=hunter2-query&options=-csearch_path%3D{schema}");

    let dir = tempfile::tempdir().unwrap();
    let mut child = graft(dir.path())
        .args(["serve"])
        .env("DATABASE_URL", &url)
        .env("PORT", "0")
        .env("GRAFT_BIND", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let mut printed = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    line_starting(&stdout, "graft listening on ", deadline, &mut printed);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut logs = String::new();
    let ended = rest_of(&stdout, deadline, &mut printed) && rest_of(&stderr, deadline, &mut logs);
    if !ended {
        let _ = child.kill();
    }
    let _ = child.wait();
    let _ = admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .await;
    admin.close().await;

    assert!(
        ended,
        "graft did not stop within 30 s of SIGTERM: {printed}\n{logs}"
    );
    assert!(printed.contains("graft listening on"), "{printed}\n{logs}");
    assert!(logs.contains("database ready"), "{logs}");
    assert!(logs.contains("password=***"), "{logs}");
    let everything = format!("{printed}{logs}");
    assert!(
        !everything.contains("hunter2"),
        "a password was printed: {everything}"
    );
}
