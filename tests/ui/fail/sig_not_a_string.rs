use dspex::prelude::*;

sig!(pub QA: question -> answer);

fn main() {}
