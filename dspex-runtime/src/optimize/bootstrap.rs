//! [`BootstrapFewShot`]: run a teacher on the training set, keep the traces of runs the metric
//! accepts as demos, and fill the rest with labeled examples — DSPy's algorithm, choice for
//! choice, with the teacher runs made concurrently.

use super::config::{DemoConfig, DemoKnobs};
use super::labeled::{LabeledFewShot, clear_demos};
use super::{JobContext, Optimizable, Optimizer, TrialEvent};
use crate::error::{Error, Result};
use crate::evaluate::{ExampleProgram, Metric};
use crate::example::Example;
use crate::lm::UsageTracker;
use crate::module::CallConfig;
use crate::program::{Module, PredictorParams};
use crate::pycompat::PyRandom;
use crate::settings::{PredictorId, Settings, Trace, TraceEntry, with_settings};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The teacher of a [`BootstrapFewShot`] compile.
#[derive(Debug, Clone)]
pub enum Teacher<T> {
    /// A program whose demos are replaced before bootstrapping: like an uncompiled DSPy teacher,
    /// each of its predictors gets a `random.Random(0)` labeled sample of the training set
    /// ([`LabeledFewShot`] with `k = max_labeled_demos`). With `max_labeled_demos = 0` it is
    /// used with the demos it has.
    Program(T),
    /// A program used exactly as it is, demos and all (DSPy's `_compiled` teacher, such as the
    /// output of an earlier compile).
    Compiled(T),
}

/// Why a [`BootstrapFewShot`] compile stopped. It reaches the caller inside
/// [`Error::Step`]; find it with [`BootstrapError::find`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The student and the teacher have different numbers of predictors.
    #[error(
        "student and teacher must have the same number of predictors: the student has {student}, the teacher {teacher}"
    )]
    PredictorCount {
        /// Predictors of the student.
        student: usize,
        /// Predictors of the teacher.
        teacher: usize,
    },
    /// The student and the teacher name a predictor differently (a different program
    /// structure).
    #[error(
        "student and teacher must have the same program structure: predictor {index} is `{student}` in the student and `{teacher}` in the teacher"
    )]
    PredictorName {
        /// The predictor's position.
        index: usize,
        /// Its name in the student.
        student: String,
        /// Its name in the teacher.
        teacher: String,
    },
    /// A predictor's signature differs between student and teacher (instructions, field names,
    /// roles, prefixes or descriptions, as DSPy's `Signature.equals` compares them).
    #[error("student and teacher must have the same signatures: predictor `{predictor}`: {detail}")]
    Signature {
        /// The predictor's name.
        predictor: String,
        /// What differs.
        detail: String,
    },
    /// A teacher run or a metric call failed when the error budget was spent; DSPy re-raises
    /// that exception. `source` is the error of that run.
    #[error(
        "example {example} (round {round}) failed and {errors} error(s) reached max_errors ({max_errors}): {source}"
    )]
    TooManyErrors {
        /// The index of the example in the training set.
        example: usize,
        /// The round of that example (0-based).
        round: usize,
        /// Errors counted so far, this one included.
        errors: usize,
        /// The configured limit.
        max_errors: usize,
        /// The run's error.
        #[source]
        source: Box<Error>,
    },
}

impl BootstrapError {
    /// The `BootstrapError` inside an error (or anywhere in its chain of sources).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BootstrapError> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(found) = e.downcast_ref::<BootstrapError>() {
                return Some(found);
            }
            current = e.source();
        }
        None
    }
}

/// What a [`BootstrapFewShot`] compile took, from
/// [`compile_with_report`](BootstrapFewShot::compile_with_report).
///
/// LM calls are counted as the requests [usage tracking](crate::lm::track_usage) counts
/// ([`ModelUsage::requests`](crate::lm::ModelUsage::requests)): the requests sent to the
/// provider by the teacher's runs *and by the metric* — answered or not, retries included,
/// cache hits not — through an LM that reports usage (the HTTP [`LM`](crate::lm::LM) client,
/// also behind the Python bridge, and [`ScriptedLM`](crate::lm::ScriptedLM); a
/// [`LanguageModel`](crate::lm::LanguageModel) of your own counts nothing). A request is
/// counted when it is about to be sent, so one whose run was dropped before its bytes left
/// may be counted without the provider having seen it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BootstrapReport {
    /// Examples committed, in training-set order: those DSPy's sequential loop tries.
    pub examples: usize,
    /// Of those, the examples bootstrapped.
    pub bootstrapped: usize,
    /// Teacher runs (rounds) of the committed examples: DSPy's `bootstrap_attempts`.
    pub attempts: usize,
    /// Errors counted (failed teacher runs or metric calls of the committed examples).
    pub errors: usize,
    /// LM requests sent by the runs of the committed examples: the calls DSPy's sequential
    /// loop makes (retries and cache hits aside).
    pub lm_requests: u64,
    /// Examples whose runs were started but never committed, their outcomes thrown away:
    /// [speculative](BootstrapFewShot::speculative) runs past the last example the compile
    /// needed, or runs dropped by a cancellation. 0 for a compile that is neither.
    pub discarded_runs: usize,
    /// Of the discarded runs, those still in flight when they were dropped (most likely
    /// waiting for an LM answer).
    pub dropped_in_flight: usize,
    /// LM requests the discarded runs sent: the LM calls paid for and thrown away.
    pub discarded_lm_requests: u64,
}

