//! [`XMLAdapter`](struct@XMLAdapter): DSPy's XML prompt format, every field as a `<name>…</name>` element.

use super::chat::{Style, empty_error, format_messages, missing_fields_error};
use super::format::{STRUCTURE_HEADER, strip_tail, write_field_value, write_type_note};
use super::json::JSONAdapter;
use super::native::NativeToolCalling;
use super::{Adapter, AdapterError};
use crate::example::Example;
use crate::pycompat::etree;
use crate::pycompat::py::{Py, py_str};
use crate::pycompat::text::{py_strip, write_py_number};
use crate::pycompat::value::{apply_defaults, parse_value, validate_python};
use crate::signature::{DynSignature, FieldRole, FieldSpec, TypeSpec};
use crate::types::Message;
use roxmltree::Node;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// DSPy's `XMLAdapter` (3.4.1), reproduced byte for byte.
///
/// DSPy's `XMLAdapter` is a `ChatAdapter` subclass, and so is this one in what it keeps: the
/// field list and instructions of the system message, the demo order and "not supplied"
/// wording, and the retry with [`JSONAdapter`](struct@JSONAdapter) when a completion does not parse
/// ([`Adapter::fallback`]).
///
/// **Prompt.** Every field is an element: `<question>\nWhat is 2+2?\n</question>`. The
/// structure shows `<name>\n{name}\n</name>` placeholders (with the type note of typed
/// outputs); an output whose type is a list, a dict or a model (possibly `Optional`) is shown
/// as the nested XML it should be written in (`<people><item>...</item></people>`,
/// `<citation><title>...</title><year>...</year></citation>`), and the request repeats those
/// shapes: "Respond with the corresponding output fields wrapped in XML tags `<answer>`." A
/// demo's `str` outputs have `&` and `<` escaped; its list, dict and model outputs are written as
/// nested XML (list items as `<item>`, dict keys that are not names as
/// `<entry key="…">`). There is no `[[ ## completed ## ]]` marker.
///
/// **Parsing** (`XMLAdapter.parse`). The completion is read as the content of one XML element
/// (`<dspy_root>{completion}</dspy_root>`), strictly, as Python's ElementTree reads it: a
/// mismatched tag, an undefined entity (`&nbsp;`), a bare `&` or `<` in text is an
/// [`AdapterError::Parse`] naming the problem and its position ("Failed to parse XML: mismatched
/// tag: …: line 1, column 16"). Then each output is read from the top-level elements of its
/// name, guided by its type's JSON schema: text is stripped; a list takes its `<item>` children,
/// repeated elements, or JSON text (`["a", "b"]`); a dict or model takes its child elements (or
/// JSON text); a `str` output with child elements keeps them as XML text; an `Optional` output
/// that is empty is `None`. The value then goes through DSPy's `parse_value` (lenient JSON,
/// Python literals, pydantic's lax coercions), with pydantic's plain validation as a second
/// try. Missing outputs (other than `Optional` ones) are an error.
///
/// Where dspex differs: an error's wording and position are roxmltree's, told in
/// ElementTree's form (the two parsers do not always stop at the same character); elements
/// nested deeper than 200 levels inside an output are a parse error (DSPy's recursion fails
/// somewhere deeper, with a `RecursionError`).
///
/// ```
/// use dspex_core::adapter::{Adapter, XMLAdapter};
/// use dspex_core::{DynSignature, Example};
///
/// let sig = DynSignature::parse("question -> answer, tags: list[str]")?;
/// let messages = XMLAdapter.format(&sig, &[], &Example::from_pairs([("question", "2+2?")]))?;
/// assert_eq!(
///     messages[1].content,
///     "<question>\n2+2?\n</question>\n\nRespond with the corresponding output fields wrapped in \
///      XML tags `<answer>`, then `<tags>`. Use this nested XML structure: <tags><item>...</item></tags>"
/// );
/// let out = XMLAdapter.parse(&sig, "<answer>4 &amp; more</answer>\n<tags><item>a</item><item>b</item></tags>")?;
/// assert_eq!(out["answer"], "4 & more");
/// assert_eq!(out["tags"], serde_json::json!(["a", "b"]));
/// assert!(XMLAdapter.parse(&sig, "<answer>4 & more</answer>").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// **Options.** `XMLAdapter` is both the type and its default value (DSPy's
/// `dspy.XMLAdapter()`); [`native_function_calling`](XMLAdapter::native_function_calling) and
/// [`parallel_tool_calls`](XMLAdapter::parallel_tool_calls) are DSPy's
/// `use_native_function_calling` and `parallel_tool_calls`, as for the
/// [`ChatAdapter`](struct@super::ChatAdapter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct XMLAdapter {
    tools: NativeToolCalling,
}

