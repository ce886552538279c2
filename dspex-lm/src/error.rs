//! Errors of the LM layer. Every variant names the model and endpoint; none carries the API key.

use std::time::Duration;

/// What an LM call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LmError {
    /// The LM is misconfigured (unknown provider, missing key, bad base URL).
    #[error("[{model}] configuration: {message}")]
    Config {
        /// The model string.
        model: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// One attempt took longer than the per-call timeout.
    #[error("[{model}] {endpoint}: no response within {timeout:?}")]
    Timeout {
        /// The model string.
        model: String,
        /// The URL called.
        endpoint: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The overall deadline passed (across retries).
    #[error("[{model}] {endpoint}: deadline of {deadline:?} passed after {attempts} attempt(s)")]
    DeadlineExceeded {
        /// The model string.
        model: String,
        /// The URL called.
        endpoint: String,
        /// The deadline.
        deadline: Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// The provider rate-limited the request (HTTP 429, or the provider's own rate-limit error
    /// in a stream): DSPy's `LMRateLimitError`.
    #[error("[{model}] {endpoint}: rate limited (HTTP 429{}): {body}", retry_after.map(|d| format!(", retry after {d:?}")).unwrap_or_default())]
    RateLimited {
        /// The model string.
        model: String,
        /// The URL called.
        endpoint: String,
        /// The provider's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// The provider's message (or the start of the response body).
        body: String,
        /// The provider's own error code (`rate_limit_exceeded`, `rate_limit_error`, …).
        provider_code: Option<Box<str>>,
    },
    /// Any other error answer of the provider: a non-success HTTP status, or an error event in
    /// a stream. [`kind`](LmError::kind) says which of DSPy's classes it is.
    #[error("[{model}] {endpoint}: HTTP {status} ({}): {body}", kind.dspy_name())]
    Http {
        /// The model string.
        model: String,
        /// The URL called.
        endpoint: String,
        /// The status code (for an error event inside a stream, the status the provider
        /// documents for that error, or 200).
        status: u16,
        /// The provider's message (or the start of the response body).
        body: String,
        /// The provider's `Retry-After` on a 503, if any.
        retry_after: Option<Duration>,
        /// What the provider's answer means, from its status, its error code and its message.
        kind: LmErrorKind,
        /// The provider's own error code (`context_length_exceeded`, `overloaded_error`, …).
        /// Boxed, as the error is held in every `Result` of a call.
        provider_code: Option<Box<str>>,
    },
    /// The connection failed or broke (refused, reset, TLS, truncated body).
    #[error("[{model}] {endpoint}: connection failed: {message}")]
    Connect {
        /// The model string.
        model: String,
        /// The URL called.
        endpoint: String,
        /// What the transport said.
        message: String,
    },
    /// The response was not what the protocol promises (bad JSON, no choices).
    #[error("[{model}] {endpoint}: cannot read the response: {message}; raw: {raw}")]
    Decode {
        /// The model string.
        model: String,
        /// The URL called.
        endpoint: String,
        /// What was wrong.
        message: String,
        /// The start of the raw response text.
        raw: String,
    },
    /// The response body was larger than the LM's limit
    /// ([`LmBuilder::max_response_bytes`](super::LmBuilder::max_response_bytes)); the rest of it
    /// was not read.
    #[error("[{model}] {endpoint}: the response body is larger than the limit of {limit} bytes")]
    ResponseTooLarge {
        /// The model string.
        model: String,
        /// The URL called.
        endpoint: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A [`ScriptedLM`](super::ScriptedLM) was asked for more completions than it was given
    /// (and does not repeat its last one): the test's script is shorter than the calls the
    /// program made.
    #[error(
        "[{model}] the ScriptedLM has {completions} completion(s) and was asked for another; the calls so far are in its history"
    )]
    ScriptExhausted {
        /// The model string.
        model: String,
        /// How many completions the script holds.
        completions: usize,
    },
    /// The endpoint's circuit breaker is open: recent calls kept failing.
    #[error(
        "[{model}] {endpoint}: circuit breaker open after repeated failures; next probe in {retry_in:?}"
    )]
    BreakerOpen {
        /// The model string.
        model: String,
        /// The URL whose breaker is open.
        endpoint: String,
        /// When a probe call will be let through.
        retry_in: Duration,
    },
    /// A rate limit of this LM (requests or tokens per minute) would be exceeded past the deadline.
    #[error("[{model}] local rate limit: {message}")]
    LocalRateLimit {
        /// The model string.
        model: String,
        /// Which limit.
        message: String,
    },
    /// The request needs something this model or its protocol cannot take (images for a
    /// text-completion model, …). Not retried.
    #[error("[{model}] unsupported: {feature}")]
    UnsupportedFeature {
        /// The model string.
        model: String,
        /// What the request needed and why it cannot be sent.
        feature: String,
    },
    /// Every attempt failed; `last` is the final error.
    #[error("[{model}] gave up after {attempts} attempt(s) in {elapsed:?}: {last}")]
    GaveUp {
        /// The model string.
        model: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last attempt's error.
        last: Box<LmError>,
    },
}

