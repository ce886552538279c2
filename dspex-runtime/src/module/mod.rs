//! Modules: programs that call an LM through an adapter.
//!
//! - [`Predict`] / [`DynPredict`] — one LM call: format the signature with demos and inputs, call
//!   the LM, parse the outputs (DSPy's `dspy.Predict`).
//! - [`ChainOfThought`] — Predict with a `reasoning` output first (DSPy's `dspy.ChainOfThought`).
//! - [`ReAct`] / [`DynReAct`] — an agent that calls [`Tool`]s step by step, then extracts the
//!   outputs from its trajectory (DSPy's `dspy.ReAct`); [`search_tool`] makes a retriever one.
//! - [`Parallel`] — a program over a batch under a concurrency limit, results in input order.
//! - [`StreamItem`], [`FieldChunk`], [`StreamOptions`], [`StreamError`] — output-field streaming
//!   of `Predict`, `DynPredict` and `ChainOfThought` (`stream`, `stream_with`; DSPy's
//!   `dspy.streamify` with `StreamListener`s).
//! - [`BestOfN`] — a program run up to N times at temperature 1.0, the best-rewarded output kept
//!   (DSPy's `dspy.BestOfN`).
//! - [`Refine`] — BestOfN with LM feedback between attempts, passed to every predictor as a
//!   `hint_` input (DSPy's `dspy.Refine`).
//! - [`MultiChainComparison`] / [`DynMultiChainComparison`] — one call that compares M earlier
//!   reasoning attempts and answers anew (DSPy's `dspy.MultiChainComparison`).
//! - [`majority`] — the most common answer among completions, compared after [`normalize_text`]
//!   (DSPy's `dspy.majority`).
//! - [`CallConfig`] — the LM, adapter and sampling parameters of a predictor or of one call; what
//!   it leaves unset comes from [`crate::settings`].

/// `Clone` and `Debug` for a typed wrapper `Name<S> { field, …, _signature: PhantomData<fn() -> S> }`
/// around a run-time module, without the bounds on `S` that `#[derive]` would add:
/// `typed_wrapper_impls!(Predict => inner);`, `typed_wrapper_impls!(ChainOfThought => predict,
/// callbacks);`. `Debug` shows the fields listed.
macro_rules! typed_wrapper_impls {
    ($name:ident => $($field:ident),+) => {
        impl<S> Clone for $name<S> {
            fn clone(&self) -> Self {
                $name {
                    $($field: self.$field.clone(),)+
                    _signature: std::marker::PhantomData,
                }
            }
        }

        impl<S> std::fmt::Debug for $name<S> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    $(.field(stringify!($field), &self.$field))+
                    .finish()
            }
        }
    };
}

mod best_of_n;
mod chain_of_thought;
mod majority;
mod multi_chain;
mod parallel;
pub(crate) mod predict;
mod react;
mod refine;
mod search_tool;
mod streaming;
mod tool;
mod tool_calls;

pub use crate::settings::CallConfig;
pub use best_of_n::{AttemptFailure, AttemptsError, BestOfN, FnReward, Reward};
pub use chain_of_thought::{ChainOfThought, Reasoned};
pub use majority::{MajorityError, majority, majority_by, normalize_text};
pub use multi_chain::{
    CompareInput, Corrected, DynMultiChainComparison, MultiChainComparison, MultiChainError,
};
pub use parallel::Parallel;
pub use predict::{DynPredict, Predict};
pub use react::{DynReAct, ReAct, ReActOutput, ToolStep, Trajectory};
pub use refine::{Refine, offer_feedback_signature};
pub use search_tool::search_tool;
pub use streaming::{FieldChunk, FieldStream, StreamError, StreamItem, StreamOptions};
pub use tool::{IntoTool, Tool, ToolError};
pub use tool_calls::ExecuteToolCalls;
