use dspex::prelude::*;

#[tool]
struct Calculator;

fn main() {}
