// A DSPy user passes the functions themselves; `#[tool]` keeps them plain functions and the
// error names the generated `<name>_tool()`.
use dspex::prelude::*;

/// Multiply two numbers.
#[tool]
fn calculator(a: f64, b: f64) -> f64 {
    a * b
}

#[signature("question -> answer")]
struct QA;

fn main() {
    let _ = ReAct::<QA>::new([calculator]);
}
