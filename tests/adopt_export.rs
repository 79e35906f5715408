//! Brownfield set-up and its inverse: adopting the files a repository
//! already has under a project's base path (managed and `synced`, no
//! commit, labelled `discovery`), and exporting the managed files as a
//! tar.gz that `graft pull` writes into a directory.

mod support;

use std::path::Path;

use graft::store::files::{FileSource, FileState};
use graft::store::integrations::NewIntegration;
use graft::store::now_ms;
use graft::store::projects::{Mode, NewProject, Project};
use graft::store::tokens::{TokenAccess, TokenScope};
use reqwest::Method;
use serde_json::{Value, json};
use support::TestDb;
use support::git_host::git;
use support::harness::Harness;
use support::sync::{event_kinds, github_project, gitlab_project, project_spec};

const REPO: &str = "acme/infra";
const INSTALLATION: i64 = 41;
const BIG: usize = 1024 * 1024 + 1;

async fn call(
    h: &Harness,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = h
        .app
        .http
        .request(method, h.app.url(&format!("/api/v1{path}")))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn generator_token(h: &Harness, projects: &[graft::ids::ProjectId]) -> String {
    let access = TokenAccess::new(TokenScope::Generator, projects).unwrap();
    h.app
        .store
        .create_scoped_token("tf-gen", &access, now_ms())
        .await
        .unwrap()
        .1
}

fn paths(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

fn seed() -> Vec<(&'static str, Option<Vec<u8>>)> {
    vec![
        ("infra/main.tf", Some(b"# main\n".to_vec())),
        ("infra/modules/vpc/vpc.tf", Some(b"# vpc\n".to_vec())),
        ("infra/big.tf", Some(vec![b'#'; BIG])),
        ("other/outside.tf", Some(b"# not ours\n".to_vec())),
    ]
}

fn as_files<'a>(
    seed: &'a [(&'static str, Option<Vec<u8>>)],
) -> Vec<(&'static str, Option<&'a [u8]>)> {
    seed.iter().map(|(p, c)| (*p, c.as_deref())).collect()
}

async fn no_jobs(h: &Harness) -> bool {
    h.app
        .store
        .job_counts()
        .await
        .unwrap()
        .iter()
        .all(|(_, n)| *n == 0)
}

