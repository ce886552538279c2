//! The supervised pool: checkout with a bounded queue, session affinity, retries of idempotent
//! calls, replacement of dead workers with backoff and a restart breaker, graceful shutdown,
//! statistics.

use super::error::{BridgeError, WorkerRef};
use super::forkserver::ForkServer;
use super::protocol::{CreateResult, Op};
use super::router::SignatureArg;
use super::worker::{
    DEFAULT_ENV_ALLOW, LeaseEnd, Worker, WorkerConfig, WorkerHooks, WorkerInfo, WorkerState,
};
use crate::flag;
use crate::lm::LanguageModel;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a [`Session`]'s calls pick their worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AffinityMode {
    /// Prefer the session's worker when it is free, else take any free worker; when the
    /// session's worker dies, move on to another. For stateless calls, or objects that every
    /// worker can recreate.
    Hint,
    /// Always the session's worker: wait in the queue while it is busy (up to the checkout
    /// timeout); [`BridgeError::SessionLost`] once it died.
    #[default]
    StrictQueue,
    /// Always the session's worker: [`BridgeError::SessionBusy`] at once while it is busy;
    /// [`BridgeError::SessionLost`] once it died.
    StrictFailFast,
}

impl AffinityMode {
    fn is_strict(self) -> bool {
        !matches!(self, AffinityMode::Hint)
    }
}

/// Options of one request.
#[derive(Clone, Default)]
pub struct RequestOptions {
    timeout: Option<Duration>,
    idempotent: Option<bool>,
    lm: Option<Arc<dyn LanguageModel>>,
}

impl std::fmt::Debug for RequestOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestOptions")
            .field("timeout", &self.timeout)
            .field("idempotent", &self.idempotent)
            .field("lm", &self.lm.as_ref().map(|lm| lm.model().to_string()))
            .finish()
    }
}

impl RequestOptions {
    /// The defaults: the pool's call timeout, the op's own idempotence, the pool's LM.
    pub fn new() -> Self {
        Self::default()
    }

    /// This call's timeout instead of the pool's.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether the call may be retried on another worker when its worker crashes (default:
    /// [`Op::is_idempotent`]). Calls bound to a strict session are never retried elsewhere.
    #[must_use]
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }

    /// The LM that answers this call's `lm_call`s (default: the pool's, else the settings').
    #[must_use]
    pub fn lm(mut self, lm: Arc<dyn LanguageModel>) -> Self {
        self.lm = Some(lm);
        self
    }
}

