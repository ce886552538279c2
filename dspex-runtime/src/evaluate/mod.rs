//! Evaluation: run a program over a dev set and score it.
//!
//! - [`Evaluate`] — DSPy's `dspy.Evaluate`: a program over a dev set under a concurrency limit,
//!   each prediction scored by a metric; failures recorded with a failure score, logged through
//!   `tracing` and reported on stderr at the end (how many, the first few errors), `max_errors`
//!   stopping early without losing what was computed. Returns an [`EvaluationResult`]: the
//!   average score (a percentage, rounded as Python rounds) and an [`EvalRecord`] per example
//!   (a failure keeps its typed cause, an [`EvalFailure`]), with DSPy's result table and CSV /
//!   JSON exports (plus JSONL).
//! - [`Evaluate::call_stream`] — the same over a stream of examples ([`jsonl_examples`] reads
//!   a JSONL file) in bounded memory, each record appended to a results file as it finishes
//!   ([`ResultsFile`]); a killed run restarted with [`ResultsFile::resume`] skips what was
//!   recorded and ends with the result of an uninterrupted run ([`StreamedEvaluation`]).
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
mod result;
pub(crate) mod results_file;
mod runner;
mod semantic;
mod stream;

pub use builtin::{
    AnswerExactMatch, AnswerF1, AnswerPassageMatch, MetricError, answer_exact_match,
    answer_passage_match, em, em_score, f1, f1_score, hotpot_f1, hotpot_f1_score, passage_match,
    precision_score,
};
pub use metric::{
    AsyncMetricFn, IntoScore, Metric, MetricFn, TraceMetricFn, async_metric, metric_fn,
    metric_with_trace,
};
pub use result::{EvalFailure, EvalRecord, EvaluateError, EvaluationResult, ResultTable};
pub use runner::{DEFAULT_NUM_THREADS, Evaluate};
pub use semantic::{CompleteAndGrounded, SemanticF1};
pub use stream::{ExampleItem, ResultsFile, StreamedEvaluation, jsonl_examples};

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

    /// Regression (issue 13, evaluation under faults): a failed example's record kept only the
    /// error's text, so a caller could not tell an LM that gave up after retries from a parse
    /// error or a panic. The record now carries the typed cause.
    #[test]
    fn failed_records_carry_their_typed_cause() {
        use crate::error::Error;
        use crate::evaluate::{EvalFailure, Evaluate, metric_fn};
        use crate::lm::LmError;
        use crate::program::program_fn;
        use std::time::Duration;

        #[derive(Deserialize)]
        struct In {
            x: u64,
        }
        #[derive(Serialize)]
        struct Out {
            y: u64,
        }
        let program = program_fn(|i: In| async move {
            match i.x {
                0 => Err(Error::Lm(LmError::GaveUp {
                    model: "m".into(),
                    attempts: 4,
                    elapsed: Duration::from_millis(1),
                    last: Box::new(LmError::from_provider("m", "e", 503, None, "", None)),
                })),
                1 => panic!("one panics"),
                x => Ok(Out { y: x }),
            }
        });
        let devset: Vec<Example> = (0..4u64)
            .map(|x| Example::new().with("x", x).with_inputs(["x"]))
            .collect();
        let metric = metric_fn("m", |_: &Example, p: &Prediction| -> Result<bool> {
            match p.get("y").and_then(|v| v.as_u64()) {
                Some(3) => Err(Error::step("judging", "three cannot be judged")),
                _ => Ok(true),
            }
        });
        let result = block(Evaluate::new(devset, metric).call(&program)).unwrap();
        let failures: Vec<Option<&EvalFailure>> =
            result.records.iter().map(|r| r.failure.as_ref()).collect();
        let lm = failures[0]
            .and_then(EvalFailure::lm_error)
            .expect("an LM error");
        assert!(
            matches!(lm.root(), LmError::Http { status: 503, .. }),
            "{lm:?}"
        );
        assert!(matches!(failures[1], Some(EvalFailure::ProgramPanicked(m)) if m == "one panics"));
        assert_eq!(failures[2], None);
        assert!(failures[3].is_some_and(EvalFailure::is_metric));
        assert!(matches!(
            failures[3].and_then(EvalFailure::error),
            Some(Error::Step { context, .. }) if context == "judging"
        ));
        // The text is the failure's Display, as before.
        for record in &result.records {
            assert_eq!(
                record.error,
                record.failure.as_ref().map(ToString::to_string)
            );
        }
        assert_eq!(result.n_errors, 3);
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
        assert!(!lm.messages()[0][1].content.text().contains("HI"));

        let no_inputs = Example::new().with("question", "hi");
        let err = block(typed.run_example(&no_inputs)).unwrap_err();
        assert!(err.to_string().contains("with_inputs"), "{err}");
    }
}
