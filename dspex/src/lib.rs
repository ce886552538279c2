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
//! [`LiteralEnum`] (DSPy's `Literal[...]`; the derive implements serde's traits too, so no serde
//! dependency is needed — rename with `#[literal(rename_all = "…")]` on the enum (serde's rule
//! names) and `#[literal(rename = "…")]` on a variant, or write `#[literal(serde = false)]` and
//! derive serde yourself to take its names), string-form `Literal['a', 'b']` (which generates an
//! enum), and structs deriving `serde` and `schemars::JsonSchema` (DSPy's pydantic models, with
//! their JSON schema; these need `serde` and `schemars` in your Cargo.toml):
//!
//! ```
//! use dspex::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, Copy, PartialEq, LiteralEnum)]
//! #[literal(rename_all = "lowercase")]
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
//! ## Agents and tools
//!
//! `#[tool]` turns a function (async or not) into a tool for [`module::ReAct`]: the function
//! stays as written, and `<name>_tool()` builds a [`module::Tool`] whose arguments are its
//! parameters (JSON schemas from `schemars`), whose description is its doc comment, and whose
//! body deserializes the model's arguments and calls it. A returned `Err` becomes the
//! observation the model sees next, as in DSPy. `#[tool(name = "…", desc = "…")]` overrides
//! either; `Tool::new` builds the same from an argument struct and a closure.
//!
//! [`tools!`]`[add, lookup]` lists tools as DSPy users list them (`tools=[add, lookup]`): a
//! bare name stands for the `#[tool]` function's `<name>_tool()`, any other expression is a
//! tool value. A plain array of the functions cannot work in Rust: each function has its own
//! type, so `[add, lookup]` is a type error before any tool is looked at.
//!
//! ```
//! use dspex::prelude::*;
//!
//! /// Add two integers.
//! #[tool]
//! async fn add(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//!
//! /// Look up a fact by its key.
//! #[tool]
//! fn lookup(key: String) -> Result<String, String> {
//!     match key.as_str() {
//!         "capital of France" => Ok("Paris".into()),
//!         _ => Err(format!("no fact for {key:?}")),
//!     }
//! }
//!
//! #[signature("question -> answer")]
//! struct QA;
//!
//! assert_eq!(
//!     add_tool().to_string(),
//!     "add, whose description is <desc>Add two integers.</desc>. \
//!      It takes arguments {'a': {'type': 'integer'}, 'b': {'type': 'integer'}}."
//! );
//! let agent = ReAct::<QA>::new([add_tool(), lookup_tool()])?.with_max_iters(5);
//! assert_eq!(agent.as_dyn().tools().len(), 3); // `finish` comes last
//! // The same, written as in DSPy:
//! let agent = ReAct::<QA>::new(tools![add, lookup])?;
//! assert_eq!(agent.as_dyn().tools()[1].name(), "lookup");
//! # Ok::<(), dspex::Error>(())
//! ```
//!
//! ## Composition: fan-out, branches, and calls from synchronous code
//!
//! `a.join(b)` runs two programs on clones of one input at the same time and returns both outputs
//! as a tuple; [`fan_out`]`((a, b, c, …))` does it for up to 8. The branches share the caller's
//! task — nothing is spawned, and settings from `with_settings` apply in every branch — and the
//! first error fails the step and cancels the rest ([`FanOut::settled`] keeps every result
//! instead). [`branch`]`(condition, if_true, if_false)` runs one of two programs with the same
//! input and output, [`branch_either`] one of two with different outputs. All of it is checked at
//! compile time, like `then`.
//!
//! [`ProgramExt::forward_blocking`] runs a program from synchronous code on a shared runtime built
//! on first use; inside an async context it returns [`Error::Blocking`] instead of blocking —
//! `.await` `forward` there. See [`blocking`].
//!
//! ```
//! use dspex::prelude::*;
//!
//! let question = program_fn(|q: String| async move { Ok(q) });
//! let retrieve = program_fn(|q: String| async move { Ok(vec![format!("a passage on {q}")]) });
//! let answer_with_context = program_fn(|(q, docs): (String, Vec<String>)| async move {
//!     Ok(format!("{q} -> {}", docs.join("; ")))
//! });
//! let answer_directly = program_fn(|q: String| async move { Ok(format!("{q} -> 4")) });
//!
//! // If the question needs retrieval, retrieve (keeping the question) then answer; else answer.
//! let rag = branch(
//!     |q: &String| !q.contains('+'),
//!     question.join(retrieve).then(answer_with_context),
//!     answer_directly,
//! );
//! assert_eq!(rag.forward_blocking("who is Ada?".into())?, "who is Ada? -> a passage on who is Ada?");
//! assert_eq!(rag.forward_blocking("2 + 2".into())?, "2 + 2 -> 4");
//! # Ok::<(), dspex::Error>(())
//! ```
//!
//! Optimizers see predictors inside compositions under field-like names: `then`'s steps are `0`
//! and `1`, a fan-out's branches `0`, `1`, `2`, …, a branch's programs `if_true` and `if_false`
//! (so the answer predictor above, were it one, would be `if_true.1`).
//!
//! ## What works and what does not yet
//!
//! Works: compile-time and run-time signatures with DSPy's metadata (prefixes, default
//! instructions, type spellings, JSON schemas), `Example`/`Prediction`, the `Program` and `Module`
//! traits with sequential, fan-out and conditional composition; DSPy's `ChatAdapter`,
//! `JSONAdapter` and `XMLAdapter` byte for byte; the OpenAI-compatible LM client with cache, retries, breaker,
//! limits, usage and history, and the mock LM server; `Predict`, `ChainOfThought`, `ReAct` with
//! tools, `BestOfN`, `Refine`, `MultiChainComparison`, `Parallel`, `majority`; output-field
//! streaming; callbacks on module, LM, adapter, tool and evaluation calls ([`callback`]);
//! `save`/`load` in DSPy's JSON state format; [`evaluate::Evaluate`] with DSPy's
//! metrics; the optimizers in [`optimize`] (`LabeledFewShot`, `BootstrapFewShot`,
//! `BootstrapFewShotWithRandomSearch`, `KNNFewShot`, `COPRO`, `MIPROv2`, `GEPA`, `SIMBA`), checked against DSPy
//! 3.4.1, run as jobs; the `dspex` command (`signature`, `prompt`, `parse`, `mock-lm`); the
//! Python bridge's supervised worker pool, bridged DSPy modules, and the router that picks
//! dspex's module or DSPy's ([`bridge`]).
//!
//! Retrieval ([`retrieve`]): the [`retrieve::Retriever`] trait, [`retrieve::Retrieve`] as a program
//! step and [`module::search_tool`] for agents; the embedded BM25 index
//! [`retrieve::Bm25Index`] (feature `bm25`, on by default; `dspex index build|search`), an
//! embeddings retriever ([`retrieve::EmbeddingsRetriever`]), hybrid search by reciprocal rank
//! fusion ([`retrieve::HybridRetriever`]) and a ColBERTv2 client ([`retrieve::ColBERTv2`]).