/// DSPy 3.4.1's classes of LM failures (`dspy.utils.exceptions`): what an [`LmError`] means,
/// whichever provider it came from. [`LmError::kind`] gives it.
///
/// | Kind | DSPy class | Retried | From |
/// |---|---|---|---|
/// | `Auth` | `LMAuthError` | no | 401, 403, an invalid key code |
/// | `Billing` | `LMBillingError` | no | 402, `insufficient_quota` (even on a 429) |
/// | `RateLimit` | `LMRateLimitError` | yes | 429, a rate-limit code |
/// | `InvalidRequest` | `LMInvalidRequestError` | no | 400, 404, 409, 413, 422 |
/// | `ContextWindowExceeded` | `ContextWindowExceededError` | no | the prompt is too long for the model |
/// | `UnsupportedModel` | `LMUnsupportedModelError` | no | an unknown or unavailable model |
/// | `Timeout` | `LMTimeoutError` | yes | 408, 504, no answer within the timeout or deadline |
/// | `Server` | `LMServerError` | yes | 5xx, Anthropic's 529 `overloaded_error` |
/// | `Provider` | `LMProviderError` | no | any other error answer |
/// | `Transport` | `LMTransportError` | yes | connection refused, reset, TLS, a broken stream |
/// | `Configuration` | `LMConfigurationError` | no | a bad model string, key or URL; no LM |
/// | `UnsupportedFeature` | `LMUnsupportedFeatureError` | no | a request the model or protocol cannot take |
/// | `Unexpected` | `LMUnexpectedError` | no | an answer the protocol does not allow, a response too large, a script run out |
/// | `Unavailable` | (dspex's circuit breaker, local rate limits) | no | the call was not sent |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LmErrorKind {
    /// The provider rejected the credentials.
    Auth,
    /// Billing or quota: the account cannot pay for the call.
    Billing,
    /// The provider rate-limited the request.
    RateLimit,
    /// The provider rejected the request's shape or resource.
    InvalidRequest,
    /// The prompt is longer than the model's context window.
    ContextWindowExceeded,
    /// The model is unknown to the provider or unavailable.
    UnsupportedModel,
    /// The request timed out.
    Timeout,
    /// The provider failed while handling the request.
    Server,
    /// An error answer of the provider that fits no other class.
    Provider,
    /// The request failed below HTTP (connecting, TLS, a connection that broke).
    Transport,
    /// The LM is misconfigured.
    Configuration,
    /// The request needs a feature the model, provider or protocol lacks.
    UnsupportedFeature,
    /// Something the protocol does not allow happened (an unreadable answer).
    Unexpected,
    /// dspex did not send the call: its circuit breaker is open or a local limit is reached.
    Unavailable,
}

