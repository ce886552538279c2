//! [`Evaluate`]: a program over a dev set, scored by a metric, under a concurrency limit.

use super::ExampleProgram;
use super::metric::Metric;
use super::pyfmt::{py_float, py_round};
use super::result::{EvalRecord, EvaluateError, EvaluationResult};
use crate::example::{Example, Prediction};
use futures_util::{FutureExt, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::sync::Semaphore;

/// How many examples run at once unless [`Evaluate::num_threads`] says otherwise.
pub const DEFAULT_NUM_THREADS: usize = 16;

type StopFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// DSPy's `dspy.Evaluate`: runs a program on every example of a dev set, scores each prediction
/// with a metric, and returns the average score (a percentage) with a record per example.
///
/// - At most [`num_threads`](Self::num_threads) examples run at once (default 16; thousands are
///   fine — they are futures on the calling task, not threads, so the settings in scope apply to
///   all of them). [`shared_limit`](Self::shared_limit) adds a semaphore shared with other
///   evaluations, e.g. an optimizer's candidates.
/// - Each example runs the program, then the metric, as one guarded step: an error or a panic in
///   either is recorded with the [`failure_score`](Self::failure_score) (default 0) and counted.
/// - With [`max_errors`](Self::max_errors), the N-th failure stops the evaluation: no new example
///   starts, the running ones finish, and the result — marked
///   [`stopped_early`](EvaluationResult::stopped_early) — keeps every record computed. (DSPy
///   raises instead, losing them.) Without it, every example runs.
/// - [`display_progress`](Self::display_progress) draws a progress bar on stderr when it is a
///   terminal; [`display_table`](Self::display_table) prints the first rows to stdout.
/// - The "Average Metric" line is logged through `tracing` at INFO, as DSPy logs it.
///
/// ```
/// use dspex_runtime::evaluate::{Evaluate, answer_exact_match};
/// use dspex_runtime::lm::ScriptedLM;
/// use dspex_runtime::module::{CallConfig, DynPredict};
/// use dspex_runtime::{DynSignature, Example};
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let devset = vec![
///     Example::new().with("question", "2 + 2?").with("answer", "4").with_inputs(["question"]),
///     Example::new().with("question", "Capital of France?").with("answer", "Paris").with_inputs(["question"]),
/// ];
/// // An offline LM answering "4" every time.
/// let lm = ScriptedLM::from_fields([json!({"answer": "4"})]).repeat_last();
/// let program = DynPredict::new(DynSignature::parse("question -> answer")?)
///     .with_config(CallConfig::new().lm(lm));
///
/// let result = Evaluate::new(devset, answer_exact_match()).num_threads(4).call(&program).await?;
/// assert_eq!(result.score, 50.0);
/// assert_eq!(result.records[1].prediction.as_ref().unwrap().get_str("answer"), Some("4"));
/// assert_eq!(result.to_string(), "EvaluationResult(score=50.0, results=<list of 2 results>)");
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Evaluate {
    devset: Arc<[Example]>,
    metric: Arc<dyn Metric>,
    num_threads: usize,
    shared: Option<Arc<Semaphore>>,
    failure_score: f64,
    max_errors: Option<usize>,
    display_progress: bool,
    display_table: Option<usize>,
    stop: Option<StopFn>,
}

impl std::fmt::Debug for Evaluate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluate")
            .field("devset", &self.devset.len())
            .field("metric", &self.metric.name())
            .field("num_threads", &self.num_threads)
            .field("shared_limit", &self.shared.is_some())
            .field("failure_score", &self.failure_score)
            .field("max_errors", &self.max_errors)
            .field("display_progress", &self.display_progress)
            .field("display_table", &self.display_table)
            .finish_non_exhaustive()
    }
}

/// How one example ended.
struct Outcome {
    prediction: Option<Prediction>,
    score: Result<f64, String>,
}

impl Evaluate {
    /// Evaluation of programs on `devset` with `metric` (a closure metric, a built-in one, an
    /// LM judge, or an `Arc<dyn Metric>`). Every example needs input keys
    /// ([`Example::with_inputs`]).
    pub fn new(devset: impl Into<Vec<Example>>, metric: impl Metric + 'static) -> Self {
        Evaluate {
            devset: devset.into().into(),
            metric: Arc::new(metric),
            num_threads: DEFAULT_NUM_THREADS,
            shared: None,
            failure_score: 0.0,
            max_errors: None,
            display_progress: false,
            display_table: None,
            stop: None,
        }
    }

