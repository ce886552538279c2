//! [`BootstrapFewShot`]: run a teacher on the training set, keep the traces of runs the metric
//! accepts as demos, and fill the rest with labeled examples — DSPy's algorithm, choice for
//! choice, with the teacher runs made concurrently.

use super::config::{DemoConfig, DemoKnobs};
use super::labeled::{LabeledFewShot, clear_demos};
use super::{JobContext, Optimizable, Optimizer, TrialEvent};
use crate::error::{Error, Result};
use crate::evaluate::{ExampleProgram, Metric};
use crate::example::Example;
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
/// # Concurrency that picks the sequential run's demos
///
/// DSPy runs the teacher on one example after another. Here up to
/// [`concurrency`](DemoKnobs::concurrency) examples run at once (default
/// [`DEFAULT_CONCURRENCY`](super::DEFAULT_CONCURRENCY)): runs are started speculatively in
/// training-set order — a slot that frees up takes the next example — but their outcomes are
/// *committed* strictly in training-set order, exactly as the sequential loop would consider
/// them. The first example that brings the count of bootstrapped examples to
/// `max_bootstrapped_demos` ends the loop; runs of later examples still in flight
/// are dropped and their outcomes (successes *and errors*) are never counted, so errors are
/// counted — and `max_errors` reached — exactly when the sequential run would. The demos, the
/// validation pool and therefore the compiled program are identical for every concurrency; the
/// price is at most `concurrency - 1` teacher runs whose results are thrown away. With
/// concurrency 1 the runs are exactly DSPy's, one at a time (an LM that answers in call order,
/// such as `ScriptedLM`, needs that).
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
        Ok(student)
    }

    /// The bootstrapping loop: speculative concurrent runs, committed in training-set order.
    async fn bootstrap<T: Optimizable>(
        &self,
        teacher: &T,
        predictors: usize,
        trainset: &[Example],
        ctx: &JobContext,
    ) -> Result<Bootstrapped> {
        let max_errors = self.config.error_budget();
        let concurrency = self.config.runs_at_once();
        let ids = predictor_ids(teacher);
        let mut out = Bootstrapped {
            traces: vec![Vec::new(); predictors],
            bootstrapped: vec![false; trainset.len()],
        };
        let mut successes = 0usize;
        let mut errors = 0usize;
        let mut attempts = 0usize;
        let mut in_flight: FuturesUnordered<RunFuture<'_>> = FuturesUnordered::new();
        let mut ready: BTreeMap<usize, Vec<Attempt>> = BTreeMap::new();
        let mut next_launch = 0usize;
        let mut next_commit = 0usize;
        ctx.phase("bootstrapping", Some(trainset.len()));
        loop {
            // Commit finished runs in training-set order, as the sequential loop sees them.
            let finished = loop {
                if ctx.is_cancelled()
                    || successes >= self.config.max_bootstrapped_demos
                    || next_commit >= trainset.len()
                {
                    break true;
                }
                let Some(runs) = ready.remove(&next_commit) else {
                    break false;
                };
                let example = &trainset[next_commit];
                let rounds = runs.len();
                let mut example_errors = 0usize;
                let mut score = 0.0;
                let mut bootstrapped = false;
                for (round, attempt) in runs.into_iter().enumerate() {
                    attempts += 1;
                    match attempt {
                        Attempt::Success { demos, score: s } => {
                            score = s;
                            bootstrapped = true;
                            for (slot, demo) in out.traces.iter_mut().zip(demos) {
                                slot.extend(demo);
                            }
                        }
                        Attempt::Failure { score: s } => score = s,
                        Attempt::Error(e) => {
                            score = 0.0;
                            errors += 1;
                            example_errors += 1;
                            if errors >= max_errors {
                                return Err(Error::step(
                                    "BootstrapFewShot",
                                    BootstrapError::TooManyErrors {
                                        example: next_commit,
                                        round,
                                        errors,
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
                    successes += 1;
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
            while in_flight.len() < concurrency && next_launch < trainset.len() {
                let index = next_launch;
                let run = self.run_example(teacher, &ids, &trainset[index]);
                in_flight.push(Box::pin(async move { (index, run.await) }));
                next_launch += 1;
            }
            if in_flight.is_empty() {
                break;
            }
            // A cancellation stops the loop at once: the runs in flight are dropped below.
            let Some(next) = ctx.run_until_cancelled(in_flight.next()).await else {
                break;
            };
            if let Some((index, runs)) = next {
                ready.insert(index, runs);
            }
        }
        // Runs still in flight are speculative, or cancelled: dropping them discards their
        // outcomes (and their LM calls).
        drop(in_flight);
        tracing::info!(
            "Bootstrapped {successes} full traces after {} examples for up to {} rounds, amounting to {attempts} attempts.",
            next_commit.saturating_sub(1),
            self.max_rounds
        );
        Ok(out)
    }

    /// Every round of one example, until one succeeds: DSPy's `_bootstrap_one_example` per
    /// round, with the teacher's demos equal to the example hidden.
    async fn run_example<T: Optimizable>(
        &self,
        teacher: &T,
        ids: &[(PredictorId, usize)],
        example: &Example,
    ) -> Vec<Attempt> {
        let hides_demo = teacher
            .named_predictors()
            .iter()
            .any(|(_, p)| p.demos.contains(example));
        let mut attempts = Vec::with_capacity(self.max_rounds);
        if hides_demo {
            let mut filtered = teacher.clone();
            filtered.visit_predictors_mut("", &mut |_, params| {
                params.demos.retain(|d| d != example);
            });
            // The copy stays where it is for the runs (this future is pinned), so the ids its
            // predictors record match these.
            let ids = predictor_ids(&filtered);
            for round in 0..self.max_rounds {
                let attempt = self.attempt(&filtered, &ids, example, round).await;
                let done = matches!(attempt, Attempt::Success { .. });
                attempts.push(attempt);
                if done {
                    break;
                }
            }
        } else {
            for round in 0..self.max_rounds {
                let attempt = self.attempt(teacher, ids, example, round).await;
                let done = matches!(attempt, Attempt::Success { .. });
                attempts.push(attempt);
                if done {
                    break;
                }
            }
        }
        attempts
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

type RunFuture<'a> = Pin<Box<dyn Future<Output = (usize, Vec<Attempt>)> + Send + 'a>>;

/// What the bootstrapping loop committed.
struct Bootstrapped {
    /// Per predictor (in `named_predictors` order), the demos of bootstrapped examples in
    /// training-set order (DSPy's `name2traces`).
    traces: Vec<Vec<Example>>,
    /// Per example, whether it was bootstrapped.
    bootstrapped: Vec<bool>,
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
fn augmented_demo(entry: &TraceEntry) -> Example {
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
