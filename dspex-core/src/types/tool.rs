//! DSPy's tool-calling types: [`ToolSpec`] (what a `list[Tool]` input holds: a tool's name,
//! description and argument schemas), [`ToolCalls`] (a `ToolCalls` output: the calls the model
//! asked for) and [`ToolCallResults`] (what running them gave).
//!
//! Their serde forms are pydantic's `model_dump` of DSPy's classes (`dspy.Tool` as the fixtures
//! record it, `{"name", "desc", "args"}`; `dspy.ToolCalls` as `{"tool_calls": [{"name", "args"}]}`),
//! with one addition: a call's provider `id`, which DSPy keeps on the Python object but leaves
//! out of its dump, is written when there is one, so a typed output keeps it.

use crate::pycompat::{json_repair, py};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::fmt;

/// A tool as a signature input sees it (DSPy's `dspy.Tool` without its function): a name, a
/// description, and the JSON schema of each argument (`{"city": {"type": "string"}}`; an
/// argument with a `default` is optional).
///
/// In a prompt (text mode) a tool prints as DSPy's `str(tool)`; with native function calling
/// it is sent as the request's `tools` entry [`to_function_schema`](ToolSpec::to_function_schema)
/// builds. The runtime's callable tool (`dspex::module::Tool`, what `#[tool]` generates)
/// converts to one with `Tool::spec`, and is itself a field type of the same DSPy type.
///
/// ```
/// use dspex_core::types::ToolSpec;
/// use serde_json::json;
///
/// let weather = ToolSpec::new(
///     "get_weather",
///     "Get the current weather for a city.",
///     json!({"city": {"type": "string"}, "unit": {"type": "string", "default": "celsius"}}),
/// )?;
/// assert_eq!(
///     weather.to_string(),
///     "get_weather, whose description is <desc>Get the current weather for a city.</desc>. \
///      It takes arguments {'city': {'type': 'string'}, 'unit': {'type': 'string', 'default': 'celsius'}}."
/// );
/// assert_eq!(weather.to_function_schema()["function"]["parameters"]["required"], json!(["city"]));
/// # Ok::<(), dspex_core::types::ToolValueError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    name: String,
    #[serde(default)]
    desc: Option<String>,
    #[serde(default)]
    args: Map<String, Value>,
}

/// A value that is not a valid tool, tool call or tool result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ToolValueError {
    message: String,
}

impl ToolValueError {
    fn new(message: impl Into<String>) -> Self {
        ToolValueError {
            message: message.into(),
        }
    }
}

impl ToolSpec {
    /// A tool named `name` described by `desc` (empty: none), whose arguments' schemas are
    /// `args` (a JSON object from argument name to schema). Fails when `name` is empty or `args`
    /// is not an object.
    pub fn new(
        name: impl Into<String>,
        desc: impl Into<String>,
        args: Value,
    ) -> Result<Self, ToolValueError> {
        let name = name.into();
        if name.is_empty() {
            return Err(ToolValueError::new("a tool needs a name"));
        }
        let Value::Object(args) = args else {
            return Err(ToolValueError::new(format!(
                "tool `{name}`: its args must be an object of JSON schemas, not {}",
                crate::pycompat::text::compact_json(&args)
            )));
        };
        let desc = desc.into();
        Ok(ToolSpec {
            name,
            desc: (!desc.is_empty()).then_some(desc),
            args,
        })
    }

