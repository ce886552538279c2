use dspex::prelude::*;

#[signature("question -> answer: string")]
struct QA;

fn main() {
    // The fields that parsed are still generated, so using them does not fail a second time.
    let _ = QAInput { question: String::new() };
    let _: Option<QAOutput> = None;
    let _ = QA::input_fields();
}
