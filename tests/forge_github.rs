//! The GitHub App client against the stateful fake GitHub: app JWT and
//! installation tokens, every failure class, rate-limit waits, pagination,
//! the sticky comment under races, permissions, auto-merge, GHES paths,
//! git credentials, no secret in logs, and conformance of every request
//! with GitHub's OpenAPI description.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use graft::forge::github::GithubAppConfig;
use graft::forge::retry::{RetryPolicy, SleepFuture, Sleeper};
use graft::forge::{
    AutoMerge, CheckConclusion, CheckReport, ForgeError, ForgeSettings, Forges, NewPullRequest,
    Permission, PullRequestState, PullRequestUpdate, Reaction, RepoClient, STATUS_MARKER, UserRef,
};
use graft::jobs::JobError;
use graft::metrics::Metrics;
use graft::sync::errors::SyncError;
use secrecy::{ExposeSecret, SecretString};
use support::TestDb;
use support::fake_common::PushBefore;
use support::fake_github::{self, BOT_LOGIN, FakeGithub};

const REPO: &str = "acme/infra";
const INSTALLATION: i64 = 77;

/// Records waits instead of sleeping, so rate-limit tests take no time.
#[derive(Debug, Default)]
struct Waits(Mutex<Vec<Duration>>);

impl Sleeper for Waits {
    fn sleep(&self, duration: Duration) -> SleepFuture {
        self.0.lock().unwrap().push(duration);
        Box::pin(async {})
    }
}

impl Waits {
    fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Setup {
    fake: FakeGithub,
    forges: Forges,
    waits: Arc<Waits>,
    metrics: Arc<Metrics>,
    store: graft::store::Store,
}

fn config(fake: &FakeGithub, key: &str) -> GithubAppConfig {
    GithubAppConfig::new(
        &fake_github::APP_ID.to_string(),
        &SecretString::from(key.to_string()),
        &fake.api_url,
    )
    .unwrap()
}

async fn forges_for(
    fake: &FakeGithub,
    db: &TestDb,
    key: &str,
) -> (Forges, Arc<Waits>, Arc<Metrics>, graft::store::Store) {
    let waits = Arc::new(Waits::default());
    let metrics = Arc::new(Metrics::new());
    let store = db.store().await;
    let forges = Forges::new(
        ForgeSettings {
            github: Some(config(fake, key)),
            sleeper: waits.clone(),
            ..ForgeSettings::default()
        },
        store.clone(),
        None,
        metrics.clone(),
    )
    .unwrap();
    (forges, waits, metrics, store)
}

async fn setup(db: &TestDb) -> Setup {
    let fake = FakeGithub::start().await;
    fake.create_repo(REPO, INSTALLATION);
    let (forges, waits, metrics, store) =
        forges_for(&fake, db, &fake_github::app_private_key()).await;
    Setup {
        fake,
        forges,
        waits,
        metrics,
        store,
    }
}

impl Setup {
    async fn client(&self) -> RepoClient {
        self.forges.github(REPO).await.unwrap()
    }

