//! Hybrid programs: a pipeline of DSPy modules described once, each step routed on its own —
//! dspex's implementation where one exists, DSPy's in the pool otherwise — saved and loaded as
//! a whole in DSPy's state format.

use super::router::{Route, Routed, Router, RouterError};
use crate::error::{Error, Result};
use crate::example::{Example, Prediction};
use crate::program::{Module, PredictorParams, Program, join_path};
use crate::signature::{DynSignature, SignatureError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

/// One step of a [`HybridSpec`]: the attribute name DSPy's program gives the module, the
/// module, its signature and its constructor's keyword arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HybridStep {
    /// The attribute name (`think` for `self.think = dspy.ChainOfThought(...)`): the prefix of
    /// the step's predictors in the saved state (`think.predict`).
    pub name: String,
    /// DSPy's module name (`ChainOfThought`, `ProgramOfThought`, …).
    pub module: String,
    /// The signature, as DSPy writes them (`question, plan -> answer`).
    pub signature: String,
    /// DSPy's constructor keyword arguments (`{"M": 3}`, `{"max_iters": 2}`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub kwargs: Map<String, Value>,
}

/// The description of a [`HybridProgram`]: its steps, run in order.
///
/// Each step reads its signature's input fields by name from the program's inputs and the
/// outputs of the steps before it (a later output replaces an earlier value of the same
/// name); the program answers with the last step's prediction. It deserializes from JSON
/// (`{"steps": [{"name": …, "module": …, "signature": …, "kwargs": {…}}]}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HybridSpec {
    /// The steps, in order.
    pub steps: Vec<HybridStep>,
}

impl HybridSpec {
    /// No steps yet.
    pub fn new() -> Self {
        HybridSpec::default()
    }

    /// With one more step, without keyword arguments.
    #[must_use]
    pub fn step(
        self,
        name: impl Into<String>,
        module: impl Into<String>,
        signature: impl Into<String>,
    ) -> Self {
        self.step_with(name, module, signature, Map::new())
    }

    /// With one more step and its keyword arguments.
    #[must_use]
    pub fn step_with(
        mut self,
        name: impl Into<String>,
        module: impl Into<String>,
        signature: impl Into<String>,
        kwargs: Map<String, Value>,
    ) -> Self {
        self.steps.push(HybridStep {
            name: name.into(),
            module: module.into(),
            signature: signature.into(),
            kwargs,
        });
        self
    }
}

/// What building, running, saving or loading a [`HybridProgram`] can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HybridError {
    /// The description has no steps.
    #[error("a hybrid program needs at least one step")]
    NoSteps,
    /// A step name is not a Python identifier (DSPy's attribute names are).
    #[error(
        "step name `{name}` is not a Python identifier (letters, digits, `_`; not starting with a digit)"
    )]
    BadStepName {
        /// The name.
        name: String,
    },
    /// Two steps have the same name.
    #[error("two steps are named `{name}`")]
    DuplicateStep {
        /// The name.
        name: String,
    },
    /// A step's signature does not parse.
    #[error("step `{step}`: signature `{signature}`: {source}")]
    Signature {
        /// The step.
        step: String,
        /// The signature as given.
        signature: String,
        /// What was wrong.
        #[source]
        source: SignatureError,
    },
    /// A step could not be routed or created.
    #[error("step `{step}`: {source}")]
    Route {
        /// The step.
        step: String,
        /// What the router said.
        #[source]
        source: Box<RouterError>,
    },
    /// A step's input is neither a program input nor an earlier step's output.
    #[error(
        "step `{step}` reads `{field}`, which neither the program's inputs nor an earlier step's outputs have (available: {available})"
    )]
    MissingInput {
        /// The step.
        step: String,
        /// The field.
        field: String,
        /// The fields there were.
        available: String,
    },
    /// The state has no entry for a step's predictors.
    #[error(
        "the state has no entry for step `{step}` (expected `{step}` or `{step}.…` keys; it has: {available})"
    )]
    MissingState {
        /// The step.
        step: String,
        /// The state's keys.
        available: String,
    },
    /// A state file could not be read, parsed or written.
    #[error("state file `{path}`: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl From<HybridError> for Error {
    fn from(e: HybridError) -> Self {
        match e {
            HybridError::Signature { source, .. } => Error::Signature(source),
            HybridError::Route { source, .. } => (*source).into(),
            other => Error::step("hybrid program", other),
        }
    }
}

/// One built step.
#[derive(Debug)]
struct Built {
    step: HybridStep,
    inputs: Vec<String>,
    routed: Routed,
}

