//! Streaming through the bridge with the real worker (`python -m dspex_worker`, DSPy 3.4.1's
//! `dspy.streamify`) against dspex's mock LM server: field chunks that reach the caller while
//! the LM is still generating, status messages, the same items as a native stream, cancellation
//! by dropping the stream, a worker killed mid-stream, and a DSPy error mid-stream.
//!
//! The LM is the mock server's client behind [`PacedLm`], which re-cuts the server's streamed
//! text into words and can hold its stream at a gate: what the caller has seen while the gate
//! is closed was sent before the LM finished.

mod common;

use common::bridge::{lm, pool, within};
use common::venv_python;
use dspex::bridge::protocol::StatusMessages;
use dspex::bridge::{BridgeError, BridgedModule, Pool, Route, Router};
use dspex::lm::{EventStream, LM, LanguageModel, LmError, LmRequest, LmResponse, StreamEvent};
use dspex::module::{FieldChunk, FieldStream, StreamError, StreamItem, StreamOptions};
use dspex::settings::{Settings, with_settings};
use dspex::testing::{MockLm, MockLmServer, Rule};
use dspex::{Error, Example, Prediction};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;

type Fields = Map<String, Value>;

const QUESTION: &str = "What is the capital of France?";
const REASONING: &str = "France is a country in Western Europe. Its government, its largest city and \
its oldest university are all in the same place, on the banks of the Seine, which has been the \
capital since the Middle Ages.";
const ANSWER: &str = "Paris";

fn completion() -> String {
    format!(
        "[[ ## reasoning ## ]]\n{REASONING}\n\n[[ ## answer ## ]]\n{ANSWER}\n\n[[ ## completed ## ]]"
    )
}

/// What a [`PacedLm`]'s streams did.
#[derive(Default)]
struct Probe {
    /// Streams opened.
    opened: AtomicUsize,
    /// Streams dropped (read to the end or not).
    dropped: AtomicUsize,
    /// Streams read to their end.
    completed: AtomicUsize,
    /// Text deltas handed out, over all streams.
    deltas: AtomicUsize,
}

/// Marks its stream dropped.
struct Dropped(Arc<Probe>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// The mock server's LM, streamed a word at a time; each stream stops after `hold_after` text
/// deltas until the gate is open.
struct PacedLm {
    inner: LM,
    hold_after: usize,
    gate: watch::Receiver<bool>,
    probe: Arc<Probe>,
}

impl PacedLm {
    fn new(server: &MockLmServer, hold_after: usize) -> (Arc<Self>, watch::Sender<bool>) {
        let (open, gate) = watch::channel(false);
        let lm = PacedLm {
            inner: lm(server),
            hold_after,
            gate,
            probe: Arc::new(Probe::default()),
        };
        (Arc::new(lm), open)
    }
}

/// `text` cut after each run of whitespace: "a b  c" → ["a ", "b  ", "c"].
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_space = false;
    for c in text.chars() {
        if !c.is_whitespace() && in_space {
            out.push(std::mem::take(&mut current));
        }
        in_space = c.is_whitespace();
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

struct Paced {
    inner: EventStream,
    queue: VecDeque<StreamEvent>,
    sent: usize,
    hold_after: usize,
    gate: watch::Receiver<bool>,
    probe: Arc<Probe>,
    _dropped: Dropped,
}

impl LanguageModel for PacedLm {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn call(&self, request: LmRequest) -> BoxFuture<'_, Result<LmResponse, LmError>> {
        LanguageModel::call(&self.inner, request)
    }

    fn stream(&self, request: LmRequest) -> BoxFuture<'_, Result<EventStream, LmError>> {
        Box::pin(async move {
            let inner = LanguageModel::stream(&self.inner, request).await?;
            self.probe.opened.fetch_add(1, Ordering::SeqCst);
            let state = Paced {
                inner,
                queue: VecDeque::new(),
                sent: 0,
                hold_after: self.hold_after,
                gate: self.gate.clone(),
                probe: self.probe.clone(),
                _dropped: Dropped(self.probe.clone()),
            };
            let events = futures_util::stream::unfold(state, |mut st| async move {
                loop {
                    if let Some(event) = st.queue.pop_front() {
                        if matches!(event, StreamEvent::Delta { .. }) {
                            if st.sent == st.hold_after {
                                // A closed sender counts as open: nothing would ever open it.
                                let _ = st.gate.wait_for(|open| *open).await;
                            }
                            st.sent += 1;
                            st.probe.deltas.fetch_add(1, Ordering::SeqCst);
                        }
                        return Some((Ok(event), st));
                    }
                    match st.inner.next().await {
                        None => {
                            st.probe.completed.fetch_add(1, Ordering::SeqCst);
                            return None;
                        }
                        Some(Err(e)) => return Some((Err(e), st)),
                        Some(Ok(StreamEvent::Delta { index, text })) => {
                            st.queue.extend(
                                words(&text)
                                    .into_iter()
                                    .map(|text| StreamEvent::Delta { index, text }),
                            );
                        }
                        Some(Ok(other)) => st.queue.push_back(other),
                    }
                }
            });
            Ok(events.boxed())
        })
    }
}

