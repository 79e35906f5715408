//! The durable job queue: leases, crash recovery, one running job per
//! project, coalescing, retries with backoff, graceful shutdown.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use graft::ids::ProjectId;
use graft::jobs::job::{Scope, SyncRequest};
use graft::jobs::{Job, JobError, JobHandler, JobQueue, PoolConfig, spawn_pool};
use graft::metrics::Metrics;
use graft::store::Store;
use graft::store::jobs::{JobRow, NewJob};
use serde_json::json;
use support::{TestDb, eventually, fast_pool};
use tokio::sync::{Mutex, Notify, watch};

/// A job of `kind` for project number `project`, if any.
fn job(kind: &str, project: Option<i64>, now: i64) -> NewJob {
    NewJob {
        project_id: project.map(ProjectId),
        ..NewJob::new(kind, json!({}), now)
    }
}

async fn an_expired_lease_makes_the_job_claimable_exactly_once(db: TestDb) {
    let store = db.store().await;
    let id = store
        .enqueue(&job("k", Some(1), 1_000), 1_000)
        .await
        .unwrap()
        .unwrap();
    let first = store
        .claim_job("dead-worker", 1_000, 500)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.id, first.attempts), (id, 1));
    // Still leased: nobody else may take it.
    assert_eq!(store.claim_job("other", 1_400, 500).await.unwrap(), None);
    // The holder died; after the lease it is claimable again, once.
    let second = store.claim_job("other", 1_501, 500).await.unwrap().unwrap();
    assert_eq!((second.id, second.attempts), (id, 2));
    assert_eq!(store.claim_job("third", 1_502, 500).await.unwrap(), None);
    assert!(store.complete_job(id, "other", 1_600).await.unwrap());
    // The dead worker's late outcome is refused; the job stays done.
    assert!(!store.complete_job(id, "dead-worker", 1_700).await.unwrap());
    assert!(
        !store
            .fail_job(id, "dead-worker", 1_700, "late")
            .await
            .unwrap()
    );
    assert_eq!(store.job(id).await.unwrap().unwrap().state, "done");
    assert_eq!(store.claim_job("x", 99_999, 500).await.unwrap(), None);
}

/// A counting handler: how often each job ran.
#[derive(Default)]
struct Counting {
    runs: Mutex<HashMap<i64, usize>>,
    gave_up: Mutex<Vec<(i64, String)>>,
    fail_times: usize,
    started: Notify,
    hold: Option<Duration>,
    running: AtomicUsize,
    /// Runs that got to the end of their work (not dropped half-way).
    finished: AtomicUsize,
    /// Handler runs in flight per project, and the most ever seen at once.
    in_flight: std::sync::Mutex<HashMap<ProjectId, usize>>,
    max_in_flight_per_project: AtomicUsize,
}

/// Counts a run in flight until it ends or is dropped.
struct InFlight<'a>(&'a Counting, Option<ProjectId>);

impl<'a> InFlight<'a> {
    fn enter(counting: &'a Counting, project: Option<ProjectId>) -> Self {
        counting.running.fetch_add(1, Ordering::SeqCst);
        if let Some(project) = project {
            let mut map = counting.in_flight.lock().unwrap();
            let n = map.entry(project).or_default();
            *n += 1;
            counting
                .max_in_flight_per_project
                .fetch_max(*n, Ordering::SeqCst);
        }
        InFlight(counting, project)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        if let Some(project) = self.1 {
            *self.0.in_flight.lock().unwrap().entry(project).or_default() -= 1;
        }
    }
}

impl JobHandler for Counting {
    async fn run(&self, job: &JobRow) -> Result<(), JobError> {
        let count = {
            let mut runs = self.runs.lock().await;
            let entry = runs.entry(job.id).or_default();
            *entry += 1;
            *entry
        };
        let in_flight = InFlight::enter(self, job.project_id);
        self.started.notify_waiters();
        if let Some(hold) = self.hold {
            tokio::time::sleep(hold).await;
        }
        self.finished.fetch_add(1, Ordering::SeqCst);
        drop(in_flight);
        if count <= self.fail_times {
            return Err(JobError::retry(format!("transient failure {count}")));
        }
        Ok(())
    }

