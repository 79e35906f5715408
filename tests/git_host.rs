//! The test git server itself speaks the real protocol: clone, fetch and
//! push through `git http-backend`, token auth, branch protection, push
//! notifications. Later tests rely on it, so it is checked on its own.

mod support;

use std::sync::{Arc, Mutex};

use base64::Engine;
use support::git_host::{GitHost, RefUpdate, git};

fn auth_env(token: &str) -> Vec<(String, String)> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    vec![
        ("GIT_CONFIG_COUNT".into(), "1".into()),
        ("GIT_CONFIG_KEY_0".into(), "http.extraHeader".into()),
        (
            "GIT_CONFIG_VALUE_0".into(),
            format!("Authorization: Basic {basic}"),
        ),
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
    ]
}

fn git_with(
    dir: &std::path::Path,
    env: &[(String, String)],
    args: &[&str],
) -> std::process::Output {
    std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_push_protect_and_notify_over_smart_http() {
    let host = GitHost::start().await;
    host.allow_token("good-token", "octo");
    host.create_repo("acme/infra");
    let first = host.commit(
        "acme/infra",
        "main",
        &[("README.md", Some(b"hello\n"))],
        "initial",
    );
    assert_eq!(
        host.head("acme/infra", "main").as_deref(),
        Some(first.as_str())
    );
    type Seen = Vec<(String, Vec<RefUpdate>, String)>;
    let pushes: Arc<Mutex<Seen>> = Arc::default();
    let seen = pushes.clone();
    host.on_push(Arc::new(move |repo, updates, user| {
        seen.lock()
            .unwrap()
            .push((repo.to_string(), updates.to_vec(), user.to_string()));
    }));

    let work = tempfile::tempdir().unwrap();
    let url = host.clone_url("acme/infra");
    let denied = git_with(
        work.path(),
        &auth_env("bad-token"),
        &["clone", "--quiet", &url, "denied"],
    );
    assert!(!denied.status.success());

    let env = auth_env("good-token");
    let dir = work.path().join("c");
    let ok = tokio::task::spawn_blocking({
        let (url, dir, env) = (url.clone(), dir.clone(), env.clone());
        move || {
            git_with(
                std::path::Path::new("/"),
                &env,
                &["clone", "--quiet", &url, dir.to_str().unwrap()],
            )
        }
    })
    .await
    .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    std::fs::write(dir.join("main.tf"), "# tf\n").unwrap();
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "--quiet", "-m", "add tf"]);
    let pushed = tokio::task::spawn_blocking({
        let (dir, env) = (dir.clone(), env.clone());
        move || {
            git_with(
                &dir,
                &env,
                &["push", "--quiet", "origin", "HEAD:refs/heads/feature"],
            )
        }
    })
    .await
    .unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let new = host.head("acme/infra", "feature").unwrap();
    {
        let pushes = pushes.lock().unwrap();
        assert_eq!(pushes.len(), 1);
        assert_eq!(pushes[0].0, "acme/infra");
        assert_eq!(pushes[0].2, "octo");
        assert_eq!(
            pushes[0].1,
            vec![RefUpdate {
                name: "refs/heads/feature".into(),
                old: None,
                new: Some(new.clone())
            }]
        );
    }
    assert!(host.tree("acme/infra", &new).contains_key("main.tf"));

    host.protect_branch("acme/infra", "main");
    let rejected = tokio::task::spawn_blocking(move || {
        git_with(&dir, &env, &["push", "origin", "HEAD:refs/heads/main"])
    })
    .await
    .unwrap();
    assert!(!rejected.status.success());
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(
        stderr.contains("GH006: Protected branch update failed"),
        "{stderr}"
    );
    assert_eq!(
        host.head("acme/infra", "main").as_deref(),
        Some(first.as_str())
    );
    assert_eq!(
        pushes.lock().unwrap().len(),
        1,
        "a rejected push notifies nothing"
    );
}
