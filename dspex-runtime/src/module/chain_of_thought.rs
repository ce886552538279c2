//! [`ChainOfThought`]: Predict with a `reasoning` output first.

use super::predict::DynPredict;
use super::streaming::{self, FieldStream, StreamError, StreamOptions};
use crate::callback::{Callbacks, EventError, EventKind, observe, to_json};
use crate::error::Result;
use crate::example::{Example, Prediction};
use crate::program::{PredictorParams, Program};
use crate::settings::CallConfig;
use crate::signature::{FieldSpec, Signature, TypeSpec};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

/// A typed output with the model's reasoning before it: what [`ChainOfThought`] returns.
///
/// It dereferences to the signature's outputs, so the fields read as they do from
/// [`Predict`](super::Predict)'s output and as DSPy's `pred.answer` reads: `out.answer`, with
/// `out.reasoning` beside them (`out.output` is the outputs as one value).
///
/// ```
/// use dspex_runtime::module::Reasoned;
///
/// // What `#[signature("question -> answer")] struct QA;` generates as the outputs.
/// struct QAOutput {
///     answer: String,
/// }
///
/// let out = Reasoned {
///     reasoning: "France's capital is Paris.".to_string(),
///     output: QAOutput { answer: "Paris".to_string() },
/// };
/// assert_eq!(out.answer, "Paris"); // through Deref, as with Predict's QAOutput
/// assert_eq!(out.reasoning, "France's capital is Paris.");
/// let QAOutput { answer } = out.into_inner();
/// assert_eq!(answer, "Paris");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reasoned<T> {
    /// The reasoning the model wrote first.
    pub reasoning: String,
    /// The signature's outputs.
    #[serde(flatten)]
    pub output: T,
}

impl<T> Reasoned<T> {
    /// The signature's outputs without the reasoning.
    pub fn into_inner(self) -> T {
        self.output
    }
}

impl<T> std::ops::Deref for Reasoned<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.output
    }
}

impl<T> std::ops::DerefMut for Reasoned<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.output
    }
}

/// DSPy's `dspy.ChainOfThought`: the signature with `reasoning` prepended to the outputs (type
/// `str`, DSPy's default description), one predictor named `predict`.
pub struct ChainOfThought<S> {
    predict: DynPredict,
    callbacks: Callbacks,
    _signature: PhantomData<fn() -> S>,
}

typed_wrapper_impls!(ChainOfThought => predict, callbacks);

impl<S: Signature> Default for ChainOfThought<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Signature> ChainOfThought<S> {
    /// A chain of thought over `S`.
    pub fn new() -> Self {
        let signature = S::signature()
            .prepend(FieldSpec::output("reasoning", TypeSpec::Str))
            // A signature with a `reasoning` output already cannot take another; keep it.
            .unwrap_or_else(|_| S::signature().clone());
        ChainOfThought {
            predict: DynPredict::new(signature),
            callbacks: Callbacks::new(),
            _signature: PhantomData,
        }
    }

    /// The same module with these defaults for every call.
    #[must_use]
    pub fn with_config(mut self, config: CallConfig) -> Self {
        self.predict = self.predict.with_config(config);
        self
    }

    /// The same module with callbacks of its own: they receive its module events (named
    /// `ChainOfThought`), after the callbacks in the settings. The `Predict` inside fires its own
    /// module events to the callbacks in the settings, as in DSPy (see [`crate::callback`]).
    #[must_use]
    pub fn with_callbacks(mut self, callbacks: impl Into<Callbacks>) -> Self {
        self.callbacks = callbacks.into();
        self
    }

    /// The inner predictor's parameters.
    pub fn params(&self) -> &PredictorParams {
        self.predict.params()
    }

    /// The inner predictor's parameters, to change instructions or demos.
    pub fn params_mut(&mut self) -> &mut PredictorParams {
        self.predict.params_mut()
    }

