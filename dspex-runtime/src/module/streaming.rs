//! Output-field streaming for `DynPredict`, `Predict` and `ChainOfThought`: DSPy's
//! `dspy.streamify` with `StreamListener`s. [`StreamItem`] describes it.

use super::predict::{observed_request_for, parse_choice, parse_error_event, run};
use crate::adapter::{Adapter, AdapterError, FieldStreamParser};
use crate::callback::{ErrorKind, EventError, EventKind, Observed, to_json};
use crate::error::Error;
use crate::example::{Example, Prediction};
use crate::lm::{EventStream, LanguageModel, StreamEvent};
use crate::settings::{CallConfig, CapturedScope};
use crate::signature::DynSignature;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::sync::Arc;
use tracing::Instrument;

/// What a streamed call yields: `Ok` items, or one `Err` that ends it.
pub type FieldStream<T> = BoxStream<'static, Result<StreamItem<T>, StreamError>>;

/// One item of a streamed call of [`DynPredict`](crate::module::DynPredict),
/// [`Predict`](crate::module::Predict) or [`ChainOfThought`](crate::module::ChainOfThought)
/// (`stream`, `stream_with`): output-field streaming, DSPy's `dspy.streamify` with
/// `StreamListener`s.
///
/// A streamed call yields [`StreamItem`]s: [`FieldChunk`]s — an output field's new text as the
/// LM writes it, without the adapter's markers or JSON syntax — and last the final value, parsed
/// from the whole completion exactly as the plain call parses it (streaming never changes
/// results). Errors are items too ([`StreamError`]), after which the stream ends.
///
/// ```
/// use dspex_runtime::lm::ScriptedLM;
/// use dspex_runtime::module::{CallConfig, DynPredict, StreamItem};
/// use dspex_runtime::{DynSignature, Example};
/// use futures_util::StreamExt;
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let lm = ScriptedLM::from_fields([json!({"answer": "Paris, on the Seine"})]).chunk_size(5);
/// let qa = DynPredict::new(DynSignature::parse("question -> answer")?)
///     .with_config(CallConfig::new().lm(lm));
/// let mut stream = qa.stream(&Example::new().with("question", "Capital of France?"));
/// let mut shown = String::new();
/// while let Some(item) = stream.next().await {
///     match item? {
///         StreamItem::Chunk(chunk) => shown.push_str(&chunk.delta),
///         StreamItem::Final(prediction) => {
///             assert_eq!(prediction.get_str("answer"), Some(shown.as_str()));
///         }
///         _ => {}
///     }
/// }
/// assert_eq!(shown, "Paris, on the Seine");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
///
/// How it differs from DSPy 3.4.1:
/// - fields are read by the adapter's incremental parser
///   ([`FieldStreamParser`](crate::adapter::FieldStreamParser)), which follows the adapter's own
///   parsing rules, instead of DSPy's token-buffer heuristics: the chunks of a `str` field
///   concatenate to its final value however the provider splits the text;
/// - a cache hit streams too (the whole text arrives at once, so each field comes as one chunk);
///   DSPy yields no chunks on a hit, only the prediction;
/// - when the ChatAdapter's parse fails at the end, the JSONAdapter fallback runs as a plain call
///   (announced by [`StreamItem::Fallback`]) and the final value comes from it, as in
///   [`DynPredict::call_with`](crate::module::DynPredict::call_with); DSPy raises instead once
///   chunks were streamed;
/// - one predictor per stream, so DSPy's `predict`/`predict_name`/`allow_reuse` listener options
///   reduce to [`StreamOptions`]; a native stream has no status messages (a bridged module's
///   stream, `bridge::BridgedModule::stream` with the `bridge` feature, carries DSPy's as
///   [`StreamItem::Status`]);
/// - `n > 1` cannot be streamed ([`StreamError::MultipleCompletions`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamItem<T> {
    /// New text of an output field (DSPy's `StreamResponse`).
    Chunk(FieldChunk),
    /// The streamed completion could not be parsed by its adapter, so a second, plain call with
    /// the fallback adapter is being made; the chunks so far do not describe the final value.
    Fallback {
        /// The adapter of the second call (`JSONAdapter`).
        adapter: &'static str,
        /// Why the streamed completion failed to parse.
        error: AdapterError,
    },
    /// A progress message (DSPy's `StatusMessage`: a tool call starting, …). Only streams run by
    /// DSPy through the bridge have them.
    Status(String),
    /// The call's result, parsed from the whole completion; always the last item.
    Final(T),
}

