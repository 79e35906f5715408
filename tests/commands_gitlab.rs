//! Slash commands end to end on the fake GitLab: notes, award emoji,
//! member access levels, note edits without the previous text (graft
//! keeps the last text it saw), both databases. Replies are
//! snapshot-tested.

mod support;

use graft::commands::REPLY_MARKER;
use graft::forge::NewPullRequest;
use graft::store::now_ms;
use graft::store::projects::{Kind, Mode, NewProject, Project, SyncStatus};
use sqlx::Row;
use support::TestDb;
use support::fake_gitlab::{BOT_USERNAME, Note};
use support::harness::Harness;
use support::sync::{input, put, settled};
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
            &NewProject {
                provider: "gitlab".into(),
                integration_id: None,
                repo: PATH.into(),
                branch: "main".into(),
                base_path: "infra".into(),
                kind: Kind::Iac,
                mode: Mode::PullRequest,
                auto_sync: true,
                auto_merge: false,
                sync_branch: None,
            },
            now_ms(),
        )
        .await
        .unwrap();
    put(h, p.id, &[input("a.tf", "# a1\n")]).await;
    let synced = settled(h, p.id, SyncStatus::Success).await;
    let iid = synced.pull_request_number.expect("an MR");
    h.gitlab.set_access_level(gitlab_id, "dev", 30);
    h.gitlab.set_access_level(gitlab_id, "reporter", 20);
    Setup {
        project: synced,
        gitlab_id,
        iid,
    }
}

fn replies(h: &Harness, s: &Setup) -> Vec<Note> {
    h.gitlab
        .notes(s.gitlab_id, s.iid)
        .into_iter()
        .filter(|n| n.author == BOT_USERNAME && n.body.starts_with(REPLY_MARKER))
        .collect()
}

async fn reply(h: &Harness, s: &Setup, count: usize) -> String {
    h.wait_for(&format!("reply #{count}"), || async {
        let all = replies(h, s);
        (all.len() >= count).then(|| all[count - 1].body.clone())
    })
    .await
}

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

/// Waits until graft processed `deliveries` webhooks of `note`.
async fn processed(h: &Harness, note: i64, deliveries: usize) {
    h.wait_for(
        &format!("{deliveries} deliveries of note {note}"),
        || async {
            let done = h
                .deliveries()
                .await
                .into_iter()
                .filter(|d| {
                    d.status == graft::store::deliveries::DeliveryStatus::Processed
                        && d.payload
                            .as_deref()
                            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
                            .is_some_and(|v| v["object_attributes"]["id"].as_i64() == Some(note))
                })
                .count();
            (done >= deliveries).then_some(())
        },
    )
    .await
}

async fn count(h: &Harness, sql: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(h.app.store.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
}

async fn command_jobs(h: &Harness) -> i64 {
    count(h, "SELECT COUNT(*) FROM jobs WHERE kind = 'command'").await
}

async fn project(h: &Harness, id: i64) -> Project {
    h.app.store.require_project(id).await.unwrap()
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
    assert_eq!(command_jobs(&h).await, 3);

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
    assert_eq!(command_jobs(&h).await, 3);
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
        .reply(s.iid, "/graft pause")
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

async fn a_merge_request_graft_does_not_own_gets_one_short_answer(db: TestDb) {
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
    assert_ne!(other.number, s.iid);
    h.comment_on_gitlab(s.gitlab_id, other.number, "dev", "/graft sync");
    let answer = Setup {
        iid: other.number,
        ..s
    };
    insta::assert_snapshot!("gitlab_not_managed", reply(&h, &answer, 1).await);
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
    h.stop().await;
}

both_backends!(
    a_command_removed_and_written_back_runs_again,
    an_edit_hook_without_an_action_runs_only_new_commands,
    developers_run_commands_and_reporters_are_refused,
    an_edited_note_runs_only_its_new_commands,
    bots_and_graft_itself_are_never_obeyed,
    a_merge_request_graft_does_not_own_gets_one_short_answer,
);
