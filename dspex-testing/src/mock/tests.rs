//! Tests of the running server over real HTTP (reqwest on loopback).

use super::*;
use serde_json::{Value, json};
use std::time::Instant;

use crate::test_client as client;

fn fixture_messages(name: &str) -> Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/dspy")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("missing DSPy fixture {}: {e}", path.display()));
    let fx: Value = serde_json::from_str(&text).expect("fixture JSON");
    fx["expected_messages"].clone()
}

async fn post(server: &MockLmServer, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", server.url()))
        .json(body)
        .send()
        .await
        .expect("response")
}

async fn chat(server: &MockLmServer, body: &Value) -> (u16, Value) {
    let resp = post(server, "/v1/chat/completions", body).await;
    let status = resp.status().as_u16();
    let json = resp.json::<Value>().await.expect("JSON body");
    (status, json)
}

fn hello(text: &str) -> Value {
    json!({"model": "openai/mock", "messages": [{"role": "user", "content": text}]})
}

fn content(resp: &Value, i: usize) -> &str {
    resp["choices"][i]["message"]["content"]
        .as_str()
        .expect("content")
}

/// The `data:` payloads of an SSE body.
fn sse_data(body: &str) -> Vec<&str> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect()
}

#[tokio::test]
async fn chat_answers_a_dspy_chat_prompt_in_openai_shape() {
    let server = MockLm::start().await.expect("start");
    let body = json!({
        "model": "openai/gpt-4o-mini",
        "messages": fixture_messages("format_chat_11_sentiment.json"),
        "temperature": 0.0,
    });
    let (status, resp) = chat(&server, &body).await;
    assert_eq!(status, 200);
    assert_eq!(resp["object"], "chat.completion");
    assert_eq!(resp["model"], "openai/gpt-4o-mini");
    assert!(resp["id"].as_str().expect("id").starts_with("chatcmpl-"));
    assert!(resp["created"].is_u64());
    assert_eq!(resp["choices"][0]["index"], 0);
    assert_eq!(resp["choices"][0]["message"]["role"], "assistant");
    assert_eq!(resp["choices"][0]["finish_reason"], "stop");
    let text = content(&resp, 0);
    assert!(text.starts_with("[[ ## sentiment ## ]]\n"), "{text}");
    assert!(text.ends_with("[[ ## completed ## ]]"), "{text}");
    let sentiment = text.lines().nth(1).expect("value");
    assert!(
        ["positive", "negative", "neutral"].contains(&sentiment),
        "{sentiment}"
    );
    let confidence: f64 = text.lines().nth(4).expect("value").parse().expect("float");
    assert!((0.0..=1.0).contains(&confidence));
    let usage = &resp["usage"];
    let (p, c) = (
        usage["prompt_tokens"].as_u64(),
        usage["completion_tokens"].as_u64(),
    );
    assert_eq!(c, Some(text.split_whitespace().count() as u64));
    assert!(p.expect("prompt tokens") > 50);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(p.unwrap_or(0) + c.unwrap_or(0))
    );
    // Deterministic, and the bare path works too.
    let again = post(&server, "/chat/completions", &body).await;
    let again: Value = again.json().await.expect("JSON");
    assert_eq!(content(&again, 0), text);
}

