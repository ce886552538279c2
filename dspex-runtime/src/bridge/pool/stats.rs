//! What a pool reports: latency histograms, counters and [`PoolStats`], and the
//! [`ShutdownReport`].

use super::*;

/// Upper bounds of the latency histogram's buckets.
pub(super) const LATENCY_BOUNDS_MICROS: [u64; 18] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// Request latencies (checkout included), in fixed buckets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LatencyHistogram {
    /// `(upper bound, count)` per bucket, in increasing order; a latency counts in the first
    /// bucket whose bound it does not exceed.
    pub buckets: Vec<(Duration, u64)>,
    /// Latencies over the last bound.
    pub overflow: u64,
    /// Every latency counted.
    pub count: u64,
    /// Their sum.
    pub sum: Duration,
}

impl LatencyHistogram {
    /// The bucket bound at or under which a fraction `q` (0..=1) of the latencies fall; `None`
    /// with no data; [`Duration::MAX`] when it falls in the overflow.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let want = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bound, n) in &self.buckets {
            seen += n;
            if seen >= want {
                return Some(*bound);
            }
        }
        Some(Duration::MAX)
    }

    /// The mean latency.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| self.sum / u32::try_from(self.count).unwrap_or(u32::MAX))
    }
}

#[derive(Default)]
pub(super) struct Histogram {
    pub(super) counts: [AtomicU64; LATENCY_BOUNDS_MICROS.len() + 1],
    pub(super) sum_micros: AtomicU64,
}

impl Histogram {
    pub(super) fn record(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let slot = LATENCY_BOUNDS_MICROS
            .iter()
            .position(|b| micros <= *b)
            .unwrap_or(LATENCY_BOUNDS_MICROS.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> LatencyHistogram {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        LatencyHistogram {
            buckets: LATENCY_BOUNDS_MICROS
                .iter()
                .zip(&counts)
                .map(|(b, n)| (Duration::from_micros(*b), *n))
                .collect(),
            overflow: counts[LATENCY_BOUNDS_MICROS.len()],
            count: counts.iter().sum(),
            sum: Duration::from_micros(self.sum_micros.load(Ordering::Relaxed)),
        }
    }
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) calls: AtomicU64,
    pub(super) ok: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) remote_errors: AtomicU64,
    pub(super) timeouts: AtomicU64,
    pub(super) crashes: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) breaker_rejections: AtomicU64,
    pub(super) cpu_limit_kills: AtomicU64,
    pub(super) saturated: AtomicU64,
    pub(super) checkout_timeouts: AtomicU64,
    pub(super) sessions_lost: AtomicU64,
    pub(super) sessions_created: AtomicU64,
    pub(super) sessions_closed: AtomicU64,
    pub(super) sessions_expired: AtomicU64,
    pub(super) recreated: AtomicU64,
    pub(super) restarts: AtomicU64,
    pub(super) worker_failures: AtomicU64,
    pub(super) latency: Histogram,
}

pub(super) fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

pub(super) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of the pool: workers by state, queue, counters, latencies.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolStats {
    /// Every live worker (starting ones are counted in `starting` only).
    pub workers: Vec<WorkerInfo>,
    /// Workers being started (spawn, handshake, configuration).
    pub starting: usize,
    /// Idle workers.
    pub ready: usize,
    /// Workers running a call.
    pub busy: usize,
    /// Workers finishing before they stop.
    pub draining: usize,
    /// Busy workers over live ones (0 with none).
    pub utilization: f64,
    /// Calls waiting for a worker.
    pub queue_depth: usize,
    /// Requests finished (successfully or not), retries not counted twice.
    pub calls: u64,
    /// Requests that succeeded.
    pub ok: u64,
    /// Requests that failed, for any reason.
    pub errors: u64,
    /// … of which Python raised.
    pub remote_errors: u64,
    /// … of which timed out (their workers were replaced).
    pub timeouts: u64,
    /// … of which failed because their worker crashed (after retries).
    pub crashes: u64,
    /// … of which used more CPU time than the limit ([`PoolBuilder::cpu_seconds`](super::PoolBuilder::cpu_seconds)).
    pub cpu_limit_kills: u64,
    /// … of which found the pool saturated.
    pub saturated: u64,
    /// … of which waited past the checkout timeout.
    pub checkout_timeouts: u64,
    /// … of which found their session lost.
    pub sessions_lost: u64,
    /// Sessions open now (neither closed nor expired; a lost one is open until it is closed).
    pub live_sessions: usize,
    /// Sessions opened.
    pub sessions_created: u64,
    /// Sessions closed: explicitly, by their store, or when their last handle went.
    pub sessions_closed: u64,
    /// Sessions closed after their idle TTL.
    pub sessions_expired: u64,
    /// Attempts retried on another worker after a crash.
    pub retries: u64,
    /// Bridged modules created again on another worker after theirs died
    /// ([`BridgedModule`](crate::bridge::BridgedModule)'s recovery).
    pub recreated: u64,
    /// Workers started to replace others (or to grow past the minimum).
    pub restarts: u64,
    /// Workers that died without being asked to (crash, kill, timeout, missed heartbeats).
    pub worker_failures: u64,
    /// Whether restarts are paused by the restart breaker.
    pub breaker_open: bool,
    /// The call breaker's state ([`PoolBuilder::call_breaker`](super::PoolBuilder::call_breaker);
    /// `Closed` when it is off).
    pub call_breaker: CallBreakerState,
    /// The fraction of the calls in the call breaker's window that failed for pool reasons (0
    /// with none, or with the breaker off).
    pub call_failure_rate: f64,
    /// Requests failed fast by the open call breaker (counted in `calls` and `errors` too).
    pub breaker_rejections: u64,
    /// The last worker failure or failed start.
    pub last_failure: Option<String>,
    /// Request latencies.
    pub latency: LatencyHistogram,
    /// The last workers that stopped or failed, oldest first (up to 32), with their transitions.
    pub recently_gone: Vec<WorkerInfo>,
}

/// What [`Pool::shutdown`] did with each worker it found in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Workers that exited after the `shutdown` operation or end of stdin (with status 0, as
    /// the protocol says).
    pub graceful: usize,
    /// Workers that exited after SIGTERM.
    pub terminated: usize,
    /// Workers that had to be killed.
    pub killed: usize,
    /// Workers that died without being asked to, before SIGTERM: already dead when shutdown
    /// reached them (crashed, or killed by another process, the pool not having seen it yet),
    /// or dead of a signal or an error status while they drained.
    pub failed: usize,
    /// Worker starts under way (a replacement, or an extra worker for a queue), abandoned:
    /// their processes were killed before they joined the pool.
    pub abandoned_starts: usize,
}
