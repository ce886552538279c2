//! Parsing `#[signature(...)]` / `sig!(...)` input into a [`Model`], collecting every error.

use crate::ctxt::{Ctxt, unknown_key_message};
use dspex_grammar::{ParseError, Side, TypeExpr, TypeKind};
use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Fields, Ident, ItemStruct, LitStr, Meta, Token, Visibility};

/// Everything the expansion needs, in one checked shape.
pub(crate) struct Model {
    /// Attributes kept on the marker struct (doc comments, cfgs, …).
    pub(crate) attrs: Vec<Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) ident: Ident,
    /// Explicit or doc-comment instructions; `None` means DSPy's default.
    pub(crate) instructions: Option<String>,
    pub(crate) fields: Vec<FieldModel>,
    pub(crate) crate_path: Option<syn::Path>,
    pub(crate) extra_derives: Vec<syn::Path>,
}

pub(crate) struct FieldModel {
    pub(crate) ident: Ident,
    pub(crate) side: Side,
    pub(crate) desc: Option<String>,
    pub(crate) prefix: Option<String>,
    /// Doc comments to carry onto the generated field.
    pub(crate) docs: Vec<Attribute>,
    /// The field's type: the user's tokens (field form) or one built from the string.
    pub(crate) ty: FieldType,
}

pub(crate) enum FieldType {
    /// From a signature string; `span` is the string literal.
    FromString { expr: Option<TypeExpr>, span: Span },
    /// Written by the user in the field form.
    Written { ty: Box<syn::Type>, expr: TypeExpr },
    /// Written in the field form with a generic dspex type the grammar does not spell
    /// (`Code<lang::Python>`, `Option<Code<MyLanguage>>`): its DSPy type comes from its
    /// `SignatureType` impl.
    Generic { ty: Box<syn::Type> },
}

/// Whether a field type holds `Code<…>` (DSPy's `Code["python"]` in Rust spelling), at any depth.
fn holds_generic_code(ty: &syn::Type) -> bool {
    let syn::Type::Path(path) = ty else {
        return false;
    };
    path.path.segments.iter().any(|seg| {
        let syn::PathArguments::AngleBracketed(args) = &seg.arguments else {
            return false;
        };
        seg.ident == "Code"
            || args.args.iter().any(|a| match a {
                syn::GenericArgument::Type(t) => holds_generic_code(t),
                _ => false,
            })
    })
}

/// Arguments of `#[signature(...)]` after the optional string.
#[derive(Default)]
struct Args {
    string: Option<LitStr>,
    instructions: Option<LitStr>,
    crate_path: Option<syn::Path>,
    derives: Vec<syn::Path>,
}

const SIGNATURE_KEYS: &[&str] = &["instructions", "crate", "derive"];
const FIELD_KEYS: &[&str] = &["desc", "prefix"];

fn parse_args(cx: &mut Ctxt, tokens: TokenStream) -> Args {
    let mut args = Args::default();
    let metas = match syn::parse::Parser::parse2(
        Punctuated::<ArgItem, Token![,]>::parse_terminated,
        tokens,
    ) {
        Ok(m) => m,
        Err(e) => {
            cx.syn_error(e);
            return args;
        }
    };
    for (i, item) in metas.into_iter().enumerate() {
        match item {
            ArgItem::Str(s) if i == 0 => args.string = Some(s),
            ArgItem::Str(s) => cx.error_spanned_by(
                &s,
                "the signature string must come first: #[signature(\"inputs -> outputs\", ...)]",
            ),
            ArgItem::Meta(meta) => parse_arg_meta(cx, &mut args, *meta),
        }
    }
    args
}

enum ArgItem {
    Str(LitStr),
    Meta(Box<Meta>),
}

impl Parse for ArgItem {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(LitStr) {
            Ok(ArgItem::Str(input.parse()?))
        } else if input.peek(Token![crate]) {
            // `crate = path`: `crate` is a keyword, so parse it by hand.
            let kw: Token![crate] = input.parse()?;
            let eq: Token![=] = input.parse()?;
            let value: Expr = input.parse()?;
            let path = syn::Path::from(Ident::new("crate", kw.span));
            Ok(ArgItem::Meta(Box::new(Meta::NameValue(
                syn::MetaNameValue {
                    path,
                    eq_token: eq,
                    value,
                },
            ))))
        } else {
            Ok(ArgItem::Meta(Box::new(input.parse()?)))
        }
    }
}

