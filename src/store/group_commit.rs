//! Group commit for webhook intake: deliveries that arrive together are
//! stored, with their processing jobs, in one transaction, and each
//! request is answered only once the transaction holding it has committed.
//!
//! No background task: a request that finds a writer's place free (one on
//! SQLite, which has a single writer; a few on PostgreSQL, so one batch
//! fills while another commits) takes it, drains every delivery waiting,
//! and writes them in a spawned task (so the batch completes even if that
//! request goes away); the others wait for their answer or for a place,
//! whichever comes first. The outcome for each delivery is the one storing
//! them one at a time, in arrival order, would give.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, oneshot};

use super::deliveries::{DeliveryStatus, IncomingDelivery, Intake, processing_job};
use super::{Backend, Result, Store, StoreError};

/// Rows per INSERT statement (well under both databases' bind limits).
const ROWS_PER_STATEMENT: usize = 200;

/// A delivery waiting to be written, and who waits for the outcome.
struct Pending {
    delivery: Owned,
    now: i64,
    reply: oneshot::Sender<Result<Intake>>,
}

/// [`IncomingDelivery`] owned, so it can outlive its request.
struct Owned {
    provider: String,
    delivery_id: String,
    event: String,
    action: Option<String>,
    payload: Vec<u8>,
    ignored: Option<String>,
    integration_id: Option<i64>,
}

/// A delivery the batch insert wrote; `job_id` only where the same
/// statement queued its job (PostgreSQL).
#[derive(sqlx::FromRow)]
struct InsertedRow {
    id: i64,
    provider: String,
    delivery_id: String,
    #[sqlx(default)]
    job_id: Option<i64>,
}

impl Owned {
    fn of(d: &IncomingDelivery<'_>) -> Self {
        Owned {
            provider: d.provider.to_string(),
            delivery_id: d.delivery_id.to_string(),
            event: d.event.to_string(),
            action: d.action.map(str::to_string),
            payload: d.payload.to_vec(),
            ignored: d.ignored.map(str::to_string),
            integration_id: d.integration_id,
        }
    }

    fn key(&self) -> (&str, &str) {
        (&self.provider, &self.delivery_id)
    }

    fn status(&self) -> DeliveryStatus {
        if self.ignored.is_some() {
            DeliveryStatus::Ignored
        } else {
            DeliveryStatus::Queued
        }
    }
}

/// Deliveries waiting for the next batch, and the writers' places.
pub(crate) struct IntakeQueue {
    waiting: std::sync::Mutex<Vec<Pending>>,
    writers: Arc<Semaphore>,
    /// Deliveries waiting or being written, and a signal when none are.
    busy: AtomicUsize,
    quiet: Notify,
}

/// Counts one delivery as busy until dropped (answered or abandoned).
struct Busy<'a>(&'a IntakeQueue);

impl<'a> Busy<'a> {
    fn new(queue: &'a IntakeQueue) -> Self {
        queue.busy.fetch_add(1, Ordering::AcqRel);
        Busy(queue)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.quiet.notify_waiters();
        }
    }
}

impl std::fmt::Debug for IntakeQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntakeQueue").finish_non_exhaustive()
    }
}

impl IntakeQueue {
    /// `writers`: how many batches may be written at once.
    pub(super) fn new(writers: usize) -> Self {
        IntakeQueue {
            waiting: Default::default(),
            writers: Arc::new(Semaphore::new(writers.max(1))),
            busy: AtomicUsize::new(0),
            quiet: Notify::new(),
        }
    }

    fn push(&self, pending: Pending) {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(pending);
    }

