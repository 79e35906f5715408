//! The GitLab client against the stateful fake GitLab: project lookup by
//! encoded path, merge requests, notes (sticky, paginated, raced), award
//! emoji, commit statuses, access levels, auto-merge, every failure class,
//! rate-limit waits, stored integrations, git credentials.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use graft::forge::retry::{SleepFuture, Sleeper};
use graft::forge::{
    AutoMerge, CheckConclusion, CheckReport, ForgeError, ForgeSettings, Forges, GitlabConfig,
    NewPullRequest, Permission, PullRequestState, PullRequestUpdate, Reaction, RepoClient,
    STATUS_MARKER, UserRef,
};
use graft::jobs::JobError;
use graft::metrics::Metrics;
use graft::store::integrations::NewIntegration;
use graft::sync::errors::SyncError;
use secrecy::{ExposeSecret, SecretString};
use support::TestDb;
use support::fake_common::PushBefore;
use support::fake_gitlab::{BOT_TOKEN, BOT_USERNAME, FakeGitlab};

const PATH: &str = "platform/infra/live";

#[derive(Debug, Default)]
struct Waits(Mutex<Vec<Duration>>);

impl Sleeper for Waits {
    fn sleep(&self, duration: Duration) -> SleepFuture {
        self.0.lock().unwrap().push(duration);
        Box::pin(async {})
    }
}

struct Setup {
    fake: FakeGitlab,
    project: i64,
    forges: Forges,
    waits: Arc<Waits>,
    store: graft::store::Store,
}