#[tokio::test]
async fn json_adapter_prompts_and_json_response_formats_get_json() {
    let server = MockLm::start().await.expect("start");
    let body = json!({"model": "m", "messages": fixture_messages("format_json_15_extract.json")});
    let (_, resp) = chat(&server, &body).await;
    let object: Value = serde_json::from_str(content(&resp, 0)).expect("JSON content");
    assert_eq!(object["entities"].as_array().map(Vec::len), Some(2));
    assert!(object["counts"].is_object());
    assert!(object["is_fiction"].is_boolean());

    let body = json!({
        "model": "m",
        "messages": fixture_messages("format_chat_00_qa.json"),
        "response_format": {"type": "json_object"},
    });
    let (_, resp) = chat(&server, &body).await;
    let object: Value = serde_json::from_str(content(&resp, 0)).expect("JSON content");
    assert!(object["answer"].is_string());

    let body = json!({
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "X", "strict": true, "schema": {
            "type": "object",
            "properties": {"score": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["score", "tags"], "additionalProperties": false
        }}},
    });
    let (_, resp) = chat(&server, &body).await;
    let object: Value = serde_json::from_str(content(&resp, 0)).expect("JSON content");
    assert!(object["score"].is_u64());
    assert_eq!(object["tags"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn n_choices_are_identical_at_temperature_zero_and_distinct_above() {
    let server = MockLm::start().await.expect("start");
    let mut body = hello("pick a number");
    body["n"] = json!(3);
    let (_, resp) = chat(&server, &body).await;
    let choices = resp["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 3);
    let texts: Vec<&str> = (0..3).map(|i| content(&resp, i)).collect();
    assert!(texts.iter().all(|t| *t == texts[0]));
    assert_eq!(choices[2]["index"], 2);

    body["temperature"] = json!(0.7);
    let (_, resp) = chat(&server, &body).await;
    let texts: Vec<&str> = (0..3).map(|i| content(&resp, i)).collect();
    assert_ne!(texts[0], texts[1]);
    assert_ne!(texts[1], texts[2]);
    assert!(texts.iter().all(|t| t.starts_with("mock completion ")));
}

#[tokio::test]
async fn streaming_sends_chunks_usage_and_done() {
    let server = MockLm::start().await.expect("start");
    let messages = fixture_messages("format_chat_cot_qa.json");
    let plain = json!({"model": "m", "messages": messages});
    let (_, whole) = chat(&server, &plain).await;
    let expected = content(&whole, 0).to_owned();

    let body = json!({"model": "m", "messages": messages, "stream": true,
                      "stream_options": {"include_usage": true}});
    let resp = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().ok(),
        Some("text/event-stream")
    );
    let text = resp.text().await.expect("body");
    let data = sse_data(&text);
    assert_eq!(data.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk JSON"))
        .collect();
    assert!(chunks.len() >= 4, "{} chunks", chunks.len());
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, expected);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"].as_array().map(Vec::len), Some(0));
    assert!(usage["usage"]["total_tokens"].as_u64().expect("usage") > 0);

    // Without include_usage there is no usage chunk.
    let body = json!({"model": "m", "messages": messages, "stream": true});
    let text = post(&server, "/v1/chat/completions", &body)
        .await
        .text()
        .await
        .expect("body");
    assert!(!text.contains("\"usage\""));
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn max_tokens_truncates_with_finish_reason_length() {
    let server = MockLm::start().await.expect("start");
    let mut body = json!({"model": "m", "messages": fixture_messages("format_chat_cot_qa.json")});
    body["max_tokens"] = json!(3);
    let (_, resp) = chat(&server, &body).await;
    assert_eq!(resp["choices"][0]["finish_reason"], "length");
    assert_eq!(content(&resp, 0).split_whitespace().count(), 3);
    assert_eq!(resp["usage"]["completion_tokens"], 3);

    let mut body = hello("short");
    body["max_completion_tokens"] = json!(50);
    let (_, resp) = chat(&server, &body).await;
    assert_eq!(resp["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn text_completions_accept_a_string_or_a_list() {
    let server = MockLm::start().await.expect("start");
    let resp = post(
        &server,
        "/v1/completions",
        &json!({"model": "m", "prompt": "once upon a time"}),
    )
    .await;
    let resp: Value = resp.json().await.expect("JSON");
    assert_eq!(resp["object"], "text_completion");
    assert!(
        resp["choices"][0]["text"]
            .as_str()
            .expect("text")
            .starts_with("mock completion ")
    );
    assert_eq!(resp["usage"]["prompt_tokens"], 4);

    let resp = post(
        &server,
        "/completions",
        &json!({"model": "m", "prompt": ["a", "b"], "n": 2}),
    )
    .await;
    let resp: Value = resp.json().await.expect("JSON");
    let choices = resp["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 4);
    assert_eq!(choices[3]["index"], 3);
    assert_ne!(choices[0]["text"], choices[2]["text"]);

    let text = post(
        &server,
        "/v1/completions",
        &json!({"model": "m", "prompt": "x y z", "stream": true}),
    )
    .await
    .text()
    .await
    .expect("body");
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert!(text.contains("text_completion"));
}

#[tokio::test]
async fn embeddings_are_deterministic_unit_vectors() {
    let server = MockLm::start().await.expect("start");
    let get = |input: Value, extra: Value| {
        let server = &server;
        async move {
            let mut body = json!({"model": "text-embedding-3-small", "input": input});
            if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
                b.extend(e.clone());
            }
            let resp = post(server, "/v1/embeddings", &body).await;
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.expect("JSON")
        }
    };
    let vector = |resp: &Value, i: usize| -> Vec<f64> {
        resp["data"][i]["embedding"]
            .as_array()
            .expect("floats")
            .iter()
            .map(|x| x.as_f64().expect("float"))
            .collect()
    };
    let one = get(json!("hello world"), json!({})).await;
    assert_eq!(one["object"], "list");
    assert_eq!(one["model"], "text-embedding-3-small");
    assert_eq!(one["data"][0]["object"], "embedding");
    let v = vector(&one, 0);
    assert_eq!(v.len(), 64);
    let norm: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "{norm}");

    let many = get(json!(["hello world", "goodbye"]), json!({})).await;
    assert_eq!(vector(&many, 0), v);
    assert_ne!(vector(&many, 1), v);
    assert_eq!(many["data"][1]["index"], 1);

    let small = get(json!("hello world"), json!({"dimensions": 8})).await;
    assert_eq!(vector(&small, 0).len(), 8);

    let b64 = get(json!("hello world"), json!({"encoding_format": "base64"})).await;
    let encoded = b64["data"][0]["embedding"].as_str().expect("base64 text");
    // 64 little-endian f32s = 256 bytes = 344 base64 characters.
    assert_eq!(encoded.len(), 344);

    let custom = MockLm::builder()
        .embedding_dim(16)
        .start()
        .await
        .expect("start");
    let resp = post(&custom, "/embeddings", &json!({"input": "x"})).await;
    let resp: Value = resp.json().await.expect("JSON");
    assert_eq!(vector(&resp, 0).len(), 16);
}

#[tokio::test]
async fn models_health_and_stats_endpoints() {
    let server = MockLm::start().await.expect("start");
    let http = client();
    let models: Value = http
        .get(format!("{}/models", server.api_base()))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("JSON");
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["object"], "model");
    let health: Value = http
        .get(format!("{}/health", server.url()))
        .send()
        .await
        .expect("health")
        .json()
        .await
        .expect("JSON");
    assert_eq!(health["status"], "ok");
    chat(&server, &hello("a")).await;
    let stats: MockStats = http
        .get(format!("{}/stats", server.url()))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("JSON");
    assert_eq!(stats, server.stats());
    assert_eq!(stats.requests_to("/v1/chat/completions"), 1);
    assert_eq!(stats.requests_to("/v1/models"), 1);
    assert_eq!(stats.total, 2);
}

#[tokio::test]
async fn rules_answer_verbatim_in_order_and_in_sequence() {
    let server = MockLm::builder()
        .rule(Rule::exact("ping", "pong"))
        .rule(Rule::contains(
            "weather",
            Completion::sequence(["rain", "sun"]),
        ))
        .rule(Rule::regex(r"^item \d+$", "an item").expect("regex"))
        .start()
        .await
        .expect("start");
    let (_, resp) = chat(&server, &hello("ping")).await;
    assert_eq!(content(&resp, 0), "pong");
    let (_, resp) = chat(&server, &hello("ping!")).await;
    assert!(content(&resp, 0).starts_with("mock completion"));
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (_, resp) = chat(&server, &hello("the weather today")).await;
        seen.push(content(&resp, 0).to_owned());
    }
    assert_eq!(seen, ["rain", "sun", "sun"]);
    let (_, resp) = chat(&server, &hello("item 42")).await;
    assert_eq!(content(&resp, 0), "an item");
    assert!(Rule::regex("(", "x").is_err());
}

#[tokio::test]
async fn conversation_rules_see_every_message() {
    let server = MockLm::builder()
        .rule(
            Rule::conversation_regex(r"(?s)\nassistant:\n.*\nuser:\nquestion\z", "with demos")
                .expect("regex"),
        )
        .rule(Rule::conversation_regex(r"(?s)\Asystem:\nBe terse\.", "terse").expect("regex"))
        .start()
        .await
        .expect("start");
    let with_demo = json!({"model": "openai/mock", "messages": [
        {"role": "user", "content": "demo question"},
        {"role": "assistant", "content": "demo answer"},
        {"role": "user", "content": "question"},
    ]});
    let (_, resp) = chat(&server, &with_demo).await;
    assert_eq!(content(&resp, 0), "with demos");
    let (_, resp) = chat(&server, &hello("question")).await;
    assert!(content(&resp, 0).starts_with("mock completion"));
    let instructed = json!({"model": "openai/mock", "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "question"},
    ]});
    let (_, resp) = chat(&server, &instructed).await;
    assert_eq!(content(&resp, 0), "terse");
    let rules = Rule::parse_json_lines(r#"{"conversation": "assistant:", "completion": "x"}"#)
        .expect("a conversation rule parses");
    assert_eq!(rules.len(), 1);
}

#[test]
fn rules_files_parse_and_report_bad_lines() {
    let rules = Rule::parse_json_lines(
        "{\"match\": \"^hi\", \"completion\": \"hello\"}\n\n# comment\n{\"exact\": \"a\", \"completion\": [\"b\", \"c\"]}\n",
    )
    .expect("rules");
    assert_eq!(rules.len(), 2);
    let err = Rule::parse_json_lines("{\"match\": \"(\", \"completion\": \"x\"}").unwrap_err();
    assert!(
        matches!(err, MockError::InvalidRule { line: 1, .. }),
        "{err}"
    );
    let err = Rule::parse_json_lines("\n{\"completion\": \"x\"}").unwrap_err();
    assert!(
        matches!(err, MockError::InvalidRule { line: 2, .. }),
        "{err}"
    );
    assert!(Rule::parse_json_lines("nope").is_err());
}

#[tokio::test]
async fn latency_delays_answers() {
    let server = MockLm::builder()
        .latency(Latency::Fixed(Duration::from_millis(150)))
        .start()
        .await
        .expect("start");
    let t = Instant::now();
    let (status, _) = chat(&server, &hello("slow")).await;
    assert_eq!(status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));

    let uniform = Latency::Uniform {
        min: Duration::from_millis(10),
        max: Duration::from_millis(20),
    };
    for k in 0..100 {
        let d = uniform.sample(1, k);
        assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(20));
    }
    assert_eq!(uniform.sample(1, 5), uniform.sample(1, 5));
    let normal = Latency::Normal {
        mean: Duration::from_millis(10),
        std_dev: Duration::from_millis(50),
    };
    let mean = (0..2000)
        .map(|k| normal.sample(3, k).as_secs_f64())
        .sum::<f64>()
        / 2000.0;
    // Clamping at zero lifts the mean above 10 ms; it stays well below 100 ms.
    assert!(mean > 0.01 && mean < 0.1, "{mean}");
}

