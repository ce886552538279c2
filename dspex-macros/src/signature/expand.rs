//! Code generation for a checked [`Model`].

use super::parse::{FieldModel, FieldType, Model};
use crate::krate::facade_path;
use dspex_grammar::{FloatKind, LiteralValue, MapKind, Side, TypeExpr, TypeKind};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;

/// Generates the marker struct, `…Input`, `…Output`, enums for string-form `Literal[...]` fields,
/// and `impl Signature`.
pub(crate) fn expand(model: &Model) -> TokenStream {
    let k = facade_path(model.crate_path.as_ref());
    let p = quote!(#k::__private);
    let Model {
        attrs, vis, ident, ..
    } = model;
    let input_ident = format_ident!("{}Input", ident);
    let output_ident = format_ident!("{}Output", ident);

    let mut cx = TypeCx {
        p: p.clone(),
        sig: ident,
        vis,
        enums: Vec::new(),
        enum_names: Vec::new(),
    };
    let mut all_builtin = true;
    let mut struct_fields = (Vec::new(), Vec::new());
    let mut specs = (Vec::new(), Vec::new());
    for field in &model.fields {
        let generated = cx.field(field);
        all_builtin &= generated.builtin;
        let (fields, spec_list) = match field.side {
            Side::Input => (&mut struct_fields.0, &mut specs.0),
            Side::Output => (&mut struct_fields.1, &mut specs.1),
        };
        fields.push(generated.struct_field);
        spec_list.push(generated.spec);
    }

    let mut derives = vec![
        quote!(::core::fmt::Debug),
        quote!(::core::clone::Clone),
        quote!(#p::serde::Serialize),
        quote!(#p::serde::Deserialize),
    ];
    let user_has = |name: &str| {
        model
            .extra_derives
            .iter()
            .any(|d| d.segments.last().is_some_and(|s| s.ident == name))
    };
    if all_builtin && !user_has("PartialEq") {
        derives.push(quote!(::core::cmp::PartialEq));
    }
    derives.extend(model.extra_derives.iter().map(|d| quote!(#d)));
    let serde_crate = serde_crate_string(&p);

    let (input_fields, output_fields) = struct_fields;
    let (input_specs, output_specs) = specs;
    let instructions = match &model.instructions {
        Some(text) => quote!(#p::Option::Some(#text)),
        None => quote!(#p::Option::None),
    };
    let input_doc = format!(" The input fields of the [`{ident}`] signature.");
    let output_doc = format!(" The output fields of the [`{ident}`] signature.");
    let enums = &cx.enums;
    // A marker without a doc comment gets one, so `missing_docs` stays quiet for `sig!` items.
    let marker_doc = (!attrs.iter().any(|a| a.path().is_ident("doc"))).then(|| {
        let text = format!(" The `{ident}` signature.");
        quote!(#[doc = #text])
    });

    quote! {
        #(#attrs)*
        #marker_doc
        #vis struct #ident;

        #[doc = #input_doc]
        #[derive(#(#derives),*)]
        #[serde(crate = #serde_crate)]
        #vis struct #input_ident {
            #(#input_fields)*
        }

        #[doc = #output_doc]
        #[derive(#(#derives),*)]
        #[serde(crate = #serde_crate)]
        #vis struct #output_ident {
            #(#output_fields)*
        }

        #(#enums)*

        #[automatically_derived]
        impl #p::Signature for #ident {
            type Input = #input_ident;
            type Output = #output_ident;

            fn signature() -> &'static #p::DynSignature {
                static SIGNATURE: #p::OnceLock<#p::DynSignature> = #p::OnceLock::new();
                SIGNATURE.get_or_init(|| {
                    #[allow(unused_imports)]
                    use #p::{ViaModel as _, ViaNeither as _, ViaSignatureType as _};
                    #p::DynSignature::from_parts(
                        #instructions,
                        #p::vec![#(#input_specs),*],
                        #p::vec![#(#output_specs),*],
                    )
                })
            }
        }
    }
}

/// `"::dspex::__private::serde"` for `#[serde(crate = ...)]`.
fn serde_crate_string(p: &TokenStream) -> String {
    quote!(#p::serde).to_string().replace(' ', "")
}

struct Generated {
    struct_field: TokenStream,
    spec: TokenStream,
    builtin: bool,
}

struct TypeCx<'a> {
    p: TokenStream,
    sig: &'a Ident,
    vis: &'a syn::Visibility,
    enums: Vec<TokenStream>,
    enum_names: Vec<String>,
}

impl TypeCx<'_> {
    fn field(&mut self, field: &FieldModel) -> Generated {
        let p = self.p.clone();
        let ident = &field.ident;
        let name = ident.to_string();
        let (ty_tokens, spec, rust_type, builtin) = match &field.ty {
            FieldType::FromString { expr: None, span } => (
                quote_spanned!(*span=> #p::String),
                quote!(#p::TypeSpec::Str),
                "String".to_string(),
                true,
            ),
            FieldType::FromString {
                expr: Some(expr),
                span,
            } => {
                let mut rust_name = expr.rust_name();
                let ty = self.rust_type(expr, *span, &name, &mut rust_name);
                let spec = self.spec(expr, *span);
                (ty, spec, rust_name, expr.kind.is_builtin())
            }
            FieldType::Written { ty, expr } => {
                let span = syn::spanned::Spanned::span(ty);
                let spec = self.spec(expr, span);
                (quote!(#ty), spec, expr.rust_name(), expr.kind.is_builtin())
            }
            FieldType::Generic { ty } => {
                let span = syn::spanned::Spanned::span(ty);
                let spec = quote_spanned!(span=> <#ty as #p::SignatureType>::type_spec());
                let rust_name = quote!(#ty).to_string().replace(' ', "");
                (quote!(#ty), spec, rust_name, false)
            }
        };
        let role = match field.side {
            Side::Input => quote!(#p::FieldRole::Input),
            Side::Output => quote!(#p::FieldRole::Output),
        };
        let desc = field.desc.as_ref().map(|d| quote!(.with_desc(#d)));
        let prefix = field.prefix.as_ref().map(|d| quote!(.with_prefix(#d)));
        let spec = quote! {
            #p::FieldSpec::new(#name, #role, #spec)
                .with_rust_type(#rust_type)
                #desc
                #prefix
        };
        let docs = if !field.docs.is_empty() {
            let docs = &field.docs;
            quote!(#(#docs)*)
        } else {
            let text = match &field.desc {
                Some(d) => d.clone(),
                None => format!(" The `{name}` {} field.", side_word(field.side)),
            };
            quote!(#[doc = #text])
        };
        Generated {
            struct_field: quote! {
                #docs
                pub #ident: #ty_tokens,
            },
            spec,
            builtin,
        }
    }

    /// The Rust type for a string-form field. `rust_name` is the metadata spelling, updated when a
    /// `Literal` becomes a generated enum.
    fn rust_type(
        &mut self,
        expr: &TypeExpr,
        span: Span,
        field: &str,
        rust_name: &mut String,
    ) -> TokenStream {
        let p = &self.p.clone();
        match &expr.kind {
            TypeKind::Str => quote_spanned!(span=> #p::String),
            TypeKind::Bool => quote_spanned!(span=> bool),
            TypeKind::Int(k) => {
                let i = Ident::new(k.rust_name(), span);
                quote!(#i)
            }
            TypeKind::Float(FloatKind::F32) => quote_spanned!(span=> f32),
            TypeKind::Float(_) => quote_spanned!(span=> f64),
            TypeKind::Any => quote_spanned!(span=> #p::serde_json::Value),
            TypeKind::List(t) => {
                let t = self.rust_type(t, span, field, rust_name);
                quote_spanned!(span=> #p::Vec<#t>)
            }
            TypeKind::Optional(t) => {
                let t = self.rust_type(t, span, field, rust_name);
                quote_spanned!(span=> #p::Option<#t>)
            }
            TypeKind::Map(kind, v) => {
                let v = self.rust_type(v, span, field, rust_name);
                match kind {
                    MapKind::HashMap => quote_spanned!(span=> #p::HashMap<#p::String, #v>),
                    _ => quote_spanned!(span=> #p::BTreeMap<#p::String, #v>),
                }
            }
            TypeKind::Literal(values) => {
                let name = self.literal_enum(values, span, field);
                *rust_name = rust_name.replacen("String", &name.to_string(), 1);
                quote!(#name)
            }
            TypeKind::Named(path) => self.named_path(path, span),
        }
    }

    /// The Rust path of a user-named type; `dspy.Image` and its kin are dspex's types.
    fn named_path(&self, path: &[String], span: Span) -> TokenStream {
        if let Some(language) = dspex_grammar::code_type_language(path) {
            return self.code_path(language, span);
        }
        match dspy_custom_type(path) {
            Some(name) => {
                let p = &self.p;
                let name = Ident::new(name, span);
                quote_spanned!(span=> #p::#name)
            }
            None => path_tokens(path, span),
        }
    }

    /// An expression building the field's `TypeSpec`.
    fn spec(&self, expr: &TypeExpr, span: Span) -> TokenStream {
        let p = self.p.clone();
        match &expr.kind {
            TypeKind::Str => quote!(#p::TypeSpec::Str),
            TypeKind::Bool => quote!(#p::TypeSpec::Bool),
            TypeKind::Int(_) => quote!(#p::TypeSpec::Int),
            TypeKind::Float(_) => quote!(#p::TypeSpec::Float),
            TypeKind::Any => quote!(#p::TypeSpec::Any),
            TypeKind::List(t) => {
                let t = self.spec(t, span);
                quote!(#p::TypeSpec::List(#p::Box::new(#t)))
            }
            TypeKind::Optional(t) => {
                let t = self.spec(t, span);
                quote!(#p::TypeSpec::Optional(#p::Box::new(#t)))
            }
            TypeKind::Map(_, v) => {
                let v = self.spec(v, span);
                quote!(#p::TypeSpec::Dict(#p::Box::new(#v)))
            }
            TypeKind::Literal(values) => {
                let lits = values.iter().map(|v| literal_tokens(&p, v));
                quote!(#p::TypeSpec::Literal(#p::vec![#(#lits),*]))
            }
            TypeKind::Named(path) => {
                let path = self.named_path(path, span);
                quote_spanned!(span=> (&&#p::Probe::<#path>::new()).__dspex_kind().spec::<#path>())
            }
        }
    }

    /// Generates `enum {Sig}{Field}` for a string-form `Literal[...]` and returns its name.
    fn literal_enum(&mut self, values: &[LiteralValue], span: Span, field: &str) -> Ident {
        let p = &self.p;
        let base = format!("{}{}", self.sig, upper_camel(field));
        let name = if self.enum_names.contains(&base) {
            format_ident!("{}{}", base, self.enum_names.len(), span = span)
        } else {
            Ident::new(&base, span)
        };
        self.enum_names.push(name.to_string());
        let strings: Vec<String> = values
            .iter()
            .map(|v| match v {
                LiteralValue::Str(s) => s.clone(),
                other => other.python_str(),
            })
            .collect();
        let mut variant_names: Vec<String> = Vec::new();
        for (i, s) in strings.iter().enumerate() {
            let mut v = upper_camel(s);
            if v.is_empty() || v.starts_with(|c: char| c.is_ascii_digit()) {
                v = format!("V{v}");
            }
            if v == "V" || variant_names.contains(&v) || v == "Self" {
                v = format!("V{i}");
            }
            variant_names.push(v);
        }
        let variants = variant_names.iter().zip(&strings).map(|(v, s)| {
            let v = Ident::new(v, span);
            let doc = format!(" `{s}`");
            quote!(#[doc = #doc] #[serde(rename = #s)] #v)
        });
        let arms = variant_names.iter().zip(&strings).map(|(v, s)| {
            let v = Ident::new(v, span);
            quote!(#name::#v => #s)
        });
        let lits = strings
            .iter()
            .map(|s| quote!(#p::LiteralValue::Str(#p::String::from(#s))));
        let doc = format!(
            " The choices of the `{field}` field of [`{}`]: {}.",
            self.sig,
            strings
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let vis = self.vis;
        let serde_crate = serde_crate_string(p);
        self.enums.push(quote! {
            #[doc = #doc]
            #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::marker::Copy, ::core::cmp::PartialEq, ::core::cmp::Eq, ::core::hash::Hash, #p::serde::Serialize, #p::serde::Deserialize)]
            #[serde(crate = #serde_crate)]
            #vis enum #name {
                #(#variants),*
            }

            impl #name {
                /// The value as the LM writes it.
                pub fn as_str(&self) -> &'static str {
                    match self {
                        #(#arms),*
                    }
                }
            }

            impl ::core::fmt::Display for #name {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.write_str(self.as_str())
                }
            }

            #[automatically_derived]
            impl #p::SignatureType for #name {
                fn type_spec() -> #p::TypeSpec {
                    #p::TypeSpec::Literal(#p::vec![#(#lits),*])
                }
            }
        });
        name
    }
}

fn side_word(side: Side) -> &'static str {
    match side {
        Side::Input => "input",
        Side::Output => "output",
    }
}

fn literal_tokens(p: &TokenStream, v: &LiteralValue) -> TokenStream {
    match v {
        LiteralValue::Str(s) => quote!(#p::LiteralValue::Str(#p::String::from(#s))),
        LiteralValue::Int(i) => quote!(#p::LiteralValue::Int(#i)),
        LiteralValue::Bool(b) => quote!(#p::LiteralValue::Bool(#b)),
        LiteralValue::None => quote!(#p::LiteralValue::None),
    }
}

/// A user type path as tokens; segments were checked to be identifiers when parsing.
fn path_tokens(path: &[String], span: Span) -> TokenStream {
    let segments = path.iter().map(|s| Ident::new(s, span));
    quote!(#(#segments)::*)
}

impl TypeCx<'_> {
    /// `Code_python` (DSPy's `Code["python"]`): `Code<lang::Python>` for the languages dspex
    /// ships a marker for, else `Code<Haskell>` — a marker the user declares in scope.
    fn code_path(&self, language: &str, span: Span) -> TokenStream {
        let p = &self.p;
        let Some(marker) = dspex_grammar::code_language_marker(language) else {
            let msg = format!(
                "no Rust marker type can be named after the code language `{language}`; declare a `dspex::Language` marker and use the field form (`code: Code<MyLanguage>`)"
            );
            return quote_spanned!(span=> ::core::compile_error!(#msg));
        };
        let ident = Ident::new(&marker, span);
        if KNOWN_CODE_LANGUAGES.contains(&language) {
            quote_spanned!(span=> #p::Code<#p::lang::#ident>)
        } else {
            quote_spanned!(span=> #p::Code<#ident>)
        }
    }
}

/// The languages `dspex::lang` has markers for (kept in step with `dspex_core::types::lang`).
const KNOWN_CODE_LANGUAGES: [&str; 10] = [
    "python",
    "rust",
    "javascript",
    "typescript",
    "java",
    "go",
    "c",
    "cpp",
    "sql",
    "bash",
];

/// DSPy's spelling of its own types, `dspy.Image` (`dspy.Audio`, `dspy.File`, `dspy.History`,
/// bare `dspy.Code`, `dspy.Reasoning`, `dspy.Tool` — dspex's callable `Tool` — and
/// `dspy.ToolCalls`):
/// the name of dspex's type, which the generated code reaches through the hidden path. Plain
/// `Image` is left to the user's scope (the prelude brings it), so a user type of that name wins.
fn dspy_custom_type(path: &[String]) -> Option<&'static str> {
    match path {
        [module, name] if module == "dspy" => [
            "Image",
            "Audio",
            "File",
            "History",
            "Code",
            "Reasoning",
            "Tool",
            "ToolCalls",
        ]
        .into_iter()
        .find(|custom| name == custom),
        _ => None,
    }
}

/// `search_query` → `SearchQuery`, `very negative!` → `VeryNegative`.
fn upper_camel(s: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            if upper {
                out.push(c.to_ascii_uppercase());
            } else {
                out.push(c);
            }
            upper = false;
        } else {
            upper = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::upper_camel;

    #[test]
    fn camel_case() {
        assert_eq!(upper_camel("search_query"), "SearchQuery");
        assert_eq!(upper_camel("very negative!"), "VeryNegative");
        assert_eq!(upper_camel("positive"), "Positive");
        assert_eq!(upper_camel("élan"), "Lan");
    }
}
