//! Helpers for sync-engine tests: put files the way the API does, ask for
//! a sync, wait until a project settles.

use graft::ids::ProjectId;
use graft::store::files::FileInput;
use graft::store::now_ms;
use graft::store::projects::{Project, SyncStatus};
use graft::sync::intake::{FileOp, change_files};
use graft::sync::schedule::SyncRequest;

use super::harness::Harness;

pub fn input(path: &str, content: &str) -> FileInput {
    FileInput {
        path: path.into(),
        content: content.as_bytes().to_vec(),
        sync_on_change: None,
        executable: None,
        source: None,
    }
}

/// Puts files the way the API does (same transaction, same scheduling);
/// returns how many paths changed.
pub async fn put(h: &Harness, project: ProjectId, files: &[FileInput]) -> usize {
    let p = h.app.store.require_project(project).await.unwrap();
    let op = FileOp::Put {
        files,
        delete_missing: false,
        source: None,
    };
    let change = change_files(&h.app.store, &p, "test", op);
    let applied = h
        .app
        .jobs()
        .submit(change, |applied| applied.sync_job.is_some())
        .await
        .unwrap();
    applied.changes.len()
}

/// An explicit sync of everything, optionally forced.
pub async fn sync_now(h: &Harness, project: ProjectId, force: bool) {
    let request = SyncRequest {
        force,
        ..SyncRequest::explicit("test")
    };
    h.app
        .jobs()
        .enqueue_sync(project, &request, now_ms())
        .await
        .unwrap();
}

/// Waits until the project is in `status` with no job queued or running.
/// The project is read between two looks at the queue that both find it
/// idle, so it holds every write of the jobs that ran.
pub async fn settled(h: &Harness, project: ProjectId, status: SyncStatus) -> Project {
    let idle = || async {
        !h.app
            .store
            .job_counts()
            .await
            .unwrap()
            .iter()
            .any(|(s, n)| (s == "queued" || s == "running") && *n > 0)
    };
    h.wait_for(&format!("project {project} {status:?}"), || async {
        if !idle().await {
            return None;
        }
        let p = h.app.store.require_project(project).await.unwrap();
        (p.sync_status == status && idle().await).then_some(p)
    })
    .await
}

/// A project on `main` with auto-sync on (the tests' usual shape).
pub async fn new_project(
    h: &Harness,
    provider: &str,
    repo: &str,
    mode: graft::store::projects::Mode,
    kind: graft::store::projects::Kind,
    base_path: &str,
) -> Project {
    h.app
        .store
        .create_project(
            &graft::store::projects::NewProject {
                base_path: base_path.into(),
                kind,
                mode,
                ..project_spec(
                    graft::ids::Provider::parse(provider).expect("github or gitlab"),
                    repo,
                )
            },
            now_ms(),
        )
        .await
        .unwrap()
}

/// A project on `repo`'s `main` with the API's defaults (`iac`, PR mode,
/// auto-sync, base path `infra`); tests change what they need with
/// `..project_spec(..)`.
pub fn project_spec(
    provider: graft::ids::Provider,
    repo: &str,
) -> graft::store::projects::NewProject {
    graft::store::projects::NewProject {
        provider,
        integration_id: None,
        repo: repo.into(),
        branch: "main".into(),
        base_path: "infra".into(),
        kind: graft::store::projects::Kind::Iac,
        mode: graft::store::projects::Mode::PullRequest,
        auto_sync: true,
        auto_merge: false,
        sync_branch: None,
        commit_via: Default::default(),
    }
}

/// An `iac` GitHub project on `repo`.
pub async fn github_project(
    h: &Harness,
    repo: &str,
    mode: graft::store::projects::Mode,
    base_path: &str,
) -> Project {
    let iac = graft::store::projects::Kind::Iac;
    new_project(h, "github", repo, mode, iac, base_path).await
}

/// An `iac` GitLab project on `path`.
pub async fn gitlab_project(
    h: &Harness,
    path: &str,
    mode: graft::store::projects::Mode,
    base_path: &str,
) -> Project {
    let iac = graft::store::projects::Kind::Iac;
    new_project(h, "gitlab", path, mode, iac, base_path).await
}

/// The kinds of the project's audit events, newest first.
pub async fn event_kinds(h: &Harness, project: ProjectId) -> Vec<String> {
    h.app
        .store
        .list_events(Some(project), 200)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// Changes the managed set without scheduling anything: a change that
/// arrives while graft's last push is still in review.
pub async fn put_quietly(h: &Harness, project: ProjectId, files: &[FileInput]) {
    h.app
        .store
        .put_files(project, files, false, now_ms())
        .await
        .unwrap();
}

/// A running job that holds a project: claimed "in the future", so the
/// harness's workers never take it, and the project's other work queues
/// behind it until [`Hold::release`].
pub struct Hold {
    job: i64,
}

pub const HOLDER: &str = "test-holder";

pub async fn hold(h: &Harness, project: ProjectId) -> Hold {
    let later = now_ms() + 3_600_000;
    let new = graft::store::jobs::NewJob {
        project_id: Some(project),
        ..graft::store::jobs::NewJob::new("hold", serde_json::json!({}), later)
    };
    let job = h.app.store.enqueue(&new, later).await.unwrap().unwrap();
    // Start exactly this job (claiming would take any older due job first).
    // While another job of the project still runs, one running job per
    // project refuses it: try again until that job ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let started = sqlx::query(
            "UPDATE jobs SET state = 'running', locked_by = $1, locked_until = $2 \
             WHERE id = $3 AND state = 'queued'",
        )
        .bind(HOLDER)
        .bind(later + 3_600_000)
        .bind(job)
        .execute(h.app.store.pool())
        .await;
        match started {
            Ok(done) if done.rows_affected() == 1 => break,
            Ok(_) => panic!("the hold job {job} is no longer queued"),
            Err(error) => assert!(
                std::time::Instant::now() < deadline,
                "the hold never started: {error}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Hold { job }
}

impl Hold {
    /// Finishes the hold and wakes the workers.
    pub async fn release(self, h: &Harness) {
        assert!(
            h.app
                .store
                .complete_job(self.job, HOLDER, now_ms())
                .await
                .unwrap()
        );
        h.app.jobs().wake();
    }
}

/// The job a project in `error` last failed with.
pub async fn last_failed_job(h: &Harness, failed: &Project) -> graft::store::jobs::JobRecord {
    let id = failed
        .last_failed_job_id
        .expect("the project records its failed job");
    h.app.store.job(id).await.unwrap().unwrap()
}

/// Runs the safety-net poll now, as its timer would: one reconcile job
/// per project. Returns how many were queued.
pub async fn poll_now(h: &Harness) -> usize {
    graft::sync::poll::enqueue_all(h.app.jobs()).await.unwrap()
}
