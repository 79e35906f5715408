//! The worker pool that runs jobs from the durable queue (see
//! `store::jobs`). Each worker claims a job with a lease, renews the lease
//! while the job runs, and records the outcome. On shutdown workers stop
//! claiming, give running jobs a grace period, and put back what did not
//! finish so another process picks it up. A handler that panics fails its job
//! with the panic's message; the worker goes on to the next job.

pub mod backoff;
pub mod job;
pub mod queue;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};

pub use backoff::Backoff;
pub use job::Job;
pub use queue::JobQueue;

use crate::metrics::Metrics;
use crate::store::jobs::JobRow;
use crate::store::{Store, now_ms};

/// How a job ended when it did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (network, rate limit, 5xx, lock contention).
    #[error("{message}")]
    Retry {
        message: String,
        /// Wait at least this long (e.g. a forge's `Retry-After`).
        after: Option<Duration>,
    },
    /// Retrying cannot help (bad payload, permission lost, …).
    #[error("{0}")]
    Fatal(String),
}

impl JobError {
    pub fn retry(message: impl Into<String>) -> Self {
        JobError::Retry {
            message: message.into(),
            after: None,
        }
    }
}

/// What the pool runs. `gave_up` is told when a job fails for good, so the
/// owner of the work (a delivery, a project) can record the failure.
pub trait JobHandler: Send + Sync + 'static {
    fn run(&self, job: &JobRow) -> impl Future<Output = Result<(), JobError>> + Send;

    fn gave_up(&self, job: &JobRow, error: &str) -> impl Future<Output = ()> + Send {
        let _ = (job, error);
        async {}
    }

    /// When a job of `kind` waiting for a retry meets an identical queued
    /// one, the payload the queued one should carry to cover both; `None`
    /// keeps the queued payload as it is.
    fn merge_payloads(&self, kind: &str, queued: &str, superseded: &str) -> Option<String> {
        let _ = (kind, queued, superseded);
        None
    }
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub workers: usize,
    pub lease: Duration,
    /// How often an idle worker looks for due jobs (enqueues in this process
    /// wake workers at once; this catches other replicas' and delayed jobs).
    pub poll_interval: Duration,
    pub shutdown_grace: Duration,
    pub backoff: Backoff,
    /// Unique per process, so leases say who holds them.
    pub worker_prefix: String,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: 4,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(20),
            backoff: Backoff::default(),
            worker_prefix: default_worker_prefix(),
        }
    }
}

