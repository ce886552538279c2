//! One worker process: spawning it, the `ready` handshake, the tasks around it (writer, reader,
//! exit watcher, stderr forwarder, heartbeat) and its state machine.
//!
//! Tasks per worker, each ending when the process is gone:
//! - the **writer** ([`FrameWriter`]) owns stdin: a frame is written by the task that sends it
//!   when the pipe has room, else queued whole for its flusher task, so frames stay in order and
//!   a caller that gives up never leaves half a frame behind; closing it closes stdin (once the
//!   queue is written), which makes the worker exit;
//! - the **reader** owns stdout: responses go to the waiting caller by id, `lm_call`s to the
//!   caller of the running operation (served in the caller's task, so task-scoped settings and
//!   usage trackers apply), a `stream_call`'s `stream_chunk` and `status` frames to its caller's
//!   [`EventSink`] by request id; end of stream marks the worker failed at once;
//! - the **exit watcher** owns the `Child`: it sees the exit status, and sends signals (to the
//!   whole process group, then to the child) when asked;
//! - the **stderr forwarder** turns stderr lines into `tracing` events and keeps the last lines
//!   for error messages;
//! - the **heartbeat** pings every interval (a busy worker answers from its reader thread) and
//!   kills a worker that misses too many, or whose abandoned operation ran past its deadline.

use super::error::{BridgeError, WorkerRef};
use super::protocol::{
    Encoding, FEATURE_STREAM, FrameCodec, FrameError, FrameOptions, LmCall, LmChunk, LmCompletion,
    LmResult, Op, PROTOCOL_VERSION, PingResult, Ready, StreamChunk, WorkerMessage, encode_frame,
    read_encoded_frame,
};
use super::writer::FrameWriter;
use crate::lm::LanguageModel;
use crate::settings::Settings;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::sync::{mpsc, oneshot, watch};

/// Where a worker is in its life. Transitions: `Starting → Ready ⇄ Busy`, `Ready | Busy →
/// Draining` (shutdown or retirement), and any state `→ Stopped` (an exit that was asked for)
/// or `→ Failed` (a crash, a kill after a timeout or missed heartbeats, a failed start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkerState {
    /// Spawned; handshake or initial configuration not done. Gets no traffic.
    Starting,
    /// Idle, ready for a call.
    Ready,
    /// Running a call.
    Busy,
    /// Finishing its call before it stops; gets no new traffic.
    Draining,
    /// Exited as asked.
    Stopped,
    /// Crashed or was killed.
    Failed,
}

impl WorkerState {
    /// Whether the worker is gone (`Stopped` or `Failed`).
    pub fn is_terminal(self) -> bool {
        matches!(self, WorkerState::Stopped | WorkerState::Failed)
    }

    /// The state's name (`ready`, `busy`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Ready => "ready",
            WorkerState::Busy => "busy",
            WorkerState::Draining => "draining",
            WorkerState::Stopped => "stopped",
            WorkerState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recorded state change of a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: WorkerState,
    /// The state after.
    pub to: WorkerState,
    /// When, counted from the worker's spawn.
    pub at: Duration,
    /// Why, for the changes that have a reason (failures, draining).
    pub reason: Option<String>,
}

/// A snapshot of one worker, for [`PoolStats`](super::PoolStats).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerInfo {
    /// The pool's number and the process id.
    pub worker: WorkerRef,
    /// The state now.
    pub state: WorkerState,
    /// Calls run (requests other than pings).
    pub calls: u64,
    /// Time since spawn.
    pub uptime: Duration,
    /// Resident memory at the last heartbeat, in MiB.
    pub rss_mb: Option<f64>,
    /// The Python version the worker reported.
    pub python: String,
    /// DSPy's version, if imported at start.
    pub dspy: Option<String>,
    /// Why it failed, once it has.
    pub failure: Option<String>,
    /// The size above which frames to and from this worker travel as MessagePack; `None` when
    /// they are all JSON (MessagePack off in the pool, or a worker that does not announce it).
    pub msgpack_threshold: Option<usize>,
    /// Frames sent to the worker as MessagePack.
    pub msgpack_sent: u64,
    /// Frames received from the worker as MessagePack.
    pub msgpack_received: u64,
    /// State changes, oldest first (the last [`MAX_TRANSITIONS`] kept).
    pub transitions: Vec<Transition>,
}

/// How many transitions a worker keeps.
pub const MAX_TRANSITIONS: usize = 64;
/// How many stderr lines a worker keeps for error messages.
const STDERR_TAIL_LINES: usize = 20;
/// Longest stderr line kept (in characters) for error messages.
const STDERR_LINE_CHARS: usize = 400;
/// Longest stderr line logged as one event (bytes).
const STDERR_READ_LIMIT: u64 = 64 * 1024;
/// Frames larger than this are parsed on the blocking pool, not on a runtime thread.
const BLOCKING_DECODE_BYTES: usize = 1024 * 1024;

/// Environment variables a worker inherits from the pool's process (everything else is dropped).
pub const DEFAULT_ENV_ALLOW: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "PYTHONPATH",
    "PYTHONHOME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// How workers are started and watched (built by the pool builder).
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) env_allow: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) thread_cap: u32,
    pub(crate) current_dir: Option<PathBuf>,
    pub(crate) start_timeout: Duration,
    pub(crate) heartbeat_interval: Option<Duration>,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) max_missed_heartbeats: u32,
    pub(crate) kill_process_group: bool,
    /// MessagePack for frames over this many bytes, with workers that announce it.
    pub(crate) msgpack_threshold: Option<usize>,
}

