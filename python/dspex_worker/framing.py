"""Frames: a 4-byte big-endian length word, then that many bytes of one message.

The body is UTF-8 JSON (one object), or MessagePack when the length word's high bit
(MSGPACK_FLAG) is set; the length is the other 31 bits. MessagePack goes only to a side that
announced it reads it (see PROTOCOL.md, "Encodings"): a reader that does not know the flag sees a
length over MAX_FRAME and refuses the frame, so the encodings are never mistaken for one another.
"""

import json
import math
import os
import struct

MAX_FRAME = 64 * 1024 * 1024
MSGPACK_FLAG = 0x80000000
_HEADER = struct.Struct(">I")

try:  # the `msgpack` package: without it the worker announces (and reads) JSON only
    import msgpack as _msgpack
except ImportError:  # pragma: no cover - a dependency of the package
    _msgpack = None


class FrameError(Exception):
    """The byte stream broke the framing rules (the reader must close)."""


def encodings():
    """The encodings this worker announces in `ready`: JSON, and MessagePack when the `msgpack`
    package is importable. DSPEX_WORKER_ENCODINGS (a comma-separated list, e.g. `json`) narrows
    the list, as an older worker's would be."""
    available = ["json"] + (["msgpack"] if _msgpack is not None else [])
    wanted = os.environ.get("DSPEX_WORKER_ENCODINGS")
    if wanted:
        names = {name.strip() for name in wanted.split(",")}
        available = [name for name in available if name == "json" or name in names]
    return available


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


def read_frame(stream, msgpack=False):
    """The next frame as (payload bytes, is_msgpack), or None on EOF at a frame boundary.

    With msgpack=False the flag is not read (the length word is the length, as in the protocol's
    first form), so a MessagePack frame is over the limit. Raises FrameError on a truncated frame
    or a length above MAX_FRAME.
    """
    header = read_exact(stream, _HEADER.size)
    if header is None:
        return None
    (word,) = _HEADER.unpack(header)
    packed = msgpack and bool(word & MSGPACK_FLAG)
    length = word & ~MSGPACK_FLAG if packed else word
    if length > MAX_FRAME:
        raise FrameError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
    if length == 0:
        return b"", packed
    payload = read_exact(stream, length)
    if payload is None:
        raise FrameError(f"EOF after a frame header announcing {length} bytes")
    return payload, packed


def decode_payload(payload, packed):
    """A frame's message (any value; the caller checks it is a dict). Raises ValueError (or a
    subclass: msgpack's errors, UnicodeDecodeError) for a body that is not one JSON or MessagePack
    value."""
    if not packed:
        return json.loads(payload)
    if _msgpack is None:
        raise ValueError("a MessagePack frame, and the msgpack package is not installed")
    try:
        return _msgpack.unpackb(payload, raw=False)
    except ValueError:
        raise
    except Exception as exc:  # msgpack's own errors that are not ValueErrors
        raise ValueError(f"bad MessagePack: {exc!r}") from exc


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

_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1


def _key(key):
    # What json.dumps makes of a dict key.
    if isinstance(key, str):
        return key
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, (int, float)):
        return _ENCODER.encode(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _plain(value, depth=0):
    """The value as JSON would carry it, for MessagePack: bytes as text (MessagePack would make them
    `bin`, which a JSON value cannot hold), keys as strings, tuples and sets as lists, other objects
    through the JSON default, integers beyond 64 bits as floats (as the pool reads them from JSON);
    NaN and infinities refused, as the JSON encoder refuses them."""
    if depth > 500:
        raise ValueError("the message nests too deeply")
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return value if _INT_MIN <= value <= _UINT_MAX else float(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("Out of range float values are not JSON compliant")
        return value
    if isinstance(value, dict):
        return {_key(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return _plain(_json_default(value), depth + 1)


def encode_frame(message, msgpack_above=None):
    """One frame (header + payload) for a JSON-serializable dict: JSON, or MessagePack when
    msgpack_above is set and the MessagePack encoding is over that many bytes."""
    if msgpack_above is not None and _msgpack is not None:
        # A lone surrogate is replaced, as below for JSON.
        packed = _msgpack.packb(_plain(message), use_bin_type=True, unicode_errors="replace")
        if len(packed) > msgpack_above:
            if len(packed) > MAX_FRAME:
                raise FrameError(f"outgoing frame of {len(packed)} bytes exceeds the {MAX_FRAME}-byte limit")
            return _HEADER.pack(len(packed) | MSGPACK_FLAG) + packed
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
