//! `#[derive(LiteralEnum)]`: a unit-variant enum as a `Literal[...]` field type.
//!
//! By default the derive also implements serde's `Serialize` and `Deserialize` (through the
//! facade's re-export of serde, so the user's crate needs no serde dependency): each variant is
//! its name, or `#[literal(rename = "…")]`, or the container's `#[literal(rename_all = "…")]`
//! rule (serde's rule names). With `#[literal(serde = false)]` the user derives serde and the
//! values are whatever the variants serialize to (serde renames included).

use crate::ctxt::{Ctxt, did_you_mean};
use crate::krate::facade_path;
use proc_macro2::TokenStream;
use quote::quote;
use syn::{Attribute, Data, DeriveInput, Fields, LitBool, LitStr};

/// serde's `rename_all` rules, by name.
const RULES: &[&str] = &[
    "lowercase",
    "UPPERCASE",
    "PascalCase",
    "camelCase",
    "snake_case",
    "SCREAMING_SNAKE_CASE",
    "kebab-case",
    "SCREAMING-KEBAB-CASE",
];

/// The container's `#[literal(...)]` settings.
struct Container {
    rename_all: Option<String>,
    serde: bool,
}

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
    let container = container_attrs(&mut cx, &input.attrs);
    let mut variants = Vec::new();
    for v in &data.variants {
        let rename = variant_rename(&mut cx, &v.attrs);
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
        let value = match (&rename, &container.rename_all) {
            (Some(name), _) => name.clone(),
            (None, Some(rule)) => apply_rule(rule, &v.ident.to_string()),
            (None, None) => v.ident.to_string(),
        };
        variants.push((&v.ident, rename.is_some(), value));
    }
    for (i, (name, _, value)) in variants.iter().enumerate() {
        if let Some((first, _, _)) = variants[..i].iter().find(|(_, _, v)| v == value) {
            cx.error_spanned_by(
                name,
                format!("`{name}` and `{first}` both have the value \"{value}\"; each choice needs its own"),
            );
        }
    }
    if !container.serde {
        for (name, renamed, _) in &variants {
            if *renamed || container.rename_all.is_some() {
                cx.error_spanned_by(
                    name,
                    "with #[literal(serde = false)] the values come from your serde derive: rename with #[serde(rename = \"…\")] / #[serde(rename_all = \"…\")]",
                );
                break;
            }
        }
    }
    let errors = cx.into_compile_errors();
    // With errors, the field-type impl of the valid variants still comes out, so the enum's uses
    // do not fail too; the serde impls do not (the user may derive serde, and those would clash).
    let literal_values: Vec<TokenStream> = if container.serde || !errors.is_empty() {
        variants
            .iter()
            .map(|(_, _, value)| quote!(#p::LiteralValue::Str(#p::String::from(#value))))
            .collect()
    } else {
        variants
            .iter()
            .map(|(name, _, fallback)| quote!(#p::literal_of(&#ident::#name, #fallback)))
            .collect()
    };
    let signature_type = quote! {
        #[automatically_derived]
        impl #p::SignatureType for #ident {
            fn type_spec() -> #p::TypeSpec {
                #p::TypeSpec::Literal(#p::vec![#(#literal_values),*])
            }
        }
    };
    if !errors.is_empty() {
        return quote!(#errors #signature_type);
    }
    if !container.serde {
        return signature_type;
    }

    let names: Vec<_> = variants.iter().map(|(name, _, _)| *name).collect();
    let values: Vec<&String> = variants.iter().map(|(_, _, value)| value).collect();
    quote! {
        #signature_type

        #[automatically_derived]
        impl #p::serde::Serialize for #ident {
            fn serialize<S: #p::serde::Serializer>(
                &self,
                serializer: S,
            ) -> #p::Result<S::Ok, S::Error> {
                serializer.serialize_str(match self {
                    #(#ident::#names => #values,)*
                })
            }
        }

        #[automatically_derived]
        impl<'de> #p::serde::Deserialize<'de> for #ident {
            fn deserialize<D: #p::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> #p::Result<Self, D::Error> {
                let value = <#p::String as #p::serde::Deserialize>::deserialize(deserializer)?;
                match value.as_str() {
                    #(#values => #p::Result::Ok(#ident::#names),)*
                    other => #p::Result::Err(
                        <D::Error as #p::serde::de::Error>::unknown_variant(other, &[#(#values),*]),
                    ),
                }
            }
        }
    }
}

