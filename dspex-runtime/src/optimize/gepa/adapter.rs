//! The DSPy side of GEPA (DSPy's `DspyAdapter`): building a program from a candidate, running
//! it on a batch (with or without traces), the reflective dataset the reflection LM reads, and
//! the instruction proposer.

use super::budget::GepaError;
use super::feedback::{FeedbackMetric, PredictorFocus, default_feedback};
use super::state::Texts;
use crate::error::Result;
use crate::example::{Example, Prediction};
use crate::lm::LanguageModel;
use crate::module::DynPredict;
use crate::optimize::{JobContext, Optimizable};
use crate::program::Module;
use crate::pycompat::PyRandom;
use crate::settings::{FailedParse, PredictorId, Settings, Trace, TraceEntry, with_settings};
use crate::signature::{DynSignature, FieldSpec, TypeSpec};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use std::sync::Arc;
use tracing::Instrument;

/// One run of a candidate on one example.
#[derive(Debug, Clone)]
pub(crate) struct Rollout {
    /// What the program returned (`None` when it failed).
    pub prediction: Option<Prediction>,
    /// The predictor calls of the run (with traces only).
    pub trace: Vec<TraceEntry>,
    /// The predictor calls whose answer did not parse (with traces only; DSPy's
    /// `FailedPrediction` entries).
    pub failed: Vec<FailedParse>,
    /// The metric's score (`failure_score` for a failed run).
    pub score: f64,
}

/// A copy of `student` with each component's instructions from `texts` (DSPy's
/// `build_program`). Demos are left as they are.
pub(crate) fn build_program<P: Module + Clone>(
    student: &P,
    components: &[String],
    texts: &Texts,
) -> P {
    let mut program = student.clone();
    for (name, params) in program.named_predictors_mut() {
        if let Some(k) = components.iter().position(|c| *c == name) {
            params.set_instructions(&texts[k]);
        }
    }
    program
}

/// What running a batch needs.
pub(crate) struct Runner<'a> {
    pub metric: &'a Arc<dyn FeedbackMetric>,
    pub failure_score: f64,
    pub concurrency: usize,
    pub ctx: &'a JobContext,
}

impl Runner<'_> {
    /// Runs `program` on every example of `batch`, `concurrency` at a time, results in batch
    /// order. With `capture`, each run's predictor calls are recorded and given to the metric
    /// (DSPy's `bootstrap_trace_data`); without, the metric sees no trace (DSPy's `Evaluate`).
    /// `None` when the job was cancelled.
    pub(crate) async fn run<P: Optimizable>(
        &self,
        program: &P,
        batch: &[&Example],
        capture: bool,
    ) -> Option<Vec<Rollout>> {
        let runs: Vec<BoxFuture<'_, Rollout>> = batch
            .iter()
            .map(|&example| self.run_one(program, example, capture))
            .collect();
        let runs = futures_util::stream::iter(runs)
            .buffered(self.concurrency.max(1))
            .collect::<Vec<_>>();
        // One evaluation of a candidate on a batch is one trial of the optimizer.
        let span = crate::optimize::trial_span(self.ctx, batch.len());
        let rollouts = self
            .ctx
            .run_until_cancelled(runs)
            .instrument(span.clone())
            .await?;
        crate::optimize::record_trial_score(&span, rollouts.iter().map(|r| r.score));
        Some(rollouts)
    }

    /// One run of `program` on `example`, scored.
    fn run_one<'b, P: Optimizable>(
        &'b self,
        program: &'b P,
        example: &'b Example,
        capture: bool,
    ) -> BoxFuture<'b, Rollout> {
        Box::pin(async move {
            let trace = Trace::new();
            let scope = Settings::new().trace(trace.clone());
            let prediction = with_settings(scope, program.run_example(example)).await;
            let entries = if capture { trace.take() } else { Vec::new() };
            let failed = if capture {
                trace.take_failed_parses()
            } else {
                Vec::new()
            };
            match prediction {
                Ok(prediction) => {
                    // The metric's own predictor calls are recorded nowhere that matters.
                    let scored = with_settings(
                        Settings::new().trace(Trace::new()),
                        self.metric.score_with_feedback(
                            example,
                            &prediction,
                            capture.then_some(entries.as_slice()),
                            None,
                        ),
                    )
                    .await;
                    match scored {
                        Ok(s) => Rollout {
                            prediction: Some(prediction),
                            trace: entries,
                            failed,
                            score: s.score,
                        },
                        // As in DSPy, an example whose metric raised is a failed example: it
                        // scores failure_score and leaves no trajectory to reflect on.
                        Err(e) => {
                            tracing::warn!(error = %e, "GEPA: the metric failed; the example scores failure_score");
                            Rollout {
                                prediction: None,
                                trace: entries,
                                failed,
                                score: self.failure_score,
                            }
                        }
                    }
                }
                Err(e) => {
                    // A parse failure scores the format-failure score, which DSPy's GEPA sets to
                    // `failure_score` too.
                    tracing::warn!(error = %e, "GEPA: the program failed; the example scores failure_score");
                    Rollout {
                        prediction: None,
                        trace: entries,
                        failed,
                        score: self.failure_score,
                    }
                }
            }
        })
    }
}

