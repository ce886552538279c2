//! DSPy's `Code["python"]` and `Reasoning` through the typed API: the prompt the
//! `call_chat_code` / `call_json_code` fixtures recorded from DSPy 3.4.1, the fenced block
//! extracted into a `Code<lang::Python>`, and a `Reasoning` output filled from the LM's native
//! reasoning content.

mod common;

use common::fixture;
use dspex::adapter::JSONAdapter;
use dspex::lang;
use dspex::lm::{Choice, ScriptedLM};
use dspex::module::{CallConfig, Predict};
use dspex::prelude::*;
use serde_json::Value;

/// Write a Python function for the task.
#[signature]
struct WriteCode {
    #[input]
    task: String,
    #[output]
    code: Code<lang::Python>,
}

#[signature("question -> reasoning: dspy.Reasoning, answer")]
struct Think;

fn check_against(name: &str, lm: ScriptedLM, config: CallConfig) {
    let fx = fixture(name);
    let program = Predict::<WriteCode>::new().with_config(config.lm(lm.clone()));
    let out = dspex::blocking::block_on(program.forward(WriteCodeInput {
        task: "Add two numbers.".into(),
    }))
    .unwrap();
    assert_eq!(out.code.code(), fx["expected"]["ok"]["code"]["code"]);
    assert_eq!(
        serde_json::to_value(&lm.requests()[0].messages).unwrap(),
        fx["expected_requests"][0]["messages"],
        "{name}"
    );
}

