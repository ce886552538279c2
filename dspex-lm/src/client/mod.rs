//! [`LM`]: the OpenAI-compatible client and the reliability stack around each call — its
//! settings and shared state, and the call pipeline (cache and coalescing → retries → breaker,
//! limits and timeout → HTTP → usage and history). Streamed calls are in `stream`, the builder
//! in `builder`.

mod builder;
mod fleet;
mod stream;

pub use fleet::EndpointStats;
use fleet::{Failed, Fleet, Lease, Member};

use super::LanguageModel;
use super::breaker::{self, Admission, Breaker, BreakerConfig, BreakerState};
use super::cache::{CacheConfig, CacheKey, ResponseCache};
use super::error::{LmError, excerpt};
use super::history::{self, History, HistoryEntry, render_history};
use super::limit::{LimitStats, Limiter, RateLimit, Slot};
use super::protocol::{self, Chunk, StreamReader};
use super::provider::{self, ModelType, Provider};
use super::retry::RetryPolicy;
use super::secret::ApiKey;
use super::stream::{EventStream, SseData, SseDecoder, StreamEvent};
use super::transport::{ByteStream, Endpoint, HttpResponse, Transport, TransportError};
use super::types::{Choice, Embeddings, LmRequest, LmResponse, Message, Usage};
use super::usage::{Price, UsageReport, record_current, record_request_current};
use super::wire::{EmbeddingBody, EmbeddingResponse};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tracing::Instrument;

/// Per-call overrides of an LM's policy: the caller owns retries, timeouts and caching.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallOptions {
    /// Use the cache for this call (`None`: the LM's setting).
    pub cache: Option<bool>,
    /// Retry policy for this call (`None`: the LM's).
    pub retry: Option<RetryPolicy>,
    /// Timeout of each attempt (`None`: the LM's).
    pub timeout: Option<Duration>,
    /// Bound on the whole call, retries and waits included (`None`: the LM's).
    pub deadline: Option<Duration>,
}

/// An OpenAI-compatible language model client, named as in DSPy (`dspy.LM`).
///
/// Cheap to clone: clones share the connection pool, cache, limits, breaker, history and usage
/// totals. `with_*` methods give a clone with another policy (a program that needs a different
/// retry policy or timeout takes its own clone).
///
/// Transport: a plain `http://` base URL (vLLM, Ollama, llama.cpp, a local proxy) is served by
/// dspex's own lean HTTP/1.1 client — pooled keep-alive connections, each request and its
/// answer handled by the calling task, a few kilobytes per call in flight. `https://`, a base
/// URL with `user:password@`, and a client passed to
/// [`http_client`](LmBuilder::http_client) go through reqwest (rustls, HTTP/2 where the server
/// offers it). Both give the same answers and the same typed errors.
///
/// ```no_run
/// use dspex_lm::{LM, LmRequest};
///
/// # async fn run() -> Result<(), dspex_lm::LmError> {
/// // The key comes from OPENAI_API_KEY; `api_base` points at any compatible server.
/// let lm = LM::builder("openai/gpt-4o-mini").temperature(0.0).build()?;
/// let local = LM::builder("openai/llama3").api_base("http://localhost:8000/v1").build()?;
/// let answer = lm.call(LmRequest::prompt("Say hi.")).await?;
/// println!("{}", answer.text());
/// # let _ = local; Ok(()) }
/// ```
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone)]
pub struct LM {
    shared: Arc<Shared>,
    settings: Arc<Settings>,
}

struct Shared {
    /// The endpoints, each with its transport, URLs, breaker and counters (one for a single
    /// base URL).
    fleet: Fleet,
    cache: Option<ResponseCache>,
    limiter: Limiter,
    history: History,
    totals: Mutex<UsageReport>,
    inflight: Mutex<HashMap<CacheKey, broadcast::Sender<Result<LmResponse, LmError>>>>,
}

#[derive(Clone)]
struct Settings {
    model: String,
    provider: Provider,
    model_type: ModelType,
    reasoning: bool,
    /// The API version the provider's URLs carry (Azure).
    api_version: Option<String>,
    /// The base URL, credentials removed (a fleet's, joined with commas).
    endpoint: String,
    api_key: Option<ApiKey>,
    /// The header carrying the key (the protocol's: `authorization: Bearer …`, `x-api-key`,
    /// …), built once and marked sensitive.
    auth: Option<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    headers: reqwest::header::HeaderMap,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    extra: Map<String, Value>,
    cache: bool,
    retry: RetryPolicy,
    timeout: Duration,
    deadline: Option<Duration>,
    price: Option<Price>,
    max_response_bytes: u64,
}

impl fmt::Debug for LM {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("LM")
            .field("model", &s.model)
            .field("model_type", &s.model_type)
            .field("endpoint", &s.endpoint)
            .field("api_key", &s.api_key.as_ref().map(|_| "***"))
            .field(
                "headers",
                &s.headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            )
            .field("temperature", &s.temperature)
            .field("max_tokens", &s.max_tokens)
            .field("cache", &s.cache)
            .field("retry", &s.retry)
            .field("timeout", &s.timeout)
            .finish_non_exhaustive()
    }
}

/// The endpoints, parsed and prepared for the transport once.
#[derive(Clone)]
struct Urls {
    /// A plain call (chat or text completions, per the model type).
    call: Endpoint,
    /// A streamed call.
    stream: Endpoint,
    /// Embeddings, where the protocol has them.
    embeddings: Option<Endpoint>,
}

/// Builds an [`LM`]; every setting has a sane default.
#[derive(Debug, Clone)]
#[must_use]
pub struct LmBuilder {
    model: String,
    model_type: Option<ModelType>,
    reasoning: bool,
    api_base: Option<String>,
    /// Base URLs with their weights ([`LmBuilder::endpoints`]); when not empty they replace
    /// `api_base`.
    endpoints: Vec<(String, u32)>,
    api_version: Option<String>,
    api_key: Option<ApiKey>,
    headers: Vec<(String, String)>,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    extra: Map<String, Value>,
    cache: bool,
    cache_config: Option<CacheConfig>,
    shared_cache: Option<ResponseCache>,
    retry: RetryPolicy,
    timeout: Duration,
    deadline: Option<Duration>,
    max_concurrency: Option<usize>,
    rate_limit: RateLimit,
    #[cfg(feature = "redis")]
    shared_rate_limit: Option<crate::distributed::SharedRateLimit>,
    breaker: BreakerConfig,
    history_size: usize,
    price: Option<Price>,
    http: Option<reqwest::Client>,
    max_response_bytes: u64,
}

