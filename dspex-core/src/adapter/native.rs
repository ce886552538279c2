//! Native function calling: DSPy's `Adapter._call_preprocess` and `_call_postprocess` for a
//! signature with a `list[Tool]` input and a `ToolCalls` output.
//!
//! With [`NativeToolCalling::enabled`] (DSPy's `use_native_function_calling`), and an LM that
//! supports function calling, [`prepare`] moves the tools out of the prompt and into the
//! request — their function schemas as `tools`, with `parallel_tool_calls` (and then
//! `tool_choice: "auto"`) when the adapter asks — and deletes the tools and tool-calls fields
//! from the signature the prompt is formatted and parsed with. [`finish`] then reads each
//! completion: its text with that signature, and the calls from the response's tool calls.
//! Without native calling, the tools are printed in the prompt and the calls parsed from the
//! text like any other field (and `tools`, `tool_choice`, `parallel_tool_calls` given in the
//! call's parameters are dropped, as DSPy drops them).
//!
//! ```
//! use dspex_core::adapter::native::{NativeToolCalling, prepare};
//! use dspex_core::{DynSignature, Example};
//! use serde_json::{Map, json};
//!
//! let sig = DynSignature::parse("question, tools: list[Tool] -> answer, tool_calls: ToolCalls")?;
//! let inputs = Example::new().with("question", "Weather in Oslo?").with(
//!     "tools",
//!     json!([{"name": "get_weather", "desc": "Get the weather.", "args": {"city": {"type": "string"}}}]),
//! );
//! let mut params = Map::new();
//! let prompt_sig = prepare(NativeToolCalling::on(), &sig, &inputs, true, &mut params)?;
//! assert_eq!(prompt_sig.to_string(), "question: str -> answer: str");
//! assert_eq!(params["tools"][0]["function"]["name"], "get_weather");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::AdapterError;
use crate::example::Example;
use crate::signature::{CustomType, DynSignature, FieldSpec, TypeSpec};
use crate::types::{ToolCall, ToolCalls, ToolSpec};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// An adapter's native function-calling options (DSPy's `use_native_function_calling` and
/// `parallel_tool_calls`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NativeToolCalling {
    /// Send the tools as the request's `tools` and read the calls from the response.
    pub enabled: bool,
    /// Ask the provider for parallel tool calls (`Some`), or leave its default (`None`).
    pub parallel_tool_calls: Option<bool>,
}

impl NativeToolCalling {
    /// Off: tools are printed in the prompt and calls parsed from the text.
    pub const OFF: NativeToolCalling = NativeToolCalling {
        enabled: false,
        parallel_tool_calls: None,
    };

    /// On, with the provider's default for parallel calls.
    pub const fn on() -> Self {
        NativeToolCalling {
            enabled: true,
            parallel_tool_calls: None,
        }
    }
}

/// The request parameters native function calling controls.
pub const TOOL_PARAMS: [&str; 3] = ["tools", "tool_choice", "parallel_tool_calls"];

/// DSPy's `_get_tool_call_input_field_name`: the first input of type `list[Tool]` or `Tool`.
pub fn tools_input(signature: &DynSignature) -> Option<&FieldSpec> {
    let tool = TypeSpec::Custom(CustomType::Tool);
    signature.inputs().iter().find(|f| match f.ty() {
        TypeSpec::List(item) => **item == tool,
        other => *other == tool,
    })
}

/// DSPy's `_get_tool_call_output_field_name`: the first output of type `ToolCalls`.
pub fn tool_calls_output(signature: &DynSignature) -> Option<&FieldSpec> {
    signature
        .outputs()
        .iter()
        .find(|f| *f.ty() == TypeSpec::Custom(CustomType::ToolCalls))
}

