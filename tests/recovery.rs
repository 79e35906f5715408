//! Webhooks that never reached graft are recovered: GitHub deliveries that
//! failed while graft was down are redelivered at start-up (once), GitLab
//! notes written meanwhile are read into the command intake, and a GitLab
//! hook disabled after failures is re-enabled and its health shown. Both
//! databases, real webhooks both ways.

mod support;

use graft::recovery::run_once;
use graft::store::now_ms;
use graft::store::projects::{Kind, Mode, NewProject, Project, SyncStatus};
use support::commands::{count, github_replies, gitlab_replies, project};
use support::harness::Harness;
use support::sync::{input, put, settled};
use support::{GITLAB_SECRET, TestDb};

const REPO: &str = "acme/infra";
const INSTALLATION: i64 = 77;
const PATH: &str = "platform/infra";

fn new_project(provider: &str, repo: &str) -> NewProject {
    NewProject {
        provider: graft::ids::Provider::parse(provider).expect("github or gitlab"),
        integration_id: None,
        repo: repo.into(),
        branch: "main".into(),
        base_path: "infra".into(),
        kind: Kind::Iac,
        mode: Mode::PullRequest,
        auto_sync: true,
        auto_merge: false,
        sync_branch: None,
        commit_via: Default::default(),
    }
}

/// A synced project with graft's PR/MR open; returns it and the number.
async fn synced(h: &Harness, provider: &str, repo: &str) -> (Project, i64) {
    let p = h
        .app
        .store
        .create_project(&new_project(provider, repo), now_ms())
        .await
        .unwrap();
    put(h, p.id, &[input("a.tf", "# a1\n")]).await;
    let synced = settled(h, p.id, SyncStatus::Success).await;
    let number = synced.pull_request_number.expect("a PR");
    (synced, number.get())
}

/// A URL where nothing listens: graft is down.
async fn nobody_at(path: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}{path}")
}

fn thumbs_up(reactions: Vec<(String, String)>, like: &str) -> usize {
    reactions.iter().filter(|(_, c)| c == like).count()
}

async fn command_runs(h: &Harness) -> i64 {
    count(h, "SELECT COUNT(*) FROM command_runs").await
}

async fn github_comment_missed_while_down_runs_once(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let (p, number) = synced(&h, "github", REPO).await;
    h.github.set_role(REPO, "writer", "write");
    // Small pages, so the listing has to follow the cursor.
    h.github.set_max_per_page(2);

    h.github
        .set_webhook_url(&nobody_at("/webhooks/github").await);
    let comment = h.comment_on_github(REPO, number, "writer", "/graft pause");
    h.wait_for("the comment's delivery failed", || async {
        h.github
            .webhooks()
            .iter()
            .any(|w| w.body.pointer("/comment/id").and_then(|v| v.as_i64()) == Some(comment))
            .then_some(())
    })
    .await;
    assert!(!project(&h, p.id).await.paused);

    // graft is back; later deliveries reach it, pushing the missed one
    // down the list.
    h.github.set_webhook_url(&h.app.url("/webhooks/github"));
    for i in 0..3 {
        h.comment_on_github(REPO, number, "writer", &format!("thanks {i}"));
    }
    h.wait_for("the later deliveries answered", || async {
        let hooks = h.github.webhooks();
        (hooks.iter().filter(|w| w.status == Some(202)).count() >= 3
            && hooks.iter().rev().take(3).all(|w| w.status == Some(202)))
        .then_some(())
    })
    .await;

    // Start-up: the missed delivery is asked for again and runs once.
    let done = run_once(&h.app.state.context).await;
    assert_eq!(done.redeliveries, 1, "{done:?}");
    assert_eq!(done.failures, 0, "{done:?}");
    h.wait_for("the command ran", || async {
        (project(&h, p.id).await.paused && !github_replies(&h, REPO, number).is_empty())
            .then_some(())
    })
    .await;
    h.wait_for("👍 on the comment", || async {
        (thumbs_up(h.github.reactions(comment), "+1") == 1).then_some(())
    })
    .await;
    let listings: Vec<_> = h
        .github
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/app/hook/deliveries")
        .collect();
    assert!(listings.len() > 1, "the listing followed the cursor");
    assert!(
        listings
            .iter()
            .skip(1)
            .all(|r| r.query.contains_key("cursor"))
    );
    assert!(listings.iter().all(|r| {
        r.authorization
            .as_deref()
            .is_some_and(|a| !a.contains("ghs_"))
    }));

    // A second start-up and a later pass ask for nothing and run nothing.
    let runs = command_runs(&h).await;
    let again = run_once(&h.app.state.context).await;
    assert_eq!(again.redeliveries, 0, "{again:?}");
    run_once(&h.app.state.context).await;
    assert_eq!(h.github.redeliveries(), 1);
    assert_eq!(command_runs(&h).await, runs);
    assert_eq!(github_replies(&h, REPO, number).len(), 1);
    assert_eq!(thumbs_up(h.github.reactions(comment), "+1"), 1);
    let guid_deliveries = h
        .deliveries()
        .await
        .into_iter()
        .filter(|d| d.event == "issue_comment")
        .filter(|d| {
            d.payload
                .as_deref()
                .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                .and_then(|v| v.pointer("/comment/id").and_then(|c| c.as_i64()))
                == Some(comment)
        })
        .count();
    assert_eq!(guid_deliveries, 1, "the redelivery is stored once");
    h.stop().await;
}

