//! The LM client against dspex's mock LM server on loopback: every fault, the cache, coalescing,
//! the breaker, limits, usage, history and secrets. Nothing here reaches the internet.

mod common;

use common::Capture;

use dspex::lm::{
    BreakerConfig, BreakerState, CacheConfig, CallOptions, LM, LmError, LmRequest, RateLimit,
    RetryPolicy, StreamEvent, track_usage,
};
use dspex::testing::{Fault, FaultWhen, Latency, MockLm, MockLmServer};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "sk-test-DO-NOT-LEAK-4242";

/// Fast retries so tests do not wait on backoff.
fn quick_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::attempts(attempts)
        .with_delays(Duration::from_millis(10), Duration::from_millis(40))
}

fn lm(server: &MockLmServer) -> LM {
    LM::builder("openai/mock")
        .api_base(server.api_base())
        .api_key(KEY)
        .cache(false)
        .retry(quick_retries(4))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("the LM builds")
}

async fn server_with(faults: Vec<(Fault, FaultWhen)>) -> MockLmServer {
    let mut builder = MockLm::builder().seed(7);
    for (fault, when) in faults {
        builder = builder.fault(fault, when);
    }
    builder.start().await.expect("the mock server starts")
}

fn chat_requests(server: &MockLmServer) -> u64 {
    server.stats().requests_to("/v1/chat/completions")
}

#[tokio::test]
async fn a_plain_call_gets_an_answer_usage_and_history() {
    let server = server_with(vec![]).await;
    let lm = lm(&server);
    let (response, usage) = track_usage(lm.call(LmRequest::prompt("hello there"))).await;
    let response = response.unwrap();
    assert!(!response.text().is_empty());
    assert!(!response.cache_hit);
    assert!(response.usage.total_tokens > 0);
    assert_eq!(usage.per_model["openai/mock"].calls, 1);
    assert_eq!(usage.per_model["openai/mock"].usage, response.usage);
    assert_eq!(lm.history(10).len(), 1);
    let shown = lm.inspect_history(1);
    assert!(shown.contains("User message:\n\nhello there"), "{shown}");
    assert!(
        shown.contains(&format!("Response:\n\n{}", response.text().trim())),
        "{shown}"
    );
}

#[tokio::test]
async fn n_completions_and_embeddings() {
    let server = server_with(vec![]).await;
    let lm = lm(&server);
    let mut request = LmRequest::prompt("pick three");
    request.n = Some(3);
    request.temperature = Some(1.0);
    let response = lm.call(request).await.unwrap();
    assert_eq!(response.choices.len(), 3);

    let a = lm.embed(&["alpha", "beta"]).await.unwrap();
    let b = lm.embed(&["alpha"]).await.unwrap();
    assert_eq!(a.vectors.len(), 2);
    assert_eq!(a.vectors[0], b.vectors[0], "embeddings are deterministic");
    assert_ne!(a.vectors[0], a.vectors[1]);
}

#[tokio::test]
async fn server_errors_are_retried_until_they_pass() {
    let server = server_with(vec![(Fault::Status(500), FaultWhen::FirstN(2))]).await;
    let lm = lm(&server);
    let (response, usage) = track_usage(lm.call(LmRequest::prompt("retry me"))).await;
    let response = response.unwrap();
    assert!(!response.text().is_empty());
    assert_eq!(chat_requests(&server), 3);
    // Every attempt is a request; one call was answered.
    let usage = usage.per_model["openai/mock"];
    assert_eq!((usage.requests, usage.calls), (3, 1));
    assert_eq!(lm.usage().per_model["openai/mock"].requests, 3);
}

#[tokio::test]
async fn persistent_503_gives_up_with_a_typed_error() {
    let server = server_with(vec![(Fault::Status(503), FaultWhen::Always)]).await;
    let err = lm(&server)
        .with_retry(quick_retries(3))
        .call(LmRequest::prompt("x"))
        .await
        .unwrap_err();
    match &err {
        LmError::GaveUp { attempts, last, .. } => {
            assert_eq!(*attempts, 3);
            assert!(
                matches!(**last, LmError::Http { status: 503, .. }),
                "{last}"
            );
        }
        other => panic!("expected GaveUp, got {other}"),
    }
    assert_eq!(chat_requests(&server), 3);
    let text = err.to_string();
    assert!(
        text.contains("openai/mock") && text.contains("127.0.0.1"),
        "{text}"
    );
}

