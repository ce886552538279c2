//! [`COPRO`]: coordinate ascent over each predictor's instructions (and its last output field's
//! prefix), proposed by a prompt model from the scores of earlier attempts.

use super::{JobContext, Optimizable, Optimizer, TrialEvent, is_cancellation, score_program};
use crate::error::{Error, Result};
use crate::evaluate::Metric;
use crate::example::{Example, Prediction};
use crate::lm::LanguageModel;
use crate::module::{CallConfig, DynPredict};
use crate::program::{Module, PredictorParams};
use crate::pycompat::pyfmt::py_float;
use crate::signature::{DynSignature, FieldSpec, TypeSpec};
use serde_json::{Map, Value, json};
use std::sync::Arc;

const PROPOSED_INSTRUCTION_DESC: &str = "The improved instructions for the language model";
const PROPOSED_PREFIX_DESC: &str =
    "The string at the end of the prompt, which will help the model start solving the task";

fn proposal_outputs() -> [FieldSpec; 2] {
    [
        FieldSpec::output("proposed_instruction", TypeSpec::Str)
            .with_desc(PROPOSED_INSTRUCTION_DESC),
        FieldSpec::output("proposed_prefix_for_output_field", TypeSpec::Str)
            .with_desc(PROPOSED_PREFIX_DESC),
    ]
}

/// DSPy's `BasicGenerateInstruction`.
fn basic_generate_instruction() -> DynSignature {
    let fields = std::iter::once(
        FieldSpec::input("basic_instruction", TypeSpec::Str)
            .with_desc("The initial instructions before optimization"),
    )
    .chain(proposal_outputs());
    DynSignature::from_fields(
        Some(
            "You are an instruction optimizer for large language models. I will give you a ``signature`` of fields (inputs and outputs) in English. Your task is to propose an instruction that will lead a good language model to perform the task well. Don't be afraid to be creative.",
        ),
        fields,
    )
    .expect("a fixed, valid signature")
}

/// DSPy's `GenerateInstructionGivenAttempts`.
fn generate_instruction_given_attempts() -> DynSignature {
    let fields = std::iter::once(FieldSpec::input("attempted_instructions", TypeSpec::Str))
        .chain(proposal_outputs());
    DynSignature::from_fields(
        Some(
            "You are an instruction optimizer for large language models. I will give some task instructions I've tried, along with their corresponding validation scores. The instructions are arranged in increasing order based on their scores, where higher scores indicate better quality.\n\nYour task is to propose a new instruction that will lead a good language model to perform the task even better. Don't be afraid to be creative.",
        ),
        fields,
    )
    .expect("a fixed, valid signature")
}

/// DSPy's `COPRO`: for each predictor, a prompt model proposes `breadth` instructions (with a
/// prefix for the last output field); each is scored on the trainset with the rest of the
/// program as it stands; the best is kept, and for `depth` rounds the prompt model sees the
/// best attempts so far, worst first with their scores, and proposes more. No randomness: the
/// result depends only on the LM's answers and the scores. Demos are left as they are.
///
/// Programs with several predictors re-score every candidate ever proposed for a predictor at
/// each round, because the other predictors have changed (as DSPy does).
///
/// Cancelling the [job](super::Job) drops the proposal or the evaluation under way, so no new
/// LM call starts after it; the compile returns the best candidate scored so far, or
/// [`Error::Cancelled`] if none was.
#[derive(Clone)]
pub struct COPRO {
    metric: Arc<dyn Metric>,
    prompt_lm: Option<Arc<dyn LanguageModel>>,
    breadth: usize,
    depth: usize,
    init_temperature: f64,
    concurrency: usize,
}

