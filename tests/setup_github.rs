//! GitHub App one-click set-up: the manifest, the manifest flow against the
//! fake GitHub (state checks, conversion, sealed storage, the app in use at
//! once) and `graft github manifest`.

mod support;

use std::collections::BTreeSet;

use graft::app::{AppSettings, OperatorSettings};
use secrecy::ExposeSecret;
use serde_json::Value;
use support::fake_github::{self, FakeGithub};
use support::ui::{client, get_page, input_value, login, post_form_actions};
use support::{TestApp, TestDb, default_settings, test_keyring};

fn manifest_file() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/app-manifest/github-app.json"
    ))
    .unwrap();
    serde_json::from_str(&text).expect("app-manifest/github-app.json is valid JSON")
}

#[test]
fn manifest_json_is_valid_and_complete() {
    let m = manifest_file();
    assert!(m["name"].as_str().is_some_and(|n| !n.is_empty()));
    assert_eq!(m["url"], "${GRAFT_PUBLIC_URL}");
    assert_eq!(
        m["hook_attributes"]["url"],
        "${GRAFT_PUBLIC_URL}/webhooks/github"
    );
    assert_eq!(m["hook_attributes"]["active"], true);
    assert_eq!(
        m["redirect_url"],
        "${GRAFT_PUBLIC_URL}/setup/github/callback"
    );
    assert_eq!(m["setup_url"], "${GRAFT_PUBLIC_URL}/setup/github");
    assert_eq!(m["public"], false);
    let permissions: BTreeSet<(String, String)> = m["default_permissions"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let least: BTreeSet<(String, String)> = [
        ("checks", "write"),
        ("contents", "write"),
        ("issues", "write"),
        ("metadata", "read"),
        ("pull_requests", "write"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(permissions, least, "exactly the least graft needs");
    let events: BTreeSet<&str> = m["default_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        BTreeSet::from(["issue_comment", "pull_request", "push"])
    );
    // Every permission is explained in the README.
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/app-manifest/README.md"
    ))
    .unwrap();
    for (permission, _) in &permissions {
        assert!(
            readme.contains(&format!("`{permission}`")),
            "README explains {permission}"
        );
    }
    assert!(readme.contains("installation_repositories"));
}

#[test]
fn graft_github_manifest_prints_the_manifest_and_the_setup_url() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["github", "manifest"])
        .env("GRAFT_PUBLIC_URL", "https://graft.example.com/")
        .env_remove("GITHUB_API_URL")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let printed: Value = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .next()
        .expect("something printed")
        .expect("manifest JSON first");
    assert_eq!(
        printed["hook_attributes"]["url"],
        "https://graft.example.com/webhooks/github"
    );
    assert!(!stdout.contains("${GRAFT_PUBLIC_URL}"));
    assert!(
        stdout.contains("https://graft.example.com/setup/github"),
        "{stdout}"
    );
    assert!(
        stdout.contains("https://github.com/settings/apps/new"),
        "{stdout}"
    );

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["github", "manifest"])
        .env_remove("GRAFT_PUBLIC_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("GRAFT_PUBLIC_URL"), "{stderr}");
}

fn settings_for(github: &FakeGithub) -> AppSettings {
    AppSettings {
        // Only the stored app's secret: proves it is used for webhooks.
        github_webhook_secrets: Vec::new(),
        operator: OperatorSettings {
            public_url: Some("https://graft.example.com".into()),
            github_api_url: github.api_url.clone(),
        },
        ..default_settings()
    }
}

/// Opens the set-up page as a signed-in admin and returns the manifest and
/// the `state` the page issued.
async fn start_setup(app: &TestApp, cookie: &str, query: &str) -> (Value, String, String) {
    let (status, html) = get_page(app, &format!("/setup/github{query}"), cookie).await;
    assert_eq!(status, 200, "{html}");
    let action = post_form_actions(&html)
        .into_iter()
        .find(|a| a.contains("state="))
        .expect("a form that posts to GitHub");
    let manifest: Value =
        serde_json::from_str(&input_value(&html, "manifest").expect("manifest field")).unwrap();
    let state = action
        .split("state=")
        .nth(1)
        .expect("state in the form's action")
        .to_string();
    (manifest, state, action)
}

