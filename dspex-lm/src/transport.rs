//! How an [`LM`](super::LM) reaches its endpoint: the lean HTTP/1.1 client of `http1` for plain
//! `http://` base URLs, reqwest (rustls, HTTP/2 by ALPN, a caller's own client) for the rest.
//! Both give the same answers and the same errors to the reliability stack above them.

use super::http1::{self, Http1Error};
use bytes::Bytes;
use futures_util::future::Either;
use futures_util::{FutureExt, Stream, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How long opening a connection may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle pooled connection is kept.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The HTTP client of an LM (shared by its clones).
pub(crate) enum Transport {
    /// reqwest: `https://`, a base URL with credentials, or a client the caller passed in.
    Reqwest(reqwest::Client),
    /// The lean HTTP/1.1 client for one plain `http://` origin.
    Http1(Arc<http1::Pool>),
}

/// One URL of an endpoint, ready for either transport.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) url: reqwest::Url,
    /// The request head prefix, for the HTTP/1.1 client (`None` with reqwest).
    pub(crate) target: Option<http1::Target>,
}

/// An answer whose status and headers are known and whose body is still to be read.
pub(crate) enum HttpResponse {
    Reqwest(reqwest::Response),
    Http1(http1::Response),
}

/// A failure below HTTP: connecting, sending, or reading the answer. The message never holds
/// the URL (which may carry credentials) or the request.
#[derive(Debug, Clone)]
pub(crate) struct TransportError {
    /// The attempt ran out of time inside the transport.
    pub(crate) timeout: bool,
    /// The response body was larger than the caller's limit.
    pub(crate) too_large: bool,
    /// What happened, with its causes.
    pub(crate) message: String,
}

/// The body of a streamed answer, piece by piece.
pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, TransportError>> + Send>>;

/// The fixed headers of every request, which a header of the caller's with the same name
/// replaces.
const USER_AGENT: &str = concat!("dspex/", env!("CARGO_PKG_VERSION"));

impl Transport {
    /// The HTTP/1.1 client when `url` is plain `http://` without credentials and no proxy from
    /// the environment applies to it, else reqwest.
    pub(crate) fn for_base(url: &reqwest::Url) -> Result<Transport, String> {
        Self::for_base_with(
            url,
            &hyper_util::client::proxy::matcher::Matcher::from_env(),
        )
    }

    /// [`for_base`](Transport::for_base) with the proxy settings in `proxies`.
    fn for_base_with(
        url: &reqwest::Url,
        proxies: &hyper_util::client::proxy::matcher::Matcher,
    ) -> Result<Transport, String> {
        if url.scheme() == "http"
            && url.username().is_empty()
            && url.password().is_none()
            && !is_proxied(url, proxies)
            && let Some(host) = url.host_str()
        {
            let port = url.port_or_known_default().unwrap_or(80);
            return Ok(Transport::Http1(Arc::new(http1::Pool::new(
                host,
                port,
                CONNECT_TIMEOUT,
                IDLE_TIMEOUT,
            ))));
        }
        reqwest_client().map(Transport::Reqwest)
    }

    /// `url` prepared for this transport, with the caller's `headers` and the `auth` header.
    pub(crate) fn endpoint(
        &self,
        url: reqwest::Url,
        headers: &reqwest::header::HeaderMap,
        auth: Option<(&reqwest::header::HeaderName, &reqwest::header::HeaderValue)>,
    ) -> Endpoint {
        let target = match self {
            Transport::Reqwest(_) => None,
            Transport::Http1(_) => {
                let authority = match (url.host_str(), url.port()) {
                    (Some(host), Some(port)) => format!("{host}:{port}"),
                    (Some(host), None) => host.to_string(),
                    (None, _) => String::new(),
                };
                let path = match url.query() {
                    Some(query) => format!("{}?{query}", url.path()),
                    None => url.path().to_string(),
                };
                let mut lines: Vec<(&str, &[u8])> = Vec::new();
                for (name, value) in [
                    ("user-agent", USER_AGENT),
                    ("accept", "*/*"),
                    ("content-type", "application/json"),
                ] {
                    if !headers.contains_key(name) {
                        lines.push((name, value.as_bytes()));
                    }
                }
                if let Some((name, value)) = auth
                    && !headers.contains_key(name)
                {
                    lines.push((name.as_str(), value.as_bytes()));
                }
                for (name, value) in headers {
                    lines.push((name.as_str(), value.as_bytes()));
                }
                Some(http1::Target::post(&authority, &path, &lines))
            }
        };
        Endpoint { url, target }
    }

