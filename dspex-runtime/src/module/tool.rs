//! [`Tool`]: an async function an agent can call, with a JSON schema for its arguments.

use crate::callback::{Callbacks, ErrorKind, EventError, EventKind, Observed, scope_current};
use crate::pycompat::py::write_py_repr_json;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tracing::Instrument;

/// What defining or calling a [`Tool`] can fail with. The `Display` of a call error is the text
/// ReAct feeds back to the model as the observation (after `Execution error in <tool>: `), so
/// the two argument errors use DSPy's wording.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The tool cannot be defined as asked (its argument type is not a struct, a name is used
    /// twice, …).
    #[error("tool `{tool}`: {message}")]
    Definition {
        /// The tool's name.
        tool: String,
        /// What is wrong.
        message: String,
    },
    /// The call named an argument the tool does not take.
    #[error("Arg {arg} is not in the tool's args.")]
    UnknownArg {
        /// The tool's name.
        tool: String,
        /// The argument.
        arg: String,
    },
    /// The arguments do not fit the tool's argument type.
    #[error("Arg {arg} is invalid: {message}")]
    InvalidArg {
        /// The tool's name.
        tool: String,
        /// The argument (`*` when the failure concerns the arguments as a whole, such as a
        /// missing one).
        arg: String,
        /// What deserializing it said.
        message: String,
    },
    /// The tool ran and returned an error.
    #[error("{message}")]
    Failed {
        /// The tool's name.
        tool: String,
        /// The error it returned.
        message: String,
    },
    /// No tool of the called name was given ([`ExecuteToolCalls::execute`](super::ExecuteToolCalls::execute)).
    #[error(
        "Tool function '{tool}' not found. Please pass the tool functions to the `execute` method."
    )]
    NotFound {
        /// The name the call used.
        tool: String,
    },
    /// The tool was read back from its description (a deserialized field value) and has no
    /// function to run.
    #[error(
        "the tool `{tool}` was read from its description and has no function to run; pass the tool itself"
    )]
    NoFunction {
        /// The tool's name.
        tool: String,
    },
    /// The tool panicked; the panic was caught.
    #[error("the tool panicked: {message}")]
    Panicked {
        /// The tool's name.
        tool: String,
        /// The panic's message.
        message: String,
    },
}

type ToolFn =
    dyn Fn(Map<String, Value>) -> BoxFuture<'static, Result<Value, ToolError>> + Send + Sync;

/// A function an agent ([`super::ReAct`]) can call: a name, a description, a JSON schema per
/// argument, and an async body taking the arguments as a JSON object (DSPy's `dspy.Tool`).
///
/// [`Tool::new`] derives everything from an argument struct: its fields are the arguments,
/// their schemas come from `schemars`, the struct's doc comment is the description (the field
/// docs become each argument's `description`), and the model's JSON arguments are deserialized
/// into it before the body runs:
///
/// ```
/// use dspex_runtime::module::Tool;
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// /// Add two integers.
/// #[derive(Deserialize, JsonSchema)]
/// struct Add {
///     a: i64,
///     b: i64,
/// }
///
/// let add = Tool::new("add", |Add { a, b }| async move { Ok::<_, std::convert::Infallible>(a + b) })?;
/// assert_eq!(
///     add.to_string(),
///     "add, whose description is <desc>Add two integers.</desc>. \
///      It takes arguments {'a': {'type': 'integer'}, 'b': {'type': 'integer'}}."
/// );
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let sum = add.call(serde_json::json!({"a": 2, "b": 3}).as_object().unwrap().clone()).await?;
/// assert_eq!(sum, 5);
/// # Ok::<(), dspex_runtime::module::ToolError>(())
/// # }).unwrap();
/// # Ok::<(), dspex_runtime::module::ToolError>(())
/// ```
///
/// Integer and float `format`s (`int64`, `double`) are dropped from the schemas so a Rust tool
/// is described to the model exactly as the same Python function is by DSPy (pydantic writes
/// `{'type': 'integer'}` for `int`); every other keyword is kept.
#[derive(Clone)]
pub struct Tool {
    name: String,
    desc: Option<String>,
    args: Map<String, Value>,
    /// Whether arguments not in `args` are accepted (DSPy: the function takes `**kwargs`).
    open: bool,
    func: Arc<ToolFn>,
    callbacks: Callbacks,
}

