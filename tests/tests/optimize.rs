//! LabeledFewShot and BootstrapFewShot through the facade: DSPy's worked example (two predictors),
//! the `trace_bootstrap_cot` fixture recorded from DSPy 3.4.1 (messages sent while compiling,
//! the compiled state, and the compiled program's prompt), concurrency that picks the sequential
//! run's demos, errors and `max_errors`, rounds, teachers, and cancellation through a job.

use dspex::lm::{
    Choice, FinishReason, LanguageModel, LmError, LmRequest, LmResponse, Role, ScriptedLM, Usage,
};
use dspex::module::{ChainOfThought, Predict};
use dspex::optimize::{BootstrapError, BootstrapFewShot, LabeledFewShot, Optimizer, Teacher};
use dspex::prelude::*;
use dspex::runtime::evaluate::metric_fn;
use dspex::settings::{Settings, with_settings};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

// ---------------------------------------------------------------------------------------------
// A test LM that answers from the request's content (so concurrent runs get the right answer
// whatever order they arrive in), can hold calls at a gate, and records every request.

type Answer = dyn Fn(&LmRequest) -> Result<String, LmError> + Send + Sync;

#[derive(Clone)]
struct ContentLm {
    answer: Arc<Answer>,
    gate: Option<Arc<Semaphore>>,
    requests: Arc<Mutex<Vec<LmRequest>>>,
}

impl ContentLm {
    fn new(answer: impl Fn(&LmRequest) -> Result<String, LmError> + Send + Sync + 'static) -> Self {
        ContentLm {
            answer: Arc::new(answer),
            gate: None,
            requests: Arc::default(),
        }
    }

