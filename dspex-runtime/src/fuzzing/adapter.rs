//! The adapters' parsers: signature strings, ChatAdapter, JSONAdapter and XMLAdapter completions, the
//! `json_repair` and `ast.literal_eval` ports, and the lax validation of values into typed
//! outputs. Also the plain wrappers the differential tests compare with Python.

use super::{same_values, split_first, split_line};
use crate::adapter::{Adapter, AdapterError, ChatAdapter, JSONAdapter, XMLAdapter};
use crate::example::Example;
use crate::lm::Role;
use crate::pycompat::json_repair::tag;
use crate::pycompat::py::{Py, from_json, to_json, write_repr};
use crate::signature::{CustomType, DynSignature, LiteralValue, TypeSpec};
use serde_json::{Map, Value, json};

/// The model types a fuzzed signature may name (DSPy's fixtures use `Citation`).
pub fn models() -> Vec<(&'static str, TypeSpec)> {
    vec![(
        "Citation",
        TypeSpec::Model {
            name: "Citation".into(),
            schema: json!({"properties": {"title": {"title": "Title", "type": "string"},
                "year": {"title": "Year", "type": "integer"}},
                "required": ["title", "year"], "title": "Citation", "type": "object"}),
        },
    )]
}

/// The output types the value targets and the differential tests use, by DSPy's name.
pub const TYPE_NAMES: &[&str] = crate::pycompat::value::SAMPLE_TYPE_NAMES;

/// The type named `name` (one of [`TYPE_NAMES`], or any type the grammar reads).
pub fn type_named(name: &str) -> Option<TypeSpec> {
    let sig = DynSignature::parse_with_types(&format!("a -> x: {name}"), &models()).ok()?;
    Some(sig.outputs()[0].ty().clone())
}

/// Target `parse_signature`: the signature grammar never panics, errors point inside the
/// input, field names are the input's text at their spans.
pub fn parse_signature(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (sig, errors) = dspex_grammar::parse_signature_partial(text);
    for e in &errors {
        assert!(e.span.start <= e.span.end && e.span.end <= text.len());
        assert!(e.column >= 1);
    }
    for f in sig.fields() {
        assert_eq!(&text[f.name_span.start..f.name_span.end], f.name);
        if let Some(ty) = &f.ty {
            let _ = (ty.dspy_name(), ty.rust_name());
        }
    }
    let _ = dspex_grammar::parse_type(text);
}

/// A signature line and a completion: the first line of the input is the signature string
/// (with the [`models`] known), the rest the completion. `None` when the line is no signature.
fn signature_and_completion(data: &[u8]) -> Option<(DynSignature, &str)> {
    let (line, completion) = split_line(data)?;
    let sig = DynSignature::parse_with_types(line, &models()).ok()?;
    (!sig.outputs().is_empty()).then_some((sig, completion))
}

/// Target `chat_parse`: `ChatAdapter::parse` of a completion (first line: the signature).
/// A success holds every output with a value of its type, and formatting those values as a
/// demo's answer parses back to the same values; a failure is a parse error naming the adapter,
/// the completion (or the part of it that was read) and (if any) an output field.
pub fn chat_parse(data: &[u8]) {
    if let Some((sig, completion)) = signature_and_completion(data) {
        check_adapter(&ChatAdapter, &sig, completion);
    }
}

/// Target `json_parse`: [`chat_parse`]'s checks for `JSONAdapter::parse`.
pub fn json_parse(data: &[u8]) {
    if let Some((sig, completion)) = signature_and_completion(data) {
        check_adapter(&JSONAdapter, &sig, completion);
    }
}

/// Target `xml_parse`: [`chat_parse`]'s checks for `XMLAdapter::parse` (strict XML: a
/// malformed document is a parse error, never a panic).
pub fn xml_parse(data: &[u8]) {
    if let Some((sig, completion)) = signature_and_completion(data) {
        check_adapter(&XMLAdapter, &sig, completion);
    }
}

