//! Errors of the signature layer.

use dspex_grammar::ParseError;
use std::fmt;

/// A signature that cannot be built: a bad string, an unknown type, a bad edit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature string does not parse. Holds every mistake found, in source order.
    #[error("{}", ParseErrors { input, errors })]
    Parse {
        /// The string that was parsed.
        input: String,
        /// Each mistake, with its position and reason (never empty).
        errors: Vec<ParseError>,
    },
    /// A type name that is neither built in nor supplied by the caller.
    #[error(
        "unknown type `{name}` for field `{field}`: run-time signatures know str, int, float, bool, Any, list, dict, Optional and Literal; pass user types with `DynSignature::parse_with_types`"
    )]
    UnknownType {
        /// The field whose type is unknown.
        field: String,
        /// The type name as written.
        name: String,
    },
    /// A field name that is not a valid identifier or is a Rust keyword.
    #[error("invalid field name: {reason}")]
    InvalidFieldName {
        /// Why the name is rejected.
        reason: String,
    },
    /// Two fields with one name.
    #[error("a field named `{name}` already exists in this signature")]
    DuplicateField {
        /// The repeated name.
        name: String,
    },
    /// An insertion index outside the section.
    #[error(
        "cannot insert `{name}` at index {index}: the {role} fields have {len} entries (valid: -{max} to {len})",
        max = len + 1
    )]
    InvalidIndex {
        /// The field being inserted.
        name: String,
        /// The index given.
        index: isize,
        /// `input` or `output`.
        role: &'static str,
        /// How many fields that section has.
        len: usize,
    },
    /// A JSON description of a signature (fixture layout) that is malformed.
    #[error("invalid signature description: {0}")]
    Description(String),
}

struct ParseErrors<'a> {
    input: &'a str,
    errors: &'a [ParseError],
}

impl fmt::Display for ParseErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid signature {:?}: ", self.input)?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl SignatureError {
    /// The grammar errors, when this is a parse error.
    pub fn parse_errors(&self) -> &[ParseError] {
        match self {
            SignatureError::Parse { errors, .. } => errors,
            _ => &[],
        }
    }
}