/// New text of one output field of one predictor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChunk {
    /// The predictor's name in its program (DSPy's `predict_name`): `self` for a predictor
    /// streamed on its own, `predict` for a chain of thought, or what
    /// [`StreamOptions::predictor_name`] says.
    pub predictor: String,
    /// The output field (DSPy's `signature_field_name`).
    pub field: String,
    /// The new text (empty on a last chunk that only marks the end).
    pub delta: String,
    /// Whether the field is complete (DSPy's `is_last_chunk`).
    pub is_last: bool,
}

/// What can end a streamed call early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The call asked for several completions; a stream carries one.
    #[error(
        "cannot stream a call with n = {n}: a stream carries one completion; use `call_with` for several"
    )]
    MultipleCompletions {
        /// The `n` asked for.
        n: u32,
    },
    /// A field to listen to is not an output of the predictor.
    #[error(
        "cannot stream field `{field}` of predictor `{predictor}`: its outputs are [{}]",
        outputs.join(", ")
    )]
    UnknownField {
        /// The predictor.
        predictor: String,
        /// The field asked for.
        field: String,
        /// The outputs it has.
        outputs: Vec<String>,
    },
    /// The call failed: no LM, formatting, the LM (including a stream that broke off), or the
    /// final parse.
    #[error(transparent)]
    Call(#[from] Error),
}

impl From<crate::lm::LmError> for StreamError {
    fn from(e: crate::lm::LmError) -> Self {
        StreamError::Call(Error::Lm(e))
    }
}

impl From<AdapterError> for StreamError {
    fn from(e: AdapterError) -> Self {
        StreamError::Call(Error::Adapter(e))
    }
}

/// Streaming errors in a program: call failures are themselves; the others are
/// [`Error::Step`] with the [`StreamError`] as the source.
impl From<StreamError> for Error {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Call(e) => e,
            other => Error::step("streaming", other),
        }
    }
}

/// Which fields a streamed call listens to, and the predictor name its chunks carry.
///
/// ```
/// use dspex_runtime::module::StreamOptions;
///
/// // Only `answer` streams (DSPy: `StreamListener(signature_field_name="answer")`).
/// let options = StreamOptions::new().listen("answer");
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamOptions {
    fields: Option<Vec<String>>,
    predictor: Option<String>,
}

impl StreamOptions {
    /// The fields named by [`listen`](Self::listen), or `None`: every output field.
    pub fn fields(&self) -> Option<&[String]> {
        self.fields.as_deref()
    }

    /// The predictor name set by [`predictor_name`](Self::predictor_name).
    pub fn predictor(&self) -> Option<&str> {
        self.predictor.as_deref()
    }

    /// Every output field streams.
    pub fn new() -> Self {
        Self::default()
    }

    /// Streams this output field; once any is named, only the named ones stream. A name that is
    /// not an output of the predictor makes the stream fail with
    /// [`StreamError::UnknownField`].
    #[must_use]
    pub fn listen(mut self, field: impl Into<String>) -> Self {
        self.fields.get_or_insert_with(Vec::new).push(field.into());
        self
    }

    /// The name chunks carry in [`FieldChunk::predictor`] (for a predictor inside a larger
    /// program, its path there).
    #[must_use]
    pub fn predictor_name(mut self, name: impl Into<String>) -> Self {
        self.predictor = Some(name.into());
        self
    }
}

