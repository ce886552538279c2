//! The LM layer: one trait every module calls, and the production OpenAI-compatible client.
//!
//! - [`LanguageModel`] — the async trait (`call`), object-safe so programs hold `Arc<dyn LanguageModel>`.
//! - [`LM`] — the OpenAI-compatible HTTP client (chat, text completions, embeddings, streaming)
//!   with DSPy's model names, and the reliability stack around each call: cache (memory → disk)
//!   with coalescing of identical in-flight requests → concurrency and rate limits → circuit
//!   breaker → HTTP with a per-call timeout → caller-owned retries → usage and history.
//! - [`LmRequest`], [`LmResponse`], [`LmError`] — the values that cross the trait.

mod breaker;
mod cache;
mod client;
mod error;
mod history;
mod limit;
mod provider;
mod retry;
mod scripted;
mod secret;
mod stream;
mod types;
mod usage;
mod wire;

pub use breaker::{BreakerConfig, BreakerState};
pub use cache::{CacheConfig, CacheKey, CacheStats, ResponseCache};
pub use client::{CallOptions, LM, LmBuilder};
pub use error::LmError;
pub use history::{HistoryEntry, render_history};
pub use limit::RateLimit;
pub use provider::ModelType;
pub use retry::RetryPolicy;
pub use scripted::ScriptedLM;
pub use secret::ApiKey;
pub use stream::StreamEvent;
pub use types::{
    Choice, Embeddings, FinishReason, LmRequest, LmResponse, Message, ResponseFormat, Role, Usage,
};
pub use usage::{ModelUsage, Price, UsageReport, UsageTracker, track_usage};

use futures_util::future::BoxFuture;

/// A language model: takes a request, returns completions. Implemented by [`LM`] and by test
/// doubles; modules hold it as `Arc<dyn LanguageModel>`.
pub trait LanguageModel: Send + Sync {
    /// The model string (`openai/gpt-4o-mini`).
    fn model(&self) -> &str;

    /// Runs one request.
    fn call(&self, request: LmRequest) -> BoxFuture<'_, Result<LmResponse, LmError>>;

    /// The temperature used when a request sets none (DSPy's `lm.kwargs["temperature"]`).
    fn default_temperature(&self) -> Option<f64> {
        None
    }
}
