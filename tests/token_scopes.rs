//! Token scopes: a `generator` token reads and writes the files of its own
//! projects and queues their syncs, and nothing else (no projects,
//! integrations, dashboard or set-up; other projects look missing);
//! `graft token create` makes scoped tokens; tokens made before scopes
//! existed are admins.

mod support;

use std::process::Command;

use graft::store::now_ms;
use graft::store::tokens::{TokenAccess, TokenScope};
use reqwest::Method;
use serde_json::{Value, json};
use support::ui::{client, cookie_pair, create_project, form, input_value, login, set_cookie};
use support::{TestApp, TestDb, default_settings};

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .http
        .request(method, app.url(&format!("/api/v1{path}")))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn generator_token(app: &TestApp, name: &str, projects: &[graft::ids::ProjectId]) -> String {
    let access = TokenAccess::new(TokenScope::Generator, projects).unwrap();
    app.store
        .create_scoped_token(name, &access, now_ms())
        .await
        .unwrap()
        .1
}

fn files_body() -> Value {
    json!({"files": [{"path": "main.tf", "content": "# generated\n"}]})
}

async fn generator_tokens_reach_only_their_projects_files(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let own = create_project(&app, "acme/own").await.id;
    let other = create_project(&app, "acme/other").await.id;
    let admin = app.create_token("admin").await;
    let generator = generator_token(&app, "tf-gen", &[own]).await;

    // What a generator is for: its project's files, state, syncs, log.
    let allowed: Vec<(Method, String, Option<Value>, u16)> = vec![
        (Method::GET, format!("/projects/{own}"), None, 200),
        (
            Method::PUT,
            format!("/projects/{own}/files"),
            Some(files_body()),
            200,
        ),
        (Method::GET, format!("/projects/{own}/files"), None, 200),
        (
            Method::PUT,
            format!("/projects/{own}/files/extra.tf"),
            Some(json!({"content": "x"})),
            200,
        ),
        (
            Method::GET,
            format!("/projects/{own}/files/extra.tf"),
            None,
            200,
        ),
        (
            Method::DELETE,
            format!("/projects/{own}/files/extra.tf"),
            None,
            200,
        ),
        (Method::POST, format!("/projects/{own}/sync"), None, 202),
        (Method::GET, format!("/projects/{own}/events"), None, 200),
    ];
    for (method, path, body, expected) in allowed {
        let (status, answer) = call(&app, &generator, method.clone(), &path, body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
    }
    let (_, listed) = call(&app, &generator, Method::GET, "/projects", None).await;
    let ids: Vec<graft::ids::ProjectId> = listed["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| graft::ids::ProjectId(p["id"].as_i64().unwrap()))
        .collect();
    assert_eq!(ids, vec![own], "a generator lists only its projects");
    let (_, listed) = call(&app, &admin, Method::GET, "/projects", None).await;
    assert_eq!(listed["projects"].as_array().unwrap().len(), 2);
    let (_, events) = call(
        &app,
        &admin,
        Method::GET,
        &format!("/projects/{own}/events"),
        None,
    )
    .await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "token:tf-gen"),
        "{events}"
    );

    // Everything an admin does is refused, and nothing happens.
    let admin_only: Vec<(Method, &str, Option<Value>)> = vec![
        (
            Method::POST,
            "/projects",
            Some(
                json!({"provider": "github", "repo": "acme/new", "branch": "main",
                        "kind": "iac", "mode": "pull_request"}),
            ),
        ),
        (Method::GET, "/integrations/gitlab", None),
        (
            Method::POST,
            "/integrations/gitlab",
            Some(
                json!({"base_url": "https://gitlab.example.com", "token": "t",
                        "webhook_secret": "s"}),
            ),
        ),
    ];
    for (method, path, body) in admin_only {
        let (status, answer) = call(&app, &generator, method.clone(), path, body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("this token's scope (generator)") && message.contains("admin"),
            "{message}"
        );
    }
    assert_eq!(app.store.list_projects().await.unwrap().len(), 2);
    assert!(app.store.list_integrations().await.unwrap().is_empty());

    // Another project answers exactly as a project that does not exist.
    let (_, missing) = call(&app, &admin, Method::GET, "/projects/999999", None).await;
    assert_eq!(missing["error"]["message"], "project 999999 not found");
    let others: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/projects/{other}"), None),
        (Method::GET, format!("/projects/{other}/files"), None),
        (
            Method::PUT,
            format!("/projects/{other}/files"),
            Some(files_body()),
        ),
        (
            Method::GET,
            format!("/projects/{other}/files/main.tf"),
            None,
        ),
        (
            Method::PUT,
            format!("/projects/{other}/files/main.tf"),
            Some(json!({"content": "x"})),
        ),
        (
            Method::DELETE,
            format!("/projects/{other}/files/main.tf"),
            None,
        ),
        (Method::POST, format!("/projects/{other}/sync"), None),
        (Method::GET, format!("/projects/{other}/events"), None),
    ];
    for (method, path, body) in others {
        let (status, answer) = call(&app, &generator, method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert_eq!(
            answer,
            json!({"error": {"code": "not_found", "message": format!("project {other} not found")}}),
            "{method} {path}"
        );
    }
    assert!(app.store.files(other).await.unwrap().is_empty());
    assert!(
        app.store
            .list_events(Some(other), 100)
            .await
            .unwrap()
            .iter()
            .all(|e| !e.actor.contains("tf-gen")),
        "nothing was done to the other project"
    );
    app.stop().await;
}

