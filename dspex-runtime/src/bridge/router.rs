//! The router: one program type for a module that is native or bridged.
//!
//! [`Router::route`] takes a DSPy module name (`Predict`, `ChainOfThought`, `ReAct`,
//! `ProgramOfThought`, …) and a signature, and returns a [`Routed`] program from [`Example`] to
//! [`Prediction`]: dspex's own implementation when it has one for that name
//! ([`NATIVE_MODULES`]), else DSPy's, created in the router's [`Pool`] through the bridge. A
//! [`Route`] given to [`Router::force`] forces either side. Every decision is logged with
//! `tracing` (target `dspex::bridge`, level INFO: module, signature, route, reason) and can be
//! read back with [`Routed::route`].

use super::error::BridgeError;
use super::pool::Pool;
use super::program::BridgedModule;
use crate::error::{Error, Result};
use crate::example::{Example, Prediction};
use crate::module::DynPredict;
use crate::program::{Module, PredictorParams, Program, join_path};
use crate::signature::{DynSignature, FieldSpec, Signature, SignatureError, TypeSpec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

/// The DSPy module names dspex implements natively over a run-time signature, in the order
/// [`RouterError::NoNative`] lists them.
pub const NATIVE_MODULES: &[&str] = &["Predict", "ChainOfThought"];

/// Where a routed program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// dspex's own implementation, in this process.
    Native,
    /// DSPy's implementation, in a worker of the pool.
    Bridged,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Route::Native => "native",
            Route::Bridged => "bridged",
        })
    }
}

/// Why routing failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// The native route was forced, but dspex has no native implementation of the module.
    #[error(
        "no native implementation of `{module}` (dspex has: {}); route it through the bridge instead",
        available.join(", ")
    )]
    NoNative {
        /// The module asked for.
        module: String,
        /// The modules dspex implements natively ([`NATIVE_MODULES`]).
        available: Vec<&'static str>,
    },
    /// The bridged route was forced, but the router has no pool.
    #[error(
        "`{module}` was forced through the bridge, but the router has no pool: build it with Router::with_pool"
    )]
    NoPool {
        /// The module asked for.
        module: String,
    },
    /// dspex has no native implementation of the module and the router has no pool to run
    /// DSPy's.
    #[error(
        "no route for `{module}`: dspex has no native implementation (it has: {}) and the router has no pool to run DSPy's",
        available.join(", ")
    )]
    NoRoute {
        /// The module asked for.
        module: String,
        /// The modules dspex implements natively ([`NATIVE_MODULES`]).
        available: Vec<&'static str>,
    },
    /// The signature does not parse (native route).
    #[error("`{module}` over `{signature}`: {source}")]
    Signature {
        /// The module asked for.
        module: String,
        /// The signature as given.
        signature: String,
        /// What was wrong.
        #[source]
        source: SignatureError,
    },
    /// Creating the module in the pool failed (Python raised, the worker crashed, …).
    #[error(transparent)]
    Bridge(#[from] BridgeError),
}

/// A routing error as a dspex [`Error`]: bridge and signature errors keep their variant, the
/// others become [`Error::Step`] (`"routing a module"`).
impl From<RouterError> for Error {
    fn from(e: RouterError) -> Self {
        match e {
            RouterError::Bridge(e) => Error::Bridge(e),
            RouterError::Signature { source, .. } => Error::Signature(source),
            other => Error::step("routing a module", other),
        }
    }
}

/// A signature given to the router: a string (`"question -> answer"`) or a [`DynSignature`].
///
/// Bridged modules receive the signature as a string — its field names and types — and, from
/// a [`DynSignature`] whose instructions are not the default ones, its instructions; not its
/// field descriptions (set those on the DSPy side, or use a native module). A string is parsed
/// by dspex only for the native route, and passed to DSPy as given otherwise.
#[derive(Debug, Clone, PartialEq)]
pub enum SignatureArg {
    /// A signature string, as DSPy writes them.
    Text(String),
    /// A parsed signature.
    Dyn(DynSignature),
}

impl SignatureArg {
    /// The signature string DSPy gets (`question: str -> answer: str` for a [`DynSignature`]).
    pub fn text(&self) -> String {
        match self {
            SignatureArg::Text(s) => s.clone(),
            SignatureArg::Dyn(s) => s.to_string(),
        }
    }

