//! DSPy's `parse_value` (`dspy/adapters/utils.py`) and the part of pydantic's lax validation it
//! relies on, for every [`TypeSpec`]; model types are validated against their JSON schema.

use super::json_repair;
use super::literal_eval::literal_eval;
use super::py::{Py, int_to_json, py_eq, py_str, short_repr, to_json};
use super::text::py_strip;
use crate::signature::{CustomType, DynSignature, LiteralValue, TypeSpec};
use serde_json::{Map, Number, Value};

/// How deep schemas and values may nest before validation gives up (DSPy would hit Python's
/// recursion limit somewhere around here).
const MAX_DEPTH: usize = 200;

/// `parse_value(value, annotation)`: the field's value from a section of text (ChatAdapter) or
/// a JSON value (JSONAdapter). The error is the validation message.
pub fn parse_value(ty: &TypeSpec, value: &Py) -> Result<Value, String> {
    // 1. `str` takes Python's `str()` of anything.
    if *ty == TypeSpec::Str {
        return Ok(Value::String(py_str(value)));
    }
    let mut cleaned: Option<Py> = None;
    // 3. Literal: the value itself, or its text without `Literal[...]`/quotes around it.
    if let TypeSpec::Literal(members) = ty {
        if members.iter().any(|m| py_eq(value, &literal_py(m))) {
            return to_json(value);
        }
        if let Py::Str(s) = value {
            let mut v = py_strip(s);
            if (v.starts_with("Literal[") || v.starts_with("str[")) && v.ends_with(']') {
                let open = v.find('[').unwrap_or(0);
                v = &v[open + 1..v.len() - 1];
            }
            let mut chars = v.chars();
            if let (Some(first), Some(last)) = (chars.next(), chars.next_back())
                && first == last
                && (first == '"' || first == '\'')
            {
                v = &v[1..v.len() - 1];
            }
            if members
                .iter()
                .any(|m| matches!(m, LiteralValue::Str(x) if x == v))
            {
                return Ok(Value::String(v.to_string()));
            }
            cleaned = Some(Py::Str(v.to_string()));
        }
    }
    let value = cleaned.as_ref().unwrap_or(value);
    // 4. Values that are not text (JSONAdapter) are validated as they are.
    let Py::Str(text) = value else {
        return validate(ty, value, false, 0);
    };
    // 5. `Optional[str]` keeps the text (never `None`).
    if matches!(ty, TypeSpec::Optional(inner) if **inner == TypeSpec::Str) {
        return Ok(Value::String(text.clone()));
    }
    // 6. Lenient JSON, then Python literals, then the raw text.
    let mut candidate = json_repair::loads(text)?;
    if candidate.is_empty_str() && !text.is_empty() {
        candidate = literal_eval(text).unwrap_or_else(|_| Py::Str(text.clone()));
    }
    // 7. Pydantic's lax validation; a DSPy type (`Code`, `Reasoning`) that refuses the
    //    candidate is validated from the original text, as DSPy retries it.
    match validate(ty, &candidate, false, 0) {
        Err(_) if is_str_like(ty) => validate(ty, value, false, 0),
        other => other,
    }
}

/// DSPy's string-like types, whose validators take a string or a one-field dict.
fn is_str_like(ty: &TypeSpec) -> bool {
    matches!(
        ty,
        TypeSpec::Custom(CustomType::Code(_) | CustomType::Reasoning)
    )
}

/// The validators of `dspy.Code` and `dspy.Reasoning` (`validate_input`): a string, or a dict
/// with a string `code` (`content`); a `Code`'s text is reduced to its fenced block
/// (`_filter_code`). The value is the string pydantic's `model_dump` gives.
fn validate_str_like(c: CustomType, v: &Py) -> Result<Value, String> {
    let (key, name) = match c {
        CustomType::Code(_) => ("code", "dspy.Code"),
        _ => ("content", "dspy.Reasoning"),
    };
    let text = match v {
        Py::Str(s) => s.as_str(),
        Py::Dict(entries) => {
            let found = entries
                .iter()
                .find(|(k, _)| matches!(k, Py::Str(k) if k == key));
            match found {
                Some((_, Py::Str(s))) => s.as_str(),
                Some((_, other)) => {
                    return Err(format!(
                        "Value error, `{key}` field must be a string [input_value={}]",
                        short_repr(other)
                    ));
                }
                None => {
                    return Err(format!(
                        "Value error, `{key}` field is required for `{name}`"
                    ));
                }
            }
        }
        other => {
            return Err(format!(
                "Value error, Received invalid value for `{name}` [input_value={}]",
                short_repr(other)
            ));
        }
    };
    Ok(Value::String(match c {
        CustomType::Code(_) => crate::types::extract_code(text).to_string(),
        _ => text.to_string(),
    }))
}

