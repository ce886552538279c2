//! [`Predict`]: one formatted LM call, parsed into typed outputs.

use crate::adapter::{Adapter, AdapterError, ChatAdapter};
use crate::callback::{Callbacks, ErrorKind, EventError, EventKind, Observed, observe, to_json};
use crate::error::{Error, Result};
use crate::example::{Example, Prediction};
use crate::lm::{LanguageModel, LmRequest};
use crate::module::streaming::{self, FieldStream, StreamCall, StreamError, StreamOptions};
use crate::program::delegate_module;
use crate::program::{PredictorParams, Program};
use crate::settings::{CallConfig, CapturedScope, Settings};
use crate::signature::{DynSignature, Signature};
use std::marker::PhantomData;
use std::sync::Arc;
use tracing::Instrument;

/// A predictor over a run-time signature: inputs and outputs are [`Example`] / [`Prediction`].
#[derive(Debug, Clone)]
pub struct DynPredict {
    params: PredictorParams,
    config: CallConfig,
    callbacks: Callbacks,
}

impl DynPredict {
    /// A predictor for `signature` with no demos.
    pub fn new(signature: DynSignature) -> Self {
        DynPredict {
            params: PredictorParams::new(signature),
            config: CallConfig::default(),
            callbacks: Callbacks::new(),
        }
    }

    /// The same predictor with callbacks of its own: they receive its module events, after the
    /// callbacks in the settings (DSPy's `callbacks=` on a module; see [`crate::callback`]).
    #[must_use]
    pub fn with_callbacks(mut self, callbacks: impl Into<Callbacks>) -> Self {
        self.callbacks = callbacks.into();
        self
    }

    /// Its own callbacks.
    pub fn callbacks(&self) -> &Callbacks {
        &self.callbacks
    }

    /// The same predictor with these defaults for every call.
    #[must_use]
    pub fn with_config(mut self, config: CallConfig) -> Self {
        self.config = config;
        self
    }

    /// Its parameters (signature with instructions, demos).
    pub fn params(&self) -> &PredictorParams {
        &self.params
    }

    /// Its parameters, to change instructions or demos.
    pub fn params_mut(&mut self) -> &mut PredictorParams {
        &mut self.params
    }

    /// Runs the predictor on `inputs` with its own config.
    pub async fn call(&self, inputs: &Example) -> Result<Prediction> {
        self.call_with(inputs, &CallConfig::default()).await
    }

    /// Runs the predictor with per-call overrides. What they leave unset comes from the
    /// predictor's config, then from the [call defaults](Settings::call_defaults) in scope; the
    /// call is recorded in the [trace](Settings::trace) in scope, if any.
    pub async fn call_with(&self, inputs: &Example, overrides: &CallConfig) -> Result<Prediction> {
        self.call_observed("Predict", &self.callbacks, inputs, overrides)
            .await
    }

    /// [`call_with`](DynPredict::call_with), reported to callbacks as module `name` with
    /// `callbacks` as the instance's (a typed wrapper's name and callbacks).
    pub(super) async fn call_observed(
        &self,
        name: &'static str,
        callbacks: &Callbacks,
        inputs: &Example,
        overrides: &CallConfig,
    ) -> Result<Prediction> {
        observe(
            EventKind::Module,
            || name.to_string(),
            Some(callbacks),
            || to_json(inputs),
            self.call_unobserved(inputs, overrides),
            to_json,
            EventError::of,
        )
        .await
    }

