//! DSPy's tool types as field types in every signature form: the field struct (`Vec<Tool>` of
//! the runtime's callable tools, or `ToolSpec` descriptions), the string form (plain names from
//! the prelude and `dspy.` paths) and `sig!`.

use dspex::prelude::*;
use dspex::ToolSpec;

/// Look up a fact.
#[tool]
fn lookup(key: String) -> String {
    key
}

/// Answer the question, calling tools when needed.
#[signature]
pub struct ToolQA {
    #[input]
    question: String,
    #[input]
    tools: Vec<Tool>,
    #[output]
    answer: String,
    #[output]
    tool_calls: ToolCalls,
}

/// The same with tool descriptions.
#[signature]
pub struct SpecQA {
    #[input]
    question: String,
    #[input]
    tools: Vec<ToolSpec>,
    #[output]
    tool_calls: ToolCalls,
}

#[signature("question, tools: list[Tool] -> answer, tool_calls: dspy.ToolCalls")]
pub struct Plain;

sig!(pub Dotted: "question, tools: list[dspy.Tool] -> tool_calls: ToolCalls");

fn main() {
    let types = |fields: &[dspex::FieldSpec]| -> Vec<String> {
        fields.iter().map(|f| f.dspy_type()).collect()
    };
    for inputs in [
        ToolQA::input_fields(),
        SpecQA::input_fields(),
        Plain::input_fields(),
        Dotted::input_fields(),
    ] {
        assert_eq!(types(inputs), ["str", "list[Tool]"]);
    }
    assert_eq!(types(Plain::output_fields()), ["str", "ToolCalls"]);
    assert_eq!(types(Dotted::output_fields()), ["ToolCalls"]);

    let _ = ToolQAInput {
        question: "Hi?".into(),
        tools: vec![lookup_tool()],
    };
    let _ = SpecQAInput {
        question: "Hi?".into(),
        tools: vec![lookup_tool().spec()],
    };
    let _ = DottedInput {
        question: "Hi?".into(),
        tools: vec![lookup_tool()],
    };
    let out = ToolQAOutput {
        answer: "a".into(),
        tool_calls: ToolCalls::default(),
    };
    assert!(out.tool_calls.is_empty());
}
