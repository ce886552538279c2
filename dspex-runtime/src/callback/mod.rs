//! Callbacks: observers of every module, LM, adapter, tool and evaluation call — DSPy's
//! `dspy.utils.callback.BaseCallback` and `with_callbacks`.
//!
//! - [`Callback`] — the hooks, each with a default that does nothing: `on_module_start/end`,
//!   `on_lm_start/end`, `on_adapter_format_start/end`, `on_adapter_parse_start/end`,
//!   `on_tool_start/end`, `on_evaluate_start/end`.
//! - [`StartEvent`] / [`EndEvent`] — what a hook receives: the [`CallId`] (the same on a call's
//!   start and end), the id of the enclosing call ([`parent_id`](StartEvent::parent_id)), the
//!   [`EventKind`] and name of the component, and the inputs as JSON (start), or the outputs as
//!   JSON or an [`EventError`] (end).
//! - [`CallbackHandle`] — one registered callback with its own queue and delivery thread;
//!   [`Callbacks`] — a list of them, as [`Settings::callbacks`](crate::settings::Settings)
//!   and the modules' `with_callbacks` take it.
//! - [`TracingCallback`] — a callback that reports every call as `tracing` events.
//! - [`Instrumented`] — module events for a program you wrote
//!   ([`ProgramExt::instrumented`](crate::ProgramExt::instrumented)).
//!
//! # Where callbacks are set, and who receives what
//!
//! As in DSPy, the callbacks of one call are the ones in the [settings](crate::settings) in
//! effect (process-wide with [`configure`](crate::settings::configure), or for a scope with
//! [`with_settings`](crate::settings::with_settings)), **followed by** the callbacks of the
//! instance making the call (`with_callbacks` on [`Predict`](crate::module::Predict),
//! [`DynPredict`](crate::module::DynPredict), [`ChainOfThought`](crate::module::ChainOfThought),
//! [`ReAct`](crate::module::ReAct), [`DynReAct`](crate::module::DynReAct),
//! [`Tool`](crate::module::Tool), [`Evaluate`](crate::evaluate::Evaluate), [`Instrumented`]).
//! An instance's callbacks receive that instance's own events only: a `Predict`'s callbacks see
//! its module start and end, not the adapter and LM calls inside it (DSPy's rule). To see
//! everything a call does, set the callbacks in the settings around it. A scope's callbacks
//! replace those of the enclosing scope and of `configure` (as `dspy.context(callbacks=[...])`
//! does); list all of them when you want several.
//!
//! LMs take no callbacks of their own: the LM layer (`dspex-lm`) knows nothing of the runtime,
//! and its events are fired where the runtime calls the LM, with the callbacks in the settings.
//!
//! # Which calls fire events
//!
//! | Event | Fired by | Name | Inputs | Outputs |
//! |---|---|---|---|---|
//! | module | `Predict`/`DynPredict` calls (`"Predict"`), `ChainOfThought` (`"ChainOfThought"`), `ReAct`/`DynReAct` (`"ReAct"`), `BestOfN`, `Refine`, `MultiChainComparison`, an [`Instrumented`] program (its name) | type or given name | the input fields (`MultiChainComparison`: and the `completions`) | the prediction's fields |
//! | adapter format | every predictor call, before the LM call | `ChatAdapter`, `JSONAdapter`, … | `signature`, `demos`, `inputs` | the messages |
//! | LM | every predictor call | the model string | the request (messages and parameters) | the response (choices, usage, model, cache hit) |
//! | adapter parse | once per completion | the adapter | `signature`, `completion` | the parsed fields |
//! | tool | every [`Tool::call`](crate::module::Tool::call) (ReAct's tool steps among them) | the tool's name | the arguments | the tool's result |
//! | evaluate | [`Evaluate::call`](crate::evaluate::Evaluate::call) / `call_on` | `Evaluate` | `devset_size`, `metric`, `num_threads` | `score`, `n_examples`, `n_errors` |
//!
//! A `ChainOfThought` call fires its own module events around the ones of the `Predict` inside it,
//! as DSPy's does; ReAct fires one module call around the step predictors, the tools and the
//! extraction predictor. When the ChatAdapter's output does not parse and the JSONAdapter is
//! tried, the parse end carries the error and a second format / LM / parse sequence follows,
//! named `JSONAdapter`. `BestOfN` and `Refine` fire one module call around their attempts (and
//! Refine's feedback calls); `Parallel` is not a module in DSPy and fires none of its own.
//!
//! A streamed call (`stream`, `stream_with` on `DynPredict`, `Predict`, `ChainOfThought`) fires
//! the events of the plain call: its module calls start when the stream is made, the format and
//! LM events when it is first polled, the LM's end (the text as it streamed, with
//! `"streamed": true`) and the parse events when the LM's stream ends, and the module ends
//! with the final item or the error. A stream dropped before its end ends its open calls as
//! cancelled. The events go to the callbacks in effect where the stream was *made*, and name
//! the calls open there as parents, wherever the stream is then polled.
//!
//! No event carries a secret: LM inputs are the request (messages and sampling parameters), and
//! API keys live in the LM client, which never appears in an event.
//!
//! # Relating calls: call ids and parent ids
//!
//! Every call that has at least one callback gets a fresh [`CallId`], unique in the process, on
//! its start and end events. DSPy has no parent link; dspex adds one: `parent_id` is the id of
//! the innermost enclosing call (a module, a tool, an evaluation) that fired events, so the LM
//! call inside a `Predict` names that `Predict` call, and a `Predict` inside a `ChainOfThought`
//! names the `ChainOfThought` call. With per-instance callbacks the parent may be a call that
//! this callback was not told about. The link is task-scoped: it follows a call into the futures
//! it awaits, and into spawned tasks wrapped in
//! [`in_current_scope`](crate::settings::in_current_scope). [`current_call_id`] reads it.
//!
//! # Guarantees: a callback can neither break nor block a call
//!
//! Each [`CallbackHandle`] owns a bounded queue (capacity [`DEFAULT_QUEUE_CAPACITY`], or
//! [`CallbackHandle::with_capacity`]) and one OS thread that drains it, calling the hooks one
//! event at a time. A call only builds its events and *tries* to enqueue them; it never waits for
//! a callback. Therefore:
//!
//! - **Slow callbacks do not slow calls.** A hook that sleeps for seconds delays its own later
//!   events, not the program. An OS thread (not a tokio task) runs the hooks, since hooks are
//!   synchronous and may block: they cannot starve the async runtime's workers.
//! - **A full queue drops events, never blocks.** When a callback falls `capacity` events
//!   behind, new events for it are dropped and counted ([`CallbackHandle::dropped`]), and a
//!   warning is logged through `tracing` (on the first drop and at every power of two). Other
//!   callbacks are unaffected. A start may thus arrive without its end, or the reverse.
//! - **Panicking callbacks do not break calls.** Each hook runs under `catch_unwind`; a panic is
//!   logged with `tracing::warn!` (the callback's type name, the hook, the panic message), and the
//!   thread goes on with the next event. The call's result is what it would have been without
//!   the callback. (Rust's panic hook still prints the panic to stderr, as for any panic.)
//! - **Events arrive in order.** Each callback receives its events in the order the calls
//!   emitted them (one queue, one thread): a call's start before its end, a module's start
//!   before the LM call inside it. Different callbacks run independently of each other.
//! - **Delivery is asynchronous.** When a call returns, its end event may not have been
//!   delivered yet. [`CallbackHandle::flush`] waits (with a timeout) until every event queued
//!   before it has been handled — in tests, or before a process exits.
//!
//! The thread ends when the last clone of its handle is dropped (after the events queued
//! before). Creating a handle starts a thread, so make handles once and share them (handles
//! and [`Callbacks`] are cheap to clone) rather than per request. A call with no callbacks at
//! all does no work for them: no ids, no JSON.
//!
//! ```
//! use dspex_runtime::callback::{Callback, CallbackHandle, EndEvent, StartEvent};
//! use dspex_runtime::lm::ScriptedLM;
//! use dspex_runtime::module::DynPredict;
//! use dspex_runtime::settings::{Settings, with_settings};
//! use dspex_runtime::{DynSignature, Example};
//! use serde_json::json;
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! #[derive(Default)]
//! struct Log(Mutex<Vec<String>>);
//!
//! impl Callback for Log {
//!     fn on_lm_start(&self, event: &StartEvent) {
//!         self.0.lock().unwrap().push(format!("lm start {}", event.name));
//!     }
//!     fn on_module_end(&self, event: &EndEvent) {
//!         let answer = &event.outputs.as_ref().unwrap()["answer"];
//!         self.0.lock().unwrap().push(format!("module end {answer}"));
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let log = Arc::new(Log::default());
//! let handle = CallbackHandle::new(log.clone());
//! let settings = Settings::new()
//!     .lm(ScriptedLM::from_fields([json!({"answer": "4"})]))
//!     .callbacks(handle.clone());
//! let qa = DynPredict::new(DynSignature::parse("question -> answer")?);
//! with_settings(settings, qa.call(&Example::new().with("question", "2 + 2?"))).await?;
//! assert!(handle.flush(Duration::from_secs(5)));
//! assert_eq!(*log.0.lock().unwrap(), ["lm start scripted", "module end \"4\""]);
//! # Ok::<(), dspex_runtime::Error>(())
//! # }).unwrap();
//! ```