    /// One call, without module events (the adapter and LM calls inside still fire theirs).
    pub(super) async fn call_unobserved(
        &self,
        inputs: &Example,
        overrides: &CallConfig,
    ) -> Result<Prediction> {
        let settings = Settings::current();
        let Resolved {
            config,
            lm,
            adapter,
        } = self.resolve(&settings, overrides)?;
        // Borrowed unless a module in scope adds an input (Refine's `hint_`).
        let (signature, inputs) = settings.hinted(&self.params, inputs)?;
        let demos = &self.params.demos;
        let result = run_with_fallback(&*lm, &*adapter, &config, &signature, demos, &inputs).await;
        if let Some(trace) = &settings.trace {
            match &result {
                Ok(prediction) => trace.record(&self.params, &inputs, prediction),
                Err(error) => {
                    if let Some(crate::adapter::AdapterError::Parse { completion, .. }) =
                        error.parse_failures().last()
                    {
                        trace.record_failed_parse(&self.params, &inputs, completion);
                    }
                }
            }
        }
        result
    }
}

impl DynPredict {
    /// Runs the predictor on `inputs` with its own config, streaming every output field as the
    /// LM writes it, then the parsed prediction ([`stream_with`](DynPredict::stream_with)).
    pub fn stream(&self, inputs: &Example) -> FieldStream<Prediction> {
        self.stream_with(inputs, &CallConfig::default(), &StreamOptions::default())
    }

    /// Runs the predictor with per-call overrides, streaming the output fields `options` listens
    /// to (DSPy's `dspy.streamify` with `StreamListener`s); chunks are named `self` unless
    /// `options` names the predictor.
    ///
    /// The stream yields [`Chunk`](crate::module::StreamItem::Chunk)s as the completion
    /// arrives, then [`Final`](crate::module::StreamItem::Final) with the prediction `call_with`
    /// would return for the same completion (the same request is sent, so plain and streamed
    /// calls share cache entries). When the ChatAdapter cannot parse the completion,
    /// [`Fallback`](crate::module::StreamItem::Fallback) announces a plain JSONAdapter call whose
    /// result is the final value. Any failure is a last `Err` item. The LM and adapter are
    /// resolved from the config and the [settings](crate::settings) in effect when `stream_with`
    /// is called; nothing runs until the stream is polled.
    ///
    /// ```
    /// use dspex_runtime::lm::ScriptedLM;
    /// use dspex_runtime::module::{CallConfig, DynPredict, StreamItem, StreamOptions};
    /// use dspex_runtime::{DynSignature, Example};
    /// use futures_util::StreamExt;
    /// use serde_json::json;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let lm = ScriptedLM::from_fields([json!({"reasoning": "Count them.", "answer": 3})]);
    /// let counter = DynPredict::new(DynSignature::parse("items -> reasoning, answer: int")?);
    /// let items: Vec<_> = counter
    ///     .stream_with(
    ///         &Example::new().with("items", "a, b, c"),
    ///         &CallConfig::new().lm(lm),
    ///         &StreamOptions::new().listen("reasoning"),
    ///     )
    ///     .collect()
    ///     .await;
    /// let Ok(StreamItem::Chunk(first)) = &items[0] else { panic!("{items:?}") };
    /// assert_eq!((first.predictor.as_str(), first.field.as_str()), ("self", "reasoning"));
    /// let Some(Ok(StreamItem::Final(prediction))) = items.last() else { panic!("{items:?}") };
    /// assert_eq!(prediction.get("answer"), Some(&json!(3)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn stream_with(
        &self,
        inputs: &Example,
        overrides: &CallConfig,
        options: &StreamOptions,
    ) -> FieldStream<Prediction> {
        self.stream_named(inputs, overrides, options, "self", None)
    }

    /// [`stream_with`](DynPredict::stream_with), with `default_name` for chunks when `options`
    /// names no predictor, inside the module call `outer` (a name and its instance's
    /// callbacks: a `ChainOfThought` around this predictor) when there is one.
    pub(super) fn stream_named(
        &self,
        inputs: &Example,
        overrides: &CallConfig,
        options: &StreamOptions,
        default_name: &'static str,
        outer: Option<(&'static str, &Callbacks)>,
    ) -> FieldStream<Prediction> {
        // The module events start now, in the caller's context, as a plain call's would; the
        // stream's steps run in that context wherever they are polled.
        let mut modules = Vec::new();
        let mut parent = crate::callback::current_call_id();
        for (name, callbacks) in outer.into_iter().chain([("Predict", &self.callbacks)]) {
            if let Some(observed) = Observed::start_under(
                parent,
                EventKind::Module,
                || name.to_string(),
                Some(callbacks),
                || to_json(inputs),
            ) {
                parent = Some(observed.id());
                modules.push(observed);
            }
        }
        // Innermost first: its end comes first, as a plain call's does.
        modules.reverse();
        let scope = CapturedScope::capture().with_parent_call(parent);
        let settings = Settings::current();
        let resolved = self.resolve(&settings, overrides).and_then(|r| {
            let Resolved {
                config,
                lm,
                adapter,
            } = r;
            let (signature, inputs) = settings.hinted(&self.params, inputs)?;
            Ok((
                config,
                lm,
                adapter,
                signature.into_owned(),
                inputs.into_owned(),
            ))
        });
        let (config, lm, adapter, signature, inputs) = match resolved {
            Ok(resolved) => resolved,
            Err(e) => {
                for observed in modules {
                    observed.finish(Err(EventError::of(&e)));
                }
                return streaming::failed(StreamError::Call(e));
            }
        };
        streaming::stream_prediction(
            modules,
            scope,
            StreamCall {
                lm,
                adapter,
                config,
                signature,
                demos: self.params.demos.clone(),
                inputs,
                options: options.clone(),
                default_name,
            },
        )
    }
}

