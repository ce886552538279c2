//! Settings: a default LM and adapter for the process, overridable per task and per call — DSPy's
//! `dspy.configure` and `dspy.context`, without thread-unsafe globals.
//!
//! [`configure`] sets the process defaults (behind a lock, read by cloning `Arc`s).
//! [`with_settings`] runs a future with overrides that apply to it and everything it awaits;
//! other tasks are unaffected, so concurrent programs can use different LMs safely.
//! Task-locals do not follow `tokio::spawn`: wrap what you spawn in [`in_current_scope`] to
//! carry them (dspex's own jobs do).
//!
//! Besides the LM and adapter, settings carry [call defaults](Settings::call_defaults) (sampling
//! parameters beneath every predictor's own config, as the kwargs of DSPy's LM) and a
//! [`Trace`] that records every predictor call in scope (DSPy's `settings.trace`), and the
//! [callbacks](crate::callback) that observe every call in scope (DSPy's `callbacks`).

mod call_config;

pub use call_config::CallConfig;

use crate::adapter::Adapter;
use crate::callback::Callbacks;
use crate::example::{Example, Prediction};
use crate::lm::{LanguageModel, UsageTracker};
use crate::program::PredictorParams;
use crate::signature::{DynSignature, FieldSpec, SignatureError};
use serde_json::Value;
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

/// The settings in effect: each field is `None` when not set at that level.
#[derive(Clone, Default)]
pub struct Settings {
    /// The LM modules call.
    pub lm: Option<Arc<dyn LanguageModel>>,
    /// The adapter modules format and parse with.
    pub adapter: Option<Arc<dyn Adapter>>,
    /// Call parameters every predictor call starts from, beneath the predictor's own config and
    /// the per-call overrides — the kwargs of DSPy's LM. `BestOfN` and `Refine` set
    /// `temperature = 1.0` and a `rollout_id` here for each attempt, as DSPy's
    /// `lm.copy(rollout_id=…, temperature=1.0)` does: a temperature the predictor itself sets
    /// still wins, exactly as in DSPy.
    pub call_defaults: Option<Arc<CallConfig>>,
    /// Where predictor calls are recorded (DSPy's `settings.trace`); `None` records nothing.
    pub trace: Option<Trace>,
    /// The callbacks every call in scope reports to (DSPy's `dspy.configure(callbacks=[...])`),
    /// before the calling instance's own; see [`crate::callback`].
    pub callbacks: Option<Callbacks>,
    /// An extra input for every predictor call in scope (Refine's `hint_`).
    pub(crate) hints: Option<Arc<InputHints>>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("lm", &self.lm.as_ref().map(|lm| lm.model().to_string()))
            .field("adapter", &self.adapter.as_ref().map(|a| a.name()))
            .field("call_defaults", &self.call_defaults)
            .field("trace", &self.trace.as_ref().map(Trace::len))
            .field("callbacks", &self.callbacks.as_ref().map(Callbacks::len))
            .field("hints", &self.hints.is_some())
            .finish()
    }
}

impl Settings {
    /// No settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// With this LM.
    #[must_use]
    pub fn lm(mut self, lm: impl LanguageModel + 'static) -> Self {
        self.lm = Some(Arc::new(lm));
        self
    }

    /// With this shared LM.
    #[must_use]
    pub fn lm_arc(mut self, lm: Arc<dyn LanguageModel>) -> Self {
        self.lm = Some(lm);
        self
    }

    /// With this adapter.
    #[must_use]
    pub fn adapter(mut self, adapter: impl Adapter + 'static) -> Self {
        self.adapter = Some(Arc::new(adapter));
        self
    }

    /// With these call defaults (see [`Settings::call_defaults`]). Nested scopes merge them: what
    /// the inner scope sets replaces the outer's.
    #[must_use]
    pub fn call_defaults(mut self, config: CallConfig) -> Self {
        self.call_defaults = Some(Arc::new(config));
        self
    }

    /// Recording predictor calls into `trace`. A nested scope with its own trace records there
    /// instead (DSPy's `dspy.context(trace=[])`).
    #[must_use]
    pub fn trace(mut self, trace: Trace) -> Self {
        self.trace = Some(trace);
        self
    }

    /// With these callbacks for every call in scope: module, LM, adapter, tool and evaluation
    /// calls report to them (see [`crate::callback`]). A nested scope's callbacks replace the
    /// outer ones, as `dspy.context(callbacks=[...])` does.
    ///
    /// ```
    /// use dspex_runtime::callback::{Callbacks, TracingCallback};
    /// use dspex_runtime::settings::{Settings, configure};
    ///
    /// configure(Settings::new().callbacks(Callbacks::new().with(TracingCallback::new())));
    /// ```
    #[must_use]
    pub fn callbacks(mut self, callbacks: impl Into<Callbacks>) -> Self {
        self.callbacks = Some(callbacks.into());
        self
    }