/// DSPy's `BootstrapFewShot`: runs a teacher program over the training set, and for every
/// example whose run the metric accepts, turns each predictor call of the run into a demo for
/// that predictor; the remaining slots are filled with labeled examples.
///
/// # What it does (DSPy 3.4.1, `dspy/teleprompt/bootstrap.py`)
///
/// 1. The student's demos are cleared. The teacher is a copy of the student with its demos
///    (or the program given to [`compile_with_teacher`](Self::compile_with_teacher)); unless it is
///    a [`Teacher::Compiled`] one or `max_labeled_demos` is 0, each teacher predictor gets a
///    labeled sample of the training set drawn with `random.Random(0)` ([`LabeledFewShot`]).
///    Student and teacher must have the same predictor names and signatures
///    ([`BootstrapError`] otherwise).
/// 2. Examples are taken in training-set order until `max_bootstrapped_demos` of them have been
///    bootstrapped. Each gets up to `max_rounds` attempts: round 0 runs as configured, round
///    `r > 0` at temperature 1.0 with rollout id `r` (as call defaults, beneath each predictor's
///    own config — DSPy's `lm.copy(rollout_id=r, temperature=1.0)`). During its run, teacher
///    demos equal to the example are hidden. Runs happen under the
///    [`teacher_settings`](Self::teacher_settings), recording a fresh trace.
/// 3. An attempt succeeds when the metric — called with the example, the prediction and the
///    trace — is truthy (non-zero), or, with a non-zero `metric_threshold`, at least the
///    threshold (a threshold of 0 is ignored, as in DSPy). Without a metric every run succeeds.
///    A failing run or metric counts an error; reaching `max_errors` (default
///    [`DEFAULT_MAX_ERRORS`](super::DEFAULT_MAX_ERRORS), DSPy's `settings.max_errors`) ends the
///    compile with [`BootstrapError::TooManyErrors`].
/// 4. On success each predictor call of the run becomes the demo
///    `{augmented: true, <inputs>, <outputs>}` of its predictor (calls of predictors outside the
///    program are ignored); one demo per predictor per example.
/// 5. The examples not bootstrapped (failed or never tried) are shuffled with
///    `random.Random(0)`; then, with one fresh `random.Random(0)` across predictors in
///    [`named_predictors`](Module::named_predictors) order, each predictor gets its first
///    `max_bootstrapped_demos` bootstrapped demos followed by a sample of
///    `max_labeled_demos - that many` (at most all) of those examples.
///
/// # Concurrency that makes the sequential run's calls
///
/// DSPy runs the teacher on one example after another. Here up to
/// [`concurrency`](DemoKnobs::concurrency) runs go at once (default
/// [`DEFAULT_CONCURRENCY`](super::DEFAULT_CONCURRENCY)), started in training-set order, and
/// their outcomes are *committed* strictly in training-set order, exactly as the sequential loop
/// would consider them: the first example that brings the count of bootstrapped examples to
/// `max_bootstrapped_demos` ends the loop, and errors are counted — and `max_errors` reached —
/// exactly when the sequential run would count them.
///
/// By default a run starts only when the sequential loop is sure to make it: example `i` starts
/// once the examples before it cannot bring the count to `max_bootstrapped_demos` even if every
/// run still in flight succeeds (nor the errors to `max_errors`, even if every round left
/// fails), and a round after an error waits until the errors before it are known. So the
/// teacher makes exactly the sequential run's calls — never more — and concurrency helps
/// while many demos are still needed (with 3 of 4 demos found, one run goes at a time). With
/// [`speculative(true)`](Self::speculative) runs start whenever a slot is free, on the next
/// examples (up to `concurrency` past the next one to commit); outcomes past the last
/// example needed are thrown away uncounted, and the [`BootstrapReport`] of
/// [`compile_with_report`](Self::compile_with_report) tells how many runs and LM calls that
/// was. The demos, the validation pool and therefore the compiled program are identical for
/// every concurrency, speculative or not. With concurrency 1 the runs are exactly DSPy's, one
/// at a time (an LM that answers in call order, such as `ScriptedLM`, needs that).
///
/// The runs are polled on the compiling task (no tasks are spawned), so task-scoped
/// [settings](crate::settings) reach them.
///
/// # As a job
///
/// Each committed example is reported as a trial (`candidate`: its `example` index, the
/// `rounds` tried, whether it was `bootstrapped`, the `errors` it counted; `score`: the metric
/// value of its last round, 1 without a metric, 0 after an error). Cancelling the job stops the
/// loop at once: no example is committed after it, the teacher runs in flight are dropped (their
/// LM calls with them), and the program is built from the examples committed so far. (As the
/// inner step of a search — random search, MIPROv2 — such a partial program is thrown away and
/// the search returns its own best so far.)
///
/// # Differences from DSPy
///
/// - When one predictor is called several times in an accepted run, DSPy keeps one of the calls
///   chosen by a generator seeded with a hash of their pickled demos (not reproducible outside
///   CPython); dspex keeps the **last** call, DSPy's most likely pick (probability ≥ 1/2).
/// - Errors are counted per compile; DSPy keeps counting across compiles of the same optimizer.
/// - Predictors keep their own configuration (LM, temperature): in dspex it belongs to the
///   program, not to the tuned parameters, whereas DSPy's `reset_copy()` drops per-predictor LMs.
///   The round `r > 0` temperature and rollout id therefore also reach predictors that have
///   their own LM (in DSPy those repeat round 0).
/// - An empty training set compiles to the student without demos (DSPy raises
///   `UnboundLocalError`).
///
/// ```
/// use dspex_runtime::evaluate::metric_fn;
/// use dspex_runtime::lm::ScriptedLM;
/// use dspex_runtime::module::{CallConfig, DynPredict};
/// use dspex_runtime::optimize::{BootstrapFewShot, DemoKnobs, Optimizer};
/// use dspex_runtime::{DynSignature, Example, Prediction};
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // The teacher answers 3 + 3 wrongly.
/// let lm = ScriptedLM::from_fields([
///     json!({"answer": "4"}),
///     json!({"answer": "7"}),
///     json!({"answer": "10"}),
/// ]);
/// let student = DynPredict::new(DynSignature::parse("question -> answer")?)
///     .with_config(CallConfig::new().lm(lm.clone()));
/// let trainset: Vec<Example> = [("2 + 2?", "4"), ("3 + 3?", "6"), ("5 + 5?", "10")]
///     .into_iter()
///     .map(|(q, a)| Example::new().with("question", q).with("answer", a).with_inputs(["question"]))
///     .collect();
/// let exact = metric_fn("exact", |ex: &Example, pred: &Prediction| {
///     ex.get_str("answer") == pred.get_str("answer")
/// });
/// let optimizer = BootstrapFewShot::new()
///     .metric(exact)
///     .max_bootstrapped_demos(2)
///     .max_labeled_demos(3)
///     .concurrency(1); // the scripted LM answers in call order
/// let compiled = optimizer.compile(student, &trainset).await?;
///
/// let demos = &compiled.params().demos;
/// assert_eq!(demos.len(), 3);
/// // Two bootstrapped demos, then the example that failed as a labeled demo.
/// assert_eq!(demos[0].get("augmented"), Some(&json!(true)));
/// assert_eq!(demos[0].get_str("question"), Some("2 + 2?"));
/// assert_eq!(demos[1].get_str("answer"), Some("10"));
/// assert_eq!(demos[2], trainset[1]);
/// assert_eq!(lm.calls(), 3);
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct BootstrapFewShot {
    metric: Option<Arc<dyn Metric>>,
    teacher_settings: Settings,
    max_rounds: usize,
    speculative: bool,
    config: DemoConfig,
}

impl fmt::Debug for BootstrapFewShot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapFewShot")
            .field(
                "metric",
                &self.metric.as_ref().map(|m| m.name().to_string()),
            )
            .field("teacher_settings", &self.teacher_settings)
            .field("max_rounds", &self.max_rounds)
            .field("speculative", &self.speculative)
            .field("demo_config", &self.config)
            .finish()
    }
}

impl Default for BootstrapFewShot {
    fn default() -> Self {
        Self::new()
    }
}

impl DemoKnobs for BootstrapFewShot {
    fn demo_config(&self) -> &DemoConfig {
        &self.config
    }

    fn demo_config_mut(&mut self) -> &mut DemoConfig {
        &mut self.config
    }
}