/// The default of [`LmBuilder::max_response_bytes`]: 64 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 << 20;

impl LM {
    /// An LM for a DSPy model string with default settings (key from the provider's environment
    /// variable, e.g. `OPENAI_API_KEY`).
    pub fn new(model: impl Into<String>) -> Result<LM, LmError> {
        Self::builder(model).build()
    }

    /// A builder for `model` (`openai/gpt-4o-mini`, `ollama_chat/llama3`, `hosted_vllm/…`).
    pub fn builder(model: impl Into<String>) -> LmBuilder {
        LmBuilder {
            model: model.into(),
            model_type: None,
            reasoning: false,
            api_base: None,
            endpoints: Vec::new(),
            api_version: None,
            api_key: None,
            headers: Vec::new(),
            temperature: None,
            max_tokens: None,
            extra: Map::new(),
            cache: true,
            cache_config: None,
            shared_cache: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(120),
            deadline: None,
            max_concurrency: None,
            rate_limit: RateLimit::default(),
            #[cfg(feature = "redis")]
            shared_rate_limit: None,
            breaker: BreakerConfig::default(),
            history_size: 1000,
            price: None,
            http: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// The model string.
    pub fn model(&self) -> &str {
        &self.settings.model
    }

    /// The base URL calls go to (credentials removed). For an LM over several endpoints
    /// ([`LmBuilder::endpoints`]), their base URLs joined with commas, in the order given.
    pub fn endpoint(&self) -> &str {
        &self.settings.endpoint
    }

    /// Each endpoint's URL (credentials removed), weight, outstanding requests, counters and
    /// breaker state, in the order the endpoints were given (one entry for a single base URL).
    /// The counters are shared by every clone of this LM.
    ///
    /// ```
    /// use dspex_lm::LM;
    ///
    /// let lm = LM::builder("openai/m")
    ///     .endpoints(["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"])
    ///     .endpoint_weighted("http://10.0.0.3:8000/v1", 2)
    ///     .build()?;
    /// let stats = lm.endpoints();
    /// assert_eq!(stats.len(), 3);
    /// assert_eq!((stats[2].url.as_str(), stats[2].weight), ("http://10.0.0.3:8000/v1", 2));
    /// assert!(stats.iter().all(|e| e.healthy && e.outstanding == 0 && e.served == 0));
    /// # Ok::<(), dspex_lm::LmError>(())
    /// ```
    pub fn endpoints(&self) -> Vec<EndpointStats> {
        self.shared.fleet.stats()
    }

    /// A clone with another retry policy (sharing pool, cache, limits and breaker).
    #[must_use]
    pub fn with_retry(&self, retry: RetryPolicy) -> LM {
        self.with_settings(|s| s.retry = retry)
    }

    /// A clone with another per-attempt timeout.
    #[must_use]
    pub fn with_timeout(&self, timeout: Duration) -> LM {
        self.with_settings(|s| s.timeout = timeout)
    }

    /// A clone with a bound on each whole call.
    #[must_use]
    pub fn with_deadline(&self, deadline: Option<Duration>) -> LM {
        self.with_settings(|s| s.deadline = deadline)
    }

    /// A clone that uses the cache or not.
    #[must_use]
    pub fn with_cache(&self, cache: bool) -> LM {
        self.with_settings(|s| s.cache = cache)
    }

    /// A clone with another default temperature.
    #[must_use]
    pub fn with_temperature(&self, temperature: Option<f64>) -> LM {
        self.with_settings(|s| s.temperature = temperature)
    }

    fn with_settings(&self, change: impl FnOnce(&mut Settings)) -> LM {
        let mut settings = (*self.settings).clone();
        change(&mut settings);
        LM {
            shared: Arc::clone(&self.shared),
            settings: Arc::new(settings),
        }
    }

    /// How often calls waited for this LM's rate limits, local and shared (counters shared by
    /// every clone).
    pub fn limit_stats(&self) -> LimitStats {
        self.shared.limiter.stats()
    }

    /// The response cache, when this LM has one.
    pub fn cache(&self) -> Option<&ResponseCache> {
        self.shared.cache.as_ref()
    }

    /// The endpoint's circuit breaker state. For an LM over several endpoints, the healthiest
    /// one's (closed if any endpoint is closed, else half-open if any is, else open with the
    /// shortest wait); [`endpoints`](LM::endpoints) has each.
    pub fn breaker_state(&self) -> BreakerState {
        self.shared.fleet.best_breaker_state()
    }

    /// What every clone of this LM has used so far.
    pub fn usage(&self) -> UsageReport {
        self.shared
            .totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The last `n` calls, oldest first.
    pub fn history(&self, n: usize) -> Vec<HistoryEntry> {
        self.shared.history.last(n)
    }

    /// Forgets the recorded calls.
    pub fn clear_history(&self) {
        self.shared.history.clear();
    }

    /// The last `n` calls as DSPy's `inspect_history(n)` prints them (without colours).
    pub fn inspect_history(&self, n: usize) -> String {
        render_history(&self.history(n), false)
    }

    /// Runs one request with this LM's policy.
    pub async fn call(&self, request: LmRequest) -> Result<LmResponse, LmError> {
        self.call_with(request, &CallOptions::default()).await
    }

    /// Runs one request with per-call overrides.
    pub async fn call_with(
        &self,
        mut request: LmRequest,
        options: &CallOptions,
    ) -> Result<LmResponse, LmError> {
        let start = Instant::now();
        // In place: a second `LmRequest` would be held for the whole call.
        self.merge_defaults(&mut request);
        let cache = match (
            &self.shared.cache,
            options.cache.unwrap_or(self.settings.cache),
        ) {
            (Some(cache), true) => Some(cache),
            _ => None,
        };
        let span = self.call_span("lm.call", &request);
        let result = async {
            match cache {
                // Boxed: the cache's lookups make its future larger, and a call without the
                // cache should not carry that space while it waits on the network.
                Some(cache) => Box::pin(self.cached(cache, &request, options, start)).await,
                None => self
                    .complete(&request, options, start)
                    .await
                    .map(|(response, served)| (response, Some(served))),
            }
        }
        .instrument(span.clone())
        .await;
        let _entered = span.enter();
        let (result, served) = match result {
            Ok((response, served)) => (Ok(response), served),
            Err(error) => (Err(error), None),
        };
        #[cfg(feature = "otel")]
        self.record_metrics(&result, cache.is_some(), start);
        match &result {
            Ok(response) => {
                record_response(&span, response);
                self.record(request, response, served);
            }
            Err(error) => {
                record_error(&span, error);
                tracing::warn!(%error, "LM call failed");
            }
        }
        result
    }

    /// The span of one call (`lm.call`, `lm.stream`): named after the operation and model as
    /// the OpenTelemetry conventions for generative AI want (`chat gpt-4o-mini`), with their
    /// attribute names. Its response attributes are empty until the call ends; the messages
    /// are recorded only with content capture on ([`crate::telemetry::set_capture_content`]).
    fn call_span(&self, name: &'static str, request: &LmRequest) -> tracing::Span {
        let s = &self.settings;
        let operation = self.operation();
        let (server, port) = crate::telemetry::server_address(&s.endpoint);
        // One field list for both spans (a span's name must be a literal).
        macro_rules! lm_span {
            ($name:literal) => {
                tracing::info_span!(
                    $name,
                    otel.name = %format_args!("{operation} {}", s.provider.model_id),
                    otel.kind = "client",
                    otel.status_code = tracing::field::Empty,
                    gen_ai.operation.name = operation,
                    gen_ai.provider.name = crate::telemetry::provider_name(s.provider.name),
                    gen_ai.request.model = %s.provider.model_id,
                    gen_ai.request.temperature = request.temperature,
                    gen_ai.request.max_tokens = request.max_tokens.map(i64::from),
                    gen_ai.response.model = tracing::field::Empty,
                    gen_ai.usage.input_tokens = tracing::field::Empty,
                    gen_ai.usage.output_tokens = tracing::field::Empty,
                    gen_ai.input.messages = tracing::field::Empty,
                    gen_ai.output.messages = tracing::field::Empty,
                    server.address = server,
                    server.port = port.map(i64::from),
                    dspex.lm.model = %s.model,
                    dspex.lm.endpoint = %s.endpoint,
                    dspex.lm.served_by = tracing::field::Empty,
                    dspex.cache.hit = tracing::field::Empty,
                    dspex.lm.retries = 0i64,
                    dspex.lm.latency_ms = tracing::field::Empty,
                    dspex.lm.cost_usd = tracing::field::Empty,
                    error.type = tracing::field::Empty,
                )
            };
        }
        let span = if name == "lm.stream" {
            lm_span!("lm.stream")
        } else {
            lm_span!("lm.call")
        };
        if crate::telemetry::capture_content() && !span.is_disabled() {
            span.record(
                crate::telemetry::attr::GEN_AI_INPUT_MESSAGES,
                crate::telemetry::input_messages(&request.messages),
            );
        }
        span
    }

    /// The conventions' `gen_ai.operation.name` of this LM's calls.
    fn operation(&self) -> &'static str {
        match self.settings.model_type {
            ModelType::Chat | ModelType::Responses => "chat",
            ModelType::Text => "text_completion",
        }
    }

    /// The call's duration, tokens, cost and cache use, in the OpenTelemetry metrics.
    #[cfg(feature = "otel")]
    fn record_metrics(
        &self,
        result: &Result<LmResponse, LmError>,
        cache_used: bool,
        start: Instant,
    ) {
        let s = &self.settings;
        let (server, _) = crate::telemetry::server_address(&s.endpoint);
        let (usage, hit, error_type) = match result {
            Ok(r) => (r.usage, r.cache_hit, None),
            Err(e) => (Usage::default(), false, Some(e.kind().dspy_name())),
        };
        crate::telemetry::record_call(&crate::telemetry::CallRecord {
            operation: self.operation(),
            provider: crate::telemetry::provider_name(s.provider.name),
            model: &s.provider.model_id,
            server,
            seconds: start.elapsed().as_secs_f64(),
            cache_hit: cache_used.then_some(hit),
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
            cost_usd: (!hit).then(|| s.price.map(|p| p.cost(usage))).flatten(),
            error_type,
        });
    }

    /// Cache lookup, then one in-flight call per key: identical concurrent requests share it.
    /// With the answer, the endpoint that served it (`None` for a hit or a shared answer).
    async fn cached(
        &self,
        cache: &ResponseCache,
        request: &LmRequest,
        options: &CallOptions,
        start: Instant,
    ) -> Result<(LmResponse, Option<usize>), LmError> {
        let key = CacheKey::for_request(&self.settings.model, self.kind(), request);
        if let Some(hit) = cache.get(&key).await {
            return Ok((hit, None));
        }
        loop {
            let role = {
                let mut inflight = self.inflight();
                match inflight.get(&key) {
                    Some(tx) => Err(tx.subscribe()),
                    None => {
                        let (tx, _) = broadcast::channel(1);
                        inflight.insert(key, tx.clone());
                        Ok(tx)
                    }
                }
            };
            match role {
                Err(mut rx) => match rx.recv().await {
                    // A shared answer cost this caller nothing: report it like a cache hit.
                    Ok(result) => {
                        return result.map(|mut r| {
                            r.cache_hit = true;
                            r.usage = Usage::default();
                            r.latency = start.elapsed();
                            (r, None)
                        });
                    }
                    // The leader was cancelled before answering: take over.
                    Err(_) => continue,
                },
                Ok(tx) => {
                    let guard = InflightGuard {
                        lm: self.clone(),
                        key,
                    };
                    // Another leader may have just finished and stored the answer.
                    if let Some(hit) = cache.get(&key).await {
                        drop(guard);
                        let _ = tx.send(Ok(hit.clone()));
                        return Ok((hit, None));
                    }
                    // With Redis: one call across processes too (a lease, or another process's
                    // answer).
                    #[cfg(feature = "redis")]
                    let lease = match cache.lead(&key).await {
                        crate::distributed::Led::Hit(mut hit) => {
                            hit.latency = start.elapsed();
                            drop(guard);
                            let _ = tx.send(Ok(hit.clone()));
                            return Ok((hit, None));
                        }
                        crate::distributed::Led::Leader(lease) => lease,
                    };
                    let (result, served) = match self.complete(request, options, start).await {
                        Ok((response, served)) => (Ok(response), Some(served)),
                        Err(error) => (Err(error), None),
                    };
                    // Followers get the answer first; the in-flight entry stays until it is
                    // stored, so a caller arriving meanwhile waits for the store and reads it.
                    let _ = tx.send(result.clone());
                    drop(tx);
                    match &result {
                        Ok(response) => {
                            // Stored by a task of its own: a caller that gives up now loses
                            // nothing computed (the answer is cached all the same), and nobody
                            // pays for the same call twice.
                            let cache = cache.clone();
                            let response = response.clone();
                            let store = tokio::spawn(async move {
                                cache.put(key, &response).await;
                                // Stored first: processes waiting on the lease find the answer.
                                #[cfg(feature = "redis")]
                                if let Some(lease) = lease {
                                    lease.release().await;
                                }
                                drop(guard);
                            });
                            let _ = store.await;
                        }
                        Err(_) => drop(guard),
                    }
                    return result.map(|response| (response, served));
                }
            }
        }
    }

    fn inflight(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<CacheKey, broadcast::Sender<Result<LmResponse, LmError>>>>
    {
        self.shared
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// One logical call: retries, then top-up requests when the server returned fewer than `n`
    /// choices. With the answer, the endpoint that served it (the first request's).
    async fn complete(
        &self,
        request: &LmRequest,
        options: &CallOptions,
        start: Instant,
    ) -> Result<(LmResponse, usize), LmError> {
        let (mut response, served_by) = self
            .retrying(options, start, |timeout, deadline| {
                self.guarded(estimate_tokens(request), timeout, deadline, |member| {
                    self.send(member, request)
                })
            })
            .await?;
        self.record_served_by(served_by);
        let wanted = request.n.unwrap_or(1) as usize;
        if response.choices.len() < wanted {
            let single = LmRequest {
                n: None,
                ..request.clone()
            };
            let extra =
                futures_util::future::join_all((response.choices.len()..wanted).map(|_| {
                    self.retrying(options, start, |timeout, deadline| {
                        self.guarded(estimate_tokens(&single), timeout, deadline, |member| {
                            self.send(member, &single)
                        })
                    })
                }))
                .await;
            for r in extra {
                let (r, _) = r?;
                response.usage += r.usage;
                response.choices.extend(r.choices);
            }
        }
        response.latency = start.elapsed();
        Ok((response, served_by))
    }

    /// Runs `attempt` under the caller's retry policy. `attempt` gets the per-attempt timeout
    /// and the overall deadline.
    async fn retrying<T, F, Fut>(
        &self,
        options: &CallOptions,
        start: Instant,
        mut attempt: F,
    ) -> Result<T, LmError>
    where
        F: FnMut(Duration, Option<Instant>) -> Fut,
        Fut: Future<Output = Result<T, LmError>>,
    {
        let policy = options.retry.as_ref().unwrap_or(&self.settings.retry);
        let timeout = options.timeout.unwrap_or(self.settings.timeout);
        let deadline = options
            .deadline
            .or(self.settings.deadline)
            .map(|d| start + d);
        // Built at the first failure: most calls never retry.
        let mut backoff = None;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let span = tracing::debug_span!("lm.attempt", model = %self.settings.model, attempt = attempts);
            let error = match attempt(timeout, deadline).instrument(span).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            let give_up = |last: LmError| {
                if attempts == 1 {
                    last
                } else {
                    LmError::GaveUp {
                        model: self.settings.model.clone(),
                        attempts,
                        elapsed: start.elapsed(),
                        last: Box::new(last),
                    }
                }
            };
            if !error.is_retryable() {
                return Err(give_up(error));
            }
            let schedule = backoff.get_or_insert_with(|| policy.schedule());
            let Some(delay) = schedule.next_delay(error.retry_after()) else {
                return Err(give_up(error));
            };
            let elapsed = start.elapsed();
            if policy.max_elapsed.is_some_and(|max| elapsed + delay > max)
                || deadline.is_some_and(|d| Instant::now() + delay >= d)
            {
                return Err(give_up(error));
            }
            tracing::info!(model = %self.settings.model, attempt = attempts, ?delay, %error, "retrying LM call");
            tracing::Span::current().record("dspex.lm.retries", i64::from(attempts));
            #[cfg(feature = "otel")]
            crate::telemetry::record_retry(&self.settings.provider.model_id);
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt behind the breaker, the limits and the timeout; its usage settles the
    /// token-rate budget. Returns the index of the endpoint that answered.
    ///
    /// `send` makes the exchange's future only once it may run, right inside the timeout: a
    /// future passed in ready-made would be held twice in this one's state (as the argument and
    /// inside the timeout), and every call in flight pays for its size.
    async fn guarded<T: HasUsage, Fut: Future<Output = Result<T, Failed>>>(
        &self,
        estimated_tokens: u64,
        timeout: Duration,
        deadline: Option<Instant>,
        send: impl FnMut(usize) -> Fut,
    ) -> Result<(T, usize), LmError> {
        let (value, slot, served) = self
            .admitted(estimated_tokens, timeout, deadline, false, send)
            .await?;
        self.shared
            .limiter
            .settle(&slot, value.usage().total_tokens);
        Ok((value, served.index))
    }

    /// Records in the current span (`lm.call`, `lm.stream`) which endpoint served the call,
    /// when the LM has several.
    fn record_served_by(&self, index: usize) {
        let fleet = &self.shared.fleet;
        if fleet.members.len() > 1 {
            tracing::Span::current().record(
                "dspex.lm.served_by",
                tracing::field::display(&fleet.member(index).endpoint),
            );
        }
    }

    /// One attempt behind the breaker, the limits and the timeout, returning the limits' slot
    /// and the endpoint's lease with the result: a stream holds them until it ends. The
    /// breaker's admission is a guard: dropped with this future, it gives a probe slot back.
    ///
    /// The endpoint is picked by the fleet's balancer (the only one, for a single base URL). A
    /// failure before any byte of the answer ([`fleet::fails_over`]) is sent again at once to
    /// another endpoint not tried yet, inside this same attempt and its concurrency slot; a
    /// per-attempt timeout fails over only when `timeout_is_early` (a streamed attempt, which
    /// ends at the status line).
    async fn admitted<T, Fut: Future<Output = Result<T, Failed>>>(
        &self,
        estimated_tokens: u64,
        timeout: Duration,
        deadline: Option<Instant>,
        timeout_is_early: bool,
        mut send: impl FnMut(usize) -> Fut,
    ) -> Result<(T, Slot, ServedBy), LmError> {
        let s = &self.settings;
        let fleet = &self.shared.fleet;
        let (mut index, mut admission) =
            fleet.pick(0).map_err(|retry_in| LmError::BreakerOpen {
                model: s.model.clone(),
                endpoint: s.endpoint.clone(),
                retry_in,
            })?;
        #[cfg(feature = "otel")]
        let waiting = Instant::now();
        let slot = match self
            .shared
            .limiter
            .acquire(estimated_tokens, deadline)
            .await
        {
            Ok(slot) => {
                #[cfg(feature = "otel")]
                crate::telemetry::record_limiter_wait(&s.provider.model_id, waiting.elapsed());
                slot
            }
            // The admission is dropped unsettled: a probe slot goes back.
            Err(wait) => {
                return Err(LmError::LocalRateLimit {
                    model: s.model.clone(),
                    message: format!("the next slot is {wait:?} away, past the call's deadline"),
                });
            }
        };
        let mut tried: fleet::Tried = 0;
        loop {
            let member = fleet.member(index);
            let lease = Lease::new(member);
            let (limit, by_deadline) = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    (timeout.min(left), left < timeout)
                }
                None => (timeout, false),
            };
            let result = match tokio::time::timeout(limit, send(index)).await {
                Ok(result) => result,
                Err(_) if by_deadline => Err(Failed::from(LmError::DeadlineExceeded {
                    model: s.model.clone(),
                    endpoint: member.endpoint.clone(),
                    deadline: limit,
                    attempts: 1,
                })),
                Err(_) => Err(Failed {
                    error: LmError::Timeout {
                        model: s.model.clone(),
                        endpoint: member.endpoint.clone(),
                        timeout,
                    },
                    before_answer: timeout_is_early,
                }),
            };
            let failure = result
                .as_ref()
                .err()
                .is_some_and(|f| f.error.counts_against_endpoint());
            admission.record(failure);
            #[cfg(feature = "otel")]
            crate::telemetry::record_breaker(&member.endpoint, &member.breaker.state());
            member.count(result.is_ok(), failure);
            let failed = match result {
                Ok(value) => {
                    return Ok((
                        value,
                        slot,
                        ServedBy {
                            index,
                            _lease: lease,
                        },
                    ));
                }
                Err(failed) => failed,
            };
            drop(lease);
            tried |= 1 << index;
            let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
            if !(failed.before_answer && fleet::fails_over(&failed.error)) || out_of_time {
                return Err(failed.error);
            }
            match fleet.pick(tried) {
                Ok((next, next_admission)) => {
                    member.count_failover();
                    tracing::info!(
                        model = %s.model,
                        from = %member.endpoint,
                        to = %fleet.member(next).endpoint,
                        error = %failed.error,
                        "failing over to another endpoint"
                    );
                    index = next;
                    admission = next_admission;
                }
                Err(_) => return Err(failed.error),
            }
        }
    }

    /// The HTTP exchange of one attempt with the endpoint at `index`.
    async fn send(&self, index: usize, request: &LmRequest) -> Result<LmResponse, Failed> {
        self.record_request();
        let s = &self.settings;
        let member = self.shared.fleet.member(index);
        let started = Instant::now();
        let target = self.target();
        // Serialized before the exchange, so the body's borrows are not held while it runs.
        let body = s
            .provider
            .protocol
            .body(target, request, false)
            .map_err(|feature| protocol::unsupported(&s.model, feature))?;
        let response = self
            .post(member, &member.urls.call, Bytes::from(body))
            .await
            .map_err(Failed::early)?;
        let bytes = response
            .bytes(s.max_response_bytes)
            .await
            .map_err(|e| self.transport_error(member, &e))?;
        let decoded =
            s.provider
                .protocol
                .decode(target, &bytes)
                .map_err(|unusable| match unusable {
                    protocol::Unusable::Unreadable(message) => {
                        self.decode_error(member, message, &bytes)
                    }
                    protocol::Unusable::Failed { status, failure } => {
                        self.provider_error(member, status, failure, None)
                    }
                })?;
        Ok(LmResponse {
            choices: decoded.choices,
            usage: decoded.usage,
            model: decoded.model.unwrap_or_else(|| s.provider.model_id.clone()),
            latency: started.elapsed(),
            cache_hit: false,
        })
    }

    /// What the protocol needs to know of the model.
    fn target(&self) -> protocol::Target<'_> {
        let s = &self.settings;
        protocol::Target {
            model_id: &s.provider.model_id,
            model_type: s.model_type,
            max_tokens_key: s.provider.max_tokens_key,
            api_version: s.api_version.as_deref(),
        }
    }

    fn decode_error(&self, member: &Member, message: String, raw: &[u8]) -> LmError {
        LmError::Decode {
            model: self.settings.model.clone(),
            endpoint: member.endpoint.clone(),
            message,
            raw: excerpt(&String::from_utf8_lossy(raw), 500),
        }
    }

    /// POSTs a JSON body and reads a typed JSON answer (with its raw bytes, for error messages),
    /// mapping every failure to a typed error.
    async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        member: &Member,
        url: &Endpoint,
        body: Bytes,
    ) -> Result<(T, Bytes), Failed> {
        let response = self.post(member, url, body).await.map_err(Failed::early)?;
        let bytes = response
            .bytes(self.settings.max_response_bytes)
            .await
            .map_err(|e| self.transport_error(member, &e))?;
        match serde_json::from_slice(&bytes) {
            Ok(parsed) => Ok((parsed, bytes)),
            Err(e) => Err(self
                .decode_error(member, format!("invalid JSON: {e}"), &bytes)
                .into()),
        }
    }

    /// POSTs to one of `member`'s URLs and checks the status; the body is left unread. Every
    /// error of this function came before any byte of the answer (a failover candidate).
    async fn post(
        &self,
        member: &Member,
        url: &Endpoint,
        body: Bytes,
    ) -> Result<HttpResponse, LmError> {
        let s = &self.settings;
        let response = member
            .http
            .post(url, &s.headers, s.auth.as_ref().map(|(n, v)| (n, v)), body)
            .await
            .map_err(|e| self.transport_error(member, &e))?;
        if (200..300).contains(&response.status()) {
            return Ok(response);
        }
        // Boxed: the rare path should not make every call in flight larger.
        Err(Box::pin(self.status_error(member, response)).await)
    }

    /// The typed error for an answer that is not 2xx: the provider's code and message, read by
    /// the protocol, classified with the status ([`LmError::from_provider`]).
    async fn status_error(&self, member: &Member, response: HttpResponse) -> LmError {
        let s = &self.settings;
        let status = response.status();
        let retry_after = response.headers().and_then(retry_after);
        let raw = response
            .bytes(s.max_response_bytes)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&raw);
        let failure = s.provider.protocol.error(&text);
        let retry_after = retry_after.or_else(|| s.provider.protocol.retry_after_in_body(&text));
        self.provider_error(member, status, failure, retry_after)
    }