    /// The instructions DSPy gets with the signature: a [`DynSignature`]'s, unless they are the
    /// default ones (which DSPy writes the same); none for a string.
    pub fn instructions(&self) -> Option<String> {
        match self {
            SignatureArg::Text(_) => None,
            SignatureArg::Dyn(s) => {
                (s.instructions() != s.default_instructions()).then(|| s.instructions().to_string())
            }
        }
    }

    /// The field descriptions and prefixes DSPy gets with the signature, by field name: a
    /// [`DynSignature`]'s that differ from DSPy's defaults (`${name}`, `Name:`); none for a
    /// string.
    pub fn fields(&self) -> Map<String, Value> {
        let SignatureArg::Dyn(s) = self else {
            return Map::new();
        };
        s.fields()
            .filter_map(|f| {
                let mut spec = Map::new();
                if let Some(desc) = f.description() {
                    spec.insert("desc".into(), Value::from(desc));
                }
                let default_prefix = format!("{}:", dspex_grammar::infer_prefix(f.name()));
                if f.prefix() != default_prefix {
                    spec.insert("prefix".into(), Value::from(f.prefix()));
                }
                (!spec.is_empty()).then(|| (f.name().to_string(), Value::Object(spec)))
            })
            .collect()
    }

    fn parse(&self) -> Result<DynSignature, SignatureError> {
        match self {
            SignatureArg::Text(s) => DynSignature::parse(s),
            SignatureArg::Dyn(s) => Ok(s.clone()),
        }
    }
}

impl From<&str> for SignatureArg {
    fn from(s: &str) -> Self {
        SignatureArg::Text(s.to_string())
    }
}

impl From<String> for SignatureArg {
    fn from(s: String) -> Self {
        SignatureArg::Text(s)
    }
}

impl From<DynSignature> for SignatureArg {
    fn from(s: DynSignature) -> Self {
        SignatureArg::Dyn(s)
    }
}

impl From<&DynSignature> for SignatureArg {
    fn from(s: &DynSignature) -> Self {
        SignatureArg::Dyn(s.clone())
    }
}

