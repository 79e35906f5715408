//! Several replicas on one database: the safety-net poll and retention run
//! once per interval across all of them, and (on PostgreSQL) three real
//! `graft serve` processes finish every sync although two are killed with
//! SIGKILL in the middle of syncs.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use graft::ids::PrNumber;
use graft::periodic::{self, Periodic};
use graft::store::{Store, now_ms};
use support::{TestApp, TestDb, default_settings, eventually};
use tokio::sync::watch;

const SHORT: Duration = Duration::from_millis(300);

/// At most this many runs fit between `started` and `ended` when two
/// claims are always at least `interval` apart.
fn most_runs(started: i64, ended: i64, interval: Duration) -> i64 {
    let interval = i64::try_from(interval.as_millis()).unwrap();
    (ended - started) / interval + 1
}

async fn runs_of(store: &Store, task: &str) -> i64 {
    store
        .periodic_run(task)
        .await
        .unwrap()
        .map_or(0, |r| r.runs)
}

async fn concurrent_claims_of_one_run_have_one_winner(db: TestDb) {
    // Two pools stand for two replicas.
    let (a, b) = (db.store().await, db.store().await);
    let now = now_ms();
    let minute = 60_000;
    let mut claims = tokio::task::JoinSet::new();
    for i in 0..16 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        claims.spawn(async move {
            store
                .claim_periodic("t", &format!("replica-{i}"), now, minute)
                .await
                .unwrap()
        });
    }
    let won = claims.join_all().await.into_iter().filter(|w| *w).count();
    assert_eq!(won, 1, "exactly one of the claims of the same run wins");
    assert!(
        !a.claim_periodic("t", "x", now + minute - 1, minute)
            .await
            .unwrap()
    );
    assert!(
        b.claim_periodic("t", "y", now + minute, minute)
            .await
            .unwrap()
    );
    assert!(
        !a.claim_periodic("t", "x", now + minute, minute)
            .await
            .unwrap()
    );
    let run = a.periodic_run("t").await.unwrap().unwrap();
    assert_eq!(
        (run.holder.as_str(), run.last_run_at, run.runs),
        ("y", now + minute, 2)
    );
    // Another task's runs are its own.
    assert!(a.claim_periodic("u", "x", now, minute).await.unwrap());
}

async fn a_periodic_task_runs_once_per_interval_across_two_replicas(db: TestDb) {
    let stores = [db.store().await, db.store().await];
    let ran: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let (stop, stop_rx) = watch::channel(false);
    let started = now_ms();
    let mut replicas = tokio::task::JoinSet::new();
    for (store, name) in stores.iter().zip(["a", "b"]) {
        let task = Periodic {
            name: "counted",
            interval: SHORT,
            holder: name.into(),
        };
        let ran = ran.clone();
        replicas.spawn(periodic::run(
            store.clone(),
            task,
            stop_rx.clone(),
            move || {
                ran.lock().unwrap().push(name);
                async {}
            },
        ));
    }
    eventually("five runs", Duration::from_secs(20), || async {
        (ran.lock().unwrap().len() >= 5).then_some(())
    })
    .await;
    let _ = stop.send(true);
    while replicas.join_next().await.is_some() {}
    let ended = now_ms();
    let ran = ran.lock().unwrap().clone();
    assert_eq!(
        i64::try_from(ran.len()).unwrap(),
        runs_of(&stores[0], "counted").await,
        "one run per claim won: {ran:?}"
    );
    assert!(
        i64::try_from(ran.len()).unwrap() <= most_runs(started, ended, SHORT),
        "{} runs in {} ms at most every {SHORT:?}: {ran:?}",
        ran.len(),
        ended - started
    );
}

/// Marks every queued job done, as workers would, so each poll can queue
/// a fresh reconcile instead of coalescing into the queued one.
async fn drain(store: &Store) {
    sqlx::query("UPDATE jobs SET state = 'done' WHERE state = 'queued'")
        .execute(store.pool())
        .await
        .unwrap();
}

async fn reconciles(store: &Store) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE kind = $1")
        .bind(graft::sync::schedule::RECONCILE_JOB)
        .fetch_one(store.pool())
        .await
        .unwrap();
    n
}

