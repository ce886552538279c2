//! Cancelling optimization jobs at every stage, against the mock LM server with a 50 ms latency:
//! MIPROv2 (demo bootstrapping, instruction proposal, the baseline, a minibatch and a full
//! evaluation), COPRO (proposal, the first and a later evaluation) and random search (the first
//! and a later evaluation, demo bootstrapping). Each test cancels while its stage is under way
//! and checks that the job ends promptly, that at most the concurrency limit's worth of LM
//! requests reach the server after the cancel (the ones already on their way), and that the
//! result is the best program so far — or `Error::Cancelled` when nothing was scored yet.
//!
//! Also: a job spawned inside `with_settings` runs with those settings.

use dspex::lm::{LM, ScriptedLM};
use dspex::module::Predict;
use dspex::optimize::{
    BootstrapFewShot, BootstrapFewShotWithRandomSearch, COPRO, Job, MIPROv2, Optimizer, Progress,
};
use dspex::prelude::*;
use dspex::runtime::evaluate::metric_fn;
use dspex::settings::{Settings, with_settings};
use dspex::testing::{Latency, MockLm, MockLmServer};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[signature("question -> answer")]
struct QA;

const CHAT: &str = "/v1/chat/completions";
/// The concurrency every optimizer here runs with.
const LIMIT: usize = 4;

async fn mock() -> (MockLmServer, LM) {
    let server = MockLm::builder()
        .latency(Latency::Fixed(Duration::from_millis(50)))
        .seed(3)
        .start()
        .await
        .expect("the mock LM starts");
    let lm = LM::builder("openai/mock")
        .api_base(server.api_base())
        .api_key("x")
        .cache(false)
        .build()
        .expect("an LM");
    (server, lm)
}

fn requests(server: &MockLmServer) -> u64 {
    server.stats().requests_to(CHAT)
}

/// `What is item i?` → `answer-i`, which the mock never answers: every score is 0, so the best
/// program is always the first one scored, and BootstrapFewShot tries every example.
fn items(n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| {
            Example::new()
                .with("question", format!("What is item {i}?"))
                .with("answer", format!("answer-{i}"))
                .with_inputs(["question"])
        })
        .collect()
}

fn exact() -> impl Metric + 'static {
    metric_fn("exact", |ex: &Example, pred: &Prediction| {
        ex.get_str("answer") == pred.get_str("answer")
    })
}

fn predict(lm: &LM) -> Predict<QA> {
    Predict::new().with_config(CallConfig::new().lm(lm.clone()))
}

