//! Seed corpora: each target's starting inputs, built from DSPy's fixtures (signatures,
//! completions, field values, the messages DSPy sends) and from what the mock LM server answers,
//! faults included (status errors, rate limits, bodies cut mid-way, malformed JSON, empty
//! choices, streams that break off).

use super::adapter::{TYPE_NAMES, models};
use super::wire::loopback;
use crate::adapter::{Adapter, XMLAdapter};
use crate::bridge::protocol::{
    FEATURE_STREAM, LmCall, LmCallRequest, MSGPACK_FLAG, PROTOCOL_VERSION, Ready, RemoteError,
    Response, StatusUpdate, StreamChunk, WireMessage, WorkerMessage, encode_frame,
    encode_msgpack_frame,
};
use crate::pycompat::py::{from_json, write_repr};
use crate::signature::DynSignature;
use dspex_testing::{Fault, FaultWhen, MockLm};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every target's seeds: `(target, input)` pairs, from the fixtures in `fixtures` (DSPy's, as in
/// `../shared/fixtures/dspy`) and the mock server. Fails when the fixtures cannot be read.
pub fn all(fixtures: &Path) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    let fx = read_fixtures(fixtures)?;
    let mut out = Vec::new();
    let mut add = |target: &'static str, bytes: Vec<u8>| out.push((target, bytes));
    let mut texts = BTreeSet::new();
    for (_, v) in &fx {
        collect_strings(v, &mut texts);
    }
    // Signatures and completions.
    for (name, v) in &fx {
        if let Some(s) = v.pointer("/signature/string").and_then(Value::as_str) {
            add("parse_signature", s.as_bytes().to_vec());
        }
        let Some(line) = signature_line(v) else {
            continue;
        };
        add("parse_signature", line.as_bytes().to_vec());
        let mut completions = BTreeSet::new();
        collect_completions(v, &mut completions);
        let json_fixture = name.contains("json");
        let xml_fixture = name.contains("xml");
        for c in &completions {
            let input = format!("{line}\n{c}").into_bytes();
            add("chat_parse", input.clone());
            if xml_fixture || c.trim_start().starts_with('<') {
                add("xml_parse", input.clone());
            }
            if json_fixture || c.trim_start().starts_with('{') {
                add("json_parse", input);
            }
        }
        // The fixture's outputs as an XMLAdapter demo answer, and with XML's other markup.
        if let Some(answer) = xml_answer(&line, v) {
            add("xml_parse", format!("{line}\n{answer}").into_bytes());
            let marked = answer.replacen('>', "><!-- c --><![CDATA[]]>&#65;&amp;", 1);
            add("xml_parse", format!("{line}\n{marked}").into_bytes());
        }
    }
    // Values: every string of the fixtures, the sections of completions, values as JSON and
    // as Python literals.
    let mut values = BTreeSet::new();
    for t in &texts {
        for section in t.split("[[ ## ").skip(1) {
            if let Some((_, body)) = section.split_once(" ## ]]") {
                values.insert(body.trim().to_string());
            }
        }
    }
    for (_, v) in &fx {
        collect_values(v, &mut values);
    }
    for t in texts.iter().chain(&values) {
        if t.len() <= 4096 {
            add("json_repair", t.as_bytes().to_vec());
            add("literal_eval", t.as_bytes().to_vec());
            add("tool_calls", t.as_bytes().to_vec());
        }
    }
    for (i, v) in values.iter().enumerate() {
        let selector = u8::try_from(i % TYPE_NAMES.len()).unwrap_or(0);
        let mut input = vec![selector];
        input.extend_from_slice(v.as_bytes());
        add("parse_value", input);
    }
    for (i, name) in TYPE_NAMES.iter().enumerate() {
        let selector = u8::try_from(i).unwrap_or(0);
        for v in [
            "12",
            "3.5",
            "true",
            "[1, 2]",
            "{\"a\": 1}",
            "None",
            "'yes'",
            name,
        ] {
            let mut input = vec![selector];
            input.extend_from_slice(v.as_bytes());
            add("parse_value", input);
        }
    }
    // Values of the Redis cache tier: completions stored plain and compressed.
    for text in texts.iter().take(40) {
        for compressed in [false, true] {
            add(
                "redis_value",
                crate::lm::__fuzz::redis_value_seed(text, compressed),
            );
        }
    }
    // The bridge: frames a worker writes.
    for frame in bridge_frames(&fx) {
        add("bridge_frames", frame);
    }
    // The wire: what the mock server answers, with and without faults; what clients send it.
    let captured = capture_mock_answers()?;
    for (request, answer) in &captured {
        for cut in [0u8, 3] {
            let mut input = vec![cut];
            input.extend_from_slice(answer);
            add("http1_response", input);
        }
        let mut input = vec![0u8];
        input.extend_from_slice(request);
        add("mock_request", input);
        let mut body = vec![5u8];
        body.extend_from_slice(&answer_body(answer));
        if request.starts_with(b"POST /v1/messages ") {
            add("anthropic_response", body[1..].to_vec());
            add("anthropic_stream", body);
        } else {
            add("sse_stream", body);
        }
        // Every protocol reads every answer (the first byte picks the protocol).
        for selector in 0..8u8 {
            let mut body = vec![selector];
            body.extend_from_slice(&answer_body(answer));
            add("provider_wire", body);
        }
        if request.windows(7).any(|w| w == b"/v1beta") {
            let body = answer_body(answer);
            add("gemini_response", body.clone());
            for cut in [0u8, 6] {
                let mut input = vec![cut];
                input.extend_from_slice(&body);
                add("gemini_stream", input);
            }
        }
    }
    // Gemini answers the mock does not give unasked: blocks, calls, thoughts, errors.
    for body in [
        r#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":4}}"#,
        r#"{"candidates":[{"finishReason":"RECITATION","index":0}]}"#,
        r#"{"candidates":[{"content":{"parts":[{"text":"hm","thought":true},{"functionCall":{"name":"f","args":{"a":1}}},{"functionCall":{"id":"c1","name":"g"}}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":2,"thoughtsTokenCount":3}}"#,
        r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#,
        r#"[{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}]"#,
    ] {
        add("gemini_response", body.as_bytes().to_vec());
        let mut input = vec![2u8];
        input.extend_from_slice(format!("data: {body}\r\n\r\n").as_bytes());
        add("gemini_stream", input);
    }
    for request in extra_requests(&fx) {
        let mut input = vec![4u8];
        input.extend_from_slice(&request);
        add("mock_request", input);
    }
    for seed in report_seeds() {
        add("report_log", seed);
    }
    for seed in super::evaluate::seeds() {
        add("results_file", seed);
    }
    Ok(out)
}

