//! Evaluate through the facade: typed `Predict` / `ChainOfThought` programs scored against the
//! mock LM server over HTTP, with injected server errors recorded as failures, `max_errors`
//! stopping early, and the exports read back.

use dspex::evaluate::{AnswerF1, EvaluationResult};
use dspex::lm::{BreakerConfig, LM, RetryPolicy};
use dspex::module::{ChainOfThought, Predict};
use dspex::prelude::*;
use dspex::testing::{Fault, FaultWhen, MockLm, MockLmServer, Rule};
use serde_json::{Map, Value};
use std::time::Duration;

#[signature("question -> answer")]
struct QA;

const N: usize = 20;

/// Questions `q0`..`q19`; the answer to `qi` is `Ai`.
fn devset() -> Vec<Example> {
    (0..N)
        .map(|i| {
            Example::new()
                .with("question", format!("q{i}"))
                .with("answer", format!("A{i}"))
                .with_inputs(["question"])
        })
        .collect()
}

/// The mock answers `qi` with `Ai`, except every fifth question (`q0`, `q5`, …) gets `wrong`;
/// `with_reasoning` adds a `reasoning` section first (ChainOfThought's output).
fn rules(with_reasoning: bool) -> Vec<Rule> {
    (0..N)
        .map(|i| {
            let answer = if i % 5 == 0 {
                "wrong".to_string()
            } else {
                format!("A{i}")
            };
            let reasoning = if with_reasoning {
                format!("[[ ## reasoning ## ]]\nq{i} is easy.\n\n")
            } else {
                String::new()
            };
            Rule::regex(
                &format!(r"## question ## \]\]\nq{i}\n"),
                format!("{reasoning}[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]"),
            )
            .expect("a valid pattern")
        })
        .collect()
}

async fn server(with_reasoning: bool, faults: Vec<(Fault, FaultWhen)>) -> MockLmServer {
    let mut builder = MockLm::builder().seed(7).rules(rules(with_reasoning));
    for (fault, when) in faults {
        builder = builder.fault(fault, when);
    }
    builder.start().await.expect("the mock server starts")
}

fn lm(server: &MockLmServer) -> LM {
    LM::builder("openai/mock")
        .api_base(server.api_base())
        .api_key("sk-test")
        .cache(false)
        .retry(
            RetryPolicy::attempts(2)
                .with_delays(Duration::from_millis(5), Duration::from_millis(10)),
        )
        .timeout(Duration::from_secs(10))
        // Failures are the point here: keep every request going to the server.
        .breaker(BreakerConfig::disabled())
        .build()
        .expect("the LM builds")
}

/// `q3`, `q7`, `q13` and `q17` always get HTTP 500.
fn broken_questions() -> Vec<(Fault, FaultWhen)> {
    vec![(
        Fault::Status(500),
        FaultWhen::matching(r"\nq(3|7|13|17)\n").expect("a valid pattern"),
    )]
}

fn read_json_rows(text: &str) -> Vec<Map<String, Value>> {
    serde_json::from_str(text).expect("the JSON export parses")
}

