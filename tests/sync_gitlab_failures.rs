//! The sync engine's edge cases, failure classes and branch ownership end to
//! end against the fake GitLab: no-op puts, coalescing, conflicts, human
//! commits on graft's MR branch, closed MRs, lost permissions, rate
//! limits and 5xx, validation failures, monorepo pushes and the poll.
//! Real git over smart HTTP, real webhooks, both databases.

mod support;

use std::time::{Duration, Instant};

use graft::ids::PrNumber;
use graft::store::deliveries::DeliveryStatus;
use graft::store::files::FileState;
use graft::store::now_ms;
use graft::store::projects::{Mode, Project, SyncStatus};
use support::TestDb;
use support::commands::{count, jobs_of_kind, sync_and_reconcile_jobs};
use support::fake_gitlab::{BOT_USERNAME, Note};
use support::harness::Harness;
use support::sync::{
    event_kinds, gitlab_project, hold, input, last_failed_job, poll_now, put, settled, sync_now,
};

const PATH: &str = "platform/team/infra";
const BRANCH: &str = "graft/infra";

async fn project(h: &Harness, mode: Mode) -> Project {
    gitlab_project(h, PATH, mode, "infra").await
}

async fn reload(h: &Harness, id: graft::ids::ProjectId) -> Project {
    h.app.store.require_project(id).await.unwrap()
}

/// graft's status note on MR `iid`.
fn sticky(h: &Harness, gitlab_id: i64, iid: i64) -> Note {
    let notes: Vec<Note> = h
        .gitlab
        .notes(gitlab_id, iid)
        .into_iter()
        .filter(|n| n.body.contains("<!-- graft:status -->"))
        .collect();
    assert_eq!(notes.len(), 1, "one status note: {notes:?}");
    assert_eq!(notes[0].author, BOT_USERNAME);
    notes[0].clone()
}

fn occurrences(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| *k == kind).count()
}

async fn all_jobs(h: &Harness) -> i64 {
    count(h, "SELECT COUNT(*) FROM jobs").await
}

async fn identical_content_is_no_change_and_no_job(db: TestDb) {
    let h = Harness::start(&db).await;
    h.gitlab_project(PATH);
    let p = project(&h, Mode::PullRequest).await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    let head = h.gitlab.git.head(PATH, BRANCH);
    assert!(head.is_some());
    // Syncs and reconciles: the fake may still be sending graft the hook
    // of its own status note, which queues a (harmless) webhook job.
    let jobs = sync_and_reconcile_jobs(&h).await;
    let events = event_kinds(&h, p.id).await;

    assert_eq!(
        put(&h, p.id, &[input("a.tf", "# a\n")]).await,
        0,
        "no change"
    );
    assert_eq!(sync_and_reconcile_jobs(&h).await, jobs, "no job queued");
    assert_eq!(h.gitlab.git.head(PATH, BRANCH), head, "no commit");
    assert_eq!(reload(&h, p.id).await, synced, "the project is untouched");
    assert_eq!(event_kinds(&h, p.id).await, events, "nothing to audit");
    let a = h.app.store.file(p.id, "a.tf").await.unwrap().unwrap();
    assert_eq!(a.state, FileState::Synced);
    h.stop().await;
}

async fn rapid_changes_coalesce_into_one_sync(db: TestDb) {
    let h = Harness::start(&db).await;
    let gitlab_id = h.gitlab_project(PATH);
    let p = project(&h, Mode::PullRequest).await;
    // Hold the project with a running job, claimed "in the future" so the
    // harness's workers never see it: the puts queue behind it.
    let blocker = hold(&h, p.id).await;
    for i in 0..5 {
        put(&h, p.id, &[input("a.tf", &format!("# v{i}\n"))]).await;
    }
    assert_eq!(jobs_of_kind(&h, "sync").await, 1, "five puts, one sync");
    blocker.release(&h).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(jobs_of_kind(&h, "sync").await, 1);
    assert_eq!(
        h.gitlab.git.file(PATH, BRANCH, "infra/a.tf").unwrap(),
        b"# v4\n",
        "the last content"
    );
    assert_eq!(
        h.gitlab.git.log(PATH, BRANCH).len(),
        2,
        "one graft commit on the initial one"
    );
    let mrs = h.gitlab.merge_requests(gitlab_id);
    assert_eq!(mrs.len(), 1);
    assert_eq!(synced.pull_request_number, Some(PrNumber(mrs[0].iid)));
    assert_eq!(synced.sync_branch_sha.as_deref(), Some(mrs[0].sha.as_str()));
    let kinds = event_kinds(&h, p.id).await;
    assert_eq!(occurrences(&kinds, "files.updated"), 5, "{kinds:?}");
    assert_eq!(occurrences(&kinds, "sync.pushed"), 1, "{kinds:?}");
    h.stop().await;
}