/// A job's log (every event, a GEPA candidate with parents and per-instance scores, a cut last
/// line) and a GEPA state file.
fn report_seeds() -> Vec<Vec<u8>> {
    let lines = [
        json!({"event": "start", "optimizer": "MIPROv2", "state": {"predict": {"signature": {"instructions": "Answer."}, "demos": []}}, "elapsed_ms": 0}),
        json!({"event": "trial", "trial": 0, "score": 40.0, "minibatch": false, "phase": "searching", "elapsed_ms": 12, "usage": {"lm_calls": 20, "total_tokens": 4000, "cost_usd": 0.01}, "candidate": {"baseline": true}, "example_scores": [1.0, 0.0]}),
        json!({"event": "trial", "trial": 1, "score": 0.5, "minibatch": true, "candidate": {"index": 1, "parents": [0], "val_scores": [1.0, 0.0]}}),
        json!({"event": "end", "state": {"predict": {"signature": {"instructions": "Answer <b>well</b>."}, "demos": [{"question": "q", "answer": "a"}]}}, "best_score": 40.0}),
    ];
    let log: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let state = json!({"state": {"components": ["a", "b"], "candidates": [["x", "y"], ["x2", "y"]],
        "parents": [[null], [0]], "val_scores": [[0.0, 1.0], [1.0, 1.0]]}});
    vec![
        log.clone().into_bytes(),
        format!("{log}{{\"event\": \"tri").into_bytes(),
        state.to_string().into_bytes(),
    ]
}

