// The string form with types spelled the Rust way.
use dspex::prelude::*;
use std::collections::{BTreeMap, HashMap};

#[signature(
    "question: String, context: Vec<String>, k: u8, scores: HashMap<String, f32> \
     -> answer: String, confidence: f64, is_sure: bool, notes: Option<Vec<String>>, \
     extra: BTreeMap<String, i64>, raw: serde_json::Value"
)]
struct ContextQA;

fn main() {
    let input = ContextQAInput {
        question: "Who?".into(),
        context: vec!["Ada wrote it.".into()],
        k: 3,
        scores: HashMap::from([("a".to_string(), 0.5f32)]),
    };
    let output = ContextQAOutput {
        answer: "Ada".into(),
        confidence: 0.9,
        is_sure: true,
        notes: None,
        extra: BTreeMap::new(),
        raw: serde_json::json!({ "any": [1, 2] }),
    };
    assert_eq!(input.k, 3u8);
    assert!(output.notes.is_none());

    let dspy: Vec<String> = ContextQA::input_fields()
        .iter()
        .map(|f| f.dspy_type())
        .collect();
    assert_eq!(dspy, ["str", "list[str]", "int", "dict[str, float]"]);
    let dspy: Vec<String> = ContextQA::output_fields()
        .iter()
        .map(|f| f.dspy_type())
        .collect();
    assert_eq!(
        dspy,
        [
            "str",
            "float",
            "bool",
            "Union[list[str], NoneType]",
            "dict[str, int]",
            "Any"
        ]
    );
    assert_eq!(ContextQA::input_fields()[1].rust_type(), "Vec<String>");
    assert_eq!(ContextQA::input_fields()[2].rust_type(), "u8");
    assert_eq!(ContextQA::output_fields()[2].prefix(), "Is Sure:");
    assert_eq!(ContextQA::output_fields()[1].dspy_type(), "float");
}