/// The default [`XMLAdapter`](struct@XMLAdapter) as a value, so `XMLAdapter` reads as DSPy's `dspy.XMLAdapter()`.
#[allow(non_upper_case_globals)]
pub const XMLAdapter: XMLAdapter = XMLAdapter::new();

impl XMLAdapter {
    /// DSPy's defaults: no native function calling, the provider's default for parallel calls.
    pub const fn new() -> Self {
        XMLAdapter {
            tools: NativeToolCalling::OFF,
        }
    }

    /// DSPy's `use_native_function_calling`.
    #[must_use]
    pub const fn native_function_calling(mut self, on: bool) -> Self {
        self.tools.enabled = on;
        self
    }

    /// DSPy's `parallel_tool_calls`.
    #[must_use]
    pub const fn parallel_tool_calls(mut self, on: bool) -> Self {
        self.tools.parallel_tool_calls = Some(on);
        self
    }
}

/// The name DSPy gives the adapter.
pub(crate) const NAME: &str = "XMLAdapter";

/// How deep the elements of one output may nest before parsing gives up.
const MAX_DEPTH: usize = 200;

/// `_uses_nested_xml`: whether an output of this type is written as nested XML (a list, a
/// dict or a model, possibly `Optional`) — never DSPy's own types (`Image`, `list[Image]`).
fn uses_nested_xml(ty: &TypeSpec) -> bool {
    let ty = match ty {
        TypeSpec::Optional(inner) => inner,
        other => other,
    };
    let item = match ty {
        TypeSpec::List(item) => item,
        other => other,
    };
    if matches!(item, TypeSpec::Custom(_)) {
        return false;
    }
    matches!(
        ty,
        TypeSpec::List(_) | TypeSpec::Dict(_) | TypeSpec::Model { .. }
    )
}

/// Escapes `&` and `<` (the escaping of `str` outputs and of nested XML text).
fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            c => out.push(c),
        }
    }
}

/// `format_field_with_value` for one field: `<name>\nvalue\n</name>`, or the nested XML of a
/// list/dict/model output's list or object value.
fn write_field(out: &mut String, f: &FieldSpec, value: &Value) -> Result<(), AdapterError> {
    let is_output = f.role() == FieldRole::Output;
    if is_output && uses_nested_xml(f.ty()) && matches!(value, Value::Array(_) | Value::Object(_)) {
        write_value_xml(out, value, f.name(), None);
        return Ok(());
    }
    out.push('<');
    out.push_str(f.name());
    out.push_str(">\n");
    if is_output && *f.ty() == TypeSpec::Str {
        let mut formatted = String::new();
        write_field_value(&mut formatted, NAME, f, value)?;
        push_escaped(out, &formatted);
    } else {
        write_field_value(out, NAME, f, value)?;
    }
    out.push_str("\n</");
    out.push_str(f.name());
    out.push('>');
    Ok(())
}

