//! Unit tests of the callbacks: event order and ids, delivery guarantees, scoping.

use super::*;
use crate::Example;
use crate::lm::ScriptedLM;
use crate::module::{DynPredict, Tool};
use crate::settings::{Settings, in_current_scope, with_settings};
use crate::signature::DynSignature;
use serde_json::json;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const FLUSH: Duration = Duration::from_secs(10);

/// One received event, flattened.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    hook: String,
    call_id: CallId,
    parent_id: Option<CallId>,
    name: String,
    payload: Option<Value>,
    error: Option<EventError>,
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Seen>>);

impl Recorder {
    fn start(&self, e: &StartEvent) {
        self.0.lock().unwrap().push(Seen {
            hook: format!("{}_start", e.kind),
            call_id: e.call_id,
            parent_id: e.parent_id,
            name: e.name.clone(),
            payload: Some(e.inputs.clone()),
            error: None,
        });
    }
    fn end(&self, e: &EndEvent) {
        self.0.lock().unwrap().push(Seen {
            hook: format!("{}_end", e.kind),
            call_id: e.call_id,
            parent_id: e.parent_id,
            name: e.name.clone(),
            payload: e.outputs.clone(),
            error: e.error.clone(),
        });
    }
    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
    fn hooks(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.hook).collect()
    }
}

impl Callback for Recorder {
    fn on_module_start(&self, e: &StartEvent) {
        self.start(e);
    }
    fn on_module_end(&self, e: &EndEvent) {
        self.end(e);
    }
    fn on_lm_start(&self, e: &StartEvent) {
        self.start(e);
    }
    fn on_lm_end(&self, e: &EndEvent) {
        self.end(e);
    }
    fn on_adapter_format_start(&self, e: &StartEvent) {
        self.start(e);
    }
    fn on_adapter_format_end(&self, e: &EndEvent) {
        self.end(e);
    }
    fn on_adapter_parse_start(&self, e: &StartEvent) {
        self.start(e);
    }
    fn on_adapter_parse_end(&self, e: &EndEvent) {
        self.end(e);
    }
    fn on_tool_start(&self, e: &StartEvent) {
        self.start(e);
    }
    fn on_tool_end(&self, e: &EndEvent) {
        self.end(e);
    }
}

fn recorder() -> (Arc<Recorder>, CallbackHandle) {
    let recorder = Arc::new(Recorder::default());
    let handle = CallbackHandle::new(recorder.clone());
    (recorder, handle)
}

fn qa() -> DynPredict {
    DynPredict::new(DynSignature::parse("question -> answer").unwrap())
}

fn question() -> Example {
    Example::new().with("question", "2 + 2?")
}

const ONE_CALL: [&str; 8] = [
    "module_start",
    "adapter_format_start",
    "adapter_format_end",
    "lm_start",
    "lm_end",
    "adapter_parse_start",
    "adapter_parse_end",
    "module_end",
];

#[tokio::test]
async fn a_predict_call_fires_its_events_in_order_with_matching_ids() {
    let (recorder, handle) = recorder();
    let settings = Settings::new()
        .lm(ScriptedLM::from_fields([json!({"answer": "4"})]))
        .callbacks(handle.clone());
    let out = with_settings(settings, qa().call(&question()))
        .await
        .unwrap();
    assert_eq!(out.get_str("answer"), Some("4"));
    assert!(handle.flush(FLUSH));
    let seen = recorder.seen();
    assert_eq!(recorder.hooks(), ONE_CALL);
    let module = seen[0].call_id;
    assert_eq!(seen[0].parent_id, None);
    assert_eq!(seen[7].call_id, module);
    for pair in seen[1..7].chunks(2) {
        assert_eq!(pair[0].call_id, pair[1].call_id);
        assert_ne!(pair[0].call_id, module);
        assert_eq!(pair[0].parent_id, Some(module));
        assert_eq!(pair[1].parent_id, Some(module));
    }
    let names: Vec<&str> = seen.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Predict",
            "ChatAdapter",
            "ChatAdapter",
            "scripted",
            "scripted",
            "ChatAdapter",
            "ChatAdapter",
            "Predict"
        ]
    );
    assert_eq!(seen[0].payload.as_ref().unwrap()["question"], "2 + 2?");
    assert_eq!(
        seen[1].payload.as_ref().unwrap()["signature"],
        "question: str -> answer: str"
    );
    assert_eq!(
        seen[2].payload.as_ref().unwrap()[0]["role"],
        json!("system")
    );
    assert!(seen[3].payload.as_ref().unwrap()["messages"].is_array());
    assert!(seen[4].payload.as_ref().unwrap()["choices"].is_array());
    assert_eq!(seen[6].payload.as_ref().unwrap(), &json!({"answer": "4"}));
    assert_eq!(seen[7].payload.as_ref().unwrap()["answer"], "4");
    assert_eq!(handle.dropped(), 0);
}