    async fn gave_up(&self, job: &JobRow, error: &str) {
        self.gave_up.lock().await.push((job.id, error.to_string()));
    }
}

struct Pool {
    stop: watch::Sender<bool>,
    set: tokio::task::JoinSet<()>,
}

fn start(store: &Store, handler: Arc<Counting>, config: PoolConfig) -> Pool {
    let (stop, rx) = watch::channel(false);
    let set = spawn_pool(
        store.clone(),
        handler,
        Arc::new(Metrics::new()),
        Arc::new(Notify::new()),
        config,
        rx,
    );
    Pool { stop, set }
}

impl Pool {
    async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.set.join_next().await.is_some() {}
    }
}

async fn a_crashed_workers_job_runs_again_exactly_once(db: TestDb) {
    let store = db.store().await;
    let now = graft::store::now_ms();
    let id = store
        .enqueue(&job("k", Some(7), now - 20_000), now - 20_000)
        .await
        .unwrap()
        .unwrap();
    // A worker claimed it and died: its lease ran out a moment ago.
    let crashed = store
        .claim_job("crashed", now - 10_000, 1_000)
        .await
        .unwrap();
    assert!(crashed.is_some());
    let handler = Arc::new(Counting::default());
    let pool = start(&store, handler.clone(), fast_pool());
    eventually("job done", Duration::from_secs(10), || async {
        (store.job(id).await.unwrap().unwrap().state == "done").then_some(())
    })
    .await;
    pool.stop().await;
    assert_eq!(handler.runs.lock().await.get(&id), Some(&1));
    assert_eq!(store.job(id).await.unwrap().unwrap().attempts, 2);
}

async fn one_running_job_per_project(db: TestDb) {
    let store = db.store().await;
    let a1 = store
        .enqueue(&job("a1", Some(1), 10), 10)
        .await
        .unwrap()
        .unwrap();
    let a2 = store
        .enqueue(&job("a2", Some(1), 11), 11)
        .await
        .unwrap()
        .unwrap();
    let b1 = store
        .enqueue(&job("b1", Some(2), 12), 12)
        .await
        .unwrap()
        .unwrap();
    let free = store
        .enqueue(&job("free", None, 13), 13)
        .await
        .unwrap()
        .unwrap();
    let got: Vec<i64> = [
        store.claim_job("w1", 100, 1_000).await.unwrap(),
        store.claim_job("w2", 100, 1_000).await.unwrap(),
        store.claim_job("w3", 100, 1_000).await.unwrap(),
        store.claim_job("w4", 100, 1_000).await.unwrap(),
    ]
    .into_iter()
    .flatten()
    .map(|j| j.id)
    .collect();
    assert_eq!(got, vec![a1, b1, free], "a2 waits while a1 runs");
    assert!(store.complete_job(a1, "w1", 200).await.unwrap());
    assert_eq!(
        store
            .claim_job("w1", 201, 1_000)
            .await
            .unwrap()
            .map(|j| j.id),
        Some(a2)
    );
}

async fn concurrent_claimers_never_run_two_jobs_of_one_project(db: TestDb) {
    let store = db.store().await;
    let now = graft::store::now_ms();
    for i in 0..24 {
        store
            .enqueue(&job("k", Some(i % 4), now), now)
            .await
            .unwrap();
    }
    let handler = Arc::new(Counting {
        hold: Some(Duration::from_millis(15)),
        ..Counting::default()
    });
    // Two pools stand for two replicas sharing the database.
    let config = PoolConfig {
        workers: 4,
        ..fast_pool()
    };
    let pools = [
        start(&store, handler.clone(), config.clone()),
        start(&store, handler.clone(), config),
    ];
    eventually("all jobs done", Duration::from_secs(30), || {
        let store = store.clone();
        async move {
            let counts = store.job_counts().await.unwrap();
            (counts == vec![("done".to_string(), 24)]).then_some(())
        }
    })
    .await;
    for pool in pools {
        pool.stop().await;
    }
    // Measured where the work runs, not in the table the index guards.
    assert_eq!(
        handler.max_in_flight_per_project.load(Ordering::SeqCst),
        1,
        "at most one run per project at a time, across both pools"
    );
    let runs = handler.runs.lock().await;
    assert_eq!(runs.len(), 24);
    assert!(runs.values().all(|n| *n == 1), "{runs:?}");
}

