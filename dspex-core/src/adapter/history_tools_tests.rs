//! Tool calls and their results inside `History` turns, through every adapter's `format` with
//! native function calling off and on, against the messages DSPy 3.4.1 formats
//! (`testdata/history_tools.json`, written by `scripts/gen_history_tool_cases.py` from DSPy's
//! own adapters): results whose ids match the calls', mismatched ids, calls without ids or
//! without results, results of every JSON kind, outputs beside the calls, output-only turns, and
//! a tool-calls value under a key the signature does not have.

use super::{Adapter, ChatAdapter, JSONAdapter, XMLAdapter};
use crate::example::Example;
use crate::signature::DynSignature;
use serde_json::Value;

#[test]
fn history_tool_turns_match_dspy() {
    let cases: Vec<Value> =
        serde_json::from_str(include_str!("testdata/history_tools.json")).expect("valid JSON");
    assert_eq!(cases.len(), 54);
    for case in &cases {
        let native = case["native"].as_bool().expect("a bool");
        let name = format!("{} ({}, native {native})", case["name"], case["adapter"]);
        let sig: DynSignature =
            serde_json::from_value(case["signature"].clone()).expect("the signature loads");
        let chat = ChatAdapter::new().native_function_calling(native);
        let json = JSONAdapter::new().native_function_calling(native);
        let xml = XMLAdapter::new().native_function_calling(native);
        let adapter: &dyn Adapter = match case["adapter"].as_str() {
            Some("json") => &json,
            Some("xml") => &xml,
            _ => &chat,
        };
        let inputs = Example::from_map(case["inputs"].as_object().expect("an object").clone());
        let messages = adapter
            .format(&sig, &[], &inputs)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = serde_json::to_value(&messages).expect("messages serialize");
        assert_eq!(got, case["messages"], "{name}");
    }
}

#[test]
fn invalid_tool_values_in_history_are_format_errors() {
    let sig = DynSignature::parse("history: History, question -> answer").expect("valid");
    let inputs = |turn: Value| {
        Example::from_map(
            serde_json::json!({"history": {"messages": [turn]}, "question": "q"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
    };
    let bad_calls = inputs(serde_json::json!({"question": "q", "calls": {"tool_calls": 3}}));
    let e = ChatAdapter.format(&sig, &[], &bad_calls).unwrap_err();
    assert!(e.to_string().contains("history value `calls`"), "{e}");
    let bad_results = inputs(
        serde_json::json!({"calls": {"tool_calls": [{"name": "f", "args": {}}],
        "tool_call_results": {"tool_call_results": [{"call_id": "x"}]}}}),
    );
    let e = ChatAdapter.format(&sig, &[], &bad_results).unwrap_err();
    assert!(e.to_string().contains("invalid tool_call_results"), "{e}");
}
