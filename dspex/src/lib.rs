//! # dspex — DSPy-style declarative language-model programming for Rust
//!
//! Declare *what* a step does as a **signature** (`question -> answer`), compose steps into typed
//! **programs**, and let optimizers tune their instructions and demos. The ideas and names are
//! DSPy's; the signatures are checked at compile time.
//!
//! ## Signatures, three ways
//!
//! The attribute form, from a string (untyped fields are `String`) or with types in Rust or DSPy
//! spelling:
//!
//! ```
//! use dspex::prelude::*;
//!
//! #[signature("question -> answer")]
//! struct QA;
//!
//! #[signature("question: String, context: Vec<String> -> answer: String, confidence: f64")]
//! struct ContextQA;
//!
//! let input = ContextQAInput { question: "Who?".into(), context: vec!["Ada wrote it.".into()] };
//! assert_eq!(ContextQA::output_fields()[1].dspy_type(), "float");
//! assert_eq!(QA::instructions(), "Given the fields `question`, produce the fields `answer`.");
//! # let _ = input;
//! ```
//!
//! The field form, with instructions from the doc comment (DSPy uses the class docstring):
//!
//! ```
//! use dspex::prelude::*;
//!
//! /// Answer questions with short factoid answers.
//! #[signature]
//! struct QA {
//!     #[input(desc = "a trivia question")]
//!     question: String,
//!     #[output(desc = "often 1-5 words")]
//!     answer: String,
//! }
//!
//! assert_eq!(QA::instructions(), "Answer questions with short factoid answers.");
//! assert_eq!(QA::output_fields()[0].description(), Some("often 1-5 words"));
//! assert_eq!(QA::input_fields()[0].prefix(), "Question:");
//! ```
//!
//! And the one-line function-like form, [`sig!`]. Rust keeps attribute and function-like macros in
//! one namespace, so it cannot also be called `signature!`; it is `sig!`, and takes the same
//! string and options:
//!
//! ```
//! use dspex::prelude::*;
//!
//! sig!(pub Summarize: "document -> summary", instructions = "Summarize in one sentence.");
//!
//! assert_eq!(Summarize::instructions(), "Summarize in one sentence.");
//! let out = SummarizeOutput { summary: "Short.".into() };
//! # let _ = out;
//! ```
//!
//! Each form generates `NameInput` and `NameOutput` structs (public fields; `Serialize`,
//! `Deserialize`, `Debug`, `Clone`, and `PartialEq` when every field type is built in) and
//! `impl Signature for Name`. The same metadata is available at run time from a string:
//!
//! ```
//! use dspex::prelude::*;
//!
//! #[signature("question: String, context: Vec<String> -> answer")]
//! struct ContextQA;
//!
//! let dynamic = DynSignature::parse("question: str, context: list[str] -> answer")?;
//! assert_eq!(ContextQA::signature(), &dynamic);
//! # Ok::<(), dspex::SignatureError>(())
//! ```
//!
//! Field types: `String`, `bool`, integers, `f32`/`f64`, `Vec<T>`, `Option<T>`,
//! `HashMap`/`BTreeMap<String, T>`, `serde_json::Value` (DSPy's `Any`), enums deriving
//! [`LiteralEnum`] (DSPy's `Literal[...]`, honouring serde renames), string-form
//! `Literal['a', 'b']` (which generates an enum), and structs deriving `serde` and
//! `schemars::JsonSchema` (DSPy's pydantic models, with their JSON schema):
//!
//! ```
//! use dspex::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, LiteralEnum)]
//! #[serde(rename_all = "lowercase")]
//! enum Sentiment { Positive, Negative, Neutral }
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
//! struct Citation { title: String, year: i64 }
//!
//! #[signature]
//! struct Review {
//!     #[input] sentence: String,
//!     #[output] sentiment: Sentiment,
//!     #[output] citation: Option<Citation>,
//! }
//!
//! let fields = Review::output_fields();
//! assert_eq!(fields[0].dspy_type(), "Literal['positive', 'negative', 'neutral']");
//! assert_eq!(fields[1].dspy_type(), "Union[Citation, NoneType]");
//! ```
//!
//! Mistakes are compile errors pointing at the mistake — a missing `->`, a duplicate field, an
//! unknown `#[input(dsc = …)]` key ("did you mean `desc`?") — all reported at once.
//!
//! ## Programs
//!
//! A [`Program`] is an async step from a typed input to a typed output. Programs compose, checked
//! at compile time: `a.then(b)` compiles only if `b` takes what `a` returns. Optimizers reach every
//! predictor inside a program by DSPy's name through [`Module`], derived for structs of modules.
//!
//! ```
//! use dspex::prelude::*;
//!
//! #[derive(Module)]
//! struct Pipeline {
//!     generate_query: PredictorParams,
//!     answer: PredictorParams,
//!     #[module(skip)]
//!     max_hops: usize,
//! }
//!
//! let p = Pipeline {
//!     generate_query: PredictorParams::new(DynSignature::parse("question -> search_query")?),
//!     answer: PredictorParams::new(DynSignature::parse("context, question -> answer")?),
//!     max_hops: 2,
//! };
//! let names: Vec<String> = p.named_predictors().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["generate_query", "answer"]);
//! # Ok::<(), dspex::SignatureError>(())
//! ```
//!
//! ## What works and what does not yet
//!
//! Works: compile-time and run-time signatures with DSPy's metadata (prefixes, default
//! instructions, type spellings, JSON schemas), `Example`/`Prediction`, the `Program` and `Module`
//! traits with sequential composition, and the `dspex signature` command.
//!
//! Not yet: adapters (ChatAdapter/JSONAdapter prompts), LM clients and the mock LM server, the
//! modules (`Predict`, `ChainOfThought`, `ReAct`, …), evaluation, optimizers, persistence in DSPy's
//! state format, retrieval, and the Python bridge. They arrive in that order.

