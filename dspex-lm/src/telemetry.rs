//! Telemetry of the LM layer: the names its spans and metrics use, the content-capture switch,
//! and the metric recording sites.
//!
//! The LM call is a `tracing` span named `lm.call` (`lm.stream` for a streamed call) whose
//! OpenTelemetry name is `{gen_ai.operation.name} {gen_ai.request.model}` (`chat gpt-4o-mini`),
//! with the [OpenTelemetry semantic conventions for generative AI][semconv] as attribute names
//! where they exist ([`attr`]) and `dspex.*` names for the rest. No attribute carries prompt or
//! completion text unless [content capture](set_capture_content) is on, and none ever carries
//! an API key.
//!
//! Metrics ([`metric`]) are recorded through the global OpenTelemetry meter provider when the
//! crate's `otel` feature is on; without it the recording sites compile to nothing.
//!
//! [semconv]: https://opentelemetry.io/docs/specs/semconv/gen-ai/

use std::sync::atomic::{AtomicBool, Ordering};

/// Attribute (span field) names. `gen_ai.*`, `server.*` and `error.type` are the OpenTelemetry
/// semantic conventions'; `dspex.*` are dspex's own.
pub mod attr {
    /// The operation: `chat`, `text_completion`, `execute_tool`.
    pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
    /// The provider (`openai`, `anthropic`, `gcp.gemini`, `azure.ai.openai`, or the model
    /// string's prefix for other OpenAI-compatible servers).
    pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
    /// The model asked for (without the provider prefix: `gpt-4o-mini`).
    pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
    /// The model that answered, as the response names it.
    pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
    /// Sampling temperature of the request.
    pub const GEN_AI_REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
    /// Most tokens to generate.
    pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
    /// Prompt tokens of the call (0 for a cache hit).
    pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    /// Completion tokens of the call (0 for a cache hit).
    pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    /// The request's messages as JSON: only with content capture on.
    pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
    /// The completions as JSON: only with content capture on.
    pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
    /// The tool's name (a ReAct tool call).
    pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
    /// `input` or `output`, on the token usage metric.
    pub const GEN_AI_TOKEN_TYPE: &str = "gen_ai.token.type";
    /// Host of the endpoint the LM calls.
    pub const SERVER_ADDRESS: &str = "server.address";
    /// Port of the endpoint the LM calls.
    pub const SERVER_PORT: &str = "server.port";
    /// The class of a failure (an LM error's DSPy class name, `LMRateLimitError`, …).
    pub const ERROR_TYPE: &str = "error.type";
    /// The LM's base URL(s), credentials removed.
    pub const DSPEX_LM_ENDPOINT: &str = "dspex.lm.endpoint";
    /// The endpoint that served the call, when the LM has several.
    pub const DSPEX_LM_SERVED_BY: &str = "dspex.lm.served_by";
    /// Whether the answer came from the response cache (or a coalesced identical call).
    pub const DSPEX_CACHE_HIT: &str = "dspex.cache.hit";
    /// Attempts after the first one.
    pub const DSPEX_LM_RETRIES: &str = "dspex.lm.retries";
    /// Cost of the call in USD, when the LM has a price.
    pub const DSPEX_LM_COST_USD: &str = "dspex.lm.cost_usd";
    /// A bridge request's operation (`call`, `create`, `close_session`, …).
    pub const DSPEX_BRIDGE_OP: &str = "dspex.bridge.op";
    /// How a bridge session ended: `closed` (explicitly, or removed or evicted from its
    /// store), `expired` (idle past its TTL) or `dropped` (its last handle went).
    pub const DSPEX_BRIDGE_SESSION_END: &str = "dspex.bridge.session.end";
}

