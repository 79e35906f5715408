//! The fake GitLab's REST v4 routes, in one handler.

use std::collections::BTreeMap;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::super::fake_common::{
    Recorded, decode_segment, json_response, merge_in_bare, now_secs, paginate, parse_query,
    pass_gate, random_id, read_body,
};
use super::super::git_host::{RefUpdate, git};
use super::{
    CommitStatus, FakeGitlab, MergeRequest, Note, Project, State as FakeState, conformance,
};

fn message(status: StatusCode, text: &str) -> Response {
    json_response(status, json!({"message": text}))
}

fn token_user(state: &FakeState, headers: &HeaderMap) -> Option<String> {
    state.tokens.get(&token_of(headers)?).cloned()
}

fn token_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("private-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string)
        })
}

fn scopes_of(state: &FakeState, headers: &HeaderMap) -> Vec<String> {
    token_of(headers)
        .and_then(|t| state.scopes.get(&t).cloned())
        .unwrap_or_else(|| vec!["api".to_string()])
}

fn insufficient_scope() -> Response {
    json_response(
        StatusCode::FORBIDDEN,
        json!({"error": "insufficient_scope",
               "error_description": "The request requires higher privileges than provided by the access token.",
               "scope": "api read_api"}),
    )
}

pub(super) async fn handle(State(fake): State<FakeGitlab>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(_) => {
                return message(
                    StatusCode::BAD_REQUEST,
                    "400 Bad request - body is not JSON",
                );
            }
        }
    };
    let path = parts.uri.path().to_string();
    let query = parse_query(parts.uri.query());
    let method = parts.method.as_str().to_string();
    fake.state.lock().unwrap().requests.push(Recorded {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        body: (!body.is_null()).then(|| body.clone()),
        authorization: None,
    });
    fake.due_push(&method, &path);
    let Some(rest) = path.strip_prefix("/api/v4/") else {
        return message(StatusCode::NOT_FOUND, "404 Not Found");
    };
    if let Err(violation) = conformance::check(&method, &format!("/{rest}"), &query, &body) {
        fake.state
            .lock()
            .unwrap()
            .violations
            .push(violation.clone());
        return message(
            StatusCode::BAD_REQUEST,
            &format!("fake GitLab: {violation}"),
        );
    }
    // A HEAD is answered as its GET, whose body the server drops.
    let method = if method == "HEAD" {
        "GET".to_string()
    } else {
        method
    };
    // Like GitLab, credentials are checked before anything else can fail.
    let Some(user) = token_user(&fake.state.lock().unwrap(), &parts.headers) else {
        return message(StatusCode::UNAUTHORIZED, "401 Unauthorized");
    };
    if let Some(response) = injected_fault(&fake, rest) {
        return response;
    }
    if parts.method == axum::http::Method::POST && rest.ends_with("/notes") {
        let gate = fake.state.lock().unwrap().note_gate.clone();
        if !pass_gate(gate, || fake.state.lock().unwrap().note_gate = None).await {
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "fake GitLab: the racing note creations never all arrived",
            );
        }
    }
    let segments: Vec<String> = rest.split('/').map(decode_segment).collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let scopes = scopes_of(&fake.state.lock().unwrap(), &parts.headers);
    if let ("GET", ["personal_access_tokens", "self"]) = (method.as_str(), segs.as_slice()) {
        let state = fake.state.lock().unwrap();
        let user_id = state.users.get(&user).copied().unwrap_or(0);
        return json_response(
            StatusCode::OK,
            json!({"id": 77, "name": "graft", "revoked": false, "created_at": "2024-01-01T00:00:00.000Z",
                   "scopes": scopes, "user_id": user_id, "last_used_at": null, "active": true,
                   "expires_at": "2099-01-01"}),
        );
    }
    let may = |s: &str| scopes.iter().any(|x| x == s);
    if !may("api") && (method != "GET" || !may("read_api")) {
        return insufficient_scope();
    }
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["user"]) => {
            let state = fake.state.lock().unwrap();
            json_response(StatusCode::OK, state.user_json(&user))
        }
        ("GET", ["users"]) => {
            let state = fake.state.lock().unwrap();
            let wanted = query.get("username").cloned().unwrap_or_default();
            let found: Vec<Value> = state
                .users
                .keys()
                .filter(|u| **u == wanted)
                .map(|u| state.user_json(u))
                .collect();
            json_response(StatusCode::OK, Value::Array(found))
        }
        ("GET", ["users", id]) => {
            let state = fake.state.lock().unwrap();
            let id: i64 = id.parse().unwrap_or(-1);
            match state.users.iter().find(|(_, uid)| **uid == id) {
                Some((name, _)) => json_response(StatusCode::OK, state.user_json(name)),
                None => message(StatusCode::NOT_FOUND, "404 User Not Found"),
            }
        }
        ("GET", ["projects"]) => super::repository::list_projects(&fake, &user, &query),
        (_, ["projects", id, rest @ ..]) => {
            let (project, level) = {
                let state = fake.state.lock().unwrap();
                let project = match id.parse::<i64>() {
                    Ok(n) => state.projects.get(&n).cloned(),
                    Err(_) => state.project_by_path(id).cloned(),
                };
                let user_id = state.users.get(&user).copied().unwrap_or(-1);
                let level = project
                    .as_ref()
                    .and_then(|p| state.members.get(&(p.id, user_id)).copied())
                    .unwrap_or(0);
                (project, level)
            };
            match project {
                Some(project) if level >= 10 => {
                    if method != "GET" && level < 30 {
                        return message(StatusCode::FORBIDDEN, "403 Forbidden");
                    }
                    if let ("POST", ["hooks", hook, "test", trigger]) = (method.as_str(), rest) {
                        if level < 40 {
                            return message(StatusCode::FORBIDDEN, "403 Forbidden");
                        }
                        return test_hook(&fake, &project, hook, trigger).await;
                    }
                    project_route(&fake, &method, &project, rest, &query, &body, &user)
                }
                _ => message(StatusCode::NOT_FOUND, "404 Project Not Found"),
            }
        }
        _ => message(StatusCode::NOT_FOUND, "404 Not Found"),
    }
}

