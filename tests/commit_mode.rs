//! Commit mode `api` end to end on both fakes and both backends: commits
//! written through the forges' APIs (Verified), the fallback when a git
//! push is refused for missing signatures, a branch that moved under an
//! API commit, direct mode on a protected branch, executable files, and a
//! change too large for the API.

mod support;

use graft::store::commit_via::CommitVia;
use graft::store::files::FileInput;
use graft::store::now_ms;
use graft::store::projects::{Mode, SyncStatus};
use support::TestDb;
use support::fake_common::PushBefore;
use support::git_host::Special;
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
    h.stop().await;
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
    h.stop().await;
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
    h.stop().await;
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
    h.stop().await;
}

async fn api_mode(h: &Harness, project: graft::ids::ProjectId) {
    h.app
        .store
        .set_commit_via(project, CommitVia::Api, now_ms())
        .await
        .unwrap();
}

fn executable(path: &str, content: &str) -> FileInput {
    FileInput {
        executable: Some(true),
        ..input(path, content)
    }
}

fn human_push(repo: &str, on: &str, branch: &str, path: &str) -> PushBefore {
    PushBefore {
        on: on.into(),
        repo: repo.into(),
        branch: branch.into(),
        path: path.into(),
        content: b"# by a human\n".to_vec(),
        user: "alice".into(),
    }
}

async fn an_executable_file_is_refused_on_github_by_name(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra/gen").await;
    api_mode(&h, p.id).await;
    put(
        &h,
        p.id,
        &[
            input("main.tf", "# main\n"),
            executable("run.sh", "#!/bin/sh\n"),
        ],
    )
    .await;
    let failed = settled(&h, p.id, SyncStatus::Error).await;
    let error = failed.sync_error.unwrap_or_default();
    assert!(
        error.contains("`infra/gen/run.sh` is executable") && error.contains("`commit_via` `git`"),
        "{error}"
    );
    assert_eq!(
        h.github.git.head(REPO, BRANCH),
        None,
        "no branch, no commit"
    );
    assert!(h.github.pulls(REPO).is_empty());
    h.stop().await;
}

async fn an_executable_file_keeps_its_mode_on_gitlab(db: TestDb) {
    const PATH: &str = "platform/infra";
    let h = Harness::start(&db).await;
    h.gitlab_project(PATH);
    let p = gitlab_project(&h, PATH, Mode::PullRequest, "infra/gen").await;
    api_mode(&h, p.id).await;
    put(
        &h,
        p.id,
        &[
            input("main.tf", "# main\n"),
            executable("run.sh", "#!/bin/sh\n"),
        ],
    )
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    let head = h.gitlab.git.head(PATH, BRANCH).expect("the branch");
    let tree = h.gitlab.git.tree(PATH, &head);
    assert_eq!(tree["infra/gen/run.sh"].0, "100755", "{tree:?}");
    assert_eq!(tree["infra/gen/main.tf"].0, "100644", "{tree:?}");
    h.stop().await;
}

/// `main` with `infra/gen/run.sh` executable (100755) in `repo`.
fn seed_executable(git: &support::git_host::GitHost, repo: &str) {
    git.commit_special(
        repo,
        "main",
        "infra/gen/run.sh",
        Special::Executable(b"#!/bin/sh\n"),
        "an executable script",
    );
}

/// GitHub's createCommitOnBranch keeps an updated file's mode: a file
/// executable in the repository that graft's is not would stay executable,
/// so the sync refuses by name and writes nothing.
async fn clearing_an_executable_bit_is_refused_on_github_by_name(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    seed_executable(&h.github.git, REPO);
    let main = h.github.git.head(REPO, "main").unwrap();
    let p = github_project(&h, REPO, Mode::PullRequest, "infra/gen").await;
    api_mode(&h, p.id).await;
    put(&h, p.id, &[input("run.sh", "#!/bin/sh\necho v2\n")]).await;
    let failed = settled(&h, p.id, SyncStatus::Error).await;
    let error = failed.sync_error.unwrap_or_default();
    assert!(
        error.contains("`infra/gen/run.sh` is executable in the repository")
            && error.contains("would stay executable")
            && error.contains("`commit_via` `git`"),
        "{error}"
    );
    assert_eq!(
        h.github.git.head(REPO, BRANCH),
        None,
        "no branch, no commit"
    );
    assert_eq!(
        h.github.git.head(REPO, "main").as_deref(),
        Some(main.as_str())
    );
    assert!(h.github.pulls(REPO).is_empty());
    h.stop().await;
}