impl fmt::Debug for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.name)
            .field("desc", &self.desc)
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

/// DSPy's `str(tool)`, the line ReAct lists it with:
/// `NAME, whose description is <desc>DESC</desc>. It takes arguments ARGS.` with newlines in the
/// description clause turned into two spaces and `ARGS` the Python `repr` of the schemas.
/// What [`ReAct`](super::ReAct) takes as tools: a [`Tool`] (or a reference to one, cloned).
///
/// A function marked `#[tool]` is not a tool itself — it stays the plain function you wrote, so
/// you can still call it; the tool is what `#[tool]` generates beside it, `<name>_tool()`:
/// `ReAct::<QA>::new([calculator_tool(), lookup_tool()])`. Passing the function is a compile
/// error that says so.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a ReAct tool",
    label = "expected a `Tool`",
    note = "a function marked `#[tool]` stays a plain function; pass the tool generated beside it, `<name>_tool()` (for `fn calculator`, `calculator_tool()`)",
    note = "a closure becomes a tool with `Tool::new(\"name\", |args: Args| async move {{ ... }})`"
)]
pub trait IntoTool {
    /// The tool.
    fn into_tool(self) -> Tool;
}

// Not listed in errors: the note above says what to pass, and the list would change with every
// new impl (the UI tests' `.stderr` files must not).
#[diagnostic::do_not_recommend]
impl IntoTool for Tool {
    fn into_tool(self) -> Tool {
        self
    }
}

#[diagnostic::do_not_recommend]
impl IntoTool for &Tool {
    fn into_tool(self) -> Tool {
        self.clone()
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        match self.desc.as_deref().filter(|d| !d.is_empty()) {
            Some(desc) => write!(
                f,
                ", whose description is <desc>{}</desc>.",
                desc.replace('\n', "  ")
            )?,
            None => f.write_str(".")?,
        }
        let mut args = String::new();
        write_py_repr_json(&mut args, &Value::Object(self.args.clone()));
        write!(f, " It takes arguments {args}.")
    }
}