pub use dspex_macros::{LiteralEnum, Module, sig, signature, tool, tools};
pub use dspex_runtime::program::{
    Branch, BranchEither, Branches, Either, FanOut, FanOutSettled, branch, branch_either, fan_out,
};
pub use dspex_runtime::{
    DynSignature, Error, Example, ExampleError, FieldRole, FieldSpec, FnProgram, LiteralValue, Map,
    Module, Prediction, PredictorParams, Program, ProgramExt, Result, Signature, SignatureError,
    SignatureType, Then, TypeSpec, program_fn,
};

pub use dspex_runtime::signature::CustomType;
/// The language of a `Code` field type, as signatures hold it.
pub use dspex_runtime::signature::{CodeLanguage, CodeLanguageError};
/// DSPy's special input types: [`Image`], [`Audio`] and [`File`] (sent as content parts of the
/// user message) and [`History`] (earlier turns, sent as user/assistant messages), with the
/// errors of their constructors.
pub use dspex_runtime::types::{Audio, File, History, HistoryTurnError, Image, MediaError};
/// DSPy's string-like types: [`Code`] in a [`Language`] (`Code<lang::Python>` is
/// `dspy.Code["python"]`), with DSPy's fence extraction [`extract_code`], and [`Reasoning`].
pub use dspex_runtime::types::{Code, Language, Reasoning, extract_code, lang};
/// DSPy's tool-calling types: [`ToolSpec`] (a tool's description, the value of a `Tool` field;
/// [`module::Tool`] is a `Tool` field type too), [`ToolCalls`] (a `ToolCalls` output, run with
/// [`module::ExecuteToolCalls`]) and [`ToolCallResults`].
pub use dspex_runtime::types::{ToolCallResults, ToolCalls, ToolSpec, ToolValueError};

/// Running programs from synchronous code: [`ProgramExt::forward_blocking`] and
/// [`blocking::block_on`], on a shared runtime; inside a tokio runtime they return
/// [`Error::Blocking`] instead of blocking.
pub use dspex_runtime::program::blocking;

/// The runtime crate, for what the facade does not re-export at its root.
pub use dspex_runtime as runtime;

/// The LM layer: the [`lm::LanguageModel`] trait, the OpenAI-compatible [`lm::LM`] client, and
/// the values that cross them.
pub use dspex_runtime::lm;

/// The Python bridge (feature `bridge`, Unix only): a supervised pool of DSPy worker processes
/// ([`bridge::Pool`]), sessions with worker affinity, and DSPy modules called as typed programs
/// ([`bridge::BridgedModule`]).
#[cfg(all(unix, feature = "bridge"))]
pub use dspex_runtime::bridge;

/// Adapters: DSPy's exact prompt formats (`ChatAdapter`, `JSONAdapter`, `XMLAdapter`) and their
/// parsers.
pub use dspex_runtime::adapter;

/// Modules: `Predict`, `ChainOfThought`, `ReAct` with tools, `BestOfN`, `Refine`,
/// `MultiChainComparison`, `Parallel`, `majority`, their call configuration, and output-field
/// streaming (`stream`, `StreamItem`).
pub use dspex_runtime::module;

/// Evaluation: [`evaluate::Evaluate`] (DSPy's `dspy.Evaluate`) with its results and exports,
/// the [`evaluate::Metric`] trait and closure metrics, DSPy's built-in metrics
/// (`answer_exact_match`, `answer_passage_match`, EM / F1) and the LM judges `SemanticF1` and
/// `CompleteAndGrounded`.
pub use dspex_runtime::evaluate;

/// Optimizers (DSPy's teleprompters): `LabeledFewShot`, `BootstrapFewShot`,
/// `BootstrapFewShotWithRandomSearch`, `KNNFewShot`, `COPRO`, `MIPROv2`, `GEPA` (with metrics
/// that give feedback, in [`optimize::gepa`]), `SIMBA`, optimization jobs, and
/// `PyRandom` (CPython's `random.Random`, so seeded choices match DSPy's).
pub use dspex_runtime::optimize;

/// Retrieval: the [`retrieve::Retriever`] trait, the `Retrieve` step and search tool, JSONL
/// corpora, the embedded BM25 index (feature `bm25`), embeddings and hybrid retrievers, and a
/// ColBERTv2 client.
pub use dspex_runtime::retrieve;

/// Cancellation: [`cancel::CancelToken`], what an optimization job and an `Evaluate` stop on.
pub use dspex_runtime::cancel;