async fn a_lost_lease_stops_the_job(db: TestDb) {
    let store = db.store().await;
    let id = store
        .enqueue(&job("k", Some(1), 0), 0)
        .await
        .unwrap()
        .unwrap();
    let handler = Arc::new(Counting {
        hold: Some(Duration::from_secs(20)),
        ..Counting::default()
    });
    let pool = start(
        &store,
        handler.clone(),
        PoolConfig {
            workers: 1,
            lease: Duration::from_millis(600),
            ..fast_pool()
        },
    );
    eventually("the job runs", Duration::from_secs(10), || {
        let running = handler.running.load(Ordering::SeqCst);
        async move { (running == 1).then_some(()) }
    })
    .await;
    // Another replica took the job over (say this one stalled past its
    // lease): the first run must stop rather than run beside it.
    sqlx::query("UPDATE jobs SET locked_by = 'other-replica', locked_until = $1 WHERE id = $2")
        .bind(i64::MAX / 2)
        .bind(id)
        .execute(store.pool())
        .await
        .unwrap();
    eventually("the run is dropped", Duration::from_secs(10), || {
        let running = handler.running.load(Ordering::SeqCst);
        async move { (running == 0).then_some(()) }
    })
    .await;
    pool.stop().await;
    assert_eq!(handler.finished.load(Ordering::SeqCst), 0);
    assert!(handler.gave_up.lock().await.is_empty());
    let row = store.job(id).await.unwrap().unwrap();
    assert_eq!(row.state, "running", "the new holder's job is left alone");
}

async fn identical_queued_work_coalesces(db: TestDb) {
    let store = db.store().await;
    let keyed = |now| NewJob {
        dedupe_key: Some("sync:project:1".into()),
        ..job("sync", Some(1), now)
    };
    let first = store.enqueue(&keyed(1), 1).await.unwrap();
    assert!(first.is_some());
    assert_eq!(store.enqueue(&keyed(2), 2).await.unwrap(), None);
    // Once the first runs, new work queues again behind it.
    store.claim_job("w", 10, 1_000).await.unwrap().unwrap();
    let second = store.enqueue(&keyed(11), 11).await.unwrap();
    assert!(second.is_some() && second != first);
    // Requeueing the running one would duplicate the queued one: it is
    // closed as superseded instead.
    assert!(
        store
            .requeue_job(
                first.unwrap(),
                "w",
                12,
                12,
                Some("retry"),
                true,
                |queued, this| { Some(format!("[{queued},{this}]")) }
            )
            .await
            .unwrap()
    );
    let record = store.job(first.unwrap()).await.unwrap().unwrap();
    assert_eq!(record.state, "done");
    assert!(record.last_error.unwrap().contains("superseded"));
    // What the superseded job carried is folded into the queued one.
    let (payload,): (String,) = sqlx::query_as("SELECT payload FROM jobs WHERE id = $1")
        .bind(second.unwrap())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(payload, "[{},{}]");
}

