//! LM-judged metrics (`dspy.evaluate.auto_evaluation`): [`SemanticF1`] and
//! [`CompleteAndGrounded`], each a chain of thought over DSPy's own signatures.

use super::metric::Metric;
use crate::error::Result;
use crate::example::{Example, Prediction};
use crate::module::{CallConfig, DynPredict};
use crate::program::{Module, PredictorParams, join_path};
use crate::settings::TraceEntry;
use crate::signature::{DynSignature, FieldSpec, TypeSpec};
use futures_util::future::BoxFuture;
use serde_json::Value;

use super::builtin::MetricError;

const RECALL_DESC: &str = "fraction (out of 1.0) of ground truth covered by the system response";
const PRECISION_DESC: &str = "fraction (out of 1.0) of system response covered by the ground truth";
const GT_IDEAS_DESC: &str = "enumeration of key ideas in the ground truth";
const SR_IDEAS_DESC: &str = "enumeration of key ideas in the system response";
const OVERLAP_DESC: &str = "discussion of the overlap between ground truth and system response";

/// DSPy's `SemanticRecallPrecision` instructions.
const SEMANTIC_INSTRUCTIONS: &str = "Compare a system's response to the ground truth to compute its recall and precision.
If asked to reason, enumerate key ideas in each response, and whether they are present in the other response.";

/// DSPy's `DecompositionalSemanticRecallPrecision` instructions.
const DECOMPOSITIONAL_INSTRUCTIONS: &str = "Compare a system's response to the ground truth to compute recall and precision of key ideas.
You will first enumerate key ideas in each response, discuss their overlap, and then report recall and precision.";

/// DSPy's `AnswerCompleteness` instructions.
const COMPLETENESS_INSTRUCTIONS: &str = "Estimate the completeness of a system's responses, against the ground truth.
You will first enumerate key ideas in each response, discuss their overlap, and then report completeness.";

/// DSPy's `AnswerGroundedness` instructions.
const GROUNDEDNESS_INSTRUCTIONS: &str = "Estimate the groundedness of a system's responses, against real retrieved documents written by people.
You will first enumerate whatever non-trivial or check-worthy claims are made in the system response, and then
discuss the extent to which some or all of them can be deduced from the retrieved context and basic commonsense.";

fn text_in(name: &str) -> FieldSpec {
    FieldSpec::input(name, TypeSpec::Str)
}

fn text_out(name: &str, desc: &str) -> FieldSpec {
    FieldSpec::output(name, TypeSpec::Str).with_desc(desc)
}

fn float_out(name: &str, desc: &str) -> FieldSpec {
    FieldSpec::output(name, TypeSpec::Float).with_desc(desc)
}

/// A chain of thought over these fields: `reasoning` first, as `ChainOfThought` adds it.
fn chain_of_thought(instructions: &str, fields: Vec<FieldSpec>) -> DynPredict {
    let signature = DynSignature::from_parts(
        Some(instructions),
        fields
            .iter()
            .filter(|f| f.role() == crate::signature::FieldRole::Input)
            .cloned()
            .collect(),
        std::iter::once(FieldSpec::output("reasoning", TypeSpec::Str))
            .chain(
                fields
                    .into_iter()
                    .filter(|f| f.role() == crate::signature::FieldRole::Output),
            )
            .collect(),
    );
    DynPredict::new(signature)
}

/// DSPy's `auto_evaluation.f1_score`: both clamped to [0, 1]; 0 when they sum to 0.
fn clamped_f1(precision: f64, recall: f64) -> f64 {
    let (p, r) = (precision.clamp(0.0, 1.0), recall.clamp(0.0, 1.0));
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * (p * r) / (p + r)
    }
}

fn field<'a>(
    map: &'a serde_json::Map<String, Value>,
    side: &'static str,
    name: &str,
) -> std::result::Result<&'a Value, MetricError> {
    map.get(name).ok_or_else(|| MetricError::MissingField {
        side,
        field: name.to_string(),
    })
}

