//! The router: one program type for a module that is native or bridged.
//!
//! [`Router::route`] takes a DSPy module name (`Predict`, `ChainOfThought`, `ReAct`,
//! `ProgramOfThought`, …) and a signature ([`Router::route_with`] also the module's keyword
//! arguments), and returns a [`Routed`] program from [`Example`] to [`Prediction`]: dspex's own
//! implementation when it has one that can be built from that description
//! ([`Router::native_modules`]), else DSPy's, created in the router's [`Pool`] through the
//! bridge.
//!
//! - **When the route is chosen.** At [`route`](Router::route) time: a [`Route`] given to
//!   [`Router::force`] wins; otherwise the router's [`RouteStrategy`] (default
//!   [`PreferNative`]: native when it exists) picks from a [`RouteContext`] without input size
//!   or load. A strategy whose [`per_call`](RouteStrategy::per_call) is true is consulted again
//!   on every call of a module that has both routes (a native implementation and a pool), with
//!   the call's input size and the pool's load; the other side is then created on first use.
//! - **Fallback.** With a [`Fallback`] policy ([`Router::fallback`]), a call that fails on one
//!   route with an error of a class the policy names ([`NativeFailure`] for native → bridged,
//!   [`BridgedFailure`] for bridged → native) is run again on the other route, created lazily
//!   and once per [`Routed`] (with the state last loaded through [`Routed::load_state`]).
//! - **What served a call.** [`Routed::route`] reports the route of the last call,
//!   [`Routed::primary_route`] the route chosen at creation; [`Routed::stats`] and
//!   [`Router::stats`] count calls per route and fallbacks ([`RouteStats`]).
//!
//! Every decision is logged with `tracing` (target `dspex::bridge`, level INFO: module,
//! signature, route, reason). Every call runs in a span `routed call` whose fields
//! `dspex.route` and `dspex.route.fallback_from` say which route served it (and which failed
//! before), with a DEBUG event `served a call` carrying the same fields, an INFO event when a
//! call falls back, and, with the `otel` feature, the counter
//! `dspex.bridge.route.calls` (`dspex_lm::telemetry::metric::DSPEX_BRIDGE_ROUTE_CALLS`).

use super::error::BridgeError;
use super::pool::{AffinityMode, Pool};
use super::program::BridgedModule;
use crate::adapter::AdapterError;
use crate::error::{Error, Result};
use crate::example::{Example, Prediction};
use crate::module::{CallConfig, DynMultiChainComparison, DynPredict, MultiChainError};
use crate::program::{Module, PredictorParams, Program, join_path};
use crate::signature::{DynSignature, FieldSpec, Signature, SignatureError, TypeSpec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::Instrument;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- the native registry ------------------------------------------------------------------------

/// Builds a native module from a signature and keyword arguments.
type Build = fn(DynSignature, &Map<String, Value>) -> Result<NativeModule, RouterError>;

/// A DSPy module dspex implements natively over a run-time signature, and how it is built from
/// a description.
struct NativeEntry {
    /// DSPy's name.
    name: &'static str,
    /// The keyword arguments of DSPy's constructor the native build honours; a description
    /// with any other goes to DSPy.
    kwargs: &'static [&'static str],
    build: Build,
}

/// Every module dspex can build natively from a name, a signature and keyword arguments.
///
/// Not here, on purpose: `BestOfN` and `Refine` wrap a module and take a reward *function*,
/// `ReAct` takes tools (Python callables), `ProgramOfThought` and `CodeAct` run generated code:
/// none of them can be built honestly from a name and a signature, so they go to DSPy.
const REGISTRY: [NativeEntry; 3] = [
    NativeEntry {
        name: "Predict",
        kwargs: &[],
        build: |signature, _| Ok(NativeModule::Predict(DynPredict::new(signature))),
    },
    NativeEntry {
        name: "ChainOfThought",
        kwargs: &[],
        build: |signature, _| {
            let signature = signature
                .prepend(FieldSpec::output("reasoning", TypeSpec::Str))
                .unwrap_or(signature);
            Ok(NativeModule::ChainOfThought(DynPredict::new(signature)))
        },
    },
    NativeEntry {
        name: "MultiChainComparison",
        kwargs: &["M", "temperature"],
        build: build_multi_chain,
    },
];

/// The DSPy module names dspex implements natively over a run-time signature, in the order
/// [`RouterError::NoNative`] lists them: derived from the router's registry (the same list as
/// [`Router::native_modules`]).
pub const NATIVE_MODULES: &[&str] = &{
    let mut names = [""; REGISTRY.len()];
    let mut i = 0;
    while i < REGISTRY.len() {
        names[i] = REGISTRY[i].name;
        i += 1;
    }
    names
};

fn entry(module: &str) -> Option<&'static NativeEntry> {
    REGISTRY.iter().find(|e| e.name == module)
}

/// The native entry for `module` when it can take every one of `kwargs`.
fn native_for(module: &str, kwargs: &Map<String, Value>) -> Option<&'static NativeEntry> {
    entry(module).filter(|e| kwargs.keys().all(|k| e.kwargs.contains(&k.as_str())))
}

fn build_multi_chain(
    signature: DynSignature,
    kwargs: &Map<String, Value>,
) -> Result<NativeModule, RouterError> {
    let module = "MultiChainComparison";
    let bad = |key: &str, message: &str| RouterError::BadKwarg {
        module: module.into(),
        key: key.into(),
        message: message.into(),
    };
    let m = match kwargs.get("M") {
        None | Some(Value::Null) => 3,
        Some(v) => v
            .as_u64()
            .filter(|m| *m >= 1)
            .and_then(|m| usize::try_from(m).ok())
            .ok_or_else(|| bad("M", "must be a positive integer"))?,
    };
    let text = signature.to_string();
    let mut mcc = DynMultiChainComparison::new(&signature, m).map_err(|e| match e {
        MultiChainError::Signature(source) => RouterError::Signature {
            module: module.into(),
            signature: text,
            source,
        },
        other => RouterError::NativeBuild {
            module: module.into(),
            message: other.to_string(),
        },
    })?;
    match kwargs.get("temperature") {
        None | Some(Value::Null) => {}
        Some(v) => {
            let t = v
                .as_f64()
                .filter(|t| t.is_finite() && *t >= 0.0)
                .ok_or_else(|| bad("temperature", "must be a non-negative number"))?;
            mcc = mcc.with_config(CallConfig::new().temperature(t));
        }
    }
    Ok(NativeModule::MultiChainComparison(mcc))
}

