//! [`MIPROv2`]: bootstrapped demo sets, grounded instruction proposals, and a Bayesian (TPE)
//! search over instruction × demo-set choices with minibatch evaluation.

use super::bootstrap::BootstrapFewShot;
use super::config::{DemoConfig, DemoKnobs};
use super::labeled::LabeledFewShot;
use super::propose::{self, TIPS};
use super::tpe::CategoricalTpe;
use super::{JobContext, Optimizable, Optimizer, TrialEvent, is_cancellation, score_examples};
use crate::error::{Error, Result};
use crate::evaluate::Metric;
use crate::example::Example;
use crate::lm::LanguageModel;
use crate::program::PredictorParams;
use crate::pycompat::PyRandom;
use crate::settings::{Settings, with_settings};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// MIPROv2's presets (`auto`): how many candidates, and how much of the valset to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auto {
    /// 6 candidates, a valset of at most 100.
    Light,
    /// 12 candidates, a valset of at most 300.
    Medium,
    /// 18 candidates, a valset of at most 1000.
    Heavy,
}

impl Auto {
    pub(crate) fn n(self) -> usize {
        match self {
            Auto::Light => 6,
            Auto::Medium => 12,
            Auto::Heavy => 18,
        }
    }

    fn val_size(self) -> usize {
        match self {
            Auto::Light => 100,
            Auto::Medium => 300,
            Auto::Heavy => 1000,
        }
    }
}

/// Demos the proposer shows per proposal, and bootstrapped demos in a zero-shot run's sets.
const BOOTSTRAPPED_IN_CONTEXT: usize = 3;
/// A valset larger than this is scored on minibatches under a preset.
const MIN_MINIBATCH_SIZE: usize = 50;

/// DSPy's `MIPROv2`, step for step and draw for draw: with the same LM answers it builds the same
/// demo candidate sets, sends the same proposal prompts, tries the same (instruction, demo set)
/// pairs — optuna's TPE is ported (see the `tpe` module) — and returns the same program.
///
/// 1. **Demo sets** (`num_candidates` of them): none, labeled only, bootstrapped on the trainset
///    as given, then bootstrapped on shuffled copies with a random size (BootstrapFewShot).
/// 2. **Instructions**: a dataset summary and, per predictor, proposals from the prompt model
///    grounded in the program's description, demos from the sets and a random tip; candidate 0
///    is the predictor's own instruction.
/// 3. **Search**: the program as given is scored on the whole valset; then each trial takes
///    the TPE's choice of instruction and demo set per predictor and is scored on a minibatch
///    (35 examples); every 6th trial and after the last, the best-averaging untested choice is
///    scored on the whole valset. The best whole-valset score wins (ties keep the earlier).
///
/// DSPy describes the program to the prompt model with its Python source; a Rust program has
/// none, so dspex describes each predictor (name, signature, instructions) unless
/// [`MIPROv2::program_code`] supplies a description.
///
/// The demo knobs ([`DemoConfig`], set with the [`DemoKnobs`] builder methods) start from
/// DSPy's MIPROv2 defaults, [`DemoConfig::mipro_v2`]; the BootstrapFewShot runs of step 1 are
/// built from them (not [speculative](BootstrapFewShot::speculative): they make DSPy's
/// sequential teacher calls). Their `concurrency` is both the teacher runs of step 1 in flight
/// and the examples evaluated at once in step 3.
///
/// # Cancellation
///
/// Cancelling the [job](super::Job) drops the work in flight at any step — the BootstrapFewShot
/// runs of step 1, the prompt model's calls of step 2, the evaluation under way in step 3 — so
/// no new LM call starts after it. Before the program as given has been scored on the valset
/// (steps 1 and 2, and that first evaluation), the compile ends with
/// [`Error::Cancelled`]; afterwards it returns the best program scored on the whole valset so
/// far (minibatch scores do not count, as in the search itself).
#[derive(Clone)]
pub struct MIPROv2 {
    metric: Arc<dyn Metric>,
    prompt_lm: Option<Arc<dyn LanguageModel>>,
    task_lm: Option<Arc<dyn LanguageModel>>,
    auto: Option<Auto>,
    num_candidates: Option<usize>,
    num_trials: Option<usize>,
    config: DemoConfig,
    seed: u64,
    init_temperature: f64,
    minibatch: bool,
    minibatch_size: usize,
    minibatch_full_eval_steps: usize,
    program_aware: bool,
    data_aware: bool,
    tip_aware: bool,
    fewshot_aware: bool,
    view_data_batch_size: usize,
    program_code: Option<String>,
}