/// What a worker tells its pool.
pub(crate) trait WorkerHooks: Send + Sync {
    /// The worker is gone (`Stopped` or `Failed`); called once, without the worker's lock held.
    fn worker_down(&self, worker: &Arc<Worker>);
    /// A call whose caller gave up has finished: the worker is `Ready` again.
    fn worker_released(&self, worker: &Arc<Worker>);
}

/// A signal for the exit watcher to send.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

struct Pending {
    tx: oneshot::Sender<Result<Value, BridgeError>>,
    lm: Option<mpsc::UnboundedSender<LmCall>>,
    /// Where a `stream_call`'s chunk and status frames go.
    events: Option<EventSink>,
    op: &'static str,
}

/// One frame of a `stream_call` in progress, for its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamFrame {
    /// A `stream_chunk`.
    Chunk(StreamChunk),
    /// A `status` message.
    Status(String),
}

/// The sending end of a `stream_call`'s frames. Unbounded: the reader never waits for a caller,
/// and a stream's frames are bounded by its completion's length. Remembers whether a frame was
/// delivered, after which the call is never retried.
#[derive(Debug, Clone)]
pub(crate) struct EventSink {
    tx: mpsc::UnboundedSender<StreamFrame>,
    delivered: Arc<AtomicBool>,
}

impl EventSink {
    /// A sink and the receiver of its frames.
    pub(crate) fn channel() -> (EventSink, mpsc::UnboundedReceiver<StreamFrame>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            EventSink {
                tx,
                delivered: Arc::new(AtomicBool::new(false)),
            },
            rx,
        )
    }

    fn send(&self, frame: StreamFrame) {
        if self.tx.send(frame).is_ok() {
            self.delivered.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a frame reached the caller's receiver.
    pub(crate) fn delivered(&self) -> bool {
        self.delivered.load(Ordering::Relaxed)
    }
}

/// The exclusive operation the worker is running (at most one: the pool leases a worker to one
/// caller at a time; pings and cancels are not exclusive).
struct Current {
    id: u64,
    op: &'static str,
    deadline: Option<Instant>,
    /// The caller gave up (dropped its future): the worker is released when the response comes.
    abandoned: bool,
    /// The lease ended while the operation ran: release the worker when it answers.
    release_when_done: bool,
}

struct Inner {
    state: WorkerState,
    transitions: VecDeque<Transition>,
    pending: HashMap<u64, Pending>,
    current: Option<Current>,
    failure: Option<String>,
    calls: u64,
    rss_mb: Option<f64>,
    exit: Option<String>,
    /// The exit status's code, when the process exited by itself (not by a signal).
    exit_code: Option<i32>,
}

/// How a lease on a worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseEnd {
    /// The worker is `Ready` (or `Draining`) and free.
    Free,
    /// Its operation still runs (the caller gave up): it is released when the response comes.
    Deferred,
    /// It is gone.
    Gone,
}

/// A running worker process.
pub(crate) struct Worker {
    pub(crate) wref: WorkerRef,
    ready: Ready,
    spawned_at: Instant,
    writer: Arc<FrameWriter>,
    /// The encoding of outgoing frames, agreed at the handshake.
    codec: FrameCodec,
    msgpack_sent: AtomicU64,
    msgpack_received: AtomicU64,
    signals: mpsc::UnboundedSender<Signal>,
    inner: Mutex<Inner>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    request_ids: Arc<AtomicU64>,
    hooks: Weak<dyn WorkerHooks>,
    state_tx: watch::Sender<WorkerState>,
    /// Becomes true once the worker is `Stopped` or `Failed` (the heartbeat waits on this alone,
    /// so the `Ready ⇄ Busy` changes of every call do not wake it).
    gone_tx: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("worker", &self.wref)
            .field("state", &self.state())
            .finish()
    }
}

/// How a worker killed by SIGXCPU died: the kernel's answer to a process past its CPU-time
/// limit (RLIMIT_CPU, [`PoolBuilder::cpu_seconds`](super::PoolBuilder::cpu_seconds)).
pub(crate) const SIGXCPU_REASON: &str =
    "killed by SIGXCPU (signal 24): it used more CPU time than its limit (RLIMIT_CPU)";

fn describe_exit(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(9)) => "killed by SIGKILL (signal 9; out of memory, or killed)".to_string(),
        (None, Some(11)) => "crashed with SIGSEGV (signal 11)".to_string(),
        (None, Some(15)) => "terminated by SIGTERM (signal 15)".to_string(),
        (None, Some(6)) => "aborted (SIGABRT, signal 6)".to_string(),
        (None, Some(24)) => SIGXCPU_REASON.to_string(),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    }
}

/// The command that starts `config.program` with `args` as a worker (or a fork server) is
/// started: piped stdio, its own process group, killed on drop, the environment cleared but for
/// the allow-list, thread caps and the pool's variables.
pub(crate) fn command(config: &WorkerConfig, args: &[OsString]) -> Command {
    let mut cmd = Command::new(&config.program);
    cmd.args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    for name in &config.env_allow {
        if let Some(value) = std::env::var_os(name) {
            cmd.env(name, value);
        }
    }
    let cap = config.thread_cap.to_string();
    for name in [
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    ] {
        cmd.env(name, &cap);
    }
    // The worker checks that its parent is this process (see PROTOCOL.md, start-up).
    cmd.env("DSPEX_PARENT_PID", std::process::id().to_string());
    cmd.env("TOKENIZERS_PARALLELISM", "false")
        .env("PYTHONUNBUFFERED", "1")
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True");
    for (k, v) in &config.env {
        cmd.env(k, v);
    }
    if let Some(dir) = &config.current_dir {
        cmd.current_dir(dir);
    }
    cmd
}