async fn the_poll_and_retention_run_once_per_interval_across_two_replicas(db: TestDb) {
    let apps = [
        TestApp::start(&db, default_settings(), None).await,
        TestApp::start(&db, default_settings(), None).await,
    ];
    let store = apps[0].store.clone();
    store
        .create_project(
            &support::sync::project_spec(graft::ids::Provider::Github, "acme/infra"),
            now_ms(),
        )
        .await
        .unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let started = now_ms();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, app) in apps.iter().enumerate() {
        let replica = format!("replica-{i}");
        tasks.spawn(graft::sync::poll::run_poller(
            app.state.context.clone(),
            SHORT,
            replica.clone(),
            stop_rx.clone(),
        ));
        tasks.spawn(graft::retention::run(
            app.store.clone(),
            app.state.context.mirrors.clone(),
            30,
            SHORT,
            replica,
            stop_rx.clone(),
        ));
    }
    eventually("five polls", Duration::from_secs(20), || async {
        drain(&store).await;
        (reconciles(&store).await >= 5).then_some(())
    })
    .await;
    let _ = stop.send(true);
    while tasks.join_next().await.is_some() {}
    let ended = now_ms();
    let most = most_runs(started, ended, SHORT);
    let polls = reconciles(&store).await;
    assert!(
        polls <= most,
        "{polls} polls queued a reconcile in {} ms, at most one every {SHORT:?} across replicas",
        ended - started
    );
    assert!(polls <= runs_of(&store, graft::sync::poll::TASK).await);
    let prunes = runs_of(&store, graft::retention::TASK).await;
    assert!(
        (1..=most).contains(&prunes),
        "{prunes} prunes in {} ms, at most one every {SHORT:?} across replicas",
        ended - started
    );
    for app in apps {
        app.stop().await;
    }
}

both_backends!(
    concurrent_claims_of_one_run_have_one_winner,
    a_periodic_task_runs_once_per_interval_across_two_replicas,
    the_poll_and_retention_run_once_per_interval_across_two_replicas,
);

// ---------------------------------------------------------------------------
// Three `graft serve` processes on one PostgreSQL database.

const INSTALLATION: i64 = 77;
const PROJECTS: usize = 6;

/// Stands between one replica and the fake GitHub. It forwards everything;
/// with `hold_pull_creations` it lets a PR creation reach GitHub but never
/// answers it, so the replica is killed knowing nothing of the PR it made:
/// the worst moment to die for "exactly one PR".
#[derive(Clone)]
struct Proxy {
    upstream: String,
    hold_pull_creations: bool,
    held: Arc<std::sync::atomic::AtomicUsize>,
    http: reqwest::Client,
}

