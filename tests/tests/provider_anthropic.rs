//! Anthropic's Messages API end to end: `anthropic/…` LMs against the mock server's
//! `/v1/messages` route (which checks the headers and the body as Anthropic does, so a request
//! the API would refuse fails here too) — plain, typed, streamed, `n > 1`, JSON mode, native
//! tools, images, usage, every error class, and the key kept out of logs, `Debug`, errors and
//! the cache. Nothing here reaches the internet.

mod common;

use common::Capture;

use dspex::adapter::{ChatAdapter, JSONAdapter};
use dspex::lm::{
    CacheConfig, ContentPart, FinishReason, InputAudio, LM, LmError, LmErrorKind, LmRequest,
    Message, ResponseFormat, RetryPolicy, StreamEvent,
};
use dspex::module::{CallConfig, ChainOfThought, FieldStream, Predict, StreamError, StreamItem};
use dspex::prelude::*;
use dspex::testing::{Fault, FaultWhen, MockLm, MockLmServer, Rule};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "sk-ant-test-DO-NOT-LEAK-7312";
const MODEL: &str = "anthropic/claude-mock-4";

#[signature("question -> answer")]
struct QA;

#[signature("question -> answer: int")]
struct Count;

/// Answer the question, calling tools when needed.
#[signature]
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

/// Answer the question about the image.
#[signature]
struct VQA {
    #[input]
    image: Image,
    #[input]
    question: String,
    #[output]
    answer: String,
}

/// Get the current weather for a city.
#[tool]
fn get_weather(city: String) -> Result<String, String> {
    match city.as_str() {
        "Paris" => Ok("sunny, 21°C".into()),
        other => Err(format!("no weather for {other}")),
    }
}

fn builder(server: &MockLmServer) -> dspex::lm::LmBuilder {
    LM::builder(MODEL)
        .api_base(server.api_base())
        .api_key(KEY)
        .retry(
            RetryPolicy::attempts(4)
                .with_delays(Duration::from_millis(10), Duration::from_millis(40)),
        )
        .timeout(Duration::from_secs(5))
}

fn lm(server: &MockLmServer) -> LM {
    builder(server).cache(false).build().expect("the LM builds")
}

async fn server_with(rules: Vec<Rule>, faults: Vec<(Fault, FaultWhen)>) -> MockLmServer {
    let mut builder = MockLm::builder().seed(5).rules(rules);
    for (fault, when) in faults {
        builder = builder.fault(fault, when);
    }
    builder.start().await.expect("the mock server starts")
}

async fn server() -> MockLmServer {
    server_with(vec![], vec![]).await
}

fn messages_requests(server: &MockLmServer) -> u64 {
    server.stats().requests_to("/v1/messages")
}

fn question(text: &str) -> QAInput {
    QAInput {
        question: text.to_string(),
    }
}