#[tokio::test]
async fn waves_count_requests_sent_after_answers() {
    let server = MockLm::builder()
        .latency(Latency::Fixed(Duration::from_millis(100)))
        .start()
        .await
        .expect("start");
    assert_eq!(server.stats().waves, 0);
    // Three in a row: each waits for the one before.
    for i in 0..3 {
        chat(&server, &hello(&format!("seq {i}"))).await;
    }
    assert_eq!(server.stats().waves, 3);
    // Eight at once: one wave, whatever their order of arrival.
    let bodies: Vec<Value> = (0..8).map(|i| hello(&format!("par {i}"))).collect();
    futures_util::future::join_all(bodies.iter().map(|b| chat(&server, b))).await;
    assert_eq!(server.stats().waves, 4);
    // A reset starts the count again.
    server.reset_stats();
    assert_eq!(server.stats().waves, 0);
    chat(&server, &hello("after")).await;
    assert_eq!(server.stats().waves, 1);
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn status_and_rate_limit_faults() {
    let server = MockLm::builder()
        .fault(
            Fault::Status(503),
            FaultWhen::matching("^unavailable$").expect("regex"),
        )
        .fault(
            Fault::RateLimited {
                retry_after: Duration::from_millis(200),
            },
            FaultWhen::matching("^slow down$").expect("regex"),
        )
        .start()
        .await
        .expect("start");
    let (status, body) = chat(&server, &hello("unavailable")).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["type"], "server_error");
    assert!(body["error"]["message"].is_string());
    assert!(body["error"].get("code").is_some());

    let resp = post(&server, "/v1/chat/completions", &hello("slow down")).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"].to_str().ok(), Some("0.2"));
    assert_eq!(resp.headers()["retry-after-ms"].to_str().ok(), Some("200"));
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    let (status, _) = chat(&server, &hello("fine")).await;
    assert_eq!(status, 200);
    let stats = server.stats();
    assert_eq!(stats.faults_of("status_503"), 1);
    assert_eq!(stats.faults_of("rate_limited"), 1);
    assert_eq!(stats.total_faults(), 2);
    assert_eq!(stats.requests_to("/v1/chat/completions"), 3);
}