async fn forges(
    fake: &FakeGitlab,
    db: &TestDb,
    token: &str,
) -> (Forges, Arc<Waits>, graft::store::Store) {
    let waits = Arc::new(Waits::default());
    let store = db.store().await;
    let forges = Forges::new(
        ForgeSettings {
            gitlab: Some(GitlabConfig {
                base_url: fake.url.clone(),
                token: SecretString::from(token.to_string()),
            }),
            sleeper: waits.clone(),
            ..ForgeSettings::default()
        },
        store.clone(),
        Some(support::test_keyring()),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    (forges, waits, store)
}

async fn setup(db: &TestDb) -> Setup {
    let fake = FakeGitlab::start().await;
    let project = fake.create_project(PATH);
    let (forges, waits, store) = forges(&fake, db, BOT_TOKEN).await;
    Setup {
        fake,
        project,
        forges,
        waits,
        store,
    }
}

impl Setup {
    async fn client(&self) -> RepoClient {
        self.forges.gitlab(None, PATH).await.unwrap()
    }
}

async fn open_mr(s: &Setup, client: &RepoClient, branch: &str) -> graft::ids::PrNumber {
    s.fake.git.create_branch(PATH, branch, "main");
    s.fake.git.commit(
        PATH,
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

async fn project_is_found_by_its_encoded_path(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    let info = client.repo_info().await.unwrap();
    assert_eq!(info.default_branch, "main");
    assert_eq!(info.clone_url, s.fake.git.clone_url(PATH));
    assert_eq!(info.web_url, format!("{}/{PATH}", s.fake.url));
    assert_eq!(
        client.branch_head("main").await.unwrap(),
        s.fake.git.head(PATH, "main")
    );
    assert_eq!(client.branch_head("graft/none").await.unwrap(), None);
    let requests = s.fake.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.path == "/api/v4/projects/platform%2Finfra%2Flive"),
        "{requests:?}"
    );
    // Later calls use the numeric id.
    assert!(
        requests
            .iter()
            .any(|r| r.path == format!("/api/v4/projects/{}/repository/branches/main", s.project))
    );
    let missing = s.forges.gitlab(None, "platform/nothing").await.unwrap();
    let error = missing.repo_info().await.unwrap_err();
    assert_eq!(error.class(), "not_installed");
    assert!(
        error
            .to_string()
            .contains("Developer role on platform/nothing"),
        "{error}"
    );
}

async fn merge_request_lifecycle_and_validation(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    assert_eq!(
        client.find_open_pull_request("graft/live").await.unwrap(),
        None
    );
    let iid = open_mr(&s, &client, "graft/live").await;
    let found = client
        .find_open_pull_request("graft/live")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.number, found.state), (iid, PullRequestState::Open));
    assert_eq!(Some(found.head_sha), s.fake.git.head(PATH, "graft/live"));
    let duplicate = client
        .open_pull_request(&NewPullRequest {
            head_branch: "graft/live".into(),
            base_branch: "main".into(),
            title: "again".into(),
            body: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(duplicate.class(), "validation");
    assert!(
        duplicate
            .to_string()
            .contains("Another open merge request already exists"),
        "{duplicate}"
    );
    let updated = client
        .update_pull_request(
            iid,
            &PullRequestUpdate {
                body: Some("new description".into()),
                title: Some("graft: 3 files".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.title, "graft: 3 files");
    assert_eq!(
        s.fake.merge_requests(s.project)[0].description,
        "new description"
    );
    client.close_pull_request(iid).await.unwrap();
    assert_eq!(
        client.pull_request(iid).await.unwrap().state,
        PullRequestState::Closed
    );
    assert_eq!(
        client.find_open_pull_request("graft/live").await.unwrap(),
        None
    );
}

async fn status_note_is_sticky_across_pages_and_races(db: TestDb) {
    let s = setup(&db).await;
    s.fake.set_max_per_page(2);
    let client = s.client().await;
    let iid = open_mr(&s, &client, "graft/live").await;
    for i in 0..3 {
        s.fake.comment_as(
            s.project,
            iid.get(),
            "alice",
            &format!("note {i} {STATUS_MARKER}"),
        );
    }
    let first = client.upsert_status_comment(iid, "syncing").await.unwrap();
    s.fake.comment_as(s.project, iid.get(), "bob", "lgtm");
    let second = client.upsert_status_comment(iid, "success").await.unwrap();
    assert_eq!(first.id, second.id);
    let ours: Vec<_> = s
        .fake
        .notes(s.project, iid.get())
        .into_iter()
        .filter(|n| n.author == BOT_USERNAME)
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].body, format!("{STATUS_MARKER}\nsuccess"));

    let iid = open_mr(&s, &client, "graft/race").await;
    let (other, ..) = forges(&s.fake, &db, BOT_TOKEN).await;
    let other = other.gitlab(None, PATH).await.unwrap();
    // The first creation of each client waits for the other's.
    s.fake.hold_note_creations(2);
    let racers = (0..6).map(|i| {
        let client = if i % 2 == 0 {
            client.clone()
        } else {
            other.clone()
        };
        async move {
            client
                .upsert_status_comment(iid, &format!("status {i}"))
                .await
        }
    });
    for result in join_all(racers).await {
        result.unwrap();
    }
    let count = s
        .fake
        .notes(s.project, iid.get())
        .iter()
        .filter(|n| n.author == BOT_USERNAME)
        .count();
    assert_eq!(count, 1);
}

async fn awards_statuses_and_access_levels(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    let iid = open_mr(&s, &client, "graft/live").await;
    let note = s
        .fake
        .comment_as(s.project, iid.get(), "alice", "/graft sync");
    client.react(iid, note, Reaction::Eyes).await.unwrap();
    client.react(iid, note, Reaction::Eyes).await.unwrap(); // already there: fine
    client.react(iid, note, Reaction::ThumbsUp).await.unwrap();
    assert_eq!(
        s.fake.awards(note),
        vec![
            (BOT_USERNAME.into(), "eyes".into()),
            (BOT_USERNAME.into(), "thumbsup".into())
        ]
    );
    client.reply(iid, "on it").await.unwrap();
    let sha = s.fake.git.head(PATH, "graft/live").unwrap();
    for conclusion in [
        CheckConclusion::Pending,
        CheckConclusion::Failure,
        CheckConclusion::Neutral,
    ] {
        client
            .report_check(&CheckReport {
                sha: sha.clone(),
                conclusion,
                title: "validation".into(),
                summary: "tofu validate".into(),
                details_url: None,
            })
            .await
            .unwrap();
    }
    let states: Vec<_> = s
        .fake
        .statuses(s.project)
        .iter()
        .map(|st| (st.name.clone(), st.state.clone()))
        .collect();
    assert_eq!(
        states,
        vec![
            ("graft".into(), "running".into()),
            ("graft".into(), "failed".into()),
            ("graft".into(), "success".into())
        ]
    );

    let levels = [
        (0, Permission::None),
        (5, Permission::None),
        (10, Permission::Read),
        (15, Permission::Read),
        (20, Permission::Read),
        (30, Permission::Write),
        (40, Permission::Write),
        (50, Permission::Admin),
    ];
    for (level, expected) in levels {
        let login = format!("user{level}");
        let id = s.fake.set_access_level(s.project, &login, level);
        let by_id = UserRef {
            login: login.clone(),
            id: Some(id),
        };
        assert_eq!(
            client.permission(&by_id).await.unwrap(),
            expected,
            "level {level}"
        );
        let by_name = UserRef { login, id: None };
        assert_eq!(
            client.permission(&by_name).await.unwrap(),
            expected,
            "level {level} by name"
        );
    }
    let stranger = s.fake.add_user("stranger");
    assert_eq!(
        client
            .permission(&UserRef {
                login: "stranger".into(),
                id: Some(stranger)
            })
            .await
            .unwrap(),
        Permission::None
    );
    assert_eq!(
        client
            .permission(&UserRef {
                login: "nobody".into(),
                id: None
            })
            .await
            .unwrap(),
        Permission::None
    );
}

async fn merge_when_pipeline_succeeds(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    let iid = open_mr(&s, &client, "graft/live").await;
    let sha = s.fake.git.head(PATH, "graft/live").unwrap();
    let report = |conclusion| CheckReport {
        sha: sha.clone(),
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
        client.enable_auto_merge(iid, &sha).await.unwrap(),
        AutoMerge::Enabled
    );
    assert_eq!(
        client.pull_request(iid).await.unwrap().state,
        PullRequestState::Open
    );
    client
        .report_check(&report(CheckConclusion::Success))
        .await
        .unwrap();
    assert_eq!(
        client.pull_request(iid).await.unwrap().state,
        PullRequestState::Merged
    );
    let main = s.fake.git.head(PATH, "main").unwrap();
    assert_eq!(
        s.fake.git.file(PATH, &main, "infra/main.tf").unwrap(),
        b"# generated\n"
    );

    let iid = open_mr(&s, &client, "graft/now").await;
    let now = s.fake.git.head(PATH, "graft/now").unwrap();
    assert_eq!(
        client.enable_auto_merge(iid, &now).await.unwrap(),
        AutoMerge::Merged
    );

    // Cancelled before the pipeline passes: it stays open.
    let iid = open_mr(&s, &client, "graft/cancel").await;
    let sha = s.fake.git.head(PATH, "graft/cancel").unwrap();
    let pending = CheckReport {
        sha: sha.clone(),
        ..report(CheckConclusion::Pending)
    };
    client.report_check(&pending).await.unwrap();
    assert_eq!(
        client.enable_auto_merge(iid, &sha).await.unwrap(),
        AutoMerge::Enabled
    );
    client.disable_auto_merge(iid).await.unwrap();
    let passed = CheckReport {
        sha,
        ..report(CheckConclusion::Success)
    };
    client.report_check(&passed).await.unwrap();
    assert_eq!(
        client.pull_request(iid).await.unwrap().state,
        PullRequestState::Open,
        "no longer merged when the pipeline passes"
    );
}

/// A commit lands on the branch after graft pushed: before graft looks,
/// and between its look and the merge call (`sha`, GitLab's 409). Nothing
/// is set to merge or merged; a push after auto-merge was set cancels it.
async fn auto_merge_only_takes_the_expected_head(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    let pending = |sha: &str| CheckReport {
        sha: sha.to_string(),
        conclusion: CheckConclusion::Pending,
        title: "validation".into(),
        summary: String::new(),
        details_url: None,
    };
    let evil = [("infra/evil.tf", Some(b"# not built by graft\n".as_slice()))];

    let iid = open_mr(&s, &client, "graft/one").await;
    let ours = s.fake.git.head(PATH, "graft/one").unwrap();
    let theirs = s
        .fake
        .push_as_human(PATH, "graft/one", &evil, "x", "mallory");
    assert_eq!(
        client.enable_auto_merge(iid, &ours).await.unwrap(),
        AutoMerge::HeadMoved { head: theirs }
    );

    let iid = open_mr(&s, &client, "graft/two").await;
    let ours = s.fake.git.head(PATH, "graft/two").unwrap();
    s.fake.push_before(PushBefore {
        on: "PUT /merge_requests/".into(),
        repo: PATH.into(),
        branch: "graft/two".into(),
        path: "infra/evil.tf".into(),
        content: b"# not built by graft\n".to_vec(),
        user: "mallory".into(),
    });
    let moved = client.enable_auto_merge(iid, &ours).await.unwrap();
    assert!(matches!(moved, AutoMerge::HeadMoved { .. }), "{moved:?}");

    // Set while graft's commit was the head; a push afterwards cancels it.
    let iid = open_mr(&s, &client, "graft/three").await;
    let ours = s.fake.git.head(PATH, "graft/three").unwrap();
    client.report_check(&pending(&ours)).await.unwrap();
    assert_eq!(
        client.enable_auto_merge(iid, &ours).await.unwrap(),
        AutoMerge::Enabled
    );
    let theirs = s
        .fake
        .push_as_human(PATH, "graft/three", &evil, "x", "mallory");
    client
        .report_check(&CheckReport {
            conclusion: CheckConclusion::Success,
            ..pending(&theirs)
        })
        .await
        .unwrap();

    for mr in s.fake.merge_requests(s.project) {
        assert!(
            mr.state == "opened" && !mr.merge_when_pipeline_succeeds,
            "{mr:?}"
        );
    }
    let main = s.fake.git.head(PATH, "main").unwrap();
    assert_eq!(s.fake.git.file(PATH, &main, "infra/evil.tf"), None);
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
    let error = client.branch_head("main").await.unwrap_err();
    assert_eq!(error.class(), "unexpected", "{error}");
    assert!(error.to_string().contains("larger than 32 MiB"), "{error}");
    assert_eq!(s.fake.requests().len(), before + 1, "not retried");
    assert!(client.branch_head("main").await.unwrap().is_some());
}

async fn failure_classes(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    client.repo_info().await.unwrap();

    s.fake
        .faults(|f| f.forbid.push(("/statuses/".into(), String::new())));
    let error = client
        .report_check(&CheckReport {
            sha: "abc".into(),
            conclusion: CheckConclusion::Success,
            title: "t".into(),
            summary: "s".into(),
            details_url: None,
        })
        .await
        .unwrap_err();
    assert_eq!(error.class(), "no_permission");
    assert!(error.to_string().contains("Developer role"), "{error}");
    s.fake.faults(|f| f.forbid.clear());

    s.fake.faults(|f| {
        f.rate_limit = 1;
        f.reset_in_secs = 20;
    });
    client.branch_head("main").await.unwrap();
    let waits = std::mem::take(&mut *s.waits.0.lock().unwrap());
    assert!(
        waits.len() == 1
            && waits[0] >= Duration::from_secs(18)
            && waits[0] <= Duration::from_secs(21),
        "{waits:?}"
    );

    s.fake.faults(|f| {
        f.secondary = 1;
        f.retry_after_secs = 3;
    });
    client.branch_head("main").await.unwrap();
    let waits = std::mem::take(&mut *s.waits.0.lock().unwrap());
    assert!(
        waits.len() == 1 && waits[0] >= Duration::from_secs(3),
        "{waits:?}"
    );

    s.fake.faults(|f| {
        f.rate_limit = 1;
        f.reset_in_secs = 7200;
    });
    let error = client.branch_head("main").await.unwrap_err();
    assert!(
        matches!(error, ForgeError::RateLimited { primary: true, .. }),
        "{error:?}"
    );
    assert!(matches!(
        SyncError::from(error).into_job_error(),
        JobError::Retry { after: Some(_), .. }
    ));

    s.fake.faults(|f| f.fail = 2);
    client.branch_head("main").await.unwrap();
    s.fake.faults(|f| f.fail = 9);
    let error = client.branch_head("main").await.unwrap_err();
    assert_eq!(error.class(), "server");
    // The fake's 502 page is HTML: the error names the status, not the page.
    let text = error.to_string();
    assert!(!text.contains("<html>"), "{text}");
    assert!(text.contains("HTTP 502"), "{text}");
    s.fake.faults(|f| f.fail = 0);

    s.fake.revoke_token(BOT_TOKEN);
    let error = client.branch_head("main").await.unwrap_err();
    assert_eq!(error.class(), "auth_lost");
    assert!(
        error
            .to_string()
            .contains("create a new one with the `api` scope"),
        "{error}"
    );
    assert!(!error.to_string().contains(BOT_TOKEN));
}

async fn stored_integration_token_is_opened_per_call(db: TestDb) {
    let s = setup(&db).await;
    let keyring = support::test_keyring();
    let sealed = keyring.seal(BOT_TOKEN).unwrap();
    let id = s
        .store
        .create_integration(
            &NewIntegration {
                provider: "gitlab",
                name: "self-managed",
                base_url: &s.fake.url,
                token_sealed: Some(&sealed),
                webhook_secret_sealed: None,
            },
            0,
        )
        .await
        .unwrap();
    let client = s.forges.gitlab(Some(id), PATH).await.unwrap();
    assert_eq!(client.repo_info().await.unwrap().default_branch, "main");
    let credentials = client.git_credentials().await.unwrap();
    assert_eq!(credentials.username, "oauth2");
    assert_eq!(credentials.token.expose_secret(), BOT_TOKEN);

    // Reconnected with a new token (the old one revoked): the next client
    // uses the new one, without a restart.
    let rotated = "glpat-rotated-token";
    s.fake.add_token(rotated, BOT_USERNAME, &["api"]);
    s.fake.revoke_token(BOT_TOKEN);
    let (same, created) = s
        .store
        .save_integration(
            &NewIntegration {
                provider: "gitlab",
                name: "self-managed",
                base_url: &s.fake.url,
                token_sealed: Some(&keyring.seal(rotated).unwrap()),
                webhook_secret_sealed: None,
            },
            1,
        )
        .await
        .unwrap();
    assert_eq!((same, created), (id, false));
    let client = s.forges.gitlab(Some(id), PATH).await.unwrap();
    assert_eq!(client.repo_info().await.unwrap().default_branch, "main");
    assert_eq!(
        client
            .git_credentials()
            .await
            .unwrap()
            .token
            .expose_secret(),
        rotated
    );
    s.fake.add_token(BOT_TOKEN, BOT_USERNAME, &["api"]);

    // Sealed under another key: a clear configuration error.
    let other = graft::crypto::Key::parse(&SecretString::from("11".repeat(32))).unwrap();
    let foreign = other.seal(BOT_TOKEN).unwrap();
    let id = s
        .store
        .create_integration(
            &NewIntegration {
                provider: "gitlab",
                name: "foreign",
                base_url: &s.fake.url,
                token_sealed: Some(&foreign),
                webhook_secret_sealed: None,
            },
            0,
        )
        .await
        .unwrap();
    let client = s.forges.gitlab(Some(id), PATH).await.unwrap();
    let error = client.repo_info().await.unwrap_err();
    assert_eq!(error.class(), "config");
    assert!(error.to_string().contains("ENCRYPTION_KEY"), "{error}");
    let error = s.forges.gitlab(Some(9999), PATH).await.unwrap_err();
    assert!(error.to_string().contains("integration 9999"), "{error}");
}

async fn git_credentials_push_over_http(db: TestDb) {
    let s = setup(&db).await;
    let client = s.client().await;
    let credentials = client.git_credentials().await.unwrap();
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
    let pushed = run(&["push", "-q", "origin", "HEAD:refs/heads/graft/x"]);
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    assert!(s.fake.git.head(PATH, "graft/x").is_some());
}

#[test]
fn bad_gitlab_settings_name_the_setting() {
    let args = |url: Option<&str>, token: Option<&str>| {
        let mut argv = vec!["graft", "serve"];
        if let Some(url) = url {
            argv.extend(["--gitlab-url", url]);
        }
        if let Some(token) = token {
            argv.extend(["--gitlab-token", token]);
        }
        let cli = <graft::cli::config::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        match cli.command {
            graft::cli::config::Command::Serve(args) => *args,
            _ => unreachable!(),
        }
    };
    let error = args(Some("https://gitlab.com"), None)
        .forge_settings()
        .unwrap_err();
    assert!(error.to_string().contains("GITLAB_TOKEN is not"), "{error}");
    let error = args(None, Some("glpat-x")).forge_settings().unwrap_err();
    assert!(error.to_string().contains("GITLAB_URL is not"), "{error}");
    assert!(!error.to_string().contains("glpat-x"));
    let settings = args(Some("gitlab.example.com"), Some("t"))
        .forge_settings()
        .unwrap();
    let error = Forges::new(settings, futures_store(), None, Arc::new(Metrics::new())).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("GitLab URL `gitlab.example.com` is not an http(s) URL"),
        "{error}"
    );
}

