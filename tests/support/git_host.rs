//! A git server for tests: bare repositories served over smart HTTP by the
//! real `git http-backend` on a loopback port, behind token auth, with
//! branch protection (a pre-receive hook that answers like GitHub) and a
//! callback after every push. The fake forges build on it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::io::AsyncWriteExt;

/// One ref moved by a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub name: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

pub type PushHook = Arc<dyn Fn(&str, &[RefUpdate], &str) + Send + Sync>;

/// Where and until when a token works, like a forge's installation token:
/// only the repositories `reaches` admits (asked at each request, so it
/// follows the installation as it changes), and until `expires_at` (Unix
/// seconds). An expired token is refused with 401; a repository out of
/// reach answers 404 "Repository not found.", as for a private one.
#[derive(Clone)]
pub struct TokenScope {
    pub reaches: Arc<dyn Fn(&str) -> bool + Send + Sync>,
    pub expires_at: u64,
}

#[derive(Clone)]
struct Grant {
    /// The user name the push is attributed to.
    user: String,
    /// `None`: every repository, no expiry.
    scope: Option<TokenScope>,
}

impl Grant {
    fn expired(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.scope.as_ref().is_some_and(|s| s.expires_at <= now)
    }

    fn reaches(&self, repo: &str) -> bool {
        self.scope.as_ref().is_none_or(|s| (s.reaches)(repo))
    }
}

#[derive(Default)]
struct Inner {
    tokens: HashMap<String, Grant>,
    on_push: Option<PushHook>,
    /// Runs once, after the next `git-upload-pack` request is answered.
    after_next_fetch: Option<FetchHook>,
    requests: Vec<String>,
}

pub type FetchHook = Box<dyn FnOnce(&str) + Send>;