#[tokio::test]
async fn malformed_json_and_empty_choices() {
    let server = MockLm::builder()
        .fault(Fault::MalformedJson, FaultWhen::FirstN(1))
        .fault(Fault::EmptyChoices, FaultWhen::Always)
        .start()
        .await
        .expect("start");
    let resp = post(&server, "/v1/chat/completions", &hello("x")).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    assert!(text.starts_with('{'));

    let (status, body) = chat(&server, &hello("x")).await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"], json!([]));

    // FirstN counts per endpoint: the first embeddings request is malformed too.
    let resp = post(&server, "/v1/embeddings", &json!({"input": "x"})).await;
    assert!(resp.json::<Value>().await.is_err());
    let resp = post(&server, "/v1/embeddings", &json!({"input": "x"})).await;
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["data"], json!([]));
    assert_eq!(server.stats().faults_of("malformed_json"), 2);
    assert_eq!(server.stats().faults_of("empty_choices"), 2);
}

#[tokio::test]
async fn hang_outlasts_a_client_timeout_and_ends_on_shutdown() {
    let server = MockLm::builder()
        .fault(Fault::Hang(Duration::from_secs(30)), FaultWhen::Always)
        .start()
        .await
        .expect("start");
    let err = client()
        .post(format!("{}/chat/completions", server.api_base()))
        .timeout(Duration::from_millis(200))
        .json(&hello("x"))
        .send()
        .await
        .expect_err("the request must time out");
    assert!(err.is_timeout(), "{err}");

    // A hanging request in flight does not hold up shutdown.
    let url = format!("{}/chat/completions", server.api_base());
    let pending = tokio::spawn(async move { client().post(url).json(&hello("y")).send().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    server.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let resp = pending.await.expect("join").expect("an answer");
    assert_eq!(resp.status(), 503);
}

#[tokio::test]
async fn reset_mid_body_is_a_client_error() {
    let server = MockLm::builder()
        .fault(Fault::ResetMidBody, FaultWhen::Always)
        .start()
        .await
        .expect("start");
    let outcome = async {
        let resp = client()
            .post(format!("{}/chat/completions", server.api_base()))
            .json(&hello("x"))
            .send()
            .await?;
        resp.text().await
    }
    .await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert_eq!(server.stats().faults_of("reset_mid_body"), 1);
    // The server keeps serving other connections.
    server.clear_faults();
    let (status, _) = chat(&server, &hello("x")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn reset_mid_body_sends_headers_and_part_of_the_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = MockLm::builder()
        .fault(Fault::ResetMidBody, FaultWhen::Always)
        .start()
        .await
        .expect("start");
    let body = hello("x").to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut tcp = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    // The connection ends (EOF or reset) after part of the body.
    let _ = tcp.read_to_end(&mut received).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let (head, partial) = text.split_once("\r\n\r\n").expect("headers");
    let declared: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    assert!(
        !partial.is_empty() && partial.len() < declared,
        "{} of {declared}",
        partial.len()
    );
}

#[tokio::test]
async fn truncated_stream_lacks_done() {
    let server = MockLm::builder()
        .fault(Fault::TruncatedStream, FaultWhen::Always)
        .start()
        .await
        .expect("start");
    let mut body = json!({"model": "m", "messages": fixture_messages("format_chat_cot_qa.json")});
    body["stream"] = json!(true);
    let text = post(&server, "/v1/chat/completions", &body)
        .await
        .text()
        .await
        .expect("body");
    let data = sse_data(&text);
    assert!(!data.is_empty());
    assert!(!text.contains("[DONE]"));
    assert!(!text.contains("\"finish_reason\":\"stop\""));
    // Non-streaming requests are not affected (and not counted).
    let (status, _) = chat(&server, &hello("x")).await;
    assert_eq!(status, 200);
    assert_eq!(server.stats().faults_of("truncated_stream"), 1);
}

#[tokio::test]
async fn first_n_then_healthy_and_faults_changed_at_run_time() {
    let server = MockLm::builder()
        .fault(Fault::Status(500), FaultWhen::FirstN(2))
        .start()
        .await
        .expect("start");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(chat(&server, &hello("x")).await.0);
    }
    assert_eq!(statuses, [500, 500, 200, 200]);

    server.set_faults(vec![(Fault::Status(503), FaultWhen::Always)]);
    assert_eq!(chat(&server, &hello("x")).await.0, 503);
    server.set_faults(vec![(Fault::Status(502), FaultWhen::EveryNth(2))]);
    let statuses: Vec<u16> = [
        chat(&server, &hello("x")).await.0,
        chat(&server, &hello("x")).await.0,
    ]
    .into();
    assert_eq!(statuses, [200, 502]);
    server.clear_faults();
    assert_eq!(chat(&server, &hello("x")).await.0, 200);

    let stats = server.stats();
    assert_eq!(stats.faults_of("status_500"), 2);
    assert_eq!(stats.faults_of("status_503"), 1);
    assert_eq!(stats.faults_of("status_502"), 1);
    assert_eq!(stats.total, 8);
    server.reset_stats();
    assert_eq!(server.stats(), MockStats::default());
}

#[tokio::test]
async fn seeded_fault_rates_repeat_across_servers() {
    async fn run(seed: u64) -> Vec<u16> {
        let server = MockLm::builder()
            .seed(seed)
            .fault(Fault::Status(500), FaultWhen::Rate(0.5))
            .start()
            .await
            .expect("start");
        let mut out = Vec::new();
        for i in 0..20 {
            out.push(chat(&server, &hello(&format!("r{i}"))).await.0);
        }
        out
    }
    let a = run(11).await;
    assert_eq!(a, run(11).await);
    assert!(a.contains(&500) && a.contains(&200), "{a:?}");
}

// ---------------------------------------------------------------------------------------------
// Robustness and lifecycle
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_requests_get_openai_style_400s() {
    let server = MockLm::start().await.expect("start");
    let http = client();
    let raw = |path: &str, body: &'static str| {
        http.post(format!("{}{path}", server.url()))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: [(&str, &'static str); 10] = [
        ("/v1/chat/completions", "{not json"),
        ("/v1/chat/completions", ""),
        ("/v1/chat/completions", "{\"model\": \"m\"}"),
        ("/v1/chat/completions", "{\"messages\": []}"),
        ("/v1/chat/completions", "{\"messages\": \"hi\"}"),
        (
            "/v1/chat/completions",
            "{\"messages\": [{\"content\": \"no role\"}]}",
        ),
        (
            "/v1/chat/completions",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"n\": 0}",
        ),
        (
            "/v1/chat/completions",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"response_format\": {\"type\": \"yaml\"}}",
        ),
        ("/v1/embeddings", "{\"input\": [1.5, {}]}"),
        ("/v1/completions", "{\"prompt\": []}"),
    ];
    for (path, body) in cases {
        let resp = raw(path, body).await.expect("response");
        assert_eq!(resp.status(), 400, "{path} {body}");
        let error: Value = resp.json().await.expect("JSON error");
        assert_eq!(error["error"]["type"], "invalid_request_error", "{body}");
        assert!(error["error"]["message"].is_string());
        assert!(error["error"].get("code").is_some());
    }
    let resp = http
        .get(format!("{}/v1/nothing", server.url()))
        .send()
        .await
        .expect("404");
    assert_eq!(resp.status(), 404);
    let error: Value = resp.json().await.expect("JSON error");
    assert_eq!(error["error"]["code"], "unknown_url");
    let resp = http
        .get(format!("{}/v1/chat/completions", server.url()))
        .send()
        .await
        .expect("405");
    assert_eq!(resp.status(), 405);
    // Still serving.
    assert_eq!(chat(&server, &hello("x")).await.0, 200);
}

#[tokio::test]
async fn content_parts_and_missing_user_messages_are_handled() {
    let server = MockLm::start().await.expect("start");
    let body = json!({"model": "m", "messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:,"}}]},
        {"role": "assistant", "content": null, "tool_calls": []}
    ]});
    let (status, resp) = chat(&server, &body).await;
    assert_eq!(status, 200);
    let (_, same) = chat(&server, &hello("look")).await;
    assert_eq!(content(&resp, 0), content(&same, 0));
    let body = json!({"messages": [{"role": "system", "content": "only a system message"}]});
    let (status, resp) = chat(&server, &body).await;
    assert_eq!(status, 200);
    assert_eq!(resp["model"], "mock");
}

