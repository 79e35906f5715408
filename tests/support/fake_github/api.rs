//! The fake GitHub's REST routes, in one handler: record, check
//! conformance, inject faults, authenticate, route.
// Early-return responses as `Err` keep the handler flat; size is no concern
// in a test fake.
#![allow(clippy::result_large_err)]

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use octocrab::jsonwebtoken::{self, Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use super::super::fake_common::{
    self, Recorded, decode_segment, iso, json_response, now_secs, paginate, parse_query, pass_gate,
    random_id, read_body,
};
use super::super::git_host::TokenScope;
use super::pulls::{check_run_json, create_check_run, create_pull, merge, pull_json, update_pull};
use super::{
    APP_ID, APP_SLUG, BOT_LOGIN, Comment, FakeGithub, Pull, State as FakeState, Status,
    TokenRecord, conformance, repo_json, token_expiry,
};

pub(super) fn gh_error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        json!({"message": message, "documentation_url": "https://docs.github.com/rest"}),
    )
}

pub(super) fn not_found() -> Response {
    gh_error(StatusCode::NOT_FOUND, "Not Found")
}

pub(super) fn validation(errors: Value) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({"message": "Validation Failed", "errors": errors,
               "documentation_url": "https://docs.github.com/rest"}),
    )
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("token "))
        .map(str::to_string)
}

fn verify_jwt(headers: &HeaderMap) -> Result<(), Response> {
    let refuse = |m: &str| Err(gh_error(StatusCode::UNAUTHORIZED, m));
    let Some(token) = bearer(headers) else {
        return refuse("A JSON web token could not be decoded");
    };
    let key = DecodingKey::from_rsa_pem(FakeGithub::public_key_pem().as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[APP_ID.to_string()]);
    validation.set_required_spec_claims(&["exp", "iat", "iss"]);
    validation.leeway = 0;
    let Ok(claims) = jsonwebtoken::decode::<Value>(&token, &key, &validation) else {
        return refuse("A JSON web token could not be decoded");
    };
    let iat = claims.claims["iat"].as_u64().unwrap_or(0);
    let exp = claims.claims["exp"].as_u64().unwrap_or(0);
    if exp.saturating_sub(iat) > 660 || exp > now_secs() + 600 {
        return refuse("'Expiration time' claim ('exp') is too far in the future");
    }
    if iat > now_secs() + 1 {
        return refuse(
            "'Issued at' claim ('iat') must be an Integer representing a time in the past.",
        );
    }
    Ok(())
}

/// The installation a token belongs to, if the token is valid.
pub(super) fn token_installation(state: &FakeState, headers: &HeaderMap) -> Result<i64, Response> {
    let record = bearer(headers).and_then(|t| state.tokens.get(&t).cloned());
    match record {
        Some(TokenRecord {
            installation,
            expires_at,
            revoked: false,
        }) if expires_at > now_secs() && state.installations.contains_key(&installation) => {
            Ok(installation)
        }
        _ => Err(gh_error(StatusCode::UNAUTHORIZED, "Bad credentials")),
    }
}

/// `POST /app-manifests/{code}/conversions`: no authentication, the code
/// works once. The created app is the fake's own (APP_ID and its key), so
/// graft can go on to use it against this fake.
fn convert_manifest(fake: &FakeGithub, code: &str) -> Response {
    let manifest = fake.state.lock().unwrap().manifest_codes.remove(code);
    let Some(manifest) = manifest else {
        return not_found();
    };
    let name = manifest["name"].as_str().unwrap_or("graft").to_string();
    let slug: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let now = iso(now_secs());
    json_response(
        StatusCode::CREATED,
        json!({
            "id": APP_ID,
            "slug": slug,
            "node_id": "MDxOkludGVncmF0aW9uNDI0Mg==",
            "client_id": "Iv1.fake0000000000",
            "owner": {"login": "graft-org", "id": 1, "node_id": "MDEyOk9yZ2FuaXphdGlvbjE=",
                      "type": "Organization", "site_admin": false,
                      "html_url": format!("{}/graft-org", fake.root)},
            "name": name,
            "description": manifest["description"].as_str().unwrap_or(""),
            "external_url": manifest["url"],
            "html_url": format!("{}/apps/{slug}", fake.root),
            "created_at": now,
            "updated_at": now,
            "permissions": manifest["default_permissions"],
            "events": manifest["default_events"],
            "installations_count": 0,
            "client_secret": format!("{:040x}", rand::random::<u128>()),
            // The secret the fake signs its deliveries with.
            "webhook_secret": fake.webhook_secret,
            "pem": super::app_private_key(),
        }),
    )
}

