//! A job whose handler panics fails with the panic's message, the owner of
//! the work records it, and the worker that ran it goes on to the next job.
//! A project's job whose payload does not decode is recorded the same way.

mod support;

use std::sync::Arc;
use std::time::Duration;

use graft::jobs::{JobError, JobHandler, PoolConfig, spawn_pool};
use graft::metrics::Metrics;
use graft::store::Store;
use graft::store::jobs::{JobRecord, JobRow, NewJob};
use graft::store::now_ms;
use graft::sync::schedule::{SYNC_JOB, SyncRequest};
use graft::worker::GraftJobs;
use serde_json::json;
use support::{TestApp, TestDb, default_settings, eventually, fast_pool};
use tokio::sync::{Mutex, Notify, watch};

/// Panics in `run` for jobs of kind `boom`, and also in `gave_up` for
/// `boom-twice`; everything else succeeds.
#[derive(Default)]
struct Panicky {
    gave_up: Mutex<Vec<(i64, String)>>,
    ran: Mutex<Vec<i64>>,
}

impl JobHandler for Panicky {
    async fn run(&self, job: &JobRow) -> Result<(), JobError> {
        tokio::task::yield_now().await;
        if job.kind.starts_with("boom") {
            panic!("kaboom in job {}", job.id);
        }
        self.ran.lock().await.push(job.id);
        Ok(())
    }

    async fn gave_up(&self, job: &JobRow, error: &str) {
        self.gave_up.lock().await.push((job.id, error.to_string()));
        if job.kind == "boom-twice" {
            panic!("bookkeeping panicked too");
        }
    }
}

/// One worker, so the job after a panic runs on the worker that panicked.
fn one_worker() -> PoolConfig {
    PoolConfig {
        workers: 1,
        ..fast_pool()
    }
}

fn start<H: JobHandler>(
    store: &Store,
    handler: Arc<H>,
) -> (watch::Sender<bool>, tokio::task::JoinSet<()>) {
    let (stop, rx) = watch::channel(false);
    let set = spawn_pool(
        store.clone(),
        handler,
        Arc::new(Metrics::new()),
        Arc::new(Notify::new()),
        one_worker(),
        rx,
    );
    (stop, set)
}

async fn stop(stop: watch::Sender<bool>, mut set: tokio::task::JoinSet<()>) {
    let _ = stop.send(true);
    while let Some(joined) = set.join_next().await {
        assert!(joined.is_ok(), "a worker task ended abnormally: {joined:?}");
    }
}

async fn enqueue(
    store: &Store,
    kind: &str,
    project: Option<graft::ids::ProjectId>,
    at: i64,
) -> i64 {
    let job = NewJob {
        project_id: project,
        ..NewJob::new(kind, json!({}), at)
    };
    store.enqueue(&job, at).await.unwrap().unwrap()
}

async fn finished(store: &Store, id: i64) -> JobRecord {
    eventually(
        &format!("job {id} finished"),
        Duration::from_secs(10),
        || async {
            let job = store.job(id).await.unwrap().unwrap();
            matches!(job.state.as_str(), "done" | "failed").then_some(job)
        },
    )
    .await
}

async fn a_panicking_job_fails_and_the_worker_goes_on(db: TestDb) {
    let store = db.store().await;
    let now = now_ms();
    let boom = enqueue(&store, "boom", None, now - 3).await;
    let twice = enqueue(&store, "boom-twice", None, now - 2).await;
    let ok = enqueue(&store, "ok", None, now - 1).await;
    let handler = Arc::new(Panicky::default());
    let (tx, set) = start(&store, handler.clone());

    let boom_job = finished(&store, boom).await;
    assert_eq!(boom_job.state, "failed");
    let message = boom_job.last_error.unwrap();
    assert!(
        message.contains("panicked") && message.contains(&format!("kaboom in job {boom}")),
        "{message}"
    );
    assert_eq!(boom_job.attempts, 1, "a panic is not retried");

    // The failure recorder panicking too still leaves the job failed.
    let twice_job = finished(&store, twice).await;
    assert_eq!(twice_job.state, "failed");
    assert!(
        twice_job
            .last_error
            .unwrap()
            .contains(&format!("kaboom in job {twice}"))
    );

    // The same (only) worker then runs the next job.
    assert_eq!(finished(&store, ok).await.state, "done");
    assert_eq!(*handler.ran.lock().await, vec![ok]);
    let gave_up = handler.gave_up.lock().await.clone();
    assert_eq!(gave_up.len(), 2, "{gave_up:?}");
    assert_eq!(gave_up[0].0, boom);
    assert!(gave_up[0].1.contains("kaboom"), "{gave_up:?}");
    stop(tx, set).await;
}