impl Worker {
    /// Spawns a worker and waits for its `ready` frame. The worker is `Starting` until the
    /// pool calls [`Worker::mark_ready`].
    pub(crate) async fn spawn(
        id: u64,
        config: &WorkerConfig,
        request_ids: Arc<AtomicU64>,
        hooks: Weak<dyn WorkerHooks>,
    ) -> Result<Arc<Worker>, BridgeError> {
        let mut cmd = command(config, &config.args);
        let program = config.program.to_string_lossy().into_owned();
        let spawned_at = Instant::now();
        let mut child = cmd.spawn().map_err(|e| BridgeError::Spawn {
            program: program.clone(),
            message: e.to_string(),
        })?;
        let pid = child.id().unwrap_or(0);
        let wref = WorkerRef { id, pid };
        let (stdin, stdout, stderr) = take_pipes(&mut child, &program, "the child's")?;
        tracing::debug!(target: "dspex::bridge", worker = id, pid, "worker spawned");
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_task = tokio::spawn(forward_stderr(stderr, tail.clone(), wref));
        let mut stdout = BufReader::with_capacity(64 * 1024, stdout);

        let ready = match handshake(&mut stdout, config.start_timeout, wref).await {
            Ok(ready) => ready,
            Err(message) => {
                // Make sure it is gone, then collect what it said on stderr.
                if config.kill_process_group {
                    signal_group(pid, rustix::process::Signal::KILL);
                }
                let _ = child.start_kill();
                let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                let _ = tokio::time::timeout(Duration::from_millis(500), stderr_task).await;
                let stderr: Vec<String> = lock(&tail).iter().cloned().collect();
                return Err(match message {
                    HandshakeError::Version(got) => BridgeError::ProtocolVersion {
                        worker: wref,
                        got,
                        expected: PROTOCOL_VERSION,
                    },
                    HandshakeError::Eof => BridgeError::Handshake {
                        worker: wref,
                        message: match status {
                            Ok(Ok(s)) => format!("it {} before sending `ready`", describe_exit(&s)),
                            _ => "it closed its stdout before sending `ready`".into(),
                        },
                        stderr,
                    },
                    HandshakeError::Other(message) => BridgeError::Handshake {
                        worker: wref,
                        message,
                        stderr,
                    },
                });
            }
        };
        tracing::info!(
            target: "dspex::bridge",
            worker = id, pid, python = %ready.python, dspy = ?ready.dspy,
            "worker sent ready"
        );

        let writer = match stdin
            .into_owned_fd()
            .and_then(pipe::Sender::from_owned_fd)
            .and_then(FrameWriter::start)
        {
            Ok(writer) => writer,
            Err(e) => {
                if config.kill_process_group {
                    signal_group(pid, rustix::process::Signal::KILL);
                }
                let _ = child.start_kill();
                return Err(BridgeError::Spawn {
                    program,
                    message: format!("cannot take over the worker's stdin: {e}"),
                });
            }
        };
        let codec = match config.msgpack_threshold {
            Some(threshold) if ready.accepts(Encoding::MessagePack) => {
                // Before any request: the worker reads its frames in order.
                let options = FrameOptions {
                    msgpack_above: threshold,
                };
                if let Ok(frame) = encode_frame(&options) {
                    writer.send(frame);
                }
                FrameCodec::msgpack_above(threshold)
            }
            _ => FrameCodec::JSON,
        };
        let (signals_tx, signals_rx) = mpsc::unbounded_channel();
        let (state_tx, _) = watch::channel(WorkerState::Starting);
        let (gone_tx, _) = watch::channel(false);
        let worker = Arc::new(Worker {
            wref,
            ready,
            spawned_at,
            writer,
            codec,
            msgpack_sent: AtomicU64::new(0),
            msgpack_received: AtomicU64::new(0),
            signals: signals_tx,
            inner: Mutex::new(Inner {
                state: WorkerState::Starting,
                transitions: VecDeque::new(),
                pending: HashMap::new(),
                current: None,
                failure: None,
                calls: 0,
                rss_mb: None,
                exit: None,
                exit_code: None,
            }),
            stderr: tail,
            request_ids,
            hooks,
            state_tx,
            gone_tx,
        });
        tokio::spawn(read_frames(worker.clone(), stdout));
        tokio::spawn(watch_exit(
            worker.clone(),
            child,
            signals_rx,
            config.kill_process_group,
        ));
        if let Some(interval) = config.heartbeat_interval {
            tokio::spawn(heartbeat(
                worker.clone(),
                interval,
                config.heartbeat_timeout,
                config.max_missed_heartbeats.max(1),
            ));
        }
        Ok(worker)
    }

    /// The state now.
    pub(crate) fn state(&self) -> WorkerState {
        lock(&self.inner).state
    }

    /// Watches state changes.
    pub(crate) fn subscribe(&self) -> watch::Receiver<WorkerState> {
        self.state_tx.subscribe()
    }

    /// Time since spawn.
    pub(crate) fn uptime(&self) -> Duration {
        self.spawned_at.elapsed()
    }

    /// Why it failed (or how it exited).
    pub(crate) fn failure(&self) -> Option<String> {
        lock(&self.inner).failure.clone()
    }

