//! [`SIMBA`] (DSPy's `dspy.SIMBA`, Stochastic Introspective Mini-Batch Ascent): sample
//! trajectories of the best programs so far on a mini-batch at temperature 1.0, find the
//! examples whose outcomes vary most, and from each build a new candidate — the best
//! trajectory appended as a demo, or a rule the prompt model draws from contrasting the best
//! and the worst trajectory appended to the instructions. The winners of each step are scored
//! on the whole training set at the end.

use super::{JobContext, Optimizable, Optimizer, TrialEvent, is_cancellation};
use crate::adapter::format::write_field_list;
use crate::error::{Error, Result};
use crate::evaluate::Metric;
use crate::example::{Example, Prediction};
use crate::lm::LanguageModel;
use crate::module::DynPredict;
use crate::program::Module;
use crate::pycompat::PyRandom;
use crate::pycompat::numpy::{Pcg64, percentile};
use crate::pycompat::py::{from_json, py_str};
use crate::pycompat::text::{dedent, py_splitlines};
use crate::settings::{CallConfig, PredictorId, Settings, Trace, TraceEntry, with_settings};
use crate::signature::{DynSignature, FieldSpec, TypeSpec};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use tracing::Instrument;

/// Why a [`SIMBA`] compile could not start (wrapped in [`Error::Step`] with the context
/// `SIMBA`; [`SimbaError::find`] gets it back).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SimbaError {
    /// The training set has fewer examples than one mini-batch (DSPy's `assert`).
    #[error("Trainset too small: {len} < {bsize}")]
    TrainsetTooSmall {
        /// Examples in the training set.
        len: usize,
        /// The mini-batch size.
        bsize: usize,
    },
    /// `bsize` is 0: a step would have no examples to learn from.
    #[error("bsize must be at least 1")]
    EmptyBatch,
    /// `num_candidates` is 0: no trajectories would be sampled (DSPy fails computing the
    /// percentiles of no scores).
    #[error("num_candidates must be at least 1")]
    NoCandidates,
    /// A sampling temperature is not a positive finite number (the softmax divides by it).
    #[error("{name} must be a positive finite number, not {value}")]
    BadTemperature {
        /// `temperature_for_sampling` or `temperature_for_candidates`.
        name: &'static str,
        /// The value given.
        value: f64,
    },
}

impl SimbaError {
    /// The `SimbaError` inside an error (or anywhere in its chain of sources).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a SimbaError> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(found) = e.downcast_ref::<SimbaError>() {
                return Some(found);
            }
            current = e.source();
        }
        None
    }
}

/// A metric that explains its score (DSPy's metric returning a `dspy.Prediction` with a
/// `score` field): the other fields of the prediction it returns are the `output_metadata`
/// SIMBA shows the prompt model as the reward info. Closures
/// `Fn(&Example, &Prediction) -> Result<Prediction>` are one.
pub trait SimbaMetric: Send + Sync {
    /// The score (`score` field: a number or a bool) and the information on it.
    fn feedback<'a>(
        &'a self,
        example: &'a Example,
        prediction: &'a Prediction,
    ) -> BoxFuture<'a, Result<Prediction>>;
}

impl<F> SimbaMetric for F
where
    F: Fn(&Example, &Prediction) -> Result<Prediction> + Send + Sync,
{
    fn feedback<'a>(
        &'a self,
        example: &'a Example,
        prediction: &'a Prediction,
    ) -> BoxFuture<'a, Result<Prediction>> {
        Box::pin(std::future::ready(self(example, prediction)))
    }
}

#[derive(Clone)]
enum ScoreFn {
    Plain(Arc<dyn Metric>),
    Feedback(Arc<dyn SimbaMetric>),
}

/// DSPy's `SIMBA` optimizer, with its knobs and defaults: `bsize` 32, `num_candidates` 6,
/// `max_steps` 8, `max_demos` 4, `demo_input_field_maxlen` 100 000, both temperatures 0.2,
/// `seed` 0.
///
/// Each of `max_steps` steps:
/// 1. takes the next `bsize` examples of the training set, shuffled once with
///    `random.Random(seed)` and again whenever the rest is too short for a batch;
/// 2. runs `num_candidates` models (the LM in effect at temperature 1.0 with `rollout_id`s
///    from 0, or from the `rollout_id` of the call defaults in effect; the first one is the
///    [`teacher_settings`](Self::teacher_settings) when given) on every example of the batch,
///    each with a program drawn from the best `num_candidates` of the pool (baseline always
///    included) by a softmax of their average mini-batch scores at
///    `temperature_for_sampling` — model-major, as DSPy draws them;
/// 3. groups the runs by example, sorts each group by score (descending) and the groups by
///    (max − min, max, max − mean), descending;
/// 4. for each group, until `num_candidates + 1` candidates exist: copies a program drawn by
///    softmax at `temperature_for_candidates`, drops demos (a Poisson count of numpy's
///    `default_rng(seed)`, positions drawn with `randrange`, the same positions from every
///    predictor), and applies a strategy drawn with `choice`: *append a demo* (the best run's
///    last call of each predictor, unless its score is at most the batch's 10th percentile) or
///    *append a rule* (DSPy's `OfferFeedback` prompt on the prompt model, contrasting the best
///    and the worst run, unless the best is at most the 10th percentile or the worst at least
///    the 90th; the advice for each predictor is appended to its instructions after a blank
///    line);
/// 5. scores every candidate on the batch; the first best becomes a winner, and all join the
///    pool.
///
/// At the end, `num_candidates + 1` winners spread evenly over the steps
/// (`round(i * M / num_candidates)` with Python's `round`, the baseline first) are scored on
/// the whole training set, and the first best is returned.
///
/// As DSPy: the baseline (the student) keeps an empty score list, so its average is 0.0 all
/// run long; a strategy that declines still yields a candidate (an unchanged copy after the
/// demo dropping); a strategy that fails (the prompt model's answer does not parse, or the
/// best run has no prediction) discards the candidate; a failed run scores 0.0.
///
/// The job log gets one trial per candidate (its mini-batch score, `minibatch: true`, with its
/// step, pool id, source program, strategy and dropped demos) and one per final evaluation
/// (`minibatch: false`, with the winner's index and every training example's score).
///
/// Differences, all documented where they arise:
/// - DSPy sends the Python source of the program's class (`inspect.getsource`) in the rule
///   prompt; give it with [`program_code`](Self::program_code) to reproduce those prompts (it
///   is empty otherwise).
/// - The resampling models are set through the settings of each run, as call defaults
///   (temperature 1.0, `rollout_id`): a predictor with an LM or a temperature of its own keeps
///   it, where DSPy's `set_lm` replaces the LM of every predictor.
/// - A run that fails scores 0.0 without calling the metric (DSPy calls it with `None`, which
///   almost every metric answers with an exception, hence 0.0); the reward shown to the prompt
///   model is then `0.0`.
/// - The resampling models derive from the settings in effect at compile time (their LM and
///   call defaults), where DSPy copies `programs[0].get_lm()` — the student's own LM when its
///   predictors have one. Likewise the prompt model defaults to the LM in effect at compile
///   time; DSPy reads `dspy.settings.lm` when the optimizer is constructed.
/// - With `teacher_settings` that name no LM, DSPy writes the first `rollout_id` into the
///   *base* LM's kwargs in place (`teacher_lm = teacher_settings.get("lm") or lm`), so every
///   later call through that LM object — candidate evaluations, the final evaluation, rules —
///   carries that `rollout_id` (a different cache key). dspex scopes the `rollout_id` to the
///   first model's runs only.
/// - A metric that returns a number shows the prompt model the reward as JSON writes that
///   `f64` (`1.0`, `0.75`); DSPy writes an int metric's `1` as `1`. A metric that
///   [returns a bool](Metric::returns_bool) shows `true`/`false`, as DSPy.
///
/// ```
/// use dspex_runtime::evaluate::metric_fn;
/// use dspex_runtime::lm::ScriptedLM;
/// use dspex_runtime::module::DynPredict;
/// use dspex_runtime::optimize::{JobContext, Optimizer, SIMBA};
/// use dspex_runtime::settings::{Settings, with_settings};
/// use dspex_runtime::{DynSignature, Example, Module, Prediction};
/// use serde_json::json;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let student = DynPredict::new(DynSignature::parse("question -> answer")?);
/// let trainset: Vec<Example> = (0..8)
///     .map(|i| {
///         Example::new()
///             .with("question", format!("{i} + {i}?"))
///             .with("answer", format!("{}", 2 * i))
///             .with_inputs(["question"])
///     })
///     .collect();
/// // A model that answers "4" to everything: right on one example of eight.
/// let lm = ScriptedLM::from_fields([json!({"answer": "4"})]).repeat_last();
/// let simba = SIMBA::new(metric_fn("exact", |ex: &Example, pred: &Prediction| {
///     ex.get_str("answer") == pred.get_str("answer")
/// }))
/// .bsize(4)
/// .num_candidates(2)
/// .max_steps(2)
/// .max_demos(1)
/// .seed(7);
/// let (compiled, report) = with_settings(
///     Settings::new().lm(lm),
///     simba.compile_with_report(student, &trainset, &JobContext::detached()),
/// )
/// .await?;
/// assert_eq!(report.trial_logs.len(), 2);
/// assert!(compiled.named_predictors()[0].1.demos.len() <= 1);
/// // Best first, scored on the whole training set.
/// assert_eq!(report.candidate_programs[0].score, 0.125);
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct SIMBA {
    metric: ScoreFn,
    bsize: usize,
    num_candidates: usize,
    max_steps: usize,
    max_demos: usize,
    prompt_model: Option<Arc<dyn LanguageModel>>,
    teacher_settings: Option<Settings>,
    demo_input_field_maxlen: usize,
    num_threads: usize,
    temperature_for_sampling: f64,
    temperature_for_candidates: f64,
    seed: u64,
    program_code: String,
}