impl std::fmt::Debug for MIPROv2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MIPROv2")
            .field("metric", &self.metric.name())
            .field("auto", &self.auto)
            .field("num_candidates", &self.num_candidates)
            .field("num_trials", &self.num_trials)
            .field("seed", &self.seed)
            .field("demo_config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DemoKnobs for MIPROv2 {
    fn demo_config(&self) -> &DemoConfig {
        &self.config
    }

    fn demo_config_mut(&mut self) -> &mut DemoConfig {
        &mut self.config
    }
}

impl MIPROv2 {
    /// MIPROv2 with DSPy's defaults: `auto = light`, the demo knobs of [`DemoConfig::mipro_v2`]
    /// (4 bootstrapped and 4 labeled demos), seed 9, minibatches of 35 with a full evaluation
    /// every 5 trials, every proposer aid on; the LMs are the settings' LM unless set.
    pub fn new(metric: impl Metric + 'static) -> Self {
        MIPROv2 {
            metric: Arc::new(metric),
            prompt_lm: None,
            task_lm: None,
            auto: Some(Auto::Light),
            num_candidates: None,
            num_trials: None,
            config: DemoConfig::mipro_v2(),
            seed: 9,
            init_temperature: 1.0,
            minibatch: true,
            minibatch_size: 35,
            minibatch_full_eval_steps: 5,
            program_aware: true,
            data_aware: true,
            tip_aware: true,
            fewshot_aware: true,
            view_data_batch_size: 10,
            program_code: None,
        }
    }

    /// A preset (`None` needs [`MIPROv2::num_candidates`] and [`MIPROv2::num_trials`]).
    #[must_use]
    pub fn auto(mut self, auto: Option<Auto>) -> Self {
        self.auto = auto;
        self
    }

    /// Candidates per kind without a preset.
    #[must_use]
    pub fn num_candidates(mut self, n: usize) -> Self {
        self.num_candidates = Some(n);
        self
    }

    /// Search trials without a preset.
    #[must_use]
    pub fn num_trials(mut self, n: usize) -> Self {
        self.num_trials = Some(n);
        self
    }

    /// The seed of every random choice (DSPy's default 9; 0 means 9, as in DSPy).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The prompt model's temperature for proposals.
    #[must_use]
    pub fn init_temperature(mut self, t: f64) -> Self {
        self.init_temperature = t;
        self
    }

    /// Minibatch evaluation (a preset decides it from the valset's size).
    #[must_use]
    pub fn minibatch(mut self, on: bool, size: usize, full_eval_steps: usize) -> Self {
        self.minibatch = on;
        self.minibatch_size = size.max(1);
        self.minibatch_full_eval_steps = full_eval_steps.max(1);
        self
    }

    /// Which proposer aids are on: program description, dataset summary, tips, demos.
    #[must_use]
    pub fn proposer(mut self, program: bool, data: bool, tip: bool, fewshot: bool) -> Self {
        self.program_aware = program;
        self.data_aware = data;
        self.tip_aware = tip;
        self.fewshot_aware = fewshot;
        self
    }

    /// How the program is described to the prompt model (DSPy sends the program's Python
    /// source).
    #[must_use]
    pub fn program_code(mut self, text: impl Into<String>) -> Self {
        self.program_code = Some(text.into());
        self
    }

    /// The LM that writes summaries and instructions.
    #[must_use]
    pub fn prompt_lm(mut self, lm: impl LanguageModel + 'static) -> Self {
        self.prompt_lm = Some(Arc::new(lm));
        self
    }

    /// The LM the program runs on while bootstrapping and searching.
    #[must_use]
    pub fn task_lm(mut self, lm: impl LanguageModel + 'static) -> Self {
        self.task_lm = Some(Arc::new(lm));
        self
    }