impl std::fmt::Debug for COPRO {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("COPRO")
            .field("metric", &self.metric.name())
            .field(
                "prompt_lm",
                &self.prompt_lm.as_ref().map(|lm| lm.model().to_string()),
            )
            .field("breadth", &self.breadth)
            .field("depth", &self.depth)
            .field("init_temperature", &self.init_temperature)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl COPRO {
    /// COPRO with DSPy's defaults: breadth 10, depth 3, temperature 1.4; proposals from the LM
    /// in the settings unless [`COPRO::prompt_lm`] sets one; evaluations 16 at a time.
    pub fn new(metric: impl Metric + 'static) -> Self {
        COPRO {
            metric: Arc::new(metric),
            prompt_lm: None,
            breadth: 10,
            depth: 3,
            init_temperature: 1.4,
            concurrency: 16,
        }
    }

    /// Proposals per round (more than 1).
    pub fn breadth(mut self, breadth: usize) -> Result<Self> {
        if breadth <= 1 {
            return Err(Error::step(
                "configuring COPRO",
                format!("breadth must be greater than 1, got {breadth}"),
            ));
        }
        self.breadth = breadth;
        Ok(self)
    }

    /// Rounds of proposals.
    #[must_use]
    pub fn depth(mut self, depth: usize) -> Self {
        self.depth = depth.max(1);
        self
    }

    /// The sampling temperature of the proposals.
    #[must_use]
    pub fn init_temperature(mut self, t: f64) -> Self {
        self.init_temperature = t;
        self
    }

    /// The LM that writes the proposals.
    #[must_use]
    pub fn prompt_lm(mut self, lm: impl LanguageModel + 'static) -> Self {
        self.prompt_lm = Some(Arc::new(lm));
        self
    }

    /// How many trainset examples are evaluated at once.
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// `n` proposals of `signature` on `inputs`, as (instruction, prefix) pairs.
    async fn propose(
        &self,
        signature: DynSignature,
        inputs: Example,
        n: usize,
    ) -> Result<Vec<(String, String)>> {
        let mut config = CallConfig::new()
            .n(n as u32)
            .temperature(self.init_temperature);
        config.lm = self.prompt_lm.clone();
        let prediction: Prediction = DynPredict::new(signature)
            .with_config(config)
            .call(&inputs)
            .await?;
        let text = |m: &Map<String, Value>, key: &str| -> String {
            match m.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            }
        };
        let completions = if prediction.completions().is_empty() {
            vec![prediction.as_map().clone()]
        } else {
            prediction.completions().to_vec()
        };
        Ok(completions
            .iter()
            .map(|c| {
                (
                    text(c, "proposed_instruction"),
                    text(c, "proposed_prefix_for_output_field"),
                )
            })
            .collect())
    }
}

/// One scored (instruction, prefix) of one predictor, with the whole program as it was scored.
struct Scored<P> {
    instruction: String,
    prefix: String,
    score: f64,
    program: P,
}

/// The name of a predictor's last field (the one whose prefix COPRO tunes).
fn last_field(params: &PredictorParams) -> Option<String> {
    params
        .signature
        .fields()
        .last()
        .map(|f| f.name().to_string())
}

/// Sets instructions and the last field's prefix of the predictor at `index`.
fn set_candidate<P: Module>(
    program: &mut P,
    index: usize,
    instruction: &str,
    prefix: &str,
) -> Result<()> {
    let mut preds = program.named_predictors_mut();
    let (_, params) = preds
        .get_mut(index)
        .ok_or_else(|| Error::step("COPRO", "the program's predictors changed while optimizing"))?;
    params.set_instructions(instruction);
    if let Some(last) = last_field(params) {
        params.signature = params
            .signature
            .with_updated_field(&last, |f| f.with_prefix(prefix))?;
    }
    Ok(())
}

