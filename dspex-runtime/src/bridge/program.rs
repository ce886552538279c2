//! DSPy modules run through the pool as typed dspex programs.

use super::error::{BridgeError, WorkerRef};
use super::pool::{AffinityMode, EventSink, Pool, RequestOptions, Session, StreamFrame, decode};
use super::protocol::{CallResult, Op, StateResult, StatusMessages};
use super::router::SignatureArg;
use crate::error::{Error, Result};
use crate::example::Example;
use crate::module::{FieldChunk, FieldStream, StreamError, StreamItem, StreamOptions};
use crate::program::Program;
use crate::signature::Signature;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A DSPy module (`dspy.ChainOfThought("question -> answer")`, `dspy.ReAct(...)`, …) living in a
/// worker of the pool, called as a typed [`Program`] from `I` to `O`.
///
/// The module is created in its own [`Session`] (strict-queue affinity; [`create_in`] shares
/// one), so every call reaches the worker that holds it. `I` serializes to a JSON object of
/// input fields; the prediction's fields deserialize into `O` (a [`Map`] for dynamic fields;
/// fields `O` does not name, such as ChainOfThought's `reasoning`, are ignored unless it denies
/// unknown fields). Dropping the module drops its object in the worker.
///
/// # When its worker dies
/// A module made by [`create`] or [`for_signature`] *recovers*: when its worker dies (a crash,
/// a kill, a timeout), the module is created again in a new session on another worker — same
/// module, signature, instructions, fields and kwargs, and the last state it loaded
/// ([`load_state`]) or was compiled to ([`optimize`]) — and the calls that may be repeated
/// (`call`, `save_state`, `load_state`: [`Op::is_idempotent`]) are retried there, up to the
/// pool's [`max_retries`](super::PoolBuilder::max_retries) times per call. A call that timed
/// out is not repeated (it would likely time out again), nor is `optimize`; the call after
/// them recovers. A module made by [`create_in`] shares its session with others and does not
/// recover unless [`with_recovery`](Self::with_recovery) says so (it would then move to a
/// session of its own); without recovery, calls fail with [`BridgeError::SessionLost`] once
/// the worker died, and the module must be created again.
///
/// [`create`]: BridgedModule::create
/// [`for_signature`]: BridgedModule::for_signature
/// [`create_in`]: BridgedModule::create_in
/// [`load_state`]: BridgedModule::load_state
/// [`optimize`]: BridgedModule::optimize
///
/// ```no_run
/// use dspex_runtime::bridge::{BridgedModule, Pool};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize)]
/// struct Question { question: String }
/// #[derive(Deserialize)]
/// struct Answer { reasoning: String, answer: String }
///
/// # async fn demo() -> dspex_runtime::Result<()> {
/// let pool = Pool::builder().python(".venv/bin/python").build().await?;
/// let cot = BridgedModule::<Question, Answer>::create(&pool, "ChainOfThought", "question -> answer").await?;
/// let out = cot.call(Question { question: "What is 2 + 2?".into() }).await?;
/// println!("{}", out.answer);
/// # Ok(()) }
/// ```
pub struct BridgedModule<I, O> {
    /// What a call needs, shared with the module's streams (which outlive the borrow).
    core: Arc<Core>,
    signature_text: String,
    instructions: Option<String>,
    recover: bool,
    timeout: Option<Duration>,
    dropped: bool,
    _types: PhantomData<fn(I) -> O>,
}

/// A bridged module's object and how to make it again.
struct Core {
    pool: Pool,
    /// The session and object in use; replaced when the module is re-created.
    binding: Mutex<Binding>,
    /// Held while the module is re-created, so concurrent callers re-create it once.
    recreating: tokio::sync::Mutex<()>,
    module: String,
    signature: SignatureArg,
    kwargs: Map<String, Value>,
    /// The state last loaded or compiled, replayed into a re-created object.
    state: Mutex<Option<Value>>,
}

/// Where a bridged module's object lives now.
#[derive(Clone)]
struct Binding {
    session: Session,
    object: String,
    /// How many times the module was re-created.
    generation: u64,
}

/// Whether `error` means the module's object is gone with its worker.
fn object_lost(error: &BridgeError) -> bool {
    matches!(
        error,
        BridgeError::SessionLost { .. } | BridgeError::WorkerCrashed { .. }
    )
}

