//! Caller-owned retry policy: exponential backoff with full jitter, `Retry-After` honoured,
//! attempts and total time bounded.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;

/// How a caller retries failed LM calls. Only retryable failures are retried (timeouts,
/// connection failures, 408, 429, 5xx — see [`super::LmError::is_retryable`]); 400/401/404 and
/// decode errors fail at once.
///
/// Delays grow exponentially from `min_delay` to `max_delay` (backon's schedule) and each is
/// drawn uniformly from `[0, delay]` ("full jitter"), so many clients backing off at once do not
/// retry in lockstep. A provider's `Retry-After` replaces the drawn delay, capped at
/// `max_retry_after`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retries). DSPy's default `num_retries=3` is 4.
    pub max_attempts: u32,
    /// The first backoff delay before jitter.
    pub min_delay: Duration,
    /// The largest backoff delay before jitter.
    pub max_delay: Duration,
    /// Stop retrying once this much time has passed since the first attempt (`None`: no bound).
    pub max_elapsed: Option<Duration>,
    /// The longest `Retry-After` obeyed; a longer one is cut to this.
    pub max_retry_after: Duration,
    /// Whether to draw each delay from `[0, delay]` (on by default; off gives the bare schedule).
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_elapsed: Some(Duration::from_secs(300)),
            max_retry_after: Duration::from_secs(60),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The default policy with `attempts` attempts in all.
    pub fn attempts(attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: attempts.max(1),
            ..RetryPolicy::default()
        }
    }

    /// The same policy with other delays.
    #[must_use]
    pub fn with_delays(mut self, min: Duration, max: Duration) -> Self {
        self.min_delay = min;
        self.max_delay = max.max(min);
        self
    }

    /// The same policy with a bound on total time.
    #[must_use]
    pub fn with_max_elapsed(mut self, max: Option<Duration>) -> Self {
        self.max_elapsed = max;
        self
    }

    /// The same policy without jitter (deterministic delays, for tests).
    #[must_use]
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The backoff schedule: the delay before retry 1, 2, … (before jitter).
    pub(crate) fn schedule(&self) -> Backoff {
        let inner = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .build();
        Backoff {
            inner: Box::new(inner),
            jitter: self.jitter,
            rng: Jitter::seeded(),
            max_retry_after: self.max_retry_after,
        }
    }
}

/// Delays for one call's retries.
pub(crate) struct Backoff {
    inner: Box<dyn Iterator<Item = Duration> + Send>,
    jitter: bool,
    rng: Jitter,
    max_retry_after: Duration,
}

impl Backoff {
    /// The delay before the next retry, or `None` when the schedule is used up. `retry_after`
    /// (from the provider) replaces the jittered delay.
    pub(crate) fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        let scheduled = self.inner.next()?;
        Some(match retry_after {
            Some(wait) => wait.min(self.max_retry_after),
            None if self.jitter => self.rng.up_to(scheduled),
            None => scheduled,
        })
    }
}

/// A small SplitMix64 generator for jitter; seeded from the clock and a counter so concurrent
/// callers draw different delays.
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Jitter(nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, max]`.
    fn up_to(&mut self, max: Duration) -> Duration {
        let fraction = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        max.mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_grows_and_stops() {
        let policy = RetryPolicy::attempts(5)
            .with_delays(Duration::from_millis(100), Duration::from_millis(350))
            .without_jitter();
        let mut b = policy.schedule();
        let delays: Vec<u128> = std::iter::from_fn(|| b.next_delay(None))
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        assert!(RetryPolicy::none().schedule().next_delay(None).is_none());
    }

    #[test]
    fn jitter_stays_within_the_delay_and_varies() {
        let policy =
            RetryPolicy::attempts(200).with_delays(Duration::from_secs(1), Duration::from_secs(1));
        let mut b = policy.schedule();
        let delays: Vec<_> = std::iter::from_fn(|| b.next_delay(None)).collect();
        assert_eq!(delays.len(), 199);
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 150);
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let mut policy = RetryPolicy::attempts(3);
        policy.max_retry_after = Duration::from_secs(2);
        let mut b = policy.schedule();
        assert_eq!(
            b.next_delay(Some(Duration::from_millis(300))),
            Some(Duration::from_millis(300))
        );
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(3600))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(b.next_delay(Some(Duration::ZERO)), None);
    }
}