/// DSPy's `_call_preprocess` (and `__call__`'s `tool_choice` default): adjusts the call's
/// parameters `params` and returns the signature the prompt is formatted and parsed with.
///
/// Native and the LM supports function calling, with a `ToolCalls` output: `params` gains
/// `tools` (each input tool's [`ToolSpec::to_function_schema`]) and `parallel_tool_calls` when
/// the options set it and `params` does not, and both tool fields leave the signature. Native
/// without function-calling support, or not native: the three tool parameters are removed.
/// Whenever `parallel_tool_calls` ends up set, `tool_choice` defaults to `"auto"`.
///
/// Fails ([`AdapterError::Format`], DSPy's `ValueError`) when native calling meets a
/// `ToolCalls` output without a tools input, or a tools value that is not a list of tools.
pub fn prepare<'a>(
    options: NativeToolCalling,
    signature: &'a DynSignature,
    inputs: &Example,
    supports_function_calling: bool,
    params: &mut Map<String, Value>,
) -> Result<Cow<'a, DynSignature>, AdapterError> {
    let mut processed = Cow::Borrowed(signature);
    if !options.enabled {
        for key in TOOL_PARAMS {
            params.shift_remove(key);
        }
    } else {
        let tools_field = tools_input(signature);
        let calls_field = tool_calls_output(signature);
        match (calls_field, tools_field) {
            (Some(calls), None) => {
                return Err(AdapterError::Format {
                    adapter: "Adapter",
                    message: format!(
                        "You provided an output field {} to receive the tool calls information, but did not provide any tools as the input. Please provide a list of tools as the input by adding an input field with type `list[dspy.Tool]`.",
                        calls.name()
                    ),
                });
            }
            (Some(calls), Some(tools)) if supports_function_calling => {
                let schemas = function_schemas(tools, inputs)?;
                params.insert("tools".into(), Value::Array(schemas));
                if let Some(parallel) = options.parallel_tool_calls
                    && params.get("parallel_tool_calls").is_none_or(Value::is_null)
                {
                    params.insert("parallel_tool_calls".into(), Value::Bool(parallel));
                }
                processed = Cow::Owned(signature.delete(calls.name()).delete(tools.name()));
            }
            (Some(_), Some(_)) => {
                for key in TOOL_PARAMS {
                    params.shift_remove(key);
                }
            }
            (None, _) => {}
        }
    }
    if params
        .get("parallel_tool_calls")
        .is_some_and(|v| !v.is_null())
        && !params.contains_key("tool_choice")
    {
        params.insert("tool_choice".into(), Value::String("auto".into()));
    }
    Ok(processed)
}

/// The request's `tools`: the function schema of every tool in the tools input.
fn function_schemas(field: &FieldSpec, inputs: &Example) -> Result<Vec<Value>, AdapterError> {
    let bad = |message: String| AdapterError::Format {
        adapter: "Adapter",
        message: format!("field `{}`: {message}", field.name()),
    };
    let value = inputs
        .get(field.name())
        .ok_or_else(|| bad("the tools input is missing".to_string()))?;
    let items = match value {
        Value::Array(items) => items.as_slice(),
        other => std::slice::from_ref(other),
    };
    items
        .iter()
        .map(|item| {
            ToolSpec::from_value(item)
                .map(|tool| tool.to_function_schema())
                .map_err(|e| bad(e.to_string()))
        })
        .collect()
}

