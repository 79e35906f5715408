//! The harness end to end: graft's router and workers with both fake forges.
//! What graft and humans do on the fakes arrives at graft as real, signed
//! webhooks; and no token, JWT or Authorization header ever reaches a log.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use graft::forge::{NewPullRequest, PullRequestState, Reaction, STATUS_MARKER, UserRef};
use secrecy::ExposeSecret;
use support::harness::Harness;
use support::{Backend, TestDb};

const REPO: &str = "acme/infra";
const PROJECT: &str = "platform/live";

fn push_over_http(
    clone_url: &str,
    header: &str,
    from: &str,
    branch: &str,
    file: &str,
) -> std::process::Output {
    let work = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(work.path())
            .args(args)
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", header)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "graft")
            .env("GIT_AUTHOR_EMAIL", "graft@example.com")
            .env("GIT_COMMITTER_NAME", "graft")
            .env("GIT_COMMITTER_EMAIL", "graft@example.com")
            .output()
            .unwrap()
    };
    assert!(
        run(&["clone", "--quiet", "--branch", from, clone_url, "."])
            .status
            .success()
    );
    std::fs::write(work.path().join(file), "generated\n").unwrap();
    run(&["add", "."]);
    run(&["commit", "-qm", "graft: sync"]);
    run(&["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")])
}

async fn github_activity_reaches_graft_as_webhooks(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, 5);
    let client = h.github_client(REPO).await;
    let credentials = client.git_credentials().await.unwrap();
    let info = client.repo_info().await.unwrap();
    let header = credentials.authorization_header();
    let pushed = push_over_http(
        &info.clone_url,
        header.expose_secret(),
        "main",
        "graft/infra",
        "main.tf",
    );
    assert!(pushed.status.success());
    let push = h.wait_for_delivery("github", "push", None).await;
    let payload: serde_json::Value = serde_json::from_slice(&push.payload.unwrap()).unwrap();
    assert_eq!(payload["ref"], "refs/heads/graft/infra");
    assert_eq!(payload["commits"][0]["added"][0], "main.tf");
    assert_eq!(payload["installation"]["id"], 5);

    let pr = client
        .open_pull_request(&NewPullRequest {
            head_branch: "graft/infra".into(),
            base_branch: "main".into(),
            title: "graft: sync".into(),
            body: String::new(),
        })
        .await
        .unwrap();
    h.wait_for_delivery("github", "pull_request", Some("opened"))
        .await;
    let pushed = push_over_http(
        &info.clone_url,
        header.expose_secret(),
        "graft/infra",
        "graft/infra",
        "other.tf",
    );
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    h.wait_for_delivery("github", "pull_request", Some("synchronize"))
        .await;

    let comment = h.comment_on_github(REPO, pr.number.get(), "alice", "/graft sync");
    h.wait_for_delivery("github", "issue_comment", Some("created"))
        .await;
    client
        .react(pr.number, comment, Reaction::Eyes)
        .await
        .unwrap();
    client
        .upsert_status_comment(pr.number, "syncing")
        .await
        .unwrap();
    h.github.set_role(REPO, "alice", "write");
    assert!(
        client
            .permission(&UserRef {
                login: "alice".into(),
                id: None
            })
            .await
            .unwrap()
            >= graft::forge::Permission::Write
    );

    h.github.merge_pull(REPO, pr.number.get(), "alice").unwrap();
    h.wait_for_delivery("github", "pull_request", Some("merged"))
        .await;
    assert_eq!(
        client.pull_request(pr.number).await.unwrap().state,
        PullRequestState::Merged
    );

    // Removing the installation is tracked from its webhook.
    assert_eq!(
        h.app.store.installation_for_repo(REPO).await.unwrap(),
        Some(5)
    );
    h.github.remove_installation(5);
    h.wait_for_delivery("github", "installation", Some("deleted"))
        .await;
    assert_eq!(h.app.store.installation_for_repo(REPO).await.unwrap(), None);
    let bodies: Vec<_> = h
        .github
        .comments(REPO, pr.number.get())
        .into_iter()
        .map(|c| c.body)
        .collect();
    assert!(bodies.iter().any(|b| b.starts_with(STATUS_MARKER)));
    assert!(
        h.github.webhooks().iter().all(|w| w.status == Some(202)),
        "graft accepted every webhook"
    );
    assert_eq!(h.github.violations(), Vec::<String>::new());
    h.stop().await;
}

