//! Real GitHub and GitLab payloads (tests/fixtures/webhooks) parse into the
//! right graft events.

mod support;

use graft::events::{
    CommentAction, ForgeEvent, InstallationAction, Parsed, PullRequestAction, github, gitlab,
};
use support::fixture;

fn event(parsed: Parsed) -> ForgeEvent {
    match parsed {
        Parsed::Event(event) => *event,
        Parsed::Ignored { reason } => panic!("ignored: {reason}"),
    }
}

fn gh(event_name: &str, file: &str) -> ForgeEvent {
    event(github::parse(event_name, &fixture(&format!("github/{file}"))).unwrap())
}

fn gl(event_name: &str, file: &str) -> ForgeEvent {
    event(gitlab::parse(event_name, &fixture(&format!("gitlab/{file}"))).unwrap())
}

#[test]
fn github_ping_and_push() {
    assert_eq!(gh("ping", "ping.json"), ForgeEvent::Ping);
    let ForgeEvent::Push(push) = gh("push", "push.json") else {
        panic!()
    };
    assert_eq!(push.repo.path, "Codertocat/Hello-World");
    assert_eq!(push.branch.as_deref(), Some("master"));
    assert_eq!(push.changed_paths, vec!["README.md".to_string()]);
    assert_eq!(push.before.len(), 40);
    assert_eq!(push.after.len(), 40);
    assert!(!push.deleted);
}

#[test]
fn github_pull_requests() {
    for (file, action) in [
        ("pull_request.opened.json", PullRequestAction::Opened),
        (
            "pull_request.synchronize.json",
            PullRequestAction::Synchronize,
        ),
        ("pull_request.closed.json", PullRequestAction::Closed),
    ] {
        let ForgeEvent::PullRequest(pr) = gh("pull_request", file) else {
            panic!("{file}")
        };
        assert_eq!(pr.action, action, "{file}");
        assert!(pr.number.get() > 0);
        assert!(!pr.head_branch.is_empty() && !pr.base_branch.is_empty());
        assert_eq!(pr.merge_commit_sha, None, "{file}: not merged");
    }
    // The examples have no merged PR; GitHub marks a merge by `merged: true`
    // on a `closed` action.
    let mut merged: serde_json::Value =
        serde_json::from_slice(&fixture("github/pull_request.closed.json")).unwrap();
    merged["pull_request"]["merged"] = true.into();
    merged["pull_request"]["merge_commit_sha"] = "c0ffee0000000000000000000000000000000000".into();
    let ForgeEvent::PullRequest(pr) =
        event(github::parse("pull_request", merged.to_string().as_bytes()).unwrap())
    else {
        panic!()
    };
    assert_eq!(pr.action, PullRequestAction::Merged);
    assert_eq!(
        pr.merge_commit_sha.as_deref(),
        Some("c0ffee0000000000000000000000000000000000")
    );
}

#[test]
fn github_comments() {
    let ForgeEvent::Comment(created) = gh("issue_comment", "issue_comment.created.json") else {
        panic!()
    };
    assert_eq!(created.action, CommentAction::Created);
    assert!(
        !created.on_pull_request,
        "the example comments on a plain issue"
    );
    assert_eq!(created.previous_body, None);
    assert!(!created.author.is_bot);
    let ForgeEvent::Comment(edited) = gh("issue_comment", "issue_comment.edited.json") else {
        panic!()
    };
    assert_eq!(edited.action, CommentAction::Edited);
    assert_eq!(
        edited.previous_body.as_deref(),
        Some("You are totally right! I'll get this fixed right away.")
    );
    let mut on_pr: serde_json::Value =
        serde_json::from_slice(&fixture("github/issue_comment.created.json")).unwrap();
    on_pr["issue"]["pull_request"] =
        serde_json::json!({ "url": "https://api.github.com/repos/o/r/pulls/1" });
    on_pr["comment"]["user"]["type"] = "Bot".into();
    let ForgeEvent::Comment(c) =
        event(github::parse("issue_comment", on_pr.to_string().as_bytes()).unwrap())
    else {
        panic!()
    };
    assert!(c.on_pull_request && c.author.is_bot);
}