impl BootstrapFewShot {
    /// DSPy's defaults: no metric (every run is accepted), 1 round, and the demo knobs of
    /// [`DemoConfig::bootstrap_few_shot`] — 4 bootstrapped and 16 labeled demos, `max_errors`
    /// [`DEFAULT_MAX_ERRORS`](super::DEFAULT_MAX_ERRORS),
    /// [`DEFAULT_CONCURRENCY`](super::DEFAULT_CONCURRENCY) runs at once.
    pub fn new() -> Self {
        BootstrapFewShot {
            metric: None,
            teacher_settings: Settings::new(),
            max_rounds: 1,
            speculative: false,
            config: DemoConfig::bootstrap_few_shot(),
        }
    }

    /// Accepts a run when this metric is non-zero (or reaches the
    /// [`metric_threshold`](DemoKnobs::metric_threshold)). It is called with the run's trace.
    #[must_use]
    pub fn metric(self, metric: impl Metric + 'static) -> Self {
        self.metric_arc(Arc::new(metric))
    }

    /// [`metric`](Self::metric) from a shared metric.
    #[must_use]
    pub fn metric_arc(mut self, metric: Arc<dyn Metric>) -> Self {
        self.metric = Some(metric);
        self
    }

    /// Settings the teacher runs (and the metric) under — DSPy's `teacher_settings`, e.g. a
    /// stronger LM for the teacher: `Settings::new().lm(big)`.
    #[must_use]
    pub fn teacher_settings(mut self, settings: Settings) -> Self {
        self.teacher_settings = settings;
        self
    }

    /// Attempts per example; rounds after the first run at temperature 1.0 with their own
    /// rollout id.
    #[must_use]
    pub fn max_rounds(mut self, n: usize) -> Self {
        self.max_rounds = n;
        self
    }

    /// Opts in to speculation (off by default): keep
    /// [`concurrency`](DemoKnobs::concurrency) teacher runs in flight from the start, on the
    /// examples that come next in training-set order, even when the sequential loop may stop
    /// before it reaches them. A compile that needs few demos from a long training set then
    /// ends sooner, at the price of runs whose outcomes are thrown away (at most
    /// `concurrency - 1` examples' worth); their LM calls are counted in the
    /// [`BootstrapReport`] of [`compile_with_report`](Self::compile_with_report). The compiled
    /// program is the same either way.
    ///
    /// Speculative runs also go on to their next round after an error, where by default such a
    /// run waits until the errors before it are known.
    #[must_use]
    pub fn speculative(mut self, on: bool) -> Self {
        self.speculative = on;
        self
    }

    /// Compiles `student` with `teacher` (DSPy's `compile(student, teacher=..., trainset=...)`).
    /// The teacher may be a different program type with the same predictor names and
    /// signatures.
    pub async fn compile_with_teacher<P, T>(
        &self,
        student: P,
        teacher: Teacher<T>,
        trainset: &[Example],
    ) -> Result<P>
    where
        P: Optimizable,
        T: Optimizable,
    {
        self.compile_with_teacher_in(student, teacher, trainset, &JobContext::detached())
            .await
    }

    /// [`compile_with_teacher`](Self::compile_with_teacher), reporting to and checking `ctx`
    /// (run it as a job with [`super::Job::spawn`]).
    pub async fn compile_with_teacher_in<P, T>(
        &self,
        student: P,
        teacher: Teacher<T>,
        trainset: &[Example],
        ctx: &JobContext,
    ) -> Result<P>
    where
        P: Optimizable,
        T: Optimizable,
    {
        self.compile_with_report(student, teacher, trainset, ctx)
            .await
            .map(|(program, _)| program)
    }

