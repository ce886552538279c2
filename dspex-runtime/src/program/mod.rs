//! Typed programs and the parameters optimizers tune.
//!
//! - [`Program`] — an async step from a typed input to a typed output. Modules (Predict,
//!   ChainOfThought, …) are programs; so are compositions of them.
//! - [`ProgramExt`] — composition checked at compile time: `a.then(b)` compiles only when `b`'s
//!   input type is `a`'s output type; `a.map(f)` adapts an output; `a.join(b)` runs both on one
//!   input at once; `a.forward_blocking(x)` runs from synchronous code ([`blocking`]).
//! - [`fan_out`] — several programs on one input, concurrently, outputs as a tuple ([`FanOut`]).
//! - [`branch`] / [`branch_either`] — one of two programs, chosen per input ([`Branch`]).
//! - [`Module`] and [`PredictorParams`] — how optimizers reach every predictor inside a program by
//!   DSPy's name (`generate_query.predict`, `answer`) with its instructions and demos.
//! - [`state`] — `save`/`load` of those parameters in DSPy's JSON state format.

pub mod blocking;
mod branch;
mod compose;
mod fan_out;
mod params;
pub mod state;

pub use blocking::BlockingError;
pub use branch::{Branch, BranchEither, Either, branch, branch_either};
pub use compose::{FnProgram, Map, ProgramExt, Then, program_fn};
pub use fan_out::{Branches, FanOut, FanOutSettled, fan_out};
pub(crate) use params::delegate_module;
pub use params::{Module, PredictorParams, join_path};
pub use state::StateError;

use crate::Result;
use std::future::Future;

/// An async step from `Input` to `Output`: DSPy's `Module.forward`, typed.
///
/// ```
/// use dspex_runtime::{Program, ProgramExt, program_fn};
///
/// # tokio_test_block(async {
/// let words = program_fn(|text: String| async move {
///     Ok(text.split_whitespace().count())
/// });
/// let doubled = words.map(|n| n * 2);
/// assert_eq!(doubled.forward("a b c".to_string()).await?, 6);
/// # Ok::<(), dspex_runtime::Error>(())
/// # });
/// # fn tokio_test_block<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
pub trait Program: Send + Sync {
    /// What the program takes.
    type Input: Send + 'static;
    /// What the program returns.
    type Output: Send + 'static;

    /// Runs the program on one input.
    fn forward(&self, input: Self::Input) -> impl Future<Output = Result<Self::Output>> + Send;
}

impl<P: Program + ?Sized> Program for Box<P> {
    type Input = P::Input;
    type Output = P::Output;

    fn forward(&self, input: Self::Input) -> impl Future<Output = Result<Self::Output>> + Send {
        (**self).forward(input)
    }
}

impl<P: Program + ?Sized> Program for std::sync::Arc<P> {
    type Input = P::Input;
    type Output = P::Output;

    fn forward(&self, input: Self::Input) -> impl Future<Output = Result<Self::Output>> + Send {
        (**self).forward(input)
    }
}