pub fn default_worker_prefix() -> String {
    let host = std::env::var("HOSTNAME")
        .or_else(|_| std::env::var("FLY_MACHINE_ID"))
        .unwrap_or_else(|_| "graft".into());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// The longest a worker waits for webhook intake to pause before taking
/// its next job anyway.
const INTAKE_FIRST: Duration = Duration::from_millis(50);

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Starts the workers; they stop after `shutdown` turns true, once running
/// jobs finished or were put back. Await the returned set to wait for that.
pub fn spawn_pool<H: JobHandler>(
    store: Store,
    handler: Arc<H>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    config: PoolConfig,
    shutdown: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for index in 0..config.workers.max(1) {
        let worker = Worker {
            id: format!("{}-w{index}", config.worker_prefix),
            store: store.clone(),
            handler: handler.clone(),
            metrics: metrics.clone(),
            wake: wake.clone(),
            config: config.clone(),
            shutdown: shutdown.clone(),
        };
        set.spawn(worker.run());
    }
    set
}

struct Worker<H> {
    id: String,
    store: Store,
    handler: Arc<H>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    config: PoolConfig,
    shutdown: watch::Receiver<bool>,
}

impl<H: JobHandler> Worker<H> {
    /// Shutdown was asked for, or whoever could ask is gone.
    fn stopping(&self) -> bool {
        *self.shutdown.borrow() || self.shutdown.has_changed().is_err()
    }

    async fn run(mut self) {
        while !self.stopping() {
            // Deliveries being stored go first (see `yield_to_intake`).
            self.store.yield_to_intake(INTAKE_FIRST).await;
            let claimed = self
                .store
                .claim_job(&self.id, now_ms(), millis(self.config.lease))
                .await;
            match claimed {
                Ok(Some(job)) => self.execute(job).await,
                Ok(None) => self.idle().await,
                Err(e) => {
                    error!(worker = %self.id, error = %e, "could not claim a job");
                    self.idle().await;
                }
            }
        }
    }

    async fn idle(&mut self) {
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = tokio::time::sleep(self.config.poll_interval) => {}
            _ = self.shutdown.changed() => {}
        }
    }

    async fn execute(&mut self, job: JobRow) {
        let span = info_span!("job", job_id = job.id, kind = %job.kind, project_id = job.project_id.map(crate::ids::ProjectId::get), attempt = job.attempts);
        async {
            if job.attempts > job.max_attempts {
                // Its earlier holders died mid-run too often: stop trying.
                let message = format!(
                    "gave up after {} attempts (the last lease expired without an outcome)",
                    job.max_attempts
                );
                self.give_up(&job, &message).await;
                return;
            }
            let started = Instant::now();
            let outcome = self.run_with_lease(&job).await;
            let seconds = started.elapsed().as_secs_f64();
            let now = now_ms();
            let label = match &outcome {
                Outcome::Released => "released",
                Outcome::LeaseLost => "lease_lost",
                Outcome::Done(Ok(())) => "success",
                Outcome::Done(Err(JobError::Retry { .. })) if job.attempts < job.max_attempts => "retry",
                Outcome::Done(Err(_)) => "failed",
            };
            self.metrics.job_finished(&job.kind, label, seconds);
            let recorded = match outcome {
                Outcome::LeaseLost => {
                    // Another worker holds the job now; its outcome is theirs.
                    warn!("lease lost while running; the job was stopped and left to its new holder");
                    return;
                }
                Outcome::Released => {
                    info!("shutting down: job put back in the queue");
                    self.store
                        .requeue_job(job.id, &self.id, now, now, None, false, |queued, this| {
                            self.handler.merge_payloads(&job.kind, queued, this)
                        })
                        .await
                }
                Outcome::Done(Ok(())) => self.store.complete_job(job.id, &self.id, now).await,
                Outcome::Done(Err(JobError::Retry { message, after })) if job.attempts < job.max_attempts => {
                    let delay = self
                        .config
                        .backoff
                        .delay(job.attempts, rand::random::<f64>())
                        .max(after.unwrap_or_default());
                    warn!(error = %message, retry_in_ms = millis(delay), "job failed, will retry");
                    self.store
                        .requeue_job(job.id, &self.id, now, now + millis(delay), Some(&message), true, |queued, this| {
                            self.handler.merge_payloads(&job.kind, queued, this)
                        })
                        .await
                }
                Outcome::Done(Err(e)) => {
                    self.give_up(&job, &e.to_string()).await;
                    return;
                }
            };
            match recorded {
                Ok(true) => {}
                Ok(false) => warn!("lease was lost before the outcome was recorded; another worker owns the job"),
                Err(e) => error!(error = %e, "could not record the job outcome; its lease will expire and it will run again"),
            }
        }
        .instrument(span)
        .await
    }

    /// The handler's bookkeeping (the project's error, the delivery's
    /// state, the PR comment: forge calls that may wait) runs under the
    /// lease like the job did, and lands while the job still shows as
    /// running, so whoever waits for the job to end sees it.
    async fn give_up(&mut self, job: &JobRow, message: &str) {
        error!(error = %message, "job failed for good");
        let handler = self.handler.clone();
        let bookkeeping = async {
            if let Err(panic) = caught(handler.gave_up(job, message)).await {
                error!(panic = %panic, "recording the failure panicked");
            }
        };
        let recorded = self.with_lease(job, bookkeeping, false).await;
        if !matches!(recorded, Outcome::Done(())) {
            warn!("lease was lost before the failure was recorded");
            return;
        }
        match self
            .store
            .fail_job(job.id, &self.id, now_ms(), message)
            .await
        {
            Ok(true) => {}
            Ok(false) => warn!("lease was lost before the failure was recorded"),
            Err(e) => error!(error = %e, "could not record the job failure"),
        }
    }

    /// Runs the handler while renewing the lease (see [`Self::with_lease`]).
    /// A panic fails the job for good (the same input would panic again),
    /// with the panic's message; the worker goes on.
    async fn run_with_lease(&mut self, job: &JobRow) -> Outcome<Result<(), JobError>> {
        let handler = self.handler.clone();
        let run = async {
            caught(handler.run(job))
                .await
                .unwrap_or_else(|panic| Err(JobError::Fatal(format!("the job panicked: {panic}"))))
        };
        self.with_lease(job, run, true).await
    }

    /// Runs `work` while renewing `job`'s lease. The work is dropped (at
    /// its next await point) when the lease was lost, or could not be
    /// renewed before it would lapse: another worker may have claimed the
    /// job, and one project's jobs must never run twice at once. With
    /// `release_on_shutdown`, also when shutdown came and its grace period
    /// ran out.
    async fn with_lease<T>(
        &mut self,
        job: &JobRow,
        work: impl Future<Output = T>,
        release_on_shutdown: bool,
    ) -> Outcome<T> {
        let renew_every = self.config.lease / 3;
        tokio::pin!(work);
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
        let mut grace_deadline: Option<tokio::time::Instant> = None;
        // Until when the lease surely holds, as far as this worker knows;
        // a renewal due after that would be too late.
        let mut held_until = tokio::time::Instant::now() + self.config.lease;
        loop {
            let grace = async {
                match grace_deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                result = &mut work => return Outcome::Done(result),
                _ = renew.tick() => {
                    let asked = tokio::time::Instant::now();
                    let until = now_ms() + millis(self.config.lease);
                    match self.store.renew_lease(job.id, &self.id, until).await {
                        Ok(true) => held_until = asked + self.config.lease,
                        Ok(false) => return Outcome::LeaseLost,
                        Err(e) => {
                            warn!(error = %e, "could not renew the lease");
                            if tokio::time::Instant::now() + renew_every >= held_until {
                                return Outcome::LeaseLost;
                            }
                        }
                    }
                }
                changed = self.shutdown.changed(), if release_on_shutdown && grace_deadline.is_none() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        grace_deadline = Some(tokio::time::Instant::now() + self.config.shutdown_grace);
                    }
                }
                _ = grace => return Outcome::Released,
            }
        }
    }
}

/// Runs `work`, turning a panic in any of its polls into `Err` with the
/// panic's message. The work is dropped after a panic and never polled
/// again (hence the `AssertUnwindSafe`): what it shared with other jobs is
/// exposed as it would be to other tasks after a panic in a spawned task.
async fn caught<T>(work: impl Future<Output = T>) -> Result<T, String> {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    })
    .await
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// How a run under a lease ended.
enum Outcome<T> {
    Done(T),
    /// Shutdown's grace period ran out; the job goes back to the queue.
    Released,
    /// The lease was lost (or could not be renewed in time).
    LeaseLost,
}