    /// At most `n` examples in flight at once (at least 1; default 16). DSPy's name.
    #[must_use]
    pub fn num_threads(mut self, n: usize) -> Self {
        self.num_threads = n.max(1);
        self
    }

    /// Also takes a permit of `limit` for each running example, so that several evaluations
    /// (an optimizer's candidates, evaluated concurrently) share one limit.
    #[must_use]
    pub fn shared_limit(mut self, limit: Arc<Semaphore>) -> Self {
        self.shared = Some(limit);
        self
    }

    /// The score of an example whose program or metric failed (default 0). It counts in the
    /// average like any other score.
    #[must_use]
    pub fn failure_score(mut self, score: f64) -> Self {
        self.failure_score = score;
        self
    }

    /// Stop at the `n`-th failure (DSPy's `max_errors`): no new example starts, the running ones
    /// finish, and the result is marked [`stopped_early`](EvaluationResult::stopped_early).
    /// Without it (the default) every example runs whatever fails.
    #[must_use]
    pub fn max_errors(mut self, n: usize) -> Self {
        self.max_errors = Some(n);
        self
    }

    /// Draws a progress bar (with DSPy's running "Average Metric") on stderr, if it is a
    /// terminal.
    #[must_use]
    pub fn display_progress(mut self, show: bool) -> Self {
        self.display_progress = show;
        self
    }

    /// Prints the first `rows` rows of the result to stdout after evaluating (DSPy's
    /// `display_table`; `usize::MAX` prints them all, `0` nothing). See
    /// [`EvaluationResult::table`].
    #[must_use]
    pub fn display_table(mut self, rows: usize) -> Self {
        self.display_table = (rows > 0).then_some(rows);
        self
    }

    /// Checked before each example starts: once it returns `true`, no new example starts and
    /// the result is marked [`stopped_early`](EvaluationResult::stopped_early) (e.g. an
    /// optimization job's cancellation).
    #[must_use]
    pub fn stop_when(mut self, stop: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.stop = Some(Arc::new(stop));
        self
    }

    /// The dev set.
    pub fn devset(&self) -> &[Example] {
        &self.devset
    }

    /// The metric.
    pub fn metric(&self) -> &Arc<dyn Metric> {
        &self.metric
    }

    /// Evaluates `program` on the dev set (DSPy's `evaluate(program)`).
    ///
    /// # Errors
    ///
    /// [`EvaluateError::EmptyDevset`], or [`EvaluateError::NoInputs`] for an example without
    /// input keys. Failures of the program or the metric are recorded, not returned.
    pub async fn call<P: ExampleProgram + ?Sized>(
        &self,
        program: &P,
    ) -> Result<EvaluationResult, EvaluateError> {
        self.call_on(program, &self.devset).await
    }

