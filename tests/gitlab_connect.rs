//! Connecting GitLab: the token is checked against GitLab before it is
//! stored (bad token, too narrow a scope, unreachable host are clear 4xx/5xx
//! answers), project webhooks are created or updated on request, and
//! `graft gitlab connect` prints what to configure.

mod support;

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use support::fake_gitlab::{BOT_USERNAME, FakeGitlab};
use support::{TestApp, TestDb, default_settings};

async fn post(app: &TestApp, token: &str, body: &Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/api/v1/integrations/gitlab"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn bad_tokens_are_refused_with_the_reason(db: TestDb) {
    let gitlab = FakeGitlab::start().await;
    gitlab.add_token(
        "glpat-readonly",
        "reader-bot",
        &["read_api", "read_repository"],
    );
    let app = TestApp::start(&db, default_settings(), None).await;
    let admin = app.create_token("admin").await;

    let (status, body) = post(
        &app,
        &admin,
        &json!({"base_url": gitlab.url, "token": "glpat-wrong", "webhook_secret": "s"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "gitlab_token_rejected");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("rejected the token"), "{message}");
    assert!(
        !message.contains("glpat-wrong"),
        "the token is never echoed"
    );

    let (status, body) = post(
        &app,
        &admin,
        &json!({"base_url": gitlab.url, "token": "glpat-readonly", "webhook_secret": "s"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "gitlab_token_scope");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("read_api") && message.contains("`api`"),
        "{message}"
    );

    let (status, body) = post(
        &app,
        &admin,
        &json!({"base_url": "http://127.0.0.1:9", "token": "t", "webhook_secret": "s"}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot reach GitLab"),
        "{body}"
    );
    assert!(app.store.list_integrations().await.unwrap().is_empty());
    app.stop().await;
}

async fn webhooks_are_created_once_and_need_maintainer(db: TestDb) {
    let gitlab = FakeGitlab::start().await;
    let live = gitlab.create_project("infra/live");
    let other = gitlab.create_project("infra/other");
    gitlab.set_access_level(other, BOT_USERNAME, 30);
    let body = json!({
        "base_url": gitlab.url,
        "token": support::fake_gitlab::BOT_TOKEN,
        "webhook_secret": "hook-secret-1",
        "hooks": ["infra/live", "infra/other"],
    });
    // Without GRAFT_PUBLIC_URL graft cannot tell GitLab where it is (the
    // request may come from the CLI on localhost): refused, nothing stored.
    {
        let app = TestApp::start(&db, default_settings(), None).await;
        let admin = app.create_token("admin").await;
        let (status, answer) = post(&app, &admin, &body).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["error"]["code"], "public_url_required");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("GRAFT_PUBLIC_URL")
        );
        assert!(app.store.list_integrations().await.unwrap().is_empty());
        assert!(gitlab.project_hooks(live).is_empty());
        app.stop().await;
    }
    let mut settings = default_settings();
    settings.operator.public_url = Some("https://graft.example.com".into());
    let app = TestApp::start(&db, settings, None).await;
    let admin = app.create_token("admin-2").await;
    let (status, answer) = post(&app, &admin, &body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["created"], true);
    let id = answer["id"].clone();
    assert_eq!(answer["user"], BOT_USERNAME);
    assert_eq!(answer["scopes"], json!(["api"]));
    let hook_url = answer["webhook_url"].as_str().unwrap().to_string();
    assert_eq!(hook_url, "https://graft.example.com/webhooks/gitlab");
    assert_eq!(answer["hooks"][0]["status"], "created");
    assert_eq!(answer["hooks"][1]["status"], "failed");
    assert!(
        answer["hooks"][1]["error"]
            .as_str()
            .unwrap()
            .contains("Maintainer"),
        "{answer}"
    );
    assert!(!answer.to_string().contains("hook-secret-1"));
    let hooks = gitlab.project_hooks(live);
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].url, hook_url);
    assert_eq!(hooks[0].token, "hook-secret-1");
    assert!(hooks[0].push_events && hooks[0].merge_requests_events && hooks[0].note_events);
    assert!(gitlab.project_hooks(other).is_empty());

    // Connecting again (a new secret) updates the hook instead of adding one.
    let again = json!({
        "base_url": gitlab.url,
        "token": support::fake_gitlab::BOT_TOKEN,
        "webhook_secret": "hook-secret-2",
        "hooks": ["infra/live"],
    });
    let (status, answer) = post(&app, &admin, &again).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["id"].clone(), answer["created"].clone()),
        (id.clone(), json!(false))
    );
    assert_eq!(answer["hooks"][0]["status"], "updated");
    let hooks = gitlab.project_hooks(live);
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].token, "hook-secret-2");
    // One integration, and only the new secret opens the door.
    assert_eq!(app.store.list_integrations().await.unwrap().len(), 1);
    let push = support::fixture("gitlab/push.json");
    let old = app
        .gitlab_with_token("Push Hook", "old-secret", &push, Some("hook-secret-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        old.status(),
        401,
        "the replaced secret is no longer accepted"
    );
    let new = app
        .gitlab_with_token("Push Hook", "new-secret", &push, Some("hook-secret-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(new.status(), 202);
    // Another account on the same instance (a per-group token) is another
    // integration, and the first one keeps its credentials. It may not
    // reuse a secret another integration or the environment has: GitLab
    // sends only the secret, so its deliveries would go to the wrong one.
    gitlab.add_token("glpat-group-token", "group-bot", &["api"]);
    for (taken, holder) in [
        ("hook-secret-2", format!("GitLab integration {id}")),
        (support::GITLAB_SECRET, "GITLAB_WEBHOOK_SECRET".to_string()),
    ] {
        let (status, answer) = post(
            &app,
            &admin,
            &json!({"base_url": gitlab.url, "token": "glpat-group-token", "webhook_secret": taken}),
        )
        .await;
        assert_eq!(status, 409, "{answer}");
        assert_eq!(answer["error"]["code"], "webhook_secret_in_use");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(&holder), "{message}");
        assert!(
            !message.contains(taken),
            "the secret is never echoed: {message}"
        );
        assert_eq!(app.store.list_integrations().await.unwrap().len(), 1);
    }
    let other = json!({
        "base_url": gitlab.url,
        "token": "glpat-group-token",
        "webhook_secret": "group-secret",
    });
    let (status, answer) = post(&app, &admin, &other).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["created"], true);
    assert_ne!(answer["id"], id);
    assert_eq!(app.store.list_integrations().await.unwrap().len(), 2);
    let still = app
        .gitlab_with_token("Push Hook", "still-secret-2", &push, Some("hook-secret-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 202);
    app.stop().await;
}

async fn graft(args: &[&str], app: &TestApp, token: &str) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .env("GRAFT_URL", &app.base)
        .env("GRAFT_TOKEN", token)
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

async fn cli_connect_checks_the_token_and_prints_the_webhook(db: TestDb) {
    let gitlab = FakeGitlab::start().await;
    let app = TestApp::start(&db, default_settings(), None).await;
    let admin = app.create_token("admin").await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad-token");
    std::fs::write(&bad, "glpat-not-a-token\n").unwrap();
    let (ok, _, stderr) = graft(
        &[
            "gitlab",
            "connect",
            "--url",
            &gitlab.url,
            "--token-file",
            bad.to_str().unwrap(),
        ],
        &app,
        &admin,
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("rejected the token"), "{stderr}");
    assert!(!stderr.contains("glpat-not-a-token"), "{stderr}");
    assert!(app.store.list_integrations().await.unwrap().is_empty());

    let good = dir.path().join("token");
    std::fs::write(&good, format!("{}\n", support::fake_gitlab::BOT_TOKEN)).unwrap();
    let (ok, stdout, stderr) = graft(
        &[
            "gitlab",
            "connect",
            "--url",
            &gitlab.url,
            "--token-file",
            good.to_str().unwrap(),
        ],
        &app,
        &admin,
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&format!("as @{BOT_USERNAME}")), "{stdout}");
    assert!(
        stdout.contains(&format!("{}/webhooks/gitlab", app.base)),
        "{stdout}"
    );
    let secret = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Secret token:"))
        .expect("secret printed")
        .trim()
        .to_string();
    assert_eq!(secret.len(), 64);
    // The printed secret is the one graft accepts from GitLab.
    let sealed: String = sqlx::query_scalar("SELECT webhook_secret_sealed FROM integrations")
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    let opened = support::test_keyring().open(&sealed).unwrap();
    assert_eq!(secrecy::ExposeSecret::expose_secret(&opened), secret);

    let (ok, _, stderr) = graft(
        &[
            "gitlab",
            "connect",
            "--url",
            &gitlab.url,
            "--token-file",
            "/nonexistent",
        ],
        &app,
        &admin,
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("/nonexistent"), "{stderr}");
    app.stop().await;
}

async fn plain_http_base_urls_need_the_operators_leave(db: TestDb) {
    let gitlab = FakeGitlab::start().await;
    gitlab.add_token("glpat-ok", BOT_USERNAME, &["api"]);
    let body = json!({"base_url": gitlab.url, "token": "glpat-ok", "webhook_secret": "s"});
    let strict = graft::app::AppSettings {
        allow_http_gitlab: false,
        ..default_settings()
    };
    let app = TestApp::start(&db, strict, None).await;
    let admin = app.create_token("admin").await;
    let (status, answer) = post(&app, &admin, &body).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_field");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("base_url")
            && message.contains("https://")
            && message.contains("GRAFT_ALLOW_HTTP_GITLAB=true"),
        "{message}"
    );
    assert!(gitlab.requests().is_empty(), "the token was not sent");
    assert!(app.store.list_integrations().await.unwrap().is_empty());
    app.stop().await;

    // With the operator's leave (as every other test here has it).
    let app = TestApp::start(&db, default_settings(), None).await;
    let admin = app.create_token("admin-2").await;
    let (status, answer) = post(&app, &admin, &body).await;
    assert_eq!(status, 201, "{answer}");
    app.stop().await;
}

