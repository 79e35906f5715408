//! Webhook intake (SPEC §3): authentication before parsing, dedupe,
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
        let (status, code, _) = error_of(response).await;
        assert_eq!((status, code.as_str()), (401, "bad_signature"), "{case}");
    }
    assert_nothing_stored(&app).await;
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

async fn body_over_the_limit_is_refused(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let mut body = b"{\"zen\":\"".to_vec();
    body.resize(graft::http::BODY_LIMIT + 1, b'a');
    body.extend_from_slice(b"\"}");
    let response = app
        .github("ping", &random_delivery_id(), &body)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (413, "body_too_large"));
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

async fn concurrent_duplicates_store_one_delivery_and_one_job(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let body = fixture("github/push.json");
    let sends: Vec<_> = (0..8)
        .map(|_| tokio::spawn(app.github("push", "same-delivery", &body).send()))
        .collect();
    let mut statuses = Vec::new();
    for send in sends {
        let response = send.await.unwrap().unwrap();
        assert_eq!(response.status(), 202);
        statuses.push(
            response.json::<Value>().await.unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| *s == "queued").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| *s == "duplicate").count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(app.store.delivery_count().await.unwrap(), 1);
    assert_eq!(
        app.store.job_counts().await.unwrap(),
        vec![("queued".to_string(), 1)]
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
    let delivery = eventually("delivery processed", Duration::from_secs(10), || async {
        let d = app.store.delivery(id).await.unwrap().unwrap();
        (d.status == DeliveryStatus::Processed).then_some(d)
    })
    .await;
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
    let delivery = eventually("redelivery processed", Duration::from_secs(10), || async {
        let d = app.store.delivery(id).await.unwrap().unwrap();
        (d.status == DeliveryStatus::Processed).then_some(d)
    })
    .await;
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

async fn metrics_count_deliveries_by_outcome_and_queue_depth(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let body = fixture("github/ping.json");
    app.github("ping", "p-1", &body).send().await.unwrap();
    app.github_unsigned("ping", "p-2", &body)
        .send()
        .await
        .unwrap();
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"graft_webhook_deliveries_total{provider="github",event="ping",outcome="accepted"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"graft_webhook_deliveries_total{provider="github",event="-",outcome="unauthorized"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"graft_job_queue_depth{state="queued"} 1"#),
        "{text}"
    );
    app.stop().await;
}

both_backends!(
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
