//! Firing events around calls (DSPy's `with_callbacks`), and the task-scoped current call.

use super::StartEvent;
use super::{CallId, CallbackHandle, Callbacks, EndEvent, ErrorKind, EventError, EventKind};
use crate::Result;
use crate::program::{Program, delegate_module};
use crate::settings::Settings;
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

tokio::task_local! {
    /// The innermost call in progress that fired events: the parent of calls made inside it.
    static CURRENT: CallId;
}

/// The id of the innermost call in progress here that fired callback events (a module, a tool,
/// an evaluation), if any: what a call started now would report as its
/// [`parent_id`](super::StartEvent::parent_id). Task-scoped, like the settings overrides.
pub fn current_call_id() -> Option<CallId> {
    CURRENT.try_with(|id| *id).ok()
}

/// Runs `fut` with `id` as the current call (the parent of the calls inside it); without an id,
/// `fut` keeps the current call of its context.
pub(crate) async fn scope_current<F: Future>(id: Option<CallId>, fut: F) -> F::Output {
    match id {
        Some(id) => CURRENT.scope(id, fut).await,
        None => fut.await,
    }
}

/// Runs `f` with `id` as the current call; without an id, `f` keeps the current call of its
/// context.
pub(crate) fn scope_current_sync<R>(id: Option<CallId>, f: impl FnOnce() -> R) -> R {
    match id {
        Some(id) => CURRENT.sync_scope(id, f),
        None => f(),
    }
}

/// `value` as JSON; a value that cannot be turned into JSON is described instead (an event is
/// never skipped for its payload).
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Value {
    serde_json::to_value(value)
        .unwrap_or_else(|e| Value::String(format!("<not representable as JSON: {e}>")))
}

/// A call in progress that has callbacks: its start event was sent, its end event is sent by
/// [`finish`](Observed::finish) — or, if the call's future is dropped first, by `Drop`, as a
/// failure of kind [`ErrorKind::Cancelled`].
pub(crate) struct Observed {
    call_id: CallId,
    parent_id: Option<CallId>,
    kind: EventKind,
    name: String,
    targets: Vec<CallbackHandle>,
    started: Instant,
    finished: bool,
}

impl Observed {
    /// Starts a call: sends its start event to the callbacks in the settings, then to
    /// `instance`'s. `None`, with nothing computed, when there are no callbacks at all.
    pub(crate) fn start(
        kind: EventKind,
        name: impl FnOnce() -> String,
        instance: Option<&Callbacks>,
        inputs: impl FnOnce() -> Value,
    ) -> Option<Observed> {
        Self::start_under(current_call_id(), kind, name, instance, inputs)
    }

    /// [`start`](Observed::start) with `parent_id` as the enclosing call, not the current one.
    pub(crate) fn start_under(
        parent_id: Option<CallId>,
        kind: EventKind,
        name: impl FnOnce() -> String,
        instance: Option<&Callbacks>,
        inputs: impl FnOnce() -> Value,
    ) -> Option<Observed> {
        let global = Settings::current_callbacks();
        let targets: Vec<CallbackHandle> = global
            .iter()
            .flat_map(|c| c.handles())
            .chain(instance.into_iter().flat_map(|c| c.handles()))
            .cloned()
            .collect();
        if targets.is_empty() {
            return None;
        }
        let call_id = CallId::next();
        let name = name();
        let event = Arc::new(StartEvent {
            call_id,
            parent_id,
            kind,
            name: name.clone(),
            inputs: inputs(),
        });
        for target in &targets {
            target.send_start(&event);
        }
        Some(Observed {
            call_id,
            parent_id,
            kind,
            name,
            targets,
            started: Instant::now(),
            finished: false,
        })
    }

    /// This call's id.
    pub(crate) fn id(&self) -> CallId {
        self.call_id
    }

    /// Sends the end event: the outputs or the error.
    pub(crate) fn finish(mut self, outcome: std::result::Result<Value, EventError>) {
        self.finished = true;
        self.send_end(outcome);
    }

    /// Sends the end event of `result`.
    pub(crate) fn finish_with<T, E>(
        self,
        result: &std::result::Result<T, E>,
        outputs: impl FnOnce(&T) -> Value,
        error: impl FnOnce(&E) -> EventError,
    ) {
        self.finish(result.as_ref().map(outputs).map_err(error));
    }