/// Upper bounds of the latency histogram's buckets.
const LATENCY_BOUNDS_MICROS: [u64; 18] = [
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
struct Histogram {
    counts: [AtomicU64; LATENCY_BOUNDS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    fn record(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let slot = LATENCY_BOUNDS_MICROS
            .iter()
            .position(|b| micros <= *b)
            .unwrap_or(LATENCY_BOUNDS_MICROS.len());
        self.counts[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn snapshot(&self) -> LatencyHistogram {
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
struct Counters {
    calls: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    remote_errors: AtomicU64,
    timeouts: AtomicU64,
    crashes: AtomicU64,
    retries: AtomicU64,
    saturated: AtomicU64,
    checkout_timeouts: AtomicU64,
    sessions_lost: AtomicU64,
    recreated: AtomicU64,
    restarts: AtomicU64,
    worker_failures: AtomicU64,
    latency: Histogram,
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn inc(c: &AtomicU64) {
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
    /// … of which found the pool saturated.
    pub saturated: u64,
    /// … of which waited past the checkout timeout.
    pub checkout_timeouts: u64,
    /// … of which found their session lost.
    pub sessions_lost: u64,
    /// Attempts retried on another worker after a crash.
    pub retries: u64,
    /// Bridged modules created again on another worker after theirs died
    /// ([`BridgedModule`](super::BridgedModule)'s recovery).
    pub recreated: u64,
    /// Workers started to replace others (or to grow past the minimum).
    pub restarts: u64,
    /// Workers that died without being asked to (crash, kill, timeout, missed heartbeats).
    pub worker_failures: u64,
    /// Whether restarts are paused by the breaker.
    pub breaker_open: bool,
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

/// The restart breaker: more than `max_restarts` restarts within `window` pause restarts for
/// `cooldown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartBreaker {
    /// Restarts allowed within the window.
    pub max_restarts: usize,
    /// The window.
    pub window: Duration,
    /// How long restarts pause once the breaker opens.
    pub cooldown: Duration,
}

impl Default for RestartBreaker {
    fn default() -> Self {
        RestartBreaker {
            max_restarts: 20,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
        }
    }
}

/// Configures and starts a [`Pool`]. Every setting has a default; see each method.
#[derive(Clone)]
pub struct PoolBuilder {
    python: OsString,
    worker_args: Vec<OsString>,
    eager_import: bool,
    memory_mb: Option<u64>,
    extra_args: Vec<OsString>,
    env_allow: Vec<String>,
    env: Vec<(String, String)>,
    thread_cap: u32,
    current_dir: Option<PathBuf>,
    min_workers: usize,
    max_workers: usize,
    queue_bound: usize,
    checkout_timeout: Duration,
    call_timeout: Duration,
    start_timeout: Duration,
    heartbeat_interval: Option<Duration>,
    heartbeat_timeout: Option<Duration>,
    max_missed_heartbeats: u32,
    restart_backoff: (Duration, Duration),
    stable_after: Duration,
    breaker: RestartBreaker,
    max_retries: u32,
    shutdown_grace: Duration,
    term_grace: Duration,
    idle_timeout: Duration,
    init: Vec<Op>,
    lm: Option<Arc<dyn LanguageModel>>,
    kill_process_group: bool,
    fork_server: bool,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("python", &self.python)
            .field("worker_args", &self.worker_args)
            .field("min_workers", &self.min_workers)
            .field("max_workers", &self.max_workers)
            .field("lm", &self.lm.as_ref().map(|lm| lm.model().to_string()))
            .finish_non_exhaustive()
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            python: "python3".into(),
            worker_args: vec!["-m".into(), "dspex_worker".into()],
            eager_import: false,
            memory_mb: None,
            extra_args: Vec::new(),
            env_allow: DEFAULT_ENV_ALLOW.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            thread_cap: 1,
            current_dir: None,
            min_workers: 2,
            max_workers: 2,
            queue_bound: 256,
            checkout_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(300),
            start_timeout: Duration::from_secs(60),
            heartbeat_interval: Some(Duration::from_secs(5)),
            heartbeat_timeout: None,
            max_missed_heartbeats: 3,
            restart_backoff: (Duration::from_millis(50), Duration::from_secs(5)),
            stable_after: Duration::from_secs(10),
            breaker: RestartBreaker::default(),
            max_retries: 2,
            shutdown_grace: Duration::from_secs(5),
            term_grace: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            init: Vec::new(),
            lm: None,
            kill_process_group: true,
            fork_server: false,
        }
    }
}

impl PoolBuilder {
    /// The Python interpreter (default `python3`; point it at the venv's `bin/python`).
    #[must_use]
    pub fn python(mut self, path: impl Into<OsString>) -> Self {
        self.python = path.into();
        self
    }

    /// What the interpreter runs, replacing `-m dspex_worker` (a script path, say, for a test
    /// worker). The flags below are appended after these.
    #[must_use]
    pub fn worker_args<S: Into<OsString>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.worker_args = args.into_iter().map(Into::into).collect();
        self
    }

    /// `--eager-import`: `import dspy` before `ready` (slower start, no delay on the first call).
    #[must_use]
    pub fn eager_import(mut self, eager: bool) -> Self {
        self.eager_import = eager;
        self
    }

    /// `--memory-mb N`: the worker's address space limit (RLIMIT_AS), set by the worker.
    #[must_use]
    pub fn memory_mb(mut self, mb: u64) -> Self {
        self.memory_mb = Some(mb);
        self
    }

    /// One more argument for the worker, after the others.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Lets the worker inherit this variable of the pool's environment (besides
    /// [`DEFAULT_ENV_ALLOW`]).
    #[must_use]
    pub fn env_allow(mut self, name: impl Into<String>) -> Self {
        self.env_allow.push(name.into());
        self
    }

    /// Sets a variable in the worker's environment.
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Threads for numeric libraries (`OMP_NUM_THREADS` and friends; default 1).
    #[must_use]
    pub fn thread_cap(mut self, threads: u32) -> Self {
        self.thread_cap = threads.max(1);
        self
    }

    /// The workers' working directory (default: the pool's).
    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Workers kept running (default 2); all are started at once by [`build`](Self::build).
    /// Raises `max_workers` to match if needed.
    #[must_use]
    pub fn min_workers(mut self, n: usize) -> Self {
        self.min_workers = n.max(1);
        self.max_workers = self.max_workers.max(self.min_workers);
        self
    }

    /// Most workers: above `min_workers`, extra workers start when calls queue, and stop after
    /// [`idle_timeout`](Self::idle_timeout) idle (default: `min_workers`).
    #[must_use]
    pub fn max_workers(mut self, n: usize) -> Self {
        self.max_workers = n.max(1);
        self.min_workers = self.min_workers.min(self.max_workers);
        self
    }

    /// Exactly `n` workers.
    #[must_use]
    pub fn workers(self, n: usize) -> Self {
        self.min_workers(n).max_workers(n)
    }

    /// Calls that may wait for a worker (default 256); one more gets
    /// [`BridgeError::PoolSaturated`] at once.
    #[must_use]
    pub fn queue_bound(mut self, n: usize) -> Self {
        self.queue_bound = n;
        self
    }

    /// How long a call waits for a worker (default 30 s) before
    /// [`BridgeError::CheckoutTimeout`].
    #[must_use]
    pub fn checkout_timeout(mut self, timeout: Duration) -> Self {
        self.checkout_timeout = timeout;
        self
    }

    /// How long a call may run on its worker (default 300 s); past it the worker is killed and
    /// replaced, and the caller gets [`BridgeError::Timeout`]. Per call:
    /// [`RequestOptions::timeout`].
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// How long a worker may take to send `ready` and run the init operations (default 60 s).
    #[must_use]
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Ping every `interval` (default 5 s); `None` turns heartbeats off.
    #[must_use]
    pub fn heartbeat_interval(mut self, interval: Option<Duration>) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// How long a ping may take before it counts as missed (default: the interval).
    #[must_use]
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = Some(timeout);
        self
    }

    /// Missed pings in a row after which the worker is killed and replaced (default 3).
    #[must_use]
    pub fn max_missed_heartbeats(mut self, n: u32) -> Self {
        self.max_missed_heartbeats = n.max(1);
        self
    }

    /// The delay before a replacement starts: `base`, doubled for each consecutive failure
    /// (failed starts, and workers dying within [`stable_after`](Self::stable_after) of their
    /// start), up to `max` (default 50 ms … 5 s).
    #[must_use]
    pub fn restart_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.restart_backoff = (base, max.max(base));
        self
    }

    /// A worker that lived this long resets the backoff when it dies (default 10 s).
    #[must_use]
    pub fn stable_after(mut self, d: Duration) -> Self {
        self.stable_after = d;
        self
    }

    /// The restart breaker (default: 20 restarts per 60 s, then a 30 s pause).
    #[must_use]
    pub fn restart_breaker(mut self, breaker: RestartBreaker) -> Self {
        self.breaker = breaker;
        self
    }

    /// Retries of an idempotent call on another worker after its worker crashed (default 2).
    #[must_use]
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// How long [`Pool::shutdown`] waits for running calls and for the workers to exit after
    /// the `shutdown` operation (default 5 s), before SIGTERM.
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How long a worker has after SIGTERM before SIGKILL (default 2 s).
    #[must_use]
    pub fn term_grace(mut self, grace: Duration) -> Self {
        self.term_grace = grace;
        self
    }

    /// How long a worker above `min_workers` may stay idle before it is stopped (default 60 s).
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// An operation every worker runs after `ready` and before its first call (in order), such
    /// as `configure`. A worker whose init fails is replaced.
    #[must_use]
    pub fn init(mut self, op: Op) -> Self {
        self.init.push(op);
        self
    }

    /// The LM that answers the workers' `lm_call`s (default: the LM of
    /// [`Settings::current`](crate::settings::Settings::current) in the calling task).
    #[must_use]
    pub fn lm(mut self, lm: Arc<dyn LanguageModel>) -> Self {
        self.lm = Some(lm);
        self
    }

    /// Signal a worker's whole process group (with `kill(1)`) when it is killed or terminated,
    /// so that processes it started die too (default on).
    #[must_use]
    pub fn kill_process_group(mut self, on: bool) -> Self {
        self.kill_process_group = on;
        self
    }

    /// Start workers by forking them from a fork server (default off): one extra process that
    /// imports DSPy once (`python -m dspex_worker --fork-server NAME`, started by
    /// [`build`](Self::build)); each worker is then a small stub process whose stdio a child
    /// forked from the server takes over. A replacement worker costs one Python start and a
    /// `fork` instead of one `import dspy` (about a second of CPU), and arrives with DSPy
    /// imported. The stub is the worker the pool sees (its pid, exit status and process group,
    /// which the forked child joins); killing it kills the child. If the server dies, stubs
    /// start workers the usual way. The server stops with [`Pool::shutdown`] (or the pool's
    /// last handle); [`Pool::fork_server_pid`] names it. Linux only (abstract Unix sockets).
    #[must_use]
    pub fn fork_server(mut self, on: bool) -> Self {
        self.fork_server = on;
        self
    }

    fn worker_config(&self) -> WorkerConfig {
        let mut args = self.worker_args.clone();
        if self.eager_import {
            args.push("--eager-import".into());
        }
        if let Some(mb) = self.memory_mb {
            args.push("--memory-mb".into());
            args.push(mb.to_string().into());
        }
        args.extend(self.extra_args.iter().cloned());
        WorkerConfig {
            program: self.python.clone(),
            args,
            env_allow: self.env_allow.clone(),
            env: self.env.clone(),
            thread_cap: self.thread_cap,
            current_dir: self.current_dir.clone(),
            start_timeout: self.start_timeout,
            heartbeat_interval: self.heartbeat_interval.filter(|d| !d.is_zero()),
            heartbeat_timeout: self
                .heartbeat_timeout
                .or(self.heartbeat_interval)
                .unwrap_or(Duration::from_secs(5)),
            max_missed_heartbeats: self.max_missed_heartbeats,
            kill_process_group: self.kill_process_group,
        }
    }

    /// Starts `min_workers` workers at once and waits until each has sent `ready` and run the
    /// init operations. If any cannot start, the others are stopped and its error returned.
    pub async fn build(self) -> Result<Pool, BridgeError> {
        let mut worker_config = self.worker_config();
        let fork_server = if self.fork_server {
            let server =
                ForkServer::start(&worker_config, &self.worker_args, self.memory_mb).await?;
            worker_config.args.push("--fork-from".into());
            worker_config.args.push(server.name().into());
            Some(server)
        } else {
            None
        };
        let worker_config = Arc::new(worker_config);
        let min = self.min_workers;
        let shared = Arc::new_cyclic(|weak| Shared {
            weak: weak.clone(),
            worker_config,
            fork_server,
            config: self,
            state: Mutex::new(State::default()),
            counters: Counters::default(),
            request_ids: Arc::new(AtomicU64::new(1)),
            next_worker: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
            stop: watch::Sender::new(false),
            starts: Mutex::new(JoinSet::new()),
        });
        lock(&shared.state).starting = min;
        let starts = (0..min).map(|_| shared.start_one());
        let results = futures_util::future::join_all(starts).await;
        let mut workers = Vec::new();
        let mut first_error = None;
        for r in results {
            match r {
                Ok(w) => workers.push(w),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            lock(&shared.state).shutting_down = true;
            for w in &workers {
                w.kill("the pool could not start all its workers");
            }
            return Err(e);
        }
        {
            let mut st = lock(&shared.state);
            st.starting = 0;
            for w in &workers {
                // One that died already is replaced by the maintenance task.
                if w.mark_ready() {
                    st.workers.insert(w.wref.id, w.clone());
                    st.idle.push_back((w.wref.id, Instant::now()));
                }
            }
        }
        tracing::info!(target: "dspex::bridge", workers = min, "pool started");
        tokio::spawn(maintain(Arc::downgrade(&shared)));
        Ok(Pool { shared })
    }
}

struct Waiter {
    tx: oneshot::Sender<Result<Lease, BridgeError>>,
    /// The worker this waiter must get (strict affinity), or any.
    target: Option<u64>,
    /// The session to bind to the worker it gets, if unbound.
    session: Option<u64>,
}

struct SessionSlot {
    name: String,
    mode: AffinityMode,
    worker: Option<WorkerRef>,
    lost: Option<(WorkerRef, String)>,
}

#[derive(Default)]
struct RestartState {
    consecutive: u32,
    recent: VecDeque<Instant>,
    open_until: Option<Instant>,
}

#[derive(Default)]
struct State {
    workers: HashMap<u64, Arc<Worker>>,
    idle: VecDeque<(u64, Instant)>,
    waiters: VecDeque<Waiter>,
    sessions: HashMap<u64, SessionSlot>,
    starting: usize,
    shutting_down: bool,
    restarts: RestartState,
    gone: VecDeque<WorkerInfo>,
    last_failure: Option<String>,
}

impl State {
    fn breaker_open(&self, now: Instant) -> Option<Duration> {
        self.restarts
            .open_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }
}

pub(crate) struct Shared {
    weak: Weak<Shared>,
    config: PoolBuilder,
    worker_config: Arc<WorkerConfig>,
    /// The fork server the workers are forked from, if the pool has one.
    fork_server: Option<ForkServer>,
    state: Mutex<State>,
    counters: Counters,
    request_ids: Arc<AtomicU64>,
    next_worker: AtomicU64,
    next_session: AtomicU64,
    /// Turns `true` when the pool shuts down: starts under way are abandoned.
    stop: watch::Sender<bool>,
    /// The tasks starting replacement and overflow workers; each ends `true` if it abandoned a
    /// start whose process was already running.
    starts: Mutex<JoinSet<bool>>,
}

/// Kills a worker whose start was abandoned during its init operations (the start's future
/// was dropped), unless [`kept`](Self::kept).
struct KillUnlessKept(Option<Arc<Worker>>);

impl KillUnlessKept {
    fn kept(mut self) -> Option<Arc<Worker>> {
        self.0.take()
    }
}

impl Drop for KillUnlessKept {
    fn drop(&mut self) {
        if let Some(worker) = self.0.take() {
            worker.force_kill();
        }
    }
}

/// A worker checked out for one call; dropping it gives the worker back.
pub(crate) struct Lease {
    worker: Option<Arc<Worker>>,
    shared: Arc<Shared>,
}

impl Lease {
    fn new(worker: Arc<Worker>, shared: Arc<Shared>) -> Self {
        Lease {
            worker: Some(worker),
            shared,
        }
    }

    fn worker(&self) -> Option<&Arc<Worker>> {
        self.worker.as_ref()
    }

    /// Takes the worker out without giving it back (it is still `Busy`).
    fn disarm(mut self) -> Option<Arc<Worker>> {
        self.worker.take()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            self.shared.release(&worker);
        }
    }
}

impl WorkerHooks for Shared {
    fn worker_down(&self, worker: &Arc<Worker>) {
        let Some(shared) = self.weak.upgrade() else {
            return;
        };
        shared.on_worker_down(worker);
    }

    fn worker_released(&self, worker: &Arc<Worker>) {
        let Some(shared) = self.weak.upgrade() else {
            return;
        };
        shared.make_available(worker);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone without a shutdown: kill the workers now.
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for w in st.workers.values() {
            w.drain("the pool was dropped");
            w.force_kill();
        }
    }
}

impl Shared {
    fn arc(&self) -> Option<Arc<Shared>> {
        self.weak.upgrade()
    }

    /// Spawns a worker and runs the init operations on it. The caller has counted it in
    /// `starting`; this does not touch the state.
    ///
    /// Dropping the future kills the process: before `ready` the child is killed on drop,
    /// during the init operations by a guard.
    async fn start_one(&self) -> Result<Arc<Worker>, BridgeError> {
        let id = self.next_worker.fetch_add(1, Ordering::Relaxed);
        let hooks: Weak<dyn WorkerHooks> = self.weak.clone();
        let worker =
            Worker::spawn(id, &self.worker_config, self.request_ids.clone(), hooks).await?;
        let guard = KillUnlessKept(Some(worker.clone()));
        for op in &self.config.init {
            if let Err(e) = worker
                .request(
                    op,
                    true,
                    Some(self.config.start_timeout),
                    self.config.lm.as_ref(),
                )
                .await
            {
                drop(guard.kept());
                worker.kill(format!("init `{}` failed", op.name()));
                return Err(e);
            }
        }
        drop(guard.kept());
        Ok(worker)
    }

    /// A start (not the initial ones) finished.
    fn started(self: &Arc<Self>, result: Result<Arc<Worker>, BridgeError>) {
        let mut st = lock(&self.state);
        st.starting = st.starting.saturating_sub(1);
        match result {
            Ok(w) if st.shutting_down => {
                drop(st);
                w.drain("the pool is shutting down");
                w.force_kill();
            }
            Ok(w) => {
                if !w.mark_ready() {
                    // It died during init.
                    st.restarts.consecutive += 1;
                    drop(st);
                    self.ensure_workers();
                    return;
                }
                st.workers.insert(w.wref.id, w.clone());
                drop(st);
                tracing::info!(
                    target: "dspex::bridge",
                    worker = w.wref.id, pid = w.wref.pid, "replacement worker ready"
                );
                self.make_available(&w);
            }
            Err(e) => {
                st.restarts.consecutive += 1;
                st.last_failure = Some(e.to_string());
                drop(st);
                tracing::warn!(target: "dspex::bridge", error = %e, "a worker failed to start");
                self.ensure_workers();
            }
        }
    }

    /// Starts replacements until `min_workers` are live or starting, within the backoff and
    /// the breaker.
    fn ensure_workers(self: &Arc<Self>) {
        let mut fail_waiters = None;
        {
            let mut st = lock(&self.state);
            if st.shutting_down {
                return;
            }
            while st.workers.len() + st.starting < self.config.min_workers {
                match self.admit_restart(&mut st) {
                    Some(delay) => {
                        st.starting += 1;
                        inc(&self.counters.restarts);
                        self.spawn_start(delay);
                    }
                    None => {
                        if st.workers.is_empty() && st.starting == 0 {
                            fail_waiters =
                                Some((std::mem::take(&mut st.waiters), self.breaker_error(&st)));
                        }
                        break;
                    }
                }
            }
        }
        if let Some((waiters, error)) = fail_waiters {
            for w in waiters {
                let _ = w.tx.send(Err(error.clone()));
            }
        }
    }

    fn breaker_error(&self, st: &State) -> BridgeError {
        let now = Instant::now();
        BridgeError::BreakerOpen {
            restarts: st
                .restarts
                .recent
                .len()
                .max(self.config.breaker.max_restarts),
            window: self.config.breaker.window,
            retry_in: st.breaker_open(now).unwrap_or_default(),
            last_failure: st.last_failure.clone(),
        }
    }

    /// The delay before the next restart, or `None` while the breaker is open.
    fn admit_restart(&self, st: &mut State) -> Option<Duration> {
        let now = Instant::now();
        let breaker = self.config.breaker;
        let r = &mut st.restarts;
        if let Some(until) = r.open_until {
            if now < until {
                return None;
            }
            r.open_until = None;
            r.recent.clear();
            tracing::info!(target: "dspex::bridge", "restart breaker closed: restarts resume");
        }
        while r
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > breaker.window)
        {
            r.recent.pop_front();
        }
        if r.recent.len() >= breaker.max_restarts {
            r.open_until = Some(now + breaker.cooldown);
            tracing::error!(
                target: "dspex::bridge",
                restarts = r.recent.len(), window = ?breaker.window, cooldown = ?breaker.cooldown,
                last_failure = st.last_failure.as_deref().unwrap_or(""),
                "restart breaker open: workers keep dying; restarts paused"
            );
            return None;
        }
        r.recent.push_back(now);
        let (base, max) = self.config.restart_backoff;
        let factor = 2u32.saturating_pow(r.consecutive.min(20));
        Some(base.saturating_mul(factor).min(max))
    }

    fn spawn_start(&self, delay: Duration) {
        let weak = self.weak.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Only reachable outside a runtime (the pool's own tasks are gone): nothing can run.
            let mut st = lock(&self.state);
            st.starting = st.starting.saturating_sub(1);
            tracing::error!(target: "dspex::bridge", "no tokio runtime: cannot start a worker");
            return;
        };
        let mut stop = self.stop.subscribe();
        let task = async move {
            // Set once a process is being started: abandoning the start then kills it.
            let began = AtomicBool::new(false);
            // `true` once `started` has the result (it does the bookkeeping).
            let run = async {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let Some(shared) = weak.upgrade() else {
                    return false;
                };
                if lock(&shared.state).shutting_down {
                    return false;
                }
                began.store(true, Ordering::Relaxed);
                // Hold only a weak reference while the worker starts, so dropping the pool is
                // not delayed.
                let start = {
                    let shared = shared.clone();
                    async move { shared.start_one().await }
                };
                drop(shared);
                let result = start.await;
                match weak.upgrade() {
                    Some(shared) => shared.started(result),
                    None => {
                        if let Ok(w) = result {
                            w.force_kill();
                        }
                    }
                }
                true
            };
            // On shutdown (or with the pool dropped) `run` is dropped, and with it the start,
            // which kills its process.
            let finished = tokio::select! {
                finished = run => finished,
                () = flag::raised(&mut stop) => false,
            };
            if !finished && let Some(shared) = weak.upgrade() {
                let mut st = lock(&shared.state);
                st.starting = st.starting.saturating_sub(1);
            }
            !finished && began.load(Ordering::Relaxed)
        };
        let mut starts = lock(&self.starts);
        // Forget the finished ones, so the set holds only starts under way.
        while starts.try_join_next().is_some() {}
        starts.spawn_on(task, &runtime);
    }

    fn on_worker_down(self: &Arc<Self>, worker: &Arc<Worker>) {
        let info = worker.info();
        let reason = worker.failure().unwrap_or_else(|| "it exited".to_string());
        let mut lost = Vec::new();
        let expected;
        {
            let mut st = lock(&self.state);
            let was_live = st.workers.remove(&worker.wref.id).is_some();
            st.idle.retain(|(id, _)| *id != worker.wref.id);
            if st.gone.len() == 32 {
                st.gone.pop_front();
            }
            st.gone.push_back(info.clone());
            expected = st.shutting_down || info.state == WorkerState::Stopped;
            if !was_live {
                // A worker still starting, or already retired: its starter or retirer handles it.
                return;
            }
            for slot in st.sessions.values_mut() {
                if slot.worker.is_some_and(|w| w.id == worker.wref.id) {
                    if slot.mode.is_strict() {
                        slot.lost = Some((worker.wref, reason.clone()));
                    } else {
                        slot.worker = None;
                    }
                }
            }
            let waiters = std::mem::take(&mut st.waiters);
            for w in waiters {
                let session = w.session.and_then(|s| st.sessions.get(&s));
                let session_lost = session.is_some_and(|s| {
                    s.lost
                        .as_ref()
                        .is_some_and(|(lost, _)| lost.id == worker.wref.id)
                });
                if w.target == Some(worker.wref.id) || session_lost {
                    let name = session.map(|s| s.name.clone()).unwrap_or_default();
                    lost.push((w, name));
                } else {
                    st.waiters.push_back(w);
                }
            }
            if !expected {
                inc(&self.counters.worker_failures);
                if worker.uptime() >= self.config.stable_after {
                    st.restarts.consecutive = 0;
                } else {
                    st.restarts.consecutive += 1;
                }
                st.last_failure = Some(format!("{}: {reason}", worker.wref));
            }
        }
        for (w, session) in lost {
            let _ = w.tx.send(Err(BridgeError::SessionLost {
                session,
                worker: worker.wref,
                reason: reason.clone(),
            }));
        }
        if !expected {
            self.ensure_workers();
        }
    }

    /// Gives a worker back after a lease.
    fn release(&self, worker: &Arc<Worker>) {
        match worker.end_lease() {
            LeaseEnd::Free => {
                if let Some(shared) = self.arc() {
                    shared.make_available(worker);
                }
            }
            LeaseEnd::Deferred | LeaseEnd::Gone => {}
        }
    }

    /// A free worker: hand it to the first waiter that may take it, or put it in the idle list.
    fn make_available(self: &Arc<Self>, worker: &Arc<Worker>) {
        let mut st = lock(&self.state);
        if !st.workers.contains_key(&worker.wref.id) {
            return;
        }
        if st.shutting_down {
            drop(st);
            worker.drain("the pool is shutting down");
            return;
        }
        let id = worker.wref.id;
        while let Some(pos) = st.waiters.iter().position(|w| may_take(&st, w, id)) {
            let Some(waiter) = st.waiters.remove(pos) else {
                break;
            };
            if !worker.begin_lease() {
                // It died in between: the waiter stays first in line.
                st.waiters.insert(pos, waiter);
                return;
            }
            match waiter.tx.send(Ok(Lease::new(worker.clone(), self.clone()))) {
                Ok(()) => {
                    if let Some(sid) = waiter.session {
                        bind(&mut st, sid, worker.wref);
                    }
                    return;
                }
                Err(Ok(lease)) => {
                    // The waiter gave up; take the worker back without releasing through the
                    // lease (we hold the state lock).
                    if let Some(w) = lease.disarm() {
                        let _ = w.end_lease();
                    }
                }
                Err(Err(_)) => {}
            }
        }
        st.waiters.retain(|w| !w.tx.is_closed());
        st.idle.push_back((id, Instant::now()));
    }

    /// Takes a free worker: the session's if `target`, else any.
    fn take_idle(self: &Arc<Self>, st: &mut State, target: Option<u64>) -> Option<Arc<Worker>> {
        match target {
            Some(id) => {
                let pos = st.idle.iter().position(|(w, _)| *w == id)?;
                let worker = st.workers.get(&id)?.clone();
                if worker.begin_lease() {
                    st.idle.remove(pos);
                    Some(worker)
                } else {
                    None
                }
            }
            // The most recently freed worker first (LIFO): its process, and the CPU it last ran
            // on, are warm — on a small VM a sequential ping answers in about half the time of a
            // round-robin over idle workers — and the workers a light load does not need stay
            // idle long enough for `retire_idle` to stop the overflow ones.
            None => {
                while let Some((id, _)) = st.idle.pop_back() {
                    if let Some(worker) = st.workers.get(&id)
                        && worker.begin_lease()
                    {
                        return Some(worker.clone());
                    }
                }
                None
            }
        }
    }

    /// Takes the free worker that holds the fewest strict sessions, for the first call of a
    /// strict session: its objects stay there, so spreading sessions keeps one worker's death
    /// from taking most of them (and their load) at once. Ties go to the most recently freed.
    fn take_idle_for_new_session(self: &Arc<Self>, st: &mut State) -> Option<Arc<Worker>> {
        let held = |id: u64| {
            st.sessions
                .values()
                .filter(|s| s.mode.is_strict() && s.lost.is_none())
                .filter(|s| s.worker.is_some_and(|w| w.id == id))
                .count()
        };
        let mut best: Option<(usize, usize)> = None;
        for (pos, (id, _)) in st.idle.iter().enumerate().rev() {
            if st
                .workers
                .get(id)
                .is_none_or(|w| w.state() != WorkerState::Ready)
            {
                continue;
            }
            let n = held(*id);
            if best.is_none_or(|(_, fewest)| n < fewest) {
                best = Some((pos, n));
            }
        }
        let (pos, _) = best?;
        let (id, since) = st.idle.remove(pos)?;
        let worker = st.workers.get(&id)?.clone();
        if worker.begin_lease() {
            Some(worker)
        } else {
            st.idle.insert(pos, (id, since));
            None
        }
    }

    /// Checks out a worker for one call.
    async fn checkout(self: &Arc<Self>, session: Option<u64>) -> Result<Lease, BridgeError> {
        let rx = {
            let mut st = lock(&self.state);
            if st.shutting_down {
                return Err(BridgeError::ShutDown);
            }
            let mut target = None;
            if let Some(sid) = session {
                let Some(slot) = st.sessions.get(&sid) else {
                    return Err(BridgeError::ShutDown);
                };
                let (mode, name, bound) = (slot.mode, slot.name.clone(), slot.worker);
                if let Some((worker, reason)) = slot.lost.clone() {
                    return Err(BridgeError::SessionLost {
                        session: name,
                        worker,
                        reason,
                    });
                }
                if let Some(bound) = bound {
                    if !st.workers.contains_key(&bound.id) {
                        // Down, and the pool has not processed it yet.
                        if mode.is_strict() {
                            return Err(BridgeError::SessionLost {
                                session: name,
                                worker: bound,
                                reason: "it exited".into(),
                            });
                        }
                    } else if let Some(w) = self.take_idle(&mut st, Some(bound.id)) {
                        return Ok(Lease::new(w, self.clone()));
                    } else {
                        match mode {
                            AffinityMode::StrictFailFast => {
                                return Err(BridgeError::SessionBusy {
                                    session: name,
                                    worker: bound,
                                });
                            }
                            AffinityMode::StrictQueue => target = Some(bound.id),
                            AffinityMode::Hint => {}
                        }
                    }
                }
            }
            let unbound_strict = session.is_some_and(|sid| {
                st.sessions
                    .get(&sid)
                    .is_some_and(|s| s.mode.is_strict() && s.worker.is_none())
            });
            let idle = if target.is_some() {
                None
            } else if unbound_strict {
                self.take_idle_for_new_session(&mut st)
                    .or_else(|| self.take_idle(&mut st, None))
            } else {
                self.take_idle(&mut st, None)
            };
            if let Some(w) = idle {
                if let Some(sid) = session {
                    bind(&mut st, sid, w.wref);
                }
                return Ok(Lease::new(w, self.clone()));
            }
            if st.workers.is_empty()
                && st.starting == 0
                && st.breaker_open(Instant::now()).is_some()
            {
                return Err(self.breaker_error(&st));
            }
            st.waiters.retain(|w| !w.tx.is_closed());
            if st.waiters.len() >= self.config.queue_bound {
                return Err(BridgeError::PoolSaturated {
                    workers: st.workers.len(),
                    queued: st.waiters.len(),
                });
            }
            // Grow past the minimum when calls queue.
            if target.is_none()
                && st.workers.len() + st.starting < self.config.max_workers
                && st.starting <= st.waiters.len()
            {
                st.starting += 1;
                inc(&self.counters.restarts);
                self.spawn_start(Duration::ZERO);
            }
            let (tx, rx) = oneshot::channel();
            st.waiters.push_back(Waiter {
                tx,
                target,
                session,
            });
            rx
        };
        match tokio::time::timeout(self.config.checkout_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(BridgeError::ShutDown),
            Err(_) => Err(BridgeError::CheckoutTimeout {
                waited: self.config.checkout_timeout,
            }),
        }
    }

    /// Runs `op`: checkout, call, retries of idempotent calls after crashes, stats; in a
    /// `bridge.request` span.
    async fn run(
        self: &Arc<Self>,
        op: &Op,
        session: Option<(u64, AffinityMode)>,
        options: &RequestOptions,
    ) -> Result<(Value, WorkerRef), BridgeError> {
        use tracing::Instrument;
        let span = tracing::debug_span!(
            target: "dspex::bridge",
            "bridge.request",
            op = op.name(),
            session = session.map(|(id, _)| id),
        );
        self.run_inner(op, session, options).instrument(span).await
    }

    async fn run_inner(
        self: &Arc<Self>,
        op: &Op,
        session: Option<(u64, AffinityMode)>,
        options: &RequestOptions,
    ) -> Result<(Value, WorkerRef), BridgeError> {
        let started = Instant::now();
        let idempotent = options.idempotent.unwrap_or_else(|| op.is_idempotent());
        let may_retry = idempotent && session.is_none_or(|(_, mode)| !mode.is_strict());
        let timeout = options.timeout.unwrap_or(self.config.call_timeout);
        let lm = options.lm.as_ref().or(self.config.lm.as_ref());
        let mut attempt = 0;
        let result = loop {
            let lease = match self.checkout(session.map(|(id, _)| id)).await {
                Ok(lease) => lease,
                Err(e) => break Err(e),
            };
            let Some(worker) = lease.worker().cloned() else {
                break Err(BridgeError::ShutDown);
            };
            let result = worker.request(op, true, Some(timeout), lm).await;
            drop(lease);
            match result {
                Err(BridgeError::WorkerCrashed { ref reason, .. })
                    if may_retry && attempt < self.config.max_retries =>
                {
                    attempt += 1;
                    inc(&self.counters.retries);
                    tracing::debug!(
                        target: "dspex::bridge",
                        op = op.name(), worker = %worker.wref, reason = %reason, attempt,
                        "retrying on another worker"
                    );
                }
                Ok(value) => break Ok((value, worker.wref)),
                Err(e) => break Err(e),
            }
        };
        let c = &self.counters;
        let elapsed = started.elapsed();
        inc(&c.calls);
        c.latency.record(elapsed);
        match &result {
            Ok((_, worker)) => tracing::debug!(
                target: "dspex::bridge",
                worker = %worker, ?elapsed, retries = attempt, "bridge request done"
            ),
            Err(e) => tracing::debug!(
                target: "dspex::bridge",
                error = %e, ?elapsed, retries = attempt, "bridge request failed"
            ),
        }
        match &result {
            Ok(_) => inc(&c.ok),
            Err(e) => {
                inc(&c.errors);
                match e {
                    BridgeError::Remote { .. } => inc(&c.remote_errors),
                    BridgeError::Timeout { .. } => inc(&c.timeouts),
                    BridgeError::WorkerCrashed { .. } => inc(&c.crashes),
                    BridgeError::PoolSaturated { .. } => inc(&c.saturated),
                    BridgeError::CheckoutTimeout { .. } => inc(&c.checkout_timeouts),
                    BridgeError::SessionLost { .. } => inc(&c.sessions_lost),
                    _ => {}
                }
            }
        }
        result
    }

    /// Stops overflow workers idle past the idle timeout (never ones holding a session).
    fn retire_idle(self: &Arc<Self>) {
        let mut retire = Vec::new();
        {
            let mut st = lock(&self.state);
            if st.shutting_down {
                return;
            }
            let now = Instant::now();
            let mut live = st.workers.len();
            let mut i = 0;
            while i < st.idle.len() && live > self.config.min_workers {
                let (id, since) = st.idle[i];
                let holds_session = st
                    .sessions
                    .values()
                    .any(|s| s.worker.is_some_and(|w| w.id == id));
                if now.duration_since(since) >= self.config.idle_timeout && !holds_session {
                    st.idle.remove(i);
                    if let Some(w) = st.workers.remove(&id) {
                        retire.push(w);
                        live -= 1;
                    }
                } else {
                    i += 1;
                }
            }
        }
        for w in retire {
            tracing::info!(target: "dspex::bridge", worker = %w.wref, "retiring an idle overflow worker");
            w.drain("idle above min_workers");
            let grace = self.config.shutdown_grace;
            let term = self.config.term_grace;
            tokio::spawn(async move {
                stop_worker(&w, grace, term).await;
            });
        }
    }
}

/// Whether `waiter` may get worker `id`: a waiter for a particular worker only that one; a
/// waiter of a strict session already bound (by a call of the same session served meanwhile)
/// only its worker; any other waiter any worker.
fn may_take(st: &State, waiter: &Waiter, id: u64) -> bool {
    if waiter.tx.is_closed() {
        return false;
    }
    match waiter.target {
        Some(target) => target == id,
        None => match waiter.session.and_then(|s| st.sessions.get(&s)) {
            Some(slot) if slot.mode.is_strict() => {
                slot.lost.is_none() && slot.worker.is_none_or(|w| w.id == id)
            }
            _ => true,
        },
    }
}

fn bind(st: &mut State, session: u64, worker: WorkerRef) {
    if let Some(slot) = st.sessions.get_mut(&session)
        && slot.worker.is_none()
        && slot.lost.is_none()
    {
        slot.worker = Some(worker);
    }
}

/// How a worker ended in [`stop_worker`].
enum Stopped {
    Graceful,
    Terminated,
    Killed,
    Failed,
}

/// `shutdown`, close stdin, wait; then SIGTERM, wait; then SIGKILL.
///
/// A worker that exits before SIGTERM left gracefully only if it exited with status 0: one that
/// had died already (a crash, or a SIGKILL from another process that the pool has not seen yet,
/// so that it was still listed as ready) also "exits" at once, and must not count as stopped by
/// the shutdown.
async fn stop_worker(worker: &Arc<Worker>, grace: Duration, term_grace: Duration) -> Stopped {
    let deadline = Instant::now() + grace;
    if !worker.state().is_terminal() {
        // The worker answers `shutdown` and exits; a worker still running a call queues it.
        let _ = tokio::time::timeout(grace, worker.request(&Op::Shutdown, false, None, None)).await;
    }
    worker.close_stdin();
    let left = deadline.saturating_duration_since(Instant::now());
    if worker.wait_exit(left).await {
        if worker.exited_cleanly() {
            return Stopped::Graceful;
        }
        tracing::warn!(
            target: "dspex::bridge",
            worker = %worker.wref, reason = worker.failure().as_deref().unwrap_or("it exited"),
            "worker died on its own during shutdown"
        );
        return Stopped::Failed;
    }
    tracing::warn!(target: "dspex::bridge", worker = %worker.wref, "worker did not exit in time: SIGTERM");
    worker.terminate();
    if worker.wait_exit(term_grace).await {
        return Stopped::Terminated;
    }
    tracing::warn!(target: "dspex::bridge", worker = %worker.wref, "worker ignored SIGTERM: SIGKILL");
    worker.force_kill();
    worker.wait_exit(Duration::from_secs(5)).await;
    Stopped::Killed
}

async fn maintain(weak: Weak<Shared>) {
    let tick = Duration::from_millis(250);
    loop {
        tokio::time::sleep(tick).await;
        let Some(shared) = weak.upgrade() else {
            return;
        };
        if lock(&shared.state).shutting_down {
            return;
        }
        shared.ensure_workers();
        shared.retire_idle();
    }
}

/// A supervised pool of Python worker processes running DSPy (`python -m dspex_worker`), speaking
/// the protocol of [`protocol`](super::protocol). Cheap to clone: clones share the pool.
///
/// Calls go to a free worker, the most recently used one first; a call finding none waits in a
/// bounded queue (up to the checkout timeout). Workers that die are replaced (with backoff; a breaker stops restart storms);
/// idempotent calls in flight on a crashed worker are retried on another. Objects live in the
/// worker that created them: use a [`Session`] to keep calls on it.
///
/// Dropping the last handle kills the workers; [`Pool::shutdown`] stops them gracefully.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = lock(&self.shared.state);
        f.debug_struct("Pool")
            .field("workers", &st.workers.len())
            .field("starting", &st.starting)
            .field("queued", &st.waiters.len())
            .field("shutting_down", &st.shutting_down)
            .finish()
    }
}