    /// POSTs `body` (JSON) to `endpoint`; the answer's body is left unread.
    pub(crate) async fn post(
        &self,
        endpoint: &Endpoint,
        headers: &reqwest::header::HeaderMap,
        auth: Option<(&reqwest::header::HeaderName, &reqwest::header::HeaderValue)>,
        body: Bytes,
    ) -> Result<HttpResponse, TransportError> {
        match (self, &endpoint.target) {
            (Transport::Http1(pool), Some(target)) => pool
                .post(target, &body)
                .await
                .map(HttpResponse::Http1)
                .map_err(TransportError::from),
            (Transport::Http1(_), None) => Err(TransportError {
                timeout: false,
                too_large: false,
                message: "the endpoint was prepared for another transport".to_string(),
            }),
            // Boxed: its future is much larger than the HTTP/1.1 client's, and would make every
            // call in flight on either transport as large.
            (Transport::Reqwest(client), _) => {
                Box::pin(async move {
                    let mut builder = client
                        .post(endpoint.url.clone())
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body);
                    if !headers.is_empty() {
                        builder = builder.headers(headers.clone());
                    }
                    if let Some((name, value)) = auth
                        && !headers.contains_key(name)
                    {
                        builder = builder.header(name.clone(), value.clone());
                    }
                    builder
                        .send()
                        .await
                        .map(HttpResponse::Reqwest)
                        .map_err(|e| TransportError::from(&e))
                })
                .await
            }
        }
    }
}

impl HttpResponse {
    /// The status code.
    pub(crate) fn status(&self) -> u16 {
        match self {
            HttpResponse::Reqwest(r) => r.status().as_u16(),
            HttpResponse::Http1(r) => r.status,
        }
    }

    /// The headers (the HTTP/1.1 client keeps them only for answers that are not 2xx).
    pub(crate) fn headers(&self) -> Option<&reqwest::header::HeaderMap> {
        match self {
            HttpResponse::Reqwest(r) => Some(r.headers()),
            HttpResponse::Http1(r) => r.headers.as_deref(),
        }
    }

    /// The whole body, of at most `limit` bytes (a longer one is an error with `too_large`).
    /// (Not an `async fn`: that would hold `self` next to the future it is moved into, and
    /// every call in flight would pay for both.)
    pub(crate) fn bytes(
        self,
        limit: u64,
    ) -> impl Future<Output = Result<Bytes, TransportError>> + Send {
        match self {
            // Boxed for the reason `post` boxes reqwest's future.
            HttpResponse::Reqwest(r) => Either::Left(Box::pin(reqwest_bytes(r, limit))),
            HttpResponse::Http1(r) => Either::Right(
                r.bytes(limit)
                    .map(|result| result.map_err(TransportError::from)),
            ),
        }
    }

    /// The body as it arrives; past `limit` bytes in all, the stream ends with an error with
    /// `too_large`.
    pub(crate) fn into_stream(self, limit: u64) -> ByteStream {
        let pieces: ByteStream = match self {
            HttpResponse::Reqwest(r) => Box::pin(
                r.bytes_stream()
                    .map(|item| item.map_err(|e| TransportError::from(&e))),
            ),
            HttpResponse::Http1(r) => {
                Box::pin(futures_util::stream::unfold(Some(r), |state| async move {
                    let mut response = state?;
                    match response.chunk().await {
                        Ok(Some(bytes)) => Some((Ok(bytes), Some(response))),
                        Ok(None) => None,
                        // The error ends the stream.
                        Err(e) => Some((Err(TransportError::from(e)), None)),
                    }
                }))
            }
        };
        Box::pin(futures_util::stream::unfold(
            (pieces, 0u64, false),
            move |(mut pieces, total, over)| async move {
                if over {
                    return None;
                }
                match pieces.next().await? {
                    Ok(bytes) if total + bytes.len() as u64 > limit => Some((
                        Err(TransportError::from(Http1Error::TooLarge(limit))),
                        (pieces, total, true),
                    )),
                    Ok(bytes) => {
                        let total = total + bytes.len() as u64;
                        Some((Ok(bytes), (pieces, total, false)))
                    }
                    Err(e) => Some((Err(e), (pieces, total, true))),
                }
            },
        ))
    }
}