    /// The typed error of a provider's error answer (an error status, an error event in a
    /// stream, a refusal inside a success), its message cut to 500 characters.
    fn provider_error(
        &self,
        member: &Member,
        status: u16,
        failure: protocol::Failure,
        retry_after: Option<Duration>,
    ) -> LmError {
        let s = &self.settings;
        LmError::from_provider(
            s.model.clone(),
            member.endpoint.clone(),
            status,
            failure.code,
            excerpt(&failure.message, 500),
            retry_after,
        )
    }

    fn transport_error(&self, member: &Member, e: &TransportError) -> LmError {
        let s = &self.settings;
        if e.too_large {
            return LmError::ResponseTooLarge {
                model: s.model.clone(),
                endpoint: member.endpoint.clone(),
                limit: s.max_response_bytes,
            };
        }
        if e.timeout {
            return LmError::Timeout {
                model: s.model.clone(),
                endpoint: member.endpoint.clone(),
                timeout: s.timeout,
            };
        }
        LmError::Connect {
            model: s.model.clone(),
            endpoint: member.endpoint.clone(),
            message: e.message.clone(),
        }
    }

    fn merge_defaults(&self, request: &mut LmRequest) {
        let s = &self.settings;
        request.temperature = request.temperature.or(s.temperature);
        request.max_tokens = request.max_tokens.or(s.max_tokens);
        for (k, v) in &s.extra {
            request.extra.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }

    fn kind(&self) -> &'static str {
        match self.settings.model_type {
            ModelType::Chat => "dspex.chat",
            ModelType::Text => "dspex.text",
            ModelType::Responses => "dspex.responses",
        }
    }