    /// Evaluates `program` on `devset` instead of the configured one, with the same metric and
    /// settings (DSPy's `evaluate(program, devset=...)`; a minibatch, say).
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub async fn call_on<P: ExampleProgram + ?Sized>(
        &self,
        program: &P,
        devset: &[Example],
    ) -> Result<EvaluationResult, EvaluateError> {
        if devset.is_empty() {
            return Err(EvaluateError::EmptyDevset);
        }
        if let Some(index) = devset.iter().position(|e| e.input_keys().is_none()) {
            return Err(EvaluateError::NoInputs { index });
        }
        let started = Instant::now();
        let n = devset.len();
        let metric: &dyn Metric = &*self.metric;
        let progress = self.progress_bar(n);
        let stop = AtomicBool::new(false);
        let should_stop =
            || stop.load(Ordering::Relaxed) || self.stop.as_ref().is_some_and(|f| f());

        let mut slots: Vec<Option<(Option<Prediction>, Result<f64, String>)>> =
            (0..n).map(|_| None).collect();
        let mut n_errors = 0usize;
        let (mut progress_sum, mut progress_count) = (0.0f64, 0usize);
        {
            let shared = self.shared.as_deref();
            let should_stop = &should_stop;
            let mut outcomes = futures_util::stream::iter(devset.iter().enumerate())
                .take_while(|_| std::future::ready(!should_stop()))
                .map(|(index, example)| async move {
                    // Held until the example is scored.
                    let _permit = match shared {
                        Some(limit) => match limit.acquire().await {
                            Ok(permit) => Some(permit),
                            Err(_) => {
                                tracing::warn!("the shared evaluation limit was closed; stopping");
                                return (index, None);
                            }
                        },
                        None => None,
                    };
                    if should_stop() {
                        return (index, None);
                    }
                    (index, Some(run_one(program, metric, example).await))
                })
                .buffer_unordered(self.num_threads);

            while let Some((index, outcome)) = outcomes.next().await {
                let Some(outcome) = outcome else {
                    // Not run: the evaluation is stopping.
                    stop.store(true, Ordering::Relaxed);
                    continue;
                };
                match &outcome.score {
                    Ok(score) => {
                        progress_sum += score;
                        progress_count += 1;
                    }
                    Err(error) => {
                        n_errors += 1;
                        tracing::error!(example = index, "Error for example {index}: {error}");
                        if self.max_errors.is_some_and(|max| n_errors >= max) {
                            if !stop.swap(true, Ordering::Relaxed) {
                                tracing::warn!(
                                    errors = n_errors,
                                    "max_errors reached: stopping the evaluation; the examples \
                                     already running finish"
                                );
                            }
                        }
                    }
                }
                if let Some(bar) = &progress {
                    bar.set_message(progress_message(progress_sum, progress_count));
                    bar.inc(1);
                }
                slots[index] = Some((outcome.prediction, outcome.score));
            }
        }
        if let Some(bar) = &progress {
            bar.finish();
        }

        let failure_score = self.failure_score;
        let records: Vec<EvalRecord> = devset
            .iter()
            .zip(slots)
            .enumerate()
            .filter_map(|(index, (example, slot))| {
                let (prediction, score) = slot?;
                let (score, error) = match score {
                    Ok(s) => (s, None),
                    Err(e) => (failure_score, Some(e)),
                };
                Some(EvalRecord {
                    index,
                    example: example.clone(),
                    prediction,
                    score,
                    error,
                })
            })
            .collect();
        let evaluated = records.len();
        // Python's `sum`, in dev-set order.
        let total: f64 = records.iter().fold(0.0, |acc, r| acc + r.score);
        let score = if evaluated == 0 {
            0.0
        } else {
            py_round(100.0 * total / evaluated as f64, 2)
        };
        if evaluated > 0 {
            // DSPy's sum stays an int while every score is a bool (no failure score added).
            let shown = if metric.returns_bool() && n_errors == 0 {
                format!("{}", total as u64)
            } else {
                py_float(total)
            };
            tracing::info!(
                "Average Metric: {shown} / {evaluated} ({}%)",
                py_float(py_round(100.0 * total / evaluated as f64, 1))
            );
        }
        let result = EvaluationResult {
            score,
            records,
            n_errors,
            stopped_early: evaluated < n,
            elapsed: started.elapsed(),
            devset_len: n,
            metric_name: metric.name().to_string(),
            metric_bool: metric.returns_bool(),
        };
        if let Some(rows) = self.display_table {
            print!("{}", result.table(rows));
        }
        Ok(result)
    }

    fn progress_bar(&self, n: usize) -> Option<ProgressBar> {
        if !self.display_progress || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(Some(n as u64), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg}: {percent:>3}%|{wide_bar}| {pos}/{len} [{elapsed}<{eta}]",
        ) {
            bar.set_style(style);
        }
        bar.set_message(progress_message(0.0, 0));
        Some(bar)
    }
}

/// DSPy's progress description: `Average Metric: {sum:.2f} / {count} ({pct}%)` over the
/// examples scored so far without error.
fn progress_message(sum: f64, count: usize) -> String {
    let pct = if count == 0 {
        0.0
    } else {
        py_round(100.0 * sum / count as f64, 1)
    };
    format!("Average Metric: {sum:.2} / {count} ({}%)", py_float(pct))
}

/// Runs the program and the metric on one example; errors and panics become the outcome.
async fn run_one<P: ExampleProgram + ?Sized>(
    program: &P,
    metric: &dyn Metric,
    example: &Example,
) -> Outcome {
    let prediction = match AssertUnwindSafe(program.run_example(example))
        .catch_unwind()
        .await
    {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            return Outcome {
                prediction: None,
                score: Err(e.to_string()),
            };
        }
        Err(panic) => {
            return Outcome {
                prediction: None,
                score: Err(format!("the program panicked: {}", panic_message(&*panic))),
            };
        }
    };
    let score = match AssertUnwindSafe(metric.score(example, &prediction, None))
        .catch_unwind()
        .await
    {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("the metric failed: {e}")),
        Err(panic) => Err(format!("the metric panicked: {}", panic_message(&*panic))),
    };
    Outcome {
        prediction: Some(prediction),
        score,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}