#[test]
fn typed_code_output_matches_dspy() {
    let reply = |name: &str| -> String {
        fixture(name)["replies"][0]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    check_against(
        "call_chat_code.json",
        ScriptedLM::new([reply("call_chat_code.json")]),
        CallConfig::new(),
    );
    check_against(
        "call_json_code.json",
        ScriptedLM::new([reply("call_json_code.json")]).without_response_format(),
        CallConfig::new().adapter(JSONAdapter),
    );
}

#[tokio::test]
async fn native_reasoning_content_fills_a_reasoning_output() {
    let text = "[[ ## reasoning ## ]]\nwritten\n\n[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]";
    let lm = ScriptedLM::from_choices([Choice::text(text).with_reasoning_content("native")]);
    let think = Predict::<Think>::new().with_config(CallConfig::new().lm(lm.clone()));
    let out = think
        .forward(ThinkInput {
            question: "2+2?".into(),
        })
        .await
        .unwrap();
    assert_eq!(out.reasoning, "native");
    assert_eq!(out.answer, "4");
    // Prompts print a Reasoning field as `str`, with no type note.
    let system = lm.requests()[0].messages[0].content.text().into_owned();
    assert!(system.contains("1. `reasoning` (str):"), "{system}");

    // Without native content the parsed text is kept.
    let lm = ScriptedLM::new([text]);
    let think = Predict::<Think>::new().with_config(CallConfig::new().lm(lm));
    let out = think
        .forward(ThinkInput {
            question: "2+2?".into(),
        })
        .await
        .unwrap();
    assert_eq!(out.reasoning.content(), "written");
    let _: Value = serde_json::to_value(&out.reasoning).unwrap();
}

/// An LM that reasons natively: the `Reasoning` field leaves the prompt, the request asks for
/// `reasoning_effort` ("low" unless the call sets one), and the field takes the LM's
/// reasoning — DSPy's `Reasoning.adapt_to_native_lm_feature`.
#[tokio::test]
async fn a_native_reasoning_lm_is_asked_for_reasoning_instead_of_the_field() {
    let answer = "[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]";
    let lm = ScriptedLM::from_choices([
        Choice::text(answer).with_reasoning_content("Two and two make four.")
    ])
    .with_native_reasoning();
    let think = Predict::<Think>::new().with_config(CallConfig::new().lm(lm.clone()));
    let out = think
        .forward(ThinkInput {
            question: "2+2?".into(),
        })
        .await
        .unwrap();
    assert_eq!(out.reasoning, "Two and two make four.");
    assert_eq!(out.answer, "4");
    let request = &lm.requests()[0];
    assert_eq!(request.extra["reasoning_effort"], "low");
    // The field is gone from the prompt (the instructions, which name it, stay as DSPy keeps
    // them).
    let system = request.messages[0].content.text().into_owned();
    assert!(
        !system.contains("[[ ## reasoning ## ]]") && !system.contains("`reasoning` ("),
        "{system}"
    );

    // The call's own effort is kept.
    let lm = ScriptedLM::from_choices([Choice::text(answer).with_reasoning_content("r")])
        .with_native_reasoning();
    let mut config = CallConfig::new().lm(lm.clone());
    config
        .extra
        .insert("reasoning_effort".into(), "high".into());
    let think = Predict::<Think>::new().with_config(config);
    think
        .forward(ThinkInput {
            question: "2+2?".into(),
        })
        .await
        .unwrap();
    assert_eq!(lm.requests()[0].extra["reasoning_effort"], "high");

    // An explicit null turns it off: the field is asked for in the prompt, as without support.
    let written =
        "[[ ## reasoning ## ]]\nby hand\n\n[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]";
    let lm = ScriptedLM::new([written]).with_native_reasoning();
    let mut config = CallConfig::new().lm(lm.clone());
    config.extra.insert("reasoning_effort".into(), Value::Null);
    let think = Predict::<Think>::new().with_config(config);
    let out = think
        .forward(ThinkInput {
            question: "2+2?".into(),
        })
        .await
        .unwrap();
    assert_eq!(out.reasoning, "by hand");
    let request = &lm.requests()[0];
    assert!(request.messages[0].content.text().contains("`reasoning`"));
    assert!(!request.extra.contains_key("reasoning_effort"));

    // An adapter without `Reasoning` among its native response types asks for the field and
    // keeps what was written, whatever the LM's native reasoning.
    let lm = ScriptedLM::from_choices([Choice::text(written).with_reasoning_content("native")])
        .with_native_reasoning();
    let think = Predict::<Think>::new().with_config(
        CallConfig::new()
            .lm(lm.clone())
            .adapter(dspex::adapter::ChatAdapter::new().native_reasoning(false)),
    );
    let out = think
        .forward(ThinkInput {
            question: "2+2?".into(),
        })
        .await
        .unwrap();
    assert_eq!(out.reasoning, "by hand");
    assert!(!lm.requests()[0].extra.contains_key("reasoning_effort"));

    // A native-reasoning LM that sends no reasoning leaves the field empty: a typed error.
    let lm = ScriptedLM::new([answer]).with_native_reasoning();
    let think = Predict::<Think>::new().with_config(CallConfig::new().lm(lm));
    assert!(
        think
            .forward(ThinkInput {
                question: "2+2?".into(),
            })
            .await
            .is_err()
    );
}

/// A streamed call reads native reasoning as the plain call does: the `Reasoning` field takes
/// the LM's streamed reasoning, the answer streams as chunks.
#[tokio::test]
async fn native_reasoning_arrives_through_a_stream() {
    use dspex::module::{StreamItem, StreamOptions};
    use futures_util::StreamExt;
    let answer = "[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]";
    let lm = ScriptedLM::from_choices([
        Choice::text(answer).with_reasoning_content("Two and two make four.")
    ])
    .with_native_reasoning()
    .chunk_size(5);
    let think = Predict::<Think>::new().with_config(CallConfig::new().lm(lm.clone()));
    let items: Vec<_> = think
        .stream_with(
            ThinkInput {
                question: "2+2?".into(),
            },
            &CallConfig::default(),
            &StreamOptions::new(),
        )
        .collect()
        .await;
    // Only the answer streams (the reasoning is not in the prompt), its last chunk marked.
    let mut streamed = String::new();
    for item in &items {
        if let Ok(StreamItem::Chunk(c)) = item {
            assert_eq!(c.field, "answer");
            streamed.push_str(&c.delta);
        }
    }
    assert_eq!(streamed, "4");
    let Some(Ok(StreamItem::Final(out))) = items.last() else {
        panic!("{items:?}")
    };
    assert_eq!(out.reasoning, "Two and two make four.");
    assert_eq!(out.answer, "4");
    assert_eq!(lm.requests()[0].extra["reasoning_effort"], "low");
}