#[tokio::test]
async fn rate_limits_honour_retry_after() {
    let server = server_with(vec![(
        Fault::RateLimited {
            retry_after: Duration::from_millis(300),
        },
        FaultWhen::FirstN(1),
    )])
    .await;
    let start = Instant::now();
    lm(&server).call(LmRequest::prompt("x")).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "waited {:?}",
        start.elapsed()
    );
    assert_eq!(chat_requests(&server), 2);

    // Without retries, the caller sees the provider's wait.
    server.set_faults(vec![(
        Fault::RateLimited {
            retry_after: Duration::from_millis(1500),
        },
        FaultWhen::Always,
    )]);
    let err = lm(&server)
        .with_retry(RetryPolicy::none())
        .call(LmRequest::prompt("y"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LmError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_millis(1500)),
        "{err}"
    );
}

#[tokio::test]
async fn client_errors_fail_at_once_with_the_providers_message() {
    for status in [400, 401, 404] {
        let server = server_with(vec![(Fault::Status(status), FaultWhen::Always)]).await;
        let err = lm(&server).call(LmRequest::prompt("x")).await.unwrap_err();
        assert!(
            matches!(err, LmError::Http { status: s, .. } if s == status),
            "{err}"
        );
        assert_eq!(chat_requests(&server), 1, "HTTP {status} is not retried");
    }
}

