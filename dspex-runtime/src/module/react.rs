//! [`ReAct`]: DSPy's tool-using agent loop.

use super::predict::DynPredict;
use super::tool::{IntoTool, Tool, ToolError};
use super::tool_calls::ExecuteToolCalls;
use crate::adapter::native::NativeToolCalling;
use crate::adapter::{Adapter, AdapterError, ChatAdapter, JSONAdapter};
use crate::callback::{Callbacks, EventError, EventKind, observe, to_json};
use crate::error::{Error, Result};
use crate::example::{Example, Prediction};
use crate::program::Program;
use crate::settings::CallConfig;
use crate::settings::Settings;
use crate::signature::{CustomType, DynSignature, FieldSpec, LiteralValue, Signature, TypeSpec};
use crate::types::{Message, ResponseFormat, ToolCalls};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use std::marker::PhantomData;
use std::sync::Arc;

/// DSPy's default number of steps.
const DEFAULT_MAX_ITERS: usize = 20;

/// Attempts per predictor call when the prompt overflows the context window (each retry drops
/// the oldest step), as DSPy's `_call_with_potential_trajectory_truncation`.
const TRUNCATION_ATTEMPTS: usize = 3;

/// One step of an agent's trajectory: what it thought, the tool it called with which
/// arguments, and what came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolStep {
    /// The step's number (the `_0` in `thought_0`); numbers stay put when older steps are
    /// dropped to fit the context window.
    pub index: usize,
    /// `next_thought`.
    pub thought: String,
    /// `next_tool_name`: a tool's name or `finish`.
    pub tool_name: String,
    /// `next_tool_args`.
    pub tool_args: Map<String, Value>,
    /// The tool's result, or `Execution error in <tool>: <error>` when it failed.
    pub observation: Value,
}

/// The steps an agent took. Serializes as DSPy's trajectory dict (`thought_0`, `tool_name_0`,
/// `tool_args_0`, `observation_0`, `thought_1`, …), which is also how the model sees it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(from = "Map<String, Value>")]
pub struct Trajectory {
    steps: Vec<ToolStep>,
}

impl Trajectory {
    /// The steps, oldest first.
    pub fn steps(&self) -> &[ToolStep] {
        &self.steps
    }

    /// Whether no step was taken.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// DSPy's flat dict of the steps.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut map = Map::new();
        for s in &self.steps {
            let i = s.index;
            map.insert(format!("thought_{i}"), Value::String(s.thought.clone()));
            map.insert(format!("tool_name_{i}"), Value::String(s.tool_name.clone()));
            map.insert(format!("tool_args_{i}"), Value::Object(s.tool_args.clone()));
            map.insert(format!("observation_{i}"), s.observation.clone());
        }
        map
    }
}

impl Serialize for Trajectory {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_map().serialize(serializer)
    }
}

impl From<Map<String, Value>> for Trajectory {
    /// Reads DSPy's flat dict back; keys that are not `<part>_<n>` are ignored.
    fn from(map: Map<String, Value>) -> Self {
        let mut steps: Vec<ToolStep> = Vec::new();
        for (key, value) in map {
            let Some((part, index)) = key
                .rsplit_once('_')
                .and_then(|(part, n)| Some((part.to_string(), n.parse::<usize>().ok()?)))
            else {
                continue;
            };
            let step = match steps.iter_mut().find(|s| s.index == index) {
                Some(step) => step,
                None => {
                    steps.push(ToolStep {
                        index,
                        thought: String::new(),
                        tool_name: String::new(),
                        tool_args: Map::new(),
                        observation: Value::Null,
                    });
                    steps.last_mut().expect("just pushed")
                }
            };
            match (part.as_str(), value) {
                ("thought", Value::String(s)) => step.thought = s,
                ("tool_name", Value::String(s)) => step.tool_name = s,
                ("tool_args", Value::Object(m)) => step.tool_args = m,
                ("observation", v) => step.observation = v,
                _ => {}
            }
        }
        steps.sort_by_key(|s| s.index);
        Trajectory { steps }
    }
}

/// What a typed [`ReAct`] returns: the trajectory, the extractor's reasoning and the
/// signature's outputs (DSPy's `Prediction(trajectory=..., reasoning=..., **outputs)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReActOutput<T> {
    /// The steps the agent took.
    pub trajectory: Trajectory,
    /// The reasoning the extractor wrote before the outputs.
    pub reasoning: String,
    /// The signature's outputs.
    #[serde(flatten)]
    pub output: T,
}

/// ReAct over a run-time signature: inputs are an [`Example`], the result a [`Prediction`] with
/// `trajectory`, `reasoning` and the signature's outputs. See [`ReAct`].
#[derive(Debug, Clone)]
pub struct DynReAct {
    signature: DynSignature,
    tools: Arc<[Tool]>,
    react: DynPredict,
    extract: DynPredict,
    config: CallConfig,
    max_iters: usize,
    callbacks: Callbacks,
    native: bool,
}

impl DynReAct {
    /// An agent for `signature` with `tools` (a `finish` tool is added last). Fails when two
    /// tools share a name or one is called `finish`.
    pub fn new(
        signature: DynSignature,
        tools: impl IntoIterator<Item = impl IntoTool>,
    ) -> Result<Self> {
        let mut all: Vec<Tool> = Vec::new();
        for tool in tools {
            let tool = tool.into_tool();
            if tool.name() == "finish" {
                return Err(ToolError::Definition {
                    tool: "finish".into(),
                    message: "ReAct adds its own `finish` tool; give yours another name".into(),
                }
                .into());
            }
            if all.iter().any(|t| t.name() == tool.name()) {
                return Err(ToolError::Definition {
                    tool: tool.name().to_string(),
                    message: "two tools have this name; the model could not tell them apart".into(),
                }
                .into());
            }
            all.push(tool);
        }
        let outputs = backticked(signature.output_names());
        let finish = Tool::from_json_fn(
            "finish",
            Some(&format!(
                "Marks the task as complete. That is, signals that all information for producing the outputs, i.e. {outputs}, are now available to be extracted."
            )),
            Map::new(),
            |_| async { Ok::<_, ToolError>(Value::String("Completed.".into())) },
        )?;
        all.push(finish);
        let react = DynPredict::new(react_signature(&signature, &all)?);
        let extract = DynPredict::new(extract_signature(&signature)?);
        Ok(DynReAct {
            signature,
            tools: all.into(),
            react,
            extract,
            config: CallConfig::default(),
            max_iters: DEFAULT_MAX_ITERS,
            callbacks: Callbacks::new(),
            native: false,
        })
    }

