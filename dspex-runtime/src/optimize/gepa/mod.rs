//! [`GEPA`]: reflective prompt evolution (DSPy's `dspy.GEPA`, running the `gepa` 0.1.4 engine).
//!
//! - `budget` — the budget knobs, DSPy's `auto` formula ([`auto_budget`]) and [`GepaError`].
//! - `state` — candidates, parents, per-instance validation scores and the Pareto front.
//! - `sampler` — the parent ([`CandidateSelection`]), the epoch-shuffled minibatch and the
//!   components to rewrite ([`ComponentSelection`]).
//! - `merge` — merging two candidates that changed different components.
//! - `adapter` — DSPy's adapter: programs from candidates, runs with traces, the reflective
//!   dataset ([`ReflectiveExample`]) and the proposer ([`InstructionProposer`],
//!   [`DefaultInstructionProposer`]).
//! - `feedback` — metrics with feedback ([`FeedbackMetric`], [`ScoreWithFeedback`],
//!   [`feedback_metric_fn`]).
//! - `result` — [`GepaResult`], DSPy's `detailed_results`.
//!
//! # Exactness
//!
//! The run draws from two CPython generators seeded with `seed`, as DSPy does: gepa's
//! `random.Random(seed)`, shared by the Pareto selector, the epoch-shuffled batch sampler and
//! the merge proposer, in that order of use; and DSPy's adapter's own `Random(seed)`, which picks
//! the trace entry of each reflective example. With a deterministic LM and metric and
//! `num_threads(1)`, the LM calls, candidates and fronts are DSPy's (the parity test in
//! `tests/tests/gepa_parity.rs` checks them).
//!
//! gepa iterates Python `set`s before several seeded choices: the Pareto fronts (sets of
//! candidate indices) when it builds the selector's sampling list and the merge candidates, and
//! the ancestors of a merge pair. CPython iterates a set of ints in hash-table slot order, which
//! is not ascending once indices outgrow the table (`{3, 9}` iterates as `9, 3`); dspex rebuilds
//! those sets as `dspex_core::pycompat::intset::PyIntSet`, CPython's table, so the
//! choices land where DSPy's do for any number of candidates.
//!
//! One corner is left to `PYTHONHASHSEED`: a merge visits the component names as a Python `set`
//! of strings, whose order depends on the per-process string hash. It only matters when both
//! merged candidates changed the same component and have equal mean scores (then a seeded
//! tie-break is drawn per such component, in that order); dspex visits the components in the
//! program's order. The parity generator runs with `PYTHONHASHSEED=0`, and its cases never hit
//! such a tie.
//!
//! Where dspex differs on purpose: a run resumed from `log_dir` restores both generators, the
//! sampler and the merge bookkeeping from the saved state (gepa restarts its generator from the
//! seed and re-evaluates the seed program without counting it), so a resumed run continues as
//! the uninterrupted one would have. Parse failures are scored `failure_score` (DSPy's GEPA
//! passes it as the format-failure score too) and, with `add_format_failure_as_feedback`, the
//! failed call is the one reflected on, as DSPy does (the trace's
//! [`FailedParse`](crate::settings::FailedParse) records). Reflective records hold a predictor's inputs and outputs as their
//! JSON values; DSPy moves a `dspy.History` input to a leading `Context` key and hands other
//! `dspy.Type` values (images, …) to the JSONAdapter as objects, which dspex does not do yet.

mod adapter;
mod budget;
mod feedback;
mod merge;
mod result;
mod sampler;
mod state;

pub use adapter::{
    DefaultInstructionProposer, InstructionProposer, ReflectiveDataset, ReflectiveExample,
};
pub use budget::{Budget, GepaError, auto_budget};
pub use feedback::{
    FeedbackFn, FeedbackMetric, IntoFeedback, PredictorFocus, ScoreWithFeedback, feedback_metric_fn,
};
pub use result::{GepaOutcome, GepaResult};
pub use sampler::{CandidateSelection, ComponentSelection};

