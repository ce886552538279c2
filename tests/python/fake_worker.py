"""A fast stand-in for `python -m dspex_worker`, for the Rust pool's tests (stdlib only).

It speaks python/PROTOCOL.md (version 1): 4-byte big-endian length + JSON frames on stdin and
stdout, `ready` first, `ping` and `cancel` answered by the reader thread at once, every other
operation run in order on one executor thread, `lm_call` round trips, exit on stdin EOF, a
parent-death signal, its own stdout kept for frames (prints go to stderr).

No DSPy: objects are records. `call` behaves as its inputs say:
  {"sleep": s}          sleep s seconds first (on the executor thread)
  {"crash": true}       SIGKILL itself
  {"exit": n}           exit with status n
  {"fail": "msg"}       raise ValueError("msg") (an error response; the worker lives on)
  {"lm": "prompt"}      one lm_call with that prompt; outputs["answer"] is the first choice
  {"lm_parent": id}     ... that names request `id` as its parent instead of the running one
                        (a straggler of another operation)
  {"lm_parallel": n}    n lm_calls at once from n threads; outputs["answers"]
  {"print": "text"}     print(text) (must end up on stderr, not in the frames)
  {"garbage": true}     write a frame that is not JSON to stdout
  {"env": ["NAME"]}     outputs["env"] = {NAME: value or null}
  {"big": n}            outputs["big"] = "x" * n
Every call's outputs also echo the inputs and carry "pid", "object" and "calls" (calls run by
this worker). The object "echo" always exists; other objects come from `create`.

Start-up flags (besides the real worker's --eager-import and --memory-mb):
  --ready-delay S       sleep S seconds before `ready`
  --no-ready            never send `ready` (hang)
  --protocol N          announce protocol N
  --exit-at-start N     write a line to stderr and exit with status N before `ready`
  --junk-first          send a `response` frame before `ready`
  --kill-on-shutdown    SIGKILL itself on the `shutdown` operation instead of answering it
  --hang-if-exists PATH if PATH exists at start, append this process's pid to it and never
                        send `ready` (later workers of one pool hang while the first start)
"""

import argparse
import ctypes
import json
import os
import platform
import queue
import signal
import struct
import sys
import threading
import time
import traceback

MAX_FRAME = 64 * 1024 * 1024


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--eager-import", action="store_true")
    p.add_argument("--memory-mb", type=int)
    p.add_argument("--ready-delay", type=float, default=0.0)
    p.add_argument("--no-ready", action="store_true")
    p.add_argument("--protocol", type=int, default=1)
    p.add_argument("--exit-at-start", type=int)
    p.add_argument("--junk-first", action="store_true")
    p.add_argument("--kill-on-shutdown", action="store_true")
    p.add_argument("--hang-if-exists")
    return p.parse_args()


def die_with_parent():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # not Linux: stdin EOF still ends us
        pass
    parent = os.environ.get("DSPEX_PARENT_PID")
    if (parent and os.getppid() != int(parent)) or os.getppid() == 1:
        os._exit(0)