    /// A request about to be sent, in the usage totals and trackers.
    pub(crate) fn record_request(&self) {
        let model = &self.settings.model;
        self.shared
            .totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record_request(model);
        record_request_current(model);
    }

    /// Usage totals, trackers, history and a trace event for a finished call.
    fn record(&self, mut request: LmRequest, response: &LmResponse, served: Option<usize>) {
        let s = &self.settings;
        let cost = (!response.cache_hit)
            .then(|| s.price.map(|p| p.cost(response.usage)))
            .flatten();
        self.shared
            .totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(&s.model, response.usage, response.cache_hit, s.price);
        record_current(&s.model, response.usage, response.cache_hit, s.price);
        // The current span is the call's (`lm.call`, or `lm.stream` for a streamed call).
        tracing::Span::current().record("dspex.lm.cost_usd", cost);
        tracing::debug!("LM call");
        history::record(&self.shared.history, || HistoryEntry {
            timestamp: SystemTime::now(),
            model: s.model.clone(),
            messages: std::mem::take(&mut request.messages),
            request,
            outputs: response.texts().map(str::to_string).collect(),
            usage: response.usage,
            cost_usd: cost,
            cache_hit: response.cache_hit,
            latency: response.latency,
            endpoint: served.map(|i| self.shared.fleet.member(i).endpoint.clone()),
        });
    }

