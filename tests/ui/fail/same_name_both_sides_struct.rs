use dspex::prelude::*;

#[signature]
struct QA {
    #[input]
    answer: String,
    #[output]
    answer: String,
    #[output]
    confidence: f64,
}

fn main() {
    let _ = QAInput { answer: String::new() };
    let _ = QAOutput { confidence: 1.0 };
}