/// `_value_to_xml`: lists as `<item>` children (`<tag />` when empty), objects as one child per
/// key (`<entry key="…">` when the key is not a name), `null` as `<tag />`, other values as
/// Python's `str()` of them with `&` and `<` escaped.
fn write_value_xml(out: &mut String, value: &Value, tag: &str, key: Option<&str>) {
    let open = |out: &mut String| {
        out.push('<');
        out.push_str(tag);
        if let Some(key) = key {
            out.push_str(" key=");
            write_quoteattr(out, key);
        }
    };
    let close = |out: &mut String| {
        out.push_str("</");
        out.push_str(tag);
        out.push('>');
    };
    open(out);
    match value {
        Value::Null => out.push_str(" />"),
        Value::Array(items) if items.is_empty() => out.push_str(" />"),
        Value::Array(items) => {
            out.push('>');
            for item in items {
                write_value_xml(out, item, "item", None);
            }
            close(out);
        }
        Value::Object(map) => {
            out.push('>');
            for (name, child) in map {
                if is_xml_name_like(name) {
                    write_value_xml(out, child, name, None);
                } else {
                    write_value_xml(out, child, "entry", Some(name));
                }
            }
            close(out);
        }
        Value::Bool(b) => {
            out.push('>');
            out.push_str(if *b { "True" } else { "False" });
            close(out);
        }
        Value::Number(n) => {
            out.push('>');
            write_py_number(out, n);
            close(out);
        }
        Value::String(s) => {
            out.push('>');
            push_escaped(out, s);
            close(out);
        }
    }
}

/// DSPy's test for a dict key that can be a tag:
/// `(name[:1] + name[1:].replace("-", "_").replace(".", "_")).isidentifier()`.
fn is_xml_name_like(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first == '_' || unicode_ident::is_xid_start(first))
        && chars.all(|c| c == '-' || c == '.' || unicode_ident::is_xid_continue(c))
}

/// `xml.sax.saxutils.quoteattr`: `&`, `<`, `>` escaped, `\n`, `\r`, `\t` as character
/// references, in double quotes (single quotes when the value has a `"` but no `'`; `&quot;`
/// when it has both).
fn write_quoteattr(out: &mut String, value: &str) {
    let mut data = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => data.push_str("&amp;"),
            '<' => data.push_str("&lt;"),
            '>' => data.push_str("&gt;"),
            '\n' => data.push_str("&#10;"),
            '\r' => data.push_str("&#13;"),
            '\t' => data.push_str("&#9;"),
            c => data.push(c),
        }
    }
    if data.contains('"') {
        if data.contains('\'') {
            out.push('"');
            out.push_str(&data.replace('"', "&quot;"));
            out.push('"');
        } else {
            out.push('\'');
            out.push_str(&data);
            out.push('\'');
        }
    } else {
        out.push('"');
        out.push_str(&data);
        out.push('"');
    }
}

/// `_xml_schema(tag, annotation)`: the nested XML shape of a type, from its JSON schema.
fn write_xml_schema(out: &mut String, tag: &str, ty: &TypeSpec) {
    let schema = ty.json_schema();
    let empty = Map::new();
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    write_schema_xml(out, tag, &schema, defs, &mut Vec::new());
}

/// `_schema_to_xml`: references followed once per branch (a model met again inside itself is
/// `...`), the first non-null member of a union, arrays as one `<item>`, objects as their
/// properties, anything else as `...`.
fn write_schema_xml<'a>(
    out: &mut String,
    tag: &str,
    schema: &'a Value,
    defs: &'a Map<String, Value>,
    seen: &mut Vec<&'a str>,
) {
    if let Some(reference) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        match defs.get(name) {
            Some(def) if !seen.contains(&name) => {
                seen.push(name);
                write_schema_xml(out, tag, def, defs, seen);
                seen.pop();
            }
            _ => write_element(out, tag, "..."),
        }
        return;
    }
    if let Some(choices) = schema
        .get("anyOf")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    {
        let choice = choices
            .iter()
            .find(|s| type_of(s) != Some("null"))
            .unwrap_or(&choices[0]);
        write_schema_xml(out, tag, choice, defs, seen);
        return;
    }
    let mut inner = String::new();
    if type_of(schema) == Some("array") {
        match schema.get("items") {
            Some(items) => write_schema_xml(&mut inner, "item", items, defs, seen),
            None => inner.push_str("<item>...</item>"),
        }
    } else {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                write_schema_xml(&mut inner, name, child, defs, seen);
            }
        }
        if inner.is_empty() {
            inner.push_str("...");
        }
    }
    write_element(out, tag, &inner);
}