    /// `self`, with the fields that `over` sets replaced (call defaults are merged field by
    /// field).
    #[must_use]
    pub fn merged(&self, over: &Settings) -> Settings {
        let call_defaults = match (&self.call_defaults, &over.call_defaults) {
            (Some(base), Some(over)) => Some(Arc::new(base.merged(over))),
            (base, over) => over.clone().or_else(|| base.clone()),
        };
        Settings {
            lm: over.lm.clone().or_else(|| self.lm.clone()),
            adapter: over.adapter.clone().or_else(|| self.adapter.clone()),
            call_defaults,
            trace: over.trace.clone().or_else(|| self.trace.clone()),
            callbacks: over.callbacks.clone().or_else(|| self.callbacks.clone()),
            hints: over.hints.clone().or_else(|| self.hints.clone()),
        }
    }

    /// The settings in effect here: task overrides over the process defaults.
    pub fn current() -> Settings {
        let global = GLOBAL.read().unwrap_or_else(|e| e.into_inner()).clone();
        match SCOPED.try_with(Clone::clone) {
            Ok(scoped) => global.merged(&scoped),
            Err(_) => global,
        }
    }

    /// The callbacks in effect here: the scope's, else the process's (without cloning the rest
    /// of the settings).
    pub(crate) fn current_callbacks() -> Option<Callbacks> {
        if let Ok(Some(scoped)) = SCOPED.try_with(|s| s.callbacks.clone()) {
            return Some(scoped);
        }
        GLOBAL
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .callbacks
            .clone()
    }

    /// The config of one predictor call: the call defaults, then the predictor's own config,
    /// then the per-call overrides.
    pub(crate) fn call_config(&self, predictor: &CallConfig, call: &CallConfig) -> CallConfig {
        match &self.call_defaults {
            Some(defaults) => defaults.merged(predictor).merged(call),
            None => predictor.merged(call),
        }
    }
}

static GLOBAL: RwLock<Settings> = RwLock::new(Settings {
    lm: None,
    adapter: None,
    call_defaults: None,
    trace: None,
    callbacks: None,
    hints: None,
});

tokio::task_local! {
    static SCOPED: Settings;
}

/// Sets the process-wide defaults (`dspy.configure`): the fields `settings` sets replace the
/// current ones.
pub fn configure(settings: Settings) {
    let mut global = GLOBAL.write().unwrap_or_else(|e| e.into_inner());
    *global = global.merged(&settings);
}

/// Runs `fut` with `overrides` on top of the settings in effect (`with dspy.context(...)`). The
/// overrides hold for `fut` only, nested calls stack, and other tasks never see them.
pub async fn with_settings<F: Future>(overrides: Settings, fut: F) -> F::Output {
    let scoped = match SCOPED.try_with(Clone::clone) {
        Ok(outer) => outer.merged(&overrides),
        Err(_) => overrides,
    };
    SCOPED.scope(scoped, fut).await
}

/// Wraps `fut` so that, wherever it is polled — typically in a task started with
/// `tokio::spawn` — it runs inside the task-scoped context in effect *here*: the settings
/// overrides of enclosing [`with_settings`] calls and the usage trackers of enclosing
/// [`track_usage`](crate::lm::track_usage) / [`UsageTracker::scope`] calls, and the enclosing
/// call that [callback](crate::callback) events name as their parent. Task-locals do not
/// cross `tokio::spawn` on their own, so a spawned future would otherwise fall back to the
/// process defaults. The process defaults themselves are read when the settings are used, so a
/// later [`configure`] still reaches the future beneath the captured overrides.
///
/// ```
/// use dspex_runtime::lm::ScriptedLM;
/// use dspex_runtime::settings::{Settings, in_current_scope, with_settings};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let task = with_settings(Settings::new().lm(ScriptedLM::new(["hi"])), async {
///     tokio::spawn(in_current_scope(async {
///         Settings::current().lm.map(|lm| lm.model().to_string())
///     }))
/// })
/// .await;
/// assert_eq!(task.await.unwrap().as_deref(), Some("scripted"));
/// # });
/// ```
pub fn in_current_scope<F>(fut: F) -> impl Future<Output = F::Output> + Send + 'static
where
    F: Future + Send + 'static,
{
    CapturedScope::capture().enter(fut)
}

