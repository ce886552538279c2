// Signatures declared inside modules, public and private, used from outside: the generated
// structs, their fields and generated enums take the signature's visibility.
mod sigs {
    use dspex::prelude::*;

    #[signature("question -> answer: Literal['yes', 'no']")]
    pub struct YesNo;

    sig!(pub(crate) Echo: "text -> text_again");

    #[signature]
    pub struct Rate {
        #[input]
        pub item: String,
        #[output]
        pub stars: u8,
    }

    // Private to `sigs`: usable here only.
    #[signature("a -> b")]
    struct Hidden;

    pub fn hidden_output_count() -> usize {
        let _ = HiddenInput { a: String::new() };
        Hidden::output_fields().len()
    }
}

use dspex::Signature;
use sigs::{Echo, EchoInput, Rate, RateOutput, YesNo, YesNoAnswer, YesNoOutput};

fn main() {
    let out = YesNoOutput {
        answer: YesNoAnswer::Yes,
    };
    assert_eq!(out.answer.as_str(), "yes");
    let _ = sigs::YesNoInput {
        question: "Is it?".into(),
    };
    let _ = EchoInput { text: "x".into() };
    assert_eq!(Echo::output_fields()[0].name(), "text_again");
    let r = RateOutput { stars: 5 };
    assert_eq!(r.stars, 5);
    assert_eq!(Rate::output_fields()[0].dspy_type(), "int");
    assert_eq!(
        YesNo::output_fields()[0].dspy_type(),
        "Literal['yes', 'no']"
    );
    assert_eq!(sigs::hidden_output_count(), 1);
}