/// A reqwest answer's whole body, refused past `limit` bytes: at once when its
/// `Content-Length` says so, else as the pieces arrive.
async fn reqwest_bytes(mut r: reqwest::Response, limit: u64) -> Result<Bytes, TransportError> {
    let too_large = || TransportError::from(Http1Error::TooLarge(limit));
    if r.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut all = bytes::BytesMut::new();
    while let Some(piece) = r.chunk().await.map_err(|e| TransportError::from(&e))? {
        if (all.len() + piece.len()) as u64 > limit {
            return Err(too_large());
        }
        all.extend_from_slice(&piece);
    }
    Ok(all.freeze())
}

impl From<Http1Error> for TransportError {
    fn from(e: Http1Error) -> Self {
        TransportError {
            timeout: false,
            too_large: matches!(e, Http1Error::TooLarge(_)),
            message: e.to_string(),
        }
    }
}

impl From<&reqwest::Error> for TransportError {
    fn from(e: &reqwest::Error) -> Self {
        // The kind and the error chain, without reqwest's Display (which carries the full URL,
        // credentials included; the redacted endpoint is in the LM's error already).
        let mut message = if e.is_connect() {
            "cannot connect"
        } else if e.is_body() || e.is_decode() {
            "the response body broke off"
        } else if e.is_request() {
            "the request failed"
        } else {
            "transport error"
        }
        .to_string();
        let mut source = std::error::Error::source(e);
        while let Some(inner) = source {
            message.push_str(": ");
            message.push_str(&inner.to_string());
            source = inner.source();
        }
        TransportError {
            timeout: e.is_timeout(),
            too_large: false,
            message,
        }
    }
}

/// Whether a proxy from the environment applies to `url`: the `HTTP_PROXY`/`http_proxy`,
/// `HTTPS_PROXY`/`https_proxy`, `ALL_PROXY`/`all_proxy` and `NO_PROXY`/`no_proxy` variables read
/// by the very matcher reqwest uses (hyper-util's), so both transports agree on which
/// endpoints are proxied: a proxied one goes through reqwest, which sends it to the proxy.
fn is_proxied(url: &reqwest::Url, proxies: &hyper_util::client::proxy::matcher::Matcher) -> bool {
    match url.as_str().parse::<http::Uri>() {
        Ok(uri) => proxies.intercept(&uri).is_some(),
        // reqwest would not send to a URL `http` cannot parse either.
        Err(_) => false,
    }
}

/// A reqwest client builder with dspex's TLS: rustls on the ring provider, handed to this
/// client alone (nothing process-wide is installed, so an application's own choice of rustls
/// provider stays its own), the platform's certificate verifier as reqwest's default, HTTP/2
/// or HTTP/1.1 by ALPN. Proxies from the environment apply, as reqwest reads them.
///
/// Other dspex clients (the ColBERTv2 retriever) build on it, and so can an application that
/// wants a reqwest client set up the same way. Fails (with the reason) only when the platform's
/// certificate verifier cannot start.
pub fn reqwest_builder() -> Result<reqwest::ClientBuilder, String> {
    Ok(reqwest::Client::builder().tls_backend_preconfigured(rustls_config()?))
}

/// The TLS configuration of [`reqwest_builder`]: rustls with the ring provider, the platform's
/// certificate verifier, ALPN for HTTP/2 and HTTP/1.1. For clients that reqwest's async
/// builder does not make (the OTLP exporter's blocking client).
pub fn rustls_config() -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(Arc::clone(&provider))
        .map_err(|e| format!("cannot set up TLS certificate verification: {e}"))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

