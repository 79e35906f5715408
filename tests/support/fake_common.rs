//! Pieces both fake forges share: list pagination with `Link` headers,
//! ordered webhook delivery, commit listings for push payloads, merges in
//! a bare repository, and request parsing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::git_host::git;

/// One request a fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path without the API prefix, segments decoded.
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Option<Value>,
    pub authorization: Option<String>,
}

pub fn decode_segment(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .to_string()
}

pub fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_segment(k), decode_segment(&v.replace('+', " ")))
        })
        .collect()
}

pub fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// The most a fake reads of a request body: room for a commit carrying a
/// file at GitHub's 100 MiB limit, base64-encoded.
pub const MAX_REQUEST_BYTES: usize = 256 << 20;

/// A request's body; a 413 naming the limit when it is larger, so that an
/// oversized body is never taken for an empty one.
pub async fn read_body(body: axum::body::Body) -> Result<axum::body::Bytes, Response> {
    axum::body::to_bytes(body, MAX_REQUEST_BYTES)
        .await
        .map_err(|_| {
            json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"message": format!("fake forge: request body over {MAX_REQUEST_BYTES} bytes")}),
            )
        })
}

/// Cuts `items` into the page the query asks for and builds the `Link`
/// header (`next`, `last`, `first`, `prev`) pointing at `url` (absolute,
/// without query). GitLab also gets `x-next-page`, `x-total`, ….
pub fn paginate(
    items: Vec<Value>,
    query: &BTreeMap<String, String>,
    url: &str,
    default_per_page: usize,
    max_per_page: usize,
    gitlab_headers: bool,
) -> Response {
    let per_page = (default_per_page, max_per_page);
    let (slice, headers) = page_of(items, query, url, per_page, gitlab_headers);
    (StatusCode::OK, headers, axum::Json(Value::Array(slice))).into_response()
}