fn parse_arg_meta(cx: &mut Ctxt, args: &mut Args, meta: Meta) {
    let key = meta
        .path()
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_default();
    match (key.as_str(), &meta) {
        ("instructions", Meta::NameValue(nv)) => match lit_str(&nv.value) {
            Some(s) => args.instructions = Some(s),
            None => cx.error_spanned_by(&nv.value, "`instructions` takes a string literal"),
        },
        ("crate", Meta::NameValue(nv)) => {
            let path = match &nv.value {
                Expr::Path(p) => Some(p.path.clone()),
                other => lit_str(other).and_then(|s| s.parse::<syn::Path>().ok()),
            };
            match path {
                Some(p) => args.crate_path = Some(p),
                None => {
                    cx.error_spanned_by(&nv.value, "`crate` takes a path, e.g. `crate = my_dspex`")
                }
            }
        }
        ("derive", Meta::List(list)) => {
            match list.parse_args_with(Punctuated::<syn::Path, Token![,]>::parse_terminated) {
                Ok(paths) => args.derives.extend(paths),
                Err(e) => cx.syn_error(e),
            }
        }
        (k, _) if SIGNATURE_KEYS.contains(&k) => cx.error_spanned_by(
            &meta,
            "expected `instructions = \"...\"`, `crate = path` or `derive(Trait, ...)`",
        ),
        _ => cx.error_spanned_by(
            meta.path(),
            unknown_key_message("signature option", &key, SIGNATURE_KEYS),
        ),
    }
}

fn lit_str(expr: &Expr) -> Option<LitStr> {
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Some(s.clone()),
        _ => None,
    }
}

/// `#[signature(args)] item`.
pub(crate) fn from_attribute(cx: &mut Ctxt, args: TokenStream, item: TokenStream) -> Option<Model> {
    let args = parse_args(cx, args);
    let item: ItemStruct = match syn::parse2(item.clone()) {
        Ok(s) => s,
        Err(_) => {
            let message = "#[signature] goes on a struct: `#[signature(\"question -> answer\")] struct QA;` or a struct with #[input]/#[output] fields";
            // Point at `enum Name` (or `union Name`, `fn name`) rather than at the attribute.
            let what = match syn::parse2::<syn::Item>(item) {
                Ok(syn::Item::Enum(e)) => Some((e.enum_token.to_token_stream(), e.ident)),
                Ok(syn::Item::Union(u)) => Some((u.union_token.to_token_stream(), u.ident)),
                Ok(syn::Item::Fn(f)) => Some((f.sig.fn_token.to_token_stream(), f.sig.ident)),
                _ => None,
            };
            match what {
                Some((keyword, name)) => {
                    cx.error_spanned_by(quote::quote!(#keyword #name), message)
                }
                None => cx.error_at(Span::call_site(), message),
            }
            return None;
        }
    };
    Some(model(cx, args, item))
}

/// `sig!(#[attrs] vis Name: "inputs -> outputs", key = value, ...)`.
pub(crate) fn from_function_like(cx: &mut Ctxt, input: TokenStream) -> Option<Model> {
    let parsed: SigInput = match syn::parse2(input) {
        Ok(p) => p,
        Err(e) => {
            cx.syn_error(e);
            return None;
        }
    };
    let mut args = Args {
        string: Some(parsed.string),
        ..Args::default()
    };
    for meta in parsed.options {
        parse_arg_meta(cx, &mut args, meta);
    }
    let item = ItemStruct {
        attrs: parsed.attrs,
        vis: parsed.vis,
        struct_token: Token![struct](parsed.ident.span()),
        ident: parsed.ident,
        generics: syn::Generics::default(),
        fields: Fields::Unit,
        semi_token: Some(Token![;](Span::call_site())),
    };
    Some(model(cx, args, item))
}

struct SigInput {
    attrs: Vec<Attribute>,
    vis: Visibility,
    ident: Ident,
    string: LitStr,
    options: Vec<Meta>,
}

impl Parse for SigInput {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let ident: Ident = input.parse().map_err(|e| {
            syn::Error::new(e.span(), "expected `Name: \"inputs -> outputs\"`, e.g. `sig!(pub QA: \"question -> answer\");`")
        })?;
        input.parse::<Token![:]>().map_err(|e| {
            syn::Error::new(e.span(), "expected `:` between the name and the signature string, e.g. `sig!(pub QA: \"question -> answer\");`")
        })?;
        let string: LitStr = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected the signature string, e.g. \"question -> answer\"",
            )
        })?;
        let mut options = Vec::new();
        while input.parse::<Option<Token![,]>>()?.is_some() {
            if input.is_empty() {
                break;
            }
            if input.peek(Token![crate]) {
                match input.parse::<ArgItem>()? {
                    ArgItem::Meta(m) => options.push(*m),
                    ArgItem::Str(s) => return Err(syn::Error::new(s.span(), "unexpected string")),
                }
            } else {
                options.push(input.parse()?);
            }
        }
        if !input.is_empty() {
            return Err(input.error("expected `,` followed by `instructions = \"...\"`, `crate = path` or `derive(...)`"));
        }
        Ok(SigInput {
            attrs,
            vis,
            ident,
            string,
            options,
        })
    }
}

