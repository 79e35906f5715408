//! The PR's life around a sync: automatic syncs queued before a pause or a
//! closed PR do not run, a PR whose content landed elsewhere is closed,
//! and a forge that refuses auto-merge leaves a note, not a failed sync.

mod support;

use graft::commands::handlers::resume::{self, Resumed};
use graft::store::now_ms;
use graft::store::projects::{Mode, SyncStatus};
use graft::sync::schedule::{Scope, SyncRequest};
use support::TestDb;
use support::commands::jobs_of_kind;
use support::harness::Harness;
use support::sync::{event_kinds, github_project, input, poll_now, put, put_quietly, settled};

const REPO: &str = "acme/infra";
const INSTALLATION: i64 = 77;

/// Queues an automatic sync (as if queued before whatever `then` does),
/// held back until `then` is done, and waits until it ran.
async fn automatic_sync_queued_earlier(
    h: &Harness,
    project: graft::ids::ProjectId,
    then: impl AsyncFnOnce(),
) {
    let held = now_ms() + 3_600_000;
    let id = h
        .app
        .jobs()
        .enqueue_sync(project, &SyncRequest::automatic(Scope::All, "test"), held)
        .await
        .unwrap();
    then().await;
    sqlx::query("UPDATE jobs SET run_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(id)
        .execute(h.app.store.pool())
        .await
        .unwrap();
    h.app.jobs().wake();
    h.wait_for("the queued sync ran", || async {
        let job = h.app.store.job(id).await.unwrap()?;
        (job.state == "done").then_some(())
    })
    .await;
}

async fn automatic_syncs_queued_before_a_pause_do_not_run(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::Direct, "infra").await;
    put_quietly(&h, p.id, &[input("a.tf", "# a\n")]).await;
    automatic_sync_queued_earlier(&h, p.id, async || {
        h.app.store.set_paused(p.id, true, now_ms()).await.unwrap();
    })
    .await;
    assert_eq!(
        h.github.git.file(REPO, "main", "infra/a.tf"),
        None,
        "nothing pushed"
    );
    let paused = h.app.store.require_project(p.id).await.unwrap();
    assert_eq!(paused.sync_status, SyncStatus::Paused);
    assert!(
        event_kinds(&h, p.id)
            .await
            .contains(&"sync.skipped".to_string())
    );
    // An explicit sync still runs.
    support::sync::sync_now(&h, p.id, false).await;
    h.wait_for("explicit sync pushed", || async {
        h.github.git.file(REPO, "main", "infra/a.tf")
    })
    .await;
    h.stop().await;
}

/// `/graft resume` lifts the pause and queues the sync of what waited in
/// one transaction: when queueing fails the project stays paused, so the
/// command run again resumes it and queues the sync.
async fn a_resume_that_cannot_queue_its_sync_stays_paused(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::Direct, "infra").await;
    h.app.store.set_paused(p.id, true, now_ms()).await.unwrap();
    put_quietly(&h, p.id, &[input("a.tf", "# a\n")]).await;
    let ctx = &h.app.state.context;

    support::fail_inserts_into(&h.app.store, "jobs", true).await;
    let failed = resume::resume(ctx, p.id, "comment:ann", now_ms()).await;
    assert!(failed.is_err(), "{failed:?}");
    let still = h.app.store.require_project(p.id).await.unwrap();
    assert_eq!(
        (still.paused, still.sync_status),
        (true, SyncStatus::Paused)
    );
    assert_eq!(jobs_of_kind(&h, "sync").await, 0);

    support::fail_inserts_into(&h.app.store, "jobs", false).await;
    let again = resume::resume(ctx, p.id, "comment:ann", now_ms()).await;
    assert_eq!(again.unwrap(), Resumed::Resumed { queued: Some(1) });
    assert_eq!(jobs_of_kind(&h, "sync").await, 1);
    h.wait_for("the waiting change pushed", || async {
        h.github.git.file(REPO, "main", "infra/a.tf")
    })
    .await;
    assert_eq!(
        resume::resume(ctx, p.id, "comment:ann", now_ms())
            .await
            .unwrap(),
        Resumed::NotPaused
    );
    h.stop().await;
}

