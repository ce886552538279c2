//! A mock ColBERTv2 retrieval server: the real server's protocol over a list of passages, scored
//! by word overlap.

use crate::wire::{self, Request, Response, Service, full_response};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The most passages one answer holds (the real server's cap).
const MAX_K: usize = 100;
/// The real server's `k` when none is given.
const DEFAULT_K: usize = 10;

/// How a [`MockColbertServer`] fails every search while it is set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColbertFault {
    /// HTTP 200 with `{"error": true, "message": …}`.
    ErrorJson(String),
    /// This HTTP status, with a plain-text body.
    Status(u16),
    /// HTTP 200 with a body that is not complete JSON.
    Malformed,
    /// Never answers (until the server stops): for client timeouts.
    Hang,
}

/// Namespace for starting a mock ColBERTv2 server: [`MockColbert::start`] or
/// [`MockColbert::builder`].
///
/// The server answers `GET ?query=…&k=…` and `POST {"query": …, "k": …}` on every path, as the
/// real ColBERTv2 server answers its search endpoint: `{"query": …, "topk": [{"text", "pid",
/// "rank", "score", "prob"}, …]}` with the `k` best passages (10 by default, at most 100), by
/// descending score then `pid`. A passage's `pid` is its position in the list; its score is the
/// number of distinct query words it contains plus that number divided by its own word count, so
/// shorter passages win ties (words: lowercased runs of letters, digits and `_`, two characters
/// or more, without the commonest English words); `rank` counts from 1 and `prob`
/// is the softmax of the answer's scores. A request without a query, or with a `k` that is not a
/// number, gets HTTP 400 with `{"error": true, "message": …}`.
///
/// ```
/// use dspex::retrieve::{ColBERTv2, Retriever};
/// use dspex::testing::MockColbert;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let server = MockColbert::start(["Ada Lovelace wrote notes", "Paris is in France"]).await?;
/// let colbert = ColBERTv2::new(server.url())?;
/// let hits = colbert.retrieve("who wrote the notes?", 1).await?;
/// assert_eq!(hits[0].id, "0");
/// assert_eq!(hits[0].extra["rank"], 1);
/// assert_eq!(server.requests().get, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug)]
pub struct MockColbert {
    _private: (),
}

impl MockColbert {
    /// A builder serving `passages` (their `pid`s are their positions).
    pub fn builder<S: Into<String>>(passages: impl IntoIterator<Item = S>) -> MockColbertBuilder {
        MockColbertBuilder {
            passages: passages.into_iter().map(Into::into).collect(),
            fault: None,
            port: 0,
        }
    }

    /// Starts a healthy server for `passages` on a free port of 127.0.0.1.
    pub async fn start<S: Into<String>>(
        passages: impl IntoIterator<Item = S>,
    ) -> io::Result<MockColbertServer> {
        Self::builder(passages).start().await
    }
}

/// Configures a mock ColBERTv2 server; from [`MockColbert::builder`].
#[derive(Debug, Clone)]
pub struct MockColbertBuilder {
    passages: Vec<String>,
    fault: Option<ColbertFault>,
    port: u16,
}

impl MockColbertBuilder {
    /// Fails every search this way from the start (see [`MockColbertServer::set_fault`]).
    pub fn fault(mut self, fault: ColbertFault) -> Self {
        self.fault = Some(fault);
        self
    }

    /// Listens on this port (0, the default, picks a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Binds 127.0.0.1 and starts serving on the current Tokio runtime.
    pub async fn start(self) -> io::Result<MockColbertServer> {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)))
                .await?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            words: self
                .passages
                .iter()
                .map(|p| {
                    let tokens = words(p);
                    let count = tokens.len();
                    (tokens.into_iter().collect(), count)
                })
                .collect(),
            passages: self.passages,
            fault: RwLock::new(self.fault),
            get: AtomicUsize::new(0),
            post: AtomicUsize::new(0),
            shutdown: shutdown_rx.clone(),
        });
        let for_handler = Arc::clone(&shared);
        let service = Service {
            handler: move |request| {
                let shared = Arc::clone(&for_handler);
                async move { search(&shared, request).await }
            },
            refuse: |message: &str| error(StatusCode::BAD_REQUEST, message),
            body_limit: BODY_LIMIT,
            name: "mock ColBERTv2",
        };
        let task = tokio::spawn(wire::serve(listener, service, shutdown_rx));
        tracing::debug!(%addr, "mock ColBERTv2 server listening");
        Ok(MockColbertServer {
            addr,
            shared,
            shutdown,
            task: Some(task),
        })
    }
}

