//! One place to collect every error of an item, as serde_derive's `Ctxt` does: parsing and checking
//! keep going after a mistake, and all mistakes are reported together.

use proc_macro2::TokenStream;
use std::fmt::Display;

#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Vec<syn::Error>,
}

impl Ctxt {
    pub(crate) fn error_spanned_by(&mut self, tokens: impl quote::ToTokens, msg: impl Display) {
        self.errors.push(syn::Error::new_spanned(tokens, msg));
    }

    pub(crate) fn error_at(&mut self, span: proc_macro2::Span, msg: impl Display) {
        self.errors.push(syn::Error::new(span, msg));
    }

    pub(crate) fn syn_error(&mut self, err: syn::Error) {
        self.errors.push(err);
    }

    /// All collected errors as `compile_error!` invocations.
    pub(crate) fn into_compile_errors(self) -> TokenStream {
        self.errors
            .into_iter()
            .map(|e| e.to_compile_error())
            .collect()
    }
}

/// The closest known key to `unknown`, for "did you mean" hints.
pub(crate) fn did_you_mean<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(unknown, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A message listing the known keys, with a hint for the nearest one.
pub(crate) fn unknown_key_message(what: &str, key: &str, known: &[&str]) -> String {
    let list = known
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match did_you_mean(key, known) {
        Some(hint) => {
            format!("unknown {what} `{key}`; did you mean `{hint}`? (expected one of {list})")
        }
        None => format!("unknown {what} `{key}` (expected one of {list})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("dsc", &["desc", "prefix"]), Some("desc"));
        assert_eq!(
            did_you_mean("instruction", &["instructions", "crate"]),
            Some("instructions")
        );
        assert_eq!(did_you_mean("zzzzzz", &["desc", "prefix"]), None);
    }
}
