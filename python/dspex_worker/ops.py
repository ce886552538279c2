"""The executor's operations: configure, create, call, stream_call, save_state, load_state, optimize, drop, close_session,
shutdown.

DSPy is imported on the first operation that needs it.
"""

import importlib
import inspect
import logging
import math
import threading
import warnings

from .channel import PARENT_SETTING, SESSION_STATE_SETTING
from .errors import BadRequest, Cancelled, UnknownObject, UnknownOp

log = logging.getLogger("dspex_worker")

# Optimizer keyword arguments that take an LM: a JSON value for them is an LM spec like configure's `lm`.
LM_KWARGS = ("reflection_lm", "prompt_model", "task_model")

_dspy = None
_dspy_lock = threading.Lock()


def import_dspy():
    """Import DSPy (once) and quiet what a bridge worker does on purpose."""
    global _dspy
    with _dspy_lock:
        if _dspy is None:
            # BridgeLM is a BaseLM subclass with forward(): DSPy 3.4 warns that the interface is scheduled
            # for removal in 3.5. dspex pins dspy==3.4.1; the warning would only fill the pool's logs.
            warnings.filterwarnings("ignore", message="Implementing custom LMs through BaseLM", category=DeprecationWarning)
            import dspy

            _dspy = dspy
        return _dspy


def dspy_version():
    return getattr(_dspy, "__version__", None) if _dspy is not None else None


