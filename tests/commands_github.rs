//! Slash commands end to end on the fake GitHub: real webhooks both ways,
//! graft's real router and workers, both databases. Replies are
//! snapshot-tested.

mod support;

use graft::commands::REPLY_MARKER;
use graft::ids::PrNumber;
use graft::store::files::FileState;
use graft::store::now_ms;
use graft::store::projects::{Project, SyncStatus};
use support::TestDb;
use support::commands::{
    self, Forge, STATE_CHANGING, command_jobs, count, github_replies, github_reply, jobs_of_kind,
    project, sync_and_reconcile_jobs,
};
use support::fake_github::Comment;
use support::harness::Harness;
use support::sync::{event_kinds, hold, input, put, put_quietly, settled};
use support::webhooks::random_delivery_id;

const REPO: &str = "acme/infra";
const INSTALLATION: i64 = 77;
const BRANCH: &str = "graft/infra";

/// A repository with a synced graft PR; returns the project and PR number.
async fn managed_pr(h: &Harness) -> (Project, i64) {
    h.github_repo(REPO, INSTALLATION);
    let p = h
        .app
        .store
        .create_project(
            &support::sync::project_spec(graft::ids::Provider::Github, REPO),
            now_ms(),
        )
        .await
        .unwrap();
    put(h, p.id, &[input("a.tf", "# a1\n"), input("b.tf", "# b1\n")]).await;
    let synced = settled(h, p.id, SyncStatus::Success).await;
    let number = synced.pull_request_number.expect("a PR");
    h.github.set_role(REPO, "writer", "write");
    h.github.set_role(REPO, "reader", "read");
    (synced, number.get())
}

fn replies(h: &Harness, number: i64) -> Vec<Comment> {
    github_replies(h, REPO, number)
}

/// Waits for graft's `count`th reply on the PR and returns its text.
async fn reply(h: &Harness, number: i64, count: usize) -> String {
    github_reply(h, REPO, number, count).await
}

/// Waits until graft reacted to `comment` with every one of `contents`.
async fn reacted(h: &Harness, comment: i64, contents: &[&str]) {
    h.wait_for(&format!("reactions {contents:?} on {comment}"), || async {
        let got: Vec<String> = h
            .github
            .reactions(comment)
            .into_iter()
            .map(|(_, c)| c)
            .collect();
        contents
            .iter()
            .all(|c| got.iter().any(|g| g == c))
            .then_some(())
    })
    .await
}

/// Waits until graft processed the webhook(s) of `comment`.
async fn processed(h: &Harness, comment: i64, deliveries: usize) {
    commands::processed(h, Forge::Github, comment, deliveries).await
}