/// The deliveries list is the app's: an installation token is refused.
async fn delivery_log_needs_the_app_jwt(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let app = h.forges().github_app().expect("app");
    let token = app.installation_token(INSTALLATION).await.unwrap();
    let http = reqwest::Client::new();
    for (method, path) in [
        (reqwest::Method::GET, "/app/hook/deliveries"),
        (reqwest::Method::POST, "/app/hook/deliveries/50000/attempts"),
    ] {
        let response = http
            .request(method, format!("{}{path}", h.github.api_url))
            .header(
                "Authorization",
                format!("Bearer {}", secrecy::ExposeSecret::expose_secret(&token)),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
    }
    assert_eq!(h.github.redeliveries(), 0);
    h.stop().await;
}

async fn gitlab_note_missed_while_down_runs_once(db: TestDb) {
    let h = Harness::start(&db).await;
    let gitlab_id = h.gitlab_project(PATH);
    let (p, iid) = synced(&h, "gitlab", PATH).await;
    h.gitlab.set_access_level(gitlab_id, "dev", 30);

    h.gitlab
        .set_webhook_url(&nobody_at("/webhooks/gitlab").await);
    let note = h.comment_on_gitlab(gitlab_id, iid, "dev", "/graft pause");
    h.wait_for("the note's hook failed", || async {
        h.gitlab
            .webhooks()
            .iter()
            .any(|w| {
                w.body
                    .pointer("/object_attributes/id")
                    .and_then(|v| v.as_i64())
                    == Some(note)
                    && w.status.is_none()
            })
            .then_some(())
    })
    .await;
    h.gitlab.set_webhook_url(&h.app.url("/webhooks/gitlab"));
    assert!(!project(&h, p.id).await.paused);

    let done = run_once(&h.app.state.context).await;
    assert!(done.notes >= 1, "{done:?}");
    assert_eq!(done.failures, 0, "{done:?}");
    h.wait_for("the command ran", || async {
        (project(&h, p.id).await.paused && !gitlab_replies(&h, gitlab_id, iid).is_empty())
            .then_some(())
    })
    .await;
    h.wait_for("👍 on the note", || async {
        (thumbs_up(h.gitlab.awards(note), "thumbsup") == 1).then_some(())
    })
    .await;

    let runs = command_runs(&h).await;
    run_once(&h.app.state.context).await;
    run_once(&h.app.state.context).await;
    assert_eq!(command_runs(&h).await, runs);
    assert_eq!(gitlab_replies(&h, gitlab_id, iid).len(), 1);
    assert_eq!(thumbs_up(h.gitlab.awards(note), "thumbsup"), 1);
    h.stop().await;
}

async fn disabled_gitlab_hook_is_re_enabled_and_shown(db: TestDb) {
    let h = Harness::start(&db).await;
    let gitlab_id = h.gitlab_project(PATH);
    let p = h
        .app
        .store
        .create_project(&new_project("gitlab", PATH), now_ms())
        .await
        .unwrap();
    let token = h.app.create_token("admin").await;
    let cookie = support::ui::login(&h.app, &token).await;
    let page = format!("/projects/{}", p.id);

    // Before any pass: nothing is claimed about the hook.
    let (_, html) = support::ui::get_page(&h.app, &page, &cookie).await;
    assert!(!html.contains("Webhook"), "{html}");

    // No hook points at graft: said so.
    run_once(&h.app.state.context).await;
    let (_, html) = support::ui::get_page(&h.app, &page, &cookie).await;
    assert!(
        html.contains("no webhook on the project points at graft"),
        "{html}"
    );

    // GitLab disabled graft's hook while graft was unreachable at it, and
    // graft still is: the test request fails, the dashboard says so.
    let down = nobody_at("/webhooks/gitlab").await;
    let hook = h.gitlab.add_hook(gitlab_id, &down, GITLAB_SECRET);
    let other = h
        .gitlab
        .add_hook(gitlab_id, "http://ci.example/hook", "other");
    h.gitlab.disable_hook(hook, None);
    h.gitlab.disable_hook(other, None);
    let done = run_once(&h.app.state.context).await;
    assert_eq!(done.hooks_enabled, 0, "{done:?}");
    let (_, html) = support::ui::get_page(&h.app, &page, &cookie).await;
    assert!(html.contains("disabled by GitLab after failures"), "{html}");

    // graft answers at the hook's URL again: re-enabled, a reconcile is
    // queued for what GitLab held back, the dashboard says ok.
    h.gitlab
        .state
        .lock()
        .unwrap()
        .project_hooks
        .iter_mut()
        .find(|x| x.id == hook)
        .unwrap()
        .url = h.app.url("/webhooks/gitlab");
    h.gitlab.disable_hook(hook, Some(3600));
    let (_, html) = {
        run_once(&h.app.state.context).await;
        support::ui::get_page(&h.app, &page, &cookie).await
    };
    let hooks = h.gitlab.project_hooks(gitlab_id);
    let ours = hooks.iter().find(|x| x.id == hook).unwrap();
    assert_eq!(ours.alert_status, "executable");
    let theirs = hooks.iter().find(|x| x.id == other).unwrap();
    assert_eq!(
        theirs.alert_status, "disabled",
        "only graft's hook is touched"
    );
    assert!(html.contains("Webhook"), "{html}");
    assert!(html.contains(">ok<"), "{html}");
    let reconciles = count(
        &h,
        &format!(
            "SELECT COUNT(*) FROM jobs WHERE kind = 'reconcile' AND project_id = {}",
            p.id
        ),
    )
    .await;
    assert!(reconciles >= 1);
    let health = h.app.store.webhook_health(p.id).await.unwrap().unwrap();
    assert_eq!(health.state, "ok");
    h.stop().await;
}

both_backends!(
    github_comment_missed_while_down_runs_once,
    delivery_log_needs_the_app_jwt,
    gitlab_note_missed_while_down_runs_once,
    disabled_gitlab_hook_is_re_enabled_and_shown,
);
