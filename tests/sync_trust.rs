//! What graft merges and what it overwrites, end to end on the fake
//! forges: auto-merge takes only the commit graft pushed (a human commit
//! landing in between is not merged, and the PR says why), and a sync that
//! replaces a file graft does not manage says so on the PR and in the log.

mod support;

use graft::forge::AutoMerge;
use graft::store::now_ms;
use graft::store::projects::{Kind, Mode, Project, SyncStatus};
use support::TestDb;
use support::fake_common::PushBefore;
use support::fake_github::CheckRun;
use support::fake_gitlab::CommitStatus;
use support::git_host::RefUpdate;
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

async fn events(
    h: &Harness,
    project: graft::ids::ProjectId,
) -> Vec<graft::store::audit::AuditEvent> {
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

/// A writer's commit on `branch` that names graft as its author and its
/// committer (name and email copied from graft's own commits), pushed
/// straight into the bare repository `bare`: no webhook. Returns the
/// branch's (old head, new head).
fn commit_as_graft(
    h: &Harness,
    bare: &std::path::Path,
    branch: &str,
    files: &[(&str, &[u8])],
) -> (String, String) {
    let identity = h.app.state.context.git.identity.clone();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .current_dir(w)
            .args(args)
            .env("GIT_AUTHOR_NAME", &identity.name)
            .env("GIT_AUTHOR_EMAIL", &identity.email)
            .env("GIT_COMMITTER_NAME", &identity.name)
            .env("GIT_COMMITTER_EMAIL", &identity.email)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", w)
            .env("FAKE_BYPASS_PROTECTION", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let bare = bare.to_str().unwrap();
    git(&["init", "--quiet", "--initial-branch", branch]);
    git(&["fetch", "--quiet", bare, branch]);
    git(&["checkout", "--quiet", "-B", branch, "FETCH_HEAD"]);
    let old = git(&["rev-parse", "HEAD"]);
    for (path, content) in files {
        let file = w.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }
    git(&["add", "-A"]);
    git(&["commit", "--quiet", "-m", "sync: update generated files"]);
    git(&[
        "push",
        "--quiet",
        bare,
        &format!("HEAD:refs/heads/{branch}"),
    ]);
    let new = git(&["rev-parse", "HEAD"]);
    let log = git(&["log", "-1", "--format=%an <%ae> / %cn <%ce>"]);
    assert_eq!(
        log,
        format!("{0} <{1}> / {0} <{1}>", identity.name, identity.email)
    );
    (old, new)
}

fn ref_update(branch: &str, (old, new): &(String, String)) -> RefUpdate {
    RefUpdate {
        name: format!("refs/heads/{branch}"),
        old: Some(old.clone()),
        new: Some(new.clone()),
    }
}

/// GitHub's side of auto-merge once the required checks pass on `sha`:
/// every open PR on it with auto-merge on is merged.
fn github_checks_pass(h: &Harness, sha: &str) {
    let ready: Vec<i64> = h
        .github
        .pulls(REPO)
        .into_iter()
        .filter(|p| p.state == "open" && p.auto_merge && p.head_sha == sha)
        .map(|p| p.number)
        .collect();
    for number in ready {
        h.github.merge_pull(REPO, number, "github").unwrap();
    }
}

async fn github_sticky(h: &Harness, number: i64) -> String {
    h.github
        .comments(REPO, number)
        .into_iter()
        .find(|c| c.body.contains("<!-- graft:status -->"))
        .expect("a status comment")
        .body
}

/// graft's PR with auto-merge turned on by graft (`/graft automerge on`)
/// while a CI check is still running on graft's commit. Returns the PR
/// number and graft's commit.
async fn github_pr_set_to_merge(h: &Harness, project: graft::ids::ProjectId) -> (i64, String) {
    put(h, project, &[input("a.tf", "# a\n")]).await;
    let synced = settled(h, project, SyncStatus::Success).await;
    let number = synced.pull_request_number.expect("a PR");
    let ours = synced.sync_branch_sha.clone().expect("graft's push");
    h.github.state.lock().unwrap().check_runs.push(CheckRun {
        id: 9_000_001,
        repo: REPO.into(),
        head_sha: ours.clone(),
        name: "ci".into(),
        status: "in_progress".into(),
        conclusion: None,
        title: None,
        summary: None,
    });
    h.github.set_role(REPO, "writer", "write");
    h.comment_on_github(REPO, number.get(), "writer", "/graft automerge on");
    h.wait_for("graft turned auto-merge on", || async {
        let pull = h.github.pulls(REPO).into_iter().next()?;
        (pull.auto_merge && !pull.merged).then_some(())
    })
    .await;
    settled(h, project, SyncStatus::Success).await;
    (number.get(), ours)
}

/// The attack: auto-merge is on; a writer pushes a commit that names graft
/// as author and committer. Its webhook's reconcile turns auto-merge off
/// (GitHub keeps it through a push) and the PR says why; when CI passes
/// nothing merges; graft's next sync adds on top of the writer's commit
/// instead of force-pushing over it, and leaves auto-merge off.
async fn github_a_writer_posing_as_graft_gets_nothing_merged(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p =
        support::sync::new_project(&h, "github", REPO, Mode::PullRequest, Kind::Iac, "infra").await;
    let (number, ours) = github_pr_set_to_merge(&h, p.id).await;

    let pushed = commit_as_graft(
        &h,
        &h.github.git.repo_dir(REPO),
        "graft/infra",
        &[
            ("infra/evil.tf", EVIL),
            ("infra/a.tf", b"# a by the writer\n"),
        ],
    );
    assert_eq!(pushed.0, ours);
    let theirs = pushed.1.clone();
    h.github
        .after_push(REPO, &[ref_update("graft/infra", &pushed)], "mallory");
    h.wait_for("the reconcile saw the branch shared", || async {
        let p = h.app.store.require_project(p.id).await.unwrap();
        p.sync_branch_shared.then_some(())
    })
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    let pull = h.github.pulls(REPO).into_iter().next().unwrap();
    assert!(!pull.auto_merge && !pull.merged, "{pull:?}");
    let sticky = github_sticky(&h, number).await;
    assert!(
        sticky.contains("others committed to `graft/infra`")
            && sticky.contains("graft only merges what it built"),
        "{sticky}"
    );
    let log = events(&h, p.id).await;
    assert!(
        log.iter()
            .any(|e| e.kind == "auto_merge.withheld"
                && e.commit_sha.as_deref() == Some(theirs.as_str())),
        "{log:?}"
    );
    // The writer's edit of a managed file is graft's content now.
    let a = h.app.store.files(p.id).await.unwrap();
    let a = a.iter().find(|f| f.path == "a.tf").unwrap();
    assert_eq!(a.content, b"# a by the writer\n");

    github_checks_pass(&h, &theirs);
    let pull = h.github.pulls(REPO).into_iter().next().unwrap();
    assert!(pull.state == "open" && !pull.merged, "{pull:?}");
    let main = h.github.git.head(REPO, "main").unwrap();
    assert_eq!(h.github.git.file(REPO, &main, "infra/evil.tf"), None);

    // graft's next change goes on top of the writer's commit; its own
    // passing check merges nothing.
    put(&h, p.id, &[input("b.tf", "# b\n")]).await;
    let after = settled(&h, p.id, SyncStatus::Success).await;
    let branch = h.github.git.log(REPO, "graft/infra");
    assert_eq!(branch[1].0, theirs, "{branch:?}");
    assert_eq!(after.sync_branch_sha.as_deref(), Some(branch[0].0.as_str()));
    assert_eq!(
        h.github
            .git
            .file(REPO, "graft/infra", "infra/a.tf")
            .unwrap(),
        b"# a by the writer\n"
    );
    let pull = h.github.pulls(REPO).into_iter().next().unwrap();
    assert!(!pull.auto_merge && !pull.merged, "{pull:?}");
    github_checks_pass(&h, &branch[0].0);
    assert!(!h.github.pulls(REPO)[0].merged);
    assert_eq!(h.github.violations(), Vec::<String>::new());
    h.stop().await;
}

/// The same commit, with no webhook about it (missed, or still queued)
/// when graft's next sync runs: the sync itself finds a head graft did not
/// push, adds on top of it and turns auto-merge off before its check passes.
async fn github_a_sync_builds_on_a_writer_commit_posing_as_graft(db: TestDb) {
    let h = Harness::start(&db).await;
    h.github_repo(REPO, INSTALLATION);
    let p =
        support::sync::new_project(&h, "github", REPO, Mode::PullRequest, Kind::Iac, "infra").await;
    let (number, _) = github_pr_set_to_merge(&h, p.id).await;
    let (_, theirs) = commit_as_graft(
        &h,
        &h.github.git.repo_dir(REPO),
        "graft/infra",
        &[("infra/evil.tf", EVIL)],
    );
    put(&h, p.id, &[input("b.tf", "# b\n")]).await;
    let after = settled(&h, p.id, SyncStatus::Success).await;
    assert!(after.sync_branch_shared);
    let branch = h.github.git.log(REPO, "graft/infra");
    assert_eq!(branch[1].0, theirs, "{branch:?}");
    let pull = h.github.pulls(REPO).into_iter().next().unwrap();
    assert!(!pull.auto_merge && !pull.merged, "{pull:?}");
    let main = h.github.git.head(REPO, "main").unwrap();
    assert_eq!(h.github.git.file(REPO, &main, "infra/evil.tf"), None);
    let sticky = github_sticky(&h, number).await;
    assert!(
        sticky.contains("others committed to `graft/infra`"),
        "{sticky}"
    );
    assert!(
        events(&h, p.id)
            .await
            .iter()
            .any(|e| e.kind == "auto_merge.withheld")
    );
    h.stop().await;
}

/// GitLab: merge when the pipeline succeeds, set by graft, then a writer's
/// commit naming graft. GitLab itself cancels on a push; graft says why,
/// adds on top, and does not set it again.
async fn gitlab_a_writer_posing_as_graft_gets_nothing_merged(db: TestDb) {
    let h = Harness::start(&db).await;
    let id = h.gitlab_project(PATH);
    let p = support::sync::new_project(&h, "gitlab", PATH, Mode::PullRequest, Kind::Iac, "deploy")
        .await;
    put(&h, p.id, &[input("a.yaml", "a: 1\n")]).await;
    let synced = settled(&h, p.id, SyncStatus::Success).await;
    let iid = synced.pull_request_number.expect("an MR");
    let ours = synced.sync_branch_sha.clone().expect("graft's push");
    h.gitlab.state.lock().unwrap().statuses.push(CommitStatus {
        project_id: id,
        sha: ours.clone(),
        name: "ci".into(),
        state: "running".into(),
        description: None,
    });
    // What `/graft automerge on` does.
    h.app
        .store
        .set_auto_merge(p.id, true, now_ms())
        .await
        .unwrap();
    let client = graft::sync::publish::client_for(&h.app.state.context, &synced)
        .await
        .unwrap();
    assert_eq!(
        client.enable_auto_merge(iid, &ours).await.unwrap(),
        AutoMerge::Enabled
    );
    assert!(h.gitlab.merge_requests(id)[0].merge_when_pipeline_succeeds);

    let pushed = commit_as_graft(
        &h,
        &h.gitlab.git.repo_dir(PATH),
        "graft/deploy",
        &[("deploy/evil.yaml", EVIL)],
    );
    let theirs = pushed.1.clone();
    h.gitlab
        .after_push(PATH, &[ref_update("graft/deploy", &pushed)], "mallory");
    h.wait_for("the reconcile saw the branch shared", || async {
        let p = h.app.store.require_project(p.id).await.unwrap();
        p.sync_branch_shared.then_some(())
    })
    .await;
    settled(&h, p.id, SyncStatus::Success).await;
    let sticky = h
        .gitlab
        .notes(id, iid.get())
        .into_iter()
        .find(|n| n.body.contains("<!-- graft:status -->"))
        .expect("a status note");
    assert!(
        sticky.body.contains("others committed to `graft/deploy`"),
        "{}",
        sticky.body
    );
    assert!(events(&h, p.id).await.iter().any(
        |e| e.kind == "auto_merge.withheld" && e.commit_sha.as_deref() == Some(theirs.as_str())
    ));

    put(&h, p.id, &[input("b.yaml", "b: 1\n")]).await;
    settled(&h, p.id, SyncStatus::Success).await;
    let branch = h.gitlab.git.log(PATH, "graft/deploy");
    assert_eq!(branch[1].0, theirs, "{branch:?}");
    let mr = h.gitlab.merge_requests(id).into_iter().next().unwrap();
    assert!(
        mr.state == "opened" && !mr.merge_when_pipeline_succeeds,
        "{mr:?}"
    );
    let main = h.gitlab.git.head(PATH, "main").unwrap();
    assert_eq!(h.gitlab.git.file(PATH, &main, "deploy/evil.yaml"), None);
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
    github_a_writer_posing_as_graft_gets_nothing_merged,
    github_a_sync_builds_on_a_writer_commit_posing_as_graft,
    gitlab_a_writer_posing_as_graft_gets_nothing_merged,
);