use super::mipro::Auto;
use super::{JobContext, Optimizable, Optimizer, TrialEvent};
use crate::error::{Error, Result};
use crate::example::Example;
use crate::lm::LanguageModel;
use crate::pycompat::PyRandom;
use adapter::{Rollout, Runner, build_program, reflective_dataset};
use merge::{MergeState, attempt_merge, merge_subsample};
use sampler::{EpochSampler, select_candidate, select_components};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use state::{GepaState, Texts};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Evaluations in flight at once when `num_threads` is not set (DSPy's `settings.num_threads`).
const DEFAULT_NUM_THREADS: usize = 8;

/// The file in `log_dir` holding the run's state.
const STATE_FILE: &str = "gepa_state.json";

/// DSPy's `GEPA` optimizer: evolves the instructions of every named predictor by reflection.
///
/// Each iteration picks a parent candidate from the Pareto front (the candidates best on some
/// validation instance), runs it on a minibatch of the trainset with traces, asks the metric
/// for feedback on one predictor's calls, has the reflection LM write that predictor a new
/// instruction, and keeps the child if it scores strictly higher on the same minibatch; kept
/// children are scored on the whole valset and join the front. With `use_merge`, candidates
/// that improved different predictors are also merged. The budget counts metric calls.
///
/// The metric is a [`FeedbackMetric`]: any [`Metric`](crate::evaluate::Metric), or a closure
/// over DSPy's five arguments returning a score with feedback ([`feedback_metric_fn`]).
///
/// Components are the program's named predictors (any [`Optimizable`] program: several
/// predictors, ReAct, …); only their instructions change. As a [job](super::Job), every
/// evaluation is a trial: its JSONL line holds the iteration, the kind (`seed`, `parent
/// minibatch`, `child minibatch`, `reflective`, `merge subsample`, `merge`), the parents, the
/// new candidate's index and instructions, the metric calls used, the budget and the Pareto
/// front's size; the phase reads `iteration N: used/budget metric calls, Pareto front of K`, and
/// the best score is the best mean validation score. Examples are evaluated `num_threads` at a
/// time. Cancelling drops the work in flight and returns the best candidate scored so far (or
/// [`Error::Cancelled`] before the seed program was scored).
///
/// ```
/// use dspex_runtime::evaluate::answer_exact_match;
/// use dspex_runtime::lm::ScriptedLM;
/// use dspex_runtime::module::DynPredict;
/// use dspex_runtime::optimize::gepa::{GEPA, ScoreWithFeedback, feedback_metric_fn};
/// use dspex_runtime::optimize::{Auto, Optimizer};
/// use dspex_runtime::settings::{Settings, with_settings};
/// use dspex_runtime::{DynSignature, Example, Prediction};
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let metric = feedback_metric_fn("exact", |gold: &Example, pred: &Prediction, _trace, _focus| {
///     let right = gold.get("answer") == pred.get("answer");
///     ScoreWithFeedback::new(f64::from(u8::from(right)), if right { "Right." } else { "Wrong." })
/// });
/// let gepa = GEPA::new(metric)
///     .max_metric_calls(4)
///     .reflection_minibatch_size(1)
///     .reflection_lm(ScriptedLM::new([r#"{"new_instruction": "Answer with 4."}"#]))
///     .num_threads(1);
/// let trainset = vec![Example::new().with("question", "2+2?").with("answer", "4").with_inputs(["question"])];
/// let student = DynPredict::new(DynSignature::parse("question -> answer")?);
/// // The seed's valset run and its minibatch answer 5; the child's minibatch and valset runs 4.
/// let answers = ["5", "5", "4", "4"].map(|a| json!({"answer": a}));
/// let lm = ScriptedLM::from_fields(answers);
/// let compiled = with_settings(Settings::new().lm(lm), gepa.compile(student, &trainset)).await?;
/// assert_eq!(compiled.params().instructions(), "Answer with 4.");
///
/// // Plain metrics work too, and `auto` sets the budget.
/// let _ = GEPA::new(answer_exact_match()).auto(Auto::Light);
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct GEPA {
    metric: Arc<dyn FeedbackMetric>,
    auto: Option<Auto>,
    max_full_evals: Option<usize>,
    max_metric_calls: Option<usize>,
    reflection_minibatch_size: usize,
    candidate_selection_strategy: CandidateSelection,
    reflection_lm: Option<Arc<dyn LanguageModel>>,
    skip_perfect_score: bool,
    add_format_failure_as_feedback: bool,
    instruction_proposer: Option<Arc<dyn InstructionProposer>>,
    component_selector: ComponentSelection,
    use_merge: bool,
    max_merge_invocations: usize,
    num_threads: Option<usize>,
    failure_score: f64,
    perfect_score: f64,
    log_dir: Option<PathBuf>,
    track_stats: bool,
    track_best_outputs: bool,
    seed: u64,
    valset: Option<Vec<Example>>,
}

impl std::fmt::Debug for GEPA {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GEPA")
            .field("metric", &self.metric.name())
            .field("auto", &self.auto)
            .field("max_full_evals", &self.max_full_evals)
            .field("max_metric_calls", &self.max_metric_calls)
            .field("reflection_minibatch_size", &self.reflection_minibatch_size)
            .field(
                "candidate_selection_strategy",
                &self.candidate_selection_strategy,
            )
            .field(
                "reflection_lm",
                &self.reflection_lm.as_ref().map(|lm| lm.model().to_string()),
            )
            .field("component_selector", &self.component_selector)
            .field("use_merge", &self.use_merge)
            .field("max_merge_invocations", &self.max_merge_invocations)
            .field("num_threads", &self.num_threads)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// What `log_dir` holds between iterations.
#[derive(Serialize, Deserialize)]
struct Saved {
    state: GepaState,
    rng: (Vec<u32>, usize),
    adapter_rng: (Vec<u32>, usize),
    sampler: EpochSampler,
    merge: MergeState,
}

impl GEPA {
    /// GEPA with DSPy's defaults: minibatches of 3, Pareto selection, round-robin components,
    /// perfect minibatches skipped, merging on (at most 5), failure score 0, perfect score 1,
    /// seed 0. Set exactly one budget ([`auto`](Self::auto), [`max_full_evals`](Self::max_full_evals)
    /// or [`max_metric_calls`](Self::max_metric_calls)) and a
    /// [`reflection_lm`](Self::reflection_lm) or an [`instruction_proposer`](Self::instruction_proposer).
    pub fn new(metric: impl FeedbackMetric + 'static) -> Self {
        GEPA {
            metric: Arc::new(metric),
            auto: None,
            max_full_evals: None,
            max_metric_calls: None,
            reflection_minibatch_size: 3,
            candidate_selection_strategy: CandidateSelection::Pareto,
            reflection_lm: None,
            skip_perfect_score: true,
            add_format_failure_as_feedback: false,
            instruction_proposer: None,
            component_selector: ComponentSelection::RoundRobin,
            use_merge: true,
            max_merge_invocations: 5,
            num_threads: None,
            failure_score: 0.0,
            perfect_score: 1.0,
            log_dir: None,
            track_stats: false,
            track_best_outputs: false,
            seed: 0,
            valset: None,
        }
    }

    /// DSPy's `auto`: a light, medium or heavy budget from [`auto_budget`].
    #[must_use]
    pub fn auto(mut self, auto: Auto) -> Self {
        self.auto = Some(auto);
        self
    }

    /// DSPy's `max_full_evals`: the budget as full passes over trainset and valset.
    #[must_use]
    pub fn max_full_evals(mut self, n: usize) -> Self {
        self.max_full_evals = Some(n);
        self
    }

    /// DSPy's `max_metric_calls`: the budget in metric calls. It is checked before each
    /// iteration, so the last one may overshoot it.
    #[must_use]
    pub fn max_metric_calls(mut self, n: usize) -> Self {
        self.max_metric_calls = Some(n);
        self
    }

    /// Training examples per reflection (default 3).
    #[must_use]
    pub fn reflection_minibatch_size(mut self, n: usize) -> Self {
        self.reflection_minibatch_size = n;
        self
    }

    /// How the parent of each mutation is chosen (default [`CandidateSelection::Pareto`]).
    #[must_use]
    pub fn candidate_selection_strategy(mut self, strategy: CandidateSelection) -> Self {
        self.candidate_selection_strategy = strategy;
        self
    }

    /// The LM that writes new instructions (any dspex LM).
    #[must_use]
    pub fn reflection_lm(mut self, lm: impl LanguageModel + 'static) -> Self {
        self.reflection_lm = Some(Arc::new(lm));
        self
    }

    /// The reflection LM, shared.
    #[must_use]
    pub fn reflection_lm_arc(mut self, lm: Arc<dyn LanguageModel>) -> Self {
        self.reflection_lm = Some(lm);
        self
    }

    /// Whether a minibatch the parent already solves perfectly is skipped (default true).
    #[must_use]
    pub fn skip_perfect_score(mut self, skip: bool) -> Self {
        self.skip_perfect_score = skip;
        self
    }

    /// DSPy's `add_format_failure_as_feedback` (default false): a run whose answer for a
    /// component did not parse is reflected on through that call — its raw answer as the
    /// generated output, and as feedback the structure the answer should have followed (the
    /// ChatAdapter prompt of the component's signature).
    #[must_use]
    pub fn add_format_failure_as_feedback(mut self, add: bool) -> Self {
        self.add_format_failure_as_feedback = add;
        self
    }

    /// A proposer of your own in place of [`DefaultInstructionProposer`]; it runs with the
    /// reflection LM (if any) in the settings.
    #[must_use]
    pub fn instruction_proposer(mut self, proposer: impl InstructionProposer + 'static) -> Self {
        self.instruction_proposer = Some(Arc::new(proposer));
        self
    }

    /// Which components each mutation rewrites (default [`ComponentSelection::RoundRobin`]).
    #[must_use]
    pub fn component_selector(mut self, selector: ComponentSelection) -> Self {
        self.component_selector = selector;
        self
    }

    /// Whether candidates are merged (default true).
    #[must_use]
    pub fn use_merge(mut self, on: bool) -> Self {
        self.use_merge = on;
        self
    }

    /// The most merges accepted (default 5).
    #[must_use]
    pub fn max_merge_invocations(mut self, n: usize) -> Self {
        self.max_merge_invocations = n;
        self
    }

    /// Examples evaluated at once (default 8, DSPy's `settings.num_threads`).
    #[must_use]
    pub fn num_threads(mut self, n: usize) -> Self {
        self.num_threads = Some(n.max(1));
        self
    }

    /// The score of a failed run (default 0).
    #[must_use]
    pub fn failure_score(mut self, score: f64) -> Self {
        self.failure_score = score;
        self
    }

    /// The score that counts as perfect (default 1).
    #[must_use]
    pub fn perfect_score(mut self, score: f64) -> Self {
        self.perfect_score = score;
        self
    }

    /// Saves the run's state here before every iteration; a run started again with the same
    /// directory continues from it.
    #[must_use]
    pub fn log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_dir = Some(dir.into());
        self
    }

    /// Whether [`compile_with_results`](Self::compile_with_results) returns the detailed
    /// results (default false).
    #[must_use]
    pub fn track_stats(mut self, on: bool) -> Self {
        self.track_stats = on;
        self
    }

    /// Whether the detailed results keep the outputs of the best candidates per validation
    /// instance (needs `track_stats`).
    #[must_use]
    pub fn track_best_outputs(mut self, on: bool) -> Self {
        self.track_best_outputs = on;
        self
    }

    /// The seed of both generators (default 0).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The validation set the Pareto front is kept on (DSPy's `compile(valset=...)`); the
    /// trainset when not set.
    #[must_use]
    pub fn valset(mut self, valset: Vec<Example>) -> Self {
        self.valset = Some(valset);
        self
    }

    /// Checks the configuration (DSPy's assertions in `__init__` and `compile`).
    fn validate(&self, trainset: &[Example]) -> std::result::Result<(), GepaError> {
        let set = usize::from(self.auto.is_some())
            + usize::from(self.max_full_evals.is_some())
            + usize::from(self.max_metric_calls.is_some());
        if set != 1 {
            return Err(GepaError::Budget {
                max_metric_calls: self.max_metric_calls,
                max_full_evals: self.max_full_evals,
                auto: self.auto,
            });
        }
        if self.reflection_lm.is_none() && self.instruction_proposer.is_none() {
            return Err(GepaError::NoReflection);
        }
        if self.track_best_outputs && !self.track_stats {
            return Err(GepaError::TrackBestOutputs);
        }
        if self.reflection_minibatch_size == 0 {
            return Err(GepaError::MinibatchSize);
        }
        if trainset.is_empty() {
            return Err(GepaError::EmptyTrainset);
        }
        if self.valset.as_ref().is_some_and(Vec::is_empty) {
            return Err(GepaError::EmptyValset);
        }
        Ok(())
    }

    /// The budget in metric calls for this configuration.
    fn budget(&self, components: usize, train: usize) -> usize {
        let val = self.valset.as_ref().map(Vec::len);
        let budget = match (self.auto, self.max_full_evals, self.max_metric_calls) {
            (Some(a), _, _) => Budget::Auto(a),
            (_, Some(k), _) => Budget::MaxFullEvals(k),
            (_, _, n) => Budget::MaxMetricCalls(n.unwrap_or(0)),
        };
        budget.metric_calls(components, train, val)
    }

    /// Compiles `student` and returns it with, when `track_stats` is set, the detailed results.
    /// Cancelling `ctx` stops at once and returns the best candidate found so far.
    pub async fn compile_with_results<P: Optimizable>(
        &self,
        student: P,
        trainset: &[Example],
        ctx: &JobContext,
    ) -> Result<GepaOutcome<P>> {
        self.validate(trainset)?;
        let components: Vec<String> = student
            .named_predictors()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        if components.is_empty() {
            return Err(GepaError::NoPredictors.into());
        }
        let seed_texts: Texts = student
            .named_predictors()
            .into_iter()
            .map(|(_, p)| p.instructions().to_string())
            .collect();
        let valset: &[Example] = self.valset.as_deref().unwrap_or(trainset);
        let budget = self.budget(components.len(), trainset.len());
        let proposer: Arc<dyn InstructionProposer> = match &self.instruction_proposer {
            Some(p) => p.clone(),
            None => Arc::new(DefaultInstructionProposer::new(self.reflection_lm.clone())),
        };
        let mut run = Run {
            gepa: self,
            student: &student,
            trainset,
            valset,
            budget,
            proposer,
            ctx,
            trial: 0,
            rng: PyRandom::new(self.seed),
            adapter_rng: PyRandom::new(self.seed),
            sampler: EpochSampler::new(self.reflection_minibatch_size),
            merge: MergeState::default(),
        };
        let mut state = match run.load(&components)? {
            Some(state) => state,
            None => {
                ctx.phase("evaluating the seed program", None);
                let program = build_program(&student, &components, &seed_texts);
                let all: Vec<&Example> = valset.iter().collect();
                let Some(rollouts) = run.runner().run(&program, &all, false).await else {
                    return Err(ctx.cancelled_error());
                };
                let outputs = self.track_best_outputs.then(|| outputs_of(&rollouts));
                let state = GepaState::new(
                    components.clone(),
                    seed_texts,
                    rollouts.iter().map(|r| r.score).collect(),
                    outputs,
                );
                run.report(&state, "seed", &[], Some(0), None, mean_of(&state, 0));
                state
            }
        };
        run.optimize(&mut state).await?;
        run.save(&state)?;
        let best = state.best_index();
        let program = build_program(&student, &components, &state.candidates[best]);
        let detailed_results = self
            .track_stats
            .then(|| GepaResult::from_state(&state, self.log_dir.clone(), self.seed));
        Ok(GepaOutcome {
            program,
            detailed_results,
        })
    }
}

impl Optimizer for GEPA {
    async fn compile_in<P: Optimizable>(
        &self,
        student: P,
        trainset: &[Example],
        ctx: &JobContext,
    ) -> Result<P> {
        Ok(self
            .compile_with_results(student, trainset, ctx)
            .await?
            .program)
    }
}

fn outputs_of(rollouts: &[Rollout]) -> Vec<Value> {
    rollouts
        .iter()
        .map(|r| {
            r.prediction
                .as_ref()
                .map_or(Value::Null, |p| Value::Object(p.as_map().clone()))
        })
        .collect()
}

fn mean_of(state: &GepaState, idx: usize) -> f64 {
    state::mean(&state.val_scores[idx])
}

/// One compile's moving parts.
struct Run<'a, P> {
    gepa: &'a GEPA,
    student: &'a P,
    trainset: &'a [Example],
    valset: &'a [Example],
    budget: usize,
    proposer: Arc<dyn InstructionProposer>,
    ctx: &'a JobContext,
    trial: usize,
    rng: PyRandom,
    adapter_rng: PyRandom,
    sampler: EpochSampler,
    merge: MergeState,
}

/// How an iteration ended.
enum Step {
    Continue,
    Cancelled,
}

impl<P: Optimizable> Run<'_, P> {
    fn runner(&self) -> Runner<'_> {
        Runner {
            metric: &self.gepa.metric,
            failure_score: self.gepa.failure_score,
            concurrency: self.gepa.num_threads.unwrap_or(DEFAULT_NUM_THREADS),
            ctx: self.ctx,
        }
    }

    fn log_dir_error(&self, path: &Path, detail: impl std::fmt::Display) -> Error {
        GepaError::LogDir {
            path: path.display().to_string(),
            detail: detail.to_string(),
        }
        .into()
    }

    /// The saved state in `log_dir`, restoring the generators, sampler and merge bookkeeping.
    fn load(&mut self, components: &[String]) -> Result<Option<GepaState>> {
        let Some(dir) = &self.gepa.log_dir else {
            return Ok(None);
        };
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.log_dir_error(dir, e)),
        };
        let saved: Saved = serde_json::from_str(&text).map_err(|e| self.log_dir_error(&path, e))?;
        if let Err(detail) = saved.state.check(components, self.valset.len()) {
            return Err(self.log_dir_error(&path, format!("{detail}; use another log_dir")));
        }
        self.rng = PyRandom::from_state(&saved.rng.0, saved.rng.1)
            .map_err(|e| self.log_dir_error(&path, e))?;
        self.adapter_rng = PyRandom::from_state(&saved.adapter_rng.0, saved.adapter_rng.1)
            .map_err(|e| self.log_dir_error(&path, e))?;
        if saved.sampler.size() == self.gepa.reflection_minibatch_size {
            self.sampler = saved.sampler;
        }
        self.merge = saved.merge;
        tracing::info!(path = %path.display(), iteration = saved.state.i + 1, "GEPA: resuming a saved run");
        Ok(Some(saved.state))
    }

    /// Writes the state to `log_dir` (through a temporary file, so a kill leaves the last one).
    fn save(&self, state: &GepaState) -> Result<()> {
        let Some(dir) = &self.gepa.log_dir else {
            return Ok(());
        };
        std::fs::create_dir_all(dir).map_err(|e| self.log_dir_error(dir, e))?;
        let saved = Saved {
            state: state.clone(),
            rng: self.rng.state(),
            adapter_rng: self.adapter_rng.state(),
            sampler: self.sampler.clone(),
            merge: self.merge.clone(),
        };
        let text = serde_json::to_string(&saved).map_err(|e| self.log_dir_error(dir, e))?;
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, text).map_err(|e| self.log_dir_error(dir, e))?;
        std::fs::rename(&tmp, dir.join(STATE_FILE)).map_err(|e| self.log_dir_error(dir, e))?;
        Ok(())
    }

    /// Logs one evaluation as a trial, and the progress as the phase. A full evaluation
    /// (`batch` `None`) logs the candidate's mean valset score, its `index` and `val_scores`
    /// (what the report's Pareto front and lineage read); a minibatch of `batch` examples logs
    /// the mean too, with gepa's `sum` beside it.
    fn report(
        &mut self,
        state: &GepaState,
        kind: &str,
        parents: &[usize],
        index: Option<usize>,
        batch: Option<usize>,
        score: f64,
    ) {
        let full = batch.is_none();
        let front: std::collections::BTreeSet<usize> =
            state.pareto_programs.iter().flatten().copied().collect();
        let mut candidate = Map::new();
        candidate.insert("iteration".into(), json!(state.i + 1));
        candidate.insert("kind".into(), json!(kind));
        candidate.insert("parents".into(), json!(parents));
        candidate.insert("candidate".into(), json!(index));
        candidate.insert("metric_calls".into(), json!(state.total_evals));
        candidate.insert("budget".into(), json!(self.budget));
        candidate.insert("pareto_front_size".into(), json!(front.len()));
        if let Some(i) = index {
            let texts: Map<String, Value> = state
                .components
                .iter()
                .cloned()
                .zip(state.candidates[i].iter().map(|t| json!(t)))
                .collect();
            candidate.insert("instructions".into(), Value::Object(texts));
            candidate.insert("index".into(), json!(i));
            candidate.insert("val_scores".into(), json!(state.val_scores[i]));
        }
        let score = match batch {
            Some(n) => {
                candidate.insert("sum".into(), json!(score));
                score / n.max(1) as f64
            }
            None => score,
        };
        let event = TrialEvent {
            trial: self.trial,
            score,
            minibatch: !full,
            candidate,
        };
        match index.filter(|_| full) {
            Some(i) => self
                .ctx
                .trial_with_example_scores(event, &state.val_scores[i]),
            None => self.ctx.trial(event),
        }
        self.trial += 1;
        self.ctx.phase(
            format!(
                "iteration {}: {}/{} metric calls, Pareto front of {}",
                state.i + 1,
                state.total_evals,
                self.budget,
                front.len()
            ),
            None,
        );
    }

    /// The engine loop (gepa's `GEPAEngine.run`).
    async fn optimize(&mut self, state: &mut GepaState) -> Result<()> {
        while state.total_evals < self.budget && !self.ctx.is_cancelled() {
            self.save(state)?;
            state.i += 1;
            if let Step::Cancelled = self.iteration(state).await? {
                break;
            }
        }
        Ok(())
    }

    /// Scores `texts` on the whole valset and adds it to the pool.
    async fn add_evaluated(
        &mut self,
        state: &mut GepaState,
        texts: Texts,
        parents: &[usize],
        kind: &str,
    ) -> Result<Step> {
        let program = build_program(self.student, &state.components, &texts);
        let all: Vec<&Example> = self.valset.iter().collect();
        let Some(rollouts) = self.runner().run(&program, &all, true).await else {
            return Ok(Step::Cancelled);
        };
        let discovery = state.total_evals;
        state.total_evals += rollouts.len();
        state.num_full_evals += 1;
        let outputs = self.gepa.track_best_outputs.then(|| outputs_of(&rollouts));
        let scores = rollouts.iter().map(|r| r.score).collect();
        let idx = state.add_candidate(texts, parents, scores, outputs, discovery);
        let score = mean_of(state, idx);
        self.report(state, kind, parents, Some(idx), None, score);
        Ok(Step::Continue)
    }

    /// One iteration: a merge when one is due, else a reflective mutation.
    async fn iteration(&mut self, state: &mut GepaState) -> Result<Step> {
        if self.gepa.use_merge {
            if self.merge.merges_due > 0 && self.merge.last_iter_found_new_program {
                let attempt = attempt_merge(state, &mut self.merge, &mut self.rng)?;
                self.merge.last_iter_found_new_program = false;
                if let Some(attempt) = attempt {
                    let (id1, id2) = (attempt.id1, attempt.id2);
                    self.merge.triplets.push((id1, id2, attempt.ancestor));
                    let ids = merge_subsample(
                        &state.val_scores[id1],
                        &state.val_scores[id2],
                        &mut self.rng,
                    )?;
                    if !ids.is_empty() {
                        let program =
                            build_program(self.student, &state.components, &attempt.texts);
                        let batch: Vec<&Example> = ids.iter().map(|&i| &self.valset[i]).collect();
                        let Some(rollouts) = self.runner().run(&program, &batch, false).await
                        else {
                            return Ok(Step::Cancelled);
                        };
                        state.total_evals += ids.len();
                        let new_sum = sum(rollouts.iter().map(|r| r.score));
                        let s1 = sum(ids.iter().map(|&i| state.val_scores[id1][i]));
                        let s2 = sum(ids.iter().map(|&i| state.val_scores[id2][i]));
                        self.report(
                            state,
                            "merge subsample",
                            &[id1, id2],
                            None,
                            Some(ids.len()),
                            new_sum,
                        );
                        if new_sum >= s1.max(s2) {
                            if let Step::Cancelled = self
                                .add_evaluated(state, attempt.texts, &[id1, id2], "merge")
                                .await?
                            {
                                return Ok(Step::Cancelled);
                            }
                            self.merge.merges_due -= 1;
                            self.merge.total_merges_tested += 1;
                        }
                        return Ok(Step::Continue);
                    }
                }
            }
            self.merge.last_iter_found_new_program = false;
        }
        self.reflective(state).await
    }

    /// A reflective mutation (gepa's `ReflectiveMutationProposer.propose` and the engine's
    /// acceptance).
    async fn reflective(&mut self, state: &mut GepaState) -> Result<Step> {
        let parent = select_candidate(self.gepa.candidate_selection_strategy, state, &mut self.rng);
        let ids = self
            .sampler
            .next_minibatch(self.trainset.len(), state.i, &mut self.rng);
        let batch: Vec<&Example> = ids.iter().map(|&i| &self.trainset[i]).collect();
        let parent_texts = state.candidates[parent].clone();
        let program = build_program(self.student, &state.components, &parent_texts);
        let Some(before) = self.runner().run(&program, &batch, true).await else {
            return Ok(Step::Cancelled);
        };
        state.total_evals += batch.len();
        let before_sum = sum(before.iter().map(|r| r.score));
        self.report(
            state,
            "parent minibatch",
            &[parent],
            None,
            Some(batch.len()),
            before_sum,
        );
        if before
            .iter()
            .all(|r| r.prediction.is_none() && r.failed.is_empty())
        {
            // gepa's "no trajectories": every run raised; skipped before the round-robin turn.
            // A run whose answer did not parse is a trajectory (DSPy's `FailedPrediction`).
            tracing::info!(
                iteration = state.i + 1,
                parent,
                "GEPA: no trajectories; skipping"
            );
            return Ok(Step::Continue);
        }
        if self.gepa.skip_perfect_score && before.iter().all(|r| r.score >= self.gepa.perfect_score)
        {
            tracing::info!(
                iteration = state.i + 1,
                parent,
                "GEPA: all subsample scores perfect; skipping"
            );
            return Ok(Step::Continue);
        }
        let to_update = select_components(self.gepa.component_selector, state, parent);
        let dataset = match reflective_dataset(
            &program,
            &state.components,
            &to_update,
            &batch,
            &before,
            &self.gepa.metric,
            &mut self.adapter_rng,
            self.gepa.add_format_failure_as_feedback,
        )
        .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(iteration = state.i + 1, error = %e, "GEPA: cannot build the reflective dataset; skipping");
                return Ok(Step::Continue);
            }
        };
        let names: Vec<String> = to_update
            .iter()
            .map(|&k| state.components[k].clone())
            .collect();
        let candidate: Vec<(String, String)> = state
            .components
            .iter()
            .cloned()
            .zip(parent_texts.iter().cloned())
            .collect();
        let mut settings = crate::settings::Settings::new();
        settings.lm.clone_from(&self.gepa.reflection_lm);
        let proposed = self
            .ctx
            .run_until_cancelled(crate::settings::with_settings(
                settings,
                self.proposer.propose(&candidate, &dataset, &names),
            ))
            .await;
        let proposed = match proposed {
            None => return Ok(Step::Cancelled),
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                tracing::warn!(iteration = state.i + 1, error = %e, "GEPA: the reflection failed; skipping");
                return Ok(Step::Continue);
            }
        };
        if proposed.is_empty() {
            return Ok(Step::Continue);
        }
        let mut child = parent_texts;
        for (name, text) in proposed {
            if let Some(k) = state.components.iter().position(|c| *c == name) {
                child[k] = text;
            }
        }
        let program = build_program(self.student, &state.components, &child);
        let Some(after) = self.runner().run(&program, &batch, true).await else {
            return Ok(Step::Cancelled);
        };
        state.total_evals += batch.len();
        let after_sum = sum(after.iter().map(|r| r.score));
        self.report(
            state,
            "child minibatch",
            &[parent],
            None,
            Some(batch.len()),
            after_sum,
        );
        if after_sum > before_sum {
            if let Step::Cancelled = self
                .add_evaluated(state, child, &[parent], "reflective")
                .await?
            {
                return Ok(Step::Cancelled);
            }
            if self.gepa.use_merge {
                self.merge.last_iter_found_new_program = true;
                if self.merge.total_merges_tested < self.gepa.max_merge_invocations {
                    self.merge.merges_due += 1;
                }
            }
        }
        Ok(Step::Continue)
    }
}

/// Python's `sum` of floats, left to right from 0.
fn sum(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, |a, b| a + b)
}

#[cfg(test)]
mod tests;