async fn a_closed_pr_is_not_reopened_by_a_sync_queued_before(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    let number = synced.pull_request_number.unwrap();
    automatic_sync_queued_earlier(&h, p.id, async || {
        h.github.close_pull(REPO, number.get(), "octocat");
        h.wait_for("close recorded", || async {
            let p = h.app.store.require_project(p.id).await.unwrap();
            p.auto_sync_held.then_some(())
        })
        .await;
    })
    .await;
    let pulls = h.github.pulls(REPO);
    assert_eq!(pulls.len(), 1, "no new PR: {pulls:?}");
    assert_eq!(pulls[0].state, "closed");
    assert!(
        event_kinds(&h, p.id)
            .await
            .contains(&"sync.skipped".to_string())
    );
    // New content lifts the hold and opens a new PR.
    put(&h, p.id, &[input("a.tf", "# a2\n")]).await;
    let reopened = settled(&h, p.id, SyncStatus::Success).await;
    assert!(reopened.pull_request_number.is_some_and(|n| n != number));
    h.stop().await;
}

async fn a_pr_whose_content_landed_otherwise_is_closed(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    let number = synced.pull_request_number.unwrap();
    // Someone commits exactly graft's content to main by hand.
    h.push_to_github_as_human(
        REPO,
        "main",
        &[("infra/a.tf", Some(b"# a\n".as_slice()))],
        "octocat",
    );
    let closed = h
        .wait_for("PR closed", || async {
            let pr = h
                .github
                .pulls(REPO)
                .into_iter()
                .find(|pr| pr.number == number.get())?;
            (pr.state == "closed").then_some(pr)
        })
        .await;
    assert!(!closed.merged);
    let after = settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(
        (after.pull_request_number, after.pull_request_url),
        (None, None)
    );
    assert_eq!(
        after.last_synced_commit_sha,
        h.github.git.head(REPO, "main")
    );
    let said = h.github.comments(REPO, number.get());
    assert!(
        said.iter().any(|c| c.body.contains("on `main` already")),
        "{said:?}"
    );
    assert!(
        event_kinds(&h, p.id)
            .await
            .contains(&"pull_request.closed".to_string())
    );
    assert_eq!(h.github.pulls(REPO).len(), 1);
    h.stop().await;
}

async fn a_refused_auto_merge_is_a_note_not_a_failure(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    h.github.set_allow_auto_merge(REPO, false);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    h.app
        .store
        .set_auto_merge(p.id, true, now_ms())
        .await
        .unwrap();
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    let number = synced.pull_request_number.expect("the PR is recorded");
    let sticky = h
        .github
        .comments(REPO, number.get())
        .into_iter()
        .find(|c| c.body.contains("<!-- graft:status -->"))
        .expect("a status comment");
    assert!(
        sticky.body.contains("Auto-merge could not be turned on")
            && sticky.body.contains("Allow auto-merge"),
        "{}",
        sticky.body
    );
    insta::assert_snapshot!(
        "github_sticky_auto_merge_refused",
        support::redacted(&sticky.body)
    );
    let pr = &h.github.pulls(REPO)[0];
    assert!(!pr.auto_merge && !pr.merged);
    h.stop().await;
}

async fn the_status_comment_shows_a_sync_under_way(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    put(&h, p.id, &[input("a.tf", "# a2\n")]).await;
    let done = settled(&h, p.id, SyncStatus::Success).await;
    let edits: Vec<String> = h
        .github
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/issues/comments/"))
        .filter_map(|r| r.body.and_then(|b| b["body"].as_str().map(str::to_string)))
        .collect();
    let syncing = edits.iter().position(|b| b.contains("⏳ syncing"));
    let synced = edits.iter().rposition(|b| b.contains("✅ synced"));
    assert!(
        syncing.is_some() && synced > syncing,
        "the comment said 'syncing' before the result: {edits:#?}"
    );
    // The edit keeps the table of the PR's files.
    assert!(edits[syncing.unwrap()].contains("`a.tf`"));
    assert!(done.pull_request_number.is_some());
    h.stop().await;
}

