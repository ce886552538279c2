"""Frames: a 4-byte big-endian unsigned length, then that many bytes of UTF-8 JSON (one object)."""

import json
import os
import struct

MAX_FRAME = 64 * 1024 * 1024
_HEADER = struct.Struct(">I")


class FrameError(Exception):
    """The byte stream broke the framing rules (the reader must close)."""


def read_exact(stream, n):
    """Read exactly n bytes from a buffered binary stream; None on a clean EOF before any byte."""
    data = stream.read(n)
    if not data:
        return None
    while len(data) < n:
        more = stream.read(n - len(data))
        if not more:
            raise FrameError(f"EOF inside a frame ({len(data)} of {n} bytes)")
        data += more
    return data


def read_frame(stream):
    """The next frame's payload as bytes, or None on EOF at a frame boundary.

    Raises FrameError on a truncated frame or a length above MAX_FRAME.
    """
    header = read_exact(stream, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise FrameError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
    if length == 0:
        return b""
    payload = read_exact(stream, length)
    if payload is None:
        raise FrameError(f"EOF after a frame header announcing {length} bytes")
    return payload


def _json_default(value):
    # Pydantic models, sets, bytes and anything else DSPy hands back: JSON where it can be, else text.
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:
            pass
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# Built once: json.dumps with non-default options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=_json_default, allow_nan=False)


def encode_frame(message):
    """One frame (header + payload) for a JSON-serializable dict."""
    text = _ENCODER.encode(message)
    # A lone surrogate (possible in Python strings) is not UTF-8: replace it rather than fail.
    payload = text.encode("utf-8", "replace")
    if len(payload) > MAX_FRAME:
        raise FrameError(f"outgoing frame of {len(payload)} bytes exceeds the {MAX_FRAME}-byte limit")
    return _HEADER.pack(len(payload)) + payload


def write_all(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