impl Tool {
    /// A tool whose arguments are the fields of `A`. The description is `A`'s doc comment
    /// (replace it with [`Tool::with_desc`]). The body's error is reported to the model as the
    /// observation; a panic in the body is caught and reported the same way.
    ///
    /// Fails when `A`'s schema is not an object with named properties (a tool takes keyword
    /// arguments), or when `name` is empty.
    pub fn new<A, R, E, F, Fut>(name: impl Into<String>, func: F) -> Result<Tool, ToolError>
    where
        A: JsonSchema + DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        E: fmt::Display + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let name = name.into();
        let ArgsSchema { desc, args, open } = args_schema::<A>(&name)?;
        let tool_name = name.clone();
        let func = move |args: Map<String, Value>| -> BoxFuture<'static, Result<Value, ToolError>> {
            let parsed: Result<A, _> = serde_json::from_value(Value::Object(args));
            let name = tool_name.clone();
            match parsed {
                Err(e) => {
                    let message = e.to_string();
                    let arg = field_of_serde_error(&message).unwrap_or("*").to_string();
                    Box::pin(std::future::ready(Err(ToolError::InvalidArg {
                        tool: name,
                        arg,
                        message,
                    })))
                }
                Ok(a) => {
                    let fut = func(a);
                    Box::pin(async move {
                        match fut.await {
                            Ok(r) => serde_json::to_value(&r).map_err(|e| ToolError::Failed {
                                tool: name,
                                message: format!("its result cannot be turned into JSON: {e}"),
                            }),
                            Err(e) => Err(ToolError::Failed {
                                tool: name,
                                message: e.to_string(),
                            }),
                        }
                    })
                }
            }
        };
        Self::check_name(&name)?;
        Ok(Tool {
            name,
            desc,
            args,
            open,
            func: Arc::new(func),
            callbacks: Callbacks::new(),
        })
    }

    /// [`Tool::new`] for the `#[tool]` attribute, whose argument struct is always an object
    /// and whose name is a function's: it cannot fail, so it returns the tool itself.
    #[doc(hidden)]
    pub fn from_macro<A, R, E, F, Fut>(name: &str, func: F) -> Tool
    where
        A: JsonSchema + DeserializeOwned + Send + 'static,
        R: Serialize + 'static,
        E: fmt::Display + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        Tool::new(name, func).unwrap_or_else(|e| Tool {
            name: name.to_string(),
            desc: Some(format!("(unusable: {e})")),
            args: Map::new(),
            open: false,
            func: Arc::new(move |_| {
                let e = e.clone();
                Box::pin(std::future::ready(Err(e)))
            }),
            callbacks: Callbacks::new(),
        })
    }

    /// A tool over JSON: `args` maps each argument name to its JSON schema (shown to the model
    /// as given), and the body receives the model's arguments as an object. Arguments not in
    /// `args` are refused before the body runs unless [`Tool::accepting_any_args`] is set.
    pub fn from_json_fn<E, F, Fut>(
        name: impl Into<String>,
        desc: Option<&str>,
        args: Map<String, Value>,
        func: F,
    ) -> Result<Tool, ToolError>
    where
        E: fmt::Display + 'static,
        F: Fn(Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, E>> + Send + 'static,
    {
        let name = name.into();
        Self::check_name(&name)?;
        let tool_name = name.clone();
        let func = move |args: Map<String, Value>| -> BoxFuture<'static, Result<Value, ToolError>> {
            let fut = func(args);
            let name = tool_name.clone();
            Box::pin(async move {
                fut.await.map_err(|e| ToolError::Failed {
                    tool: name,
                    message: e.to_string(),
                })
            })
        };
        Ok(Tool {
            name,
            desc: desc.map(str::to_string),
            args,
            open: false,
            func: Arc::new(func),
            callbacks: Callbacks::new(),
        })
    }

    /// A tool with this description and no function (read back from a field value): calling
    /// it fails with [`ToolError::NoFunction`].
    pub(super) fn without_function(
        name: String,
        desc: Option<String>,
        args: Map<String, Value>,
    ) -> Tool {
        let tool = name.clone();
        Tool {
            name,
            desc,
            args,
            open: true,
            func: Arc::new(move |_| {
                let tool = tool.clone();
                Box::pin(std::future::ready(Err(ToolError::NoFunction { tool })))
            }),
            callbacks: Callbacks::new(),
        }
    }

    fn check_name(name: &str) -> Result<(), ToolError> {
        if name.trim().is_empty() {
            return Err(ToolError::Definition {
                tool: name.to_string(),
                message: "a tool needs a non-empty name".into(),
            });
        }
        Ok(())
    }

    /// The same tool with this description.
    #[must_use]
    pub fn with_desc(mut self, desc: impl Into<String>) -> Self {
        self.desc = Some(desc.into());
        self
    }

    /// The same tool under another name.
    pub fn with_name(mut self, name: impl Into<String>) -> Result<Self, ToolError> {
        let name = name.into();
        Self::check_name(&name)?;
        self.name = name;
        Ok(self)
    }

    /// The same tool, passing arguments it does not declare through to its body (DSPy: a
    /// function with `**kwargs`).
    #[must_use]
    pub fn accepting_any_args(mut self) -> Self {
        self.open = true;
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its description, if it has one.
    pub fn desc(&self) -> Option<&str> {
        self.desc.as_deref()
    }

    /// The JSON schema of each argument, in declaration order.
    pub fn args(&self) -> &Map<String, Value> {
        &self.args
    }

    /// The same tool with callbacks of its own: they receive its tool events, after the
    /// callbacks in the settings (DSPy's `Tool(callbacks=...)`; see [`crate::callback`]).
    #[must_use]
    pub fn with_callbacks(mut self, callbacks: impl Into<Callbacks>) -> Self {
        self.callbacks = callbacks.into();
        self
    }

    /// Runs the tool on `args` (a JSON object of argument values). Unknown arguments are
    /// refused first, as DSPy's `Tool` does; a panic in the body is caught and returned as
    /// [`ToolError::Panicked`]. The call is reported to the [callbacks](crate::callback) as a
    /// tool call named after the tool, its arguments as inputs.
    pub async fn call(&self, args: Map<String, Value>) -> Result<Value, ToolError> {
        let span = crate::telemetry::tool_span(&self.name, &args);
        let observed = Observed::start(
            EventKind::Tool,
            || self.name.clone(),
            Some(&self.callbacks),
            || Value::Object(args.clone()),
        );
        let result = scope_current(
            observed.as_ref().map(Observed::id),
            self.call_unobserved(args),
        )
        .instrument(span.clone())
        .await;
        match &result {
            Ok(value) => crate::telemetry::record_tool_result(&span, value),
            Err(_) => crate::telemetry::record_failure(&span, &ErrorKind::Tool),
        }
        if let Some(observed) = observed {
            observed.finish_with(&result, Value::clone, |e| {
                EventError::new(ErrorKind::Tool, e)
            });
        }
        result
    }

    async fn call_unobserved(&self, args: Map<String, Value>) -> Result<Value, ToolError> {
        if let Some(unknown) = args
            .keys()
            .find(|k| !self.open && !self.args.contains_key(*k))
        {
            return Err(ToolError::UnknownArg {
                tool: self.name.clone(),
                arg: unknown.clone(),
            });
        }
        // Building the future runs user code too (the closure body up to its first await).
        let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| (self.func)(args))) {
            Ok(fut) => fut,
            Err(panic) => return Err(self.panicked(&*panic)),
        };
        match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(result) => result,
            Err(panic) => Err(self.panicked(&*panic)),
        }
    }

    fn panicked(&self, panic: &(dyn std::any::Any + Send)) -> ToolError {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string panic payload".to_string());
        ToolError::Panicked {
            tool: self.name.clone(),
            message,
        }
    }
}

