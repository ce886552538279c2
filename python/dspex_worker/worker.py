"""The worker's core: a reader loop on the main thread and one executor thread.

The reader answers `ping` and `cancel` at once, hands `lm_result` frames to the LM call waiting for
them, and queues every other request for the executor, which runs them one at a time in arrival
order. Every request gets exactly one response; failures are structured errors, never a dead pipe.
"""

import itertools
import logging
import os
import queue
import threading

from . import channel as channel_module
from .errors import BadFrame, BadRequest, Cancelled, UnknownOp, error_payload
from . import framing
from .framing import FrameError, encode_frame, read_frame, write_all

log = logging.getLogger("dspex_worker")

IMMEDIATE_OPS = ("ping", "cancel")
EXECUTOR_OPS = ("configure", "create", "call", "stream_call", "save_state", "load_state", "optimize", "drop",
                "close_session", "shutdown")
# What this worker does beyond protocol 1's first version, announced in `ready` (PROTOCOL.md).
FEATURES = ("stream",)

try:
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):
    _PAGE_SIZE = 4096

# /proc/self/statm, kept open: every ping reports the resident set size, and one pread(2) of an
# open descriptor costs a tenth of opening the file anew (a ping is answered in microseconds).
# (pid, fd): a forked child must not report its parent's memory.
_statm = (None, None)


def rss_mb():
    """Resident set size in MiB (current, from /proc; peak from getrusage where /proc is missing)."""
    global _statm
    pid = os.getpid()
    if _statm[0] != pid:
        try:
            _statm = (pid, os.open("/proc/self/statm", os.O_RDONLY))
        except OSError:
            _statm = (pid, None)
    if _statm[1] is not None:
        try:
            return int(os.pread(_statm[1], 256, 0).split()[1]) * _PAGE_SIZE / (1024 * 1024)
        except (OSError, ValueError, IndexError):
            pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _exit(status):
    # os._exit: the executor may be blocked in DSPy code; nothing must wait for it.
    try:
        import sys

        sys.stderr.flush()
    except Exception:
        pass
    os._exit(status)


class _Op:
    __slots__ = ("id", "request", "cancelled")

    def __init__(self, op_id, request):
        self.id = op_id
        self.request = request
        self.cancelled = False