/// A loopback server standing in for a base_url that is not GitLab (or a
/// GitLab gone wrong): `answer` makes every response; the `PRIVATE-TOKEN`
/// of each request is recorded.
async fn odd_server(
    answer: impl Fn(&str) -> axum::response::Response + Clone + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let router = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let log = log.clone();
        let answer = answer.clone();
        async move {
            log.lock().unwrap().push(
                request
                    .headers()
                    .get("private-token")
                    .map(|v| v.to_str().unwrap().to_string()),
            );
            answer(request.uri().path())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.ok() });
    (url, seen)
}

async fn remote_answers_are_not_relayed(db: TestDb) {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let mut settings = default_settings();
    settings.operator.public_url = Some("https://graft.example.com".into());
    let app = TestApp::start(&db, settings, None).await;
    let admin = app.create_token("admin").await;
    let secret = "INTERNAL-root:x:0:0";
    let answers: Vec<(StatusCode, String)> = vec![
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"message": secret}).to_string(),
        ),
        (
            StatusCode::BAD_REQUEST,
            json!({"message": {"field": [secret]}}).to_string(),
        ),
        (
            StatusCode::IM_A_TEAPOT,
            json!({"error": secret}).to_string(),
        ),
        (StatusCode::OK, format!("<html>{secret}</html>")),
        // Parses as JSON, but not as GitLab's: serde would quote the value.
        (
            StatusCode::OK,
            json!({"username": 31337, "scopes": secret}).to_string(),
        ),
    ];
    for (code, text) in answers {
        let (url, _) = odd_server(move |_| (code, text.clone()).into_response()).await;
        let (status, answer) = post(
            &app,
            &admin,
            &json!({"base_url": url, "token": "glpat-x", "webhook_secret": "s"}),
        )
        .await;
        assert!(status == 502 || status == 422, "{code}: {status} {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("INTERNAL") && !message.contains("31337"),
            "{code}: {message}"
        );
        assert!(
            message.contains("GitLab") && !message.contains("glpat-x"),
            "{code}: {message}"
        );
    }
    assert!(app.store.list_integrations().await.unwrap().is_empty());

    // A GitLab whose token works but whose hook API answers with text of
    // its own: the hook's error says what failed, without that text.
    let (url, _) = odd_server(move |path| match path {
        "/api/v4/personal_access_tokens/self" => {
            axum::Json(json!({"scopes": ["api"], "active": true})).into_response()
        }
        "/api/v4/user" => axum::Json(json!({"id": 1, "username": "bot"})).into_response(),
        _ => (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": secret}).to_string(),
        )
            .into_response(),
    })
    .await;
    let (status, answer) = post(
        &app,
        &admin,
        &json!({"base_url": url, "token": "glpat-x", "webhook_secret": "s",
                "hooks": ["infra/live"]}),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["hooks"][0]["status"], "failed", "{answer}");
    assert!(!answer.to_string().contains("INTERNAL"), "{answer}");
    app.stop().await;
}