fn check_adapter(adapter: &dyn Adapter, sig: &DynSignature, completion: &str) {
    let fields = match adapter.parse(sig, completion) {
        Ok(fields) => fields,
        Err(AdapterError::Parse {
            adapter: name,
            field,
            message,
            completion: raw,
        }) => {
            assert_eq!(name, adapter.name());
            // JSONAdapter, as DSPy's, reports the object it found in the completion.
            assert!(
                completion.contains(raw.as_str()),
                "the error carries {raw:?}, not (part of) the completion"
            );
            assert!(!message.is_empty());
            if let Some(field) = field {
                assert!(
                    sig.outputs().iter().any(|f| f.name() == field),
                    "the error names `{field}`, not an output of {sig:?}"
                );
            }
            return;
        }
        Err(e) => panic!("parse failed with a non-parse error: {e:?}"),
    };
    let names: Vec<&str> = fields.keys().map(String::as_str).collect();
    let expected: Vec<&str> = sig.outputs().iter().map(|f| f.name()).collect();
    assert_eq!(names, expected, "the outputs, in signature order");
    for f in sig.outputs() {
        assert_conforms(f.ty(), &fields[f.name()], f.name());
    }
    if round_trips(adapter, sig, &fields) {
        let demo = demo_answer(adapter, sig, &fields);
        let again = adapter
            .parse(sig, &demo)
            .unwrap_or_else(|e| panic!("the formatted answer {demo:?} does not parse: {e}"));
        assert!(
            same_values(
                &Value::Object(again.clone()),
                &Value::Object(fields.clone())
            ),
            "{fields:?} formatted as {demo:?} parses as {again:?}"
        );
    }
}

