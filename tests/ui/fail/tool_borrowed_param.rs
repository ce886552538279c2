use dspex::prelude::*;

/// Look up a fact.
#[tool]
fn lookup(key: &str, keys: Vec<std::borrow::Cow<'_, str>>) -> String {
    format!("{key}{}", keys.len())
}

fn main() {}