    /// [`compile_with_teacher_in`](Self::compile_with_teacher_in), also returning what the
    /// compile took: the examples tried, the LM calls made, and the runs thrown away. (To use
    /// a copy of the student as the teacher, as [`compile`](Optimizer::compile) does, pass
    /// `Teacher::Program(student.clone())`.)
    ///
    /// ```
    /// use dspex_runtime::lm::ScriptedLM;
    /// use dspex_runtime::module::{CallConfig, DynPredict};
    /// use dspex_runtime::optimize::{BootstrapFewShot, DemoKnobs, JobContext, Teacher};
    /// use dspex_runtime::{DynSignature, Example};
    /// use serde_json::json;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let lm = ScriptedLM::from_fields([json!({"answer": "yes"})]).repeat_last();
    /// let student = DynPredict::new(DynSignature::parse("question -> answer")?)
    ///     .with_config(CallConfig::new().lm(lm.clone()));
    /// let trainset: Vec<Example> = (0..20)
    ///     .map(|i| Example::new().with("question", format!("Q{i}")).with_inputs(["question"]))
    ///     .collect();
    /// let ctx = JobContext::detached();
    ///
    /// // By default: DSPy's sequential calls, 4 runs for 4 demos, even with 16 at once.
    /// let optimizer = BootstrapFewShot::new().max_bootstrapped_demos(4).concurrency(16);
    /// let teacher = Teacher::Program(student.clone());
    /// let (_, report) = optimizer.compile_with_report(student.clone(), teacher, &trainset, &ctx).await?;
    /// assert_eq!((report.examples, report.lm_requests, report.discarded_runs), (4, 4, 0));
    /// assert_eq!(lm.calls(), 4);
    ///
    /// // Speculative: 16 runs start at once; those past the 4th example are thrown away (how
    /// // many of them called the LM before the 4th demo was in depends on timing).
    /// let teacher = Teacher::Program(student.clone());
    /// let (_, report) = optimizer
    ///     .speculative(true)
    ///     .compile_with_report(student, teacher, &trainset, &ctx)
    ///     .await?;
    /// assert_eq!((report.examples, report.lm_requests), (4, 4));
    /// assert!(report.discarded_runs >= 12);
    /// assert_eq!(lm.calls() as u64, 4 + 4 + report.discarded_lm_requests);
    /// # Ok::<(), dspex_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn compile_with_report<P, T>(
        &self,
        student: P,
        teacher: Teacher<T>,
        trainset: &[Example],
        ctx: &JobContext,
    ) -> Result<(P, BootstrapReport)>
    where
        P: Optimizable,
        T: Optimizable,
    {
        let mut student = student;
        clear_demos(&mut student);
        let teacher = match teacher {
            Teacher::Program(t) if self.config.max_labeled_demos > 0 => {
                LabeledFewShot::new(self.config.max_labeled_demos).apply(t, trainset)
            }
            Teacher::Program(t) | Teacher::Compiled(t) => t,
        };
        let names =
            check_structure(&student, &teacher).map_err(|e| Error::step("BootstrapFewShot", e))?;
        let outcome = self.bootstrap(&teacher, names.len(), trainset, ctx).await?;

        // Every example not bootstrapped — failed or never tried — shuffled with Random(0).
        let mut validation: Vec<Example> = trainset
            .iter()
            .zip(&outcome.bootstrapped)
            .filter(|(_, done)| !**done)
            .map(|(ex, _)| ex.clone())
            .collect();
        PyRandom::new(0).shuffle(&mut validation);

        let mut rng = PyRandom::new(0);
        let mut traces = outcome.traces.into_iter();
        student.visit_predictors_mut("", &mut |_, params| {
            let mut demos: Vec<Example> = traces
                .next()
                .unwrap_or_default()
                .into_iter()
                .take(self.config.max_bootstrapped_demos)
                .collect();
            let n = self
                .config
                .max_labeled_demos
                .saturating_sub(demos.len())
                .min(validation.len());
            // n <= validation.len(), so the sample cannot fail.
            demos.extend(rng.sample(&validation, n).unwrap_or_default());
            params.demos = demos;
        });
        Ok((student, outcome.report))
    }

    /// The bootstrapping loop: concurrent runs, committed in training-set order. By default a
    /// run starts (or continues after an error) only once the sequential loop is sure to make
    /// it; with [`speculative`](Self::speculative), whenever a slot is free.
    async fn bootstrap<T: Optimizable>(
        &self,
        teacher: &T,
        predictors: usize,
        trainset: &[Example],
        ctx: &JobContext,
    ) -> Result<Bootstrapped> {
        let max_errors = self.config.error_budget();
        let max_bootstrapped = self.config.max_bootstrapped_demos;
        let concurrency = self.config.runs_at_once();
        let ids = predictor_ids(teacher);
        let mut out = Bootstrapped {
            traces: vec![Vec::new(); predictors],
            bootstrapped: vec![false; trainset.len()],
            report: BootstrapReport::default(),
        };
        // Examples launched and not committed yet, by index.
        let mut slots: BTreeMap<usize, Slot> = BTreeMap::new();
        let mut committed = Counts::default();
        let mut in_flight: FuturesUnordered<RunFuture<'_>> = FuturesUnordered::new();
        let mut next_launch = 0usize;
        let mut next_commit = 0usize;
        ctx.phase("bootstrapping", Some(trainset.len()));
        loop {
            // Commit finished runs in training-set order, as the sequential loop sees them.
            let finished = loop {
                if ctx.is_cancelled()
                    || committed.successes >= max_bootstrapped
                    || next_commit >= trainset.len()
                {
                    break true;
                }
                let Some(slot) = slots.get(&next_commit) else {
                    break false;
                };
                match slot.state {
                    SlotState::Running => break false,
                    SlotState::Paused if self.may_resume(committed, &slots, next_commit) => {
                        break false;
                    }
                    // A paused run that may not go on: its last error used up the budget,
                    // and committing it ends the compile.
                    SlotState::Paused | SlotState::Done => {}
                }
                let Some(slot) = slots.remove(&next_commit) else {
                    break false;
                };
                let example = &trainset[next_commit];
                let rounds = slot.attempts.len();
                let mut example_errors = 0usize;
                let mut score = 0.0;
                let mut bootstrapped = false;
                out.report.lm_requests += slot.lm_requests();
                for (round, attempt) in slot.attempts.into_iter().enumerate() {
                    out.report.attempts += 1;
                    match attempt {
                        Attempt::Success { demos, score: s } => {
                            score = s;
                            bootstrapped = true;
                            for (traces, demo) in out.traces.iter_mut().zip(demos) {
                                traces.extend(demo);
                            }
                        }
                        Attempt::Failure { score: s } => score = s,
                        Attempt::Error(e) => {
                            score = 0.0;
                            committed.errors += 1;
                            example_errors += 1;
                            if committed.errors >= max_errors {
                                return Err(Error::step(
                                    "BootstrapFewShot",
                                    BootstrapError::TooManyErrors {
                                        example: next_commit,
                                        round,
                                        errors: committed.errors,
                                        max_errors,
                                        source: Box::new(e),
                                    },
                                ));
                            }
                            tracing::error!(
                                "Failed to run or to evaluate example {example} with {} due to {e}.",
                                self.metric.as_ref().map_or("None", |m| m.name())
                            );
                        }
                    }
                }
                if bootstrapped {
                    committed.successes += 1;
                    out.bootstrapped[next_commit] = true;
                }
                ctx.trial(TrialEvent {
                    trial: next_commit,
                    score,
                    minibatch: false,
                    candidate: candidate(next_commit, rounds, bootstrapped, example_errors),
                });
                next_commit += 1;
            };
            if finished {
                break;
            }
            // Paused runs (an error, more rounds to go) that the sequential loop goes on with.
            let resumable: Vec<usize> = slots
                .iter()
                .filter(|(_, slot)| slot.state == SlotState::Paused)
                .map(|(&index, _)| index)
                .filter(|&index| self.may_resume(committed, &slots, index))
                .collect();
            for index in resumable {
                if in_flight.len() >= concurrency {
                    break;
                }
                if let Some(slot) = slots.get_mut(&index) {
                    slot.state = SlotState::Running;
                    in_flight.push(self.launch(teacher, &ids, trainset, index, slot));
                }
            }
            // By default only runs the sequential loop surely makes; speculative, any run
            // within `concurrency` examples of the next one to commit.
            while in_flight.len() < concurrency
                && next_launch < trainset.len()
                && if self.speculative {
                    next_launch < next_commit + concurrency
                } else {
                    self.reached(committed, &slots, next_launch)
                }
            {
                let slot = slots.entry(next_launch).or_insert_with(Slot::new);
                in_flight.push(self.launch(teacher, &ids, trainset, next_launch, slot));
                next_launch += 1;
            }
            if in_flight.is_empty() {
                break;
            }
            // A cancellation stops the loop at once: the runs in flight are dropped below.
            let Some(next) = ctx.run_until_cancelled(in_flight.next()).await else {
                break;
            };
            if let Some((index, attempts, paused)) = next
                && let Some(slot) = slots.get_mut(&index)
            {
                slot.attempts.extend(attempts);
                slot.state = if paused {
                    SlotState::Paused
                } else {
                    SlotState::Done
                };
            }
        }
        // Runs still in flight are speculative, or cancelled: dropping them discards their
        // outcomes (and their LM calls).
        drop(in_flight);
        let report = &mut out.report;
        report.examples = next_commit;
        report.bootstrapped = committed.successes;
        report.errors = committed.errors;
        for slot in slots.values() {
            report.discarded_runs += 1;
            report.dropped_in_flight += usize::from(slot.state == SlotState::Running);
            report.discarded_lm_requests += slot.lm_requests();
        }
        tracing::info!(
            "Bootstrapped {} full traces after {} examples for up to {} rounds, amounting to {} attempts.",
            committed.successes,
            next_commit.saturating_sub(1),
            self.max_rounds,
            report.attempts
        );
        if report.discarded_runs > 0 {
            tracing::info!(
                discarded_runs = report.discarded_runs,
                dropped_in_flight = report.dropped_in_flight,
                discarded_lm_requests = report.discarded_lm_requests,
                "teacher runs past the last committed example were thrown away"
            );
        }
        Ok(out)
    }

    /// Starts (or resumes, after its last round) the runs of example `index`, counting its LM
    /// calls in the slot's tracker.
    fn launch<'a, T: Optimizable>(
        &'a self,
        teacher: &'a T,
        ids: &'a [(PredictorId, usize)],
        trainset: &'a [Example],
        index: usize,
        slot: &Slot,
    ) -> RunFuture<'a> {
        let usage = slot.usage.clone();
        let run = self.run_example(teacher, ids, &trainset[index], slot.attempts.len());
        Box::pin(async move {
            let (attempts, paused) = usage.scope(run).await;
            (index, attempts, paused)
        })
    }

    /// The most examples the sequential loop can have bootstrapped, and the most errors it can
    /// have counted, before it reaches example `upto` (every example before it is committed
    /// or launched): the committed counts, plus those of the runs known, plus, for a run not
    /// finished, a success and an error in every round it has left.
    fn most_before(&self, committed: Counts, slots: &BTreeMap<usize, Slot>, upto: usize) -> Counts {
        let mut most = committed;
        for slot in slots.range(..upto).map(|(_, slot)| slot) {
            let errors = slot.errors();
            if slot.state == SlotState::Done {
                most.successes += usize::from(slot.succeeded());
                most.errors += errors;
            } else {
                most.successes += 1;
                most.errors += errors + self.max_rounds.saturating_sub(slot.attempts.len());
            }
        }
        most
    }

    /// Whether the sequential loop surely reaches example `index`: fewer than
    /// `max_bootstrapped_demos` bootstrapped examples and fewer than `max_errors` errors
    /// before it, whatever the runs in flight turn out to be.
    fn reached(&self, committed: Counts, slots: &BTreeMap<usize, Slot>, index: usize) -> bool {
        let most = self.most_before(committed, slots, index);
        most.successes < self.config.max_bootstrapped_demos
            && most.errors < self.config.error_budget()
    }

    /// Whether the sequential loop surely runs the next round of the paused example `index`:
    /// its errors so far, and those before it, stay under `max_errors`.
    fn may_resume(&self, committed: Counts, slots: &BTreeMap<usize, Slot>, index: usize) -> bool {
        let own = slots.get(&index).map_or(0, Slot::errors);
        self.most_before(committed, slots, index).errors + own < self.config.error_budget()
    }

    /// The rounds of one example from `first_round` on, until one succeeds: DSPy's
    /// `_bootstrap_one_example` per round, with the teacher's demos equal to the example
    /// hidden. Unless speculative, it pauses after a round that errs while rounds are left
    /// (`true`): whether the sequential loop goes on depends on the errors before it.
    async fn run_example<T: Optimizable>(
        &self,
        teacher: &T,
        ids: &[(PredictorId, usize)],
        example: &Example,
        first_round: usize,
    ) -> (Vec<Attempt>, bool) {
        let hides_demo = teacher
            .named_predictors()
            .iter()
            .any(|(_, p)| p.demos.contains(example));
        if hides_demo {
            let mut filtered = teacher.clone();
            filtered.visit_predictors_mut("", &mut |_, params| {
                params.demos.retain(|d| d != example);
            });
            // The copy stays where it is for the runs (this future is pinned), so the ids its
            // predictors record match these.
            let ids = predictor_ids(&filtered);
            self.rounds(&filtered, &ids, example, first_round).await
        } else {
            self.rounds(teacher, ids, example, first_round).await
        }
    }

    /// The loop of [`run_example`](Self::run_example) over rounds.
    async fn rounds<T: ExampleProgram + Module>(
        &self,
        teacher: &T,
        ids: &[(PredictorId, usize)],
        example: &Example,
        first_round: usize,
    ) -> (Vec<Attempt>, bool) {
        let mut attempts = Vec::with_capacity(self.max_rounds.saturating_sub(first_round));
        for round in first_round..self.max_rounds {
            let attempt = self.attempt(teacher, ids, example, round).await;
            let success = matches!(attempt, Attempt::Success { .. });
            let error = matches!(attempt, Attempt::Error(_));
            attempts.push(attempt);
            if success {
                break;
            }
            if error && !self.speculative && round + 1 < self.max_rounds {
                return (attempts, true);
            }
        }
        (attempts, false)
    }

    /// One run of the teacher on `example` and its verdict.
    async fn attempt<T: ExampleProgram + Module>(
        &self,
        teacher: &T,
        ids: &[(PredictorId, usize)],
        example: &Example,
        round: usize,
    ) -> Attempt {
        let trace = Trace::new();
        let mut scope = self.teacher_settings.clone().trace(trace.clone());
        if round > 0 {
            scope = scope.merged(&Settings::new().call_defaults(CallConfig {
                temperature: Some(1.0),
                rollout_id: Some(round as u64),
                ..CallConfig::default()
            }));
        }
        let prediction = match with_settings(scope, teacher.run_example(example)).await {
            Ok(prediction) => prediction,
            Err(e) => return Attempt::Error(e),
        };
        let entries = trace.take();
        let (success, score) = match &self.metric {
            None => (true, 1.0),
            Some(metric) => {
                // The metric's own predictor calls are recorded nowhere that matters.
                let scope = self.teacher_settings.clone().trace(Trace::new());
                match with_settings(scope, metric.score(example, &prediction, Some(&entries))).await
                {
                    Ok(value) => (self.config.accepts(value), value),
                    Err(e) => return Attempt::Error(e),
                }
            }
        };
        if !success {
            return Attempt::Failure { score };
        }
        let mut demos: Vec<Option<Example>> = vec![None; ids.len()];
        for entry in &entries {
            if let Some(&(_, slot)) = ids.iter().find(|(id, _)| *id == entry.predictor)
                && let Some(demo) = demos.get_mut(slot)
            {
                // One demo per predictor per example: the last call's.
                *demo = Some(augmented_demo(entry));
            }
        }
        Attempt::Success { demos, score }
    }
}