    /// The snapshot for stats.
    pub(crate) fn info(&self) -> WorkerInfo {
        let inner = lock(&self.inner);
        WorkerInfo {
            worker: self.wref,
            state: inner.state,
            calls: inner.calls,
            uptime: self.uptime(),
            rss_mb: inner.rss_mb,
            python: self.ready.python.clone(),
            dspy: self.ready.dspy.clone(),
            failure: inner.failure.clone(),
            msgpack_threshold: self.codec.threshold(),
            msgpack_sent: self.msgpack_sent.load(Ordering::Relaxed),
            msgpack_received: self.msgpack_received.load(Ordering::Relaxed),
            transitions: inner.transitions.iter().cloned().collect(),
        }
    }

    fn stderr_tail(&self) -> Vec<String> {
        lock(&self.stderr).iter().cloned().collect()
    }

    fn set_state(&self, inner: &mut Inner, to: WorkerState, reason: Option<String>) {
        let from = inner.state;
        if from == to {
            return;
        }
        tracing::debug!(
            target: "dspex::bridge",
            worker = self.wref.id, pid = self.wref.pid, from = from.as_str(), to = to.as_str(),
            reason = reason.as_deref().unwrap_or(""),
            "worker state"
        );
        inner.state = to;
        if inner.transitions.len() == MAX_TRANSITIONS {
            inner.transitions.pop_front();
        }
        inner.transitions.push_back(Transition {
            from,
            to,
            at: self.spawned_at.elapsed(),
            reason,
        });
        self.state_tx.send_replace(to);
        if to.is_terminal() {
            self.gone_tx.send_replace(true);
        }
    }

    /// `Starting → Ready`, once the pool has configured the worker. False if it is gone.
    pub(crate) fn mark_ready(&self) -> bool {
        let mut inner = lock(&self.inner);
        if inner.state != WorkerState::Starting {
            return false;
        }
        self.set_state(&mut inner, WorkerState::Ready, None);
        true
    }

    /// `Ready → Busy` for a new lease. False if the worker is not ready.
    pub(crate) fn begin_lease(&self) -> bool {
        let mut inner = lock(&self.inner);
        if inner.state != WorkerState::Ready || inner.current.is_some() {
            return false;
        }
        self.set_state(&mut inner, WorkerState::Busy, None);
        true
    }

    /// Ends a lease: `Busy → Ready` when nothing runs; if the caller's operation still runs
    /// (it gave up), asks the worker to cancel it and defers the release to its response.
    pub(crate) fn end_lease(&self) -> LeaseEnd {
        let mut inner = lock(&self.inner);
        if inner.state.is_terminal() {
            return LeaseEnd::Gone;
        }
        if let Some(current) = inner.current.as_mut() {
            current.release_when_done = true;
            let target = current.id;
            drop(inner);
            self.send_cancel(target);
            return LeaseEnd::Deferred;
        }
        if inner.state == WorkerState::Busy {
            self.set_state(&mut inner, WorkerState::Ready, None);
        }
        LeaseEnd::Free
    }

    /// `Ready | Busy → Draining`: no new traffic.
    pub(crate) fn drain(&self, reason: &str) {
        let mut inner = lock(&self.inner);
        if matches!(
            inner.state,
            WorkerState::Ready | WorkerState::Busy | WorkerState::Starting
        ) {
            self.set_state(&mut inner, WorkerState::Draining, Some(reason.to_string()));
        }
    }

    fn send_frame(&self, frame: Vec<u8>) -> bool {
        if frame.first().is_some_and(|b| b & 0x80 != 0) {
            // The length word's high bit: a MessagePack frame.
            self.msgpack_sent.fetch_add(1, Ordering::Relaxed);
        }
        self.writer.send(frame)
    }

    fn send_cancel(&self, target: u64) {
        let id = self.request_ids.fetch_add(1, Ordering::Relaxed);
        if let Ok(frame) = self.codec.encode_request(id, &Op::Cancel { target }) {
            self.send_frame(frame);
        }
    }

    fn send_lm_result(&self, result: &LmResult) {
        match self.codec.encode(result) {
            Ok(frame) => {
                self.send_frame(frame);
            }
            Err(e) => {
                // Too large to send: tell the worker instead of leaving it waiting.
                let fallback = LmResult::error(result.id, "LmError", e.to_string());
                if let Ok(frame) = encode_frame(&fallback) {
                    self.send_frame(frame);
                }
            }
        }
    }

    /// Closes stdin: the worker exits when it reads end of file.
    pub(crate) fn close_stdin(&self) {
        self.writer.close();
    }

    fn signal(&self, signal: Signal) {
        let _ = self.signals.send(signal);
    }

    /// Sends SIGTERM to the worker's process group.
    pub(crate) fn terminate(&self) {
        self.signal(Signal::Term);
    }

    /// Marks the worker failed (with `reason`) and kills it: in-flight calls get
    /// [`BridgeError::WorkerCrashed`].
    pub(crate) fn kill(self: &Arc<Self>, reason: impl Into<String>) {
        self.fail(reason.into());
        self.close_stdin();
        self.signal(Signal::Kill);
    }

    /// Kills the process without failing anything first (the exit that follows marks the
    /// worker `Stopped` if it was draining).
    pub(crate) fn force_kill(&self) {
        self.close_stdin();
        self.signal(Signal::Kill);
    }

