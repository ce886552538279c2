//! Modules: programs that call an LM through an adapter.
//!
//! - [`Predict`] / [`DynPredict`] — one LM call: format the signature with demos and inputs, call
//!   the LM, parse the outputs (DSPy's `dspy.Predict`).
//! - [`ChainOfThought`] — Predict with a `reasoning` output first (DSPy's `dspy.ChainOfThought`).
//! - [`ReAct`] / [`DynReAct`] — an agent that calls [`Tool`]s step by step, then extracts the
//!   outputs from its trajectory (DSPy's `dspy.ReAct`).
//! - [`Parallel`] — a program over a batch under a concurrency limit, results in input order.
//! - [`StreamItem`], [`FieldChunk`], [`StreamOptions`], [`StreamError`] — output-field streaming
//!   of `Predict`, `DynPredict` and `ChainOfThought` (`stream`, `stream_with`; DSPy's
//!   `dspy.streamify` with `StreamListener`s).
//! - [`CallConfig`] — the LM, adapter and sampling parameters of a predictor or of one call; what
//!   it leaves unset comes from [`crate::settings`].

mod chain_of_thought;
mod parallel;
mod predict;
mod react;
mod streaming;
mod tool;

pub use chain_of_thought::{ChainOfThought, Reasoned};
pub use parallel::Parallel;
pub use predict::{CallConfig, DynPredict, Predict};
pub use react::{DynReAct, ReAct, ReActOutput, ToolStep, Trajectory};
pub use streaming::{FieldChunk, FieldStream, StreamError, StreamItem, StreamOptions};
pub use tool::{Tool, ToolError};