pub(super) async fn handle(State(fake): State<FakeGithub>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let body: Option<Value> = if bytes.is_empty() {
        None
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => Some(v),
            Err(_) => return gh_error(StatusCode::BAD_REQUEST, "Problems parsing JSON"),
        }
    };
    let raw_path = parts.uri.path().to_string();
    let query = parse_query(parts.uri.query());
    let method = parts.method.as_str().to_string();
    let recorded = Recorded {
        method: method.clone(),
        path: raw_path.clone(),
        query: query.clone(),
        body: body.clone(),
        authorization: parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    fake.state.lock().unwrap().requests.push(recorded);
    fake.due_push(&method, &raw_path);
    if raw_path == "/graphql" || raw_path == "/api/graphql" {
        return super::graphql::handle(&fake, &parts.headers, body);
    }
    let Some(path) = raw_path.strip_prefix(&fake.prefix).map(str::to_string) else {
        return not_found();
    };
    if let Err(violation) = conformance::check(&method, &path, query.keys(), body.as_ref()) {
        fake.state
            .lock()
            .unwrap()
            .violations
            .push(violation.clone());
        return gh_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("fake GitHub: {violation}"),
        );
    }
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(decode_segment)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    // Like GitHub, credentials are checked before anything else can fail.
    let authenticated = authenticate(&fake.state.lock().unwrap(), &segs, &parts.headers);
    if let Err(response) = authenticated {
        return response;
    }
    if let Some(response) = injected_fault(&fake, &path) {
        return response;
    }
    if method == "POST" && path.ends_with("/comments") {
        let gate = fake.state.lock().unwrap().comment_gate.clone();
        if !pass_gate(gate, || fake.state.lock().unwrap().comment_gate = None).await {
            return gh_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "fake GitHub: the racing comment creations never all arrived",
            );
        }
    }
    let headers = &parts.headers;
    let body = body.unwrap_or(Value::Null);
    match (method.as_str(), segs.as_slice()) {
        ("POST", ["app-manifests", code, "conversions"]) => convert_manifest(&fake, code),
        ("GET", ["app"]) => match verify_jwt(headers) {
            Err(r) => r,
            Ok(()) => json_response(
                StatusCode::OK,
                json!({"id": APP_ID, "slug": APP_SLUG, "name": "graft (test)",
                       "owner": {"login": "graft-org"}}),
            ),
        },
        ("GET", ["app", "installations"]) => match verify_jwt(headers) {
            Err(r) => r,
            Ok(()) => super::contents::installations(&fake, &query),
        },
        ("POST", ["app", "installations", id, "access_tokens"]) => {
            if let Err(r) = verify_jwt(headers) {
                return r;
            }
            mint(&fake, id.parse().unwrap_or(-1))
        }
        ("GET", ["app", "hook", "deliveries"]) => match verify_jwt(headers) {
            Err(r) => r,
            Ok(()) => super::deliveries::list(&fake, &query),
        },
        ("POST", ["app", "hook", "deliveries", id, "attempts"]) => match verify_jwt(headers) {
            Err(r) => r,
            Ok(()) => super::deliveries::redeliver(&fake, id),
        },
        ("GET", ["repos", owner, name, "installation"]) => {
            if let Err(r) = verify_jwt(headers) {
                return r;
            }
            let repo = format!("{owner}/{name}");
            let state = fake.state.lock().unwrap();
            match state
                .installations
                .values()
                .find(|i| i.repos.contains(&repo))
            {
                Some(i) => json_response(
                    StatusCode::OK,
                    json!({"id": i.id, "app_id": APP_ID, "account": {"login": i.account},
                           "target_type": "Organization", "repository_selection": "selected"}),
                ),
                None => not_found(),
            }
        }
        ("GET", ["installation", "repositories"]) => {
            let installation = token_installation(&fake.state.lock().unwrap(), headers);
            match installation {
                Ok(installation) => {
                    super::contents::installation_repositories(&fake, installation, &query)
                }
                Err(r) => r,
            }
        }
        (_, ["repos", owner, name, rest @ ..]) => {
            let repo = format!("{owner}/{name}");
            {
                let state = fake.state.lock().unwrap();
                let installation = match token_installation(&state, headers) {
                    Ok(i) => i,
                    Err(r) => return r,
                };
                let visible = state
                    .installations
                    .get(&installation)
                    .is_some_and(|i| i.repos.contains(&repo))
                    && state.repos.contains_key(&repo);
                if !visible {
                    return not_found();
                }
            }
            repo_route(&fake, &method, &repo, rest, &query, headers, body)
        }
        _ => not_found(),
    }
}