fn model(cx: &mut Ctxt, args: Args, item: ItemStruct) -> Model {
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        let what = if item.generics.lifetimes().next().is_some() {
            "lifetimes"
        } else {
            "generics"
        };
        cx.error_spanned_by(
            &item.generics,
            format!("a signature struct cannot have {what}: it is a marker type, and its fields become the `{}Input`/`{}Output` structs", item.ident, item.ident),
        );
    }
    let docs: Vec<&Attribute> = item
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .collect();
    let instructions = match &args.instructions {
        Some(s) => Some(s.value()),
        None if !docs.is_empty() => Some(doc_text(&docs)),
        None => None,
    };
    let fields = match (&args.string, &item.fields) {
        (Some(s), Fields::Unit) => fields_from_string(cx, s),
        (Some(s), Fields::Named(named)) if named.named.is_empty() => fields_from_string(cx, s),
        (Some(s), fields) => {
            cx.error_spanned_by(
                fields,
                format!(
                    "a struct with a signature string must be a unit struct (`struct {};`): declare fields either in the string or with #[input]/#[output], not both",
                    item.ident
                ),
            );
            fields_from_string(cx, s)
        }
        (None, Fields::Named(named)) => fields_from_struct(cx, named),
        (None, Fields::Unnamed(f)) => {
            cx.error_spanned_by(
                f,
                "a tuple struct cannot be a signature: name its fields and mark each #[input] or #[output]",
            );
            Vec::new()
        }
        (None, Fields::Unit) => {
            cx.error_spanned_by(
                &item.ident,
                format!(
                    "`{}` has no fields and no signature string: write #[signature(\"question -> answer\")] or give it #[input]/#[output] fields",
                    item.ident
                ),
            );
            Vec::new()
        }
    };
    let attrs = item
        .attrs
        .into_iter()
        .filter(|a| !a.path().is_ident("input") && !a.path().is_ident("output"))
        .collect();
    Model {
        attrs,
        vis: item.vis,
        ident: item.ident,
        instructions,
        fields,
        crate_path: args.crate_path,
        extra_derives: args.derives,
    }
}