    /// Compiles with an explicit valset (DSPy's `valset=`); without one, the last 80 % of the
    /// trainset (at most 1000) is held out.
    pub async fn compile_with_valset<P: Optimizable>(
        &self,
        student: P,
        trainset: &[Example],
        valset: Option<&[Example]>,
        ctx: &JobContext,
    ) -> Result<P> {
        let settings = Settings::current();
        let task_lm = self.task_lm.clone().or_else(|| settings.lm.clone());
        let prompt_lm = self
            .prompt_lm
            .clone()
            .or_else(|| settings.lm.clone())
            .ok_or(Error::NoLm)?;
        let task_lm = task_lm.ok_or(Error::NoLm)?;
        let task_settings = Settings::new().lm_arc(task_lm);
        let mipro_err = |message: String| Error::step("MIPROv2", message);

        let zeroshot =
            self.config.max_bootstrapped_demos == 0 && self.config.max_labeled_demos == 0;
        match (self.auto, self.num_candidates, self.num_trials) {
            (None, None, _) | (None, _, None) => {
                return Err(mipro_err(
                    "without a preset (auto), set both num_candidates and num_trials".into(),
                ));
            }
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(mipro_err(
                    "with a preset (auto), num_candidates and num_trials are set by the preset; set auto to None to choose them".into(),
                ));
            }
            _ => {}
        }
        let seed = if self.seed == 0 { 9 } else { self.seed };
        let mut rng = PyRandom::new(seed);

        // Train/val split.
        if trainset.is_empty() {
            return Err(mipro_err("the trainset is empty".into()));
        }
        let (trainset, mut valset): (Vec<Example>, Vec<Example>) = match valset {
            Some([]) => return Err(mipro_err("the valset is empty".into())),
            Some(v) => (trainset.to_vec(), v.to_vec()),
            None => {
                if trainset.len() < 2 {
                    return Err(mipro_err(
                        "without a valset, the trainset needs at least 2 examples".into(),
                    ));
                }
                let size = ((trainset.len() as f64 * 0.8) as usize).clamp(1, 1000);
                let cut = trainset.len() - size;
                (trainset[..cut].to_vec(), trainset[cut..].to_vec())
            }
        };

        // Hyperparameters.
        let num_predictors = student.named_predictors().len();
        if num_predictors == 0 {
            return Err(mipro_err(
                "the program has no predictors to optimize".into(),
            ));
        }
        let mut minibatch = self.minibatch;
        let (num_trials, num_instruct, num_fewshot) = match self.auto {
            Some(auto) => {
                let n = auto.n();
                let take = auto.val_size().min(valset.len());
                let idx = rng
                    .sample_indices(valset.len(), take)
                    .map_err(|e| mipro_err(e.to_string()))?;
                valset = idx.into_iter().map(|i| valset[i].clone()).collect();
                minibatch = valset.len() > MIN_MINIBATCH_SIZE;
                let vars = if zeroshot {
                    num_predictors
                } else {
                    2 * num_predictors
                };
                let trials = (2.0 * vars as f64 * (n as f64).log2()).max(1.5 * n as f64) as usize;
                let instruct = if zeroshot {
                    n
                } else {
                    (n as f64 * 0.5) as usize
                };
                (trials, instruct, n)
            }
            None => {
                let n = self.num_candidates.unwrap_or(1);
                (self.num_trials.unwrap_or(1), n, n)
            }
        };
        if minibatch && self.minibatch_size > valset.len() {
            return Err(mipro_err(format!(
                "the minibatch size ({}) cannot exceed the valset's ({})",
                self.minibatch_size,
                valset.len()
            )));
        }
        let program = student.clone();

        // Step 1: demo candidate sets.
        ctx.phase("bootstrapping demo sets", None);
        let (boot_max, label_max) = if zeroshot {
            (BOOTSTRAPPED_IN_CONTEXT, 0)
        } else {
            (
                self.config.max_bootstrapped_demos,
                self.config.max_labeled_demos,
            )
        };
        let demo_sets = with_settings(
            task_settings.clone(),
            self.demo_candidates(
                &program,
                &trainset,
                num_fewshot,
                boot_max,
                label_max,
                &mut rng,
                ctx,
            ),
        )
        .await?;

        // Step 2: instruction proposals.
        ctx.phase("proposing instructions", None);
        let instructions = ctx
            .run_until_cancelled(self.propose_instructions(
                &program,
                &trainset,
                &demo_sets,
                num_instruct,
                &prompt_lm,
                &mut rng,
            ))
            .await
            .ok_or_else(|| ctx.cancelled_error())??;
        let demo_sets = if zeroshot { Vec::new() } else { demo_sets };