/// Waits until the job's progress satisfies `stage` and `more` LM requests have reached the
/// server since then — the stage's LM calls are under way — and cancels. Returns the request
/// count at the cancel.
async fn cancel_during<P: Send + 'static>(
    job: &Job<P>,
    server: &MockLmServer,
    stage: impl Fn(&Progress) -> bool,
    more: u64,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stage(&job.progress()) {
        let progress = job.progress();
        assert!(
            !progress.done && Instant::now() < deadline,
            "the stage never came: {progress:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let base = requests(server);
    while requests(server) < base + more {
        assert!(Instant::now() < deadline, "no LM calls in the stage");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let progress = job.progress();
    assert!(
        stage(&progress),
        "the stage ended before the cancel: {progress:?}"
    );
    job.cancel();
    requests(server)
}

/// Waits for the cancelled job: it must end within 5 s, and at most [`LIMIT`] LM requests may
/// reach the server after the cancel (calls already sent when it came).
async fn finish<P: Send + 'static>(
    job: Job<P>,
    server: &MockLmServer,
    at_cancel: u64,
) -> dspex::Result<P> {
    let out = tokio::time::timeout(Duration::from_secs(5), job.wait())
        .await
        .expect("the job ends within 5 s of the cancel");
    // Anything still on its way arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = requests(server) - at_cancel;
    assert!(
        after <= LIMIT as u64,
        "{after} LM requests reached the server after the cancel (limit {LIMIT})"
    );
    out
}

fn assert_cancelled<P>(result: dspex::Result<P>, phase: &str) {
    match result {
        Err(dspex::Error::Cancelled { phase: p }) => assert_eq!(p, phase),
        Err(e) => panic!("expected Error::Cancelled, got the error {e}"),
        Ok(_) => panic!("expected Error::Cancelled, got a program"),
    }
}

// ---------------------------------------------------------------------------------------------
// MIPROv2: 100 examples (20 train, 80 val); 3 demo sets (one bootstrapped over the 20), 3
// instruction proposals (~12 sequential prompt-model calls), then the baseline on the 80, one
// minibatch trial of 20 and one full evaluation of 80.

fn mipro(lm: &LM) -> MIPROv2 {
    MIPROv2::new(exact())
        .auto(None)
        .num_candidates(3)
        .num_trials(1)
        .max_bootstrapped_demos(2)
        .max_labeled_demos(2)
        .minibatch(true, 20, 5)
        .task_lm(lm.clone())
        .prompt_lm(lm.clone())
        .concurrency(LIMIT)
}

async fn mipro_job(lm: &LM) -> Job<Predict<QA>> {
    Arc::new(mipro(lm))
        .spawn(Predict::<QA>::new(), items(100), None)
        .unwrap()
}

#[tokio::test]
async fn mipro_cancelled_while_bootstrapping_demo_sets() {
    let (server, lm) = mock().await;
    let job = mipro_job(&lm).await;
    let at = cancel_during(&job, &server, |p| p.phase == "bootstrapping demo sets", 2).await;
    assert_cancelled(finish(job, &server, at).await, "bootstrapping demo sets");
}

#[tokio::test]
async fn mipro_cancelled_while_proposing_instructions() {
    let (server, lm) = mock().await;
    let job = mipro_job(&lm).await;
    let at = cancel_during(&job, &server, |p| p.phase == "proposing instructions", 2).await;
    assert_cancelled(finish(job, &server, at).await, "proposing instructions");
}

#[tokio::test]
async fn mipro_cancelled_during_the_baseline_evaluation() {
    let (server, lm) = mock().await;
    let job = mipro_job(&lm).await;
    let stage = |p: &Progress| p.phase == "searching" && p.trials == 0;
    let at = cancel_during(&job, &server, stage, 2).await;
    assert_cancelled(finish(job, &server, at).await, "searching");
}

#[tokio::test]
async fn mipro_cancelled_during_a_minibatch_returns_the_best_so_far() {
    let (server, lm) = mock().await;
    let job = mipro_job(&lm).await;
    let stage = |p: &Progress| p.phase == "searching" && p.trials == 1;
    let at = cancel_during(&job, &server, stage, 2).await;
    let best = finish(job, &server, at).await.unwrap();
    // The baseline, the only program scored on the whole valset: the student as given.
    assert_eq!(best.dump_state(), Predict::<QA>::new().dump_state());
}

#[tokio::test]
async fn mipro_cancelled_during_a_full_evaluation_returns_the_best_so_far() {
    let (server, lm) = mock().await;
    let job = mipro_job(&lm).await;
    let stage = |p: &Progress| p.phase == "searching" && p.trials == 2;
    let at = cancel_during(&job, &server, stage, 2).await;
    let best = finish(job, &server, at).await.unwrap();
    // The full evaluation was cut short, so the baseline is still the best.
    assert_eq!(best.dump_state(), Predict::<QA>::new().dump_state());
}

// ---------------------------------------------------------------------------------------------
// COPRO: five predictors, so seeding takes five sequential proposal calls (only the first
// predictor answers); each candidate is scored on 20 examples.

#[derive(Module, Clone, Debug)]
struct FiveSteps {
    first: Predict<QA>,
    second: Predict<QA>,
    third: Predict<QA>,
    fourth: Predict<QA>,
    fifth: Predict<QA>,
}

impl Program for FiveSteps {
    type Input = QAInput;
    type Output = QAOutput;

    async fn forward(&self, input: QAInput) -> dspex::Result<QAOutput> {
        self.first.forward(input).await
    }
}

async fn copro_job(lm: &LM) -> Job<FiveSteps> {
    let copro = COPRO::new(exact())
        .breadth(3)
        .unwrap()
        .depth(2)
        .prompt_lm(lm.clone())
        .concurrency(LIMIT);
    let student = FiveSteps {
        first: predict(lm),
        second: predict(lm),
        third: predict(lm),
        fourth: predict(lm),
        fifth: predict(lm),
    };
    Arc::new(copro).spawn(student, items(20), None).unwrap()
}

#[tokio::test]
async fn copro_cancelled_while_proposing_instructions() {
    let (server, lm) = mock().await;
    let job = copro_job(&lm).await;
    let at = cancel_during(&job, &server, |p| p.phase == "proposing instructions", 1).await;
    assert_cancelled(finish(job, &server, at).await, "proposing instructions");
}

#[tokio::test]
async fn copro_cancelled_during_the_first_evaluation() {
    let (server, lm) = mock().await;
    let job = copro_job(&lm).await;
    let stage = |p: &Progress| p.phase == "searching" && p.trials == 0;
    let at = cancel_during(&job, &server, stage, 2).await;
    assert_cancelled(finish(job, &server, at).await, "searching");
}

#[tokio::test]
async fn copro_cancelled_during_a_later_evaluation_returns_the_best_so_far() {
    let (server, lm) = mock().await;
    let job = copro_job(&lm).await;
    let stage = |p: &Progress| p.phase == "searching" && p.trials == 1;
    let at = cancel_during(&job, &server, stage, 2).await;
    let best = finish(job, &server, at).await.unwrap();
    // The first candidate scored: the first predictor with the first proposal, which differs
    // from the instructions it started with.
    let state = best.dump_state();
    let start = Predict::<QA>::new().dump_state();
    assert_ne!(
        state["first"]["signature"]["instructions"],
        start["signature"]["instructions"]
    );
    assert_eq!(state["second"], start);
}

// ---------------------------------------------------------------------------------------------
// Random search, one candidate at a time: seed -3 (no demos) and -2 (labeled demos) are scored
// on the 20 examples, then seed -1 bootstraps over them (no run is accepted, so all 20 run).

async fn random_search_job(lm: &LM) -> Job<Predict<QA>> {
    let search = BootstrapFewShotWithRandomSearch::new(exact())
        .bootstrap(BootstrapFewShot::new().concurrency(LIMIT))
        .num_candidate_programs(2)
        .max_bootstrapped_demos(2)
        .max_labeled_demos(2)
        .num_threads(LIMIT)
        .candidates_at_once(1);
    Arc::new(search)
        .spawn(predict(lm), items(20), None)
        .unwrap()
}

const BUILDING: &str = "building and scoring candidates";

#[tokio::test]
async fn random_search_cancelled_during_the_first_evaluation() {
    let (server, lm) = mock().await;
    let job = random_search_job(&lm).await;
    let stage = |p: &Progress| p.phase == BUILDING && p.trials == 0;
    let at = cancel_during(&job, &server, stage, 2).await;
    assert_cancelled(finish(job, &server, at).await, BUILDING);
}

#[tokio::test]
async fn random_search_cancelled_during_a_later_evaluation_returns_the_best_so_far() {
    let (server, lm) = mock().await;
    let job = random_search_job(&lm).await;
    let stage = |p: &Progress| p.phase == BUILDING && p.trials == 1;
    let at = cancel_during(&job, &server, stage, 2).await;
    let best = finish(job, &server, at).await.unwrap();
    // Seed -3, the first scored: no demos.
    assert_eq!(best.dump_state(), Predict::<QA>::new().dump_state());
}

#[tokio::test]
async fn random_search_cancelled_while_bootstrapping_returns_the_best_so_far() {
    let (server, lm) = mock().await;
    let job = random_search_job(&lm).await;
    let stage = |p: &Progress| p.phase == BUILDING && p.trials == 2;
    let at = cancel_during(&job, &server, stage, 2).await;
    let best = finish(job, &server, at).await.unwrap();
    assert_eq!(best.dump_state(), Predict::<QA>::new().dump_state());
}

// ---------------------------------------------------------------------------------------------
// Settings follow a spawned job.

#[tokio::test]
async fn a_job_spawned_inside_with_settings_uses_their_lm() {
    // No process default LM in this test binary: without the scoped one, every teacher run
    // would fail with Error::NoLm (and be counted as an error, leaving no bootstrapped demos).
    let lm = ScriptedLM::from_fields([json!({"answer": "scripted"})]).repeat_last();
    let optimizer = Arc::new(
        BootstrapFewShot::new()
            .max_bootstrapped_demos(2)
            .max_labeled_demos(2)
            .concurrency(1),
    );
    let job = with_settings(Settings::new().lm(lm.clone()), async {
        optimizer.spawn(Predict::<QA>::new(), items(3), None)
    })
    .await
    .unwrap();
    let compiled = job.wait().await.unwrap();
    assert_eq!(lm.calls(), 2);
    let demos = compiled.dump_state()["demos"].clone();
    assert_eq!(demos[0]["augmented"], json!(true));
    assert_eq!(demos[0]["answer"], json!("scripted"));
    assert_eq!(demos[1]["answer"], json!("scripted"));
}