impl LmErrorKind {
    /// DSPy's class name (`LMAuthError`, `ContextWindowExceededError`, …).
    pub fn dspy_name(self) -> &'static str {
        match self {
            LmErrorKind::Auth => "LMAuthError",
            LmErrorKind::Billing => "LMBillingError",
            LmErrorKind::RateLimit => "LMRateLimitError",
            LmErrorKind::InvalidRequest => "LMInvalidRequestError",
            LmErrorKind::ContextWindowExceeded => "ContextWindowExceededError",
            LmErrorKind::UnsupportedModel => "LMUnsupportedModelError",
            LmErrorKind::Timeout => "LMTimeoutError",
            LmErrorKind::Server => "LMServerError",
            LmErrorKind::Provider => "LMProviderError",
            LmErrorKind::Transport => "LMTransportError",
            LmErrorKind::Configuration => "LMConfigurationError",
            LmErrorKind::UnsupportedFeature => "LMUnsupportedFeatureError",
            LmErrorKind::Unexpected => "LMUnexpectedError",
            LmErrorKind::Unavailable => "LMError",
        }
    }

    /// DSPy's stable error code (`auth`, `context_window_exceeded`, …).
    pub fn code(self) -> &'static str {
        match self {
            LmErrorKind::Auth => "auth",
            LmErrorKind::Billing => "billing",
            LmErrorKind::RateLimit => "rate_limit",
            LmErrorKind::InvalidRequest => "invalid_request",
            LmErrorKind::ContextWindowExceeded => "context_window_exceeded",
            LmErrorKind::UnsupportedModel => "unsupported_model",
            LmErrorKind::Timeout => "timeout",
            LmErrorKind::Server => "server",
            LmErrorKind::Provider => "provider",
            LmErrorKind::Transport => "transport",
            LmErrorKind::Configuration => "configuration",
            LmErrorKind::UnsupportedFeature => "unsupported_feature",
            LmErrorKind::Unexpected => "unexpected",
            LmErrorKind::Unavailable => "lm_error",
        }
    }

    /// Whether DSPy calls errors of this class retryable (`is_retryable_lm_error`): rate
    /// limits, timeouts, server errors and transport failures.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            LmErrorKind::RateLimit
                | LmErrorKind::Timeout
                | LmErrorKind::Server
                | LmErrorKind::Transport
        )
    }

    /// The class of an HTTP status alone, as DSPy's `map_http_error` maps it (a provider's error
    /// code or message may refine it: see [`LmErrorKind::refine`]).
    pub fn of_status(status: u16) -> LmErrorKind {
        match status {
            401 | 403 => LmErrorKind::Auth,
            402 => LmErrorKind::Billing,
            408 | 504 => LmErrorKind::Timeout,
            429 => LmErrorKind::RateLimit,
            400 | 404 | 409 | 413 | 422 => LmErrorKind::InvalidRequest,
            500..=599 => LmErrorKind::Server,
            _ => LmErrorKind::Provider,
        }
    }

    /// The class of an error answer from its status, the provider's error `code` (or type)
    /// and its `message`: the codes every provider family uses (OpenAI's, Anthropic's,
    /// Gemini's), then the wording of context-window and unknown-model errors, then the status.
    pub fn refine(status: u16, code: Option<&str>, message: &str) -> LmErrorKind {
        let code = code.unwrap_or_default();
        let by_code = match code {
            "context_length_exceeded" | "string_above_max_length" => {
                Some(LmErrorKind::ContextWindowExceeded)
            }
            "model_not_found"
            | "model_not_available"
            | "unsupported_model"
            | "DeploymentNotFound" => Some(LmErrorKind::UnsupportedModel),
            // Gemini's FAILED_PRECONDITION: the free tier is not offered where the caller is,
            // billing must be enabled (DSPy's Gemini client calls it a billing error).
            "insufficient_quota"
            | "exceeded_current_quota_error"
            | "billing_error"
            | "FAILED_PRECONDITION" => Some(LmErrorKind::Billing),
            "invalid_api_key"
            | "authentication_error"
            | "permission_error"
            | "UNAUTHENTICATED"
            | "PERMISSION_DENIED" => Some(LmErrorKind::Auth),
            "rate_limit_exceeded" | "rate_limit_error" | "RESOURCE_EXHAUSTED" => {
                Some(LmErrorKind::RateLimit)
            }
            "overloaded_error" | "api_error" | "server_error" | "INTERNAL" | "UNAVAILABLE" => {
                Some(LmErrorKind::Server)
            }
            "DEADLINE_EXCEEDED" | "timeout_error" => Some(LmErrorKind::Timeout),
            _ => None,
        };
        if let Some(kind) = by_code {
            return kind;
        }
        let base = if is_gemini_refusal(code) {
            LmErrorKind::InvalidRequest
        } else {
            LmErrorKind::of_status(status)
        };
        if matches!(base, LmErrorKind::InvalidRequest) {
            if is_context_window_message(message) {
                return LmErrorKind::ContextWindowExceeded;
            }
            if (status == 404 || code == "not_found_error" || code == "NOT_FOUND")
                && is_model_error_message(message)
            {
                return LmErrorKind::UnsupportedModel;
            }
        }
        base
    }
}