/// Settings: the default LM and adapter, call defaults, the trace of predictor calls and the
/// callbacks, per process and per task.
pub use dspex_runtime::settings;

/// Replaying DSPy's `call` fixtures through dspex ([`replay::replay`]; `dspex replay FILE`).
pub mod replay;

/// Callbacks (DSPy's `BaseCallback`): the [`callback::Callback`] hooks on module, LM, adapter,
/// tool and evaluation calls, with call and parent ids; registered through
/// [`callback::CallbackHandle`] (a bounded queue and a thread per callback, so a slow or
/// panicking callback cannot block or break a call), and the [`callback::TracingCallback`].
pub use dspex_runtime::callback;

/// Telemetry: the `tracing` spans every hop opens (program, module, adapter, LM call, tool,
/// evaluation, optimizer trial, bridge request) with the OpenTelemetry semantic conventions for
/// generative AI as attribute names, the metric names, the content-capture switch, and — with
/// feature `otel` — their export over OTLP (`telemetry::otel`: `init(OtelConfig)`).
pub use dspex_runtime::telemetry;

/// Test helpers (feature `testing`, also on with `cli`): the mock LM server and mock ColBERTv2.
#[cfg(feature = "testing")]
pub use dspex_testing as testing;

/// The usual imports: `use dspex::prelude::*;` brings what a program, its evaluation and its
/// optimization use — signatures and the macros, the modules, the [`LM`](crate::lm::LM) client
/// with [`configure`](crate::settings::configure) / [`with_settings`](crate::settings::with_settings),
/// `Evaluate` and metrics, the optimizers with the [`Optimizer`](crate::optimize::Optimizer) trait
/// their `compile` belongs to, and [`Error`]. It leaves out `Result` (so `std`'s
/// stays the one in scope); write `dspex::Result` where you want it.
///
/// ```
/// use dspex::prelude::*;
///
/// # fn demo() -> Result<(), Error> {
/// // Everything below is named without another import.
/// let lm = LM::builder("openai/gpt-4o-mini").api_base("http://127.0.0.1:8000/v1").build()?;
/// configure(Settings::new().lm(lm));
/// let optimizer = BootstrapFewShot::new().max_bootstrapped_demos(2); // DemoKnobs
/// fn is_an_optimizer(_: &impl Optimizer) {}
/// is_an_optimizer(&optimizer);
/// # let _ = (MIPROv2::new(answer_exact_match()), LabeledFewShot::new(4));
/// # let _ = (GEPA::new(answer_exact_match()), ScoreWithFeedback::new(1.0, "right"));
/// # let _ = SIMBA::new(answer_exact_match()).bsize(16);
/// # Ok(()) }
/// ```
pub mod prelude {
    pub use crate::Error;
    pub use crate::evaluate::{Evaluate, Metric, answer_exact_match, metric_fn};
    pub use crate::lm::LM;
    pub use crate::module::{
        BestOfN, CallConfig, ChainOfThought, ExecuteToolCalls, MultiChainComparison, Predict,
        ReAct, Reasoned, Refine, StreamItem, StreamOptions, Tool, majority,
    };
    pub use crate::optimize::{
        BootstrapFewShot, BootstrapFewShotWithRandomSearch, DemoKnobs, Ensemble, GEPA, InferRules,
        LabeledFewShot, MIPROv2, Optimizer, SIMBA, ScoreWithFeedback,
    };
    #[cfg(feature = "bm25")]
    pub use crate::retrieve::Bm25Index;
    pub use crate::retrieve::{Passage, Retrieve, Retriever};
    pub use crate::settings::{Settings, configure, with_settings};
    pub use crate::{
        Audio, Code, DynSignature, Either, Example, File, History, Image, LiteralEnum, Module,
        Prediction, PredictorParams, Program, ProgramExt, Reasoning, Signature, SignatureType,
        ToolCalls, branch, branch_either, fan_out, program_fn, sig, signature, tool, tools,
    };
}

