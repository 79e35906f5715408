//! Following the target branch, on the fake GitHub and the fake GitLab: a
//! push that provably leaves the project's files alone moves the head graft
//! has seen at once (no reconcile job, no fetch); any other push queues a
//! reconcile, which moves it after reading the commits.

mod support;

use graft::store::projects::{Mode, Project, SyncStatus};
use support::TestDb;
use support::commands::{jobs_of_kind, sync_and_reconcile_jobs};
use support::git_host::{GitHost, RefUpdate, git};
use support::harness::Harness;
use support::sync::{github_project, gitlab_project, hold, input, put, settled};

const REPO: &str = "acme/infra";
const INSTALLATION: i64 = 77;
const PATH: &str = "platform/team/infra";

#[derive(Clone, Copy, Debug)]
enum Forge {
    Github,
    Gitlab,
}

impl Forge {
    fn repo(self) -> &'static str {
        match self {
            Forge::Github => REPO,
            Forge::Gitlab => PATH,
        }
    }

    fn git(self, h: &Harness) -> &GitHost {
        match self {
            Forge::Github => &h.github.git,
            Forge::Gitlab => &h.gitlab.git,
        }
    }

    fn head(self, h: &Harness) -> String {
        self.git(h).head(self.repo(), "main").expect("main exists")
    }

    /// A human's push to `main` of one commit, with its webhook.
    fn push(self, h: &Harness, files: &[(&str, Option<&[u8]>)]) -> String {
        match self {
            Forge::Github => h.push_to_github_as_human(REPO, "main", files, "octocat"),
            Forge::Gitlab => h.push_to_gitlab_as_human(PATH, "main", files, "alice"),
        }
    }

    /// The webhook for `main` having moved from `old` to its head.
    fn announce(self, h: &Harness, old: &str) -> String {
        let new = self.head(h);
        let update = [RefUpdate {
            name: "refs/heads/main".into(),
            old: Some(old.to_string()),
            new: Some(new.clone()),
        }];
        match self {
            Forge::Github => h.github.after_push(REPO, &update, "octocat"),
            Forge::Gitlab => h.gitlab.after_push(PATH, &update, "alice"),
        }
        new
    }

    /// `git-upload-pack` requests graft made to the forge's git server.
    fn fetches(self, h: &Harness) -> usize {
        self.git(h)
            .requests()
            .iter()
            .filter(|r| r.contains("git-upload-pack"))
            .count()
    }

    /// A project on `main` below `infra`, synced once (graft has seen the
    /// head of `main`).
    async fn synced_project(self, h: &Harness) -> Project {
        let p = match self {
            Forge::Github => {
                h.github_repo(REPO, INSTALLATION);
                github_project(h, REPO, Mode::PullRequest, "infra").await
            }
            Forge::Gitlab => {
                h.gitlab_project(PATH);
                gitlab_project(h, PATH, Mode::PullRequest, "infra").await
            }
        };
        put(h, p.id, &[input("a.tf", "# a\n")]).await;
        let synced = settled(h, p.id, SyncStatus::Success).await;
        assert_eq!(
            synced.last_synced_commit_sha,
            Some(self.head(h)),
            "{self:?}: the sync recorded the head it built on"
        );
        synced
    }
}

/// The push webhook the fake sent for `main` reaching `head`.
async fn push_hook(h: &Harness, forge: Forge, head: &str) -> serde_json::Value {
    h.wait_for("the push webhook sent", || async {
        let sent = match forge {
            Forge::Github => h.github.hooks.sent(),
            Forge::Gitlab => h.gitlab.hooks.sent(),
        };
        sent.into_iter()
            .map(|s| s.body)
            .find(|body| body["after"] == head && body["ref"] == "refs/heads/main")
    })
    .await
}

/// How many reconcile jobs graft has queued so far (in any state).
async fn reconcile_jobs(h: &Harness) -> i64 {
    jobs_of_kind(h, "reconcile").await
}

/// Waits until graft has seen `head` of `main`, with no job left to run.
async fn sees(h: &Harness, project: graft::ids::ProjectId, head: &str) -> Project {
    h.wait_for(&format!("project {project} at {head}"), || async {
        let p = h.app.store.require_project(project).await.unwrap();
        (p.last_synced_commit_sha.as_deref() == Some(head)).then_some(p)
    })
    .await;
    settled(h, project, SyncStatus::Success).await
}

