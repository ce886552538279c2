//! The prompt pieces ChatAdapter and JSONAdapter share (`dspy/adapters/utils.py`,
//! `dspy/adapters/chat_adapter.py`): field lists, type names, output type notes, value
//! formatting, demo selection, the task description.

use super::AdapterError;
use crate::example::Example;
use crate::pycompat::text::{
    dedent, is_py_space, py_splitlines, py_strip_in_place, write_py_json, write_py_number,
};
use crate::signature::{CustomType, DynSignature, FieldSpec, LiteralValue, TypeSpec};
use crate::types::{ContentPart, FilePart, InputAudio};
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// The text DSPy puts in an incomplete demo's assistant turn for a missing output.
pub const NOT_SUPPLIED: &str = "Not supplied for this particular example. ";

/// The prefix of an incomplete demo's user turn.
pub const INCOMPLETE_DEMO_PREFIX: &str =
    "This is an example of the task, though some input or output fields are not supplied.";

/// The first line of every field structure.
pub const STRUCTURE_HEADER: &str = "All interactions will be structured in the following way, with the appropriate values filled in.";

/// Appends DSPy's name of a type (`get_annotation_name`): `str`, `list[str]`,
/// `dict[str, int]`, `Union[int, NoneType]`, `Literal['a', "b's"]`, a model's class name.
///
/// Literal string members are quoted as DSPy quotes them
/// (`_quoted_string_for_literal_type_annotation`): `'…'`, or `"…"` when the text has a `'` but
/// no `"`, or `'…'` with `\'` escapes when it has both — no other escaping.
pub fn write_type_name(out: &mut String, ty: &TypeSpec) {
    match ty {
        TypeSpec::Str => out.push_str("str"),
        TypeSpec::Bool => out.push_str("bool"),
        TypeSpec::Int => out.push_str("int"),
        TypeSpec::Float => out.push_str("float"),
        TypeSpec::Any => out.push_str("Any"),
        TypeSpec::List(t) => {
            out.push_str("list[");
            write_type_name(out, t);
            out.push(']');
        }
        TypeSpec::Dict(v) => {
            out.push_str("dict[str, ");
            write_type_name(out, v);
            out.push(']');
        }
        TypeSpec::Optional(t) => {
            out.push_str("Union[");
            write_type_name(out, t);
            out.push_str(", NoneType]");
        }
        TypeSpec::Literal(values) => {
            out.push_str("Literal[");
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                match v {
                    LiteralValue::Str(s) => write_literal_quoted(out, s),
                    other => out.push_str(&other.python_str()),
                }
            }
            out.push(']');
        }
        TypeSpec::Model { name, .. } => out.push_str(name),
        // DSPy prints `Reasoning` as `str`, as ChainOfThought's reasoning always was.
        TypeSpec::Custom(CustomType::Reasoning) => out.push_str("str"),
        // `TypeSpec` is non-exhaustive: a future variant prints as DSPy's name for it.
        #[allow(unreachable_patterns)]
        other => out.push_str(&other.dspy_name()),
    }
}

/// DSPy's name of a type as a new string (see [`write_type_name`]).
#[cfg(test)]
pub fn type_name(ty: &TypeSpec) -> String {
    let mut s = String::new();
    write_type_name(&mut s, ty);
    s
}

fn write_literal_quoted(out: &mut String, s: &str) {
    let single = s.contains('\'');
    let double = s.contains('"');
    if single && !double {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else if single && double {
        out.push('\'');
        out.push_str(&s.replace('\'', "\\'"));
        out.push('\'');
    } else {
        out.push('\'');
        out.push_str(s);
        out.push('\'');
    }
}

/// Appends the numbered field list of `get_field_description_string`, stripped as DSPy strips
/// it (the trailing space of an empty description survives except on the last line). A field
/// whose type holds DSPy types with a description (`Code_python`, also in `list[…]`) gets
/// `\n    Type description of Code_python: …` after its own description, once per occurrence.
pub fn write_field_list(out: &mut String, fields: &[FieldSpec]) {
    let start = out.len();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = write!(out, "{}. `{}` (", i + 1, f.name());
        write_type_name(out, f.ty());
        out.push_str("): ");
        if let Some(desc) = f.description() {
            out.push_str(desc);
        }
        write_type_descriptions(out, f.ty());
    }
    let end = start + out[start..].trim_end_matches(is_py_space).len();
    out.truncate(end);
    let lead = out[start..].len() - out[start..].trim_start_matches(is_py_space).len();
    if lead > 0 {
        out.drain(start..start + lead);
    }
}