    /// A tool from parts already checked (a callable tool's name, description and schemas).
    pub fn from_parts(name: String, desc: Option<String>, args: Map<String, Value>) -> Self {
        ToolSpec { name, desc, args }
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its description, if it has one.
    pub fn desc(&self) -> Option<&str> {
        self.desc.as_deref()
    }

    /// The JSON schema of each argument, by name.
    pub fn args(&self) -> &Map<String, Value> {
        &self.args
    }

    /// DSPy's `format_as_litellm_function_call()`: the request's `tools` entry,
    /// `{"type": "function", "function": {"name", "description", "parameters": {"type":
    /// "object", "properties": args, "required": [args without a default]}}}`.
    pub fn to_function_schema(&self) -> Value {
        let required: Vec<&String> = self
            .args
            .iter()
            .filter(|(_, schema)| schema.get("default").is_none())
            .map(|(name, _)| name)
            .collect();
        json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.desc,
                "parameters": {
                    "type": "object",
                    "properties": self.args,
                    "required": required,
                },
            },
        })
    }

    /// Reads a tool from its serde form (`{"name", "desc"?, "args"?}`), checking it as
    /// [`ToolSpec::new`] does.
    pub fn from_value(value: &Value) -> Result<Self, ToolValueError> {
        let spec: ToolSpec = serde_json::from_value(value.clone())
            .map_err(|e| ToolValueError::new(format!("not a tool: {e}")))?;
        ToolSpec::new(
            spec.name,
            spec.desc.unwrap_or_default(),
            Value::Object(spec.args),
        )
    }
}

/// DSPy's `str(tool)`: `NAME, whose description is <desc>DESC</desc>. It takes arguments ARGS.`,
/// newlines in the description turned into two spaces and `ARGS` the Python `repr` of the
/// schemas.
impl fmt::Display for ToolSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_tool(&self.name, self.desc.as_deref(), &self.args))
    }
}

/// DSPy's `str(tool)` of a tool's parts (see [`ToolSpec`]'s `Display`).
pub fn format_tool(name: &str, desc: Option<&str>, args: &Map<String, Value>) -> String {
    let mut out = String::from(name);
    match desc.filter(|d| !d.is_empty()) {
        Some(desc) => {
            out.push_str(", whose description is <desc>");
            out.push_str(desc);
            out.push_str("</desc>.");
            // DSPy replaces newlines in the whole clause (the description is all that has any).
            let start = name.len();
            let clause = out[start..].replace('\n', "  ");
            out.truncate(start);
            out.push_str(&clause);
        }
        None => out.push('.'),
    }
    out.push_str(" It takes arguments ");
    py::write_py_repr_json(&mut out, &Value::Object(args.clone()));
    out.push('.');
    out
}

/// One call the model asked for: the tool's name and its arguments (DSPy's
/// `ToolCalls.ToolCall`), with the provider's call id when the call came back natively.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id of the call (native function calling), which results refer to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The tool to call.
    pub name: String,
    /// Its arguments by name.
    #[serde(default)]
    pub args: Map<String, Value>,
}

impl ToolCall {
    /// A call of `name` with `args` and no id.
    pub fn new(name: impl Into<String>, args: Map<String, Value>) -> Self {
        ToolCall {
            id: None,
            name: name.into(),
            args,
        }
    }

    /// A call as a provider returns it: `arguments` is the model's JSON text, read leniently as
    /// DSPy reads it (`json_repair.loads`); text that is not an object gives no arguments
    /// (DSPy's `_normalize_tool_call_dict` does the same for a value that is not a dict).
    ///
    /// ```
    /// use dspex_core::types::ToolCall;
    ///
    /// let call = ToolCall::from_provider(Some("call_1".into()), "get_weather", "{'city': 'Paris',}");
    /// assert_eq!(call.args["city"], "Paris");
    /// assert_eq!(call.id.as_deref(), Some("call_1"));
    /// ```
    pub fn from_provider(id: Option<String>, name: impl Into<String>, arguments: &str) -> Self {
        ToolCall {
            id,
            name: name.into(),
            args: lenient_args(arguments),
        }
    }

    /// DSPy's `ToolCall.format()`: `{"name", "args"}`, what a prompt shows.
    pub fn format_value(&self) -> Value {
        json!({"name": self.name, "args": self.args})
    }
}

/// Arguments text read as `json_repair.loads` does; anything but an object is no arguments.
fn lenient_args(text: &str) -> Map<String, Value> {
    match json_repair::loads(text).ok().map(|v| py::to_json(&v)) {
        Some(Ok(Value::Object(map))) => map,
        _ => Map::new(),
    }
}

