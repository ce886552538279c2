// An enum deriving `LiteralEnum` is DSPy's `Literal[...]`; the derive also implements serde's
// traits (through dspex's re-export: no serde dependency needed), with its own renames.
use dspex::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, LiteralEnum)]
#[literal(rename_all = "lowercase")]
enum Sentiment {
    Positive,
    Negative,
    #[literal(rename = "meh")]
    Neutral,
}

#[signature]
struct Classify {
    #[input]
    sentence: String,
    #[output]
    sentiment: Sentiment,
    #[output]
    all: Vec<Sentiment>,
}

#[signature("sentence -> sentiment: Sentiment")]
struct ClassifyFromString;

fn main() {
    let out = Classify::output_fields();
    assert_eq!(out[0].dspy_type(), "Literal['positive', 'negative', 'meh']");
    assert_eq!(
        out[1].dspy_type(),
        "list[Literal['positive', 'negative', 'meh']]"
    );
    assert_eq!(
        ClassifyFromString::output_fields()[0].dspy_type(),
        "Literal['positive', 'negative', 'meh']"
    );
    let o = ClassifyOutput {
        sentiment: Sentiment::Neutral,
        all: vec![Sentiment::Positive],
    };
    assert_eq!(o.sentiment, Sentiment::Neutral);
    assert_eq!(o.all, [Sentiment::Positive]);
    let _ = ClassifyFromStringOutput {
        sentiment: Sentiment::Negative,
    };
    let _ = ClassifyInput {
        sentence: String::new(),
    };
    // Values in and out as the LM writes them.
    assert_eq!(serde_json::to_string(&Sentiment::Neutral).unwrap(), "\"meh\"");
    let back: Sentiment = serde_json::from_str("\"negative\"").unwrap();
    assert_eq!(back, Sentiment::Negative);
    let err = serde_json::from_str::<Sentiment>("\"Negative\"").unwrap_err();
    assert!(err.to_string().contains("expected one of `positive`, `negative`, `meh`"), "{err}");
}