impl Core {
    /// Runs the operation `make(object)` on the module's object; when the object is lost with
    /// its worker, re-creates the module (if it recovers) and, for an idempotent operation,
    /// runs it again on the new object, within the pool's retry budget.
    ///
    /// A streamed operation (`options` with an event sink) is run again only while none of its
    /// items reached the caller.
    async fn run(
        &self,
        make: impl Fn(String) -> Op,
        options: &RequestOptions,
        recover: bool,
    ) -> Result<(Value, super::WorkerRef), BridgeError> {
        let budget = self.pool.max_retries();
        let mut attempt = 0;
        loop {
            let binding = lock(&self.binding).clone();
            let op = make(binding.object.clone());
            let repeatable = op.is_idempotent();
            let mut error = match binding.session.run(op, options).await {
                Ok(done) => return Ok(done),
                Err(e) => e,
            };
            if !recover || !object_lost(&error) {
                return Err(error);
            }
            // Re-create the module; a new worker that dies under the `create` costs one more
            // attempt of the budget, not a failing call too.
            loop {
                if attempt >= budget {
                    return Err(error);
                }
                attempt += 1;
                match self.recreate(binding.generation).await {
                    Ok(()) => break,
                    Err(e) if object_lost(&e) => error = e,
                    Err(e) => return Err(e),
                }
            }
            if !repeatable || options.delivered() {
                return Err(error);
            }
            tracing::debug!(
                target: "dspex::bridge",
                module = %self.module, error = %error, attempt,
                "the module's worker died: re-created, calling again"
            );
        }
    }

    /// Creates the module again in a new session, with the state it last loaded, unless
    /// another caller already did since generation `seen`.
    async fn recreate(&self, seen: u64) -> Result<(), BridgeError> {
        let _one_at_a_time = self.recreating.lock().await;
        let mode = {
            let binding = lock(&self.binding);
            if binding.generation != seen {
                return Ok(());
            }
            binding.session.mode()
        };
        let session = self.pool.session(mode);
        let object = session
            .create(
                self.module.clone(),
                self.signature.clone(),
                self.kwargs.clone(),
            )
            .await?;
        let state = lock(&self.state).clone();
        if let Some(state) = state {
            let op = Op::LoadState {
                object: object.clone(),
                state,
            };
            session.run(op, &RequestOptions::new()).await?;
        }
        *lock(&self.binding) = Binding {
            session,
            object,
            generation: seen + 1,
        };
        self.pool.count_recreated();
        tracing::info!(
            target: "dspex::bridge",
            module = %self.module, generation = seen + 1,
            "re-created a bridged module after its worker died"
        );
        Ok(())
    }
}

/// A bridged module typed by a dspex [`Signature`]: its `Input` and `Output` structs.
pub type BridgedPredict<S> = BridgedModule<<S as Signature>::Input, <S as Signature>::Output>;

impl<I, O> std::fmt::Debug for BridgedModule<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let binding = lock(&self.core.binding).clone();
        f.debug_struct("BridgedModule")
            .field("module", &self.core.module)
            .field("signature", &self.signature_text)
            .field("instructions", &self.instructions)
            .field("object", &binding.object)
            .field("session", &binding.session)
            .field("recreated", &binding.generation)
            .finish()
    }
}

/// A DSPy optimizer run on a bridged module ([`BridgedModule::optimize`]).
///
/// For DSPy's own implementation only: GEPA, SIMBA, MIPROv2 and the other optimizers run
/// natively on any Rust program ([`crate::optimize`]), with metrics written in Rust (GEPA's
/// with feedback), jobs, reports, and the same prompts as DSPy's; through the bridge they take a
/// named Python metric and a bridged module.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimization {
    /// An attribute of `dspy` (`MIPROv2`, `GEPA`, `SIMBA`, `BootstrapFewShot`, …).
    pub optimizer: String,
    /// The optimizer's constructor arguments.
    pub kwargs: Map<String, Value>,
    /// `compile`'s extra arguments.
    pub compile_kwargs: Map<String, Value>,
    /// The training examples (their visible fields are sent).
    pub trainset: Vec<Example>,
    /// Input keys; when empty, those of the first example that has them.
    pub input_keys: Vec<String>,
    /// `dspy.evaluate.<name>` (`answer_exact_match`) or `exact_match`; none for optimizers
    /// without a metric (`LabeledFewShot`).
    pub metric: Option<String>,
    /// The call's timeout (optimizers run long; default: the pool's call timeout).
    pub timeout: Option<Duration>,
}

