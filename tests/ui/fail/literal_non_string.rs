use dspex::prelude::*;

#[signature("question -> answer: Literal[1, 2]")]
struct QA;

fn main() {
    // The field falls back to `String`, so using the struct does not fail a second time.
    let _ = QAInput { question: String::new() };
    let _ = QAOutput { answer: String::new() };
    let _ = QA::input_fields();
}