async fn writers_run_commands_and_readers_are_refused(db: TestDb) {
    let h = Harness::start(&db).await;
    let (p, n) = managed_pr(&h).await;

    // A reader may not pause: a polite refusal, nothing changes.
    let c = h.comment_on_github(REPO, n, "reader", "/graft pause");
    let refusal = reply(&h, n, 1).await;
    insta::assert_snapshot!("github_refusal", refusal);
    reacted(&h, c, &["eyes", "confused"]).await;
    assert!(!project(&h, p.id).await.paused);

    // `status` is open to readers and answers in the sticky comment.
    let c = h.comment_on_github(REPO, n, "reader", "/graft status");
    reacted(&h, c, &["eyes", "+1"]).await;
    assert_eq!(replies(&h, n).len(), 1, "status does not reply");

    // A writer pauses: automatic syncs stop, sync_status says paused.
    let c = h.comment_on_github(REPO, n, "writer", "/graft pause");
    insta::assert_snapshot!("github_pause", reply(&h, n, 2).await);
    reacted(&h, c, &["eyes", "+1"]).await;
    let paused = settled(&h, p.id, SyncStatus::Paused).await;
    assert!(paused.paused);
    let sticky = h
        .github
        .comments(REPO, n)
        .into_iter()
        .find(|c| c.body.contains("<!-- graft:status -->"))
        .unwrap();
    assert!(sticky.body.contains("⏸️ paused"), "{}", sticky.body);
    put(&h, p.id, &[input("a.tf", "# a2\n")]).await;
    assert_eq!(
        h.github.git.file(REPO, BRANCH, "infra/a.tf").unwrap(),
        b"# a1\n",
        "paused: no automatic sync"
    );

    // Resume: the change made while paused is synced.
    let c = h.comment_on_github(REPO, n, "writer", "/GRAFT Resume");
    insta::assert_snapshot!("github_resume", reply(&h, n, 3).await);
    reacted(&h, c, &["eyes", "+1"]).await;
    h.wait_for("the paused change synced", || async {
        (h.github.git.file(REPO, BRANCH, "infra/a.tf")? == b"# a2\n").then_some(())
    })
    .await;
    let resumed = settled(&h, p.id, SyncStatus::Success).await;
    assert!(!resumed.paused);

    // Several commands in one comment run in order, one reply.
    h.comment_on_github(
        REPO,
        n,
        "writer",
        "Two things:\n/graft automerge off\n/graft pause\n\nthanks!",
    );
    insta::assert_snapshot!("github_two_commands", reply(&h, n, 4).await);
    let log = h.app.store.list_events(Some(p.id), 50).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.kind == "command" && e.actor == "writer" && e.message.contains("pause")),
        "{log:?}"
    );
    assert!(
        h.github.violations().is_empty(),
        "{:?}",
        h.github.violations()
    );
    h.stop().await;
}

async fn unknown_commands_bad_arguments_and_help_are_answered(db: TestDb) {
    let h = Harness::start(&db).await;
    let (_, n) = managed_pr(&h).await;

    let c = h.comment_on_github(REPO, n, "reader", "/graft snyc");
    insta::assert_snapshot!("github_unknown", reply(&h, n, 1).await);
    reacted(&h, c, &["eyes", "confused"]).await;

    let c = h.comment_on_github(
        REPO,
        n,
        "reader",
        "```\n/graft sync\n```\n> /graft pause\n\nThe `/graft rebase` command, then:\n/graft automerge maybe",
    );
    insta::assert_snapshot!("github_bad_argument", reply(&h, n, 2).await);
    reacted(&h, c, &["confused"]).await;

    let c = h.comment_on_github(REPO, n, "reader", "/graft help");
    insta::assert_snapshot!("github_help", reply(&h, n, 3).await);
    reacted(&h, c, &["eyes", "+1"]).await;

    // graft's own replies (which quote commands) came back as webhooks
    // and were never read as commands.
    for r in replies(&h, n) {
        processed(&h, r.id, 1).await;
    }
    assert_eq!(command_jobs(&h).await, 3);
    assert_eq!(replies(&h, n).len(), 3);
    h.stop().await;
}

async fn bots_and_graft_itself_are_never_obeyed(db: TestDb) {
    let h = Harness::start(&db).await;
    let (p, n) = managed_pr(&h).await;
    // A bot account (type Bot) with admin rights, an app bot, and graft.
    h.github
        .state
        .lock()
        .unwrap()
        .users
        .insert("ci-helper".into(), (9001, "Bot".into()));
    h.github.set_role(REPO, "ci-helper", "admin");
    h.github.set_role(REPO, "renovate[bot]", "admin");
    let a = h.comment_on_github(REPO, n, "ci-helper", "/graft pause");
    let b = h.comment_on_github(REPO, n, "renovate[bot]", "/graft pause");
    let own = h
        .github_client(REPO)
        .await
        .reply(PrNumber(n), "/graft pause")
        .await
        .unwrap()
        .id;
    for comment in [a, b, own] {
        processed(&h, comment, 1).await;
        assert!(h.github.reactions(comment).is_empty());
    }
    assert_eq!(command_jobs(&h).await, 0);
    assert!(replies(&h, n).is_empty());
    assert!(!project(&h, p.id).await.paused);
    h.stop().await;
}