/// Everything one streamed call needs, owned so the stream is `'static`.
pub(super) struct StreamCall {
    pub(super) lm: Arc<dyn LanguageModel>,
    pub(super) adapter: Arc<dyn Adapter>,
    pub(super) config: CallConfig,
    pub(super) signature: DynSignature,
    pub(super) demos: Vec<Example>,
    pub(super) inputs: Example,
    pub(super) options: StreamOptions,
    /// The predictor name when the options give none.
    pub(super) default_name: &'static str,
}

impl StreamCall {
    fn predictor(&self) -> String {
        self.options
            .predictor
            .clone()
            .unwrap_or_else(|| self.default_name.to_string())
    }
}

/// A stream holding one error.
pub(super) fn failed<T: Send + 'static>(error: StreamError) -> FieldStream<T> {
    futures_util::stream::once(std::future::ready(Err(error))).boxed()
}

/// The same stream with its final prediction converted to `T`.
pub(super) fn typed<T: DeserializeOwned + Send + 'static>(
    stream: FieldStream<Prediction>,
) -> FieldStream<T> {
    stream
        .map(|item| {
            Ok(match item? {
                StreamItem::Chunk(chunk) => StreamItem::Chunk(chunk),
                StreamItem::Fallback { adapter, error } => StreamItem::Fallback { adapter, error },
                StreamItem::Status(message) => StreamItem::Status(message),
                StreamItem::Final(prediction) => {
                    StreamItem::Final(prediction.to_typed().map_err(Error::from)?)
                }
            })
        })
        .boxed()
}

/// Where a streamed call is.
enum Phase {
    /// Not started.
    Start(Box<StreamCall>),
    /// Reading the LM's stream.
    Streaming(Box<Streaming>),
    /// The streamed completion did not parse: the fallback adapter's plain call is next.
    Fallback(Box<StreamCall>, &'static dyn Adapter, AdapterError),
    /// Finished (its last items may still be queued).
    Done,
}

struct Streaming {
    call: Box<StreamCall>,
    /// The signature the prompt was formatted with (without the tool fields under native
    /// function calling, without native `Reasoning` fields).
    prompt_signature: DynSignature,
    events: EventStream,
    parser: Option<FieldStreamParser>,
    predictor: String,
    /// The completion so far: its text, reasoning and tool calls.
    choice: crate::lm::Choice,
    /// The LM call's callback events (its end comes when the stream does).
    lm_call: Option<Observed>,
    finish_reason: Option<crate::lm::FinishReason>,
    usage: Option<crate::lm::Usage>,
}

struct State {
    phase: Phase,
    pending: VecDeque<Result<StreamItem<Prediction>, StreamError>>,
    span: tracing::Span,
    /// The module calls this stream is (innermost first), ended with its final item.
    modules: Vec<Observed>,
    /// The context the stream was made in, which every step runs in.
    scope: CapturedScope,
}

impl State {
    /// Ends the module calls with the stream's last item.
    fn end_modules(&mut self, item: &Result<StreamItem<Prediction>, StreamError>) {
        let outcome = match item {
            Ok(StreamItem::Final(prediction)) => Ok(to_json(prediction)),
            Ok(_) => return,
            Err(StreamError::Call(e)) => Err(EventError::of(e)),
            Err(other) => Err(EventError::new(ErrorKind::Other, other)),
        };
        for observed in self.modules.drain(..) {
            observed.finish(outcome.clone());
        }
    }
}

/// Streams one predictor call: format → LM stream → field chunks → parse (→ fallback call).
///
/// `modules` are the module calls the stream reports (already started, innermost first): they
/// end with its final item or its error, or as cancelled when it is dropped before either.
/// Every step runs in `scope`, so the format, LM and parse events, the usage trackers and the
/// settings are those of the place the stream was made, wherever it is polled.
pub(super) fn stream_prediction(
    modules: Vec<Observed>,
    scope: CapturedScope,
    call: StreamCall,
) -> FieldStream<Prediction> {
    let span = tracing::info_span!(
        "dspex.predict.stream",
        otel.name = "predict.stream",
        dspex.predictor = %call.predictor(),
        dspex.lm.model = %call.lm.model(),
        dspex.adapter.name = call.adapter.name(),
    );
    let state = State {
        phase: Phase::Start(Box::new(call)),
        pending: VecDeque::new(),
        span,
        modules,
        scope,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                if !st.modules.is_empty() && st.pending.is_empty() {
                    st.end_modules(&item);
                }
                return Some((item, st));
            }
            let span = st.span.clone();
            let scope = st.scope.clone();
            match std::mem::replace(&mut st.phase, Phase::Done) {
                Phase::Done => return None,
                Phase::Start(call) => match scope.enter(start(call)).instrument(span).await {
                    Ok(streaming) => st.phase = Phase::Streaming(streaming),
                    Err(error) => st.pending.push_back(Err(error)),
                },
                Phase::Streaming(mut streaming) => {
                    let next = scope.enter(streaming.events.next()).instrument(span).await;
                    st.phase = scope.enter_sync(|| streaming.step(next, &mut st.pending));
                }
                Phase::Fallback(call, fallback, primary) => {
                    let c = &*call;
                    let result = scope
                        .enter(run(
                            &*c.lm,
                            fallback,
                            &c.config,
                            &c.signature,
                            &c.demos,
                            &c.inputs,
                        ))
                        .instrument(span)
                        .await;
                    // As `call_with`: a failed fallback keeps the first failure too.
                    st.pending
                        .push_back(result.map(StreamItem::Final).map_err(|error| {
                            StreamError::Call(Error::AdapterFallback {
                                primary,
                                fallback_adapter: fallback.name(),
                                fallback: Box::new(error),
                            })
                        }));
                }
            }
        }
    })
    .boxed()
}

