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
