//! A lean HTTP/1.1 client for plain `http://` endpoints (vLLM, Ollama, llama.cpp, the mock
//! server on loopback): the calling task writes the request and reads the answer on a pooled
//! connection itself — no connection task, no channels, one `writev` per request, no read
//! buffer while the server thinks.
//!
//! It speaks exactly what an OpenAI-compatible client needs: `POST` with a `Content-Length` body;
//! answers framed by `Content-Length`, `Transfer-Encoding: chunked` or the end of the
//! connection; `1xx` interim answers skipped; keep-alive unless either side says `close`.
//! TLS, proxies and anything else go through reqwest (see `transport`).
//!
//! Pooling: idle connections are reused most recently used first, dropped after the idle
//! timeout, and checked before reuse (a connection the server closed is readable at EOF).
//!
//! When a request is sent twice: only when it went out on a *reused* connection and that
//! connection failed (closed, reset, or the write failed) before a single byte of the answer
//! arrived — the server closed it just as it was picked, the race every keep-alive client
//! meets. It is then sent again once, on a new connection, as browsers and hyper do, and the
//! pool's other idle connections are dropped with it. A request on a new connection, or one
//! whose answer had begun to arrive, is never sent again here: the failure goes up as an error
//! and the caller's retry policy decides.
//!
//! Bodies are read up to the caller's limit ([`Response::bytes`]); a `Content-Length` above it
//! is refused before anything is read.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Largest response head (status line and headers) accepted.
const MAX_HEAD: usize = 64 << 10;
/// Most response headers accepted.
const MAX_HEADERS: usize = 128;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Bytes read at a time (the buffer exists only while the answer is being read).
const READ_CHUNK: usize = 4096;
/// Most bytes reserved ahead of their arrival for a body of known length.
const MAX_RESERVE: usize = 1 << 20;
/// How long resolved addresses are reused before the host name is looked up again.
const DNS_TTL: Duration = Duration::from_secs(30);

/// What went wrong on the wire. `Display` never includes the request (and so never the key).
#[derive(Debug)]
pub enum Http1Error {
    /// No connection could be opened.
    Connect(String),
    /// Writing the request failed.
    Write(io::Error),
    /// The connection failed or closed before the whole answer arrived.
    Read(String),
    /// The server sent something that is not HTTP/1.x.
    Protocol(String),
    /// The body is longer than the caller's limit (in bytes).
    TooLarge(u64),
}

impl fmt::Display for Http1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Http1Error::Connect(m) => write!(f, "cannot connect: {m}"),
            Http1Error::Write(e) => write!(f, "the request failed: {e}"),
            Http1Error::Read(m) => write!(f, "the response body broke off: {m}"),
            Http1Error::Protocol(m) => write!(f, "invalid HTTP response: {m}"),
            Http1Error::TooLarge(limit) => {
                write!(f, "the response body is larger than {limit} bytes")
            }
        }
    }
}

/// The parts of a URL a request needs, with the request head prefix built once.
#[derive(Clone)]
pub struct Target {
    /// `POST /path HTTP/1.1`, `host`, the fixed headers and the caller's, each ending in CRLF;
    /// holds the API key, so it is never printed.
    prefix: Arc<[u8]>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Target(***)")
    }
}

impl Target {
    /// The head prefix, for tests.
    #[cfg(test)]
    pub fn prefix_for_test(&self) -> Vec<u8> {
        self.prefix.to_vec()
    }

    /// The head of a `POST` to `path_and_query` at `authority` with `headers` (names lowercase,
    /// values already validated as header values).
    pub fn post(authority: &str, path_and_query: &str, headers: &[(&str, &[u8])]) -> Self {
        let mut prefix = Vec::with_capacity(128);
        prefix.extend_from_slice(b"POST ");
        prefix.extend_from_slice(path_and_query.as_bytes());
        prefix.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        prefix.extend_from_slice(authority.as_bytes());
        prefix.extend_from_slice(b"\r\n");
        for (name, value) in headers {
            prefix.extend_from_slice(name.as_bytes());
            prefix.extend_from_slice(b": ");
            prefix.extend_from_slice(value);
            prefix.extend_from_slice(b"\r\n");
        }
        Target {
            prefix: prefix.into(),
        }
    }
}

