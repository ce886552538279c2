//! [`Session`]: calls kept on one worker (affinity), the objects created through it, and its
//! lifecycle — [`SessionOptions`] (affinity, idle TTL, initial state), `last_activity`, explicit
//! [`close`](Session::close), expiry by the pool's reaper, and the worker's objects freed when
//! the last handle goes.

use super::*;
use crate::bridge::protocol::CloseSessionResult;

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// [`Session::close`] (or its store removed or evicted it).
    Closed,
    /// Idle past its TTL.
    Expired(Duration),
    /// Its last handle was dropped.
    Dropped,
}

impl Ended {
    /// The `dspex.bridge.session.end` attribute's value.
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    pub(super) fn label(self) -> &'static str {
        match self {
            Ended::Closed => "closed",
            Ended::Expired(_) => "expired",
            Ended::Dropped => "dropped",
        }
    }
}

/// A session ended, whose worker is still to drop its objects.
pub(super) struct Closing {
    id: u64,
    name: String,
    /// Its live worker, if it has one.
    worker: Option<WorkerRef>,
    how: Ended,
}

/// The lifecycle part of a session's slot in the pool's state.
pub(super) struct Lifecycle {
    pub(super) last_activity: Instant,
    pub(super) idle_ttl: Option<Duration>,
    /// Calls of the session under way: a session is never expired under a running call.
    pub(super) in_flight: usize,
    pub(super) ended: Option<Ended>,
    /// `close_session` is being sent to the worker.
    pub(super) closing: bool,
    /// The last handle is gone: whoever finishes the close removes the slot.
    pub(super) orphaned: bool,
}

impl Lifecycle {
    pub(super) fn new(now: Instant, idle_ttl: Option<Duration>) -> Self {
        Lifecycle {
            last_activity: now,
            idle_ttl,
            in_flight: 0,
            ended: None,
            closing: false,
            orphaned: false,
        }
    }

    /// Whether the reaper should expire the session at `now`: open, no call under way, and
    /// idle for its TTL or longer.
    pub(super) fn expired(&self, now: Instant) -> Option<Duration> {
        let ttl = self.idle_ttl?;
        (self.ended.is_none()
            && self.in_flight == 0
            && now.saturating_duration_since(self.last_activity) >= ttl)
            .then_some(ttl)
    }
}

/// How a session is opened ([`Pool::session_with`]).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SessionOptions {
    pub(super) mode: AffinityMode,
    pub(super) idle_ttl: Option<Duration>,
    pub(super) state: Map<String, Value>,
}

impl SessionOptions {
    /// The defaults: [`AffinityMode::StrictQueue`], no idle TTL, an empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The affinity mode.
    pub fn mode(mut self, mode: AffinityMode) -> Self {
        self.mode = mode;
        self
    }

    /// Closes the session once no call of it has run for `ttl` (checked by the pool every
    /// 250 ms; a call under way keeps it open). Its objects are freed in the worker, and its
    /// calls fail with [`BridgeError::SessionExpired`]. A zero TTL expires the session at the
    /// first check after its last call.
    pub fn idle_ttl(mut self, ttl: Duration) -> Self {
        self.idle_ttl = Some(ttl);
        self
    }

    /// The session's initial state (see [`Session::state`]).
    pub fn state(mut self, state: Map<String, Value>) -> Self {
        self.state = state;
        self
    }

    /// One variable of the initial state.
    pub fn var(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.state.insert(key.into(), value.into());
        self
    }
}

/// Where a session stands ([`Session::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionStatus {
    /// Open: calls run.
    Open,
    /// Its worker died and it is strict: calls fail with [`BridgeError::SessionLost`].
    Lost,
    /// Closed: calls fail with [`BridgeError::SessionClosed`].
    Closed,
    /// Expired after `ttl` idle: calls fail with [`BridgeError::SessionExpired`].
    Expired {
        /// Its idle TTL.
        ttl: Duration,
    },
}

