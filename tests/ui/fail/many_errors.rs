use dspex::prelude::*;

// Every mistake in the item is reported at once.
#[signature(instruction = "Be brief.")]
struct QA {
    #[input(dsc = "a question")]
    question: String,
    context: Vec<String>,
    #[output(prefix = 42)]
    answer: (String, i32),
    #[output]
    type_: std::rc::Rc<str>,
}

fn main() {
    let _ = QAInput { question: String::new() };
}