/// The tool calls the model asked for (DSPy's `dspy.ToolCalls`), the value of a `ToolCalls`
/// output field.
///
/// As a typed output field it is `ToolCalls` (empty when the model called nothing, where DSPy
/// gives `None`).
///
/// In text mode the model writes them as JSON (`{"tool_calls": [{"name", "args"}]}`; a bare list
/// of calls or a single call is accepted too, as DSPy accepts them); with native function
/// calling they come from the response's `tool_calls`. The runtime runs them against the
/// program's tools (`dspex::module::ExecuteToolCalls::execute`).
///
/// ```
/// use dspex_core::types::ToolCalls;
/// use serde_json::json;
///
/// let calls = ToolCalls::from_value(&json!([{"name": "search", "arguments": "{\"query\": \"cats\"}"}]))?;
/// assert_eq!(calls.len(), 1);
/// assert_eq!(calls.calls()[0].args["query"], "cats");
/// assert_eq!(serde_json::to_value(&calls)?, json!({"tool_calls": [{"name": "search", "args": {"query": "cats"}}]}));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ToolCalls {
    tool_calls: Vec<ToolCall>,
}

/// Reads every shape [`ToolCalls::from_value`] accepts; `null` (the value of a `ToolCalls`
/// output when the model called no tool) is no calls.
impl<'de> Deserialize<'de> for ToolCalls {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Null => Ok(ToolCalls::default()),
            value => ToolCalls::from_value(&value).map_err(serde::de::Error::custom),
        }
    }
}

impl ToolCalls {
    /// DSPy's `ToolCalls.description()`, the type description its prompts carry.
    pub const DESCRIPTION: &'static str = "Tool calls must be a JSON object with `tool_calls`, a list of calls. Each call must include `name` and `args`. Example: {\"tool_calls\": [{\"name\": \"search\", \"args\": {\"query\": \"cats\"}}]}";

    /// These calls.
    pub fn new(calls: Vec<ToolCall>) -> Self {
        ToolCalls { tool_calls: calls }
    }

    /// The calls, in the order the model gave them.
    pub fn calls(&self) -> &[ToolCall] {
        &self.tool_calls
    }

    /// The calls, owned.
    pub fn into_calls(self) -> Vec<ToolCall> {
        self.tool_calls
    }

    /// How many calls there are.
    pub fn len(&self) -> usize {
        self.tool_calls.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tool_calls.is_empty()
    }

    /// DSPy's `ToolCalls.format()`: `{"tool_calls": [{"name", "args"}]}` without ids, what a
    /// prompt shows.
    pub fn format_value(&self) -> Value {
        json!({"tool_calls": self.tool_calls.iter().map(ToolCall::format_value).collect::<Vec<_>>()})
    }

    /// DSPy's validation of a `ToolCalls` value (`validate_input` and
    /// `_normalize_tool_call_dict`): `{"tool_calls": [call, …]}`, a list of calls, or one call,
    /// where a call is `{"name", "args"}`, `{"name", "arguments"}` (arguments as an object or
    /// JSON text, read leniently) or OpenAI's `{"id"?, "function": {"name", "arguments"}}`.
    pub fn from_value(value: &Value) -> Result<Self, ToolValueError> {
        let invalid = || {
            ToolValueError::new(format!(
                "Received invalid value for `dspy.ToolCalls`: {}",
                crate::pycompat::text::compact_json(value)
            ))
        };
        let items = match value {
            Value::Array(items) if items.iter().all(is_call) => items,
            Value::Object(map) => match map.get("tool_calls") {
                Some(Value::Array(items)) => items,
                Some(_) => return Err(invalid()),
                None if is_call(value) => std::slice::from_ref(value),
                None => return Err(invalid()),
            },
            _ => return Err(invalid()),
        };
        items
            .iter()
            .map(normalize_call)
            .collect::<Result<Vec<_>, _>>()
            .map(ToolCalls::new)
    }
}

impl FromIterator<ToolCall> for ToolCalls {
    fn from_iter<I: IntoIterator<Item = ToolCall>>(iter: I) -> Self {
        ToolCalls::new(iter.into_iter().collect())
    }
}

/// DSPy's `_is_tool_call_dict`.
fn is_call(v: &Value) -> bool {
    v.as_object().is_some_and(|m| {
        (m.contains_key("name") && (m.contains_key("args") || m.contains_key("arguments")))
            || m.contains_key("function")
    })
}