    /// Embeds `inputs` with the provider's `/embeddings` endpoint (one vector per input, in
    /// order), under the LM's retry policy, limits and breaker. Not cached.
    ///
    /// # Errors
    ///
    /// [`LmError::UnsupportedFeature`] for a provider whose protocol has no embeddings
    /// endpoint (Anthropic's); otherwise what a call fails with.
    pub async fn embed<S: AsRef<str>>(&self, inputs: &[S]) -> Result<Embeddings, LmError> {
        let fleet = &self.shared.fleet;
        if fleet.member(0).urls.embeddings.is_none() {
            return Err(protocol::unsupported(
                &self.settings.model,
                format!(
                    "embeddings: the {} protocol has no embeddings endpoint",
                    self.settings.provider.protocol.name()
                ),
            ));
        }
        let start = Instant::now();
        let inputs: Vec<&str> = inputs.iter().map(AsRef::as_ref).collect();
        let body = Bytes::from(
            serde_json::to_vec(&EmbeddingBody {
                model: &self.settings.provider.model_id,
                input: &inputs,
            })
            .unwrap_or_default(),
        );
        let estimate = inputs.iter().map(|t| t.len() as u64 / 4 + 1).sum();
        let options = CallOptions::default();
        self.retrying(&options, start, |timeout, deadline| {
            let (body, inputs) = (&body, &inputs);
            self.guarded(estimate, timeout, deadline, move |index| async move {
                let member = fleet.member(index);
                let Some(url) = &member.urls.embeddings else {
                    return Err(Failed::from(protocol::unsupported(
                        &self.settings.model,
                        "embeddings".to_string(),
                    )));
                };
                let (mut parsed, bytes) = self
                    .post_json::<EmbeddingResponse>(member, url, body.clone())
                    .await?;
                let vectors = parsed
                    .vectors(inputs.len())
                    .map_err(|message| self.decode_error(member, message, &bytes))?;
                Ok(Embeddings {
                    vectors,
                    usage: parsed.usage(),
                    model: parsed
                        .model
                        .take()
                        .unwrap_or_else(|| self.settings.provider.model_id.clone()),
                })
            })
        })
        .await
        .map(|(embeddings, _)| embeddings)
    }
}