/// A sync queued through `JobQueue::enqueue` folds into the project's
/// queued sync like one from `JobQueue::enqueue_sync`: a `--force` or a
/// rebase asked for by either survives.
async fn a_sync_through_the_queue_keeps_the_queued_flags(db: TestDb) {
    let store = db.store().await;
    let queue = JobQueue::new(store.clone());
    let request = |force, rebase, actor: &str| SyncRequest {
        force,
        rebase,
        ..SyncRequest::automatic(Scope::Flagged, actor)
    };
    let queued = |id| {
        let store = store.clone();
        async move {
            let (kind, payload) = store.job_kind_and_payload(id).await.unwrap().unwrap();
            match Job::decode(&kind, &payload).unwrap() {
                Job::Sync(request) => request,
                other => panic!("not a sync: {other:?}"),
            }
        }
    };

    let forced = queue
        .enqueue_sync(ProjectId(1), &request(true, false, "a"), 1)
        .await
        .unwrap();
    let plain = queue
        .enqueue(&Job::Sync(request(false, true, "b")), ProjectId(1), 2)
        .await
        .unwrap();
    assert_eq!(plain, Some(forced), "folded into the queued sync");
    let merged = queued(forced).await;
    assert!(merged.force && merged.rebase, "{merged:?}");
    assert_eq!(merged.actor, "b");

    // The other way round: a plain sync queued first takes the flags of a
    // forced one queued through the queue.
    let other = queue
        .enqueue(&Job::Sync(request(false, false, "c")), ProjectId(2), 3)
        .await
        .unwrap()
        .unwrap();
    let again = queue
        .enqueue(&Job::Sync(request(true, false, "d")), ProjectId(2), 4)
        .await
        .unwrap();
    assert_eq!(again, Some(other));
    assert!(queued(other).await.force);
}

async fn failures_retry_with_backoff_then_give_up(db: TestDb) {
    let store = db.store().await;
    let now = graft::store::now_ms();
    let retried = store
        .enqueue(
            &NewJob {
                max_attempts: 5,
                ..job("flaky", Some(1), now)
            },
            now,
        )
        .await
        .unwrap()
        .unwrap();
    let handler = Arc::new(Counting {
        fail_times: 2,
        ..Counting::default()
    });
    // The doomed job fails as often as it may: 3 attempts, 3 failures.
    let doomed_handler = Arc::new(Counting {
        fail_times: 3,
        ..Counting::default()
    });
    let pool = start(&store, handler.clone(), fast_pool());
    eventually("flaky job done", Duration::from_secs(10), || async {
        (store.job(retried).await.unwrap().unwrap().state == "done").then_some(())
    })
    .await;
    pool.stop().await;
    let record = store.job(retried).await.unwrap().unwrap();
    assert_eq!(record.attempts, 3, "two failures, then success");
    assert_eq!(record.last_error.as_deref(), Some("transient failure 2"));

    let doomed = store
        .enqueue(
            &NewJob {
                max_attempts: 3,
                ..job("doomed", Some(3), now)
            },
            now,
        )
        .await
        .unwrap()
        .unwrap();
    let pool = start(&store, doomed_handler.clone(), fast_pool());
    eventually("doomed job failed", Duration::from_secs(10), || async {
        (store.job(doomed).await.unwrap().unwrap().state == "failed").then_some(())
    })
    .await;
    pool.stop().await;
    assert_eq!(doomed_handler.runs.lock().await.get(&doomed), Some(&3));
    let gave_up = doomed_handler.gave_up.lock().await.clone();
    assert_eq!(gave_up, vec![(doomed, "transient failure 3".to_string())]);
}

async fn retry_waits_at_least_the_backoff(db: TestDb) {
    let store = db.store().await;
    let now = graft::store::now_ms();
    let id = store
        .enqueue(&job("k", None, now), now)
        .await
        .unwrap()
        .unwrap();
    let handler = Arc::new(Counting {
        fail_times: 1,
        ..Counting::default()
    });
    let config = PoolConfig {
        backoff: graft::jobs::Backoff {
            base: Duration::from_secs(3600),
            max: Duration::from_secs(7200),
        },
        ..fast_pool()
    };
    let pool = start(&store, handler.clone(), config);
    let record = eventually("job requeued", Duration::from_secs(10), || async {
        let r = store.job(id).await.unwrap().unwrap();
        (r.state == "queued" && r.attempts == 1).then_some(r)
    })
    .await;
    pool.stop().await;
    let delay = record.run_at - now;
    assert!(
        (1_800_000..=3_700_000).contains(&delay),
        "delay {delay} ms is outside [base/2, base]"
    );
}

