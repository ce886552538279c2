//! A circuit breaker per endpoint: after `failure_threshold` consecutive failures it opens and
//! calls fail fast; after `cool_down` one probe is let through (half-open); a success closes it,
//! a failure opens it again.
//!
//! An admitted call holds an [`Admission`], a guard: the call reports its outcome with
//! [`Admission::record`], and an admission dropped without an outcome (the caller's timeout, a
//! `select!` that took another branch, an aborted task) gives its probe slot back, counted as
//! neither success nor failure. Without that a cancelled probe would leave the breaker
//! half-open with its one probe "in flight" for good, and every later call to the endpoint —
//! from every `LM` in the process sharing it — would fail with `BreakerOpen`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When a breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (0 disables it).
    pub failure_threshold: u32,
    /// How long it stays open before a probe.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cool_down: Duration::from_secs(10),
        }
    }
}

impl BreakerConfig {
    /// A breaker that never opens.
    pub fn disabled() -> Self {
        BreakerConfig {
            failure_threshold: 0,
            ..BreakerConfig::default()
        }
    }
}

/// A breaker's state, as observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; `failures` consecutive failures so far.
    Closed {
        /// Consecutive failures.
        failures: u32,
    },
    /// Calls fail fast for `remaining` more.
    Open {
        /// Time until a probe is allowed.
        remaining: Duration,
    },
    /// One probe call is allowed (or in flight); its result decides.
    HalfOpen,
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_in_flight: bool },
}

/// The breaker of one endpoint.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

/// Permission for one call; report its outcome with [`Admission::record`]. Dropped without an
/// outcome, it gives a probe slot back (see the module docs).
#[derive(Debug)]
#[must_use]
pub(crate) struct Admission<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

impl Admission<'_> {
    /// Records the outcome of the admitted call. `failure` is an endpoint failure (timeouts,
    /// connection errors, 5xx); other outcomes count as success for the endpoint's health.
    pub(crate) fn record(mut self, failure: bool) {
        self.settled = true;
        self.breaker.record(self.probe, failure);
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            self.breaker.release_probe();
        }
    }
}

/// The breaker of `endpoint`, shared by every LM in the process that calls it with the same
/// configuration: an unhealthy server is unhealthy for all of them.
pub(crate) fn for_endpoint(endpoint: &str, config: BreakerConfig) -> std::sync::Arc<Breaker> {
    use std::collections::HashMap;
    use std::sync::{Arc, Weak};
    type Registry = Mutex<HashMap<(String, BreakerConfig), Weak<Breaker>>>;
    static REGISTRY: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    let mut map = REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let key = (endpoint.to_string(), config);
    if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
        return existing;
    }
    // Forget breakers no LM holds any more, so the registry stays small.
    map.retain(|_, weak| weak.strong_count() > 0);
    let breaker = Arc::new(Breaker::new(config));
    map.insert(key, Arc::downgrade(&breaker));
    breaker
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the state inconsistent (every update is a
        // single assignment), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets a call through, or says how long until the next probe.
    pub(crate) fn admit(&self) -> Result<Admission<'_>, Duration> {
        let admission = |probe| Admission {
            breaker: self,
            probe,
            settled: false,
        };
        if self.config.failure_threshold == 0 {
            return Ok(admission(false));
        }
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } => Ok(admission(false)),
            Inner::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *inner = Inner::HalfOpen {
                        probe_in_flight: true,
                    };
                    Ok(admission(true))
                } else {
                    Err(until - now)
                }
            }
            Inner::HalfOpen { probe_in_flight } => {
                if probe_in_flight {
                    Err(Duration::ZERO)
                } else {
                    *inner = Inner::HalfOpen {
                        probe_in_flight: true,
                    };
                    Ok(admission(true))
                }
            }
        }
    }

    /// The outcome of an admitted call (through [`Admission::record`]).
    fn record(&self, probe: bool, failure: bool) {
        if self.config.failure_threshold == 0 {
            return;
        }
        let mut inner = self.lock();
        let open = Inner::Open {
            until: Instant::now() + self.config.cool_down,
        };
        *inner = match (&*inner, failure) {
            (_, false) => Inner::Closed { failures: 0 },
            (Inner::HalfOpen { .. }, true) => open,
            (Inner::Closed { failures }, true) => {
                let failures = failures + 1;
                if failures >= self.config.failure_threshold {
                    tracing::warn!(failures, "circuit breaker opened");
                    open
                } else {
                    Inner::Closed { failures }
                }
            }
            // A call admitted before the breaker opened finished after: keep it open, unless
            // this was the probe.
            (Inner::Open { until }, true) if !probe => Inner::Open { until: *until },
            (Inner::Open { .. }, true) => open,
        };
    }

    /// Gives back the probe slot of a probe that ended without an outcome.
    fn release_probe(&self) {
        let mut inner = self.lock();
        if let Inner::HalfOpen { .. } = *inner {
            *inner = Inner::HalfOpen {
                probe_in_flight: false,
            };
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        match *self.lock() {
            Inner::Closed { failures } => BreakerState::Closed { failures },
            Inner::Open { until } => {
                let remaining = until.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    BreakerState::HalfOpen
                } else {
                    BreakerState::Open { remaining }
                }
            }
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_probes_and_closes() {
        let b = Breaker::new(BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_millis(30),
        });
        for _ in 0..3 {
            let a = b.admit().unwrap();
            a.record(true);
        }
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        assert!(b.admit().is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.admit().unwrap();
        // Only one probe at a time.
        assert!(b.admit().is_err());
        probe.record(true);
        assert!(matches!(b.state(), BreakerState::Open { .. }));
        std::thread::sleep(Duration::from_millis(40));
        let probe = b.admit().unwrap();
        probe.record(false);
        assert_eq!(b.state(), BreakerState::Closed { failures: 0 });
    }

    #[test]
    fn successes_reset_the_count_and_disabled_never_opens() {
        let b = Breaker::new(BreakerConfig {
            failure_threshold: 2,
            cool_down: Duration::from_secs(60),
        });
        let a = b.admit().unwrap();
        a.record(true);
        let a = b.admit().unwrap();
        a.record(false);
        let a = b.admit().unwrap();
        a.record(true);
        assert_eq!(b.state(), BreakerState::Closed { failures: 1 });

        let off = Breaker::new(BreakerConfig::disabled());
        for _ in 0..100 {
            let a = off.admit().unwrap();
            a.record(true);
        }
        assert!(off.admit().is_ok());
    }

    #[test]
    fn a_released_probe_lets_another_through() {
        let b = Breaker::new(BreakerConfig {
            failure_threshold: 1,
            cool_down: Duration::ZERO,
        });
        let a = b.admit().unwrap();
        a.record(true);
        let probe = b.admit().unwrap();
        drop(probe);
        assert!(b.admit().is_ok());
    }

    #[test]
    fn a_non_probe_dropped_without_outcome_changes_nothing() {
        let b = Breaker::new(BreakerConfig {
            failure_threshold: 2,
            cool_down: Duration::from_secs(60),
        });
        b.admit().unwrap().record(true);
        drop(b.admit().unwrap());
        assert_eq!(b.state(), BreakerState::Closed { failures: 1 });
    }
}