fn injected_fault(fake: &FakeGitlab, path: &str) -> Option<Response> {
    let mut state = fake.state.lock().unwrap();
    let faults = &mut state.faults;
    if faults
        .forbid
        .iter()
        .any(|(part, _)| path.contains(part.as_str()))
    {
        return Some(message(StatusCode::FORBIDDEN, "403 Forbidden"));
    }
    if faults.rate_limit > 0 {
        faults.rate_limit -= 1;
        let mut response = message(StatusCode::TOO_MANY_REQUESTS, "Retry later");
        let reset = now_secs() + faults.reset_in_secs;
        let headers = response.headers_mut();
        headers.insert("ratelimit-limit", HeaderValue::from_static("600"));
        headers.insert("ratelimit-remaining", HeaderValue::from_static("0"));
        headers.insert(
            "ratelimit-reset",
            HeaderValue::from_str(&reset.to_string()).unwrap(),
        );
        return Some(response);
    }
    if faults.secondary > 0 {
        faults.secondary -= 1;
        let mut response = message(StatusCode::TOO_MANY_REQUESTS, "Retry later");
        response.headers_mut().insert(
            "retry-after",
            HeaderValue::from_str(&faults.retry_after_secs.to_string()).unwrap(),
        );
        return Some(response);
    }
    if faults.fail > 0 {
        faults.fail -= 1;
        return Some(
            (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response(),
        );
    }
    if faults.oversized > 0 {
        faults.oversized -= 1;
        return Some(super::super::fake_common::oversized_answer());
    }
    if faults
        .broken
        .iter()
        .any(|part| path.contains(part.as_str()))
    {
        return Some(message(StatusCode::BAD_GATEWAY, "502 Bad Gateway"));
    }
    None
}

pub(crate) fn mr_json(fake: &FakeGitlab, project: &Project, mr: &MergeRequest) -> Value {
    let state = fake.state.lock().unwrap();
    json!({
        "id": project.id * 1000 + mr.iid,
        "iid": mr.iid,
        "project_id": project.id,
        "title": mr.title,
        "description": mr.description,
        "state": mr.state,
        "source_branch": mr.source,
        "target_branch": mr.target,
        "sha": mr.sha,
        "merge_commit_sha": mr.merge_commit_sha,
        "merge_when_pipeline_succeeds": mr.merge_when_pipeline_succeeds,
        "author": state.user_json(&mr.author),
        "web_url": format!("{}/{}/-/merge_requests/{}", fake.url, project.path, mr.iid),
    })
}

/// A note as GitLab's notes API shows it (`API::Entities::Note`).
fn note_json(state: &FakeState, note: &Note) -> Value {
    let time = |secs: u64| {
        chrono::DateTime::from_timestamp(secs as i64, 0)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_default()
    };
    json!({"id": note.id, "type": null, "body": note.body, "attachment": null,
           "author": state.user_json(&note.author),
           "created_at": time(note.updated_at), "updated_at": time(note.updated_at),
           "system": false, "noteable_id": note.project_id * 1000 + note.iid,
           "noteable_type": "MergeRequest", "project_id": note.project_id,
           "resolvable": false, "confidential": false, "internal": false,
           "imported": false, "imported_from": "none",
           "noteable_iid": note.iid, "commands_changes": {}})
}

fn str_field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

fn find_mr(fake: &FakeGitlab, project: i64, iid: &str) -> Option<MergeRequest> {
    let iid: i64 = iid.parse().ok()?;
    fake.merge_requests(project)
        .into_iter()
        .find(|m| m.iid == iid)
}

fn project_route(
    fake: &FakeGitlab,
    method: &str,
    project: &Project,
    rest: &[&str],
    query: &BTreeMap<String, String>,
    body: &Value,
    user: &str,
) -> Response {
    let list_url = |rest: &str| format!("{}/api/v4/projects/{}{rest}", fake.url, project.id);
    let max = fake.state.lock().unwrap().max_per_page;
    match (method, rest) {
        ("GET", []) => json_response(StatusCode::OK, fake.project_json(project)),
        ("GET", ["repository", "branches", branch]) => match fake.git.head(&project.path, branch) {
            Some(sha) => json_response(
                StatusCode::OK,
                json!({"name": branch, "commit": {"id": sha}}),
            ),
            None => message(StatusCode::NOT_FOUND, "404 Branch Not Found"),
        },
        ("GET", ["repository", "tree"]) => super::repository::tree(fake, project, query),
        ("GET", ["repository", "commits", reference]) => {
            super::repository::commit(fake, project, reference)
        }
        ("GET", ["repository", "files", file_path]) => {
            super::repository::file(fake, project, file_path, query)
        }
        ("POST", ["repository", "commits"]) => {
            super::repository::create_commit(fake, project, body, user)
        }
        ("GET", ["merge_requests"]) => {
            let items: Vec<Value> = fake
                .merge_requests(project.id)
                .iter()
                .rev()
                .filter(|m| {
                    query
                        .get("state")
                        .is_none_or(|s| s == "all" || *s == m.state)
                })
                .filter(|m| query.get("source_branch").is_none_or(|b| *b == m.source))
                .map(|m| mr_json(fake, project, m))
                .collect();
            paginate(items, query, &list_url("/merge_requests"), 20, max, true)
        }
        ("POST", ["merge_requests"]) => create_mr(fake, project, body, user),
        ("GET", ["merge_requests", iid]) => match find_mr(fake, project.id, iid) {
            Some(mr) => json_response(StatusCode::OK, mr_json(fake, project, &mr)),
            None => message(StatusCode::NOT_FOUND, "404 Not found"),
        },
        ("PUT", ["merge_requests", iid]) => update_mr(fake, project, iid, body, user),
        ("POST", ["merge_requests", iid, "cancel_merge_when_pipeline_succeeds"]) => {
            let Some(mr) = find_mr(fake, project.id, iid) else {
                return message(StatusCode::NOT_FOUND, "404 Not found");
            };
            if mr.state != "opened" {
                return message(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed");
            }
            {
                let mut state = fake.state.lock().unwrap();
                if let Some(m) = state
                    .merge_requests
                    .iter_mut()
                    .find(|m| m.project_id == project.id && m.iid == mr.iid)
                {
                    m.merge_when_pipeline_succeeds = false;
                }
            }
            let mr = find_mr(fake, project.id, iid).unwrap();
            json_response(StatusCode::CREATED, mr_json(fake, project, &mr))
        }
        ("PUT", ["merge_requests", iid, "merge"]) => {
            let Some(mr) = find_mr(fake, project.id, iid) else {
                return message(StatusCode::NOT_FOUND, "404 Not found");
            };
            if mr.state != "opened" {
                return message(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed");
            }
            if str_field(body, "sha").is_some_and(|sha| sha != mr.sha) {
                return message(
                    StatusCode::CONFLICT,
                    "SHA does not match HEAD of source branch",
                );
            }
            let wait = body
                .get("merge_when_pipeline_succeeds")
                .and_then(Value::as_bool)
                == Some(true)
                && pending_status(fake, project.id, &mr.sha);
            if wait {
                let mut state = fake.state.lock().unwrap();
                if let Some(m) = state
                    .merge_requests
                    .iter_mut()
                    .find(|m| m.project_id == project.id && m.iid == mr.iid)
                {
                    m.merge_when_pipeline_succeeds = true;
                }
            } else if let Err(e) = merge(fake, project.id, mr.iid, user) {
                return message(StatusCode::METHOD_NOT_ALLOWED, &e);
            }
            let mr = find_mr(fake, project.id, iid).unwrap();
            json_response(StatusCode::OK, mr_json(fake, project, &mr))
        }
        ("GET", ["merge_requests", iid, "notes"]) => {
            let iid: i64 = iid.parse().unwrap_or(-1);
            let state = fake.state.lock().unwrap();
            let mut notes: Vec<&Note> = state
                .notes
                .iter()
                .filter(|n| n.project_id == project.id && n.iid == iid)
                .collect();
            // GitLab's `order_by` (created_at, updated_at; the fake's
            // creation order stands for created_at) and `sort` (asc, desc).
            if query.get("order_by").map(String::as_str) == Some("updated_at") {
                notes.sort_by_key(|n| (n.updated_at, n.id));
            }
            if query.get("sort").map(String::as_str) == Some("desc") {
                notes.reverse();
            }
            let items: Vec<Value> = notes.into_iter().map(|n| note_json(&state, n)).collect();
            paginate(
                items,
                query,
                &list_url(&format!("/merge_requests/{iid}/notes")),
                20,
                max,
                true,
            )
        }
        ("POST", ["merge_requests", iid, "notes"]) => {
            let Some(mr) = find_mr(fake, project.id, iid) else {
                return message(StatusCode::NOT_FOUND, "404 Not found");
            };
            let Some(text) = str_field(body, "body").filter(|t| !t.is_empty()) else {
                return json_response(StatusCode::BAD_REQUEST, json!({"error": "body is missing"}));
            };
            let note = {
                let mut state = fake.state.lock().unwrap();
                let id = state.id();
                let note = Note {
                    id,
                    project_id: project.id,
                    iid: mr.iid,
                    author: user.to_string(),
                    body: text.to_string(),
                    updated_by: None,
                    updated_at: super::fake_common::now_secs(),
                };
                state.notes.push(note.clone());
                note
            };
            fake.emit_note(&note, "create");
            let state = fake.state.lock().unwrap();
            json_response(StatusCode::CREATED, note_json(&state, &note))
        }
        ("GET", ["merge_requests", iid, "notes", id]) => {
            let (iid, id): (i64, i64) = (iid.parse().unwrap_or(-1), id.parse().unwrap_or(-1));
            let state = fake.state.lock().unwrap();
            match state
                .notes
                .iter()
                .find(|n| n.id == id && n.project_id == project.id && n.iid == iid)
            {
                Some(note) => json_response(StatusCode::OK, note_json(&state, note)),
                None => message(StatusCode::NOT_FOUND, "404 Not found"),
            }
        }
        ("PUT", ["merge_requests", _, "notes", id]) => {
            let id: i64 = id.parse().unwrap_or(-1);
            let Some(text) = str_field(body, "body") else {
                return json_response(StatusCode::BAD_REQUEST, json!({"error": "body is missing"}));
            };
            let updated = {
                let mut state = fake.state.lock().unwrap();
                match state
                    .notes
                    .iter_mut()
                    .find(|n| n.id == id && n.project_id == project.id)
                {
                    None => return message(StatusCode::NOT_FOUND, "404 Note Not Found"),
                    Some(n) if n.author != user => {
                        return message(StatusCode::FORBIDDEN, "403 Forbidden");
                    }
                    Some(n) => {
                        n.body = text.to_string();
                        n.updated_by = Some(user.to_string());
                        n.clone()
                    }
                }
            };
            fake.emit_note(&updated, "update");
            let state = fake.state.lock().unwrap();
            json_response(StatusCode::OK, note_json(&state, &updated))
        }
        ("DELETE", ["merge_requests", _, "notes", id]) => {
            let id: i64 = id.parse().unwrap_or(-1);
            let mut state = fake.state.lock().unwrap();
            let before = state.notes.len();
            state
                .notes
                .retain(|n| !(n.id == id && n.project_id == project.id));
            if state.notes.len() == before {
                return message(StatusCode::NOT_FOUND, "404 Note Not Found");
            }
            StatusCode::NO_CONTENT.into_response()
        }
        ("GET", ["merge_requests", iid, "notes", id, "award_emoji"]) => {
            let url = list_url(&format!("/merge_requests/{iid}/notes/{id}/award_emoji"));
            let id: i64 = id.parse().unwrap_or(-1);
            let state = fake.state.lock().unwrap();
            if !state
                .notes
                .iter()
                .any(|n| n.id == id && n.project_id == project.id)
            {
                return message(StatusCode::NOT_FOUND, "404 Note Not Found");
            }
            let items = state
                .awards
                .iter()
                .filter(|a| a.1 == id)
                .map(|a| {
                    json!({"id": a.0, "name": a.3, "user": state.user_json(&a.2),
                                "awardable_id": id, "awardable_type": "Note"})
                })
                .collect();
            paginate(items, query, &url, 20, max, true)
        }
        ("POST", ["merge_requests", _, "notes", id, "award_emoji"]) => {
            let id: i64 = id.parse().unwrap_or(-1);
            let name = str_field(body, "name").unwrap_or_default().to_string();
            let mut state = fake.state.lock().unwrap();
            if !state
                .notes
                .iter()
                .any(|n| n.id == id && n.project_id == project.id)
            {
                return message(StatusCode::NOT_FOUND, "404 Note Not Found");
            }
            if state
                .awards
                .iter()
                .any(|a| a.1 == id && a.2 == user && a.3 == name)
            {
                // What GitLab says (lib/api/award_emoji.rb: not_found!).
                return json_response(
                    StatusCode::NOT_FOUND,
                    json!({"message": "404 Award Emoji Name has already been taken Not Found"}),
                );
            }
            let award_id = state.id();
            state
                .awards
                .push((award_id, id, user.to_string(), name.clone()));
            json_response(
                StatusCode::CREATED,
                json!({"id": award_id, "name": name, "user": state.user_json(user)}),
            )
        }
        ("DELETE", ["merge_requests", _, "notes", id, "award_emoji", award_id]) => {
            let id: i64 = id.parse().unwrap_or(-1);
            let award_id: i64 = award_id.parse().unwrap_or(-1);
            let mut state = fake.state.lock().unwrap();
            let Some(award) = state
                .awards
                .iter()
                .position(|a| a.0 == award_id && a.1 == id)
            else {
                return message(StatusCode::NOT_FOUND, "404 Award Emoji Not Found");
            };
            // GitLab lets a user take back only their own award.
            if state.awards[award].2 != user {
                return message(StatusCode::FORBIDDEN, "403 Forbidden");
            }
            state.awards.remove(award);
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", ["statuses", sha]) => set_status(fake, project, sha, body, user),
        (_, ["hooks"]) | (_, ["hooks", _]) => {
            project_hooks(fake, method, project, rest, body, user)
        }
        ("GET", ["members", "all", user_id]) => {
            let user_id: i64 = user_id.parse().unwrap_or(-1);
            let state = fake.state.lock().unwrap();
            match state.members.get(&(project.id, user_id)) {
                Some(level) => {
                    let name = state
                        .users
                        .iter()
                        .find(|(_, id)| **id == user_id)
                        .map(|(n, _)| n.clone())
                        .unwrap_or_default();
                    json_response(
                        StatusCode::OK,
                        json!({"id": user_id, "username": name, "access_level": level}),
                    )
                }
                None => message(StatusCode::NOT_FOUND, "404 Not found"),
            }
        }
        _ => message(StatusCode::NOT_FOUND, "404 Not Found"),
    }
}

/// `POST /projects/:id/hooks/:hook_id/test/push_events`: sends the hook a
/// push event of the default branch's head, at once; when the receiver
/// answers 2xx the hook is enabled again (GitLab's way to re-enable a
/// disabled hook), else 422.
async fn test_hook(fake: &FakeGitlab, project: &Project, hook: &str, trigger: &str) -> Response {
    if trigger != "push_events" {
        return message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "trigger not supported by the fake",
        );
    }
    let hook_id: i64 = hook.parse().unwrap_or(-1);
    let Some((url, token)) = fake
        .state
        .lock()
        .unwrap()
        .project_hooks
        .iter()
        .find(|h| h.id == hook_id && h.project == project.id)
        .map(|h| (h.url.clone(), h.token.clone()))
    else {
        return message(StatusCode::NOT_FOUND, "404 Hook Not Found");
    };
    let head = fake.git.head(&project.path, "main").unwrap_or_default();
    let payload = json!({
        "object_kind": "push", "event_name": "push", "ref": "refs/heads/main",
        "before": head, "after": head, "user_id": 1, "user_username": super::BOT_USERNAME,
        "project_id": project.id, "project": fake.project_json(project),
        "commits": [], "total_commits_count": 0,
    });
    let answered = reqwest::Client::new()
        .post(&url)
        .header("X-Gitlab-Event", "Push Hook")
        .header("X-Gitlab-Token", token)
        .header("X-Gitlab-Event-UUID", random_id())
        .json(&payload)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16());
    match answered {
        Some(code) if (200..300).contains(&code) => {
            let mut state = fake.state.lock().unwrap();
            if let Some(h) = state.project_hooks.iter_mut().find(|h| h.id == hook_id) {
                h.alert_status = "executable".to_string();
                h.disabled_until = None;
            }
            json_response(StatusCode::CREATED, json!({"message": "201 Created"}))
        }
        other => message(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("Hook execution failed: {other:?}"),
        ),
    }
}

/// `GET/POST /projects/:id/hooks`, `PUT /projects/:id/hooks/:hook_id`:
/// Maintainer (40) and up only, like GitLab.
fn project_hooks(
    fake: &FakeGitlab,
    method: &str,
    project: &Project,
    rest: &[&str],
    body: &Value,
    user: &str,
) -> Response {
    let mut state = fake.state.lock().unwrap();
    let user_id = state.users.get(user).copied().unwrap_or(-1);
    let level = state
        .members
        .get(&(project.id, user_id))
        .copied()
        .unwrap_or(0);
    if level < 40 {
        return message(StatusCode::FORBIDDEN, "403 Forbidden");
    }
    let hook_json = |h: &super::ProjectHook| {
        json!({"id": h.id, "url": h.url, "project_id": h.project, "push_events": h.push_events,
               "merge_requests_events": h.merge_requests_events, "note_events": h.note_events,
               "enable_ssl_verification": true, "created_at": "2024-01-01T00:00:00.000Z",
               "alert_status": h.alert_status,
               "disabled_until": h.disabled_until.map(super::super::fake_common::iso)})
    };
    let flag =
        |name: &str, default: bool| body.get(name).and_then(Value::as_bool).unwrap_or(default);
    match (method, rest) {
        ("GET", ["hooks"]) => {
            let hooks: Vec<Value> = state
                .project_hooks
                .iter()
                .filter(|h| h.project == project.id)
                .map(hook_json)
                .collect();
            json_response(StatusCode::OK, Value::Array(hooks))
        }
        ("POST", ["hooks"]) => {
            let Some(url) = str_field(body, "url").filter(|u| !u.is_empty()) else {
                return json_response(StatusCode::BAD_REQUEST, json!({"error": "url is missing"}));
            };
            let id = state.id();
            let hook = super::ProjectHook {
                id,
                project: project.id,
                url: url.to_string(),
                token: str_field(body, "token").unwrap_or_default().to_string(),
                push_events: flag("push_events", true),
                merge_requests_events: flag("merge_requests_events", false),
                note_events: flag("note_events", false),
                alert_status: "executable".to_string(),
                disabled_until: None,
            };
            let json = hook_json(&hook);
            state.project_hooks.push(hook);
            json_response(StatusCode::CREATED, json)
        }
        ("PUT", ["hooks", id]) => {
            let id: i64 = id.parse().unwrap_or(-1);
            let Some(hook) = state
                .project_hooks
                .iter_mut()
                .find(|h| h.id == id && h.project == project.id)
            else {
                return message(StatusCode::NOT_FOUND, "404 Not found");
            };
            if let Some(url) = str_field(body, "url") {
                hook.url = url.to_string();
            }
            if let Some(token) = str_field(body, "token") {
                hook.token = token.to_string();
            }
            hook.push_events = flag("push_events", hook.push_events);
            hook.merge_requests_events = flag("merge_requests_events", hook.merge_requests_events);
            hook.note_events = flag("note_events", hook.note_events);
            let json = hook_json(hook);
            json_response(StatusCode::OK, json)
        }
        _ => message(StatusCode::NOT_FOUND, "404 Not Found"),
    }
}

fn create_mr(fake: &FakeGitlab, project: &Project, body: &Value, user: &str) -> Response {
    for field in ["source_branch", "target_branch", "title"] {
        if str_field(body, field).is_none_or(str::is_empty) {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("{field} is missing")}),
            );
        }
    }
    let source = str_field(body, "source_branch")
        .unwrap_or_default()
        .to_string();
    let target = str_field(body, "target_branch")
        .unwrap_or_default()
        .to_string();
    let Some(sha) = fake.git.head(&project.path, &source) else {
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": ["Source branch does not exist"]}),
        );
    };
    let mr = {
        let mut state = fake.state.lock().unwrap();
        if let Some(existing) = state.merge_requests.iter().find(|m| {
            m.project_id == project.id
                && m.source == source
                && m.target == target
                && m.state == "opened"
        }) {
            return json_response(
                StatusCode::CONFLICT,
                json!({"message": [format!("Another open merge request already exists for this source branch: !{}", existing.iid)]}),
            );
        }
        let iid = state
            .merge_requests
            .iter()
            .filter(|m| m.project_id == project.id)
            .count() as i64
            + 1;
        let mr = MergeRequest {
            project_id: project.id,
            iid,
            title: str_field(body, "title").unwrap_or_default().to_string(),
            description: str_field(body, "description")
                .unwrap_or_default()
                .to_string(),
            source,
            target,
            sha,
            state: "opened".to_string(),
            merge_when_pipeline_succeeds: false,
            merge_commit_sha: None,
            author: user.to_string(),
        };
        state.merge_requests.push(mr.clone());
        mr
    };
    fake.emit_merge_request(&mr, "open", user);
    json_response(StatusCode::CREATED, mr_json(fake, project, &mr))
}

