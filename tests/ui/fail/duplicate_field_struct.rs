use dspex::prelude::*;

#[signature]
struct QA {
    #[input]
    question: String,
    #[input]
    question: String,
    #[output]
    answer: String,
}

fn main() {
    let _ = QAInput { question: String::new() };
    let _ = QAOutput { answer: String::new() };
}