#[tokio::test]
async fn a_typed_predict_is_scored_over_http_with_server_errors_recorded() {
    let server = server(false, broken_questions()).await;
    let program = Predict::<QA>::new().with_config(CallConfig::new().lm(lm(&server)));
    let result = Evaluate::new(devset(), answer_exact_match())
        .num_threads(5)
        .call(&program)
        .await
        .expect("the evaluation runs");

    assert!(!result.stopped_early);
    assert_eq!(result.records.len(), N);
    assert_eq!(result.devset_len, N);
    let failed: Vec<usize> = result.errors().map(|r| r.index).collect();
    assert_eq!(failed, [3, 7, 13, 17]);
    assert_eq!(result.n_errors, 4);
    for record in result.errors() {
        let error = record.error.as_deref().unwrap_or_default();
        assert!(error.contains("500"), "{error}");
        assert!(record.prediction.is_none());
        assert_eq!(record.score, 0.0);
    }
    for (i, record) in result.records.iter().enumerate() {
        assert_eq!(record.index, i);
        assert_eq!(
            record.example.get_str("question"),
            Some(format!("q{i}").as_str())
        );
        if !record.is_error() {
            let expected = if i % 5 == 0 {
                "wrong".to_string()
            } else {
                format!("A{i}")
            };
            let pred = record.prediction.as_ref().expect("a prediction");
            assert_eq!(pred.get_str("answer"), Some(expected.as_str()));
            assert_eq!(record.score, if i % 5 == 0 { 0.0 } else { 1.0 });
        }
    }
    // 20 questions: 4 fail, 4 of the rest are wrong (q0, q5, q10, q15): 12 right.
    assert_eq!(result.total(), 12.0);
    assert_eq!(result.score, 60.0);
    assert_eq!(
        result.to_string(),
        "EvaluationResult(score=60.0, results=<list of 20 results>)"
    );
    // Every request got an answer or a 500 (2 attempts for each broken question).
    assert_eq!(
        server.stats().requests_to("/v1/chat/completions"),
        (N - 4 + 4 * 2) as u64
    );

    // The exports, read back.
    let dir = tempfile::tempdir().expect("a temp dir");
    let (csv, json, jsonl) = (
        dir.path().join("eval.csv"),
        dir.path().join("eval.json"),
        dir.path().join("eval.jsonl"),
    );
    result.save_csv(&csv).expect("CSV saved");
    result.save_json(&json).expect("JSON saved");
    result.save_jsonl(&jsonl).expect("JSONL saved");

    let rows = read_json_rows(&std::fs::read_to_string(&json).unwrap());
    assert_eq!(rows.len(), N);
    assert_eq!(
        rows[1].keys().collect::<Vec<_>>(),
        [
            "question",
            "example_answer",
            "pred_answer",
            "answer_exact_match"
        ]
    );
    assert_eq!(rows[1]["answer_exact_match"], Value::Bool(true));
    assert_eq!(rows[0]["answer_exact_match"], Value::Bool(false));
    // A failed example has no prediction, and the failure score as a float (as DSPy writes).
    assert_eq!(
        Value::Object(rows[3].clone()),
        serde_json::json!({"question": "q3", "answer": "A3", "answer_exact_match": 0.0})
    );

    let lines: Vec<Map<String, Value>> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each JSONL line parses"))
        .collect();
    assert_eq!(lines, rows);

    let csv = std::fs::read_to_string(&csv).unwrap();
    let csv_lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(
        csv_lines.len(),
        N + 2,
        "a header, 20 rows, and the final line break"
    );
    assert_eq!(
        csv_lines[0],
        "question,example_answer,pred_answer,answer_exact_match,answer"
    );
    assert_eq!(csv_lines[1], "q0,A0,wrong,False,");
    assert_eq!(csv_lines[2], "q1,A1,A1,True,");
    assert_eq!(csv_lines[4], "q3,,,0.0,A3");
    assert_eq!(csv_lines[N + 1], "");

    server.shutdown().await;
}