/// The reqwest client: dspex's TLS ([`reqwest_builder`]), pooled connections, HTTP/2 where the
/// server offers it.
fn reqwest_client() -> Result<reqwest::Client, String> {
    reqwest_builder()?
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> reqwest::Url {
        reqwest::Url::parse(text).unwrap()
    }

    #[test]
    fn the_reqwest_client_installs_no_process_wide_tls_provider() {
        reqwest_client().unwrap();
        Transport::for_base(&url("https://api.openai.com/v1/chat/completions")).unwrap();
        // An application's own choice of provider stays its own.
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    }

    #[test]
    fn a_proxied_plain_http_endpoint_goes_through_reqwest() {
        use hyper_util::client::proxy::matcher::Matcher;
        let local = url("http://127.0.0.1:8000/v1/chat/completions");
        let proxied = Matcher::builder().http("http://127.0.0.1:3128").build();
        assert!(matches!(
            Transport::for_base_with(&local, &proxied).unwrap(),
            Transport::Reqwest(_)
        ));
        // NO_PROXY exempts the host; an HTTPS-only proxy leaves plain http alone.
        let exempt = Matcher::builder()
            .http("http://127.0.0.1:3128")
            .no("127.0.0.1,localhost")
            .build();
        let https_only = Matcher::builder().https("http://127.0.0.1:3128").build();
        for proxies in [exempt, https_only, Matcher::builder().build()] {
            assert!(matches!(
                Transport::for_base_with(&local, &proxies).unwrap(),
                Transport::Http1(_)
            ));
        }
        // ALL_PROXY covers every scheme.
        let all = Matcher::builder().all("http://127.0.0.1:3128").build();
        assert!(matches!(
            Transport::for_base_with(&local, &all).unwrap(),
            Transport::Reqwest(_)
        ));
    }

    #[test]
    fn plain_http_takes_the_lean_client_and_everything_else_reqwest() {
        assert!(matches!(
            Transport::for_base(&url("http://127.0.0.1:8000/v1/chat/completions")).unwrap(),
            Transport::Http1(_)
        ));
        assert!(matches!(
            Transport::for_base(&url("http://localhost/v1/chat/completions")).unwrap(),
            Transport::Http1(_)
        ));
        for other in [
            "https://api.openai.com/v1/chat/completions",
            "http://user:pw@127.0.0.1:8000/v1/chat/completions",
        ] {
            assert!(
                matches!(
                    Transport::for_base(&url(other)).unwrap(),
                    Transport::Reqwest(_)
                ),
                "{other}"
            );
        }
    }

    #[test]
    fn the_request_head_carries_the_callers_headers_once() {
        let transport = Transport::for_base(&url("http://127.0.0.1:8000/v1/x")).unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("user-agent", "mine".parse().unwrap());
        headers.insert("x-extra", "1".parse().unwrap());
        let auth: reqwest::header::HeaderValue = "Bearer sk-1".parse().unwrap();
        let endpoint = transport.endpoint(
            url("http://127.0.0.1:8000/v1/chat/completions?api-version=2"),
            &headers,
            Some((&reqwest::header::AUTHORIZATION, &auth)),
        );
        let head = String::from_utf8(endpoint.target.unwrap().prefix_for_test()).unwrap();
        assert_eq!(
            head,
            "POST /v1/chat/completions?api-version=2 HTTP/1.1\r\nhost: 127.0.0.1:8000\r\naccept: */*\r\ncontent-type: application/json\r\nauthorization: Bearer sk-1\r\nuser-agent: mine\r\nx-extra: 1\r\n"
        );
    }
}

/// The same calls through both transports against the mock server: the same answers, the same
/// typed errors.
#[cfg(test)]
mod both_transports {
    use crate::{LM, LmError, LmRequest, RetryPolicy, StreamEvent};
    use dspex_testing::{Fault, FaultWhen, MockLm, MockLmServer};
    use futures_util::StreamExt;
    use std::time::Duration;

