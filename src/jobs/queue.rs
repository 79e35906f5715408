//! The job queue as the rest of graft sees it: storing a job and waking
//! this process's idle workers are one step, so no caller can queue a job
//! that then waits for the next poll.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Notify;

use super::Job;
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

    /// Stores `job` (for `project`, due `now`) and wakes the workers.
    /// `None` when a job with the same dedupe key is already queued (it
    /// covers this one).
    pub async fn enqueue(&self, job: &Job, project: Option<i64>, now: i64) -> Result<Option<i64>> {
        let id = self.store.enqueue(&job.row(project, now), now).await?;
        if id.is_some() {
            self.wake();
        }
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
