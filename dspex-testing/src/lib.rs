//! Test helpers: a mock OpenAI-compatible LM server for tests, examples and benchmarks, and a mock
//! ColBERTv2 retrieval server.
//!
//! # Contents
//!
//! * [`MockLm`] / [`MockLmBuilder`] — configure and start a server on 127.0.0.1 (a free port by
//!   default): canned answers ([`Rule`], [`Completion`]), simulated [`Latency`], injected faults
//!   ([`Fault`] + [`FaultWhen`], with [`Pattern`] for message-matching faults), a `seed` for
//!   reproducible randomness.
//! * [`MockLmServer`] — the running server: [`url`](MockLmServer::url),
//!   [`api_base`](MockLmServer::api_base), [`stats`](MockLmServer::stats) ([`MockStats`]),
//!   [`set_faults`](MockLmServer::set_faults) at run time, graceful
//!   [`shutdown`](MockLmServer::shutdown); dropping it stops the server too.
//! * [`MockError`] — configuration errors (bad regex, unknown fault name, bad rules file).
//! * [`MockColbert`] / [`MockColbertBuilder`] / [`MockColbertServer`] — a ColBERTv2 server on
//!   127.0.0.1 over a list of passages (scored by word overlap), answering GET and POST in the
//!   real server's format, failing on demand ([`ColbertFault`]), counting requests
//!   ([`MockColbertStats`]); for dspex's `ColBERTv2` retriever and DSPy's client.
//! * `RedisServer` / `RedisCluster` (feature `redis`) — a throwaway `redis-server` on a free
//!   loopback port without persistence, or a 3-node Redis Cluster, stopped when dropped.
//!
//! # Endpoints
//!
//! | Method and path | Answer |
//! |---|---|
//! | `POST /v1/chat/completions` (also `/chat/completions`) | `chat.completion`, or SSE `chat.completion.chunk` events with `stream: true` |
//! | `POST /v1/completions` (also `/completions`) | `text_completion` (`prompt` a string or a list) |
//! | `POST /v1/embeddings` (also `/embeddings`) | deterministic unit vectors (`float` or `base64`) |
//! | `GET /v1/models` (also `/models`) | the model list |
//! | `GET /stats` | [`MockStats`] as JSON |
//! | `GET /health` | `{"status": "ok"}` |
//!
//! The response `model` echoes the request's. Token counts are whitespace-separated word counts.
//! `n` > 1 gives n choices (distinct when `temperature` > 0, identical otherwise);
//! `max_tokens` / `max_completion_tokens` cut the content to that many words with
//! `finish_reason: "length"`; `stream_options.include_usage` adds the usage chunk.
//!
//! # Answers
//!
//! The first matching [`Rule`] answers verbatim. Otherwise, with DSPy awareness on (the
//! default), a DSPy ChatAdapter prompt gets every output field between `[[ ## field ## ]]`
//! markers and a final `[[ ## completed ## ]]`; a JSONAdapter prompt, or a DSPy prompt sent with
//! a JSON `response_format`, gets a JSON object. Values follow each field's declared type
//! (`str`, `int`, `float`, `bool`, `list[T]`, `dict[str, T]`, `Literal[...]`, `Optional[T]`,
//! models through their JSON schema) and are derived from a SHA-256 of the last user message and
//! the field name, so a prompt always gets the same answer. ReAct's `next_tool_name` picks
//! `finish` (with `{}` arguments), so agents terminate. Any other prompt gets
//! `mock completion <hash8>`; with a `json_schema` response format, an object satisfying the
//! schema.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use dspex::testing::{Fault, FaultWhen, MockLm};
//!
//! let server = MockLm::builder().fault(Fault::Status(503), FaultWhen::FirstN(1)).start().await?;
//! let base = server.api_base(); // "http://127.0.0.1:PORT/v1"
//! // ... the first chat request gets a 503, the next ones an answer ...
//! server.set_faults(vec![]); // heal
//! assert_eq!(server.stats().total, 0);
//! server.shutdown().await;
//! # let _ = base;
//! # Ok(()) }
//! ```

mod colbert;
mod mock;
#[cfg(feature = "redis")]
mod redis;
mod wire;

#[cfg(feature = "redis")]
pub use redis::{RedisCluster, RedisServer};

pub use colbert::{
    ColbertFault, MockColbert, MockColbertBuilder, MockColbertServer, MockColbertStats,
};

pub use mock::{
    Completion, Fault, FaultWhen, Latency, MockError, MockLm, MockLmBuilder, MockLmServer,
    MockStats, Pattern, Rule,
};

/// Stops a test server: tells its task to stop, then waits for it at most 10 seconds before
/// aborting it.
async fn stop_server<T>(
    shutdown: &tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<T>>,
) {
    shutdown.send_replace(true);
    if let Some(task) = task {
        let abort = task.abort_handle();
        if tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// A reqwest client for the tests' plain-`http://` requests (reqwest is built without a default
/// TLS provider, so one is given).
#[cfg(test)]
fn test_client() -> reqwest::Client {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("client")
}