impl std::fmt::Display for LmErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.dspy_name())
    }
}

/// Whether `code` is one of Gemini's codes for a request it refuses, whatever the status: its
/// `INVALID_ARGUMENT` and `NOT_FOUND` statuses (in a stream's error event too), and the block
/// and finish reasons of a prompt or candidate it stopped inside a 200 answer (`SAFETY`,
/// `PROHIBITED_CONTENT`, …) — DSPy's Gemini client raises `LMInvalidRequestError` for those.
fn is_gemini_refusal(code: &str) -> bool {
    matches!(
        code,
        "INVALID_ARGUMENT"
            | "NOT_FOUND"
            | "SAFETY"
            | "OTHER"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "IMAGE_SAFETY"
            | "RECITATION"
            | "LANGUAGE"
            | "SPII"
            | "MALFORMED_FUNCTION_CALL"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_OTHER"
            | "NO_IMAGE"
            | "IMAGE_RECITATION"
            | "UNEXPECTED_TOOL_CALL"
            | "TOO_MANY_TOOL_CALLS"
            | "MISSING_THOUGHT_SIGNATURE"
            | "MALFORMED_RESPONSE"
    )
}

/// Whether a provider's message says the prompt is too long for the model (the wording of
/// OpenAI, Anthropic, Gemini, vLLM, Ollama and llama.cpp's server).
fn is_context_window_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "context_length_exceeded",
        "maximum context length",
        "context window",
        "context length",
        "exceeds the available context size",
        "prompt is too long",
        "too many tokens",
        "input token count",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// Whether a provider's message says the model is unknown or unavailable.
fn is_model_error_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("model")
        && [
            "not found",
            "does not exist",
            "not exist",
            "not supported",
            "unsupported",
            "not available",
            "unknown",
        ]
        .iter()
        .any(|marker| m.contains(marker))
}

impl LmError {
    /// Which of DSPy's classes this failure is (see [`LmErrorKind`]); for
    /// [`GaveUp`](LmError::GaveUp), the last attempt's.
    pub fn kind(&self) -> LmErrorKind {
        match self {
            LmError::Config { .. } => LmErrorKind::Configuration,
            LmError::Timeout { .. } | LmError::DeadlineExceeded { .. } => LmErrorKind::Timeout,
            LmError::RateLimited { .. } => LmErrorKind::RateLimit,
            LmError::Http { kind, .. } => *kind,
            LmError::Connect { .. } => LmErrorKind::Transport,
            LmError::Decode { .. } | LmError::ResponseTooLarge { .. } => LmErrorKind::Unexpected,
            LmError::ScriptExhausted { .. } => LmErrorKind::Unexpected,
            LmError::BreakerOpen { .. } | LmError::LocalRateLimit { .. } => {
                LmErrorKind::Unavailable
            }
            LmError::UnsupportedFeature { .. } => LmErrorKind::UnsupportedFeature,
            LmError::GaveUp { last, .. } => last.kind(),
        }
    }

    /// The provider's own error code, when its answer carried one.
    pub fn provider_code(&self) -> Option<&str> {
        match self.root() {
            LmError::Http { provider_code, .. } | LmError::RateLimited { provider_code, .. } => {
                provider_code.as_deref()
            }
            _ => None,
        }
    }

    /// An [`Http`](LmError::Http) error (or [`RateLimited`](LmError::RateLimited) for a
    /// rate limit) classified from its status, the provider's error code and its message with
    /// [`LmErrorKind::refine`].
    pub fn from_provider(
        model: impl Into<String>,
        endpoint: impl Into<String>,
        status: u16,
        provider_code: Option<String>,
        message: impl Into<String>,
        retry_after: Option<Duration>,
    ) -> LmError {
        let message = message.into();
        let kind = LmErrorKind::refine(status, provider_code.as_deref(), &message);
        let provider_code = provider_code.map(String::into_boxed_str);
        if kind == LmErrorKind::RateLimit {
            return LmError::RateLimited {
                model: model.into(),
                endpoint: endpoint.into(),
                retry_after,
                body: message,
                provider_code,
            };
        }
        LmError::Http {
            model: model.into(),
            endpoint: endpoint.into(),
            status,
            body: message,
            retry_after,
            kind,
            provider_code,
        }
    }

