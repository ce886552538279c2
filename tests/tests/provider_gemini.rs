//! Gemini (`gemini/…`, Google AI Studio's `generateContent` API) end to end against dspex's mock
//! LM server, which speaks Gemini's protocol on `/v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent`: plain, typed, streamed, several-candidate, JSON-mode, tool-calling,
//! thinking and image calls, usage, every class of error, and the key kept out of logs, `Debug`,
//! errors and caches. Nothing here reaches the internet (127.0.0.1 only).

mod common;

use common::Capture;

use dspex::adapter::{ChatAdapter, JSONAdapter};
use dspex::lm::{
    BreakerConfig, CacheConfig, FinishReason, LM, LmError, LmErrorKind, LmRequest, RetryPolicy,
    StreamEvent, Usage,
};
use dspex::module::{CallConfig, ChainOfThought, FieldStream, Predict, StreamError, StreamItem};
use dspex::prelude::*;
use dspex::testing::{Fault, FaultWhen, MockLm, MockLmServer, Rule};
use futures_util::StreamExt;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "AIza-gemini-test-DO-NOT-LEAK-7c1e";
const GENERATE: &str = "/v1beta/models/{model}:generateContent";
const STREAM: &str = "/v1beta/models/{model}:streamGenerateContent";

#[signature("question -> answer")]
struct QA;

#[signature("question -> reasoning: dspy.Reasoning, answer")]
struct Think;

fn question(text: &str) -> QAInput {
    QAInput {
        question: text.to_string(),
    }
}

fn base(server: &MockLmServer) -> String {
    format!("{}/v1beta", server.url())
}

fn quick_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::attempts(attempts)
        .with_delays(Duration::from_millis(10), Duration::from_millis(40))
}

fn lm_for(server: &MockLmServer, model: &str) -> LM {
    LM::builder(format!("gemini/{model}"))
        .api_base(base(server))
        .api_key(KEY)
        .cache(false)
        .retry(quick_retries(3))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("the LM builds")
}

/// An LM for `server` without a circuit breaker (repeated server errors would open it).
fn unguarded_lm(server: &MockLmServer) -> LM {
    LM::builder("gemini/gemini-2.5-flash")
        .api_base(base(server))
        .api_key(KEY)
        .cache(false)
        .retry(quick_retries(3))
        .breaker(BreakerConfig::disabled())
        .build()
        .expect("the LM builds")
}

fn lm(server: &MockLmServer) -> LM {
    lm_for(server, "gemini-2.5-flash")
}

async fn server(rules: Vec<Rule>, faults: Vec<(Fault, FaultWhen)>) -> MockLmServer {
    let mut builder = MockLm::builder().seed(5).rules(rules);
    for (fault, when) in faults {
        builder = builder.fault(fault, when);
    }
    builder.start().await.expect("the mock server starts")
}