pub(super) struct SessionInner {
    pub(super) pool: Pool,
    pub(super) id: u64,
    pub(super) name: String,
    pub(super) mode: AffinityMode,
    pub(super) state: Mutex<Map<String, Value>>,
    pub(super) created_at: Instant,
    /// The runtime the session was opened on: the close after the last handle runs there
    /// when the handle is dropped outside a runtime.
    pub(super) runtime: Option<tokio::runtime::Handle>,
}

impl Drop for SessionInner {
    fn drop(&mut self) {
        let shared = &self.pool.shared;
        let closing = {
            let mut st = lock(&shared.state);
            let Some(slot) = st.sessions.get_mut(&self.id) else {
                return;
            };
            slot.life.orphaned = true;
            if slot.life.ended.is_some() && !slot.life.closing {
                // Ended and closed already: nothing left to do.
                st.sessions.remove(&self.id);
                return;
            }
            drop(st);
            shared.begin_close(self.id, Ended::Dropped)
        };
        let Some(closing) = closing else {
            // Ended, its close still running: that close removes the slot.
            return;
        };
        // Never block here: the worker's objects are freed by a task on the pool's runtime.
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.runtime.clone());
        let weak = shared.weak.clone();
        match runtime {
            Some(runtime) => {
                runtime.spawn(async move {
                    if let Some(shared) = weak.upgrade() {
                        let _ = shared.finish_close(closing).await;
                    }
                });
            }
            None => {
                // No runtime to run the close on: forget the session (its objects stay in the
                // worker until it exits).
                lock(&shared.state).sessions.remove(&self.id);
                tracing::warn!(
                    target: "dspex::bridge", session = %closing.name,
                    "a session was dropped outside a tokio runtime: its objects stay in the worker"
                );
            }
        }
    }
}

/// A group of calls that share the objects they create: they run on one worker, as the
/// [`AffinityMode`] says. Cheap to clone: clones are the same session.
///
/// # Lifecycle
/// A session is open from [`Pool::session`] / [`Pool::session_with`] until it is
/// [closed](Self::close), expires (idle past its [`idle_ttl`](SessionOptions::idle_ttl)), or
/// its last handle is dropped. Each of these sends `close_session` to its worker, which drops
/// every object created in the session (the last handle's close runs on a task: dropping never
/// blocks; a dead worker took the objects with it). Calls on a closed session fail with
/// [`BridgeError::SessionClosed`], on an expired one with [`BridgeError::SessionExpired`].
/// In [`AffinityMode::Hint`] the close reaches the session's current worker only: objects
/// created elsewhere (while it was busy, or after it died) are not freed by it.
///
/// # State
/// A session keeps a map of JSON variables for the code that uses it — a chat's history, the
/// user's settings — set initially with [`SessionOptions::state`] and read and written with
/// [`get`](Self::get), [`set`](Self::set), [`update`](Self::update) and
/// [`state`](Self::state). It lives in Rust, with the session (after it closes too), and a
/// copy goes along with each `call` and `stream_call` the session makes (never with other
/// operations): the Python code those calls run — tools, custom modules, the code a
/// ProgramOfThought generates — reads it with `dspex_worker.session_state()` (read-only there;
/// a change made in Rust is seen by the next call). Keep it small: it travels with every call.
///
/// ```no_run
/// use dspex_runtime::bridge::{Pool, SessionOptions};
/// use std::time::Duration;
///
/// # async fn run(pool: Pool) -> Result<(), dspex_runtime::bridge::BridgeError> {
/// let session = pool.session_with(
///     SessionOptions::new()
///         .idle_ttl(Duration::from_secs(600))
///         .var("user", "ada"),
/// );
/// let qa = session
///     .create("Predict", "question -> answer", Default::default())
///     .await?;
/// let mut inputs = serde_json::Map::new();
/// inputs.insert("question".into(), "What is 2 + 2?".into());
/// let outputs = session.call(&qa, inputs).await?;
/// session.update(|state| state.insert("last_answer".into(), outputs["answer"].clone()));
/// session.close().await?; // the worker drops `qa`
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    pub(super) inner: Arc<SessionInner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.inner.name)
            .field("mode", &self.inner.mode)
            .field("worker", &self.worker())
            .field("status", &self.status())
            .finish()
    }
}