async fn server(completion: String) -> MockLmServer {
    MockLm::builder()
        .rule(Rule::contains(QUESTION, completion))
        .start()
        .await
        .expect("the mock LM starts")
}

async fn bridged_pool(lm: Arc<PacedLm>) -> Pool {
    pool(venv_python())
        .eager_import(true)
        .lm(lm)
        .build()
        .await
        .expect("the pool starts")
}

/// The set-up most tests share: a mock server answering `completion`, its [`PacedLm`] holding
/// each stream after `hold_after` deltas until the gate opens, a pool of one worker on that LM,
/// and a bridged ChainOfThought in it.
async fn paced_cot(
    completion: String,
    hold_after: usize,
) -> (
    MockLmServer,
    Arc<PacedLm>,
    watch::Sender<bool>,
    Pool,
    BridgedModule<Fields, Fields>,
) {
    let server = server(completion).await;
    let (lm, open) = PacedLm::new(&server, hold_after);
    let pool = bridged_pool(lm.clone()).await;
    let cot = chain_of_thought(&pool).await;
    (server, lm, open, pool, cot)
}

async fn chain_of_thought(pool: &Pool) -> BridgedModule<Fields, Fields> {
    BridgedModule::create(pool, "ChainOfThought", "question -> answer")
        .await
        .expect("the ChainOfThought is created")
}

fn question() -> Fields {
    let mut inputs = Map::new();
    inputs.insert("question".into(), QUESTION.into());
    inputs
}

fn chunks<T>(items: &[Result<StreamItem<T>, StreamError>]) -> Vec<&FieldChunk> {
    items
        .iter()
        .filter_map(|item| match item {
            Ok(StreamItem::Chunk(chunk)) => Some(chunk),
            _ => None,
        })
        .collect()
}

/// Each field's chunks, concatenated.
fn streamed_text<T>(items: &[Result<StreamItem<T>, StreamError>]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::<String, String>::new();
    for chunk in chunks(items) {
        out.entry(chunk.field.clone())
            .or_default()
            .push_str(&chunk.delta);
    }
    out
}

/// (predictor, field) of the chunks, in order, consecutive repeats merged.
fn field_sequence<T>(items: &[Result<StreamItem<T>, StreamError>]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for chunk in chunks(items) {
        let key = (chunk.predictor.clone(), chunk.field.clone());
        if out.last() != Some(&key) {
            out.push(key);
        }
    }
    out
}

/// The items up to and including the first chunk.
async fn until_first_chunk<T>(
    stream: &mut FieldStream<T>,
) -> Vec<Result<StreamItem<T>, StreamError>> {
    let mut seen = Vec::new();
    while let Some(item) = stream.next().await {
        let is_chunk = matches!(item, Ok(StreamItem::Chunk(_)));
        let failed = item.is_err();
        seen.push(item);
        if is_chunk || failed {
            break;
        }
    }
    seen
}