/// The seeds of the index targets: for every file of the valid index, its bytes (as a
/// replacement, so the fuzzer mutates them), a truncation, a patch and a removal.
pub fn index_seeds(target: &str) -> Vec<Vec<u8>> {
    let pristine = match target {
        "bm25_open" => super::index::pristine_files(true),
        _ => super::index::pristine_files(false),
    };
    let mut out = Vec::new();
    for (i, bytes) in pristine.iter().enumerate() {
        let i = u8::try_from(i).unwrap_or(u8::MAX);
        let mut whole = vec![i, 0];
        whole.extend_from_slice(bytes);
        out.push(whole);
        let half = u16::try_from(bytes.len() / 2)
            .unwrap_or(u16::MAX)
            .to_le_bytes();
        out.push(vec![i, 1, half[0], half[1]]);
        out.push(vec![i, 2, half[0], half[1], 0xff, 0x00, b'{']);
        out.push(vec![i, 3]);
    }
    out
}

fn read_fixtures(dir: &Path) -> Result<Vec<(String, Value)>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((name, value));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    if out.is_empty() {
        return Err(format!("no fixtures in {}", dir.display()));
    }
    Ok(out)
}

fn collect_strings(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            out.insert(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

/// The texts an LM answered in a fixture: `completion`s, replies' `content`, assistant turns.
fn collect_completions(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect_completions(i, out)),
        Value::Object(map) => {
            for (k, item) in map {
                match (k.as_str(), item) {
                    ("completion", Value::String(s)) => {
                        out.insert(s.clone());
                    }
                    ("content", Value::String(s))
                        if map.get("role").is_none_or(|r| r == "assistant") =>
                    {
                        out.insert(s.clone());
                    }
                    _ => collect_completions(item, out),
                }
            }
        }
        _ => {}
    }
}

/// Output values of a fixture (`expected.ok`, demos) written as JSON and as Python literals.
fn collect_values(v: &Value, out: &mut BTreeSet<String>) {
    let mut add = |value: &Value| {
        out.insert(value.to_string());
        let mut repr = String::new();
        write_repr(&mut repr, &from_json(value));
        out.insert(repr);
    };
    if let Some(Value::Object(ok)) = v.pointer("/expected/ok") {
        ok.values().for_each(&mut add);
    }
    if let Some(Value::Array(demos)) = v.get("demos") {
        for demo in demos {
            if let Value::Object(fields) = demo {
                fields.values().for_each(&mut add);
            }
        }
    }
}

/// The assistant turn XMLAdapter formats for a demo holding the fixture's `expected.ok` outputs
/// (`None` when there are none or they do not format).
fn xml_answer(line: &str, fixture: &Value) -> Option<String> {
    let Value::Object(ok) = fixture.pointer("/expected/ok")? else {
        return None;
    };
    let sig = DynSignature::parse_with_types(line, &models()).ok()?;
    let mut demo = crate::example::Example::new();
    let mut inputs = crate::example::Example::new();
    for f in sig.inputs() {
        demo.insert(f.name(), "x");
        inputs.insert(f.name(), "x");
    }
    for f in sig.outputs() {
        demo.insert(f.name(), ok.get(f.name())?.clone());
    }
    let messages = XMLAdapter.format(&sig, &[demo], &inputs).ok()?;
    messages
        .into_iter()
        .find(|m| m.role == crate::lm::Role::Assistant)
        .map(|m| m.content.text().into_owned())
}