/// Marks a call of a session under way; dropping it ends the call (and records the activity).
struct InFlight<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.shared.state);
        if let Some(slot) = st.sessions.get_mut(&self.id) {
            slot.life.in_flight = slot.life.in_flight.saturating_sub(1);
            slot.life.last_activity = Instant::now();
        }
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

    fn with_slot<R>(&self, f: impl FnOnce(&mut SessionSlot) -> R) -> Option<R> {
        lock(&self.inner.pool.shared.state)
            .sessions
            .get_mut(&self.inner.id)
            .map(f)
    }

    /// The worker holding its objects, once its first call ran.
    pub fn worker(&self) -> Option<WorkerRef> {
        self.with_slot(|s| s.worker).flatten()
    }

    /// Whether its worker died (strict modes): every call now fails with
    /// [`BridgeError::SessionLost`].
    pub fn is_lost(&self) -> bool {
        self.with_slot(|s| s.lost.is_some()).unwrap_or(false)
    }

    /// Where it stands: open, lost, closed or expired.
    pub fn status(&self) -> SessionStatus {
        self.with_slot(|s| match (s.life.ended, &s.lost) {
            (Some(Ended::Expired(ttl)), _) => SessionStatus::Expired { ttl },
            (Some(_), _) => SessionStatus::Closed,
            (None, Some(_)) => SessionStatus::Lost,
            (None, None) => SessionStatus::Open,
        })
        .unwrap_or(SessionStatus::Closed)
    }

    /// When it was opened.
    pub fn created_at(&self) -> Instant {
        self.inner.created_at
    }

    /// When its last call started or ended (or it was [touched](Self::touch)); its opening
    /// before any.
    pub fn last_activity(&self) -> Instant {
        self.with_slot(|s| s.life.last_activity)
            .unwrap_or_else(Instant::now)
    }

    /// Counts as activity now: the idle TTL starts again.
    pub fn touch(&self) {
        self.with_slot(|s| s.life.last_activity = Instant::now());
    }

    /// Its idle TTL, if it has one.
    pub fn idle_ttl(&self) -> Option<Duration> {
        self.with_slot(|s| s.life.idle_ttl).flatten()
    }

    /// Calls of it under way.
    pub(super) fn in_flight(&self) -> usize {
        self.with_slot(|s| s.life.in_flight).unwrap_or(0)
    }

    /// A variable of its state.
    pub fn get(&self, key: &str) -> Option<Value> {
        lock(&self.inner.state).get(key).cloned()
    }

    /// Sets a variable of its state; the value it replaces.
    pub fn set(&self, key: impl Into<String>, value: impl Into<Value>) -> Option<Value> {
        lock(&self.inner.state).insert(key.into(), value.into())
    }

    /// Reads and changes its state in one step (appending to a history, say); `f`'s result.
    /// `f` must not call this session's state methods (it holds the state's lock).
    pub fn update<R>(&self, f: impl FnOnce(&mut Map<String, Value>) -> R) -> R {
        f(&mut lock(&self.inner.state))
    }

    /// A copy of its whole state.
    pub fn state(&self) -> Map<String, Value> {
        lock(&self.inner.state).clone()
    }

    /// Closes the session: the worker drops every object created in it (`close_session`); how
    /// many it dropped (0 when no call ran, when its worker died, or when it was already
    /// closed). Later calls fail with [`BridgeError::SessionClosed`]; calls still running when
    /// it closes may fail with the worker's `UnknownObject`. Idempotent.
    ///
    /// Fails only when the worker could not be asked (a timeout, a crash during the close);
    /// the session is closed even then.
    pub async fn close(&self) -> Result<u64, BridgeError> {
        self.inner
            .pool
            .shared
            .close_session(self.inner.id, Ended::Closed)
            .await
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

    /// Counts a call as started: fails if the session ended.
    fn begin(&self) -> Result<InFlight<'_>, BridgeError> {
        let shared = &self.inner.pool.shared;
        let mut st = lock(&shared.state);
        let slot =
            st.sessions
                .get_mut(&self.inner.id)
                .ok_or_else(|| BridgeError::SessionClosed {
                    session: self.inner.name.clone(),
                })?;
        match slot.life.ended {
            Some(Ended::Expired(ttl)) => {
                return Err(BridgeError::SessionExpired {
                    session: self.inner.name.clone(),
                    ttl,
                });
            }
            Some(_) => {
                return Err(BridgeError::SessionClosed {
                    session: self.inner.name.clone(),
                });
            }
            None => {}
        }
        slot.life.in_flight += 1;
        slot.life.last_activity = Instant::now();
        Ok(InFlight {
            shared,
            id: self.inner.id,
        })
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
        let _in_flight = self.begin()?;
        // The session's variables go along with the calls that run its Python code.
        let state = matches!(op, Op::Call { .. } | Op::StreamCall { .. })
            .then(|| self.state())
            .filter(|state| !state.is_empty());
        let with_state;
        let options = match state {
            Some(state) => {
                with_state = options.clone().session_state(state);
                &with_state
            }
            None => options,
        };
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
        Ok(decode::<crate::bridge::protocol::CallResult>(worker, "call", value)?.outputs)
    }
}

