//! A Python value, as DSPy's parsing pipeline sees one between `json_repair.loads` /
//! `ast.literal_eval` and pydantic: arbitrary-size ints, non-finite floats and dicts with
//! non-string keys are all possible there, none of which a `serde_json::Value` can hold.

use super::text::write_py_float;
use serde_json::{Map, Number, Value};
use std::fmt::Write as _;

/// A Python value produced by the lenient JSON reader or the literal reader.
#[derive(Debug, Clone, PartialEq)]
pub enum Py {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An `int` that fits in 128 bits.
    Int(i128),
    /// An `int` beyond 128 bits, as its decimal text (with a leading `-` when negative).
    BigInt(String),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `bytes` (from a `b'…'` literal): pydantic's lax `str`, `int`, `float` and `bool`
    /// accept it as its UTF-8 text; `dspy.Code`, `dspy.Reasoning` and `Literal` refuse it.
    Bytes(Vec<u8>),
    /// A `list`, `tuple` or `set` (in order).
    List(Vec<Py>),
    /// A `dict` in insertion order (keys unique under Python equality).
    Dict(Vec<(Py, Py)>),
}

impl Py {
    /// Python's truth value.
    pub fn truthy(&self) -> bool {
        match self {
            Py::None => false,
            Py::Bool(b) => *b,
            Py::Int(i) => *i != 0,
            Py::BigInt(_) => true,
            Py::Float(f) => *f != 0.0,
            Py::Str(s) => !s.is_empty(),
            Py::Bytes(b) => !b.is_empty(),
            Py::List(v) => !v.is_empty(),
            Py::Dict(d) => !d.is_empty(),
        }
    }

    /// Whether this is the empty string (`json_repair`'s "nothing found").
    pub fn is_empty_str(&self) -> bool {
        matches!(self, Py::Str(s) if s.is_empty())
    }

    /// The numeric value for Python's cross-type number equality.
    fn as_number(&self) -> Option<f64> {
        match self {
            Py::Bool(b) => Some(f64::from(u8::from(*b))),
            Py::Int(i) => Some(*i as f64),
            Py::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value of `key` in a dict (Python equality on keys).
    pub fn dict_get<'a>(entries: &'a [(Py, Py)], key: &str) -> Option<&'a Py> {
        entries
            .iter()
            .find(|(k, _)| matches!(k, Py::Str(s) if s == key))
            .map(|(_, v)| v)
    }
}

/// Python's `==`: numbers compare across `bool`/`int`/`float`, containers element-wise, dicts
/// regardless of order.
pub fn py_eq(a: &Py, b: &Py) -> bool {
    match (a, b) {
        (Py::None, Py::None) => true,
        (Py::Str(x), Py::Str(y)) => x == y,
        (Py::Bytes(x), Py::Bytes(y)) => x == y,
        (Py::BigInt(x), Py::BigInt(y)) => x == y,
        (Py::Int(x), Py::Int(y)) => x == y,
        (Py::List(x), Py::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Py::Dict(x), Py::Dict(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.iter()
                        .find(|(k2, _)| py_eq(k, k2))
                        .is_some_and(|(_, v2)| py_eq(v, v2))
                })
        }
        _ => match (a.as_number(), b.as_number()) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

/// Inserts into a dict as Python's `d[k] = v` does: an existing key keeps its place and takes
/// the new value.
pub fn dict_set(entries: &mut Vec<(Py, Py)>, key: Py, value: Py) {
    if let Some(slot) = entries.iter_mut().find(|(k, _)| py_eq(k, &key)) {
        slot.1 = value;
    } else {
        entries.push((key, value));
    }
}

/// Appends Python's `repr()` (which is also `str()` for containers).
pub fn write_repr(out: &mut String, v: &Py) {
    match v {
        Py::None => out.push_str("None"),
        Py::Bool(true) => out.push_str("True"),
        Py::Bool(false) => out.push_str("False"),
        Py::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Py::BigInt(s) => out.push_str(s),
        Py::Float(f) => write_py_float(out, *f),
        Py::Str(s) => write_str_repr(out, s),
        Py::Bytes(b) => write_bytes_repr(out, b),
        Py::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, item);
            }
            out.push(']');
        }
        Py::Dict(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, k);
                out.push_str(": ");
                write_repr(out, v);
            }
            out.push('}');
        }
    }
}

/// Python's `repr()` of a `str`, written into `out`.
pub fn write_str_repr(out: &mut String, s: &str) {
    dspex_grammar::write_python_str_repr(out, s);
}

/// Python's `repr()` of a `bytes`: `b'…'`, quoted with `"` only when the bytes hold `'` and
/// no `"`; printable ASCII as itself, `\t` `\n` `\r` and the quote escaped, the rest `\xNN`.
pub fn write_bytes_repr(out: &mut String, b: &[u8]) {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    out.push('b');
    out.push(quote);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            c if char::from(c) == quote => {
                out.push('\\');
                out.push(quote);
            }
            0x20..=0x7e => out.push(char::from(c)),
            c => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push(quote);
}

