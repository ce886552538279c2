// With `#[literal(serde = false)]` the enum derives serde itself and the values are what serde
// writes, its renames included.
use dspex::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, LiteralEnum)]
#[literal(serde = false)]
#[serde(rename_all = "UPPERCASE")]
enum Grade {
    Pass,
    #[serde(rename = "F")]
    Fail,
}

#[signature("answer -> grade: Grade")]
struct Judge;

fn main() {
    assert_eq!(Judge::output_fields()[0].dspy_type(), "Literal['PASS', 'F']");
    assert_eq!(serde_json::to_string(&Grade::Fail).unwrap(), "\"F\"");
}