    fn lms(server: &MockLmServer) -> [(&'static str, LM); 2] {
        let builder = || {
            LM::builder("openai/mock")
                .api_base(server.api_base())
                .api_key("sk-both")
                .cache(false)
                .retry(RetryPolicy::none())
                .timeout(Duration::from_secs(5))
        };
        let reqwest = crate::reqwest_builder().unwrap().build().unwrap();
        [
            ("http1", builder().build().unwrap()),
            ("reqwest", builder().http_client(reqwest).build().unwrap()),
        ]
    }

    async fn stream_text(lm: &LM, prompt: &str) -> (String, Option<LmError>) {
        let mut events = lm.stream(LmRequest::prompt(prompt)).await.unwrap();
        let (mut text, mut error) = (String::new(), None);
        while let Some(event) = events.next().await {
            match event {
                Ok(StreamEvent::Delta { text: t, .. }) => text.push_str(&t),
                Ok(_) => {}
                Err(e) => error = Some(e),
            }
        }
        (text, error)
    }

    #[tokio::test]
    async fn answers_streams_and_embeddings_match() {
        let server = MockLm::start().await.unwrap();
        let [(_, lean), (_, reqwest)] = lms(&server);
        for prompt in ["one", "two"] {
            let a = lean.call(LmRequest::prompt(prompt)).await.unwrap();
            let b = reqwest.call(LmRequest::prompt(prompt)).await.unwrap();
            assert_eq!(a.text(), b.text());
            assert_eq!(a.usage, b.usage);
            assert_eq!(stream_text(&lean, prompt).await.0, a.text());
            assert_eq!(stream_text(&reqwest, prompt).await.0, a.text());
        }
        let a = lean.embed(&["x", "y"]).await.unwrap();
        let b = reqwest.embed(&["x", "y"]).await.unwrap();
        assert_eq!(a.vectors, b.vectors);
    }

    #[tokio::test]
    async fn faults_give_the_same_typed_errors() {
        let server = MockLm::start().await.unwrap();
        for (name, lm) in lms(&server) {
            server.set_faults(vec![(Fault::Status(503), FaultWhen::Always)]);
            let err = lm.call(LmRequest::prompt("x")).await.unwrap_err();
            assert!(
                matches!(err, LmError::Http { status: 503, ref body, .. } if body.contains("mock fault")),
                "{name}: {err}"
            );
            server.set_faults(vec![(
                Fault::RateLimited {
                    retry_after: Duration::from_millis(250),
                },
                FaultWhen::Always,
            )]);
            let err = lm.call(LmRequest::prompt("x")).await.unwrap_err();
            assert!(
                matches!(err, LmError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_millis(250)),
                "{name}: {err}"
            );
            server.set_faults(vec![(Fault::ResetMidBody, FaultWhen::Always)]);
            let err = lm.call(LmRequest::prompt("x")).await.unwrap_err();
            assert!(
                matches!(err, LmError::Connect { ref message, .. } if message.contains("broke off")),
                "{name}: {err}"
            );
            server.set_faults(vec![(Fault::MalformedJson, FaultWhen::Always)]);
            let err = lm.call(LmRequest::prompt("x")).await.unwrap_err();
            assert!(matches!(err, LmError::Decode { .. }), "{name}: {err}");
            server.set_faults(vec![(Fault::TruncatedStream, FaultWhen::Always)]);
            let (_, error) = stream_text(&lm, "x").await;
            assert!(
                matches!(error, Some(LmError::Connect { ref message, .. }) if message.contains("[DONE]")),
                "{name}: {error:?}"
            );
            server.set_faults(vec![(
                Fault::Hang(Duration::from_secs(30)),
                FaultWhen::Always,
            )]);
            let err = lm
                .with_timeout(Duration::from_millis(100))
                .call(LmRequest::prompt("x"))
                .await
                .unwrap_err();
            assert!(matches!(err, LmError::Timeout { .. }), "{name}: {err}");
            let text = err.to_string();
            assert!(!text.contains("sk-both"), "{name}: {text}");
        }
        server.clear_faults();
        let base = server.api_base();
        let lms = lms(&server);
        server.shutdown().await;
        for (name, lm) in lms {
            let err = lm.call(LmRequest::prompt("x")).await.unwrap_err();
            assert!(
                matches!(err, LmError::Connect { ref message, .. } if message.contains("connect")),
                "{name}: {err}"
            );
            assert!(err.to_string().contains(&base), "{name}: {err}");
        }
    }
}
