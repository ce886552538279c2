//! The path generated code uses to reach the facade, so users need no other dependency and a
//! renamed `dspex` dependency still works.

use proc_macro_crate::{FoundCrate, crate_name};
use proc_macro2::{Span, TokenStream};
use quote::quote;

/// `::dspex`, or `::whatever_the_user_renamed_it_to`; `override_path` (from `crate = path`) wins.
pub(crate) fn facade_path(override_path: Option<&syn::Path>) -> TokenStream {
    if let Some(path) = override_path {
        return quote!(#path);
    }
    match crate_name("dspex") {
        Ok(FoundCrate::Name(name)) if name != "dspex" => {
            let ident = syn::Ident::new(&name, Span::call_site());
            quote!(::#ident)
        }
        // `Itself` covers the facade's own doctests and tests, which see it as `dspex` too.
        _ => quote!(::dspex),
    }
}
