//! A stateful fake GitHub: the REST routes graft uses (shaped like the
//! real API: fields, status codes, error bodies, `Link` pagination), app
//! JWT verification with the test app's public key, expiring installation
//! tokens, real git repositories over smart HTTP (a [`GitHost`]), signed
//! webhooks after pushes, PR changes and comments, and fault injection.
//! Every request is recorded and checked against GitHub's OpenAPI
//! description (see `conformance`).

mod api;
mod commit_mutation;
pub mod conformance;
mod contents;
mod deliveries;
mod graphql;
pub mod graphql_conformance;
mod pulls;
mod refs;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::fake_common::{self, Faults, HookSender, Recorded, SentHook, now_secs};
use super::git_host::{GitHost, RefUpdate, SignatureRefusal};

pub const APP_ID: u64 = 4242;
pub const APP_SLUG: &str = "graft-test";
pub const BOT_LOGIN: &str = "graft-test[bot]";
/// The bot's user id (its noreply address starts with it).
pub const BOT_ID: i64 = 9000;
/// GitHub's largest file (GH001 on a push): an API commit carrying a
/// bigger one is refused. The fake's git pushes do not check it.
pub const MAX_FILE_BYTES: usize = 100 << 20;

pub fn app_private_key() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/github-app.pem"
    ))
    .unwrap()
}

pub fn wrong_private_key() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/wrong-app.pem"
    ))
    .unwrap()
}

fn app_public_key() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/github-app.pub.pem"
    ))
    .unwrap()
}

#[derive(Debug, Clone)]
pub struct Installation {
    pub id: i64,
    pub account: String,
    pub repos: BTreeSet<String>,
}

