//! Slash commands end to end on the fake GitLab: notes, award emoji,
//! member access levels, note edits without the previous text (graft
//! keeps the last text it saw), both databases. Replies are
//! snapshot-tested.

mod support;

use graft::commands::REPLY_MARKER;
use graft::forge::NewPullRequest;
use graft::ids::PrNumber;
use graft::store::files::FileState;
use graft::store::now_ms;
use graft::store::projects::{Project, SyncStatus};
use support::TestDb;
use support::commands::{
    self, Forge, STATE_CHANGING, command_jobs, count, gitlab_replies, gitlab_reply, jobs_of_kind,
    project, sync_and_reconcile_jobs,
};
use support::fake_gitlab::Note;
use support::harness::Harness;
use support::sync::{event_kinds, input, put, put_quietly, settled};
use support::webhooks::random_delivery_id;

const PATH: &str = "platform/team/infra";
const BRANCH: &str = "graft/infra";

struct Setup {
    project: Project,
    gitlab_id: i64,
    iid: i64,
}

/// A GitLab project with a synced graft MR, a Developer and a Reporter.
async fn managed_mr(h: &Harness) -> Setup {
    let gitlab_id = h.gitlab_project(PATH);
    let p = h
        .app
        .store
        .create_project(
            &support::sync::project_spec(graft::ids::Provider::Gitlab, PATH),
            now_ms(),
        )
        .await
        .unwrap();
    put(h, p.id, &[input("a.tf", "# a1\n"), input("b.tf", "# b1\n")]).await;
    let synced = settled(h, p.id, SyncStatus::Success).await;
    let iid = synced.pull_request_number.expect("an MR");
    h.gitlab.set_access_level(gitlab_id, "dev", 30);
    h.gitlab.set_access_level(gitlab_id, "reporter", 20);
    Setup {
        project: synced,
        gitlab_id,
        iid: iid.get(),
    }
}

fn replies(h: &Harness, s: &Setup) -> Vec<Note> {
    gitlab_replies(h, s.gitlab_id, s.iid)
}

/// Waits for graft's `count`th reply on the MR and returns its text.
async fn reply(h: &Harness, s: &Setup, count: usize) -> String {
    gitlab_reply(h, s.gitlab_id, s.iid, count).await
}

/// Waits until graft awarded `note` every one of the emoji `names`.
async fn awarded(h: &Harness, note: i64, names: &[&str]) {
    h.wait_for(&format!("awards {names:?} on {note}"), || async {
        let got: Vec<String> = h.gitlab.awards(note).into_iter().map(|(_, n)| n).collect();
        names
            .iter()
            .all(|n| got.iter().any(|g| g == n))
            .then_some(())
    })
    .await
}