fn update_mr(
    fake: &FakeGitlab,
    project: &Project,
    iid: &str,
    body: &Value,
    user: &str,
) -> Response {
    let iid: i64 = iid.parse().unwrap_or(-1);
    let (mr, action) = {
        let mut state = fake.state.lock().unwrap();
        let Some(mr) = state
            .merge_requests
            .iter_mut()
            .find(|m| m.project_id == project.id && m.iid == iid)
        else {
            return message(StatusCode::NOT_FOUND, "404 Not found");
        };
        if let Some(title) = str_field(body, "title") {
            mr.title = title.to_string();
        }
        if let Some(text) = str_field(body, "description") {
            mr.description = text.to_string();
        }
        if let Some(target) = str_field(body, "target_branch") {
            mr.target = target.to_string();
        }
        let action = match str_field(body, "state_event") {
            Some("close") if mr.state == "opened" => {
                mr.state = "closed".into();
                "close"
            }
            Some("reopen") if mr.state == "closed" => {
                mr.state = "opened".into();
                "reopen"
            }
            _ => "update",
        };
        (mr.clone(), action)
    };
    fake.emit_merge_request(&mr, action, user);
    json_response(StatusCode::OK, mr_json(fake, project, &mr))
}

fn pending_status(fake: &FakeGitlab, project: i64, sha: &str) -> bool {
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    for status in fake.statuses(project).iter().filter(|s| s.sha == sha) {
        latest.insert(status.name.clone(), status.state.clone());
    }
    latest
        .values()
        .any(|s| matches!(s.as_str(), "pending" | "running" | "created"))
}