    /// Every request the client made conforms to GitHub's description.
    fn assert_conformant(&self) {
        assert_eq!(self.fake.violations(), Vec::<String>::new());
    }
}

async fn open_pr(s: &Setup, client: &RepoClient, branch: &str) -> graft::ids::PrNumber {
    s.fake.git.create_branch(REPO, branch, "main");
    s.fake.git.commit(
        REPO,
        branch,
        &[("infra/main.tf", Some(b"# generated\n".as_slice()))],
        "generated",
    );
    client
        .open_pull_request(&NewPullRequest {
            head_branch: branch.into(),
            base_branch: "main".into(),
            title: "graft: sync".into(),
            body: "generated files".into(),
        })
        .await
        .unwrap()
        .number
}

async fn installation_is_found_recorded_and_its_token_shared(db: TestDb) {
    let s = setup(&db).await;
    assert_eq!(s.store.installation_for_repo(REPO).await.unwrap(), None);
    let client = s.client().await;
    assert_eq!(
        s.store.installation_for_repo(REPO).await.unwrap(),
        Some(INSTALLATION)
    );
    let calls = (0..8).map(|_| {
        let client = client.clone();
        async move { client.repo_info().await }
    });
    let infos = join_all(calls).await;
    for info in infos {
        let info = info.unwrap();
        assert_eq!(info.default_branch, "main");
        assert_eq!(info.clone_url, s.fake.git.clone_url(REPO));
    }
    assert_eq!(
        s.fake.tokens_minted(),
        1,
        "concurrent calls share one token"
    );
    // The store answers next time: no installation lookup on GitHub.
    let lookups = |fake: &FakeGithub| {
        fake.requests()
            .iter()
            .filter(|r| r.path.ends_with("/installation"))
            .count()
    };
    assert_eq!(lookups(&s.fake), 1);
    s.forges.github(REPO).await.unwrap();
    assert_eq!(lookups(&s.fake), 1);
    s.assert_conformant();
}

/// Runs futures concurrently on the runtime and collects their outputs.
async fn join_all<T, F>(futures: impl IntoIterator<Item = F>) -> Vec<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

async fn a_token_close_to_expiry_is_refreshed_not_reused(db: TestDb) {
    let s = setup(&db).await;
    // Tokens living 4 minutes are inside the 5-minute refresh margin.
    s.fake.set_token_lifetime(Duration::from_secs(4 * 60));
    let client = s.client().await;
    client.repo_info().await.unwrap();
    client.repo_info().await.unwrap();
    assert_eq!(s.fake.tokens_minted(), 2);
    s.fake.set_token_lifetime(Duration::from_secs(3600));
    client.repo_info().await.unwrap();
    client.repo_info().await.unwrap();
    client.branch_head("main").await.unwrap();
    assert_eq!(s.fake.tokens_minted(), 3);
    // A revoked token is replaced once, transparently.
    s.fake.revoke_tokens();
    client.repo_info().await.unwrap();
    assert_eq!(s.fake.tokens_minted(), 4);
    s.assert_conformant();
}

async fn an_unreachable_github_is_a_network_error_after_retries(db: TestDb) {
    let waits = Arc::new(Waits::default());
    let forges = Forges::new(
        ForgeSettings {
            github: Some(
                GithubAppConfig::new(
                    &fake_github::APP_ID.to_string(),
                    &SecretString::from(fake_github::app_private_key()),
                    "http://127.0.0.1:9",
                )
                .unwrap(),
            ),
            sleeper: waits.clone(),
            ..ForgeSettings::default()
        },
        db.store().await,
        None,
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let error = forges.github(REPO).await.unwrap_err();
    assert_eq!(error.class(), "network", "{error}");
    assert!(error.is_retryable(), "the job is retried later");
    assert!(!waits.take().is_empty(), "backed off before giving up");
    assert!(!error.to_string().contains("BEGIN"), "{error}");
}

async fn a_reinstalled_app_is_found_again_after_one_failure(db: TestDb) {
    let s = setup(&db).await;
    s.client().await.repo_info().await.unwrap();
    assert_eq!(
        s.store.installation_for_repo(REPO).await.unwrap(),
        Some(INSTALLATION)
    );
    // Re-installed under a new id, and the webhooks never arrived.
    s.fake.reinstall_silently(INSTALLATION, 91);
    let error = s.client().await.repo_info().await.unwrap_err();
    assert_eq!(error.class(), "not_installed", "{error}");
    // The stale record is gone, so the next job asks GitHub and heals.
    assert_eq!(s.store.installation_for_repo(REPO).await.unwrap(), None);
    s.client().await.repo_info().await.unwrap();
    assert_eq!(s.store.installation_for_repo(REPO).await.unwrap(), Some(91));
    s.assert_conformant();
}

async fn an_app_registered_again_is_used_without_a_restart(db: TestDb) {
    let fake = FakeGithub::start().await;
    fake.create_repo(REPO, INSTALLATION);
    let store = db.store().await;
    let keyring = support::test_keyring();
    let register = |key: String| {
        let (store, keyring, api_url) = (store.clone(), keyring.clone(), fake.api_url.clone());
        async move {
            store
                .save_github_app(
                    &graft::store::operator::NewGithubApp {
                        app_id: &fake_github::APP_ID.to_string(),
                        slug: "graft-test",
                        api_url: &api_url,
                        private_key_sealed: &keyring.seal(&key).unwrap(),
                        webhook_secret_sealed: None,
                    },
                    graft::store::now_ms(),
                )
                .await
                .unwrap();
        }
    };
    // This replica has no app from the environment; the stored one is
    // registered with the wrong key first.
    let forges = Forges::new(
        ForgeSettings::default(),
        store.clone(),
        Some(keyring.clone()),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    register(fake_github::wrong_private_key()).await;
    let error = forges.github(REPO).await.unwrap_err();
    assert_eq!(error.class(), "auth_lost", "{error}");
    // Registered again (on another replica, through /setup/github).
    register(fake_github::app_private_key()).await;
    let client = forges.github(REPO).await.unwrap();
    client.repo_info().await.unwrap();
}

async fn wrong_private_key_is_a_clear_error(db: TestDb) {
    let fake = FakeGithub::start().await;
    fake.create_repo(REPO, INSTALLATION);
    let (forges, ..) = forges_for(&fake, &db, &fake_github::wrong_private_key()).await;
    let error = forges.github(REPO).await.unwrap_err();
    assert_eq!(error.class(), "auth_lost", "{error}");
    let text = error.to_string();
    assert!(text.contains("GITHUB_APP_PRIVATE_KEY"), "{text}");
    assert!(text.contains("JWT"), "{text}");
    assert_eq!(fake.tokens_minted(), 0);
}

#[test]
fn a_pem_with_escaped_newlines_is_read() {
    let one_line = fake_github::app_private_key().trim().replace('\n', "\\n");
    assert!(!one_line.contains('\n'));
    GithubAppConfig::new("1", &SecretString::from(one_line), "https://api.github.com")
        .expect("the escaped PEM is accepted");
}

#[test]
fn bad_settings_name_the_setting() {
    let key = SecretString::from(fake_github::app_private_key());
    let cases: Vec<(&str, SecretString, &str, &str)> = vec![
        (
            "abc",
            key.clone(),
            "https://api.github.com",
            "GITHUB_APP_ID must be the numeric App ID",
        ),
        (
            "1",
            SecretString::from(
                "-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----"
                    .to_string(),
            ),
            "https://api.github.com",
            "GITHUB_APP_PRIVATE_KEY is not a PEM RSA key",
        ),
        (
            "1",
            SecretString::from("/nonexistent/app.pem".to_string()),
            "https://api.github.com",
            "GITHUB_APP_PRIVATE_KEY is neither PEM text nor a readable file: `/nonexistent/app.pem`",
        ),
        (
            "1",
            key.clone(),
            "ftp://x",
            "GITHUB_API_URL `ftp://x` is not an http(s) URL",
        ),
    ];
    for (id, key, url, expected) in cases {
        let error = GithubAppConfig::new(id, &key, url).unwrap_err();
        assert!(matches!(error, ForgeError::Config(_)));
        assert!(error.to_string().contains(expected), "{error}");
        assert!(error.to_string().contains("paste the .pem") || !expected.contains("PRIVATE_KEY"));
    }
    // A path to a good key works, and the key text never shows in errors.
    let path = format!(
        "{}/tests/fixtures/keys/github-app.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    GithubAppConfig::new(
        "1",
        &SecretString::from(path),
        "https://ghe.example.com/api/v3/",
    )
    .unwrap();
    let hidden = GithubAppConfig::new(
        "1",
        &SecretString::from("MIIEpAIBAAKCAQEA\nabc".to_string()),
        "https://x",
    )
    .unwrap_err();
    assert!(!hidden.to_string().contains("MIIE"), "{hidden}");
}

async fn not_installed_and_removed_installation(db: TestDb) {
    let s = setup(&db).await;
    let error = s.forges.github("acme/elsewhere").await.unwrap_err();
    assert_eq!(error.class(), "not_installed");
    assert!(
        error
            .to_string()
            .contains("install the GitHub App on acme/elsewhere"),
        "{error}"
    );

    let client = s.client().await;
    client.repo_info().await.unwrap();
    s.fake.remove_installation(INSTALLATION);
    let error = client.repo_info().await.unwrap_err();
    assert_eq!(error.class(), "not_installed", "{error}");
    assert!(error.to_string().contains("re-install the app"), "{error}");
    assert!(
        matches!(SyncError::from(error).into_job_error(), JobError::Fatal(_)),
        "no retry storm"
    );
    s.assert_conformant();
}

async fn missing_permission_is_named(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    s.fake
        .faults(|f| f.forbid.push(("/check-runs".into(), "checks=write".into())));
    let error = client
        .report_check(&CheckReport {
            sha: s.fake.git.head(REPO, "main").unwrap(),
            conclusion: CheckConclusion::Success,
            title: "ok".into(),
            summary: "ok".into(),
            details_url: None,
        })
        .await
        .unwrap_err();
    let ForgeError::NoPermission { permission, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(permission.as_deref(), Some("checks=write"));
    assert!(
        error
            .to_string()
            .contains("grant the GitHub App the `checks=write` permission")
    );
    s.assert_conformant();
}

async fn rate_limits_are_waited_out_up_to_the_ceiling(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    client.repo_info().await.unwrap();
    s.waits.take();

    // Primary: wait until X-RateLimit-Reset, then succeed.
    s.fake.faults(|f| {
        f.rate_limit = 1;
        f.reset_in_secs = 30;
    });
    client.repo_info().await.unwrap();
    let waits = s.waits.take();
    assert_eq!(waits.len(), 1);
    assert!(
        waits[0] >= Duration::from_secs(28) && waits[0] <= Duration::from_secs(31),
        "{waits:?}"
    );

    // Secondary: Retry-After.
    s.fake.faults(|f| {
        f.secondary = 1;
        f.retry_after_secs = 7;
    });
    client.repo_info().await.unwrap();
    let waits = s.waits.take();
    assert!(
        waits.len() == 1 && waits[0] >= Duration::from_secs(7) && waits[0] < Duration::from_secs(8),
        "{waits:?}"
    );

    // Beyond the ceiling: no inline wait; the job is rescheduled instead.
    s.fake.faults(|f| {
        f.rate_limit = 1;
        f.reset_in_secs = 3600;
    });
    let error = client.repo_info().await.unwrap_err();
    assert!(s.waits.take().is_empty());
    let after = error.retry_after().unwrap();
    assert!(after > Duration::from_secs(3500), "{after:?}");
    assert!(matches!(
        SyncError::from(error).into_job_error(),
        JobError::Retry { after: Some(_), .. }
    ));
    let metrics = s.metrics.render();
    // The two waits above (about 30 s and 7 s), not the refused third.
    let waited = support::metric_value(
        &metrics,
        "graft_forge_retry_wait_seconds_total{forge=\"github\",cause=\"rate_limit\"}",
    );
    assert!(
        waited.is_some_and(|w| (35.0..40.0).contains(&w)),
        "{metrics}"
    );
    assert_eq!(
        support::metric_value(
            &metrics,
            "graft_forge_api_calls_total{forge=\"github\",outcome=\"rate_limited\"}"
        ),
        Some(3.0),
        "{metrics}"
    );
    s.assert_conformant();
}

async fn server_errors_are_retried_with_backoff_then_reported(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    client.repo_info().await.unwrap();
    s.waits.take();
    s.fake.faults(|f| f.fail = 2);
    client.repo_info().await.unwrap();
    let waits = s.waits.take();
    assert_eq!(waits.len(), 2);
    assert!(waits[1] > waits[0] / 2, "backoff grows: {waits:?}");

    s.fake.faults(|f| f.fail = 10);
    let error = client.repo_info().await.unwrap_err();
    assert_eq!(error.class(), "server");
    assert_eq!(
        s.waits.take().len(),
        RetryPolicy::default().max_attempts as usize - 1
    );
    s.fake.faults(|f| f.fail = 0);
}

/// An answer past graft's cap (32 MiB, streamed without a length) is a
/// clear error after graft stops reading, not retried, and the client works
/// on as before.
async fn an_oversized_answer_is_refused_not_buffered(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    client.repo_info().await.unwrap();
    let before = s.fake.requests().len();
    s.fake.faults(|f| f.oversized = 1);
    let error = client.repo_info().await.unwrap_err();
    assert_eq!(error.class(), "unexpected", "{error}");
    assert!(error.to_string().contains("larger than 32 MiB"), "{error}");
    assert_eq!(s.fake.requests().len(), before + 1, "not retried");
    assert_eq!(client.repo_info().await.unwrap().default_branch, "main");
    s.assert_conformant();
}

async fn validation_errors_carry_githubs_message(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    let new = NewPullRequest {
        head_branch: "no-such-branch".into(),
        base_branch: "main".into(),
        title: "t".into(),
        body: String::new(),
    };
    let error = client.open_pull_request(&new).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "GitHub refused the request: Validation Failed: head invalid"
    );
    let number = open_pr(&s, &client, "graft/infra").await;
    let duplicate = NewPullRequest {
        head_branch: "graft/infra".into(),
        ..new
    };
    let error = client.open_pull_request(&duplicate).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("A pull request already exists for acme:graft/infra."),
        "{error}"
    );
    assert_eq!(number, graft::ids::PrNumber(1));
    s.assert_conformant();
}

async fn pull_request_lifecycle(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    assert_eq!(
        client.find_open_pull_request("graft/infra").await.unwrap(),
        None
    );
    let number = open_pr(&s, &client, "graft/infra").await;
    let found = client
        .find_open_pull_request("graft/infra")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.number, found.state, found.base_branch.as_str()),
        (number, PullRequestState::Open, "main")
    );
    assert_eq!(
        Some(found.head_sha.clone()),
        s.fake.git.head(REPO, "graft/infra")
    );
    assert_eq!(
        client.branch_head("graft/infra").await.unwrap(),
        Some(found.head_sha)
    );
    assert_eq!(client.branch_head("nope").await.unwrap(), None);
    let updated = client
        .update_pull_request(
            number,
            &PullRequestUpdate {
                title: Some("graft: sync 2 files".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.title, "graft: sync 2 files");
    client.close_pull_request(number).await.unwrap();
    assert_eq!(
        client.pull_request(number).await.unwrap().state,
        PullRequestState::Closed
    );
    assert_eq!(
        client.find_open_pull_request("graft/infra").await.unwrap(),
        None
    );
    s.assert_conformant();
}

async fn sticky_comment_is_found_across_pages_and_edited_in_place(db: TestDb) {
    let s = setup(&db).await;
    s.fake.set_max_per_page(2);
    let client = s.client().await;
    let number = open_pr(&s, &client, "graft/infra").await;
    for i in 0..3 {
        s.fake.comment_as(
            REPO,
            number.get(),
            "alice",
            &format!("comment {i} {STATUS_MARKER}"),
        );
    }
    let first = client
        .upsert_status_comment(number, "status: syncing")
        .await
        .unwrap();
    for i in 0..4 {
        s.fake
            .comment_as(REPO, number.get(), "bob", &format!("later {i}"));
    }
    let second = client
        .upsert_status_comment(number, "status: success")
        .await
        .unwrap();
    assert_eq!(first.id, second.id, "edited in place");
    let ours: Vec<_> = s
        .fake
        .comments(REPO, number.get())
        .into_iter()
        .filter(|c| c.user == BOT_LOGIN)
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].body, format!("{STATUS_MARKER}\nstatus: success"));
    let pages = s
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/comments") && r.method == "GET")
        .count();
    assert!(pages >= 2 + 4, "followed Link pages: {pages}");
    s.assert_conformant();
}

