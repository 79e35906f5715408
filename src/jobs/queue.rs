//! The job queue as the rest of graft sees it: storing a job and waking
//! this process's idle workers are one step, so no caller can queue a job
//! that then waits for the next poll.

use std::future::Future;
use std::sync::Arc;

use sqlx::AnyConnection;
use tokio::sync::Notify;

use super::Job;
use super::job::{SyncRequest, merge_requests};
use crate::ids::ProjectId;
use crate::store::jobs::{enqueue_in, merge_into_queued_in};
use crate::store::{Result, Store};

#[derive(Clone, Debug)]
pub struct JobQueue {
    store: Store,
    wake: Arc<Notify>,
}

impl JobQueue {
    pub fn new(store: Store) -> Self {
        JobQueue {
            store,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Stores `job` of `project` (due `now`) and wakes the workers.
    /// `None` when a job with the same dedupe key is already queued (it
    /// covers this one).
    /// A sync is folded into the project's queued sync instead (see
    /// [`Self::enqueue_sync`]), so a flag it carries is never dropped.
    /// Every job queued here is a project's: the project is not optional,
    /// so none can be stored that its worker must refuse for want of one
    /// (a webhook delivery's job is stored with the delivery instead).
    pub async fn enqueue(&self, job: &Job, project: ProjectId, now: i64) -> Result<Option<i64>> {
        if let Job::Sync(request) = job {
            return self.enqueue_sync(project, request, now).await.map(Some);
        }
        let id = self
            .store
            .enqueue(&job.row(Some(project), now), now)
            .await?;
        if id.is_some() {
            self.wake();
        }
        Ok(id)
    }

    /// Queues a sync of `project`, or folds it into the one already queued
    /// (the broader scope, either's `force` and `rebase`). Returns the id
    /// of the queued job.
    pub async fn enqueue_sync(
        &self,
        project: ProjectId,
        request: &SyncRequest,
        now: i64,
    ) -> Result<i64> {
        let mut tx = self.store.begin_write().await?;
        let id = enqueue_sync_in(&mut tx, project, request, now).await?;
        tx.commit().await?;
        self.wake();
        Ok(id)
    }

    /// Runs `op`, a store operation that commits jobs inside a transaction
    /// of its own (a delivery with its job, a comment's commands with
    /// theirs), then wakes the workers when `queued` says it queued one.
    pub async fn submit<T, E>(
        &self,
        op: impl Future<Output = Result<T, E>>,
        queued: impl FnOnce(&T) -> bool,
    ) -> Result<T, E> {
        let done = op.await?;
        if queued(&done) {
            self.wake();
        }
        Ok(done)
    }

    /// Wakes idle workers at once. [`Self::enqueue`] and [`Self::submit`]
    /// do it themselves; this is for jobs made due some other way (rows
    /// changed directly, as tests do). Jobs queued by other replicas are
    /// found by the workers' poll.
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What idle workers wait on (see [`super::spawn_pool`]).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }
}

/// [`JobQueue::enqueue_sync`] inside the caller's transaction, so the
/// change that asks for the sync and the job commit together (the caller
/// wakes the workers after its commit).
pub async fn enqueue_sync_in(
    conn: &mut AnyConnection,
    project: ProjectId,
    request: &SyncRequest,
    now: i64,
) -> Result<i64> {
    let job = Job::Sync(request.clone()).row(Some(project), now);
    let key = job.dedupe_key.clone().unwrap_or_default();
    // The queued twin may start between the insert and the merge; then a
    // fresh job queues behind it on the next round.
    for _ in 0..4 {
        if let Some(id) = enqueue_in(conn, &job, now).await? {
            return Ok(id);
        }
        let merged = merge_into_queued_in(conn, &key, now, |payload| {
            let merged = match serde_json::from_str::<SyncRequest>(payload) {
                Ok(queued) => merge_requests(&queued, request),
                Err(_) => request.clone(),
            };
            serde_json::json!(merged).to_string()
        })
        .await?;
        if let Some(id) = merged {
            return Ok(id);
        }
    }
    Err(crate::store::StoreError::Conflict(format!(
        "could not queue sync job `{key}`: it kept starting meanwhile; try again"
    )))
}
