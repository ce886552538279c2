// `sig!`, with and without instructions, public and private.
use dspex::prelude::*;

sig!(pub Summarize: "document -> summary", instructions = "Summarize in one sentence.");
sig!(Translate: "text: str, target: Literal['fr', 'de'] -> translation");
sig!(
    /// Doc comments on `sig!` are kept.
    pub(crate) Count: "text -> words: usize",
);

fn main() {
    assert_eq!(Summarize::instructions(), "Summarize in one sentence.");
    assert_eq!(
        Translate::instructions(),
        "Given the fields `text`, `target`, produce the fields `translation`."
    );
    assert_eq!(
        Translate::input_fields()[1].dspy_type(),
        "Literal['fr', 'de']"
    );
    assert_eq!(Count::output_fields()[0].dspy_type(), "int");
    assert_eq!(Count::output_fields()[0].rust_type(), "usize");

    let _ = SummarizeInput {
        document: "A long text.".into(),
    };
    let _ = SummarizeOutput {
        summary: "Short.".into(),
    };
    let _ = TranslateInput {
        text: "hi".into(),
        target: TranslateTarget::Fr,
    };
    let _ = CountOutput { words: 3 };
}
