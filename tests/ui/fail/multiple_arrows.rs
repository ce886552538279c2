use dspex::prelude::*;

#[signature("question -> rationale -> answer")]
struct QA;

fn use_it(_: QAInput, _: QAOutput) {}

fn main() {
    let _ = QA::output_fields();
}