    /// The same agent taking at most `max_iters` steps (DSPy's default: 20; 0 goes straight to
    /// extraction).
    #[must_use]
    pub fn with_max_iters(mut self, max_iters: usize) -> Self {
        self.max_iters = max_iters;
        self
    }

    /// The same agent in native function-calling mode (`true`), or DSPy's text mode (`false`,
    /// the default). A dspex addition: DSPy 3.4.1's ReAct always asks for `next_tool_name` and
    /// `next_tool_args` as text.
    ///
    /// In native mode each step offers the model the tools (and `finish`) as the request's
    /// `tools`, as a [`Predict`](super::Predict) over a `tools: list[Tool]` input and a
    /// `tool_calls: ToolCalls` output does with an adapter whose native function calling is on
    /// (the step turns it on for whichever adapter is in use, keeping its `parallel_tool_calls`).
    /// The prompt asks only for `next_thought`. Every call the model returns is run, in order,
    /// and becomes one entry of the trajectory (its own `tool_name_<n>`, `tool_args_<n>` and
    /// `observation_<n>`; the step's thought goes with its first call, later calls of the same
    /// step have an empty thought). Errors are observations the model sees on the next step,
    /// as in text mode: a tool's failure as `Execution error in <tool>: <error>`, an unknown
    /// tool as `Execution error in <tool>: no tool has this name`. The loop ends when the model
    /// calls `finish`, answers with no call (recorded as a `finish` step with its thought), or
    /// after `max_iters` steps (model turns, however many calls each made); the extraction
    /// step then writes `reasoning` and the outputs exactly as in text mode. An LM without
    /// function calling support gets the tools and calls as text, as DSPy's adapters do.
    ///
    /// Switching modes replaces the `react` predictor (its signature differs), dropping its
    /// demos. Fails when the signature already has a field the native step adds (`tools`,
    /// `tool_calls`, `trajectory`, `next_thought`).
    ///
    /// ```
    /// use dspex_runtime::lm::{Choice, ScriptedLM, ToolCall};
    /// use dspex_runtime::module::{CallConfig, DynReAct, Tool};
    /// use dspex_runtime::{DynSignature, Example};
    /// use schemars::JsonSchema;
    /// use serde::Deserialize;
    ///
    /// /// Add two integers.
    /// #[derive(Deserialize, JsonSchema)]
    /// struct Add { a: i64, b: i64 }
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let add = Tool::new("add", |Add { a, b }| async move { Ok::<_, String>(a + b) })?;
    /// let lm = ScriptedLM::from_choices([
    ///     // Step 0: two calls in one turn.
    ///     Choice::text("[[ ## next_thought ## ]]\nAdd both pairs.\n\n[[ ## completed ## ]]")
    ///         .with_tool_calls(vec![
    ///             ToolCall::new("add", r#"{"a": 2, "b": 3}"#),
    ///             ToolCall::new("add", r#"{"a": 5, "b": 5}"#),
    ///         ]),
    ///     // Step 1: no call, so the loop ends.
    ///     Choice::text("[[ ## next_thought ## ]]\nI have both sums.\n\n[[ ## completed ## ]]"),
    ///     // Extraction.
    ///     Choice::text(
    ///         "[[ ## reasoning ## ]]\n2+3=5, 5+5=10.\n\n[[ ## answer ## ]]\n5 and 10\n\n[[ ## completed ## ]]",
    ///     ),
    /// ]);
    /// let agent = DynReAct::new(DynSignature::parse("question -> answer")?, [add])?
    ///     .native_function_calling(true)?
    ///     .with_config(CallConfig::new().lm(lm.clone()));
    /// let out = agent.call(&Example::new().with("question", "2 + 3 and 5 + 5?")).await?;
    /// assert_eq!(out.get_str("answer"), Some("5 and 10"));
    /// let trajectory = out.get("trajectory").unwrap();
    /// assert_eq!(trajectory["observation_0"], 5);
    /// assert_eq!(trajectory["observation_1"], 10);
    /// assert_eq!(trajectory["tool_name_2"], "finish");
    /// // The tools went out as the request's `tools`, `finish` last.
    /// let tools = &lm.requests()[0].extra["tools"];
    /// assert_eq!(tools[0]["function"]["name"], "add");
    /// assert_eq!(tools[1]["function"]["name"], "finish");
    /// # Ok::<(), dspex_runtime::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn native_function_calling(mut self, on: bool) -> Result<Self> {
        let signature = if on {
            native_react_signature(&self.signature)?
        } else {
            react_signature(&self.signature, &self.tools)?
        };
        self.react = DynPredict::new(signature).with_config(self.config.clone());
        self.native = on;
        Ok(self)
    }

    /// Whether the agent runs in native function-calling mode
    /// ([`native_function_calling`](DynReAct::native_function_calling)).
    pub fn is_native_function_calling(&self) -> bool {
        self.native
    }

    /// The same agent with these defaults for both of its predictors.
    #[must_use]
    pub fn with_config(mut self, config: CallConfig) -> Self {
        self.react = self.react.with_config(config.clone());
        self.extract = self.extract.with_config(config.clone());
        self.config = config;
        self
    }

    /// The same agent with callbacks of its own: they receive its module events (named
    /// `ReAct`), after the callbacks in the settings. The predictors and tools inside fire
    /// their events to the callbacks in the settings, as in DSPy (see [`crate::callback`]).
    #[must_use]
    pub fn with_callbacks(mut self, callbacks: impl Into<Callbacks>) -> Self {
        self.callbacks = callbacks.into();
        self
    }

    /// The signature the agent answers.
    pub fn signature(&self) -> &DynSignature {
        &self.signature
    }

    /// Its tools, `finish` last.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// The most steps it takes.
    pub fn max_iters(&self) -> usize {
        self.max_iters
    }

    /// Runs the agent on `inputs`.
    pub async fn call(&self, inputs: &Example) -> Result<Prediction> {
        self.call_with(inputs, &CallConfig::default()).await
    }

    /// Runs the agent with per-call overrides for both predictors.
    pub async fn call_with(&self, inputs: &Example, overrides: &CallConfig) -> Result<Prediction> {
        let (trajectory, extracted) = self.run(inputs, overrides).await?;
        Ok(outputs_of(&trajectory, extracted))
    }

    /// The agent's loop, reported to callbacks as one `ReAct` module call.
    async fn run(
        &self,
        inputs: &Example,
        overrides: &CallConfig,
    ) -> Result<(Trajectory, Prediction)> {
        observe(
            EventKind::Module,
            || "ReAct".to_string(),
            Some(&self.callbacks),
            || to_json(inputs),
            self.run_steps(inputs, overrides),
            |(trajectory, extracted)| to_json(&outputs_of(trajectory, extracted.clone())),
            EventError::of,
        )
        .await
    }

    async fn run_steps(
        &self,
        inputs: &Example,
        overrides: &CallConfig,
    ) -> Result<(Trajectory, Prediction)> {
        let adapter = overrides
            .adapter
            .clone()
            .or_else(|| self.config.adapter.clone())
            .or_else(|| Settings::current().adapter)
            .unwrap_or_else(|| Arc::new(ChatAdapter));
        let mut trajectory = Trajectory::default();
        // Native mode runs its own loop; text mode (DSPy's) runs the one below.
        let text_iters = if self.native {
            self.native_steps(&adapter, inputs, &mut trajectory, overrides)
                .await?;
            0
        } else {
            self.max_iters
        };
        for index in 0..text_iters {
            let step = self
                .call_truncating(&self.react, &*adapter, inputs, &mut trajectory, overrides)
                .await;
            let pred = match step {
                Ok(pred) => pred,
                Err(e) if is_context_window(&e) => {
                    tracing::warn!(error = %e, "ReAct: ending the trajectory: the prompt does not fit the context window");
                    break;
                }
                Err(e) => return Err(e),
            };
            let thought = pred.get_str("next_thought").unwrap_or_default().to_string();
            let tool_name = pred
                .get_str("next_tool_name")
                .unwrap_or_default()
                .to_string();
            let tool_args = match pred.get("next_tool_args") {
                Some(Value::Object(args)) => args.clone(),
                _ => Map::new(),
            };
            let observation = match self.tools.iter().find(|t| t.name() == tool_name) {
                Some(tool) => match tool.call(tool_args.clone()).await {
                    Ok(value) => value,
                    Err(e) => {
                        tracing::debug!(tool = %tool_name, error = %e, "ReAct: tool failed");
                        Value::String(format!("Execution error in {tool_name}: {e}"))
                    }
                },
                // The step signature's `Literal` makes the parser refuse other names.
                None => Value::String(format!(
                    "Execution error in {tool_name}: no tool has this name"
                )),
            };
            trajectory.steps.push(ToolStep {
                index,
                thought,
                tool_name,
                tool_args,
                observation,
            });
            if trajectory
                .steps
                .last()
                .is_some_and(|s| s.tool_name == "finish")
            {
                break;
            }
        }
        let extracted = self
            .call_truncating(&self.extract, &*adapter, inputs, &mut trajectory, overrides)
            .await?;
        Ok((trajectory, extracted))
    }

    /// The loop of native function-calling mode: each step offers the tools natively, runs
    /// every call the model returns, in order, and appends one trajectory entry per call.
    async fn native_steps(
        &self,
        adapter: &Arc<dyn Adapter>,
        inputs: &Example,
        trajectory: &mut Trajectory,
        overrides: &CallConfig,
    ) -> Result<()> {
        let tools = serde_json::to_value(&self.tools[..]).map_err(|e| ToolError::Definition {
            tool: self
                .tools
                .iter()
                .map(Tool::name)
                .collect::<Vec<_>>()
                .join(", "),
            message: format!("the tools could not be described as JSON: {e}"),
        })?;
        let mut step_inputs = inputs.clone();
        step_inputs.insert("tools", tools);
        let mut step_overrides = overrides.clone();
        step_overrides.adapter = Some(Arc::new(NativeCalls(adapter.clone())));
        let mut index = 0;
        for _ in 0..self.max_iters {
            let step = self
                .call_truncating(
                    &self.react,
                    &**adapter,
                    &step_inputs,
                    trajectory,
                    &step_overrides,
                )
                .await;
            let pred = match step {
                Ok(pred) => pred,
                Err(e) if is_context_window(&e) => {
                    tracing::warn!(error = %e, "ReAct: ending the trajectory: the prompt does not fit the context window");
                    break;
                }
                Err(e) => return Err(e),
            };
            let thought = pred.get_str("next_thought").unwrap_or_default().to_string();
            let calls = match pred.get("tool_calls") {
                None | Some(Value::Null) => ToolCalls::default(),
                Some(value) => ToolCalls::from_value(value).map_err(|e| AdapterError::Parse {
                    adapter: adapter.name(),
                    field: Some("tool_calls".into()),
                    message: e.to_string(),
                    completion: value.to_string(),
                })?,
            };
            if calls.is_empty() {
                trajectory.steps.push(ToolStep {
                    index,
                    thought,
                    tool_name: "finish".into(),
                    tool_args: Map::new(),
                    observation: Value::String("Completed.".into()),
                });
                break;
            }
            let results = calls.execute(&self.tools).await;
            let mut finished = false;
            for (k, (call, result)) in calls.calls().iter().zip(results).enumerate() {
                let observation = match result {
                    Ok(value) => value,
                    Err(ToolError::NotFound { .. }) => Value::String(format!(
                        "Execution error in {}: no tool has this name",
                        call.name
                    )),
                    Err(e) => {
                        tracing::debug!(tool = %call.name, error = %e, "ReAct: tool failed");
                        Value::String(format!("Execution error in {}: {e}", call.name))
                    }
                };
                finished |= call.name == "finish";
                trajectory.steps.push(ToolStep {
                    index,
                    thought: if k == 0 {
                        thought.clone()
                    } else {
                        String::new()
                    },
                    tool_name: call.name.clone(),
                    tool_args: call.args.clone(),
                    observation,
                });
                index += 1;
            }
            if finished {
                break;
            }
        }
        Ok(())
    }

    /// Calls `predict` with the inputs and the formatted trajectory; on a context-window
    /// overflow drops the oldest step and tries again, up to three attempts.
    async fn call_truncating(
        &self,
        predict: &DynPredict,
        adapter: &dyn Adapter,
        inputs: &Example,
        trajectory: &mut Trajectory,
        overrides: &CallConfig,
    ) -> Result<Prediction> {
        let mut last = None;
        for _ in 0..TRUNCATION_ATTEMPTS {
            let mut call_inputs = inputs.clone();
            call_inputs.insert("trajectory", format_trajectory(adapter, trajectory)?);
            match predict.call_with(&call_inputs, overrides).await {
                Err(e) if is_context_window(&e) => {
                    tracing::warn!(
                        "ReAct: the trajectory exceeded the context window; dropping the oldest tool call"
                    );
                    if trajectory.steps.len() <= 1 {
                        return Err(e);
                    }
                    trajectory.steps.remove(0);
                    last = Some(e);
                }
                other => return other,
            }
        }
        Err(last.expect("the loop ran at least once and only continues after an error"))
    }
}