impl DynPredict {
    /// The config of one call (the predictor's, under `overrides`, over the settings' call
    /// defaults), its LM and its adapter: what `call_with` and `stream_with` both use.
    fn resolve(&self, settings: &Settings, overrides: &CallConfig) -> Result<Resolved> {
        let config = settings.call_config(&self.config, overrides);
        let lm = config
            .lm
            .clone()
            .or_else(|| settings.lm.clone())
            .ok_or(Error::NoLm)?;
        let adapter = config
            .adapter
            .clone()
            .or_else(|| settings.adapter.clone())
            .unwrap_or_else(|| Arc::new(ChatAdapter));
        Ok(Resolved {
            config,
            lm,
            adapter,
        })
    }
}

/// What one call runs with.
struct Resolved {
    config: CallConfig,
    lm: Arc<dyn LanguageModel>,
    adapter: Arc<dyn Adapter>,
}

/// [`run`], then — when the completion does not parse and the adapter has a fallback — DSPy's
/// one retry with the fallback adapter (JSONAdapter after ChatAdapter or XMLAdapter).
pub(crate) async fn run_with_fallback(
    lm: &dyn LanguageModel,
    adapter: &dyn Adapter,
    config: &CallConfig,
    signature: &DynSignature,
    demos: &[Example],
    inputs: &Example,
) -> Result<Prediction> {
    let result = run(lm, adapter, config, signature, demos, inputs).await;
    match (result, adapter.fallback()) {
        // DSPy's ChatAdapter retries once with JSONAdapter when its output cannot be parsed.
        (Err(Error::Adapter(primary @ AdapterError::Parse { .. })), Some(fallback)) => {
            tracing::debug!(error = %primary, fallback = fallback.name(), "completion did not parse");
            run(lm, fallback, config, signature, demos, inputs)
                .await
                .map_err(|error| Error::AdapterFallback {
                    primary,
                    fallback_adapter: fallback.name(),
                    fallback: Box::new(error),
                })
        }
        (other, _) => other,
    }
}