/// A fixture's signature as a signature string with types (`None` when it does not read).
fn signature_line(v: &Value) -> Option<String> {
    let sig = v.get("signature")?;
    let fields = |key: &str| -> Option<String> {
        let list = sig.get(key)?.as_array()?;
        let parts: Option<Vec<String>> = list
            .iter()
            .map(|f| {
                Some(format!(
                    "{}: {}",
                    f.get("name")?.as_str()?,
                    f.get("type")?.as_str()?
                ))
            })
            .collect();
        Some(parts?.join(", "))
    };
    let line = format!("{} -> {}", fields("inputs")?, fields("outputs")?);
    DynSignature::parse_with_types(&line, &models()).ok()?;
    Some(line)
}

/// Frames a worker writes: `ready`, responses (results and errors), LM calls with the messages
/// DSPy sends in the fixtures; one stream per seed, some cut short.
fn bridge_frames(fx: &[(String, Value)]) -> Vec<Vec<u8>> {
    let mut messages = vec![
        WorkerMessage::Ready(Ready {
            protocol: PROTOCOL_VERSION,
            pid: 4242,
            python: "3.11.7".into(),
            dspy: Some("3.4.1".into()),
            features: vec![FEATURE_STREAM.into()],
            encodings: vec!["json".into(), "msgpack".into()],
        }),
        WorkerMessage::StreamChunk(StreamChunk {
            id: 5,
            predictor: "predict".into(),
            field: "answer".into(),
            chunk: "Par".into(),
            is_last: false,
        }),
        WorkerMessage::StreamChunk(StreamChunk {
            id: 5,
            predictor: "predict".into(),
            field: "answer".into(),
            chunk: "is".into(),
            is_last: true,
        }),
        WorkerMessage::Status(StatusUpdate {
            id: 5,
            message: "Calling tool search...".into(),
        }),
        WorkerMessage::Response(Response {
            id: 1,
            ok: Some(json!({"outputs": {"answer": "Paris", "n": 3}})),
            error: None,
        }),
        WorkerMessage::Response(Response {
            id: 2,
            ok: Some(json!({"state": {"predict": {"demos": [], "signature": {}}}})),
            error: None,
        }),
        WorkerMessage::Response(Response {
            id: 3,
            ok: Some(json!({"pong": true, "busy": false, "rss_mb": 81.5})),
            error: None,
        }),
        WorkerMessage::Response(Response {
            id: 4,
            ok: None,
            error: Some(RemoteError {
                kind: "ValueError".into(),
                message: "bad".into(),
                traceback: Some("Traceback (most recent call last):\n".into()),
            }),
        }),
    ];
    let mut calls = 0u64;
    for (_, v) in fx {
        let Some(Value::Array(requests)) = v.get("expected_requests") else {
            continue;
        };
        for r in requests {
            let Some(Value::Array(msgs)) = r.get("messages") else {
                continue;
            };
            let messages_of = msgs
                .iter()
                .filter_map(|m| serde_json::from_value::<WireMessage>(m.clone()).ok())
                .collect();
            let mut extra = Map::new();
            if let Some(Value::Object(options)) = r.get("options") {
                extra.extend(options.clone());
            }
            calls += 1;
            messages.push(WorkerMessage::LmCall(LmCall {
                id: calls,
                parent: Some(1),
                stream: calls.is_multiple_of(2),
                request: LmCallRequest {
                    model: Some("openai/mock".into()),
                    messages: messages_of,
                    temperature: Some(0.0),
                    max_tokens: Some(1000),
                    n: None,
                    stop: Vec::new(),
                    extra,
                },
            }));
        }
    }
    let mut out = Vec::new();
    let mut all = vec![0u8];
    // Both encodings, alternating in one stream too (a worker sends MessagePack above the
    // threshold, JSON below).
    let mut mixed = vec![3u8];
    for (i, m) in messages.iter().enumerate() {
        let Ok(frame) = encode_frame(m) else { continue };
        let Ok(packed) = encode_msgpack_frame(m) else {
            continue;
        };
        for (selector, f) in [(0u8, &frame), (1u8, &packed)] {
            let mut one = vec![selector];
            one.extend_from_slice(f);
            out.push(one);
            let mut cut = vec![7u8];
            cut.extend_from_slice(&f[..f.len() - f.len() / 3]);
            out.push(cut);
        }
        all.extend_from_slice(&frame);
        mixed.extend_from_slice(if i % 2 == 0 { &packed } else { &frame });
    }
    out.push(all);
    out.push(mixed);
    // MessagePack bodies that are not messages: `bin` and `ext` values where JSON values go,
    // a map with an integer key, bytes after the message, a string announcing more bytes than
    // there are, nesting past the depth limit, a length word over the cap with the flag set.
    let bodies: [&[u8]; 6] = [
        b"\x82\xa4kind\xa8response\xa2ok\xc4\x03abc",
        b"\x82\xa4kind\xa8response\xa2ok\xd4\x01\x02",
        b"\x83\xa4kind\xa8response\xa2id\x01\xa2ok\x81\x01\x02",
        b"\x82\xa4kind\xa5ready\xa2id\x01\xc0",
        b"\x81\xa4kind\xdb\xff\xff\xff\xffab",
        &[0x91; 300],
    ];
    for body in bodies {
        let mut input = vec![0u8];
        input.extend_from_slice(
            &(u32::try_from(body.len()).unwrap_or(0) | MSGPACK_FLAG).to_be_bytes(),
        );
        input.extend_from_slice(body);
        out.push(input);
    }
    let mut over = vec![0u8];
    over.extend_from_slice(&(MSGPACK_FLAG | (64 * 1024 * 1024 + 1)).to_be_bytes());
    out.push(over);
    out
}

