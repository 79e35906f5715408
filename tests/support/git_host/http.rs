//! Smart HTTP for the test git server: token auth, then the real `git
//! http-backend` as a CGI, and the push callback with the refs that moved.

use std::collections::HashSet;
use std::process::Stdio;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::io::AsyncWriteExt;

use super::{GitHost, RefUpdate};

fn token_of(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(basic) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text
            .split_once(':')
            .map(|(_, password)| password.to_string());
    }
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::to_string)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"fake git\""),
        )],
        "Invalid username or token.",
    )
        .into_response()
}

/// Runs `git http-backend` as a CGI for one request.
pub(super) async fn serve_git(State(host): State<GitHost>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    host.inner
        .lock()
        .unwrap()
        .requests
        .push(format!("{} {path}?{query}", parts.method));
    let grant = {
        let inner = host.inner.lock().unwrap();
        token_of(&parts.headers).and_then(|t| inner.tokens.get(&t).cloned())
    };
    let Some(grant) = grant.filter(|g| !g.expired()) else {
        return unauthorized();
    };
    let Some(repo) = path
        .trim_start_matches('/')
        .split_once(".git/")
        .map(|(r, _)| r.to_string())
    else {
        return (StatusCode::NOT_FOUND, "not a repository path").into_response();
    };
    // Asked with no lock held: `reaches` may look into the forge's state.
    if !host.repo_dir(&repo).is_dir() || !grant.reaches(&repo) {
        return (StatusCode::NOT_FOUND, "Repository not found.").into_response();
    }
    let user = grant.user;
    let is_push = path.ends_with("/git-receive-pack");
    let before = if is_push {
        Some(host.refs(&repo))
    } else {
        None
    };
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return (StatusCode::BAD_REQUEST, "unreadable body").into_response();
    };
    let header_str = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", host.root.path())
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", &path)
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("QUERY_STRING", &query)
        .env("CONTENT_TYPE", header_str(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env(
            "HTTP_CONTENT_ENCODING",
            header_str(header::CONTENT_ENCODING),
        )
        .env("REMOTE_USER", &user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(protocol) = parts
        .headers
        .get("Git-Protocol")
        .and_then(|v| v.to_str().ok())
    {
        command.env("GIT_PROTOCOL", protocol);
    }
    let Ok(mut child) = command.spawn() else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot run git http-backend",
        )
            .into_response();
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
    }
    let Ok(output) = child.wait_with_output().await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "git http-backend failed").into_response();
    };
    let response = cgi_response(&output.stdout);
    if path.ends_with("/git-upload-pack") && parts.method == axum::http::Method::POST {
        let hook = host.inner.lock().unwrap().after_next_fetch.take();
        if let Some(hook) = hook {
            hook(&repo);
        }
    }
    if let Some(before) = before {
        let after = host.refs(&repo);
        let mut names: HashSet<&String> = before.keys().collect();
        names.extend(after.keys());
        let mut updates: Vec<RefUpdate> = names
            .into_iter()
            .filter(|n| before.get(*n) != after.get(*n))
            .map(|n| RefUpdate {
                name: n.clone(),
                old: before.get(n).cloned(),
                new: after.get(n).cloned(),
            })
            .collect();
        updates.sort_by(|a, b| a.name.cmp(&b.name));
        let hook = host.inner.lock().unwrap().on_push.clone();
        if let (Some(hook), false) = (hook, updates.is_empty()) {
            hook(&repo, &updates, &user);
        }
    }
    response
}

fn cgi_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, gap)) = split else {
        return (StatusCode::BAD_GATEWAY, "malformed CGI output").into_response();
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut status = StatusCode::OK;
    let mut builder = Response::builder();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("Status") {
            status = value
                .split(' ')
                .next()
                .and_then(|code| code.parse::<u16>().ok())
                .and_then(|code| StatusCode::from_u16(code).ok())
                .unwrap_or(StatusCode::OK);
        } else {
            builder = builder.header(name.trim(), value);
        }
    }
    builder
        .status(status)
        .body(Body::from(Bytes::copy_from_slice(&raw[end + gap..])))
        .unwrap_or_else(|_| (StatusCode::BAD_GATEWAY, "bad CGI headers").into_response())
}
