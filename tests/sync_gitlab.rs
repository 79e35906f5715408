//! The sync engine end to end against the fake GitLab: merge requests,
//! notes, commit statuses, merges, upstream edits, branch protection.

mod support;

use graft::ids::PrNumber;
use graft::store::files::{FileInput, FileState};
use graft::store::now_ms;
use graft::store::projects::{Kind, Mode, Project, SyncStatus};
use graft::sync::schedule::SyncRequest;
use support::TestDb;
use support::fake_gitlab::BOT_USERNAME;
use support::harness::Harness;
use support::sync::{input, put, settled};

const PATH: &str = "platform/team/infra";

async fn project(h: &Harness, mode: Mode, kind: Kind) -> Project {
    support::sync::new_project(h, "gitlab", PATH, mode, kind, "deploy").await
}

async fn a_merge_request_is_opened_reported_and_merged(db: TestDb) {
    let h = Harness::start(&db).await;
    let id = h.gitlab_project(PATH);
    let p = project(&h, Mode::PullRequest, Kind::Iac).await;
    put(
        &h,
        p.id,
        &[input("app.yaml", "replicas: 2\n---\nkind: Service\n")],
    )
    .await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    let mrs = h.gitlab.merge_requests(id);
    assert_eq!(mrs.len(), 1, "{mrs:?}");
    let mr = &mrs[0];
    assert_eq!(
        (mr.source.as_str(), mr.target.as_str(), mr.state.as_str()),
        ("graft/deploy", "main", "opened")
    );
    assert_eq!(synced.pull_request_number, Some(PrNumber(mr.iid)));
    let notes = h.gitlab.notes(id, mr.iid);
    let sticky: Vec<_> = notes
        .iter()
        .filter(|n| n.body.contains("<!-- graft:status -->"))
        .collect();
    assert_eq!(sticky.len(), 1);
    assert_eq!(sticky[0].author, BOT_USERNAME);
    insta::assert_snapshot!("gitlab_sticky_synced", support::redacted(&sticky[0].body));
    let statuses = h.gitlab.statuses(id);
    assert!(
        statuses
            .iter()
            .any(|s| s.sha == mr.sha && s.name == "graft" && s.state == "success"),
        "{statuses:?}"
    );
    assert!(
        h.gitlab
            .git
            .file(PATH, "graft/deploy", "deploy/app.yaml")
            .is_some()
    );

    let merged = h.gitlab.merge(id, mr.iid, "maintainer").unwrap();
    h.wait_for("merge recorded", || async {
        let p = h.app.store.require_project(p.id).await.unwrap();
        (p.pull_request_number.is_none()
            && p.last_synced_commit_sha.as_deref() == Some(merged.as_str()))
        .then_some(())
    })
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    h.stop().await;
}

async fn configuration_projects_push_flagged_files_and_hold_the_rest(db: TestDb) {
    let h = Harness::start(&db).await;
    h.gitlab_project(PATH);
    let p = project(&h, Mode::Direct, Kind::Configuration).await;
    // An unflagged change waits.
    put(
        &h,
        p.id,
        &[FileInput {
            sync_on_change: Some(false),
            ..input("quiet.yaml", "a: 1\n")
        }],
    )
    .await;
    assert!(
        h.app
            .store
            .job_counts()
            .await
            .unwrap()
            .iter()
            .all(|(s, _)| s != "queued")
    );
    // A flagged change goes out, alone.
    put(
        &h,
        p.id,
        &[FileInput {
            sync_on_change: Some(true),
            ..input("live.yaml", "b: 1\n")
        }],
    )
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    assert!(
        h.gitlab
            .git
            .file(PATH, "main", "deploy/live.yaml")
            .is_some()
    );
    assert!(
        h.gitlab
            .git
            .file(PATH, "main", "deploy/quiet.yaml")
            .is_none(),
        "unflagged files wait for an explicit sync"
    );
    let quiet = h.app.store.file(p.id, "quiet.yaml").await.unwrap().unwrap();
    assert_eq!(quiet.state, FileState::Pending);
    // The explicit sync carries it.
    h.app
        .jobs()
        .enqueue_sync(p.id, &SyncRequest::explicit("api"), now_ms())
        .await
        .unwrap();
    h.wait_for("quiet file pushed", || async {
        h.gitlab
            .git
            .file(PATH, "main", "deploy/quiet.yaml")
            .map(|_| ())
    })
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    h.stop().await;
}

async fn upstream_edits_on_gitlab_are_imported(db: TestDb) {
    let h = Harness::start(&db).await;
    h.gitlab_project(PATH);
    let p = project(&h, Mode::Direct, Kind::Iac).await;
    put(&h, p.id, &[input("a.yaml", "a: 1\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    h.push_to_gitlab_as_human(
        PATH,
        "main",
        &[("deploy/a.yaml", Some(b"a: 2\n".as_slice()))],
        "dev",
    );
    h.wait_for("imported", || async {
        let f = h.app.store.file(p.id, "a.yaml").await.unwrap()?;
        (f.content == b"a: 2\n").then_some(())
    })
    .await;
    h.stop().await;
}

async fn a_protected_gitlab_branch_falls_back_to_a_merge_request(db: TestDb) {
    let h = Harness::start(&db).await;
    let id = h.gitlab_project(PATH);
    h.gitlab.protect_branch(PATH, "main");
    let p = project(&h, Mode::Direct, Kind::Iac).await;
    let main = h.gitlab.git.head(PATH, "main");
    put(&h, p.id, &[input("a.yaml", "a: 1\n")]).await;
    let fallback = settled(&h, p.id, SyncStatus::Success).await;
    let mrs = h.gitlab.merge_requests(id);
    assert_eq!(mrs.len(), 1);
    assert_eq!(fallback.pull_request_number, Some(PrNumber(mrs[0].iid)));
    assert_eq!(h.gitlab.git.head(PATH, "main"), main, "main untouched");
    // GitLab's own refusal text is recognised as branch protection.
    let log = h.app.store.list_events(Some(p.id), 20).await.unwrap();
    assert!(
        log.iter().any(|e| e.kind == "sync.fallback_to_pull_request"
            && e.message
                .contains("not allowed to push code to protected branches")),
        "{log:?}"
    );
    h.stop().await;
}

both_backends!(
    a_merge_request_is_opened_reported_and_merged,
    configuration_projects_push_flagged_files_and_hold_the_rest,
    upstream_edits_on_gitlab_are_imported,
    a_protected_gitlab_branch_falls_back_to_a_merge_request,
);