async fn shutdown_puts_unfinished_jobs_back(db: TestDb) {
    let store = db.store().await;
    let now = graft::store::now_ms();
    let id = store
        .enqueue(&job("long", Some(1), now), now)
        .await
        .unwrap()
        .unwrap();
    let handler = Arc::new(Counting {
        hold: Some(Duration::from_secs(600)),
        ..Counting::default()
    });
    let config = PoolConfig {
        workers: 1,
        shutdown_grace: Duration::from_millis(100),
        ..fast_pool()
    };
    let pool = start(&store, handler.clone(), config);
    eventually("job started", Duration::from_secs(10), || async {
        (handler.running.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    tokio::time::timeout(Duration::from_secs(10), pool.stop())
        .await
        .expect("pool stops within the grace period");
    let record = store.job(id).await.unwrap().unwrap();
    assert_eq!(record.state, "queued", "released for another process");
    assert_eq!(record.attempts, 0, "an interrupted attempt does not count");
    assert!(
        store
            .claim_job("next", graft::store::now_ms(), 1_000)
            .await
            .unwrap()
            .is_some()
    );
}

async fn shutdown_lets_a_running_job_finish_within_the_grace(db: TestDb) {
    let store = db.store().await;
    let now = graft::store::now_ms();
    let id = store
        .enqueue(&job("short", Some(1), now), now)
        .await
        .unwrap()
        .unwrap();
    let handler = Arc::new(Counting {
        hold: Some(Duration::from_millis(400)),
        ..Counting::default()
    });
    let config = PoolConfig {
        workers: 1,
        shutdown_grace: Duration::from_secs(10),
        ..fast_pool()
    };
    let pool = start(&store, handler.clone(), config);
    eventually("job started", Duration::from_secs(10), || async {
        (handler.running.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    pool.stop().await;
    assert_eq!(handler.finished.load(Ordering::SeqCst), 1);
    assert_eq!(store.job(id).await.unwrap().unwrap().state, "done");
}

async fn retention_forgets_what_is_finished_and_old(db: TestDb) {
    let store = db.store().await;
    let day = 86_400_000;
    let now = graft::store::now_ms();
    let old = now - 31 * day;
    // Finished long ago: done and failed. Still queued: kept however old.
    let done = store
        .enqueue(&job("a", None, old), old)
        .await
        .unwrap()
        .unwrap();
    store.claim_job("w", old, 1_000).await.unwrap();
    assert!(store.complete_job(done, "w", old).await.unwrap());
    let queued = store
        .enqueue(&job("b", None, old), old)
        .await
        .unwrap()
        .unwrap();
    let recent = store
        .enqueue(&job("c", None, now), now)
        .await
        .unwrap()
        .unwrap();
    let delivery = |id: &'static str, at: i64| {
        let store = store.clone();
        async move {
            store
                .record_delivery(
                    &graft::store::deliveries::IncomingDelivery {
                        provider: "github",
                        delivery_id: id,
                        event: "ping",
                        action: None,
                        payload: b"{}",
                        ignored: Some("test"),
                        integration_id: None,
                    },
                    at,
                )
                .await
                .unwrap();
        }
    };
    delivery("old-ignored", old).await;
    delivery("new-ignored", now).await;
    let (jobs, deliveries) = graft::retention::prune(&store, 30).await.unwrap();
    assert_eq!((jobs, deliveries), (1, 1));
    assert!(store.job(done).await.unwrap().is_none());
    assert!(
        store.job(queued).await.unwrap().is_some(),
        "queued work is never pruned"
    );
    assert!(store.job(recent).await.unwrap().is_some());
    assert_eq!(store.delivery_count().await.unwrap(), 1);
    // 0 keeps everything.
    assert_eq!(graft::retention::prune(&store, 0).await.unwrap(), (0, 0));
}

both_backends!(
    retention_forgets_what_is_finished_and_old,
    a_lost_lease_stops_the_job,
    shutdown_lets_a_running_job_finish_within_the_grace,
    an_expired_lease_makes_the_job_claimable_exactly_once,
    a_crashed_workers_job_runs_again_exactly_once,
    one_running_job_per_project,
    concurrent_claimers_never_run_two_jobs_of_one_project,
    identical_queued_work_coalesces,
    a_sync_through_the_queue_keeps_the_queued_flags,
    failures_retry_with_backoff_then_give_up,
    retry_waits_at_least_the_backoff,
    shutdown_puts_unfinished_jobs_back,
);