/// Requests to the mock server: its endpoints, streaming, a chunked body, `Expect:
/// 100-continue`, two pipelined requests; bodies with the messages of the fixtures.
fn extra_requests(fx: &[(String, Value)]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let post = |path: &str, body: &str, extra: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let chat = r#"{"model":"mock","messages":[{"role":"user","content":"Hi"}]}"#;
    out.push(post(
        "/v1/chat/completions",
        chat,
        "expect: 100-continue\r\n",
    ));
    let mut pipelined = post("/v1/chat/completions", chat, "");
    pipelined.extend_from_slice(b"GET /health HTTP/1.1\r\nhost: mock\r\n\r\n");
    out.push(pipelined);
    let chunked = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chat}\r\n0\r\nx-trailer: 1\r\n\r\n",
        chat.len()
    );
    out.push(chunked.into_bytes());
    out.push(b"GET /v1/models HTTP/1.0\r\n\r\n".to_vec());
    out.push(b"GET /stats HTTP/1.1\r\nconnection: close\r\n\r\n".to_vec());
    out.push(b"DELETE /nowhere HTTP/1.1\r\n\r\n".to_vec());
    for (_, v) in fx.iter().take(12) {
        if let Some(Value::Array(requests)) = v.get("expected_requests")
            && let Some(messages) = requests.first().and_then(|r| r.get("messages"))
        {
            let body = json!({"model": "mock", "messages": messages, "stream": true}).to_string();
            out.push(post("/v1/chat/completions", &body, ""));
        }
    }
    out
}

/// A request and the raw answer to it.
type Exchange = (Vec<u8>, Vec<u8>);

