//! The error type of programs, which every layer's error converts into.
//!
//! Each layer owns its error: [`SignatureError`], [`ExampleError`] and [`AdapterError`] in
//! `dspex-core`, [`LmError`] in `dspex-lm`, and in this crate [`StateError`] and
//! [`BlockingError`] (programs), [`ToolError`] (tools and agents), [`RetrieveError`],
//! `BridgeError`. [`Error`] wraps them at the program boundary, one variant each, so a caller
//! can match the layer that failed. The wrapping goes one way: `dspex-core` and `dspex-lm` are
//! crates below this one and cannot name [`Error`]; within the runtime, the settings, the
//! retrievers and the bridge's pool return their own errors, and only `Program`
//! implementations (modules, `Retrieve`, bridged programs) return [`Error`].

use crate::adapter::AdapterError;
#[cfg(all(unix, feature = "bridge"))]
use crate::bridge::BridgeError;
use crate::example::ExampleError;
use crate::lm::LmError;
use crate::module::ToolError;
use crate::program::BlockingError;
use crate::program::StateError;
use crate::retrieve::RetrieveError;
use crate::signature::SignatureError;

/// What a program run can fail with. Each layer has its own error type; they convert into this one
/// at the program boundary so composed programs share one `Result`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A signature could not be built or edited.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// An example or prediction did not have the fields or shape asked for.
    #[error(transparent)]
    Example(#[from] ExampleError),
    /// An LM call failed (after the caller's retries).
    #[error(transparent)]
    Lm(#[from] LmError),
    /// The prompt could not be formatted, or the LM's answer parsed.
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    /// The LM's answer could not be parsed, and DSPy's fallback — one more call with the
    /// fallback adapter (JSONAdapter after ChatAdapter) — failed too. Both failures are kept:
    /// `primary` names the field, what was wrong with it and the completion; `fallback` is the
    /// second call's error (its own parse failure, or the LM error that ended it).
    #[error("{primary}; then the {fallback_adapter} fallback failed too: {fallback}")]
    AdapterFallback {
        /// The first adapter's parse failure.
        primary: AdapterError,
        /// The fallback adapter's name (`JSONAdapter`).
        fallback_adapter: &'static str,
        /// How the fallback call failed.
        #[source]
        fallback: Box<Error>,
    },
    /// A tool could not be defined, or an agent built from its tools.
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// A program's state could not be saved or loaded.
    #[error(transparent)]
    State(#[from] StateError),
    /// A retriever could not be built, opened or queried.
    #[error(transparent)]
    Retrieve(#[from] RetrieveError),
    /// A call through the Python bridge failed (worker crash, timeout, Python exception, …).
    #[cfg(all(unix, feature = "bridge"))]
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    /// A module was called with no LM: neither in its config nor in the settings.
    #[error(
        "no LM is configured: call dspex::settings::configure(Settings::new().lm(...)), wrap the call in with_settings(...), or give the module a CallConfig with an LM"
    )]
    NoLm,
    /// A blocking call (`forward_blocking`, `blocking::block_on`) could not run: it was made
    /// inside a tokio runtime, or the runtime could not start.
    #[error(transparent)]
    Blocking(#[from] BlockingError),
    /// An optimization job was cancelled ([`Job::cancel`](crate::optimize::Job::cancel)) before
    /// it had scored any program, so there is no best program to return. A job cancelled later
    /// returns the best program found so far instead of this error.
    #[error("the optimization was cancelled {}before any program was scored", cancelled_phase(.phase))]
    Cancelled {
        /// The phase the job was in (`bootstrapping demo sets`, `proposing instructions`,
        /// `searching`, …), as its progress reported it; empty when it had not reported one.
        phase: String,
    },
    /// A step written by the user failed.
    #[error("{context}: {source}")]
    Step {
        /// What the step was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// The adapters' parse failures behind this error, first to last: one for a plain parse
    /// failure, two when the fallback adapter could not parse its answer either, none for
    /// other errors.
    pub fn parse_failures(&self) -> Vec<&AdapterError> {
        match self {
            Error::Adapter(error @ AdapterError::Parse { .. }) => vec![error],
            Error::AdapterFallback {
                primary, fallback, ..
            } => {
                let mut all = vec![primary];
                all.extend(fallback.parse_failures());
                all
            }
            _ => Vec::new(),
        }
    }

    /// Wraps an error from user code with what the step was doing.
    pub fn step(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Step {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// `while <phase>, ` for a phase that is known.
fn cancelled_phase(phase: &str) -> String {
    if phase.is_empty() {
        String::new()
    } else {
        format!("while {phase}, ")
    }
}

/// `Result` with dspex's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