impl std::fmt::Debug for SIMBA {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SIMBA")
            .field("bsize", &self.bsize)
            .field("num_candidates", &self.num_candidates)
            .field("max_steps", &self.max_steps)
            .field("max_demos", &self.max_demos)
            .field(
                "prompt_model",
                &self.prompt_model.as_ref().map(|lm| lm.model().to_string()),
            )
            .field("demo_input_field_maxlen", &self.demo_input_field_maxlen)
            .field("num_threads", &self.num_threads)
            .field("temperature_for_sampling", &self.temperature_for_sampling)
            .field(
                "temperature_for_candidates",
                &self.temperature_for_candidates,
            )
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// One candidate of the final evaluation, from [`SIMBA::compile_with_report`] (an entry of
/// DSPy's `candidate_programs`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimbaCandidate<P> {
    /// Its average score on the whole training set.
    pub score: f64,
    /// The program.
    pub program: P,
}

/// What one step did, from [`SIMBA::compile_with_report`] (DSPy's `trial_logs[step]`, with
/// more detail).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SimbaStep {
    /// The training-set indices of the step's mini-batch.
    pub batch: Vec<usize>,
    /// The mean score of all sampled runs (DSPy's logged baseline mini-batch score).
    pub sampled_score: f64,
    /// Each new candidate's mean score on the mini-batch, in creation order.
    pub candidate_scores: Vec<f64>,
    /// The strategy applied for each new candidate (`append_a_demo` or `append_a_rule`),
    /// including those whose candidate failed and was discarded.
    pub strategies: Vec<&'static str>,
    /// DSPy's `trial_logs[step]["train_score"]`: the full-trainset score of the final candidate
    /// at position `step + 1`, which is the winner of this step only when every winner was
    /// selected for the final evaluation (DSPy's indexing, kept as is).
    pub train_score: Option<f64>,
}

/// What a [`SIMBA`] compile found: DSPy's `candidate_programs` and `trial_logs`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimbaReport<P> {
    /// The finalists with their full-trainset scores, best first (a stable sort, as DSPy's).
    pub candidate_programs: Vec<SimbaCandidate<P>>,
    /// One entry per step run.
    pub trial_logs: Vec<SimbaStep>,
}

/// One run of a program on an example (DSPy's `wrap_program` output).
#[derive(Debug, Clone)]
struct Rollout {
    /// The example's index in the training set.
    example: usize,
    prediction: Option<Prediction>,
    /// The predictor calls, with the predictor's name.
    trace: Vec<(String, TraceEntry)>,
    score: f64,
    /// The score as DSPy's JSON would write it (`"N/A"` once blanked).
    reward: Value,
    metadata: Map<String, Value>,
    /// Blanked by `append_a_rule` (score "N/A").
    blanked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    Demo,
    Rule,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Strategy::Demo => "append_a_demo",
            Strategy::Rule => "append_a_rule",
        }
    }
}

impl SIMBA {
    /// SIMBA with DSPy's defaults, scoring with `metric`.
    pub fn new(metric: impl Metric + 'static) -> Self {
        Self::with_score(ScoreFn::Plain(Arc::new(metric)))
    }

    /// SIMBA with a metric that explains its scores: the fields of the prediction it returns
    /// other than `score` are shown to the prompt model as the reward info (DSPy's
    /// `output_metadata`). A prediction without a numeric or bool `score` scores 0.0, as an
    /// error does.
    pub fn with_feedback_metric(metric: impl SimbaMetric + 'static) -> Self {
        Self::with_score(ScoreFn::Feedback(Arc::new(metric)))
    }

    fn with_score(metric: ScoreFn) -> Self {
        SIMBA {
            metric,
            bsize: 32,
            num_candidates: 6,
            max_steps: 8,
            max_demos: 4,
            prompt_model: None,
            teacher_settings: None,
            demo_input_field_maxlen: 100_000,
            num_threads: super::DEFAULT_CONCURRENCY,
            temperature_for_sampling: 0.2,
            temperature_for_candidates: 0.2,
            seed: 0,
            program_code: String::new(),
        }
    }

    /// Mini-batch size (at least 1, at most the training set's size).
    #[must_use]
    pub fn bsize(mut self, n: usize) -> Self {
        self.bsize = n;
        self
    }

    /// The mini-batch size set.
    pub fn get_bsize(&self) -> usize {
        self.bsize
    }

    /// New candidates per step, beyond the first (at least 1): `num_candidates` models sample
    /// trajectories, and up to `num_candidates + 1` candidates are built.
    #[must_use]
    pub fn num_candidates(mut self, n: usize) -> Self {
        self.num_candidates = n;
        self
    }