mod dispatch;
mod fire;
mod tracing_callback;

pub use dispatch::{CallbackHandle, Callbacks, DEFAULT_QUEUE_CAPACITY};
pub use fire::{Instrumented, current_call_id};
pub use tracing_callback::TracingCallback;

pub(crate) use fire::{Observed, observe, scope_current, scope_current_sync, to_json};

use serde_json::Value;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The id of one call: the same on its start and end events, unique in the process (DSPy's
/// `call_id`). Displayed as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(u64);

impl CallId {
    /// A fresh id.
    pub(crate) fn next() -> CallId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        CallId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The id as a number (ids are handed out in increasing order).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What kind of call an event is about; it decides which hook receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A module's call (`on_module_start` / `on_module_end`).
    Module,
    /// An LM call (`on_lm_start` / `on_lm_end`).
    Lm,
    /// An adapter formatting a prompt (`on_adapter_format_start` / `_end`).
    AdapterFormat,
    /// An adapter parsing a completion (`on_adapter_parse_start` / `_end`).
    AdapterParse,
    /// A tool call (`on_tool_start` / `on_tool_end`).
    Tool,
    /// An evaluation (`on_evaluate_start` / `on_evaluate_end`).
    Evaluate,
}

impl EventKind {
    /// A short lowercase name: `module`, `lm`, `adapter_format`, `adapter_parse`, `tool`,
    /// `evaluate`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Module => "module",
            EventKind::Lm => "lm",
            EventKind::AdapterFormat => "adapter_format",
            EventKind::AdapterParse => "adapter_parse",
            EventKind::Tool => "tool",
            EventKind::Evaluate => "evaluate",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call is starting.
#[derive(Debug, Clone, PartialEq)]
pub struct StartEvent {
    /// This call's id (the same on its [`EndEvent`]).
    pub call_id: CallId,
    /// The id of the innermost enclosing call that fired events, if any (a dspex addition; see
    /// the [module docs](self#relating-calls-call-ids-and-parent-ids)).
    pub parent_id: Option<CallId>,
    /// What kind of call this is.
    pub kind: EventKind,
    /// The component: the module's type (`Predict`, `ChainOfThought`, `ReAct`) or the name given
    /// to an [`Instrumented`] program, the LM's model string, the adapter's name
    /// (`ChatAdapter`), the tool's name, or `Evaluate`.
    pub name: String,
    /// The call's inputs, as a JSON object (the [module docs](self#which-calls-fire-events)
    /// list them per kind).
    pub inputs: Value,
}

/// A call has finished.
#[derive(Debug, Clone, PartialEq)]
pub struct EndEvent {
    /// This call's id (the same as on its [`StartEvent`]).
    pub call_id: CallId,
    /// The id of the enclosing call, as on the start event.
    pub parent_id: Option<CallId>,
    /// What kind of call this is.
    pub kind: EventKind,
    /// The component, as on the start event.
    pub name: String,
    /// The outputs as JSON when the call succeeded; `None` when it failed.
    pub outputs: Option<Value>,
    /// Why the call failed; `None` when it succeeded (DSPy's `exception`).
    pub error: Option<EventError>,
    /// Wall time from the start event to the end event.
    pub elapsed: Duration,
}

impl EndEvent {
    /// Whether the call succeeded.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

/// A failed call's error, as a value a callback can keep: which layer failed and the error's
/// message (its `Display`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    /// Which layer failed.
    pub kind: ErrorKind,
    /// The error's message.
    pub message: String,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

/// The layer a failed call's error came from (the variants of [`crate::Error`], grouped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A completion did not parse ([`AdapterError::Parse`](crate::adapter::AdapterError::Parse),
    /// also after the fallback adapter failed).
    Parse,
    /// Another adapter error (formatting).
    Adapter,
    /// The LM call failed ([`LmError`](crate::lm::LmError)).
    Lm,
    /// A tool failed ([`ToolError`](crate::module::ToolError)).
    Tool,
    /// A signature could not be built or edited.
    Signature,
    /// Inputs or outputs did not fit their types.
    Example,
    /// No LM was configured.
    NoLm,
    /// The evaluation could not start ([`EvaluateError`](crate::evaluate::EvaluateError)).
    Evaluate,
    /// The call's future was dropped before it finished (a timeout, a cancelled evaluation, a
    /// `select!` that took another branch).
    Cancelled,
    /// Any other error.
    Other,
}

impl EventError {
    /// The description of a program error.
    pub(crate) fn of(error: &crate::Error) -> EventError {
        use crate::Error;
        use crate::adapter::AdapterError;
        let kind = match error {
            Error::Adapter(AdapterError::Parse { .. }) | Error::AdapterFallback { .. } => {
                ErrorKind::Parse
            }
            Error::Adapter(_) => ErrorKind::Adapter,
            Error::Lm(_) => ErrorKind::Lm,
            Error::Tool(_) => ErrorKind::Tool,
            Error::Signature(_) => ErrorKind::Signature,
            Error::Example(_) => ErrorKind::Example,
            Error::NoLm => ErrorKind::NoLm,
            _ => ErrorKind::Other,
        };
        EventError::new(kind, error)
    }

    /// An error of a known kind.
    pub(crate) fn new(kind: ErrorKind, error: &dyn fmt::Display) -> EventError {
        EventError {
            kind,
            message: error.to_string(),
        }
    }
}

/// An observer of calls (DSPy's `BaseCallback`). Every hook does nothing unless overridden.
///
/// Hooks run on the callback's own thread, one event at a time, in the order the events
/// happened; they may block or panic without harming the calls they observe (see the
/// [module docs](self#guarantees-a-callback-can-neither-break-nor-block-a-call)). Register a
/// callback by wrapping it in a [`CallbackHandle`] (or passing it to [`Callbacks::with`]).
pub trait Callback: Send + Sync + 'static {
    /// A module's call is starting (DSPy's `on_module_start`).
    fn on_module_start(&self, event: &StartEvent) {
        let _ = event;
    }
    /// A module's call has finished (DSPy's `on_module_end`).
    fn on_module_end(&self, event: &EndEvent) {
        let _ = event;
    }
    /// An LM call is starting (DSPy's `on_lm_start`).
    fn on_lm_start(&self, event: &StartEvent) {
        let _ = event;
    }
    /// An LM call has finished (DSPy's `on_lm_end`).
    fn on_lm_end(&self, event: &EndEvent) {
        let _ = event;
    }
    /// An adapter is formatting a prompt (DSPy's `on_adapter_format_start`).
    fn on_adapter_format_start(&self, event: &StartEvent) {
        let _ = event;
    }
    /// An adapter has formatted a prompt (DSPy's `on_adapter_format_end`).
    fn on_adapter_format_end(&self, event: &EndEvent) {
        let _ = event;
    }
    /// An adapter is parsing a completion (DSPy's `on_adapter_parse_start`).
    fn on_adapter_parse_start(&self, event: &StartEvent) {
        let _ = event;
    }
    /// An adapter has parsed a completion, or failed to (DSPy's `on_adapter_parse_end`).
    fn on_adapter_parse_end(&self, event: &EndEvent) {
        let _ = event;
    }
    /// A tool call is starting (DSPy's `on_tool_start`).
    fn on_tool_start(&self, event: &StartEvent) {
        let _ = event;
    }
    /// A tool call has finished (DSPy's `on_tool_end`).
    fn on_tool_end(&self, event: &EndEvent) {
        let _ = event;
    }
    /// An evaluation is starting (DSPy's `on_evaluate_start`).
    fn on_evaluate_start(&self, event: &StartEvent) {
        let _ = event;
    }
    /// An evaluation has finished (DSPy's `on_evaluate_end`).
    fn on_evaluate_end(&self, event: &EndEvent) {
        let _ = event;
    }
}

impl<C: Callback + ?Sized> Callback for std::sync::Arc<C> {
    fn on_module_start(&self, event: &StartEvent) {
        (**self).on_module_start(event);
    }
    fn on_module_end(&self, event: &EndEvent) {
        (**self).on_module_end(event);
    }
    fn on_lm_start(&self, event: &StartEvent) {
        (**self).on_lm_start(event);
    }
    fn on_lm_end(&self, event: &EndEvent) {
        (**self).on_lm_end(event);
    }
    fn on_adapter_format_start(&self, event: &StartEvent) {
        (**self).on_adapter_format_start(event);
    }
    fn on_adapter_format_end(&self, event: &EndEvent) {
        (**self).on_adapter_format_end(event);
    }
    fn on_adapter_parse_start(&self, event: &StartEvent) {
        (**self).on_adapter_parse_start(event);
    }
    fn on_adapter_parse_end(&self, event: &EndEvent) {
        (**self).on_adapter_parse_end(event);
    }
    fn on_tool_start(&self, event: &StartEvent) {
        (**self).on_tool_start(event);
    }
    fn on_tool_end(&self, event: &EndEvent) {
        (**self).on_tool_end(event);
    }
    fn on_evaluate_start(&self, event: &StartEvent) {
        (**self).on_evaluate_start(event);
    }
    fn on_evaluate_end(&self, event: &EndEvent) {
        (**self).on_evaluate_end(event);
    }
}

/// Calls the hook of `callback` that receives `event`.
pub(crate) fn deliver_start(callback: &dyn Callback, event: &StartEvent) {
    match event.kind {
        EventKind::Module => callback.on_module_start(event),
        EventKind::Lm => callback.on_lm_start(event),
        EventKind::AdapterFormat => callback.on_adapter_format_start(event),
        EventKind::AdapterParse => callback.on_adapter_parse_start(event),
        EventKind::Tool => callback.on_tool_start(event),
        EventKind::Evaluate => callback.on_evaluate_start(event),
    }
}

/// Calls the hook of `callback` that receives `event`.
pub(crate) fn deliver_end(callback: &dyn Callback, event: &EndEvent) {
    match event.kind {
        EventKind::Module => callback.on_module_end(event),
        EventKind::Lm => callback.on_lm_end(event),
        EventKind::AdapterFormat => callback.on_adapter_format_end(event),
        EventKind::AdapterParse => callback.on_adapter_parse_end(event),
        EventKind::Tool => callback.on_tool_end(event),
        EventKind::Evaluate => callback.on_evaluate_end(event),
    }
}

#[cfg(test)]
mod tests;