/// A pipeline of DSPy modules built from one [`HybridSpec`], each step routed by the
/// [`Router`]: natively where dspex has the module (Predict, ChainOfThought,
/// MultiChainComparison), in the pool otherwise (ProgramOfThought, ReAct, …). A [`Program`] from
/// [`Example`] to [`Prediction`].
///
/// Its state is the one DSPy's `module.save(path)` writes for the equivalent `dspy.Module`
/// whose attributes are the steps: `think.predict` for a ChainOfThought step `think`,
/// `compute.code_generate.predict` … for a ProgramOfThought step `compute`, the bare step name
/// for a Predict step. [`load`](Self::load) reads such a file (from DSPy or from
/// [`save`](Self::save)) into every step, native or bridged; [`save`](Self::save) writes one
/// DSPy can `load`.
///
/// ```no_run
/// use dspex_runtime::bridge::{HybridProgram, HybridSpec, Pool, Route, Router};
/// use dspex_runtime::{Example, Program};
///
/// # async fn demo() -> dspex_runtime::Result<()> {
/// let pool = Pool::builder().python(".venv/bin/python").build().await?;
/// let spec = HybridSpec::new()
///     .step("plan", "ChainOfThought", "question -> plan")
///     .step("compute", "ProgramOfThought", "question, plan -> result")
///     .step("explain", "ChainOfThought", "question, result -> answer");
/// let mut program = HybridProgram::build(&Router::with_pool(pool), spec).await?;
/// program.load("dspy_program.json").await?;
/// assert_eq!(program.step("compute").map(|s| s.route()), Some(Route::Bridged));
/// let out = program.forward(Example::new().with("question", "What is 6 * 7?")).await?;
/// println!("{:?}", out.get_str("answer"));
/// program.save("dspex_program.json").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct HybridProgram {
    steps: Vec<Built>,
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

impl HybridProgram {
    /// Builds every step of `spec` through `router` (one at a time, in order).
    ///
    /// # Errors
    ///
    /// [`HybridError::NoSteps`], [`BadStepName`](HybridError::BadStepName),
    /// [`DuplicateStep`](HybridError::DuplicateStep) and
    /// [`Signature`](HybridError::Signature) before anything is created;
    /// [`Route`](HybridError::Route) when a step cannot be routed or created.
    pub async fn build(router: &Router, spec: HybridSpec) -> Result<Self, HybridError> {
        if spec.steps.is_empty() {
            return Err(HybridError::NoSteps);
        }
        let mut parsed = Vec::with_capacity(spec.steps.len());
        for (i, step) in spec.steps.iter().enumerate() {
            if !is_identifier(&step.name) {
                return Err(HybridError::BadStepName {
                    name: step.name.clone(),
                });
            }
            if spec.steps[..i].iter().any(|s| s.name == step.name) {
                return Err(HybridError::DuplicateStep {
                    name: step.name.clone(),
                });
            }
            let signature =
                DynSignature::parse(&step.signature).map_err(|source| HybridError::Signature {
                    step: step.name.clone(),
                    signature: step.signature.clone(),
                    source,
                })?;
            let inputs = signature
                .inputs()
                .iter()
                .map(|f| f.name().to_string())
                .collect::<Vec<_>>();
            parsed.push(inputs);
        }
        let mut steps = Vec::with_capacity(spec.steps.len());
        for (step, inputs) in spec.steps.into_iter().zip(parsed) {
            let routed = router
                .route_with(&step.module, step.signature.as_str(), step.kwargs.clone())
                .await
                .map_err(|source| HybridError::Route {
                    step: step.name.clone(),
                    source: Box::new(source),
                })?;
            steps.push(Built {
                step,
                inputs,
                routed,
            });
        }
        Ok(HybridProgram { steps })
    }

    /// The steps' descriptions, in order.
    pub fn spec(&self) -> HybridSpec {
        HybridSpec {
            steps: self.steps.iter().map(|b| b.step.clone()).collect(),
        }
    }

    /// The routed step named `name`.
    pub fn step(&self, name: &str) -> Option<&Routed> {
        self.steps
            .iter()
            .find(|b| b.step.name == name)
            .map(|b| &b.routed)
    }

    /// The routed step named `name`, mutable (to set a native step's config).
    pub fn step_mut(&mut self, name: &str) -> Option<&mut Routed> {
        self.steps
            .iter_mut()
            .find(|b| b.step.name == name)
            .map(|b| &mut b.routed)
    }

    /// Each step's name and the route of its last call (the primary route before any call).
    pub fn routes(&self) -> Vec<(&str, Route)> {
        self.steps
            .iter()
            .map(|b| (b.step.name.as_str(), b.routed.route()))
            .collect()
    }

