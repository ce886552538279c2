"""The `stream_call` operation: a module run under `dspy.streamify`, its stream forwarded as frames.

Each `StreamResponse` of DSPy's stream listeners becomes a `stream_chunk` frame and each
`StatusMessage` a `status` frame, tagged with the request's id and sent as they arrive; the final
`Prediction` becomes the request's ordinary `response`. The LM calls of the streamed predictors are
streamed too (BridgeLM sends `lm_call`s with `"stream": true`), so chunks reach the pool while the
LM is still generating. Imports DSPy.
"""

import asyncio
import contextlib

import dspy
from dspy.streaming import StatusMessage, StatusMessageProvider, StreamListener, StreamResponse

from .errors import BadRequest, Cancelled


class AllStatusMessages(StatusMessageProvider):
    """`status: "all"`: DSPy's tool messages, plus a message as each module and LM call starts and ends."""

    def module_start_status_message(self, instance, inputs):
        return f"Running {type(instance).__name__}..."

    def module_end_status_message(self, outputs):
        return "Module finished."

    def lm_start_status_message(self, instance, inputs):
        return "Calling the LM..."

    def lm_end_status_message(self, outputs):
        return "The LM answered."


def status_provider(status):
    if status in (None, "tools"):
        return None  # DSPy's default provider: tool calls only
    if status == "all":
        return AllStatusMessages()
    raise BadRequest(f'`status` must be "tools" or "all", got {status!r}')


def listeners(module, fields):
    """One StreamListener per field, each bound to its predictor (so a field name several predictors
    share is not an error): by default every output field of the module's last predictor; a named
    field is taken from the last predictor that outputs it."""
    predictors = module.named_predictors()
    if not predictors:
        raise BadRequest(f"{type(module).__name__} has no predictor to stream")
    if fields is None:
        name, predictor = predictors[-1]
        return [StreamListener(signature_field_name=f, predict=predictor, predict_name=name)
                for f in predictor.signature.output_fields]
    if not all(isinstance(f, str) for f in fields):
        raise BadRequest("`fields` must be a list of output field names")
    out = []
    for field in fields:
        owner = None
        for name, predictor in predictors:
            if field in predictor.signature.output_fields:
                owner = (name, predictor)
        if owner is None:
            outputs = sorted({f for _, p in predictors for f in p.signature.output_fields})
            raise BadRequest(f"cannot stream `{field}`: no predictor of the module outputs it "
                             f"(outputs: {', '.join(outputs)})")
        out.append(StreamListener(signature_field_name=field, predict=owner[1], predict_name=owner[0]))
    return out


def run(worker, request_id, module, inputs, stream_listeners, provider):
    """Run `module(**inputs)` streamed; send the frames; the final Prediction."""
    program = dspy.streamify(module, status_message_provider=provider, stream_listeners=stream_listeners,
                             include_final_prediction_in_output_stream=True, async_streaming=True)

    async def consume():
        prediction = None
        async with contextlib.aclosing(program(**inputs)) as items:
            async for value in items:
                if worker._current_cancelled():
                    raise Cancelled("cancelled while streaming")
                if isinstance(value, StreamResponse):
                    worker.send({"kind": "stream_chunk", "id": request_id, "predictor": value.predict_name,
                                 "field": value.signature_field_name, "chunk": str(value.chunk),
                                 "is_last": bool(value.is_last_chunk)})
                elif isinstance(value, StatusMessage):
                    worker.send({"kind": "status", "id": request_id, "message": str(value.message)})
                elif isinstance(value, dspy.Prediction):
                    prediction = value
        if prediction is None:
            raise RuntimeError("the streamed program ended without a prediction")
        return prediction

    return asyncio.run(consume())
