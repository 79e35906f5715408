//! Shared test support: a fresh database per test on SQLite and (when
//! `TEST_DATABASE_URL` is set) PostgreSQL, a running graft on a loopback
//! port, signed webhook builders, and polling with a deadline.
#![allow(dead_code)]

pub mod commands;
pub mod fake_common;
pub mod fake_github;
pub mod fake_gitlab;
pub mod git_host;
pub mod harness;
pub mod sync;
pub mod ui;
pub mod webhooks;

use std::future::Future;
use std::time::Duration;

use graft::app::{AppSettings, AppState};
use graft::jobs::{JobQueue, PoolConfig};
use graft::store::Store;
use sqlx::Executor;
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database nobody else uses: a temporary SQLite file, or a fresh schema
/// in the PostgreSQL database named by `TEST_DATABASE_URL`.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL schema and the database it lives in.
    schema: Option<(String, String)>,
}

impl TestDb {
    /// `None` only for PostgreSQL when `TEST_DATABASE_URL` is unset outside
    /// CI; in CI (`CI=true`) a missing database fails the test.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/graft.db", dir.path().display());
                Some(TestDb {
                    url,
                    backend,
                    _dir: Some(dir),
                    schema: None,
                })
            }
            Backend::Postgres => {
                let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
                    assert!(
                        std::env::var("CI").is_err(),
                        "CI must set TEST_DATABASE_URL so the suite runs on PostgreSQL"
                    );
                    eprintln!("TEST_DATABASE_URL is not set: PostgreSQL half of this test skipped");
                    return None;
                };
                let schema = format!("t_{:016x}", rand::random::<u64>());
                sqlx::any::install_default_drivers();
                let admin = sqlx::AnyPool::connect(&base)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                admin
                    .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .await
                    .expect("create test schema");
                admin.close().await;
                let separator = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{separator}options=-csearch_path%3D{schema}");
                Some(TestDb {
                    url,
                    backend,
                    _dir: None,
                    schema: Some((schema, base)),
                })
            }
        }
    }

    /// What to drop once the test has passed; see [`SchemaCleanup`].
    pub fn cleanup(&self) -> SchemaCleanup {
        SchemaCleanup(self.schema.clone())
    }

    pub async fn store(&self) -> Store {
        Store::open(&self.url).await.expect("open test store")
    }
}

/// Drops the PostgreSQL schema of a test that passed (a failed one keeps
/// it, to look at), so local runs do not pile schemas up. Best effort and
/// bounded: a connection some test left busy only means the schema stays.
pub struct SchemaCleanup(Option<(String, String)>);

impl SchemaCleanup {
    pub async fn run(self) {
        use sqlx::Connection;
        let Some((schema, base)) = self.0 else {
            return;
        };
        let Ok(mut admin) = sqlx::AnyConnection::connect(&base).await else {
            return;
        };
        let _ = (&mut admin).execute("SET lock_timeout = '5s'").await;
        let _ = (&mut admin)
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE"
            )))
            .await;
        let _ = admin.close().await;
    }
}

/// Runs an `async fn(TestDb)` once per backend: `both_backends!(name);`
/// makes the tests `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(db) = $crate::support::TestDb::new($crate::support::Backend::Sqlite).await {
                    super::$name(db).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::support::TestDb::new($crate::support::Backend::Postgres).await {
                    let cleanup = db.cleanup();
                    super::$name(db).await;
                    cleanup.run().await;
                }
            }
        }
    )+};
}

pub const GITHUB_SECRET: &str = "gh-webhook-secret";
pub const GITLAB_SECRET: &str = "gl-webhook-secret";
pub const TEST_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

pub fn test_keyring() -> graft::crypto::Keyring {
    graft::crypto::Keyring {
        current: graft::crypto::Key::parse(&TEST_KEY.to_string().into()).expect("test key"),
        previous: None,
    }
}

pub fn default_settings() -> AppSettings {
    AppSettings {
        keyring: Some(test_keyring()),
        github_webhook_secrets: graft::signature::split_secrets(GITHUB_SECRET),
        gitlab_webhook_secrets: graft::signature::split_secrets(GITLAB_SECRET),
        // The fake GitLab speaks plain http on loopback.
        allow_http_gitlab: true,
        ..AppSettings::default()
    }
}

/// graft's real router on a loopback port, optionally with workers.
pub struct TestApp {
    pub state: AppState,
    pub store: Store,
    pub base: String,
    pub http: reqwest::Client,
    stop: watch::Sender<bool>,
    workers: Option<JoinSet<()>>,
    server: tokio::task::JoinHandle<()>,
}

pub fn fast_pool() -> PoolConfig {
    PoolConfig {
        workers: 2,
        lease: Duration::from_secs(5),
        poll_interval: Duration::from_millis(50),
        shutdown_grace: Duration::from_secs(5),
        backoff: graft::jobs::Backoff {
            base: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        ..PoolConfig::default()
    }
}

impl TestApp {
    /// The job queue: queueing through it wakes the workers.
    pub fn jobs(&self) -> &JobQueue {
        &self.state.context.jobs
    }

    pub async fn start(db: &TestDb, settings: AppSettings, pool: Option<PoolConfig>) -> TestApp {
        let store = db.store().await;
        let state = AppState::new(store.clone(), settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let router = state.router();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let (stop, stop_rx) = watch::channel(false);
        let workers = pool.map(|config| state.spawn_workers(config, stop_rx));
        TestApp {
            state,
            store,
            base,
            http: reqwest::Client::new(),
            stop,
            workers,
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn create_token(&self, name: &str) -> String {
        self.store
            .create_token(name, graft::store::now_ms())
            .await
            .expect("create token")
            .1
    }

    /// Stops workers (waiting for them) and the server.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut workers) = self.workers.take() {
            while workers.join_next().await.is_some() {}
        }
        self.server.abort();
    }
}

/// Polls `check` until it returns `Some`, failing after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn fixture(path: &str) -> Vec<u8> {
    let full = format!(
        "{}/tests/fixtures/webhooks/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&full).unwrap_or_else(|e| panic!("fixture {full}: {e}"))
}

/// The value of one series (`name{labels}`) in Prometheus text output.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Makes every insert into `table` fail (`broken`) or work again: a real
/// database failure part-way through graft's work, on either backend.
pub async fn fail_inserts_into(store: &Store, table: &str, broken: bool) {
    let trigger = format!("no_inserts_into_{table}");
    let statements: Vec<String> = match (store.backend(), broken) {
        (graft::store::Backend::Sqlite, true) => vec![format!(
            "CREATE TRIGGER {trigger} BEFORE INSERT ON {table} \
             BEGIN SELECT RAISE(ABORT, '{table} unavailable'); END"
        )],
        (graft::store::Backend::Sqlite, false) => vec![format!("DROP TRIGGER {trigger}")],
        (graft::store::Backend::Postgres, true) => vec![
            format!(
                "CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION '{table} unavailable'; END $$"
            ),
            format!(
                "CREATE TRIGGER {trigger} BEFORE INSERT ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION {trigger}()"
            ),
        ],
        (graft::store::Backend::Postgres, false) => {
            vec![format!("DROP TRIGGER {trigger} ON {table}")]
        }
    };
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .expect("trigger statement");
    }
}

/// A comment graft wrote, with what changes from run to run (commit ids)
/// replaced, for snapshots.
pub fn redacted(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 12 && run.len() <= 40 {
            out.push_str("<sha>");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in body.chars() {
        if c.is_ascii_hexdigit() && !c.is_ascii_uppercase() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}
