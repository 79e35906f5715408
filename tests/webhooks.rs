//! Webhook intake: authentication before parsing, dedupe,
//! persistence with the processing job, 202, and what bad input gets.

mod support;

use std::time::Duration;

use graft::store::deliveries::DeliveryStatus;
use serde_json::Value;
use support::webhooks::random_delivery_id;
use support::{TestApp, TestDb, default_settings, eventually, fixture};

/// Nothing was stored: no delivery, no job.
async fn assert_nothing_stored(app: &TestApp) {
    assert_eq!(
        app.store.delivery_count().await.unwrap(),
        0,
        "a delivery was stored"
    );
    assert!(
        app.store.job_counts().await.unwrap().is_empty(),
        "a job was queued"
    );
}

/// Waits until delivery `id` reaches `status` and returns it.
async fn delivery_reaches(
    app: &TestApp,
    id: i64,
    status: DeliveryStatus,
    timeout: Duration,
) -> graft::store::deliveries::Delivery {
    eventually(&format!("delivery {id} {status:?}"), timeout, || async {
        let d = app.store.delivery(id).await.unwrap().unwrap();
        (d.status == status).then_some(d)
    })
    .await
}

async fn error_of(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("JSON error body");
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

async fn github_signature_failures(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let body = fixture("github/push.json");
    let id = random_delivery_id();
    let cases: Vec<(&str, reqwest::RequestBuilder, &str)> = vec![
        (
            "missing",
            app.github_unsigned("push", &id, &body),
            "missing X-Hub-Signature-256",
        ),
        (
            "garbled",
            app.github_unsigned("push", &id, &body)
                .header("X-Hub-Signature-256", "sha256=nothex"),
            "malformed",
        ),
        (
            "sha1 instead of sha256",
            app.github_unsigned("push", &id, &body).header(
                "X-Hub-Signature-256",
                "sha1=0123456789abcdef0123456789abcdef01234567",
            ),
            "malformed",
        ),
        (
            "wrong secret",
            app.github_unsigned("push", &id, &body).header(
                "X-Hub-Signature-256",
                graft::signature::github_signature("not-the-secret", &body),
            ),
            "does not match",
        ),
        (
            "signature of another body",
            app.github_unsigned("push", &id, &body).header(
                "X-Hub-Signature-256",
                graft::signature::github_signature(support::GITHUB_SECRET, b"{}"),
            ),
            "does not match",
        ),
    ];
    for (case, request, expected) in cases {
        let (status, code, message) = error_of(request.send().await.unwrap()).await;
        assert_eq!(status, 401, "{case}");
        assert_eq!(code, "bad_signature", "{case}");
        assert!(message.contains(expected), "{case}: {message}");
        assert!(
            !message.contains(support::GITHUB_SECRET),
            "{case}: secret leaked"
        );
    }
    assert_nothing_stored(&app).await;
    app.stop().await;
}

async fn gitlab_token_failures(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let body = fixture("gitlab/push.json");
    for (case, token) in [
        ("missing", None),
        ("wrong", Some("guess")),
        ("prefix", Some("gl-webhook")),
    ] {
        let response = app
            .gitlab_with_token("Push Hook", &random_delivery_id(), &body, token)
            .send()
            .await
            .unwrap();
        let (status, code, message) = error_of(response).await;
        assert_eq!((status, code.as_str()), (401, "bad_signature"), "{case}");
        assert!(message.contains("X-Gitlab-Token"), "{case}: {message}");
        assert!(!message.contains("gl-webhook-secret"), "{case}: {message}");
    }
    assert_nothing_stored(&app).await;
    app.stop().await;
}

async fn an_unsigned_body_is_refused_before_it_is_parsed(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    // Garbage that would be a 400 if graft looked at it before checking
    // who sent it.
    let response = app
        .github_unsigned("push", &random_delivery_id(), b"{not json")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (401, "bad_signature"));
    assert_nothing_stored(&app).await;
    app.stop().await;
}

async fn unknown_actions_are_acknowledged_and_stored_as_ignored(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let mut body: serde_json::Value =
        serde_json::from_slice(&fixture("github/pull_request.opened.json")).unwrap();
    body["action"] = serde_json::json!("labeled");
    let body = serde_json::to_vec(&body).unwrap();
    let response = app
        .github("pull_request", "labeled-1", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "ignored");
    let store = app.store.clone();
    let delivery = store
        .delivery(answer["id"].as_i64().unwrap())
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        delivery.status,
        graft::store::deliveries::DeliveryStatus::Ignored
    );
    assert!(store.job_counts().await.unwrap().is_empty(), "no job");
    app.stop().await;
}

