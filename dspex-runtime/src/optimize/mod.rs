//! Optimizers: compile better demos and instructions into a program (DSPy's teleprompters).
//!
//! - [`Optimizer`] — `compile(student, trainset)` returns the optimized copy of the student;
//!   every optimizer keeps DSPy's name and knobs.
//! - [`BootstrapFewShotWithRandomSearch`] — many bootstrapped candidates, scored on a valset.
//! - [`COPRO`] — instructions proposed by a prompt model and kept by coordinate ascent.
//! - [`KNN`] / [`KNNFewShot`] — the training examples nearest to an input, by embedding, and
//!   demos bootstrapped from them on every call.
//! - [`Job`] / [`JobContext`] — an optimization run as a job: a handle at once, progress,
//!   cancellation that takes effect within about one LM call at any stage and returns the best
//!   program so far (or [`Error::Cancelled`] before any was scored),
//!   and a JSONL log of trials.
//! - [`LabeledFewShot`] — each predictor gets `k` training examples as demos.
//! - [`DemoConfig`] / [`DemoKnobs`] — the demo knobs the bootstrapping optimizers share
//!   (`max_bootstrapped_demos`, `max_labeled_demos`, `max_errors`, `metric_threshold`,
//!   concurrency) as one value each of them embeds, with their builder methods written once.
//! - [`BootstrapFewShot`] — demos from the traces of teacher runs the metric accepts, plus
//!   labeled ones; concurrent runs that still make exactly DSPy's sequential calls and pick its
//!   demos (speculative runs on request, counted in a [`BootstrapReport`]).
//! - [`Ensemble`] — several programs on one input, their outputs reduced to one (DSPy's
//!   `Ensemble` with `reduce_fn`, `size`, and a working `deterministic`).
//! - [`InferRules`] — BootstrapFewShot, then rules induced from the training examples added to
//!   each predictor's instructions; the best of several rule sets on a valset.
//! - [`MIPROv2`] — demo sets, grounded instruction proposals and a TPE search over them.
//! - [`GEPA`] — instructions evolved by reflecting on feedback, kept on a Pareto front of
//!   validation instances (module [`gepa`]: metrics with feedback, proposers, results).
//! - [`SIMBA`] — mini-batch ascent: resampled trajectories of the best programs so far, and
//!   new candidates from the examples whose outcomes vary most (a demo from the best run, or
//!   a rule the prompt model draws from the best and worst runs), with DSPy's seeded choices.
//! - [`write_report`] — a job's log as one self-contained HTML page (scores, budget, GEPA's
//!   Pareto front and lineage, the program before and after, per-example changes).
//! - [`PyRandom`] — CPython's `random.Random`, bit for bit, so seeded choices match DSPy's.

mod bootstrap;
mod config;
mod copro;
mod ensemble;
pub mod gepa;
mod infer_rules;
mod job;
mod knn;
mod labeled;
mod mipro;
mod propose;
mod random_search;
pub(crate) mod report;
mod simba;
mod tpe;

pub use crate::pycompat::{PyRandom, RandomError};
pub use bootstrap::{BootstrapError, BootstrapFewShot, BootstrapReport, Teacher};
pub use config::{DEFAULT_CONCURRENCY, DEFAULT_MAX_ERRORS, DemoConfig, DemoKnobs};
pub use copro::COPRO;
pub use ensemble::{AllOutputs, Ensemble, EnsembleError, EnsembledProgram, Reduce};
pub use gepa::{GEPA, GepaError, GepaResult, ScoreWithFeedback};
pub use infer_rules::InferRules;
pub use job::{Job, JobContext, Progress, TrialEvent};
pub use knn::{KNN, KNNFewShot, KNNFewShotProgram};
pub use labeled::LabeledFewShot;
pub use mipro::{Auto, MIPROv2};
pub use random_search::BootstrapFewShotWithRandomSearch;
pub use report::{LoggedTrial, LoggedUsage, ReportError, RunLog, write_report};
pub use simba::{SIMBA, SimbaCandidate, SimbaError, SimbaMetric, SimbaReport, SimbaStep};

use crate::error::{Error, Result};
use crate::evaluate::{Evaluate, ExampleProgram, Metric};
use crate::example::Example;
use crate::program::Module;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use tracing::Instrument;

/// What every program an optimizer can compile is: runnable on examples, with named predictors
/// to tune, and cloneable (optimizers copy the student for the teacher and for candidates).
pub trait Optimizable: ExampleProgram + Module + Clone + Send + Sync + 'static {}

impl<P: ExampleProgram + Module + Clone + Send + Sync + 'static> Optimizable for P {}

/// An optimizer (DSPy's `Teleprompter`): compiles a student program on a training set into an
/// optimized copy. The student itself is left as it was.
pub trait Optimizer: Send + Sync {
    /// Compiles `student`, reporting to and checking `ctx` (progress, trials, cancellation).
    /// Once `ctx` is cancelled, the work in flight is dropped and the best program scored so
    /// far comes back — or [`Error::Cancelled`] if none was.
    fn compile_in<P: Optimizable>(
        &self,
        student: P,
        trainset: &[Example],
        ctx: &JobContext,
    ) -> impl Future<Output = Result<P>> + Send;

