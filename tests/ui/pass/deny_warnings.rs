//! A crate that denies warnings and missing docs: the generated code must not trip any of these
//! lints, for public and private signatures alike.
#![deny(
    warnings,
    missing_docs,
    unused,
    unreachable_pub,
    unused_qualifications,
    rust_2018_idioms
)]
#![deny(
    unused_results,
    trivial_casts,
    trivial_numeric_casts,
    unused_import_braces
)]

use dspex::prelude::*;

/// Public, string form with a generated enum.
#[signature(
    "question: str, context: list[str] -> answer, label: Literal['a', 'b-c'], n: Optional[int]"
)]
pub struct PublicQA;

sig!(
    /// Public, `sig!`.
    pub Summarize: "document -> summary",
    instructions = "Summarize."
);

/// Public, field form; the field docs document the generated fields.
#[signature]
pub struct Rate {
    /// The item.
    #[input]
    item: String,
    #[output(desc = "one to five")]
    stars: u8,
}

// Public and undocumented: the macros document what they generate.
sig!(pub Undocumented: "a -> b: Literal['x', 'y']");

#[signature("a: int -> b")]
pub struct AlsoUndocumented;

#[signature]
pub struct UndocumentedFields {
    #[input]
    a: String,
    #[output]
    b: Vec<String>,
}

// Private signatures, only partly used.
#[signature("question -> answer: Literal['yes', 'no']")]
struct PrivateQA;

sig!(PrivateSig: "a -> b");

/// A private module with a crate-visible signature.
mod inner {
    use dspex::prelude::*;

    #[signature("x -> y")]
    pub(crate) struct InnerSig;
}

/// A public module with a public signature.
pub mod api {
    use dspex::prelude::*;

    /// Documented.
    #[signature("x: int -> y: float")]
    pub struct ApiSig;
}

/// A documented struct of modules.
#[derive(Module)]
pub struct Pipeline {
    /// The step.
    pub step: PredictorParams,
    #[module(skip)]
    hops: usize,
}

fn main() {
    assert_eq!(
        PublicQA::output_fields()[1].dspy_type(),
        "Literal['a', 'b-c']"
    );
    assert_eq!(Summarize::instructions(), "Summarize.");
    assert_eq!(Rate::output_fields()[0].description(), Some("one to five"));
    assert_eq!(
        PrivateQA::output_fields()[0].dspy_type(),
        "Literal['yes', 'no']"
    );
    assert_eq!(PrivateSig::input_fields().len(), 1);
    assert_eq!(
        Undocumented::output_fields()[0].dspy_type(),
        "Literal['x', 'y']"
    );
    assert_eq!(AlsoUndocumented::input_fields()[0].dspy_type(), "int");
    assert_eq!(
        UndocumentedFields::output_fields()[0].dspy_type(),
        "list[str]"
    );
    assert_eq!(inner::InnerSig::input_fields().len(), 1);
    assert_eq!(api::ApiSig::output_fields()[0].dspy_type(), "float");
    let p = Pipeline {
        step: PredictorParams::new(DynSignature::parse("a -> b").unwrap()),
        hops: 1,
    };
    assert_eq!(p.named_predictors().len(), p.hops);
}
