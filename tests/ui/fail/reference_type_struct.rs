use dspex::prelude::*;

#[signature]
struct QA {
    #[input]
    question: &'static str,
    #[output]
    answer: String,
}

fn main() {
    let _ = QAOutput { answer: String::new() };
}
