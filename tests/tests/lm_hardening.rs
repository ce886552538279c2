//! The LM client's guards under cancellation and streaming, against dspex's mock LM server on
//! loopback: a dropped call never leaks a breaker probe, a concurrency slot or a rate budget, and
//! a streamed call counts against the limits like any other.

use dspex::lm::{
    BreakerConfig, BreakerState, CallOptions, LM, LmError, LmRequest, RateLimit, RetryPolicy,
    StreamEvent,
};
use dspex::testing::{Fault, FaultWhen, MockLm, MockLmServer};
use futures_util::StreamExt;
use std::time::Duration;

async fn server() -> MockLmServer {
    MockLm::builder()
        .seed(7)
        .start()
        .await
        .expect("the mock server starts")
}

fn builder(server: &MockLmServer) -> dspex::lm::LmBuilder {
    LM::builder("openai/mock")
        .api_base(server.api_base())
        .cache(false)
        .retry(RetryPolicy::none())
        .timeout(Duration::from_secs(5))
}

/// An LM allowed `tokens` tokens a minute.
fn budgeted(server: &MockLmServer, tokens: u32) -> LM {
    builder(server)
        .rate_limit(RateLimit {
            requests_per_minute: None,
            tokens_per_minute: Some(tokens),
        })
        .build()
        .unwrap()
}

/// A call that must not get through the limits right now: its slot is past a short deadline.
fn within(ms: u64) -> CallOptions {
    CallOptions {
        deadline: Some(Duration::from_millis(ms)),
        ..CallOptions::default()
    }
}