async fn an_edited_comment_runs_only_its_new_commands(db: TestDb) {
    let h = Harness::start(&db).await;
    let (p, n) = managed_pr(&h).await;
    let c = h.comment_on_github(REPO, n, "writer", "/graft snyc\n/graft status");
    let first = reply(&h, n, 1).await;
    assert!(first.contains("Did you mean `/graft sync`?"), "{first}");
    reacted(&h, c, &["confused"]).await;

    // Someone else's 😕 is theirs to keep.
    h.github
        .state
        .lock()
        .unwrap()
        .reactions
        .push((9_999, c, "reader".into(), "confused".into()));

    // The typo is fixed into another command; status was there before.
    h.github.edit_comment_as(c, "/graft pause\n/graft status");
    let second = reply(&h, n, 2).await;
    insta::assert_snapshot!("github_edit", second);
    reacted(&h, c, &["+1"]).await;
    let mut now = h.github.reactions(c);
    now.sort();
    assert_eq!(
        now,
        [
            (
                support::fake_github::BOT_LOGIN.to_string(),
                "+1".to_string()
            ),
            (
                support::fake_github::BOT_LOGIN.to_string(),
                "eyes".to_string()
            ),
            ("reader".to_string(), "confused".to_string()),
        ],
        "graft took back its own earlier 😕, and only that"
    );
    settled(&h, p.id, SyncStatus::Paused).await;
    let rows = count(
        &h,
        &format!("SELECT COUNT(*) FROM command_runs WHERE comment_id = {c}"),
    )
    .await;
    assert_eq!(rows, 3, "snyc, status, then pause");

    // An edit that adds nothing runs nothing.
    h.github
        .edit_comment_as(c, "/graft pause\n/graft status\n\n(done)");
    processed(&h, c, 3).await;
    assert_eq!(command_jobs(&h).await, 2);
    assert_eq!(replies(&h, n).len(), 2);
    h.stop().await;
}

