// The field form: the doc comment becomes the instructions; `desc` and `prefix` set field metadata;
// field doc comments become descriptions when there is no `desc`.
use dspex::prelude::*;

/// Answer questions with short factoid answers.
#[signature]
struct QA {
    #[input(desc = "a trivia question")]
    question: String,
    /// Facts that may help.
    #[input]
    context: Vec<String>,
    #[output(desc = "often 1-5 words", prefix = "Final Answer:")]
    answer: String,
    #[output]
    confidence: f64,
}

fn main() {
    assert_eq!(
        QA::instructions(),
        "Answer questions with short factoid answers."
    );
    let inputs = QA::input_fields();
    assert_eq!(inputs[0].description(), Some("a trivia question"));
    assert_eq!(inputs[0].prefix(), "Question:");
    assert_eq!(inputs[1].description(), Some("Facts that may help."));
    assert_eq!(inputs[1].dspy_type(), "list[str]");
    let outputs = QA::output_fields();
    assert_eq!(outputs[0].description(), Some("often 1-5 words"));
    assert_eq!(outputs[0].prefix(), "Final Answer:");
    assert_eq!(outputs[1].description(), None);
    assert_eq!(outputs[1].dspy_type(), "float");

    let input = QAInput {
        question: "Who?".into(),
        context: vec![],
    };
    let output = QAOutput {
        answer: "Ada".into(),
        confidence: 1.0,
    };
    assert!(input.context.is_empty());
    assert_eq!(output, output.clone());
}
