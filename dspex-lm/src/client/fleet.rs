//! One [`LM`] over several endpoints of the same model: the members of the fleet, how a call
//! picks one (power of two choices on outstanding requests / weight, skipping ejected
//! endpoints), which failures are re-sent to another endpoint at once (failover), and the
//! per-endpoint counters [`LM::endpoints`] reports.
//!
//! **Ejection and re-admission.** Each endpoint has its own [`Breaker`] (the LM's
//! [`BreakerConfig`], shared process-wide per URL as for a single endpoint): after
//! `failure_threshold` consecutive endpoint failures it opens and the endpoint is skipped; after
//! `cool_down` one call is let through as a probe, and its success closes the breaker and puts
//! the endpoint back into rotation.
//!
//! **Failover.** A call whose exchange failed *before any byte of its answer arrived* is re-sent
//! at once to another endpoint not tried yet in this attempt, holding the same concurrency slot
//! and without counting as an attempt of the caller's retry policy. "Before any byte of the
//! answer" means, precisely:
//! - the connection could not be opened, or broke (refused, reset, closed) before the status
//!   line arrived, including a transport-level connect timeout;
//! - the status line said the endpoint could not take the request: 429, 502, 503 or 504 (its
//!   body, an error message, is read but is no answer);
//! - for streamed calls, the per-attempt timeout ran out before the status line (a streamed
//!   attempt ends at the status line, see [`LM::stream_with`]).
//!
//! Not failed over: any 2xx answer whose body then breaks off or does not decode (bytes of the
//! answer arrived), a plain call's per-attempt timeout (the endpoint accepted the request and may
//! be generating: re-sending would pay for it twice; the caller's retry policy decides), the
//! call's deadline, and every other status (a 400 is the request's fault; a 500 may be too).
//! Those go to the caller's retry policy as with one endpoint. When every endpoint has been tried,
//! the last failure is the attempt's error.

use super::*;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The most endpoints one [`LM`] may have.
pub(crate) const MAX_ENDPOINTS: usize = 64;

/// One endpoint of the fleet: where and how to reach it, its breaker and its counters.
pub(crate) struct Member {
    /// The base URL, credentials removed.
    pub(crate) endpoint: String,
    pub(crate) http: Transport,
    pub(crate) urls: Urls,
    pub(crate) breaker: Arc<Breaker>,
    pub(crate) weight: u32,
    outstanding: AtomicUsize,
    served: AtomicU64,
    failures: AtomicU64,
    failovers: AtomicU64,
}

impl Member {
    pub(crate) fn new(
        endpoint: String,
        http: Transport,
        urls: Urls,
        breaker: Arc<Breaker>,
        weight: u32,
    ) -> Member {
        Member {
            endpoint,
            http,
            urls,
            breaker,
            weight,
            outstanding: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
        }
    }

    /// The member's counters and health, as observed now.
    fn stats(&self) -> EndpointStats {
        let breaker = self.breaker.state();
        EndpointStats {
            url: self.endpoint.clone(),
            weight: self.weight,
            outstanding: self.outstanding.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            failovers: self.failovers.load(Ordering::Relaxed),
            healthy: !matches!(breaker, BreakerState::Open { .. }),
            breaker,
        }
    }