#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub installation: i64,
    pub expires_at: u64,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub struct Repo {
    pub id: i64,
    pub full_name: String,
    pub default_branch: String,
    pub allow_auto_merge: bool,
    pub private: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pull {
    pub repo: String,
    pub number: i64,
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub head_sha: String,
    pub state: String,
    pub merged: bool,
    pub merge_commit_sha: Option<String>,
    pub auto_merge: bool,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    pub id: i64,
    pub repo: String,
    pub number: i64,
    pub user: String,
    pub body: String,
    /// Unix seconds of the last write; every edit moves it on (GitHub's
    /// `updated_at`, kept distinct even for edits within one second).
    pub updated_at: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckRun {
    pub id: i64,
    pub repo: String,
    pub head_sha: String,
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub repo: String,
    pub sha: String,
    pub state: String,
    pub context: String,
}

pub struct State {
    pub installations: BTreeMap<i64, Installation>,
    pub tokens: HashMap<String, TokenRecord>,
    pub tokens_minted: u32,
    pub token_lifetime: Duration,
    pub repos: BTreeMap<String, Repo>,
    /// login → (id, "User" | "Bot")
    pub users: BTreeMap<String, (i64, String)>,
    /// (repo, login) → role name
    pub roles: HashMap<(String, String), String>,
    pub pulls: Vec<Pull>,
    pub comments: Vec<Comment>,
    /// (reaction id, comment id, user, content)
    pub reactions: Vec<(i64, i64, String, String)>,
    pub check_runs: Vec<CheckRun>,
    pub statuses: Vec<Status>,
    pub next_id: i64,
    pub numbers: HashMap<String, i64>,
    pub requests: Vec<Recorded>,
    pub violations: Vec<String>,
    pub faults: Faults,
    pub max_per_page: usize,
    /// Where `Link` headers point instead of the API (a misconfigured
    /// proxy or GHES hostname).
    pub link_origin: Option<String>,
    /// When set, comment creations wait here until this many arrived, so
    /// a race between clients is certain, not left to timing.
    pub comment_gate: Option<Arc<tokio::sync::Barrier>>,
    /// Manifest-flow codes not converted yet: code → the manifest posted.
    pub manifest_codes: HashMap<String, Value>,
    /// A human push to make before answering a matching request.
    pub push_before: Option<fake_common::PushBefore>,
    /// Redeliveries asked for through `POST /app/hook/deliveries/{id}/attempts`.
    pub redeliveries: u32,
    /// Entries a tree listing holds before it says `truncated` (GitHub:
    /// 100,000).
    pub max_tree_entries: usize,
    /// The largest file an API commit may carry.
    pub max_file_bytes: usize,
}

impl State {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn user_json(&self, login: &str) -> Value {
        let (id, kind) = self
            .users
            .get(login)
            .cloned()
            .unwrap_or((0, "User".to_string()));
        json!({"login": login, "id": id, "type": kind})
    }
}

#[derive(Clone)]
pub struct FakeGithub {
    /// REST base URL, e.g. `http://127.0.0.1:1234` or `…/api/v3`.
    pub api_url: String,
    /// The server root (GraphQL and the prefix hang off it).
    pub root: String,
    pub prefix: String,
    pub git: GitHost,
    pub state: Arc<Mutex<State>>,
    pub hooks: HookSender,
    pub webhook_secret: String,
}

impl FakeGithub {
    pub async fn start() -> FakeGithub {
        Self::start_with_prefix("").await
    }

    /// A GitHub Enterprise Server-shaped fake: REST under `prefix`
    /// (`/api/v3`), GraphQL at `/api/graphql`.
    pub async fn start_with_prefix(prefix: &str) -> FakeGithub {
        let git = GitHost::start().await;
        let secret = super::GITHUB_SECRET.to_string();
        let signing_secret = secret.clone();
        let hooks = HookSender::start(Arc::new(move |body: &[u8]| {
            vec![(
                "X-Hub-Signature-256".to_string(),
                graft::signature::github_signature(&signing_secret, body),
            )]
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let root = format!("http://{}", listener.local_addr().unwrap());
        let mut users = BTreeMap::new();
        users.insert(BOT_LOGIN.to_string(), (BOT_ID, "Bot".to_string()));
        let fake = FakeGithub {
            api_url: format!("{root}{prefix}"),
            root,
            prefix: prefix.to_string(),
            git,
            state: Arc::new(Mutex::new(State {
                installations: BTreeMap::new(),
                tokens: HashMap::new(),
                tokens_minted: 0,
                token_lifetime: Duration::from_secs(3600),
                repos: BTreeMap::new(),
                users,
                roles: HashMap::new(),
                pulls: Vec::new(),
                comments: Vec::new(),
                reactions: Vec::new(),
                check_runs: Vec::new(),
                statuses: Vec::new(),
                next_id: 100,
                numbers: HashMap::new(),
                requests: Vec::new(),
                violations: Vec::new(),
                faults: Faults::default(),
                max_per_page: 100,
                link_origin: None,
                comment_gate: None,
                push_before: None,
                manifest_codes: HashMap::new(),
                redeliveries: 0,
                max_tree_entries: 100_000,
                max_file_bytes: MAX_FILE_BYTES,
            })),
            hooks,
            webhook_secret: secret,
        };
        let router = axum::Router::new()
            .fallback(api::handle)
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let hook_fake = fake.clone();
        fake.git.on_push(Arc::new(
            move |repo: &str, updates: &[RefUpdate], user: &str| {
                hook_fake.after_push(repo, updates, user);
            },
        ));
        fake
    }

    pub fn public_key_pem() -> String {
        app_public_key()
    }

    /// Where webhooks go (graft's `/webhooks/github`).
    pub fn set_webhook_url(&self, url: &str) {
        *self.hooks.url.lock().unwrap() = Some(url.to_string());
    }

    pub fn add_user(&self, login: &str) -> i64 {
        let mut state = self.state.lock().unwrap();
        let id = state.id();
        state
            .users
            .entry(login.to_string())
            .or_insert((id, "User".to_string()))
            .0
    }

    /// Creates `owner/name` with one commit on `main`, installed for the
    /// app in installation `installation` (created if new).
    pub fn create_repo(&self, full_name: &str, installation: i64) -> String {
        self.git.create_repo(full_name);
        let head = self.git.commit(
            full_name,
            "main",
            &[("README.md", Some(b"# test repository\n".as_slice()))],
            "initial commit",
        );
        let owner = full_name.split('/').next().unwrap().to_string();
        self.add_user(&owner);
        let mut state = self.state.lock().unwrap();
        let id = state.id();
        state.repos.insert(
            full_name.to_string(),
            Repo {
                id,
                full_name: full_name.to_string(),
                default_branch: "main".to_string(),
                allow_auto_merge: true,
                private: true,
            },
        );
        state
            .installations
            .entry(installation)
            .or_insert_with(|| Installation {
                id: installation,
                account: owner.clone(),
                repos: BTreeSet::new(),
            })
            .repos
            .insert(full_name.to_string());
        state
            .roles
            .insert((full_name.to_string(), owner), "admin".to_string());
        head
    }

    /// Makes `branch` (which exists) the repository's default branch.
    pub fn set_default_branch(&self, repo: &str, branch: &str) {
        assert!(self.git.head(repo, branch).is_some(), "no branch {branch}");
        let mut state = self.state.lock().unwrap();
        state
            .repos
            .get_mut(repo)
            .expect("the repository exists")
            .default_branch = branch.to_string();
    }

    /// Gives `login` a collaborator role (`admin`, `maintain`, `write`,
    /// `triage`, `read`, or a custom one) on `repo`.
    pub fn set_role(&self, repo: &str, login: &str, role: &str) {
        self.add_user(login);
        self.state
            .lock()
            .unwrap()
            .roles
            .insert((repo.to_string(), login.to_string()), role.to_string());
    }

    /// What GitHub does when someone submits the manifest form and
    /// confirms: remembers the manifest and hands out a one-time code (the
    /// browser then goes to the manifest's `redirect_url` with it).
    pub fn create_app_from_manifest(&self, manifest: &Value) -> String {
        let code = format!("{:x}", rand::random::<u64>());
        self.state
            .lock()
            .unwrap()
            .manifest_codes
            .insert(code.clone(), manifest.clone());
        code
    }

    /// Makes `push` just before answering the first request it matches.
    pub fn push_before(&self, push: fake_common::PushBefore) {
        self.state.lock().unwrap().push_before = Some(push);
    }

    /// The push set up by [`Self::push_before`], if `method path` is due.
    pub(crate) fn due_push(&self, method: &str, path: &str) {
        let due = fake_common::PushBefore::take_due(
            &mut self.state.lock().unwrap().push_before,
            method,
            path,
        );
        if let Some(p) = due {
            self.push_as_human(
                &p.repo,
                &p.branch,
                &[(p.path.as_str(), Some(p.content.as_slice()))],
                "a human commit",
                &p.user,
            );
        }
    }

    pub fn faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.state.lock().unwrap().faults);
    }

    /// The next `creators` comment creations are held until all of them
    /// arrived (each has listed the comments first, so none sees another's).
    pub fn hold_comment_creations(&self, creators: usize) {
        self.state.lock().unwrap().comment_gate =
            Some(Arc::new(tokio::sync::Barrier::new(creators)));
    }

    /// Makes list pages link to `origin` instead of the API.
    pub fn set_link_origin(&self, origin: &str) {
        self.state.lock().unwrap().link_origin = Some(origin.to_string());
    }

    pub fn set_max_per_page(&self, max: usize) {
        self.state.lock().unwrap().max_per_page = max;
    }

    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state.lock().unwrap().token_lifetime = lifetime;
    }

    /// An installation token minted directly (as if through the app's JWT),
    /// for tests that call the API themselves.
    pub fn installation_token(&self, installation: i64) -> String {
        api::issue_token(self, installation)
            .expect("the installation exists")
            .0
    }

    pub fn tokens_minted(&self) -> u32 {
        self.state.lock().unwrap().tokens_minted
    }

    /// Revokes every token of every installation (as when a token leaks).
    pub fn revoke_tokens(&self) {
        let mut state = self.state.lock().unwrap();
        for (token, record) in state.tokens.iter_mut() {
            record.revoked = true;
            self.git.revoke_token(token);
        }
    }

    /// The app is uninstalled and installed again (new id `new`) while
    /// graft hears nothing: the old tokens stop working, no webhook is sent.
    pub fn reinstall_silently(&self, old: i64, new: i64) {
        let mut state = self.state.lock().unwrap();
        for (token, record) in state.tokens.iter_mut() {
            if record.installation == old {
                record.revoked = true;
                self.git.revoke_token(token);
            }
        }
        if let Some(mut installation) = state.installations.remove(&old) {
            installation.id = new;
            state.installations.insert(new, installation);
        }
    }

    /// Uninstalls the app: tokens stop working, `installation` `deleted`
    /// is sent.
    pub fn remove_installation(&self, id: i64) {
        let removed = {
            let mut state = self.state.lock().unwrap();
            for (token, record) in state.tokens.iter_mut() {
                if record.installation == id {
                    record.revoked = true;
                    self.git.revoke_token(token);
                }
            }
            state.installations.remove(&id)
        };
        if let Some(installation) = removed {
            let repos: Vec<Value> = installation
                .repos
                .iter()
                .map(|r| json!({"full_name": r, "name": r.split('/').nth(1)}))
                .collect();
            self.emit(
                "installation",
                json!({
                    "action": "deleted",
                    "installation": {"id": id, "account": {"login": installation.account}},
                    "repositories": repos,
                    "sender": {"login": installation.account, "type": "User"},
                }),
            );
        }
    }

    pub fn protect_branch(&self, repo: &str, branch: &str) {
        self.git.protect_branch(repo, branch);
    }

    /// A ruleset "Require signed commits" on branches matching `pattern`
    /// (`*` for all): a push bringing an unsigned commit is refused with
    /// GH013, as is a REST ref update to one; API commits pass (GitHub
    /// signs them).
    pub fn require_signed_commits(&self, repo: &str, pattern: &str) {
        let rules = format!("{}/{repo}/rules", self.root);
        self.git.require_signed_commits(
            repo,
            pattern,
            SignatureRefusal::GithubRuleset,
            Some(&rules),
        );
    }

    /// The same rule as classic branch protection ("Require signed
    /// commits" on `branch`): refused with GH006.
    pub fn require_signed_commits_by_protection(&self, repo: &str, branch: &str) {
        self.git
            .require_signed_commits(repo, branch, SignatureRefusal::GithubProtection, None);
    }

    /// Whether GitHub shows commit `sha` as Verified (it made it through
    /// its API).
    pub fn commit_is_verified(&self, repo: &str, sha: &str) -> bool {
        self.git.is_verified(repo, sha)
    }

    pub fn set_private(&self, repo: &str, private: bool) {
        if let Some(r) = self.state.lock().unwrap().repos.get_mut(repo) {
            r.private = private;
        }
    }

    /// Tree listings longer than `max` entries are cut and say
    /// `truncated` (GitHub cuts at 100,000 entries or 7 MB).
    pub fn set_max_tree_entries(&self, max: usize) {
        self.state.lock().unwrap().max_tree_entries = max;
    }

    /// API commits carrying a file over `max` bytes are refused (GitHub:
    /// 100 MiB), so the limit can be tested with small files.
    pub fn set_max_file_bytes(&self, max: usize) {
        self.state.lock().unwrap().max_file_bytes = max;
    }

    pub fn set_allow_auto_merge(&self, repo: &str, allowed: bool) {
        if let Some(r) = self.state.lock().unwrap().repos.get_mut(repo) {
            r.allow_auto_merge = allowed;
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    pub fn pulls(&self, repo: &str) -> Vec<Pull> {
        let state = self.state.lock().unwrap();
        state
            .pulls
            .iter()
            .filter(|p| p.repo == repo)
            .cloned()
            .collect()
    }

    pub fn comments(&self, repo: &str, number: i64) -> Vec<Comment> {
        let state = self.state.lock().unwrap();
        state
            .comments
            .iter()
            .filter(|c| c.repo == repo && c.number == number)
            .cloned()
            .collect()
    }

    pub fn reactions(&self, comment_id: i64) -> Vec<(String, String)> {
        let state = self.state.lock().unwrap();
        state
            .reactions
            .iter()
            .filter(|r| r.1 == comment_id)
            .map(|r| (r.2.clone(), r.3.clone()))
            .collect()
    }

    pub fn check_runs(&self, repo: &str) -> Vec<CheckRun> {
        let state = self.state.lock().unwrap();
        state
            .check_runs
            .iter()
            .filter(|c| c.repo == repo)
            .cloned()
            .collect()
    }

    pub fn webhooks(&self) -> Vec<SentHook> {
        self.hooks.sent()
    }

    /// How many redeliveries graft asked for.
    pub fn redeliveries(&self) -> u32 {
        self.state.lock().unwrap().redeliveries
    }

    /// Opens a PR as `user` (as a human would on the website).
    pub fn open_pull(&self, repo: &str, head: &str, base: &str, title: &str, user: &str) -> i64 {
        let head_sha = self.git.head(repo, head).expect("head branch exists");
        let pull = {
            let mut state = self.state.lock().unwrap();
            let number = next_number(&mut state, repo);
            let pull = Pull {
                repo: repo.to_string(),
                number,
                title: title.to_string(),
                body: String::new(),
                head: head.to_string(),
                base: base.to_string(),
                head_sha,
                state: "open".to_string(),
                merged: false,
                merge_commit_sha: None,
                auto_merge: false,
                user: user.to_string(),
            };
            state.pulls.push(pull.clone());
            pull
        };
        self.emit_pull(&pull, "opened", user);
        pull.number
    }

    /// A human's comment on PR `number`; sends `issue_comment` `created`.
    pub fn comment_as(&self, repo: &str, number: i64, user: &str, body: &str) -> i64 {
        self.add_user(user);
        let comment = {
            let mut state = self.state.lock().unwrap();
            let id = state.id();
            let comment = Comment {
                id,
                repo: repo.to_string(),
                number,
                user: user.to_string(),
                body: body.to_string(),
                updated_at: fake_common::now_secs(),
            };
            state.comments.push(comment.clone());
            comment
        };
        self.emit_comment(&comment, "created", None);
        comment.id
    }

    /// A human edits their comment; sends `issue_comment` `edited`.
    pub fn edit_comment_as(&self, comment_id: i64, body: &str) {
        let (comment, previous) = {
            let mut state = self.state.lock().unwrap();
            let comment = state
                .comments
                .iter_mut()
                .find(|c| c.id == comment_id)
                .expect("comment exists");
            let previous = std::mem::replace(&mut comment.body, body.to_string());
            comment.updated_at = fake_common::edited_at(comment.updated_at);
            (comment.clone(), previous)
        };
        self.emit_comment(&comment, "edited", Some(previous));
    }

    /// A human pushes `files` to `branch` (bypassing protection, as an
    /// admin could); sends the same webhooks as a push over HTTP.
    pub fn push_as_human(
        &self,
        repo: &str,
        branch: &str,
        files: &[(&str, Option<&[u8]>)],
        message: &str,
        user: &str,
    ) -> String {
        self.add_user(user);
        let old = self.git.head(repo, branch);
        if old.is_none() {
            let default = self.state.lock().unwrap().repos[repo]
                .default_branch
                .clone();
            self.git.create_branch(repo, branch, &default);
        }
        let new = self.git.commit(repo, branch, files, message);
        self.after_push(
            repo,
            &[RefUpdate {
                name: format!("refs/heads/{branch}"),
                old,
                new: Some(new.clone()),
            }],
            user,
        );
        new
    }

    /// Closes PR `number` without merging, as `user`.
    pub fn close_pull(&self, repo: &str, number: i64, user: &str) {
        let pull = {
            let mut state = self.state.lock().unwrap();
            let Some(p) = state
                .pulls
                .iter_mut()
                .find(|p| p.repo == repo && p.number == number)
            else {
                return;
            };
            p.state = "closed".into();
            p.clone()
        };
        self.emit_pull(&pull, "closed", user);
    }

    /// Merges PR `number` as `user` (the button on the website).
    pub fn merge_pull(&self, repo: &str, number: i64, user: &str) -> Result<String, String> {
        pulls::merge(self, repo, number, user)
    }

    fn installation_of(&self, repo: &str) -> Option<i64> {
        let state = self.state.lock().unwrap();
        state
            .installations
            .values()
            .find(|i| i.repos.contains(repo))
            .map(|i| i.id)
    }

    pub(crate) fn emit(&self, event: &str, mut body: Value) {
        if let Some(repo) = body["repository"]["full_name"].as_str().map(str::to_string)
            && let Some(id) = self.installation_of(&repo)
        {
            body["installation"] = json!({"id": id});
        }
        self.hooks.send(
            event,
            vec![
                ("X-GitHub-Event".into(), event.into()),
                ("X-GitHub-Delivery".into(), fake_common::random_id()),
                ("User-Agent".into(), "GitHub-Hookshot/fake".into()),
            ],
            body,
        );
    }

    pub(crate) fn repo_json(&self, repo: &str) -> Value {
        let state = self.state.lock().unwrap();
        repo_json(&state, &self.root, &self.api_url, &self.git, repo)
    }

    pub(crate) fn emit_pull(&self, pull: &Pull, action: &str, sender: &str) {
        let (pr, sender) = {
            let state = self.state.lock().unwrap();
            (
                pulls::pull_json(self, &state, pull),
                state.user_json(sender),
            )
        };
        let repository = self.repo_json(&pull.repo);
        self.emit(
            "pull_request",
            json!({"action": action, "number": pull.number, "pull_request": pr,
                   "repository": repository, "sender": sender}),
        );
    }

    fn emit_comment(&self, comment: &Comment, action: &str, previous: Option<String>) {
        self.emit_comment_from(comment, action, previous, &comment.user);
    }

    /// `editor` edits comment `comment_id` (anyone with write access may);
    /// the webhook's `sender` is the editor, `comment.user` the author.
    pub fn edit_comment_by(&self, comment_id: i64, editor: &str, body: &str) {
        self.add_user(editor);
        let (comment, previous) = {
            let mut state = self.state.lock().unwrap();
            let comment = state
                .comments
                .iter_mut()
                .find(|c| c.id == comment_id)
                .expect("comment exists");
            let previous = std::mem::replace(&mut comment.body, body.to_string());
            comment.updated_at = fake_common::edited_at(comment.updated_at);
            (comment.clone(), previous)
        };
        self.emit_comment_from(&comment, "edited", Some(previous), editor);
    }

    fn emit_comment_from(
        &self,
        comment: &Comment,
        action: &str,
        previous: Option<String>,
        sender: &str,
    ) {
        let (body, issue, sender) = {
            let state = self.state.lock().unwrap();
            let is_pull = state
                .pulls
                .iter()
                .any(|p| p.repo == comment.repo && p.number == comment.number);
            let mut issue = json!({"number": comment.number, "title": "", "state": "open",
                                   "user": state.user_json(&comment.user)});
            if is_pull {
                issue["pull_request"] = json!({"url": format!("{}/repos/{}/pulls/{}", self.api_url, comment.repo, comment.number)});
            }
            (
                api::comment_json(&state, &self.root, comment),
                issue,
                state.user_json(sender),
            )
        };
        let mut payload = json!({
            "action": action,
            "issue": issue,
            "comment": body,
            "repository": self.repo_json(&comment.repo),
            "sender": sender,
        });
        if let Some(from) = previous {
            payload["changes"] = json!({"body": {"from": from}});
        }
        self.emit("issue_comment", payload);
    }

    /// Webhooks after a push: `push` per branch, `pull_request`
    /// `synchronize` for open PRs whose head moved.
    pub(crate) fn after_push(&self, repo: &str, updates: &[RefUpdate], user: &str) {
        let repo_dir = self.git.repo_dir(repo);
        let zero = "0".repeat(40);
        for update in updates {
            let Some(branch) = update.name.strip_prefix("refs/heads/") else {
                continue;
            };
            let after = update.new.clone().unwrap_or_else(|| zero.clone());
            let commits = match &update.new {
                Some(new) => fake_common::push_commits(
                    &repo_dir,
                    &update.name,
                    update.old.as_deref(),
                    new,
                    user,
                    2048,
                ),
                None => Vec::new(),
            };
            let sender = self.state.lock().unwrap().user_json(user);
            self.emit(
                "push",
                json!({
                    "ref": update.name,
                    "before": update.old.clone().unwrap_or_else(|| zero.clone()),
                    "after": after,
                    "created": update.old.is_none(),
                    "deleted": update.new.is_none(),
                    "forced": fake_common::push_forced(
                        &repo_dir,
                        update.old.as_deref(),
                        update.new.as_deref(),
                    ),
                    "commits": commits,
                    "head_commit": commits.last().cloned(),
                    "pusher": {"name": user},
                    "repository": self.repo_json(repo),
                    "sender": sender,
                }),
            );
            let Some(new) = &update.new else { continue };
            let moved: Vec<Pull> = {
                let mut state = self.state.lock().unwrap();
                state
                    .pulls
                    .iter_mut()
                    .filter(|p| p.repo == repo && p.head == branch && p.state == "open")
                    .map(|p| {
                        p.head_sha = new.clone();
                        p.clone()
                    })
                    .collect()
            };
            for pull in moved {
                self.emit_pull(&pull, "synchronize", user);
            }
        }
    }
}

pub(crate) fn next_number(state: &mut State, repo: &str) -> i64 {
    let n = state.numbers.entry(repo.to_string()).or_insert(0);
    *n += 1;
    *n
}

pub(crate) fn repo_json(
    state: &State,
    root: &str,
    api_url: &str,
    git: &GitHost,
    repo: &str,
) -> Value {
    let record = state.repos.get(repo);
    let owner = repo.split('/').next().unwrap_or_default();
    json!({
        "id": record.map(|r| r.id),
        "node_id": format!("R_{}", record.map(|r| r.id).unwrap_or_default()),
        "name": repo.split('/').nth(1),
        "full_name": repo,
        "private": record.is_none_or(|r| r.private),
        "visibility": if record.is_none_or(|r| r.private) { "private" } else { "public" },
        "owner": state.user_json(owner),
        "html_url": format!("{root}/{repo}"),
        "url": format!("{api_url}/repos/{repo}"),
        "clone_url": git.clone_url(repo),
        "default_branch": record.map(|r| r.default_branch.clone()),
        "allow_auto_merge": record.map(|r| r.allow_auto_merge),
    })
}

pub(crate) fn token_expiry(state: &State) -> u64 {
    now_secs() + state.token_lifetime.as_secs()
}
