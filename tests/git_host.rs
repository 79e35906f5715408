//! The test git server itself speaks the real protocol: clone, fetch and
//! push through `git http-backend`, token auth, branch protection, push
//! notifications. Later tests rely on it, so it is checked on its own, as
//! is the fakes' fidelity where graft's safety depends on it: installation
//! tokens reach their installation only and expire, and a request without
//! valid credentials is refused before any injected fault.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use support::fake_github::{self, FakeGithub};
use support::fake_gitlab::{self, FakeGitlab};
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

/// A JWT of the fake's app, as graft signs it.
fn app_jwt() -> String {
    use octocrab::jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iat": now - 30,
        "exp": now + 540,
        "iss": fake_github::APP_ID.to_string(),
    });
    let key = EncodingKey::from_rsa_pem(fake_github::app_private_key().as_bytes()).unwrap();
    encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
}

/// An installation token minted through the fake's API.
async fn mint(fake: &FakeGithub, installation: i64) -> String {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/app/installations/{installation}/access_tokens",
            fake.api_url
        ))
        .bearer_auth(app_jwt())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["token"].as_str().unwrap().to_string()
}

/// The status of the smart-HTTP ref advertisement of `repo` for `token`
/// (what a clone or push asks first).
async fn advertise(fake: &FakeGithub, repo: &str, token: &str) -> u16 {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    reqwest::Client::new()
        .get(format!(
            "{}/info/refs?service=git-upload-pack",
            fake.git.clone_url(repo)
        ))
        .header("Authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `git args` in `dir` with `token`, off the runtime's threads.
async fn git_as(token: &str, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let (env, dir) = (auth_env(token), dir.to_path_buf());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        git_with(&dir, &env, &args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_token_reaches_its_installations_repositories_until_it_expires() {
    let fake = FakeGithub::start().await;
    fake.create_repo("acme/mine", 1);
    let theirs_head = fake.create_repo("other/theirs", 2);
    let token = mint(&fake, 1).await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    let mine = git_as(
        &token,
        w,
        &["clone", "--quiet", &fake.git.clone_url("acme/mine"), "mine"],
    )
    .await;
    assert!(
        mine.status.success(),
        "{}",
        String::from_utf8_lossy(&mine.stderr)
    );

    // Another installation's repository: no fetch, no push, nothing moves.
    let theirs_url = fake.git.clone_url("other/theirs");
    let fetched = git_as(&token, w, &["clone", "--quiet", &theirs_url, "theirs"]).await;
    assert!(!fetched.status.success());
    assert_eq!(advertise(&fake, "other/theirs", &token).await, 404);
    let dir = w.join("mine");
    git(
        &dir,
        &["commit", "--quiet", "--allow-empty", "-m", "intruder"],
    );
    let pushed = git_as(
        &token,
        &dir,
        &["push", "--quiet", &theirs_url, "HEAD:refs/heads/main"],
    )
    .await;
    assert!(!pushed.status.success());
    assert_eq!(
        fake.git.head("other/theirs", "main").as_deref(),
        Some(theirs_head.as_str())
    );
    assert_eq!(fake.git.log("other/theirs", "main").len(), 1);

    // An expired token of the right installation: 401, nothing moves.
    fake.set_token_lifetime(Duration::ZERO);
    let expired = mint(&fake, 1).await;
    let mine_head = fake.git.head("acme/mine", "main");
    let refused = git_as(
        &expired,
        w,
        &[
            "clone",
            "--quiet",
            &fake.git.clone_url("acme/mine"),
            "again",
        ],
    )
    .await;
    assert!(!refused.status.success());
    assert_eq!(advertise(&fake, "acme/mine", &expired).await, 401);
    assert_eq!(advertise(&fake, "acme/mine", &token).await, 200);
    let pushed = git_as(
        &expired,
        &dir,
        &["push", "--quiet", "origin", "HEAD:refs/heads/main"],
    )
    .await;
    assert!(!pushed.status.success());
    assert_eq!(fake.git.head("acme/mine", "main"), mine_head);
}

#[tokio::test]
async fn github_fake_refuses_bad_credentials_before_an_injected_fault() {
    let fake = FakeGithub::start().await;
    fake.create_repo("acme/infra", 1);
    let token = mint(&fake, 1).await;
    let url = format!("{}/repos/acme/infra", fake.api_url);
    let http = reqwest::Client::new();
    fake.faults(|f| {
        f.fail = 1;
        f.rate_limit = 1;
    });
    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let bogus = http
        .get(&url)
        .bearer_auth("ghs_bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), 401);
    // The faults are still armed, for the first authenticated requests.
    let limited = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(limited.status(), 403);
    let failed = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(failed.status(), 502);
    let ok = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn gitlab_fake_refuses_bad_credentials_before_an_injected_fault() {
    let fake = FakeGitlab::start().await;
    let url = format!("{}/api/v4/user", fake.url);
    let http = reqwest::Client::new();
    fake.faults(|f| {
        f.fail = 1;
        f.rate_limit = 1;
    });
    let anonymous = http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let bogus = http
        .get(&url)
        .header("PRIVATE-TOKEN", "glpat-bogus")
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), 401);
    let with_token = |http: &reqwest::Client| {
        http.get(&url)
            .header("PRIVATE-TOKEN", fake_gitlab::BOT_TOKEN)
            .send()
    };
    assert_eq!(with_token(&http).await.unwrap().status(), 429);
    assert_eq!(with_token(&http).await.unwrap().status(), 502);
    assert_eq!(with_token(&http).await.unwrap().status(), 200);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

/// The GitLab conformance check itself: a request GitLab's documentation
/// does not describe is flagged and refused, so no test passes sending one.
#[tokio::test]
async fn gitlab_fake_flags_requests_gitlab_does_not_document() {
    let fake = FakeGitlab::start().await;
    let project = fake.create_project("acme/live");
    let http = reqwest::Client::new();
    let base = format!("{}/api/v4/projects/{project}", fake.url);
    let cases = [
        (
            "POST",
            "/merge_requests",
            Some(
                serde_json::json!({"source_branch": "x", "target_branch": "main",
                                    "title": "t", "descripton": "typo"}),
            ),
            "unknown attribute `descripton`",
        ),
        (
            "POST",
            "/merge_requests",
            Some(serde_json::json!({"source_branch": "x", "title": "t"})),
            "required attribute `target_branch` missing",
        ),
        (
            "GET",
            "/merge_requests?status=opened",
            None,
            "unknown query parameter `status`",
        ),
        ("DELETE", "/merge_requests/1", None, "no such route"),
    ];
    for (method, path, body, expected) in cases {
        let mut request = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .header("PRIVATE-TOKEN", fake_gitlab::BOT_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "{method} {path}");
        let violations = fake.violations();
        assert!(
            violations.last().is_some_and(|v| v.contains(expected)),
            "{violations:?}"
        );
    }
    assert_eq!(fake.violations().len(), 4);
    assert!(
        fake.merge_requests(project).is_empty(),
        "nothing was created"
    );
}
