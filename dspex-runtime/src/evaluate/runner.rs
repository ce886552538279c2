//! [`Evaluate`]: a program over a dev set, scored by a metric, under a concurrency limit.

use super::ExampleProgram;
use super::metric::Metric;
use super::result::{EvalFailure, EvalRecord, EvaluateError, EvaluationResult};
use crate::callback::{Callbacks, ErrorKind, EventError, EventKind, Observed, scope_current};
use crate::cancel::CancelToken;
use crate::example::{Example, Prediction};
use crate::pycompat::pyfmt::{py_float, py_round};
use futures_util::{FutureExt, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// How many examples run at once unless [`Evaluate::num_threads`] says otherwise.
pub const DEFAULT_NUM_THREADS: usize = 16;

/// How many failures the report [`Evaluate`] writes to stderr lists (see
/// [`Evaluate::report_failures`]).
pub(super) const REPORTED_FAILURES: usize = 5;

type StopFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// DSPy's `dspy.Evaluate`: runs a program on every example of a dev set, scores each prediction
/// with a metric, and returns the average score (a percentage) with a record per example.
///
/// - At most [`num_threads`](Self::num_threads) examples run at once (default 16; thousands are
///   fine — they are futures on the calling task, not threads, so the settings in scope apply to
///   all of them). [`shared_limit`](Self::shared_limit) adds a semaphore shared with other
///   evaluations, e.g. an optimizer's candidates.
/// - Each example runs the program, then the metric, as one guarded step: an error or a panic in
///   either is recorded with the [`failure_score`](Self::failure_score) (default 0) and counted;
///   failures are reported, not raised (see [Failures](#failures) below).
/// - With [`max_errors`](Self::max_errors), the N-th failure stops the evaluation: no new example
///   starts, the running ones finish, and the result — marked
///   [`stopped_early`](EvaluationResult::stopped_early) — keeps every record computed. (DSPy
///   raises instead, losing them.) Without it, every example runs.
/// - With [`cancel_on`](Self::cancel_on), cancelling the token stops the evaluation at once: the
///   examples in flight are dropped (their LM calls with them), and the result — marked
///   [`cancelled`](EvaluationResult::cancelled) — keeps the records finished before.
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
///
/// # Failures
///
/// An example whose program or metric fails — an LM error after its retries, a reply the
/// adapter cannot parse, a panic — scores the failure score, so failures lower the score
/// without stopping the evaluation. They are never silent:
///
/// - At the end of an evaluation with failures, a short report goes to stderr: how many examples
///   failed out of how many, and the first five errors with their example's index, one line
///   each (long errors cut; see [`EvaluationResult::failure_report`]):
///
///   ```text
///   Evaluate: 3 of 10 examples failed, each scored 0.0:
///     example 1: ChatAdapter could not parse the completion (field `answer`): expected output fields [answer], found [] (missing: answer); completion: "Sorry, I cannot answer in that format.\nHere is… [230 more characters]
///     example 4: [openai/gpt-4o-mini] gave up after 4 attempt(s) in 7.5s: [openai/gpt-4o-mini] https://api.openai.com/v1: HTTP 503 (LMServerError): …
///     example 7: the metric failed: …
///     (every failure: `EvaluationResult::errors()`; each as it happens: a `tracing` subscriber; this report off: `Evaluate::report_failures(false)`)
///   ```
///
///   [`report_failures(false)`](Self::report_failures) turns it off; the optimizers'
///   evaluations of their candidates run with it off.
/// - Each failure is logged through `tracing` at ERROR as it happens, with DSPy's text
///   (`Error for example 4: …`), inside an `evaluate` span.
/// - The result holds them all: [`n_errors`](EvaluationResult::n_errors), and the failed
///   [`records`](EvaluationResult::records) through [`errors`](EvaluationResult::errors), each
///   with its error as text and typed ([`EvalRecord::failure`]).
///
/// ```
/// use dspex_runtime::evaluate::{EvalFailure, Evaluate, metric_fn};
/// use dspex_runtime::{Error, Example, Prediction, program_fn};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize)]
/// struct In { x: i64 }
/// #[derive(Serialize)]
/// struct Out { y: i64 }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// // A program failing on odd numbers.
/// let halve = program_fn(|i: In| async move {
///     if i.x % 2 == 1 {
///         return Err(Error::step("halving", format!("{} is odd", i.x)));
///     }
///     Ok(Out { y: i.x / 2 })
/// });
/// let devset: Vec<Example> = [2, 3, 4, 5]
///     .into_iter()
///     .map(|x| Example::new().with("x", x).with("y", x / 2).with_inputs(["x"]))
///     .collect();
/// let exact = metric_fn("exact", |e: &Example, p: &Prediction| e.get("y") == p.get("y"));
///
/// // Quiet: this program reports the failures itself.
/// let result = Evaluate::new(devset, exact).report_failures(false).call(&halve).await?;
/// assert_eq!((result.n_errors, result.score), (2, 50.0));
/// for record in result.errors() {
///     let failure = record.failure.as_ref().unwrap();
///     assert!(matches!(failure, EvalFailure::Program(_)));
///     println!("example {}: {failure}", record.index);
/// }
/// assert_eq!(
///     result.failure_report(5).unwrap(),
///     "Evaluate: 2 of 4 examples failed, each scored 0.0:\n  \
///      example 1: halving: 3 is odd\n  \
///      example 3: halving: 5 is odd\n"
/// );
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
///
/// To see each failure as it happens, and the "Average Metric" line, install a `tracing`
/// subscriber, e.g. `tracing-subscriber`'s fmt subscriber (with its `env-filter` feature) at
/// the start of `main`. Evaluation logs under the target `dspex_runtime::evaluate`, the LM
/// layer (requests, retries) under `dspex_lm`; `RUST_LOG` overrides the filter here:
///
/// ```
/// use tracing_subscriber::EnvFilter;
///
/// let filter = EnvFilter::try_from_default_env()
///     .unwrap_or_else(|_| EnvFilter::new("warn,dspex_runtime::evaluate=info"));
/// // `try_init` leaves a subscriber installed before in place.
/// let _ = tracing_subscriber::fmt()
///     .with_env_filter(filter)
///     .with_writer(std::io::stderr)
///     .try_init();
/// ```
#[derive(Clone)]
pub struct Evaluate {
    pub(super) devset: Arc<[Example]>,
    pub(super) metric: Arc<dyn Metric>,
    pub(super) num_threads: usize,
    pub(super) shared: Option<Arc<Semaphore>>,
    pub(super) failure_score: f64,
    pub(super) max_errors: Option<usize>,
    pub(super) display_progress: bool,
    pub(super) display_table: Option<usize>,
    pub(super) report_failures: bool,
    pub(super) stop: Option<StopFn>,
    pub(super) cancel: Option<CancelToken>,
    pub(super) callbacks: Callbacks,
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
            .field("report_failures", &self.report_failures)
            .finish_non_exhaustive()
    }
}

