"""The fork server: stubs get forked workers with DSPy imported; nothing outlives its stub."""

import os
import signal
import subprocess
import time
import uuid

import pytest
from workerclient import PYTHON_DIR, WorkerClient, chat_completion, wait_gone, worker_command, worker_env


@pytest.fixture
def server():
    """A running fork server under a fresh name; yields (name, process)."""
    name = f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(worker_command("--fork-server", name), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=worker_env(), cwd=PYTHON_DIR)
    line = proc.stdout.readline()
    assert line == b"ready\n", line
    yield name, proc
    if proc.poll() is None:
        proc.stdin.close()
        proc.wait(timeout=5)


def forked_pid(client):
    """The pid of the forked worker behind a stub (the `ready` frame's pid)."""
    pid = client.ready["pid"]
    assert pid != client.proc.pid, "the stub itself answered: the server did not fork"
    return pid


def test_a_stub_gets_a_worker_with_dspy_already_imported(server):
    name, _ = server
    started = time.monotonic()
    client = WorkerClient("--fork-from", name)
    try:
        assert client.ready["kind"] == "ready"
        assert client.ready["dspy"] == "3.4.1"  # imported once, by the server
        assert time.monotonic() - started < 10
        pid = forked_pid(client)
        # The worker joined the stub's process group (the pool kills groups).
        assert os.getpgid(pid) == os.getpgid(client.proc.pid)
        client.call("configure", lm={"mode": "bridge", "model": "openai/fork-test"}, adapter="chat")
        client.call("create", module="Predict", signature="question -> answer")
        out = client.call("call", object="o1", inputs={"question": "q"},
                          on_lm=lambda request: [chat_completion(answer="forked")])
        assert out == {"outputs": {"answer": "forked"}}
        # A clean shutdown: the stub exits with the worker's status 0.
        assert client.call("shutdown") == {}
        assert client.proc.wait(timeout=5) == 0
        assert wait_gone(pid, 5)
    finally:
        client.close()


def test_killing_the_stub_kills_its_worker_and_the_worker_dying_ends_the_stub(server):
    name, _ = server
    a = WorkerClient("--fork-from", name)
    b = WorkerClient("--fork-from", name)
    try:
        worker_a, worker_b = forked_pid(a), forked_pid(b)
        # SIGKILL of the stub alone (not its group): the server kills the worker.
        os.kill(a.proc.pid, signal.SIGKILL)
        assert a.proc.wait(timeout=5) == -signal.SIGKILL
        assert wait_gone(worker_a, 5), "a forked worker outlived its stub"
        # SIGKILL of the worker: the stub dies of the same signal, as a plain worker would.
        os.kill(worker_b, signal.SIGKILL)
        assert b.proc.wait(timeout=5) == -signal.SIGKILL
    finally:
        a.close()
        b.close()


def test_without_a_server_the_stub_starts_a_worker_of_its_own():
    client = WorkerClient("--fork-from", f"missing-{uuid.uuid4().hex[:8]}")
    try:
        assert client.ready["pid"] == client.proc.pid
        assert client.call("ping")["pong"] is True
        assert "unavailable" in client.stderr_text()
    finally:
        client.close()


def test_the_server_exits_on_stdin_eof_and_its_workers_live_on_with_their_stubs(server):
    name, proc = server
    client = WorkerClient("--fork-from", name)
    try:
        proc.stdin.close()
        assert proc.wait(timeout=5) == 0
        assert client.call("ping")["pong"] is True
        client.proc.stdin.close()  # EOF: the worker exits; the stub follows
        assert client.proc.wait(timeout=5) in (0, 1)
        assert wait_gone(forked_pid(client), 5)
    finally:
        client.close()