        // Step 3: the search.
        let search = Search {
            mipro: self,
            program,
            instructions,
            demo_sets,
            valset,
            minibatch,
            num_trials,
            seed,
        };
        with_settings(task_settings, search.run(&mut rng, ctx)).await
    }

    /// `create_n_fewshot_demo_sets`: per set, each predictor's demos (`sets[s][p]`).
    #[allow(clippy::too_many_arguments)]
    async fn demo_candidates<P: Optimizable>(
        &self,
        program: &P,
        trainset: &[Example],
        num_sets: usize,
        max_bootstrapped: usize,
        max_labeled: usize,
        rng: &mut PyRandom,
        ctx: &JobContext,
    ) -> Result<Vec<Vec<Vec<Example>>>> {
        // The shuffles and sizes are drawn first, in DSPy's order; the sets, which do not depend
        // on each other, are then bootstrapped at once (each one making exactly DSPy's calls).
        enum Plan {
            ZeroShot,
            Labeled,
            Bootstrap(Vec<Example>, usize),
        }
        let mut plans = Vec::new();
        for seed in -3i64..(num_sets as i64 - 3) {
            plans.push(if seed == -3 {
                Plan::ZeroShot
            } else if seed == -2 && max_labeled > 0 {
                Plan::Labeled
            } else {
                let mut copy = trainset.to_vec();
                let size = if seed == -1 {
                    max_bootstrapped
                } else {
                    rng.shuffle(&mut copy);
                    rng.randint(1, max_bootstrapped as i64)
                        .map_err(|e| Error::step("MIPROv2 demo sets", e))?
                        as usize
                };
                Plan::Bootstrap(copy, size)
            });
        }
        if ctx.is_cancelled() {
            return Err(ctx.cancelled_error());
        }
        let muted = ctx.muted();
        let compiled = futures_util::future::try_join_all(plans.into_iter().map(|plan| {
            let muted = &muted;
            async move {
                Ok::<P, Error>(match plan {
                    Plan::ZeroShot => {
                        let mut p = program.clone();
                        p.visit_predictors_mut("", &mut |_, params| params.demos.clear());
                        p
                    }
                    Plan::Labeled => {
                        LabeledFewShot::new(max_labeled).apply(program.clone(), trainset)
                    }
                    Plan::Bootstrap(copy, size) => {
                        let boot = BootstrapFewShot::new()
                            .metric_arc(self.metric.clone())
                            .with_demo_config(self.config)
                            .max_bootstrapped_demos(size)
                            .max_labeled_demos(max_labeled);
                        // The teacher is a copy of the student, as DSPy's `teacher=None`. Its
                        // own trials are not this job's, its cancellation is: a cancelled run
                        // returns at once with a partial program, thrown away below.
                        boot.compile_in(program.clone(), &copy, muted).await?
                    }
                })
            }
        }))
        .await?;
        if ctx.is_cancelled() {
            return Err(ctx.cancelled_error());
        }
        Ok(compiled
            .into_iter()
            .map(|p| {
                p.named_predictors()
                    .into_iter()
                    .map(|(_, params)| params.demos.clone())
                    .collect()
            })
            .collect())
    }

    /// `GroundedProposer.propose_instructions_for_program`, then candidate 0 of each predictor
    /// replaced by its current instructions: `out[p][i]`.
    async fn propose_instructions<P: Optimizable>(
        &self,
        program: &P,
        trainset: &[Example],
        demo_sets: &[Vec<Vec<Example>>],
        n: usize,
        prompt_lm: &Arc<dyn LanguageModel>,
        rng: &mut PyRandom,
    ) -> Result<Vec<Vec<String>>> {
        let predictors: Vec<(String, PredictorParams)> = program
            .named_predictors()
            .into_iter()
            .map(|(name, p)| (name, p.clone()))
            .collect();
        let program_code = self.program_code.clone().unwrap_or_else(|| {
            let refs: Vec<(String, &PredictorParams)> =
                predictors.iter().map(|(n, p)| (n.clone(), p)).collect();
            propose::describe_predictors(&refs)
        });
        let data_summary = if self.data_aware {
            match propose::dataset_summary(prompt_lm, trainset, self.view_data_batch_size).await {
                Ok(summary) => Some(summary),
                Err(e) => {
                    tracing::warn!(error = %e, "MIPROv2: no dataset summary; proposing without it");
                    None
                }
            }
        } else {
            None
        };
        let use_demos = self.fewshot_aware && !demo_sets.is_empty();
        let num_demo_sets = if demo_sets.is_empty() {
            n
        } else {
            demo_sets.len().max(1)
        };
        // The tips and rollout ids are drawn first, in DSPy's order (predictor by predictor,
        // set by set); the proposals, which do not depend on each other, are then asked all at
        // once: the same calls as DSPy's loop, in one wave of LM calls instead of one each.
        let mut asks = Vec::new();
        for (p_i, (_, params)) in predictors.iter().enumerate() {
            for set_i in 0..n.min(num_demo_sets) {
                let tip = if self.tip_aware {
                    let (_, text) = *rng
                        .choice(&TIPS)
                        .ok_or_else(|| Error::step("MIPROv2", "no tips"))?;
                    Some(text)
                } else {
                    None
                };
                let rollout = rng
                    .randint(0, 1_000_000_000)
                    .map_err(|e| Error::step("MIPROv2 proposals", e))?;
                asks.push((p_i, params, set_i, tip, rollout as u64));
            }
        }
        let answers = futures_util::future::try_join_all(asks.iter().map(
            |&(p_i, params, set_i, tip, rollout)| {
                self.propose_one(
                    prompt_lm,
                    params,
                    p_i,
                    set_i,
                    if use_demos { demo_sets } else { &[] },
                    &program_code,
                    data_summary.as_deref(),
                    tip,
                    rollout,
                )
            },
        ))
        .await?;
        let mut out: Vec<Vec<String>> = vec![Vec::new(); predictors.len()];
        for ((p_i, ..), proposal) in asks.iter().zip(answers) {
            out[*p_i].push(proposal);
        }
        for (proposals, (_, params)) in out.iter_mut().zip(&predictors) {
            if let Some(first) = proposals.first_mut() {
                *first = params.instructions().to_string();
            } else {
                proposals.push(params.instructions().to_string());
            }
        }
        Ok(out)
    }

    /// One proposal (`GenerateModuleInstruction.forward`).
    #[allow(clippy::too_many_arguments)]
    async fn propose_one(
        &self,
        lm: &Arc<dyn LanguageModel>,
        params: &PredictorParams,
        p_i: usize,
        set_i: usize,
        demo_sets: &[Vec<Vec<Example>>],
        program_code: &str,
        data_summary: Option<&str>,
        tip: Option<&str>,
        rollout: u64,
    ) -> Result<String> {
        let t = self.init_temperature;
        let mut task_demos = String::new();
        if !demo_sets.is_empty() {
            let order = (set_i..demo_sets.len()).chain(0..set_i);
            let mut shown = Vec::new();
            'sets: for s in order {
                for demo in demo_sets[s].get(p_i).map(Vec::as_slice).unwrap_or_default() {
                    if demo.contains_key("augmented") {
                        shown.push(propose::example_string(&params.signature, demo));
                        if shown.len() >= BOOTSTRAPPED_IN_CONTEXT {
                            break 'sets;
                        }
                    }
                }
            }
            task_demos = shown.join("\n\n") + "\n\n";
        }
        if task_demos.trim().is_empty() || set_i == 0 {
            task_demos = "No task demos provided.".into();
        }
        let mut program_description = "Not available".to_string();
        let mut module = "Not provided".to_string();
        let mut module_description = "Not provided".to_string();
        if self.program_aware {
            let described = async {
                let description = propose::strip_prefix(
                    &propose::ask(
                        lm,
                        propose::describe_program(),
                        Example::new()
                            .with("program_code", program_code)
                            .with("program_example", task_demos.clone()),
                        t,
                        Some(rollout),
                        "program_description",
                    )
                    .await?,
                );
                program_description.clone_from(&description);
                module = propose::module_string(&params.signature);
                module_description = propose::ask(
                    lm,
                    propose::describe_module(),
                    Example::new()
                        .with("program_code", program_code)
                        .with("program_example", task_demos.clone())
                        .with("program_description", description)
                        .with("module", module.clone()),
                    t,
                    Some(rollout),
                    "module_description",
                )
                .await?;
                Ok::<(), Error>(())
            }
            .await;
            if let Err(e) = described {
                tracing::warn!(error = %e, "MIPROv2: describing the program failed; proposing without it");
            }
        }
        let mut inputs = Example::new()
            .with("task_demos", task_demos)
            .with("basic_instruction", params.instructions());
        if let Some(summary) = data_summary {
            inputs.insert("dataset_description", summary);
        }
        if self.program_aware {
            inputs.insert("program_code", program_code);
            inputs.insert("program_description", program_description);
            inputs.insert("module", module);
            inputs.insert("module_description", module_description);
        }
        let use_tip = tip.is_some_and(|t| !t.is_empty());
        if let Some(tip) = tip.filter(|t| !t.is_empty()) {
            inputs.insert("tip", tip);
        }
        let proposed = propose::ask(
            lm,
            propose::generate_instruction(data_summary.is_some(), self.program_aware, use_tip),
            inputs,
            t,
            Some(rollout),
            "proposed_instruction",
        )
        .await?;
        Ok(propose::strip_prefix(&propose::strip_prefix(&proposed)))
    }
}