/// Waits (polling) until `cond` holds; the surrounding `within` fails a test that hangs here.
async fn eventually(mut cond: impl FnMut() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn chunks_reach_the_caller_while_the_lm_is_still_generating() {
    within(180, async {
        let server = server(completion()).await;
        // The stream holds after ten words: the reasoning is under way, the answer not written.
        let (lm, open) = PacedLm::new(&server, 10);
        let pool = bridged_pool(lm.clone()).await;
        let cot = chain_of_thought(&pool).await;

        let mut stream = cot.stream(question());
        let first = until_first_chunk(&mut stream).await;
        let Some(Ok(StreamItem::Chunk(chunk))) = first.last() else {
            panic!("the stream ended before its first chunk: {first:?}");
        };
        assert_eq!(
            (chunk.predictor.as_str(), chunk.field.as_str()),
            ("predict", "reasoning")
        );
        assert!(REASONING.starts_with(chunk.delta.as_str()), "{chunk:?}");
        // The LM is held at its gate: it has not finished, and has sent only what came before.
        assert_eq!(lm.probe.completed.load(Ordering::SeqCst), 0);
        assert!(lm.probe.deltas.load(Ordering::SeqCst) <= 10);

        open.send_replace(true);
        let mut items = first;
        items.extend(stream.collect::<Vec<_>>().await);
        assert_eq!(lm.probe.completed.load(Ordering::SeqCst), 1);
        let Some(Ok(StreamItem::Final(outputs))) = items.last() else {
            panic!("the stream does not end with its prediction: {items:?}");
        };
        assert_eq!(outputs["answer"], ANSWER);
        assert_eq!(outputs["reasoning"], REASONING);
        // In order, one field after the other, each concatenating to its final value (DSPy's
        // listeners strip the whitespace around a field, as the parsed values are).
        assert_eq!(
            field_sequence(&items),
            [
                ("predict".to_string(), "reasoning".to_string()),
                ("predict".to_string(), "answer".to_string())
            ]
        );
        let text = streamed_text(&items);
        assert_eq!(text["reasoning"], REASONING);
        assert_eq!(text["answer"], ANSWER);
        for field in ["reasoning", "answer"] {
            let last: Vec<bool> = chunks(&items)
                .iter()
                .filter(|c| c.field == field)
                .map(|c| c.is_last)
                .collect();
            assert_eq!(last.iter().filter(|l| **l).count(), 1, "{field}: {last:?}");
            assert_eq!(last.last(), Some(&true), "{field}: the last chunk ends it");
        }
        assert!(
            chunks(&items).len() > 5,
            "the reasoning came in many chunks: {items:?}"
        );
        // One LM request, streamed.
        assert_eq!(server.stats().requests_to("/v1/chat/completions"), 1);
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn status_messages_come_before_and_between_the_chunks() {
    within(180, async {
        let (_server, _lm, open, pool, cot) = paced_cot(completion(), 0).await;
        open.send_replace(true);

        let items: Vec<_> = cot
            .stream_with(
                question(),
                &StreamOptions::new().listen("answer"),
                StatusMessages::All,
            )
            .collect()
            .await;
        let statuses: Vec<&str> = items
            .iter()
            .filter_map(|item| match item {
                Ok(StreamItem::Status(message)) => Some(message.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            statuses.first(),
            Some(&"Running ChainOfThought..."),
            "{items:?}"
        );
        assert!(statuses.contains(&"Calling the LM..."), "{statuses:?}");
        assert!(statuses.contains(&"The LM answered."), "{statuses:?}");
        // Only the field listened to streams.
        assert_eq!(
            field_sequence(&items),
            [("predict".to_string(), "answer".to_string())]
        );
        assert!(matches!(items.first(), Some(Ok(StreamItem::Status(_)))));
        let Some(Ok(StreamItem::Final(outputs))) = items.last() else {
            panic!("no prediction last: {items:?}");
        };
        assert_eq!(outputs["answer"], ANSWER);

        // A field no predictor outputs is a clear error from the worker.
        let items: Vec<_> = cot
            .stream_with(
                question(),
                &StreamOptions::new().listen("verdict"),
                StatusMessages::Tools,
            )
            .collect()
            .await;
        let [Err(StreamError::Call(Error::Bridge(BridgeError::Remote { error, .. })))] =
            items.as_slice()
        else {
            panic!("expected one BadRequest: {items:?}");
        };
        assert_eq!(error.kind, "BadRequest");
        assert!(error.message.contains("`verdict`"), "{error:?}");
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_bridged_chain_of_thought_streams_like_the_native_one() {
    within(180, async {
        let server = server(completion()).await;
        let (lm, open) = PacedLm::new(&server, 0);
        open.send_replace(true);
        let pool = pool(venv_python())
            .eager_import(true)
            .build()
            .await
            .expect("the pool starts");
        let router = Router::with_pool(pool.clone());
        let lm_for_settings: Arc<dyn LanguageModel> = lm;
        let (native, bridged) = with_settings(Settings::new().lm_arc(lm_for_settings), async {
            let input = Example::new()
                .with("question", QUESTION)
                .with_inputs(["question"]);
            let native = router
                .clone()
                .force(Route::Native)
                .route("ChainOfThought", "question -> answer")
                .await
                .expect("native route");
            let bridged = router
                .clone()
                .force(Route::Bridged)
                .route("ChainOfThought", "question -> answer")
                .await
                .expect("bridged route");
            let native: Vec<_> = native.stream(&input).collect().await;
            let bridged: Vec<_> = bridged.stream(&input).collect().await;
            (native, bridged)
        })
        .await;

        let sequence = [
            ("predict".to_string(), "reasoning".to_string()),
            ("predict".to_string(), "answer".to_string()),
        ];
        assert_eq!(field_sequence(&native), sequence, "{native:?}");
        assert_eq!(field_sequence(&bridged), sequence, "{bridged:?}");
        assert_eq!(streamed_text(&native), streamed_text(&bridged));
        let last = |items: &[Result<StreamItem<Prediction>, StreamError>]| match items.last() {
            Some(Ok(StreamItem::Final(p))) => p.clone(),
            other => panic!("no prediction last: {other:?}"),
        };
        let (n, b) = (last(&native), last(&bridged));
        for field in ["reasoning", "answer"] {
            assert_eq!(n.get_str(field), b.get_str(field), "{field}");
        }
        assert_eq!(b.get_str("answer"), Some(ANSWER));
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_generation_and_the_worker_takes_the_next_call() {
    within(180, async {
        let (_server, lm, open, pool, cot) = paced_cot(completion(), 10).await;
        let pids = pool.worker_pids();

        let mut stream = cot.stream(question());
        let first = until_first_chunk(&mut stream).await;
        assert!(
            matches!(first.last(), Some(Ok(StreamItem::Chunk(_)))),
            "{first:?}"
        );
        drop(stream);
        // The LM stream serving the call is dropped without being read to its end: the LM
        // stopped at its gate.
        eventually(|| lm.probe.dropped.load(Ordering::SeqCst) == 1).await;
        assert_eq!(lm.probe.completed.load(Ordering::SeqCst), 0);
        assert!(lm.probe.deltas.load(Ordering::SeqCst) <= 10);

        // The same worker, cancelled and not killed, answers the next call (streamed or not).
        open.send_replace(true);
        let out = cot.call(question()).await.expect("the next call works");
        assert_eq!(out["answer"], ANSWER);
        let items: Vec<_> = cot.stream(question()).collect().await;
        assert!(
            matches!(items.last(), Some(Ok(StreamItem::Final(o))) if o["answer"] == ANSWER),
            "{items:?}"
        );
        assert_eq!(pool.worker_pids(), pids, "the worker was not replaced");
        let stats = pool.stats();
        assert_eq!((stats.crashes, stats.timeouts), (0, 0), "{stats:?}");
        assert_eq!(cot.recreated(), 0);
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_worker_killed_mid_stream_ends_the_stream_with_worker_crashed() {
    within(180, async {
        let (_server, lm, open, pool, cot) = paced_cot(completion(), 10).await;
        let pid = pool.worker_pids()[0];

        let mut stream = cot.stream(question());
        let mut items = until_first_chunk(&mut stream).await;
        assert!(
            matches!(items.last(), Some(Ok(StreamItem::Chunk(_)))),
            "{items:?}"
        );
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        items.extend(stream.collect::<Vec<_>>().await);
        let Some(Err(StreamError::Call(Error::Bridge(BridgeError::WorkerCrashed {
            op,
            reason,
            ..
        })))) = items.last()
        else {
            panic!("the stream does not end with WorkerCrashed: {items:?}");
        };
        assert_eq!(*op, "stream_call");
        assert!(reason.contains("SIGKILL"), "{reason}");
        assert!(
            !items.iter().any(|i| matches!(i, Ok(StreamItem::Final(_)))),
            "{items:?}"
        );
        // Not retried after its first chunk: one LM stream was opened.
        assert_eq!(lm.probe.opened.load(Ordering::SeqCst), 1);
        eventually(|| lm.probe.dropped.load(Ordering::SeqCst) == 1).await;

        // The module is created again on the replacement worker by its next call.
        open.send_replace(true);
        let out = cot
            .call(question())
            .await
            .expect("the call after the crash");
        assert_eq!(out["answer"], ANSWER);
        assert_eq!(cot.recreated(), 1);
        assert!(!pool.worker_pids().contains(&pid));
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_dspy_error_mid_stream_ends_the_stream_with_the_python_exception() {
    within(180, async {
        // The reasoning streams, then the completion has no answer: DSPy's adapter fails.
        let broken = format!("[[ ## reasoning ## ]]\n{REASONING}\n\n[[ ## completed ## ]]");
        let (_server, _lm, open, pool, cot) = paced_cot(broken, 0).await;
        open.send_replace(true);

        let items: Vec<_> = cot.stream(question()).collect().await;
        assert!(
            !chunks(&items).is_empty(),
            "the reasoning streamed first: {items:?}"
        );
        let Some(Err(StreamError::Call(Error::Bridge(BridgeError::Remote { op, error, .. })))) =
            items.last()
        else {
            panic!("the stream does not end with the Python exception: {items:?}");
        };
        assert_eq!(*op, "stream_call");
        assert!(error.kind.contains("Parse"), "{error:?}");
        assert!(
            !items.iter().any(|i| matches!(i, Ok(StreamItem::Final(_)))),
            "{items:?}"
        );
        // The worker lives on.
        let items: Vec<_> = cot.stream(question()).collect().await;
        assert!(matches!(items.last(), Some(Err(_))), "{items:?}");
        assert_eq!(pool.stats().crashes, 0);
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_worker_without_streaming_refuses_at_once_with_a_typed_error() {
    within(60, async {
        // The protocol test's fake worker: an older dspex_worker, whose `ready` lists no features.
        let fake =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/fake_worker.py");
        let pool = Pool::builder()
            .python("python3")
            .worker_args([fake])
            .workers(1)
            .start_timeout(Duration::from_secs(20))
            .build()
            .await
            .expect("the pool of fake workers starts");
        let predict: BridgedModule<Fields, Fields> =
            BridgedModule::create(&pool, "Predict", "question -> answer")
                .await
                .expect("the fake worker creates objects");
        let items: Vec<_> = predict.stream(question()).collect().await;
        let [Err(StreamError::Call(Error::Bridge(BridgeError::Unsupported { op, feature, .. })))] =
            items.as_slice()
        else {
            panic!("expected one Unsupported error: {items:?}");
        };
        assert_eq!((*op, *feature), ("stream_call", "stream"));
        // Nothing was sent: the worker is free and answers the next call.
        predict.call(question()).await.expect("a plain call works");
        assert_eq!(pool.stats().crashes, 0);
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_pool_streams_an_object_every_worker_has() {
    within(180, async {
        let server = server(completion()).await;
        let (lm, open) = PacedLm::new(&server, 0);
        open.send_replace(true);
        let pool = pool(venv_python())
            .eager_import(true)
            .lm(lm)
            .init(dspex::bridge::protocol::Op::Create {
                module: "ChainOfThought".into(),
                signature: "question -> answer".into(),
                instructions: None,
                fields: Map::new(),
                kwargs: Map::new(),
                session: None,
            })
            .build()
            .await
            .expect("the pool starts");
        // The streamed LM call is served in the task that polls the stream: its usage trackers
        // see it.
        let (items, usage) = dspex::lm::track_usage(
            pool.stream("o1", question(), Some(vec!["answer".into()]), None)
                .collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(usage.total().calls, 1, "{usage:?}");
        assert_eq!(
            field_sequence(&items),
            [("predict".to_string(), "answer".to_string())]
        );
        assert_eq!(streamed_text(&items)["answer"], ANSWER);
        let Some(Ok(StreamItem::Final(outputs))) = items.last() else {
            panic!("no prediction last: {items:?}");
        };
        assert_eq!(outputs["reasoning"], REASONING);
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_call_timeout_covers_the_whole_stream() {
    within(180, async {
        let server = server(completion()).await;
        // The gate never opens: the LM stalls after ten words.
        let (lm, _gate) = PacedLm::new(&server, 10);
        let pool = bridged_pool(lm.clone()).await;
        let cot = chain_of_thought(&pool)
            .await
            .with_timeout(Duration::from_secs(3));
        let items: Vec<_> = cot.stream(question()).collect().await;
        assert!(!chunks(&items).is_empty(), "{items:?}");
        let Some(Err(StreamError::Call(Error::Bridge(BridgeError::Timeout { op, .. })))) =
            items.last()
        else {
            panic!("the stream does not end with Timeout: {items:?}");
        };
        assert_eq!(*op, "stream_call");
        // The stalled LM stream was dropped with the call.
        eventually(|| lm.probe.dropped.load(Ordering::SeqCst) == 1).await;
        assert_eq!(lm.probe.completed.load(Ordering::SeqCst), 0);
        assert_eq!(pool.stats().timeouts, 1);
        pool.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_pool_stream_is_not_retried_on_another_worker_after_its_first_chunk() {
    within(180, async {
        let server = server(completion()).await;
        let (lm, open) = PacedLm::new(&server, 10);
        let pool = pool(venv_python())
            .workers(2)
            .eager_import(true)
            .lm(lm.clone())
            .init(dspex::bridge::protocol::Op::Create {
                module: "ChainOfThought".into(),
                signature: "question -> answer".into(),
                instructions: None,
                fields: Map::new(),
                kwargs: Map::new(),
                session: None,
            })
            .build()
            .await
            .expect("the pool starts");
        let mut stream = pool.stream("o1", question(), None, None);
        let mut items = until_first_chunk(&mut stream).await;
        assert!(
            matches!(items.last(), Some(Ok(StreamItem::Chunk(_)))),
            "{items:?}"
        );
        let busy: Vec<u32> = pool
            .stats()
            .workers
            .iter()
            .filter(|w| w.state == dspex::bridge::WorkerState::Busy)
            .map(|w| w.worker.pid)
            .collect();
        let [pid] = busy.as_slice() else {
            panic!("one worker runs the stream: {busy:?}");
        };
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        items.extend(stream.collect::<Vec<_>>().await);
        assert!(
            matches!(
                items.last(),
                Some(Err(StreamError::Call(Error::Bridge(
                    BridgeError::WorkerCrashed { .. }
                ))))
            ),
            "{items:?}"
        );
        // The other worker never got the call (its chunks would repeat the ones already seen).
        assert_eq!(lm.probe.opened.load(Ordering::SeqCst), 1);
        assert_eq!(pool.stats().retries, 0);

        // A new stream runs on a live worker.
        open.send_replace(true);
        let items: Vec<_> = pool.stream("o1", question(), None, None).collect().await;
        assert!(
            matches!(items.last(), Some(Ok(StreamItem::Final(o))) if o["answer"] == ANSWER),
            "{items:?}"
        );
        pool.shutdown().await;
    })
    .await;
}
