"""Imported by a bridge test as a tool's module: tries file-system operations and raises an error
telling what happened to each, so the test sees it as a Python exception of its `create`:
`FS-PROBE: outside=<outcome>; inside=<outcome>; read=<outcome>; tmp=<outcome>`, each outcome `ok`
or the exception's class name.

DSPEX_FS_PROBE_OUTSIDE: a file to create where the worker should not write (outside its writable
paths); DSPEX_FS_PROBE_INSIDE: a file to create inside a writable path; DSPEX_FS_PROBE_READ: a
file to read. `tmp` creates a temporary file where Python's tempfile puts it (TMPDIR)."""

import os
import tempfile


def _try(action):
    try:
        action()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - the class name is the report
        return type(exc).__name__


def _write(path):
    with open(path, "w") as f:
        f.write("written by the fs probe\n")


def _read(path):
    with open(path) as f:
        f.read()


def _tmp():
    with tempfile.NamedTemporaryFile("w") as f:
        f.write("x")


outcomes = {
    "outside": _try(lambda: _write(os.environ["DSPEX_FS_PROBE_OUTSIDE"])),
    "inside": _try(lambda: _write(os.environ["DSPEX_FS_PROBE_INSIDE"])),
    "read": _try(lambda: _read(os.environ["DSPEX_FS_PROBE_READ"])),
    "tmp": _try(_tmp),
}
raise RuntimeError("FS-PROBE: " + "; ".join(f"{k}={v}" for k, v in outcomes.items()))


def probe():  # never reached; names what the test imports
    pass
