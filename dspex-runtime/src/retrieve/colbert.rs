//! [`ColBERTv2`]: a client for a ColBERTv2 retrieval server, compatible with DSPy's
//! `dspy.ColBERTv2(url, port=None, post_requests=False)`.
//!
//! The protocol: `GET url?query=…&k=…` (or, with `post_requests`, `POST url` with the JSON body
//! `{"query": …, "k": …}`) answers `{"topk": [{"text", "pid", "rank", "score", "prob", …}, …]}`
//! best first, or `{"error": true, "message": …}`.

use super::{Passage, RetrieveError, Retriever};
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::time::Duration;
use tracing::Instrument;

/// How much of an unexpected body an error quotes.
const EXCERPT_CHARS: usize = 200;

/// A ColBERTv2 server as a [`Retriever`] (DSPy's `dspy.ColBERTv2`).
///
/// Each passage of the server's `topk` becomes a [`Passage`]: `pid` its id, `text` its text,
/// `score` its score, and every other field (`rank`, `prob`, …) its extra fields. DSPy reads only
/// `text`, and so this client: a passage without a `pid` gets its position in the answer as id,
/// one without a `score` gets 0.
///
/// ```no_run
/// use dspex_runtime::retrieve::{ColBERTv2, Retriever};
///
/// # async fn demo() -> Result<(), dspex_runtime::retrieve::RetrieveError> {
/// // DSPy: dspy.ColBERTv2(url="http://20.102.90.50:2017/wiki17_abstracts")
/// let colbert = ColBERTv2::new("http://20.102.90.50:2017/wiki17_abstracts")?;
/// for passage in colbert.retrieve("Who wrote the Analytical Engine notes?", 3).await? {
///     println!("{} ({}): {}", passage.id, passage.score, passage.text);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ColBERTv2 {
    url: reqwest::Url,
    post_requests: bool,
    timeout: Duration,
    http: reqwest::Client,
}

impl std::fmt::Debug for ColBERTv2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColBERTv2")
            .field("url", &self.url.as_str())
            .field("post_requests", &self.post_requests)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ColBERTv2 {
    /// DSPy's request timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A client for the server at `url`, asking with GET, with a 10-second timeout.
    ///
    /// A url that is not `http://` or `https://` is [`RetrieveError::Http`] (with no status).
    pub fn new(url: impl AsRef<str>) -> Result<Self, RetrieveError> {
        let text = url.as_ref();
        let bad = |message: String| RetrieveError::Http {
            url: text.to_string(),
            status: None,
            message,
        };
        let url = reqwest::Url::parse(text).map_err(|e| bad(format!("not a valid url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "the scheme must be http or https, not {}",
                url.scheme()
            )));
        }
        let http = http_client().map_err(|e| bad(format!("cannot build the HTTP client: {e}")))?;
        Ok(ColBERTv2 {
            url,
            post_requests: false,
            timeout: Self::DEFAULT_TIMEOUT,
            http,
        })
    }

    /// A client for the server at `url:port`, as DSPy's `ColBERTv2(url, port=port)` puts them
    /// together.
    pub fn with_port(url: impl AsRef<str>, port: u16) -> Result<Self, RetrieveError> {
        Self::new(format!("{}:{port}", url.as_ref()))
    }

    /// Whether to ask with `POST` and a JSON body instead of `GET` (DSPy's `post_requests`).
    pub fn post_requests(mut self, post: bool) -> Self {
        self.post_requests = post;
        self
    }

    /// How long one request may take, connection included (default
    /// [`DEFAULT_TIMEOUT`](Self::DEFAULT_TIMEOUT)).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends requests through `client` (to share its connection pool, or set proxies and
    /// certificates) instead of one of its own. The client's own one, like the LM client's,
    /// consults no proxy from the environment.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// The server's url.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The server's `k` best passages for `query`, best first (at most `k`, even if the server
    /// sends more; the real server sends at most 100, and DSPy refuses to ask for more). `k` 0
    /// asks nothing.
    ///
    /// A server that cannot be reached, does not answer in time, answers with a status other than
    /// 2xx, or answers `{"error": true, …}` is [`RetrieveError::Http`] (with the status and an
    /// excerpt of the body, or DSPy's `ColBERTv2 server returned an error: …`); an answer that is
    /// not JSON or has no `topk` list of passages with a `text` is [`RetrieveError::Decode`].
    pub async fn search(&self, query: &str, k: usize) -> Result<Vec<Passage>, RetrieveError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let request = if self.post_requests {
            self.http
                .post(self.url.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/json; charset=utf-8",
                )
                .body(serde_json::json!({"query": query, "k": k}).to_string())
        } else {
            let mut url = self.url.clone();
            url.query_pairs_mut()
                .append_pair("query", query)
                .append_pair("k", &k.to_string());
            self.http.get(url)
        };
        let response = request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        if !status.is_success() {
            return Err(RetrieveError::Http {
                url: self.url.to_string(),
                status: Some(status.as_u16()),
                message: format!("HTTP {status}: {}", excerpt(&body)),
            });
        }
        self.parse(&body, status.as_u16(), k)
    }

    /// The passages of a 2xx answer.
    fn parse(&self, body: &[u8], status: u16, k: usize) -> Result<Vec<Passage>, RetrieveError> {
        let decode = |message: String| RetrieveError::Decode {
            url: self.url.to_string(),
            message,
        };
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| decode(format!("not JSON ({e}): {}", excerpt(body))))?;
        let Value::Object(mut answer) = value else {
            return Err(decode(format!(
                "expected a JSON object, got {}",
                excerpt(body)
            )));
        };
        if answer.get("error").is_some_and(truthy) {
            let message = match answer.get("message") {
                Some(Value::String(m)) => m.clone(),
                Some(other) => other.to_string(),
                None => "Unknown error".to_string(),
            };
            return Err(RetrieveError::Http {
                url: self.url.to_string(),
                status: Some(status),
                message: format!("ColBERTv2 server returned an error: {message}"),
            });
        }
        let Some(topk) = answer.remove("topk") else {
            return Err(decode(format!(
                "the answer has no \"topk\": {}",
                excerpt(body)
            )));
        };
        let Value::Array(topk) = topk else {
            return Err(decode("\"topk\" is not a list".into()));
        };
        topk.into_iter()
            .take(k)
            .enumerate()
            .map(|(i, item)| passage(i, item).map_err(|m| decode(format!("topk[{i}]: {m}"))))
            .collect()
    }

    fn transport_error(&self, e: &reqwest::Error) -> RetrieveError {
        let message = if e.is_timeout() {
            format!("no answer within {:?}", self.timeout)
        } else {
            // reqwest's own message is terse; the causes say what happened.
            let mut message = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            message
        };
        RetrieveError::Http {
            url: self.url.to_string(),
            status: e.status().map(|s| s.as_u16()),
            message,
        }
    }
}

