"""The worker's side of `lm_call` / `lm_result`: a blocking call for LM completions over the bridge.

Any thread may call (DSPy's evaluators and optimizers run LM calls on thread pools); each call gets
its own id from the worker's counter, names the request whose operation it serves (`parent`), and
blocks until the reader thread delivers its `lm_result`, or until that operation is cancelled. A
call made for an operation that is no longer running (a straggler thread of a finished or
cancelled operation) fails at once with Cancelled.

A streamed call (`on_chunk` given) sends `"stream": true` and hands each `lm_chunk` frame's text to
`on_chunk`, on the calling thread, as it arrives, until the `lm_result`. Standard library only.
"""

import itertools
import queue
import threading

from .errors import Cancelled, LmCallFailed

# The DSPy setting that names the request an LM call serves: the worker runs `call` and `optimize`
# inside `dspy.context(dspex_request=<request id>)`, and DSPy hands its settings to the threads it
# starts (Parallel, Evaluate, optimizers, asyncify), so BridgeLM finds the parent on any of them.
PARENT_SETTING = "dspex_request"
# The variables of the session a request runs in (its `session_state`), under the same DSPy
# setting mechanism, so `dspex_worker.session_state()` finds them on DSPy's threads too.
SESSION_STATE_SETTING = "dspex_session_state"

_current = None


def current():
    """The worker's channel; RuntimeError outside a worker process."""
    if _current is None:
        raise RuntimeError("dspex_worker: no bridge channel (BridgeLM only works inside a running worker)")
    return _current


def install(channel):
    global _current
    _current = channel


class _Slot:
    """One waiting call: the reader puts ("chunk", text), ("result", message) or ("cancel", None)."""

    __slots__ = ("items", "cancelled", "parent", "streaming")

    def __init__(self, parent, streaming):
        self.items = queue.SimpleQueue()
        self.cancelled = False
        self.parent = parent
        self.streaming = streaming


class LmChannel:
    def __init__(self, send, running):
        """send(message) writes one frame; running() is the running operation (with `id` and
        `cancelled`), or None between operations."""
        self._send = send
        self._running = running
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._slots = {}

    def call(self, request, parent=None, on_chunk=None):
        """Send an `lm_call` for the operation of request `parent` and block for its result: the
        `ok` object of the `lm_result`. Without `parent`, the call serves the running operation.
        With `on_chunk`, the call is streamed: `on_chunk(text)` runs for each `lm_chunk` first.

        Raises LmCallFailed for an error result, and Cancelled when the operation is cancelled or
        no longer running.
        """
        if parent is None:
            op = self._running()
            parent = op.id if op is not None else None
        slot = _Slot(parent, on_chunk is not None)
        with self._lock:
            call_id = next(self._ids)
            self._slots[call_id] = slot
        try:
            # Checked after the slot is registered: a cancel sets its flag before it wakes the
            # registered slots, so it either sees this slot or this check sees the flag.
            op = self._running()
            if op is None or op.id != parent:
                raise Cancelled(f"an LM call for request {parent}, whose operation is no longer running")
            if op.cancelled:
                raise Cancelled("cancelled before an LM call")
            frame = {"kind": "lm_call", "id": call_id, "parent": parent, "request": request}
            if on_chunk is not None:
                frame["stream"] = True
            self._send(frame)
            while True:
                kind, item = slot.items.get()
                if kind == "cancel":
                    raise Cancelled(f"cancelled while waiting for lm_result {call_id}")
                if kind == "result":
                    message = item
                    break
                on_chunk(item)
        finally:
            with self._lock:
                self._slots.pop(call_id, None)
        if "error" in message and message["error"] is not None:
            error = message["error"] if isinstance(message["error"], dict) else {"message": str(message["error"])}
            raise LmCallFailed(error.get("type"), error.get("message"))
        ok = message.get("ok")
        if not isinstance(ok, dict):
            raise LmCallFailed("BadFrame", f"lm_result {call_id} has neither an `ok` object nor an `error`")
        return ok

    def deliver(self, message):
        """Hand an `lm_result` to its waiting call; False when nobody waits for that id."""
        with self._lock:
            slot = self._slots.get(message.get("id"))
        if slot is None:
            return False
        slot.items.put(("result", message))
        return True

    def deliver_chunk(self, message):
        """Hand an `lm_chunk` to its streamed call; False when no streamed call waits for that id."""
        with self._lock:
            slot = self._slots.get(message.get("id"))
        text = message.get("text")
        if slot is None or not slot.streaming or not isinstance(text, str):
            return False
        slot.items.put(("chunk", text))
        return True

    def cancel(self, parent):
        """Wake every call waiting for request `parent`'s operation with Cancelled."""
        with self._lock:
            slots = [slot for slot in self._slots.values() if slot.parent == parent]
        for slot in slots:
            slot.cancelled = True
            slot.items.put(("cancel", None))

    def waiting(self):
        with self._lock:
            return len(self._slots)