/// How many searches a [`MockColbertServer`] was asked, by method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MockColbertStats {
    /// `GET` requests.
    pub get: usize,
    /// `POST` requests.
    pub post: usize,
}

struct Shared {
    passages: Vec<String>,
    /// Each passage's distinct words and its word count.
    words: Vec<(HashSet<String>, usize)>,
    fault: RwLock<Option<ColbertFault>>,
    get: AtomicUsize,
    post: AtomicUsize,
    shutdown: watch::Receiver<bool>,
}

/// A running mock ColBERTv2 server. Dropping it stops the server; [`shutdown`](Self::shutdown)
/// stops it and waits.
pub struct MockColbertServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl std::fmt::Debug for MockColbertServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockColbertServer")
            .field("addr", &self.addr)
            .field("passages", &self.shared.passages.len())
            .finish_non_exhaustive()
    }
}

impl MockColbertServer {
    /// `http://127.0.0.1:PORT/api/search` (every path answers the same).
    pub fn url(&self) -> String {
        format!("http://{}/api/search", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The searches asked so far, by method.
    pub fn requests(&self) -> MockColbertStats {
        MockColbertStats {
            get: self.shared.get.load(Ordering::SeqCst),
            post: self.shared.post.load(Ordering::SeqCst),
        }
    }

    /// Fails every search from now on (`Some`), or heals the server (`None`).
    pub fn set_fault(&self, fault: Option<ColbertFault>) {
        *self
            .shared
            .fault
            .write()
            .unwrap_or_else(PoisonError::into_inner) = fault;
    }

    /// Stops accepting connections, cuts hanging requests short and waits for the server task,
    /// at most 10 seconds.
    pub async fn shutdown(mut self) {
        super::stop_server(&self.shutdown, self.task.take()).await;
    }
}

impl Drop for MockColbertServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// The largest search body read.
const BODY_LIMIT: usize = 1 << 20;

fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": true, "message": message}).to_string();
    full_response(status, "application/json", body)
}

async fn search(shared: &Shared, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let (query, k) = if parts.method == Method::GET || parts.method == Method::HEAD {
        shared.get.fetch_add(1, Ordering::SeqCst);
        let (mut query, mut k) = (None, None);
        for (name, value) in form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()) {
            match &*name {
                "query" => query = Some(value.into_owned()),
                "k" => k = Some(Value::from(value.into_owned())),
                _ => {}
            }
        }
        (query, k)
    } else if parts.method == Method::POST {
        shared.post.fetch_add(1, Ordering::SeqCst);
        let params: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("the body is not JSON: {e}"),
                );
            }
        };
        (
            params
                .get("query")
                .and_then(Value::as_str)
                .map(str::to_string),
            params.get("k").cloned(),
        )
    } else {
        return error(StatusCode::METHOD_NOT_ALLOWED, "search with GET or POST");
    };

    let fault = shared
        .fault
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    match fault {
        None => {}
        Some(ColbertFault::ErrorJson(message)) => return error(StatusCode::OK, &message),
        Some(ColbertFault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let text = format!("mock ColBERTv2 failure (HTTP {code})");
            return full_response(status, "text/plain; charset=utf-8", text);
        }
        Some(ColbertFault::Malformed) => {
            return full_response(
                StatusCode::OK,
                "application/json",
                &b"{\"topk\": [{\"text\": \"trunc"[..],
            );
        }
        Some(ColbertFault::Hang) => {
            let mut stop = shared.shutdown.clone();
            crate::wire::stop_raised(&mut stop).await;
            return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        }
    }

    let Some(query) = query else {
        return error(StatusCode::BAD_REQUEST, "no query given");
    };
    let k = match k {
        None | Some(Value::Null) => DEFAULT_K,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(k) => k as usize,
            None => return error(StatusCode::BAD_REQUEST, &format!("bad k: {n}")),
        },
        Some(Value::String(s)) => match s.trim().parse::<usize>() {
            Ok(k) => k,
            Err(_) => return error(StatusCode::BAD_REQUEST, &format!("bad k: {s:?}")),
        },
        Some(other) => return error(StatusCode::BAD_REQUEST, &format!("bad k: {other}")),
    };
    let answer = answer(shared, &query, k.min(MAX_K)).to_string();
    full_response(StatusCode::OK, "application/json", answer)
}