fn number(prediction: &Prediction, name: &str) -> std::result::Result<f64, MetricError> {
    let value = field(prediction.as_map(), "judge's answer", name)?;
    value.as_f64().ok_or_else(|| MetricError::InvalidType {
        side: "judge's answer",
        field: name.to_string(),
        expected: "a number",
        found: value.to_string(),
    })
}

/// DSPy's `SemanticF1`: an LM judges the recall and precision of the prediction's `response`
/// against the example's `response` for its `question`; the score is their F1 (each clamped to
/// [0, 1]). With a trace (while an optimizer bootstraps) it is pass/fail: F1 ≥ `threshold`
/// (default 0.66).
///
/// The judge is a chain of thought over DSPy's `SemanticRecallPrecision` signature — or
/// `DecompositionalSemanticRecallPrecision`, which first lists the key ideas of each response,
/// with [`SemanticF1::decompositional`] — sending DSPy's exact prompts. Its predictor is named
/// `module.predict`, as in DSPy. It uses the LM of its [`CallConfig`], else the one in the
/// settings.
///
/// ```
/// use dspex_runtime::evaluate::{Metric, SemanticF1};
/// use dspex_runtime::lm::ScriptedLM;
/// use dspex_runtime::module::CallConfig;
/// use dspex_runtime::{Example, Prediction};
/// use serde_json::json;
///
/// let judge = ScriptedLM::from_fields([json!({"reasoning": "Both say Paris.", "recall": 1.0, "precision": 0.5})]);
/// let metric = SemanticF1::new().with_config(CallConfig::new().lm(judge));
/// let example = Example::new().with("question", "Capital of France?").with("response", "Paris.");
/// let prediction = Prediction::from_pairs([("response", "Paris, on the Seine.")]);
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(metric.score(&example, &prediction, None).await?, 2.0 / 3.0);
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SemanticF1 {
    threshold: f64,
    decompositional: bool,
    module: DynPredict,
}

impl Default for SemanticF1 {
    fn default() -> Self {
        Self::new()
    }
}

impl SemanticF1 {
    /// The judge over `SemanticRecallPrecision`, threshold 0.66.
    pub fn new() -> Self {
        SemanticF1 {
            threshold: 0.66,
            decompositional: false,
            module: chain_of_thought(
                SEMANTIC_INSTRUCTIONS,
                vec![
                    text_in("question"),
                    text_in("ground_truth"),
                    text_in("system_response"),
                    float_out("recall", RECALL_DESC),
                    float_out("precision", PRECISION_DESC),
                ],
            ),
        }
    }

    /// The judge over `DecompositionalSemanticRecallPrecision` (key ideas and their overlap
    /// first), threshold 0.66.
    pub fn decompositional() -> Self {
        SemanticF1 {
            threshold: 0.66,
            decompositional: true,
            module: chain_of_thought(
                DECOMPOSITIONAL_INSTRUCTIONS,
                vec![
                    text_in("question"),
                    text_in("ground_truth"),
                    text_in("system_response"),
                    text_out("ground_truth_key_ideas", GT_IDEAS_DESC),
                    text_out("system_response_key_ideas", SR_IDEAS_DESC),
                    text_out("discussion", OVERLAP_DESC),
                    float_out("recall", RECALL_DESC),
                    float_out("precision", PRECISION_DESC),
                ],
            ),
        }
    }

    /// The F1 at or above which a traced call passes (default 0.66).
    #[must_use]
    pub fn threshold(mut self, threshold: f64) -> Self {
        self.threshold = threshold;
        self
    }

    /// The judge's LM and sampling settings.
    #[must_use]
    pub fn with_config(mut self, config: CallConfig) -> Self {
        self.module = self.module.with_config(config);
        self
    }

    /// Whether this is the decompositional judge.
    pub fn is_decompositional(&self) -> bool {
        self.decompositional
    }

