//! [`Refine`]: BestOfN with LM feedback between attempts, given to every predictor as a hint.

use super::best_of_n::{Attempt, Attempts, FnReward, Reward, run_attempt};
use super::predict::DynPredict;
use crate::adapter::format::write_field_list;
use crate::callback::{Callbacks, EventError, EventKind, observe, to_json as event_json};
use crate::error::{Error, Result};
use crate::example::Example;
use crate::program::{Module, PredictorParams, Program};
use crate::pycompat::text::{dedent, py_splitlines, write_json_indented, write_shortest_float};
use crate::settings::CallConfig;
use crate::settings::{InputHints, PredictorId};
use crate::signature::{DynSignature, FieldSpec, TypeSpec};
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::{Arc, OnceLock};

/// The instructions of DSPy's `OfferFeedback` signature (its docstring, as DSPy cleans it).
const OFFER_FEEDBACK_INSTRUCTIONS: &str = "In the discussion, assign blame to each module that contributed to the final reward being below the threshold, if
any. Then, prescribe concrete advice of how the module should act on its future input when we retry the process, if
it were to receive the same or similar inputs. If a module is not to blame, the advice should be N/A.
The module will not see its own history, so it needs to rely on entirely concrete and actionable advice from you
to avoid the same mistake on the same or similar inputs.";

/// The name and description of the input Refine adds to every predictor after feedback.
const HINT_FIELD: &str = "hint_";
const HINT_DESC: &str = "A hint to the module from an earlier run";

/// DSPy's `OfferFeedback` signature (`dspy/predict/refine.py`), with its field descriptions as
/// they are — including the missing space in `kind ofscenario`, which DSPy's prompt shows too.
pub fn offer_feedback_signature() -> &'static DynSignature {
    static SIG: OnceLock<DynSignature> = OnceLock::new();
    SIG.get_or_init(|| {
        let input = |name: &str, ty: TypeSpec, desc: &str| FieldSpec::input(name, ty).with_desc(desc);
        let output =
            |name: &str, ty: TypeSpec, desc: &str| FieldSpec::output(name, ty).with_desc(desc);
        let fields = [
            input("program_code", TypeSpec::Str, "The code of the program that we are analyzing"),
            input(
                "modules_defn",
                TypeSpec::Str,
                "The definition of each module in the program, including its I/O",
            ),
            input("program_inputs", TypeSpec::Str, "The inputs to the program that we are analyzing"),
            input(
                "program_trajectory",
                TypeSpec::Str,
                "The trajectory of the program's execution, showing each module's I/O",
            ),
            input("program_outputs", TypeSpec::Str, "The outputs of the program that we are analyzing"),
            input("reward_code", TypeSpec::Str, "The code of the reward function that we are analyzing"),
            input("target_threshold", TypeSpec::Float, "The target threshold for the reward function"),
            input("reward_value", TypeSpec::Float, "The reward value assigned to the program's outputs"),
            input(
                "module_names",
                TypeSpec::List(Box::new(TypeSpec::Str)),
                "The names of the modules in the program, for which we seek advice",
            ),
            output(
                "discussion",
                TypeSpec::Str,
                "Discussing blame of where each module went wrong, if it did",
            ),
            output(
                "advice",
                TypeSpec::Dict(Box::new(TypeSpec::Str)),
                "For each module, describe very concretely, in this order: the specific scenarios in which it has made mistakes in the past and what each mistake was, followed by what it should do differently in that kind ofscenario in the future. If the module is not to blame, write N/A.",
            ),
        ];
        DynSignature::from_parts(
            Some(OFFER_FEEDBACK_INSTRUCTIONS),
            fields.iter().filter(|f| f.role() == crate::FieldRole::Input).cloned().collect(),
            fields.iter().filter(|f| f.role() == crate::FieldRole::Output).cloned().collect(),
        )
    })
}

