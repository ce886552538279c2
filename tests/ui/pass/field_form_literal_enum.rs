// An enum deriving `LiteralEnum` is DSPy's `Literal[...]`, honouring serde renames.
use dspex::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, LiteralEnum)]
#[serde(rename_all = "lowercase")]
enum Sentiment {
    Positive,
    Negative,
    #[serde(rename = "meh")]
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
}
