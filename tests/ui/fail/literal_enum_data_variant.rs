use dspex::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, LiteralEnum)]
enum Sentiment {
    Positive,
    Negative,
    Score(f64),
}

#[signature]
struct Classify {
    #[input]
    sentence: String,
    #[output]
    sentiment: Sentiment,
}

fn main() {
    let _ = ClassifyInput { sentence: String::new() };
    let _ = ClassifyOutput { sentiment: Sentiment::Positive };
}