impl Optimization {
    /// `optimizer` on `trainset`, with no metric (set one with [`metric`](Self::metric)).
    pub fn new(optimizer: impl Into<String>, trainset: Vec<Example>) -> Self {
        Optimization {
            optimizer: optimizer.into(),
            kwargs: Map::new(),
            compile_kwargs: Map::new(),
            trainset,
            input_keys: Vec::new(),
            metric: None,
            timeout: None,
        }
    }

    /// Scored with `metric`: `dspy.evaluate.<name>` (`answer_exact_match`) or `exact_match`.
    #[must_use]
    pub fn metric(mut self, metric: impl Into<String>) -> Self {
        self.metric = Some(metric.into());
        self
    }

    /// With these input keys (default: the first example's).
    #[must_use]
    pub fn input_keys<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.input_keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// With a constructor argument.
    #[must_use]
    pub fn kwarg(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.kwargs.insert(key.into(), value.into());
        self
    }

    /// With a `compile` argument.
    #[must_use]
    pub fn compile_kwarg(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.compile_kwargs.insert(key.into(), value.into());
        self
    }

    /// With this timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<I, O> BridgedModule<I, O>
where
    I: Serialize + Send + Sync + 'static,
    O: DeserializeOwned + Send + 'static,
{
    /// Creates `dspy.<module>(signature)` in a new strict-queue session of `pool`. The
    /// signature is a string (DSPy's default instructions) or a
    /// [`DynSignature`](crate::signature::DynSignature), whose instructions, field descriptions
    /// and prefixes go along.
    pub async fn create(
        pool: &Pool,
        module: impl Into<String>,
        signature: impl Into<SignatureArg>,
    ) -> Result<Self, BridgeError> {
        Ok(Self::create_in(
            &pool.session(AffinityMode::StrictQueue),
            module,
            signature,
            Map::new(),
        )
        .await?
        .with_recovery(true))
    }

    /// Creates `dspy.<module>` for the dspex signature `S` (its field names, DSPy types,
    /// instructions, and the field descriptions and prefixes that are not DSPy's defaults) in a
    /// new strict-queue session. `S` is named once; the input and output types follow from it:
    /// `BridgedModule::for_signature::<QA>(&pool, "ChainOfThought")`, a [`BridgedPredict<QA>`].
    pub async fn for_signature<S>(
        pool: &Pool,
        module: impl Into<String>,
    ) -> Result<Self, BridgeError>
    where
        S: Signature<Input = I, Output = O>,
    {
        Self::create(pool, module, S::signature()).await
    }

    /// Creates `dspy.<module>(signature, **kwargs)` in `session` (modules that share a session
    /// share a worker); the signature as for [`create`](Self::create). Such a module does not
    /// recover from the death of its worker unless [`with_recovery`](Self::with_recovery) says
    /// so.
    pub async fn create_in(
        session: &Session,
        module: impl Into<String>,
        signature: impl Into<SignatureArg>,
        kwargs: Map<String, Value>,
    ) -> Result<Self, BridgeError> {
        let module = module.into();
        let signature = signature.into();
        let object = session
            .create(module.clone(), signature.clone(), kwargs.clone())
            .await?;
        Ok(BridgedModule {
            signature_text: signature.text(),
            instructions: signature.instructions(),
            core: Arc::new(Core {
                pool: session.pool().clone(),
                binding: Mutex::new(Binding {
                    session: session.clone(),
                    object,
                    generation: 0,
                }),
                recreating: tokio::sync::Mutex::new(()),
                module,
                signature,
                kwargs,
                state: Mutex::new(None),
            }),
            recover: false,
            timeout: None,
            dropped: false,
            _types: PhantomData,
        })
    }

    /// With a per-call timeout instead of the pool's.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether the module is created again on another worker when its worker dies (see the
    /// type's docs; on for [`create`](Self::create) and
    /// [`for_signature`](Self::for_signature), off for [`create_in`](Self::create_in)).
    #[must_use]
    pub fn with_recovery(mut self, recover: bool) -> Self {
        self.recover = recover;
        self
    }

    /// The object's id in its worker (it changes when the module is re-created).
    pub fn object(&self) -> String {
        lock(&self.core.binding).object.clone()
    }

    /// How many times the module was created again after its worker died.
    pub fn recreated(&self) -> u64 {
        lock(&self.core.binding).generation
    }

    /// The DSPy module's name.
    pub fn module(&self) -> &str {
        &self.core.module
    }

    /// The signature string it was created with.
    pub fn signature(&self) -> &str {
        &self.signature_text
    }

    /// The instructions it was created with, when not DSPy's default ones.
    pub fn instructions(&self) -> Option<&str> {
        self.instructions.as_deref()
    }

    /// The session holding it (a new one after the module was re-created).
    pub fn session(&self) -> Session {
        lock(&self.core.binding).session.clone()
    }

    fn options(&self, timeout: Option<Duration>) -> RequestOptions {
        match timeout.or(self.timeout) {
            Some(t) => RequestOptions::new().timeout(t),
            None => RequestOptions::new(),
        }
    }

    async fn run(
        &self,
        make: impl Fn(String) -> Op,
        timeout: Option<Duration>,
    ) -> Result<(Value, super::WorkerRef), BridgeError> {
        self.core
            .run(make, &self.options(timeout), self.recover)
            .await
    }

    fn error_worker(&self) -> super::WorkerRef {
        lock(&self.core.binding)
            .session
            .worker()
            .unwrap_or(super::WorkerRef { id: 0, pid: 0 })
    }

    /// The input as the JSON object of input fields `op` sends.
    fn inputs(&self, input: &I, op: &'static str) -> Result<Map<String, Value>, BridgeError> {
        match serde_json::to_value(input) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(BridgeError::BadResult {
                worker: self.error_worker(),
                op,
                message: format!("the input must serialize to a JSON object, not {other}"),
            }),
            Err(e) => Err(BridgeError::BadResult {
                worker: self.error_worker(),
                op,
                message: format!("the input does not serialize: {e}"),
            }),
        }
    }