async fn a_redelivered_comment_runs_nothing_twice(db: TestDb) {
    let h = Harness::start(&db).await;
    let (p, n) = managed_pr(&h).await;
    let c = h.comment_on_github(REPO, n, "writer", "/graft pause");
    reply(&h, n, 1).await;
    reacted(&h, c, &["+1"]).await;
    // Undo behind graft's back, so a second run would show.
    h.app.store.set_paused(p.id, false, now_ms()).await.unwrap();
    let hook = h
        .github
        .webhooks()
        .into_iter()
        .find(|w| w.event == "issue_comment" && w.body["comment"]["id"].as_i64() == Some(c))
        .unwrap();
    let body = serde_json::to_vec(&hook.body).unwrap();
    let response = h
        .app
        .github("issue_comment", &random_delivery_id(), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    processed(&h, c, 2).await;
    assert_eq!(command_jobs(&h).await, 1);
    assert_eq!(replies(&h, n).len(), 1);
    assert!(!project(&h, p.id).await.paused);
    h.stop().await;
}

async fn a_pull_request_graft_does_not_own_stores_and_runs_nothing(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    h.github.set_role(REPO, "writer", "write");
    h.push_to_github_as_human(
        REPO,
        "feature",
        &[("app.txt", Some(b"hello\n".as_slice()))],
        "writer",
    );
    let n = h
        .github
        .open_pull(REPO, "feature", "main", "A feature", "writer");
    // However many: no job, no row, no answer.
    let mut comments = Vec::new();
    for _ in 0..3 {
        comments.push(h.comment_on_github(REPO, n, "writer", "/graft sync"));
    }
    for c in &comments {
        processed(&h, *c, 1).await;
        assert!(h.github.reactions(*c).is_empty());
    }
    assert_eq!(command_jobs(&h).await, 0);
    assert_eq!(count(&h, "SELECT COUNT(*) FROM command_runs").await, 0);
    assert_eq!(count(&h, "SELECT COUNT(*) FROM comment_texts").await, 0);
    assert!(replies(&h, n).is_empty());
    h.stop().await;
}

async fn an_edit_runs_as_the_editor_not_the_author(db: TestDb) {
    let h = Harness::start(&db).await;
    let (p, n) = managed_pr(&h).await;
    // A reader asks; a writer edits the command in: the writer ran it.
    let c = h.comment_on_github(REPO, n, "reader", "Could someone pause this?");
    processed(&h, c, 1).await;
    h.github
        .edit_comment_by(c, "writer", "Could someone pause this?\n/graft pause");
    assert!(reply(&h, n, 1).await.contains("Paused:"));
    let log = h.app.store.list_events(Some(p.id), 50).await.unwrap();
    let run = log.iter().find(|e| e.kind == "command").expect("logged");
    assert_eq!(run.actor, "writer", "the editor, not the author");
    let who = count(
        &h,
        &format!("SELECT COUNT(*) FROM command_runs WHERE comment_id = {c} AND author = 'writer'"),
    )
    .await;
    assert_eq!(who, 1);

    // A writer's comment edited by a reader: the reader's permission counts.
    let c = h.comment_on_github(REPO, n, "writer", "Paused for now.");
    processed(&h, c, 1).await;
    h.github
        .edit_comment_by(c, "reader", "Paused for now.\n/graft resume");
    let refusal = reply(&h, n, 2).await;
    assert!(refusal.contains("@reader, you need"), "{refusal}");
    assert!(project(&h, p.id).await.paused);
    h.stop().await;
}

async fn commands_are_rate_limited_per_person_and_pull_request(db: TestDb) {
    let h = Harness::start(&db).await;
    let (_, n) = managed_pr(&h).await;
    let runs_of = |who: &'static str| {
        let h = &h;
        async move {
            count(
                h,
                &format!("SELECT COUNT(*) FROM command_runs WHERE author = '{who}'"),
            )
            .await
        }
    };
    // Two comments of ten commands fill the writer's minute.
    let ten = "/graft status\n".repeat(10);
    for _ in 0..2 {
        let c = h.comment_on_github(REPO, n, "writer", &ten);
        processed(&h, c, 1).await;
    }
    assert_eq!(runs_of("writer").await, 20);
    let jobs = command_jobs(&h).await;
    let over = h.comment_on_github(REPO, n, "writer", "/graft status");
    processed(&h, over, 1).await;
    assert_eq!(runs_of("writer").await, 20, "the 21st run is refused");
    assert_eq!(command_jobs(&h).await, jobs, "and queues nothing");
    assert!(h.github.reactions(over).is_empty());
    assert_eq!(
        count(
            &h,
            &format!("SELECT COUNT(*) FROM comment_texts WHERE comment_id = {over}")
        )
        .await,
        0,
        "not even its text is kept"
    );
    // Someone else on the same PR is not held up.
    let other = h.comment_on_github(REPO, n, "reader", "/graft status");
    processed(&h, other, 1).await;
    assert_eq!(runs_of("reader").await, 1);
    // A minute later the writer may run commands again.
    sqlx::query("UPDATE command_runs SET created_at = created_at - 61000")
        .execute(h.app.store.pool())
        .await
        .unwrap();
    let later = h.comment_on_github(REPO, n, "writer", "/graft status");
    processed(&h, later, 1).await;
    assert_eq!(runs_of("writer").await, 21);
    h.stop().await;
}

