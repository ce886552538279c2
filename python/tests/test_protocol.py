"""Handshake, framing, immediate ops and structured errors over a real worker process."""

import platform
import struct

from workerclient import WorkerClient, encode, encode_msgpack


def test_ready_frame_then_ping(worker):
    ready = worker.ready
    assert ready == {"kind": "ready", "protocol": 1, "pid": worker.proc.pid,
                     "python": platform.python_version(), "dspy": None, "features": ["stream"],
                     "encodings": ["json", "msgpack"]}
    pong = worker.call("ping")
    assert pong["pong"] is True and pong["busy"] is False
    assert isinstance(pong["rss_mb"], float) and 1 < pong["rss_mb"] < 4096


def test_eager_import_reports_dspy_version():
    client = WorkerClient("--eager-import")
    try:
        assert client.ready["dspy"] == "3.4.1"
    finally:
        client.close()


def test_unknown_op_is_a_structured_error_and_the_worker_lives(worker):
    error = worker.error("frobnicate")
    assert error["type"] == "UnknownOp" and "frobnicate" in error["message"]
    assert worker.call("ping")["pong"] is True


def test_bad_frames_never_kill_the_worker(worker):
    # Not JSON, not an object, no id: logged and dropped.
    worker.send_bytes(struct.pack(">I", 7) + b"{broken")
    worker.send_bytes(encode([1, 2, 3]))
    worker.send({"kind": "request", "op": "ping"})
    worker.send_bytes(struct.pack(">I", 0))
    # An unknown kind with an id: answered.
    worker.send({"kind": "gossip", "id": 41})
    frame = worker.wait_for(lambda f: f.get("id") == 41)
    assert frame["kind"] == "response" and frame["error"]["type"] == "BadFrame"
    # A request without an op, and ill-typed arguments.
    assert worker.error(None)["type"] == "BadRequest"
    assert worker.error("cancel", target="seven")["type"] == "BadRequest"
    assert worker.error("call", object=5, inputs={})["type"] == "BadRequest"
    # An lm_result nobody waits for is dropped.
    worker.send({"kind": "lm_result", "id": 999, "ok": {"choices": ["x"]}})
    assert worker.call("ping")["pong"] is True
    assert "not UTF-8 JSON" in worker.stderr_text()


def test_unknown_object_and_bad_module_names(worker):
    assert worker.error("call", object="o404", inputs={})["type"] == "UnknownObject"
    assert worker.error("drop", object="o404")["type"] == "UnknownObject"
    assert worker.error("save_state", object="o404")["type"] == "UnknownObject"
    error = worker.error("create", module="NoSuchModule", signature="question -> answer")
    assert error["type"] == "BadRequest" and "NoSuchModule" in error["message"]
    # An attribute of dspy that is not a module class, and a private name.
    assert worker.error("create", module="configure", signature="a -> b")["type"] == "BadRequest"
    assert worker.error("create", module="__loader__", signature="a -> b")["type"] == "BadRequest"
    # A signature DSPy rejects: DSPy's own exception, with its traceback.
    error = worker.error("create", module="Predict", signature="no arrow here")
    assert error["type"] not in ("BadRequest", "UnknownOp") and "Traceback" in error["traceback"]
    assert worker.call("ping")["pong"] is True


def test_configure_errors(worker):
    assert worker.error("configure")["type"] == "BadRequest"
    assert worker.error("configure", lm={"mode": "telepathy", "model": "x"})["type"] == "BadRequest"
    assert worker.error("configure", lm={"mode": "bridge"})["type"] == "BadRequest"
    assert worker.error("configure", lm={"mode": "bridge", "model": "m"}, adapter="xml")["type"] == "BadRequest"
    assert worker.call("configure", adapter="json") == {}
    assert worker.call("configure", lm={"mode": "direct", "model": "openai/x", "api_base": "http://127.0.0.1:9",
                                        "api_key": "k"}) == {}


def test_cancel_of_unknown_or_finished_request(worker):
    assert worker.call("cancel", target=12345) == {"cancelled": False}
    ping = worker.request("ping")
    worker.response(ping)
    assert worker.call("cancel", target=ping) == {"cancelled": False}


def test_rss_is_read_anew_each_time():
    # The worker keeps /proc/self/statm open and re-reads it per ping: the figure must move.
    from dspex_worker.worker import rss_mb

    before = rss_mb()
    ballast = bytearray(64 * 1024 * 1024)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page
    grown = rss_mb()
    assert grown - before > 48, (before, grown)
    del ballast


# ---- MessagePack frames -----------------------------------------------------------------------------
def _big_create(client, text):
    return client.call("create", module="Predict", signature="question -> answer", instructions=text)["object"]


def test_msgpack_requests_are_read_and_large_answers_go_out_as_msgpack_once_asked():
    client = WorkerClient()
    try:
        big = "é" * 200_000 + "\n\"quoted\""
        # A MessagePack request before `frames`: read (the worker announced it); answers stay JSON.
        client.send_bytes(encode_msgpack({"kind": "request", "id": 900, "op": "create", "module": "Predict",
                                          "signature": "question -> answer", "instructions": big}))
        frame = client.response(900, timeout=60)
        obj = frame["ok"]["object"]
        assert client.call("save_state", object=obj)["state"]["signature"]["instructions"] == big
        assert client.packed == [], "no MessagePack before the pool's `frames`"
        # The pool's threshold: answers over it come as MessagePack, smaller ones as JSON.
        client.send({"kind": "frames", "msgpack_above": 1024})
        state = client.call("save_state", object=obj)["state"]
        assert state["signature"]["instructions"] == big
        assert len(client.packed) == 1 and client.packed[0]["kind"] == "response"
        assert client.call("ping")["pong"] is True
        assert len(client.packed) == 1, "a small answer stays JSON"
        # Bytes, non-string keys and tuples arrive as JSON would carry them.
        from dspex_worker import framing

        assert framing._plain({1: b"ab\xff", None: (1, 2), "x": {2.5}}) == {
            "1": "ab\ufffd", "null": [1, 2], "x": [2.5]}
    finally:
        client.close()


def test_a_worker_announcing_json_only_refuses_msgpack_frames():
    client = WorkerClient(env={"DSPEX_WORKER_ENCODINGS": "json"})
    try:
        assert client.ready["encodings"] == ["json"]
        # Told a threshold anyway: it keeps answering in JSON.
        client.send({"kind": "frames", "msgpack_above": 10})
        assert client.call("ping")["pong"] is True
        assert client.packed == []
        # A MessagePack frame reads as a length over the limit, as in the protocol's first form.
        client.send_bytes(encode_msgpack({"kind": "request", "id": 5, "op": "ping"}))
        assert client.proc.wait(timeout=10) == 2
        assert "exceeds" in client.stderr_text()
    finally:
        client.close()


def test_garbage_msgpack_frames_are_dropped_and_the_worker_lives(worker):
    import struct as st

    for body in (b"\xc1", b"\x81\xa4kind", b"\x92\x01\x02", b"\x81\xa1k\xa1v\x00extra", b"\xa3\xff\xfe\xfd"):
        worker.send_bytes(st.pack(">I", len(body) | 0x80000000) + body)
    assert worker.call("ping")["pong"] is True
