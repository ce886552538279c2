//! [`JSONAdapter`](struct@JSONAdapter): DSPy's JSON prompt format and its structured-output schema.

use super::chat::{Style, empty_error, format_messages, missing_fields_error};
use super::native::NativeToolCalling;
use super::{Adapter, AdapterError};
use crate::example::Example;
use crate::pycompat::json_repair;
use crate::pycompat::py::Py;
use crate::pycompat::value::{apply_defaults, parse_value};
use crate::signature::{DynSignature, TypeSpec, pydantic_title};
use crate::types::{Message, ResponseFormat};
use serde_json::{Map, Value, json};

/// DSPy's `JSONAdapter` (3.4.1), reproduced byte for byte.
///
/// **Prompt.** The same field list and instructions as [`ChatAdapter`](struct@super::ChatAdapter),
/// but the outputs are described as one JSON object (`{"answer": "{answer}"}` with the type
/// notes inside the strings), demos answer with indented JSON, and the reminder asks for
/// "a JSON object in the following order of fields".
///
/// **Parsing** (`JSONAdapter.parse`). The completion is read leniently (code fences, prose
/// around the object, single quotes, unquoted keys, trailing commas, Python literals — a port
/// of `json_repair`); when that is not an object, the first balanced `{…}` in the text is read
/// instead. Keys that are not output fields are ignored; each value is converted to its field's
/// type (`str` fields take any value as Python's `str()` of it, numbers in strings are coerced
/// as pydantic does); missing outputs are an error unless `Optional`.
///
/// **Response format** ([`Adapter::response_format`]). DSPy decides from the model's
/// capabilities; dspex decides from the signature alone (the caller may override the request's
/// `response_format`):
/// - an output typed `dict[str, V]` (an open-ended mapping, which structured outputs cannot
///   declare) → `{"type": "json_object"}`;
/// - otherwise → `{"type": "json_schema", "json_schema": {"name": "DSPyProgramOutputs",
///   "schema": …, "strict": true}}` with exactly the schema DSPy sends: pydantic's schema of a
///   model with one field per output (`extra="forbid"`), every object closed with all its
///   properties required (`enforce_required`), then OpenAI's strict rules applied
///   (`_strict_json_schema`).
///
/// ```
/// use dspex_core::adapter::{Adapter, JSONAdapter};
/// use dspex_core::DynSignature;
///
/// let sig = DynSignature::parse("question -> answer, confidence: float")?;
/// let out = JSONAdapter.parse(&sig, "```json\n{'answer': 'Paris', 'confidence': '0.9',}\n```")?;
/// assert_eq!(out["answer"], "Paris");
/// assert_eq!(out["confidence"], 0.9);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// **Options.** `JSONAdapter` is both the type and its default value (DSPy's
/// `dspy.JSONAdapter()`, which uses native function calling by default); turn that off with
/// [`native_function_calling(false)`](JSONAdapter::native_function_calling), ask for parallel
/// calls with [`parallel_tool_calls`](JSONAdapter::parallel_tool_calls). With native calling,
/// a `ToolCalls` output is left out of the structured-output schema; without it, a signature
/// with one asks for `json_object`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JSONAdapter {
    tools: NativeToolCalling,
    native_reasoning: bool,
}

/// The default [`JSONAdapter`](struct@JSONAdapter) as a value, so `JSONAdapter` reads as DSPy's `dspy.JSONAdapter()`.
#[allow(non_upper_case_globals)]
pub const JSONAdapter: JSONAdapter = JSONAdapter::new();

impl Default for JSONAdapter {
    fn default() -> Self {
        JSONAdapter::new()
    }
}

const NAME: &str = "JSONAdapter";

impl JSONAdapter {
    /// DSPy's defaults: native function calling on, the provider's default for parallel calls.
    pub const fn new() -> Self {
        JSONAdapter {
            tools: NativeToolCalling::on(),
            native_reasoning: true,
        }
    }

    /// DSPy's `native_response_types` with (`true`, the default) or without `Reasoning`: whether
    /// a `Reasoning` output is left to an LM that reasons natively
    /// (`LanguageModel::supports_reasoning`) instead of being asked for in the prompt. (DSPy's
    /// other default native type, `Citations`, has no dspex counterpart yet.)
    #[must_use]
    pub const fn native_reasoning(mut self, on: bool) -> Self {
        self.native_reasoning = on;
        self
    }

    /// DSPy's `use_native_function_calling` (on by default for the JSONAdapter).
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

