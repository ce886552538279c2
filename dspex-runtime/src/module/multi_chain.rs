//! [`MultiChainComparison`]: one LM call that compares M earlier reasoning attempts.

use super::chain_of_thought::Reasoned;
use super::predict::DynPredict;
use crate::callback::{Callbacks, EventError, EventKind, observe, to_json};
use crate::error::{Error, Result};
use crate::example::{Example, Prediction};
use crate::program::{PredictorParams, Program};
use crate::pycompat::py::{from_json, py_str};
use crate::pycompat::text::py_strip;
use crate::settings::CallConfig;
use crate::signature::{DynSignature, FieldSpec, Signature, SignatureError, TypeSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::marker::PhantomData;

/// The temperature DSPy's `MultiChainComparison` samples at unless told otherwise.
const DEFAULT_TEMPERATURE: f64 = 0.7;

/// What [`MultiChainComparison`] can fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MultiChainError {
    /// The signature could not be extended with the attempt and rationale fields.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The signature has no output field to compare answers on.
    #[error("MultiChainComparison needs a signature with at least one output field")]
    NoOutputs,
    /// The number of completions is not M (DSPy's assertion, in its words).
    #[error(
        "The number of attempts ({got}) doesn't match the expected number M ({expected}). Please set the correct value for M when initializing MultiChainComparison."
    )]
    WrongCount {
        /// M.
        expected: usize,
        /// How many completions were given.
        got: usize,
    },
    /// A completion has no `rationale` or `reasoning` text.
    #[error("completion {index} has neither a `rationale` nor a `reasoning` string")]
    NoRationale {
        /// The completion's position (0-based).
        index: usize,
    },
    /// A completion lacks the answer field (the signature's last output).
    #[error("completion {index} has no `{field}` field")]
    MissingAnswer {
        /// The completion's position (0-based).
        index: usize,
        /// The answer field.
        field: String,
    },
    /// A completion did not serialize to a JSON object.
    #[error("completion {index} is not a record of fields: {message}")]
    NotARecord {
        /// The completion's position (0-based).
        index: usize,
        /// What was found instead.
        message: String,
    },
}

impl From<MultiChainError> for Error {
    fn from(e: MultiChainError) -> Self {
        match e {
            MultiChainError::Signature(e) => Error::Signature(e),
            other => Error::step("MultiChainComparison", other),
        }
    }
}

/// A typed output with the model's corrected reasoning before it (the `rationale` output of
/// [`MultiChainComparison`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Corrected<T> {
    /// The corrected reasoning the model wrote first.
    pub rationale: String,
    /// The signature's outputs.
    #[serde(flatten)]
    pub output: T,
}

/// The input of a [`MultiChainComparison`] program: the earlier attempts and the signature's
/// inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareInput<I, C> {
    /// The M attempts to compare, each with a `rationale` or `reasoning` and the answer field.
    pub completions: Vec<C>,
    /// The signature's inputs.
    pub input: I,
}

/// DSPy's `dspy.MultiChainComparison` over a run-time signature: shows the model M earlier
/// attempts (`«I'm trying to <rationale> I'm not sure but my prediction is <answer>»`) and asks
/// for a corrected `rationale` and the outputs.
///
/// The signature gains inputs `reasoning_attempt_1` … `reasoning_attempt_M` (description
/// `${reasoning attempt}`, shown literally in the prompt as in DSPy) after its own, and the output
/// `rationale` (description `${corrected reasoning}`) first. Calls sample at temperature 0.7
/// unless the config says otherwise. One predictor, named `predict`.
///
/// ```
/// use dspex_runtime::lm::ScriptedLM;
/// use dspex_runtime::module::{CallConfig, DynMultiChainComparison};
/// use dspex_runtime::{DynSignature, Example};
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let lm = ScriptedLM::from_fields([json!({"rationale": "2 + 2 is 4.", "answer": "4"})]);
/// let mcc = DynMultiChainComparison::new(&DynSignature::parse("question -> answer")?, 2)?
///     .with_config(CallConfig::new().lm(lm.clone()));
/// let attempts = [
///     json!({"reasoning": "Add them.", "answer": "4"}),
///     json!({"reasoning": "Multiply them.", "answer": "4"}),
/// ];
/// let attempts: Vec<_> = attempts.iter().map(|a| a.as_object().unwrap().clone()).collect();
/// let out = mcc.call(&attempts, &Example::new().with("question", "2 + 2?")).await?;
/// assert_eq!(out.get_str("answer"), Some("4"));
/// let user = lm.requests()[0].messages[1].content.text().into_owned();
/// assert!(user.contains("«I'm trying to Add them. I'm not sure but my prediction is 4»"));
/// assert_eq!(lm.requests()[0].temperature, Some(0.7));
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct DynMultiChainComparison {
    predict: DynPredict,
    m: usize,
    last_key: String,
    callbacks: Callbacks,
}