async fn callback(app: &TestApp, query: &str) -> (u16, String) {
    let response = client()
        .get(app.url(&format!("/setup/github/callback{query}")))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn manifest_flow_stores_the_app_sealed_and_uses_it(db: TestDb) {
    let github = FakeGithub::start().await;
    github.create_repo("acme/infra", 7);
    let app = TestApp::start(&db, settings_for(&github), None).await;
    // Another replica on the same database, already running.
    let replica = TestApp::start(&db, settings_for(&github), None).await;
    let token = app.create_token("admin").await;
    let cookie = login(&app, &token).await;

    let (manifest, state, action) = start_setup(&app, &cookie, "?org=acme&name=graft-acme").await;
    assert!(
        action.starts_with(&format!(
            "{}/organizations/acme/settings/apps/new?state=",
            github.root
        )),
        "{action}"
    );
    assert_eq!(manifest["name"], "graft-acme");
    assert_eq!(
        manifest["redirect_url"],
        "https://graft.example.com/setup/github/callback"
    );
    assert!(app.state.context.forges.github_app().is_none());

    // The admin confirms on GitHub; GitHub redirects back with a code.
    let code = github.create_app_from_manifest(&manifest);
    let (status, page) = callback(&app, &format!("?code={code}&state={state}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("GitHub App registered"), "{page}");
    assert!(
        page.contains("/apps/graft-acme/installations/new"),
        "{page}"
    );
    assert!(!page.contains("BEGIN"), "no key material on the page");

    // Stored sealed: no PEM plaintext in the row.
    let (provider, app_id, token_sealed, secret_sealed): (String, String, String, String) =
        sqlx::query_as(
            "SELECT provider, app_id, token_sealed, webhook_secret_sealed FROM integrations",
        )
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(provider, "github");
    assert_eq!(app_id, fake_github::APP_ID.to_string());
    for sealed in [&token_sealed, &secret_sealed] {
        assert!(sealed.starts_with("v1:"), "{sealed}");
        assert!(!sealed.contains("BEGIN") && !sealed.contains("PRIVATE KEY"));
    }
    assert!(!secret_sealed.contains(&github.webhook_secret));
    let ring = test_keyring();
    assert_eq!(
        ring.open(&token_sealed).unwrap().expose_secret().trim(),
        fake_github::app_private_key().trim()
    );

    // graft uses the app at once: it reaches the installation on GitHub…
    let client = app
        .state
        .context
        .forges
        .github("acme/infra")
        .await
        .expect("app in use");
    assert_eq!(client.repo_info().await.unwrap().default_branch, "main");
    // …and so does the other replica, reading it from the database.
    let client = replica
        .state
        .context
        .forges
        .github("acme/infra")
        .await
        .expect("stored app found by the other replica");
    assert_eq!(client.repo_info().await.unwrap().default_branch, "main");
    // The session is valid on the other replica too (key from ENCRYPTION_KEY).
    assert_eq!(get_page(&replica, "/", &cookie).await.0, 200);
    replica.stop().await;
    // …and accepts webhooks signed with the app's stored secret.
    let body = br#"{"zen":"hi","hook_id":1}"#;
    let delivery = reqwest::Client::new()
        .post(app.url("/webhooks/github"))
        .header("X-GitHub-Event", "ping")
        .header("X-GitHub-Delivery", "d-1")
        .header(
            "X-Hub-Signature-256",
            graft::signature::github_signature(&github.webhook_secret, body),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(delivery.status(), 202);
    let events = app.store.recent_events(10).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "github_app.registered"));

    // The state works once.
    let again = github.create_app_from_manifest(&manifest);
    let (status, page) = callback(&app, &format!("?code={again}&state={state}")).await;
    assert_eq!(status, 400, "{page}");
    app.stop().await;
}

async fn callback_with_missing_or_bad_state_is_rejected(db: TestDb) {
    let github = FakeGithub::start().await;
    let app = TestApp::start(&db, settings_for(&github), None).await;
    let code = github.create_app_from_manifest(&serde_json::json!({"name": "x"}));
    let (status, page) = callback(&app, &format!("?code={code}")).await;
    assert_eq!(status, 400);
    assert!(page.contains("no `state`"), "{page}");
    let (status, page) = callback(&app, &format!("?code={code}&state=forged")).await;
    assert_eq!(status, 400);
    assert!(page.contains("does not match"), "{page}");
    let (status, _) = callback(&app, "").await;
    assert_eq!(status, 400);
    // Nothing stored, and GitHub was never asked.
    assert!(app.store.github_app().await.unwrap().is_none());
    let asked = github
        .state
        .lock()
        .unwrap()
        .requests
        .iter()
        .any(|r| r.path.contains("app-manifests"));
    assert!(!asked, "no conversion without a valid state");
    // The set-up page itself is for signed-in admins only.
    let response = client().get(app.url("/setup/github")).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert!(
        response.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
    app.stop().await;
}

async fn conversion_failure_is_shown_clearly(db: TestDb) {
    let github = FakeGithub::start().await;
    let app = TestApp::start(&db, settings_for(&github), None).await;
    let token = app.create_token("admin").await;
    let cookie = login(&app, &token).await;

    // An unknown (expired, used) code: GitHub answers 404.
    let (_, state, _) = start_setup(&app, &cookie, "").await;
    let (status, page) = callback(&app, &format!("?code=0123abcd&state={state}")).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("GitHub did not create the app"), "{page}");
    assert!(page.contains("expired"), "{page}");

    // GitHub unreachable: a clear 502 naming the problem.
    let unreachable = AppSettings {
        operator: OperatorSettings {
            public_url: Some("https://graft.example.com".into()),
            github_api_url: "http://127.0.0.1:9".into(),
        },
        ..default_settings()
    };
    let app2 = TestApp::start(&db, unreachable, None).await;
    let cookie2 = login(&app2, &token).await;
    let (_, state, _) = start_setup(&app2, &cookie2, "").await;
    let (status, page) = callback(&app2, &format!("?code=abc&state={state}")).await;
    assert_eq!(status, 502, "{page}");
    assert!(page.contains("cannot reach GitHub"), "{page}");
    assert!(app.store.github_app().await.unwrap().is_none());
    app2.stop().await;
    app.stop().await;
}

async fn setup_page_refuses_without_an_encryption_key(db: TestDb) {
    let github = FakeGithub::start().await;
    let settings = AppSettings {
        keyring: None,
        ..settings_for(&github)
    };
    let app = TestApp::start(&db, settings, None).await;
    let token = app.create_token("admin").await;
    let cookie = login(&app, &token).await;
    let (status, html) = get_page(&app, "/setup/github", &cookie).await;
    assert_eq!(status, 200);
    assert!(html.contains("ENCRYPTION_KEY is not set"), "{html}");
    assert_eq!(post_form_actions(&html), vec!["/logout".to_string()]);
    app.stop().await;
}

async fn after_installing_github_lands_on_a_page_without_sign_in(db: TestDb) {
    let github = FakeGithub::start().await;
    let app = TestApp::start(&db, settings_for(&github), None).await;
    // GitHub's redirect is cross-site: no session cookie comes along.
    let response = client()
        .get(app.url("/setup/github?installation_id=4242&setup_action=install"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("GitHub App installed") && html.contains("4242"),
        "{html}"
    );
    assert!(!html.contains("state="), "no manifest form, nothing secret");
    // The set-up page itself still needs a sign-in.
    let response = client().get(app.url("/setup/github")).send().await.unwrap();
    assert_eq!(response.status(), 303);
    app.stop().await;
}

both_backends!(
    after_installing_github_lands_on_a_page_without_sign_in,
    manifest_flow_stores_the_app_sealed_and_uses_it,
    callback_with_missing_or_bad_state_is_rejected,
    conversion_failure_is_shown_clearly,
    setup_page_refuses_without_an_encryption_key,
);

/// `graft serve` picks up the app stored by the manifest flow at start-up
/// and does not ask for GITHUB_APP_ID any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_uses_the_stored_app_at_start_up() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let db = TestDb::new(support::Backend::Sqlite).await.unwrap();
    let store = db.store().await;
    let ring = test_keyring();
    store
        .save_github_app(
            &graft::store::operator::NewGithubApp {
                app_id: &fake_github::APP_ID.to_string(),
                slug: "graft-test",
                api_url: "https://api.github.com",
                private_key_sealed: &ring.seal(&fake_github::app_private_key()).unwrap(),
                webhook_secret_sealed: Some(&ring.seal("whsec").unwrap()),
            },
            1,
        )
        .await
        .unwrap();
    store.close().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .arg("serve")
        .current_dir(dir.path())
        .env("DATABASE_URL", &db.url)
        .env("ENCRYPTION_KEY", support::TEST_KEY)
        .env("PORT", "0")
        .env("GRAFT_BIND", "127.0.0.1")
        .env_remove("GITHUB_APP_ID")
        .env_remove("GITHUB_APP_PRIVATE_KEY")
        .env_remove("GITHUB_WEBHOOK_SECRET")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    // Start-up is finished when /readyz answers 200: everything graft prints
    // at start-up comes before that. Then it is stopped and its output read
    // to the end (the pipes close when it exits).
    let mut printed = String::new();
    let address = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = stdout.next_line().await {
            printed.push_str(&line);
            printed.push('\n');
            if let Some(address) = line.strip_prefix("graft listening on ") {
                return Some(address.trim().to_string());
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    if let Some(address) = &address {
        support::eventually(
            "graft ready",
            std::time::Duration::from_secs(30),
            || async move {
                let ready = client()
                    .get(format!("{address}/readyz"))
                    .send()
                    .await
                    .ok()?;
                (ready.status() == 200).then_some(())
            },
        )
        .await;
    }
    let _ = child.start_kill();
    let mut logs = String::new();
    let drained = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = stdout.next_line().await {
            printed.push_str(&line);
            printed.push('\n');
        }
        while let Ok(Some(line)) = stderr.next_line().await {
            logs.push_str(&line);
            logs.push('\n');
        }
    })
    .await;
    assert!(
        drained.is_ok(),
        "graft's output did not end after it was killed"
    );
    let _ = child.wait().await;
    assert!(printed.contains("graft listening on"), "{printed}{logs}");
    assert!(!printed.contains("GitHub App:"), "{printed}");
    assert!(!printed.contains("GitHub webhooks:"), "{printed}");
    assert!(
        logs.contains("using the GitHub App registered through /setup/github"),
        "{logs}"
    );
}