fn set_status(
    fake: &FakeGitlab,
    project: &Project,
    sha: &str,
    body: &Value,
    user: &str,
) -> Response {
    let state_name = str_field(body, "state").unwrap_or_default().to_string();
    if ![
        "pending", "running", "success", "failed", "canceled", "skipped",
    ]
    .contains(&state_name.as_str())
    {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "state does not have a valid value"}),
        );
    }
    let status = CommitStatus {
        project_id: project.id,
        sha: sha.to_string(),
        name: str_field(body, "name").unwrap_or("default").to_string(),
        state: state_name,
        description: str_field(body, "description").map(str::to_string),
    };
    fake.state.lock().unwrap().statuses.push(status.clone());
    // Merge when the pipeline succeeds: nothing pending and nothing failed.
    if !pending_status(fake, project.id, sha) {
        let failed = fake
            .statuses(project.id)
            .iter()
            .any(|s| s.sha == sha && s.state == "failed");
        let waiting: Vec<i64> = fake
            .merge_requests(project.id)
            .iter()
            .filter(|m| m.sha == sha && m.state == "opened" && m.merge_when_pipeline_succeeds)
            .map(|m| m.iid)
            .collect();
        for iid in waiting.into_iter().filter(|_| !failed) {
            let _ = merge(fake, project.id, iid, user);
        }
    }
    json_response(
        StatusCode::CREATED,
        json!({"sha": status.sha, "name": status.name, "status": status.state,
               "description": status.description}),
    )
}

