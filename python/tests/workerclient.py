"""A small test client for the dspex bridge protocol: spawns `python -m dspex_worker`, speaks frames."""

import json
import os
import queue
import struct
import subprocess
import sys
import tempfile
import threading
import time

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS_DIR = os.path.join(PYTHON_DIR, "tests")


def worker_env(extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PYTHON_DIR, TESTS_DIR])
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("DSPEX_PARENT_PID", None)
    # Nothing may reach the network: a direct-mode LM pointed anywhere would fail fast.
    env["NO_PROXY"] = "*"
    env.update(extra or {})
    return env


def worker_command(*args):
    return [sys.executable, "-m", "dspex_worker", *args]


def encode(message):
    payload = json.dumps(message).encode("utf-8")
    return struct.pack(">I", len(payload)) + payload


MSGPACK_FLAG = 0x80000000


def encode_msgpack(message):
    import msgpack

    payload = msgpack.packb(message, use_bin_type=True)
    return struct.pack(">I", len(payload) | MSGPACK_FLAG) + payload


def read_frames(stream, sink, packed=None):
    """Read frames (JSON, or MessagePack when the length word's high bit is set) from a binary
    stream into a queue; None marks EOF. The messages that came as MessagePack are also appended
    to `packed`, when given."""
    try:
        while True:
            header = stream.read(4)
            if len(header) < 4:
                break
            (word,) = struct.unpack(">I", header)
            length = word & ~MSGPACK_FLAG
            payload = stream.read(length)
            if len(payload) < length:
                sink.put(("truncated", payload))
                break
            if word & MSGPACK_FLAG:
                import msgpack

                message = msgpack.unpackb(payload, raw=False)
                if packed is not None:
                    packed.append(message)
            else:
                message = json.loads(payload)
            sink.put(message)
    finally:
        sink.put(None)


def chat_completion(**fields):
    """A ChatAdapter-formatted completion for the given output fields."""
    parts = [f"[[ ## {name} ## ]]\n{value}" for name, value in fields.items()]
    return "\n\n".join(parts + ["[[ ## completed ## ]]"])


class WorkerClient:
    def __init__(self, *args, env=None, ready=True):
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(worker_command(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=worker_env(env), cwd=PYTHON_DIR)
        self.frames = queue.Queue()
        self.packed = []  # the frames the worker sent as MessagePack
        self._reader = threading.Thread(target=read_frames, args=(self.proc.stdout, self.frames, self.packed),
                                        daemon=True)
        self._reader.start()
        self._ids = 0
        self.backlog = []  # frames received while waiting for something else
        self.lm_calls = []  # every lm_call frame answered by response()
        self.ready = self.recv(timeout=30) if ready else None

    # ---- raw frames ---------------------------------------------------------------------------
    def send(self, message):
        self.send_bytes(encode(message))

    def send_bytes(self, data):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def recv(self, timeout=10.0):
        if self.backlog:
            return self.backlog.pop(0)
        try:
            frame = self.frames.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no frame within {timeout}s; worker stderr:\n{self.stderr_text()}") from None
        if frame is None:
            self.frames.put(None)  # stay at EOF
            raise EOFError(f"worker stdout closed; stderr:\n{self.stderr_text()}")
        return frame

    def stderr_text(self):
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")

    # ---- requests -----------------------------------------------------------------------------
    def request(self, op, **args):
        """Send a request; returns its id."""
        self._ids += 1
        self.send({"kind": "request", "id": self._ids, "op": op, **args})
        return self._ids

    def wait_for(self, predicate, timeout=10.0):
        """The first frame matching predicate; other frames are kept for later recv() calls."""
        deadline = time.monotonic() + timeout
        skipped = []
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching frame within {timeout}s; got {skipped}; stderr:\n{self.stderr_text()}")
                frame = self.recv(timeout=remaining)
                if predicate(frame):
                    return frame
                skipped.append(frame)
        finally:
            self.backlog[:0] = skipped

    def response(self, request_id, on_lm=None, timeout=20.0):
        """Wait for the response to request_id; on_lm(request) -> choices|dict answers lm_calls meanwhile.

        on_lm returns a list of completion strings (usage is filled in), a full `ok` dict, or
        {"error": {...}} for an error result.
        """
        deadline = time.monotonic() + timeout
        while True:
            frame = self.wait_for(
                lambda f: (f.get("kind") == "response" and f.get("id") == request_id)
                or (on_lm is not None and f.get("kind") == "lm_call"),
                timeout=max(0.01, deadline - time.monotonic()),
            )
            if frame["kind"] == "response":
                return frame
            self.lm_calls.append(frame)
            self.answer_lm_call(frame, on_lm(frame["request"]))

    def answer_lm_call(self, frame, answer):
        if isinstance(answer, dict) and "error" in answer:
            self.send({"kind": "lm_result", "id": frame["id"], "error": answer["error"]})
            return
        if isinstance(answer, dict):
            ok = answer
        else:
            ok = {"choices": list(answer), "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                  "model": frame["request"]["model"]}
        self.send({"kind": "lm_result", "id": frame["id"], "ok": ok})

    def call(self, op, on_lm=None, timeout=20.0, **args):
        """request + response; returns the `ok` object, or raises AssertionError with the error."""
        frame = self.response(self.request(op, **args), on_lm=on_lm, timeout=timeout)
        assert "ok" in frame, f"{op} failed: {frame.get('error')}"
        return frame["ok"]

    def error(self, op, on_lm=None, timeout=20.0, **args):
        """request + response that must be an error; returns the error object."""
        frame = self.response(self.request(op, **args), on_lm=on_lm, timeout=timeout)
        assert "error" in frame, f"{op} unexpectedly succeeded: {frame.get('ok')}"
        error = frame["error"]
        assert set(error) >= {"type", "message", "traceback"}, error
        return error

    # ---- ending -------------------------------------------------------------------------------
    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def process_gone(pid):
    """True when pid no longer runs (missing, or a zombie nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process_gone(pid):
            return True
        time.sleep(0.02)
    return process_gone(pid)
