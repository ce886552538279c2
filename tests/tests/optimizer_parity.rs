//! Optimizers against DSPy 3.4.1: `scripts/gen_optimizer_traces.py` ran DSPy's COPRO, MIPROv2,
//! BootstrapFewShotWithRandomSearch and InferRules, and `scripts/gen_simba_trace.py` DSPy's
//! SIMBA, on a ChainOfThought QA program with a scripted LM that answers each prompt with a
//! function of the prompt alone (for SIMBA, of the prompt and the call's `rollout_id`).
//! `TraceLM` is the same function in Rust, so when dspex sends DSPy's prompts it gets DSPy's
//! answers, in any order. Each test checks every prompt (by digest, as a multiset) and the
//! compiled program's saved state.

mod common;

use common::parity::{digest, examples, hex, response, trace};
use dspex::lm::{LanguageModel, LmError, LmRequest, LmResponse};
use dspex::module::ChainOfThought;
use dspex::prelude::*;
use dspex::runtime::evaluate::metric_fn;
use dspex::runtime::optimize::{
    BootstrapFewShotWithRandomSearch, COPRO, InferRules, JobContext, MIPROv2, Optimizer, SIMBA,
};
use futures_util::future::BoxFuture;
use regex::Regex;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[signature("question -> answer")]
struct QA;

/// The Python script's scripted LM.
#[derive(Clone)]
struct TraceLM {
    answers: Arc<HashMap<String, String>>,
    seen: Arc<Mutex<Vec<String>>>,
    outputs: Regex,
    question: Regex,
    /// `scripts/gen_simba_trace.py`'s variant: a request's `rollout_id` is hashed into the
    /// digest, so resamples differ.
    rollouts: bool,
    /// The SIMBA script's teacher: always answers right.
    expert: bool,
}

