//! The test servers' HTTP/1.1 server (the mock LM's and the mock ColBERTv2's): accept, read a
//! request (head and whole body), hand it to the handler, write the answer, keep the connection
//! for the next request.
//!
//! Why not a server crate: it was axum's `serve` and router until the LM client benchmark
//! (BENCHMARKS.md, "LM client") measured this server at 30 % less CPU per request, and at 0 ms
//! latency the mock is the bottleneck of both sides' throughput rows. Requests are read with
//! `httparse` and carried as `http` types. It is written for the mock's job — many clients, tiny requests, answers after a simulated
//! latency — and costs far less per request than a general server stack: one task per
//! connection, no buffer while a connection is idle, the answer's head and body in one write.
//! It speaks what OpenAI clients send: `Content-Length` or chunked request bodies,
//! `Expect: 100-continue`, keep-alive (HTTP/1.1 unless `Connection: close`; HTTP/1.0 closes),
//! pipelined requests answered in order. Bodies it answers are either whole (with
//! `Content-Length`) or a stream: chunked, or raw bytes when the answer declares its own
//! length (the reset fault), and an error from the stream drops the connection mid-body.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{Method, header};
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A request with its whole body.
pub(crate) type Request = http::Request<Bytes>;
/// An answer.
pub(crate) type Response = http::Response<Body>;

/// Largest request head.
const MAX_HEAD: usize = 64 << 10;
/// Most request headers.
const MAX_HEADERS: usize = 96;
/// Bytes read at a time.
const READ_CHUNK: usize = 4096;
/// How long shutdown waits for connections still answering.
const DRAIN: Duration = Duration::from_secs(10);

/// The body of an answer.
pub(crate) enum Body {
    /// All of it, sent with `Content-Length`.
    Full(Bytes),
    /// Pieces as they come; an error ends the connection where it stands.
    Stream(Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>),
}