async fn a_push_that_lands_while_graft_works_is_fetched_and_built_on(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::Direct, "infra").await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    // Right after graft fetches, a human pushes to main: graft's
    // fast-forward is refused, it fetches again and builds on top.
    let git = h.github.git.clone();
    h.github.git.after_next_fetch(Box::new(move |repo| {
        git.commit(
            repo,
            "main",
            &[("README.md", Some(b"edited meanwhile\n"))],
            "human",
        );
    }));
    put(&h, p.id, &[input("a.tf", "# a2\n")]).await;
    let done = settled(&h, p.id, SyncStatus::Success).await;
    let log = h.github.git.log(REPO, "main");
    assert_eq!(
        h.github.git.file(REPO, "main", "README.md").unwrap(),
        b"edited meanwhile\n",
        "the human's commit stays"
    );
    assert_eq!(
        h.github.git.file(REPO, "main", "infra/a.tf").unwrap(),
        b"# a2\n"
    );
    assert_eq!(
        done.last_synced_commit_sha.as_deref(),
        Some(log[0].0.as_str())
    );
    assert_eq!(
        log[1].2, "human",
        "graft's commit on top of the human's: {log:?}"
    );
    assert!(log[0].1.contains("graft"), "{log:?}");
    let job = h
        .app
        .store
        .job_counts()
        .await
        .unwrap()
        .into_iter()
        .find(|(state, _)| state == "failed");
    assert_eq!(job, None, "no job failed: the retry is inside the sync");
    h.stop().await;
}

