"""BridgeLM: a `dspy.BaseLM` whose completions come from the Rust LM layer over `lm_call` frames.

Imports DSPy; the worker imports this module only once DSPy is wanted.

DSPy 3.4.1 runs a BaseLM subclass that implements `forward`/`aforward` (and has no `_engine_spec`)
as an unmanaged legacy plugin: `dspy.clients.execution.prepare` sets `managed=False`, so DSPy's response
cache is never consulted or written (`use_cache` is False for unmanaged LMs) and DSPy adds no retries
(`retries = 0`). Both belong to the Rust side, which sees every call. `n` travels in the request: one
`lm_call` returns n choices (the legacy path keeps backend-native `n`; a managed engine would send n
separate requests). Usage from the `lm_result` flows into DSPy's usage tracker and history.

Inside `dspy.streamify` (DSPy's `settings.send_stream` set for the predictor being listened to), a
completion is streamed: the `lm_call` carries `"stream": true`, and each `lm_chunk` the pool sends
is passed to DSPy's send stream as a chunk for the calling predictor's listeners, as DSPy's own LM
does with litellm's streamed chunks, while the pool's LM is still generating.
"""

import asyncio
import math

import anyio
import dspy
from dspy.clients.call_context import stream_emitted
from dspy.clients.call_result import attributes
from dspy.clients.engines.streaming import EngineChunk
from dspy.dsp.utils.utils import dotdict
from dspy.utils.exceptions import LMError

from . import channel
from .errors import LmCallFailed

# Request keys that are top-level in an `lm_call`; every other non-None keyword goes to `extra`.
_TOP_LEVEL = ("temperature", "max_tokens", "n", "stop")
# Keys that configure a connection the bridge does not own, never sent to the Rust side.
_DROPPED = {"api_key", "api_base", "base_url", "num_retries", "callbacks", "model_type"}


class LmError(LMError):
    """The Rust LM layer answered an `lm_call` with an error."""

    default_code = "bridge"

    def __init__(self, message="", *, remote_type=None, **kwargs):
        self.remote_type = remote_type
        super().__init__(message, **kwargs)


def jsonable(value):
    """A JSON-safe copy of an LM argument (messages, response formats, tool specs, ...)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, type):
        schema = getattr(value, "model_json_schema", None)
        if callable(schema):  # a pydantic model class as a response_format
            return {"type": "json_schema", "json_schema": {"name": value.__name__, "schema": schema()}}
        return value.__name__
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:
            pass
    return str(value)


def _attributes(value):
    """Nested dotdicts: the response reads both as a dict and by attribute, like an SDK object."""
    if isinstance(value, dict):
        return dotdict({k: _attributes(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_attributes(v) for v in value]
    return value


class BridgeLM(dspy.BaseLM):
    """A DSPy LM whose every completion is an `lm_call` answered by the Rust side."""

    def __init__(self, model, model_type="chat", temperature=None, max_tokens=None, cache=True, **kwargs):
        if model_type != "chat":
            raise ValueError(f"BridgeLM speaks chat completions only, not model_type={model_type!r}")
        kwargs.pop("num_retries", None)  # retries are the Rust LM layer's
        super().__init__(model, model_type="chat", temperature=temperature, max_tokens=max_tokens,
                         cache=cache, num_retries=0, **kwargs)
        # Belt and braces: never let DSPy's response cache answer for the bridge, even if a later
        # DSPy routes this class through its managed path (which reads this flag).
        self._cache_responses = False

    def build_request(self, prompt=None, messages=None, **kwargs):
        """The `request` object of an `lm_call` for one DSPy completion."""
        merged = {**self.kwargs, **kwargs}
        cache = merged.pop("cache", self.cache)
        if messages is None:
            messages = [{"role": "user", "content": prompt}]
        request = {"model": self.model, "messages": jsonable(messages)}
        for key in _TOP_LEVEL:
            value = merged.pop(key, None)
            if value is None:
                continue
            if key == "stop" and isinstance(value, str):
                value = [value]
            request[key] = jsonable(value)
        extra = {k: jsonable(v) for k, v in merged.items() if v is not None and k not in _DROPPED}
        if cache is False:
            extra["cache"] = False  # DSPy asked for a fresh answer: the Rust cache should not serve one
        request["extra"] = extra
        return request

    def forward(self, prompt=None, messages=None, **kwargs):
        request = self.build_request(prompt=prompt, messages=messages, **kwargs)
        on_chunk = self._chunk_sender(request)
        try:
            ok = channel.current().call(request, parent=dspy.settings.get(channel.PARENT_SETTING),
                                        on_chunk=on_chunk)
        except LmCallFailed as exc:
            raise LmError(exc.remote_message, remote_type=exc.remote_type, model=self.model,
                          provider="dspex-bridge") from None
        choices = []
        for index, choice in enumerate(ok.get("choices") or []):
            if isinstance(choice, dict):
                text = choice.get("text", choice.get("content"))
            else:
                text = choice
            choices.append({"index": index, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": text}})
        if not choices:
            raise LmError("lm_result has no choices", remote_type="BadFrame", model=self.model,
                          provider="dspex-bridge")
        usage = ok.get("usage") if isinstance(ok.get("usage"), dict) else {}
        return _attributes({"model": ok.get("model") or self.model, "object": "chat.completion",
                            "choices": choices, "usage": dict(usage)})

    def _chunk_sender(self, request):
        """For a call inside `dspy.streamify`: a function that hands one chunk of text to DSPy's
        send stream (as the calling predictor's chunk); None otherwise. A call for several
        completions is not streamed (DSPy's listeners read one)."""
        send_stream = dspy.settings.send_stream
        if send_stream is None or (request.get("n") or 1) > 1:
            return None
        caller = dspy.settings.caller_predict
        predict_id = id(caller) if caller is not None else None
        model = self.model

        def send(text):
            stream_emitted()  # DSPy must not retry a call whose output was already shown
            chunk = EngineChunk(id=None, model=model, predict_id=predict_id,
                                choices=[attributes({"index": 0, "delta": {"content": text}, "finish_reason": None})])
            anyio.from_thread.run(send_stream.send, chunk)

        return send

    async def aforward(self, prompt=None, messages=None, **kwargs):
        # The wait for an lm_result blocks a thread, never the event loop.
        return await asyncio.to_thread(self.forward, prompt=prompt, messages=messages, **kwargs)

    def __deepcopy__(self, memo):
        # DSPy deep-copies modules (optimizers: teacher/student copies) and predictors may hold an LM.
        # The bridge is process-wide, so a deep copy is DSPy's runtime copy.
        return self.copy()