/// Connections to one `host:port`, and how to open more.
pub struct Pool {
    host: String,
    port: u16,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// Idle connections, the most recently used at the back.
    idle: Mutex<VecDeque<Idle>>,
    /// Resolved addresses and when they were looked up; the lock is held while looking up so
    /// a burst of new connections makes one lookup.
    addrs: tokio::sync::Mutex<Option<(Instant, Arc<[SocketAddr]>)>>,
}

struct Idle {
    stream: TcpStream,
    since: Instant,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// An answer whose head has been read; the body is read with [`Response::bytes`] or chunk by
/// chunk with [`Response::chunk`].
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, kept only for answers that are not 2xx (`Retry-After` and the like):
    /// `None` for 2xx.
    pub headers: Option<Box<reqwest::header::HeaderMap>>,
    body: BodyReader,
}

impl Pool {
    /// A pool for `host:port` (`host` as in a URL: a name, an IPv4 address or `[v6]`).
    pub fn new(host: &str, port: u16, connect_timeout: Duration, idle_timeout: Duration) -> Self {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        Pool {
            host: host.to_string(),
            port,
            connect_timeout,
            idle_timeout,
            idle: Mutex::new(VecDeque::new()),
            addrs: tokio::sync::Mutex::new(None),
        }
    }

    /// Sends `target`'s head and `body`, and reads the head of the answer.
    pub async fn post(
        self: &Arc<Self>,
        target: &Target,
        body: &[u8],
    ) -> Result<Response, Http1Error> {
        let length = length_line(body.len());
        let mut retried = false;
        loop {
            let (stream, reused) = match self.checkout() {
                Some(stream) => (stream, true),
                // Opened by a task of its own: a connect on loopback runs the whole handshake,
                // the server's half included, inside the system call (~50 us), and a caller
                // that fans out from one task (Evaluate's `buffer_unordered`) would otherwise
                // open every connection of a burst on one thread, one after the other.
                None => {
                    let pool = Arc::clone(self);
                    let stream = tokio::spawn(async move { pool.connect().await })
                        .await
                        .map_err(|e| Http1Error::Connect(e.to_string()))??;
                    (stream, false)
                }
            };
            match exchange(stream, target, &length, body).await {
                Ok((head, stream, buf)) => {
                    return Ok(Response::new(head, stream, buf, Arc::clone(self)));
                }
                // The server closed a pooled connection as it was picked: once more, fresh.
                Err(Failure::Stale(_)) if reused && !retried => {
                    retried = true;
                    self.clear_idle();
                }
                Err(Failure::Stale(e) | Failure::Other(e)) => return Err(e),
            }
        }
    }

    /// The most recently used idle connection that is still open.
    fn checkout(&self) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        while let Some(conn) = idle.pop_back() {
            if now.duration_since(conn.since) >= self.idle_timeout {
                // Everything older is expired too.
                idle.clear();
                return None;
            }
            if is_open(&conn.stream) {
                return Some(conn.stream);
            }
        }
        None
    }

    /// Returns a connection whose last answer was read completely.
    fn checkin(&self, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        while idle
            .front()
            .is_some_and(|c| now.duration_since(c.since) >= self.idle_timeout)
        {
            idle.pop_front();
        }
        idle.push_back(Idle { stream, since: now });
    }

    fn clear_idle(&self) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// How many idle connections the pool holds.
    #[cfg(test)]
    pub fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    async fn connect(&self) -> Result<TcpStream, Http1Error> {
        let addrs = match self.host.parse::<std::net::IpAddr>() {
            // No lookup to wait for (and no lookup's state in this future).
            Ok(ip) => Arc::from([SocketAddr::new(ip, self.port)]),
            Err(_) => Box::pin(self.resolve()).await?,
        };
        let mut last = None;
        for addr in addrs.iter() {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    // Small requests must not wait for Nagle; failing to set it is harmless.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = Some(e.to_string()),
                Err(_) => last = Some(format!("timed out after {:?}", self.connect_timeout)),
            }
        }
        Err(Http1Error::Connect(last.unwrap_or_else(|| {
            format!("`{}` resolved to no address", self.host)
        })))
    }

    async fn resolve(&self) -> Result<Arc<[SocketAddr]>, Http1Error> {
        let mut cached = self.addrs.lock().await;
        if let Some((at, addrs)) = &*cached
            && at.elapsed() < DNS_TTL
        {
            return Ok(Arc::clone(addrs));
        }
        let addrs: Arc<[SocketAddr]> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| Http1Error::Connect(format!("cannot resolve `{}`: {e}", self.host)))?
            .collect();
        *cached = Some((Instant::now(), Arc::clone(&addrs)));
        Ok(addrs)
    }
}