/// `TypeAdapter(annotation).validate_python(value)`: pydantic's lax validation of a Python
/// value, without `parse_value`'s reading of text (XMLAdapter's second try after `parse_value`
/// fails).
pub fn validate_python(ty: &TypeSpec, value: &Py) -> Result<Value, String> {
    validate(ty, value, false, 0)
}

/// `apply_output_field_defaults`: outputs in signature order; a missing `Optional` output is
/// `null`; other missing outputs stay missing.
pub fn apply_defaults(sig: &DynSignature, mut parsed: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::with_capacity(sig.outputs().len());
    for f in sig.outputs() {
        if let Some(v) = parsed.shift_remove(f.name()) {
            out.insert(f.name().to_string(), v);
        } else if matches!(f.ty(), TypeSpec::Optional(_)) {
            out.insert(f.name().to_string(), Value::Null);
        }
    }
    out
}

fn literal_py(m: &LiteralValue) -> Py {
    match m {
        LiteralValue::Str(s) => Py::Str(s.clone()),
        LiteralValue::Int(i) => Py::Int(i128::from(*i)),
        LiteralValue::Bool(b) => Py::Bool(*b),
        LiteralValue::None => Py::None,
    }
}

fn type_error(expected: &str, v: &Py) -> String {
    format!("Input should be {expected} [input_value={}]", short_repr(v))
}

/// Pydantic's validation of `v` against `ty` (`strict` = the exact-type pass of a union).
fn validate(ty: &TypeSpec, v: &Py, strict: bool, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("the value nests too deeply".to_string());
    }
    match ty {
        TypeSpec::Str => validate_str(v),
        TypeSpec::Int => validate_int(v, strict),
        TypeSpec::Float => validate_float(v, strict),
        TypeSpec::Bool => validate_bool(v, strict),
        TypeSpec::Any => to_json(v),
        TypeSpec::List(item) => match v {
            Py::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    validate(item, x, strict, depth + 1).map_err(|e| format!("item {i}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Err(type_error("a valid list", other)),
        },
        TypeSpec::Dict(value_ty) => match v {
            Py::Dict(entries) => {
                let mut map = Map::with_capacity(entries.len());
                for (k, x) in entries {
                    let key = match validate_str(k) {
                        Ok(Value::String(key)) => key,
                        _ => {
                            return Err(format!(
                                "key {}: {}",
                                short_repr(k),
                                type_error("a valid string", k)
                            ));
                        }
                    };
                    let x = validate(value_ty, x, strict, depth + 1)
                        .map_err(|e| format!("key {key:?}: {e}"))?;
                    map.insert(key, x);
                }
                Ok(Value::Object(map))
            }
            other => Err(type_error("a valid dictionary", other)),
        },
        TypeSpec::Optional(inner) => match v {
            Py::None => Ok(Value::Null),
            other => validate(inner, other, strict, depth + 1),
        },
        TypeSpec::Literal(members) => literal_member(members, v)
            .map(|m| to_json(&literal_py(m)))
            .unwrap_or_else(|| {
                let allowed: Vec<String> = members.iter().map(LiteralValue::python_repr).collect();
                Err(format!(
                    "Input should be {} [input_value={}]",
                    allowed.join(", "),
                    short_repr(v)
                ))
            }),
        TypeSpec::Model { name, schema } => validate_schema(schema, schema, v, strict, depth + 1)
            .map_err(|e| format!("{name}: {e}")),
        // `ToolCalls` validates as DSPy's `validate_input`: several shapes of calls are read.
        TypeSpec::Custom(crate::signature::CustomType::ToolCalls) => {
            let calls = crate::types::ToolCalls::from_value(&to_json(v)?)
                .map_err(|e| format!("ToolCalls: {e}"))?;
            serde_json::to_value(calls).map_err(|e| e.to_string())
        }
        TypeSpec::Custom(c) if is_str_like(ty) => validate_str_like(*c, v),
        TypeSpec::Custom(c) => validate_schema(c.schema(), c.schema(), v, strict, depth + 1)
            .map_err(|e| format!("{}: {e}", c.name())),
        #[allow(unreachable_patterns)]
        _ => to_json(v),
    }
}

/// Pydantic's literal lookup: an exact-type match first (`True` for `True`, `1` for `1`), then
/// Python's dict lookup over the members, where equal members (`1`, `True`, `1.0`) share one
/// key whose value is the last of them.
fn literal_member<'a>(members: &'a [LiteralValue], v: &Py) -> Option<&'a LiteralValue> {
    let exact = members.iter().find(|m| match (m, v) {
        (LiteralValue::Bool(a), Py::Bool(b)) => a == b,
        (LiteralValue::Int(a), Py::Int(b)) => i128::from(*a) == *b,
        (LiteralValue::Str(a), Py::Str(b)) => a == b,
        _ => false,
    });
    exact.or_else(|| members.iter().rev().find(|m| py_eq(v, &literal_py(m))))
}