impl Optimizer for COPRO {
    async fn compile_in<P: Optimizable>(
        &self,
        student: P,
        trainset: &[Example],
        ctx: &JobContext,
    ) -> Result<P> {
        let module = student.clone();
        let originals: Vec<PredictorParams> = module
            .named_predictors()
            .into_iter()
            .map(|(_, p)| p.clone())
            .collect();
        if originals.is_empty() {
            return Err(Error::step(
                "COPRO",
                "the program has no predictors to optimize",
            ));
        }
        ctx.phase("proposing instructions", None);
        // Seeding: breadth - 1 proposals per predictor, then its current instruction and prefix.
        let mut latest: Vec<Vec<(String, String)>> = Vec::new();
        for params in &originals {
            // Nothing is scored yet: a cancellation leaves no program to return.
            let mut proposals = ctx
                .run_until_cancelled(self.propose(
                    basic_generate_instruction(),
                    Example::new().with("basic_instruction", params.instructions()),
                    self.breadth - 1,
                ))
                .await
                .ok_or_else(|| ctx.cancelled_error())??;
            let prefix = last_field(params)
                .and_then(|n| params.signature.field(&n).map(|f| f.prefix().to_string()))
                .unwrap_or_default();
            proposals.push((params.instructions().to_string(), prefix));
            latest.push(proposals);
        }
        let mut all = latest.clone();
        let mut evaluated: Vec<Vec<Scored<P>>> = (0..originals.len()).map(|_| Vec::new()).collect();
        let mut clone = module.clone();
        let mut trial = 0usize;
        ctx.phase(
            "searching",
            Some(self.breadth * self.depth * originals.len()),
        );
        'search: for d in 0..self.depth {
            for p_i in 0..originals.len() {
                let candidates = if originals.len() > 1 {
                    all[p_i].clone()
                } else {
                    latest[p_i].clone()
                };
                for (instruction, prefix) in candidates {
                    if ctx.is_cancelled() {
                        break 'search;
                    }
                    let instruction = instruction.trim_matches('"').trim().to_string();
                    let prefix = prefix.trim_matches('"').trim().to_string();
                    set_candidate(&mut clone, p_i, &instruction, &prefix)?;
                    let score =
                        match score_program(&clone, trainset, &self.metric, self.concurrency, ctx)
                            .await
                        {
                            Err(e) if is_cancellation(&e) => break 'search,
                            score => score?,
                        };
                    ctx.trial(TrialEvent {
                        trial,
                        score,
                        minibatch: false,
                        candidate: json!({
                            "depth": d,
                            "predictor": p_i,
                            "instruction": instruction,
                            "prefix": prefix,
                        })
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    });
                    trial += 1;
                    let memo = &mut evaluated[p_i];
                    match memo
                        .iter_mut()
                        .find(|s| s.instruction == instruction && s.prefix == prefix)
                    {
                        // A repeat replaces the stored entry only when it scores higher.
                        Some(entry) if entry.score >= score => {}
                        Some(entry) => {
                            entry.score = score;
                            entry.program = clone.clone();
                        }
                        None => memo.push(Scored {
                            instruction,
                            prefix,
                            score,
                            program: clone.clone(),
                        }),
                    }
                }
                // The predictor takes its best candidate so far (the first of equal scores)
                // before the next predictor is scored.
                if let Some(best) = best_of(&evaluated[p_i]) {
                    let (instruction, prefix) = (best.instruction.clone(), best.prefix.clone());
                    set_candidate(&mut clone, p_i, &instruction, &prefix)?;
                }
            }
            if d + 1 == self.depth || ctx.is_cancelled() {
                break;
            }
            let mut next = Vec::new();
            for (p_i, memo) in evaluated.iter().enumerate() {
                let mut ranked: Vec<&Scored<P>> = memo.iter().collect();
                ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
                let shortest = self.breadth.min(ranked.len());
                let mut attempts: Vec<Value> = Vec::new();
                for i in (0..shortest).rev() {
                    let k = shortest - i;
                    attempts.push(format!("Instruction #{k}: {}", ranked[i].instruction).into());
                    attempts.push(format!("Prefix #{k}: {}", ranked[i].prefix).into());
                    attempts.push(
                        format!("Resulting Score #{k}: {}", py_float(ranked[i].score)).into(),
                    );
                }
                let Some(proposals) = ctx
                    .run_until_cancelled(self.propose(
                        generate_instruction_given_attempts(),
                        Example::new().with("attempted_instructions", Value::Array(attempts)),
                        self.breadth,
                    ))
                    .await
                else {
                    break 'search;
                };
                let proposals = proposals?;
                all[p_i].extend(proposals.iter().cloned());
                next.push(proposals);
            }
            latest = next;
        }
        // Every predictor's entries, best first (stable); equal-score repeats of the same
        // program dropped; the first one's program wins.
        let mut candidates: Vec<Scored<P>> = evaluated.into_iter().flatten().collect();
        candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
        match candidates.into_iter().next() {
            Some(best) => Ok(best.program),
            // Cancelled before anything was scored.
            None if ctx.is_cancelled() => Err(ctx.cancelled_error()),
            None => Ok(module),
        }
    }
}

/// The first entry with the highest score.
fn best_of<P>(memo: &[Scored<P>]) -> Option<&Scored<P>> {
    let mut best: Option<&Scored<P>> = None;
    for s in memo {
        if best.is_none_or(|b| s.score > b.score) {
            best = Some(s);
        }
    }
    best
}
