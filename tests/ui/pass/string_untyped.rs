// The string form with untyped fields: every field is a `String`.
use dspex::prelude::*;

#[signature("question -> answer")]
struct QA;

#[signature("context, question -> search_query, rationale")]
struct GenerateQuery;

fn main() {
    let input = QAInput {
        question: "Who wrote it?".to_string(),
    };
    let output = QAOutput {
        answer: "Ada".to_string(),
    };
    assert_eq!(input.question, "Who wrote it?");
    assert_eq!(output.clone(), output);

    assert_eq!(
        QA::instructions(),
        "Given the fields `question`, produce the fields `answer`."
    );
    assert_eq!(QA::input_fields()[0].name(), "question");
    assert_eq!(QA::input_fields()[0].dspy_type(), "str");
    assert_eq!(QA::output_fields()[0].prefix(), "Answer:");
    assert_eq!(QA::output_fields()[0].rust_type(), "String");
    assert_eq!(
        QA::signature(),
        &DynSignature::parse("question -> answer").unwrap()
    );

    let names: Vec<&str> = GenerateQuery::output_fields()
        .iter()
        .map(|f| f.name())
        .collect();
    assert_eq!(names, ["search_query", "rationale"]);
    assert_eq!(GenerateQuery::output_fields()[0].prefix(), "Search Query:");
    let _ = GenerateQueryInput {
        context: String::new(),
        question: String::new(),
    };

    // The generated structs are serde structs with the field names as keys.
    let json = serde_json::to_value(&output).unwrap();
    assert_eq!(json, serde_json::json!({ "answer": "Ada" }));
    let back: QAOutput = serde_json::from_value(json).unwrap();
    assert_eq!(back.answer, "Ada");
}
