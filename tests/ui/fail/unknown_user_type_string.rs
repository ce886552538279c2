use dspex::prelude::*;

#[derive(Debug)]
struct Citation;

#[signature("question -> answer: Citaton")]
struct QA;

fn main() {
    let _ = QAInput { question: String::new() };
    let _ = Citation;
}
