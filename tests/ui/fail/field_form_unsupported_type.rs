use dspex::prelude::*;

#[signature]
struct QA {
    #[input]
    question: String,
    #[output]
    answer: (String, i32),
    #[output]
    confidence: f64,
}

fn main() {
    // The unsupported field is left out; the others are generated.
    let _ = QAInput { question: String::new() };
    let _ = QAOutput { confidence: 1.0 };
}
