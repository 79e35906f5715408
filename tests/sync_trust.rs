//! What graft merges and what it overwrites, end to end on the fake
//! forges: auto-merge takes only the commit graft pushed (a human commit
//! landing in between is not merged, and the PR says why), and a sync that
//! replaces a file graft does not manage says so on the PR and in the log.

mod support;

use graft::store::now_ms;
use graft::store::projects::{Kind, Mode, Project, SyncStatus};
use support::TestDb;
use support::fake_common::PushBefore;
use support::harness::Harness;
use support::sync::{input, put, settled};

const REPO: &str = "acme/infra";
const INSTALLATION: i64 = 77;
const PATH: &str = "platform/team/infra";
const EVIL: &[u8] = b"resource \"null_resource\" \"x\" {}\n";

fn human_push(on: &str, repo: &str, branch: &str, path: &str) -> PushBefore {
    PushBefore {
        on: on.into(),
        repo: repo.into(),
        branch: branch.into(),
        path: path.into(),
        content: EVIL.to_vec(),
        user: "mallory".into(),
    }
}

async fn with_auto_merge(
    h: &Harness,
    provider: &str,
    repo: &str,
    mode: Mode,
    base: &str,
) -> Project {
    let p = support::sync::new_project(h, provider, repo, mode, Kind::Iac, base).await;
    h.app
        .store
        .set_auto_merge(p.id, true, now_ms())
        .await
        .unwrap();
    p
}

async fn events(h: &Harness, project: i64) -> Vec<graft::store::audit::AuditEvent> {
    h.app.store.list_events(Some(project), 100).await.unwrap()
}

async fn github_merges_nothing_a_human_pushed_after_graft(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p = with_auto_merge(&h, "github", REPO, Mode::PullRequest, "infra").await;
    // The human commit lands after graft's push and its look at the PR,
    // right before graft asks GitHub to merge (`expectedHeadOid`).
    h.github.push_before(human_push(
        "POST /graphql",
        REPO,
        "graft/infra",
        "infra/evil.tf",
    ));
    put(&h, p.id, &[input("a.tf", "# a\n")]).await;
    let pr = h
        .wait_for("the human commit landed", || async {
            let pr = h.github.pulls(REPO).into_iter().next()?;
            (h.github
                .git
                .file(REPO, "graft/infra", "infra/evil.tf")
                .is_some())
            .then_some(pr)
        })
        .await;
    // The push makes the branch shared (its reconcile), then all settles.
    h.wait_for("branch marked shared", || async {
        let p = h.app.store.require_project(p.id).await.unwrap();
        p.sync_branch_shared.then_some(())
    })
    .await;
    settled(&h, p.id, SyncStatus::Success).await;

    let pull = h.github.pulls(REPO).into_iter().next().unwrap();
    assert!(
        pull.state == "open" && !pull.merged && !pull.auto_merge,
        "{pull:?}"
    );
    let main = h.github.git.head(REPO, "main").unwrap();
    assert_eq!(h.github.git.file(REPO, &main, "infra/evil.tf"), None);
    let sticky = h
        .github
        .comments(REPO, pr.number)
        .into_iter()
        .find(|c| c.body.contains("<!-- graft:status -->"))
        .expect("a status comment");
    assert!(
        sticky.body.contains("graft only merges what it built"),
        "{}",
        sticky.body
    );
    let log = events(&h, p.id).await;
    assert!(
        log.iter()
            .any(|e| e.kind == "auto_merge.withheld" && e.message.contains("someone pushed")),
        "{log:?}"
    );

    // graft's next change goes on top of the human commit: still no
    // auto-merge, and the PR says why. Even an auto-merge left on (turned
    // on by hand, say) goes off before graft's passing check could merge.
    h.github
        .state
        .lock()
        .unwrap()
        .pulls
        .iter_mut()
        .for_each(|pull| pull.auto_merge = true);
    put(&h, p.id, &[input("a.tf", "# a2\n")]).await;
    h.wait_for("graft added on top", || async {
        let content = h.github.git.file(REPO, "graft/infra", "infra/a.tf")?;
        (content == b"# a2\n").then_some(())
    })
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    let pull = h.github.pulls(REPO).into_iter().next().unwrap();
    assert!(!pull.merged && !pull.auto_merge, "{pull:?}");
    let sticky = h
        .github
        .comments(REPO, pr.number)
        .into_iter()
        .find(|c| c.body.contains("<!-- graft:status -->"))
        .unwrap();
    assert!(
        sticky.body.contains("others committed to `graft/infra`"),
        "{}",
        sticky.body
    );
    assert_eq!(h.github.violations(), Vec::<String>::new());
    h.stop().await;
}

async fn gitlab_merges_nothing_a_human_pushed_after_graft(db: TestDb) {
    let h = Harness::start(&db).await;
    let id = h.gitlab_project(PATH);
    let p = with_auto_merge(&h, "gitlab", PATH, Mode::PullRequest, "deploy").await;
    // Right before graft's merge call (`sha` = graft's commit).
    h.gitlab.push_before(human_push(
        "PUT /merge_requests/1/merge",
        PATH,
        "graft/deploy",
        "deploy/evil.yaml",
    ));
    put(&h, p.id, &[input("a.yaml", "a: 1\n")]).await;
    h.wait_for("the human commit landed", || async {
        h.gitlab
            .git
            .file(PATH, "graft/deploy", "deploy/evil.yaml")
            .map(|_| ())
    })
    .await;
    h.wait_for("branch marked shared", || async {
        let p = h.app.store.require_project(p.id).await.unwrap();
        p.sync_branch_shared.then_some(())
    })
    .await;
    settled(&h, p.id, SyncStatus::Success).await;

    let mrs = h.gitlab.merge_requests(id);
    assert_eq!(mrs.len(), 1, "{mrs:?}");
    assert_eq!(mrs[0].iid, 1);
    assert!(
        mrs[0].state == "opened" && !mrs[0].merge_when_pipeline_succeeds,
        "{mrs:?}"
    );
    let main = h.gitlab.git.head(PATH, "main").unwrap();
    assert_eq!(h.gitlab.git.file(PATH, &main, "deploy/evil.yaml"), None);
    let sticky = h
        .gitlab
        .notes(id, 1)
        .into_iter()
        .find(|n| n.body.contains("<!-- graft:status -->"))
        .expect("a status note");
    assert!(
        sticky.body.contains("graft only merges what it built"),
        "{}",
        sticky.body
    );
    assert!(
        events(&h, p.id)
            .await
            .iter()
            .any(|e| e.kind == "auto_merge.withheld"),
    );
    h.stop().await;
}

