//! Signatures: what a step consumes and produces.
//!
//! - [`DynSignature`] — the one value every adapter and optimizer sees: instructions plus ordered
//!   [`FieldSpec`]s. Built at run time from a string (`DynSignature::parse`) or generated at compile
//!   time by `#[signature]`.
//! - [`Signature`] — the typed face of a signature: its `Input` and `Output` structs and its
//!   `DynSignature`.
//! - [`TypeSpec`] / [`SignatureType`] — a field's type as DSPy sees it (`list[str]`, `Literal[...]`,
//!   a model with its JSON schema) and the trait that maps Rust types to it.

mod dynamic;
mod error;
mod schema;
mod spec;
mod typed;

pub use dynamic::DynSignature;
pub use error::SignatureError;
pub use schema::{model_schema, pydantic_title};
pub use spec::{
    CodeLanguage, CodeLanguageError, CustomType, FieldRole, FieldSpec, LiteralValue, TypeSpec,
};
pub use typed::{Signature, SignatureType};
