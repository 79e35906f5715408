//! Listing a project's files reads no contents unless they are asked for:
//! memory follows the number of files, not their size.

mod support;

use graft::store::files::{FileInput, FileMeta, FileState};
use graft::store::now_ms;
use serde_json::Value;
use support::ui::{create_project, get_page, login};
use support::{TestApp, TestDb, default_settings};

const FILES: usize = 24;
const FILE_BYTES: usize = 1024 * 1024;

async fn project_with_large_files(app: &TestApp) -> graft::ids::ProjectId {
    let project = create_project(app, "acme/big").await;
    let files: Vec<FileInput> = (0..FILES)
        .map(|n| FileInput {
            path: format!("modules/m{n:02}.tf"),
            content: vec![b'#'; FILE_BYTES],
            sync_on_change: None,
            executable: Some(n == 0),
            source: None,
        })
        .collect();
    app.store
        .put_files(project.id, &files, false, now_ms())
        .await
        .unwrap();
    project.id
}

async fn listings_leave_contents_in_the_database(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let id = project_with_large_files(&app).await;

    // The store's listing: metadata only (the type has no content).
    let listing: Vec<FileMeta> = app.store.file_listing(id).await.unwrap();
    assert_eq!(listing.len(), FILES);
    assert_eq!(listing[0].path, "modules/m00.tf");
    assert!(listing[0].executable && !listing[1].executable);
    for file in &listing {
        assert_eq!(file.size, FILE_BYTES as i64);
        assert_eq!(file.state, FileState::Pending);
        assert_eq!(file.blob_sha.len(), 40);
    }
    assert!(
        app.store
            .file_listing(graft::ids::ProjectId(id.get() + 1000))
            .await
            .unwrap()
            .is_empty()
    );

    // The API: a small answer without contents, contents only when asked.
    let token = app.create_token("admin").await;
    let url = app.url(&format!("/api/v1/projects/{id}/files"));
    let reply = app.http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    let text = reply.text().await.unwrap();
    assert!(text.len() < 16 * 1024, "{} bytes", text.len());
    let body: Value = serde_json::from_str(&text).unwrap();
    let files = body["files"].as_array().unwrap();
    assert_eq!(files.len(), FILES);
    assert!(files.iter().all(|f| f.get("content").is_none()));
    assert_eq!(files[0]["size"], FILE_BYTES);
    assert_eq!(files[0]["executable"], true);
    let with_content: Value = app
        .http
        .get(format!("{url}?content=true"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = &with_content["files"][0];
    assert_eq!(first["content"].as_str().map(str::len), Some(FILE_BYTES));

    // The dashboard's project page lists them all.
    let cookie = login(&app, &token).await;
    let (status, html) = get_page(&app, &format!("/projects/{id}"), &cookie).await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!("Files ({FILES})")), "{html}");
    assert!(html.contains("modules/m23.tf") && html.contains(&FILE_BYTES.to_string()));
    assert!(html.len() < 64 * 1024, "{} bytes", html.len());
    app.stop().await;
}

both_backends!(listings_leave_contents_in_the_database);
