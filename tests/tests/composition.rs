//! Composition across crates: a RAG-shaped pipeline of Predict and ChainOfThought with a fan-out
//! and a branch, through the facade — its outputs, the prompts it sends, the settings its branches
//! see, the names optimizers find, and running it from synchronous code.

use dspex::blocking::BlockingError;
use dspex::lm::ScriptedLM;
use dspex::module::{CallConfig, ChainOfThought, Predict, Reasoned};
use dspex::prelude::*;
use dspex::settings::{Settings, with_settings};
use serde_json::json;

#[signature("question -> search_query")]
struct GenerateQuery;

#[signature("question -> topic")]
struct Classify;

#[signature("context: list[str], question -> answer")]
struct Answer;

#[signature("question -> answer")]
struct QA;

/// The LMs of one pipeline: each predictor gets its own script, except `classify`, which uses
/// whatever LM the settings of the calling task hold.
struct Lms {
    generate_query: ScriptedLM,
    answer: ScriptedLM,
    direct: ScriptedLM,
}

impl Lms {
    fn new() -> Self {
        Lms {
            generate_query: ScriptedLM::from_fields([
                json!({"reasoning": "Search the author.", "search_query": "author of Hamlet"}),
            ]),
            answer: ScriptedLM::from_fields([json!({"answer": "Shakespeare"})]),
            direct: ScriptedLM::from_fields([json!({"answer": "4"})]),
        }
    }
}

/// A stand-in retriever: the passages for a query.
fn search(query: &str) -> Vec<String> {
    vec![
        format!("passage 1 for {query}"),
        format!("passage 2 for {query}"),
    ]
}

/// Questions ending in `?` need retrieval: fan out to keep the question, generate a search query
/// and retrieve, and classify the topic, all at once; then answer from the context. Anything else
/// is answered directly.
fn pipeline(lms: &Lms) -> impl Program<Input = String, Output = String> + Module + use<> {
    let keep_question = program_fn(|q: String| async move { Ok(q) });
    let retrieve = program_fn(|q: String| async move { Ok(GenerateQueryInput { question: q }) })
        .then(
            ChainOfThought::<GenerateQuery>::new()
                .with_config(CallConfig::new().lm(lms.generate_query.clone())),
        )
        .then(program_fn(|r: Reasoned<GenerateQueryOutput>| async move {
            Ok(search(&r.output.search_query))
        }));
    let classify = program_fn(|q: String| async move { Ok(ClassifyInput { question: q }) })
        .then(Predict::<Classify>::new())
        .map(|o| o.topic);
    let retrieve_then_answer = fan_out((keep_question, retrieve, classify))
        .then(program_fn(
            |(question, context, topic): (String, Vec<String>, String)| async move {
                Ok(AnswerInput {
                    context,
                    question: format!("[{topic}] {question}"),
                })
            },
        ))
        .then(Predict::<Answer>::new().with_config(CallConfig::new().lm(lms.answer.clone())))
        .map(|o| o.answer);
    let answer_directly = program_fn(|q: String| async move { Ok(QAInput { question: q }) })
        .then(Predict::<QA>::new().with_config(CallConfig::new().lm(lms.direct.clone())))
        .map(|o| o.answer);
    branch(
        |q: &String| q.ends_with('?'),
        retrieve_then_answer,
        answer_directly,
    )
}

fn settings_lm(topic: &str) -> ScriptedLM {
    ScriptedLM::from_fields([json!({ "topic": topic })])
}

#[tokio::test]
async fn retrieval_branch_fans_out_and_answers_from_the_context() {
    let lms = Lms::new();
    let rag = pipeline(&lms);
    let classify_lm = settings_lm("literature");
    let answer = with_settings(
        Settings::new().lm(classify_lm.clone()),
        rag.forward("Who wrote Hamlet?".into()),
    )
    .await
    .unwrap();
    assert_eq!(answer, "Shakespeare");

    // Each predictor called its own LM once; `classify`, inside the fan-out, found the LM of the
    // caller's settings.
    assert_eq!(lms.generate_query.calls(), 1);
    assert_eq!(classify_lm.calls(), 1);
    assert_eq!(lms.answer.calls(), 1);
    assert_eq!(lms.direct.calls(), 0);

    // The fan-in built the answer's input from all three branches.
    let prompt = &lms.answer.requests()[0].messages;
    let user = prompt.last().unwrap().content.text();
    assert!(
        user.contains("passage 1 for author of Hamlet")
            && user.contains("[literature] Who wrote Hamlet?"),
        "{user}"
    );
}

#[tokio::test]
async fn other_questions_take_the_direct_branch() {
    let lms = Lms::new();
    let rag = pipeline(&lms);
    assert_eq!(rag.forward("2 + 2".into()).await.unwrap(), "4");
    assert_eq!(lms.direct.calls(), 1);
    assert_eq!(lms.generate_query.calls() + lms.answer.calls(), 0);
}

#[tokio::test]
async fn a_failing_branch_fails_the_step() {
    let lms = Lms::new();
    let rag = pipeline(&lms);
    // No settings LM: `classify` fails with NoLm, and the whole step with it.
    let err = rag.forward("Who wrote Hamlet?".into()).await.unwrap_err();
    assert!(matches!(err, dspex::Error::NoLm), "{err}");
    assert_eq!(
        lms.answer.calls(),
        0,
        "nothing ran after the failed fan-out"
    );
}

#[test]
fn optimizers_find_every_predictor_by_name() {
    let lms = Lms::new();
    let mut rag = pipeline(&lms);
    let names: Vec<String> = rag.named_predictors().into_iter().map(|(n, _)| n).collect();
    // branch → if_true / if_false; then → 0 / 1; fan_out → 0 / 1 / 2; ChainOfThought → predict.
    assert_eq!(
        names,
        [
            "if_true.0.0.1.0.1.predict",
            "if_true.0.0.2.1",
            "if_true.1",
            "if_false.1",
        ]
    );
    assert_eq!(
        rag.predictor("if_true.0.0.1.0.1.predict")
            .unwrap()
            .signature
            .output_names()
            .collect::<Vec<_>>(),
        ["reasoning", "search_query"]
    );

    // Changing a predictor through its name changes the prompt the pipeline sends.
    rag.predictor_mut("if_false.1")
        .unwrap()
        .set_instructions("Answer with a single number.");
    assert_eq!(rag.forward_blocking("2 + 2".into()).unwrap(), "4");
    let system = lms.direct.requests()[0].messages[0]
        .content
        .text()
        .into_owned();
    assert!(system.contains("Answer with a single number."), "{system}");
}

#[test]
fn runs_from_synchronous_code() {
    let lms = Lms::new();
    let rag = pipeline(&lms);
    // The settings scope is set around the future that `block_on` runs.
    let answer = dspex::blocking::block_on(with_settings(
        Settings::new().lm(settings_lm("literature")),
        rag.forward("Who wrote Hamlet?".into()),
    ))
    .unwrap();
    assert_eq!(answer, "Shakespeare");
}

#[tokio::test]
async fn blocking_inside_a_runtime_is_a_typed_error() {
    let lms = Lms::new();
    let rag = pipeline(&lms);
    let err = rag.forward_blocking("2 + 2".into()).unwrap_err();
    assert!(
        matches!(err, dspex::Error::Blocking(BlockingError::InsideRuntime)),
        "{err:?}"
    );
    assert_eq!(lms.direct.calls(), 0, "the program did not run");
    // The async path is the one to take here.
    assert_eq!(rag.forward("2 + 2".into()).await.unwrap(), "4");
}
