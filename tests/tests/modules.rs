//! Predict and ChainOfThought end to end with a scripted LM: the exact prompts DSPy sends, typed
//! outputs, several completions, the JSON fallback, settings, and predictor names.

mod common;

use common::fixture;
use common::rag::Rag;
use dspex::lm::{LmRequest, ScriptedLM};
use dspex::module::{CallConfig, ChainOfThought, Predict};
use dspex::prelude::*;
use dspex::settings::{Settings, with_settings};
use serde_json::{Value, json};

#[signature("question -> answer")]
struct QA;

fn messages_json(request: &LmRequest) -> Value {
    serde_json::to_value(&request.messages).unwrap()
}

#[tokio::test]
async fn predict_sends_dspys_prompt_and_parses_typed_outputs() {
    let fx = fixture("format_chat_00_qa.json");
    let lm = ScriptedLM::from_fields([json!({"answer": "Paris"})]);
    let mut qa = Predict::<QA>::new().with_config(CallConfig::new().lm(lm.clone()));
    if let Some(instructions) = fx["signature"]["instructions"].as_str() {
        qa.params_mut().set_instructions(instructions);
    }
    for demo in fx["demos"].as_array().unwrap() {
        qa.params_mut()
            .demos
            .push(serde_json::from_value(demo.clone()).unwrap());
    }
    let input: QAInput = serde_json::from_value(fx["inputs"].clone()).unwrap();
    let out = qa.forward(input).await.unwrap();
    assert_eq!(out.answer, "Paris");
    assert_eq!(messages_json(&lm.requests()[0]), fx["expected_messages"]);
}

#[tokio::test]
async fn chain_of_thought_adds_reasoning_first() {
    let fx = fixture("format_chat_cot_qa.json");
    let lm = ScriptedLM::from_fields([json!({"reasoning": "Think.", "answer": "42"})]);
    let mut cot = ChainOfThought::<QA>::new().with_config(CallConfig::new().lm(lm.clone()));
    if let Some(instructions) = fx["signature"]["instructions"].as_str() {
        cot.params_mut().set_instructions(instructions);
    }
    for demo in fx["demos"].as_array().unwrap() {
        cot.params_mut()
            .demos
            .push(serde_json::from_value(demo.clone()).unwrap());
    }
    let input: QAInput = serde_json::from_value(fx["inputs"].clone()).unwrap();
    let out = cot.forward(input).await.unwrap();
    assert_eq!(out.reasoning, "Think.");
    assert_eq!(out.output.answer, "42");
    assert_eq!(messages_json(&lm.requests()[0]), fx["expected_messages"]);
    let names: Vec<String> = cot.named_predictors().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["predict"]);
}

#[tokio::test]
async fn several_completions_sample_warm() {
    let lm = ScriptedLM::from_fields([
        json!({"answer": "a"}),
        json!({"answer": "b"}),
        json!({"answer": "c"}),
    ]);
    let qa = Predict::<QA>::new();
    let outs = qa
        .forward_all(
            QAInput {
                question: "q".into(),
            },
            &CallConfig::new().lm(lm.clone()).n(3).temperature(0.0),
        )
        .await
        .unwrap();
    let answers: Vec<&str> = outs.iter().map(|o| o.answer.as_str()).collect();
    assert_eq!(answers, ["a", "b", "c"]);
    // DSPy's rule: n > 1 at temperature 0 samples at 0.7.
    assert_eq!(lm.requests()[0].temperature, Some(0.7));
    assert_eq!(lm.requests()[0].n, Some(3));
}