    /// The whole program's state in DSPy's `dump_state()` format (without metadata): each
    /// step's predictors under the step's name.
    ///
    /// # Errors
    ///
    /// What a bridged step's `save_state` fails with.
    pub async fn save_state(&self) -> Result<Value> {
        let mut out = Map::new();
        for built in &self.steps {
            let state = built.routed.save_state().await?;
            let name = &built.step.name;
            match state {
                // A Predict is its own parameter: its state is the predictor's.
                state if built.step.module == "Predict" => {
                    out.insert(name.clone(), state);
                }
                Value::Object(entries) => {
                    for (key, value) in entries {
                        out.insert(format!("{name}.{key}"), value);
                    }
                }
                other => {
                    out.insert(name.clone(), other);
                }
            }
        }
        Ok(Value::Object(out))
    }

    /// Loads a state in DSPy's format (DSPy's `dump_state()`, the contents of a file DSPy's
    /// `save` wrote, or [`save_state`](Self::save_state)) into every step.
    ///
    /// # Errors
    ///
    /// [`HybridError::MissingState`] when the state has nothing for a step (checked for every
    /// step before any is loaded); what a step's `load_state` fails with.
    pub async fn load_state(&mut self, state: &Value) -> Result<()> {
        let Some(root) = state.as_object() else {
            return Err(HybridError::MissingState {
                step: self.steps[0].step.name.clone(),
                available: "(not a JSON object)".into(),
            }
            .into());
        };
        let mut parts = Vec::with_capacity(self.steps.len());
        for built in &self.steps {
            let name = &built.step.name;
            let part = if built.step.module == "Predict" {
                root.get(name).cloned()
            } else {
                let prefix = format!("{name}.");
                let sub: Map<String, Value> = root
                    .iter()
                    .filter_map(|(k, v)| {
                        k.strip_prefix(&prefix)
                            .map(|rest| (rest.to_string(), v.clone()))
                    })
                    .collect();
                (!sub.is_empty()).then_some(Value::Object(sub))
            };
            let Some(part) = part else {
                return Err(HybridError::MissingState {
                    step: name.clone(),
                    available: root
                        .keys()
                        .filter(|k| *k != "metadata")
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                }
                .into());
            };
            parts.push(part);
        }
        for (built, part) in self.steps.iter_mut().zip(parts) {
            built.routed.load_state(part).await?;
        }
        Ok(())
    }

    /// Writes the state to `path` as DSPy's `save` does (2-space indented JSON with
    /// `metadata.dependency_versions`), for DSPy's `load` of the equivalent program.
    ///
    /// # Errors
    ///
    /// Those of [`save_state`](Self::save_state); [`HybridError::File`] when the file cannot be
    /// written.
    pub async fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file_error = |message: String| HybridError::File {
            path: path.display().to_string(),
            message,
        };
        let text = crate::program::state::saved_text(self.save_state().await?)
            .map_err(|e| file_error(e.to_string()))?;
        tokio::fs::write(path, text)
            .await
            .map_err(|e| file_error(e.to_string()))?;
        Ok(())
    }

    /// Loads a file written by DSPy's `save` (JSON) or by [`save`](Self::save) into every step.
    ///
    /// # Errors
    ///
    /// [`HybridError::File`] when the file cannot be read or is not JSON; those of
    /// [`load_state`](Self::load_state).
    pub async fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file_error = |message: String| HybridError::File {
            path: path.display().to_string(),
            message,
        };
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| file_error(e.to_string()))?;
        let state: Value = serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))?;
        self.load_state(&state).await
    }
}

impl Program for HybridProgram {
    type Input = Example;
    type Output = Prediction;

    async fn forward(&self, input: Example) -> Result<Prediction> {
        let mut flow: Map<String, Value> = input
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let mut last = None;
        for built in &self.steps {
            let mut step_input = Example::new();
            for field in &built.inputs {
                let Some(value) = flow.get(field) else {
                    return Err(HybridError::MissingInput {
                        step: built.step.name.clone(),
                        field: field.clone(),
                        available: flow.keys().cloned().collect::<Vec<_>>().join(", "),
                    }
                    .into());
                };
                step_input = step_input.with(field.clone(), value.clone());
            }
            let step_input = step_input.with_inputs(built.inputs.iter().map(String::as_str));
            let prediction = built.routed.forward(step_input).await?;
            for key in prediction.keys() {
                if let Some(value) = prediction.get(key) {
                    flow.insert(key.to_string(), value.clone());
                }
            }
            last = Some(prediction);
        }
        // `build` refuses a program without steps.
        last.ok_or_else(|| HybridError::NoSteps.into())
    }
}

