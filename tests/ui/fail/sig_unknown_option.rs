use dspex::prelude::*;

sig!(pub QA: "question -> answer", instrutions = "Answer briefly.");

fn main() {
    let _ = QAInput { question: String::new() };
    let _ = QAOutput { answer: String::new() };
}
