//! graft's git follows no redirect: the forge gave the clone URL, and a
//! redirect to another host must not receive the token header. curl and
//! reqwest already drop `Authorization` across hosts; not following at all
//! keeps that true whatever the transport does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use graft::git::GitAuth;
use graft::git::push::{PushMode, PushRequest};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOKEN: &str = "ghs_redirectsecret123456";

/// Answers every request with `response` and records the request heads.
async fn server(response: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            let response = response.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 16 * 1024];
                let n = stream.read(&mut buffer).await.unwrap_or(0);
                record
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buffer[..n]).into_owned());
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (address, seen)
}

/// The first server redirects everything to the second, which records.
async fn redirecting_pair() -> (String, Arc<Mutex<Vec<String>>>) {
    let (elsewhere, seen) =
        server("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into())
            .await;
    let (origin, _) = server(format!(
        "HTTP/1.1 302 Found\r\nLocation: {elsewhere}/moved.git/info/refs?service=git-upload-pack\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ))
    .await;
    (format!("{origin}/repo.git"), seen)
}

fn auth() -> GitAuth {
    GitAuth::new("x-access-token", SecretString::from(TOKEN))
}

fn carried_token(seen: &Arc<Mutex<Vec<String>>>) -> bool {
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("x-access-token:{TOKEN}"),
    );
    seen.lock()
        .unwrap()
        .iter()
        .any(|request| request.contains(TOKEN) || request.contains(&basic))
}

#[tokio::test]
async fn a_fetch_sends_no_token_where_a_redirect_points() {
    let (url, seen) = redirecting_pair().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mirror.git");
    let result =
        tokio::task::spawn_blocking(move || graft::git::mirror::fetch_path(&path, &url, &auth()))
            .await
            .unwrap();
    let error = result.expect_err("a redirect is not followed").to_string();
    assert!(!error.contains(TOKEN), "{error}");
    assert!(!carried_token(&seen), "the token reached the other host");
    let followed = seen.lock().unwrap().len();
    assert_eq!(followed, 0, "graft followed the redirect to another host");
}

#[tokio::test]
async fn a_push_sends_no_token_where_a_redirect_points() {
    let (url, seen) = redirecting_pair().await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("mirror.git");
    let status = std::process::Command::new("git")
        .args(["init", "--bare", "-q"])
        .arg(&mirror)
        .status()
        .unwrap();
    assert!(status.success());
    let git = |args: &[&str]| {
        let output = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&mirror)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    };
    let tree = git(&["mktree"]);
    let commit: gix::ObjectId = git(&["commit-tree", &tree, "-m", "x"]).parse().unwrap();
    let auth = auth();
    let result = graft::git::push::push(PushRequest {
        mirror: &mirror,
        url: &url,
        auth: &auth,
        commit,
        branch: "graft/x",
        mode: PushMode::ForceWithLease { expected: None },
        timeout: Duration::from_secs(30),
        advertised: None,
    })
    .await;
    let error = result.expect_err("a redirect is not followed").to_string();
    assert!(!error.contains(TOKEN), "{error}");
    assert!(!carried_token(&seen), "the token reached the other host");
    let followed = seen.lock().unwrap().len();
    assert_eq!(followed, 0, "graft followed the redirect to another host");
}
