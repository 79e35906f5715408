//! API authentication, integrations (secrets sealed at rest), health and
//! readiness, key rotation.

mod support;

use graft::app::AppSettings;
use graft::crypto::{Key, generate_key_text};
use graft::store::now_ms;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use support::fake_gitlab::{self, FakeGitlab};
use support::{TestApp, TestDb, default_settings};

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

fn integration_body(gitlab: &FakeGitlab) -> Value {
    gitlab.add_token("glpat-SECRET-123", fake_gitlab::BOT_USERNAME, &["api"]);
    json!({ "base_url": gitlab.url, "token": "glpat-SECRET-123", "webhook_secret": "hook-SECRET" })
}

async fn api_requires_a_valid_unrevoked_token(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let url = app.url("/api/v1/integrations/gitlab");
    let (status, code, message) = error_of(app.http.get(&url).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    assert!(message.contains("graft token create"), "{message}");

    let (status, _, message) = error_of(
        app.http
            .get(&url)
            .header("Authorization", "Basic abc")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(message.contains("Bearer"), "{message}");

    let (status, _, message) = error_of(
        app.http
            .get(&url)
            .bearer_auth("graft_nope")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert!(message.contains("unknown or revoked"), "{message}");

    let token = app.create_token("generator").await;
    let ok = app.http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(ok.status(), 200);

    assert!(app.store.revoke_token("generator", now_ms()).await.unwrap());
    let revoked = app.http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(revoked.headers().get("www-authenticate").unwrap(), "Bearer");
    let (status, _, message) = error_of(revoked).await;
    assert_eq!(status, 401);
    assert!(message.contains("revoked"), "{message}");
    // A rejected request created nothing.
    let posted = app
        .http
        .post(&url)
        .bearer_auth(&token)
        .json(
            &json!({"base_url": "https://gitlab.example.com", "token": "t", "webhook_secret": "s"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 401);
    assert!(app.store.list_integrations().await.unwrap().is_empty());
    app.stop().await;
}

async fn tokens_are_stored_hashed_and_names_are_unique_while_active(db: TestDb) {
    let store = db.store().await;
    let (_, token) = store.create_token("ci", 1).await.unwrap();
    assert!(token.starts_with("graft_") && token.len() > 40);
    let rows: Vec<(String,)> = sqlx::query_as("SELECT token_hash FROM api_tokens")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_ne!(rows[0].0, token);
    assert!(!rows[0].0.contains(&token[6..]));
    let duplicate = store.create_token("ci", 2).await.unwrap_err().to_string();
    assert!(duplicate.contains("revoke it first"), "{duplicate}");
    assert!(store.revoke_token("ci", 3).await.unwrap());
    assert!(
        !store.revoke_token("ci", 4).await.unwrap(),
        "nothing left to revoke"
    );
    store
        .create_token("ci", 5)
        .await
        .expect("the name is free again after revocation");
}

async fn integration_secrets_are_sealed_and_never_returned(db: TestDb) {
    let gitlab = FakeGitlab::start().await;
    let app = TestApp::start(&db, default_settings(), None).await;
    let token = app.create_token("admin").await;
    let url = app.url("/api/v1/integrations/gitlab");
    let created = app
        .http
        .post(&url)
        .bearer_auth(&token)
        .json(&integration_body(&gitlab))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let text = created.text().await.unwrap();
    assert!(!text.contains("SECRET"), "{text}");
    let listed = app
        .http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !listed.contains("SECRET") && !listed.contains("v1:"),
        "{listed}"
    );
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["integrations"][0]["has_token"], true);

    let (sealed_token, sealed_secret): (String, String) =
        sqlx::query_as("SELECT token_sealed, webhook_secret_sealed FROM integrations")
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    for sealed in [&sealed_token, &sealed_secret] {
        assert!(
            sealed.starts_with("v1:") && !sealed.contains("SECRET"),
            "{sealed}"
        );
    }
    let ring = support::test_keyring();
    assert_eq!(
        ring.open(&sealed_token).unwrap().expose_secret(),
        "glpat-SECRET-123"
    );
    app.stop().await;
}

async fn bad_integration_requests_are_4xx_and_store_nothing(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let token = app.create_token("admin").await;
    let url = app.url("/api/v1/integrations/gitlab");
    let cases = [
        (
            json!({"base_url": "ftp://x", "token": "t", "webhook_secret": "s"}),
            422,
            "base_url",
        ),
        (
            json!({"base_url": "https://u:p@x", "token": "t", "webhook_secret": "s"}),
            422,
            "base_url",
        ),
        (
            json!({"base_url": "https://x", "token": " ", "webhook_secret": "s"}),
            422,
            "token",
        ),
        (
            json!({"base_url": "https://x", "token": "t"}),
            422,
            "webhook_secret",
        ),
        (
            json!({"base_url": "https://x", "token": "t", "webhook_secret": "s", "extra": 1}),
            422,
            "extra",
        ),
    ];
    for (body, status, field) in cases {
        let (got, _, message) = error_of(
            app.http
                .post(&url)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(got, status, "{body}: {message}");
        assert!(message.contains(field), "{body}: {message}");
    }
    let (got, code, _) = error_of(
        app.http
            .post(&url)
            .bearer_auth(&token)
            .header("Content-Type", "application/json")
            .body("{oops")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((got, code.as_str()), (400, "invalid_json"));
    assert!(app.store.list_integrations().await.unwrap().is_empty());
    app.stop().await;
}

async fn without_an_encryption_key_secrets_are_refused_but_graft_serves(db: TestDb) {
    let settings = AppSettings {
        keyring: None,
        ..default_settings()
    };
    let app = TestApp::start(&db, settings, None).await;
    let token = app.create_token("admin").await;
    let gitlab = FakeGitlab::start().await;
    let response = app
        .http
        .post(app.url("/api/v1/integrations/gitlab"))
        .bearer_auth(&token)
        .json(&integration_body(&gitlab))
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(response).await;
    assert_eq!((status, code.as_str()), (503, "encryption_key_missing"));
    assert!(
        message.contains("ENCRYPTION_KEY") && message.contains("graft keys generate"),
        "{message}"
    );
    assert!(app.store.list_integrations().await.unwrap().is_empty());
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}

async fn readiness_reflects_migrations(db: TestDb) {
    // Connected but not migrated: not ready.
    let bare = graft::store::Store::connect(&db.url).await.unwrap();
    assert!(!bare.ready().await.unwrap());
    bare.migrate().await.unwrap();
    assert!(bare.ready().await.unwrap());
    let app = TestApp::start(&db, default_settings(), None).await;
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let unknown = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(error_of(unknown).await.0, 404);
    app.stop().await;
}

fn key(text: &str) -> Key {
    Key::parse(&SecretString::from(text.to_string())).unwrap()
}

/// A GitLab integration whose token and webhook secret are sealed with `key`.
async fn store_sealed(store: &graft::store::Store, name: &str, key: &Key) {
    store
        .create_integration(
            &graft::store::integrations::NewIntegration {
                provider: "gitlab",
                name,
                base_url: "https://gitlab.example.com",
                token_sealed: Some(&key.seal(&format!("token-{name}")).unwrap()),
                webhook_secret_sealed: Some(&key.seal("hook").unwrap()),
            },
            1,
        )
        .await
        .unwrap();
}

async fn key_rotation_is_all_or_nothing(db: TestDb) {
    let store = db.store().await;
    let old = key(&generate_key_text().unwrap());
    let new = key(&generate_key_text().unwrap());
    let stranger = key(&generate_key_text().unwrap());
    for name in ["a", "b"] {
        store_sealed(&store, name, &old).await;
    }
    let before = store.sealed_fields(None).await.unwrap();

    let wrong = graft::cli::keys::rotate(&store, &stranger, &new, 2)
        .await
        .unwrap_err();
    assert!(wrong.to_string().contains("Nothing was changed"), "{wrong}");
    assert_eq!(
        store.sealed_fields(None).await.unwrap(),
        before,
        "a wrong old key changes nothing"
    );

    let report = graft::cli::keys::rotate(&store, &old, &new, 3)
        .await
        .unwrap();
    assert_eq!((report.resealed, report.already_current), (4, 0));
    let after = store.sealed_fields(None).await.unwrap();
    assert_eq!(
        new.open(&after[0].sealed).unwrap().expose_secret(),
        "token-a"
    );
    assert!(old.open(&after[0].sealed).is_err());

    let again = graft::cli::keys::rotate(&store, &old, &new, 4)
        .await
        .unwrap();
    assert_eq!(
        (again.resealed, again.already_current),
        (0, 4),
        "a second run is harmless"
    );
}

async fn a_rotation_that_fails_part_way_changes_nothing(db: TestDb) {
    let store = db.store().await;
    let old = key(&generate_key_text().unwrap());
    let new = key(&generate_key_text().unwrap());
    let stranger = key(&generate_key_text().unwrap());
    // `a` can be re-sealed; `b`, stored later under some other key, cannot:
    // the rotation gets as far as `b` before it fails.
    store_sealed(&store, "a", &old).await;
    store_sealed(&store, "b", &stranger).await;
    let before = store.sealed_fields(None).await.unwrap();
    let error = graft::cli::keys::rotate(&store, &old, &new, 2)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Nothing was changed"), "{error}");
    let after = store.sealed_fields(None).await.unwrap();
    assert_eq!(after, before, "`a` was rolled back with the rest");
    assert_eq!(
        old.open(&after[0].sealed).unwrap().expose_secret(),
        "token-a"
    );
}

both_backends!(
    a_rotation_that_fails_part_way_changes_nothing,
    api_requires_a_valid_unrevoked_token,
    tokens_are_stored_hashed_and_names_are_unique_while_active,
    integration_secrets_are_sealed_and_never_returned,
    bad_integration_requests_are_4xx_and_store_nothing,
    without_an_encryption_key_secrets_are_refused_but_graft_serves,
    readiness_reflects_migrations,
    key_rotation_is_all_or_nothing,
);
