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


class ListInterpreter:
    """A `dspy.CodeInterpreter` for ProgramOfThought in the tests (`worker_tools:ListInterpreter`):
    `exec`s the code and returns what it `SUBMIT`s; DSPy's default interpreter needs Deno."""

    @property
    def tools(self):
        return {}

    def start(self):
        pass

    def execute(self, code, variables=None):
        from dspy.primitives.code_interpreter import FinalOutput

        submitted = []
        exec(code, {"SUBMIT": submitted.append, **(variables or {})})
        return FinalOutput(submitted[-1]) if submitted else None

    def shutdown(self):
        pass