/// What a tool's argument type says about it.
struct ArgsSchema {
    /// The type's doc comment.
    desc: Option<String>,
    /// Each argument's schema.
    args: Map<String, Value>,
    /// Whether undeclared arguments are accepted.
    open: bool,
}

/// The description, the per-argument schemas and whether other arguments are allowed, from
/// `A`'s JSON schema with every `$ref` inlined.
fn args_schema<A: JsonSchema>(name: &str) -> Result<ArgsSchema, ToolError> {
    let generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let schema = generator.into_root_schema_for::<A>();
    let root = schema.as_value();
    let not_object = || ToolError::Definition {
        tool: name.to_string(),
        message: format!(
            "its argument type `{}` must be a struct with named fields (the model passes arguments by name)",
            A::schema_name()
        ),
    };
    let obj = root.as_object().ok_or_else(not_object)?;
    if obj.get("type").and_then(Value::as_str) != Some("object") {
        return Err(not_object());
    }
    let desc = obj
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut args = Map::new();
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (arg, schema) in props {
            let mut schema = schema.clone();
            drop_numeric_formats(&mut schema);
            args.insert(arg.clone(), schema);
        }
    }
    let open = matches!(obj.get("additionalProperties"), Some(Value::Bool(true)))
        || matches!(obj.get("additionalProperties"), Some(Value::Object(_)));
    Ok(ArgsSchema { desc, args, open })
}

/// Drops `format: int64`/`double`/… next to numeric types, at every depth.
fn drop_numeric_formats(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let numeric = match map.get("type") {
                Some(Value::String(t)) => t == "integer" || t == "number",
                Some(Value::Array(ts)) => ts
                    .iter()
                    .any(|t| t.as_str().is_some_and(|t| t == "integer" || t == "number")),
                _ => false,
            };
            if numeric
                && map.get("format").and_then(Value::as_str).is_some_and(|f| {
                    matches!(
                        f,
                        "int8"
                            | "int16"
                            | "int32"
                            | "int64"
                            | "int128"
                            | "uint"
                            | "uint8"
                            | "uint16"
                            | "uint32"
                            | "uint64"
                            | "uint128"
                            | "float"
                            | "double"
                    )
                })
            {
                map.remove("format");
            }
            map.values_mut().for_each(drop_numeric_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_numeric_formats),
        _ => {}
    }
}