/// Checks the call, formats it and opens the LM's stream.
async fn start(call: Box<StreamCall>) -> Result<Box<Streaming>, StreamError> {
    let n = call.config.n.unwrap_or(1);
    if n > 1 {
        return Err(StreamError::MultipleCompletions { n });
    }
    let predictor = call.predictor();
    let (request, prompt_signature) = observed_request_for(
        &*call.lm,
        &*call.adapter,
        &call.config,
        &call.signature,
        &call.demos,
        &call.inputs,
    )?;
    let prompt_signature = prompt_signature.into_owned();
    // The LM writes the prompt's fields; tool calls and native reasoning come as their own
    // events.
    let mut parser = FieldStreamParser::new(&*call.adapter, &prompt_signature);
    if let Some(fields) = &call.options.fields {
        let outputs: Vec<String> = call.signature.output_names().map(str::to_string).collect();
        if let Some(unknown) = fields.iter().find(|f| !outputs.contains(f)) {
            return Err(StreamError::UnknownField {
                predictor,
                field: unknown.clone(),
                outputs,
            });
        }
        parser = parser.map(|p| p.listen_only(fields));
    }
    let lm_call = Observed::start(
        EventKind::Lm,
        || call.lm.model().to_string(),
        None,
        || to_json(&request),
    );
    let events = match call.lm.stream(request).await {
        Ok(events) => events,
        Err(error) => {
            if let Some(lm_call) = lm_call {
                lm_call.finish(Err(EventError::new(ErrorKind::Lm, &error)));
            }
            return Err(error.into());
        }
    };
    Ok(Box::new(Streaming {
        call,
        prompt_signature,
        events,
        parser,
        predictor,
        choice: crate::lm::Choice::empty(),
        lm_call,
        finish_reason: None,
        usage: None,
    }))
}