async fn a_push_elsewhere_is_followed_without_a_job_or_a_fetch(db: TestDb, forge: Forge) {
    let h = Harness::start(&db).await;
    let p = forge.synced_project(&h).await;
    let reconciles = reconcile_jobs(&h).await;
    let fetches = forge.fetches(&h);

    let head = forge.push(&h, &[("README.md", Some(b"# hello\n".as_slice()))]);
    let followed = sees(&h, p.id, &head).await;

    assert!(
        followed.last_pulled_at > p.last_pulled_at,
        "{forge:?}: last_pulled_at moved: {:?} → {:?}",
        p.last_pulled_at,
        followed.last_pulled_at
    );
    assert_eq!(
        reconcile_jobs(&h).await,
        reconciles,
        "{forge:?}: no reconcile"
    );
    assert_eq!(forge.fetches(&h), fetches, "{forge:?}: no fetch");
    // The dashboard shows the head of main as the one graft last saw.
    let token = h.app.create_token("admin").await;
    let cookie = support::ui::login(&h.app, &token).await;
    let (status, html) =
        support::ui::get_page(&h.app, &format!("/projects/{}", p.id), &cookie).await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!("title=\"{head}\"")), "{forge:?}");
    h.stop().await;
}

async fn a_push_below_the_base_path_reconciles(db: TestDb, forge: Forge) {
    let h = Harness::start(&db).await;
    let p = forge.synced_project(&h).await;
    let reconciles = reconcile_jobs(&h).await;
    let fetches = forge.fetches(&h);

    let head = forge.push(
        &h,
        &[
            ("README.md", Some(b"# hello\n".as_slice())),
            ("infra/human.tf", Some(b"# not graft's\n".as_slice())),
        ],
    );
    sees(&h, p.id, &head).await;
    // At least one: the PR rebuilt on the new head may queue another when
    // graft's own push to its branch is heard before the sync records it.
    assert!(reconcile_jobs(&h).await > reconciles, "{forge:?}");
    assert!(
        forge.fetches(&h) > fetches,
        "{forge:?}: the reconcile read the commits"
    );
    h.stop().await;
}

/// A push graft missed (no webhook), then a README push: the later push's
/// `before` is not the head graft saw, so what the missed one changed must
/// be read.
async fn a_push_after_a_missed_one_reconciles(db: TestDb, forge: Forge) {
    let h = Harness::start(&db).await;
    let p = forge.synced_project(&h).await;
    forge.git(&h).commit(
        forge.repo(),
        "main",
        &[("infra/a.tf", Some(b"# edited upstream\n".as_slice()))],
        "missed",
    );
    let reconciles = reconcile_jobs(&h).await;

    let head = forge.push(&h, &[("README.md", Some(b"# hello\n".as_slice()))]);
    // The reconcile found the upstream edit of a file graft's PR changes.
    let conflicted = h
        .wait_for("the missed edit read", || async {
            let p = h.app.store.require_project(p.id).await.unwrap();
            (p.last_synced_commit_sha.as_deref() == Some(head.as_str())).then_some(p)
        })
        .await;
    let conflicted = settled(&h, conflicted.id, SyncStatus::Error).await;
    assert_eq!(
        conflicted.conflicts,
        Some(vec!["a.tf".to_string()]),
        "{forge:?}"
    );
    assert!(reconcile_jobs(&h).await > reconciles, "{forge:?}");
    h.stop().await;
}

/// A rewrite of `main` (GitHub says `forced`) that drops a commit touching
/// the base path lists only the new README commit: not provable.
async fn a_forced_push_reconciles(db: TestDb) {
    let forge = Forge::Github;
    let h = Harness::start(&db).await;
    let p = forge.synced_project(&h).await;
    // graft saw a human add a file below the base path...
    let added = forge.push(&h, &[("infra/human.tf", Some(b"# h\n".as_slice()))]);
    sees(&h, p.id, &added).await;
    // ...which a force push then takes back, with a README change on top.
    let dir = forge.git(&h).repo_dir(REPO);
    git(
        &dir,
        &["update-ref", "refs/heads/main", &format!("{added}~1")],
    );
    forge.git(&h).commit(
        REPO,
        "main",
        &[("README.md", Some(b"# rewritten\n".as_slice()))],
        "rewrite",
    );
    let reconciles = reconcile_jobs(&h).await;
    let head = forge.announce(&h, &added);
    let hook = push_hook(&h, forge, &head).await;
    assert_eq!(hook["forced"], true, "the fake says so truthfully");
    assert_eq!(hook["commits"].as_array().map(Vec::len), Some(1));

    sees(&h, p.id, &head).await;
    assert!(reconcile_jobs(&h).await > reconciles);
    h.stop().await;
}

/// GitLab lists 20 commits at most: a push of 21 README commits is not
/// provably outside the base path.
async fn a_gitlab_push_of_more_than_twenty_commits_reconciles(db: TestDb) {
    let forge = Forge::Gitlab;
    let h = Harness::start(&db).await;
    let p = forge.synced_project(&h).await;
    let old = forge.head(&h);
    for n in 0..21 {
        let text = format!("# {n}\n");
        forge.git(&h).commit(
            PATH,
            "main",
            &[("README.md", Some(text.as_bytes()))],
            &format!("readme {n}"),
        );
    }
    let reconciles = reconcile_jobs(&h).await;
    let head = forge.announce(&h, &old);
    let hook = push_hook(&h, forge, &head).await;
    assert_eq!(hook["total_commits_count"], 21);
    assert_eq!(hook["commits"].as_array().map(Vec::len), Some(20));

    sees(&h, p.id, &head).await;
    assert!(reconcile_jobs(&h).await > reconciles);
    h.stop().await;
}