fn validate_str(v: &Py) -> Result<Value, String> {
    match v {
        Py::Str(s) => Ok(Value::String(s.clone())),
        Py::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => Ok(Value::String(s.to_string())),
            Err(_) => Err(type_error(
                "a valid string, unable to parse raw data as a unicode string",
                v,
            )),
        },
        other => Err(type_error("a valid string", other)),
    }
}

fn validate_int(v: &Py, strict: bool) -> Result<Value, String> {
    match v {
        // Pydantic's lax mode reads `bytes` as their UTF-8 text.
        Py::Bytes(b) if !strict => match std::str::from_utf8(b) {
            Ok(text) => validate_int(&Py::Str(text.to_string()), strict),
            Err(_) => Err(type_error("a valid number", v)),
        },
        Py::Int(i) => int_to_json(*i),
        Py::Bool(b) if !strict => Ok(Value::from(u8::from(*b))),
        Py::BigInt(s) => Err(format!("the integer {s} does not fit in 64 bits")),
        Py::Float(f) if !strict => {
            if !f.is_finite() {
                Err(type_error("a finite number", v))
            } else if f.fract() != 0.0 {
                Err(type_error(
                    "a valid integer, got a number with a fractional part",
                    v,
                ))
            } else if f.abs() < 1.8e19 {
                int_to_json(*f as i128)
            } else {
                Err(format!("the integer {f} does not fit in 64 bits"))
            }
        }
        Py::Str(s) if !strict => match parse_int_text(s) {
            Some(i) => int_to_json(i),
            None => Err(type_error(
                "a valid integer, unable to parse string as an integer",
                v,
            )),
        },
        other => Err(type_error("a valid integer", other)),
    }
}

/// Pydantic's `str` → `int`: surrounding whitespace, a sign, digits with single underscores
/// between them, optionally `.` and zeros (`12.000`).
fn parse_int_text(s: &str) -> Option<i128> {
    let t = py_strip(s);
    let (negative, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int_part, frac) = match t.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (t, None),
    };
    if let Some(f) = frac
        && (f.is_empty() || !f.bytes().all(|b| b == b'0'))
    {
        return None;
    }
    let digits = strip_underscores(int_part)?;
    let magnitude: i128 = digits.parse().ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// Digits with single underscores between them (Python's numeric literal rule), without the
/// underscores; `None` if the text is anything else.
fn strip_underscores(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_digit() || !bytes[bytes.len() - 1].is_ascii_digit() {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut prev_underscore = false;
    for &b in bytes {
        match b {
            b'0'..=b'9' => {
                out.push(char::from(b));
                prev_underscore = false;
            }
            b'_' if !prev_underscore => prev_underscore = true,
            _ => return None,
        }
    }
    Some(out)
}

/// Python's `float(text)` as pydantic applies it to strings: whitespace around, underscores
/// between digits, `inf`/`infinity`/`nan` in any case.
pub fn parse_float_text(s: &str) -> Option<f64> {
    let t = py_strip(s);
    if t.is_empty() {
        return None;
    }
    let unsigned = t.trim_start_matches(['+', '-']);
    if t.len() - unsigned.len() > 1 {
        return None;
    }
    let lower = unsigned.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return t.parse::<f64>().ok();
    }
    // Underscores are allowed only between two digits.
    let b = t.as_bytes();
    let mut cleaned = String::with_capacity(t.len());
    for (i, &c) in b.iter().enumerate() {
        if c == b'_' {
            let ok =
                i > 0 && i + 1 < b.len() && b[i - 1].is_ascii_digit() && b[i + 1].is_ascii_digit();
            if !ok {
                return None;
            }
        } else if c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-') {
            cleaned.push(char::from(c));
        } else {
            return None;
        }
    }
    cleaned.parse::<f64>().ok()
}

fn float_json(f: f64, v: &Py) -> Result<Value, String> {
    Number::from_f64(f).map(Value::Number).ok_or_else(|| {
        format!(
            "{} is a valid float for DSPy but cannot be represented in JSON",
            short_repr(v)
        )
    })
}

fn validate_float(v: &Py, strict: bool) -> Result<Value, String> {
    match v {
        // Pydantic's lax mode reads `bytes` as their UTF-8 text.
        Py::Bytes(b) if !strict => match std::str::from_utf8(b) {
            Ok(text) => validate_float(&Py::Str(text.to_string()), strict),
            Err(_) => Err(type_error("a valid number", v)),
        },
        Py::Float(f) => float_json(*f, v),
        Py::Int(i) => float_json(*i as f64, v),
        Py::BigInt(s) => float_json(s.parse::<f64>().unwrap_or(f64::INFINITY), v),
        Py::Bool(b) if !strict => Ok(Value::from(if *b { 1.0 } else { 0.0 })),
        Py::Str(s) if !strict => match parse_float_text(s) {
            Some(f) => float_json(f, v),
            None => Err(type_error(
                "a valid number, unable to parse string as a number",
                v,
            )),
        },
        other => Err(type_error("a valid number", other)),
    }
}

