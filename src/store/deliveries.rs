//! Webhook deliveries: stored before they are acknowledged, deduplicated on
//! the forge's delivery id, and processed by a job enqueued in the same
//! transaction, so a delivery is never acknowledged and then lost.

use crate::ids::ProjectId;

use super::jobs::{NewJob, kind};
use super::{Result, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Queued,
    Processed,
    Failed,
    Ignored,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Processed => "processed",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Ignored => "ignored",
        }
    }

    pub(super) fn parse(text: &str) -> Self {
        match text {
            "processed" => DeliveryStatus::Processed,
            "failed" => DeliveryStatus::Failed,
            "ignored" => DeliveryStatus::Ignored,
            _ => DeliveryStatus::Queued,
        }
    }
}

/// The status column as stored (read by `FromRow`).
impl From<String> for DeliveryStatus {
    fn from(text: String) -> Self {
        DeliveryStatus::parse(&text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingDelivery<'a> {
    pub provider: &'a str,
    pub delivery_id: &'a str,
    pub event: &'a str,
    pub action: Option<&'a str>,
    pub payload: &'a [u8],
    /// Well-formed but of no interest: stored for the record, no job.
    pub ignored: Option<&'a str>,
    /// The GitLab integration the delivery authenticated as (its secret).
    pub integration_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    /// First time seen; a processing job was queued unless it is ignored.
    Accepted { id: i64, job_id: Option<i64> },
    /// Seen before and its processing had failed: queued again.
    Requeued { id: i64, job_id: Option<i64> },
    /// Seen before and queued, processed or ignored: nothing to do.
    Duplicate { id: i64, status: DeliveryStatus },
}

impl Intake {
    /// The processing job this intake queued, if any.
    pub fn queued_job(&self) -> Option<i64> {
        match self {
            Intake::Accepted { job_id, .. } | Intake::Requeued { job_id, .. } => *job_id,
            Intake::Duplicate { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Delivery {
    pub id: i64,
    pub provider: String,
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: DeliveryStatus,
    pub payload: Option<Vec<u8>>,
    pub error: Option<String>,
    pub attempts: i64,
    pub integration_id: Option<i64>,
}

/// The job that processes delivery `id`: `crate::jobs::Job::Webhook`'s
/// row (tested there), written here because the store queues it in the
/// delivery's own transaction.
pub fn processing_job(id: i64, now: i64) -> NewJob {
    NewJob::new(kind::WEBHOOK, serde_json::json!({ "delivery": id }), now)
}

impl Store {
    /// Stores a delivery and its processing job, deduplicated on the
    /// forge's id: new → `Accepted`, seen and failed → `Requeued`, seen
    /// otherwise → `Duplicate`. Concurrent calls share transactions (see
    /// `group_commit`); each returns once its own has committed.
    pub async fn record_delivery(&self, d: &IncomingDelivery<'_>, now: i64) -> Result<Intake> {
        self.record_in_group(d, now).await
    }

    pub async fn delivery(&self, id: i64) -> Result<Option<Delivery>> {
        let delivery = sqlx::query_as(
            "SELECT id, provider, delivery_id, event, action, status, payload, error, attempts, \
             integration_id FROM webhook_deliveries WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(delivery)
    }

    /// Forgets deliveries received before `before` that are no longer
    /// queued (processed, ignored or failed). Returns how many.
    pub async fn prune_deliveries(&self, before: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE status <> 'queued' AND received_at < $1",
        )
        .bind(before)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn delivery_count(&self) -> Result<i64> {
        let value: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries")
            .fetch_one(&self.pool)
            .await?;
        Ok(value)
    }

    /// Records the outcome of one processing attempt.
    pub async fn finish_delivery(
        &self,
        id: i64,
        status: DeliveryStatus,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, error = $2, attempts = attempts + 1, \
             processed_at = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

/// A GitLab project's webhook as graft last read it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WebhookHealth {
    /// `ok`, `temporarily_disabled`, `disabled` or `missing`.
    pub state: String,
    pub disabled_until: Option<i64>,
    pub checked_at: i64,
}

impl Store {
    /// Whether graft stored delivery `delivery_id` of `provider`, and
    /// whether it asked the forge to redeliver it.
    pub async fn delivery_known(&self, provider: &str, delivery_id: &str) -> Result<(bool, bool)> {
        let (received, asked): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM webhook_deliveries WHERE provider = $1 AND delivery_id = $2), \
             (SELECT COUNT(*) FROM redelivery_requests WHERE provider = $1 AND delivery_id = $2)",
        )
        .bind(provider)
        .bind(delivery_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((received > 0, asked > 0))
    }

    /// Records that graft asks for a redelivery; `false` when it (or
    /// another replica) already did, and then it must not ask again.
    pub async fn claim_redelivery(
        &self,
        provider: &str,
        delivery_id: &str,
        now: i64,
    ) -> Result<bool> {
        let row = sqlx::query(
            "INSERT INTO redelivery_requests (provider, delivery_id, requested_at) \
             VALUES ($1, $2, $3) ON CONFLICT (provider, delivery_id) DO NOTHING RETURNING requested_at",
        )
        .bind(provider)
        .bind(delivery_id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Forgets a claim whose request did not reach the forge, so the next
    /// pass asks again.
    pub async fn release_redelivery(&self, provider: &str, delivery_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM redelivery_requests WHERE provider = $1 AND delivery_id = $2")
            .bind(provider)
            .bind(delivery_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets redelivery requests made before `before` (the forge no
    /// longer lists those deliveries).
    pub async fn prune_redelivery_requests(&self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM redelivery_requests WHERE requested_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn recovery_mark(&self, name: &str) -> Result<Option<i64>> {
        let mark = sqlx::query_scalar("SELECT mark FROM recovery_marks WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(mark)
    }

    /// Moves mark `name` forward to `mark` (never back).
    pub async fn advance_recovery_mark(&self, name: &str, mark: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO recovery_marks (name, mark) VALUES ($1, $2) ON CONFLICT (name) \
             DO UPDATE SET mark = excluded.mark WHERE recovery_marks.mark < excluded.mark",
        )
        .bind(name)
        .bind(mark)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_webhook_health(
        &self,
        project_id: ProjectId,
        state: &str,
        disabled_until: Option<i64>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO webhook_health (project_id, state, disabled_until, checked_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (project_id) DO UPDATE SET \
             state = excluded.state, disabled_until = excluded.disabled_until, \
             checked_at = excluded.checked_at",
        )
        .bind(project_id)
        .bind(state)
        .bind(disabled_until)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn webhook_health(&self, project_id: ProjectId) -> Result<Option<WebhookHealth>> {
        let health = sqlx::query_as(
            "SELECT state, disabled_until, checked_at FROM webhook_health WHERE project_id = $1",
        )
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(health)
    }
}