#[tokio::test]
async fn a_chain_of_thought_is_scored_with_a_float_metric_and_a_table() {
    let server = server(true, vec![]).await;
    let program = ChainOfThought::<QA>::new().with_config(CallConfig::new().lm(lm(&server)));
    let result: EvaluationResult = Evaluate::new(devset(), AnswerF1::new())
        .num_threads(64)
        .call(&program)
        .await
        .expect("the evaluation runs");
    assert_eq!(result.n_errors, 0);
    assert_eq!(result.score, 80.0);
    let rows = result.rows();
    assert_eq!(
        rows[1].keys().collect::<Vec<_>>(),
        [
            "question",
            "example_answer",
            "reasoning",
            "pred_answer",
            "answer_f1"
        ]
    );
    assert_eq!(rows[1]["reasoning"], "q1 is easy.");
    assert_eq!(rows[1]["answer_f1"], 1.0);
    let table = result.table(3).to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert!(
        lines[0].contains("reasoning") && lines[0].ends_with("answer_f1"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("0  q0") && lines[1].ends_with("✔️ [0.000]"),
        "{table}"
    );
    assert!(lines[2].ends_with("✔️ [1.000]"), "{table}");
    assert_eq!(lines[4], "... 17 more rows not displayed ...");
    server.shutdown().await;
}

#[tokio::test]
async fn max_errors_over_http_stops_early_and_keeps_the_records() {
    let server = server(false, vec![(Fault::Status(500), FaultWhen::Always)]).await;
    let program = Predict::<QA>::new().with_config(CallConfig::new().lm(lm(&server)));
    let devset: Vec<Example> = devset().into_iter().cycle().take(200).collect();
    let result = Evaluate::new(devset, answer_exact_match())
        .num_threads(3)
        .max_errors(4)
        .failure_score(0.0)
        .call(&program)
        .await
        .expect("an early stop is a result, not an error");
    assert!(result.stopped_early);
    assert!(result.n_errors >= 4);
    // The fourth failure stops new examples; at most the two others in flight finish.
    assert!(
        (4..=6).contains(&result.records.len()),
        "{}",
        result.records.len()
    );
    assert!(result.records.iter().all(|r| r.is_error()));
    assert!(result.records.windows(2).all(|w| w[0].index < w[1].index));
    assert_eq!(result.score, 0.0);
    // Nothing past the stop reached the server: 2 attempts per evaluated example.
    assert_eq!(
        server.stats().requests_to("/v1/chat/completions"),
        2 * result.records.len() as u64
    );
    // The partial result still exports.
    assert_eq!(
        read_json_rows(&result.to_json()).len(),
        result.records.len()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_closure_metric_and_settings_reach_every_example() {
    use dspex::settings::{Settings, with_settings};
    let server = server(false, vec![]).await;
    // No LM on the program: it comes from the settings in scope, which apply to every example
    // (they run on the calling task).
    let program = Predict::<QA>::new();
    let starts_with_a = metric_fn("starts_with_a", |_: &Example, p: &Prediction| {
        p.get_str("answer").is_some_and(|a| a.starts_with('A'))
    });
    let evaluate = Evaluate::new(devset(), starts_with_a).num_threads(4);
    let result = with_settings(Settings::new().lm(lm(&server)), evaluate.call(&program))
        .await
        .expect("the evaluation runs");
    assert_eq!(result.n_errors, 0);
    assert_eq!(result.score, 80.0);
    assert_eq!(result.metric_name, "starts_with_a");

    // Without the settings every example fails for want of an LM, and is recorded.
    let result = evaluate.call(&program).await.expect("the evaluation runs");
    assert_eq!(result.n_errors, N);
    assert!(
        result.records[0]
            .error
            .as_deref()
            .unwrap()
            .contains("no LM")
    );
    server.shutdown().await;
}

/// In the environment of the child process the stderr tests start: which evaluation to run.
const REPORT_CHILD: &str = "DSPEX_TEST_EVALUATE_REPORT_CHILD";

/// This test binary run again with only [`stderr_report_child`] and `mode` in its environment,
/// its output not captured: whether it passed, and what it wrote to stderr.
fn run_report_child(mode: &str) -> (bool, String) {
    let output = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "stderr_report_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(REPORT_CHILD, mode)
        .output()
        .expect("the test binary runs again");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `q1`, `q4` and `q7` (of `q0`..`q9`) get a reply without any field, on several lines: the
/// adapter cannot parse it (nor can the JSON fallback), 30 % malformed replies.
async fn malformed_server() -> MockLmServer {
    let malformed = Rule::regex(
        r"## question ## \]\]\nq[147]\n",
        "Sorry, I cannot answer in that format.\nHere is why:\n\tno reason.",
    )
    .expect("a valid pattern");
    MockLm::builder()
        .seed(7)
        .rule(malformed)
        .rules(rules(false))
        .start()
        .await
        .expect("the mock server starts")
}

/// Not a test of its own: the evaluations whose stderr the tests below read, run in a child
/// process (see [`run_report_child`]); without [`REPORT_CHILD`] it does nothing.
#[tokio::test]
async fn stderr_report_child() {
    use dspex::optimize::{BootstrapFewShotWithRandomSearch, COPRO, Optimizer};
    let Ok(mode) = std::env::var(REPORT_CHILD) else {
        return;
    };
    let server = malformed_server().await;
    let program = Predict::<QA>::new().with_config(CallConfig::new().lm(lm(&server)));
    let devset: Vec<Example> = devset().into_iter().take(10).collect();
    match mode.as_str() {
        "default" | "quiet" => {
            let evaluate = Evaluate::new(devset, answer_exact_match()).num_threads(4);
            let evaluate = evaluate.report_failures(mode == "default");
            let result = evaluate.call(&program).await.expect("the evaluation runs");
            assert_eq!(result.n_errors, 3);
            assert_eq!(result.score, 50.0);
        }
        "optimizers" => {
            // Every candidate evaluation meets the three malformed replies.
            let search = BootstrapFewShotWithRandomSearch::new(answer_exact_match())
                .num_candidate_programs(1)
                .num_threads(4);
            search
                .compile(program.clone(), &devset)
                .await
                .expect("random search compiles");
            let copro = COPRO::new(answer_exact_match())
                .breadth(2)
                .expect("a breadth of 2")
                .depth(1)
                .prompt_lm(lm(&server))
                .concurrency(4);
            copro
                .compile(program, &devset)
                .await
                .expect("COPRO compiles");
        }
        other => panic!("unknown mode {other}"),
    }
    server.shutdown().await;
}

/// Issue 15: with 30 % malformed replies the run printed nothing and reported a lower score.
/// Evaluate now writes how many examples failed and their errors to stderr by default.
#[test]
fn malformed_replies_are_reported_on_stderr() {
    let (passed, stderr) = run_report_child("default");
    assert!(passed, "{stderr}");
    let report: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("Evaluate:"))
        .take_while(|l| l.starts_with("Evaluate:") || l.starts_with("  "))
        .collect();
    assert_eq!(
        report.first().copied(),
        Some("Evaluate: 3 of 10 examples failed, each scored 0.0:"),
        "{stderr}"
    );
    assert_eq!(report.len(), 5, "{stderr}");
    for (line, index) in report[1..4].iter().zip([1, 4, 7]) {
        let prefix = format!("  example {index}: ");
        assert!(line.starts_with(&prefix), "{line}");
        // The reply's words are there, its newlines and tab are not.
        assert!(line.contains("Sorry, I cannot answer"), "{line}");
        assert!(!line.contains('\t'), "{line}");
        // Cut after 200 characters of the error.
        let error = &line[prefix.len()..];
        let shown = error.split("… [").next().unwrap_or(error);
        assert!(shown.chars().count() <= 200, "{line}");
    }
    assert!(report[4].contains("report_failures(false)"), "{stderr}");
    // Errors name the model and the endpoint, never the API key.
    assert!(!stderr.contains("sk-test"), "{stderr}");
}

#[test]
fn the_report_can_be_turned_off_and_optimizers_never_write_it() {
    for mode in ["quiet", "optimizers"] {
        let (passed, stderr) = run_report_child(mode);
        assert!(passed, "{mode}: {stderr}");
        assert!(!stderr.contains("Evaluate:"), "{mode}: {stderr}");
        assert!(!stderr.contains("examples failed"), "{mode}: {stderr}");
    }
}