    /// Runs on `input` with per-call overrides.
    pub async fn forward_with(
        &self,
        input: S::Input,
        config: &CallConfig,
    ) -> Result<Reasoned<S::Output>> {
        let inputs = Example::from_typed(&input)?;
        observe(
            EventKind::Module,
            || "ChainOfThought".to_string(),
            Some(&self.callbacks),
            || to_json(&inputs),
            async {
                let prediction: Prediction = self.predict.call_with(&inputs, config).await?;
                Ok(prediction.to_typed()?)
            },
            to_json,
            EventError::of,
        )
        .await
    }
}

impl<S: Signature> ChainOfThought<S> {
    /// Runs on `input`, streaming the reasoning and every output field as the LM writes them,
    /// then the typed output with its reasoning.
    pub fn stream(&self, input: S::Input) -> FieldStream<Reasoned<S::Output>> {
        self.stream_with(input, &CallConfig::default(), &StreamOptions::default())
    }

    /// Runs on `input` with per-call overrides, streaming the fields `options` listens to
    /// (`reasoning` is one of them), then the typed output with its reasoning. Chunks are named
    /// `predict` (DSPy's name for the inner predictor) unless `options` names the predictor;
    /// [`DynPredict::stream_with`] describes the items.
    ///
    /// ```
    /// use dspex_runtime::lm::ScriptedLM;
    /// use dspex_runtime::module::{CallConfig, ChainOfThought, StreamItem, StreamOptions};
    /// use dspex_runtime::{DynSignature, Signature};
    /// use futures_util::StreamExt;
    /// use serde::{Deserialize, Serialize};
    /// use serde_json::json;
    /// use std::sync::OnceLock;
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize)]
    /// struct In { question: String }
    /// #[derive(Debug, Clone, Serialize, Deserialize)]
    /// struct Out { answer: i64 }
    /// struct Sum;
    /// impl Signature for Sum {
    ///     type Input = In;
    ///     type Output = Out;
    ///     fn signature() -> &'static DynSignature {
    ///         static SIG: OnceLock<DynSignature> = OnceLock::new();
    ///         SIG.get_or_init(|| DynSignature::parse("question -> answer: int").expect("valid"))
    ///     }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let lm = ScriptedLM::from_fields([json!({"reasoning": "Two plus two.", "answer": 4})]);
    /// let cot = ChainOfThought::<Sum>::new().with_config(CallConfig::new().lm(lm));
    /// let items: Vec<_> = cot
    ///     .stream_with(
    ///         In { question: "2 + 2?".into() },
    ///         &CallConfig::default(),
    ///         &StreamOptions::new().listen("reasoning"),
    ///     )
    ///     .collect()
    ///     .await;
    /// let reasoning: String = items
    ///     .iter()
    ///     .filter_map(|i| match i {
    ///         Ok(StreamItem::Chunk(c)) if c.predictor == "predict" => Some(c.delta.as_str()),
    ///         _ => None,
    ///     })
    ///     .collect();
    /// assert_eq!(reasoning, "Two plus two.");
    /// let Some(Ok(StreamItem::Final(out))) = items.last() else { panic!("{items:?}") };
    /// assert_eq!((out.reasoning.as_str(), out.output.answer), ("Two plus two.", 4));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn stream_with(
        &self,
        input: S::Input,
        config: &CallConfig,
        options: &StreamOptions,
    ) -> FieldStream<Reasoned<S::Output>> {
        match Example::from_typed(&input) {
            Ok(inputs) => streaming::typed(self.predict.stream_named(
                &inputs,
                config,
                options,
                "predict",
                Some(("ChainOfThought", &self.callbacks)),
            )),
            Err(e) => streaming::failed(StreamError::Call(e.into())),
        }
    }
}

impl<S: Signature> Program for ChainOfThought<S> {
    type Input = S::Input;
    type Output = Reasoned<S::Output>;

    async fn forward(&self, input: S::Input) -> Result<Self::Output> {
        self.forward_with(input, &CallConfig::default()).await
    }
}

crate::program::delegate_module!(impl[S] ChainOfThought<S> => predict as "predict");
