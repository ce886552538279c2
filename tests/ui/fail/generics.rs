use dspex::prelude::*;

#[signature]
struct QA<T: Clone> {
    #[input]
    question: String,
    #[output]
    answer: String,
}

fn main() {
    let _ = QAInput { question: String::new() };
    let _ = QAOutput { answer: String::new() };
    let _ = QA::input_fields();
}