/// The native steps' predictors, under the step names (`plan.predict`, a Predict step's own
/// name), for dspex's optimizers; bridged steps show none (their predictors live in Python).
impl Module for HybridProgram {
    fn visit_predictors<'a>(
        &'a self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a PredictorParams),
    ) {
        for built in &self.steps {
            built
                .routed
                .visit_predictors(&join_path(path, &built.step.name), visit);
        }
    }

    fn visit_predictors_mut<'a>(
        &'a mut self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a mut PredictorParams),
    ) {
        for built in &mut self.steps {
            built
                .routed
                .visit_predictors_mut(&join_path(path, &built.step.name), visit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::ScriptedLM;
    use crate::program::state::DSPY_STATE_VERSION;
    use crate::settings::{Settings, with_settings};
    use serde_json::json;

    fn block_on<F: std::future::Future>(fut: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(fut)
    }

    fn spec() -> HybridSpec {
        HybridSpec::new()
            .step("plan", "ChainOfThought", "question -> plan")
            .step("answer_it", "Predict", "question, plan -> answer")
    }

    #[test]
    fn a_native_pipeline_flows_fields_between_steps_and_round_trips_its_state() {
        let mut program = block_on(HybridProgram::build(&Router::new(), spec())).unwrap();
        assert_eq!(
            program.routes(),
            [("plan", Route::Native), ("answer_it", Route::Native)]
        );
        let lm = ScriptedLM::from_fields([
            json!({"reasoning": "Think.", "plan": "Multiply."}),
            json!({"answer": "42"}),
        ]);
        let out = block_on(with_settings(
            Settings::new().lm(lm.clone()),
            program.forward(Example::new().with("question", "6 * 7?")),
        ))
        .unwrap();
        assert_eq!(out.get_str("answer"), Some("42"));
        // The second step saw the first one's output.
        let second = lm.requests()[1].messages[1].content.text().into_owned();
        assert!(second.contains("Multiply."), "{second}");

        let names: Vec<_> = program
            .named_predictors()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["plan.predict", "answer_it"]);
        let mut state = block_on(program.save_state()).unwrap();
        let keys: Vec<_> = state.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["plan.predict", "answer_it"]);
        state["plan.predict"]["signature"]["instructions"] = json!("Plan it.");
        state["answer_it"]["demos"] =
            json!([{"question": "1 + 1?", "plan": "Add.", "answer": "2"}]);
        block_on(program.load_state(&state)).unwrap();
        let plan = program.step("plan").unwrap().as_native().unwrap();
        assert_eq!(
            plan.named_predictors()[0].1.signature.instructions(),
            "Plan it."
        );
        assert_eq!(block_on(program.save_state()).unwrap(), state);

        let dir = std::env::temp_dir().join(format!("dspex-hybrid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("program.json");
        block_on(program.save(&path)).unwrap();
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            saved["metadata"]["dependency_versions"]["dspy"],
            DSPY_STATE_VERSION
        );
        let mut again = block_on(HybridProgram::build(&Router::new(), spec())).unwrap();
        block_on(again.load(&path)).unwrap();
        assert_eq!(block_on(again.save_state()).unwrap(), state);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_descriptions_states_and_inputs_are_typed_errors() {
        let build = |spec| block_on(HybridProgram::build(&Router::new(), spec));
        assert!(matches!(
            build(HybridSpec::new()),
            Err(HybridError::NoSteps)
        ));
        let err = build(HybridSpec::new().step("a.b", "Predict", "q -> a")).unwrap_err();
        assert!(matches!(err, HybridError::BadStepName { .. }), "{err:?}");
        let err = build(
            HybridSpec::new()
                .step("s", "Predict", "q -> a")
                .step("s", "Predict", "a -> b"),
        )
        .unwrap_err();
        assert!(matches!(err, HybridError::DuplicateStep { .. }), "{err:?}");
        let err = build(HybridSpec::new().step("s", "Predict", "q -> ")).unwrap_err();
        assert!(matches!(err, HybridError::Signature { .. }), "{err:?}");
        let err = build(HybridSpec::new().step("pot", "ProgramOfThought", "q -> a")).unwrap_err();
        assert!(
            matches!(&err, HybridError::Route { step, source } if step == "pot" && matches!(**source, RouterError::NoRoute { .. })),
            "{err:?}"
        );

        let mut program = build(spec()).unwrap();
        let err = block_on(program.load_state(&json!({"plan.predict": {}}))).unwrap_err();
        assert!(err.to_string().contains("step `answer_it`"), "{err}");
        let err = block_on(program.forward(Example::new().with("query", "x"))).unwrap_err();
        assert!(
            err.to_string().contains("step `plan` reads `question`"),
            "{err}"
        );
        let err = block_on(program.load("/nonexistent/dspex/state.json")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/dspex/state.json"),
            "{err}"
        );
    }

    #[test]
    fn the_spec_reads_from_json() {
        let spec: HybridSpec = serde_json::from_value(json!({"steps": [
            {"name": "plan", "module": "ChainOfThought", "signature": "question -> plan"},
            {"name": "pick", "module": "MultiChainComparison", "signature": "question -> answer", "kwargs": {"M": 2}},
        ]}))
        .unwrap();
        assert_eq!(spec.steps[1].kwargs["M"], 2);
        assert_eq!(spec.steps[0].kwargs, Map::new());
    }
}
