//! Procedural macros of dspex. Use them through the `dspex` crate, which re-exports them and
//! provides the paths their generated code needs; depending on this crate directly is not
//! supported.
//!
//! Each entry point is thin: parse → check (one error context that collects every mistake) →
//! expand, with the expansion written at the `proc_macro2` level so tests can snapshot it.

mod ctxt;
mod krate;
mod literal_enum;
mod module;
mod signature;
mod tool;

use proc_macro::TokenStream;

/// Declares a signature. See the `dspex` crate for the full documentation.
#[proc_macro_attribute]
pub fn signature(args: TokenStream, item: TokenStream) -> TokenStream {
    signature::attribute(args.into(), item.into()).into()
}

/// Declares a signature in one line: `sig!(pub QA: "question -> answer");`. See the `dspex` crate.
#[proc_macro]
pub fn sig(input: TokenStream) -> TokenStream {
    signature::function_like(input.into()).into()
}

/// Implements `Module` for a struct of modules. See the `dspex` crate.
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    module::derive(input.into()).into()
}

/// Implements `SignatureType` (as `Literal[...]`) and serde's traits for a unit-variant enum.
/// See the `dspex` crate.
#[proc_macro_derive(LiteralEnum, attributes(literal))]
pub fn derive_literal_enum(input: TokenStream) -> TokenStream {
    literal_enum::derive(input.into()).into()
}

/// Turns a function into a ReAct tool (`<name>_tool()`). See the `dspex` crate.
#[proc_macro_attribute]
pub fn tool(args: TokenStream, item: TokenStream) -> TokenStream {
    tool::attribute(args.into(), item.into()).into()
}

/// `tools![calculator, lookup]`: the tools of `#[tool]` functions named as DSPy users name
/// them, as an array. See the `dspex` crate.
#[proc_macro]
pub fn tools(input: TokenStream) -> TokenStream {
    tool::list(input.into()).into()
}

#[cfg(test)]
mod snapshots;