fn validate_bool(v: &Py, strict: bool) -> Result<Value, String> {
    match v {
        // Pydantic's lax mode reads `bytes` as their UTF-8 text.
        Py::Bytes(b) if !strict => match std::str::from_utf8(b) {
            Ok(text) => validate_bool(&Py::Str(text.to_string()), strict),
            Err(_) => Err(type_error("a valid number", v)),
        },
        Py::Bool(b) => Ok(Value::Bool(*b)),
        Py::Int(0) if !strict => Ok(Value::Bool(false)),
        Py::Int(1) if !strict => Ok(Value::Bool(true)),
        Py::Float(f) if !strict && *f == 0.0 => Ok(Value::Bool(false)),
        Py::Float(f) if !strict && *f == 1.0 => Ok(Value::Bool(true)),
        Py::Str(s) if !strict => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "t" | "y" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "off" | "f" | "n" | "0" => Ok(Value::Bool(false)),
            _ => Err(type_error("a valid boolean, unable to interpret input", v)),
        },
        other => Err(type_error("a valid boolean", other)),
    }
}

/// Validation against a JSON schema in pydantic's layout (what a model type carries): `$ref`
/// into the root's `$defs`, `anyOf`/`oneOf` (exact-type pass first, then lax, as pydantic's
/// smart unions), `allOf`, `enum`/`const`, the primitive types with their bounds, arrays, and
/// objects (properties in schema order, defaults for missing optional ones, extra keys dropped
/// unless `additionalProperties` says otherwise). `pattern` and `format` are not checked.
fn validate_schema(
    schema: &Value,
    root: &Value,
    v: &Py,
    strict: bool,
    depth: usize,
) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("the schema or value nests too deeply".to_string());
    }
    let map = match schema {
        Value::Bool(true) => return to_json(v),
        Value::Bool(false) => return Err("no value is allowed here".to_string()),
        Value::Object(map) => map,
        _ => return to_json(v),
    };
    if let Some(Value::String(reference)) = map.get("$ref") {
        let target = reference
            .strip_prefix("#/")
            .and_then(|path| path.split('/').try_fold(root, |node, part| node.get(part)))
            .ok_or_else(|| format!("the schema reference {reference} does not resolve"))?;
        return validate_schema(target, root, v, strict, depth + 1);
    }
    if let Some(Value::Array(all)) = map.get("allOf") {
        let mut last = to_json(v)?;
        for s in all {
            last = validate_schema(s, root, v, strict, depth + 1)?;
        }
        return Ok(last);
    }
    let union = map
        .get("anyOf")
        .or_else(|| map.get("oneOf"))
        .and_then(Value::as_array);
    if let Some(branches) = union {
        return validate_union(branches, root, v, strict, depth);
    }
    if let Some(Value::Array(types)) = map.get("type") {
        let branches: Vec<Value> = types
            .iter()
            .map(|t| {
                let mut m = map.clone();
                m.insert("type".to_string(), t.clone());
                Value::Object(m)
            })
            .collect();
        return validate_union(&branches, root, v, strict, depth);
    }
    if let Some(Value::Array(members)) = map.get("enum") {
        return members
            .iter()
            .find(|m| py_eq(v, &super::py::from_json(m)))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "Input should be one of {} [input_value={}]",
                    super::text::compact_json(&Value::Array(members.clone())),
                    short_repr(v)
                )
            });
    }
    if let Some(c) = map.get("const") {
        return if py_eq(v, &super::py::from_json(c)) {
            Ok(c.clone())
        } else {
            Err(format!(
                "Input should be {} [input_value={}]",
                super::text::compact_json(c),
                short_repr(v)
            ))
        };
    }
    let ty = map.get("type").and_then(Value::as_str).or_else(|| {
        (map.contains_key("properties") || map.contains_key("additionalProperties"))
            .then_some("object")
    });
    match ty {
        Some("string") => {
            let out = validate_str(v)?;
            if let Value::String(s) = &out {
                check_len(
                    map,
                    s.chars().count(),
                    "minLength",
                    "maxLength",
                    "characters",
                )?;
            }
            Ok(out)
        }
        Some("integer") => {
            let out = validate_int(v, strict)?;
            check_bounds(map, out.as_f64().unwrap_or(0.0))?;
            Ok(out)
        }
        Some("number") => {
            let out = validate_float(v, strict)?;
            check_bounds(map, out.as_f64().unwrap_or(0.0))?;
            Ok(out)
        }
        Some("boolean") => validate_bool(v, strict),
        Some("null") => match v {
            Py::None => Ok(Value::Null),
            other => Err(type_error("None", other)),
        },
        Some("array") => {
            let Py::List(items) = v else {
                return Err(type_error("a valid list", v));
            };
            check_len(map, items.len(), "minItems", "maxItems", "items")?;
            let prefix = map.get("prefixItems").and_then(Value::as_array);
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let item_schema = match prefix.and_then(|p| p.get(i)) {
                    Some(s) => s,
                    None => map.get("items").unwrap_or(&Value::Bool(true)),
                };
                out.push(
                    validate_schema(item_schema, root, item, strict, depth + 1)
                        .map_err(|e| format!("item {i}: {e}"))?,
                );
            }
            Ok(Value::Array(out))
        }
        Some("object") => validate_object(map, root, v, strict, depth),
        _ => to_json(v),
    }
}