impl Streaming {
    /// Takes the next LM event (`None`: the stream completed); returns where the call is next.
    fn step(
        mut self: Box<Self>,
        next: Option<Result<StreamEvent, crate::lm::LmError>>,
        pending: &mut VecDeque<Result<StreamItem<Prediction>, StreamError>>,
    ) -> Phase {
        match next {
            Some(Ok(StreamEvent::Delta { index: 0, text })) => {
                if let Some(parser) = &mut self.parser {
                    let deltas = parser.feed(&text);
                    self.queue(deltas, pending);
                }
                self.choice.text.push_str(&text);
                Phase::Streaming(self)
            }
            Some(Ok(StreamEvent::Finish { index: 0, reason })) => {
                self.finish_reason = Some(reason);
                Phase::Streaming(self)
            }
            Some(Ok(
                event @ (StreamEvent::Reasoning { index: 0, .. }
                | StreamEvent::ToolCall { index: 0, .. }),
            )) => {
                self.choice.absorb(&event);
                Phase::Streaming(self)
            }
            Some(Ok(StreamEvent::Usage(usage))) => {
                self.usage = Some(usage);
                Phase::Streaming(self)
            }
            Some(Ok(_)) => Phase::Streaming(self),
            Some(Err(error)) => {
                if let Some(lm_call) = self.lm_call.take() {
                    lm_call.finish(Err(EventError::new(ErrorKind::Lm, &error)));
                }
                pending.push_back(Err(error.into()));
                Phase::Done
            }
            None => {
                if let Some(parser) = &mut self.parser {
                    let deltas = parser.finish();
                    self.queue(deltas, pending);
                }
                if let Some(lm_call) = self.lm_call.take() {
                    // The response as the stream delivered it (one completion: streams refuse
                    // n > 1).
                    lm_call.finish(Ok(serde_json::json!({
                        "choices": [{
                            "text": self.choice.text,
                            "finish_reason": self.finish_reason.as_ref().map(to_json),
                            "tool_calls": to_json(&self.choice.tool_calls),
                            "reasoning_content": self.choice.reasoning_content,
                        }],
                        "usage": self.usage.as_ref().map(to_json),
                        "streamed": true,
                    })));
                }
                let call = self.call;
                let parse = Observed::start(
                    EventKind::AdapterParse,
                    || call.adapter.name().to_string(),
                    None,
                    || serde_json::json!({"signature": call.signature.to_string(), "completion": self.choice.text}),
                );
                let parsed = parse_choice(
                    &*call.adapter,
                    &call.signature,
                    &self.prompt_signature,
                    &self.choice,
                );
                if let Some(parse) = parse {
                    parse.finish_with(&parsed, to_json, parse_error_event);
                }
                match parsed {
                    Ok(fields) => {
                        pending.push_back(
                            Prediction::from_completions(vec![fields])
                                .map(StreamItem::Final)
                                .map_err(|e| StreamError::Call(e.into())),
                        );
                        Phase::Done
                    }
                    Err(Error::Adapter(error @ AdapterError::Parse { .. })) => {
                        match call.adapter.fallback() {
                            // DSPy's ChatAdapter retries once with JSONAdapter, as `call_with` does.
                            Some(fallback) => {
                                tracing::debug!(%error, fallback = fallback.name(), "streamed completion did not parse");
                                pending.push_back(Ok(StreamItem::Fallback {
                                    adapter: fallback.name(),
                                    error: error.clone(),
                                }));
                                Phase::Fallback(call, fallback, error)
                            }
                            None => {
                                pending.push_back(Err(error.into()));
                                Phase::Done
                            }
                        }
                    }
                    Err(error) => {
                        pending.push_back(Err(StreamError::Call(error)));
                        Phase::Done
                    }
                }
            }
        }
    }

    fn queue(
        &self,
        deltas: Vec<crate::adapter::FieldDelta>,
        pending: &mut VecDeque<Result<StreamItem<Prediction>, StreamError>>,
    ) {
        pending.extend(deltas.into_iter().map(|d| {
            Ok(StreamItem::Chunk(FieldChunk {
                predictor: self.predictor.clone(),
                field: d.field,
                delta: d.delta,
                is_last: d.is_last,
            }))
        }));
    }
}

#[cfg(test)]
#[path = "streaming_tests.rs"]
mod tests;