    /// The judge's parameters (signature, demos).
    pub fn params(&self) -> &PredictorParams {
        self.module.params()
    }

    /// The judge's parameters, to change its instructions or demos.
    pub fn params_mut(&mut self) -> &mut PredictorParams {
        self.module.params_mut()
    }

    /// The F1 the judge gives `prediction` for `example` (DSPy's `forward` without a trace).
    ///
    /// # Errors
    ///
    /// When `question`/`response` are missing, the LM call fails, or its answer has no numbers.
    pub async fn judge(&self, example: &Example, prediction: &Prediction) -> Result<f64> {
        let inputs = Example::new()
            .with(
                "question",
                field(example.as_map(), "example", "question")?.clone(),
            )
            .with(
                "ground_truth",
                field(example.as_map(), "example", "response")?.clone(),
            )
            .with(
                "system_response",
                field(prediction.as_map(), "prediction", "response")?.clone(),
            );
        let scores = self.module.call(&inputs).await?;
        Ok(clamped_f1(
            number(&scores, "precision")?,
            number(&scores, "recall")?,
        ))
    }
}

/// A judge's score: its F1 in an evaluation, pass/fail at `threshold` when an optimizer passes
/// a trace (DSPy's judges return `f1 >= threshold` then).
fn judged(f1: f64, trace: Option<&[TraceEntry]>, threshold: f64) -> f64 {
    match trace {
        None => f1,
        Some(_) => f64::from(u8::from(f1 >= threshold)),
    }
}

impl Metric for SemanticF1 {
    fn score<'a>(
        &'a self,
        example: &'a Example,
        prediction: &'a Prediction,
        trace: Option<&'a [TraceEntry]>,
    ) -> BoxFuture<'a, Result<f64>> {
        Box::pin(async move {
            let f1 = self.judge(example, prediction).await?;
            Ok(judged(f1, trace, self.threshold))
        })
    }

    fn name(&self) -> &str {
        "SemanticF1"
    }
}

impl Module for SemanticF1 {
    fn visit_predictors<'a>(
        &'a self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a PredictorParams),
    ) {
        visit(join_path(path, "module.predict"), self.module.params());
    }

    fn visit_predictors_mut<'a>(
        &'a mut self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a mut PredictorParams),
    ) {
        visit(join_path(path, "module.predict"), self.module.params_mut());
    }
}

/// DSPy's `CompleteAndGrounded`: one LM judge estimates how completely the prediction's
/// `response` covers the example's `response` (`AnswerCompleteness`), another how well the
/// prediction's `context` grounds it (`AnswerGroundedness`); the score is their F1 (precision =
/// groundedness, recall = completeness, each clamped to [0, 1]). With a trace it is pass/fail:
/// F1 ≥ `threshold` (default 0.66). The completeness judge is called first.
#[derive(Debug, Clone)]
pub struct CompleteAndGrounded {
    threshold: f64,
    completeness_module: DynPredict,
    groundedness_module: DynPredict,
}

impl Default for CompleteAndGrounded {
    fn default() -> Self {
        Self::new()
    }
}

impl CompleteAndGrounded {
    /// Both judges, threshold 0.66.
    pub fn new() -> Self {
        CompleteAndGrounded {
            threshold: 0.66,
            completeness_module: chain_of_thought(
                COMPLETENESS_INSTRUCTIONS,
                vec![
                    text_in("question"),
                    text_in("ground_truth"),
                    text_in("system_response"),
                    text_out("ground_truth_key_ideas", GT_IDEAS_DESC),
                    text_out("system_response_key_ideas", SR_IDEAS_DESC),
                    text_out("discussion", OVERLAP_DESC),
                    float_out("completeness", RECALL_DESC),
                ],
            ),
            groundedness_module: chain_of_thought(
                GROUNDEDNESS_INSTRUCTIONS,
                vec![
                    text_in("question"),
                    text_in("retrieved_context"),
                    text_in("system_response"),
                    text_out(
                        "system_response_claims",
                        "enumeration of non-trivial or check-worthy claims in the system response",
                    ),
                    text_out(
                        "discussion",
                        "discussion of how supported the claims are by the retrieved context",
                    ),
                    float_out(
                        "groundedness",
                        "fraction (out of 1.0) of system response supported by the retrieved context",
                    ),
                ],
            ),
        }
    }