/// Where a routed program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// dspex's own implementation, in this process.
    Native,
    /// DSPy's implementation, in a worker of the pool.
    Bridged,
}

impl Route {
    /// The other route.
    pub fn other(self) -> Route {
        match self {
            Route::Native => Route::Bridged,
            Route::Bridged => Route::Native,
        }
    }

    /// `native` or `bridged`, as traced and in the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Native => "native",
            Route::Bridged => "bridged",
        }
    }

    fn code(self) -> u8 {
        match self {
            Route::Native => 1,
            Route::Bridged => 2,
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why routing failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// The native route was forced, but dspex has no native implementation of the module (or
    /// not one that takes the keyword arguments given).
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
    /// A keyword argument of a native module has a value it cannot take.
    #[error("`{module}`: keyword argument `{key}` {message}")]
    BadKwarg {
        /// The module asked for.
        module: String,
        /// The keyword argument.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// The native module cannot be built over this signature (a MultiChainComparison over a
    /// signature without outputs, …).
    #[error("native `{module}` cannot be built: {message}")]
    NativeBuild {
        /// The module asked for.
        module: String,
        /// What was wrong.
        message: String,
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

// ---- strategies ---------------------------------------------------------------------------------

/// A bridge pool's load when a strategy is consulted: from [`Pool::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolLoad {
    /// Workers running a call.
    pub busy: usize,
    /// Live workers.
    pub size: usize,
    /// Calls waiting for a worker.
    pub queue_depth: usize,
}

/// What a [`RouteStrategy`] decides from.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RouteContext<'a> {
    /// DSPy's module name.
    pub module: &'a str,
    /// The signature, as a string.
    pub signature: &'a str,
    /// Whether dspex can build the module natively from this description (name and keyword
    /// arguments).
    pub native: bool,
    /// Whether the router has a pool (so the bridged route exists).
    pub pool: bool,
    /// Bytes of the call's inputs serialized as JSON (the object sent to a worker); `None` when
    /// consulted at [`Router::route`] time.
    pub input_bytes: Option<usize>,
    /// The pool's load; `None` at [`Router::route`] time or without a pool.
    pub load: Option<PoolLoad>,
}

/// Decides the route of a module (by name, by input size, by load, …).
///
/// Consulted by [`Router::route`] unless a route is forced, with `input_bytes` and `load` unset;
/// when [`per_call`](Self::per_call) is true, consulted again before every call of a
/// [`Routed`] that has both routes (a native implementation and a pool) and was not built by a
/// router with a forced route, with the call's input size and the pool's load (a
/// [`Pool::stats`] snapshot per call). A choice the module does not have (native where there is none,
/// bridged without a pool) is overridden by the route that exists, and traced with the reason
/// `strategy's choice unavailable`.
///
/// ```
/// use dspex_runtime::bridge::{Route, RouteContext, RouteStrategy, Router};
///
/// /// Large inputs go to DSPy's workers, so they don't load this process.
/// #[derive(Debug)]
/// struct BySize(usize);
///
/// impl RouteStrategy for BySize {
///     fn choose(&self, ctx: &RouteContext<'_>) -> Route {
///         match ctx.input_bytes {
///             Some(n) if n > self.0 => Route::Bridged,
///             _ if ctx.native => Route::Native,
///             _ => Route::Bridged,
///         }
///     }
///     fn per_call(&self) -> bool {
///         true
///     }
/// }
///
/// let router = Router::new().strategy(BySize(4096));
/// assert_eq!(router.decide("Predict").unwrap(), Route::Native);
/// ```
pub trait RouteStrategy: Send + Sync + fmt::Debug {
    /// The route for the module and call described by `ctx`.
    fn choose(&self, ctx: &RouteContext<'_>) -> Route;

    /// Whether to be consulted before every call too (default: only at
    /// [`Router::route`] time).
    fn per_call(&self) -> bool {
        false
    }
}

/// The default strategy: dspex's implementation when it has one for the description, else
/// DSPy's.
#[derive(Debug, Clone, Copy, Default)]
pub struct PreferNative;

impl RouteStrategy for PreferNative {
    fn choose(&self, ctx: &RouteContext<'_>) -> Route {
        if ctx.native {
            Route::Native
        } else {
            Route::Bridged
        }
    }
}

// ---- fallback -----------------------------------------------------------------------------------

/// A class of native failure after which a call may be run again through the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NativeFailure {
    /// The LM's answer could not be parsed (after the fallback adapter too, where there is one):
    /// [`Error::parse_failures`] is not empty.
    Parse,
    /// The prompt could not be formatted (a type or feature the native adapter does not
    /// support: [`AdapterError::Format`]), or the signature was refused ([`Error::Signature`]).
    Unsupported,
    /// dspex has no native module for the description: with this class, forcing the native
    /// route ([`Router::force`]) routes such a module through the bridge instead of failing
    /// with [`RouterError::NoNative`]. It is decided at [`Router::route`] time, never after a
    /// call.
    NoNative,
}

impl NativeFailure {
    /// Every class.
    pub const ALL: [NativeFailure; 3] = [
        NativeFailure::Parse,
        NativeFailure::Unsupported,
        NativeFailure::NoNative,
    ];

    /// Whether a native call's `error` is of this class.
    pub fn matches(self, error: &Error) -> bool {
        match self {
            NativeFailure::Parse => !error.parse_failures().is_empty(),
            NativeFailure::Unsupported => matches!(
                error,
                Error::Adapter(AdapterError::Format { .. }) | Error::Signature(_)
            ),
            NativeFailure::NoNative => false,
        }
    }
}

/// A class of bridged failure after which a call may be run again natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BridgedFailure {
    /// The worker died under the call: [`BridgeError::WorkerCrashed`],
    /// [`SessionLost`](BridgeError::SessionLost),
    /// [`CpuLimitExceeded`](BridgeError::CpuLimitExceeded).
    WorkerCrashed,
    /// The pool could not take the call: [`PoolSaturated`](BridgeError::PoolSaturated),
    /// [`CheckoutTimeout`](BridgeError::CheckoutTimeout),
    /// [`BreakerOpen`](BridgeError::BreakerOpen),
    /// [`CallBreakerOpen`](BridgeError::CallBreakerOpen),
    /// [`SessionBusy`](BridgeError::SessionBusy), [`ShutDown`](BridgeError::ShutDown).
    Unavailable,
    /// The call timed out: [`BridgeError::Timeout`].
    Timeout,
    /// Python raised: [`BridgeError::Remote`] (DSPy could not parse the answer, …).
    Remote,
}

impl BridgedFailure {
    /// Every class.
    pub const ALL: [BridgedFailure; 4] = [
        BridgedFailure::WorkerCrashed,
        BridgedFailure::Unavailable,
        BridgedFailure::Timeout,
        BridgedFailure::Remote,
    ];

    /// Whether a bridged call's `error` is of this class.
    pub fn matches(self, error: &Error) -> bool {
        let Error::Bridge(error) = error else {
            return false;
        };
        match self {
            BridgedFailure::WorkerCrashed => matches!(
                error,
                BridgeError::WorkerCrashed { .. }
                    | BridgeError::SessionLost { .. }
                    | BridgeError::CpuLimitExceeded { .. }
            ),
            BridgedFailure::Unavailable => matches!(
                error,
                BridgeError::PoolSaturated { .. }
                    | BridgeError::CheckoutTimeout { .. }
                    | BridgeError::BreakerOpen { .. }
                    | BridgeError::CallBreakerOpen { .. }
                    | BridgeError::SessionBusy { .. }
                    | BridgeError::ShutDown
            ),
            BridgedFailure::Timeout => matches!(error, BridgeError::Timeout { .. }),
            BridgedFailure::Remote => matches!(error, BridgeError::Remote { .. }),
        }
    }
}

/// When a call that failed on one route is run again on the other ([`Router::fallback`]).
///
/// ```
/// use dspex_runtime::bridge::{BridgedFailure, Fallback, NativeFailure, Router};
///
/// let router = Router::new().fallback(
///     Fallback::none()
///         .to_bridged_on(NativeFailure::Parse)
///         .to_native_on(BridgedFailure::Unavailable),
/// );
/// assert!(router.fallback_policy().to_bridged().contains(&NativeFailure::Parse));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fallback {
    to_bridged: Vec<NativeFailure>,
    to_native: Vec<BridgedFailure>,
}

