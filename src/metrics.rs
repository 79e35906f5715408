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

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Content type of [`Metrics::render`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of [`to_prometheus_text`].
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a scraper's `Accept` header asks for OpenMetrics (Prometheus
/// itself does); anyone else gets the classic text format.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// OpenMetrics text → Prometheus text format 0.0.4: a counter family is
/// named after its `_total` samples in `HELP`/`TYPE`, and the `UNIT` and
/// `EOF` lines, which the classic format lacks, are dropped. Samples are
/// the same in both.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let header = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match header {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(format!("{kind}{name}{suffix} {tail}").trim_end());
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_becomes_the_classic_text_format() {
        let metrics = Metrics::new();
        metrics
            .deliveries
            .get_or_create(&DeliveryLabels {
                provider: "github".into(),
                event: "ping".into(),
                outcome: "queued".into(),
            })
            .inc();
        metrics
            .jobs
            .get_or_create(&JobLabels {
                kind: "sync".into(),
                outcome: "done".into(),
            })
            .observe(0.25);
        let openmetrics = metrics.render();
        let classic = to_prometheus_text(&openmetrics);
        assert!(openmetrics.contains("# TYPE graft_webhook_deliveries counter"));
        assert!(classic.contains("# TYPE graft_webhook_deliveries_total counter\n"));
        assert!(classic.contains("# HELP graft_webhook_deliveries_total "));
        assert!(classic.contains(
            "graft_webhook_deliveries_total{provider=\"github\",event=\"ping\",outcome=\"queued\"} 1\n"
        ));
        // Histograms and gauges keep their names; UNIT and EOF go.
        assert!(
            classic.contains("# TYPE graft_job_duration_seconds histogram\n"),
            "{classic}"
        );
        assert!(!classic.contains("# UNIT") && !classic.contains("# EOF"));
        assert_eq!(
            classic.lines().count(),
            openmetrics
                .lines()
                .filter(|l| !l.starts_with("# UNIT") && *l != "# EOF")
                .count()
        );
    }

    #[test]
    fn only_an_openmetrics_accept_gets_openmetrics() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(None));
    }
}