/// What `DynReAct` returns: the trajectory as DSPy's flat map, then the extracted outputs.
fn outputs_of(trajectory: &Trajectory, extracted: Prediction) -> Prediction {
    let mut fields = Map::new();
    fields.insert("trajectory".into(), Value::Object(trajectory.to_map()));
    fields.extend(extracted.into_map());
    Prediction::new(fields)
}

fn is_context_window(e: &Error) -> bool {
    matches!(e, Error::Lm(lm) if lm.is_context_window_exceeded())
}

/// `` `a`, `b` ``.
fn backticked<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first lines of DSPy's agent instructions, shared by the text and native step
/// signatures: the task's own instructions, then who the agent is and what it is after.
fn agent_preamble(signature: &DynSignature) -> Vec<String> {
    let inputs = backticked(signature.input_names());
    let outputs = backticked(signature.output_names());
    let mut instr: Vec<String> = Vec::new();
    if !signature.instructions().is_empty() {
        instr.push(format!("{}\n", signature.instructions()));
    }
    instr.push(format!(
        "You are an Agent. In each episode, you will be given the fields {inputs} as input. And you can see your past trajectory so far."
    ));
    instr.push(format!(
        "Your goal is to use one or more of the supplied tools to collect any necessary information for producing {outputs}.\n"
    ));
    instr
}