impl Pool {
    /// A builder with the defaults.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Runs `op` on a free worker and returns its result object.
    pub async fn request(&self, op: Op) -> Result<Value, BridgeError> {
        self.request_with(op, RequestOptions::default()).await
    }

    /// [`request`](Self::request) with options.
    pub async fn request_with(
        &self,
        op: Op,
        options: RequestOptions,
    ) -> Result<Value, BridgeError> {
        Ok(self.shared.run(&op, None, &options).await?.0)
    }

    /// Pings a free worker.
    pub async fn ping(&self) -> Result<super::protocol::PingResult, BridgeError> {
        let (value, worker) = self
            .shared
            .run(&Op::Ping, None, &RequestOptions::default())
            .await?;
        decode(worker, "ping", value)
    }

    /// Calls `object` on any free worker (for objects every worker has, such as ones created
    /// by an init operation); the prediction's fields.
    pub async fn call(
        &self,
        object: impl Into<String>,
        inputs: Map<String, Value>,
    ) -> Result<Map<String, Value>, BridgeError> {
        let op = Op::Call {
            object: object.into(),
            inputs,
        };
        let (value, worker) = self
            .shared
            .run(&op, None, &RequestOptions::default())
            .await?;
        Ok(decode::<super::protocol::CallResult>(worker, "call", value)?.outputs)
    }

