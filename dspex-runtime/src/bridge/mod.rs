//! The Python bridge: DSPy modules run in a supervised pool of Python worker processes and
//! called from Rust as typed programs.
//!
//! - [`Pool`] / [`PoolBuilder`] — N workers (`python -m dspex_worker`) started concurrently, each
//!   taking traffic only after its `ready` handshake (and the init operations, such as
//!   `configure`); checkout with a bounded queue and a timeout; heartbeats; a per-call timeout
//!   that kills and replaces a hung worker; crash detection on process exit or end of stdout, with
//!   retries of idempotent calls on another worker after a jittered backoff
//!   ([`PoolBuilder::retry_backoff`]); replacement with exponential backoff and a restart breaker;
//!   a breaker on the call error rate ([`CallBreaker`]) that fails calls fast while most fail for
//!   pool reasons; graceful [`shutdown`](Pool::shutdown); [`stats`](Pool::stats).
//! - Limits per worker: address space ([`PoolBuilder::memory_mb`]) and CPU time per operation
//!   ([`PoolBuilder::cpu_seconds`]; a call past it fails with
//!   [`CpuLimitExceeded`](BridgeError::CpuLimitExceeded) and its worker is replaced); no network
//!   ([`PoolBuilder::no_network`], a network namespace per worker, checked at start:
//!   [`NetworkIsolation`](BridgeError::NetworkIsolation) where the OS refuses); a read-only file
//!   system but for named paths ([`PoolBuilder::read_only_fs`] and
//!   [`writable_path`](PoolBuilder::writable_path), a Landlock ruleset per worker, checked at
//!   start: [`FilesystemIsolation`](BridgeError::FilesystemIsolation) where the kernel cannot).
//! - A fork server ([`PoolBuilder::fork_server`]): DSPy imported once, workers forked from it,
//!   so a replacement is ready in a fraction of the time of a fresh `import dspy`.
//! - [`Session`] and [`AffinityMode`] — calls that share objects run on one worker. A session
//!   has a lifecycle ([`SessionOptions`]: affinity, idle TTL, an initial state of JSON
//!   variables kept in Rust): [`close`](Session::close), expiry after its idle TTL, or the
//!   drop of its last handle has the worker drop every object created in it (`close_session`);
//!   later calls fail with [`SessionClosed`](BridgeError::SessionClosed) /
//!   [`SessionExpired`](BridgeError::SessionExpired).
//! - [`SessionStore`] — one session per user id, the same (and on the same worker) while it
//!   is open, bounded with least-recently-active eviction; an ended or lost session is
//!   replaced by a new one on the next [`get_or_create`](SessionStore::get_or_create).
//! - [`BridgedModule`] / [`BridgedPredict`] — a DSPy module as a typed [`Program`](crate::Program),
//!   with `save_state`, `load_state` and `optimize`, and [`stream`](BridgedModule::stream):
//!   DSPy's `dspy.streamify` in the worker, its field chunks and status messages forwarded as
//!   they come (the worker's LM calls streamed from the pool's LM), as the same
//!   [`FieldStream`](crate::module::FieldStream) a native module streams; dropping the stream
//!   cancels the call in the worker and the LM stream serving it.
//! - [`Router`] — one program type, [`Routed`], for a module that is native or bridged: dspex's
//!   implementation when it can build one from the description ([`Router::native_modules`],
//!   derived from a registry: Predict, ChainOfThought, MultiChainComparison), else DSPy's in the
//!   pool; [`Route`] forces either, a [`RouteStrategy`] decides otherwise (by module, input
//!   size, load), a [`Fallback`] policy re-runs failed calls on the other route; the route of
//!   each call is traced, counted ([`RouteStats`]) and reported by [`Routed::route`];
//!   [`Routed::stream`] streams either way.
//! - [`HybridProgram`] — a pipeline of DSPy modules from one [`HybridSpec`], each step routed on
//!   its own (a ChainOfThought natively, a ProgramOfThought in the pool), saved and loaded as a
//!   whole in DSPy's state format (the file DSPy's `save` writes for the equivalent program).
//! - [`protocol`] — the frames and messages of `python/PROTOCOL.md`. Large messages travel as
//!   MessagePack ([`PoolBuilder::msgpack_threshold`], default above 64 KiB), agreed per worker
//!   at the handshake; a worker that does not announce it gets JSON.
//! - [`BridgeError`] — every failure, typed: [`Timeout`](BridgeError::Timeout),
//!   [`WorkerCrashed`](BridgeError::WorkerCrashed), [`PoolSaturated`](BridgeError::PoolSaturated),
//!   [`CheckoutTimeout`](BridgeError::CheckoutTimeout), [`SessionLost`](BridgeError::SessionLost), …
//!
//! # LM calls
//! With the workers configured in `bridge` LM mode ([`protocol::LmConfig::bridge`], sent by an
//! init `configure`), DSPy's completions come back to Rust as `lm_call`s and are answered by the
//! pool's LM ([`PoolBuilder::lm`]) or else by the LM of [`Settings::current`](crate::settings::Settings::current)
//! — served inside the calling task, so `with_settings` overrides and
//! [`track_usage`](crate::lm::track_usage) see them.
//!
//! # No orphans
//! Each worker runs in its own process group, reads end of file on stdin when the pool's process
//! dies (and exits), and sets its parent-death signal to SIGKILL. Caveat of the parent-death
//! signal: Linux sends it when the *thread* that spawned the worker exits, so pools should live
//! on a runtime whose threads outlive them (a `spawn_blocking` thread is a bad home). Killing a
//! worker signals its whole process group with `kill(1)` (the workspace forbids `unsafe`, so no
//! `libc::killpg`), then the child itself.
//!
//! # Metrics
//! With the `otel` feature the pool records, through the same OpenTelemetry meter as the LM
//! layer ([`metric`](crate::telemetry::metric)): `dspex.bridge.pool.busy`, `….utilization`,
//! `….queue.depth` (gauges), `….checkout.wait` and `….call.duration` (histograms, seconds;
//! the latter by `dspex.bridge.op`), `….call.errors` (by `error.type`, the [`BridgeError`]
//! variant), `….restarts`, `….sessions.live` (an up-down counter) and `….sessions.ended` (by
//! `dspex.bridge.session.end`). [`Pool::stats`] has the same figures without the feature.
//!
//! # Not yet
//! Streams of `n` > 1 completions (the LM call is then answered whole);
//! reasoning and tool-call deltas of a streamed LM call (only its text is sent as `lm_chunk`s).
//! Hybrid programs other than a sequential pipeline (branches, loops, steps that call one
//! another); native `BestOfN`, `Refine`, `ReAct` and `ProgramOfThought` from a description (they
//! take Python callables or run generated code, so they are routed to DSPy).
//! Bytes as MessagePack `bin`: messages carry JSON values, so an image still travels as base64
//! text (MessagePack saves its JSON escaping and parsing, not the base64).

mod error;
mod forkserver;
mod hybrid;
mod pool;
mod program;
pub mod protocol;
mod router;
mod worker;
mod writer;

pub use error::{BridgeError, WorkerRef};
pub use hybrid::{HybridError, HybridProgram, HybridSpec, HybridStep};
pub use pool::{
    AffinityMode, CallBreaker, CallBreakerState, LatencyHistogram, Pool, PoolBuilder, PoolStats,
    RequestOptions, RestartBreaker, Session, SessionOptions, SessionStatus, SessionStore,
    ShutdownReport,
};
pub use program::{BridgedModule, BridgedPredict, Optimization};
pub use router::{
    BridgedFailure, DynBridged, Fallback, NATIVE_MODULES, NativeFailure, NativeModule, PoolLoad,
    PreferNative, Route, RouteContext, RouteStats, RouteStrategy, Routed, RoutedProgram, Router,
    RouterError, SignatureArg, TypedRouted,
};
pub use worker::{DEFAULT_ENV_ALLOW, MAX_TRANSITIONS, Transition, WorkerInfo, WorkerState};
