//! `#[derive(Module)]`: exposes every predictor inside a struct of modules by DSPy's name.

use crate::ctxt::{Ctxt, unknown_key_message};
use crate::krate::facade_path;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Index};

pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(i) => i,
        Err(e) => return e.to_compile_error(),
    };
    let mut cx = Ctxt::default();
    let p = {
        let k = facade_path(None);
        quote!(#k::__private)
    };
    let fields = match &input.data {
        Data::Struct(s) => &s.fields,
        _ => {
            cx.error_spanned_by(
                &input.ident,
                "#[derive(Module)] goes on a struct whose fields are modules",
            );
            return cx.into_compile_errors();
        }
    };
    let mut visits = Vec::new();
    let mut visits_mut = Vec::new();
    let mut others = Vec::new();
    let mut loads = Vec::new();
    let mut bounds = Vec::new();
    for (i, field) in fields.iter().enumerate() {
        if is_skipped(&mut cx, field) {
            continue;
        }
        let (access, name) = match &field.ident {
            Some(ident) => (
                quote!(#ident),
                ident.to_string().trim_start_matches("r#").to_string(),
            ),
            None => {
                let index = Index::from(i);
                (quote!(#index), i.to_string())
            }
        };
        let ty = &field.ty;
        // Spanned at the field's type, so "does not implement `Module`" points at the field.
        let span = ty.span();
        // Through `ModuleProbe`: a field whose type is not a `Module` gets dspex's message and no
        // list of rustc's candidate types.
        let probe = quote_spanned!(span=> (&#p::ModuleProbe::<#ty>::new()).__dspex_module());
        visits.push(quote_spanned! {span=>
            #probe.visit(&self.#access, &#p::join_path(path, #name), visit);
        });
        visits_mut.push(quote_spanned! {span=>
            #probe.visit_mut(&mut self.#access, &#p::join_path(path, #name), visit);
        });
        others.push(quote_spanned! {span=>
            #probe.visit_other(&self.#access, &#p::join_path(path, #name), visit);
        });
        loads.push(quote_spanned! {span=>
            #probe.load_other(&mut self.#access, &#p::join_path(path, #name), state, apply)?;
        });
        bounds.push(quote!(#ty: #p::Module));
    }
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut predicates: Vec<TokenStream> = where_clause
        .map(|w| w.predicates.iter().map(|p| quote!(#p)).collect())
        .unwrap_or_default();
    if !input.generics.params.is_empty() {
        predicates.extend(bounds);
    }
    let errors = cx.into_compile_errors();
    quote! {
        #errors
        #[automatically_derived]
        impl #impl_generics #p::Module for #ident #ty_generics where #(#predicates),* {
            fn visit_predictors<'__dspex_a>(
                &'__dspex_a self,
                path: &str,
                visit: &mut dyn FnMut(#p::String, &'__dspex_a #p::PredictorParams),
            ) {
                #[allow(unused_imports)]
                use #p::{ViaModule as _, ViaNotModule as _};
                #(#visits)*
            }

            fn visit_predictors_mut<'__dspex_a>(
                &'__dspex_a mut self,
                path: &str,
                visit: &mut dyn FnMut(#p::String, &'__dspex_a mut #p::PredictorParams),
            ) {
                #[allow(unused_imports)]
                use #p::{ViaModule as _, ViaNotModule as _};
                #(#visits_mut)*
            }

            fn visit_other_state(
                &self,
                path: &str,
                visit: &mut dyn FnMut(#p::String, #p::serde_json::Value),
            ) {
                #[allow(unused_imports)]
                use #p::{ViaModule as _, ViaNotModule as _};
                let _ = (&path, &visit);
                #(#others)*
            }

            fn load_other_state(
                &mut self,
                path: &str,
                state: &#p::serde_json::Map<#p::String, #p::serde_json::Value>,
                apply: bool,
            ) -> ::core::result::Result<(), #p::StateError> {
                #[allow(unused_imports)]
                use #p::{ViaModule as _, ViaNotModule as _};
                let _ = (&path, &state, &apply);
                #(#loads)*
                ::core::result::Result::Ok(())
            }
        }
    }
}

/// `#[module(skip)]` marks a field that holds no predictors.
fn is_skipped(cx: &mut Ctxt, field: &syn::Field) -> bool {
    let mut skip = false;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("module")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                skip = true;
                Ok(())
            } else {
                let key = meta
                    .path
                    .get_ident()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                Err(meta.error(unknown_key_message("module option", &key, &["skip"])))
            }
        });
        if let Err(e) = result {
            cx.syn_error(e);
            // A mistyped option was most likely `skip`; skipping avoids a second error saying the
            // field's type is not a `Module`.
            skip = true;
        }
    }
    skip
}
