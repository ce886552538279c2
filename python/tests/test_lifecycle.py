"""Start-up and ending: stdin EOF, parent death, shutdown, memory and CPU limits, oversize frames."""

import os
import struct
import subprocess
import sys
import textwrap
import time

from workerclient import (
    WorkerClient,
    encode,
    read_frames,
    wait_gone,
    worker_command,
    worker_env,
)


def test_stdin_eof_exits_at_once(worker):
    started = time.monotonic()
    worker.proc.stdin.close()
    assert worker.proc.wait(timeout=2) == 0
    assert time.monotonic() - started < 2


def test_stdin_eof_exits_while_the_executor_is_busy(bridged):
    bridged.call("create", module="Predict", signature="question -> answer")
    bridged.request("call", object="o1", inputs={"question": "never answered"})
    bridged.wait_for(lambda f: f.get("kind") == "lm_call")
    started = time.monotonic()
    bridged.proc.stdin.close()
    assert bridged.proc.wait(timeout=2) == 0
    assert time.monotonic() - started < 2


def test_shutdown_drains_earlier_requests_then_exits(bridged):
    bridged.call("create", module="Predict", signature="question -> answer")
    call_id = bridged.request("call", object="o1", inputs={"question": "q"})
    lm_call = bridged.wait_for(lambda f: f.get("kind") == "lm_call")
    shutdown_id = bridged.request("shutdown")
    bridged.answer_lm_call(lm_call, ["[[ ## answer ## ]]\nfine\n\n[[ ## completed ## ]]"])
    assert bridged.response(call_id)["ok"] == {"outputs": {"answer": "fine"}}
    assert bridged.response(shutdown_id)["ok"] == {}
    assert bridged.proc.wait(timeout=2) == 0


def test_shutdown_of_an_idle_worker(worker):
    assert worker.call("shutdown") == {}
    assert worker.proc.wait(timeout=2) == 0


INTERMEDIATE = textwrap.dedent("""
    import subprocess, sys, time
    stdin_fd, stdout_fd = int(sys.argv[1]), int(sys.argv[2])
    subprocess.Popen(sys.argv[3:], stdin=stdin_fd, stdout=stdout_fd)
    time.sleep(600)
""")


def test_worker_dies_with_its_parent_even_with_stdin_open():
    """The parent-death signal, not stdin EOF: this test keeps the worker's stdin open itself."""
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    parent = subprocess.Popen([sys.executable, "-c", INTERMEDIATE, str(stdin_r), str(stdout_w), *worker_command()],
                              pass_fds=(stdin_r, stdout_w), env=worker_env(), stderr=subprocess.DEVNULL)
    os.close(stdin_r)
    os.close(stdout_w)
    import queue
    import threading

    frames = queue.Queue()
    stdout = os.fdopen(stdout_r, "rb")
    threading.Thread(target=read_frames, args=(stdout, frames), daemon=True).start()
    try:
        ready = frames.get(timeout=30)
        assert ready["kind"] == "ready"
        pid = ready["pid"]
        os.write(stdin_w, encode({"kind": "request", "id": 1, "op": "ping"}))
        assert frames.get(timeout=5)["ok"]["pong"] is True
        parent.kill()
        parent.wait()
        started = time.monotonic()
        assert wait_gone(pid, timeout=2), "the worker outlived its parent by more than 2 s"
        assert time.monotonic() - started < 2
        assert frames.get(timeout=2) is None  # its stdout closed: it is gone, not just quiet
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        os.close(stdin_w)
        stdout.close()


def test_worker_exits_when_its_parent_is_already_gone():
    # DSPEX_PARENT_PID names the parent the pool expects; a worker adopted by someone else exits.
    proc = subprocess.run(worker_command(), input=b"", capture_output=True, timeout=10,
                          env=worker_env({"DSPEX_PARENT_PID": "1"}))
    assert proc.returncode == 0
    assert proc.stdout == b""
    assert b"parent process is already gone" in proc.stderr
    # The right parent pid: the worker starts (and exits on the EOF that follows).
    proc = subprocess.run(worker_command(), input=b"", capture_output=True, timeout=10,
                          env=worker_env({"DSPEX_PARENT_PID": str(os.getpid())}))
    assert proc.returncode == 0
    assert struct.unpack(">I", proc.stdout[:4])[0] == len(proc.stdout) - 4


def test_memory_limit_sets_rlimit_as():
    client = WorkerClient("--memory-mb", "3072")
    try:
        with open(f"/proc/{client.proc.pid}/limits") as f:
            line = next(line for line in f if line.startswith("Max address space"))
        assert line.split()[3:5] == [str(3072 * 1024 * 1024)] * 2
        assert client.call("ping")["pong"] is True
    finally:
        client.close()


def test_cpu_limit_is_armed_per_operation():
    client = WorkerClient("--cpu-seconds", "30")
    try:
        def cpu_limit():
            with open(f"/proc/{client.proc.pid}/limits") as f:
                line = next(line for line in f if line.startswith("Max cpu time"))
            return line.split()[3:5]

        # Before any operation: no soft limit yet; the hard one is left unlimited.
        assert cpu_limit() == ["unlimited", "unlimited"]
        client.call("create", module="Predict", signature="a -> b", timeout=30)
        soft, hard = cpu_limit()
        assert hard == "unlimited"
        # The CPU time used so far (DSPy imported before ready) plus the 30 s budget.
        assert 30 < int(soft) < 30 + 120, soft
        assert client.call("ping")["pong"] is True
    finally:
        client.close()


def test_memory_error_is_an_answer_not_a_crash():
    # A limit DSPy cannot be imported under: the failing op answers, the worker lives on.
    client = WorkerClient("--memory-mb", "120")
    try:
        error = client.error("create", module="Predict", signature="a -> b", timeout=30)
        assert error["type"] in ("MemoryError", "ImportError", "OSError"), error
        assert client.call("ping")["pong"] is True
    finally:
        client.close()


def test_oversize_frame_closes_the_worker(worker):
    worker.send_bytes(struct.pack(">I", 64 * 1024 * 1024 + 1))
    assert worker.proc.wait(timeout=2) == 2
    assert "exceeds" in worker.stderr_text()