async fn both_sided_edits_conflict_until_forced(db: TestDb) {
    let h = Harness::start(&db).await;
    h.gitlab_project(PATH);
    let p = project(&h, Mode::Direct).await;
    put(
        &h,
        p.id,
        &[input("a.tf", "# a1\n"), input("b.tf", "# b1\n")],
    )
    .await;
    settled(&h, p.id, SyncStatus::Success).await;

    // Both sides change b.tf: graft's generator and a human on main.
    h.app
        .store
        .put_files(p.id, &[input("b.tf", "# b-graft\n")], false, now_ms())
        .await
        .unwrap();
    let human = h.push_to_gitlab_as_human(
        PATH,
        "main",
        &[("infra/b.tf", Some(b"# b-human\n".as_slice()))],
        "dev",
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
        conflicted.last_synced_commit_sha.as_deref(),
        Some(human.as_str())
    );
    assert!(conflicted.last_pulled_at.is_some());
    assert_eq!(
        h.gitlab.git.file(PATH, "main", "infra/b.tf").unwrap(),
        b"# b-human\n",
        "nothing overwritten"
    );
    let b = h.app.store.file(p.id, "b.tf").await.unwrap().unwrap();
    assert_eq!(
        (b.content.as_slice(), b.state),
        (b"# b-graft\n".as_slice(), FileState::Pending),
        "graft's version kept, still pending"
    );
    assert_eq!(event_kinds(&h, p.id).await[0], "sync.failed");

    // An ordinary sync stops at the conflict again.
    sync_now(&h, p.id, false).await;
    let again = settled(&h, p.id, SyncStatus::Error).await;
    assert_eq!(again.conflicts, Some(vec!["b.tf".to_string()]));
    assert_eq!(
        h.gitlab.git.head(PATH, "main").as_deref(),
        Some(human.as_str()),
        "nothing pushed"
    );

    // --force keeps graft's version.
    sync_now(&h, p.id, true).await;
    let forced = settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!((forced.conflicts, forced.sync_error), (None, None));
    assert_eq!(
        h.gitlab.git.file(PATH, "main", "infra/b.tf").unwrap(),
        b"# b-graft\n"
    );
    assert_eq!(
        forced.last_synced_commit_sha,
        h.gitlab.git.head(PATH, "main")
    );
    let b = h.app.store.file(p.id, "b.tf").await.unwrap().unwrap();
    assert_eq!(b.state, FileState::Synced);
    assert_eq!(event_kinds(&h, p.id).await[0], "sync.pushed");
    h.stop().await;
}

