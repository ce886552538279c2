// `tools![…]` names `#[tool]` functions; a function without `#[tool]` has no `<name>_tool()`,
// and the error points at its name.
use dspex::prelude::*;

/// Multiply two numbers.
#[tool]
fn calculator(a: f64, b: f64) -> f64 {
    a * b
}

fn lookup(key: String) -> String {
    key
}

#[signature("question -> answer")]
struct QA;

fn main() {
    let _ = ReAct::<QA>::new(tools![calculator, lookup]);
}
