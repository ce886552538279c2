//! DSPy's `Code` and `Reasoning` through every adapter, against DSPy 3.4.1
//! (`testdata/code_reasoning.json`, written by `scripts/gen_code_reasoning_cases.py` with DSPy's
//! own adapters): the messages formatted for `Code` inputs and outputs (`Code_python`, bare
//! `Code`, `list[Code_python]`, `Optional[Code_python]`, demos) and `Reasoning` fields, and
//! what each adapter parses from tricky answers (no fence, several fences, another language's
//! fence, an unterminated fence, JSON values that are not strings).

use super::{Adapter, ChatAdapter, JSONAdapter, XMLAdapter};
use crate::example::Example;
use crate::signature::DynSignature;
use serde_json::{Value, json};

fn data() -> Value {
    serde_json::from_str(include_str!("testdata/code_reasoning.json")).expect("valid JSON")
}

fn adapter(name: &Value) -> &'static dyn Adapter {
    match name.as_str() {
        Some("json") => &JSONAdapter,
        Some("xml") => &XMLAdapter,
        _ => &ChatAdapter,
    }
}

#[test]
fn formats_match_dspy() {
    let data = data();
    let cases = data["format"].as_array().expect("a list");
    assert_eq!(cases.len(), 21);
    for case in cases {
        let name = format!("{} ({})", case["name"], case["adapter"]);
        let sig: DynSignature =
            serde_json::from_value(case["signature"].clone()).expect("the signature loads");
        let example = |v: &Value| Example::from_map(v.as_object().expect("an object").clone());
        let demos: Vec<Example> = case["demos"]
            .as_array()
            .expect("a list")
            .iter()
            .map(example)
            .collect();
        let messages = adapter(&case["adapter"])
            .format(&sig, &demos, &example(&case["inputs"]))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = serde_json::to_value(&messages).expect("messages serialize");
        assert_eq!(got, case["messages"], "{name}");
    }
}

#[test]
fn parsing_matches_dspy() {
    let data = data();
    let cases = data["parse"].as_array().expect("a list");
    assert!(cases.len() > 100);
    for case in cases {
        let sig: DynSignature =
            serde_json::from_value(case["signature"].clone()).expect("the signature loads");
        let completion = case["completion"].as_str().expect("a completion");
        let got = match adapter(&case["adapter"]).parse(&sig, completion) {
            Ok(map) => json!({ "ok": map }),
            Err(_) => json!({"error": "AdapterParseError"}),
        };
        assert_eq!(got, case["expected"], "{} {completion:?}", case["adapter"]);
    }
}