    /// The JSONAdapter another adapter with these options falls back to (DSPy's
    /// `_make_json_adapter_fallback` carries them over), as a `'static` value.
    pub(crate) fn fallback_for(tools: NativeToolCalling) -> &'static JSONAdapter {
        const fn with(enabled: bool, parallel_tool_calls: Option<bool>) -> JSONAdapter {
            JSONAdapter {
                tools: NativeToolCalling {
                    enabled,
                    parallel_tool_calls,
                },
                // DSPy's fallback JSONAdapter has the default native response types.
                native_reasoning: true,
            }
        }
        static ALL: [JSONAdapter; 6] = [
            with(false, None),
            with(false, Some(false)),
            with(false, Some(true)),
            with(true, None),
            with(true, Some(false)),
            with(true, Some(true)),
        ];
        let parallel = match tools.parallel_tool_calls {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        };
        &ALL[usize::from(tools.enabled) * 3 + parallel]
    }

    /// DSPy's structured-output schema for the signature's outputs, in the wire form its client
    /// sends (`{"name": "DSPyProgramOutputs", "schema": …, "strict": true}`), or `None` when an
    /// output is an open-ended `dict[str, V]`.
    pub fn structured_output_schema(signature: &DynSignature) -> Option<Value> {
        if signature
            .outputs()
            .iter()
            .any(|f| matches!(f.ty(), TypeSpec::Dict(_)))
        {
            return None;
        }
        let mut schema = outputs_model_schema(signature);
        enforce_required(&mut schema);
        let root = schema.clone();
        let strict = strict_json_schema(&schema, &root);
        Some(json!({"name": "DSPyProgramOutputs", "schema": strict, "strict": true}))
    }
}

/// Pydantic's `model_json_schema()` of `create_model("DSPyProgramOutputs", extra="forbid", …)`
/// with one required field per output.
fn outputs_model_schema(signature: &DynSignature) -> Value {
    let mut defs = Map::new();
    let mut properties = Map::new();
    for f in signature.outputs() {
        let mut prop = property_schema(f.ty(), &mut defs);
        if let Value::Object(map) = &mut prop {
            // Pydantic titles a field unless its schema is a model reference (or a nullable one).
            let is_ref = f.ty().as_model().is_some()
                || matches!(f.ty(), TypeSpec::Optional(t) if t.as_model().is_some());
            if !is_ref {
                map.insert("title".to_string(), Value::String(pydantic_title(f.name())));
            }
            map.sort_keys();
        }
        properties.insert(f.name().to_string(), prop);
    }
    let mut root = Map::new();
    if !defs.is_empty() {
        defs.sort_keys();
        root.insert("$defs".to_string(), Value::Object(defs));
    }
    root.insert("additionalProperties".to_string(), Value::Bool(false));
    let required: Vec<Value> = properties.keys().cloned().map(Value::String).collect();
    root.insert("properties".to_string(), Value::Object(properties));
    root.insert("required".to_string(), Value::Array(required));
    root.insert(
        "title".to_string(),
        Value::String("DSPyProgramOutputs".to_string()),
    );
    root.insert("type".to_string(), Value::String("object".to_string()));
    Value::Object(root)
}

/// A field's schema inside the outputs model, in pydantic's layout: models become `$ref`s into
/// `defs` (their own `$defs` move there too). Built here rather than with
/// [`TypeSpec::json_schema`] so that every mapping keeps pydantic's key order.
fn property_schema(ty: &TypeSpec, defs: &mut Map<String, Value>) -> Value {
    match ty {
        TypeSpec::Model { .. } | TypeSpec::Custom(_) => {
            let Some((name, schema)) = ty.as_model() else {
                return ty.json_schema();
            };
            let mut schema = schema.clone();
            if let Some(Value::Object(inner)) =
                schema.as_object_mut().and_then(|m| m.shift_remove("$defs"))
            {
                defs.extend(inner);
            }
            defs.insert(name.to_string(), schema);
            json!({ "$ref": format!("#/$defs/{name}") })
        }
        TypeSpec::List(item) => json!({"items": property_schema(item, defs), "type": "array"}),
        TypeSpec::Dict(value) if **value == TypeSpec::Any => {
            json!({"additionalProperties": true, "type": "object"})
        }
        TypeSpec::Dict(value) => {
            json!({"additionalProperties": property_schema(value, defs), "type": "object"})
        }
        TypeSpec::Optional(inner) => {
            json!({"anyOf": [property_schema(inner, defs), {"type": "null"}]})
        }
        other => other.json_schema(),
    }
}