class Worker:
    def __init__(self, out, kill_on_shutdown=False):
        self.out = out
        self.kill_on_shutdown = kill_on_shutdown
        self.write_lock = threading.Lock()
        self.jobs = queue.Queue()
        self.busy = False
        self.running = None  # request id on the executor
        self.cancelled = set()
        self.objects = {"echo": {"module": "Echo", "signature": "", "state": {}}}
        self.next_object = 1
        self.calls = 0
        self.config = None
        self.lm_lock = threading.Lock()
        self.lm_next = 1
        self.lm_waiting = {}  # id -> [Event, result]

    # --- frames ---------------------------------------------------------------------------
    def send(self, obj):
        data = json.dumps(obj).encode("utf-8")
        with self.write_lock:
            self.out.write(struct.pack(">I", len(data)) + data)
            self.out.flush()

    def send_raw(self, data):
        with self.write_lock:
            self.out.write(struct.pack(">I", len(data)) + data)
            self.out.flush()

    def respond(self, rid, ok=None, error=None):
        msg = {"kind": "response", "id": rid}
        if error is not None:
            msg["error"] = error
        else:
            msg["ok"] = ok
        self.send(msg)

    # --- the reader (main thread) ---------------------------------------------------------
    def read_loop(self, inp):
        while True:
            header = read_exact(inp, 4)
            if header is None:
                os._exit(0)  # the pool is gone
            (n,) = struct.unpack(">I", header)
            if n > MAX_FRAME:
                sys.stderr.write("frame too large\n")
                os._exit(2)
            body = read_exact(inp, n)
            if body is None:
                os._exit(0)
            msg = json.loads(body)
            kind = msg.get("kind")
            if kind == "lm_result":
                with self.lm_lock:
                    slot = self.lm_waiting.get(msg["id"])
                if slot is not None:
                    slot[1] = msg
                    slot[0].set()
            elif kind == "request":
                op = msg.get("op")
                if op == "ping":
                    self.respond(msg["id"], {"pong": True, "busy": self.busy, "rss_mb": rss_mb()})
                elif op == "cancel":
                    target = msg.get("target")
                    found = target == self.running
                    if found:
                        self.cancelled.add(target)
                    self.respond(msg["id"], {"cancelled": found})
                else:
                    self.jobs.put(msg)
            else:
                sys.stderr.write(f"unknown frame kind {kind!r}\n")

    # --- the executor ---------------------------------------------------------------------
    def exec_loop(self):
        while True:
            msg = self.jobs.get()
            rid = msg["id"]
            self.running = rid
            self.busy = True
            try:
                result = self.run(msg)
                if rid in self.cancelled:
                    self.respond(rid, error={"type": "Cancelled", "message": "cancelled"})
                else:
                    self.respond(rid, result)
            except SystemExit:
                raise
            except BaseException as e:  # noqa: BLE001 - every error is an answer
                self.respond(
                    rid,
                    error={
                        "type": type(e).__name__,
                        "message": str(e),
                        "traceback": traceback.format_exc(),
                    },
                )
            finally:
                self.busy = False
                self.running = None
                self.cancelled.discard(rid)
            if msg.get("op") == "shutdown":
                os._exit(0)

    def obj(self, msg):
        oid = msg.get("object")
        if oid not in self.objects:
            raise KeyError(f"no object {oid!r} in worker {os.getpid()}")
        return oid, self.objects[oid]

    def run(self, msg):
        op = msg.get("op")
        if op == "configure":
            self.config = {"lm": msg["lm"], "adapter": msg.get("adapter")}
            return {}
        if op == "create":
            oid = f"o{self.next_object}"
            self.next_object += 1
            self.objects[oid] = {
                "module": msg["module"],
                "signature": msg["signature"],
                "session": msg.get("session"),
                "state": {"demos": [], "signature": msg["signature"]},
            }
            return {"object": oid}
        if op == "call":
            oid, obj = self.obj(msg)
            return {"outputs": self.call(oid, obj, msg.get("inputs") or {})}
        if op == "save_state":
            _, obj = self.obj(msg)
            return {"state": obj["state"]}
        if op == "load_state":
            _, obj = self.obj(msg)
            obj["state"] = msg["state"]
            return {}
        if op == "optimize":
            _, obj = self.obj(msg)
            obj["state"] = {
                "optimized_by": msg["optimizer"],
                "trainset": len(msg["trainset"]),
                "input_keys": msg["input_keys"],
                "metric": msg.get("metric"),
            }
            return {"state": obj["state"]}
        if op == "drop":
            oid, _ = self.obj(msg)
            del self.objects[oid]
            return {}
        if op == "shutdown":
            if self.kill_on_shutdown:
                os.kill(os.getpid(), signal.SIGKILL)
            return {}
        raise ValueError(f"unknown op {op!r}")

    def call(self, oid, obj, inputs):
        self.calls += 1
        if "sleep" in inputs:
            time.sleep(float(inputs["sleep"]))
        if inputs.get("crash"):
            os.kill(os.getpid(), signal.SIGKILL)
        if "exit" in inputs:
            os._exit(int(inputs["exit"]))
        if "fail" in inputs:
            raise ValueError(inputs["fail"])
        if inputs.get("garbage"):
            self.send_raw(b"this is not json")
        if "print" in inputs:
            print(inputs["print"])
        out = dict(inputs)
        out.update({"pid": os.getpid(), "object": oid, "calls": self.calls, "module": obj["module"]})
        if "lm" in inputs:
            out["answer"] = self.lm_call(inputs["lm"], inputs.get("lm_parent"))
        if "lm_parallel" in inputs:
            n = int(inputs["lm_parallel"])
            answers = [None] * n

            def one(i):
                answers[i] = self.lm_call(f"parallel {i}")

            threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            out["answers"] = answers
        if "env" in inputs:
            out["env"] = {k: os.environ.get(k) for k in inputs["env"]}
        if "big" in inputs:
            out["big"] = "x" * int(inputs["big"])
        return out

    def lm_call(self, prompt, parent=None):
        if parent is None:
            parent = self.running
        event = threading.Event()
        with self.lm_lock:
            lid = self.lm_next
            self.lm_next += 1
            self.lm_waiting[lid] = [event, None]
        model = (self.config or {}).get("lm", {}).get("model", "fake/model")
        self.send(
            {
                "kind": "lm_call",
                "id": lid,
                "parent": parent,
                "request": {
                    "model": model,
                    "messages": [{"role": "user", "content": prompt}],
                    "temperature": 0.0,
                    "max_tokens": 100,
                    "n": 1,
                    "stop": None,
                    "extra": {},
                },
            }
        )
        event.wait()
        with self.lm_lock:
            _, result = self.lm_waiting.pop(lid)
        if "error" in result:
            err = result["error"]
            raise RuntimeError(f"{err['type']}: {err['message']}")
        return result["ok"]["choices"][0]


def read_exact(f, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def rss_mb():
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except OSError:
        return 0.0


def main():
    args = parse_args()
    die_with_parent()
    if args.memory_mb:
        import resource

        limit = args.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # Frames go to the original stdout; everything else written to fd 1 lands on stderr.
    proto = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    out = os.fdopen(proto, "wb", buffering=0)
    inp = os.fdopen(0, "rb", buffering=0)
    worker = Worker(out, kill_on_shutdown=args.kill_on_shutdown)
    if args.exit_at_start is not None:
        sys.stderr.write("fake worker: exiting at start as asked\n")
        sys.stderr.flush()
        os._exit(args.exit_at_start)
    if args.ready_delay:
        time.sleep(args.ready_delay)
    if args.junk_first:
        worker.send({"kind": "response", "id": 0, "ok": {}})
    if args.hang_if_exists and os.path.exists(args.hang_if_exists):
        with open(args.hang_if_exists, "a") as f:
            f.write(f"{os.getpid()}\n")
        args.no_ready = True
    if args.no_ready:
        while True:
            time.sleep(3600)
    worker.send(
        {
            "kind": "ready",
            "protocol": args.protocol,
            "pid": os.getpid(),
            "python": platform.python_version(),
            "dspy": None,
        }
    )
    threading.Thread(target=worker.exec_loop, daemon=True).start()
    worker.read_loop(inp)


if __name__ == "__main__":
    main()
