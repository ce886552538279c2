use dspex::prelude::*;

#[signature("question -> answer", instruction = "Answer briefly.")]
struct QA;

fn main() {
    let _ = QAInput { question: String::new() };
    let _ = QAOutput { answer: String::new() };
}