/// The step signature: the inputs, `trajectory`, and `next_thought`, `next_tool_name` (a
/// literal of the tool names), `next_tool_args`, under DSPy's agent instructions.
fn react_signature(signature: &DynSignature, tools: &[Tool]) -> Result<DynSignature> {
    let mut instr = agent_preamble(signature);
    instr.push("To do this, you will interleave next_thought, next_tool_name, and next_tool_args in each turn, and also when finishing the task.".into());
    instr.push("After each tool call, you receive a resulting observation, which gets appended to your trajectory.\n".into());
    instr.push("When writing next_thought, you may reason about the current situation and plan for future steps.".into());
    instr.push(
        "When selecting the next_tool_name and its next_tool_args, the tool must be one of:\n"
            .into(),
    );
    for (i, tool) in tools.iter().enumerate() {
        instr.push(format!("({}) {tool}", i + 1));
    }
    instr.push(
        "When providing `next_tool_args`, the value inside the field must be in JSON format".into(),
    );
    let names = tools
        .iter()
        .map(|t| LiteralValue::Str(t.name().to_string()))
        .collect();
    let fields = signature.inputs().iter().cloned().chain([
        FieldSpec::input("trajectory", TypeSpec::Str),
        FieldSpec::output("next_thought", TypeSpec::Str),
        FieldSpec::output("next_tool_name", TypeSpec::Literal(names)),
        FieldSpec::output("next_tool_args", TypeSpec::Dict(Box::new(TypeSpec::Any))),
    ]);
    Ok(DynSignature::from_fields(Some(&instr.join("\n")), fields)?)
}

/// The native step's signature: the inputs, `trajectory` and the tools (which the adapter moves
/// into the request), then `next_thought` and the calls (read from the response).
fn native_react_signature(signature: &DynSignature) -> Result<DynSignature> {
    let outputs = backticked(signature.output_names());
    let mut instr = agent_preamble(signature);
    instr.push("To do this, in each turn you will write next_thought and call the tools you need; several calls in one turn run in order.".into());
    instr.push("After each tool call, you receive a resulting observation, which gets appended to your trajectory.\n".into());
    instr.push("When writing next_thought, you may reason about the current situation and plan for future steps.".into());
    instr.push(format!(
        "When all information for producing {outputs} is available, call `finish` or call no tool."
    ));
    let fields = signature.inputs().iter().cloned().chain([
        FieldSpec::input("trajectory", TypeSpec::Str),
        FieldSpec::input(
            "tools",
            TypeSpec::List(Box::new(TypeSpec::Custom(CustomType::Tool))),
        ),
        FieldSpec::output("next_thought", TypeSpec::Str),
        FieldSpec::output("tool_calls", TypeSpec::Custom(CustomType::ToolCalls)),
    ]);
    Ok(DynSignature::from_fields(Some(&instr.join("\n")), fields)?)
}