/// While a job of the project runs, it may have read `main` before the
/// push and would record that older head: the push is left to a reconcile
/// that runs after it.
async fn a_push_while_a_job_runs_reconciles_after_it(db: TestDb, forge: Forge) {
    let h = Harness::start(&db).await;
    let p = forge.synced_project(&h).await;
    let held = hold(&h, p.id).await;
    let reconciles = reconcile_jobs(&h).await;

    let head = forge.push(&h, &[("README.md", Some(b"# hello\n".as_slice()))]);
    h.wait_for("a reconcile queued", || async {
        (reconcile_jobs(&h).await > reconciles).then_some(())
    })
    .await;
    let waiting = h.app.store.require_project(p.id).await.unwrap();
    assert_eq!(
        waiting.last_synced_commit_sha, p.last_synced_commit_sha,
        "{forge:?}: not moved under a running job"
    );
    held.release(&h).await;
    sees(&h, p.id, &head).await;
    h.stop().await;
}

/// Commit mode `api` rewrites graft's branch through a temporary
/// `graft-tmp/<branch>`, and the forge sends a push webhook for it like
/// for any push: a branch that is not the target's (here with a commit
/// below the base path) changes nothing, neither a job nor a fetch nor the
/// head graft has seen.
async fn a_push_to_a_temporary_branch_changes_nothing(db: TestDb, forge: Forge) {
    let h = Harness::start(&db).await;
    let p = forge.synced_project(&h).await;
    h.settle().await;
    let before = h.app.store.require_project(p.id).await.unwrap();
    let jobs = sync_and_reconcile_jobs(&h).await;
    let fetches = forge.fetches(&h);
    let main = forge.head(&h);

    let temp = graft::forge::github::commit::temp_branch(&p.sync_branch);
    let git = forge.git(&h);
    git.create_branch(forge.repo(), &temp, "main");
    let new = git.commit(
        forge.repo(),
        &temp,
        &[("infra/a.tf", Some(b"# rewritten\n".as_slice()))],
        "graft: sync",
    );
    let update = [RefUpdate {
        name: format!("refs/heads/{temp}"),
        old: None,
        new: Some(new.clone()),
    }];
    match forge {
        Forge::Github => h.github.after_push(REPO, &update, "graft[bot]"),
        Forge::Gitlab => h.gitlab.after_push(PATH, &update, "alice"),
    }
    // Answered 202: the delivery and its job are stored; then processed.
    let reference = format!("refs/heads/{temp}");
    h.wait_for("the temporary branch's push accepted", || async {
        let sent = match forge {
            Forge::Github => h.github.hooks.sent(),
            Forge::Gitlab => h.gitlab.hooks.sent(),
        };
        sent.into_iter()
            .find(|s| s.body["ref"] == reference.as_str() && s.status == Some(202))
    })
    .await;
    h.settle().await;

    let after = h.app.store.require_project(p.id).await.unwrap();
    assert_eq!(
        (
            &after.last_synced_commit_sha,
            after.last_pulled_at,
            after.sync_status,
            &after.sync_branch_sha,
        ),
        (
            &before.last_synced_commit_sha,
            before.last_pulled_at,
            before.sync_status,
            &before.sync_branch_sha,
        ),
        "{forge:?}: the push changed the project"
    );
    assert_eq!(after.last_synced_commit_sha.as_deref(), Some(main.as_str()));
    assert_eq!(sync_and_reconcile_jobs(&h).await, jobs, "{forge:?}: no job");
    assert_eq!(forge.fetches(&h), fetches, "{forge:?}: no fetch");
    h.stop().await;
}

macro_rules! on_both_forges {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            use super::*;
            async fn github(db: TestDb) {
                super::$name(db, Forge::Github).await
            }
            async fn gitlab(db: TestDb) {
                super::$name(db, Forge::Gitlab).await
            }
            both_backends!(github, gitlab);
        }
    )+};
}

on_both_forges!(
    a_push_elsewhere_is_followed_without_a_job_or_a_fetch,
    a_push_below_the_base_path_reconciles,
    a_push_after_a_missed_one_reconciles,
    a_push_while_a_job_runs_reconciles_after_it,
    a_push_to_a_temporary_branch_changes_nothing,
);

both_backends!(
    a_forced_push_reconciles,
    a_gitlab_push_of_more_than_twenty_commits_reconciles,
);