    /// Optimization steps.
    #[must_use]
    pub fn max_steps(mut self, n: usize) -> Self {
        self.max_steps = n;
        self
    }

    /// Demos a predictor may hold before some are dropped; 0 turns the demo strategy off (and
    /// demos are then dropped as if it were 3, as DSPy does).
    #[must_use]
    pub fn max_demos(mut self, n: usize) -> Self {
        self.max_demos = n;
        self
    }

    /// The LM that writes rules (DSPy's `prompt_model`); the LM in effect by default.
    #[must_use]
    pub fn prompt_model(mut self, lm: impl LanguageModel + 'static) -> Self {
        self.prompt_model = Some(Arc::new(lm));
        self
    }

    /// DSPy's `teacher_settings`: the first of the resampling models runs with these settings
    /// (their LM, at the first `rollout_id`, without the temperature change).
    #[must_use]
    pub fn teacher_settings(mut self, settings: Settings) -> Self {
        self.teacher_settings = Some(settings);
        self
    }

    /// Input values longer than this (in characters, as Python's `str()` writes them) are cut
    /// in new demos, with `"\n\t\t... <TRUNCATED FOR BREVITY>"`; 0 keeps them whole.
    #[must_use]
    pub fn demo_input_field_maxlen(mut self, n: usize) -> Self {
        self.demo_input_field_maxlen = n;
        self
    }

    /// DSPy's `num_threads`: runs in flight at once (at least 1). The results do not depend on
    /// it.
    #[must_use]
    pub fn num_threads(mut self, n: usize) -> Self {
        self.num_threads = n.max(1);
        self
    }

    /// Softmax temperature for drawing the programs that sample trajectories.
    #[must_use]
    pub fn temperature_for_sampling(mut self, t: f64) -> Self {
        self.temperature_for_sampling = t;
        self
    }

    /// Softmax temperature for drawing the programs new candidates start from.
    #[must_use]
    pub fn temperature_for_candidates(mut self, t: f64) -> Self {
        self.temperature_for_candidates = t;
        self
    }

    /// The seed of both generators (DSPy's `compile(..., seed=0)`).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// What the rule prompt shows as the program's code (DSPy sends the Python source of the
    /// program's class); empty by default.
    #[must_use]
    pub fn program_code(mut self, text: impl Into<String>) -> Self {
        self.program_code = text.into();
        self
    }

