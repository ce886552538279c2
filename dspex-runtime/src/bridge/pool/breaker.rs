//! The call breaker (on the pool's call error rate) and the jittered backoff between the retries
//! of a call after a crash. Pure logic over instants handed in, so the tests need no clock.

use super::BridgeError;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The breaker on the pool's *call error rate* ([`PoolBuilder::call_breaker`](super::PoolBuilder::call_breaker)).
///
/// Over a sliding window — the last `max_calls` calls that ended within `window` — when at
/// least `min_calls` calls are in it and the fraction that failed *for pool reasons* is above
/// `failure_rate`, the breaker opens: new calls fail at once with
/// [`BridgeError::CallBreakerOpen`] for `cooldown`. Then it is half-open: one probe call goes
/// through (the others still fail fast); if the probe does not fail for a pool reason the
/// breaker closes (with an empty window), else it opens again for another `cooldown`.
///
/// Pool reasons: [`WorkerCrashed`](BridgeError::WorkerCrashed)
/// (after its retries), [`Timeout`](BridgeError::Timeout),
/// [`CpuLimitExceeded`](BridgeError::CpuLimitExceeded) (each costs a worker, like a timeout), [`Protocol`](BridgeError::Protocol)
/// and [`BadResult`](BridgeError::BadResult). Not counted, as failures or at all:
/// [`Remote`](BridgeError::Remote) (Python raised in user code: that is the call's answer, and the
/// worker lives on; it counts as a success), and errors of load or usage that never reached a
/// worker ([`PoolSaturated`](BridgeError::PoolSaturated),
/// [`CheckoutTimeout`](BridgeError::CheckoutTimeout), [`SessionLost`](BridgeError::SessionLost),
/// [`SessionBusy`](BridgeError::SessionBusy), [`BreakerOpen`](BridgeError::BreakerOpen),
/// [`ShutDown`](BridgeError::ShutDown), and the breaker's own fast failures), which are left out of
/// the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallBreaker {
    /// Calls older than this leave the window (default 60 s).
    pub window: Duration,
    /// The most calls the window holds: the last ones (default 100).
    pub max_calls: usize,
    /// Calls needed in the window before the breaker may open (default 20).
    pub min_calls: usize,
    /// The fraction of pool failures above which it opens, 0..=1 (default 0.5).
    pub failure_rate: f64,
    /// How long calls fail fast before a probe is let through (default 10 s).
    pub cooldown: Duration,
}

impl Default for CallBreaker {
    fn default() -> Self {
        CallBreaker {
            window: Duration::from_secs(60),
            max_calls: 100,
            min_calls: 20,
            failure_rate: 0.5,
            cooldown: Duration::from_secs(10),
        }
    }
}

/// The call breaker's state, in [`PoolStats::call_breaker`](super::PoolStats::call_breaker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallBreakerState {
    /// Calls go through (also when the breaker is turned off).
    #[default]
    Closed,
    /// Calls fail fast for this much longer.
    Open {
        /// Until the breaker turns half-open.
        retry_in: Duration,
    },
    /// One probe call may go through; its outcome closes or reopens the breaker.
    HalfOpen {
        /// Whether the probe is under way (other calls fail fast meanwhile).
        probing: bool,
    },
}

/// Whether a call's error counts against the pool in the call breaker's window (see
/// [`CallBreaker`]); `None` for errors left out of the window.
pub(crate) fn counts_as_pool_failure(e: &BridgeError) -> Option<bool> {
    match e {
        BridgeError::WorkerCrashed { .. }
        | BridgeError::CpuLimitExceeded { .. }
        | BridgeError::Timeout { .. }
        | BridgeError::Protocol { .. }
        | BridgeError::BadResult { .. } => Some(true),
        BridgeError::Remote { .. } => Some(false),
        _ => None,
    }
}