impl Optimizer for BootstrapFewShot {
    /// Compiles with a copy of the student (and its demos) as the teacher, relabeled unless
    /// `max_labeled_demos` is 0.
    async fn compile_in<P: Optimizable>(
        &self,
        student: P,
        trainset: &[Example],
        ctx: &JobContext,
    ) -> Result<P> {
        let teacher = student.clone();
        self.compile_with_teacher_in(student, Teacher::Program(teacher), trainset, ctx)
            .await
    }
}

/// The runs of one example: its index, the rounds run, and whether it paused after an error.
type RunFuture<'a> = Pin<Box<dyn Future<Output = (usize, Vec<Attempt>, bool)> + Send + 'a>>;

/// What the bootstrapping loop committed.
struct Bootstrapped {
    /// Per predictor (in `named_predictors` order), the demos of bootstrapped examples in
    /// training-set order (DSPy's `name2traces`).
    traces: Vec<Vec<Example>>,
    /// Per example, whether it was bootstrapped.
    bootstrapped: Vec<bool>,
    /// What it took.
    report: BootstrapReport,
}

/// Bootstrapped examples and errors, as counted in training-set order.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    successes: usize,
    errors: usize,
}

/// An example launched and not committed yet.
struct Slot {
    /// Its rounds so far.
    attempts: Vec<Attempt>,
    state: SlotState,
    /// Counts the LM calls of its rounds.
    usage: UsageTracker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// A run of it is in flight.
    Running,
    /// Its last round erred and rounds are left; it goes on once the sequential loop surely
    /// would.
    Paused,
    /// Its rounds are over.
    Done,
}