/// `extract_custom_type_from_annotation` and each type's `description()`, depth first.
fn write_type_descriptions(out: &mut String, ty: &TypeSpec) {
    match ty {
        TypeSpec::Custom(c) if !c.description().is_empty() => {
            out.push_str("\n    Type description of ");
            write_type_name(out, ty);
            out.push_str(": ");
            out.push_str(c.description());
        }
        TypeSpec::List(t) | TypeSpec::Dict(t) | TypeSpec::Optional(t) => {
            write_type_descriptions(out, t);
        }
        _ => {}
    }
}

/// DSPy's `extract_custom_type_from_annotation`: every custom type inside `ty`, outermost
/// first.
fn custom_types_in(ty: &TypeSpec) -> Vec<CustomType> {
    match ty {
        TypeSpec::Custom(c) => vec![*c],
        TypeSpec::List(t) | TypeSpec::Dict(t) | TypeSpec::Optional(t) => custom_types_in(t),
        _ => Vec::new(),
    }
}

/// Appends `Your input fields are:\n…\nYour output fields are:\n…`.
pub fn write_field_description(out: &mut String, sig: &DynSignature) {
    out.push_str("Your input fields are:\n");
    write_field_list(out, sig.inputs());
    out.push_str("\nYour output fields are:\n");
    write_field_list(out, sig.outputs());
}

/// Appends the task description: `In adhering to this structure, your objective is: ` and every
/// line of the dedented instructions on its own line, indented by 8 spaces.
pub fn write_task_description(out: &mut String, sig: &DynSignature) {
    out.push_str("In adhering to this structure, your objective is: ");
    let instructions = dedent(sig.instructions());
    for line in py_splitlines(&instructions) {
        out.push_str("\n        ");
        out.push_str(line);
    }
}

/// Appends the output type note of `translate_field_type` (empty for `str` outputs and for
/// inputs): 8 spaces, `# note: the value you produce `, then what the type requires.
pub fn write_type_note(out: &mut String, f: &FieldSpec) {
    if f.role() == crate::signature::FieldRole::Input {
        return;
    }
    match f.ty() {
        // `Reasoning` is a `str` to DSPy; `Code` has its type description instead.
        TypeSpec::Str
        | TypeSpec::Custom(CustomType::Reasoning)
        | TypeSpec::Custom(CustomType::Code(_)) => {}
        TypeSpec::Bool => {
            out.push_str("        # note: the value you produce must be True or False")
        }
        TypeSpec::Int => {
            out.push_str("        # note: the value you produce must be a single int value");
        }
        TypeSpec::Float => {
            out.push_str("        # note: the value you produce must be a single float value");
        }
        TypeSpec::Literal(values) => {
            out.push_str(
                "        # note: the value you produce must exactly match (no extra characters) one of: ",
            );
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push_str("; ");
                }
                match v {
                    LiteralValue::Str(s) => out.push_str(s),
                    other => out.push_str(&other.python_str()),
                }
            }
        }
        other => {
            out.push_str("        # note: the value you produce must adhere to the JSON schema: ");
            write_py_json(out, &type_first_sorted(&other.json_schema()));
        }
    }
}

/// The schema with `"type"` first and every other key sorted, in every mapping at every depth
/// (DSPy's `move_type_to_front`).
pub fn type_first_sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| (a.as_str() != "type", a).cmp(&(b.as_str() != "type", b)));
            let mut out = Map::with_capacity(map.len());
            for k in keys {
                out.insert(k.clone(), type_first_sorted(&map[k.as_str()]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(type_first_sorted).collect()),
        other => other.clone(),
    }
}