/// Step 3's state.
struct Search<'a, P> {
    mipro: &'a MIPROv2,
    program: P,
    instructions: Vec<Vec<String>>,
    demo_sets: Vec<Vec<Vec<Example>>>,
    valset: Vec<Example>,
    minibatch: bool,
    num_trials: usize,
    seed: u64,
}

/// A minibatch-scored choice: its scores and the first program built for it.
struct Seen<P> {
    key: String,
    scores: Vec<f64>,
    program: P,
    params: BTreeMap<String, usize>,
}

impl<P: Optimizable> Search<'_, P> {
    /// `(name, n_choices)` in suggestion order.
    fn space(&self) -> Vec<(String, usize)> {
        let mut space = Vec::new();
        for (i, candidates) in self.instructions.iter().enumerate() {
            space.push((format!("{i}_predictor_instruction"), candidates.len()));
            if !self.demo_sets.is_empty() {
                space.push((format!("{i}_predictor_demos"), self.demo_sets.len()));
            }
        }
        space
    }

    /// The program with `params` applied, and DSPy's key for the choice.
    fn build(&self, params: &BTreeMap<String, usize>) -> (P, String) {
        let mut program = self.program.clone();
        let mut key = Vec::new();
        let mut index = 0usize;
        program.visit_predictors_mut("", &mut |_, p| {
            let i = index;
            index += 1;
            if let Some(&c) = params.get(&format!("{i}_predictor_instruction")) {
                if let Some(text) = self.instructions.get(i).and_then(|v| v.get(c)) {
                    p.set_instructions(text);
                }
                key.push(format!("Predictor {i}: Instruction {c}"));
            }
            if let Some(&d) = params.get(&format!("{i}_predictor_demos")) {
                if let Some(demos) = self.demo_sets.get(d).and_then(|s| s.get(i)) {
                    p.demos = demos.clone();
                }
                key.push(format!("Predictor {i}: Few-Shot Set {d}"));
            }
        });
        (program, key.join(","))
    }

    /// `eval_candidate_program`: the whole valset, or a minibatch drawn from `rng`, with the
    /// score of each example scored; [`Error::Cancelled`] once `ctx` is cancelled.
    async fn score(
        &self,
        program: &P,
        batch: usize,
        rng: &mut PyRandom,
        ctx: &JobContext,
    ) -> Result<(f64, Vec<f64>)> {
        let m = self.mipro;
        if batch >= self.valset.len() {
            return score_examples(
                program,
                &self.valset,
                &m.metric,
                m.config.runs_at_once(),
                ctx,
            )
            .await;
        }
        let idx = rng
            .sample_indices(self.valset.len(), batch)
            .map_err(|e| Error::step("MIPROv2 minibatch", e))?;
        let devset: Vec<Example> = idx.into_iter().map(|i| self.valset[i].clone()).collect();
        score_examples(program, &devset, &m.metric, m.config.runs_at_once(), ctx).await
    }

    async fn run(self, rng: &mut PyRandom, ctx: &JobContext) -> Result<P> {
        let m = self.mipro;
        let steps = m.minibatch_full_eval_steps;
        let adjusted = if self.minibatch {
            self.num_trials
                + self.num_trials / steps
                + 1
                + usize::from(!self.num_trials.is_multiple_of(steps))
        } else {
            self.num_trials
        };
        // The baseline and every full evaluation are trials too.
        ctx.phase(
            "searching",
            Some(if self.minibatch {
                adjusted
            } else {
                adjusted + 1
            }),
        );
        let space = self.space();
        let default: BTreeMap<String, usize> = space.iter().map(|(k, _)| (k.clone(), 0)).collect();
        // Cancelled before the baseline is scored: no program to return (Error::Cancelled).
        let (baseline, example_scores) = self
            .score(&self.program, self.valset.len(), rng, ctx)
            .await?;
        ctx.trial_with_example_scores(
            TrialEvent {
                trial: 0,
                score: baseline,
                minibatch: false,
                candidate: json!({"baseline": true})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            },
            &example_scores,
        );
        let mut best_score = baseline;
        let mut best = self.program.clone();
        let mut tpe = CategoricalTpe::new(self.seed as u32);
        tpe.add(default, baseline);
        let mut seen: Vec<Seen<P>> = Vec::new();
        let mut fully_evaluated: Vec<String> = Vec::new();
        for _ in 0..self.num_trials {
            if ctx.is_cancelled() {
                break;
            }
            let (number, params) = tpe.ask(&space);
            let trial_num = number + 1;
            let (candidate, key) = self.build(&params);
            let batch = if self.minibatch {
                m.minibatch_size
            } else {
                self.valset.len()
            };
            let (score, example_scores) = match self.score(&candidate, batch, rng, ctx).await {
                Err(e) if is_cancellation(&e) => break,
                scored => scored?,
            };
            let event = TrialEvent {
                trial: trial_num - 1,
                score,
                minibatch: batch < self.valset.len(),
                candidate: params.iter().map(|(k, v)| (k.clone(), json!(v))).collect(),
            };
            if event.minibatch {
                ctx.trial(event);
            } else {
                ctx.trial_with_example_scores(event, &example_scores);
            }
            if !self.minibatch && score > best_score {
                best_score = score;
                best = candidate.clone();
            }
            match seen.iter_mut().find(|s| s.key == key) {
                Some(s) => s.scores.push(score),
                None => seen.push(Seen {
                    key: key.clone(),
                    scores: vec![score],
                    program: candidate,
                    params: params.clone(),
                }),
            }
            if self.minibatch && (trial_num.is_multiple_of(steps + 1) || trial_num == adjusted - 1)
            {
                // The untested choice with the best mean minibatch score, scored on everything.
                let mut means: Vec<(f64, &Seen<P>)> = seen
                    .iter()
                    .map(|s| (s.scores.iter().sum::<f64>() / s.scores.len() as f64, s))
                    .collect();
                means.sort_by(|a, b| b.0.total_cmp(&a.0));
                let Some((_, pick)) = means
                    .into_iter()
                    .find(|(_, s)| !fully_evaluated.contains(&s.key))
                else {
                    return Err(Error::step(
                        "MIPROv2",
                        "every choice tried so far was already evaluated on the whole valset",
                    ));
                };
                let (full, example_scores) =
                    match self.score(&pick.program, self.valset.len(), rng, ctx).await {
                        Err(e) if is_cancellation(&e) => break,
                        full => full?,
                    };
                ctx.trial_with_example_scores(
                    TrialEvent {
                        trial: trial_num,
                        score: full,
                        minibatch: false,
                        candidate: pick
                            .params
                            .iter()
                            .map(|(k, v)| (k.clone(), json!(v)))
                            .collect(),
                    },
                    &example_scores,
                );
                tpe.add(pick.params.clone(), full);
                fully_evaluated.push(pick.key.clone());
                if full > best_score {
                    best_score = full;
                    best = pick.program.clone();
                }
            }
            tpe.tell(number, params, score);
        }
        if ctx.is_cancelled() {
            tracing::info!(
                score = best_score,
                "MIPROv2: cancelled; returning the best program so far"
            );
        } else {
            tracing::info!(score = best_score, "MIPROv2: returning the best program");
        }
        Ok(best)
    }
}

impl Optimizer for MIPROv2 {
    async fn compile_in<P: Optimizable>(
        &self,
        student: P,
        trainset: &[Example],
        ctx: &JobContext,
    ) -> Result<P> {
        self.compile_with_valset(student, trainset, None, ctx).await
    }
}