impl Retriever for ColBERTv2 {
    fn retrieve<'a>(
        &'a self,
        query: &'a str,
        k: usize,
    ) -> BoxFuture<'a, Result<Vec<Passage>, RetrieveError>> {
        let span = tracing::debug_span!("retrieve.colbertv2", url = %self.url, k);
        Box::pin(self.search(query, k).instrument(span))
    }
}

/// One `topk` entry as a passage; `position` is its index in the answer.
fn passage(position: usize, item: Value) -> Result<Passage, String> {
    let Value::Object(mut fields) = item else {
        return Err("not a JSON object".into());
    };
    let text = match fields.remove("text") {
        Some(Value::String(text)) => text,
        Some(_) => return Err("\"text\" is not a string".into()),
        None => return Err("no \"text\"".into()),
    };
    let id = match fields.remove("pid") {
        None | Some(Value::Null) => position.to_string(),
        Some(Value::String(pid)) => pid,
        Some(Value::Number(pid)) if pid.is_i64() || pid.is_u64() => pid.to_string(),
        Some(other) => return Err(format!("\"pid\" is not an integer or a string: {other}")),
    };
    let score = match fields.remove("score") {
        None | Some(Value::Null) => 0.0,
        Some(Value::Number(score)) => score.as_f64().unwrap_or(0.0) as f32,
        Some(other) => return Err(format!("\"score\" is not a number: {other}")),
    };
    Ok(Passage {
        id,
        text,
        score,
        extra: fields,
    })
}