impl Pool {
    /// A new session: its calls go to the worker that ran its first call, per `mode`. No idle
    /// TTL, an empty state ([`session_with`](Self::session_with) sets them).
    pub fn session(&self, mode: AffinityMode) -> Session {
        self.session_with(SessionOptions::new().mode(mode))
    }

    /// A new session with `options`: affinity mode, idle TTL, initial state.
    pub fn session_with(&self, options: SessionOptions) -> Session {
        let shared = &self.shared;
        let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
        let name = format!("s{id}");
        let now = Instant::now();
        lock(&shared.state).sessions.insert(
            id,
            SessionSlot {
                name: name.clone(),
                mode: options.mode,
                worker: None,
                lost: None,
                life: Lifecycle::new(now, options.idle_ttl),
            },
        );
        inc(&shared.counters.sessions_created);
        #[cfg(feature = "otel")]
        dspex_lm::telemetry::record_pool_session_opened();
        Session {
            inner: Arc::new(SessionInner {
                pool: self.clone(),
                id,
                name,
                mode: options.mode,
                state: Mutex::new(options.state),
                created_at: now,
                runtime: tokio::runtime::Handle::try_current().ok(),
            }),
        }
    }
}

impl Shared {
    /// Ends session `id` as `how` and has its worker drop its objects; how many it dropped.
    /// A session already ended gives 0.
    pub(super) async fn close_session(
        self: &Arc<Self>,
        id: u64,
        how: Ended,
    ) -> Result<u64, BridgeError> {
        match self.begin_close(id, how) {
            Some(closing) => self.finish_close(closing).await,
            None => Ok(0),
        }
    }

    /// Ends session `id` as `how`, at once: what is left to do in its worker, or `None` if it
    /// had ended already.
    pub(super) fn begin_close(&self, id: u64, how: Ended) -> Option<Closing> {
        let closing = {
            let mut st = lock(&self.state);
            let slot = st.sessions.get(&id)?;
            if slot.life.ended.is_some() {
                return None;
            }
            let name = slot.name.clone();
            // A worker that died took the objects with it.
            let worker = slot
                .worker
                .filter(|_| slot.lost.is_none())
                .filter(|w| st.workers.contains_key(&w.id));
            let slot = st.sessions.get_mut(&id)?;
            slot.life.ended = Some(how);
            slot.life.closing = true;
            Closing {
                id,
                name,
                worker,
                how,
            }
        };
        match how {
            Ended::Expired(_) => inc(&self.counters.sessions_expired),
            Ended::Closed | Ended::Dropped => inc(&self.counters.sessions_closed),
        }
        #[cfg(feature = "otel")]
        dspex_lm::telemetry::record_pool_session_ended(how.label());
        Some(closing)
    }