/// A 401 unless the request carries what its route needs: nothing for a
/// manifest conversion, the app's JWT for `/app/...` and a repository's
/// installation lookup, a valid installation token elsewhere.
fn authenticate(state: &FakeState, segs: &[&str], headers: &HeaderMap) -> Result<(), Response> {
    match segs {
        ["app-manifests", ..] => Ok(()),
        ["app", ..] | ["repos", _, _, "installation"] => verify_jwt(headers),
        _ => token_installation(state, headers).map(|_| ()),
    }
}

pub(super) fn injected_fault(fake: &FakeGithub, path: &str) -> Option<Response> {
    let mut state = fake.state.lock().unwrap();
    let faults = &mut state.faults;
    if let Some((_, permission)) = faults
        .forbid
        .iter()
        .find(|(part, _)| path.contains(part.as_str()))
    {
        let mut response = gh_error(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        );
        response.headers_mut().insert(
            "x-accepted-github-permissions",
            HeaderValue::from_str(permission).unwrap(),
        );
        return Some(response);
    }
    if faults.rate_limit > 0 {
        faults.rate_limit -= 1;
        let reset = now_secs() + faults.reset_in_secs;
        let mut response = gh_error(
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for installation ID 1. If you reach out to GitHub Support \
             for help, please include the request ID.",
        );
        let headers = response.headers_mut();
        headers.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        headers.insert("x-ratelimit-used", HeaderValue::from_static("5000"));
        headers.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&reset.to_string()).unwrap(),
        );
        return Some(response);
    }
    if faults.secondary > 0 {
        faults.secondary -= 1;
        let mut response = gh_error(
            StatusCode::FORBIDDEN,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        );
        response.headers_mut().insert(
            "retry-after",
            HeaderValue::from_str(&faults.retry_after_secs.to_string()).unwrap(),
        );
        return Some(response);
    }
    if faults.fail > 0 {
        faults.fail -= 1;
        return Some(gh_error(StatusCode::BAD_GATEWAY, "Server Error"));
    }
    if faults.oversized > 0 {
        faults.oversized -= 1;
        return Some(fake_common::oversized_answer());
    }
    if faults
        .broken
        .iter()
        .any(|part| path.contains(part.as_str()))
    {
        return Some(gh_error(StatusCode::BAD_GATEWAY, "Server Error"));
    }
    None
}

fn mint(fake: &FakeGithub, installation: i64) -> Response {
    let Some((token, expires_at)) = issue_token(fake, installation) else {
        return not_found();
    };
    json_response(
        StatusCode::CREATED,
        json!({"token": token, "expires_at": iso(expires_at),
               "permissions": {"contents": "write", "pull_requests": "write", "issues": "write",
                               "checks": "write", "metadata": "read"},
               "repository_selection": "selected"}),
    )
}

/// A new token of `installation` and when it expires; `None` when there
/// is no such installation.
pub(super) fn issue_token(fake: &FakeGithub, installation: i64) -> Option<(String, u64)> {
    let mut state = fake.state.lock().unwrap();
    if !state.installations.contains_key(&installation) {
        return None;
    }
    let token = format!("ghs_{}", random_id());
    let expires_at = token_expiry(&state);
    state.tokens.insert(
        token.clone(),
        TokenRecord {
            installation,
            expires_at,
            revoked: false,
        },
    );
    state.tokens_minted += 1;
    // Over git too, the token reaches its installation's repositories only,
    // and not after it expires.
    let fake_state = std::sync::Arc::downgrade(&fake.state);
    let reaches = move |repo: &str| {
        fake_state.upgrade().is_some_and(|s| {
            s.lock()
                .unwrap()
                .installations
                .get(&installation)
                .is_some_and(|i| i.repos.contains(repo))
        })
    };
    fake.git.allow_scoped_token(
        &token,
        BOT_LOGIN,
        TokenScope {
            reaches: std::sync::Arc::new(reaches),
            expires_at,
        },
    );
    Some((token, expires_at))
}