/// DSPy's `_call_postprocess` for one completion of a signature with a `ToolCalls` output:
/// `text` is parsed with `parse` (over the [`prepare`]d signature), and the output field gets
/// the response's `tool_calls`.
///
/// With tool calls, a text that does not parse (or no text, or no outputs left to parse) gives
/// no fields rather than an error. Every output of `original` missing from the result is
/// `null` — the `ToolCalls` output when the model called nothing.
pub fn finish(
    original: &DynSignature,
    processed: &DynSignature,
    text: &str,
    tool_calls: Vec<ToolCall>,
    parse: impl FnOnce(&DynSignature, &str) -> Result<Map<String, Value>, AdapterError>,
) -> Result<Map<String, Value>, AdapterError> {
    let calls_field = tool_calls_output(original).map(FieldSpec::name);
    let mut parsed = match calls_field {
        Some(_) if !tool_calls.is_empty() => {
            if text.is_empty() || processed.outputs().is_empty() {
                Map::new()
            } else {
                match parse(processed, text) {
                    Ok(fields) => fields,
                    Err(AdapterError::Parse { .. }) => Map::new(),
                    Err(other) => return Err(other),
                }
            }
        }
        _ => parse(processed, text)?,
    };
    let mut out = Map::with_capacity(original.outputs().len());
    for f in original.outputs() {
        out.insert(
            f.name().to_string(),
            parsed.shift_remove(f.name()).unwrap_or(Value::Null),
        );
    }
    if let Some(name) = calls_field
        && !tool_calls.is_empty()
    {
        let calls = serde_json::to_value(ToolCalls::new(tool_calls)).unwrap_or(Value::Null);
        out.insert(name.to_string(), calls);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sig() -> DynSignature {
        DynSignature::parse("question, tools: list[Tool] -> answer, tool_calls: ToolCalls").unwrap()
    }

    fn inputs() -> Example {
        Example::new().with("question", "q").with(
            "tools",
            json!([{"name": "f", "desc": "d", "args": {"a": {"type": "string"}, "b": {"type": "integer", "default": 1}}}]),
        )
    }

    #[test]
    fn prepare_moves_tools_into_the_request() {
        let mut params = Map::new();
        let options = NativeToolCalling {
            enabled: true,
            parallel_tool_calls: Some(true),
        };
        let s = sig();
        let processed = prepare(options, &s, &inputs(), true, &mut params).unwrap();
        assert_eq!(processed.to_string(), "question: str -> answer: str");
        assert_eq!(
            Value::Object(params.clone()),
            json!({"tools": [{"type": "function", "function": {"name": "f", "description": "d",
                "parameters": {"type": "object", "properties": {"a": {"type": "string"},
                "b": {"type": "integer", "default": 1}}, "required": ["a"]}}}],
                "parallel_tool_calls": true, "tool_choice": "auto"})
        );
        // No function calling: the prompt keeps the tools and the parameters go.
        let processed = prepare(options, &s, &inputs(), false, &mut params).unwrap();
        assert_eq!(*processed, s);
        assert!(params.is_empty());
        // Not native: tool parameters given by the caller are dropped.
        params.insert("tools".into(), json!([]));
        prepare(NativeToolCalling::OFF, &s, &inputs(), true, &mut params).unwrap();
        assert!(params.is_empty());
    }

    #[test]
    fn prepare_rejects_calls_without_tools_and_bad_tools() {
        let mut params = Map::new();
        let only_calls = DynSignature::parse("question -> tool_calls: ToolCalls").unwrap();
        assert!(matches!(
            prepare(
                NativeToolCalling::on(),
                &only_calls,
                &inputs(),
                true,
                &mut params
            ),
            Err(AdapterError::Format { .. })
        ));
        let bad = Example::new()
            .with("question", "q")
            .with("tools", json!([1]));
        assert!(prepare(NativeToolCalling::on(), &sig(), &bad, true, &mut params).is_err());
    }

    #[test]
    fn finish_merges_calls_and_fills_missing_outputs() {
        let s = sig();
        let processed = s.delete("tool_calls").delete("tools");
        let ok =
            |_: &DynSignature, _: &str| Ok(json!({"answer": "a"}).as_object().unwrap().clone());
        let fail = |_: &DynSignature, t: &str| {
            Err(AdapterError::Parse {
                adapter: "ChatAdapter",
                field: None,
                message: "no".into(),
                completion: t.into(),
            })
        };
        let call = ToolCall::from_provider(Some("c1".into()), "f", "{\"a\": \"x\"}");
        let out = finish(&s, &processed, "text", vec![call.clone()], ok).unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"answer": "a", "tool_calls": {"tool_calls": [{"id": "c1", "name": "f", "args": {"a": "x"}}]}})
        );
        let out = finish(&s, &processed, "text", vec![], ok).unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"answer": "a", "tool_calls": null})
        );
        // A text that does not parse beside tool calls is no fields; alone, an error.
        let out = finish(&s, &processed, "garbage", vec![call], fail).unwrap();
        assert_eq!(out["answer"], Value::Null);
        assert!(finish(&s, &processed, "garbage", vec![], fail).is_err());
    }
}