/// Format → LM → parse every completion (or, for the TwoStepAdapter, extract its outputs
/// with the extraction LM).
pub(super) async fn run(
    lm: &dyn LanguageModel,
    adapter: &dyn Adapter,
    config: &CallConfig,
    signature: &DynSignature,
    demos: &[Example],
    inputs: &Example,
) -> Result<Prediction> {
    let (request, prompt_signature) =
        observed_request_for(lm, adapter, config, signature, demos, inputs)?;
    let call = Observed::start(
        EventKind::Lm,
        || lm.model().to_string(),
        None,
        || to_json(&request),
    );
    let response = lm.call(request).await;
    if let Some(call) = call {
        call.finish_with(&response, to_json, |e| EventError::new(ErrorKind::Lm, e));
    }
    let response = response?;
    let mut completions = Vec::with_capacity(response.choices.len());
    for (index, c) in response.choices.iter().enumerate() {
        let span = crate::telemetry::parse_span(adapter.name(), index);
        let parse = Observed::start(
            EventKind::AdapterParse,
            || adapter.name().to_string(),
            None,
            || serde_json::json!({"signature": signature.to_string(), "completion": c.text}),
        );
        let parsed = match adapter.extractor() {
            None => span.in_scope(|| parse_choice(adapter, signature, &prompt_signature, c)),
            // The TwoStepAdapter reads the fields with its extraction LM.
            Some(extractor) => extractor
                .extract(&prompt_signature, &c.text)
                .instrument(span.clone())
                .await
                .map_err(|e| match e.downcast::<Error>() {
                    Ok(e) => *e,
                    Err(other) => Error::Step {
                        context: format!("{} extraction", adapter.name()),
                        source: other,
                    },
                }),
        };
        if let Err(e) = &parsed
            && !span.is_disabled()
        {
            crate::telemetry::record_failure(&span, &parse_error_event(e).kind);
        }
        if let Some(parse) = parse {
            parse.finish_with(&parsed, to_json, parse_error_event);
        }
        let mut parsed = parsed?;
        if adapter.extractor().is_some() && adapter.native_reasoning_enabled() {
            take_native_reasoning(signature, c, &mut parsed);
        }
        completions.push(parsed);
    }
    Ok(Prediction::from_completions(completions)?)
}

/// One completion's output fields, as the adapter reads them: the text parsed with the
/// signature the prompt was formatted with, and — with native function calling — the response's
/// tool calls as the `ToolCalls` output (DSPy's `_call_postprocess`), and the LM's native
/// reasoning as the `Reasoning` outputs. Plain and streamed calls read completions with it.
pub(super) fn parse_choice(
    adapter: &dyn Adapter,
    signature: &DynSignature,
    prompt_signature: &DynSignature,
    choice: &crate::lm::Choice,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let mut parsed = if crate::adapter::native::tool_calls_output(signature).is_some() {
        crate::adapter::native::finish(
            signature,
            prompt_signature,
            &choice.text,
            choice
                .tool_calls
                .iter()
                .map(crate::lm::ToolCall::to_dspy)
                .collect(),
            |sig, text| adapter.parse(sig, text),
        )?
    } else {
        adapter.parse(prompt_signature, &choice.text)?
    };
    if adapter.native_reasoning_enabled() {
        take_native_reasoning(signature, choice, &mut parsed);
    }
    Ok(parsed)
}

/// DSPy's `Reasoning.parse_lm_response`: the LM's native reasoning content, when it sent
/// some, is the value of every `Reasoning` output field, in place of the parsed text. A
/// `Reasoning` field left out of the prompt (see [`native_reasoning`]) and given no reasoning
/// content is `null`, as DSPy leaves it `None`.
fn take_native_reasoning(
    signature: &DynSignature,
    choice: &crate::lm::Choice,
    parsed: &mut serde_json::Map<String, serde_json::Value>,
) {
    for field in signature.outputs() {
        if field.ty().custom() != Some(crate::signature::CustomType::Reasoning) {
            continue;
        }
        match &choice.reasoning_content {
            Some(reasoning) => {
                parsed.insert(
                    field.name().to_string(),
                    serde_json::Value::String(reasoning.clone()),
                );
            }
            None => {
                parsed
                    .entry(field.name().to_string())
                    .or_insert(serde_json::Value::Null);
            }
        }
    }
}