/// One record the reflection LM reads: `{"Inputs": …, "Generated Outputs": …, "Feedback": …}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReflectiveExample {
    /// The predictor's inputs.
    #[serde(rename = "Inputs")]
    pub inputs: Map<String, Value>,
    /// What it answered: its outputs by name, or — for a call whose answer did not parse,
    /// reflected on with `add_format_failure_as_feedback` — DSPy's text "Couldn't parse the
    /// output as per the expected output format. The model's raw response was: …".
    #[serde(rename = "Generated Outputs")]
    pub generated_outputs: Value,
    /// The metric's feedback.
    #[serde(rename = "Feedback")]
    pub feedback: String,
}

/// Per component to update (in order), its reflective examples.
pub type ReflectiveDataset = Vec<(String, Vec<ReflectiveExample>)>;

/// DSPy's `make_reflective_dataset`: for each component, one call of its predictor from each
/// trajectory (chosen with the adapter's own generator), with the metric's feedback on it.
/// Trajectories whose run failed are left out — except, with `format_failures`
/// (`add_format_failure_as_feedback`), a call of the component whose answer did not parse,
/// which is taken first, shown as its raw answer and given DSPy's feedback: the structure the
/// answer should have followed (the ChatAdapter prompt of the signature without inputs).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn reflective_dataset<P: Module>(
    program: &P,
    components: &[String],
    to_update: &[usize],
    batch: &[&Example],
    rollouts: &[Rollout],
    metric: &Arc<dyn FeedbackMetric>,
    rng: &mut PyRandom,
    format_failures: bool,
) -> Result<ReflectiveDataset> {
    let predictors = program.named_predictors();
    let mut out = Vec::new();
    for &k in to_update {
        let name = &components[k];
        let Some((_, params)) = predictors.iter().find(|(n, _)| n == name) else {
            continue;
        };
        // DSPy matches trace entries by signature equality, as here.
        let ids: Vec<PredictorId> = predictors
            .iter()
            .filter(|(_, p)| p.signature == params.signature)
            .map(|(_, p)| PredictorId::of(p))
            .collect();
        let mut items = Vec::new();
        for (example, rollout) in batch.iter().zip(rollouts) {
            // DSPy appends the failed call to the trace: it is the first failed instance.
            let failed = format_failures
                .then(|| rollout.failed.iter().find(|f| ids.contains(&f.predictor)))
                .flatten();
            if let Some(failed) = failed {
                items.push(format_failure_example(&params.signature, failed)?);
                continue;
            }
            let instances: Vec<&TraceEntry> = rollout
                .trace
                .iter()
                .filter(|t| ids.contains(&t.predictor))
                .collect();
            if instances.is_empty() {
                continue;
            }
            let Some(prediction) = &rollout.prediction else {
                continue;
            };
            let Some(selected) = rng.choice(&instances).copied() else {
                continue;
            };
            let pred_trace = std::slice::from_ref(selected);
            let fb = with_settings(
                Settings::new().trace(Trace::new()),
                metric.score_with_feedback(
                    example,
                    prediction,
                    Some(&rollout.trace),
                    Some(PredictorFocus {
                        name,
                        trace: pred_trace,
                    }),
                ),
            )
            .await?;
            let feedback = fb
                .feedback
                .unwrap_or_else(|| default_feedback(fb.score, metric.returns_bool()));
            items.push(ReflectiveExample {
                inputs: selected.inputs.as_map().clone(),
                generated_outputs: Value::Object(selected.outputs.as_map().clone()),
                feedback,
            });
        }
        if items.is_empty() {
            tracing::warn!(component = %name, "GEPA: no valid reflective examples found");
            continue;
        }
        out.push((name.clone(), items));
    }
    if out.is_empty() {
        return Err(GepaError::NoReflectiveExamples.into());
    }
    Ok(out)
}

/// DSPy's record of a call whose answer did not parse: the raw answer, and the structure the
/// answer should have followed as feedback.
fn format_failure_example(
    signature: &DynSignature,
    failed: &FailedParse,
) -> Result<ReflectiveExample> {
    use crate::adapter::Adapter as _;
    let structure: String = crate::adapter::ChatAdapter::new()
        .format(signature, &[], &Example::new())?
        .iter()
        .map(|m| format!("{}: {}\n", m.role.as_str(), m.content.text()))
        .collect();
    Ok(ReflectiveExample {
        inputs: failed.inputs.as_map().clone(),
        generated_outputs: Value::String(format!(
            "Couldn't parse the output as per the expected output format. The model's raw response was:\n```\n{}\n```\n\n",
            failed.completion
        )),
        feedback: format!("Your output failed to parse. Follow this structure:\n{structure}"),
    })
}