    fn drain(&self) -> Vec<Pending> {
        std::mem::take(
            &mut *self
                .waiting
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }
}

/// The batch writer went away without an answer (it panicked).
fn unanswered() -> StoreError {
    StoreError::Sql(sqlx::Error::WorkerCrashed)
}

impl Store {
    /// Stores `d` with the deliveries arriving with it; see the module.
    pub(super) async fn record_in_group(
        &self,
        d: &IncomingDelivery<'_>,
        now: i64,
    ) -> Result<Intake> {
        let _busy = Busy::new(&self.intake);
        let (reply, mut answer) = oneshot::channel();
        self.intake.push(Pending {
            delivery: Owned::of(d),
            now,
            reply,
        });
        let place = tokio::select! {
            result = &mut answer => return result.unwrap_or_else(|_| Err(unanswered())),
            place = self.intake.writers.clone().acquire_owned() => match place {
                Ok(place) => place,
                // Never closed; if it were, nothing could be written.
                Err(_) => return Err(unanswered()),
            },
        };
        match answer.try_recv() {
            Ok(result) => return result,
            Err(oneshot::error::TryRecvError::Closed) => return Err(unanswered()),
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let batch = self.intake.drain();
        if batch.is_empty() {
            // This delivery is in a batch another writer is writing.
            drop(place);
        } else {
            let store = self.clone();
            tokio::spawn(async move {
                store.write_and_answer(batch).await;
                drop(place);
            });
        }
        answer.await.unwrap_or_else(|_| Err(unanswered()))
    }

    /// Waits until no delivery is waiting or being stored by this process,
    /// or `at_most`. Workers call it before taking a job, so a burst of
    /// deliveries gets the database first (GitHub waits 10 s for an answer
    /// and does not retry) and its processing follows; `at_most` keeps
    /// them taking jobs, more slowly, through an endless burst.
    pub async fn yield_to_intake(&self, at_most: Duration) {
        let deadline = tokio::time::sleep(at_most);
        tokio::pin!(deadline);
        loop {
            let quiet = self.intake.quiet.notified();
            tokio::pin!(quiet);
            // Registered before the check, so a drop to zero in between
            // is not missed.
            quiet.as_mut().enable();
            if self.intake.busy.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::select! {
                () = &mut quiet => {}
                () = &mut deadline => return,
            }
        }
    }

    async fn write_and_answer(&self, batch: Vec<Pending>) {
        let items: Vec<(&Owned, i64)> = batch.iter().map(|p| (&p.delivery, p.now)).collect();
        let written = self.write_batch(&items).await;
        match written {
            Ok(outcomes) => {
                for (pending, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = pending.reply.send(Ok(outcome));
                }
            }
            Err(error) if batch.len() == 1 => {
                if let Some(pending) = batch.into_iter().next() {
                    let _ = pending.reply.send(Err(error));
                }
            }
            // One delivery that cannot be stored must not fail those that
            // came with it: one transaction each, each with its own answer.
            Err(_) => {
                for pending in batch {
                    let outcome = self
                        .write_batch(&[(&pending.delivery, pending.now)])
                        .await
                        .and_then(|mut outcomes| outcomes.pop().ok_or_else(unanswered));
                    let _ = pending.reply.send(outcome);
                }
            }
        }
    }

    /// Writes `items` in one transaction; one outcome per item, in order.
    async fn write_batch(&self, items: &[(&Owned, i64)]) -> Result<Vec<Intake>> {
        // The first of several deliveries with one id in the batch is
        // written; the others are its duplicates.
        let mut first_of: HashMap<(&str, &str), usize> = HashMap::new();
        let mut twin_of = vec![None; items.len()];
        for (i, (d, _)) in items.iter().enumerate() {
            match first_of.get(&d.key()) {
                Some(&first) => twin_of[i] = Some(first),
                None => {
                    first_of.insert(d.key(), i);
                }
            }
        }
        // Sorted by id, so replicas writing overlapping batches take the
        // unique index's locks in the same order and never deadlock.
        let mut fresh: Vec<usize> = (0..items.len()).filter(|&i| twin_of[i].is_none()).collect();
        fresh.sort_by(|&a, &b| items[a].0.key().cmp(&items[b].0.key()));

        // SQLite: everything in one transaction. PostgreSQL: each chunk is
        // one statement inserting the deliveries and their jobs (atomic on
        // its own, committed as it returns), so a batch of new deliveries
        // costs one round trip; only redeliveries need a transaction.
        let pg = self.backend == Backend::Postgres;
        let mut tx = if pg {
            None
        } else {
            Some(self.begin_write().await?)
        };
        let mut inserted: HashMap<(String, String), i64> = HashMap::new();
        let mut job_ids: HashMap<i64, i64> = HashMap::new();
        let job = processing_job(0, 0);
        for chunk in fresh.chunks(ROWS_PER_STATEMENT) {
            let mut sql = String::from(
                "INSERT INTO webhook_deliveries (provider, delivery_id, event, action, status, \
                 payload, error, received_at, integration_id) VALUES ",
            );
            for (row, _) in chunk.iter().enumerate() {
                let base = row * 9;
                if row > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for column in 1..=9 {
                    if column > 1 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("${}", base + column));
                }
                sql.push(')');
            }
            sql.push_str(" ON CONFLICT (provider, delivery_id) DO NOTHING RETURNING id, provider, delivery_id");
            if pg {
                // The payload is `processing_job`'s, `{"delivery":ID}`.
                let (kind, max_attempts) = (chunk.len() * 9 + 1, chunk.len() * 9 + 2);
                sql = format!(
                    "WITH d AS ({sql}, status, received_at), j AS (INSERT INTO jobs (kind, \
                     project_id, payload, dedupe_key, state, run_at, attempts, max_attempts, \
                     created_at, updated_at) SELECT ${kind}, NULL, \
                     '{{\"delivery\":' || d.id || '}}', NULL, 'queued', d.received_at, 0, \
                     ${max_attempts}, d.received_at, d.received_at FROM d \
                     WHERE d.status = 'queued' RETURNING id, payload) \
                     SELECT d.id, d.provider, d.delivery_id, j.id AS job_id FROM d LEFT JOIN j \
                     ON j.payload = '{{\"delivery\":' || d.id || '}}'"
                );
            }
            // Placeholders only; every value is bound.
            let mut query = sqlx::query_as::<_, InsertedRow>(sqlx::AssertSqlSafe(sql));
            for &i in chunk {
                let (d, now) = items[i];
                query = query
                    .bind(d.provider.as_str())
                    .bind(d.delivery_id.as_str())
                    .bind(d.event.as_str())
                    .bind(d.action.as_deref())
                    .bind(d.status().as_str())
                    .bind(d.payload.as_slice())
                    .bind(d.ignored.as_deref())
                    .bind(now)
                    .bind(d.integration_id);
            }
            let rows = match &mut tx {
                Some(tx) => query.fetch_all(&mut **tx).await?,
                None => {
                    query
                        .bind(job.kind.as_str())
                        .bind(job.max_attempts)
                        .fetch_all(&self.writer)
                        .await?
                }
            };
            for row in rows {
                inserted.insert((row.provider, row.delivery_id), row.id);
                if let Some(job_id) = row.job_id {
                    job_ids.insert(row.id, job_id);
                }
            }
        }
        let conflicts = fresh.iter().any(|&i| {
            let (d, _) = items[i];
            !inserted.contains_key(&(d.provider.clone(), d.delivery_id.clone()))
        });
        if tx.is_none() && conflicts {
            tx = Some(self.begin_write().await?);
        }

        // What became of each written delivery, before its job.
        enum Fate {
            New(i64),
            Reopened(i64),
            Seen(i64, DeliveryStatus),
        }
        let mut fate: HashMap<usize, Fate> = HashMap::new();
        for &i in &fresh {
            let (d, _) = items[i];
            let key = (d.provider.clone(), d.delivery_id.clone());
            if let Some(&id) = inserted.get(&key) {
                fate.insert(i, Fate::New(id));
                continue;
            }
            let Some(tx) = tx.as_mut() else {
                // Unreachable: a conflict opened the transaction.
                return Err(unanswered());
            };
            let (id, previous): (i64, String) = sqlx::query_as(
                "SELECT id, status FROM webhook_deliveries WHERE provider = $1 AND delivery_id = $2",
            )
            .bind(d.provider.as_str())
            .bind(d.delivery_id.as_str())
            .fetch_one(&mut **tx)
            .await?;
            let previous = DeliveryStatus::parse(&previous);
            // Only one of several concurrent redeliveries wins this update.
            let reopened = previous == DeliveryStatus::Failed
                && sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'queued', error = NULL \
                     WHERE id = $1 AND status = 'failed'",
                )
                .bind(id)
                .execute(&mut **tx)
                .await?
                .rows_affected()
                    == 1;
            fate.insert(
                i,
                if reopened {
                    Fate::Reopened(id)
                } else {
                    Fate::Seen(id, previous)
                },
            );
        }

