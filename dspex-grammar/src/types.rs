//! The resolved type of a signature field, whichever spelling it was written in.

use crate::Span;
use std::fmt::Write as _;

/// A field type with the span it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeExpr {
    /// What the type is.
    pub kind: TypeKind,
    /// Where it was written.
    pub span: Span,
}

/// Integer widths. [`IntKind::Int`] is DSPy's `int`, which becomes `i64` in Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum IntKind {
    Int,
    I8,
    I16,
    I32,
    I64,
    I128,
    Isize,
    U8,
    U16,
    U32,
    U64,
    U128,
    Usize,
}

impl IntKind {
    /// The Rust type name (`int` → `i64`).
    pub fn rust_name(self) -> &'static str {
        match self {
            IntKind::Int | IntKind::I64 => "i64",
            IntKind::I8 => "i8",
            IntKind::I16 => "i16",
            IntKind::I32 => "i32",
            IntKind::I128 => "i128",
            IntKind::Isize => "isize",
            IntKind::U8 => "u8",
            IntKind::U16 => "u16",
            IntKind::U32 => "u32",
            IntKind::U64 => "u64",
            IntKind::U128 => "u128",
            IntKind::Usize => "usize",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "int" => IntKind::Int,
            "i8" => IntKind::I8,
            "i16" => IntKind::I16,
            "i32" => IntKind::I32,
            "i64" => IntKind::I64,
            "i128" => IntKind::I128,
            "isize" => IntKind::Isize,
            "u8" => IntKind::U8,
            "u16" => IntKind::U16,
            "u32" => IntKind::U32,
            "u64" => IntKind::U64,
            "u128" => IntKind::U128,
            "usize" => IntKind::Usize,
            _ => return None,
        })
    }
}

/// Float widths. [`FloatKind::Float`] is DSPy's `float`, which becomes `f64` in Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum FloatKind {
    Float,
    F32,
    F64,
}

/// Which map type a `dict`-like field uses in Rust. DSPy's `dict[str, V]` becomes a `BTreeMap`, so
/// prompts built from it are deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MapKind {
    /// `dict[str, V]` / `Dict[str, V]`.
    Dict,
    /// `HashMap<String, V>`.
    HashMap,
    /// `BTreeMap<String, V>`.
    BTreeMap,
}

/// One member of a `Literal[...]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LiteralValue {
    /// `'text'`.
    Str(String),
    /// `3`, `-1`.
    Int(i64),
    /// `True` / `False`.
    Bool(bool),
    /// `None`.
    None,
}

impl LiteralValue {
    /// Python's `repr` of the member, as DSPy prints it inside `Literal[...]`.
    pub fn python_repr(&self) -> String {
        match self {
            LiteralValue::Str(s) => python_str_repr(s),
            other => other.python_str(),
        }
    }

    /// Python's `str()` of the member, as DSPy prints it in output type notes.
    pub fn python_str(&self) -> String {
        match self {
            LiteralValue::Str(s) => s.clone(),
            LiteralValue::Int(i) => i.to_string(),
            LiteralValue::Bool(true) => "True".to_string(),
            LiteralValue::Bool(false) => "False".to_string(),
            LiteralValue::None => "None".to_string(),
        }
    }
}

/// DSPy's name of a `Literal` type: `Literal['a', 'b']`. Strings are quoted as DSPy's
/// `get_annotation_name` quotes them (`'…'`; `"…"` when the text has `'` but no `"`; else `'…'`
/// with `\'`), without Python's other escapes.
pub fn literal_type_name(values: &[LiteralValue]) -> String {
    let members: Vec<String> = values
        .iter()
        .map(|v| match v {
            LiteralValue::Str(s) if s.contains('\'') && !s.contains('"') => format!("\"{s}\""),
            LiteralValue::Str(s) => format!("'{}'", s.replace('\'', "\\'")),
            other => other.python_repr(),
        })
        .collect();
    format!("Literal[{}]", members.join(", "))
}

