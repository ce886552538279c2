use dspex::prelude::*;

/// Echo.
#[tool(nam = "echo2", desc = 3)]
fn echo(value: String) -> String {
    value
}

fn main() {}