async fn a_human_commit_on_the_mr_branch_stops_force_pushes(db: TestDb) {
    let h = Harness::start(&db).await;
    let gitlab_id = h.gitlab_project(PATH);
    let p = project(&h, Mode::PullRequest).await;
    put(
        &h,
        p.id,
        &[input("a.tf", "# a1\n"), input("b.tf", "# b1\n")],
    )
    .await;
    let first = settled(&h, p.id, SyncStatus::Success).await;
    let iid = first.pull_request_number.unwrap();
    let human = h.push_to_gitlab_as_human(
        PATH,
        BRANCH,
        &[("infra/a.tf", Some(b"# a-reviewer\n".as_slice()))],
        "reviewer",
    );
    let shared = h
        .wait_for("branch marked shared", || async {
            let p = reload(&h, p.id).await;
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
    h.wait_for("the status note says the branch is shared", || async {
        sticky(&h, gitlab_id, iid.get())
            .body
            .contains("Someone else committed")
            .then_some(())
    })
    .await;

    // graft's next change goes on top: the human commit stays.
    put(&h, p.id, &[input("b.tf", "# b2\n")]).await;
    h.wait_for("graft added a commit on top", || async {
        let log = h.gitlab.git.log(PATH, BRANCH);
        (log.len() >= 2 && log[1].0 == human).then_some(())
    })
    .await;
    let after = settled(&h, p.id, SyncStatus::Success).await;
    let log = h.gitlab.git.log(PATH, BRANCH);
    assert_eq!(
        log.len(),
        4,
        "initial, graft's first, the human's, graft's next: {log:?}"
    );
    assert_eq!(
        first.sync_branch_sha.as_deref(),
        Some(log[2].0.as_str()),
        "graft's first commit was not rewritten"
    );
    assert_eq!(after.sync_branch_sha.as_deref(), Some(log[0].0.as_str()));
    assert!(after.sync_branch_shared);
    assert_eq!(after.pull_request_number, Some(iid));
    assert_eq!(
        h.gitlab.git.file(PATH, BRANCH, "infra/a.tf").unwrap(),
        b"# a-reviewer\n"
    );
    assert_eq!(
        h.gitlab.git.file(PATH, BRANCH, "infra/b.tf").unwrap(),
        b"# b2\n"
    );
    assert_eq!(h.gitlab.merge_requests(gitlab_id).len(), 1);
    let note = sticky(&h, gitlab_id, iid.get());
    assert!(
        note.body.contains("Someone else committed"),
        "{}",
        note.body
    );
    let kinds = event_kinds(&h, p.id).await;
    assert_eq!(occurrences(&kinds, "sync_branch.shared"), 1, "{kinds:?}");
    assert!(kinds.contains(&"files.imported".to_string()), "{kinds:?}");
    h.stop().await;
}

async fn an_mr_closed_unmerged_leaves_files_pending_and_holds_auto_sync(db: TestDb) {
    let h = Harness::start(&db).await;
    let gitlab_id = h.gitlab_project(PATH);
    let p = project(&h, Mode::PullRequest).await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    let main = h.gitlab.git.head(PATH, "main");
    h.gitlab.close_merge_request(
        gitlab_id,
        synced.pull_request_number.unwrap().get(),
        "maintainer",
    );
    let closed = h
        .wait_for("the close recorded", || async {
            let p = reload(&h, p.id).await;
            p.pull_request_number.is_none().then_some(p)
        })
        .await;
    let closed = settled(&h, closed.id, SyncStatus::Idle).await;
    assert_eq!(
        (closed.pull_request_number, closed.pull_request_url.clone()),
        (None, None)
    );
    assert!(closed.auto_sync_held);
    assert!(!closed.sync_branch_shared);
    assert_eq!(closed.sync_error, None);
    assert_eq!(h.gitlab.git.head(PATH, "main"), main, "nothing landed");
    let a = h.app.store.file(p.id, "a.tf").await.unwrap().unwrap();
    assert_eq!(a.state, FileState::Pending);
    let log = h.app.store.list_events(Some(p.id), 10).await.unwrap();
    assert!(
        log.iter().any(
            |e| e.kind == "pull_request.closed" && e.message.contains("1 file(s) stay pending")
        ),
        "{log:?}"
    );
    assert_eq!(h.gitlab.merge_requests(gitlab_id).len(), 1, "no new MR");
    h.stop().await;
}

async fn a_token_that_lost_permission_is_an_error_naming_it(db: TestDb) {
    let h = Harness::start(&db).await;
    let gitlab_id = h.gitlab_project(PATH);
    let p = project(&h, Mode::PullRequest).await;
    h.gitlab
        .faults(|f| f.forbid.push(("/merge_requests".into(), "api".into())));
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    let failed = settled(&h, p.id, SyncStatus::Error).await;
    let error = failed.sync_error.clone().unwrap();
    assert!(
        error.contains("`api` scope") && error.contains("Developer"),
        "the missing permission is named: {error}"
    );
    assert!(!error.contains(support::fake_gitlab::BOT_TOKEN), "{error}");
    let job = last_failed_job(&h, &failed).await;
    assert_eq!(
        (job.kind.as_str(), job.state.as_str(), job.attempts),
        ("sync", "failed", 1),
        "no retry storm"
    );
    assert_eq!(failed.pull_request_number, None);
    assert!(h.gitlab.merge_requests(gitlab_id).is_empty());
    let a = h.app.store.file(p.id, "a.tf").await.unwrap().unwrap();
    assert_eq!(a.state, FileState::Pending, "the change is still pending");
    let kinds = event_kinds(&h, p.id).await;
    assert_eq!(kinds[0], "sync.failed");
    assert_eq!(occurrences(&kinds, "sync.failed"), 1, "recorded once");
    h.stop().await;
}

async fn a_revoked_token_is_an_error_without_a_retry_storm(db: TestDb) {
    let h = Harness::start(&db).await;
    h.gitlab_project(PATH);
    let p = project(&h, Mode::PullRequest).await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    h.gitlab.revoke_token(support::fake_gitlab::BOT_TOKEN);
    put(&h, p.id, &[input("a.tf", "# b\n")]).await;
    let failed = settled(&h, p.id, SyncStatus::Error).await;
    let error = failed.sync_error.clone().unwrap();
    assert!(
        error.contains("revoked or has expired") && error.contains("`api` scope"),
        "{error}"
    );
    let job = last_failed_job(&h, &failed).await;
    assert_eq!((job.state.as_str(), job.attempts), ("failed", 1));
    let kinds = event_kinds(&h, p.id).await;
    assert_eq!(kinds[0], "sync.failed");
    assert_eq!(occurrences(&kinds, "sync.failed"), 1);
    h.stop().await;
}

async fn a_rate_limit_with_retry_after_is_waited_out(db: TestDb) {
    let h = Harness::start(&db).await;
    let gitlab_id = h.gitlab_project(PATH);
    let p = project(&h, Mode::PullRequest).await;
    // One 429 asking for a 1 s wait: longer than the harness retries
    // inline, so the job goes back to the queue until then.
    h.gitlab.faults(|f| {
        f.secondary = 1;
        f.retry_after_secs = 1;
    });
    let started = Instant::now();
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    h.wait_for("the sync waiting out the rate limit", || async {
        let p = reload(&h, p.id).await;
        let waiting = count(
            &h,
            "SELECT COUNT(*) FROM jobs WHERE kind = 'sync' AND state = 'queued' AND attempts = 1",
        )
        .await;
        (p.sync_status == SyncStatus::Syncing && waiting == 1).then_some(())
    })
    .await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured: {:?}",
        started.elapsed()
    );
    assert_eq!(h.gitlab.state.lock().unwrap().faults.secondary, 0);
    let (attempts,): (i64,) = sqlx::query_as("SELECT attempts FROM jobs WHERE kind = 'sync'")
        .fetch_one(h.app.store.pool())
        .await
        .unwrap();
    assert_eq!(attempts, 2, "one retry, after the wait");
    let mrs = h.gitlab.merge_requests(gitlab_id);
    assert_eq!(mrs.len(), 1, "{mrs:?}");
    assert_eq!(synced.pull_request_number, Some(PrNumber(mrs[0].iid)));
    assert_eq!(synced.sync_error, None);
    let kinds = event_kinds(&h, p.id).await;
    assert!(!kinds.contains(&"sync.failed".to_string()), "{kinds:?}");
    assert_eq!(kinds[0], "sync.pushed");
    h.stop().await;
}

async fn server_errors_and_rate_limits_are_retried_until_they_pass(db: TestDb) {
    let h = Harness::start(&db).await;
    let gitlab_id = h.gitlab_project(PATH);
    let p = project(&h, Mode::PullRequest).await;
    // Two 502s, then a 429 whose reset is now: retried with backoff.
    h.gitlab.faults(|f| {
        f.fail = 2;
        f.rate_limit = 1;
        f.reset_in_secs = 0;
    });
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    let faults = h.gitlab.state.lock().unwrap().faults.clone();
    assert_eq!((faults.fail, faults.rate_limit), (0, 0), "all served");
    let mrs = h.gitlab.merge_requests(gitlab_id);
    assert_eq!(mrs.len(), 1, "one MR, not one per attempt: {mrs:?}");
    assert_eq!(synced.pull_request_number, Some(PrNumber(mrs[0].iid)));
    assert_eq!(synced.sync_error, None);
    let iid = mrs[0].iid;
    sticky(&h, gitlab_id, iid);
    let kinds = event_kinds(&h, p.id).await;
    assert!(!kinds.contains(&"sync.failed".to_string()), "{kinds:?}");
    assert_eq!(occurrences(&kinds, "sync.pushed"), 1);
    h.stop().await;
}

async fn a_validation_failure_is_reported_on_the_mr(db: TestDb) {
    let h = Harness::start(&db).await;
    let gitlab_id = h.gitlab_project(PATH);
    let p = project(&h, Mode::PullRequest).await;
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
    let error = failed.sync_error.clone().unwrap();
    assert!(error.contains("modules/missing"), "{error}");
    let mrs = h.gitlab.merge_requests(gitlab_id);
    assert_eq!(mrs.len(), 1, "the MR is still opened");
    let mr = &mrs[0];
    assert_eq!(failed.pull_request_number, Some(PrNumber(mr.iid)));
    let statuses: Vec<_> = h
        .gitlab
        .statuses(gitlab_id)
        .into_iter()
        .filter(|s| s.sha == mr.sha && s.name == "graft")
        .collect();
    assert_eq!(
        statuses.last().map(|s| s.state.as_str()),
        Some("failed"),
        "{statuses:?}"
    );
    let note = sticky(&h, gitlab_id, mr.iid);
    assert!(
        note.body.contains("❌") && note.body.contains("modules/missing"),
        "{}",
        note.body
    );
    assert_eq!(
        h.gitlab.git.file(PATH, BRANCH, "infra/m.tf").unwrap(),
        b"module \"x\" {\n  source = \"../modules/missing\"\n}\n",
        "pushed to the MR branch for review"
    );
    assert!(
        h.gitlab.git.file(PATH, "main", "infra/m.tf").is_none(),
        "not on main"
    );
    let kinds = event_kinds(&h, p.id).await;
    assert!(kinds.contains(&"sync.pushed".to_string()), "{kinds:?}");
    // A failure is never silent: the audit log records it with the path.
    let log = h.app.store.list_events(Some(p.id), 50).await.unwrap();
    let failed = log
        .iter()
        .find(|e| e.kind == "sync.failed")
        .expect("a sync.failed event");
    assert!(
        failed.message.contains("modules/missing"),
        "{}",
        failed.message
    );
    h.stop().await;
}

async fn a_push_elsewhere_in_a_monorepo_queues_nothing(db: TestDb) {
    let h = Harness::start(&db).await;
    h.gitlab_project(PATH);
    let head = h.gitlab.git.head(PATH, "main").unwrap();
    let mut projects = Vec::new();
    for i in 0..50 {
        let p = gitlab_project(&h, PATH, Mode::PullRequest, &format!("infra/team{i}")).await;
        // graft has seen the head (as the poll records it): a push it can
        // prove harmless then only moves that head.
        h.app
            .store
            .record_pull(p.id, Some(&head), now_ms())
            .await
            .unwrap();
        projects.push(p);
    }
    let jobs_before = all_jobs(&h).await;
    h.push_to_gitlab_as_human(
        PATH,
        "main",
        &[("apps/web/index.ts", Some(b"x".as_slice()))],
        "dev",
    );
    h.wait_for_delivery("gitlab", "Push Hook", None).await;
    assert_eq!(
        all_jobs(&h).await - jobs_before,
        1,
        "only the webhook's own job"
    );
    assert_eq!(
        count(
            &h,
            "SELECT COUNT(*) FROM jobs WHERE kind IN ('sync', 'reconcile')"
        )
        .await,
        0
    );
    // A push into one project's folder queues exactly that project's reconcile.
    let team7 = projects[7].id;
    h.push_to_gitlab_as_human(
        PATH,
        "main",
        &[("infra/team7/x.tf", Some(b"x".as_slice()))],
        "dev",
    );
    h.wait_for("the second push processed", || async {
        let pushes = h
            .deliveries()
            .await
            .into_iter()
            .filter(|d| d.event == "Push Hook" && d.status == DeliveryStatus::Processed)
            .count();
        (pushes == 2).then_some(())
    })
    .await;
    let reconciles: Vec<(Option<graft::ids::ProjectId>,)> =
        sqlx::query_as("SELECT project_id FROM jobs WHERE kind = 'reconcile'")
            .fetch_all(h.app.store.pool())
            .await
            .unwrap();
    assert_eq!(reconciles, vec![(Some(team7),)], "team7's reconcile only");
    let pushed = settled(&h, team7, SyncStatus::Idle).await;
    assert_eq!(
        pushed.last_synced_commit_sha,
        h.gitlab.git.head(PATH, "main")
    );
    assert!(pushed.last_pulled_at.is_some());
    // The others followed both pushes without a job: head moved, nothing
    // else happened to them.
    for other in projects.iter().filter(|p| p.id != team7) {
        let followed = reload(&h, other.id).await;
        assert_eq!(
            followed.last_synced_commit_sha,
            h.gitlab.git.head(PATH, "main"),
            "project {}",
            other.id
        );
        assert!(event_kinds(&h, other.id).await.is_empty());
    }
    h.stop().await;
}

async fn the_poll_catches_a_missed_webhook(db: TestDb) {
    let h = Harness::start(&db).await;
    h.gitlab_project(PATH);
    let p = project(&h, Mode::Direct).await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    // graft's own push to main sends a push hook (and a reconcile): let it
    // land first, so the poll below is what finds the next commit.
    h.wait_for_delivery("gitlab", "Push Hook", None).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    // A human commit that sends no webhook.
    let head = h.gitlab.git.commit(
        PATH,
        "main",
        &[("infra/a.tf", Some(b"# silent\n"))],
        "no webhook",
    );
    assert_ne!(
        synced.last_synced_commit_sha.as_deref(),
        Some(head.as_str())
    );
    assert_eq!(poll_now(&h).await, 1);
    let polled = h
        .wait_for("poll reconciled", || async {
            let p = reload(&h, p.id).await;
            (p.last_synced_commit_sha.as_deref() == Some(head.as_str())
                && p.last_pulled_at.is_some())
            .then_some(p)
        })
        .await;
    assert_eq!(polled.sync_error, None);
    let a = h.app.store.file(p.id, "a.tf").await.unwrap().unwrap();
    assert_eq!(
        (a.content.as_slice(), a.state),
        (b"# silent\n".as_slice(), FileState::Synced)
    );
    assert!(
        event_kinds(&h, p.id)
            .await
            .contains(&"files.imported".to_string())
    );
    h.stop().await;
}

async fn a_forge_that_stays_down_is_an_error_once_retries_run_out(db: TestDb) {
    let h = Harness::start(&db).await;
    let gitlab_id = h.gitlab_project(PATH);
    let p = project(&h, Mode::PullRequest).await;
    h.gitlab.faults(|f| f.fail = 10_000);
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    h.wait_for("syncing while the retries last", || async {
        let p = reload(&h, p.id).await;
        let retried = count(
            &h,
            "SELECT COUNT(*) FROM jobs WHERE kind = 'sync' AND attempts > 1",
        )
        .await;
        (p.sync_status == SyncStatus::Syncing && retried == 1).then_some(())
    })
    .await;
    let failed = settled(&h, p.id, SyncStatus::Error).await;
    let error = failed.sync_error.clone().unwrap();
    assert!(
        error.contains("GitLab server error 502") && error.contains("/graft retry"),
        "{error}"
    );
    let job = last_failed_job(&h, &failed).await;
    assert_eq!(job.state, "failed");
    assert!(job.attempts > 1, "retried before giving up: {job:?}");
    let kinds = event_kinds(&h, p.id).await;
    assert_eq!(kinds[0], "sync.failed");
    assert_eq!(
        occurrences(&kinds, "sync.failed"),
        1,
        "one failure: {kinds:?}"
    );
    let a = h.app.store.file(p.id, "a.tf").await.unwrap().unwrap();
    assert_eq!(a.state, FileState::Pending);
    assert!(h.gitlab.merge_requests(gitlab_id).is_empty());
    h.stop().await;
}

both_backends!(
    identical_content_is_no_change_and_no_job,
    rapid_changes_coalesce_into_one_sync,
    both_sided_edits_conflict_until_forced,
    a_human_commit_on_the_mr_branch_stops_force_pushes,
    an_mr_closed_unmerged_leaves_files_pending_and_holds_auto_sync,
    a_token_that_lost_permission_is_an_error_naming_it,
    a_revoked_token_is_an_error_without_a_retry_storm,
    a_rate_limit_with_retry_after_is_waited_out,
    server_errors_and_rate_limits_are_retried_until_they_pass,
    a_validation_failure_is_reported_on_the_mr,
    a_push_elsewhere_in_a_monorepo_queues_nothing,
    the_poll_catches_a_missed_webhook,
    a_forge_that_stays_down_is_an_error_once_retries_run_out,
);