/// Python's `repr()` of a `str`: single quotes unless the text has a `'` and no `"`; `\\`,
/// `\n`, `\r`, `\t` and the quote escaped; characters Python does not print as they are
/// written as `\x..`, `\u....` or `\U........`.
pub fn python_str_repr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_python_str_repr(&mut out, s);
    out
}

/// Appends Python's `repr()` of a `str`: single quotes unless the text has a `'` and no `"`;
/// backslash, the quote, `\t`, `\n`, `\r` escaped; other non-printable characters as `\xNN`,
/// `\uNNNN` or `\UNNNNNNNN`.
pub fn write_python_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !is_printable(c) => {
                let code = c as u32;
                let _ = if code < 0x100 {
                    write!(out, "\\x{code:02x}")
                } else if code < 0x10000 {
                    write!(out, "\\u{code:04x}")
                } else {
                    write!(out, "\\U{code:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `str.isprintable()` for one character: false for controls, separators other than
/// the ASCII space, format characters, private-use characters and noncharacters (the
/// unassigned code points Python also escapes are not known here).
fn is_printable(c: char) -> bool {
    let code = c as u32;
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let format = matches!(
        code,
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x890..=0x891
            | 0x8E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    );
    let private_or_nonchar = matches!(code, 0xE000..=0xF8FF | 0xF0000..=0x10FFFF | 0xFDD0..=0xFDEF)
        || (code & 0xFFFE) == 0xFFFE;
    !(format || private_or_nonchar)
}

/// A field type, independent of the spelling it was written in.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeKind {
    /// `str` / `String`.
    Str,
    /// `bool`.
    Bool,
    /// `int` / `i64` / `u32` / ….
    Int(IntKind),
    /// `float` / `f64` / `f32`.
    Float(FloatKind),
    /// `Any` / `serde_json::Value`: any JSON value.
    Any,
    /// `list[T]` / `Vec<T>`.
    List(Box<TypeExpr>),
    /// `dict[str, V]` / `HashMap<String, V>` / `BTreeMap<String, V>`; keys are always strings.
    Map(MapKind, Box<TypeExpr>),
    /// `Optional[T]` / `Option<T>` / `T | None` / `Union[T, None]`.
    Optional(Box<TypeExpr>),
    /// `Literal['a', 'b']`: one of fixed values.
    Literal(Vec<LiteralValue>),
    /// A user type named by a path (`Citation`, `crate::types::Citation`): a struct deriving
    /// `JsonSchema`, or an enum deriving `LiteralEnum`.
    Named(Vec<String>),
}

impl TypeExpr {
    /// DSPy's spelling of the type, as its adapters print it: `str`, `list[str]`,
    /// `dict[str, int]`, `Union[str, NoneType]`, `Literal['a', 'b']`, `Citation`.
    pub fn dspy_name(&self) -> String {
        self.kind.dspy_name()
    }

    /// The Rust spelling of the type: `String`, `Vec<String>`, `Option<i64>`,
    /// `BTreeMap<String, f64>`; a [`TypeKind::Literal`] is `String`.
    pub fn rust_name(&self) -> String {
        self.kind.rust_name()
    }
}

impl TypeKind {
    /// See [`TypeExpr::dspy_name`].
    pub fn dspy_name(&self) -> String {
        match self {
            TypeKind::Str => "str".to_string(),
            TypeKind::Bool => "bool".to_string(),
            TypeKind::Int(_) => "int".to_string(),
            TypeKind::Float(_) => "float".to_string(),
            TypeKind::Any => "Any".to_string(),
            TypeKind::List(t) => format!("list[{}]", t.dspy_name()),
            TypeKind::Map(_, v) => format!("dict[str, {}]", v.dspy_name()),
            TypeKind::Optional(t) => format!("Union[{}, NoneType]", t.dspy_name()),
            TypeKind::Literal(values) => literal_type_name(values),
            TypeKind::Named(path) => path.last().cloned().unwrap_or_default(),
        }
    }

    /// See [`TypeExpr::rust_name`].
    pub fn rust_name(&self) -> String {
        match self {
            TypeKind::Str | TypeKind::Literal(_) => "String".to_string(),
            TypeKind::Bool => "bool".to_string(),
            TypeKind::Int(k) => k.rust_name().to_string(),
            TypeKind::Float(FloatKind::F32) => "f32".to_string(),
            TypeKind::Float(_) => "f64".to_string(),
            TypeKind::Any => "serde_json::Value".to_string(),
            TypeKind::List(t) => format!("Vec<{}>", t.rust_name()),
            TypeKind::Map(MapKind::HashMap, v) => format!("HashMap<String, {}>", v.rust_name()),
            TypeKind::Map(_, v) => format!("BTreeMap<String, {}>", v.rust_name()),
            TypeKind::Optional(t) => format!("Option<{}>", t.rust_name()),
            // `Code_python` (DSPy's `Code["python"]`) is `Code<Python>`.
            TypeKind::Named(path)
                if let Some(marker) = code_type_language(path).and_then(code_language_marker) =>
            {
                format!("Code<{marker}>")
            }
            // DSPy's own types (`dspy.Image`) are dspex's types of the same name.
            TypeKind::Named(path) if path.len() == 2 && path[0] == "dspy" => path[1].clone(),
            TypeKind::Named(path) => path.join("::"),
        }
    }

    /// Whether the type (and every type inside it) is one dspex knows without user code, so the
    /// generated structs can derive `PartialEq` for it.
    pub fn is_builtin(&self) -> bool {
        match self {
            TypeKind::List(t) | TypeKind::Map(_, t) | TypeKind::Optional(t) => t.kind.is_builtin(),
            TypeKind::Named(_) => false,
            _ => true,
        }
    }

    /// Every user-named type inside this one, outermost first.
    pub fn named_types(&self) -> Vec<&[String]> {
        match self {
            TypeKind::List(t) | TypeKind::Map(_, t) | TypeKind::Optional(t) => t.kind.named_types(),
            TypeKind::Named(path) => vec![path.as_slice()],
            _ => Vec::new(),
        }
    }

    pub(crate) fn scalar(name: &str) -> Option<TypeKind> {
        Some(match name {
            "str" | "String" => TypeKind::Str,
            "bool" => TypeKind::Bool,
            "float" => TypeKind::Float(FloatKind::Float),
            "f64" => TypeKind::Float(FloatKind::F64),
            "f32" => TypeKind::Float(FloatKind::F32),
            "Any" | "Value" => TypeKind::Any,
            other => TypeKind::Int(IntKind::from_name(other)?),
        })
    }
}

/// The language of DSPy's `Code_python` class (`Code["python"]`) named by a path: `Code_<lang>`
/// alone or after `dspy` / `dspex`.
pub fn code_type_language(path: &[String]) -> Option<&str> {
    let name = match path {
        [name] => name,
        [module, name] if matches!(module.as_str(), "dspy" | "dspex") => name,
        _ => return None,
    };
    name.strip_prefix("Code_").filter(|lang| !lang.is_empty())
}

/// The Rust marker type named after a code language: its first letter upper-cased (`python` →
/// `Python`, `cpp` → `Cpp`), when the language is an ASCII identifier; `None` otherwise
/// (`c++`).
pub fn code_language_marker(language: &str) -> Option<String> {
    let mut chars = language.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic() || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some(first.to_ascii_uppercase().to_string() + &language[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_repr_follows_python() {
        assert_eq!(python_str_repr("a"), "'a'");
        assert_eq!(python_str_repr("b's"), "\"b's\"");
        assert_eq!(python_str_repr("c\"d"), "'c\"d'");
        assert_eq!(python_str_repr("e'f\"g"), "'e\\'f\"g'");
        assert_eq!(python_str_repr("x\ny\\"), "'x\\ny\\\\'");
        assert_eq!(LiteralValue::Bool(true).python_repr(), "True");
        assert_eq!(LiteralValue::None.python_repr(), "None");
        let name = literal_type_name(&[
            LiteralValue::Str("a\nb".into()),
            LiteralValue::Str("b's".into()),
            LiteralValue::Str("c'd\"".into()),
            LiteralValue::Int(3),
        ]);
        assert_eq!(name, "Literal['a\nb', \"b's\", 'c\\'d\"', 3]");
    }
}