    /// Sends `close_session` to the worker of a session [`begin_close`](Self::begin_close)
    /// ended; removes its slot if its last handle went meanwhile.
    pub(super) async fn finish_close(
        self: &Arc<Self>,
        closing: Closing,
    ) -> Result<u64, BridgeError> {
        let Closing {
            id,
            name,
            worker,
            how,
        } = closing;
        let result = match worker {
            None => Ok(0),
            Some(_) => {
                let op = Op::CloseSession {
                    session: name.clone(),
                };
                // The slot is ended: checkout sends it to the bound worker whatever the mode.
                match self
                    .run(
                        &op,
                        Some((id, AffinityMode::StrictQueue)),
                        &RequestOptions::default(),
                    )
                    .await
                {
                    Ok((value, worker)) => {
                        decode::<CloseSessionResult>(worker, "close_session", value)
                            .map(|r| r.dropped)
                    }
                    // The objects went with their worker, or with the pool.
                    Err(BridgeError::SessionLost { .. } | BridgeError::ShutDown) => Ok(0),
                    Err(e) => Err(e),
                }
            }
        };
        match &result {
            Ok(dropped) => tracing::debug!(
                target: "dspex::bridge",
                session = %name, dropped, how = ?how, "session closed"
            ),
            Err(e) => tracing::warn!(
                target: "dspex::bridge",
                session = %name, error = %e, "a session closed, but its worker could not free its objects"
            ),
        }
        let mut st = lock(&self.state);
        if let Some(slot) = st.sessions.get_mut(&id) {
            slot.life.closing = false;
            if slot.life.orphaned {
                st.sessions.remove(&id);
            }
        }
        result
    }

    /// Closes the sessions idle past their TTL (the maintenance task calls it): ended at
    /// once, their objects freed by a task each.
    pub(super) fn reap_sessions(self: &Arc<Self>) {
        let now = Instant::now();
        let expired: Vec<(u64, Duration)> = lock(&self.state)
            .sessions
            .iter()
            .filter_map(|(id, slot)| Some((*id, slot.life.expired(now)?)))
            .collect();
        for (id, ttl) in expired {
            if let Some(closing) = self.begin_close(id, Ended::Expired(ttl)) {
                let shared = self.clone();
                tokio::spawn(async move {
                    let _ = shared.finish_close(closing).await;
                });
            }
        }
    }

    /// Open sessions.
    pub(super) fn live_sessions(st: &State) -> usize {
        st.sessions
            .values()
            .filter(|s| s.life.ended.is_none())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_expires_only_idle_past_its_ttl_and_never_under_a_call() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(30);
        let mut life = Lifecycle::new(t0, Some(ttl));
        assert_eq!(life.expired(t0 + Duration::from_secs(29)), None);
        assert_eq!(life.expired(t0 + ttl), Some(ttl));
        // A call under way keeps it open, however long it runs.
        life.in_flight = 1;
        assert_eq!(life.expired(t0 + Duration::from_secs(3600)), None);
        // Activity restarts the clock.
        life.in_flight = 0;
        life.last_activity = t0 + Duration::from_secs(20);
        assert_eq!(life.expired(t0 + Duration::from_secs(40)), None);
        assert_eq!(life.expired(t0 + Duration::from_secs(50)), Some(ttl));
        // An ended session is not expired again.
        life.ended = Some(Ended::Closed);
        assert_eq!(life.expired(t0 + Duration::from_secs(3600)), None);
    }

    #[test]
    fn without_a_ttl_a_session_never_expires() {
        let t0 = Instant::now();
        let life = Lifecycle::new(t0, None);
        assert_eq!(life.expired(t0 + Duration::from_secs(86_400)), None);
    }

    #[test]
    fn options_carry_the_initial_state() {
        let options = SessionOptions::new()
            .mode(AffinityMode::StrictFailFast)
            .idle_ttl(Duration::from_secs(5))
            .var("user", "ada")
            .var("turns", 0);
        assert_eq!(options.mode, AffinityMode::StrictFailFast);
        assert_eq!(options.idle_ttl, Some(Duration::from_secs(5)));
        assert_eq!(options.state["user"], "ada");
        assert_eq!(options.state["turns"], 0);
        assert_eq!(Ended::Expired(Duration::ZERO).label(), "expired");
    }
}
