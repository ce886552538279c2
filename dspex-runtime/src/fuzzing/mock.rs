//! The mock LM server's side of HTTP: its request reader (request line, headers,
//! `Content-Length` and chunked bodies, trailers, pipelining) and the router behind it.

use super::split_first;
use super::wire::loopback;
use dspex_testing::{MockLm, MockLmServer};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest one connection may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(10);

fn server() -> &'static MockLmServer {
    static SERVER: OnceLock<MockLmServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        loopback()
            .runtime
            .block_on(MockLm::builder().seed(1).start())
            .expect("the mock server starts")
    })
}

/// Target `mock_request`: the first byte picks how the client cuts its writes (1 to 16 bytes,
/// or all at once), the rest is everything a client sends on one connection before it closes
/// its side. The server answers without hanging; what it writes is HTTP/1.1 answers, the first
/// one with a status line that parses; a complete, well-formed request gets an answer.
pub fn mock_request(data: &[u8]) {
    let Some((cut, request)) = split_first(data) else {
        return;
    };
    let cut = match cut % 17 {
        0 => usize::MAX,
        n => usize::from(n),
    };
    let server = server();
    let answer = super::no_panics("serving a request", || {
        loopback().runtime.block_on(async {
            tokio::time::timeout(HANG, async {
                let mut stream = TcpStream::connect(server.addr())
                    .await
                    .expect("the mock server accepts");
                let _ = stream.set_nodelay(true);
                for piece in request.chunks(cut) {
                    if stream.write_all(piece).await.is_err() {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                let _ = stream.shutdown().await;
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer).await;
                answer
            })
            .await
            .unwrap_or_else(|_| panic!("the server hangs on {request:?}"))
        })
    });
    if answer.is_empty() {
        assert!(
            !is_complete_request(request),
            "a complete request got no answer: {request:?}"
        );
        return;
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&answer) {
        Ok(httparse::Status::Complete(_)) => {
            assert_eq!(response.version, Some(1), "an HTTP/1.1 answer");
            let code = response.code.unwrap_or(0);
            assert!((100..600).contains(&code), "status {code}");
        }
        other => panic!(
            "the answer does not start with a response head ({other:?}): {:?}",
            String::from_utf8_lossy(&answer)
        ),
    }
}

/// Whether `bytes` start with a whole request whose body has a `Content-Length` and is all
/// there (a request any server must answer).
fn is_complete_request(bytes: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head)) = request.parse(bytes) else {
        return false;
    };
    let mut length = 0usize;
    for h in request.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return false;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                Some(n) => length = n,
                None => return false,
            }
        }
    }
    request.version == Some(1)
        && request
            .method
            .is_some_and(|m| http_method(m) && bytes.len() - head >= length)
}

fn http_method(m: &str) -> bool {
    matches!(
        m,
        "GET" | "POST" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "PATCH"
    )
}