    /// The F1 at or above which a traced call passes (default 0.66).
    #[must_use]
    pub fn threshold(mut self, threshold: f64) -> Self {
        self.threshold = threshold;
        self
    }

    /// Both judges' LM and sampling settings.
    #[must_use]
    pub fn with_config(mut self, config: CallConfig) -> Self {
        self.completeness_module = self.completeness_module.with_config(config.clone());
        self.groundedness_module = self.groundedness_module.with_config(config);
        self
    }

    /// The F1 of groundedness and completeness for `prediction` (DSPy's `forward` without a
    /// trace).
    ///
    /// # Errors
    ///
    /// When `question`/`response`/`context` are missing, an LM call fails, or an answer has no
    /// number.
    pub async fn judge(&self, example: &Example, prediction: &Prediction) -> Result<f64> {
        let question = field(example.as_map(), "example", "question")?;
        let system_response = field(prediction.as_map(), "prediction", "response")?;
        let completeness = self
            .completeness_module
            .call(
                &Example::new()
                    .with("question", question.clone())
                    .with(
                        "ground_truth",
                        field(example.as_map(), "example", "response")?.clone(),
                    )
                    .with("system_response", system_response.clone()),
            )
            .await?;
        let groundedness = self
            .groundedness_module
            .call(
                &Example::new()
                    .with("question", question.clone())
                    .with(
                        "retrieved_context",
                        field(prediction.as_map(), "prediction", "context")?.clone(),
                    )
                    .with("system_response", system_response.clone()),
            )
            .await?;
        Ok(clamped_f1(
            number(&groundedness, "groundedness")?,
            number(&completeness, "completeness")?,
        ))
    }
}