#[tokio::test]
async fn a_hang_becomes_a_timeout() {
    let server = server_with(vec![(
        Fault::Hang(Duration::from_secs(30)),
        FaultWhen::Always,
    )])
    .await;
    let err = lm(&server)
        .with_timeout(Duration::from_millis(200))
        .with_retry(RetryPolicy::none())
        .call(LmRequest::prompt("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, LmError::Timeout { .. }), "{err}");

    // An overall deadline bounds the retries too.
    let start = Instant::now();
    let err = lm(&server)
        .with_timeout(Duration::from_millis(200))
        .with_deadline(Some(Duration::from_millis(500)))
        .call(LmRequest::prompt("x"))
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            err.root(),
            LmError::Timeout { .. } | LmError::DeadlineExceeded { .. }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_reset_mid_body_is_retried() {
    let server = server_with(vec![(Fault::ResetMidBody, FaultWhen::FirstN(1))]).await;
    lm(&server).call(LmRequest::prompt("x")).await.unwrap();
    assert_eq!(chat_requests(&server), 2);

    server.set_faults(vec![(Fault::ResetMidBody, FaultWhen::Always)]);
    let err = lm(&server)
        .with_retry(RetryPolicy::none())
        .call(LmRequest::prompt("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, LmError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn malformed_json_and_empty_choices_are_decode_errors() {
    let server = server_with(vec![(Fault::MalformedJson, FaultWhen::Always)]).await;
    let err = lm(&server).call(LmRequest::prompt("x")).await.unwrap_err();
    assert!(
        matches!(err, LmError::Decode { ref raw, .. } if !raw.is_empty()),
        "{err}"
    );
    assert_eq!(chat_requests(&server), 1, "decode errors are not retried");

    server.set_faults(vec![(Fault::EmptyChoices, FaultWhen::Always)]);
    let err = lm(&server).call(LmRequest::prompt("x")).await.unwrap_err();
    assert!(err.to_string().contains("no choices"), "{err}");
}

#[tokio::test]
async fn connection_refused_is_a_connect_error() {
    let server = server_with(vec![]).await;
    let base = server.api_base();
    server.shutdown().await;
    let lm = LM::builder("openai/mock")
        .api_base(base)
        .cache(false)
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let err = lm.call(LmRequest::prompt("x")).await.unwrap_err();
    assert!(matches!(err, LmError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn streaming_yields_deltas_and_detects_truncation() {
    let server = server_with(vec![]).await;
    let lm = lm(&server);
    let whole = lm.call(LmRequest::prompt("stream this")).await.unwrap();
    let mut stream = Box::pin(lm.stream(LmRequest::prompt("stream this")).await.unwrap());
    let mut text = String::new();
    let mut finished = false;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            StreamEvent::Delta { text: t, .. } => text.push_str(&t),
            StreamEvent::Finish { .. } => finished = true,
            _ => {}
        }
    }
    assert!(finished);
    assert_eq!(text, whole.text());

    server.set_faults(vec![(Fault::TruncatedStream, FaultWhen::Always)]);
    let mut stream = Box::pin(lm.stream(LmRequest::prompt("stream this")).await.unwrap());
    let mut last = None;
    while let Some(event) = stream.next().await {
        last = Some(event);
    }
    assert!(
        matches!(last, Some(Err(LmError::Connect { ref message, .. })) if message.contains("[DONE]")),
        "{last:?}"
    );
}

fn cached_lm(server: &MockLmServer, dir: &std::path::Path) -> LM {
    LM::builder("openai/mock")
        .api_base(server.api_base())
        .api_key(KEY)
        .cache_config(CacheConfig::with_disk_dir(dir))
        .retry(quick_retries(2))
        .build()
        .unwrap()
}

#[tokio::test]
async fn cache_hits_misses_bypass_and_rollouts() {
    let server = server_with(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let lm = cached_lm(&server, dir.path());
    let first = lm.call(LmRequest::prompt("cache me")).await.unwrap();
    assert!(!first.cache_hit);
    let (second, usage) = track_usage(lm.call(LmRequest::prompt("cache me"))).await;
    let second = second.unwrap();
    assert!(second.cache_hit);
    assert_eq!(second.text(), first.text());
    assert_eq!(second.usage.total_tokens, 0, "hits cost nothing");
    assert_eq!(usage.per_model["openai/mock"].cache_hits, 1);
    assert_eq!(chat_requests(&server), 1);

    // A different request misses; cache=false per call bypasses; a rollout id splits the key.
    lm.call(LmRequest::prompt("other")).await.unwrap();
    let bypass = CallOptions {
        cache: Some(false),
        ..CallOptions::default()
    };
    assert!(
        !lm.call_with(LmRequest::prompt("cache me"), &bypass)
            .await
            .unwrap()
            .cache_hit
    );
    let mut rollout = LmRequest::prompt("cache me");
    rollout.rollout_id = Some(1);
    assert!(!lm.call(rollout.clone()).await.unwrap().cache_hit);
    assert!(lm.call(rollout).await.unwrap().cache_hit);
    assert_eq!(chat_requests(&server), 4);
}

#[tokio::test]
async fn the_disk_cache_persists_across_clients_and_survives_corruption() {
    let server = server_with(vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let answer = cached_lm(&server, dir.path())
        .call(LmRequest::prompt("persist"))
        .await
        .unwrap();
    // A second client (a new process would be the same) finds it on disk.
    let again = cached_lm(&server, dir.path())
        .call(LmRequest::prompt("persist"))
        .await
        .unwrap();
    assert!(again.cache_hit);
    assert_eq!(again.text(), answer.text());
    assert_eq!(chat_requests(&server), 1);

    // A garbage database file is moved aside, never read as an answer.
    let corrupt = tempfile::tempdir().unwrap();
    std::fs::write(
        corrupt.path().join("responses.redb"),
        b"this is not a database",
    )
    .unwrap();
    let lm = cached_lm(&server, corrupt.path());
    let fresh = lm.call(LmRequest::prompt("persist")).await.unwrap();
    assert!(!fresh.cache_hit);
    assert!(
        lm.call(LmRequest::prompt("persist"))
            .await
            .unwrap()
            .cache_hit
    );
}

#[tokio::test]
async fn identical_concurrent_calls_are_coalesced() {
    let server = MockLm::builder()
        .latency(Latency::Fixed(Duration::from_millis(200)))
        .start()
        .await
        .unwrap();
    let lm = LM::builder("openai/mock")
        .api_base(server.api_base())
        .cache_config(CacheConfig::memory_only())
        .build()
        .unwrap();
    let calls = (0..100).map(|_| {
        let lm = lm.clone();
        tokio::spawn(async move { lm.call(LmRequest::prompt("same question")).await })
    });
    let answers: Vec<_> = futures_util::future::join_all(calls).await;
    let texts: Vec<String> = answers
        .into_iter()
        .map(|r| r.unwrap().unwrap().text().to_string())
        .collect();
    assert!(texts.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(
        chat_requests(&server),
        1,
        "100 identical calls, one request"
    );
    let usage = lm.usage().per_model["openai/mock"];
    assert_eq!(usage.calls, 1);
    assert_eq!(usage.cache_hits, 99);
}

#[tokio::test]
async fn the_breaker_opens_probes_and_closes() {
    let server = server_with(vec![(Fault::Status(500), FaultWhen::Always)]).await;
    let lm = LM::builder("openai/mock")
        .api_base(server.api_base())
        .cache(false)
        .retry(RetryPolicy::none())
        .breaker(BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_millis(300),
        })
        .build()
        .unwrap();
    for _ in 0..3 {
        assert!(matches!(
            lm.call(LmRequest::prompt("x")).await.unwrap_err(),
            LmError::Http { status: 500, .. }
        ));
    }
    assert!(matches!(lm.breaker_state(), BreakerState::Open { .. }));
    // The breaker belongs to the endpoint: another LM calling it sees it open too.
    let sibling = LM::builder("openai/other-model")
        .api_base(server.api_base())
        .cache(false)
        .breaker(BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_millis(300),
        })
        .build()
        .unwrap();
    assert!(matches!(sibling.breaker_state(), BreakerState::Open { .. }));
    // Open: fail fast without touching the server.
    let err = lm.call(LmRequest::prompt("x")).await.unwrap_err();
    assert!(matches!(err, LmError::BreakerOpen { .. }), "{err}");
    assert_eq!(chat_requests(&server), 3);

    // The endpoint heals; after the cool-down one probe goes through and closes the breaker.
    server.set_faults(vec![]);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(lm.breaker_state(), BreakerState::HalfOpen);
    lm.call(LmRequest::prompt("x")).await.unwrap();
    assert_eq!(lm.breaker_state(), BreakerState::Closed { failures: 0 });
    assert_eq!(chat_requests(&server), 4);
}

#[tokio::test]
async fn a_request_rate_limit_is_respected() {
    let server = server_with(vec![]).await;
    let lm = LM::builder("openai/mock")
        .api_base(server.api_base())
        .cache(false)
        .rate_limit(RateLimit {
            requests_per_minute: Some(120),
            tokens_per_minute: None,
        })
        .build()
        .unwrap();
    // The bucket holds a minute's worth (120); 5 more need 2.5 s at 2 per second.
    let start = Instant::now();
    let calls = (0..125).map(|i| {
        let lm = lm.clone();
        tokio::spawn(async move { lm.call(LmRequest::prompt(format!("r{i}"))).await })
    });
    for r in futures_util::future::join_all(calls).await {
        r.unwrap().unwrap();
    }
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(chat_requests(&server), 125);
}

#[tokio::test]
async fn the_concurrency_cap_holds() {
    let server = MockLm::builder()
        .latency(Latency::Fixed(Duration::from_millis(100)))
        .start()
        .await
        .unwrap();
    let lm = LM::builder("openai/mock")
        .api_base(server.api_base())
        .cache(false)
        .max_concurrency(4)
        .build()
        .unwrap();
    let start = Instant::now();
    let calls = (0..12).map(|i| {
        let lm = lm.clone();
        tokio::spawn(async move { lm.call(LmRequest::prompt(format!("c{i}"))).await })
    });
    for r in futures_util::future::join_all(calls).await {
        r.unwrap().unwrap();
    }
    // 12 calls, 4 at a time, 100 ms each: at least three rounds.
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn the_api_key_never_leaks() {
    let capture = Capture::default();
    let log = Arc::clone(&capture.0);
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (debug, errors) = tracing::subscriber::with_default(capture, || {
        runtime.block_on(async {
            let server = server_with(vec![(
                Fault::Status(401),
                FaultWhen::Matching("deny".into()),
            )])
            .await;
            let lm = LM::builder("openai/mock")
                .api_base(server.api_base())
                .api_key(KEY)
                .header("x-extra-secret", KEY)
                .cache_config(CacheConfig::with_disk_dir(dir.path()))
                .retry(quick_retries(2))
                .build()
                .unwrap();
            lm.call(LmRequest::prompt("allowed")).await.unwrap();
            lm.call(LmRequest::prompt("allowed")).await.unwrap();
            let err = lm.call(LmRequest::prompt("deny this")).await.unwrap_err();
            let config_err = LM::builder("openai/m")
                .api_key(KEY)
                .api_base("ftp://nowhere")
                .build()
                .unwrap_err();
            (
                format!("{lm:?} {:?}", lm.history(10)),
                format!("{err} {err:?} {config_err} {config_err:?}"),
            )
        })
    });
    common::assert_key_kept(KEY, &debug, &errors, &log.lock().unwrap(), dir.path());
}
