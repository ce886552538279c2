//! Delivery: one bounded queue and one thread per registered callback.

use super::{Callback, EndEvent, StartEvent, deliver_end, deliver_start};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// How many events a callback may fall behind before new ones are dropped, unless set with
/// [`CallbackHandle::with_capacity`].
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// The largest queue [`CallbackHandle::with_capacity`] makes (the queue's slots are allocated up
/// front).
const MAX_QUEUE_CAPACITY: usize = 1 << 20;

/// What the delivery thread receives.
enum Message {
    Start(Arc<StartEvent>),
    End(Arc<EndEvent>),
    /// Answered once every message before it has been handled.
    Flush(SyncSender<()>),
}

/// A registered [`Callback`]: its bounded queue and the thread that calls its hooks (see the
/// [module docs](super#guarantees-a-callback-can-neither-break-nor-block-a-call)). Clones share
/// the queue, the thread and the counters; the thread ends when the last clone is dropped.
///
/// ```
/// use dspex_runtime::callback::{Callback, CallbackHandle};
/// use std::time::Duration;
///
/// struct Quiet;
/// impl Callback for Quiet {}
///
/// let handle = CallbackHandle::with_capacity(Quiet, 16);
/// assert_eq!(handle.capacity(), 16);
/// assert!(handle.flush(Duration::from_secs(5)));
/// assert_eq!(handle.dropped(), 0);
/// ```
#[derive(Clone)]
pub struct CallbackHandle {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` when the delivery thread could not be started: every event is dropped.
    sender: Option<SyncSender<Message>>,
    name: &'static str,
    capacity: usize,
    dropped: AtomicU64,
}

impl fmt::Debug for CallbackHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackHandle")
            .field("callback", &self.inner.name)
            .field("capacity", &self.inner.capacity)
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl CallbackHandle {
    /// Registers `callback` with a queue of [`DEFAULT_QUEUE_CAPACITY`] events, starting its
    /// delivery thread.
    pub fn new(callback: impl Callback) -> Self {
        Self::with_capacity(callback, DEFAULT_QUEUE_CAPACITY)
    }

    /// Registers `callback` with a queue of `capacity` events (at least 1, at most 1,048,576:
    /// the slots are allocated up front). If the thread cannot
    /// be started (the OS refuses), a warning is logged and every event for this callback is
    /// dropped and counted; calls go on unaffected.
    pub fn with_capacity<C: Callback>(callback: C, capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_QUEUE_CAPACITY);
        let name = std::any::type_name::<C>();
        let (sender, receiver) = mpsc::sync_channel::<Message>(capacity);
        let spawned = std::thread::Builder::new()
            .name("dspex-callback".into())
            .spawn(move || {
                for message in receiver {
                    match message {
                        Message::Start(event) => guarded(name, &event.kind, "start", || {
                            deliver_start(&callback, &event);
                        }),
                        Message::End(event) => guarded(name, &event.kind, "end", || {
                            deliver_end(&callback, &event);
                        }),
                        Message::Flush(done) => {
                            let _ = done.try_send(());
                        }
                    }
                }
            });
        let sender = match spawned {
            Ok(_) => Some(sender),
            Err(error) => {
                tracing::warn!(callback = name, %error, "could not start the callback's thread; its events are dropped");
                None
            }
        };
        CallbackHandle {
            inner: Arc::new(Inner {
                sender,
                name,
                capacity,
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// How many events were dropped because the queue was full (or the thread could not start).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// The queue's capacity.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// The callback's type name, as warnings name it.
    pub fn callback_name(&self) -> &'static str {
        self.inner.name
    }

    /// Blocks the current thread until every event queued before this call has been handled,
    /// or `timeout` has passed; returns whether it was reached. While the queue is full, it
    /// waits for room (up to `timeout`) rather than dropping. Meant for tests and shutdown; in
    /// async code, call it from `spawn_blocking` if the wait could be long.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(sender) = &self.inner.sender else {
            return false;
        };
        let deadline = Instant::now() + timeout;
        let (done, reached) = mpsc::sync_channel(1);
        let mut message = Message::Flush(done);
        loop {
            match sender.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    message = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        reached
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    pub(crate) fn send_start(&self, event: &Arc<StartEvent>) {
        self.send(Message::Start(Arc::clone(event)));
    }

    pub(crate) fn send_end(&self, event: &Arc<EndEvent>) {
        self.send(Message::End(Arc::clone(event)));
    }

    /// Enqueues without waiting; a full queue drops the message and counts it.
    fn send(&self, message: Message) {
        let delivered = match &self.inner.sender {
            Some(sender) => sender.try_send(message).is_ok(),
            None => false,
        };
        if !delivered {
            let dropped = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    callback = self.inner.name,
                    dropped,
                    capacity = self.inner.capacity,
                    "a callback is too slow for its queue; its events are being dropped"
                );
            }
        }
    }
}

/// Runs one hook, logging a panic instead of propagating it.
fn guarded(name: &str, kind: &super::EventKind, phase: &str, hook: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(hook)) {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(a panic without a message)".into());
        tracing::warn!(callback = name, hook = %format_args!("on_{kind}_{phase}"), panic = %message, "a callback panicked; the call it observed is unaffected");
    }
}

/// Callbacks, in the order they are called: what
/// [`Settings::callbacks`](crate::settings::Settings::callbacks) and the modules'
/// `with_callbacks` take. Cheap to clone (the handles are shared).
///
/// ```
/// use dspex_runtime::callback::{CallbackHandle, Callbacks, TracingCallback};
///
/// let shared = CallbackHandle::new(TracingCallback::new());
/// let callbacks = Callbacks::new().with(TracingCallback::new()).with_handle(shared.clone());
/// assert_eq!(callbacks.len(), 2);
/// let one: Callbacks = shared.into();
/// assert_eq!(one.len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct Callbacks {
    handles: Arc<[CallbackHandle]>,
}

impl Default for Callbacks {
    fn default() -> Self {
        Callbacks {
            handles: Arc::new([]),
        }
    }
}

impl Callbacks {
    /// No callbacks.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `callback` added at the end, in a new [`CallbackHandle`] (which starts its thread).
    #[must_use]
    pub fn with(self, callback: impl Callback) -> Self {
        self.with_handle(CallbackHandle::new(callback))
    }

    /// With a registered callback added at the end (keep a clone of the handle to
    /// [`flush`](CallbackHandle::flush) it or read its [`dropped`](CallbackHandle::dropped)
    /// count).
    #[must_use]
    pub fn with_handle(self, handle: CallbackHandle) -> Self {
        self.handles.iter().cloned().chain([handle]).collect()
    }

    /// The registered callbacks, in order.
    pub fn handles(&self) -> &[CallbackHandle] {
        &self.handles
    }

    /// How many callbacks there are.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flushes every callback ([`CallbackHandle::flush`]), each with up to `timeout`; returns
    /// whether all were reached.
    pub fn flush(&self, timeout: Duration) -> bool {
        // Every handle is flushed, even after one fails.
        let reached: Vec<bool> = self.handles.iter().map(|h| h.flush(timeout)).collect();
        reached.into_iter().all(|r| r)
    }
}

impl From<CallbackHandle> for Callbacks {
    fn from(handle: CallbackHandle) -> Self {
        Callbacks::new().with_handle(handle)
    }
}

impl FromIterator<CallbackHandle> for Callbacks {
    fn from_iter<I: IntoIterator<Item = CallbackHandle>>(iter: I) -> Self {
        Callbacks {
            handles: iter.into_iter().collect(),
        }
    }
}
