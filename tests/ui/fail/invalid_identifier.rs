use dspex::prelude::*;

#[signature("1a -> answer")]
struct QA;

fn main() {
    // The fields that parsed are still generated, so using them does not fail a second time.
    let _ = QAOutput { answer: String::new() };
    let _: Option<QAInput> = None;
    let _ = QA::input_fields();
}