    fn validate(&self, trainset: &[Example]) -> Result<()> {
        let fail = |e: SimbaError| Err(Error::step("SIMBA", e));
        if self.bsize == 0 {
            return fail(SimbaError::EmptyBatch);
        }
        if self.num_candidates == 0 {
            return fail(SimbaError::NoCandidates);
        }
        if trainset.len() < self.bsize {
            return fail(SimbaError::TrainsetTooSmall {
                len: trainset.len(),
                bsize: self.bsize,
            });
        }
        for (name, value) in [
            ("temperature_for_sampling", self.temperature_for_sampling),
            (
                "temperature_for_candidates",
                self.temperature_for_candidates,
            ),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return fail(SimbaError::BadTemperature { name, value });
            }
        }
        Ok(())
    }

    /// Compiles `student` and reports DSPy's `candidate_programs` and `trial_logs`. When `ctx`
    /// is cancelled during the steps, the step winner with the best mini-batch score so far
    /// comes back with the steps done (no finalists), or [`Error::Cancelled`] if no step
    /// finished; during the final evaluation, the best finalist scored so far.
    pub async fn compile_with_report<P: Optimizable>(
        &self,
        student: P,
        trainset: &[Example],
        ctx: &JobContext,
    ) -> Result<(P, SimbaReport<P>)> {
        self.validate(trainset)?;
        let mut rng = PyRandom::new(self.seed);
        let mut rng_np = Pcg64::default_rng(u128::from(self.seed));
        let strategies: Vec<Strategy> = if self.max_demos > 0 {
            vec![Strategy::Demo, Strategy::Rule]
        } else {
            vec![Strategy::Rule]
        };
        let mut pool = Pool {
            programs: vec![student.clone()],
            scores: vec![Vec::new()],
        };
        // Winners with their mini-batch score (the baseline has none).
        let mut winners: Vec<(P, Option<f64>)> = vec![(student, None)];
        let mut data_indices: Vec<usize> = (0..trainset.len()).collect();
        rng.shuffle(&mut data_indices);
        let mut instance_idx = 0;
        let mut logs: Vec<SimbaStep> = Vec::new();
        let mut trial = 0;
        let base = Settings::current();
        let models = self.models(&base);

        let mut cancelled = false;
        for step in 0..self.max_steps {
            if ctx.is_cancelled() {
                cancelled = true;
                break;
            }
            ctx.phase(
                format!(
                    "step {} of {}: sampling trajectories",
                    step + 1,
                    self.max_steps
                ),
                None,
            );
            if instance_idx + self.bsize > trainset.len() {
                rng.shuffle(&mut data_indices);
                instance_idx = 0;
            }
            let batch: Vec<usize> = data_indices[instance_idx..instance_idx + self.bsize].to_vec();
            instance_idx += self.bsize;

            let top = pool.top_k_plus_baseline(self.num_candidates);
            let mut pairs: Vec<(usize, usize, Settings)> = Vec::new();
            for model in &models {
                for &ex in &batch {
                    let chosen =
                        pool.softmax_sample(&mut rng, &top, self.temperature_for_sampling)?;
                    pairs.push((chosen, ex, model.clone()));
                }
            }
            let mut runs: Vec<BoxFuture<'_, Rollout>> = Vec::with_capacity(pairs.len());
            for (p, ex, s) in &pairs {
                runs.push(Box::pin(self.rollout(
                    &pool.programs[*p],
                    *ex,
                    &trainset[*ex],
                    s.clone(),
                )));
            }
            let Some(outputs) = self.run_all(runs, ctx).await else {
                cancelled = true;
                break;
            };

            let all: Vec<f64> = outputs.iter().map(|o| o.score).collect();
            let p10 = percentile(&all, 10.0).unwrap_or(0.0);
            let p90 = percentile(&all, 90.0).unwrap_or(0.0);
            let buckets = buckets(outputs, self.bsize);
            let sampled_score = all.iter().sum::<f64>() / all.len() as f64;

            ctx.phase(
                format!(
                    "step {} of {}: building candidates",
                    step + 1,
                    self.max_steps
                ),
                None,
            );
            let mut candidates: Vec<(P, Map<String, Value>)> = Vec::new();
            let mut step_log = SimbaStep {
                batch: batch.clone(),
                sampled_score,
                ..SimbaStep::default()
            };
            for mut bucket in buckets {
                if ctx.is_cancelled() {
                    cancelled = true;
                    break;
                }
                let top = pool.top_k_plus_baseline(self.num_candidates);
                let src = pool.softmax_sample(&mut rng, &top, self.temperature_for_candidates)?;
                let mut system = pool.programs[src].clone();
                let dropped = self.drop_demos(&mut system, &mut rng, &mut rng_np)?;
                let strategy = *rng
                    .choice(&strategies)
                    .ok_or_else(|| Error::step("SIMBA", "no strategy to choose from"))?;
                step_log.strategies.push(strategy.name());
                let applied = match strategy {
                    Strategy::Demo => Ok(self.append_a_demo(&mut bucket, &mut system, p10)),
                    Strategy::Rule => {
                        match ctx
                            .run_until_cancelled(self.append_a_rule(
                                &mut bucket,
                                &mut system,
                                trainset,
                                p10,
                                p90,
                                &base,
                            ))
                            .await
                        {
                            Some(result) => result,
                            None => {
                                cancelled = true;
                                break;
                            }
                        }
                    }
                };
                match applied {
                    Ok(changed) => {
                        let mut info = Map::new();
                        info.insert("source".into(), src.into());
                        info.insert("strategy".into(), strategy.name().into());
                        info.insert("applied".into(), changed.into());
                        info.insert("dropped_demos".into(), dropped.into());
                        candidates.push((system, info));
                    }
                    Err(e) if is_cancellation(&e) => {
                        cancelled = true;
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "SIMBA: strategy failed");
                    }
                }
                if candidates.len() > self.num_candidates {
                    break;
                }
            }
            if cancelled {
                logs.push(step_log);
                break;
            }

            ctx.phase(
                format!(
                    "step {} of {}: evaluating candidates",
                    step + 1,
                    self.max_steps
                ),
                Some(candidates.len()),
            );
            let mut runs: Vec<BoxFuture<'_, Rollout>> = Vec::new();
            for (c, _) in &candidates {
                for &ex in &batch {
                    runs.push(Box::pin(self.rollout(c, ex, &trainset[ex], base.clone())));
                }
            }
            let Some(outputs) = self.run_all(runs, ctx).await else {
                logs.push(step_log);
                cancelled = true;
                break;
            };
            let mut best: Option<(usize, f64)> = None;
            for (i, (candidate, info)) in candidates.into_iter().enumerate() {
                let scores: Vec<f64> = outputs[i * self.bsize..(i + 1) * self.bsize]
                    .iter()
                    .map(|o| o.score)
                    .collect();
                let avg = scores.iter().sum::<f64>() / scores.len() as f64;
                step_log.candidate_scores.push(avg);
                if best.is_none_or(|(_, b)| avg > b) {
                    best = Some((i, avg));
                }
                let id = pool.programs.len();
                let mut info = info;
                info.insert("step".into(), step.into());
                info.insert("program_id".into(), id.into());
                ctx.trial(TrialEvent {
                    trial,
                    score: avg,
                    minibatch: true,
                    candidate: info,
                });
                trial += 1;
                pool.programs.push(candidate);
                pool.scores.push(scores);
            }
            if let Some((i, avg)) = best {
                let id = pool.programs.len() - step_log.candidate_scores.len() + i;
                winners.push((pool.programs[id].clone(), Some(avg)));
            }
            tracing::info!(
                step = step + 1,
                scores = ?step_log.candidate_scores,
                "SIMBA scored the step's candidates"
            );
            logs.push(step_log);
        }

        if cancelled {
            if winners.iter().all(|(_, s)| s.is_none()) {
                return Err(ctx.cancelled_error());
            }
            let best = winners
                .iter()
                .enumerate()
                .filter_map(|(i, (_, s))| s.map(|s| (i, s)))
                .fold(None, |acc: Option<(usize, f64)>, (i, s)| match acc {
                    Some((_, b)) if b >= s => acc,
                    _ => Some((i, s)),
                })
                .map_or(0, |(i, _)| i);
            let program = winners.swap_remove(best).0;
            return Ok((
                program,
                SimbaReport {
                    candidate_programs: Vec::new(),
                    trial_logs: logs,
                },
            ));
        }

        // The final evaluation of evenly spread winners on the whole training set.
        let selected = select_winners(winners.len() - 1, self.num_candidates + 1);
        ctx.phase("evaluating winners on the trainset", Some(selected.len()));
        let finalists: Vec<P> = selected.iter().map(|&i| winners[i].0.clone()).collect();
        let mut scores: Vec<f64> = Vec::new();
        for (pos, program) in finalists.iter().enumerate() {
            let mut runs: Vec<BoxFuture<'_, Rollout>> = Vec::with_capacity(trainset.len());
            for (ex, example) in trainset.iter().enumerate() {
                runs.push(Box::pin(self.rollout(program, ex, example, base.clone())));
            }
            let Some(outputs) = self.run_all(runs, ctx).await else {
                break;
            };
            let example_scores: Vec<f64> = outputs.iter().map(|o| o.score).collect();
            let avg = if example_scores.is_empty() {
                0.0
            } else {
                example_scores.iter().sum::<f64>() / example_scores.len() as f64
            };
            if pos != 0
                && let Some(log) = logs.get_mut(pos - 1)
            {
                log.train_score = Some(avg);
            }
            let mut info = Map::new();
            info.insert("winner".into(), selected[pos].into());
            ctx.trial_with_example_scores(
                TrialEvent {
                    trial,
                    score: avg,
                    minibatch: false,
                    candidate: info,
                },
                &example_scores,
            );
            trial += 1;
            scores.push(avg);
        }
        if scores.is_empty() {
            return Err(ctx.cancelled_error());
        }
        let mut finalists = finalists;
        finalists.truncate(scores.len());
        let best = first_max(&scores);
        let program = finalists[best].clone();
        let mut candidate_programs: Vec<SimbaCandidate<P>> = scores
            .iter()
            .zip(finalists)
            .map(|(&score, program)| SimbaCandidate { score, program })
            .collect();
        candidate_programs.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok((
            program,
            SimbaReport {
                candidate_programs,
                trial_logs: logs,
            },
        ))
    }

    /// Runs `runs`, `num_threads` at a time, and returns their results in order (`None` once
    /// the job is cancelled).
    async fn run_all(
        &self,
        runs: Vec<BoxFuture<'_, Rollout>>,
        ctx: &JobContext,
    ) -> Option<Vec<Rollout>> {
        // A batch of rollouts (candidates × examples) is one trial of the optimizer.
        let span = crate::optimize::trial_span(ctx, runs.len());
        let rollouts = ctx
            .run_until_cancelled(
                futures_util::stream::iter(runs)
                    .buffered(self.num_threads)
                    .collect::<Vec<_>>(),
            )
            .instrument(span.clone())
            .await?;
        crate::optimize::record_trial_score(&span, rollouts.iter().map(|r| r.score));
        Some(rollouts)
    }

    /// The resampling models as settings for a run (DSPy's `prepare_models_for_resampling`).
    fn models(&self, base: &Settings) -> Vec<Settings> {
        let start = base
            .call_defaults
            .as_ref()
            .and_then(|c| c.rollout_id)
            .unwrap_or(0);
        let mut models = Vec::with_capacity(self.num_candidates);
        let mut first = 0;
        if let Some(teacher) = &self.teacher_settings {
            let rollout = CallConfig {
                rollout_id: Some(start),
                ..CallConfig::default()
            };
            models.push(
                base.merged(teacher)
                    .merged(&Settings::new().call_defaults(rollout)),
            );
            first = 1;
        }
        for i in first..self.num_candidates {
            let config = CallConfig {
                temperature: Some(1.0),
                rollout_id: Some(start + i as u64),
                ..CallConfig::default()
            };
            models.push(base.merged(&Settings::new().call_defaults(config)));
        }
        models
    }

    /// One run of `program` on `example` with a fresh trace, scored (DSPy's `wrap_program`).
    async fn rollout<P: Optimizable>(
        &self,
        program: &P,
        index: usize,
        example: &Example,
        settings: Settings,
    ) -> Rollout {
        let trace = Trace::new();
        let run = with_settings(
            settings.clone().trace(trace.clone()),
            program.run_example(example),
        )
        .await;
        let entries = trace.take();
        let names: Vec<(PredictorId, String)> = program
            .named_predictors()
            .into_iter()
            .map(|(name, p)| (PredictorId::of(p), name))
            .collect();
        let trace = entries
            .into_iter()
            .filter_map(|e| {
                names
                    .iter()
                    .find(|(id, _)| *id == e.predictor)
                    .map(|(_, n)| (n.clone(), e))
            })
            .collect();
        let prediction = match run {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "SIMBA: a run failed");
                None
            }
        };
        let (score, reward, metadata) = match &prediction {
            None => (0.0, json!(0.0), Map::new()),
            Some(pred) => {
                // The metric's own predictor calls are recorded nowhere.
                let scope = settings.trace(Trace::new());
                self.score(example, pred, scope).await
            }
        };
        Rollout {
            example: index,
            prediction,
            trace,
            score,
            reward,
            metadata,
            blanked: false,
        }
    }

    async fn score(
        &self,
        example: &Example,
        prediction: &Prediction,
        scope: Settings,
    ) -> (f64, Value, Map<String, Value>) {
        match &self.metric {
            ScoreFn::Plain(metric) => {
                match with_settings(scope, metric.score(example, prediction, None)).await {
                    Ok(s) if metric.returns_bool() => (s, Value::Bool(s != 0.0), Map::new()),
                    Ok(s) => (s, json!(s), Map::new()),
                    Err(e) => {
                        tracing::warn!(error = %e, "SIMBA: the metric failed");
                        (0.0, json!(0.0), Map::new())
                    }
                }
            }
            ScoreFn::Feedback(metric) => {
                match with_settings(scope, metric.feedback(example, prediction)).await {
                    Ok(out) => {
                        let score = match out.get("score") {
                            Some(Value::Bool(b)) => Some(if *b { 1.0 } else { 0.0 }),
                            Some(Value::Number(n)) => n.as_f64(),
                            _ => None,
                        };
                        match score {
                            Some(s) => {
                                let reward = out.get("score").cloned().unwrap_or(json!(s));
                                let metadata = out
                                    .iter()
                                    .filter(|(k, _)| *k != "score")
                                    .map(|(k, v)| (k.to_string(), v.clone()))
                                    .collect();
                                (s, reward, metadata)
                            }
                            None => {
                                tracing::warn!(
                                    "SIMBA: when the metric returns a prediction, it must contain a numeric `score` field"
                                );
                                (0.0, json!(0.0), Map::new())
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "SIMBA: the metric failed");
                        (0.0, json!(0.0), Map::new())
                    }
                }
            }
        }
    }

    /// Drops demos from every predictor of `system` as DSPy does; returns how many positions
    /// were drawn.
    fn drop_demos<P: Optimizable>(
        &self,
        system: &mut P,
        rng: &mut PyRandom,
        rng_np: &mut Pcg64,
    ) -> Result<usize> {
        let num_demos = system
            .named_predictors()
            .iter()
            .map(|(_, p)| p.demos.len())
            .max()
            .unwrap_or(0);
        let cap = if self.max_demos > 0 {
            self.max_demos
        } else {
            3
        };
        let drawn = rng_np.poisson(num_demos as f64 / cap as f64).max(0) as usize;
        let to_drop = drawn.max(usize::from(num_demos >= cap)).min(num_demos);
        let mut positions = Vec::with_capacity(to_drop);
        for _ in 0..to_drop {
            let i = rng
                .randrange(0, num_demos as i64)
                .map_err(|e| Error::step("SIMBA", e))?;
            positions.push(i as usize);
        }
        if !positions.is_empty() {
            for (_, params) in system.named_predictors_mut() {
                let demos = std::mem::take(&mut params.demos);
                params.demos = demos
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| !positions.contains(i))
                    .map(|(_, d)| d)
                    .collect();
            }
        }
        Ok(to_drop)
    }

    /// DSPy's `append_a_demo`: the best run's last call of each predictor becomes a demo of
    /// that predictor, unless the run scored at most the 10th percentile.
    fn append_a_demo<P: Optimizable>(
        &self,
        bucket: &mut [Rollout],
        system: &mut P,
        p10: f64,
    ) -> bool {
        let Some(good) = bucket.first() else {
            return false;
        };
        if good.score <= p10 {
            return false;
        }
        let mut name2demo: Vec<(String, Example)> = Vec::new();
        for (name, entry) in &good.trace {
            let mut entry = entry.clone();
            if self.demo_input_field_maxlen > 0 {
                let mut inputs = entry.inputs.clone();
                for (k, v) in entry.inputs.iter_all() {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => py_str(&from_json(other)),
                    };
                    if text.chars().count() > self.demo_input_field_maxlen {
                        let cut: String = text.chars().take(self.demo_input_field_maxlen).collect();
                        inputs.insert(k, format!("{cut}\n\t\t... <TRUNCATED FOR BREVITY>"));
                    }
                }
                entry.inputs = inputs;
            }
            let demo = super::bootstrap::augmented_demo(&entry);
            match name2demo.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = demo,
                None => name2demo.push((name.clone(), demo)),
            }
        }
        let mut predictors = system.named_predictors_mut();
        for (name, demo) in name2demo {
            if let Some((_, params)) = predictors.iter_mut().find(|(n, _)| *n == name) {
                params.demos.push(demo);
            }
        }
        true
    }

    /// DSPy's `append_a_rule`: the prompt model contrasts the best and the worst run of the
    /// bucket and advises each predictor; the advice is appended to its instructions.
    async fn append_a_rule<P: Optimizable>(
        &self,
        bucket: &mut [Rollout],
        system: &mut P,
        trainset: &[Example],
        p10: f64,
        p90: f64,
        base: &Settings,
    ) -> Result<bool> {
        let n = bucket.len();
        if n == 0 {
            return Ok(false);
        }
        let (good_score, bad_score) = (bucket[0].score, bucket[n - 1].score);
        if good_score <= p10 || bad_score >= p90 {
            return Ok(false);
        }
        if good_score <= bad_score {
            let blank = if good_score > p90 { n - 1 } else { 0 };
            let r = &mut bucket[blank];
            r.trace.clear();
            r.blanked = true;
            r.reward = Value::String("N/A".into());
            r.prediction = Some(Prediction::from_pairs([(
                "N/A",
                Value::String("Prediction not available".into()),
            )]));
        }
        let good = &bucket[0];
        let bad = &bucket[n - 1];
        let example = &trainset[good.example];
        let trajectory = |r: &Rollout| -> Value {
            Value::Array(
                r.trace
                    .iter()
                    .map(|(name, e)| {
                        json!({
                            "module_name": name,
                            "inputs": Value::Object(e.inputs.iter_all().map(|(k, v)| (k.to_string(), v.clone())).collect()),
                            "outputs": outputs_json(&e.outputs),
                        })
                    })
                    .collect(),
            )
        };
        let Some(better_outputs) = good.prediction.as_ref().map(outputs_json) else {
            // DSPy's `dict(None)` raises: the candidate is discarded.
            return Err(Error::step(
                "SIMBA",
                "the better trajectory has no prediction (its run failed)",
            ));
        };
        let worse_outputs = bad
            .prediction
            .as_ref()
            .map_or_else(|| Value::Object(Map::new()), outputs_json);
        let inputs = example.inputs().map_err(|e| Error::step("SIMBA", e))?;
        let labels = example.labels().map_err(|e| Error::step("SIMBA", e))?;
        let module_names: Vec<String> = system
            .named_predictors()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let text = |v: Value| -> Value {
            match v {
                Value::String(s) => Value::String(s),
                other => Value::String(
                    serde_json::to_string_pretty(&other).unwrap_or_else(|_| other.to_string()),
                ),
            }
        };
        let kwargs = Example::new()
            .with("program_code", self.program_code.clone())
            .with("modules_defn", inspect_modules(system))
            .with("program_inputs", text(Value::Object(inputs.into_map())))
            .with("oracle_metadata", text(Value::Object(labels.into_map())))
            .with("better_program_trajectory", text(trajectory(good)))
            .with("better_program_outputs", text(better_outputs))
            .with("worse_program_trajectory", text(trajectory(bad)))
            .with("worse_program_outputs", text(worse_outputs))
            .with("worse_reward_value", text(bad.reward.clone()))
            .with("better_reward_value", text(good.reward.clone()))
            .with(
                "worse_reward_info",
                text(Value::Object(bad.metadata.clone())),
            )
            .with(
                "better_reward_info",
                text(Value::Object(good.metadata.clone())),
            )
            .with("module_names", text(json!(module_names)));
        let mut scope = base.clone().trace(Trace::new());
        if let Some(lm) = &self.prompt_model {
            scope = scope.merged(&Settings::new().lm_arc(lm.clone()));
        }
        let predictor = DynPredict::new(offer_feedback());
        let advice = with_settings(scope, predictor.call(&kwargs)).await?;
        let advice = match advice.get("module_advice") {
            Some(Value::Object(map)) => map.clone(),
            other => {
                return Err(Error::step(
                    "SIMBA",
                    format!("module_advice is not a dict: {other:?}"),
                ));
            }
        };
        for (name, params) in system.named_predictors_mut() {
            if let Some(v) = advice.get(&name) {
                let tip = match v {
                    Value::String(s) => s.clone(),
                    other => py_str(&from_json(other)),
                };
                tracing::info!(predictor = %name, advice = %tip, "SIMBA: advice");
                let instructions = format!("{}\n\n{tip}", params.instructions());
                params.set_instructions(instructions);
            }
        }
        Ok(true)
    }
}

