use dspex::prelude::*;
use serde::{Deserialize, Serialize};

// Serde, but neither `JsonSchema` nor `LiteralEnum`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Citation {
    title: String,
}

#[signature]
struct QA {
    #[input]
    question: String,
    #[output]
    citation: Citation,
}

fn main() {
    let _ = QAInput { question: String::new() };
}