/// The adapter in use with native function calling turned on, for native ReAct's steps.
#[derive(Debug)]
struct NativeCalls(Arc<dyn Adapter>);

/// The JSONAdapter fallbacks with native function calling on (by `parallel_tool_calls`).
static NATIVE_JSON: [JSONAdapter; 3] = [
    JSONAdapter::new().native_function_calling(true),
    JSONAdapter::new()
        .native_function_calling(true)
        .parallel_tool_calls(false),
    JSONAdapter::new()
        .native_function_calling(true)
        .parallel_tool_calls(true),
];

impl Adapter for NativeCalls {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn format(
        &self,
        signature: &DynSignature,
        demos: &[Example],
        inputs: &Example,
    ) -> std::result::Result<Vec<Message>, AdapterError> {
        self.0.format(signature, demos, inputs)
    }

    fn parse(
        &self,
        signature: &DynSignature,
        completion: &str,
    ) -> std::result::Result<Map<String, Value>, AdapterError> {
        self.0.parse(signature, completion)
    }

    fn response_format(&self, signature: &DynSignature) -> Option<ResponseFormat> {
        self.0.response_format(signature)
    }

    fn fallback(&self) -> Option<&'static dyn Adapter> {
        let fallback = self.0.fallback()?;
        if fallback.native_tool_calling().enabled || fallback.name() != "JSONAdapter" {
            return Some(fallback);
        }
        let i = match self.native_tool_calling().parallel_tool_calls {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        };
        Some(&NATIVE_JSON[i])
    }

    fn native_tool_calling(&self) -> NativeToolCalling {
        NativeToolCalling {
            enabled: true,
            ..self.0.native_tool_calling()
        }
    }

    fn extractor(&self) -> Option<&dyn crate::adapter::two_step::Extractor> {
        self.0.extractor()
    }

    fn format_fields(
        &self,
        signature: &DynSignature,
        values: &Map<String, Value>,
    ) -> std::result::Result<String, AdapterError> {
        self.0.format_fields(signature, values)
    }
}

/// The extractor's signature: inputs, `trajectory`, outputs, the original instructions, with
/// ChainOfThought's `reasoning` first.
fn extract_signature(signature: &DynSignature) -> Result<DynSignature> {
    let fields = signature
        .inputs()
        .iter()
        .cloned()
        .chain([FieldSpec::input("trajectory", TypeSpec::Str)])
        .chain(signature.outputs().iter().cloned());
    let sig = DynSignature::from_fields(Some(signature.instructions()), fields)?;
    Ok(sig.prepend(FieldSpec::output("reasoning", TypeSpec::Str))?)
}

/// The trajectory as the model sees it: the adapter's input blocks over a signature whose
/// inputs are the trajectory's keys, all `str` (DSPy's `_format_trajectory`).
fn format_trajectory(adapter: &dyn Adapter, trajectory: &Trajectory) -> Result<String> {
    if trajectory.is_empty() {
        return Ok(String::new());
    }
    let values = trajectory.to_map();
    let fields = values
        .keys()
        .map(|k| FieldSpec::input(k.clone(), TypeSpec::Str))
        .chain([FieldSpec::output("x", TypeSpec::Str)]);
    let sig = DynSignature::from_fields(Some(""), fields)?;
    Ok(adapter.format_fields(&sig, &values)?)
}

/// DSPy's `dspy.ReAct`: an agent that, step by step, thinks, picks one of its [`Tool`]s (or
/// `finish`) with JSON arguments, and sees the tool's result, then extracts the signature's
/// outputs from the whole trajectory with a chain of thought.
///
/// Each step is one call of the `react` predictor (the inputs, the trajectory so far; outputs
/// `next_thought`, `next_tool_name` — a literal of the tool names and `finish` — and
/// `next_tool_args`). A tool's error, refused arguments or panic become the observation
/// (`Execution error in <tool>: …`) and the loop goes on; it stops at `finish` or after
/// `max_iters` steps. When a prompt overflows the model's context window, the oldest step is
/// dropped and the call retried (at most three attempts); a step that still does not fit ends
/// the loop. The `extract.predict` predictor then writes `reasoning` and the outputs. A
/// completion that cannot be parsed (an unknown tool name, say) fails the call with a typed
/// error, as in DSPy.
///
/// Prompts are DSPy's byte for byte (pinned by the `trace_react_two_tools` fixture), and the
/// predictors are named `react` and `extract.predict`, as DSPy names them.
///
/// ```
/// use dspex_runtime::lm::ScriptedLM;
/// use dspex_runtime::module::{CallConfig, DynReAct, Tool};
/// use dspex_runtime::{DynSignature, Example};
/// use schemars::JsonSchema;
/// use serde::Deserialize;
/// use serde_json::json;
///
/// /// Add two integers.
/// #[derive(Deserialize, JsonSchema)]
/// struct Add { a: i64, b: i64 }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let add = Tool::new("add", |Add { a, b }| async move { Ok::<_, String>(a + b) })?;
/// let lm = ScriptedLM::from_fields([
///     json!({"next_thought": "Add them.", "next_tool_name": "add", "next_tool_args": {"a": 2, "b": 3}}),
///     json!({"next_thought": "Done.", "next_tool_name": "finish", "next_tool_args": {}}),
///     json!({"reasoning": "2 + 3 = 5.", "answer": "5"}),
/// ]);
/// let agent = DynReAct::new(DynSignature::parse("question -> answer")?, [add])?
///     .with_config(CallConfig::new().lm(lm));
/// let out = agent.call(&Example::new().with("question", "What is 2 + 3?")).await?;
/// assert_eq!(out.get_str("answer"), Some("5"));
/// assert_eq!(out.get("trajectory").unwrap()["observation_0"], 5);
/// # Ok::<(), dspex_runtime::Error>(())
/// # }).unwrap();
/// ```
///
/// The typed form, `ReAct<S>`, takes `S::Input` and returns [`ReActOutput`] with the typed
/// outputs.
pub struct ReAct<S> {
    inner: DynReAct,
    _signature: PhantomData<fn() -> S>,
}