/// `dict(prediction)`: its fields, without DSPy's internal ones.
fn outputs_json(p: &Prediction) -> Value {
    Value::Object(p.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

impl Optimizer for SIMBA {
    async fn compile_in<P: Optimizable>(
        &self,
        student: P,
        trainset: &[Example],
        ctx: &JobContext,
    ) -> Result<P> {
        Ok(self.compile_with_report(student, trainset, ctx).await?.0)
    }
}

/// The pool of programs (index = DSPy's `simba_idx`) and their mini-batch scores.
struct Pool<P> {
    programs: Vec<P>,
    scores: Vec<Vec<f64>>,
}

impl<P> Pool<P> {
    fn average(&self, id: usize) -> f64 {
        average(&self.scores[id])
    }

    fn top_k_plus_baseline(&self, k: usize) -> Vec<usize> {
        let averages: Vec<f64> = (0..self.scores.len()).map(|i| self.average(i)).collect();
        top_k_plus_baseline(&averages, k)
    }

    fn softmax_sample(&self, rng: &mut PyRandom, ids: &[usize], temperature: f64) -> Result<usize> {
        let averages: Vec<f64> = ids.iter().map(|&i| self.average(i)).collect();
        softmax_sample(rng, ids, &averages, temperature)
    }
}

/// The mean of `scores`, 0.0 when there are none (DSPy's `calc_average_score`).
fn average(scores: &[f64]) -> f64 {
    if scores.is_empty() {
        0.0
    } else {
        scores.iter().sum::<f64>() / scores.len() as f64
    }
}

/// DSPy's `top_k_plus_baseline`: ids by average score descending (a stable sort), the first
/// `k`, the last replaced by the baseline 0 if it is missing, duplicates removed.
fn top_k_plus_baseline(averages: &[f64], k: usize) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..averages.len()).collect();
    ids.sort_by(|&a, &b| averages[b].total_cmp(&averages[a]));
    ids.truncate(k);
    if !ids.contains(&0)
        && let Some(last) = ids.last_mut()
    {
        *last = 0;
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}

/// DSPy's `softmax_sample`: weights `exp(avg / T)` normalized, one `rng.choices` draw (or
/// `rng.choice` when the weights sum to 0).
fn softmax_sample(
    rng: &mut PyRandom,
    ids: &[usize],
    averages: &[f64],
    temperature: f64,
) -> Result<usize> {
    if ids.is_empty() {
        return Err(Error::step(
            "SIMBA",
            "No programs available for softmax sampling.",
        ));
    }
    let exps: Vec<f64> = averages.iter().map(|s| (s / temperature).exp()).collect();
    let sum: f64 = exps.iter().sum();
    if sum.is_nan() || sum <= 0.0 {
        return rng
            .choice(ids)
            .copied()
            .ok_or_else(|| Error::step("SIMBA", "no programs to sample"));
    }
    let probs: Vec<f64> = exps.iter().map(|e| e / sum).collect();
    rng.choices_weighted(ids, &probs, 1)
        .map_err(|e| Error::step("SIMBA", e))?
        .first()
        .copied()
        .ok_or_else(|| Error::step("SIMBA", "no programs to sample"))
}

/// The runs grouped by example (position `j` holds runs `j`, `j + bsize`, …), each group sorted
/// by score descending, the groups by (max − min, max, max − mean) descending; all sorts
/// stable, as Python's.
fn buckets(outputs: Vec<Rollout>, bsize: usize) -> Vec<Vec<Rollout>> {
    let mut groups: Vec<Vec<Rollout>> = (0..bsize).map(|_| Vec::new()).collect();
    for (i, o) in outputs.into_iter().enumerate() {
        groups[i % bsize].push(o);
    }
    let mut keyed: Vec<((f64, f64, f64), Vec<Rollout>)> = groups
        .into_iter()
        .map(|mut g| {
            g.sort_by(|a, b| b.score.total_cmp(&a.score));
            let max = g.first().map_or(0.0, |r| r.score);
            let min = g.last().map_or(0.0, |r| r.score);
            let mut sum = 0.0;
            for r in &g {
                sum += r.score;
            }
            let avg = sum / g.len().max(1) as f64;
            ((max - min, max, max - avg), g)
        })
        .collect();
    keyed.sort_by(|(a, _), (b, _)| {
        b.0.total_cmp(&a.0)
            .then(b.1.total_cmp(&a.1))
            .then(b.2.total_cmp(&a.2))
    });
    keyed.into_iter().map(|(_, g)| g).collect()
}

/// The winners scored at the end: `[0] * n` when no step produced one, else
/// `round(i * m / (n - 1))` for `i` in `0..n` with Python's `round` (ties to even), duplicates
/// removed in order.
fn select_winners(m: usize, n: usize) -> Vec<usize> {
    let picks: Vec<usize> = if m < 1 || n < 2 {
        vec![0; n.max(1)]
    } else {
        (0..n)
            .map(|i| ((i * m) as f64 / (n - 1) as f64).round_ties_even() as usize)
            .collect()
    };
    let mut out = Vec::with_capacity(picks.len());
    for p in picks {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// The index of the first maximum (Python's `scores.index(max(scores))`).
fn first_max(scores: &[f64]) -> usize {
    let mut best = 0;
    for (i, s) in scores.iter().enumerate() {
        if *s > scores[best] {
            best = i;
        }
    }
    best
}

/// DSPy's `inspect_modules`: each predictor's name, input and output fields and current
/// instructions, between lines of 80 dashes.
fn inspect_modules(program: &impl Module) -> String {
    let separator = "-".repeat(80);
    let indent = |text: &str| -> String {
        let mut out = String::new();
        for line in py_splitlines(text) {
            out.push_str("\n\t\t");
            out.push_str(line);
        }
        out
    };
    let mut parts: Vec<String> = vec![separator.clone()];
    for (name, params) in program.named_predictors() {
        let sig = &params.signature;
        let mut inputs = String::new();
        write_field_list(&mut inputs, sig.inputs());
        let mut outputs = String::new();
        write_field_list(&mut outputs, sig.outputs());
        parts.push(format!("Module {name}"));
        parts.push("\n\tInput Fields:".into());
        parts.push(indent(&inputs));
        parts.push("\tOutput Fields:".into());
        parts.push(indent(&outputs));
        parts.push(format!(
            "\tOriginal Instructions: {}",
            indent(&dedent(sig.instructions()))
        ));
        parts.push(separator.clone());
    }
    parts
        .iter()
        .map(|p| p.trim_matches('\n'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// DSPy's `OfferFeedback` signature.
fn offer_feedback() -> DynSignature {
    const INSTRUCTIONS: &str = "You will be given two trajectories of an LLM-driven program's execution. Your goal is to help the program's modules\nbuild up experience on how to maximize the reward value assigned to the program's outputs if it were to receive\nsimilar inputs in the future.\n\nThe module won't see its own history. It will rely on your advice balancing being concrete and being generalizable.\n\nIn your advice:\n- Avoid boilerplate. Offer advice that would change the module's behavior for the better in the future.\n- Ensure that advice offered to a module M is specific to that M's specific sub-task, not the overall program.\n- Rely on contrasting the behavior of the worse trajectory against the better trajectory in making recommendations.\n- Ensure each unique module name appears exactly once as a key in the advice dictionary.";
    let trajectory = "The trajectory of the program's execution, showing each module's I/O";
    let outputs = "The outputs of the program that we are analyzing";
    let reward = "The reward value assigned to the program's outputs";
    let info =
        "Additional information that might be helpful to understanding the assigned reward value.";
    let s = || TypeSpec::Str;
    DynSignature::from_fields(
        Some(INSTRUCTIONS),
        [
            FieldSpec::input("program_code", s())
                .with_desc("The code of the program that we are analyzing"),
            FieldSpec::input("modules_defn", s())
                .with_desc("The definition of each module in the program, including its I/O"),
            FieldSpec::input("program_inputs", s())
                .with_desc("The inputs to the program that we are analyzing"),
            FieldSpec::input("oracle_metadata", s()).with_desc(
                "Any (hidden) metadata about the training set instance we're analyzing",
            ),
            FieldSpec::input("worse_program_trajectory", s()).with_desc(trajectory),
            FieldSpec::input("worse_program_outputs", s()).with_desc(outputs),
            FieldSpec::input("worse_reward_value", TypeSpec::Float).with_desc(reward),
            FieldSpec::input("worse_reward_info", s()).with_desc(info),
            FieldSpec::input("better_program_trajectory", s()).with_desc(trajectory),
            FieldSpec::input("better_program_outputs", s()).with_desc(outputs),
            FieldSpec::input("better_reward_value", TypeSpec::Float).with_desc(reward),
            FieldSpec::input("better_reward_info", s()).with_desc(info),
            FieldSpec::input("module_names", TypeSpec::List(Box::new(s())))
                .with_desc("The names of the modules in the program, for which we seek advice"),
            FieldSpec::output("discussion", s())
                .with_desc("Discussing blame of where each module went wrong, if it did"),
            FieldSpec::output("module_advice", TypeSpec::Dict(Box::new(s()))).with_desc(
                "For each module, describe very concretely: If the module receives ${description of input or patterns therein}, then it should ${description of content, behavior, or strategies to adopt and/or others to avoid}. Basically, your advice be such that if the module has access to your tip, it would be much more likely to act like the successful trajectory rather than the lower-scoring trajectory.",
            ),
        ],
    )
    .expect("a fixed, valid signature")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::metric_fn;
    use crate::lm::ScriptedLM;

    fn exact() -> SIMBA {
        SIMBA::new(metric_fn("exact", |ex: &Example, p: &Prediction| {
            ex.get_str("answer") == p.get_str("answer")
        }))
    }

    #[test]
    fn winners_are_spread_with_pythons_round() {
        // round(i * 4 / 3): 0, 1.33, 2.67, 4 -> 0, 1, 3, 4.
        assert_eq!(select_winners(4, 4), [0, 1, 3, 4]);
        // round(i * 2 / 4): 0, 0.5, 1, 1.5, 2 -> 0, 0, 1, 2, 2 (ties to even).
        assert_eq!(select_winners(2, 5), [0, 1, 2]);
        // round(i * 3 / 2): 0, 1.5, 3 -> 0, 2, 3.
        assert_eq!(select_winners(3, 3), [0, 2, 3]);
        assert_eq!(select_winners(0, 7), [0]);
        assert_eq!(select_winners(8, 7), [0, 1, 3, 4, 5, 7, 8]);
    }

    #[test]
    fn top_k_always_has_the_baseline() {
        // Stable: equal averages keep pool order.
        assert_eq!(top_k_plus_baseline(&[0.0, 0.5, 0.75, 0.5], 2), [2, 0]);
        assert_eq!(top_k_plus_baseline(&[0.0, 0.5, 0.75, 0.5], 3), [2, 1, 0]);
        assert_eq!(top_k_plus_baseline(&[0.0, 0.5, 0.5, 0.5], 6), [1, 2, 3, 0]);
        assert_eq!(top_k_plus_baseline(&[0.0], 3), [0]);
        assert_eq!(top_k_plus_baseline(&[0.0, 1.0], 1), [0]);
    }

    #[test]
    fn softmax_sampling_draws_as_python() {
        // random.Random(0).random() is 0.8444218515250481; weights exp(0/0.2)=1 and
        // exp(1/0.2)=e^5 put 0.8444 of the mass beyond the first id's 0.0067.
        let mut rng = PyRandom::new(0);
        assert_eq!(
            softmax_sample(&mut rng, &[0, 3], &[0.0, 1.0], 0.2).unwrap(),
            3
        );
        let mut rng = PyRandom::new(0);
        assert_eq!(softmax_sample(&mut rng, &[5], &[0.0], 0.2).unwrap(), 5);
        assert!(softmax_sample(&mut rng, &[], &[], 0.2).is_err());
    }

    fn run(example: usize, score: f64) -> Rollout {
        Rollout {
            example,
            prediction: None,
            trace: Vec::new(),
            score,
            reward: json!(score),
            metadata: Map::new(),
            blanked: false,
        }
    }

    #[test]
    fn buckets_group_by_example_and_sort_stably() {
        // Two models (outer) × three examples (inner): runs j and j + 3 are example j's.
        let outputs = [1.0, 0.5, 0.0, 1.0, 1.0, 0.0]
            .iter()
            .enumerate()
            .map(|(i, &s)| run(i, s))
            .collect();
        let got: Vec<Vec<(usize, f64)>> = buckets(outputs, 3)
            .iter()
            .map(|b| b.iter().map(|r| (r.example, r.score)).collect())
            .collect();
        // Keys: example 0 (0, 1, 0), example 1 (0.5, 1, 0.25), example 2 (0, 0, 0).
        assert_eq!(
            got,
            [
                vec![(4, 1.0), (1, 0.5)],
                vec![(0, 1.0), (3, 1.0)],
                vec![(2, 0.0), (5, 0.0)],
            ]
        );
    }

    #[test]
    fn first_max_and_average() {
        assert_eq!(first_max(&[0.5, 1.0, 1.0]), 1);
        assert_eq!(average(&[]), 0.0);
        assert_eq!(average(&[1.0, 0.0]), 0.5);
    }

    #[test]
    fn modules_are_described_as_dspy_does() {
        let cot = DynPredict::new(DynSignature::parse("question -> reasoning, answer").unwrap());
        let text = inspect_modules(&cot);
        let sep = "-".repeat(80);
        assert_eq!(
            text,
            format!(
                "{sep}\nModule self\n\tInput Fields:\n\t\t1. `question` (str):\n\tOutput Fields:\n\t\t1. `reasoning` (str): \n\t\t2. `answer` (str):\n\tOriginal Instructions: \n\t\tGiven the fields `question`, produce the fields `reasoning`, `answer`.\n{sep}"
            )
        );
    }

    #[tokio::test]
    async fn bad_input_is_a_typed_error() {
        let student =
            DynPredict::new(DynSignature::parse("question -> reasoning, answer").unwrap());
        let trainset = super::super::qa_trainset(3);
        let cases = [
            (
                exact().bsize(4),
                SimbaError::TrainsetTooSmall { len: 3, bsize: 4 },
            ),
            (exact().bsize(0), SimbaError::EmptyBatch),
            (exact().bsize(2).num_candidates(0), SimbaError::NoCandidates),
            (
                exact().bsize(2).temperature_for_candidates(0.0),
                SimbaError::BadTemperature {
                    name: "temperature_for_candidates",
                    value: 0.0,
                },
            ),
        ];
        for (simba, want) in cases {
            let err = simba.compile(student.clone(), &trainset).await.unwrap_err();
            assert_eq!(SimbaError::find(&err), Some(&want), "{err}");
        }
    }

    #[tokio::test]
    async fn the_job_logs_every_candidate_and_final_evaluation() {
        let student =
            DynPredict::new(DynSignature::parse("question -> reasoning, answer").unwrap());
        let trainset = super::super::qa_trainset(4);
        let lm = ScriptedLM::from_fields([json!({"reasoning": "r", "answer": "A1"})]).repeat_last();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("simba.jsonl");
        let simba = exact().bsize(2).num_candidates(2).max_steps(3).max_demos(1);
        let job = with_settings(Settings::new().lm(lm), async {
            Arc::new(simba).spawn(student, trainset, Some(&log))
        })
        .await
        .unwrap();
        job.wait().await.unwrap();
        let lines: Vec<Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let trials: Vec<&Value> = lines.iter().filter(|l| l["event"] == "trial").collect();
        let minibatch = trials.iter().filter(|t| t["minibatch"] == true).count();
        let full: Vec<&&Value> = trials.iter().filter(|t| t["minibatch"] == false).collect();
        // Up to num_candidates + 1 candidates a step, then the finalists with their scores.
        assert!((3..=9).contains(&minibatch), "{minibatch}");
        assert!(!full.is_empty());
        for t in &full {
            assert_eq!(t["example_scores"].as_array().unwrap().len(), 4);
            assert!(t["candidate"]["winner"].is_u64());
        }
        assert_eq!(lines.last().unwrap()["event"], "end");
    }

    #[tokio::test]
    async fn a_job_cancelled_before_any_step_is_cancelled() {
        let student = DynPredict::new(DynSignature::parse("question -> answer").unwrap());
        let lm = ScriptedLM::from_fields([json!({"answer": "A1"})]).repeat_last();
        let job = with_settings(Settings::new().lm(lm), async {
            Arc::new(exact().bsize(2)).spawn(student, super::super::qa_trainset(4), None)
        })
        .await
        .unwrap();
        job.cancel();
        let result = job.wait().await;
        assert!(matches!(result, Err(Error::Cancelled { .. })), "{result:?}");
    }

    #[tokio::test]
    async fn each_batch_of_rollouts_is_an_optimizer_trial_span() {
        use crate::telemetry::testing::Tree;
        use tracing::instrument::WithSubscriber;
        use tracing_subscriber::layer::SubscriberExt;

        let tree = Tree::default();
        let subscriber = tracing_subscriber::registry().with(tree.clone());
        let student = DynPredict::new(DynSignature::parse("question -> answer").unwrap());
        let lm =
            ScriptedLM::from_fields((0..200).map(|i| json!({"answer": format!("A{}", i % 4)})));
        with_settings(
            Settings::new().lm(lm),
            exact()
                .bsize(2)
                .num_candidates(2)
                .max_steps(1)
                .num_threads(1)
                .compile_with_report(
                    student,
                    &super::super::qa_trainset(4),
                    &JobContext::detached(),
                ),
        )
        .with_subscriber(subscriber)
        .await
        .unwrap();
        let seen = tree.0.lock().unwrap().clone();
        for edge in [
            "dspex.optimize.trial < -",
            "dspex.module < dspex.optimize.trial",
        ] {
            assert!(seen.iter().any(|s| s == edge), "no {edge:?} in {seen:?}");
        }
    }

    #[tokio::test]
    async fn compiles_with_a_scripted_lm() {
        let student =
            DynPredict::new(DynSignature::parse("question -> reasoning, answer").unwrap());
        let trainset = super::super::qa_trainset(4);
        let lm = ScriptedLM::from_fields(
            (0..200).map(|i| json!({"reasoning": "r", "answer": format!("A{}", i % 4)})),
        );
        let (compiled, report) = with_settings(
            Settings::new().lm(lm),
            exact()
                .bsize(2)
                .num_candidates(2)
                .max_steps(2)
                .max_demos(1)
                .num_threads(1)
                .compile_with_report(student, &trainset, &JobContext::detached()),
        )
        .await
        .unwrap();
        assert_eq!(report.trial_logs.len(), 2);
        assert!(!report.candidate_programs.is_empty());
        let scores: Vec<f64> = report.candidate_programs.iter().map(|c| c.score).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]));
        assert!(compiled.named_predictors()[0].1.demos.len() <= 1);
    }
}