/// A next page on another host is neither followed (the token would go
/// there) nor taken as the end of the list (a status comment on page two
/// would be missed and posted again): the call fails and says why.
async fn pagination_to_another_host_fails_instead_of_cutting_the_list(db: TestDb) {
    let s = setup(&db).await;
    s.fake.set_max_per_page(2);
    let client = s.client().await;
    let number = open_pr(&s, &client, "graft/infra").await;
    for i in 0..3 {
        s.fake
            .comment_as(REPO, number.get(), "alice", &format!("comment {i}"));
    }
    s.fake.set_link_origin("https://proxy.example.invalid");
    let error = client
        .upsert_status_comment(number, "status: syncing")
        .await
        .unwrap_err();
    assert!(
        matches!(error, ForgeError::Unexpected { .. })
            && error
                .to_string()
                .contains("another host (https://proxy.example.invalid)"),
        "{error}"
    );
    assert_eq!(
        s.fake.comments(REPO, number.get()).len(),
        3,
        "nothing posted"
    );
    assert!(
        !s.fake
            .requests()
            .iter()
            .any(|r| r.path.contains("proxy.example")),
        "the link was not followed"
    );
}

async fn racing_upserts_leave_one_status_comment(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    let number = open_pr(&s, &client, "graft/infra").await;
    // Same process: serialised by the per-PR lock.
    let upserts = (0..6).map(|i| {
        let client = client.clone();
        async move {
            client
                .upsert_status_comment(number, &format!("status {i}"))
                .await
        }
    });
    for result in join_all(upserts).await {
        result.unwrap();
    }
    let count = |fake: &FakeGithub| {
        fake.comments(REPO, number.get())
            .iter()
            .filter(|c| c.user == BOT_LOGIN)
            .count()
    };
    assert_eq!(count(&s.fake), 1);

    // Two processes (no shared lock) creating at once on a fresh PR: the
    // copy made by the race is removed afterwards.
    let number = open_pr(&s, &client, "graft/other").await;
    let (other, ..) = forges_for(&s.fake, &db, &fake_github::app_private_key()).await;
    let other = other.github(REPO).await.unwrap();
    // Both have listed (no status comment yet) before either creates one.
    s.fake.hold_comment_creations(2);
    let results = join_all(
        [client.clone(), other]
            .into_iter()
            .map(|c| async move { c.upsert_status_comment(number, "status").await }),
    )
    .await;
    for result in results {
        result.unwrap();
    }
    assert_eq!(count(&s.fake), 1);
    // The race did happen: two were created, the extra one was removed
    // (both racers may ask to delete it; the second finds it gone).
    let requests = s.fake.requests();
    let created = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(&format!("/issues/{number}/comments")))
        .count();
    let deleted = requests
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.contains("/issues/comments/"))
        .count();
    assert_eq!(created, 2);
    assert!(deleted >= 1, "{deleted}");
    s.assert_conformant();
}