/// Appends `format_field_value(field, value)`: a list given to a `str` field becomes DSPy's
/// numbered `«…»` list, a string is written as is, lists and objects as JSON (Python's
/// separators, non-ASCII kept), numbers as Python prints them, `null` as `None`.
///
/// A value of DSPy's media types (`Image`, `Audio`, `File`, also inside `list[…]`,
/// `Optional[…]`, `dict[str, …]`) is first replaced by its content parts between DSPy's
/// custom-type markers (see [`mark_media`]), as DSPy's `serialize_for_json` does.
pub fn write_field_value(
    out: &mut String,
    adapter: &'static str,
    field: &FieldSpec,
    value: &Value,
) -> Result<(), AdapterError> {
    if field.ty().has_media()
        && let Some(marked) = mark_media(adapter, field, field.ty(), value)?
    {
        return write_plain_value(out, adapter, field, &marked);
    }
    if has_tool_type(field.ty())
        && let Some(formatted) = format_tool_values(field.ty(), value)
    {
        return write_plain_value(out, adapter, field, &formatted);
    }
    write_plain_value(out, adapter, field, value)
}

/// Whether `Tool` or `ToolCalls` appears anywhere in `ty`.
fn has_tool_type(ty: &TypeSpec) -> bool {
    custom_types_in(ty)
        .iter()
        .any(|c| matches!(c, CustomType::Tool | CustomType::ToolCalls))
}

/// Values of DSPy's tool types inside `value` (following `ty`) as DSPy's `format()` gives
/// them: a `Tool` as its `str()` line, `ToolCalls` as `{"tool_calls": [{"name", "args"}]}`
/// (without ids). A value not of its field's shape is left as it is, as DSPy prints a value
/// of the wrong type. `None` when nothing changed.
pub fn format_tool_values(ty: &TypeSpec, value: &Value) -> Option<Value> {
    match (ty, value) {
        (TypeSpec::Custom(CustomType::Tool), Value::Object(_)) => {
            let tool = crate::types::ToolSpec::from_value(value).ok()?;
            Some(Value::String(tool.to_string()))
        }
        (TypeSpec::Custom(CustomType::ToolCalls), Value::Object(_) | Value::Array(_)) => Some(
            crate::types::ToolCalls::from_value(value)
                .ok()?
                .format_value(),
        ),
        (TypeSpec::List(item), Value::Array(items)) => {
            let formatted: Vec<Option<Value>> =
                items.iter().map(|v| format_tool_values(item, v)).collect();
            formatted.iter().any(Option::is_some).then(|| {
                Value::Array(
                    formatted
                        .into_iter()
                        .zip(items)
                        .map(|(f, v)| f.unwrap_or_else(|| v.clone()))
                        .collect(),
                )
            })
        }
        (TypeSpec::Dict(item), Value::Object(map)) => {
            let formatted: Vec<Option<Value>> =
                map.values().map(|v| format_tool_values(item, v)).collect();
            formatted.iter().any(Option::is_some).then(|| {
                Value::Object(
                    map.iter()
                        .zip(formatted)
                        .map(|((k, v), f)| (k.clone(), f.unwrap_or_else(|| v.clone())))
                        .collect(),
                )
            })
        }
        (TypeSpec::Optional(inner), v) => format_tool_values(inner, v),
        _ => None,
    }
}

/// Replaces every value of a media type inside `value` (following `ty`) by the marked text of
/// its content parts (`<<CUSTOM-TYPE-START-IDENTIFIER>>[…]<<CUSTOM-TYPE-END-IDENTIFIER>>`), the
/// string DSPy's pydantic serializer gives a `dspy.Type`. `None` when nothing changed.
///
/// Values are typed by the field's type, not by their shape: an `Image` field's value is an
/// image (`{"url": …}`), while the same object in an `Any` field is plain JSON. A media field
/// given a value that is not an object (a string, say) is printed as it is, as DSPy prints a
/// value of the wrong type; an object of the wrong shape is [`AdapterError::Format`].
pub fn mark_media(
    adapter: &'static str,
    field: &FieldSpec,
    ty: &TypeSpec,
    value: &Value,
) -> Result<Option<Value>, AdapterError> {
    match (ty, value) {
        (TypeSpec::Custom(c), Value::Object(map)) if c.is_media() => {
            let parts = media_parts(*c, map).ok_or_else(|| AdapterError::Format {
                adapter,
                message: format!(
                    "field `{}` is of type `{}`, but its value {} is not one (expected {})",
                    field.name(),
                    c.name(),
                    crate::pycompat::text::compact_json(value),
                    match c {
                        CustomType::Image => "{\"url\": …}",
                        CustomType::Audio => "{\"data\": …, \"audio_format\": …}",
                        _ => "{\"file_data\"?, \"file_id\"?, \"filename\"?}",
                    }
                ),
            })?;
            Ok(Some(Value::String(super::custom::marked(&parts))))
        }
        (TypeSpec::List(item), Value::Array(items)) => {
            mark_each(adapter, field, item, items.iter()).map(|m| m.map(Value::Array))
        }
        (TypeSpec::Dict(item), Value::Object(map)) => {
            let Some(values) = mark_each(adapter, field, item, map.values())? else {
                return Ok(None);
            };
            Ok(Some(Value::Object(
                map.keys().cloned().zip(values).collect(),
            )))
        }
        (TypeSpec::Optional(inner), v) => mark_media(adapter, field, inner, v),
        _ => Ok(None),
    }
}

