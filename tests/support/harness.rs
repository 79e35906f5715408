//! A test DSL in the spirit of bors's tester: graft's real router and
//! workers on a fresh database, wired to a fake GitHub and a fake GitLab
//! (graft's forge settings point at the fakes; the fakes send their signed
//! webhooks to graft), with helpers to act as humans, wait for conditions
//! and read both sides' state.

use std::time::Duration;

use graft::app::AppState;
use graft::forge::github::GithubAppConfig;
use graft::forge::retry::RetryPolicy;
use graft::forge::{ForgeSettings, Forges, GitlabConfig, RepoClient};
use graft::store::deliveries::{Delivery, DeliveryStatus};
use secrecy::SecretString;
use tokio::sync::watch;

use super::fake_github::{self, FakeGithub};
use super::fake_gitlab::{self, FakeGitlab};
use super::{TestApp, TestDb, default_settings, eventually, fast_pool};

pub const DEADLINE: Duration = Duration::from_secs(15);

pub struct Harness {
    /// Mirrors live here for the test's lifetime.
    pub work: tempfile::TempDir,
    pub app: TestApp,
    pub github: FakeGithub,
    pub gitlab: FakeGitlab,
}

/// Retries that keep tests fast: millisecond backoff, short ceiling.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        backoff: graft::jobs::Backoff {
            base: Duration::from_millis(5),
            max: Duration::from_millis(50),
        },
        max_wait: Duration::from_millis(200),
    }
}

impl Harness {
    /// graft (router + workers) on `db`, both fakes, webhooks wired.
    pub async fn start(db: &TestDb) -> Harness {
        let github = FakeGithub::start().await;
        let gitlab = FakeGitlab::start().await;
        let forge = ForgeSettings {
            github: Some(
                GithubAppConfig::new(
                    &fake_github::APP_ID.to_string(),
                    &SecretString::from(fake_github::app_private_key()),
                    &github.api_url,
                )
                .expect("test app config"),
            ),
            gitlab: Some(GitlabConfig {
                base_url: gitlab.url.clone(),
                token: SecretString::from(fake_gitlab::BOT_TOKEN.to_string()),
            }),
            retry: fast_retry(),
            ..ForgeSettings::default()
        };
        let store = db.store().await;
        let work = tempfile::tempdir().expect("work dir");
        let mut settings = default_settings();
        settings.git.work_dir = work.path().to_path_buf();
        let state = AppState::with_forges(store.clone(), settings, forge).expect("forge settings");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = state.router();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let (stop, stop_rx) = watch::channel(false);
        let workers = Some(state.spawn_workers(fast_pool(), stop_rx));
        let app = TestApp {
            state,
            store,
            base,
            http: reqwest::Client::new(),
            stop,
            workers,
            server,
        };
        github.set_webhook_url(&app.url("/webhooks/github"));
        gitlab.set_webhook_url(&app.url("/webhooks/gitlab"));
        Harness {
            work,
            app,
            github,
            gitlab,
        }
    }

    pub fn forges(&self) -> &Forges {
        &self.app.state.context.forges
    }

    /// A GitHub repository with one commit on `main`, with the app installed.
    pub fn github_repo(&self, full_name: &str, installation: i64) -> String {
        self.github.create_repo(full_name, installation)
    }

    /// A GitLab project with one commit on `main`; graft's user maintains it.
    pub fn gitlab_project(&self, path: &str) -> i64 {
        self.gitlab.create_project(path)
    }

    pub async fn github_client(&self, repo: &str) -> RepoClient {
        self.forges().github(repo).await.expect("github client")
    }

    pub async fn gitlab_client(&self, path: &str) -> RepoClient {
        self.forges()
            .gitlab(None, path)
            .await
            .expect("gitlab client")
    }

    pub fn comment_on_github(&self, repo: &str, number: i64, user: &str, body: &str) -> i64 {
        self.github.comment_as(repo, number, user, body)
    }

