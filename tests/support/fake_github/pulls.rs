//! Pull requests and check runs in the fake GitHub: creation and edits,
//! auto-merge once every check passed, and merges as real merge commits
//! with their webhooks.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::super::fake_common::{iso, json_response, merge_in_bare, now_secs};
use super::super::git_host::{RefUpdate, git};
use super::api::{not_found, str_field, validation};
use super::{BOT_LOGIN, CheckRun, FakeGithub, Pull, State as FakeState, next_number};

pub(crate) fn pull_json(fake: &FakeGithub, state: &FakeState, pull: &Pull) -> Value {
    let (root, api_url) = (fake.root.as_str(), fake.api_url.as_str());
    let base_sha = fake.git.head(&pull.repo, &pull.base);
    let owner = pull.repo.split('/').next().unwrap_or_default();
    let repo_id = state
        .repos
        .get(&pull.repo)
        .map(|r| r.id)
        .unwrap_or_default();
    json!({
        "id": repo_id * 1000 + pull.number,
        "node_id": format!("PR_{repo_id}_{}", pull.number),
        "number": pull.number,
        "state": pull.state,
        "title": pull.title,
        "body": pull.body,
        "user": state.user_json(&pull.user),
        "html_url": format!("{root}/{}/pull/{}", pull.repo, pull.number),
        "url": format!("{api_url}/repos/{}/pulls/{}", pull.repo, pull.number),
        "head": {"ref": pull.head, "sha": pull.head_sha, "label": format!("{owner}:{}", pull.head),
                 "repo": {"full_name": pull.repo}},
        "base": {"ref": pull.base, "sha": base_sha, "label": format!("{owner}:{}", pull.base),
                 "repo": {"full_name": pull.repo}},
        "merged": pull.merged,
        "merged_at": pull.merged.then(|| iso(now_secs())),
        "merge_commit_sha": pull.merge_commit_sha,
        "auto_merge": pull.auto_merge.then(|| json!({"merge_method": "merge"})),
        "draft": false,
    })
}

pub(super) fn check_run_json(run: &CheckRun) -> Value {
    json!({"id": run.id, "head_sha": run.head_sha, "name": run.name, "status": run.status,
           "conclusion": run.conclusion,
           "output": {"title": run.title, "summary": run.summary}})
}

pub(super) fn create_pull(fake: &FakeGithub, repo: &str, body: &Value) -> Response {
    let (Some(head), Some(base)) = (str_field(body, "head"), str_field(body, "base")) else {
        return validation(
            json!([{"resource": "PullRequest", "field": "head", "code": "missing_field"}]),
        );
    };
    let head = head.rsplit(':').next().unwrap_or(head).to_string();
    let Some(head_sha) = fake.git.head(repo, &head) else {
        return validation(
            json!([{"resource": "PullRequest", "field": "head", "code": "invalid"}]),
        );
    };
    if fake.git.head(repo, base).is_none() {
        return validation(
            json!([{"resource": "PullRequest", "field": "base", "code": "invalid"}]),
        );
    }
    let Some(title) = str_field(body, "title").filter(|t| !t.trim().is_empty()) else {
        return validation(
            json!([{"resource": "PullRequest", "field": "title", "code": "missing_field"}]),
        );
    };
    let owner = repo.split('/').next().unwrap_or_default();
    let pull = {
        let mut state = fake.state.lock().unwrap();
        let duplicate = state
            .pulls
            .iter()
            .any(|p| p.repo == repo && p.head == head && p.base == base && p.state == "open");
        if duplicate {
            return validation(json!([{"resource": "PullRequest", "code": "custom",
                "message": format!("A pull request already exists for {owner}:{head}.")}]));
        }
        let number = next_number(&mut state, repo);
        let pull = Pull {
            repo: repo.to_string(),
            number,
            title: title.to_string(),
            body: str_field(body, "body").unwrap_or_default().to_string(),
            head,
            base: base.to_string(),
            head_sha,
            state: "open".to_string(),
            merged: false,
            merge_commit_sha: None,
            auto_merge: false,
            user: BOT_LOGIN.to_string(),
        };
        state.pulls.push(pull.clone());
        pull
    };
    fake.emit_pull(&pull, "opened", BOT_LOGIN);
    let state = fake.state.lock().unwrap();
    json_response(StatusCode::CREATED, pull_json(fake, &state, &pull))
}