/// Writes new instructions from the reflective dataset (DSPy's `ProposalFn`, the
/// `instruction_proposer` knob). The default is [`DefaultInstructionProposer`].
///
/// `candidate` holds every component's current text, by name; the answer maps the components
/// it rewrote to their new text (a component it leaves out keeps its text).
pub trait InstructionProposer: Send + Sync {
    /// New instructions for `components_to_update`.
    fn propose<'a>(
        &'a self,
        candidate: &'a [(String, String)],
        reflective_dataset: &'a ReflectiveDataset,
        components_to_update: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>>>;
}

impl<T: InstructionProposer + ?Sized> InstructionProposer for Arc<T> {
    fn propose<'a>(
        &'a self,
        candidate: &'a [(String, String)],
        reflective_dataset: &'a ReflectiveDataset,
        components_to_update: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>>> {
        (**self).propose(candidate, reflective_dataset, components_to_update)
    }
}

/// The instructions of DSPy's `ProposeInstruction` signature.
const PROPOSE_INSTRUCTION: &str = "I provided an assistant with instructions to perform a task for me. You are given those instructions, along with examples of different task inputs provided to the assistant, the assistant's response for each of them, and some feedback on how the assistant's response could be better.\n\nYour task is to write a new instruction for the assistant.\n\nRead the inputs carefully and identify the input format and infer detailed task description about the task I wish to solve with the assistant.\n\nRead all the assistant responses and the corresponding feedback. Identify all niche and domain specific factual information about the task and include it in the instruction, as a lot of it may not be available to the assistant in the future. The assistant may have utilized a generalizable strategy to solve the task, if so, include that in the instruction as well.";

/// DSPy's `ProposeInstruction` signature.
pub(crate) fn propose_instruction_signature() -> DynSignature {
    DynSignature::from_fields(
        Some(PROPOSE_INSTRUCTION),
        [
            FieldSpec::input("current_instruction", TypeSpec::Str)
                .with_desc("The instructions I provided to the assistant."),
            FieldSpec::input(
                "examples_with_feedback",
                TypeSpec::List(Box::new(TypeSpec::Dict(Box::new(TypeSpec::Any)))),
            )
            .with_desc(
                "Task inputs provided to the assistant, the assistant's response for each, and feedback on how the response could be better.",
            ),
            FieldSpec::output("new_instruction", TypeSpec::Str)
                .with_desc("The new instruction for the assistant."),
        ],
    )
    .expect("a fixed, valid signature")
}

/// DSPy's default `InstructionProposer`: `Predict(ProposeInstruction)` through a
/// [`JSONAdapter`](struct@crate::adapter::JSONAdapter), under the reflection LM, once per component;
/// the answer is stripped, and an empty one is an error.
#[derive(Clone)]
pub struct DefaultInstructionProposer {
    lm: Option<Arc<dyn LanguageModel>>,
}

impl std::fmt::Debug for DefaultInstructionProposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefaultInstructionProposer")
            .field("lm", &self.lm.as_ref().map(|lm| lm.model().to_string()))
            .finish()
    }
}

impl DefaultInstructionProposer {
    /// The proposer calling `lm` (the LM in the settings when `None`).
    pub fn new(lm: Option<Arc<dyn LanguageModel>>) -> Self {
        DefaultInstructionProposer { lm }
    }
}

impl InstructionProposer for DefaultInstructionProposer {
    fn propose<'a>(
        &'a self,
        candidate: &'a [(String, String)],
        reflective_dataset: &'a ReflectiveDataset,
        components_to_update: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for name in components_to_update {
                let Some((_, current)) = candidate.iter().find(|(n, _)| n == name) else {
                    continue;
                };
                let Some((_, examples)) = reflective_dataset.iter().find(|(n, _)| n == name) else {
                    continue;
                };
                let examples = serde_json::to_value(examples)
                    .map_err(|e| crate::Error::step("GEPA reflective dataset", e))?;
                let inputs = Example::new()
                    .with("current_instruction", current.as_str())
                    .with("examples_with_feedback", examples);
                let mut settings = Settings::new().adapter(crate::adapter::JSONAdapter::default());
                if let Some(lm) = &self.lm {
                    settings.lm = Some(lm.clone());
                }
                let prediction: Prediction = with_settings(
                    settings,
                    DynPredict::new(propose_instruction_signature()).call(&inputs),
                )
                .await?;
                let draft = match prediction.get("new_instruction") {
                    Some(Value::String(s)) => s.trim().to_string(),
                    Some(other) => other.to_string().trim().to_string(),
                    None => String::new(),
                };
                if draft.is_empty() {
                    return Err(GepaError::EmptyInstruction(name.clone()).into());
                }
                out.push((name.clone(), draft));
            }
            Ok(out)
        })
    }
}
