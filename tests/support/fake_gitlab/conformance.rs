//! Checks requests against GitLab's REST v4 as its documentation describes
//! it. GitLab publishes no single machine-readable description of v4, so
//! the routes the fake serves are written down here, each with its
//! documented query parameters and body attributes (from the REST API
//! pages: users, personal access tokens, projects, branches, merge
//! requests, notes, emoji reactions, commits (one commit, statuses and creation),
//! repositories (tree), repository files, members, project webhooks). A request outside the table is a violation: the fake refuses
//! it and the test fails, as the GitHub fake does with GitHub's OpenAPI.

use std::collections::BTreeMap;

use serde_json::Value;

/// One documented route: `{name}` segments are path parameters.
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub query: &'static [&'static str],
    pub body: Option<Body>,
}

/// The body attributes a route takes (JSON or form; GitLab takes both).
pub struct Body {
    pub required: &'static [&'static str],
    pub optional: &'static [&'static str],
}

const PAGES: &[&str] = &["page", "per_page"];

const MR_WRITE: &[&str] = &[
    "add_labels",
    "allow_collaboration",
    "allow_maintainer_to_push",
    "assignee_id",
    "assignee_ids",
    "description",
    "discussion_locked",
    "labels",
    "merge_after",
    "milestone_id",
    "remove_labels",
    "remove_source_branch",
    "reviewer_ids",
    "squash",
    "state_event",
    "target_branch",
    "title",
];

const HOOK_ATTRIBUTES: &[&str] = &[
    "branch_filter_strategy",
    "confidential_issues_events",
    "confidential_note_events",
    "custom_headers",
    "custom_webhook_template",
    "deployment_events",
    "description",
    "emoji_events",
    "enable_ssl_verification",
    "feature_flag_events",
    "issues_events",
    "job_events",
    "merge_requests_events",
    "name",
    "note_events",
    "pipeline_events",
    "push_events",
    "push_events_branch_filter",
    "releases_events",
    "resource_access_token_events",
    "tag_push_events",
    "token",
    "wiki_page_events",
];

const NO_QUERY: &[&str] = &[];

pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/personal_access_tokens/self",
        query: NO_QUERY,
        body: None,
    },
    Route {
        method: "GET",
        path: "/user",
        query: NO_QUERY,
        body: None,
    },
    Route {
        method: "GET",
        path: "/users",
        query: &[
            "username",
            "search",
            "active",
            "blocked",
            "external",
            "exclude_internal",
            "exclude_external",
            "without_project_bots",
            "extern_uid",
            "provider",
            "created_before",
            "created_after",
            "order_by",
            "sort",
            "page",
            "per_page",
        ],
        body: None,
    },
    Route {
        method: "GET",
        path: "/users/{id}",
        query: NO_QUERY,
        body: None,
    },
    Route {
        method: "GET",
        path: "/projects/{id}",
        query: &["license", "statistics", "with_custom_attributes"],
        body: None,
    },
    Route {
        method: "GET",
        path: "/projects",
        query: &[
            "active",
            "archived",
            "id_after",
            "id_before",
            "imported",
            "include_hidden",
            "include_pending_delete",
            "last_activity_after",
            "last_activity_before",
            "membership",
            "min_access_level",
            "order_by",
            "owned",
            "repository_checksum_failed",
            "repository_storage",
            "search",
            "search_namespaces",
            "simple",
            "sort",
            "starred",
            "statistics",
            "topic",
            "topic_id",
            "updated_after",
            "updated_before",
            "visibility",
            "wiki_checksum_failed",
            "with_custom_attributes",
            "with_issues_enabled",
            "with_merge_requests_enabled",
            "with_programming_language",
            "page",
            "per_page",
        ],
        body: None,
    },
    Route {
        method: "GET",
        path: "/projects/{id}/repository/tree",
        query: &[
            "ref",
            "path",
            "recursive",
            "pagination",
            "page_token",
            "page",
            "per_page",
        ],
        body: None,
    },
    Route {
        method: "GET",
        path: "/projects/{id}/repository/files/{file_path}",
        query: &["ref"],
        body: None,
    },
    // "Get file metadata only": the `X-Gitlab-*` headers, no body.
    Route {
        method: "HEAD",
        path: "/projects/{id}/repository/files/{file_path}",
        query: &["ref"],
        body: None,
    },
    Route {
        method: "GET",
        path: "/projects/{id}/repository/commits/{sha}",
        query: &["stats"],
        body: None,
    },
    Route {
        method: "POST",
        path: "/projects/{id}/repository/commits",
        query: NO_QUERY,
        body: Some(Body {
            required: &["branch", "commit_message", "actions"],
            optional: &[
                "start_branch",
                "start_sha",
                "start_project",
                "author_email",
                "author_name",
                "stats",
                "force",
            ],
        }),
    },
    Route {
        method: "GET",
        path: "/projects/{id}/repository/branches/{branch}",
        query: NO_QUERY,
        body: None,
    },
    Route {
        method: "GET",
        path: "/projects/{id}/merge_requests",
        query: &[
            "state",
            "order_by",
            "sort",
            "milestone",
            "view",
            "labels",
            "with_labels_details",
            "with_merge_status_recheck",
            "created_after",
            "created_before",
            "updated_after",
            "updated_before",
            "scope",
            "author_id",
            "author_username",
            "assignee_id",
            "reviewer_id",
            "reviewer_username",
            "my_reaction_emoji",
            "source_branch",
            "target_branch",
            "search",
            "in",
            "wip",
            "iids[]",
            "page",
            "per_page",
        ],
        body: None,
    },
    Route {
        method: "POST",
        path: "/projects/{id}/merge_requests",
        query: NO_QUERY,
        body: Some(Body {
            required: &["source_branch", "target_branch", "title"],
            optional: &[
                "allow_collaboration",
                "allow_maintainer_to_push",
                "approvals_before_merge",
                "assignee_id",
                "assignee_ids",
                "description",
                "labels",
                "merge_after",
                "milestone_id",
                "remove_source_branch",
                "reviewer_ids",
                "squash",
                "target_project_id",
            ],
        }),
    },
    Route {
        method: "GET",
        path: "/projects/{id}/merge_requests/{merge_request_iid}",
        query: &[
            "include_diverged_commits_count",
            "include_rebase_in_progress",
            "render_html",
        ],
        body: None,
    },
    Route {
        method: "PUT",
        path: "/projects/{id}/merge_requests/{merge_request_iid}",
        query: NO_QUERY,
        body: Some(Body {
            required: &[],
            optional: MR_WRITE,
        }),
    },
    Route {
        method: "POST",
        path: "/projects/{id}/merge_requests/{merge_request_iid}/cancel_merge_when_pipeline_succeeds",
        query: NO_QUERY,
        body: None,
    },
    Route {
        method: "PUT",
        path: "/projects/{id}/merge_requests/{merge_request_iid}/merge",
        query: NO_QUERY,
        body: Some(Body {
            required: &[],
            optional: &[
                "auto_merge",
                "merge_commit_message",
                "merge_when_pipeline_succeeds",
                "sha",
                "should_remove_source_branch",
                "squash",
                "squash_commit_message",
            ],
        }),
    },
    Route {
        method: "GET",
        path: "/projects/{id}/merge_requests/{merge_request_iid}/notes",
        query: &["sort", "order_by", "page", "per_page"],
        body: None,
    },
    Route {
        method: "POST",
        path: "/projects/{id}/merge_requests/{merge_request_iid}/notes",
        query: NO_QUERY,
        body: Some(Body {
            required: &["body"],
            optional: &[
                "confidential",
                "created_at",
                "internal",
                "merge_request_diff_head_sha",
            ],
        }),
    },
    Route {
        method: "GET",
        path: "/projects/{id}/merge_requests/{merge_request_iid}/notes/{note_id}",
        query: NO_QUERY,
        body: None,
    },
    Route {
        method: "PUT",
        path: "/projects/{id}/merge_requests/{merge_request_iid}/notes/{note_id}",
        query: NO_QUERY,
        body: Some(Body {
            required: &["body"],
            optional: &["confidential"],
        }),
    },
    Route {
        method: "DELETE",
        path: "/projects/{id}/merge_requests/{merge_request_iid}/notes/{note_id}",
        query: NO_QUERY,
        body: None,
    },
    Route {
        method: "GET",
        path: "/projects/{id}/merge_requests/{merge_request_iid}/notes/{note_id}/award_emoji",
        query: PAGES,
        body: None,
    },
    Route {
        method: "POST",
        path: "/projects/{id}/merge_requests/{merge_request_iid}/notes/{note_id}/award_emoji",
        query: NO_QUERY,
        body: Some(Body {
            required: &["name"],
            optional: &[],
        }),
    },
    Route {
        method: "DELETE",
        path: "/projects/{id}/merge_requests/{merge_request_iid}/notes/{note_id}/award_emoji/{award_id}",
        query: NO_QUERY,
        body: None,
    },
    Route {
        method: "POST",
        path: "/projects/{id}/statuses/{sha}",
        query: NO_QUERY,
        body: Some(Body {
            required: &["state"],
            optional: &[
                "context",
                "coverage",
                "description",
                "name",
                "pipeline_id",
                "ref",
                "target_url",
            ],
        }),
    },
    Route {
        method: "GET",
        path: "/projects/{id}/members/all/{user_id}",
        query: NO_QUERY,
        body: None,
    },
    Route {
        method: "GET",
        path: "/projects/{id}/hooks",
        query: PAGES,
        body: None,
    },
    Route {
        method: "POST",
        path: "/projects/{id}/hooks",
        query: NO_QUERY,
        body: Some(Body {
            required: &["url"],
            optional: HOOK_ATTRIBUTES,
        }),
    },
    Route {
        method: "PUT",
        path: "/projects/{id}/hooks/{hook_id}",
        query: NO_QUERY,
        body: Some(Body {
            required: &["url"],
            optional: HOOK_ATTRIBUTES,
        }),
    },
    Route {
        method: "POST",
        path: "/projects/{id}/hooks/{hook_id}/test/{trigger}",
        query: NO_QUERY,
        body: None,
    },
];