/// DSPy's `Reasoning.adapt_to_native_lm_feature`, for an adapter with `Reasoning` among its
/// native response types ([`Adapter::native_reasoning_enabled`]): for an LM that reasons natively
/// ([`LanguageModel::supports_reasoning`]), the signature's `Reasoning` outputs leave the
/// prompt and the request asks for native reasoning with `reasoning_effort` — the call's own
/// (`CallConfig::extra`), else `"low"`; an explicit `null` keeps the field in the prompt. As in
/// DSPy, GPT-5 models are left alone (their chat completions do not return the reasoning).
fn native_reasoning<'a>(
    lm: &dyn LanguageModel,
    signature: std::borrow::Cow<'a, DynSignature>,
    extra: &mut serde_json::Map<String, serde_json::Value>,
) -> std::borrow::Cow<'a, DynSignature> {
    let fields: Vec<String> = signature
        .outputs()
        .iter()
        .filter(|f| f.ty().custom() == Some(crate::signature::CustomType::Reasoning))
        .map(|f| f.name().to_string())
        .collect();
    if fields.is_empty() || !lm.supports_reasoning() || lm.model().contains("gpt-5") {
        return signature;
    }
    let effort = match extra.get("reasoning_effort") {
        // Turned off; the null itself is not sent.
        Some(serde_json::Value::Null) => {
            extra.remove("reasoning_effort");
            return signature;
        }
        Some(effort) => effort.clone(),
        None => serde_json::Value::from("low"),
    };
    extra.insert("reasoning_effort".into(), effort);
    let mut prompt = signature.into_owned();
    for name in fields {
        prompt = prompt.delete(&name);
    }
    std::borrow::Cow::Owned(prompt)
}

/// [`request_for`] between the adapter's format start and end events.
pub(super) fn observed_request_for<'a>(
    lm: &dyn LanguageModel,
    adapter: &dyn Adapter,
    config: &CallConfig,
    signature: &'a DynSignature,
    demos: &[Example],
    inputs: &Example,
) -> Result<(LmRequest, std::borrow::Cow<'a, DynSignature>)> {
    let format = Observed::start(
        EventKind::AdapterFormat,
        || adapter.name().to_string(),
        None,
        || {
            serde_json::json!({
                "signature": signature.to_string(),
                "demos": to_json(demos),
                "inputs": to_json(inputs),
            })
        },
    );
    let span = crate::telemetry::format_span(adapter.name());
    let prepared = span.in_scope(|| request_for(lm, adapter, config, signature, demos, inputs));
    if let Err(e) = &prepared
        && !span.is_disabled()
    {
        crate::telemetry::record_failure(&span, &EventError::of(e).kind);
    }
    if let Some(format) = format {
        format.finish_with(&prepared, |(r, _)| to_json(&r.messages), EventError::of);
    }
    prepared
}

/// The parse events' error description.
pub(super) fn parse_error_event(e: &Error) -> EventError {
    let kind = match e {
        Error::Adapter(AdapterError::Parse { .. }) => ErrorKind::Parse,
        Error::Adapter(_) => ErrorKind::Adapter,
        Error::Lm(_) => ErrorKind::Lm,
        _ => ErrorKind::Other,
    };
    EventError::new(kind, e)
}

