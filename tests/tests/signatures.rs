//! Cross-crate behaviour of signatures: the macros' output as the runtime sees it.

use dspex::prelude::*;
use dspex::{FieldRole, TypeSpec};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[signature("question -> answer")]
struct QA;

#[signature("question: String, context: Vec<String> -> answer: String, confidence: f64")]
struct ContextQA;

/// Answer questions with short factoid answers.
///
/// Keep it brief:
///     - one fact.
#[signature]
struct DocQA {
    #[input(desc = "a trivia question")]
    question: String,
    /// Passages that may contain the answer.
    #[input]
    context: Vec<String>,
    #[output(desc = "often 1-5 words", prefix = "Final Answer:")]
    answer: String,
}

#[signature(
    "sentence: str -> sentiment: Literal['positive', 'negative', 'very negative'], score: Optional[float]"
)]
struct Classify;

sig!(pub Summarize: "document -> summary", instructions = "Summarize in one sentence.");

#[derive(Debug, Clone, Copy, PartialEq, LiteralEnum)]
#[literal(rename_all = "SCREAMING_SNAKE_CASE")]
enum Priority {
    Low,
    VeryHigh,
    #[literal(rename = "meh")]
    Whatever,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct Citation {
    title: String,
    year: i64,
    is_primary: Option<bool>,
}

#[signature]
struct Cite {
    #[input]
    claim: String,
    #[output]
    citation: Citation,
    #[output]
    others: Vec<Citation>,
    #[output]
    priority: Priority,
    #[output]
    tags: std::collections::HashMap<String, u32>,
}

#[test]
fn typed_and_dynamic_signatures_are_one_value() {
    let dynamic =
        DynSignature::parse("question: str, context: list[str] -> answer: str, confidence: float")
            .unwrap();
    assert_eq!(ContextQA::signature(), &dynamic);
    assert_eq!(
        QA::signature(),
        &DynSignature::parse("question -> answer").unwrap()
    );
    assert_eq!(ContextQA::input_fields()[1].rust_type(), "Vec<String>");
    assert_eq!(ContextQA::output_fields()[1].dspy_type(), "float");
    assert_eq!(ContextQA::output_fields()[1].role(), FieldRole::Output);
}

#[test]
fn field_form_metadata() {
    assert_eq!(
        DocQA::instructions(),
        "Answer questions with short factoid answers.\n\nKeep it brief:\n    - one fact."
    );
    let inputs = DocQA::input_fields();
    assert_eq!(inputs[0].description(), Some("a trivia question"));
    assert_eq!(inputs[0].prefix(), "Question:");
    // A doc comment is the description when `desc` is not given.
    assert_eq!(
        inputs[1].description(),
        Some("Passages that may contain the answer.")
    );
    assert_eq!(DocQA::output_fields()[0].prefix(), "Final Answer:");
    let input = DocQAInput {
        question: "Who?".into(),
        context: vec![],
    };
    assert_eq!(
        serde_json::to_value(&input).unwrap(),
        json!({"question": "Who?", "context": []})
    );
}

#[test]
fn default_instructions_follow_dspy() {
    assert_eq!(
        QA::instructions(),
        "Given the fields `question`, produce the fields `answer`."
    );
    assert_eq!(Summarize::instructions(), "Summarize in one sentence.");
}

#[test]
fn string_literals_become_enums() {
    let f = &Classify::output_fields()[0];
    assert_eq!(
        f.dspy_type(),
        "Literal['positive', 'negative', 'very negative']"
    );
    assert_eq!(f.rust_type(), "ClassifySentiment");
    assert_eq!(
        Classify::output_fields()[1].dspy_type(),
        "Union[float, NoneType]"
    );
    let out: ClassifyOutput =
        serde_json::from_value(json!({"sentiment": "very negative", "score": null})).unwrap();
    assert_eq!(out.sentiment, ClassifySentiment::VeryNegative);
    assert_eq!(out.sentiment.as_str(), "very negative");
    assert!(
        serde_json::from_value::<ClassifyOutput>(json!({"sentiment": "meh", "score": 1.0}))
            .is_err()
    );
}

#[test]
fn user_types_carry_their_schema_and_serde_names() {
    let outputs = Cite::output_fields();
    assert_eq!(outputs[0].dspy_type(), "Citation");
    assert_eq!(
        outputs[0].json_schema().unwrap(),
        &json!({
            "title": "Citation",
            "type": "object",
            "properties": {
                "title": {"type": "string", "title": "Title"},
                "year": {"type": "integer", "title": "Year"},
                "is_primary": {"anyOf": [{"type": "boolean"}, {"type": "null"}], "title": "Is Primary"}
            },
            "required": ["title", "year"]
        })
    );
    assert_eq!(outputs[1].dspy_type(), "list[Citation]");
    assert_eq!(
        outputs[1].ty().json_schema()["items"],
        json!({"$ref": "#/$defs/Citation"})
    );
    assert_eq!(outputs[2].dspy_type(), "Literal['LOW', 'VERY_HIGH', 'meh']");
    assert_eq!(outputs[3].ty(), &TypeSpec::Dict(Box::new(TypeSpec::Int)));
    assert_eq!(outputs[3].rust_type(), "HashMap<String, u32>");
}

#[test]
fn typed_structs_convert_to_and_from_examples() {
    let input = ContextQAInput {
        question: "Who wrote Hamlet?".into(),
        context: vec!["Shakespeare wrote plays.".into()],
    };
    let example = Example::from_typed(&input)
        .unwrap()
        .with("answer", "Shakespeare")
        .with("confidence", 0.9)
        .with_inputs(["question", "context"]);
    let back: ContextQAInput = example.inputs().unwrap().to_typed().unwrap();
    assert_eq!(back, input);
    let labels: ContextQAOutput = example.labels().unwrap().to_typed().unwrap();
    assert_eq!(labels.answer, "Shakespeare");

    let prediction = Prediction::from_typed(&ContextQAOutput {
        answer: "Shakespeare".into(),
        confidence: 0.9,
    })
    .unwrap();
    assert_eq!(prediction, example.labels().unwrap());
    let err = Prediction::new(serde_json::Map::new())
        .to_typed::<ContextQAOutput>()
        .unwrap_err();
    assert!(err.to_string().contains("answer"), "{err}");
}

#[derive(Module)]
struct Rag {
    generate_query: ChainOfThoughtLike,
    answer: PredictorParams,
    hops: Vec<PredictorParams>,
    extra: Option<PredictorParams>,
    #[module(skip)]
    #[allow(dead_code)]
    k: usize,
}

/// A module holding a predictor under the name DSPy's ChainOfThought uses.
#[derive(Module)]
struct ChainOfThoughtLike {
    predict: PredictorParams,
}

fn params(sig: &str) -> PredictorParams {
    PredictorParams::new(DynSignature::parse(sig).unwrap())
}

#[test]
fn optimizers_see_predictors_by_dspy_name() {
    let mut rag = Rag {
        generate_query: ChainOfThoughtLike {
            predict: params("question -> search_query"),
        },
        answer: params("context: list[str], question -> answer"),
        hops: vec![params("a -> b"), params("b -> c")],
        extra: None,
        k: 3,
    };
    let names: Vec<String> = rag.named_predictors().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["generate_query.predict", "answer", "hops[0]", "hops[1]"]
    );
    for (name, p) in rag.named_predictors_mut() {
        p.set_instructions(format!("Tuned {name}."));
        p.demos.push(Example::new().with("question", "q"));
    }
    assert_eq!(rag.answer.instructions(), "Tuned answer.");
    assert_eq!(rag.generate_query.predict.demos.len(), 1);
    assert_eq!(
        rag.predictor("hops[1]").unwrap().instructions(),
        "Tuned hops[1]."
    );
}

#[test]
fn programs_compose_with_typed_signatures() {
    let retrieve = program_fn(|input: QAInput| async move {
        Ok(ContextQAInput {
            question: input.question.clone(),
            context: vec![format!("A passage about {}.", input.question)],
        })
    });
    let answer = program_fn(|input: ContextQAInput| async move {
        Ok(ContextQAOutput {
            answer: input.context.len().to_string(),
            confidence: 1.0,
        })
    });
    let pipeline = retrieve
        .then(answer)
        .map(|out| QAOutput { answer: out.answer });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let out = rt
        .block_on(pipeline.forward(QAInput {
            question: "tides".into(),
        }))
        .unwrap();
    assert_eq!(out, QAOutput { answer: "1".into() });
}