/// Metric names. `gen_ai.client.*` are the OpenTelemetry semantic conventions'.
pub mod metric {
    /// Histogram, seconds: duration of each LM call (retries and waits included), with
    /// `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
    /// `server.address`, `dspex.cache.hit` and, on failure, `error.type`.
    pub const GEN_AI_CLIENT_OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
    /// Histogram, tokens: input and output tokens of each LM call that reached the provider
    /// (`gen_ai.token.type` = `input` | `output`).
    pub const GEN_AI_CLIENT_TOKEN_USAGE: &str = "gen_ai.client.token.usage";
    /// Counter, USD: cost of the LM calls whose LM has a price.
    pub const DSPEX_LM_COST: &str = "dspex.lm.cost";
    /// Counter: LM calls answered by the response cache.
    pub const DSPEX_LM_CACHE_HITS: &str = "dspex.lm.cache.hits";
    /// Counter: LM calls that looked in the response cache and missed.
    pub const DSPEX_LM_CACHE_MISSES: &str = "dspex.lm.cache.misses";
    /// Counter: LM attempts retried under the caller's retry policy.
    pub const DSPEX_LM_RETRIES: &str = "dspex.lm.retries";
    /// Gauge: each endpoint's circuit breaker after an attempt (0 closed, 1 half-open,
    /// 2 open), with `server.address` and `dspex.lm.endpoint`.
    pub const DSPEX_LM_BREAKER_STATE: &str = "dspex.lm.breaker.state";
    /// Histogram, seconds: time an LM call waited for the concurrency and rate limits.
    pub const DSPEX_LM_LIMITER_WAIT: &str = "dspex.lm.limiter.wait";
    /// Gauge: busy workers of a bridge pool.
    pub const DSPEX_BRIDGE_POOL_BUSY: &str = "dspex.bridge.pool.busy";
    /// Gauge: busy workers of a bridge pool as a fraction of its size (0 to 1).
    pub const DSPEX_BRIDGE_POOL_UTILIZATION: &str = "dspex.bridge.pool.utilization";
    /// Counter: calls of the bridge router's programs, by the route that served them
    /// (`dspex.route` = `native` | `bridged`) and, after a fallback, the route that failed
    /// first (`dspex.route.fallback_from`).
    pub const DSPEX_BRIDGE_ROUTE_CALLS: &str = "dspex.bridge.route.calls";
    /// Gauge: calls of a bridge pool waiting for a worker.
    pub const DSPEX_BRIDGE_POOL_QUEUE_DEPTH: &str = "dspex.bridge.pool.queue.depth";
    /// Histogram, seconds: time a bridge request waited to check out a worker (each attempt).
    pub const DSPEX_BRIDGE_POOL_CHECKOUT_WAIT: &str = "dspex.bridge.pool.checkout.wait";
    /// Histogram, seconds: duration of each bridge request (checkout and retries included),
    /// with `dspex.bridge.op` and, on failure, `error.type` (the `BridgeError` variant).
    pub const DSPEX_BRIDGE_POOL_CALL_DURATION: &str = "dspex.bridge.pool.call.duration";
    /// Counter: failed bridge requests, with `dspex.bridge.op` and `error.type` (the
    /// `BridgeError` variant: `Remote`, `Timeout`, `WorkerCrashed`, `SessionLost`, …).
    pub const DSPEX_BRIDGE_POOL_CALL_ERRORS: &str = "dspex.bridge.pool.call.errors";
    /// Counter: workers started to replace others or to grow a bridge pool.
    pub const DSPEX_BRIDGE_POOL_RESTARTS: &str = "dspex.bridge.pool.restarts";
    /// Up-down counter: open bridge sessions (opened minus ended).
    pub const DSPEX_BRIDGE_POOL_SESSIONS_LIVE: &str = "dspex.bridge.pool.sessions.live";
    /// Counter: bridge sessions ended, with `dspex.bridge.session.end` (`closed`, `expired`,
    /// `dropped`).
    pub const DSPEX_BRIDGE_POOL_SESSIONS_ENDED: &str = "dspex.bridge.pool.sessions.ended";
}

static CAPTURE_CONTENT: AtomicBool = AtomicBool::new(false);

/// Turns content capture on or off for the process: with it on, the LM call spans carry the
/// request's messages and the completions as `gen_ai.input.messages` and
/// `gen_ai.output.messages` (JSON), and the tool spans their arguments and results. Off by
/// default: prompts may hold personal data. API keys are never recorded either way.
///
/// `dspex::telemetry::otel::OtelConfig::capture_content` sets it when the exporter starts.
pub fn set_capture_content(on: bool) {
    CAPTURE_CONTENT.store(on, Ordering::Relaxed);
}