/// What generated code needs. Not public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use dspex_runtime::module::Tool;
    pub use dspex_runtime::signature::model_schema;
    pub use dspex_runtime::types::{Audio, Code, File, History, Image, Reasoning, ToolCalls, lang};
    pub use dspex_runtime::{
        DynSignature, FieldRole, FieldSpec, LiteralValue, Module, PredictorParams, Signature,
        SignatureType, TypeSpec, program::StateError, program::join_path,
    };
    pub use schemars;
    pub use serde;
    pub use serde_json;
    pub use std::boxed::Box;
    pub use std::collections::{BTreeMap, HashMap};
    pub use std::option::Option;
    pub use std::result::Result;
    pub use std::string::String;
    pub use std::sync::OnceLock;
    pub use std::vec;
    pub use std::vec::Vec;

    use std::marker::PhantomData;

    /// Chooses how to describe a field type by autoref specialization: a type implementing
    /// [`SignatureType`] is described by it, a type deriving `schemars::JsonSchema` is a model,
    /// and any other type gets one error naming what it needs. Generated code calls
    /// `(&&Probe::<T>::new()).__dspex_kind().spec::<T>()`. The last path requires
    /// [`NotAFieldType`], which nothing implements: its error carries dspex's message and no list
    /// of rustc's candidate types (which would change whenever a type is added anywhere).
    pub struct Probe<T: ?Sized>(PhantomData<T>);

    // Copy, so the last (by-value) path of the specialization can take it from behind `&`.
    impl<T: ?Sized> Clone for Probe<T> {
        fn clone(&self) -> Self {
            *self
        }
    }

    impl<T: ?Sized> Copy for Probe<T> {}

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
    /// The field type is neither.
    pub struct NeitherKind;

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

    impl<T: schemars::JsonSchema + ?Sized> ViaModel for &Probe<T> {
        fn __dspex_kind(self) -> ModelKind {
            ModelKind
        }
    }

    pub trait ViaNeither {
        fn __dspex_kind(self) -> NeitherKind;
    }

    impl<T: ?Sized> ViaNeither for Probe<T> {
        fn __dspex_kind(self) -> NeitherKind {
            NeitherKind
        }
    }

    impl BuiltinKind {
        pub fn spec<T: SignatureType + ?Sized>(self) -> TypeSpec {
            T::type_spec()
        }
    }

    impl ModelKind {
        pub fn spec<T: schemars::JsonSchema>(self) -> TypeSpec {
            TypeSpec::Model {
                name: T::schema_name().into_owned(),
                schema: model_schema::<T>(),
            }
        }
    }

    impl NeitherKind {
        pub fn spec<T: NotAFieldType + ?Sized>(self) -> TypeSpec {
            unreachable!("`NotAFieldType` has no implementations")
        }
    }

    /// Implemented by nothing: the bound that fails, with dspex's message, for a field type that
    /// is neither built in nor a model.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be a signature field type",
        label = "this type is neither built in nor a model",
        note = "derive `serde::Serialize`, `serde::Deserialize` and `schemars::JsonSchema` for a struct, `LiteralEnum` for an enum of choices, or use String, bool, integers, floats, Vec, Option or HashMap/BTreeMap<String, _>"
    )]
    pub trait NotAFieldType {}

    /// Chooses how `#[derive(Module)]` visits a field, by autoref specialization as [`Probe`]
    /// does: through [`Module`] when the field's type implements it, else through a path
    /// requiring [`NotAModule`], which nothing implements — so the error carries dspex's message
    /// and no list of rustc's candidate types. Generated code calls
    /// `(&ModuleProbe::<T>::new()).__dspex_module().visit(&self.field, …)`.
    pub struct ModuleProbe<T: ?Sized>(PhantomData<T>);

    // Copy, so the last (by-value) path of the specialization can take it from behind `&`.
    impl<T: ?Sized> Clone for ModuleProbe<T> {
        fn clone(&self) -> Self {
            *self
        }
    }

    impl<T: ?Sized> Copy for ModuleProbe<T> {}

    impl<T: ?Sized> ModuleProbe<T> {
        #[allow(clippy::new_without_default)]
        pub const fn new() -> Self {
            ModuleProbe(PhantomData)
        }
    }

    /// The field's type implements [`Module`].
    pub struct IsModule;
    /// It does not.
    pub struct IsNotModule;

    pub trait ViaModule {
        fn __dspex_module(self) -> IsModule;
    }

    impl<T: Module + ?Sized> ViaModule for &ModuleProbe<T> {
        fn __dspex_module(self) -> IsModule {
            IsModule
        }
    }

    pub trait ViaNotModule {
        fn __dspex_module(self) -> IsNotModule;
    }

    impl<T: ?Sized> ViaNotModule for ModuleProbe<T> {
        fn __dspex_module(self) -> IsNotModule {
            IsNotModule
        }
    }

    impl IsModule {
        pub fn visit<'a, T: Module + ?Sized>(
            self,
            field: &'a T,
            path: &str,
            visit: &mut dyn FnMut(String, &'a PredictorParams),
        ) {
            field.visit_predictors(path, visit);
        }

        pub fn visit_mut<'a, T: Module + ?Sized>(
            self,
            field: &'a mut T,
            path: &str,
            visit: &mut dyn FnMut(String, &'a mut PredictorParams),
        ) {
            field.visit_predictors_mut(path, visit);
        }

        pub fn visit_other<T: Module + ?Sized>(
            self,
            field: &T,
            path: &str,
            visit: &mut dyn FnMut(String, serde_json::Value),
        ) {
            field.visit_other_state(path, visit);
        }

        pub fn load_other<T: Module + ?Sized>(
            self,
            field: &mut T,
            path: &str,
            state: &serde_json::Map<String, serde_json::Value>,
            apply: bool,
        ) -> Result<(), StateError> {
            field.load_other_state(path, state, apply)
        }
    }

    // Only `visit` carries the failing bound, so a field gets one error, not one per method.
    impl IsNotModule {
        pub fn visit<T: NotAModule + ?Sized, V>(self, _: &T, _: &str, _: V) {}

        pub fn visit_mut<T: ?Sized, V>(self, _: &mut T, _: &str, _: V) {}

        pub fn visit_other<T: ?Sized, V>(self, _: &T, _: &str, _: V) {}

        pub fn load_other<T: ?Sized, S, A>(
            self,
            _: &mut T,
            _: &str,
            _: S,
            _: A,
        ) -> Result<(), StateError> {
            Ok(())
        }
    }

    /// Implemented by nothing: the bound that fails, with dspex's message, for a
    /// `#[derive(Module)]` field whose type is not a [`Module`].
    #[diagnostic::on_unimplemented(
        message = "`{Self}` does not expose predictors to optimizers",
        label = "this field's type does not implement `Module`",
        note = "mark fields that hold no predictors with `#[module(skip)]`"
    )]
    pub trait NotAModule {}

    /// The value a `LiteralEnum` variant serializes to (serde renames included); `fallback` is
    /// the variant name, used if it does not serialize to a string.
    pub fn literal_of<T: serde::Serialize>(value: &T, fallback: &str) -> LiteralValue {
        match serde_json::to_value(value) {
            Ok(serde_json::Value::String(s)) => LiteralValue::Str(s),
            _ => LiteralValue::Str(fallback.to_string()),
        }
    }
}

/// The README's Rust blocks, compiled and run as doctests so the tour stays true. They use the
/// mock LM server, the BM25 index and the Redis tier, so they run when those features are on
/// (as in the workspace's test run, where the tests crate turns them on).
#[cfg(all(doctest, feature = "testing", feature = "bm25", feature = "redis"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