/// The task-scoped context in effect where it was captured (settings overrides, usage
/// trackers, the enclosing callback call), to run later futures in: what
/// [`in_current_scope`] does for one future, kept for many (a stream's steps, each polled
/// wherever its consumer happens to be).
#[derive(Clone)]
pub(crate) struct CapturedScope {
    overrides: Option<Settings>,
    trackers: Vec<UsageTracker>,
    parent_call: Option<crate::callback::CallId>,
}

impl CapturedScope {
    /// The context in effect here.
    pub(crate) fn capture() -> Self {
        CapturedScope {
            overrides: SCOPED.try_with(Clone::clone).ok(),
            trackers: UsageTracker::current(),
            parent_call: crate::callback::current_call_id(),
        }
    }

    /// The same context with `call` as the enclosing callback call.
    pub(crate) fn with_parent_call(mut self, call: Option<crate::callback::CallId>) -> Self {
        if call.is_some() {
            self.parent_call = call;
        }
        self
    }

    /// `f`, run inside this context's settings and enclosing call (usage trackers only record
    /// what LM futures report, so synchronous code needs none).
    pub(crate) fn enter_sync<R>(&self, f: impl FnOnce() -> R) -> R {
        let f = || crate::callback::scope_current_sync(self.parent_call, f);
        match &self.overrides {
            Some(settings) => SCOPED.sync_scope(settings.clone(), f),
            None => f(),
        }
    }

    /// `fut`, run inside this context wherever it is polled.
    pub(crate) fn enter<'a, F>(&self, fut: F) -> impl Future<Output = F::Output> + Send + use<'a, F>
    where
        F: Future + Send + 'a,
    {
        let mut fut: Pin<Box<dyn Future<Output = F::Output> + Send + 'a>> =
            Box::pin(crate::callback::scope_current(self.parent_call, fut));
        // Innermost tracker last: wrap from the inside out, so the outermost scope is entered
        // first.
        for tracker in self.trackers.iter().rev() {
            let tracker = tracker.clone();
            fut = Box::pin(async move { tracker.scope(fut).await });
        }
        let overrides = self.overrides.clone();
        async move {
            match overrides {
                Some(settings) => SCOPED.scope(settings, fut).await,
                None => fut.await,
            }
        }
    }
}

/// Which predictor made a call: the identity of its [`PredictorParams`] while the program that
/// holds them is borrowed. Match it against a program's predictors with
/// [`PredictorId::of`] over [`crate::Module::named_predictors`]; an id means nothing once that
/// program has moved or been dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PredictorId(usize);

impl PredictorId {
    /// The id of the predictor whose parameters these are.
    pub fn of(params: &PredictorParams) -> Self {
        PredictorId(std::ptr::from_ref(params).addr())
    }
}

/// One recorded predictor call: who made it, with which inputs, and what it returned (DSPy's
/// `(predictor, inputs, prediction)` trace tuple).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceEntry {
    /// The predictor that was called.
    pub predictor: PredictorId,
    /// The inputs it was given (including an input such as Refine's `hint_` added in scope).
    pub inputs: Example,
    /// What it returned.
    pub outputs: Prediction,
}

/// A predictor call whose answer could not be parsed (after the fallback adapter, if any): what
/// DSPy's `bootstrap_trace_data` records as a `FailedPrediction`, and GEPA's
/// `add_format_failure_as_feedback` reflects on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FailedParse {
    /// The predictor that was called.
    pub predictor: PredictorId,
    /// The inputs it was given.
    pub inputs: Example,
    /// The LM's answer that did not parse (the last adapter's).
    pub completion: String,
}

/// A shared, growing record of predictor calls (DSPy's `settings.trace`). Clones share the same
/// record. Install it for a scope with [`Settings::trace`] and [`with_settings`]; successful
/// calls are recorded as [`TraceEntry`]s, in the order they finished, and calls whose answer
/// did not parse apart, as [`FailedParse`]s.
///
/// ```
/// use dspex_runtime::lm::ScriptedLM;
/// use dspex_runtime::module::DynPredict;
/// use dspex_runtime::settings::{PredictorId, Settings, Trace, with_settings};
/// use dspex_runtime::{DynSignature, Example, Module};
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let qa = DynPredict::new(DynSignature::parse("question -> answer")?);
/// let trace = Trace::new();
/// let settings = Settings::new()
///     .lm(ScriptedLM::from_fields([json!({"answer": "4"})]))
///     .trace(trace.clone());
/// let input = Example::new().with("question", "2 + 2?");
/// with_settings(settings, qa.call(&input)).await?;
/// let entries = trace.entries();
/// assert_eq!(entries.len(), 1);
/// assert_eq!(entries[0].predictor, PredictorId::of(qa.named_predictors()[0].1));
/// assert_eq!(entries[0].outputs.get_str("answer"), Some("4"));
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Default)]
pub struct Trace {
    entries: Arc<Mutex<Vec<TraceEntry>>>,
    failed: Arc<Mutex<Vec<FailedParse>>>,
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the entries so far.
    pub fn entries(&self) -> Vec<TraceEntry> {
        self.lock().clone()
    }

