//! The sync engine end to end against the fake GitHub: real git over smart
//! HTTP, real webhooks, graft's real router and workers, both databases.

mod support;

use graft::ids::PrNumber;
use graft::store::files::FileState;
use graft::store::now_ms;
use graft::store::projects::{Kind, Mode, Project, SyncStatus};
use graft::sync::schedule::SyncRequest;
use support::TestDb;
use support::fake_github::BOT_LOGIN;
use support::harness::Harness;
use support::sync::{hold, input, last_failed_job, poll_now, put, settled, sync_now};

const REPO: &str = "acme/infra";
const INSTALLATION: i64 = 77;

async fn project(h: &Harness, mode: Mode, kind: Kind, base_path: &str) -> Project {
    support::sync::new_project(h, "github", REPO, mode, kind, base_path).await
}

/// graft's status comment on PR `number`.
fn sticky(h: &Harness, number: i64) -> support::fake_github::Comment {
    h.github
        .comments(REPO, number)
        .into_iter()
        .find(|c| c.body.contains("<!-- graft:status -->"))
        .expect("a status comment")
}

async fn events(h: &Harness, project: graft::ids::ProjectId) -> Vec<String> {
    h.app
        .store
        .list_events(Some(project), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

async fn new_project_opens_a_pr_with_the_overlay_and_merging_completes_it(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    h.github.git.commit(
        REPO,
        "main",
        &[
            ("modules/vpc/main.tf", Some(b"variable \"cidr\" {}\n")),
            ("infra/gen/keep.txt", Some(b"human file\n")),
        ],
        "modules",
    );
    let before = h.github.git.tree(REPO, "main");
    let p = project(&h, Mode::PullRequest, Kind::Iac, "infra/gen").await;
    put(
        &h,
        p.id,
        &[
            input(
                "main.tf",
                "module \"vpc\" {\n  source = \"../../modules/vpc\"\n}\n",
            ),
            input("vars.tf", "variable \"x\" {}\n"),
        ],
    )
    .await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;

    // The PR: one, from graft's branch to main.
    let pulls = h.github.pulls(REPO);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    let pr = &pulls[0];
    assert_eq!(
        (pr.head.as_str(), pr.base.as_str(), pr.state.as_str()),
        ("graft/infra-gen", "main", "open")
    );
    assert!(pr.body.contains("/graft sync"), "{}", pr.body);
    assert_eq!(synced.pull_request_number, Some(PrNumber(pr.number)));
    assert_eq!(
        synced
            .pull_request_url
            .as_deref()
            .map(|u| u.contains(&pr.number.to_string())),
        Some(true)
    );
    assert_eq!(
        synced.last_synced_commit_sha,
        h.github.git.head(REPO, "main")
    );
    // The branch: graft's files on top, everything else byte for byte.
    let tree = h.github.git.tree(REPO, "graft/infra-gen");
    for (path, entry) in &before {
        assert_eq!(tree.get(path), Some(entry), "{path} changed");
    }
    assert!(tree.contains_key("infra/gen/main.tf") && tree.contains_key("infra/gen/vars.tf"));
    // The check run and the sticky comment.
    let checks = h.github.check_runs(REPO);
    assert_eq!(checks.len(), 1);
    assert_eq!(
        (checks[0].name.as_str(), checks[0].conclusion.as_deref()),
        ("graft", Some("success"))
    );
    assert_eq!(checks[0].head_sha, pr.head_sha);
    let comments = h.github.comments(REPO, pr.number);
    let sticky: Vec<_> = comments
        .iter()
        .filter(|c| c.body.contains("<!-- graft:status -->"))
        .collect();
    assert_eq!(sticky.len(), 1);
    assert_eq!(sticky[0].user, BOT_LOGIN);
    insta::assert_snapshot!("github_sticky_synced", support::redacted(&sticky[0].body));
    assert!(
        sticky[0].body.contains("✅ synced")
            && sticky[0].body.contains("`main.tf`")
            && sticky[0].body.contains("Validation**: ✅ passed"),
        "{}",
        sticky[0].body
    );
    let files = h.app.store.files(p.id).await.unwrap();
    assert!(
        files.iter().all(|f| f.state == FileState::Synced),
        "{files:?}"
    );
    assert!(events(&h, p.id).await.contains(&"sync.pushed".to_string()));

    // A second sync with new content edits the same PR and the same comment.
    put(
        &h,
        p.id,
        &[input("vars.tf", "variable \"x\" { default = 1 }\n")],
    )
    .await;
    h.wait_for("branch updated", || async {
        let content = h
            .github
            .git
            .file(REPO, "graft/infra-gen", "infra/gen/vars.tf")?;
        (content == b"variable \"x\" { default = 1 }\n").then_some(())
    })
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(h.github.pulls(REPO).len(), 1, "never two PRs");
    let sticky = h
        .github
        .comments(REPO, pr.number)
        .into_iter()
        .filter(|c| c.body.contains("<!-- graft:status -->"))
        .count();
    assert_eq!(sticky, 1, "the comment is edited in place");

    // Merge: the PR fields clear, the target head is recorded.
    let merge = h.github.merge_pull(REPO, pr.number, "octocat").unwrap();
    let merged = h
        .wait_for("merge recorded", || async {
            let p = h.app.store.require_project(p.id).await.unwrap();
            (p.pull_request_number.is_none()
                && p.last_synced_commit_sha.as_deref() == Some(merge.as_str()))
            .then_some(p)
        })
        .await;
    let _ = merged;
    let merged = settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(merged.pull_request_number, None);
    assert!(
        events(&h, p.id)
            .await
            .contains(&"pull_request.merged".to_string())
    );
    assert!(
        h.github.violations().is_empty(),
        "{:?}",
        h.github.violations()
    );
    h.stop().await;
}

async fn identical_content_is_no_change_and_no_job(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = project(&h, Mode::PullRequest, Kind::Iac, "infra").await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    let head = h.github.git.head(REPO, "graft/infra");
    // Syncs and reconciles: the fake may still be sending graft the
    // webhook of its own status comment, a (harmless) webhook job.
    let syncs = support::commands::sync_and_reconcile_jobs(&h);
    let jobs_before = syncs.await;
    assert_eq!(put(&h, p.id, &[input("a.tf", "# a\n")]).await, 0);
    assert_eq!(
        support::commands::sync_and_reconcile_jobs(&h).await,
        jobs_before,
        "no job queued"
    );
    assert_eq!(h.github.git.head(REPO, "graft/infra"), head, "no commit");
    h.stop().await;
}

async fn direct_mode_pushes_to_the_target_and_protection_falls_back_to_a_pr(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = project(&h, Mode::Direct, Kind::Iac, "infra").await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    let done = settled(&h, p.id, SyncStatus::Success).await;
    let main = h.github.git.head(REPO, "main").unwrap();
    assert_eq!(done.last_synced_commit_sha.as_deref(), Some(main.as_str()));
    assert!(h.github.git.file(REPO, "main", "infra/a.tf").is_some());
    assert!(h.github.pulls(REPO).is_empty());

    h.github.protect_branch(REPO, "main");
    put(&h, p.id, &[input("a.tf", "# b\n")]).await;
    let fallback = settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(
        h.github.git.head(REPO, "main").as_deref(),
        Some(main.as_str()),
        "main untouched"
    );
    let pulls = h.github.pulls(REPO);
    assert_eq!(pulls.len(), 1);
    assert_eq!(
        fallback.pull_request_number,
        Some(PrNumber(pulls[0].number))
    );
    let sticky = sticky(&h, pulls[0].number);
    assert!(
        sticky.body.contains("refused by branch protection"),
        "{}",
        sticky.body
    );
    assert!(
        events(&h, p.id)
            .await
            .contains(&"sync.fallback_to_pull_request".to_string())
    );
    h.stop().await;
}

async fn direct_mode_does_not_push_what_fails_validation(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = project(&h, Mode::Direct, Kind::Iac, "infra").await;
    let main = h.github.git.head(REPO, "main");
    put(
        &h,
        p.id,
        &[input("broken.tf", "resource \"a\" \"b\" {\n  x = \n")],
    )
    .await;
    let failed = settled(&h, p.id, SyncStatus::Error).await;
    let error = failed.sync_error.unwrap();
    assert!(
        error.contains("Validation failed") && error.contains("infra/broken.tf"),
        "{error}"
    );
    assert_eq!(h.github.git.head(REPO, "main"), main, "nothing pushed");
    assert_eq!(
        h.app.store.files(p.id).await.unwrap()[0].state,
        FileState::Pending,
        "still pending"
    );
    assert!(events(&h, p.id).await.contains(&"sync.failed".to_string()));
    h.stop().await;
}

async fn validation_failure_is_reported_on_the_pr(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = project(&h, Mode::PullRequest, Kind::Iac, "infra").await;
    put(
        &h,
        p.id,
        &[input(
            "m.tf",
            "module \"x\" {\n  source = \"../modules/missing\"\n}\n",
        )],
    )
    .await;
    let failed = settled(&h, p.id, SyncStatus::Error).await;
    assert!(failed.sync_error.unwrap().contains("modules/missing"));
    let pulls = h.github.pulls(REPO);
    assert_eq!(pulls.len(), 1, "the PR is still opened");
    let checks = h.github.check_runs(REPO);
    assert_eq!(
        checks.last().unwrap().conclusion.as_deref(),
        Some("failure")
    );
    let sticky = sticky(&h, pulls[0].number);
    assert!(
        sticky.body.contains("❌") && sticky.body.contains("modules/missing"),
        "{}",
        sticky.body
    );
    insta::assert_snapshot!(
        "github_sticky_validation_failed",
        support::redacted(&sticky.body)
    );
    h.stop().await;
}

async fn upstream_edits_are_imported_and_both_sided_edits_conflict(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = project(&h, Mode::Direct, Kind::Iac, "infra").await;
    put(
        &h,
        p.id,
        &[input("a.tf", "# a1\n"), input("b.tf", "# b1\n")],
    )
    .await;
    settled(&h, p.id, SyncStatus::Success).await;

    // A human edits a managed file on main: graft takes it in.
    h.push_to_github_as_human(
        REPO,
        "main",
        &[("infra/a.tf", Some(b"# a-human\n".as_slice()))],
        "octocat",
    );
    h.wait_for("upstream edit imported", || async {
        let f = h.app.store.file(p.id, "a.tf").await.unwrap()?;
        (f.content == b"# a-human\n" && f.state == FileState::Synced).then_some(())
    })
    .await;
    let after = settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(
        after.last_synced_commit_sha,
        h.github.git.head(REPO, "main")
    );
    assert!(
        events(&h, p.id)
            .await
            .contains(&"files.imported".to_string())
    );

    // Both sides change b.tf: conflict, nothing overwritten.
    h.app
        .store
        .put_files(p.id, &[input("b.tf", "# b-graft\n")], false, now_ms())
        .await
        .unwrap();
    h.push_to_github_as_human(
        REPO,
        "main",
        &[("infra/b.tf", Some(b"# b-human\n".as_slice()))],
        "octocat",
    );
    let conflicted = settled(&h, p.id, SyncStatus::Error).await;
    let error = conflicted.sync_error.clone().unwrap();
    assert!(
        error.contains("`b.tf`")
            && error.contains("/graft sync --force")
            && error.contains("/graft import"),
        "{error}"
    );
    assert_eq!(conflicted.conflicts, Some(vec!["b.tf".to_string()]));
    assert_eq!(
        h.github.git.file(REPO, "main", "infra/b.tf").unwrap(),
        b"# b-human\n"
    );
    // An ordinary sync refuses while the conflict stands.
    sync_now(&h, p.id, false).await;
    settled(&h, p.id, SyncStatus::Error).await;
    assert_eq!(
        h.github.git.file(REPO, "main", "infra/b.tf").unwrap(),
        b"# b-human\n"
    );
    // --force keeps graft's version.
    sync_now(&h, p.id, true).await;
    let forced = settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(forced.conflicts, None);
    assert_eq!(
        h.github.git.file(REPO, "main", "infra/b.tf").unwrap(),
        b"# b-graft\n"
    );
    h.stop().await;
}

async fn import_takes_the_repository_side_of_a_conflict(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = project(&h, Mode::Direct, Kind::Iac, "infra").await;
    put(&h, p.id, &[input("b.tf", "# b1\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    h.app
        .store
        .put_files(p.id, &[input("b.tf", "# b-graft\n")], false, now_ms())
        .await
        .unwrap();
    h.push_to_github_as_human(
        REPO,
        "main",
        &[("infra/b.tf", Some(b"# b-human\n".as_slice()))],
        "octocat",
    );
    settled(&h, p.id, SyncStatus::Error).await;
    let imported =
        graft::sync::ops::import_upstream(&h.app.state.context, p.id, "comment:reviewer")
            .await
            .unwrap();
    assert_eq!(imported, vec!["b.tf".to_string()]);
    let after = h.app.store.require_project(p.id).await.unwrap();
    assert_eq!(
        (after.sync_status, after.conflicts),
        (SyncStatus::Idle, None)
    );
    let b = h.app.store.file(p.id, "b.tf").await.unwrap().unwrap();
    assert_eq!(
        (b.content.as_slice(), b.state),
        (b"# b-human\n".as_slice(), FileState::Synced)
    );
    h.stop().await;
}

async fn a_human_commit_on_graft_branch_stops_force_pushes(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = project(&h, Mode::PullRequest, Kind::Iac, "infra").await;
    put(
        &h,
        p.id,
        &[input("a.tf", "# a1\n"), input("b.tf", "# b1\n")],
    )
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    let human = h.push_to_github_as_human(
        REPO,
        "graft/infra",
        &[("infra/a.tf", Some(b"# a-reviewer\n".as_slice()))],
        "reviewer",
    );
    let shared = h
        .wait_for("branch marked shared", || async {
            let p = h.app.store.require_project(p.id).await.unwrap();
            p.sync_branch_shared.then_some(p)
        })
        .await;
    assert_eq!(shared.sync_branch_sha.as_deref(), Some(human.as_str()));
    let a = h.app.store.file(p.id, "a.tf").await.unwrap().unwrap();
    assert_eq!(
        a.content, b"# a-reviewer\n",
        "the reviewer's edit is imported"
    );
    settled(&h, p.id, SyncStatus::Success).await;

    // Graft's next change goes on top: the human commit stays.
    put(&h, p.id, &[input("b.tf", "# b2\n")]).await;
    h.wait_for("graft added a commit on top", || async {
        let log = h.github.git.log(REPO, "graft/infra");
        (log.len() >= 2 && log[1].0 == human).then_some(())
    })
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(
        h.github
            .git
            .file(REPO, "graft/infra", "infra/a.tf")
            .unwrap(),
        b"# a-reviewer\n"
    );
    assert_eq!(
        h.github
            .git
            .file(REPO, "graft/infra", "infra/b.tf")
            .unwrap(),
        b"# b2\n"
    );
    let pr = &h.github.pulls(REPO)[0];
    let sticky = sticky(&h, pr.number);
    assert!(
        sticky.body.contains("Someone else committed"),
        "{}",
        sticky.body
    );
    insta::assert_snapshot!(
        "github_sticky_shared_branch",
        support::redacted(&sticky.body)
    );
    assert!(
        events(&h, p.id)
            .await
            .contains(&"sync_branch.shared".to_string())
    );
    h.stop().await;
}

async fn a_pr_closed_unmerged_leaves_files_pending_and_holds_auto_sync(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = project(&h, Mode::PullRequest, Kind::Iac, "infra").await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    h.github
        .close_pull(REPO, synced.pull_request_number.unwrap().get(), "octocat");
    let closed = settled(&h, p.id, SyncStatus::Idle).await;
    assert_eq!(closed.pull_request_number, None);
    assert!(closed.auto_sync_held);
    assert_eq!(
        h.app.store.files(p.id).await.unwrap()[0].state,
        FileState::Pending
    );
    let log = h.app.store.list_events(Some(p.id), 10).await.unwrap();
    assert!(
        log.iter().any(
            |e| e.kind == "pull_request.closed" && e.message.contains("1 file(s) stay pending")
        ),
        "{log:?}"
    );
    h.stop().await;
}

async fn a_push_elsewhere_in_a_monorepo_queues_nothing(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let head = h.github.git.head(REPO, "main").unwrap();
    let mut team7 = None;
    for i in 0..50 {
        let p = project(&h, Mode::PullRequest, Kind::Iac, &format!("infra/team{i}")).await;
        // graft has seen the head (as the poll records it): a push it can
        // prove harmless then only moves that head.
        h.app
            .store
            .record_pull(p.id, Some(&head), now_ms())
            .await
            .unwrap();
        if i == 7 {
            team7 = Some(p.id);
        }
    }
    let jobs_before: i64 = h
        .app
        .store
        .job_counts()
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    h.push_to_github_as_human(
        REPO,
        "main",
        &[("apps/web/index.ts", Some(b"x".as_slice()))],
        "octocat",
    );
    h.wait_for_delivery("github", "push", None).await;
    let counts = h.app.store.job_counts().await.unwrap();
    let jobs: i64 = counts.iter().map(|(_, n)| n).sum();
    assert_eq!(
        jobs - jobs_before,
        1,
        "only the webhook's own job: {counts:?}"
    );
    // A push into one project's folder queues exactly that project's reconcile.
    h.push_to_github_as_human(
        REPO,
        "main",
        &[("infra/team7/x.tf", Some(b"x".as_slice()))],
        "octocat",
    );
    let rows = h
        .wait_for("one reconcile", || async {
            let rows: Vec<(String, Option<graft::ids::ProjectId>)> =
                sqlx::query_as("SELECT kind, project_id FROM jobs WHERE kind = 'reconcile'")
                    .fetch_all(h.app.store.pool())
                    .await
                    .unwrap();
            (!rows.is_empty()).then_some(rows)
        })
        .await;
    assert_eq!(rows, vec![("reconcile".to_string(), team7)], "team7's only");
    h.stop().await;
}

async fn the_poll_catches_a_missed_webhook(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = project(&h, Mode::Direct, Kind::Iac, "infra").await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    // graft's own push to main sends a push webhook (and a reconcile): let
    // it land first, so the poll below is what finds the next commit.
    h.wait_for_delivery("github", "push", None).await;
    settled(&h, p.id, SyncStatus::Success).await;
    // A human commit that sends no webhook.
    let head = h.github.git.commit(
        REPO,
        "main",
        &[("infra/a.tf", Some(b"# silent\n"))],
        "no webhook",
    );
    assert_eq!(poll_now(&h).await, 1);
    h.wait_for("poll reconciled", || async {
        let p = h.app.store.require_project(p.id).await.unwrap();
        (p.last_synced_commit_sha.as_deref() == Some(head.as_str()) && p.last_pulled_at.is_some())
            .then_some(())
    })
    .await;
    assert_eq!(
        h.app
            .store
            .file(p.id, "a.tf")
            .await
            .unwrap()
            .unwrap()
            .content,
        b"# silent\n"
    );
    h.stop().await;
}

async fn removed_installation_is_an_error_without_a_retry_storm(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = project(&h, Mode::PullRequest, Kind::Iac, "infra").await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    h.github.remove_installation(INSTALLATION);
    h.wait_for_delivery("github", "installation", Some("deleted"))
        .await;
    put(&h, p.id, &[input("a.tf", "# b\n")]).await;
    let failed = settled(&h, p.id, SyncStatus::Error).await;
    let error = failed.sync_error.clone().unwrap();
    assert!(error.to_lowercase().contains("install"), "{error}");
    let job = last_failed_job(&h, &failed).await;
    assert_eq!(
        (job.state.as_str(), job.attempts),
        ("failed", 1),
        "no retries for a lost installation"
    );
    assert_eq!(
        h.app.store.files(p.id).await.unwrap()[0].state,
        FileState::Pending,
        "the change is still pending"
    );
    h.stop().await;
}

async fn rate_limits_and_server_errors_are_retried_until_they_pass(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = project(&h, Mode::PullRequest, Kind::Iac, "infra").await;
    h.github.faults(|f| {
        f.fail = 2;
        f.secondary = 1;
        f.retry_after_secs = 0;
    });
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(h.github.pulls(REPO).len(), 1);
    h.stop().await;
}

async fn a_token_that_lost_permission_is_an_error_naming_it(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = project(&h, Mode::PullRequest, Kind::Iac, "infra").await;
    h.github.faults(|f| {
        f.forbid
            .push(("/pulls".into(), "pull_requests=write".into()))
    });
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    let failed = settled(&h, p.id, SyncStatus::Error).await;
    let error = failed.sync_error.clone().unwrap();
    assert!(
        error.contains("pull_requests"),
        "the missing permission is named: {error}"
    );
    let job = last_failed_job(&h, &failed).await;
    assert_eq!(job.attempts, 1, "no retry storm");
    let failures = events(&h, p.id)
        .await
        .into_iter()
        .filter(|k| k == "sync.failed")
        .count();
    assert_eq!(failures, 1, "one failure, recorded once");
    h.stop().await;
}

async fn a_restart_in_the_middle_of_a_sync_still_gives_one_pr(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = project(&h, Mode::PullRequest, Kind::Iac, "infra").await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    let first = settled(&h, p.id, SyncStatus::Success).await;
    // The process died after opening the PR but before recording it, while
    // holding the next sync job: its lease simply runs out.
    h.app
        .store
        .set_pull_request(p.id, None, None, now_ms())
        .await
        .unwrap();
    h.app
        .store
        .put_files(p.id, &[input("a.tf", "# b\n")], false, now_ms())
        .await
        .unwrap();
    // Queued for later, so no live worker takes it first; then held by a
    // replica that dies: its lease runs out in a second.
    let later = now_ms() + 3_600_000;
    let id = h
        .app
        .jobs()
        .enqueue_sync(p.id, &SyncRequest::explicit("test"), later)
        .await
        .unwrap();
    let held = sqlx::query(
        "UPDATE jobs SET state = 'running', locked_by = 'crashed-replica', locked_until = $1, \
         attempts = 1, run_at = $2 WHERE id = $3 AND state = 'queued'",
    )
    .bind(now_ms() + 1_000)
    .bind(now_ms())
    .bind(id)
    .execute(h.app.store.pool())
    .await
    .unwrap();
    assert_eq!(held.rows_affected(), 1);
    h.app.jobs().wake();
    let recovered = h
        .wait_for("the orphaned job ran again", || async {
            let job = h.app.store.job(id).await.unwrap().unwrap();
            (job.state == "done").then_some(job)
        })
        .await;
    assert_eq!(recovered.attempts, 2);
    let after = settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(h.github.pulls(REPO).len(), 1, "one PR, not two");
    assert_eq!(after.pull_request_number, first.pull_request_number);
    h.stop().await;
}

async fn a_human_push_into_the_base_path_is_reconciled_and_the_pr_rebased(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = project(&h, Mode::PullRequest, Kind::Iac, "infra").await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    let main = h.push_to_github_as_human(
        REPO,
        "main",
        &[("infra/README.md", Some(b"notes by a human\n".as_slice()))],
        "octocat",
    );
    h.wait_for("PR rebased onto the new main", || async {
        let log = h.github.git.log(REPO, "graft/infra");
        (log.len() >= 2 && log[1].0 == main).then_some(())
    })
    .await;
    let after = settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(after.last_synced_commit_sha.as_deref(), Some(main.as_str()));
    assert!(after.last_pulled_at.is_some());
    assert_eq!(
        h.github
            .git
            .file(REPO, "graft/infra", "infra/README.md")
            .unwrap(),
        b"notes by a human\n",
        "unmanaged file kept"
    );
    assert_eq!(h.github.pulls(REPO).len(), 1);
    h.stop().await;
}

async fn rapid_changes_coalesce_into_one_sync(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = project(&h, Mode::PullRequest, Kind::Iac, "infra").await;
    // Queue while no worker can take it: hold the project with a running
    // job, claimed "in the future" so the harness's workers never see it.
    let blocker = hold(&h, p.id).await;
    for i in 0..5 {
        put(&h, p.id, &[input("a.tf", &format!("# v{i}\n"))]).await;
    }
    let syncs: Vec<(i64,)> = sqlx::query_as("SELECT id FROM jobs WHERE kind = 'sync'")
        .fetch_all(h.app.store.pool())
        .await
        .unwrap();
    assert_eq!(syncs.len(), 1, "five puts, one queued sync");
    blocker.release(&h).await;
    settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(
        h.github
            .git
            .file(REPO, "graft/infra", "infra/a.tf")
            .unwrap(),
        b"# v4\n"
    );
    assert_eq!(
        h.github.git.log(REPO, "graft/infra").len(),
        2,
        "one graft commit on the initial one"
    );
    h.stop().await;
}

async fn the_generator_api_drives_the_whole_loop(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let token = h.app.create_token("generator").await;
    let created: serde_json::Value = h
        .app
        .http
        .post(h.app.url("/api/v1/projects"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"provider": "github", "repo": REPO, "branch": "main", "base_path": "infra/generated", "kind": "iac", "mode": "pull_request", "auto_sync": true, "auto_merge": false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = graft::ids::ProjectId(created["id"].as_i64().unwrap());
    assert_eq!(created["sync_status"], "idle");
    let put: serde_json::Value = h
        .app
        .http
        .put(h.app.url(&format!("/api/v1/projects/{id}/files")))
        .bearer_auth(&token)
        .json(&serde_json::json!({"files": [{"path": "main.tf", "content": "# generated\n"}], "delete_missing": true, "source": "terraform-gen 1.2"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(put["changed"][0]["change"], "added");
    assert!(put["sync_job_id"].is_i64());
    settled(&h, id, SyncStatus::Success).await;
    let shown: serde_json::Value = h
        .app
        .http
        .get(h.app.url(&format!("/api/v1/projects/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["sync_status"], "success");
    assert!(
        shown["pull_request_url"].is_string() && shown["last_synced_commit_sha"].is_string(),
        "{shown}"
    );
    let pr = &h.github.pulls(REPO)[0];
    assert!(pr.body.contains("terraform-gen 1.2"), "{}", pr.body);
    let files: serde_json::Value = h
        .app
        .http
        .get(h.app.url(&format!("/api/v1/projects/{id}/files")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(files["files"][0]["state"], "synced");
    let log: serde_json::Value = h
        .app
        .http
        .get(h.app.url(&format!("/api/v1/projects/{id}/events")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"sync.pushed") && kinds.contains(&"files.updated"),
        "{kinds:?}"
    );
    let pushed = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "sync.pushed")
        .unwrap();
    assert!(
        pushed["commit_sha"].is_string() && pushed["pull_request_url"].is_string(),
        "{pushed}"
    );
    h.stop().await;
}

async fn auto_merge_is_enabled_when_validation_passes(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = project(&h, Mode::PullRequest, Kind::Iac, "infra").await;
    h.app
        .store
        .set_auto_merge(p.id, true, now_ms())
        .await
        .unwrap();
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    // graft reports its check before asking, so nothing is pending: GitHub
    // refuses to arm auto-merge on a clean PR and graft merges right away.
    let pr = h.github.pulls(REPO).into_iter().next().unwrap();
    assert!(pr.merged && !pr.auto_merge, "{pr:?}");
    let sticky = sticky(&h, pr.number);
    assert!(
        sticky.body.contains("Auto-merge: merged right away"),
        "{}",
        sticky.body
    );
    h.stop().await;
}

both_backends!(
    new_project_opens_a_pr_with_the_overlay_and_merging_completes_it,
    identical_content_is_no_change_and_no_job,
    direct_mode_pushes_to_the_target_and_protection_falls_back_to_a_pr,
    direct_mode_does_not_push_what_fails_validation,
    validation_failure_is_reported_on_the_pr,
    upstream_edits_are_imported_and_both_sided_edits_conflict,
    import_takes_the_repository_side_of_a_conflict,
    a_human_commit_on_graft_branch_stops_force_pushes,
    a_pr_closed_unmerged_leaves_files_pending_and_holds_auto_sync,
    a_push_elsewhere_in_a_monorepo_queues_nothing,
    the_poll_catches_a_missed_webhook,
    removed_installation_is_an_error_without_a_retry_storm,
    rate_limits_and_server_errors_are_retried_until_they_pass,
    a_token_that_lost_permission_is_an_error_naming_it,
    a_restart_in_the_middle_of_a_sync_still_gives_one_pr,
    a_human_push_into_the_base_path_is_reconciled_and_the_pr_rebased,
    rapid_changes_coalesce_into_one_sync,
    the_generator_api_drives_the_whole_loop,
    auto_merge_is_enabled_when_validation_passes,
);