/// GitLab's update keeps a file's mode; graft sends a `chmod` after it
/// when the bit changes, either way.
async fn the_executable_bit_is_set_and_cleared_on_gitlab(db: TestDb) {
    const PATH: &str = "platform/infra";
    let h = Harness::start(&db).await;
    h.gitlab_project(PATH);
    seed_executable(&h.gitlab.git, PATH);
    h.gitlab.git.commit(
        PATH,
        "main",
        &[("infra/gen/tool.sh", Some(b"#!/bin/sh\n".as_slice()))],
        "a plain script",
    );
    let p = gitlab_project(&h, PATH, Mode::PullRequest, "infra/gen").await;
    api_mode(&h, p.id).await;
    put(
        &h,
        p.id,
        &[
            input("run.sh", "#!/bin/sh\necho v2\n"),
            executable("tool.sh", "#!/bin/sh\necho v2\n"),
        ],
    )
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    let head = h.gitlab.git.head(PATH, BRANCH).expect("the branch");
    let tree = h.gitlab.git.tree(PATH, &head);
    assert_eq!(tree["infra/gen/run.sh"].0, "100644", "cleared: {tree:?}");
    assert_eq!(tree["infra/gen/tool.sh"].0, "100755", "set: {tree:?}");
    assert_eq!(
        h.gitlab
            .git
            .file(PATH, &head, "infra/gen/run.sh")
            .as_deref(),
        Some(b"#!/bin/sh\necho v2\n".as_slice())
    );
    assert!(h.gitlab.commit_is_verified(PATH, &head));
    h.stop().await;
}

async fn direct_mode_in_api_falls_back_to_a_pr_on_a_protected_branch(db: TestDb) {
    const PATH: &str = "platform/infra";
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    h.github.protect_branch(REPO, "main");
    h.gitlab_project(PATH);
    h.gitlab.protect_branch(PATH, "main");
    let on_github = github_project(&h, REPO, Mode::Direct, "infra/gen").await;
    let on_gitlab = gitlab_project(&h, PATH, Mode::Direct, "infra/gen").await;
    for p in [&on_github, &on_gitlab] {
        api_mode(&h, p.id).await;
        put(&h, p.id, &[input("main.tf", "# main\n")]).await;
        let synced = settled(&h, p.id, SyncStatus::Success).await;
        assert!(
            synced.pull_request_number.is_some(),
            "a PR instead: {synced:?}"
        );
        assert!(
            event_kinds(&h, p.id)
                .await
                .contains(&"sync.fallback_to_pull_request".to_string())
        );
    }
    let main = h.github.git.head(REPO, "main").unwrap();
    assert!(
        h.github
            .git
            .file(REPO, &main, "infra/gen/main.tf")
            .is_none(),
        "main unchanged"
    );
    let head = h.github.git.head(REPO, BRANCH).expect("graft's branch");
    assert!(h.github.commit_is_verified(REPO, &head));
    assert_eq!(h.github.pulls(REPO)[0].head_sha, head);
    let main = h.gitlab.git.head(PATH, "main").unwrap();
    assert!(
        h.gitlab
            .git
            .file(PATH, &main, "infra/gen/main.tf")
            .is_none()
    );
    let head = h.gitlab.git.head(PATH, BRANCH).expect("graft's branch");
    assert!(h.gitlab.commit_is_verified(PATH, &head));
    h.stop().await;
}

