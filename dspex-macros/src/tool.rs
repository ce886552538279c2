//! `#[tool]`: an `fn` (async or not) becomes a ReAct tool. The function stays as written; next
//! to it comes `<name>_tool()`, which builds a `Tool` whose arguments are the function's
//! parameters (schemas from schemars), whose description is the doc comment, and whose body
//! deserializes the model's arguments and calls the function.

use crate::ctxt::{Ctxt, unknown_key_message};
use crate::krate::facade_path;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, FnArg, Ident, ItemFn, Lit, LitStr, Meta, Pat, ReturnType, Token, Type};

const TOOL_KEYS: &[&str] = &["name", "desc", "crate"];

#[derive(Default)]
struct Args {
    name: Option<LitStr>,
    desc: Option<LitStr>,
    crate_path: Option<syn::Path>,
}

/// `tools![a, b, expr]`: each bare name `a` becomes `a_tool()` (the builder `#[tool]` makes,
/// spanned at the name, so a name that is no `#[tool]` function is the error rustc points
/// at); any other expression is taken as a tool value (`IntoTool`). The result is an array
/// of `Tool`s, which every API taking tools accepts.
pub(crate) fn list(input: TokenStream) -> TokenStream {
    let parser = Punctuated::<Expr, Token![,]>::parse_terminated;
    let items = match syn::parse::Parser::parse2(parser, input) {
        Ok(items) => items,
        Err(e) => {
            let mut cx = Ctxt::default();
            cx.error_at(
                e.span(),
                "tools![…] takes `#[tool]` function names and tool values, separated by commas: `tools![calculator, lookup]`",
            );
            return cx.into_compile_errors();
        }
    };
    let k = facade_path(None);
    let items = items.into_iter().map(|expr| match expr {
        Expr::Path(p)
            if p.qself.is_none()
                && p.attrs.is_empty()
                && p.path
                    .segments
                    .last()
                    .is_some_and(|s| s.arguments.is_none()) =>
        {
            let mut path = p.path;
            if let Some(last) = path.segments.last_mut() {
                last.ident = format_ident!("{}_tool", last.ident, span = last.ident.span());
            }
            quote!(#k::module::IntoTool::into_tool(#path()))
        }
        other => quote!(#k::module::IntoTool::into_tool(#other)),
    });
    quote!([#(#items),*])
}

pub(crate) fn attribute(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let args = parse_args(&mut cx, args);
    let mut func: ItemFn = match syn::parse2(item) {
        Ok(f) => f,
        Err(e) => {
            cx.error_at(
                e.span(),
                "#[tool] goes on a function: `async fn add(a: i64, b: i64) -> i64 { … }`",
            );
            return cx.into_compile_errors();
        }
    };
    let k = facade_path(args.crate_path.as_ref());
    let p = quote!(#k::__private);
    let sig = &func.sig;
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            "a #[tool] function cannot be generic: the model's JSON arguments need one concrete type each",
        );
    }
    if let Some(v) = &sig.variadic {
        cx.error_spanned_by(v, "a #[tool] function cannot be variadic");
    }
    let mut idents: Vec<Ident> = Vec::new();
    let mut types: Vec<Type> = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => cx.error_spanned_by(
                r,
                "#[tool] goes on a free function; for a method, build the tool with `Tool::new` and a closure",
            ),
            FnArg::Typed(pt) => {
                let Pat::Ident(pi) = &*pt.pat else {
                    cx.error_spanned_by(
                        &pt.pat,
                        "a #[tool] parameter needs a plain name: the model passes arguments by name",
                    );
                    continue;
                };
                if pi.by_ref.is_some() || pi.subpat.is_some() {
                    cx.error_spanned_by(&pt.pat, "a #[tool] parameter needs a plain name");
                    continue;
                }
                if let Some(span) = borrowed(&pt.ty) {
                    cx.error_at(
                        span,
                        "a #[tool] parameter must own its value (`String`, not `&str`): arguments are deserialized from the model's JSON",
                    );
                    continue;
                }
                if let Type::ImplTrait(t) = &*pt.ty {
                    cx.error_spanned_by(t, "a #[tool] parameter needs a concrete type");
                    continue;
                }
                idents.push(pi.ident.clone());
                types.push((*pt.ty).clone());
            }
        }
    }
    let fn_ident = sig.ident.clone();
    let tool_name = args
        .name
        .as_ref()
        .map(LitStr::value)
        .unwrap_or_else(|| fn_ident.to_string());
    if let Some(n) = args.name.as_ref().filter(|_| tool_name.trim().is_empty()) {
        cx.error_spanned_by(n, "a tool needs a non-empty name");
    }
    let desc = match &args.desc {
        Some(d) => Some(d.value()),
        None => doc_text(&func.attrs),
    };
    let errors = cx.into_compile_errors();
    if !errors.is_empty() {
        // The function itself still compiles, so the user sees only the tool's errors.
        return quote!(#errors #func);
    }
    // Parameters keep their attributes on the function only if rustc accepts them there; the
    // argument struct gets the names and types.
    for input in &mut func.sig.inputs {
        if let FnArg::Typed(pt) = input {
            pt.attrs.clear();
        }
    }
    let vis = &func.vis;
    let builder = format_ident!("{}_tool", fn_ident);
    let args_ident = Ident::new("__DspexToolArgs", Span::mixed_site());
    let serde_crate = quote!(#p::serde).to_string().replace(' ', "");
    let schemars_crate = quote!(#p::schemars).to_string().replace(' ', "");
    let call = if func.sig.asyncness.is_some() {
        quote!(#fn_ident(#(#idents),*).await)
    } else {
        quote!(#fn_ident(#(#idents),*))
    };
    let result = if returns_result(&func.sig.output) {
        quote!(#call)
    } else {
        quote!(::core::result::Result::<_, ::core::convert::Infallible>::Ok(#call))
    };
    let with_desc = desc.map(|d| quote!(.with_desc(#d)));
    let builder_doc = format!(
        " The ReAct tool for [`{fn_ident}`]: named `{tool_name}`, its parameters as arguments."
    );
    quote! {
        #func

        #[doc = #builder_doc]
        #vis fn #builder() -> #k::module::Tool {
            #[derive(#p::serde::Deserialize, #p::schemars::JsonSchema)]
            #[serde(crate = #serde_crate)]
            #[schemars(crate = #schemars_crate)]
            struct #args_ident {
                #(#idents: #types),*
            }
            #k::module::Tool::from_macro(#tool_name, |#args_ident { #(#idents),* }: #args_ident| async move {
                #result
            })
            #with_desc
        }
    }
}

fn parse_args(cx: &mut Ctxt, tokens: TokenStream) -> Args {
    let mut args = Args::default();
    let metas =
        match syn::parse::Parser::parse2(Punctuated::<Meta, Token![,]>::parse_terminated, tokens) {
            Ok(m) => m,
            Err(e) => {
                cx.syn_error(e);
                return args;
            }
        };
    for meta in metas {
        let key = meta
            .path()
            .get_ident()
            .map(Ident::to_string)
            .unwrap_or_default();
        match (&meta, key.as_str()) {
            (Meta::NameValue(nv), "name" | "desc") => match lit_str(&nv.value) {
                Some(s) if key == "name" => args.name = Some(s),
                Some(s) => args.desc = Some(s),
                None => cx.error_spanned_by(&nv.value, format!("`{key}` takes a string")),
            },
            (Meta::NameValue(nv), "crate") => match &nv.value {
                Expr::Path(p) => args.crate_path = Some(p.path.clone()),
                Expr::Lit(l) => match &l.lit {
                    Lit::Str(s) => match s.parse::<syn::Path>() {
                        Ok(path) => args.crate_path = Some(path),
                        Err(e) => cx.syn_error(e),
                    },
                    _ => cx.error_spanned_by(&nv.value, "`crate` takes a path"),
                },
                _ => cx.error_spanned_by(&nv.value, "`crate` takes a path"),
            },
            (_, k) if TOOL_KEYS.contains(&k) => cx.error_spanned_by(
                &meta,
                "expected `name = \"...\"`, `desc = \"...\"` or `crate = path`",
            ),
            _ => cx.error_spanned_by(
                meta.path(),
                unknown_key_message("tool option", &key, TOOL_KEYS),
            ),
        }
    }
    args
}

fn lit_str(e: &Expr) -> Option<LitStr> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Str(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The doc comment, cleaned as Python's `inspect.cleandoc` (so `/// Add two integers.` is
/// `Add two integers.`); `None` without one.
fn doc_text(attrs: &[Attribute]) -> Option<String> {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            Meta::NameValue(nv) => lit_str(&nv.value).map(|s| s.value()),
            _ => None,
        })
        .collect();
    if lines.is_empty() {
        return None;
    }
    Some(dspex_grammar::cleandoc(&lines.join("\n")))
}

/// Where a type borrows (`&str`, `&[T]`, `Cow<'a, str>`): the span of the first reference or
/// non-`'static` lifetime.
fn borrowed(ty: &Type) -> Option<Span> {
    match ty {
        Type::Reference(r) => Some(r.and_token.span),
        Type::Slice(s) => borrowed(&s.elem),
        Type::Array(a) => borrowed(&a.elem),
        Type::Paren(p) => borrowed(&p.elem),
        Type::Group(g) => borrowed(&g.elem),
        Type::Tuple(t) => t.elems.iter().find_map(borrowed),
        Type::Path(tp) => tp
            .path
            .segments
            .iter()
            .find_map(|seg| match &seg.arguments {
                syn::PathArguments::AngleBracketed(ab) => {
                    ab.args.iter().find_map(|arg| match arg {
                        syn::GenericArgument::Lifetime(l) if l.ident != "static" => {
                            Some(l.apostrophe)
                        }
                        syn::GenericArgument::Type(t) => borrowed(t),
                        _ => None,
                    })
                }
                _ => None,
            }),
        _ => None,
    }
}

/// Whether the function returns `Result<…>` (by the last path segment's name, as `tracing`'s
/// `#[instrument(err)]` decides): its error is then the tool's error.
fn returns_result(output: &ReturnType) -> bool {
    match output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::Path(tp) => tp.path.segments.last().is_some_and(|s| s.ident == "Result"),
            _ => false,
        },
        ReturnType::Default => false,
    }
}
