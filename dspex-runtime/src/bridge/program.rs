//! DSPy modules run through the pool as typed dspex programs.

use super::error::BridgeError;
use super::pool::{AffinityMode, Pool, RequestOptions, Session, decode};
use super::protocol::{CallResult, Op, StateResult};
use super::router::SignatureArg;
use crate::error::Result;
use crate::example::Example;
use crate::program::Program;
use crate::signature::Signature;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::marker::PhantomData;
use std::time::Duration;

/// A DSPy module (`dspy.ChainOfThought("question -> answer")`, `dspy.ReAct(...)`, …) living in a
/// worker of the pool, called as a typed [`Program`] from `I` to `O`.
///
/// The module is created in its own [`Session`] (strict-queue affinity; [`create_in`] shares
/// one), so every call reaches the worker that holds it; if that worker dies, calls fail with
/// [`BridgeError::SessionLost`] and the module must be created again. `I` serializes to a JSON
/// object of input fields; the prediction's fields deserialize into `O` (a [`Map`] for dynamic
/// fields; fields `O` does not name, such as ChainOfThought's `reasoning`, are ignored unless
/// it denies unknown fields). Dropping the module drops its object in the worker.
///
/// [`create_in`]: BridgedModule::create_in
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
    session: Session,
    object: String,
    module: String,
    signature: String,
    instructions: Option<String>,
    timeout: Option<Duration>,
    dropped: bool,
    _types: PhantomData<fn(I) -> O>,
}

/// A bridged module typed by a dspex [`Signature`]: its `Input` and `Output` structs.
pub type BridgedPredict<S> = BridgedModule<<S as Signature>::Input, <S as Signature>::Output>;

impl<I, O> std::fmt::Debug for BridgedModule<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgedModule")
            .field("module", &self.module)
            .field("signature", &self.signature)
            .field("instructions", &self.instructions)
            .field("object", &self.object)
            .field("session", &self.session)
            .finish()
    }
}

/// A DSPy optimizer run on a bridged module ([`BridgedModule::optimize`]).
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
        Self::create_in(
            &pool.session(AffinityMode::StrictQueue),
            module,
            signature,
            Map::new(),
        )
        .await
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
    /// share a worker); the signature as for [`create`](Self::create).
    pub async fn create_in(
        session: &Session,
        module: impl Into<String>,
        signature: impl Into<SignatureArg>,
        kwargs: Map<String, Value>,
    ) -> Result<Self, BridgeError> {
        let module = module.into();
        let signature = signature.into();
        let object = session
            .create(module.clone(), signature.clone(), kwargs)
            .await?;
        Ok(BridgedModule {
            session: session.clone(),
            object,
            module,
            signature: signature.text(),
            instructions: signature.instructions(),
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

    /// The object's id in its worker.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// The DSPy module's name.
    pub fn module(&self) -> &str {
        &self.module
    }

    /// The signature string it was created with.
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// The instructions it was created with, when not DSPy's default ones.
    pub fn instructions(&self) -> Option<&str> {
        self.instructions.as_deref()
    }

    /// The session holding it.
    pub fn session(&self) -> &Session {
        &self.session
    }

    fn options(&self, timeout: Option<Duration>) -> RequestOptions {
        match timeout.or(self.timeout) {
            Some(t) => RequestOptions::new().timeout(t),
            None => RequestOptions::new(),
        }
    }

    async fn run(
        &self,
        op: Op,
        timeout: Option<Duration>,
    ) -> Result<(Value, super::WorkerRef), BridgeError> {
        self.session.run(op, &self.options(timeout)).await
    }

    /// Calls the module: `module(**input)`'s fields as `O`.
    pub async fn call(&self, input: I) -> Result<O, BridgeError> {
        let inputs = match serde_json::to_value(&input) {
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                return Err(BridgeError::BadResult {
                    worker: self
                        .session
                        .worker()
                        .unwrap_or(super::WorkerRef { id: 0, pid: 0 }),
                    op: "call",
                    message: format!("the input must serialize to a JSON object, not {other}"),
                });
            }
            Err(e) => {
                return Err(BridgeError::BadResult {
                    worker: self
                        .session
                        .worker()
                        .unwrap_or(super::WorkerRef { id: 0, pid: 0 }),
                    op: "call",
                    message: format!("the input does not serialize: {e}"),
                });
            }
        };
        let op = Op::Call {
            object: self.object.clone(),
            inputs,
        };
        let (value, worker) = self.run(op, None).await?;
        let outputs = decode::<CallResult>(worker, "call", value)?.outputs;
        decode(worker, "call", Value::Object(outputs))
    }

    /// The module's state, in DSPy's JSON format (`dump_state`).
    pub async fn save_state(&self) -> Result<Value, BridgeError> {
        let op = Op::SaveState {
            object: self.object.clone(),
        };
        let (value, worker) = self.run(op, None).await?;
        Ok(decode::<StateResult>(worker, "save_state", value)?.state)
    }

    /// Loads a state saved by [`save_state`](Self::save_state) (or by DSPy, or by dspex's
    /// `save`).
    pub async fn load_state(&self, state: Value) -> Result<(), BridgeError> {
        let op = Op::LoadState {
            object: self.object.clone(),
            state,
        };
        self.run(op, None).await?;
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
        let trainset = optimization
            .trainset
            .iter()
            .map(|e| {
                e.iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect::<Map<String, Value>>()
            })
            .collect();
        let op = Op::Optimize {
            object: self.object.clone(),
            optimizer: optimization.optimizer.clone(),
            kwargs: optimization.kwargs.clone(),
            compile_kwargs: optimization.compile_kwargs.clone(),
            trainset,
            input_keys,
            metric: optimization.metric.clone(),
        };
        let (value, worker) = self.run(op, optimization.timeout).await?;
        Ok(decode::<StateResult>(worker, "optimize", value)?.state)
    }

    /// Drops the object in its worker and waits for it (dropping the module does the same
    /// without waiting).
    pub async fn drop_object(mut self) -> Result<(), BridgeError> {
        let op = Op::Drop {
            object: self.object.clone(),
        };
        self.dropped = true;
        self.run(op, None).await?;
        Ok(())
    }
}

/// Dropping a module drops its object in the worker, in the background (best effort: nothing
/// happens outside a tokio runtime, or once its session is lost).
impl<I, O> Drop for BridgedModule<I, O> {
    fn drop(&mut self) {
        if self.dropped || self.session.is_lost() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let session = self.session.clone();
        let object = std::mem::take(&mut self.object);
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
