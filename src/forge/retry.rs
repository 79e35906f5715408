//! The one retry policy for forge calls: exponential backoff with jitter
//! for 5xx and network errors, the forge's own wait (`Retry-After`,
//! `X-RateLimit-Reset`) for rate limits, and a ceiling: a wait longer than
//! `max_wait` is not slept inline but handed back to the job queue (the
//! error carries `retry_after`). Sleeping goes through [`Sleeper`] so tests
//! observe the waits without spending them.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::error::{ForgeError, ForgeKind};
use crate::jobs::Backoff;
use crate::metrics::Metrics;

pub type SleepFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Sleeper: Send + Sync + Debug {
    fn sleep(&self, duration: Duration) -> SleepFuture;
}

#[derive(Debug, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, duration: Duration) -> SleepFuture {
        Box::pin(tokio::time::sleep(duration))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// The longest single wait done inline; beyond it the error is returned
    /// with its `retry_after` so the job is rescheduled instead.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            backoff: Backoff {
                base: Duration::from_millis(500),
                max: Duration::from_secs(30),
            },
            max_wait: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` after `error` on attempt
    /// `attempt` (1-based), or `None` to give up. `unit` is random in [0, 1).
    pub fn delay_for(&self, attempt: u32, error: &ForgeError, unit: f64) -> Option<Duration> {
        if !error.is_retryable() || attempt >= self.max_attempts {
            return None;
        }
        let delay = match error.retry_after() {
            // The forge named the moment; a little jitter keeps concurrent
            // jobs from arriving in the same instant.
            Some(after) => after + self.backoff.base.mul_f64(unit.clamp(0.0, 1.0) / 2.0),
            None => self.backoff.delay(i64::from(attempt), unit),
        };
        (delay <= self.max_wait).then_some(delay)
    }
}

#[derive(Debug, Clone)]
pub struct Retrier {
    pub policy: RetryPolicy,
    sleeper: Arc<dyn Sleeper>,
    metrics: Arc<Metrics>,
}

impl Retrier {
    pub fn new(policy: RetryPolicy, sleeper: Arc<dyn Sleeper>, metrics: Arc<Metrics>) -> Self {
        Retrier {
            policy,
            sleeper,
            metrics,
        }
    }

    /// Runs `call` until it succeeds, fails for good, or the policy gives up.
    pub async fn run<T, F, Fut>(
        &self,
        forge: ForgeKind,
        what: &str,
        mut call: F,
    ) -> Result<T, ForgeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ForgeError>>,
    {
        let mut attempt = 1;
        loop {
            let error = match call().await {
                Ok(value) => {
                    self.metrics.forge_call(forge.as_str(), "ok");
                    return Ok(value);
                }
                Err(error) => error,
            };
            self.metrics.forge_call(forge.as_str(), error.class());
            let Some(delay) = self
                .policy
                .delay_for(attempt, &error, rand::random::<f64>())
            else {
                return Err(error);
            };
            warn!(
                forge = forge.as_str(),
                call = what,
                attempt,
                wait_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "forge call failed; retrying"
            );
            let cause = match &error {
                ForgeError::RateLimited { .. } => "rate_limit",
                _ => "backoff",
            };
            self.metrics.forge_wait(forge.as_str(), cause, delay);
            self.sleeper.sleep(delay).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ForgeError {
        ForgeError::Server {
            forge: ForgeKind::Github,
            status: 502,
            message: "bad gateway".into(),
        }
    }

    fn limited(after: Option<u64>) -> ForgeError {
        ForgeError::RateLimited {
            forge: ForgeKind::Github,
            primary: true,
            retry_after: after.map(Duration::from_secs),
        }
    }

    #[test]
    fn backs_off_exponentially_then_gives_up() {
        let policy = RetryPolicy::default();
        let delays: Vec<_> = (1..=4)
            .map(|a| policy.delay_for(a, &server(), 1.0))
            .collect();
        assert_eq!(
            delays,
            vec![
                Some(Duration::from_millis(500)),
                Some(Duration::from_secs(1)),
                Some(Duration::from_secs(2)),
                None
            ]
        );
        // Jitter keeps at least half the delay.
        assert_eq!(
            policy.delay_for(1, &server(), 0.0),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn honours_the_forges_wait_up_to_the_ceiling() {
        let policy = RetryPolicy::default();
        let wait = policy.delay_for(1, &limited(Some(30)), 0.0).unwrap();
        assert_eq!(wait, Duration::from_secs(30));
        let jittered = policy.delay_for(1, &limited(Some(30)), 0.99).unwrap();
        assert!(jittered > wait && jittered < wait + Duration::from_millis(250));
        assert_eq!(
            policy.delay_for(1, &limited(Some(3600)), 0.0),
            None,
            "over the ceiling"
        );
        assert!(policy.delay_for(1, &limited(None), 0.0).is_some());
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        let policy = RetryPolicy::default();
        let error = ForgeError::Validation {
            forge: ForgeKind::Gitlab,
            message: "title missing".into(),
        };
        assert_eq!(policy.delay_for(1, &error, 0.5), None);
    }

    #[derive(Debug, Default)]
    struct Recorder(std::sync::Mutex<Vec<Duration>>);

    impl Sleeper for Recorder {
        fn sleep(&self, duration: Duration) -> SleepFuture {
            self.0.lock().unwrap().push(duration);
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn run_retries_records_waits_and_stops() {
        let recorder = Arc::new(Recorder::default());
        let metrics = Arc::new(Metrics::new());
        let retrier = Retrier::new(RetryPolicy::default(), recorder.clone(), metrics.clone());
        let mut calls = 0;
        let result: Result<u32, _> = retrier
            .run(ForgeKind::Github, "test", || {
                calls += 1;
                let outcome = if calls < 3 {
                    Err(limited(Some(2)))
                } else {
                    Ok(7)
                };
                async move { outcome }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls, 3);
        let waits = recorder.0.lock().unwrap().clone();
        assert_eq!(waits.len(), 2);
        assert!(waits.iter().all(|w| *w >= Duration::from_secs(2)));
        let rendered = metrics.render();
        let waited: f64 = rendered
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "graft_forge_retry_wait_seconds_total{forge=\"github\",cause=\"rate_limit\"} ",
                )
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_default();
        assert!((4.0..5.0).contains(&waited), "{rendered}");

        let mut calls = 0;
        let result: Result<u32, _> = retrier
            .run(ForgeKind::Github, "test", || {
                calls += 1;
                async { Err(server()) }
            })
            .await;
        assert_eq!(result.unwrap_err(), server());
        assert_eq!(calls, 4);
    }
}