    pub fn comment_on_gitlab(&self, project: i64, iid: i64, user: &str, body: &str) -> i64 {
        self.gitlab.comment_as(project, iid, user, body)
    }

    pub fn push_to_github_as_human(
        &self,
        repo: &str,
        branch: &str,
        files: &[(&str, Option<&[u8]>)],
        user: &str,
    ) -> String {
        self.github
            .push_as_human(repo, branch, files, "human change", user)
    }

    pub fn push_to_gitlab_as_human(
        &self,
        path: &str,
        branch: &str,
        files: &[(&str, Option<&[u8]>)],
        user: &str,
    ) -> String {
        self.gitlab
            .push_as_human(path, branch, files, "human change", user)
    }

    /// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
    pub async fn wait_for<T, F, Fut>(&self, what: &str, check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        eventually(what, DEADLINE, check).await
    }

    /// Waits until graft has nothing left to do now: no delivery waiting
    /// to be processed, no job running and none due (a job scheduled for
    /// later, such as a retry's backoff, does not count; nor does a
    /// project's work queued behind a test's [`super::sync::hold`]). What a test
    /// checks after this is the outcome, not a state on the way. Fails
    /// after [`DEADLINE`] naming what was still pending.
    pub async fn settle(&self) {
        let pending = || async {
            let now = graft::store::now_ms();
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT kind, state FROM jobs j WHERE \
                 (state = 'running' AND locked_by <> $2) \
                 OR (state = 'queued' AND run_at <= $1 AND NOT EXISTS (SELECT 1 FROM jobs h \
                     WHERE h.project_id = j.project_id AND h.locked_by = $2)) \
                 UNION ALL SELECT 'delivery', status FROM webhook_deliveries \
                 WHERE status = 'queued'",
            )
            .bind(now)
            .bind(super::sync::HOLDER)
            .fetch_all(self.app.store.pool())
            .await
            .expect("read the queue");
            rows
        };
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let rows = pending().await;
            if rows.is_empty() {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("graft did not settle within {DEADLINE:?}; pending: {rows:?}");
            }
            // Workers poll on an interval; wake them instead of waiting it out.
            self.app.state.context.jobs.wake();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `GET /api/v1{path_and_query}` with `token`: the status and the
    /// answer's text.
    pub async fn api_get(&self, token: &str, path_and_query: &str) -> (u16, String) {
        let response = self
            .app
            .http
            .get(self.app.url(&format!("/api/v1{path_and_query}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// Every delivery graft stored, oldest first.
    pub async fn deliveries(&self) -> Vec<Delivery> {
        let count = self.app.store.delivery_count().await.unwrap();
        let mut out = Vec::new();
        for id in 1..=count {
            if let Some(d) = self.app.store.delivery(id).await.unwrap() {
                out.push(d);
            }
        }
        out
    }

    /// Waits until graft processed a delivery of `provider`/`event`
    /// (optionally with `action`) and returns it.
    pub async fn wait_for_delivery(
        &self,
        provider: &str,
        event: &str,
        action: Option<&str>,
    ) -> Delivery {
        let what = format!("{provider} {event} {action:?} delivery processed");
        self.wait_for(&what, || async {
            self.deliveries().await.into_iter().find(|d| {
                d.provider == provider
                    && d.event == event
                    && (action.is_none() || d.action.as_deref() == action)
                    && d.status == DeliveryStatus::Processed
            })
        })
        .await
    }

    /// Stops graft, then checks that every request it made to the fakes
    /// during the test matched GitHub's OpenAPI description or GitLab's
    /// documented REST API (also calls whose failure graft tolerates, which
    /// no assertion would see).
    pub async fn stop(self) {
        self.app.stop().await;
        let violations = self.github.violations();
        assert!(
            violations.is_empty(),
            "requests that do not match GitHub's OpenAPI description or GraphQL schema: {violations:#?}"
        );
        let violations = self.gitlab.violations();
        assert!(
            violations.is_empty(),
            "requests that do not match GitLab's documented REST API: {violations:#?}"
        );
    }
}