/// The answers the mock server writes to each kind of request, with no fault and with each
/// fault (but `Hang`): `(request, raw answer)` pairs.
fn capture_mock_answers() -> Result<Vec<Exchange>, String> {
    let requests: Vec<Vec<u8>> = [
        (
            "/v1/chat/completions",
            r#"{"model":"mock","messages":[{"role":"user","content":"What is 2+2?"}]}"#,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"mock","messages":[{"role":"user","content":"Hi"}],"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"mock","n":2,"messages":[{"role":"system","content":"Your output fields are:\n1. `answer` (int)"},{"role":"user","content":"[[ ## question ## ]]\nq"}]}"#,
        ),
        ("/v1/completions", r#"{"model":"mock","prompt":"Once"}"#),
        (
            "/v1/responses",
            r#"{"model":"mock","input":[{"role":"user","content":[{"type":"input_text","text":"Hi"}]}]}"#,
        ),
        (
            "/v1/responses",
            r#"{"model":"mock","input":"Hi","stream":true}"#,
        ),
        (
            "/v1/embeddings",
            r#"{"model":"mock","input":["a","b"]}"#,
        ),
        (
            "/v1/messages",
            r#"{"model":"claude-mock","max_tokens":64,"system":"Be brief.","messages":[{"role":"user","content":"What is 2+2?"}]}"#,
        ),
        (
            "/v1/messages",
            r#"{"model":"claude-mock","max_tokens":4096,"stream":true,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":"Hi"}]}"#,
        ),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            r#"{"contents":[{"role":"user","parts":[{"text":"What is 2+2?"}]}],"generationConfig":{"candidateCount":2,"temperature":0.5,"thinkingConfig":{"thinkingBudget":1024,"includeThoughts":true}}}"#,
        ),
        (
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            r#"{"systemInstruction":{"parts":[{"text":"Your output fields are:\n1. `answer` (int)"}]},"contents":[{"role":"user","parts":[{"text":"[[ ## question ## ]]\nq"}]}],"generationConfig":{"candidateCount":2,"temperature":0.7}}"#,
        ),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            r#"{"contents":[{"role":"user","parts":[{"text":"Weather?"},{"inline_data":{"mime_type":"image/png","data":"iVBORw0KGgo="}}]}],"tools":[{"functionDeclarations":[{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}]}],"generationConfig":{"responseMimeType":"application/json"}}"#,
        ),
    ]
    .iter()
    .map(|(path, body)| {
        // Anthropic's route wants its key and version headers.
        let anthropic = if path.ends_with("/messages") {
            "x-api-key: mock\r\nanthropic-version: 2023-06-01\r\n"
        } else {
            ""
        };
        format!(
            "POST {path} HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\nx-goog-api-key: seed-key\r\n{anthropic}connection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
    .collect();
    let faults = [
        None,
        Some(Fault::Status(503)),
        Some(Fault::Status(400)),
        Some(Fault::RateLimited {
            retry_after: Duration::from_millis(200),
        }),
        Some(Fault::ResetMidBody),
        Some(Fault::MalformedJson),
        Some(Fault::EmptyChoices),
        Some(Fault::TruncatedStream),
        Some(Fault::StreamError(529)),
    ];
    loopback().runtime.block_on(async {
        let mut out = Vec::new();
        for fault in faults {
            let mut builder = MockLm::builder().seed(3);
            if let Some(fault) = fault {
                builder = builder.fault(fault, FaultWhen::Always);
            }
            let server = builder
                .start()
                .await
                .map_err(|e| format!("the mock server does not start: {e}"))?;
            for request in &requests {
                let mut stream = TcpStream::connect(server.addr())
                    .await
                    .map_err(|e| format!("cannot connect to the mock server: {e}"))?;
                stream
                    .write_all(request)
                    .await
                    .map_err(|e| format!("cannot send to the mock server: {e}"))?;
                let mut answer = Vec::new();
                // A reset cuts the answer: what arrived is the seed.
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
                        .await;
                out.push((request.clone(), answer));
            }
            server.shutdown().await;
        }
        Ok(out)
    })
}

/// The body of a raw answer: after the head, de-chunked when it is chunked (as far as it goes).
fn answer_body(answer: &[u8]) -> Vec<u8> {
    let Some(start) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return answer.to_vec();
    };
    let head = String::from_utf8_lossy(&answer[..start]).to_ascii_lowercase();
    let mut body = &answer[start + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return body.to_vec();
    }
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(size) = size.filter(|s| *s > 0) else {
            break;
        };
        let data = &body[end + 2..];
        let take = size.min(data.len());
        out.extend_from_slice(&data[..take]);
        body = data.get(take + 2..).unwrap_or_default();
    }
    out
}