#[tokio::test]
async fn a_plain_call_gets_text_usage_and_the_model() {
    let server = server().await;
    let lm = lm(&server);
    assert_eq!(lm.endpoint(), server.api_base());
    let response = lm.call(LmRequest::prompt("hello there")).await.unwrap();
    assert!(
        response.text().starts_with("mock completion "),
        "{response:?}"
    );
    assert_eq!(response.choices.len(), 1);
    assert_eq!(response.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(response.model, "claude-mock-4");
    // The mock counts words: two in, three out.
    assert_eq!(response.usage.prompt_tokens, 2);
    assert_eq!(response.usage.completion_tokens, 3);
    assert_eq!(response.usage.total_tokens, 5);
    assert_eq!(lm.usage().per_model[MODEL].usage, response.usage);
    assert_eq!(messages_requests(&server), 1);
    assert_eq!(server.stats().requests_to("/v1/chat/completions"), 0);
    // Embeddings have no endpoint in this protocol.
    let err = lm.embed(&["x"]).await.unwrap_err();
    assert_eq!(err.kind(), LmErrorKind::UnsupportedFeature);

    // max_tokens cuts the answer: a length finish.
    let mut short = LmRequest::prompt("hello there");
    short.max_tokens = Some(1);
    let cut = lm.call(short).await.unwrap();
    assert_eq!(cut.text(), "mock");
    assert_eq!(cut.choices[0].finish_reason, Some(FinishReason::Length));
}

#[tokio::test]
async fn typed_modules_answer_through_the_messages_api() {
    let server = server().await;
    let config = CallConfig::new().lm(lm(&server));
    let cot = ChainOfThought::<QA>::new().with_config(config.clone());
    let out = cot.forward(question("Why is the sky blue?")).await.unwrap();
    assert!(!out.reasoning.is_empty());
    assert!(!out.output.answer.is_empty());
    let count = Predict::<Count>::new().with_config(config);
    let out = count
        .forward(CountInput {
            question: "How many legs has a spider?".into(),
        })
        .await
        .unwrap();
    let _: i64 = out.answer;
    assert_eq!(messages_requests(&server), 2);
}

#[tokio::test]
async fn streams_deliver_text_finish_and_usage() {
    let server = server().await;
    let client = lm(&server);
    let plain = client
        .call(LmRequest::prompt("stream me please"))
        .await
        .unwrap();
    let events: Vec<StreamEvent> = client
        .stream(LmRequest::prompt("stream me please"))
        .await
        .unwrap()
        .map(|e| e.expect("no error item"))
        .collect()
        .await;
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Delta { index: 0, text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, plain.text());
    assert!(events.contains(&StreamEvent::Finish {
        index: 0,
        reason: FinishReason::Stop
    }));
    assert!(
        events.contains(&StreamEvent::Usage(plain.usage)),
        "{events:?}"
    );
    assert_eq!(messages_requests(&server), 2);

    // A typed stream: the field's chunks, then the parsed value.
    let server = server_with(
        vec![Rule::contains(
            "long one",
            "[[ ## answer ## ]]\nThe answer spans many words so it streams in several events.\n\n[[ ## completed ## ]]",
        )],
        vec![],
    )
    .await;
    let qa = Predict::<QA>::new().with_config(CallConfig::new().lm(lm(&server)));
    let stream: FieldStream<QAOutput> = qa.stream(question("the long one"));
    let items: Vec<Result<StreamItem<QAOutput>, StreamError>> = stream.collect().await;
    let chunks: Vec<&str> = items
        .iter()
        .filter_map(|i| match i {
            Ok(StreamItem::Chunk(c)) if !c.delta.is_empty() => Some(c.delta.as_str()),
            _ => None,
        })
        .collect();
    assert!(chunks.len() >= 2, "{items:?}");
    match items.last() {
        Some(Ok(StreamItem::Final(out))) => assert_eq!(
            out.answer,
            "The answer spans many words so it streams in several events."
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn several_completions_are_single_requests_without_n() {
    let server = server().await;
    let lm = lm(&server);
    let mut request = LmRequest::prompt("three please");
    request.n = Some(3);
    request.temperature = Some(0.7);
    // The mock refuses `n` as Anthropic does ("n: Extra inputs are not permitted").
    let response = lm.call(request).await.unwrap();
    assert_eq!(response.choices.len(), 3);
    assert_eq!(messages_requests(&server), 3);
    assert_eq!(response.usage.prompt_tokens, 6);
}

#[tokio::test]
async fn json_mode_sends_the_schema_and_json_object_nothing() {
    let server = server().await;
    let lm = lm(&server);
    let mut request = LmRequest::prompt("give me a person");
    request.response_format = Some(ResponseFormat::JsonSchema {
        json_schema: json!({"name": "person", "strict": true, "schema": {
            "type": "object", "additionalProperties": false, "required": ["name", "age"],
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}}),
    });
    let response = lm.call(request).await.unwrap();
    let value: Value = serde_json::from_str(response.text()).expect("a JSON answer");
    assert!(
        value["name"].is_string() && value["age"].is_i64(),
        "{value}"
    );

    let mut request = LmRequest::prompt("any json");
    request.response_format = Some(ResponseFormat::JsonObject);
    assert!(!lm.call(request).await.unwrap().text().is_empty());

    // The JSONAdapter end to end (structured outputs for an int answer).
    let count = Predict::<Count>::new().with_config(CallConfig::new().lm(lm).adapter(JSONAdapter));
    count
        .forward(CountInput {
            question: "How many?".into(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn native_tool_calls_come_back_as_tool_use_blocks() {
    let server = server_with(
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
    for parallel in [true, false] {
        let predict = Predict::<ToolQA>::new().with_config(
            CallConfig::new().lm(lm(&server)).adapter(
                ChatAdapter::new()
                    .native_function_calling(true)
                    .parallel_tool_calls(parallel),
            ),
        );
        let out = predict
            .forward(ToolQAInput {
                question: "Weather in Paris and Rome?".into(),
                tools: vec![get_weather_tool()],
            })
            .await
            .expect("the call succeeds");
        assert_eq!(out.answer, "Checking both.");
        let calls = out.tool_calls.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].id.as_deref(), Some("toolu_1"));
        assert_eq!(calls[1].args["city"], "Rome");
        let results = out.tool_calls.execute(&[get_weather_tool()]).await;
        assert_eq!(results[0], Ok(json!("sunny, 21°C")));
    }
    // The raw response: the finish reason and the arguments as JSON text.
    let mut request = LmRequest::prompt("Weather in Paris and Rome?");
    request.extra.insert(
        "tools".into(),
        json!([{"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]),
    );
    request.extra.insert(
        "tool_choice".into(),
        json!({"type": "function", "function": {"name": "get_weather"}}),
    );
    let response = lm(&server).call(request).await.unwrap();
    assert_eq!(
        response.choices[0].finish_reason,
        Some(FinishReason::ToolCalls)
    );
    assert_eq!(
        response.choices[0].tool_calls[0].arguments,
        "{\"city\":\"Paris\"}"
    );
}

#[tokio::test]
async fn images_go_out_as_image_blocks_and_audio_is_refused() {
    let server = server().await;
    let vqa = Predict::<VQA>::new().with_config(CallConfig::new().lm(lm(&server)));
    let png = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    // The mock checks the block: a base64 source of an allowed type with data.
    let out = vqa
        .forward(VQAInput {
            image: Image::from_bytes(&png, "image/png").unwrap(),
            question: "What is this?".into(),
        })
        .await
        .unwrap();
    assert!(!out.answer.is_empty());
    let out = vqa
        .forward(VQAInput {
            image: Image::url("https://example.com/cat.png").unwrap(),
            question: "And this?".into(),
        })
        .await
        .unwrap();
    assert!(!out.answer.is_empty());
    assert_eq!(messages_requests(&server), 2);

    // What the Messages API cannot take is refused before any request.
    let lm = lm(&server);
    let bmp = LmRequest::new(vec![Message::user(vec![ContentPart::image_url(
        "data:image/bmp;base64,Qk0=",
    )])]);
    let err = lm.call(bmp).await.unwrap_err();
    assert_eq!(err.kind(), LmErrorKind::UnsupportedFeature);
    assert!(err.to_string().contains("image/bmp"), "{err}");
    let audio = LmRequest::new(vec![Message::user(vec![ContentPart::InputAudio {
        input_audio: InputAudio {
            data: "UklGRg==".into(),
            format: "wav".into(),
        },
    }])]);
    let err = lm.call(audio).await.unwrap_err();
    assert!(matches!(err, LmError::UnsupportedFeature { .. }), "{err}");
    assert!(err.to_string().contains("no audio"), "{err}");
    assert_eq!(messages_requests(&server), 2);
}

/// The error of a call against a server with `fault` on every request.
async fn failure(fault: Fault) -> (LmError, u64) {
    let server = server_with(vec![], vec![(fault, FaultWhen::Always)]).await;
    let err = lm(&server).call(LmRequest::prompt("x")).await.unwrap_err();
    (err, messages_requests(&server))
}

#[tokio::test]
async fn each_error_class_is_typed_and_retried_only_when_transient() {
    // Authentication: no key at all (the mock's 401), and a rejected key.
    let mock = server().await;
    let keyless = LM::builder(MODEL)
        .api_base(mock.api_base())
        .cache(false)
        .build()
        .unwrap();
    let err = keyless.call(LmRequest::prompt("x")).await.unwrap_err();
    assert_eq!(err.kind(), LmErrorKind::Auth);
    assert_eq!(err.provider_code(), Some("authentication_error"));
    assert!(
        err.to_string().contains("x-api-key header is required"),
        "{err}"
    );
    assert_eq!(messages_requests(&mock), 1);

    for (status, kind, code, retried) in [
        (401, LmErrorKind::Auth, "authentication_error", false),
        (402, LmErrorKind::Billing, "billing_error", false),
        (403, LmErrorKind::Auth, "permission_error", false),
        (
            400,
            LmErrorKind::InvalidRequest,
            "invalid_request_error",
            false,
        ),
        // Anthropic's unknown model: 404 `not_found_error` "model: <id>". DSPy 3.4.1 calls it
        // an invalid request (its lm15 client names an unsupported model only when the message
        // says "not found", "unknown", …), and so does dspex.
        (404, LmErrorKind::InvalidRequest, "not_found_error", false),
        (500, LmErrorKind::Server, "api_error", true),
        (529, LmErrorKind::Server, "overloaded_error", true),
    ] {
        let (err, requests) = failure(Fault::Status(status)).await;
        assert_eq!(err.kind(), kind, "HTTP {status}: {err}");
        assert_eq!(err.provider_code(), Some(code), "HTTP {status}");
        assert!(
            matches!(err.root(), LmError::Http { status: s, .. } if *s == status),
            "{err:?}"
        );
        assert_eq!(requests, if retried { 4 } else { 1 }, "HTTP {status}");
        assert_eq!(err.root().is_retryable(), retried, "HTTP {status}");
    }
    let (err, _) = failure(Fault::Status(404)).await;
    assert!(err.to_string().contains("model: claude-mock-4"), "{err}");

    // An invalid request of the mock's own: a field the API does not know.
    let mut request = LmRequest::prompt("x");
    request.extra.insert("frobnicate".into(), json!(1));
    let err = lm(&mock).call(request).await.unwrap_err();
    assert_eq!(err.kind(), LmErrorKind::InvalidRequest);
    assert!(
        err.to_string()
            .contains("frobnicate: Extra inputs are not permitted")
    );

    // Context window: the mock's limit is 200 000 words.
    let long = "word ".repeat(200_001);
    let err = lm(&mock).call(LmRequest::prompt(long)).await.unwrap_err();
    assert_eq!(err.kind(), LmErrorKind::ContextWindowExceeded, "{err}");
    assert!(err.is_context_window_exceeded());
    assert!(err.to_string().contains("prompt is too long"));
}

#[tokio::test]
async fn overloaded_and_rate_limited_answers_are_retried() {
    // 529 twice, then an answer.
    let server = server_with(vec![], vec![(Fault::Status(529), FaultWhen::FirstN(2))]).await;
    let response = lm(&server).call(LmRequest::prompt("busy?")).await.unwrap();
    assert!(!response.text().is_empty());
    assert_eq!(messages_requests(&server), 3);
    assert_eq!(server.stats().faults_of("status_529"), 2);

    // 429 with Retry-After: the wait is honoured (the backoff alone is 10–40 ms).
    let server = server_with(
        vec![],
        vec![(
            Fault::RateLimited {
                retry_after: Duration::from_millis(300),
            },
            FaultWhen::FirstN(1),
        )],
    )
    .await;
    let start = Instant::now();
    lm(&server)
        .call(LmRequest::prompt("slow down"))
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(messages_requests(&server), 2);
    // Always limited: the class and the wait it asked for.
    let (err, _) = failure(Fault::RateLimited {
        retry_after: Duration::from_millis(20),
    })
    .await;
    assert_eq!(err.kind(), LmErrorKind::RateLimit);
    assert_eq!(err.provider_code(), Some("rate_limit_error"));
    assert_eq!(err.root().retry_after(), Some(Duration::from_millis(20)));
}

#[tokio::test]
async fn an_error_event_mid_stream_ends_it_with_its_class() {
    let rule = Rule::contains(
        "long",
        "[[ ## answer ## ]]\nMany words so that the stream has several events before it breaks off.\n\n[[ ## completed ## ]]",
    );
    let server = server_with(
        vec![rule],
        vec![(Fault::StreamError(529), FaultWhen::Always)],
    )
    .await;
    let lm = builder(&server)
        .cache_config(CacheConfig::memory_only())
        .build()
        .unwrap();
    let items: Vec<Result<StreamEvent, LmError>> = lm
        .stream(LmRequest::prompt("the long one"))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(
        matches!(items.first(), Some(Ok(StreamEvent::Delta { .. }))),
        "{items:?}"
    );
    let Some(Err(err)) = items.last() else {
        panic!("the stream ends with an error: {items:?}");
    };
    assert_eq!(err.kind(), LmErrorKind::Server);
    assert_eq!(err.provider_code(), Some("overloaded_error"));
    assert!(matches!(err, LmError::Http { status: 529, .. }), "{err:?}");
    // Not retried (its text was delivered) and not cached.
    assert_eq!(messages_requests(&server), 1);
    server.clear_faults();
    lm.stream(LmRequest::prompt("the long one"))
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(messages_requests(&server), 2);

    // A stream cut short names Anthropic's end marker.
    server.set_faults(vec![(Fault::TruncatedStream, FaultWhen::Always)]);
    let items: Vec<_> = lm
        .stream(LmRequest::prompt("the long one again"))
        .await
        .unwrap()
        .collect()
        .await;
    let Some(Err(err)) = items.last() else {
        panic!("{items:?}");
    };
    assert!(err.to_string().contains("message_stop"), "{err}");
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
            let server = server_with(
                vec![],
                vec![
                    (Fault::Status(401), FaultWhen::Matching("deny".into())),
                    (Fault::StreamError(529), FaultWhen::Matching("break".into())),
                ],
            )
            .await;
            let lm = builder(&server)
                .cache_config(CacheConfig::with_disk_dir(dir.path()))
                .build()
                .unwrap();
            lm.call(LmRequest::prompt("allowed")).await.unwrap();
            lm.call(LmRequest::prompt("allowed")).await.unwrap();
            let streamed: Vec<_> = lm
                .stream(LmRequest::prompt("streamed"))
                .await
                .unwrap()
                .collect()
                .await;
            assert!(streamed.iter().all(Result::is_ok));
            let err = lm.call(LmRequest::prompt("deny this")).await.unwrap_err();
            let broken: Vec<_> = lm
                .stream(LmRequest::prompt("break this"))
                .await
                .unwrap()
                .collect()
                .await;
            let stream_err = broken
                .into_iter()
                .find_map(Result::err)
                .expect("an error item");
            let config_err = LM::builder(MODEL)
                .api_key(KEY)
                .api_base("ftp://nowhere")
                .build()
                .unwrap_err();
            (
                format!("{lm:?} {:?} {}", lm.history(10), lm.inspect_history(10)),
                format!("{err} {err:?} {stream_err} {stream_err:?} {config_err} {config_err:?}"),
            )
        })
    });
    common::assert_key_kept(KEY, &debug, &errors, &log.lock().unwrap(), dir.path());
}

/// LiteLLM's proxy, started from the project venv and killed when dropped.
struct Proxy {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PROXY_KEY: &str = "sk-litellm-4f1c9a7e2b6d8e0f3a5c7b9d1e2f4a6c";

/// Starts `litellm --config` on a free port of 127.0.0.1 with one Anthropic and one OpenAI model
/// answering `mock_response` (no provider is called), and waits until it serves.
fn start_litellm() -> Proxy {
    let python = common::venv_python();
    let litellm = python.with_file_name("litellm");
    assert!(litellm.is_file(), "{} is missing", litellm.display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "model_list:
  - model_name: claude-mock
    litellm_params:
      model: anthropic/claude-mock
      api_key: sk-ant-unused
      mock_response: Hello from LiteLLM
  - model_name: gpt-mock
    litellm_params:
      model: openai/gpt-mock
      api_key: sk-unused
      mock_response: Hello from LiteLLM
general_settings:
  master_key: {PROXY_KEY}
"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("litellm.log")).unwrap();
    let child = std::process::Command::new(&litellm)
        .args(["--config", config.to_str().unwrap(), "--host", "127.0.0.1"])
        .args(["--port", &port.to_string(), "--num_workers", "1"])
        // Offline: the bundled cost map, no telemetry.
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_TELEMETRY", "False")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("litellm starts");
    let mut proxy = Proxy {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = proxy.child.try_wait().unwrap() {
            let log =
                std::fs::read_to_string(proxy._dir.path().join("litellm.log")).unwrap_or_default();
            panic!("litellm exited with {status}:\n{log}");
        }
        if liveliness(port) {
            return proxy;
        }
        assert!(
            Instant::now() < deadline,
            "litellm did not serve within 90 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Whether the proxy answers `GET /health/liveliness` with 200.
fn liveliness(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "GET /health/liveliness HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// dspex's clients against LiteLLM's real proxy: `anthropic/…` at its Anthropic-compatible
/// `/v1/messages` (the base as LiteLLM users give it, without `/v1`), `openai/…` at its chat
/// completions.
#[tokio::test]
async fn litellm_proxy_answers_the_anthropic_and_openai_clients() {
    let proxy = tokio::task::spawn_blocking(start_litellm).await.unwrap();
    let base = format!("http://127.0.0.1:{}", proxy.port);
    let anthropic = LM::builder("anthropic/claude-mock")
        .api_base(&base)
        .api_key(PROXY_KEY)
        .cache(false)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    assert_eq!(anthropic.endpoint(), format!("{base}/v1"));
    let mut request = LmRequest::new(vec![Message::system("Be brief."), Message::user("Hi")]);
    request.stop = vec!["STOP".into()];
    request.temperature = Some(0.0);
    let response = anthropic
        .call(request)
        .await
        .expect("LiteLLM's /v1/messages");
    assert_eq!(response.text(), "Hello from LiteLLM");
    assert_eq!(response.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(response.model, "claude-mock");
    assert!(response.usage.prompt_tokens > 0 && response.usage.completion_tokens > 0);
    // Typed, through the ChatAdapter's prompt (the mock response is not in its format, so the
    // JSONAdapter fallback's parse fails: the answer came back, typed as a parse error).
    let err = Predict::<QA>::new()
        .with_config(CallConfig::new().lm(anthropic.clone()))
        .forward(question("Hi?"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Hello from LiteLLM"), "{err}");

    let openai = LM::builder("openai/gpt-mock")
        .api_base(format!("{base}/v1"))
        .api_key(PROXY_KEY)
        .cache(false)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let response = openai
        .call(LmRequest::prompt("Hi"))
        .await
        .expect("LiteLLM's chat completions");
    assert_eq!(response.text(), "Hello from LiteLLM");

    // A key the proxy does not know is refused, with the key nowhere in the error.
    let stranger = LM::builder("anthropic/claude-mock")
        .api_base(&base)
        .api_key("sk-not-the-proxy-key-55")
        .cache(false)
        .build()
        .unwrap();
    let err = stranger.call(LmRequest::prompt("Hi")).await.unwrap_err();
    assert!(
        !err.to_string().contains("sk-not-the-proxy-key-55"),
        "{err}"
    );
    assert!(matches!(err.root(), LmError::Http { .. }), "{err:?}");
    drop(proxy);
}

#[signature("question -> reasoning: dspy.Reasoning, answer")]
struct Think;

/// Streams carry thinking and tool calls too: `tool_use` blocks and their `input_json_delta`s
/// come back as the final output's calls, and a natively reasoning LM's `thinking_delta`s fill a
/// `dspy.Reasoning` output, as the plain calls do.
#[tokio::test]
async fn streams_carry_thinking_and_tool_calls() {
    use dspex::module::StreamOptions;
    let server = server_with(
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
    let items: Vec<_> = predict
        .stream_with(
            ToolQAInput {
                question: "Weather in Paris and Rome?".into(),
                tools: vec![get_weather_tool()],
            },
            &CallConfig::default(),
            &StreamOptions::new(),
        )
        .collect()
        .await;
    let Some(Ok(StreamItem::Final(out))) = items.last() else {
        panic!("{items:?}")
    };
    assert_eq!(out.answer, "Checking both.");
    let calls = out.tool_calls.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].id.as_deref(), Some("toolu_1"));
    assert_eq!(calls[1].args["city"], "Rome");

    let thinking = builder(&server).native_reasoning(true).build().unwrap();
    let think = Predict::<Think>::new().with_config(CallConfig::new().lm(thinking));
    let items: Vec<_> = think
        .stream_with(
            ThinkInput {
                question: "Think about it.".into(),
            },
            &CallConfig::default(),
            &StreamOptions::new(),
        )
        .collect()
        .await;
    let Some(Ok(StreamItem::Final(out))) = items.last() else {
        panic!("{items:?}")
    };
    assert!(!out.reasoning.is_empty(), "{out:?}");
    assert!(!out.answer.is_empty());
}