async fn the_token_is_not_sent_where_a_redirect_points(db: TestDb) {
    use axum::response::{IntoResponse, Redirect};
    let (elsewhere, seen_elsewhere) = odd_server(|_| {
        axum::Json(json!({"id": 1, "username": "bot", "scopes": ["api"]})).into_response()
    })
    .await;
    let (url, seen) =
        odd_server(move |path| Redirect::permanent(&format!("{elsewhere}{path}")).into_response())
            .await;
    let app = TestApp::start(&db, default_settings(), None).await;
    let admin = app.create_token("admin").await;
    let (status, answer) = post(
        &app,
        &admin,
        &json!({"base_url": url, "token": "glpat-REDIRECTED", "webhook_secret": "s"}),
    )
    .await;
    assert_eq!(status, 502, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("redirect"), "{message}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(
        seen_elsewhere.lock().unwrap().is_empty(),
        "the other host never saw a request, let alone the token"
    );
    assert!(app.store.list_integrations().await.unwrap().is_empty());
    app.stop().await;
}

both_backends!(
    bad_tokens_are_refused_with_the_reason,
    webhooks_are_created_once_and_need_maintainer,
    cli_connect_checks_the_token_and_prints_the_webhook,
    plain_http_base_urls_need_the_operators_leave,
    remote_answers_are_not_relayed,
    the_token_is_not_sent_where_a_redirect_points,
);
