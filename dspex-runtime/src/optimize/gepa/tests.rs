use super::*;
use crate::evaluate::metric_fn;
use crate::example::Prediction;
use crate::lm::{
    Choice, FinishReason, LanguageModel, LmError, LmRequest, LmResponse, ScriptedLM, Usage,
};
use crate::module::DynPredict;
use crate::optimize::qa_trainset;
use crate::settings::{Settings, with_settings};
use crate::signature::DynSignature;
use futures_util::future::BoxFuture;
use serde_json::Value;

fn student() -> DynPredict {
    DynPredict::new(DynSignature::parse("question -> answer").unwrap())
}

fn exact() -> impl crate::evaluate::Metric + Clone {
    metric_fn("exact", |ex: &Example, pred: &Prediction| {
        ex.get("answer") == pred.get("answer")
    })
}

fn err_of(e: &Error) -> GepaError {
    GepaError::find(e)
        .cloned()
        .unwrap_or_else(|| panic!("not a GepaError: {e}"))
}

#[tokio::test]
async fn bad_configurations_are_typed_errors() {
    let train = qa_trainset(3);
    let ctx = JobContext::detached();
    let lm = ScriptedLM::new(["x"]);
    let cases: Vec<(GEPA, &[Example], GepaError)> = vec![
        (
            GEPA::new(exact()).reflection_lm(lm.clone()),
            &train,
            GepaError::Budget {
                max_metric_calls: None,
                max_full_evals: None,
                auto: None,
            },
        ),
        (
            GEPA::new(exact())
                .reflection_lm(lm.clone())
                .max_metric_calls(5)
                .auto(Auto::Light),
            &train,
            GepaError::Budget {
                max_metric_calls: Some(5),
                max_full_evals: None,
                auto: Some(Auto::Light),
            },
        ),
        (
            GEPA::new(exact()).max_metric_calls(5),
            &train,
            GepaError::NoReflection,
        ),
        (
            GEPA::new(exact())
                .reflection_lm(lm.clone())
                .max_metric_calls(5)
                .track_best_outputs(true),
            &train,
            GepaError::TrackBestOutputs,
        ),
        (
            GEPA::new(exact())
                .reflection_lm(lm.clone())
                .max_metric_calls(5),
            &[],
            GepaError::EmptyTrainset,
        ),
        (
            GEPA::new(exact())
                .reflection_lm(lm.clone())
                .max_metric_calls(5)
                .reflection_minibatch_size(0),
            &train,
            GepaError::MinibatchSize,
        ),
    ];
    for (gepa, trainset, want) in cases {
        let err = gepa
            .compile_with_results(student(), trainset, &ctx)
            .await
            .unwrap_err();
        assert_eq!(err_of(&err), want, "{err}");
    }
}

/// An LM answering with a function of the request.
#[derive(Clone)]
struct FnLm(Arc<dyn Fn(&LmRequest) -> String + Send + Sync>);

impl FnLm {
    fn new(f: impl Fn(&LmRequest) -> String + Send + Sync + 'static) -> Self {
        FnLm(Arc::new(f))
    }
}

impl LanguageModel for FnLm {
    fn model(&self) -> &str {
        "fn"
    }

    fn call(&self, request: LmRequest) -> BoxFuture<'_, std::result::Result<LmResponse, LmError>> {
        let text = (self.0)(&request);
        Box::pin(std::future::ready(Ok(LmResponse {
            choices: vec![Choice {
                text,
                finish_reason: Some(FinishReason::Stop),
                tool_calls: Vec::new(),
                reasoning_content: None,
            }],
            usage: Usage::default(),
            model: "fn".into(),
            latency: std::time::Duration::ZERO,
            cache_hit: false,
        })))
    }
}

/// A program that answers right once its instruction says "Answer with A".
fn task_lm() -> FnLm {
    FnLm::new(|request| {
        let system = request.messages[0].content.text();
        let user = request.messages[request.messages.len() - 1].content.text();
        let q = user
            .split("[[ ## question ## ]]\n")
            .nth(1)
            .and_then(|s| s.lines().next())
            .unwrap_or_default()
            .to_string();
        let answer = if system.contains("Answer with A") {
            q.replacen('Q', "A", 1)
        } else {
            "wrong".to_string()
        };
        format!("[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]")
    })
}