/// `discovery` is the label adopt gives files taken from the repository:
/// a generator token may not claim it (403, nothing stored, by either
/// put); an admin token may.
async fn only_admins_label_files_discovery(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let id = create_project(&app, "acme/own").await.id;
    let admin = app.create_token("admin").await;
    let generator = generator_token(&app, "tf-gen", &[id]).await;
    let labelled =
        |path: &str| json!({"path": path, "content": "# found\n", "source": "discovery"});
    let refused: Vec<(String, Value)> = vec![
        (
            format!("/projects/{id}/files"),
            json!({"files": [{"path": "plain.tf", "content": "# plain\n"}, labelled("found.tf")]}),
        ),
        (
            format!("/projects/{id}/files/found.tf"),
            json!({"content": "# found\n", "source": "discovery"}),
        ),
    ];
    for (path, body) in refused {
        let (status, answer) = call(&app, &generator, Method::PUT, &path, Some(body)).await;
        assert_eq!(status, 403, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("`found.tf`") && message.contains("admin token"),
            "{message}"
        );
    }
    assert!(
        app.store.files(id).await.unwrap().is_empty(),
        "nothing stored"
    );
    assert!(
        app.store
            .list_events(Some(id), 100)
            .await
            .unwrap()
            .iter()
            .all(|e| !e.actor.contains("tf-gen")),
        "nothing recorded"
    );

    // `generator` stays the generator's own label.
    let (status, answer) = call(
        &app,
        &generator,
        Method::PUT,
        &format!("/projects/{id}/files/mine.tf"),
        Some(json!({"content": "# mine\n", "source": "generator"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // An admin (a discovery run on the operator's behalf) may set it.
    let (status, answer) = call(
        &app,
        &admin,
        Method::PUT,
        &format!("/projects/{id}/files"),
        Some(json!({"files": [labelled("found.tf")]})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let found = app.store.file(id, "found.tf").await.unwrap().unwrap();
    assert_eq!(found.source, graft::store::files::FileSource::Discovery);
    app.stop().await;
}

async fn the_dashboard_and_set_up_refuse_generator_tokens(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let own = create_project(&app, "acme/own").await.id;
    let generator = generator_token(&app, "tf-gen", &[own]).await;

    let http = client();
    let page = http.get(app.url("/login")).send().await.unwrap();
    let login_cookie = cookie_pair(&set_cookie(&page, "graft_login").unwrap());
    let csrf = input_value(&page.text().await.unwrap(), "csrf").unwrap();
    let refused = http
        .post(app.url("/login"))
        .header("Cookie", login_cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("token", &generator),
            ("csrf", &csrf),
            ("next", "/"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        set_cookie(&refused, "graft_session").is_none(),
        "no session for a generator token"
    );
    let html = refused.text().await.unwrap();
    assert!(html.contains("scope (generator)"), "{html}");

    for path in ["/", &format!("/projects/{own}"), "/setup/github"] {
        let response = http
            .get(app.url(path))
            .bearer_auth(&generator)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{path}");
        let html = response.text().await.unwrap();
        assert!(html.contains("scope (generator)"), "{path}: {html}");
        assert!(!html.contains("acme/own"), "{path}: {html}");
    }

    // An admin token still signs in.
    let admin = app.create_token("admin").await;
    let cookie = login(&app, &admin).await;
    let (status, _) = support::ui::get_page(&app, "/", &cookie).await;
    assert_eq!(status, 200);
    app.stop().await;
}

async fn tokens_made_before_scopes_are_admins(db: TestDb) {
    // The schema as it was before scopes (migrations up to 0005).
    let store = graft::store::Store::connect(&db.url).await.unwrap();
    let folder = match store.backend() {
        graft::store::Backend::Sqlite => "migrations/sqlite",
        graft::store::Backend::Postgres => "migrations/postgres",
    };
    let migrations =
        sqlx::migrate::Migrator::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(folder))
            .await
            .unwrap();
    let scopes = migrations
        .iter()
        .find(|m| m.description.contains("token scopes"))
        .expect("the token scopes migration")
        .version;
    migrations.run_to(scopes - 1, store.pool()).await.unwrap();
    let old = "graft_made-before-scopes";
    sqlx::query("INSERT INTO api_tokens (name, token_hash, created_at) VALUES ($1, $2, $3)")
        .bind("old-ci")
        .bind(graft::store::tokens::hash_token(old))
        .bind(1_i64)
        .execute(store.pool())
        .await
        .unwrap();
    store.close().await;

    let store = db.store().await;
    let token = store
        .authenticate_token(old, now_ms())
        .await
        .unwrap()
        .expect("the old token still works");
    assert_eq!(token.access, TokenAccess::admin());
    let (scope,): (String,) = sqlx::query_as("SELECT scope FROM api_tokens WHERE name = 'old-ci'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(scope, "admin");
    store.close().await;
}

/// The `graft` binary on `database_url`, with none of the operator's
/// settings leaking in from the test environment.
fn graft(database_url: &str, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_graft"));
    for (name, _) in std::env::vars() {
        if name.starts_with("GRAFT_") || name == "DATABASE_URL" {
            command.env_remove(name);
        }
    }
    let output = command
        .args(args)
        .env("DATABASE_URL", database_url)
        .output()
        .expect("run graft");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

async fn graft_token_create_makes_scoped_tokens(db: TestDb) {
    let store = db.store().await;
    let project = store
        .create_project(&support::ui::new_project("acme/own"), now_ms())
        .await
        .unwrap()
        .id;
    let url = db.url.clone();
    let id = project.to_string();
    let run = move |args: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            graft(&url, &args)
        })
    };
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let (code, token, stderr) = run(args(&[
        "token",
        "create",
        "--name",
        "tf-gen",
        "--scope",
        "generator",
        "--project",
        &id,
    ]))
    .await
    .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("generator"), "{stderr}");
    let created = store
        .authenticate_token(token.trim(), now_ms())
        .await
        .unwrap()
        .expect("the printed token works");
    assert_eq!(created.access.scope(), TokenScope::Generator);
    assert_eq!(created.access.projects(), &[project]);

    let (code, token, stderr) = run(args(&["token", "create", "--name", "ops"]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    let ops = store
        .authenticate_token(token.trim(), now_ms())
        .await
        .unwrap()
        .unwrap();
    assert!(ops.access.is_admin(), "admin is the default scope");

    // Usage errors: exit code 2, a message saying what to add; no token.
    let misuse = [
        (
            args(&["token", "create", "--name", "x", "--project", &id]),
            "--scope generator",
        ),
        (
            args(&[
                "token",
                "create",
                "--name",
                "x",
                "--scope",
                "admin",
                "--project",
                &id,
            ]),
            "--scope generator",
        ),
        (
            args(&["token", "create", "--name", "x", "--scope", "generator"]),
            "at least one --project",
        ),
        (
            args(&["token", "create", "--name", "x", "--scope", "root"]),
            "admin` or `generator",
        ),
    ];
    for (argv, expected) in misuse {
        let (code, stdout, stderr) = run(argv.clone()).await.unwrap();
        assert_eq!(code, 2, "{argv:?}: {stderr}");
        assert!(stderr.contains(expected), "{argv:?}: {stderr}");
        assert!(stdout.trim().is_empty(), "{argv:?}: {stdout}");
    }
    let (code, _, stderr) = run(args(&[
        "token",
        "create",
        "--name",
        "x",
        "--scope",
        "generator",
        "--project",
        "999999",
    ]))
    .await
    .unwrap();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("project 999999 does not exist"), "{stderr}");
    let names: Vec<String> = store
        .list_tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(
        names,
        vec!["tf-gen", "ops"],
        "no token from a refused command"
    );

    let (code, listed, _) = run(args(&["token", "list"])).await.unwrap();
    assert_eq!(code, 0);
    assert!(
        listed.contains(&format!("tf-gen\tactive\tgenerator (projects {project})"))
            && listed.contains("ops\tactive\tadmin"),
        "{listed}"
    );
    store.close().await;
}

both_backends!(
    only_admins_label_files_discovery,
    generator_tokens_reach_only_their_projects_files,
    the_dashboard_and_set_up_refuse_generator_tokens,
    tokens_made_before_scopes_are_admins,
    graft_token_create_makes_scoped_tokens,
);