/// Note `note`'s `updated_at` as GitLab's hooks write it.
fn hook_time(h: &Harness, note: i64) -> String {
    let secs = i64::try_from(h.gitlab.note(note).updated_at).unwrap();
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// Waits until graft processed `deliveries` webhooks of `note`.
async fn processed(h: &Harness, note: i64, deliveries: usize) {
    commands::processed(h, Forge::Gitlab, note, deliveries).await
}

async fn developers_run_commands_and_reporters_are_refused(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    let id = s.project.id;

    let note = h.comment_on_gitlab(s.gitlab_id, s.iid, "reporter", "/graft pause");
    insta::assert_snapshot!("gitlab_refusal", reply(&h, &s, 1).await);
    awarded(&h, note, &["eyes", "confused"]).await;
    assert!(!project(&h, id).await.paused);

    let note = h.comment_on_gitlab(s.gitlab_id, s.iid, "reporter", "/graft status");
    awarded(&h, note, &["eyes", "thumbsup"]).await;
    assert_eq!(
        replies(&h, &s).len(),
        1,
        "status answers in the sticky note"
    );

    let note = h.comment_on_gitlab(s.gitlab_id, s.iid, "dev", "/graft pause");
    insta::assert_snapshot!("gitlab_pause", reply(&h, &s, 2).await);
    awarded(&h, note, &["eyes", "thumbsup"]).await;
    settled(&h, id, SyncStatus::Paused).await;
    put(&h, id, &[input("a.tf", "# a2\n")]).await;

    h.comment_on_gitlab(s.gitlab_id, s.iid, "dev", "/graft resume");
    let resumed = reply(&h, &s, 3).await;
    assert!(resumed.contains("a sync is queued"), "{resumed}");
    h.wait_for("the paused change synced", || async {
        (h.gitlab.git.file(PATH, BRANCH, "infra/a.tf")? == b"# a2\n").then_some(())
    })
    .await;
    settled(&h, id, SyncStatus::Success).await;

    h.comment_on_gitlab(s.gitlab_id, s.iid, "reporter", "/graft synk --force");
    insta::assert_snapshot!("gitlab_unknown", reply(&h, &s, 4).await);
    h.stop().await;
}

async fn an_edit_takes_back_the_earlier_verdict(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    let note = h.comment_on_gitlab(s.gitlab_id, s.iid, "dev", "/graft pause");
    reply(&h, &s, 1).await;
    awarded(&h, note, &["thumbsup"]).await;

    // The edit adds a command that fails: 👍 no longer holds.
    h.gitlab.edit_note_as(note, "/graft pause\n/graft snyc");
    let second = reply(&h, &s, 2).await;
    assert!(second.contains("Did you mean `/graft sync`?"), "{second}");
    awarded(&h, note, &["confused"]).await;
    let mut now: Vec<String> = h.gitlab.awards(note).into_iter().map(|(_, n)| n).collect();
    now.sort();
    assert_eq!(now, ["confused", "eyes"]);
    h.stop().await;
}

async fn an_edited_note_runs_only_its_new_commands(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    let note = h.comment_on_gitlab(s.gitlab_id, s.iid, "dev", "/graft help");
    let help = reply(&h, &s, 1).await;
    assert!(help.contains("| `/graft sync --force` |"), "{help}");

    // GitLab sends no previous text: graft compares with what it saw.
    h.gitlab.edit_note_as(note, "/graft help\n/graft pause");
    let edited = reply(&h, &s, 2).await;
    assert!(
        edited.contains("Paused:") && !edited.contains("| command |"),
        "{edited}"
    );
    settled(&h, s.project.id, SyncStatus::Paused).await;

    // Nothing new: nothing runs.
    h.gitlab
        .edit_note_as(note, "/graft help\n/graft pause\nthanks");
    processed(&h, note, 3).await;
    // Commands removed, then one written back in: it is new again.
    h.gitlab.edit_note_as(note, "never mind");
    processed(&h, note, 4).await;
    assert_eq!(replies(&h, &s).len(), 2);
    h.gitlab.edit_note_as(note, "/graft resume");
    let third = reply(&h, &s, 3).await;
    assert!(third.contains("Resumed"), "{third}");
    // The edit to `never mind` had its job too: graft believes a note lost
    // its commands only once GitLab confirms it.
    assert_eq!(command_jobs(&h).await, 4);

    // A redelivered note hook (another UUID) runs nothing twice.
    let hook = h
        .gitlab
        .webhooks()
        .into_iter()
        .rfind(|w| {
            w.event == "Note Hook" && w.body["object_attributes"]["id"].as_i64() == Some(note)
        })
        .unwrap();
    let body = serde_json::to_vec(&hook.body).unwrap();
    let response = h
        .app
        .gitlab("Note Hook", &random_delivery_id(), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    processed(&h, note, 6).await;
    assert_eq!(command_jobs(&h).await, 4);
    assert_eq!(replies(&h, &s).len(), 3);
    h.stop().await;
}

async fn bots_and_graft_itself_are_never_obeyed(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    h.gitlab
        .set_access_level(s.gitlab_id, "project_9_bot_deadbeef", 40);
    let bot = h.comment_on_gitlab(s.gitlab_id, s.iid, "project_9_bot_deadbeef", "/graft pause");
    let own = h
        .gitlab_client(PATH)
        .await
        .reply(PrNumber(s.iid), "/graft pause")
        .await
        .unwrap()
        .id;
    for note in [bot, own] {
        processed(&h, note, 1).await;
        assert!(h.gitlab.awards(note).is_empty());
    }
    assert_eq!(command_jobs(&h).await, 0);
    assert!(replies(&h, &s).is_empty());
    assert!(!project(&h, s.project.id).await.paused);
    h.stop().await;
}

async fn a_merge_request_graft_does_not_own_stores_and_runs_nothing(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    h.push_to_gitlab_as_human(
        PATH,
        "feature",
        &[("app.txt", Some(b"hi\n".as_slice()))],
        "dev",
    );
    let other = h
        .gitlab_client(PATH)
        .await
        .open_pull_request(&NewPullRequest {
            head_branch: "feature".into(),
            base_branch: "main".into(),
            title: "A feature".into(),
            body: String::new(),
        })
        .await
        .unwrap();
    assert_ne!(other.number, PrNumber(s.iid));
    let mut notes = Vec::new();
    for _ in 0..3 {
        notes.push(h.comment_on_gitlab(s.gitlab_id, other.number.get(), "dev", "/graft sync"));
    }
    for note in &notes {
        processed(&h, *note, 1).await;
        assert!(h.gitlab.awards(*note).is_empty());
    }
    assert_eq!(command_jobs(&h).await, 0, "no job");
    assert_eq!(count(&h, "SELECT COUNT(*) FROM command_runs").await, 0);
    assert_eq!(count(&h, "SELECT COUNT(*) FROM comment_texts").await, 0);
    assert!(gitlab_replies(&h, s.gitlab_id, other.number.get()).is_empty());
    h.stop().await;
}

async fn a_command_removed_and_written_back_runs_again(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    let note = h.comment_on_gitlab(s.gitlab_id, s.iid, "dev", "/graft pause");
    assert!(reply(&h, &s, 1).await.contains("Paused:"));
    h.app
        .store
        .set_paused(s.project.id, false, graft::store::now_ms())
        .await
        .unwrap();
    h.gitlab.edit_note_as(note, "never mind");
    processed(&h, note, 2).await;
    h.gitlab.edit_note_as(note, "/graft pause");
    assert!(reply(&h, &s, 2).await.contains("Paused:"));
    assert!(project(&h, s.project.id).await.paused);
    h.stop().await;
}

async fn an_edit_hook_without_an_action_runs_only_new_commands(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    let note = h.comment_on_gitlab(s.gitlab_id, s.iid, "dev", "/graft pause");
    reply(&h, &s, 1).await;
    // GitLab before 16.11 sends edits as note hooks without an action.
    let mut hook = h
        .gitlab
        .webhooks()
        .into_iter()
        .rfind(|w| {
            w.event == "Note Hook" && w.body["object_attributes"]["id"].as_i64() == Some(note)
        })
        .unwrap()
        .body;
    hook["object_attributes"]
        .as_object_mut()
        .unwrap()
        .remove("action");
    hook["object_attributes"]["note"] = serde_json::json!("/graft pause\n/graft help");
    h.gitlab
        .set_note_text(note, "dev", "/graft pause\n/graft help");
    hook["object_attributes"]["updated_at"] = hook_time(&h, note).into();
    let body = serde_json::to_vec(&hook).unwrap();
    let response = h
        .app
        .gitlab("Note Hook", &random_delivery_id(), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let second = reply(&h, &s, 2).await;
    assert!(
        second.contains("| command |") && !second.contains("Paused:"),
        "only the new `help` ran: {second}"
    );
    // Such an edit that leaves no commands, then the commands written back
    // (each as an action-less hook): they run again.
    h.app
        .store
        .set_paused(s.project.id, false, graft::store::now_ms())
        .await
        .unwrap();
    let send = |text: &str| {
        let mut edited = hook.clone();
        edited["object_attributes"]["note"] = serde_json::json!(text);
        h.gitlab.set_note_text(note, "dev", text);
        edited["object_attributes"]["updated_at"] = hook_time(&h, note).into();
        let body = serde_json::to_vec(&edited).unwrap();
        let app = &h.app;
        async move {
            let response = app
                .gitlab("Note Hook", &random_delivery_id(), &body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202);
        }
    };
    send("never mind").await;
    processed(&h, note, 3).await;
    // Its check must see "never mind" as the note's text: an edit that lands
    // before the job verified the previous one takes that one's place.
    h.wait_for("the edit's check ran", || async {
        let open = count(
            &h,
            "SELECT COUNT(*) FROM jobs WHERE kind = 'command' AND state IN ('queued', 'running')",
        )
        .await;
        (open == 0).then_some(())
    })
    .await;
    send("/graft pause").await;
    assert!(reply(&h, &s, 3).await.contains("Paused:"));
    h.stop().await;
}

/// graft's status note on the MR.
fn sticky(h: &Harness, s: &Setup) -> Note {
    h.gitlab
        .notes(s.gitlab_id, s.iid)
        .into_iter()
        .find(|n| n.body.contains("<!-- graft:status -->"))
        .expect("a status note")
}

/// Both sides change `b.tf`: graft's database and a human on `main`. The
/// project stops at the conflict.
async fn conflict(h: &Harness, s: &Setup, graft: &str, human: &str) -> Project {
    h.app
        .store
        .put_files(s.project.id, &[input("b.tf", graft)], false, now_ms())
        .await
        .unwrap();
    h.push_to_gitlab_as_human(
        PATH,
        "main",
        &[("infra/b.tf", Some(human.as_bytes()))],
        "dev",
    );
    settled(h, s.project.id, SyncStatus::Error).await
}

async fn a_developer_syncs_the_pending_change(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    let id = s.project.id;
    let syncs = jobs_of_kind(&h, "sync").await;
    // A change that queues nothing on its own (it arrived while graft's
    // last push was in review).
    put_quietly(&h, id, &[input("a.tf", "# a2\n")]).await;
    assert_eq!(jobs_of_kind(&h, "sync").await, syncs, "nothing queued yet");

    let note = h.comment_on_gitlab(s.gitlab_id, s.iid, "dev", "/graft sync");
    insta::assert_snapshot!("gitlab_sync", reply(&h, &s, 1).await);
    awarded(&h, note, &["eyes", "thumbsup"]).await;
    h.wait_for("the pending change pushed to the MR branch", || async {
        (h.gitlab.git.file(PATH, BRANCH, "infra/a.tf")? == b"# a2\n").then_some(())
    })
    .await;
    let synced = settled(&h, id, SyncStatus::Success).await;
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
    // The same MR, now at the new head, with graft's file synced.
    let mrs = h.gitlab.merge_requests(s.gitlab_id);
    assert_eq!(mrs.len(), 1, "{mrs:?}");
    assert_eq!(synced.pull_request_number, Some(PrNumber(s.iid)));
    assert_eq!(Some(mrs[0].sha.clone()), h.gitlab.git.head(PATH, BRANCH));
    assert_eq!(synced.sync_branch_sha, h.gitlab.git.head(PATH, BRANCH));
    assert_eq!(synced.sync_error, None);
    let a = h.app.store.file(id, "a.tf").await.unwrap().unwrap();
    assert_eq!(a.state, FileState::Synced);
    assert!(
        h.gitlab
            .statuses(s.gitlab_id)
            .iter()
            .any(|st| st.sha == mrs[0].sha && st.name == "graft" && st.state == "success"),
        "{:?}",
        h.gitlab.statuses(s.gitlab_id)
    );
    let log = h.app.store.list_events(Some(id), 50).await.unwrap();
    assert!(
        log.iter()
            .any(|e| e.kind == "command" && e.actor == "dev" && e.message.contains("sync")),
        "{log:?}"
    );
    assert_eq!(event_kinds(&h, id).await[0], "sync.pushed");
    h.stop().await;
}

async fn sync_force_and_import_resolve_conflicts(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    let id = s.project.id;
    let conflicted = conflict(&h, &s, "# b-graft\n", "# b-human\n").await;
    assert_eq!(conflicted.conflicts, Some(vec!["b.tf".to_string()]));
    assert!(
        conflicted.sync_error.as_deref().unwrap().contains("`b.tf`"),
        "{:?}",
        conflicted.sync_error
    );
    let note = sticky(&h, &s).body;
    assert!(
        note.contains("`b.tf`") && note.contains("/graft sync --force"),
        "the status note names the conflict: {note}"
    );

    h.comment_on_gitlab(s.gitlab_id, s.iid, "dev", "/graft sync --force");
    insta::assert_snapshot!("gitlab_sync_force", reply(&h, &s, 1).await);
    let forced = settled(&h, id, SyncStatus::Success).await;
    assert_eq!((forced.conflicts, forced.sync_error), (None, None));
    assert_eq!(
        h.gitlab.git.file(PATH, BRANCH, "infra/b.tf").unwrap(),
        b"# b-graft\n",
        "graft's version kept on the MR branch"
    );
    assert_eq!(
        h.gitlab.git.file(PATH, "main", "infra/b.tf").unwrap(),
        b"# b-human\n",
        "main is the reviewers' to merge"
    );

    conflict(&h, &s, "# b-graft2\n", "# b-human2\n").await;
    h.comment_on_gitlab(s.gitlab_id, s.iid, "dev", "/graft import");
    insta::assert_snapshot!("gitlab_import", reply(&h, &s, 2).await);
    let imported = settled(&h, id, SyncStatus::Success).await;
    assert_eq!(imported.conflicts, None);
    let b = h.app.store.file(id, "b.tf").await.unwrap().unwrap();
    assert_eq!(
        (b.content.as_slice(), b.state),
        (b"# b-human2\n".as_slice(), FileState::Synced),
        "the repository's version taken"
    );
    let kinds = event_kinds(&h, id).await;
    assert!(
        kinds.contains(&"files.imported".to_string()) && kinds.contains(&"sync.failed".to_string()),
        "{kinds:?}"
    );
    assert_eq!(h.gitlab.merge_requests(s.gitlab_id).len(), 1);
    h.stop().await;
}

async fn rebase_drops_human_commits_after_importing_their_edits(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    let id = s.project.id;
    let human = h.push_to_gitlab_as_human(
        PATH,
        BRANCH,
        &[("infra/a.tf", Some(b"# a-reviewer\n".as_slice()))],
        "reviewer",
    );
    h.wait_for("branch marked shared", || async {
        project(&h, id).await.sync_branch_shared.then_some(())
    })
    .await;
    settled(&h, id, SyncStatus::Success).await;

    h.comment_on_gitlab(s.gitlab_id, s.iid, "dev", "/graft rebase");
    insta::assert_snapshot!("gitlab_rebase", reply(&h, &s, 1).await);
    h.wait_for("branch recreated without the human commit", || async {
        let log = h.gitlab.git.log(PATH, BRANCH);
        (!log.iter().any(|(sha, _, _)| *sha == human)).then_some(())
    })
    .await;
    let rebased = settled(&h, id, SyncStatus::Success).await;
    assert!(!rebased.sync_branch_shared);
    assert_eq!(rebased.sync_branch_sha, h.gitlab.git.head(PATH, BRANCH));
    assert_eq!(
        h.gitlab.git.file(PATH, BRANCH, "infra/a.tf").unwrap(),
        b"# a-reviewer\n",
        "the reviewer's edit lives on as graft's content"
    );
    let a = h.app.store.file(id, "a.tf").await.unwrap().unwrap();
    assert_eq!(a.content, b"# a-reviewer\n", "kept in the database");
    let log = h.gitlab.git.log(PATH, BRANCH);
    assert_eq!(
        log[1].0,
        h.gitlab.git.head(PATH, "main").unwrap(),
        "one graft commit on main"
    );
    let mrs = h.gitlab.merge_requests(s.gitlab_id);
    assert_eq!(mrs.len(), 1);
    assert_eq!(Some(mrs[0].sha.clone()), h.gitlab.git.head(PATH, BRANCH));
    h.stop().await;
}

async fn retry_reruns_the_last_failed_job(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    let id = s.project.id;
    h.comment_on_gitlab(s.gitlab_id, s.iid, "dev", "/graft retry");
    assert!(
        reply(&h, &s, 1)
            .await
            .contains("Nothing to retry: the last job of this project did not fail.")
    );
    // The MR branch cannot be pushed: the sync fails for good.
    h.gitlab.protect_branch(PATH, BRANCH);
    put(&h, id, &[input("a.tf", "# a2\n")]).await;
    let failed = settled(&h, id, SyncStatus::Error).await;
    let failed_job = failed.last_failed_job_id.expect("a failed job");
    assert_eq!(
        h.app.store.job(failed_job).await.unwrap().unwrap().state,
        "failed"
    );
    h.gitlab.unprotect_branch(PATH, BRANCH);
    let syncs = jobs_of_kind(&h, "sync").await;
    h.comment_on_gitlab(s.gitlab_id, s.iid, "dev", "/graft retry");
    insta::assert_snapshot!("gitlab_retry", reply(&h, &s, 2).await);
    let retried = settled(&h, id, SyncStatus::Success).await;
    assert_eq!(
        jobs_of_kind(&h, "sync").await,
        syncs + 1,
        "one sync re-queued"
    );
    assert_eq!(retried.sync_error, None);
    assert_eq!(
        h.gitlab.git.file(PATH, BRANCH, "infra/a.tf").unwrap(),
        b"# a2\n"
    );
    assert!(
        sticky(&h, &s).body.contains("✅"),
        "{}",
        sticky(&h, &s).body
    );
    h.stop().await;
}

async fn automerge_on_and_off(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    let id = s.project.id;
    h.app
        .store
        .set_auto_merge(id, true, now_ms())
        .await
        .unwrap();
    // "Merge when pipeline succeeds" was already set on the MR.
    h.gitlab
        .state
        .lock()
        .unwrap()
        .merge_requests
        .iter_mut()
        .for_each(|mr| mr.merge_when_pipeline_succeeds = true);
    h.comment_on_gitlab(s.gitlab_id, s.iid, "dev", "/graft automerge off");
    insta::assert_snapshot!("gitlab_automerge_off", reply(&h, &s, 1).await);
    assert!(!project(&h, id).await.auto_merge);
    let mr = &h.gitlab.merge_requests(s.gitlab_id)[0];
    assert!(!mr.merge_when_pipeline_succeeds, "cancelled on the MR");
    assert_eq!(mr.state, "opened");

    h.comment_on_gitlab(s.gitlab_id, s.iid, "dev", "/graft automerge on");
    // The status had passed, so GitLab merged right away.
    insta::assert_snapshot!("gitlab_automerge_on", reply(&h, &s, 2).await);
    assert!(project(&h, id).await.auto_merge);
    let merged = h
        .wait_for("MR merged", || async {
            let mr = h.gitlab.merge_requests(s.gitlab_id).remove(0);
            (mr.state == "merged").then_some(mr)
        })
        .await;
    let after = h
        .wait_for("merge recorded", || async {
            let p = project(&h, id).await;
            (p.pull_request_number.is_none() && p.last_synced_commit_sha == merged.merge_commit_sha)
                .then_some(p)
        })
        .await;
    assert!(after.auto_merge);
    settled(&h, id, SyncStatus::Success).await;
    assert!(
        event_kinds(&h, id)
            .await
            .contains(&"pull_request.merged".to_string())
    );
    h.stop().await;
}

async fn reporters_may_not_run_any_state_changing_command(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    let id = s.project.id;
    // Give every command something to do: a failed sync to retry, a
    // pending change to sync, a branch to rebase.
    h.gitlab.protect_branch(PATH, BRANCH);
    put(&h, id, &[input("a.tf", "# a2\n")]).await;
    let failed = settled(&h, id, SyncStatus::Error).await;
    assert!(failed.last_failed_job_id.is_some());
    h.gitlab.unprotect_branch(PATH, BRANCH);
    let head = h.gitlab.git.head(PATH, BRANCH);
    let mut seen = 0;
    for phase in [false, true] {
        if phase {
            // Now `resume` and `automerge off` have something to undo.
            h.app.store.set_paused(id, true, now_ms()).await.unwrap();
            h.app
                .store
                .set_auto_merge(id, true, now_ms())
                .await
                .unwrap();
        }
        let before = project(&h, id).await;
        let jobs = sync_and_reconcile_jobs(&h).await;
        for (command, _) in STATE_CHANGING.iter().filter(|(_, p)| *p == phase) {
            let note =
                h.comment_on_gitlab(s.gitlab_id, s.iid, "reporter", &format!("/graft {command}"));
            seen += 1;
            let refusal = reply(&h, &s, seen).await;
            assert_eq!(
                refusal.trim_end(),
                format!(
                    "{REPLY_MARKER}\n@reporter, you need at least the Developer role in \
                     `{PATH}` to run `/graft {command}`, so nothing was changed. \
                     `/graft status` and `/graft help` work for everyone."
                ),
            );
            awarded(&h, note, &["eyes", "confused"]).await;
            assert!(
                !h.gitlab.awards(note).iter().any(|(_, n)| n == "thumbsup"),
                "{command}"
            );
            assert_eq!(
                sync_and_reconcile_jobs(&h).await,
                jobs,
                "`{command}` queued a job"
            );
            assert_eq!(
                project(&h, id).await,
                before,
                "`{command}` changed the project"
            );
        }
    }
    let after = project(&h, id).await;
    assert_eq!(
        (after.paused, after.auto_merge, after.sync_status),
        (true, true, SyncStatus::Paused)
    );
    assert_eq!(h.gitlab.git.head(PATH, BRANCH), head, "nothing pushed");
    let a = h.app.store.file(id, "a.tf").await.unwrap().unwrap();
    assert_eq!(a.state, FileState::Pending, "the change still waits");
    assert!(
        !h.app
            .store
            .list_events(Some(id), 100)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == "command"),
        "no command was recorded as run"
    );
    assert_eq!(replies(&h, &s).len(), STATE_CHANGING.len());
    h.stop().await;
}

/// The last real hook of `event` GitLab sent whose `pointer` is `id`.
fn real_hook(h: &Harness, event: &str, pointer: &str, id: i64) -> serde_json::Value {
    h.gitlab
        .webhooks()
        .into_iter()
        .rfind(|w| w.event == event && w.body.pointer(pointer).and_then(|v| v.as_i64()) == Some(id))
        .expect("a real hook to start from")
        .body
}

/// Sends `body` as `event` with the integration's right secret, as anyone
/// holding it (a Maintainer of any project carrying the hook) could.
async fn send_forged(h: &Harness, event: &str, body: &serde_json::Value) {
    let response = h
        .app
        .gitlab(
            event,
            &random_delivery_id(),
            &serde_json::to_vec(body).unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}

/// Waits until `n` jobs of `kind` are over.
async fn jobs_done(h: &Harness, kind: &str, n: i64) {
    let sql =
        format!("SELECT COUNT(*) FROM jobs WHERE kind = '{kind}' AND state IN ('done', 'failed')");
    h.wait_for(&format!("{n} {kind} jobs over"), || async {
        (count(h, &sql).await >= n).then_some(())
    })
    .await
}

async fn forged_note_hooks_run_nothing(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    let id = s.project.id;
    // `lead` may change anything here; `mallory` maintains another project
    // whose hook carries the same secret.
    let lead = h.gitlab.set_access_level(s.gitlab_id, "lead", 40);
    let elsewhere = h.gitlab_project("elsewhere/app");
    h.gitlab.set_access_level(elsewhere, "mallory", 40);
    let asked = h.comment_on_gitlab(s.gitlab_id, s.iid, "reporter", "Could we pause this?");
    let praised = h.comment_on_gitlab(s.gitlab_id, s.iid, "lead", "Nice work.");
    processed(&h, praised, 1).await;
    let template = real_hook(&h, "Note Hook", "/object_attributes/id", asked);
    let as_lead = |note: i64, body: &str| {
        let mut hook = template.clone();
        hook["user"]["username"] = "lead".into();
        hook["user"]["id"] = lead.into();
        hook["object_attributes"]["id"] = note.into();
        hook["object_attributes"]["note"] = body.into();
        hook["object_attributes"]["author_id"] = lead.into();
        hook
    };
    // The reporter's note, passed off as the lead's.
    send_forged(&h, "Note Hook", &as_lead(asked, "/graft pause")).await;
    // A note that does not exist.
    send_forged(&h, "Note Hook", &as_lead(999_999, "/graft pause")).await;
    // The lead's real note, with other text.
    send_forged(
        &h,
        "Note Hook",
        &as_lead(praised, "Nice work.\n/graft pause"),
    )
    .await;
    // The lead's real note, under another project's id.
    let mut moved = as_lead(praised, "/graft sync");
    moved["project"]["id"] = elsewhere.into();
    send_forged(&h, "Note Hook", &moved).await;
    jobs_done(&h, "command", 4).await;

    for note in [asked, praised] {
        assert!(h.gitlab.awards(note).is_empty(), "no reaction on {note}");
    }
    assert!(replies(&h, &s).is_empty(), "{:?}", replies(&h, &s));
    let after = project(&h, id).await;
    assert!(!after.paused);
    assert_eq!(after.sync_status, SyncStatus::Success);
    let log = h.app.store.list_events(Some(id), 50).await.unwrap();
    // One audit entry for the minute's rejections, counting them all.
    let rejected: Vec<_> = log
        .iter()
        .filter(|e| e.kind == "command.rejected")
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(
        rejected[0].message.contains("GitLab says @reporter wrote")
            && rejected[0].message.contains("and 3 more notes rejected"),
        "{}",
        rejected[0].message
    );
    assert_eq!(
        rejected[0].details.as_ref().map(|d| d["rejected"].clone()),
        Some(4.into())
    );
    assert!(!log.iter().any(|e| e.kind == "command"), "nothing ran");
    // Checked before anything was written: no rows for forged notes.
    assert_eq!(count(&h, "SELECT COUNT(*) FROM command_runs").await, 0);
    assert_eq!(count(&h, "SELECT COUNT(*) FROM comment_texts").await, 0);

    // The real lead, for contrast, is obeyed.
    h.comment_on_gitlab(s.gitlab_id, s.iid, "lead", "/graft pause");
    assert!(reply(&h, &s, 1).await.contains("Paused:"));
    h.stop().await;
}

async fn a_forged_merge_or_close_of_an_open_mr_changes_nothing(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    let id = s.project.id;
    let before = project(&h, id).await;
    let template = h
        .gitlab
        .webhooks()
        .into_iter()
        .rfind(|w| {
            w.event == "Merge Request Hook"
                && w.body["object_attributes"]["iid"].as_i64() == Some(s.iid)
        })
        .expect("graft's MR was announced")
        .body;
    for (action, state) in [("merge", "merged"), ("close", "closed")] {
        let mut hook = template.clone();
        hook["object_attributes"]["action"] = action.into();
        hook["object_attributes"]["state"] = state.into();
        hook["object_attributes"]["merge_commit_sha"] =
            "c0ffee0000000000000000000000000000000000".into();
        send_forged(&h, "Merge Request Hook", &hook).await;
    }
    jobs_done(&h, "pull_request_closed", 2).await;
    let after = project(&h, id).await;
    assert_eq!(
        after.pull_request_number,
        Some(PrNumber(s.iid)),
        "still graft's open MR"
    );
    assert_eq!(
        (
            after.sync_status,
            after.auto_sync_held,
            &after.last_synced_commit_sha
        ),
        (
            before.sync_status,
            before.auto_sync_held,
            &before.last_synced_commit_sha
        )
    );
    let kinds = event_kinds(&h, id).await;
    assert!(
        !kinds.iter().any(|k| k.starts_with("pull_request.")),
        "{kinds:?}"
    );
    assert_eq!(h.gitlab.merge_requests(s.gitlab_id)[0].state, "opened");

    // The real close is believed.
    h.gitlab.close_merge_request(s.gitlab_id, s.iid, "dev");
    h.wait_for("close recorded", || async {
        project(&h, id)
            .await
            .pull_request_number
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        event_kinds(&h, id)
            .await
            .contains(&"pull_request.closed".to_string())
    );
    h.stop().await;
}

async fn an_edit_by_a_maintainer_runs_as_the_maintainer(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    let id = s.project.id;
    h.gitlab.set_access_level(s.gitlab_id, "lead", 40);
    // The developer's note, edited by the lead: the lead caused the run.
    let note = h.comment_on_gitlab(s.gitlab_id, s.iid, "dev", "Ready when you are.");
    processed(&h, note, 1).await;
    h.gitlab
        .edit_note_by(note, "lead", "Ready when you are.\n/graft pause");
    assert!(reply(&h, &s, 1).await.contains("Paused:"));
    let log = h.app.store.list_events(Some(id), 50).await.unwrap();
    let run = log
        .iter()
        .find(|e| e.kind == "command")
        .expect("the pause is logged");
    assert_eq!(run.actor, "lead", "the editor, not the author");

    // GitLab's API cannot confirm who edited a note, so a reporter's note
    // runs nothing that changes anything, whoever the hook says edited it.
    let note = h.comment_on_gitlab(s.gitlab_id, s.iid, "reporter", "A question.");
    processed(&h, note, 1).await;
    h.gitlab
        .edit_note_by(note, "lead", "A question.\n/graft resume");
    let refusal = reply(&h, &s, 2).await;
    assert!(refusal.contains("@reporter, you need"), "{refusal}");
    assert!(project(&h, id).await.paused);
    h.stop().await;
}

/// The replay attack on a real note of a Maintainer: with the secret, a
/// hook for the note under other text, then its real text passed off as a
/// later edit (by a named Maintainer), then the very hook again. Before,
/// the first hook moved what graft remembered of the note, so the second
/// looked new and the job, finding the note as claimed, ran it again.
async fn a_replayed_note_runs_nothing_again(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    let id = s.project.id;
    let lead = h.gitlab.set_access_level(s.gitlab_id, "lead", 40);
    let note = h.comment_on_gitlab(s.gitlab_id, s.iid, "lead", "/graft pause");
    assert!(reply(&h, &s, 1).await.contains("Paused:"));
    awarded(&h, note, &["eyes", "thumbsup"]).await;
    // Resumed by other means: a replayed pause would show.
    h.app.store.set_paused(id, false, now_ms()).await.unwrap();
    let real = real_hook(&h, "Note Hook", "/object_attributes/id", note);
    let awards = h.gitlab.awards(note);
    let syncs = sync_and_reconcile_jobs(&h).await;
    let logged = || async {
        h.app
            .store
            .list_events(Some(id), 100)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == "command")
            .count()
    };
    assert_eq!(logged().await, 1);

    let mut other_text = real.clone();
    other_text["object_attributes"]["note"] = "x".into();
    send_forged(&h, "Note Hook", &other_text).await;
    let mut later = real.clone();
    later["object_attributes"]["updated_at"] = "2030-01-01 00:00:00 UTC".into();
    later["object_attributes"]["updated_by_id"] = lead.into();
    send_forged(&h, "Note Hook", &later).await;
    send_forged(&h, "Note Hook", &real).await;
    processed(&h, note, 4).await;
    // Only the text change is worth a check (which fails); the rest have
    // nothing new against the text graft verified.
    jobs_done(&h, "command", 2).await;
    assert_eq!(command_jobs(&h).await, 2);
    let remembered = count(
        &h,
        "SELECT COUNT(*) FROM comment_texts WHERE body = '/graft pause'",
    )
    .await;
    assert_eq!(remembered, 1, "graft still remembers the verified text");

    // Even when graft has forgotten the note's text (pruned), this version
    // of the note ran once and does not run again.
    sqlx::query("DELETE FROM comment_texts")
        .execute(h.app.store.pool())
        .await
        .unwrap();
    send_forged(&h, "Note Hook", &real).await;
    processed(&h, note, 5).await;
    jobs_done(&h, "command", 3).await;

    // A real edit whose hook has not arrived, claimed under another time:
    // not the version GitLab stores, so nothing runs.
    h.gitlab
        .set_note_text(note, "lead", "/graft pause\n/graft sync --force");
    let mut unsent = real.clone();
    unsent["object_attributes"]["note"] = "/graft pause\n/graft sync --force".into();
    send_forged(&h, "Note Hook", &unsent).await;
    processed(&h, note, 6).await;
    jobs_done(&h, "command", 4).await;

    assert_eq!(replies(&h, &s).len(), 1, "{:?}", replies(&h, &s));
    assert_eq!(h.gitlab.awards(note), awards, "no reaction changed");
    let after = project(&h, id).await;
    assert!(!after.paused, "the pause did not run again");
    assert_eq!(sync_and_reconcile_jobs(&h).await, syncs, "no sync queued");
    assert_eq!(logged().await, 1, "nothing more ran");
    h.stop().await;
}

/// A holder of the secret sends notes with commands on graft's MR under
/// ever new names and note ids: the jobs, rows and audit entries they cost
/// are bounded, and nothing runs.
async fn a_flood_of_forged_notes_is_bounded(db: TestDb) {
    let h = Harness::start(&db).await;
    let s = managed_mr(&h).await;
    let id = s.project.id;
    let hello = h.comment_on_gitlab(s.gitlab_id, s.iid, "reporter", "Hello.");
    processed(&h, hello, 1).await;
    let template = real_hook(&h, "Note Hook", "/object_attributes/id", hello);
    let syncs = sync_and_reconcile_jobs(&h).await;
    const FLOOD: i64 = 40;
    for i in 0..FLOOD {
        let mut hook = template.clone();
        hook["user"]["username"] = format!("user{i}").into();
        hook["user"]["id"] = (10_000 + i).into();
        hook["object_attributes"]["id"] = (500_000 + i).into();
        hook["object_attributes"]["author_id"] = (10_000 + i).into();
        hook["object_attributes"]["note"] = "/graft sync".into();
        send_forged(&h, "Note Hook", &hook).await;
    }
    for i in 0..FLOOD {
        processed(&h, 500_000 + i, 1).await;
    }
    let jobs = command_jobs(&h).await;
    let limit = graft::commands::intake::NOTE_JOBS.max_runs;
    assert!(jobs >= 1 && jobs <= limit, "{jobs} jobs, limit {limit}");
    jobs_done(&h, "command", jobs).await;

    assert_eq!(count(&h, "SELECT COUNT(*) FROM command_runs").await, 0);
    assert_eq!(count(&h, "SELECT COUNT(*) FROM comment_texts").await, 0);
    let log = h.app.store.list_events(Some(id), 100).await.unwrap();
    let rejected: Vec<_> = log
        .iter()
        .filter(|e| e.kind == "command.rejected")
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(
        rejected[0].details.as_ref().map(|d| d["rejected"].clone()),
        Some(jobs.into())
    );
    assert!(replies(&h, &s).is_empty());
    assert!(h.gitlab.awards(hello).is_empty());
    assert_eq!(sync_and_reconcile_jobs(&h).await, syncs, "nothing queued");
    h.stop().await;
}

both_backends!(
    a_replayed_note_runs_nothing_again,
    a_flood_of_forged_notes_is_bounded,
    a_command_removed_and_written_back_runs_again,
    an_edit_takes_back_the_earlier_verdict,
    an_edit_hook_without_an_action_runs_only_new_commands,
    developers_run_commands_and_reporters_are_refused,
    an_edited_note_runs_only_its_new_commands,
    bots_and_graft_itself_are_never_obeyed,
    a_merge_request_graft_does_not_own_stores_and_runs_nothing,
    forged_note_hooks_run_nothing,
    a_forged_merge_or_close_of_an_open_mr_changes_nothing,
    an_edit_by_a_maintainer_runs_as_the_maintainer,
    a_developer_syncs_the_pending_change,
    sync_force_and_import_resolve_conflicts,
    rebase_drops_human_commits_after_importing_their_edits,
    retry_reruns_the_last_failed_job,
    automerge_on_and_off,
    reporters_may_not_run_any_state_changing_command,
);
