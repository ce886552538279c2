//! [`InferRules`] (DSPy's `dspy.teleprompt.InferRules`): BootstrapFewShot, then natural-language
//! rules induced from the training examples appended to each predictor's instructions; the
//! candidate program that scores best on the validation set wins.

use super::{BootstrapFewShot, JobContext, Optimizable, Optimizer, TrialEvent, score_examples};
use crate::error::{Error, Result};
use crate::evaluate::Metric;
use crate::example::Example;
use crate::lm::LmErrorKind;
use crate::module::DynPredict;
use crate::pycompat::PyRandom;
use crate::pycompat::py::{from_json, py_str};
use crate::pycompat::text::py_strip;
use crate::settings::{CallConfig, Settings, with_settings};
use crate::signature::{DynSignature, FieldSpec, TypeSpec};
use serde_json::json;
use std::sync::Arc;

/// DSPy's `CustomRulesInduction` under `ChainOfThought`: `examples_text -> reasoning,
/// natural_language_rules`.
fn rules_induction(num_rules: usize) -> DynSignature {
    DynSignature::from_fields(
        Some(&format!(
            "Given a set of examples, extract a list of {num_rules} concise and non-redundant natural language rules that provide clear guidance for performing the task. All rules should be actionable for a well-specified scope of examples of this general kind of task."
        )),
        [
            FieldSpec::input("examples_text", TypeSpec::Str).with_desc("Text containing examples"),
            FieldSpec::output("reasoning", TypeSpec::Str),
            FieldSpec::output("natural_language_rules", TypeSpec::Str)
                .with_desc("Induced natural language rules"),
        ],
    )
    .expect("a fixed, valid signature")
}

/// DSPy's `InferRules`: a [`BootstrapFewShot`] compile on the training half, then
/// `num_candidates` candidates. For each candidate, every predictor gets rules a
/// chain of thought induces from the training examples (its input and output fields, in the
/// examples' key order, written `key: value`), appended to its original instructions as
/// "Please adhere to the following rules when making your prediction:\n{rules}"; the candidate
/// is scored on the validation set, and the first best-scoring one is returned.
///
/// As DSPy:
/// - without a [`valset`](Self::valset), the first half of the training set (rounded down)
///   trains and the rest validates;
/// - each induction runs under the [`teacher_settings`](Self::teacher_settings), at
///   temperature 1.0, with a fresh `rollout_id` from `random.Random(0)`
///   (`randint(0, 10**9)`), so each candidate's rules are a new sample;
/// - when the prompt does not fit the model's context window, the last example is dropped and
///   the induction retried, down to one example.
///
/// Differences: the random sequence restarts at every compile (DSPy's lives in the optimizer
/// object, so a second compile with the same object continues it); an error other than a
/// context-window overflow fails the compile with that error (DSPy's `assert` hides it).
///
/// ```
/// use dspex_runtime::optimize::InferRules;
/// use dspex_runtime::evaluate::metric_fn;
/// # use dspex_runtime::{Example, Prediction};
///
/// let optimizer = InferRules::new(metric_fn("exact", |ex: &Example, pred: &Prediction| {
///     ex.get_str("answer") == pred.get_str("answer")
/// }))
/// .num_candidates(3)
/// .num_rules(5);
/// # let _ = optimizer;
/// ```
#[derive(Clone)]
pub struct InferRules {
    metric: Arc<dyn Metric>,
    bootstrap: BootstrapFewShot,
    teacher_settings: Settings,
    num_candidates: usize,
    num_rules: usize,
    concurrency: usize,
    valset: Option<Vec<Example>>,
}