    /// Compiles `student` on `trainset` (DSPy's `compile(student, trainset=...)`).
    fn compile<P: Optimizable>(
        &self,
        student: P,
        trainset: &[Example],
    ) -> impl Future<Output = Result<P>> + Send {
        async move {
            self.compile_in(student, trainset, &JobContext::detached())
                .await
        }
    }

    /// Starts compiling as a [`Job`] and returns its handle at once; with `log`, the student,
    /// each trial and the compiled program are appended to that JSONL file (the format is on
    /// [`Job`]), which [`write_report`] makes a page of. The job runs with the task-scoped
    /// settings in effect here (an enclosing `with_settings`).
    fn spawn<P: Optimizable>(
        self: Arc<Self>,
        student: P,
        trainset: Vec<Example>,
        log: Option<&Path>,
    ) -> Result<Job<P>>
    where
        Self: Sized + 'static,
    {
        Job::spawn(log, move |ctx| async move {
            let mut start = serde_json::Map::new();
            start.insert("optimizer".into(), optimizer_name::<Self>().into());
            start.insert("trainset_size".into(), trainset.len().into());
            start.insert("state".into(), student.dump_state());
            ctx.log_event("start", start);
            let compiled = self.compile_in(student, &trainset, &ctx).await;
            let mut end = serde_json::Map::new();
            match &compiled {
                Ok(program) => {
                    end.insert("state".into(), program.dump_state());
                }
                Err(e) => {
                    end.insert("error".into(), e.to_string().into());
                }
            }
            end.insert("best_score".into(), ctx.progress().best_score.into());
            ctx.log_event("end", end);
            compiled
        })
    }
}

/// An optimizer's type name without its path or generics (`MIPROv2`), as the log names it.
fn optimizer_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let plain = full.split('<').next().unwrap_or(full);
    plain.rsplit("::").next().unwrap_or(plain)
}

/// The score DSPy's `Evaluate` gives `program` on `devset`: the metric's mean as a percentage,
/// rounded as Python rounds to 2 decimals; a failing example scores 0. A cancellation of `ctx`
/// stops the evaluation at once and returns [`Error::Cancelled`] (see [`is_cancellation`]).
/// Quiet: no failure report on stderr for each candidate (each failure is still logged through
/// `tracing`).
pub(crate) async fn score_program<P: ExampleProgram + ?Sized>(
    program: &P,
    devset: &[Example],
    metric: &Arc<dyn Metric>,
    concurrency: usize,
    ctx: &JobContext,
) -> Result<f64> {
    Ok(score_examples(program, devset, metric, concurrency, ctx)
        .await?
        .0)
}

/// The span of one optimizer trial (`dspex.optimize.trial`): one evaluation of a candidate on
/// `examples` examples, with the job's phase and trial count; its `dspex.score` is recorded by
/// the caller (the mean score of the batch) when the trial ends.
pub(crate) fn trial_span(ctx: &JobContext, examples: usize) -> tracing::Span {
    let span = tracing::info_span!(
        "dspex.optimize.trial",
        otel.name = "optimize.trial",
        dspex.optimize.phase = tracing::field::Empty,
        dspex.optimize.trial = tracing::field::Empty,
        dspex.evaluate.examples = examples as i64,
        dspex.score = tracing::field::Empty,
    );
    if !span.is_disabled() {
        let progress = ctx.progress();
        span.record("dspex.optimize.phase", progress.phase.as_str());
        span.record("dspex.optimize.trial", progress.trials as i64);
    }
    span
}

/// Records the mean of `scores` as the trial span's `dspex.score` (nothing for no score).
pub(crate) fn record_trial_score(span: &tracing::Span, scores: impl Iterator<Item = f64>) {
    let (sum, n) = scores.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n > 0 {
        span.record("dspex.score", sum / n as f64);
    }
}

/// [`score_program`] with the score of each example of `devset`, in order (the failure score
/// for one that failed), as the trial log's `example_scores` keeps them.
pub(crate) async fn score_examples<P: ExampleProgram + ?Sized>(
    program: &P,
    devset: &[Example],
    metric: &Arc<dyn Metric>,
    concurrency: usize,
    ctx: &JobContext,
) -> Result<(f64, Vec<f64>)> {
    let span = trial_span(ctx, devset.len());
    let result = Evaluate::new(devset.to_vec(), metric.clone())
        .num_threads(concurrency)
        .cancel_on(ctx.cancel_token())
        .report_failures(false)
        .call(program)
        .instrument(span.clone())
        .await?;
    span.record("dspex.score", result.score);
    if result.cancelled {
        return Err(ctx.cancelled_error());
    }
    let mut scores = vec![0.0; devset.len()];
    for record in &result.records {
        if let Some(slot) = scores.get_mut(record.index) {
            *slot = record.score;
        }
    }
    Ok((result.score, scores))
}

/// Whether `error` is a job's cancellation rather than a failure.
pub(crate) fn is_cancellation(error: &Error) -> bool {
    matches!(error, Error::Cancelled { .. })
}

/// `n` training examples `question: Q{i}` (the input) → `answer: A{i}`, for the unit tests.
#[cfg(test)]
pub(crate) fn qa_trainset(n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| {
            Example::new()
                .with("question", format!("Q{i}"))
                .with("answer", format!("A{i}"))
                .with_inputs(["question"])
        })
        .collect()
}
