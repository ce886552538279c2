//! The dspex engine: signatures, examples and predictions, typed programs — and, as later issues land,
//! adapters, LM clients, evaluation, optimizers, retrieval and the Python bridge.
//!
//! Users normally depend on the `dspex` facade crate, which re-exports this crate and adds the
//! macros. Everything here also works without the macros, through [`DynSignature`].

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzzing/mod.rs"]
pub mod __fuzz;
pub mod adapter;
#[cfg(all(unix, feature = "bridge"))]
pub mod bridge;
pub mod callback;
pub mod cancel;
pub mod error;
pub mod evaluate;
#[cfg(all(unix, feature = "bridge"))]
mod flag;
pub mod module;
pub mod optimize;
pub mod program;
pub mod retrieve;
pub mod settings;
pub mod telemetry;

use dspex_core::pycompat;
pub use dspex_core::{example, signature, types};
pub use dspex_lm as lm;

pub use error::{Error, Result};
pub use example::{Example, ExampleError, Prediction};
pub use program::{FnProgram, Map, Module, PredictorParams, Program, ProgramExt, Then, program_fn};
pub use signature::{
    DynSignature, FieldRole, FieldSpec, LiteralValue, Signature, SignatureError, SignatureType,
    TypeSpec,
};
