//! Upstream changes meeting graft's own, in pull-request mode: a human
//! edit of a file graft's open PR changes is a conflict (never a silent
//! import), `/graft import` takes only what the repository changed, and a
//! merge settles exactly what landed.

mod support;

use graft::store::files::FileState;
use graft::store::projects::{Mode, SyncStatus};
use support::TestDb;
use support::harness::Harness;
use support::sync::{event_kinds, github_project, input, poll_now, put, put_quietly, settled};

const REPO: &str = "acme/infra";
const INSTALLATION: i64 = 77;

async fn a_human_edit_of_a_file_graft_proposes_is_a_conflict(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    h.github
        .git
        .commit(REPO, "main", &[("infra/a.tf", Some(b"# a0\n"))], "seed");
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    put(&h, p.id, &[input("a.tf", "# a-graft\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    let number = synced.pull_request_number.expect("a PR");

    h.push_to_github_as_human(
        REPO,
        "main",
        &[("infra/a.tf", Some(b"# a-human\n".as_slice()))],
        "octocat",
    );
    let conflicted = settled(&h, p.id, SyncStatus::Error).await;
    assert_eq!(conflicted.conflicts, Some(vec!["a.tf".to_string()]));
    let error = conflicted.sync_error.unwrap_or_default();
    assert!(
        error.contains("`a.tf`") && error.contains("/graft import"),
        "{error}"
    );
    // Nothing overwritten on either side.
    let a = h.app.store.file(p.id, "a.tf").await.unwrap().unwrap();
    assert_eq!(a.content, b"# a-graft\n");
    assert_eq!(
        h.github
            .git
            .file(REPO, "graft/infra", "infra/a.tf")
            .unwrap(),
        b"# a-graft\n"
    );
    assert_eq!(
        h.github.git.file(REPO, "main", "infra/a.tf").unwrap(),
        b"# a-human\n"
    );
    assert!(
        !event_kinds(&h, p.id)
            .await
            .contains(&"files.imported".to_string())
    );
    // The PR says so.
    let sticky = h
        .github
        .comments(REPO, number.get())
        .into_iter()
        .find(|c| c.body.contains("<!-- graft:status -->"))
        .expect("a status comment");
    assert!(sticky.body.contains("Conflict"), "{}", sticky.body);
    insta::assert_snapshot!("github_sticky_conflict", support::redacted(&sticky.body));
    assert!(
        sticky.body.contains("| change | file |") && sticky.body.contains("`a.tf` |"),
        "the failure keeps the PR's file table: {}",
        sticky.body
    );
    h.stop().await;
}

async fn import_takes_only_what_the_repository_changed(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::Direct, "infra").await;
    put(
        &h,
        p.id,
        &[input("a.tf", "# a1\n"), input("b.tf", "# b1\n")],
    )
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    // graft's side: a change to a file nobody else touches, a new file,
    // and a change to the file the human edits too.
    put_quietly(
        &h,
        p.id,
        &[
            input("a.tf", "# a2\n"),
            input("new.tf", "# new\n"),
            input("b.tf", "# b-graft\n"),
        ],
    )
    .await;
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
    let file = |path: &'static str| {
        let store = h.app.store.clone();
        async move { store.file(p.id, path).await.unwrap().unwrap() }
    };
    let b = file("b.tf").await;
    assert_eq!(
        (b.content.as_slice(), b.state),
        (b"# b-human\n".as_slice(), FileState::Synced)
    );
    let a = file("a.tf").await;
    assert_eq!(
        (a.content.as_slice(), a.state),
        (b"# a2\n".as_slice(), FileState::Pending)
    );
    let new = file("new.tf").await;
    assert_eq!(
        (new.content.as_slice(), new.state),
        (b"# new\n".as_slice(), FileState::Pending)
    );
    h.stop().await;
}

async fn a_merge_settles_what_landed_and_keeps_later_changes_pending(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    put(
        &h,
        p.id,
        &[input("a.tf", "# a1\n"), input("b.tf", "# b1\n")],
    )
    .await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    // While the PR is in review: a newer a.tf, and b.tf removed.
    put_quietly(&h, p.id, &[input("a.tf", "# a2\n")]).await;
    h.app
        .store
        .delete_file(p.id, "b.tf", graft::store::now_ms())
        .await
        .unwrap();

    let merge = h
        .github
        .merge_pull(REPO, synced.pull_request_number.unwrap().get(), "octocat")
        .unwrap();
    let merged = h
        .wait_for("merge reconciled", || async {
            let p = h.app.store.require_project(p.id).await.unwrap();
            (p.last_synced_commit_sha.as_deref() == Some(merge.as_str())).then_some(p)
        })
        .await;
    let merged = settled(&h, merged.id, SyncStatus::Success).await;
    assert_eq!((merged.pull_request_number, merged.conflicts), (None, None));
    let files = h.app.store.files(p.id).await.unwrap();
    let states: Vec<(&str, FileState)> = files.iter().map(|f| (f.path.as_str(), f.state)).collect();
    assert_eq!(
        states,
        vec![
            ("a.tf", FileState::Pending),
            ("b.tf", FileState::DeletedPending)
        ],
        "the newer a.tf and the deletion of b.tf did not land with the merge"
    );
    assert_eq!(files[0].content, b"# a2\n");
    assert!(
        !event_kinds(&h, p.id)
            .await
            .contains(&"files.imported".to_string()),
        "graft's own merged content is not an upstream edit"
    );
    h.stop().await;
}

async fn a_merge_whose_webhooks_were_lost_is_found_by_the_poll(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = github_project(&h, REPO, Mode::PullRequest, "infra").await;
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    // GitHub never redelivers what did not arrive.
    h.github.set_webhook_url("http://127.0.0.1:9/lost");
    let merge = h
        .github
        .merge_pull(REPO, synced.pull_request_number.unwrap().get(), "octocat")
        .unwrap();
    assert_eq!(poll_now(&h).await, 1);
    let merged = h
        .wait_for("merge found by the poll", || async {
            let p = h.app.store.require_project(p.id).await.unwrap();
            (p.pull_request_number.is_none()
                && p.last_synced_commit_sha.as_deref() == Some(merge.as_str()))
            .then_some(p)
        })
        .await;
    let merged = settled(&h, merged.id, SyncStatus::Success).await;
    assert_eq!(merged.pull_request_url, None);
    assert!(
        event_kinds(&h, p.id)
            .await
            .contains(&"pull_request.merged".to_string())
    );
    assert_eq!(
        h.github.pulls(REPO).len(),
        1,
        "no PR reopened for what landed"
    );
    let a = h.app.store.file(p.id, "a.tf").await.unwrap().unwrap();
    assert_eq!(a.state, FileState::Synced);
    h.stop().await;
}

both_backends!(
    a_merge_whose_webhooks_were_lost_is_found_by_the_poll,
    a_human_edit_of_a_file_graft_proposes_is_a_conflict,
    import_takes_only_what_the_repository_changed,
    a_merge_settles_what_landed_and_keeps_later_changes_pending,
);
