use dspex::prelude::*;

#[signature("question -> answer")]
struct QA {
    #[input]
    question: String,
}

fn main() {
    // The string's fields are generated.
    let _ = QAInput { question: String::new() };
    let _ = QAOutput { answer: String::new() };
}
