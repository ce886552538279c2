//! Tools as signature fields, and running the calls a model asked for.
//!
//! DSPy's `dspy.Tool` is both a function and its description. In dspex the callable
//! [`Tool`] is a field type of DSPy's type `Tool` (a `tools: Vec<Tool>` input, or
//! `tools: list[Tool]` in a signature string): as a value it is its description
//! ([`ToolSpec`]: name, description, argument schemas), which is what the adapters print or
//! send as the request's `tools`. A `tool_calls: ToolCalls` output holds the calls the model
//! made; [`ExecuteToolCalls::execute`] runs them against the tools by name.
//!
//! # A native tool loop
//!
//! DSPy 3.4.1's `ReAct` has no native function-calling mode (it always asks for
//! `next_tool_name` and `next_tool_args` as text), and neither does [`ReAct`](super::ReAct).
//! The native loop DSPy documents is a `Predict` over a signature with a tools input, a
//! [`History`](crate::types::History) of earlier turns and a `ToolCalls` output, with an
//! adapter whose native function calling is on: call it, run the calls, put the turn and the
//! results in the history, call again until the model answers without calls.
//!
//! ```
//! use dspex_runtime::adapter::ChatAdapter;
//! use dspex_runtime::lm::{Choice, ScriptedLM, ToolCall};
//! use dspex_runtime::module::{CallConfig, DynPredict, ExecuteToolCalls, Tool};
//! use dspex_runtime::types::ToolCalls;
//! use dspex_runtime::{DynSignature, Example};
//! use serde_json::json;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let add = Tool::from_json_fn(
//!     "add",
//!     Some("Add two integers."),
//!     json!({"a": {"type": "integer"}, "b": {"type": "integer"}}).as_object().unwrap().clone(),
//!     |args| async move {
//!         Ok::<_, String>(json!(args["a"].as_i64().unwrap_or(0) + args["b"].as_i64().unwrap_or(0)))
//!     },
//! )?;
//! let lm = ScriptedLM::from_choices([Choice::text("[[ ## answer ## ]]\nAdding.\n\n[[ ## completed ## ]]")
//!     .with_tool_calls(vec![ToolCall::new("add", r#"{"a": 2, "b": 3}"#)])]);
//! let predict = DynPredict::new(DynSignature::parse(
//!     "question, tools: list[Tool] -> answer, tool_calls: ToolCalls",
//! )?)
//! .with_config(CallConfig::new().lm(lm.clone()).adapter(ChatAdapter::new().native_function_calling(true)));
//! let tools = vec![add];
//! let out = predict
//!     .call(&Example::new().with("question", "2 + 3?").with("tools", serde_json::to_value(&tools)?))
//!     .await?;
//! // The tools went out as the request's `tools`, not in the prompt.
//! assert_eq!(lm.requests()[0].extra["tools"][0]["function"]["name"], "add");
//! let calls: ToolCalls = serde_json::from_value(out.get("tool_calls").cloned().unwrap_or_default())?;
//! let results = calls.execute(&tools).await;
//! assert_eq!(results[0], Ok(json!(5)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use super::tool::{Tool, ToolError};
use crate::signature::{CustomType, SignatureType, TypeSpec};
use crate::types::{ToolCallResults, ToolCalls, ToolSpec};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

impl Tool {
    /// The tool's description as a signature value sees it: name, description, argument
    /// schemas (DSPy's `dspy.Tool` without the function).
    pub fn spec(&self) -> ToolSpec {
        ToolSpec::from_parts(
            self.name().to_string(),
            self.desc().map(str::to_string),
            self.args().clone(),
        )
    }
}

impl From<&Tool> for ToolSpec {
    fn from(tool: &Tool) -> Self {
        tool.spec()
    }
}

impl From<Tool> for ToolSpec {
    fn from(tool: Tool) -> Self {
        tool.spec()
    }
}

/// A tool is a field value of DSPy's type `Tool`: `{"name", "desc", "args"}`.
impl Serialize for Tool {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.spec().serialize(serializer)
    }
}