/// The LM request of one call: the adapter's messages with the call's parameters, and the
/// signature the prompt was formatted with (the call's own, less the tool fields when the
/// adapter's native function calling moved the tools into the request: see
/// [`crate::adapter::native::prepare`]). Plain and streamed calls send the same request, so
/// they share cache entries.
pub(super) fn request_for<'a>(
    lm: &dyn LanguageModel,
    adapter: &dyn Adapter,
    config: &CallConfig,
    signature: &'a DynSignature,
    demos: &[Example],
    inputs: &Example,
) -> Result<(LmRequest, std::borrow::Cow<'a, DynSignature>)> {
    let mut extra = config.extra.clone();
    let prompt_signature = crate::adapter::native::prepare(
        adapter.native_tool_calling(),
        signature,
        inputs,
        lm.supports_function_calling(),
        &mut extra,
    )?;
    let prompt_signature = if adapter.native_reasoning_enabled() {
        native_reasoning(lm, prompt_signature, &mut extra)
    } else {
        prompt_signature
    };
    let messages = adapter.format(&prompt_signature, demos, inputs)?;
    let mut request = LmRequest::new(messages);
    request.max_tokens = config.max_tokens;
    request.n = config.n;
    request.rollout_id = config.rollout_id;
    request.extra = extra;
    // DSPy's JSONAdapter picks the format from the call's own signature.
    request.response_format = adapter
        .response_format(signature)
        .filter(|_| lm.supports_response_format());
    // DSPy's rule: several completions at a (near-)zero or unset temperature would all be the
    // same, so they are sampled at 0.7. An explicit 0 counts as unset there, as Python's `or`
    // does (`config.get("temperature") or lm.kwargs.get("temperature")`).
    let effective = config
        .temperature
        .filter(|t| *t != 0.0)
        .or_else(|| lm.default_temperature());
    request.temperature = if config.n.unwrap_or(1) > 1 && effective.is_none_or(|t| t <= 0.15) {
        Some(0.7)
    } else {
        config.temperature
    };
    Ok((request, prompt_signature))
}

/// A typed predictor for signature `S` (DSPy's `dspy.Predict`): formats the signature with its
/// demos and the inputs, calls the LM, and parses the output struct. Declare `S` with the
/// `#[signature]` macro of the `dspex` crate (its README shows `Predict` and `ChainOfThought` in
/// use); over a run-time signature, use [`DynPredict`]:
///
/// ```
/// use dspex_runtime::lm::ScriptedLM;
/// use dspex_runtime::module::{CallConfig, DynPredict};
/// use dspex_runtime::{DynSignature, Example};
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let lm = ScriptedLM::from_fields([json!({"answer": "Paris"})]);
/// let qa = DynPredict::new(DynSignature::parse("question -> answer")?)
///     .with_config(CallConfig::new().lm(lm));
/// let out = qa.call(&Example::new().with("question", "Capital of France?")).await?;
/// assert_eq!(out.get_str("answer"), Some("Paris"));
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
pub struct Predict<S> {
    inner: DynPredict,
    _signature: PhantomData<fn() -> S>,
}

typed_wrapper_impls!(Predict => inner);

impl<S: Signature> Default for Predict<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Signature> Predict<S> {
    /// A predictor for `S` with no demos.
    pub fn new() -> Self {
        Predict {
            inner: DynPredict::new(S::signature().clone()),
            _signature: PhantomData,
        }
    }

    /// The same predictor with these defaults for every call.
    #[must_use]
    pub fn with_config(mut self, config: CallConfig) -> Self {
        self.inner = self.inner.with_config(config);
        self
    }

    /// The same predictor with callbacks of its own: they receive its module events, after the
    /// callbacks in the settings (DSPy's `callbacks=` on a module; see [`crate::callback`]).
    #[must_use]
    pub fn with_callbacks(mut self, callbacks: impl Into<Callbacks>) -> Self {
        self.inner = self.inner.with_callbacks(callbacks);
        self
    }

    /// Its parameters (signature with instructions, demos).
    pub fn params(&self) -> &PredictorParams {
        self.inner.params()
    }

    /// Its parameters, to change instructions or demos.
    pub fn params_mut(&mut self) -> &mut PredictorParams {
        self.inner.params_mut()
    }

