//! [`ReAct`]: DSPy's tool-using agent loop.

use super::predict::DynPredict;
use super::tool::{IntoTool, Tool, ToolError};
use crate::adapter::{Adapter, ChatAdapter};
use crate::callback::{Callbacks, EventError, EventKind, observe, to_json};
use crate::error::{Error, Result};
use crate::example::{Example, Prediction};
use crate::program::Program;
use crate::settings::CallConfig;
use crate::settings::Settings;
use crate::signature::{DynSignature, FieldSpec, LiteralValue, Signature, TypeSpec};
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
        })
    }

    /// The same agent taking at most `max_iters` steps (DSPy's default: 20; 0 goes straight to
    /// extraction).
    #[must_use]
    pub fn with_max_iters(mut self, max_iters: usize) -> Self {
        self.max_iters = max_iters;
        self
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
        for index in 0..self.max_iters {
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

/// The step signature: the inputs, `trajectory`, and `next_thought`, `next_tool_name` (a
/// literal of the tool names), `next_tool_args`, under DSPy's agent instructions.
fn react_signature(signature: &DynSignature, tools: &[Tool]) -> Result<DynSignature> {
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
                return Box::pin(std::future::ready(Err(LmError::Http {
                    model: "small-window".into(),
                    endpoint: "http://127.0.0.1/v1/chat/completions".into(),
                    status: 400,
                    body: r#"{"error": {"code": "context_length_exceeded", "message": "This model's maximum context length is 10 tokens."}}"#.into(),
                    retry_after: None,
                })));
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