/// DSPy's `enforce_required`: every object with properties requires all of them and is closed;
/// an object without properties gets empty ones (so it can only be `{}`); recurses into
/// properties, array items and `$defs`.
fn enforce_required(part: &mut Value) {
    let Value::Object(map) = part else { return };
    if map.get("type").and_then(Value::as_str) == Some("object") {
        if let Some(Value::Object(props)) = map.get("properties") {
            let required: Vec<Value> = props.keys().cloned().map(Value::String).collect();
            map.insert("required".to_string(), Value::Array(required));
            map.insert("additionalProperties".to_string(), Value::Bool(false));
            if let Some(Value::Object(props)) = map.get_mut("properties") {
                props.values_mut().for_each(enforce_required);
            }
        } else if map.get("properties").is_none_or(Value::is_null) {
            map.insert("properties".to_string(), json!({}));
            map.insert("required".to_string(), json!([]));
            map.insert("additionalProperties".to_string(), Value::Bool(false));
        }
    }
    if map.get("type").and_then(Value::as_str) == Some("array")
        && let Some(items @ Value::Object(_)) = map.get_mut("items")
    {
        enforce_required(items);
    }
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(defs)) = map.get_mut(key) {
            defs.values_mut().for_each(enforce_required);
        }
    }
}

/// DSPy's `_strict_json_schema` (the OpenAI SDK's `to_strict_json_schema` rules).
fn strict_json_schema(schema: &Value, root: &Value) -> Value {
    strict_at(schema, root, 0)
}

fn strict_at(schema: &Value, root: &Value, depth: usize) -> Value {
    let Value::Object(src) = schema else {
        return schema.clone();
    };
    // A self-referencing `$ref` with siblings would recurse forever; stop somewhere sane.
    if depth > 64 {
        return schema.clone();
    }
    let strict = |v: &Value| strict_at(v, root, depth + 1);
    let mut out = src.clone();
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(defs)) = out.get(key) {
            let converted: Map<String, Value> =
                defs.iter().map(|(k, v)| (k.clone(), strict(v))).collect();
            out.insert(key.to_string(), Value::Object(converted));
        }
    }
    if out.get("type").and_then(Value::as_str) == Some("object")
        && !out.contains_key("additionalProperties")
    {
        out.insert("additionalProperties".to_string(), Value::Bool(false));
    }
    if let Some(Value::Object(props)) = out.get("properties") {
        let required: Vec<Value> = props.keys().cloned().map(Value::String).collect();
        let converted: Map<String, Value> =
            props.iter().map(|(k, v)| (k.clone(), strict(v))).collect();
        out.insert("required".to_string(), Value::Array(required));
        out.insert("properties".to_string(), Value::Object(converted));
    }
    if let Some(items @ Value::Object(_)) = out.get("items") {
        let converted = strict(items);
        out.insert("items".to_string(), converted);
    }
    if let Some(Value::Array(any_of)) = out.get("anyOf") {
        let converted: Vec<Value> = any_of.iter().map(strict).collect();
        out.insert("anyOf".to_string(), Value::Array(converted));
    }
    if let Some(Value::Array(all_of)) = out.get("allOf") {
        if all_of.len() == 1 {
            let inner = strict(&all_of[0]);
            out.shift_remove("allOf");
            if let Value::Object(inner) = inner {
                for (k, v) in inner {
                    out.insert(k, v);
                }
            }
        } else {
            let converted: Vec<Value> = all_of.iter().map(strict).collect();
            out.insert("allOf".to_string(), Value::Array(converted));
        }
    }
    if out.get("default").is_some_and(Value::is_null) {
        out.shift_remove("default");
    }
    if let Some(Value::String(reference)) = out.get("$ref")
        && out.len() > 1
        && let Some(resolved @ Value::Object(_)) = resolve_ref(root, reference)
    {
        let mut merged = match strict(resolved) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        for (k, v) in &out {
            if k != "$ref" {
                merged.insert(k.clone(), v.clone());
            }
        }
        out = merged;
    }
    Value::Object(out)
}

fn resolve_ref<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let path = reference.strip_prefix("#/")?;
    let mut node = root;
    for part in path.split('/') {
        node = node.get(part)?;
    }
    Some(node)
}

/// The first balanced `{…}` in the text (DSPy's recursive regex `\{(?:[^{}]|(?R))*\}`): the
/// leftmost `{` that has a matching `}`, with braces inside strings counted like any other.
fn first_balanced_object(text: &str) -> Option<&str> {
    let mut stack: Vec<usize> = Vec::new();
    let mut best: Option<(usize, usize)> = None;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'{' => stack.push(i),
            b'}' => {
                if let Some(open) = stack.pop()
                    && best.is_none_or(|(start, _)| open < start)
                {
                    best = Some((open, i));
                }
            }
            _ => {}
        }
    }
    best.map(|(start, end)| &text[start..=end])
}