    fn send_end(&self, outcome: std::result::Result<Value, EventError>) {
        let (outputs, error) = match outcome {
            Ok(outputs) => (Some(outputs), None),
            Err(error) => (None, Some(error)),
        };
        let event = Arc::new(EndEvent {
            call_id: self.call_id,
            parent_id: self.parent_id,
            kind: self.kind,
            name: self.name.clone(),
            outputs,
            error,
            elapsed: self.started.elapsed(),
        });
        for target in &self.targets {
            target.send_end(&event);
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if !self.finished {
            self.send_end(Err(EventError {
                kind: ErrorKind::Cancelled,
                message: "the call was dropped before it finished".into(),
            }));
        }
    }
}

/// Observes `fut` as one call of `kind`: start event, `fut` run as the current call, end event.
pub(crate) async fn observe<T, E, F>(
    kind: EventKind,
    name: impl FnOnce() -> String,
    instance: Option<&Callbacks>,
    inputs: impl FnOnce() -> Value,
    fut: F,
    outputs: impl FnOnce(&T) -> Value,
    error: impl FnOnce(&E) -> EventError,
) -> std::result::Result<T, E>
where
    F: Future<Output = std::result::Result<T, E>>,
{
    // The span needs the name now, the callbacks only if there are any: made once.
    let span = match kind {
        EventKind::Module => crate::telemetry::module_span(),
        _ => tracing::Span::none(),
    };
    let observed = if span.is_disabled() {
        Observed::start(kind, name, instance, inputs)
    } else {
        let name = name();
        crate::telemetry::name_module_span(&span, &name);
        Observed::start(kind, move || name, instance, inputs)
    };
    let result = scope_current(observed.as_ref().map(Observed::id), fut)
        .instrument(span.clone())
        .await;
    match &result {
        Ok(value) => {
            if let Some(observed) = observed {
                observed.finish(Ok(outputs(value)));
            }
        }
        Err(e) if observed.is_some() || !span.is_disabled() => {
            let e = error(e);
            crate::telemetry::record_failure(&span, &e.kind);
            if let Some(observed) = observed {
                observed.finish(Err(e));
            }
        }
        Err(_) => {}
    }
    result
}

/// A program of yours that fires module events under a name, as DSPy's `Module.__call__` does
/// for every module: made by [`ProgramExt::instrumented`](crate::ProgramExt::instrumented).
/// Inputs and outputs are reported as their JSON (`Serialize`); the predictors inside report
/// this call as their parent. Optimizers see the inner program's predictors under the same
/// names.
///
/// ```
/// use dspex_runtime::callback::{Callback, CallbackHandle, EndEvent};
/// use dspex_runtime::settings::{Settings, with_settings};
/// use dspex_runtime::{Program, ProgramExt, program_fn};
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// #[derive(Default)]
/// struct Ends(Mutex<Vec<(String, serde_json::Value)>>);
/// impl Callback for Ends {
///     fn on_module_end(&self, e: &EndEvent) {
///         self.0.lock().unwrap().push((e.name.clone(), e.outputs.clone().unwrap()));
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let ends = Arc::new(Ends::default());
/// let handle = CallbackHandle::new(ends.clone());
/// let words = program_fn(|s: String| async move { Ok(s.split_whitespace().count()) })
///     .instrumented("WordCount")
///     .with_callbacks(handle.clone());
/// assert_eq!(words.forward("a b c".into()).await?, 3);
/// assert!(handle.flush(Duration::from_secs(5)));
/// assert_eq!(*ends.0.lock().unwrap(), [("WordCount".to_string(), serde_json::json!(3))]);
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Instrumented<P> {
    inner: P,
    name: String,
    callbacks: Callbacks,
}

impl<P> Instrumented<P> {
    /// `inner`, reporting its calls as module `name`.
    pub fn new(inner: P, name: impl Into<String>) -> Self {
        Instrumented {
            inner,
            name: name.into(),
            callbacks: Callbacks::new(),
        }
    }

    /// The same program with these callbacks of its own (after those in the settings).
    #[must_use]
    pub fn with_callbacks(mut self, callbacks: impl Into<Callbacks>) -> Self {
        self.callbacks = callbacks.into();
        self
    }

    /// The name its events carry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The program inside.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

impl<P> Program for Instrumented<P>
where
    P: Program,
    P::Input: Serialize,
    P::Output: Serialize,
{
    type Input = P::Input;
    type Output = P::Output;

    async fn forward(&self, input: P::Input) -> Result<P::Output> {
        let span = crate::telemetry::program_span(&self.name);
        let observed = Observed::start(
            EventKind::Module,
            || self.name.clone(),
            Some(&self.callbacks),
            || to_json(&input),
        );
        let result = scope_current(
            observed.as_ref().map(Observed::id),
            self.inner.forward(input),
        )
        .instrument(span.clone())
        .await;
        if let Err(e) = &result
            && !span.is_disabled()
        {
            crate::telemetry::record_failure(&span, &EventError::of(e).kind);
        }
        if let Some(observed) = observed {
            observed.finish_with(&result, to_json, EventError::of);
        }
        result
    }
}

delegate_module!(impl[P: crate::program::Module] Instrumented<P> => inner);