/// Chooses, per module name, between dspex's implementation and DSPy's through the bridge.
///
/// Without a pool ([`Router::new`]) only native modules route; with one
/// ([`Router::with_pool`]) every other name goes to DSPy (`dspy.<name>(signature)`, created in
/// a new strict-queue session, as [`BridgedModule::create`]). [`force`](Router::force) pins the
/// route. Cloning is cheap (the pool is shared).
///
/// ```
/// use dspex_runtime::bridge::{Route, Router};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let router = Router::new();
/// let cot = router.route("ChainOfThought", "question -> answer").await?;
/// assert_eq!(cot.route(), Route::Native);
/// assert!(router.route("ProgramOfThought", "question -> answer").await.is_err()); // no pool
/// # Ok::<(), dspex_runtime::bridge::RouterError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct Router {
    pool: Option<Pool>,
    force: Option<Route>,
    timeout: Option<Duration>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("pool", &self.pool.is_some())
            .field("force", &self.force)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Router {
    /// A router without a pool: native modules only.
    pub fn new() -> Self {
        Router::default()
    }

    /// A router that runs the modules dspex lacks in `pool`.
    pub fn with_pool(pool: Pool) -> Self {
        Router {
            pool: Some(pool),
            ..Router::default()
        }
    }

    /// The same router, always choosing `route` (an error when it cannot).
    #[must_use]
    pub fn force(mut self, route: Route) -> Self {
        self.force = Some(route);
        self
    }

    /// The same router, choosing by module name again (undoes [`force`](Self::force)).
    #[must_use]
    pub fn auto(mut self) -> Self {
        self.force = None;
        self
    }

    /// With a per-call timeout for bridged modules instead of the pool's.
    #[must_use]
    pub fn bridged_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The forced route, if any.
    pub fn forced(&self) -> Option<Route> {
        self.force
    }

    /// The pool, if any.
    pub fn pool(&self) -> Option<&Pool> {
        self.pool.as_ref()
    }

    /// Whether dspex implements `module` natively (a name of [`NATIVE_MODULES`]).
    pub fn has_native(module: &str) -> bool {
        NATIVE_MODULES.contains(&module)
    }

    /// The route [`route`](Self::route) would take for `module`, without building anything.
    ///
    /// # Errors
    ///
    /// [`RouterError::NoNative`] when the native route is forced for a module dspex lacks,
    /// [`RouterError::NoPool`] when the bridged route is forced without a pool, and
    /// [`RouterError::NoRoute`] when a module dspex lacks is asked for without a pool.
    pub fn decide(&self, module: &str) -> Result<Route, RouterError> {
        self.decide_why(module).map(|(route, _)| route)
    }

    fn decide_why(&self, module: &str) -> Result<(Route, &'static str), RouterError> {
        let native = Self::has_native(module);
        match self.force {
            Some(Route::Native) if native => Ok((Route::Native, "forced")),
            Some(Route::Native) => Err(RouterError::NoNative {
                module: module.to_string(),
                available: NATIVE_MODULES.to_vec(),
            }),
            Some(Route::Bridged) if self.pool.is_some() => Ok((Route::Bridged, "forced")),
            Some(Route::Bridged) => Err(RouterError::NoPool {
                module: module.to_string(),
            }),
            None if native => Ok((Route::Native, "native implementation")),
            None if self.pool.is_some() => Ok((Route::Bridged, "no native implementation")),
            None => Err(RouterError::NoRoute {
                module: module.to_string(),
                available: NATIVE_MODULES.to_vec(),
            }),
        }
    }

    /// Builds `module` over `signature` on the route [`decide`](Self::decide) picks, and logs
    /// the choice.
    ///
    /// # Errors
    ///
    /// Those of [`decide`](Self::decide); [`RouterError::Signature`] when the native route gets
    /// a signature that does not parse; [`RouterError::Bridge`] when DSPy cannot create the
    /// module (an unknown name, a module that needs more than a signature, such as `ReAct`'s
    /// tools — create those with [`BridgedModule::create_in`] and its kwargs).
    pub async fn route(
        &self,
        module: &str,
        signature: impl Into<SignatureArg>,
    ) -> Result<Routed, RouterError> {
        let signature = signature.into();
        let text = signature.text();
        let decided = self.decide_why(module);
        let (route, reason) = match decided {
            Ok(choice) => choice,
            Err(e) => {
                tracing::info!(
                    target: "dspex::bridge",
                    module,
                    signature = %text,
                    forced = ?self.force,
                    error = %e,
                    "no route for the module"
                );
                return Err(e);
            }
        };
        tracing::info!(
            target: "dspex::bridge",
            module,
            signature = %text,
            route = %route,
            reason,
            "routed a module"
        );
        let program = match route {
            Route::Native => {
                let parsed = signature.parse().map_err(|source| RouterError::Signature {
                    module: module.to_string(),
                    signature: text.clone(),
                    source,
                })?;
                RoutedProgram::Native(NativeModule::build(module, parsed))
            }
            Route::Bridged => {
                let Some(pool) = &self.pool else {
                    unreachable!("decide routes through the bridge only with a pool");
                };
                let mut bridged = BridgedModule::create(pool, module, signature).await?;
                if let Some(timeout) = self.timeout {
                    bridged = bridged.with_timeout(timeout);
                }
                RoutedProgram::Bridged(bridged)
            }
        };
        Ok(Routed {
            module: module.to_string(),
            signature: text,
            program,
        })
    }

    /// Builds `module` over the typed signature `S` (its [`DynSignature`]); call
    /// [`Routed::typed`] on the result for a program over `S`'s structs.
    ///
    /// # Errors
    ///
    /// Those of [`route`](Self::route).
    pub async fn route_for<S: Signature>(&self, module: &str) -> Result<Routed, RouterError> {
        self.route(module, S::signature()).await
    }
}

/// A module dspex implements natively, over a run-time signature (see [`NATIVE_MODULES`]).
///
/// Its predictors are visible to optimizers through [`Module`], named as DSPy names them
/// (`self` for a Predict, `predict` inside a ChainOfThought), so its state loads into the DSPy
/// module of the same name and back.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NativeModule {
    /// [`DynPredict`] over the signature (DSPy's `Predict`).
    Predict(DynPredict),
    /// [`DynPredict`] over the signature with a `reasoning: str` output first, as
    /// [`ChainOfThought`](crate::module::ChainOfThought) builds it (DSPy's `ChainOfThought`).
    ChainOfThought(DynPredict),
}