/// The page `query` asks for and its pagination headers (`per_page`: the
/// default page size and the largest), for lists that come wrapped in an
/// object (GitHub's `{"total_count", "repositories"}`).
pub fn page_of(
    items: Vec<Value>,
    query: &BTreeMap<String, String>,
    url: &str,
    (default_per_page, max_per_page): (usize, usize),
    gitlab_headers: bool,
) -> (Vec<Value>, HeaderMap) {
    let per_page = query
        .get("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(default_per_page)
        .clamp(1, max_per_page);
    let page = query
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let link_to = |p: usize| {
        let mut q = query.clone();
        q.insert("per_page".into(), per_page.to_string());
        q.insert("page".into(), p.to_string());
        let qs: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{k}={}", graft::forge::http::encode(v)))
            .collect();
        format!("<{url}?{}>", qs.join("&"))
    };
    let mut links = Vec::new();
    if page < last {
        links.push(format!("{}; rel=\"next\"", link_to(page + 1)));
        links.push(format!("{}; rel=\"last\"", link_to(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", link_to(1)));
        links.push(format!("{}; rel=\"prev\"", link_to(page - 1)));
    }
    let mut headers = HeaderMap::new();
    if !links.is_empty() {
        headers.insert("link", HeaderValue::from_str(&links.join(", ")).unwrap());
    }
    if gitlab_headers {
        let next = if page < last {
            (page + 1).to_string()
        } else {
            String::new()
        };
        let prev = if page > 1 {
            (page - 1).to_string()
        } else {
            String::new()
        };
        for (name, value) in [
            ("x-next-page", next),
            ("x-prev-page", prev),
            ("x-page", page.to_string()),
            ("x-per-page", per_page.to_string()),
            ("x-total", total.to_string()),
            ("x-total-pages", last.to_string()),
        ] {
            headers.insert(name, HeaderValue::from_str(&value).unwrap());
        }
    }
    (slice, headers)
}

/// A webhook the fake sent.
#[derive(Debug, Clone)]
pub struct SentHook {
    pub event: String,
    pub body: Value,
    /// graft's answer; `None` when nothing answered (graft was down).
    pub status: Option<u16>,
    /// The forge's own headers (event, delivery id), not the signature.
    pub headers: Vec<(String, String)>,
    /// Unix seconds when the attempt was made.
    pub at: u64,
}

impl SentHook {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Headers a forge adds for a body (signature or token).
pub type Signer = Arc<dyn Fn(&[u8]) -> Vec<(String, String)> + Send + Sync>;

type Queued = (String, Vec<(String, String)>, Value);

/// Delivers webhooks one at a time, in order, to the configured URL.
#[derive(Clone)]
pub struct HookSender {
    tx: mpsc::UnboundedSender<Queued>,
    pub url: Arc<Mutex<Option<String>>>,
    pub sent: Arc<Mutex<Vec<SentHook>>>,
}

impl HookSender {
    pub fn start(signer: Signer) -> HookSender {
        let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
        let url: Arc<Mutex<Option<String>>> = Arc::default();
        let sent: Arc<Mutex<Vec<SentHook>>> = Arc::default();
        let (task_url, task_sent) = (url.clone(), sent.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            while let Some((event, headers, body)) = rx.recv().await {
                let at = now_secs();
                let target = task_url.lock().unwrap().clone();
                let status = match target {
                    Some(target) => {
                        let bytes = serde_json::to_vec(&body).unwrap();
                        let mut request = http
                            .post(&target)
                            .header("Content-Type", "application/json");
                        for (name, value) in headers.iter().cloned().chain(signer(&bytes)) {
                            request = request.header(name, value);
                        }
                        request
                            .body(bytes)
                            .send()
                            .await
                            .ok()
                            .map(|r| r.status().as_u16())
                    }
                    None => None,
                };
                task_sent.lock().unwrap().push(SentHook {
                    event,
                    body,
                    status,
                    headers,
                    at,
                });
            }
        });
        HookSender { tx, url, sent }
    }

    pub fn send(&self, event: &str, headers: Vec<(String, String)>, body: Value) {
        let _ = self.tx.send((event.to_string(), headers, body));
    }

    pub fn sent(&self) -> Vec<SentHook> {
        self.sent.lock().unwrap().clone()
    }
}

pub fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Commits a push of `refname` to `new` brought (oldest first) as push
/// payload entries: `old..new`, or for a new branch the commits no other
/// branch has; the newest `limit` of them, as the forges cut the list.
pub fn push_commits(
    repo_dir: &Path,
    refname: &str,
    old: Option<&str>,
    new: &str,
    author: &str,
    limit: usize,
) -> Vec<Value> {
    let mut args: Vec<String> = vec![
        "rev-list".into(),
        "--reverse".into(),
        format!("--max-count={limit}"),
    ];
    args.extend(pushed_range(repo_dir, refname, old, new));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let list = git(repo_dir, &args);
    list.lines()
        .map(|sha| commit_entry(repo_dir, sha, author))
        .collect()
}

/// How many commits the push brought, whatever the list shows (GitLab's
/// `total_commits_count`).
pub fn pushed_commit_count(repo_dir: &Path, refname: &str, old: Option<&str>, new: &str) -> usize {
    let mut args: Vec<String> = vec!["rev-list".into(), "--count".into()];
    args.extend(pushed_range(repo_dir, refname, old, new));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    git(repo_dir, &args).parse().unwrap_or(0)
}

/// Whether moving a branch from `old` to `new` rewrote it (GitHub's
/// `forced`): `old` is not an ancestor of `new`.
pub fn push_forced(repo_dir: &Path, old: Option<&str>, new: Option<&str>) -> bool {
    let (Some(old), Some(new)) = (old, new) else {
        return false;
    };
    !std::process::Command::new("git")
        .current_dir(repo_dir)
        .args(["merge-base", "--is-ancestor", old, new])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .expect("run git")
        .success()
}

/// The rev-list arguments naming what a push brought.
fn pushed_range(repo_dir: &Path, refname: &str, old: Option<&str>, new: &str) -> Vec<String> {
    let mut args = Vec::new();
    match old {
        Some(old) if !old.chars().all(|c| c == '0') => args.push(format!("{old}..{new}")),
        _ => {
            args.push(new.to_string());
            let others = git(
                repo_dir,
                &["for-each-ref", "--format=%(refname)", "refs/heads"],
            );
            let others: Vec<&str> = others.lines().filter(|r| *r != refname).collect();
            if !others.is_empty() {
                args.push("--not".into());
                args.extend(others.iter().map(|r| r.to_string()));
            }
        }
    }
    args
}

/// One commit as a push payload lists it, with the paths it changed.
fn commit_entry(repo_dir: &Path, sha: &str, author: &str) -> Value {
    let message = git(repo_dir, &["log", "-1", "--format=%s", sha]);
    let changes = git(
        repo_dir,
        &[
            "diff-tree",
            "--root",
            "--no-commit-id",
            "--name-status",
            "-r",
            sha,
        ],
    );
    let (mut added, mut modified, mut removed) = (vec![], vec![], vec![]);
    for line in changes.lines() {
        let Some((kind, path)) = line.split_once('\t') else {
            continue;
        };
        match kind {
            "A" => added.push(path.to_string()),
            "D" => removed.push(path.to_string()),
            _ => modified.push(path.to_string()),
        }
    }
    json!({
        "id": sha,
        "message": message,
        "author": {"name": author, "email": format!("{author}@example.com")},
        "added": added,
        "modified": modified,
        "removed": removed,
    })
}

/// Merges `head` into `base` in the bare repository (a real merge commit,
/// no worktree). `None` when they conflict.
pub fn merge_in_bare(repo_dir: &Path, base: &str, head: &str, message: &str) -> Option<String> {
    let output = std::process::Command::new("git")
        .current_dir(repo_dir)
        .args([
            "merge-tree",
            "--write-tree",
            "--allow-unrelated-histories",
            base,
            head,
        ])
        .output()
        .expect("merge-tree");
    if !output.status.success() {
        return None;
    }
    let tree = String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()?
        .trim()
        .to_string();
    let commit = git(
        repo_dir,
        &["commit-tree", &tree, "-p", base, "-p", head, "-m", message],
    );
    Some(commit)
}

pub fn rev_parse(repo_dir: &Path, rev: &str) -> Option<String> {
    let output = std::process::Command::new("git")
        .current_dir(repo_dir)
        .args(["rev-parse", "--verify", "--quiet", rev])
        .output()
        .expect("rev-parse");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An `updated_at` for an edit: now, but always after `previous`, so two
/// edits within a second still tell apart as the forges' do.
pub fn edited_at(previous: u64) -> u64 {
    now_secs().max(previous + 1)
}

pub fn iso(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A human's push a fake makes just before it answers the first request
/// matching `on` (`"METHOD path-part"`): a commit landing between two calls
/// of a client at a chosen point, not left to timing.
#[derive(Debug, Clone)]
pub struct PushBefore {
    pub on: String,
    pub repo: String,
    pub branch: String,
    pub path: String,
    pub content: Vec<u8>,
    pub user: String,
}

impl PushBefore {
    pub fn matches(&self, method: &str, path: &str) -> bool {
        let (m, part) = self.on.split_once(' ').unwrap_or(("", self.on.as_str()));
        (m.is_empty() || m == method) && path.contains(part)
    }

    /// Takes the push out of `slot` when `method path` is the request it
    /// waits for.
    pub fn take_due(slot: &mut Option<Self>, method: &str, path: &str) -> Option<Self> {
        if slot.as_ref().is_some_and(|p| p.matches(method, path)) {
            slot.take()
        } else {
            None
        }
    }
}

/// Faults injected into the next API calls.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Primary rate limit: `remaining: 0`, reset `reset_in_secs` ahead.
    pub rate_limit: u32,
    pub reset_in_secs: u64,
    /// Secondary rate limit with `Retry-After: retry_after_secs`.
    pub secondary: u32,
    pub retry_after_secs: u64,
    /// 5xx answers.
    pub fail: u32,
    /// Requests whose path contains the first part are refused with 403;
    /// the second part is the permission GitHub names in
    /// `x-accepted-github-permissions`.
    pub forbid: Vec<(String, String)>,
    /// Answers of [`OVERSIZED_BYTES`] (see [`oversized_answer`]).
    pub oversized: u32,
    /// Requests whose path contains one of these answer 502, every time.
    pub broken: Vec<String>,
}

/// How much an oversized answer sends: twice graft's cap on a forge answer.
pub const OVERSIZED_BYTES: usize = 2 * graft::forge::body::MAX_RESPONSE_BYTES;

/// A `200` whose JSON body never ends within graft's cap, streamed without
/// `Content-Length` (as a broken proxy or a misrouted file server might
/// send it), so a client that does not stop reading buffers all of it.
pub fn oversized_answer() -> Response {
    const CHUNK: usize = 64 * 1024;
    static SPACES: [u8; CHUNK] = [b' '; CHUNK];
    let chunks = (0..OVERSIZED_BYTES / CHUNK)
        .map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from_static(&SPACES)));
    let body = axum::body::Body::from_stream(futures_util::stream::iter(chunks));
    (StatusCode::OK, [("content-type", "application/json")], body).into_response()
}

/// Lets a creation through a gate set up to make clients race: it waits
/// until the gate's number of creators arrived, and the last one clears
/// it (`clear`). `false` when the others never came within 10 s: the test
/// is broken, and the fake refuses the creation so that it fails (the gate
/// is cleared, so later creations do not wait too).
pub async fn pass_gate(gate: Option<Arc<tokio::sync::Barrier>>, clear: impl FnOnce()) -> bool {
    let Some(gate) = gate else {
        return true;
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), gate.wait()).await {
        Ok(waited) => {
            if waited.is_leader() {
                clear();
            }
            true
        }
        Err(_) => {
            clear();
            false
        }
    }
}
