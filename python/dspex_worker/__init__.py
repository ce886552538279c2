"""dspex-worker: the Python side of dspex's bridge.

One worker is one OS process (`python -m dspex_worker`) that reads length-prefixed JSON frames on
stdin and answers on stdout, running DSPy modules for a Rust process pool. The contract is
`python/PROTOCOL.md` in the dspex repository. Importing this package imports only the standard
library; DSPy is imported on first use (or before `ready` with `--eager-import`).
"""

PROTOCOL_VERSION = 1
__version__ = "0.1.0"


def session_state():
    """The variables of the dspex session the running call belongs to (`Session::set` and
    `SessionOptions::state` on the Rust side), as a read-only mapping; empty outside a call, or in a
    call without a session or with no variables.

    For the Python code a bridged module runs: tools, custom modules, metrics, generated code in an
    in-process interpreter. The variables are sent along with each `call` and `stream_call` of the
    session, so a change made in Rust is seen by the next call; they are a copy, so changes made
    here do not go back to Rust (return them as outputs instead). They follow DSPy's settings onto
    the threads DSPy starts (Parallel, asyncify, streamify)."""
    import types

    from .channel import SESSION_STATE_SETTING

    try:
        import dspy
    except ImportError:
        return types.MappingProxyType({})
    return types.MappingProxyType(dict(dspy.settings.get(SESSION_STATE_SETTING) or {}))