#[tokio::test]
async fn instance_callbacks_see_their_own_module_events_and_add_to_the_settings_ones() {
    let (global, global_handle) = recorder();
    let (local, local_handle) = recorder();
    let predict = qa().with_callbacks(local_handle.clone());
    let settings = Settings::new()
        .lm(ScriptedLM::from_fields([json!({"answer": "4"})]))
        .callbacks(global_handle.clone());
    with_settings(settings, predict.call(&question()))
        .await
        .unwrap();
    assert!(global_handle.flush(FLUSH) && local_handle.flush(FLUSH));
    assert_eq!(global.hooks(), ONE_CALL);
    assert_eq!(local.hooks(), ["module_start", "module_end"]);
    assert_eq!(local.seen()[0].call_id, global.seen()[0].call_id);

    // Without callbacks in the settings, only the instance's fire.
    let (alone, alone_handle) = recorder();
    let lm = ScriptedLM::from_fields([json!({"answer": "4"})]);
    let predict = qa()
        .with_config(crate::settings::CallConfig::new().lm(lm))
        .with_callbacks(alone_handle.clone());
    predict.call(&question()).await.unwrap();
    assert!(alone_handle.flush(FLUSH));
    assert_eq!(alone.hooks(), ["module_start", "module_end"]);
}

#[tokio::test]
async fn a_parse_failure_arrives_in_the_end_events() {
    let (recorder, handle) = recorder();
    let lm = ScriptedLM::new(["no fields here", "still not JSON"]);
    let settings = Settings::new().lm(lm).callbacks(handle.clone());
    let error = with_settings(settings, qa().call(&question()))
        .await
        .unwrap_err();
    assert_eq!(error.parse_failures().len(), 2);
    assert!(handle.flush(FLUSH));
    let seen = recorder.seen();
    let parse_ends: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.hook == "adapter_parse_end")
        .collect();
    assert_eq!(parse_ends.len(), 2);
    assert_eq!(parse_ends[0].name, "ChatAdapter");
    assert_eq!(parse_ends[1].name, "JSONAdapter");
    for end in &parse_ends {
        assert_eq!(end.payload, None);
        assert_eq!(end.error.as_ref().unwrap().kind, ErrorKind::Parse);
    }
    let last = seen.last().unwrap();
    assert_eq!(last.hook, "module_end");
    let error = last.error.as_ref().unwrap();
    assert_eq!(error.kind, ErrorKind::Parse);
    assert!(error.message.contains("JSONAdapter"), "{}", error.message);
}

struct Panicker(AtomicUsize);

impl Callback for Panicker {
    fn on_module_start(&self, _: &StartEvent) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("callback bug");
    }
    fn on_module_end(&self, _: &EndEvent) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("callback bug");
    }
    fn on_lm_start(&self, _: &StartEvent) {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("callback bug");
    }
}

#[tokio::test]
async fn a_panicking_callback_breaks_neither_the_call_nor_its_own_later_events() {
    let panicker = Arc::new(Panicker(AtomicUsize::new(0)));
    let panicking = CallbackHandle::new(panicker.clone());
    let (recorder, handle) = recorder();
    let settings = Settings::new()
        .lm(ScriptedLM::from_fields([
            json!({"answer": "4"}),
            json!({"answer": "5"}),
        ]))
        .callbacks(
            Callbacks::new()
                .with_handle(panicking.clone())
                .with_handle(handle.clone()),
        );
    let predict = qa();
    let (first, second) = with_settings(settings, async {
        (
            predict.call(&question()).await,
            predict.call(&question()).await,
        )
    })
    .await;
    assert_eq!(first.unwrap().get_str("answer"), Some("4"));
    assert_eq!(second.unwrap().get_str("answer"), Some("5"));
    assert!(panicking.flush(FLUSH) && handle.flush(FLUSH));
    // Every hook that panicked was called: the thread survived each panic.
    assert_eq!(panicker.0.load(Ordering::SeqCst), 6);
    assert_eq!(recorder.seen().len(), 16);
}

struct Sleeper(Duration);

impl Callback for Sleeper {
    fn on_module_start(&self, _: &StartEvent) {
        std::thread::sleep(self.0);
    }
    fn on_module_end(&self, _: &EndEvent) {
        std::thread::sleep(self.0);
    }
    fn on_adapter_format_start(&self, _: &StartEvent) {
        std::thread::sleep(self.0);
    }
}

#[tokio::test]
async fn a_slow_callback_never_blocks_and_drops_what_its_queue_cannot_hold() {
    let slow = CallbackHandle::with_capacity(Sleeper(Duration::from_secs(3)), 2);
    let (recorder, handle) = recorder();
    let settings = Settings::new()
        .lm(ScriptedLM::from_fields([json!({"answer": "4"})]).repeat_last())
        .callbacks(
            Callbacks::new()
                .with_handle(slow.clone())
                .with_handle(handle.clone()),
        );
    let predict = qa();
    let started = Instant::now();
    with_settings(settings, async {
        for _ in 0..3 {
            assert_eq!(
                predict.call(&question()).await.unwrap().get_str("answer"),
                Some("4")
            );
        }
    })
    .await;
    // 24 events; each of the first would hold the call for 3 s if delivery waited.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // At most one event in the hook and two queued: the rest were dropped and counted.
    assert!(slow.dropped() >= 21, "{}", slow.dropped());
    // The other callback got everything, unaffected.
    assert!(handle.flush(FLUSH));
    assert_eq!(recorder.seen().len(), 24);
    assert_eq!(handle.dropped(), 0);
}

#[tokio::test]
async fn calls_without_callbacks_have_no_ids_and_tools_report_their_calls() {
    assert_eq!(current_call_id(), None);
    let mut schema = serde_json::Map::new();
    schema.insert("x".into(), json!({"type": "integer"}));
    let tool = Tool::from_json_fn(
        "echo",
        None,
        schema,
        |args: serde_json::Map<String, Value>| async move {
            Ok::<_, String>(json!({ "seen_parent": current_call_id().is_some(), "args": args }))
        },
    )
    .unwrap();
    let out = tool.call(serde_json::Map::new()).await.unwrap();
    assert_eq!(out["seen_parent"], false);

    let (recorder, handle) = recorder();
    let tool = tool.with_callbacks(handle.clone());
    let mut args = serde_json::Map::new();
    args.insert("x".into(), json!(1));
    let out = tool.call(args).await.unwrap();
    assert_eq!(out["seen_parent"], true);
    assert!(handle.flush(FLUSH));
    let seen = recorder.seen();
    assert_eq!(recorder.hooks(), ["tool_start", "tool_end"]);
    assert_eq!(seen[0].name, "echo");
    assert_eq!(seen[0].payload, Some(json!({"x": 1})));
    assert_eq!(seen[1].payload, Some(out));
}

#[tokio::test]
async fn a_dropped_call_ends_as_cancelled_and_spawned_work_keeps_its_parent() {
    let (recorder, handle) = recorder();
    let slow = Tool::from_json_fn("slow", None, serde_json::Map::new(), |_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok::<_, String>(Value::Null)
    })
    .unwrap()
    .with_callbacks(handle.clone());
    let timed_out =
        tokio::time::timeout(Duration::from_millis(20), slow.call(serde_json::Map::new())).await;
    assert!(timed_out.is_err());
    assert!(handle.flush(FLUSH));
    let seen = recorder.seen();
    assert_eq!(recorder.hooks(), ["tool_start", "tool_end"]);
    assert_eq!(seen[1].error.as_ref().unwrap().kind, ErrorKind::Cancelled);

    // A task spawned inside a call, through in_current_scope, names that call as its parent.
    let spawner = Tool::from_json_fn("spawner", None, serde_json::Map::new(), |_| async {
        let inner = tokio::spawn(in_current_scope(async { current_call_id() }));
        let plain = tokio::spawn(async { current_call_id() });
        let (inner, plain) = (inner.await.unwrap(), plain.await.unwrap());
        Ok::<_, String>(json!([
            inner.map(CallId::as_u64),
            plain.map(CallId::as_u64)
        ]))
    })
    .unwrap()
    .with_callbacks(handle.clone());
    let out = spawner.call(serde_json::Map::new()).await.unwrap();
    assert!(handle.flush(FLUSH));
    let id = recorder.seen()[2].call_id.as_u64();
    assert_eq!(out, json!([id, null]));
}

#[test]
fn call_ids_are_unique_and_print_as_hex() {
    let (a, b) = (CallId::next(), CallId::next());
    assert!(b > a);
    assert_eq!(CallId(255).to_string(), "00000000000000ff");
    assert_eq!(EventKind::AdapterParse.to_string(), "adapter_parse");
}

#[test]
fn the_tracing_callback_logs_ids_kinds_and_errors() {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The hooks run on the callback's thread: call them directly to see their output here.
    tracing::subscriber::with_default(subscriber, || {
        let callback = TracingCallback::new().with_payloads(true);
        let start = StartEvent {
            call_id: CallId(7),
            parent_id: Some(CallId(3)),
            kind: EventKind::Lm,
            name: "openai/gpt-4o-mini".into(),
            inputs: json!({"messages": []}),
        };
        callback.on_lm_start(&start);
        callback.on_lm_end(&EndEvent {
            call_id: CallId(7),
            parent_id: Some(CallId(3)),
            kind: EventKind::Lm,
            name: "openai/gpt-4o-mini".into(),
            outputs: None,
            error: Some(EventError {
                kind: ErrorKind::Lm,
                message: "HTTP 503".into(),
            }),
            elapsed: Duration::from_millis(5),
        });
    });
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("DEBUG dspex::callback: call started call_id=0000000000000007 parent_id=0000000000000003 kind=lm name=openai/gpt-4o-mini inputs={\"messages\":[]}"), "{text}");
    assert!(
        text.contains("call failed call_id=0000000000000007"),
        "{text}"
    );
    assert!(text.contains("error=Lm: HTTP 503"), "{text}");
}
