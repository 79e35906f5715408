//! The generator/admin API for projects and managed files, on
//! both backends. No workers run, so queued jobs stay visible.

mod support;

use graft::store::now_ms;
use serde_json::{Value, json};
use support::{TestApp, TestDb, default_settings};

struct Api {
    app: TestApp,
    token: String,
}

type Reply = (u16, Value);

impl Api {
    async fn start(db: &TestDb) -> Api {
        let app = TestApp::start(db, default_settings(), None).await;
        let token = app.create_token("gen").await;
        Api { app, token }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Reply {
        let mut request = self
            .app
            .http
            .request(method, self.app.url(&format!("/api/v1{path}")))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body: {text}"));
        (status, value)
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
    async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> Reply {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    async fn project(&self, kind: &str, auto_sync: bool) -> graft::ids::ProjectId {
        let mut body = project_body();
        body["kind"] = json!(kind);
        body["auto_sync"] = json!(auto_sync);
        let (status, project) = self.post("/projects", &body).await;
        assert_eq!(status, 201, "{project}");
        graft::ids::ProjectId(project["id"].as_i64().unwrap())
    }

    async fn put_files(&self, id: graft::ids::ProjectId, body: Value) -> Value {
        let (status, reply) = self.put(&format!("/projects/{id}/files"), &body).await;
        assert_eq!(status, 200, "{reply}");
        reply
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

fn project_body() -> Value {
    json!({
        "provider": "github", "repo": "acme/infra", "branch": "main",
        "base_path": "infra/generated", "kind": "iac", "mode": "pull_request",
        "auto_sync": false, "auto_merge": false
    })
}

fn file(path: &str, content: &str) -> Value {
    json!({ "path": path, "content": content })
}

/// Asserts a JSON API error: status, code, and every `needle` in the message.
fn assert_error(reply: &Reply, status: u16, code: &str, needles: &[&str]) {
    assert_eq!(reply.0, status, "{}", reply.1);
    assert_eq!(reply.1["error"]["code"], code, "{}", reply.1);
    let message = reply.1["error"]["message"].as_str().unwrap_or_default();
    for needle in needles {
        assert!(message.contains(needle), "`{needle}` not in: {message}");
    }
}

fn changed(reply: &Value) -> Vec<(String, String)> {
    reply["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_string(),
                c["change"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Sync jobs: (id, state, payload).
async fn sync_jobs(api: &Api) -> Vec<(i64, String, Value)> {
    let rows: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, state, payload FROM jobs WHERE kind = 'sync' ORDER BY id")
            .fetch_all(api.app.store.pool())
            .await
            .unwrap();
    rows.into_iter()
        .map(|(id, state, payload)| (id, state, serde_json::from_str(&payload).unwrap()))
        .collect()
}

async fn queued_jobs(api: &Api) -> i64 {
    let counts = api.app.store.job_counts().await.unwrap();
    counts
        .iter()
        .find(|(state, _)| state == "queued")
        .map_or(0, |(_, n)| *n)
}

fn git_blob_id(content: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("git")
        .args(["hash-object", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("git");
    child.stdin.take().unwrap().write_all(content).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn projects_are_created_read_and_listed(db: TestDb) {
    let api = Api::start(&db).await;
    let (status, created) = api.post("/projects", &project_body()).await;
    assert_eq!(status, 201, "{created}");
    let id = graft::ids::ProjectId(created["id"].as_i64().unwrap());
    for (field, expected) in [
        ("provider", json!("github")),
        ("repo", json!("acme/infra")),
        ("base_path", json!("infra/generated")),
        ("kind", json!("iac")),
        ("mode", json!("pull_request")),
        ("sync_status", json!("idle")),
        ("sync_error", Value::Null),
        ("last_synced_commit_sha", Value::Null),
        ("last_pulled_at", Value::Null),
        ("pull_request_number", Value::Null),
        ("pull_request_url", Value::Null),
        ("sync_branch", json!("graft/infra-generated")),
        ("auto_sync", json!(false)),
        ("auto_merge", json!(false)),
        ("pending_files", json!(0)),
    ] {
        assert_eq!(created[field], expected, "{field}: {created}");
    }
    let (status, got) = api.get(&format!("/projects/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got, created);

    let mut second = project_body();
    second["branch"] = json!("release/1.x");
    second["sync_branch"] = json!("bots/graft-release");
    second["kind"] = json!("configuration");
    second["mode"] = json!("direct");
    let (status, other) = api.post("/projects", &second).await;
    assert_eq!(status, 201, "{other}");
    assert_eq!(other["sync_branch"], "bots/graft-release");

    api.put_files(
        id,
        json!({ "files": [file("a.tf", "a"), file("b.tf", "b")] }),
    )
    .await;
    let (status, list) = api.get("/projects").await;
    assert_eq!(status, 200);
    let list = list["projects"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], id.get());
    assert_eq!(list[0]["pending_files"], 2);
    assert_eq!(list[1]["kind"], "configuration");
    assert_eq!(list[1]["mode"], "direct");

    let (_, events) = api.get(&format!("/projects/{id}/events")).await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["files.updated", "project.created"], "newest first");
    api.stop().await;
}

async fn a_duplicate_project_is_409(db: TestDb) {
    let api = Api::start(&db).await;
    api.project("iac", false).await;
    let reply = api.post("/projects", &project_body()).await;
    assert_error(&reply, 409, "conflict", &["acme/infra", "exists"]);
    // Forges treat repository names case-insensitively; so does graft.
    let mut shouted = project_body();
    shouted["repo"] = json!("ACME/Infra");
    let reply = api.post("/projects", &shouted).await;
    assert_error(&reply, 409, "conflict", &["exists"]);
    assert_eq!(api.app.store.list_projects().await.unwrap().len(), 1);
    api.stop().await;
}

async fn projects_of_one_repository_never_share_a_sync_branch(db: TestDb) {
    let api = Api::start(&db).await;
    let mut branches = Vec::new();
    // All three slug to `infra-gen`.
    for base_path in ["infra/gen", "infra-gen", "infra_gen"] {
        let mut body = project_body();
        body["base_path"] = json!(base_path);
        let (status, project) = api.post("/projects", &body).await;
        assert_eq!(status, 201, "{project}");
        branches.push(project["sync_branch"].as_str().unwrap().to_string());
    }
    assert_eq!(
        branches,
        vec![
            "graft/infra-gen",
            "graft/infra-gen-main",
            "graft/infra-gen-2"
        ]
    );
    // An explicit sync branch that is taken is refused, naming the field.
    let mut body = project_body();
    body["base_path"] = json!("other");
    body["sync_branch"] = json!("graft/infra-gen");
    let reply = api.post("/projects", &body).await;
    assert_error(
        &reply,
        409,
        "conflict",
        &["`sync_branch`", "graft/infra-gen", "project 1"],
    );
    // Nor may a sync branch be another project's target (graft would
    // force-push over it), or a target another project's sync branch.
    let mut onto_target = project_body();
    onto_target["base_path"] = json!("other");
    onto_target["branch"] = json!("develop");
    onto_target["sync_branch"] = json!("main");
    let reply = api.post("/projects", &onto_target).await;
    assert_error(
        &reply,
        409,
        "conflict",
        &["`sync_branch` `main`", "target branch", "project 1"],
    );
    let mut onto_sync_branch = project_body();
    onto_sync_branch["base_path"] = json!("other");
    onto_sync_branch["branch"] = json!("graft/infra-gen");
    let reply = api.post("/projects", &onto_sync_branch).await;
    assert_error(
        &reply,
        409,
        "conflict",
        &["`branch` `graft/infra-gen`", "sync branch", "project 1"],
    );
    assert_eq!(api.app.store.list_projects().await.unwrap().len(), 3);
    // Another repository may use the same name.
    body["repo"] = json!("acme/other");
    let (status, project) = api.post("/projects", &body).await;
    assert_eq!(
        (status, &project["sync_branch"]),
        (201, &json!("graft/infra-gen"))
    );
    api.stop().await;
}

async fn bad_project_fields_are_422_naming_the_field(db: TestDb) {
    let api = Api::start(&db).await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("provider", json!("bitbucket"), "provider"),
        ("provider", Value::Null, "provider"),
        ("repo", json!("acme/sub/infra"), "repo"),
        ("repo", json!("acme/../x"), "repo"),
        ("branch", json!("feature..x"), "branch"),
        ("branch", json!("a.lock"), "branch"),
        ("base_path", json!("../outside"), "base_path"),
        ("base_path", json!("/etc"), "base_path"),
        ("base_path", json!("a/.git/hooks"), "base_path"),
        ("kind", json!("helm"), "kind"),
        ("mode", json!("push"), "mode"),
        ("auto_sync", json!("yes"), "auto_sync"),
        ("auto_merge", json!(1), "auto_merge"),
        ("sync_branch", json!("has space"), "sync_branch"),
        ("integration_id", json!(1), "integration_id"),
        ("surprise", json!(true), "surprise"),
    ];
    for (field, value, named) in cases {
        let mut body = project_body();
        body[field] = value;
        let reply = api.post("/projects", &body).await;
        assert_error(&reply, 422, "invalid_field", &[named]);
    }
    // GitLab: an integration that does not exist is refused; one that does is used.
    let mut gitlab = project_body();
    gitlab["provider"] = json!("gitlab");
    gitlab["repo"] = json!("group/sub/infra");
    gitlab["integration_id"] = json!(999);
    let reply = api.post("/projects", &gitlab).await;
    assert_error(&reply, 422, "invalid_field", &["integration_id", "999"]);
    // Bad JSON syntax and a body that is not an object.
    let raw = api
        .app
        .http
        .post(api.app.url("/api/v1/projects"))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{\"provider\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json");
    let reply = api.post("/projects", &json!(["github"])).await;
    assert_error(&reply, 422, "invalid_field", &["object"]);
    assert!(api.app.store.list_projects().await.unwrap().is_empty());

    // graft checks the token with GitLab before storing the integration.
    let fake = support::fake_gitlab::FakeGitlab::start().await;
    let (status, integration) = api
        .post(
            "/integrations/gitlab",
            &json!({"base_url": fake.url, "token": support::fake_gitlab::BOT_TOKEN, "webhook_secret": "s"}),
        )
        .await;
    assert_eq!(status, 201);
    gitlab["integration_id"] = integration["id"].clone();
    let (status, project) = api.post("/projects", &gitlab).await;
    assert_eq!(status, 201, "{project}");
    assert_eq!(project["integration_id"], integration["id"]);
    api.stop().await;
}

async fn unknown_projects_and_files_are_404(db: TestDb) {
    let api = Api::start(&db).await;
    for path in [
        "/projects/42",
        "/projects/abc",
        "/projects/42/files",
        "/projects/42/events",
        "/projects/42/files/a.tf",
    ] {
        assert_error(&api.get(path).await, 404, "not_found", &["project"]);
    }
    assert_error(
        &api.post("/projects/42/sync", &json!({})).await,
        404,
        "not_found",
        &["42"],
    );
    assert_error(
        &api.put("/projects/42/files", &json!({"files": []})).await,
        404,
        "not_found",
        &["42"],
    );
    let id = api.project("iac", false).await;
    let reply = api.get(&format!("/projects/{id}/files/nope/x.tf")).await;
    assert_error(&reply, 404, "not_found", &["nope/x.tf"]);
    let reply = api.delete(&format!("/projects/{id}/files/nope.tf")).await;
    assert_error(&reply, 404, "not_found", &["nope.tf"]);
    let reply = api.delete(&format!("/projects/{id}")).await;
    assert_error(&reply, 405, "method_not_allowed", &["method"]);
    assert_eq!(queued_jobs(&api).await, 0);
    api.stop().await;
}

async fn bulk_put_reports_changes_and_a_reput_changes_nothing(db: TestDb) {
    let api = Api::start(&db).await;
    let id = api.project("iac", false).await;
    let url = format!("/projects/{id}/files");
    let first = api
        .put_files(
            id,
            json!({"files": [file("main.tf", "x"), file("mod/vars.tf", "v")], "delete_missing": false, "source": "tfgen"}),
        )
        .await;
    assert_eq!(
        changed(&first),
        pairs(&[("main.tf", "added"), ("mod/vars.tf", "added")])
    );
    assert_eq!(first["sync_job_id"], Value::Null, "iac without auto_sync");
    let again = api
        .put_files(
            id,
            json!({"files": [file("main.tf", "x"), file("mod/vars.tf", "v")]}),
        )
        .await;
    assert_eq!(again, json!({"changed": [], "sync_job_id": null}));
    assert_eq!(queued_jobs(&api).await, 0);
    let modified = api
        .put_files(id, json!({"files": [file("main.tf", "y")]}))
        .await;
    assert_eq!(changed(&modified), pairs(&[("main.tf", "modified")]));

    let (_, list) = api.get(&url).await;
    let files = list["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["path"], "main.tf");
    assert_eq!(files[0]["blob_sha"], git_blob_id(b"y"));
    assert_eq!(files[1]["blob_sha"], git_blob_id(b"v"));
    assert_eq!(files[0]["state"], "pending");
    assert_eq!(files[0]["size"], 1);
    assert_eq!(files[0]["sync_on_change"], false);
    assert!(files[0].get("content").is_none(), "no content unless asked");
    let project = api.app.store.require_project(id).await.unwrap();
    assert_eq!(project.source.as_deref(), Some("tfgen"));
    assert_eq!(sync_jobs(&api).await.len(), 0);
    api.stop().await;
}

async fn delete_missing_forgets_new_files_and_marks_synced_ones(db: TestDb) {
    let api = Api::start(&db).await;
    let id = api.project("iac", false).await;
    api.put_files(
        id,
        json!({"files": [file("keep.tf", "k"), file("new.tf", "n"), file("old.tf", "o")]}),
    )
    .await;
    let store = &api.app.store;
    store
        .mark_synced(
            id,
            &[
                ("keep.tf".into(), Some(git_blob_id(b"k"))),
                ("old.tf".into(), Some(git_blob_id(b"o"))),
            ],
            now_ms(),
        )
        .await
        .unwrap();
    let reply = api
        .put_files(
            id,
            json!({"files": [file("keep.tf", "k")], "delete_missing": true}),
        )
        .await;
    assert_eq!(
        changed(&reply),
        pairs(&[("new.tf", "deleted"), ("old.tf", "deleted")])
    );
    let (_, list) = api.get(&format!("/projects/{id}/files")).await;
    let states: Vec<(String, String)> = list["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().into(),
                f["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        states,
        pairs(&[("keep.tf", "synced"), ("old.tf", "deleted_pending")])
    );
    let (_, project) = api.get(&format!("/projects/{id}")).await;
    assert_eq!(project["pending_files"], 1);
    // Putting a deleted file back adds it again.
    let back = api
        .put_files(id, json!({"files": [file("old.tf", "o")]}))
        .await;
    assert_eq!(changed(&back), pairs(&[("old.tf", "added")]));
    let (_, old) = api.get(&format!("/projects/{id}/files/old.tf")).await;
    assert_eq!(old["state"], "synced", "back to what the repository has");
    api.stop().await;
}

async fn single_file_routes_handle_nested_paths(db: TestDb) {
    let api = Api::start(&db).await;
    let id = api.project("configuration", false).await;
    let url = format!("/projects/{id}/files/a/b/c.tf");
    let (status, put) = api
        .put(
            &url,
            &json!({"content": "c = 1\n", "sync_on_change": false}),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(changed(&put), pairs(&[("a/b/c.tf", "added")]));
    let (status, got) = api.get(&url).await;
    assert_eq!(status, 200);
    assert_eq!(got["path"], "a/b/c.tf");
    assert_eq!(got["content"], "c = 1\n");
    assert_eq!(got["blob_sha"], git_blob_id(b"c = 1\n"));
    assert_eq!(got["state"], "pending");
    assert_eq!(got["sync_on_change"], false);
    let (_, put) = api
        .put(&url, &json!({"content": "c = 2\n", "executable": true}))
        .await;
    assert_eq!(changed(&put), pairs(&[("a/b/c.tf", "modified")]));
    let (_, got) = api.get(&url).await;
    assert_eq!(got["executable"], true);
    // A percent-encoded slash names the same file.
    let (status, same) = api.get(&format!("/projects/{id}/files/a%2Fb/c.tf")).await;
    assert_eq!((status, &same["path"]), (200, &json!("a/b/c.tf")));
    // Single PUT body errors name the field.
    let reply = api.put(&url, &json!({"content": 5})).await;
    assert_error(&reply, 422, "invalid_field", &["content"]);
    let reply = api
        .put(&url, &json!({"content": "x", "mode": "0755"}))
        .await;
    assert_error(&reply, 422, "invalid_field", &["mode"]);
    let reply = api.put(&url, &json!({})).await;
    assert_error(&reply, 422, "invalid_field", &["content", "required"]);
    // A file cannot also be a folder.
    let reply = api
        .put(
            &format!("/projects/{id}/files/a/b"),
            &json!({"content": "x"}),
        )
        .await;
    assert_error(&reply, 422, "invalid_field", &["a/b/c.tf"]);

    // Deleting a file that never reached the repository forgets it.
    let (status, deleted) = api.delete(&url).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(changed(&deleted), pairs(&[("a/b/c.tf", "deleted")]));
    assert_error(&api.get(&url).await, 404, "not_found", &["a/b/c.tf"]);
    // A synced one stays as deleted_pending until a sync removes it.
    api.put(&url, &json!({"content": "s"})).await;
    api.app
        .store
        .mark_synced(id, &[("a/b/c.tf".into(), Some(git_blob_id(b"s")))], 1)
        .await
        .unwrap();
    let (_, deleted) = api.delete(&url).await;
    assert_eq!(changed(&deleted), pairs(&[("a/b/c.tf", "deleted")]));
    let (_, got) = api.get(&url).await;
    assert_eq!(got["state"], "deleted_pending");
    let (status, again) = api.delete(&url).await;
    assert_eq!(status, 200);
    assert_eq!(again, json!({"changed": [], "sync_job_id": null}));
    api.stop().await;
}

async fn binary_content_round_trips_as_base64(db: TestDb) {
    let api = Api::start(&db).await;
    let id = api.project("iac", false).await;
    let bytes: Vec<u8> = (0..=255u8).rev().collect();
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
    api.put_files(
        id,
        json!({"files": [
            {"path": "bin/blob.dat", "content": {"base64": encoded}, "executable": true},
            {"path": "text.tf", "content": {"base64": "aMOpbGxv"}},
        ]}),
    )
    .await;
    let stored = api
        .app
        .store
        .file(id, "bin/blob.dat")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.content, bytes);
    assert_eq!(stored.blob_sha, git_blob_id(&bytes));
    let (_, got) = api.get(&format!("/projects/{id}/files/bin/blob.dat")).await;
    assert_eq!(got["content"], json!({"base64": encoded}));
    let (_, list) = api.get(&format!("/projects/{id}/files?content=true")).await;
    let files = list["files"].as_array().unwrap();
    assert_eq!(files[0]["content"], json!({"base64": encoded}));
    assert_eq!(files[0]["executable"], true);
    assert_eq!(files[0]["size"], 256);
    assert_eq!(files[1]["content"], "héllo", "UTF-8 comes back as text");
    let reply = api
        .get(&format!("/projects/{id}/files?content=maybe"))
        .await;
    assert_error(&reply, 422, "invalid_field", &["content"]);
    api.stop().await;
}

async fn one_bad_file_stores_nothing(db: TestDb) {
    let api = Api::start(&db).await;
    let id = api.project("iac", true).await;
    api.put_files(id, json!({"files": [file("existing.tf", "e")]}))
        .await;
    let before = api.app.store.files(id).await.unwrap();
    let jobs_before = sync_jobs(&api).await;
    let good = file("good.tf", "g");
    let big = "a".repeat(1024 * 1024 + 1);
    // Fine on its own, too long below the base path `infra/generated`.
    let deep = format!("{}/abcdefghij", vec!["a".repeat(250); 4].join("/"));
    let cases: Vec<(Value, u16, &str, Vec<&str>)> = vec![
        (
            file(&deep, "x"),
            422,
            "invalid_field",
            vec!["bytes long", "limit is 1024"],
        ),
        (
            file(&format!("{}.tf", "n".repeat(300)), "x"),
            422,
            "invalid_field",
            vec!["at most 255"],
        ),
        (
            file("../escape.tf", "x"),
            422,
            "invalid_field",
            vec!["files[1]", "path", "../escape.tf"],
        ),
        (
            file("/abs.tf", "x"),
            422,
            "invalid_field",
            vec!["files[1]", "path"],
        ),
        (
            file(".git/config", "x"),
            422,
            "invalid_field",
            vec!["files[1]", ".git"],
        ),
        (
            file("a\\b.tf", "x"),
            422,
            "invalid_field",
            vec!["files[1]", "backslash"],
        ),
        (
            file("good.tf", "again"),
            422,
            "invalid_field",
            vec!["files[1]", "good.tf", "more than once"],
        ),
        (
            json!({"path": "b.tf", "content": {"base64": "not base64!"}}),
            422,
            "invalid_field",
            vec!["b.tf", "base64"],
        ),
        (
            json!({"path": "b.tf", "content": 12}),
            422,
            "invalid_field",
            vec!["b.tf", "content"],
        ),
        (
            json!({"path": "b.tf"}),
            422,
            "invalid_field",
            vec!["b.tf", "content", "required"],
        ),
        (
            json!({"content": "x"}),
            422,
            "invalid_field",
            vec!["files[1]", "path", "required"],
        ),
        (
            json!({"path": "b.tf", "content": "x", "sync_on_change": "yes"}),
            422,
            "invalid_field",
            vec!["b.tf", "sync_on_change"],
        ),
        (
            json!({"path": "b.tf", "content": "x", "executable": 1}),
            422,
            "invalid_field",
            vec!["b.tf", "executable"],
        ),
        (
            json!({"path": "b.tf", "content": "x", "mode": "0644"}),
            422,
            "invalid_field",
            vec!["files[1]", "mode"],
        ),
        (
            json!({"path": "b.tf", "content": big}),
            413,
            "too_large",
            vec!["b.tf", "1048576"],
        ),
        (
            json!("just a string"),
            422,
            "invalid_field",
            vec!["files[1]", "object"],
        ),
    ];
    for (bad, status, code, needles) in cases {
        let body = json!({"files": [good.clone(), bad], "delete_missing": true});
        let reply = api.put(&format!("/projects/{id}/files"), &body).await;
        assert_error(&reply, status, code, &needles);
    }
    // A managed file cannot become a folder (unless the put deletes it).
    let body = json!({"files": [good.clone(), file("existing.tf/inner.tf", "x")]});
    let reply = api.put(&format!("/projects/{id}/files"), &body).await;
    assert_error(
        &reply,
        422,
        "invalid_field",
        &["existing.tf/inner.tf", "`existing.tf`"],
    );
    let top: Vec<(Value, &str)> = vec![
        (
            json!({"files": [good.clone()], "delete_missing": "yes"}),
            "delete_missing",
        ),
        (json!({"files": {"good.tf": "g"}}), "files"),
        (json!({"delete_missing": true}), "files"),
        (json!({"files": [good.clone()], "replace": true}), "replace"),
        (json!({"files": [good.clone()], "source": ""}), "source"),
    ];
    for (body, named) in top {
        let reply = api.put(&format!("/projects/{id}/files"), &body).await;
        assert_error(&reply, 422, "invalid_field", &[named]);
    }
    // 21 files of 1 MiB each: every file is allowed, the request is not.
    let mib = "b".repeat(1024 * 1024);
    let many: Vec<Value> = (0..21).map(|i| file(&format!("f{i}.tf"), &mib)).collect();
    let reply = api
        .put(&format!("/projects/{id}/files"), &json!({"files": many}))
        .await;
    assert_error(&reply, 413, "too_large", &["20971520"]);
    let many: Vec<Value> = (0..10_001)
        .map(|i| file(&format!("f{i}.tf"), "x"))
        .collect();
    let reply = api
        .put(&format!("/projects/{id}/files"), &json!({"files": many}))
        .await;
    assert_error(&reply, 413, "too_large", &["10000"]);

    assert_eq!(api.app.store.files(id).await.unwrap(), before);
    assert_eq!(
        sync_jobs(&api).await,
        jobs_before,
        "no job for a refused put"
    );
    api.stop().await;
}

async fn percent_encoded_dot_dot_is_refused(db: TestDb) {
    let api = Api::start(&db).await;
    let id = api.project("iac", false).await;
    for path in [
        "..%2Fsecret.tf",
        "%2e%2e%2fsecret.tf",
        "a/..%2F..%2Fx",
        ".git%2Fconfig",
    ] {
        let reply = api
            .put(
                &format!("/projects/{id}/files/{path}"),
                &json!({"content": "x"}),
            )
            .await;
        assert_error(&reply, 422, "invalid_field", &["path"]);
        let reply = api.get(&format!("/projects/{id}/files/{path}")).await;
        assert_error(&reply, 422, "invalid_field", &["path"]);
    }
    // A literal `..` that no client normalized on the way.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = api.app.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "PUT /api/v1/projects/{id}/files/a/../../x.tf HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: 15\r\nConnection: close\r\n\r\n{{\"content\":\"x\"}}",
        api.token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
    assert!(answer.contains("invalid_field"), "{answer}");
    assert!(api.app.store.files(id).await.unwrap().is_empty());
    api.stop().await;
}

async fn iac_auto_sync_coalesces_into_one_job(db: TestDb) {
    let api = Api::start(&db).await;
    let id = api.project("iac", true).await;
    let mut job_ids = Vec::new();
    for i in 0..5 {
        let reply = api
            .put_files(id, json!({"files": [file("main.tf", &format!("v{i}"))]}))
            .await;
        job_ids.push(reply["sync_job_id"].as_i64().expect("a sync job"));
    }
    job_ids.dedup();
    assert_eq!(job_ids.len(), 1, "one job for five rapid puts");
    let jobs = sync_jobs(&api).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].1, "queued");
    assert_eq!(jobs[0].2["scope"], "all");
    assert_eq!(jobs[0].2["actor"], "token:gen");
    // No change, no job; a single-file delete schedules one like a put.
    let reply = api
        .put_files(id, json!({"files": [file("main.tf", "v4")]}))
        .await;
    assert_eq!(reply["sync_job_id"], Value::Null);
    let (_, deleted) = api.delete(&format!("/projects/{id}/files/main.tf")).await;
    assert_eq!(deleted["sync_job_id"], job_ids[0]);
    assert_eq!(queued_jobs(&api).await, 1);
    api.stop().await;
}

async fn a_put_that_fails_part_way_leaves_nothing_and_can_be_retried(db: TestDb) {
    let api = Api::start(&db).await;
    let id = api.project("iac", true).await;
    let body = json!({"files": [file("a.tf", "# a"), file("b.tf", "# b")]});
    support::fail_inserts_into(&api.app.store, "events", true).await;
    let (status, reply) = api.put(&format!("/projects/{id}/files"), &body).await;
    assert_eq!(status, 500, "{reply}");
    assert_eq!(reply["error"]["code"], "internal", "{reply}");
    let (_, files) = api.get(&format!("/projects/{id}/files")).await;
    assert_eq!(files["files"], json!([]), "no file stored");
    assert!(sync_jobs(&api).await.is_empty(), "no job queued");
    // The retry is a change again (not "nothing changed", which would
    // leave the files pending with no sync ever queued).
    support::fail_inserts_into(&api.app.store, "events", false).await;
    let reply = api.put_files(id, body).await;
    assert_eq!(
        changed(&reply),
        pairs(&[("a.tf", "added"), ("b.tf", "added")])
    );
    assert!(reply["sync_job_id"].is_i64(), "{reply}");
    assert_eq!(sync_jobs(&api).await.len(), 1);
    api.stop().await;
}

async fn iac_without_auto_sync_queues_nothing(db: TestDb) {
    let api = Api::start(&db).await;
    let id = api.project("iac", false).await;
    let reply = api
        .put_files(id, json!({"files": [file("main.tf", "x")]}))
        .await;
    assert_eq!(reply["sync_job_id"], Value::Null);
    assert!(sync_jobs(&api).await.is_empty());
    api.stop().await;
}

async fn configuration_syncs_only_flagged_changes(db: TestDb) {
    let api = Api::start(&db).await;
    let id = api.project("configuration", true).await;
    let reply = api
        .put_files(id, json!({"files": [file("app.yaml", "a: 1")]}))
        .await;
    assert_eq!(reply["sync_job_id"], Value::Null, "unflagged change");
    assert!(sync_jobs(&api).await.is_empty());
    let reply = api
        .put_files(
            id,
            json!({"files": [{"path": "flag.yaml", "content": "f: 1", "sync_on_change": true}]}),
        )
        .await;
    let job = reply["sync_job_id"].as_i64().expect("flagged change syncs");
    let jobs = sync_jobs(&api).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].0, job);
    assert_eq!(jobs[0].2["scope"], "flagged");
    // An explicit sync widens the queued job to everything.
    let (status, sync) = api.post(&format!("/projects/{id}/sync"), &json!({})).await;
    assert_eq!(status, 202);
    assert_eq!(sync["job_id"], job);
    assert_eq!(sync_jobs(&api).await[0].2["scope"], "all");
    api.stop().await;
}

async fn explicit_sync_queues_a_job(db: TestDb) {
    let api = Api::start(&db).await;
    let id = api.project("iac", false).await;
    let response = api
        .app
        .http
        .post(api.app.url(&format!("/api/v1/projects/{id}/sync")))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    let job = body["job_id"].as_i64().unwrap();
    let record = api.app.store.job(job).await.unwrap().unwrap();
    assert_eq!(
        (record.kind.as_str(), record.state.as_str()),
        ("sync", "queued")
    );
    let jobs = sync_jobs(&api).await;
    assert_eq!(jobs[0].2["scope"], "all");
    assert_eq!(jobs[0].2["force"], false);
    assert_eq!(jobs[0].2["actor"], "token:gen");
    api.stop().await;
}

async fn new_content_lifts_the_auto_sync_hold(db: TestDb) {
    let api = Api::start(&db).await;
    let id = api.project("iac", true).await;
    api.put_files(id, json!({"files": [file("a.tf", "1")]}))
        .await;
    let store = &api.app.store;
    store.set_auto_sync_held(id, true, now_ms()).await.unwrap();
    api.put_files(id, json!({"files": [file("a.tf", "1")]}))
        .await;
    assert!(
        store.require_project(id).await.unwrap().auto_sync_held,
        "the same content keeps the hold"
    );
    api.put_files(id, json!({"files": [file("a.tf", "2")]}))
        .await;
    assert!(!store.require_project(id).await.unwrap().auto_sync_held);
    api.stop().await;
}

async fn events_record_file_updates(db: TestDb) {
    let api = Api::start(&db).await;
    let id = api.project("iac", true).await;
    api.put_files(
        id,
        json!({"files": [file("a.tf", "1"), file("b.tf", "2")], "source": "tfgen"}),
    )
    .await;
    let (status, events) = api.get(&format!("/projects/{id}/events?limit=1")).await;
    assert_eq!(status, 200);
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["kind"], "files.updated");
    assert_eq!(event["actor"], "token:gen");
    assert!(
        event["message"].as_str().unwrap().contains("2 added"),
        "{event}"
    );
    assert_eq!(event["details"]["changed"][0]["path"], "a.tf");
    assert_eq!(event["details"]["changed"][1]["change"], "added");
    assert_eq!(event["details"]["source"], "tfgen");
    assert!(event["details"]["sync_job_id"].is_i64());
    let reply = api.get(&format!("/projects/{id}/events?limit=0")).await;
    assert_error(&reply, 422, "invalid_field", &["limit"]);
    let reply = api.get(&format!("/projects/{id}/events?limit=5000")).await;
    assert_error(&reply, 422, "invalid_field", &["limit"]);
    api.stop().await;
}

async fn every_route_needs_a_token(db: TestDb) {
    let api = Api::start(&db).await;
    let id = api.project("iac", false).await;
    let http = &api.app.http;
    let url = |p: &str| api.app.url(&format!("/api/v1{p}"));
    let requests = [
        http.get(url("/projects")),
        http.post(url("/projects")).json(&project_body()),
        http.get(url(&format!("/projects/{id}"))),
        http.get(url(&format!("/projects/{id}/files"))),
        http.put(url(&format!("/projects/{id}/files")))
            .json(&json!({"files": [file("a.tf", "x")]})),
        http.get(url(&format!("/projects/{id}/files/a.tf"))),
        http.put(url(&format!("/projects/{id}/files/a.tf")))
            .json(&json!({"content": "x"})),
        http.delete(url(&format!("/projects/{id}/files/a.tf"))),
        http.post(url(&format!("/projects/{id}/sync"))),
        http.get(url(&format!("/projects/{id}/events"))),
    ];
    for request in requests {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (status, &body["error"]["code"]),
            (401, &json!("unauthorized"))
        );
    }
    assert!(api.app.store.files(id).await.unwrap().is_empty());
    assert_eq!(api.app.store.list_projects().await.unwrap().len(), 1);
    assert!(sync_jobs(&api).await.is_empty());
    api.stop().await;
}

async fn commit_via_is_set_at_creation_and_changed_by_patch(db: TestDb) {
    let api = Api::start(&db).await;
    let (status, created) = api.post("/projects", &project_body()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["commit_via"], "git", "the default");
    let id = created["id"].as_i64().unwrap();
    let path = format!("/projects/{id}");
    let (status, changed) = api
        .send(
            reqwest::Method::PATCH,
            &path,
            Some(&json!({"commit_via": "api"})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["commit_via"], "api");
    assert_eq!(api.get(&path).await.1["commit_via"], "api");
    for (body, field) in [
        (json!({"commit_via": "push"}), "commit_via"),
        (json!({"commit_via": true}), "commit_via"),
        (json!({"mode": "direct"}), "mode"),
    ] {
        let (status, error) = api.send(reqwest::Method::PATCH, &path, Some(&body)).await;
        assert_eq!(status, 422, "{body} → {error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
    }
    let (_, events) = api.get(&format!("{path}/events")).await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "project.updated"),
        "{events}"
    );

    let mut body = project_body();
    body["base_path"] = json!("other");
    body["commit_via"] = json!("api");
    let (status, created) = api.post("/projects", &body).await;
    assert_eq!(
        (status, &created["commit_via"]),
        (201, &json!("api")),
        "{created}"
    );
    let stored = api.get(&format!("/projects/{}", created["id"])).await.1;
    assert_eq!(stored["commit_via"], "api", "stored by the one INSERT");
    body["base_path"] = json!("third");
    body["commit_via"] = json!("gpg");
    let (status, error) = api.post("/projects", &body).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(
        api.send(
            reqwest::Method::PATCH,
            "/projects/999",
            Some(&json!({"commit_via": "api"}))
        )
        .await
        .0,
        404
    );
    api.stop().await;
}

both_backends!(
    commit_via_is_set_at_creation_and_changed_by_patch,
    projects_are_created_read_and_listed,
    a_duplicate_project_is_409,
    projects_of_one_repository_never_share_a_sync_branch,
    bad_project_fields_are_422_naming_the_field,
    unknown_projects_and_files_are_404,
    bulk_put_reports_changes_and_a_reput_changes_nothing,
    delete_missing_forgets_new_files_and_marks_synced_ones,
    single_file_routes_handle_nested_paths,
    binary_content_round_trips_as_base64,
    one_bad_file_stores_nothing,
    percent_encoded_dot_dot_is_refused,
    iac_auto_sync_coalesces_into_one_job,
    a_put_that_fails_part_way_leaves_nothing_and_can_be_retried,
    iac_without_auto_sync_queues_nothing,
    configuration_syncs_only_flagged_changes,
    explicit_sync_queues_a_job,
    new_content_lifts_the_auto_sync_hold,
    events_record_file_updates,
    every_route_needs_a_token,
);