    /// Removes and returns the entries so far.
    pub fn take(&self) -> Vec<TraceEntry> {
        std::mem::take(&mut *self.lock())
    }

    /// How many calls were recorded.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Appends entries (a module passing on the calls of its chosen attempt).
    pub fn extend(&self, entries: impl IntoIterator<Item = TraceEntry>) {
        self.lock().extend(entries);
    }

    /// The calls whose answer did not parse, so far.
    pub fn failed_parses(&self) -> Vec<FailedParse> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Removes and returns the calls whose answer did not parse.
    pub fn take_failed_parses(&self) -> Vec<FailedParse> {
        std::mem::take(&mut *self.failed.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records a call whose answer did not parse.
    pub(crate) fn record_failed_parse(
        &self,
        params: &PredictorParams,
        inputs: &Example,
        completion: &str,
    ) {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(FailedParse {
                predictor: PredictorId::of(params),
                inputs: inputs.clone(),
                completion: completion.to_string(),
            });
    }

    /// Records one call.
    pub(crate) fn record(&self, params: &PredictorParams, inputs: &Example, outputs: &Prediction) {
        let entry = TraceEntry {
            predictor: PredictorId::of(params),
            inputs: inputs.clone(),
            outputs: outputs.clone(),
        };
        self.lock().push(entry);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TraceEntry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An input added to every predictor call in scope: the field is appended to the predictor's
/// signature and its value set per predictor (Refine's `hint_`, DSPy's `WrapperAdapter`).
#[derive(Debug)]
pub(crate) struct InputHints {
    /// The input field added.
    pub(crate) field: FieldSpec,
    /// The value for each known predictor.
    pub(crate) values: Vec<(PredictorId, Value)>,
    /// The value for any other predictor.
    pub(crate) default: Value,
}

impl Settings {
    /// The signature and inputs a predictor call uses: its own, or with the hint in scope added.
    pub(crate) fn hinted<'a>(
        &self,
        params: &'a PredictorParams,
        inputs: &'a Example,
    ) -> Result<(Cow<'a, DynSignature>, Cow<'a, Example>), SignatureError> {
        let Some(hints) = &self.hints else {
            return Ok((Cow::Borrowed(&params.signature), Cow::Borrowed(inputs)));
        };
        let id = PredictorId::of(params);
        let value = hints
            .values
            .iter()
            .find(|(p, _)| *p == id)
            .map_or(&hints.default, |(_, v)| v);
        let signature = params.signature.append(hints.field.clone())?;
        let mut inputs = inputs.clone();
        inputs.insert(hints.field.name(), value.clone());
        Ok((Cow::Owned(signature), Cow::Owned(inputs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::ScriptedLM;

    fn model() -> Option<String> {
        Settings::current().lm.map(|lm| lm.model().to_string())
    }

    /// The adapter given in settings formats and parses; DSPy's XMLAdapter falls back to the
    /// JSONAdapter, in a second LM call, when a completion does not parse.
    #[tokio::test]
    async fn settings_adapter_formats_parses_and_falls_back() {
        use crate::adapter::XMLAdapter;
        use crate::example::Example;
        use crate::module::DynPredict;
        use crate::signature::DynSignature;
        let predict = DynPredict::new(DynSignature::parse("question -> answer").unwrap());
        let inputs = Example::from_pairs([("question", "2+2?")]);
        let lm = ScriptedLM::new(["<answer>\n4 &amp; 4\n</answer>"]);
        let out = with_settings(Settings::new().lm(lm.clone()).adapter(XMLAdapter), async {
            predict.call(&inputs).await
        })
        .await
        .unwrap();
        assert_eq!(out.get("answer"), Some(&serde_json::json!("4 & 4")));
        assert!(
            lm.requests()[0].messages[1]
                .content
                .text()
                .starts_with("<question>\n2+2?\n</question>")
        );
        let lm = ScriptedLM::new(["4 & 4", "{\"answer\": \"4\"}"]);
        let out = with_settings(Settings::new().lm(lm.clone()).adapter(XMLAdapter), async {
            predict.call(&inputs).await
        })
        .await
        .unwrap();
        assert_eq!(out.get("answer"), Some(&serde_json::json!("4")));
        let sent = lm.requests();
        assert_eq!(sent.len(), 2);
        assert!(
            sent[1].messages[1]
                .content
                .text()
                .starts_with("[[ ## question ## ]]")
        );
    }

    #[tokio::test]
    async fn scoped_overrides_stack_and_stay_in_their_task() {
        // Only this test touches the process defaults.
        configure(Settings::new().lm(ScriptedLM::new(["g"])));
        assert_eq!(model().as_deref(), Some("scripted"));
        let named = |name: &str| {
            let lm = crate::lm::LM::builder(format!("openai/{name}"))
                .api_base("http://127.0.0.1:9/v1")
                .cache(false)
                .build()
                .unwrap();
            Settings::new().lm(lm)
        };
        let inner = with_settings(named("outer"), async {
            let outer = model();
            let nested = with_settings(named("inner"), async { model() }).await;
            (outer, nested, model())
        })
        .await;
        assert_eq!(inner.0.as_deref(), Some("openai/outer"));
        assert_eq!(inner.1.as_deref(), Some("openai/inner"));
        assert_eq!(inner.2.as_deref(), Some("openai/outer"));
        assert_eq!(model().as_deref(), Some("scripted"));
        // A concurrent task does not see another task's override.
        let other = tokio::spawn(async { model() });
        let _ = with_settings(named("x"), async { tokio::task::yield_now().await }).await;
        assert_eq!(other.await.unwrap().as_deref(), Some("scripted"));
    }

    #[tokio::test]
    async fn spawned_futures_keep_the_scope_they_were_made_in() {
        use crate::lm::{UsageTracker, track_usage};
        let outer = UsageTracker::new();
        let lm = ScriptedLM::new(["x"]);
        let (spawned, _) = outer
            .scope(track_usage(with_settings(
                Settings::new()
                    .lm(lm)
                    .call_defaults(CallConfig::new().temperature(0.25)),
                async {
                    let here = UsageTracker::current().len();
                    let task = tokio::spawn(in_current_scope(async {
                        let settings = Settings::current();
                        (
                            settings.lm.map(|lm| lm.model().to_string()),
                            settings.call_defaults.and_then(|c| c.temperature),
                            UsageTracker::current().len(),
                        )
                    }));
                    (here, task.await.unwrap())
                },
            )))
            .await;
        let (here, (lm, temperature, trackers)) = spawned;
        assert_eq!(lm.as_deref(), Some("scripted"));
        assert_eq!(temperature, Some(0.25));
        assert_eq!((here, trackers), (2, 2));
        // A plain spawn sees none of it.
        let plain = with_settings(
            Settings::new().call_defaults(CallConfig::new().n(3)),
            async {
                tokio::spawn(async { Settings::current().call_defaults.is_none() })
                    .await
                    .unwrap()
            },
        )
        .await;
        assert!(plain);
    }

    #[tokio::test]
    async fn call_defaults_merge_and_traces_nest() {
        let outer = Settings::new()
            .call_defaults(CallConfig {
                rollout_id: Some(3),
                ..CallConfig::new().temperature(0.5)
            })
            .trace(Trace::new());
        let inner_trace = Trace::new();
        let inner = Settings::new()
            .call_defaults(CallConfig::new().temperature(1.0))
            .trace(inner_trace.clone());
        let merged = outer.merged(&inner);
        let defaults = merged.call_defaults.as_deref().unwrap();
        assert_eq!(
            (defaults.temperature, defaults.rollout_id),
            (Some(1.0), Some(3))
        );
        // The inner trace replaces the outer one.
        merged.trace.as_ref().unwrap().extend([TraceEntry {
            predictor: PredictorId(1),
            inputs: Example::new(),
            outputs: Prediction::default(),
        }]);
        assert_eq!(inner_trace.len(), 1);
        assert!(outer.trace.as_ref().unwrap().is_empty());
        // A predictor's own config sits above the defaults, a call's overrides above both.
        let predictor = CallConfig::new().temperature(0.2);
        let call = CallConfig::new().max_tokens(7);
        let config = merged.call_config(&predictor, &call);
        assert_eq!(
            (config.temperature, config.rollout_id, config.max_tokens),
            (Some(0.2), Some(3), Some(7))
        );
    }
}