async fn gitlab_activity_reaches_graft_as_webhooks(db: TestDb) {
    let h = Harness::start(&db).await;
    let project = h.gitlab_project(PROJECT);
    let client = h.gitlab_client(PROJECT).await;
    h.push_to_gitlab_as_human(
        PROJECT,
        "graft/live",
        &[("main.tf", Some(b"x".as_slice()))],
        "bob",
    );
    let push = h.wait_for_delivery("gitlab", "Push Hook", None).await;
    let payload: serde_json::Value = serde_json::from_slice(&push.payload.unwrap()).unwrap();
    assert_eq!(payload["user_username"], "bob");
    let mr = client
        .open_pull_request(&NewPullRequest {
            head_branch: "graft/live".into(),
            base_branch: "main".into(),
            title: "graft: sync".into(),
            body: String::new(),
        })
        .await
        .unwrap();
    h.wait_for_delivery("gitlab", "Merge Request Hook", Some("opened"))
        .await;
    h.comment_on_gitlab(project, mr.number.get(), "alice", "/graft status");
    h.wait_for_delivery("gitlab", "Note Hook", Some("created"))
        .await;
    h.push_to_gitlab_as_human(
        PROJECT,
        "graft/live",
        &[("b.tf", Some(b"y".as_slice()))],
        "bob",
    );
    h.wait_for_delivery("gitlab", "Merge Request Hook", Some("synchronize"))
        .await;
    h.gitlab.merge(project, mr.number.get(), "alice").unwrap();
    h.wait_for_delivery("gitlab", "Merge Request Hook", Some("merged"))
        .await;
    assert!(h.gitlab.webhooks().iter().all(|w| w.status == Some(202)));
    h.stop().await;
}

both_backends!(
    github_activity_reaches_graft_as_webhooks,
    gitlab_activity_reaches_graft_as_webhooks,
);

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test binary, from every thread. The subscriber is
/// global because a thread-local one (`set_default`) does not see what runs
/// on `spawn_blocking` threads (git) or other runtimes' workers.
fn captured_logs() -> Buffer {
    static LOGS: OnceLock<Buffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("nothing else in this test binary sets a global subscriber");
        buffer
    })
    .clone()
}

/// Drives both clients through token minting, a revoked token, retries,
/// errors and a git fetch on a blocking thread with every log at TRACE
/// captured; no secret may appear.
async fn no_secret_in_logs(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let buffer = captured_logs();
    let h = Harness::start(&db).await;
    h.github_repo(REPO, 5);
    let project = h.gitlab_project(PROJECT);
    let github = h.github_client(REPO).await;
    let gitlab = h.gitlab_client(PROJECT).await;
    github.repo_info().await.unwrap();
    h.github.faults(|f| f.fail = 1);
    github.branch_head("main").await.unwrap();
    h.github.revoke_tokens();
    github.repo_info().await.unwrap();
    let _ = github.find_open_pull_request("nope").await.unwrap();
    let _ = github
        .pull_request(graft::ids::PrNumber(999))
        .await
        .unwrap_err();
    gitlab.repo_info().await.unwrap();
    h.gitlab.faults(|f| f.fail = 1);
    gitlab.branch_head("main").await.unwrap();
    let gh_credentials = github.git_credentials().await.unwrap();
    let gl_credentials = gitlab.git_credentials().await.unwrap();
    tracing::info!(credentials = ?gh_credentials, "debug-printing credentials must not leak");
    // git runs on blocking threads: a fetch with the token, and a marker that
    // shows the capture hears those threads at all.
    let marker = format!("blocking-thread-marker-{}", rand::random::<u64>());
    let mirror = tempfile::tempdir().unwrap();
    let fetched = tokio::task::spawn_blocking({
        let (url, marker) = (h.github.git.clone_url(REPO), marker.clone());
        let auth = graft::git::GitAuth::new(
            &gh_credentials.username,
            gh_credentials.token.expose_secret().to_string().into(),
        );
        let path = mirror.path().join("mirror.git");
        move || {
            tracing::info!(%marker, "logged from a blocking thread");
            graft::git::mirror::fetch_path(&path, &url, &auth)
        }
    })
    .await
    .unwrap();
    assert!(fetched.is_ok(), "{fetched:?}");
    h.gitlab.revoke_token(support::fake_gitlab::BOT_TOKEN);
    let _ = gitlab.branch_head("main").await.unwrap_err();
    let _ = project;
    h.stop().await;

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains(&marker),
        "a log from a spawn_blocking thread was not captured"
    );
    assert!(
        logs.len() > 1000,
        "logs were captured: {} bytes",
        logs.len()
    );
    let tokens: Vec<String> = h_tokens(&gh_credentials, &gl_credentials);
    for secret in tokens
        .iter()
        .map(String::as_str)
        .chain(["ghs_", "glpat-", "eyJ"])
    {
        assert!(
            !logs.contains(secret),
            "a secret ({}…) is in the logs",
            &secret[..3]
        );
    }
    assert!(
        !logs.to_lowercase().contains("authorization:"),
        "an Authorization header is in the logs"
    );
    assert!(
        !logs.to_lowercase().contains("private-token:"),
        "a PRIVATE-TOKEN header is in the logs"
    );
}

fn h_tokens(a: &graft::forge::GitCredentials, b: &graft::forge::GitCredentials) -> Vec<String> {
    vec![
        a.token.expose_secret().to_string(),
        b.token.expose_secret().to_string(),
    ]
}

#[tokio::test]
async fn no_secret_in_logs_sqlite() {
    no_secret_in_logs(Backend::Sqlite).await;
}

#[tokio::test]
async fn no_secret_in_logs_postgres() {
    no_secret_in_logs(Backend::Postgres).await;
}
