//! The `call` fixtures that the other typed tests (`multimodal`, `code_reasoning`) do not
//! cover, run through the typed API: `#[signature]` structs with `Predict` and
//! `ChainOfThought` over the XMLAdapter, the TwoStepAdapter, a JSONAdapter history and DSPy's
//! tool types (as text and natively), against a scripted LM answering the fixture's replies.
//! The requests must be the fixture's `expected_requests` and the outputs its `expected`.

mod common;

use common::fixture;
use dspex::ToolSpec;
use dspex::adapter::{ChatAdapter, JSONAdapter, TwoStepAdapter, XMLAdapter};
use dspex::lm::{Choice, LmRequest, ScriptedLM, ToolCall};
use dspex::module::ChainOfThought;
use dspex::module::{CallConfig, Predict};
use dspex::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[signature("question -> answer")]
struct QA;

#[signature("question -> answer: int, unit")]
struct Legs;

/// Answer the question, calling tools when needed.
#[signature]
struct ToolQA {
    #[input]
    question: String,
    #[input]
    tools: Vec<ToolSpec>,
    #[output]
    answer: String,
    #[output]
    tool_calls: ToolCalls,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct Citation {
    title: String,
    year: i64,
}

/// Extract the people and count their mentions.
#[signature]
struct People {
    #[input]
    text: String,
    #[output]
    people: Vec<String>,
    #[output]
    counts: BTreeMap<String, i64>,
    #[output]
    citation: Citation,
}

fn messages(request: &LmRequest) -> Value {
    serde_json::to_value(&request.messages).unwrap()
}

/// The fixture's replies' texts.
fn replies(fx: &Value, key: &str) -> Vec<String> {
    fx[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The fixture's tools as `ToolSpec`s (its tagged values without the tag).
fn tools(fx: &Value) -> Vec<ToolSpec> {
    fx["inputs"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| ToolSpec::from_value(t).unwrap())
        .collect()
}

/// The fixture's expected `tool_calls` output as DSPy formats it (names and args).
fn expected_calls(fx: &Value) -> Value {
    fx["expected"]["ok"]["tool_calls"]["tool_calls"].clone()
}

#[tokio::test]
async fn xml_question_answer_and_demo() {
    for name in ["call_xml_qa.json", "call_xml_demo.json"] {
        let fx = fixture(name);
        let lm = ScriptedLM::new(replies(&fx, "replies"));
        let mut qa =
            Predict::<QA>::new().with_config(CallConfig::new().lm(lm.clone()).adapter(XMLAdapter));
        for demo in fx["demos"].as_array().unwrap() {
            qa.params_mut()
                .demos
                .push(Example::from_map(demo.as_object().unwrap().clone()));
        }
        let question = fx["inputs"]["question"].as_str().unwrap().to_string();
        let out = qa.forward(QAInput { question }).await.unwrap();
        assert_eq!(out.answer, fx["expected"]["ok"]["answer"], "{name}");
        assert_eq!(
            messages(&lm.requests()[0]),
            fx["expected_requests"][0]["messages"],
            "{name}"
        );
    }
}

#[tokio::test]
async fn two_step_main_and_extraction_requests() {
    let fx = fixture("call_two_step.json");
    let main = ScriptedLM::new(replies(&fx, "replies"));
    let extraction = ScriptedLM::new(replies(&fx, "extraction_replies"));
    let legs = Predict::<Legs>::new().with_config(
        CallConfig::new()
            .lm(main.clone())
            .adapter(TwoStepAdapter::new(extraction.clone())),
    );
    let question = fx["inputs"]["question"].as_str().unwrap().to_string();
    let out = legs.forward(LegsInput { question }).await.unwrap();
    assert_eq!(out.answer, 12);
    assert_eq!(out.unit, "legs");
    assert_eq!(
        messages(&main.requests()[0]),
        fx["expected_requests"][0]["messages"]
    );
    assert_eq!(
        messages(&extraction.requests()[0]),
        fx["expected_extraction_requests"][0]["messages"]
    );
}

#[tokio::test]
async fn tools_as_text_and_tool_calls_parsed_from_it() {
    let fx = fixture("call_chat_text_tools.json");
    let lm = ScriptedLM::new(replies(&fx, "replies"));
    let qa = Predict::<ToolQA>::new().with_config(CallConfig::new().lm(lm.clone()));
    let out = qa
        .forward(ToolQAInput {
            question: fx["inputs"]["question"].as_str().unwrap().into(),
            tools: tools(&fx),
        })
        .await
        .unwrap();
    assert_eq!(out.answer, "Checking.");
    assert_eq!(
        out.tool_calls.format_value()["tool_calls"],
        expected_calls(&fx)
    );
    assert_eq!(
        messages(&lm.requests()[0]),
        fx["expected_requests"][0]["messages"]
    );
    assert!(lm.requests()[0].extra.get("tools").is_none());
}

#[tokio::test]
async fn native_tool_calls_go_out_as_tools_and_come_back_from_the_response() {
    type WithAdapter = fn(CallConfig) -> CallConfig;
    let chat: WithAdapter = |c| c.adapter(ChatAdapter::new().native_function_calling(true));
    let parallel: WithAdapter = |c| {
        c.adapter(
            ChatAdapter::new()
                .native_function_calling(true)
                .parallel_tool_calls(true),
        )
    };
    // The JSONAdapter calls tools natively by default, as DSPy's does.
    let json: WithAdapter = |c| c.adapter(JSONAdapter);
    for (name, with_adapter) in [
        ("call_chat_native_tools.json", chat),
        ("call_chat_native_tools_parallel.json", parallel),
        ("call_chat_native_tools_none.json", chat),
        ("call_json_native_tools.json", json),
    ] {
        let fx = fixture(name);
        let reply = &fx["replies"][0];
        let calls = reply["tool_calls"]
            .as_array()
            .map(|calls| {
                calls
                    .iter()
                    .map(|c| ToolCall::from_openai(c).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        // Like the LM the fixtures were recorded with, it takes no `response_format`.
        let lm = ScriptedLM::from_choices([
            Choice::text(reply["content"].as_str().unwrap()).with_tool_calls(calls)
        ])
        .without_response_format();
        let qa =
            Predict::<ToolQA>::new().with_config(with_adapter(CallConfig::new().lm(lm.clone())));
        let out = qa
            .forward(ToolQAInput {
                question: fx["inputs"]["question"].as_str().unwrap().into(),
                tools: tools(&fx),
            })
            .await
            .unwrap();
        assert_eq!(out.answer, fx["expected"]["ok"]["answer"], "{name}");
        if fx["expected"]["ok"]["tool_calls"].is_null() {
            assert!(out.tool_calls.is_empty(), "{name}");
        } else {
            assert_eq!(
                out.tool_calls.format_value()["tool_calls"],
                expected_calls(&fx),
                "{name}"
            );
        }
        let request = &lm.requests()[0];
        assert!(request.response_format.is_none(), "{name}");
        let want = &fx["expected_requests"][0];
        assert_eq!(messages(request), want["messages"], "{name}");
        for (key, value) in want["options"].as_object().unwrap() {
            assert_eq!(request.extra.get(key), Some(value), "{name}: option {key}");
        }
    }
}

#[tokio::test]
async fn xml_typed_outputs_and_the_json_fallback_error() {
    let fx = fixture("call_xml_typed.json");
    let lm = ScriptedLM::new(replies(&fx, "replies"));
    let people =
        Predict::<People>::new().with_config(CallConfig::new().lm(lm.clone()).adapter(XMLAdapter));
    let text = fx["inputs"]["text"].as_str().unwrap().to_string();
    let out = people.forward(PeopleInput { text }).await.unwrap();
    assert_eq!(out.people, ["Ann", "Bob"]);
    assert_eq!(
        out.counts,
        BTreeMap::from([("Ann".into(), 2), ("Bob".into(), 1)])
    );
    assert_eq!(
        out.citation,
        Citation {
            title: "T".into(),
            year: 2020
        }
    );
    assert_eq!(
        messages(&lm.requests()[0]),
        fx["expected_requests"][0]["messages"]
    );

    // A completion missing fields: the XMLAdapter fails, the JSONAdapter retry fails too.
    let fx = fixture("call_xml_missing.json");
    let lm = ScriptedLM::new(replies(&fx, "replies")).without_response_format();
    let people =
        Predict::<People>::new().with_config(CallConfig::new().lm(lm.clone()).adapter(XMLAdapter));
    let text = fx["inputs"]["text"].as_str().unwrap().to_string();
    let err = people.forward(PeopleInput { text }).await.unwrap_err();
    assert_eq!(err.parse_failures().len(), 2, "{err}");
    let sent = lm.requests();
    assert_eq!(sent.len(), 2);
    for (request, want) in sent.iter().zip(fx["expected_requests"].as_array().unwrap()) {
        assert_eq!(messages(request), want["messages"]);
    }
}

#[tokio::test]
async fn chain_of_thought_with_typed_outputs() {
    let fx = fixture("call_chat_cot_typed.json");
    let lm = ScriptedLM::new(replies(&fx, "replies"));
    let people = ChainOfThought::<People>::new().with_config(CallConfig::new().lm(lm.clone()));
    let text = fx["inputs"]["text"].as_str().unwrap().to_string();
    let out = people.forward(PeopleInput { text }).await.unwrap();
    assert_eq!(out.reasoning, "Two people.");
    assert_eq!(out.people, ["Cy", "Di"]);
    assert_eq!(out.citation.year, 1999);
    assert_eq!(
        messages(&lm.requests()[0]),
        fx["expected_requests"][0]["messages"]
    );
}

#[signature(
    "history: History, question -> answer",
    instructions = "Reply to the user, using the conversation so far."
)]
struct Chat;

#[tokio::test]
async fn json_adapter_with_a_history_of_turns() {
    let fx = fixture("call_json_history.json");
    let lm = ScriptedLM::new(replies(&fx, "replies")).without_response_format();
    let chat =
        Predict::<Chat>::new().with_config(CallConfig::new().lm(lm.clone()).adapter(JSONAdapter));
    let mut history = History::new();
    for turn in fx["inputs"]["history"]["messages"].as_array().unwrap() {
        history.push(turn.clone()).unwrap();
    }
    let out = chat
        .forward(ChatInput {
            history,
            question: fx["inputs"]["question"].as_str().unwrap().into(),
        })
        .await
        .unwrap();
    assert_eq!(out.answer, "105 km2");
    assert_eq!(
        messages(&lm.requests()[0]),
        fx["expected_requests"][0]["messages"]
    );
}