/// The field a serde error names (`missing field `b``, `unknown field `c``), if any.
fn field_of_serde_error(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    /// Look up a fact by its key.
    #[derive(Deserialize, JsonSchema)]
    struct Lookup {
        key: String,
    }

    /// Search the web.
    ///     Returns snippets.
    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Search {
        query: String,
        #[serde(default = "three")]
        k: u32,
        /// Only pages newer than this year.
        since: Option<i32>,
    }

    fn three() -> u32 {
        3
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    fn block<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn describes_itself_as_dspy_does() {
        let lookup = Tool::new("lookup", |Lookup { key }| async move {
            Ok::<_, String>(format!("value of {key}"))
        })
        .unwrap();
        assert_eq!(
            lookup.to_string(),
            "lookup, whose description is <desc>Look up a fact by its key.</desc>. It takes arguments {'key': {'type': 'string'}}."
        );
        let search = Tool::new("search", |_: Search| async { Ok::<_, String>(1) }).unwrap();
        assert_eq!(
            search.args()["k"],
            json!({"type": "integer", "minimum": 0, "default": 3})
        );
        assert_eq!(
            search.args()["since"]["description"],
            "Only pages newer than this year."
        );
        assert!(search.to_string().starts_with(
            "search, whose description is <desc>Search the web.      Returns snippets.</desc>."
        ));
        let bare = Tool::from_json_fn("noop", None, Map::new(), |_| async {
            Ok::<_, String>(Value::Null)
        })
        .unwrap();
        assert_eq!(bare.to_string(), "noop. It takes arguments {}.");
    }

    #[test]
    fn calls_with_json_arguments_and_reports_bad_ones() {
        let lookup = Tool::new("lookup", |Lookup { key }| async move {
            if key == "boom" {
                Err("no such key".to_string())
            } else {
                Ok(format!("value of {key}"))
            }
        })
        .unwrap();
        block(async {
            assert_eq!(
                lookup.call(args(json!({"key": "x"}))).await.unwrap(),
                "value of x"
            );
            let unknown = lookup.call(args(json!({"key": "x", "k": 1}))).await;
            assert_eq!(
                unknown.unwrap_err().to_string(),
                "Arg k is not in the tool's args."
            );
            let missing = lookup.call(Map::new()).await.unwrap_err();
            assert!(
                matches!(&missing, ToolError::InvalidArg { arg, .. } if arg == "key"),
                "{missing:?}"
            );
            let wrong = lookup.call(args(json!({"key": 5}))).await.unwrap_err();
            assert!(
                wrong
                    .to_string()
                    .starts_with("Arg * is invalid: invalid type: integer `5`"),
                "{wrong}"
            );
            let failed = lookup.call(args(json!({"key": "boom"}))).await.unwrap_err();
            assert_eq!(failed.to_string(), "no such key");
        });
    }

    #[test]
    fn panics_in_tools_are_caught() {
        let tool = Tool::new("explode", |_: Lookup| async move {
            if true {
                panic!("kaboom");
            }
            Ok::<_, String>(0)
        })
        .unwrap();
        let err = block(tool.call(args(json!({"key": "x"})))).unwrap_err();
        assert_eq!(
            err,
            ToolError::Panicked {
                tool: "explode".into(),
                message: "kaboom".into()
            }
        );
    }

    #[test]
    fn argument_types_must_be_structs() {
        let err = Tool::new("bad", |x: i64| async move { Ok::<_, String>(x) }).unwrap_err();
        assert!(
            err.to_string()
                .contains("must be a struct with named fields"),
            "{err}"
        );
        let err = Tool::new(" ", |_: Lookup| async { Ok::<_, String>(0) }).unwrap_err();
        assert!(matches!(err, ToolError::Definition { .. }));
    }
}
