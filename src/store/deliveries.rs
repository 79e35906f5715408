//! Webhook deliveries: stored before they are acknowledged, deduplicated on
//! the forge's delivery id, and processed by a job enqueued in the same
//! transaction, so a delivery is never acknowledged and then lost.

use sqlx::Row;

use super::jobs::{NewJob, enqueue_in};
use super::{Result, Store};

pub const JOB_KIND: &str = "webhook";

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

    fn parse(text: &str) -> Self {
        match text {
            "processed" => DeliveryStatus::Processed,
            "failed" => DeliveryStatus::Failed,
            "ignored" => DeliveryStatus::Ignored,
            _ => DeliveryStatus::Queued,
        }
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub provider: String,
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub status: DeliveryStatus,
    pub payload: Option<Vec<u8>>,
    pub error: Option<String>,
    pub attempts: i64,
    pub integration_id: Option<i64>,
}

fn processing_job(id: i64, now: i64) -> NewJob {
    NewJob::new(JOB_KIND, serde_json::json!({ "delivery": id }), now)
}

impl Store {
    pub async fn record_delivery(&self, d: &IncomingDelivery<'_>, now: i64) -> Result<Intake> {
        let mut tx = self.begin_write().await?;
        let status = if d.ignored.is_some() {
            DeliveryStatus::Ignored
        } else {
            DeliveryStatus::Queued
        };
        let inserted = sqlx::query(
            "INSERT INTO webhook_deliveries (provider, delivery_id, event, action, status, payload, \
             error, received_at, integration_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (provider, delivery_id) DO NOTHING RETURNING id",
        )
        .bind(d.provider)
        .bind(d.delivery_id)
        .bind(d.event)
        .bind(d.action)
        .bind(status.as_str())
        .bind(d.payload)
        .bind(d.ignored)
        .bind(now)
        .bind(d.integration_id)
        .fetch_optional(&mut *tx)
        .await?;
        let intake = if let Some(row) = inserted {
            let id: i64 = row.get(0);
            let job_id = match status {
                DeliveryStatus::Queued => {
                    enqueue_in(&mut tx, &processing_job(id, now), now).await?
                }
                _ => None,
            };
            Intake::Accepted { id, job_id }
        } else {
            let row = sqlx::query(
                "SELECT id, status FROM webhook_deliveries WHERE provider = $1 AND delivery_id = $2",
            )
            .bind(d.provider)
            .bind(d.delivery_id)
            .fetch_one(&mut *tx)
            .await?;
            let id: i64 = row.get(0);
            let previous = DeliveryStatus::parse(row.get::<String, _>(1).as_str());
            // Only one of several concurrent redeliveries wins this update.
            let reopened = previous == DeliveryStatus::Failed
                && sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'queued', error = NULL \
                     WHERE id = $1 AND status = 'failed'",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
            if reopened {
                let job_id = enqueue_in(&mut tx, &processing_job(id, now), now).await?;
                Intake::Requeued { id, job_id }
            } else {
                Intake::Duplicate {
                    id,
                    status: previous,
                }
            }
        };
        tx.commit().await?;
        Ok(intake)
    }

    pub async fn delivery(&self, id: i64) -> Result<Option<Delivery>> {
        let row = sqlx::query(
            "SELECT id, provider, delivery_id, event, action, status, payload, error, attempts, \
             integration_id FROM webhook_deliveries WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Delivery {
            id: r.get(0),
            provider: r.get(1),
            delivery_id: r.get(2),
            event: r.get(3),
            action: r.get(4),
            status: DeliveryStatus::parse(r.get::<String, _>(5).as_str()),
            payload: r.get(6),
            error: r.get(7),
            attempts: r.get(8),
            integration_id: r.get(9),
        }))
    }

    /// Forgets deliveries received before `before` that are no longer
    /// queued (processed, ignored or failed). Returns how many.
    pub async fn prune_deliveries(&self, before: i64) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE status <> 'queued' AND received_at < $1",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn delivery_count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM webhook_deliveries")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.get(0))
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
