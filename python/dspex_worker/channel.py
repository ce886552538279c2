"""The worker's side of `lm_call` / `lm_result`: a blocking call for LM completions over the bridge.

Any thread may call (DSPy's evaluators and optimizers run LM calls on thread pools); each call gets
its own id from the worker's counter and blocks until the reader thread delivers its `lm_result`, or
until the operation it serves is cancelled. Standard library only.
"""

import itertools
import threading

from .errors import Cancelled, LmCallFailed

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
    __slots__ = ("event", "message", "cancelled")

    def __init__(self):
        self.event = threading.Event()
        self.message = None
        self.cancelled = False


class LmChannel:
    def __init__(self, send, is_cancelled):
        """send(message) writes one frame; is_cancelled() says whether the running operation was cancelled."""
        self._send = send
        self._is_cancelled = is_cancelled
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._slots = {}

    def call(self, request):
        """Send an `lm_call` and block for its result: the `ok` object of the `lm_result`.

        Raises LmCallFailed for an error result and Cancelled when the operation is cancelled.
        """
        slot = _Slot()
        with self._lock:
            call_id = next(self._ids)
            self._slots[call_id] = slot
        try:
            # Checked after the slot is registered: a cancel sets its flag before it wakes the
            # registered slots, so it either sees this slot or this check sees the flag.
            if self._is_cancelled():
                raise Cancelled("cancelled before an LM call")
            self._send({"kind": "lm_call", "id": call_id, "request": request})
            slot.event.wait()
        finally:
            with self._lock:
                self._slots.pop(call_id, None)
        if slot.cancelled:
            raise Cancelled(f"cancelled while waiting for lm_result {call_id}")
        message = slot.message
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
        slot.message = message
        slot.event.set()
        return True

    def cancel_all(self):
        """Wake every waiting call with Cancelled (only the running operation makes LM calls)."""
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            slot.cancelled = True
            slot.event.set()

    def waiting(self):
        with self._lock:
            return len(self._slots)