/// A real merge commit on the target branch, then `Push Hook` and
/// `Merge Request Hook` `merge`.
pub(super) fn merge(
    fake: &FakeGitlab,
    project: i64,
    iid: i64,
    user: &str,
) -> Result<String, String> {
    let path = fake.state.lock().unwrap().projects[&project].path.clone();
    let mr = fake
        .merge_requests(project)
        .into_iter()
        .find(|m| m.iid == iid)
        .ok_or("404 Not found")?;
    if mr.state != "opened" {
        return Err("405 Method Not Allowed".into());
    }
    let dir = fake.git.repo_dir(&path);
    let base = fake
        .git
        .head(&path, &mr.target)
        .ok_or("target branch missing")?;
    let message = format!("Merge branch '{}' into '{}'", mr.source, mr.target);
    let merged = merge_in_bare(&dir, &base, &mr.sha, &message).ok_or("merge conflict")?;
    git(
        &dir,
        &[
            "update-ref",
            &format!("refs/heads/{}", mr.target),
            &merged,
            &base,
        ],
    );
    let done = {
        let mut state = fake.state.lock().unwrap();
        let m = state
            .merge_requests
            .iter_mut()
            .find(|m| m.project_id == project && m.iid == iid)
            .ok_or("404 Not found")?;
        m.state = "merged".into();
        m.merge_commit_sha = Some(merged.clone());
        m.clone()
    };
    fake.after_push(
        &path,
        &[RefUpdate {
            name: format!("refs/heads/{}", mr.target),
            old: Some(base),
            new: Some(merged.clone()),
        }],
        user,
    );
    fake.emit_merge_request(&done, "merge", user);
    Ok(merged)
}
