//! Commit mode `api` end to end on both fakes and both backends: commits
//! written through the forges' APIs (Verified), the fallback when a git
//! push is refused for missing signatures, a branch that moved under an
//! API commit, and a change too large for the API.

mod support;

use graft::store::commit_via::CommitVia;
use graft::store::now_ms;
use graft::store::projects::{Mode, SyncStatus};
use support::TestDb;
use support::harness::Harness;
use support::sync::{event_kinds, github_project, gitlab_project, input, put, settled};

const REPO: &str = "acme/infra";
const INSTALLATION: i64 = 77;
const BRANCH: &str = "graft/infra-gen";

async fn api_mode_commits_on_github_are_verified(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    h.github.git.commit(
        REPO,
        "main",
        &[("infra/gen/old.tf", Some(b"# old\n".as_slice()))],
        "seed",
    );
    let p = github_project(&h, REPO, Mode::PullRequest, "infra/gen").await;
    h.app
        .store
        .set_commit_via(p.id, CommitVia::Api, now_ms())
        .await
        .unwrap();
    put(&h, p.id, &[input("main.tf", "# main\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    let head = h.github.git.head(REPO, BRANCH).expect("the branch");
    assert!(
        h.github.commit_is_verified(REPO, &head),
        "a Verified commit"
    );
    assert_eq!(synced.sync_branch_sha.as_deref(), Some(head.as_str()));
    assert_eq!(
        h.github
            .git
            .file(REPO, &head, "infra/gen/main.tf")
            .as_deref(),
        Some(b"# main\n".as_slice())
    );
    assert_eq!(
        h.github
            .git
            .file(REPO, &head, "infra/gen/old.tf")
            .as_deref(),
        Some(b"# old\n".as_slice()),
        "files graft does not manage stay"
    );
    let pulls = h.github.pulls(REPO);
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].head_sha, head);
    let checks = h.github.check_runs(REPO);
    assert!(checks.iter().any(|c| c.head_sha == head), "{checks:?}");

    // A second sync rewrites graft's own branch from main (as a force
    // push would): one commit on top of main, verified.
    put(&h, p.id, &[input("vars.tf", "# vars\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    let again = h.github.git.head(REPO, BRANCH).unwrap();
    assert_ne!(again, head);
    assert!(h.github.commit_is_verified(REPO, &again));
    assert_eq!(synced.sync_branch_sha.as_deref(), Some(again.as_str()));
    assert_eq!(
        h.github.git.log(REPO, BRANCH).len(),
        h.github.git.log(REPO, "main").len() + 1
    );
    for path in ["infra/gen/main.tf", "infra/gen/vars.tf"] {
        assert!(h.github.git.file(REPO, &again, path).is_some(), "{path}");
    }
    h.app.stop().await;
}

async fn a_push_refused_for_signatures_falls_back_to_the_api(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    h.github.require_signed_commits(REPO, "graft/*");
    let p = github_project(&h, REPO, Mode::PullRequest, "infra/gen").await;
    put(&h, p.id, &[input("main.tf", "# main\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    let head = h.github.git.head(REPO, BRANCH).expect("the branch");
    assert!(h.github.commit_is_verified(REPO, &head));
    assert_eq!(synced.commit_via, CommitVia::Git, "the project stays git");
    assert!(
        event_kinds(&h, p.id)
            .await
            .contains(&"sync.commit_via_api_fallback".to_string())
    );
    let pr = h.github.pulls(REPO)[0].number;
    let sticky = h
        .github
        .comments(REPO, pr)
        .into_iter()
        .find(|c| c.body.contains("<!-- graft:status -->"))
        .expect("a status comment");
    assert!(
        sticky.body.contains("requires signed commits"),
        "{}",
        sticky.body
    );
    h.app.stop().await;
}

async fn a_file_too_large_for_the_api_fails_with_the_limit(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    h.github.set_max_file_bytes(4);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra/gen").await;
    h.app
        .store
        .set_commit_via(p.id, CommitVia::Api, now_ms())
        .await
        .unwrap();
    put(&h, p.id, &[input("main.tf", "# more than four bytes\n")]).await;
    let failed = settled(&h, p.id, SyncStatus::Error).await;
    let error = failed.sync_error.unwrap_or_default();
    assert!(error.contains("file size limit"), "{error}");
    let branch = h.github.git.head(REPO, BRANCH);
    assert!(
        branch.is_none() || branch == h.github.git.head(REPO, "main"),
        "no commit landed"
    );
    h.app.stop().await;
}

async fn api_mode_commits_on_gitlab_are_verified(db: TestDb) {
    const PATH: &str = "platform/infra";
    let h = Harness::start(&db).await;
    h.gitlab_project(PATH);
    let p = gitlab_project(&h, PATH, Mode::PullRequest, "infra/gen").await;
    h.app
        .store
        .set_commit_via(p.id, CommitVia::Api, now_ms())
        .await
        .unwrap();
    put(&h, p.id, &[input("main.tf", "# main\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    let head = h.gitlab.git.head(PATH, BRANCH).expect("the branch");
    assert!(h.gitlab.commit_is_verified(PATH, &head));
    assert_eq!(synced.sync_branch_sha.as_deref(), Some(head.as_str()));
    assert_eq!(
        h.gitlab
            .git
            .file(PATH, &head, "infra/gen/main.tf")
            .as_deref(),
        Some(b"# main\n".as_slice())
    );
    put(&h, p.id, &[input("main.tf", "# main v2\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    let again = h.gitlab.git.head(PATH, BRANCH).unwrap();
    assert!(h.gitlab.commit_is_verified(PATH, &again));
    assert_eq!(
        h.gitlab
            .git
            .file(PATH, &again, "infra/gen/main.tf")
            .as_deref(),
        Some(b"# main v2\n".as_slice())
    );
    h.app.stop().await;
}

both_backends!(
    api_mode_commits_on_github_are_verified,
    a_push_refused_for_signatures_falls_back_to_the_api,
    a_file_too_large_for_the_api_fails_with_the_limit,
    api_mode_commits_on_gitlab_are_verified,
);
