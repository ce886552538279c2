//! DSPy's `Code["python"]` and `Reasoning` as field types in every signature form: the field
//! struct (`Code<lang::Python>`, a user's own `Language` marker), the string form
//! (`Code["python"]`, `dspy.Code['rust']`, `Code_python`, `dspy.Reasoning`) and `sig!`.

use dspex::prelude::*;
use dspex::{Language, lang};

/// A language dspex has no marker for.
pub struct Haskell;
impl Language for Haskell {
    const NAME: &'static str = "haskell";
}

/// Write a Python function for the task.
#[signature]
pub struct CodeGen {
    #[input]
    task: String,
    #[input]
    example: Option<Code<Haskell>>,
    #[output]
    reasoning: Reasoning,
    #[output]
    code: Code<lang::Python>,
}

#[signature("task, snippet: dspy.Code['rust'] -> code: Code[\"python\"], more: list[Code_haskell]")]
pub struct Port;

sig!(pub Explain: "code: dspy.Code -> reasoning: dspy.Reasoning, summary");

fn main() {
    let types = |fields: &[dspex::FieldSpec]| -> Vec<String> {
        fields.iter().map(|f| f.dspy_type()).collect()
    };
    assert_eq!(
        types(CodeGen::input_fields()),
        ["str", "Union[Code_haskell, NoneType]"]
    );
    assert_eq!(types(CodeGen::output_fields()), ["Reasoning", "Code_python"]);
    assert_eq!(types(Port::input_fields()), ["str", "Code_rust"]);
    assert_eq!(types(Port::output_fields()), ["Code_python", "list[Code_haskell]"]);
    assert_eq!(types(Explain::input_fields()), ["Code"]);

    // The generated structs hold dspex's types.
    let out = PortOutput {
        code: Code::from_markdown("```python\nprint(1)\n```"),
        more: vec![Code::<Haskell>::new("main = pure ()")],
    };
    assert_eq!(out.code.code(), "print(1)");
    let _ = PortInput {
        task: "Port it.".into(),
        snippet: Code::<lang::Rust>::new("fn main() {}"),
    };
    let explained = ExplainOutput {
        reasoning: Reasoning::new("It prints."),
        summary: "Prints one.".into(),
    };
    assert_eq!(explained.reasoning, "It prints.");
    let _ = ExplainInput {
        code: Code::new("print(1)"),
    };
}