    /// A new session: its calls go to the worker that ran its first call, per `mode`.
    pub fn session(&self, mode: AffinityMode) -> Session {
        let id = self.shared.next_session.fetch_add(1, Ordering::Relaxed);
        let name = format!("s{id}");
        lock(&self.shared.state).sessions.insert(
            id,
            SessionSlot {
                name: name.clone(),
                mode,
                worker: None,
                lost: None,
            },
        );
        Session {
            inner: Arc::new(SessionInner {
                pool: self.clone(),
                id,
                name,
                mode,
            }),
        }
    }

    /// The statistics now.
    pub fn stats(&self) -> PoolStats {
        let st = lock(&self.shared.state);
        let workers: Vec<WorkerInfo> = {
            let mut v: Vec<WorkerInfo> = st.workers.values().map(|w| w.info()).collect();
            v.sort_by_key(|w| w.worker.id);
            v
        };
        let count = |s: WorkerState| workers.iter().filter(|w| w.state == s).count();
        let (ready, busy, draining) = (
            count(WorkerState::Ready),
            count(WorkerState::Busy),
            count(WorkerState::Draining),
        );
        let c = &self.shared.counters;
        PoolStats {
            starting: st.starting,
            ready,
            busy,
            draining,
            utilization: if workers.is_empty() {
                0.0
            } else {
                busy as f64 / workers.len() as f64
            },
            queue_depth: st.waiters.iter().filter(|w| !w.tx.is_closed()).count(),
            calls: get(&c.calls),
            ok: get(&c.ok),
            errors: get(&c.errors),
            remote_errors: get(&c.remote_errors),
            timeouts: get(&c.timeouts),
            crashes: get(&c.crashes),
            saturated: get(&c.saturated),
            checkout_timeouts: get(&c.checkout_timeouts),
            sessions_lost: get(&c.sessions_lost),
            retries: get(&c.retries),
            recreated: get(&c.recreated),
            restarts: get(&c.restarts),
            worker_failures: get(&c.worker_failures),
            breaker_open: st.breaker_open(Instant::now()).is_some(),
            last_failure: st.last_failure.clone(),
            latency: c.latency.snapshot(),
            recently_gone: st.gone.iter().cloned().collect(),
            workers,
        }
    }