impl NativeModule {
    /// The native implementation of `module` (a name of [`NATIVE_MODULES`]) over `signature`.
    /// A ChainOfThought over a signature that already has a `reasoning` output keeps it as it
    /// is, as [`ChainOfThought::new`](crate::module::ChainOfThought::new) does.
    fn build(module: &str, signature: DynSignature) -> Self {
        match module {
            "ChainOfThought" => {
                let signature = signature
                    .prepend(FieldSpec::output("reasoning", TypeSpec::Str))
                    .unwrap_or(signature);
                NativeModule::ChainOfThought(DynPredict::new(signature))
            }
            _ => {
                debug_assert_eq!(module, "Predict", "a name outside NATIVE_MODULES");
                NativeModule::Predict(DynPredict::new(signature))
            }
        }
    }

    /// DSPy's name for the module (`Predict`, `ChainOfThought`).
    pub fn name(&self) -> &'static str {
        match self {
            NativeModule::Predict(_) => "Predict",
            NativeModule::ChainOfThought(_) => "ChainOfThought",
        }
    }

    /// The predictor the module calls.
    pub fn predictor(&self) -> &DynPredict {
        match self {
            NativeModule::Predict(p) | NativeModule::ChainOfThought(p) => p,
        }
    }

    /// The predictor the module calls, to change its config, instructions or demos.
    pub fn predictor_mut(&mut self) -> &mut DynPredict {
        match self {
            NativeModule::Predict(p) | NativeModule::ChainOfThought(p) => p,
        }
    }
}

impl Program for NativeModule {
    type Input = Example;
    type Output = Prediction;

    async fn forward(&self, input: Example) -> Result<Prediction> {
        self.predictor().call(&input).await
    }
}

impl Module for NativeModule {
    fn visit_predictors<'a>(
        &'a self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a PredictorParams),
    ) {
        match self {
            NativeModule::Predict(p) => p.visit_predictors(path, visit),
            NativeModule::ChainOfThought(p) => {
                p.visit_predictors(&join_path(path, "predict"), visit);
            }
        }
    }

    fn visit_predictors_mut<'a>(
        &'a mut self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a mut PredictorParams),
    ) {
        match self {
            NativeModule::Predict(p) => p.visit_predictors_mut(path, visit),
            NativeModule::ChainOfThought(p) => {
                p.visit_predictors_mut(&join_path(path, "predict"), visit);
            }
        }
    }
}

/// The dynamic DSPy module behind a [`Routed`] program: input fields in, output fields out.
pub type DynBridged = BridgedModule<Map<String, Value>, Map<String, Value>>;

/// The implementation behind a [`Routed`] program.
#[derive(Debug)]
pub enum RoutedProgram {
    /// dspex's own.
    Native(NativeModule),
    /// DSPy's, in a worker of the pool.
    Bridged(DynBridged),
}

/// A module that is native or bridged behind one type: a [`Program`] from [`Example`] to
/// [`Prediction`], built by [`Router::route`].
///
/// Both routes take the same inputs and answer with the same output fields (a bridged
/// ChainOfThought's `reasoning` included). A bridged module is sent the example's inputs when
/// its input keys are set, else all of its visible fields; its prediction has one completion.
///
/// As a [`Module`], a native program shows its predictors to dspex's optimizers; a bridged one
/// shows none (its predictors live in Python: tune it with [`BridgedModule::optimize`] through
/// [`program`](Self::program), or save and load its state there).
#[derive(Debug)]
pub struct Routed {
    module: String,
    signature: String,
    program: RoutedProgram,
}

impl Routed {
    /// Where the program runs.
    pub fn route(&self) -> Route {
        match self.program {
            RoutedProgram::Native(_) => Route::Native,
            RoutedProgram::Bridged(_) => Route::Bridged,
        }
    }

    /// The module name it was routed for.
    pub fn module(&self) -> &str {
        &self.module
    }

    /// The signature it was built over, as a string.
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// The implementation.
    pub fn program(&self) -> &RoutedProgram {
        &self.program
    }

    /// The implementation, mutable.
    pub fn program_mut(&mut self) -> &mut RoutedProgram {
        &mut self.program
    }

    /// The implementation, owned.
    pub fn into_program(self) -> RoutedProgram {
        self.program
    }

    /// The native module, if the program is native.
    pub fn as_native(&self) -> Option<&NativeModule> {
        match &self.program {
            RoutedProgram::Native(m) => Some(m),
            RoutedProgram::Bridged(_) => None,
        }
    }