    /// Runs the module on `input` under DSPy's `dspy.streamify`, streaming every output field
    /// of its last predictor (a ChainOfThought's `reasoning` and outputs) as DSPy's stream
    /// listeners cut them, then the prediction's fields as `O`: the same
    /// [`FieldStream`] of [`StreamItem`]s as a native module's `stream`
    /// ([`ChainOfThought::stream`](crate::module::ChainOfThought::stream)). See
    /// [`stream_with`](Self::stream_with).
    pub fn stream(&self, input: I) -> FieldStream<O> {
        self.stream_with(input, &StreamOptions::default(), StatusMessages::default())
    }

    /// [`stream`](Self::stream), listening to the fields `options` names (the last predictor
    /// of the module that outputs each; [`StreamOptions::predictor_name`] renames the chunks'
    /// predictor), with the `status` messages asked for.
    ///
    /// - [`StreamItem::Chunk`]: DSPy's `StreamResponse`s, as they come, while the pool's LM is
    ///   still generating: the worker's LM calls for the listened predictor are streamed
    ///   (`lm_call` with `stream`, answered from the LM's [`stream`](crate::lm::LanguageModel::stream));
    ///   `predictor` is DSPy's `predict_name` (`predict` in a ChainOfThought, `self` for a
    ///   Predict). The chunks follow DSPy's listeners, which strip the whitespace around a field.
    /// - [`StreamItem::Status`]: DSPy's `StatusMessage`s.
    /// - [`StreamItem::Final`]: the prediction's fields, last. No
    ///   [`Fallback`](StreamItem::Fallback): DSPy's adapter fallback happens inside the worker.
    ///
    /// Errors end the stream as [`StreamError::Call`] holding [`Error::Bridge`]: what
    /// [`call`](Self::call) fails with (a DSPy exception is
    /// [`BridgeError::Remote`], a worker that dies mid-stream
    /// [`BridgeError::WorkerCrashed`]; a worker without streaming
    /// [`BridgeError::Unsupported`]). The call's timeout covers the whole stream. Until its
    /// first item reached the caller, a stream recovers as [`call`](Self::call) does: a module
    /// whose worker died is created again (when it recovers) and the stream started over on the
    /// new object; after that, a worker's death ends it with the error (the caller has seen
    /// part of the answer, and decides).
    ///
    /// The stream works while it is polled, as a native one does: the worker's LM calls are
    /// served in the task that polls it (with that task's settings and usage trackers), so a
    /// caller that stops polling holds the worker, up to the call's timeout.
    ///
    /// Dropping the stream cancels the call: the worker is sent `cancel`, the LM stream serving
    /// it on the Rust side is dropped (the LM stops being read), DSPy's call fails with
    /// `Cancelled` in the worker, and the worker takes calls again once it has answered.
    pub fn stream_with(
        &self,
        input: I,
        options: &StreamOptions,
        status: StatusMessages,
    ) -> FieldStream<O> {
        let inputs = match self.inputs(&input, "stream_call") {
            Ok(inputs) => inputs,
            Err(e) => return failed(e),
        };
        let fields = options.fields().map(<[String]>::to_vec);
        let status = (status != StatusMessages::default()).then_some(status);
        let make = move |object| Op::StreamCall {
            object,
            inputs: inputs.clone(),
            fields: fields.clone(),
            status,
        };
        let (sink, events) = EventSink::channel();
        let request = self.options(None).events(sink);
        let (core, recover) = (Arc::clone(&self.core), self.recover);
        let call = Box::pin(async move { core.run(make, &request, recover).await });
        bridged_stream(call, events, options.predictor().map(str::to_string))
            .map(|item| {
                Ok(match item? {
                    StreamItem::Final((outputs, worker)) => StreamItem::Final(
                        decode(worker, "stream_call", Value::Object(outputs))
                            .map_err(Error::from)?,
                    ),
                    StreamItem::Chunk(chunk) => StreamItem::Chunk(chunk),
                    StreamItem::Status(message) => StreamItem::Status(message),
                    StreamItem::Fallback { adapter, error } => {
                        StreamItem::Fallback { adapter, error }
                    }
                })
            })
            .boxed()
    }