/// DSPy's `dspy.Refine`: [`super::BestOfN`] that, after each attempt below the threshold (but the
/// last), asks an LM for advice to every predictor and passes it on in the next attempts.
///
/// The attempt loop is BestOfN's — temperature 1.0, rollout ids from the one in scope, strictly
/// greater rewards win, the first reward `>= threshold` stops, DSPy's failure budget, failures
/// logged with `tracing::warn!` as `Refine: Attempt failed with rollout id <id>: <error>`, an
/// [`super::AttemptsError`] when nothing was produced. Between attempts:
///
/// - the feedback predictor (DSPy's `OfferFeedback`, see [`offer_feedback_signature`]) is called
///   with the settings in scope — the ambient LM, no rollout id or temperature override, as in
///   DSPy; [`Refine::feedback_config`] can set its LM — on: the program's code and reward code
///   (free text, see [`Refine::program_code`]), every predictor's fields and instructions, the
///   program's inputs and outputs and every predictor call of the attempt (JSON indented by two
///   spaces, as DSPy's `orjson` writes it), the threshold, the reward, and the predictor names;
/// - the next attempts give every predictor call an extra input `hint_` ("A hint to the module
///   from an earlier run"): the advice for that predictor's name, or `N/A`. Few-shot demos have
///   no `hint_`, so, as in DSPy, they are shown as incomplete demos in those attempts.
///
/// A failed feedback call counts as a failed attempt. DSPy's `threshold=None` (never stop early)
/// is `f64::INFINITY` here. Predictor names are those of the wrapped
/// program (`predict` for a ChainOfThought, `self` for a lone Predict); optimizers see them under
/// `module`, as in DSPy. Every predictor call in an attempt must come from a predictor the
/// program exposes through [`Module`]: a call from any other (say, one captured by a
/// [`crate::program_fn`] closure) cannot be named in the feedback and fails the attempt, as
/// DSPy's lookup does.
#[derive(Clone)]
pub struct Refine<P, R> {
    module: P,
    n: usize,
    reward: R,
    threshold: f64,
    fail_count: usize,
    program_code: String,
    reward_code: String,
    feedback: DynPredict,
    callbacks: Callbacks,
}

impl<P: fmt::Debug, R> fmt::Debug for Refine<P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Refine")
            .field("module", &self.module)
            .field("n", &self.n)
            .field("threshold", &self.threshold)
            .field("fail_count", &self.fail_count)
            .field("program_code", &self.program_code)
            .field("reward_code", &self.reward_code)
            .field("feedback", &self.feedback)
            .field("callbacks", &self.callbacks)
            .finish_non_exhaustive()
    }
}

impl<P: Program, F> Refine<P, FnReward<F>>
where
    F: Fn(&P::Input, &P::Output) -> f64 + Send + Sync,
{
    /// Refines `module` over up to `n` attempts, scoring each output with `reward_fn`, stopping
    /// at the first reward `>= threshold`.
    pub fn new(module: P, n: usize, reward_fn: F, threshold: f64) -> Self {
        Self::with_reward(module, n, FnReward(reward_fn), threshold)
    }
}

impl<P, R> Refine<P, R> {
    /// As [`Refine::new`], with any [`Reward`] (one that calls an LM, or can fail).
    pub fn with_reward(module: P, n: usize, reward: R, threshold: f64) -> Self {
        Refine {
            module,
            n,
            reward,
            threshold,
            fail_count: n,
            program_code: format!(
                "The source code of this program is not available. It is the Rust type `{}`.",
                std::any::type_name::<P>()
            ),
            reward_code: "The source code of the reward function is not available. It scores the program's inputs and outputs with a float; higher is better.".to_string(),
            feedback: DynPredict::new(offer_feedback_signature().clone()),
            callbacks: Callbacks::new(),
        }
    }

    /// The same module with callbacks of its own: they receive its module events (named
    /// `Refine`), after the callbacks in the settings. The program and the feedback predictor
    /// inside fire their own events to the callbacks in the settings, as in DSPy (see
    /// [`crate::callback`]).
    #[must_use]
    pub fn with_callbacks(mut self, callbacks: impl Into<Callbacks>) -> Self {
        self.callbacks = callbacks.into();
        self
    }

    /// DSPy's failure budget; see [`super::BestOfN::fail_count`].
    #[must_use]
    pub fn fail_count(mut self, fail_count: usize) -> Self {
        self.fail_count = if fail_count == 0 { self.n } else { fail_count };
        self
    }

    /// The program's code as the feedback LM reads it. DSPy sends the Python source of the
    /// module's class; Rust cannot read its own source, so by default this is a sentence naming
    /// the program's type. `include_str!` of the source file is one way to give the real code.
    #[must_use]
    pub fn program_code(mut self, code: impl Into<String>) -> Self {
        self.program_code = code.into();
        self
    }

    /// The reward function's code as the feedback LM reads it (DSPy sends its Python source; by
    /// default this is a sentence saying it is not available).
    #[must_use]
    pub fn reward_code(mut self, code: impl Into<String>) -> Self {
        self.reward_code = code.into();
        self
    }