#[test]
fn github_installations() {
    let ForgeEvent::Installation(created) = gh("installation", "installation.created.json") else {
        panic!()
    };
    assert_eq!(created.action, InstallationAction::Created);
    assert!(
        !created.repositories_added.is_empty(),
        "created lists the repositories granted"
    );
    let ForgeEvent::Installation(deleted) = gh("installation", "installation.deleted.json") else {
        panic!()
    };
    assert_eq!(deleted.action, InstallationAction::Deleted);
    let ForgeEvent::Installation(added) = gh(
        "installation_repositories",
        "installation_repositories.added.json",
    ) else {
        panic!()
    };
    assert_eq!(added.action, InstallationAction::RepositoriesAdded);
    assert_eq!(
        added.repositories_added,
        vec!["Codertocat/Space".to_string()]
    );
    let ForgeEvent::Installation(removed) = gh(
        "installation_repositories",
        "installation_repositories.removed.json",
    ) else {
        panic!()
    };
    assert_eq!(removed.action, InstallationAction::RepositoriesRemoved);
    assert!(!removed.repositories_removed.is_empty());
}

#[test]
fn github_unhandled_events_and_actions_are_ignored() {
    assert!(matches!(
        github::parse("star", &fixture("github/star.created.json")).unwrap(),
        Parsed::Ignored { .. }
    ));
    let labeled = br#"{"action":"labeled","number":1}"#;
    assert!(matches!(
        github::parse("pull_request", labeled).unwrap(),
        Parsed::Ignored { .. }
    ));
}

#[test]
fn gitlab_push_lists_changed_paths() {
    let ForgeEvent::Push(push) = gl("Push Hook", "push.json") else {
        panic!()
    };
    assert_eq!(push.repo.path, "mike/diaspora");
    assert_eq!(push.branch.as_deref(), Some("master"));
    assert!(!push.changed_paths.is_empty());
    let mut sorted = push.changed_paths.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, push.changed_paths, "sorted and unique");
}

#[test]
fn gitlab_merge_requests() {
    for (file, action) in [
        ("merge_request.open.json", PullRequestAction::Opened),
        ("merge_request.close.json", PullRequestAction::Closed),
        ("merge_request.merge.json", PullRequestAction::Merged),
    ] {
        let ForgeEvent::PullRequest(mr) = gl("Merge Request Hook", file) else {
            panic!("{file}")
        };
        assert_eq!(mr.action, action, "{file}");
        assert!(mr.number.get() > 0, "{file}");
        assert!(mr.head_sha.is_some(), "{file}");
    }
}

#[test]
fn gitlab_merge_request_updates_are_pushes_only_with_an_oldrev() {
    // GitLab's own example: labels and draft changed, no commits.
    let raw = fixture("gitlab/merge_request.update.json");
    assert!(matches!(
        gitlab::parse("Merge Request Hook", &raw).unwrap(),
        Parsed::Ignored { .. }
    ));
    // The same update with new commits (GitLab then sets `oldrev`).
    let mut pushed: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    pushed["object_attributes"]["oldrev"] = serde_json::json!("a".repeat(40));
    let body = serde_json::to_vec(&pushed).unwrap();
    let ForgeEvent::PullRequest(mr) = event(gitlab::parse("Merge Request Hook", &body).unwrap())
    else {
        panic!("a pull request event")
    };
    assert_eq!(mr.action, PullRequestAction::Synchronize);
}

#[test]
fn gitlab_notes_on_merge_requests() {
    let ForgeEvent::Comment(note) = gl("Note Hook", "note.merge_request.json") else {
        panic!()
    };
    assert!(note.on_pull_request);
    assert_eq!(note.action, CommentAction::Created);
    assert_eq!(note.author.login, "root");
    assert!(note.number.get() > 0);
}

#[test]
fn gitlab_unhandled_kinds_are_ignored() {
    assert!(matches!(
        gitlab::parse("Issue Hook", &fixture("gitlab/issue.json")).unwrap(),
        Parsed::Ignored { .. }
    ));
    assert!(gitlab::is_bot_username("project_42_bot_3f2a"));
    assert!(gitlab::is_bot_username("project_42_bot"));
    assert!(gitlab::is_bot_username("group_7_bot_b41e"));
    assert!(gitlab::is_bot_username("service_account_group_7_9f2c"));
    assert!(!gitlab::is_bot_username("robot-ann"));
    // People whose names merely look alike are people.
    assert!(!gitlab::is_bot_username("project_botanist"));
    assert!(!gitlab::is_bot_username("group_lead_bot"));
}