impl DynMultiChainComparison {
    /// Compares `m` attempts at `signature`'s task.
    ///
    /// # Errors
    ///
    /// [`MultiChainError::NoOutputs`] for a signature without outputs, and
    /// [`MultiChainError::Signature`] when it already has a field the module adds.
    pub fn new(signature: &DynSignature, m: usize) -> Result<Self, MultiChainError> {
        let last_key = signature
            .outputs()
            .last()
            .ok_or(MultiChainError::NoOutputs)?
            .name()
            .to_string();
        let mut extended = signature.clone();
        for idx in 1..=m {
            extended = extended.append(
                FieldSpec::input(format!("reasoning_attempt_{idx}"), TypeSpec::Str)
                    .with_prefix(format!("Student Attempt #{idx}:"))
                    .with_desc("${reasoning attempt}"),
            )?;
        }
        extended = extended.prepend(
            FieldSpec::output("rationale", TypeSpec::Str)
                .with_prefix("Accurate Reasoning: Thank you everyone. Let's now holistically")
                .with_desc("${corrected reasoning}"),
        )?;
        Ok(DynMultiChainComparison {
            predict: DynPredict::new(extended)
                .with_config(CallConfig::new().temperature(DEFAULT_TEMPERATURE)),
            m,
            last_key,
            callbacks: Callbacks::new(),
        })
    }

    /// The same module with these defaults for every call (temperature 0.7 unless `config`
    /// sets one).
    #[must_use]
    pub fn with_config(mut self, config: CallConfig) -> Self {
        let config = CallConfig::new()
            .temperature(DEFAULT_TEMPERATURE)
            .merged(&config);
        self.predict = self.predict.with_config(config);
        self
    }

    /// M: how many attempts every call compares.
    pub fn m(&self) -> usize {
        self.m
    }

    /// The inner predictor (DSPy's `predict`), over the extended signature.
    pub fn predictor(&self) -> &DynPredict {
        &self.predict
    }

    /// The inner predictor, mutable (to change its config, instructions or demos).
    pub fn predictor_mut(&mut self) -> &mut DynPredict {
        &mut self.predict
    }

    /// The inner predictor's parameters (the extended signature, demos).
    pub fn params(&self) -> &PredictorParams {
        self.predict.params()
    }

    /// The inner predictor's parameters, to change instructions or demos.
    pub fn params_mut(&mut self) -> &mut PredictorParams {
        self.predict.params_mut()
    }

    /// Compares `completions` (exactly M, each with a `rationale` or `reasoning` string and the
    /// signature's last output field) on `inputs`.
    ///
    /// # Errors
    ///
    /// A [`MultiChainError`] (converted) when a completion lacks those fields or there are not M
    /// of them; otherwise what the predictor call fails with.
    pub async fn call(
        &self,
        completions: &[Map<String, Value>],
        inputs: &Example,
    ) -> Result<Prediction> {
        self.call_with(completions, inputs, &CallConfig::default())
            .await
    }

    /// [`DynMultiChainComparison::call`] with per-call overrides.
    ///
    /// # Errors
    ///
    /// As [`DynMultiChainComparison::call`].
    pub async fn call_with(
        &self,
        completions: &[Map<String, Value>],
        inputs: &Example,
        overrides: &CallConfig,
    ) -> Result<Prediction> {
        observe(
            EventKind::Module,
            || "MultiChainComparison".to_string(),
            Some(&self.callbacks),
            || {
                let mut event = serde_json::Map::new();
                event.insert("completions".to_string(), to_json(completions));
                if let Value::Object(fields) = to_json(inputs) {
                    event.extend(fields);
                }
                Value::Object(event)
            },
            self.compare(completions, inputs, overrides),
            to_json,
            EventError::of,
        )
        .await
    }

    /// The same module with callbacks of its own: they receive its module events (named
    /// `MultiChainComparison`; the inputs are the `completions` and the input fields), after
    /// the callbacks in the settings. The predictor inside fires its own events to the
    /// callbacks in the settings, as in DSPy (see [`crate::callback`]).
    #[must_use]
    pub fn with_callbacks(mut self, callbacks: impl Into<Callbacks>) -> Self {
        self.callbacks = callbacks.into();
        self
    }