class Worker:
    def __init__(self, reader, out_fd, dspy_version=None, cpu_seconds=None):
        self._cpu_seconds = cpu_seconds
        self._reader = reader
        self._out_fd = out_fd
        self._write_lock = threading.Lock()
        # The encodings announced in `ready`; MessagePack is read only when announced, and sent
        # (for frames over the threshold) only once the pool's `frames` message has set it.
        self._encodings = framing.encodings()
        self._msgpack_above = None
        self._lock = threading.Lock()  # guards _pending and _current
        self._pending = {}  # request id -> _Op, queued or running, not yet answered
        self._current = None  # the running _Op
        self._queue = queue.SimpleQueue()
        self.channel = channel_module.LmChannel(self.send, self._running)
        channel_module.install(self.channel)
        self.dspy_version = dspy_version
        from .ops import Operations

        self.ops = Operations(self)
        self._executor = threading.Thread(target=self._executor_loop, name="dspex-executor", daemon=True)

    # ---- output -------------------------------------------------------------------------------
    def send(self, message):
        frame = encode_frame(message, self._msgpack_above)
        with self._write_lock:
            try:
                write_all(self._out_fd, frame)
            except (BrokenPipeError, OSError) as exc:
                log.error("stdout closed (%s): the pool is gone, exiting", exc)
                _exit(0)

    def respond_ok(self, op_id, result):
        try:
            self.send({"kind": "response", "id": op_id, "ok": result})
        except (TypeError, ValueError, OverflowError, FrameError) as exc:  # not encodable: still one answer
            self.respond_error(op_id, exc)

    def respond_error(self, op_id, exc):
        self.send({"kind": "response", "id": op_id, "error": error_payload(exc)})

    # ---- start and the reader loop ----------------------------------------------------------
    def run(self):
        """Send `ready`, then read frames until EOF (exit 0) or a framing error (exit 2). Never returns."""
        import platform

        self._executor.start()
        self.send({"kind": "ready", "protocol": 1, "pid": os.getpid(),
                   "python": platform.python_version(), "dspy": self.dspy_version,
                   "features": list(FEATURES), "encodings": self._encodings})
        msgpack = "msgpack" in self._encodings
        while True:
            try:
                frame = read_frame(self._reader, msgpack=msgpack)
            except FrameError as exc:
                log.error("protocol error on stdin, closing: %s", exc)
                _exit(2)
            except OSError as exc:
                log.error("stdin failed (%s): exiting", exc)
                _exit(0)
            if frame is None:
                log.info("EOF on stdin: the pool is gone, exiting")
                _exit(0)
            self.handle_frame(*frame)

    def handle_frame(self, payload, packed=False):
        try:
            message = framing.decode_payload(payload, packed)
        except (ValueError, UnicodeDecodeError) as exc:
            what = "MessagePack" if packed else "UTF-8 JSON"
            log.error("dropped a frame that is not %s: %s", what, exc)
            return
        if not isinstance(message, dict):
            log.error("dropped a frame that is not an object")
            return
        kind = message.get("kind")
        if kind == "frames":
            self._set_frames(message)
            return
        msg_id = message.get("id")
        has_id = isinstance(msg_id, int) and not isinstance(msg_id, bool)
        if kind == "lm_result":
            if not self.channel.deliver(message):
                log.warning("lm_result %r matches no waiting lm_call (cancelled or unknown); dropped", msg_id)
            return
        if kind == "lm_chunk":
            # After a cancel the pool may still have chunks of that call under way: dropped quietly.
            if not self.channel.deliver_chunk(message):
                log.debug("lm_chunk %r matches no streamed lm_call (cancelled or unknown); dropped", msg_id)
            return
        if kind != "request":
            if has_id:
                self.respond_error(msg_id, BadFrame(f"unknown message kind {kind!r}"))
            else:
                log.error("dropped a frame of unknown kind %r without an id", kind)
            return
        if not has_id:
            log.error("dropped a request without an integer id: %r", message.get("op"))
            return
        op = message.get("op")
        if op == "ping":
            self.respond_ok(msg_id, {"pong": True, "busy": self._current is not None, "rss_mb": round(rss_mb(), 2)})
        elif op == "cancel":
            self._cancel(msg_id, message)
        elif op in EXECUTOR_OPS:
            entry = _Op(msg_id, message)
            with self._lock:
                self._pending[msg_id] = entry
            self._queue.put(entry)
        elif not isinstance(op, str):
            self.respond_error(msg_id, BadRequest("a request needs a string `op`"))
        else:
            self.respond_error(msg_id, UnknownOp(f"unknown op {op!r}"))

    def _set_frames(self, message):
        """The pool's `frames` message: send frames over `msgpack_above` bytes as MessagePack."""
        above = message.get("msgpack_above")
        if "msgpack" not in self._encodings:
            log.warning("the pool asked for MessagePack frames, which this worker did not announce; staying with JSON")
        elif not isinstance(above, int) or isinstance(above, bool) or above < 0:
            log.error("dropped a `frames` message whose msgpack_above is not a non-negative integer: %r", above)
        else:
            self._msgpack_above = above
            log.debug("frames over %d bytes go out as MessagePack", above)

    # ---- cancel -------------------------------------------------------------------------------
    def _running(self):
        return self._current

    def _current_cancelled(self):
        current = self._current
        return current is not None and current.cancelled

    def _cancel(self, msg_id, message):
        target = message.get("target")
        if not isinstance(target, int) or isinstance(target, bool):
            self.respond_error(msg_id, BadRequest("cancel needs an integer `target`"))
            return
        queued = None
        with self._lock:
            entry = self._pending.get(target)
            if entry is not None and not entry.cancelled:
                entry.cancelled = True
                if entry is not self._current:
                    # Not started: answer it now; the executor skips it.
                    del self._pending[target]
                    queued = entry
                running = entry is self._current
            else:
                running = False
        if running:
            self.channel.cancel(target)
        self.respond_ok(msg_id, {"cancelled": entry is not None and (queued is not None or running)})
        if queued is not None:
            self.respond_error(target, Cancelled("cancelled before it started"))

    # ---- the executor -------------------------------------------------------------------------
    def _executor_loop(self):
        while True:
            entry = self._queue.get()
            with self._lock:
                if entry.cancelled:
                    continue  # already answered by the cancel
                self._current = entry
            op = entry.request.get("op")
            if self._cpu_seconds is not None:
                arm_cpu_limit(self._cpu_seconds)
            try:
                result = self.ops.run(op, entry.request)
                outcome = ("ok", result)
            except Cancelled as exc:
                outcome = ("error", exc)
            except BaseException as exc:  # SystemExit, MemoryError, ...: an answer, never a dead executor
                outcome = ("error", exc)
            with self._lock:
                self._current = None
                self._pending.pop(entry.id, None)
            if outcome[0] == "ok":
                self.respond_ok(entry.id, outcome[1])
            else:
                self.respond_error(entry.id, outcome[1])
            if op == "shutdown" and outcome[0] == "ok":
                log.info("shutdown: exiting")
                _exit(0)


# ---- the CPU limit ---------------------------------------------------------------------------------
def _cpu_used():
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def arm_cpu_limit(seconds):
    """Let the next operation use `seconds` of CPU (all threads together): the soft RLIMIT_CPU is set
    to the CPU used so far plus `seconds`. Past it the kernel sends SIGXCPU, whose default action
    kills the process (the pool sees the signal and names the limit). The hard limit stays as it
    was (unlimited, normally), so the soft one can be raised again for the next operation."""
    import math
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(_cpu_used()) + seconds
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def check_cpu_limit(seconds):
    """Whether the CPU limit can be armed (logged when not): checked before `ready`."""
    import resource

    try:
        if seconds <= 0:
            raise ValueError(f"--cpu-seconds must be positive, got {seconds}")
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard != resource.RLIM_INFINITY:
            raise ValueError(f"the hard RLIMIT_CPU is {hard} s, so a per-operation limit cannot be re-armed")
        resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, hard))
        # SIGXCPU's default action dumps core: no core files in the workers' directory.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        return True
    except (ValueError, OSError) as exc:
        log.error("cannot set RLIMIT_CPU: %s", exc)
        return False