/// The repository has `infra/generated/main.tf`, written by hand; a
/// project newly takes `main.tf` with other content.
fn hand_written(h: &Harness) {
    h.github.git.commit(
        REPO,
        "main",
        &[(
            "infra/generated/main.tf",
            Some(b"# written by hand\n".as_slice()),
        )],
        "hand-written",
    );
}

async fn a_pr_replacing_an_unmanaged_file_lists_it(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    hand_written(&h);
    let p = support::sync::new_project(
        &h,
        "github",
        REPO,
        Mode::PullRequest,
        Kind::Iac,
        "infra/generated",
    )
    .await;
    put(
        &h,
        p.id,
        &[
            input("main.tf", "# generated\n"),
            input("vars.tf", "variable \"x\" {}\n"),
        ],
    )
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    let pr = h.github.pulls(REPO).into_iter().next().unwrap();
    assert!(
        pr.body
            .contains("`infra/generated/main.tf` (replaces an unmanaged file)"),
        "{}",
        pr.body
    );
    assert!(!pr.body.contains("vars.tf"), "{}", pr.body);
    let sticky = h
        .github
        .comments(REPO, pr.number)
        .into_iter()
        .find(|c| c.body.contains("<!-- graft:status -->"))
        .unwrap();
    assert!(
        sticky
            .body
            .contains("| modified ⚠️ replaces an unmanaged file | `main.tf` |")
            && sticky.body.contains("| added | `vars.tf` |"),
        "{}",
        sticky.body
    );

    // A later sync while the PR is open still lists it; the sticky
    // comment rebuilt from the stored state (`/graft status`) too.
    put(&h, p.id, &[input("vars.tf", "variable \"y\" {}\n")]).await;
    h.wait_for("branch updated", || async {
        let content =
            h.github
                .git
                .file(REPO, "graft/infra-generated", "infra/generated/vars.tf")?;
        (content == b"variable \"y\" {}\n").then_some(())
    })
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    let pr = h.github.pulls(REPO).into_iter().next().unwrap();
    assert!(
        pr.body.contains("replaces an unmanaged file"),
        "{}",
        pr.body
    );
    let stored = h.app.store.require_project(p.id).await.unwrap();
    assert!(
        stored
            .last_changes
            .iter()
            .any(|c| c.path == "main.tf" && c.replaces_unmanaged),
        "{:?}",
        stored.last_changes
    );

    // Once merged, main.tf is graft's: a new change to it replaces nothing.
    h.github.merge_pull(REPO, pr.number, "maintainer").unwrap();
    h.wait_for("merge recorded", || async {
        let p = h.app.store.require_project(p.id).await.unwrap();
        p.pull_request_number.is_none().then_some(())
    })
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    put(&h, p.id, &[input("main.tf", "# generated 2\n")]).await;
    let second = h
        .wait_for("a second PR", || async {
            h.github.pulls(REPO).into_iter().find(|p| p.state == "open")
        })
        .await;
    settled(&h, p.id, SyncStatus::Success).await;
    let second = h
        .github
        .pulls(REPO)
        .into_iter()
        .find(|p| p.number == second.number)
        .unwrap();
    assert!(
        !second.body.contains("replaces an unmanaged file"),
        "{}",
        second.body
    );
    h.stop().await;
}

async fn a_direct_sync_replacing_an_unmanaged_file_audits_it(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    hand_written(&h);
    let p = support::sync::new_project(
        &h,
        "github",
        REPO,
        Mode::Direct,
        Kind::Iac,
        "infra/generated",
    )
    .await;
    put(
        &h,
        p.id,
        &[
            input("main.tf", "# generated\n"),
            input("vars.tf", "variable \"x\" {}\n"),
        ],
    )
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    assert_eq!(
        h.github
            .git
            .file(REPO, "main", "infra/generated/main.tf")
            .unwrap(),
        b"# generated\n"
    );
    let log = events(&h, p.id).await;
    let pushed = log
        .iter()
        .find(|e| e.kind == "sync.pushed")
        .expect("a push event");
    assert!(
        pushed
            .message
            .contains("replaces 1 unmanaged file(s): main.tf"),
        "{}",
        pushed.message
    );
    let details = pushed.details.clone().unwrap_or_default();
    assert_eq!(
        details["replaced_unmanaged"],
        serde_json::json!(["main.tf"]),
        "{details}"
    );
    h.stop().await;
}

both_backends!(
    github_merges_nothing_a_human_pushed_after_graft,
    gitlab_merges_nothing_a_human_pushed_after_graft,
    a_pr_replacing_an_unmanaged_file_lists_it,
    a_direct_sync_replacing_an_unmanaged_file_audits_it,
);