impl Drop for Pool {
    /// Closing a socket costs a system call and, on loopback, the peer's side of the
    /// teardown: a pool of many idle connections is closed by a task on the runtime (when
    /// there is one) rather than by whoever drops the last clone of the LM, as reqwest's
    /// connection tasks do.
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(PoisonError::into_inner));
        if idle.len() > 8
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { drop(idle) });
        }
    }
}

/// Whether an idle connection can take a request: not readable (the server has neither closed
/// it nor sent anything unasked). Costs no system call unless the socket was reported readable.
fn is_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

enum Failure {
    /// Nothing of an answer arrived: the write failed, or the connection ended first.
    Stale(Http1Error),
    Other(Http1Error),
}

/// `Content-Length: N` and the blank line ending the head, formatted once per request.
struct LengthLine {
    buf: [u8; 40],
    len: usize,
}

fn length_line(n: usize) -> LengthLine {
    use std::io::Write;
    let mut buf = [0u8; 40];
    let mut cursor = io::Cursor::new(&mut buf[..]);
    // 40 bytes hold the line for any usize.
    let _ = write!(cursor, "content-length: {n}\r\n\r\n");
    let len = cursor.position() as usize;
    LengthLine { buf, len }
}

/// One request and the head of its answer on `stream`.
async fn exchange(
    mut stream: TcpStream,
    target: &Target,
    length: &LengthLine,
    body: &[u8],
) -> Result<(Head, TcpStream, BytesMut), Failure> {
    let mut parts = [
        IoSlice::new(&target.prefix),
        IoSlice::new(&length.buf[..length.len]),
        IoSlice::new(body),
    ];
    write_all_vectored(&mut stream, &mut parts)
        .await
        .map_err(|e| Failure::Stale(Http1Error::Write(e)))?;
    // No buffer while the server thinks: wait until the answer starts arriving.
    let mut buf = BytesMut::new();
    let mut received = false;
    loop {
        // What has arrived: interim answers (100 Continue, 103 Early Hints) are skipped, the
        // final one returned; the rest of the bytes are the body's.
        while !buf.is_empty() {
            match parse_head(&buf).map_err(Failure::Other)? {
                Some((head, used)) if head.status < 200 && head.status != 101 => {
                    buf.advance(used);
                }
                Some((head, used)) => {
                    buf.advance(used);
                    return Ok((head, stream, buf));
                }
                None if buf.len() > MAX_HEAD => {
                    return Err(Failure::Other(Http1Error::Protocol(format!(
                        "the response head is longer than {MAX_HEAD} bytes"
                    ))));
                }
                None => break,
            }
        }
        if let Err(e) = stream.readable().await {
            return Err(read_failure(received, &e.to_string()));
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        // Through `AsyncRead`, which forgets the readiness after a short read: the pool's
        // check of an idle connection then costs no system call.
        match stream.read_buf(&mut buf).await {
            Ok(0) => return Err(read_failure(received, "the connection closed")),
            Ok(_) => received = true,
            Err(e) => return Err(read_failure(received, &e.to_string())),
        }
    }
}

/// A connection that failed before the answer's head: stale if not one byte of an answer came.
fn read_failure(received: bool, what: &str) -> Failure {
    let e = Http1Error::Read(format!("{what} before the response head"));
    if received {
        Failure::Other(e)
    } else {
        Failure::Stale(e)
    }
}

async fn write_all_vectored(stream: &mut TcpStream, parts: &mut [IoSlice<'_>]) -> io::Result<()> {
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

/// What the head of an answer says about it.
struct Head {
    status: u16,
    framing: Framing,
    /// Whether the connection may carry another request after this answer.
    keep_alive: bool,
    headers: Option<Box<reqwest::header::HeaderMap>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Exactly this many bytes follow.
    Length(u64),
    /// Chunked transfer coding.
    Chunked(Chunk),
    /// Everything until the server closes the connection.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until a blank one.
    Trailers,
}

/// Parses a complete head at the start of `buf`: the head and its length, `None` when more
/// bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, Http1Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let used = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Http1Error::Protocol(e.to_string())),
    };
    let status = response.code.unwrap_or(0);
    let http11 = response.version == Some(1);
    let (mut length, mut chunked, mut close, mut keep_alive_token) = (None, false, false, false);
    for h in response.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(h.value).unwrap_or("").trim();
            let n: u64 = text
                .parse()
                .map_err(|_| Http1Error::Protocol(format!("invalid content-length `{text}`")))?;
            if length.is_some_and(|l| l != n) {
                return Err(Http1Error::Protocol(
                    "conflicting content-length headers".to_string(),
                ));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked must be the last coding; anything else is read to the end.
            chunked = last_token(h.value).eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked(Chunk::Size)
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    // After a 101 the connection speaks another protocol: never reused.
    let keep_alive =
        !close && (http11 || keep_alive_token) && framing != Framing::Close && status != 101;
    let map = (!(200..300).contains(&status)).then(|| {
        let mut map = reqwest::header::HeaderMap::new();
        for h in response.headers.iter() {
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(h.name.as_bytes()),
                reqwest::header::HeaderValue::from_bytes(h.value),
            ) {
                map.append(name, value);
            }
        }
        Box::new(map)
    });
    Ok(Some((
        Head {
            status,
            framing,
            keep_alive,
            headers: map,
        },
        used,
    )))
}

fn last_token(value: &[u8]) -> &[u8] {
    value
        .rsplit(|b| *b == b',')
        .next()
        .unwrap_or(value)
        .trim_ascii()
}

/// Reads a body by its framing and gives the connection back to the pool once it is done.
struct BodyReader {
    stream: Option<TcpStream>,
    /// Bytes read past what has been handed out.
    buf: BytesMut,
    framing: Framing,
    keep_alive: bool,
    done: bool,
    pool: Arc<Pool>,
}

impl Response {
    fn new(head: Head, stream: TcpStream, buf: BytesMut, pool: Arc<Pool>) -> Self {
        let mut body = BodyReader {
            stream: Some(stream),
            buf,
            framing: head.framing,
            keep_alive: head.keep_alive,
            done: false,
            pool,
        };
        if body.framing == Framing::Length(0) {
            body.finish();
        }
        Response {
            status: head.status,
            headers: head.headers,
            body,
        }
    }

    /// The whole body, of at most `limit` bytes (a longer one is [`Http1Error::TooLarge`], found
    /// out from its `Content-Length` before it is read, or as it arrives).
    pub async fn bytes(mut self, limit: u64) -> Result<Bytes, Http1Error> {
        let b = &mut self.body;
        // The common case: a known length, read straight into one buffer, no copy.
        if let Framing::Length(n) = b.framing {
            if n > limit {
                return Err(Http1Error::TooLarge(limit));
            }
            let n = usize::try_from(n)
                .map_err(|_| Http1Error::Protocol(format!("a body of {n} bytes")))?;
            while b.buf.len() < n {
                if b.buf.capacity() == b.buf.len() {
                    // Grown as the bytes arrive: a bogus length cannot make us allocate it.
                    b.buf.reserve((n - b.buf.len()).min(MAX_RESERVE));
                }
                b.fill(1).await?;
            }
            let body = b.buf.split_to(n).freeze();
            b.framing = Framing::Length(0);
            b.finish();
            return Ok(body);
        }
        let mut all = BytesMut::new();
        while let Some(chunk) = b.chunk().await? {
            if (all.len() + chunk.len()) as u64 > limit {
                return Err(Http1Error::TooLarge(limit));
            }
            all.extend_from_slice(&chunk);
        }
        Ok(all.freeze())
    }

    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Http1Error> {
        self.body.chunk().await
    }
}

impl BodyReader {
    /// Reads more bytes into `buf` (into its spare capacity when there is any); the end of the
    /// connection is an error unless the body runs until it.
    /// Reserves [`READ_CHUNK`] more when fewer than `min_spare` bytes are free.
    async fn fill(&mut self, min_spare: usize) -> Result<usize, Http1Error> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(0);
        };
        if self.buf.capacity() - self.buf.len() < min_spare.max(1) {
            self.buf.reserve(READ_CHUNK);
        }
        match stream.read_buf(&mut self.buf).await {
            Ok(0) if self.framing == Framing::Close => Ok(0),
            Ok(0) => {
                self.stream = None;
                Err(Http1Error::Read(
                    "the connection closed mid-body".to_string(),
                ))
            }
            Ok(n) => Ok(n),
            Err(e) => {
                self.stream = None;
                Err(Http1Error::Read(e.to_string()))
            }
        }
    }

    async fn chunk(&mut self) -> Result<Option<Bytes>, Http1Error> {
        loop {
            if self.done {
                return Ok(None);
            }
            match self.framing {
                Framing::Length(0) => {
                    self.finish();
                    return Ok(None);
                }
                Framing::Length(left) => {
                    if self.buf.is_empty() {
                        self.fill(READ_CHUNK / 8).await?;
                        continue;
                    }
                    let take = self
                        .buf
                        .len()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.framing = Framing::Length(left - take as u64);
                    return Ok(Some(self.buf.split_to(take).freeze()));
                }
                Framing::Close => {
                    if self.buf.is_empty() && self.fill(READ_CHUNK / 8).await? == 0 {
                        self.stream = None;
                        self.done = true;
                        return Ok(None);
                    }
                    return Ok(Some(self.buf.split().freeze()));
                }
                Framing::Chunked(state) => match self.step_chunked(state)? {
                    Step::Data(data) => return Ok(Some(data)),
                    Step::Again => {}
                    Step::Fill => {
                        self.fill(READ_CHUNK / 8).await?;
                    }
                    Step::Done => return Ok(None),
                },
            }
        }
    }

    /// One step of the chunked decoder over the bytes already read.
    fn step_chunked(&mut self, state: Chunk) -> Result<Step, Http1Error> {
        match state {
            Chunk::Size => {
                let Some(end) = find_crlf(&self.buf) else {
                    return self.need_line();
                };
                let line = &self.buf[..end];
                let digits = line
                    .split(|b| *b == b';')
                    .next()
                    .unwrap_or(line)
                    .trim_ascii();
                let size = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|t| u64::from_str_radix(t, 16).ok())
                    .ok_or_else(|| {
                        Http1Error::Protocol(format!(
                            "invalid chunk size `{}`",
                            String::from_utf8_lossy(digits)
                        ))
                    })?;
                self.buf.advance(end + 2);
                self.framing = Framing::Chunked(if size == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(size)
                });
                Ok(Step::Again)
            }
            Chunk::Data(left) => {
                if self.buf.is_empty() {
                    return Ok(Step::Fill);
                }
                let take = self
                    .buf
                    .len()
                    .min(usize::try_from(left).unwrap_or(usize::MAX));
                let rest = left - take as u64;
                self.framing = Framing::Chunked(if rest == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(rest)
                });
                Ok(Step::Data(self.buf.split_to(take).freeze()))
            }
            Chunk::DataEnd => {
                if self.buf.len() < 2 {
                    return Ok(Step::Fill);
                }
                if &self.buf[..2] != b"\r\n" {
                    return Err(Http1Error::Protocol(
                        "a chunk does not end with CRLF".to_string(),
                    ));
                }
                self.buf.advance(2);
                self.framing = Framing::Chunked(Chunk::Size);
                Ok(Step::Again)
            }
            Chunk::Trailers => {
                let Some(end) = find_crlf(&self.buf) else {
                    return self.need_line();
                };
                self.buf.advance(end + 2);
                if end == 0 {
                    self.finish();
                    return Ok(Step::Done);
                }
                Ok(Step::Again)
            }
        }
    }

    fn need_line(&self) -> Result<Step, Http1Error> {
        if self.buf.len() > MAX_LINE {
            return Err(Http1Error::Protocol(format!(
                "a chunk line is longer than {MAX_LINE} bytes"
            )));
        }
        Ok(Step::Fill)
    }

    /// The body is complete: the connection goes back to the pool when it can carry another
    /// request (nothing unread, keep-alive on both sides).
    fn finish(&mut self) {
        self.done = true;
        if let Some(stream) = self.stream.take()
            && self.keep_alive
            && self.buf.is_empty()
        {
            self.pool.checkin(stream);
        }
    }
}