fn mark_each<'a>(
    adapter: &'static str,
    field: &FieldSpec,
    ty: &TypeSpec,
    items: impl ExactSizeIterator<Item = &'a Value>,
) -> Result<Option<Vec<Value>>, AdapterError> {
    let mut out = Vec::with_capacity(items.len());
    let mut changed = false;
    for item in items {
        match mark_media(adapter, field, ty, item)? {
            Some(marked) => {
                changed = true;
                out.push(marked);
            }
            None => out.push(item.clone()),
        }
    }
    Ok(changed.then_some(out))
}

/// The content parts of a media value given as its field map (DSPy's `format()`), or `None`
/// when the map is not of that type's shape.
fn media_parts(ty: CustomType, map: &Map<String, Value>) -> Option<Vec<ContentPart>> {
    let text = |key: &str| -> Option<Option<String>> {
        match map.get(key) {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s.clone())),
            Some(_) => None,
        }
    };
    let allowed: &[&str] = match ty {
        CustomType::Image => &["url"],
        CustomType::Audio => &["data", "audio_format"],
        _ => &["file_data", "file_id", "filename"],
    };
    if map.keys().any(|k| !allowed.contains(&k.as_str())) {
        return None;
    }
    match ty {
        CustomType::Image => Some(vec![ContentPart::image_url(text("url")??)]),
        CustomType::Audio => Some(vec![ContentPart::InputAudio {
            input_audio: InputAudio {
                data: text("data")??,
                format: text("audio_format")??,
            },
        }]),
        _ => {
            let set = |key: &str| text(key).map(|v| v.filter(|s| !s.is_empty()));
            let file = FilePart {
                file_data: set("file_data")?,
                file_id: set("file_id")?,
                filename: set("filename")?,
            };
            if map.values().all(Value::is_null) {
                return None;
            }
            Some(vec![ContentPart::File { file }])
        }
    }
}

fn write_plain_value(
    out: &mut String,
    adapter: &'static str,
    field: &FieldSpec,
    value: &Value,
) -> Result<(), AdapterError> {
    match value {
        Value::Array(items) if *field.ty() == TypeSpec::Str => {
            write_blob_list(out, adapter, field, items)
        }
        Value::String(s) => {
            out.push_str(s);
            Ok(())
        }
        Value::Null => {
            out.push_str("None");
            Ok(())
        }
        Value::Bool(b) => {
            out.push_str(if *b { "True" } else { "False" });
            Ok(())
        }
        Value::Number(n) => {
            write_py_number(out, n);
            Ok(())
        }
        Value::Array(_) | Value::Object(_) => {
            write_py_json(out, value);
            Ok(())
        }
    }
}

/// `_format_input_list_field_value`: `N/A` for an empty list, the lone blob for one item,
/// `[1] «a»\n[2] «b»` otherwise.
fn write_blob_list(
    out: &mut String,
    adapter: &'static str,
    field: &FieldSpec,
    items: &[Value],
) -> Result<(), AdapterError> {
    match items {
        [] => out.push_str("N/A"),
        [one] => write_blob(out, adapter, field, one)?,
        many => {
            for (i, item) in many.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                let _ = write!(out, "[{}] ", i + 1);
                write_blob(out, adapter, field, item)?;
            }
        }
    }
    Ok(())
}