fn futures_store() -> graft::store::Store {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap().keep();
    runtime
        .block_on(graft::store::Store::open(&format!(
            "sqlite://{}/g.db",
            dir.display()
        )))
        .unwrap()
}

async fn an_unreachable_gitlab_is_a_network_error_after_retries(db: TestDb) {
    let waits = Arc::new(Waits::default());
    let forges = Forges::new(
        ForgeSettings {
            gitlab: Some(GitlabConfig {
                base_url: "http://127.0.0.1:9".into(),
                token: SecretString::from("glpat-unreachable-secret".to_string()),
            }),
            sleeper: waits.clone(),
            ..ForgeSettings::default()
        },
        db.store().await,
        Some(support::test_keyring()),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let client = forges.gitlab(None, PATH).await.unwrap();
    let error = client.repo_info().await.unwrap_err();
    assert_eq!(error.class(), "network", "{error}");
    assert!(error.is_retryable());
    assert!(
        !waits.0.lock().unwrap().is_empty(),
        "backed off before giving up"
    );
    assert!(
        !error.to_string().contains("glpat-unreachable-secret"),
        "{error}"
    );
}

both_backends!(
    an_unreachable_gitlab_is_a_network_error_after_retries,
    project_is_found_by_its_encoded_path,
    merge_request_lifecycle_and_validation,
    status_note_is_sticky_across_pages_and_races,
    awards_statuses_and_access_levels,
    merge_when_pipeline_succeeds,
    auto_merge_only_takes_the_expected_head,
    failure_classes,
    an_oversized_answer_is_refused_not_buffered,
    stored_integration_token_is_opened_per_call,
    git_credentials_push_over_http,
);

/// A loopback server answering every request with `answer`, recording
/// each request's path and `PRIVATE-TOKEN` header.
async fn recording_server(
    answer: impl Fn(&str) -> axum::response::Response + Clone + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<(String, Option<String>)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let router = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let log = log.clone();
        let answer = answer.clone();
        async move {
            let token = request
                .headers()
                .get("private-token")
                .map(|v| v.to_str().unwrap().to_string());
            let path = request.uri().path().to_string();
            log.lock().unwrap().push((path.clone(), token));
            answer(&path)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    (url, seen)
}

fn probing_client(base_url: &str) -> graft::forge::gitlab::GitlabClient {
    let retrier = graft::forge::retry::Retrier::new(
        graft::forge::retry::RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        },
        Arc::new(graft::forge::retry::TokioSleeper),
        Arc::new(Metrics::new()),
    );
    graft::forge::gitlab::GitlabClient::new(
        base_url,
        graft::forge::gitlab::GitlabToken::Plain(SecretString::from(
            "glpat-REDIRECT-secret".to_string(),
        )),
        retrier,
        graft::forge::sticky::KeyedLocks::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_token_never_follows_a_redirect_to_another_host() {
    use axum::response::{IntoResponse, Redirect};
    let user = || axum::Json(serde_json::json!({"id": 7, "username": "graft-bot"})).into_response();
    let (elsewhere, seen_elsewhere) = recording_server(move |_| user()).await;
    let target = elsewhere.clone();
    let (gitlab, seen_gitlab) = recording_server(move |path| {
        Redirect::temporary(&format!("{target}{path}")).into_response()
    })
    .await;

    let error = probing_client(&gitlab).current_user().await.unwrap_err();
    assert!(
        error.to_string().contains("redirect to another address"),
        "{error}"
    );
    assert!(
        !error.to_string().contains("glpat-REDIRECT-secret"),
        "{error}"
    );
    assert_eq!(seen_gitlab.lock().unwrap().len(), 1);
    assert!(
        seen_elsewhere.lock().unwrap().is_empty(),
        "the other host was not called: {:?}",
        seen_elsewhere.lock().unwrap()
    );

    // Within GitLab's own origin a redirect is followed, token and all:
    // what the other host would have seen had it been called.
    let (same, seen_same) = recording_server(move |path| {
        if path == "/api/v4/user" {
            Redirect::temporary("/api/v4/moved/user").into_response()
        } else {
            user()
        }
    })
    .await;
    let me = probing_client(&same).current_user().await.unwrap();
    assert_eq!(me.username, "graft-bot");
    let seen = seen_same.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (
                "/api/v4/user".to_string(),
                Some("glpat-REDIRECT-secret".to_string())
            ),
            (
                "/api/v4/moved/user".to_string(),
                Some("glpat-REDIRECT-secret".to_string())
            ),
        ]
    );
}

#[test]
fn a_plain_http_gitlab_url_needs_the_operators_leave() {
    let args = |extra: &[&str]| {
        let mut argv = vec![
            "graft",
            "serve",
            "--gitlab-url",
            "http://gitlab.internal",
            "--gitlab-token",
            "glpat-cleartext",
        ];
        argv.extend(extra);
        let cli = <graft::cli::config::Cli as clap::Parser>::try_parse_from(argv).unwrap();
        match cli.command {
            graft::cli::config::Command::Serve(args) => *args,
            _ => unreachable!(),
        }
    };
    let error = args(&[]).forge_settings().unwrap_err().to_string();
    assert!(
        error.contains("GITLAB_URL") && error.contains("GRAFT_ALLOW_HTTP_GITLAB=true"),
        "{error}"
    );
    assert!(!error.contains("glpat-cleartext"), "{error}");
    let allowed = args(&["--allow-http-gitlab"]).forge_settings().unwrap();
    assert_eq!(
        allowed.gitlab.map(|g| g.base_url).as_deref(),
        Some("http://gitlab.internal")
    );
}
