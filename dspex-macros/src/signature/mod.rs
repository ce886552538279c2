//! `#[signature]` and `sig!`: parse → check (one error context) → expand.

mod expand;
mod parse;

use crate::ctxt::Ctxt;
use proc_macro2::TokenStream;

/// The attribute form, at the proc_macro2 level (what the snapshot tests call).
pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let model = parse::from_attribute(&mut cx, args, item);
    finish(cx, model)
}

/// The function-like form, at the proc_macro2 level.
pub(crate) fn function_like(input: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let model = parse::from_function_like(&mut cx, input);
    finish(cx, model)
}

/// The expansion of whatever was understood, plus every error: the structs and impl are emitted
/// even when something was wrong, so code using them does not fail a second time.
fn finish(cx: Ctxt, model: Option<parse::Model>) -> TokenStream {
    let mut out = cx.into_compile_errors();
    if let Some(model) = model {
        out.extend(expand::expand(&model));
    }
    out
}
