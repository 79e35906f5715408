//! Prometheus metrics. One registry per running app (no process-global
//! state, so tests can run several apps side by side). Queue depth is read
//! from the database at scrape time, so it is right across replicas.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub provider: String,
    pub event: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForgeCallLabels {
    pub forge: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryWaitLabels {
    pub forge: String,
    /// `rate_limit` (the forge said how long) or `backoff` (5xx, network).
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 5 ms … ~164 s
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub jobs: HistogramFamily<JobLabels>,
    pub queue_depth: Family<StateLabels, Gauge>,
    pub forge_calls: Family<ForgeCallLabels, Counter>,
    pub forge_retry_wait: Family<RetryWaitLabels, Counter<f64, AtomicU64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("graft");
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries received, by provider, event and outcome",
            deliveries.clone(),
        );
        let jobs: HistogramFamily<JobLabels> =
            Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register(
            "job_duration_seconds",
            "Time spent running jobs, by kind and outcome",
            jobs.clone(),
        );
        let queue_depth = Family::<StateLabels, Gauge>::default();
        registry.register(
            "job_queue_depth",
            "Jobs in the durable queue, by state",
            queue_depth.clone(),
        );
        let forge_calls = Family::<ForgeCallLabels, Counter>::default();
        registry.register(
            "forge_api_calls",
            "Forge API call attempts, by forge and outcome class",
            forge_calls.clone(),
        );
        let forge_retry_wait = Family::<RetryWaitLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "forge_retry_wait_seconds",
            "Time spent waiting before retrying forge calls, by cause (rate limits, backoff)",
            forge_retry_wait.clone(),
        );
        Metrics {
            registry,
            deliveries,
            jobs,
            queue_depth,
            forge_calls,
            forge_retry_wait,
        }
    }

    pub fn delivery(&self, provider: &str, event: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                provider: provider.to_string(),
                event: event.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn job_finished(&self, kind: &str, outcome: &str, seconds: f64) {
        self.jobs
            .get_or_create(&JobLabels {
                kind: kind.to_string(),
                outcome: outcome.to_string(),
            })
            .observe(seconds);
    }

    pub fn forge_call(&self, forge: &str, outcome: &str) {
        self.forge_calls
            .get_or_create(&ForgeCallLabels {
                forge: forge.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn forge_wait(&self, forge: &str, cause: &str, waited: std::time::Duration) {
        self.forge_retry_wait
            .get_or_create(&RetryWaitLabels {
                forge: forge.to_string(),
                cause: cause.to_string(),
            })
            .inc_by(waited.as_secs_f64());
    }

    /// Replaces the queue-depth gauges with fresh counts.
    pub fn set_queue_depth(&self, counts: &[(String, i64)]) {
        self.queue_depth.clear();
        for state in ["queued", "running", "done", "failed"] {
            let count = counts
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n);
            self.queue_depth
                .get_or_create(&StateLabels {
                    state: state.to_string(),
                })
                .set(count);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