    /// Calls the module: `module(**input)`'s fields as `O`.
    pub async fn call(&self, input: I) -> Result<O, BridgeError> {
        let inputs = self.inputs(&input, "call")?;
        let make = |object| Op::Call {
            object,
            inputs: inputs.clone(),
        };
        let (value, worker) = self.run(make, None).await?;
        let outputs = decode::<CallResult>(worker, "call", value)?.outputs;
        decode(worker, "call", Value::Object(outputs))
    }

    /// The module's state, in DSPy's JSON format (`dump_state`).
    pub async fn save_state(&self) -> Result<Value, BridgeError> {
        let (value, worker) = self.run(|object| Op::SaveState { object }, None).await?;
        Ok(decode::<StateResult>(worker, "save_state", value)?.state)
    }

    /// Loads a state saved by [`save_state`](Self::save_state) (or by DSPy, or by dspex's
    /// `save`).
    pub async fn load_state(&self, state: Value) -> Result<(), BridgeError> {
        let make = |object| Op::LoadState {
            object,
            state: state.clone(),
        };
        self.run(make, None).await?;
        *lock(&self.core.state) = Some(state);
        Ok(())
    }

    /// Compiles the module with a DSPy optimizer; the module is replaced by the compiled program
    /// and its new state returned.
    pub async fn optimize(&self, optimization: Optimization) -> Result<Value, BridgeError> {
        let input_keys = if optimization.input_keys.is_empty() {
            optimization
                .trainset
                .iter()
                .find_map(|e| e.input_keys())
                .map(|keys| keys.iter().cloned().collect())
                .unwrap_or_default()
        } else {
            optimization.input_keys.clone()
        };
        let trainset: Vec<Map<String, Value>> = optimization
            .trainset
            .iter()
            .map(|e| {
                e.iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect::<Map<String, Value>>()
            })
            .collect();
        let make = |object| Op::Optimize {
            object,
            optimizer: optimization.optimizer.clone(),
            kwargs: optimization.kwargs.clone(),
            compile_kwargs: optimization.compile_kwargs.clone(),
            trainset: trainset.clone(),
            input_keys: input_keys.clone(),
            metric: optimization.metric.clone(),
        };
        let (value, worker) = self.run(make, optimization.timeout).await?;
        let state = decode::<StateResult>(worker, "optimize", value)?.state;
        *lock(&self.core.state) = Some(state.clone());
        Ok(state)
    }