fn validate_union(
    branches: &[Value],
    root: &Value,
    v: &Py,
    strict: bool,
    depth: usize,
) -> Result<Value, String> {
    for b in branches {
        if let Ok(out) = validate_schema(b, root, v, true, depth + 1) {
            return Ok(out);
        }
    }
    let mut errors = Vec::new();
    if !strict {
        for b in branches {
            match validate_schema(b, root, v, false, depth + 1) {
                Ok(out) => return Ok(out),
                Err(e) => errors.push(e),
            }
        }
    }
    Err(if errors.is_empty() {
        format!("no variant of the union accepts {}", short_repr(v))
    } else {
        errors.join("; ")
    })
}

fn validate_object(
    map: &Map<String, Value>,
    root: &Value,
    v: &Py,
    strict: bool,
    depth: usize,
) -> Result<Value, String> {
    let Py::Dict(entries) = v else {
        return Err(type_error("a valid dictionary or instance of the model", v));
    };
    let properties = map.get("properties").and_then(Value::as_object);
    let required: Vec<&str> = map
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let additional = map.get("additionalProperties");
    let mut out = Map::new();
    if let Some(props) = properties {
        for (name, prop) in props {
            match Py::dict_get(entries, name) {
                Some(x) => {
                    let x = validate_schema(prop, root, x, strict, depth + 1)
                        .map_err(|e| format!("{name}: {e}"))?;
                    out.insert(name.clone(), x);
                }
                None if required.contains(&name.as_str()) => {
                    return Err(format!("{name}: Field required"));
                }
                None => {
                    if let Some(default) = prop.get("default") {
                        out.insert(name.clone(), default.clone());
                    } else if admits_null(prop) {
                        out.insert(name.clone(), Value::Null);
                    }
                }
            }
        }
    }
    for (k, x) in entries {
        let Py::Str(key) = k else {
            if properties.is_none() {
                return Err(format!(
                    "key {}: Input should be a valid string",
                    short_repr(k)
                ));
            }
            continue;
        };
        if properties.is_some_and(|p| p.contains_key(key)) {
            continue;
        }
        match additional {
            Some(Value::Bool(false)) => {
                return Err(format!("{key}: Extra inputs are not permitted"));
            }
            Some(s @ Value::Object(_)) => {
                let x = validate_schema(s, root, x, strict, depth + 1)
                    .map_err(|e| format!("{key}: {e}"))?;
                out.insert(key.clone(), x);
            }
            // A model without `additionalProperties` ignores extra keys (pydantic's default);
            // a plain object keeps them.
            None if properties.is_some() => {}
            _ => {
                out.insert(key.clone(), to_json(x)?);
            }
        }
    }
    Ok(Value::Object(out))
}

fn admits_null(schema: &Value) -> bool {
    let Some(map) = schema.as_object() else {
        return false;
    };
    match map.get("type") {
        Some(Value::String(t)) if t == "null" => return true,
        Some(Value::Array(ts)) if ts.iter().any(|t| t == "null") => return true,
        _ => {}
    }
    map.get("anyOf")
        .or_else(|| map.get("oneOf"))
        .and_then(Value::as_array)
        .is_some_and(|bs| bs.iter().any(admits_null))
}

fn check_len(
    map: &Map<String, Value>,
    len: usize,
    min_key: &str,
    max_key: &str,
    unit: &str,
) -> Result<(), String> {
    if let Some(min) = map.get(min_key).and_then(Value::as_u64)
        && (len as u64) < min
    {
        return Err(format!("should have at least {min} {unit}, not {len}"));
    }
    if let Some(max) = map.get(max_key).and_then(Value::as_u64)
        && (len as u64) > max
    {
        return Err(format!("should have at most {max} {unit}, not {len}"));
    }
    Ok(())
}

fn check_bounds(map: &Map<String, Value>, x: f64) -> Result<(), String> {
    let bound = |k: &str| map.get(k).and_then(Value::as_f64);
    if let Some(b) = bound("minimum")
        && x < b
    {
        return Err(format!("Input should be greater than or equal to {b}"));
    }
    if let Some(b) = bound("maximum")
        && x > b
    {
        return Err(format!("Input should be less than or equal to {b}"));
    }
    if let Some(b) = bound("exclusiveMinimum")
        && x <= b
    {
        return Err(format!("Input should be greater than {b}"));
    }
    if let Some(b) = bound("exclusiveMaximum")
        && x >= b
    {
        return Err(format!("Input should be less than {b}"));
    }
    Ok(())
}