    /// The worker is gone: fail every pending call, record the transition, tell the pool.
    /// Idempotent: only the first call has an effect.
    fn fail(self: &Arc<Self>, reason: String) {
        let pending = {
            let mut inner = lock(&self.inner);
            if inner.state.is_terminal() {
                return;
            }
            let to = if inner.state == WorkerState::Draining {
                WorkerState::Stopped
            } else {
                WorkerState::Failed
            };
            inner.failure = Some(reason.clone());
            inner.current = None;
            self.set_state(&mut inner, to, Some(reason.clone()));
            std::mem::take(&mut inner.pending)
        };
        let stderr = self.stderr_tail();
        for (_, p) in pending {
            let _ = p.tx.send(Err(BridgeError::WorkerCrashed {
                worker: self.wref,
                op: p.op,
                reason: reason.clone(),
                stderr: stderr.clone(),
            }));
        }
        if self.state() == WorkerState::Failed {
            tracing::warn!(
                target: "dspex::bridge",
                worker = self.wref.id, pid = self.wref.pid, reason = %reason,
                "worker failed"
            );
        } else {
            tracing::info!(
                target: "dspex::bridge",
                worker = self.wref.id, pid = self.wref.pid, reason = %reason,
                "worker stopped"
            );
        }
        // Make sure the process (and its group) is gone; harmless if it already exited.
        self.close_stdin();
        self.signal(Signal::Kill);
        if let Some(hooks) = self.hooks.upgrade() {
            hooks.worker_down(self);
        }
    }

    fn crashed(&self, op: &'static str) -> BridgeError {
        BridgeError::WorkerCrashed {
            worker: self.wref,
            op,
            reason: self
                .failure()
                .unwrap_or_else(|| "its pipes closed".to_string()),
            stderr: self.stderr_tail(),
        }
    }

    /// Sends `op` and waits for its response. `exclusive` operations (everything but pings and
    /// cancels) become the worker's current operation: its `lm_call`s are served here, with
    /// `lm` or else the LM of [`Settings::current`] in the calling task. On `timeout` the worker
    /// is killed and the caller gets [`BridgeError::Timeout`].
    ///
    /// Cancel-safe: a caller that drops this future leaves the worker busy until the operation
    /// answers (its `lm_call`s are refused), and the heartbeat kills it past its deadline.
    pub(crate) async fn request(
        self: &Arc<Self>,
        op: &Op,
        exclusive: bool,
        timeout: Option<Duration>,
        lm: Option<&Arc<dyn LanguageModel>>,
    ) -> Result<Value, BridgeError> {
        self.request_with_events(op, exclusive, timeout, lm, None, None)
            .await
    }

    /// Whether the worker announced `feature` in its `ready` frame.
    pub(crate) fn has_feature(&self, feature: &str) -> bool {
        self.ready.features.iter().any(|f| f == feature)
    }

    /// [`request`](Self::request), with the `stream_chunk` and `status` frames of the request
    /// sent to `events`, and the variables of the session it runs in sent along. A
    /// `stream_call` to a worker without [`FEATURE_STREAM`] fails with
    /// [`BridgeError::Unsupported`] without being sent.
    pub(crate) async fn request_with_events(
        self: &Arc<Self>,
        op: &Op,
        exclusive: bool,
        timeout: Option<Duration>,
        lm: Option<&Arc<dyn LanguageModel>>,
        events: Option<EventSink>,
        session_state: Option<&Map<String, Value>>,
    ) -> Result<Value, BridgeError> {
        if matches!(op, Op::StreamCall { .. }) && !self.has_feature(FEATURE_STREAM) {
            return Err(BridgeError::Unsupported {
                worker: self.wref,
                op: op.name(),
                feature: FEATURE_STREAM,
            });
        }
        let id = self.request_ids.fetch_add(1, Ordering::Relaxed);
        let frame = self
            .codec
            .encode_request_in(id, op, session_state)
            .map_err(|source| BridgeError::Protocol {
                worker: Some(self.wref),
                source,
            })?;
        let (tx, mut rx) = oneshot::channel();
        let (lm_tx, mut lm_rx) = if exclusive {
            let (a, b) = mpsc::unbounded_channel();
            (Some(a), Some(b))
        } else {
            (None, None)
        };
        {
            let mut inner = lock(&self.inner);
            if inner.state.is_terminal() {
                drop(inner);
                return Err(self.crashed(op.name()));
            }
            inner.pending.insert(
                id,
                Pending {
                    tx,
                    lm: lm_tx,
                    events,
                    op: op.name(),
                },
            );
            if exclusive {
                inner.calls += 1;
                inner.current = Some(Current {
                    id,
                    op: op.name(),
                    deadline: timeout.map(|t| Instant::now() + t),
                    abandoned: false,
                    release_when_done: false,
                });
            }
        }
        let mut guard = InFlight {
            worker: self,
            id,
            exclusive,
            armed: true,
        };
        if !self.send_frame(frame) {
            guard.armed = false;
            self.forget(id, exclusive);
            return Err(self.crashed(op.name()));
        }
        let lm = lm.cloned();
        let wait = async {
            let mut serving = FuturesUnordered::new();
            loop {
                tokio::select! {
                    biased;
                    result = &mut rx => {
                        return result.unwrap_or_else(|_| Err(self.crashed(op.name())));
                    }
                    Some(result) = serving.next(), if !serving.is_empty() => {
                        self.send_lm_result(&result);
                    }
                    Some(call) = next_lm_call(&mut lm_rx) => {
                        serving.push(self.serve_lm_call(call, lm.clone()));
                    }
                }
            }
        };
        let result = match timeout {
            None => wait.await,
            Some(t) => match tokio::time::timeout(t, wait).await {
                Ok(result) => result,
                Err(_) => {
                    guard.armed = false;
                    self.forget(id, exclusive);
                    self.kill(format!("`{}` timed out after {t:?}", op.name()));
                    return Err(BridgeError::Timeout {
                        worker: self.wref,
                        op: op.name(),
                        timeout: t,
                    });
                }
            },
        };
        guard.armed = false;
        result
    }