    /// [`DynMultiChainComparison::call_with`] without the events.
    async fn compare(
        &self,
        completions: &[Map<String, Value>],
        inputs: &Example,
        overrides: &CallConfig,
    ) -> Result<Prediction> {
        let mut attempts = Vec::with_capacity(completions.len());
        for (index, completion) in completions.iter().enumerate() {
            attempts.push(self.attempt(index, completion)?);
        }
        if attempts.len() != self.m {
            return Err(MultiChainError::WrongCount {
                expected: self.m,
                got: attempts.len(),
            }
            .into());
        }
        // `{**attempts, **kwargs}`: the caller's inputs come after, and win.
        let mut all = Example::from_pairs(
            attempts
                .into_iter()
                .enumerate()
                .map(|(i, a)| (format!("reasoning_attempt_{}", i + 1), a)),
        );
        all.extend(inputs.iter_all().map(|(k, v)| (k.to_string(), v.clone())));
        self.predict.call_with(&all, overrides).await
    }

    /// One attempt as DSPy words it: the first line of the rationale and of the answer, stripped.
    fn attempt(
        &self,
        index: usize,
        completion: &Map<String, Value>,
    ) -> Result<String, MultiChainError> {
        let rationale = completion
            .get("rationale")
            .or_else(|| completion.get("reasoning"))
            .and_then(Value::as_str)
            .ok_or(MultiChainError::NoRationale { index })?;
        let answer =
            completion
                .get(&self.last_key)
                .ok_or_else(|| MultiChainError::MissingAnswer {
                    index,
                    field: self.last_key.clone(),
                })?;
        // Python's `str()`: a string as it is, anything else as its repr.
        let answer = py_str(&from_json(answer));
        Ok(format!(
            "«I'm trying to {} I'm not sure but my prediction is {}»",
            first_line(rationale),
            first_line(&answer)
        ))
    }
}

/// `s.strip().split("\n")[0].strip()` with Python's whitespace.
fn first_line(s: &str) -> &str {
    py_strip(py_strip(s).split('\n').next().unwrap_or_default())
}

/// DSPy's `dspy.MultiChainComparison` for signature `S`: shows the model M earlier attempts and
/// asks for a corrected `rationale` and the outputs (see [`DynMultiChainComparison`], which it
/// wraps). As a [`Program`] it takes the attempts as ChainOfThought outputs; use
/// [`MultiChainComparison::forward_with`] for attempts of any serializable shape.
pub struct MultiChainComparison<S> {
    inner: DynMultiChainComparison,
    _signature: PhantomData<fn() -> S>,
}

typed_wrapper_impls!(MultiChainComparison => inner);

impl<S: Signature> MultiChainComparison<S> {
    /// Compares `m` attempts at `S`'s task.
    ///
    /// # Errors
    ///
    /// As [`DynMultiChainComparison::new`].
    pub fn new(m: usize) -> Result<Self, MultiChainError> {
        Ok(MultiChainComparison {
            inner: DynMultiChainComparison::new(S::signature(), m)?,
            _signature: PhantomData,
        })
    }

    /// The same module with callbacks of its own (see
    /// [`DynMultiChainComparison::with_callbacks`]).
    #[must_use]
    pub fn with_callbacks(mut self, callbacks: impl Into<Callbacks>) -> Self {
        self.inner = self.inner.with_callbacks(callbacks);
        self
    }

    /// The same module with these defaults for every call (temperature 0.7 unless `config`
    /// sets one).
    #[must_use]
    pub fn with_config(mut self, config: CallConfig) -> Self {
        self.inner = self.inner.with_config(config);
        self
    }

    /// The run-time module it wraps.
    pub fn inner(&self) -> &DynMultiChainComparison {
        &self.inner
    }

    /// The inner predictor's parameters.
    pub fn params(&self) -> &PredictorParams {
        self.inner.params()
    }

    /// The inner predictor's parameters, to change instructions or demos.
    pub fn params_mut(&mut self) -> &mut PredictorParams {
        self.inner.params_mut()
    }