/// Python's truthiness of a JSON value (DSPy tests `res_json.get("error")`).
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The start of a body, for an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The LM client's TLS set-up (rustls on ring, handed to this client alone) and proxies from
/// the environment.
fn http_client() -> Result<reqwest::Client, String> {
    crate::lm::reqwest_builder()?
        .user_agent(concat!("dspex/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ColBERTv2 {
        ColBERTv2::new("http://127.0.0.1:9/api/search").unwrap()
    }

    fn parse(body: &str, k: usize) -> Result<Vec<Passage>, RetrieveError> {
        client().parse(body.as_bytes(), 200, k)
    }

    #[test]
    fn urls_are_checked_and_ports_appended_as_dspy_does() {
        assert!(matches!(
            ColBERTv2::new("not a url"),
            Err(RetrieveError::Http { status: None, .. })
        ));
        let err = ColBERTv2::new("ftp://host/x").unwrap_err();
        assert!(err.to_string().contains("http or https"), "{err}");
        let c = ColBERTv2::with_port("http://127.0.0.1", 2017).unwrap();
        assert_eq!(c.url(), "http://127.0.0.1:2017/");
        let c = client().post_requests(true).timeout(Duration::from_secs(1));
        assert!(c.post_requests);
        assert_eq!(c.timeout, Duration::from_secs(1));
    }

    #[test]
    fn topk_entries_become_passages() {
        let body = r#"{"query": "q", "topk": [
            {"text": "Ada", "pid": 12, "rank": 1, "score": 21.5, "prob": 0.75, "long_text": "Ada"},
            {"text": "Bob", "pid": "b7", "rank": 2, "score": 20.0, "prob": 0.25},
            {"text": "Cy"}
        ], "latency": 3}"#;
        let got = parse(body, 10).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].id.as_str(), got[0].text.as_str()), ("12", "Ada"));
        assert_eq!(got[0].score, 21.5);
        assert_eq!(got[0].extra["rank"], 1);
        assert_eq!(got[0].extra["prob"], 0.75);
        assert_eq!(got[0].extra["long_text"], "Ada");
        assert!(!got[0].extra.contains_key("pid") && !got[0].extra.contains_key("text"));
        assert_eq!(got[1].id, "b7");
        // No pid: the position; no score: 0.
        assert_eq!((got[2].id.as_str(), got[2].score), ("2", 0.0));
        // At most k, as DSPy's `topk[:k]`.
        assert_eq!(parse(body, 1).unwrap().len(), 1);
    }

    #[test]
    fn error_answers_are_http_errors_with_the_message() {
        let err = parse(r#"{"error": true, "message": "index offline"}"#, 3).unwrap_err();
        match &err {
            RetrieveError::Http {
                url,
                status,
                message,
            } => {
                assert_eq!(url, "http://127.0.0.1:9/api/search");
                assert_eq!(*status, Some(200));
                assert_eq!(message, "ColBERTv2 server returned an error: index offline");
            }
            other => panic!("{other:?}"),
        }
        let err = parse(r#"{"error": "yes"}"#, 3).unwrap_err();
        assert!(err.to_string().ends_with("Unknown error"), "{err}");
        // A falsy error is no error.
        assert!(
            parse(r#"{"error": false, "topk": []}"#, 3)
                .unwrap()
                .is_empty()
        );
        assert!(parse(r#"{"error": 0, "topk": []}"#, 3).unwrap().is_empty());
    }

    #[test]
    fn malformed_answers_are_decode_errors() {
        for (body, expected) in [
            ("<html>oops</html>", "not JSON"),
            ("[1, 2]", "expected a JSON object"),
            (r#"{"passages": []}"#, "no \"topk\""),
            (r#"{"topk": {}}"#, "not a list"),
            (r#"{"topk": [1]}"#, "topk[0]: not a JSON object"),
            (r#"{"topk": [{"pid": 1}]}"#, "topk[0]: no \"text\""),
            (r#"{"topk": [{"text": 5}]}"#, "\"text\" is not a string"),
            (r#"{"topk": [{"text": "a", "pid": 1.5}]}"#, "\"pid\""),
            (r#"{"topk": [{"text": "a", "score": "high"}]}"#, "\"score\""),
        ] {
            let err = parse(body, 3).unwrap_err();
            assert!(
                matches!(&err, RetrieveError::Decode { message, .. } if message.contains(expected)),
                "{body}: {err:?}"
            );
        }
    }

    #[test]
    fn excerpts_are_short_and_cut_on_characters() {
        let long = "é".repeat(500);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt(b"  "), "(empty body)");
    }

    #[tokio::test]
    async fn k_zero_asks_nothing_and_an_unreachable_server_is_an_http_error() {
        // k 0 does not even connect.
        assert!(client().search("q", 0).await.unwrap().is_empty());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let c = ColBERTv2::with_port("http://127.0.0.1", port).unwrap();
        let err = c.retrieve("q", 3).await.unwrap_err();
        assert!(
            matches!(&err, RetrieveError::Http { status: None, url, .. } if url.contains(&port.to_string())),
            "{err:?}"
        );
    }
}