#[derive(Clone)]
pub struct GitHost {
    pub base: String,
    root: Arc<tempfile::TempDir>,
    inner: Arc<Mutex<Inner>>,
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Human Dev")
        .env("GIT_AUTHOR_EMAIL", "human@example.com")
        .env("GIT_COMMITTER_NAME", "Human Dev")
        .env("GIT_COMMITTER_EMAIL", "human@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

const PRE_RECEIVE: &str = r#"#!/bin/sh
# Branch protection: refuse updates to refs listed in protected-branches,
# unless the push comes from the test itself. The refusal reads like
# GitHub's unless protection-message says otherwise (GitLab's words).
[ -n "$FAKE_BYPASS_PROTECTION" ] && exit 0
while read old new ref; do
  if [ -f protected-branches ] && grep -qx "$ref" protected-branches; then
    if [ -f protection-message ]; then
      cat protection-message >&2
    else
      echo "error: GH006: Protected branch update failed for $ref." >&2
      echo "error: Changes must be made through a pull request." >&2
    fi
    exit 1
  fi
done
exit 0
"#;

impl GitHost {
    pub async fn start() -> GitHost {
        let root = Arc::new(tempfile::tempdir().expect("git host root"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let host = GitHost {
            base,
            root,
            inner: Arc::new(Mutex::new(Inner::default())),
        };
        let app = axum::Router::new()
            .fallback(serve_git)
            .with_state(host.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        host
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Accepts `token` for pushes and fetches in every repository, with no
    /// expiry, attributed to `user`.
    pub fn allow_token(&self, token: &str, user: &str) {
        let grant = Grant {
            user: user.to_string(),
            scope: None,
        };
        self.inner
            .lock()
            .unwrap()
            .tokens
            .insert(token.to_string(), grant);
    }

    /// Accepts `token`, attributed to `user`, within `scope` only.
    pub fn allow_scoped_token(&self, token: &str, user: &str, scope: TokenScope) {
        let grant = Grant {
            user: user.to_string(),
            scope: Some(scope),
        };
        self.inner
            .lock()
            .unwrap()
            .tokens
            .insert(token.to_string(), grant);
    }

    pub fn revoke_token(&self, token: &str) {
        self.inner.lock().unwrap().tokens.remove(token);
    }

    pub fn on_push(&self, hook: PushHook) {
        self.inner.lock().unwrap().on_push = Some(hook);
    }

    /// Runs `hook` (with the repository) once, after the next
    /// `git-upload-pack` request is answered: "someone pushed while graft
    /// was working". With protocol v2 that first request lists the refs
    /// (the pack comes in a second one), so the hook runs after graft has
    /// seen the old heads, which is the moment the tests need.
    pub fn after_next_fetch(&self, hook: FetchHook) {
        self.inner.lock().unwrap().after_next_fetch = Some(hook);
    }

    /// Request lines seen (`METHOD /path?query`), for asserting traffic.
    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.path().join(format!("{repo}.git"))
    }

    pub fn clone_url(&self, repo: &str) -> String {
        format!("{}/{repo}.git", self.base)
    }

    /// Creates an empty bare repository whose default branch is `main`.
    pub fn create_repo(&self, repo: &str) -> PathBuf {
        let dir = self.repo_dir(repo);
        std::fs::create_dir_all(&dir).expect("repo dir");
        git(
            &dir,
            &["init", "--bare", "--quiet", "--initial-branch=main"],
        );
        git(&dir, &["config", "http.receivepack", "true"]);
        let hook = dir.join("hooks/pre-receive");
        std::fs::write(&hook, PRE_RECEIVE).expect("hook");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        dir
    }

    /// Points a new branch `name` at the head of `from` (no webhook).
    pub fn create_branch(&self, repo: &str, name: &str, from: &str) -> String {
        let sha = self.head(repo, from).expect("source branch exists");
        git(
            &self.repo_dir(repo),
            &["update-ref", &format!("refs/heads/{name}"), &sha],
        );
        sha
    }

    pub fn protect_branch(&self, repo: &str, branch: &str) {
        let file = self.repo_dir(repo).join("protected-branches");
        let mut text = std::fs::read_to_string(&file).unwrap_or_default();
        text.push_str(&format!("refs/heads/{branch}\n"));
        std::fs::write(file, text).expect("protect");
    }

    /// What the server prints when it refuses a push to a protected
    /// branch (GitHub's GH006 text unless set).
    pub fn set_protection_message(&self, repo: &str, message: &str) {
        let file = self.repo_dir(repo).join("protection-message");
        std::fs::write(file, format!("{message}\n")).expect("protection message");
    }

    pub fn unprotect_branch(&self, repo: &str, branch: &str) {
        let file = self.repo_dir(repo).join("protected-branches");
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let kept: String = text
            .lines()
            .filter(|l| *l != format!("refs/heads/{branch}"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(file, kept).expect("unprotect");
    }

    /// Commits `files` (path → content; `None` deletes) on `branch` as a
    /// human, directly in the bare repository (no HTTP, no hooks, no
    /// webhook). Returns the new head.
    pub fn commit(
        &self,
        repo: &str,
        branch: &str,
        files: &[(&str, Option<&[u8]>)],
        message: &str,
    ) -> String {
        let work = tempfile::tempdir().expect("work dir");
        let bare = self.repo_dir(repo);
        let w = work.path();
        git(w, &["init", "--quiet", "--initial-branch", branch]);
        git(
            w,
            &[
                "remote",
                "add",
                "origin",
                bare.to_str().expect("utf-8 path"),
            ],
        );
        let exists = std::process::Command::new("git")
            .current_dir(&bare)
            .args([
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}"),
            ])
            .output()
            .expect("rev-parse")
            .status
            .success();
        if exists {
            git(w, &["fetch", "--quiet", "origin", branch]);
            git(w, &["checkout", "--quiet", "-B", branch, "FETCH_HEAD"]);
        }
        for (path, content) in files {
            let target = w.join(path);
            match content {
                Some(bytes) => {
                    std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
                    std::fs::write(&target, bytes).expect("write");
                }
                None => {
                    let _ = std::fs::remove_file(&target);
                }
            }
        }
        git(w, &["add", "-A"]);
        git(w, &["commit", "--quiet", "--allow-empty", "-m", message]);
        let output = std::process::Command::new("git")
            .current_dir(w)
            .args([
                "push",
                "--quiet",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ])
            .env("FAKE_BYPASS_PROTECTION", "1")
            .output()
            .expect("push");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        git(w, &["rev-parse", "HEAD"])
    }

    /// Creates a symlink or a submodule entry in a commit (what `commit`
    /// cannot express with plain files).
    pub fn commit_special(
        &self,
        repo: &str,
        branch: &str,
        path: &str,
        kind: Special,
        message: &str,
    ) -> String {
        let work = tempfile::tempdir().expect("work dir");
        let bare = self.repo_dir(repo);
        let w = work.path();
        git(w, &["init", "--quiet", "--initial-branch", branch]);
        git(
            w,
            &[
                "remote",
                "add",
                "origin",
                bare.to_str().expect("utf-8 path"),
            ],
        );
        git(w, &["fetch", "--quiet", "origin", branch]);
        git(w, &["checkout", "--quiet", "-B", branch, "FETCH_HEAD"]);
        match kind {
            Special::Symlink(target) => {
                let link = w.join(path);
                std::fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
                #[cfg(unix)]
                std::os::unix::fs::symlink(target, &link).expect("symlink");
                git(w, &["add", path]);
            }
            Special::Submodule(sha) => {
                git(
                    w,
                    &[
                        "update-index",
                        "--add",
                        "--cacheinfo",
                        &format!("160000,{sha},{path}"),
                    ],
                );
            }
        }
        git(w, &["commit", "--quiet", "-m", message]);
        git(
            w,
            &[
                "push",
                "--quiet",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ],
        );
        git(w, &["rev-parse", "HEAD"])
    }

    pub fn head(&self, repo: &str, branch: &str) -> Option<String> {
        let output = std::process::Command::new("git")
            .current_dir(self.repo_dir(repo))
            .args([
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}"),
            ])
            .output()
            .expect("rev-parse");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Every entry of the tree at `rev`: path → (mode, object id).
    pub fn tree(&self, repo: &str, rev: &str) -> BTreeMap<String, (String, String)> {
        let listing = git(
            &self.repo_dir(repo),
            &["ls-tree", "-r", "-z", "--full-tree", rev],
        );
        listing
            .split('\0')
            .filter(|l| !l.is_empty())
            .map(|line| {
                let (meta, path) = line.split_once('\t').expect("ls-tree line");
                let parts: Vec<&str> = meta.split(' ').collect();
                (
                    path.to_string(),
                    (parts[0].to_string(), parts[2].to_string()),
                )
            })
            .collect()
    }

    pub fn file(&self, repo: &str, rev: &str, path: &str) -> Option<Vec<u8>> {
        let output = std::process::Command::new("git")
            .current_dir(self.repo_dir(repo))
            .args(["cat-file", "blob", &format!("{rev}:{path}")])
            .output()
            .expect("cat-file");
        output.status.success().then_some(output.stdout)
    }

    /// Commits on `branch` (newest first): (sha, author email, subject).
    pub fn log(&self, repo: &str, branch: &str) -> Vec<(String, String, String)> {
        git(
            &self.repo_dir(repo),
            &["log", "--format=%H%x09%ae%x09%s", branch],
        )
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, '\t');
            (
                parts.next().unwrap_or_default().to_string(),
                parts.next().unwrap_or_default().to_string(),
                parts.next().unwrap_or_default().to_string(),
            )
        })
        .collect()
    }

    fn refs(&self, repo: &str) -> HashMap<String, String> {
        let dir = self.repo_dir(repo);
        let output = std::process::Command::new("git")
            .current_dir(&dir)
            .args(["for-each-ref", "--format=%(refname) %(objectname)"])
            .output()
            .expect("for-each-ref");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| {
                l.split_once(' ')
                    .map(|(r, s)| (r.to_string(), s.to_string()))
            })
            .collect()
    }
}

pub enum Special<'a> {
    Symlink(&'a str),
    Submodule(&'a str),
}

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
async fn serve_git(State(host): State<GitHost>, request: Request) -> Response {
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