async fn finished_command_runs_are_pruned_and_old_comments_stay_done(db: TestDb) {
    let h = Harness::start(&db).await;
    let (p, n) = managed_pr(&h).await;
    let store = &h.app.store;
    let old = h.comment_on_github(REPO, n, "writer", "/graft pause");
    assert!(reply(&h, n, 1).await.contains("Paused:"));
    reacted(&h, old, &["+1"]).await;
    // A run whose job has not run yet stays, whatever its age.
    let blocker = hold(&h, p.id).await;
    let waiting = h.comment_on_github(REPO, n, "writer", "/graft status");
    processed(&h, waiting, 1).await;
    let pruned = store.prune_command_runs(now_ms() + 1).await.unwrap();
    assert_eq!(pruned, 1, "the finished pause went");
    let left = count(&h, "SELECT COUNT(*) FROM command_runs").await;
    assert_eq!(left, 1, "the queued status stays");
    blocker.release(&h).await;
    reacted(&h, waiting, &["+1"]).await;
    assert_eq!(store.prune_command_runs(now_ms() + 1).await.unwrap(), 1);
    // Nothing left at the real cutoff either.
    assert_eq!(
        graft::retention::prune_commands(store, 30).await.unwrap(),
        0
    );

    // The old comment redelivered still runs nothing: its text is kept.
    store.set_paused(p.id, false, now_ms()).await.unwrap();
    let jobs = command_jobs(&h).await;
    let hook = h
        .github
        .webhooks()
        .into_iter()
        .find(|w| w.event == "issue_comment" && w.body["comment"]["id"].as_i64() == Some(old))
        .unwrap();
    let response = h
        .app
        .github(
            "issue_comment",
            &random_delivery_id(),
            &serde_json::to_vec(&hook.body).unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    processed(&h, old, 2).await;
    assert_eq!(command_jobs(&h).await, jobs);
    assert!(!project(&h, p.id).await.paused);
    h.stop().await;
}

async fn sync_force_and_import_resolve_conflicts(db: TestDb) {
    let h = Harness::start(&db).await;
    let (p, n) = managed_pr(&h).await;
    // Both sides change b.tf: conflict.
    let conflict = |graft: &'static str, human: &'static str| {
        let h = &h;
        async move {
            h.app
                .store
                .put_files(p.id, &[input("b.tf", graft)], false, now_ms())
                .await
                .unwrap();
            h.push_to_github_as_human(
                REPO,
                "main",
                &[("infra/b.tf", Some(human.as_bytes()))],
                "octocat",
            );
            settled(h, p.id, SyncStatus::Error).await
        }
    };
    let conflicted = conflict("# b-graft\n", "# b-human\n").await;
    assert_eq!(conflicted.conflicts, Some(vec!["b.tf".to_string()]));

    h.comment_on_github(REPO, n, "writer", "/graft sync --force");
    insta::assert_snapshot!("github_sync_force", reply(&h, n, 1).await);
    settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(
        h.github.git.file(REPO, BRANCH, "infra/b.tf").unwrap(),
        b"# b-graft\n",
        "graft's version kept"
    );

    conflict("# b-graft2\n", "# b-human2\n").await;
    h.comment_on_github(REPO, n, "writer", "/graft import");
    insta::assert_snapshot!("github_import", reply(&h, n, 2).await);
    let imported = settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(imported.conflicts, None);
    let b = h.app.store.file(p.id, "b.tf").await.unwrap().unwrap();
    assert_eq!(b.content, b"# b-human2\n", "the repository's version taken");
    h.stop().await;
}

async fn retry_reruns_the_last_failed_job(db: TestDb) {
    let h = Harness::start(&db).await;
    let (p, n) = managed_pr(&h).await;
    h.comment_on_github(REPO, n, "writer", "/graft retry");
    assert!(
        reply(&h, n, 1)
            .await
            .contains("Nothing to retry: the last job of this project did not fail.")
    );
    // The branch cannot be pushed: the sync fails for good.
    h.github.git.protect_branch(REPO, BRANCH);
    put(&h, p.id, &[input("a.tf", "# a2\n")]).await;
    let failed = settled(&h, p.id, SyncStatus::Error).await;
    assert!(failed.last_failed_job_id.is_some());
    h.github.git.unprotect_branch(REPO, BRANCH);
    h.comment_on_github(REPO, n, "writer", "/graft retry");
    insta::assert_snapshot!("github_retry", reply(&h, n, 2).await);
    settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(
        h.github.git.file(REPO, BRANCH, "infra/a.tf").unwrap(),
        b"# a2\n"
    );
    h.stop().await;
}

async fn rebase_drops_human_commits_after_importing_their_edits(db: TestDb) {
    let h = Harness::start(&db).await;
    let (p, n) = managed_pr(&h).await;
    let human = h.push_to_github_as_human(
        REPO,
        BRANCH,
        &[("infra/a.tf", Some(b"# a-reviewer\n".as_slice()))],
        "reviewer",
    );
    h.wait_for("branch marked shared", || async {
        project(&h, p.id).await.sync_branch_shared.then_some(())
    })
    .await;
    settled(&h, p.id, SyncStatus::Success).await;

    h.comment_on_github(REPO, n, "writer", "/graft rebase");
    insta::assert_snapshot!("github_rebase", reply(&h, n, 1).await);
    h.wait_for("branch recreated without the human commit", || async {
        let log = h.github.git.log(REPO, BRANCH);
        (!log.iter().any(|(sha, _, _)| *sha == human)).then_some(())
    })
    .await;
    let rebased = settled(&h, p.id, SyncStatus::Success).await;
    assert!(!rebased.sync_branch_shared);
    assert_eq!(
        h.github.git.file(REPO, BRANCH, "infra/a.tf").unwrap(),
        b"# a-reviewer\n",
        "the reviewer's edit lives on as graft's content"
    );
    let log = h.github.git.log(REPO, BRANCH);
    assert_eq!(log[1].0, h.github.git.head(REPO, "main").unwrap());
    h.stop().await;
}

async fn automerge_on_and_off(db: TestDb) {
    let h = Harness::start(&db).await;
    let (p, n) = managed_pr(&h).await;
    h.app
        .store
        .set_auto_merge(p.id, true, now_ms())
        .await
        .unwrap();
    // Auto-merge was already on for the PR: `off` turns it off there too.
    h.github
        .state
        .lock()
        .unwrap()
        .pulls
        .iter_mut()
        .for_each(|pull| pull.auto_merge = true);
    h.comment_on_github(REPO, n, "writer", "/graft automerge off");
    insta::assert_snapshot!("github_automerge_off", reply(&h, n, 1).await);
    assert!(!project(&h, p.id).await.auto_merge);
    assert!(!h.github.pulls(REPO)[0].auto_merge, "disabled on the PR");

    h.comment_on_github(REPO, n, "writer", "/graft automerge on");
    // The check had passed, so the forge merged right away.
    insta::assert_snapshot!("github_automerge_on", reply(&h, n, 2).await);
    assert!(project(&h, p.id).await.auto_merge);
    h.wait_for("PR merged", || async {
        h.github.pulls(REPO)[0].merged.then_some(())
    })
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    h.stop().await;
}

async fn eyes_arrive_on_receipt_even_while_the_project_is_busy(db: TestDb) {
    let h = Harness::start(&db).await;
    let (p, number) = managed_pr(&h).await;
    // A long job holds the project: the command job must wait.
    let blocker = hold(&h, p.id).await;
    let comment = h.comment_on_github(REPO, number, "writer", "/graft status");
    h.wait_for("👀 while the command waits", || async {
        let eyes = h
            .github
            .reactions(comment)
            .iter()
            .any(|(_, content)| content == "eyes");
        (eyes && command_jobs(&h).await == 1).then_some(())
    })
    .await;
    let queued = count(
        &h,
        "SELECT COUNT(*) FROM jobs WHERE kind = 'command' AND state = 'queued'",
    )
    .await;
    assert_eq!(queued, 1, "the command itself has not run yet");
    blocker.release(&h).await;
    reacted(&h, comment, &["eyes", "+1"]).await;
    let eyes = h
        .github
        .reactions(comment)
        .iter()
        .filter(|(_, c)| c == "eyes")
        .count();
    assert_eq!(eyes, 1, "acknowledged once");
    h.stop().await;
}

async fn an_edit_back_to_an_earlier_command_runs_it_again(db: TestDb) {
    let h = Harness::start(&db).await;
    let (p, n) = managed_pr(&h).await;
    let c = h.comment_on_github(REPO, n, "writer", "/graft pause");
    assert!(reply(&h, n, 1).await.contains("Paused:"));
    h.github.edit_comment_as(c, "/graft resume");
    assert!(reply(&h, n, 2).await.contains("Resumed"));
    assert!(!project(&h, p.id).await.paused);
    // The first text again: a new request, not a redelivery.
    h.github.edit_comment_as(c, "/graft pause");
    assert!(reply(&h, n, 3).await.contains("Paused:"));
    assert!(project(&h, p.id).await.paused);
    // And round again: the same edits as before are new requests too.
    h.github.edit_comment_as(c, "/graft resume");
    assert!(reply(&h, n, 4).await.contains("Resumed"));
    h.github.edit_comment_as(c, "/graft pause");
    assert!(reply(&h, n, 5).await.contains("Paused:"));
    assert!(project(&h, p.id).await.paused);
    assert_eq!(command_jobs(&h).await, 5);
    h.stop().await;
}

async fn a_pause_keeps_the_error_for_resume(db: TestDb) {
    let h = Harness::start(&db).await;
    let (p, n) = managed_pr(&h).await;
    h.app
        .store
        .record_sync_error(p.id, "the last sync failed", None, now_ms())
        .await
        .unwrap();
    h.comment_on_github(REPO, n, "writer", "/graft pause");
    reply(&h, n, 1).await;
    let paused = project(&h, p.id).await;
    assert_eq!(
        (paused.sync_status, paused.sync_error),
        (SyncStatus::Paused, None)
    );
    h.comment_on_github(REPO, n, "writer", "/graft resume");
    reply(&h, n, 2).await;
    let resumed = project(&h, p.id).await;
    assert_eq!(
        (resumed.sync_status, resumed.sync_error.as_deref()),
        (SyncStatus::Error, Some("the last sync failed")),
        "the error is back, not hidden by the pause"
    );
    h.stop().await;
}

async fn a_flood_of_commands_gets_one_answer_for_the_excess(db: TestDb) {
    let h = Harness::start(&db).await;
    let (_, n) = managed_pr(&h).await;
    let body = "/graft status\n".repeat(500);
    h.comment_on_github(REPO, n, "writer", &body);
    let answer = reply(&h, n, 1).await;
    assert!(answer.contains("Only the first 10 commands"), "{answer}");
    assert!(
        answer.len() < 10_000,
        "a short reply: {} bytes",
        answer.len()
    );
    let runs = count(&h, "SELECT COUNT(*) FROM command_runs").await;
    assert_eq!(runs, 11, "ten commands and one refusal for the rest");
    h.stop().await;
}

async fn a_writer_syncs_the_pending_change(db: TestDb) {
    let h = Harness::start(&db).await;
    let (p, n) = managed_pr(&h).await;
    let syncs = jobs_of_kind(&h, "sync").await;
    // A change that queues nothing on its own.
    put_quietly(&h, p.id, &[input("a.tf", "# a2\n")]).await;
    assert_eq!(jobs_of_kind(&h, "sync").await, syncs, "nothing queued yet");

    let c = h.comment_on_github(REPO, n, "writer", "/graft sync");
    insta::assert_snapshot!("github_sync", reply(&h, n, 1).await);
    reacted(&h, c, &["eyes", "+1"]).await;
    h.wait_for("the pending change pushed to the PR branch", || async {
        (h.github.git.file(REPO, BRANCH, "infra/a.tf")? == b"# a2\n").then_some(())
    })
    .await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    let done = count(
        &h,
        "SELECT COUNT(*) FROM jobs WHERE kind = 'sync' AND state = 'done'",
    )
    .await;
    assert_eq!(
        (jobs_of_kind(&h, "sync").await, done),
        (syncs + 1, syncs + 1),
        "one sync queued by the command, and it ran"
    );
    let pulls = h.github.pulls(REPO);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(synced.pull_request_number, Some(PrNumber(n)));
    assert_eq!(
        Some(pulls[0].head_sha.clone()),
        h.github.git.head(REPO, BRANCH)
    );
    assert_eq!(synced.sync_branch_sha, h.github.git.head(REPO, BRANCH));
    let a = h.app.store.file(p.id, "a.tf").await.unwrap().unwrap();
    assert_eq!(a.state, FileState::Synced);
    let log = h.app.store.list_events(Some(p.id), 50).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.kind == "command" && e.actor == "writer" && e.message.contains("sync")),
        "{log:?}"
    );
    assert_eq!(event_kinds(&h, p.id).await[0], "sync.pushed");
    h.stop().await;
}