#[tokio::test]
async fn dropping_the_server_stops_it() {
    let server = MockLm::start().await.expect("start");
    let addr = server.addr();
    assert_eq!(chat(&server, &hello("x")).await.0, 200);
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            // Until the server task sees the signal the kernel may still complete handshakes
            // (or reset one queued as the listener closes).
            other if Instant::now() < deadline => {
                drop(other);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("the server still accepts connections after drop: {other:?}"),
        }
    }
}

#[tokio::test]
async fn graceful_shutdown_and_a_fixed_port() {
    let server = MockLm::start().await.expect("start");
    let port = server.addr().port();
    server.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
    // The port can be taken again at once.
    let again = MockLm::builder().port(port).start().await.expect("rebind");
    assert_eq!(again.addr().port(), port);
    assert_eq!(again.url(), format!("http://127.0.0.1:{port}"));
    assert_eq!(again.api_base(), format!("http://127.0.0.1:{port}/v1"));
}

/// Throughput at high concurrency, client and server in one process (so a lower bound).
/// Run with `cargo test -p dspex-runtime --features testing --release --lib throughput -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn throughput() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let server = MockLm::start().await.expect("start");
        let http = client();
        let url = format!("{}/chat/completions", server.api_base());
        let messages = fixture_messages("format_chat_00_qa.json");
        for (label, requests, concurrency) in [("plain", 10_000u64, 1_000u64), ("dspy", 10_000, 1_000)]
        {
            let started = Instant::now();
            let mut tasks = Vec::new();
            for worker in 0..concurrency {
                let (http, url, messages) = (http.clone(), url.clone(), messages.clone());
                tasks.push(tokio::spawn(async move {
                    let mut i = worker;
                    while i < requests {
                        let body = if label == "plain" {
                            hello(&format!("request {i}"))
                        } else {
                            json!({"model": "m", "messages": messages})
                        };
                        let resp = http.post(&url).json(&body).send().await.expect("send");
                        assert_eq!(resp.status(), 200);
                        let _ = resp.bytes().await.expect("body");
                        i += concurrency;
                    }
                }));
            }
            for t in tasks {
                t.await.expect("join");
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{label}: {requests} requests at concurrency {concurrency}: {secs:.2}s, {:.0} req/s",
                requests as f64 / secs
            );
        }
        assert_eq!(server.stats().total, 20_000);
    });
}