    /// Sets the LM, adapter or sampling parameters of the feedback call (by default it uses the
    /// settings in scope, as DSPy's does).
    #[must_use]
    pub fn feedback_config(mut self, config: CallConfig) -> Self {
        self.feedback = self.feedback.with_config(config);
        self
    }

    /// The wrapped program.
    pub fn module(&self) -> &P {
        &self.module
    }

    /// The wrapped program, to change its parameters.
    pub fn module_mut(&mut self) -> &mut P {
        &mut self.module
    }
}

impl<P, R> Refine<P, R>
where
    P: Program + Module,
    P::Input: Serialize,
    P::Output: Serialize,
{
    /// The feedback predictor's inputs for one attempt, as DSPy builds `advise_kwargs`.
    fn feedback_inputs(
        &self,
        input: &P::Input,
        attempt: &Attempt<P::Output>,
        names: &[(PredictorId, String)],
        modules_defn: &str,
    ) -> Result<Example> {
        let mut trajectory = Vec::with_capacity(attempt.trace.len());
        for call in &attempt.trace {
            let name = names
                .iter()
                .find(|(id, _)| *id == call.predictor)
                .map(|(_, name)| name.as_str())
                .ok_or_else(|| {
                    Error::step(
                        "Refine",
                        "a predictor the program does not expose through `Module` was called; Refine cannot name it in the feedback (implement or derive `Module` to visit every predictor)",
                    )
                })?;
            let mut entry = Map::new();
            entry.insert("module_name".into(), name.into());
            entry.insert("inputs".into(), Value::Object(call.inputs.as_map().clone()));
            let outputs = call.outputs.iter().map(|(k, v)| (k.to_string(), v.clone()));
            entry.insert("outputs".into(), Value::Object(outputs.collect()));
            trajectory.push(Value::Object(entry));
        }
        let module_names: Vec<Value> = names.iter().map(|(_, n)| n.as_str().into()).collect();
        Ok(Example::from_pairs([
            ("program_code", Value::from(self.program_code.as_str())),
            ("modules_defn", modules_defn.into()),
            ("program_inputs", to_json("program inputs", input)?.into()),
            (
                "program_trajectory",
                orjson_pretty(&Value::Array(trajectory)).into(),
            ),
            (
                "program_outputs",
                to_json("program outputs", &attempt.output)?.into(),
            ),
            ("reward_code", self.reward_code.as_str().into()),
            (
                "target_threshold",
                orjson_pretty(&json_f64(self.threshold)).into(),
            ),
            (
                "reward_value",
                orjson_pretty(&json_f64(attempt.reward)).into(),
            ),
            (
                "module_names",
                orjson_pretty(&Value::Array(module_names)).into(),
            ),
        ]))
    }

    /// Asks the feedback LM for advice; the `advice` output, by predictor name.
    async fn advise(&self, inputs: &Example) -> Result<Map<String, Value>> {
        let prediction = self.feedback.call(inputs).await?;
        match prediction.get("advice") {
            Some(Value::Object(advice)) => Ok(advice.clone()),
            other => Err(Error::step(
                "Refine",
                format!(
                    "the feedback's `advice` is not a mapping of module names to advice: {other:?}"
                ),
            )),
        }
    }
}

/// A value as orjson writes it with `OPT_INDENT_2`.
fn to_json<T: Serialize>(what: &str, value: &T) -> Result<String> {
    let value = serde_json::to_value(value)
        .map_err(|e| Error::step(format!("Refine: serializing the {what}"), e))?;
    Ok(orjson_pretty(&value))
}