async fn reactions_checks_and_permissions(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    let number = open_pr(&s, &client, "graft/infra").await;
    let comment = s
        .fake
        .comment_as(REPO, number.get(), "alice", "/graft sync");
    client.react(number, comment, Reaction::Eyes).await.unwrap();
    client
        .react(number, comment, Reaction::ThumbsUp)
        .await
        .unwrap();
    assert_eq!(
        s.fake.reactions(comment),
        vec![
            (BOT_LOGIN.to_string(), "eyes".to_string()),
            (BOT_LOGIN.to_string(), "+1".to_string())
        ]
    );
    let reply = client.reply(number, "done").await.unwrap();
    assert!(
        s.fake
            .comments(REPO, number.get())
            .iter()
            .any(|c| c.id == reply.id && c.body == "done")
    );

    let sha = s.fake.git.head(REPO, "graft/infra").unwrap();
    for conclusion in [CheckConclusion::Pending, CheckConclusion::Failure] {
        client
            .report_check(&CheckReport {
                sha: sha.clone(),
                conclusion,
                title: "validation".into(),
                summary: "tofu validate".into(),
                details_url: Some("https://graft.example.com/projects/1".into()),
            })
            .await
            .unwrap();
    }
    let runs = s.fake.check_runs(REPO);
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (runs[0].status.as_str(), runs[0].conclusion.as_deref()),
        ("in_progress", None)
    );
    assert_eq!(
        (runs[1].status.as_str(), runs[1].conclusion.as_deref()),
        ("completed", Some("failure"))
    );
    assert_eq!(runs[1].name, "graft");

    let roles = [
        ("admin", Permission::Admin),
        ("maintain", Permission::Write),
        ("write", Permission::Write),
        ("triage", Permission::Read),
        ("read", Permission::Read),
        ("deployer:write", Permission::Write),
        ("auditor:read", Permission::Read),
    ];
    for (i, (role, expected)) in roles.iter().enumerate() {
        let login = format!("user{i}");
        s.fake.set_role(REPO, &login, role);
        let user = UserRef { login, id: None };
        assert_eq!(client.permission(&user).await.unwrap(), *expected, "{role}");
    }
    s.fake.add_user("outsider");
    for login in ["outsider", "ghost-who-does-not-exist"] {
        let user = UserRef {
            login: login.into(),
            id: None,
        };
        assert_eq!(
            client.permission(&user).await.unwrap(),
            Permission::None,
            "{login}"
        );
    }
    s.assert_conformant();
}

