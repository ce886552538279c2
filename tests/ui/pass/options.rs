// Signature options: `instructions`, `derive(...)` and `crate = path` (a re-export of dspex).
use dspex::prelude::*;

mod reexport {
    pub use dspex as my_dspex;
}

#[signature(
    "question -> answer",
    instructions = "Answer in French.",
    derive(PartialOrd, Default)
)]
struct French;

#[signature("a: int -> b: float", crate = reexport::my_dspex)]
struct Renamed;

#[signature("a -> b", crate = "reexport::my_dspex", derive(Hash, Eq))]
struct RenamedByString;

/// Docs are instructions, unless `instructions` overrides them.
#[signature("a -> b", instructions = "Explicit wins.")]
struct Overridden;

fn main() {
    assert_eq!(French::instructions(), "Answer in French.");
    let a = FrenchOutput::default();
    let b = FrenchOutput { answer: "b".into() };
    assert!(a < b);
    assert_eq!(Renamed::output_fields()[0].dspy_type(), "float");
    let mut set = std::collections::HashSet::new();
    set.insert(RenamedByStringInput { a: "x".into() });
    assert_eq!(set.len(), 1);
    assert_eq!(Overridden::instructions(), "Explicit wins.");
    let _ = FrenchInput {
        question: String::new(),
    };
    let _ = RenamedInput { a: 1 };
}