/// graft's own handler, except that a sync's run panics: the project's
/// failure bookkeeping is graft's.
struct PanickingSync(GraftJobs);

impl JobHandler for PanickingSync {
    async fn run(&self, job: &JobRow) -> Result<(), JobError> {
        if job.kind == SYNC_JOB {
            panic!("index out of bounds while building the overlay");
        }
        Ok(())
    }

    async fn gave_up(&self, job: &JobRow, error: &str) {
        self.0.gave_up(job, error).await;
    }
}

async fn a_project(store: &Store) -> graft::ids::ProjectId {
    store
        .create_project(
            &support::sync::project_spec(graft::ids::Provider::Github, "acme/infra"),
            now_ms(),
        )
        .await
        .unwrap()
        .id
}

async fn a_panicking_sync_is_recorded_on_the_project(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let store = app.store.clone();
    let project = store
        .require_project(a_project(&store).await)
        .await
        .unwrap();
    app.jobs()
        .enqueue_sync(project.id, &SyncRequest::explicit("test"), now_ms() - 10)
        .await
        .unwrap();
    let after = enqueue(&store, "ping", Some(project.id), now_ms()).await;
    let handler = Arc::new(PanickingSync(GraftJobs::new(app.state.context.clone())));
    let (tx, set) = start(&store, handler);

    assert_eq!(
        finished(&store, after).await.state,
        "done",
        "the worker went on"
    );
    let failed = store.require_project(project.id).await.unwrap();
    let error = failed
        .sync_error
        .clone()
        .expect("the sync error is recorded");
    assert!(
        error.contains("the job panicked: index out of bounds"),
        "{error}"
    );
    let job = store
        .job(failed.last_failed_job_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, "failed");
    assert!(job.last_error.unwrap().contains("index out of bounds"));
    let events = store.list_events(Some(project.id), 50).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "sync.failed" && e.message.contains("panicked")),
        "{events:?}"
    );
    stop(tx, set).await;
    app.stop().await;
}

/// A sync row whose payload no longer decodes (a bad write, a downgrade)
/// fails at once; the project still shows the failure, by the row's kind.
async fn an_undecodable_project_job_is_recorded_on_the_project(db: TestDb) {
    let app = TestApp::start(&db, default_settings(), None).await;
    let store = app.store.clone();
    let project = a_project(&store).await;
    let job = NewJob {
        project_id: Some(project),
        ..NewJob::new(SYNC_JOB, json!({ "scope": 42 }), now_ms() - 10)
    };
    let id = store.enqueue(&job, now_ms()).await.unwrap().unwrap();
    let handler = Arc::new(GraftJobs::new(app.state.context.clone()));
    let (tx, set) = start(&store, handler);

    let record = finished(&store, id).await;
    assert_eq!(record.state, "failed");
    assert_eq!(
        record.attempts, 1,
        "a payload that does not decode is not retried"
    );
    let failed = store.require_project(project).await.unwrap();
    let error = failed.sync_error.expect("the failure is recorded");
    assert!(error.contains("does not decode"), "{error}");
    assert_eq!(failed.last_failed_job_id, Some(id));
    let events = store.list_events(Some(project), 50).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "sync.failed"), "{events:?}");
    stop(tx, set).await;
    app.stop().await;
}

both_backends!(
    a_panicking_job_fails_and_the_worker_goes_on,
    a_panicking_sync_is_recorded_on_the_project,
    an_undecodable_project_job_is_recorded_on_the_project,
);