/// Reads `#[literal(rename_all = "…", serde = false)]` on the enum.
fn container_attrs(cx: &mut Ctxt, attrs: &[Attribute]) -> Container {
    let mut out = Container {
        rename_all: None,
        serde: true,
    };
    for attr in attrs.iter().filter(|a| a.path().is_ident("literal")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename_all") {
                let rule: LitStr = meta.value()?.parse()?;
                if RULES.contains(&rule.value().as_str()) {
                    out.rename_all = Some(rule.value());
                } else {
                    let hint = did_you_mean(&rule.value(), RULES)
                        .map(|r| format!("; did you mean \"{r}\"?"))
                        .unwrap_or_default();
                    cx.error_spanned_by(
                        &rule,
                        format!(
                            "unknown rename_all rule \"{}\" (serde's rules: {}){hint}",
                            rule.value(),
                            RULES.join(", ")
                        ),
                    );
                }
                Ok(())
            } else if meta.path.is_ident("serde") {
                let on: LitBool = meta.value()?.parse()?;
                out.serde = on.value;
                Ok(())
            } else if meta.path.is_ident("rename") {
                Err(meta.error("`rename` goes on a variant; on the enum, use `rename_all`"))
            } else {
                Err(meta.error("expected `rename_all = \"…\"` or `serde = false`"))
            }
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
    out
}

/// Reads `#[literal(rename = "…")]` on a variant.
fn variant_rename(cx: &mut Ctxt, attrs: &[Attribute]) -> Option<String> {
    let mut rename = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("literal")) {
        let result = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                let name: LitStr = meta.value()?.parse()?;
                rename = Some(name.value());
                Ok(())
            } else {
                Err(meta.error("expected `rename = \"…\"` on a variant"))
            }
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
    rename
}

/// A variant name under one of serde's `rename_all` rules (as serde applies them to variants).
fn apply_rule(rule: &str, variant: &str) -> String {
    let snake = || {
        let mut out = String::new();
        for (i, c) in variant.char_indices() {
            if c.is_uppercase() && i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        }
        out
    };
    match rule {
        "lowercase" => variant.to_lowercase(),
        "UPPERCASE" => variant.to_uppercase(),
        "camelCase" => {
            let mut chars = variant.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_lowercase().chain(chars).collect()
            })
        }
        "snake_case" => snake(),
        "SCREAMING_SNAKE_CASE" => snake().to_uppercase(),
        "kebab-case" => snake().replace('_', "-"),
        "SCREAMING-KEBAB-CASE" => snake().to_uppercase().replace('_', "-"),
        // PascalCase: variants already are.
        _ => variant.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::apply_rule;

    #[test]
    fn rename_rules_match_serdes() {
        let cases = [
            ("lowercase", "VeryTasty", "verytasty"),
            ("UPPERCASE", "VeryTasty", "VERYTASTY"),
            ("PascalCase", "VeryTasty", "VeryTasty"),
            ("camelCase", "VeryTasty", "veryTasty"),
            ("snake_case", "VeryTasty", "very_tasty"),
            ("SCREAMING_SNAKE_CASE", "VeryTasty", "VERY_TASTY"),
            ("kebab-case", "VeryTasty", "very-tasty"),
            ("SCREAMING-KEBAB-CASE", "VeryTasty", "VERY-TASTY"),
        ];
        for (rule, variant, want) in cases {
            assert_eq!(apply_rule(rule, variant), want, "{rule}");
        }
    }
}