/// Adopting on `project`, whose repository's `main` is at `head`: named
/// paths, then all, the skips, the stored rows, and a re-put of the same
/// content that changes nothing.
async fn adopt_and_check(h: &Harness, project: &Project, head: &str) {
    let admin = h.app.create_token("admin").await;
    let adopt = format!("/projects/{}/adopt", project.id);

    // Named paths: one there, one not.
    let (status, answer) = call(
        h,
        &admin,
        Method::POST,
        &adopt,
        Some(json!({"paths": ["main.tf", "gone.tf"]})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(paths(&answer["adopted"]), vec!["main.tf"]);
    assert_eq!(
        answer["adopted"][0]["blob_sha"],
        graft::git::read::blob_id(b"# main\n").to_string()
    );
    assert_eq!(paths(&answer["skipped"]), vec!["gone.tf"]);
    assert!(
        answer["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("no such file"),
        "{answer}"
    );

    // Paths outside the base path are refused before anything is read.
    for bad in ["../other/outside.tf", "/other/outside.tf"] {
        let (status, answer) = call(
            h,
            &admin,
            Method::POST,
            &adopt,
            Some(json!({"paths": [bad]})),
        )
        .await;
        assert_eq!(status, 422, "{bad}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_field");
    }

    // Everything else: the managed one and the large one are skipped, the
    // file outside the base path is not considered.
    let response = h
        .app
        .http
        .post(h.app.url(&format!("/api/v1{adopt}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(paths(&answer["adopted"]), vec!["modules/vpc/vpc.tf"]);
    assert_eq!(paths(&answer["skipped"]), vec!["big.tf", "main.tf"]);
    let reasons: Vec<&str> = answer["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reason"].as_str().unwrap())
        .collect();
    assert!(reasons[0].contains("at most 1048576 bytes"), "{reasons:?}");
    assert!(reasons[1].contains("already managed"), "{reasons:?}");

    // Stored as synced, at the head they were read from, labelled discovery.
    let rows = h.app.store.files(project.id).await.unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row.state, FileState::Synced);
        assert_eq!(row.source, FileSource::Discovery);
        assert_eq!(row.synced_blob_sha.as_deref(), Some(row.blob_sha.as_str()));
    }
    let after = h.app.store.require_project(project.id).await.unwrap();
    assert_eq!(after.last_synced_commit_sha.as_deref(), Some(head));
    assert!(
        event_kinds(h, project.id)
            .await
            .contains(&"files.adopted".to_string())
    );
    assert!(no_jobs(h).await, "adopting queues nothing");

    // The files API shows the label.
    let (_, listing) = call(
        h,
        &admin,
        Method::GET,
        &format!("/projects/{}/files", project.id),
        None,
    )
    .await;
    assert!(
        listing["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["source"] == "discovery"),
        "{listing}"
    );

    // The generator sends the same content: nothing changes, nothing runs.
    let (status, answer) = call(
        h,
        &admin,
        Method::PUT,
        &format!("/projects/{}/files/main.tf", project.id),
        Some(json!({"content": "# main\n"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"changed": [], "sync_job_id": null}));
    let (_, one) = call(
        h,
        &admin,
        Method::GET,
        &format!("/projects/{}/files/main.tf", project.id),
        None,
    )
    .await;
    assert_eq!(one["state"], "synced");
    assert_eq!(one["source"], "discovery");
    assert!(no_jobs(h).await, "an identical put queues no sync");
}

async fn adopt_on_github(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let seed = seed();
    let head = h
        .github
        .git
        .commit(REPO, "main", &as_files(&seed), "brownfield");
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    adopt_and_check(&h, &p, &head).await;
    assert_eq!(
        h.github.git.head(REPO, "main").as_deref(),
        Some(head.as_str()),
        "no commit"
    );
    h.stop().await;
}

async fn adopt_on_gitlab(db: TestDb) {
    let h = Harness::start(&db).await;
    let path = "acme/platform/infra";
    h.gitlab_project(path);
    let seed = seed();
    let head = h
        .gitlab
        .git
        .commit(path, "main", &as_files(&seed), "brownfield");
    let p = gitlab_project(&h, path, Mode::Direct, "infra").await;
    adopt_and_check(&h, &p, &head).await;
    assert_eq!(
        h.gitlab.git.head(path, "main").as_deref(),
        Some(head.as_str()),
        "no commit"
    );
    h.stop().await;
}

/// graft's record of the target branch is behind its head: adopting would
/// mix two points in time, so it is refused until a sync catches up.
async fn adopt_waits_for_graft_to_follow_the_branch(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let seed = seed();
    h.github
        .git
        .commit(REPO, "main", &as_files(&seed), "brownfield");
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    let old = "1111111111111111111111111111111111111111";
    h.app
        .store
        .record_pull(p.id, Some(old), now_ms())
        .await
        .unwrap();
    let admin = h.app.create_token("admin").await;
    let (status, answer) = call(
        &h,
        &admin,
        Method::POST,
        &format!("/projects/{}/adopt", p.id),
        None,
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(old) && message.contains("/sync"),
        "{message}"
    );
    assert!(h.app.store.files(p.id).await.unwrap().is_empty());
    h.stop().await;
}

/// Adopting decides what graft owns: admin only. Exporting reads files:
/// a generator token of the project may; another project is hidden from
/// it (404, as for every route of a project it does not hold).
async fn scopes(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let seed = seed();
    h.github
        .git
        .commit(REPO, "main", &as_files(&seed), "brownfield");
    let own = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    let other = github_project(&h, REPO, Mode::PullRequest, "other").await;
    let generator = generator_token(&h, &[own.id]).await;
    let (status, _) = call(
        &h,
        &generator,
        Method::POST,
        &format!("/projects/{}/adopt", own.id),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &h,
        &generator,
        Method::GET,
        &format!("/projects/{}/export", other.id),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let response = h
        .app
        .http
        .get(h.app.url(&format!("/api/v1/projects/{}/export", own.id)))
        .bearer_auth(&generator)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    h.stop().await;
}

/// The entries of a tar.gz: path → (content, mode).
fn unpack(bytes: &[u8]) -> std::collections::BTreeMap<String, (Vec<u8>, u32)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_str().unwrap().to_string();
            let mode = entry.header().mode().unwrap();
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
            (path, (content, mode))
        })
        .collect()
}

/// The export holds what the database holds: adopted and generated files,
/// executable bits, and not the files pending deletion.
async fn export_equals_the_database(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let seed = seed();
    h.github
        .git
        .commit(REPO, "main", &as_files(&seed), "brownfield");
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    let admin = h.app.create_token("admin").await;
    let (status, _) = call(
        &h,
        &admin,
        Method::POST,
        &format!("/projects/{}/adopt", p.id),
        Some(json!({"paths": ["main.tf", "modules/vpc/vpc.tf"]})),
    )
    .await;
    assert_eq!(status, 200);
    let mut run = support::sync::input("bin/run.sh", "#!/bin/sh\n");
    run.executable = Some(true);
    let deep = format!("{}/long.tf", "d".repeat(120));
    support::sync::put_quietly(&h, p.id, &[run, support::sync::input(&deep, "# deep\n")]).await;
    h.app
        .store
        .delete_file(p.id, "main.tf", now_ms())
        .await
        .unwrap();

    let response = h
        .app
        .http
        .get(h.app.url(&format!("/api/v1/projects/{}/export", p.id)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/gzip");
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.starts_with("attachment; filename="),
        "{disposition}"
    );
    let entries = unpack(&response.bytes().await.unwrap());
    let expected: std::collections::BTreeMap<String, (Vec<u8>, u32)> = h
        .app
        .store
        .files(p.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|f| f.state != FileState::DeletedPending)
        .map(|f| {
            (
                f.path,
                (f.content, if f.executable { 0o755 } else { 0o644 }),
            )
        })
        .collect();
    assert_eq!(entries, expected);
    assert_eq!(entries.len(), 3, "{:?}", entries.keys());
    assert!(
        !entries.contains_key("main.tf"),
        "pending deletion is left out"
    );
    h.stop().await;
}

fn reasons(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect()
}

/// Commits `infra/b\xff.tf`, a name that is not UTF-8, onto `branch` of
/// the bare repository at `bare`, as a client with a clone would.
fn commit_non_utf8_name(bare: &Path, branch: &str) -> String {
    use std::os::unix::ffi::OsStrExt;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let bare = bare.to_str().unwrap();
    git(w, &["clone", "--quiet", "--branch", branch, bare, "."]);
    let name = std::ffi::OsStr::from_bytes(b"b\xff.tf");
    std::fs::write(w.join("infra").join(name), b"# latin-1\n").unwrap();
    git(w, &["add", "-A"]);
    git(w, &["commit", "--quiet", "-m", "a latin-1 name"]);
    git(w, &["push", "--quiet", "origin", branch]);
    git(w, &["rev-parse", "HEAD"])
}

/// Files a generator could never have sent (a name that is not UTF-8, a
/// control character in the path) are skipped with the reason, the rest
/// adopted; an adopt that finds nothing stores nothing and logs nothing.
async fn adopt_skips_paths_graft_cannot_manage(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    h.github.git.commit(
        REPO,
        "main",
        &[
            ("infra/ok.tf", Some(b"# ok\n".as_slice())),
            ("infra/tab\there.tf", Some(b"# tab\n".as_slice())),
        ],
        "brownfield",
    );
    let head = commit_non_utf8_name(&h.github.git.repo_dir(REPO), "main");
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    let admin = h.app.create_token("admin").await;
    let adopt = format!("/projects/{}/adopt", p.id);

    let (status, answer) = call(&h, &admin, Method::POST, &adopt, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(paths(&answer["adopted"]), vec!["ok.tf"]);
    assert_eq!(
        paths(&answer["skipped"]),
        vec!["b\u{FFFD}.tf", "tab\there.tf"]
    );
    let why = reasons(&answer["skipped"]);
    assert!(why[0].contains("not UTF-8"), "{why:?}");
    assert!(
        why[1].contains("not a path graft manages") && why[1].contains("control"),
        "{why:?}"
    );
    let rows = h.app.store.files(p.id).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].path, "ok.tf");

    // Again: everything is skipped, and nothing is written.
    let events = |kinds: Vec<String>| kinds.iter().filter(|k| *k == "files.adopted").count();
    let before = events(event_kinds(&h, p.id).await);
    let (status, answer) = call(&h, &admin, Method::POST, &adopt, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["adopted"], json!([]));
    assert_eq!(paths(&answer["skipped"]).len(), 3, "{answer}");
    assert_eq!(events(event_kinds(&h, p.id).await), before, "no event");
    let after = h.app.store.require_project(p.id).await.unwrap();
    assert_eq!(after.last_synced_commit_sha.as_deref(), Some(head.as_str()));
    h.stop().await;
}

/// One adopt reads at most a request's total (20 MiB, the files API's
/// limit); the files past it are skipped, and the next adopt takes them.
async fn adopt_stops_at_the_request_total(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let full = vec![b'#'; graft::file_set::MAX_FILE_BYTES];
    let names: Vec<String> = (0..21).map(|i| format!("infra/f{i:02}.tf")).collect();
    let files: Vec<(&str, Option<&[u8]>)> = names
        .iter()
        .map(|n| (n.as_str(), Some(full.as_slice())))
        .collect();
    h.github.git.commit(REPO, "main", &files, "big brownfield");
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    let admin = h.app.create_token("admin").await;
    let adopt = format!("/projects/{}/adopt", p.id);

    let (status, answer) = call(&h, &admin, Method::POST, &adopt, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(paths(&answer["adopted"]).len(), 20);
    assert_eq!(paths(&answer["skipped"]), vec!["f20.tf"]);
    let why = reasons(&answer["skipped"]);
    assert!(why[0].contains("20971520 bytes per request"), "{why:?}");
    assert_eq!(h.app.store.files(p.id).await.unwrap().len(), 20);

    let (status, answer) = call(&h, &admin, Method::POST, &adopt, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(paths(&answer["adopted"]), vec!["f20.tf"]);
    h.stop().await;
}

/// A project whose forge graft has no usable settings for (here a GitLab
/// integration without a token) is graft's configuration problem: 503
/// with what to set, and nothing stored.
async fn adopt_without_forge_settings_is_unavailable(db: TestDb) {
    let h = Harness::start(&db).await;
    let store = &h.app.store;
    let integration = store
        .create_integration(
            &NewIntegration {
                provider: "gitlab",
                name: "tokenless",
                base_url: &h.gitlab.url,
                token_sealed: None,
                webhook_secret_sealed: None,
            },
            now_ms(),
        )
        .await
        .unwrap();
    let project = store
        .create_project(
            &NewProject {
                integration_id: Some(integration),
                ..project_spec(graft::ids::Provider::Gitlab, "acme/infra")
            },
            now_ms(),
        )
        .await
        .unwrap();
    let admin = h.app.create_token("admin").await;
    let (status, answer) = call(
        &h,
        &admin,
        Method::POST,
        &format!("/projects/{}/adopt", project.id),
        None,
    )
    .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "forge_not_configured");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("has no token"), "{message}");
    assert!(store.files(project.id).await.unwrap().is_empty());
    h.stop().await;
}

/// `n` bytes of hex that gzip cannot squeeze much (xorshift), from `seed`.
fn noise(n: usize, mut seed: u64) -> String {
    let mut out = String::with_capacity(n);
    while out.len() < n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.push_str(&format!("{seed:016x}"));
    }
    out.truncate(n);
    out
}

/// An export whose client stops reading stops once a chunk waits past the
/// deadline: its blocking thread ends and its slot is free again; the body
/// ends in an error, not as a short archive. While it runs, an export
/// beyond the limit is refused.
async fn a_stalled_export_frees_its_thread(db: TestDb) {
    use futures_util::StreamExt;
    use graft::http::export::{self, Exports};
    use std::time::Duration;

    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    // Far more than the chunks queued ahead of the client, compressed.
    let files: Vec<_> = (0..4)
        .map(|i| support::sync::input(&format!("f{i}.tf"), &noise(1_000_000, i + 1)))
        .collect();
    support::sync::put_quietly(&h, p.id, &files).await;
    let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    let store = h.app.store.clone();
    let exports = Exports::new(1, Duration::from_millis(300));

    let (body, producer) = export::start(&exports, store.clone(), p.id, paths.clone()).unwrap();
    assert_eq!(exports.running(), 1);
    let busy = export::start(&exports, store.clone(), p.id, paths.clone());
    assert!(busy.is_err_and(|e| e.to_string().contains("try again")));
    // The body is never polled: the producer must give up on its own.
    tokio::time::timeout(Duration::from_secs(20), producer)
        .await
        .expect("the stalled export stops within the deadline")
        .unwrap();
    assert_eq!(exports.running(), 0, "its slot is free");
    let chunks: Vec<_> = body.collect().await;
    assert!(
        chunks.last().is_some_and(|c| c.is_err()),
        "the body ends in an error"
    );

    // A client that reads gets the whole archive through the freed slot.
    let (body, producer) = export::start(&exports, store, p.id, paths).unwrap();
    let bytes: Vec<u8> = body
        .map(|chunk| chunk.unwrap().to_vec())
        .collect::<Vec<_>>()
        .await
        .concat();
    producer.await.unwrap();
    assert_eq!(unpack(&bytes).len(), 4);
    h.stop().await;
}

/// Runs the `graft` binary against the harness's server.
async fn graft(h: &Harness, token: &str, args: &[&str]) -> (bool, String, String) {
    graft_at(&h.app.base, token, args).await
}

/// Runs the `graft` binary against the graft at `url`.
async fn graft_at(url: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .env("GRAFT_URL", url)
        .env("GRAFT_TOKEN", token)
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

/// `graft adopt` and `graft pull`: into an empty directory, a refusal on
/// a local change (nothing written), `--force`, and an update of a file
/// graft wrote and nobody touched.
async fn cli_adopt_and_pull(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let seed = seed();
    h.github
        .git
        .commit(REPO, "main", &as_files(&seed), "brownfield");
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    let id = p.id.to_string();
    let admin = h.app.create_token("admin").await;

    let (ok, out, err) = graft(
        &h,
        &admin,
        &["adopt", "--project", &id, "main.tf", "gone.tf"],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("adopted  main.tf") && out.contains("skipped  gone.tf"),
        "{out}"
    );
    let (ok, out, err) = graft(&h, &admin, &["adopt", "--project", &id]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("adopted  modules/vpc/vpc.tf") && out.contains("skipped  big.tf"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let target = out_dir.to_str().unwrap();
    let (ok, out, err) = graft(&h, &admin, &["pull", "--project", &id, target]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(std::fs::read(out_dir.join("main.tf")).unwrap(), b"# main\n");
    assert_eq!(
        std::fs::read(out_dir.join("modules/vpc/vpc.tf")).unwrap(),
        b"# vpc\n"
    );

    // A local edit is not overwritten by a new server version...
    std::fs::write(out_dir.join("main.tf"), b"# mine\n").unwrap();
    support::sync::put_quietly(
        &h,
        p.id,
        &[
            support::sync::input("main.tf", "# theirs\n"),
            support::sync::input("vpc2.tf", "# new\n"),
        ],
    )
    .await;
    let (ok, out, err) = graft(&h, &admin, &["pull", "--project", &id, target]).await;
    assert!(!ok, "{out}");
    assert!(
        err.contains("changed locally: main.tf") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(out_dir.join("main.tf")).unwrap(), b"# mine\n");
    assert!(
        !out_dir.join("vpc2.tf").exists(),
        "nothing written on a refusal"
    );
    // ...unless forced.
    let (ok, out, err) = graft(&h, &admin, &["pull", "--project", &id, "--force", target]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(
        std::fs::read(out_dir.join("main.tf")).unwrap(),
        b"# theirs\n"
    );
    assert_eq!(std::fs::read(out_dir.join("vpc2.tf")).unwrap(), b"# new\n");
    // A file graft wrote and nobody changed follows the server.
    support::sync::put_quietly(&h, p.id, &[support::sync::input("vpc2.tf", "# newer\n")]).await;
    let (ok, out, err) = graft(&h, &admin, &["pull", "--project", &id, target]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(
        std::fs::read(out_dir.join("vpc2.tf")).unwrap(),
        b"# newer\n"
    );
    h.stop().await;
}

/// A file graft wrote that the project no longer has is removed (with
/// the folders it leaves empty), unless it changed locally: then the pull
/// refuses and removes nothing, like any local change, until the change
/// is undone (or `--force`). Files graft never wrote stay.
async fn a_pull_removes_what_the_project_dropped(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    let id = p.id.to_string();
    let admin = h.app.create_token("admin").await;
    let files = [
        ("keep.tf", "# keep\n"),
        ("gone.tf", "# gone\n"),
        ("mod/deep/x.tf", "# x\n"),
        ("mine.tf", "# mine\n"),
    ];
    let inputs: Vec<_> = files
        .iter()
        .map(|(path, text)| support::sync::input(path, text))
        .collect();
    support::sync::put_quietly(&h, p.id, &inputs).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let target = out.to_str().unwrap();
    let (ok, stdout, err) = graft(&h, &admin, &["pull", "--project", &id, target]).await;
    assert!(ok, "{stdout}{err}");
    std::fs::write(out.join("notes.txt"), b"not graft's\n").unwrap();

    for path in ["gone.tf", "mod/deep/x.tf", "mine.tf"] {
        h.app.store.delete_file(p.id, path, now_ms()).await.unwrap();
    }
    std::fs::write(out.join("mine.tf"), b"# my edit\n").unwrap();
    let (ok, stdout, err) = graft(&h, &admin, &["pull", "--project", &id, target]).await;
    assert!(!ok, "{stdout}");
    assert!(
        err.contains("changed locally: mine.tf") && err.contains("--force"),
        "{err}"
    );
    for path in ["gone.tf", "mod/deep/x.tf", "mine.tf"] {
        assert!(
            out.join(path).exists(),
            "{path}: nothing removed on a refusal"
        );
    }

    std::fs::write(out.join("mine.tf"), b"# mine\n").unwrap();
    let (ok, stdout, err) = graft(&h, &admin, &["pull", "--project", &id, target]).await;
    assert!(ok, "{stdout}{err}");
    assert!(stdout.contains("3 removed"), "{stdout}");
    for path in ["gone.tf", "mod", "mine.tf"] {
        assert!(!out.join(path).exists(), "{path} removed");
    }
    assert_eq!(std::fs::read(out.join("keep.tf")).unwrap(), b"# keep\n");
    assert_eq!(
        std::fs::read(out.join("notes.txt")).unwrap(),
        b"not graft's\n"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join(".graft-pull.json")).unwrap()).unwrap();
    assert_eq!(
        manifest,
        json!({"keep.tf": graft::git::read::blob_id(b"# keep\n").to_string()})
    );

    // `--force` removes a dropped file even when it changed locally.
    h.app
        .store
        .delete_file(p.id, "keep.tf", now_ms())
        .await
        .unwrap();
    std::fs::write(out.join("keep.tf"), b"# changed\n").unwrap();
    let (ok, stdout, err) = graft(&h, &admin, &["pull", "--project", &id, target]).await;
    assert!(
        !ok && err.contains("changed locally: keep.tf"),
        "{stdout}{err}"
    );
    let (ok, stdout, err) = graft(&h, &admin, &["pull", "--project", &id, "--force", target]).await;
    assert!(ok, "{stdout}{err}");
    assert!(!out.join("keep.tf").exists());
    h.stop().await;
}

/// The export as a stand-in for graft serves it: cut off inside the data
/// of `path`, so a pull stops part-way after writing the files before it.
fn cut_inside(export: &[u8], path: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(export)
        .read_to_end(&mut tar)
        .unwrap();
    let mut entries = tar::Archive::new(tar.as_slice());
    let at = entries
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path().unwrap().to_str() == Some(path))
        .map(|e| e.raw_file_position())
        .expect("the path is in the export");
    tar.truncate(usize::try_from(at).unwrap() + 3);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// A stand-in for graft's API: the project's file listing and `export`.
async fn stand_in(listing: Value, export: Vec<u8>) -> (String, tokio::task::JoinHandle<()>) {
    use axum::routing::get;
    let router = axum::Router::new()
        .route(
            "/api/v1/projects/{id}/files",
            get(move || {
                let listing = listing.clone();
                async move { axum::Json(listing) }
            }),
        )
        .route(
            "/api/v1/projects/{id}/export",
            get(move || {
                let export = export.clone();
                async move { export }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (base, server)
}

/// A pull that stops part-way leaves what it wrote recorded: the next
/// pull updates those files instead of calling them changed locally.
async fn a_pull_stopped_part_way_keeps_what_it_wrote(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    let id = p.id.to_string();
    let admin = h.app.create_token("admin").await;
    let put = |a: &'static str, b: &'static str| {
        let files = [
            support::sync::input("a.tf", a),
            support::sync::input("b.tf", b),
        ];
        let h = &h;
        async move { support::sync::put_quietly(h, p.id, &files).await }
    };
    put("# a1\n", "# b1\n").await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let target = out.to_str().unwrap();
    let (ok, stdout, err) = graft(&h, &admin, &["pull", "--project", &id, target]).await;
    assert!(ok, "{stdout}{err}");

    // The next pull breaks off inside b.tf, after writing a.tf.
    put("# a2\n", "# b2 longer\n").await;
    let (_, listing) = call(
        &h,
        &admin,
        Method::GET,
        &format!("/projects/{id}/files"),
        None,
    )
    .await;
    let export = h
        .app
        .http
        .get(h.app.url(&format!("/api/v1/projects/{id}/export")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (url, server) = stand_in(listing, cut_inside(&export, "b.tf")).await;
    let (ok, stdout, err) = graft_at(&url, &admin, &["pull", "--project", &id, target]).await;
    server.abort();
    assert!(!ok, "{stdout}");
    assert!(err.contains("damaged") || err.contains("export"), "{err}");
    assert_eq!(std::fs::read(out.join("a.tf")).unwrap(), b"# a2\n");
    assert_eq!(std::fs::read(out.join("b.tf")).unwrap(), b"# b1\n");

    // The server moves on; neither file was changed locally.
    put("# a3\n", "# b2 longer\n").await;
    let (ok, stdout, err) = graft(&h, &admin, &["pull", "--project", &id, target]).await;
    assert!(ok, "{stdout}{err}");
    assert_eq!(std::fs::read(out.join("a.tf")).unwrap(), b"# a3\n");
    assert_eq!(std::fs::read(out.join("b.tf")).unwrap(), b"# b2 longer\n");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join(".graft-pull.json")).unwrap()).unwrap();
    assert_eq!(
        manifest,
        json!({
            "a.tf": graft::git::read::blob_id(b"# a3\n").to_string(),
            "b.tf": graft::git::read::blob_id(b"# b2 longer\n").to_string(),
        }),
        "one version per file after a finished pull"
    );
    h.stop().await;
}

both_backends!(
    cli_adopt_and_pull,
    a_pull_removes_what_the_project_dropped,
    a_pull_stopped_part_way_keeps_what_it_wrote,
    export_equals_the_database,
    adopt_on_github,
    adopt_on_gitlab,
    adopt_waits_for_graft_to_follow_the_branch,
    adopt_skips_paths_graft_cannot_manage,
    adopt_stops_at_the_request_total,
    adopt_without_forge_settings_is_unavailable,
    a_stalled_export_frees_its_thread,
    scopes
);
