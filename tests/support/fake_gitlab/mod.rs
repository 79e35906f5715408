//! A stateful fake GitLab (REST v4): users and tokens, projects by id or
//! URL-encoded path, members with access levels, merge requests, notes,
//! award emoji, commit statuses; real git over smart HTTP (a [`GitHost`]);
//! `Push Hook`, `Merge Request Hook` and `Note Hook` webhooks with
//! `X-Gitlab-Token`; `Link` + `x-next-page` pagination; fault injection.

mod api;
mod conformance;
mod repository;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::fake_common::{self, Faults, HookSender, Recorded, SentHook};
use super::git_host::{GitHost, RefUpdate, SignatureRefusal};

pub const BOT_USERNAME: &str = "project_1_bot_graft";
pub const BOT_TOKEN: &str = "glpat-graft-test-token";
/// What GitLab's pre-receive check prints for a push to a protected branch.
pub const PROTECTED_BRANCH_REFUSAL: &str =
    "GitLab: You are not allowed to push code to protected branches on this project.";

#[derive(Debug, Clone)]
pub struct Project {
    pub id: i64,
    pub path: String,
    pub default_branch: String,
    /// `private`, `internal` or `public`.
    pub visibility: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MergeRequest {
    pub project_id: i64,
    pub iid: i64,
    pub title: String,
    pub description: String,
    pub source: String,
    pub target: String,
    pub sha: String,
    pub state: String,
    pub merge_when_pipeline_succeeds: bool,
    pub merge_commit_sha: Option<String>,
    pub author: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub id: i64,
    pub project_id: i64,
    pub iid: i64,
    pub author: String,
    pub body: String,
    /// Who last edited the note (`None`: never edited).
    pub updated_by: Option<String>,
    /// Unix seconds of the last write; every edit moves it on.
    pub updated_at: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommitStatus {
    pub project_id: i64,
    pub sha: String,
    pub name: String,
    pub state: String,
    pub description: Option<String>,
}

/// A project webhook as GitLab stores it (the secret is write-only there).
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectHook {
    pub id: i64,
    pub project: i64,
    pub url: String,
    pub token: String,
    pub push_events: bool,
    pub merge_requests_events: bool,
    pub note_events: bool,
    /// `executable`, `temporarily_disabled` or `disabled`, as GitLab says.
    pub alert_status: String,
    /// Unix seconds until which a temporarily disabled hook is silent.
    pub disabled_until: Option<u64>,
}

pub struct State {
    /// username → id
    pub users: BTreeMap<String, i64>,
    /// token → username
    pub tokens: HashMap<String, String>,
    /// token → scopes (a token missing here has `api`)
    pub scopes: HashMap<String, Vec<String>>,
    /// Project webhooks created through the API.
    pub project_hooks: Vec<ProjectHook>,
    pub projects: BTreeMap<i64, Project>,
    /// (project id, user id) → access level
    pub members: HashMap<(i64, i64), i64>,
    pub merge_requests: Vec<MergeRequest>,
    pub notes: Vec<Note>,
    /// (award id, note id, username, emoji name)
    pub awards: Vec<(i64, i64, String, String)>,
    pub statuses: Vec<CommitStatus>,
    pub next_id: i64,
    pub requests: Vec<Recorded>,
    /// Requests GitLab's documented REST API does not allow (see
    /// `conformance`): each was refused, and fails the test.
    pub violations: Vec<String>,
    pub faults: Faults,
    pub max_per_page: usize,
    /// When set, note creations wait here until this many arrived, so a
    /// race between clients is certain, not left to timing.
    pub note_gate: Option<Arc<tokio::sync::Barrier>>,
    /// A human push to make before answering a matching request.
    pub push_before: Option<fake_common::PushBefore>,
}

impl State {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn user_json(&self, username: &str) -> Value {
        json!({"id": self.users.get(username).copied().unwrap_or(0), "username": username,
               "name": username, "state": "active"})
    }

    pub(crate) fn project_by_path(&self, path: &str) -> Option<&Project> {
        self.projects.values().find(|p| p.path == path)
    }
}

#[derive(Clone)]
pub struct FakeGitlab {
    /// The instance URL (`GITLAB_URL`); the API is under `/api/v4`.
    pub url: String,
    pub git: GitHost,
    pub state: Arc<Mutex<State>>,
    pub hooks: HookSender,
}

impl FakeGitlab {
    pub async fn start() -> FakeGitlab {
        let git = GitHost::start().await;
        let secret = super::GITLAB_SECRET.to_string();
        let hooks = HookSender::start(Arc::new(move |_body: &[u8]| {
            vec![("X-Gitlab-Token".to_string(), secret.clone())]
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut users = BTreeMap::new();
        users.insert(BOT_USERNAME.to_string(), 1);
        let mut tokens = HashMap::new();
        tokens.insert(BOT_TOKEN.to_string(), BOT_USERNAME.to_string());
        git.allow_token(BOT_TOKEN, BOT_USERNAME);
        let fake = FakeGitlab {
            url,
            git,
            state: Arc::new(Mutex::new(State {
                users,
                tokens,
                scopes: HashMap::new(),
                project_hooks: Vec::new(),
                projects: BTreeMap::new(),
                members: HashMap::new(),
                merge_requests: Vec::new(),
                notes: Vec::new(),
                awards: Vec::new(),
                statuses: Vec::new(),
                next_id: 100,
                requests: Vec::new(),
                violations: Vec::new(),
                faults: Faults::default(),
                max_per_page: 100,
                note_gate: None,
                push_before: None,
            })),
            hooks,
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

    pub fn set_webhook_url(&self, url: &str) {
        *self.hooks.url.lock().unwrap() = Some(url.to_string());
    }

    pub fn add_user(&self, username: &str) -> i64 {
        let mut state = self.state.lock().unwrap();
        if let Some(id) = state.users.get(username) {
            return *id;
        }
        let id = state.id();
        state.users.insert(username.to_string(), id);
        id
    }

    /// Creates project `path` (`group/sub/name`) with one commit on `main`;
    /// graft's bot user is a Maintainer.
    pub fn create_project(&self, path: &str) -> i64 {
        let id = self.create_empty_project(path);
        self.git.commit(
            path,
            "main",
            &[("README.md", Some(b"# test project\n".as_slice()))],
            "initial commit",
        );
        id
    }

    /// Creates project `path` with an empty repository (no commit, so no
    /// default branch yet); graft's bot user is a Maintainer.
    pub fn create_empty_project(&self, path: &str) -> i64 {
        self.git.create_repo(path);
        self.git
            .set_protection_message(path, PROTECTED_BRANCH_REFUSAL);
        let mut state = self.state.lock().unwrap();
        let id = state.id();
        state.projects.insert(
            id,
            Project {
                id,
                path: path.to_string(),
                default_branch: "main".to_string(),
                visibility: "private".to_string(),
            },
        );
        state.members.insert((id, 1), 40);
        id
    }

    /// Makes `branch` (which exists) the project's default branch.
    pub fn set_default_branch(&self, project: i64, branch: &str) {
        let mut state = self.state.lock().unwrap();
        let project = state
            .projects
            .get_mut(&project)
            .expect("the project exists");
        assert!(
            self.git.head(&project.path, branch).is_some(),
            "no branch {branch}"
        );
        project.default_branch = branch.to_string();
    }

    pub fn set_access_level(&self, project: i64, username: &str, level: i64) -> i64 {
        let user = self.add_user(username);
        self.state
            .lock()
            .unwrap()
            .members
            .insert((project, user), level);
        user
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

    /// The next `creators` note creations are held until all of them
    /// arrived (each has listed the notes first, so none sees another's).
    pub fn hold_note_creations(&self, creators: usize) {
        self.state.lock().unwrap().note_gate = Some(Arc::new(tokio::sync::Barrier::new(creators)));
    }

    pub fn set_max_per_page(&self, max: usize) {
        self.state.lock().unwrap().max_per_page = max;
    }

    /// A token for `username` (created if new) with these scopes; as on
    /// GitLab, `api` and `write_repository` also push and fetch over git.
    pub fn add_token(&self, token: &str, username: &str, scopes: &[&str]) {
        self.add_user(username);
        if scopes
            .iter()
            .any(|s| ["api", "write_repository"].contains(s))
        {
            self.git.allow_token(token, username);
        }
        let mut state = self.state.lock().unwrap();
        state.tokens.insert(token.to_string(), username.to_string());
        state.scopes.insert(
            token.to_string(),
            scopes.iter().map(|s| s.to_string()).collect(),
        );
    }

    /// Adds a webhook to `project` pointing at `url` with `token` (what
    /// a maintainer does in the project's settings).
    pub fn add_hook(&self, project: i64, url: &str, token: &str) -> i64 {
        let mut state = self.state.lock().unwrap();
        let id = state.id();
        state.project_hooks.push(ProjectHook {
            id,
            project,
            url: url.to_string(),
            token: token.to_string(),
            push_events: true,
            merge_requests_events: true,
            note_events: true,
            alert_status: "executable".to_string(),
            disabled_until: None,
        });
        id
    }

    /// What GitLab does to a hook that keeps failing: `disabled`, or
    /// `temporarily_disabled` for `for_secs`.
    pub fn disable_hook(&self, hook: i64, for_secs: Option<u64>) {
        let mut state = self.state.lock().unwrap();
        let hook = state
            .project_hooks
            .iter_mut()
            .find(|h| h.id == hook)
            .expect("hook exists");
        match for_secs {
            Some(secs) => {
                hook.alert_status = "temporarily_disabled".to_string();
                hook.disabled_until = Some(fake_common::now_secs() + secs);
            }
            None => {
                hook.alert_status = "disabled".to_string();
                hook.disabled_until = None;
            }
        }
    }

    pub fn project_hooks(&self, project: i64) -> Vec<ProjectHook> {
        self.state
            .lock()
            .unwrap()
            .project_hooks
            .iter()
            .filter(|h| h.project == project)
            .cloned()
            .collect()
    }

    pub fn revoke_token(&self, token: &str) {
        self.state.lock().unwrap().tokens.remove(token);
        self.git.revoke_token(token);
    }

    pub fn protect_branch(&self, path: &str, branch: &str) {
        self.git.protect_branch(path, branch);
    }

    pub fn unprotect_branch(&self, path: &str, branch: &str) {
        self.git.unprotect_branch(path, branch);
    }

    /// The push rule "Reject unsigned commits" (`reject_unsigned_commits`)
    /// on project `path`: a push bringing an unsigned commit is refused
    /// with GitLab's pre-receive message; commits made through the API
    /// pass (GitLab signs them).
    pub fn reject_unsigned_commits(&self, path: &str) {
        self.git
            .require_signed_commits(path, "*", SignatureRefusal::Gitlab, None);
    }

    /// Whether GitLab made (and signed) commit `sha` through its API.
    pub fn commit_is_verified(&self, path: &str, sha: &str) -> bool {
        self.git.is_verified(path, sha)
    }

    pub fn set_visibility(&self, project: i64, visibility: &str) {
        if let Some(p) = self.state.lock().unwrap().projects.get_mut(&project) {
            p.visibility = visibility.to_string();
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests refused for not matching GitLab's documented REST API.
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    pub fn merge_requests(&self, project: i64) -> Vec<MergeRequest> {
        let state = self.state.lock().unwrap();
        state
            .merge_requests
            .iter()
            .filter(|m| m.project_id == project)
            .cloned()
            .collect()
    }

    pub fn notes(&self, project: i64, iid: i64) -> Vec<Note> {
        let state = self.state.lock().unwrap();
        state
            .notes
            .iter()
            .filter(|n| n.project_id == project && n.iid == iid)
            .cloned()
            .collect()
    }

    pub fn awards(&self, note: i64) -> Vec<(String, String)> {
        let state = self.state.lock().unwrap();
        state
            .awards
            .iter()
            .filter(|a| a.1 == note)
            .map(|a| (a.2.clone(), a.3.clone()))
            .collect()
    }

    pub fn statuses(&self, project: i64) -> Vec<CommitStatus> {
        let state = self.state.lock().unwrap();
        state
            .statuses
            .iter()
            .filter(|s| s.project_id == project)
            .cloned()
            .collect()
    }

    pub fn webhooks(&self) -> Vec<SentHook> {
        self.hooks.sent()
    }

    /// A human's note on MR `iid`; sends a `Note Hook`.
    pub fn comment_as(&self, project: i64, iid: i64, username: &str, body: &str) -> i64 {
        self.add_user(username);
        let note = {
            let mut state = self.state.lock().unwrap();
            let id = state.id();
            let note = Note {
                id,
                project_id: project,
                iid,
                author: username.to_string(),
                body: body.to_string(),
                updated_by: None,
                updated_at: fake_common::now_secs(),
            };
            state.notes.push(note.clone());
            note
        };
        self.emit_note(&note, "create");
        note.id
    }

    /// A human edits their note; sends a `Note Hook` with action `update`
    /// (GitLab does not include the previous text).
    pub fn edit_note_as(&self, note_id: i64, body: &str) {
        let author = self.note(note_id).author;
        self.edit_note_by(note_id, &author, body);
    }

    /// `editor` edits note `note_id` (a Maintainer may edit anyone's note);
    /// sends a `Note Hook` with action `update`. As on GitLab, the hook's
    /// `user` is the note's author; only `updated_by_id` names the editor.
    pub fn edit_note_by(&self, note_id: i64, editor: &str, body: &str) {
        self.add_user(editor);
        self.set_note_text(note_id, editor, body);
        self.emit_note(&self.note(note_id), "update");
    }

    /// Changes a note's text as `editor` without sending a hook.
    pub fn set_note_text(&self, note_id: i64, editor: &str, body: &str) {
        let mut state = self.state.lock().unwrap();
        let note = state
            .notes
            .iter_mut()
            .find(|n| n.id == note_id)
            .expect("note exists");
        note.body = body.to_string();
        note.updated_by = Some(editor.to_string());
        note.updated_at = fake_common::edited_at(note.updated_at);
    }

    /// Note `note_id` as stored.
    pub fn note(&self, note_id: i64) -> Note {
        self.state
            .lock()
            .unwrap()
            .notes
            .iter()
            .find(|n| n.id == note_id)
            .cloned()
            .expect("note exists")
    }

    /// A human pushes `files` to `branch`; sends the `Push Hook` (and a
    /// `Merge Request Hook` `update` for MRs from that branch).
    pub fn push_as_human(
        &self,
        path: &str,
        branch: &str,
        files: &[(&str, Option<&[u8]>)],
        message: &str,
        username: &str,
    ) -> String {
        self.add_user(username);
        let old = self.git.head(path, branch);
        if old.is_none() {
            self.git.create_branch(path, branch, "main");
        }
        let new = self.git.commit(path, branch, files, message);
        self.after_push(
            path,
            &[RefUpdate {
                name: format!("refs/heads/{branch}"),
                old,
                new: Some(new.clone()),
            }],
            username,
        );
        new
    }

    /// Closes MR `iid` without merging, as `username` (the button on the
    /// website); sends a `Merge Request Hook` with action `close`.
    pub fn close_merge_request(&self, project: i64, iid: i64, username: &str) {
        self.add_user(username);
        let mr = {
            let mut state = self.state.lock().unwrap();
            let mr = state
                .merge_requests
                .iter_mut()
                .find(|m| m.project_id == project && m.iid == iid && m.state == "opened")
                .expect("an open merge request");
            mr.state = "closed".into();
            mr.merge_when_pipeline_succeeds = false;
            mr.clone()
        };
        self.emit_merge_request(&mr, "close", username);
    }

    /// Merges MR `iid` as `username` (the button on the website).
    pub fn merge(&self, project: i64, iid: i64, username: &str) -> Result<String, String> {
        api::merge(self, project, iid, username)
    }

    pub(crate) fn project_json(&self, project: &Project) -> Value {
        let (namespace, name) = project.path.rsplit_once('/').unwrap_or(("", &project.path));
        json!({
            "id": project.id,
            "name": name,
            "path": name,
            "path_with_namespace": project.path,
            "namespace": {"full_path": namespace},
            "visibility": project.visibility,
            // GitLab says none while the repository is empty.
            "default_branch": self
                .git
                .head(&project.path, &project.default_branch)
                .map(|_| project.default_branch.clone()),
            "web_url": format!("{}/{}", self.url, project.path),
            "http_url_to_repo": self.git.clone_url(&project.path),
        })
    }

    fn emit(&self, event: &str, body: Value) {
        self.hooks.send(
            event,
            vec![
                ("X-Gitlab-Event".into(), event.into()),
                ("X-Gitlab-Event-UUID".into(), fake_common::random_id()),
                ("User-Agent".into(), "GitLab/fake".into()),
            ],
            body,
        );
    }

    pub(crate) fn emit_merge_request(&self, mr: &MergeRequest, action: &str, username: &str) {
        self.emit_merge_request_with(mr, action, username, None);
    }

    /// `oldrev` is set, as GitLab does, only when an update brought new
    /// commits (not for a new title or description).
    pub(crate) fn emit_merge_request_with(
        &self,
        mr: &MergeRequest,
        action: &str,
        username: &str,
        oldrev: Option<&str>,
    ) {
        let (project, user) = {
            let state = self.state.lock().unwrap();
            (
                state.projects[&mr.project_id].clone(),
                state.user_json(username),
            )
        };
        self.emit(
            "Merge Request Hook",
            json!({
                "object_kind": "merge_request",
                "event_type": "merge_request",
                "user": user,
                "project": self.project_json(&project),
                "object_attributes": {
                    "iid": mr.iid,
                    "title": mr.title,
                    "source_branch": mr.source,
                    "target_branch": mr.target,
                    "state": mr.state,
                    "action": action,
                    "last_commit": {"id": mr.sha},
                    "merge_commit_sha": mr.merge_commit_sha,
                    "oldrev": oldrev,
                    "url": format!("{}/{}/-/merge_requests/{}", self.url, project.path, mr.iid),
                },
            }),
        );
    }

    pub(crate) fn emit_note(&self, note: &Note, action: &str) {
        let (project, user, updated_by_id) = {
            let state = self.state.lock().unwrap();
            (
                state.projects[&note.project_id].clone(),
                state.user_json(&note.author),
                note.updated_by
                    .as_ref()
                    .map(|u| state.users.get(u).copied()),
            )
        };
        self.emit(
            "Note Hook",
            json!({
                "object_kind": "note",
                "event_type": "note",
                "user": user,
                "project": self.project_json(&project),
                "object_attributes": {"id": note.id, "note": note.body, "noteable_type": "MergeRequest",
                                      "action": action, "system": false,
                                      "author_id": user["id"], "project_id": project.id,
                                      "updated_by_id": updated_by_id,
                                      "updated_at": gitlab_time(note.updated_at),
                                      "url": format!("{}/{}/-/merge_requests/{}#note_{}",
                                                     self.url, project.path, note.iid, note.id)},
                "merge_request": {"iid": note.iid},
            }),
        );
    }

    pub(crate) fn after_push(&self, path: &str, updates: &[RefUpdate], username: &str) {
        let Some(project) = self.state.lock().unwrap().project_by_path(path).cloned() else {
            return;
        };
        let zero = "0".repeat(40);
        for update in updates {
            let Some(branch) = update.name.strip_prefix("refs/heads/") else {
                continue;
            };
            let repo_dir = self.git.repo_dir(path);
            let (commits, total) = match &update.new {
                Some(new) => (
                    fake_common::push_commits(
                        &repo_dir,
                        &update.name,
                        update.old.as_deref(),
                        new,
                        username,
                        20,
                    ),
                    fake_common::pushed_commit_count(
                        &repo_dir,
                        &update.name,
                        update.old.as_deref(),
                        new,
                    ),
                ),
                None => (Vec::new(), 0),
            };
            let user_id = self.add_user(username);
            self.emit(
                "Push Hook",
                json!({
                    "object_kind": "push",
                    "event_name": "push",
                    "ref": update.name,
                    "before": update.old.clone().unwrap_or_else(|| zero.clone()),
                    "after": update.new.clone().unwrap_or_else(|| zero.clone()),
                    "user_id": user_id,
                    "user_username": username,
                    "project_id": project.id,
                    "project": self.project_json(&project),
                    "commits": commits,
                    "total_commits_count": total,
                }),
            );
            let Some(new) = &update.new else { continue };
            let moved: Vec<(MergeRequest, String)> = {
                let mut state = self.state.lock().unwrap();
                state
                    .merge_requests
                    .iter_mut()
                    .filter(|m| {
                        m.project_id == project.id && m.source == branch && m.state == "opened"
                    })
                    .map(|m| {
                        let old = std::mem::replace(&mut m.sha, new.clone());
                        // GitLab cancels auto-merge when new commits arrive,
                        // so they can be reviewed.
                        if old != *new {
                            m.merge_when_pipeline_succeeds = false;
                        }
                        (m.clone(), old)
                    })
                    .collect()
            };
            for (mr, old) in moved {
                self.emit_merge_request_with(&mr, "update", username, Some(&old));
            }
        }
    }
}

/// A time as GitLab writes it in hook payloads (`2026-12-01 10:00:00 UTC`).
fn gitlab_time(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}