/// Whether content capture is on ([`set_capture_content`]).
pub fn capture_content() -> bool {
    CAPTURE_CONTENT.load(Ordering::Relaxed)
}

/// Messages as the conventions' `gen_ai.input.messages` has them: `[{"role": "user", "parts":
/// [{"type": "text", "content": "…"}]}, …]`. Images, audio and files appear as the placeholders
/// `inspect_history` prints, not their bytes.
pub(crate) fn input_messages(messages: &[crate::Message]) -> String {
    let messages: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            serde_json::json!({
                "role": m.role,
                "parts": [{"type": "text", "content": m.content.to_string()}],
            })
        })
        .collect();
    serde_json::Value::Array(messages).to_string()
}

/// Completions as the conventions' `gen_ai.output.messages` has them (assistant messages).
pub(crate) fn output_messages<'a>(texts: impl Iterator<Item = &'a str>) -> String {
    let messages: Vec<serde_json::Value> = texts
        .map(|t| {
            serde_json::json!({
                "role": "assistant",
                "parts": [{"type": "text", "content": t}],
            })
        })
        .collect();
    serde_json::Value::Array(messages).to_string()
}

/// The semantic conventions' provider name for a dspex provider prefix.
pub(crate) fn provider_name(prefix: &str) -> &str {
    match prefix {
        "gemini" | "google" => "gcp.gemini",
        "vertex_ai" => "gcp.vertex_ai",
        "azure" => "azure.ai.openai",
        other => other,
    }
}

/// Host and port of a base URL (`http://h:8000/v1` → `("h", Some(8000))`); the whole string
/// when it does not look like a URL. A fleet's endpoint list gives its first member's.
pub(crate) fn server_address(endpoint: &str) -> (&str, Option<u16>) {
    let first = endpoint.split(',').next().unwrap_or(endpoint);
    let rest = first.split_once("://").map_or(first, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if authority.starts_with('[') {
        // An IPv6 literal: `[::1]:8000`.
        return match authority.rsplit_once("]:") {
            Some((host, port)) => (&host[1..], port.parse().ok()),
            None => (
                authority.trim_start_matches('[').trim_end_matches(']'),
                None,
            ),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()),
        None => (authority, None),
    }
}

/// What one finished LM call tells the metrics.
#[cfg(feature = "otel")]
pub(crate) struct CallRecord<'a> {
    pub(crate) operation: &'static str,
    pub(crate) provider: &'a str,
    pub(crate) model: &'a str,
    pub(crate) server: &'a str,
    pub(crate) seconds: f64,
    /// `None` when the cache was not used for the call.
    pub(crate) cache_hit: Option<bool>,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) cost_usd: Option<f64>,
    pub(crate) error_type: Option<&'static str>,
}

#[cfg(feature = "otel")]
pub use otel::reset_instruments;
#[cfg(feature = "otel")]
pub(crate) use otel::{record_breaker, record_call, record_limiter_wait, record_retry};
#[cfg(feature = "otel")]
#[doc(hidden)]
pub use otel::{
    record_pool, record_pool_call, record_pool_checkout_wait, record_pool_queue,
    record_pool_restart, record_pool_session_ended, record_pool_session_opened, record_route,
};