    /// Forgets request `id` (its caller is gone). An exclusive operation stays current — the
    /// worker is still running it — but is marked abandoned.
    fn forget(&self, id: u64, exclusive: bool) {
        let mut inner = lock(&self.inner);
        inner.pending.remove(&id);
        if exclusive
            && let Some(current) = inner.current.as_mut()
            && current.id == id
        {
            current.abandoned = true;
        }
    }

    /// The reader got a response.
    fn on_response(self: &Arc<Self>, id: u64, result: Result<Value, BridgeError>) {
        let (pending, release) = {
            let mut inner = lock(&self.inner);
            let pending = inner.pending.remove(&id);
            let mut release = false;
            if inner.current.as_ref().is_some_and(|c| c.id == id) {
                let current = inner.current.take();
                if current.is_some_and(|c| c.release_when_done) && inner.state == WorkerState::Busy
                {
                    self.set_state(&mut inner, WorkerState::Ready, None);
                    release = true;
                } else if inner.state == WorkerState::Draining {
                    // Shutdown waits for this.
                    self.state_tx.send_replace(WorkerState::Draining);
                }
            }
            (pending, release)
        };
        match pending {
            Some(p) => {
                let _ = p.tx.send(result);
            }
            None => tracing::trace!(
                target: "dspex::bridge",
                worker = self.wref.id, id, "response to a request nobody waits for"
            ),
        }
        if release && let Some(hooks) = self.hooks.upgrade() {
            hooks.worker_released(self);
        }
    }

    /// The reader got an `lm_call`: hand it to the caller of the request it names as its
    /// parent (or, when it names none, of the running operation); refuse it when that caller is
    /// gone — a straggler thread of an operation that ended must not be served by the caller of
    /// the next one (with its LM, settings and usage tracker).
    fn on_lm_call(&self, call: LmCall) {
        let target = {
            let inner = lock(&self.inner);
            let parent = call.parent.or_else(|| {
                inner
                    .current
                    .as_ref()
                    .filter(|c| !c.abandoned)
                    .map(|c| c.id)
            });
            parent
                .and_then(|id| inner.pending.get(&id))
                .and_then(|p| p.lm.clone())
        };
        let (id, parent) = (call.id, call.parent);
        let refused = match target {
            Some(tx) => tx.send(call).is_err(),
            None => true,
        };
        if refused {
            tracing::debug!(
                target: "dspex::bridge",
                worker = self.wref.id, lm_call = id, parent,
                "refused an LM call nobody waits for"
            );
            let message = match parent {
                Some(parent) => format!(
                    "no caller is waiting for request {parent}, whose operation made this LM call"
                ),
                None => "no caller is waiting for the operation that made this LM call".into(),
            };
            self.send_lm_result(&LmResult::error(id, "Cancelled", message));
        }
    }

    /// The reader got a `stream_chunk` or `status` frame of request `id`: hand it to the
    /// request's caller; dropped when nobody waits for it (the caller gave up) or the request is
    /// not a `stream_call`.
    fn on_stream_frame(&self, id: u64, frame: StreamFrame) {
        let sink = lock(&self.inner)
            .pending
            .get(&id)
            .and_then(|p| p.events.clone());
        match sink {
            Some(sink) => sink.send(frame),
            None => tracing::trace!(
                target: "dspex::bridge",
                worker = self.wref.id, id, "stream frame for a request nobody streams; dropped"
            ),
        }
    }

    /// Serves one `lm_call` with `lm`, or the LM of the settings in the calling task. A
    /// streamed call (`"stream": true`) is answered from the LM's stream: an `lm_chunk` per
    /// piece of text as it arrives, then the `lm_result` with the whole completion. Dropping
    /// the future (the caller gave up) drops the LM's stream.
    async fn serve_lm_call(&self, call: LmCall, lm: Option<Arc<dyn LanguageModel>>) -> LmResult {
        let Some(lm) = lm.or_else(|| Settings::current().lm) else {
            return LmResult::error(
                call.id,
                "LmError",
                "no LM is configured on the Rust side: give the pool an LM (PoolBuilder::lm) or configure dspex::settings",
            );
        };
        let request = match call.request.to_lm_request() {
            Ok(r) => r,
            Err(message) => return LmResult::error(call.id, "ValueError", message),
        };
        // A stream carries one completion: several are answered whole.
        if !call.stream || request.n.unwrap_or(1) > 1 {
            return match lm.call(request).await {
                Ok(response) => LmResult::from_response(call.id, &response),
                Err(e) => LmResult::error(call.id, "LmError", e.to_string()),
            };
        }
        let mut events = match lm.stream(request).await {
            Ok(events) => events,
            Err(e) => return LmResult::error(call.id, "LmError", e.to_string()),
        };
        let mut text = String::new();
        let mut usage = crate::lm::Usage::default();
        while let Some(event) = events.next().await {
            match event {
                Ok(crate::lm::StreamEvent::Delta {
                    index: 0,
                    text: delta,
                }) => {
                    if delta.is_empty() {
                        continue;
                    }
                    let chunk = LmChunk {
                        id: call.id,
                        text: delta,
                    };
                    match encode_frame(&chunk) {
                        Ok(frame) => {
                            self.send_frame(frame);
                        }
                        Err(e) => return LmResult::error(call.id, "LmError", e.to_string()),
                    }
                    text.push_str(&chunk.text);
                }
                Ok(crate::lm::StreamEvent::Usage(u)) => usage = u,
                Ok(_) => {}
                Err(e) => return LmResult::error(call.id, "LmError", e.to_string()),
            }
        }
        LmResult {
            id: call.id,
            ok: Some(LmCompletion {
                choices: vec![text],
                usage,
                model: lm.model().to_string(),
            }),
            error: None,
        }
    }

