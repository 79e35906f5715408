//! Exponential backoff with "equal jitter": half the delay is fixed, half is
//! random, so retries spread out without ever retrying immediately.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// Delay before retry number `attempt` (1-based); `unit` is a random
    /// number in [0, 1).
    pub fn delay(&self, attempt: i64, unit: f64) -> Duration {
        let exponent = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        let uncapped = self.base.saturating_mul(2_u32.saturating_pow(exponent));
        let capped = uncapped.min(self.max);
        let unit = unit.clamp(0.0, 1.0);
        capped.mul_f64(0.5 + unit / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_attempt_within_jitter_bounds() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        for (attempt, full) in [(1, 1), (2, 2), (3, 4), (4, 8), (7, 60), (100, 60)] {
            let full = Duration::from_secs(full);
            assert_eq!(b.delay(attempt, 0.0), full / 2, "attempt {attempt}");
            assert_eq!(b.delay(attempt, 1.0), full, "attempt {attempt}");
            let mid = b.delay(attempt, 0.5);
            assert!(mid > full / 2 && mid < full);
        }
    }

    #[test]
    fn nonsense_inputs_stay_bounded() {
        let b = Backoff::default();
        assert!(b.delay(0, 0.3) <= b.base);
        assert!(b.delay(-5, 2.0) <= b.base);
        assert!(b.delay(i64::MAX, 0.9) <= b.max);
    }
}