/// Whether the values are ones the adapter's format writes so that its parse reads them back
/// (DSPy's own formats lose some: a `None` prints as text, text that holds a field header or
/// another line break than `\n` is split differently, `Any` text that looks like a number).
fn round_trips(adapter: &dyn Adapter, sig: &DynSignature, fields: &Map<String, Value>) -> bool {
    fn plain_text(s: &str) -> bool {
        !s.contains("[[")
            && !s.chars().any(|c| {
                crate::pycompat::text::is_line_break(c) && c != '\n'
                    || c != '\n' && crate::pycompat::text::is_py_space(c) && c != ' '
            })
            && crate::pycompat::text::py_strip(s) == s
    }
    fn plain(v: &Value) -> bool {
        match v {
            Value::Null => false,
            Value::String(s) => plain_text(s),
            Value::Array(items) => items.iter().all(plain),
            Value::Object(map) => map.iter().all(|(k, v)| plain_text(k) && plain(v)),
            _ => true,
        }
    }
    // XML text cannot hold what XML 1.0 forbids, DSPy's escaping leaves `]]>` as it is, and its
    // dict keys become tags only when ASCII names are (other keys are checked by the
    // differential tests, not here).
    fn xml_plain(v: &Value) -> bool {
        let text = |s: &str| {
            !s.contains("]]>")
                && s.chars().all(|c| {
                    matches!(c, '\t' | '\n' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
                })
        };
        match v {
            Value::String(s) => text(s),
            Value::Array(items) => items.iter().all(xml_plain),
            Value::Object(map) => map
                .iter()
                .all(|(k, v)| k.is_ascii() && text(k) && xml_plain(v)),
            _ => true,
        }
    }
    // Inside XML every scalar is text: under `Any` (`list` is `list[Any]`) a number comes back
    // as a string, as in DSPy.
    fn has_any(ty: &TypeSpec) -> bool {
        match ty {
            TypeSpec::Any => true,
            TypeSpec::List(t) | TypeSpec::Dict(t) | TypeSpec::Optional(t) => has_any(t),
            _ => false,
        }
    }
    // DSPy's XMLAdapter escapes `&` and `<` in a demo's `str` outputs and in the nested XML
    // of lists, dicts and models only: text of another type written as text (`Code`,
    // `Reasoning`, or the JSON of `ToolCalls`) holding them is not XML, in DSPy as here.
    fn unescaped_markup(ty: &TypeSpec, v: &Value) -> bool {
        match ty.custom() {
            _ if *ty == TypeSpec::Str => false,
            Some(_) => v.to_string().contains(['&', '<']),
            None => v.as_str().is_some_and(|s| s.contains(['&', '<'])),
        }
    }
    // DSPy reads a `Code` or `Reasoning` answer leniently: a fenced block, or whatever
    // json_repair finds inside the text — a `{"code": …}` / `{"content": …}` object, a quoted
    // string (`def"add\n"d` reads as `d`), a bare word after a bracket (`(  (return` reads as
    // `return`) —, or else the Python string literal the text is (`""""2"` reads as `2`), is
    // unwrapped. A value that holds one reads back as its
    // inside, and an empty one (a fence with nothing in it) is an empty XML element, which
    // DSPy's XMLAdapter reads as a missing `code` — in DSPy as here.
    fn unwraps_when_read(ty: &TypeSpec, v: &Value) -> bool {
        matches!(
            ty.custom(),
            Some(CustomType::Code(_) | CustomType::Reasoning)
        ) && v.as_str().is_some_and(|s| {
            s.contains('`')
                || s.trim().is_empty()
                || !crate::pycompat::json_repair::loads(s).is_ok_and(|v| v.is_empty_str())
                || matches!(
                    crate::pycompat::literal_eval::literal_eval(s),
                    Ok(Py::Str(_) | Py::Dict(_))
                )
        })
    }
    let chat = adapter.name() == "ChatAdapter";
    let xml = adapter.name() == "XMLAdapter";
    sig.outputs().iter().all(|f| {
        let v = &fields[f.name()];
        !((chat || xml) && matches!(f.ty(), TypeSpec::Any | TypeSpec::Optional(_)))
            && !unwraps_when_read(f.ty(), v)
            && plain(v)
            && (!xml || (xml_plain(v) && !has_any(f.ty()) && !unescaped_markup(f.ty(), v)))
    })
}

/// An input value of type `ty` that every adapter formats: `"x"`, or for DSPy's own types a
/// value of their shape (an empty history, an image URL, …).
fn placeholder(ty: &TypeSpec) -> Value {
    match ty.custom() {
        Some(CustomType::History) => json!({"messages": []}),
        Some(CustomType::Image) => json!({"url": "https://example.com/x.png"}),
        Some(CustomType::Audio) => json!({"data": "", "audio_format": "wav"}),
        Some(CustomType::File) => {
            json!({"file_data": null, "file_id": "x", "filename": null})
        }
        _ => Value::from("x"),
    }
}

/// The assistant turn the adapter formats for a demo holding `fields` as its outputs.
fn demo_answer(adapter: &dyn Adapter, sig: &DynSignature, fields: &Map<String, Value>) -> String {
    let mut demo = Example::new();
    let mut inputs = Example::new();
    for f in sig.inputs() {
        demo.insert(f.name(), placeholder(f.ty()));
        inputs.insert(f.name(), placeholder(f.ty()));
    }
    for (k, v) in fields {
        demo.insert(k.clone(), v.clone());
    }
    let messages = adapter
        .format(sig, &[demo], &inputs)
        .unwrap_or_else(|e| panic!("parsed values do not format: {e}"));
    messages
        .iter()
        .find(|m| m.role == Role::Assistant)
        .map(|m| m.content.text().into_owned())
        .unwrap_or_else(|| panic!("no assistant turn for a complete demo: {messages:?}"))
}

/// Panics unless `v` is a value of type `ty` (models: an object; their schema is checked by
/// the validation itself).
fn assert_conforms(ty: &TypeSpec, v: &Value, field: &str) {
    let ok = match ty {
        TypeSpec::Str => v.is_string(),
        TypeSpec::Bool => v.is_boolean(),
        TypeSpec::Int => v.is_i64() || v.is_u64(),
        TypeSpec::Float => v.as_f64().is_some_and(f64::is_finite),
        TypeSpec::Any => true,
        TypeSpec::List(t) => {
            let items = v.as_array();
            if let Some(items) = items {
                for item in items {
                    assert_conforms(t, item, field);
                }
            }
            items.is_some()
        }
        TypeSpec::Dict(t) => {
            let map = v.as_object();
            if let Some(map) = map {
                for item in map.values() {
                    assert_conforms(t, item, field);
                }
            }
            map.is_some()
        }
        TypeSpec::Optional(t) => {
            if !v.is_null() {
                assert_conforms(t, v, field);
            }
            true
        }
        // Python's equality, as DSPy's `value in get_args(annotation)` (`True == 1`).
        TypeSpec::Literal(members) => members.iter().any(|m| {
            let member = match m {
                LiteralValue::Str(s) => Py::Str(s.clone()),
                LiteralValue::Int(i) => Py::Int(i128::from(*i)),
                LiteralValue::Bool(b) => Py::Bool(*b),
                LiteralValue::None => Py::None,
            };
            crate::pycompat::py::py_eq(&from_json(v), &member)
        }),
        TypeSpec::Model { .. } => v.is_object(),
        TypeSpec::Custom(crate::signature::CustomType::ToolCalls) => {
            v["tool_calls"].is_array() && crate::types::ToolCalls::from_value(v).is_ok()
        }
        // Code and Reasoning are string-like: their values are strings.
        TypeSpec::Custom(
            crate::signature::CustomType::Code(_) | crate::signature::CustomType::Reasoning,
        ) => v.is_string(),
        TypeSpec::Custom(_) => v.is_object(),
        other => panic!("the fuzz target does not know the type {other:?}: teach assert_conforms"),
    };
    assert!(ok, "field `{field}`: {v} is not a {}", ty.dspy_name());
}

/// `json_repair.loads(text)` as JSON (`Err` when a value has no JSON form or the reader gives up).
pub fn json_repair_loads(text: &str) -> Result<Value, String> {
    to_json(&crate::pycompat::json_repair::loads(text)?)
}

/// `json_repair.loads(text)` in the tagged form the differential tests compare: `null`/bools
/// and strings as they are, `{"i": "12"}` for ints, `{"f": repr}` for floats, lists as arrays,
/// `{"d": [[key, value], …]}` for dicts; `{"err": message}` when the reader gives up.
pub fn json_repair_tagged(text: &str) -> Value {
    match crate::pycompat::json_repair::loads(text) {
        Ok(v) => tag(&v),
        Err(e) => json!({ "err": e }),
    }
}

/// `ast.literal_eval(text)` in [`json_repair_tagged`]'s form (`{"err": message}` for errors).
pub fn literal_eval_tagged(text: &str) -> Value {
    match crate::pycompat::literal_eval::literal_eval(text) {
        Ok(v) => tag(&v),
        Err(e) => json!({ "err": e }),
    }
}

/// DSPy's `parse_value(text, annotation)` for the type named `type_name`: the value, or the
/// validation message.
pub fn parse_value_text(type_name: &str, text: &str) -> Result<Value, String> {
    let ty = type_named(type_name).ok_or_else(|| format!("no type `{type_name}`"))?;
    crate::pycompat::value::parse_value(&ty, &Py::Str(text.to_string()))
}

/// Target `tool_calls`: tool-call arguments as providers return them (JSON text the model
/// wrote), and `ToolCalls` values as a completion gives them. Reading never panics; provider
/// arguments always give an object; a `ToolCalls` value that reads, written and read again, is
/// the same calls.
pub fn tool_calls(data: &[u8]) {
    use crate::types::{ToolCall, ToolCalls};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let call = ToolCall::from_provider(Some("id".into()), "f", text);
    if let Ok(strict @ Value::Object(_)) = serde_json::from_str::<Value>(text) {
        // As Python's `json.loads` reads them: `-0` is the int 0 there and the float -0.0 in
        // serde_json, which compare equal.
        let args = Value::Object(call.args.clone());
        assert!(
            same_values(&args, &strict) || has_big_float(&strict),
            "valid JSON arguments {text:?} read as {args}, not as they are ({strict})"
        );
    }
    let Ok(value) = crate::pycompat::json_repair::loads(text).and_then(|v| to_json(&v)) else {
        return;
    };
    if let Ok(calls) = ToolCalls::from_value(&value) {
        let written = serde_json::to_value(&calls).expect("tool calls serialize");
        let back = ToolCalls::from_value(&written).expect("written tool calls read back");
        assert_eq!(back, calls);
    }
    let _ = crate::adapter::ChatAdapter.parse(
        &DynSignature::parse("q -> tool_calls: ToolCalls").expect("a valid signature"),
        &format!("[[ ## tool_calls ## ]]\n{text}"),
    );
}

/// Target `json_repair`: the lenient JSON reader. Valid JSON reads as `serde_json` reads it;
/// what it returns, written as JSON, reads back the same.
pub fn json_repair(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let result = crate::pycompat::json_repair::loads(text);
    if let Ok(strict) = serde_json::from_str::<Value>(text) {
        // Python's `json.loads` reads every valid JSON document (ints beyond 64 bits become
        // floats in serde_json and big ints in Python: not compared).
        let value = result.as_ref().unwrap_or_else(|e| {
            panic!("valid JSON {text:?} is refused: {e}");
        });
        if let Ok(value) = to_json(value) {
            assert!(
                same_values(&value, &strict) || has_big_float(&strict),
                "valid JSON {text:?} reads as {value} (serde_json: {strict})"
            );
        }
    }
    let Ok(value) = result else { return };
    let Ok(json) = to_json(&value) else { return };
    let written = json.to_string();
    let again = crate::pycompat::json_repair::loads(&written)
        .unwrap_or_else(|e| panic!("{written:?} (the value of {text:?}) is refused: {e}"));
    let again = to_json(&again).unwrap_or_else(|e| panic!("{written:?} reads back as {e}"));
    assert!(
        same_values(&again, &json),
        "{text:?} reads as {json}, which written as JSON reads back as {again}"
    );
}

/// Whether serde_json read an integer literal beyond 64 bits as a float somewhere.
fn has_big_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64().is_some_and(|f| f.abs() >= 9.2e18),
        Value::Array(items) => items.iter().any(has_big_float),
        Value::Object(map) => map.values().any(has_big_float),
        _ => false,
    }
}