impl Slot {
    fn new() -> Self {
        Slot {
            attempts: Vec::new(),
            state: SlotState::Running,
            usage: UsageTracker::new(),
        }
    }

    fn succeeded(&self) -> bool {
        self.attempts
            .iter()
            .any(|a| matches!(a, Attempt::Success { .. }))
    }

    fn errors(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| matches!(a, Attempt::Error(_)))
            .count()
    }

    /// LM requests its rounds sent.
    fn lm_requests(&self) -> u64 {
        self.usage.report().total().requests
    }
}

/// One round's outcome.
enum Attempt {
    /// The metric accepted the run: per predictor, its demo if it was called.
    Success {
        demos: Vec<Option<Example>>,
        score: f64,
    },
    /// The metric rejected the run.
    Failure { score: f64 },
    /// The teacher or the metric failed.
    Error(Error),
}

/// The teacher's predictors by identity, with their position.
fn predictor_ids<T: Module + ?Sized>(teacher: &T) -> Vec<(PredictorId, usize)> {
    teacher
        .named_predictors()
        .into_iter()
        .enumerate()
        .map(|(i, (_, p))| (PredictorId::of(p), i))
        .collect()
}

/// `Example(augmented=True, **inputs, **outputs)`: no input keys; the outputs' hidden `dspy_`
/// keys are left out, as Python's `**prediction` leaves them out.
pub(crate) fn augmented_demo(entry: &TraceEntry) -> Example {
    let mut demo = Example::new().with("augmented", true);
    for (key, value) in entry.inputs.iter_all() {
        demo.insert(key, value.clone());
    }
    for (key, value) in entry.outputs.iter() {
        demo.insert(key, value.clone());
    }
    demo
}