/// The endpoint that answered an attempt, and its lease: the request counts as outstanding on
/// it until this is dropped (a stream keeps it until it ends).
struct ServedBy {
    index: usize,
    _lease: Lease,
}

/// Removes the in-flight entry when the leader finishes or is cancelled, so followers of a
/// cancelled leader take over instead of waiting forever.
struct InflightGuard {
    lm: LM,
    key: CacheKey,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.lm.inflight().remove(&self.key);
    }
}

/// Results whose token use settles the token-rate bucket.
trait HasUsage {
    fn usage(&self) -> Usage;
}

impl HasUsage for LmResponse {
    fn usage(&self) -> Usage {
        self.usage
    }
}

impl HasUsage for Embeddings {
    fn usage(&self) -> Usage {
        self.usage
    }
}

impl LanguageModel for LM {
    fn model(&self) -> &str {
        &self.settings.model
    }

    fn call(&self, request: LmRequest) -> BoxFuture<'_, Result<LmResponse, LmError>> {
        Box::pin(LM::call(self, request))
    }

    fn stream(&self, request: LmRequest) -> BoxFuture<'_, Result<EventStream, LmError>> {
        Box::pin(async move {
            let events = LM::stream(self, request).await?;
            Ok(Box::pin(events) as EventStream)
        })
    }

    fn default_temperature(&self) -> Option<f64> {
        self.settings.temperature
    }

    fn supports_reasoning(&self) -> bool {
        self.settings.reasoning
    }
}

