//! `graft push --project ID DIR` against a running graft: ignore files,
//! binary and executable files, the changed-paths summary, `--dry-run`,
//! `--delete-missing`, and a non-zero exit naming the reason for any
//! rejected file.

mod support;

use std::path::Path;

use graft::store::files::FileState;
use support::ui::create_project;
use support::{TestApp, TestDb, default_settings};

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn push(app: &TestApp, token: Option<&str>, args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_graft"));
    command.arg("push").args(args).env("GRAFT_URL", &app.base);
    match token {
        Some(token) => command.env("GRAFT_TOKEN", token),
        None => command.env_remove("GRAFT_TOKEN"),
    };
    let output = command.output().await.unwrap();
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).to_string(),
    }
}

fn write(root: &Path, path: &str, content: &[u8]) {
    let full = root.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, content).unwrap();
}

async fn push_uploads_a_directory(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let token = app.create_token("generator").await;
    let project = create_project(&app, "acme/infra").await;
    let id = project.id.to_string();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "main.tf",
        b"module \"net\" { source = \"./modules/net\" }\n",
    );
    write(
        root,
        "modules/net/vpc.tf",
        b"resource \"aws_vpc\" \"x\" {}\n",
    );
    write(root, "assets/logo.bin", &[0, 159, 146, 150, 255]);
    write(root, "scripts/apply.sh", b"#!/bin/sh\necho hi\n");
    write(root, "prod.tfvars", b"secret = 1\n");
    write(root, "plan.out", b"plan\n");
    write(root, ".graftignore", b"*.tfvars\n");
    write(root, ".gitignore", b"*.out\n");
    write(root, ".git/config", b"[core]\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            root.join("scripts/apply.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let dir_arg = root.to_str().unwrap();

    let run = push(&app, Some(&token), &["--project", &id, dir_arg]).await;
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    for line in [
        "added     .gitignore",
        "added     assets/logo.bin",
        "added     main.tf",
        "added     modules/net/vpc.tf",
        "added     scripts/apply.sh",
    ] {
        assert!(run.stdout.contains(line), "{line}: {}", run.stdout);
    }
    assert!(run.stdout.contains("5 path(s) changed"), "{}", run.stdout);
    assert!(run.stdout.contains("sync job"), "{}", run.stdout);
    let files = app.store.files(project.id).await.unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            ".gitignore",
            "assets/logo.bin",
            "main.tf",
            "modules/net/vpc.tf",
            "scripts/apply.sh"
        ]
    );
    let logo = files.iter().find(|f| f.path == "assets/logo.bin").unwrap();
    assert_eq!(logo.content, [0, 159, 146, 150, 255], "binary content kept");
    let script = files.iter().find(|f| f.path == "scripts/apply.sh").unwrap();
    assert_eq!(script.executable, cfg!(unix));
    assert!(files.iter().all(|f| f.state == FileState::Pending));
    let project_now = app.store.require_project(project.id).await.unwrap();
    assert_eq!(project_now.source.as_deref(), Some("graft push"));

    // The same directory again: nothing changes.
    let run = push(&app, Some(&token), &["--project", &id, dir_arg]).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains("no changes"), "{}", run.stdout);

    // A dry run shows what would change and changes nothing.
    write(root, "main.tf", b"# changed\n");
    std::fs::remove_file(root.join("modules/net/vpc.tf")).unwrap();
    let run = push(
        &app,
        Some(&token),
        &["--project", &id, "--dry-run", "--delete-missing", dir_arg],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains("would modify   main.tf"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("would delete   modules/net/vpc.tf"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("2 path(s) would change"),
        "{}",
        run.stdout
    );
    let unchanged = app
        .store
        .file(project.id, "main.tf")
        .await
        .unwrap()
        .unwrap();
    assert!(unchanged.content.starts_with(b"module"));

    // For real, with --delete-missing.
    let run = push(
        &app,
        Some(&token),
        &["--project", &id, "--delete-missing", dir_arg],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains("modified  main.tf"), "{}", run.stdout);
    assert!(
        run.stdout.contains("deleted   modules/net/vpc.tf"),
        "{}",
        run.stdout
    );
    let vpc = app
        .store
        .file(project.id, "modules/net/vpc.tf")
        .await
        .unwrap();
    assert!(vpc.is_none_or(|f| f.state == FileState::DeletedPending));
    app.stop().await;
}

async fn rejected_files_fail_the_push_with_the_reason(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let token = app.create_token("generator").await;
    let project = create_project(&app, "acme/infra").await;
    let id = project.id.to_string();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "main.tf", b"a = 1\n");
    write(root, "bad\\name.tf", b"b = 1\n");
    write(root, "huge.json", &vec![b' '; 1024 * 1024 + 1]);
    let dir_arg = root.to_str().unwrap();
    let run = push(&app, Some(&token), &["--project", &id, dir_arg]).await;
    assert!(!run.ok);
    assert!(
        run.stderr.contains("rejected: bad\\name.tf:"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("rejected: huge.json:"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("limit"), "{}", run.stderr);
    assert!(
        run.stderr.contains("nothing was uploaded"),
        "{}",
        run.stderr
    );
    assert!(app.store.files(project.id).await.unwrap().is_empty());

    // graft's own refusal (here: no such project) is passed on, non-zero.
    let good = tempfile::tempdir().unwrap();
    write(good.path(), "main.tf", b"a = 1\n");
    let good_arg = good.path().to_str().unwrap();
    let run = push(&app, Some(&token), &["--project", "999", good_arg]).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("999"), "{}", run.stderr);
    assert!(run.stderr.contains("not found"), "{}", run.stderr);
    let run = push(
        &app,
        Some(&token),
        &["--project", "999", "--dry-run", good_arg],
    )
    .await;
    assert!(!run.ok, "a dry run against no project fails too");
    assert!(run.stderr.contains("999"), "{}", run.stderr);

    // A file graft refuses for what it already manages: `main.tf` is a
    // managed file, so `main.tf/inner.tf` cannot be. Named, non-zero, and
    // nothing of the push is stored.
    let run = push(&app, Some(&token), &["--project", &id, good_arg]).await;
    assert!(run.ok, "{}", run.stderr);
    let clash = tempfile::tempdir().unwrap();
    write(clash.path(), "main.tf/inner.tf", b"x = 1\n");
    write(clash.path(), "other.tf", b"y = 1\n");
    let clash_arg = clash.path().to_str().unwrap();
    let run = push(&app, Some(&token), &["--project", &id, clash_arg]).await;
    assert!(!run.ok);
    assert!(
        run.stderr.contains("main.tf/inner.tf") && run.stderr.contains("managed file"),
        "{}",
        run.stderr
    );
    let stored: Vec<String> = app
        .store
        .files(project.id)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(
        stored,
        vec!["main.tf".to_string()],
        "other.tf was not stored either"
    );

    // A wrong token, or none.
    let run = push(&app, Some("graft_wrong"), &["--project", &id, good_arg]).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("GRAFT_TOKEN"), "{}", run.stderr);
    let run = push(&app, None, &["--project", &id, good_arg]).await;
    assert!(!run.ok);
    assert!(
        run.stderr.contains("GRAFT_TOKEN is not set"),
        "{}",
        run.stderr
    );
    app.stop().await;
}

both_backends!(
    push_uploads_a_directory,
    rejected_files_fail_the_push_with_the_reason,
);