/// Python's `str()`: the text itself for a string, the repr otherwise.
pub fn py_str(v: &Py) -> String {
    match v {
        Py::Str(s) => s.clone(),
        other => {
            let mut s = String::new();
            write_repr(&mut s, other);
            s
        }
    }
}

/// Appends Python's `repr()` of a JSON value (`{'a': 1}`, `['x']`, `True`, `None`).
pub fn write_py_repr_json(out: &mut String, v: &Value) {
    write_repr(out, &from_json(v));
}

/// The Python value of a JSON value.
pub fn from_json(v: &Value) -> Py {
    match v {
        Value::Null => Py::None,
        Value::Bool(b) => Py::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Py::Int(i128::from(i))
            } else if let Some(u) = n.as_u64() {
                Py::Int(i128::from(u))
            } else {
                Py::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => Py::Str(s.clone()),
        Value::Array(items) => Py::List(items.iter().map(from_json).collect()),
        Value::Object(map) => Py::Dict(
            map.iter()
                .map(|(k, v)| (Py::Str(k.clone()), from_json(v)))
                .collect(),
        ),
    }
}

/// The JSON value of a Python value. Fails on what JSON cannot hold exactly: ints beyond 64
/// bits and non-finite floats.
pub fn to_json(v: &Py) -> Result<Value, String> {
    Ok(match v {
        Py::None => Value::Null,
        Py::Bool(b) => Value::Bool(*b),
        Py::Int(i) => int_to_json(*i)?,
        Py::BigInt(s) => return Err(format!("the integer {s} does not fit in 64 bits")),
        Py::Float(f) => Value::Number(
            Number::from_f64(*f)
                .ok_or_else(|| format!("{} cannot be represented in JSON", py_str(v)))?,
        ),
        Py::Str(s) => Value::String(s.clone()),
        // Pydantic dumps `bytes` to JSON as their UTF-8 text.
        Py::Bytes(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        Py::List(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Py::Dict(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (k, v) in entries {
                map.insert(json_key(k), to_json(v)?);
            }
            Value::Object(map)
        }
    })
}

/// A JSON integer, if it fits in 64 bits.
pub fn int_to_json(i: i128) -> Result<Value, String> {
    if let Ok(x) = i64::try_from(i) {
        Ok(Value::from(x))
    } else if let Ok(x) = u64::try_from(i) {
        Ok(Value::from(x))
    } else {
        Err(format!("the integer {i} does not fit in 64 bits"))
    }
}

/// The key `json.dumps` writes for a dict key.
fn json_key(k: &Py) -> String {
    match k {
        Py::Str(s) => s.clone(),
        Py::None => "null".to_string(),
        Py::Bool(b) => b.to_string(),
        Py::Float(f) if f.is_nan() => "NaN".to_string(),
        Py::Float(f) if f.is_infinite() => {
            if *f > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
        }
        other => py_str(other),
    }
}

/// A compact description of a value for error messages (its repr, cut at 80 characters).
pub fn short_repr(v: &Py) -> String {
    let mut s = String::new();
    write_repr(&mut s, v);
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repr_and_equality_follow_python() {
        let v = Py::Dict(vec![
            (
                Py::Str("a".into()),
                Py::List(vec![Py::Int(1), Py::Float(2.0)]),
            ),
            (Py::Int(1), Py::Str("it's".into())),
            (Py::Str("n".into()), Py::None),
        ]);
        let mut s = String::new();
        write_repr(&mut s, &v);
        assert_eq!(s, r#"{'a': [1, 2.0], 1: "it's", 'n': None}"#);
        let mut s = String::new();
        write_str_repr(&mut s, "a\u{a0}b\u{1}\u{7f}\u{200b}\u{e000}é\n'\"\\");
        assert_eq!(s, r#"'a\xa0b\x01\x7f\u200b\ue000é\n\'"\\'"#);
        assert!(py_eq(&Py::Int(1), &Py::Float(1.0)));
        assert!(py_eq(&Py::Bool(true), &Py::Int(1)));
        assert!(!py_eq(&Py::Str("1".into()), &Py::Int(1)));
        let mut d = vec![];
        dict_set(&mut d, Py::Str("k".into()), Py::Int(1));
        dict_set(&mut d, Py::Str("j".into()), Py::Int(2));
        dict_set(&mut d, Py::Str("k".into()), Py::Int(3));
        assert_eq!(to_json(&Py::Dict(d)).unwrap(), json!({"k": 3, "j": 2}));
        assert!(to_json(&Py::Float(f64::NAN)).is_err());
        assert!(to_json(&Py::Int(1 << 70)).is_err());
        assert_eq!(
            from_json(&json!({"x": [1, 1.5]})),
            Py::Dict(vec![(
                Py::Str("x".into()),
                Py::List(vec![Py::Int(1), Py::Float(1.5)])
            )])
        );
    }
}