/// A float as JSON (`null` for NaN and infinities, as orjson writes them).
fn json_f64(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

impl<P, R> Program for Refine<P, R>
where
    P: Program + Module,
    P::Input: Clone + Sync + Serialize,
    P::Output: Sync + Serialize,
    R: Reward<P::Input, P::Output>,
{
    type Input = P::Input;
    type Output = P::Output;

    async fn forward(&self, input: P::Input) -> Result<P::Output> {
        observe(
            EventKind::Module,
            || "Refine".to_string(),
            Some(&self.callbacks),
            || event_json(&input),
            // Boxed: the attempts nest whole program calls, too deep for one stack frame in
            // debug builds.
            Box::pin(self.attempts(&input)),
            event_json,
            EventError::of,
        )
        .await
    }
}

impl<P, R> Refine<P, R>
where
    P: Program + Module,
    P::Input: Clone + Sync + Serialize,
    P::Output: Sync + Serialize,
    R: Reward<P::Input, P::Output>,
{
    /// The attempt loop: run, score, ask for feedback, run again with the advice as hints.
    async fn attempts(&self, input: &P::Input) -> Result<P::Output> {
        let mut attempts = Attempts::new("Refine", self.fail_count);
        let named = self.module.named_predictors();
        let modules_defn = inspect_modules(&named);
        let names: Vec<(PredictorId, String)> = named
            .iter()
            .map(|(name, params)| (PredictorId::of(params), name.clone()))
            .collect();
        let mut advice: Option<Map<String, Value>> = None;
        for idx in 0..self.n {
            let rollout_id = attempts.rollout_id(idx);
            // DSPy passes hints only once there is some advice (`if not advice`).
            let hints = advice.as_ref().filter(|a| !a.is_empty()).map(|advice| {
                let na = Value::from("N/A");
                Arc::new(InputHints {
                    field: FieldSpec::input(HINT_FIELD, TypeSpec::Str).with_desc(HINT_DESC),
                    values: names
                        .iter()
                        .map(|(id, name)| (*id, advice.get(name).cloned().unwrap_or(na.clone())))
                        .collect(),
                    default: na,
                })
            });
            let attempt =
                match run_attempt(&self.module, &self.reward, input, rollout_id, hints).await {
                    Ok(attempt) => attempt,
                    Err(error) => {
                        attempts.failed(idx, error)?;
                        continue;
                    }
                };
            let last = attempt.reward >= self.threshold || idx + 1 == self.n;
            let feedback =
                (!last).then(|| self.feedback_inputs(input, &attempt, &names, &modules_defn));
            attempts.succeeded(attempt);
            let Some(feedback) = feedback else { break };
            let advised = match feedback {
                Ok(inputs) => self.advise(&inputs).await,
                Err(error) => Err(error),
            };
            match advised {
                Ok(a) => advice = Some(a),
                Err(error) => attempts.failed(idx, error)?,
            }
        }
        attempts.finish()
    }
}

crate::program::delegate_module!(impl[P: Module, R] Refine<P, R> => module as "module");

/// DSPy's `inspect_modules`: for every predictor, its name, field lists and instructions,
/// tab-indented between lines of 80 dashes.
fn inspect_modules(named: &[(String, &PredictorParams)]) -> String {
    let separator = "-".repeat(80);
    let mut parts: Vec<String> = vec![separator.clone()];
    let indented = |text: &str| -> String {
        let mut out = String::new();
        for line in py_splitlines(text) {
            out.push_str("\n\t\t");
            out.push_str(line);
        }
        out
    };
    // DSPy's `get_field_description_string`, as the adapters write it.
    let field_list = |fields: &[FieldSpec]| -> String {
        let mut out = String::new();
        write_field_list(&mut out, fields);
        out
    };
    for (name, params) in named {
        let signature = &params.signature;
        parts.push(format!("Module {name}"));
        parts.push("\n\tInput Fields:".to_string());
        parts.push(indented(&field_list(signature.inputs())));
        parts.push("\tOutput Fields:".to_string());
        parts.push(indented(&field_list(signature.outputs())));
        parts.push(format!(
            "\tOriginal Instructions: {}",
            indented(&dedent(signature.instructions()))
        ));
        parts.push(separator.clone());
    }
    let stripped: Vec<&str> = parts.iter().map(|p| p.trim_matches('\n')).collect();
    stripped.join("\n")
}

/// `orjson.dumps(value, option=OPT_INDENT_2)`: two-space indentation, `": "` after keys, empty
/// containers as `[]`/`{}`, non-ASCII kept, and orjson's number format.
fn orjson_pretty(value: &Value) -> String {
    let mut out = String::new();
    write_json_indented(&mut out, value, 0, write_orjson_number);
    out
}

/// orjson's number format: integers as they are, floats per [`write_orjson_float`].
fn write_orjson_number(out: &mut String, n: &serde_json::Number) {
    match n.as_f64() {
        Some(f) if n.is_f64() => write_orjson_float(out, f),
        _ => out.push_str(&n.to_string()),
    }
}

/// orjson's float format: positional (with `.0` when integral) for decimal exponents -5 to 15,
/// else `1.5e+16` / `1e-6`; `null` for NaN and infinities. Not Python's `repr` (which the
/// adapters write): orjson goes positional down to `1e-5` and does not pad the exponent.
fn write_orjson_float(out: &mut String, f: f64) {
    if f.is_finite() {
        write_shortest_float(out, f, -5..16, 1);
    } else {
        out.push_str("null");
    }
}

#[cfg(test)]
mod tests {
    use super::super::best_of_n::testing::{QA, QAInput, QAOutput, question};
    use super::*;
    use crate::lm::ScriptedLM;
    use crate::module::{ChainOfThought, Predict, Reasoned};
    use crate::program::program_fn;
    use crate::settings::{Settings, Trace, with_settings};
    use serde_json::json;

    /// Captured from DSPy 3.4.1 (`Refine` over `ChainOfThought(QA)`, DummyLM).
    const FEEDBACK_SYSTEM: &str = concat!(
        "Your input fields are:\n",
        "1. `program_code` (str): The code of the program that we are analyzing\n",
        "2. `modules_defn` (str): The definition of each module in the program, including its I/O\n",
        "3. `program_inputs` (str): The inputs to the program that we are analyzing\n",
        "4. `program_trajectory` (str): The trajectory of the program's execution, showing each module's I/O\n",
        "5. `program_outputs` (str): The outputs of the program that we are analyzing\n",
        "6. `reward_code` (str): The code of the reward function that we are analyzing\n",
        "7. `target_threshold` (float): The target threshold for the reward function\n",
        "8. `reward_value` (float): The reward value assigned to the program's outputs\n",
        "9. `module_names` (list[str]): The names of the modules in the program, for which we seek advice\n",
        "Your output fields are:\n",
        "1. `discussion` (str): Discussing blame of where each module went wrong, if it did\n",
        "2. `advice` (dict[str, str]): For each module, describe very concretely, in this order: the specific scenarios in which it has made mistakes in the past and what each mistake was, followed by what it should do differently in that kind ofscenario in the future. If the module is not to blame, write N/A.\n",
        "All interactions will be structured in the following way, with the appropriate values filled in.\n",
        "\n",
        "[[ ## program_code ## ]]\n",
        "{program_code}\n",
        "\n",
        "[[ ## modules_defn ## ]]\n",
        "{modules_defn}\n",
        "\n",
        "[[ ## program_inputs ## ]]\n",
        "{program_inputs}\n",
        "\n",
        "[[ ## program_trajectory ## ]]\n",
        "{program_trajectory}\n",
        "\n",
        "[[ ## program_outputs ## ]]\n",
        "{program_outputs}\n",
        "\n",
        "[[ ## reward_code ## ]]\n",
        "{reward_code}\n",
        "\n",
        "[[ ## target_threshold ## ]]\n",
        "{target_threshold}\n",
        "\n",
        "[[ ## reward_value ## ]]\n",
        "{reward_value}\n",
        "\n",
        "[[ ## module_names ## ]]\n",
        "{module_names}\n",
        "\n",
        "[[ ## discussion ## ]]\n",
        "{discussion}\n",
        "\n",
        "[[ ## advice ## ]]\n",
        "{advice}        # note: the value you produce must adhere to the JSON schema: {\"type\": \"object\", \"additionalProperties\": {\"type\": \"string\"}}\n",
        "\n",
        "[[ ## completed ## ]]\n",
        "In adhering to this structure, your objective is: \n",
        "        In the discussion, assign blame to each module that contributed to the final reward being below the threshold, if\n",
        "        any. Then, prescribe concrete advice of how the module should act on its future input when we retry the process, if\n",
        "        it were to receive the same or similar inputs. If a module is not to blame, the advice should be N/A.\n",
        "        The module will not see its own history, so it needs to rely on entirely concrete and actionable advice from you\n",
        "        to avoid the same mistake on the same or similar inputs.",
    );

    /// The user turn of a feedback call, captured from DSPy 3.4.1 (`Refine` over
    /// `ChainOfThought(QA)`, DummyLM). The two feedback calls differ only in the attempt's
    /// predictor inputs (`$input`: the lines of its `inputs` object) and its outputs.
    macro_rules! feedback_user {
        (
            inputs: [$($input:literal),+ $(,)?],
            reasoning: $reasoning:literal,
            answer: $answer:literal
        ) => {
            concat!(
                "[[ ## program_code ## ]]\n",
                "PROGRAM CODE\n",
                "\n",
                "[[ ## modules_defn ## ]]\n",
                "--------------------------------------------------------------------------------\n",
                "Module predict\n",
                "\tInput Fields:\n",
                "\t\t1. `question` (str): a question\n",
                "\tOutput Fields:\n",
                "\t\t1. `reasoning` (str): \n",
                "\t\t2. `answer` (str):\n",
                "\tOriginal Instructions: \n",
                "\t\tAnswer the question.\n",
                "--------------------------------------------------------------------------------\n",
                "\n",
                "[[ ## program_inputs ## ]]\n",
                "{\n",
                "  \"question\": \"What is the capital of France?\"\n",
                "}\n",
                "\n",
                "[[ ## program_trajectory ## ]]\n",
                "[\n",
                "  {\n",
                "    \"module_name\": \"predict\",\n",
                "    \"inputs\": {\n",
                $($input,)+
                "    },\n",
                "    \"outputs\": {\n",
                "      \"reasoning\": \"", $reasoning, "\",\n",
                "      \"answer\": \"", $answer, "\"\n",
                "    }\n",
                "  }\n",
                "]\n",
                "\n",
                "[[ ## program_outputs ## ]]\n",
                "{\n",
                "  \"reasoning\": \"", $reasoning, "\",\n",
                "  \"answer\": \"", $answer, "\"\n",
                "}\n",
                "\n",
                "[[ ## reward_code ## ]]\n",
                "REWARD CODE\n",
                "\n",
                "[[ ## target_threshold ## ]]\n",
                "1.0\n",
                "\n",
                "[[ ## reward_value ## ]]\n",
                "0.0\n",
                "\n",
                "[[ ## module_names ## ]]\n",
                "[\n",
                "  \"predict\"\n",
                "]\n",
                "\n",
                "Respond with the corresponding output fields, starting with the field `[[ ## discussion ## ]]`, then `[[ ## advice ## ]]` (must be formatted as a valid Python dict[str, str]), and then ending with the marker for `[[ ## completed ## ]]`.",
            )
        };
    }

    /// The user turn of a hinted attempt, captured from DSPy 3.4.1 (`Refine` over
    /// `ChainOfThought(QA)`, DummyLM).
    macro_rules! hinted_user {
        ($hint:literal) => {
            concat!(
                "[[ ## question ## ]]\n",
                "What is the capital of France?\n",
                "\n",
                "[[ ## hint_ ## ]]\n",
                $hint,
                "\n\n",
                "Respond with the corresponding output fields, starting with the field `[[ ## reasoning ## ]]`, then `[[ ## answer ## ]]`, and then ending with the marker for `[[ ## completed ## ]]`.",
            )
        };
    }

    const FEEDBACK_USER_1: &str = feedback_user!(
        inputs: ["      \"question\": \"What is the capital of France?\"\n"],
        reasoning: "r1",
        answer: "Lyon"
    );

    const FEEDBACK_USER_2: &str = feedback_user!(
        inputs: [
            "      \"question\": \"What is the capital of France?\",\n",
            "      \"hint_\": \"Say Paris.\"\n",
        ],
        reasoning: "r2",
        answer: "Lyon again"
    );

    /// Captured from DSPy 3.4.1 (`Refine` over `ChainOfThought(QA)`, DummyLM).
    const HINTED_SYSTEM: &str = concat!(
        "Your input fields are:\n",
        "1. `question` (str): a question\n",
        "2. `hint_` (str): A hint to the module from an earlier run\n",
        "Your output fields are:\n",
        "1. `reasoning` (str): \n",
        "2. `answer` (str):\n",
        "All interactions will be structured in the following way, with the appropriate values filled in.\n",
        "\n",
        "[[ ## question ## ]]\n",
        "{question}\n",
        "\n",
        "[[ ## hint_ ## ]]\n",
        "{hint_}\n",
        "\n",
        "[[ ## reasoning ## ]]\n",
        "{reasoning}\n",
        "\n",
        "[[ ## answer ## ]]\n",
        "{answer}\n",
        "\n",
        "[[ ## completed ## ]]\n",
        "In adhering to this structure, your objective is: \n",
        "        Answer the question.",
    );

    const HINTED_USER_1: &str = hinted_user!("Say Paris.");

    const HINTED_USER_2: &str = hinted_user!("Really, say Paris.");

    fn paris(_: &QAInput, out: &Reasoned<QAOutput>) -> f64 {
        if out.output.answer == "Paris" {
            1.0
        } else {
            0.0
        }
    }

    fn roles(lm: &ScriptedLM, call: usize) -> (String, String) {
        let messages = &lm.requests()[call].messages;
        assert_eq!(messages.len(), 2);
        (
            messages[0].content.text().into_owned(),
            messages[1].content.text().into_owned(),
        )
    }

    #[tokio::test]
    async fn sends_dspys_feedback_prompt_then_hints_every_predictor() {
        let lm = ScriptedLM::from_fields([
            json!({"reasoning": "r1", "answer": "Lyon"}),
            json!({"discussion": "d1", "advice": {"predict": "Say Paris."}}),
            json!({"reasoning": "r2", "answer": "Lyon again"}),
            json!({"discussion": "d2", "advice": {"predict": "Really, say Paris."}}),
            json!({"reasoning": "r3", "answer": "Paris"}),
        ]);
        let refine = Refine::new(ChainOfThought::<QA>::new(), 3, paris, 1.0)
            .program_code("PROGRAM CODE")
            .reward_code("REWARD CODE");
        assert_eq!(refine.named_predictors()[0].0, "module.predict");
        let trace = Trace::new();
        let settings = Settings::new().lm(lm.clone()).trace(trace.clone());
        let input = question("What is the capital of France?");
        let out = with_settings(settings, refine.forward(input))
            .await
            .unwrap();
        assert_eq!(out.output.answer, "Paris");

        assert_eq!(lm.calls(), 5);
        assert_eq!(
            roles(&lm, 1),
            (FEEDBACK_SYSTEM.into(), FEEDBACK_USER_1.into())
        );
        assert_eq!(roles(&lm, 2), (HINTED_SYSTEM.into(), HINTED_USER_1.into()));
        assert_eq!(
            roles(&lm, 3),
            (FEEDBACK_SYSTEM.into(), FEEDBACK_USER_2.into())
        );
        assert_eq!(roles(&lm, 4), (HINTED_SYSTEM.into(), HINTED_USER_2.into()));
        // Attempts sample at 1.0 with rollout ids 0, 1, 2; feedback calls use the ambient LM as is.
        let sampling: Vec<_> = lm
            .requests()
            .iter()
            .map(|r| (r.temperature, r.rollout_id))
            .collect();
        assert_eq!(
            sampling,
            [
                (Some(1.0), Some(0)),
                (None, None),
                (Some(1.0), Some(1)),
                (None, None),
                (Some(1.0), Some(2)),
            ]
        );
        // As in DSPy, the outer trace holds both feedback calls, then the chosen attempt's call
        // with its `hint_`.
        let entries = trace.entries();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].outputs.get_str("discussion"), Some("d1"));
        assert_eq!(entries[1].outputs.get_str("discussion"), Some("d2"));
        assert_eq!(
            entries[2].inputs.get_str("hint_"),
            Some("Really, say Paris.")
        );
        assert_eq!(entries[2].outputs.get_str("answer"), Some("Paris"));
    }

    #[tokio::test]
    async fn advice_for_no_module_gives_na_and_empty_advice_gives_no_hint() {
        let lm = ScriptedLM::from_fields([
            json!({"reasoning": "r1", "answer": "Lyon"}),
            json!({"discussion": "d1", "advice": {"someone_else": "x"}}),
            json!({"reasoning": "r2", "answer": "Nice"}),
            json!({"discussion": "d2", "advice": {}}),
            json!({"reasoning": "r3", "answer": "Paris"}),
        ]);
        let refine = Refine::new(ChainOfThought::<QA>::new(), 3, paris, 1.0);
        let settings = Settings::new().lm(lm.clone());
        let out = with_settings(settings, refine.forward(question("Q")))
            .await
            .unwrap();
        assert_eq!(out.output.answer, "Paris");
        assert!(roles(&lm, 2).1.contains("[[ ## hint_ ## ]]\nN/A\n\n"));
        assert!(!roles(&lm, 4).1.contains("hint_"));
        // The default program and reward code say the source is not available.
        let feedback = roles(&lm, 1).1;
        assert!(
            feedback.contains(
                "It is the Rust type `dspex_runtime::module::chain_of_thought::ChainOfThought<"
            ),
            "{feedback}"
        );
        assert!(feedback.contains(
            "[[ ## reward_code ## ]]\nThe source code of the reward function is not available."
        ));
    }

    #[tokio::test]
    async fn a_failed_feedback_call_fails_the_attempt_and_the_loop_goes_on() {
        let lm = ScriptedLM::new([
            "[[ ## reasoning ## ]]\nr1\n\n[[ ## answer ## ]]\nLyon\n\n[[ ## completed ## ]]",
            "no fields here",
            "nor here",
            "[[ ## reasoning ## ]]\nr2\n\n[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]",
        ]);
        let refine = Refine::new(ChainOfThought::<QA>::new(), 3, paris, 1.0);
        let out = with_settings(
            Settings::new().lm(lm.clone()),
            refine.forward(question("Q")),
        )
        .await
        .unwrap();
        assert_eq!(out.output.answer, "Paris");
        // The feedback failed (Chat, then JSON), so there is no advice and no hint.
        assert_eq!(lm.calls(), 4);
        assert!(!roles(&lm, 3).1.contains("hint_"));
    }

    #[tokio::test]
    async fn a_predictor_the_program_does_not_expose_fails_the_attempt() {
        let lm = ScriptedLM::from_fields([json!({"answer": "a"}), json!({"answer": "b"})]);
        let hidden = Predict::<QA>::new().with_config(CallConfig::new().lm(lm.clone()));
        let program = program_fn(move |input: QAInput| {
            let hidden = hidden.clone();
            async move { hidden.forward(input).await }
        });
        let refine = Refine::new(program, 2, |_: &QAInput, _: &QAOutput| 0.0, 1.0);
        let out = refine.forward(question("Q")).await.unwrap();
        // Attempt 1 failed when its call could not be named, so no feedback call was made; its
        // output was already the best (attempt 2 only ties it).
        assert_eq!(out.answer, "a");
        assert_eq!(lm.calls(), 2);
    }

    #[test]
    fn modules_defn_matches_dspy() {
        let generate = DynSignature::from_fields(
            Some("Write a search query.\n\n    Keep it short:\n       one line only."),
            [
                FieldSpec::input("context", TypeSpec::List(Box::new(TypeSpec::Str)))
                    .with_desc("passages\nmay be empty"),
                FieldSpec::input("question", TypeSpec::Str),
                FieldSpec::output("query", TypeSpec::Str).with_desc("a query"),
            ],
        )
        .unwrap()
        .prepend(FieldSpec::output("reasoning", TypeSpec::Str))
        .unwrap();
        let answer =
            DynSignature::parse("context: list[str], question -> answer: int, confident: bool")
                .unwrap();
        let (generate, answer) = (PredictorParams::new(generate), PredictorParams::new(answer));
        let named = [
            ("generate_query.predict".to_string(), &generate),
            ("answer".to_string(), &answer),
        ];
        // DSPy 3.4.1's `inspect_modules` of the same two predictors.
        let expected = "--------------------------------------------------------------------------------\nModule generate_query.predict\n\tInput Fields:\n\t\t1. `context` (list[str]): passages\n\t\tmay be empty\n\t\t2. `question` (str):\n\tOutput Fields:\n\t\t1. `reasoning` (str): \n\t\t2. `query` (str): a query\n\tOriginal Instructions: \n\t\tWrite a search query.\n\t\t\n\t\tKeep it short:\n\t\t   one line only.\n--------------------------------------------------------------------------------\nModule answer\n\tInput Fields:\n\t\t1. `context` (list[str]): \n\t\t2. `question` (str):\n\tOutput Fields:\n\t\t1. `answer` (int): \n\t\t2. `confident` (bool):\n\tOriginal Instructions: \n\t\tGiven the fields `context`, `question`, produce the fields `answer`, `confident`.\n--------------------------------------------------------------------------------";
        assert_eq!(inspect_modules(&named), expected);
    }

    #[test]
    fn json_is_written_as_orjson_writes_it() {
        // Expected strings from `orjson.dumps(v, option=orjson.OPT_INDENT_2)`.
        let floats = [
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (0.5, "0.5"),
            (1e15, "1000000000000000.0"),
            (9.99e15, "9990000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e-5, "0.00001"),
            (2.5e-5, "0.000025"),
            (1e-6, "1e-6"),
            (1.5e-7, "1.5e-7"),
            (12345.678, "12345.678"),
            (5e-324, "5e-324"),
            (f64::NAN, "null"),
        ];
        for (f, expected) in floats {
            let mut s = String::new();
            write_orjson_float(&mut s, f);
            assert_eq!(s, expected, "{f:e}");
        }
        let value =
            json!({"a": "é\u{2028}\u{7f}\u{1f}/", "b": [], "c": {}, "d": [1, [2, {}]], "e": null});
        assert_eq!(
            orjson_pretty(&value),
            "{\n  \"a\": \"é\u{2028}\u{7f}\\u001f/\",\n  \"b\": [],\n  \"c\": {},\n  \"d\": [\n    1,\n    [\n      2,\n      {}\n    ]\n  ],\n  \"e\": null\n}"
        );
    }
}