async fn a_target_moved_under_an_api_commit_is_stale_and_kept(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::Direct, "infra/gen").await;
    api_mode(&h, p.id).await;
    // Lands on main just before GitHub answers graft's commit: STALE_DATA.
    h.github
        .push_before(human_push(REPO, "POST /graphql", "main", "docs/notes.md"));
    put(&h, p.id, &[input("main.tf", "# main\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    let main = h.github.git.head(REPO, "main").unwrap();
    assert!(h.github.commit_is_verified(REPO, &main));
    assert!(
        h.github
            .git
            .file(REPO, &main, "infra/gen/main.tf")
            .is_some()
    );
    assert_eq!(
        h.github.git.file(REPO, &main, "docs/notes.md").as_deref(),
        Some(b"# by a human\n".as_slice()),
        "the human's commit stays"
    );
    let log = h.github.git.log(REPO, "main");
    assert!(
        log.iter()
            .any(|(_, _, subject)| subject == "a human commit"),
        "{log:?}"
    );
    h.stop().await;
}

async fn graft_branch_moved_while_rewriting_is_not_overwritten(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra/gen").await;
    api_mode(&h, p.id).await;
    put(&h, p.id, &[input("main.tf", "# main\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    // While graft builds the rewrite on its temporary branch, someone
    // commits to graft's branch: the move must not drop their commit.
    h.github.push_before(human_push(
        REPO,
        "POST /graphql",
        BRANCH,
        "infra/gen/extra.tf",
    ));
    put(&h, p.id, &[input("vars.tf", "# vars\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    let head = h.github.git.head(REPO, BRANCH).unwrap();
    assert!(h.github.commit_is_verified(REPO, &head));
    assert_eq!(synced.sync_branch_sha.as_deref(), Some(head.as_str()));
    assert!(synced.sync_branch_shared, "someone else committed");
    let log = h.github.git.log(REPO, BRANCH);
    assert!(
        log.iter()
            .any(|(_, _, subject)| subject == "a human commit"),
        "{log:?}"
    );
    for path in [
        "infra/gen/main.tf",
        "infra/gen/vars.tf",
        "infra/gen/extra.tf",
    ] {
        assert!(h.github.git.file(REPO, &head, path).is_some(), "{path}");
    }
    assert_eq!(
        h.github.git.head(REPO, "graft-tmp/graft/infra-gen"),
        None,
        "temporary branch deleted"
    );
    h.stop().await;
}

async fn a_refused_rewrite_leaves_graft_branch_where_it_was(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra/gen").await;
    api_mode(&h, p.id).await;
    put(&h, p.id, &[input("main.tf", "# main\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    let before = h.github.git.head(REPO, BRANCH).unwrap();
    h.github.set_max_file_bytes(8);
    put(&h, p.id, &[input("vars.tf", "# more than eight bytes\n")]).await;
    let failed = settled(&h, p.id, SyncStatus::Error).await;
    assert!(
        failed
            .sync_error
            .unwrap_or_default()
            .contains("file size limit"),
        "GitHub's refusal is reported"
    );
    assert_eq!(
        h.github.git.head(REPO, BRANCH).as_deref(),
        Some(before.as_str()),
        "graft's branch never pointed at the base"
    );
    let pulls = h.github.pulls(REPO);
    assert_eq!(pulls[0].head_sha, before);
    assert_eq!(h.github.git.head(REPO, "graft-tmp/graft/infra-gen"), None);
    h.stop().await;
}

async fn a_gitlab_push_refused_for_signatures_falls_back_to_the_api(db: TestDb) {
    const PATH: &str = "platform/infra";
    let h = Harness::start(&db).await;
    h.gitlab_project(PATH);
    h.gitlab.reject_unsigned_commits(PATH);
    let p = gitlab_project(&h, PATH, Mode::PullRequest, "infra/gen").await;
    put(&h, p.id, &[input("main.tf", "# main\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(synced.commit_via, CommitVia::Git, "the project stays git");
    let head = h.gitlab.git.head(PATH, BRANCH).expect("the branch");
    assert!(h.gitlab.commit_is_verified(PATH, &head));
    assert_eq!(synced.sync_branch_sha.as_deref(), Some(head.as_str()));
    assert!(
        event_kinds(&h, p.id)
            .await
            .contains(&"sync.commit_via_api_fallback".to_string())
    );
    h.stop().await;
}

async fn a_fallback_that_fails_is_not_audited_as_done(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    h.github.require_signed_commits(REPO, "graft/*");
    let p = github_project(&h, REPO, Mode::PullRequest, "infra/gen").await;
    put(&h, p.id, &[executable("run.sh", "#!/bin/sh\n")]).await;
    let failed = settled(&h, p.id, SyncStatus::Error).await;
    let error = failed.sync_error.unwrap_or_default();
    assert!(error.contains("is executable"), "{error}");
    assert!(
        !event_kinds(&h, p.id)
            .await
            .contains(&"sync.commit_via_api_fallback".to_string())
    );
    h.stop().await;
}

async fn a_gitlab_commit_that_landed_on_a_push_counts_as_moved(db: TestDb) {
    const PATH: &str = "platform/infra";
    let h = Harness::start(&db).await;
    h.gitlab_project(PATH);
    let p = gitlab_project(&h, PATH, Mode::Direct, "infra/gen").await;
    api_mode(&h, p.id).await;
    // GitLab has no lease: graft's commit lands on top of this push, and
    // graft sees it from the commit's parent, fetches again and settles.
    h.gitlab.push_before(human_push(
        PATH,
        "POST /repository/commits",
        "main",
        "docs/notes.md",
    ));
    put(&h, p.id, &[input("main.tf", "# main\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    let main = h.gitlab.git.head(PATH, "main").unwrap();
    assert_eq!(
        synced.last_synced_commit_sha.as_deref(),
        Some(main.as_str())
    );
    assert!(
        h.gitlab
            .git
            .file(PATH, &main, "infra/gen/main.tf")
            .is_some()
    );
    assert!(h.gitlab.git.file(PATH, &main, "docs/notes.md").is_some());
    h.stop().await;
}

both_backends!(
    api_mode_commits_on_github_are_verified,
    a_push_refused_for_signatures_falls_back_to_the_api,
    a_file_too_large_for_the_api_fails_with_the_limit,
    api_mode_commits_on_gitlab_are_verified,
    an_executable_file_is_refused_on_github_by_name,
    an_executable_file_keeps_its_mode_on_gitlab,
    clearing_an_executable_bit_is_refused_on_github_by_name,
    the_executable_bit_is_set_and_cleared_on_gitlab,
    direct_mode_in_api_falls_back_to_a_pr_on_a_protected_branch,
    a_target_moved_under_an_api_commit_is_stale_and_kept,
    graft_branch_moved_while_rewriting_is_not_overwritten,
    a_refused_rewrite_leaves_graft_branch_where_it_was,
    a_gitlab_push_refused_for_signatures_falls_back_to_the_api,
    a_fallback_that_fails_is_not_audited_as_done,
    a_gitlab_commit_that_landed_on_a_push_counts_as_moved,
);
