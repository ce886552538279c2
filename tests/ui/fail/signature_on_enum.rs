use dspex::prelude::*;

#[signature("question -> answer")]
enum QA {
    Question,
    Answer,
}

fn main() {}
