"""A code interpreter for DSPy's ProgramOfThought in `examples/python_bridge.rs`, named by import
path in the module's `interpreter_factory` keyword (`example_interpreter:ExecInterpreter`).

DSPy's own `PythonInterpreter` runs generated code in Deno's Pyodide sandbox; install Deno and drop
`interpreter_factory` to use it. This one runs the code with `exec` in a namespace of its own, in
the worker's process, so the example needs nothing but DSPy: it is NOT a sandbox, and is fit only
for the example's canned code from the mock LM, never for code from a real model.
"""

from dspy.primitives.code_interpreter import CodeExecutionError, FinalOutput


class _Submitted(Exception):
    def __init__(self, output):
        super().__init__("SUBMIT")
        self.output = output


class ExecInterpreter:
    """`dspy.CodeInterpreter`: `SUBMIT(dict)` ends the code with a `FinalOutput`."""

    def __init__(self):
        self.namespace = {}

    @property
    def tools(self):
        return {}

    def start(self):
        pass

    def execute(self, code, variables=None):
        def submit(output=None, **fields):
            raise _Submitted(output if output is not None else fields)

        self.namespace.update(variables or {})
        self.namespace["SUBMIT"] = submit
        try:
            exec(compile(code, "<program_of_thought>", "exec"), self.namespace)
        except _Submitted as done:
            return FinalOutput(done.output)
        except SyntaxError:
            raise
        except Exception as e:
            raise CodeExecutionError(f"{type(e).__name__}: {e}") from e
        return None

    def shutdown(self):
        self.namespace.clear()