    /// The bridged module, if the program is bridged.
    pub fn as_bridged(&self) -> Option<&DynBridged> {
        match &self.program {
            RoutedProgram::Native(_) => None,
            RoutedProgram::Bridged(m) => Some(m),
        }
    }

    /// The same program over typed inputs and outputs: `I` serializes to the input fields and
    /// the prediction deserializes into `O` (`Reasoned<S::Output>` keeps a ChainOfThought's
    /// reasoning).
    pub fn typed<I, O>(self) -> TypedRouted<I, O> {
        TypedRouted {
            inner: self,
            _types: PhantomData,
        }
    }
}

fn bridged_inputs(input: &Example) -> Map<String, Value> {
    let visible = |e: &Example| {
        e.iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<Map<String, Value>>()
    };
    match input.inputs() {
        Ok(inputs) => visible(&inputs),
        Err(_) => visible(input),
    }
}

impl Program for Routed {
    type Input = Example;
    type Output = Prediction;

    async fn forward(&self, input: Example) -> Result<Prediction> {
        match &self.program {
            RoutedProgram::Native(m) => m.forward(input).await,
            RoutedProgram::Bridged(m) => {
                let outputs = m.call(bridged_inputs(&input)).await?;
                Ok(Prediction::new(outputs))
            }
        }
    }
}

impl Module for Routed {
    fn visit_predictors<'a>(
        &'a self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a PredictorParams),
    ) {
        if let RoutedProgram::Native(m) = &self.program {
            m.visit_predictors(path, visit);
        }
    }

    fn visit_predictors_mut<'a>(
        &'a mut self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a mut PredictorParams),
    ) {
        if let RoutedProgram::Native(m) = &mut self.program {
            m.visit_predictors_mut(path, visit);
        }
    }
}

/// A [`Routed`] program over typed inputs and outputs ([`Routed::typed`]).
pub struct TypedRouted<I, O> {
    inner: Routed,
    _types: PhantomData<fn(I) -> O>,
}

impl<I, O> fmt::Debug for TypedRouted<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedRouted")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<I, O> TypedRouted<I, O> {
    /// The dynamic program.
    pub fn inner(&self) -> &Routed {
        &self.inner
    }

    /// The dynamic program, mutable.
    pub fn inner_mut(&mut self) -> &mut Routed {
        &mut self.inner
    }

    /// The dynamic program, owned.
    pub fn into_inner(self) -> Routed {
        self.inner
    }

    /// Where the program runs.
    pub fn route(&self) -> Route {
        self.inner.route()
    }
}

impl<I, O> Program for TypedRouted<I, O>
where
    I: Serialize + Send + Sync + 'static,
    O: DeserializeOwned + Send + 'static,
{
    type Input = I;
    type Output = O;

    async fn forward(&self, input: I) -> Result<O> {
        let prediction = self.inner.forward(Example::from_typed(&input)?).await?;
        Ok(prediction.to_typed()?)
    }
}

impl<I, O> Module for TypedRouted<I, O> {
    fn visit_predictors<'a>(
        &'a self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a PredictorParams),
    ) {
        self.inner.visit_predictors(path, visit);
    }

    fn visit_predictors_mut<'a>(
        &'a mut self,
        path: &str,
        visit: &mut dyn FnMut(String, &'a mut PredictorParams),
    ) {
        self.inner.visit_predictors_mut(path, visit);
    }
}

