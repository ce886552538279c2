//! Evaluation: run a program over a dev set and score it.
//!
//! - [`Evaluate`] — DSPy's `dspy.Evaluate`: a program over a dev set under a concurrency limit,
//!   each prediction scored by a metric; failures recorded with a failure score, `max_errors`
//!   stopping early without losing what was computed. Returns an [`EvaluationResult`]: the
//!   average score (a percentage, rounded as Python rounds) and an [`EvalRecord`] per example,
//!   with DSPy's result table and CSV / JSON exports (plus JSONL).
//! - [`Metric`] — how well a prediction answers an example (`metric_fn`, `metric_with_trace`,
//!   `async_metric`, or an implementation).
//! - Built-in metrics, DSPy's: [`answer_exact_match`] ([`AnswerExactMatch`], with `frac`),
//!   [`answer_passage_match`] ([`AnswerPassageMatch`]), token F1 ([`AnswerF1`]), the functions
//!   under them ([`em`], [`f1`], [`hotpot_f1`], [`em_score`], [`f1_score`],
//!   [`hotpot_f1_score`], [`precision_score`], [`passage_match`]) over
//!   [`normalize_text`](crate::module::normalize_text); and the LM judges [`SemanticF1`] and
//!   [`CompleteAndGrounded`], which are programs.
//! - [`ExampleProgram`] — any typed [`Program`] run on a DSPy-style [`Example`]: the example's
//!   inputs become the program's input struct, its output becomes a [`Prediction`], so metrics,
//!   evaluation and optimizers work on typed and dynamic programs alike.

mod builtin;
mod metric;
pub(crate) mod pyfmt;
mod result;
mod runner;
mod semantic;

pub use builtin::{
    AnswerExactMatch, AnswerF1, AnswerPassageMatch, MetricError, answer_exact_match,
    answer_passage_match, em, em_score, f1, f1_score, hotpot_f1, hotpot_f1_score, passage_match,
    precision_score,
};
pub use metric::{
    AsyncMetricFn, IntoScore, Metric, MetricFn, TraceMetricFn, async_metric, metric_fn,
    metric_with_trace,
};
pub use result::{EvalRecord, EvaluateError, EvaluationResult, ResultTable};
pub use runner::{DEFAULT_NUM_THREADS, Evaluate};
pub use semantic::{CompleteAndGrounded, SemanticF1};

use crate::error::Result;
use crate::example::{Example, Prediction};
use crate::program::Program;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A program run on an [`Example`]: its inputs (`example.inputs()`, so the example must have
/// input keys) deserialize into the program's input, and its output serializes into a
/// [`Prediction`]. Implemented for every [`Program`] whose input and output are serde types —
/// every typed module, `DynPredict` (`Example` → `Prediction`) and compositions of them.
pub trait ExampleProgram: Send + Sync {
    /// Runs on `example`'s inputs.
    fn run_example<'a>(&'a self, example: &'a Example) -> BoxFuture<'a, Result<Prediction>>;
}

impl<P> ExampleProgram for P
where
    P: Program,
    P::Input: DeserializeOwned,
    P::Output: Serialize,
{
    fn run_example<'a>(&'a self, example: &'a Example) -> BoxFuture<'a, Result<Prediction>> {
        Box::pin(async move {
            let input: P::Input = example.inputs()?.to_typed()?;
            let output = self.forward(input).await?;
            Ok(Prediction::from_typed(&output)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::ScriptedLM;
    use crate::module::{CallConfig, DynPredict};
    use crate::program::program_fn;
    use crate::signature::DynSignature;
    use serde::Deserialize;
    use serde_json::json;

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn typed_and_dynamic_programs_run_on_examples() {
        #[derive(Deserialize)]
        struct In {
            question: String,
        }
        #[derive(Serialize)]
        struct Out {
            answer: String,
        }
        let typed = program_fn(|i: In| async move {
            Ok(Out {
                answer: i.question.to_uppercase(),
            })
        });
        let ex = Example::new()
            .with("question", "hi")
            .with("answer", "HI")
            .with_inputs(["question"]);
        let pred = block(typed.run_example(&ex)).unwrap();
        assert_eq!(pred.get_str("answer"), Some("HI"));

        let lm = ScriptedLM::from_fields([json!({"answer": "yes"})]);
        let dynamic = DynPredict::new(DynSignature::parse("question -> answer").unwrap())
            .with_config(CallConfig::new().lm(lm.clone()));
        let pred = block(dynamic.run_example(&ex)).unwrap();
        assert_eq!(pred.get_str("answer"), Some("yes"));
        // Only the inputs reach the program.
        assert!(!lm.messages()[0][1].content.contains("HI"));

        let no_inputs = Example::new().with("question", "hi");
        let err = block(typed.run_example(&no_inputs)).unwrap_err();
        assert!(err.to_string().contains("with_inputs"), "{err}");
    }
}