    /// Retries of an idempotent call after its worker crashed ([`PoolBuilder::max_retries`]).
    pub(crate) fn max_retries(&self) -> u32 {
        self.shared.config.max_retries
    }

    /// Counts a bridged module created again after its worker died.
    pub(crate) fn count_recreated(&self) {
        inc(&self.shared.counters.recreated);
    }

    /// The fork server's process id, when the pool has one ([`PoolBuilder::fork_server`]).
    pub fn fork_server_pid(&self) -> Option<u32> {
        self.shared.fork_server.as_ref().map(ForkServer::pid)
    }

    /// The process ids of the live workers.
    pub fn worker_pids(&self) -> Vec<u32> {
        let st = lock(&self.shared.state);
        let mut pids: Vec<u32> = st.workers.values().map(|w| w.wref.pid).collect();
        pids.sort_unstable();
        pids
    }

    /// Stops the pool: new calls get [`BridgeError::ShutDown`]; running calls may finish
    /// within the shutdown grace; then each worker gets the `shutdown` operation and end of
    /// stdin; one that has not exited by the end of the grace gets SIGTERM (sent to its process
    /// group with `kill(1)`), and after the term grace SIGKILL. Idempotent.
    ///
    /// The report counts the workers in the pool when it is called. A replacement not started
    /// yet (a worker died just before) is not started; a start under way is abandoned and its
    /// process killed before this returns (counted in
    /// [`abandoned_starts`](ShutdownReport::abandoned_starts)).
    pub async fn shutdown(&self) -> ShutdownReport {
        let shared = &self.shared;
        let (workers, waiters) = {
            let mut st = lock(&shared.state);
            st.shutting_down = true;
            st.idle.clear();
            (
                st.workers.values().cloned().collect::<Vec<_>>(),
                std::mem::take(&mut st.waiters),
            )
        };
        // Starts under way end now, their processes killed, so that none outlives the pool.
        shared.stop.send_replace(true);
        let mut starts = std::mem::take(&mut *lock(&shared.starts));
        let mut report = ShutdownReport::default();
        while let Some(joined) = starts.join_next().await {
            report.abandoned_starts += usize::from(joined.unwrap_or(false));
        }
        for w in waiters {
            let _ = w.tx.send(Err(BridgeError::ShutDown));
        }
        tracing::info!(target: "dspex::bridge", workers = workers.len(), "pool shutting down");
        for w in &workers {
            w.drain("the pool is shutting down");
        }
        let grace = shared.config.shutdown_grace;
        let term = shared.config.term_grace;
        let deadline = Instant::now() + grace;
        let stops = workers.iter().map(|w| async move {
            w.wait_idle(deadline.saturating_duration_since(Instant::now()))
                .await;
            let left = deadline.saturating_duration_since(Instant::now());
            stop_worker(w, left.max(Duration::from_millis(100)), term).await
        });
        for stopped in futures_util::future::join_all(stops).await {
            match stopped {
                Stopped::Graceful => report.graceful += 1,
                Stopped::Terminated => report.terminated += 1,
                Stopped::Killed => report.killed += 1,
                Stopped::Failed => report.failed += 1,
            }
        }
        {
            let mut st = lock(&shared.state);
            st.workers.clear();
        }
        if let Some(server) = &shared.fork_server {
            server.stop(shared.config.term_grace).await;
        }
        tracing::info!(target: "dspex::bridge", ?report, "pool shut down");
        report
    }
}

