// The string form with types spelled the DSPy way, including `Literal[...]`, which generates an
// enum named `{Signature}{Field}`.
use dspex::prelude::*;
use std::collections::BTreeMap;

#[signature(
    "sentence: str, tags: list[str], hints: Optional[int], counts: dict[str, int], meta: Any \
     -> sentiment: Literal['positive', 'negative', 'very negative'], score: float, \
     maybe: str | None"
)]
struct Review;

fn main() {
    let input = ReviewInput {
        sentence: "Great!".into(),
        tags: vec![],
        hints: Some(2),
        counts: BTreeMap::from([("words".to_string(), 1i64)]),
        meta: serde_json::Value::Null,
    };
    let output = ReviewOutput {
        sentiment: ReviewSentiment::VeryNegative,
        score: 0.25,
        maybe: None,
    };
    assert_eq!(input.hints, Some(2i64));

    // The generated enum: variants in UpperCamelCase, serialized as the literal's value.
    assert_eq!(output.sentiment.as_str(), "very negative");
    assert_eq!(ReviewSentiment::Positive.to_string(), "positive");
    assert_eq!(
        serde_json::to_value(ReviewSentiment::Negative).unwrap(),
        serde_json::json!("negative")
    );
    let parsed: ReviewSentiment = serde_json::from_str("\"very negative\"").unwrap();
    assert_eq!(parsed, ReviewSentiment::VeryNegative);

    let out = Review::output_fields();
    assert_eq!(
        out[0].dspy_type(),
        "Literal['positive', 'negative', 'very negative']"
    );
    assert_eq!(out[0].rust_type(), "ReviewSentiment");
    assert_eq!(out[1].dspy_type(), "float");
    assert_eq!(out[2].dspy_type(), "Union[str, NoneType]");
    let inp = Review::input_fields();
    assert_eq!(inp[1].dspy_type(), "list[str]");
    assert_eq!(inp[2].dspy_type(), "Union[int, NoneType]");
    assert_eq!(inp[2].rust_type(), "Option<i64>");
    assert_eq!(inp[3].dspy_type(), "dict[str, int]");
    assert_eq!(inp[4].dspy_type(), "Any");

    // The same string parsed at run time gives the same metadata.
    let dynamic = DynSignature::parse(
        "sentence: str, tags: list[str], hints: Optional[int], counts: dict[str, int], meta: Any \
         -> sentiment: Literal['positive', 'negative', 'very negative'], score: float, \
         maybe: str | None",
    )
    .unwrap();
    assert_eq!(dynamic.outputs()[0].dspy_type(), out[0].dspy_type());
}