fn matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

/// The route a request (`path` below `/api/v4`, still URL-encoded) hits,
/// or why it is not one GitLab documents.
pub fn check(
    method: &str,
    path: &str,
    query: &BTreeMap<String, String>,
    body: &Value,
) -> Result<&'static Route, String> {
    let route = ROUTES
        .iter()
        .find(|r| r.method == method && matches(r.path, path))
        .ok_or_else(|| format!("{method} {path}: no such route in GitLab's REST API"))?;
    if let Some(name) = query.keys().find(|k| !route.query.contains(&k.as_str())) {
        return Err(format!(
            "{method} {}: unknown query parameter `{name}`",
            route.path
        ));
    }
    match (&route.body, body) {
        (None, Value::Null) => {}
        (None, other) => {
            return Err(format!(
                "{method} {}: takes no body, got {other}",
                route.path
            ));
        }
        (Some(spec), Value::Null) if !spec.required.is_empty() => {
            return Err(format!("{method} {}: body missing", route.path));
        }
        (Some(_), Value::Null) => {}
        (Some(spec), Value::Object(fields)) => {
            if let Some(missing) = spec.required.iter().find(|r| !fields.contains_key(**r)) {
                return Err(format!(
                    "{method} {}: required attribute `{missing}` missing",
                    route.path
                ));
            }
            if let Some(unknown) = fields.keys().find(|k| {
                !spec.required.contains(&k.as_str()) && !spec.optional.contains(&k.as_str())
            }) {
                return Err(format!(
                    "{method} {}: unknown attribute `{unknown}`",
                    route.path
                ));
            }
        }
        (Some(_), other) => {
            return Err(format!(
                "{method} {}: body is not an object: {other}",
                route.path
            ));
        }
    }
    Ok(route)
}