    /// Counts the outcome of one exchange with this endpoint.
    pub(crate) fn count(&self, ok: bool, endpoint_failure: bool) {
        if ok {
            self.served.fetch_add(1, Ordering::Relaxed);
        } else if endpoint_failure {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a request moved away from this endpoint.
    pub(crate) fn count_failover(&self) {
        self.failovers.fetch_add(1, Ordering::Relaxed);
    }
}

/// One endpoint of an [`LM`] as observed by [`LM::endpoints`]: its URL (credentials removed),
/// weight, load, counters and health.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// The base URL, without `user:password@`.
    pub url: String,
    /// The endpoint's share of the load relative to the others (1 unless set with
    /// [`LmBuilder::endpoint_weighted`]).
    pub weight: u32,
    /// Requests sent to it and not finished yet (a stream counts until it ends).
    pub outstanding: usize,
    /// Exchanges it answered successfully.
    pub served: u64,
    /// Exchanges that failed against it (timeouts, connection failures, 5xx, undecodable
    /// answers: what counts against its breaker).
    pub failures: u64,
    /// Requests that failed on it before any byte of the answer and were re-sent to another
    /// endpoint.
    pub failovers: u64,
    /// Its breaker's state.
    pub breaker: BreakerState,
    /// Whether calls may go to it: its breaker is not open (closed, or half-open and ready for
    /// a probe).
    pub healthy: bool,
}

/// A request outstanding on one endpoint: counted from the moment it is sent until this guard is
/// dropped (with the exchange, or with a stream when it ends).
pub(crate) struct Lease {
    member: Arc<Member>,
}

impl Lease {
    pub(crate) fn new(member: &Arc<Member>) -> Lease {
        member.outstanding.fetch_add(1, Ordering::Relaxed);
        Lease {
            member: Arc::clone(member),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.member.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A failed exchange, with whether it failed before any byte of the answer arrived (see the
/// module docs).
pub(crate) struct Failed {
    pub(crate) error: LmError,
    pub(crate) before_answer: bool,
}

impl Failed {
    /// A failure before the answer: the connection, or a status line that is no answer.
    pub(crate) fn early(error: LmError) -> Failed {
        Failed {
            error,
            before_answer: true,
        }
    }
}

impl From<LmError> for Failed {
    /// A failure once the answer had started arriving (the conservative default).
    fn from(error: LmError) -> Failed {
        Failed {
            error,
            before_answer: false,
        }
    }
}

/// Whether a failure before the answer is re-sent to another endpoint: connection failures, a
/// transport timeout before the status line, and the statuses that say "not here, not now"
/// (429, 502, 503, 504).
pub(crate) fn fails_over(error: &LmError) -> bool {
    match error {
        LmError::Connect { .. } | LmError::Timeout { .. } | LmError::RateLimited { .. } => true,
        LmError::Http { status, .. } => matches!(status, 429 | 502 | 503 | 504),
        _ => false,
    }
}

/// The endpoints of one [`LM`] (one for an LM built with a single base URL).
pub(crate) struct Fleet {
    pub(crate) members: Vec<Arc<Member>>,
}

/// A bit set of the members tried (or found ejected) during one attempt.
pub(crate) type Tried = u64;

impl Fleet {
    /// The member at `index` (an index [`pick`](Fleet::pick) returned).
    pub(crate) fn member(&self, index: usize) -> &Arc<Member> {
        &self.members[index]
    }

    /// The counters of every member, in the order the endpoints were given.
    pub(crate) fn stats(&self) -> Vec<EndpointStats> {
        self.members.iter().map(|m| m.stats()).collect()
    }

    /// A member not in `tried` whose breaker admits a call, chosen by the power of two choices:
    /// two distinct candidates drawn at random, the one with fewer outstanding requests per unit
    /// of weight wins. A member whose breaker refuses is skipped and the draw repeats. `Err`
    /// carries the shortest wait until an ejected member takes a probe (none admitted).
    pub(crate) fn pick(&self, mut tried: Tried) -> Result<(usize, Admission<'_>), Duration> {
        if let [only] = self.members.as_slice() {
            return if tried & 1 == 0 {
                only.breaker.admit().map(|a| (0, a))
            } else {
                Err(Duration::ZERO)
            };
        }
        let mut soonest: Option<Duration> = None;
        loop {
            let candidates = self.members.len() - tried.count_ones() as usize;
            let choice = match candidates {
                0 => return Err(soonest.unwrap_or(Duration::ZERO)),
                1 => self.nth_untried(tried, 0),
                n => {
                    let draw = random();
                    let a = (draw % n as u64) as usize;
                    let b = ((draw >> 32) % (n as u64 - 1)) as usize;
                    let b = if b >= a { b + 1 } else { b };
                    let (a, b) = (self.nth_untried(tried, a), self.nth_untried(tried, b));
                    if self.lighter(b, a) { b } else { a }
                }
            };
            match self.members[choice].breaker.admit() {
                Ok(admission) => return Ok((choice, admission)),
                Err(wait) => {
                    soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                    tried |= 1 << choice;
                }
            }
        }
    }

    /// The index of the `n`th member not in `tried`.
    fn nth_untried(&self, tried: Tried, n: usize) -> usize {
        (0..self.members.len())
            .filter(|i| tried & (1 << i) == 0)
            .nth(n)
            .unwrap_or(0)
    }

    /// Whether member `a` carries less load per unit of weight than member `b`.
    fn lighter(&self, a: usize, b: usize) -> bool {
        let load = |i: usize| {
            let m = &self.members[i];
            (m.outstanding.load(Ordering::Relaxed) as u64, u64::from(m.weight))
        };
        let ((oa, wa), (ob, wb)) = (load(a), load(b));
        // (oa + 1) / wa < (ob + 1) / wb, without division.
        (oa + 1) * wb < (ob + 1) * wa
    }

    /// The base URLs, credentials removed, joined with commas (what [`LM::endpoint`] returns).
    pub(crate) fn joined(&self) -> String {
        self.members
            .iter()
            .map(|m| m.endpoint.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The state of the healthiest breaker: closed if any is closed (the fewest failures), else
    /// half-open if any is, else open with the shortest wait.
    pub(crate) fn best_breaker_state(&self) -> BreakerState {
        let rank = |s: &BreakerState| match *s {
            BreakerState::Closed { failures } => (0, u128::from(failures)),
            BreakerState::HalfOpen => (1, 0),
            BreakerState::Open { remaining } => (2, remaining.as_nanos()),
        };
        self.members
            .iter()
            .map(|m| m.breaker.state())
            .min_by_key(rank)
            .unwrap_or(BreakerState::Closed { failures: 0 })
    }
}

/// A fast, well-mixed random number (splitmix64 over a process-wide counter): the balancer needs
/// spread, not secrecy.
fn random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0x853c_49e6_748f_ea9b);
    let mut z = STATE
        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