impl Body {
    /// A body sent piece by piece.
    pub(crate) fn from_stream<S>(stream: S) -> Body
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + 'static,
    {
        Body::Stream(Box::pin(stream))
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Body {
        Body::Full(Bytes::from(bytes))
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Body {
        Body::Full(bytes)
    }
}

/// A whole answer: `status`, a `content-type` and the body.
pub(crate) fn full_response(
    status: http::StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response {
    let mut response = Response::new(Body::Full(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// What a server is: its handler, and how it refuses a request it cannot read.
pub(crate) struct Service<H> {
    /// Answers each request.
    pub(crate) handler: H,
    /// The answer to a request that cannot be read (a 400 in the server's error format); the
    /// connection closes after it.
    pub(crate) refuse: fn(&str) -> Response,
    /// The largest request body read; a larger one is refused.
    pub(crate) body_limit: usize,
    /// Names the server in logs.
    pub(crate) name: &'static str,
}

impl<H: Clone> Clone for Service<H> {
    fn clone(&self) -> Self {
        Service {
            handler: self.handler.clone(),
            refuse: self.refuse,
            body_limit: self.body_limit,
            name: self.name,
        }
    }
}

/// Resolves once `flag` turns `true` or its sender is gone — either way, time to stop.
///
/// The guard `wait_for` returns is not `Send`; this lets go of it, so the future can be held
/// across `.await`s in spawned tasks and `select!`s.
pub(crate) async fn stop_raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|raised| *raised).await.is_ok();
}

/// Serves `listener` until `shutdown` turns `true` (or its sender is gone): then stops
/// accepting, closes idle connections, lets the answers under way finish (at most
/// [`DRAIN`]) and returns.
pub(crate) async fn serve<H, F>(
    listener: TcpListener,
    service: Service<H>,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()>
where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let mut connections = JoinSet::new();
    let for_connections = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    // Out of descriptors and the like: the listener itself is fine.
                    Err(e) => {
                        tracing::debug!(error = %e, server = service.name, "accept failed");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                };
                connections.spawn(connection(stream, service.clone(), for_connections.clone()));
                while connections.try_join_next().is_some() {}
            }
            () = stop_raised(&mut shutdown) => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// What went wrong with a request before it reached the router.
struct BadRequest(String);

/// One connection: requests in order until either side closes it or the server stops.
async fn connection<H, F>(
    mut stream: TcpStream,
    service: Service<H>,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Request) -> F,
    F: Future<Output = Response>,
{
    // Small answers must not wait for Nagle; failing to set it is harmless.
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::new();
    loop {
        let head = loop {
            match parse_head(&buf) {
                Ok(Some(head)) => break head,
                Ok(None) if buf.len() > MAX_HEAD => {
                    let message = format!("the request head is longer than {MAX_HEAD} bytes");
                    return refuse(&mut stream, service.refuse, &message).await;
                }
                Ok(None) => {}
                Err(BadRequest(message)) => {
                    return refuse(&mut stream, service.refuse, &message).await;
                }
            }
            if buf.is_empty() {
                // Idle: no buffer held, and a stopping server closes the connection here.
                tokio::select! {
                    ready = stream.readable() => if ready.is_err() { return },
                    () = stop_raised(&mut shutdown) => return,
                }
            }
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        buf.advance(head.length);
        if head.expect_continue
            && head.body != BodyFraming::Length(0)
            && stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return;
        }
        let body = match read_body(&mut stream, &mut buf, head.body, service.body_limit).await {
            Ok(body) => body,
            Err(BadRequest(message)) => return refuse(&mut stream, service.refuse, &message).await,
        };
        let head_only = head.method == Method::HEAD;
        let mut request = Request::new(body);
        *request.method_mut() = head.method;
        *request.uri_mut() = head.uri;
        *request.headers_mut() = head.headers;
        let response = (service.handler)(request).await;
        // Once the server stops, the answer under way is the connection's last.
        let keep_alive = head.keep_alive && !*shutdown.borrow();
        if write_response(&mut stream, response, keep_alive, head_only)
            .await
            .is_err()
            || !keep_alive
        {
            return;
        }
        if buf.is_empty() {
            // Nothing pipelined: give the buffer back while the connection waits.
            buf = BytesMut::new();
        }
    }
}

/// Answers a request that cannot be read with a 400 and closes the connection.
async fn refuse(stream: &mut TcpStream, answer: fn(&str) -> Response, message: &str) {
    let response = answer(&format!("Could not read the request: {message}"));
    let _ = write_response(stream, response, false, false).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFraming {
    Length(usize),
    Chunked,
}

struct Head {
    method: Method,
    uri: http::Uri,
    /// The request's headers (a handler checks a provider's key header, a version header).
    headers: http::HeaderMap,
    body: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
    /// Bytes of the head.
    length: usize,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, BadRequest> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let length = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(BadRequest(e.to_string())),
    };
    let bad = |m: &str| BadRequest(m.to_string());
    let method = Method::from_bytes(request.method.unwrap_or("").as_bytes())
        .map_err(|_| bad("invalid method"))?;
    let uri = request
        .path
        .unwrap_or("/")
        .parse::<http::Uri>()
        .map_err(|_| bad("invalid path"))?;
    let http11 = request.version == Some(1);
    let (mut content_length, mut chunked, mut close, mut expect_continue) =
        (None, false, false, false);
    let mut header_map = http::HeaderMap::with_capacity(request.headers.len());
    for h in request.headers.iter() {
        let name = http::header::HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| bad("invalid header name"))?;
        let value =
            http::HeaderValue::from_bytes(h.value).map_err(|_| bad("invalid header value"))?;
        header_map.append(name, value);
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| bad("invalid content-length"))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(bad("conflicting content-length headers"));
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or(h.value);
            if !last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(bad("unsupported transfer-encoding"));
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= h
                .value
                .split(|b| *b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    let body = match (chunked, content_length) {
        (true, Some(_)) => return Err(bad("both content-length and chunked")),
        (true, None) => BodyFraming::Chunked,
        (false, n) => BodyFraming::Length(n.unwrap_or(0)),
    };
    Ok(Some(Head {
        method,
        uri,
        headers: header_map,
        body,
        // HTTP/1.0 connections close after one answer.
        keep_alive: http11 && !close,
        expect_continue,
        length,
    }))
}

/// The whole request body (bytes already read first).
async fn read_body(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    framing: BodyFraming,
    limit: usize,
) -> Result<Bytes, BadRequest> {
    match framing {
        BodyFraming::Length(0) => Ok(Bytes::new()),
        BodyFraming::Length(n) if n > limit => Err(BadRequest("length limit exceeded".into())),
        BodyFraming::Length(n) => {
            if buf.len() < n {
                buf.reserve(n - buf.len());
                while buf.len() < n {
                    fill(stream, buf).await?;
                }
            }
            Ok(buf.split_to(n).freeze())
        }
        BodyFraming::Chunked => {
            let mut body = BytesMut::new();
            loop {
                let line = read_line(stream, buf).await?;
                let digits = line.split(|b| *b == b';').next().unwrap_or(&line);
                let size = std::str::from_utf8(digits.trim_ascii())
                    .ok()
                    .and_then(|t| usize::from_str_radix(t, 16).ok())
                    .ok_or_else(|| BadRequest("invalid chunk size".into()))?;
                if size == 0 {
                    // Trailers, up to the blank line.
                    while !read_line(stream, buf).await?.is_empty() {}
                    return Ok(body.freeze());
                }
                // `size` is the client's: `body.len() + size` could overflow.
                if size > limit - body.len() {
                    return Err(BadRequest("length limit exceeded".into()));
                }
                while buf.len() < size + 2 {
                    fill(stream, buf).await?;
                }
                body.extend_from_slice(&buf[..size]);
                if &buf[size..size + 2] != b"\r\n" {
                    return Err(BadRequest("a chunk does not end with CRLF".into()));
                }
                buf.advance(size + 2);
            }
        }
    }
}

async fn fill(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<(), BadRequest> {
    if buf.capacity() == buf.len() {
        buf.reserve(READ_CHUNK);
    }
    match stream.read_buf(buf).await {
        Ok(0) => Err(BadRequest("the body ended early".into())),
        Ok(_) => Ok(()),
        Err(e) => Err(BadRequest(e.to_string())),
    }
}

/// A CRLF-terminated line, without the CRLF.
async fn read_line(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<Bytes, BadRequest> {
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf.split_to(end).freeze();
            buf.advance(2);
            return Ok(line);
        }
        if buf.len() > 4096 {
            return Err(BadRequest("a chunk line is too long".into()));
        }
        fill(stream, buf).await?;
    }
}

/// Writes `response` (only its head for a HEAD request); a whole body goes out with its head
/// in one system call. An error from a streamed body is returned (and ends the connection).
async fn write_response(
    stream: &mut TcpStream,
    response: Response,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let (parts, body) = response.into_parts();
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if !keep_alive {
        head.extend_from_slice(b"connection: close\r\n");
    }
    let declared = parts.headers.contains_key(header::CONTENT_LENGTH);
    match body {
        Body::Full(bytes) => {
            if !declared {
                push_length(&mut head, bytes.len());
            }
            head.extend_from_slice(b"\r\n");
            let body = if head_only { &[][..] } else { &bytes[..] };
            write_all(stream, &mut [IoSlice::new(&head), IoSlice::new(body)]).await
        }
        Body::Stream(mut pieces) => {
            if !declared {
                head.extend_from_slice(b"transfer-encoding: chunked\r\n");
            }
            head.extend_from_slice(b"\r\n");
            stream.write_all(&head).await?;
            if head_only {
                return Ok(());
            }
            while let Some(piece) = pieces.next().await {
                let piece = piece?;
                if piece.is_empty() {
                    continue;
                }
                if declared {
                    stream.write_all(&piece).await?;
                } else {
                    let size = format!("{:x}\r\n", piece.len());
                    write_all(
                        stream,
                        &mut [
                            IoSlice::new(size.as_bytes()),
                            IoSlice::new(&piece),
                            IoSlice::new(b"\r\n"),
                        ],
                    )
                    .await?;
                }
            }
            if !declared {
                stream.write_all(b"0\r\n\r\n").await?;
            }
            Ok(())
        }
    }
}

fn push_length(head: &mut Vec<u8>, n: usize) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(head, "content-length: {n}\r\n");
}

async fn write_all(stream: &mut TcpStream, parts: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut parts = parts;
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        let n = stream.write_vectored(parts).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut parts, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::MockLm;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const HELLO: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

    fn post(body: &str, extra: &str) -> String {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n{extra}content-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// Reads until `answers` whole answers (by their content-length) have arrived.
    async fn read_answers(tcp: &mut TcpStream, answers: usize) -> String {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        loop {
            let mut complete = 0;
            let mut rest = text.as_str();
            while let Some((head, after)) = rest.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if after.len() < length {
                    break;
                }
                complete += usize::from(!head.contains(" 100 Continue"));
                rest = &after[length..];
            }
            if complete >= answers {
                return text;
            }
            let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
                .await
                .expect("an answer in time")
                .expect("read");
            assert!(n > 0, "closed early after {text:?}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    #[tokio::test]
    async fn pipelined_chunked_and_expect_continue_requests() {
        let server = MockLm::start().await.expect("start");
        let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
        // Two requests in one write, answered in order on the same connection.
        let two = format!("{}{}", post(HELLO, ""), post(HELLO, ""));
        tcp.write_all(two.as_bytes()).await.expect("write");
        let text = read_answers(&mut tcp, 2).await;
        assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text}");
        // A chunked body, with an extension and a trailer.
        let (a, b) = HELLO.split_at(10);
        let chunked = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x};x=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nt: 1\r\n\r\n",
            a.len(),
            b.len()
        );
        tcp.write_all(chunked.as_bytes()).await.expect("write");
        let text = read_answers(&mut tcp, 1).await;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        // Expect: 100-continue gets its interim answer before the body is sent.
        let head = post(HELLO, "expect: 100-continue\r\n");
        let (head, body) = head.split_at(head.len() - HELLO.len());
        tcp.write_all(head.as_bytes()).await.expect("write");
        let mut interim = [0u8; 25];
        tcp.read_exact(&mut interim).await.expect("100");
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        tcp.write_all(body.as_bytes()).await.expect("write");
        let text = read_answers(&mut tcp, 1).await;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert_eq!(server.stats().total, 4);
    }

    #[tokio::test]
    async fn head_requests_get_the_head_alone() {
        let server = MockLm::start().await.expect("start");
        let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
        tcp.write_all(b"HEAD /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut all = Vec::new();
        tcp.read_to_end(&mut all).await.expect("read to the end");
        let text = String::from_utf8_lossy(&all);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("content-length: 15\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }

    #[tokio::test]
    async fn http10_and_connection_close_end_the_connection() {
        let server = MockLm::start().await.expect("start");
        for request in [
            post(HELLO, "connection: close\r\n"),
            post(HELLO, "").replacen("HTTP/1.1", "HTTP/1.0", 1),
        ] {
            let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
            tcp.write_all(request.as_bytes()).await.expect("write");
            let mut all = Vec::new();
            tcp.read_to_end(&mut all).await.expect("read to the end");
            let text = String::from_utf8_lossy(&all);
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
            assert!(text.contains("connection: close\r\n"), "{text}");
        }
    }

    #[tokio::test]
    async fn unreadable_requests_get_a_400_and_the_connection_closes() {
        let server = MockLm::start().await.expect("start");
        let huge = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            crate::mock::BODY_LIMIT + 1
        );
        for request in [
            "NOT HTTP AT ALL\r\n\r\n".to_string(),
            "POST /v1/chat/completions HTTP/1.1\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}"
                .to_string(),
            "POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n".to_string(),
            "POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"
                .to_string(),
            huge,
        ] {
            let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
            tcp.write_all(request.as_bytes()).await.expect("write");
            let mut all = Vec::new();
            tcp.read_to_end(&mut all).await.expect("read to the end");
            let text = String::from_utf8_lossy(&all);
            assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{request:?}: {text}");
            assert!(text.contains("invalid_request_error"), "{text}");
        }
        // Still serving.
        let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
        tcp.write_all(post(HELLO, "").as_bytes())
            .await
            .expect("write");
        assert!(
            read_answers(&mut tcp, 1)
                .await
                .starts_with("HTTP/1.1 200 OK")
        );
    }

    /// A chunk size near `usize::MAX` after a first chunk once overflowed the length check and
    /// panicked the connection's task (`fuzz/regressions/mock_request/huge-chunk-size`).
    #[tokio::test]
    async fn huge_chunk_sizes_get_a_400() {
        let server = MockLm::start().await.expect("start");
        for size in ["ffffffffffffffff", "fffffffffffffffe", "4000001"] {
            let request = format!(
                "POST /v1/chat/completions HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{{}}\r\n{size}\r\n{{}}\r\n0\r\n\r\n"
            );
            let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
            tcp.write_all(request.as_bytes()).await.expect("write");
            let mut all = Vec::new();
            tcp.read_to_end(&mut all).await.expect("read to the end");
            let text = String::from_utf8_lossy(&all);
            assert!(
                text.starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{size}: {text}"
            );
            assert!(text.contains("length limit exceeded"), "{text}");
        }
    }

    #[tokio::test]
    async fn streamed_answers_are_chunked() {
        let server = MockLm::start().await.expect("start");
        let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
        tcp.write_all(post(body, "connection: close\r\n").as_bytes())
            .await
            .expect("write");
        let mut all = Vec::new();
        tcp.read_to_end(&mut all).await.expect("read to the end");
        let text = String::from_utf8_lossy(&all);
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert!(text.contains("data: [DONE]"), "{text}");
        assert!(text.ends_with("\r\n0\r\n\r\n"), "{text}");
    }
}
