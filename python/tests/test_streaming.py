"""stream_call with real DSPy 3.4.1 under dspy.streamify: the test plays the pool, answering the
streamed lm_call with lm_chunk frames one word at a time, and reads the stream_chunk / status frames."""

import re

from workerclient import chat_completion

REASONING = "Two and two make four, as everyone learns at school."
COMPLETION = chat_completion(reasoning=REASONING, answer="4")


def words(text):
    return re.findall(r"\S+\s*|\s+", text)


def stream_call(client, request_id, completion=COMPLETION, chunks_before_each_read=None):
    """Answer the streamed lm_calls of request_id word by word; the frames of the request, response last."""
    frames = []
    while True:
        frame = client.wait_for(lambda f: f.get("id") == request_id or f.get("kind") == "lm_call", timeout=30)
        if frame["kind"] == "lm_call":
            assert frame.get("stream") is True, frame
            assert frame["parent"] == request_id
            for word in words(completion):
                client.send({"kind": "lm_chunk", "id": frame["id"], "text": word})
            client.answer_lm_call(frame, [completion])
            continue
        frames.append(frame)
        if frame["kind"] == "response":
            return frames


def test_ready_announces_streaming(bridged):
    assert bridged.ready["features"] == ["stream"]


def test_stream_call_sends_chunks_then_the_prediction(bridged):
    bridged.call("create", module="ChainOfThought", signature="question -> answer")
    request = bridged.request("stream_call", object="o1", inputs={"question": "What is 2 + 2?"})
    frames = stream_call(bridged, request)
    chunks = [f for f in frames if f["kind"] == "stream_chunk"]
    assert frames[-1] == {"kind": "response", "id": request,
                          "ok": {"outputs": {"reasoning": REASONING, "answer": "4"}}}
    assert {(c["predictor"], c["id"]) for c in chunks} == {("predict", request)}
    assert [c["field"] for c in chunks] == sorted((c["field"] for c in chunks), key=["reasoning", "answer"].index)
    assert "".join(c["chunk"] for c in chunks if c["field"] == "reasoning") == REASONING
    assert "".join(c["chunk"] for c in chunks if c["field"] == "answer") == "4"
    assert [c["is_last"] for c in chunks if c["field"] == "answer"][-1] is True
    assert len([c for c in chunks if c["field"] == "reasoning"]) > 3


def test_stream_call_fields_status_and_bad_requests(bridged):
    bridged.call("create", module="ChainOfThought", signature="question -> answer")
    request = bridged.request("stream_call", object="o1", inputs={"question": "q"}, fields=["answer"], status="all")
    frames = stream_call(bridged, request)
    kinds = [f["kind"] for f in frames]
    assert kinds[0] == "status" and frames[0]["message"] == "Running ChainOfThought..."
    assert {f["field"] for f in frames if f["kind"] == "stream_chunk"} == {"answer"}
    assert "ok" in frames[-1]

    error = bridged.error("stream_call", object="o1", inputs={"question": "q"}, fields=["nope"])
    assert error["type"] == "BadRequest" and "`nope`" in error["message"]
    error = bridged.error("stream_call", object="o1", inputs={"question": "q"}, status="loud")
    assert error["type"] == "BadRequest"
    assert bridged.error("stream_call", object="o9", inputs={})["type"] == "UnknownObject"


def test_cancel_a_stream_waiting_for_its_lm(bridged):
    bridged.call("create", module="Predict", signature="question -> answer")
    request = bridged.request("stream_call", object="o1", inputs={"question": "q"})
    call = bridged.wait_for(lambda f: f.get("kind") == "lm_call")
    assert call["stream"] is True
    bridged.send({"kind": "lm_chunk", "id": call["id"], "text": "[[ ## answer ## ]]\n"})
    bridged.send({"kind": "lm_chunk", "id": call["id"], "text": "Par"})
    assert bridged.call("cancel", target=request) == {"cancelled": True}
    assert bridged.response(request)["error"]["type"] == "Cancelled"
    # Chunks and the result of the cancelled call that were under way are dropped quietly.
    bridged.send({"kind": "lm_chunk", "id": call["id"], "text": "is"})
    bridged.send({"kind": "lm_result", "id": call["id"], "ok": {"choices": ["x"]}})
    out = bridged.call("call", object="o1", inputs={"question": "again"},
                       on_lm=lambda r: [chat_completion(answer="ok")])
    assert out == {"outputs": {"answer": "ok"}}
    assert bridged.call("ping")["busy"] is False