pub(crate) fn comment_json(state: &FakeState, root: &str, comment: &Comment) -> Value {
    json!({
        "id": comment.id,
        "node_id": format!("IC_{}", comment.id),
        "body": comment.body,
        "user": state.user_json(&comment.user),
        "html_url": format!("{root}/{}/pull/{}#issuecomment-{}", comment.repo, comment.number, comment.id),
        "created_at": iso(now_secs()),
        "updated_at": iso(comment.updated_at),
    })
}

pub(super) fn str_field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

fn repo_route(
    fake: &FakeGithub,
    method: &str,
    repo: &str,
    rest: &[&str],
    query: &std::collections::BTreeMap<String, String>,
    headers: &HeaderMap,
    body: Value,
) -> Response {
    let (root, api_url) = (fake.root.as_str(), fake.api_url.as_str());
    let link_origin = fake.state.lock().unwrap().link_origin.clone();
    let list_url = |path: &str| match &link_origin {
        Some(origin) => format!("{origin}/repos/{repo}{path}"),
        None => format!("{api_url}/repos/{repo}{path}"),
    };
    match (method, rest) {
        ("GET", []) => {
            let state = fake.state.lock().unwrap();
            json_response(
                StatusCode::OK,
                repo_json(&state, root, api_url, &fake.git, repo),
            )
        }
        // Branch names and paths may hold `/`, sent encoded or not.
        ("GET", ["branches", branch @ ..]) => {
            let branch = branch.join("/");
            match fake.git.head(repo, &branch) {
                Some(sha) => json_response(
                    StatusCode::OK,
                    json!({"name": branch, "commit": {"sha": sha},
                           "protected": fake.git.is_protected(repo, &branch)}),
                ),
                None => gh_error(StatusCode::NOT_FOUND, "Branch not found"),
            }
        }
        ("GET", ["git", "trees", tree @ ..]) => {
            super::contents::tree(fake, repo, &tree.join("/"), query)
        }
        ("GET", ["contents", path @ ..]) => {
            super::contents::contents(fake, repo, &path.join("/"), query, headers)
        }
        ("GET", ["git", "blobs", sha]) => super::contents::blob(fake, repo, sha, headers),
        ("POST", ["git", "refs"]) => super::refs::create(fake, repo, &body),
        ("PATCH", ["git", "refs", reference @ ..]) => {
            super::refs::update(fake, repo, &reference.join("/"), &body)
        }
        ("DELETE", ["git", "refs", reference @ ..]) => {
            super::refs::delete(fake, repo, &reference.join("/"))
        }
        ("GET", ["pulls"]) => {
            let state = fake.state.lock().unwrap();
            let wanted = query.get("state").map(String::as_str).unwrap_or("open");
            let owner = repo.split('/').next().unwrap_or_default();
            let mut items: Vec<&Pull> = state
                .pulls
                .iter()
                .filter(|p| p.repo == repo)
                .filter(|p| wanted == "all" || p.state == wanted)
                .filter(|p| {
                    query
                        .get("head")
                        .is_none_or(|h| *h == format!("{owner}:{}", p.head))
                })
                .filter(|p| query.get("base").is_none_or(|b| *b == p.base))
                .collect();
            items.sort_by_key(|p| std::cmp::Reverse(p.number));
            let items = items.iter().map(|p| pull_json(fake, &state, p)).collect();
            paginate(
                items,
                query,
                &list_url("/pulls"),
                30,
                state.max_per_page,
                false,
            )
        }
        ("POST", ["pulls"]) => create_pull(fake, repo, &body),
        ("GET", ["pulls", n]) => {
            let state = fake.state.lock().unwrap();
            let number: i64 = n.parse().unwrap_or(-1);
            match state
                .pulls
                .iter()
                .find(|p| p.repo == repo && p.number == number)
            {
                Some(p) => json_response(StatusCode::OK, pull_json(fake, &state, p)),
                None => not_found(),
            }
        }
        ("PATCH", ["pulls", n]) => update_pull(fake, repo, n.parse().unwrap_or(-1), &body),
        ("PUT", ["pulls", n, "merge"]) => {
            let number = n.parse().unwrap_or(-1);
            let expected = str_field(&body, "sha").map(str::to_string);
            let head = fake
                .pulls(repo)
                .into_iter()
                .find(|p| p.number == number)
                .map(|p| p.head_sha);
            let Some(head) = head else { return not_found() };
            if expected.is_some_and(|sha| sha != head) {
                return gh_error(
                    StatusCode::CONFLICT,
                    "Head branch was modified. Review and try the merge again.",
                );
            }
            match merge(fake, repo, number, BOT_LOGIN) {
                Ok(sha) => json_response(
                    StatusCode::OK,
                    json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"}),
                ),
                Err(message) => gh_error(StatusCode::METHOD_NOT_ALLOWED, &message),
            }
        }
        ("GET", ["issues", n, "comments"]) => {
            let state = fake.state.lock().unwrap();
            let number: i64 = n.parse().unwrap_or(-1);
            let items = state
                .comments
                .iter()
                .filter(|c| c.repo == repo && c.number == number)
                .map(|c| comment_json(&state, root, c))
                .collect();
            paginate(
                items,
                query,
                &list_url(&format!("/issues/{number}/comments")),
                30,
                state.max_per_page,
                false,
            )
        }
        ("POST", ["issues", n, "comments"]) => {
            let number: i64 = n.parse().unwrap_or(-1);
            let Some(text) = str_field(&body, "body") else {
                return validation(
                    json!([{"resource": "IssueComment", "field": "body", "code": "missing_field"}]),
                );
            };
            if !fake.pulls(repo).iter().any(|p| p.number == number) {
                return not_found();
            }
            let comment = {
                let mut state = fake.state.lock().unwrap();
                let id = state.id();
                let comment = Comment {
                    id,
                    repo: repo.to_string(),
                    number,
                    user: BOT_LOGIN.to_string(),
                    body: text.to_string(),
                    updated_at: now_secs(),
                };
                state.comments.push(comment.clone());
                comment
            };
            fake.emit_comment(&comment, "created", None);
            let state = fake.state.lock().unwrap();
            json_response(StatusCode::CREATED, comment_json(&state, root, &comment))
        }
        ("PATCH", ["issues", "comments", id]) => {
            let id: i64 = id.parse().unwrap_or(-1);
            let Some(text) = str_field(&body, "body") else {
                return validation(
                    json!([{"resource": "IssueComment", "field": "body", "code": "missing_field"}]),
                );
            };
            let updated = {
                let mut state = fake.state.lock().unwrap();
                state
                    .comments
                    .iter_mut()
                    .find(|c| c.id == id && c.repo == repo)
                    .map(|c| (std::mem::replace(&mut c.body, text.to_string()), c.clone()))
            };
            let Some((previous, comment)) = updated else {
                return not_found();
            };
            fake.emit_comment(&comment, "edited", Some(previous));
            let state = fake.state.lock().unwrap();
            json_response(StatusCode::OK, comment_json(&state, root, &comment))
        }
        ("DELETE", ["issues", "comments", id]) => {
            let id: i64 = id.parse().unwrap_or(-1);
            let mut state = fake.state.lock().unwrap();
            let before = state.comments.len();
            state.comments.retain(|c| !(c.id == id && c.repo == repo));
            if state.comments.len() == before {
                return not_found();
            }
            StatusCode::NO_CONTENT.into_response()
        }
        ("GET", ["issues", "comments", id, "reactions"]) => {
            let state = fake.state.lock().unwrap();
            let id: i64 = id.parse().unwrap_or(-1);
            let content = query.get("content");
            let items = state
                .reactions
                .iter()
                .filter(|r| r.1 == id && content.is_none_or(|c| *c == r.3))
                .map(|r| json!({"id": r.0, "content": r.3, "user": state.user_json(&r.2)}))
                .collect();
            paginate(
                items,
                query,
                &list_url(&format!("/issues/comments/{id}/reactions")),
                30,
                state.max_per_page,
                false,
            )
        }
        ("POST", ["issues", "comments", id, "reactions"]) => {
            let id: i64 = id.parse().unwrap_or(-1);
            let content = str_field(&body, "content").unwrap_or_default().to_string();
            const VALID: [&str; 8] = [
                "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
            ];
            if !VALID.contains(&content.as_str()) {
                return validation(
                    json!([{"resource": "Reaction", "field": "content", "code": "invalid"}]),
                );
            }
            let mut state = fake.state.lock().unwrap();
            if !state.comments.iter().any(|c| c.id == id && c.repo == repo) {
                return not_found();
            }
            // GitHub answers 200 with the existing reaction, 201 for a new one.
            let existing = state
                .reactions
                .iter()
                .find(|r| r.1 == id && r.2 == BOT_LOGIN && r.3 == content)
                .map(|r| r.0);
            let (status, reaction_id) = match existing {
                Some(reaction_id) => (StatusCode::OK, reaction_id),
                None => {
                    let reaction_id = state.id();
                    state
                        .reactions
                        .push((reaction_id, id, BOT_LOGIN.to_string(), content.clone()));
                    (StatusCode::CREATED, reaction_id)
                }
            };
            json_response(
                status,
                json!({"id": reaction_id, "content": content, "user": state.user_json(BOT_LOGIN)}),
            )
        }
        ("DELETE", ["issues", "comments", id, "reactions", reaction_id]) => {
            let id: i64 = id.parse().unwrap_or(-1);
            let reaction_id: i64 = reaction_id.parse().unwrap_or(-1);
            let mut state = fake.state.lock().unwrap();
            let before = state.reactions.len();
            // Only the token's own reactions can be deleted.
            state
                .reactions
                .retain(|r| !(r.0 == reaction_id && r.1 == id && r.2 == BOT_LOGIN));
            if state.reactions.len() == before {
                return not_found();
            }
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", ["check-runs"]) => create_check_run(fake, repo, &body),
        ("GET", ["commits", reference, "check-runs"]) => {
            let state = fake.state.lock().unwrap();
            let runs: Vec<Value> = state
                .check_runs
                .iter()
                .filter(|r| r.repo == repo && r.head_sha == *reference)
                .map(check_run_json)
                .collect();
            json_response(
                StatusCode::OK,
                json!({"total_count": runs.len(), "check_runs": runs}),
            )
        }
        ("GET", ["commits", reference @ ..]) => {
            super::contents::commit(fake, repo, &reference.join("/"))
        }
        ("POST", ["statuses", sha]) => {
            let state_name = str_field(&body, "state").unwrap_or_default().to_string();
            if !["error", "failure", "pending", "success"].contains(&state_name.as_str()) {
                return validation(
                    json!([{"resource": "Status", "field": "state", "code": "invalid"}]),
                );
            }
            let status = Status {
                repo: repo.to_string(),
                sha: sha.to_string(),
                state: state_name.clone(),
                context: str_field(&body, "context").unwrap_or("default").to_string(),
            };
            fake.state.lock().unwrap().statuses.push(status.clone());
            json_response(
                StatusCode::CREATED,
                json!({"state": state_name, "context": status.context}),
            )
        }
        ("GET", ["collaborators", user, "permission"]) => {
            let state = fake.state.lock().unwrap();
            if !state.users.contains_key(*user) {
                return not_found();
            }
            let role = state
                .roles
                .get(&(repo.to_string(), user.to_string()))
                .cloned()
                .unwrap_or_else(|| "none".to_string());
            // Custom roles are written `name:base` in tests.
            let (role_name, permission) = match role.split_once(':') {
                Some((name, base)) => (name.to_string(), base.to_string()),
                None => {
                    let base = match role.as_str() {
                        "admin" => "admin",
                        "maintain" | "write" => "write",
                        "triage" | "read" => "read",
                        _ => "none",
                    };
                    (role.clone(), base.to_string())
                }
            };
            json_response(
                StatusCode::OK,
                json!({"permission": permission, "role_name": role_name, "user": state.user_json(user)}),
            )
        }
        _ => not_found(),
    }
}