/// The real server's answer for `query`: the `k` best passages by score, then pid.
fn answer(shared: &Shared, query: &str, k: usize) -> Value {
    let query_words: HashSet<String> = words(query).into_iter().collect();
    let mut scored: Vec<(f64, usize)> = shared
        .words
        .iter()
        .enumerate()
        .map(|(pid, (words, count))| {
            let overlap = query_words.iter().filter(|w| words.contains(*w)).count() as f64;
            let score = if *count == 0 {
                0.0
            } else {
                overlap + overlap / *count as f64
            };
            (score, pid)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.truncate(k);
    let max = scored.first().map_or(0.0, |s| s.0);
    let total: f64 = scored.iter().map(|(s, _)| (s - max).exp()).sum();
    let topk: Vec<Value> = scored
        .iter()
        .enumerate()
        .map(|(i, &(score, pid))| {
            json!({
                "text": shared.passages[pid],
                "pid": pid,
                "rank": i + 1,
                "score": score,
                "prob": (score - max).exp() / total,
            })
        })
        .collect();
    json!({"query": query, "topk": topk})
}

/// Words too common to score: English articles, auxiliaries, prepositions and pronouns.
const STOPWORDS: [&str; 25] = [
    "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it", "its", "of", "on",
    "or", "that", "the", "this", "to", "was", "were", "what", "which", "with",
];

/// The words a passage or query is scored by: lowercased runs of letters, digits and `_`,
/// two characters or more, without [`STOPWORDS`].
fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.chars().nth(1).is_some() && !STOPWORDS.contains(w))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_client as http;

    const PASSAGES: [&str; 4] = [
        "Ada Lovelace wrote the first program",
        "The Analytical Engine was designed by Charles Babbage",
        "Lovelace and Babbage corresponded about the Analytical Engine",
        "Paris is the capital of France",
    ];

    #[tokio::test]
    async fn answers_get_and_post_in_the_real_format() {
        let server = MockColbert::start(PASSAGES).await.unwrap();
        let http = http();
        let got: Value = http
            .get(format!(
                "{}?query=Babbage%20Analytical%20Engine&k=2",
                server.url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["query"], "Babbage Analytical Engine");
        let topk = got["topk"].as_array().unwrap();
        assert_eq!(topk.len(), 2);
        // Both contain the three words: passage 1 has 5 words (3 + 3/5), passage 2 has 6.
        assert_eq!(topk[0]["pid"], 1);
        assert!((topk[0]["score"].as_f64().unwrap() - 3.6).abs() < 1e-12);
        assert!((topk[1]["score"].as_f64().unwrap() - 3.5).abs() < 1e-12);
        assert_eq!(topk[0]["rank"], 1);
        assert_eq!(topk[1]["pid"], 2);
        assert_eq!(topk[1]["rank"], 2);
        let probs: f64 = topk.iter().map(|p| p["prob"].as_f64().unwrap()).sum();
        assert!((probs - 1.0).abs() < 1e-9);
        assert_eq!(
            topk[0].as_object().unwrap().keys().collect::<Vec<_>>(),
            ["text", "pid", "rank", "score", "prob"]
        );

        let posted: Value = http
            .post(server.url())
            .json(&json!({"query": "Babbage Analytical Engine", "k": 2}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(posted, got);
        assert_eq!(server.requests(), MockColbertStats { get: 1, post: 1 });
    }

    #[tokio::test]
    async fn k_defaults_to_10_and_is_capped_at_100() {
        let many: Vec<String> = (0..150).map(|i| format!("passage number {i}")).collect();
        let server = MockColbert::start(many).await.unwrap();
        let http = http();
        let count = |url: String| {
            let http = http.clone();
            async move {
                let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
                v["topk"].as_array().unwrap().len()
            }
        };
        assert_eq!(count(format!("{}?query=passage", server.url())).await, 10);
        assert_eq!(
            count(format!("{}?query=passage&k=500", server.url())).await,
            100
        );
        let bad = http
            .get(format!("{}?query=x&k=many", server.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
        let missing = http.get(server.url()).send().await.unwrap();
        assert_eq!(missing.status(), 400);
        let v: Value = missing.json().await.unwrap();
        assert_eq!(v["error"], true);
    }

    #[test]
    fn words_are_lowercased_runs_without_stopwords() {
        assert_eq!(
            words("The Analytical-Engine was BUILT by x_1, Ada & co."),
            ["analytical", "engine", "built", "x_1", "ada", "co"]
        );
        assert!(words("a I the").is_empty());
    }
}