async fn unconfigured_secret_refuses_deliveries(db: TestDb) {
    let settings = graft::app::AppSettings {
        github_webhook_secrets: Vec::new(),
        ..default_settings()
    };
    let app = TestApp::start(&db, settings, None).await;
    let body = fixture("github/ping.json");
    let (status, code, message) = error_of(
        app.github("ping", &random_delivery_id(), &body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (401, "webhook_not_configured"));
    assert!(message.contains("GITHUB_WEBHOOK_SECRET"), "{message}");
    assert_nothing_stored(&app).await;
    app.stop().await;
}

/// A body declared over the limit is refused before a byte of it is read:
/// the answer comes while the client has sent only its headers.
async fn body_over_the_limit_is_refused(db: TestDb) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::start(&db, default_settings(), None).await;
    let mut stream = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: graft\r\nX-GitHub-Event: ping\r\n\
         X-GitHub-Delivery: {}\r\nContent-Type: application/json\r\n\
         X-Hub-Signature-256: sha256={}\r\nContent-Length: {}\r\n\r\n",
        random_delivery_id(),
        "0".repeat(64),
        graft::http::BODY_LIMIT + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answered without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    assert!(answer.contains("25 MiB"), "{answer}");
    assert_nothing_stored(&app).await;
    app.stop().await;
}

async fn malformed_and_misshapen_payloads_are_refused(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let cases: [(&str, &[u8], &str); 4] = [
        ("push", b"{not json", "invalid_json"),
        ("push", b"", "invalid_json"),
        (
            "push",
            br#"{"ref": 5, "before": "a", "after": "b"}"#,
            "invalid_payload",
        ),
        (
            "pull_request",
            br#"{"action": "opened", "number": 1}"#,
            "invalid_payload",
        ),
    ];
    for (event, body, expected) in cases {
        let response = app
            .github(event, &random_delivery_id(), body)
            .send()
            .await
            .unwrap();
        let (status, code, message) = error_of(response).await;
        assert_eq!(
            (status, code.as_str()),
            (400, expected),
            "{event}: {message}"
        );
        assert!(!message.is_empty());
    }
    let response = app
        .gitlab(
            "Note Hook",
            &random_delivery_id(),
            br#"{"object_kind": "note"}"#,
        )
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(response).await;
    assert_eq!(
        (status, code.as_str()),
        (400, "invalid_payload"),
        "{message}"
    );
    assert!(message.contains("missing field"), "{message}");
    assert_nothing_stored(&app).await;
    app.stop().await;
}

async fn missing_delivery_headers_are_refused(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let body = fixture("github/ping.json");
    let response = app
        .http
        .post(app.url("/webhooks/github"))
        .header("X-GitHub-Event", "ping")
        .header(
            "X-Hub-Signature-256",
            graft::signature::github_signature(support::GITHUB_SECRET, &body),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str()), (400, "missing_header"));
    assert!(message.contains("X-GitHub-Delivery"), "{message}");
    assert_nothing_stored(&app).await;
    app.stop().await;
}