/// `<tag>inner</tag>`.
fn write_element(out: &mut String, tag: &str, inner: &str) {
    out.push('<');
    out.push_str(tag);
    out.push('>');
    out.push_str(inner);
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}

fn type_of(schema: &Value) -> Option<&str> {
    schema.get("type").and_then(Value::as_str)
}

/// XMLAdapter's `format_field_structure`: the placeholders of the inputs, then of the outputs
/// (nested outputs as their XML shape), groups and fields joined by blank lines.
pub(crate) fn write_structure(out: &mut String, sig: &DynSignature) {
    out.push_str(STRUCTURE_HEADER);
    for group in [sig.inputs(), sig.outputs()] {
        out.push_str("\n\n");
        for (i, f) in group.iter().enumerate() {
            if i > 0 {
                out.push_str("\n\n");
            }
            if f.role() == FieldRole::Output && uses_nested_xml(f.ty()) {
                write_xml_schema(out, f.name(), f.ty());
                continue;
            }
            let mut placeholder = String::with_capacity(64);
            placeholder.push('{');
            placeholder.push_str(f.name());
            placeholder.push('}');
            write_type_note(&mut placeholder, f);
            out.push('<');
            out.push_str(f.name());
            out.push_str(">\n");
            if f.role() == FieldRole::Output && *f.ty() == TypeSpec::Str {
                push_escaped(out, &placeholder);
            } else {
                out.push_str(&placeholder);
            }
            out.push_str("\n</");
            out.push_str(f.name());
            out.push('>');
        }
    }
}

/// XMLAdapter's `format_user_message_content`: `prefix`, the elements of the signature's inputs
/// present in `values`, and the output reminder when given, joined by blank lines and stripped.
pub(crate) fn write_user(
    out: &mut String,
    sig: &DynSignature,
    values: &Map<String, Value>,
    prefix: &str,
    reminder: Option<&dyn Fn(&mut String)>,
) -> Result<(), AdapterError> {
    let start = out.len();
    out.push_str(prefix);
    out.push_str("\n\n");
    let mut first = true;
    for f in sig.inputs() {
        if let Some(v) = values.get(f.name()) {
            if !first {
                out.push_str("\n\n");
            }
            first = false;
            write_field(out, f, v)?;
        }
    }
    if let Some(reminder) = reminder {
        out.push_str("\n\n");
        reminder(out);
    }
    strip_tail(out, start);
    Ok(())
}

/// XMLAdapter's `user_message_output_requirements`.
pub(crate) fn write_reminder(out: &mut String, sig: &DynSignature) {
    out.push_str("Respond with the corresponding output fields wrapped in XML tags ");
    for (i, f) in sig.outputs().iter().enumerate() {
        if i > 0 {
            out.push_str(", then ");
        }
        out.push_str("`<");
        out.push_str(f.name());
        out.push_str(">`");
    }
    out.push('.');
    let mut first = true;
    for f in sig.outputs().iter().filter(|f| uses_nested_xml(f.ty())) {
        out.push_str(if first {
            " Use this nested XML structure: "
        } else {
            " "
        });
        first = false;
        write_xml_schema(out, f.name(), f.ty());
    }
}

/// XMLAdapter's `format_assistant_message_content`: every output's element (`missing` for an
/// absent one), joined by blank lines.
pub(crate) fn write_assistant(
    out: &mut String,
    sig: &DynSignature,
    demo: &Map<String, Value>,
    missing: &Value,
) -> Result<(), AdapterError> {
    for (i, f) in sig.outputs().iter().enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        write_field(out, f, demo.get(f.name()).unwrap_or(missing))?;
    }
    Ok(())
}