    /// Drops the object in its worker and waits for it (dropping the module does the same
    /// without waiting).
    pub async fn drop_object(mut self) -> Result<(), BridgeError> {
        self.dropped = true;
        let binding = lock(&self.core.binding).clone();
        let op = Op::Drop {
            object: binding.object,
        };
        binding.session.run(op, &self.options(None)).await?;
        Ok(())
    }
}

/// A stream of one error.
fn failed<T: Send + 'static>(error: BridgeError) -> FieldStream<T> {
    futures_util::stream::once(std::future::ready(Err(StreamError::Call(error.into())))).boxed()
}

/// The items of a `stream_call` whose request is `call` and whose frames arrive on `events`:
/// chunks and status messages as they come, then the prediction's fields (with the worker that
/// answered), or the error. Polling the stream drives the request (and so the LM calls it
/// serves); dropping it drops the request, which cancels the call in the worker.
pub(crate) fn bridged_stream(
    call: BoxFuture<'static, Result<(Value, WorkerRef), BridgeError>>,
    events: mpsc::UnboundedReceiver<StreamFrame>,
    predictor: Option<String>,
) -> FieldStream<(Map<String, Value>, WorkerRef)> {
    type Done = Result<(Value, WorkerRef), BridgeError>;
    struct State {
        call: BoxFuture<'static, Done>,
        events: mpsc::UnboundedReceiver<StreamFrame>,
        done: Option<Done>,
        predictor: Option<String>,
    }
    let item = |frame: StreamFrame, predictor: &Option<String>| match frame {
        StreamFrame::Chunk(c) => StreamItem::Chunk(FieldChunk {
            predictor: predictor.clone().unwrap_or(c.predictor),
            field: c.field,
            delta: c.chunk,
            is_last: c.is_last,
        }),
        StreamFrame::Status(message) => StreamItem::Status(message),
    };
    let state = State {
        call,
        events,
        done: None,
        predictor,
    };
    futures_util::stream::unfold(Some(state), move |state| async move {
        let mut st = state?;
        if st.done.is_none() {
            // The reader hands a request's frames over before its response, so once the call
            // is done every frame of it is queued.
            tokio::select! {
                biased;
                Some(frame) = st.events.recv() => {
                    let next = item(frame, &st.predictor);
                    return Some((Ok(next), Some(st)));
                }
                done = &mut st.call => st.done = Some(done),
            }
        }
        if let Ok(frame) = st.events.try_recv() {
            let next = item(frame, &st.predictor);
            return Some((Ok(next), Some(st)));
        }
        let last = match st.done.take()? {
            Ok((value, worker)) => match decode::<CallResult>(worker, "stream_call", value) {
                Ok(result) => Ok(StreamItem::Final((result.outputs, worker))),
                Err(e) => Err(StreamError::Call(e.into())),
            },
            Err(e) => Err(StreamError::Call(e.into())),
        };
        Some((last, None))
    })
    .boxed()
}

/// Dropping a module drops its object in the worker, in the background (best effort: nothing
/// happens outside a tokio runtime, or once its session is lost).
impl<I, O> Drop for BridgedModule<I, O> {
    fn drop(&mut self) {
        let binding = lock(&self.core.binding).clone();
        if self.dropped || binding.session.is_lost() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (session, object) = (binding.session, binding.object);
        runtime.spawn(async move {
            if let Err(e) = session.request(Op::Drop { object }).await {
                tracing::debug!(target: "dspex::bridge", error = %e, "dropping a bridged object failed");
            }
        });
    }
}

impl<I, O> Program for BridgedModule<I, O>
where
    I: Serialize + Send + Sync + 'static,
    O: DeserializeOwned + Send + 'static,
{
    type Input = I;
    type Output = O;

    async fn forward(&self, input: I) -> Result<O> {
        Ok(self.call(input).await?)
    }
}