/// Reads a tool's description back (a typed signature's input struct derives `Deserialize`).
/// The tool has no function: calling it fails with [`ToolError::NoFunction`]. Run calls
/// against the tools you built instead.
impl<'de> Deserialize<'de> for Tool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let spec = ToolSpec::from_value(&value).map_err(serde::de::Error::custom)?;
        if spec.name().trim().is_empty() {
            return Err(serde::de::Error::custom("a tool needs a non-empty name"));
        }
        Ok(Tool::without_function(
            spec.name().to_string(),
            spec.desc().map(str::to_string),
            spec.args().clone(),
        ))
    }
}

impl SignatureType for Tool {
    fn type_spec() -> TypeSpec {
        TypeSpec::Custom(CustomType::Tool)
    }
}

/// Runs the calls of a [`ToolCalls`] value (DSPy's `ToolCall.execute`, for every call).
pub trait ExecuteToolCalls {
    /// Runs every call, in order, on the tool of its name among `tools`, and gives each
    /// call's result: the tool's value, or the error as a value ([`ToolError::NotFound`] for
    /// a name no tool has; the tool's own argument, failure and panic errors otherwise). One
    /// failing call does not stop the others.
    fn execute<'a>(&'a self, tools: &'a [Tool]) -> BoxFuture<'a, Vec<Result<Value, ToolError>>>;

    /// [`execute`](ExecuteToolCalls::execute), as DSPy's `ToolCallResults` (errors as their
    /// text, `is_error` set), ready for a history turn.
    fn execute_into_results<'a>(&'a self, tools: &'a [Tool]) -> BoxFuture<'a, ToolCallResults>;
}

impl ExecuteToolCalls for ToolCalls {
    fn execute<'a>(&'a self, tools: &'a [Tool]) -> BoxFuture<'a, Vec<Result<Value, ToolError>>> {
        Box::pin(async move {
            let mut results = Vec::with_capacity(self.len());
            for call in self.calls() {
                let result = match tools.iter().find(|t| t.name() == call.name) {
                    Some(tool) => tool.call(call.args.clone()).await,
                    None => Err(ToolError::NotFound {
                        tool: call.name.clone(),
                    }),
                };
                results.push(result);
            }
            results
        })
    }

    fn execute_into_results<'a>(&'a self, tools: &'a [Tool]) -> BoxFuture<'a, ToolCallResults> {
        Box::pin(async move {
            let values = self
                .execute(tools)
                .await
                .into_iter()
                .map(|r| r.map_err(|e| e.to_string()))
                .collect();
            // One value per call, so the counts always match.
            ToolCallResults::from_calls_and_values(self, values).unwrap_or_default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ToolCall;
    use serde_json::Map;
    use serde_json::json;

    fn add() -> Tool {
        Tool::from_json_fn(
            "add",
            Some("Add."),
            json!({"a": {"type": "integer"}})
                .as_object()
                .unwrap()
                .clone(),
            |args| async move { Ok::<_, String>(args["a"].clone()) },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn calls_run_by_name_with_errors_as_values() {
        let calls = ToolCalls::new(vec![
            ToolCall::new("add", json!({"a": 1}).as_object().unwrap().clone()),
            ToolCall::new("nope", Map::new()),
            ToolCall::new("add", json!({"zzz": 1}).as_object().unwrap().clone()),
        ]);
        let tools = [add()];
        let results = calls.execute(&tools).await;
        assert_eq!(results[0], Ok(json!(1)));
        assert!(matches!(&results[1], Err(ToolError::NotFound { tool }) if tool == "nope"));
        assert!(matches!(&results[2], Err(ToolError::UnknownArg { .. })));
        let results = calls.execute_into_results(&tools).await;
        assert!(results.results()[1].is_error);
        assert_eq!(results.results()[0].value, json!(1));
    }

    #[tokio::test]
    async fn tools_serialize_as_their_description_and_read_back_without_a_body() {
        let tool = add();
        let v = serde_json::to_value(&tool).unwrap();
        assert_eq!(
            v,
            json!({"name": "add", "desc": "Add.", "args": {"a": {"type": "integer"}}})
        );
        let back: Tool = serde_json::from_value(v).unwrap();
        assert_eq!(back.spec(), tool.spec());
        assert!(matches!(
            back.call(json!({"a": 1}).as_object().unwrap().clone())
                .await,
            Err(ToolError::NoFunction { .. })
        ));
        assert!(serde_json::from_value::<Tool>(json!({"desc": "x"})).is_err());
        assert_eq!(
            <Vec<Tool>>::type_spec().dspy_name(),
            "list[Tool]".to_string()
        );
    }
}