    /// Runs on `input` with per-call overrides; returns every completion (`n > 1`), parsed.
    pub async fn forward_all(
        &self,
        input: S::Input,
        config: &CallConfig,
    ) -> Result<Vec<S::Output>> {
        let prediction = self
            .inner
            .call_with(&Example::from_typed(&input)?, config)
            .await?;
        prediction
            .completions()
            .iter()
            .map(|fields| Ok(Prediction::new(fields.clone()).to_typed()?))
            .collect()
    }

    /// Runs on `input` with per-call overrides, returning the first completion.
    pub async fn forward_with(&self, input: S::Input, config: &CallConfig) -> Result<S::Output> {
        let prediction = self
            .inner
            .call_with(&Example::from_typed(&input)?, config)
            .await?;
        Ok(prediction.to_typed()?)
    }
}

impl<S: Signature> Predict<S> {
    /// Runs on `input`, streaming every output field as the LM writes it, then the typed output
    /// ([`DynPredict::stream_with`] describes the items).
    pub fn stream(&self, input: S::Input) -> FieldStream<S::Output> {
        self.stream_with(input, &CallConfig::default(), &StreamOptions::default())
    }

    /// Runs on `input` with per-call overrides, streaming the fields `options` listens to, then
    /// the typed output.
    ///
    /// ```
    /// use dspex_runtime::lm::ScriptedLM;
    /// use dspex_runtime::module::{CallConfig, Predict, StreamItem, StreamOptions};
    /// use dspex_runtime::{DynSignature, Signature};
    /// use futures_util::StreamExt;
    /// use serde::{Deserialize, Serialize};
    /// use serde_json::json;
    /// use std::sync::OnceLock;
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize)]
    /// struct In { question: String }
    /// #[derive(Debug, Clone, Serialize, Deserialize)]
    /// struct Out { answer: String }
    /// struct QA;
    /// impl Signature for QA {
    ///     type Input = In;
    ///     type Output = Out;
    ///     fn signature() -> &'static DynSignature {
    ///         static SIG: OnceLock<DynSignature> = OnceLock::new();
    ///         SIG.get_or_init(|| DynSignature::parse("question -> answer").expect("valid"))
    ///     }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let lm = ScriptedLM::from_fields([json!({"answer": "Paris"})]).chunk_size(2);
    /// let qa = Predict::<QA>::new().with_config(CallConfig::new().lm(lm));
    /// let mut stream = qa.stream_with(
    ///     In { question: "Capital of France?".into() },
    ///     &CallConfig::default(),
    ///     &StreamOptions::new().predictor_name("qa"),
    /// );
    /// let mut deltas = Vec::new();
    /// let mut output = None;
    /// while let Some(item) = stream.next().await {
    ///     match item? {
    ///         StreamItem::Chunk(c) => deltas.push((c.predictor, c.delta)),
    ///         StreamItem::Final(out) => output = Some(out),
    ///         _ => {}
    ///     }
    /// }
    /// assert_eq!(deltas.iter().map(|(_, d)| d.as_str()).collect::<String>(), "Paris");
    /// assert!(deltas.iter().all(|(p, _)| p == "qa"));
    /// assert_eq!(output.expect("a final value").answer, "Paris");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn stream_with(
        &self,
        input: S::Input,
        config: &CallConfig,
        options: &StreamOptions,
    ) -> FieldStream<S::Output> {
        match Example::from_typed(&input) {
            Ok(inputs) => streaming::typed(self.inner.stream_with(&inputs, config, options)),
            Err(e) => streaming::failed(StreamError::Call(e.into())),
        }
    }
}

impl<S: Signature> Program for Predict<S> {
    type Input = S::Input;
    type Output = S::Output;

    async fn forward(&self, input: S::Input) -> Result<S::Output> {
        self.forward_with(input, &CallConfig::default()).await
    }
}

impl Program for DynPredict {
    type Input = Example;
    type Output = Prediction;

    async fn forward(&self, input: Example) -> Result<Prediction> {
        self.call(&input).await
    }
}

delegate_module!(impl[] DynPredict => params);

delegate_module!(impl[S] Predict<S> => inner);