/// DSPy's `_normalize_tool_call_dict`, then the `ToolCall` model's validation.
fn normalize_call(v: &Value) -> Result<ToolCall, ToolValueError> {
    let Some(map) = v.as_object() else {
        return Err(ToolValueError::new(format!(
            "Received invalid tool call value for `dspy.ToolCalls`: {}",
            crate::pycompat::text::compact_json(v)
        )));
    };
    let (arguments, name) = match map.get("function") {
        Some(function) => {
            let function = match function {
                Value::Null => &Value::Object(Map::new()),
                Value::Object(_) => function,
                other => {
                    return Err(ToolValueError::new(format!(
                        "Received invalid function value for `dspy.ToolCalls`: {}",
                        crate::pycompat::text::compact_json(other)
                    )));
                }
            };
            let name = function
                .get("name")
                .filter(|n| truthy(n))
                .or_else(|| map.get("name"));
            (function.get("arguments").cloned(), name.cloned())
        }
        None => (
            map.get("args").or_else(|| map.get("arguments")).cloned(),
            map.get("name").cloned(),
        ),
    };
    let args = match arguments {
        Some(Value::String(text)) => lenient_args_strict(&text)?,
        Some(Value::Object(args)) => args,
        _ => Map::new(),
    };
    let name = match name {
        Some(Value::String(name)) => name,
        other => {
            return Err(ToolValueError::new(format!(
                "a tool call's name must be a string, not {}",
                other.map_or_else(
                    || "missing".to_string(),
                    |v| crate::pycompat::text::compact_json(&v)
                )
            )));
        }
    };
    let id = map
        .get("id")
        .filter(|v| truthy(v))
        .or_else(|| map.get("call_id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(ToolCall { id, name, args })
}

/// `json_repair.loads` of a call's arguments text, which must give an object (pydantic rejects
/// anything else as the `args` of a `ToolCall`).
fn lenient_args_strict(text: &str) -> Result<Map<String, Value>, ToolValueError> {
    let parsed = json_repair::loads(text)
        .map_err(|e| ToolValueError::new(format!("a tool call's arguments: {e}")))?;
    match py::to_json(&parsed) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ToolValueError::new(format!(
            "a tool call's arguments must be a JSON object, not {}",
            crate::pycompat::text::compact_json(&other)
        ))),
        Err(e) => Err(ToolValueError::new(format!("a tool call's arguments: {e}"))),
    }
}

/// Python's truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// What running one tool call gave (DSPy's `ToolCallResults.ToolCallResult`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallResult {
    /// The id of the call it answers, when the call had one.
    #[serde(default)]
    pub call_id: Option<String>,
    /// The tool that ran.
    pub name: String,
    /// What it returned, or the error's text when `is_error`.
    pub value: Value,
    /// Whether the call failed.
    #[serde(default)]
    pub is_error: bool,
}

/// The results of a turn's tool calls, in the calls' order (DSPy's `dspy.ToolCallResults`).
///
/// ```
/// use dspex_core::types::{ToolCall, ToolCallResults, ToolCalls};
/// use serde_json::{Map, json};
///
/// let calls = ToolCalls::new(vec![ToolCall::new("add", Map::new())]);
/// let results = ToolCallResults::from_calls_and_values(&calls, vec![Ok(json!(5))])?;
/// assert_eq!(
///     serde_json::to_value(&results)?,
///     json!({"tool_call_results": [{"call_id": null, "name": "add", "value": 5, "is_error": false}]})
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallResults {
    tool_call_results: Vec<ToolCallResult>,
}

impl ToolCallResults {
    /// These results.
    pub fn new(results: Vec<ToolCallResult>) -> Self {
        ToolCallResults {
            tool_call_results: results,
        }
    }