impl Adapter for JSONAdapter {
    fn name(&self) -> &'static str {
        NAME
    }

    fn format(
        &self,
        signature: &DynSignature,
        demos: &[Example],
        inputs: &Example,
    ) -> Result<Vec<Message>, AdapterError> {
        format_messages(Style::Json, self.tools.enabled, signature, demos, inputs)
    }

    fn parse(
        &self,
        signature: &DynSignature,
        completion: &str,
    ) -> Result<Map<String, Value>, AdapterError> {
        if completion.is_empty() {
            return Err(empty_error(NAME));
        }
        let unreadable = |response: &str, e: String| AdapterError::Parse {
            adapter: NAME,
            field: None,
            message: e,
            completion: response.to_string(),
        };
        let mut response = completion;
        let mut fields = json_repair::loads(completion).map_err(|e| unreadable(completion, e))?;
        if !matches!(fields, Py::Dict(_))
            && let Some(object) = first_balanced_object(completion)
        {
            response = object;
            fields = json_repair::loads(object).map_err(|e| unreadable(object, e))?;
        }
        let Py::Dict(entries) = fields else {
            return Err(AdapterError::Parse {
                adapter: NAME,
                field: None,
                message: "LM response cannot be serialized to a JSON object.".to_string(),
                completion: response.to_string(),
            });
        };
        let mut parsed = Map::new();
        for (key, value) in &entries {
            let Py::Str(key) = key else { continue };
            let Some(field) = signature.outputs().iter().find(|f| f.name() == key) else {
                continue;
            };
            let value = parse_value(field.ty(), value).map_err(|e| AdapterError::Parse {
                adapter: NAME,
                field: Some(key.clone()),
                message: format!("Failed to parse field {key}: {e}"),
                completion: response.to_string(),
            })?;
            parsed.insert(key.clone(), value);
        }
        let parsed = apply_defaults(signature, parsed);
        if parsed.len() != signature.outputs().len() {
            return Err(missing_fields_error(NAME, signature, &parsed, response));
        }
        Ok(parsed)
    }

    /// `json_schema` structured outputs when every output type can be declared, else
    /// `json_object` (see the type's documentation for the rule).
    fn response_format(&self, signature: &DynSignature) -> Option<ResponseFormat> {
        let tool_calls = super::native::tool_calls_output(signature);
        if tool_calls.is_some() && !self.tools.enabled {
            return Some(ResponseFormat::JsonObject);
        }
        // With native calling the calls come back as tool calls, not in the JSON.
        let without_calls = tool_calls.map(|f| signature.delete(f.name()));
        Some(
            match Self::structured_output_schema(without_calls.as_ref().unwrap_or(signature)) {
                Some(json_schema) => ResponseFormat::JsonSchema { json_schema },
                None => ResponseFormat::JsonObject,
            },
        )
    }

    fn native_tool_calling(&self) -> NativeToolCalling {
        self.tools
    }

    fn native_reasoning_enabled(&self) -> bool {
        self.native_reasoning
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::ChatAdapter;

    #[test]
    fn balanced_object_search() {
        assert_eq!(first_balanced_object("x {a} {b}"), Some("{a}"));
        assert_eq!(first_balanced_object("{ {a}"), Some("{a}"));
        assert_eq!(
            first_balanced_object("[{\"a\": {1}}]"),
            Some("{\"a\": {1}}")
        );
        assert_eq!(first_balanced_object("}{"), None);
        assert_eq!(first_balanced_object("no braces"), None);
    }

    #[test]
    fn structured_output_schema_matches_dspy() {
        use crate::signature::{FieldSpec, LiteralValue};
        // Generated by DSPy 3.4.1 (`_get_structured_outputs_response_format` +
        // `_strict_json_schema`) for the same outputs, with pydantic models `Citation` and
        // `Outer`.
        let citation = TypeSpec::Model {
            name: "Citation".into(),
            schema: serde_json::from_str(r##"{"properties": {"title": {"title": "Title", "type": "string"}, "year": {"title": "Year", "type": "integer"}}, "required": ["title", "year"], "title": "Citation", "type": "object"}"##).expect("JSON"),
        };
        let outer = TypeSpec::Model {
            name: "Outer".into(),
            schema: serde_json::from_str(r##"{"$defs": {"Citation": {"properties": {"title": {"title": "Title", "type": "string"}, "year": {"title": "Year", "type": "integer"}}, "required": ["title", "year"], "title": "Citation", "type": "object"}}, "properties": {"cites": {"items": {"$ref": "#/$defs/Citation"}, "title": "Cites", "type": "array"}, "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": null, "title": "Note"}, "tags": {"additionalProperties": {"type": "integer"}, "default": {}, "title": "Tags", "type": "object"}}, "required": ["cites"], "title": "Outer", "type": "object"}"##).expect("JSON"),
        };
        let want: Value = serde_json::from_str(r##"{"name": "DSPyProgramOutputs", "schema": {"$defs": {"Citation": {"properties": {"title": {"title": "Title", "type": "string"}, "year": {"title": "Year", "type": "integer"}}, "required": ["title", "year"], "title": "Citation", "type": "object", "additionalProperties": false}, "Outer": {"properties": {"cites": {"items": {"$ref": "#/$defs/Citation"}, "title": "Cites", "type": "array"}, "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Note"}, "tags": {"additionalProperties": false, "default": {}, "title": "Tags", "type": "object", "properties": {}, "required": []}}, "required": ["cites", "note", "tags"], "title": "Outer", "type": "object", "additionalProperties": false}}, "additionalProperties": false, "properties": {"citation": {"$ref": "#/$defs/Citation"}, "more": {"items": {"$ref": "#/$defs/Citation"}, "title": "More", "type": "array"}, "o": {"anyOf": [{"$ref": "#/$defs/Outer"}, {"type": "null"}]}, "ld": {"items": {"additionalProperties": false, "type": "object", "properties": {}, "required": []}, "title": "Ld", "type": "array"}, "od": {"anyOf": [{"additionalProperties": {"type": "integer"}, "type": "object"}, {"type": "null"}], "title": "Od"}, "is_ok": {"title": "Is Ok", "type": "boolean"}, "lab": {"const": "a", "title": "Lab", "type": "string"}, "anything": {"title": "Anything"}}, "required": ["citation", "more", "o", "ld", "od", "is_ok", "lab", "anything"], "title": "DSPyProgramOutputs", "type": "object"}, "strict": true}"##).expect("JSON");
        let dict_int = || TypeSpec::Dict(Box::new(TypeSpec::Int));
        let sig = DynSignature::from_fields(
            None,
            [
                FieldSpec::input("claim", TypeSpec::Str),
                FieldSpec::output("citation", citation.clone()).with_desc("the cite"),
                FieldSpec::output("more", TypeSpec::List(Box::new(citation))),
                FieldSpec::output("o", TypeSpec::Optional(Box::new(outer))),
                FieldSpec::output("ld", TypeSpec::List(Box::new(dict_int()))),
                FieldSpec::output("od", TypeSpec::Optional(Box::new(dict_int()))),
                FieldSpec::output("is_ok", TypeSpec::Bool),
                FieldSpec::output(
                    "lab",
                    TypeSpec::Literal(vec![LiteralValue::Str("a".into())]),
                ),
                FieldSpec::output("anything", TypeSpec::Any),
            ],
        )
        .expect("valid");
        let got = JSONAdapter::structured_output_schema(&sig).expect("a schema");
        // Equal, and in the same key order.
        assert_eq!(got.to_string(), want.to_string());
        assert_eq!(
            JSONAdapter.response_format(&sig),
            Some(ResponseFormat::JsonSchema { json_schema: want })
        );

        let simple = DynSignature::parse("question -> answer, n: int").expect("valid");
        assert_eq!(
            JSONAdapter::structured_output_schema(&simple)
                .expect("a schema")
                .to_string(),
            json!({"name": "DSPyProgramOutputs", "schema": {
                "additionalProperties": false,
                "properties": {"answer": {"title": "Answer", "type": "string"},
                               "n": {"title": "N", "type": "integer"}},
                "required": ["answer", "n"], "title": "DSPyProgramOutputs", "type": "object"},
                "strict": true})
            .to_string()
        );
        // An open-ended mapping cannot be declared: JSON mode instead.
        let open = DynSignature::parse("text -> counts: dict[str, int]").expect("valid");
        assert_eq!(JSONAdapter::structured_output_schema(&open), None);
        assert_eq!(
            JSONAdapter.response_format(&open),
            Some(ResponseFormat::JsonObject)
        );
        assert_eq!(ChatAdapter.response_format(&open), None);
    }
}