#[cfg(feature = "otel")]
mod otel {
    use super::{CallRecord, attr, metric};
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, UpDownCounter};
    use std::sync::{Arc, RwLock};

    /// The instruments, made from the global meter provider of the time.
    struct Instruments {
        duration: Histogram<f64>,
        tokens: Histogram<u64>,
        cost: Counter<f64>,
        cache_hits: Counter<u64>,
        cache_misses: Counter<u64>,
        retries: Counter<u64>,
        breaker: Gauge<u64>,
        limiter_wait: Histogram<f64>,
        pool_busy: Gauge<u64>,
        pool_utilization: Gauge<f64>,
        route_calls: Counter<u64>,
        pool_queue: Gauge<u64>,
        pool_checkout_wait: Histogram<f64>,
        pool_call_duration: Histogram<f64>,
        pool_call_errors: Counter<u64>,
        pool_restarts: Counter<u64>,
        pool_sessions_live: UpDownCounter<i64>,
        pool_sessions_ended: Counter<u64>,
    }

    static INSTRUMENTS: RwLock<Option<Arc<Instruments>>> = RwLock::new(None);

    /// Bucket bounds of the bridge pool's histograms, in seconds: from a fast local call (a
    /// `ping` answers in about 100 µs) to a long optimization.
    const POOL_SECONDS: [f64; 16] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
        30.0, 120.0,
    ];

    impl Instruments {
        fn new(meter: &Meter) -> Instruments {
            Instruments {
                duration: meter
                    .f64_histogram(metric::GEN_AI_CLIENT_OPERATION_DURATION)
                    .with_unit("s")
                    .with_description("GenAI operation duration.")
                    .with_boundaries(vec![
                        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                        40.96, 81.92,
                    ])
                    .build(),
                tokens: meter
                    .u64_histogram(metric::GEN_AI_CLIENT_TOKEN_USAGE)
                    .with_unit("{token}")
                    .with_description("Number of input and output tokens used.")
                    .with_boundaries(vec![
                        1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0,
                        1048576.0, 4194304.0, 16777216.0, 67108864.0,
                    ])
                    .build(),
                cost: meter
                    .f64_counter(metric::DSPEX_LM_COST)
                    .with_unit("USD")
                    .with_description("Cost of the LM calls, for LMs with a price.")
                    .build(),
                cache_hits: meter
                    .u64_counter(metric::DSPEX_LM_CACHE_HITS)
                    .with_unit("{call}")
                    .with_description("LM calls answered by the response cache.")
                    .build(),
                cache_misses: meter
                    .u64_counter(metric::DSPEX_LM_CACHE_MISSES)
                    .with_unit("{call}")
                    .with_description("LM calls that missed the response cache.")
                    .build(),
                retries: meter
                    .u64_counter(metric::DSPEX_LM_RETRIES)
                    .with_unit("{attempt}")
                    .with_description("LM attempts retried.")
                    .build(),
                breaker: meter
                    .u64_gauge(metric::DSPEX_LM_BREAKER_STATE)
                    .with_description("Circuit breaker state: 0 closed, 1 half-open, 2 open.")
                    .build(),
                limiter_wait: meter
                    .f64_histogram(metric::DSPEX_LM_LIMITER_WAIT)
                    .with_unit("s")
                    .with_description("Time LM calls waited for the concurrency and rate limits.")
                    .build(),
                pool_busy: meter
                    .u64_gauge(metric::DSPEX_BRIDGE_POOL_BUSY)
                    .with_unit("{worker}")
                    .with_description("Busy workers of a bridge pool.")
                    .build(),
                pool_utilization: meter
                    .f64_gauge(metric::DSPEX_BRIDGE_POOL_UTILIZATION)
                    .with_unit("1")
                    .with_description("Busy workers of a bridge pool over its size.")
                    .build(),
                route_calls: meter
                    .u64_counter(metric::DSPEX_BRIDGE_ROUTE_CALLS)
                    .with_unit("{call}")
                    .with_description("Calls of routed programs, by the route that served them.")
                    .build(),
                pool_queue: meter
                    .u64_gauge(metric::DSPEX_BRIDGE_POOL_QUEUE_DEPTH)
                    .with_unit("{call}")
                    .with_description("Calls of a bridge pool waiting for a worker.")
                    .build(),
                pool_checkout_wait: meter
                    .f64_histogram(metric::DSPEX_BRIDGE_POOL_CHECKOUT_WAIT)
                    .with_unit("s")
                    .with_description("Time bridge requests waited for a worker.")
                    .with_boundaries(POOL_SECONDS.to_vec())
                    .build(),
                pool_call_duration: meter
                    .f64_histogram(metric::DSPEX_BRIDGE_POOL_CALL_DURATION)
                    .with_unit("s")
                    .with_description("Duration of bridge requests, checkout and retries included.")
                    .with_boundaries(POOL_SECONDS.to_vec())
                    .build(),
                pool_call_errors: meter
                    .u64_counter(metric::DSPEX_BRIDGE_POOL_CALL_ERRORS)
                    .with_unit("{call}")
                    .with_description("Failed bridge requests, by error type.")
                    .build(),
                pool_restarts: meter
                    .u64_counter(metric::DSPEX_BRIDGE_POOL_RESTARTS)
                    .with_unit("{worker}")
                    .with_description("Workers started to replace others or to grow a pool.")
                    .build(),
                pool_sessions_live: meter
                    .i64_up_down_counter(metric::DSPEX_BRIDGE_POOL_SESSIONS_LIVE)
                    .with_unit("{session}")
                    .with_description("Open bridge sessions.")
                    .build(),
                pool_sessions_ended: meter
                    .u64_counter(metric::DSPEX_BRIDGE_POOL_SESSIONS_ENDED)
                    .with_unit("{session}")
                    .with_description("Bridge sessions ended, by how they ended.")
                    .build(),
            }
        }
    }

    /// Forgets the instruments, so that the next recording makes them anew from the global
    /// meter provider in place then. Call it after installing a meter provider with
    /// `opentelemetry::global::set_meter_provider` (`dspex::telemetry::otel::init` does).
    pub fn reset_instruments() {
        *INSTRUMENTS.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn instruments() -> Arc<Instruments> {
        if let Some(i) = &*INSTRUMENTS.read().unwrap_or_else(|e| e.into_inner()) {
            return Arc::clone(i);
        }
        let mut slot = INSTRUMENTS.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(slot.get_or_insert_with(|| {
            Arc::new(Instruments::new(&opentelemetry::global::meter("dspex")))
        }))
    }

    /// Records one finished LM call.
    pub(crate) fn record_call(call: &CallRecord<'_>) {
        let i = instruments();
        let mut attrs = vec![
            KeyValue::new(attr::GEN_AI_OPERATION_NAME, call.operation),
            KeyValue::new(attr::GEN_AI_PROVIDER_NAME, call.provider.to_string()),
            KeyValue::new(attr::GEN_AI_REQUEST_MODEL, call.model.to_string()),
            KeyValue::new(attr::SERVER_ADDRESS, call.server.to_string()),
        ];
        if let Some(hit) = call.cache_hit {
            attrs.push(KeyValue::new(attr::DSPEX_CACHE_HIT, hit));
        }
        if let Some(error) = call.error_type {
            attrs.push(KeyValue::new(attr::ERROR_TYPE, error));
        }
        i.duration.record(call.seconds, &attrs);
        match call.cache_hit {
            Some(true) => i.cache_hits.add(1, &attrs[..3]),
            Some(false) => i.cache_misses.add(1, &attrs[..3]),
            None => {}
        }
        if call.error_type.is_some() || call.cache_hit == Some(true) {
            return;
        }
        let mut with_type = attrs[..4].to_vec();
        with_type.push(KeyValue::new(attr::GEN_AI_TOKEN_TYPE, "input"));
        i.tokens.record(call.input_tokens, &with_type);
        with_type.pop();
        with_type.push(KeyValue::new(attr::GEN_AI_TOKEN_TYPE, "output"));
        i.tokens.record(call.output_tokens, &with_type);
        if let Some(cost) = call.cost_usd {
            i.cost.add(cost, &attrs[..3]);
        }
    }

    /// Records one retried attempt of `model`.
    pub(crate) fn record_retry(model: &str) {
        instruments().retries.add(
            1,
            &[KeyValue::new(attr::GEN_AI_REQUEST_MODEL, model.to_string())],
        );
    }

    /// Records an endpoint's breaker state.
    pub(crate) fn record_breaker(endpoint: &str, state: &crate::BreakerState) {
        let value = match state {
            crate::BreakerState::Closed { .. } => 0,
            crate::BreakerState::HalfOpen => 1,
            crate::BreakerState::Open { .. } => 2,
        };
        let (server, _) = super::server_address(endpoint);
        instruments().breaker.record(
            value,
            &[
                KeyValue::new(attr::SERVER_ADDRESS, server.to_string()),
                KeyValue::new(attr::DSPEX_LM_ENDPOINT, endpoint.to_string()),
            ],
        );
    }

    /// Records how long a call of `model` waited for the limits.
    pub(crate) fn record_limiter_wait(model: &str, waited: std::time::Duration) {
        instruments().limiter_wait.record(
            waited.as_secs_f64(),
            &[KeyValue::new(attr::GEN_AI_REQUEST_MODEL, model.to_string())],
        );
    }

    /// Records a bridge pool's busy workers out of `size` (the runtime's bridge calls it).
    #[doc(hidden)]
    pub fn record_pool(busy: usize, size: usize) {
        let i = instruments();
        i.pool_busy.record(busy as u64, &[]);
        if size > 0 {
            i.pool_utilization.record(busy as f64 / size as f64, &[]);
        }
    }

    /// Records a call of a routed program served by `route` (`native` | `bridged`), after a
    /// failure on `fallback_from` when there was one (the runtime's bridge router calls it).
    #[doc(hidden)]
    pub fn record_route(route: &'static str, fallback_from: Option<&'static str>) {
        let mut attrs = vec![KeyValue::new("dspex.route", route)];
        if let Some(from) = fallback_from {
            attrs.push(KeyValue::new("dspex.route.fallback_from", from));
        }
        instruments().route_calls.add(1, &attrs);
    }

    /// Records a bridge pool's queue depth (calls waiting for a worker).
    #[doc(hidden)]
    pub fn record_pool_queue(depth: usize) {
        instruments().pool_queue.record(depth as u64, &[]);
    }

    /// Records how long one checkout of a bridge request waited.
    #[doc(hidden)]
    pub fn record_pool_checkout_wait(waited: std::time::Duration) {
        instruments()
            .pool_checkout_wait
            .record(waited.as_secs_f64(), &[]);
    }

    /// Records one finished bridge request of `op`; `error_type` is the error's variant name.
    #[doc(hidden)]
    pub fn record_pool_call(op: &'static str, took: std::time::Duration, error_type: Option<&str>) {
        let i = instruments();
        let mut attrs = vec![KeyValue::new(attr::DSPEX_BRIDGE_OP, op)];
        if let Some(error) = error_type {
            attrs.push(KeyValue::new(attr::ERROR_TYPE, error.to_string()));
            i.pool_call_errors.add(1, &attrs);
        }
        i.pool_call_duration.record(took.as_secs_f64(), &attrs);
    }

    /// Records a worker start of a bridge pool (a replacement or an extra worker).
    #[doc(hidden)]
    pub fn record_pool_restart() {
        instruments().pool_restarts.add(1, &[]);
    }

    /// Records a bridge session opened.
    #[doc(hidden)]
    pub fn record_pool_session_opened() {
        instruments().pool_sessions_live.add(1, &[]);
    }

    /// Records a bridge session ended: `how` is `closed`, `expired` or `dropped`.
    #[doc(hidden)]
    pub fn record_pool_session_ended(how: &'static str) {
        let i = instruments();
        i.pool_sessions_live.add(-1, &[]);
        i.pool_sessions_ended
            .add(1, &[KeyValue::new(attr::DSPEX_BRIDGE_SESSION_END, how)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_address_reads_host_and_port() {
        assert_eq!(
            server_address("http://127.0.0.1:8000/v1"),
            ("127.0.0.1", Some(8000))
        );
        assert_eq!(
            server_address("https://api.openai.com/v1"),
            ("api.openai.com", None)
        );
        assert_eq!(
            server_address("http://a:1/v1,http://b:2/v1"),
            ("a", Some(1))
        );
        assert_eq!(server_address("http://[::1]:9/v1"), ("::1", Some(9)));
        assert_eq!(server_address("not a url"), ("not a url", None));
    }

    #[test]
    fn messages_are_in_the_conventions_shape() {
        let input = input_messages(&[crate::Message::user("Hi?")]);
        let v: serde_json::Value = serde_json::from_str(&input).unwrap();
        assert_eq!(v[0]["role"], "user");
        assert_eq!(v[0]["parts"][0]["content"], "Hi?");
        let v: serde_json::Value =
            serde_json::from_str(&output_messages(["A", "B"].into_iter())).unwrap();
        assert_eq!(v[1]["role"], "assistant");
        assert_eq!(v[1]["parts"][0]["content"], "B");
    }

    #[test]
    fn provider_names_follow_the_conventions() {
        assert_eq!(provider_name("openai"), "openai");
        assert_eq!(provider_name("gemini"), "gcp.gemini");
        assert_eq!(provider_name("hosted_vllm"), "hosted_vllm");
    }
}