    /// Compares `completions` — anything that serializes to a record with a `rationale` or
    /// `reasoning` and `S`'s last output — on `input`, with per-call overrides.
    ///
    /// # Errors
    ///
    /// As [`DynMultiChainComparison::call`], and a [`MultiChainError::NotARecord`] for a
    /// completion that does not serialize to a JSON object.
    pub async fn forward_with<C: Serialize>(
        &self,
        completions: &[C],
        input: S::Input,
        config: &CallConfig,
    ) -> Result<Corrected<S::Output>> {
        let mut records = Vec::with_capacity(completions.len());
        for (index, c) in completions.iter().enumerate() {
            match serde_json::to_value(c) {
                Ok(Value::Object(map)) => records.push(map),
                Ok(other) => {
                    return Err(MultiChainError::NotARecord {
                        index,
                        message: format!("a JSON {}", json_kind(&other)),
                    }
                    .into());
                }
                Err(e) => {
                    return Err(MultiChainError::NotARecord {
                        index,
                        message: e.to_string(),
                    }
                    .into());
                }
            }
        }
        let prediction = self
            .inner
            .call_with(&records, &Example::from_typed(&input)?, config)
            .await?;
        Ok(prediction.to_typed()?)
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl<S: Signature> Program for MultiChainComparison<S> {
    type Input = CompareInput<S::Input, Reasoned<S::Output>>;
    type Output = Corrected<S::Output>;

    async fn forward(&self, input: Self::Input) -> Result<Self::Output> {
        self.forward_with(&input.completions, input.input, &CallConfig::default())
            .await
    }
}

crate::program::delegate_module!(impl[] DynMultiChainComparison => predict as "predict");

crate::program::delegate_module!(impl[S] MultiChainComparison<S> => inner);

#[cfg(test)]
mod tests {
    use super::super::best_of_n::testing::{QA, QAOutput, question};
    use super::*;
    use crate::lm::ScriptedLM;
    use crate::program::Module;
    use serde_json::json;

    /// Captured from DSPy 3.4.1: `MultiChainComparison("question -> answer", M=2)`.
    const SYSTEM: &str = concat!(
        "Your input fields are:\n",
        "1. `question` (str): \n",
        "2. `reasoning_attempt_1` (str): ${reasoning attempt}\n",
        "3. `reasoning_attempt_2` (str): ${reasoning attempt}\n",
        "Your output fields are:\n",
        "1. `rationale` (str): ${corrected reasoning}\n",
        "2. `answer` (str):\n",
        "All interactions will be structured in the following way, with the appropriate values filled in.\n",
        "\n",
        "[[ ## question ## ]]\n",
        "{question}\n",
        "\n",
        "[[ ## reasoning_attempt_1 ## ]]\n",
        "{reasoning_attempt_1}\n",
        "\n",
        "[[ ## reasoning_attempt_2 ## ]]\n",
        "{reasoning_attempt_2}\n",
        "\n",
        "[[ ## rationale ## ]]\n",
        "{rationale}\n",
        "\n",
        "[[ ## answer ## ]]\n",
        "{answer}\n",
        "\n",
        "[[ ## completed ## ]]\n",
        "In adhering to this structure, your objective is: \n",
        "        Given the fields `question`, produce the fields `answer`.",
    );

    /// The user turn of the same call.
    const USER: &str = concat!(
        "[[ ## question ## ]]\n",
        "What is 2+2?\n",
        "\n",
        "[[ ## reasoning_attempt_1 ## ]]\n",
        "«I'm trying to Think A. I'm not sure but my prediction is 4»\n",
        "\n",
        "[[ ## reasoning_attempt_2 ## ]]\n",
        "«I'm trying to Think B. I'm not sure but my prediction is 5»\n",
        "\n",
        "Respond with the corresponding output fields, starting with the field `[[ ## rationale ## ]]`, then `[[ ## answer ## ]]`, and then ending with the marker for `[[ ## completed ## ]]`.",
    );

    fn records(values: &[Value]) -> Vec<Map<String, Value>> {
        values
            .iter()
            .map(|v| v.as_object().unwrap().clone())
            .collect()
    }

    #[tokio::test]
    async fn sends_dspys_prompt_at_temperature_point_seven() {
        let lm = ScriptedLM::from_fields([json!({"rationale": "combined", "answer": "4"})]);
        let mcc =
            DynMultiChainComparison::new(&DynSignature::parse("question -> answer").unwrap(), 2)
                .unwrap()
                .with_config(CallConfig::new().lm(lm.clone()));
        assert_eq!(mcc.named_predictors()[0].0, "predict");
        assert_eq!(
            mcc.params()
                .signature
                .field("reasoning_attempt_2")
                .unwrap()
                .prefix(),
            "Student Attempt #2:"
        );
        let completions = records(&[
            json!({"reasoning": "Think A.\nmore", "answer": "4"}),
            json!({"rationale": "  Think B. ", "reasoning": "ignored", "answer": " 5\nx"}),
        ]);
        let out = mcc
            .call(
                &completions,
                &Example::new().with("question", "What is 2+2?"),
            )
            .await
            .unwrap();
        assert_eq!(out.get_str("rationale"), Some("combined"));
        assert_eq!(out.get_str("answer"), Some("4"));
        let request = &lm.requests()[0];
        assert_eq!(request.messages[0].content, SYSTEM);
        assert_eq!(request.messages[1].content, USER);
        assert_eq!(request.temperature, Some(0.7));
    }

    #[tokio::test]
    async fn typed_forward_and_config() {
        let lm =
            ScriptedLM::from_fields([json!({"rationale": "R", "answer": "Paris"})]).repeat_last();
        let mcc = MultiChainComparison::<QA>::new(3)
            .unwrap()
            .with_config(CallConfig::new().lm(lm.clone()).temperature(0.2));
        let attempt = |r: &str, a: &str| Reasoned {
            reasoning: r.to_string(),
            output: QAOutput {
                answer: a.to_string(),
            },
        };
        let input = CompareInput {
            completions: vec![
                attempt("A", "Paris"),
                attempt("B", "Lyon"),
                attempt("C", "Paris"),
            ],
            input: question("Capital?"),
        };
        let out = mcc.forward(input.clone()).await.unwrap();
        assert_eq!(
            out,
            Corrected {
                rationale: "R".into(),
                output: QAOutput {
                    answer: "Paris".into()
                }
            }
        );
        let request = &lm.requests()[0];
        assert_eq!(request.temperature, Some(0.2));
        assert!(request.messages[1].content.text().contains(
            "[[ ## reasoning_attempt_3 ## ]]\n«I'm trying to C I'm not sure but my prediction is Paris»"
        ));

        // Wrong number of attempts: DSPy's assertion, as a typed error.
        let two = CompareInput {
            completions: input.completions[..2].to_vec(),
            input: question("Q"),
        };
        let err = mcc.forward(two).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "MultiChainComparison: The number of attempts (2) doesn't match the expected number M (3). Please set the correct value for M when initializing MultiChainComparison."
        );
        assert_eq!(lm.calls(), 1);
    }

    #[tokio::test]
    async fn attempts_need_a_rationale_and_the_answer() {
        let sig = DynSignature::parse("question -> answer").unwrap();
        let mcc = DynMultiChainComparison::new(&sig, 1).unwrap();
        let q = Example::new().with("question", "Q");
        let err = mcc
            .call(&records(&[json!({"answer": "4"})]), &q)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("neither a `rationale` nor a `reasoning`"),
            "{err}"
        );
        let err = mcc
            .call(&records(&[json!({"reasoning": "r"})]), &q)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("completion 0 has no `answer` field"),
            "{err}"
        );
        let none = DynSignature::from_fields(None, [FieldSpec::input("q", TypeSpec::Str)]).unwrap();
        assert_eq!(
            DynMultiChainComparison::new(&none, 1).unwrap_err(),
            MultiChainError::NoOutputs
        );
        let taken = DynSignature::parse("question -> rationale, answer").unwrap();
        assert!(matches!(
            DynMultiChainComparison::new(&taken, 1),
            Err(MultiChainError::Signature(
                SignatureError::DuplicateField { .. }
            ))
        ));
    }

    #[test]
    fn non_text_answers_are_written_as_python_str() {
        let mcc = DynMultiChainComparison::new(&DynSignature::parse("q -> a").unwrap(), 1).unwrap();
        let attempt = |a: Value| {
            mcc.attempt(0, &records(&[json!({"reasoning": "r", "a": a})])[0])
                .unwrap()
        };
        let expect = |a: &str| format!("«I'm trying to r I'm not sure but my prediction is {a}»");
        assert_eq!(attempt(json!(4)), expect("4"));
        assert_eq!(attempt(json!(4.0)), expect("4.0"));
        assert_eq!(attempt(json!(1e16)), expect("1e+16"));
        assert_eq!(attempt(json!(1e-5)), expect("1e-05"));
        assert_eq!(attempt(json!(0.0001)), expect("0.0001"));
        assert_eq!(attempt(json!(true)), expect("True"));
        assert_eq!(attempt(json!(null)), expect("None"));
        assert_eq!(
            attempt(json!(["it's", 1, {"k": false}])),
            expect("[\"it's\", 1, {'k': False}]")
        );
    }
}