        // Processing jobs for new queued deliveries and reopened ones.
        let needs_job: Vec<(i64, i64)> = fresh
            .iter()
            .filter_map(|&i| match fate.get(&i) {
                // PostgreSQL inserted these with their deliveries.
                Some(Fate::New(id)) if !pg && items[i].0.status() == DeliveryStatus::Queued => {
                    Some((*id, items[i].1))
                }
                Some(Fate::Reopened(id)) => Some((*id, items[i].1)),
                _ => None,
            })
            .collect();
        if let Some(mut tx) = tx {
            job_ids.extend(self.enqueue_processing(&mut tx, &needs_job).await?);
            tx.commit().await?;
        }

        let outcome_of = |i: usize| -> Intake {
            match fate.get(&i) {
                Some(Fate::New(id)) => Intake::Accepted {
                    id: *id,
                    job_id: job_ids.get(id).copied(),
                },
                Some(Fate::Reopened(id)) => Intake::Requeued {
                    id: *id,
                    job_id: job_ids.get(id).copied(),
                },
                Some(Fate::Seen(id, status)) => Intake::Duplicate {
                    id: *id,
                    status: *status,
                },
                // Unreachable: every written delivery has a fate.
                None => Intake::Duplicate {
                    id: 0,
                    status: DeliveryStatus::Queued,
                },
            }
        };
        Ok((0..items.len())
            .map(|i| match twin_of[i] {
                None => outcome_of(i),
                // As if stored right after its first: that one's row, now
                // queued (or ignored) whatever it was before.
                Some(first) => match outcome_of(first) {
                    Intake::Accepted { id, .. } => Intake::Duplicate {
                        id,
                        status: items[first].0.status(),
                    },
                    Intake::Requeued { id, .. } => Intake::Duplicate {
                        id,
                        status: DeliveryStatus::Queued,
                    },
                    seen @ Intake::Duplicate { .. } => seen,
                },
            })
            .collect())
    }

