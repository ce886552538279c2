//! `#[tool]` on async and plain functions, public and private, with and without `Result`, under
//! strict lints; the tools run and describe themselves as DSPy does.
#![deny(warnings, missing_docs, unused, rust_2018_idioms)]

use dspex::prelude::*;
use serde_json::json;

/// Add two integers.
#[tool]
pub async fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Look up a fact
/// by its key.
#[tool(name = "lookup_fact")]
fn lookup(key: String, fallback: Option<String>) -> Result<String, String> {
    match key.as_str() {
        "capital of France" => Ok("Paris".into()),
        _ => fallback.ok_or_else(|| format!("no fact for {key:?}")),
    }
}

#[tool(desc = "Count the words.")]
fn words(text: String) -> usize {
    text.split_whitespace().count()
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let args = |v: serde_json::Value| v.as_object().unwrap().clone();
    rt.block_on(async {
        assert_eq!(add(1, 2).await, 3);
        assert_eq!(add_tool().call(args(json!({"a": 2, "b": 3}))).await.unwrap(), 5);
        let fact = lookup_tool();
        assert_eq!(fact.name(), "lookup_fact");
        assert_eq!(fact.desc(), Some("Look up a fact\nby its key."));
        assert_eq!(
            fact.call(args(json!({"key": "capital of France"}))).await.unwrap(),
            "Paris"
        );
        let err = fact.call(args(json!({"key": "x"}))).await.unwrap_err();
        assert_eq!(err.to_string(), "no fact for \"x\"");
        assert_eq!(
            words_tool().to_string(),
            "words, whose description is <desc>Count the words.</desc>. It takes arguments {'text': {'type': 'string'}}."
        );
        assert_eq!(lookup("capital of France".into(), None).unwrap(), "Paris");
        assert_eq!(words("a b".into()), 2);
    });
}
