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
//! - [`Session`] and [`AffinityMode`] — calls that share objects run on one worker.
//! - [`BridgedModule`] / [`BridgedPredict`] — a DSPy module as a typed [`Program`](crate::Program),
//!   with `save_state`, `load_state` and `optimize`.
//! - [`Router`] — one program type, [`Routed`], for a module that is native or bridged: dspex's
//!   implementation when it has one for the module name ([`NATIVE_MODULES`]), else DSPy's in the
//!   pool; [`Route`] forces either; the choice is traced and [`Routed::route`] reports it.
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
//! # Not yet
//! Bytes as MessagePack `bin`: messages carry JSON values, so an image still travels as base64
//! text (MessagePack saves its JSON escaping and parsing, not the base64).

mod error;
mod forkserver;
mod pool;
mod program;
pub mod protocol;
mod router;
mod worker;
mod writer;

pub use error::{BridgeError, WorkerRef};
pub use pool::{
    AffinityMode, CallBreaker, CallBreakerState, LatencyHistogram, Pool, PoolBuilder, PoolStats,
    RequestOptions, RestartBreaker, Session, ShutdownReport,
};
pub use program::{BridgedModule, BridgedPredict, Optimization};
pub use router::{
    DynBridged, NATIVE_MODULES, NativeModule, Route, Routed, RoutedProgram, Router, RouterError,
    SignatureArg, TypedRouted,
};
pub use worker::{DEFAULT_ENV_ALLOW, MAX_TRANSITIONS, Transition, WorkerInfo, WorkerState};