def jsonable(value):
    """A JSON value for a prediction field: JSON types as they are, pydantic models dumped, else str."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    to_dict = getattr(value, "toDict", None)  # dspy.Example / Prediction
    if callable(to_dict):
        return jsonable(to_dict())
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return jsonable(dump(mode="json"))
        except Exception:
            pass
    return str(value)


def _with_field_specs(signature, fields):
    """`signature` with the fields' descriptions and prefixes of a `create`'s `fields`."""
    for name, spec in fields.items():
        if name not in signature.fields:
            known = ", ".join(signature.fields)
            raise BadRequest(f"`fields` names `{name}`, which the signature does not have ({known})")
        if not isinstance(spec, dict) or not spec:
            raise BadRequest(f"`fields.{name}` must be an object with `desc` and/or `prefix`")
        for key, value in spec.items():
            if key not in ("desc", "prefix"):
                raise BadRequest(f"`fields.{name}` has `{key}`; only `desc` and `prefix` are known")
            if not isinstance(value, str):
                raise BadRequest(f"`fields.{name}.{key}` must be a string")
        signature = signature.with_updated_fields(name, **spec)
    return signature


def _arg(request, key, kind, required=True, default=None):
    if key not in request or request[key] is None:
        if required:
            raise BadRequest(f"`{request.get('op')}` needs `{key}`")
        return default
    value = request[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise BadRequest(f"`{key}` must be a JSON {names}, got {type(value).__name__}")
    return value


def _attribute_of_dspy(dspy, name, what):
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise BadRequest(f"{what} must name a public attribute of dspy, got {name!r}")
    value = getattr(dspy, name, None)
    if value is None:
        raise BadRequest(f"dspy has no {what} named {name!r}")
    return value


def import_callable(path):
    """`package.module:function` (or `package.module.function`) → the callable."""
    if not isinstance(path, str):
        raise BadRequest(f"a tool is named by 'module:function', got {path!r}")
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise BadRequest(f"a tool is named by 'module:function', got {path!r}")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise BadRequest(f"{path!r} is not callable")
    return obj


class Operations:
    def __init__(self, worker):
        self.worker = worker
        self.objects = {}  # object id -> (module, session)
        self._ids = 0

    def run(self, op, request):
        handler = getattr(self, "op_" + op, None) if isinstance(op, str) else None
        if handler is None:
            raise UnknownOp(f"unknown op {op!r}")
        return handler(request)

    def checkpoint(self):
        """Raise Cancelled when the running operation was cancelled (called before committing effects)."""
        if self.worker._current_cancelled():
            raise Cancelled("cancelled")

    @staticmethod
    def serving(dspy, request):
        """`dspy.context` naming `request` as the parent of the LM calls made inside it (on any thread
        DSPy starts from it): see channel.PARENT_SETTING; and the variables of the session it runs in
        (`session_state`), which `dspex_worker.session_state()` reads."""
        state = request.get("session_state")
        if state is not None and not isinstance(state, dict):
            raise BadRequest(f"`session_state` must be an object, not {type(state).__name__}")
        return dspy.context(**{PARENT_SETTING: request.get("id"), SESSION_STATE_SETTING: state or {}})

    def _object(self, request):
        object_id = _arg(request, "object", str)
        try:
            return object_id, self.objects[object_id][0]
        except KeyError:
            raise UnknownObject(f"no object {object_id!r} in this worker") from None

    # ---- LMs and configure ------------------------------------------------------------------
    def build_lm(self, spec, where="lm"):
        if not isinstance(spec, dict):
            raise BadRequest(f"`{where}` must be an object like {{\"mode\": \"bridge\", \"model\": \"openai/x\"}}")
        dspy = import_dspy()
        mode = spec.get("mode", "bridge")
        model = spec.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest(f"`{where}.model` must be a non-empty string")
        kwargs = spec.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise BadRequest(f"`{where}.kwargs` must be an object")
        if mode == "bridge":
            from .bridge_lm import BridgeLM

            return BridgeLM(model, **kwargs)
        if mode == "direct":
            for key in ("api_base", "api_key"):
                if spec.get(key) is not None:
                    kwargs[key] = spec[key]
            return dspy.LM(model, **kwargs)
        raise BadRequest(f"`{where}.mode` must be \"bridge\" or \"direct\", got {mode!r}")

    def op_configure(self, request):
        dspy = import_dspy()
        settings = {}
        if request.get("lm") is not None:
            settings["lm"] = self.build_lm(request["lm"])
        adapter = _arg(request, "adapter", str, required=False)
        if adapter is not None:
            adapters = {"chat": dspy.ChatAdapter, "json": dspy.JSONAdapter}
            if adapter not in adapters:
                raise BadRequest(f"`adapter` must be \"chat\" or \"json\", got {adapter!r}")
            settings["adapter"] = adapters[adapter]()
        if not settings:
            raise BadRequest("`configure` needs `lm` and/or `adapter`")
        self.checkpoint()
        dspy.configure(**settings)
        return {}

    # ---- objects --------------------------------------------------------------------------------
    def _module_kwargs(self, kwargs):
        kwargs = dict(kwargs)
        if isinstance(kwargs.get("tools"), list):
            kwargs["tools"] = [import_callable(t) if isinstance(t, str) else t for t in kwargs["tools"]]
        # ProgramOfThought / CodeAct: the code interpreter's factory, by import path (DSPy's default one
        # needs Deno).
        if isinstance(kwargs.get("interpreter_factory"), str):
            kwargs["interpreter_factory"] = import_callable(kwargs["interpreter_factory"])
        return kwargs

    def op_create(self, request):
        dspy = import_dspy()
        cls = _attribute_of_dspy(dspy, _arg(request, "module", str), "module")
        if not (isinstance(cls, type) and issubclass(cls, dspy.Module)):
            raise BadRequest(f"dspy.{request['module']} is not a dspy.Module class")
        signature = _arg(request, "signature", str, required=False)
        instructions = _arg(request, "instructions", str, required=False)
        kwargs = self._module_kwargs(_arg(request, "kwargs", dict, required=False, default={}))
        fields = _arg(request, "fields", dict, required=False, default={})
        session = _arg(request, "session", str, required=False)
        if instructions is not None or fields:
            if signature is None:
                which = "`instructions`" if instructions is not None else "`fields`"
                raise BadRequest(f"{which} need a `signature` to belong to")
            signature = (
                dspy.Signature(signature, instructions)
                if instructions is not None
                else dspy.Signature(signature)
            )
            signature = _with_field_specs(signature, fields)
        module = cls(signature, **kwargs) if signature is not None else cls(**kwargs)
        self.checkpoint()
        self._ids += 1
        object_id = f"o{self._ids}"
        self.objects[object_id] = (module, session)
        return {"object": object_id}

    def op_call(self, request):
        dspy = import_dspy()
        _, module = self._object(request)
        inputs = _arg(request, "inputs", dict, required=False, default={})
        with self.serving(dspy, request):
            prediction = module(**inputs)
        if hasattr(prediction, "toDict"):
            outputs = prediction.toDict()
        elif isinstance(prediction, dict):
            outputs = prediction
        else:
            outputs = {"output": prediction}
        self.checkpoint()
        return {"outputs": {str(k): jsonable(v) for k, v in outputs.items()}}

    def op_stream_call(self, request):
        dspy = import_dspy()
        from . import streaming

        _, module = self._object(request)
        inputs = _arg(request, "inputs", dict, required=False, default={})
        fields = _arg(request, "fields", list, required=False)
        provider = streaming.status_provider(_arg(request, "status", str, required=False))
        stream_listeners = streaming.listeners(module, fields)
        with self.serving(dspy, request):
            prediction = streaming.run(self.worker, request.get("id"), module, inputs, stream_listeners, provider)
        outputs = prediction.toDict() if hasattr(prediction, "toDict") else dict(prediction)
        self.checkpoint()
        return {"outputs": {str(k): jsonable(v) for k, v in outputs.items()}}

    def op_save_state(self, request):
        _, module = self._object(request)
        return {"state": jsonable(module.dump_state(json_mode=True))}

    def op_load_state(self, request):
        _, module = self._object(request)
        state = _arg(request, "state", dict)
        self.checkpoint()
        module.load_state(state)
        return {}

    def op_drop(self, request):
        object_id, _ = self._object(request)
        del self.objects[object_id]
        return {}

    def op_close_session(self, request):
        """Drop every object created in `session`; how many there were (0 for an unknown session)."""
        session = _arg(request, "session", str)
        doomed = [object_id for object_id, (_, owner) in self.objects.items() if owner == session]
        for object_id in doomed:
            del self.objects[object_id]
        return {"dropped": len(doomed)}

    def op_shutdown(self, request):
        return {}

    # ---- optimize -------------------------------------------------------------------------------
    def _examples(self, dspy, rows, input_keys, key):
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise BadRequest(f"`{key}` must be a list of objects")
        return [dspy.Example(**row).with_inputs(*input_keys) for row in rows]

    def _metric(self, dspy, name):
        if name == "exact_match":
            def base(example, prediction, trace=None):
                return str(example.get("answer")).strip() == str(getattr(prediction, "answer", None)).strip()
        else:
            base = _attribute_of_dspy(importlib.import_module("dspy.evaluate"), name, "metric")
            if isinstance(base, type):
                base = base()  # e.g. SemanticF1: a module whose instances are metrics
            if not callable(base):
                raise BadRequest(f"dspy.evaluate.{name} is not a metric")

        # GEPA binds five positional arguments (gold, pred, trace, pred_name, pred_trace); the others pass three.
        def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
            return base(gold, pred, trace)

        metric.__name__ = name
        return metric

    def op_optimize(self, request):
        dspy = import_dspy()
        object_id, module = self._object(request)
        cls = _attribute_of_dspy(dspy, _arg(request, "optimizer", str), "optimizer")
        if not isinstance(cls, type) or not callable(getattr(cls, "compile", None)):
            raise BadRequest(f"dspy.{request['optimizer']} is not an optimizer class")
        input_keys = _arg(request, "input_keys", list)
        if not input_keys or not all(isinstance(k, str) for k in input_keys):
            raise BadRequest("`input_keys` must be a non-empty list of strings")
        trainset = self._examples(dspy, _arg(request, "trainset", list), input_keys, "trainset")
        kwargs = dict(_arg(request, "kwargs", dict, required=False, default={}))
        compile_kwargs = dict(_arg(request, "compile_kwargs", dict, required=False, default={}))
        for key in ("valset", "devset"):
            if isinstance(compile_kwargs.get(key), list):
                compile_kwargs[key] = self._examples(dspy, compile_kwargs[key], input_keys, f"compile_kwargs.{key}")

        parameters = inspect.signature(cls.__init__).parameters
        accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        metric_name = _arg(request, "metric", str, required=False)
        if metric_name is not None:
            if "metric" not in parameters and not accepts_any:
                raise BadRequest(f"dspy.{request['optimizer']} takes no metric")
            kwargs["metric"] = self._metric(dspy, metric_name)
        for key in LM_KWARGS:
            if isinstance(kwargs.get(key), dict):
                kwargs[key] = self.build_lm(kwargs[key], where=f"kwargs.{key}")
        if "reflection_lm" in parameters and kwargs.get("reflection_lm") is None and dspy.settings.lm is not None:
            kwargs["reflection_lm"] = dspy.settings.lm  # GEPA: reflect with the configured LM by default

        with self.serving(dspy, request):
            optimizer = cls(**kwargs)
            compiled = optimizer.compile(module, trainset=trainset, **compile_kwargs)
        self.checkpoint()
        session = self.objects[object_id][1]
        self.objects[object_id] = (compiled, session)
        return {"state": jsonable(compiled.dump_state(json_mode=True))}
