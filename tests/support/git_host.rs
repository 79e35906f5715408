//! A git server for tests: bare repositories served over smart HTTP by the
//! real `git http-backend` on a loopback port, behind token auth, with
//! branch protection and a signed-commits rule (a pre-receive hook that
//! answers like the forge, see `rules`) and a callback after every push.
//! The fake forges build on it, and on `objects` for their API's view of
//! a repository (trees, blobs, commits made through the API).

mod http;
mod objects;
mod rules;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use objects::{Change, Identity, NewCommit, TreeEntry};
pub use rules::SignatureRefusal;

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

/// `git args` in `dir` as a client holding `token` (HTTP Basic auth, as
/// graft sends it), on a blocking thread: a test's own clone or push
/// against a fake forge.
pub async fn git_client(token: &str, dir: &Path, args: &[&str]) -> std::process::Output {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    let mut full = vec![
        "-c".to_string(),
        format!("http.extraHeader=Authorization: Basic {basic}"),
    ];
    full.extend(args.iter().map(|a| a.to_string()));
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("git")
            .current_dir(&dir)
            .args(&full)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Human Dev")
            .env("GIT_AUTHOR_EMAIL", "human@example.com")
            .env("GIT_COMMITTER_NAME", "Human Dev")
            .env("GIT_COMMITTER_EMAIL", "human@example.com")
            .output()
            .expect("run git")
    })
    .await
    .expect("git thread")
}

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
            .fallback(http::serve_git)
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
        std::fs::write(&hook, rules::PRE_RECEIVE).expect("hook");
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

    /// Creates a symlink, a submodule entry or an executable file in a
    /// commit (what `commit` cannot express with plain files).
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
            Special::Executable(content) => {
                let file = w.join(path);
                std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
                std::fs::write(&file, content).expect("write");
                git(w, &["add", path]);
                git(w, &["update-index", "--chmod=+x", path]);
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

    /// Every ref and what it points at, read in-process: it runs twice in
    /// each push's request, where a `git for-each-ref` per call would add
    /// process start-ups a real forge does not have.
    fn refs(&self, repo: &str) -> HashMap<String, String> {
        let repo = gix::open_opts(self.repo_dir(repo), gix::open::Options::isolated())
            .expect("open the bare repository");
        let platform = repo.references().expect("references");
        platform
            .all()
            .expect("all references")
            .filter_map(Result::ok)
            .filter_map(|r| {
                let id = r.target().try_id()?.to_string();
                Some((r.name().as_bstr().to_string(), id))
            })
            .collect()
    }
}

pub enum Special<'a> {
    Symlink(&'a str),
    Submodule(&'a str),
    /// A file of this content with mode 100755.
    Executable(&'a [u8]),
}