async fn an_installation_removed_mid_sync_is_an_error_without_retries(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    // Uninstalled between graft's fetch and its push.
    let github = h.github.clone();
    h.github.git.after_next_fetch(Box::new(move |_| {
        github.remove_installation(INSTALLATION);
    }));
    put(&h, p.id, &[input("a.tf", "# a2\n")]).await;
    let failed = settled(&h, p.id, SyncStatus::Error).await;
    let error = failed.sync_error.clone().unwrap_or_default();
    assert!(error.contains("installed"), "{error}");
    let job = h
        .app
        .store
        .job(failed.last_failed_job_id.expect("the failed job"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (job.state.as_str(), job.attempts),
        ("failed", 1),
        "no retry storm"
    );
    let a = h.app.store.file(p.id, "a.tf").await.unwrap().unwrap();
    assert_eq!(
        (a.content.as_slice(), a.state),
        (
            b"# a2\n".as_slice(),
            graft::store::files::FileState::Pending
        ),
        "the change is still pending"
    );
    assert_eq!(
        h.github
            .git
            .file(REPO, "graft/infra", "infra/a.tf")
            .unwrap(),
        b"# a\n",
        "nothing pushed"
    );
    assert!(
        event_kinds(&h, p.id)
            .await
            .contains(&"sync.failed".to_string())
    );
    h.stop().await;
}

async fn a_poll_survives_a_last_seen_commit_the_mirror_never_had(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    // Say main was force-pushed and the commit graft saw is gone.
    h.app
        .store
        .record_pull(p.id, Some(&"1".repeat(40)), now_ms())
        .await
        .unwrap();
    poll_now(&h).await;
    let head = h.github.git.head(REPO, "main");
    let after = h
        .wait_for("the poll recorded main again", || async {
            let p = h.app.store.require_project(p.id).await.unwrap();
            (p.last_synced_commit_sha == head).then_some(p)
        })
        .await;
    let after = settled(&h, after.id, SyncStatus::Success).await;
    assert_eq!(after.sync_error, None);
    assert!(
        !event_kinds(&h, p.id)
            .await
            .contains(&"sync.failed".to_string())
    );
    h.stop().await;
}

async fn a_pr_that_no_longer_exists_counts_as_closed(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    // The recorded PR is gone (GitLab lets maintainers delete one).
    h.app
        .store
        .set_pull_request(
            p.id,
            Some(graft::ids::PrNumber(999)),
            Some("https://example.invalid/999"),
            now_ms(),
        )
        .await
        .unwrap();
    poll_now(&h).await;
    let closed = h
        .wait_for("the missing PR settled as closed", || async {
            let p = h.app.store.require_project(p.id).await.unwrap();
            p.pull_request_number.is_none().then_some(p)
        })
        .await;
    assert!(closed.auto_sync_held);
    assert!(
        event_kinds(&h, p.id)
            .await
            .contains(&"pull_request.closed".to_string())
    );
    h.stop().await;
}

async fn after_a_closed_pr_graft_remembers_what_the_repository_has(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    put(&h, p.id, &[input("a.tf", "# proposed\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    // A newer version arrives, then the PR (with the older one) is closed.
    put_quietly(&h, p.id, &[input("a.tf", "# newer\n")]).await;
    h.github
        .close_pull(REPO, synced.pull_request_number.unwrap().get(), "octocat");
    settled(&h, p.id, SyncStatus::Idle).await;
    // Going back to the content of the closed PR is a change: main never
    // had it, so it must not count as "already in the repository".
    put_quietly(&h, p.id, &[input("a.tf", "# proposed\n")]).await;
    let a = h.app.store.file(p.id, "a.tf").await.unwrap().unwrap();
    assert_eq!(a.state, graft::store::files::FileState::Pending);
    h.stop().await;
}

async fn sync_jobs(h: &Harness) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs WHERE kind = 'sync'")
        .fetch_one(h.app.store.pool())
        .await
        .unwrap();
    n
}

async fn the_poll_rebuilds_only_prs_whose_base_path_changed(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let a = github_project(&h, REPO, Mode::PullRequest, "infra/a").await;
    let b = github_project(&h, REPO, Mode::PullRequest, "infra/b").await;
    for p in [&a, &b] {
        put(&h, p.id, &[input("main.tf", "# generated\n")]).await;
        settled(&h, p.id, SyncStatus::Success).await;
    }
    let heads = |h: &Harness| {
        (
            h.github.git.head(REPO, "graft/infra-a"),
            h.github.git.head(REPO, "graft/infra-b"),
        )
    };
    let before = heads(&h);
    let syncs = sync_jobs(&h).await;
    // Elsewhere in the monorepo, with the webhook lost: the poll finds it.
    h.github
        .git
        .commit(REPO, "main", &[("apps/web/index.ts", Some(b"x\n"))], "app");
    let head = h.github.git.head(REPO, "main");
    poll_now(&h).await;
    for p in [&a, &b] {
        h.wait_for("poll reconciled", || async {
            let p = h.app.store.require_project(p.id).await.unwrap();
            (p.last_synced_commit_sha == head).then_some(())
        })
        .await;
        settled(&h, p.id, SyncStatus::Success).await;
    }
    assert_eq!(
        sync_jobs(&h).await,
        syncs,
        "no PR rebuilt for a push elsewhere"
    );
    assert_eq!(heads(&h), before);
    // Into one project's base path: only that PR is rebuilt.
    h.push_to_github_as_human(
        REPO,
        "main",
        &[("infra/a/README.md", Some(b"notes\n".as_slice()))],
        "octocat",
    );
    h.wait_for("project a's PR rebuilt", || async {
        (h.github.git.head(REPO, "graft/infra-a") != before.0).then_some(())
    })
    .await;
    settled(&h, a.id, SyncStatus::Success).await;
    assert_eq!(h.github.git.head(REPO, "graft/infra-b"), before.1);
    h.stop().await;
}

both_backends!(
    a_poll_survives_a_last_seen_commit_the_mirror_never_had,
    a_pr_that_no_longer_exists_counts_as_closed,
    after_a_closed_pr_graft_remembers_what_the_repository_has,
    an_installation_removed_mid_sync_is_an_error_without_retries,
    a_push_that_lands_while_graft_works_is_fetched_and_built_on,
    the_status_comment_shows_a_sync_under_way,
    the_poll_rebuilds_only_prs_whose_base_path_changed,
    automatic_syncs_queued_before_a_pause_do_not_run,
    a_resume_that_cannot_queue_its_sync_stays_paused,
    a_closed_pr_is_not_reopened_by_a_sync_queued_before,
    a_pr_whose_content_landed_otherwise_is_closed,
    a_refused_auto_merge_is_a_note_not_a_failure,
);