async fn auto_merge_waits_for_checks_or_merges_at_once(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    let number = open_pr(&s, &client, "graft/infra").await;
    let head = s.fake.git.head(REPO, "graft/infra").unwrap();
    let report = |conclusion| CheckReport {
        sha: head.clone(),
        conclusion,
        title: "validation".into(),
        summary: String::new(),
        details_url: None,
    };
    client
        .report_check(&report(CheckConclusion::Pending))
        .await
        .unwrap();
    assert_eq!(
        client.enable_auto_merge(number, &head).await.unwrap(),
        AutoMerge::Enabled
    );
    assert_eq!(
        client.pull_request(number).await.unwrap().state,
        PullRequestState::Open
    );
    client
        .report_check(&report(CheckConclusion::Success))
        .await
        .unwrap();
    assert_eq!(
        client.pull_request(number).await.unwrap().state,
        PullRequestState::Merged
    );
    let main = s.fake.git.head(REPO, "main").unwrap();
    assert_eq!(
        s.fake.git.file(REPO, &main, "infra/main.tf").unwrap(),
        b"# generated\n"
    );

    // Nothing pending: GitHub says "clean status", graft merges right away.
    let number = open_pr(&s, &client, "graft/second").await;
    let head = s.fake.git.head(REPO, "graft/second").unwrap();
    assert_eq!(
        client.enable_auto_merge(number, &head).await.unwrap(),
        AutoMerge::Merged
    );
    assert_eq!(
        client.pull_request(number).await.unwrap().state,
        PullRequestState::Merged
    );

    // A repository without "Allow auto-merge".
    s.fake.set_allow_auto_merge(REPO, false);
    let number = open_pr(&s, &client, "graft/third").await;
    let head = s.fake.git.head(REPO, "graft/third").unwrap();
    let error = client.enable_auto_merge(number, &head).await.unwrap_err();
    assert_eq!(error.class(), "validation");
    assert!(error.to_string().contains("Allow auto-merge"), "{error}");
    s.assert_conformant();
}