fn candidate(
    example: usize,
    rounds: usize,
    bootstrapped: bool,
    errors: usize,
) -> Map<String, Value> {
    match json!({
        "example": example,
        "rounds": rounds,
        "bootstrapped": bootstrapped,
        "errors": errors,
    }) {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// DSPy's `_prepare_predictor_mappings` checks: same count, names and signatures. Returns the
/// predictor names.
fn check_structure<P: Module, T: Module>(
    student: &P,
    teacher: &T,
) -> std::result::Result<Vec<String>, BootstrapError> {
    let s = student.named_predictors();
    let t = teacher.named_predictors();
    if s.len() != t.len() {
        return Err(BootstrapError::PredictorCount {
            student: s.len(),
            teacher: t.len(),
        });
    }
    for (index, ((sn, sp), (tn, tp))) in s.iter().zip(&t).enumerate() {
        if sn != tn {
            return Err(BootstrapError::PredictorName {
                index,
                student: sn.clone(),
                teacher: tn.clone(),
            });
        }
        if let Some(detail) = signature_difference(sp, tp) {
            return Err(BootstrapError::Signature {
                predictor: sn.clone(),
                detail,
            });
        }
    }
    Ok(s.into_iter().map(|(n, _)| n).collect())
}

/// What DSPy's `Signature.equals` finds different: the instructions, the set of field names, or
/// a field's role, prefix or description (types are not compared).
fn signature_difference(student: &PredictorParams, teacher: &PredictorParams) -> Option<String> {
    let (a, b) = (&student.signature, &teacher.signature);
    if a.instructions() != b.instructions() {
        return Some(format!(
            "the instructions differ ({:?} vs {:?})",
            a.instructions(),
            b.instructions()
        ));
    }
    for field in a.fields() {
        let Some(other) = b.field(field.name()) else {
            return Some(format!("the teacher has no field `{}`", field.name()));
        };
        if field.role() != other.role()
            || field.prefix() != other.prefix()
            || field.desc() != other.desc()
        {
            return Some(format!(
                "field `{}` differs in role, prefix or description",
                field.name()
            ));
        }
    }
    b.fields()
        .find(|f| a.field(f.name()).is_none())
        .map(|f| format!("the student has no field `{}`", f.name()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{metric_fn, metric_with_trace};
    use crate::example::Prediction;
    use crate::lm::ScriptedLM;
    use crate::module::DynPredict;
    use crate::optimize::qa_trainset as trainset;
    use crate::program::{Program, join_path};
    use crate::signature::{DynSignature, FieldSpec, TypeSpec};

    /// Calls one predictor twice per run: on the question, then on `again: <question>`.
    #[derive(Clone)]
    struct Twice {
        p: DynPredict,
    }

    impl Module for Twice {
        fn visit_predictors<'a>(
            &'a self,
            path: &str,
            visit: &mut dyn FnMut(String, &'a PredictorParams),
        ) {
            self.p.visit_predictors(&join_path(path, "p"), visit);
        }

        fn visit_predictors_mut<'a>(
            &'a mut self,
            path: &str,
            visit: &mut dyn FnMut(String, &'a mut PredictorParams),
        ) {
            self.p.visit_predictors_mut(&join_path(path, "p"), visit);
        }
    }

    impl Program for Twice {
        type Input = Example;
        type Output = Prediction;

        async fn forward(&self, input: Example) -> Result<Prediction> {
            let first = self.p.call(&input).await?;
            let question = format!("again: {}", input.get_str("question").unwrap_or(""));
            let second = self
                .p
                .call(&Example::new().with("question", question))
                .await?;
            let mut out = second;
            out.insert("first", first.get("answer").cloned().unwrap_or_default());
            Ok(out)
        }
    }

    fn qa() -> DynPredict {
        DynPredict::new(DynSignature::parse("question -> answer").unwrap())
    }

    fn block<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn repeated_calls_of_a_predictor_keep_the_last_one() {
        let lm = ScriptedLM::from_fields([json!({"answer": "one"}), json!({"answer": "two"})]);
        let optimizer = BootstrapFewShot::new()
            .max_bootstrapped_demos(1)
            .max_labeled_demos(1)
            .concurrency(1);
        let compiled = block(with_settings(
            Settings::new().lm(lm),
            optimizer.compile(Twice { p: qa() }, &trainset(1)),
        ))
        .unwrap();
        assert_eq!(
            serde_json::to_value(&compiled.p.params().demos).unwrap(),
            json!([{"augmented": true, "question": "again: Q0", "answer": "two"}])
        );
    }

    #[test]
    fn augmented_demos_order_keys_as_dspy() {
        let entry = TraceEntry {
            predictor: PredictorId::of(qa().params()),
            inputs: Example::new()
                .with("question", "Q")
                .with("context", "C")
                .with_inputs(["question", "context"]),
            outputs: Prediction::from_pairs([
                ("reasoning", json!("R")),
                ("dspy_uuid", json!("x")),
                ("answer", json!("A")),
            ]),
        };
        let demo = augmented_demo(&entry);
        assert_eq!(
            demo.iter_all().map(|(k, _)| k).collect::<Vec<_>>(),
            ["augmented", "question", "context", "reasoning", "answer"]
        );
        assert!(demo.input_keys().is_none());
    }

    #[test]
    fn no_bootstrapping_no_examples_and_what_the_metric_sees() {
        // max_bootstrapped_demos = 0: nothing runs, every predictor gets labeled demos only.
        let lm = ScriptedLM::new(Vec::<String>::new());
        let compiled = block(with_settings(
            Settings::new().lm(lm.clone()),
            BootstrapFewShot::new()
                .max_bootstrapped_demos(0)
                .max_labeled_demos(2)
                .compile(qa(), &trainset(5)),
        ))
        .unwrap();
        assert_eq!(lm.calls(), 0);
        // Random(0).shuffle of the 5 examples, then Random(0).sample(validation, 2).
        let mut validation = trainset(5);
        PyRandom::new(0).shuffle(&mut validation);
        let expected = PyRandom::new(0).sample(&validation, 2).unwrap();
        assert_eq!(compiled.params().demos, expected);

        // An empty training set: the student without demos.
        let mut student = qa();
        student.params_mut().demos = trainset(2);
        let compiled = block(BootstrapFewShot::new().compile(student, &[])).unwrap();
        assert!(compiled.params().demos.is_empty());

        // The metric is called with the run's trace; teacher settings pick the teacher's LM.
        let teacher_lm = ScriptedLM::from_fields([json!({"answer": "A0"})]);
        let outer_lm = ScriptedLM::new(Vec::<String>::new());
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen_in_metric = seen.clone();
        let metric = metric_with_trace(
            "traced",
            move |_: &Example, _: &Prediction, trace: Option<&[TraceEntry]>| {
                let trace = trace.unwrap_or_default();
                seen_in_metric
                    .lock()
                    .unwrap()
                    .push(trace.iter().map(|e| e.outputs.clone()).collect::<Vec<_>>());
                !trace.is_empty()
            },
        );
        let compiled = block(with_settings(
            Settings::new().lm(outer_lm.clone()),
            BootstrapFewShot::new()
                .metric(metric)
                .teacher_settings(Settings::new().lm(teacher_lm.clone()))
                .max_bootstrapped_demos(1)
                .max_labeled_demos(1)
                .compile(qa(), &trainset(1)),
        ))
        .unwrap();
        assert_eq!((teacher_lm.calls(), outer_lm.calls()), (1, 0));
        assert_eq!(
            *seen.lock().unwrap(),
            [vec![Prediction::from_pairs([("answer", "A0")])]]
        );
        assert_eq!(
            compiled.params().demos[0].get("augmented"),
            Some(&json!(true))
        );
    }

    #[test]
    fn metric_errors_count_as_errors() {
        let lm = ScriptedLM::from_fields([json!({"answer": "x"})]).repeat_last();
        let failing = metric_fn("failing", |_: &Example, _: &Prediction| -> Result<bool> {
            Err(Error::step("judging", "no judge"))
        });
        let err = block(with_settings(
            Settings::new().lm(lm.clone()),
            BootstrapFewShot::new()
                .metric(failing)
                .concurrency(3)
                .compile(qa(), &trainset(20)),
        ))
        .unwrap_err();
        // The default budget: the 10th error (example 9) ends the compile.
        match BootstrapError::find(&err) {
            Some(BootstrapError::TooManyErrors {
                example, errors, ..
            }) => assert_eq!(
                (*example, *errors),
                (9, crate::optimize::DEFAULT_MAX_ERRORS)
            ),
            other => panic!("{other:?}: {err}"),
        }
        assert!(err.to_string().contains("no judge"), "{err}");
    }

    /// Counts the calls it starts, fails those on the questions `Q{i}` with `i` in `failing`,
    /// and answers the others — after `i % 3` yields, so concurrent runs finish out of order —
    /// through a ScriptedLM that always says `x` (so that usage tracking counts them).
    #[derive(Clone)]
    struct SlowLm {
        inner: ScriptedLM,
        failing: Arc<[usize]>,
        started: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl SlowLm {
        fn new(failing: &[usize]) -> Self {
            SlowLm {
                inner: ScriptedLM::from_fields([json!({"answer": "x"})])
                    .repeat_last()
                    .without_recording(),
                failing: failing.into(),
                started: Arc::default(),
            }
        }

        fn started(&self) -> usize {
            self.started.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// The `i` of the last `Q{i}` in the request (the question asked, not a demo's).
    fn question(request: &crate::lm::LmRequest) -> usize {
        let text = request
            .messages
            .last()
            .and_then(|m| m.content.as_text())
            .unwrap_or("");
        let digits: String = text
            .rfind('Q')
            .map(|at| &text[at + 1..])
            .unwrap_or("")
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap_or(usize::MAX)
    }

    impl crate::lm::LanguageModel for SlowLm {
        fn model(&self) -> &str {
            "slow"
        }

        fn call(
            &self,
            request: crate::lm::LmRequest,
        ) -> futures_util::future::BoxFuture<
            '_,
            std::result::Result<crate::lm::LmResponse, crate::lm::LmError>,
        > {
            Box::pin(async move {
                self.started
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let i = question(&request);
                for _ in 0..i % 3 {
                    tokio::task::yield_now().await;
                }
                if self.failing.contains(&i) {
                    return Err(crate::lm::LmError::Config {
                        model: "slow".into(),
                        message: format!("no answer for Q{i}"),
                    });
                }
                self.inner.call(request).await
            })
        }
    }

    /// Accepts every run but those of the examples in `rejected`.
    fn all_but(rejected: &'static [usize]) -> impl Metric + 'static {
        metric_fn("all_but", move |ex: &Example, _: &Prediction| {
            let q = ex.get_str("question").unwrap_or("");
            !rejected.contains(&q[1..].parse::<usize>().unwrap_or(usize::MAX))
        })
    }

    /// Compiles `qa()` on `n` examples with `optimizer` and `lm`: the program (or error), the
    /// report, and the LM calls started.
    fn compile_counting(
        optimizer: &BootstrapFewShot,
        lm: &SlowLm,
        n: usize,
    ) -> (Result<(DynPredict, BootstrapReport)>, usize) {
        let out = block(with_settings(
            Settings::new().lm(lm.clone()),
            optimizer.compile_with_report(
                qa(),
                Teacher::Program(qa()),
                &trainset(n),
                &JobContext::detached(),
            ),
        ));
        (out, lm.started())
    }

    #[test]
    fn by_default_only_the_sequential_runs_calls_are_made() {
        // Every run succeeds: DSPy's loop runs examples 0..4 and stops.
        let optimizer = BootstrapFewShot::new()
            .max_bootstrapped_demos(4)
            .max_labeled_demos(4);
        assert_eq!(optimizer.demo_config().concurrency, 16);
        let lm = SlowLm::new(&[]);
        let (out, started) = compile_counting(&optimizer, &lm, 20);
        let (compiled, report) = out.unwrap();
        assert_eq!(started, 4);
        assert_eq!(lm.inner.calls(), 4);
        assert_eq!(
            report,
            BootstrapReport {
                examples: 4,
                bootstrapped: 4,
                attempts: 4,
                errors: 0,
                lm_requests: 4,
                discarded_runs: 0,
                dropped_in_flight: 0,
                discarded_lm_requests: 0,
            }
        );

        // Rejected examples and a teacher error: still exactly the sequential calls, and the
        // same program at every concurrency. With 2 rounds: 0 ✓, 1 ✗✗, 2 two errors, 3 ✓, 4 ✓,
        // 5 ✗✗, 6 ✓ → 10 calls, 8 of them answered.
        let optimizer = optimizer.metric(all_but(&[1, 2, 5])).max_rounds(2);
        let mut programs = Vec::new();
        for concurrency in [1, 3, 16] {
            let lm = SlowLm::new(&[2]);
            let optimizer = optimizer.clone().concurrency(concurrency);
            let (out, started) = compile_counting(&optimizer, &lm, 20);
            let (compiled, report) = out.unwrap();
            assert_eq!(started, 10, "{concurrency}");
            assert_eq!(lm.inner.calls(), 8, "{concurrency}");
            assert_eq!(
                (
                    report.examples,
                    report.attempts,
                    report.errors,
                    report.lm_requests
                ),
                (7, 10, 2, 8),
                "{concurrency}"
            );
            assert_eq!(report.discarded_runs, 0, "{concurrency}");
            programs.push(compiled.params().demos.clone());
        }
        assert!(programs.iter().all(|p| *p == programs[0]));
        assert_eq!(compiled.params().demos.len(), 4);
    }

    #[test]
    fn by_default_no_round_runs_past_the_error_that_ends_the_compile() {
        // 3 rounds, max_errors 4; the teacher fails on Q1 and Q2. DSPy: Q0 ✓, Q1 three
        // errors, Q2 round 0 is the 4th error and is re-raised: 5 calls.
        let optimizer = BootstrapFewShot::new()
            .max_bootstrapped_demos(4)
            .max_rounds(3)
            .max_errors(4);
        for concurrency in [1, 16] {
            let lm = SlowLm::new(&[1, 2]);
            let (out, started) =
                compile_counting(&optimizer.clone().concurrency(concurrency), &lm, 20);
            let err = out.unwrap_err();
            match BootstrapError::find(&err) {
                Some(BootstrapError::TooManyErrors {
                    example,
                    round,
                    errors,
                    ..
                }) => assert_eq!((*example, *round, *errors), (2, 0, 4)),
                other => panic!("{other:?}: {err}"),
            }
            assert_eq!(started, 5, "{concurrency}");
        }
        // Speculative runs go on past it (the same error comes back).
        let lm = SlowLm::new(&[1, 2]);
        let (out, started) = compile_counting(&optimizer.clone().speculative(true), &lm, 20);
        assert!(BootstrapError::find(&out.unwrap_err()).is_some());
        assert!(started > 5, "{started}");
    }

    #[test]
    fn speculation_makes_more_calls_and_reports_them() {
        let optimizer = BootstrapFewShot::new()
            .max_bootstrapped_demos(4)
            .max_labeled_demos(4);
        let lm = SlowLm::new(&[]);
        let (out, _) = compile_counting(&optimizer, &lm, 20);
        let (sequential, _) = out.unwrap();

        let lm = SlowLm::new(&[]);
        let (out, started) = compile_counting(&optimizer.clone().speculative(true), &lm, 20);
        let (compiled, report) = out.unwrap();
        assert_eq!(compiled.params().demos, sequential.params().demos);
        assert_eq!((report.examples, report.lm_requests), (4, 4));
        // 16 runs started at once, more as the first examples were committed, up to 16 past
        // the next one to commit.
        assert!(started > 4 && report.discarded_runs >= 12, "{report:?}");
        assert!(report.discarded_runs <= 15, "{report:?}");
        // Every call answered is counted; each run dropped in flight had one call pending.
        assert_eq!(
            lm.inner.calls() as u64,
            report.lm_requests + report.discarded_lm_requests
        );
        assert!(report.discarded_lm_requests > 0, "{report:?}");
        assert!(
            started as u64
                <= report.lm_requests
                    + report.discarded_lm_requests
                    + report.dropped_in_flight as u64,
            "{started} {report:?}"
        );
    }

    #[test]
    fn success_follows_python_truthiness() {
        let opt = |t: Option<f64>| DemoConfig {
            metric_threshold: t,
            ..DemoConfig::bootstrap_few_shot()
        };
        assert!(opt(None).accepts(0.3));
        assert!(!opt(None).accepts(0.0));
        assert!(opt(None).accepts(f64::NAN));
        assert!(opt(Some(0.0)).accepts(0.1));
        assert!(!opt(Some(0.0)).accepts(-0.0));
        assert!(!opt(Some(0.5)).accepts(0.4));
        assert!(opt(Some(0.5)).accepts(0.5));
        assert!(!opt(Some(f64::NAN)).accepts(1.0));
    }

    #[test]
    fn signatures_compare_as_dspys_equals() {
        let params = |sig: &str| {
            PredictorParams::new(DynSignature::parse(sig).unwrap().with_instructions("Same."))
        };
        assert!(
            signature_difference(&params("a -> b"), &qa().params().clone())
                .unwrap()
                .contains("instructions differ")
        );
        // Types are not compared; field order neither.
        assert_eq!(
            signature_difference(&params("a: int -> b"), &params("a: str -> b")),
            None
        );
        let mut other = params("a -> b");
        other.signature = other
            .signature
            .with_updated_field("b", |f| f.with_prefix("B!"))
            .unwrap();
        assert!(
            signature_difference(&params("a -> b"), &other)
                .unwrap()
                .contains("`b`")
        );
        assert!(
            signature_difference(&params("a -> b"), &params("a -> c"))
                .unwrap()
                .contains("no field `b`")
        );
        let extra = params("a -> b");
        let extra = PredictorParams::new(
            extra
                .signature
                .append(FieldSpec::input("c", TypeSpec::Str))
                .unwrap()
                .with_instructions("Same."),
        );
        assert!(
            signature_difference(&params("a -> b"), &extra)
                .unwrap()
                .contains("student has no field `c`")
        );
    }
}