/// `_format_blob`: `«text»`, or `«««\n    text\n»»»` with every line indented when the text has
/// a newline or a guillemet.
fn write_blob(
    out: &mut String,
    adapter: &'static str,
    field: &FieldSpec,
    item: &Value,
) -> Result<(), AdapterError> {
    match item {
        Value::String(s) => {
            if !s.contains(['\n', '«', '»']) {
                out.push('«');
                out.push_str(s);
                out.push('»');
            } else {
                out.push_str("«««\n    ");
                out.push_str(&s.replace('\n', "\n    "));
                out.push_str("\n»»»");
            }
            Ok(())
        }
        // Python's `in` on a container tests membership, so DSPy prints lists and dicts whose
        // members are not the markers as their repr; anything else fails with a TypeError.
        Value::Array(_) | Value::Object(_) if !contains_blob_marker(item) => {
            out.push('«');
            crate::pycompat::py::write_py_repr_json(out, item);
            out.push('»');
            Ok(())
        }
        other => Err(AdapterError::Format {
            adapter,
            message: format!(
                "field `{}` is a `str` field given a list, and DSPy formats such a list only when its items are strings; item {} is not",
                field.name(),
                crate::pycompat::text::compact_json(other)
            ),
        }),
    }
}

fn contains_blob_marker(container: &Value) -> bool {
    let is_marker = |s: &str| matches!(s, "\n" | "«" | "»");
    match container {
        Value::Array(items) => items
            .iter()
            .any(|v| matches!(v, Value::String(s) if is_marker(s))),
        Value::Object(map) => map.keys().any(|k| is_marker(k)),
        _ => false,
    }
}

/// Appends the user turn of `format_user_message_content`: `prefix`, the `[[ ## name ## ]]`
/// block of every signature input present in `values`, and the output reminder when given,
/// joined by blank lines and stripped.
pub fn write_user_content(
    out: &mut String,
    adapter: &'static str,
    sig: &DynSignature,
    values: &Map<String, Value>,
    prefix: &str,
    reminder: Option<&dyn Fn(&mut String)>,
) -> Result<(), AdapterError> {
    let start = out.len();
    out.push_str(prefix);
    for f in sig.inputs() {
        if let Some(v) = values.get(f.name()) {
            out.push_str("\n\n[[ ## ");
            out.push_str(f.name());
            out.push_str(" ## ]]\n");
            write_field_value(out, adapter, f, v)?;
        }
    }
    if let Some(reminder) = reminder {
        out.push_str("\n\n");
        reminder(out);
    }
    strip_tail(out, start);
    Ok(())
}

/// Python-strips `out[start..]` in place.
pub fn strip_tail(out: &mut String, start: usize) {
    if start == 0 {
        py_strip_in_place(out);
        return;
    }
    let end = start + out[start..].trim_end_matches(is_py_space).len();
    out.truncate(end);
    let lead = out[start..].len() - out[start..].trim_start_matches(is_py_space).len();
    if lead > 0 {
        out.drain(start..start + lead);
    }
}

/// Appends the per-field type hint of the output reminder: nothing for `str`, DSPy's JSON
/// example for `ToolCalls`, else ` (must be formatted as a valid Python <type>)`.
pub fn write_reminder_hint(out: &mut String, f: &FieldSpec) {
    if *f.ty() == TypeSpec::Custom(CustomType::ToolCalls) {
        out.push_str(
            " (must be a JSON object like {\"tool_calls\": [{\"name\": \"...\", \"args\": {...}}]})",
        );
    } else if *f.ty() != TypeSpec::Str {
        out.push_str(" (must be formatted as a valid Python ");
        write_type_name(out, f.ty());
        out.push(')');
    }
}