impl Proxy {
    /// Starts the proxy; returns it and its base URL.
    async fn start(upstream: &str, hold_pull_creations: bool) -> (Proxy, String) {
        let proxy = Proxy {
            upstream: upstream.trim_end_matches('/').to_string(),
            hold_pull_creations,
            held: Arc::default(),
            http: reqwest::Client::new(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .fallback(forward)
            .with_state((proxy.clone(), base.clone()));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        (proxy, base)
    }

    fn held(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn forward(
    axum::extract::State((proxy, own)): axum::extract::State<(Proxy, String)>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = proxy
        .http
        .request(parts.method.clone(), format!("{}{path}", proxy.upstream));
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    let Ok(answer) = outgoing.body(body).send().await else {
        return axum::http::StatusCode::BAD_GATEWAY.into_response();
    };
    let status = answer.status();
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in answer.headers() {
        if name == axum::http::header::TRANSFER_ENCODING
            || name == axum::http::header::CONTENT_LENGTH
            || name == axum::http::header::CONNECTION
        {
            continue;
        }
        // Pagination links stay on the origin graft was given.
        let value = value
            .to_str()
            .map(|v| v.replace(&proxy.upstream, &own))
            .ok()
            .and_then(|v| axum::http::HeaderValue::from_str(&v).ok())
            .unwrap_or_else(|| value.clone());
        headers.insert(name.clone(), value);
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    let creates_pull = parts.method == axum::http::Method::POST
        && parts.uri.path().ends_with("/pulls")
        && status.is_success();
    if proxy.hold_pull_creations && creates_pull {
        proxy.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::pending::<()>().await;
    }
    (status, headers, bytes).into_response()
}

/// One `graft serve` process; killed with SIGKILL when dropped.
struct Replica {
    name: String,
    child: std::process::Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Replica {
    async fn start(name: &str, database_url: &str, github_api: &str) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_graft"));
        for (var, _) in std::env::vars() {
            if var.starts_with("GRAFT_")
                || var.starts_with("GITHUB_")
                || var.starts_with("GITLAB_")
                || var.starts_with("ENCRYPTION_KEY")
                || var == "DATABASE_URL"
                || var == "PORT"
            {
                command.env_remove(var);
            }
        }
        let log = |file: &str| std::fs::File::create(dir.path().join(file)).unwrap();
        let child = command
            .arg("serve")
            .current_dir(dir.path())
            // Job leases and periodic runs are named after it.
            .env("HOSTNAME", name)
            .env("DATABASE_URL", database_url)
            .env("PORT", "0")
            .env("GRAFT_BIND", "127.0.0.1")
            .env("ENCRYPTION_KEY", support::TEST_KEY)
            .env("GITHUB_APP_ID", support::fake_github::APP_ID.to_string())
            .env(
                "GITHUB_APP_PRIVATE_KEY",
                support::fake_github::app_private_key(),
            )
            .env("GITHUB_API_URL", github_api)
            .env("GITHUB_WEBHOOK_SECRET", support::GITHUB_SECRET)
            .env("GRAFT_WORK_DIR", dir.path().join("work"))
            .env("GRAFT_WORKERS", "2")
            .env("GRAFT_JOB_LEASE", "5")
            .env("GRAFT_POLL_INTERVAL", "0")
            // Every sync spends a second in its check: time to be killed in.
            .env("GRAFT_CHECK_COMMAND", "sleep 1")
            .env("GRAFT_CHECK_SANDBOX", "off")
            .env("GRAFT_CHECK_NETWORK", "open")
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(log("stdout"))
            .stderr(log("stderr"))
            .spawn()
            .unwrap();
        let stdout = dir.path().join("stdout");
        let base = eventually(
            &format!("{name} listening"),
            Duration::from_secs(30),
            || {
                let text = std::fs::read_to_string(&stdout).unwrap_or_default();
                let base = text.lines().find_map(|l| {
                    l.strip_prefix("graft listening on ")
                        .map(|a| a.trim().to_string())
                });
                async move { base }
            },
        )
        .await;
        Replica {
            name: name.into(),
            child,
            base,
            dir,
        }
    }

    /// `kill -9`: no shutdown, no lease released.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "--- {} stdout\n{}--- {} stderr\n{}",
            self.name,
            read("stdout"),
            self.name,
            read("stderr")
        )
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sync job this replica is running now, with its project.
async fn running_sync(store: &Store, replica: &str) -> Option<(i64, i64)> {
    sqlx::query_as(
        "SELECT id, project_id FROM jobs WHERE kind = $1 AND state = 'running' AND locked_by LIKE $2",
    )
    .bind(graft::sync::schedule::SYNC_JOB)
    .bind(format!("{replica}-%"))
    .fetch_optional(store.pool())
    .await
    .unwrap()
}

async fn busy_jobs(store: &Store) -> i64 {
    store
        .job_counts()
        .await
        .unwrap()
        .iter()
        .filter(|(state, _)| state == "queued" || state == "running")
        .map(|(_, n)| *n)
        .sum()
}

/// Polls `check` until `Some`, failing with every replica's logs after
/// `timeout`.
async fn wait<T, F, Fut>(what: &str, timeout: Duration, replicas: &[Replica], mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            let logs: Vec<String> = replicas.iter().map(Replica::logs).collect();
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_finish_every_sync_when_two_are_killed_mid_sync() {
    use graft::store::projects::{Kind, Mode, NewProject, SyncStatus};
    use graft::sync::intake::{FileOp, change_files};

    let Some(db) = TestDb::new(support::Backend::Postgres).await else {
        return;
    };
    let cleanup = db.cleanup();
    let store = db.store().await;
    let github = support::fake_github::FakeGithub::start().await;
    let mut proxies = Vec::new();
    let mut replicas = Vec::new();
    for i in 0..3 {
        // replica2 makes its PRs but never hears back.
        let (proxy, url) = Proxy::start(&github.api_url, i == 2).await;
        proxies.push(proxy);
        replicas.push(Replica::start(&format!("replica{i}"), &db.url, &url).await);
    }
    // Webhooks go to the replica that survives.
    github.set_webhook_url(&format!("{}/webhooks/github", replicas[0].base));

    let mut projects = Vec::new();
    for i in 0..PROJECTS {
        let repo = format!("acme/infra-{i}");
        github.create_repo(&repo, INSTALLATION);
        let project = store
            .create_project(
                &NewProject {
                    provider: graft::ids::Provider::Github,
                    integration_id: None,
                    repo: repo.clone(),
                    branch: "main".into(),
                    base_path: "infra/gen".into(),
                    kind: Kind::Iac,
                    mode: Mode::PullRequest,
                    auto_sync: true,
                    auto_merge: false,
                    sync_branch: None,
                    commit_via: Default::default(),
                },
                now_ms(),
            )
            .await
            .unwrap();
        let files = [support::sync::input(
            "main.tf",
            &format!("variable \"v{i}\" {{}}\n"),
        )];
        let op = FileOp::Put {
            files: &files,
            delete_missing: false,
            source: None,
        };
        let applied = change_files(&store, &project, "test", op).await.unwrap();
        assert!(applied.sync_job.is_some(), "auto-sync queues a sync");
        projects.push((project.id, repo));
    }

    // replica1 dies in a sync's check, before it pushed anything.
    let (job, _) = wait(
        "replica1 runs a sync",
        Duration::from_secs(30),
        &replicas,
        || running_sync(&store, "replica1"),
    )
    .await;
    replicas[1].kill();
    // replica2 dies after GitHub made its PR, before graft heard of it.
    wait(
        "replica2 creates a PR",
        Duration::from_secs(30),
        &replicas,
        || {
            let held = proxies[2].held();
            async move { (held > 0).then_some(()) }
        },
    )
    .await;
    assert!(running_sync(&store, "replica2").await.is_some());
    replicas[2].kill();

    // replica0 takes both over once their leases (5 s) ran out.
    wait(
        "every project synced",
        Duration::from_secs(45),
        &replicas,
        || async {
            if busy_jobs(&store).await > 0 {
                return None;
            }
            for (id, _) in &projects {
                let p = store.require_project(*id).await.unwrap();
                if p.sync_status != SyncStatus::Success {
                    return None;
                }
            }
            (busy_jobs(&store).await == 0).then_some(())
        },
    )
    .await;

    let (attempts,): (i64,) = sqlx::query_as("SELECT attempts FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(attempts >= 2, "replica1's sync ran again elsewhere");
    for (id, repo) in &projects {
        let pulls = github.pulls(repo);
        assert_eq!(pulls.len(), 1, "{repo}: exactly one PR: {pulls:?}");
        let project = store.require_project(*id).await.unwrap();
        assert_eq!(
            project.pull_request_number,
            Some(PrNumber(pulls[0].number)),
            "{repo}"
        );
        let status_comments = github
            .comments(repo, pulls[0].number)
            .into_iter()
            .filter(|c| c.body.contains("<!-- graft:status -->"))
            .count();
        assert_eq!(status_comments, 1, "{repo}: exactly one status comment");
    }

    // No delivery lost: each webhook graft answered is stored and handled.
    let sent = github.hooks.sent();
    assert!(!sent.is_empty());
    assert!(
        sent.iter()
            .all(|h| h.status.is_some_and(|s| (200..300).contains(&s))),
        "{sent:?}"
    );
    let stored: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let handled: i64 = stored
        .iter()
        .filter(|(status, _)| status == "processed" || status == "ignored")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        usize::try_from(handled).unwrap(),
        sent.len(),
        "every answered webhook stored and handled: {stored:?}"
    );
    assert_eq!(
        stored.iter().map(|(_, n)| n).sum::<i64>(),
        handled,
        "{stored:?}"
    );
    assert!(github.violations().is_empty(), "{:?}", github.violations());

    drop(replicas);
    cleanup.run().await;
}

#[test]
fn the_job_lease_is_a_setting_with_bounds_and_help() {
    let graft = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_graft"));
        command.env_remove("GRAFT_JOB_LEASE");
        command
    };
    let help = graft().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    assert!(help.contains("GRAFT_JOB_LEASE"), "{help}");
    assert!(help.contains("takes them over"), "{help}");
    for bad in ["4", "0", "86401", "-5", "a minute"] {
        let dir = tempfile::tempdir().unwrap();
        let output = graft()
            .current_dir(dir.path())
            .arg("serve")
            .env("GRAFT_JOB_LEASE", bad)
            .env("DATABASE_URL", "sqlite://graft.db")
            .env("PORT", "0")
            .env("GRAFT_BIND", "127.0.0.1")
            .output()
            .unwrap();
        assert!(
            !output.status.success(),
            "GRAFT_JOB_LEASE={bad} was accepted"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("GRAFT_JOB_LEASE is whole seconds from 5 to 86400"),
            "GRAFT_JOB_LEASE={bad}: {stderr}"
        );
        assert!(
            !dir.path().join("graft.db").exists(),
            "refused before opening the database"
        );
    }
}