typed_wrapper_impls!(ReAct => inner);

impl<S: Signature> ReAct<S> {
    /// An agent for `S` with `tools` — [`Tool`]s, such as the `<name>_tool()` that `#[tool]`
    /// generates for a function; see [`DynReAct::new`].
    ///
    /// Where DSPy writes `ReAct(QA, tools=[calculator, lookup])`, write
    /// `ReAct::<QA>::new([calculator_tool(), lookup_tool()])`. A `#[tool]` function stays a plain
    /// function you can call; passing one alone is a compile error whose note names its
    /// `<name>_tool()`, but an array of two different functions is rejected by rustc first
    /// (E0308: every function is its own type), before any trait could explain the fix.
    pub fn new(tools: impl IntoIterator<Item = impl IntoTool>) -> Result<Self> {
        Ok(ReAct {
            inner: DynReAct::new(S::signature().clone(), tools)?,
            _signature: PhantomData,
        })
    }

    /// The same agent taking at most `max_iters` steps.
    #[must_use]
    pub fn with_max_iters(mut self, max_iters: usize) -> Self {
        self.inner = self.inner.with_max_iters(max_iters);
        self
    }

    /// The same agent in native function-calling mode, or text mode
    /// ([`DynReAct::native_function_calling`]): each step offers the tools as the request's
    /// `tools` and runs every call the model returns.
    pub fn native_function_calling(mut self, on: bool) -> Result<Self> {
        self.inner = self.inner.native_function_calling(on)?;
        Ok(self)
    }

    /// The same agent with these defaults for both of its predictors.
    #[must_use]
    pub fn with_config(mut self, config: CallConfig) -> Self {
        self.inner = self.inner.with_config(config);
        self
    }

    /// The same agent with callbacks of its own ([`DynReAct::with_callbacks`]).
    #[must_use]
    pub fn with_callbacks(mut self, callbacks: impl Into<Callbacks>) -> Self {
        self.inner = self.inner.with_callbacks(callbacks);
        self
    }

    /// The run-time form underneath.
    pub fn as_dyn(&self) -> &DynReAct {
        &self.inner
    }

    /// Runs on `input` with per-call overrides.
    pub async fn forward_with(
        &self,
        input: S::Input,
        config: &CallConfig,
    ) -> Result<ReActOutput<S::Output>> {
        let (trajectory, extracted) = self
            .inner
            .run(&Example::from_typed(&input)?, config)
            .await?;
        let reasoned: super::Reasoned<S::Output> = extracted.to_typed()?;
        Ok(ReActOutput {
            trajectory,
            reasoning: reasoned.reasoning,
            output: reasoned.output,
        })
    }
}

impl<S: Signature> Program for ReAct<S> {
    type Input = S::Input;
    type Output = ReActOutput<S::Output>;

    async fn forward(&self, input: S::Input) -> Result<Self::Output> {
        self.forward_with(input, &CallConfig::default()).await
    }
}

crate::program::delegate_module!(impl[] DynReAct => react as "react", extract as "extract.predict");

