//! The macros find the facade under whatever name the user gave the dependency, and a
//! `crate = path` option points them at a re-export.

use my_dspex::{DynSignature, Module, PredictorParams, Signature};

#[my_dspex::signature("question: str -> answer: int")]
struct QA;

my_dspex::sig!(Summarize: "document -> summary");

#[derive(Debug, Clone, Copy, my_dspex::LiteralEnum)]
enum Mood {
    Happy,
    Sad,
}

#[my_dspex::signature]
struct Feel {
    #[input]
    text: String,
    #[output]
    mood: Mood,
}

#[derive(my_dspex::Module)]
struct Program {
    step: PredictorParams,
}

/// A re-export of the facade, as a wrapper crate would have.
mod facade {
    pub(crate) use my_dspex::*;
}

#[my_dspex::signature("a -> b", crate = crate::facade)]
struct ThroughReexport;

#[test]
fn macros_work_under_a_renamed_dependency() {
    assert_eq!(QA::output_fields()[0].dspy_type(), "int");
    assert_eq!(
        Summarize::signature(),
        &DynSignature::parse("document -> summary").unwrap()
    );
    assert_eq!(
        Feel::output_fields()[0].dspy_type(),
        "Literal['Happy', 'Sad']"
    );
    let p = Program {
        step: PredictorParams::new(DynSignature::parse("a -> b").unwrap()),
    };
    assert_eq!(p.named_predictors()[0].0, "step");
    assert_eq!(ThroughReexport::input_fields()[0].name(), "a");
    let _ = QAOutput { answer: 3 };
}
