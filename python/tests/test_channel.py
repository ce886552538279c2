"""LmChannel in-process: lm_call frames name their parent request; calls for an operation that is no
longer running fail at once; a cancel wakes only its own operation's calls."""

import threading
import time

import pytest

from dspex_worker.channel import LmChannel
from dspex_worker.errors import Cancelled


class Op:
    def __init__(self, op_id):
        self.id = op_id
        self.cancelled = False


class Harness:
    def __init__(self, running):
        self.sent = []
        self.running = running
        self.channel = LmChannel(self.sent.append, lambda: self.running)

    def call_in_thread(self, parent=None):
        outcome = {}

        def run():
            try:
                outcome["ok"] = self.channel.call({"messages": []}, parent=parent)
            except BaseException as exc:  # Cancelled is a BaseException
                outcome["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        return thread, outcome

    def wait_sent(self, n):
        deadline = time.monotonic() + 5
        while len(self.sent) < n:
            assert time.monotonic() < deadline, self.sent
            time.sleep(0.001)
        return self.sent[n - 1]


def test_lm_calls_name_their_parent_and_get_their_result():
    h = Harness(Op(5))
    thread, outcome = h.call_in_thread()  # no parent given: the running operation's
    frame = h.wait_sent(1)
    assert (frame["kind"], frame["parent"]) == ("lm_call", 5)
    assert h.channel.deliver({"kind": "lm_result", "id": frame["id"], "ok": {"choices": ["x"]}})
    thread.join(5)
    assert outcome == {"ok": {"choices": ["x"]}}

    thread, outcome = h.call_in_thread(parent=5)
    assert h.wait_sent(2)["parent"] == 5
    h.channel.deliver({"kind": "lm_result", "id": h.sent[1]["id"], "ok": {"choices": ["y"]}})
    thread.join(5)
    assert outcome == {"ok": {"choices": ["y"]}}


def test_a_call_for_an_operation_no_longer_running_fails_without_a_frame():
    h = Harness(Op(6))
    with pytest.raises(Cancelled, match="request 5"):
        h.channel.call({"messages": []}, parent=5)  # a straggler of request 5, now 6 runs
    h.running = None
    with pytest.raises(Cancelled):
        h.channel.call({"messages": []}, parent=6)  # between operations
    with pytest.raises(Cancelled):
        h.channel.call({"messages": []})  # no parent, nothing running
    assert h.sent == [] and h.channel.waiting() == 0


def test_a_cancel_wakes_only_its_own_operations_calls():
    h = Harness(Op(8))
    mine, mine_outcome = h.call_in_thread(parent=8)
    h.wait_sent(1)
    # A straggler's slot from an earlier operation that is somehow still waiting must stay: plant one.
    h.running = Op(7)
    other, other_outcome = h.call_in_thread(parent=7)
    h.wait_sent(2)
    h.running = Op(8)
    h.channel.cancel(8)
    mine.join(5)
    assert isinstance(mine_outcome.get("error"), Cancelled)
    assert other.is_alive() and h.channel.waiting() == 1
    h.channel.deliver({"kind": "lm_result", "id": h.sent[1]["id"], "ok": {"choices": ["z"]}})
    other.join(5)
    assert other_outcome == {"ok": {"choices": ["z"]}}


def test_a_streamed_call_hands_each_chunk_over_before_its_result():
    h = Harness(Op(5))
    chunks = []
    outcome = {}

    def run():
        outcome["ok"] = h.channel.call({"messages": []}, parent=5, on_chunk=chunks.append)

    thread = threading.Thread(target=run)
    thread.start()
    frame = h.wait_sent(1)
    assert frame["stream"] is True
    assert h.channel.deliver_chunk({"kind": "lm_chunk", "id": frame["id"], "text": "Pa"})
    assert h.channel.deliver_chunk({"kind": "lm_chunk", "id": frame["id"], "text": "ris"})
    deadline = time.monotonic() + 5
    while len(chunks) < 2:  # handed over while the call still waits for its result
        assert time.monotonic() < deadline, chunks
        time.sleep(0.001)
    assert thread.is_alive() and outcome == {}
    h.channel.deliver({"kind": "lm_result", "id": frame["id"], "ok": {"choices": ["Paris"]}})
    thread.join(5)
    assert (chunks, outcome) == (["Pa", "ris"], {"ok": {"choices": ["Paris"]}})
    # Chunks for no call, for a call that does not stream, or without text are refused.
    assert not h.channel.deliver_chunk({"kind": "lm_chunk", "id": frame["id"], "text": "late"})
    thread, _ = h.call_in_thread(parent=5)
    plain = h.wait_sent(2)
    assert "stream" not in plain
    assert not h.channel.deliver_chunk({"kind": "lm_chunk", "id": plain["id"], "text": "x"})
    h.channel.deliver({"kind": "lm_result", "id": plain["id"], "ok": {"choices": ["x"]}})
    thread.join(5)


def test_a_cancel_wakes_a_streamed_call():
    op = Op(5)
    h = Harness(op)
    outcome = {}

    def run():
        try:
            h.channel.call({"messages": []}, parent=5, on_chunk=lambda text: None)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    frame = h.wait_sent(1)
    h.channel.deliver_chunk({"kind": "lm_chunk", "id": frame["id"], "text": "Pa"})
    op.cancelled = True
    h.channel.cancel(5)
    thread.join(5)
    assert isinstance(outcome.get("error"), Cancelled)
    assert h.channel.waiting() == 0
