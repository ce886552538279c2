use dspex::prelude::*;

#[signature("question -> answer: (i32, i32)")]
struct QA;

fn main() {
    // The fields that parsed are still generated, so using them does not fail a second time.
    let _ = QAInput { question: String::new() };
    let _: Option<QAOutput> = None;
    let _ = QA::input_fields();
}