pub(crate) fn decode<T: DeserializeOwned>(
    worker: WorkerRef,
    op: &'static str,
    value: Value,
) -> Result<T, BridgeError> {
    serde_json::from_value(value).map_err(|e| BridgeError::BadResult {
        worker,
        op,
        message: e.to_string(),
    })
}

struct SessionInner {
    pool: Pool,
    id: u64,
    name: String,
    mode: AffinityMode,
}

impl Drop for SessionInner {
    fn drop(&mut self) {
        lock(&self.pool.shared.state).sessions.remove(&self.id);
    }
}

/// A group of calls that share the objects they create: they run on one worker, as the
/// [`AffinityMode`] says. Cheap to clone: clones are the same session. Dropping the last clone
/// forgets the binding (the objects stay in the worker until dropped with [`Op::Drop`]).
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.inner.name)
            .field("mode", &self.inner.mode)
            .field("worker", &self.worker())
            .finish()
    }
}

impl Session {
    /// The session's name on the wire (`s1`).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its affinity mode.
    pub fn mode(&self) -> AffinityMode {
        self.inner.mode
    }

    /// The pool it belongs to.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The worker holding its objects, once its first call ran.
    pub fn worker(&self) -> Option<WorkerRef> {
        lock(&self.inner.pool.shared.state)
            .sessions
            .get(&self.inner.id)
            .and_then(|s| s.worker)
    }