impl Routed {
    /// Runs on `input`, streaming every output field (a ChainOfThought's `reasoning` first),
    /// then the prediction: the native module's
    /// [`DynPredict::stream_with`](crate::module::DynPredict::stream_with) (chunks named `self`
    /// for a Predict, `predict` for a ChainOfThought, as DSPy names them), or the bridged
    /// module's [`BridgedModule::stream`] (DSPy's `streamify` in the worker; it may also yield
    /// [`StreamItem::Status`](crate::module::StreamItem::Status)). Either way the same
    /// [`FieldStream`](crate::module::FieldStream) of
    /// [`StreamItem`](crate::module::StreamItem)s.
    pub fn stream(&self, input: &Example) -> crate::module::FieldStream<Prediction> {
        use crate::module::{CallConfig, StreamItem, StreamOptions};
        use futures_util::StreamExt;
        match &self.program {
            RoutedProgram::Native(NativeModule::ChainOfThought(p)) => p.stream_with(
                input,
                &CallConfig::default(),
                &StreamOptions::new().predictor_name("predict"),
            ),
            RoutedProgram::Native(m) => m.predictor().stream(input),
            RoutedProgram::Bridged(m) => m
                .stream(bridged_inputs(input))
                .map(|item| {
                    Ok(match item? {
                        StreamItem::Final(outputs) => StreamItem::Final(Prediction::new(outputs)),
                        StreamItem::Chunk(chunk) => StreamItem::Chunk(chunk),
                        StreamItem::Status(message) => StreamItem::Status(message),
                        StreamItem::Fallback { adapter, error } => {
                            StreamItem::Fallback { adapter, error }
                        }
                    })
                })
                .boxed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::ScriptedLM;
    use crate::module::CallConfig;
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    fn block_on<F: std::future::Future>(fut: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(fut)
    }

    #[test]
    fn only_field_descriptions_and_prefixes_that_differ_from_dspys_go_to_the_worker() {
        assert!(SignatureArg::from("question -> answer").fields().is_empty());
        let plain = DynSignature::parse("search_query -> answer").expect("parses");
        assert!(SignatureArg::from(&plain).fields().is_empty());
        let custom = plain
            .with_updated_field("answer", |f| f.with_desc("one word"))
            .and_then(|s| s.with_updated_field("search_query", |f| f.with_prefix("Query:")))
            .expect("updates");
        assert_eq!(
            Value::Object(SignatureArg::from(custom).fields()),
            json!({"answer": {"desc": "one word"}, "search_query": {"prefix": "Query:"}})
        );
    }

    #[test]
    fn native_modules_are_chosen_without_a_pool() {
        let router = Router::new();
        assert_eq!(router.decide("Predict").unwrap(), Route::Native);
        assert_eq!(router.decide("ChainOfThought").unwrap(), Route::Native);
        let forced = Router::new().force(Route::Native);
        assert_eq!(forced.decide("Predict").unwrap(), Route::Native);
        assert_eq!(
            forced.auto().decide("ChainOfThought").unwrap(),
            Route::Native
        );

        let predict = block_on(router.route("Predict", "question -> answer")).unwrap();
        assert_eq!(predict.route(), Route::Native);
        assert_eq!(predict.module(), "Predict");
        assert_eq!(predict.signature(), "question -> answer");
        let names: Vec<_> = predict
            .named_predictors()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["self"]);

        let sig = DynSignature::parse("question -> answer").unwrap();
        let cot = block_on(router.route("ChainOfThought", &sig)).unwrap();
        assert_eq!(cot.route(), Route::Native);
        assert_eq!(
            cot.as_native().map(NativeModule::name),
            Some("ChainOfThought")
        );
        let named = cot.named_predictors();
        assert_eq!(named.len(), 1);
        assert_eq!(named[0].0, "predict");
        let outputs: Vec<_> = named[0]
            .1
            .signature
            .outputs()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert_eq!(outputs, ["reasoning", "answer"]);
        assert!(cot.as_bridged().is_none());
    }

    #[test]
    fn forcing_the_bridge_without_a_pool_is_a_typed_error() {
        let router = Router::new().force(Route::Bridged);
        assert_eq!(router.forced(), Some(Route::Bridged));
        let err = router.decide("Predict").unwrap_err();
        assert!(
            matches!(&err, RouterError::NoPool { module } if module == "Predict"),
            "{err:?}"
        );
        let err = block_on(router.route("Predict", "question -> answer")).unwrap_err();
        assert!(matches!(err, RouterError::NoPool { .. }), "{err:?}");
        assert!(err.to_string().contains("no pool"), "{err}");
    }

    #[test]
    fn an_unknown_module_without_a_pool_is_a_typed_error() {
        let err =
            block_on(Router::new().route("ProgramOfThought", "question -> answer")).unwrap_err();
        match &err {
            RouterError::NoRoute { module, available } => {
                assert_eq!(module, "ProgramOfThought");
                assert_eq!(available, &["Predict", "ChainOfThought"]);
            }
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("ProgramOfThought"), "{message}");
        assert!(message.contains("Predict, ChainOfThought"), "{message}");
    }

    #[test]
    fn forcing_native_for_a_module_dspex_lacks_names_the_native_ones() {
        let err = Router::new()
            .force(Route::Native)
            .decide("ReAct")
            .unwrap_err();
        match &err {
            RouterError::NoNative { module, available } => {
                assert_eq!(module, "ReAct");
                assert_eq!(available, NATIVE_MODULES);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("Predict, ChainOfThought"), "{err}");
    }

    #[test]
    fn a_bad_signature_on_the_native_route_is_a_signature_error() {
        let err = block_on(Router::new().route("Predict", "question -> ")).unwrap_err();
        assert!(
            matches!(&err, RouterError::Signature { module, .. } if module == "Predict"),
            "{err:?}"
        );
        assert!(matches!(Error::from(err), Error::Signature(_)));
        let err = Error::from(RouterError::NoPool {
            module: "Predict".into(),
        });
        assert!(matches!(err, Error::Step { .. }), "{err:?}");
    }

    #[test]
    fn native_programs_answer_dynamically_and_typed() {
        let lm = ScriptedLM::from_fields([
            json!({"answer": "Paris"}),
            json!({"reasoning": "It is the capital.", "answer": "Paris"}),
            json!({"reasoning": "Still the capital.", "answer": "Paris"}),
        ]);
        let router = Router::new();
        let mut predict = block_on(router.route("Predict", "question -> answer")).unwrap();
        let mut cot = block_on(router.route("ChainOfThought", "question -> answer")).unwrap();
        for routed in [&mut predict, &mut cot] {
            if let RoutedProgram::Native(m) = routed.program_mut() {
                let p = m
                    .predictor_mut()
                    .clone()
                    .with_config(CallConfig::new().lm(lm.clone()));
                *m.predictor_mut() = p;
            }
        }
        let question = Example::new().with("question", "Capital of France?");
        let out = block_on(predict.forward(question.clone())).unwrap();
        assert_eq!(out.get_str("answer"), Some("Paris"));
        let out = block_on(cot.forward(question)).unwrap();
        assert_eq!(out.get_str("reasoning"), Some("It is the capital."));
        assert_eq!(out.get_str("answer"), Some("Paris"));

        #[derive(Serialize)]
        struct Q {
            question: String,
        }
        #[derive(serde::Deserialize)]
        struct A {
            answer: String,
        }
        let typed = cot.typed::<Q, A>();
        assert_eq!(typed.route(), Route::Native);
        assert_eq!(typed.named_predictors().len(), 1);
        let a = block_on(typed.forward(Q {
            question: "Capital of France?".into(),
        }))
        .unwrap();
        assert_eq!(a.answer, "Paris");
        assert_eq!(lm.calls(), 3);
    }

    /// Collects every event's fields as `name=value` strings.
    #[derive(Clone, Default)]
    struct Events(Arc<Mutex<Vec<String>>>);

    struct Fields(String);

    impl tracing::field::Visit for Fields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
            self.0.push_str(&format!("{}={:?} ", field.name(), value));
        }

        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            self.0.push_str(&format!("{}={} ", field.name(), value));
        }
    }

    impl tracing::Subscriber for Events {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if event.metadata().target() == "dspex::bridge" {
                let mut fields = Fields(String::new());
                event.record(&mut fields);
                self.0.lock().unwrap().push(fields.0);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn the_choice_is_traced() {
        let events = Events::default();
        tracing::subscriber::with_default(events.clone(), || {
            // Other tests may have hit these callsites first, with no subscriber (a race that
            // caches "never" for them): recompute with this one in place.
            tracing::callsite::rebuild_interest_cache();
            block_on(async {
                Router::new()
                    .route("ChainOfThought", "question -> answer")
                    .await
                    .unwrap();
                Router::new()
                    .force(Route::Native)
                    .route("Predict", "question -> answer")
                    .await
                    .unwrap();
                Router::new()
                    .route("ProgramOfThought", "question -> answer")
                    .await
                    .unwrap_err();
            });
        });
        let events = events.0.lock().unwrap().clone();
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(events[0].contains("module=ChainOfThought"), "{events:?}");
        assert!(
            events[0].contains("signature=question -> answer"),
            "{events:?}"
        );
        assert!(events[0].contains("route=native"), "{events:?}");
        assert!(
            events[0].contains("reason=native implementation"),
            "{events:?}"
        );
        assert!(events[1].contains("reason=forced"), "{events:?}");
        assert!(events[2].contains("module=ProgramOfThought"), "{events:?}");
        assert!(events[2].contains("error="), "{events:?}");
    }
}