    /// Inserts one processing job per `(delivery id, now)`; the job id of
    /// each delivery.
    async fn enqueue_processing(
        &self,
        tx: &mut sqlx::AnyConnection,
        deliveries: &[(i64, i64)],
    ) -> Result<HashMap<i64, i64>> {
        let mut job_ids = HashMap::new();
        for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
            let mut sql = String::from(
                "INSERT INTO jobs (kind, project_id, payload, dedupe_key, state, run_at, \
                 attempts, max_attempts, created_at, updated_at) VALUES ",
            );
            let mut by_payload = HashMap::new();
            let mut jobs = Vec::with_capacity(chunk.len());
            for (row, &(delivery, now)) in chunk.iter().enumerate() {
                let b = row * 6;
                if row > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, 'queued', ${}, 0, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 5,
                    b + 5
                ));
                let job = processing_job(delivery, now);
                let payload = job.payload.to_string();
                by_payload.insert(payload.clone(), delivery);
                jobs.push((job, payload));
            }
            sql.push_str(" ON CONFLICT DO NOTHING RETURNING id, payload");
            // Placeholders only; every value is bound.
            let mut query = sqlx::query_as::<_, (i64, String)>(sqlx::AssertSqlSafe(sql));
            for (job, payload) in &jobs {
                query = query
                    .bind(job.kind.as_str())
                    .bind(job.project_id)
                    .bind(payload.as_str())
                    .bind(job.dedupe_key.as_deref())
                    .bind(job.run_at)
                    .bind(job.max_attempts);
            }
            for (job_id, payload) in query.fetch_all(&mut *tx).await? {
                if let Some(&delivery) = by_payload.get(&payload) {
                    job_ids.insert(delivery, job_id);
                }
            }
        }
        Ok(job_ids)
    }
}