impl Fallback {
    /// No fallback (the default).
    pub fn none() -> Self {
        Fallback::default()
    }

    /// Every class, both ways.
    pub fn both_ways() -> Self {
        Fallback {
            to_bridged: NativeFailure::ALL.to_vec(),
            to_native: BridgedFailure::ALL.to_vec(),
        }
    }

    /// Also native → bridged on `class`.
    #[must_use]
    pub fn to_bridged_on(mut self, class: NativeFailure) -> Self {
        if !self.to_bridged.contains(&class) {
            self.to_bridged.push(class);
        }
        self
    }

    /// Also bridged → native on `class`.
    #[must_use]
    pub fn to_native_on(mut self, class: BridgedFailure) -> Self {
        if !self.to_native.contains(&class) {
            self.to_native.push(class);
        }
        self
    }

    /// The native failures that fall back to the bridge.
    pub fn to_bridged(&self) -> &[NativeFailure] {
        &self.to_bridged
    }

    /// The bridged failures that fall back to the native route.
    pub fn to_native(&self) -> &[BridgedFailure] {
        &self.to_native
    }

    /// Whether a call that failed on `route` with `error` falls back to the other route.
    pub fn covers(&self, route: Route, error: &Error) -> bool {
        match route {
            Route::Native => self.to_bridged.iter().any(|c| c.matches(error)),
            Route::Bridged => self.to_native.iter().any(|c| c.matches(error)),
        }
    }
}

// ---- counters -----------------------------------------------------------------------------------

