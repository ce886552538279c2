//! The LM layer: one trait every module calls, and the production OpenAI-compatible client.
//!
//! - [`LanguageModel`] — the async trait (`call`, and `stream` for completions as they are
//!   generated), object-safe so programs hold `Arc<dyn LanguageModel>`.
//! - [`LM`] — the OpenAI-compatible HTTP client (chat, text completions, embeddings, streaming)
//!   with DSPy's model names, and the reliability stack around each call: cache (memory → disk)
//!   (→ Redis, feature `redis`) with coalescing of identical in-flight requests (across
//!   processes too, through Redis leases) → concurrency and rate limits (optionally shared
//!   through Redis) → circuit
//!   breaker → HTTP with a per-call timeout → caller-owned retries → usage and history. Plain
//!   `http://` endpoints are reached by a lean HTTP/1.1 client of dspex's own (`http1`),
//!   `https://` ones by reqwest (`transport` picks).
//! - [`LmRequest`], [`LmResponse`], [`LmError`] — the values that cross the trait.
//! - [`Embedder`] — texts to vectors, from an [`LM`]'s embeddings endpoint or a function.

#[doc(hidden)]
#[path = "fuzz_entry.rs"]
pub mod __fuzz;
mod breaker;
mod cache;
mod client;
#[cfg(feature = "redis")]
mod distributed;
mod embedder;
mod error;
mod history;
#[doc(hidden)]
pub mod http1;
mod limit;
mod protocol;
mod provider;
mod retry;
mod scripted;
mod secret;
#[doc(hidden)]
pub mod stream;
pub mod telemetry;
mod transport;
mod types;
mod usage;
#[doc(hidden)]
pub mod wire;
/// The Anthropic protocol's parsers, for the fuzz targets (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use protocol::anthropic::fuzzing as anthropic_fuzzing;

pub use breaker::{BreakerConfig, BreakerState};
pub use cache::{CacheConfig, CacheKey, CacheStats, ResponseCache};
pub use client::{CallOptions, DEFAULT_MAX_RESPONSE_BYTES, EndpointStats, LM, LmBuilder};
#[cfg(feature = "redis")]
pub use distributed::{RedisConfig, RedisConfigError, RedisUrl, SharedRateLimit};
pub use embedder::{Embedder, EmbedderFn, embedder_fn};
pub use error::{LmError, LmErrorKind};
pub use history::{
    GLOBAL_HISTORY_SIZE, HistoryEntry, clear_global_history, global_history, inspect_history,
    render_history, set_global_history_size,
};
pub use limit::{LimitStats, RateLimit};
/// Gemini's readers of response bodies and stream events, for the fuzz targets (not part of
/// the API).
#[doc(hidden)]
pub use protocol::gemini::fuzzing as gemini_fuzzing;
pub use provider::ModelType;
pub use retry::RetryPolicy;
pub use scripted::ScriptedLM;
pub use secret::ApiKey;
pub use stream::{EventStream, StreamEvent};
pub use transport::{reqwest_builder, rustls_config};
pub use types::{
    Choice, Content, ContentPart, Embeddings, FilePart, FinishReason, ImageUrl, InputAudio,
    LmRequest, LmResponse, Message, MessageToolCall, ResponseFormat, Role, ToolCall, Usage,
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

    /// Runs one request, streaming the completion as it is generated: text deltas, then each
    /// completion's finish, then usage when known. Failures before the stream starts are the
    /// outer error; a stream that breaks off ends with an error item.
    ///
    /// The default runs [`call`](LanguageModel::call) and streams the whole answer at once
    /// ([`StreamEvent::from_response`]), so every LM can be streamed; [`LM`] streams over
    /// server-sent events and [`ScriptedLM`] in small chunks.
    ///
    /// ```
    /// use dspex_lm::{LanguageModel, LmRequest, ScriptedLM, StreamEvent};
    /// use futures_util::StreamExt;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let lm = ScriptedLM::new(["Hello there"]).chunk_size(4);
    /// let mut events = lm.stream(LmRequest::prompt("Hi")).await?;
    /// let mut deltas = Vec::new();
    /// while let Some(event) = events.next().await {
    ///     if let StreamEvent::Delta { text, .. } = event? {
    ///         deltas.push(text);
    ///     }
    /// }
    /// assert_eq!(deltas, ["Hell", "o th", "ere"]);
    /// # Ok::<(), dspex_lm::LmError>(())
    /// # }).unwrap();
    /// ```
    fn stream(&self, request: LmRequest) -> BoxFuture<'_, Result<EventStream, LmError>> {
        Box::pin(async move {
            let response = self.call(request).await?;
            Ok(StreamEvent::stream_of(&response))
        })
    }

    /// The temperature used when a request sets none (DSPy's `lm.kwargs["temperature"]`).
    fn default_temperature(&self) -> Option<f64> {
        None
    }

    /// Whether requests may carry a `response_format` (DSPy asks
    /// `"response_format" in lm.supported_params`). When `false`, the JSONAdapter sends none
    /// and relies on its prompt alone, as DSPy does for such an LM. `true` by default.
    fn supports_response_format(&self) -> bool {
        true
    }

    /// Whether requests may carry `tools` (DSPy's `lm.supports_function_calling`). When
    /// `false`, an adapter with native function calling prints the tools in the prompt and
    /// parses the calls from the text instead. `true` by default.
    fn supports_function_calling(&self) -> bool {
        true
    }

    /// Whether the model reasons natively and returns its reasoning as `reasoning_content`
    /// (DSPy's `lm.supports_reasoning`). When `true`, a signature's `Reasoning` output is not
    /// asked for in the prompt: the request carries `reasoning_effort` (`"low"` unless the call
    /// sets one; an explicit `null` turns this off) and the field takes the LM's reasoning, as
    /// DSPy's `Reasoning.adapt_to_native_lm_feature` does. `false` by default.
    fn supports_reasoning(&self) -> bool {
        false
    }
}