pub use dspex_macros::{LiteralEnum, Module, sig, signature};
pub use dspex_runtime::{
    DynSignature, Error, Example, ExampleError, FieldRole, FieldSpec, FnProgram, LiteralValue, Map,
    Module, Prediction, PredictorParams, Program, ProgramExt, Result, Signature, SignatureError,
    SignatureType, Then, TypeSpec, program_fn,
};

/// The runtime crate, for what the facade does not re-export at its root.
pub use dspex_runtime as runtime;

/// The LM layer: the [`lm::LanguageModel`] trait, the OpenAI-compatible [`lm::LM`] client, and
/// the values that cross them.
pub use dspex_runtime::lm;

/// Adapters: DSPy's exact prompt formats (`ChatAdapter`, `JSONAdapter`) and their parsers.
pub use dspex_runtime::adapter;

/// Modules: `Predict`, `ChainOfThought`, `BestOfN`, `Refine`, `MultiChainComparison`,
/// `Parallel`, `majority`, and their call configuration.
pub use dspex_runtime::module;

/// Settings: the default LM and adapter, call defaults and the trace of predictor calls, per
/// process and per task.
pub use dspex_runtime::settings;

/// Test helpers: the mock LM server (feature `testing`, on with the default `cli` feature).
#[cfg(feature = "testing")]
pub use dspex_runtime::testing;

/// The usual imports: `use dspex::prelude::*;`.
pub mod prelude {
    pub use crate::module::{
        BestOfN, CallConfig, ChainOfThought, MultiChainComparison, Predict, Refine, majority,
    };
    pub use crate::{
        DynSignature, Example, LiteralEnum, Module, Prediction, PredictorParams, Program,
        ProgramExt, Signature, SignatureType, program_fn, sig, signature,
    };
}

/// What generated code needs. Not public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use dspex_runtime::signature::model_schema;
    pub use dspex_runtime::{
        DynSignature, FieldRole, FieldSpec, LiteralValue, Module, PredictorParams, Signature,
        SignatureType, TypeSpec, program::join_path,
    };
    pub use schemars;
    pub use serde;
    pub use serde_json;
    pub use std::boxed::Box;
    pub use std::collections::{BTreeMap, HashMap};
    pub use std::option::Option;
    pub use std::string::String;
    pub use std::sync::OnceLock;
    pub use std::vec;
    pub use std::vec::Vec;

    use std::marker::PhantomData;

    /// Chooses how to describe a field type by autoref specialization: a type implementing
    /// [`SignatureType`] is described by it; any other type is taken as a model, which must derive
    /// `schemars::JsonSchema`. Generated code calls
    /// `(&&Probe::<T>::new()).__dspex_kind().spec::<T>()`; the model path is unconditional, so
    /// a type that is neither gets a plain "`JsonSchema` is not implemented" error.
    pub struct Probe<T: ?Sized>(PhantomData<T>);

    impl<T: ?Sized> Probe<T> {
        #[allow(clippy::new_without_default)]
        pub const fn new() -> Self {
            Probe(PhantomData)
        }
    }

    /// The field type implements [`SignatureType`].
    pub struct BuiltinKind;
    /// The field type is a model (a struct deriving `JsonSchema`).
    pub struct ModelKind;

    pub trait ViaSignatureType {
        fn __dspex_kind(self) -> BuiltinKind;
    }

    impl<T: SignatureType + ?Sized> ViaSignatureType for &&Probe<T> {
        fn __dspex_kind(self) -> BuiltinKind {
            BuiltinKind
        }
    }

    pub trait ViaModel {
        fn __dspex_kind(self) -> ModelKind;
    }

    impl<T: ?Sized> ViaModel for &Probe<T> {
        fn __dspex_kind(self) -> ModelKind {
            ModelKind
        }
    }

    impl BuiltinKind {
        pub fn spec<T: SignatureType + ?Sized>(self) -> TypeSpec {
            T::type_spec()
        }
    }

    impl ModelKind {
        pub fn spec<T: FieldModel>(self) -> TypeSpec {
            TypeSpec::Model {
                name: T::schema_name().into_owned(),
                schema: model_schema::<T>(),
            }
        }
    }

    /// A struct usable as a field type: one deriving `schemars::JsonSchema` (and serde).
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be a signature field type",
        label = "this type is neither built in nor a model",
        note = "derive `serde::Serialize`, `serde::Deserialize` and `schemars::JsonSchema` for a struct, `LiteralEnum` for an enum of choices, or use String, bool, integers, floats, Vec, Option or HashMap/BTreeMap<String, _>"
    )]
    pub trait FieldModel: schemars::JsonSchema {}

    impl<T: schemars::JsonSchema> FieldModel for T {}

    /// The value a `LiteralEnum` variant serializes to (serde renames included); `fallback` is
    /// the variant name, used if it does not serialize to a string.
    pub fn literal_of<T: serde::Serialize>(value: &T, fallback: &str) -> LiteralValue {
        match serde_json::to_value(value) {
            Ok(serde_json::Value::String(s)) => LiteralValue::Str(s),
            _ => LiteralValue::Str(fallback.to_string()),
        }
    }
}

/// The README's Rust blocks, compiled and run as doctests so the tour stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