/// What a step of the chunked decoder found.
enum Step {
    /// Body bytes to hand out.
    Data(Bytes),
    /// Framing consumed: step again.
    Again,
    /// More bytes are needed.
    Fill,
    /// The last chunk and the trailers are read.
    Done,
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// What one connection of the scripted server does after reading each request.
    enum Answer {
        /// Writes these pieces (with a short pause between them).
        Write(Vec<&'static [u8]>),
        /// Writes the bytes, then closes the connection.
        WriteAndClose(&'static [u8]),
    }

    struct Scripted {
        port: u16,
        accepted: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    /// A server whose `i`-th connection answers its requests with `script[i]` in turn and then
    /// closes.
    async fn scripted(script: Vec<Vec<Answer>>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (a, r) = (Arc::clone(&accepted), Arc::clone(&requests));
        tokio::spawn(async move {
            for answers in script {
                let (mut stream, _) = listener.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                let r = Arc::clone(&r);
                tokio::spawn(async move {
                    for answer in answers {
                        let Some(request) = read_request(&mut stream).await else {
                            return;
                        };
                        r.lock().unwrap().push(request);
                        match answer {
                            Answer::Write(pieces) => {
                                for piece in pieces {
                                    stream.write_all(piece).await.unwrap();
                                    tokio::time::sleep(Duration::from_millis(5)).await;
                                }
                            }
                            Answer::WriteAndClose(bytes) => {
                                stream.write_all(bytes).await.unwrap();
                                return;
                            }
                        }
                    }
                });
            }
        });
        Scripted {
            port,
            accepted,
            requests,
        }
    }

    async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buf.len() >= end + 4 + length {
                    return Some(buf);
                }
            }
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn pool(port: u16) -> Arc<Pool> {
        Arc::new(Pool::new(
            "127.0.0.1",
            port,
            Duration::from_secs(5),
            Duration::from_secs(90),
        ))
    }

    fn target(port: u16) -> Target {
        Target::post(
            &format!("127.0.0.1:{port}"),
            "/v1/chat/completions",
            &[("content-type", b"application/json"), ("x-k", b"v")],
        )
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

    #[tokio::test]
    async fn a_content_length_answer_and_a_reused_connection() {
        let server = scripted(vec![vec![
            Answer::Write(vec![OK]),
            // The head and the body in separate writes.
            Answer::Write(vec![
                b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n",
                b"world!",
            ]),
        ]])
        .await;
        let pool = pool(server.port);
        let target = target(server.port);
        let r = pool.post(&target, b"{\"a\":1}").await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.headers.is_none(), "2xx headers are not kept");
        assert_eq!(&r.bytes(u64::MAX).await.unwrap()[..], b"hello");
        assert_eq!(pool.idle_count(), 1);
        let r = pool.post(&target, b"{}").await.unwrap();
        assert_eq!(&r.bytes(u64::MAX).await.unwrap()[..], b"world!");
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
        let first = String::from_utf8(server.requests.lock().unwrap()[0].clone()).unwrap();
        assert_eq!(
            first,
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{}\r\ncontent-type: application/json\r\nx-k: v\r\ncontent-length: 7\r\n\r\n{{\"a\":1}}",
                server.port
            )
        );
    }

    #[tokio::test]
    async fn chunked_answers_with_extensions_and_trailers() {
        let server = scripted(vec![vec![
            Answer::Write(vec![
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel",
                b"lo\r\n",
                b"7\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n",
            ]),
            Answer::Write(vec![
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            ]),
        ]])
        .await;
        let pool = pool(server.port);
        let target = target(server.port);
        let r = pool.post(&target, b"{}").await.unwrap();
        assert_eq!(&r.bytes(u64::MAX).await.unwrap()[..], b"hello, world");
        // Piece by piece, then the connection is reused.
        let mut r = pool.post(&target, b"{}").await.unwrap();
        let mut pieces = Vec::new();
        while let Some(piece) = r.chunk().await.unwrap() {
            pieces.push(piece);
        }
        assert_eq!(pieces.concat(), b"abc");
        assert_eq!(pool.idle_count(), 1);
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn close_delimited_and_connection_close_answers_are_not_pooled() {
        let server = scripted(vec![
            vec![Answer::WriteAndClose(
                b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
            )],
            vec![Answer::WriteAndClose(
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
            )],
        ])
        .await;
        let pool = pool(server.port);
        let target = target(server.port);
        let r = pool.post(&target, b"{}").await.unwrap();
        assert_eq!(&r.bytes(u64::MAX).await.unwrap()[..], b"until the end");
        assert_eq!(pool.idle_count(), 0);
        let r = pool.post(&target, b"{}").await.unwrap();
        assert_eq!(&r.bytes(u64::MAX).await.unwrap()[..], b"ok");
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_error_headers_kept() {
        let server = scripted(vec![vec![
            Answer::Write(vec![
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\ncontent-length: 4\r\n\r\nslow",
            ]),
            // Interim and final answers in one write.
            Answer::Write(vec![
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            ]),
        ]])
        .await;
        let pool = pool(server.port);
        let target = target(server.port);
        let r = tokio::time::timeout(Duration::from_secs(2), pool.post(&target, b"{}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.status, 429);
        assert_eq!(r.headers.as_ref().unwrap().get("retry-after").unwrap(), "2");
        assert_eq!(&r.bytes(u64::MAX).await.unwrap()[..], b"slow");
        let r = tokio::time::timeout(Duration::from_secs(2), pool.post(&target, b"{}"))
            .await
            .expect("the final answer was already read")
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(&r.bytes(u64::MAX).await.unwrap()[..], b"ok");
    }

    #[tokio::test]
    async fn a_pooled_connection_the_server_closed_is_replaced() {
        // The first connection claims keep-alive but closes after one answer; the second
        // request goes out on a new connection without an error.
        let server = scripted(vec![
            vec![Answer::WriteAndClose(OK)],
            vec![Answer::Write(vec![OK])],
        ])
        .await;
        let pool = pool(server.port);
        let target = target(server.port);
        let r = pool.post(&target, b"{}").await.unwrap();
        assert_eq!(&r.bytes(u64::MAX).await.unwrap()[..], b"hello");
        assert_eq!(pool.idle_count(), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = pool.post(&target, b"{}").await.unwrap();
        assert_eq!(&r.bytes(u64::MAX).await.unwrap()[..], b"hello");
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_close_racing_the_request_is_retried_once() {
        // The pooled connection still looks open when it is picked (no pause for the close to
        // be noticed), then ends without an answer.
        let server = scripted(vec![
            vec![Answer::Write(vec![OK]), Answer::WriteAndClose(b"")],
            vec![Answer::Write(vec![OK])],
        ])
        .await;
        let pool = pool(server.port);
        let target = target(server.port);
        let r = pool.post(&target, b"{}").await.unwrap();
        assert_eq!(&r.bytes(u64::MAX).await.unwrap()[..], b"hello");
        let r = pool.post(&target, b"{}").await.unwrap();
        assert_eq!(&r.bytes(u64::MAX).await.unwrap()[..], b"hello");
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_request_whose_answer_had_begun_is_never_sent_again() {
        // The reused connection takes the second request, sends part of a head, and closes.
        let server = scripted(vec![
            vec![
                Answer::Write(vec![OK]),
                Answer::WriteAndClose(b"HTTP/1.1 200 OK\r\ncontent-le"),
            ],
            vec![Answer::Write(vec![OK])],
        ])
        .await;
        let pool = pool(server.port);
        let target = target(server.port);
        let r = pool.post(&target, b"{}").await.unwrap();
        assert_eq!(&r.bytes(u64::MAX).await.unwrap()[..], b"hello");
        let err = pool.post(&target, b"{}").await.err().unwrap();
        assert!(matches!(err, Http1Error::Read(_)), "{err}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(server.requests.lock().unwrap().len(), 2);
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_new_connection_closed_without_an_answer_is_not_sent_again() {
        let server = scripted(vec![
            vec![Answer::WriteAndClose(b"")],
            vec![Answer::Write(vec![OK])],
        ])
        .await;
        let pool = pool(server.port);
        let err = pool.post(&target(server.port), b"{}").await.err().unwrap();
        assert!(matches!(err, Http1Error::Read(_)), "{err}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(server.requests.lock().unwrap().len(), 1);
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn bodies_past_the_limit_are_refused() {
        // Refused from its Content-Length, before the body is read.
        let server = scripted(vec![vec![Answer::Write(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world",
        ])]])
        .await;
        let first = pool(server.port);
        let r = first.post(&target(server.port), b"{}").await.unwrap();
        let err = r.bytes(10).await.unwrap_err();
        assert!(matches!(err, Http1Error::TooLarge(10)), "{err}");
        assert!(err.to_string().contains("larger than 10 bytes"), "{err}");
        // The connection is not given back with a body unread.
        assert_eq!(first.idle_count(), 0);

        // Chunked: refused once the pieces pass the limit; at the limit, accepted.
        let chunked: Vec<&'static [u8]> = vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            b"5\r\nhello\r\n",
            b"6\r\n world\r\n0\r\n\r\n",
        ];
        let server = scripted(vec![
            vec![Answer::Write(chunked.clone())],
            vec![Answer::Write(chunked)],
        ])
        .await;
        let pool = pool(server.port);
        let r = pool.post(&target(server.port), b"{}").await.unwrap();
        let err = r.bytes(10).await.unwrap_err();
        assert!(matches!(err, Http1Error::TooLarge(10)), "{err}");
        let r = pool.post(&target(server.port), b"{}").await.unwrap();
        assert_eq!(&r.bytes(11).await.unwrap()[..], b"hello world");
    }

    #[tokio::test]
    async fn broken_and_malformed_answers_are_errors() {
        let server = scripted(vec![
            vec![Answer::WriteAndClose(
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this",
            )],
            vec![Answer::WriteAndClose(b"SMTP ready\r\n\r\n")],
            vec![Answer::WriteAndClose(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            )],
            // A length no one could allocate: the body breaks off, nothing is reserved.
            vec![Answer::WriteAndClose(
                b"HTTP/1.1 200 OK\r\ncontent-length: 18446744073709551615\r\n\r\nx",
            )],
            vec![Answer::WriteAndClose(b"")],
        ])
        .await;
        let pool = pool(server.port);
        let target = target(server.port);
        let err = pool
            .post(&target, b"{}")
            .await
            .unwrap()
            .bytes(u64::MAX)
            .await
            .unwrap_err();
        assert!(matches!(err, Http1Error::Read(_)), "{err}");
        assert!(err.to_string().contains("broke off"), "{err}");
        let err = pool.post(&target, b"{}").await.err().unwrap();
        assert!(matches!(err, Http1Error::Protocol(_)), "{err}");
        let err = pool
            .post(&target, b"{}")
            .await
            .unwrap()
            .bytes(u64::MAX)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("invalid chunk size"), "{err}");
        assert!(
            pool.post(&target, b"{}")
                .await
                .unwrap()
                .bytes(u64::MAX)
                .await
                .is_err()
        );
        // A fresh connection that ends before any answer is not retried.
        let err = pool.post(&target, b"{}").await.err().unwrap();
        assert!(
            err.to_string().contains("before the response head"),
            "{err}"
        );
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn connect_errors_and_expired_idle_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = pool(port).post(&target(port), b"{}").await.err().unwrap();
        assert!(matches!(err, Http1Error::Connect(_)), "{err}");
        assert!(err.to_string().starts_with("cannot connect: "), "{err}");

        let server = scripted(vec![
            vec![Answer::Write(vec![OK])],
            vec![Answer::Write(vec![OK])],
        ])
        .await;
        let short = Arc::new(Pool::new(
            "127.0.0.1",
            server.port,
            Duration::from_secs(5),
            Duration::from_millis(20),
        ));
        let target = target(server.port);
        short
            .post(&target, b"{}")
            .await
            .unwrap()
            .bytes(u64::MAX)
            .await
            .unwrap();
        assert_eq!(short.idle_count(), 1);
        tokio::time::sleep(Duration::from_millis(40)).await;
        short
            .post(&target, b"{}")
            .await
            .unwrap()
            .bytes(u64::MAX)
            .await
            .unwrap();
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn host_names_are_resolved_and_targets_never_print_their_headers() {
        let server = scripted(vec![vec![Answer::Write(vec![OK])]]).await;
        let pool = Arc::new(Pool::new(
            "localhost",
            server.port,
            Duration::from_secs(5),
            Duration::from_secs(90),
        ));
        // `localhost` may resolve to ::1 first; the IPv4 listener still answers.
        let r = pool.post(&target(server.port), b"{}").await.unwrap();
        assert_eq!(&r.bytes(u64::MAX).await.unwrap()[..], b"hello");
        let secret = Target::post("h", "/", &[("authorization", b"Bearer sk-secret")]);
        assert_eq!(format!("{secret:?}"), "Target(***)");
    }
}
