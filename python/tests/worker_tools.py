"""Tools the worker imports by name in the tests (`worker_tools:noisy_add`)."""

import os
import sys


def noisy_add(a: int, b: int) -> int:
    """Add two integers."""
    # Both must land on stderr, never inside a frame on the protocol's stdout.
    print("noisy_add was called")
    sys.stdout.flush()
    os.write(1, b"noisy_add wrote to fd 1\n")
    return a + b


def failing_tool(x: str) -> str:
    """Always fails."""
    raise RuntimeError("the tool failed on purpose")