/// A finished call's response attributes on its span.
pub(super) fn record_response(span: &tracing::Span, response: &LmResponse) {
    span.record("dspex.cache.hit", response.cache_hit);
    span.record("gen_ai.response.model", response.model.as_str());
    // Signed: OpenTelemetry has no unsigned integers (an unsigned field is exported as text).
    span.record(
        "gen_ai.usage.input_tokens",
        signed(response.usage.prompt_tokens),
    );
    span.record(
        "gen_ai.usage.output_tokens",
        signed(response.usage.completion_tokens),
    );
    span.record(
        "dspex.lm.latency_ms",
        response.latency.as_secs_f64() * 1000.0,
    );
    if crate::telemetry::capture_content() && !span.is_disabled() {
        span.record(
            crate::telemetry::attr::GEN_AI_OUTPUT_MESSAGES,
            crate::telemetry::output_messages(response.texts()),
        );
    }
}

/// `n` as a signed attribute value (saturating).
fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A failed call's error class and status on its span.
pub(super) fn record_error(span: &tracing::Span, error: &LmError) {
    span.record("error.type", error.kind().dspy_name());
    span.record("otel.status_code", "ERROR");
}

/// A rough upper bound of the tokens a request will use, for the token-rate limit: four
/// characters a token for the prompt, plus the completion limit (or 256).
fn estimate_tokens(request: &LmRequest) -> u64 {
    prompt_tokens(request)
        + u64::from(request.max_tokens.unwrap_or(256)) * u64::from(request.n.unwrap_or(1))
}

/// The prompt's tokens, estimated as its characters / 4.
fn prompt_tokens(request: &LmRequest) -> u64 {
    let chars: usize = request
        .messages
        .iter()
        .map(|m: &Message| m.content.size_hint())
        .sum();
    chars as u64 / 4
}

