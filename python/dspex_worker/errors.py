"""Error kinds the worker itself raises, and their structured form on the wire."""

import traceback


class WorkerError(Exception):
    """An error whose wire `type` is the class name (BadRequest, UnknownOp, ...)."""


class BadRequest(WorkerError):
    """A request with missing or ill-typed arguments."""


class UnknownOp(WorkerError):
    """A request whose `op` the worker does not implement."""


class UnknownObject(WorkerError):
    """A request naming an object id the worker does not hold."""


class BadFrame(WorkerError):
    """A frame that is JSON but not a message the worker understands."""


class LmCallFailed(Exception):
    """The pool answered an `lm_call` with an error (stdlib-only; BridgeLM re-raises it as a DSPy LMError)."""

    def __init__(self, remote_type, message):
        self.remote_type = remote_type or "LmError"
        self.remote_message = message or ""
        super().__init__(f"{self.remote_type}: {self.remote_message}")


class Cancelled(BaseException):
    """The running operation was cancelled.

    A BaseException on purpose: DSPy's modules and optimizers catch `Exception` around LM calls
    (fallback adapters, failed bootstrap examples, evaluation errors), and a cancellation must not be
    swallowed as one failed example.
    """


def error_payload(exc):
    """{"type", "message", "traceback"} for an exception."""
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }
