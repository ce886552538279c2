"""Handshake, framing, immediate ops and structured errors over a real worker process."""

import platform
import struct

from workerclient import WorkerClient, encode


def test_ready_frame_then_ping(worker):
    ready = worker.ready
    assert ready == {"kind": "ready", "protocol": 1, "pid": worker.proc.pid,
                     "python": platform.python_version(), "dspy": None, "features": ["stream"]}
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