/// `Retry-After` (seconds, fractional allowed, or an HTTP date), else `retry-after-ms`.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(v) = get("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
        }
        if let Some(at) = parse_http_date(v) {
            return Some(
                at.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO),
            );
        }
    }
    get("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').filter_map(|x| x.parse().ok()).collect();
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec;
    u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "0.25".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        h.insert(
            "retry-after",
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after-ms", "100".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(100)));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(100)));
    }

    #[test]
    fn configuration_errors_and_secrets() {
        let err = LM::builder("hosted_vllm/m")
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a base URL"), "{err}");
        let err = LM::builder("openai/m")
            .api_base("ftp://x")
            .build()
            .unwrap_err()
            .to_string();
        assert!(err.contains("must start with http"), "{err}");
        let lm = LM::builder("openai/m")
            .api_base("http://user:pw@127.0.0.1:9/v1")
            .api_key("sk-very-secret")
            .header("x-api-key", "also-secret")
            .build()
            .unwrap();
        let debug = format!("{lm:?}");
        assert!(
            !debug.contains("sk-very-secret") && !debug.contains("also-secret"),
            "{debug}"
        );
        assert!(!debug.contains("pw@"), "{debug}");
        assert_eq!(lm.endpoint(), "http://127.0.0.1:9/v1");
    }

    /// Every OpenAI-compatible prefix builds from its key variable alone, at its public base,
    /// with the key as a bearer token; a base variable moves it.
    #[test]
    fn providers_build_from_their_environment_variables() {
        let cases = [
            (
                "openai/gpt-4o-mini",
                "OPENAI_API_KEY",
                "https://api.openai.com/v1",
            ),
            (
                "groq/llama-3.3-70b",
                "GROQ_API_KEY",
                "https://api.groq.com/openai/v1",
            ),
            (
                "openrouter/anthropic/claude-3.5-sonnet",
                "OPENROUTER_API_KEY",
                "https://openrouter.ai/api/v1",
            ),
            (
                "together_ai/meta-llama/Llama-3-70b",
                "TOGETHERAI_API_KEY",
                "https://api.together.ai/v1",
            ),
            (
                "deepseek/deepseek-chat",
                "DEEPSEEK_API_KEY",
                "https://api.deepseek.com/beta",
            ),
            (
                "mistral/mistral-large-latest",
                "MISTRAL_API_KEY",
                "https://api.mistral.ai/v1",
            ),
            ("xai/grok-3", "XAI_API_KEY", "https://api.x.ai/v1"),
            (
                "fireworks_ai/accounts/fireworks/models/llama",
                "FIREWORKS_API_KEY",
                "https://api.fireworks.ai/inference/v1",
            ),
        ];
        for (model, key_var, base) in cases {
            let env = |name: &str| (name == key_var).then(|| "k-env".to_string());
            let lm = LM::builder(model)
                .build_in(&env)
                .unwrap_or_else(|e| panic!("{model}: {e}"));
            assert_eq!(lm.endpoint(), base, "{model}");
            assert_eq!(
                lm.settings.api_key.as_ref().map(ApiKey::expose),
                Some("k-env")
            );
            let (name, _) = lm.settings.auth.as_ref().unwrap();
            assert_eq!(name.as_str(), "authorization", "{model}");
            // Without the key, a typed configuration error names the variable.
            let err = LM::builder(model).build_in(&|_| None).unwrap_err();
            assert!(err.to_string().contains(key_var), "{model}: {err}");
            assert_eq!(err.kind(), crate::LmErrorKind::Configuration);
        }
        let env = |name: &str| match name {
            "GROQ_API_KEY" => Some("k".to_string()),
            "GROQ_API_BASE" => Some("http://127.0.0.1:9/openai/v1/".to_string()),
            _ => None,
        };
        let lm = LM::builder("groq/llama").build_in(&env).unwrap();
        assert_eq!(lm.endpoint(), "http://127.0.0.1:9/openai/v1");
    }

    #[test]
    fn azure_takes_its_base_key_and_api_version_from_the_environment() {
        let env = |name: &str| match name {
            "AZURE_API_BASE" => Some("https://res.openai.azure.com/".to_string()),
            "AZURE_API_KEY" => Some("az-key".to_string()),
            "AZURE_API_VERSION" => Some("2024-10-21".to_string()),
            _ => None,
        };
        let lm = LM::builder("azure/my-gpt-4o").build_in(&env).unwrap();
        assert_eq!(lm.endpoint(), "https://res.openai.azure.com");
        assert_eq!(
            lm.shared.fleet.member(0).urls.call.url.as_str(),
            "https://res.openai.azure.com/openai/deployments/my-gpt-4o/chat/completions?api-version=2024-10-21"
        );
        let (name, value) = lm.settings.auth.as_ref().unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("api-key", "az-key")
        );
        assert!(value.is_sensitive());
        // The builder's version wins; without a base, a typed error names the variables.
        let lm = LM::builder("azure/d")
            .api_version("2025-01-01")
            .build_in(&env)
            .unwrap();
        assert!(
            lm.shared
                .fleet
                .member(0)
                .urls
                .call
                .url
                .as_str()
                .ends_with("?api-version=2025-01-01")
        );
        let err = LM::builder("azure/d")
            .build_in(&|n| (n == "AZURE_API_KEY").then(|| "k".to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("AZURE_API_BASE"), "{err}");
    }

    /// DSPy's rule for OpenAI's reasoning models, with its message; their limit goes out as
    /// `max_completion_tokens` whatever the provider.
    #[test]
    fn reasoning_models_follow_dspys_rules() {
        for model in [
            "openai/o3",
            "openai/o4-mini",
            "openai/gpt-5",
            "azure/gpt-5-mini",
            "openai/o1-2024-12-17",
        ] {
            let err = LM::builder(model)
                .api_key("k")
                .api_base("http://127.0.0.1:9/v1")
                .temperature(0.7)
                .build()
                .unwrap_err();
            assert!(
                err.to_string().contains("OpenAI's reasoning models require passing temperature=1.0 or None and max_tokens >= 16000 or None"),
                "{model}: {err}"
            );
            assert!(
                LM::builder(model)
                    .api_key("k")
                    .api_base("http://127.0.0.1:9/v1")
                    .max_tokens(1000)
                    .build()
                    .is_err()
            );
            let lm = LM::builder(model)
                .api_key("k")
                .api_base("http://127.0.0.1:9/v1")
                .temperature(1.0)
                .max_tokens(16_000)
                .build()
                .unwrap();
            assert_eq!(
                lm.settings.provider.max_tokens_key, "max_completion_tokens",
                "{model}"
            );
        }
        // Not reasoning models: any temperature, and other providers keep `max_tokens`.
        for model in [
            "openai/gpt-4o",
            "openai/gpt-5-chat-latest",
            "openai/o1-preview",
            "groq/llama-3.3-70b",
        ] {
            assert!(!provider::is_openai_reasoning_model(model), "{model}");
        }
        let lm = LM::builder("groq/llama")
            .api_key("k")
            .temperature(0.3)
            .max_tokens(10)
            .build()
            .unwrap();
        assert_eq!(lm.settings.provider.max_tokens_key, "max_tokens");
        for model in [
            "gpt-5.1",
            "gpt-5.2-codex",
            "o5-pro",
            "openrouter/openai/o3-mini-2025-01-31",
        ] {
            assert!(provider::is_openai_reasoning_model(model), "{model}");
        }
        for model in [
            "gpt-5.1-chat",
            "gpt-5x",
            "gpt-5.",
            "o2",
            "o3-large",
            "o3-2025-1-31",
        ] {
            assert!(!provider::is_openai_reasoning_model(model), "{model}");
        }
    }

    #[test]
    fn published_prices_are_looked_up_and_unknown_models_have_none() {
        let mini = Price::for_model("openai/gpt-4o-mini").expect("listed");
        assert_eq!(
            (mini.input_per_million, mini.output_per_million),
            (0.15, 0.6)
        );
        assert_eq!(Price::for_model("gpt-4o-mini"), Some(mini));
        assert!(Price::for_model("anthropic/claude-sonnet-4-5").is_some());
        assert!(Price::for_model("gemini/gemini-2.5-flash").is_some());
        assert_eq!(Price::for_model("openai/mock-model"), None);
        assert_eq!(Price::for_model("hosted_vllm/gpt-4o-mini"), None);
        let lm = LM::builder("openai/gpt-4o-mini")
            .api_key("k")
            .build()
            .unwrap();
        assert_eq!(lm.settings.price, Some(mini));
        let own = Price {
            input_per_million: 1.0,
            output_per_million: 2.0,
        };
        let lm = LM::builder("openai/gpt-4o-mini")
            .api_key("k")
            .price(own)
            .build()
            .unwrap();
        assert_eq!(lm.settings.price, Some(own));
    }
}
