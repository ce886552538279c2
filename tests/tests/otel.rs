//! OpenTelemetry export end to end (feature `otel`): an OTLP receiver in the test — HTTP/protobuf
//! (a small HTTP/1.1 server decoding `ExportTraceServiceRequest` / `ExportMetricsServiceRequest`
//! with prost) and gRPC (opentelemetry-proto's tonic services) — receives what a small program
//! exports: ChainOfThought, a cached repeat of a Predict call, ReAct with a tool call, and an
//! Evaluate, all against the mock LM server. The tests check span names, parent/child links and
//! attributes, the metrics, and that neither the prompt text nor the API key is exported unless
//! content capture is on (the key never is).
//!
//! A bridge pool with real workers runs under the exporter too: its metrics
//! (`dspex.bridge.pool.*`) arrive with sensible values.
//!
//! The receivers get everything by the time the guard is dropped (its shutdown exports what is
//! queued), so nothing waits on a clock. The tests share the global meter provider and the
//! content-capture switch, so they run one at a time.

mod common;

use dspex::bridge::protocol::{LmConfig, Op};
use dspex::bridge::{AffinityMode, BridgeError, Pool, SessionOptions, SessionStatus};
use dspex::lm::{CacheConfig, LM, LmRequest};
use dspex::module::{CallConfig, ChainOfThought, ReAct, Tool};
use dspex::prelude::*;
use dspex::telemetry::otel::{self, OtelConfig, OtelError, OtelGuard, Protocol};
use dspex::testing::{MockLm, MockLmServer, Rule};
use futures_util::StreamExt;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::Instrument;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

const SECRET: &str = "sk-otel-test-secret-0123456789abcdef";
const QUESTION: &str = "Which river runs through Zanzibaria City?";

/// One test at a time: the meter provider and content capture are process-wide.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[signature("question -> answer")]
struct QA;

/// Add two integers.
#[derive(Deserialize, JsonSchema)]
struct Add {
    a: i64,
    b: i64,
}

/// What a receiver got: the decoded requests and every raw body.
#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    raw: Vec<u8>,
}

type Shared = Arc<Mutex<Received>>;

// ---------------------------------------------------------------------------------------------
// The receivers

/// An OTLP/HTTP receiver: `POST /v1/traces` and `POST /v1/metrics` with protobuf bodies, over
/// HTTP/1.1 keep-alive connections. Returns its base URL.
async fn http_receiver(received: Shared) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve_http(stream, received.clone()));
        }
    });
    format!("http://{addr}")
}

async fn serve_http(mut stream: tokio::net::TcpStream, received: Shared) {
    let mut buf = Vec::new();
    loop {
        // Headers.
        let (path, length, head) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(head)) = req.parse(&buf) {
                let length = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .unwrap_or(0usize);
                break (req.path.unwrap_or_default().to_string(), length, head);
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        while buf.len() < head + length {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..head + length).skip(head).collect();
        let response = {
            let mut r = received.lock().unwrap();
            r.raw.extend_from_slice(&body);
            match path.as_str() {
                "/v1/traces" => {
                    r.traces.push(
                        ExportTraceServiceRequest::decode(&body[..]).expect("a trace export"),
                    );
                    ExportTraceServiceResponse::default().encode_to_vec()
                }
                "/v1/metrics" => {
                    r.metrics.push(
                        ExportMetricsServiceRequest::decode(&body[..]).expect("a metrics export"),
                    );
                    ExportMetricsServiceResponse::default().encode_to_vec()
                }
                other => panic!("an export to an unexpected path: {other}"),
            }
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
            response.len()
        );
        if stream.write_all(head.as_bytes()).await.is_err()
            || stream.write_all(&response).await.is_err()
        {
            return;
        }
    }
}

/// The OTLP/gRPC receiver's services.
#[derive(Clone)]
struct Grpc(Shared);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let mut r = self.0.lock().unwrap();
        r.raw.extend_from_slice(&request.encode_to_vec());
        r.traces.push(request);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let mut r = self.0.lock().unwrap();
        r.raw.extend_from_slice(&request.encode_to_vec());
        r.metrics.push(request);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver (tonic). Returns its URL.