/// A commit lands on the branch after graft pushed: before graft looks,
/// between its look and the GraphQL call (`expectedHeadOid`), and between
/// the look and the REST merge (`sha`). Nothing is enabled or merged.
async fn auto_merge_only_takes_the_expected_head(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    let human = |on: &str, branch: &str| PushBefore {
        on: on.into(),
        repo: REPO.into(),
        branch: branch.into(),
        path: "infra/evil.tf".into(),
        content: b"# not built by graft\n".to_vec(),
        user: "mallory".into(),
    };
    let pending = |sha: &str| CheckReport {
        sha: sha.to_string(),
        conclusion: CheckConclusion::Pending,
        title: "validation".into(),
        summary: String::new(),
        details_url: None,
    };

    // Already moved when graft looks.
    let number = open_pr(&s, &client, "graft/one").await;
    let ours = s.fake.git.head(REPO, "graft/one").unwrap();
    s.fake.push_as_human(
        REPO,
        "graft/one",
        &[("infra/evil.tf", Some(b"# x\n".as_slice()))],
        "x",
        "mallory",
    );
    let theirs = s.fake.git.head(REPO, "graft/one").unwrap();
    assert_eq!(
        client.enable_auto_merge(number, &ours).await.unwrap(),
        AutoMerge::HeadMoved {
            head: theirs.clone()
        }
    );

    // Nothing pending, moved before the REST merge: 409, nothing merged.
    // (Before any check run: the branches' first commits are one commit.)
    let number_three = open_pr(&s, &client, "graft/three").await;
    let ours_three = s.fake.git.head(REPO, "graft/three").unwrap();
    s.fake.push_before(human("PUT /pulls/", "graft/three"));
    let moved = client
        .enable_auto_merge(number_three, &ours_three)
        .await
        .unwrap();
    assert!(matches!(moved, AutoMerge::HeadMoved { .. }), "{moved:?}");

    // Moved between graft's look and the mutation: GitHub refuses it.
    let number = open_pr(&s, &client, "graft/two").await;
    let ours = s.fake.git.head(REPO, "graft/two").unwrap();
    client.report_check(&pending(&ours)).await.unwrap();
    s.fake.push_before(human("POST graphql", "graft/two"));
    let moved = client.enable_auto_merge(number, &ours).await.unwrap();
    assert!(matches!(moved, AutoMerge::HeadMoved { .. }), "{moved:?}");

    for pull in s.fake.pulls(REPO) {
        assert!(
            !pull.auto_merge && !pull.merged && pull.state == "open",
            "{pull:?}"
        );
    }
    assert_eq!(
        s.fake.git.file(
            REPO,
            &s.fake.git.head(REPO, "main").unwrap(),
            "infra/evil.tf"
        ),
        None,
        "nothing reached main"
    );
    s.assert_conformant();
}

