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
