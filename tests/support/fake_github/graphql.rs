//! The GraphQL mutations graft sends: `enablePullRequestAutoMerge` and
//! `disablePullRequestAutoMerge` here, `createCommitOnBranch` in
//! `commit_mutation`; each checked against GitHub's schema first
//! (`graphql_conformance`), then the token, then injected faults.
//! Like GitHub, it refuses a PR with nothing pending ("clean status"), a
//! repository without "Allow auto-merge" and an `expectedHeadOid` that is
//! not the PR's head.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::super::fake_common::{json_response, now_secs};
use super::FakeGithub;
use super::api::{gh_error, injected_fault, token_installation};

fn graphql_error(message: &str) -> Response {
    json_response(
        StatusCode::OK,
        json!({"data": {"enablePullRequestAutoMerge": null},
               "errors": [{"type": "UNPROCESSABLE", "path": ["enablePullRequestAutoMerge"],
                           "message": message}]}),
    )
}

pub(super) fn handle(fake: &FakeGithub, headers: &HeaderMap, body: Option<Value>) -> Response {
    let body = body.unwrap_or(Value::Null);
    if let Err(violation) = super::graphql_conformance::check(&body) {
        fake.state
            .lock()
            .unwrap()
            .violations
            .push(violation.clone());
        // GitHub answers a query its schema rejects with 200 and `errors`.
        return json_response(
            StatusCode::OK,
            json!({"errors": [{"message": format!("fake GitHub: {violation}")}]}),
        );
    }
    let installation = match token_installation(&fake.state.lock().unwrap(), headers) {
        Ok(i) => i,
        Err(r) => return r,
    };
    if let Some(response) = graphql_fault(fake) {
        return response;
    }
    if let Some(field) = super::graphql_conformance::root_field(&body, "createCommitOnBranch") {
        return super::commit_mutation::handle(fake, installation, field);
    }
    let query = body["query"].as_str().unwrap_or_default();
    let disable = query.contains("disablePullRequestAutoMerge");
    if !disable && !query.contains("enablePullRequestAutoMerge") {
        return gh_error(
            StatusCode::BAD_REQUEST,
            "fake GitHub: only createCommitOnBranch and enable/disablePullRequestAutoMerge \
             are supported",
        );
    }
    let node = body["variables"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut state = fake.state.lock().unwrap();
    let Some((repo_id, number)) = node
        .strip_prefix("PR_")
        .and_then(|rest| rest.split_once('_'))
        .and_then(|(r, n)| Some((r.parse::<i64>().ok()?, n.parse::<i64>().ok()?)))
    else {
        return graphql_error(&format!(
            "Could not resolve to a node with the global id of '{node}'"
        ));
    };
    let Some(repo) = state.repos.values().find(|r| r.id == repo_id).cloned() else {
        return graphql_error(&format!(
            "Could not resolve to a node with the global id of '{node}'"
        ));
    };
    let visible = state
        .installations
        .get(&installation)
        .is_some_and(|i| i.repos.contains(&repo.full_name));
    if !visible {
        return graphql_error(&format!(
            "Could not resolve to a node with the global id of '{node}'"
        ));
    }
    if disable {
        let Some(pull) = state
            .pulls
            .iter_mut()
            .find(|p| p.repo == repo.full_name && p.number == number && p.state == "open")
        else {
            return graphql_error("Pull request is not open");
        };
        pull.auto_merge = false;
        return json_response(
            StatusCode::OK,
            json!({"data": {"disablePullRequestAutoMerge": {"pullRequest": {"number": number}}}}),
        );
    }
    if !repo.allow_auto_merge {
        return graphql_error("Pull request Auto merge is not allowed for this repository");
    }
    let Some(head_sha) = state
        .pulls
        .iter()
        .find(|p| p.repo == repo.full_name && p.number == number && p.state == "open")
        .map(|p| p.head_sha.clone())
    else {
        return graphql_error("Pull request is not open");
    };
    // Like GitHub: a head that moved since the caller looked is refused.
    if input_value(&body, "expectedHeadOid").is_some_and(|expected| expected != head_sha) {
        return graphql_error("Head branch was modified. Review and try the merge again.");
    }
    let pending = super::pulls::latest_runs(&state, &repo.full_name, &head_sha)
        .iter()
        .any(|r| r.status != "completed");
    if !pending {
        return graphql_error("Pull request Pull request is in clean status");
    }
    if let Some(pull) = state
        .pulls
        .iter_mut()
        .find(|p| p.repo == repo.full_name && p.number == number)
    {
        pull.auto_merge = true;
    }
    json_response(
        StatusCode::OK,
        json!({"data": {"enablePullRequestAutoMerge": {"pullRequest": {"number": number}}}}),
    )
}

/// An injected fault as GraphQL answers it: the primary rate limit is an
/// HTTP 200 with a `RATE_LIMITED` error and `x-ratelimit-remaining: 0`;
/// the others (forbidden, secondary limit, 5xx) as for REST.
fn graphql_fault(fake: &FakeGithub) -> Option<Response> {
    let reset = {
        let mut state = fake.state.lock().unwrap();
        let faults = &mut state.faults;
        (faults.rate_limit > 0).then(|| {
            faults.rate_limit -= 1;
            now_secs() + faults.reset_in_secs
        })
    };
    let Some(reset) = reset else {
        return injected_fault(fake, "/graphql");
    };
    let mut response = json_response(
        StatusCode::OK,
        json!({"errors": [{"type": "RATE_LIMITED",
                           "message": "API rate limit already exceeded for installation ID 1."}]}),
    );
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", "5000".to_string()),
        ("x-ratelimit-remaining", "0".to_string()),
        ("x-ratelimit-used", "5000".to_string()),
        ("x-ratelimit-resource", "graphql".to_string()),
        ("x-ratelimit-reset", reset.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    Some(response)
}

/// The value of input field `name` in the query: a `$variable` (read from
/// `variables`) or a string literal. `None` when the query does not set it.
fn input_value(body: &Value, name: &str) -> Option<String> {
    let query = body["query"].as_str()?;
    let at = query.find(&format!("{name}:"))? + name.len() + 1;
    let rest = query[at..].trim_start();
    if let Some(variable) = rest.strip_prefix('$') {
        let end = variable
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(variable.len());
        return body["variables"][&variable[..end]]
            .as_str()
            .map(str::to_string);
    }
    let literal = rest.strip_prefix('"')?;
    literal.split('"').next().map(str::to_string)
}