async fn unknown_events_are_acknowledged_and_stored_as_ignored(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let response = app
        .github("star", "d-star", &fixture("github/star.created.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ignored");
    let stored = app
        .store
        .delivery(body["id"].as_i64().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, DeliveryStatus::Ignored);
    assert_eq!(stored.event, "star");
    let response = app
        .gitlab("Issue Hook", "gl-issue", &fixture("gitlab/issue.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ignored");
    assert!(
        app.store.job_counts().await.unwrap().is_empty(),
        "ignored events queue no job"
    );
    app.stop().await;
}

/// Sends the same delivery 8 times at once: one is queued, the rest are
/// duplicates, and one delivery and one job are stored.
async fn one_of_concurrent_duplicates_is_kept(
    app: &TestApp,
    send: impl Fn() -> reqwest::RequestBuilder,
) {
    let sends: Vec<_> = (0..8).map(|_| tokio::spawn(send().send())).collect();
    let mut statuses = Vec::new();
    for send in sends {
        let response = send.await.unwrap().unwrap();
        assert_eq!(response.status(), 202);
        let answer: Value = response.json().await.unwrap();
        statuses.push(answer["status"].as_str().unwrap().to_string());
    }
    statuses.sort();
    let mut expected = vec!["duplicate".to_string(); 7];
    expected.push("queued".to_string());
    assert_eq!(statuses, expected);
    assert_eq!(app.store.delivery_count().await.unwrap(), 1);
    assert_eq!(
        app.store.job_counts().await.unwrap(),
        vec![("queued".to_string(), 1)]
    );
}

async fn concurrent_duplicates_store_one_delivery_and_one_job(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let body = fixture("github/push.json");
    one_of_concurrent_duplicates_is_kept(&app, || app.github("push", "same-delivery", &body)).await;
    app.stop().await;
}

async fn concurrent_gitlab_duplicates_store_one_delivery_and_one_job(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let body = fixture("gitlab/push.json");
    one_of_concurrent_duplicates_is_kept(&app, || app.gitlab("Push Hook", "same-uuid", &body))
        .await;
    app.stop().await;
}

async fn a_delivery_whose_processing_gave_up_is_processed_when_redelivered(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), Some(support::fast_pool())).await;
    let body = fixture("github/installation.created.json");
    // Processing fails for real: writing the installation raises.
    support::fail_inserts_into(&app.store, "installations", true).await;
    let response = app
        .github("installation", "inst-fail", &body)
        .send()
        .await
        .unwrap();
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    // The worker retries with backoff, then gives up and says so.
    let failed = delivery_reaches(&app, id, DeliveryStatus::Failed, Duration::from_secs(30)).await;
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("installations unavailable")),
        "{failed:?}"
    );
    // GitHub's "Redeliver" (same delivery id) after the fault is gone.
    support::fail_inserts_into(&app.store, "installations", false).await;
    let response = app
        .github("installation", "inst-fail", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap()["status"],
        "requeued"
    );
    delivery_reaches(&app, id, DeliveryStatus::Processed, Duration::from_secs(10)).await;
    let payload: Value = serde_json::from_slice(&body).unwrap();
    let installation_id = payload["installation"]["id"].as_i64().unwrap();
    assert!(
        app.store
            .installation(installation_id)
            .await
            .unwrap()
            .is_some()
    );
    app.stop().await;
}

async fn deliveries_are_processed_and_redeliveries_follow_the_outcome(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), Some(support::fast_pool())).await;
    let body = fixture("github/installation.created.json");
    let response = app
        .github("installation", "inst-1", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let delivery =
        delivery_reaches(&app, id, DeliveryStatus::Processed, Duration::from_secs(10)).await;
    assert_eq!(delivery.attempts, 1);
    let payload: Value = serde_json::from_slice(&body).unwrap();
    let installation_id = payload["installation"]["id"].as_i64().unwrap();
    let installation = app
        .store
        .installation(installation_id)
        .await
        .unwrap()
        .expect("installation tracked");
    assert_eq!(
        installation.account,
        payload["installation"]["account"]["login"]
            .as_str()
            .unwrap()
    );

    // A redelivery of a processed delivery is acknowledged, not reprocessed.
    let response = app
        .github("installation", "inst-1", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<Value>().await.unwrap()["status"],
        "duplicate"
    );
    assert_eq!(app.store.delivery(id).await.unwrap().unwrap().attempts, 1);

    // A redelivery of a failed one is processed again.
    app.store
        .finish_delivery(
            id,
            DeliveryStatus::Failed,
            Some("boom"),
            graft::store::now_ms(),
        )
        .await
        .unwrap();
    let response = app
        .github("installation", "inst-1", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap()["status"],
        "requeued"
    );
    let delivery =
        delivery_reaches(&app, id, DeliveryStatus::Processed, Duration::from_secs(10)).await;
    assert_eq!(delivery.attempts, 3, "processed, failed, processed again");
    assert_eq!(delivery.error, None);
    app.stop().await;
}