    /// The deadline of an abandoned operation that has passed, if any.
    fn overdue(&self) -> Option<&'static str> {
        let inner = lock(&self.inner);
        let current = inner.current.as_ref()?;
        let deadline = current.deadline?;
        // A caller still waiting enforces its own timeout; a little slack avoids racing it.
        (Instant::now() > deadline + Duration::from_millis(100)).then_some(current.op)
    }

    /// Waits until the process has exited, up to `timeout`. True if it did.
    pub(crate) async fn wait_exit(&self, timeout: Duration) -> bool {
        let mut rx = self.subscribe();
        let exited = async {
            loop {
                if lock(&self.inner).exit.is_some() {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, exited).await.is_ok()
    }

    /// Waits until no exclusive operation runs, up to `timeout`. True if none does.
    pub(crate) async fn wait_idle(&self, timeout: Duration) -> bool {
        let mut rx = self.subscribe();
        let idle = async {
            loop {
                {
                    let inner = lock(&self.inner);
                    if inner.current.is_none() || inner.state.is_terminal() {
                        return;
                    }
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, idle).await.is_ok()
    }

    /// Whether the process has exited by itself with status 0, as a worker does after the
    /// `shutdown` operation or end of stdin; false while it runs, and after a crash, a signal or
    /// an error status.
    pub(crate) fn exited_cleanly(&self) -> bool {
        lock(&self.inner).exit_code == Some(0)
    }

    /// How the process exited (as in a crash's reason), once the pool has seen it exit.
    pub(crate) fn exit_description(&self) -> Option<String> {
        lock(&self.inner).exit.clone()
    }

    fn record_exit(self: &Arc<Self>, code: Option<i32>, description: String) {
        {
            let mut inner = lock(&self.inner);
            inner.exit = Some(description.clone());
            inner.exit_code = code;
        }
        self.fail(description);
        // Wake wait_exit even when fail() had nothing to do.
        self.state_tx.send_modify(|_| {});
    }
}

/// Drops a pending request whose caller went away.
struct InFlight<'a> {
    worker: &'a Worker,
    id: u64,
    exclusive: bool,
    armed: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.worker.forget(self.id, self.exclusive);
        }
    }
}

async fn next_lm_call(rx: &mut Option<mpsc::UnboundedReceiver<LmCall>>) -> Option<LmCall> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

enum HandshakeError {
    Eof,
    Version(u32),
    Other(String),
}

async fn handshake(
    stdout: &mut BufReader<ChildStdout>,
    timeout: Duration,
    wref: WorkerRef,
) -> Result<Ready, HandshakeError> {
    let frame = match tokio::time::timeout(timeout, read_encoded_frame(stdout)).await {
        Err(_) => {
            return Err(HandshakeError::Other(format!(
                "no `ready` within {timeout:?} (start timeout)"
            )));
        }
        Ok(Ok(None)) => return Err(HandshakeError::Eof),
        Ok(Err(e)) => return Err(HandshakeError::Other(format!("bad first frame: {e}"))),
        Ok(Ok(Some(frame))) => frame,
    };
    match frame.decode::<WorkerMessage>() {
        Ok(WorkerMessage::Ready(ready)) if ready.protocol == PROTOCOL_VERSION => {
            if ready.pid != wref.pid {
                tracing::debug!(
                    target: "dspex::bridge",
                    worker = wref.id, pid = wref.pid, reported = ready.pid,
                    "the worker reports another pid (a wrapper process?)"
                );
            }
            Ok(ready)
        }
        Ok(WorkerMessage::Ready(ready)) => Err(HandshakeError::Version(ready.protocol)),
        Ok(other) => Err(HandshakeError::Other(format!(
            "the first frame must be `ready`, got {other:?}"
        ))),
        Err(e) => Err(HandshakeError::Other(format!("bad first frame: {e}"))),
    }
}

async fn read_frames(worker: Arc<Worker>, mut stdout: BufReader<ChildStdout>) {
    let reason = loop {
        let frame = match read_encoded_frame(&mut stdout).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break None,
            Err(e) => break Some(e),
        };
        if frame.encoding == Encoding::MessagePack {
            worker.msgpack_received.fetch_add(1, Ordering::Relaxed);
        }
        let message = if frame.body.len() > BLOCKING_DECODE_BYTES {
            match tokio::task::spawn_blocking(move || frame.decode::<WorkerMessage>()).await {
                Ok(message) => message,
                Err(e) => Err(FrameError::Json {
                    message: format!("the decoding task failed: {e}"),
                    excerpt: String::new(),
                }),
            }
        } else {
            frame.decode::<WorkerMessage>()
        };
        match message {
            Ok(WorkerMessage::Response(response)) => {
                let id = response.id;
                let op = {
                    let inner = lock(&worker.inner);
                    inner.pending.get(&id).map_or("?", |p| p.op)
                };
                let result = response.into_result().map_err(|error| BridgeError::Remote {
                    worker: worker.wref,
                    op,
                    error,
                });
                worker.on_response(id, result);
            }
            Ok(WorkerMessage::LmCall(call)) => worker.on_lm_call(call),
            Ok(WorkerMessage::StreamChunk(chunk)) => {
                worker.on_stream_frame(chunk.id, StreamFrame::Chunk(chunk));
            }
            Ok(WorkerMessage::Status(status)) => {
                worker.on_stream_frame(status.id, StreamFrame::Status(status.message));
            }
            Ok(other) => tracing::warn!(
                target: "dspex::bridge",
                worker = worker.wref.id, pid = worker.wref.pid, message = ?other,
                "unexpected message from the worker (ignored)"
            ),
            // The frame boundary is intact, so one bad frame does not desynchronize the stream;
            // but a worker writing junk to stdout is broken: replace it.
            Err(e) => break Some(e),
        }
    };
    match reason {
        None => {
            // The process is probably exiting: give the exit watcher a moment to report how.
            let _ =
                tokio::time::timeout(Duration::from_millis(20), worker.wait_exit_status()).await;
            worker.fail("it closed its stdout".to_string());
        }
        Some(e) => worker.kill(protocol_failure(&e)),
    }
}