    fn gated(mut self, gate: Arc<Semaphore>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Every request, in the order the calls started.
    fn requests(&self) -> Vec<LmRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl LanguageModel for ContentLm {
    fn model(&self) -> &str {
        "content"
    }

    fn call(&self, request: LmRequest) -> BoxFuture<'_, Result<LmResponse, LmError>> {
        Box::pin(async move {
            self.requests.lock().unwrap().push(request.clone());
            if let Some(gate) = &self.gate {
                gate.acquire().await.unwrap().forget();
            }
            // Finish in a scrambled order, so concurrent runs complete out of training order.
            for _ in 0..last_user(&request).len() % 7 {
                tokio::task::yield_now().await;
            }
            Ok(LmResponse {
                choices: vec![Choice {
                    text: (self.answer)(&request)?,
                    finish_reason: Some(FinishReason::Stop),
                    tool_calls: Vec::new(),
                    reasoning_content: None,
                }],
                usage: Usage::default(),
                model: "content".into(),
                latency: Duration::ZERO,
                cache_hit: false,
            })
        })
    }
}

fn last_user(request: &LmRequest) -> &str {
    request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .and_then(|m| m.content.as_text())
        .unwrap_or("")
}

/// The `i` of the `QQ{i}?` question the request asks (not a demo's).
fn question_index(request: &LmRequest) -> usize {
    let text = last_user(request);
    let start = text.find("QQ").expect("a QQ question") + 2;
    text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

fn chat(fields: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (name, value) in fields {
        out.push_str(&format!("[[ ## {name} ## ]]\n{value}\n\n"));
    }
    out.push_str("[[ ## completed ## ]]");
    out
}

fn lm_error(message: &str) -> LmError {
    LmError::Config {
        model: "content".into(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// DSPy's worked example (notes 5.5): `rewrite = Predict("question -> query")`,
// `answer = Predict("question, query -> answer")`.

#[signature("question -> query")]
struct Rewrite;

#[signature("question, query -> answer")]
struct AnswerQuery;

#[derive(Module, Clone, Debug)]
struct TwoStep {
    rewrite: Predict<Rewrite>,
    answer: Predict<AnswerQuery>,
}

impl TwoStep {
    fn new() -> Self {
        TwoStep {
            rewrite: Predict::new(),
            answer: Predict::new(),
        }
    }
}

impl Program for TwoStep {
    type Input = RewriteInput;
    type Output = AnswerQueryOutput;

    async fn forward(&self, input: RewriteInput) -> dspex::Result<AnswerQueryOutput> {
        let query = self.rewrite.forward(input.clone()).await?;
        self.answer
            .forward(AnswerQueryInput {
                question: input.question,
                query: query.query,
            })
            .await
    }
}

fn qq_trainset(n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| {
            Example::new()
                .with("question", format!("QQ{i}?"))
                .with("answer", format!("A{i}"))
                .with_inputs(["question"])
        })
        .collect()
}

/// Rewrites to `search i`; answers `Ai` except for the examples in `wrong`, and fails the
/// answer call of the examples in `failing`.
fn qq_lm(wrong: &'static [usize], failing: &'static [usize]) -> ContentLm {
    ContentLm::new(move |request| {
        let i = question_index(request);
        if last_user(request).contains("field `[[ ## answer ## ]]`") {
            if failing.contains(&i) {
                return Err(lm_error(&format!("no answer for QQ{i}")));
            }
            let answer = if wrong.contains(&i) {
                "wrong".to_string()
            } else {
                format!("A{i}")
            };
            Ok(chat(&[("answer", answer)]))
        } else {
            Ok(chat(&[("query", format!("search {i}"))]))
        }
    })
}

fn exact_answer() -> impl dspex::runtime::evaluate::Metric + 'static {
    metric_fn("exact_answer", |ex: &Example, pred: &Prediction| {
        ex.get_str("answer") == pred.get_str("answer")
    })
}

fn demos(program: &impl Module, name: &str) -> Value {
    program.dump_state()[name]["demos"].clone()
}

#[tokio::test]
async fn the_worked_example_compiles_dspys_demos_at_any_concurrency() {
    let expected_rewrite = json!([
        {"augmented": true, "question": "QQ0?", "query": "search 0"},
        {"augmented": true, "question": "QQ2?", "query": "search 2"},
        {"question": "QQ1?", "answer": "A1"},
        {"question": "QQ5?", "answer": "A5"}
    ]);
    let expected_answer = json!([
        {"augmented": true, "question": "QQ0?", "query": "search 0", "answer": "A0"},
        {"augmented": true, "question": "QQ2?", "query": "search 2", "answer": "A2"},
        {"question": "QQ6?", "answer": "A6"},
        {"question": "QQ3?", "answer": "A3"}
    ]);
    let mut states = Vec::new();
    for (concurrency, speculative) in [(1, false), (8, false), (16, false), (8, true), (16, true)] {
        let lm = qq_lm(&[1, 4], &[]);
        let optimizer = BootstrapFewShot::new()
            .metric(exact_answer())
            .max_bootstrapped_demos(2)
            .max_labeled_demos(4)
            .concurrency(concurrency)
            .speculative(speculative);
        let compiled = with_settings(
            Settings::new().lm(lm.clone()),
            optimizer.compile(TwoStep::new(), &qq_trainset(8)),
        )
        .await
        .unwrap();
        assert_eq!(
            demos(&compiled, "rewrite"),
            expected_rewrite,
            "{concurrency}"
        );
        assert_eq!(demos(&compiled, "answer"), expected_answer, "{concurrency}");
        let mut asked: Vec<usize> = lm.requests().iter().map(question_index).collect();
        if concurrency == 1 {
            // Exactly DSPy's calls: QQ0, QQ1, QQ2 (two calls each), then the loop stops.
            assert_eq!(asked, [0, 0, 1, 1, 2, 2]);
        } else if !speculative {
            // The same calls, QQ0 and QQ1 at once (two demos needed), then QQ2.
            asked.sort_unstable();
            assert_eq!(asked, [0, 0, 1, 1, 2, 2], "{concurrency}");
        } else {
            // Speculative runs of later examples happened, and were not counted.
            assert!(asked.iter().any(|&i| i > 2), "{asked:?}");
        }
        states.push(compiled.dump_state());
    }
    assert!(states.iter().all(|s| *s == states[0]));
}

#[tokio::test]
async fn teacher_demos_equal_to_the_example_are_hidden_during_its_run() {
    // The teacher's `answer` predictor has labeled demos QQ4, QQ7, QQ3, QQ5 (Random(0)); the
    // run on QQ3 must not show QQ3 as a demo, the run on QQ2 shows all four.
    let lm = qq_lm(&[], &[]);
    let optimizer = BootstrapFewShot::new()
        .max_bootstrapped_demos(8)
        .max_labeled_demos(4)
        .concurrency(1);
    with_settings(
        Settings::new().lm(lm.clone()),
        optimizer.compile(TwoStep::new(), &qq_trainset(8)),
    )
    .await
    .unwrap();
    let answer_prompt = |i: usize| {
        let request = lm
            .requests()
            .into_iter()
            .find(|r| question_index(r) == i && last_user(r).contains("field `[[ ## answer ## ]]`"))
            .unwrap();
        serde_json::to_string(&request.messages).unwrap()
    };
    for demo in ["QQ4?", "QQ7?", "QQ3?", "QQ5?"] {
        assert!(answer_prompt(2).contains(demo), "{demo}");
    }
    assert_eq!(answer_prompt(3).matches("QQ3?").count(), 1);
    assert!(answer_prompt(3).contains("QQ4?"));
}

// ---------------------------------------------------------------------------------------------
// The fixture recorded from DSPy 3.4.1.

#[signature("question -> answer")]
struct QA;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/dspy")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn fixture_trainset(fx: &Value) -> Vec<Example> {
    fx["trainset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ex| Example::from_map(ex.as_object().unwrap().clone()).with_inputs(["question"]))
        .collect()
}

fn fixture_optimizer(fx: &Value) -> BootstrapFewShot {
    let opt = &fx["optimizer"];
    assert_eq!(opt["name"], "BootstrapFewShot");
    assert_eq!(opt["metric"], "answer_exact_match");
    BootstrapFewShot::new()
        .metric(exact_answer())
        .max_bootstrapped_demos(opt["max_bootstrapped_demos"].as_u64().unwrap() as usize)
        .max_labeled_demos(opt["max_labeled_demos"].as_u64().unwrap() as usize)
        .max_rounds(opt["max_rounds"].as_u64().unwrap() as usize)
}

#[tokio::test]
async fn trace_bootstrap_cot_fixture_sends_dspys_messages_and_compiles_its_state() {
    let fx = fixture("trace_bootstrap_cot.json");
    assert_eq!(fx["program"]["module"], "ChainOfThought");
    let calls = fx["calls"].as_array().unwrap();
    let compile_calls = fx["compile_calls"].as_u64().unwrap() as usize;
    let lm = ScriptedLM::new(calls.iter().map(|c| c["completion"].as_str().unwrap()));
    let settings = Settings::new().lm(lm.clone());

    let optimizer = fixture_optimizer(&fx).concurrency(1);
    let compiled = with_settings(
        settings.clone(),
        optimizer.compile(ChainOfThought::<QA>::new(), &fixture_trainset(&fx)),
    )
    .await
    .unwrap();
    assert_eq!(lm.calls(), compile_calls);
    for (i, call) in calls.iter().take(compile_calls).enumerate() {
        assert_eq!(
            serde_json::to_value(&lm.messages()[i]).unwrap(),
            call["messages"],
            "compile call {i}"
        );
    }
    assert_eq!(compiled.dump_state(), fx["compiled_state"]);

    let input: QAInput = serde_json::from_value(fx["inputs"].clone()).unwrap();
    let output = with_settings(settings, compiled.forward(input))
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&lm.messages()[compile_calls]).unwrap(),
        calls[compile_calls]["messages"]
    );
    assert_eq!(serde_json::to_value(&output).unwrap(), fx["output"]);
}

#[tokio::test]
async fn trace_bootstrap_cot_fixture_compiles_the_same_state_concurrently() {
    // Answer each question with the completion DSPy got for it; questions DSPy never asked fail.
    // Those are speculative runs after the cutoff: with max_errors(1), counting one would fail
    // the compile.
    let fx = fixture("trace_bootstrap_cot.json");
    let calls: Vec<(String, String, Value)> = fx["calls"]
        .as_array()
        .unwrap()
        .iter()
        .take(fx["compile_calls"].as_u64().unwrap() as usize)
        .map(|c| {
            let messages = c["messages"].as_array().unwrap();
            let last = messages.last().unwrap()["content"].as_str().unwrap();
            (
                last.to_string(),
                c["completion"].as_str().unwrap().to_string(),
                c["messages"].clone(),
            )
        })
        .collect();
    let known = calls.clone();
    let lm = ContentLm::new(move |request| {
        let last = last_user(request);
        known
            .iter()
            .find(|(q, _, _)| q == last)
            .map(|(_, completion, _)| completion.clone())
            .ok_or_else(|| lm_error("DSPy never asked this"))
    });
    for speculative in [false, true] {
        let lm = lm.clone();
        lm.requests.lock().unwrap().clear();
        let optimizer = fixture_optimizer(&fx)
            .concurrency(16)
            .max_errors(1)
            .speculative(speculative);
        let compiled = with_settings(
            Settings::new().lm(lm.clone()),
            optimizer.compile(ChainOfThought::<QA>::new(), &fixture_trainset(&fx)),
        )
        .await
        .unwrap();
        assert_eq!(compiled.dump_state(), fx["compiled_state"]);
        // Every prompt DSPy sent was sent, byte for byte.
        let sent: Vec<Value> = lm
            .requests()
            .iter()
            .map(|r| serde_json::to_value(&r.messages).unwrap())
            .collect();
        for (_, _, messages) in &calls {
            assert!(sent.contains(messages));
        }
        if speculative {
            // Speculative runs of later examples were made (and failed, uncounted).
            assert!(sent.len() > calls.len());
        } else {
            // By default nothing else.
            assert_eq!(sent.len(), calls.len());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors, rounds, teachers, jobs.

#[tokio::test]
async fn errors_count_in_training_order_and_max_errors_ends_the_compile() {
    for (concurrency, speculative) in [(1, false), (8, false), (8, true)] {
        // QQ1, QQ3 and QQ5 fail. Two demos: QQ0, QQ1 (error 1), QQ2 → done; the failures of
        // QQ3 and QQ5 seen by speculative runs do not count.
        let optimizer = BootstrapFewShot::new()
            .metric(exact_answer())
            .max_bootstrapped_demos(2)
            .max_labeled_demos(2)
            .max_errors(2)
            .concurrency(concurrency)
            .speculative(speculative);
        let compiled = with_settings(
            Settings::new().lm(qq_lm(&[], &[1, 3, 5])),
            optimizer.compile(TwoStep::new(), &qq_trainset(8)),
        )
        .await
        .unwrap();
        let answer = demos(&compiled, "answer");
        assert_eq!(answer[0]["question"], "QQ0?");
        assert_eq!(answer[1]["question"], "QQ2?");

        // Three demos: the error of QQ3 is the second one, and re-raised.
        let err = with_settings(
            Settings::new().lm(qq_lm(&[], &[1, 3, 5])),
            optimizer
                .clone()
                .max_bootstrapped_demos(3)
                .compile(TwoStep::new(), &qq_trainset(8)),
        )
        .await
        .unwrap_err();
        match BootstrapError::find(&err) {
            Some(BootstrapError::TooManyErrors {
                example,
                round,
                errors,
                max_errors,
                source,
            }) => {
                assert_eq!((*example, *round, *errors, *max_errors), (3, 0, 2, 2));
                assert!(source.to_string().contains("no answer for QQ3"), "{source}");
            }
            other => panic!("{concurrency}: {other:?} in {err}"),
        }
        assert!(err.to_string().contains("max_errors"), "{err}");
    }
}

#[tokio::test]
async fn later_rounds_run_at_temperature_one_with_their_rollout_id() {
    // Every answer is wrong at the default temperature; rounds > 0 answer right.
    let lm = ContentLm::new(|request| {
        let i = question_index(request);
        if last_user(request).contains("field `[[ ## answer ## ]]`") {
            let right = request.temperature == Some(1.0);
            Ok(chat(&[(
                "answer",
                if right { format!("A{i}") } else { "no".into() },
            )]))
        } else {
            Ok(chat(&[(
                "query",
                format!("search {i} r{:?}", request.rollout_id),
            )]))
        }
    });
    let optimizer = BootstrapFewShot::new()
        .metric(exact_answer())
        .max_bootstrapped_demos(1)
        .max_labeled_demos(1)
        .max_rounds(3)
        .concurrency(1);
    let compiled = with_settings(
        Settings::new().lm(lm.clone()),
        optimizer.compile(TwoStep::new(), &qq_trainset(4)),
    )
    .await
    .unwrap();
    let sampling: Vec<_> = lm
        .requests()
        .iter()
        .map(|r| (r.temperature, r.rollout_id))
        .collect();
    assert_eq!(
        sampling,
        [
            (None, None),
            (None, None),
            (Some(1.0), Some(1)),
            (Some(1.0), Some(1))
        ]
    );
    assert_eq!(
        demos(&compiled, "rewrite")[0],
        json!({"augmented": true, "question": "QQ0?", "query": "search 0 rSome(1)"})
    );
}

#[tokio::test]
async fn thresholds_follow_dspys_truthiness() {
    let half = || metric_fn("half", |_: &Example, _: &Prediction| 0.5);
    let compile = |optimizer: BootstrapFewShot| async move {
        let compiled = with_settings(
            Settings::new().lm(qq_lm(&[], &[])),
            optimizer
                .max_bootstrapped_demos(1)
                .max_labeled_demos(1)
                .concurrency(1)
                .compile(TwoStep::new(), &qq_trainset(3)),
        )
        .await
        .unwrap();
        demos(&compiled, "answer")[0].get("augmented").is_some()
    };
    assert!(compile(BootstrapFewShot::new().metric(half())).await);
    // A threshold of 0 is ignored: 0.5 is truthy.
    assert!(compile(BootstrapFewShot::new().metric(half()).metric_threshold(0.0)).await);
    assert!(!compile(BootstrapFewShot::new().metric(half()).metric_threshold(0.6)).await);
    assert!(compile(BootstrapFewShot::new().metric(half()).metric_threshold(0.5)).await);
    let zero = metric_fn("zero", |_: &Example, _: &Prediction| 0.0);
    assert!(!compile(BootstrapFewShot::new().metric(zero)).await);
}

#[tokio::test]
async fn teachers_compiled_or_not_and_structure_checks() {
    // A compiled teacher keeps its demos: its prompts show them.
    let mut teacher = TwoStep::new();
    teacher.answer.params_mut().demos = vec![
        Example::new()
            .with("question", "QQ99?")
            .with("query", "search 99")
            .with("answer", "A99"),
    ];
    let lm = qq_lm(&[], &[]);
    let optimizer = BootstrapFewShot::new()
        .max_bootstrapped_demos(1)
        .max_labeled_demos(2)
        .concurrency(1);
    let compiled = with_settings(
        Settings::new().lm(lm.clone()),
        optimizer.compile_with_teacher(
            TwoStep::new(),
            Teacher::Compiled(teacher.clone()),
            &qq_trainset(3),
        ),
    )
    .await
    .unwrap();
    assert!(
        serde_json::to_string(&lm.requests()[1].messages)
            .unwrap()
            .contains("QQ99?")
    );
    assert_eq!(demos(&compiled, "answer").as_array().unwrap().len(), 2);

    // An uncompiled teacher is relabeled: its demo is gone.
    let lm = qq_lm(&[], &[]);
    with_settings(
        Settings::new().lm(lm.clone()),
        optimizer.compile_with_teacher(TwoStep::new(), Teacher::Program(teacher), &qq_trainset(3)),
    )
    .await
    .unwrap();
    assert!(
        !serde_json::to_string(&lm.requests()[1].messages)
            .unwrap()
            .contains("QQ99?")
    );

    // Different instructions: a typed error naming the predictor.
    let mut other = TwoStep::new();
    other
        .answer
        .params_mut()
        .set_instructions("Answer in French.");
    let err = optimizer
        .compile_with_teacher(TwoStep::new(), Teacher::Compiled(other), &qq_trainset(3))
        .await
        .unwrap_err();
    assert!(
        matches!(
            BootstrapError::find(&err),
            Some(BootstrapError::Signature { predictor, .. }) if predictor == "answer"
        ),
        "{err}"
    );
    // A teacher with another structure.
    let err = optimizer
        .compile_with_teacher(
            TwoStep::new(),
            Teacher::Compiled(ChainOfThought::<QA>::new()),
            &qq_trainset(3),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            BootstrapError::find(&err),
            Some(BootstrapError::PredictorCount {
                student: 2,
                teacher: 1
            })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn labeled_few_shot_through_the_facade() {
    let compiled = LabeledFewShot::new(4)
        .compile(TwoStep::new(), &qq_trainset(8))
        .await
        .unwrap();
    let questions = |name: &str| -> Vec<String> {
        demos(&compiled, name)
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["question"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(questions("rewrite"), ["QQ6?", "QQ7?", "QQ3?", "QQ0?"]);
    assert_eq!(questions("answer"), ["QQ4?", "QQ7?", "QQ3?", "QQ5?"]);
}

#[tokio::test]
async fn a_cancelled_job_returns_the_program_bootstrapped_so_far() {
    // Two LM calls per example; the gate lets through the calls of examples 0 and 1 only.
    let gate = Arc::new(Semaphore::new(4));
    let lm = qq_lm(&[], &[]).gated(gate.clone());
    let student = TwoStep {
        rewrite: Predict::new().with_config(CallConfig::new().lm(lm.clone())),
        answer: Predict::new().with_config(CallConfig::new().lm(lm.clone())),
    };
    let optimizer = BootstrapFewShot::new()
        .max_bootstrapped_demos(4)
        .max_labeled_demos(4)
        .concurrency(1);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("trials.jsonl");
    let mut job = Arc::new(optimizer)
        .spawn(student, qq_trainset(8), Some(&log))
        .unwrap();
    while let Some(progress) = job.next_progress().await {
        if progress.trials == 2 {
            job.cancel();
            // Let the run of example 2 finish: it is not committed.
            gate.add_permits(2);
        }
    }
    let compiled = job.wait().await.unwrap();
    let answer = demos(&compiled, "answer");
    let bootstrapped: Vec<&str> = answer
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d.get("augmented").is_some())
        .map(|d| d["question"].as_str().unwrap())
        .collect();
    assert_eq!(bootstrapped, ["QQ0?", "QQ1?"]);
    assert_eq!(answer.as_array().unwrap().len(), 4);
    let events: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // The student, two trials, and the program the cancelled job returned.
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["start", "trial", "trial", "end"]);
    assert_eq!(events[0]["optimizer"], "BootstrapFewShot");
    assert_eq!(events[3]["state"], compiled.dump_state());
    let lines = &events[1..3];
    assert_eq!(lines[1]["candidate"]["example"], 1);
    assert_eq!(lines[1]["candidate"]["bootstrapped"], true);
    assert_eq!(lines[1]["phase"], "bootstrapping");
}

/// The calls a BootstrapFewShot compile makes, counted by the mock LM server: by default at
/// concurrency 16 exactly those of DSPy's sequential loop; speculative ones more, and reported.
#[tokio::test]
async fn bootstrap_makes_the_sequential_calls_unless_speculative_as_the_server_counts() {
    use dspex::lm::LM;
    use dspex::optimize::{BootstrapReport, JobContext};
    use dspex::testing::{Latency, MockLm};

    let server = MockLm::builder()
        .latency(Latency::Fixed(Duration::from_millis(5)))
        .start()
        .await
        .unwrap();
    let lm = LM::builder("openai/mock")
        .api_base(server.api_base())
        .api_key("x")
        .cache(false)
        .build()
        .unwrap();
    let trainset: Vec<Example> = (0..20)
        .map(|i| {
            Example::new()
                .with("question", format!("What is item {i}?"))
                .with("answer", format!("answer-{i}"))
                .with_inputs(["question"])
        })
        .collect();
    // Rejects items 1, 2 and 5 whatever the answer: DSPy's loop runs items 0 to 6.
    let metric = metric_fn("not_1_2_5", |ex: &Example, _: &Prediction| {
        !["What is item 1?", "What is item 2?", "What is item 5?"]
            .contains(&ex.get_str("question").unwrap_or(""))
    });
    let compile = |optimizer: BootstrapFewShot| {
        let lm = lm.clone();
        let trainset = trainset.clone();
        async move {
            let student = Predict::<QA>::new();
            let out = with_settings(
                Settings::new().lm(lm),
                optimizer.compile_with_report(
                    student.clone(),
                    Teacher::Program(student),
                    &trainset,
                    &JobContext::detached(),
                ),
            )
            .await
            .unwrap();
            (out.0.dump_state(), out.1)
        }
    };
    let chat =
        |server: &dspex::testing::MockLmServer| server.stats().requests_to("/v1/chat/completions");
    let base = BootstrapFewShot::new()
        .max_bootstrapped_demos(4)
        .max_labeled_demos(4);
    assert_eq!(base.demo_config().concurrency, 16);

    for (metric, sequential) in [(None, 4), (Some(metric), 7)] {
        let optimizer = match metric {
            Some(m) => base.clone().metric(m),
            None => base.clone(),
        };
        server.reset_stats();
        let (state, report) = compile(optimizer.clone()).await;
        assert_eq!(chat(&server), sequential);
        assert_eq!(report.lm_requests, sequential);
        assert_eq!(report.examples as u64, sequential);
        assert_eq!(
            (
                report.discarded_runs,
                report.dropped_in_flight,
                report.discarded_lm_requests
            ),
            (0, 0, 0)
        );

        server.reset_stats();
        let (speculative_state, report): (Value, BootstrapReport) =
            compile(optimizer.speculative(true)).await;
        assert_eq!(speculative_state, state, "the same program");
        assert_eq!(report.lm_requests, sequential);
        // 16 started at once: 20 - sequential examples past the last needed one at most.
        assert!(
            report.discarded_runs >= 16 - sequential as usize,
            "{report:?}"
        );
        let served = chat(&server);
        assert!(served > sequential, "{served} {report:?}");
        assert!(report.discarded_lm_requests > 0, "{report:?}");
        // Every request the server saw was counted when it was sent (a request of a run
        // dropped at that moment may be counted and never arrive).
        assert!(
            served <= sequential + report.discarded_lm_requests,
            "{served} {report:?}"
        );
        // Requests of runs dropped in flight may reach the server after the compile returned:
        // let them land before the next round counts from zero (on a loaded machine they were
        // counted in the next round's sequential run).
        let mut landed = chat(&server);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = chat(&server);
            if now == landed {
                break;
            }
            landed = now;
        }
    }
}

/// KNNFewShot over the LM layer's embeddings endpoint (the mock server's deterministic unit
/// vectors): an input that is a training example finds itself first, and the per-call bootstrap
/// runs on the neighbours.
#[tokio::test]
async fn knn_few_shot_over_the_lm_layers_embeddings() {
    use dspex::lm::{Embedder, LM};
    use dspex::runtime::optimize::{KNN, KNNFewShot};
    use dspex::testing::MockLm;

    let server = MockLm::builder().start().await.unwrap();
    let lm = LM::builder("openai/mock")
        .api_base(server.api_base())
        .api_key("x")
        .cache(false)
        .build()
        .unwrap();
    let embedder: std::sync::Arc<dyn Embedder> = std::sync::Arc::new(lm.clone());
    let trainset: Vec<Example> = (0..6)
        .map(|i| {
            Example::new()
                .with("question", format!("What is item {i}?"))
                .with("answer", format!("answer-{i}"))
                .with_inputs(["question"])
        })
        .collect();
    let knn = KNN::new(3, trainset.clone(), embedder.clone())
        .await
        .unwrap();
    let query: serde_json::Map<String, serde_json::Value> =
        serde_json::from_value(serde_json::json!({"question": "What is item 4?"})).unwrap();
    let near = knn.neighbours(&query).await.unwrap();
    assert_eq!(near.len(), 3);
    assert_eq!(near[0].get_str("question"), Some("What is item 4?"));
    assert_eq!(
        server.stats().requests_to("/v1/embeddings"),
        2,
        "one batch, one query"
    );

    let program = KNNFewShot::new(2, trainset, embedder, BootstrapFewShot::new())
        .await
        .unwrap()
        .compile(Predict::<QA>::new().with_config(dspex::module::CallConfig::new().lm(lm)));
    let out = program
        .forward(QAInput {
            question: "What is item 2?".into(),
        })
        .await
        .unwrap();
    assert!(!out.answer.is_empty());
    // Two teacher runs on the neighbours (no metric: both pass), then the answer.
    assert_eq!(server.stats().requests_to("/v1/chat/completions"), 3);
}