async fn installation_repositories_are_tracked(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), Some(support::fast_pool())).await;
    let added = fixture("github/installation_repositories.added.json");
    let payload: Value = serde_json::from_slice(&added).unwrap();
    let installation_id = payload["installation"]["id"].as_i64().unwrap();
    let repo = payload["repositories_added"][0]["full_name"]
        .as_str()
        .unwrap()
        .to_string();
    app.github("installation_repositories", "ir-1", &added)
        .send()
        .await
        .unwrap();
    eventually("repository tracked", Duration::from_secs(10), || async {
        app.store
            .installation_for_repo(&repo)
            .await
            .unwrap()
            .filter(|id| *id == installation_id)
    })
    .await;
    let deleted = fixture("github/installation.deleted.json");
    let deleted_id = serde_json::from_slice::<Value>(&deleted).unwrap()["installation"]["id"]
        .as_i64()
        .unwrap();
    app.store
        .upsert_installation(deleted_id, "someone", 1)
        .await
        .unwrap();
    app.github("installation", "inst-del", &deleted)
        .send()
        .await
        .unwrap();
    eventually("installation removed", Duration::from_secs(10), || async {
        app.store
            .installation(deleted_id)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    app.stop().await;
}

async fn gitlab_deliveries_dedupe_on_uuid_then_idempotency_key(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let body = fixture("gitlab/push.json");
    let first = app
        .gitlab("Push Hook", "uuid-1", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(first.json::<Value>().await.unwrap()["status"], "queued");
    let again = app
        .gitlab("Push Hook", "uuid-1", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(again.json::<Value>().await.unwrap()["status"], "duplicate");
    let keyed = || {
        app.http
            .post(app.url("/webhooks/gitlab"))
            .header("X-Gitlab-Event", "Push Hook")
            .header("X-Gitlab-Token", support::GITLAB_SECRET)
            .header("Idempotency-Key", "idem-7")
            .body(body.clone())
    };
    assert_eq!(
        keyed().send().await.unwrap().json::<Value>().await.unwrap()["status"],
        "queued"
    );
    assert_eq!(
        keyed().send().await.unwrap().json::<Value>().await.unwrap()["status"],
        "duplicate"
    );
    assert_eq!(app.store.delivery_count().await.unwrap(), 2);
    app.stop().await;
}

async fn gitlab_integration_secret_from_the_database_is_accepted(db: TestDb) {
    let settings = graft::app::AppSettings {
        gitlab_webhook_secrets: Vec::new(),
        ..default_settings()
    };
    let app = TestApp::start(&db, settings, None).await;
    let token = app.create_token("admin").await;
    // graft checks the token with GitLab before storing it.
    let gitlab = support::fake_gitlab::FakeGitlab::start().await;
    gitlab.add_token("glpat-abc", support::fake_gitlab::BOT_USERNAME, &["api"]);
    let created = app
        .http
        .post(app.url("/api/v1/integrations/gitlab"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "base_url": format!("{}/", gitlab.url),
            "token": "glpat-abc",
            "webhook_secret": "stored-secret"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let body = fixture("gitlab/merge_request.open.json");
    let ok = app
        .gitlab_with_token("Merge Request Hook", "mr-1", &body, Some("stored-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    let bad = app
        .gitlab_with_token("Merge Request Hook", "mr-2", &body, Some("glpat-abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401, "the API token is not a webhook secret");
    app.stop().await;
}

async fn the_environment_secret_overrides_the_stored_apps(db: TestDb) {
    // default_settings() has GITHUB_WEBHOOK_SECRET = GITHUB_SECRET.
    let app = TestApp::start(&db, default_settings(), None).await;
    let keyring = support::test_keyring();
    app.store
        .save_github_app(
            &graft::store::operator::NewGithubApp {
                app_id: "42",
                slug: "graft-test",
                api_url: "https://api.github.com",
                private_key_sealed: &keyring.seal("-----BEGIN RSA PRIVATE KEY-----").unwrap(),
                webhook_secret_sealed: Some(&keyring.seal("stored-app-secret").unwrap()),
            },
            graft::store::now_ms(),
        )
        .await
        .unwrap();
    let body = fixture("github/ping.json");
    let stored = app
        .github_unsigned("ping", "signed-by-stored", &body)
        .header(
            "X-Hub-Signature-256",
            graft::signature::github_signature("stored-app-secret", &body),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        stored.status(),
        401,
        "GITHUB_WEBHOOK_SECRET replaces the stored secret"
    );
    let env = app
        .github("ping", "signed-by-env", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(env.status(), 202);
    app.stop().await;
}

/// Reconcile jobs queued for `project`.
async fn reconciles_of(app: &TestApp, project: graft::ids::ProjectId) -> i64 {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE kind = 'reconcile' AND project_id = $1")
            .bind(project)
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    n
}

async fn a_gitlab_secret_speaks_only_for_its_own_integration(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), Some(support::fast_pool())).await;
    let token = app.create_token("admin").await;
    let gitlab = support::fake_gitlab::FakeGitlab::start().await;
    gitlab.add_token("glpat-abc", support::fake_gitlab::BOT_USERNAME, &["api"]);
    let created: serde_json::Value = app
        .http
        .post(app.url("/api/v1/integrations/gitlab"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "base_url": gitlab.url, "token": "glpat-abc", "webhook_secret": "secret-of-a"
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let integration = created["id"].as_i64().expect("an integration id");
    // The same repository path on two GitLab instances: the default one
    // (GITLAB_URL, GITLAB_WEBHOOK_SECRET) and integration A.
    let project = |integration_id| graft::store::projects::NewProject {
        provider: graft::ids::Provider::Gitlab,
        integration_id,
        repo: "mike/diaspora".into(),
        branch: "master".into(),
        base_path: String::new(),
        kind: graft::store::projects::Kind::Iac,
        mode: graft::store::projects::Mode::PullRequest,
        auto_sync: true,
        auto_merge: false,
        sync_branch: None,
        commit_via: Default::default(),
    };
    let now = graft::store::now_ms();
    let on_a = app
        .store
        .create_project(&project(Some(integration)), now)
        .await
        .unwrap();
    let on_default = app.store.create_project(&project(None), now).await.unwrap();
    let body = fixture("gitlab/push.json");
    let processed = |id: &'static str| {
        let store = app.store.clone();
        async move {
            support::eventually(
                "delivery processed",
                std::time::Duration::from_secs(10),
                || {
                    let store = store.clone();
                    async move {
                        let rows: Vec<(String,)> = sqlx::query_as(
                            "SELECT status FROM webhook_deliveries WHERE delivery_id = $1",
                        )
                        .bind(id)
                        .fetch_all(store.pool())
                        .await
                        .unwrap();
                        (rows.first().map(|r| r.0.as_str()) == Some("processed")).then_some(())
                    }
                },
            )
            .await
        }
    };
    let a = app
        .gitlab_with_token("Push Hook", "push-a", &body, Some("secret-of-a"))
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 202);
    processed("push-a").await;
    assert_eq!(
        (
            reconciles_of(&app, on_a.id).await,
            reconciles_of(&app, on_default.id).await
        ),
        (1, 0),
        "integration A's secret reaches only A's project"
    );
    let default = app
        .gitlab("Push Hook", "push-default", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(default.status(), 202);
    processed("push-default").await;
    assert_eq!(
        (
            reconciles_of(&app, on_a.id).await,
            reconciles_of(&app, on_default.id).await
        ),
        (1, 1)
    );
    app.stop().await;
}

async fn metrics_count_deliveries_by_outcome_and_queue_depth(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let body = fixture("github/ping.json");
    app.github("ping", "p-1", &body).send().await.unwrap();
    app.github("ping", "p-1", &body).send().await.unwrap();
    app.github_unsigned("ping", "p-2", &body)
        .send()
        .await
        .unwrap();
    // An unauthenticated request names whatever event it likes.
    app.github_unsigned("made-up-event-name", "p-3", &body)
        .send()
        .await
        .unwrap();
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8",
        "the Prometheus text format unless OpenMetrics is asked for"
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains("# TYPE graft_webhook_deliveries_total counter\n") && !text.contains("# EOF"),
        "{text}"
    );
    let scraper = app
        .http
        .get(app.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(
        scraper.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    let openmetrics = scraper.text().await.unwrap();
    assert!(
        openmetrics.contains("# TYPE graft_webhook_deliveries counter\n")
            && openmetrics.ends_with("# EOF\n"),
        "{openmetrics}"
    );
    let deliveries = |event: &str, outcome: &str| {
        support::metric_value(
            &text,
            &format!(
                r#"graft_webhook_deliveries_total{{provider="github",event="{event}",outcome="{outcome}"}}"#
            ),
        )
    };
    assert_eq!(deliveries("ping", "queued"), Some(1.0), "{text}");
    assert_eq!(deliveries("ping", "duplicate"), Some(1.0), "{text}");
    assert_eq!(deliveries("-", "unauthorized"), Some(2.0), "{text}");
    assert!(!text.contains("made-up-event-name"), "{text}");
    assert!(
        text.contains(r#"graft_job_queue_depth{state="queued"} 1"#),
        "{text}"
    );
    app.stop().await;
}

both_backends!(
    the_environment_secret_overrides_the_stored_apps,
    concurrent_gitlab_duplicates_store_one_delivery_and_one_job,
    a_delivery_whose_processing_gave_up_is_processed_when_redelivered,
    a_gitlab_secret_speaks_only_for_its_own_integration,
    an_unsigned_body_is_refused_before_it_is_parsed,
    unknown_actions_are_acknowledged_and_stored_as_ignored,
    github_signature_failures,
    gitlab_token_failures,
    unconfigured_secret_refuses_deliveries,
    body_over_the_limit_is_refused,
    malformed_and_misshapen_payloads_are_refused,
    missing_delivery_headers_are_refused,
    unknown_events_are_acknowledged_and_stored_as_ignored,
    concurrent_duplicates_store_one_delivery_and_one_job,
    deliveries_are_processed_and_redeliveries_follow_the_outcome,
    installation_repositories_are_tracked,
    gitlab_deliveries_dedupe_on_uuid_then_idempotency_key,
    gitlab_integration_secret_from_the_database_is_accepted,
    metrics_count_deliveries_by_outcome_and_queue_depth,
);
