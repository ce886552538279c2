"""Imported by a bridge test as a tool's module: connects to the TCP address in DSPEX_NET_PROBE_ADDR
(`host:port`) and raises an error telling what happened, so the test sees it as a Python exception
of its `create` (`NET-PROBE: connected` or `NET-PROBE: unreachable: ...`)."""

import os
import socket

host, _, port = os.environ["DSPEX_NET_PROBE_ADDR"].rpartition(":")
try:
    socket.create_connection((host, int(port)), timeout=5).close()
    outcome = "connected"
except OSError as exc:
    outcome = f"unreachable: {exc}"
raise RuntimeError(f"NET-PROBE: {outcome}")


def probe():  # never reached; names what the test imports
    pass