crate::program::delegate_module!(impl[S] ReAct<S> => inner);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::{LanguageModel, LmError, LmRequest, LmResponse, ScriptedLM};
    use crate::program::Module;
    use futures_util::future::BoxFuture;
    use schemars::JsonSchema;
    use serde_json::json;
    use std::sync::Mutex;

    /// Look up a fact by its key.
    #[derive(Deserialize, JsonSchema)]
    struct Lookup {
        key: String,
    }

    fn lookup() -> Tool {
        Tool::new("lookup", |Lookup { key }| async move {
            match key.as_str() {
                "capital of France" => Ok("Paris".to_string()),
                other => Err(format!("no fact for {other:?}")),
            }
        })
        .unwrap()
    }

    /// A `question -> answer` agent with the `lookup` tool.
    fn agent() -> DynReAct {
        DynReAct::new(
            DynSignature::parse("question -> answer").unwrap(),
            [lookup()],
        )
        .unwrap()
    }

    /// The agent's answer to the question `q`.
    fn ask(agent: &DynReAct) -> Result<Prediction> {
        block(agent.call(&Example::new().with("question", "q")))
    }

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn step(thought: &str, tool: &str, args: Value) -> Value {
        json!({"next_thought": thought, "next_tool_name": tool, "next_tool_args": args})
    }

    #[test]
    fn tool_errors_become_observations_and_the_loop_goes_on() {
        let lm = ScriptedLM::from_fields([
            step("Look it up.", "lookup", json!({"key": "capital of Spain"})),
            step(
                "Try again.",
                "lookup",
                json!({"key": "capital of France", "lang": "en"}),
            ),
            step("Once more.", "lookup", json!({"key": "capital of France"})),
            step("Done.", "finish", json!({})),
            json!({"reasoning": "r", "answer": "Paris"}),
        ]);
        let agent = agent().with_config(CallConfig::new().lm(lm.clone()));
        let out = ask(&agent).unwrap();
        let t = out.get("trajectory").unwrap();
        assert_eq!(
            t["observation_0"],
            "Execution error in lookup: no fact for \"capital of Spain\""
        );
        assert_eq!(
            t["observation_1"],
            "Execution error in lookup: Arg lang is not in the tool's args."
        );
        assert_eq!(t["observation_2"], "Paris");
        assert_eq!(t["observation_3"], "Completed.");
        assert_eq!(
            out.keys().collect::<Vec<_>>(),
            ["trajectory", "reasoning", "answer"]
        );
        assert_eq!(lm.calls(), 5);
        // The failed observation reaches the model on the next step.
        let second = &lm.messages()[1];
        assert!(second[1].content.text().contains(
            "[[ ## observation_0 ## ]]\nExecution error in lookup: no fact for \"capital of Spain\""
        ));
    }

    #[test]
    fn max_iters_bounds_the_loop_and_zero_goes_straight_to_extraction() {
        let lm = ScriptedLM::from_fields([
            step("a", "lookup", json!({"key": "capital of France"})),
            step("b", "lookup", json!({"key": "capital of France"})),
            json!({"reasoning": "r", "answer": "Paris"}),
        ]);
        let agent = agent()
            .with_max_iters(2)
            .with_config(CallConfig::new().lm(lm.clone()));
        let out = ask(&agent).unwrap();
        assert_eq!(out.get("trajectory").unwrap().as_object().unwrap().len(), 8);
        assert_eq!(lm.calls(), 3);

        let lm = ScriptedLM::from_fields([json!({"reasoning": "r", "answer": "?"})]);
        let agent = agent
            .with_max_iters(0)
            .with_config(CallConfig::new().lm(lm.clone()));
        let out = ask(&agent).unwrap();
        assert_eq!(out.get("trajectory"), Some(&json!({})));
        assert_eq!(lm.calls(), 1);
    }

    #[test]
    fn an_unknown_tool_name_is_a_parse_error() {
        let lm = ScriptedLM::from_fields([
            step("Hmm.", "search", json!({})),
            step("Hmm.", "search", json!({})),
        ]);
        let agent = agent().with_config(CallConfig::new().lm(lm));
        let err = ask(&agent).unwrap_err();
        assert_eq!(err.parse_failures().len(), 2, "{err}");
        assert!(err.to_string().contains("next_tool_name"), "{err}");
    }

    #[test]
    fn tool_names_must_be_distinct_and_not_finish() {
        let sig = DynSignature::parse("question -> answer").unwrap();
        let err = DynReAct::new(sig.clone(), [lookup(), lookup()]).unwrap_err();
        assert!(
            err.to_string().contains("two tools have this name"),
            "{err}"
        );
        let finish = lookup().with_name("finish").unwrap();
        let err = DynReAct::new(sig, [finish]).unwrap_err();
        assert!(err.to_string().contains("its own `finish` tool"), "{err}");
    }

    #[test]
    fn predictors_have_dspy_names() {
        let agent = agent();
        let names: Vec<String> = agent
            .named_predictors()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["react", "extract.predict"]);
    }

    /// Fails with a context-window error while the prompt is longer than `limit` bytes,
    /// otherwise answers from the script.
    #[derive(Clone)]
    struct SmallWindow {
        limit: usize,
        script: ScriptedLM,
        seen: Arc<Mutex<Vec<usize>>>,
    }

    impl LanguageModel for SmallWindow {
        fn model(&self) -> &str {
            "small-window"
        }

        fn call(
            &self,
            request: LmRequest,
        ) -> BoxFuture<'_, std::result::Result<LmResponse, LmError>> {
            let len: usize = request.messages.iter().map(|m| m.content.size_hint()).sum();
            self.seen.lock().unwrap().push(len);
            if len > self.limit {
                return Box::pin(std::future::ready(Err(LmError::from_provider(
                    "small-window",
                    "http://127.0.0.1/v1/chat/completions",
                    400,
                    Some("context_length_exceeded".into()),
                    "This model's maximum context length is 10 tokens.",
                    None,
                ))));
            }
            self.script.call(request)
        }
    }

    #[test]
    fn overflowing_the_context_window_drops_the_oldest_steps() {
        let long = "x".repeat(3000);
        let script = ScriptedLM::from_fields([
            step(&long, "lookup", json!({"key": "capital of France"})),
            step("short", "lookup", json!({"key": "capital of France"})),
            step("done", "finish", json!({})),
            json!({"reasoning": "r", "answer": "Paris"}),
        ]);
        let lm = SmallWindow {
            limit: 5650,
            script: script.clone(),
            seen: Arc::default(),
        };
        let agent = agent().with_config(CallConfig::new().lm(lm.clone()));
        let out = ask(&agent).unwrap();
        assert_eq!(
            lm.seen.lock().unwrap().len(),
            5,
            "one retry after dropping step 0"
        );
        // Step 0's long thought overflowed the window on the third step; it was dropped, and the
        // trajectory returned keeps what the model last saw.
        let t = out.get("trajectory").unwrap().as_object().unwrap();
        assert!(!t.contains_key("thought_0"));
        assert_eq!(t["thought_1"], "short");
        assert_eq!(t["tool_name_2"], "finish");
        assert_eq!(out.get_str("answer"), Some("Paris"));
        assert_eq!(script.calls(), 4);

        // A single step that does not fit ends the loop; extraction then fails the same way.
        let script = ScriptedLM::from_fields([step(&long, "lookup", json!({"key": "k"}))]);
        let lm = SmallWindow {
            limit: 3000,
            script,
            seen: Arc::default(),
        };
        let agent = agent.with_config(CallConfig::new().lm(lm));
        let err = ask(&agent).unwrap_err();
        assert!(
            matches!(&err, Error::Lm(e) if e.is_context_window_exceeded()),
            "{err}"
        );
    }

    /// A native step's completion: the thought, and these calls as the response's tool calls.
    fn native_step(thought: &str, calls: &[(&str, Value)]) -> crate::lm::Choice {
        crate::lm::Choice::text(format!(
            "[[ ## next_thought ## ]]\n{thought}\n\n[[ ## completed ## ]]"
        ))
        .with_tool_calls(
            calls
                .iter()
                .map(|(name, args)| crate::lm::ToolCall::new(*name, args.to_string()))
                .collect(),
        )
    }

    fn extraction(answer: &str) -> crate::lm::Choice {
        crate::lm::Choice::text(format!(
            "[[ ## reasoning ## ]]\nr\n\n[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]"
        ))
    }

    fn native_agent() -> DynReAct {
        agent().native_function_calling(true).unwrap()
    }

    #[test]
    fn native_calls_run_in_order_and_their_results_and_errors_reach_the_model() {
        let lm = ScriptedLM::from_choices([
            native_step(
                "Look both up.",
                &[
                    ("lookup", json!({"key": "capital of France"})),
                    ("lookup", json!({"key": "capital of Spain"})),
                ],
            ),
            native_step("Search instead.", &[("search", json!({"q": "Spain"}))]),
            native_step("Enough.", &[]),
            extraction("Paris"),
        ]);
        let agent = native_agent().with_config(CallConfig::new().lm(lm.clone()));
        assert!(agent.is_native_function_calling());
        let out = ask(&agent).unwrap();
        assert_eq!(out.get_str("answer"), Some("Paris"));
        let t: Trajectory = serde_json::from_value(out.get("trajectory").unwrap().clone()).unwrap();
        let summary: Vec<(usize, &str, &str, Value)> = t
            .steps()
            .iter()
            .map(|s| {
                (
                    s.index,
                    s.thought.as_str(),
                    s.tool_name.as_str(),
                    s.observation.clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (0, "Look both up.", "lookup", json!("Paris")),
                (
                    1,
                    "",
                    "lookup",
                    json!("Execution error in lookup: no fact for \"capital of Spain\"")
                ),
                (
                    2,
                    "Search instead.",
                    "search",
                    json!("Execution error in search: no tool has this name")
                ),
                (3, "Enough.", "finish", json!("Completed.")),
            ]
        );
        assert_eq!(
            t.steps()[1].tool_args,
            *json!({"key": "capital of Spain"}).as_object().unwrap()
        );
        assert_eq!(lm.calls(), 4);
        let requests = lm.requests();
        // Every step offers the tools natively, `finish` last; the extraction does not.
        for request in &requests[..3] {
            let names: Vec<&str> = request.extra["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["function"]["name"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["lookup", "finish"]);
        }
        assert!(!requests[3].extra.contains_key("tools"));
        // The prompt asks for the thought only; results and errors come back in the trajectory.
        let messages = lm.messages();
        let system = messages[0][0].content.text();
        assert!(system.contains("next_thought"), "{system}");
        assert!(!system.contains("next_tool_name"), "{system}");
        let second = messages[1][1].content.text();
        assert!(
            second.contains("[[ ## observation_0 ## ]]\nParis"),
            "{second}"
        );
        assert!(second.contains(
            "[[ ## observation_1 ## ]]\nExecution error in lookup: no fact for \"capital of Spain\""
        ));
        let third = messages[2][1].content.text();
        assert!(third.contains("Execution error in search: no tool has this name"));
    }

    #[test]
    fn native_mode_respects_max_iters_and_finish() {
        let call = || native_step("again", &[("lookup", json!({"key": "capital of France"}))]);
        let lm = ScriptedLM::from_choices([call(), call(), extraction("Paris")]);
        let agent = native_agent()
            .with_max_iters(2)
            .with_config(CallConfig::new().lm(lm.clone()));
        let out = ask(&agent).unwrap();
        assert_eq!(out.get("trajectory").unwrap().as_object().unwrap().len(), 8);
        assert_eq!(lm.calls(), 3);

        // `finish` among a step's calls ends the loop after that step's calls ran.
        let lm = ScriptedLM::from_choices([
            native_step(
                "done",
                &[
                    ("finish", json!({})),
                    ("lookup", json!({"key": "capital of France"})),
                ],
            ),
            extraction("Paris"),
        ]);
        let agent = native_agent().with_config(CallConfig::new().lm(lm.clone()));
        let out = ask(&agent).unwrap();
        let t = out.get("trajectory").unwrap();
        assert_eq!(t["observation_0"], "Completed.");
        assert_eq!(t["observation_1"], "Paris");
        assert_eq!(lm.calls(), 2);

        // Zero steps goes straight to extraction.
        let lm = ScriptedLM::from_choices([extraction("?")]);
        let agent = native_agent()
            .with_max_iters(0)
            .with_config(CallConfig::new().lm(lm.clone()));
        assert_eq!(ask(&agent).unwrap().get("trajectory"), Some(&json!({})));
        assert_eq!(lm.calls(), 1);
    }

    #[test]
    fn native_mode_switches_back_and_rejects_clashing_fields() {
        let text = agent();
        let back = native_agent().native_function_calling(false).unwrap();
        assert!(!back.is_native_function_calling());
        let sig = |a: &DynReAct| {
            a.named_predictors()
                .into_iter()
                .map(|(n, p)| (n, p.signature.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(sig(&back), sig(&text));
        assert_ne!(sig(&native_agent()), sig(&text));
        let clash =
            DynReAct::new(DynSignature::parse("tools -> answer").unwrap(), [lookup()]).unwrap();
        assert!(clash.native_function_calling(true).is_err());
    }

    #[test]
    fn trajectories_round_trip_through_dspy_dicts() {
        let map = json!({
            "thought_1": "b", "tool_name_1": "finish", "tool_args_1": {}, "observation_1": "Completed.",
            "thought_0": "a", "tool_name_0": "lookup", "tool_args_0": {"key": "k"}, "observation_0": 5,
        });
        let t: Trajectory = serde_json::from_value(map).unwrap();
        assert_eq!(t.steps().len(), 2);
        assert_eq!(t.steps()[0].observation, 5);
        let back = serde_json::to_value(&t).unwrap();
        assert_eq!(
            back.as_object().unwrap().keys().collect::<Vec<_>>(),
            [
                "thought_0",
                "tool_name_0",
                "tool_args_0",
                "observation_0",
                "thought_1",
                "tool_name_1",
                "tool_args_1",
                "observation_1"
            ]
        );
    }
}