    /// DSPy's `from_tool_calls_and_values`: one result per call, `Err(text)` an error result.
    /// Fails when the counts differ.
    pub fn from_calls_and_values(
        calls: &ToolCalls,
        values: Vec<Result<Value, String>>,
    ) -> Result<Self, ToolValueError> {
        if calls.len() != values.len() {
            return Err(ToolValueError::new(
                "`tool_calls` and `values` must have the same length.",
            ));
        }
        Ok(ToolCallResults::new(
            calls
                .calls()
                .iter()
                .zip(values)
                .map(|(call, value)| {
                    let (value, is_error) = match value {
                        Ok(v) => (v, false),
                        Err(e) => (Value::String(e), true),
                    };
                    ToolCallResult {
                        call_id: call.id.clone(),
                        name: call.name.clone(),
                        value,
                        is_error,
                    }
                })
                .collect(),
        ))
    }

    /// The results, in order.
    pub fn results(&self) -> &[ToolCallResult] {
        &self.tool_call_results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_print_and_schema_as_dspy() {
        let t = ToolSpec::new(
            "f",
            "Line one.\nLine two.",
            json!({"x": {"type": "integer"}}),
        )
        .unwrap();
        assert_eq!(
            t.to_string(),
            "f, whose description is <desc>Line one.  Line two.</desc>. It takes arguments {'x': {'type': 'integer'}}."
        );
        let bare = ToolSpec::new("g", "", json!({})).unwrap();
        assert_eq!(bare.to_string(), "g. It takes arguments {}.");
        assert_eq!(
            bare.to_function_schema(),
            json!({"type": "function", "function": {"name": "g", "description": null,
                "parameters": {"type": "object", "properties": {}, "required": []}}})
        );
        assert!(ToolSpec::new("", "d", json!({})).is_err());
        assert!(ToolSpec::new("h", "d", json!([1])).is_err());
        assert!(ToolSpec::from_value(&json!({"desc": "no name"})).is_err());
        let back = ToolSpec::from_value(&serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn tool_calls_accept_dspy_shapes() {
        let expect = json!({"tool_calls": [{"name": "s", "args": {"q": "x"}}]});
        for v in [
            json!({"tool_calls": [{"name": "s", "args": {"q": "x"}}]}),
            json!([{"name": "s", "args": {"q": "x"}}]),
            json!({"name": "s", "args": {"q": "x"}}),
            json!({"name": "s", "arguments": "{\"q\": \"x\"}"}),
            json!([{"type": "function", "function": {"name": "s", "arguments": "{'q': 'x'"}}]),
        ] {
            let calls = ToolCalls::from_value(&v).unwrap();
            assert_eq!(serde_json::to_value(&calls).unwrap(), expect, "{v}");
        }
        let with_id =
            ToolCalls::from_value(&json!([{"id": "c1", "function": {"name": "s"}}])).unwrap();
        assert_eq!(with_id.calls()[0].id.as_deref(), Some("c1"));
        assert_eq!(
            with_id.format_value(),
            json!({"tool_calls": [{"name": "s", "args": {}}]})
        );
        for bad in [
            json!("text"),
            json!(3),
            json!({"tool_calls": "x"}),
            json!({"other": 1}),
            json!([1]),
            json!({"tool_calls": [{"name": 3, "args": {}}]}),
            json!({"tool_calls": [{"args": {}}]}),
            json!({"tool_calls": [{"name": "s", "args": "[1, 2]"}]}),
            json!({"function": "f"}),
        ] {
            assert!(ToolCalls::from_value(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn provider_arguments_are_read_leniently() {
        let call = ToolCall::from_provider(None, "f", "{\"a\": 1, \"b\": [1, 2");
        assert_eq!(Value::Object(call.args), json!({"a": 1, "b": [1, 2]}));
        assert!(
            ToolCall::from_provider(None, "f", "not json")
                .args
                .is_empty()
        );
        assert!(ToolCall::from_provider(None, "f", "").args.is_empty());
        assert!(ToolCall::from_provider(None, "f", "[1]").args.is_empty());
    }

    #[test]
    fn results_pair_with_calls() {
        let calls = ToolCalls::new(vec![ToolCall::from_provider(Some("c".into()), "f", "{}")]);
        let r = ToolCallResults::from_calls_and_values(&calls, vec![Err("boom".into())]).unwrap();
        assert_eq!(r.results()[0].call_id.as_deref(), Some("c"));
        assert!(r.results()[0].is_error);
        assert!(ToolCallResults::from_calls_and_values(&calls, vec![]).is_err());
    }
}
