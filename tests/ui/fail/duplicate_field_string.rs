use dspex::prelude::*;

#[signature("question, context, question -> answer")]
struct QA;

fn main() {
    // The fields that parsed are still generated, so using them does not fail a second time.
    let _ = QAInput { question: String::new(), context: String::new() };
    let _ = QAOutput { answer: String::new() };
    let _ = QA::input_fields();
}
