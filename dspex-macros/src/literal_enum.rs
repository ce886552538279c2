//! `#[derive(LiteralEnum)]`: a unit-variant enum as a `Literal[...]` field type.

use crate::ctxt::Ctxt;
use crate::krate::facade_path;
use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields};

pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(i) => i,
        Err(e) => return e.to_compile_error(),
    };
    let mut cx = Ctxt::default();
    let k = facade_path(None);
    let p = quote!(#k::__private);
    let ident = &input.ident;
    let Data::Enum(data) = &input.data else {
        cx.error_spanned_by(
            ident,
            "#[derive(LiteralEnum)] goes on an enum whose variants have no fields",
        );
        return cx.into_compile_errors();
    };
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(&input.generics, "a LiteralEnum cannot be generic");
    }
    if data.variants.is_empty() {
        cx.error_spanned_by(ident, "a LiteralEnum needs at least one variant");
    }
    let mut values = Vec::new();
    for v in &data.variants {
        if !matches!(v.fields, Fields::Unit) {
            cx.error_spanned_by(
                &v.fields,
                format!(
                    "variant `{}` has fields; LiteralEnum variants are plain choices",
                    v.ident
                ),
            );
            continue;
        }
        let name = &v.ident;
        let fallback = name.to_string();
        values.push(quote!(#p::literal_of(&#ident::#name, #fallback)));
    }
    let errors = cx.into_compile_errors();
    quote! {
        #errors
        #[automatically_derived]
        impl #p::SignatureType for #ident {
            fn type_spec() -> #p::TypeSpec {
                #p::TypeSpec::Literal(#p::vec![#(#values),*])
            }
        }
    }
}
