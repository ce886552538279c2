use dspex::prelude::*;

#[derive(LiteralEnum)]
struct Sentiment {
    positive: bool,
}

fn main() {}