async fn enterprise_server_base_path(db: TestDb) {
    let fake = FakeGithub::start_with_prefix("/api/v3").await;
    fake.create_repo(REPO, INSTALLATION);
    assert!(fake.api_url.ends_with("/api/v3"));
    let (forges, ..) = forges_for(&fake, &db, &fake_github::app_private_key()).await;
    let client = forges.github(REPO).await.unwrap();
    assert_eq!(client.repo_info().await.unwrap().default_branch, "main");
    fake.set_max_per_page(1);
    fake.git.create_branch(REPO, "graft/infra", "main");
    fake.git
        .commit(REPO, "graft/infra", &[("a", Some(b"a".as_slice()))], "a");
    let new = NewPullRequest {
        head_branch: "graft/infra".into(),
        base_branch: "main".into(),
        title: "t".into(),
        body: String::new(),
    };
    let number = client.open_pull_request(&new).await.unwrap().number;
    fake.comment_as(REPO, number.get(), "alice", "one");
    fake.comment_as(REPO, number.get(), "alice", "two");
    client
        .upsert_status_comment(number, "status")
        .await
        .unwrap();
    client
        .upsert_status_comment(number, "status 2")
        .await
        .unwrap();
    let head = fake.git.head(REPO, "graft/infra").unwrap();
    assert_eq!(
        client.enable_auto_merge(number, &head).await.unwrap(),
        AutoMerge::Merged
    );
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.path.starts_with("/api/v3/") || r.path == "/api/graphql"),
        "{requests:?}"
    );
    assert!(requests.iter().any(|r| r.path == "/api/graphql"));
    assert_eq!(fake.violations(), Vec::<String>::new());
}

async fn git_credentials_clone_and_push_with_a_header(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    let credentials = client.git_credentials().await.unwrap();
    assert_eq!(credentials.username, "x-access-token");
    let info = client.repo_info().await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let header = credentials.authorization_header();
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .current_dir(work.path())
            .args(args)
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", header.expose_secret())
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "graft")
            .env("GIT_AUTHOR_EMAIL", "graft@example.com")
            .env("GIT_COMMITTER_NAME", "graft")
            .env("GIT_COMMITTER_EMAIL", "graft@example.com")
            .output()
            .unwrap()
    };
    assert!(
        run(&["clone", "--quiet", &info.clone_url, "."])
            .status
            .success()
    );
    std::fs::write(work.path().join("x.tf"), "x").unwrap();
    assert!(run(&["add", "."]).status.success());
    assert!(run(&["commit", "-qm", "x"]).status.success());
    assert!(
        run(&["push", "-q", "origin", "HEAD:refs/heads/graft/x"])
            .status
            .success()
    );
    assert!(s.fake.git.head(REPO, "graft/x").is_some());
    // Protected branches refuse the push like GitHub does.
    s.fake.protect_branch(REPO, "main");
    let refused = run(&["push", "-q", "origin", "HEAD:refs/heads/main"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("GH006: Protected branch update failed")
    );
}