impl std::fmt::Debug for InferRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferRules")
            .field("metric", &self.metric.name())
            .field("num_candidates", &self.num_candidates)
            .field("num_rules", &self.num_rules)
            .field("concurrency", &self.concurrency)
            .field("valset", &self.valset.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

impl InferRules {
    /// DSPy's defaults: 10 candidates of 10 rules each, [`BootstrapFewShot`]'s defaults for the
    /// demos, evaluations 16 at a time.
    pub fn new(metric: impl Metric + 'static) -> Self {
        InferRules {
            metric: Arc::new(metric),
            bootstrap: BootstrapFewShot::new(),
            teacher_settings: Settings::new(),
            num_candidates: 10,
            num_rules: 10,
            concurrency: super::DEFAULT_CONCURRENCY,
            valset: None,
        }
    }

    /// How many rule sets are induced and scored (at least 1).
    #[must_use]
    pub fn num_candidates(mut self, n: usize) -> Self {
        self.num_candidates = n.max(1);
        self
    }

    /// How many rules the induction asks for.
    #[must_use]
    pub fn num_rules(mut self, n: usize) -> Self {
        self.num_rules = n;
        self
    }

    /// DSPy's `num_threads`: validation examples evaluated at once.
    #[must_use]
    pub fn num_threads(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The BootstrapFewShot compile that runs first, with its demo knobs
    /// (`max_bootstrapped_demos`, `max_labeled_demos`, `max_rounds`, …). Its metric and teacher
    /// settings are replaced by this optimizer's.
    #[must_use]
    pub fn bootstrap(mut self, bootstrap: BootstrapFewShot) -> Self {
        self.bootstrap = bootstrap;
        self
    }

    /// DSPy's `teacher_settings`: what the teacher runs and the rule inductions run under
    /// (e.g. a stronger LM).
    #[must_use]
    pub fn teacher_settings(mut self, settings: Settings) -> Self {
        self.teacher_settings = settings;
        self
    }

    /// The validation set (DSPy's `compile(..., valset=...)`); without it, the second half of
    /// the training set.
    #[must_use]
    pub fn valset(mut self, valset: Vec<Example>) -> Self {
        self.valset = Some(valset);
        self
    }

    /// One induction: rules for `fields` from `demos`, dropping the last example while the
    /// prompt overflows the context window.
    async fn induce(
        &self,
        fields: (&[String], &[String]),
        mut demos: &[&Example],
        rng: &mut PyRandom,
    ) -> Result<String> {
        let signature = rules_induction(self.num_rules);
        loop {
            let text = format_examples(demos, fields);
            let rollout = rng
                .randint(0, 1_000_000_000)
                .map_err(|e| Error::step("InferRules", e))?;
            let mut config = CallConfig::new().temperature(1.0);
            config.rollout_id = u64::try_from(rollout).ok();
            let predictor = DynPredict::new(signature.clone()).with_config(config);
            let inputs = Example::new().with("examples_text", text);
            match with_settings(self.teacher_settings.clone(), predictor.call(&inputs)).await {
                Ok(prediction) => {
                    let rules = prediction
                        .get("natural_language_rules")
                        .map(|v| py_str(&from_json(v)))
                        .unwrap_or_default();
                    return Ok(py_strip(&rules).to_string());
                }
                Err(Error::Lm(e)) if e.kind() == LmErrorKind::ContextWindowExceeded => {
                    if demos.len() > 1 {
                        demos = &demos[..demos.len() - 1];
                    } else {
                        return Err(Error::step(
                            "InferRules",
                            format!(
                                "Failed to generate natural language rules since a single example couldn't fit in the model's context window: {e}"
                            ),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// DSPy's `format_examples`: per example, its input fields then its output fields as
/// `key: value` lines (Python's `str()` of the value), in the example's key order.
fn format_examples(demos: &[&Example], (inputs, outputs): (&[String], &[String])) -> String {
    let mut text = String::new();
    let lines = |demo: &Example, names: &[String]| -> String {
        demo.iter()
            .filter(|(k, _)| names.iter().any(|n| n == k))
            .map(|(k, v)| format!("{k}: {}", py_str(&from_json(v))))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for demo in demos {
        text.push_str(&format!(
            "Input Fields:\n{}\n\n=========\nOutput Fields:\n{}\n\n",
            lines(demo, inputs),
            lines(demo, outputs)
        ));
    }
    text
}

impl Optimizer for InferRules {
    async fn compile_in<P: Optimizable>(
        &self,
        student: P,
        trainset: &[Example],
        ctx: &JobContext,
    ) -> Result<P> {
        let (train, val) = match &self.valset {
            Some(valset) => (trainset, valset.as_slice()),
            None => trainset.split_at(trainset.len() / 2),
        };
        if val.is_empty() {
            return Err(Error::step(
                "InferRules",
                "the validation set is empty: give a valset, or a training set of at least 2 examples",
            ));
        }
        ctx.phase("bootstrapping demos", None);
        let original = self
            .bootstrap
            .clone()
            .metric_arc(self.metric.clone())
            .teacher_settings(self.teacher_settings.clone())
            .compile_in(student, train, ctx)
            .await?;
        let predictors: Vec<(Vec<String>, Vec<String>, String)> = original
            .named_predictors()
            .into_iter()
            .map(|(_, p)| {
                let names = |fields: &[FieldSpec]| -> Vec<String> {
                    fields.iter().map(|f| f.name().to_string()).collect()
                };
                (
                    names(p.signature.inputs()),
                    names(p.signature.outputs()),
                    p.instructions().to_string(),
                )
            })
            .collect();
        let demos: Vec<&Example> = train.iter().collect();
        let mut rng = PyRandom::new(0);
        let mut best: Option<(f64, P)> = None;
        ctx.phase("inducing rules", Some(self.num_candidates));
        for candidate in 0..self.num_candidates {
            if ctx.is_cancelled() {
                break;
            }
            let mut program = original.clone();
            let mut rules_of = Vec::with_capacity(predictors.len());
            for (inputs, outputs, _) in &predictors {
                let induced = ctx
                    .run_until_cancelled(self.induce((inputs, outputs), &demos, &mut rng))
                    .await;
                match induced {
                    Some(rules) => rules_of.push(rules?),
                    None => break,
                }
            }
            if rules_of.len() < predictors.len() {
                break;
            }
            for ((_, params), ((_, _, instructions), rules)) in program
                .named_predictors_mut()
                .into_iter()
                .zip(predictors.iter().zip(&rules_of))
            {
                params.set_instructions(format!(
                    "{instructions}\n\nPlease adhere to the following rules when making your prediction:\n{rules}"
                ));
            }
            let (score, example_scores) =
                match score_examples(&program, val, &self.metric, self.concurrency, ctx).await {
                    Err(e) if super::is_cancellation(&e) => break,
                    scored => scored?,
                };
            ctx.trial_with_example_scores(
                TrialEvent {
                    trial: candidate,
                    score,
                    minibatch: false,
                    candidate: json!({"candidate": candidate, "rules": rules_of})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                },
                &example_scores,
            );
            tracing::info!(
                candidate = candidate + 1,
                score,
                "InferRules evaluated a candidate"
            );
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((score, program));
            }
        }
        match best {
            Some((_, program)) => Ok(program),
            None => Err(ctx.cancelled_error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_are_written_as_dspy_writes_them() {
        let a = Example::new()
            .with("question", "Q1")
            .with("extra", "not a field")
            .with("answer", json!(["x", 2]))
            .with_inputs(["question"]);
        let b = Example::new().with("answer", "A2").with("question", "Q2");
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let text = format_examples(&[&a, &b], (&names(&["question"]), &names(&["answer"])));
        assert_eq!(
            text,
            "Input Fields:\nquestion: Q1\n\n=========\nOutput Fields:\nanswer: ['x', 2]\n\n\
             Input Fields:\nquestion: Q2\n\n=========\nOutput Fields:\nanswer: A2\n\n"
        );
    }

    #[test]
    fn the_induction_signature_is_dspys() {
        let sig = rules_induction(3);
        assert!(sig.instructions().starts_with(
            "Given a set of examples, extract a list of 3 concise and non-redundant natural language rules"
        ));
        let names: Vec<&str> = sig.fields().map(|f| f.name()).collect();
        assert_eq!(
            names,
            ["examples_text", "reasoning", "natural_language_rules"]
        );
    }
}