/// Output types by DSPy's name that exercise every path of the validation (`Citation` is a
/// model with `title: str` and `year: int`): the unit tests, fuzz targets and differential tests.
#[cfg(any(test, feature = "fuzzing"))]
pub const SAMPLE_TYPE_NAMES: &[&str] = &[
    "int",
    "float",
    "bool",
    "list[int]",
    "list[str]",
    "dict[str, int]",
    "Optional[int]",
    "Optional[str]",
    "Literal['yes', 'no']",
    "Literal[1, 2, 3]",
    "Any",
    "Citation",
    "list[Citation]",
    "Optional[float]",
    "list[list[int]]",
    "dict[str, Any]",
    "Literal['a', 1, True, None]",
    "str",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(ty: &TypeSpec, text: &str) -> Result<Value, String> {
        parse_value(ty, &Py::Str(text.to_string()))
    }

    fn list(t: TypeSpec) -> TypeSpec {
        TypeSpec::List(Box::new(t))
    }

    /// A `b'…'` answer reaches `ast.literal_eval` (json_repair finds nothing in it) and is a
    /// `bytes`: DSPy 3.4.1's results, from `parse_value(text, annotation)` in its venv.
    #[test]
    fn bytes_literals_validate_as_pydantic_validates_bytes() {
        let ty = |name: &str| {
            DynSignature::parse(&format!("a -> x: {name}"))
                .unwrap()
                .outputs()[0]
                .ty()
                .clone()
        };
        assert_eq!(chat(&TypeSpec::Int, "b'1'"), Ok(json!(1)));
        assert_eq!(chat(&TypeSpec::Float, "b'1'"), Ok(json!(1.0)));
        assert_eq!(chat(&TypeSpec::Bool, "b'1'"), Ok(json!(true)));
        assert!(chat(&TypeSpec::Int, "b'a'").is_err());
        assert!(chat(&ty("Literal['a']"), "b'a'").is_err());
        assert_eq!(chat(&TypeSpec::Str, "b'a'"), Ok(json!("b'a'")));
        // `dspy.Code` and `dspy.Reasoning` refuse `bytes` and keep the text as it was (a fuzz
        // find: the text lost its `B"` before).
        let code = ty("Code['python']");
        for text in ["b'a'", "B\"$t re@turn a + b\"", "rb'x'"] {
            assert_eq!(chat(&code, text), Ok(json!(text)), "{text}");
            assert_eq!(chat(&ty("Reasoning"), text), Ok(json!(text)), "{text}");
        }
        let mut repr = String::new();
        super::super::py::write_repr(&mut repr, &literal_eval("b'it\\'s\\x00\"'").unwrap());
        assert_eq!(repr, "b'it\\'s\\x00\"'");
        let mut repr = String::new();
        super::super::py::write_repr(&mut repr, &literal_eval("b\"it's\"").unwrap());
        assert_eq!(repr, "b\"it's\"");
    }

    #[test]
    fn chat_coercions_match_dspy() {
        let b = TypeSpec::Bool;
        for t in [
            "True", "true", "TRUE", "yes", "Yes", "on", "t", "y", "1", "'True'", "\"true\"", "1.0",
        ] {
            assert_eq!(chat(&b, t), Ok(json!(true)), "{t}");
        }
        for t in ["False", "false", "no", "off", "f", "n", "0"] {
            assert_eq!(chat(&b, t), Ok(json!(false)), "{t}");
        }
        for t in ["2", "null", "", "maybe", "True."] {
            assert!(chat(&b, t).is_err(), "{t}");
        }
        let i = TypeSpec::Int;
        for (t, want) in [
            ("12", 12),
            ("12.0", 12),
            ("1e3", 1000),
            ("'12'", 12),
            ("\"12\"", 12),
            ("0x10", 16),
            ("1_000", 1000),
            ("+5", 5),
            ("True", 1),
            ("-3", -3),
        ] {
            assert_eq!(chat(&i, t), Ok(json!(want)), "{t}");
        }
        for t in ["12.5", "twelve", "12 apples", "[12]", "null", ""] {
            assert!(chat(&i, t).is_err(), "{t}");
        }
        let f = TypeSpec::Float;
        for (t, want) in [
            ("1.5", 1.5),
            ("1", 1.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("'2.5'", 2.5),
        ] {
            assert_eq!(chat(&f, t), Ok(json!(want)), "{t}");
        }
        for t in ["1,5", "3.14abc", "null", "", "high"] {
            assert!(chat(&f, t).is_err(), "{t}");
        }
        // Non-finite floats are valid for DSPy but have no JSON form.
        assert!(chat(&f, "nan").is_err());
        let li = list(TypeSpec::Int);
        for t in [
            "[1, 2]",
            "1, 2",
            "(1, 2)",
            "{1, 2}",
            "```json\n[1,2]\n```",
            "[1, '2']",
        ] {
            assert_eq!(chat(&li, t), Ok(json!([1, 2])), "{t}");
        }
        assert_eq!(chat(&li, "0, 1"), Ok(json!([0, 1])));
        for t in ["1", "", "- 1\n- 2"] {
            assert!(chat(&li, t).is_err(), "{t}");
        }
        let ls = list(TypeSpec::Str);
        for t in ["[\"a\", \"b\"]", "['a', 'b']", "[a, b]"] {
            assert_eq!(chat(&ls, t), Ok(json!(["a", "b"])), "{t}");
        }
        for t in ["a, b", "a"] {
            assert!(chat(&ls, t).is_err(), "{t}");
        }
        let d = TypeSpec::Dict(Box::new(TypeSpec::Int));
        for t in ["{\"a\": 1}", "{'a': 1}", "{a: 1}", "{\"a\": \"1\"}"] {
            assert_eq!(chat(&d, t), Ok(json!({"a": 1})), "{t}");
        }
        for t in ["a: 1", ""] {
            assert!(chat(&d, t).is_err(), "{t}");
        }
    }

    #[test]
    fn literal_and_optional_match_dspy() {
        let lit = TypeSpec::Literal(vec![
            LiteralValue::Str("yes".into()),
            LiteralValue::Str("no".into()),
        ]);
        for (t, want) in [
            ("yes", "yes"),
            ("'yes'", "yes"),
            ("\"no\"", "no"),
            ("Literal['yes']", "yes"),
            ("Literal[yes]", "yes"),
            ("str[no]", "no"),
            ("  yes ", "yes"),
        ] {
            assert_eq!(chat(&lit, t), Ok(json!(want)), "{t}");
        }
        for t in ["Yes", "YES", "yes.", "maybe"] {
            assert!(chat(&lit, t).is_err(), "{t}");
        }
        let nums = TypeSpec::Literal(vec![
            LiteralValue::Int(1),
            LiteralValue::Int(2),
            LiteralValue::Int(3),
        ]);
        for t in ["2", "'2'", "Literal[2]", "2.0"] {
            assert_eq!(chat(&nums, t), Ok(json!(2)), "{t}");
        }
        let oi = TypeSpec::Optional(Box::new(TypeSpec::Int));
        assert_eq!(chat(&oi, "5"), Ok(json!(5)));
        assert_eq!(chat(&oi, "None"), Ok(Value::Null));
        assert_eq!(chat(&oi, "null"), Ok(Value::Null));
        assert!(chat(&oi, "none").is_err());
        assert!(chat(&oi, "").is_err());
        let os = TypeSpec::Optional(Box::new(TypeSpec::Str));
        assert_eq!(chat(&os, "None"), Ok(json!("None")));
        assert_eq!(chat(&os, ""), Ok(json!("")));
        let any = TypeSpec::Any;
        assert_eq!(chat(&any, "5"), Ok(json!(5)));
        assert_eq!(chat(&any, "None"), Ok(Value::Null));
        assert_eq!(chat(&any, "{'a': 1}"), Ok(json!({"a": 1})));
        assert_eq!(chat(&any, "hello world"), Ok(json!("hello world")));
        assert_eq!(chat(&any, ""), Ok(json!("")));
    }

    #[test]
    fn json_values_validate_laxly() {
        let py = |v: Value| super::super::py::from_json(&v);
        assert_eq!(parse_value(&TypeSpec::Str, &py(json!(42))), Ok(json!("42")));
        assert_eq!(
            parse_value(&TypeSpec::Str, &py(json!(["a", "b"]))),
            Ok(json!("['a', 'b']"))
        );
        assert_eq!(
            parse_value(&TypeSpec::Str, &py(json!(null))),
            Ok(json!("None"))
        );
        assert_eq!(parse_value(&TypeSpec::Int, &py(json!(2.0))), Ok(json!(2)));
        assert!(parse_value(&TypeSpec::Int, &py(json!(2.5))).is_err());
        assert_eq!(parse_value(&TypeSpec::Int, &py(json!(true))), Ok(json!(1)));
        assert_eq!(parse_value(&TypeSpec::Float, &py(json!(1))), Ok(json!(1.0)));
        assert_eq!(
            parse_value(&TypeSpec::Float, &py(json!("0.85"))),
            Ok(json!(0.85))
        );
    }

    #[test]
    fn models_validate_against_their_schema() {
        let schema = json!({
            "$defs": {"Inner": {"properties": {"z": {"default": 0, "title": "Z", "type": "integer"}},
                                 "title": "Inner", "type": "object"}},
            "properties": {
                "title": {"title": "Title", "type": "string"},
                "year": {"title": "Year", "type": "integer"},
                "inner": {"$ref": "#/$defs/Inner"},
                "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null, "title": "Note"}
            },
            "required": ["title", "year", "inner"],
            "title": "Cite", "type": "object"
        });
        let ty = TypeSpec::Model {
            name: "Cite".into(),
            schema,
        };
        assert_eq!(
            chat(
                &ty,
                "{'year': '2017', 'title': 'T', 'inner': {}, 'extra': 1}"
            ),
            Ok(json!({"title": "T", "year": 2017, "inner": {"z": 0}, "note": null}))
        );
        assert!(chat(&ty, "{'title': 'T', 'inner': {}}").is_err());
        assert!(chat(&ty, "not json").is_err());
        assert!(chat(&ty, "null").is_err());
        assert!(chat(&ty, "").is_err());
        let closed = TypeSpec::Model {
            name: "C".into(),
            schema: json!({"additionalProperties": false, "properties": {"a": {"type": "integer"}},
                           "required": ["a"], "type": "object"}),
        };
        assert!(chat(&closed, "{\"a\": 1, \"b\": 2}").is_err());
    }

    #[test]
    fn numeric_text_rules() {
        assert_eq!(parse_int_text(" +1_2 "), Some(12));
        assert_eq!(parse_int_text("12.000"), Some(12));
        assert_eq!(parse_int_text("1_2.0"), Some(12));
        for t in [
            "12.", "1__0", "_1", "12.0_0", "12e0", "0x10", "1 2", "+-1", "",
        ] {
            assert_eq!(parse_int_text(t), None, "{t}");
        }
        assert_eq!(parse_float_text("1_0.5"), Some(10.5));
        assert_eq!(parse_float_text("1e1_0"), Some(1e10));
        assert_eq!(parse_float_text("inFinIty"), Some(f64::INFINITY));
        assert_eq!(parse_float_text("+inf"), Some(f64::INFINITY));
        for t in [
            "1e", "e5", "1__0", "_1", "1_", "1.5f", "infinit", "0x10", "1,5", ".",
        ] {
            assert_eq!(parse_float_text(t), None, "{t}");
        }
    }

    /// The result in the tagged form the Python side of the differential check writes.
    fn tag(v: &Value) -> Value {
        match v {
            Value::Number(n) if n.is_f64() => {
                let mut s = String::new();
                super::super::text::write_py_float(&mut s, n.as_f64().unwrap_or(f64::NAN));
                json!({"f": s})
            }
            Value::Number(n) => json!({"i": n.to_string()}),
            Value::Array(items) => Value::Array(items.iter().map(tag).collect()),
            Value::Object(map) => {
                json!({"d": map.iter().map(|(k, v)| json!([k, tag(v)])).collect::<Vec<_>>()})
            }
            other => other.clone(),
        }
    }

    /// Differential check against DSPy's `parse_value`: `DSPEX_PV_CORPUS=corpus.jsonl` (one
    /// JSON string per line) writes `corpus.jsonl.rust`, one object of results per type, to
    /// compare with `{name: tag(parse_value(text, annotation)) or {"err": ...}}` computed by
    /// `dspy.adapters.utils.parse_value` for the same type names (tagging as in the
    /// `json_repair` check: `{"i": ...}` for ints, `{"f": repr}` for floats, `{"d": pairs}`).
    #[test]
    #[ignore = "needs a corpus file; compares with DSPy offline"]
    fn dump_for_differential_check() {
        let Some(path) = std::env::var_os("DSPEX_PV_CORPUS") else {
            return;
        };
        let citation = TypeSpec::Model {
            name: "Citation".into(),
            schema: json!({"properties": {"title": {"title": "Title", "type": "string"},
                "year": {"title": "Year", "type": "integer"}},
                "required": ["title", "year"], "title": "Citation", "type": "object"}),
        };
        let names = SAMPLE_TYPE_NAMES;
        let types: Vec<(&str, TypeSpec)> = names
            .iter()
            .map(|n| {
                let sig = DynSignature::parse_with_types(
                    &format!("a -> x: {n}"),
                    &[("Citation", citation.clone())],
                )
                .unwrap();
                (*n, sig.outputs()[0].ty().clone())
            })
            .collect();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            let input: String = serde_json::from_str(line).unwrap();
            let mut row = Map::new();
            for (name, ty) in &types {
                let r = match parse_value(ty, &Py::Str(input.clone())) {
                    Ok(v) => tag(&v),
                    Err(_) => json!({"err": "x"}),
                };
                row.insert((*name).to_string(), r);
            }
            out.push_str(&serde_json::to_string(&row).unwrap());
            out.push('\n');
        }
        let mut dest = path.clone();
        dest.push(".rust");
        std::fs::write(dest, out).unwrap();
    }
}