/// `_group_children`: the child elements by name (an `<entry>` by its `key` attribute), in
/// order of first appearance.
fn group_children<'a, 'i>(node: Node<'a, 'i>) -> Vec<(String, Vec<Node<'a, 'i>>)> {
    let mut groups: Vec<(String, Vec<Node<'a, 'i>>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for child in etree::children(node) {
        let tag = etree::tag(child);
        let key = if tag == "entry" {
            etree::attribute(child, "key")
                .unwrap_or("entry")
                .to_string()
        } else {
            tag.into_owned()
        };
        match index.get(&key) {
            Some(&i) => groups[i].1.push(child),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, vec![child]));
            }
        }
    }
    groups
}

/// The group named `name`, if any.
fn group<'g, 'a, 'i>(
    groups: &'g [(String, Vec<Node<'a, 'i>>)],
    name: &str,
) -> Option<&'g [Node<'a, 'i>]> {
    groups
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, nodes)| nodes.as_slice())
}

/// The stripped text of an element (`(element.text or "").strip()`).
fn stripped_text(node: Node<'_, '_>) -> String {
    py_strip(&etree::text(node).unwrap_or_default()).to_string()
}

/// Why an output's elements could not be turned into a value (before validation).
struct TooDeep;

/// `_elements_to_value`: the Python value of the elements named after a field, guided by
/// `schema` (see [`XMLAdapter`](struct@XMLAdapter)).
fn elements_to_value(
    elements: &[Node<'_, '_>],
    schema: &Value,
    defs: &Map<String, Value>,
    depth: usize,
) -> Result<Py, TooDeep> {
    if depth > MAX_DEPTH {
        return Err(TooDeep);
    }
    let Some(&first) = elements.first() else {
        return Ok(Py::None);
    };
    let reference = schema.get("$ref").and_then(Value::as_str).unwrap_or("");
    let mut schema = defs
        .get(reference.rsplit('/').next().unwrap_or(""))
        .unwrap_or(schema);
    if let Some(choices) = schema
        .get("anyOf")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    {
        let null = serde_json::json!({"type": "null"});
        if choices.contains(&null) && !etree::has_children(first) && stripped_text(first).is_empty()
        {
            return Ok(Py::None);
        }
        let non_null: Vec<&Value> = choices
            .iter()
            .filter(|c| type_of(c) != Some("null"))
            .collect();
        // DSPy fails (an IndexError) on a union of `None` alone; read it as `None`.
        let Some(&chosen) = non_null.first() else {
            return Ok(Py::None);
        };
        schema = chosen;
        if etree::has_children(first) {
            schema = non_null
                .iter()
                .copied()
                .find(|c| type_of(c) != Some("string"))
                .unwrap_or(schema);
        }
    }
    let empty = Value::Object(Map::new());
    if type_of(schema) == Some("array") {
        let mut elements = elements;
        let groups;
        if elements.len() == 1 {
            if !etree::has_children(first) {
                let text = stripped_text(first);
                if text.is_empty() {
                    return Ok(Py::List(Vec::new()));
                }
                if text.starts_with('[') {
                    return Ok(Py::Str(text));
                }
            }
            groups = group_children(first);
            if let Some(items) = group(&groups, "item") {
                elements = items;
            }
        }
        let item_schema = schema.get("items").unwrap_or(&empty);
        return elements
            .iter()
            .map(|e| elements_to_value(std::slice::from_ref(e), item_schema, defs, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Py::List);
    }
    if type_of(schema) == Some("string") && etree::has_children(first) {
        let mut text = etree::text(first).unwrap_or_default();
        for child in etree::children(first) {
            text.push_str(&etree::tostring(child));
        }
        return Ok(Py::Str(text));
    }
    let groups = group_children(first);
    if groups.is_empty() {
        if type_of(schema) == Some("object") && stripped_text(first).is_empty() {
            return Ok(Py::Dict(Vec::new()));
        }
        let mut values: Vec<Py> = elements
            .iter()
            .map(|e| Py::Str(stripped_text(*e)))
            .collect();
        return Ok(if values.len() == 1 {
            values.swap_remove(0)
        } else {
            Py::List(values)
        });
    }
    let no_props = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&no_props);
    let child_schema = schema
        .get("additionalProperties")
        .filter(|s| s.is_object())
        .unwrap_or(&empty);
    let mut entries = Vec::with_capacity(groups.len());
    for (name, items) in &groups {
        let item_schema = properties.get(name).unwrap_or(child_schema);
        entries.push((
            Py::Str(name.clone()),
            elements_to_value(items, item_schema, defs, depth + 1)?,
        ));
    }
    Ok(Py::Dict(entries))
}