async fn readers_may_not_run_any_state_changing_command(db: TestDb) {
    let h = Harness::start(&db).await;
    let (p, n) = managed_pr(&h).await;
    // Give every command something to do: a failed sync to retry, a
    // pending change to sync, a branch to rebase.
    h.github.git.protect_branch(REPO, BRANCH);
    put(&h, p.id, &[input("a.tf", "# a2\n")]).await;
    let failed = settled(&h, p.id, SyncStatus::Error).await;
    assert!(failed.last_failed_job_id.is_some());
    h.github.git.unprotect_branch(REPO, BRANCH);
    let head = h.github.git.head(REPO, BRANCH);
    let mut seen = 0;
    for phase in [false, true] {
        if phase {
            // Now `resume` and `automerge off` have something to undo.
            h.app.store.set_paused(p.id, true, now_ms()).await.unwrap();
            h.app
                .store
                .set_auto_merge(p.id, true, now_ms())
                .await
                .unwrap();
        }
        let before = project(&h, p.id).await;
        let jobs = sync_and_reconcile_jobs(&h).await;
        for (command, _) in STATE_CHANGING.iter().filter(|(_, p)| *p == phase) {
            let c = h.comment_on_github(REPO, n, "reader", &format!("/graft {command}"));
            seen += 1;
            let refusal = reply(&h, n, seen).await;
            assert_eq!(
                refusal.trim_end(),
                format!(
                    "{REPLY_MARKER}\n@reader, you need write access to `{REPO}` to run \
                     `/graft {command}`, so nothing was changed. `/graft status` and \
                     `/graft help` work for everyone."
                ),
            );
            reacted(&h, c, &["eyes", "confused"]).await;
            assert!(
                !h.github.reactions(c).iter().any(|(_, r)| r == "+1"),
                "{command}"
            );
            assert_eq!(
                sync_and_reconcile_jobs(&h).await,
                jobs,
                "`{command}` queued a job"
            );
            assert_eq!(
                project(&h, p.id).await,
                before,
                "`{command}` changed the project"
            );
        }
    }
    let after = project(&h, p.id).await;
    assert_eq!(
        (after.paused, after.auto_merge, after.sync_status),
        (true, true, SyncStatus::Paused)
    );
    assert_eq!(h.github.git.head(REPO, BRANCH), head, "nothing pushed");
    assert!(!h.github.pulls(REPO)[0].auto_merge, "not asked on the PR");
    let a = h.app.store.file(p.id, "a.tf").await.unwrap().unwrap();
    assert_eq!(a.state, FileState::Pending, "the change still waits");
    assert!(
        !h.app
            .store
            .list_events(Some(p.id), 100)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == "command"),
        "no command was recorded as run"
    );
    assert_eq!(replies(&h, n).len(), STATE_CHANGING.len());
    h.stop().await;
}

both_backends!(
    an_edit_back_to_an_earlier_command_runs_it_again,
    a_pause_keeps_the_error_for_resume,
    a_flood_of_commands_gets_one_answer_for_the_excess,
    eyes_arrive_on_receipt_even_while_the_project_is_busy,
    writers_run_commands_and_readers_are_refused,
    unknown_commands_bad_arguments_and_help_are_answered,
    bots_and_graft_itself_are_never_obeyed,
    an_edited_comment_runs_only_its_new_commands,
    a_redelivered_comment_runs_nothing_twice,
    a_pull_request_graft_does_not_own_stores_and_runs_nothing,
    an_edit_runs_as_the_editor_not_the_author,
    commands_are_rate_limited_per_person_and_pull_request,
    finished_command_runs_are_pruned_and_old_comments_stay_done,
    sync_force_and_import_resolve_conflicts,
    retry_reruns_the_last_failed_job,
    rebase_drops_human_commits_after_importing_their_edits,
    automerge_on_and_off,
    a_writer_syncs_the_pending_change,
    readers_may_not_run_any_state_changing_command,
);
