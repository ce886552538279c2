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
    /// HTTP 429.
    #[error("[{model}] {endpoint}: rate limited (HTTP 429{}): {body}", retry_after.map(|d| format!(", retry after {d:?}")).unwrap_or_default())]
    RateLimited {
        /// The model string.
        model: String,
        /// The URL called.
        endpoint: String,
        /// The provider's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// The start of the response body.
        body: String,
    },
    /// Any other non-success HTTP status.
    #[error("[{model}] {endpoint}: HTTP {status}: {body}")]
    Http {
        /// The model string.
        model: String,
        /// The URL called.
        endpoint: String,
        /// The status code.
        status: u16,
        /// The start of the response body (the provider's message).
        body: String,
        /// The provider's `Retry-After` on a 503, if any.
        retry_after: Option<Duration>,
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

impl LmError {
    /// Whether another attempt may succeed: timeouts, connection failures, 408, 429 and 5xx.
    /// 400/401/403/404/422, decode errors and configuration errors fail at once.
    pub fn is_retryable(&self) -> bool {
        match self {
            LmError::Timeout { .. } | LmError::Connect { .. } | LmError::RateLimited { .. } => true,
            LmError::Http { status, .. } => *status == 408 || *status >= 500,
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

    /// Whether the prompt was too long for the model's context window (LiteLLM's
    /// `ContextWindowExceededError`): an HTTP 400/413 whose body carries OpenAI's
    /// `context_length_exceeded` code or the wording vLLM, Ollama and llama.cpp's server use.
    /// ReAct drops its oldest steps and retries on this error.
    pub fn is_context_window_exceeded(&self) -> bool {
        match self.root() {
            LmError::Http {
                status: 400 | 413,
                body,
                ..
            } => {
                let body = body.to_ascii_lowercase();
                [
                    "context_length_exceeded",
                    "maximum context length",
                    "context window",
                    "context length",
                    "exceeds the available context size",
                    "prompt is too long",
                ]
                .iter()
                .any(|needle| body.contains(needle))
            }
            _ => false,
        }
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
        ) || matches!(self, LmError::Http { status, .. } if *status >= 500)
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
        let http = |status| LmError::Http {
            model: "m".into(),
            endpoint: "e".into(),
            status,
            body: String::new(),
            retry_after: None,
        };
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
        assert!(
            gave_up
                .to_string()
                .starts_with("[m] gave up after 3 attempt(s) in 1s: [m] e: HTTP 503")
        );
    }
}