/// What [`Breaker::admit`] let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// An ordinary call.
    Call,
    /// The half-open breaker's probe: its outcome must be reported (or the probe given up).
    Probe,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The breaker's window and state.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: CallBreaker,
    /// `(ended at, failed for a pool reason)`, oldest first.
    window: VecDeque<(Instant, bool)>,
    phase: Phase,
    /// The failures and calls in the window when it last opened (for the error message).
    opened_with: (usize, usize),
}

impl Breaker {
    pub(crate) fn new(config: CallBreaker) -> Self {
        Breaker {
            config,
            window: VecDeque::new(),
            phase: Phase::Closed,
            opened_with: (0, 0),
        }
    }

    fn trim(&mut self, now: Instant) {
        while self
            .window
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > self.config.window)
            || self.window.len() > self.config.max_calls.max(1)
        {
            self.window.pop_front();
        }
    }

    /// `(failed, calls)` in the window now.
    pub(crate) fn counts(&mut self, now: Instant) -> (usize, usize) {
        self.trim(now);
        let failed = self.window.iter().filter(|(_, f)| *f).count();
        (failed, self.window.len())
    }

    /// The state, for the stats.
    pub(crate) fn state(&self, now: Instant) -> CallBreakerState {
        match self.phase {
            Phase::Closed => CallBreakerState::Closed,
            Phase::Open { until, .. } if until > now => CallBreakerState::Open {
                retry_in: until - now,
            },
            Phase::Open { .. } => CallBreakerState::HalfOpen { probing: false },
            Phase::HalfOpen { probing } => CallBreakerState::HalfOpen { probing },
        }
    }

    /// Lets a call through, or the error it fails fast with.
    pub(crate) fn admit(&mut self, now: Instant) -> Result<Admission, BridgeError> {
        match self.phase {
            Phase::Closed => Ok(Admission::Call),
            Phase::Open { until, .. } if now < until => Err(self.error(until - now)),
            Phase::Open { .. } | Phase::HalfOpen { probing: false } => {
                self.phase = Phase::HalfOpen { probing: true };
                tracing::info!(
                    target: "dspex::bridge",
                    "call breaker half-open: letting one probe call through"
                );
                Ok(Admission::Probe)
            }
            Phase::HalfOpen { probing: true } => Err(self.error(Duration::ZERO)),
        }
    }

    fn error(&self, retry_in: Duration) -> BridgeError {
        let (failed, calls) = self.opened_with;
        BridgeError::CallBreakerOpen {
            failed,
            calls,
            window: self.config.window,
            threshold: self.config.failure_rate,
            retry_in,
        }
    }

    /// A call ended: `failed` per [`counts_as_pool_failure`] (`None`: left out of the window).
    pub(crate) fn record(&mut self, now: Instant, admission: Admission, failed: Option<bool>) {
        if admission == Admission::Probe {
            match failed {
                Some(true) => self.open(now, "the probe call failed"),
                Some(false) => {
                    self.window.clear();
                    self.phase = Phase::Closed;
                    tracing::info!(
                        target: "dspex::bridge",
                        "call breaker closed: the probe call succeeded"
                    );
                }
                // Neither: let another probe through.
                None => self.phase = Phase::HalfOpen { probing: false },
            }
            return;
        }
        let Some(failed) = failed else {
            return;
        };
        if self.phase != Phase::Closed {
            // A call admitted before the breaker opened: its outcome is already history.
            return;
        }
        self.window.push_back((now, failed));
        let (bad, calls) = self.counts(now);
        if calls >= self.config.min_calls.max(1)
            && bad as f64 > self.config.failure_rate * calls as f64
        {
            self.opened_with = (bad, calls);
            self.open(now, "the call error rate crossed the threshold");
        }
    }

    /// The probe was given up (its caller dropped the call): another may go.
    pub(crate) fn abandon_probe(&mut self) {
        if self.phase == (Phase::HalfOpen { probing: true }) {
            self.phase = Phase::HalfOpen { probing: false };
        }
    }

    fn open(&mut self, now: Instant, why: &str) {
        let (failed, calls) = self.opened_with;
        let rate = if calls == 0 {
            0.0
        } else {
            failed as f64 / calls as f64
        };
        self.phase = Phase::Open {
            until: now + self.config.cooldown,
        };
        tracing::warn!(
            target: "dspex::bridge",
            failed, calls, rate, window = ?self.config.window,
            threshold = self.config.failure_rate, cooldown = ?self.config.cooldown,
            "call breaker open ({why}): calls fail fast until the cool-down ends"
        );
    }
}