/// DSPy's demo split (`format_demos`): the incomplete demos (some field missing or `None`, but
/// at least one input key and one output key present) first, then the complete ones; demos with
/// no input or no output key are dropped. Returns `(demo, complete)` pairs in that order.
pub fn order_demos<'a>(
    sig: &DynSignature,
    demos: &'a [Example],
) -> Vec<(&'a Map<String, Value>, bool)> {
    let mut incomplete = Vec::new();
    let mut complete = Vec::new();
    for demo in demos {
        let map = demo.as_map();
        let is_complete = sig
            .fields()
            .all(|f| map.get(f.name()).is_some_and(|v| !v.is_null()));
        if is_complete {
            complete.push((map, true));
        } else {
            let has_input = sig.inputs().iter().any(|f| map.contains_key(f.name()));
            let has_output = sig.outputs().iter().any(|f| map.contains_key(f.name()));
            if has_input && has_output {
                incomplete.push((map, false));
            }
        }
    }
    incomplete.extend(complete);
    incomplete
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(ty: TypeSpec) -> FieldSpec {
        FieldSpec::output("x", ty)
    }

    fn fmt(ty: TypeSpec, v: Value) -> Result<String, AdapterError> {
        let mut s = String::new();
        write_field_value(&mut s, "ChatAdapter", &field(ty), &v).map(|()| s)
    }

    #[test]
    fn value_formatting_follows_dspy() {
        assert_eq!(fmt(TypeSpec::Str, json!("a\nb")).unwrap(), "a\nb");
        assert_eq!(fmt(TypeSpec::Int, json!(3)).unwrap(), "3");
        assert_eq!(fmt(TypeSpec::Float, json!(3.0)).unwrap(), "3.0");
        assert_eq!(fmt(TypeSpec::Float, json!(1e20)).unwrap(), "1e+20");
        assert_eq!(fmt(TypeSpec::Str, json!(true)).unwrap(), "True");
        assert_eq!(fmt(TypeSpec::Str, json!(null)).unwrap(), "None");
        assert_eq!(
            fmt(TypeSpec::Any, json!({"k": "v", "u": "é"})).unwrap(),
            r#"{"k": "v", "u": "é"}"#
        );
        let list_str = TypeSpec::List(Box::new(TypeSpec::Str));
        assert_eq!(fmt(list_str, json!(["x", "y"])).unwrap(), r#"["x", "y"]"#);
        // A list given to a `str` field: DSPy's numbered blobs.
        assert_eq!(fmt(TypeSpec::Str, json!([])).unwrap(), "N/A");
        assert_eq!(fmt(TypeSpec::Str, json!(["only"])).unwrap(), "«only»");
        assert_eq!(
            fmt(TypeSpec::Str, json!(["9 = 3*3", "odd"])).unwrap(),
            "[1] «9 = 3*3»\n[2] «odd»"
        );
        assert_eq!(
            fmt(TypeSpec::Str, json!(["a\nb", "«q»"])).unwrap(),
            "[1] «««\n    a\n    b\n»»»\n[2] «««\n    «q»\n»»»"
        );
        assert_eq!(fmt(TypeSpec::Str, json!([{"a": 1}])).unwrap(), "«{'a': 1}»");
        assert!(matches!(
            fmt(TypeSpec::Str, json!([1, 2])),
            Err(AdapterError::Format { .. })
        ));
    }

    #[test]
    fn schema_keys_type_first_then_sorted() {
        let schema = json!({
            "properties": {"year": {"title": "Year", "type": "integer"}, "a": {"type": "string"}},
            "required": ["year"], "title": "C", "type": "object",
            "$defs": {"Z": {"type": "object"}, "B": {"enum": [2, 1], "type": "integer"}}
        });
        let mut s = String::new();
        write_py_json(&mut s, &type_first_sorted(&schema));
        assert_eq!(
            s,
            r#"{"type": "object", "$defs": {"B": {"type": "integer", "enum": [2, 1]}, "Z": {"type": "object"}}, "properties": {"a": {"type": "string"}, "year": {"type": "integer", "title": "Year"}}, "required": ["year"], "title": "C"}"#
        );
    }

    #[test]
    fn type_names_quote_literals_as_dspy() {
        let lit = TypeSpec::Literal(vec![
            LiteralValue::Str("a".into()),
            LiteralValue::Str("b's".into()),
            LiteralValue::Str("c\"d".into()),
            LiteralValue::Str("e'\"f\\".into()),
            LiteralValue::Int(3),
            LiteralValue::Bool(true),
            LiteralValue::None,
        ]);
        assert_eq!(
            type_name(&lit),
            r#"Literal['a', "b's", 'c"d', 'e\'"f\', 3, True, None]"#
        );
        assert_eq!(
            type_name(&TypeSpec::Optional(Box::new(TypeSpec::List(Box::new(
                TypeSpec::Int
            ))))),
            "Union[list[int], NoneType]"
        );
    }
}