async fn grpc_receiver(received: Shared) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = Grpc(received);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(service.clone()))
            .add_service(MetricsServiceServer::new(service))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    format!("http://{addr}")
}

// ---------------------------------------------------------------------------------------------
// The program

async fn mock_lm() -> MockLmServer {
    let step = |thought: &str, tool: &str, args: &str| {
        format!(
            "[[ ## next_thought ## ]]\n{thought}\n\n[[ ## next_tool_name ## ]]\n{tool}\n\n\
             [[ ## next_tool_args ## ]]\n{args}\n\n[[ ## completed ## ]]"
        )
    };
    MockLm::builder()
        .rules([
            // ReAct's extraction, then its second and first steps.
            Rule::contains(
                "starting with the field `[[ ## reasoning ## ]]`, then `[[ ## answer ## ]]`",
                "[[ ## reasoning ## ]]\nIt added them.\n\n[[ ## answer ## ]]\n5\n\n[[ ## completed ## ]]",
            ),
            Rule::contains("[[ ## observation_0 ## ]]", step("Done.", "finish", "{}")),
            Rule::contains(
                "[[ ## trajectory ## ]]",
                step("Add them.", "add", r#"{"a": 2, "b": 3}"#),
            ),
        ])
        .start()
        .await
        .expect("the mock LM starts")
}

fn lm(server: &MockLmServer) -> LM {
    LM::builder("openai/mock-model")
        .api_base(server.api_base())
        .api_key(SECRET)
        .cache_config(CacheConfig::memory_only())
        .build()
        .expect("the LM builds")
}

/// ChainOfThought in an instrumented program; the same Predict call twice (the second a cache hit); ReAct calling `add`;
/// an Evaluate of a Predict over two examples.
async fn program(server: &MockLmServer) {
    let lm = lm(server);
    let config = CallConfig::new().lm(lm.clone());
    let question = QAInput {
        question: QUESTION.into(),
    };
    ChainOfThought::<QA>::new()
        .with_config(config.clone())
        .instrumented("qa")
        .forward(question.clone())
        .await
        .expect("ChainOfThought answers");
    let predict = Predict::<QA>::new().with_config(config.clone());
    for _ in 0..2 {
        predict
            .forward(question.clone())
            .await
            .expect("Predict answers");
    }
    let add = Tool::new("add", |Add { a, b }| async move {
        a.checked_add(b).ok_or("the sum overflows")
    })
    .unwrap();
    let agent = ReAct::<QA>::new([add])
        .unwrap()
        .with_max_iters(3)
        .with_config(config.clone());
    let out = agent
        .forward(QAInput {
            question: "What is 2 + 3?".into(),
        })
        .await
        .expect("ReAct answers");
    assert_eq!(out.trajectory.steps()[0].tool_name, "add");
    let devset: Vec<Example> = ["q1", "q2"]
        .iter()
        .map(|q| {
            Example::new()
                .with("question", *q)
                .with("answer", "x")
                .with_inputs(["question"])
        })
        .collect();
    Evaluate::new(devset, answer_exact_match())
        .num_threads(2)
        .call(&Predict::<QA>::new().with_config(config))
        .await
        .expect("the evaluation runs");
    // A streamed call: its span lasts until the stream ends and gets the response's
    // attributes then.
    let mut stream = lm
        .stream(LmRequest::prompt("Stream a short answer."))
        .instrument(tracing::info_span!("streamed"))
        .await
        .expect("the stream opens");
    while let Some(event) = stream.next().await {
        event.expect("a stream event");
    }
    // A call of a routed module, counted by the route that served it.
    let mut routed = dspex::bridge::Router::new()
        .route("Predict", "question -> answer")
        .await
        .expect("Predict routes natively");
    if let dspex::bridge::RoutedProgram::Native(m) = routed.program_mut() {
        m.set_config(CallConfig::new().lm(lm.clone()));
    }
    routed
        .forward(Example::new().with("question", QUESTION))
        .await
        .expect("the routed Predict answers");
}

/// Runs the program with `layer`'s subscriber in scope (it follows the program's futures onto
/// whichever worker polls them), then drops the guard on a blocking thread so that its final
/// export does not hold a runtime worker the receivers need.
async fn run_exported<L>(layer: L, guard: OtelGuard, server: &MockLmServer)
where
    L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    let subscriber = tracing_subscriber::registry().with(layer);
    program(server).with_subscriber(subscriber).await;
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Reading what arrived

fn spans(received: &Received) -> Vec<Span> {
    received
        .traces
        .iter()
        .flat_map(|t| &t.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect()
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn str_attr<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attr(span, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn int_attr(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

fn bool_attr(span: &Span, key: &str) -> Option<bool> {
    match attr(span, key)? {
        any_value::Value::BoolValue(b) => Some(*b),
        _ => None,
    }
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn parent<'a>(spans: &'a [Span], child: &Span) -> Option<&'a Span> {
    spans
        .iter()
        .find(|s| !child.parent_span_id.is_empty() && s.span_id == child.parent_span_id)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every check on the exported spans and metrics of [`program`], content capture off.
fn check_export(received: &Received, server: &MockLmServer) {
    let spans = spans(received);
    let names: std::collections::BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for name in [
        "program qa",
        "chat mock-model",
        "module ChainOfThought",
        "module Predict",
        "module ReAct",
        "adapter.format",
        "adapter.parse",
        "execute_tool add",
        "execute_tool finish",
        "evaluate",
        "evaluate.example",
    ] {
        assert!(names.contains(name), "no span {name:?} among {names:?}");
    }

    // The instrumented program → ChainOfThought → Predict → format, LM call, parse.
    let program = named(&spans, "program qa")[0];
    assert_eq!(str_attr(program, "dspex.program.name"), Some("qa"));
    assert!(
        program.parent_span_id.is_empty(),
        "the program's span is a root"
    );
    let cot = named(&spans, "module ChainOfThought")[0];
    assert_eq!(cot.parent_span_id, program.span_id);
    assert_eq!(str_attr(cot, "dspex.module.name"), Some("ChainOfThought"));
    let inner = spans
        .iter()
        .find(|s| s.name == "module Predict" && s.parent_span_id == cot.span_id)
        .expect("the ChainOfThought's Predict is its child");
    let children: Vec<&str> = spans
        .iter()
        .filter(|s| s.parent_span_id == inner.span_id)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(children.len(), 3, "{children:?}");
    for name in ["adapter.format", "chat mock-model", "adapter.parse"] {
        assert!(
            children.contains(&name),
            "{name} under Predict: {children:?}"
        );
    }
    assert_eq!(cot.trace_id, inner.trace_id);

    // The streamed call's span, under the test's own span, has the response's attributes.
    let streamed = named(&spans, "streamed")[0];
    let stream_call = spans
        .iter()
        .find(|s| s.parent_span_id == streamed.span_id)
        .expect("the streamed call's span");
    assert_eq!(stream_call.name, "chat mock-model");
    assert!(str_attr(stream_call, "gen_ai.response.model").is_some());
    assert!(int_attr(stream_call, "gen_ai.usage.output_tokens").is_some());
    assert_eq!(bool_attr(stream_call, "dspex.cache.hit"), Some(false));

    // The LM calls' attributes.
    let calls = named(&spans, "chat mock-model");
    let (host, port) = (server.addr().ip().to_string(), server.addr().port());
    for call in &calls {
        assert_eq!(str_attr(call, "gen_ai.operation.name"), Some("chat"));
        assert_eq!(str_attr(call, "gen_ai.provider.name"), Some("openai"));
        assert_eq!(str_attr(call, "gen_ai.request.model"), Some("mock-model"));
        assert_eq!(str_attr(call, "server.address"), Some(host.as_str()));
        assert_eq!(int_attr(call, "server.port"), Some(i64::from(port)));
        assert_eq!(
            str_attr(call, "dspex.lm.endpoint"),
            Some(server.api_base().as_str())
        );
        assert_eq!(int_attr(call, "dspex.lm.retries"), Some(0));
        assert!(str_attr(call, "gen_ai.response.model").is_some());
        assert!(bool_attr(call, "dspex.cache.hit").is_some());
        assert!(int_attr(call, "gen_ai.usage.input_tokens").is_some());
        assert!(int_attr(call, "gen_ai.usage.output_tokens").is_some());
        assert_eq!(call.kind, 3, "an LM call is a CLIENT span");
        let parent = parent(&spans, call).expect("an LM call has a parent");
        if call.span_id != stream_call.span_id {
            assert_eq!(parent.name, "module Predict");
        }
    }
    let misses: Vec<_> = calls
        .iter()
        .filter(|c| bool_attr(c, "dspex.cache.hit") == Some(false))
        .collect();
    assert!(!misses.is_empty());
    assert!(
        misses
            .iter()
            .all(|c| int_attr(c, "gen_ai.usage.input_tokens").unwrap_or(0) > 0)
    );
    assert!(
        calls
            .iter()
            .any(|c| bool_attr(c, "dspex.cache.hit") == Some(true)),
        "the repeated Predict call was a cache hit"
    );

    // ReAct → its tool call.
    let tool = named(&spans, "execute_tool add")[0];
    assert_eq!(str_attr(tool, "gen_ai.tool.name"), Some("add"));
    assert_eq!(
        str_attr(tool, "gen_ai.operation.name"),
        Some("execute_tool")
    );
    assert_eq!(
        parent(&spans, tool).map(|p| p.name.as_str()),
        Some("module ReAct")
    );
    assert!(str_attr(tool, "gen_ai.tool.call.arguments").is_none());

    // Evaluate → its examples → the program's module.
    let evaluate = named(&spans, "evaluate")[0];
    let examples = named(&spans, "evaluate.example");
    assert_eq!(examples.len(), 2);
    assert!(
        examples
            .iter()
            .all(|e| e.parent_span_id == evaluate.span_id)
    );
    assert_eq!(int_attr(evaluate, "dspex.evaluate.examples"), Some(2));
    assert!(
        spans.iter().any(|s| s.name == "module Predict"
            && examples.iter().any(|e| e.span_id == s.parent_span_id))
    );

    // Metrics.
    let metrics: HashMap<String, &opentelemetry_proto::tonic::metrics::v1::Metric> = received
        .metrics
        .iter()
        .flat_map(|m| &m.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| (m.name.clone(), m))
        .collect();
    for name in [
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "dspex.lm.cache.hits",
        "dspex.lm.cache.misses",
        "dspex.lm.breaker.state",
        "dspex.lm.limiter.wait",
    ] {
        assert!(
            metrics.contains_key(name),
            "no metric {name}: {:?}",
            metrics.keys()
        );
    }
    let duration = metrics["gen_ai.client.operation.duration"];
    assert_eq!(duration.unit, "s");
    let Some(metric::Data::Histogram(histogram)) = &duration.data else {
        panic!("the operation duration is a histogram");
    };
    let count: u64 = histogram.data_points.iter().map(|p| p.count).sum();
    assert!(count > 0);
    let Some(metric::Data::Histogram(tokens)) = &metrics["gen_ai.client.token.usage"].data else {
        panic!("the token usage is a histogram");
    };
    let types: std::collections::BTreeSet<String> = tokens
        .data_points
        .iter()
        .flat_map(|p| &p.attributes)
        .filter(|kv| kv.key == "gen_ai.token.type")
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(types, ["input".to_string(), "output".to_string()].into());
    let Some(metric::Data::Sum(routes)) = &metrics
        .get("dspex.bridge.route.calls")
        .unwrap_or_else(|| panic!("no route metric: {:?}", metrics.keys()))
        .data
    else {
        panic!("the route calls are a sum");
    };
    let native: Vec<_> = routes
        .data_points
        .iter()
        .filter(|p| {
            p.attributes.iter().any(|kv| {
                kv.key == "dspex.route"
                    && kv.value.as_ref().and_then(|v| v.value.as_ref())
                        == Some(&any_value::Value::StringValue("native".into()))
            })
        })
        .collect();
    assert_eq!(native.len(), 1, "{routes:?}");

    // No key, and no prompt text, anywhere in what was exported.
    assert!(!contains(&received.raw, SECRET), "the API key was exported");
    assert!(
        !contains(&received.raw, QUESTION),
        "the prompt text was exported"
    );
}

// ---------------------------------------------------------------------------------------------
// The tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_arrive_over_http_protobuf_without_content_or_key() {
    let _serial = SERIAL.lock().await;
    let received = Shared::default();
    let endpoint = http_receiver(received.clone()).await;
    let server = mock_lm().await;
    let (layer, guard) = otel::layer(
        OtelConfig::new()
            .endpoint(endpoint)
            .protocol(Protocol::HttpProtobuf)
            .service_name("otel-http-test"),
    )
    .expect("the exporters start");
    run_exported(layer, guard, &server).await;
    let received = received.lock().unwrap();
    check_export(&received, &server);
    let service = received.traces[0].resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| kv.value.clone());
    assert_eq!(
        service.and_then(|v| v.value),
        Some(any_value::Value::StringValue("otel-http-test".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_arrive_over_grpc() {
    let _serial = SERIAL.lock().await;
    let received = Shared::default();
    let endpoint = grpc_receiver(received.clone()).await;
    let server = mock_lm().await;
    let (layer, guard) = otel::layer(
        OtelConfig::new()
            .endpoint(endpoint)
            .protocol(Protocol::Grpc)
            .service_name("otel-grpc-test"),
    )
    .expect("the exporters start");
    run_exported(layer, guard, &server).await;
    check_export(&received.lock().unwrap(), &server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_content_capture_the_prompt_is_exported_but_never_the_key() {
    let _serial = SERIAL.lock().await;
    let received = Shared::default();
    let endpoint = http_receiver(received.clone()).await;
    let server = mock_lm().await;
    let (layer, guard) = otel::layer(
        OtelConfig::new()
            .endpoint(endpoint)
            .protocol(Protocol::HttpProtobuf)
            .capture_content(true),
    )
    .expect("the exporters start");
    assert!(dspex::telemetry::capture_content());
    run_exported(layer, guard, &server).await;
    assert!(
        !dspex::telemetry::capture_content(),
        "the guard turned capture off"
    );
    let received = received.lock().unwrap();
    let spans = spans(&received);
    let call = named(&spans, "chat mock-model")[0];
    let input = str_attr(call, "gen_ai.input.messages").expect("the messages are captured");
    assert!(input.contains(QUESTION), "{input}");
    assert!(str_attr(call, "gen_ai.output.messages").is_some());
    let tool = named(&spans, "execute_tool add")[0];
    assert_eq!(
        str_attr(tool, "gen_ai.tool.call.arguments"),
        Some(r#"{"a":2,"b":3}"#)
    );
    assert_eq!(str_attr(tool, "gen_ai.tool.call.result"), Some("5"));
    assert!(contains(&received.raw, QUESTION));
    assert!(!contains(&received.raw, SECRET), "the API key was exported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_fails_no_call() {
    let _serial = SERIAL.lock().await;
    // A port nobody listens on: bound, then closed.
    let endpoint = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let server = mock_lm().await;
    let (layer, guard) = otel::layer(
        OtelConfig::new()
            .endpoint(endpoint)
            .protocol(Protocol::HttpProtobuf)
            .export_timeout(std::time::Duration::from_secs(2)),
    )
    .expect("the exporters start");
    // `program` asserts every call succeeds.
    run_exported(layer, guard, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_installs_the_global_subscriber_once() {
    let _serial = SERIAL.lock().await;
    let received = Shared::default();
    let endpoint = http_receiver(received.clone()).await;
    let guard = otel::init(
        OtelConfig::new()
            .endpoint(endpoint)
            .protocol(Protocol::HttpProtobuf),
    )
    .expect("the first init installs the subscriber");
    let again = otel::init(OtelConfig::new().endpoint("http://127.0.0.1:9"));
    assert!(matches!(again, Err(OtelError::SubscriberAlreadySet(_))));
    // Spans made anywhere now go through the global subscriber.
    std::thread::spawn(|| {
        let _span = tracing::info_span!("global.check", answer = 42i64).entered();
    })
    .join()
    .unwrap();
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();
    let received = received.lock().unwrap();
    let spans = spans(&received);
    let span = named(&spans, "global.check")
        .pop()
        .expect("the span made on another thread arrived");
    assert_eq!(int_attr(span, "answer"), Some(42));
}

// ---------------------------------------------------------------------------------------------
// The bridge pool's metrics

/// The metrics that arrived, by name (the last export of each).
fn metrics_by_name(
    received: &Received,
) -> HashMap<String, opentelemetry_proto::tonic::metrics::v1::Metric> {
    received
        .metrics
        .iter()
        .flat_map(|m| &m.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| (m.name.clone(), m.clone()))
        .collect()
}

fn string_attr(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

fn number(point: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> f64 {
    match point.value {
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        Some(number_data_point::Value::AsDouble(v)) => v,
        None => f64::NAN,
    }
}

/// A sum's (or gauge's) points: `(attribute `key`'s value, number)`.
fn points(
    metric: &opentelemetry_proto::tonic::metrics::v1::Metric,
    key: &str,
) -> Vec<(Option<String>, f64)> {
    let points = match &metric.data {
        Some(metric::Data::Sum(sum)) => &sum.data_points,
        Some(metric::Data::Gauge(gauge)) => &gauge.data_points,
        other => panic!("{} is not a sum or a gauge: {other:?}", metric.name),
    };
    points
        .iter()
        .map(|p| (string_attr(&p.attributes, key), number(p)))
        .collect()
}

/// A histogram's total count by attribute `key`'s value.
fn histogram_counts(
    metric: &opentelemetry_proto::tonic::metrics::v1::Metric,
    key: &str,
) -> HashMap<Option<String>, u64> {
    let Some(metric::Data::Histogram(histogram)) = &metric.data else {
        panic!("{} is not a histogram", metric.name);
    };
    let mut counts = HashMap::new();
    for p in &histogram.data_points {
        *counts.entry(string_attr(&p.attributes, key)).or_insert(0) += p.count;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_pools_metrics_arrive() {
    let _serial = SERIAL.lock().await;
    let received = Shared::default();
    let endpoint = http_receiver(received.clone()).await;
    let server = MockLm::builder().start().await.expect("the mock LM starts");
    // The metrics alone: the layer (spans) is not installed.
    let (_layer, guard) = otel::layer::<tracing_subscriber::Registry>(
        OtelConfig::new()
            .endpoint(endpoint)
            .protocol(Protocol::HttpProtobuf),
    )
    .expect("the exporters start");
    let pool = Pool::builder()
        .python(common::venv_python())
        .workers(2)
        .start_timeout(std::time::Duration::from_secs(60))
        .call_timeout(std::time::Duration::from_secs(60))
        .init(Op::Configure {
            lm: LmConfig::bridge("openai/mock"),
            adapter: None,
        })
        .lm(Arc::new(lm(&server)))
        .build()
        .await
        .expect("the pool starts");
    // Kept until the end: a session's last handle going would end it.
    let sessions = common::bridge::within(180, async {
        let question = serde_json::json!({"question": QUESTION})
            .as_object()
            .unwrap()
            .clone();
        // Three sessions: one closed, one left open, one that expires.
        let closed = pool.session(AffinityMode::StrictQueue);
        let open = pool.session(AffinityMode::StrictQueue);
        for session in [&closed, &open] {
            let qa = session
                .create("Predict", "question -> answer", Default::default())
                .await
                .expect("create");
            session.call(&qa, question.clone()).await.expect("call");
        }
        let expiring = pool
            .session_with(SessionOptions::new().idle_ttl(std::time::Duration::from_millis(100)));
        {
            let session = &expiring;
            let qa = session
                .create("Predict", "question -> answer", Default::default())
                .await
                .expect("create");
            session.call(&qa, question.clone()).await.expect("call");
        }
        // A Python error: an object the worker does not have.
        let err = open
            .call("o404", question.clone())
            .await
            .expect_err("an unknown object");
        assert!(matches!(err, BridgeError::Remote { .. }), "{err:?}");
        closed.close().await.expect("close");
        while expiring.status() == SessionStatus::Open {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // A worker SIGKILLed: the pool starts a replacement.
        let victim = pool.worker_pids()[0];
        let status = std::process::Command::new("kill")
            .args(["-KILL", &victim.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        loop {
            let stats = pool.stats();
            if stats.restarts >= 1 && stats.ready == 2 && !pool.worker_pids().contains(&victim) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        pool.ping().await.expect("the pool answers");
        let stats = pool.stats();
        assert_eq!(stats.live_sessions, 1);
        assert_eq!(stats.sessions_expired, 1);
        assert_eq!(stats.sessions_closed, 1);
        (closed, open, expiring)
    })
    .await;
    pool.shutdown().await;
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .unwrap();
    drop(sessions);

    let received = received.lock().unwrap();
    let metrics = metrics_by_name(&received);
    let get = |name: &str| {
        metrics
            .get(name)
            .unwrap_or_else(|| panic!("no metric {name}: {:?}", metrics.keys()))
    };
    // Call durations by op, in seconds.
    let duration = get("dspex.bridge.pool.call.duration");
    assert_eq!(duration.unit, "s");
    let by_op = histogram_counts(duration, "dspex.bridge.op");
    assert_eq!(by_op.get(&Some("create".into())), Some(&3), "{by_op:?}");
    assert_eq!(by_op.get(&Some("call".into())), Some(&4), "{by_op:?}");
    assert_eq!(
        by_op.get(&Some("close_session".into())),
        Some(&2),
        "{by_op:?}"
    );
    assert!(by_op.get(&Some("ping".into())).is_some_and(|n| *n >= 1));
    // One checkout per attempt at least.
    let waits = histogram_counts(get("dspex.bridge.pool.checkout.wait"), "none");
    assert!(waits[&None] >= 10, "{waits:?}");
    // The Python error, by kind and op.
    let errors = get("dspex.bridge.pool.call.errors");
    let Some(metric::Data::Sum(sum)) = &errors.data else {
        panic!("the call errors are a sum");
    };
    assert!(sum.is_monotonic);
    let remote: Vec<_> = sum
        .data_points
        .iter()
        .filter(|p| string_attr(&p.attributes, "error.type").as_deref() == Some("Remote"))
        .collect();
    assert_eq!(remote.len(), 1);
    assert_eq!(number(remote[0]), 1.0);
    assert_eq!(
        string_attr(&remote[0].attributes, "dspex.bridge.op").as_deref(),
        Some("call")
    );
    // The replacement of the killed worker.
    let restarts: f64 = points(get("dspex.bridge.pool.restarts"), "none")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert!(restarts >= 1.0, "{restarts}");
    // Sessions: three opened, one closed, one expired; the open one still counts (the pool
    // shut down without closing it).
    let live = get("dspex.bridge.pool.sessions.live");
    let Some(metric::Data::Sum(live_sum)) = &live.data else {
        panic!("the live sessions are a sum");
    };
    assert!(!live_sum.is_monotonic, "an up-down counter");
    assert_eq!(points(live, "none"), vec![(None, 1.0)]);
    let mut ended = points(
        get("dspex.bridge.pool.sessions.ended"),
        "dspex.bridge.session.end",
    );
    ended.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        ended,
        vec![(Some("closed".into()), 1.0), (Some("expired".into()), 1.0)]
    );
    // The gauges.
    let utilization = points(get("dspex.bridge.pool.utilization"), "none");
    assert!(
        utilization.iter().all(|(_, v)| (0.0..=1.0).contains(v)),
        "{utilization:?}"
    );
    let queue = points(get("dspex.bridge.pool.queue.depth"), "none");
    assert!(queue.iter().all(|(_, v)| *v >= 0.0), "{queue:?}");
    assert!(!points(get("dspex.bridge.pool.busy"), "none").is_empty());
    assert!(!contains(&received.raw, SECRET), "the API key was exported");
}