#[tokio::test]
async fn a_plain_call_with_usage() {
    let server = server(vec![Rule::exact("Say hi.", "Hello from Gemini.")], vec![]).await;
    let lm = lm(&server);
    let response = lm
        .call(LmRequest::prompt("Say hi."))
        .await
        .expect("the call");
    assert_eq!(response.text(), "Hello from Gemini.");
    assert_eq!(response.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(response.model, "gemini-2.5-flash");
    // The mock counts words: 2 in the prompt, 3 in the answer.
    assert_eq!(
        response.usage,
        Usage {
            prompt_tokens: 2,
            completion_tokens: 3,
            total_tokens: 5
        }
    );
    assert_eq!(lm.usage().total().usage.total_tokens, 5);
    assert_eq!(server.stats().requests_to(GENERATE), 1);
    assert_eq!(lm.endpoint(), base(&server));
}

#[tokio::test]
async fn a_typed_chain_of_thought_call() {
    let server = server(vec![], vec![]).await;
    let cot = ChainOfThought::<QA>::new().with_config(CallConfig::new().lm(lm(&server)));
    let out = cot
        .forward(question("Why is the sky blue?"))
        .await
        .expect("the typed call");
    assert!(!out.reasoning.is_empty());
    assert!(!out.answer.is_empty());
    assert!(!out.answer.contains("[[ ##"), "{out:?}");
    // The same prompt gets the same answer.
    assert_eq!(
        cot.forward(question("Why is the sky blue?")).await.unwrap(),
        out
    );
}

#[tokio::test]
async fn native_thinking_comes_back_as_the_reasoning() {
    let server = server(vec![], vec![]).await;
    let thinking = LM::builder("gemini/gemini-2.5-flash")
        .api_base(base(&server))
        .api_key(KEY)
        .cache(false)
        .native_reasoning(true)
        .build()
        .unwrap();
    // A `dspy.Reasoning` output with a natively reasoning LM: DSPy's "low" reasoning_effort →
    // thinkingConfig with includeThoughts → a `thought` part → reasoning_content → the field.
    let think = Predict::<Think>::new().with_config(CallConfig::new().lm(thinking.clone()));
    let out = think
        .forward(ThinkInput {
            question: "Think about it.".into(),
        })
        .await
        .unwrap();
    assert!(
        out.reasoning.starts_with("Thinking it over ("),
        "{:?}",
        out.reasoning
    );
    assert!(!out.answer.is_empty());
    let mut request = LmRequest::prompt("Think.");
    request
        .extra
        .insert("reasoning_effort".into(), json!("medium"));
    let response = thinking.call(request).await.unwrap();
    let choice = &response.choices[0];
    assert!(choice.reasoning_content.is_some());
    // Thoughts are billed as output tokens.
    assert!(response.usage.completion_tokens > dspex_words(&choice.text));
}

fn dspex_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

async fn collect<T>(stream: FieldStream<T>) -> Vec<Result<StreamItem<T>, StreamError>> {
    stream.collect().await
}

#[tokio::test]
async fn streaming_text_and_a_typed_stream() {
    const LONG: &str =
        "The answer spans many words so the mock server cuts it into several chunks.";
    let server = server(vec![Rule::contains("Stream me", LONG)], vec![]).await;
    let lm = lm(&server);
    let mut events = lm.stream(LmRequest::prompt("Stream me")).await.unwrap();
    let (mut text, mut deltas, mut finish, mut usage) = (String::new(), 0, None, None);
    while let Some(event) = events.next().await {
        match event.expect("no error item") {
            StreamEvent::Delta { index, text: t } => {
                assert_eq!(index, 0);
                text.push_str(&t);
                deltas += 1;
            }
            StreamEvent::Finish { reason, .. } => finish = Some(reason),
            StreamEvent::Usage(u) => usage = Some(u),
            other => panic!("a plain answer streams no {other:?}"),
        }
    }
    assert_eq!(text, LONG);
    assert!(deltas >= 2, "{deltas} delta(s)");
    assert_eq!(finish, Some(FinishReason::Stop));
    assert_eq!(usage.unwrap().completion_tokens, dspex_words(LONG));
    assert_eq!(server.stats().requests_to(STREAM), 1);

    // A typed stream: the answer's chunks, then the parsed output.
    let qa = Predict::<QA>::new().with_config(CallConfig::new().lm(lm.clone()));
    let items = collect(qa.stream(question("What is the capital of France?"))).await;
    let out = items
        .iter()
        .find_map(|i| match i {
            Ok(StreamItem::Final(o)) => Some(o.clone()),
            _ => None,
        })
        .expect("a final output");
    let streamed: String = items
        .iter()
        .filter_map(|i| match i {
            Ok(StreamItem::Chunk(c)) if c.field == "answer" => Some(c.delta.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(streamed, out.answer);
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    assert_eq!(
        qa.forward(question("What is the capital of France?"))
            .await
            .unwrap(),
        out
    );
}

#[tokio::test]
async fn several_candidates_in_one_request() {
    let server = server(vec![], vec![]).await;
    let lm = lm(&server);
    let mut request = LmRequest::prompt("Give me a name.");
    request.n = Some(3);
    request.temperature = Some(0.9);
    let response = lm.call(request).await.unwrap();
    assert_eq!(response.choices.len(), 3);
    let mut texts: Vec<&str> = response.texts().collect();
    texts.dedup();
    assert_eq!(texts.len(), 3, "distinct candidates at temperature > 0");
    // One request with candidateCount: no top-up requests.
    assert_eq!(server.stats().requests_to(GENERATE), 1);
    // More than Gemini's 8 candidates is Google's 400.
    let mut request = LmRequest::prompt("Too many.");
    request.n = Some(9);
    let err = lm.call(request).await.unwrap_err();
    assert_eq!(err.kind(), LmErrorKind::InvalidRequest, "{err}");
    assert_eq!(err.provider_code(), Some("INVALID_ARGUMENT"));
}

#[tokio::test]
async fn json_mode_through_the_json_adapter() {
    #[signature("question -> answer: str, confidence: float")]
    struct Scored;

    let server = server(vec![], vec![]).await;
    let predict = Predict::<Scored>::new()
        .with_config(CallConfig::new().lm(lm(&server)).adapter(JSONAdapter));
    let out = predict
        .forward(ScoredInput {
            question: "How sure are you?".into(),
        })
        .await
        .expect("a JSON answer parses (the schema went as responseJsonSchema)");
    assert!(!out.answer.is_empty());
    assert!(out.confidence.is_finite());
    assert!(server.stats().requests_to(GENERATE) >= 1);
}

/// Get the current weather for a city.
#[tool]
fn get_weather(city: String) -> Result<String, String> {
    match city.as_str() {
        "Paris" => Ok("sunny, 21°C".into()),
        other => Err(format!("no weather for {other}")),
    }
}

/// Tell the time.
#[tool]
fn now() -> String {
    "noon".into()
}

#[signature]
/// Answer the question, calling tools when needed.
struct ToolQA {
    #[input]
    question: String,
    #[input]
    tools: Vec<Tool>,
    #[output]
    answer: String,
    #[output]
    tool_calls: ToolCalls,
}

#[tokio::test]
async fn native_tool_calls_come_back_from_function_call_parts() {
    let server = server(
        vec![
            Rule::contains(
                "Paris and Rome",
                "[[ ## answer ## ]]\nChecking both.\n\n[[ ## completed ## ]]",
            )
            .with_tool_call("get_weather", json!({"city": "Paris"}))
            .with_tool_call("get_weather", json!({"city": "Rome"})),
        ],
        vec![],
    )
    .await;
    let predict = Predict::<ToolQA>::new().with_config(
        CallConfig::new()
            .lm(lm(&server))
            .adapter(ChatAdapter::new().native_function_calling(true)),
    );
    let out = predict
        .forward(ToolQAInput {
            question: "Weather in Paris and Rome?".into(),
            // `now` takes no arguments: its empty object schema must not reach Gemini, which
            // rejects an OBJECT without properties (the mock checks as Google does).
            tools: vec![get_weather_tool(), now_tool()],
        })
        .await
        .expect("the call succeeds");
    assert_eq!(out.answer, "Checking both.");
    let calls = out.tool_calls.calls();
    assert_eq!(calls.len(), 2);
    // Gemini sends no call ids: they are generated, deterministically.
    assert_eq!(calls[0].id.as_deref(), Some("tool_call_0"));
    assert_eq!(calls[1].id.as_deref(), Some("tool_call_1"));
    assert_eq!(calls[1].args["city"], "Rome");
    let results = out
        .tool_calls
        .execute(&[get_weather_tool(), now_tool()])
        .await;
    assert_eq!(results[0], Ok(json!("sunny, 21°C")));
    assert!(results[1].is_err());
}

#[signature]
/// Answer the question about the image.
struct Vqa {
    #[input]
    image: Image,
    #[input]
    question: String,
    #[output]
    answer: String,
}

#[tokio::test]
async fn an_image_goes_out_as_inline_data() {
    // 1x1 PNG.
    const PNG: &[u8] = &[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0,
        0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89,
    ];
    let server = server(
        vec![
            Rule::conversation_regex(
                r"\[inline_data image/png \d+ bytes\]",
                "[[ ## answer ## ]]\nA tiny image.\n\n[[ ## completed ## ]]",
            )
            .unwrap(),
            Rule::conversation_regex(
                r"\[file_data image/jpeg https://example\.com/cat\.jpg\]",
                "[[ ## answer ## ]]\nA cat.\n\n[[ ## completed ## ]]",
            )
            .unwrap(),
        ],
        vec![],
    )
    .await;
    let vqa = Predict::<Vqa>::new().with_config(CallConfig::new().lm(lm(&server)));
    let out = vqa
        .forward(VqaInput {
            image: Image::from_bytes(PNG, "image/png").unwrap(),
            question: "What is this?".into(),
        })
        .await
        .unwrap();
    assert_eq!(out.answer, "A tiny image.");
    let out = vqa
        .forward(VqaInput {
            image: Image::url("https://example.com/cat.jpg").unwrap(),
            question: "And this?".into(),
        })
        .await
        .unwrap();
    assert_eq!(out.answer, "A cat.");
}

async fn error_of(server: &MockLmServer, model: &str, prompt: &str) -> LmError {
    lm_for(server, model)
        .call(LmRequest::prompt(prompt))
        .await
        .expect_err("the call fails")
}

#[tokio::test]
async fn each_error_class() {
    let server = server(
        vec![
            Rule::contains("forbidden", "never").with_safety_block("SAFETY"),
            Rule::contains("recited", "never").with_safety_block("RECITATION"),
        ],
        vec![
            (Fault::Status(401), FaultWhen::matching("^unauth").unwrap()),
            (Fault::Status(403), FaultWhen::matching("^denied").unwrap()),
            (Fault::Status(400), FaultWhen::matching("^bad").unwrap()),
            (Fault::EmptyChoices, FaultWhen::matching("^empty").unwrap()),
        ],
    )
    .await;
    for (prompt, kind, code, status) in [
        ("unauth", LmErrorKind::Auth, "UNAUTHENTICATED", 401),
        ("denied", LmErrorKind::Auth, "PERMISSION_DENIED", 403),
        ("bad", LmErrorKind::InvalidRequest, "INVALID_ARGUMENT", 400),
    ] {
        let err = error_of(&server, "gemini-2.5-flash", prompt).await;
        assert_eq!(err.kind(), kind, "{prompt}: {err}");
        assert_eq!(err.provider_code(), Some(code));
        assert!(
            matches!(err, LmError::Http { status: s, .. } if s == status),
            "{err:?}"
        );
        assert!(!err.is_retryable());
    }
    // The context window: Google's "input token count … exceeds".
    let long = "word ".repeat(1_200);
    let err = error_of(&server, "mock-small-context", &long).await;
    assert_eq!(err.kind(), LmErrorKind::ContextWindowExceeded, "{err}");
    assert!(err.is_context_window_exceeded());
    // An unknown model.
    let err = error_of(&server, "palm-9000", "hello").await;
    assert_eq!(err.kind(), LmErrorKind::UnsupportedModel, "{err}");
    assert_eq!(err.provider_code(), Some("NOT_FOUND"));
    // A blocked prompt and a blocked candidate: typed, not retried, not an empty answer.
    for (prompt, code) in [
        ("forbidden topic", "SAFETY"),
        ("recited text", "RECITATION"),
    ] {
        let err = error_of(&server, "gemini-2.5-flash", prompt).await;
        assert_eq!(err.kind(), LmErrorKind::InvalidRequest, "{err}");
        assert_eq!(err.provider_code(), Some(code));
        assert!(matches!(err, LmError::Http { status: 200, .. }), "{err:?}");
        assert!(!err.is_retryable());
    }
    // The same blocks in a stream end it with the same error.
    let mut events = lm(&server)
        .stream(LmRequest::prompt("forbidden topic"))
        .await
        .unwrap();
    let item = events.next().await.expect("an item");
    assert!(
        matches!(&item, Err(e) if e.provider_code() == Some("SAFETY")),
        "{item:?}"
    );
    // No candidates at all: the answer is unusable (LMUnexpectedError).
    let err = error_of(&server, "gemini-2.5-flash", "empty please").await;
    assert_eq!(err.kind(), LmErrorKind::Unexpected, "{err}");
    assert!(err.to_string().contains("no candidates"), "{err}");
    // Nothing was retried: one request per failing call.
    assert_eq!(server.stats().requests_to(GENERATE), 8);
    assert_eq!(server.stats().requests_to(STREAM), 1);
}

#[tokio::test]
async fn rate_limits_honour_retry_after_and_server_errors_are_retried() {
    let server = server(
        vec![],
        vec![
            (
                Fault::RateLimited {
                    retry_after: Duration::from_millis(300),
                },
                FaultWhen::FirstN(1),
            ),
            (Fault::Status(500), FaultWhen::matching("^flaky").unwrap()),
            (Fault::Status(503), FaultWhen::matching("^down").unwrap()),
        ],
    )
    .await;
    let lm = lm(&server);
    let started = Instant::now();
    lm.call(LmRequest::prompt("rate me"))
        .await
        .expect("the retry succeeds");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "Retry-After was not honoured: {:?}",
        started.elapsed()
    );
    assert_eq!(server.stats().faults_of("rate_limited"), 1);
    assert_eq!(server.stats().requests_to(GENERATE), 2);
    // 500 and 503 are retried until the attempts run out.
    for (prompt, code) in [("flaky", "INTERNAL"), ("down", "UNAVAILABLE")] {
        let before = server.stats().requests_to(GENERATE);
        let err = unguarded_lm(&server)
            .call(LmRequest::prompt(prompt))
            .await
            .unwrap_err();
        assert_eq!(server.stats().requests_to(GENERATE) - before, 3);
        assert!(matches!(err, LmError::GaveUp { attempts: 3, .. }), "{err}");
        assert_eq!(err.kind(), LmErrorKind::Server);
        assert_eq!(err.provider_code(), Some(code));
    }
    // Without retries, the 429 itself: a rate-limit error carrying the wait.
    server.set_faults(vec![(
        Fault::RateLimited {
            retry_after: Duration::from_secs(2),
        },
        FaultWhen::Always,
    )]);
    let err = lm
        .with_retry(RetryPolicy::none())
        .call(LmRequest::prompt("again"))
        .await
        .unwrap_err();
    assert!(matches!(err, LmError::RateLimited { .. }), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(err.provider_code(), Some("RESOURCE_EXHAUSTED"));
}

#[tokio::test]
async fn broken_streams_and_bodies_are_typed_errors() {
    let server = server(
        vec![Rule::contains(
            "cut",
            "Several words here so that the stream has chunks.",
        )],
        vec![
            (Fault::TruncatedStream, FaultWhen::matching("^cut").unwrap()),
            (
                Fault::MalformedJson,
                FaultWhen::matching("^garbled").unwrap(),
            ),
        ],
    )
    .await;
    let lm = lm(&server);
    let mut events = lm.stream(LmRequest::prompt("cut short")).await.unwrap();
    let mut last = None;
    while let Some(item) = events.next().await {
        last = Some(item);
    }
    let err = last
        .expect("items")
        .expect_err("the stream ends with an error");
    assert!(
        err.to_string()
            .contains("a candidate with a `finishReason`"),
        "{err}"
    );
    let err = lm.call(LmRequest::prompt("garbled")).await.unwrap_err();
    assert!(matches!(err, LmError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn a_missing_key_and_what_gemini_cannot_take() {
    let server = server(vec![], vec![]).await;
    // The mock answers a keyless call as Google does: 403 PERMISSION_DENIED.
    let keyless = LM::builder("gemini/gemini-2.5-flash")
        .api_base(base(&server))
        .cache(false)
        .build()
        .expect("a base URL given: the key is not required");
    let err = keyless.call(LmRequest::prompt("hi")).await.unwrap_err();
    assert_eq!(err.kind(), LmErrorKind::Auth, "{err}");
    // Parameters Gemini has no field for are refused before anything is sent.
    let mut request = LmRequest::prompt("hi");
    request.extra.insert("logit_bias".into(), json!({"1": 1}));
    let err = lm(&server).call(request).await.unwrap_err();
    assert_eq!(err.kind(), LmErrorKind::UnsupportedFeature, "{err}");
    assert!(err.to_string().contains("logit_bias"), "{err}");
    let err = lm(&server)
        .embed(&["text"])
        .await
        .expect_err("no embeddings endpoint");
    assert_eq!(err.kind(), LmErrorKind::UnsupportedFeature);
    assert_eq!(server.stats().requests_to(GENERATE), 1);
}

#[test]
fn the_key_never_leaks() {
    let capture = Capture::default();
    let log = Arc::clone(&capture.0);
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (debug, errors) = tracing::subscriber::with_default(capture, || {
        runtime.block_on(async {
            let server = server(
                vec![Rule::contains("blocked", "x").with_safety_block("PROHIBITED_CONTENT")],
                vec![(Fault::Status(401), FaultWhen::matching("deny").unwrap())],
            )
            .await;
            let lm = LM::builder("gemini/gemini-2.5-flash")
                .api_base(base(&server))
                .api_key(KEY)
                .cache_config(CacheConfig::with_disk_dir(dir.path()))
                .retry(quick_retries(2))
                .build()
                .unwrap();
            lm.call(LmRequest::prompt("allowed")).await.unwrap();
            lm.call(LmRequest::prompt("allowed")).await.unwrap();
            let mut events = lm.stream(LmRequest::prompt("streamed")).await.unwrap();
            while events.next().await.is_some() {}
            let denied = lm.call(LmRequest::prompt("deny this")).await.unwrap_err();
            let blocked = lm.call(LmRequest::prompt("blocked")).await.unwrap_err();
            (
                format!("{lm:?} {:?}", lm.history(10)),
                format!("{denied} {denied:?} {blocked} {blocked:?}"),
            )
        })
    });
    common::assert_key_kept(KEY, &debug, &errors, &log.lock().unwrap(), dir.path());
}

/// Streams carry thoughts and function calls too: a streamed call with native function calling
/// returns the calls (ids numbered across the stream) and a natively reasoning LM's thoughts
/// fill a `dspy.Reasoning` output, as the plain calls do.
#[tokio::test]
async fn streams_carry_thoughts_and_function_calls() {
    let server = server(
        vec![
            Rule::contains(
                "Paris and Rome",
                "[[ ## answer ## ]]\nChecking both.\n\n[[ ## completed ## ]]",
            )
            .with_tool_call("get_weather", json!({"city": "Paris"}))
            .with_tool_call("get_weather", json!({"city": "Rome"})),
        ],
        vec![],
    )
    .await;
    let predict = Predict::<ToolQA>::new().with_config(
        CallConfig::new()
            .lm(lm(&server))
            .adapter(ChatAdapter::new().native_function_calling(true)),
    );
    let items = collect(predict.stream_with(
        ToolQAInput {
            question: "Weather in Paris and Rome?".into(),
            tools: vec![get_weather_tool()],
        },
        &CallConfig::default(),
        &StreamOptions::new(),
    ))
    .await;
    let Some(Ok(StreamItem::Final(out))) = items.last() else {
        panic!("{items:?}")
    };
    assert_eq!(out.answer, "Checking both.");
    let calls = out.tool_calls.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].id.as_deref(), Some("tool_call_0"));
    assert_eq!(calls[1].id.as_deref(), Some("tool_call_1"));
    assert_eq!(calls[1].args["city"], "Rome");

    let thinking = LM::builder("gemini/gemini-2.5-flash")
        .api_base(base(&server))
        .api_key(KEY)
        .cache(false)
        .native_reasoning(true)
        .build()
        .unwrap();
    let think = Predict::<Think>::new().with_config(CallConfig::new().lm(thinking));
    let items = collect(think.stream_with(
        ThinkInput {
            question: "Think about it.".into(),
        },
        &CallConfig::default(),
        &StreamOptions::new(),
    ))
    .await;
    let Some(Ok(StreamItem::Final(out))) = items.last() else {
        panic!("{items:?}")
    };
    assert!(
        out.reasoning.starts_with("Thinking it over ("),
        "{:?}",
        out.reasoning
    );
    assert!(!out.answer.is_empty());
}