both_backends!(
    an_app_registered_again_is_used_without_a_restart,
    a_reinstalled_app_is_found_again_after_one_failure,
    an_unreachable_github_is_a_network_error_after_retries,
    installation_is_found_recorded_and_its_token_shared,
    a_token_close_to_expiry_is_refreshed_not_reused,
    wrong_private_key_is_a_clear_error,
    not_installed_and_removed_installation,
    missing_permission_is_named,
    rate_limits_are_waited_out_up_to_the_ceiling,
    server_errors_are_retried_with_backoff_then_reported,
    an_oversized_answer_is_refused_not_buffered,
    validation_errors_carry_githubs_message,
    pull_request_lifecycle,
    sticky_comment_is_found_across_pages_and_edited_in_place,
    racing_upserts_leave_one_status_comment,
    pagination_to_another_host_fails_instead_of_cutting_the_list,
    reactions_checks_and_permissions,
    auto_merge_waits_for_checks_or_merges_at_once,
    auto_merge_only_takes_the_expected_head,
    enterprise_server_base_path,
    git_credentials_clone_and_push_with_a_header,
);

/// The conformance check itself: a request GitHub's description does not
/// allow is flagged and refused, so no test can pass while sending one.
#[tokio::test]
async fn nonconforming_requests_are_flagged() {
    let fake = FakeGithub::start().await;
    let http = reqwest::Client::new();
    let cases = [
        (
            "POST",
            "/repos/o/r/pulls",
            Some(serde_json::json!({"head": "x", "base": "main", "titel": "typo"})),
            "unknown body field `titel`",
        ),
        (
            "POST",
            "/repos/o/r/pulls",
            Some(serde_json::json!({"head": "x"})),
            "required body field `base` missing",
        ),
        (
            "GET",
            "/repos/o/r/pulls?status=open",
            None,
            "unknown query parameter `status`",
        ),
        ("DELETE", "/repos/o/r/pulls/1", None, "no such operation"),
    ];
    for (method, path, body, expected) in cases {
        let mut request = http.request(method.parse().unwrap(), format!("{}{path}", fake.api_url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 422, "{method} {path}");
        let violations = fake.violations();
        assert!(
            violations.last().unwrap().contains(expected),
            "{violations:?}"
        );
    }
    assert_eq!(fake.violations().len(), 4);
}

/// The GraphQL half: a mutation GitHub's schema would reject is flagged and
/// answered with `errors`, and graft's own mutations pass.
#[tokio::test]
async fn nonconforming_graphql_is_flagged() {
    let fake = FakeGithub::start().await;
    let http = reqwest::Client::new();
    let id = serde_json::json!({"id": "PR_1_1"});
    let cases = [
        (
            "mutation($id: ID!) { enablePullRequestAutoMerge(input: {pullRequestId: $id, mergeMethod: SQUISH}) { pullRequest { number } } }",
            id.clone(),
            "SQUISH",
        ),
        (
            "mutation($id: ID!) { enablePullRequestAutoMerge(input: {mergeMethod: MERGE}) { pullRequest { number } } }",
            id.clone(),
            "pullRequestId",
        ),
        (
            "mutation($id: ID!) { enablePullRequestAutoMerge(input: {pullRequestId: $id}) { pullRequest { title } } }",
            id.clone(),
            "title",
        ),
        (
            "mutation($id: ID!) { disablePullRequestAutoMerge(input: {pullRequestId: $id}) { pullRequest { number } } }",
            serde_json::json!({}),
            "id",
        ),
        (
            "mutation($id: ID!) { disablePullRequestAutoMerge(input: {pullRequestId: $id}) { pullRequest { number } } }",
            serde_json::json!({"id": "PR_1_1", "extra": 1}),
            "extra",
        ),
    ];
    for (n, (query, variables, expected)) in cases.into_iter().enumerate() {
        let response = http
            .post(format!("{}/graphql", fake.api_url))
            .json(&serde_json::json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GitHub answers GraphQL with 200");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["errors"][0]["message"].is_string(), "{body}");
        let violations = fake.violations();
        assert_eq!(violations.len(), n + 1, "{violations:?}");
        assert!(
            violations[n].contains(expected),
            "case {n}: {}",
            violations[n]
        );
    }
    // graft's own mutations conform; enabling auto-merge pins the head.
    let head = "0123456789abcdef0123456789abcdef01234567";
    for (query, variables) in [
        (
            graft::forge::github::ENABLE_AUTO_MERGE,
            serde_json::json!({"id": "PR_1_1", "head": head}),
        ),
        (
            graft::forge::github::DISABLE_AUTO_MERGE,
            serde_json::json!({"id": "PR_1_1"}),
        ),
    ] {
        assert_eq!(
            support::fake_github::graphql_conformance::check(
                &serde_json::json!({"query": query, "variables": variables})
            ),
            Ok(())
        );
    }
}
