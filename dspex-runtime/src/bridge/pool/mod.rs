//! The supervised pool: checkout with a bounded queue, session affinity, retries of idempotent
//! calls, replacement of dead workers with backoff and a restart breaker, graceful shutdown,
//! statistics.

mod breaker;
mod builder;
mod session;
mod stats;
mod store;

pub use breaker::{CallBreaker, CallBreakerState};
pub use builder::{PoolBuilder, RestartBreaker};
pub use session::{Session, SessionOptions, SessionStatus};
pub use stats::{LatencyHistogram, PoolStats, ShutdownReport};
pub use store::SessionStore;

use super::error::{BridgeError, WorkerRef};
use super::forkserver::ForkServer;
use super::protocol::{CreateResult, Op};
use super::router::SignatureArg;
use super::worker::{
    DEFAULT_ENV_ALLOW, LeaseEnd, SIGXCPU_REASON, Worker, WorkerConfig, WorkerHooks, WorkerInfo,
    WorkerState,
};
pub(crate) use super::worker::{EventSink, StreamFrame};
use crate::flag;
use crate::lm::LanguageModel;
use breaker::{Admission, Breaker};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use session::Lifecycle;
use stats::*;
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
    /// Where a `stream_call`'s chunk and status frames go (a stream's own plumbing).
    events: Option<EventSink>,
    /// The variables of the session a `call` or `stream_call` runs in.
    session_state: Option<Arc<Map<String, Value>>>,
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

    /// Sends the request's `stream_chunk` and `status` frames to `events`; once one was
    /// delivered the call is never retried on another worker.
    pub(crate) fn events(mut self, events: EventSink) -> Self {
        self.events = Some(events);
        self
    }

    /// Sends the variables of the session the request runs in along with it.
    pub(crate) fn session_state(mut self, state: Map<String, Value>) -> Self {
        self.session_state = Some(Arc::new(state));
        self
    }

    /// Whether a frame of the request reached its caller (so it must not run again).
    pub(crate) fn delivered(&self) -> bool {
        self.events.as_ref().is_some_and(EventSink::delivered)
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
    life: Lifecycle,
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
    /// The workers' temporary directory under `read_only_fs` (removed with the pool).
    #[allow(dead_code)] // Held for its Drop.
    fs_temp: Option<tempfile::TempDir>,
    state: Mutex<State>,
    /// The breaker on the call error rate, unless turned off.
    call_breaker: Option<Mutex<Breaker>>,
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
                        self.count_restart();
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
                .filter(|s| s.mode.is_strict() && s.lost.is_none() && s.life.ended.is_none())
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
                // An ended session's one request, `close_session`, goes to its worker whatever
                // the mode.
                let mode = match slot.life.ended {
                    Some(_) => AffinityMode::StrictQueue,
                    None => slot.mode,
                };
                let (name, bound) = (slot.name.clone(), slot.worker);
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
                self.count_restart();
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
        let span = tracing::info_span!(
            target: "dspex::bridge",
            "dspex.bridge.request",
            otel.name = "bridge.request",
            otel.status_code = tracing::field::Empty,
            dspex.bridge.op = op.name(),
            dspex.bridge.session = session.and_then(|(id, _)| i64::try_from(id).ok()),
            error.type = tracing::field::Empty,
        );
        #[cfg(feature = "otel")]
        self.record_utilization();
        #[cfg(feature = "otel")]
        let started = Instant::now();
        let result = self
            .run_inner(op, session, options)
            .instrument(span.clone())
            .await;
        #[cfg(feature = "otel")]
        {
            self.record_utilization();
            let kind = result.as_ref().err().map(error_kind);
            dspex_lm::telemetry::record_pool_call(op.name(), started.elapsed(), kind.as_deref());
        }
        if let Err(e) = &result
            && !span.is_disabled()
        {
            // The variant's name (`Timeout`, `WorkerCrashed`, …), not its message.
            crate::telemetry::record_failure(&span, &tracing::field::display(error_kind(e)));
        }
        result
    }

    /// Busy workers, their share of the pool and the queue depth, in the OpenTelemetry
    /// metrics.
    #[cfg(feature = "otel")]
    fn record_utilization(&self) {
        let (busy, size, queued) = {
            let st = lock(&self.state);
            let busy = st
                .workers
                .values()
                .filter(|w| w.info().state == WorkerState::Busy)
                .count();
            let queued = st.waiters.iter().filter(|w| !w.tx.is_closed()).count();
            (busy, st.workers.len(), queued)
        };
        dspex_lm::telemetry::record_pool(busy, size);
        dspex_lm::telemetry::record_pool_queue(queued);
    }

    /// Counts a worker start (a replacement or an extra worker).
    fn count_restart(&self) {
        inc(&self.counters.restarts);
        #[cfg(feature = "otel")]
        dspex_lm::telemetry::record_pool_restart();
    }

    /// A crash of a worker killed by SIGXCPU, with a CPU limit set, as
    /// [`BridgeError::CpuLimitExceeded`]. The crash may be seen (stdout closed) a moment before
    /// the exit status: wait for it briefly.
    async fn cpu_limit_error(
        &self,
        worker: &Arc<Worker>,
        result: Result<Value, BridgeError>,
    ) -> Result<Value, BridgeError> {
        let Some(seconds) = self.config.cpu_seconds else {
            return result;
        };
        match result {
            Err(BridgeError::WorkerCrashed {
                worker: wref,
                op,
                reason,
                stderr,
            }) => {
                worker.wait_exit(Duration::from_secs(2)).await;
                if reason == SIGXCPU_REASON
                    || worker.exit_description().as_deref() == Some(SIGXCPU_REASON)
                {
                    Err(BridgeError::CpuLimitExceeded {
                        worker: wref,
                        op,
                        seconds,
                        stderr,
                    })
                } else {
                    Err(BridgeError::WorkerCrashed {
                        worker: wref,
                        op,
                        reason,
                        stderr,
                    })
                }
            }
            result => result,
        }
    }

    /// Asks the call breaker to let a call through: `Some` guard for the half-open breaker's
    /// probe, whose outcome it reports.
    fn admit_call(self: &Arc<Self>, now: Instant) -> Result<Option<Probe>, BridgeError> {
        let Some(breaker) = &self.call_breaker else {
            return Ok(None);
        };
        match lock(breaker).admit(now)? {
            Admission::Call => Ok(None),
            Admission::Probe => Ok(Some(Probe {
                shared: Some(self.clone()),
            })),
        }
    }

    async fn run_inner(
        self: &Arc<Self>,
        op: &Op,
        session: Option<(u64, AffinityMode)>,
        options: &RequestOptions,
    ) -> Result<(Value, WorkerRef), BridgeError> {
        let started = Instant::now();
        let c = &self.counters;
        let probe = match self.admit_call(started) {
            Ok(probe) => probe,
            Err(e) => {
                inc(&c.calls);
                inc(&c.errors);
                inc(&c.breaker_rejections);
                tracing::debug!(target: "dspex::bridge", error = %e, "bridge request failed fast");
                return Err(e);
            }
        };
        let idempotent = options.idempotent.unwrap_or_else(|| op.is_idempotent());
        let may_retry = idempotent && session.is_none_or(|(_, mode)| !mode.is_strict());
        let timeout = options.timeout.unwrap_or(self.config.call_timeout);
        let lm = options.lm.as_ref().or(self.config.lm.as_ref());
        let (backoff_base, backoff_cap) = self.config.retry_backoff;
        // Set by the first attempt: the call's timeout bounds it and every retry.
        let mut deadline: Option<Instant> = None;
        let mut attempt = 0;
        let result = loop {
            #[cfg(feature = "otel")]
            let checkout_started = Instant::now();
            let lease = self.checkout(session.map(|(id, _)| id)).await;
            #[cfg(feature = "otel")]
            dspex_lm::telemetry::record_pool_checkout_wait(checkout_started.elapsed());
            let lease = match lease {
                Ok(lease) => lease,
                Err(e) => break Err(e),
            };
            let Some(worker) = lease.worker().cloned() else {
                break Err(BridgeError::ShutDown);
            };
            let now = Instant::now();
            let deadline = *deadline.get_or_insert(now + timeout);
            let left = deadline.saturating_duration_since(now);
            let result = worker
                .request_with_events(
                    op,
                    true,
                    Some(left),
                    lm,
                    options.events.clone(),
                    options.session_state.as_deref(),
                )
                .await;
            drop(lease);
            let result = self.cpu_limit_error(&worker, result).await;
            match result {
                // A stream whose first frame reached its caller is never repeated.
                Err(BridgeError::WorkerCrashed { ref reason, .. })
                    if may_retry
                        && attempt < self.config.max_retries
                        && !options.events.as_ref().is_some_and(EventSink::delivered) =>
                {
                    let delay = breaker::retry_delay(
                        backoff_base,
                        backoff_cap,
                        attempt + 1,
                        breaker::unit_random(),
                    );
                    // Leave the next attempt a moment at least; else give up with the crash.
                    let min_attempt = Duration::from_millis(10);
                    if Instant::now() + delay + min_attempt >= deadline {
                        tracing::debug!(
                            target: "dspex::bridge",
                            op = op.name(), worker = %worker.wref, reason = %reason, attempt,
                            "no retry: the call's timeout would pass during the backoff"
                        );
                        break result.map(|v| (v, worker.wref));
                    }
                    attempt += 1;
                    inc(&self.counters.retries);
                    tracing::debug!(
                        target: "dspex::bridge",
                        op = op.name(), worker = %worker.wref, reason = %reason, attempt,
                        ?delay, "retrying on another worker after a backoff"
                    );
                    tokio::time::sleep(delay).await;
                }
                Ok(value) => break Ok((value, worker.wref)),
                Err(e) => break Err(e),
            }
        };
        if let Some(probe) = probe {
            probe.report(result.as_ref().err());
        } else if let Some(breaker) = &self.call_breaker {
            let failed = match &result {
                Ok(_) => Some(false),
                Err(e) => breaker::counts_as_pool_failure(e),
            };
            lock(breaker).record(Instant::now(), Admission::Call, failed);
        }
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
                    BridgeError::CpuLimitExceeded { .. } => inc(&c.cpu_limit_kills),
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
                    .filter(|s| s.life.ended.is_none() || s.life.closing)
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

/// The half-open call breaker's probe call: reports its outcome, or (dropped unreported, its
/// caller having given up) lets another probe through.
struct Probe {
    shared: Option<Arc<Shared>>,
}

impl Probe {
    fn report(mut self, error: Option<&BridgeError>) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        let failed = match error {
            None => Some(false),
            Some(e) => breaker::counts_as_pool_failure(e),
        };
        if let Some(breaker) = &shared.call_breaker {
            lock(breaker).record(Instant::now(), Admission::Probe, failed);
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take()
            && let Some(breaker) = &shared.call_breaker
        {
            lock(breaker).abandon_probe();
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
        shared.reap_sessions();
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

    /// Calls `object` on any free worker (as [`call`](Self::call)) under DSPy's
    /// `dspy.streamify`: the [`Op::StreamCall`] request's chunks and status messages as they
    /// come, then the prediction's fields, as
    /// [`BridgedModule::stream_with`](super::BridgedModule::stream_with) describes. A worker
    /// that crashes before the first item is replaced by another (the call is idempotent); after
    /// it, the stream ends with [`BridgeError::WorkerCrashed`]. Dropping the stream cancels the
    /// call.
    pub fn stream(
        &self,
        object: impl Into<String>,
        inputs: Map<String, Value>,
        fields: Option<Vec<String>>,
        status: Option<super::protocol::StatusMessages>,
    ) -> crate::module::FieldStream<Map<String, Value>> {
        use futures_util::StreamExt;
        let op = Op::StreamCall {
            object: object.into(),
            inputs,
            fields,
            status,
        };
        let (sink, events) = EventSink::channel();
        let options = RequestOptions::new().events(sink);
        let shared = self.shared.clone();
        let call = Box::pin(async move { shared.run(&op, None, &options).await });
        super::program::bridged_stream(call, events, None)
            .map(|item| {
                item.map(|item| match item {
                    crate::module::StreamItem::Final((outputs, _)) => {
                        crate::module::StreamItem::Final(outputs)
                    }
                    crate::module::StreamItem::Chunk(c) => crate::module::StreamItem::Chunk(c),
                    crate::module::StreamItem::Status(m) => crate::module::StreamItem::Status(m),
                    crate::module::StreamItem::Fallback { adapter, error } => {
                        crate::module::StreamItem::Fallback { adapter, error }
                    }
                })
            })
            .boxed()
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
            live_sessions: Shared::live_sessions(&st),
            sessions_created: get(&c.sessions_created),
            sessions_closed: get(&c.sessions_closed),
            sessions_expired: get(&c.sessions_expired),
            retries: get(&c.retries),
            recreated: get(&c.recreated),
            restarts: get(&c.restarts),
            worker_failures: get(&c.worker_failures),
            breaker_open: st.breaker_open(Instant::now()).is_some(),
            call_breaker: self
                .shared
                .call_breaker
                .as_ref()
                .map(|b| lock(b).state(Instant::now()))
                .unwrap_or_default(),
            call_failure_rate: self
                .shared
                .call_breaker
                .as_ref()
                .map(|b| {
                    let (failed, calls) = lock(b).counts(Instant::now());
                    if calls == 0 {
                        0.0
                    } else {
                        failed as f64 / calls as f64
                    }
                })
                .unwrap_or_default(),
            breaker_rejections: get(&c.breaker_rejections),
            cpu_limit_kills: get(&c.cpu_limit_kills),
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

/// The name of a bridge error's variant (`Timeout`, `WorkerCrashed`, …), not its message.
fn error_kind(e: &BridgeError) -> String {
    let debug = format!("{e:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_string()
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