/// The text of doc comments, one line each, as Python would see a docstring.
fn doc_text(docs: &[&Attribute]) -> String {
    docs.iter()
        .filter_map(|a| match &a.meta {
            Meta::NameValue(nv) => lit_str(&nv.value).map(|s| s.value()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn fields_from_string(cx: &mut Ctxt, lit: &LitStr) -> Vec<FieldModel> {
    let src = lit.value();
    let (parsed, errors) = dspex_grammar::parse_signature_partial(&src);
    for e in &errors {
        report(cx, lit, e);
    }
    let mut out = Vec::new();
    for f in parsed.fields() {
        let span = subspan(lit, f.name_span).unwrap_or_else(|| lit.span());
        // A type that cannot become Rust tokens was reported; the field falls back to `String`
        // so the rest of the expansion still stands.
        let ty = f.ty.clone().filter(|ty| check_named_types(cx, lit, ty));
        out.push(FieldModel {
            ident: Ident::new(&f.name, span),
            side: f.side,
            desc: None,
            prefix: None,
            docs: Vec::new(),
            ty: FieldType::FromString {
                expr: ty,
                span: lit.span(),
            },
        });
    }
    out
}

/// User type names must be Rust paths; string-form `Literal[...]` members must be strings.
/// Returns whether the type is usable.
fn check_named_types(cx: &mut Ctxt, lit: &LitStr, ty: &TypeExpr) -> bool {
    match &ty.kind {
        TypeKind::List(t) | TypeKind::Map(_, t) | TypeKind::Optional(t) => {
            check_named_types(cx, lit, t)
        }
        TypeKind::Named(path) => {
            if path.iter().any(|seg| {
                syn::parse_str::<Ident>(seg).is_err()
                    && !matches!(seg.as_str(), "crate" | "self" | "super" | "Self")
            }) {
                let e = ParseError {
                    kind: dspex_grammar::ErrorKind::UnsupportedType,
                    span: ty.span,
                    column: column_of(&lit.value(), ty.span.start),
                    message: format!("`{}` is not a Rust type path", path.join("::")),
                };
                report(cx, lit, &e);
                return false;
            }
            true
        }
        TypeKind::Literal(values) => {
            if values
                .iter()
                .any(|v| !matches!(v, dspex_grammar::LiteralValue::Str(_)))
            {
                let e = ParseError {
                    kind: dspex_grammar::ErrorKind::UnsupportedType,
                    span: ty.span,
                    column: column_of(&lit.value(), ty.span.start),
                    message: "in a typed signature, `Literal[...]` values must be strings (they become enum variants); use an integer or bool type instead".to_string(),
                };
                report(cx, lit, &e);
                return false;
            }
            true
        }
        _ => true,
    }
}

fn column_of(src: &str, byte: usize) -> usize {
    src.char_indices().take_while(|(i, _)| *i < byte).count() + 1
}

/// Reports a grammar error on the part of the literal it is about when the compiler can point
/// inside literals (nightly), else on the whole literal; the message carries the column either way.
fn report(cx: &mut Ctxt, lit: &LitStr, e: &ParseError) {
    let span = subspan(lit, e.span).unwrap_or_else(|| lit.span());
    cx.error_at(span, e);
}

/// The span of bytes `range` of the literal's value, when the literal has no escapes (so value
/// offsets equal source offsets) and the compiler supports subspans.
fn subspan(lit: &LitStr, range: dspex_grammar::Span) -> Option<Span> {
    let token = lit.token();
    let repr = token.to_string();
    let value = lit.value();
    let prefix = if repr.starts_with('"') {
        1
    } else if let Some(rest) = repr.strip_prefix('r') {
        rest.find('"')? + 2
    } else {
        return None;
    };
    if repr.get(prefix..prefix + value.len())? != value {
        return None;
    }
    let end = range.end.max(range.start + 1).min(value.len().max(1));
    token.subspan(prefix + range.start..prefix + end)
}

fn fields_from_struct(cx: &mut Ctxt, named: &syn::FieldsNamed) -> Vec<FieldModel> {
    let mut out: Vec<FieldModel> = Vec::new();
    let mut sides_seen = Vec::new();
    let mut unmarked = false;
    for field in &named.named {
        let Some(ident) = field.ident.clone() else {
            continue;
        };
        let mut side = None;
        let mut desc = None;
        let mut prefix = None;
        let mut docs = Vec::new();
        for attr in &field.attrs {
            let this = if attr.path().is_ident("input") {
                Side::Input
            } else if attr.path().is_ident("output") {
                Side::Output
            } else {
                if attr.path().is_ident("doc") {
                    docs.push(attr.clone());
                }
                continue;
            };
            if side.is_some() {
                cx.error_spanned_by(
                    attr,
                    format!("field `{ident}` is marked more than once; a field is either #[input] or #[output]"),
                );
                continue;
            }
            side = Some(this);
            if let Meta::List(list) = &attr.meta {
                let parsed = list
                    .parse_args_with(Punctuated::<syn::MetaNameValue, Token![,]>::parse_terminated);
                match parsed {
                    Ok(items) => {
                        for nv in items {
                            let key = nv
                                .path
                                .get_ident()
                                .map(ToString::to_string)
                                .unwrap_or_default();
                            let value = lit_str(&nv.value);
                            match (key.as_str(), value) {
                                ("desc", Some(v)) => desc = Some(v.value()),
                                ("prefix", Some(v)) => prefix = Some(v.value()),
                                ("desc" | "prefix", None) => cx.error_spanned_by(
                                    &nv.value,
                                    format!("`{key}` takes a string literal"),
                                ),
                                _ => cx.error_spanned_by(
                                    &nv.path,
                                    unknown_key_message("field option", &key, FIELD_KEYS),
                                ),
                            }
                        }
                    }
                    Err(e) => cx.syn_error(e),
                }
            } else if let Meta::NameValue(nv) = &attr.meta {
                cx.error_spanned_by(
                    nv,
                    "write #[input(desc = \"...\")] / #[output(desc = \"...\")]",
                );
            }
        }
        let Some(side) = side else {
            cx.error_spanned_by(
                &ident,
                format!("field `{ident}` needs #[input] or #[output] to say which side of the signature it is on"),
            );
            unmarked = true;
            continue;
        };
        sides_seen.push(side);
        if let Err((_, reason)) =
            dspex_grammar::check_field_name(ident.to_string().trim_start_matches("r#"))
        {
            cx.error_spanned_by(&ident, reason);
            continue;
        }
        // The struct is rewritten, so rustc never sees these; the messages match the string form's.
        if let Some(first) = out.iter().find(|f| f.ident == ident) {
            let message = if first.side == side {
                format!("field `{ident}` is declared twice on the {side} side")
            } else {
                format!(
                    "`{ident}` is both an input and an output; inputs and outputs need distinct names"
                )
            };
            cx.error_spanned_by(&ident, message);
            continue;
        }
        if desc.is_none() && !docs.is_empty() {
            let text = doc_text(&docs.iter().collect::<Vec<_>>());
            desc = Some(
                text.lines()
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ")
                    .trim()
                    .to_string(),
            );
        }
        let field_ty = &field.ty;
        let text = quote::ToTokens::to_token_stream(field_ty).to_string();
        let expr = match dspex_grammar::parse_type(&text) {
            Ok(expr) => expr,
            Err(_) if holds_generic_code(field_ty) => {
                out.push(FieldModel {
                    ident,
                    side,
                    desc,
                    prefix,
                    docs,
                    ty: FieldType::Generic {
                        ty: Box::new(field.ty.clone()),
                    },
                });
                continue;
            }
            Err(errors) => {
                for e in errors {
                    cx.error_spanned_by(
                        field_ty,
                        format!(
                            "unsupported field type `{}`: {}",
                            type_text(&text),
                            e.message
                        ),
                    );
                }
                continue;
            }
        };
        out.push(FieldModel {
            ident,
            side,
            desc,
            prefix,
            docs,
            ty: FieldType::Written {
                ty: Box::new(field.ty.clone()),
                expr,
            },
        });
    }
    for side in [Side::Input, Side::Output] {
        if !unmarked && !sides_seen.contains(&side) {
            let which = if side == Side::Input {
                "#[input]"
            } else {
                "#[output]"
            };
            cx.error_at(
                named.span(),
                format!("a signature needs at least one {which} field"),
            );
        }
    }
    out
}

/// A type's tokens as the user would write them: `& 'a str` → `&'a str`, `(String , i32)` →
/// `(String, i32)`. Spaces stay only between two words.
fn type_text(tokens: &str) -> String {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '\'';
    let chars: Vec<char> = tokens.chars().collect();
    let mut out = String::with_capacity(tokens.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            if out.ends_with(word) && chars.get(i + 1).is_some_and(|&c| word(c)) {
                out.push(' ');
            }
        } else {
            out.push(c);
            if c == ',' {
                out.push(' ');
            }
        }
    }
    out
}
