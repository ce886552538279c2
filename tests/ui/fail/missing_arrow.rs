use dspex::prelude::*;

#[signature("question answer")]
struct QA;

// Nothing could be parsed, but the structs still exist (without fields), so naming them does not
// fail a second time.
fn use_it(_: QAInput, _: QAOutput) {}

fn main() {
    let _ = QA::instructions();
}