#[tokio::test]
async fn a_cancelled_probe_gives_its_slot_back() {
    let server = server().await;
    server.set_faults(vec![(Fault::Status(500), FaultWhen::Always)]);
    let lm = builder(&server)
        .breaker(BreakerConfig {
            failure_threshold: 1,
            cool_down: Duration::from_millis(100),
        })
        .build()
        .unwrap();
    let err = lm.call(LmRequest::prompt("x")).await.unwrap_err();
    assert!(matches!(err, LmError::Http { status: 500, .. }), "{err}");
    assert!(matches!(lm.breaker_state(), BreakerState::Open { .. }));

    // After the cool-down the next call is the probe; its caller gives up on it (a timeout of
    // its own, as a `select!` or an aborted task would).
    server.set_faults(vec![(
        Fault::Hang(Duration::from_secs(30)),
        FaultWhen::Always,
    )]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let probe = tokio::time::timeout(Duration::from_millis(200), lm.call(LmRequest::prompt("x")));
    assert!(probe.await.is_err(), "the probe hangs and is dropped");

    // The endpoint heals: the next call is a new probe, not `BreakerOpen` forever.
    server.set_faults(vec![]);
    assert_eq!(lm.breaker_state(), BreakerState::HalfOpen);
    lm.call(LmRequest::prompt("x")).await.unwrap();
    assert_eq!(lm.breaker_state(), BreakerState::Closed { failures: 0 });
}

#[tokio::test]
async fn a_stream_holds_its_concurrency_slot_until_it_ends_or_is_dropped() {
    let server = server().await;
    let lm = builder(&server).max_concurrency(1).build().unwrap();

    let mut stream = lm.stream(LmRequest::prompt("stream this")).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert!(matches!(first, StreamEvent::Delta { .. }), "{first:?}");
    // The stream is open: the only slot is taken.
    let err = lm
        .call_with(LmRequest::prompt("y"), &within(100))
        .await
        .unwrap_err();
    assert!(matches!(err, LmError::LocalRateLimit { .. }), "{err}");
    drop(stream);
    lm.call_with(LmRequest::prompt("y"), &within(2000))
        .await
        .unwrap();

    // Read to its end, a stream gives the slot back too.
    let mut stream = lm.stream(LmRequest::prompt("stream this")).await.unwrap();
    while let Some(event) = stream.next().await {
        event.unwrap();
    }
    lm.call_with(LmRequest::prompt("y"), &within(2000))
        .await
        .unwrap();

    // So does a stream that broke off, at its last item, even if it is kept.
    server.set_faults(vec![(Fault::TruncatedStream, FaultWhen::Always)]);
    let mut broken = lm.stream(LmRequest::prompt("stream this")).await.unwrap();
    let mut last = None;
    while let Some(event) = broken.next().await {
        last = Some(event);
    }
    assert!(
        matches!(last, Some(Err(LmError::Connect { .. }))),
        "{last:?}"
    );
    server.set_faults(vec![]);
    lm.call_with(LmRequest::prompt("y"), &within(2000))
        .await
        .unwrap();
    drop(broken);
}

#[tokio::test]
async fn a_stream_is_charged_the_usage_it_reports() {
    let server = server().await;
    let budget = 1000u32;
    let lm = budgeted(&server, budget);
    let mut request = LmRequest::prompt("stream this");
    request.max_tokens = Some(100);
    let mut stream = lm.stream(request).await.unwrap();
    let mut used = None;
    while let Some(event) = stream.next().await {
        if let StreamEvent::Usage(usage) = event.unwrap() {
            used = Some(usage.total_tokens);
        }
    }
    let used = used.expect("the mock reports usage when asked (stream_options.include_usage)");
    assert!(used >= 4, "{used}");

    // What is left is the budget less the stream's usage: a call that needs all but half of
    // that usage does not fit (the bucket refills at 1000/min, ~17 tokens a second).
    let mut request = LmRequest::prompt("");
    request.max_tokens = Some(budget - (used as u32) / 2);
    let err = lm.call_with(request, &within(50)).await.unwrap_err();
    assert!(matches!(err, LmError::LocalRateLimit { .. }), "{err}");
    // One that fits goes through.
    let mut request = LmRequest::prompt("");
    request.max_tokens = Some(budget - used as u32 - 20);
    lm.call_with(request, &within(2000)).await.unwrap();
}

#[tokio::test]
async fn a_stream_dropped_early_is_charged_an_estimate() {
    let server = server().await;
    let budget = 2000u32;
    let lm = budgeted(&server, budget);
    // A 4,000-character prompt: about 1,000 tokens by the estimate.
    let mut request = LmRequest::prompt("word ".repeat(800));
    request.max_tokens = Some(100);
    let mut stream = lm.stream(request).await.unwrap();
    stream.next().await.unwrap().unwrap();
    drop(stream);

    // Had the stream cost nothing, 1,500 tokens would fit in the 2,000 budget.
    let mut request = LmRequest::prompt("");
    request.max_tokens = Some(1500);
    let err = lm.call_with(request, &within(50)).await.unwrap_err();
    assert!(matches!(err, LmError::LocalRateLimit { .. }), "{err}");
    let mut request = LmRequest::prompt("");
    request.max_tokens = Some(900);
    lm.call_with(request, &within(2000)).await.unwrap();
}

#[tokio::test]
async fn answers_past_the_size_limit_are_typed_errors() {
    let server = server().await;
    let lm = builder(&server).max_response_bytes(64).build().unwrap();
    let err = lm.call(LmRequest::prompt("x")).await.unwrap_err();
    assert!(
        matches!(err, LmError::ResponseTooLarge { limit: 64, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("larger than the limit of 64 bytes"),
        "{err}"
    );
    assert!(!err.is_retryable());

    // A stream counts every byte of its event stream.
    let mut stream = lm.stream(LmRequest::prompt("stream this")).await.unwrap();
    let mut last = None;
    while let Some(event) = stream.next().await {
        last = Some(event);
    }
    assert!(
        matches!(last, Some(Err(LmError::ResponseTooLarge { limit: 64, .. }))),
        "{last:?}"
    );

    // Through reqwest (which serves a base URL with credentials) the same limit and error.
    let lm = LM::builder("openai/mock")
        .api_base(server.api_base().replace("http://", "http://user:pw@"))
        .cache(false)
        .retry(RetryPolicy::none())
        .max_response_bytes(64)
        .build()
        .unwrap();
    let err = lm.call(LmRequest::prompt("x")).await.unwrap_err();
    assert!(
        matches!(err, LmError::ResponseTooLarge { limit: 64, .. }),
        "{err}"
    );

    // The default is generous.
    builder(&server)
        .build()
        .unwrap()
        .call(LmRequest::prompt("x"))
        .await
        .unwrap();
}

/// The environment variable that makes [`proxies_from_the_environment_are_honoured`] play the
/// child: the variables are the process's own, so each case runs in a process of its own.
const PROXY_CHILD: &str = "DSPEX_TEST_PROXY_CHILD_BASE";

/// A stand-in HTTP proxy on loopback: records each request line and answers every request
/// with one chat completion, `via the proxy`.
async fn fake_proxy() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let lines = std::sync::Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let lines = std::sync::Arc::clone(&lines);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            lines
                                .lock()
                                .unwrap()
                                .push(head.lines().next().unwrap_or("").to_string());
                            let body = r#"{"id":"p","object":"chat.completion","created":0,"model":"mock","choices":[{"index":0,"message":{"role":"assistant","content":"via the proxy"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4}}"#;
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = stream.write_all(answer.as_bytes()).await;
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn proxies_from_the_environment_are_honoured() {
    if let Ok(base) = std::env::var(PROXY_CHILD) {
        // The child: one call with the proxy variables it was started with.
        let lm = LM::builder("openai/mock")
            .api_base(base)
            .cache(false)
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        let answer = lm.call(LmRequest::prompt("x")).await.unwrap();
        println!("ANSWER={}", answer.text());
        return;
    }
    let server = server().await;
    let (proxy, seen) = fake_proxy().await;
    let run = |vars: Vec<(&'static str, String)>| {
        let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "proxies_from_the_environment_are_honoured",
                "--exact",
                "--nocapture",
            ])
            .env(PROXY_CHILD, server.api_base());
        for name in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
            "NO_PROXY",
            "no_proxy",
            "REQUEST_METHOD",
        ] {
            command.env_remove(name);
        }
        for (name, value) in vars {
            command.env(name, value);
        }
        async move {
            let out = command.output().await.unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(
                out.status.success(),
                "{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            stdout
                .lines()
                .find_map(|l| l.strip_prefix("ANSWER=").map(str::to_string))
                .expect("the child printed its answer")
        }
    };
    let proxy_url = format!("http://127.0.0.1:{proxy}");

    // HTTP_PROXY: the plain-http endpoint is reached through the proxy, in absolute form.
    let answer = run(vec![("HTTP_PROXY", proxy_url.clone())]).await;
    assert_eq!(answer, "via the proxy");
    let lines = seen.lock().unwrap().clone();
    assert_eq!(
        lines,
        [format!(
            "POST {}/chat/completions HTTP/1.1",
            server.api_base()
        )]
    );

    // NO_PROXY exempts the host: straight to the server.
    let answer = run(vec![
        ("http_proxy", proxy_url.clone()),
        ("NO_PROXY", "127.0.0.1".to_string()),
    ])
    .await;
    assert_ne!(answer, "via the proxy");
    // An HTTPS proxy does not apply to plain http.
    let answer = run(vec![("HTTPS_PROXY", proxy_url)]).await;
    assert_ne!(answer, "via the proxy");
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(chat_requests(&server), 2);
}

fn chat_requests(server: &MockLmServer) -> u64 {
    server.stats().requests_to("/v1/chat/completions")
}