impl TraceLM {
    fn new(trainset: &Value) -> Self {
        let answers = trainset
            .as_array()
            .unwrap()
            .iter()
            .map(|ex| {
                (
                    ex["question"].as_str().unwrap().to_string(),
                    ex["answer"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        TraceLM {
            answers: Arc::new(answers),
            seen: Arc::default(),
            outputs: Regex::new(r"(?m)^\d+\. `(\w+)` \(").unwrap(),
            question: Regex::new(r"\[\[ ## question ## \]\]\n(.*)").unwrap(),
            rollouts: false,
            expert: false,
        }
    }

    /// The SIMBA script's LM: answers also depend on the request's `rollout_id`.
    fn with_rollouts(trainset: &Value) -> Self {
        TraceLM {
            rollouts: true,
            ..Self::new(trainset)
        }
    }

    fn answer(
        &self,
        messages: &[dspex::lm::Message],
        index: usize,
        rollout: Option<u64>,
    ) -> String {
        let system = messages[0].content.text();
        let user = messages[messages.len() - 1].content.text();
        let mut h = digest(messages);
        if index > 0 {
            h = hex(&Sha256::digest(format!("{h}:{index}").as_bytes()));
        }
        if self.rollouts
            && let Some(r) = rollout
        {
            h = hex(&Sha256::digest(format!("{h}:r{r}").as_bytes()));
        }
        let block = system
            .split("Your output fields are:")
            .nth(1)
            .and_then(|b| b.split("All interactions").next())
            .unwrap_or_default();
        let mut values = Vec::new();
        for cap in self.outputs.captures_iter(block) {
            let f = &cap[1];
            let v = match f {
                "answer" => {
                    let q = self
                        .question
                        .captures(&user)
                        .map(|c| c[1].to_string())
                        .unwrap_or_default();
                    let mut odds = 60;
                    if messages.iter().any(|m| m.role.as_str() == "assistant") {
                        odds += 25;
                    }
                    if system.contains("arithmetic question") {
                        odds += 10;
                    }
                    let right =
                        self.expert || u64::from_str_radix(&h[..8], 16).unwrap() % 100 < odds;
                    if right {
                        self.answers.get(&q).cloned().unwrap_or_else(|| "0".into())
                    } else {
                        "wrong".into()
                    }
                }
                "proposed_instruction" => format!(
                    "Proposed Instruction: Answer the arithmetic question with a number ({}).",
                    &h[..6]
                ),
                "reasoning" => format!("Adding the numbers ({}).", &h[..6]),
                "module_advice" => format!(
                    "{{\"predict\": \"If the module receives an arithmetic question, it should add the two numbers and answer with the sum alone ({}).\"}}",
                    &h[..6]
                ),
                other => format!("{} {}", other.replace('_', " "), &h[..8]),
            };
            values.push(format!("[[ ## {f} ## ]]\n{v}"));
        }
        values.join("\n\n") + "\n\n[[ ## completed ## ]]"
    }

    fn seen_sorted(&self) -> Vec<String> {
        let mut seen = self.seen.lock().unwrap().clone();
        seen.sort();
        seen
    }
}

impl LanguageModel for TraceLM {
    fn model(&self) -> &str {
        "dummy"
    }

    fn call(&self, request: LmRequest) -> BoxFuture<'_, Result<LmResponse, LmError>> {
        self.seen.lock().unwrap().push(digest(&request.messages));
        let n = request.n.unwrap_or(1).max(1) as usize;
        let texts = (0..n).map(|i| self.answer(&request.messages, i, request.rollout_id));
        Box::pin(std::future::ready(Ok(response(texts))))
    }
}

fn trainset(trace: &Value) -> Vec<Example> {
    examples(&trace["trainset"])
}

/// Which of DSPy's prompts dspex did not send, and which it sent that DSPy did not.
fn prompt_difference(dspy: &Value, ours: &[String]) -> (usize, usize) {
    let mut want: HashMap<&str, i64> = HashMap::new();
    for d in dspy.as_array().unwrap() {
        *want.entry(d.as_str().unwrap()).or_default() += 1;
    }
    let mut extra = 0;
    for d in ours {
        match want.get_mut(d.as_str()) {
            Some(n) if *n > 0 => *n -= 1,
            _ => extra += 1,
        }
    }
    let missing = want.values().filter(|n| **n > 0).map(|n| *n as usize).sum();
    (missing, extra)
}

/// Every prompt DSPy sent, dspex sent (as a multiset of digests), and no other.
fn assert_same_prompts(fx: &Value, lm: &TraceLM) {
    let (missing, extra) = prompt_difference(&fx["prompt_digests"], &lm.seen_sorted());
    assert_eq!(
        (missing, extra),
        (0, 0),
        "prompts DSPy sent that dspex did not, and the reverse"
    );
}

/// The compiled program saves DSPy's state (metadata aside).
fn assert_same_state(fx: &Value, compiled: &impl Module) {
    let mut state = compiled.dump_state();
    state.as_object_mut().unwrap().remove("metadata");
    assert_eq!(state, fx["compiled_state"]);
}

/// The trials of a job's log (its `start` and `end` lines left out).
fn trial_log(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["event"] == "trial")
        .collect()
}

fn exact() -> impl dspex::runtime::evaluate::Metric {
    metric_fn("metric", |ex: &Example, pred: &Prediction| {
        ex.get_str("answer") == pred.get_str("answer")
    })
}

#[tokio::test]
async fn copro_compiles_what_dspy_compiles() {
    let fx = trace("copro_trace.json");
    let lm = TraceLM::new(&fx["trainset"]);
    let student = ChainOfThought::<QA>::new();
    let copro = COPRO::new(exact())
        .breadth(3)
        .unwrap()
        .depth(2)
        .concurrency(4);
    let compiled = dspex::settings::with_settings(
        dspex::settings::Settings::new().lm(lm.clone()),
        copro.compile(student, &trainset(&fx)),
    )
    .await
    .unwrap();
    assert_same_prompts(&fx, &lm);
    assert_same_state(&fx, &compiled);
}

#[tokio::test]
async fn mipro_light_tries_and_compiles_what_dspy_does() {
    let fx = trace("mipro_light_trace.json");
    let lm = TraceLM::new(&fx["trainset"]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trials.jsonl");
    // The job runs on its own task, outside any `with_settings`: its LMs are set on it.
    let mipro = MIPROv2::new(exact())
        .program_code(fx["program_code"].as_str().unwrap())
        .concurrency(8)
        .task_lm(lm.clone())
        .prompt_lm(lm.clone());
    let compiled = Arc::new(mipro)
        .spawn(ChainOfThought::<QA>::new(), trainset(&fx), Some(&log))
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_same_prompts(&fx, &lm);
    // Every trial: the same choices and scores, in DSPy's numbering.
    let ours = trial_log(&log);
    let want = fx["trials"].as_array().unwrap();
    assert_eq!(ours.len(), want.len(), "{ours:#?}");
    for (got, want) in ours.iter().zip(want) {
        assert_eq!(
            got["trial"].as_u64().unwrap() + 1,
            want["trial"].as_u64().unwrap()
        );
        let score = want
            .get("mb_score")
            .or_else(|| want.get("full_eval_score"))
            .unwrap();
        assert_eq!(&got["score"], score, "trial {}", want["trial"]);
        for key in ["0_predictor_instruction", "0_predictor_demos"] {
            if let Some(v) = want.get(key) {
                assert_eq!(&got["candidate"][key], v, "trial {} {key}", want["trial"]);
            }
        }
    }
    assert_same_state(&fx, &compiled);
}

#[tokio::test]
async fn random_search_scores_and_picks_what_dspy_does() {
    let fx = trace("random_search_trace.json");
    let lm = TraceLM::new(&fx["trainset"]);
    let search = BootstrapFewShotWithRandomSearch::new(exact())
        .max_bootstrapped_demos(3)
        .max_labeled_demos(4)
        .num_candidate_programs(3)
        .candidates_at_once(3)
        .num_threads(8);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trials.jsonl");
    let job =
        dspex::settings::with_settings(dspex::settings::Settings::new().lm(lm.clone()), async {
            // A job's task does not see `with_settings`; give the student its LM directly.
            Arc::new(search).spawn(
                ChainOfThought::<QA>::new()
                    .with_config(dspex::module::CallConfig::new().lm(lm.clone())),
                trainset(&fx),
                Some(&log),
            )
        })
        .await
        .unwrap();
    let compiled = job.wait().await.unwrap();
    assert_same_prompts(&fx, &lm);
    let scores: Vec<Value> = trial_log(&log)
        .iter()
        .map(|t| serde_json::json!({"seed": t["candidate"]["seed"], "score": t["score"]}))
        .collect();
    assert_eq!(Value::Array(scores), fx["candidates"]);
    // The student's own LM config is not part of its saved state.
    assert_same_state(&fx, &compiled);
}

#[tokio::test]
async fn infer_rules_induces_and_compiles_what_dspy_does() {
    let fx = trace("infer_rules_trace.json");
    let lm = TraceLM::new(&fx["trainset"]);
    let infer = InferRules::new(exact())
        .num_candidates(3)
        .num_rules(4)
        .num_threads(4)
        .bootstrap(
            BootstrapFewShot::new()
                .max_bootstrapped_demos(2)
                .max_labeled_demos(3),
        );
    let compiled = dspex::settings::with_settings(
        dspex::settings::Settings::new().lm(lm.clone()),
        infer.compile(ChainOfThought::<QA>::new(), &trainset(&fx)),
    )
    .await
    .unwrap();
    assert_same_prompts(&fx, &lm);
    assert_same_state(&fx, &compiled);
}

/// SIMBA with the trace's knobs and seed.
fn simba_for(fx: &Value, simba: SIMBA) -> SIMBA {
    let opt = &fx["optimizer"];
    let knob = |k: &str| opt[k].as_u64().map(|v| v as usize);
    let mut simba = simba
        .bsize(knob("bsize").unwrap())
        .num_candidates(knob("num_candidates").unwrap())
        .max_steps(knob("max_steps").unwrap())
        .max_demos(knob("max_demos").unwrap())
        .seed(opt["seed"].as_u64().unwrap())
        .num_threads(4)
        .program_code(fx["program_code"].as_str().unwrap());
    if let Some(n) = knob("demo_input_field_maxlen") {
        simba = simba.demo_input_field_maxlen(n);
    }
    simba
}

/// Runs `simba` as the trace's DSPy run did and checks every prompt, each step's candidate
/// scores and strategies, DSPy's `trial_logs` and `candidate_programs` scores, the job log's
/// trials and the compiled state.
async fn check_simba(fx: &Value, simba: SIMBA) {
    check_simba_with(fx, simba, TraceLM::with_rollouts(&fx["trainset"])).await;
}

/// [`check_simba`] with `lm` as the LM in effect.
async fn check_simba_with(fx: &Value, simba: SIMBA, lm: TraceLM) {
    let (compiled, report) = dspex::settings::with_settings(
        dspex::settings::Settings::new().lm(lm.clone()),
        simba.compile_with_report(
            ChainOfThought::<QA>::new(),
            &trainset(fx),
            &JobContext::detached(),
        ),
    )
    .await
    .unwrap();
    // Each step's candidates, scored on the mini-batch, and the strategies drawn.
    let steps: Vec<Value> = report
        .trial_logs
        .iter()
        .map(|s| serde_json::json!(s.candidate_scores))
        .collect();
    assert_eq!(Value::Array(steps), fx["step_candidate_scores"]);
    let strategies: Vec<&str> = report
        .trial_logs
        .iter()
        .flat_map(|s| s.strategies.iter().copied())
        .collect();
    let want: Vec<String> = fx["step_strategies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().trim_end_matches('_').to_string())
        .collect();
    assert_eq!(strategies, want);
    // DSPy's trial_logs (train_score by its own indexing) and candidate_programs scores.
    assert_eq!(
        report.trial_logs.len(),
        fx["trial_logs"].as_object().unwrap().len()
    );
    for (i, log) in report.trial_logs.iter().enumerate() {
        let want = &fx["trial_logs"][i.to_string()]["train_score"];
        assert_eq!(
            log.train_score
                .map_or(Value::Null, |s| serde_json::json!(s)),
            *want,
            "trial_logs[{i}]"
        );
    }
    let scores: Vec<f64> = report.candidate_programs.iter().map(|c| c.score).collect();
    assert_eq!(serde_json::json!(scores), fx["candidate_scores"]);
    assert_same_prompts(fx, &lm);
    assert_same_state(fx, &compiled);
}

#[tokio::test]
async fn simba_samples_builds_and_compiles_what_dspy_does() {
    let fx = trace("simba_trace.json");
    let metric = metric_fn("metric", |ex: &Example, pred: &Prediction| {
        if ex.get_str("answer") == pred.get_str("answer") {
            1.0
        } else {
            0.0
        }
    });
    check_simba(&fx, simba_for(&fx, SIMBA::new(metric))).await;
}

#[tokio::test]
async fn simba_with_reward_info_truncation_and_blanking_matches_dspy() {
    // The graded metric returns a prediction whose `feedback` is the reward info; demo inputs
    // are cut at 12 characters; one DSPy prompt shows a blanked ("N/A") trajectory.
    let fx = trace("simba_feedback_trace.json");
    assert_eq!(fx["blanked_trajectory_prompts"], 1);
    let metric = |ex: &Example, pred: &Prediction| -> dspex::Result<Prediction> {
        let answer = pred.get_str("answer").unwrap_or_default();
        let right = ex.get_str("answer") == Some(answer);
        let reasoning = pred.get_str("reasoning").unwrap_or_default();
        let first = Sha256::digest(reasoning.as_bytes())[0];
        let score = if right {
            1.0
        } else if first % 4 != 0 {
            0.5
        } else {
            0.0
        };
        Ok(Prediction::from_pairs([
            ("score", serde_json::json!(score)),
            (
                "feedback",
                serde_json::json!(format!(
                    "expected {}, got {answer}",
                    ex.get_str("answer").unwrap_or_default()
                )),
            ),
        ]))
    };
    check_simba(&fx, simba_for(&fx, SIMBA::with_feedback_metric(metric))).await;
}

#[tokio::test]
async fn simba_with_a_teacher_matches_dspy() {
    // `teacher_settings={"lm": expert}`: the first resampling model is a teacher that always
    // answers right; its prompts count with the others (one multiset, as DSPy's script keeps).
    let fx = trace("simba_teacher_trace.json");
    let lm = TraceLM::with_rollouts(&fx["trainset"]);
    let expert = TraceLM {
        expert: true,
        ..lm.clone()
    };
    let metric = metric_fn("metric", |ex: &Example, pred: &Prediction| {
        if ex.get_str("answer") == pred.get_str("answer") {
            1.0
        } else {
            0.0
        }
    });
    let simba = simba_for(&fx, SIMBA::new(metric))
        .teacher_settings(dspex::settings::Settings::new().lm(expert));
    check_simba_with(&fx, simba, lm).await;
}