/// Target `literal_eval`: the `ast.literal_eval` port. A value's `repr` reads back as the same
/// value; an error has a message.
pub fn literal_eval(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::pycompat::literal_eval::literal_eval(text) {
        Ok(value) => {
            if !all_finite(&value) {
                // `repr(inf)` is `inf`, which is no literal (in Python either).
                return;
            }
            if has_list_key(&value) {
                // A tuple reads as a list (`Py` has no tuple), so a tuple used as a dict key,
                // `{(): 1}`, has no spelling that reads back: lists are unhashable.
                return;
            }
            let mut repr = String::new();
            write_repr(&mut repr, &value);
            let again = crate::pycompat::literal_eval::literal_eval(&repr)
                .unwrap_or_else(|e| panic!("{text:?} reads as {repr}, which is refused: {e}"));
            assert_eq!(
                again, value,
                "{text:?} reads as {repr}, which reads back differently"
            );
        }
        Err(message) => assert!(!message.is_empty()),
    }
}

/// Whether a dict somewhere in `v` has a list (read from a tuple) as a key.
fn has_list_key(v: &Py) -> bool {
    match v {
        Py::List(items) => items.iter().any(has_list_key),
        Py::Dict(entries) => entries
            .iter()
            .any(|(k, v)| matches!(k, Py::List(_)) || has_list_key(k) || has_list_key(v)),
        _ => false,
    }
}

fn all_finite(v: &Py) -> bool {
    match v {
        Py::Float(f) => f.is_finite(),
        Py::List(items) => items.iter().all(all_finite),
        Py::Dict(entries) => entries.iter().all(|(k, v)| all_finite(k) && all_finite(v)),
        _ => true,
    }
}

/// Target `parse_value`: the first byte picks a type of [`TYPE_NAMES`], the rest is a field's
/// text (as ChatAdapter hands it over) — or, when it is JSON, also a value (as JSONAdapter
/// does). Every value returned has the type; an error has a message.
pub fn parse_value(data: &[u8]) {
    let Some((selector, rest)) = split_first(data) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let name = TYPE_NAMES[usize::from(selector) % TYPE_NAMES.len()];
    let ty = type_named(name).unwrap_or_else(|| panic!("`{name}` is a type"));
    let mut inputs = vec![Py::Str(text.to_string())];
    if let Ok(json) = serde_json::from_str::<Value>(text) {
        inputs.push(from_json(&json));
    }
    for input in &inputs {
        match crate::pycompat::value::parse_value(&ty, input) {
            Ok(v) => assert_conforms(&ty, &v, name),
            Err(message) => assert!(!message.is_empty()),
        }
    }
}