/// How one example ended.
pub(super) struct Outcome {
    pub(super) prediction: Option<Prediction>,
    pub(super) score: Result<f64, EvalFailure>,
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
            report_failures: true,
            stop: None,
            cancel: None,
            callbacks: Callbacks::new(),
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

    /// Stop at the `n`-th failure (DSPy's `max_errors`; 0 acts as 1): no new example starts, the
    /// running ones finish, and the result is marked
    /// [`stopped_early`](EvaluationResult::stopped_early). Without it (the default) every
    /// example runs whatever fails.
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

    /// Whether to write a short report of the failures to stderr at the end of an evaluation
    /// that had any (default `true`): how many examples failed out of how many, and the first
    /// five errors with their example's index, one line each (see
    /// [`EvaluationResult::failure_report`]). Nothing is written when every example succeeds.
    ///
    /// `false` leaves reporting to the caller: the failures are in the result
    /// ([`n_errors`](EvaluationResult::n_errors), [`errors`](EvaluationResult::errors)), and
    /// each is logged through `tracing` either way. The optimizers' own evaluations of their
    /// candidates run with it off.
    ///
    /// The report is written with `eprint!`, so a test harness capturing output captures it.
    #[must_use]
    pub fn report_failures(mut self, on: bool) -> Self {
        self.report_failures = on;
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
    /// the result is marked [`stopped_early`](EvaluationResult::stopped_early); the examples
    /// running finish. To stop the running ones too, use [`cancel_on`](Self::cancel_on).
    #[must_use]
    pub fn stop_when(mut self, stop: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.stop = Some(Arc::new(stop));
        self
    }

    /// Stops when `token` is cancelled (e.g. an optimization job's
    /// [`cancel_token`](crate::optimize::JobContext::cancel_token)): no new example starts and
    /// the examples in flight are dropped where they stand, so nothing the evaluation started
    /// outlives it. The result keeps the records finished before, is marked
    /// [`stopped_early`](EvaluationResult::stopped_early) and
    /// [`cancelled`](EvaluationResult::cancelled), and its score averages those records only.
    #[must_use]
    pub fn cancel_on(mut self, token: CancelToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Callbacks of its own: they receive its evaluate events (after the callbacks in the
    /// settings), as DSPy's `Evaluate(callbacks=...)`. The program calls inside report to the
    /// callbacks in the settings, with the evaluation as their parent (see
    /// [`crate::callback`]).
    #[must_use]
    pub fn callbacks(mut self, callbacks: impl Into<Callbacks>) -> Self {
        self.callbacks = callbacks.into();
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
        let observed = Observed::start(
            EventKind::Evaluate,
            || "Evaluate".to_string(),
            Some(&self.callbacks),
            || {
                serde_json::json!({
                    "devset_size": devset.len(),
                    "metric": self.metric.name(),
                    "num_threads": self.num_threads,
                })
            },
        );
        let result = scope_current(
            observed.as_ref().map(Observed::id),
            self.checked_run(program, devset),
        )
        .await;
        if let Some(observed) = observed {
            observed.finish_with(
                &result,
                |r| {
                    serde_json::json!({
                        "score": r.score,
                        "n_examples": r.records.len(),
                        "n_errors": r.n_errors,
                        "stopped_early": r.stopped_early,
                        "cancelled": r.cancelled,
                    })
                },
                |e| EventError::new(ErrorKind::Evaluate, e),
            );
        }
        result
    }

    async fn checked_run<P: ExampleProgram + ?Sized>(
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
        let span = tracing::info_span!(
            "dspex.evaluate",
            otel.name = "evaluate",
            dspex.evaluate.examples = devset.len() as i64,
            dspex.evaluate.metric = self.metric.name(),
            dspex.score = tracing::field::Empty,
            dspex.evaluate.errors = tracing::field::Empty,
        );
        let result = self.run(program, devset).instrument(span.clone()).await;
        span.record("dspex.score", result.score);
        span.record("dspex.evaluate.errors", result.n_errors as i64);
        Ok(result)
    }

    async fn run<P: ExampleProgram + ?Sized>(
        &self,
        program: &P,
        devset: &[Example],
    ) -> EvaluationResult {
        let started = Instant::now();
        let n = devset.len();
        let metric: &dyn Metric = &*self.metric;
        let progress = self.progress_bar(n);
        let stop = AtomicBool::new(false);
        let cancel = self.cancel.as_ref();
        let should_stop = || {
            stop.load(Ordering::Relaxed)
                || cancel.is_some_and(CancelToken::is_cancelled)
                || self.stop.as_ref().is_some_and(|f| f())
        };
        let mut cancelled = false;

        let mut slots: Vec<Option<Outcome>> = (0..n).map(|_| None).collect();
        let mut n_errors = 0usize;
        let (mut progress_sum, mut progress_count) = (0.0f64, 0usize);
        {
            let shared = self.shared.as_deref();
            let should_stop = &should_stop;
            // Indices, not references, as items: a stream of borrowed items here makes the
            // future lose `Send` (rustc's higher-ranked lifetime inference).
            let mut outcomes = futures_util::stream::iter(0..n)
                .take_while(|_| std::future::ready(!should_stop()))
                .map(|index| async move {
                    let example = &devset[index];
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
                    let outcome = run_one(program, metric, example)
                        .instrument(tracing::info_span!(
                            "dspex.evaluate.example",
                            otel.name = "evaluate.example",
                            dspex.example.index = index as i64
                        ))
                        .await;
                    (index, Some(outcome))
                })
                .buffer_unordered(self.num_threads);

            let cancellation = async {
                match cancel {
                    Some(token) => token.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            let mut cancellation = std::pin::pin!(cancellation);
            loop {
                let next = tokio::select! {
                    biased;
                    () = &mut cancellation => {
                        // The examples in flight are dropped with the stream, below.
                        cancelled = true;
                        break;
                    }
                    next = outcomes.next() => next,
                };
                let Some((index, outcome)) = next else {
                    break;
                };
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
                        if self.max_errors.is_some_and(|max| n_errors >= max)
                            && !stop.swap(true, Ordering::Relaxed)
                        {
                            tracing::warn!(
                                errors = n_errors,
                                "max_errors reached: stopping the evaluation; the examples \
                                 already running finish"
                            );
                        }
                    }
                }
                if let Some(bar) = &progress {
                    bar.set_message(progress_message(progress_sum, progress_count));
                    bar.inc(1);
                }
                slots[index] = Some(outcome);
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
                let Outcome { prediction, score } = slot?;
                let (score, failure) = match score {
                    Ok(s) => (s, None),
                    Err(e) => (failure_score, Some(e)),
                };
                Some(EvalRecord {
                    index,
                    example: example.clone(),
                    prediction,
                    score,
                    error: failure.as_ref().map(ToString::to_string),
                    failure,
                })
            })
            .collect();
        let evaluated = records.len();
        if cancelled && evaluated < n {
            tracing::info!(
                evaluated,
                examples = n,
                "evaluation cancelled; the examples in flight were dropped"
            );
        }
        // Python's `sum`, in dev-set order.
        let total: f64 = records.iter().fold(0.0, |acc, r| acc + r.score);
        let score = overall_score(metric, total, evaluated, n_errors);
        let result = EvaluationResult {
            score,
            records,
            n_errors,
            stopped_early: evaluated < n,
            cancelled: cancelled && evaluated < n,
            elapsed: started.elapsed(),
            devset_len: n,
            metric_name: metric.name().to_string(),
            metric_bool: metric.returns_bool(),
        };
        if let Some(rows) = self.display_table {
            print!("{}", result.table(rows));
        }
        if let Some(report) = self.stderr_report(&result) {
            eprint!("{report}");
        }
        result
    }

    /// What [`call`](Self::call) writes to stderr at the end: the result's
    /// [`failure_report`](EvaluationResult::failure_report) (the first
    /// [`REPORTED_FAILURES`] failures) and where to find more; `None` when nothing failed or
    /// [`report_failures`](Self::report_failures) is off.
    fn stderr_report(&self, result: &EvaluationResult) -> Option<String> {
        if !self.report_failures {
            return None;
        }
        let mut report = result.failure_report(REPORTED_FAILURES)?;
        report.push_str(
            "  (every failure: `EvaluationResult::errors()`; each as it happens: a `tracing` \
             subscriber; this report off: `Evaluate::report_failures(false)`)\n",
        );
        Some(report)
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

/// DSPy's log line, `Average Metric: {ncorrect} / {ntotal} ({round(100*ncorrect/ntotal, 1)}%)`,
/// with `ncorrect` as Python prints the sum (an int when every score was a bool).
pub(super) fn average_metric_line(total: f64, n: usize, as_int: bool) -> String {
    let shown = if as_int {
        format!("{total:.0}")
    } else {
        py_float(total)
    };
    let pct = py_round(100.0 * total / n as f64, 1);
    format!("Average Metric: {shown} / {n} ({}%)", py_float(pct))
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
pub(super) async fn run_one<P: ExampleProgram + ?Sized>(
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
                score: Err(EvalFailure::Program(Arc::new(e))),
            };
        }
        Err(panic) => {
            return Outcome {
                prediction: None,
                score: Err(EvalFailure::ProgramPanicked(panic_message(&*panic))),
            };
        }
    };
    let score = match AssertUnwindSafe(metric.score(example, &prediction, None))
        .catch_unwind()
        .await
    {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(EvalFailure::Metric(Arc::new(e))),
        Err(panic) => Err(EvalFailure::MetricPanicked(panic_message(&*panic))),
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

/// DSPy's overall score of `evaluated` examples whose scores sum to `total`:
/// `round(100 * total / evaluated, 2)` (0 for none), after DSPy's "Average Metric" log line.
pub(super) fn overall_score(
    metric: &dyn Metric,
    total: f64,
    evaluated: usize,
    n_errors: usize,
) -> f64 {
    if evaluated == 0 {
        return 0.0;
    }
    // DSPy's sum stays an int while every score is a bool (no failure score added).
    let as_int = metric.returns_bool() && n_errors == 0;
    tracing::info!("{}", average_metric_line(total, evaluated, as_int));
    py_round(100.0 * total / evaluated as f64, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, Result};
    use crate::evaluate::{async_metric, metric_fn};
    use futures_util::future::BoxFuture;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// Doubles `x`, after a pseudo-random delay; tracks how many calls are in flight.
    #[derive(Default)]
    struct Doubler {
        running: AtomicUsize,
        peak: AtomicUsize,
        calls: AtomicUsize,
    }

    impl ExampleProgram for Doubler {
        fn run_example<'a>(&'a self, example: &'a Example) -> BoxFuture<'a, Result<Prediction>> {
            Box::pin(async move {
                let x = example
                    .inputs()?
                    .get("x")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0);
                self.calls.fetch_add(1, Ordering::SeqCst);
                let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(now, Ordering::SeqCst);
                // Scrambled latencies, so completions come out of order.
                tokio::time::sleep(Duration::from_millis((x * 7919) % 37 + 1)).await;
                self.running.fetch_sub(1, Ordering::SeqCst);
                match x {
                    x if x % 10 == 3 => Err(Error::step("doubling", format!("{x} is unlucky"))),
                    17 => panic!("seventeen panics"),
                    x => Ok(Prediction::from_pairs([("y", x * 2)])),
                }
            })
        }
    }

    fn devset(n: u64) -> Vec<Example> {
        (0..n)
            .map(|x| {
                Example::new()
                    .with("x", x)
                    .with("y", x * 2)
                    .with_inputs(["x"])
            })
            .collect()
    }

    fn exact() -> impl Metric {
        metric_fn("exact", |e: &Example, p: &Prediction| -> Result<bool> {
            if e.get("x").and_then(|v| v.as_u64()) == Some(5) {
                return Err(Error::step("exact", "five cannot be judged"));
            }
            Ok(e.get("y") == p.get("y"))
        })
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_recorded_in_devset_order_under_the_limit() {
        let program = Doubler::default();
        let result = Evaluate::new(devset(40), exact())
            .num_threads(6)
            .failure_score(0.25)
            .call(&program)
            .await
            .unwrap();
        assert_eq!(result.records.len(), 40);
        assert!(!result.stopped_early);
        let peak = program.peak.load(Ordering::SeqCst);
        assert!(peak <= 6, "peak {peak}");
        assert!(peak >= 2, "examples ran concurrently");
        for (i, record) in result.records.iter().enumerate() {
            assert_eq!(record.index, i);
            assert_eq!(record.example.get("x").unwrap(), i as u64);
        }
        // Program errors (3, 13, 23, 33), a panic (17), a metric error (5).
        let failed: Vec<usize> = result.errors().map(|r| r.index).collect();
        assert_eq!(failed, [3, 5, 13, 17, 23, 33]);
        assert_eq!(result.n_errors, 6);
        let r3 = &result.records[3];
        assert!(r3.prediction.is_none());
        assert!(r3.error.as_deref().unwrap().contains("3 is unlucky"));
        assert_eq!(r3.score, 0.25);
        let r5 = &result.records[5];
        assert_eq!(r5.prediction.as_ref().unwrap().get("y").unwrap(), 10);
        assert!(r5.error.as_deref().unwrap().contains("the metric failed"));
        let r17 = &result.records[17];
        assert!(
            r17.error
                .as_deref()
                .unwrap()
                .contains("the program panicked: seventeen panics"),
            "{:?}",
            r17.error
        );
        // 34 right, 6 failures at 0.25: 100 * 35.5 / 40.
        assert_eq!(result.total(), 35.5);
        assert_eq!(result.score, 88.75);
        assert_eq!(result.devset_len, 40);
        assert_eq!(result.metric_name, "exact");
    }

    #[tokio::test(start_paused = true)]
    async fn max_errors_stops_early_and_keeps_every_record() {
        let always_wrong = async_metric("judge", |_: Example, _: Prediction| async {
            Err::<f64, _>(Error::step("judge", "no judge today"))
        });
        let program = Doubler::default();
        let result = Evaluate::new(devset(200), always_wrong)
            .num_threads(4)
            .max_errors(3)
            .call(&program)
            .await
            .unwrap();
        assert!(result.stopped_early);
        assert!(result.n_errors >= 3);
        // The third failure stops new examples; at most the three others running finish.
        assert!(
            (3..=6).contains(&result.records.len()),
            "{}",
            result.records.len()
        );
        assert_eq!(result.n_errors, result.records.len());
        assert_eq!(program.calls.load(Ordering::SeqCst), result.records.len());
        assert!(result.records.windows(2).all(|w| w[0].index < w[1].index));
        assert_eq!(result.score, 0.0);
        assert_eq!(result.devset_len, 200);

        // Sequentially, exactly the third failure stops it.
        let program = Doubler::default();
        let result = Evaluate::new(devset(200), exact())
            .num_threads(1)
            .max_errors(2)
            .call(&program)
            .await
            .unwrap();
        assert!(result.stopped_early);
        let indices: Vec<usize> = result.records.iter().map(|r| r.index).collect();
        assert_eq!(indices, (0..=5).collect::<Vec<_>>());
        assert_eq!(result.n_errors, 2);
        // 4 right out of 6 evaluated.
        assert_eq!(result.score, 66.67);
    }

    /// Issue 15: with malformed replies the run printed nothing and reported a lower score. The
    /// report written to stderr says how many failed and lists the first ones.
    #[tokio::test(start_paused = true)]
    async fn failures_are_reported_unless_turned_off() {
        let program = Doubler::default();
        let evaluate = Evaluate::new(devset(40), exact())
            .num_threads(6)
            .failure_score(0.25);
        let result = evaluate.call(&program).await.unwrap();
        assert_eq!(result.n_errors, 6);
        let report = evaluate.stderr_report(&result).expect("a report");
        assert_eq!(
            report,
            "Evaluate: 6 of 40 examples failed, each scored 0.25:\n\
             \x20 example 3: doubling: 3 is unlucky\n\
             \x20 example 5: the metric failed: exact: five cannot be judged\n\
             \x20 example 13: doubling: 13 is unlucky\n\
             \x20 example 17: the program panicked: seventeen panics\n\
             \x20 example 23: doubling: 23 is unlucky\n\
             \x20 ... and 1 more\n\
             \x20 (every failure: `EvaluationResult::errors()`; each as it happens: a `tracing` \
             subscriber; this report off: `Evaluate::report_failures(false)`)\n"
        );
        // The report is the result's, with the hint; the result lists as many as asked.
        assert!(report.starts_with(&result.failure_report(REPORTED_FAILURES).unwrap()));
        let all = result.failure_report(usize::MAX).unwrap();
        assert_eq!(all.lines().count(), 1 + 6);
        assert!(
            all.ends_with("example 33: doubling: 33 is unlucky\n"),
            "{all}"
        );
        assert_eq!(
            result.failure_report(0).unwrap(),
            "Evaluate: 6 of 40 examples failed, each scored 0.25:\n"
        );

        // Off: nothing to write, the result unchanged.
        let quiet = evaluate.clone().report_failures(false);
        assert!(format!("{quiet:?}").contains("report_failures: false"));
        let quiet_result = quiet.call(&program).await.unwrap();
        assert_eq!(quiet.stderr_report(&quiet_result), None);
        assert_eq!(quiet_result.n_errors, 6);
        assert_eq!(quiet_result.failure_report(5), result.failure_report(5));

        // No failure, no report.
        let clean = Evaluate::new(devset(3), exact());
        let result = clean.call(&program).await.unwrap();
        assert_eq!(result.n_errors, 0);
        assert_eq!(result.failure_report(5), None);
        assert_eq!(clean.stderr_report(&result), None);

        // One failure of an early stop.
        let result = Evaluate::new(devset(200), exact())
            .num_threads(1)
            .max_errors(1)
            .call(&program)
            .await
            .unwrap();
        assert_eq!(
            result.failure_report(5).unwrap(),
            "Evaluate: 1 of 4 examples failed, scored 0.0 (the evaluation stopped early after \
             4 of 200 examples):\n\
             \x20 example 3: doubling: 3 is unlucky\n"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn evaluations_share_one_limit() {
        let limit = Arc::new(Semaphore::new(3));
        let program = Doubler::default();
        let a = Evaluate::new(devset(30), exact())
            .num_threads(8)
            .shared_limit(Arc::clone(&limit));
        let b = a.clone();
        let (ra, rb) = tokio::join!(a.call(&program), b.call(&program));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(ra.records.len(), 30);
        assert_eq!(
            ra,
            EvaluationResult {
                elapsed: ra.elapsed,
                ..rb
            }
        );
        let peak = program.peak.load(Ordering::SeqCst);
        assert!(peak <= 3, "peak {peak}");
        assert_eq!(limit.available_permits(), 3);

        // A closed limit stops the evaluation, keeping what ran.
        limit.close();
        let result = a.call(&program).await.unwrap();
        assert!(result.stopped_early);
        assert!(result.records.is_empty());
        assert_eq!(result.score, 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_when_stops_new_examples() {
        let program = Arc::new(Doubler::default());
        let seen = Arc::clone(&program);
        let result = Evaluate::new(devset(50), exact())
            .num_threads(2)
            .stop_when(move || seen.calls.load(Ordering::SeqCst) >= 10)
            .call(&*program)
            .await
            .unwrap();
        assert!(result.stopped_early);
        assert_eq!(result.records.len(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_on_drops_the_examples_in_flight() {
        let program = Doubler::default();
        let token = CancelToken::new();
        let evaluate = Evaluate::new(devset(100), exact())
            .num_threads(4)
            .cancel_on(token.clone());
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(40)).await;
            token.cancel();
        };
        let (result, ()) = tokio::join!(evaluate.call(&program), cancel);
        let result = result.unwrap();
        assert!(result.cancelled && result.stopped_early);
        let kept = result.records.len();
        assert!((1..100).contains(&kept), "{kept}");
        // At most the 4 examples in flight at the cancel were started and not kept; they were
        // dropped mid-sleep, never finishing.
        let calls = program.calls.load(Ordering::SeqCst);
        assert!(
            calls >= kept && calls <= kept + 4,
            "{calls} calls, {kept} kept"
        );
        assert_eq!(program.running.load(Ordering::SeqCst), calls - kept);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            program.calls.load(Ordering::SeqCst),
            calls,
            "nothing ran on"
        );

        // Cancelled beforehand: nothing runs.
        let program = Doubler::default();
        let result = evaluate.call(&program).await.unwrap();
        assert!(result.cancelled && result.records.is_empty());
        assert_eq!(program.calls.load(Ordering::SeqCst), 0);

        // A token never cancelled changes nothing.
        let program = Doubler::default();
        let result = Evaluate::new(devset(20), exact())
            .cancel_on(CancelToken::new())
            .call(&program)
            .await
            .unwrap();
        assert!(!result.cancelled && !result.stopped_early);
        assert_eq!(result.records.len(), 20);
    }

    #[tokio::test]
    async fn bad_devsets_are_typed_errors() {
        let program = Doubler::default();
        let err = Evaluate::new(Vec::new(), exact())
            .call(&program)
            .await
            .unwrap_err();
        assert!(matches!(err, EvaluateError::EmptyDevset), "{err}");
        let mut set = devset(3);
        set[1] = Example::new().with("x", 1);
        let err = Evaluate::new(set, exact())
            .call(&program)
            .await
            .unwrap_err();
        assert!(matches!(err, EvaluateError::NoInputs { index: 1 }), "{err}");
        assert!(err.to_string().contains("with_inputs"));
        let err: Error = err.into();
        assert!(err.to_string().starts_with("evaluate: devset example 1"));
    }

    #[test]
    fn the_call_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let evaluate = Evaluate::new(devset(1), exact());
        let program = Doubler::default();
        let fut = evaluate.call(&program);
        assert_send(&fut);
        let dynamic: &dyn ExampleProgram = &program;
        assert_send(&evaluate.call(dynamic));
    }

    #[test]
    fn log_lines_match_dspy() {
        // DSPy 3.4.1's lines for the runs of testdata/capture_rows.py and ev.py.
        assert_eq!(
            average_metric_line(1.0, 3, true),
            "Average Metric: 1 / 3 (33.3%)"
        );
        assert_eq!(
            average_metric_line(0.75 + 0.1 + 0.1, 3, false),
            "Average Metric: 0.95 / 3 (31.7%)"
        );
        assert_eq!(
            average_metric_line(0.25 + 1.0, 2, false),
            "Average Metric: 1.25 / 2 (62.5%)"
        );
        assert_eq!(
            average_metric_line(1.0, 4, false),
            "Average Metric: 1.0 / 4 (25.0%)"
        );
        assert_eq!(
            progress_message(2.0 / 3.0, 2),
            "Average Metric: 0.67 / 2 (33.3%)"
        );
    }
}