impl Metric for CompleteAndGrounded {
    fn score<'a>(
        &'a self,
        example: &'a Example,
        prediction: &'a Prediction,
        trace: Option<&'a [TraceEntry]>,
    ) -> BoxFuture<'a, Result<f64>> {
        Box::pin(async move {
            let f1 = self.judge(example, prediction).await?;
            Ok(judged(f1, trace, self.threshold))
        })
    }

    fn name(&self) -> &str {
        "CompleteAndGrounded"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::ScriptedLM;
    use serde_json::json;

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Captured from DSPy 3.4.1 with `DummyLM` (see the test data's header).
    fn captured() -> Value {
        serde_json::from_str(include_str!("testdata/semantic.json")).unwrap()
    }

    fn example() -> Example {
        Example::new()
            .with("question", "What is the capital of France?")
            .with("response", "Paris is the capital of France.")
    }

    fn prediction() -> Prediction {
        Prediction::from_pairs([
            ("response", "The capital is Paris, a city on the Seine."),
            (
                "context",
                "Paris is France's capital.\nThe Seine flows through Paris.",
            ),
        ])
    }

    fn assert_messages(lm: &ScriptedLM, expected: &Value) {
        let sent: Vec<Value> = lm
            .messages()
            .iter()
            .map(|call| {
                Value::Array(
                    call.iter()
                        .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
                        .collect(),
                )
            })
            .collect();
        let expected = match expected {
            Value::Array(calls) if calls.first().is_some_and(Value::is_array) => calls.clone(),
            one => vec![one.clone()],
        };
        assert_eq!(sent.len(), expected.len());
        for (s, e) in sent.iter().zip(&expected) {
            for (sm, em) in s.as_array().unwrap().iter().zip(e.as_array().unwrap()) {
                assert_eq!(sm["role"], em["role"]);
                assert_eq!(
                    sm["content"].as_str().unwrap(),
                    em["content"].as_str().unwrap()
                );
            }
            assert_eq!(s.as_array().unwrap().len(), e.as_array().unwrap().len());
        }
    }

    #[test]
    fn semantic_f1_sends_dspy_prompts_and_scores_like_dspy() {
        let cap = captured();
        let lm = ScriptedLM::from_fields([
            json!({"reasoning": "Both say Paris.", "recall": "1.0", "precision": "0.5"}),
        ]);
        let metric = SemanticF1::new().with_config(CallConfig::new().lm(lm.clone()));
        let score = block(metric.score(&example(), &prediction(), None)).unwrap();
        assert_eq!(score, cap["semantic_f1"]["score"].as_f64().unwrap());
        assert_messages(&lm, &cap["semantic_f1"]["messages"]);
        assert_eq!(metric.name(), "SemanticF1");
        assert_eq!(metric.named_predictors()[0].0, "module.predict");

        let lm = ScriptedLM::from_fields([json!({
            "reasoning": "R", "ground_truth_key_ideas": "1. Paris",
            "system_response_key_ideas": "1. Paris 2. Seine", "discussion": "D",
            "recall": "1.0", "precision": "0.5"})]);
        let metric = SemanticF1::decompositional().with_config(CallConfig::new().lm(lm.clone()));
        // With a trace: pass/fail at the threshold (2/3 >= 0.66).
        let score = block(metric.score(&example(), &prediction(), Some(&[]))).unwrap();
        assert_eq!(cap["semantic_f1_decomp"]["score"], json!(true));
        assert_eq!(score, 1.0);
        assert_messages(&lm, &cap["semantic_f1_decomp"]["messages"]);
        let strict = metric.clone().threshold(0.7);
        let lm2 = ScriptedLM::from_fields([json!({
            "reasoning": "R", "ground_truth_key_ideas": "", "system_response_key_ideas": "",
            "discussion": "", "recall": 1.0, "precision": 0.5})]);
        let strict = strict.with_config(CallConfig::new().lm(lm2));
        assert_eq!(
            block(strict.score(&example(), &prediction(), Some(&[]))).unwrap(),
            0.0
        );
    }

    #[test]
    fn complete_and_grounded_sends_dspy_prompts_and_scores_like_dspy() {
        let cap = captured();
        let lm = ScriptedLM::from_fields([
            json!({"reasoning": "R", "ground_truth_key_ideas": "1. Paris",
                   "system_response_key_ideas": "1. Paris 2. Seine", "discussion": "D",
                   "completeness": "0.9"}),
            json!({"reasoning": "R2", "system_response_claims": "1. Paris is the capital",
                   "discussion": "D2", "groundedness": "1.5"}),
        ]);
        let metric = CompleteAndGrounded::new().with_config(CallConfig::new().lm(lm.clone()));
        let score = block(metric.score(&example(), &prediction(), None)).unwrap();
        assert_eq!(
            score,
            cap["complete_and_grounded"]["score"].as_f64().unwrap()
        );
        assert_messages(&lm, &cap["complete_and_grounded"]["messages"]);
    }

    #[test]
    fn missing_fields_are_errors_not_panics() {
        let lm = ScriptedLM::from_fields([json!({"reasoning": "", "recall": 1, "precision": 1})]);
        let metric = SemanticF1::new().with_config(CallConfig::new().lm(lm.clone()));
        let err = block(metric.score(&Example::new(), &prediction(), None)).unwrap_err();
        assert!(err.to_string().contains("`question`"), "{err}");
        let err = block(metric.score(&example(), &Prediction::default(), None)).unwrap_err();
        assert!(err.to_string().contains("`response`"), "{err}");
        assert_eq!(lm.calls(), 0);
        assert_eq!(clamped_f1(0.0, 0.0), 0.0);
        assert_eq!(clamped_f1(-1.0, 2.0), 0.0);
        assert_eq!(clamped_f1(2.0, 0.5), 2.0 * 0.5 / 1.5);
    }
}