    /// Whether its worker died (strict modes): every call now fails with
    /// [`BridgeError::SessionLost`].
    pub fn is_lost(&self) -> bool {
        lock(&self.inner.pool.shared.state)
            .sessions
            .get(&self.inner.id)
            .is_some_and(|s| s.lost.is_some())
    }

    /// Runs `op` on the session's worker. A `create` without a session gets this one's.
    pub async fn request(&self, op: Op) -> Result<Value, BridgeError> {
        self.request_with(op, RequestOptions::default()).await
    }

    /// [`request`](Self::request) with options.
    pub async fn request_with(
        &self,
        op: Op,
        options: RequestOptions,
    ) -> Result<Value, BridgeError> {
        Ok(self.run(op, &options).await?.0)
    }

    pub(crate) async fn run(
        &self,
        mut op: Op,
        options: &RequestOptions,
    ) -> Result<(Value, WorkerRef), BridgeError> {
        if let Op::Create { session, .. } = &mut op
            && session.is_none()
        {
            *session = Some(self.inner.name.clone());
        }
        self.inner
            .pool
            .shared
            .run(&op, Some((self.inner.id, self.inner.mode)), options)
            .await
    }

    /// Creates a DSPy module (`dspy.<module>(signature, **kwargs)`) in this session; its object
    /// id. A [`DynSignature`](crate::signature::DynSignature) brings its instructions
    /// ([`SignatureArg::instructions`]) and its field descriptions and prefixes
    /// ([`SignatureArg::fields`]); a string, DSPy's defaults.
    pub async fn create(
        &self,
        module: impl Into<String>,
        signature: impl Into<SignatureArg>,
        kwargs: Map<String, Value>,
    ) -> Result<String, BridgeError> {
        let signature = signature.into();
        let op = Op::Create {
            module: module.into(),
            signature: signature.text(),
            instructions: signature.instructions(),
            fields: signature.fields(),
            kwargs,
            session: None,
        };
        let (value, worker) = self.run(op, &RequestOptions::default()).await?;
        Ok(decode::<CreateResult>(worker, "create", value)?.object)
    }

    /// Calls `object` with `inputs`; the prediction's fields.
    pub async fn call(
        &self,
        object: impl Into<String>,
        inputs: Map<String, Value>,
    ) -> Result<Map<String, Value>, BridgeError> {
        let op = Op::Call {
            object: object.into(),
            inputs,
        };
        let (value, worker) = self.run(op, &RequestOptions::default()).await?;
        Ok(decode::<super::protocol::CallResult>(worker, "call", value)?.outputs)
    }
}