/// Calls of routed programs, by the route that served them ([`Routed::stats`],
/// [`Router::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RouteStats {
    /// Calls answered by the native route (after a fallback or not).
    pub native: u64,
    /// Calls answered by the bridged route (after a fallback or not).
    pub bridged: u64,
    /// Calls that failed natively and were run again through the bridge.
    pub fallbacks_to_bridged: u64,
    /// Calls that failed through the bridge and were run again natively.
    pub fallbacks_to_native: u64,
    /// Calls that failed (on their last route).
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    native: AtomicU64,
    bridged: AtomicU64,
    to_bridged: AtomicU64,
    to_native: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> RouteStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RouteStats {
            native: get(&self.native),
            bridged: get(&self.bridged),
            fallbacks_to_bridged: get(&self.to_bridged),
            fallbacks_to_native: get(&self.to_native),
            failed: get(&self.failed),
        }
    }

    fn served(&self, route: Route) {
        match route {
            Route::Native => &self.native,
            Route::Bridged => &self.bridged,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn fell_back(&self, from: Route) {
        match from {
            Route::Native => &self.to_bridged,
            Route::Bridged => &self.to_native,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
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

    pub(crate) fn parse(&self) -> Result<DynSignature, SignatureError> {
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

/// Chooses, per module, between dspex's implementation and DSPy's through the bridge.
///
/// Without a pool ([`Router::new`]) only native modules route; with one
/// ([`Router::with_pool`]) every other description goes to DSPy (`dspy.<name>(signature,
/// **kwargs)`, created in a new strict-queue session, as [`BridgedModule::create`]).
/// [`force`](Router::force) pins the route, [`strategy`](Router::strategy) decides it otherwise
/// ([`PreferNative`] by default), [`fallback`](Router::fallback) re-runs failed calls on the
/// other route (see the [bridge module docs](crate::bridge)). Cloning is cheap (the pool, the strategy and the
/// counters are shared with the clone).
///
/// ```
/// use dspex_runtime::bridge::{Route, Router};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let router = Router::new();
/// let cot = router.route("ChainOfThought", "question -> answer").await?;
/// assert_eq!(cot.route(), Route::Native);
/// assert!(router.route("ProgramOfThought", "question -> answer").await.is_err()); // no pool
/// assert!(Router::native_modules().contains(&"MultiChainComparison"));
/// # Ok::<(), dspex_runtime::bridge::RouterError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Router {
    pool: Option<Pool>,
    force: Option<Route>,
    timeout: Option<Duration>,
    strategy: Arc<dyn RouteStrategy>,
    fallback: Fallback,
    counters: Arc<Counters>,
}

impl Default for Router {
    fn default() -> Self {
        Router {
            pool: None,
            force: None,
            timeout: None,
            strategy: Arc::new(PreferNative),
            fallback: Fallback::none(),
            counters: Arc::default(),
        }
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("pool", &self.pool.is_some())
            .field("force", &self.force)
            .field("timeout", &self.timeout)
            .field("strategy", &self.strategy)
            .field("fallback", &self.fallback)
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

    /// The same router, always choosing `route` (an error when it cannot, unless the fallback
    /// policy has [`NativeFailure::NoNative`]).
    #[must_use]
    pub fn force(mut self, route: Route) -> Self {
        self.force = Some(route);
        self
    }

    /// The same router, choosing by its strategy again (undoes [`force`](Self::force)).
    #[must_use]
    pub fn auto(mut self) -> Self {
        self.force = None;
        self
    }

    /// The same router, deciding routes with `strategy` (default [`PreferNative`]).
    #[must_use]
    pub fn strategy(mut self, strategy: impl RouteStrategy + 'static) -> Self {
        self.strategy = Arc::new(strategy);
        self
    }

    /// The same router, with this fallback policy for the programs it builds (default
    /// [`Fallback::none`]).
    #[must_use]
    pub fn fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
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

    /// The fallback policy.
    pub fn fallback_policy(&self) -> &Fallback {
        &self.fallback
    }

    /// Calls served by the programs this router (or a clone of it) built, by route, and their
    /// fallbacks.
    pub fn stats(&self) -> RouteStats {
        self.counters.snapshot()
    }

    /// The DSPy module names dspex builds natively from a description ([`NATIVE_MODULES`]):
    /// `Predict`, `ChainOfThought`, `MultiChainComparison` (keyword arguments `M` and
    /// `temperature`).
    pub fn native_modules() -> &'static [&'static str] {
        NATIVE_MODULES
    }

    /// The keyword arguments of DSPy's constructor that the native `module` honours; `None`
    /// when dspex has no native `module`. A description with other keyword arguments goes to
    /// DSPy.
    pub fn native_kwargs(module: &str) -> Option<&'static [&'static str]> {
        entry(module).map(|e| e.kwargs)
    }

    /// Whether dspex implements `module` natively (a name of [`NATIVE_MODULES`]).
    pub fn has_native(module: &str) -> bool {
        entry(module).is_some()
    }

    /// The route [`route`](Self::route) would take for `module` without keyword arguments,
    /// without building anything (a strategy consulted here sees an empty signature).
    ///
    /// # Errors
    ///
    /// [`RouterError::NoNative`] when the native route is forced for a module dspex lacks,
    /// [`RouterError::NoPool`] when the bridged route is forced without a pool, and
    /// [`RouterError::NoRoute`] when a module dspex lacks is asked for without a pool.
    pub fn decide(&self, module: &str) -> Result<Route, RouterError> {
        self.decide_why(module, "", &Map::new())
            .map(|(route, _)| route)
    }

    fn decide_why(
        &self,
        module: &str,
        signature: &str,
        kwargs: &Map<String, Value>,
    ) -> Result<(Route, &'static str), RouterError> {
        let native = native_for(module, kwargs).is_some();
        let pool = self.pool.is_some();
        match self.force {
            Some(Route::Native) if native => Ok((Route::Native, "forced")),
            Some(Route::Native)
                if pool && self.fallback.to_bridged.contains(&NativeFailure::NoNative) =>
            {
                Ok((Route::Bridged, "forced native, none exists: fallback"))
            }
            Some(Route::Native) => Err(RouterError::NoNative {
                module: module.to_string(),
                available: NATIVE_MODULES.to_vec(),
            }),
            Some(Route::Bridged) if pool => Ok((Route::Bridged, "forced")),
            Some(Route::Bridged) => Err(RouterError::NoPool {
                module: module.to_string(),
            }),
            None if !native && !pool => Err(RouterError::NoRoute {
                module: module.to_string(),
                available: NATIVE_MODULES.to_vec(),
            }),
            None => {
                let ctx = RouteContext {
                    module,
                    signature,
                    native,
                    pool,
                    input_bytes: None,
                    load: None,
                };
                Ok(match self.strategy.choose(&ctx) {
                    Route::Native if native => (Route::Native, "native implementation"),
                    Route::Bridged if pool && !native => {
                        (Route::Bridged, "no native implementation")
                    }
                    Route::Bridged if pool => (Route::Bridged, "strategy"),
                    Route::Native => (Route::Bridged, "strategy's choice unavailable"),
                    Route::Bridged => (Route::Native, "strategy's choice unavailable"),
                })
            }
        }
    }

    /// Builds `module` over `signature` on the route [`decide`](Self::decide) picks, and logs
    /// the choice. The same as [`route_with`](Self::route_with) without keyword arguments.
    ///
    /// # Errors
    ///
    /// Those of [`route_with`](Self::route_with).
    pub async fn route(
        &self,
        module: &str,
        signature: impl Into<SignatureArg>,
    ) -> Result<Routed, RouterError> {
        self.route_with(module, signature, Map::new()).await
    }

    /// Builds `module` over `signature` with DSPy's constructor keyword arguments `kwargs`
    /// (`{"M": 3}` for a MultiChainComparison): natively when dspex's module takes every one of
    /// them ([`native_kwargs`](Self::native_kwargs)) and the strategy agrees, else
    /// `dspy.<module>(signature, **kwargs)` in the pool.
    ///
    /// # Errors
    ///
    /// Those of [`decide`](Self::decide); [`RouterError::Signature`] when the native route gets
    /// a signature that does not parse; [`RouterError::BadKwarg`] /
    /// [`RouterError::NativeBuild`] when the native module cannot take the description;
    /// [`RouterError::Bridge`] when DSPy cannot create the module (an unknown name, a module
    /// that needs Python objects, such as `ReAct`'s tools, given as `module:function` names).
    pub async fn route_with(
        &self,
        module: &str,
        signature: impl Into<SignatureArg>,
        kwargs: Map<String, Value>,
    ) -> Result<Routed, RouterError> {
        let signature = signature.into();
        let text = signature.text();
        let (route, reason) = match self.decide_why(module, &text, &kwargs) {
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
        let native = native_for(module, &kwargs).is_some();
        let plan = Arc::new(Plan {
            module: module.to_string(),
            signature,
            kwargs,
            pool: self.pool.clone(),
            timeout: self.timeout,
            native,
            per_call: self.force.is_none()
                && native
                && self.pool.is_some()
                && self.strategy.per_call(),
            strategy: Arc::clone(&self.strategy),
            fallback: self.fallback.clone(),
            router: Arc::clone(&self.counters),
        });
        let program = plan.build(route).await?;
        Ok(Routed {
            signature: text,
            primary: route,
            program,
            other: tokio::sync::OnceCell::new(),
            plan,
            last: AtomicU8::new(0),
            counters: Counters::default(),
            state: Mutex::new(None),
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

/// What a [`Routed`] needs to build either side and decide each call.
struct Plan {
    module: String,
    signature: SignatureArg,
    kwargs: Map<String, Value>,
    pool: Option<Pool>,
    timeout: Option<Duration>,
    /// Whether dspex can build the description natively.
    native: bool,
    /// Whether the strategy decides each call.
    per_call: bool,
    strategy: Arc<dyn RouteStrategy>,
    fallback: Fallback,
    router: Arc<Counters>,
}

impl Plan {
    fn has(&self, route: Route) -> bool {
        match route {
            Route::Native => self.native,
            Route::Bridged => self.pool.is_some(),
        }
    }

    async fn build(&self, route: Route) -> Result<RoutedProgram, RouterError> {
        let module = self.module.as_str();
        match route {
            Route::Native => {
                let Some(entry) = native_for(module, &self.kwargs) else {
                    return Err(RouterError::NoNative {
                        module: module.to_string(),
                        available: NATIVE_MODULES.to_vec(),
                    });
                };
                let parsed = self
                    .signature
                    .parse()
                    .map_err(|source| RouterError::Signature {
                        module: module.to_string(),
                        signature: self.signature.text(),
                        source,
                    })?;
                Ok(RoutedProgram::Native((entry.build)(parsed, &self.kwargs)?))
            }
            Route::Bridged => {
                let Some(pool) = &self.pool else {
                    return Err(RouterError::NoPool {
                        module: module.to_string(),
                    });
                };
                let session = pool.session(AffinityMode::StrictQueue);
                let mut bridged = BridgedModule::create_in(
                    &session,
                    module,
                    self.signature.clone(),
                    self.kwargs.clone(),
                )
                .await?
                .with_recovery(true);
                if let Some(timeout) = self.timeout {
                    bridged = bridged.with_timeout(timeout);
                }
                Ok(RoutedProgram::Bridged(bridged))
            }
        }
    }
}

/// A module dspex implements natively, over a run-time signature (see [`NATIVE_MODULES`]).
///
/// Its predictors are visible to optimizers through [`Module`], named as DSPy names them
/// (`self` for a Predict, `predict` inside a ChainOfThought or a MultiChainComparison), so its
/// state loads into the DSPy module of the same name and back.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NativeModule {
    /// [`DynPredict`] over the signature (DSPy's `Predict`).
    Predict(DynPredict),
    /// [`DynPredict`] over the signature with a `reasoning: str` output first, as
    /// [`ChainOfThought`](crate::module::ChainOfThought) builds it (DSPy's `ChainOfThought`).
    /// A signature that already has a `reasoning` output keeps it as it is.
    ChainOfThought(DynPredict),
    /// [`DynMultiChainComparison`] over the signature (DSPy's `MultiChainComparison`): its
    /// input example carries the M earlier attempts in a `completions` field (a list of
    /// objects with `reasoning` or `rationale` and the answer field), as DSPy's `forward`
    /// takes them.
    MultiChainComparison(DynMultiChainComparison),
}

impl NativeModule {
    /// DSPy's name for the module (`Predict`, `ChainOfThought`, `MultiChainComparison`).
    pub fn name(&self) -> &'static str {
        match self {
            NativeModule::Predict(_) => "Predict",
            NativeModule::ChainOfThought(_) => "ChainOfThought",
            NativeModule::MultiChainComparison(_) => "MultiChainComparison",
        }
    }

    /// The predictor the module calls.
    pub fn predictor(&self) -> &DynPredict {
        match self {
            NativeModule::Predict(p) | NativeModule::ChainOfThought(p) => p,
            NativeModule::MultiChainComparison(m) => m.predictor(),
        }
    }

    /// The predictor the module calls, to change its config, instructions or demos.
    pub fn predictor_mut(&mut self) -> &mut DynPredict {
        match self {
            NativeModule::Predict(p) | NativeModule::ChainOfThought(p) => p,
            NativeModule::MultiChainComparison(m) => m.predictor_mut(),
        }
    }

    /// Sets the module's call config (its LM, adapter, sampling). A MultiChainComparison then
    /// samples at DSPy's 0.7 unless `config` sets a temperature, as
    /// [`DynMultiChainComparison::with_config`] does (a `temperature` keyword argument is
    /// replaced too).
    pub fn set_config(&mut self, config: CallConfig) {
        match self {
            NativeModule::Predict(p) | NativeModule::ChainOfThought(p) => {
                *p = p.clone().with_config(config);
            }
            NativeModule::MultiChainComparison(m) => *m = m.clone().with_config(config),
        }
    }
}

/// The `completions` of a native MultiChainComparison's input, and the other fields.
fn split_completions(input: Example) -> Result<(Vec<Map<String, Value>>, Example)> {
    let mut fields = input.into_map();
    let missing = || {
        Error::step(
            "MultiChainComparison",
            "the input needs `completions`: a list of the M earlier attempts, each an object with `reasoning` (or `rationale`) and the answer field",
        )
    };
    let Some(Value::Array(list)) = fields.remove("completions") else {
        return Err(missing());
    };
    let completions = list
        .into_iter()
        .map(|c| match c {
            Value::Object(m) => Ok(m),
            _ => Err(missing()),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((completions, Example::from_map(fields)))
}

impl Program for NativeModule {
    type Input = Example;
    type Output = Prediction;

    async fn forward(&self, input: Example) -> Result<Prediction> {
        match self {
            NativeModule::Predict(p) | NativeModule::ChainOfThought(p) => p.call(&input).await,
            NativeModule::MultiChainComparison(m) => {
                let (completions, inputs) = split_completions(input)?;
                m.call(&completions, &inputs).await
            }
        }
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
            NativeModule::MultiChainComparison(m) => {
                m.predictor()
                    .visit_predictors(&join_path(path, "predict"), visit);
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
            NativeModule::MultiChainComparison(m) => {
                m.predictor_mut()
                    .visit_predictors_mut(&join_path(path, "predict"), visit);
            }
        }
    }
}

/// The dynamic DSPy module behind a [`Routed`] program: input fields in, output fields out.
pub type DynBridged = BridgedModule<Map<String, Value>, Map<String, Value>>;

/// The implementation behind a [`Routed`] program.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per routed module, moved rarely; boxing would change the public variant"
)]
pub enum RoutedProgram {
    /// dspex's own.
    Native(NativeModule),
    /// DSPy's, in a worker of the pool.
    Bridged(DynBridged),
}

impl RoutedProgram {
    /// Its route.
    pub fn route(&self) -> Route {
        match self {
            RoutedProgram::Native(_) => Route::Native,
            RoutedProgram::Bridged(_) => Route::Bridged,
        }
    }

    async fn call(&self, input: Example) -> Result<Prediction> {
        match self {
            RoutedProgram::Native(m) => m.forward(input).await,
            RoutedProgram::Bridged(m) => {
                let outputs = m.call(bridged_inputs(&input)).await?;
                Ok(Prediction::new(outputs))
            }
        }
    }

    async fn save_state(&self) -> Result<Value> {
        match self {
            RoutedProgram::Native(m) => Ok(m.dump_state()),
            RoutedProgram::Bridged(m) => Ok(m.save_state().await?),
        }
    }

    async fn load_state(&mut self, state: &Value) -> Result<()> {
        match self {
            RoutedProgram::Native(m) => Ok(Module::load_state(m, state)?),
            RoutedProgram::Bridged(m) => Ok(m.load_state(state.clone()).await?),
        }
    }
}

/// A module that is native or bridged behind one type: a [`Program`] from [`Example`] to
/// [`Prediction`], built by [`Router::route`].
///
/// Both routes take the same inputs and answer with the same output fields (a bridged
/// ChainOfThought's `reasoning` included). A bridged module is sent the example's inputs when
/// its input keys are set, else all of its visible fields; its prediction has one completion.
///
/// With a fallback policy or a per-call strategy, a call may run on the other route than the
/// one chosen at creation ([`primary_route`](Self::primary_route)); that side is created on
/// first use, once, with the state last given to [`load_state`](Self::load_state), and
/// [`route`](Self::route) reports the route that served the last call. A native side created
/// that way calls the LM of the settings (a config set on the primary side through
/// [`program_mut`](Self::program_mut) is not copied).
///
/// As a [`Module`], a program whose primary route is native shows its predictors to dspex's
/// optimizers; a bridged one shows none (its predictors live in Python: tune it with
/// [`BridgedModule::optimize`] through [`program`](Self::program), or save and load its state
/// with [`save_state`](Self::save_state) / [`load_state`](Self::load_state)).
pub struct Routed {
    signature: String,
    primary: Route,
    program: RoutedProgram,
    other: tokio::sync::OnceCell<RoutedProgram>,
    plan: Arc<Plan>,
    /// The route of the last call: 0 none yet, else [`Route::code`].
    last: AtomicU8,
    counters: Counters,
    /// The state last loaded, for a side created later.
    state: Mutex<Option<Value>>,
}

impl fmt::Debug for Routed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routed")
            .field("module", &self.plan.module)
            .field("signature", &self.signature)
            .field("primary", &self.primary)
            .field("program", &self.program)
            .field("other", &self.other.get())
            .field("stats", &self.counters.snapshot())
            .finish()
    }
}

impl Routed {
    /// The route that served the last call (the one that answered, after a fallback), or the
    /// [primary route](Self::primary_route) before any call.
    pub fn route(&self) -> Route {
        match self.last.load(Ordering::Relaxed) {
            1 => Route::Native,
            2 => Route::Bridged,
            _ => self.primary,
        }
    }

    /// The route chosen when the program was built (where [`program`](Self::program) runs).
    pub fn primary_route(&self) -> Route {
        self.primary
    }

    /// This program's calls by route, and its fallbacks.
    pub fn stats(&self) -> RouteStats {
        self.counters.snapshot()
    }

    /// The module name it was routed for.
    pub fn module(&self) -> &str {
        &self.plan.module
    }

    /// The signature it was built over, as a string.
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// The keyword arguments it was built with.
    pub fn kwargs(&self) -> &Map<String, Value> {
        &self.plan.kwargs
    }

    /// The implementation on the primary route.
    pub fn program(&self) -> &RoutedProgram {
        &self.program
    }

    /// The implementation on the primary route, mutable.
    pub fn program_mut(&mut self) -> &mut RoutedProgram {
        &mut self.program
    }

    /// The implementation on the primary route, owned.
    pub fn into_program(self) -> RoutedProgram {
        self.program
    }

    /// The implementation on the other route, once a fallback or the strategy created it.
    pub fn secondary(&self) -> Option<&RoutedProgram> {
        self.other.get()
    }

    /// The native module, if the primary route is native.
    pub fn as_native(&self) -> Option<&NativeModule> {
        match &self.program {
            RoutedProgram::Native(m) => Some(m),
            RoutedProgram::Bridged(_) => None,
        }
    }

    /// The bridged module, if the primary route is bridged.
    pub fn as_bridged(&self) -> Option<&DynBridged> {
        match &self.program {
            RoutedProgram::Native(_) => None,
            RoutedProgram::Bridged(m) => Some(m),
        }
    }

    /// The module's state in DSPy's format (`dump_state()`), from the primary route.
    ///
    /// # Errors
    ///
    /// For a bridged module, what [`BridgedModule::save_state`] fails with.
    pub async fn save_state(&self) -> Result<Value> {
        self.program.save_state().await
    }

    /// Loads a state in DSPy's format (DSPy's `dump_state()` or [`save_state`](Self::save_state))
    /// into the primary route, the other one if it exists, and keeps it for the other one if it
    /// is created later.
    ///
    /// # Errors
    ///
    /// A [`StateError`](crate::program::StateError) for a native module whose predictors the
    /// state lacks; what [`BridgedModule::load_state`] fails with for a bridged one.
    pub async fn load_state(&mut self, state: Value) -> Result<()> {
        self.program.load_state(&state).await?;
        if let Some(other) = self.other.get_mut() {
            other.load_state(&state).await?;
        }
        *lock(&self.state) = Some(state);
        Ok(())
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

    /// The route for this call: the strategy's when it decides per call, else the primary.
    fn route_for_call(&self, input: &Example) -> Route {
        if !self.plan.per_call {
            return self.primary;
        }
        let input_bytes = serde_json::to_vec(&bridged_inputs(input))
            .map(|b| b.len())
            .ok();
        let load = self.plan.pool.as_ref().map(|pool| {
            let stats = pool.stats();
            PoolLoad {
                busy: stats.busy,
                size: stats.workers.len(),
                queue_depth: stats.queue_depth,
            }
        });
        let ctx = RouteContext {
            module: &self.plan.module,
            signature: &self.signature,
            native: self.plan.native,
            pool: self.plan.pool.is_some(),
            input_bytes,
            load,
        };
        let route = self.plan.strategy.choose(&ctx);
        if self.plan.has(route) {
            route
        } else {
            self.primary
        }
    }

    /// The implementation on `route`, created on first use when it is not the primary.
    async fn side(&self, route: Route) -> Result<&RoutedProgram> {
        if route == self.primary {
            return Ok(&self.program);
        }
        self.other
            .get_or_try_init(|| {
                Box::pin(async {
                    let mut program = self.plan.build(route).await?;
                    let state = lock(&self.state).clone();
                    if let Some(state) = state {
                        program.load_state(&state).await?;
                    }
                    tracing::info!(
                        target: "dspex::bridge",
                        module = %self.plan.module,
                        route = %route,
                        "created the other route of a routed module"
                    );
                    Ok::<_, Error>(program)
                })
            })
            .await
    }

    async fn run(&self, route: Route, input: Example) -> Result<Prediction> {
        self.side(route).await?.call(input).await
    }

    fn served(&self, route: Route, fallback_from: Option<Route>) {
        self.last.store(route.code(), Ordering::Relaxed);
        self.counters.served(route);
        self.plan.router.served(route);
        let span = tracing::Span::current();
        span.record("dspex.route", route.as_str());
        if let Some(from) = fallback_from {
            span.record("dspex.route.fallback_from", from.as_str());
        }
        tracing::debug!(
            target: "dspex::bridge",
            module = %self.plan.module,
            dspex.route = route.as_str(),
            dspex.route.fallback_from = fallback_from.map(Route::as_str),
            "served a call"
        );
        #[cfg(feature = "otel")]
        dspex_lm::telemetry::record_route(route.as_str(), fallback_from.map(Route::as_str));
    }

    fn failed(&self) {
        self.counters.failed();
        self.plan.router.failed();
    }

    async fn forward_routed(&self, input: Example) -> Result<Prediction> {
        let first = self.route_for_call(&input);
        let error = match self.run(first, input.clone()).await {
            Ok(prediction) => {
                self.served(first, None);
                return Ok(prediction);
            }
            Err(e) => e,
        };
        let second = first.other();
        if !(self.plan.has(second) && self.plan.fallback.covers(first, &error)) {
            self.failed();
            return Err(error);
        }
        tracing::info!(
            target: "dspex::bridge",
            module = %self.plan.module,
            dspex.route = second.as_str(),
            dspex.route.fallback_from = first.as_str(),
            error = %error,
            "the call failed on its route: falling back to the other"
        );
        self.counters.fell_back(first);
        self.plan.router.fell_back(first);
        match self.run(second, input).await {
            Ok(prediction) => {
                self.served(second, Some(first));
                Ok(prediction)
            }
            Err(again) => {
                tracing::warn!(
                    target: "dspex::bridge",
                    module = %self.plan.module,
                    dspex.route = second.as_str(),
                    dspex.route.fallback_from = first.as_str(),
                    error = %again,
                    "the fallback failed too; returning the first error"
                );
                self.failed();
                Err(error)
            }
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
        let span = tracing::info_span!(
            target: "dspex::bridge",
            "routed call",
            module = %self.plan.module,
            dspex.route = tracing::field::Empty,
            dspex.route.fallback_from = tracing::field::Empty,
        );
        // Boxed: both routes' futures (and the lazy creation of the other side) live in it,
        // too large to keep inline in every caller's future.
        Box::pin(self.forward_routed(input)).instrument(span).await
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
    ///
    /// A stream runs on the [primary route](Self::primary_route): neither the per-call
    /// [`RouteStrategy`] nor the [`Fallback`] policy applies (a stream's first chunks may already
    /// have reached the caller when it fails). It is counted as served by that route when it
    /// starts.
    pub fn stream(&self, input: &Example) -> crate::module::FieldStream<Prediction> {
        use crate::module::{CallConfig, StreamItem, StreamOptions};
        use futures_util::StreamExt;
        self.served(self.primary, None);
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
                assert_eq!(
                    available,
                    &["Predict", "ChainOfThought", "MultiChainComparison"]
                );
            }
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("ProgramOfThought"), "{message}");
        assert!(
            message.contains("Predict, ChainOfThought, MultiChainComparison"),
            "{message}"
        );
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

    #[test]
    fn the_native_list_is_the_registry_and_every_entry_builds() {
        let names: Vec<&str> = REGISTRY.iter().map(|e| e.name).collect();
        assert_eq!(NATIVE_MODULES, names.as_slice());
        assert_eq!(Router::native_modules(), NATIVE_MODULES);
        assert_eq!(
            NATIVE_MODULES,
            ["Predict", "ChainOfThought", "MultiChainComparison"]
        );
        for name in NATIVE_MODULES {
            let routed = block_on(Router::new().route(name, "question -> answer"))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(routed.route(), Route::Native);
            assert_eq!(routed.as_native().map(NativeModule::name), Some(*name));
            assert!(Router::has_native(name));
        }
        assert_eq!(
            Router::native_kwargs("MultiChainComparison"),
            Some(&["M", "temperature"][..])
        );
        assert_eq!(Router::native_kwargs("ReAct"), None);
        for lacking in ["ReAct", "BestOfN", "Refine", "ProgramOfThought"] {
            assert!(!Router::has_native(lacking), "{lacking}");
        }
    }

    #[test]
    fn multi_chain_comparison_is_built_from_its_kwargs_and_runs_natively() {
        let mut kwargs = Map::new();
        kwargs.insert("M".into(), json!(2));
        kwargs.insert("temperature".into(), json!(0.3));
        let mut mcc = block_on(Router::new().route_with(
            "MultiChainComparison",
            "question -> answer",
            kwargs,
        ))
        .unwrap();
        let named = mcc.named_predictors();
        assert_eq!(named.len(), 1);
        assert_eq!(named[0].0, "predict");
        let inputs: Vec<_> = named[0]
            .1
            .signature
            .inputs()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert_eq!(
            inputs,
            ["question", "reasoning_attempt_1", "reasoning_attempt_2"]
        );
        let lm = ScriptedLM::from_fields([json!({"rationale": "Both say 4.", "answer": "4"})]);
        let input = Example::new().with("question", "2 + 2?").with(
            "completions",
            json!([
                {"reasoning": "Add.", "answer": "4"},
                {"rationale": "Count.", "answer": "4"},
            ]),
        );
        let settings = crate::settings::Settings::new().lm(lm.clone());
        let out = block_on(crate::settings::with_settings(settings, mcc.forward(input))).unwrap();
        assert_eq!(out.get_str("answer"), Some("4"));
        assert_eq!(lm.requests()[0].temperature, Some(0.3));
        assert_eq!(mcc.stats().native, 1);

        // Without completions: a typed error naming the field, counted as a failure.
        let err = block_on(mcc.forward(Example::new().with("question", "2 + 2?"))).unwrap_err();
        assert!(err.to_string().contains("completions"), "{err}");
        assert_eq!(mcc.stats().failed, 1);
        if let RoutedProgram::Native(m) = mcc.program_mut() {
            m.set_config(CallConfig::new().lm(lm.clone()));
        }
    }

    #[test]
    fn kwargs_the_native_module_lacks_or_cannot_take_are_typed() {
        let mut bad = Map::new();
        bad.insert("M".into(), json!("three"));
        let err =
            block_on(Router::new().route_with("MultiChainComparison", "question -> answer", bad))
                .unwrap_err();
        assert!(
            matches!(&err, RouterError::BadKwarg { key, .. } if key == "M"),
            "{err:?}"
        );
        assert!(err.to_string().contains("positive integer"), "{err}");

        // A kwarg the native ChainOfThought does not honour: not native, so no route here.
        let mut unknown = Map::new();
        unknown.insert("rationale_field".into(), json!("x"));
        let err = block_on(Router::new().route_with(
            "ChainOfThought",
            "question -> answer",
            unknown.clone(),
        ))
        .unwrap_err();
        assert!(matches!(err, RouterError::NoRoute { .. }), "{err:?}");
        let err = block_on(Router::new().force(Route::Native).route_with(
            "ChainOfThought",
            "question -> answer",
            unknown,
        ))
        .unwrap_err();
        assert!(matches!(err, RouterError::NoNative { .. }), "{err:?}");

        let err =
            block_on(Router::new().route("MultiChainComparison", "question -> ")).unwrap_err();
        assert!(matches!(err, RouterError::Signature { .. }), "{err:?}");
    }

    /// What a strategy was shown: native, pool, input bytes.
    type Seen = Arc<Mutex<Vec<(bool, bool, Option<usize>)>>>;

    #[derive(Debug)]
    struct Always(Route, Seen);

    impl RouteStrategy for Always {
        fn choose(&self, ctx: &RouteContext<'_>) -> Route {
            self.1
                .lock()
                .unwrap()
                .push((ctx.native, ctx.pool, ctx.input_bytes));
            self.0
        }
    }

    #[test]
    fn a_strategy_decides_at_route_time_and_an_unavailable_choice_is_overridden() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        // Bridged is chosen, but there is no pool: the native route that exists is taken.
        let router = Router::new().strategy(Always(Route::Bridged, seen.clone()));
        assert_eq!(router.decide("Predict").unwrap(), Route::Native);
        let routed = block_on(router.route("Predict", "question -> answer")).unwrap();
        assert_eq!(routed.primary_route(), Route::Native);
        assert_eq!(
            *seen.lock().unwrap(),
            [(true, false, None), (true, false, None)]
        );
        // Forcing wins over the strategy, which is not consulted.
        let forced = router.clone().force(Route::Native);
        forced.decide("Predict").unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2);
        // A module without a native implementation and no pool: still no route.
        assert!(matches!(
            router.decide("ReAct"),
            Err(RouterError::NoRoute { .. })
        ));
    }

    #[test]
    fn failures_are_classified_for_the_fallback() {
        let parse = Error::Adapter(AdapterError::Parse {
            adapter: "ChatAdapter",
            field: Some("answer".into()),
            message: "missing".into(),
            completion: "garbage".into(),
        });
        let shut = Error::Bridge(BridgeError::ShutDown);
        let saturated = Error::Bridge(BridgeError::PoolSaturated {
            workers: 1,
            queued: 0,
        });
        assert!(NativeFailure::Parse.matches(&parse));
        assert!(!NativeFailure::Unsupported.matches(&parse));
        assert!(!NativeFailure::NoNative.matches(&parse));
        assert!(
            NativeFailure::Unsupported
                .matches(&Error::Signature(DynSignature::parse("a -> ").unwrap_err()))
        );
        assert!(BridgedFailure::Unavailable.matches(&shut));
        assert!(BridgedFailure::Unavailable.matches(&saturated));
        assert!(!BridgedFailure::WorkerCrashed.matches(&shut));
        assert!(!BridgedFailure::Unavailable.matches(&parse));

        let policy = Fallback::none()
            .to_bridged_on(NativeFailure::Parse)
            .to_bridged_on(NativeFailure::Parse)
            .to_native_on(BridgedFailure::Unavailable);
        assert_eq!(policy.to_bridged(), [NativeFailure::Parse]);
        assert!(policy.covers(Route::Native, &parse));
        assert!(!policy.covers(Route::Bridged, &parse));
        assert!(policy.covers(Route::Bridged, &shut));
        assert!(!Fallback::none().covers(Route::Bridged, &shut));
        assert!(Fallback::both_ways().covers(Route::Native, &parse));
        assert_eq!(Route::Native.other(), Route::Bridged);
    }

    #[test]
    fn without_a_pool_a_failing_native_call_does_not_fall_back() {
        let lm = ScriptedLM::from_fields([json!({"wrong": "field"}), json!({"wrong": "field"})]);
        let router = Router::new().fallback(Fallback::both_ways());
        let mut routed = block_on(router.route("Predict", "question -> answer")).unwrap();
        if let RoutedProgram::Native(m) = routed.program_mut() {
            m.set_config(CallConfig::new().lm(lm));
        }
        let err = block_on(routed.forward(Example::new().with("question", "Hi?"))).unwrap_err();
        assert!(!err.parse_failures().is_empty(), "{err:?}");
        assert_eq!(routed.stats().fallbacks_to_bridged, 0);
        assert_eq!(routed.stats().failed, 1);
        assert_eq!(router.stats().failed, 1);
        assert!(routed.secondary().is_none());
    }

    #[test]
    fn each_call_is_traced_with_its_route() {
        let events = Events::default();
        let lm = ScriptedLM::from_fields([json!({"answer": "Paris"})]);
        let router = Router::new();
        tracing::subscriber::with_default(events.clone(), || {
            tracing::callsite::rebuild_interest_cache();
            block_on(async {
                let mut routed = router.route("Predict", "question -> answer").await.unwrap();
                if let RoutedProgram::Native(m) = routed.program_mut() {
                    m.set_config(CallConfig::new().lm(lm.clone()));
                }
                routed
                    .forward(Example::new().with("question", "Capital of France?"))
                    .await
                    .unwrap();
                assert_eq!(routed.route(), Route::Native);
                assert_eq!(routed.stats().native, 1);
            });
        });
        assert_eq!(router.stats().native, 1);
        let events = events.0.lock().unwrap().clone();
        let served: Vec<_> = events
            .iter()
            .filter(|e| e.contains("served a call"))
            .collect();
        assert_eq!(served.len(), 1, "{events:?}");
        assert!(served[0].contains("dspex.route=native"), "{events:?}");
        assert!(!served[0].contains("fallback_from"), "{events:?}");
    }
}