/// The delay before retry `attempt` (1, 2, …) of a call after a crash: full jitter, uniform in
/// `[0, min(cap, base · 2^(attempt-1))]`; `unit` is a uniform draw in `[0, 1)`.
pub(crate) fn retry_delay(base: Duration, cap: Duration, attempt: u32, unit: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    exp.min(cap).mul_f64(unit.clamp(0.0, 1.0))
}

/// A uniform draw in `[0, 1)` (splitmix64 over the clock and a counter; jitter needs no more).
pub(crate) fn unit_random() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = nanos ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CallBreaker {
        CallBreaker {
            window: Duration::from_secs(10),
            max_calls: 10,
            min_calls: 4,
            failure_rate: 0.5,
            cooldown: Duration::from_secs(5),
        }
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn opens_over_the_threshold_only_with_enough_calls() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        // Three failures: under min_calls, stays closed.
        for _ in 0..3 {
            assert_eq!(b.admit(t0).unwrap(), Admission::Call);
            b.record(t0, Admission::Call, Some(true));
        }
        assert_eq!(b.state(t0), CallBreakerState::Closed);
        // A fourth call, a success: 3 of 4 > 50 %: opens.
        b.record(t0, Admission::Call, Some(false));
        assert_eq!(
            b.state(t0),
            CallBreakerState::Open {
                retry_in: Duration::from_secs(5)
            }
        );
        match b.admit(secs(t0, 1)).unwrap_err() {
            BridgeError::CallBreakerOpen {
                failed,
                calls,
                retry_in,
                ..
            } => {
                assert_eq!((failed, calls), (3, 4));
                assert_eq!(retry_in, Duration::from_secs(4));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exactly_the_threshold_and_neutral_errors_keep_it_closed() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        for failed in [true, false, true, false, false] {
            b.record(t0, Admission::Call, Some(failed));
        }
        // 2 of 5: closed; neutral outcomes are not counted.
        for _ in 0..10 {
            b.record(t0, Admission::Call, None);
        }
        assert_eq!(b.counts(t0), (2, 5));
        assert_eq!(b.state(t0), CallBreakerState::Closed);
        b.record(t0, Admission::Call, Some(true));
        // 3 of 6 = 50 %, not above: closed.
        assert_eq!(b.state(t0), CallBreakerState::Closed);
    }

    #[test]
    fn the_window_slides_by_time_and_by_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(config());
        for _ in 0..3 {
            b.record(t0, Admission::Call, Some(true));
        }
        // Eleven seconds later the failures left the window: one more failure of one call.
        b.record(secs(t0, 11), Admission::Call, Some(false));
        assert_eq!(b.counts(secs(t0, 11)), (0, 1));
        // By count: 10 successes push out older entries.
        for _ in 0..12 {
            b.record(secs(t0, 11), Admission::Call, Some(false));
        }
        assert_eq!(b.counts(secs(t0, 11)), (0, 10));
        for _ in 0..5 {
            b.record(secs(t0, 11), Admission::Call, Some(true));
        }
        assert_eq!(b.state(secs(t0, 11)), CallBreakerState::Closed);
        b.record(secs(t0, 11), Admission::Call, Some(true));
        // 6 of the last 10: open.
        assert!(matches!(
            b.state(secs(t0, 11)),
            CallBreakerState::Open { .. }
        ));
    }

    fn opened(t0: Instant) -> Breaker {
        let mut b = Breaker::new(config());
        for _ in 0..4 {
            b.record(t0, Admission::Call, Some(true));
        }
        assert!(matches!(b.state(t0), CallBreakerState::Open { .. }));
        b
    }

    #[test]
    fn half_open_lets_one_probe_through_and_a_success_closes() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let later = secs(t0, 5);
        assert_eq!(
            b.state(later),
            CallBreakerState::HalfOpen { probing: false }
        );
        assert_eq!(b.admit(later).unwrap(), Admission::Probe);
        assert_eq!(b.state(later), CallBreakerState::HalfOpen { probing: true });
        // Others fail fast while the probe runs.
        assert!(matches!(
            b.admit(later),
            Err(BridgeError::CallBreakerOpen { .. })
        ));
        // A late outcome of a call admitted before the breaker opened changes nothing.
        b.record(later, Admission::Call, Some(true));
        // A Python exception is an answer: the probe succeeded.
        b.record(later, Admission::Probe, Some(false));
        assert_eq!(b.state(later), CallBreakerState::Closed);
        assert_eq!(b.counts(later), (0, 0));
        assert_eq!(b.admit(later).unwrap(), Admission::Call);
    }

    #[test]
    fn a_failed_probe_reopens_and_an_abandoned_one_lets_another_through() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let later = secs(t0, 6);
        assert_eq!(b.admit(later).unwrap(), Admission::Probe);
        b.abandon_probe();
        assert_eq!(b.admit(later).unwrap(), Admission::Probe);
        // A neutral outcome (say, a checkout timeout): another probe may go.
        b.record(later, Admission::Probe, None);
        assert_eq!(b.admit(later).unwrap(), Admission::Probe);
        b.record(later, Admission::Probe, Some(true));
        assert_eq!(
            b.state(later),
            CallBreakerState::Open {
                retry_in: Duration::from_secs(5)
            }
        );
        assert!(b.admit(secs(t0, 10)).is_err());
        assert_eq!(b.admit(secs(t0, 11)).unwrap(), Admission::Probe);
    }

    #[test]
    fn which_errors_count() {
        use crate::bridge::WorkerRef;
        let worker = WorkerRef { id: 1, pid: 2 };
        let crashed = BridgeError::WorkerCrashed {
            worker,
            op: "call",
            reason: "SIGKILL".into(),
            stderr: vec![],
        };
        let timeout = BridgeError::Timeout {
            worker,
            op: "call",
            timeout: Duration::from_secs(1),
        };
        assert_eq!(counts_as_pool_failure(&crashed), Some(true));
        assert_eq!(counts_as_pool_failure(&timeout), Some(true));
        assert_eq!(
            counts_as_pool_failure(&BridgeError::CheckoutTimeout {
                waited: Duration::from_secs(1)
            }),
            None
        );
        assert_eq!(counts_as_pool_failure(&BridgeError::ShutDown), None);
    }

    #[test]
    fn retry_delays_grow_to_the_cap_with_full_jitter() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_millis(700);
        let full: Vec<u128> = (1..=5)
            .map(|a| retry_delay(base, cap, a, 0.999_999).as_millis())
            .collect();
        assert_eq!(full, vec![99, 199, 399, 699, 699]);
        assert_eq!(retry_delay(base, cap, 3, 0.0), Duration::ZERO);
        assert_eq!(retry_delay(base, cap, 3, 0.5), Duration::from_millis(200));
        // Huge attempt numbers do not overflow.
        assert_eq!(
            retry_delay(base, cap, 1000, 0.5),
            Duration::from_millis(350)
        );
        let draws: Vec<f64> = (0..100).map(|_| unit_random()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(draws.iter().any(|u| *u != draws[0]), "the draws vary");
    }
}