#[tokio::test]
async fn an_unparsable_chat_answer_falls_back_to_json() {
    let lm = ScriptedLM::new(["no markers at all", r#"{"answer": "from json"}"#]);
    let qa = Predict::<QA>::new().with_config(CallConfig::new().lm(lm.clone()));
    let out = qa
        .forward(QAInput {
            question: "q".into(),
        })
        .await
        .unwrap();
    assert_eq!(out.answer, "from json");
    let second = &lm.requests()[1];
    assert!(
        second.messages[0]
            .content
            .text()
            .contains("Outputs will be a JSON object"),
        "the second call uses JSONAdapter's prompt"
    );

    // When the JSON attempt fails too, the error names the adapter and keeps the completion.
    let lm = ScriptedLM::new(["still nothing", "nor here"]);
    let err = Predict::<QA>::new()
        .with_config(CallConfig::new().lm(lm))
        .forward(QAInput {
            question: "q".into(),
        })
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("JSONAdapter") && text.contains("nor here"),
        "{text}"
    );
    // ... and the first failure too.
    assert!(text.contains("still nothing"), "{text}");
    assert_eq!(err.parse_failures().len(), 2, "{err:?}");
}

#[signature("ticket -> urgency: i64")]
struct Triage;

#[tokio::test]
async fn a_failed_fallback_keeps_the_cause_that_led_to_it() {
    // A new user's script: one answer, whose value is not an integer. The fallback's second
    // call finds the script exhausted; the parse failure that caused it must not be lost.
    let lm = ScriptedLM::from_fields([json!({"urgency": "very high"})]);
    let err = Predict::<Triage>::new()
        .with_config(CallConfig::new().lm(lm))
        .forward(TriageInput {
            ticket: "The site is down".into(),
        })
        .await
        .unwrap_err();
    let dspex::Error::AdapterFallback {
        primary,
        fallback_adapter,
        fallback,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*fallback_adapter, "JSONAdapter");
    let dspex::adapter::AdapterError::Parse {
        adapter,
        field,
        message,
        completion,
    } = primary
    else {
        panic!("{primary:?}")
    };
    assert_eq!(*adapter, "ChatAdapter");
    assert_eq!(field.as_deref(), Some("urgency"));
    assert!(message.contains("int"), "{message}");
    assert!(completion.contains("very high"), "{completion}");
    // Running out of scripted answers is its own error, not a configuration error.
    assert!(
        matches!(
            **fallback,
            dspex::Error::Lm(dspex::lm::LmError::ScriptExhausted { completions: 1, .. })
        ),
        "{fallback:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("urgency") && text.contains("very high") && text.contains("ScriptedLM"),
        "{text}"
    );
}

#[tokio::test]
async fn settings_supply_the_lm_per_task() {
    let qa = Predict::<QA>::new();
    let err = qa
        .forward(QAInput {
            question: "q".into(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, dspex::Error::NoLm), "{err}");
    let lm = ScriptedLM::from_fields([json!({"answer": "scoped"})]);
    let out = with_settings(
        Settings::new().lm(lm),
        qa.forward(QAInput {
            question: "q".into(),
        }),
    )
    .await
    .unwrap();
    assert_eq!(out.answer, "scoped");
}

#[test]
fn optimizers_see_dspys_predictor_names() {
    let rag = Rag::new();
    let names: Vec<String> = rag.named_predictors().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["generate_query.predict", "answer"]);
    let gq = rag.predictor("generate_query.predict").unwrap();
    assert_eq!(
        gq.signature.output_names().collect::<Vec<_>>(),
        ["reasoning", "search_query"]
    );
}

#[tokio::test]
async fn parallel_runs_a_module_over_a_batch_in_order() {
    use dspex::module::Parallel;
    let lm = ScriptedLM::new(
        (0..5).map(|i| format!("[[ ## answer ## ]]\nanswer {i}\n\n[[ ## completed ## ]]")),
    );
    let batch = Parallel::new(Predict::<QA>::new(), 3);
    let inputs = (0..5)
        .map(|i| QAInput {
            question: format!("q{i}"),
        })
        .collect();
    let out = with_settings(Settings::new().lm(lm.clone()), batch.forward(inputs))
        .await
        .unwrap();
    let answers: Vec<String> = out.into_iter().map(|r| r.unwrap().answer).collect();
    assert_eq!(
        answers,
        ["answer 0", "answer 1", "answer 2", "answer 3", "answer 4"]
    );
    assert_eq!(lm.calls(), 5);
    let names: Vec<String> = batch
        .named_predictors()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["self"]);
}