#[tokio::test]
async fn a_run_improves_the_instruction_and_reports_results() {
    let train = qa_trainset(4);
    let reflection =
        ScriptedLM::new([r#"{"new_instruction": "  Answer with A and the question's number.  "}"#]);
    let gepa = GEPA::new(exact())
        .max_metric_calls(20)
        .reflection_lm(reflection)
        .num_threads(2)
        .track_stats(true)
        .track_best_outputs(true);
    let out = with_settings(
        Settings::new().lm(task_lm()),
        gepa.compile_with_results(student(), &train, &JobContext::detached()),
    )
    .await
    .unwrap();
    assert_eq!(
        out.program.params().instructions(),
        "Answer with A and the question's number."
    );
    let r = out.detailed_results.unwrap();
    assert_eq!(r.candidates.len(), 2);
    assert_eq!(r.parents, vec![vec![None], vec![Some(0)]]);
    assert_eq!(r.val_aggregate_scores, vec![0.0, 1.0]);
    assert_eq!(r.per_val_instance_best_candidates, vec![vec![1]; 4]);
    // Seed (4), parent minibatch (3), child minibatch (3), then the full evaluation.
    assert_eq!(r.discovery_eval_counts, vec![0, 10]);
    assert_eq!(r.best_idx, 1);
    assert!(r.total_metric_calls >= 20);
    assert_eq!(r.best_outputs_valset.as_ref().unwrap()[0][0].0, 1);
    let json = serde_json::to_string(&r).unwrap();
    let back: GepaResult = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
}

#[tokio::test]
async fn a_killed_run_continues_from_its_log_dir() {
    let dir = std::env::temp_dir().join(format!("dspex-gepa-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let train = qa_trainset(4);
    let reflection = || {
        FnLm::new(|request| {
            let user = request.messages[request.messages.len() - 1].content.text();
            format!("{{\"new_instruction\": \"Try {}\"}}", user.len() % 97)
        })
    };
    let gepa = |calls| {
        GEPA::new(exact())
            .max_metric_calls(calls)
            .reflection_lm(reflection())
            .num_threads(1)
            .track_stats(true)
            .log_dir(&dir)
    };
    let full = with_settings(
        Settings::new().lm(task_lm()),
        gepa(40).compile_with_results(student(), &train, &JobContext::detached()),
    )
    .await
    .unwrap()
    .detailed_results
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    // A first run that stops early, then a second with the whole budget.
    with_settings(
        Settings::new().lm(task_lm()),
        gepa(16).compile_with_results(student(), &train, &JobContext::detached()),
    )
    .await
    .unwrap();
    assert!(dir.join(STATE_FILE).exists());
    let resumed = with_settings(
        Settings::new().lm(task_lm()),
        gepa(40).compile_with_results(student(), &train, &JobContext::detached()),
    )
    .await
    .unwrap()
    .detailed_results
    .unwrap();
    assert_eq!(resumed, full);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `FnLm` answering after a pause, so a job can be cancelled mid-run.
#[derive(Clone)]
struct SlowLm(FnLm);

impl LanguageModel for SlowLm {
    fn model(&self) -> &str {
        "slow"
    }

    fn call(&self, request: LmRequest) -> BoxFuture<'_, std::result::Result<LmResponse, LmError>> {
        Box::pin(async move {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            self.0.call(request).await
        })
    }
}

#[tokio::test]
async fn a_cancelled_job_returns_the_best_program_so_far_and_logs_iterations() {
    let dir = std::env::temp_dir().join(format!("dspex-gepa-job-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("trials.jsonl");
    let reflection = FnLm::new(|_| r#"{"new_instruction": "Answer with A."}"#.to_string());
    let gepa = Arc::new(
        GEPA::new(exact())
            .max_metric_calls(10_000)
            .reflection_lm(reflection)
            .num_threads(2),
    );
    let train = qa_trainset(4);
    let mut job = with_settings(Settings::new().lm(SlowLm(task_lm())), async {
        gepa.spawn(student(), train, Some(&log)).unwrap()
    })
    .await;
    while let Some(p) = job.next_progress().await {
        // The seed, the parent's minibatch, the child's and the child's valset run.
        if p.trials >= 4 {
            job.cancel();
        }
    }
    let program = job.wait().await.unwrap();
    assert_eq!(program.params().instructions(), "Answer with A.");
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["event"] == "trial")
        .collect();
    assert_eq!(lines[0]["candidate"]["kind"], "seed");
    assert_eq!(lines[0]["candidate"]["index"], 0);
    assert!(lines[0]["candidate"]["val_scores"].is_array());
    assert_eq!(lines[1]["candidate"]["kind"], "parent minibatch");
    assert_eq!(lines[1]["minibatch"], true);
    assert_eq!(lines[3]["candidate"]["kind"], "reflective");
    assert_eq!(lines[3]["candidate"]["candidate"], 1);
    assert_eq!(lines[3]["candidate"]["metric_calls"], 14);
    assert_eq!(lines[3]["candidate"]["budget"], 10_000);
    assert_eq!(lines[3]["candidate"]["pareto_front_size"], 1);
    assert_eq!(lines[3]["score"], 1.0);
    assert!(
        lines[3]["phase"]
            .as_str()
            .unwrap()
            .starts_with("iteration 1:")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_job_cancelled_before_the_seed_is_scored_is_an_error() {
    let gepa = Arc::new(
        GEPA::new(exact())
            .max_metric_calls(100)
            .reflection_lm(ScriptedLM::new(["{}"])),
    );
    let job = with_settings(Settings::new().lm(SlowLm(task_lm())), async {
        gepa.spawn(student(), qa_trainset(3), None).unwrap()
    })
    .await;
    job.cancel();
    let err = job.wait().await.unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
}

/// A proposer that writes the instruction the task LM rewards, and records what it was shown.
/// One proposal request: the candidate, the reflective dataset, the components to update.
type Request = (Vec<(String, String)>, ReflectiveDataset, Vec<String>);

struct Fixed(std::sync::Mutex<Vec<Request>>);

impl InstructionProposer for Fixed {
    fn propose<'a>(
        &'a self,
        candidate: &'a [(String, String)],
        reflective_dataset: &'a ReflectiveDataset,
        components_to_update: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, String)>>> {
        self.0.lock().unwrap().push((
            candidate.to_vec(),
            reflective_dataset.clone(),
            components_to_update.to_vec(),
        ));
        Box::pin(async move {
            Ok(components_to_update
                .iter()
                .map(|c| (c.clone(), "Answer with A.".to_string()))
                .collect())
        })
    }
}

#[tokio::test]
async fn a_custom_proposer_sees_feedback_from_plain_metrics() {
    let proposer = Arc::new(Fixed(Default::default()));
    let gepa = GEPA::new(exact())
        .max_metric_calls(10)
        .instruction_proposer(proposer.clone())
        .num_threads(1);
    let out = with_settings(
        Settings::new().lm(task_lm()),
        gepa.compile(student(), &qa_trainset(3)),
    )
    .await
    .unwrap();
    assert_eq!(out.params().instructions(), "Answer with A.");
    let calls = proposer.0.lock().unwrap();
    let (candidate, dataset, components) = &calls[0];
    assert_eq!(components, &vec!["self".to_string()]);
    assert_eq!(candidate[0].0, "self");
    let first = &dataset[0].1[0];
    assert!(first.inputs.contains_key("question"));
    assert_eq!(first.generated_outputs["answer"], "wrong");
    // A `bool` metric's default feedback, as DSPy words it.
    assert_eq!(first.feedback, "This trajectory got a score of False.");
    assert_eq!(
        serde_json::to_value(first).unwrap()["Feedback"],
        "This trajectory got a score of False."
    );
}

#[tokio::test]
async fn a_log_dir_of_another_run_is_a_typed_error() {
    let dir = std::env::temp_dir().join(format!("dspex-gepa-other-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(STATE_FILE), "{not json").unwrap();
    let gepa = GEPA::new(exact())
        .max_metric_calls(10)
        .reflection_lm(ScriptedLM::new(["{}"]))
        .log_dir(&dir);
    let err = gepa
        .compile_with_results(student(), &qa_trainset(3), &JobContext::detached())
        .await
        .unwrap_err();
    assert!(matches!(err_of(&err), GepaError::LogDir { .. }), "{err}");
    // A state saved for another program.
    let saved = Saved {
        state: GepaState::new(vec!["other".into()], vec!["x".into()], vec![0.0; 3], None),
        rng: PyRandom::new(0).state(),
        adapter_rng: PyRandom::new(0).state(),
        sampler: EpochSampler::new(3),
        merge: MergeState::default(),
    };
    std::fs::write(dir.join(STATE_FILE), serde_json::to_string(&saved).unwrap()).unwrap();
    let err = gepa
        .compile_with_results(student(), &qa_trainset(3), &JobContext::detached())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"other\""), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn format_failures_are_reflected_on_only_when_asked() {
    // Every answer is unparseable (no field markers, no JSON): every run fails to parse.
    let garbage = || ScriptedLM::new(["I refuse to use your format."]).repeat_last();
    let run = |add: bool| {
        let proposer = Arc::new(Fixed(Default::default()));
        let gepa = GEPA::new(exact())
            .max_metric_calls(12)
            .instruction_proposer(proposer.clone())
            .add_format_failure_as_feedback(add)
            .num_threads(1);
        async move {
            let out = with_settings(
                Settings::new().lm(garbage()),
                gepa.compile(student(), &qa_trainset(3)),
            )
            .await
            .unwrap();
            let calls = proposer.0.lock().unwrap().clone();
            (out, calls)
        }
    };
    // Off (DSPy's default): a run that failed leaves nothing to reflect on; no proposal.
    let (_, calls) = run(false).await;
    assert!(calls.is_empty(), "{calls:?}");
    // On: the failed call is reflected on, with its raw answer and the expected structure (the
    // proposal does not parse either, so the student keeps its instructions).
    let (out, calls) = run(true).await;
    assert_eq!(
        out.params().instructions(),
        "Given the fields `question`, produce the fields `answer`."
    );
    let (_, dataset, _) = &calls[0];
    let first = &dataset[0].1[0];
    // The minibatch is drawn from the shuffled trainset.
    assert!(["Q0", "Q1", "Q2"].contains(&first.inputs["question"].as_str().unwrap()));
    assert_eq!(
        dataset[0].1.len(),
        3,
        "every run of the minibatch failed to parse"
    );
    assert_eq!(
        first.generated_outputs,
        "Couldn't parse the output as per the expected output format. The model's raw response was:\n```\nI refuse to use your format.\n```\n\n"
    );
    assert!(
        first.feedback.starts_with(
            "Your output failed to parse. Follow this structure:\nsystem: Your input fields are:\n1. `question` (str)"
        ),
        "{}",
        first.feedback
    );
    assert!(first.feedback.ends_with("\n"), "{:?}", first.feedback);
}

#[tokio::test]
async fn each_candidate_evaluation_is_an_optimizer_trial_span() {
    use crate::telemetry::testing::Tree;
    use tracing::instrument::WithSubscriber;
    use tracing_subscriber::layer::SubscriberExt;

    let tree = Tree::default();
    let subscriber = tracing_subscriber::registry().with(tree.clone());
    let reflection =
        ScriptedLM::new([r#"{"new_instruction": "Answer with A and the question's number."}"#]);
    let gepa = GEPA::new(exact())
        .max_metric_calls(10)
        .reflection_lm(reflection)
        .num_threads(1);
    with_settings(
        Settings::new().lm(task_lm()),
        gepa.compile_with_results(student(), &qa_trainset(4), &JobContext::detached()),
    )
    .with_subscriber(subscriber)
    .await
    .unwrap();
    let seen = tree.0.lock().unwrap().clone();
    let trials = seen
        .iter()
        .filter(|s| *s == "dspex.optimize.trial < -")
        .count();
    // The seed's evaluation, then the parent's and the child's minibatches (at least).
    assert!(trials >= 3, "{trials} trials in {seen:?}");
    assert!(
        seen.iter()
            .any(|s| s == "dspex.module < dspex.optimize.trial"),
        "{seen:?}"
    );
}