fn protocol_failure(e: &FrameError) -> String {
    format!("protocol error on its stdout: {e}")
}

impl Worker {
    async fn wait_exit_status(&self) {
        let mut rx = self.subscribe();
        loop {
            if lock(&self.inner).exit.is_some() {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

async fn watch_exit(
    worker: Arc<Worker>,
    mut child: Child,
    mut signals: mpsc::UnboundedReceiver<Signal>,
    kill_group: bool,
) {
    let pid = worker.wref.pid;
    let status = loop {
        tokio::select! {
            biased;
            status = child.wait() => break status,
            signal = signals.recv() => match signal {
                Some(Signal::Term) => {
                    if kill_group {
                        signal_group(pid, rustix::process::Signal::TERM);
                    }
                }
                Some(Signal::Kill) | None => {
                    if kill_group {
                        signal_group(pid, rustix::process::Signal::KILL);
                    }
                    let _ = child.start_kill();
                    break child.wait().await;
                }
            },
        }
    };
    let (code, description) = match status {
        Ok(status) => (status.code(), describe_exit(&status)),
        Err(e) => (None, format!("could not be waited for: {e}")),
    };
    worker.record_exit(code, description);
}

/// The stdin, stdout and stderr of a child spawned with all three piped; if one is missing the
/// child is killed and the error names `whose` pipes.
pub(crate) fn take_pipes(
    child: &mut tokio::process::Child,
    program: &str,
    whose: &str,
) -> Result<
    (
        tokio::process::ChildStdin,
        tokio::process::ChildStdout,
        tokio::process::ChildStderr,
    ),
    BridgeError,
> {
    match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
        (Some(stdin), Some(stdout), Some(stderr)) => Ok((stdin, stdout, stderr)),
        _ => {
            let _ = child.start_kill();
            Err(BridgeError::Spawn {
                program: program.to_string(),
                message: format!("{whose} pipes were not opened"),
            })
        }
    }
}

/// Sends `signal` to the process group `pgid` (`killpg`, through rustix's safe wrapper: no
/// program is spawned for it). Best effort: the child itself is also killed through tokio, and
/// a group already gone is not an error.
pub(crate) fn signal_group(pgid: u32, signal: rustix::process::Signal) {
    let Some(group) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    if let Err(e) = rustix::process::kill_process_group(group, signal)
        && e != rustix::io::Errno::SRCH
    {
        tracing::debug!(target: "dspex::bridge", pgid, error = %e, "could not signal the worker's process group");
    }
}

pub(crate) async fn forward_stderr(
    stderr: ChildStderr,
    tail: Arc<Mutex<VecDeque<String>>>,
    wref: WorkerRef,
) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // A line longer than this is logged in pieces (a worker must not grow our memory).
        match (&mut reader)
            .take(STDERR_READ_LIMIT)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                tracing::info!(
                    target: "dspex::bridge::worker",
                    worker = wref.id, pid = wref.pid,
                    "{line}"
                );
                let mut tail = lock(&tail);
                if tail.len() == STDERR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line.chars().take(STDERR_LINE_CHARS).collect());
            }
        }
    }
}

async fn heartbeat(worker: Arc<Worker>, interval: Duration, timeout: Duration, max_missed: u32) {
    // Only the end of the worker wakes this task between beats: it used to watch every state
    // change, and `Ready ⇄ Busy` happens twice per call.
    let mut gone = worker.gone_tx.subscribe();
    let mut missed = 0;
    let mut next = tokio::time::Instant::now() + interval;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = gone.wait_for(|gone| *gone) => return,
        }
        next = tokio::time::Instant::now() + interval;
        if worker.state().is_terminal() {
            return;
        }
        if let Some(op) = worker.overdue() {
            worker.kill(format!(
                "`{op}` ran past its deadline after its caller gave up"
            ));
            return;
        }
        match tokio::time::timeout(timeout, worker.request(&Op::Ping, false, None, None)).await {
            Ok(Ok(pong)) => {
                missed = 0;
                if let Ok(ping) = serde_json::from_value::<PingResult>(pong) {
                    lock(&worker.inner).rss_mb = Some(ping.rss_mb);
                }
            }
            Ok(Err(BridgeError::WorkerCrashed { .. })) => return,
            Ok(Err(e)) => {
                missed += 1;
                tracing::warn!(
                    target: "dspex::bridge",
                    worker = worker.wref.id, pid = worker.wref.pid, error = %e,
                    "heartbeat failed"
                );
            }
            Err(_) => {
                missed += 1;
                tracing::warn!(
                    target: "dspex::bridge",
                    worker = worker.wref.id, pid = worker.wref.pid, missed,
                    "heartbeat missed"
                );
            }
        }
        if missed >= max_missed {
            worker.kill(format!(
                "it missed {missed} heartbeats in a row ({timeout:?} each)"
            ));
            return;
        }
    }
}