    /// Whether another attempt may succeed: timeouts, connection failures, rate limits and
    /// server errors (408, 429, 5xx, Anthropic's 529), as DSPy's `is_retryable_lm_error`.
    /// Billing, auth, invalid requests, decode and configuration errors fail at once — a 429
    /// that means "out of quota" is a billing error and is not retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            LmError::Timeout { .. } | LmError::Connect { .. } | LmError::RateLimited { .. } => true,
            LmError::Http { kind, .. } => kind.is_retryable(),
            _ => false,
        }
    }

    /// The wait the provider asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LmError::RateLimited { retry_after, .. } | LmError::Http { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Whether the prompt was too long for the model's context window (DSPy's
    /// `ContextWindowExceededError`): the provider's `context_length_exceeded` code or the
    /// wording OpenAI, Anthropic, Gemini, vLLM, Ollama and llama.cpp's server use. ReAct drops
    /// its oldest steps and retries on this error.
    pub fn is_context_window_exceeded(&self) -> bool {
        self.kind() == LmErrorKind::ContextWindowExceeded
    }

    /// The error behind retries: the last attempt's, or this one.
    pub fn root(&self) -> &LmError {
        match self {
            LmError::GaveUp { last, .. } => last.root(),
            other => other,
        }
    }

    /// Whether this failure should count against the endpoint's circuit breaker (the endpoint
    /// looks unhealthy) rather than against the request.
    pub(crate) fn counts_against_endpoint(&self) -> bool {
        matches!(
            self,
            LmError::Timeout { .. } | LmError::Connect { .. } | LmError::Decode { .. }
        ) || matches!(
            self,
            LmError::Http {
                kind: LmErrorKind::Server | LmErrorKind::Timeout,
                ..
            }
        )
    }
}

