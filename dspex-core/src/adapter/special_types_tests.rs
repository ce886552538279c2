//! DSPy's special types through every adapter's `format`, against messages DSPy 3.4.1 produced
//! (`testdata/special_types.json`, written by DSPy's own adapters): media inputs as content
//! parts (also inside `Optional`, `dict` and demos), `History` turns with missing inputs and
//! outputs, an absent history, and `Image` outputs with their schema notes.

use super::{Adapter, ChatAdapter, JSONAdapter, XMLAdapter};
use crate::example::Example;
use crate::signature::DynSignature;
use serde_json::Value;

#[test]
fn formats_match_dspy() {
    let cases: Vec<Value> =
        serde_json::from_str(include_str!("testdata/special_types.json")).expect("valid JSON");
    assert_eq!(cases.len(), 15);
    for case in &cases {
        let name = format!("{} ({})", case["name"], case["adapter"]);
        let sig: DynSignature =
            serde_json::from_value(case["signature"].clone()).expect("the signature loads");
        let adapter: &dyn Adapter = match case["adapter"].as_str() {
            Some("json") => &JSONAdapter,
            Some("xml") => &XMLAdapter,
            _ => &ChatAdapter,
        };
        let example = |v: &Value| Example::from_map(v.as_object().expect("an object").clone());
        let demos: Vec<Example> = case["demos"]
            .as_array()
            .expect("a list")
            .iter()
            .map(example)
            .collect();
        let messages = adapter
            .format(&sig, &demos, &example(&case["inputs"]))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = serde_json::to_value(&messages).expect("messages serialize");
        assert_eq!(got, case["messages"], "{name}");
    }
}

#[test]
fn malformed_special_values_are_format_errors() {
    let sig =
        DynSignature::parse("image: Image, history: History, question -> answer").expect("valid");
    let bad_image = Example::from_map(
        serde_json::json!({"image": {"href": "x"}, "question": "q"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let e = ChatAdapter.format(&sig, &[], &bad_image).unwrap_err();
    assert!(
        e.to_string().contains("field `image` is of type `Image`"),
        "{e}"
    );
    let bad_history = Example::from_map(
        serde_json::json!({"history": [{"question": "q"}], "question": "q"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let e = JSONAdapter.format(&sig, &[], &bad_history).unwrap_err();
    assert!(
        e.to_string().contains("field `history` is a History"),
        "{e}"
    );
    // A plain string in an image field is printed as DSPy prints a value of another type.
    let text = Example::from_map(
        serde_json::json!({"image": "https://example.com/a.png", "question": "q"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    );
    let messages = ChatAdapter.format(&sig, &[], &text).expect("formats");
    assert!(
        messages[1]
            .content
            .text()
            .contains("https://example.com/a.png")
    );
    assert!(!messages[1].content.has_media());
}
