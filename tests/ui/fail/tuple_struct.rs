use dspex::prelude::*;

#[signature]
struct QA(#[input] String, #[output] String);

fn use_it(_: QAInput, _: QAOutput) {}

fn main() {
    let _ = QA::input_fields();
}