/// The first `max` characters of `text`, for error messages.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let http = |status| LmError::from_provider("m", "e", status, None, "", None);
        assert!(http(500).is_retryable());
        assert!(http(503).is_retryable());
        assert!(http(408).is_retryable());
        assert!(!http(400).is_retryable());
        assert!(!http(401).is_retryable());
        assert!(!http(404).is_retryable());
        let gave_up = LmError::GaveUp {
            model: "m".into(),
            attempts: 3,
            elapsed: Duration::from_secs(1),
            last: Box::new(http(503)),
        };
        assert!(matches!(gave_up.root(), LmError::Http { status: 503, .. }));
        assert_eq!(excerpt("abcdef", 3), "abc…");
        assert_eq!(gave_up.kind(), LmErrorKind::Server);
        assert!(
            gave_up
                .to_string()
                .starts_with("[m] gave up after 3 attempt(s) in 1s: [m] e: HTTP 503")
        );
    }

    #[test]
    fn provider_errors_take_dspys_classes() {
        let kind = |status, code: Option<&str>, message: &str| {
            LmError::from_provider("m", "e", status, code.map(str::to_string), message, None).kind()
        };
        // By status, as DSPy's map_http_error.
        for (status, expected) in [
            (401, LmErrorKind::Auth),
            (403, LmErrorKind::Auth),
            (402, LmErrorKind::Billing),
            (408, LmErrorKind::Timeout),
            (504, LmErrorKind::Timeout),
            (429, LmErrorKind::RateLimit),
            (400, LmErrorKind::InvalidRequest),
            (422, LmErrorKind::InvalidRequest),
            (500, LmErrorKind::Server),
            (529, LmErrorKind::Server),
            (418, LmErrorKind::Provider),
        ] {
            assert_eq!(kind(status, None, "x"), expected, "HTTP {status}");
        }
        // Codes win over the status: out of quota on a 429 is billing, and not retried.
        let quota = LmError::from_provider(
            "m",
            "e",
            429,
            Some("insufficient_quota".into()),
            "You exceeded your current quota",
            None,
        );
        assert_eq!(quota.kind(), LmErrorKind::Billing);
        assert!(!quota.is_retryable());
        assert_eq!(quota.provider_code(), Some("insufficient_quota"));
        assert!(matches!(
            LmError::from_provider("m", "e", 429, None, "slow down", None),
            LmError::RateLimited { .. }
        ));
        assert_eq!(
            kind(400, Some("context_length_exceeded"), "too long"),
            LmErrorKind::ContextWindowExceeded
        );
        // Anthropic's wording and codes.
        assert_eq!(
            kind(
                400,
                Some("invalid_request_error"),
                "prompt is too long: 210000 tokens > 200000 maximum"
            ),
            LmErrorKind::ContextWindowExceeded
        );
        assert_eq!(
            kind(404, Some("not_found_error"), "model: claude-nope"),
            LmErrorKind::InvalidRequest
        );
        assert_eq!(
            kind(404, Some("not_found_error"), "model claude-nope not found"),
            LmErrorKind::UnsupportedModel
        );
        let overloaded = LmError::from_provider(
            "m",
            "e",
            529,
            Some("overloaded_error".into()),
            "Overloaded",
            None,
        );
        assert_eq!(overloaded.kind(), LmErrorKind::Server);
        assert!(overloaded.is_retryable());
        // Gemini's statuses.
        assert_eq!(
            kind(400, Some("INVALID_ARGUMENT"), "bad"),
            LmErrorKind::InvalidRequest
        );
        assert_eq!(
            kind(403, Some("PERMISSION_DENIED"), "no"),
            LmErrorKind::Auth
        );
        assert_eq!(
            kind(429, Some("RESOURCE_EXHAUSTED"), "quota"),
            LmErrorKind::RateLimit
        );
        assert!(
            kind(
                400,
                None,
                "The input token count (1200000) exceeds the maximum"
            )
            .eq(&LmErrorKind::ContextWindowExceeded)
        );
        // Gemini's codes whatever the status: a 200 answer that blocked the prompt, an error
        // event inside a stream, billing preconditions.
        for code in [
            "SAFETY",
            "PROHIBITED_CONTENT",
            "RECITATION",
            "OTHER",
            "BLOCKLIST",
        ] {
            let blocked = LmError::from_provider("m", "e", 200, Some(code.into()), "blocked", None);
            assert_eq!(blocked.kind(), LmErrorKind::InvalidRequest, "{code}");
            assert!(!blocked.is_retryable());
        }
        assert_eq!(
            kind(500, Some("INVALID_ARGUMENT"), "bad schema"),
            LmErrorKind::InvalidRequest
        );
        assert_eq!(
            kind(
                200,
                Some("INVALID_ARGUMENT"),
                "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576)."
            ),
            LmErrorKind::ContextWindowExceeded
        );
        assert_eq!(
            kind(
                404,
                Some("NOT_FOUND"),
                "models/gemini-nope is not found for API version v1beta, or is not supported for generateContent."
            ),
            LmErrorKind::UnsupportedModel
        );
        assert_eq!(
            kind(
                400,
                Some("FAILED_PRECONDITION"),
                "User location is not supported for the API use without a billing account linked."
            ),
            LmErrorKind::Billing
        );
        assert_eq!(
            kind(503, Some("UNAVAILABLE"), "The model is overloaded."),
            LmErrorKind::Server
        );
        assert_eq!(
            kind(504, Some("DEADLINE_EXCEEDED"), "Deadline expired"),
            LmErrorKind::Timeout
        );
        assert_eq!(kind(401, Some("UNAUTHENTICATED"), "no"), LmErrorKind::Auth);
        // Local failures.
        let config = LmError::Config {
            model: "m".into(),
            message: "x".into(),
        };
        assert_eq!(config.kind(), LmErrorKind::Configuration);
        assert_eq!(config.kind().dspy_name(), "LMConfigurationError");
        assert_eq!(
            LmErrorKind::ContextWindowExceeded.code(),
            "context_window_exceeded"
        );
        assert!(
            LmError::from_provider("m", "e", 503, None, "down", None)
                .to_string()
                .contains("HTTP 503 (LMServerError): down")
        );
    }
}
