//! Errors of the bridge.

use super::protocol::{FrameError, RemoteError};
use std::fmt;
use std::time::Duration;

/// Which worker: the pool's number for it and its process id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkerRef {
    /// The pool's number for the worker (never reused within a pool).
    pub id: u64,
    /// The worker's process id (0 when it never started).
    pub pid: u32,
}

impl fmt::Display for WorkerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker {} (pid {})", self.id, self.pid)
    }
}

/// What a bridge call can fail with. Every variant names the worker, session or limit involved.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The worker process could not be started (no such Python, permission denied).
    #[error("cannot start `{program}`: {message}; check the pool's python path")]
    Spawn {
        /// The program run.
        program: String,
        /// What the OS said.
        message: String,
    },
    /// The worker did not complete the `ready` handshake (it exited, timed out, or sent
    /// something else first).
    #[error("{worker} did not become ready: {message}{}", stderr_tail(stderr))]
    Handshake {
        /// The worker.
        worker: WorkerRef,
        /// What went wrong.
        message: String,
        /// The last lines the worker wrote to stderr.
        stderr: Vec<String>,
    },
    /// The worker speaks another protocol version.
    #[error(
        "{worker} speaks bridge protocol {got}, this dspex speaks {expected}: install the matching dspex_worker"
    )]
    ProtocolVersion {
        /// The worker.
        worker: WorkerRef,
        /// The version the worker announced.
        got: u32,
        /// The version this crate speaks.
        expected: u32,
    },
    /// A frame could not be encoded (too large) or the worker sent a bad one.
    #[error("{}bridge protocol error: {source}", worker.map(|w| format!("{w}: ")).unwrap_or_default())]
    Protocol {
        /// The worker, when the error came from one.
        worker: Option<WorkerRef>,
        /// The framing or JSON error.
        #[source]
        source: FrameError,
    },
    /// The call took longer than its timeout; its worker was killed and is being replaced.
    #[error(
        "`{op}` on {worker} timed out after {timeout:?}; the worker was killed and is being replaced"
    )]
    Timeout {
        /// The worker.
        worker: WorkerRef,
        /// The operation.
        op: &'static str,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The worker died (killed, crashed, out of memory, stopped answering heartbeats) while the
    /// call was in flight.
    #[error("`{op}` failed: {worker} crashed: {reason}{}", stderr_tail(stderr))]
    WorkerCrashed {
        /// The worker.
        worker: WorkerRef,
        /// The operation in flight.
        op: &'static str,
        /// How it died (exit status, signal, missed heartbeats).
        reason: String,
        /// The last lines the worker wrote to stderr.
        stderr: Vec<String>,
    },
    /// The call used more CPU time than the pool's per-operation limit
    /// ([`PoolBuilder::cpu_seconds`](super::PoolBuilder::cpu_seconds)): the kernel killed its
    /// worker with SIGXCPU, and the pool is replacing it. Not retried: the call itself spent the
    /// budget.
    #[error(
        "`{op}` on {worker} exceeded the pool's CPU limit of {seconds} s (RLIMIT_CPU): the worker was killed by SIGXCPU and is being replaced{}",
        stderr_tail(stderr)
    )]
    CpuLimitExceeded {
        /// The worker.
        worker: WorkerRef,
        /// The operation.
        op: &'static str,
        /// The limit, in CPU seconds per operation.
        seconds: u64,
        /// The last lines the worker wrote to stderr.
        stderr: Vec<String>,
    },
    /// Python raised: the operation failed inside the worker (the worker lives on).
    #[error("`{op}` on {worker} raised {error}")]
    Remote {
        /// The worker.
        worker: WorkerRef,
        /// The operation.
        op: &'static str,
        /// Type, message and traceback.
        error: RemoteError,
    },
    /// The operation's result was not the shape the protocol promises.
    #[error("`{op}` on {worker}: unexpected result: {message}")]
    BadResult {
        /// The worker.
        worker: WorkerRef,
        /// The operation.
        op: &'static str,
        /// What was wrong.
        message: String,
    },
    /// Every worker is busy and the wait queue is full.
    #[error(
        "the pool is saturated: all {workers} worker(s) busy and {queued} call(s) already queued (the bound); raise max_workers or queue_bound, or slow down"
    )]
    PoolSaturated {
        /// Live workers.
        workers: usize,
        /// Calls waiting (the queue bound).
        queued: usize,
    },
    /// No worker became free within the checkout timeout.
    #[error("no worker became free within {waited:?} (checkout timeout)")]
    CheckoutTimeout {
        /// The checkout timeout.
        waited: Duration,
    },
    /// The session's worker died: the objects it held are gone (strict affinity modes).
    #[error(
        "session `{session}` lost its objects: {worker} died ({reason}); create them again in a new session"
    )]
    SessionLost {
        /// The session.
        session: String,
        /// The worker that held it.
        worker: WorkerRef,
        /// How the worker died.
        reason: String,
    },
    /// The session's worker is busy and the session fails fast (`StrictFailFast`).
    #[error("session `{session}`: its {worker} is busy (affinity mode StrictFailFast)")]
    SessionBusy {
        /// The session.
        session: String,
        /// The busy worker.
        worker: WorkerRef,
    },
    /// The session was closed ([`Session::close`](super::Session::close), or removed or evicted
    /// from its [`SessionStore`](super::SessionStore)): the worker dropped its objects.
    #[error("session `{session}` is closed and its objects were freed; open a new session")]
    SessionClosed {
        /// The session.
        session: String,
    },
    /// The session was idle for longer than its idle TTL, so the pool closed it and the worker
    /// dropped its objects ([`SessionOptions::idle_ttl`](super::SessionOptions::idle_ttl)).
    #[error(
        "session `{session}` expired: idle for longer than its idle TTL of {ttl:?}, so its objects were freed; open a new session"
    )]
    SessionExpired {
        /// The session.
        session: String,
        /// Its idle TTL.
        ttl: Duration,
    },
    /// Workers kept dying, so restarts are paused and no worker is alive.
    #[error(
        "the pool's restart breaker is open after {restarts} restarts in {window:?}; next restart in {retry_in:?}{}",
        last_failure.as_ref().map(|m| format!("; last failure: {m}")).unwrap_or_default()
    )]
    BreakerOpen {
        /// Restarts counted in the window.
        restarts: usize,
        /// The breaker's window.
        window: Duration,
        /// When restarts resume.
        retry_in: Duration,
        /// The last start or crash failure seen.
        last_failure: Option<String>,
    },
    /// The pool's call breaker is open ([`CallBreaker`](super::CallBreaker)): too many recent
    /// calls failed for pool reasons (crashes, timeouts, protocol errors), so new calls fail fast
    /// until the cool-down ends and a probe call succeeds.
    #[error(
        "the pool's call breaker is open: {failed} of the last {calls} calls within {window:?} failed for pool reasons ({:.0}% > the {:.0}% threshold); {}",
        *failed as f64 * 100.0 / (*calls).max(1) as f64,
        threshold * 100.0,
        if retry_in.is_zero() { "a probe call is under way".to_string() } else { format!("calls fail fast for another {retry_in:?}") }
    )]
    CallBreakerOpen {
        /// Calls in the window that failed for pool reasons when the breaker opened.
        failed: usize,
        /// Calls in the window when it opened.
        calls: usize,
        /// The breaker's window.
        window: Duration,
        /// The failure rate above which it opens.
        threshold: f64,
        /// Until a probe call is let through (zero while a probe is under way).
        retry_in: Duration,
    },
    /// [`PoolBuilder::no_network`](super::PoolBuilder::no_network) was asked for, but the workers
    /// cannot be put in a network namespace of their own here (at pool start; the pool never
    /// runs workers with the network they were asked not to have).
    #[error(
        "no_network: the workers cannot be isolated from the network here: {message}; it needs unprivileged user namespaces (sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone = 1 where it exists, and no seccomp/AppArmor profile forbidding unshare, as Docker's default one does)"
    )]
    NetworkIsolation {
        /// What the worker said (its stderr, or how it exited).
        message: String,
    },
    /// The worker does not have a feature the call needs (an older `dspex_worker`: its `ready`
    /// frame does not list it), so the call was not sent.
    #[error(
        "{worker} cannot `{op}`: its dspex_worker does not announce the `{feature}` feature; install the dspex_worker that matches this dspex"
    )]
    Unsupported {
        /// The worker.
        worker: WorkerRef,
        /// The operation.
        op: &'static str,
        /// The missing feature ([`FEATURE_STREAM`](super::protocol::FEATURE_STREAM)).
        feature: &'static str,
    },
    /// [`PoolBuilder::read_only_fs`](super::PoolBuilder::read_only_fs) was asked for and the
    /// workers cannot make their file system read-only here (checked when the pool starts; no
    /// worker then runs with a writable file system it was asked not to have).
    #[error(
        "read_only_fs: the workers cannot make their file system read-only here: {reason}; it needs Landlock: Linux 5.13 or later built with CONFIG_SECURITY_LANDLOCK, `landlock` among the active LSMs (the `lsm=` boot parameter; see /sys/kernel/security/lsm), and no seccomp profile forbidding the landlock_* system calls"
    )]
    FilesystemIsolation {
        /// What went wrong: the worker's own words (its stderr, or how it exited), or the
        /// writable path that cannot be used.
        reason: String,
    },
    /// The pool is shutting down or was shut down.
    #[error("the Python worker pool is shut down")]
    ShutDown,
}

impl BridgeError {
    /// The worker involved, when there is one.
    pub fn worker(&self) -> Option<WorkerRef> {
        match self {
            BridgeError::Handshake { worker, .. }
            | BridgeError::ProtocolVersion { worker, .. }
            | BridgeError::Timeout { worker, .. }
            | BridgeError::WorkerCrashed { worker, .. }
            | BridgeError::CpuLimitExceeded { worker, .. }
            | BridgeError::Remote { worker, .. }
            | BridgeError::BadResult { worker, .. }
            | BridgeError::SessionLost { worker, .. }
            | BridgeError::SessionBusy { worker, .. }
            | BridgeError::Unsupported { worker, .. } => Some(*worker),
            BridgeError::Protocol { worker, .. } => *worker,
            _ => None,
        }
    }

    /// The Python exception, for [`BridgeError::Remote`].
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            BridgeError::Remote { error, .. } => Some(error),
            _ => None,
        }
    }
}

fn stderr_tail(lines: &[String]) -> String {
    match lines.len() {
        0 => String::new(),
        _ => format!("; its stderr ended with:\n{}", lines.join("\n")),
    }
}