impl Adapter for XMLAdapter {
    fn name(&self) -> &'static str {
        NAME
    }

    fn format(
        &self,
        signature: &DynSignature,
        demos: &[Example],
        inputs: &Example,
    ) -> Result<Vec<Message>, AdapterError> {
        format_messages(Style::Xml, self.tools.enabled, signature, demos, inputs)
    }

    fn parse(
        &self,
        signature: &DynSignature,
        completion: &str,
    ) -> Result<Map<String, Value>, AdapterError> {
        if completion.is_empty() {
            return Err(empty_error(NAME));
        }
        let wrapped = format!("<dspy_root>{completion}</dspy_root>");
        let doc = etree::fromstring(&wrapped).map_err(|e| AdapterError::Parse {
            adapter: NAME,
            field: None,
            message: format!("Failed to parse XML: {e}"),
            completion: completion.to_string(),
        })?;
        let groups = group_children(doc.root_element());
        let mut fields: Map<String, Value> = Map::new();
        for f in signature.outputs() {
            let Some(elements) = group(&groups, f.name()) else {
                continue;
            };
            let schema = f.ty().json_schema();
            let no_defs = Map::new();
            let defs = schema
                .get("$defs")
                .and_then(Value::as_object)
                .unwrap_or(&no_defs);
            let mut candidates = vec![&schema];
            if let Some(choices) = schema.get("anyOf").and_then(Value::as_array) {
                candidates.extend(choices);
            }
            let mut failure: Option<(Py, String)> = None;
            for candidate in candidates {
                let value = elements_to_value(elements, candidate, defs, 0).map_err(|TooDeep| {
                    AdapterError::Parse {
                        adapter: NAME,
                        field: Some(f.name().to_string()),
                        message: format!(
                            "the elements of field {} nest deeper than {MAX_DEPTH} levels",
                            f.name()
                        ),
                        completion: completion.to_string(),
                    }
                })?;
                let parsed =
                    parse_value(f.ty(), &value).or_else(|_| validate_python(f.ty(), &value));
                match parsed {
                    Ok(v) => {
                        fields.insert(f.name().to_string(), v);
                        failure = None;
                        break;
                    }
                    Err(e) => failure = Some((value, e)),
                }
            }
            if let Some((value, error)) = failure {
                return Err(AdapterError::Parse {
                    adapter: NAME,
                    field: Some(f.name().to_string()),
                    message: format!(
                        "Failed to parse field {} with value {}: {error}",
                        f.name(),
                        py_str(&value)
                    ),
                    completion: completion.to_string(),
                });
            }
        }
        let fields = apply_defaults(signature, fields);
        if fields.len() != signature.outputs().len() {
            return Err(missing_fields_error(NAME, signature, &fields, completion));
        }
        Ok(fields)
    }

    fn fallback(&self) -> Option<&'static dyn Adapter> {
        // DSPy's XMLAdapter falls back to a JSONAdapter carrying its own native-calling options.
        Some(JSONAdapter::fallback_for(self.tools))
    }

    fn native_tool_calling(&self) -> NativeToolCalling {
        self.tools
    }

    /// XMLAdapter's `format_user_message_content(signature, values)`: the `<name>` element of
    /// every input of `signature` present in `values`, joined by blank lines.
    fn format_fields(
        &self,
        signature: &DynSignature,
        values: &Map<String, Value>,
    ) -> Result<String, AdapterError> {
        let mut out = String::new();
        write_user(&mut out, signature, values, "", None)?;
        Ok(out)
    }
}
