//! The lower layers of dspex, which know nothing of LMs or running programs: signatures
//! ([`signature`]), examples and predictions ([`example`]), the chat messages and response
//! formats that cross to the LM layer ([`types`]), the adapters that turn a signature and its
//! inputs into messages and an LM's answer back into fields ([`adapter`]), and the ports of
//! Python behaviour those need for byte-exact parity with DSPy (`pycompat`).
//!
//! Being its own crate is what keeps the rule: the adapters use only the data types of the LM
//! layer, never the client (`dspex-lm` depends on this crate, not the other way round), and
//! nothing here can name the programs' top-level `Error` — each layer owns its error type.
//! Users depend on the `dspex` facade, which re-exports all of it at the same paths
//! (`dspex::adapter`, `dspex::signature`, …).

pub mod adapter;
pub mod example;
#[doc(hidden)]
pub mod pycompat;
pub mod signature;
pub mod types;

pub use example::{Example, ExampleError, Prediction};
pub use signature::{
    CustomType, DynSignature, FieldRole, FieldSpec, LiteralValue, Signature, SignatureError,
    SignatureType, TypeSpec,
};