pub(super) fn update_pull(fake: &FakeGithub, repo: &str, number: i64, body: &Value) -> Response {
    let (pull, action) = {
        let mut state = fake.state.lock().unwrap();
        let Some(pull) = state
            .pulls
            .iter_mut()
            .find(|p| p.repo == repo && p.number == number)
        else {
            return not_found();
        };
        if let Some(title) = str_field(body, "title") {
            pull.title = title.to_string();
        }
        if let Some(text) = str_field(body, "body") {
            pull.body = text.to_string();
        }
        if let Some(base) = str_field(body, "base") {
            pull.base = base.to_string();
        }
        let action = match str_field(body, "state") {
            Some("closed") if pull.state == "open" => {
                pull.state = "closed".into();
                Some("closed")
            }
            Some("open") if pull.state == "closed" && !pull.merged => {
                pull.state = "open".into();
                Some("reopened")
            }
            Some("open" | "closed") | None => None,
            Some(_) => {
                return validation(
                    json!([{"resource": "PullRequest", "field": "state", "code": "invalid"}]),
                );
            }
        };
        (pull.clone(), action)
    };
    if let Some(action) = action {
        fake.emit_pull(&pull, action, BOT_LOGIN);
    }
    let state = fake.state.lock().unwrap();
    json_response(StatusCode::OK, pull_json(fake, &state, &pull))
}

pub(super) fn create_check_run(fake: &FakeGithub, repo: &str, body: &Value) -> Response {
    let (Some(name), Some(sha)) = (str_field(body, "name"), str_field(body, "head_sha")) else {
        return validation(
            json!([{"resource": "CheckRun", "field": "head_sha", "code": "missing_field"}]),
        );
    };
    let status = str_field(body, "status").unwrap_or("queued").to_string();
    let conclusion = str_field(body, "conclusion").map(str::to_string);
    if !["queued", "in_progress", "completed"].contains(&status.as_str())
        || (status == "completed") != conclusion.is_some()
    {
        return validation(
            json!([{"resource": "CheckRun", "field": "conclusion", "code": "invalid"}]),
        );
    }
    let run = {
        let mut state = fake.state.lock().unwrap();
        let id = state.id();
        let run = CheckRun {
            id,
            repo: repo.to_string(),
            head_sha: sha.to_string(),
            name: name.to_string(),
            status,
            conclusion,
            title: body["output"]["title"].as_str().map(str::to_string),
            summary: body["output"]["summary"].as_str().map(str::to_string),
        };
        state.check_runs.push(run.clone());
        run
    };
    // Auto-merge: merge PRs on this head once every check passed.
    let ready: Vec<i64> = {
        let state = fake.state.lock().unwrap();
        let passing = latest_runs(&state, repo, sha).iter().all(|r| {
            matches!(
                r.conclusion.as_deref(),
                Some("success" | "neutral" | "skipped")
            )
        });
        state
            .pulls
            .iter()
            .filter(|p| {
                p.repo == repo && p.head_sha == sha && p.auto_merge && p.state == "open" && passing
            })
            .map(|p| p.number)
            .collect()
    };
    for number in ready {
        let _ = merge(fake, repo, number, BOT_LOGIN);
    }
    json_response(StatusCode::CREATED, check_run_json(&run))
}

/// The newest check run of each name on `sha` (what GitHub shows).
pub(super) fn latest_runs(state: &FakeState, repo: &str, sha: &str) -> Vec<CheckRun> {
    let mut latest: std::collections::BTreeMap<String, CheckRun> = Default::default();
    for run in state
        .check_runs
        .iter()
        .filter(|r| r.repo == repo && r.head_sha == sha)
    {
        latest.insert(run.name.clone(), run.clone());
    }
    latest.into_values().collect()
}

/// Merges a PR: a real merge commit on the base branch, then `push` and
/// `pull_request` `closed` (merged) webhooks.
pub(super) fn merge(
    fake: &FakeGithub,
    repo: &str,
    number: i64,
    user: &str,
) -> Result<String, String> {
    let pull = fake
        .pulls(repo)
        .into_iter()
        .find(|p| p.number == number)
        .ok_or("Not Found")?;
    if pull.state != "open" {
        return Err("Pull Request is not mergeable".into());
    }
    let dir = fake.git.repo_dir(repo);
    let base_sha = fake
        .git
        .head(repo, &pull.base)
        .ok_or("Base branch was deleted")?;
    let message = format!("Merge pull request #{number} from {}", pull.head);
    let merged = merge_in_bare(&dir, &base_sha, &pull.head_sha, &message)
        .ok_or("Pull Request is not mergeable")?;
    git(
        &dir,
        &[
            "update-ref",
            &format!("refs/heads/{}", pull.base),
            &merged,
            &base_sha,
        ],
    );
    let closed = {
        let mut state = fake.state.lock().unwrap();
        let p = state
            .pulls
            .iter_mut()
            .find(|p| p.repo == repo && p.number == number)
            .ok_or("Not Found")?;
        p.state = "closed".into();
        p.merged = true;
        p.merge_commit_sha = Some(merged.clone());
        p.clone()
    };
    fake.after_push(
        repo,
        &[RefUpdate {
            name: format!("refs/heads/{}", pull.base),
            old: Some(base_sha),
            new: Some(merged.clone()),
        }],
        user,
    );
    fake.emit_pull(&closed, "closed", user);
    Ok(merged)
}
